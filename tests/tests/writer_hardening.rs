//! The writer against ServiceNow's harder failures (issue 10): late commits, long throttling, lookups that
//! cannot be trusted, replays after the claims expired. moto + the ServiceNow simulator on loopback.

use std::time::Duration;

use integration_tests::*;
use local::servicenow_sim::Faults;
use serde_json::json;
use servicenow_writer::Outcome;

fn retried(outcomes: &[(String, Outcome)]) -> usize {
    outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Retry { .. }))
        .count()
}

#[tokio::test]
async fn a_create_that_commits_after_the_client_timed_out_is_found_not_created_again() {
    // Before: the retry 200 ms after the timeout found nothing and created a second incident.
    let h = Harness::with(Options {
        servicenow_timeout: Duration::from_millis(800),
        settle: Duration::from_secs(3),
        ..Options::default()
    })
    .await;
    h.sim.set_faults(Faults {
        late_commit_next: 1,
        late_commit_ms: 1500,
        ..Faults::default()
    });
    let conversation = new_conversation();
    let first = webhook_event(&conversation, json!({})).to_string();
    assert_eq!(h.post_signed(&first).await.0, 202);
    // A later event of the same call arrives while the create is still committing.
    let later = acw_event(&conversation, "Billing", "refund issued").to_string();
    assert_eq!(h.post_signed(&later).await.0, 202);
    let outcomes = h.drain().await;
    let t = tally(&outcomes);
    assert_eq!(h.sim.incidents().len(), 1, "{outcomes:?}");
    assert_eq!((t.created, t.dead_lettered), (0, 0), "{outcomes:?}");
    assert_eq!(t.reconciled, 1, "the late commit is adopted: {outcomes:?}");
    assert!(retried(&outcomes) >= 1, "{outcomes:?}");
    let number = h.sim.incidents()[0]["number"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        h.sim
            .work_notes(&number)
            .iter()
            .any(|n| n.contains("refund issued")),
        "the later event's note is on the one incident"
    );
}

#[tokio::test]
async fn a_retry_after_longer_than_an_invocation_waits_is_waited_out_in_the_queue_in_one_receive() {
    // Before: the record came back after the visibility timeout, again and again, burning receives.
    let h = Harness::with(Options {
        visibility_timeout_secs: 1,
        ..Options::default()
    })
    .await;
    h.sim.set_faults(Faults {
        throttle_next: 1,
        retry_after_secs: 7, // above the harness's 5 s in-invocation maximum
        ..Faults::default()
    });
    h.post_new_event().await;
    let outcomes = h.drain().await;
    assert_eq!(
        retried(&outcomes),
        1,
        "one receive for the wait: {outcomes:?}"
    );
    assert_eq!(tally(&outcomes).created, 1, "{outcomes:?}");
    let waited = h.ms_from_first_429_to_the_next_request();
    assert!(
        waited >= 7000,
        "Retry-After: 7 not honoured: next request {waited} ms later"
    );
}

#[tokio::test]
async fn an_acl_hidden_incident_is_never_duplicated_and_a_real_empty_lookup_creates() {
    // Hidden: the create committed, its answer was lost, and an ACL hides the incident from the lookup (404).
    let h = Harness::with(Options {
        max_receive_count: 3,
        ..Options::default()
    })
    .await;
    h.sim.set_faults(Faults {
        drop_after_create: 1,
        acl_hidden: vec!["INC0010001".into()],
        ..Faults::default()
    });
    h.post_new_event().await;
    let outcomes = h.drain().await;
    assert_eq!(h.sim.incidents().len(), 1, "no duplicate: {outcomes:?}");
    h.dead_letters_as(1, "servicenow_lookup_untrustworthy")
        .await;

    // Empty: a 503 (which may have been applied) is looked up after the settle window; v2 answers 200 [].
    let h = Harness::start().await;
    h.sim.set_faults(Faults {
        fail_next: 1,
        fail_status: 503,
        fail_method: Some("POST".into()),
        ..Faults::default()
    });
    h.post_new_event().await;
    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes).created, 1, "{outcomes:?}");
    assert_eq!(h.sim.incidents().len(), 1);
    assert!(h
        .sim
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path == "/api/now/table/incident" && r.status == 200));
}

#[tokio::test]
async fn a_lookup_the_instance_ignores_is_an_error_never_a_create() {
    // Before: a returned row with another correlation_id was read as "not found" and led to a create.
    let h = Harness::with(Options {
        max_receive_count: 2,
        ..Options::default()
    })
    .await;
    h.post_new_event().await; // another conversation's incident, visible to every query
    assert_eq!(tally(&h.drain().await).created, 1);
    h.sim.set_faults(Faults {
        drop_after_create: 1,
        unqueryable_fields: vec!["correlation_id".into()],
        ..Faults::default()
    });
    h.post_new_event().await;
    let outcomes = h.drain().await;
    assert_eq!(
        h.sim.incidents().len(),
        2,
        "one each, none twice: {outcomes:?}"
    );
    let dead = h
        .dead_letters_as(1, "servicenow_lookup_untrustworthy")
        .await;
    assert!(dead[0]["failure_detail"].contains("ignored the query"));
}

#[tokio::test]
async fn a_replay_after_the_claims_expired_finds_the_incident_it_made() {
    // Before: claims lived 72 h and the DLQ 14 days; a replay on day 4 of an unconfirmed create duplicated it.
    let h = Harness::with(Options {
        max_receive_count: 1,
        ..Options::default()
    })
    .await;
    h.sim.set_faults(Faults {
        drop_after_create: 1,
        ..Faults::default()
    });
    h.post_new_event().await;
    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes).dead_lettered, 1, "{outcomes:?}");
    assert_eq!(h.sim.incidents().len(), 1);
    let dead = h.dead_letters().await;
    assert_eq!(dead[0].1["failure_reason"], "servicenow_write_unconfirmed");
    // The replay comes after the claims' TTL (they are gone), with the attributes the DLQ kept.
    h.clear_table().await;
    h.enqueue_with_attributes(&dead[0].0, &dead[0].1).await;
    let outcomes = h.drain().await;
    assert_eq!(tally(&outcomes), Tally::reconciled(1), "{outcomes:?}");
    assert_eq!(h.sim.incidents().len(), 1);
}

#[tokio::test]
async fn through_an_import_set_a_create_finds_the_conversations_incident_even_when_the_table_lost_it(
) {
    // ServiceNow-side uniqueness: the transform coalesces on correlation_id, so even a writer that lost its
    // DynamoDB records (and so does not know to look first) adds to the one incident.
    for (import_set, want_incidents) in [(None, 2), (Some("u_genesys_incident_import"), 1)] {
        let h = Harness::with(Options {
            import_set_table: import_set.map(str::to_string),
            ..Options::default()
        })
        .await;
        let conversation = new_conversation();
        let first = webhook_event(&conversation, json!({})).to_string();
        assert_eq!(h.post_signed(&first).await.0, 202);
        assert_eq!(tally(&h.drain().await).created, 1);
        h.clear_table().await;
        let later = acw_event(&conversation, "Billing", "refund issued").to_string();
        assert_eq!(h.post_signed(&later).await.0, 202);
        let outcomes = h.drain().await;
        assert_eq!(
            h.sim.incidents().len(),
            want_incidents,
            "{import_set:?}: {outcomes:?}"
        );
        if import_set.is_some() {
            assert_eq!(
                tally(&outcomes).updated,
                1,
                "adopted and updated: {outcomes:?}"
            );
            let number = h.sim.incidents()[0]["number"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(h
                .sim
                .work_notes(&number)
                .iter()
                .any(|n| n.contains("refund issued")));
            assert!(h
                .sim
                .requests()
                .iter()
                .any(|r| r.path == "/api/now/import/{staging_table}" && r.status == 201));
        }
    }
}

#[tokio::test]
async fn a_conversations_record_and_its_events_claim_are_written_in_one_transaction_or_not_at_all()
{
    use servicenow_writer::conversations::{
        ClaimCompletion, ConversationStore, KnownIncident, Locked,
    };
    use shared::idempotency::{get_s, read_item, Claim, IdempotencyStore};
    let h = Harness::start().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&h.aws);
    let table = h.resources.table.clone();
    let ttl = Duration::from_secs(3600);
    let claims = IdempotencyStore::new(dynamodb.clone(), table.clone(), ttl);
    let conversations =
        ConversationStore::new(dynamodb.clone(), table.clone(), ttl).with_claims(claims.clone());
    let until = shared::clock::epoch_ms() + 60_000;
    let incident = KnownIncident {
        sys_id: "sys-1".into(),
        number: "INC0000001".into(),
        impact: Some(2),
        urgency: Some(1),
        replaces: None,
    };
    let attr = |key: &'static str, name: &'static str| {
        let (dynamodb, table) = (dynamodb.clone(), table.clone());
        async move {
            read_item(&dynamodb, &table, key)
                .await
                .unwrap()
                .and_then(|i| get_s(&i, name).map(str::to_string))
        }
    };
    let claim = |key: &'static str| {
        let claims = claims.clone();
        async move {
            match claims.claim(key, "h", until).await.unwrap() {
                Claim::Acquired { token, .. } => token,
                other => panic!("{other:?}"),
            }
        }
    };
    let lock = |key: &'static str| {
        let conversations = conversations.clone();
        async move {
            match conversations.lock(key, until).await.unwrap() {
                Locked::Acquired(lock) => lock.token,
                other => panic!("{other:?}"),
            }
        }
    };

    // Both held: both written in one call.
    let (event, lock_token) = (claim("event:1").await, lock("conversation:1").await);
    let done = ClaimCompletion {
        key: "event:1",
        token: &event,
        number: &incident.number,
    };
    assert!(conversations
        .record_completing("conversation:1", &lock_token, &incident, done)
        .await
        .unwrap());
    assert_eq!(
        attr("event:1", "status").await.as_deref(),
        Some("COMPLETED")
    );
    assert_eq!(
        attr("event:1", "incident_number").await.as_deref(),
        Some("INC0000001")
    );
    assert_eq!(
        conversations.incident("conversation:1").await.unwrap(),
        Some(incident.clone())
    );
    assert_eq!(attr("conversation:1", "lock_token").await, None);
    // Sent again (an answer that was lost): the tokens are gone, so nothing is written.
    assert!(!conversations
        .record_completing("conversation:1", &lock_token, &incident, done)
        .await
        .unwrap());

    // The lock taken over, or the claim: nothing is written, not even the half that still holds.
    for (lock_lost, conversation, key) in [
        (true, "conversation:2", "event:2"),
        (false, "conversation:3", "event:3"),
    ] {
        let (event, lock_token) = (claim(key).await, lock(conversation).await);
        let (lock_token, event) = match lock_lost {
            true => ("another holder's".to_string(), event),
            false => (lock_token, "another holder's".to_string()),
        };
        let done = ClaimCompletion {
            key,
            token: &event,
            number: &incident.number,
        };
        assert!(!conversations
            .record_completing(conversation, &lock_token, &incident, done)
            .await
            .unwrap());
        assert_eq!(attr(key, "status").await.as_deref(), Some("INPROGRESS"));
        assert_eq!(conversations.incident(conversation).await.unwrap(), None);
        assert!(attr(conversation, "lock_token").await.is_some());
    }
    // Without the claims store, it writes nothing and says so.
    let alone = ConversationStore::new(dynamodb.clone(), table.clone(), ttl);
    let (event, lock_token) = (claim("event:4").await, lock("conversation:4").await);
    let done = ClaimCompletion {
        key: "event:4",
        token: &event,
        number: &incident.number,
    };
    assert!(!alone
        .record_completing("conversation:4", &lock_token, &incident, done)
        .await
        .unwrap());
    assert_eq!(
        conversations.incident("conversation:4").await.unwrap(),
        None
    );
}
