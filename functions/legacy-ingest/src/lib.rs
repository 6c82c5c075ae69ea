//! legacy-ingest: `POST /ingest`.
//!
//! Authenticates the legacy system's JWT, validates its business event strictly, maps it to the Genesys
//! event schema and publishes it with a deterministic `Idempotency-Key` (issuer + transaction id), retrying
//! within a deadline well under API Gateway's 29 s. Answers 202 once Genesys accepted it, 502 when Genesys
//! rejected it, 503 + `Retry-After` when it could not be delivered in time (safe to retry: same key).

pub mod auth;
pub mod event;
pub mod genesys;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde_json::json;
use tracing::{error, info, warn};

use shared::config::{self, renamed, ConfigError};

use shared::retry::{Deadline, Retrier, RetryPolicy};
use shared::tokens::{token_source_from_env, Provider};

use auth::{AuthError, Authenticator, Jwks, JwksSource, JwtPolicy};
use event::EventRules;
use genesys::{PublishError, Publisher};

pub use shared::BoxError;

pub use shared::http::Reply;

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
    publisher: Publisher,
}

impl Ingest {
    pub fn new(config: IngestConfig, auth: Authenticator, publisher: Publisher) -> Self {
        Self {
            config,
            auth,
            publisher,
        }
    }

    pub async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
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
        let genesys_event = event::to_genesys(&event, &source, &self.config.source_version);
        let event_type = genesys_event["eventType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let outcome = self
            .publisher
            .publish(&genesys_event, &key, Deadline::after(self.config.deadline))
            .await;
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

pub async fn handle_lambda(
    ingest: &Ingest,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    let reply = ingest
        .handle(request.headers(), request.body().as_ref())
        .await;
    reply.to_lambda(None)
}

/// Builds everything from environment variables (see README). Secrets are read once, here.
pub async fn from_env(
    secrets: &aws_sdk_secretsmanager::Client,
    http: reqwest::Client,
) -> Result<Ingest, BoxError> {
    let policy = JwtPolicy {
        issuers: config::list_or("JWT_ISSUERS", &[]),
        audiences: config::list_or("JWT_AUDIENCES", &[]),
        leeway: Duration::from_secs(config::parse_or("JWT_LEEWAY_SECONDS", 60u64)?),
        max_age: config::optional("JWT_MAX_AGE_SECONDS")
            .map(|v| v.parse::<u64>().map(Duration::from_secs))
            .transpose()
            .map_err(|e| ConfigError::Invalid {
                name: "JWT_MAX_AGE_SECONDS",
                reason: e.to_string(),
            })?,
        algorithms: auth::parse_algorithms(&config::list_or(
            "JWT_ALGORITHMS",
            &["ES256", "RS256"],
        ))?,
    };
    if policy.issuers.is_empty() || policy.audiences.is_empty() {
        return Err("JWT_ISSUERS and JWT_AUDIENCES are required".into());
    }
    let key_set = match (
        config::optional("JWT_KEYS_SECRET_ID"),
        config::optional("JWT_KEYS_FILE"),
        config::optional("JWT_KEYS_JSON"),
    ) {
        (Some(id), _, _) => Some(shared::aws::read_secret(secrets, &id).await?),
        (None, Some(path), _) => {
            Some(std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?)
        }
        (None, None, json) => json,
    };
    let keys = key_set
        .map(|s| auth::keys_from_pem_set(&s))
        .transpose()?
        .unwrap_or_default();
    let jwks_source = match (
        config::optional("JWT_JWKS_URL"),
        config::optional("JWT_JWKS_SECRET_ID"),
    ) {
        (Some(url), _) => Some(JwksSource::Url {
            http: http.clone(),
            url,
        }),
        (None, Some(id)) => Some(JwksSource::Secret {
            client: secrets.clone(),
            id,
        }),
        _ => None,
    };
    let min_refresh =
        Duration::from_secs(config::parse_or("JWT_JWKS_MIN_REFRESH_SECONDS", 300u64)?);
    let jwks = jwks_source.map(|s| Jwks::new(s, min_refresh));
    if let Some(j) = &jwks {
        if let Err(e) = j.refresh().await {
            // Not fatal: static keys may suffice, and an unknown kid triggers a refresh later.
            warn!(error = %e, "initial JWKS fetch failed");
        }
    }
    if keys.is_empty() && jwks.is_none() {
        return Err(
            "configure JWT_KEYS_SECRET_ID, JWT_KEYS_FILE, JWT_KEYS_JSON or a JWKS source".into(),
        );
    }

    let tokens = Arc::new(token_source_from_env(secrets, http.clone(), Provider::Genesys).await?);
    let publisher = Publisher::new(
        http,
        &config::optional("GENESYS_API_URL")
            .unwrap_or_else(|| "https://api.mypurecloud.com".into()),
        &config::optional("GENESYS_INGEST_PATH")
            .unwrap_or_else(|| "/api/v2/eventbridge/events".into()),
        tokens,
        Retrier {
            policy: RetryPolicy {
                max_attempts: config::parse_or(
                    renamed("INGEST_RETRY_MAX_ATTEMPTS", "RETRY_MAX_ATTEMPTS"),
                    5u32,
                )?
                .max(1),
                base_delay: config::millis_or(
                    renamed("INGEST_RETRY_BASE_MS", "RETRY_BASE_MS"),
                    200,
                )?,
                max_delay: config::millis_or(renamed("INGEST_RETRY_MAX_MS", "RETRY_MAX_MS"), 2000)?,
                max_retry_after: Duration::from_secs(config::parse_or(
                    renamed("INGEST_RETRY_AFTER_MAX_SECONDS", "RETRY_AFTER_MAX_SECONDS"),
                    5u64,
                )?),
            },
            reserve: Duration::from_millis(50),
            attempt_timeout: INGEST_TIMEOUTS.request,
            min_attempt: Duration::from_millis(200),
        },
    );
    let source_name = config::optional("LEGACY_SOURCE_NAME");
    if let Some(s) = &source_name {
        if !event::valid_source(s) {
            return Err("LEGACY_SOURCE_NAME must be lowercase a-z 0-9 _ -".into());
        }
    }
    Ok(Ingest::new(
        IngestConfig {
            max_body_bytes: config::parse_or(
                renamed("INGEST_MAX_BODY_BYTES", "MAX_BODY_BYTES"),
                16 * 1024,
            )?,
            rules: EventRules {
                allowed_event_types: config::list_or(
                    renamed("INGEST_ALLOWED_EVENT_TYPES", "ALLOWED_EVENT_TYPES"),
                    &["*"],
                ),
            },
            source_name,
            source_version: config::optional("LEGACY_SOURCE_VERSION").unwrap_or_else(|| "1".into()),
            deadline: config::millis_or("PUBLISH_DEADLINE_MS", 8000)?,
        },
        Authenticator::new(policy, keys, jwks),
        publisher,
    ))
}

/// The HTTP client for Genesys and JWKS: rustls, pooled, with timeouts.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    shared::http_client::client("legacy-ingest", INGEST_TIMEOUTS)
}

const INGEST_TIMEOUTS: shared::http_client::Timeouts =
    shared::http_client::Timeouts::new(Duration::from_secs(2), Duration::from_secs(5));
