//! callback-api's Genesys calls against the Genesys simulator: a callback created with the reservation's data,
//! rescheduled; a bad number or unknown queue refused (400, the status only); throttling retryable.

use std::collections::BTreeMap;
use std::time::Duration;

use callback_api::genesys::{create, reschedule, CallbackRequest};
use local::genesys_sim::{GenesysFaults, GenesysSim};
use shared::genesys::{ApiError, GenesysApi};

async fn api() -> (GenesysSim, GenesysApi) {
    integration_tests::genesys_with_api().await
}

fn request(number: &str, queue: &str) -> CallbackRequest {
    CallbackRequest {
        queue_id: queue.into(),
        name: "Ada Lovelace".into(),
        number: number.into(),
        scheduled: "2026-12-02T09:00:00Z".parse().unwrap(),
        data: BTreeMap::from([
            ("reservationId".to_string(), "r-1".to_string()),
            ("incidentNumber".to_string(), "INC0010001".to_string()),
        ]),
    }
}

#[tokio::test]
async fn a_callback_carries_the_reservation_and_can_be_rescheduled() {
    let (sim, api) = api().await;
    let id = create(&api, &request("+15550199888", "queue-support"))
        .await
        .unwrap();
    let held = sim.callbacks();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].conversation_id, id);
    assert_eq!(held[0].numbers, ["+15550199888"]);
    assert_eq!(held[0].data["reservationId"], "r-1");
    assert_eq!(held[0].data["incidentNumber"], "INC0010001");
    assert_eq!(
        held[0].scheduled_time.as_deref(),
        Some("2026-12-02T09:00:00Z")
    );
    reschedule(&api, &id, "2026-12-02T10:30:00Z".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        sim.callbacks()[0].scheduled_time.as_deref(),
        Some("2026-12-02T10:30:00Z")
    );
    let gone = reschedule(
        &api,
        "no-such-conversation",
        "2026-12-02T10:30:00Z".parse().unwrap(),
    )
    .await;
    assert_eq!(
        gone,
        Err(ApiError::Refused {
            status: 404,
            what: "callback"
        })
    );
}

#[tokio::test]
async fn a_bad_number_or_unknown_queue_is_refused_and_throttling_is_retryable() {
    let (sim, api) = api().await;
    for (number, queue) in [("call me", "queue-support"), ("+15550199888", "queue-nope")] {
        let refused = create(&api, &request(number, queue)).await;
        assert_eq!(
            refused,
            Err(ApiError::Refused {
                status: 400,
                what: "callback"
            }),
            "{number} {queue}"
        );
    }
    sim.set_faults(GenesysFaults {
        throttle_next: 1,
        retry_after_secs: 3,
        ..GenesysFaults::default()
    });
    match create(&api, &request("+15550199888", "queue-support")).await {
        Err(ApiError::Retry {
            hint, ambiguous, ..
        }) => {
            assert_eq!(hint, Some(Duration::from_secs(3)));
            assert!(!ambiguous, "a 429 was not processed");
        }
        other => panic!("{other:?}"),
    }
    assert!(sim.callbacks().is_empty());
}
