//! The writer's optional callback trigger: a mapping profile asks for a callback when an escalated call dropped;
//! the writer requests it with the incident, and callback-events books one per conversation, as soon as a
//! slot has room.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::callbacks::booking;
use integration_tests::{new_conversation, tally, webhook_event, Harness, Options, Tally};
use serde_json::json;
use servicenow_writer::Outcome;

fn mapping_with_callbacks() -> shared::Mapping {
    let mut file: serde_json::Value =
        serde_json::from_str(include_str!("../../shared/mappings/default.json")).unwrap();
    file["profiles"][0]["callback"] = json!({"queue": "support",
        "when": [{"var": "disconnect_type", "in": ["TRANSPORT_FAILURE", "SYSTEM"]}]});
    shared::Mapping::from_json(&file.to_string()).unwrap()
}

async fn requests_in(h: &Harness) -> usize {
    let attrs = h
        .sqs
        .get_queue_attributes()
        .queue_url(&h.resources.callback_events_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_dropped_escalated_call_gets_one_callback_carrying_its_incident() {
    let h = Harness::with(Options {
        mapping: Some(mapping_with_callbacks()),
        ..Options::default()
    })
    .await;
    let (genesys, b) = booking("queue-support", Duration::from_secs(1)).await;
    let events = callback_events::CallbackEvents {
        reservations: b.reservations.clone(),
        booking: Some(Arc::try_unwrap(b).ok().expect("one owner")),
        deadline: Duration::from_secs(4),
    };
    let pump = || {
        local::callback_pumps::pump_callback_events(
            &h.sqs,
            &h.resources.callback_events_queue_url,
            &events,
        )
    };
    // A call that ended normally asks for nothing.
    let calm = webhook_event(&new_conversation(), json!({"disconnectType": "CLIENT"}));
    assert_eq!(h.post_signed(&calm.to_string()).await.0, 202);
    assert_eq!(tally(&h.drain().await), Tally::created(1));
    assert_eq!(requests_in(&h).await, 0);
    // A dropped one: the incident, then one callback to the caller, carrying the incident number.
    let conversation = new_conversation();
    let dropped = webhook_event(
        &conversation,
        json!({"disconnectType": "TRANSPORT_FAILURE"}),
    );
    assert_eq!(h.post_signed(&dropped.to_string()).await.0, 202);
    let outcomes = h.drain().await;
    let number = match &outcomes[..] {
        [(_, Outcome::Created { number })] => number.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(pump().await.unwrap(), 1);
    let callbacks = genesys.callbacks();
    assert_eq!(callbacks.len(), 1);
    assert_eq!(callbacks[0].numbers, ["+14155550123"]);
    assert_eq!(callbacks[0].data["incidentNumber"], json!(number));
    let scheduled: jiff::Timestamp = callbacks[0]
        .scheduled_time
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        scheduled > jiff::Timestamp::now(),
        "the next slot with room"
    );
    // A later event of the conversation that also matches (its work note) asks again: still one callback.
    let again = json!({"event": format!("v2.detail.events.conversation.{conversation}.acw"),
        "data": {"conversationId": conversation, "ani": "tel:+14155550123", "disconnectType": "SYSTEM",
                 "wrapupCode": "callback", "userId": "agent-1"},
        "metadata": {"organizationId": "6f1a0c4e-0000-4000-8000-00000000000a", "timestamp": "2026-11-23T10:05:00.000Z"}});
    assert_eq!(h.post_signed(&again.to_string()).await.0, 202);
    assert!(matches!(
        &h.drain().await[..],
        [(_, Outcome::Updated { .. })]
    ));
    assert_eq!(pump().await.unwrap(), 1);
    assert_eq!(genesys.callbacks().len(), 1);
}
