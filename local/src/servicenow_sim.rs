//! ServiceNow Table API simulator (incident and sys_user), following the documented behaviour:
//! `201 {"result": {...}}` with string values, v1 `404` on an empty query (v2 `200 []`), Basic auth,
//! silently ignored unknown `sysparm_query` fields (the trap), `429` with `Retry-After` and `X-RateLimit-*`.
//! `work_notes` is a journal field: each write appends an entry; it reads empty as a value and as the whole
//! journal (newest first) as a display value (`sysparm_display_value=true|all`). `PATCH` and `DELETE` on
//! `/api/now/table/incident/{sys_id}` update and delete (404 for an unknown sys_id).
//!
//! Faults are set at start or at run time (`POST /sim/faults`): a rate limit window, the next N requests
//! throttled, N injected statuses (e.g. 503 or 400), latency, and "create, then drop the connection"; for
//! auth and reads: 401 for valid credentials (`unauthorized`), a 200 HTML page, a body cut off mid-read.
//! `GET /sim/incidents` lists what it holds; `GET /sim/requests` the request log.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::http::ConnectionKill;

/// Incident columns the simulator knows; query conditions on other names are ignored, as ServiceNow does.
const INCIDENT_FIELDS: &[&str] = &[
    "sys_id",
    "number",
    "short_description",
    "description",
    "contact_type",
    "caller_id",
    "category",
    "subcategory",
    "impact",
    "urgency",
    "priority",
    "work_notes",
    "correlation_id",
    "correlation_display",
    "state",
    "sys_created_on",
    "assignment_group",
    "assigned_to",
    "active",
    "opened_at",
];
const USER_FIELDS: &[&str] = &[
    "sys_id",
    "user_name",
    "name",
    "phone",
    "mobile_phone",
    "email",
    "vip",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// Every API request answers 401 even with valid credentials (the integration user lost its role).
    pub unauthorized: bool,
    /// The next N API reads (`GET`) answer 200 with an HTML page instead of JSON.
    pub html_next: u32,
    /// The next N API reads (`GET`) answer 200 and cut the body off mid-read.
    pub cut_body_next: u32,
    /// At most `limit` API requests per `window_secs`; beyond, 429 until the window resets.
    pub rate_limit: Option<RateLimit>,
    /// The next N API requests answer 429 with `Retry-After: retry_after_secs`.
    pub throttle_next: u32,
    pub retry_after_secs: u64,
    /// The next `count` API requests answer `status` (e.g. 503 burst, or a permanent 400).
    pub fail_next: u32,
    pub fail_status: u16,
    /// Restricts `fail_next` to one HTTP method (`POST` = creates), when set.
    pub fail_method: Option<String>,
    /// The next N creates store the incident, then drop the connection without answering.
    pub drop_after_create: u32,
    /// The next N updates (`PATCH`) apply, then drop the connection without answering.
    pub drop_after_update: u32,
    /// Added to every API request.
    pub latency_ms: u64,
    /// The next N creates commit only `late_commit_ms` after they arrived (a slow transaction, after the
    /// client gave up); they are answered then, if the client still waits.
    pub late_commit_next: u32,
    pub late_commit_ms: u64,
    /// Incident numbers an ACL hides from the integration user: list queries leave them out (404 when the
    /// query matched only hidden ones, "… or ACL restricts the record retrieval"), reads answer 404.
    pub acl_hidden: Vec<String>,
    /// Incident fields the integration user may not query: their conditions are ignored (the query then
    /// matches more than asked, as on a real instance).
    pub unqueryable_fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window_secs: u64,
}

pub use crate::sim_common::LoggedRequest;
use crate::sim_common::{IssuedTokens, RequestLog};

/// One work note, as the journal keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct JournalEntry {
    pub created_on: String,
    pub text: String,
}

struct State_ {
    incidents: Vec<Map<String, Value>>,
    /// sys_id → work notes, oldest first.
    journals: HashMap<String, Vec<JournalEntry>>,
    users: Vec<Map<String, Value>>,
    faults: Faults,
    next_number: u64,
    window_start: Instant,
    window_count: u32,
    log: RequestLog,
    oauth_clients: HashMap<String, String>,
    tokens: IssuedTokens,
    /// The integration user's (username, password): Basic auth and the password grant.
    user: (String, String),
}

/// A running simulator's shared state; clone freely.
#[derive(Clone)]
pub struct ServiceNowSim {
    state: Arc<Mutex<State_>>,
}

impl ServiceNowSim {
    pub fn new(username: &str, password: &str) -> Self {
        Self {
            state: Arc::new(Mutex::new(State_ {
                incidents: Vec::new(),
                journals: HashMap::new(),
                users: Vec::new(),
                faults: Faults::default(),
                next_number: 10001,
                window_start: Instant::now(),
                window_count: 0,
                log: RequestLog::default(),
                oauth_clients: HashMap::new(),
                tokens: IssuedTokens::new(Duration::from_secs(1800)),
                user: (username.to_string(), password.to_string()),
            })),
        }
    }

    /// Changes the integration user's credentials (a rotated password): the old ones get 401 from now on.
    pub fn set_user_credentials(&self, username: &str, password: &str) {
        self.lock().user = (username.to_string(), password.to_string());
    }

    fn lock(&self) -> MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an OAuth client for `POST /oauth_token.do` (a known id gets its secret replaced).
    pub fn add_oauth_client(&self, client_id: &str, client_secret: &str) {
        self.lock()
            .oauth_clients
            .insert(client_id.into(), client_secret.into());
    }

    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().tokens.lifetime = lifetime;
    }

    /// Revokes every issued access token: the API answers 401 to them from now on.
    pub fn revoke_tokens(&self) {
        self.lock().tokens.revoke_all();
    }

    pub fn tokens_issued(&self) -> u32 {
        self.lock().tokens.issued()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Every incident, with `work_notes` shown as ServiceNow displays the journal.
    pub fn incidents(&self) -> Vec<Map<String, Value>> {
        let s = self.lock();
        s.incidents
            .iter()
            .map(|r| {
                let mut r = r.clone();
                let display = journal_display(&s, &as_text(&r["sys_id"]));
                r.insert("work_notes".into(), json!(display));
                r
            })
            .collect()
    }

    /// The work notes of the incident `number`, oldest first.
    pub fn work_notes(&self, number: &str) -> Vec<String> {
        let s = self.lock();
        s.incidents
            .iter()
            .find(|r| r["number"] == json!(number))
            .and_then(|r| s.journals.get(&as_text(&r["sys_id"])))
            .map(|j| j.iter().map(|e| e.text.clone()).collect())
            .unwrap_or_default()
    }

    /// Deletes the incident `number`, as an administrator would; `false` when there is none.
    /// Sets columns of incident `number` as a ServiceNow user would (e.g. `state`, `assigned_to`).
    pub fn set_fields(&self, number: &str, fields: &[(&str, &str)]) -> bool {
        let mut s = self.lock();
        let Some(i) = s
            .incidents
            .iter()
            .position(|r| r["number"] == json!(number))
        else {
            return false;
        };
        let mut rec = s.incidents[i].clone();
        let sys_id = as_text(&rec["sys_id"]);
        let input: Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        apply_fields(&mut s, &mut rec, &sys_id, &input);
        s.incidents[i] = rec;
        true
    }

    pub fn delete_incident(&self, number: &str) -> bool {
        let mut s = self.lock();
        let before = s.incidents.len();
        s.incidents.retain(|r| r["number"] != json!(number));
        before != s.incidents.len()
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.entries()
    }

    /// Adds a `sys_user`; returns its sys_id.
    pub fn add_user(&self, name: &str, phone: &str) -> String {
        self.add_user_with(name, phone, false)
    }

    /// Adds a `sys_user` with its `vip` flag; returns its sys_id.
    pub fn add_user_with(&self, name: &str, phone: &str, vip: bool) -> String {
        let sys_id = new_sys_id();
        let mut user = Map::new();
        user.insert("sys_id".into(), json!(sys_id));
        user.insert(
            "user_name".into(),
            json!(name.to_lowercase().replace(' ', ".")),
        );
        user.insert("name".into(), json!(name));
        user.insert("phone".into(), json!(phone));
        user.insert("mobile_phone".into(), json!(""));
        user.insert("vip".into(), json!(vip.to_string()));
        self.lock().users.push(user);
        sys_id
    }

    pub fn reset(&self) {
        let mut s = self.lock();
        s.incidents.clear();
        s.journals.clear();
        s.log.clear();
        s.faults = Faults::default();
        s.window_count = 0;
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/api/now/table/incident",
                post(create_incident).get(query_incidents_v1),
            )
            .route(
                "/api/now/v2/table/incident",
                post(create_incident).get(query_incidents_v2),
            )
            .route(
                "/api/now/table/incident/{sys_id}",
                get(get_incident)
                    .patch(update_incident)
                    .put(update_incident)
                    .delete(delete_incident),
            )
            .route(
                "/api/now/v2/table/incident/{sys_id}",
                get(get_incident)
                    .patch(update_incident)
                    .put(update_incident)
                    .delete(delete_incident),
            )
            .route("/api/now/import/{staging_table}", post(import_row))
            .route("/api/now/table/sys_user", get(query_users_v1))
            .route("/api/now/v2/table/sys_user", get(query_users_v2))
            .route("/sim/incidents", get(list_incidents))
            .route("/sim/requests", get(list_requests))
            .route("/sim/faults", get(get_faults).post(post_faults))
            .route("/sim/users", post(post_user))
            .route("/sim/reset", post(post_reset))
            .route("/sim/revoke", post(post_revoke))
            .route("/oauth_token.do", post(oauth_token))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                rate_limit_headers,
            ))
            .with_state(self.clone())
    }

    /// The rate limit rule's window, when one is set: its limit and its end (Unix seconds, rounded up).
    fn rate_window(&self) -> Option<(u32, u64)> {
        let s = self.lock();
        let rl = s.faults.rate_limit?;
        let window = Duration::from_secs(rl.window_secs.max(1));
        let left = window.saturating_sub(s.window_start.elapsed());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some((rl.limit, (now + left).as_secs_f64().ceil() as u64))
    }

    /// Serves on `addr` (port 0 for any free port) in the background.
    pub async fn spawn(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        crate::http::spawn(addr, self.router()).await
    }

    fn record(&self, method: &str, path: &str, status: u16) {
        self.lock().log.record(method, path, status);
    }

    /// Auth, latency, rate limit and injected failures, in that order. `Err` is the response to send.
    async fn gate(&self, headers: &HeaderMap, method: &str, path: &str) -> Result<(), Response> {
        if !self.authorised(headers) || self.lock().faults.unauthorized {
            self.record(method, path, 401);
            return Err(sn_error(
                StatusCode::UNAUTHORIZED,
                "User Not Authenticated",
                "Required to provide Auth information",
            ));
        }
        let latency = self.lock().faults.latency_ms;
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let verdict = {
            let mut s = self.lock();
            let now = Instant::now();
            if s.faults.throttle_next > 0 {
                s.faults.throttle_next -= 1;
                let secs = s.faults.retry_after_secs.max(1);
                Some(too_many(secs, 0))
            } else if let Some(rl) = s.faults.rate_limit {
                let window = Duration::from_secs(rl.window_secs.max(1));
                if now.duration_since(s.window_start) >= window {
                    s.window_start = now;
                    s.window_count = 0;
                }
                s.window_count += 1;
                if s.window_count > rl.limit {
                    let left = window.saturating_sub(now.duration_since(s.window_start));
                    Some(too_many(left.as_secs().max(1), rl.limit))
                } else {
                    None
                }
            } else if s.faults.fail_next > 0
                && s.faults
                    .fail_method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
            {
                s.faults.fail_next -= 1;
                let status = StatusCode::from_u16(s.faults.fail_status)
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                Some(injected(status))
            } else {
                None
            }
        };
        match verdict.or_else(|| self.body_fault(method)) {
            Some(resp) => {
                self.record(method, path, resp.status().as_u16());
                Err(resp)
            }
            None => Ok(()),
        }
    }

    /// `html_next` / `cut_body_next`: a 200 whose body is not what a read expects.
    fn body_fault(&self, method: &str) -> Option<Response> {
        if method != "GET" {
            return None;
        }
        let mut s = self.lock();
        if s.faults.html_next > 0 {
            s.faults.html_next -= 1;
            let mut r = (
                StatusCode::OK,
                "<html><body>Logging in... please wait</body></html>",
            )
                .into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/html"));
            return Some(r);
        }
        if s.faults.cut_body_next > 0 {
            s.faults.cut_body_next -= 1;
            // Promises 4 KiB, sends a few bytes, then the connection breaks.
            let chunks: Vec<Result<&'static [u8], std::io::Error>> = vec![
                Ok(br#"{"result": [{"sys_id": "#),
                Err(std::io::Error::other("cut")),
            ];
            let mut r = Response::new(axum::body::Body::from_stream(futures::stream::iter(chunks)));
            let h = r.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            h.insert("content-length", HeaderValue::from(4096));
            return Some(r);
        }
        None
    }

    /// [`Self::gate`], then the body as a JSON object (400 otherwise), for the writes.
    async fn gated_object(
        &self,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Map<String, Value>, Response> {
        self.gate(headers, method, path).await?;
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => Ok(object),
            _ => {
                self.record(method, path, 400);
                Err(sn_error(
                    StatusCode::BAD_REQUEST,
                    "Exception while reading request",
                    "The payload is not valid JSON.",
                ))
            }
        }
    }

    /// Basic auth with the integration user, or a live OAuth bearer token.
    fn authorised(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if let Some(token) = value.strip_prefix("Bearer ") {
            return self.lock().tokens.is_live(token);
        }
        let Some(b64) = value.strip_prefix("Basic ") else {
            return false;
        };
        let (user, password) = self.lock().user.clone();
        let expected = format!("{user}:{password}");
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .is_ok_and(|d| d == expected.as_bytes())
    }
}

/// As an instance does for a request matching a rate limit rule: `X-RateLimit-Limit` and `X-RateLimit-Reset` on
/// every API answer.
async fn rate_limit_headers(
    State(sim): State<ServiceNowSim>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    if let Some((limit, reset)) = api.then(|| sim.rate_window()).flatten() {
        let h = response.headers_mut();
        if !h.contains_key("x-ratelimit-reset") {
            h.insert("x-ratelimit-limit", HeaderValue::from(limit));
            h.insert("x-ratelimit-reset", HeaderValue::from(reset));
        }
    }
    response
}

fn too_many(retry_after: u64, limit: u32) -> Response {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + retry_after;
    let mut r = sn_error(
        StatusCode::TOO_MANY_REQUESTS,
        "Rate limit exceeded",
        "The rate limit for this user has been exceeded",
    );
    let h = r.headers_mut();
    h.insert("retry-after", HeaderValue::from(retry_after));
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    r
}

fn injected(status: StatusCode) -> Response {
    match status {
        StatusCode::BAD_REQUEST => sn_error(
            status,
            "Invalid request",
            "Simulated permanent rejection: field value not allowed",
        ),
        StatusCode::SERVICE_UNAVAILABLE => {
            let mut r = (status, "<html><body>Instance is in maintenance: stack trace java.lang.IllegalStateException at com.glide...</body></html>").into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/html"));
            r
        }
        _ => sn_error(status, "Simulated failure", "Injected by the simulator"),
    }
}

fn sn_error(status: StatusCode, message: &str, detail: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "detail": detail}, "status": "failure"})),
    )
        .into_response()
}

fn new_sys_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn now_text() -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

type Params = Query<BTreeMap<String, String>>;

async fn create_incident(
    State(sim): State<ServiceNowSim>,
    Extension(kill): Extension<ConnectionKill>,
    Query(params): Params,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    const PATH: &str = "/api/now/table/incident";
    let input = match sim.gated_object(&headers, "POST", PATH, &body).await {
        Ok(object) => object,
        Err(r) => return r,
    };
    let record = match committed(&sim, &kill, PATH, move |s| insert_incident(s, &input)).await {
        Ok(record) => record,
        Err(no_answer) => return no_answer,
    };
    sim.record("POST", PATH, 201);
    let out = present(&record, &params, "incident");
    (StatusCode::CREATED, Json(json!({"result": out}))).into_response()
}

/// Runs `write` (an insert, or an import's transform) under the create faults: committed only
/// `late_commit_ms` later (answered then, if the client still waits), or committed and the connection
/// dropped without an answer (`Err` is then never returned: the request hangs up).
async fn committed<T: Send + 'static>(
    sim: &ServiceNowSim,
    kill: &ConnectionKill,
    path: &str,
    write: impl FnOnce(&mut State_) -> T + Send + 'static,
) -> Result<T, Response> {
    let late = {
        let mut s = sim.lock();
        (s.faults.late_commit_next > 0).then(|| {
            s.faults.late_commit_next -= 1;
            Duration::from_millis(s.faults.late_commit_ms)
        })
    };
    if let Some(late) = late {
        // The transaction goes on whether or not the client waits for it.
        let committing = sim.clone();
        let commit = tokio::spawn(async move {
            tokio::time::sleep(late).await;
            write(&mut committing.lock())
        });
        return commit
            .await
            .map_err(|_| injected(StatusCode::INTERNAL_SERVER_ERROR));
    }
    let (done, drop_connection) = {
        let mut s = sim.lock();
        let done = write(&mut s);
        let drop = s.faults.drop_after_create > 0;
        if drop {
            s.faults.drop_after_create -= 1;
        }
        (done, drop)
    };
    if drop_connection {
        sim.record("POST", path, 0);
        kill.0.notify_one();
        std::future::pending::<()>().await;
    }
    Ok(done)
}

/// `POST /api/now/import/{staging_table}`: one staging row (`u_<field>` columns), transformed at once onto
/// `incident` by a transform map that coalesces on `correlation_id` and ignores a row whose incident exists
/// (the setup the README describes): a repeated create answers the first incident, `status: ignored`.
async fn import_row(
    State(sim): State<ServiceNowSim>,
    Extension(kill): Extension<ConnectionKill>,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    const PATH: &str = "/api/now/import/{staging_table}";
    let row = match sim.gated_object(&headers, "POST", PATH, &body).await {
        Ok(object) => object,
        Err(r) => return r,
    };
    let input: Map<String, Value> = row
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("u_")?.to_string(), v)))
        .collect();
    let transform = move |s: &mut State_| {
        let key = as_text(input.get("correlation_id").unwrap_or(&Value::Null));
        let existing = s
            .incidents
            .iter()
            .find(|r| !key.is_empty() && as_text(&r["correlation_id"]) == key)
            .cloned();
        match existing {
            Some(record) => (record, "ignored"),
            None => (insert_incident(s, &input), "inserted"),
        }
    };
    let (record, status) = match committed(&sim, &kill, PATH, transform).await {
        Ok(done) => done,
        Err(no_answer) => return no_answer,
    };
    sim.record("POST", PATH, 201);
    let number = as_text(&record["number"]);
    let sys_id = as_text(&record["sys_id"]);
    let set = format!("ISET{}", &number.get(3..).unwrap_or("0"));
    (
        StatusCode::CREATED,
        Json(json!({
            "import_set": set,
            "staging_table": table,
            "result": [{
                "transform_map": "Genesys incidents",
                "table": "incident",
                "display_name": "number",
                "display_value": number,
                "record_link": format!("/api/now/table/incident/{sys_id}"),
                "status": status,
                "sys_id": sys_id,
            }]
        })),
    )
        .into_response()
}

/// Stores a new incident from `input`, numbered in order.
fn insert_incident(s: &mut State_, input: &Map<String, Value>) -> Map<String, Value> {
    let mut rec = Map::new();
    for f in INCIDENT_FIELDS {
        rec.insert(f.to_string(), json!(""));
    }
    let sys_id = new_sys_id();
    apply_fields(s, &mut rec, &sys_id, input);
    rec.insert("sys_id".into(), json!(sys_id));
    rec.insert("number".into(), json!(format!("INC{:07}", s.next_number)));
    rec.insert("state".into(), json!("1"));
    rec.insert("active".into(), json!("true"));
    rec.insert("sys_created_on".into(), json!(now_text()));
    rec.insert("opened_at".into(), json!(now_text()));
    s.next_number += 1;
    s.incidents.push(rec.clone());
    rec
}

/// Writes `input`'s known columns into `rec` (strings, as ServiceNow stores them); `work_notes` is appended
/// to the journal; `priority` is derived from impact and urgency.
fn apply_fields(
    s: &mut State_,
    rec: &mut Map<String, Value>,
    sys_id: &str,
    input: &Map<String, Value>,
) {
    for (k, v) in input {
        // ServiceNow ignores columns the table does not have; all values are strings.
        if !INCIDENT_FIELDS.contains(&k.as_str())
            || matches!(k.as_str(), "sys_id" | "number" | "priority")
        {
            continue;
        }
        if k == "work_notes" {
            let text = as_text(v);
            if !text.trim().is_empty() {
                s.journals
                    .entry(sys_id.to_string())
                    .or_default()
                    .push(JournalEntry {
                        created_on: now_text(),
                        text,
                    });
            }
            continue;
        }
        rec.insert(k.clone(), json!(as_text(v)));
    }
    // Resolved, closed and canceled incidents are inactive.
    let active = !matches!(as_text(&rec["state"]).as_str(), "6" | "7" | "8");
    rec.insert("active".into(), json!(active.to_string()));
    let impact: u8 = as_text(&rec["impact"]).parse().unwrap_or(3).clamp(1, 3);
    let urgency: u8 = as_text(&rec["urgency"]).parse().unwrap_or(3).clamp(1, 3);
    rec.insert("impact".into(), json!(impact.to_string()));
    rec.insert("urgency".into(), json!(urgency.to_string()));
    rec.insert("priority".into(), json!((impact + urgency - 1).to_string()));
}

/// The journal as ServiceNow displays it: newest first, each entry under its header.
fn journal_display(s: &State_, sys_id: &str) -> String {
    s.journals
        .get(sys_id)
        .map(|entries| {
            entries
                .iter()
                .rev()
                .map(|e| {
                    format!(
                        "{} - Integration User (Work notes)\n{}\n\n",
                        e.created_on, e.text
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

const ONE_INCIDENT: &str = "/api/now/table/incident/{sys_id}";

async fn update_incident(
    State(sim): State<ServiceNowSim>,
    Extension(kill): Extension<ConnectionKill>,
    Path(sys_id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let input = match sim
        .gated_object(&headers, "PATCH", ONE_INCIDENT, &body)
        .await
    {
        Ok(object) => object,
        Err(r) => return r,
    };
    let updated = {
        let mut s = sim.lock();
        let Some(i) = s
            .incidents
            .iter()
            .position(|r| r["sys_id"] == json!(sys_id))
        else {
            drop(s);
            sim.record("PATCH", ONE_INCIDENT, 404);
            return not_found();
        };
        let mut rec = s.incidents[i].clone();
        apply_fields(&mut s, &mut rec, &sys_id, &input);
        s.incidents[i] = rec.clone();
        let drop = s.faults.drop_after_update > 0;
        if drop {
            s.faults.drop_after_update -= 1;
        }
        (rec, drop)
    };
    if updated.1 {
        sim.record("PATCH", ONE_INCIDENT, 0);
        kill.0.notify_one();
        std::future::pending::<()>().await;
    }
    sim.record("PATCH", ONE_INCIDENT, 200);
    let out = present_incident(&sim, &updated.0, &params);
    Json(json!({"result": out})).into_response()
}

async fn delete_incident(
    State(sim): State<ServiceNowSim>,
    Path(sys_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = sim.gate(&headers, "DELETE", ONE_INCIDENT).await {
        return r;
    }
    let removed = {
        let mut s = sim.lock();
        let before = s.incidents.len();
        s.incidents.retain(|r| r["sys_id"] != json!(sys_id));
        before != s.incidents.len()
    };
    if removed {
        sim.record("DELETE", ONE_INCIDENT, 204);
        StatusCode::NO_CONTENT.into_response()
    } else {
        sim.record("DELETE", ONE_INCIDENT, 404);
        not_found()
    }
}

fn not_found() -> Response {
    sn_error(
        StatusCode::NOT_FOUND,
        "No Record found",
        "Record doesn't exist or ACL restricts the record retrieval",
    )
}

/// An incident as the API presents it, journal display included when display values were asked for.
fn present_incident(
    sim: &ServiceNowSim,
    record: &Map<String, Value>,
    params: &BTreeMap<String, String>,
) -> Value {
    present_incident_locked(&sim.lock(), record, params)
}

fn present_incident_locked(
    s: &State_,
    record: &Map<String, Value>,
    params: &BTreeMap<String, String>,
) -> Value {
    let journal = journal_display(s, &as_text(&record["sys_id"]));
    let mut out = present(record, params, "incident");
    let mode = params
        .get("sysparm_display_value")
        .map(String::as_str)
        .unwrap_or("false");
    // A reference displays as the referenced user's name.
    let user_name = |sys_id: &str| {
        s.users
            .iter()
            .find(|u| as_text(&u["sys_id"]) == sys_id)
            .map(|u| as_text(&u["name"]))
            .unwrap_or_default()
    };
    if let Some(map) = out.as_object_mut() {
        for (k, v) in map.iter_mut() {
            let value = match &*v {
                Value::Object(link) => link.get("value").cloned().unwrap_or_default(),
                other => other.clone(),
            };
            let display = match k.as_str() {
                "work_notes" => json!(journal),
                "state" => json!(state_label(&as_text(&value))),
                "caller_id" | "assigned_to" => json!(user_name(&as_text(&value))),
                _ => value.clone(),
            };
            match mode {
                "true" => *v = display,
                "all" => *v = json!({"display_value": display, "value": value}),
                _ => {}
            }
        }
    }
    out
}

/// The out-of-box labels of `incident.state`.
fn state_label(code: &str) -> &str {
    match code {
        "1" => "New",
        "2" => "In Progress",
        "3" => "On Hold",
        "6" => "Resolved",
        "7" => "Closed",
        "8" => "Canceled",
        other => other,
    }
}

async fn get_incident(
    State(sim): State<ServiceNowSim>,
    Path(sys_id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = sim
        .gate(&headers, "GET", "/api/now/table/incident/{sys_id}")
        .await
    {
        return r;
    }
    let found = {
        let s = sim.lock();
        s.incidents
            .iter()
            .find(|r| r["sys_id"] == json!(sys_id))
            .filter(|r| !s.faults.acl_hidden.iter().any(|n| r["number"] == json!(n)))
            .cloned()
    };
    match found {
        Some(r) => {
            sim.record("GET", ONE_INCIDENT, 200);
            Json(json!({"result": present_incident(&sim, &r, &params)})).into_response()
        }
        None => {
            sim.record("GET", ONE_INCIDENT, 404);
            not_found()
        }
    }
}

async fn query_incidents_v1(s: State<ServiceNowSim>, p: Params, h: HeaderMap) -> Response {
    query(s, p, h, "incident", false).await
}
async fn query_incidents_v2(s: State<ServiceNowSim>, p: Params, h: HeaderMap) -> Response {
    query(s, p, h, "incident", true).await
}
async fn query_users_v1(s: State<ServiceNowSim>, p: Params, h: HeaderMap) -> Response {
    query(s, p, h, "sys_user", false).await
}
async fn query_users_v2(s: State<ServiceNowSim>, p: Params, h: HeaderMap) -> Response {
    query(s, p, h, "sys_user", true).await
}

async fn query(
    State(sim): State<ServiceNowSim>,
    Query(params): Params,
    headers: HeaderMap,
    table: &str,
    v2: bool,
) -> Response {
    let path = format!("/api/now/table/{table}");
    if let Err(r) = sim.gate(&headers, "GET", &path).await {
        return r;
    }
    let fields = if table == "incident" {
        INCIDENT_FIELDS
    } else {
        USER_FIELDS
    };
    let (hidden, unqueryable) = {
        let s = sim.lock();
        (
            s.faults.acl_hidden.clone(),
            s.faults.unqueryable_fields.clone(),
        )
    };
    let queryable: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| !unqueryable.iter().any(|u| u == f))
        .collect();
    let conditions = parse_query(
        params
            .get("sysparm_query")
            .map(String::as_str)
            .unwrap_or(""),
        &queryable,
    );
    let is_hidden = |r: &Map<String, Value>| {
        table == "incident" && hidden.iter().any(|n| r["number"] == json!(n))
    };
    let limit: usize = params
        .get("sysparm_limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10_000);
    let (rows, hidden_matches, total): (Vec<Value>, usize, usize) = {
        let s = sim.lock();
        let source = if table == "incident" {
            &s.incidents
        } else {
            &s.users
        };
        let matching: Vec<&Map<String, Value>> =
            source.iter().filter(|r| matches(r, &conditions)).collect();
        let hidden_matches = matching.iter().filter(|r| is_hidden(r)).count();
        let visible: Vec<&Map<String, Value>> =
            matching.into_iter().filter(|r| !is_hidden(r)).collect();
        let total = visible.len();
        let rows = visible
            .into_iter()
            .take(limit)
            .map(|r| match table {
                "incident" => present_incident_locked(&s, r, &params),
                _ => present(r, &params, table),
            })
            .collect();
        (rows, hidden_matches, total)
    };
    if rows.is_empty() && hidden_matches > 0 {
        // What an instance answers when security constraints removed every matching row.
        sim.record("GET", &path, 404);
        return not_found();
    }
    if rows.is_empty() && !v2 {
        sim.record("GET", &path, 404);
        return sn_error(
            StatusCode::NOT_FOUND,
            "No Record found",
            "Records matching query not found. Check query parameter or offending query.",
        );
    }
    sim.record("GET", &path, 200);
    // The Table API's count of every matching record, whatever `sysparm_limit` returned.
    let mut response = Json(json!({"result": rows})).into_response();
    response
        .headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    response
}

/// `a=1^b=2^ORc=3` → OR-groups of (field, value); conditions on unknown fields are dropped, like ServiceNow.
fn parse_query(q: &str, known: &[&str]) -> Vec<Vec<(String, String)>> {
    let mut groups: Vec<Vec<(String, String)>> = Vec::new();
    for part in q.split('^').filter(|p| !p.is_empty()) {
        let (or, cond) = match part.strip_prefix("OR") {
            Some(rest) => (true, rest),
            None => (false, part),
        };
        let Some((field, value)) = cond.split_once('=') else {
            continue;
        };
        if !known.contains(&field) {
            continue;
        }
        let c = (field.to_string(), value.to_string());
        match groups.last_mut() {
            Some(g) if or => g.push(c),
            _ => groups.push(vec![c]),
        }
    }
    groups
}

fn matches(record: &Map<String, Value>, groups: &[Vec<(String, String)>]) -> bool {
    groups.iter().all(|g| {
        g.iter()
            .any(|(f, v)| record.get(f).map(as_text).as_deref() == Some(v.as_str()))
    })
}

fn present(record: &Map<String, Value>, params: &BTreeMap<String, String>, table: &str) -> Value {
    let wanted: Option<Vec<&str>> = params.get("sysparm_fields").map(|f| {
        f.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    });
    let exclude_links = params
        .get("sysparm_exclude_reference_link")
        .is_some_and(|v| v == "true");
    let mut out = Map::new();
    for (k, v) in record {
        if wanted.as_ref().is_some_and(|w| !w.contains(&k.as_str())) {
            continue;
        }
        let is_reference = table == "incident"
            && matches!(k.as_str(), "caller_id" | "assigned_to")
            && !as_text(v).is_empty();
        if is_reference && !exclude_links {
            out.insert(
                k.clone(),
                json!({"link": format!("/api/now/table/sys_user/{}", as_text(v)), "value": as_text(v)}),
            );
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

async fn list_incidents(State(sim): State<ServiceNowSim>) -> Json<Value> {
    Json(json!({"count": sim.incidents().len(), "incidents": sim.incidents()}))
}

async fn list_requests(State(sim): State<ServiceNowSim>) -> Json<Value> {
    Json(json!({"requests": sim.requests()}))
}

async fn get_faults(State(sim): State<ServiceNowSim>) -> Json<Faults> {
    Json(sim.faults())
}

async fn post_faults(State(sim): State<ServiceNowSim>, Json(f): Json<Faults>) -> Json<Faults> {
    sim.set_faults(f);
    Json(sim.faults())
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    phone: String,
    #[serde(default)]
    vip: bool,
}

async fn post_user(State(sim): State<ServiceNowSim>, Json(u): Json<NewUser>) -> Json<Value> {
    Json(json!({"sys_id": sim.add_user_with(&u.name, &u.phone, u.vip)}))
}

async fn post_revoke(State(sim): State<ServiceNowSim>) -> StatusCode {
    sim.revoke_tokens();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /oauth_token.do`: `client_credentials` or `password` grant, client id/secret in the form.
async fn oauth_token(
    State(sim): State<ServiceNowSim>,
    axum::Form(form): axum::Form<TokenRequest>,
) -> Response {
    let oauth_error = |status: StatusCode, error: &str| {
        sim.record("POST", "/oauth_token.do", status.as_u16());
        (
            status,
            Json(json!({"error": error, "error_description": "access_denied"})),
        )
            .into_response()
    };
    let mut s = sim.lock();
    if s.oauth_clients.get(&form.client_id) != Some(&form.client_secret)
        || form.client_id.is_empty()
    {
        drop(s);
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let grant_ok = match form.grant_type.as_str() {
        "client_credentials" => true,
        "password" => (form.username.clone(), form.password.clone()) == s.user,
        _ => false,
    };
    if !grant_ok {
        drop(s);
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_grant");
    }
    let (token, lifetime) = s.tokens.issue("snsim");
    drop(s);
    sim.record("POST", "/oauth_token.do", 200);
    Json(json!({"access_token": token, "refresh_token": format!("r-{}", uuid::Uuid::new_v4().simple()),
                "scope": "useraccount", "token_type": "Bearer", "expires_in": lifetime.as_secs()}))
    .into_response()
}

async fn post_reset(State(sim): State<ServiceNowSim>) -> StatusCode {
    sim.reset();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_ignores_unknown_fields() {
        let g = parse_query("correlation_id=abc", INCIDENT_FIELDS);
        assert_eq!(
            g,
            vec![vec![("correlation_id".to_string(), "abc".to_string())]]
        );
        assert!(parse_query("corelation_id=abc", INCIDENT_FIELDS).is_empty());
        let g = parse_query("phone=+1^ORmobile_phone=+1", USER_FIELDS);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].len(), 2);
    }

    #[test]
    fn matching() {
        let mut r = Map::new();
        r.insert("correlation_id".into(), json!("abc"));
        assert!(matches(
            &r,
            &parse_query("correlation_id=abc", INCIDENT_FIELDS)
        ));
        assert!(!matches(
            &r,
            &parse_query("correlation_id=abd", INCIDENT_FIELDS)
        ));
        // The trap: a misspelled field matches everything.
        assert!(matches(
            &r,
            &parse_query("corelation_id=zzz", INCIDENT_FIELDS)
        ));
    }
}
