//! A ServiceNow answer that cannot be read — a 200 with an HTML page, a body cut off mid-read — on the
//! caller lookup, whose URL holds the caller's phone number (`sysparm_query=phone=…`): the logs name the
//! failure, never the number nor the URL.

use integration_tests::*;
use local::servicenow_sim::Faults;

#[tokio::test]
async fn unreadable_caller_lookups_log_no_phone_number_and_no_url() {
    let captured = capture_logs("info");

    let h = Harness::start().await;
    h.sim.add_user("Pat Caller", "+14155550123");
    let mut outcomes = Vec::new();
    for faults in [
        Faults {
            html_next: 1,
            ..Faults::default()
        },
        Faults {
            cut_body_next: 1,
            ..Faults::default()
        },
    ] {
        h.sim.set_faults(faults);
        h.post_new_event().await;
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
        "+1415",
        "sysparm",
        "/api/now",
        "sys_user?",
        sim_host,
    ] {
        assert!(!text.contains(leak), "logs contain {leak:?}");
    }
}
