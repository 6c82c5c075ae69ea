//! Mapping throughput: raw webhook bytes → envelope parse → idempotency key → incident → JSON body.
//! Run: `make bench` (criterion reports time per event; events/s = 1 / time).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use shared::idempotency::{payload_hash, KeyConfig};
use shared::{InboundEvent, Mapping};

fn sample() -> Vec<u8> {
    json!({
        "event": "v2.detail.events.conversation.3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b.customer.end",
        "data": {
            "conversationId": "3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b",
            "participantId": "9b1c2d3e-0000-4000-8000-000000000001",
            "ani": "tel:+14155550123", "dnis": "tel:+18005550100",
            "queueName": "Billing Support", "mediaType": "voice", "direction": "inbound",
            "disconnectType": "TRANSPORT_FAILURE",
            "escalationReason": "Customer reports billing portal outage; card 4111 1111 1111 1111 was charged twice, call back on 415-555-0199",
            "eventTime": 1_795_428_000_000i64,
            "attributes": {"vip": "true", "queueWaitMs": 420000}
        },
        "metadata": {"organizationId": "6f1a0c4e-0000-4000-8000-00000000000a", "timestamp": "2026-11-23T10:00:00.000Z"}
    })
    .to_string()
    .into_bytes()
}

fn pipeline(c: &mut Criterion) {
    let mapping = Mapping::default_mapping().expect("default mapping");
    let keys = KeyConfig::default();
    let raw = sample();
    let mut group = c.benchmark_group("mapping");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_map_serialise", |b| {
        b.iter(|| {
            let event = InboundEvent::parse(black_box(&raw)).expect("valid");
            let key = keys.derive(&event);
            let hash = payload_hash(&event);
            let incident = mapping.map(&event, &key.key).expect("maps");
            let body = serde_json::to_vec(&incident).expect("serialises");
            black_box((body, hash))
        })
    });
    let event = InboundEvent::parse(&raw).expect("valid");
    group.bench_function("map_only", |b| {
        b.iter(|| black_box(mapping.map(black_box(&event), "gc-key").expect("maps")))
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
