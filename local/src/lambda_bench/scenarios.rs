//! Per function: the environment template.yaml gives it (pointed at the stub), the secrets it reads, a
//! realistic event per invocation (each one different, so every invocation takes the create path), the
//! DynamoDB items those events need (fixtures), the answer its success looks like, and what the stub must
//! have seen by the end of a run.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use callback_api::access::{AccessKeys, Scope};
use callback_api::reservations::{Change, Reservation, Status};
use serde_json::{json, Value};
use shared::signature::SignatureScheme;

use super::aws_stub::Observed;
use super::item_store::{Item, ItemStore};

/// The fixture the writer's events are made from.
const CUSTOMER_END: &str =
    include_str!("../../../shared/tests/fixtures/conversation-customer-end.json");
/// Seed 001's flat IVR escalation body, as Architect's data action posts it.
const IVR_BODY: &str =
    include_str!("../../../shared/tests/fixtures/seed-001-ivr-escalation.body.json");

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const TABLE: &str = "bench-idempotency";
const DATATABLE: &str = "legacy-events";

/// Secret ids, as the template would name them.
const WEBHOOK_SECRET: &str = "bench/webhook-hmac";
const SN_BASIC_SECRET: &str = "bench/servicenow-credentials";
const SN_OAUTH_SECRET: &str = "bench/servicenow-oauth-client";
const SN_TOKEN_SECRET: &str = "bench/servicenow-token";
const GENESYS_CLIENT_SECRET: &str = "bench/genesys-client-credentials";
const GENESYS_TOKEN_SECRET: &str = "bench/genesys-token";
const JWT_KEYS_SECRET: &str = "bench/legacy-jwt-keys";
const DATA_ACTION_SECRET: &str = "bench/data-action-credentials";
const CALLBACK_ACCESS_SECRET: &str = "bench/callback-access-key";
const SUBSCRIBER_SECRET: &str = "bench/callback-subscriber/calendar";

/// The callbacks table (reservations, slot counters, booking claims, connections, delivery records).
pub const CALLBACKS_TABLE: &str = "bench-callbacks";
/// The callback access secret's value: live and manage tokens are signed under it.
const CALLBACK_ACCESS_KEY: &str = "bench-callback-access-key-0123456789abcdef";
/// The webhook subscriber's secret value.
const SUBSCRIBER_KEY: &str = "bench-calendar-subscriber-secret";
/// template.yaml's `CallbackQueues` default: `support`, weekdays 09:00–17:00 in Berlin, 5 per 30 minutes.
const CALLBACK_QUEUES: &str = r#"{"support": {"genesys_queue_id": "00000000-0000-0000-0000-000000000000", "capacity": 5, "timezone": "Europe/Berlin", "hours": {"mon": ["09:00", "17:00"], "tue": ["09:00", "17:00"], "wed": ["09:00", "17:00"], "thu": ["09:00", "17:00"], "fri": ["09:00", "17:00"]}}}"#;
const CALLBACK_QUEUE: &str = "support";
const WEBHOOKS_QUEUE: &str = "bench-callback-webhooks.fifo";
const WEBHOOKS_DLQ: &str = "bench-callback-webhooks-dlq.fifo";
const SUBSCRIBER: &str = "calendar";
/// How far ahead of generating the events the first booked slot lies (a run must end before it begins).
const SLOT_MARGIN: Duration = Duration::from_secs(600);

/// A run's events and the items they need in the store before the process starts.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub events: Vec<Vec<u8>>,
    /// (table, item)
    pub items: Vec<(String, Item)>,
}

/// The functions the bench can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    WebhookReceiver,
    ServiceNowWriter,
    LegacyIngest,
    /// legacy-ingest with one token for every request, as a client that keeps its token for its lifetime.
    LegacyIngestOneToken,
    TokenRefresher,
    DataAction,
    CallbackApi,
    /// callback-api's `GET /callbacks/{id}`, a client reading its booking.
    CallbackApiRead,
    /// callback-api's `DELETE /callbacks/{id}`, a client cancelling its booking.
    CallbackApiCancel,
    /// callback-api's `PATCH /callbacks/{id}`, a client moving its booking to another slot.
    CallbackApiReschedule,
    CallbackEvents,
    CallbackNotifier,
    CallbackWebsocket,
}

impl Function {
    pub const ALL: [Function; 13] = [
        Function::WebhookReceiver,
        Function::ServiceNowWriter,
        Function::LegacyIngest,
        Function::LegacyIngestOneToken,
        Function::TokenRefresher,
        Function::DataAction,
        Function::CallbackApi,
        Function::CallbackApiRead,
        Function::CallbackApiCancel,
        Function::CallbackApiReschedule,
        Function::CallbackEvents,
        Function::CallbackNotifier,
        Function::CallbackWebsocket,
    ];

    /// The scenario's name: its binary's (and package's), or the binary's and the route's.
    pub fn name(self) -> &'static str {
        match self {
            Function::CallbackApiRead => "callback-api-read",
            Function::CallbackApiCancel => "callback-api-cancel",
            Function::CallbackApiReschedule => "callback-api-reschedule",
            Function::LegacyIngestOneToken => "legacy-ingest-one-token",
            Function::WebhookReceiver => "webhook-receiver",
            Function::ServiceNowWriter => "servicenow-writer",
            Function::LegacyIngest => "legacy-ingest",
            Function::TokenRefresher => "token-refresher",
            Function::DataAction => "data-action",
            Function::CallbackApi => "callback-api",
            Function::CallbackEvents => "callback-events",
            Function::CallbackNotifier => "callback-notifier",
            Function::CallbackWebsocket => "callback-websocket",
        }
    }

    /// The binary it runs.
    pub fn binary(self) -> &'static str {
        match self {
            Function::CallbackApiRead
            | Function::CallbackApiCancel
            | Function::CallbackApiReschedule => Function::CallbackApi.name(),
            Function::LegacyIngestOneToken => Function::LegacyIngest.name(),
            other => other.name(),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn arn(self) -> String {
        format!(
            "arn:aws:lambda:{REGION}:{ACCOUNT}:function:bench-{}",
            self.name()
        )
    }

    /// The secrets it reads, by id.
    pub fn secrets(self) -> HashMap<String, String> {
        let basic = json!({"username": crate::LOCAL_SN_USER, "password": crate::LOCAL_SN_PASSWORD});
        let genesys_client = json!({"client_id": crate::LOCAL_GENESYS_CLIENT_ID,
                                    "client_secret": crate::LOCAL_GENESYS_CLIENT_SECRET});
        let genesys = || {
            vec![
                (GENESYS_CLIENT_SECRET, genesys_client.to_string()),
                (
                    GENESYS_TOKEN_SECRET,
                    stored_token("genesys", Duration::ZERO, Duration::from_secs(86_400)),
                ),
            ]
        };
        let pairs: Vec<(&str, String)> = match self {
            Function::WebhookReceiver => {
                vec![(WEBHOOK_SECRET, crate::LOCAL_WEBHOOK_SECRET.to_string())]
            }
            Function::ServiceNowWriter => vec![(SN_BASIC_SECRET, basic.to_string())],
            Function::LegacyIngest | Function::LegacyIngestOneToken => vec![
                (JWT_KEYS_SECRET, crate::dev_tokens::KEY_SET_JSON.to_string()),
                (GENESYS_CLIENT_SECRET, genesys_client.to_string()),
                (
                    GENESYS_TOKEN_SECRET,
                    stored_token("genesys", Duration::ZERO, Duration::from_secs(86_400)),
                ),
            ],
            // Both stored tokens are due (ServiceNow's 30 min tokens are renewed at every scheduled run):
            // each invocation reads, fetches and stores both.
            Function::TokenRefresher => vec![
                (GENESYS_CLIENT_SECRET, genesys_client.to_string()),
                (
                    SN_OAUTH_SECRET,
                    json!({"client_id": crate::LOCAL_SN_CLIENT_ID,
                           "client_secret": crate::LOCAL_SN_CLIENT_SECRET,
                           "username": crate::LOCAL_SN_USER, "password": crate::LOCAL_SN_PASSWORD})
                    .to_string(),
                ),
                (
                    GENESYS_TOKEN_SECRET,
                    stored_token(
                        "genesys",
                        Duration::from_secs(86_000),
                        Duration::from_secs(86_400),
                    ),
                ),
                (
                    SN_TOKEN_SECRET,
                    stored_token(
                        "servicenow",
                        Duration::from_secs(1_500),
                        Duration::from_secs(1_800),
                    ),
                ),
            ],
            Function::DataAction => vec![
                (
                    DATA_ACTION_SECRET,
                    json!({"username": crate::LOCAL_DATA_ACTION_USER,
                           "password": crate::LOCAL_DATA_ACTION_PASSWORD})
                    .to_string(),
                ),
                (SN_BASIC_SECRET, basic.to_string()),
            ],
            Function::CallbackApi
            | Function::CallbackApiRead
            | Function::CallbackApiCancel
            | Function::CallbackApiReschedule => {
                let mut p = genesys();
                p.push((CALLBACK_ACCESS_SECRET, CALLBACK_ACCESS_KEY.to_string()));
                p
            }
            Function::CallbackEvents => genesys(),
            Function::CallbackNotifier => vec![(SUBSCRIBER_SECRET, SUBSCRIBER_KEY.to_string())],
            Function::CallbackWebsocket => {
                vec![(CALLBACK_ACCESS_SECRET, CALLBACK_ACCESS_KEY.to_string())]
            }
        };
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// The secret the stub's webhook subscriber checks signatures with.
    pub fn subscriber_secret(self) -> Option<Vec<u8>> {
        match self {
            Function::CallbackNotifier => Some(SUBSCRIBER_KEY.as_bytes().to_vec()),
            _ => None,
        }
    }

    /// Its own variables, as template.yaml sets them (defaults of the parameters), pointed at `stub`.
    pub fn env(self, stub: &str) -> Vec<(&'static str, String)> {
        let queue = |name: &str| queue_url(stub, &format!("bench-{name}"));
        let pairs: Vec<(&'static str, String)> = match self {
            Function::WebhookReceiver => vec![
                ("EVENTS_QUEUE_URL", queue("events")),
                ("WEBHOOK_SECRET_ID", WEBHOOK_SECRET.into()),
                ("RECEIVER_ALLOWED_EVENT_TYPES", String::new()),
            ],
            Function::ServiceNowWriter => vec![
                ("SERVICENOW_INSTANCE_URL", stub.into()),
                ("SERVICENOW_CREDENTIALS_SECRET_ID", SN_BASIC_SECRET.into()),
                ("IDEMPOTENCY_TABLE", TABLE.into()),
                ("IDEMPOTENCY_TTL_HOURS", "336".into()),
                ("DEAD_LETTER_QUEUE_URL", queue("events-dlq")),
                ("EVENTS_QUEUE_URL", queue("events")),
                ("WRITER_MAX_RECEIVE_COUNT", "5".into()),
                ("WRITER_SETTLE_SECONDS", "90".into()),
                ("WRITER_RATE_LIMIT_CONTAINERS", "5".into()),
                ("WRITER_MAX_CONCURRENCY", "5".into()),
                ("SERVICENOW_AUTH", "basic".into()),
                ("SERVICENOW_OAUTH_GRANT", "password".into()),
                ("CALLBACK_REQUESTS_QUEUE_URL", queue("callback-events")),
            ],
            Function::LegacyIngest | Function::LegacyIngestOneToken => vec![
                (
                    "JWT_ISSUERS",
                    format!(
                        "{},{}",
                        crate::dev_tokens::DEV_ISSUER,
                        crate::dev_tokens::ORDERS_ISSUER
                    ),
                ),
                ("JWT_AUDIENCES", crate::dev_tokens::DEV_AUDIENCE.into()),
                ("JWT_ALGORITHMS", "ES256,RS256".into()),
                ("JWT_KEYS_SECRET_ID", JWT_KEYS_SECRET.into()),
                ("JWT_MAX_AGE_SECONDS", "900".into()),
                ("JWT_MAX_LIFETIME_SECONDS", "3600".into()),
                ("INGEST_ALLOWED_EVENT_TYPES", "*".into()),
                ("GENESYS_LOGIN_URL", stub.into()),
                ("GENESYS_API_URL", stub.into()),
                ("GENESYS_INGEST_PATH", "/api/v2/eventbridge/events".into()),
                ("INGEST_TARGET", "datatable".into()),
                ("GENESYS_DATATABLE_ID", DATATABLE.into()),
                ("IDEMPOTENCY_TABLE", TABLE.into()),
                (
                    "GENESYS_CREDENTIALS_SECRET_ID",
                    GENESYS_CLIENT_SECRET.into(),
                ),
                ("GENESYS_TOKEN_SECRET_ID", GENESYS_TOKEN_SECRET.into()),
                ("PUBLISH_DEADLINE_MS", "8000".into()),
            ],
            Function::TokenRefresher => vec![
                ("GENESYS_LOGIN_URL", stub.into()),
                (
                    "GENESYS_CREDENTIALS_SECRET_ID",
                    GENESYS_CLIENT_SECRET.into(),
                ),
                ("GENESYS_TOKEN_SECRET_ID", GENESYS_TOKEN_SECRET.into()),
                ("REFRESH_SCHEDULE_RATE", "rate(15 minutes)".into()),
                ("SERVICENOW_INSTANCE_URL", stub.into()),
                ("SERVICENOW_OAUTH_GRANT", "password".into()),
                (
                    "SERVICENOW_OAUTH_CREDENTIALS_SECRET_ID",
                    SN_OAUTH_SECRET.into(),
                ),
                ("SERVICENOW_TOKEN_SECRET_ID", SN_TOKEN_SECRET.into()),
            ],
            Function::DataAction => vec![
                ("DATA_ACTION_AUTH", "basic".into()),
                ("DATA_ACTION_AUTH_HEADER", "X-Api-Key".into()),
                (
                    "DATA_ACTION_CREDENTIALS_SECRET_ID",
                    DATA_ACTION_SECRET.into(),
                ),
                ("DATA_ACTION_DEADLINE_MS", "5000".into()),
                ("SERVICENOW_INSTANCE_URL", stub.into()),
                ("SERVICENOW_CREDENTIALS_SECRET_ID", SN_BASIC_SECRET.into()),
                ("IDEMPOTENCY_TABLE", TABLE.into()),
                ("WRITER_SETTLE_SECONDS", "90".into()),
                ("SERVICENOW_AUTH", "basic".into()),
                ("SERVICENOW_OAUTH_GRANT", "password".into()),
            ],
            Function::CallbackApi
            | Function::CallbackApiRead
            | Function::CallbackApiCancel
            | Function::CallbackApiReschedule => vec![
                ("CALLBACK_QUEUES", CALLBACK_QUEUES.into()),
                ("CALLBACKS_TABLE", CALLBACKS_TABLE.into()),
                ("CALLBACK_ACCESS_SECRET_ID", CALLBACK_ACCESS_SECRET.into()),
                ("CALLBACK_EVENTS_QUEUE_URL", queue("callback-events")),
                ("GENESYS_LOGIN_URL", stub.into()),
                ("GENESYS_API_URL", stub.into()),
                (
                    "GENESYS_CREDENTIALS_SECRET_ID",
                    GENESYS_CLIENT_SECRET.into(),
                ),
                ("GENESYS_TOKEN_SECRET_ID", GENESYS_TOKEN_SECRET.into()),
            ],
            Function::CallbackEvents => vec![
                ("CALLBACKS_TABLE", CALLBACKS_TABLE.into()),
                ("CALLBACK_QUEUES", CALLBACK_QUEUES.into()),
                ("GENESYS_LOGIN_URL", stub.into()),
                ("GENESYS_API_URL", stub.into()),
                (
                    "GENESYS_CREDENTIALS_SECRET_ID",
                    GENESYS_CLIENT_SECRET.into(),
                ),
                ("GENESYS_TOKEN_SECRET_ID", GENESYS_TOKEN_SECRET.into()),
            ],
            Function::CallbackNotifier => vec![
                ("CALLBACKS_TABLE", CALLBACKS_TABLE.into()),
                // The WebSocket API's stage `live`, as the template's endpoint names it.
                ("CALLBACK_WEBSOCKET_ENDPOINT", format!("{stub}/live")),
                (
                    "CALLBACK_SUBSCRIBERS",
                    json!({SUBSCRIBER: {"url": format!("{stub}/bench/subscriber"), "secret_id": SUBSCRIBER_SECRET}})
                        .to_string(),
                ),
                ("CALLBACK_WEBHOOKS_QUEUE_URL", queue_url(stub, WEBHOOKS_QUEUE)),
                (
                    "CALLBACK_WEBHOOKS_DEAD_LETTER_QUEUE_URL",
                    queue_url(stub, WEBHOOKS_DLQ),
                ),
            ],
            Function::CallbackWebsocket => vec![
                ("CALLBACKS_TABLE", CALLBACKS_TABLE.into()),
                ("CALLBACK_ACCESS_SECRET_ID", CALLBACK_ACCESS_SECRET.into()),
            ],
        };
        pairs
    }

    /// Columns of the Genesys data tables it writes (the stub's schema).
    pub fn datatable_columns(self) -> Vec<String> {
        match self {
            Function::LegacyIngest | Function::LegacyIngestOneToken => [
                "transaction_id",
                "event_type",
                "amount",
                "currency",
                "updated_at",
            ]
            .iter()
            .map(|c| c.to_string())
            .collect(),
            _ => Vec::new(),
        }
    }

    /// `count` events, each different (new conversation, transaction or call id).
    pub fn events(self, count: usize) -> Result<Vec<Vec<u8>>, String> {
        self.workload(count).map(|w| w.events)
    }

    /// `count` events and the fixtures they need.
    pub fn workload(self, count: usize) -> Result<Workload, String> {
        let (events, items) = match self {
            Function::CallbackApi => (booking_events(count)?, Vec::new()),
            Function::CallbackApiRead => manage_workload(count, "GET")?,
            Function::CallbackApiCancel => manage_workload(count, "DELETE")?,
            Function::CallbackApiReschedule => manage_workload(count, "PATCH")?,
            Function::CallbackEvents => lifecycle_workload(count)?,
            Function::CallbackNotifier => notifier_workload(count)?,
            Function::CallbackWebsocket => websocket_workload(count)?,
            _ => (self.simple_events(count)?, Vec::new()),
        };
        let events = events
            .iter()
            .map(|e| serde_json::to_vec(e).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let items = items
            .into_iter()
            .map(|i| (CALLBACKS_TABLE.to_string(), i))
            .collect();
        Ok(Workload { events, items })
    }

    fn simple_events(self, count: usize) -> Result<Vec<Value>, String> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let run = run.get(..8).unwrap_or(&run).to_string();
        let one_token = match self {
            Function::LegacyIngestOneToken => ingest_token(),
            _ => String::new(),
        };
        (0..count)
            .map(|i| {
                Ok(match self {
                    Function::WebhookReceiver => webhook_event(i),
                    Function::ServiceNowWriter => sqs_event(i)?,
                    Function::LegacyIngest => ingest_event(&run, i, &ingest_token()),
                    Function::LegacyIngestOneToken => ingest_event(&run, i, &one_token),
                    Function::TokenRefresher => scheduled_event(),
                    Function::DataAction => data_action_event()?,
                    other => return Err(format!("{} has its own workload", other.name())),
                })
            })
            .collect()
    }

    /// After a run of `invocations`: `Ok` when the stub saw the effects of that many successes (the answers
    /// alone cannot tell a moved reservation or a delivered webhook from an ignored one).
    pub fn verify(
        self,
        observed: &Observed,
        store: &ItemStore,
        invocations: usize,
    ) -> Result<(), String> {
        let n = invocations as u64;
        let with_status = |kind: &str, status: &str| {
            store
                .items(CALLBACKS_TABLE)
                .iter()
                .filter(|i| string_attribute(i, "kind") == Some(kind))
                .filter(|i| string_attribute(i, "status") == Some(status))
                .count() as u64
        };
        let of_kind = |kind: &str| {
            store
                .items(CALLBACKS_TABLE)
                .iter()
                .filter(|i| string_attribute(i, "kind") == Some(kind))
                .count() as u64
        };
        let expect = |what: &str, got: u64, want: u64| match got == want {
            true => Ok(()),
            false => Err(format!("{what}: {got}, expected {want}")),
        };
        match self {
            Function::CallbackApi => {
                expect("Genesys callbacks created", observed.callbacks_created, n)?;
                expect(
                    "scheduled reservations stored",
                    with_status("callback-reservation", "scheduled"),
                    n,
                )?;
                let completed_claims = store
                    .items(CALLBACKS_TABLE)
                    .iter()
                    .filter(|i| {
                        string_attribute(i, "id")
                            .is_some_and(|id| id.starts_with("callback-booking:"))
                    })
                    .filter(|i| string_attribute(i, "status") == Some("COMPLETED"))
                    .filter(|i| string_attribute(i, "incident_number") == Some("scheduled"))
                    .count() as u64;
                expect("booking claims completed", completed_claims, n)
            }
            Function::CallbackApiReschedule => {
                expect(
                    "Genesys callbacks rescheduled",
                    observed.callbacks_rescheduled,
                    n,
                )?;
                let moved = store
                    .items(CALLBACKS_TABLE)
                    .iter()
                    .filter(|i| string_attribute(i, "kind") == Some("callback-reservation"))
                    .filter(|i| string_attribute(i, "status") == Some("scheduled"))
                    .filter_map(|i| string_attribute(i, "doc"))
                    .filter_map(|d| serde_json::from_str::<Reservation>(d).ok())
                    .filter(|r| r.pending_slot.is_none())
                    .filter(|r| {
                        r.history
                            .iter()
                            .any(|c| c.event == format!("api:reschedule:{}", r.slot))
                    })
                    .count() as u64;
                expect("reservations moved to the slot asked for", moved, n)
            }
            Function::CallbackApiCancel => {
                expect(
                    "Genesys callbacks cancelled",
                    observed.callbacks_cancelled,
                    n,
                )?;
                expect(
                    "cancelled reservations stored",
                    with_status("callback-reservation", "cancelled"),
                    n,
                )
            }
            // A read changes nothing.
            Function::CallbackApiRead => expect(
                "scheduled reservations stored",
                with_status("callback-reservation", "scheduled"),
                n,
            ),
            Function::CallbackEvents => expect(
                "reservations moved to connected",
                with_status("callback-reservation", "connected"),
                n,
            ),
            Function::CallbackNotifier => {
                let (changes, webhooks) = (n.div_ceil(2), n / 2);
                expect("PostToConnection calls", observed.pushes, changes)?;
                expect(
                    "webhooks queued",
                    observed.sent.get(WEBHOOKS_QUEUE).copied().unwrap_or(0),
                    changes,
                )?;
                expect(
                    "webhooks delivered signed",
                    observed.webhooks_signed,
                    webhooks,
                )?;
                expect("webhooks badly signed", observed.webhooks_badly_signed, 0)?;
                expect(
                    "webhooks dead-lettered",
                    observed.sent.get(WEBHOOKS_DLQ).copied().unwrap_or(0),
                    0,
                )?;
                expect("deliveries recorded", of_kind("callback-webhook"), webhooks)
            }
            Function::LegacyIngest | Function::LegacyIngestOneToken => {
                let records = |prefix: &str| {
                    store
                        .items(TABLE)
                        .iter()
                        .filter(|i| {
                            string_attribute(i, "id").is_some_and(|id| id.starts_with(prefix))
                        })
                        .filter(|i| string_attribute(i, "status") == Some("COMPLETED"))
                        .count() as u64
                };
                let locks = store
                    .items(TABLE)
                    .iter()
                    .filter(|i| {
                        string_attribute(i, "id").is_some_and(|id| id.starts_with("datatable-row:"))
                    })
                    .filter(|i| {
                        // A released lease ends at 0 (the record is kept).
                        i.get("lease_expires_ms")
                            .and_then(|v| v["N"].as_str())
                            .and_then(|ms| ms.parse::<u64>().ok())
                            .is_some_and(|ms| ms > shared::clock::epoch_ms())
                    })
                    .count() as u64;
                expect("transactions completed", records("ingest:"), n)?;
                expect("row locks still held", locks, 0)
            }
            Function::ServiceNowWriter => {
                let items = store.items(TABLE);
                let completed = items
                    .iter()
                    .filter(|i| string_attribute(i, "status") == Some("COMPLETED"))
                    .filter(|i| string_attribute(i, "incident_number").is_some())
                    .count() as u64;
                let conversations = items
                    .iter()
                    .filter(|i| string_attribute(i, "kind") == Some("conversation"));
                let recorded = conversations
                    .clone()
                    .filter(|i| string_attribute(i, "incident_sys_id").is_some())
                    .count() as u64;
                let locked = conversations
                    .filter(|i| string_attribute(i, "lock_token").is_some())
                    .count() as u64;
                expect("event claims completed", completed, n)?;
                expect("conversations recorded with their incident", recorded, n)?;
                expect("conversations still locked", locked, 0)
            }
            Function::CallbackWebsocket => {
                // A $connect whose $disconnect is not among the events leaves its connection open.
                expect(
                    "open connections",
                    of_kind("callback-connection"),
                    u64::from(!n.is_multiple_of(3)),
                )
            }
            _ => Ok(()),
        }
    }

    /// `Ok` when `body` (the function's `/response`) is what its success looks like.
    pub fn check(self, body: &[u8]) -> Result<(), String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("answer is not JSON ({e}): {}", excerpt(body)))?;
        match self {
            Function::WebhookReceiver => {
                let (status, reply) = http_reply(&value)?;
                success_if(status == 202 && reply["status"] == "queued", status, &reply)
            }
            Function::LegacyIngest | Function::LegacyIngestOneToken => {
                let (status, reply) = http_reply(&value)?;
                success_if(status == 202, status, &reply)
            }
            Function::DataAction => {
                let (status, reply) = http_reply(&value)?;
                success_if(
                    status == 200 && reply["incidentNumber"].is_string(),
                    status,
                    &reply,
                )
            }
            Function::CallbackApi => {
                let (status, reply) = http_reply(&value)?;
                let token =
                    |name: &str| reply[name].as_str().is_some_and(|t| t.starts_with("cb1."));
                success_if(
                    status == 201
                        && reply["status"] == "scheduled"
                        && token("live_token")
                        && token("manage_token"),
                    status,
                    &reply,
                )
            }
            Function::CallbackApiCancel | Function::CallbackApiReschedule => {
                let (status, reply) = http_reply(&value)?;
                let after = match self {
                    Function::CallbackApiCancel => "cancelled",
                    _ => "scheduled",
                };
                success_if(status == 200 && reply["status"] == after, status, &reply)
            }
            Function::CallbackApiRead => {
                let (status, reply) = http_reply(&value)?;
                success_if(
                    status == 200
                        && reply["status"] == "scheduled"
                        && reply["live_token"]
                            .as_str()
                            .is_some_and(|t| t.starts_with("cb1."))
                        && reply.get("manage_token").is_none(),
                    status,
                    &reply,
                )
            }
            Function::CallbackWebsocket => {
                let (status, reply) = http_reply(&value)?;
                // `$connect` and `$disconnect` answer no body; `$default` the reservation's status.
                success_if(
                    status == 200 && (reply.is_null() || reply["type"] == "callback.status"),
                    status,
                    &reply,
                )
            }
            Function::ServiceNowWriter | Function::CallbackEvents | Function::CallbackNotifier => {
                match value["batchItemFailures"].as_array() {
                    Some(failures) if failures.is_empty() => Ok(()),
                    Some(failures) => Err(format!(
                        "{} batch item failure(s): {}",
                        failures.len(),
                        excerpt(body)
                    )),
                    None => Err(format!("no batchItemFailures: {}", excerpt(body))),
                }
            }
            Function::TokenRefresher => match value {
                Value::Null => Ok(()),
                other => Err(format!(
                    "expected null, got {}",
                    excerpt(other.to_string().as_bytes())
                )),
            },
        }
    }
}

fn success_if(ok: bool, status: u64, reply: &Value) -> Result<(), String> {
    match ok {
        true => Ok(()),
        false => Err(format!(
            "HTTP {status}: {}",
            excerpt(reply.to_string().as_bytes())
        )),
    }
}

/// At most 300 characters of `body`, for messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into_owned(),
    }
}

/// The status and JSON body of an API Gateway (HTTP API) proxy answer.
fn http_reply(value: &Value) -> Result<(u64, Value), String> {
    let status = value["statusCode"]
        .as_u64()
        .ok_or_else(|| format!("no statusCode: {}", excerpt(value.to_string().as_bytes())))?;
    let raw = value["body"].as_str().unwrap_or_default();
    let bytes = match value["isBase64Encoded"].as_bool() {
        Some(true) => base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|e| format!("body is not base64: {e}"))?,
        _ => raw.as_bytes().to_vec(),
    };
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A token secret's JSON: obtained `age` ago, valid for `lifetime`.
fn stored_token(provider: &str, age: Duration, lifetime: Duration) -> String {
    let now = SystemTime::now();
    let obtained = now.checked_sub(age).unwrap_or(now);
    json!({"access_token": format!("bench-stored-{provider}-token"), "token_type": "bearer",
           "expires_at": rfc3339(obtained + lifetime), "scope": null, "obtained_at": rfc3339(obtained)})
    .to_string()
}

fn epoch_ms() -> u64 {
    shared::clock::epoch_ms()
}

/// An API Gateway HTTP API (payload 2.0) event, as `lambda_http` reads it.
fn http_api_event(
    route: &str,
    path: &str,
    path_parameters: Option<Value>,
    headers: &[(&str, String)],
    body: &str,
) -> Value {
    let host = format!("bench.execute-api.{REGION}.amazonaws.com");
    let mut h = serde_json::Map::new();
    for (name, value) in [
        ("content-type", "application/json".to_string()),
        ("content-length", body.len().to_string()),
        ("host", host.clone()),
        ("user-agent", "lambda-bench".into()),
        (
            "x-amzn-trace-id",
            "Root=1-00000000-000000000000000000000000".into(),
        ),
        ("x-forwarded-for", "203.0.113.10".into()),
        ("x-forwarded-port", "443".into()),
        ("x-forwarded-proto", "https".into()),
    ]
    .into_iter()
    .chain(headers.iter().map(|(n, v)| (*n, v.clone())))
    {
        h.insert(name.to_string(), json!(value));
    }
    let now = epoch_ms();
    let mut event = json!({
        "version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": "",
        "headers": h,
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "bench", "domainName": host, "domainPrefix": "bench",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10",
                     "userAgent": "lambda-bench"},
            "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": route, "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": now
        },
        "body": body, "isBase64Encoded": false
    });
    if let Some(p) = path_parameters {
        event["pathParameters"] = p;
    }
    event
}

/// `POST /webhooks/genesys` with `make send-sample`'s event (a new conversation each time), signed.
fn webhook_event(_: usize) -> Value {
    let body = crate::sample_event(&uuid::Uuid::new_v4().to_string()).to_string();
    let signature =
        SignatureScheme::default().sign(crate::LOCAL_WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    http_api_event(
        "POST /webhooks/genesys",
        "/webhooks/genesys",
        None,
        &[("x-hub-signature-256", signature)],
        &body,
    )
}

fn sqs_attribute(value: &str) -> Value {
    json!({"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": "String"})
}

/// One SQS record with the `customer.end` fixture for a new conversation, as the receiver queued it.
fn sqs_event(_: usize) -> Result<Value, String> {
    let mut body: Value = serde_json::from_str(CUSTOMER_END).map_err(|e| e.to_string())?;
    let conversation = uuid::Uuid::new_v4().to_string();
    let event_type = format!("v2.detail.events.conversation.{conversation}.customer.end");
    body["event"] = json!(event_type);
    body["data"]["conversationId"] = json!(conversation);
    let sent = epoch_ms().to_string();
    Ok(json!({"Records": [{
        "messageId": uuid::Uuid::new_v4().to_string(),
        "receiptHandle": format!("bench-receipt-{}", uuid::Uuid::new_v4().simple()),
        "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": sent,
                       "SenderId": "AROABENCH:webhook-receiver", "ApproximateFirstReceiveTimestamp": sent},
        "messageAttributes": {
            "event_type": sqs_attribute(&event_type),
            "organization_id": sqs_attribute("6f1a0c4e-0000-4000-8000-00000000000a"),
            "received_at": sqs_attribute(&shared::now_rfc3339()),
            "correlation_id": sqs_attribute(&uuid::Uuid::new_v4().to_string()),
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:bench-events"),
        "awsRegion": REGION
    }]}))
}

/// `POST /ingest` with a fresh dev JWT (ES256) and a new transaction.
/// A legacy system's ES256 token, signed now.
fn ingest_token() -> String {
    crate::dev_tokens::mint(
        jsonwebtoken::Algorithm::ES256,
        &crate::dev_tokens::standard_claims(),
    )
}

fn ingest_event(run: &str, i: usize, token: &str) -> Value {
    let body = crate::dev_tokens::sample_business_event(&format!("TX-BENCH-{run}-{i}")).to_string();
    http_api_event(
        "POST /ingest",
        "/ingest",
        None,
        &[("authorization", format!("Bearer {token}"))],
        &body,
    )
}

/// The EventBridge schedule's event.
fn scheduled_event() -> Value {
    json!({"version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event",
           "source": "aws.events", "account": ACCOUNT, "time": shared::now_rfc3339(), "region": REGION,
           "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/bench-token-refresh")],
           "detail": {}})
}

/// `POST /data-actions/createIncident` with seed 001's body for a new call, Basic-authenticated.
fn data_action_event() -> Result<Value, String> {
    let mut body: Value = serde_json::from_str(IVR_BODY).map_err(|e| e.to_string())?;
    body["callId"] = json!(uuid::Uuid::new_v4().to_string());
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        crate::LOCAL_DATA_ACTION_USER,
        crate::LOCAL_DATA_ACTION_PASSWORD
    ));
    Ok(http_api_event(
        "POST /data-actions/{action}",
        "/data-actions/createIncident",
        Some(json!({"action": "createIncident"})),
        &[("authorization", format!("Basic {credentials}"))],
        &body.to_string(),
    ))
}

fn queue_url(stub: &str, name: &str) -> String {
    format!("{stub}/{ACCOUNT}/{name}")
}

/// The `S` value of attribute `name`.
fn string_attribute<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v["S"].as_str())
}

/// A JSON object as a store item (anything else is an empty item).
fn item(v: Value) -> Item {
    match v {
        Value::Object(m) => m,
        _ => Item::new(),
    }
}

/// The `support` queue as callback-api reads it from [`CALLBACK_QUEUES`].
fn support_queue() -> Result<callback_api::booking::Queue, String> {
    let env = shared::config::Env::from_pairs([
        ("CALLBACK_QUEUES", CALLBACK_QUEUES),
        ("CALLBACKS_TABLE", CALLBACKS_TABLE),
        ("GENESYS_CREDENTIALS_SECRET_ID", GENESYS_CLIENT_SECRET),
    ]);
    let mut config = callback_api::config::Config::from_vars(&env).map_err(|e| e.to_string())?;
    config
        .queues
        .remove(CALLBACK_QUEUE)
        .ok_or_else(|| format!("CALLBACK_QUEUES has no {CALLBACK_QUEUE} queue"))
}

/// The queue's slots from [`SLOT_MARGIN`] after `now` on, each bookable until the run is over: `needed` of
/// them, or an error when the queue's horizon holds fewer.
fn bookable_slots(
    queue: &callback_api::booking::Queue,
    now: jiff::Timestamp,
    needed: usize,
) -> Result<Vec<jiff::Timestamp>, String> {
    let signed = |d: Duration| jiff::SignedDuration::try_from(d).unwrap_or_default();
    let from = now.checked_add(signed(SLOT_MARGIN)).unwrap_or(now);
    // Validation refuses a start beyond the horizon from the moment of booking: keep an hour's room.
    let latest = now
        .checked_add(signed(queue.calendar.horizon))
        .and_then(|t| t.checked_sub(jiff::SignedDuration::from_hours(1)))
        .unwrap_or(now);
    let slots: Vec<jiff::Timestamp> = queue
        .calendar
        .next_slots(from, needed)
        .into_iter()
        .filter(|s| *s <= latest)
        .collect();
    match slots.len() >= needed {
        true => Ok(slots),
        false => Err(format!(
            "the {CALLBACK_QUEUE} queue has only {} bookable slots in its horizon ({} needed)",
            slots.len(),
            needed
        )),
    }
}

/// `POST /callbacks`: `count` bookings, each a new caller with its own `Idempotency-Key`, filling the queue's
/// next slots in order (`capacity` bookings per slot), so every one is booked.
fn booking_events(count: usize) -> Result<Vec<Value>, String> {
    let queue = support_queue()?;
    let per_slot = queue.capacity.max(1) as usize;
    let slots = bookable_slots(&queue, jiff::Timestamp::now(), count.div_ceil(per_slot))?;
    let length = jiff::SignedDuration::try_from(queue.calendar.slot).unwrap_or_default();
    let run = uuid::Uuid::new_v4().simple().to_string();
    (0..count)
        .map(|i| {
            let start = slots
                .get(i / per_slot)
                .copied()
                .ok_or_else(|| format!("no slot for booking {i}"))?;
            let end = start.checked_add(length).map_err(|e| e.to_string())?;
            let body = json!({
                "name": format!("Bench Caller {i}"),
                "phone": format!("+4930{:08}", i % 100_000_000),
                "queue": CALLBACK_QUEUE,
                "reason": "card charged twice",
                "incident_number": format!("INC{:07}", 10_000 + i),
                "slots": [{"start": start.to_string(), "end": end.to_string()}],
            })
            .to_string();
            Ok(http_api_event(
                "POST /callbacks",
                "/callbacks",
                None,
                &[("idempotency-key", format!("bench-{run}-{i}"))],
                &body,
            ))
        })
        .collect()
}

/// A reservation as callback-api leaves it once booked (`scheduled`, revision 2), for Genesys callback
/// `conversation`.
fn scheduled_reservation(i: usize, slot: jiff::Timestamp, conversation: &str) -> Reservation {
    Reservation {
        id: uuid::Uuid::new_v4().to_string(),
        status: Status::Scheduled,
        queue: CALLBACK_QUEUE.into(),
        slot: slot.to_string(),
        name: format!("Bench Caller {i}"),
        phone: format!("+4930{:08}", i % 100_000_000),
        reason: Some("card charged twice".into()),
        incident_number: Some(format!("INC{:07}", 10_000 + i)),
        conversation_id: Some(conversation.to_string()),
        create_sent_at: None,
        pending_slot: None,
        failure_reason: None,
        history: Vec::new(),
        revision: 2,
    }
}

/// `r` moved to `connected` by the agent's `user.start` event `event`.
fn connected(r: &Reservation, event: &str) -> Reservation {
    let mut next = r.clone();
    next.status = Status::Connected;
    next.history.push(Change {
        status: Status::Connected,
        at: shared::now_rfc3339(),
        event: event.to_string(),
    });
    next.revision += 1;
    next
}

/// The reservation's item as callback-api stores it.
fn reservation_item(r: &Reservation) -> Result<Item, String> {
    let doc = serde_json::to_string(r).map_err(|e| e.to_string())?;
    Ok(item(json!({
        "id": {"S": format!("callback:{}", r.id)}, "kind": {"S": "callback-reservation"},
        "status": {"S": r.status.name()}, "doc": {"S": doc}, "rev": {"N": r.revision.to_string()},
        "expiration": {"N": (shared::clock::epoch_secs() + 30 * 86_400).to_string()},
    })))
}

fn expiration(seconds: u64) -> Value {
    json!({"N": (shared::clock::epoch_secs() + seconds).to_string()})
}

/// An SQS record (the Lambda event source mapping's shape) with `body` and these system attributes.
fn sqs_record(queue: &str, body: &str, attributes: &[(&str, String)]) -> Value {
    let sent = epoch_ms().to_string();
    let mut a = json!({"ApproximateReceiveCount": "1", "SentTimestamp": sent,
                       "SenderId": "AROABENCH:bench", "ApproximateFirstReceiveTimestamp": sent});
    for (name, value) in attributes {
        a[*name] = json!(value);
    }
    json!({
        "messageId": uuid::Uuid::new_v4().to_string(),
        "receiptHandle": format!("bench-receipt-{}", uuid::Uuid::new_v4().simple()),
        "body": body, "md5OfBody": "", "attributes": a, "messageAttributes": {},
        "eventSource": "aws:sqs", "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"),
        "awsRegion": REGION
    })
}

/// Genesys' EventBridge event `kind` (e.g. `user.start`) of callback conversation `conversation`.
fn callback_conversation_event(conversation: &str, kind: &str, id: &str) -> Value {
    let now = shared::now_rfc3339();
    json!({"version": "0", "id": id, "detail-type": format!("v2.detail.events.conversation.{{id}}.{kind}"),
           "source": "aws.partner/genesys.com/cloud/6f1a0c4e-0000-4000-8000-00000000000a/callbacks",
           "account": ACCOUNT, "time": now, "region": REGION, "resources": [],
           "detail": {"topicName": format!("v2.detail.events.conversation.{conversation}.{kind}"), "version": "2",
                      "eventBody": {"conversationId": conversation, "mediaType": "callback",
                                    "queueId": "00000000-0000-0000-0000-000000000000",
                                    "participantId": uuid::Uuid::new_v4().to_string(),
                                    "eventTime": epoch_ms()},
                      "timestamp": now}})
}

/// callback-events: each invocation the agent's `user.start` of a different booked callback (its reservation
/// and conversation index are fixtures), which moves it to `connected`.
fn lifecycle_workload(count: usize) -> Result<(Vec<Value>, Vec<Item>), String> {
    let slot = first_slot()?;
    let mut events = Vec::with_capacity(count);
    let mut items = Vec::with_capacity(2 * count);
    for i in 0..count {
        let conversation = uuid::Uuid::new_v4().to_string();
        let r = scheduled_reservation(i, slot, &conversation);
        items.push(reservation_item(&r)?);
        items.push(item(json!({
            "id": {"S": format!("callback-conversation:{conversation}")}, "kind": {"S": "callback-conversation"},
            "reservation_id": {"S": r.id}, "expiration": expiration(30 * 86_400),
        })));
        let event = callback_conversation_event(
            &conversation,
            "user.start",
            &uuid::Uuid::new_v4().to_string(),
        );
        events.push(
            json!({"Records": [sqs_record("bench-callback-events", &event.to_string(), &[])]}),
        );
    }
    Ok((events, items))
}

/// callback-api reads: each invocation a client's `GET /callbacks/{id}` of a different booked callback (its
/// reservation a fixture), with the booking's manage token.
/// `method` `/callbacks/{id}` of `count` scheduled reservations, each with its manage token: `GET`, `DELETE`,
/// or `PATCH` to a later slot (as many to each as the queue's capacity allows).
fn manage_workload(count: usize, method: &str) -> Result<(Vec<Value>, Vec<Item>), String> {
    let slot = first_slot()?;
    let queue = support_queue()?;
    let per_slot = queue.capacity.max(1) as usize;
    let targets = match method {
        "PATCH" => bookable_slots(&queue, jiff::Timestamp::now(), 1 + count.div_ceil(per_slot))?,
        _ => Vec::new(),
    };
    let length = jiff::SignedDuration::try_from(queue.calendar.slot).unwrap_or_default();
    let keys = AccessKeys::from_secret(CALLBACK_ACCESS_KEY);
    let expires = shared::clock::epoch_secs() + 86_400;
    let mut events = Vec::with_capacity(count);
    let mut items = Vec::with_capacity(count);
    for i in 0..count {
        let r = scheduled_reservation(i, slot, &uuid::Uuid::new_v4().to_string());
        items.push(reservation_item(&r)?);
        let token = keys.issue(Scope::Manage, &r.id, expires);
        let body = match targets.get(1 + i / per_slot) {
            Some(start) => {
                let end = start.checked_add(length).map_err(|e| e.to_string())?;
                json!({"slots": [{"start": start.to_string(), "end": end.to_string()}]}).to_string()
            }
            None => String::new(),
        };
        let mut event = http_api_event(
            &format!("{method} /callbacks/{{id}}"),
            &format!("/callbacks/{}", r.id),
            Some(json!({"id": r.id})),
            &[("authorization", format!("Bearer {token}"))],
            &body,
        );
        event["requestContext"]["http"]["method"] = json!(method);
        events.push(event);
    }
    Ok((events, items))
}

fn first_slot() -> Result<jiff::Timestamp, String> {
    let queue = support_queue()?;
    bookable_slots(&queue, jiff::Timestamp::now(), 1)?
        .first()
        .copied()
        .ok_or_else(|| "no bookable slot".to_string())
}

/// An API Gateway WebSocket connection id (16 characters, base64-like).
fn connection_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}=", id.get(..15).unwrap_or(&id))
}

/// callback-notifier: pairs of invocations, as each reservation change makes them: the stream record of a
/// reservation moved to `connected` (one WebSocket connection watches it: pushed, and queued for the
/// subscriber), then that subscriber's webhook delivery from the FIFO queue (POSTed signed, recorded).
fn notifier_workload(count: usize) -> Result<(Vec<Value>, Vec<Item>), String> {
    let slot = first_slot()?;
    let stream_arn = format!(
        "arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{CALLBACKS_TABLE}/stream/2026-01-01T00:00:00.000"
    );
    let mut events = Vec::with_capacity(count);
    let mut items = Vec::new();
    let mut change = None;
    for i in 0..count {
        if i % 2 == 1 {
            if let Some(notice) = change.take() {
                let delivery = callback_notifier::Delivery {
                    subscriber: SUBSCRIBER.into(),
                    notice,
                };
                let group = format!("{SUBSCRIBER}:{}", delivery.notice.reservation_id);
                let body = serde_json::to_string(&delivery).map_err(|e| e.to_string())?;
                let record = sqs_record(
                    WEBHOOKS_QUEUE,
                    &body,
                    &[
                        ("MessageGroupId", group),
                        (
                            "MessageDeduplicationId",
                            uuid::Uuid::new_v4().simple().to_string(),
                        ),
                        (
                            "SequenceNumber",
                            format!("{}", 18_800_000_000_000_000_000u128 + i as u128),
                        ),
                    ],
                );
                events.push(json!({"Records": [record]}));
                continue;
            }
        }
        let old = scheduled_reservation(i, slot, &uuid::Uuid::new_v4().to_string());
        let new = connected(&old, &uuid::Uuid::new_v4().to_string());
        let connection = connection_id();
        items.push(reservation_item(&new)?);
        items.push(item(json!({
            "id": {"S": format!("callback-connections:{}", new.id)}, "kind": {"S": "callback-connections"},
            "connections": {"SS": [connection]}, "expiration": expiration(7_200),
        })));
        items.push(item(json!({
            "id": {"S": format!("callback-connection:{connection}")}, "kind": {"S": "callback-connection"},
            "reservation_id": {"S": new.id}, "expiration": expiration(7_200),
        })));
        change = callback_api::live::Notice::of_change(Some(&old), &new);
        if change.is_none() {
            return Err("a move to connected makes no notice".into());
        }
        let (new_image, old_image) = (reservation_item(&new)?, reservation_item(&old)?);
        let size = json!([new_image, old_image]).to_string().len();
        events.push(json!({"Records": [{
            "eventID": uuid::Uuid::new_v4().simple().to_string(), "eventName": "MODIFY", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": REGION,
            "dynamodb": {"ApproximateCreationDateTime": shared::clock::epoch_secs(),
                         "Keys": {"id": {"S": format!("callback:{}", new.id)}},
                         "NewImage": new_image, "OldImage": old_image,
                         "SequenceNumber": format!("{}", 100_000_000_000_000_000_000u128 + i as u128),
                         "SizeBytes": size, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            "eventSourceARN": stream_arn,
        }]}));
    }
    Ok((events, items))
}

/// An API Gateway WebSocket proxy event for `route` on `connection`.
fn websocket_event(route: &str, connection: &str, token: Option<&str>) -> Value {
    let now = epoch_ms();
    let (event_type, extra) = match route {
        "$connect" => ("CONNECT", json!({})),
        "$disconnect" => (
            "DISCONNECT",
            json!({"disconnectStatusCode": 1000, "disconnectReason": "Client-side close frame status code '1000'"}),
        ),
        _ => (
            "MESSAGE",
            json!({"messageId": uuid::Uuid::new_v4().simple().to_string()}),
        ),
    };
    let mut context = json!({
        "routeKey": route, "eventType": event_type, "extendedRequestId": uuid::Uuid::new_v4().simple().to_string(),
        "requestTime": "01/Jan/2026:00:00:00 +0000", "messageDirection": "IN", "stage": "live",
        "connectedAt": now, "requestTimeEpoch": now,
        "identity": {"sourceIp": "203.0.113.10", "userAgent": "lambda-bench"},
        "requestId": uuid::Uuid::new_v4().to_string(),
        "domainName": format!("bench.execute-api.{REGION}.amazonaws.com"), "connectionId": connection,
        "apiId": "bench"
    });
    if let (Some(c), Some(e)) = (context.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let mut event = json!({"requestContext": context, "isBase64Encoded": false});
    match route {
        "$connect" => {
            event["headers"] = json!({"Host": format!("bench.execute-api.{REGION}.amazonaws.com"),
                                      "Sec-WebSocket-Version": "13", "User-Agent": "lambda-bench",
                                      "X-Forwarded-For": "203.0.113.10", "X-Forwarded-Proto": "https"});
            event["queryStringParameters"] = json!({"token": token.unwrap_or_default()});
        }
        "$disconnect" => {}
        _ => event["body"] = json!(r#"{"action":"status"}"#),
    }
    event
}

/// callback-websocket: per booked reservation (a fixture), a `$connect` with its live token, a status
/// request (`$default`) and the `$disconnect`, each on a new connection.
fn websocket_workload(count: usize) -> Result<(Vec<Value>, Vec<Item>), String> {
    let slot = first_slot()?;
    let keys = AccessKeys::from_secret(CALLBACK_ACCESS_KEY);
    let expires = shared::clock::epoch_secs() + 900;
    let mut events = Vec::with_capacity(count);
    let mut items = Vec::new();
    let mut current = (String::new(), String::new());
    for i in 0..count {
        if i % 3 == 0 {
            let r = scheduled_reservation(i, slot, &uuid::Uuid::new_v4().to_string());
            items.push(reservation_item(&r)?);
            current = (r.id, connection_id());
        }
        let (reservation, connection) = &current;
        events.push(match i % 3 {
            0 => websocket_event(
                "$connect",
                connection,
                Some(&keys.issue(Scope::Live, reservation, expires)),
            ),
            1 => websocket_event("$default", connection, None),
            _ => websocket_event("$disconnect", connection, None),
        });
    }
    Ok((events, items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Function::ALL {
            assert_eq!(Function::parse(f.name()), Some(f));
        }
        assert_eq!(Function::parse("callback-nope"), None);
    }

    #[test]
    fn every_event_differs_and_parses_as_its_lambda_type() {
        for f in Function::ALL {
            let events = f.events(3).unwrap();
            assert_eq!(events.len(), 3);
            assert_ne!(events[0], events[1], "{f:?}");
        }
        let sqs = &Function::ServiceNowWriter.events(1).unwrap()[0];
        let parsed: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_slice(sqs).unwrap();
        let record = &parsed.records[0];
        let body = shared::InboundEvent::parse(record.body.as_deref().unwrap().as_bytes()).unwrap();
        assert!(body.event_type.ends_with(".customer.end"));
        let http = &Function::WebhookReceiver.events(1).unwrap()[0];
        let request = lambda_http::request::from_str(std::str::from_utf8(http).unwrap()).unwrap();
        assert_eq!(request.uri().path(), "/webhooks/genesys");
        let signature = request.headers()["x-hub-signature-256"].to_str().unwrap();
        SignatureScheme::default()
            .verify(
                crate::LOCAL_WEBHOOK_SECRET.as_bytes(),
                request.body().as_ref(),
                Some(signature),
            )
            .unwrap();
    }

    #[test]
    fn a_read_is_a_success_only_without_a_manage_token() {
        let reply = |body: Value| {
            json!({"statusCode": 200, "headers": {}, "body": body.to_string(), "isBase64Encoded": false})
                .to_string()
                .into_bytes()
        };
        let read = Function::CallbackApiRead;
        assert_eq!(read.binary(), "callback-api");
        let seen = json!({"status": "scheduled", "live_token": "cb1.live.x"});
        assert!(read.check(&reply(seen.clone())).is_ok());
        let mut leaking = seen;
        leaking["manage_token"] = json!("cb1.manage.x");
        assert!(read.check(&reply(leaking)).is_err());
    }

    #[test]
    fn success_shapes() {
        let http = |status: u16, body: Value| {
            json!({"statusCode": status, "headers": {}, "body": body.to_string(), "isBase64Encoded": false})
                .to_string()
                .into_bytes()
        };
        let w = Function::WebhookReceiver;
        assert!(w.check(&http(202, json!({"status": "queued"}))).is_ok());
        let err = w
            .check(&http(503, json!({"error": "unavailable"})))
            .unwrap_err();
        assert!(err.starts_with("HTTP 503"), "{err}");
        let sn = Function::ServiceNowWriter;
        assert!(sn.check(br#"{"batchItemFailures":[]}"#).is_ok());
        assert!(sn
            .check(br#"{"batchItemFailures":[{"itemIdentifier":"m1"}]}"#)
            .is_err());
        assert!(Function::TokenRefresher.check(b"null").is_ok());
        assert!(Function::TokenRefresher.check(b"\"failed\"").is_err());
        let encoded = json!({"statusCode": 200, "isBase64Encoded": true,
            "body": base64::engine::general_purpose::STANDARD.encode(r#"{"incidentNumber":"INC1"}"#)});
        assert!(Function::DataAction
            .check(encoded.to_string().as_bytes())
            .is_ok());
    }

    use crate::lambda_bench::aws_stub::{AwsStub, StubConfig};

    async fn stub_for(f: Function, workload: &Workload) -> AwsStub {
        AwsStub::start(StubConfig {
            secrets: f.secrets(),
            max_message_size: 262_144,
            datatable_columns: f.datatable_columns(),
            items: workload.items.clone(),
            subscriber_secret: f.subscriber_secret(),
        })
        .await
        .unwrap()
    }

    fn env_of(f: Function, url: &str) -> shared::config::Env {
        shared::config::Env::from_pairs(f.env(url))
    }

    fn json_of(event: &[u8]) -> Value {
        serde_json::from_slice(event).unwrap()
    }

    /// Runs `f`'s library handler over its workload against the stub, checking each answer and, at the end,
    /// what the stub saw: the scenario succeeds without the release binary. Returns the requests the stub
    /// answered for the invocations (not for the start).
    async fn run_in_process(f: Function, count: usize) -> u64 {
        let workload = f.workload(count).unwrap();
        let stub = stub_for(f, &workload).await;
        let url = stub.url();
        let aws = super::super::sdk_config_for_tests(&url).await;
        let env = env_of(f, &url);
        let mut answers = Vec::new();
        let at_start;
        match f {
            Function::CallbackApi
            | Function::CallbackApiRead
            | Function::CallbackApiCancel
            | Function::CallbackApiReschedule => {
                let config = callback_api::config::Config::from_vars(&env).unwrap();
                let api = callback_api::config::build(config, &aws).await.unwrap();
                at_start = stub.requests();
                for event in &workload.events {
                    let request =
                        lambda_http::request::from_str(std::str::from_utf8(event).unwrap())
                            .unwrap();
                    // The adapter the binary runs, answer and all.
                    let response = callback_api::api::handle_lambda(&api, request).await;
                    let body = String::from_utf8_lossy(response.body().as_ref()).into_owned();
                    answers.push(json!({"statusCode": response.status().as_u16(), "body": body}));
                }
            }
            Function::LegacyIngest => {
                let config = legacy_ingest::Config::from_vars(&env).unwrap();
                let ingest = legacy_ingest::build(config, &aws).await.unwrap();
                at_start = stub.requests();
                for event in &workload.events {
                    let request =
                        lambda_http::request::from_str(std::str::from_utf8(event).unwrap())
                            .unwrap();
                    let response = legacy_ingest::handle_lambda(&ingest, request).await;
                    let body = String::from_utf8_lossy(response.body().as_ref()).into_owned();
                    answers.push(json!({"statusCode": response.status().as_u16(), "body": body}));
                }
            }
            Function::ServiceNowWriter => {
                let config = servicenow_writer::Config::from_vars(&env).unwrap();
                let writer = servicenow_writer::build(config, &aws).await.unwrap();
                at_start = stub.requests();
                for event in &workload.events {
                    let batch: aws_lambda_events::event::sqs::SqsEvent =
                        serde_json::from_slice(event).unwrap();
                    let deadline = shared::retry::Deadline::after(Duration::from_secs(30));
                    let report = writer.process_batch(batch.records, deadline).await;
                    answers.push(serde_json::to_value(report.response).unwrap());
                }
            }
            Function::CallbackEvents => {
                let config = callback_events::Config::from_vars(&env).unwrap();
                let events = callback_events::build(config, &aws).await.unwrap();
                at_start = stub.requests();
                for event in &workload.events {
                    let batch: aws_lambda_events::event::sqs::SqsEvent =
                        serde_json::from_slice(event).unwrap();
                    let response = callback_events::process_batch(&events, batch.records).await;
                    answers.push(serde_json::to_value(response).unwrap());
                }
            }
            Function::CallbackNotifier => {
                let config = callback_notifier::Config::from_vars(&env).unwrap();
                let notifier = callback_notifier::build(config, &aws).await.unwrap();
                at_start = stub.requests();
                for event in &workload.events {
                    answers.push(callback_notifier::handle_event(&notifier, json_of(event)).await);
                }
            }
            Function::CallbackWebsocket => {
                let config = callback_websocket::Config::from_vars(&env).unwrap();
                let live = callback_websocket::build(config, &aws).await.unwrap();
                at_start = stub.requests();
                for event in &workload.events {
                    answers.push(callback_websocket::handle_event(&live, &json_of(event)).await);
                }
            }
            _ => unreachable!(
                "only the callback functions, legacy-ingest and the writer run in process"
            ),
        }
        for (i, answer) in answers.iter().enumerate() {
            f.check(answer.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{f:?} invocation {i}: {e}"));
        }
        assert!(
            stub.unexpected().is_empty(),
            "{f:?}: {:?}",
            stub.unexpected()
        );
        stub.with_items(|items| f.verify(&stub.observed(), items, count))
            .unwrap_or_else(|e| panic!("{f:?}: {e}"));
        stub.requests() - at_start
    }

    /// A booking and a cancel take four calls each, a reschedule five; the first of a process also reads
    /// the Genesys token the refresher stored.
    /// - booking: claim; reservation and slot in one transaction, the coming create recorded with them; the
    ///   Genesys create; the reservation scheduled, the conversation's index and the claim's completion in
    ///   one transaction;
    /// - cancel: the change lease; the reservation, read once under it; the Genesys disconnect (read first
    ///   only after an attempt whose answer was lost); the reservation cancelled, its place given back and the
    ///   lease released in one transaction;
    /// - reschedule: the change lease; the reservation, read once under it; the new place taken and held in
    ///   one transaction; the Genesys move; the reservation moved, the old place given back and the lease
    ///   released in one transaction.
    #[tokio::test]
    async fn a_booking_and_a_cancel_take_four_calls_a_reschedule_five() {
        for (f, calls) in [
            (Function::CallbackApi, 4),
            (Function::CallbackApiCancel, 4),
            (Function::CallbackApiReschedule, 5),
        ] {
            let one = run_in_process(f, 1).await;
            let three = run_in_process(f, 3).await;
            assert_eq!((one, three - one), (calls + 1, 2 * calls), "{f:?}");
        }
    }

    /// A legacy event into a data table row takes four calls: the transaction's claim and the row's lock in
    /// one transaction; the row read and its create; the lock released and the transaction completed in one
    /// transaction.
    #[tokio::test]
    async fn a_legacy_row_delivery_takes_four_calls() {
        let one = run_in_process(Function::LegacyIngest, 1).await;
        let three = run_in_process(Function::LegacyIngest, 3).await;
        assert_eq!(three - one, 2 * 4);
    }

    /// A conversation event takes four calls: the event's claim; the conversation's lock; the ServiceNow
    /// create; the conversation's record and the claim's completion in one transaction.
    #[tokio::test]
    async fn a_writer_event_takes_four_calls() {
        let one = run_in_process(Function::ServiceNowWriter, 1).await;
        let three = run_in_process(Function::ServiceNowWriter, 3).await;
        assert_eq!(three - one, 2 * 4);
    }

    #[tokio::test]
    async fn the_callback_scenarios_succeed_against_the_stub() {
        // More bookings than one slot holds, and counts that end mid-pair and mid-triple.
        run_in_process(Function::CallbackApi, 12).await;
        run_in_process(Function::CallbackApiRead, 3).await;
        run_in_process(Function::CallbackApiCancel, 3).await;
        // More moves than one slot holds.
        run_in_process(Function::CallbackApiReschedule, 7).await;
        run_in_process(Function::CallbackEvents, 4).await;
        run_in_process(Function::CallbackNotifier, 5).await;
        run_in_process(Function::CallbackWebsocket, 7).await;
    }

    #[test]
    fn bookings_name_future_slots_in_business_hours_within_capacity() {
        let queue = support_queue().unwrap();
        let now = jiff::Timestamp::now();
        let events = booking_events(11).unwrap();
        let mut per_slot: HashMap<String, u32> = HashMap::new();
        let mut keys = std::collections::HashSet::new();
        for event in &events {
            let request = lambda_http::request::from_str(&event.to_string()).unwrap();
            assert!(keys.insert(
                request.headers()["idempotency-key"]
                    .to_str()
                    .unwrap()
                    .to_string()
            ));
            let body: Value = serde_json::from_slice(request.body().as_ref()).unwrap();
            let slots: Vec<callback_api::schedule::SlotRequest> =
                serde_json::from_value(body["slots"].clone()).unwrap();
            // Valid now and still valid once the margin has passed.
            let later = now
                .checked_add(jiff::SignedDuration::try_from(SLOT_MARGIN).unwrap())
                .unwrap();
            for at in [
                now,
                later
                    .checked_sub(jiff::SignedDuration::from_secs(1))
                    .unwrap(),
            ] {
                callback_api::schedule::validate(&queue.calendar, &slots, 3, at).unwrap();
            }
            *per_slot.entry(slots[0].start.clone()).or_default() += 1;
        }
        assert_eq!(per_slot.len(), 3);
        assert!(per_slot.values().all(|n| *n <= queue.capacity));
        // The horizon holds only so many: asking for more says so.
        let err = booking_events(100_000).unwrap_err();
        assert!(err.contains("bookable slots"), "{err}");
    }

    #[test]
    fn websocket_events_connect_with_live_tokens_of_stored_reservations() {
        let w = Function::CallbackWebsocket.workload(6).unwrap();
        let events: Vec<Value> = w.events.iter().map(|e| json_of(e)).collect();
        let routes: Vec<&str> = events
            .iter()
            .map(|e| e["requestContext"]["routeKey"].as_str().unwrap())
            .collect();
        assert_eq!(
            routes,
            [
                "$connect",
                "$default",
                "$disconnect",
                "$connect",
                "$default",
                "$disconnect"
            ]
        );
        let keys = AccessKeys::from_secret(CALLBACK_ACCESS_KEY);
        for connect in [&events[0], &events[3]] {
            let token = connect["queryStringParameters"]["token"].as_str().unwrap();
            let id = keys
                .verify(token, Scope::Live, shared::clock::epoch_secs())
                .unwrap();
            let key = format!("callback:{id}");
            assert!(w
                .items
                .iter()
                .any(|(_, i)| string_attribute(i, "id") == Some(key.as_str())));
        }
        let c = |i: usize| events[i]["requestContext"]["connectionId"].clone();
        assert_eq!((c(0), c(1)), (c(2), c(0)));
        assert_ne!(c(0), c(3));
    }

    #[test]
    fn stream_records_pass_the_templates_filter_and_webhooks_follow_them() {
        let w = Function::CallbackNotifier.workload(4).unwrap();
        let events: Vec<Value> = w.events.iter().map(|e| json_of(e)).collect();
        for (i, e) in events.iter().enumerate() {
            let record = &e["Records"][0];
            match i % 2 {
                0 => {
                    assert_eq!(record["eventSource"], "aws:dynamodb");
                    // template.yaml: {"dynamodb": {"NewImage": {"kind": {"S": ["callback-reservation"]}}}}
                    assert_eq!(
                        record["dynamodb"]["NewImage"]["kind"]["S"],
                        "callback-reservation"
                    );
                }
                _ => {
                    let m: aws_lambda_events::event::sqs::SqsMessage =
                        serde_json::from_value(record.clone()).unwrap();
                    let d: callback_notifier::Delivery =
                        serde_json::from_str(m.body.as_deref().unwrap()).unwrap();
                    assert_eq!(d.notice.status, "connected");
                    let changed = &events[i - 1]["Records"][0]["dynamodb"]["Keys"]["id"]["S"];
                    assert_eq!(
                        *changed,
                        format!("callback:{}", d.notice.reservation_id).as_str()
                    );
                    assert!(m.attributes["MessageGroupId"].starts_with("calendar:"));
                }
            }
        }
    }

    #[test]
    fn lifecycle_events_name_indexed_conversations() {
        let w = Function::CallbackEvents.workload(2).unwrap();
        for event in &w.events {
            let batch: aws_lambda_events::event::sqs::SqsEvent =
                serde_json::from_slice(event).unwrap();
            let body = batch.records[0].body.as_deref().unwrap();
            let parsed = shared::InboundEvent::parse(body.as_bytes()).unwrap();
            assert!(parsed.event_type.ends_with(".user.start"));
            let conversation = parsed
                .body
                .get("conversationId")
                .and_then(|v| v.as_str())
                .unwrap();
            let index = format!("callback-conversation:{conversation}");
            assert!(w
                .items
                .iter()
                .any(|(_, i)| string_attribute(i, "id") == Some(index.as_str())));
        }
    }

    #[test]
    fn verification_counts_the_effects() {
        let mut store = ItemStore::default();
        let f = Function::CallbackWebsocket;
        assert!(f.verify(&Observed::default(), &store, 6).is_ok());
        let err = f.verify(&Observed::default(), &store, 7).unwrap_err();
        assert!(err.starts_with("open connections: 0"), "{err}");
        store
            .insert(
                CALLBACKS_TABLE,
                item(json!({"id": {"S": "callback-connection:c"}, "kind": {"S": "callback-connection"}})),
            )
            .unwrap();
        assert!(f.verify(&Observed::default(), &store, 7).is_ok());
        let observed = Observed {
            pushes: 1,
            ..Observed::default()
        };
        let err = Function::CallbackNotifier
            .verify(&observed, &store, 2)
            .unwrap_err();
        assert!(err.starts_with("webhooks queued"), "{err}");
        assert!(Function::DataAction
            .verify(&Observed::default(), &store, 5)
            .is_ok());
    }
}
