//! A booked callback's lifecycle from Genesys conversation events (EventBridge envelopes): forwards only,
//! once each, whatever the order or repetition of the events.

use std::time::Duration;

use callback_api::lifecycle::{apply, Applied};
use callback_api::reservations::Status;
use integration_tests::callbacks::{booked, booking, now};
use serde_json::json;

/// A Genesys EventBridge conversation detail event of `kind` for callback conversation `conversation`.
fn event(conversation: &str, kind: &str, id: &str, media: &str) -> Vec<u8> {
    json!({"version": "0", "id": id, "detail-type": format!("v2.detail.events.conversation.{{id}}.{kind}"),
           "source": "aws.partner/genesys.com/cloud/org/callbacks", "account": "123456789012",
           "time": "2026-12-02T09:00:05Z", "region": "us-east-1", "resources": [],
           "detail": {"topicName": format!("v2.detail.events.conversation.{conversation}.{kind}"), "version": "2",
                      "eventBody": {"conversationId": conversation, "mediaType": media},
                      "timestamp": "2026-12-02T09:00:05.000Z"}})
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn statuses_move_forwards_once_whatever_the_order() {
    let (_sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b).await;
    let conversation = r.conversation_id.clone().unwrap();
    let store = &b.reservations;
    let moved = apply(
        store,
        &event(&conversation, "user.start", "e-1", "callback"),
    )
    .await
    .unwrap();
    assert_eq!(
        moved,
        Applied::Moved {
            reservation: r.id.clone(),
            to: Status::Connected
        }
    );
    // The same event again, and an earlier one late: nothing moves.
    for (kind, id) in [("user.start", "e-1"), ("acd.start", "e-0")] {
        let again = apply(store, &event(&conversation, kind, id, "callback"))
            .await
            .unwrap();
        assert!(
            matches!(again, Applied::Unchanged { .. } | Applied::Ignored(_)),
            "{kind}: {again:?}"
        );
    }
    let done = apply(
        store,
        &event(&conversation, "customer.end", "e-2", "callback"),
    )
    .await
    .unwrap();
    assert_eq!(
        done,
        Applied::Moved {
            reservation: r.id.clone(),
            to: Status::Completed
        }
    );
    // A user.start delivered late after the end does not reopen it.
    let late = apply(
        store,
        &event(&conversation, "user.start", "e-1b", "callback"),
    )
    .await
    .unwrap();
    assert_eq!(
        late,
        Applied::Unchanged {
            reservation: r.id.clone()
        }
    );
    let stored = store.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Completed);
    let trail: Vec<(Status, &str)> = stored
        .history
        .iter()
        .map(|c| (c.status, c.event.as_str()))
        .collect();
    assert_eq!(
        trail,
        [(Status::Connected, "e-1"), (Status::Completed, "e-2")]
    );
}

#[tokio::test]
async fn a_callback_nobody_answered_is_missed_and_other_conversations_are_ignored() {
    let (_sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b).await;
    let conversation = r.conversation_id.clone().unwrap();
    let missed = apply(
        &b.reservations,
        &event(&conversation, "customer.end", "e-9", "callback"),
    )
    .await
    .unwrap();
    assert_eq!(
        missed,
        Applied::Moved {
            reservation: r.id.clone(),
            to: Status::Missed
        }
    );
    let voice = apply(
        &b.reservations,
        &event(&conversation, "user.start", "e-10", "voice"),
    )
    .await
    .unwrap();
    assert_eq!(voice, Applied::Ignored("not a callback"));
    let unknown = apply(
        &b.reservations,
        &event("someone-elses", "user.start", "e-11", "callback"),
    )
    .await
    .unwrap();
    assert_eq!(
        unknown,
        Applied::Ignored("no reservation for this conversation")
    );
    assert!(apply(&b.reservations, b"not json").await.is_err());
}

#[tokio::test]
async fn an_agents_event_arriving_after_the_customers_end_corrects_missed_to_completed_once() {
    let (_sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b).await;
    let c = r.conversation_id.clone().unwrap();
    // SQS does not keep order: the customer's end first, the agent's start late.
    for (kind, id) in [
        ("customer.end", "o-3"),
        ("user.start", "o-2"),
        ("acw", "o-4"),
    ] {
        callback_api::lifecycle::apply_at(&b.reservations, &event(&c, kind, id, "callback"), now())
            .await
            .unwrap();
    }
    let stored = b.reservations.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Completed);
    let statuses: Vec<Status> = stored.history.iter().map(|h| h.status).collect();
    assert_eq!(statuses, [Status::Missed, Status::Completed]);
    // Ended before its slot (by the tests' clock): its place was given back once, not twice.
    assert_eq!(
        b.capacity
            .taken("support", r.slot.parse().unwrap())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn concurrent_events_of_one_callback_end_at_the_furthest_status() {
    let (_sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b).await;
    let c = r.conversation_id.clone().unwrap();
    let (e1, e2, e3) = (
        event(&c, "user.start", "c-1", "callback"),
        event(&c, "acw", "c-2", "callback"),
        event(&c, "user.start", "c-1", "callback"),
    );
    let (x, y, z) = tokio::join!(
        apply(&b.reservations, &e1),
        apply(&b.reservations, &e2),
        apply(&b.reservations, &e3)
    );
    for a in [x, y, z] {
        a.unwrap();
    }
    let stored = b.reservations.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Completed);
    assert!(stored.history.len() <= 2, "{:?}", stored.history);
}

#[tokio::test]
async fn a_batch_applies_its_events_and_gives_back_what_is_not_an_event() {
    let (_sim, b) = booking("queue-support", Duration::from_secs(1)).await;
    let r = booked(&b).await;
    let c = r.conversation_id.clone().unwrap();
    let record = |id: &str, body: Vec<u8>| {
        let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(String::from_utf8(body).unwrap());
        m
    };
    let events = callback_events::CallbackEvents {
        reservations: b.reservations.clone(),
        booking: None,
        deadline: Duration::from_secs(4),
    };
    let response = callback_events::process_batch(
        &events,
        vec![
            record("m-1", event(&c, "user.start", "b-1", "callback")),
            record("m-2", b"{\"not\": \"an event\"}".to_vec()),
            record("m-3", event(&c, "acw", "b-2", "callback")),
        ],
    )
    .await;
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, ["m-2"]);
    assert_eq!(
        b.reservations.get(&r.id).await.unwrap().unwrap().status,
        Status::Completed
    );
}
