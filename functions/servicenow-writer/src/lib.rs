//! servicenow-writer: SQS batch → ServiceNow incidents, one per conversation, exactly once.
//!
//! Per record: parse the envelope (webhook or EventBridge) → derive the event's idempotency key → select the
//! mapping profile and map (pure) → claim the event key in DynamoDB → for a conversation, lock its record
//! and either create its incident (reconciling by `correlation_id` when an earlier attempt may have created
//! it) or add the event's work note to it (reading the incident's notes first when an earlier attempt may
//! have written it) → mark the event COMPLETED. Transient failures are retried in the invocation with
//! backoff + full jitter (honouring `Retry-After`) and then reported in `batchItemFailures`; permanent ones
//! go to the dead-letter queue with the reason as message attributes.

pub mod config;
pub mod conversations;
pub use shared::idempotency;
pub mod ports;
pub mod servicenow;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Duration;

use shared::clock::epoch_ms;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use futures::StreamExt;
use tracing::{error, info, warn};

use shared::event::glob_match;
use shared::failure::FailureClass;
use shared::incident::{event_ref, with_event_ref};
use shared::keys::{payload_hash, IdempotencyKey};
use shared::mapping::{Mapped, MappingError, OnRepeat, Raise};
use shared::retry::{Attempt, Deadline, Retrier, RetryNotice, Retryable};
use shared::{InboundEvent, IncidentDraft, Mapping};

use conversations::{ClaimCompletion, ConversationLock, ConversationStore, KnownIncident, Locked};
use idempotency::{Claim, IdempotencyStore, StoreError};
use ports::{Claims, Conversations, DeadLetter, Incidents, Queues, SqsQueues};
use servicenow::{IncidentRef, ServiceNowClient, ServiceNowError};

/// What happened to one SQS record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created {
        number: String,
    },
    /// A later event of the conversation: one work note added to its incident.
    Updated {
        number: String,
    },
    /// The work was already done in ServiceNow (found by `correlation_id` or by the event's note after an
    /// interrupted attempt): recorded, nothing written again.
    Reconciled {
        number: String,
    },
    /// Already completed earlier, or a later event of a conversation whose profile ignores repeats.
    Duplicate {
        number: Option<String>,
    },
    DeadLettered {
        reason: String,
    },
    /// Given back to the queue for a later attempt (`delay`: made visible again only after it).
    Retry {
        reason: String,
        delay: Option<Duration>,
    },
}

impl Outcome {
    fn is_failure(&self) -> bool {
        matches!(self, Outcome::Retry { .. })
    }
}

/// One EMF line per batch: how many records ended each way (dead letters are also counted by reason).
fn emit_outcome_metrics(outcomes: &[(String, Outcome)]) {
    let mut n = [0u64; 6];
    for (_, o) in outcomes {
        let i = match o {
            Outcome::Created { .. } => 0,
            Outcome::Updated { .. } => 1,
            Outcome::Reconciled { .. } => 2,
            Outcome::Duplicate { .. } => 3,
            Outcome::DeadLettered { .. } => 4,
            Outcome::Retry { .. } => 5,
        };
        n[i] += 1;
    }
    shared::metrics::values(
        ("Function", "servicenow-writer"),
        &[
            ("IncidentsCreated", n[0], "Count"),
            ("IncidentsUpdated", n[1], "Count"),
            ("Reconciled", n[2], "Count"),
            ("DuplicatesSuppressed", n[3], "Count"),
            ("DeadLettered", n[4], "Count"),
            ("Retried", n[5], "Count"),
        ],
    );
}

/// Why a record cannot succeed, ever.
#[derive(Debug, Clone)]
struct Permanent {
    code: &'static str,
    detail: String,
    http_status: Option<u16>,
}

/// Why a record goes back to the queue.
#[derive(Debug, Clone)]
struct Transient {
    /// The reason code it is dead-lettered with if it still fails at its last receive.
    code: &'static str,
    reason: String,
    http_status: Option<u16>,
    /// Give the record back only after this long (a long `Retry-After`, a settle window).
    delay: Option<Duration>,
    /// A write may still commit: the event's claim (and its conversation) stay held until then (epoch ms).
    settle_until_ms: Option<u64>,
}

impl Transient {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            http_status: None,
            delay: None,
            settle_until_ms: None,
        }
    }

    /// Wait until `until_ms` (epoch ms) before anything is written for the record.
    fn settling(mut self, until_ms: u64) -> Self {
        self.settle_until_ms = Some(until_ms);
        // A little after the hold ends, so the next receive finds it over.
        let left = until_ms.saturating_sub(epoch_ms()) + 250;
        self.delay = Some(Duration::from_millis(left));
        self
    }
}

/// How the ServiceNow part of a record ended when it did not succeed.
#[derive(Debug)]
enum Failure {
    Permanent(Permanent),
    /// Worth another try later: the record goes back to the queue.
    Transient(Transient),
}

impl Failure {
    fn servicenow(code: &'static str, e: ServiceNowError) -> Self {
        match e.class() {
            FailureClass::Permanent => Failure::Permanent(Permanent {
                code: e.dead_letter_reason().unwrap_or(code),
                detail: format!("ServiceNow rejected the request: {e}"),
                http_status: e.http_status(),
            }),
            FailureClass::Transient => Failure::Transient(Transient {
                http_status: e.http_status(),
                delay: e.retry_after(),
                ..Transient::new(e.code(), e.to_string())
            }),
        }
    }

    fn store(e: StoreError) -> Self {
        // Even a misconfigured table is not the event's fault: keep it queued (redrive catches it).
        Failure::Transient(Transient::new(
            "idempotency_store_unavailable",
            e.to_string(),
        ))
    }
}

/// What the ServiceNow part of a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Done {
    Created(String),
    Updated(String),
    Reconciled(String),
    Ignored(String),
}

/// A record ready to process: its event, its key and what it maps to.
struct Prepared<'m> {
    event_hash: String,
    key: IdempotencyKey,
    mapped: Mapped<'m>,
}

/// A record that can never be processed.
struct Rejected {
    key: Option<String>,
    why: Permanent,
}

type Parsed<'m> = Result<Prepared<'m>, Rejected>;
/// Records of a batch that share an incident (one conversation) or a key, in arrival order.
type Group<'m> = Vec<(SqsMessage, Parsed<'m>)>;

#[derive(Debug)]
pub struct BatchReport {
    pub response: SqsBatchResponse,
    pub outcomes: Vec<(String, Outcome)>,
}

/// The writer over its edges (see [`ports`]); by default the real ServiceNow, DynamoDB and SQS clients.
pub struct Writer<I = ServiceNowClient, C = IdempotencyStore, V = ConversationStore, Q = SqsQueues>
{
    config: WriterConfig,
    retrier: Retrier,
    mapping: Mapping,
    servicenow: I,
    store: C,
    conversations: V,
    queues: Q,
}

/// A conversation's incident to record, under the lock held for it.
struct Recording {
    conversation: String,
    token: String,
    incident: KnownIncident,
}

/// Correlation ids of one record, carried into every log line.
struct Ids<'a> {
    message_id: &'a str,
    correlation_id: &'a str,
    event_key: &'a str,
    conversation_id: &'a str,
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
            dynamodb.clone(),
            config.idempotency_table.clone(),
            config.idempotency_ttl,
        );
        let conversations = ConversationStore::new(
            dynamodb,
            config.idempotency_table.clone(),
            config.conversation_ttl,
        )
        .with_claims(store.clone());
        let servicenow = servicenow
            .with_rate_limit_share(config.rate_limit_containers)
            .with_import_set(config.import_set_table.clone());
        let mut queues = SqsQueues::new(
            sqs,
            config.dead_letter_queue_url.clone(),
            config.events_queue_url.clone(),
        );
        queues.callback_requests_queue_url = config.callback_requests_queue_url.clone();
        Writer::with_ports(config, mapping, servicenow, store, conversations, queues)
    }
}

impl<I: Incidents, C: Claims, V: Conversations, Q: Queues> Writer<I, C, V, Q> {
    pub fn with_ports(
        config: WriterConfig,
        mapping: Mapping,
        servicenow: I,
        store: C,
        conversations: V,
        queues: Q,
    ) -> Self {
        Self {
            retrier: Retrier {
                policy: config.retry,
                reserve: config.deadline_reserve,
                // Each request has the client's timeout; an attempt (lookups and a write) has the deadline.
                attempt_timeout: Duration::MAX,
                min_attempt: Duration::from_millis(500),
            },
            config,
            mapping,
            servicenow,
            store,
            conversations,
            queues,
        }
    }

    fn prepare(&self, record: &SqsMessage) -> Parsed<'_> {
        let event =
            InboundEvent::parse(record.body.as_deref().unwrap_or("").as_bytes()).map_err(|e| {
                Rejected {
                    key: None,
                    why: Permanent {
                        code: "invalid_envelope",
                        detail: e.to_string(),
                        http_status: None,
                    },
                }
            })?;
        let event_hash = payload_hash(&event);
        let key = self.config.key.derive_hashed(&event, &event_hash);
        if let Some(allowed) = &self.config.allowed_event_types {
            // Messages that did not come through the receiver (EventBridge) meet the allow-list here.
            let kind = event.event_kind();
            if !allowed
                .iter()
                .any(|p| glob_match(p, &kind) || glob_match(p, &event.event_type))
            {
                return Err(Rejected {
                    key: Some(key.key),
                    why: Permanent {
                        code: "event_type_not_allowed",
                        detail: format!(
                            "event type {:?} is not in WRITER_ALLOWED_EVENT_TYPES",
                            event.event_type
                        ),
                        http_status: None,
                    },
                });
            }
        }
        match self.mapping.apply(&event, &key.key) {
            Ok(mapped) => Ok(Prepared {
                event_hash,
                key,
                mapped,
            }),
            Err(e) => Err(Rejected {
                key: Some(key.key),
                why: Permanent {
                    code: match e {
                        MappingError::NoProfile { .. } => "no_mapping_profile",
                        MappingError::MissingField { .. } => "mapping_failed",
                    },
                    detail: e.to_string(),
                    http_status: None,
                },
            }),
        }
    }

    /// Processes a batch concurrently (bounded) and reports the records to retry.
    ///
    /// Records of one conversation (or sharing a key) run one after the other in arrival order, so a
    /// duplicate or a later event in the same batch is handled at once instead of waiting on its twin.
    pub async fn process_batch(&self, records: Vec<SqsMessage>, deadline: Deadline) -> BatchReport {
        let mut groups: Vec<Group> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for record in records {
            let parsed = self.prepare(&record);
            let key = parsed.as_ref().ok().map(|p| p.mapped.incident_key.clone());
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
        emit_outcome_metrics(&outcomes);
        BatchReport { response, outcomes }
    }

    async fn process_record(
        &self,
        record: &SqsMessage,
        parsed: Parsed<'_>,
        deadline: Deadline,
    ) -> Outcome {
        let mut ids = Ids {
            message_id: record.message_id.as_deref().unwrap_or(""),
            correlation_id: record
                .message_attributes
                .get("correlation_id")
                .and_then(|a| a.string_value.as_deref())
                .unwrap_or(""),
            event_key: "",
            conversation_id: "",
        };
        let prepared = match parsed {
            Ok(p) => p,
            Err(rejected) => {
                return self
                    .dead_letter(record, &ids, rejected.key.as_deref(), &rejected.why)
                    .await
            }
        };
        let conversation_id = prepared.mapped.conversation_id.clone().unwrap_or_default();
        let key = prepared.key.key.clone();
        ids.event_key = &key;
        ids.conversation_id = &conversation_id;
        match self.apply(record, prepared, deadline, &ids).await {
            Ok(outcome) => outcome,
            Err(t) => self.give_back(record, &ids, t).await,
        }
    }

    /// A record that failed transiently: back to the queue (after its delay), or — at its last receive,
    /// where SQS would move it to the dead-letter queue without a reason — dead-lettered here with it.
    async fn give_back(&self, record: &SqsMessage, ids: &Ids<'_>, t: Transient) -> Outcome {
        let receives = receive_count(record);
        if self
            .config
            .max_receive_count
            .is_some_and(|max| receives >= max)
        {
            let why = Permanent {
                code: t.code,
                detail: format!("still failing at receive {receives}: {}", t.reason),
                http_status: t.http_status,
            };
            return self
                .dead_letter(record, ids, Some(ids.event_key), &why)
                .await;
        }
        let delay = t.delay.map(|d| d.min(visibility_left(record)));
        if let (Some(delay), Some(arn), Some(handle)) = (
            delay.filter(|d| *d >= Duration::from_secs(1)),
            record.event_source_arn.as_deref(),
            record.receipt_handle.as_deref(),
        ) {
            if let Err(e) = self.queues.redeliver_after(arn, handle, delay).await {
                warn!(message_id = ids.message_id, error = %e, "could not delay the record's redelivery");
            }
        }
        warn!(message_id = ids.message_id, correlation_id = ids.correlation_id, idempotency_key = ids.event_key,
              conversation_id = ids.conversation_id, reason = t.code, detail = %t.reason,
              delay_ms = delay.map(|d| d.as_millis() as u64).unwrap_or(0), receives,
              "transient failure; record returned to the queue");
        Outcome::Retry {
            reason: format!("{}: {}", t.code, t.reason),
            delay,
        }
    }

    /// Claims the event, applies it, and completes or releases the claim.
    async fn apply(
        &self,
        record: &SqsMessage,
        prepared: Prepared<'_>,
        deadline: Deadline,
        ids: &Ids<'_>,
    ) -> Result<Outcome, Transient> {
        let Prepared {
            event_hash: hash,
            key,
            mapped,
        } = prepared;
        if deadline.remaining() <= self.config.deadline_reserve {
            return Err(Transient::new(
                "invocation_deadline",
                "invocation deadline too close to start",
            ));
        }
        // Held past the deadline by the settle window: a request cut off by the end of the invocation may
        // still commit, and no copy may write before it would have.
        let lease_until = self.hold_until(deadline);
        let claim = match self.store.claim(&key.key, &hash, lease_until).await {
            Ok(c) => c,
            Err(e) => {
                return Err(Transient::new(
                    "idempotency_store_unavailable",
                    e.to_string(),
                ))
            }
        };
        let (token, retaken) = match claim {
            Claim::Acquired { token, retaken } => (token, retaken),
            Claim::Completed { incident_number } => {
                info!(message_id = ids.message_id, correlation_id = ids.correlation_id, idempotency_key = %key.key,
                      conversation_id = ids.conversation_id,
                      incident_number = incident_number.as_deref().unwrap_or(""), "duplicate event skipped");
                return Ok(Outcome::Duplicate {
                    number: incident_number,
                });
            }
            Claim::InFlight { settle_until_ms } => {
                let t = Transient::new(
                    "event_in_flight",
                    "another invocation is processing this event",
                );
                return Err(match settle_until_ms {
                    Some(until) => t.settling(until),
                    None => t,
                });
            }
            Claim::Conflict => {
                let p = Permanent {
                    code: "idempotency_conflict",
                    detail: "the same idempotency key was already used for a different payload"
                        .into(),
                    http_status: None,
                };
                return Ok(self.dead_letter(record, ids, Some(&key.key), &p).await);
            }
        };
        // Look before writing whenever an earlier attempt may have written: a retaken claim, a record SQS
        // delivered before, a replay from the dead-letter queue, or one older than the claims are kept.
        let reconcile = retaken || self.seen_before(record);

        let result = if mapped.per_conversation() {
            self.for_conversation(&mapped, reconcile, deadline, ids)
                .await
        } else {
            self.create_with_retries(&mapped.incident(), reconcile, deadline, ids)
                .await
                .map(|(incident, reconciled)| match reconciled {
                    true => (Done::Reconciled(incident.number), None),
                    false => (Done::Created(incident.number), None),
                })
                .map_err(|e| self.write_failure("servicenow_rejected", e))
        };
        match result {
            Ok((done, recording)) => {
                let number = match &done {
                    Done::Created(n)
                    | Done::Updated(n)
                    | Done::Reconciled(n)
                    | Done::Ignored(n) => n.clone(),
                };
                if let Some(ask) = &mapped.callback {
                    // Before the claim completes: if it cannot be queued, the event is retried (its incident
                    // reconciled) and asks again; callback-events books one callback per conversation.
                    let request = serde_json::json!({"kind": "callback-request",
                        "conversation_id": ids.conversation_id, "incident_number": number,
                        "queue": ask.queue, "phone": ask.phone});
                    if let Err(e) = self.queues.request_callback(request.to_string()).await {
                        let t = Transient::new("callback_request_unqueued", e);
                        if let Some(r) = &recording {
                            self.record(r, ids).await;
                        }
                        self.release(&key.key, &token, Some(self.config.conversation_ttl), None)
                            .await;
                        return Err(t);
                    }
                    info!(conversation_id = ids.conversation_id, incident_number = %number, queue = %ask.queue,
                          "callback requested for the caller");
                }
                self.complete(&key.key, &token, &number, recording, ids)
                    .await;
                info!(message_id = ids.message_id, correlation_id = ids.correlation_id, idempotency_key = %key.key,
                      conversation_id = ids.conversation_id, profile = %mapped.profile, incident_number = %number,
                      impact = mapped.levels().impact, urgency = mapped.levels().urgency, outcome = ?done,
                      "event applied");
                Ok(match done {
                    Done::Created(number) => Outcome::Created { number },
                    Done::Updated(number) => Outcome::Updated { number },
                    Done::Reconciled(number) => Outcome::Reconciled { number },
                    Done::Ignored(number) => Outcome::Duplicate {
                        number: Some(number),
                    },
                })
            }
            Err(Failure::Permanent(p)) => {
                // Released, not deleted, and kept as long as a conversation (the DLQ's retention): an attempt
                // before the refusal may have been applied (a timeout after the commit), so a replay must look
                // for its incident or note before writing again.
                self.release(&key.key, &token, Some(self.config.conversation_ttl), None)
                    .await;
                Ok(self.dead_letter(record, ids, Some(&key.key), &p).await)
            }
            Err(Failure::Transient(t)) => {
                // Kept as long as a dead letter is, in case this is the last receive.
                self.release(
                    &key.key,
                    &token,
                    Some(self.config.conversation_ttl),
                    t.settle_until_ms,
                )
                .await;
                Err(t)
            }
        }
    }

    /// Records the conversation's incident (if any) and completes the claim: in one transaction, or — when
    /// that was refused or unanswered — each on its own, each under its own token (so after a commit that was
    /// not answered, neither writes again).
    async fn complete(
        &self,
        key: &str,
        token: &str,
        number: &str,
        recording: Option<Recording>,
        ids: &Ids<'_>,
    ) {
        if let Some(r) = &recording {
            let claim = ClaimCompletion { key, token, number };
            match self
                .conversations
                .record_completing(&r.conversation, &r.token, &r.incident, claim)
                .await
            {
                Ok(true) => return,
                // The lock or the claim was taken over: the other may still be written.
                Ok(false) => {}
                Err(e) => {
                    warn!(conversation_id = ids.conversation_id, idempotency_key = %key, error = %e,
                          "could not record the conversation and complete the claim together; each on its own")
                }
            }
            self.record(r, ids).await;
        }
        match self.store.complete(key, token, number).await {
            Ok(true) => {}
            Ok(false) => {
                warn!(idempotency_key = %key, "lease was taken over before completion")
            }
            // The work is done; a replay finds it (by correlation_id or by the note's reference).
            Err(e) => {
                warn!(idempotency_key = %key, error = %e, "could not mark completed")
            }
        }
    }

    /// Records the conversation's incident and unlocks it.
    async fn record(&self, r: &Recording, ids: &Ids<'_>) {
        if let Err(e) = self
            .conversations
            .record(&r.conversation, &r.token, &r.incident)
            .await
        {
            // The incident carries the conversation key as correlation_id: the next event reconciles.
            warn!(conversation_id = ids.conversation_id, error = %e, "could not record the conversation's incident");
        }
    }

    async fn release(&self, key: &str, token: &str, keep: Option<Duration>, settle: Option<u64>) {
        if let Err(se) = self.store.release(key, token, keep, settle).await {
            warn!(idempotency_key = %key, error = %se, "could not release claim; its lease will expire");
        }
    }

    /// Until when a claim or lock taken now is held: the invocation's end plus the settle window.
    fn hold_until(&self, deadline: Deadline) -> u64 {
        epoch_ms() + (deadline.remaining() + self.config.settle).as_millis() as u64
    }

    /// Whether an earlier attempt may have written for this record although its claim does not say so.
    fn seen_before(&self, record: &SqsMessage) -> bool {
        let replayed = record.message_attributes.contains_key("failure_reason");
        let sent_ms = record
            .attributes
            .get("SentTimestamp")
            .and_then(|v| v.parse::<u64>().ok());
        let older_than_claims = sent_ms.is_some_and(|sent| {
            epoch_ms().saturating_sub(sent) >= self.config.idempotency_ttl.as_millis() as u64
        });
        receive_count(record) > 1 || replayed || older_than_claims
    }

    /// A failed create or update: permanent, back to the queue, or — when it may have been applied without
    /// an answer — held for the settle window, so a late commit is found instead of written again.
    fn write_failure(&self, code: &'static str, e: WriteError) -> Failure {
        match e {
            WriteError::Unconfirmed(e) => Failure::Transient(
                Transient {
                    http_status: e.http_status(),
                    ..Transient::new(
                        "servicenow_write_unconfirmed",
                        format!("{e}; nothing is written until ServiceNow had time to commit it"),
                    )
                }
                .settling(epoch_ms() + self.config.settle.as_millis() as u64),
            ),
            WriteError::ServiceNow(e) if e.ambiguous() && !self.config.settle.is_zero() => {
                self.write_failure(code, WriteError::Unconfirmed(e))
            }
            WriteError::ServiceNow(e) | WriteError::Read(e) => Failure::servicenow(code, e),
            WriteError::Gone => Failure::Permanent(Permanent {
                code,
                detail: "the incident is gone".into(),
                http_status: Some(404),
            }),
        }
    }

    /// Applies an event of a conversation under the conversation's lock: the first event creates the
    /// incident, later ones add a work note (or nothing, by profile). Done: the incident to record, still
    /// locked (recorded with the claim's completion, [`Self::complete`]); otherwise the lock is given up.
    async fn for_conversation(
        &self,
        mapped: &Mapped<'_>,
        retaken: bool,
        deadline: Deadline,
        ids: &Ids<'_>,
    ) -> Result<(Done, Option<Recording>), Failure> {
        let conversation = mapped.incident_key.clone();
        let lock = self.lock_conversation(&conversation, deadline).await?;
        let result = self
            .under_lock(
                mapped,
                lock.incident.clone(),
                lock.existed || retaken,
                retaken,
                deadline,
                ids,
            )
            .await;
        let released = match &result {
            Ok((_, Some(_))) => Ok(()),
            // A write that may still commit: no event of the conversation is applied before it would have.
            Err(Failure::Transient(Transient {
                settle_until_ms: Some(until),
                ..
            })) => {
                self.conversations
                    .hold(&conversation, &lock.token, *until)
                    .await
            }
            _ => self.conversations.unlock(&conversation, &lock.token).await,
        };
        if let Err(e) = released {
            warn!(conversation_id = ids.conversation_id, error = %e, "could not release the conversation's lock");
        }
        result.map(|(done, incident)| {
            let recording = incident.map(|incident| Recording {
                conversation,
                token: lock.token,
                incident,
            });
            (done, recording)
        })
    }

    /// Locks the conversation, waiting up to `conversation_lock_wait` for another holder to finish.
    async fn lock_conversation(
        &self,
        conversation: &str,
        deadline: Deadline,
    ) -> Result<ConversationLock, Failure> {
        let reserve = self.config.deadline_reserve;
        let give_up = Deadline::after(self.config.conversation_lock_wait.min(deadline.remaining()));
        let mut wait = Duration::from_millis(50);
        loop {
            let until = self.hold_until(deadline);
            match self
                .conversations
                .lock(conversation, until)
                .await
                .map_err(Failure::store)?
            {
                Locked::Acquired(lock) => return Ok(lock),
                Locked::Busy {
                    settle_until_ms: Some(until),
                } => {
                    return Err(Failure::Transient(
                        Transient::new(
                            "conversation_settling",
                            "a write for this conversation may still commit in ServiceNow",
                        )
                        .settling(until),
                    ))
                }
                Locked::Busy { .. }
                    if give_up.allows(wait, Duration::ZERO) && deadline.allows(wait, reserve) =>
                {
                    tokio::time::sleep(shared::retry::jitter(wait)).await;
                    wait = (wait * 2).min(Duration::from_millis(800));
                }
                Locked::Busy { .. } => {
                    return Err(Failure::Transient(Transient::new(
                        "conversation_busy",
                        "another invocation is applying an event of this conversation",
                    )))
                }
            }
        }
    }

    /// With the lock held. `reconcile`: an earlier attempt may have created the incident without recording
    /// it. `check_notes`: an earlier attempt of this event may already have written its note. Returns what
    /// was done and the incident to record for the conversation.
    async fn under_lock(
        &self,
        mapped: &Mapped<'_>,
        known: Option<KnownIncident>,
        reconcile: bool,
        check_notes: bool,
        deadline: Deadline,
        ids: &Ids<'_>,
    ) -> Result<(Done, Option<KnownIncident>), Failure> {
        match known {
            Some(incident) => {
                self.update_existing(mapped, incident, check_notes, deadline, ids)
                    .await
            }
            None => {
                self.create_or_adopt(mapped, mapped.incident(), reconcile, None, deadline, ids)
                    .await
            }
        }
    }

    /// Creates the conversation's incident from `draft` — or, when `reconcile` finds one an interrupted
    /// attempt made (by this event: its note is there; by another: this event's note is still to write),
    /// adopts it and continues as an update.
    async fn create_or_adopt(
        &self,
        mapped: &Mapped<'_>,
        draft: IncidentDraft,
        reconcile: bool,
        replaces: Option<String>,
        deadline: Deadline,
        ids: &Ids<'_>,
    ) -> Result<(Done, Option<KnownIncident>), Failure> {
        let (found, reconciled) = self
            .create_with_retries(&draft, reconcile, deadline, ids)
            .await
            .map_err(|e| self.write_failure("servicenow_rejected", e))?;
        let incident = KnownIncident {
            sys_id: found.sys_id,
            number: found.number.clone(),
            // Levels are known only for an incident made here.
            impact: (!reconciled).then_some(draft.impact),
            urgency: (!reconciled).then_some(draft.urgency),
            replaces,
        };
        if reconciled {
            return Box::pin(self.update_existing(mapped, incident, true, deadline, ids)).await;
        }
        Ok((Done::Created(found.number), Some(incident)))
    }

    /// A later event for an existing incident: one work note (unless the profile ignores repeats), raising
    /// levels the profile allows; a deleted incident is replaced once.
    async fn update_existing(
        &self,
        mapped: &Mapped<'_>,
        incident: KnownIncident,
        check_notes: bool,
        deadline: Deadline,
        ids: &Ids<'_>,
    ) -> Result<(Done, Option<KnownIncident>), Failure> {
        let note = match (mapped.update_note(), mapped.on_repeat) {
            (Some(note), OnRepeat::Update) => with_event_ref(&note, ids.event_key),
            _ if check_notes => {
                // Ignoring repeats, but this event may be the one that created the incident.
                let number = incident.number.clone();
                return Ok((Done::Reconciled(number), Some(incident)));
            }
            _ => {
                let number = incident.number.clone();
                return Ok((Done::Ignored(number), Some(incident)));
            }
        };
        match self
            .update_with_retries(mapped, &incident, &note, check_notes, deadline, ids)
            .await
        {
            Ok((done, levels)) => {
                let updated = KnownIncident {
                    impact: levels.0.or(incident.impact),
                    urgency: levels.1.or(incident.urgency),
                    ..incident
                };
                Ok((done, Some(updated)))
            }
            Err(WriteError::Gone) => self.replace_deleted(mapped, incident, deadline, ids).await,
            Err(e) => Err(self.write_failure("servicenow_update_rejected", e)),
        }
    }

    /// The conversation's incident answered 404: ServiceNow no longer has it. Creates a new one that says so,
    /// once: if the replacement is gone too, it is an ACL or a deletion policy, and a loop would not help.
    async fn replace_deleted(
        &self,
        mapped: &Mapped<'_>,
        gone: KnownIncident,
        deadline: Deadline,
        ids: &Ids<'_>,
    ) -> Result<(Done, Option<KnownIncident>), Failure> {
        if let Some(original) = &gone.replaces {
            return Err(Failure::Permanent(Permanent {
                code: "incident_gone",
                detail: format!(
                    "incident {} (which replaced the deleted {original}) answered 404 to an update: deleted again, \
                     or an ACL keeps the integration user from reading or updating it",
                    gone.number
                ),
                http_status: Some(404),
            }));
        }
        warn!(conversation_id = ids.conversation_id, incident_number = %gone.number,
              "the conversation's incident no longer exists in ServiceNow; creating a replacement");
        let mut draft = mapped.incident();
        draft.work_notes = format!(
            "{}\nThis incident replaces {} for the same Genesys conversation: ServiceNow no longer has it (deleted).",
            draft.work_notes, gone.number
        );
        if let (Some(note), OnRepeat::Update) = (mapped.update_note(), mapped.on_repeat) {
            // The event that found the incident gone: its own note goes onto the replacement.
            draft.work_notes = format!("{}\n\n{note}", draft.work_notes);
        }
        // Reconcile first: an earlier attempt may have made the replacement and died before recording it.
        self.create_or_adopt(mapped, draft, true, Some(gone.number), deadline, ids)
            .await
    }

    /// Adds `note` (which carries the event's reference) to the incident, retrying transient failures. When
    /// an earlier attempt may have written it (`check_notes`, or after an ambiguous failure), the incident's
    /// work notes are read first and a note already there is not written again. Returns the levels sent.
    async fn update_with_retries(
        &self,
        mapped: &Mapped<'_>,
        incident: &KnownIncident,
        note: &str,
        check_notes: bool,
        deadline: Deadline,
        ids: &Ids<'_>,
    ) -> Result<(Done, (Option<u8>, Option<u8>)), WriteError> {
        self.retrier
            .run(
                deadline,
                |a: Attempt| {
                    let check_notes = check_notes || a.after_ambiguous;
                    self.update_attempt(mapped, incident, note, check_notes, ids)
                },
                |e, n| log_retry(ids, e, n),
            )
            .await
    }

    async fn update_attempt(
        &self,
        mapped: &Mapped<'_>,
        incident: &KnownIncident,
        note: &str,
        check_notes: bool,
        ids: &Ids<'_>,
    ) -> Result<(Done, (Option<u8>, Option<u8>)), WriteError> {
        let wanted = mapped.levels();
        let raise = |which: Raise, new: u8, known: Option<u8>| {
            mapped.raise.contains(&which) && known.is_none_or(|k| new < k)
        };
        let may_raise = raise(Raise::Impact, wanted.impact, incident.impact)
            || raise(Raise::Urgency, wanted.urgency, incident.urgency);
        let state = if check_notes || may_raise {
            match self.servicenow.incident_state(&incident.sys_id).await? {
                None => return Err(WriteError::Gone),
                Some(state) => Some(state),
            }
        } else {
            None
        };
        if check_notes
            && state
                .as_ref()
                .is_some_and(|s| s.work_notes.contains(&event_ref(ids.event_key)))
        {
            return Ok((Done::Reconciled(incident.number.clone()), (None, None)));
        }
        let mut fields = serde_json::Map::new();
        fields.insert("work_notes".into(), note.into());
        // The levels the incident has after this update (for the conversation record).
        let mut sent = (None, None);
        if let Some(state) = &state {
            for (which, new, current, after) in [
                (Raise::Impact, wanted.impact, state.impact, &mut sent.0),
                (Raise::Urgency, wanted.urgency, state.urgency, &mut sent.1),
            ] {
                *after = current;
                if raise(which, new, current) {
                    let field = if which == Raise::Impact {
                        "impact"
                    } else {
                        "urgency"
                    };
                    fields.insert(field.into(), new.to_string().into());
                    *after = Some(new);
                }
            }
        }
        match self
            .servicenow
            .update_incident(&incident.sys_id, &fields)
            .await
        {
            Ok(_) => Ok((Done::Updated(incident.number.clone()), sent)),
            Err(e) if e.http_status() == Some(404) => Err(WriteError::Gone),
            Err(e) => Err(self.unconfirmed_if_ambiguous(e)),
        }
    }

    /// Creates the incident, retrying transient failures within the deadline. After an ambiguous failure
    /// (the create may have happened) or when an earlier attempt may have created it, looks the incident up
    /// by `correlation_id` before creating again. Returns the incident and whether it was found.
    async fn create_with_retries(
        &self,
        draft: &IncidentDraft,
        reconcile: bool,
        deadline: Deadline,
        ids: &Ids<'_>,
    ) -> Result<(IncidentRef, bool), WriteError> {
        // The caller is looked up once, by the first attempt that gets that far.
        let caller = tokio::sync::OnceCell::new();
        self.retrier
            .run(
                deadline,
                |a: Attempt| {
                    self.create_attempt(draft, &caller, reconcile || a.after_ambiguous, ids)
                },
                |e, n| log_retry(ids, e, n),
            )
            .await
    }

    async fn create_attempt(
        &self,
        draft: &IncidentDraft,
        caller: &tokio::sync::OnceCell<Option<String>>,
        reconcile: bool,
        ids: &Ids<'_>,
    ) -> Result<(IncidentRef, bool), WriteError> {
        if reconcile {
            if let Some(found) = self
                .servicenow
                .find_by_correlation_id(&draft.correlation_id)
                .await?
            {
                return Ok((found, true));
            }
        }
        let mut body = draft.clone();
        if body.caller_id.is_none() {
            body.caller_id = caller
                .get_or_try_init(|| self.resolve_caller(draft))
                .await?
                .clone();
        }
        body.work_notes = with_event_ref(&draft.work_notes, ids.event_key);
        match self.servicenow.create_incident(&body).await {
            // An Import Set transform found it: as if the lookup had.
            Ok(created) => Ok((created.incident, created.existed)),
            Err(e) => Err(self.unconfirmed_if_ambiguous(e)),
        }
    }

    /// A write that failed without saying whether it was applied. With a settle window it is not retried in
    /// this invocation: ServiceNow may commit it long after the client gave up.
    fn unconfirmed_if_ambiguous(&self, e: ServiceNowError) -> WriteError {
        match e.ambiguous() && !self.config.settle.is_zero() {
            true => WriteError::Unconfirmed(e),
            false => WriteError::ServiceNow(e),
        }
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
        let attributes = vec![
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
        ];
        let body = record.body.clone().unwrap_or_default();
        let body = if body.is_empty() {
            "{}".to_string()
        } else {
            body
        };
        let attributes = fit_attributes(&body, attributes, DEAD_LETTER_MAX_BYTES);
        let sent = self
            .queues
            .dead_letter(DeadLetter { body, attributes })
            .await;
        match sent {
            Ok(_) => {
                error!(message_id = ids.message_id, correlation_id = ids.correlation_id,
                       conversation_id = ids.conversation_id,
                       idempotency_key = key.unwrap_or(""), reason = why.code, detail = %why.detail,
                       http_status = why.http_status.unwrap_or(0), "permanent failure dead-lettered");
                shared::metrics::count("DeadLetteredByReason", ("Reason", why.code), 1);
                Outcome::DeadLettered {
                    reason: format!("{}: {}", why.code, why.detail),
                }
            }
            Err(e) => {
                error!(message_id = ids.message_id, error = %e,
                       "could not dead-letter; record returned to the queue");
                Outcome::Retry {
                    reason: "dead-letter queue unavailable".into(),
                    delay: None,
                }
            }
        }
    }
}

/// Why a create or update did not happen.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    /// 404 on an update: the incident is gone (deleted, or hidden by an ACL).
    #[error("the incident is gone")]
    Gone,
    /// It may have been applied without an answer; not retried before the settle window passed.
    #[error("{0} (it may have been applied)")]
    Unconfirmed(ServiceNowError),
    /// The write itself failed.
    #[error(transparent)]
    ServiceNow(ServiceNowError),
    /// A read before the write failed (a lookup, the caller, the incident's notes): nothing was written.
    #[error(transparent)]
    Read(ServiceNowError),
}

impl Retryable for WriteError {
    fn class(&self) -> FailureClass {
        match self {
            // Ends the retries of this invocation; the record is given back to the queue.
            WriteError::Gone | WriteError::Unconfirmed(_) => FailureClass::Permanent,
            WriteError::ServiceNow(e) | WriteError::Read(e) => e.class(),
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            WriteError::ServiceNow(e) | WriteError::Read(e) => e.retry_after(),
            _ => None,
        }
    }
    fn ambiguous(&self) -> bool {
        match self {
            WriteError::Gone | WriteError::Read(_) => false,
            WriteError::Unconfirmed(_) => true,
            WriteError::ServiceNow(e) => e.ambiguous(),
        }
    }
    fn out_of_time(budget: Duration, started: bool) -> Self {
        WriteError::ServiceNow(ServiceNowError::out_of_time(budget, started))
    }
}

fn log_retry(ids: &Ids<'_>, e: &impl std::fmt::Display, n: RetryNotice) {
    info!(message_id = ids.message_id, correlation_id = ids.correlation_id, conversation_id = ids.conversation_id,
          failed_attempt = n.failed_attempt, delay_ms = n.delay.as_millis() as u64, error = %e, "retrying ServiceNow");
}

/// What `?` makes of a failed read before a write.
impl From<ServiceNowError> for WriteError {
    fn from(e: ServiceNowError) -> Self {
        WriteError::Read(e)
    }
}

/// How often SQS has delivered the record (1 on its first receive).
fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The longest a received record can still be kept invisible: SQS allows 12 hours from its first receive.
fn visibility_left(record: &SqsMessage) -> Duration {
    const MAX: u64 = 12 * 3600 * 1000;
    let first = record
        .attributes
        .get("ApproximateFirstReceiveTimestamp")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(epoch_ms);
    let used = epoch_ms().saturating_sub(first);
    // A minute of margin for the clocks and the call itself.
    Duration::from_millis(MAX.saturating_sub(used).saturating_sub(60_000))
}

/// The dead-letter queue's `MaximumMessageSize` (template.yaml).
const DEAD_LETTER_MAX_BYTES: usize = 256 * 1024;

/// The attributes that fit with `body` under `limit` (SQS counts each attribute's name, type and value):
/// the least needed dropped first, the reason last, so a body near the limit is still dead-lettered, with
/// as much of its reason as fits, instead of being refused by SQS and redriven without one.
fn fit_attributes(
    body: &str,
    mut attributes: Vec<(&'static str, String)>,
    limit: usize,
) -> Vec<(&'static str, String)> {
    const DROP_ORDER: [&str; 8] = [
        "failure_detail",
        "received_at",
        "failed_at",
        "event_type",
        "correlation_id",
        "http_status",
        "source_message_id",
        "idempotency_key",
    ];
    let size = |attributes: &[(&str, String)]| {
        body.len()
            + attributes
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>()
    };
    for name in DROP_ORDER {
        if size(&attributes) <= limit {
            break;
        }
        attributes.retain(|(k, _)| *k != name);
    }
    attributes
}

fn truncate(s: &str, max: usize) -> String {
    shared::incident::truncate_chars(s, max)
}

pub use config::{build, Config, ServiceNowSettings, WriterConfig};
