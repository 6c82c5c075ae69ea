//! The writer's configuration: read from the environment without I/O ([`Config::from_env`]), then built into a
//! [`Writer`] at cold start ([`build`]: secrets, the mapping file, clients).

use std::sync::Arc;
use std::time::Duration;

use shared::config::{renamed, ConfigError, Env};
use shared::keys::KeyConfig;
use shared::retry::RetryPolicy;
use shared::tokens::{
    Provider, Rotating, TokenSourceSettings, DEFAULT_FORCED_REFRESH_INTERVAL,
    FORCED_REFRESH_INTERVAL_VAR,
};
use shared::StartupError;

use crate::servicenow::{
    BasicCredentials, ServiceNowAuth, ServiceNowClient, ServiceNowConfig, ServiceNowError,
};
use crate::Writer;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub dead_letter_queue_url: String,
    pub idempotency_table: String,
    /// How long a completed event key is remembered.
    pub idempotency_ttl: Duration,
    /// How long a conversation's incident is remembered after its last event.
    pub conversation_ttl: Duration,
    /// How long a record waits for another invocation to finish an event of the same conversation.
    pub conversation_lock_wait: Duration,
    pub key: KeyConfig,
    pub max_concurrency: usize,
    pub retry: RetryPolicy,
    /// Time kept back from the invocation deadline for releasing claims and answering.
    pub deadline_reserve: Duration,
    pub default_caller_sys_id: Option<String>,
    /// After a create or update that may have been applied without an answer, nothing is written for the
    /// incident until this long after the request started (ServiceNow may still commit it); the record goes
    /// back to the queue and is reconciled then. Zero: reconcile at once, in the same invocation.
    pub settle: Duration,
    /// The events queue, for giving records back with a delay (`ChangeMessageVisibility`); `None`: records
    /// reappear after the queue's visibility timeout.
    pub events_queue_url: Option<String>,
    /// The queue's `maxReceiveCount`: a record failing transiently on its last receive is dead-lettered here,
    /// with its reason, instead of being moved by SQS without one. `None`: left to SQS.
    pub max_receive_count: Option<u32>,
    /// Event types (globs) the writer applies; `None`: those the mapping's profiles handle. Messages that
    /// bypass the receiver (EventBridge) are checked here.
    pub allowed_event_types: Option<Vec<String>>,
    /// How many containers share ServiceNow's rate limit (the event source's maximum concurrency).
    pub rate_limit_containers: u32,
    /// Create incidents through this Import Set staging table (`SERVICENOW_IMPORT_SET_TABLE`).
    pub import_set_table: Option<String>,
    /// Where the callbacks a mapping profile asks for are requested (callback-events' queue,
    /// `CALLBACK_REQUESTS_QUEUE_URL`).
    pub callback_requests_queue_url: Option<String>,
}

impl Default for WriterConfig {
    /// The shipped defaults, with no queue or table (tests and the local runner set them).
    fn default() -> Self {
        Self {
            dead_letter_queue_url: String::new(),
            idempotency_table: String::new(),
            // As long as the dead-letter queue keeps a message: a replay must still find its key.
            idempotency_ttl: Duration::from_secs(14 * 24 * 3600),
            conversation_ttl: Duration::from_secs(14 * 24 * 3600),
            conversation_lock_wait: Duration::from_secs(5),
            key: KeyConfig::default(),
            max_concurrency: 5,
            retry: RetryPolicy::default(),
            deadline_reserve: Duration::from_millis(1500),
            default_caller_sys_id: None,
            settle: Duration::from_secs(90),
            events_queue_url: None,
            max_receive_count: None,
            allowed_event_types: None,
            rate_limit_containers: 1,
            import_set_table: None,
            callback_requests_queue_url: None,
        }
    }
}

impl WriterConfig {
    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let hours =
            |name: &'static str, default: Duration| env.hours_or(name, default.as_secs() / 3600);
        Ok(Self {
            dead_letter_queue_url: env.required("DEAD_LETTER_QUEUE_URL")?,
            idempotency_table: env.required("IDEMPOTENCY_TABLE")?,
            idempotency_ttl: hours("IDEMPOTENCY_TTL_HOURS", d.idempotency_ttl)?,
            conversation_ttl: hours("CONVERSATION_TTL_HOURS", d.conversation_ttl)?,
            conversation_lock_wait: env.millis_or(
                "WRITER_CONVERSATION_LOCK_WAIT_MS",
                d.conversation_lock_wait.as_millis() as u64,
            )?,
            key: KeyConfig {
                pointers: env.list_or("IDEMPOTENCY_KEY_POINTERS", &[]),
                prefer_event_id: env.bool_or("IDEMPOTENCY_USE_EVENT_ID", true)?,
            },
            max_concurrency: env
                .parse_or(
                    renamed("WRITER_MAX_CONCURRENCY", "MAX_CONCURRENCY"),
                    d.max_concurrency,
                )?
                .max(1),
            retry: RetryPolicy {
                max_attempts: env
                    .parse_or(
                        renamed("WRITER_RETRY_MAX_ATTEMPTS", "RETRY_MAX_ATTEMPTS"),
                        d.retry.max_attempts,
                    )?
                    .max(1),
                base_delay: env.millis_or(
                    renamed("WRITER_RETRY_BASE_MS", "RETRY_BASE_MS"),
                    d.retry.base_delay.as_millis() as u64,
                )?,
                max_delay: env.millis_or(
                    renamed("WRITER_RETRY_MAX_MS", "RETRY_MAX_MS"),
                    d.retry.max_delay.as_millis() as u64,
                )?,
                max_retry_after: env.secs_or(
                    renamed("WRITER_RETRY_AFTER_MAX_SECONDS", "RETRY_AFTER_MAX_SECONDS"),
                    d.retry.max_retry_after.as_secs(),
                )?,
            },
            deadline_reserve: env.millis_or(
                renamed("WRITER_DEADLINE_RESERVE_MS", "DEADLINE_RESERVE_MS"),
                d.deadline_reserve.as_millis() as u64,
            )?,
            default_caller_sys_id: env.optional("SERVICENOW_DEFAULT_CALLER_SYS_ID"),
            settle: env.secs_or("WRITER_SETTLE_SECONDS", d.settle.as_secs())?,
            events_queue_url: env.optional("EVENTS_QUEUE_URL"),
            max_receive_count: env
                .parse::<u32>("WRITER_MAX_RECEIVE_COUNT")?
                .filter(|n| *n > 0),
            allowed_event_types: env
                .optional("WRITER_ALLOWED_EVENT_TYPES")
                .map(|_| env.list_or("WRITER_ALLOWED_EVENT_TYPES", &[])),
            rate_limit_containers: env
                .parse_or("WRITER_RATE_LIMIT_CONTAINERS", d.rate_limit_containers)?
                .max(1),
            import_set_table: env.optional("SERVICENOW_IMPORT_SET_TABLE"),
            callback_requests_queue_url: env.optional("CALLBACK_REQUESTS_QUEUE_URL"),
        })
    }
}

/// How the writer signs in to ServiceNow, as configured.
#[derive(Debug, Clone)]
pub enum AuthSettings {
    /// Basic: the JSON secret `{"username","password"}` when its id is set (re-read on a 401, at most once
    /// per `reload_interval`), else the given pair (local runs).
    Basic {
        credentials_secret_id: Option<String>,
        given: Option<(String, Redacted)>,
        reload_interval: Duration,
    },
    /// Bearer tokens kept by the token-refresher, with the OAuth client as fallback.
    OAuth(TokenSourceSettings),
}

/// A secret value that never shows in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// ServiceNow settings, read without I/O.
#[derive(Debug, Clone)]
pub struct ServiceNowSettings {
    pub instance_url: String,
    pub auth: AuthSettings,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl ServiceNowSettings {
    /// `SERVICENOW_AUTH=basic` (default): credentials from `SERVICENOW_CREDENTIALS_SECRET_ID` (JSON
    /// `{"username","password"}`), else `SERVICENOW_USERNAME` / `SERVICENOW_PASSWORD`. `SERVICENOW_AUTH=oauth`:
    /// bearer tokens from `SERVICENOW_TOKEN_SECRET_ID` (kept by the token-refresher), with the OAuth client of
    /// `SERVICENOW_OAUTH_CREDENTIALS_SECRET_ID` as fallback.
    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        let auth = match env.choice("SERVICENOW_AUTH", &["basic", "oauth"])? {
            "basic" => {
                let credentials_secret_id = env.optional("SERVICENOW_CREDENTIALS_SECRET_ID");
                let given = match &credentials_secret_id {
                    Some(_) => None,
                    None => Some((
                        env.required("SERVICENOW_USERNAME")?,
                        Redacted(env.required("SERVICENOW_PASSWORD")?),
                    )),
                };
                AuthSettings::Basic {
                    credentials_secret_id,
                    given,
                    reload_interval: env.secs_or(
                        FORCED_REFRESH_INTERVAL_VAR,
                        DEFAULT_FORCED_REFRESH_INTERVAL.as_secs(),
                    )?,
                }
            }
            _ => AuthSettings::OAuth(TokenSourceSettings::from_env(env, Provider::ServiceNow)?),
        };
        let instance_url = env.required("SERVICENOW_INSTANCE_URL")?;
        shared::http_client::check_url("SERVICENOW_INSTANCE_URL", &instance_url)?;
        Ok(Self {
            instance_url,
            auth,
            connect_timeout: env.millis_or("SERVICENOW_CONNECT_TIMEOUT_MS", 3000)?,
            request_timeout: env.millis_or("SERVICENOW_TIMEOUT_MS", 10_000)?,
        })
    }

    /// The client, with its credentials read from their secret.
    pub async fn build(
        &self,
        secrets: &aws_sdk_secretsmanager::Client,
    ) -> Result<ServiceNowClient, StartupError> {
        let auth = match &self.auth {
            AuthSettings::Basic {
                credentials_secret_id: Some(id),
                reload_interval,
                ..
            } => {
                let (username, password) =
                    shared::aws::read_pair(secrets, id, ("username", "password")).await?;
                let parse = std::sync::Arc::new(|raw: &str| {
                    let v: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
                    match (v["username"].as_str(), v["password"].as_str()) {
                        (Some(u), Some(p)) => Ok(BasicCredentials {
                            username: u.into(),
                            password: p.into(),
                        }),
                        _ => Err("needs username and password".to_string()),
                    }
                });
                ServiceNowAuth::RotatingBasic(Arc::new(Rotating::from_secret(
                    BasicCredentials { username, password },
                    secrets.clone(),
                    id.clone(),
                    parse,
                    *reload_interval,
                )))
            }
            AuthSettings::Basic { given, .. } => {
                let (username, Redacted(password)) = given.clone().unwrap_or_default();
                ServiceNowAuth::Basic { username, password }
            }
            AuthSettings::OAuth(tokens) => {
                ServiceNowAuth::OAuth(Arc::new(tokens.build(secrets, "servicenow-writer").await?))
            }
        };
        Ok(ServiceNowClient::new(&ServiceNowConfig {
            instance_url: self.instance_url.clone(),
            auth,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
        })?)
    }
}

/// Everything the writer is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub writer: WriterConfig,
    pub servicenow: ServiceNowSettings,
    /// `MAPPING_FILE`: a mapping file replacing the built-in one.
    pub mapping_file: Option<String>,
}

impl Config {
    /// Reads the configuration from the process environment (see README). No I/O.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            writer: WriterConfig::from_vars(env)?,
            servicenow: ServiceNowSettings::from_vars(env)?,
            mapping_file: shared::mapping::mapping_file(env),
        })
    }
}

/// The writer at cold start: the mapping loaded and checked, ServiceNow credentials read, clients built.
pub async fn build(config: Config, aws: &aws_config::SdkConfig) -> Result<Writer, StartupError> {
    let mapping = shared::mapping::load_mapping(config.mapping_file.as_deref())?;
    if let Some(p) = mapping.profiles().iter().find(|p| p.asks_for_callbacks()) {
        if config.writer.callback_requests_queue_url.is_none() {
            return Err(ConfigError::Invalid {
                name: "CALLBACK_REQUESTS_QUEUE_URL",
                reason: format!(
                    "mapping profile {} asks for callbacks: set it to callback-events' queue",
                    p.name()
                ),
            }
            .into());
        }
    }
    let secrets = aws_sdk_secretsmanager::Client::new(aws);
    let servicenow = config.servicenow.build(&secrets).await?;
    // Not fatal (ServiceNow may just be down now), but an untrustworthy lookup would dead-letter every
    // record that needs reconciling: say so once, at start, with what to fix.
    // Bounded: a cold start has 10 s in all.
    let probe = tokio::time::timeout(std::time::Duration::from_secs(3), servicenow.probe_lookup());
    match probe.await.unwrap_or(Err(ServiceNowError::OutOfTime)) {
        Ok(()) => {}
        Err(e @ crate::servicenow::ServiceNowError::Untrustworthy(_)) => {
            tracing::error!(error = %e,
            "ServiceNow lookup by correlation_id cannot be trusted: the integration user needs read access to \
             incident and its correlation_id field (Table API v2); records that must be reconciled are kept \
             queued, then dead-lettered with reason servicenow_lookup_untrustworthy")
        }
        Err(e) => tracing::warn!(error = %e, "ServiceNow lookup probe could not run at start"),
    }
    Ok(Writer::new(
        config.writer,
        mapping,
        servicenow,
        aws_sdk_dynamodb::Client::new(aws),
        aws_sdk_sqs::Client::new(aws),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let base = [
            ("DEAD_LETTER_QUEUE_URL", "https://sqs/dlq"),
            ("IDEMPOTENCY_TABLE", "idem"),
            ("SERVICENOW_INSTANCE_URL", "https://example.service-now.com"),
            ("SERVICENOW_CREDENTIALS_SECRET_ID", "sn-basic"),
        ];
        Env::from_pairs(base.iter().chain(extra).copied())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_vars(&env(&[])).unwrap();
        assert_eq!(c.writer.retry, RetryPolicy::default());
        assert_eq!(
            c.writer.conversation_ttl,
            Duration::from_secs(14 * 24 * 3600)
        );
        assert!(matches!(
            c.servicenow.auth,
            AuthSettings::Basic { credentials_secret_id: Some(ref id), given: None, reload_interval }
                if id == "sn-basic" && reload_interval == Duration::from_secs(60)
        ));
        let c = Config::from_vars(&env(&[
            ("WRITER_MAX_CONCURRENCY", "0"),
            ("RETRY_BASE_MS", "50"),
            ("CONVERSATION_TTL_HOURS", "24"),
            ("MAPPING_FILE", "/opt/mapping.json"),
        ]))
        .unwrap();
        assert_eq!(c.writer.max_concurrency, 1);
        assert_eq!(c.writer.retry.base_delay, Duration::from_millis(50));
        assert_eq!(c.writer.conversation_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.mapping_file.as_deref(), Some("/opt/mapping.json"));
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        for (name, value) in [
            ("SERVICENOW_AUTH", "kerberos"),
            ("WRITER_RETRY_MAX_ATTEMPTS", "many"),
            ("IDEMPOTENCY_USE_EVENT_ID", "perhaps"),
            ("SERVICENOW_TIMEOUT_MS", "-1"),
            ("FORCED_REFRESH_INTERVAL_SECONDS", "soon"),
            ("SERVICENOW_INSTANCE_URL", "http://example.service-now.com"),
        ] {
            let err = Config::from_vars(&env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let missing =
            Config::from_vars(&Env::from_pairs([("IDEMPOTENCY_TABLE", "t")])).unwrap_err();
        assert!(
            missing.to_string().contains("DEAD_LETTER_QUEUE_URL"),
            "{missing}"
        );
        let no_password = Env::from_pairs([
            ("DEAD_LETTER_QUEUE_URL", "q"),
            ("IDEMPOTENCY_TABLE", "t"),
            ("SERVICENOW_INSTANCE_URL", "https://x"),
            ("SERVICENOW_USERNAME", "u"),
        ]);
        let err = Config::from_vars(&no_password).unwrap_err();
        assert!(err.to_string().contains("SERVICENOW_PASSWORD"), "{err}");
    }
}
