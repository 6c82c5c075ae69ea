//! data-action: the endpoint Genesys Architect's Web Services Data Actions call during the call.
//!
//! `POST …/data-actions/{action}` runs one action of the [`actions::registry`] (`createIncident`,
//! `lookupIncident`, `lookupCaller`): the caller is authenticated (Basic, a header secret, or a bearer token
//! from `POST …/data-actions/oauth/token`), the input checked against the action's flat contract (400 naming
//! each field), the action run within a deadline below Architect's timeout (503 when it runs out, with a body
//! the Failure path can read), and the output checked before it is sent (502 on a violation).
//! `GET …/data-actions/{action}/contract` gives the contracts as JSON Schema for Genesys's action editor.

pub mod actions;
pub mod auth;
pub mod callers;
pub mod config;
pub mod contract;

use std::time::{Duration, Instant};

use http::{HeaderMap, Method};
use serde_json::{json, Value};
use tracing::{info, warn};

use shared::retry::Deadline;

use actions::{Action, ActionError, Services};
use auth::{AuthError, Authenticator, Mode};

pub use config::{build, Config};
pub use shared::http::Reply;

/// The path segment every route sits under (after any stage or base path).
pub const BASE: &str = "/data-actions";

pub struct DataActions {
    actions: Vec<Box<dyn Action>>,
    services: Services,
    auth: Authenticator,
    deadline: Duration,
    max_body_bytes: usize,
}

/// How one call ended, for the audit log and metrics.
struct Audit<'a> {
    action: &'a str,
    conversation_id: String,
    outcome: &'static str,
    status: u16,
    started: Instant,
}

impl Audit<'_> {
    fn log(&self) {
        let latency_ms = self.started.elapsed().as_millis() as u64;
        info!(action = self.action, conversation_id = %self.conversation_id, outcome = self.outcome,
              status = self.status, latency_ms, "data action answered");
        let failed = u64::from(self.status >= 500);
        shared::metrics::values(
            ("Action", self.action),
            &[
                ("DataActionCalls", 1, "Count"),
                ("DataActionServerErrors", failed, "Count"),
                ("DataActionLatency", latency_ms, "Milliseconds"),
            ],
        );
    }
}

impl DataActions {
    pub fn new(services: Services, auth: Authenticator, deadline: Duration) -> Self {
        Self {
            actions: actions::registry(),
            services,
            auth,
            deadline,
            max_body_bytes: 64 * 1024,
        }
    }

    /// Serves `actions` instead of the registry's (tests, extensions).
    pub fn with_actions(mut self, actions: Vec<Box<dyn Action>>) -> Self {
        self.actions = actions;
        self
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    fn action(&self, name: &str) -> Option<&dyn Action> {
        self.actions
            .iter()
            .find(|a| a.name() == name)
            .map(|a| a.as_ref())
    }

    fn unknown_action(&self) -> Reply {
        let names: Vec<&str> = self.actions.iter().map(|a| a.name()).collect();
        Reply::error(
            404,
            "unknown_action",
            format!("known actions: {}", names.join(", ")),
        )
    }

    pub async fn handle(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Reply {
        let Some(rest) = path.find(BASE).map(|i| &path[i + BASE.len()..]) else {
            return Reply::error(404, "not_found", format!("routes are under {BASE}/"));
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match (method, segments.as_slice()) {
            (&Method::POST, ["oauth", "token"]) => self.token(headers, body).await,
            (&Method::POST, [name]) => self.call(name, headers, body).await,
            (&Method::GET, [name, "contract"]) => match self.authenticate(name, headers).await {
                Err(r) => r,
                Ok(()) => match self.action(name) {
                    Some(a) => Reply::new(
                        200,
                        json!({"input": a.input().schema(&format!("{name} input"), true),
                               "output": a.output().schema(&format!("{name} output"), false)}),
                    ),
                    None => self.unknown_action(),
                },
            },
            (_, [_] | ["oauth", "token"] | [_, "contract"]) => Reply::error(
                405,
                "method_not_allowed",
                "data actions are called with POST",
            ),
            _ => self.unknown_action(),
        }
    }

    async fn authenticate(&self, action: &str, headers: &HeaderMap) -> Result<(), Reply> {
        self.auth.check(headers).await.map_err(|e| {
            warn!(action, reason = %e, "data action call not authenticated");
            unauthorized(self.auth.mode(), &e)
        })
    }

    async fn token(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        match self.auth.issue(headers, body).await {
            Ok(issued) => {
                info!(
                    expires_in = issued.expires_in,
                    "data action access token issued"
                );
                Reply::new(
                    200,
                    json!({"access_token": issued.access_token, "token_type": "Bearer",
                           "expires_in": issued.expires_in}),
                )
            }
            Err(AuthError::NoTokenEndpoint) => {
                Reply::error(404, "not_found", AuthError::NoTokenEndpoint.to_string())
            }
            Err(AuthError::Grant) => {
                Reply::error(400, "unsupported_grant_type", AuthError::Grant.to_string())
            }
            Err(e) => {
                warn!(reason = %e, "token request refused");
                Reply::error(401, "invalid_client", e.to_string()).with_challenge("Basic")
            }
        }
    }

    async fn call(&self, name: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        let started = Instant::now();
        // From the request's arrival: authentication (which may re-read a secret) counts too.
        let deadline = Deadline::after(self.deadline);
        let mut audit = Audit {
            action: name,
            conversation_id: String::new(),
            outcome: "ok",
            status: 200,
            started,
        };
        let reply = self
            .call_inner(name, headers, body, deadline, &mut audit)
            .await;
        audit.status = reply.status;
        if self.action(name).is_some() {
            audit.log();
        }
        reply
    }

    async fn call_inner(
        &self,
        name: &str,
        headers: &HeaderMap,
        body: &[u8],
        deadline: Deadline,
        audit: &mut Audit<'_>,
    ) -> Reply {
        match tokio::time::timeout(deadline.remaining(), self.authenticate(name, headers)).await {
            Ok(Ok(())) => {}
            Ok(Err(r)) => {
                audit.outcome = "unauthorized";
                return r;
            }
            Err(_) => {
                audit.outcome = "auth_unavailable";
                return failure(&ActionError::unavailable(
                    "auth_unavailable",
                    "the credentials could not be checked in time (their secret could not be read)",
                ));
            }
        }
        let Some(action) = self.action(name) else {
            return self.unknown_action();
        };
        if body.len() > self.max_body_bytes {
            audit.outcome = "payload_too_large";
            return Reply::error(
                413,
                "payload_too_large",
                format!("the limit is {} bytes", self.max_body_bytes),
            );
        }
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            audit.outcome = "invalid_json";
            return Reply::error(400, "invalid_json", "the body must be a JSON object");
        };
        let input = match action.input().check_input(&json) {
            Ok(input) => input,
            Err(fields) => {
                audit.outcome = "invalid_input";
                return invalid(&fields);
            }
        };
        // Logged only when it is an identifier: a flow may put anything in the field.
        audit.conversation_id = action
            .conversation_id(&input)
            .and_then(|c| actions::create_incident::conversation_id(c, "").ok())
            .unwrap_or("")
            .to_string();
        let ran = tokio::time::timeout(
            deadline.remaining(),
            action.run(&self.services, &input, deadline),
        )
        .await;
        let result = ran.unwrap_or_else(|_| {
            Err(ActionError::Unavailable {
                code: "deadline_exceeded",
                message: format!("no answer within {} ms", self.deadline.as_millis()),
                retry_after: Some(Duration::from_secs(1)),
            })
        });
        match result {
            Ok(output) => match action.output().check_output(&output) {
                Ok(()) => Reply::new(200, Value::Object(output)),
                Err(fields) => {
                    audit.outcome = "output_contract_violation";
                    let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
                    warn!(action = name, fields = ?names, "output violates the action's contract; not sent");
                    Reply::error(
                        502,
                        "output_contract_violation",
                        "the answer did not match the action's output contract",
                    )
                    .with("fields", json!(fields))
                }
            },
            Err(e) => {
                audit.outcome = e.code();
                failure(&e)
            }
        }
    }
}

fn invalid(fields: &[contract::FieldError]) -> Reply {
    Reply::error(
        400,
        "invalid_input",
        "the input does not match the action's contract",
    )
    .with("fields", json!(fields))
}

fn unauthorized(mode: &Mode, e: &AuthError) -> Reply {
    let reply = Reply::error(401, "unauthorized", e.to_string());
    match mode {
        Mode::Basic => reply.with_challenge("Basic"),
        Mode::OAuth { .. } => reply.with_challenge("Bearer"),
        Mode::Header { .. } => reply,
    }
}

/// The answer for a failed action: Architect takes its Failure path; `retryable` says whether calling again
/// can help.
fn failure(e: &ActionError) -> Reply {
    match e {
        ActionError::Invalid(fields) => invalid(fields),
        ActionError::Unavailable {
            code,
            message,
            retry_after,
        } => {
            let r = Reply::error(503, code, message.clone()).with("retryable", json!(true));
            match retry_after {
                Some(after) => r.with_retry_after(*after),
                None => r,
            }
        }
        ActionError::Upstream { code, message } => {
            Reply::error(502, code, message.clone()).with("retryable", json!(false))
        }
    }
}

/// The Lambda adapter: API Gateway request in, response out.
pub async fn handle_lambda(
    actions: &DataActions,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    let (parts, body) = request.into_parts();
    let reply = actions
        .handle(
            &parts.method,
            parts.uri.path(),
            &parts.headers,
            body.as_ref(),
        )
        .await;
    reply.to_lambda(None)
}
