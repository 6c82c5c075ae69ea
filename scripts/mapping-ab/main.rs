//! The mapping pipeline of two versions of `shared` in one process, interleaved in short blocks, so a
//! shared host's drifting speed hits both alike. Built and run by `scripts/mapping-ab.sh`; never part of
//! the workspace (it links `shared` twice).

use std::hint::black_box;
use std::time::Instant;

macro_rules! pipeline {
    ($krate:ident) => {
        mod $krate {
            pub struct Pipeline {
                mapping: ::$krate::Mapping,
                keys: ::$krate::keys::KeyConfig,
            }

            impl Pipeline {
                pub fn new() -> Self {
                    Pipeline {
                        mapping: ::$krate::Mapping::default_mapping().expect("default mapping"),
                        keys: Default::default(),
                    }
                }

                /// What the `mapping` benchmark times: bytes → envelope → hash → key → mapping → body.
                pub fn run(&self, raw: &[u8]) -> (Vec<u8>, String) {
                    let event = ::$krate::InboundEvent::parse(raw).expect("valid");
                    let hash = ::$krate::keys::payload_hash(&event);
                    let key = self.keys.derive_hashed(&event, &hash);
                    let mapped = self.mapping.apply(&event, &key.key).expect("maps");
                    (mapped.incident().to_json(), hash)
                }

                /// The work note the same event adds to an existing incident, for the equality check.
                pub fn note(&self, raw: &[u8]) -> Option<String> {
                    let event = ::$krate::InboundEvent::parse(raw).expect("valid");
                    let key = self.keys.derive(&event);
                    self.mapping.apply(&event, &key.key).expect("maps").update_note()
                }
            }
        }
    };
}
pipeline!(base);
pipeline!(new);

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let fixtures = args.next().expect("usage: mapping-ab FIXTURES_DIR [BLOCKS]");
    let blocks: usize = args
        .next()
        .map_or(200, |b| b.parse().expect("BLOCKS is a number"));
    assert!(blocks > 0, "BLOCKS must be at least 1");
    let read = |name: &str| std::fs::read(format!("{fixtures}/{name}")).expect("fixture");
    let serde_json::Value::Object(ivr) =
        serde_json::from_slice(&read("seed-001-ivr-escalation.body.json")).expect("JSON")
    else {
        panic!("seed 001 is an object")
    };
    // Wrapped as the receiver wraps a bare body (and as the `mapping` benchmark does).
    let ivr =
        ::new::InboundEvent::bare_envelope("ivr:escalation", ivr, "org", "2026-11-23T10:00:00Z");
    let cases = [
        ("parse_map_serialise", read("conversation-customer-end.json")),
        ("genesys_conversation_acw", read("conversation-acw.eventbridge.json")),
        ("architect_flow_webhook", read("seed-000-flow-webhook.json")),
        ("ivr_escalation", ivr.to_string().into_bytes()),
    ];
    let (a, b) = (base::Pipeline::new(), new::Pipeline::new());
    // Timed cases and variants only checked: times with a fraction, an offset, out of range, as text.
    let mut checked: Vec<Vec<u8>> = cases.iter().map(|(_, raw)| raw.clone()).collect();
    for time in [
        serde_json::json!(1_795_428_000_123_i64),
        serde_json::json!("1795428000120"),
        serde_json::json!("2026-11-23T11:00:00.123456789+01:00"),
        serde_json::json!("9999-12-31T23:59:59+01:00"),
        serde_json::json!(-1),
    ] {
        let mut event: serde_json::Value =
            serde_json::from_slice(&cases[0].1).expect("the conversation event is JSON");
        event["data"]["eventTime"] = time;
        checked.push(event.to_string().into_bytes());
    }
    for raw in &checked {
        assert_eq!(a.run(raw), b.run(raw), "both versions give the same body and hash");
        assert_eq!(a.note(raw), b.note(raw), "both versions give the same work note");
    }
    println!("| mapping case | base ns | new ns | new / base, median of {blocks} blocks | p10–p90 |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for (name, raw) in &cases {
        // Blocks of about 5 ms each.
        let t = Instant::now();
        black_box(a.run(raw));
        let per_block = (5_000_000 / t.elapsed().as_nanos().max(1)).clamp(50, 5_000) as usize;
        let time = |run: &dyn Fn() -> (Vec<u8>, String)| {
            let t = Instant::now();
            for _ in 0..per_block {
                black_box(run());
            }
            t.elapsed().as_nanos() as f64 / per_block as f64
        };
        let (mut ta, mut tb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..blocks {
            // Alternate which goes first.
            let (x, y) = if i % 2 == 0 {
                let x = time(&|| a.run(black_box(raw)));
                (x, time(&|| b.run(black_box(raw))))
            } else {
                let y = time(&|| b.run(black_box(raw)));
                (time(&|| a.run(black_box(raw))), y)
            };
            ta.push(x);
            tb.push(y);
            ratios.push(y / x);
        }
        let (ma, mb, mr) = (median(&mut ta), median(&mut tb), median(&mut ratios));
        let at = |p: f64| ratios[((ratios.len() - 1) as f64 * p) as usize];
        println!(
            "| {name} | {ma:.0} | {mb:.0} | {mr:.3} | {:.3}–{:.3} |",
            at(0.1),
            at(0.9)
        );
    }
}
