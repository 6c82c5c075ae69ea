//! Genesys Cloud simulator: `POST /oauth/token` (client credentials, Basic auth) and the event ingestion
//! endpoint (default `POST /api/v2/eventbridge/events`) honouring `Idempotency-Key`: the same key gets the
//! same answer and never a second event; the same key with another body gets 409.
//!
//! It also serves the Platform API endpoints legacy-ingest delivers to: Architect data tables (schema,
//! rows: `GET`/`PUT` one, `POST` new, validated against the table's schema, 404 for a missing row, 409 for an
//! existing key), external contacts (search by `q`, notes: list and add) and conversation participant
//! attributes (`PATCH`, 404 for an unknown conversation or participant).
//!
//! Faults (`POST /sim/faults`), for every API request: the next N requests throttled (429 with `Retry-After` or only
//! `inin-ratelimit-reset`), N injected statuses, latency. Tokens have a configurable lifetime and can be
//! revoked (`POST /sim/revoke`), after which the API answers 401. `GET /sim/events` lists received events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const DEFAULT_INGEST_PATH: &str = "/api/v2/eventbridge/events";

/// The columns of legacy-ingest's default data table mapping (README: *Data table*).
pub const DEFAULT_DATATABLE_COLUMNS: &[(&str, &str)] = &[
    ("transaction_id", "string"),
    ("event_type", "string"),
    ("amount", "number"),
    ("currency", "string"),
    ("updated_at", "string"),
];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GenesysFaults {
    /// The next N ingest requests answer 429.
    pub throttle_next: u32,
    pub retry_after_secs: u64,
    /// When true, throttled answers carry only `inin-ratelimit-reset`, no `Retry-After`.
    pub reset_header_only: bool,
    /// The next N ingest requests answer `fail_status` (e.g. 503).
    pub fail_next: u32,
    pub fail_status: u16,
    /// Every ingest request answers 503 while set ("Genesys down").
    pub down: bool,
    pub latency_ms: u64,
    /// The next N token requests answer 503.
    pub token_fail_next: u32,
    /// The next N writes to the Platform API (row `PUT`/`POST`, note `POST`, attributes `PATCH`) are
    /// applied, then the connection is dropped without an answer.
    pub drop_after_write_next: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReceivedEvent {
    pub id: String,
    pub idempotency_key: String,
    pub body: Value,
}

pub use crate::sim_common::LoggedRequest;
use crate::sim_common::{IssuedTokens, RequestLog};

/// An Architect data table: its JSON schema and rows by key.
#[derive(Debug, Clone, Default)]
pub struct DataTable {
    pub schema: Value,
    pub rows: std::collections::BTreeMap<String, serde_json::Map<String, Value>>,
}

/// An external contact with its phone numbers, e-mails and notes.
#[derive(Debug, Clone, Serialize)]
pub struct ExternalContact {
    pub id: String,
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub notes: Vec<Value>,
}

/// A callback Genesys holds for a queue.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduledCallback {
    pub conversation_id: String,
    pub queue_id: String,
    pub numbers: Vec<String>,
    pub name: String,
    pub scheduled_time: Option<String>,
    pub data: serde_json::Map<String, Value>,
    /// `scheduled`, then `connected` or `disconnected`.
    pub state: String,
}

struct Inner {
    queues: std::collections::HashSet<String>,
    callbacks: Vec<ScheduledCallback>,
    tables: HashMap<String, DataTable>,
    contacts: Vec<ExternalContact>,
    /// (conversation id, participant id) → attributes.
    participants: HashMap<(String, String), serde_json::Map<String, Value>>,
    clients: HashMap<String, String>,
    tokens: IssuedTokens,
    events: Vec<ReceivedEvent>,
    /// Conversation events the simulator emitted (EventBridge envelopes), oldest first.
    emitted: Vec<Value>,
    answers: HashMap<String, (Value, u16, Value)>,
    faults: GenesysFaults,
    log: RequestLog,
}

#[derive(Clone)]
pub struct GenesysSim {
    inner: Arc<Mutex<Inner>>,
    ingest_path: String,
}

impl GenesysSim {
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        let mut clients = HashMap::new();
        clients.insert(client_id.to_string(), client_secret.to_string());
        Self {
            inner: Arc::new(Mutex::new(Inner {
                clients,
                tokens: IssuedTokens::new(Duration::from_secs(86_399)),
                events: Vec::new(),
                emitted: Vec::new(),
                answers: HashMap::new(),
                queues: Default::default(),
                callbacks: Vec::new(),
                tables: HashMap::new(),
                contacts: Vec::new(),
                participants: HashMap::new(),
                faults: GenesysFaults::default(),
                log: RequestLog::default(),
            })),
            ingest_path: DEFAULT_INGEST_PATH.to_string(),
        }
    }

    pub fn with_ingest_path(mut self, path: &str) -> Self {
        self.ingest_path = path.to_string();
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, f: GenesysFaults) {
        self.lock().faults = f;
    }

    /// Registers the OAuth client `client_id` with `client_secret` (a rotated secret replaces the old one).
    pub fn set_client_secret(&self, client_id: &str, client_secret: &str) {
        self.lock()
            .clients
            .insert(client_id.to_string(), client_secret.to_string());
    }

    pub fn set_token_lifetime(&self, d: Duration) {
        self.lock().tokens.lifetime = d;
    }

    /// Revokes every issued token: the API answers 401 to them from now on.
    pub fn revoke_all(&self) {
        self.lock().tokens.revoke_all();
    }

    pub fn events(&self) -> Vec<ReceivedEvent> {
        self.lock().events.clone()
    }

    pub fn tokens_issued(&self) -> u32 {
        self.lock().tokens.issued()
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.entries()
    }

    /// A routing queue callbacks may be created for.
    pub fn add_queue(&self, id: &str) {
        self.lock().queues.insert(id.to_string());
    }

    pub fn callbacks(&self) -> Vec<ScheduledCallback> {
        self.lock().callbacks.clone()
    }

    /// Moves a callback conversation on, as Genesys would when its time comes: `user.start` (an agent
    /// answered), `customer.end` (the customer left or never answered), `acw` (the agent wrapped up). Emits the
    /// conversation detail event (the EventBridge envelope, `mediaType: callback`), which is also kept in
    /// [`Self::emitted`]. `None`: no such callback, or an event that does not apply.
    pub fn advance_callback(&self, conversation_id: &str, kind: &str) -> Option<Value> {
        let mut s = self.lock();
        let c = s
            .callbacks
            .iter_mut()
            .find(|c| c.conversation_id == conversation_id)?;
        let state = match kind {
            "user.start" if c.state == "scheduled" => "connected",
            "customer.end" | "acw" | "user.end" if c.state != "disconnected" => "disconnected",
            _ => return None,
        };
        c.state = state.into();
        let queue = c.queue_id.clone();
        let now = jiff::Timestamp::now();
        let n = s.emitted.len() + 1;
        let mut body = json!({"conversationId": conversation_id, "mediaType": "callback", "queueId": queue,
            "eventTime": now.as_millisecond(), "direction": "OUTBOUND"});
        if kind == "customer.end" {
            body["disconnectType"] = json!("CLIENT");
        }
        let envelope = json!({
            "version": "0", "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": format!("v2.detail.events.conversation.{{id}}.{kind}"),
            "source": "aws.partner/genesys.com/cloud/local-org/callbacks",
            "account": "123456789012", "time": now.to_string(), "region": "us-east-1", "resources": [],
            "detail": {"topicName": format!("v2.detail.events.conversation.{conversation_id}.{kind}"),
                       "version": "2", "timestamp": now.to_string(), "eventBody": body,
                       "metadata": {"CorrelationId": format!("sim-{n}")}},
        });
        s.emitted.push(envelope.clone());
        Some(envelope)
    }

    /// The events emitted so far, from the `since`-th on.
    pub fn emitted(&self, since: usize) -> Vec<Value> {
        self.lock().emitted.iter().skip(since).cloned().collect()
    }

    /// Creates a data table whose rows have `key` (string) and `columns` (name, JSON type).
    pub fn add_datatable(&self, id: &str, key_title: &str, columns: &[(&str, &str)]) {
        let mut properties = serde_json::Map::new();
        properties.insert(
            "key".into(),
            json!({"title": key_title, "type": "string", "$id": "/properties/key", "displayOrder": 0}),
        );
        for (i, (name, kind)) in columns.iter().enumerate() {
            properties.insert(
                name.to_string(),
                json!({"title": name, "type": kind, "$id": format!("/properties/{name}"), "displayOrder": i + 1}),
            );
        }
        let schema = json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
                            "required": ["key"], "properties": properties, "additionalProperties": false});
        self.lock().tables.insert(
            id.to_string(),
            DataTable {
                schema,
                rows: Default::default(),
            },
        );
    }

    pub fn datatable(&self, id: &str) -> Option<DataTable> {
        self.lock().tables.get(id).cloned()
    }

    /// Stores `row` as someone editing the table in Genesys would.
    pub fn put_row_directly(&self, table: &str, row: serde_json::Map<String, Value>) {
        if let Some(t) = self.lock().tables.get_mut(table) {
            let key = row["key"].as_str().unwrap_or_default().to_string();
            t.rows.insert(key, row);
        }
    }

    pub fn delete_row(&self, table: &str, key: &str) -> bool {
        self.lock()
            .tables
            .get_mut(table)
            .is_some_and(|t| t.rows.remove(key).is_some())
    }

    /// Adds an external contact; returns its id.
    pub fn add_contact(&self, phone: &str, email: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().contacts.push(ExternalContact {
            id: id.clone(),
            phones: vec![phone.to_string()],
            emails: vec![email.to_string()],
            notes: Vec::new(),
        });
        id
    }

    /// Stores a note on contact `id` as if posted (e.g. one whose answer was lost).
    pub fn add_note(&self, id: &str, text: &str) {
        if let Some(c) = self.lock().contacts.iter_mut().find(|c| c.id == id) {
            c.notes.push(
                json!({"id": uuid::Uuid::new_v4().to_string(), "entityId": id, "noteText": text}),
            );
        }
    }

    pub fn contact(&self, id: &str) -> Option<ExternalContact> {
        self.lock().contacts.iter().find(|c| c.id == id).cloned()
    }

    /// A live conversation's participant, without attributes yet.
    pub fn add_participant(&self, conversation_id: &str, participant_id: &str) {
        self.lock().participants.insert(
            (conversation_id.to_string(), participant_id.to_string()),
            Default::default(),
        );
    }

    pub fn participant_attributes(
        &self,
        conversation_id: &str,
        participant_id: &str,
    ) -> Option<serde_json::Map<String, Value>> {
        self.lock()
            .participants
            .get(&(conversation_id.to_string(), participant_id.to_string()))
            .cloned()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth/token", post(token))
            .route(&self.ingest_path, post(ingest))
            .route("/api/v2/flows/datatables/{id}", get(get_datatable))
            .route("/api/v2/flows/datatables/{id}/rows", post(post_row))
            .route(
                "/api/v2/flows/datatables/{id}/rows/{key}",
                get(get_row).put(put_row),
            )
            .route(
                "/api/v2/conversations/callbacks",
                post(post_callback).patch(patch_callback),
            )
            .route(
                "/api/v2/conversations/callbacks/{id}",
                get(get_callback).patch(disconnect_callback),
            )
            .route(
                "/api/v2/analytics/conversations/details/query",
                post(query_conversations),
            )
            .route("/api/v2/externalcontacts/contacts", get(search_contacts))
            .route(
                "/api/v2/externalcontacts/contacts/{id}/notes",
                get(list_notes).post(post_note),
            )
            .route(
                "/api/v2/conversations/{cid}/participants/{pid}/attributes",
                axum::routing::patch(patch_attributes),
            )
            .route("/sim/events", get(list_events))
            .route("/sim/callbacks", get(list_callbacks))
            .route("/sim/callbacks/{id}/{kind}", post(post_advance_callback))
            .route("/sim/callback-events", get(list_emitted))
            .route("/sim/datatables", get(list_datatables))
            .route("/sim/requests", get(list_requests))
            .route("/sim/faults", post(post_faults))
            .route("/sim/revoke", post(post_revoke))
            .with_state(self.clone())
    }

    pub async fn spawn(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        crate::http::spawn(addr, self.router()).await
    }

    fn record(&self, path: &str, status: u16) {
        self.lock().log.record("POST", path, status);
    }

    /// What every API request meets first: latency, the bearer token, then the faults.
    async fn gate(&self, headers: &HeaderMap) -> Result<(), Response> {
        let latency = self.lock().faults.latency_ms;
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let mut s = self.lock();
        let authorised = bearer.as_deref().is_some_and(|t| s.tokens.is_live(t));
        if !authorised {
            return Err(api_error(
                StatusCode::UNAUTHORIZED,
                "authentication.required",
                "No authentication bearer token specified in authorization header.",
            ));
        }
        if s.faults.down {
            return Err(api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service.unavailable",
                "Service unavailable",
            ));
        }
        if s.faults.throttle_next > 0 {
            s.faults.throttle_next -= 1;
            let secs = s.faults.retry_after_secs.max(1);
            let mut r = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too.many.requests",
                "Rate limit exceeded the maximum",
            );
            if !s.faults.reset_header_only {
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from(secs));
            }
            r.headers_mut()
                .insert("inin-ratelimit-reset", HeaderValue::from(secs));
            return Err(r);
        }
        if s.faults.fail_next > 0 {
            s.faults.fail_next -= 1;
            let status = StatusCode::from_u16(s.faults.fail_status)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Err(api_error(status, "injected", "Injected by the simulator"));
        }
        Ok(())
    }

    /// As [`Self::api`] for a write: under `drop_after_write_next`, applied and then left unanswered.
    async fn api_write(
        &self,
        method: &str,
        route: &str,
        headers: &HeaderMap,
        kill: &crate::http::ConnectionKill,
        handler: impl FnOnce(&mut Inner) -> Response,
    ) -> Response {
        let response = self.api(method, route, headers, handler).await;
        let drop = response.status().is_success() && {
            let mut s = self.lock();
            let drop = s.faults.drop_after_write_next > 0;
            if drop {
                s.faults.drop_after_write_next -= 1;
                s.log.record(method, route, 0);
            }
            drop
        };
        if drop {
            kill.0.notify_one();
            std::future::pending::<()>().await;
        }
        response
    }

    /// Runs `handler` behind the gate and logs the answer under `method route`.
    async fn api(
        &self,
        method: &str,
        route: &str,
        headers: &HeaderMap,
        handler: impl FnOnce(&mut Inner) -> Response,
    ) -> Response {
        let response = match self.gate(headers).await {
            Err(r) => r,
            Ok(()) => handler(&mut self.lock()),
        };
        self.lock()
            .log
            .record(method, route, response.status().as_u16());
        response
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "description": description, "error_description": description})),
    )
        .into_response()
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"message": message, "code": code, "status": status.as_u16(), "contextId": uuid::Uuid::new_v4().to_string()})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
}

async fn token(
    State(sim): State<GenesysSim>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let creds = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|d| String::from_utf8(d).ok());
    let outcome = {
        let mut s = sim.lock();
        let known = creds
            .as_deref()
            .and_then(|c| c.split_once(':'))
            .is_some_and(|(id, secret)| s.clients.get(id).map(String::as_str) == Some(secret));
        if s.faults.token_fail_next > 0 {
            s.faults.token_fail_next -= 1;
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            ))
        } else if !known {
            Err((
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            ))
        } else if form.grant_type != "client_credentials" {
            Err((
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials",
            ))
        } else {
            Ok(s.tokens.issue("gsim"))
        }
    };
    match outcome {
        Ok((value, lifetime)) => {
            sim.record("/oauth/token", 200);
            Json(json!({"access_token": value, "token_type": "bearer", "expires_in": lifetime.as_secs()}))
                .into_response()
        }
        Err((status, error, description)) => {
            sim.record("/oauth/token", status.as_u16());
            oauth_error(status, error, description)
        }
    }
}

async fn ingest(
    State(sim): State<GenesysSim>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = sim.ingest_path.clone();
    let mut response = match sim.gate(&headers).await {
        Err(r) => r,
        Ok(()) => accept(&mut sim.lock(), &headers, &body),
    };
    let h = response.headers_mut();
    h.insert("inin-ratelimit-allowed", HeaderValue::from(300));
    sim.record(&path, response.status().as_u16());
    response
}

fn accept(s: &mut Inner, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
    else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad.request",
            "Idempotency-Key header is required",
        );
    };
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad.request",
            "The request body is not valid JSON",
        );
    };
    let valid = parsed["eventType"]
        .as_str()
        .is_some_and(|t| t.starts_with("custom."))
        && parsed["eventTime"].is_string()
        && parsed["source"].is_object()
        && parsed["data"].is_object();
    if !valid {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad.request",
            "eventType (custom.*), eventTime, source and data are required",
        );
    }
    if let Some((earlier, status, answer)) = s.answers.get(key) {
        if *earlier != parsed {
            return api_error(
                StatusCode::CONFLICT,
                "idempotency.conflict",
                "Idempotency-Key reused with a different body",
            );
        }
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::CREATED);
        return (status, Json(answer.clone())).into_response();
    }
    let id = uuid::Uuid::new_v4().to_string();
    let answer = json!({"id": id, "eventType": parsed["eventType"], "status": "accepted"});
    s.answers
        .insert(key.to_string(), (parsed.clone(), 201, answer.clone()));
    s.events.push(ReceivedEvent {
        id,
        idempotency_key: key.to_string(),
        body: parsed,
    });
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn list_events(State(sim): State<GenesysSim>) -> Json<Value> {
    let events = sim.events();
    Json(json!({"count": events.len(), "events": events}))
}

async fn list_datatables(State(sim): State<GenesysSim>) -> Json<Value> {
    let s = sim.lock();
    let tables: serde_json::Map<String, Value> = s
        .tables
        .iter()
        .map(|(id, t)| {
            (
                id.clone(),
                json!({"rows": t.rows.values().cloned().collect::<Vec<_>>()}),
            )
        })
        .collect();
    Json(Value::Object(tables))
}

async fn list_requests(State(sim): State<GenesysSim>) -> Json<Value> {
    Json(json!({"requests": sim.requests()}))
}

async fn post_faults(State(sim): State<GenesysSim>, Json(f): Json<GenesysFaults>) -> StatusCode {
    sim.set_faults(f);
    StatusCode::NO_CONTENT
}

async fn post_revoke(State(sim): State<GenesysSim>) -> StatusCode {
    sim.revoke_all();
    StatusCode::NO_CONTENT
}

const TABLE: &str = "/api/v2/flows/datatables/{id}";
const ROWS: &str = "/api/v2/flows/datatables/{id}/rows";
const ROW: &str = "/api/v2/flows/datatables/{id}/rows/{key}";

fn table_not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "flows.datatables.table.not.found",
        "The datatable could not be found",
    )
}

async fn get_datatable(
    State(sim): State<GenesysSim>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    sim.api("GET", TABLE, &headers, |s| match s.tables.get(&id) {
        None => table_not_found(),
        Some(t) => {
            let mut body =
                json!({"id": id, "name": id, "selfUri": format!("/api/v2/flows/datatables/{id}")});
            if q.get("expand").is_some_and(|e| e == "schema") {
                body["schema"] = t.schema.clone();
            }
            Json(body).into_response()
        }
    })
    .await
}

/// `showbrief` (default `true`) answers only the row's key, as Genesys does.
async fn get_row(
    State(sim): State<GenesysSim>,
    Path((id, key)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let brief = q.get("showbrief").is_none_or(|v| v != "false");
    sim.api("GET", ROW, &headers, |s| match s.tables.get(&id) {
        None => table_not_found(),
        Some(t) => match t.rows.get(&key) {
            Some(row) if brief => Json(json!({"key": row["key"]})).into_response(),
            Some(row) => Json(Value::Object(row.clone())).into_response(),
            None => api_error(
                StatusCode::NOT_FOUND,
                "flows.datatables.row.not.found",
                "The row could not be found",
            ),
        },
    })
    .await
}

/// A row checked against the table's schema, as Genesys does: `key` required, no unknown columns, types.
fn check_row(schema: &Value, row: &Value) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    let bad = |message: String| {
        Box::new(api_error(
            StatusCode::BAD_REQUEST,
            "flows.datatables.schema.exception",
            &message,
        ))
    };
    let Some(row) = row.as_object() else {
        return Err(bad("The row must be a JSON object".into()));
    };
    if row
        .get("key")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(bad("The row must have a key".into()));
    }
    for (name, value) in row {
        let Some(kind) = schema["properties"][name]["type"].as_str() else {
            return Err(bad(format!("Unknown column {name}")));
        };
        let ok = match kind {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => false,
        };
        if !ok {
            return Err(bad(format!("Column {name} must be of type {kind}")));
        }
    }
    Ok(row.clone())
}

async fn put_row(
    State(sim): State<GenesysSim>,
    Path((id, key)): Path<(String, String)>,
    Extension(kill): Extension<crate::http::ConnectionKill>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let row: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    sim.api_write("PUT", ROW, &headers, &kill, |s| {
        let Some(t) = s.tables.get_mut(&id) else {
            return table_not_found();
        };
        let row = match check_row(&t.schema, &row) {
            Ok(row) => row,
            Err(r) => return *r,
        };
        if row["key"] != json!(key) {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad.request",
                "The row's key does not match the URL",
            );
        }
        match t.rows.get_mut(&key) {
            None => api_error(
                StatusCode::NOT_FOUND,
                "flows.datatables.row.not.found",
                "The row could not be found",
            ),
            Some(existing) => {
                *existing = row.clone();
                Json(Value::Object(row)).into_response()
            }
        }
    })
    .await
}

async fn post_row(
    State(sim): State<GenesysSim>,
    Path(id): Path<String>,
    Extension(kill): Extension<crate::http::ConnectionKill>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let row: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    sim.api_write("POST", ROWS, &headers, &kill, |s| {
        let Some(t) = s.tables.get_mut(&id) else {
            return table_not_found();
        };
        let row = match check_row(&t.schema, &row) {
            Ok(row) => row,
            Err(r) => return *r,
        };
        let key = row["key"].as_str().unwrap_or_default().to_string();
        if t.rows.contains_key(&key) {
            return api_error(
                StatusCode::CONFLICT,
                "flows.datatables.row.exists",
                "A row with this key already exists",
            );
        }
        t.rows.insert(key, row.clone());
        Json(Value::Object(row)).into_response()
    })
    .await
}

const CONTACTS: &str = "/api/v2/externalcontacts/contacts";
const NOTES: &str = "/api/v2/externalcontacts/contacts/{id}/notes";

fn contact_json(c: &ExternalContact) -> Value {
    let mut v = json!({"id": c.id, "firstName": "Legacy", "lastName": "Customer",
                       "selfUri": format!("/api/v2/externalcontacts/contacts/{}", c.id)});
    if let Some(p) = c.phones.first() {
        v["cellPhone"] = json!({"display": p, "e164": p});
    }
    if let Some(e) = c.emails.first() {
        v["personalEmail"] = json!(e);
    }
    v
}

/// `q` matches any part of a phone number, e-mail or name (Genesys' search is as loose).
async fn search_contacts(
    State(sim): State<GenesysSim>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let needle = q.get("q").cloned().unwrap_or_default().to_lowercase();
    sim.api("GET", CONTACTS, &headers, |s| {
        let digits = |t: &str| t.chars().filter(char::is_ascii_digit).collect::<String>();
        let entities: Vec<Value> = s
            .contacts
            .iter()
            .filter(|c| {
                !needle.is_empty()
                    && (c.emails.iter().any(|e| e.to_lowercase().contains(&needle))
                        || (!digits(&needle).is_empty()
                            && c.phones
                                .iter()
                                .any(|p| digits(p).contains(&digits(&needle)))))
            })
            .map(contact_json)
            .collect();
        match page_of(&entities, &q) {
            Ok(page) => Json(page).into_response(),
            Err(r) => *r,
        }
    })
    .await
}

fn contact_not_found() -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "not.found",
        "The external contact could not be found",
    )
}

/// One page of `items` as Genesys lists them: `pageSize` (default 20, at most 100), `pageNumber` (from 1),
/// at most the first 1,000 records.
fn page_of(items: &[Value], q: &HashMap<String, String>) -> Result<Value, Box<Response>> {
    let size: usize = q.get("pageSize").and_then(|v| v.parse().ok()).unwrap_or(20);
    let number: usize = q
        .get("pageNumber")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if !(1..=100).contains(&size) || number == 0 || size * number > 1000 {
        return Err(Box::new(api_error(
            StatusCode::BAD_REQUEST,
            "bad.request",
            "pageSize must be 1-100 and pageNumber * pageSize at most 1000",
        )));
    }
    let entities: Vec<Value> = items
        .iter()
        .skip(size * (number - 1))
        .take(size)
        .cloned()
        .collect();
    Ok(
        json!({"entities": entities, "pageSize": size, "pageNumber": number, "total": items.len(),
              "pageCount": items.len().div_ceil(size)}),
    )
}

async fn list_notes(
    State(sim): State<GenesysSim>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    sim.api("GET", NOTES, &headers, |s| {
        match s.contacts.iter().find(|c| c.id == id) {
            None => contact_not_found(),
            Some(c) => match page_of(&c.notes, &q) {
                Ok(page) => Json(page).into_response(),
                Err(r) => *r,
            },
        }
    })
    .await
}

async fn post_note(
    State(sim): State<GenesysSim>,
    Path(id): Path<String>,
    Extension(kill): Extension<crate::http::ConnectionKill>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let note: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    sim.api_write("POST", NOTES, &headers, &kill, |s| {
        let Some(c) = s.contacts.iter_mut().find(|c| c.id == id) else {
            return contact_not_found();
        };
        let Some(text) = note["noteText"].as_str().filter(|t| !t.is_empty()) else {
            return api_error(StatusCode::BAD_REQUEST, "bad.request", "noteText is required");
        };
        let saved = json!({"id": uuid::Uuid::new_v4().to_string(), "entityId": id, "entityType": "Person",
                           "noteText": text, "createDate": "2026-12-01T00:00:00Z"});
        c.notes.push(saved.clone());
        Json(saved).into_response()
    })
    .await
}

const ATTRIBUTES: &str = "/api/v2/conversations/{cid}/participants/{pid}/attributes";

async fn patch_attributes(
    State(sim): State<GenesysSim>,
    Path((cid, pid)): Path<(String, String)>,
    Extension(kill): Extension<crate::http::ConnectionKill>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    sim.api_write("PATCH", ATTRIBUTES, &headers, &kill, |s| {
        let Some(attributes) = patch["attributes"].as_object() else {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad.request",
                "attributes (a string map) is required",
            );
        };
        if attributes.values().any(|v| !v.is_string()) {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad.request",
                "attribute values must be strings",
            );
        }
        match s.participants.get_mut(&(cid.clone(), pid.clone())) {
            None => api_error(
                StatusCode::NOT_FOUND,
                "not.found",
                "The conversation or participant could not be found",
            ),
            Some(current) => {
                for (k, v) in attributes {
                    current.insert(k.clone(), v.clone());
                }
                StatusCode::ACCEPTED.into_response()
            }
        }
    })
    .await
}

const CALLBACKS: &str = "/api/v2/conversations/callbacks";
const CALLBACK: &str = "/api/v2/conversations/callbacks/{id}";

fn bad_request(message: &str) -> Response {
    api_error(StatusCode::BAD_REQUEST, "bad.request", message)
}

/// `POST /api/v2/conversations/callbacks` (CreateCallbackCommand), validated as Genesys does: numbers that are
/// phone numbers, a queue that exists, a scheduled time that parses.
async fn post_callback(
    State(sim): State<GenesysSim>,
    Extension(kill): Extension<crate::http::ConnectionKill>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let command: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    sim.api_write("POST", CALLBACKS, &headers, &kill, |s| {
        let numbers: Vec<String> = command["callbackNumbers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        let phone_like = |n: &str| {
            let digits = n.strip_prefix('+').unwrap_or(n);
            (7..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
        };
        if numbers.is_empty() || !numbers.iter().all(|n| phone_like(n)) {
            return bad_request("callbackNumbers must hold valid phone numbers");
        }
        let Some(queue) = command["queueId"]
            .as_str()
            .filter(|q| s.queues.contains(*q))
        else {
            return bad_request("queueId does not name a queue");
        };
        let scheduled = command["callbackScheduledTime"]
            .as_str()
            .map(str::to_string);
        if scheduled
            .as_deref()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_err())
        {
            return bad_request("callbackScheduledTime must be ISO-8601");
        }
        let id = uuid::Uuid::new_v4().to_string();
        s.callbacks.push(ScheduledCallback {
            conversation_id: id.clone(),
            queue_id: queue.to_string(),
            numbers,
            name: command["callbackUserName"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            scheduled_time: scheduled,
            data: command["data"].as_object().cloned().unwrap_or_default(),
            state: "scheduled".into(),
        });
        Json(json!({
            "conversation": {"id": id, "selfUri": format!("/api/v2/conversations/{id}")},
            "callbackIdentifiers": [{"type": "EXTERNAL", "id": uuid::Uuid::new_v4().to_string()}],
        }))
        .into_response()
    })
    .await
}

/// `PATCH /api/v2/conversations/callbacks` (PatchCallbackRequest): reschedules one.
async fn patch_callback(
    State(sim): State<GenesysSim>,
    Extension(kill): Extension<crate::http::ConnectionKill>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    sim.api_write("PATCH", CALLBACKS, &headers, &kill, |s| {
        let Some(id) = patch["conversationId"].as_str() else {
            return bad_request("conversationId is required");
        };
        let Some(time) = patch["callbackScheduledTime"]
            .as_str()
            .filter(|t| t.parse::<jiff::Timestamp>().is_ok())
        else {
            return bad_request("callbackScheduledTime must be ISO-8601");
        };
        match s.callbacks.iter_mut().find(|c| c.conversation_id == id) {
            None => api_error(
                StatusCode::NOT_FOUND,
                "not.found",
                "The conversation could not be found",
            ),
            Some(c) if c.state == "disconnected" => {
                bad_request("the callback conversation is disconnected")
            }
            Some(c) => {
                c.scheduled_time = Some(time.to_string());
                Json(json!({"conversationId": id, "callbackScheduledTime": time})).into_response()
            }
        }
    })
    .await
}

async fn list_callbacks(State(sim): State<GenesysSim>) -> Response {
    Json(json!(sim.callbacks())).into_response()
}

/// `POST /sim/callbacks/{conversation}/{user.start|customer.end|acw}`: the callback moves on and its event is
/// emitted.
async fn post_advance_callback(
    State(sim): State<GenesysSim>,
    Path((id, kind)): Path<(String, String)>,
) -> Response {
    match sim.advance_callback(&id, &kind) {
        Some(event) => Json(event).into_response(),
        None => api_error(
            StatusCode::CONFLICT,
            "not.applicable",
            "no such callback, or the event does not apply to its state",
        ),
    }
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: usize,
}

/// `GET /sim/callback-events?since=N`: what the simulator emitted (as EventBridge would deliver it).
async fn list_emitted(
    State(sim): State<GenesysSim>,
    axum::extract::Query(q): axum::extract::Query<Since>,
) -> Response {
    Json(json!(sim.emitted(q.since))).into_response()
}

/// `PATCH /api/v2/conversations/callbacks/{id}` with `{"state": "disconnected"}`: the callback is cancelled.
async fn disconnect_callback(
    State(sim): State<GenesysSim>,
    Path(id): Path<String>,
    Extension(kill): Extension<crate::http::ConnectionKill>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    sim.api_write("PATCH", CALLBACK, &headers, &kill, |s| {
        if !patch["state"]
            .as_str()
            .is_some_and(|v| v.eq_ignore_ascii_case("disconnected"))
        {
            return bad_request("state must be disconnected");
        }
        match s.callbacks.iter_mut().find(|c| c.conversation_id == id) {
            None => api_error(
                StatusCode::NOT_FOUND,
                "not.found",
                "The conversation could not be found",
            ),
            // Disconnecting it again is refused, as changing a finished conversation is.
            Some(c) if c.state == "disconnected" => {
                bad_request("the callback conversation is disconnected")
            }
            Some(c) => {
                c.state = "disconnected".into();
                Json(json!({"id": id, "state": "disconnected"})).into_response()
            }
        }
    })
    .await
}

async fn get_callback(
    State(sim): State<GenesysSim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    sim.api("GET", CALLBACK, &headers, |s| {
        match s.callbacks.iter().find(|c| c.conversation_id == id) {
            None => api_error(
                StatusCode::NOT_FOUND,
                "not.found",
                "The conversation could not be found",
            ),
            Some(c) => Json(json!({
                "id": c.conversation_id,
                "participants": [{
                    "purpose": "customer",
                    "queueId": c.queue_id,
                    "callbackNumbers": c.numbers,
                    "callbackUserName": c.name,
                    "callbackScheduledTime": c.scheduled_time,
                    "attributes": c.data,
                    "state": c.state,
                }],
            }))
            .into_response(),
        }
    })
    .await
}

/// `POST /api/v2/analytics/conversations/details/query`, for callbacks: the `queueId` predicate of the segment
/// filters selects; each conversation lists its customer participant's attributes.
async fn query_conversations(
    State(sim): State<GenesysSim>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let query: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let queue = query["segmentFilters"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["predicates"].as_array().cloned().unwrap_or_default())
        .find(|p| p["dimension"] == "queueId")
        .and_then(|p| p["value"].as_str().map(str::to_string));
    sim.api(
        "POST",
        "/api/v2/analytics/conversations/details/query",
        &headers,
        |s| {
            let size = query["paging"]["pageSize"]
                .as_u64()
                .unwrap_or(25)
                .clamp(1, 100) as usize;
            let page = query["paging"]["pageNumber"].as_u64().unwrap_or(1).max(1) as usize;
            let matching: Vec<&ScheduledCallback> = s
                .callbacks
                .iter()
                .filter(|c| queue.as_deref().is_none_or(|q| q == c.queue_id))
                .collect();
            let conversations: Vec<Value> = matching
                .iter()
                .skip((page - 1) * size)
                .take(size)
                .map(|c| {
                    json!({"conversationId": c.conversation_id,
                       "participants": [{"purpose": "customer", "attributes": c.data}]})
                })
                .collect();
            // As analytics does: an empty page has no `conversations` at all.
            let mut answer = json!({"totalHits": matching.len()});
            if !conversations.is_empty() {
                answer["conversations"] = Value::Array(conversations);
            }
            Json(answer).into_response()
        },
    )
    .await
}
