//! Genesys Cloud simulator: `POST /oauth/token` (client credentials, Basic auth) and the event ingestion
//! endpoint (default `POST /api/v2/eventbridge/events`) honouring `Idempotency-Key`: the same key gets the
//! same answer and never a second event; the same key with another body gets 409.
//!
//! Faults (`POST /sim/faults`): the next N ingest requests throttled (429 with `Retry-After` or only
//! `inin-ratelimit-reset`), N injected statuses, latency. Tokens have a configurable lifetime and can be
//! revoked (`POST /sim/revoke`), after which the API answers 401. `GET /sim/events` lists received events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const DEFAULT_INGEST_PATH: &str = "/api/v2/eventbridge/events";

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
}

#[derive(Debug, Clone, Serialize)]
pub struct ReceivedEvent {
    pub id: String,
    pub idempotency_key: String,
    pub body: Value,
}

pub use crate::sim_common::LoggedRequest;
use crate::sim_common::{IssuedTokens, RequestLog};

struct Inner {
    clients: HashMap<String, String>,
    tokens: IssuedTokens,
    events: Vec<ReceivedEvent>,
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
                answers: HashMap::new(),
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

    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth/token", post(token))
            .route(&self.ingest_path, post(ingest))
            .route("/sim/events", get(list_events))
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
    let latency = sim.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let response = {
        let mut s = sim.lock();
        let authorised = bearer.as_deref().is_some_and(|t| s.tokens.is_live(t));
        if !authorised {
            api_error(
                StatusCode::UNAUTHORIZED,
                "authentication.required",
                "No authentication bearer token specified in authorization header.",
            )
        } else if s.faults.down {
            api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service.unavailable",
                "Service unavailable",
            )
        } else if s.faults.throttle_next > 0 {
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
            r
        } else if s.faults.fail_next > 0 {
            s.faults.fail_next -= 1;
            let status = StatusCode::from_u16(s.faults.fail_status)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            api_error(status, "injected", "Injected by the simulator")
        } else {
            accept(&mut s, &headers, &body)
        }
    };
    let mut response = response;
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
