//! One conversation, one incident: the seeds' own payloads with the shipped mapping, and later events of a
//! conversation as work notes — exactly once under duplicates, concurrency, crashes, lost answers and
//! deleted incidents.

use std::time::Duration;

use integration_tests::*;
use local::poller::Poller;
use local::servicenow_sim::Faults;
use serde_json::{json, Value};
use servicenow_writer::Outcome;

fn only_incident(h: &Harness) -> serde_json::Map<String, Value> {
    let all = h.sim.incidents();
    assert_eq!(all.len(), 1, "expected one incident, got {all:#?}");
    all.into_iter().next().unwrap_or_default()
}

fn text<'a>(inc: &'a serde_json::Map<String, Value>, field: &str) -> &'a str {
    inc[field].as_str().unwrap_or_default()
}

/// A new conversation whose `customer.end` has made its incident; returns the conversation id.
async fn conversation_with_incident(h: &Harness) -> String {
    let conv = new_conversation();
    let (status, reply) = h
        .post_signed(&webhook_event(&conv, json!({})).to_string())
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(tally(&h.drain().await), Tally::created(1));
    conv
}

/// The notes added after creation (the first journal entry is the creation's).
fn later_notes(h: &Harness, number: &str) -> Vec<String> {
    h.sim.work_notes(number).into_iter().skip(1).collect()
}

#[tokio::test]
async fn seed_000_flow_webhook_becomes_one_incident_with_caller_and_vip_urgency() {
    let h = Harness::start().await;
    let caller = h.sim.add_user("Grace Hopper", "+15551234567");
    let event = fixture("seed-000-flow-webhook.json");
    let (status, reply) = h.post_signed(&event.to_string()).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(tally(&h.drain().await), Tally::created(1));
    let inc = only_incident(&h);
    assert_eq!(inc["caller_id"], caller.as_str());
    assert!(text(&inc, "short_description").contains("Internet service down since this morning"));
    assert_eq!(text(&inc, "urgency"), "1", "VIP \"true\" → urgency 1");
    let description = text(&inc, "description");
    assert!(description.contains("Caller: ***4567"), "{description}");
    assert!(
        description.contains("Queue wait (ms): 420000"),
        "{description}"
    );
    assert!(!description.contains("5551234567"));
    assert_eq!(
        text(&inc, "correlation_id"),
        shared::keys::conversation_key("8c3f8f0e-2d4a-4b6e-9f1a-0c6d5e4b3a21")
    );
}

#[tokio::test]
async fn seed_001_ivr_body_becomes_one_incident_when_posted_bare_with_its_event_type() {
    let h = Harness::start().await;
    let caller = h.sim.add_user("Alan Turing", "+15550199888");
    let body = fixture("seed-001-ivr-escalation.body.json").to_string();
    // Without a type, the answer says what to configure, and nothing is queued.
    let (status, reply) = h.post_signed_bare(&body, None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("missing_event_type")),
        "{reply}"
    );
    assert!(reply["message"]
        .as_str()
        .unwrap_or_default()
        .contains("?event=ivr:escalation"));
    assert_eq!(h.queue_depth().await, 0);

    let (status, reply) = h.post_signed_bare(&body, Some("ivr:escalation")).await;
    assert_eq!(status, 202, "{reply}");
    // Genesys retries the same body: still one incident.
    assert_eq!(
        h.post_signed_bare(&body, Some("ivr:escalation")).await.0,
        202
    );
    let t = tally(&h.drain().await);
    assert_eq!(
        (t.created, t.duplicates, t.dead_lettered),
        (1, 1, 0),
        "{t:?}"
    );
    let inc = only_incident(&h);
    assert_eq!(inc["caller_id"], caller.as_str());
    assert!(text(&inc, "short_description").contains("IVR_TIMEOUT_EXCEEDED"));
    assert_eq!(
        text(&inc, "urgency"),
        "1",
        "ticketPriority High → urgency 1"
    );
    assert!(text(&inc, "description").contains("Caller: ***9888"));
    assert!(!text(&inc, "description").contains("5550199888"));
}

#[tokio::test]
async fn customer_end_and_two_acws_three_times_each_concurrently_shuffled_give_one_incident_and_two_notes(
) {
    let h = Harness::start().await;
    let conv = new_conversation();
    let bodies = [
        webhook_event(&conv, json!({})).to_string(),
        acw_event(&conv, "Billing dispute", "Refund promised").to_string(),
        acw_event(&conv, "Follow-up", "Supervisor called the customer back").to_string(),
    ];
    // 9 deliveries in a fixed shuffled order, posted concurrently.
    let order = [4, 0, 7, 2, 5, 8, 1, 6, 3];
    let posts = order.iter().map(|i| h.post_signed(&bodies[i % 3]));
    for (status, reply) in futures::future::join_all(posts).await {
        assert_eq!(status, 202, "{reply}");
    }
    // Three concurrent "invocations" with small batches, so events of the conversation race each other.
    let pollers: Vec<Poller> = (0..3)
        .map(|_| Poller {
            sqs: h.sqs.clone(),
            queue_url: h.resources.queue_url.clone(),
            queue_arn: h.resources.queue_arn.clone(),
            batch_size: 2,
            invocation_timeout: Duration::from_secs(8),
            wait_time_secs: 1,
        })
        .collect();
    let drains = pollers
        .iter()
        .map(|p| p.drain(&h.writer, Duration::from_secs(60)));
    let outcomes: Vec<(String, Outcome)> = futures::future::join_all(drains)
        .await
        .into_iter()
        .flat_map(|r| r.expect("queue drains"))
        .collect();
    let t = tally(&outcomes);
    assert_eq!(
        (t.created, t.updated, t.dead_lettered),
        (1, 2, 0),
        "{outcomes:?}"
    );
    // SQS may deliver a message more than once (a visibility timeout running out under load): every one of
    // the nine messages ended, the six copies as duplicates, and no effect happened twice.
    let ended: std::collections::HashSet<&str> = outcomes
        .iter()
        .filter(|(_, o)| !matches!(o, Outcome::Retry { .. }))
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(ended.len(), 9, "{outcomes:?}");
    assert!(t.duplicates + t.reconciled >= 6, "{outcomes:?}");
    let inc = only_incident(&h);
    let number = text(&inc, "number").to_string();
    let notes = later_notes(&h, &number);
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert_eq!(
        h.sim.work_notes(&number).len(),
        3,
        "creation note + two notes"
    );
    // Each event applied exactly once: the journal carries each event's reference once.
    let all = h.sim.work_notes(&number).join("\n");
    for body in &bodies {
        let event = shared::InboundEvent::parse(body.as_bytes()).unwrap();
        let key = shared::keys::KeyConfig::default().derive(&event).key;
        let reference = shared::incident::event_ref(&key);
        assert_eq!(all.matches(&reference).count(), 1, "{reference} in {all}");
    }
}

#[tokio::test]
async fn an_acw_before_its_customer_end_still_gives_one_incident() {
    let h = Harness::start().await;
    let conv = new_conversation();
    h.post_signed(&acw_event(&conv, "Resolved", "Password reset").to_string())
        .await;
    assert_eq!(tally(&h.drain().await), Tally::created(1));
    h.post_signed(&webhook_event(&conv, json!({})).to_string())
        .await;
    let t = tally(&h.drain().await);
    assert_eq!((t.created, t.updated), (0, 1), "{t:?}");
    let inc = only_incident(&h);
    let notes = later_notes(&h, text(&inc, "number"));
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].starts_with("Genesys event customer.end"),
        "{}",
        notes[0]
    );
    assert!(notes[0].contains("Disconnect type: TRANSPORT_FAILURE"));
    // The later event's levels (VIP, outage) are raised onto the incident, never lowered.
    assert_eq!((text(&inc, "impact"), text(&inc, "urgency")), ("1", "1"));
    h.post_signed(&acw_event(&conv, "Closed", "nothing more").to_string())
        .await;
    assert_eq!(tally(&h.drain().await).updated, 1);
    let inc = only_incident(&h);
    assert_eq!((text(&inc, "impact"), text(&inc, "urgency")), ("1", "1"));
}

#[tokio::test]
async fn a_crash_between_patch_and_marking_the_event_done_adds_no_second_note() {
    let h = Harness::start().await;
    let conv = conversation_with_incident(&h).await;
    let inc = only_incident(&h);
    let (sys_id, number) = (
        text(&inc, "sys_id").to_string(),
        text(&inc, "number").to_string(),
    );

    // An invocation claimed the acw, wrote its note, and died before marking the event done.
    let raw = acw_event(&conv, "Billing dispute", "Refund promised").to_string();
    let (event, key, _) = h
        .claim_as_dying_invocation(&raw, Duration::from_millis(300))
        .await;
    let mapping = shared::Mapping::default_mapping().unwrap();
    let mapped = mapping.apply(&event, &key).unwrap();
    let note = shared::incident::with_event_ref(mapped.update_note().as_deref().unwrap(), &key);
    let client = h.servicenow_client();
    let mut fields = serde_json::Map::new();
    fields.insert("work_notes".into(), note.into());
    client.update_incident(&sys_id, &fields).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await; // the dead invocation's lease runs out

    h.enqueue_raw(&raw).await;
    let outcomes = h.drain().await;
    assert_eq!(
        outcomes.last().map(|o| &o.1),
        Some(&Outcome::Reconciled {
            number: number.clone()
        }),
        "{outcomes:?}"
    );
    assert_eq!(later_notes(&h, &number).len(), 1);
    // Marked done now: a further copy is a plain duplicate.
    h.enqueue_raw(&raw).await;
    assert_eq!(tally(&h.drain().await), Tally::duplicates(1));
    assert_eq!(later_notes(&h, &number).len(), 1);
}

#[tokio::test]
async fn an_update_whose_answer_is_lost_is_not_written_twice() {
    let h = Harness::start().await;
    let conv = conversation_with_incident(&h).await;
    h.sim.set_faults(Faults {
        drop_after_update: 1,
        ..Faults::default()
    });
    h.post_signed(&acw_event(&conv, "Billing dispute", "Refund promised").to_string())
        .await;
    let outcomes = h.drain().await;
    // Given back for the settle window (the PATCH may still commit), then found in the journal.
    assert!(
        matches!(
            outcomes.as_slice(),
            [(_, Outcome::Retry { .. }), (_, Outcome::Reconciled { .. })]
        ),
        "{outcomes:?}"
    );
    let inc = only_incident(&h);
    assert_eq!(later_notes(&h, text(&inc, "number")).len(), 1);
    assert!(h
        .sim
        .requests()
        .iter()
        .any(|r| r.method == "PATCH" && r.status == 0));
}

#[tokio::test]
async fn an_update_for_a_deleted_incident_creates_one_replacement_that_says_so() {
    let h = Harness::start().await;
    let conv = conversation_with_incident(&h).await;
    let first = text(&only_incident(&h), "number").to_string();
    assert!(h.sim.delete_incident(&first));

    h.post_signed(&acw_event(&conv, "Billing dispute", "Refund promised").to_string())
        .await;
    assert_eq!(tally(&h.drain().await), Tally::created(1));
    let inc = only_incident(&h);
    let second = text(&inc, "number").to_string();
    assert_ne!(first, second);
    let notes = h.sim.work_notes(&second);
    assert!(
        notes[0].contains(&format!("replaces {first}")),
        "{notes:#?}"
    );
    // The event that found the incident gone keeps its own note, on the replacement.
    assert!(
        notes[0].contains("Wrap-up notes: Refund promised"),
        "{notes:#?}"
    );
    // The next event updates the replacement; nothing loops.
    h.post_signed(&acw_event(&conv, "Follow-up", "Called back").to_string())
        .await;
    let t = tally(&h.drain().await);
    assert_eq!((t.created, t.updated), (0, 1), "{t:?}");
    assert_eq!(h.sim.incidents().len(), 1);
    assert_eq!(later_notes(&h, &second).len(), 1);

    // If the replacement disappears too, that is an ACL or a deletion policy: dead-lettered, not a loop.
    assert!(h.sim.delete_incident(&second));
    h.post_signed(&acw_event(&conv, "Again", "Third note").to_string())
        .await;
    assert_eq!(tally(&h.drain().await), Tally::dead_lettered(1));
    assert!(h.sim.incidents().is_empty());
    let dead = h.dead_letters().await;
    assert_eq!(dead[0].1["failure_reason"], "incident_gone");
}

#[tokio::test]
async fn a_permanently_refused_update_is_dead_lettered_with_its_reason_and_nothing_is_duplicated() {
    let h = Harness::start().await;
    let conv = conversation_with_incident(&h).await;
    h.sim.set_faults(Faults {
        fail_next: 1,
        fail_status: 400,
        fail_method: Some("PATCH".into()),
        ..Faults::default()
    });
    h.post_signed(&acw_event(&conv, "Billing dispute", "Refund promised").to_string())
        .await;
    assert_eq!(tally(&h.drain().await), Tally::dead_lettered(1));
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1["failure_reason"], "servicenow_update_rejected");
    assert_eq!(dead[0].1["http_status"], "400");
    assert!(!dead[0].1["failure_detail"].contains("Simulated permanent rejection"));
    let inc = only_incident(&h);
    assert_eq!(later_notes(&h, text(&inc, "number")).len(), 0);
    // Replayed once the cause is fixed: the note is written once.
    h.enqueue_raw(&dead[0].0).await;
    let t = tally(&h.drain().await);
    assert_eq!((t.created, t.updated), (0, 1), "{t:?}");
    assert_eq!(h.sim.incidents().len(), 1);
}

#[tokio::test]
async fn an_ivr_escalation_and_the_eventbridge_events_of_that_call_share_one_incident() {
    let h = Harness::start().await;
    let conv = new_conversation();
    let mut ivr = fixture("seed-001-ivr-escalation.body.json");
    ivr["callId"] = json!(conv);
    assert_eq!(
        h.post_signed_bare(&ivr.to_string(), Some("ivr:escalation"))
            .await
            .0,
        202
    );
    h.enqueue_raw(&eventbridge_event(&conv, &new_conversation()).to_string())
        .await;
    let t = tally(&h.drain().await);
    assert_eq!((t.created, t.updated, t.dead_lettered), (1, 1, 0), "{t:?}");
    let inc = only_incident(&h);
    assert_eq!(later_notes(&h, text(&inc, "number")).len(), 1);
}

#[tokio::test]
async fn an_event_no_profile_handles_is_dead_lettered_naming_its_type() {
    let h = Harness::start().await;
    let mut event = webhook_event(&new_conversation(), json!({}));
    event["event"] = json!("v2.users.presence");
    h.enqueue_raw(&event.to_string()).await;
    assert_eq!(tally(&h.drain().await), Tally::dead_lettered(1));
    let dead = h.dead_letters().await;
    assert_eq!(dead[0].1["failure_reason"], "no_mapping_profile");
    assert!(dead[0].1["failure_detail"].contains("v2.users.presence"));
}

#[tokio::test]
async fn a_refusal_after_a_lost_update_answer_is_replayed_without_a_second_note() {
    let h = Harness::start().await;
    let conv = conversation_with_incident(&h).await;
    // The PATCH is applied but its answer lost; the read that follows is refused for good.
    h.sim.set_faults(Faults {
        drop_after_update: 1,
        fail_next: 1,
        fail_status: 400,
        fail_method: Some("GET".into()),
        ..Faults::default()
    });
    h.post_signed(&acw_event(&conv, "Billing dispute", "Refund promised").to_string())
        .await;
    assert_eq!(
        tally(&h.drain().await),
        Tally {
            retried: 1, // the settle window after the lost answer
            ..Tally::dead_lettered(1)
        }
    );
    let number = text(&only_incident(&h), "number").to_string();
    assert_eq!(
        later_notes(&h, &number).len(),
        1,
        "the lost PATCH was applied"
    );
    // The replay finds the note instead of writing it again.
    let dead = h.dead_letters().await;
    h.enqueue_raw(&dead[0].0).await;
    assert_eq!(tally(&h.drain().await), Tally::reconciled(1));
    assert_eq!(later_notes(&h, &number).len(), 1);
}

/// The built-in mapping with the conversation profile's `on_repeat` set to `mode`.
fn mapping_with_on_repeat(mode: &str) -> shared::Mapping {
    let mut file: Value = serde_json::from_str(shared::mapping::DEFAULT_MAPPING_JSON).unwrap();
    let profile = &mut file["profiles"][0];
    profile["on_repeat"] = json!(mode);
    if let Some(p) = profile.as_object_mut() {
        p.remove("update");
    }
    shared::Mapping::from_json(&file.to_string()).expect("mapping loads")
}

#[tokio::test]
async fn on_repeat_ignore_records_later_events_without_touching_the_incident() {
    let h = Harness::with(Options {
        mapping: Some(mapping_with_on_repeat("ignore")),
        ..Options::default()
    })
    .await;
    let conv = new_conversation();
    h.post_signed(&webhook_event(&conv, json!({})).to_string())
        .await;
    h.post_signed(&acw_event(&conv, "Resolved", "Done").to_string())
        .await;
    let t = tally(&h.drain().await);
    assert_eq!((t.created, t.updated, t.duplicates), (1, 0, 1), "{t:?}");
    let inc = only_incident(&h);
    assert!(later_notes(&h, text(&inc, "number")).is_empty());
    assert!(!h.sim.requests().iter().any(|r| r.method == "PATCH"));
}

#[tokio::test]
async fn on_repeat_new_incident_keeps_one_incident_per_event() {
    let h = Harness::with(Options {
        mapping: Some(mapping_with_on_repeat("new_incident")),
        ..Options::default()
    })
    .await;
    let conv = new_conversation();
    h.post_signed(&webhook_event(&conv, json!({})).to_string())
        .await;
    h.post_signed(&acw_event(&conv, "Resolved", "Done").to_string())
        .await;
    assert_eq!(tally(&h.drain().await), Tally::created(2));
    let incidents = h.sim.incidents();
    assert_eq!(incidents.len(), 2);
    assert_ne!(
        incidents[0]["correlation_id"],
        incidents[1]["correlation_id"]
    );
}

#[tokio::test]
async fn a_replacement_made_by_an_attempt_that_died_gets_the_next_events_note() {
    let h = Harness::start().await;
    let conv = conversation_with_incident(&h).await;
    let first = text(&only_incident(&h), "number").to_string();
    assert!(h.sim.delete_incident(&first));
    // Another event's attempt created the replacement and died before recording it.
    let earlier = acw_event(&conv, "First", "Earlier attempt").to_string();
    let earlier_event = shared::InboundEvent::parse(earlier.as_bytes()).unwrap();
    let mapping = shared::Mapping::default_mapping().unwrap();
    let mut draft = mapping
        .apply(&earlier_event, "gc-earlier")
        .unwrap()
        .incident();
    draft.work_notes = shared::incident::with_event_ref(&draft.work_notes, "gc-earlier");
    let replacement = h
        .servicenow_client()
        .create_incident(&draft)
        .await
        .unwrap()
        .incident;

    h.post_signed(&acw_event(&conv, "Billing dispute", "Refund promised").to_string())
        .await;
    let t = tally(&h.drain().await);
    assert_eq!((t.created, t.updated), (0, 1), "{t:?}");
    assert_eq!(h.sim.incidents().len(), 1);
    let notes = later_notes(&h, &replacement.number);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(notes[0].contains("Refund promised"));
}
