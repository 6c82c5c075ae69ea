//! Mapping throughput per shipped profile: raw queued bytes → envelope parse → payload hash → idempotency
//! key → profile selection and mapping → the incident's JSON body (an event's first event creates it) or,
//! for `*_update_note`, the work note a later event adds. Run: `make bench` (criterion reports time per
//! event; events/s = 1 / time). `mapping/parse_map_serialise` is the conversation profile under its
//! historic name. `redact/*` times `redact_text` alone.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shared::keys::{payload_hash, KeyConfig};
use shared::{InboundEvent, Mapping};

mod cases;
use cases::{create_body, pipeline_cases, stages, update_note, ACW, CONVERSATION};

fn pipeline(c: &mut Criterion) {
    let mapping = Mapping::default_mapping().expect("default mapping");
    let keys = KeyConfig::default();
    let cases = pipeline_cases();
    let mut group = c.benchmark_group("mapping");
    group.throughput(Throughput::Elements(1));
    for (name, raw) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| black_box(create_body(&mapping, &keys, black_box(raw))))
        });
    }
    group.bench_function("genesys_conversation_acw_update_note", |b| {
        let raw = ACW.as_bytes();
        b.iter(|| black_box(update_note(&mapping, &keys, black_box(raw))))
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
    let st = stages(&mapping, &keys);
    let mut stage = c.benchmark_group("stage");
    stage.bench_function("parse", |b| {
        b.iter(|| InboundEvent::parse(black_box(st.raw)).expect("valid"))
    });
    stage.bench_function("payload_hash", |b| {
        b.iter(|| payload_hash(black_box(&st.event)))
    });
    stage.bench_function("key", |b| {
        b.iter(|| keys.derive_hashed(black_box(&st.event), &st.hash))
    });
    stage.bench_function("apply", |b| {
        b.iter(|| {
            mapping
                .apply(black_box(&st.event), &st.key.key)
                .expect("maps")
        })
    });
    stage.bench_function("render_incident", |b| {
        b.iter(|| black_box(&st.mapped).incident())
    });
    stage.bench_function("serialise", |b| {
        b.iter(|| black_box(&st.incident).to_json())
    });
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
