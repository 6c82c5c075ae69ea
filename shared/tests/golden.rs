//! Golden files: each shipped mapping profile applied to a fixed event (the seeds' own example bodies among
//! them) gives exactly the stored result. After an intended change: `UPDATE_GOLDEN=1 cargo test -p shared
//! --test golden`, then review the diff of `shared/tests/golden/`.

use std::path::PathBuf;

use serde_json::{json, Value};
use shared::keys::{payload_hash, KeyConfig};
use shared::{InboundEvent, Mapping};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(dir("fixtures").join(name)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// The queued form of a case: bare bodies wrapped as the receiver wraps them.
pub fn queued(fixture_name: &str, bare_event_type: Option<&str>) -> Vec<u8> {
    let value = fixture(fixture_name);
    let value = match (bare_event_type, value) {
        (Some(t), Value::Object(body)) => InboundEvent::bare_envelope(
            t,
            body,
            "6f1a0c4e-0000-4000-8000-00000000000a",
            "2026-11-23T10:00:00.000Z",
        ),
        (_, v) => v,
    };
    value.to_string().into_bytes()
}

const CASES: &[(&str, &str, Option<&str>)] = &[
    (
        "genesys-conversation.customer-end",
        "conversation-customer-end.json",
        None,
    ),
    (
        "genesys-conversation.acw",
        "conversation-acw.eventbridge.json",
        None,
    ),
    (
        "architect-flow-webhook.seed-000",
        "seed-000-flow-webhook.json",
        None,
    ),
    (
        "ivr-escalation.seed-001",
        "seed-001-ivr-escalation.body.json",
        Some("ivr:escalation"),
    ),
];

fn result_of(raw: &[u8]) -> Value {
    let mapping = Mapping::default_mapping().expect("built-in mapping");
    let event = InboundEvent::parse(raw).expect("valid envelope");
    let key = KeyConfig::default().derive(&event);
    let mapped = mapping.apply(&event, &key.key).expect("maps");
    let incident = mapped.incident();
    json!({
        "profile": mapped.profile,
        "conversation_id": mapped.conversation_id,
        "event_key": key.key,
        "incident_key": mapped.incident_key,
        "on_repeat": format!("{:?}", mapped.on_repeat),
        "payload_hash": payload_hash(&event),
        "incident": &incident,
        "incident_body": String::from_utf8(incident.to_json()).expect("UTF-8"),
        "caller_phone": incident.caller_phone,
        "matched_rules": incident.matched_rules,
        "update_note": mapped.update_note(),
    })
}

/// The payload hash is stored with every idempotency record: its value may never change, or a replay after
/// an upgrade would meet its own record as a conflict. Escapes, floats, big integers, duplicate keys, key
/// order and nesting all hash as they did when the records were written.
#[test]
fn payload_hashes_never_change() {
    let raw = std::fs::read(dir("fixtures").join("hash-edge-cases.json")).expect("fixture");
    let event = InboundEvent::parse(&raw).expect("valid envelope");
    assert_eq!(payload_hash(&event), EDGE_CASES_HASH);
}

const EDGE_CASES_HASH: &str = "352d73bd0100347aa53252f3ca9b536aabc4bf2d872b0870a59e086692988642";

#[test]
fn every_shipped_profile_matches_its_golden_file() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mapping = Mapping::default_mapping().expect("built-in mapping");
    let mut covered: Vec<String> = Vec::new();
    for (name, file, bare) in CASES {
        let got = result_of(&queued(file, *bare));
        covered.push(got["profile"].as_str().unwrap_or_default().to_string());
        let path = dir("golden").join(format!("{name}.json"));
        let pretty = serde_json::to_string_pretty(&got).expect("serialises") + "\n";
        if update {
            std::fs::write(&path, pretty).expect("golden file writable");
            continue;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
        let expected: Value = serde_json::from_str(&expected).expect("golden file is JSON");
        assert_eq!(got, expected, "{name} differs from {}", path.display());
    }
    for profile in mapping.profiles() {
        assert!(
            covered.iter().any(|c| c == profile.name()),
            "profile {} has no golden case",
            profile.name()
        );
    }
}
