//! The events both mapping benchmarks run, and the pipeline they time or count.

use serde_json::Value;
use shared::incident::IncidentDraft;
use shared::keys::{payload_hash, IdempotencyKey, KeyConfig};
use shared::mapping::Mapped;
use shared::{InboundEvent, Mapping};

pub const CONVERSATION: &str = include_str!("../../tests/fixtures/conversation-customer-end.json");
pub const ACW: &str = include_str!("../../tests/fixtures/conversation-acw.eventbridge.json");
const SEED_000: &str = include_str!("../../tests/fixtures/seed-000-flow-webhook.json");
const SEED_001: &str = include_str!("../../tests/fixtures/seed-001-ivr-escalation.body.json");

fn ivr_envelope() -> Vec<u8> {
    let Ok(Value::Object(body)) = serde_json::from_str::<Value>(SEED_001) else {
        panic!("seed 001 fixture is a JSON object");
    };
    InboundEvent::bare_envelope("ivr:escalation", body, "org", "2026-11-23T10:00:00Z")
        .to_string()
        .into_bytes()
}

/// Each shipped profile's event, as queued bytes, by benchmark name.
pub fn pipeline_cases() -> [(&'static str, Vec<u8>); 4] {
    [
        ("parse_map_serialise", CONVERSATION.as_bytes().to_vec()),
        ("genesys_conversation_acw", ACW.as_bytes().to_vec()),
        ("architect_flow_webhook", SEED_000.as_bytes().to_vec()),
        ("ivr_escalation", ivr_envelope()),
    ]
}

/// Raw bytes → envelope → payload hash → key → mapping → the incident's JSON body.
pub fn create_body(mapping: &Mapping, keys: &KeyConfig, raw: &[u8]) -> (Vec<u8>, String) {
    let event = InboundEvent::parse(raw).expect("valid");
    let hash = payload_hash(&event);
    let key = keys.derive_hashed(&event, &hash);
    let mapped = mapping.apply(&event, &key.key).expect("maps");
    (mapped.incident().to_json(), hash)
}

/// The same up to the mapping, then the work note a later event of the conversation adds.
pub fn update_note(mapping: &Mapping, keys: &KeyConfig, raw: &[u8]) -> (Option<String>, String) {
    let event = InboundEvent::parse(raw).expect("valid");
    let hash = payload_hash(&event);
    let key = keys.derive_hashed(&event, &hash);
    let mapped = mapping.apply(&event, &key.key).expect("maps");
    (mapped.update_note(), hash)
}

/// Each stage's input, from the conversation event: the stages are timed or counted one by one on these.
pub struct Stages<'r, 'm> {
    pub raw: &'r [u8],
    pub event: InboundEvent<'r>,
    pub hash: String,
    pub key: IdempotencyKey,
    pub mapped: Mapped<'m>,
    pub incident: IncidentDraft,
}

pub fn stages<'m>(mapping: &'m Mapping, keys: &KeyConfig) -> Stages<'static, 'm> {
    let raw = CONVERSATION.as_bytes();
    let event = InboundEvent::parse(raw).expect("valid");
    let hash = payload_hash(&event);
    let key = keys.derive_hashed(&event, &hash);
    let mapped = mapping.apply(&event, &key.key).expect("maps");
    let incident = mapped.incident();
    Stages {
        raw,
        event,
        hash,
        key,
        mapped,
        incident,
    }
}
