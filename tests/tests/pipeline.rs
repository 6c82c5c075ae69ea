//! End to end: signed webhook → receiver → SQS (moto) → writer → ServiceNow simulator.

use std::time::Duration;

use integration_tests::*;
use local::servicenow_sim::Faults;
use serde_json::{json, Value};
use servicenow_writer::Outcome;
use shared::signature::SignatureScheme;

fn one_incident(h: &Harness) -> serde_json::Map<String, Value> {
    let all = h.sim.incidents();
    assert_eq!(
        all.len(),
        1,
        "expected exactly one incident, got {}",
        all.len()
    );
    all.into_iter().next().unwrap_or_default()
}

#[tokio::test]
async fn signed_webhook_becomes_exactly_one_incident_with_the_expected_fields() {
    let h = Harness::start().await;
    let caller = h.sim.add_user("Ada Lovelace", "+14155550123");
    let conv = new_conversation();
    let (status, body) = h
        .post_signed(&webhook_event(&conv, json!({})).to_string())
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(body["messageId"].as_str().is_some_and(|m| !m.is_empty()));

    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes), Tally::created(1), "{outcomes:?}");
    let inc = one_incident(&h);
    assert_eq!(inc["contact_type"], "phone");
    assert_eq!(inc["caller_id"], caller.as_str());
    assert!(inc["correlation_id"].as_str().unwrap().starts_with("gc-"));
    assert_eq!(
        inc["correlation_display"],
        format!("Genesys conversation {conv}").as_str()
    );
    // VIP → impact 2 / urgency 1; outage → impact 1: priority derived by ServiceNow, never sent.
    assert_eq!(
        (inc["impact"].as_str(), inc["urgency"].as_str()),
        (Some("1"), Some("1"))
    );
    assert_eq!(inc["priority"], "1");
    let short = inc["short_description"].as_str().unwrap();
    assert!(short.chars().count() <= 160);
    assert!(short.contains("Billing Support"), "{short}");
    let description = inc["description"].as_str().unwrap();
    assert!(description.contains(&conv));
    assert!(description.contains("***0123"));
    assert!(description.contains("[REDACTED CARD]"));
    for leaked in ["4155550123", "4111 1111"] {
        assert!(
            !description.contains(leaked) && !short.contains(leaked),
            "PII leaked: {leaked}"
        );
    }
    assert!(inc["work_notes"].as_str().unwrap().contains("vip-caller"));
    assert_eq!(inc["category"], "inquiry");
}

#[tokio::test]
async fn the_same_event_five_times_concurrently_creates_one_incident() {
    let h = Harness::start().await;
    let body = webhook_event(&new_conversation(), json!({})).to_string();
    let posts = (0..5).map(|_| h.post_signed(&body));
    for (status, reply) in futures::future::join_all(posts).await {
        assert_eq!(status, 202, "{reply}");
    }
    let outcomes = h.drain().await;
    let Tally {
        created,
        reconciled,
        duplicates,
        dead_lettered: dead,
        ..
    } = tally(&outcomes);
    assert_eq!((created + reconciled, dead), (1, 0), "{outcomes:?}");
    assert_eq!(duplicates, 4, "{outcomes:?}");
    one_incident(&h);
    // Delivered once more later (a Genesys retry): still one.
    assert_eq!(h.post_signed(&body).await.0, 202);
    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes), Tally::duplicates(1));
    one_incident(&h);
}

#[tokio::test]
async fn rate_limited_with_retry_after_is_created_once_after_the_wait() {
    let h = Harness::start().await;
    h.sim.set_faults(Faults {
        throttle_next: 1,
        retry_after_secs: 1,
        ..Faults::default()
    });
    h.post_new_event().await;
    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes), Tally::created(1), "{outcomes:?}");
    one_incident(&h);
    let waited = h.ms_from_first_429_to_the_next_request();
    assert!(
        waited >= 1000,
        "Retry-After: 1 not honoured: next request {waited} ms after the 429"
    );
}

#[tokio::test]
async fn a_burst_of_503s_still_creates_once() {
    let h = Harness::start().await;
    h.sim.set_faults(Faults {
        fail_next: 3,
        fail_status: 503,
        ..Faults::default()
    });
    h.post_new_event().await;
    let outcomes = h.drain().await;
    let Tally {
        created,
        reconciled,
        duplicates: dup,
        dead_lettered: dead,
        ..
    } = tally(&outcomes);
    assert_eq!((created + reconciled, dup, dead), (1, 0, 0), "{outcomes:?}");
    one_incident(&h);
    assert_eq!(
        h.sim.requests().iter().filter(|r| r.status == 503).count(),
        3
    );
}

#[tokio::test]
async fn create_then_dropped_connection_is_reconciled_to_one_incident() {
    let h = Harness::start().await;
    h.sim.set_faults(Faults {
        drop_after_create: 1,
        ..Faults::default()
    });
    h.post_new_event().await;
    let outcomes = h.drain().await;
    // Given back for the settle window (ServiceNow may still commit), then found by correlation_id.
    assert_eq!(
        tally(&outcomes),
        Tally {
            retried: 1,
            ..Tally::reconciled(1)
        },
        "{outcomes:?}"
    );
    one_incident(&h);
}

#[tokio::test]
async fn a_crash_between_create_and_completion_does_not_duplicate_on_redelivery() {
    let h = Harness::start().await;
    let conv = new_conversation();
    let raw = webhook_event(&conv, json!({})).to_string();
    // Invocation 1 claimed the key, created the incident, and died before marking it COMPLETED.
    let (event, key, claim) = h
        .claim_as_dying_invocation(&raw, Duration::from_millis(300))
        .await;
    assert!(matches!(
        claim,
        servicenow_writer::idempotency::Claim::Acquired { retaken: false, .. }
    ));
    let client = h.servicenow_client();
    // As the writer creates it: the creating event's reference in the work notes.
    let mut draft = shared::Mapping::default_mapping()
        .unwrap()
        .apply(&event, &key)
        .unwrap()
        .incident();
    draft.work_notes = shared::incident::with_event_ref(&draft.work_notes, &key);
    let first = client.create_incident(&draft).await.unwrap().incident;
    // While its lease is live, a redelivery backs off instead of creating.
    h.enqueue_raw(&raw).await;
    tokio::time::sleep(Duration::from_millis(400)).await; // the dead invocation's lease runs out
    let outcomes = h.drain().await;
    assert_eq!(
        outcomes.last().map(|o| &o.1),
        Some(&Outcome::Reconciled {
            number: first.number.clone()
        })
    );
    one_incident(&h);
}

#[tokio::test]
async fn a_permanent_400_is_dead_lettered_with_its_reason_and_can_be_replayed() {
    let h = Harness::start().await;
    h.sim.set_faults(Faults {
        fail_next: 1,
        fail_status: 400,
        fail_method: Some("POST".into()),
        ..Faults::default()
    });
    let body = webhook_event(&new_conversation(), json!({})).to_string();
    assert_eq!(h.post_signed(&body).await.0, 202);
    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes), Tally::dead_lettered(1), "{outcomes:?}");
    assert!(h.sim.incidents().is_empty());
    // Not retried: exactly one request reached ServiceNow's create (the rejected one).
    let creates = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(creates, 1);
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let (dead_body, attrs) = &dead[0];
    assert_eq!(dead_body, &body, "the original payload is kept for replay");
    assert_eq!(attrs["failure_reason"], "servicenow_rejected");
    assert_eq!(attrs["http_status"], "400");
    assert!(
        attrs.len() <= 10,
        "SQS accepts at most 10 message attributes: {attrs:?}"
    );
    assert!(attrs["idempotency_key"].starts_with("gc-"));
    assert!(!attrs["correlation_id"].is_empty());
    assert!(
        !attrs["failure_detail"].contains("Simulated"),
        "ServiceNow's error body must not leak"
    );

    // Replay (receive → send → delete, as `make replay-dlq` does): now it succeeds, once.
    h.enqueue_raw(dead_body).await;
    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes), Tally::created(1), "{outcomes:?}");
    h.enqueue_raw(dead_body).await;
    assert_eq!(tally(&h.drain().await), Tally::duplicates(1));
    one_incident(&h);
}

#[tokio::test]
async fn schema_drift_is_dead_lettered_naming_the_missing_field() {
    let h = Harness::start().await;
    let mut event = webhook_event(&new_conversation(), json!({}));
    event["data"]
        .as_object_mut()
        .unwrap()
        .remove("conversationId");
    assert_eq!(h.post_signed(&event.to_string()).await.0, 202);
    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes), Tally::dead_lettered(1), "{outcomes:?}");
    assert!(h.sim.incidents().is_empty(), "never an empty ticket");
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1["failure_reason"], "mapping_failed");
    assert!(
        dead[0].1["failure_detail"].contains("conversation_id"),
        "{:?}",
        dead[0].1
    );
    assert!(dead[0].1["failure_detail"].contains("/conversationId"));
}

#[tokio::test]
async fn an_eventbridge_shaped_event_becomes_an_incident() {
    let h = Harness::start().await;
    let conv = new_conversation();
    h.enqueue_raw(&eventbridge_event(&conv, "eb-0001").to_string())
        .await;
    h.enqueue_raw(&eventbridge_event(&conv, "eb-0001").to_string())
        .await; // EventBridge redelivery
    let outcomes = h.drain().await;
    let Tally {
        created,
        duplicates: dup,
        dead_lettered: dead,
        ..
    } = tally(&outcomes);
    assert_eq!((created, dup, dead), (1, 1, 0), "{outcomes:?}");
    let inc = one_incident(&h);
    assert!(inc["description"].as_str().unwrap().contains(&conv));
    assert!(inc["work_notes"].as_str().unwrap().contains("eb-0001"));
}

#[tokio::test]
async fn conflicting_payload_under_the_same_event_id_is_dead_lettered() {
    let h = Harness::start().await;
    let conv = new_conversation();
    h.enqueue_raw(&eventbridge_event(&conv, "eb-dup").to_string())
        .await;
    assert_eq!(tally(&h.drain().await), Tally::created(1));
    let mut changed = eventbridge_event(&conv, "eb-dup");
    changed["detail"]["eventBody"]["queueName"] = json!("Another queue");
    h.enqueue_raw(&changed.to_string()).await;
    assert_eq!(tally(&h.drain().await), Tally::dead_lettered(1));
    assert_eq!(
        h.dead_letters().await[0].1["failure_reason"],
        "idempotency_conflict"
    );
    one_incident(&h);
}

#[tokio::test]
async fn bad_or_missing_signatures_get_401_and_nothing_is_queued() {
    let h = Harness::start().await;
    let body = webhook_event(&new_conversation(), json!({})).to_string();
    let wrong_key = SignatureScheme::default().sign(b"not the secret", body.as_bytes());
    let other_body = SignatureScheme::default().sign(WEBHOOK_SECRET.as_bytes(), b"{}");
    for sig in [
        None,
        Some(wrong_key.as_str()),
        Some(other_body.as_str()),
        Some("sha256=???"),
        Some(""),
    ] {
        let (status, reply) = h.post(&body, sig).await;
        assert_eq!(status, 401, "{sig:?}: {reply}");
        assert_eq!(reply["error"], "invalid_signature");
    }
    assert_eq!(h.queue_depth().await, 0);
}

#[tokio::test]
async fn oversize_malformed_and_unlisted_requests_are_refused_and_not_queued() {
    let h = Harness::start().await;
    let mut big = webhook_event(&new_conversation(), json!({}));
    big["data"]["padding"] = json!("x".repeat(300 * 1024));
    assert_eq!(h.post_signed(&big.to_string()).await.0, 413);

    let (status, reply) = h.post_signed("{\"event\": \"v2\", \"data\": ").await;
    assert_eq!(status, 400);
    assert_eq!(reply["error"], "invalid_payload");

    let (status, reply) = h
        .post_signed(r#"{"event":"x","data":{},"metadata":{"timestamp":"t"}}"#)
        .await;
    assert_eq!(status, 400);
    assert_eq!(reply["field"], "metadata", "{reply}");
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("organizationId"));

    let mut presence = webhook_event(&new_conversation(), json!({}));
    presence["event"] = json!("v2.users.{id}.presence");
    let (status, reply) = h.post_signed(&presence.to_string()).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("event_type_not_allowed"))
    );
    assert_eq!(h.queue_depth().await, 0);
}

#[tokio::test]
async fn an_sqs_failure_answers_503_so_genesys_retries() {
    let h = Harness::start().await;
    h.sqs
        .delete_queue()
        .queue_url(&h.resources.queue_url)
        .send()
        .await
        .unwrap();
    let (status, reply) = h
        .post_signed(&webhook_event(&new_conversation(), json!({})).to_string())
        .await;
    assert_eq!(status, 503, "{reply}");
    assert!(reply.get("messageId").is_none());
}

#[tokio::test]
async fn a_rotated_webhook_secret_is_picked_up_after_a_mismatch() {
    let mut opts = Options::default();
    opts.retry.max_attempts = 1;
    let h = Harness::with(opts).await;
    let sm = aws_sdk_secretsmanager::Client::new(&h.aws);
    sm.put_secret_value()
        .secret_id(&h.resources.webhook_secret_id)
        .secret_string(r#"{"secret": "rotated-webhook-secret-0123456789abcdef"}"#)
        .send()
        .await
        .unwrap();
    let body = webhook_event(&new_conversation(), json!({})).to_string();
    // The key was read at start-up less than a minute ago: no re-read yet, so the new signature fails...
    let new_sig = SignatureScheme::default()
        .sign(b"rotated-webhook-secret-0123456789abcdef", body.as_bytes());
    assert_eq!(h.post(&body, Some(&new_sig)).await.0, 401);
    // ...but a receiver whose last read is older than the refresh interval re-reads once and accepts it.
    let mut cfg = h.receiver.config().clone();
    cfg.secret_refresh_interval = Duration::ZERO;
    let fresh = webhook_receiver::Receiver::new(
        cfg,
        h.sqs.clone(),
        aws_sdk_secretsmanager::Client::new(&h.aws),
    );
    fresh.warm_up().await.unwrap();
    const THIRD: &str = "third-webhook-secret-0123456789abcdef";
    sm.put_secret_value()
        .secret_id(&h.resources.webhook_secret_id)
        .secret_string(THIRD)
        .send()
        .await
        .unwrap();
    let new_sig = SignatureScheme::default().sign(THIRD.as_bytes(), body.as_bytes());
    let mut headers = http::HeaderMap::new();
    headers.insert("x-hub-signature-256", new_sig.parse().unwrap());
    let reply = fresh
        .handle(&headers, body.as_bytes(), None, "rotation-test")
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_dead_lettered_with_its_reason_at_its_last_receive() {
    // Before: SQS redrove it to the DLQ after maxReceiveCount, with none of the reason attributes.
    let mut opts = Options {
        visibility_timeout_secs: 1,
        max_receive_count: 2,
        ..Options::default()
    };
    opts.retry.max_attempts = 1;
    let h = Harness::with(opts).await;
    h.sim.set_faults(Faults {
        fail_next: 1000,
        fail_status: 503,
        ..Faults::default()
    });
    h.post_new_event().await;
    let outcomes = h.drain().await;
    let Tally {
        created,
        dead_lettered: dead,
        retried,
        ..
    } = tally(&outcomes);
    assert_eq!((created, retried, dead), (0, 1, 1), "{outcomes:?}");
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1, "dead-lettered once, by the writer");
    let attributes = &dead[0].1;
    // The 503 to the create may have been applied: not retried before the settle window; at the last receive
    // the lookup that must come first is answered 503 too.
    assert_eq!(attributes["failure_reason"], "servicenow_unavailable");
    assert_eq!(attributes["http_status"], "503");
    assert!(attributes["failure_detail"].contains("receive 2"));
    assert!(h.sim.incidents().is_empty());
}
