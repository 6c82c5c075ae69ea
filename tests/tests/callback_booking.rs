//! Booking callbacks against moto and the Genesys simulator: one reservation and one callback per submission,
//! capacity per slot under concurrency, Genesys throttling, refusals and unanswered creates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use callback_api::booking::{BookError, Booking};
use callback_api::reservations::Status;
use local::genesys_sim::GenesysFaults;
use serde_json::{json, Value};
use shared::retry::Deadline;

use integration_tests::callbacks::{body, booking, now};

async fn book(
    b: &Booking,
    body: &[u8],
) -> Result<callback_api::reservations::Reservation, BookError> {
    b.book(body, None, now(), Deadline::after(Duration::from_secs(4)))
        .await
}

#[tokio::test]
async fn a_booking_becomes_one_scheduled_genesys_callback_carrying_the_reservation() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = book(&b, &body("+15550199888")).await.unwrap();
    assert_eq!(r.status, Status::Scheduled);
    assert_eq!(r.slot, "2026-12-02T09:00:00Z", "10:00 in Berlin (CET)");
    let callbacks = sim.callbacks();
    assert_eq!(callbacks.len(), 1);
    assert_eq!(
        Some(&callbacks[0].conversation_id),
        r.conversation_id.as_ref()
    );
    assert_eq!(callbacks[0].data["reservationId"], json!(r.id));
    assert_eq!(callbacks[0].data["incidentNumber"], "INC0010001");
    assert_eq!(callbacks[0].numbers, ["+15550199888"]);
    assert_eq!(b.reservations.get(&r.id).await.unwrap(), Some(r.clone()));
    // Submitted again, and three times at once: the same reservation, still one callback.
    let again = book(&b, &body("+15550199888")).await.unwrap();
    assert_eq!(again, r);
    let same = body("+15550199888");
    let (x, y, z) = tokio::join!(book(&b, &same), book(&b, &same), book(&b, &same));
    for got in [x, y, z] {
        assert_eq!(got.unwrap().id, r.id);
    }
    assert_eq!(sim.callbacks().len(), 1);
}

#[tokio::test]
async fn twenty_concurrent_bookings_for_two_slots_of_five_give_ten_callbacks_and_ten_409s() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let bodies: Vec<Vec<u8>> = (0..20).map(|i| body(&format!("+1555010{i:04}"))).collect();
    let results = futures::future::join_all(bodies.iter().map(|body| book(&b, body))).await;
    let booked: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(booked.len(), 10);
    let mut per_slot: HashMap<&str, usize> = HashMap::new();
    for r in &booked {
        *per_slot.entry(r.slot.as_str()).or_default() += 1;
    }
    assert_eq!(
        per_slot,
        HashMap::from([("2026-12-02T09:00:00Z", 5), ("2026-12-02T09:30:00Z", 5)])
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        match r {
            BookError::Full { alternatives } => {
                assert_eq!(
                    alternatives.first().map(String::as_str),
                    Some("2026-12-02T10:00:00Z"),
                    "{alternatives:?}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sim.callbacks().len(), 10);
}

/// A new claim's booking writes its reservation without reading it first; one made before its claim was
/// gone (kept shorter than reservations) is still found, also when every slot it could take is full now.
#[tokio::test]
async fn a_resubmission_whose_claim_is_gone_finds_its_reservation_even_with_the_slots_full() {
    let (sim, b, resources) = integration_tests::callbacks::booking_with_resources(
        "queue-support",
        Duration::from_secs(1),
    )
    .await;
    let deadline = || Deadline::after(Duration::from_secs(4));
    let mine = body("+15550199888");
    let first = b
        .book(&mine, Some("client-key-0001"), now(), deadline())
        .await
        .unwrap();
    assert_eq!(first.status, Status::Scheduled);
    let others: Vec<Vec<u8>> = (0..9).map(|i| body(&format!("+1555020{i:04}"))).collect();
    for other in &others {
        book(&b, other).await.unwrap();
    }
    assert!(matches!(
        book(&b, &body("+15550209999")).await,
        Err(BookError::Full { .. })
    ));
    let ddb = aws_sdk_dynamodb::Client::new(&integration_tests::aws_config().await);
    ddb.delete_item()
        .table_name(&resources.callbacks_table)
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S(
                "callback-booking:key:client-key-0001".into(),
            ),
        )
        .send()
        .await
        .unwrap();
    let again = b
        .book(&mine, Some("client-key-0001"), now(), deadline())
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(sim.callbacks().len(), 10, "one callback per booking");
    let fresh = b
        .book(
            &body("+15550188777"),
            Some("client-key-0002"),
            now(),
            deadline(),
        )
        .await;
    assert!(matches!(fresh, Err(BookError::Full { .. })), "{fresh:?}");
}

#[tokio::test]
async fn genesys_throttling_defers_the_callback_and_a_resubmission_makes_exactly_one() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    sim.set_faults(GenesysFaults {
        throttle_next: 5,
        retry_after_secs: 2,
        ..GenesysFaults::default()
    });
    let first = book(&b, &body("+15550199888")).await;
    assert!(
        matches!(first, Err(BookError::Unavailable { .. })),
        "{first:?}"
    );
    assert!(sim.callbacks().is_empty());
    sim.set_faults(GenesysFaults::default());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = book(&b, &body("+15550199888")).await.unwrap();
    assert_eq!(later.status, Status::Scheduled);
    assert_eq!(sim.callbacks().len(), 1);
    // The slot was taken once.
    assert_eq!(
        b.capacity
            .taken("support", later.slot.parse().unwrap())
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn an_unanswered_create_is_found_not_repeated() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    sim.set_faults(GenesysFaults {
        drop_after_write_next: 1,
        ..GenesysFaults::default()
    });
    let first = book(&b, &body("+15550199888")).await;
    assert!(
        matches!(first, Err(BookError::Unavailable { .. })),
        "{first:?}"
    );
    assert_eq!(
        sim.callbacks().len(),
        1,
        "Genesys made it; the answer was lost"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = book(&b, &body("+15550199888")).await.unwrap();
    assert_eq!(later.status, Status::Scheduled);
    assert_eq!(
        later.conversation_id.as_deref(),
        Some(sim.callbacks()[0].conversation_id.as_str())
    );
    assert_eq!(sim.callbacks().len(), 1);
}

#[tokio::test]
async fn a_booking_cut_off_during_its_create_is_settled_and_ends_with_one_callback() {
    let (sim, b) = booking("queue-support", Duration::from_secs(3)).await;
    sim.set_faults(GenesysFaults {
        latency_ms: 1500,
        ..GenesysFaults::default()
    });
    // The function is stopped while Genesys holds the create: the booking's future is dropped mid-request.
    let cut = tokio::time::timeout(
        Duration::from_millis(700),
        b.book(
            &body("+15550199888"),
            Some("cut-off-booking-1"),
            now(),
            Deadline::after(Duration::from_secs(4)),
        ),
    )
    .await;
    assert!(cut.is_err(), "{cut:?}");
    let id = callback_api::booking::reservation_id_for_idempotency_key("cut-off-booking-1");
    let stored = b.reservations.get(&id).await.unwrap().expect("reserved");
    assert_eq!(stored.status, Status::Requested);
    assert!(
        stored.create_sent_at.is_some(),
        "the create on its way is on record before it is sent"
    );
    sim.set_faults(GenesysFaults::default());
    // Continued (as callback-events does) only once the settle window is over: the create Genesys may
    // have applied is looked for before another is made.
    let early = b.resume(&id, Deadline::after(Duration::from_secs(4))).await;
    assert!(
        matches!(early, Err(BookError::Unavailable { .. })),
        "{early:?}"
    );
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let resumed = b
        .resume(&id, Deadline::after(Duration::from_secs(4)))
        .await
        .unwrap();
    assert_eq!(resumed.status, Status::Scheduled);
    assert_eq!(sim.callbacks().len(), 1);
    assert_eq!(
        resumed.conversation_id.as_deref(),
        Some(sim.callbacks()[0].conversation_id.as_str())
    );
}

#[tokio::test]
async fn a_genesys_refusal_fails_the_reservation_and_frees_its_slot() {
    let (sim, b) = booking("queue-retired", Duration::from_secs(1)).await;
    let r = book(&b, &body("+15550199888")).await.unwrap();
    assert_eq!(r.status, Status::Failed);
    assert!(
        r.failure_reason.as_deref().unwrap().contains("HTTP 400"),
        "{r:?}"
    );
    assert_eq!(
        b.reservations.get(&r.id).await.unwrap().unwrap().status,
        Status::Failed
    );
    assert_eq!(
        b.capacity
            .taken("support", r.slot.parse().unwrap())
            .await
            .unwrap(),
        0
    );
    assert!(sim.callbacks().is_empty());
}

#[tokio::test]
async fn bad_bookings_name_every_field_and_write_nothing() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let bad = json!({"name": "", "phone": "call me", "queue": "support", "channel": "pigeon",
                     "slots": [{"start": "2026-12-05T10:00", "end": "2026-12-05T11:00", "timezone": "Europe/Berlin"}]});
    match book(&b, bad.to_string().as_bytes()).await {
        Err(BookError::Invalid(fields)) => {
            let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
            assert_eq!(names, ["phone", "name", "channel", "slots[0].start"]);
            assert!(!format!("{fields:?}").contains("call me"));
        }
        other => panic!("{other:?}"),
    }
    let mut unknown: Value = serde_json::from_slice(&body("+15550199888")).unwrap();
    unknown["queue"] = json!("sales");
    assert_eq!(
        book(&b, unknown.to_string().as_bytes()).await,
        Err(BookError::UnknownQueue)
    );
    assert!(matches!(
        book(&b, b"{\"surprise\": 1}").await,
        Err(BookError::Invalid(_))
    ));
    // A value of the wrong type is named by its field, never echoed (serde's messages quote it).
    let typed =
        json!({"name": "Jane Doe", "phone": 4915112345678u64, "queue": "support", "slots": []});
    match book(&b, typed.to_string().as_bytes()).await {
        Err(BookError::Invalid(fields)) => {
            assert_eq!(fields[0].field, "phone");
            let text = format!("{fields:?}");
            assert!(
                !text.contains("4915112345678") && !text.contains("Jane"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(sim.callbacks().is_empty());
}

#[tokio::test]
async fn the_http_api_books_and_reads_without_showing_the_callers_details() {
    let (_sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let b = Arc::try_unwrap(b).ok().expect("one owner");
    let api = callback_api::api::CallbackApi {
        booking: b,
        access: callback_api::access::AccessKeys::from_secret(
            integration_tests::CALLBACK_ACCESS_KEY,
        ),
        live_token_ttl: Duration::from_secs(900),
        deadline: Duration::from_secs(4),
        max_body_bytes: 16 * 1024,
    };
    // The real clock: a slot tomorrow-or-later on a weekday, 10:00–11:00 in Berlin.
    let day = integration_tests::callbacks::next_weekday();
    let body = json!({"name": "Ada Lovelace", "phone": "+15550199888", "queue": "support",
                      "slots": [{"start": format!("{day}T10:00"), "end": format!("{day}T11:00"), "timezone": "Europe/Berlin"}]});
    let mut headers = http::HeaderMap::new();
    headers.insert("idempotency-key", "booking-0001-abcdef".parse().unwrap());
    let reply = api
        .handle(
            &http::Method::POST,
            "/callbacks",
            &headers,
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["status"], "scheduled");
    let text = reply.body.to_string();
    assert!(
        !text.contains("5550199888") && !text.contains("Lovelace"),
        "{text}"
    );
    let id = reply.body["id"].as_str().unwrap().to_string();
    let manage = reply.body["manage_token"].as_str().unwrap().to_string();
    assert!(reply.body["live_token"].as_str().is_some());
    // Without the booking's token, or with another reservation's, nothing is shown.
    let unauthorised = api
        .handle(
            &http::Method::GET,
            &format!("/callbacks/{id}"),
            &headers,
            b"",
        )
        .await;
    assert_eq!(unauthorised.status, 401);
    headers.insert("authorization", format!("Bearer {manage}").parse().unwrap());
    let read = api
        .handle(
            &http::Method::GET,
            &format!("/callbacks/{id}"),
            &headers,
            b"",
        )
        .await;
    assert_eq!(read.status, 200);
    for field in ["id", "status", "slot", "queue"] {
        assert_eq!(read.body[field], reply.body[field], "{field}");
    }
    let other = api
        .handle(
            &http::Method::GET,
            "/callbacks/6f1c3c2e-8d4b-4a57-9f0e-2b7d51a4c9e3",
            &headers,
            b"",
        )
        .await;
    assert_eq!(other.status, 401);
    let bad = api
        .handle(
            &http::Method::POST,
            "/callbacks",
            &http::HeaderMap::new(),
            br#"{"name": "x"}"#,
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    // An unknown queue says which ones can be booked.
    let mut elsewhere = body.clone();
    elsewhere["queue"] = json!("queue_12345");
    let unknown = api
        .handle(
            &http::Method::POST,
            "/callbacks",
            &http::HeaderMap::new(),
            elsewhere.to_string().as_bytes(),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.body["known_queues"], json!(["support"]));
}

#[tokio::test]
async fn the_reservation_guides_payload_is_answered_with_what_to_change_then_books() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let seed: Value = serde_json::from_str(include_str!(
        "../../shared/tests/fixtures/seed-004-reservation.json"
    ))
    .unwrap();
    // As the guide sends it: first the per-request concurrency limit is refused, naming it; then its queue is
    // unknown (the API lists the configured ones); then its 2024 slot is in the past.
    let first = book(&b, seed.to_string().as_bytes()).await;
    let Err(BookError::Invalid(fields)) = &first else {
        panic!("{first:?}")
    };
    let named: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(named, ["concurrency_limit"]);
    let mut step = seed.clone();
    step.as_object_mut().unwrap().remove("concurrency_limit");
    assert_eq!(
        book(&b, step.to_string().as_bytes()).await,
        Err(BookError::UnknownQueue)
    );
    step["queue_id"] = json!("support");
    let past = book(&b, step.to_string().as_bytes()).await;
    let Err(BookError::Invalid(fields)) = &past else {
        panic!("{past:?}")
    };
    assert!(
        fields.iter().all(|f| f.field.starts_with("slots[0]")),
        "{fields:?}"
    );
    assert!(sim.callbacks().is_empty());
    // Its names kept, with a configured queue and a slot that can be booked: one callback, and its
    // callback_id is the idempotency key.
    let mut fixed = seed.clone();
    fixed.as_object_mut().unwrap().remove("concurrency_limit");
    fixed["queue_id"] = json!("support");
    fixed["time_slot_matrix"] =
        json!([{"start": "2026-12-02T04:00:00-05:00", "end": "2026-12-02T05:00:00-05:00"}]);
    let r = book(&b, fixed.to_string().as_bytes()).await.unwrap();
    assert_eq!(r.status, Status::Scheduled);
    assert_eq!(r.phone, "+14155550199");
    assert_eq!(r.name, "Web callback");
    fixed["reason"] = json!("the same callback_id with another reason");
    assert!(matches!(
        book(&b, fixed.to_string().as_bytes()).await,
        Err(BookError::Conflict)
    ));
    assert_eq!(sim.callbacks().len(), 1);
}
