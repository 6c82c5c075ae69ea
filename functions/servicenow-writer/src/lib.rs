//! servicenow-writer: SQS batch → ServiceNow incidents, exactly once.
//!
//! Per record: parse the envelope (webhook or EventBridge) → derive the idempotency key → map (pure) →
//! claim the key in DynamoDB → [reconcile by `correlation_id` if the claim replaced an earlier one] →
//! resolve the caller → create → mark COMPLETED. Transient failures are retried in the invocation with
//! backoff + full jitter (honouring `Retry-After`) and then reported in `batchItemFailures`; permanent ones
//! go to the dead-letter queue with the reason as message attributes.

pub mod idempotency;
pub mod servicenow;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use futures::StreamExt;
use tracing::{error, info, warn};

use shared::aws::string_attributes;
use shared::config::{self, ConfigError};
use shared::failure::FailureClass;
use shared::idempotency::{payload_hash, IdempotencyKey, KeyConfig};
use shared::retry::{Deadline, RetryPolicy};
use shared::{InboundEvent, IncidentDraft, Mapping};

use idempotency::{Claim, IdempotencyStore};
use servicenow::{
    IncidentRef, ServiceNowAuth, ServiceNowClient, ServiceNowConfig, ServiceNowError,
};
use shared::tokens::{token_source_from_env, Provider};

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub dead_letter_queue_url: String,
    pub idempotency_table: String,
    pub idempotency_ttl: Duration,
    pub key: KeyConfig,
    pub max_concurrency: usize,
    pub retry: RetryPolicy,
    /// Time kept back from the invocation deadline for releasing claims and answering.
    pub deadline_reserve: Duration,
    pub default_caller_sys_id: Option<String>,
}

impl WriterConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(
            &config::required("DEAD_LETTER_QUEUE_URL")?,
            &config::required("IDEMPOTENCY_TABLE")?,
        )
    }

    /// As `from_env`, with the DLQ and table given (the local runner creates them).
    pub fn from_env_with(
        dead_letter_queue_url: &str,
        idempotency_table: &str,
    ) -> Result<Self, ConfigError> {
        let defaults = RetryPolicy::default();
        Ok(Self {
            dead_letter_queue_url: dead_letter_queue_url.to_string(),
            idempotency_table: idempotency_table.to_string(),
            idempotency_ttl: Duration::from_secs(
                3600 * config::parse_or("IDEMPOTENCY_TTL_HOURS", 72u64)?,
            ),
            key: KeyConfig {
                pointers: config::list_or("IDEMPOTENCY_KEY_POINTERS", &["/conversationId"]),
                prefer_event_id: config::bool_or("IDEMPOTENCY_USE_EVENT_ID", true)?,
            },
            max_concurrency: config::parse_or("MAX_CONCURRENCY", 5usize)?.max(1),
            retry: RetryPolicy {
                max_attempts: config::parse_or("RETRY_MAX_ATTEMPTS", defaults.max_attempts)?.max(1),
                base_delay: config::millis_or(
                    "RETRY_BASE_MS",
                    defaults.base_delay.as_millis() as u64,
                )?,
                max_delay: config::millis_or(
                    "RETRY_MAX_MS",
                    defaults.max_delay.as_millis() as u64,
                )?,
                max_retry_after: Duration::from_secs(config::parse_or(
                    "RETRY_AFTER_MAX_SECONDS",
                    defaults.max_retry_after.as_secs(),
                )?),
            },
            deadline_reserve: config::millis_or("DEADLINE_RESERVE_MS", 1500)?,
            default_caller_sys_id: config::optional("SERVICENOW_DEFAULT_CALLER_SYS_ID"),
        })
    }
}

/// ServiceNow settings. `SERVICENOW_AUTH=basic` (default): credentials from `SERVICENOW_CREDENTIALS_SECRET_ID`
/// (JSON `{"username","password"}`), else `SERVICENOW_USERNAME` / `SERVICENOW_PASSWORD`.
/// `SERVICENOW_AUTH=oauth`: bearer tokens from `SERVICENOW_TOKEN_SECRET_ID` (kept by the token-refresher), with
/// the OAuth client of `SERVICENOW_OAUTH_CREDENTIALS_SECRET_ID` as fallback.
pub async fn servicenow_config_from_env(
    secrets: &aws_sdk_secretsmanager::Client,
) -> Result<ServiceNowConfig, Box<dyn std::error::Error + Send + Sync>> {
    let auth = match config::optional("SERVICENOW_AUTH").as_deref() {
        None | Some("basic") => {
            let (username, password) = shared::aws::credential_pair(
                secrets,
                "SERVICENOW_CREDENTIALS_SECRET_ID",
                ("username", "password"),
                ("SERVICENOW_USERNAME", "SERVICENOW_PASSWORD"),
            )
            .await?;
            ServiceNowAuth::Basic { username, password }
        }
        Some("oauth") => ServiceNowAuth::OAuth(Arc::new(
            token_source_from_env(secrets, oauth_http()?, Provider::ServiceNow).await?,
        )),
        Some(other) => return Err(format!("SERVICENOW_AUTH {other:?}: basic or oauth").into()),
    };
    Ok(ServiceNowConfig {
        instance_url: config::required("SERVICENOW_INSTANCE_URL")?,
        auth,
        connect_timeout: config::millis_or("SERVICENOW_CONNECT_TIMEOUT_MS", 3000)?,
        request_timeout: config::millis_or("SERVICENOW_TIMEOUT_MS", 10_000)?,
    })
}

/// What happened to one SQS record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created {
        number: String,
    },
    /// The incident already existed in ServiceNow (found by `correlation_id` after an interrupted attempt).
    Reconciled {
        number: String,
    },
    /// Already completed earlier: nothing done.
    Duplicate {
        number: Option<String>,
    },
    DeadLettered {
        reason: String,
    },
    /// Given back to the queue for a later attempt.
    Retry {
        reason: String,
    },
}

impl Outcome {
    fn is_failure(&self) -> bool {
        matches!(self, Outcome::Retry { .. })
    }
}

/// Why a record cannot succeed, ever.
#[derive(Debug, Clone)]
struct Permanent {
    code: &'static str,
    detail: String,
    http_status: Option<u16>,
}

/// A record's event and idempotency key, derived once per record.
type Parsed = Result<(InboundEvent, IdempotencyKey), shared::EnvelopeError>;
/// Records of a batch that share an idempotency key, in arrival order.
type Group = Vec<(SqsMessage, Parsed)>;

#[derive(Debug)]
pub struct BatchReport {
    pub response: SqsBatchResponse,
    pub outcomes: Vec<(String, Outcome)>,
}

pub struct Writer {
    config: WriterConfig,
    mapping: Mapping,
    servicenow: ServiceNowClient,
    store: IdempotencyStore,
    sqs: aws_sdk_sqs::Client,
}

/// Correlation ids of one record, carried into every log line.
struct Ids<'a> {
    message_id: &'a str,
    correlation_id: &'a str,
}

impl Writer {
    pub fn new(
        config: WriterConfig,
        mapping: Mapping,
        servicenow: ServiceNowClient,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> Self {
        let store = IdempotencyStore::new(
            dynamodb,
            config.idempotency_table.clone(),
            config.idempotency_ttl,
        );
        Self {
            config,
            mapping,
            servicenow,
            store,
            sqs,
        }
    }

    /// Processes a batch concurrently (bounded) and reports the records to retry.
    ///
    /// Records sharing an idempotency key run one after the other, so a duplicate in the same batch is
    /// recognised as such at once instead of waiting a visibility timeout behind its twin's lease.
    pub async fn process_batch(&self, records: Vec<SqsMessage>, deadline: Deadline) -> BatchReport {
        let mut groups: Vec<Group> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for record in records {
            let parsed =
                InboundEvent::parse(record.body.as_deref().unwrap_or("").as_bytes()).map(|event| {
                    let key = self.config.key.derive(&event);
                    (event, key)
                });
            let key = parsed.as_ref().ok().map(|(_, k)| k.key.clone());
            match key.as_ref().and_then(|k| by_key.get(k)) {
                Some(&i) => groups[i].push((record, parsed)),
                None => {
                    if let Some(k) = key {
                        by_key.insert(k, groups.len());
                    }
                    groups.push(vec![(record, parsed)]);
                }
            }
        }
        let outcomes: Vec<(String, Outcome)> = futures::stream::iter(groups)
            .map(|members| async move {
                let mut done = Vec::with_capacity(members.len());
                for (record, parsed) in members {
                    let id = record.message_id.clone().unwrap_or_default();
                    done.push((id, self.process_record(&record, parsed, deadline).await));
                }
                done
            })
            .buffer_unordered(self.config.max_concurrency)
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        for (id, outcome) in &outcomes {
            if outcome.is_failure() {
                response.add_failure(id.clone());
            }
        }
        BatchReport { response, outcomes }
    }

    async fn process_record(
        &self,
        record: &SqsMessage,
        parsed: Parsed,
        deadline: Deadline,
    ) -> Outcome {
        let ids = Ids {
            message_id: record.message_id.as_deref().unwrap_or(""),
            correlation_id: record
                .message_attributes
                .get("correlation_id")
                .and_then(|a| a.string_value.as_deref())
                .unwrap_or(""),
        };
        let (event, key) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                let p = Permanent {
                    code: "invalid_envelope",
                    detail: e.to_string(),
                    http_status: None,
                };
                return self.dead_letter(record, &ids, None, &p).await;
            }
        };
        let hash = payload_hash(&event);
        let mut draft = match self.mapping.map(&event, &key.key) {
            Ok(d) => d,
            Err(e) => {
                let p = Permanent {
                    code: "mapping_failed",
                    detail: e.to_string(),
                    http_status: None,
                };
                return self.dead_letter(record, &ids, Some(&key.key), &p).await;
            }
        };
        if deadline.remaining() <= self.config.deadline_reserve {
            return Outcome::Retry {
                reason: "invocation deadline too close to start".into(),
            };
        }
        let lease_until = epoch_ms() + deadline.remaining().as_millis() as u64;
        let claim = match self.store.claim(&key.key, &hash, lease_until).await {
            Ok(c) => c,
            Err(e) if e.class == FailureClass::Permanent => {
                // A misconfigured table is not the event's fault: keep it on the queue (redrive catches it).
                error!(message_id = ids.message_id, idempotency_key = %key.key, error = %e, "idempotency store unusable");
                return Outcome::Retry {
                    reason: e.to_string(),
                };
            }
            Err(e) => {
                warn!(message_id = ids.message_id, idempotency_key = %key.key, error = %e, "idempotency claim failed");
                return Outcome::Retry {
                    reason: e.to_string(),
                };
            }
        };
        let (token, retaken) = match claim {
            Claim::Acquired { token, retaken } => (token, retaken),
            Claim::Completed { incident_number } => {
                info!(message_id = ids.message_id, correlation_id = ids.correlation_id, idempotency_key = %key.key,
                      incident_number = incident_number.as_deref().unwrap_or(""), "duplicate event skipped");
                return Outcome::Duplicate {
                    number: incident_number,
                };
            }
            Claim::InFlight => {
                return Outcome::Retry {
                    reason: "another invocation is processing this event".into(),
                }
            }
            Claim::Conflict => {
                let p = Permanent {
                    code: "idempotency_conflict",
                    detail: "the same idempotency key was already used for a different payload"
                        .into(),
                    http_status: None,
                };
                return self.dead_letter(record, &ids, Some(&key.key), &p).await;
            }
        };

        match self
            .create_with_retries(&mut draft, retaken, deadline, &ids)
            .await
        {
            Ok((incident, reconciled)) => {
                match self
                    .store
                    .complete(&key.key, &token, &incident.number, &incident.sys_id)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(idempotency_key = %key.key, "lease was taken over before completion")
                    }
                    // The incident exists; a later replay reconciles by correlation_id.
                    Err(e) => {
                        warn!(idempotency_key = %key.key, error = %e, "could not mark completed")
                    }
                }
                info!(message_id = ids.message_id, correlation_id = ids.correlation_id, idempotency_key = %key.key,
                      incident_number = %incident.number, impact = draft.impact, urgency = draft.urgency,
                      reconciled, "incident recorded");
                if reconciled {
                    Outcome::Reconciled {
                        number: incident.number,
                    }
                } else {
                    Outcome::Created {
                        number: incident.number,
                    }
                }
            }
            Err(e) if e.class() == FailureClass::Permanent => {
                if let Err(se) = self.store.forget(&key.key, &token).await {
                    warn!(idempotency_key = %key.key, error = %se, "could not delete claim");
                }
                let p = Permanent {
                    code: "servicenow_rejected",
                    detail: format!("ServiceNow rejected the incident: {e}"),
                    http_status: e.http_status(),
                };
                self.dead_letter(record, &ids, Some(&key.key), &p).await
            }
            Err(e) => {
                if let Err(se) = self.store.release(&key.key, &token).await {
                    warn!(idempotency_key = %key.key, error = %se, "could not release claim; its lease will expire");
                }
                warn!(message_id = ids.message_id, correlation_id = ids.correlation_id, idempotency_key = %key.key,
                      error = %e, "transient failure; record returned to the queue");
                Outcome::Retry {
                    reason: e.to_string(),
                }
            }
        }
    }

    /// Creates the incident, retrying transient failures within the deadline. After an ambiguous failure
    /// (the create may have happened) or on a retaken claim, looks the incident up before creating again.
    async fn create_with_retries(
        &self,
        draft: &mut IncidentDraft,
        mut reconcile: bool,
        deadline: Deadline,
        ids: &Ids<'_>,
    ) -> Result<(IncidentRef, bool), ServiceNowError> {
        let policy = self.config.retry;
        let mut retry = 0;
        loop {
            match self.attempt(draft, reconcile).await {
                Ok(done) => return Ok(done),
                Err(e) if e.class() == FailureClass::Permanent => return Err(e),
                Err(e) => {
                    reconcile |= e.ambiguous();
                    retry += 1;
                    let retry_after = e.retry_after();
                    if retry >= policy.max_attempts
                        || retry_after.is_some_and(|d| d > policy.max_retry_after)
                    {
                        return Err(e);
                    }
                    let delay = policy.delay(retry - 1, retry_after);
                    if !deadline.allows(delay, self.config.deadline_reserve) {
                        return Err(e);
                    }
                    info!(
                        message_id = ids.message_id,
                        retry,
                        delay_ms = delay.as_millis() as u64,
                        status = e.http_status().unwrap_or(0),
                        "retrying ServiceNow"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(
        &self,
        draft: &mut IncidentDraft,
        reconcile: bool,
    ) -> Result<(IncidentRef, bool), ServiceNowError> {
        if reconcile {
            if let Some(found) = self
                .servicenow
                .find_by_correlation_id(&draft.correlation_id)
                .await?
            {
                return Ok((found, true));
            }
        }
        if draft.caller_id.is_none() {
            draft.caller_id = self.resolve_caller(draft).await?;
        }
        Ok((self.servicenow.create_incident(draft).await?, false))
    }

    async fn resolve_caller(
        &self,
        draft: &IncidentDraft,
    ) -> Result<Option<String>, ServiceNowError> {
        let default = || self.config.default_caller_sys_id.clone();
        let Some(phone) = draft.caller_phone.as_deref() else {
            return Ok(default());
        };
        match self.servicenow.find_caller(phone).await {
            Ok(found) => Ok(found.or_else(default)),
            Err(e) if e.class() == FailureClass::Transient => Err(e),
            Err(e) => {
                // No read access to sys_user, say: the incident still matters more than its caller.
                warn!(error = %e, "caller lookup refused; using the default caller");
                Ok(default())
            }
        }
    }

    async fn dead_letter(
        &self,
        record: &SqsMessage,
        ids: &Ids<'_>,
        key: Option<&str>,
        why: &Permanent,
    ) -> Outcome {
        let failed_at = shared::now_rfc3339();
        let passthrough = |name: &str| {
            record
                .message_attributes
                .get(name)
                .and_then(|a| a.string_value.clone())
                .unwrap_or_default()
        };
        // SQS allows at most 10 message attributes.
        let attrs = string_attributes([
            ("failure_reason", why.code.to_string()),
            ("failure_detail", truncate(&why.detail, 1000)),
            (
                "http_status",
                why.http_status.map(|s| s.to_string()).unwrap_or_default(),
            ),
            ("idempotency_key", key.unwrap_or_default().to_string()),
            ("source_message_id", ids.message_id.to_string()),
            ("correlation_id", ids.correlation_id.to_string()),
            ("event_type", passthrough("event_type")),
            ("received_at", passthrough("received_at")),
            ("failed_at", failed_at),
        ]);
        let body = record.body.clone().unwrap_or_default();
        let body = if body.is_empty() {
            "{}".to_string()
        } else {
            body
        };
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.config.dead_letter_queue_url)
            .message_body(body)
            .set_message_attributes(Some(attrs))
            .send()
            .await;
        match sent {
            Ok(_) => {
                error!(message_id = ids.message_id, correlation_id = ids.correlation_id,
                       idempotency_key = key.unwrap_or(""), reason = why.code, detail = %why.detail,
                       http_status = why.http_status.unwrap_or(0), "permanent failure dead-lettered");
                Outcome::DeadLettered {
                    reason: format!("{}: {}", why.code, why.detail),
                }
            }
            Err(e) => {
                error!(message_id = ids.message_id, error = %aws_sdk_sqs::error::DisplayErrorContext(&e),
                       "could not dead-letter; record returned to the queue");
                Outcome::Retry {
                    reason: "dead-letter queue unavailable".into(),
                }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    shared::incident::truncate_chars(s, max)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Loads the mapping from `MAPPING_FILE` when set, else the built-in default.
pub fn mapping_from_env() -> Result<Mapping, shared::mapping::MappingLoadError> {
    match config::optional("MAPPING_FILE") {
        Some(path) => Mapping::from_path(&path),
        None => Mapping::default_mapping(),
    }
}

/// HTTP client for token endpoints.
fn oauth_http() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .build()
}
