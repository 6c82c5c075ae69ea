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

use shared::config::{renamed, ConfigError, Env};
use shared::retry::{Deadline, Retrier, RetryPolicy};
use shared::tokens::{Provider, TokenSourceSettings};
use shared::StartupError;

use auth::{AuthError, Authenticator, Jwks, JwksSource, JwtPolicy};
use event::EventRules;
use genesys::{PublishError, Publisher};

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

/// legacy-ingest's configuration, read without I/O.
#[derive(Debug, Clone)]
pub struct Config {
    pub ingest: IngestConfig,
    pub jwt: JwtPolicy,
    pub keys: KeysFrom,
    pub jwks: Option<JwksFrom>,
    pub jwks_min_refresh: Duration,
    pub genesys: TokenSourceSettings,
    pub genesys_api_url: String,
    pub ingest_path: String,
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
            max_age: env
                .parse::<u64>("JWT_MAX_AGE_SECONDS")?
                .map(Duration::from_secs),
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
        let jwks = match (
            env.optional("JWT_JWKS_URL"),
            env.optional("JWT_JWKS_SECRET_ID"),
        ) {
            (Some(url), _) => {
                shared::http_client::check_url("JWT_JWKS_URL", &url)?;
                Some(JwksFrom::Url(url))
            }
            (None, Some(id)) => Some(JwksFrom::Secret(id)),
            (None, None) => None,
        };
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
                deadline: env.millis_or("PUBLISH_DEADLINE_MS", d.deadline.as_millis() as u64)?,
            },
            jwt,
            keys,
            jwks,
            jwks_min_refresh: env.secs_or("JWT_JWKS_MIN_REFRESH_SECONDS", 300)?,
            genesys: TokenSourceSettings::from_env(env, Provider::Genesys)?,
            genesys_api_url,
            ingest_path: env
                .optional("GENESYS_INGEST_PATH")
                .unwrap_or_else(|| DEFAULT_INGEST_PATH.into()),
            retry: publish_retrier(retry),
        })
    }
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
    let keys = key_set
        .map(|s| auth::keys_from_pem_set(&s))
        .transpose()
        .map_err(|e| StartupError::invalid("JWT verification keys", e))?
        .unwrap_or_default();
    let jwks = config.jwks.map(|from| {
        let source = match from {
            JwksFrom::Url(url) => JwksSource::Url {
                http: http.clone(),
                url,
            },
            JwksFrom::Secret(id) => JwksSource::Secret {
                client: secrets.clone(),
                id,
            },
        };
        Jwks::new(source, config.jwks_min_refresh)
    });
    if let Some(j) = &jwks {
        if let Err(e) = j.refresh().await {
            // Not fatal: static keys may suffice, and an unknown kid triggers a refresh later.
            warn!(error = %e, "initial JWKS fetch failed");
        }
    }
    let tokens = Arc::new(config.genesys.build(&secrets, "legacy-ingest").await?);
    let publisher = Publisher::new(
        http,
        &config.genesys_api_url,
        &config.ingest_path,
        tokens,
        config.retry,
    );
    Ok(Ingest::new(
        config.ingest,
        Authenticator::new(config.jwt, keys, jwks),
        publisher,
    ))
}

/// The HTTP client for Genesys and JWKS: rustls, pooled, with timeouts.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    shared::http_client::client("legacy-ingest", INGEST_TIMEOUTS)
}

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
        ];
        Env::from_pairs(base.iter().chain(extra).copied())
    }

    #[test]
    fn reads_without_touching_files_or_secrets() {
        let c = Config::from_vars(&env(&[])).unwrap();
        assert_eq!(c.keys, KeysFrom::File("/opt/keys.json".into()));
        assert_eq!(c.jwks, None);
        assert_eq!(c.ingest_path, DEFAULT_INGEST_PATH);
        assert_eq!(c.jwks_min_refresh, Duration::from_secs(300));
        assert_eq!(c.retry.policy.max_attempts, 5);
        let c = Config::from_vars(&env(&[
            ("JWT_JWKS_URL", "https://idp/jwks"),
            ("INGEST_RETRY_MAX_ATTEMPTS", "2"),
        ]))
        .unwrap();
        assert_eq!(c.jwks, Some(JwksFrom::Url("https://idp/jwks".into())));
        assert_eq!(c.retry.policy.max_attempts, 2);
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        for (name, value) in [
            ("JWT_JWKS_MIN_REFRESH_SECONDS", "soon"),
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
