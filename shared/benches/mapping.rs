//! Mapping throughput per shipped profile: raw queued bytes → envelope parse → payload hash → idempotency
//! key → profile selection and mapping → the incident's JSON body (an event's first event creates it) or,
//! for `*_update_note`, the work note a later event adds. Run: `make bench` (criterion reports time per
//! event; events/s = 1 / time). `mapping/parse_map_serialise` is the conversation profile under its
//! historic name. `redact/*` times `redact_text` alone.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;
use shared::keys::{payload_hash, KeyConfig};
use shared::{InboundEvent, Mapping};

const CONVERSATION: &str = include_str!("../tests/fixtures/conversation-customer-end.json");
const ACW: &str = include_str!("../tests/fixtures/conversation-acw.eventbridge.json");
const SEED_000: &str = include_str!("../tests/fixtures/seed-000-flow-webhook.json");
const SEED_001: &str = include_str!("../tests/fixtures/seed-001-ivr-escalation.body.json");

fn ivr_envelope() -> Vec<u8> {
    let Ok(Value::Object(body)) = serde_json::from_str::<Value>(SEED_001) else {
        panic!("seed 001 fixture is a JSON object");
    };
    InboundEvent::bare_envelope("ivr:escalation", body, "org", "2026-11-23T10:00:00Z")
        .to_string()
        .into_bytes()
}

fn pipeline(c: &mut Criterion) {
    let mapping = Mapping::default_mapping().expect("default mapping");
    let keys = KeyConfig::default();
    let cases: [(&str, Vec<u8>); 4] = [
        ("parse_map_serialise", CONVERSATION.as_bytes().to_vec()),
        ("genesys_conversation_acw", ACW.as_bytes().to_vec()),
        ("architect_flow_webhook", SEED_000.as_bytes().to_vec()),
        ("ivr_escalation", ivr_envelope()),
    ];
    let mut group = c.benchmark_group("mapping");
    group.throughput(Throughput::Elements(1));
    for (name, raw) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let event = InboundEvent::parse(black_box(raw)).expect("valid");
                let hash = payload_hash(&event);
                let key = keys.derive_hashed(&event, &hash);
                let mapped = mapping.apply(&event, &key.key).expect("maps");
                let body = mapped.incident().to_json();
                black_box((body, hash))
            })
        });
    }
    group.bench_function("genesys_conversation_acw_update_note", |b| {
        let raw = ACW.as_bytes();
        b.iter(|| {
            let event = InboundEvent::parse(black_box(raw)).expect("valid");
            let hash = payload_hash(&event);
            let key = keys.derive_hashed(&event, &hash);
            let mapped = mapping.apply(&event, &key.key).expect("maps");
            black_box((mapped.update_note(), hash))
        })
    });
    let event = InboundEvent::parse(CONVERSATION.as_bytes()).expect("valid");
    group.bench_function("map_only", |b| {
        b.iter(|| {
            let mapped = mapping.apply(black_box(&event), "gc-key").expect("maps");
            black_box(mapped.incident())
        })
    });
    group.finish();

    // The conversation event's pipeline, stage by stage.
    let raw = CONVERSATION.as_bytes();
    let event = InboundEvent::parse(raw).expect("valid");
    let hash = payload_hash(&event);
    let key = keys.derive_hashed(&event, &hash);
    let mapped = mapping.apply(&event, &key.key).expect("maps");
    let incident = mapped.incident();
    let mut stage = c.benchmark_group("stage");
    stage.bench_function("parse", |b| {
        b.iter(|| InboundEvent::parse(black_box(raw)).expect("valid"))
    });
    stage.bench_function("payload_hash", |b| {
        b.iter(|| payload_hash(black_box(&event)))
    });
    stage.bench_function("key", |b| {
        b.iter(|| keys.derive_hashed(black_box(&event), &hash))
    });
    stage.bench_function("apply", |b| {
        b.iter(|| mapping.apply(black_box(&event), &key.key).expect("maps"))
    });
    stage.bench_function("render_incident", |b| {
        b.iter(|| black_box(&mapped).incident())
    });
    stage.bench_function("serialise", |b| b.iter(|| black_box(&incident).to_json()));
    stage.finish();
}

/// `redact_text` alone on a typical agent note (a card, a phone, ids, a date) and on a long note without PII.
fn redact(c: &mut Criterion) {
    let note = "Customer reports billing portal outage since 2026-11-23 09:40; card 4111 1111 1111 1111 was \
                charged twice (order A1234567, INC0010001), call back on +1 415 555 0123. Conversation \
                3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b, waited 42 s in queue 5.";
    let plain = "The customer could not log in to the self-service portal after the password reset and was \
                 transferred to the second level team, who confirmed the account was locked by the security \
                 policy and unlocked it; the customer confirmed that the login works again. "
        .repeat(4);
    let mut group = c.benchmark_group("redact");
    group.throughput(Throughput::Elements(1));
    group.bench_function("agent_note", |b| {
        b.iter(|| black_box(shared::redact::redact_text(black_box(note))))
    });
    group.bench_function("plain_text_1k", |b| {
        b.iter(|| black_box(shared::redact::redact_text(black_box(&plain))))
    });
    group.finish();
}

criterion_group!(benches, pipeline, redact);
criterion_main!(benches);
