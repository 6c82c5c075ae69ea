//! CPU per event of the pipeline, by stage (a benchmark, not a timed test): `make bench`.
//!
//! Each stage runs on a thread of its own (a current-thread runtime, with clients built there, so their
//! connections' work is done there too) and is charged that thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
//! moto and the ServiceNow simulator run elsewhere and are not charged:
//! - `receive`: the webhook receiver's handler: signature, envelope, `SendMessage`;
//! - `poll`: the event source mapping's part: `ReceiveMessage` (10 at a time) and `DeleteMessageBatch`;
//! - `write`: the writer's batch: parse, key, map, the DynamoDB claim, the ServiceNow create, the record.
//!
//! Prints the median over `PIPELINE_RUNS` runs (3) of `PIPELINE_EVENTS` events (200) each, in µs per event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use integration_tests::*;
use local::poller::{delete_succeeded, receive_batch};
use serde_json::json;
use shared::retry::Deadline;
use shared::signature::SignatureScheme;
use webhook_receiver::Receiver;

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[derive(Default, Clone, Copy)]
struct StageCpu {
    receive: Duration,
    poll: Duration,
    write: Duration,
}

/// One run on the calling thread (which must be a current-thread runtime's): `events` events through the
/// three stages, each stage's CPU summed.
async fn run(h: &Harness, events: usize) -> StageCpu {
    let sqs = aws_sdk_sqs::Client::new(&h.aws);
    let receiver = Receiver::new(
        webhook_receiver::Config {
            queue_url: h.resources.queue_url.clone(),
            verification: webhook_receiver::Verification::Secret {
                secret_id: h.resources.webhook_secret_id.clone(),
            },
            organization_id: "6f1a0c4e-0000-4000-8000-00000000000a".into(),
            ..webhook_receiver::Config::default()
        },
        sqs.clone(),
        aws_sdk_secretsmanager::Client::new(&h.aws),
    );
    receiver.warm_up().await.expect("receiver warms up");
    let writer = h.another_writer(&Options::default());
    let scheme = SignatureScheme::default();
    let bodies: Vec<String> = (0..events)
        .map(|_| webhook_event(&new_conversation(), json!({})).to_string())
        .collect();
    let mut cpu = StageCpu::default();
    let incidents_before = h.sim.incidents().len();

    for body in &bodies {
        let mut headers = HeaderMap::new();
        let sig = scheme.sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
        headers.insert("X-Hub-Signature-256", sig.parse().expect("header value"));
        let start = thread_cpu();
        let reply = receiver
            .handle(&headers, body.as_bytes(), None, "bench")
            .await;
        cpu.receive += thread_cpu() - start;
        assert_eq!(reply.status, 202, "{}", reply.body);
    }

    let mut written = 0;
    while written < events {
        let start = thread_cpu();
        let (records, handles) =
            receive_batch(&sqs, &h.resources.queue_url, &h.resources.queue_arn, 10, 1)
                .await
                .expect("receive");
        cpu.poll += thread_cpu() - start;
        let count = records.len();
        let start = thread_cpu();
        let report = writer
            .process_batch(records, Deadline::after(Duration::from_secs(30)))
            .await;
        cpu.write += thread_cpu() - start;
        assert!(
            report.response.batch_item_failures.is_empty(),
            "every event is written"
        );
        let start = thread_cpu();
        delete_succeeded(&sqs, &h.resources.queue_url, &handles, &report.response)
            .await
            .expect("delete");
        cpu.poll += thread_cpu() - start;
        written += count;
    }
    assert_eq!(
        h.sim.incidents().len() - incidents_before,
        events,
        "one incident per event"
    );
    cpu
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let events = env_count("PIPELINE_EVENTS", 200);
    let runs = env_count("PIPELINE_RUNS", 3);
    let outer = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // moto, the simulator and the harness live on this runtime's thread; stages run on their own.
    let h = Arc::new(outer.block_on(Harness::start()));
    let mut results: HashMap<&str, Vec<f64>> = HashMap::new();
    for _ in 0..runs {
        let harness = h.clone();
        let cpu = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(run(&harness, events))
        })
        .join()
        .expect("stage thread");
        let per_event = |d: Duration| d.as_secs_f64() * 1e6 / events as f64;
        for (name, d) in [
            ("receive", cpu.receive),
            ("poll", cpu.poll),
            ("write", cpu.write),
            ("total", cpu.receive + cpu.poll + cpu.write),
        ] {
            results.entry(name).or_default().push(per_event(d));
        }
    }
    println!(
        "pipeline CPU per event (median of {runs} runs x {events} events; moto and the simulator not charged):"
    );
    println!("| stage | CPU µs/event |");
    println!("|---|---:|");
    for name in ["receive", "poll", "write", "total"] {
        let values = results.remove(name).unwrap_or_default();
        println!("| {name} | {:.0} |", median(values));
    }
}
