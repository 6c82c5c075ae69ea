//! legacy-ingest delivering into the Genesys Platform API (the simulator) with DynamoDB claims (moto): a data
//! table row by default, an external contact's note, a participant's attributes; each exactly once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use integration_tests::aws_config;
use local::dev_tokens::{mint, standard_claims, DEV_AUDIENCE, DEV_ISSUER, KEY_SET_JSON};
use local::genesys_sim::{GenesysFaults, GenesysSim, DEFAULT_DATATABLE_COLUMNS};
use shared::config::Env;

const CLIENT_ID: &str = "targets-client";
const CLIENT_SECRET: &str = "targets-client-secret";
const TABLE: &str = "orders";

struct Targets {
    genesys: GenesysSim,
    url: String,
    token: String,
    /// The idempotency table (claims and row locks).
    table: String,
}

impl Targets {
    /// legacy-ingest as `build` makes it, with `env` over the defaults (a data table `orders` keyed by
    /// `reference`, with the default columns).
    async fn start(env: &[(&'static str, String)]) -> Self {
        Self::try_start(DEFAULT_DATATABLE_COLUMNS, env)
            .await
            .unwrap_or_else(|e| panic!("cold start: {e}"))
    }

    /// As `start`, the `orders` table having `columns`; the cold start's error when it refuses.
    async fn try_start(
        columns: &[(&str, &str)],
        env: &[(&'static str, String)],
    ) -> Result<Self, shared::StartupError> {
        let genesys = GenesysSim::new(CLIENT_ID, CLIENT_SECRET);
        genesys.add_datatable(TABLE, "order", columns);
        let genesys_url = format!(
            "http://{}",
            genesys.spawn(([127, 0, 0, 1], 0).into()).await.unwrap()
        );
        let aws = aws_config().await;
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let names = local::aws_setup::ResourceNames::with_prefix(&prefix);
        let resources = local::aws_setup::ensure(&aws, &names, &integration_tests::secret_values())
            .await
            .expect("moto resources");
        let mut pairs: Vec<(&str, String)> = vec![
            ("JWT_ISSUERS", DEV_ISSUER.into()),
            ("JWT_AUDIENCES", DEV_AUDIENCE.into()),
            ("JWT_KEYS_JSON", KEY_SET_JSON.into()),
            ("GENESYS_CLIENT_ID", CLIENT_ID.into()),
            ("GENESYS_CLIENT_SECRET", CLIENT_SECRET.into()),
            ("GENESYS_LOGIN_URL", genesys_url.clone()),
            ("GENESYS_API_URL", genesys_url.clone()),
            ("GENESYS_DATATABLE_ID", TABLE.into()),
            ("IDEMPOTENCY_TABLE", resources.table.clone()),
            ("PUBLISH_DEADLINE_MS", "3000".into()),
            ("INGEST_RETRY_BASE_MS", "50".into()),
        ];
        pairs.extend(env.iter().cloned());
        let config = legacy_ingest::Config::from_vars(&Env::from_pairs(pairs)).expect("config");
        let ingest = Arc::new(legacy_ingest::build(config, &aws).await?);
        let addr = local::http::spawn(
            ([127, 0, 0, 1], 0).into(),
            local::http::ingest_router(ingest),
        )
        .await
        .unwrap();
        Ok(Self {
            genesys,
            url: format!("http://{addr}/ingest"),
            token: mint(jsonwebtoken::Algorithm::ES256, &standard_claims()),
            table: resources.table,
        })
    }

    async fn post(&self, body: &Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn writes(&self, method: &str, path: &str) -> usize {
        self.genesys
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path == path && (200..300).contains(&r.status))
            .count()
    }

    fn row(&self, key: &str) -> Option<serde_json::Map<String, Value>> {
        self.genesys.datatable(TABLE)?.rows.get(key).cloned()
    }
}

fn order(tx: &str, reference: &str, status: &str, at: &str) -> Value {
    json!({"transaction_id": tx, "event_type": format!("order.{status}"), "amount": 42.5, "currency": "EUR",
           "timestamp": at, "reference": reference})
}

const ROW: &str = "/api/v2/flows/datatables/{id}/rows/{key}";
const ROWS: &str = "/api/v2/flows/datatables/{id}/rows";

#[tokio::test]
async fn by_default_an_event_upserts_its_data_table_row_and_a_replay_writes_nothing() {
    let t = Targets::start(&[]).await;
    let (status, body) = t
        .post(&order("TX-1", "ORD-1", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (&body["target"], &body["outcome"]),
        (&json!("datatable"), &json!("row_created"))
    );
    assert_eq!(
        Value::Object(t.row("ORD-1").unwrap()),
        json!({"key": "ORD-1", "transaction_id": "TX-1", "event_type": "order.shipped", "amount": 42.5,
               "currency": "EUR", "updated_at": "2026-12-01T10:00:00Z"})
    );
    // The same transaction again: a duplicate, nothing sent to Genesys.
    let before = t.genesys.requests().len();
    let (status, body) = t
        .post(&order("TX-1", "ORD-1", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(
        (status, &body["status"]),
        (202, &json!("duplicate")),
        "{body}"
    );
    assert_eq!(t.genesys.requests().len(), before);
    // A later event of the order updates the row.
    let (_, body) = t
        .post(&order("TX-2", "ORD-1", "delivered", "2026-12-01T12:00:00Z"))
        .await;
    assert_eq!(body["outcome"], "row_updated", "{body}");
    assert_eq!(t.row("ORD-1").unwrap()["event_type"], "order.delivered");
}

#[tokio::test]
async fn an_older_event_after_a_newer_one_leaves_the_row_unchanged() {
    let t = Targets::start(&[]).await;
    let (_, body) = t
        .post(&order(
            "TX-NEW",
            "ORD-2",
            "delivered",
            "2026-12-01T12:00:00Z",
        ))
        .await;
    assert_eq!(body["outcome"], "row_created", "{body}");
    let (status, body) = t
        .post(&order("TX-OLD", "ORD-2", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (202, &json!("row_newer")),
        "{body}"
    );
    assert_eq!(t.row("ORD-2").unwrap()["event_type"], "order.delivered");
    assert_eq!(t.writes("PUT", ROW), 0);
}

#[tokio::test]
async fn the_same_transaction_three_times_at_once_is_one_row_write() {
    let t = Targets::start(&[]).await;
    t.genesys.set_faults(GenesysFaults {
        latency_ms: 100,
        ..GenesysFaults::default()
    });
    let e = order("TX-3", "ORD-3", "shipped", "2026-12-01T10:00:00Z");
    let (a, b, c) = tokio::join!(t.post(&e), t.post(&e), t.post(&e));
    for (status, body) in [&a, &b, &c] {
        assert_eq!(*status, 202, "{body}");
    }
    let outcomes: Vec<&Value> = [&a.1, &b.1, &c.1].iter().map(|b| &b["outcome"]).collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "row_created").count(),
        1,
        "{outcomes:?}"
    );
    // The other two waited for the first (its claim), and never raced it at Genesys.
    assert_eq!(
        outcomes.iter().filter(|o| **o == "duplicate").count(),
        2,
        "{outcomes:?}"
    );
    assert_eq!(
        t.genesys
            .requests()
            .iter()
            .filter(|r| r.status == 409)
            .count(),
        0
    );
    assert_eq!(t.writes("POST", ROWS) + t.writes("PUT", ROW), 1);
}

#[tokio::test]
async fn a_row_deleted_between_read_and_write_is_created_again_once() {
    let t = Targets::start(&[]).await;
    t.post(&order("TX-4", "ORD-4", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    // Deleted right after legacy-ingest read it: the PUT answers 404, the row is created again.
    let sim = t.genesys.clone();
    let deleter = tokio::spawn(async move {
        loop {
            let read = sim
                .requests()
                .iter()
                .filter(|r| r.method == "GET" && r.path == ROW)
                .count();
            if read >= 2 {
                sim.delete_row(TABLE, "ORD-4");
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    t.genesys.set_faults(GenesysFaults {
        latency_ms: 60,
        ..GenesysFaults::default()
    });
    let (status, body) = t
        .post(&order("TX-5", "ORD-4", "delivered", "2026-12-01T12:00:00Z"))
        .await;
    deleter.await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["outcome"], "row_created");
    assert_eq!(t.row("ORD-4").unwrap()["event_type"], "order.delivered");
    let put_404 = t
        .genesys
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.status == 404)
        .count();
    assert_eq!(put_404, 1);
    assert_eq!(
        t.writes("POST", ROWS),
        2,
        "the first create and the re-create"
    );
}

#[tokio::test]
async fn a_column_the_table_lacks_refuses_the_start_naming_the_setting() {
    let columns = json!({"status": "/event_type", "updated_at": "/timestamp"}).to_string();
    let refused = Targets::try_start(DEFAULT_DATATABLE_COLUMNS, &[("DATATABLE_COLUMNS", columns)])
        .await
        .err()
        .expect("refused");
    let text = refused.to_string();
    assert!(
        text.contains("GENESYS_DATATABLE_ID") && text.contains("status"),
        "{text}"
    );
    let missing = Targets::try_start(
        DEFAULT_DATATABLE_COLUMNS,
        &[("GENESYS_DATATABLE_ID", "nope".into())],
    )
    .await
    .err()
    .expect("refused");
    assert!(
        missing.to_string().contains("no data table nope"),
        "{missing}"
    );
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_a_400_naming_the_column_and_nothing_is_written() {
    let columns = [
        ("event_type", "string"),
        ("amount", "integer"),
        ("updated_at", "string"),
    ];
    let mapping =
        json!({"event_type": "/event_type", "amount": "/amount", "updated_at": "/timestamp"})
            .to_string();
    let t = Targets::try_start(&columns, &[("DATATABLE_COLUMNS", mapping)])
        .await
        .unwrap();
    let (status, body) = t
        .post(&order("TX-6", "ORD-6", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["fields"],
        json!([{"field": "amount", "problem": "the column is a integer; the event's value is not"}])
    );
    assert_eq!(t.writes("POST", ROWS), 0);
    let (status, body) = t
        .post(
            &json!({"transaction_id": "TX-6b", "event_type": "order.shipped", "amount": 3,
                                        "currency": "EUR", "timestamp": "2026-12-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (202, &json!("row_created")),
        "keyed by transaction_id: {body}"
    );
}

#[tokio::test]
async fn a_contact_note_is_written_once_even_when_sent_three_times_at_once() {
    let t = Targets::start(&[("INGEST_TARGET", "contact-note".into())]).await;
    let contact = t.genesys.add_contact("+15550199888", "ada@example.com");
    t.genesys.add_contact("+15550199000", "other@example.com");
    t.genesys.set_faults(GenesysFaults {
        latency_ms: 80,
        ..GenesysFaults::default()
    });
    let mut e = order("TX-7", "ORD-7", "refunded", "2026-12-01T10:00:00Z");
    e["customer_phone"] = json!("+1 555 019 9888");
    let (a, b, c) = tokio::join!(t.post(&e), t.post(&e), t.post(&e));
    for (status, body) in [&a, &b, &c] {
        assert_eq!(*status, 202, "{body}");
    }
    let notes = t.genesys.contact(&contact).unwrap().notes;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0]["noteText"]
        .as_str()
        .unwrap()
        .contains("order.refunded"));
    // Matched by e-mail too; no contact → 422 naming why.
    let mut by_mail = order("TX-8", "ORD-8", "refunded", "2026-12-01T11:00:00Z");
    by_mail["customer_email"] = json!("Ada@Example.com");
    t.genesys.set_faults(GenesysFaults::default());
    assert_eq!(t.post(&by_mail).await.1["outcome"], "noted");
    let mut nobody = order("TX-9", "ORD-9", "refunded", "2026-12-01T11:00:00Z");
    nobody["customer_phone"] = json!("+442071838750");
    let (status, body) = t.post(&nobody).await;
    assert_eq!(
        (status, &body["error"]),
        (422, &json!("contact_not_found")),
        "{body}"
    );
    let (status, body) = t
        .post(&order(
            "TX-10",
            "ORD-10",
            "refunded",
            "2026-12-01T11:00:00Z",
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["fields"][0]["field"],
        "customer_phone or customer_email"
    );
}

#[tokio::test]
async fn a_note_whose_answer_was_lost_is_found_not_written_again() {
    let t = Targets::start(&[("INGEST_TARGET", "contact-note".into())]).await;
    let contact = t.genesys.add_contact("+15550199888", "ada@example.com");
    // An earlier attempt stored the note, then its answer was lost and its claim released.
    let key = legacy_ingest::event::idempotency_key(DEV_ISSUER, "TX-11");
    t.genesys.add_note(
        &contact,
        &format!(
            "{}\norder.refunded …",
            legacy_ingest::targets::reference(&key)
        ),
    );
    let mut e = order("TX-11", "ORD-11", "refunded", "2026-12-01T10:00:00Z");
    e["customer_phone"] = json!("+15550199888");
    let (status, body) = t.post(&e).await;
    assert_eq!(
        (status, &body["outcome"]),
        (202, &json!("already_noted")),
        "{body}"
    );
    assert_eq!(t.genesys.contact(&contact).unwrap().notes.len(), 1);
    assert_eq!(
        t.writes("POST", "/api/v2/externalcontacts/contacts/{id}/notes"),
        0
    );
}

#[tokio::test]
async fn participant_data_sets_the_live_conversations_attributes() {
    let t = Targets::start(&[("INGEST_TARGET", "participant-data".into())]).await;
    t.genesys.add_participant("c-1", "p-1");
    let mut e = order("TX-12", "ORD-12", "shipped", "2026-12-01T10:00:00Z");
    e["conversation_id"] = json!("c-1");
    e["participant_id"] = json!("p-1");
    e["attributes"] = json!({"orderStatus": "shipped", "items": 3});
    let (status, body) = t.post(&e).await;
    assert_eq!(
        (status, &body["outcome"]),
        (202, &json!("attributes_set")),
        "{body}"
    );
    let attrs = t.genesys.participant_attributes("c-1", "p-1").unwrap();
    assert_eq!(attrs["orderStatus"], "shipped");
    assert_eq!(attrs["items"], "3");
    assert_eq!(attrs["legacyTransactionId"], "TX-12");
    let mut ended = e.clone();
    ended["transaction_id"] = json!("TX-13");
    ended["conversation_id"] = json!("c-gone");
    let (status, body) = t.post(&ended).await;
    assert_eq!(
        (status, &body["error"]),
        (422, &json!("conversation_not_found")),
        "{body}"
    );
}

#[tokio::test]
async fn throttling_is_retried_within_the_deadline_then_a_503_with_retry_after() {
    let t = Targets::start(&[]).await;
    t.genesys.set_faults(GenesysFaults {
        throttle_next: 1,
        retry_after_secs: 1,
        ..GenesysFaults::default()
    });
    let (status, body) = t
        .post(&order("TX-14", "ORD-14", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (202, &json!("row_created")),
        "{body}"
    );
    t.genesys.set_faults(GenesysFaults {
        down: true,
        ..GenesysFaults::default()
    });
    let (status, body) = t
        .post(&order("TX-15", "ORD-15", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (503, &json!("upstream_unavailable")),
        "{body}"
    );
    // Genesys back: the same transaction goes through (its claim was released).
    t.genesys.set_faults(GenesysFaults::default());
    let (status, body) = t
        .post(&order("TX-15", "ORD-15", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (202, &json!("row_created")),
        "{body}"
    );
    // A Genesys 4xx is a 502 with a sanitised reason.
    t.genesys.set_faults(GenesysFaults {
        fail_next: 3,
        fail_status: 400,
        ..GenesysFaults::default()
    });
    let (status, body) = t
        .post(&order("TX-16", "ORD-16", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (502, &json!("upstream_rejected")),
        "{body}"
    );
    assert!(!body.to_string().contains("Injected"), "{body}");
}

#[tokio::test]
async fn a_write_whose_answer_is_lost_is_held_then_found_not_repeated() {
    let t = Targets::start(&[
        ("INGEST_TARGET", "contact-note".into()),
        ("INGEST_WRITE_SETTLE_SECONDS", "1".into()),
    ])
    .await;
    let contact = t.genesys.add_contact("+15550199888", "ada@example.com");
    t.genesys.set_faults(GenesysFaults {
        drop_after_write_next: 1,
        ..GenesysFaults::default()
    });
    let mut e = order("TX-20", "ORD-20", "refunded", "2026-12-01T10:00:00Z");
    e["customer_phone"] = json!("+15550199888");
    // The note is stored, the answer never comes: 503, and nothing is written again at once.
    let (status, body) = t.post(&e).await;
    assert_eq!(
        (status, &body["error"]),
        (503, &json!("upstream_unavailable")),
        "{body}"
    );
    assert!(body.get("outcome").is_none());
    // The sender retries: it waits out the hold, reads the contact's notes and finds the one that was stored.
    let (status, body) = t.post(&e).await;
    assert_eq!(
        (status, &body["outcome"]),
        (202, &json!("already_noted")),
        "{body}"
    );
    assert_eq!(t.genesys.contact(&contact).unwrap().notes.len(), 1);
    let unanswered = t
        .genesys
        .requests()
        .iter()
        .filter(|r| r.status == 0)
        .count();
    assert_eq!(unanswered, 1);
}

#[tokio::test]
async fn a_row_write_whose_answer_is_lost_is_found_after_the_hold() {
    let t = Targets::start(&[("INGEST_WRITE_SETTLE_SECONDS", "1".into())]).await;
    t.genesys.set_faults(GenesysFaults {
        drop_after_write_next: 1,
        ..GenesysFaults::default()
    });
    let e = order("TX-21", "ORD-21", "shipped", "2026-12-01T10:00:00Z");
    assert_eq!(t.post(&e).await.0, 503);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = t.post(&e).await;
    assert_eq!(
        (status, &body["outcome"]),
        (202, &json!("row_unchanged")),
        "{body}"
    );
    // The lost write (applied, then unanswered) is the only one.
    assert_eq!(t.writes("POST", ROWS), 1);
    assert_eq!(
        t.genesys
            .requests()
            .iter()
            .filter(|r| r.status == 0)
            .count(),
        1
    );
}

#[tokio::test]
async fn rows_keep_unmapped_columns_and_the_first_of_two_events_at_one_instant() {
    let mut columns = DEFAULT_DATATABLE_COLUMNS.to_vec();
    columns.push(("vip", "boolean"));
    let t = Targets::try_start(&columns, &[]).await.unwrap();
    t.post(&order("TX-22", "ORD-22", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    // An administrator flags the order in Genesys.
    {
        let mut row = t.row("ORD-22").unwrap();
        row.insert("vip".into(), json!(true));
        t.genesys.delete_row(TABLE, "ORD-22");
        t.genesys.put_row_directly(TABLE, row);
    }
    let (_, body) = t
        .post(&order(
            "TX-23",
            "ORD-22",
            "delivered",
            "2026-12-01T11:00:00Z",
        ))
        .await;
    assert_eq!(body["outcome"], "row_updated", "{body}");
    let row = t.row("ORD-22").unwrap();
    assert_eq!(
        (&row["event_type"], &row["vip"]),
        (&json!("order.delivered"), &json!(true))
    );
    // Another event at the same instant does not replace it.
    let (_, body) = t
        .post(&order(
            "TX-24",
            "ORD-22",
            "returned",
            "2026-12-01T11:00:00Z",
        ))
        .await;
    assert_eq!(body["outcome"], "row_newer", "{body}");
    assert_eq!(t.row("ORD-22").unwrap()["event_type"], "order.delivered");
}

#[tokio::test]
async fn a_corrected_resend_after_a_refusal_is_delivered_not_a_conflict() {
    let t = Targets::start(&[("INGEST_TARGET", "contact-note".into())]).await;
    let contact = t.genesys.add_contact("+15550199888", "ada@example.com");
    let mut e = order("TX-25", "ORD-25", "refunded", "2026-12-01T10:00:00Z");
    e["customer_phone"] = json!("+15550100000");
    assert_eq!(t.post(&e).await.0, 422);
    e["customer_phone"] = json!("+15550199888");
    let (status, body) = t.post(&e).await;
    assert_eq!((status, &body["outcome"]), (202, &json!("noted")), "{body}");
    // A note's text cannot imitate another transaction's reference.
    let other = legacy_ingest::targets::reference(&legacy_ingest::event::idempotency_key(
        DEV_ISSUER, "TX-26",
    ));
    let mut forged = order("TX-27", "ORD-27", "refunded", "2026-12-01T10:00:00Z");
    forged["customer_phone"] = json!("+15550199888");
    forged["attributes"] = json!({"comment": other});
    assert_eq!(t.post(&forged).await.1["outcome"], "noted");
    let mut real = order("TX-26", "ORD-26", "refunded", "2026-12-01T10:00:00Z");
    real["customer_phone"] = json!("+15550199888");
    assert_eq!(t.post(&real).await.1["outcome"], "noted");
    assert_eq!(t.genesys.contact(&contact).unwrap().notes.len(), 3);
}

#[tokio::test]
async fn a_row_locks_release_and_its_transactions_completion_apply_together_or_not_at_all() {
    use shared::idempotency::{Claim, IdempotencyStore};
    let aws = aws_config().await;
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let names = local::aws_setup::ResourceNames::with_prefix(&prefix);
    let resources = local::aws_setup::ensure(&aws, &names, &integration_tests::secret_values())
        .await
        .unwrap();
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let store = IdempotencyStore::new(dynamodb, resources.table, Duration::from_secs(3600));
    let until = shared::clock::epoch_ms() + 60_000;
    let claim = |key: &'static str| {
        let store = store.clone();
        async move {
            match store.claim(key, "h", until).await.unwrap() {
                Claim::Acquired { token, .. } => token,
                other => panic!("{key}: {other:?}"),
            }
        }
    };
    let lock = claim("datatable-row:r").await;
    let tx = claim("ingest:tx").await;
    let both = |lock: &str, tx: &str| {
        vec![
            store
                .release_update("datatable-row:r", lock, None, None)
                .unwrap(),
            store.completion("ingest:tx", tx, "row_created").unwrap(),
        ]
    };
    // One stale token: neither is written.
    assert!(!store.transact(both(&lock, "stale")).await.unwrap());
    assert!(matches!(
        store.claim("datatable-row:r", "h", until).await.unwrap(),
        Claim::InFlight { .. }
    ));
    assert!(matches!(
        store.claim("ingest:tx", "h", until).await.unwrap(),
        Claim::InFlight { .. }
    ));
    // Both tokens live: the lock is free again and the transaction completed.
    assert!(store.transact(both(&lock, &tx)).await.unwrap());
    assert!(matches!(
        store.claim("datatable-row:r", "h", until).await.unwrap(),
        Claim::Acquired { .. }
    ));
    assert!(matches!(
        store.claim("ingest:tx", "h", until).await.unwrap(),
        Claim::Completed { .. }
    ));
}

#[tokio::test]
async fn a_row_lock_taken_over_during_the_write_is_left_to_its_holder_and_the_transaction_still_completes(
) {
    use sha2::Digest;
    use shared::idempotency::{get_s, read_item, IdempotencyStore};
    let t = Arc::new(Targets::start(&[]).await);
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let locks = IdempotencyStore::new(dynamodb.clone(), t.table.clone(), Duration::from_secs(3600));
    let lock_key = format!(
        "datatable-row:{}",
        hex::encode(sha2::Sha256::digest(format!("{TABLE}\nORD-9").as_bytes()))
    );
    // Slow enough for the takeover below to land while the row is being written.
    t.genesys.set_faults(GenesysFaults {
        latency_ms: 700,
        ..Default::default()
    });
    // Answered 404 (no row yet), then the create is on its way.
    let reads = || {
        t.genesys
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == ROW)
            .count()
    };
    let before = reads();
    let post = tokio::spawn({
        let t = t.clone();
        async move {
            t.post(&order("TX-9", "ORD-9", "shipped", "2026-12-01T10:00:00Z"))
                .await
        }
    });
    integration_tests::wait_until("the row's read", || reads() > before).await;
    let thief =
        integration_tests::take_over(&locks, &dynamodb, &t.table, &lock_key, "row-lock").await;
    let (status, body) = post.await.unwrap();
    assert_eq!(
        (status, &body["outcome"]),
        (202, &json!("row_created")),
        "{body}"
    );
    // The one transaction was refused (the lock's token changed); each part was then written on its own: the
    // other holder's lock stays, and the transaction is completed (a resend is a duplicate).
    let lock = read_item(&dynamodb, &t.table, &lock_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(get_s(&lock, "lease_token"), Some(thief.as_str()));
    t.genesys.set_faults(GenesysFaults::default());
    let (status, body) = t
        .post(&order("TX-9", "ORD-9", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(
        (status, &body["status"]),
        (202, &json!("duplicate")),
        "{body}"
    );
}

#[tokio::test]
async fn claims_are_taken_together_in_one_transaction_and_one_held_elsewhere_writes_none() {
    use shared::idempotency::{claim_together, get_s, read_item, Claim, IdempotencyStore};
    let t = Targets::start(&[]).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let claims =
        IdempotencyStore::new(dynamodb.clone(), t.table.clone(), Duration::from_secs(3600));
    let until = shared::clock::epoch_ms() + 60_000;
    let token = |key: &'static str| {
        let (dynamodb, table) = (dynamodb.clone(), t.table.clone());
        async move {
            read_item(&dynamodb, &table, key)
                .await
                .unwrap()
                .and_then(|i| get_s(&i, "lease_token").map(str::to_string))
        }
    };
    let tokens = claim_together([
        (&claims, "fresh:a", "h", until),
        (&claims, "fresh:b", "h", until),
    ])
    .await
    .expect("both were free");
    assert_eq!(tokens.len(), 2);
    assert_eq!(token("fresh:a").await.as_ref(), Some(&tokens[0]));
    assert_eq!(token("fresh:b").await.as_ref(), Some(&tokens[1]));
    // One of them is held: nothing is written, and each is then claimed on its own.
    assert!(claim_together([
        (&claims, "fresh:c", "h", until),
        (&claims, "fresh:a", "h", until)
    ])
    .await
    .is_none());
    assert_eq!(token("fresh:c").await, None);
    assert_eq!(token("fresh:a").await.as_ref(), Some(&tokens[0]));
    assert!(matches!(
        claims.claim("fresh:a", "h", until).await.unwrap(),
        Claim::InFlight { .. }
    ));
    assert!(matches!(
        claims.claim("fresh:c", "h", until).await.unwrap(),
        Claim::Acquired { retaken: false, .. }
    ));
    // Released (as a row lock is after its write), a record is claimed together again; a completed one is not.
    claims
        .release("fresh:a", &tokens[0], None, None)
        .await
        .unwrap();
    let again = claim_together([
        (&claims, "fresh:a", "h", until),
        (&claims, "fresh:d", "h", until),
    ])
    .await
    .expect("a released lease and a free key");
    assert_eq!(token("fresh:a").await.as_ref(), Some(&again[0]));
    assert!(claims
        .complete("fresh:b", &tokens[1], "done")
        .await
        .unwrap());
    assert!(claim_together([
        (&claims, "fresh:e", "h", until),
        (&claims, "fresh:b", "h", until)
    ])
    .await
    .is_none());
    assert_eq!(token("fresh:e").await, None);
    // A released record of another payload is not taken.
    claims
        .release("fresh:d", &again[1], None, None)
        .await
        .unwrap();
    assert!(claim_together([
        (&claims, "fresh:f", "h", until),
        (&claims, "fresh:d", "h2", until)
    ])
    .await
    .is_none());
    assert_eq!(token("fresh:f").await, None);
}

#[tokio::test]
async fn a_row_whose_lock_is_held_waits_for_it_and_is_then_delivered_once() {
    use sha2::Digest;
    use shared::idempotency::{Claim, IdempotencyStore};
    let t = Targets::start(&[]).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws_config().await);
    let locks = IdempotencyStore::new(dynamodb.clone(), t.table.clone(), Duration::from_secs(3600));
    let lock_key = format!(
        "datatable-row:{}",
        hex::encode(sha2::Sha256::digest(format!("{TABLE}\nORD-7").as_bytes()))
    );
    // Another writer holds the row for a moment: the claim and the lock cannot be taken together, so the
    // claim is taken alone and the lock waited for.
    let lease_ends = std::time::Instant::now() + Duration::from_millis(1500);
    let held = locks
        .claim(&lock_key, "row-lock", shared::clock::epoch_ms() + 1500)
        .await
        .unwrap();
    assert!(matches!(held, Claim::Acquired { .. }));
    let (status, body) = t
        .post(&order("TX-7", "ORD-7", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(
        (status, &body["outcome"]),
        (202, &json!("row_created")),
        "{body}"
    );
    // Not written under the other writer's lease: the answer came after it ended.
    assert!(std::time::Instant::now() >= lease_ends);
    let (status, body) = t
        .post(&order("TX-7", "ORD-7", "shipped", "2026-12-01T10:00:00Z"))
        .await;
    assert_eq!(
        (status, &body["status"]),
        (202, &json!("duplicate")),
        "{body}"
    );
    // The same transaction with another payload, its row lock now free: refused, not delivered.
    let (status, body) = t
        .post(&order("TX-7", "ORD-7", "delivered", "2026-12-01T11:00:00Z"))
        .await;
    assert_eq!(status, 409, "{body}");
    let creates = t
        .genesys
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == ROWS)
        .count();
    assert_eq!(creates, 1);
}

#[tokio::test]
async fn single_writes_refused_by_a_transaction_on_their_item_are_read_or_sent_again() {
    use integration_tests::dynamodb_conflicts::ConflictingDynamoDb;
    use shared::idempotency::{Claim, IdempotencyStore};
    let t = Targets::start(&[]).await;
    let proxy = ConflictingDynamoDb::start().await;
    let claims = IdempotencyStore::new(
        proxy.client().await,
        t.table.clone(),
        Duration::from_secs(3600),
    );
    let until = shared::clock::epoch_ms() + 60_000;
    // A claim refused while a transaction writes its record: the record is read (none yet), then claimed.
    proxy.refuse("PutItem", 1);
    let Claim::Acquired { token, .. } = claims.claim("conflict:a", "h", until).await.unwrap()
    else {
        panic!("not claimed");
    };
    assert_eq!(proxy.refused(), 1);
    // A completion refused twice: sent again, applied.
    proxy.refuse("UpdateItem", 2);
    assert!(claims.complete("conflict:a", &token, "done").await.unwrap());
    assert_eq!(proxy.refused(), 3);
    assert!(matches!(
        claims.claim("conflict:a", "h", until).await.unwrap(),
        Claim::Completed { .. }
    ));
    // Refused more often than it is sent again: the caller is told.
    let Claim::Acquired { token, .. } = claims.claim("conflict:b", "h", until).await.unwrap()
    else {
        panic!("not claimed");
    };
    proxy.refuse("UpdateItem", 3);
    assert!(claims.complete("conflict:b", &token, "done").await.is_err());
}
