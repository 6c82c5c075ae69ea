//! Cancelling and rescheduling booked callbacks against moto and the Genesys simulator: Genesys first, then
//! the reservation and its places together; an unanswered Genesys call continued, never doubled.

use std::time::Duration;

use callback_api::booking::{BookError, Booking};
use callback_api::reservations::{Reservation, Status};
use local::genesys_sim::GenesysFaults;
use serde_json::json;
use shared::retry::Deadline;

use integration_tests::callbacks::{body, booking, now};

fn deadline() -> Deadline {
    Deadline::after(Duration::from_secs(4))
}

async fn booked(b: &Booking, phone: &str) -> Reservation {
    let r = b.book(&body(phone), None, now(), deadline()).await.unwrap();
    assert_eq!(r.status, Status::Scheduled);
    r
}

async fn taken(b: &Booking, slot: &str) -> u32 {
    b.capacity
        .taken("support", slot.parse().unwrap())
        .await
        .unwrap()
}

/// Wednesday 15:00–16:00 in Berlin (14:00Z and 14:30Z).
fn afternoon() -> Vec<u8> {
    json!({"slots": [{"start": "2026-12-02T15:00", "end": "2026-12-02T16:00", "timezone": "Europe/Berlin"}]})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_cancel_disconnects_the_genesys_callback_frees_the_place_and_is_idempotent() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b, "+15550199888").await;
    assert_eq!(taken(&b, &r.slot).await, 1);
    let cancelled = b.cancel(&r.id, deadline()).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(sim.callbacks()[0].state, "disconnected");
    assert_eq!(taken(&b, &r.slot).await, 0);
    assert_eq!(
        cancelled.history.last().map(|c| c.event.as_str()),
        Some("api:cancel")
    );
    // Again: the same answer, nothing sent to Genesys, the place not given back twice.
    let patches = || {
        sim.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count()
    };
    let before = patches();
    assert_eq!(b.cancel(&r.id, deadline()).await.unwrap(), cancelled);
    assert_eq!(patches(), before);
    assert_eq!(taken(&b, &r.slot).await, 0);
    // A cancelled reservation is not rescheduled; an unknown one is not found.
    assert!(matches!(
        b.reschedule(&r.id, &afternoon(), now(), deadline()).await,
        Err(BookError::WrongState("cancelled"))
    ));
    assert!(matches!(
        b.cancel("6f1c3c2e-8d4b-4a57-9f0e-2b7d51a4c9e3", deadline())
            .await,
        Err(BookError::NotFound)
    ));
}

#[tokio::test]
async fn a_cancel_whose_answer_was_lost_is_not_sent_again() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b, "+15550199888").await;
    sim.set_faults(GenesysFaults {
        drop_after_write_next: 1,
        ..GenesysFaults::default()
    });
    // The disconnect is applied and its answer lost: the retry reads the callback first, sees it gone.
    let cancelled = b.cancel(&r.id, deadline()).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    let disconnects = sim
        .requests()
        .iter()
        .filter(|q| {
            q.method == "PATCH"
                && q.path == "/api/v2/conversations/callbacks/{id}"
                && q.status == 200
        })
        .count();
    assert_eq!(disconnects, 1);
    assert_eq!(taken(&b, &r.slot).await, 0);
}

#[tokio::test]
async fn a_cancel_is_sent_without_a_read_and_one_genesys_refuses_is_read_back() {
    let methods = |sim: &local::genesys_sim::GenesysSim| {
        sim.requests()
            .iter()
            .filter(|q| q.path == "/api/v2/conversations/callbacks/{id}")
            .map(|q| format!("{} {}", q.method, q.status))
            .collect::<Vec<_>>()
    };
    // Still scheduled in Genesys: the disconnect alone.
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b, "+15550199888").await;
    let before = methods(&sim).len();
    assert_eq!(
        b.cancel(&r.id, deadline()).await.unwrap().status,
        Status::Cancelled
    );
    assert_eq!(methods(&sim)[before..], ["PATCH 200"]);
    // Disconnected in Genesys already (the customer left; callback-events has not told the reservation yet):
    // Genesys refuses the disconnect, the read shows the callback is over, and the reservation is cancelled.
    let r = booked(&b, "+15550199777").await;
    let conversation = r.conversation_id.clone().expect("a Genesys callback");
    sim.advance_callback(&conversation, "customer.end")
        .expect("the callback ends");
    let before = methods(&sim).len();
    assert_eq!(
        b.cancel(&r.id, deadline()).await.unwrap().status,
        Status::Cancelled
    );
    assert_eq!(methods(&sim)[before..], ["PATCH 400", "GET 200"]);
    assert_eq!(taken(&b, &r.slot).await, 0);
}

#[tokio::test]
async fn a_reschedule_moves_the_callback_in_genesys_and_the_place_with_it() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b, "+15550199888").await;
    let moved = b
        .reschedule(&r.id, &afternoon(), now(), deadline())
        .await
        .unwrap();
    assert_eq!(moved.status, Status::Scheduled);
    assert_eq!(moved.slot, "2026-12-02T14:00:00Z", "15:00 in Berlin");
    assert_eq!(moved.pending_slot, None);
    assert_eq!(
        sim.callbacks()[0].scheduled_time.as_deref(),
        Some("2026-12-02T14:00:00Z")
    );
    assert_eq!(taken(&b, &r.slot).await, 0);
    assert_eq!(taken(&b, &moved.slot).await, 1);
    // Asked again: nothing changes.
    assert_eq!(
        b.reschedule(&r.id, &afternoon(), now(), deadline())
            .await
            .unwrap(),
        moved
    );
    assert_eq!(taken(&b, &moved.slot).await, 1);
    // Outside business hours: 400 naming the slot, nothing moved.
    let night = json!({"slots": [{"start": "2026-12-02T22:00", "end": "2026-12-02T23:00", "timezone": "Europe/Berlin"}]});
    let refused = b
        .reschedule(&r.id, night.to_string().as_bytes(), now(), deadline())
        .await;
    assert!(matches!(refused, Err(BookError::Invalid(_))), "{refused:?}");
    assert_eq!(
        b.reservations.get(&r.id).await.unwrap().unwrap().slot,
        moved.slot
    );
}

#[tokio::test]
async fn a_reschedule_into_full_slots_takes_the_next_with_room_or_is_409() {
    let (_sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let mine = booked(&b, "+15550199000").await;
    // Five others fill 14:00Z; 14:30Z has room.
    for i in 0..5 {
        let other = booked(&b, &format!("+1555019910{i}")).await;
        b.reschedule(&other.id, &afternoon(), now(), deadline())
            .await
            .unwrap();
    }
    assert_eq!(taken(&b, "2026-12-02T14:00:00Z").await, 5);
    let moved = b
        .reschedule(&mine.id, &afternoon(), now(), deadline())
        .await
        .unwrap();
    assert_eq!(moved.slot, "2026-12-02T14:30:00Z");
    assert_eq!(taken(&b, "2026-12-02T14:00:00Z").await, 5);
    // Only 14:00Z asked for, and full: 409 with alternatives, the reservation where it was.
    let full = json!({"slots": [{"start": "2026-12-02T15:00", "end": "2026-12-02T15:30", "timezone": "Europe/Berlin"}]});
    let answer = b
        .reschedule(&mine.id, full.to_string().as_bytes(), now(), deadline())
        .await;
    assert!(
        matches!(&answer, Err(BookError::Full { alternatives }) if !alternatives.is_empty()),
        "{answer:?}"
    );
    assert_eq!(taken(&b, "2026-12-02T14:30:00Z").await, 1);
}

#[tokio::test]
async fn an_unanswered_reschedule_holds_both_places_and_the_same_request_finishes_it() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b, "+15550199888").await;
    sim.set_faults(GenesysFaults {
        fail_next: 10,
        fail_status: 503,
        ..GenesysFaults::default()
    });
    let first = b.reschedule(&r.id, &afternoon(), now(), deadline()).await;
    assert!(
        matches!(first, Err(BookError::Unavailable { .. })),
        "{first:?}"
    );
    let held = b.reservations.get(&r.id).await.unwrap().unwrap();
    assert_eq!(held.slot, r.slot, "still where Genesys has it");
    assert_eq!(held.pending_slot.as_deref(), Some("2026-12-02T14:00:00Z"));
    assert_eq!(taken(&b, &r.slot).await, 1);
    assert_eq!(taken(&b, "2026-12-02T14:00:00Z").await, 1);
    sim.set_faults(GenesysFaults::default());
    let moved = b
        .reschedule(&r.id, &afternoon(), now(), deadline())
        .await
        .unwrap();
    assert_eq!(moved.slot, "2026-12-02T14:00:00Z");
    assert_eq!(taken(&b, &r.slot).await, 0);
    assert_eq!(taken(&b, &moved.slot).await, 1);
    // Cancelling gives back every place held.
    b.cancel(&r.id, deadline()).await.unwrap();
    assert_eq!(taken(&b, &moved.slot).await, 0);
}

/// What Genesys emits, applied as callback-events does, at the tests' clock.
async fn genesys_moves(
    b: &Booking,
    sim: &local::genesys_sim::GenesysSim,
    conversation: &str,
    kind: &str,
) {
    let event = sim.advance_callback(conversation, kind).expect("applies");
    callback_api::lifecycle::apply_at(&b.reservations, event.to_string().as_bytes(), now())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_callback_ended_in_genesys_before_its_slot_gives_its_place_back_once() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b, "+15550199888").await;
    assert_eq!(taken(&b, &r.slot).await, 1);
    // Cancelled in Genesys (or a cancel whose answer came after this event): the reservation is missed and
    // its future place free.
    genesys_moves(
        &b,
        &sim,
        r.conversation_id.as_deref().unwrap(),
        "customer.end",
    )
    .await;
    let missed = b.reservations.get(&r.id).await.unwrap().unwrap();
    assert_eq!(missed.status, Status::Missed);
    assert_eq!(taken(&b, &r.slot).await, 0);
    // A cancel now gives nothing back again.
    assert!(matches!(
        b.cancel(&r.id, deadline()).await,
        Err(BookError::WrongState("missed"))
    ));
    assert_eq!(taken(&b, &r.slot).await, 0);
}

#[tokio::test]
async fn an_event_during_an_unfinished_reschedule_frees_the_held_place() {
    let (sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b, "+15550199888").await;
    sim.set_faults(GenesysFaults {
        fail_next: 10,
        fail_status: 503,
        ..GenesysFaults::default()
    });
    assert!(b
        .reschedule(&r.id, &afternoon(), now(), deadline())
        .await
        .is_err());
    sim.set_faults(GenesysFaults::default());
    assert_eq!(taken(&b, "2026-12-02T14:00:00Z").await, 1, "held");
    // The agent calls at the old time meanwhile: connected, and the held place goes back with that move.
    genesys_moves(
        &b,
        &sim,
        r.conversation_id.as_deref().unwrap(),
        "user.start",
    )
    .await;
    let now_connected = b.reservations.get(&r.id).await.unwrap().unwrap();
    assert_eq!(now_connected.status, Status::Connected);
    assert_eq!(now_connected.pending_slot, None);
    assert_eq!(taken(&b, "2026-12-02T14:00:00Z").await, 0);
    assert_eq!(taken(&b, &r.slot).await, 1);
}

#[tokio::test]
async fn a_write_from_a_stale_read_is_refused_even_with_the_same_status() {
    let (_sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b, "+15550199888").await;
    let mut first = b.reservations.get(&r.id).await.unwrap().unwrap();
    let mut second = first.clone();
    first.pending_slot = Some("2026-12-02T14:00:00Z".into());
    assert!(b
        .reservations
        .update(&mut first, Status::Scheduled)
        .await
        .unwrap());
    second.reason = Some("overwrites the pending slot".into());
    assert!(!b
        .reservations
        .update(&mut second, Status::Scheduled)
        .await
        .unwrap());
    let stored = b.reservations.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.pending_slot.as_deref(), Some("2026-12-02T14:00:00Z"));
    assert_eq!(stored.revision, first.revision);
}

#[tokio::test]
async fn a_booking_left_unanswered_is_finished_by_callback_events_without_a_resubmission() {
    let (sim, b, resources) = integration_tests::callbacks::booking_with_resources(
        "queue-support",
        Duration::from_secs(1),
    )
    .await;
    sim.set_faults(GenesysFaults {
        drop_after_write_next: 1,
        ..GenesysFaults::default()
    });
    let first = b.book(&body("+15550199888"), None, now(), deadline()).await;
    assert!(
        matches!(first, Err(BookError::Unavailable { .. })),
        "{first:?}"
    );
    // Genesys made it (the answer was lost); its data names the reservation.
    let id = sim.callbacks()[0].data["reservationId"]
        .as_str()
        .unwrap()
        .to_string();
    // The client never comes back. callback-events gets the continuation once its delay has passed.
    let b = std::sync::Arc::try_unwrap(b).ok().expect("one owner");
    let events = callback_events::CallbackEvents {
        reservations: b.reservations.clone(),
        booking: Some(b),
        deadline: Duration::from_secs(4),
    };
    let sqs = aws_sdk_sqs::Client::new(&integration_tests::aws_config().await);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mut status = Status::Requested;
    while status == Status::Requested && std::time::Instant::now() < until {
        local::callback_pumps::pump_callback_events(
            &sqs,
            &resources.callback_events_queue_url,
            &events,
        )
        .await
        .unwrap();
        status = events.reservations.get(&id).await.unwrap().unwrap().status;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(status, Status::Scheduled);
    assert_eq!(sim.callbacks().len(), 1, "found, not made again");
}

#[tokio::test]
async fn an_event_of_a_callback_whose_create_answer_was_lost_still_finds_its_reservation() {
    let (sim, b, resources) = integration_tests::callbacks::booking_with_resources(
        "queue-support",
        Duration::from_secs(30),
    )
    .await;
    sim.set_faults(GenesysFaults {
        drop_after_write_next: 1,
        ..GenesysFaults::default()
    });
    assert!(b
        .book(&body("+15550199888"), None, now(), deadline())
        .await
        .is_err());
    let callback = sim.callbacks()[0].clone();
    let id = callback.data["reservationId"].as_str().unwrap().to_string();
    // Genesys moves it on before the booking learned the conversation (settle window: 30 s).
    let event = sim
        .advance_callback(&callback.conversation_id, "user.start")
        .unwrap();
    let b = std::sync::Arc::try_unwrap(b).ok().expect("one owner");
    let events = callback_events::CallbackEvents {
        reservations: b.reservations.clone(),
        booking: Some(b),
        deadline: Duration::from_secs(4),
    };
    let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
    record.message_id = Some("m-1".into());
    record.body = Some(event.to_string());
    let response = callback_events::process_batch(&events, vec![record]).await;
    assert!(response.batch_item_failures.is_empty());
    let stored = events.reservations.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Connected);
    // Not a callback of ours: still ignored (and acknowledged).
    let mut other = aws_lambda_events::event::sqs::SqsMessage::default();
    other.message_id = Some("m-2".into());
    other.body = Some(
        json!({"version": "0", "id": "x", "detail-type": "v2.detail.events.conversation.{id}.user.start",
               "source": "aws.partner/genesys.com", "account": "1", "time": "2026-12-02T09:00:00Z",
               "region": "us-east-1", "resources": [],
               "detail": {"topicName": "v2.detail.events.conversation.not-ours.user.start",
                          "eventBody": {"conversationId": "not-ours", "mediaType": "callback", "queueId": "queue-support"}}})
        .to_string(),
    );
    let response = callback_events::process_batch(&events, vec![other]).await;
    assert!(response.batch_item_failures.is_empty());
    drop(resources);
}

/// The change lease a cancel or a reschedule runs under.
async fn change_lease(table: &str, id: &str) -> Option<String> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&integration_tests::aws_config().await);
    shared::idempotency::read_item(&dynamodb, table, &format!("callback-change:{id}"))
        .await
        .unwrap()
        .and_then(|item| shared::idempotency::get_s(&item, "lease_token").map(str::to_string))
}

#[tokio::test]
async fn a_change_releases_its_lease_with_its_last_write_and_one_taken_over_writes_nothing() {
    let (sim, b, resources) = integration_tests::callbacks::booking_with_resources(
        "queue-support",
        Duration::from_secs(1),
    )
    .await;
    let table = resources.callbacks_table.clone();
    // Released with the last transaction: none is left, and the next change starts at once.
    let r = booked(&b, "+15550199888").await;
    let moved = b
        .reschedule(&r.id, &afternoon(), now(), deadline())
        .await
        .unwrap();
    assert_eq!(change_lease(&table, &r.id).await, None);
    let cancelled = b.cancel(&r.id, deadline()).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(change_lease(&table, &r.id).await, None);
    assert_eq!(taken(&b, &moved.slot).await, 0);

    // A lease taken over while Genesys is asked: the cancel writes nothing and answers 503; once the other
    // holder is done, the same cancel finishes (Genesys refuses a second disconnect; the read shows it over).
    let r = booked(&b, "+15550199777").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&integration_tests::aws_config().await);
    // Long enough for the takeover below (two moto calls) to land while the disconnect is on its way.
    sim.set_faults(GenesysFaults {
        latency_ms: 1000,
        ..Default::default()
    });
    let cancel = tokio::spawn({
        let b = b.clone();
        let id = r.id.clone();
        async move { b.cancel(&id, deadline()).await }
    });
    // The lease is taken; the reservation's read (moto) follows at once, then the disconnect (1 s).
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while change_lease(&table, &r.id).await.is_none() {
        assert!(
            std::time::Instant::now() < give_up,
            "the lease was never taken"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let key = format!("callback-change:{}", r.id);
    let token = integration_tests::take_over(&b.claims, &dynamodb, &table, &key, "change").await;
    let answer = cancel.await.unwrap();
    assert!(
        matches!(&answer, Err(BookError::Unavailable { reason, .. }) if reason.contains("lease")),
        "{answer:?}"
    );
    assert_eq!(
        b.reservations.get(&r.id).await.unwrap().unwrap().status,
        Status::Scheduled
    );
    assert_eq!(taken(&b, &r.slot).await, 1, "the place is still held");
    assert_eq!(
        change_lease(&table, &r.id).await,
        Some(token.clone()),
        "the other holder's lease stays"
    );

    sim.set_faults(GenesysFaults::default());
    assert!(b.claims.forget(&key, &token).await.unwrap());
    let disconnects = || {
        sim.requests()
            .iter()
            .filter(|q| q.method == "PATCH" && q.status == 200)
            .count()
    };
    let sent = disconnects();
    let cancelled = b.cancel(&r.id, deadline()).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(disconnects(), sent, "the callback was disconnected already");
    assert_eq!(taken(&b, &r.slot).await, 0);
    assert_eq!(change_lease(&table, &r.id).await, None);
}

/// The id of a reservation stored in `table` other than `known`, once one is (at most 10 s).
async fn new_reservation(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    known: &[&str],
) -> String {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            std::time::Instant::now() < give_up,
            "the reservation was never stored"
        );
        let page = dynamodb.scan().table_name(table).send().await.unwrap();
        let found = page.items().iter().find_map(|item| {
            let key = shared::idempotency::get_s(item, "id")?;
            let id = key.strip_prefix("callback:")?;
            (!known.contains(&id)).then(|| id.to_string())
        });
        if let Some(id) = found {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A booking claim's status, outcome and lease token.
async fn booking_claim(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    idempotency_key: &str,
) -> (Option<String>, Option<String>, Option<String>) {
    let item = shared::idempotency::read_item(
        dynamodb,
        table,
        &format!("callback-booking:key:{idempotency_key}"),
    )
    .await
    .unwrap()
    .expect("the claim is stored");
    let get = |name: &str| shared::idempotency::get_s(&item, name).map(str::to_string);
    (get("status"), get("incident_number"), get("lease_token"))
}

#[tokio::test]
async fn a_booking_whose_reservation_moved_during_its_create_still_indexes_the_conversation() {
    let (sim, b, resources) = integration_tests::callbacks::booking_with_resources(
        "queue-support",
        Duration::from_secs(1),
    )
    .await;
    sim.set_faults(GenesysFaults {
        latency_ms: 600,
        ..Default::default()
    });
    let book = tokio::spawn({
        let b = b.clone();
        async move { b.book(&body("+15550199888"), None, now(), deadline()).await }
    });
    // The reservation is stored before the create is sent; it moves while Genesys is answering.
    let dynamodb = aws_sdk_dynamodb::Client::new(&integration_tests::aws_config().await);
    let id = new_reservation(&dynamodb, &resources.callbacks_table, &[]).await;
    let mut stored = b.reservations.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Requested);
    assert!(b
        .reservations
        .update(&mut stored, Status::Requested)
        .await
        .unwrap());
    // The scheduling write finds it moved: nothing overwritten, the stored one answered, the conversation
    // indexed all the same.
    let answer = book.await.unwrap().unwrap();
    assert_eq!(answer, stored);
    let conversation = sim.callbacks()[0].conversation_id.clone();
    let indexed = b.reservations.by_conversation(&conversation).await.unwrap();
    assert_eq!(indexed.map(|r| r.id), Some(id));
}

#[tokio::test]
async fn a_booking_completes_its_claim_with_its_scheduling_write_or_leaves_one_taken_over_to_its_holder(
) {
    let (sim, b, resources) = integration_tests::callbacks::booking_with_resources(
        "queue-support",
        Duration::from_secs(1),
    )
    .await;
    let table = resources.callbacks_table.clone();
    let dynamodb = aws_sdk_dynamodb::Client::new(&integration_tests::aws_config().await);
    let r = b
        .book(&body("+15550199888"), Some("plain-1"), now(), deadline())
        .await
        .unwrap();
    assert_eq!(r.status, Status::Scheduled);
    assert_eq!(
        booking_claim(&dynamodb, &table, "plain-1").await,
        (Some("COMPLETED".into()), Some("scheduled".into()), None)
    );
    // Resubmitted: the completed claim answers the stored reservation, and nothing is created again.
    let again = b
        .book(&body("+15550199888"), Some("plain-1"), now(), deadline())
        .await
        .unwrap();
    assert_eq!(again, r);
    assert_eq!(sim.callbacks().len(), 1);

    // The claim taken over while Genesys creates the callback: the scheduling write goes without the
    // completion, which stays the new holder's.
    sim.set_faults(GenesysFaults {
        latency_ms: 1000,
        ..Default::default()
    });
    let book = tokio::spawn({
        let b = b.clone();
        async move {
            b.book(&body("+15550199777"), Some("taken-1"), now(), deadline())
                .await
        }
    });
    let id = new_reservation(&dynamodb, &table, &[&r.id]).await;
    let token = integration_tests::take_over(
        &b.claims,
        &dynamodb,
        &table,
        "callback-booking:key:taken-1",
        "other",
    )
    .await;
    // Taken over while the create is still on its way, not after the booking was done.
    assert!(!book.is_finished());
    assert_eq!(
        b.reservations.get(&id).await.unwrap().unwrap().status,
        Status::Requested
    );
    let answer = book.await.unwrap().unwrap();
    assert_eq!(answer.id, id);
    assert_eq!(answer.status, Status::Scheduled);
    assert_eq!(
        b.reservations.get(&id).await.unwrap().unwrap().status,
        Status::Scheduled
    );
    let conversation = answer.conversation_id.clone().unwrap();
    let indexed = b.reservations.by_conversation(&conversation).await.unwrap();
    assert_eq!(indexed.map(|r| r.id), Some(id));
    let (status, _, lease) = booking_claim(&dynamodb, &table, "taken-1").await;
    assert_ne!(status.as_deref(), Some("COMPLETED"));
    assert_eq!(lease, Some(token), "the new holder's claim stays");
}
