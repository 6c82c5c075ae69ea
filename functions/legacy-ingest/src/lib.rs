//! legacy-ingest: `POST /ingest`.
//!
//! Authenticates the legacy system's JWT, validates its business event strictly, maps it to the Genesys
//! event schema and publishes it with a deterministic `Idempotency-Key` (issuer + transaction id), retrying
//! within a deadline well under API Gateway's 29 s. Answers 202 once Genesys accepted it, 502 when Genesys
//! rejected it, 503 + `Retry-After` when it could not be delivered in time (safe to retry: same key).

pub mod auth;
pub mod event;
pub mod genesys;
pub use shared::genesys as genesys_api;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde_json::json;
use tracing::{error, info, warn};

use shared::config::{renamed, ConfigError, Env};
use shared::retry::{Deadline, Retrier, RetryPolicy};
use shared::tokens::{Provider, TokenSourceSettings};
use shared::StartupError;

use std::collections::HashMap;

use shared::event::glob_match;

use auth::{AuthError, Authenticator, Jwks, JwksSource, JwksTiming, JwtPolicy, KeyBinding};
use event::EventRules;
use genesys::{PublishError, Publisher};
use genesys_api::GenesysApi;
use shared::idempotency::IdempotencyStore;
use targets::{DeliverError, Delivered, Route, Target, Targets};

pub use shared::http::Reply;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub max_body_bytes: usize,
    pub rules: EventRules,
    /// Fixed source name; when unset the token's `sub` is the source.
    pub source_name: Option<String>,
    pub source_version: String,
    pub deadline: Duration,
}

pub struct Ingest {
    config: IngestConfig,
    auth: Authenticator,
    routes: Vec<Route>,
    /// The publisher of each `custom-endpoint` path.
    publishers: HashMap<String, Publisher>,
    targets: Option<Targets>,
}

impl Ingest {
    /// Every event to the custom ingestion endpoint `publisher` posts to.
    pub fn new(config: IngestConfig, auth: Authenticator, publisher: Publisher) -> Self {
        Self {
            config,
            auth,
            routes: vec![Route {
                event_types: vec!["*".into()],
                target: Target::CustomEndpoint {
                    path: DEFAULT_INGEST_PATH.into(),
                },
            }],
            publishers: HashMap::from([(DEFAULT_INGEST_PATH.to_string(), publisher)]),
            targets: None,
        }
    }

    /// Events to the Genesys targets of `targets`' routes; `publishers` serve its `custom-endpoint` routes.
    pub fn with_targets(
        config: IngestConfig,
        auth: Authenticator,
        targets: Targets,
        publishers: HashMap<String, Publisher>,
    ) -> Self {
        Self {
            config,
            auth,
            routes: targets.routes().to_vec(),
            publishers,
            targets: Some(targets),
        }
    }

    pub async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        let reply = self.handle_request(headers, body).await;
        let published = (200..300).contains(&reply.status);
        shared::metrics::values(
            ("Function", "legacy-ingest"),
            &[
                ("IngestPublished", u64::from(published), "Count"),
                ("IngestRejected", u64::from(!published), "Count"),
            ],
        );
        if !published {
            let reason = reply.body["error"].as_str().unwrap_or("unknown");
            shared::metrics::count("IngestRejectedByReason", ("Reason", reason), 1);
        }
        reply
    }

    async fn handle_request(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let claims = match self.auth.authenticate(authorization).await {
            Ok(c) => c,
            Err(e) => {
                warn!(reason = %e, "ingest request not authenticated");
                let mut r =
                    Reply::error(401, "unauthorized", e.to_string()).with_challenge("Bearer");
                if e == AuthError::MissingToken {
                    r.body["message"] = json!("an Authorization: Bearer <JWT> header is required");
                }
                return r;
            }
        };
        let subject = claims.sub.clone().unwrap_or_default();
        if body.len() > self.config.max_body_bytes {
            return Reply::error(
                413,
                "payload_too_large",
                format!("the limit is {} bytes", self.config.max_body_bytes),
            );
        }
        let event = match event::validate(body, &self.config.rules) {
            Ok(e) => e,
            Err(fields) => {
                info!(issuer = %claims.iss, subject = %subject, fields = fields.len(), "ingest body rejected");
                return Reply::new(400, json!({"error": "invalid_body", "fields": fields}));
            }
        };
        let source = match &self.config.source_name {
            Some(s) => s.clone(),
            None if event::valid_source(&subject) => subject.clone(),
            None => {
                return Reply::error(
                    403,
                    "invalid_source",
                    "the token subject must be a source name (a-z 0-9 _ -)",
                )
            }
        };
        let key = event::idempotency_key(&claims.iss, &event.transaction_id);
        let Some(route) = self.routes.iter().find(|r| {
            r.event_types
                .iter()
                .any(|g| glob_match(g, &event.event_type))
        }) else {
            return Reply::new(
                400,
                json!({"error": "invalid_body", "fields": [{"field": "event_type", "problem": "no delivery target is configured for this event type (INGEST_TARGETS)"}]}),
            );
        };
        let deadline = Deadline::after(self.config.deadline);
        let publisher = match &route.target {
            Target::CustomEndpoint { path } => self.publishers.get(path),
            _ => None,
        };
        let Some(publisher) = publisher else {
            return self
                .deliver(
                    route,
                    &event,
                    &source,
                    &key,
                    &claims.iss,
                    &subject,
                    deadline,
                )
                .await;
        };
        let genesys_event = event::to_genesys(&event, &source, &self.config.source_version);
        let event_type = genesys_event["eventType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let outcome = publisher.publish(&genesys_event, &key, deadline).await;
        match outcome {
            Ok(p) => {
                info!(issuer = %claims.iss, subject = %subject, transaction_id = %event.transaction_id,
                      idempotency_key = %key, event_type = %event_type, attempts = p.attempts, "event published");
                Reply::new(
                    202,
                    json!({"status": "accepted", "idempotency_key": key, "event_type": event_type}),
                )
            }
            Err(PublishError::Rejected { status }) => {
                error!(issuer = %claims.iss, subject = %subject, transaction_id = %event.transaction_id,
                       idempotency_key = %key, status, "Genesys rejected the event");
                Reply::error(
                    502,
                    "upstream_rejected",
                    format!("Genesys rejected the event (HTTP {status})"),
                )
            }
            Err(PublishError::Unavailable {
                retry_after,
                reason,
            }) => {
                warn!(issuer = %claims.iss, subject = %subject, transaction_id = %event.transaction_id,
                      idempotency_key = %key, reason = %reason, "event not delivered in time");
                let mut r = Reply::error(
                    503,
                    "upstream_unavailable",
                    "Genesys is unavailable; retry the same transaction later",
                );
                r.body["idempotency_key"] = json!(key);
                r.retry_after = Some(retry_after);
                r
            }
        }
    }
}

impl Ingest {
    /// Delivers to a Genesys target (a data table row, a contact note, participant attributes).
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        route: &Route,
        event: &event::BusinessEvent,
        source: &str,
        key: &str,
        issuer: &str,
        subject: &str,
        deadline: Deadline,
    ) -> Reply {
        let Some(targets) = &self.targets else {
            return Reply::error(500, "misconfigured", "no Genesys targets are configured");
        };
        let target = route.target.name();
        let tx = &event.transaction_id;
        match targets.deliver(route, event, source, key, deadline).await {
            Ok(done) => {
                info!(issuer = %issuer, subject = %subject, transaction_id = %tx, idempotency_key = %key,
                      target, outcome = done.name(), "event delivered");
                let status = match done {
                    Delivered::Duplicate => "duplicate",
                    _ => "delivered",
                };
                Reply::new(
                    202,
                    json!({"status": status, "target": target, "outcome": done.name(), "idempotency_key": key}),
                )
            }
            Err(DeliverError::Invalid(fields)) => {
                info!(issuer = %issuer, transaction_id = %tx, target, fields = fields.len(), "event not deliverable as sent");
                Reply::new(400, json!({"error": "invalid_body", "fields": fields}))
            }
            Err(DeliverError::Conflict) => Reply::error(
                409,
                "idempotency_conflict",
                "this transaction_id was delivered before with another payload",
            ),
            Err(DeliverError::Unprocessable { code, message }) => {
                warn!(issuer = %issuer, transaction_id = %tx, target, reason = code, "event has nothing to land on in Genesys");
                Reply::error(422, code, message)
            }
            Err(DeliverError::Refused(reason)) => {
                error!(issuer = %issuer, transaction_id = %tx, target, reason = %reason, "Genesys refused the event");
                Reply::error(502, "upstream_rejected", reason)
            }
            Err(DeliverError::Unavailable {
                retry_after,
                reason,
            }) => {
                warn!(issuer = %issuer, transaction_id = %tx, idempotency_key = %key, target, reason = %reason,
                      "event not delivered in time");
                let mut r = Reply::error(
                    503,
                    "upstream_unavailable",
                    "Genesys is unavailable; retry the same transaction later",
                );
                r.body["idempotency_key"] = json!(key);
                r.retry_after = Some(retry_after);
                r
            }
        }
    }
}

pub async fn handle_lambda(
    ingest: &Ingest,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    let reply = ingest
        .handle(request.headers(), request.body().as_ref())
        .await;
    reply.to_lambda(None)
}

/// Where the static JWT verification keys come from (`JWT_KEYS_SECRET_ID`, `JWT_KEYS_FILE`, `JWT_KEYS_JSON`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysFrom {
    None,
    Secret(String),
    File(String),
    Json(String),
}

/// Where the JWKS comes from (`JWT_JWKS_URL`, `JWT_JWKS_SECRET_ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksFrom {
    Url(String),
    Secret(String),
}

/// The JWKS: where it comes from, whom its keys may sign for, when it is fetched again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    pub from: JwksFrom,
    /// `JWT_JWKS_ISSUER` (else the one `JWT_ISSUERS`), `JWT_JWKS_SUBJECTS`.
    pub binding: KeyBinding,
    pub timing: JwksTiming,
}

/// legacy-ingest's configuration, read without I/O.
#[derive(Debug, Clone)]
pub struct Config {
    pub ingest: IngestConfig,
    pub jwt: JwtPolicy,
    pub keys: KeysFrom,
    pub jwks: Option<JwksConfig>,
    pub genesys: TokenSourceSettings,
    pub genesys_api_url: String,
    /// Where each event type goes (`INGEST_TARGETS`, else `INGEST_TARGET` for all).
    pub routes: Vec<Route>,
    /// Transaction claims and row locks (every target but `custom-endpoint`).
    pub idempotency_table: Option<String>,
    /// `INGEST_WRITE_SETTLE_SECONDS`: the hold after a write that may have been applied without an answer.
    pub write_settle: Duration,
    pub retry: Retrier,
}

/// Where events are published unless `GENESYS_INGEST_PATH` says otherwise.
pub const DEFAULT_INGEST_PATH: &str = "/api/v2/eventbridge/events";

impl Config {
    /// Reads the configuration from the process environment (see README). No I/O.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        let jwt = JwtPolicy {
            issuers: env.list_or("JWT_ISSUERS", &[]),
            audiences: env.list_or("JWT_AUDIENCES", &[]),
            leeway: env.secs_or("JWT_LEEWAY_SECONDS", 60)?,
            max_age: Some(env.secs_or("JWT_MAX_AGE_SECONDS", 900)?).filter(|d| !d.is_zero()),
            max_lifetime: env.secs_or("JWT_MAX_LIFETIME_SECONDS", 3600)?,
            algorithms: auth::parse_algorithms(&env.list_or("JWT_ALGORITHMS", &["ES256", "RS256"]))
                .map_err(|reason| ConfigError::Invalid {
                    name: "JWT_ALGORITHMS",
                    reason,
                })?,
        };
        if jwt.issuers.is_empty() {
            return Err(ConfigError::Missing("JWT_ISSUERS"));
        }
        if jwt.audiences.is_empty() {
            return Err(ConfigError::Missing("JWT_AUDIENCES"));
        }
        let keys = match (
            env.optional("JWT_KEYS_SECRET_ID"),
            env.optional("JWT_KEYS_FILE"),
            env.optional("JWT_KEYS_JSON"),
        ) {
            (Some(id), _, _) => KeysFrom::Secret(id),
            (None, Some(path), _) => KeysFrom::File(path),
            (None, None, Some(json)) => KeysFrom::Json(json),
            (None, None, None) => KeysFrom::None,
        };
        let jwks_from = match (
            env.optional("JWT_JWKS_URL"),
            env.optional("JWT_JWKS_SECRET_ID"),
        ) {
            (Some(url), _) => Some(JwksFrom::Url(jwks_url(url)?)),
            (None, Some(id)) => Some(JwksFrom::Secret(id)),
            (None, None) => None,
        };
        let d = JwksTiming::default();
        let timing = JwksTiming {
            refresh: env.secs_or("JWT_JWKS_REFRESH_SECONDS", d.refresh.as_secs())?,
            min_refresh: env.secs_or("JWT_JWKS_MIN_REFRESH_SECONDS", d.min_refresh.as_secs())?,
            failure_backoff: env.secs_or(
                "JWT_JWKS_FAILURE_BACKOFF_SECONDS",
                d.failure_backoff.as_secs(),
            )?,
        };
        let jwks = jwks_from
            .map(|from| {
                Ok::<_, ConfigError>(JwksConfig {
                    from,
                    binding: jwks_binding(env, &jwt.issuers)?,
                    timing,
                })
            })
            .transpose()?;
        if keys == KeysFrom::None && jwks.is_none() {
            return Err(ConfigError::Missing(
                "JWT_KEYS_SECRET_ID, JWT_KEYS_FILE, JWT_KEYS_JSON, JWT_JWKS_URL or JWT_JWKS_SECRET_ID",
            ));
        }
        let genesys_api_url = env
            .optional("GENESYS_API_URL")
            .unwrap_or_else(|| "https://api.mypurecloud.com".into());
        shared::http_client::check_url("GENESYS_API_URL", &genesys_api_url)?;
        let source_name = env.optional("LEGACY_SOURCE_NAME");
        if source_name
            .as_deref()
            .is_some_and(|s| !event::valid_source(s))
        {
            return Err(ConfigError::Invalid {
                name: "LEGACY_SOURCE_NAME",
                reason: "must be lowercase a-z 0-9 _ -".into(),
            });
        }
        let routes = match env.optional("INGEST_TARGETS") {
            Some(text) => targets::parse_routes(&text)?,
            None => {
                // The data table by default; a configured custom ingestion path keeps its old meaning.
                let default = match env.optional("GENESYS_INGEST_PATH") {
                    Some(_) => "custom-endpoint",
                    None => "datatable",
                };
                let target = env
                    .optional("INGEST_TARGET")
                    .unwrap_or_else(|| default.to_string());
                vec![targets::single_route(&target, env)?]
            }
        };
        let d = IngestConfig::default();
        let retry = RetryPolicy {
            max_attempts: env
                .parse_or(
                    renamed("INGEST_RETRY_MAX_ATTEMPTS", "RETRY_MAX_ATTEMPTS"),
                    5u32,
                )?
                .max(1),
            base_delay: env.millis_or(renamed("INGEST_RETRY_BASE_MS", "RETRY_BASE_MS"), 200)?,
            max_delay: env.millis_or(renamed("INGEST_RETRY_MAX_MS", "RETRY_MAX_MS"), 2000)?,
            max_retry_after: env.secs_or(
                renamed("INGEST_RETRY_AFTER_MAX_SECONDS", "RETRY_AFTER_MAX_SECONDS"),
                5,
            )?,
        };
        Ok(Self {
            ingest: IngestConfig {
                max_body_bytes: env.parse_or(
                    renamed("INGEST_MAX_BODY_BYTES", "MAX_BODY_BYTES"),
                    d.max_body_bytes,
                )?,
                rules: EventRules {
                    allowed_event_types: env.list_or(
                        renamed("INGEST_ALLOWED_EVENT_TYPES", "ALLOWED_EVENT_TYPES"),
                        &["*"],
                    ),
                },
                source_name,
                source_version: env
                    .optional("LEGACY_SOURCE_VERSION")
                    .unwrap_or(d.source_version),
                deadline: publish_deadline(env, d.deadline)?,
            },
            jwt,
            keys,
            jwks,
            genesys: TokenSourceSettings::from_env(env, Provider::Genesys)?,
            genesys_api_url,
            idempotency_table: match routes
                .iter()
                .any(|r| !matches!(r.target, Target::CustomEndpoint { .. }))
            {
                true => Some(env.required("IDEMPOTENCY_TABLE")?),
                false => env.optional("IDEMPOTENCY_TABLE"),
            },
            routes,
            write_settle: env.secs_or(
                "INGEST_WRITE_SETTLE_SECONDS",
                targets::WRITE_SETTLE.as_secs(),
            )?,
            retry: publish_retrier(retry),
        })
    }
}

/// `PUBLISH_DEADLINE_MS`: at most 10 s, inside the function's 12 s timeout (template.yaml) with time to
/// record the outcome and answer.
fn publish_deadline(env: &Env, default: Duration) -> Result<Duration, ConfigError> {
    let d = env.millis_or("PUBLISH_DEADLINE_MS", default.as_millis() as u64)?;
    if !(Duration::from_millis(500)..=Duration::from_secs(10)).contains(&d) {
        return Err(ConfigError::Invalid {
            name: "PUBLISH_DEADLINE_MS",
            reason: "must be between 500 and 10000".into(),
        });
    }
    Ok(d)
}

/// `JWT_JWKS_URL` must be https (plain http only on loopback, for local runs and tests).
fn jwks_url(url: String) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "JWT_JWKS_URL",
        reason: reason.into(),
    };
    let parsed = reqwest::Url::parse(&url).map_err(|_| invalid("not a URL"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(invalid("must be an https:// URL")),
    }
}

const JWKS_ISSUER_REQUIRED: &str =
    "required when JWT_ISSUERS lists more than one issuer: the issuer whose tokens the JWKS keys sign";

/// Whom JWKS keys may sign for: `JWT_JWKS_ISSUER` (one of `JWT_ISSUERS`), required unless exactly one issuer
/// is configured; `JWT_JWKS_SUBJECTS` optionally restricts `sub`.
fn jwks_binding(env: &Env, issuers: &[String]) -> Result<KeyBinding, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "JWT_JWKS_ISSUER",
        reason: reason.into(),
    };
    let issuer = match (env.optional("JWT_JWKS_ISSUER"), issuers) {
        (Some(i), _) if issuers.contains(&i) => i,
        (Some(_), _) => return Err(invalid("must be one of JWT_ISSUERS")),
        (None, [only]) => only.clone(),
        (None, _) => return Err(invalid(JWKS_ISSUER_REQUIRED)),
    };
    let subjects = env.list_or("JWT_JWKS_SUBJECTS", &[]);
    Ok(KeyBinding {
        issuers: vec![issuer],
        subjects: (!subjects.is_empty()).then_some(subjects),
    })
}

/// Publishing: each attempt within the client's request timeout, nothing started without 200 ms for it.
pub fn publish_retrier(policy: RetryPolicy) -> Retrier {
    Retrier {
        policy,
        reserve: Duration::from_millis(50),
        attempt_timeout: INGEST_TIMEOUTS.request,
        min_attempt: Duration::from_millis(200),
    }
}

impl Default for IngestConfig {
    /// The shipped defaults, every event type allowed.
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024,
            rules: EventRules {
                allowed_event_types: vec!["*".into()],
            },
            source_name: None,
            source_version: "1".into(),
            deadline: Duration::from_millis(8000),
        }
    }
}

/// legacy-ingest at cold start: verification keys read (secret or file), the JWKS fetched once, the Genesys
/// token source and publisher built.
pub async fn build(config: Config, aws: &aws_config::SdkConfig) -> Result<Ingest, StartupError> {
    let secrets = aws_sdk_secretsmanager::Client::new(aws);
    let http = http_client()?;
    let key_set = match &config.keys {
        KeysFrom::None => None,
        KeysFrom::Secret(id) => Some(shared::aws::read_secret(&secrets, id).await?),
        KeysFrom::File(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| StartupError::invalid("JWT_KEYS_FILE", format!("{path}: {e}")))?,
        ),
        KeysFrom::Json(json) => Some(json.clone()),
    };
    let jwks = match config.jwks {
        None => None,
        Some(c) => {
            let source = match c.from {
                JwksFrom::Url(url) => JwksSource::Url {
                    http: jwks_http_client()?,
                    url,
                },
                JwksFrom::Secret(id) => JwksSource::Secret {
                    client: secrets.clone(),
                    id,
                },
            };
            Some(Jwks::new(source, c.binding, c.timing))
        }
    };
    let auth = authenticator(config.jwt, key_set.as_deref(), jwks).await?;
    let tokens = Arc::new(config.genesys.build(&secrets, "legacy-ingest").await?);
    let publishers: HashMap<String, Publisher> = config
        .routes
        .iter()
        .filter_map(|r| match &r.target {
            Target::CustomEndpoint { path } => Some(path.clone()),
            _ => None,
        })
        .map(|path| {
            let p = Publisher::new(
                http.clone(),
                &config.genesys_api_url,
                &path,
                tokens.clone(),
                config.retry,
            );
            (path, p)
        })
        .collect();
    let Some(table) = config.idempotency_table.clone() else {
        let routes = config.routes.clone();
        let targets = Targets::new(
            routes,
            GenesysApi::new(http, &config.genesys_api_url, tokens),
            None,
            config.retry,
        );
        return Ok(Ingest::with_targets(
            config.ingest,
            auth,
            targets,
            publishers,
        ));
    };
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let stores = targets::Stores {
        claims: IdempotencyStore::new(dynamodb.clone(), table.clone(), CLAIMS_TTL),
        locks: IdempotencyStore::new(dynamodb, table, Duration::from_secs(3600)),
    };
    // Each request has the client's timeout; an attempt (reads and a write) has the deadline.
    let retrier = Retrier {
        attempt_timeout: Duration::MAX,
        ..config.retry
    };
    let targets = Targets::new(
        config.routes.clone(),
        GenesysApi::new(http, &config.genesys_api_url, tokens),
        Some(stores),
        retrier,
    )
    .with_settle(config.write_settle);
    // A missing data table or column is a configuration error: refuse to start, naming the setting.
    targets
        .check_tables()
        .await
        .map_err(|e| StartupError::invalid("GENESYS_DATATABLE_ID / INGEST_TARGETS", e))?;
    Ok(Ingest::with_targets(
        config.ingest,
        auth,
        targets,
        publishers,
    ))
}

/// The authenticator from the static key-set text (each key bound to its issuers, see
/// [`auth::keys_from_pem_set`]) and the JWKS, fetched once now. A failed JWKS fetch is not fatal: static keys
/// may suffice, and the next token needing a JWKS key retries after the failure backoff.
pub async fn authenticator(
    policy: JwtPolicy,
    key_set: Option<&str>,
    jwks: Option<Jwks>,
) -> Result<Authenticator, StartupError> {
    let keys = key_set
        .map(|s| auth::keys_from_pem_set(s, &policy.issuers))
        .transpose()
        .map_err(|e| StartupError::invalid("JWT verification keys", e))?
        .unwrap_or_default();
    if let Some(j) = &jwks {
        if let Err(e) = j.refresh().await {
            warn!(error = %e, transient = e.is_transient(), "initial JWKS fetch failed");
        }
    }
    Ok(Authenticator::new(policy, keys, jwks))
}

/// The HTTP client for Genesys: rustls, pooled, with timeouts.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    shared::http_client::client("legacy-ingest", INGEST_TIMEOUTS)
}

/// The HTTP client for the JWKS: follows no redirects, and gives up within [`auth::JWKS_FETCH_TIMEOUT`].
pub fn jwks_http_client() -> Result<reqwest::Client, reqwest::Error> {
    shared::http_client::no_redirects_client(
        "legacy-ingest",
        shared::http_client::Timeouts::new(Duration::from_secs(2), auth::JWKS_FETCH_TIMEOUT),
    )
}

/// How long a delivered transaction is remembered: a retried transaction within it is a duplicate.
const CLAIMS_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const INGEST_TIMEOUTS: shared::http_client::Timeouts =
    shared::http_client::Timeouts::new(Duration::from_secs(2), Duration::from_secs(5));

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let base = [
            ("JWT_ISSUERS", "https://billing.legacy.example"),
            ("JWT_AUDIENCES", "genesys-legacy-ingest"),
            ("JWT_KEYS_FILE", "/opt/keys.json"),
            ("GENESYS_CREDENTIALS_SECRET_ID", "genesys-client"),
            ("GENESYS_DATATABLE_ID", "legacy-events"),
            ("IDEMPOTENCY_TABLE", "idem"),
        ];
        Env::from_pairs(base.iter().chain(extra).copied())
    }

    #[test]
    fn reads_without_touching_files_or_secrets() {
        let c = Config::from_vars(&env(&[])).unwrap();
        assert_eq!(c.keys, KeysFrom::File("/opt/keys.json".into()));
        assert_eq!(c.jwks, None);
        // The data table is the default target; a custom ingestion path keeps its endpoint.
        assert!(
            matches!(&c.routes[0].target, Target::DataTable(t) if t.datatable_id == "legacy-events")
        );
        assert_eq!(c.idempotency_table.as_deref(), Some("idem"));
        let c = Config::from_vars(&env(&[("GENESYS_INGEST_PATH", "/custom/events")])).unwrap();
        assert_eq!(
            c.routes[0].target,
            Target::CustomEndpoint {
                path: "/custom/events".into()
            }
        );
        for (name, value) in [
            ("INGEST_TARGET", "fax"),
            (
                "INGEST_TARGETS",
                "[{\"event_types\": [\"*\"], \"target\": \"fax\"}]",
            ),
            ("DATATABLE_COLUMNS", "[1]"),
        ] {
            let err = Config::from_vars(&env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let no_table = Env::from_pairs([
            ("JWT_ISSUERS", "https://billing.legacy.example"),
            ("JWT_AUDIENCES", "a"),
            ("JWT_KEYS_FILE", "/k"),
            ("GENESYS_CREDENTIALS_SECRET_ID", "g"),
        ]);
        let err = Config::from_vars(&no_table).unwrap_err();
        assert!(err.to_string().contains("GENESYS_DATATABLE_ID"), "{err}");
        assert_eq!(c.retry.policy.max_attempts, 5);
        let c = Config::from_vars(&env(&[
            ("JWT_JWKS_URL", "https://idp/jwks"),
            ("INGEST_RETRY_MAX_ATTEMPTS", "2"),
        ]))
        .unwrap();
        let jwks = c.jwks.unwrap();
        assert_eq!(jwks.from, JwksFrom::Url("https://idp/jwks".into()));
        assert_eq!(jwks.timing, JwksTiming::default());
        assert_eq!(c.retry.policy.max_attempts, 2);
    }

    #[test]
    fn tokens_are_short_lived_by_default() {
        let c = Config::from_vars(&env(&[])).unwrap();
        assert_eq!(c.jwt.max_age, Some(Duration::from_secs(900)));
        assert_eq!(c.jwt.max_lifetime, Duration::from_secs(3600));
        let c = Config::from_vars(&env(&[("JWT_MAX_AGE_SECONDS", "0")])).unwrap();
        assert_eq!(c.jwt.max_age, None, "0 turns the iat check off");
        let timing = JwksTiming::default();
        assert!(timing.refresh <= Duration::from_secs(900));
        assert!(timing.failure_backoff < timing.min_refresh);
    }

    #[test]
    fn jwks_keys_are_bound_to_one_issuer() {
        let one = Config::from_vars(&env(&[("JWT_JWKS_URL", "https://idp/jwks")])).unwrap();
        assert_eq!(
            one.jwks.unwrap().binding,
            KeyBinding {
                issuers: vec!["https://billing.legacy.example".into()],
                subjects: None
            }
        );
        let two = [
            (
                "JWT_ISSUERS",
                "https://billing.example,https://orders.example",
            ),
            ("JWT_JWKS_URL", "https://idp/jwks"),
        ];
        let err = Config::from_vars(&env(&two)).unwrap_err();
        assert!(err.to_string().contains("JWT_JWKS_ISSUER"), "{err}");
        let c = Config::from_vars(&env(&[
            two[0],
            two[1],
            ("JWT_JWKS_ISSUER", "https://orders.example"),
            ("JWT_JWKS_SUBJECTS", "orders, orders-batch"),
        ]))
        .unwrap();
        assert_eq!(
            c.jwks.unwrap().binding,
            KeyBinding {
                issuers: vec!["https://orders.example".into()],
                subjects: Some(vec!["orders".into(), "orders-batch".into()])
            }
        );
        let err = Config::from_vars(&env(&[
            two[0],
            two[1],
            ("JWT_JWKS_ISSUER", "https://evil.example"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("JWT_JWKS_ISSUER"), "{err}");
    }

    #[test]
    fn the_jwks_url_must_be_https_except_on_loopback() {
        for ok in [
            "https://idp.example/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://localhost/jwks",
            "http://[::1]/jwks",
        ] {
            assert!(
                Config::from_vars(&env(&[("JWT_JWKS_URL", ok)])).is_ok(),
                "{ok}"
            );
        }
        for bad in ["http://idp.example/jwks", "ftp://idp/jwks", "jwks"] {
            let err = Config::from_vars(&env(&[("JWT_JWKS_URL", bad)])).unwrap_err();
            assert!(err.to_string().contains("JWT_JWKS_URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        for (name, value) in [
            ("JWT_JWKS_MIN_REFRESH_SECONDS", "soon"),
            ("JWT_JWKS_REFRESH_SECONDS", "-1"),
            ("JWT_JWKS_FAILURE_BACKOFF_SECONDS", "5s"),
            ("JWT_MAX_LIFETIME_SECONDS", "1h"),
            ("JWT_ALGORITHMS", "HS256"),
            ("JWT_MAX_AGE_SECONDS", "old"),
            ("LEGACY_SOURCE_NAME", "Billing System"),
            ("PUBLISH_DEADLINE_MS", "8s"),
        ] {
            let err = Config::from_vars(&env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let no_keys = Env::from_pairs([("JWT_ISSUERS", "i"), ("JWT_AUDIENCES", "a")]);
        let err = Config::from_vars(&no_keys).unwrap_err();
        assert!(err.to_string().contains("JWT_JWKS_URL"), "{err}");
        let err = Config::from_vars(&Env::from_pairs([("JWT_AUDIENCES", "a")])).unwrap_err();
        assert!(err.to_string().contains("JWT_ISSUERS"), "{err}");
    }
}
