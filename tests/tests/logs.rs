//! What the functions log, at the production level (info): JSON lines with correlation ids, and never
//! secrets, credentials, caller numbers, card numbers or ServiceNow error bodies.

use base64::Engine;
use integration_tests::*;
use local::servicenow_sim::Faults;
use serde_json::{json, Value};
use servicenow_writer::Outcome;

#[tokio::test]
async fn logs_are_json_with_correlation_ids_and_leak_nothing() {
    let captured = capture_logs("info");

    let h = Harness::start().await;
    // A created incident, a ServiceNow rejection (its error body must stay out of the logs) and a bad signature.
    let created = h.post_new_event().await;
    assert_eq!(h.drain().await.len(), 1);
    h.sim.set_faults(Faults {
        fail_next: 1,
        fail_status: 400,
        fail_method: Some("POST".into()),
        ..Faults::default()
    });
    h.post_new_event().await;
    let outcomes = h.drain().await;
    assert!(
        matches!(outcomes[0].1, Outcome::DeadLettered { .. }),
        "{outcomes:?}"
    );
    assert_eq!(h.post(&created, Some("sha256=AAAA")).await.0, 401);

    let text = captured.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let number = h.sim.incidents()[0]["number"].as_str().unwrap().to_string();
    let recorded = lines
        .iter()
        .find(|l| l["fields"]["message"] == "event applied")
        .expect("an 'event applied' line");
    assert!(!recorded["fields"]["conversation_id"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(recorded["fields"]["profile"], "genesys-conversation");
    assert_eq!(recorded["fields"]["incident_number"], json!(number));
    assert!(recorded["fields"]["idempotency_key"]
        .as_str()
        .unwrap()
        .starts_with("gc-"));
    assert!(!recorded["fields"]["correlation_id"]
        .as_str()
        .unwrap()
        .is_empty());
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "permanent failure dead-lettered"));
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "webhook rejected"));

    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{SN_USER}:{SN_PASSWORD}"));
    for secret in [
        WEBHOOK_SECRET,
        SN_PASSWORD,
        basic.as_str(),
        "4155550123",
        "4111 1111",
        "billing portal outage", // free text from the payload
        "Simulated permanent rejection",
        "stack trace",
    ] {
        assert!(!text.contains(secret), "logs contain {secret:?}");
    }
}
