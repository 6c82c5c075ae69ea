//! Replaying the dead-letter queue (`bridge-ops replay`, `make replay`): a dry run lists each letter's reason
//! and age and moves nothing; a filtered replay after a mapping fix creates the missing incidents, once, and
//! leaves the other letters where they were.

use std::time::Duration;

use integration_tests::{new_conversation, tally, webhook_event, Harness, Options, Tally};
use ops::replay::{Filter, Options as ReplayOptions, Replay};
use serde_json::json;

/// The built-in mapping with a `region` the events do not carry: every event fails to map.
fn broken_mapping() -> shared::Mapping {
    let mut file: serde_json::Value =
        serde_json::from_str(include_str!("../../shared/mappings/default.json")).unwrap();
    file["profiles"][0]["variables"]["region"] = json!({"pointers": ["/region"], "required": true});
    shared::Mapping::from_json(&file.to_string()).unwrap()
}

fn options(reason: Option<&str>, dry_run: bool) -> ReplayOptions {
    ReplayOptions {
        filter: Filter {
            reason: reason.map(str::to_string),
            ..Filter::default()
        },
        dry_run,
        rate: 50,
        limit: None,
    }
}

#[tokio::test]
async fn a_replay_after_a_mapping_fix_creates_the_missing_incidents_once_and_keeps_the_rest() {
    let h = Harness::with(Options {
        mapping: Some(broken_mapping()),
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        let event = webhook_event(&new_conversation(), json!({}));
        assert_eq!(h.post_signed(&event.to_string()).await.0, 202);
    }
    h.enqueue_raw("this is not an event").await;
    assert_eq!(tally(&h.drain().await), Tally::dead_lettered(3));
    let replay = Replay {
        sqs: h.sqs.clone(),
        dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
        queue_url: h.resources.queue_url.clone(),
    };
    // A dry run: every letter with its reason and age, nothing moved.
    let listed = replay.run(&options(None, true)).await.unwrap();
    assert_eq!(listed.moved, 0);
    let reasons = listed.by_reason();
    assert_eq!(reasons.get("mapping_failed"), Some(&(2, 0)), "{reasons:?}");
    assert_eq!(
        reasons.get("invalid_envelope"),
        Some(&(1, 0)),
        "{reasons:?}"
    );
    assert!(listed
        .letters
        .iter()
        .all(|l| l.age < Duration::from_secs(120)));
    // The mapping is fixed (a writer with the built-in one); only the mapping failures go back.
    let fixed = h.another_writer(&Options::default());
    let replayed = replay
        .run(&options(Some("mapping_failed"), false))
        .await
        .unwrap();
    assert_eq!(replayed.moved, 2);
    let outcomes = h
        .poller
        .drain(&fixed, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(tally(&outcomes), Tally::created(2));
    assert_eq!(h.sim.incidents().len(), 2);
    // Again: nothing left to replay for that reason, nothing created twice; the other letter is still there.
    let again = replay
        .run(&options(Some("mapping_failed"), false))
        .await
        .unwrap();
    assert_eq!(again.moved, 0);
    assert!(h
        .poller
        .drain(&fixed, Duration::from_secs(5))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(h.sim.incidents().len(), 2);
    let rest = replay.run(&options(None, true)).await.unwrap();
    assert_eq!(rest.by_reason().get("invalid_envelope"), Some(&(1, 0)));
    assert_eq!(rest.letters.len(), 1);
    // Without a filter the endpoint's StartMessageMoveTask is asked first (moto lacks it: moved by hand).
    let all = replay.run(&options(None, false)).await.unwrap();
    assert_eq!((all.moved, all.move_task), (1, None));
}

#[tokio::test]
async fn a_trace_shows_the_incident_its_notes_and_the_conversations_dead_letters() {
    let h = Harness::with(Options {
        mapping: Some(broken_mapping()),
        ..Options::default()
    })
    .await;
    let conversation = new_conversation();
    let first = webhook_event(&conversation, json!({}));
    assert_eq!(h.post_signed(&first.to_string()).await.0, 202);
    // Another conversation's dead letter, which the trace leaves out.
    let other = webhook_event(&new_conversation(), json!({}));
    assert_eq!(h.post_signed(&other.to_string()).await.0, 202);
    assert_eq!(tally(&h.drain().await), Tally::dead_lettered(2));
    let store = servicenow_writer::conversations::ConversationStore::new(
        aws_sdk_dynamodb::Client::new(&h.aws),
        h.resources.table.clone(),
        Duration::from_secs(86_400),
    );
    let dlq = Replay {
        sqs: h.sqs.clone(),
        dead_letter_queue_url: h.resources.dead_letter_queue_url.clone(),
        queue_url: h.resources.queue_url.clone(),
    };
    let sn = h.servicenow_client();
    let before = ops::trace::trace(&conversation, &store, &dlq, Some(&sn)).await;
    assert_eq!(before.recorded_incident, None);
    assert_eq!(before.servicenow, None);
    assert_eq!(before.dead_letters.len(), 1);
    assert_eq!(before.last_error().map(|e| e.0), Some("mapping_failed"));
    assert!(before.unreadable.is_empty(), "{:?}", before.unreadable);
    // Fixed: the conversation's events now make its incident and a note.
    let fixed = h.another_writer(&Options::default());
    let again = webhook_event(&conversation, json!({"escalationReason": "retried"}));
    assert_eq!(h.post_signed(&again.to_string()).await.0, 202);
    let acw = integration_tests::acw_event(&conversation, "resolved", "called back");
    assert_eq!(h.post_signed(&acw.to_string()).await.0, 202);
    let outcomes = h
        .poller
        .drain(&fixed, Duration::from_secs(30))
        .await
        .unwrap();
    let number = outcomes
        .iter()
        .find_map(|(_, o)| match o {
            servicenow_writer::Outcome::Created { number } => Some(number.clone()),
            _ => None,
        })
        .expect("created");
    let after = ops::trace::trace(&conversation, &store, &dlq, Some(&sn)).await;
    assert_eq!(after.recorded_incident.as_deref(), Some(number.as_str()));
    let (sn_number, _state, opened) = after.servicenow.clone().expect("in ServiceNow");
    assert_eq!(sn_number, number);
    assert!(!opened.is_empty());
    assert!(after.notes >= 1, "{after:?}");
    assert_eq!(
        after.dead_letters.len(),
        1,
        "still there: the trace moves nothing"
    );
}
