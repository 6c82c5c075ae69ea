//! Load run: a backlog of events drained by several writer containers against a ServiceNow that allows
//! 5 requests/s (50 per 10 s window), with and without the shared rate limiter. Prints, per mode, the
//! medians over the runs of: the share of the limit achieved, the share of requests answered 429, and
//! the incidents created (duplicates would show here). Bounded: `LOAD_EVENTS` events (150), `LOAD_RUNS`
//! runs (3), each drain cut off after 180 s.

use std::time::{Duration, Instant};

use integration_tests::*;
use local::poller::Poller;
use local::servicenow_sim::{Faults, RateLimit};
use serde_json::json;

const LIMIT: u32 = 50;
const WINDOW_SECS: u64 = 10;
const CONTAINERS: u32 = 5;

struct Run {
    elapsed: Duration,
    requests: usize,
    throttled: usize,
    incidents: usize,
}

async fn run(events: usize, limiter: bool) -> Run {
    let opts = Options {
        rate_limiter: limiter,
        rate_limit_containers: CONTAINERS,
        invocation_timeout: Duration::from_secs(20),
        max_receive_count: 50,
        ..Options::default()
    };
    let h = Harness::with(opts.clone()).await;
    for _ in 0..events {
        h.enqueue_raw(&webhook_event(&new_conversation(), json!({})).to_string())
            .await;
    }
    h.sim.set_faults(Faults {
        rate_limit: Some(RateLimit {
            limit: LIMIT,
            window_secs: WINDOW_SECS,
        }),
        ..Faults::default()
    });
    // Each container: its own writer (clients, limiter) and its own invocations, 5 records at a time.
    let writers: Vec<_> = (0..CONTAINERS).map(|_| h.another_writer(&opts)).collect();
    let pollers: Vec<Poller> = (0..CONTAINERS)
        .map(|_| Poller {
            sqs: h.sqs.clone(),
            queue_url: h.resources.queue_url.clone(),
            queue_arn: h.resources.queue_arn.clone(),
            batch_size: 5,
            invocation_timeout: opts.invocation_timeout,
            wait_time_secs: 1,
        })
        .collect();
    let started = Instant::now();
    let drains = pollers
        .iter()
        .zip(&writers)
        .map(|(p, w)| p.drain(w, Duration::from_secs(180)));
    for drained in futures::future::join_all(drains).await {
        drained.expect("the backlog drains within the bound");
    }
    let elapsed = started.elapsed();
    let api: Vec<_> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/"))
        .collect();
    Run {
        elapsed,
        requests: api.len(),
        throttled: api.iter().filter(|r| r.status == 429).count(),
        incidents: h.sim.incidents().len(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let env = integration_tests::env_count;
    let (events, runs) = (env("LOAD_EVENTS", 150), env("LOAD_RUNS", 3));
    let rate = f64::from(LIMIT) / WINDOW_SECS as f64;
    println!(
        "throttled drain: {events} events, ServiceNow allowing {rate} requests/s, {CONTAINERS} containers × 5 \
         concurrent records, {runs} runs per mode (medians)"
    );
    for (name, limiter) in [("without limiter", false), ("with limiter", true)] {
        let mut results = Vec::new();
        for _ in 0..runs {
            results.push(run(events, limiter).await);
        }
        let of_limit = |r: &Run| {
            let accepted = (r.requests - r.throttled) as f64;
            accepted / r.elapsed.as_secs_f64() / rate
        };
        println!(
            "  {name:16} drained in {:5.1} s | {:5.1} % of the limit | {:5.1} % of requests throttled | \
             {} incidents for {events} events",
            median(results.iter().map(|r| r.elapsed.as_secs_f64()).collect()),
            100.0 * median(results.iter().map(of_limit).collect()),
            100.0
                * median(
                    results
                        .iter()
                        .map(|r| r.throttled as f64 / r.requests.max(1) as f64)
                        .collect()
                ),
            median(results.iter().map(|r| r.incidents as f64).collect()),
        );
    }
}
