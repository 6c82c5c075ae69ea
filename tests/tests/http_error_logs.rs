//! A ServiceNow answer that cannot be read — a 200 with an HTML page, a body cut off mid-read — on the
//! caller lookup, whose URL holds the caller's phone number (`sysparm_query=phone=…`): the logs name the
//! failure, never the number nor the URL.

use integration_tests::*;
use local::servicenow_sim::Faults;
use serde_json::json;

#[tokio::test]
async fn unreadable_caller_lookups_log_no_phone_number_and_no_url() {
    let captured = capture_logs("info");

    let h = Harness::start().await;
    let mut outcomes = Vec::new();
    // Another caller each time: lookups are cached per container.
    for (phone, faults) in [
        (
            "+14155550123",
            Faults {
                html_next: 1,
                ..Faults::default()
            },
        ),
        (
            "+14155550188",
            Faults {
                cut_body_next: 1,
                ..Faults::default()
            },
        ),
    ] {
        h.sim.add_user("Pat Caller", phone);
        h.sim.set_faults(faults);
        let event = webhook_event(&new_conversation(), json!({"ani": format!("tel:{phone}")}));
        assert_eq!(h.post_signed(&event.to_string()).await.0, 202);
        outcomes.extend(h.drain().await);
        let left = h.sim.faults();
        assert_eq!(
            (left.html_next, left.cut_body_next),
            (0, 0),
            "the fault fired"
        );
    }
    assert_eq!(h.sim.incidents().len(), 2, "{outcomes:?}");
    assert!(
        h.sim
            .requests()
            .iter()
            .any(|r| r.path == "/api/now/table/sys_user" && r.status == 200),
        "the caller lookups were answered"
    );

    let text = captured.text();
    assert!(
        text.contains("ServiceNow answer could not be read"),
        "the failures were logged: {text}"
    );
    let sim_host = h.sim_url.trim_start_matches("http://");
    for leak in [
        "4155550123",
        "4155550188",
        "+1415",
        "sysparm",
        "/api/now",
        "sys_user?",
        sim_host,
    ] {
        assert!(!text.contains(leak), "logs contain {leak:?}");
    }
}
