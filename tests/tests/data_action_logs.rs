//! data-action's audit log: one line per call with its action, conversation, outcome, status and latency,
//! and never the caller's number or name (one test: the log capture is per process).

use serde_json::json;

use integration_tests::capture_logs;
use integration_tests::data_action::{seed_001_body, DataActionHarness};
use integration_tests::new_conversation;

#[tokio::test]
async fn each_call_is_audited_without_the_callers_details() {
    let captured = capture_logs("info");
    let d = DataActionHarness::start().await;
    d.h.sim.add_user_with("Ada Lovelace", "+15550199888", true);
    let conv = new_conversation();
    assert_eq!(
        d.call("createIncident", seed_001_body(&conv)).await.status,
        200
    );
    let caller = d
        .call(
            "lookupCaller",
            json!({"phoneNumber": "+15550199888", "conversationId": "+15550199888"}),
        )
        .await;
    assert_eq!(caller.body["callerName"], "Ada Lovelace");
    assert_eq!(
        d.call("createIncident", json!({"callId": conv, "mood": 1}))
            .await
            .status,
        400
    );
    let logs = captured.text();
    let audits: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "data action answered")
        .collect();
    assert_eq!(audits.len(), 3, "{logs}");
    let f = |i: usize, k: &str| audits[i]["fields"][k].clone();
    assert_eq!(
        (
            f(0, "action"),
            f(0, "conversation_id"),
            f(0, "outcome"),
            f(0, "status")
        ),
        (
            json!("createIncident"),
            json!(conv),
            json!("ok"),
            json!(200)
        )
    );
    assert!(f(0, "latency_ms").is_u64());
    // A phone number where the conversation id belongs is not logged.
    assert_eq!(
        (f(1, "action"), f(1, "conversation_id")),
        (json!("lookupCaller"), json!(""))
    );
    assert_eq!(
        (f(2, "outcome"), f(2, "status")),
        (json!("invalid_input"), json!(400))
    );
    for secret in ["5550199888", "0199888", "Ada Lovelace", "Lovelace"] {
        assert!(!logs.contains(secret), "{secret} logged:\n{logs}");
    }
}
