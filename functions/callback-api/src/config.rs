//! callback-api's configuration, read without I/O ([`Config::from_env`]), built at cold start ([`build`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use shared::config::{ConfigError, Env};
use shared::genesys::GenesysApi;
use shared::idempotency::IdempotencyStore;
use shared::retry::{Retrier, RetryPolicy};
use shared::tokens::{Provider, TokenSourceSettings};
use shared::StartupError;

use crate::api::CallbackApi;
use crate::booking::{Booking, Queue};
use crate::capacity::SlotCapacity;
use crate::reservations::Reservations;
use crate::schedule::{CalendarSpec, QueueCalendar};

/// One queue of `CALLBACK_QUEUES`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSpec {
    genesys_queue_id: String,
    capacity: u32,
    #[serde(flatten)]
    calendar: CalendarSpec,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub queues: HashMap<String, Queue>,
    /// Reservations, slot counters, booking claims and WebSocket connections (its stream feeds
    /// callback-notifier).
    pub table: String,
    /// Required by callback-api (it signs access tokens); callback-events books without it.
    pub access_secret_id: Option<String>,
    /// callback-events' queue: a booking left `requested` is finished there (`CALLBACK_EVENTS_QUEUE_URL`).
    pub events_queue_url: Option<String>,
    pub live_token_ttl: Duration,
    pub genesys: TokenSourceSettings,
    pub genesys_api_url: String,
    pub max_slots: usize,
    pub deadline: Duration,
    pub settle: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        let text = env.required("CALLBACK_QUEUES")?;
        let specs: BTreeMap<String, QueueSpec> = serde_json::from_str(&text).map_err(|e| {
            ConfigError::invalid("CALLBACK_QUEUES", format!("not the expected JSON: {e}"))
        })?;
        if specs.is_empty() {
            return Err(ConfigError::invalid("CALLBACK_QUEUES", "names no queue"));
        }
        let mut queues = HashMap::new();
        for (name, spec) in specs {
            if !(1..=50).contains(&spec.capacity) {
                return Err(ConfigError::invalid(
                    "CALLBACK_QUEUES",
                    format!("{name}: capacity must be 1 to 50"),
                ));
            }
            let calendar = QueueCalendar::from_spec(&spec.calendar)
                .map_err(|e| ConfigError::invalid("CALLBACK_QUEUES", format!("{name}: {e}")))?;
            queues.insert(
                name,
                Queue {
                    genesys_queue_id: spec.genesys_queue_id,
                    calendar,
                    capacity: spec.capacity,
                },
            );
        }
        let max_slots: usize = env.parse_or("CALLBACK_MAX_SLOTS", 3)?;
        if !(1..=10).contains(&max_slots) {
            return Err(ConfigError::invalid(
                "CALLBACK_MAX_SLOTS",
                "must be 1 to 10",
            ));
        }
        let deadline = env.millis_or("CALLBACK_DEADLINE_MS", 8000)?;
        if !(Duration::from_millis(500)..=Duration::from_secs(10)).contains(&deadline) {
            return Err(ConfigError::invalid(
                "CALLBACK_DEADLINE_MS",
                "must be between 500 and 10000",
            ));
        }
        let genesys_api_url = env
            .optional("GENESYS_API_URL")
            .unwrap_or_else(|| "https://api.mypurecloud.com".into());
        shared::http_client::check_url("GENESYS_API_URL", &genesys_api_url)?;
        Ok(Self {
            queues,
            table: env.required("CALLBACKS_TABLE")?,
            access_secret_id: env.optional("CALLBACK_ACCESS_SECRET_ID"),
            events_queue_url: env.optional("CALLBACK_EVENTS_QUEUE_URL"),
            live_token_ttl: env.secs_or("CALLBACK_LIVE_TOKEN_SECONDS", 900)?,
            genesys: TokenSourceSettings::from_env(env, Provider::Genesys)?,
            genesys_api_url,
            max_slots,
            deadline,
            settle: env.secs_or("CALLBACK_SETTLE_SECONDS", 60)?,
        })
    }
}

/// callback-api at cold start: the access key, the Genesys token source and clients.
pub async fn build(
    config: Config,
    aws: &aws_config::SdkConfig,
) -> Result<CallbackApi, StartupError> {
    let secret_id = config
        .access_secret_id
        .clone()
        .ok_or(ConfigError::Missing("CALLBACK_ACCESS_SECRET_ID"))?;
    let secrets = aws_sdk_secretsmanager::Client::new(aws);
    let access = crate::access::AccessKeys::from_secret(
        &shared::aws::read_secret(&secrets, &secret_id).await?,
    );
    let (live_token_ttl, deadline) = (config.live_token_ttl, config.deadline);
    Ok(CallbackApi {
        booking: build_booking(config, aws).await?,
        access,
        live_token_ttl,
        deadline,
        max_body_bytes: 16 * 1024,
    })
}

/// The booking service alone (callback-events books the callbacks the writer requests with it).
pub async fn build_booking(
    config: Config,
    aws: &aws_config::SdkConfig,
) -> Result<Booking, StartupError> {
    let secrets = aws_sdk_secretsmanager::Client::new(aws);
    let tokens = Arc::new(config.genesys.build(&secrets, "callback-api").await?);
    let http = shared::http_client::client(
        "callback-api",
        shared::http_client::Timeouts::new(Duration::from_secs(2), Duration::from_secs(5)),
    )?;
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let table = config.table;
    let keep = Duration::from_secs(30 * 86_400);
    Ok(Booking {
        queues: config.queues,
        capacity: SlotCapacity::new(dynamodb.clone(), table.clone(), keep),
        reservations: Reservations::new(dynamodb.clone(), table.clone(), keep),
        claims: IdempotencyStore::new(dynamodb, table, Duration::from_secs(7 * 86_400)),
        genesys: GenesysApi::new(http, &config.genesys_api_url, tokens),
        retrier: Retrier {
            policy: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(2),
                max_retry_after: Duration::from_secs(3),
            },
            reserve: Duration::from_millis(500),
            attempt_timeout: Duration::MAX,
            min_attempt: Duration::from_millis(300),
        },
        max_slots: config.max_slots,
        settle: config.settle,
        continuations: config
            .events_queue_url
            .map(|url| (aws_sdk_sqs::Client::new(aws), url)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUES: &str = r#"{"support": {"genesys_queue_id": "q-1", "capacity": 5, "timezone": "Europe/Berlin",
        "hours": {"mon": ["09:00", "17:00"]}}}"#;

    fn env(extra: &[(&str, &str)]) -> Env {
        let base = [
            ("CALLBACK_QUEUES", QUEUES),
            ("CALLBACKS_TABLE", "callbacks"),
            ("CALLBACK_ACCESS_SECRET_ID", "access"),
            ("GENESYS_CREDENTIALS_SECRET_ID", "genesys"),
        ];
        Env::from_pairs(base.iter().chain(extra).copied())
    }

    #[test]
    fn queues_and_limits() {
        let c = Config::from_vars(&env(&[])).unwrap();
        assert_eq!(c.queues["support"].capacity, 5);
        assert_eq!(c.max_slots, 3);
        assert_eq!(c.settle, Duration::from_secs(60));
        for (name, value) in [
            (
                "CALLBACK_QUEUES",
                r#"{"support": {"genesys_queue_id": "q", "capacity": 51, "timezone": "UTC", "hours": {}}}"#,
            ),
            (
                "CALLBACK_QUEUES",
                r#"{"support": {"genesys_queue_id": "q", "capacity": 5, "timezone": "Mars/Base", "hours": {}}}"#,
            ),
            ("CALLBACK_QUEUES", "{}"),
            ("CALLBACK_MAX_SLOTS", "11"),
            ("CALLBACK_DEADLINE_MS", "60000"),
        ] {
            let err = Config::from_vars(&env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }
}
