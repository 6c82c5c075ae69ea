//! Data action latency against the ServiceNow simulator at 300 ms per request (moto for DynamoDB), over
//! loopback HTTP as the function is served by `make run`. Prints, as medians over the runs:
//! - `createIncident` p50 / p99, a new conversation and a new caller number each call (caller cache cold:
//!   one caller lookup plus one create, 2 × 300 ms), and p99 as a ratio of those 600 ms (target ≤ 1.2);
//! - `lookupCaller` p50 / p99 on a warm cache (target p99 < 5 ms).
//!
//! Bounded: `DA_CREATES` creates (50) at `DA_CONCURRENCY` (1) at a time, `DA_LOOKUPS` lookups (500),
//! `DA_RUNS` runs (3). With concurrency, moto (which applies DynamoDB requests one at a time) adds queueing
//! that DynamoDB does not have.

use std::time::{Duration, Instant};

use futures::StreamExt;
use integration_tests::data_action::{seed_001_body, DataActionHarness};
use integration_tests::new_conversation;
use local::servicenow_sim::Faults;
use serde_json::json;

const LATENCY_MS: u64 = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Run {
    create_p50: f64,
    create_p99: f64,
    lookup_p50: f64,
    lookup_p99: f64,
}

async fn run(creates: usize, concurrency: usize, lookups: usize) -> Run {
    let d = DataActionHarness::start().await;
    d.h.sim.set_faults(Faults {
        latency_ms: LATENCY_MS,
        ..Faults::default()
    });
    let d = &d;
    let mut create_times: Vec<Duration> = futures::stream::iter(0..creates)
        .map(|i| async move {
            let mut body = seed_001_body(&new_conversation());
            body["customerPhone"] = json!(format!("+1555{:07}", 1_000_000 + i));
            let started = Instant::now();
            let a = d.call("createIncident", body).await;
            assert_eq!(a.status, 200, "{}", a.body);
            started.elapsed()
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    create_times.sort();
    assert_eq!(d.h.sim.incidents().len(), creates, "one incident per call");

    let phone = json!({"phoneNumber": "+15550199888"});
    let first = d.call("lookupCaller", phone.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let before = d.h.sim.requests().len();
    let mut lookup_times = Vec::with_capacity(lookups);
    for _ in 0..lookups {
        let started = Instant::now();
        let a = d.call("lookupCaller", phone.clone()).await;
        lookup_times.push(started.elapsed());
        assert_eq!(a.status, 200);
    }
    assert_eq!(
        d.h.sim.requests().len(),
        before,
        "all warm lookups hit the cache"
    );
    lookup_times.sort();
    Run {
        create_p50: ms(percentile(&create_times, 0.5)),
        create_p99: ms(percentile(&create_times, 0.99)),
        lookup_p50: ms(percentile(&lookup_times, 0.5)),
        lookup_p99: ms(percentile(&lookup_times, 0.99)),
    }
}

#[tokio::main]
async fn main() {
    let env = integration_tests::env_count;
    let (creates, concurrency, lookups, runs) = (
        env("DA_CREATES", 50),
        env("DA_CONCURRENCY", 1),
        env("DA_LOOKUPS", 500),
        env("DA_RUNS", 3),
    );
    println!(
        "data action latency: ServiceNow simulator at {LATENCY_MS} ms per request; {creates} createIncident \
         ({concurrency} at a time, cold caller cache) and {lookups} warm lookupCaller per run; {runs} runs (medians)"
    );
    let mut results = Vec::new();
    for _ in 0..runs {
        results.push(run(creates, concurrency, lookups).await);
    }
    let m = |f: fn(&Run) -> f64| median(results.iter().map(f).collect());
    let budget = 2.0 * LATENCY_MS as f64;
    let ratio = m(|r| r.create_p99) / budget;
    println!(
        "  createIncident  p50 {:7.1} ms | p99 {:7.1} ms | p99 / (lookup + create = {budget} ms) = {ratio:.3} (target ≤ 1.2: {})",
        m(|r| r.create_p50),
        m(|r| r.create_p99),
        if ratio <= 1.2 { "met" } else { "MISSED" }
    );
    let lookup_p99 = m(|r| r.lookup_p99);
    println!(
        "  lookupCaller    p50 {:7.3} ms | p99 {:7.3} ms (warm cache; target p99 < 5 ms: {})",
        m(|r| r.lookup_p50),
        lookup_p99,
        if lookup_p99 < 5.0 { "met" } else { "MISSED" }
    );
}
