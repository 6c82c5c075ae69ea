//! The writer's decisions over in-memory fakes of its edges: every claim state × every way a ServiceNow call
//! can end (answered, refused, failed, or succeeded without telling us).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use serde_json::Value;

use shared::clock::epoch_ms;
use shared::failure::FailureClass;
use shared::keys::{payload_hash, KeyConfig};
use shared::retry::{Deadline, RetryPolicy};
use shared::{InboundEvent, IncidentDraft, Mapping};

use crate::conversations::{ClaimCompletion, ConversationLock, KnownIncident, Locked};
use crate::idempotency::{Claim, StoreError};
use crate::ports::{Claims, Conversations, DeadLetter, Incidents, Queues};
use crate::servicenow::{Created, IncidentRef, IncidentState, ServiceNowError};
use crate::{Outcome, Writer, WriterConfig};

fn store_down(operation: &'static str) -> StoreError {
    StoreError {
        operation,
        reason: "fake store unavailable".into(),
        class: FailureClass::Transient,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ClaimStatus {
    InProgress {
        lease_until: u64,
        token: String,
        /// Held after a write that may still commit.
        settle_until: Option<u64>,
    },
    Completed {
        number: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ClaimRecord {
    hash: String,
    status: ClaimStatus,
    /// Set by a release: how long the record is kept (`Some(None)`: released with the default TTL).
    released: Option<Option<Duration>>,
}

type ClaimRecords = Arc<Mutex<HashMap<String, ClaimRecord>>>;

/// The idempotency table's claim semantics, in memory.
#[derive(Default)]
struct FakeClaims {
    records: ClaimRecords,
    down: AtomicBool,
    tokens: AtomicUsize,
    /// Completions written on their own.
    completions: AtomicUsize,
}

impl FakeClaims {
    fn record(&self, key: &str) -> Option<ClaimRecord> {
        self.records.lock().unwrap().get(key).cloned()
    }
}

impl Claims for FakeClaims {
    async fn claim(&self, key: &str, hash: &str, until: u64) -> Result<Claim, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(store_down("PutItem"));
        }
        let mut records = self.records.lock().unwrap();
        let token = format!("token-{}", self.tokens.fetch_add(1, Ordering::SeqCst));
        let fresh = ClaimRecord {
            hash: hash.into(),
            status: ClaimStatus::InProgress {
                lease_until: until,
                token: token.clone(),
                settle_until: None,
            },
            released: None,
        };
        let Some(existing) = records.get(key) else {
            records.insert(key.into(), fresh);
            return Ok(Claim::Acquired {
                token,
                retaken: false,
            });
        };
        if existing.hash != hash {
            return Ok(Claim::Conflict);
        }
        match &existing.status {
            ClaimStatus::Completed { number } => Ok(Claim::Completed {
                incident_number: Some(number.clone()),
            }),
            ClaimStatus::InProgress { lease_until, .. } if *lease_until < epoch_ms() => {
                records.insert(key.into(), fresh);
                Ok(Claim::Acquired {
                    token,
                    retaken: true,
                })
            }
            ClaimStatus::InProgress { settle_until, .. } => Ok(Claim::InFlight {
                settle_until_ms: settle_until.filter(|u| *u > epoch_ms()),
            }),
        }
    }

    async fn complete(&self, key: &str, token: &str, number: &str) -> Result<bool, StoreError> {
        self.completions.fetch_add(1, Ordering::SeqCst);
        Ok(complete_claim(
            &mut self.records.lock().unwrap(),
            key,
            token,
            number,
        ))
    }

    async fn release(
        &self,
        key: &str,
        token: &str,
        keep: Option<Duration>,
        settle_until_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap();
        if let Some(r) = records.get_mut(key) {
            if let ClaimStatus::InProgress {
                token: t,
                lease_until,
                settle_until,
            } = &mut r.status
            {
                if t == token {
                    *lease_until = settle_until_ms.unwrap_or(0);
                    *settle_until = settle_until_ms;
                    r.released = Some(keep);
                }
            }
        }
        Ok(())
    }
}

fn complete_claim(
    records: &mut HashMap<String, ClaimRecord>,
    key: &str,
    token: &str,
    number: &str,
) -> bool {
    match records.get_mut(key) {
        Some(r) if matches!(&r.status, ClaimStatus::InProgress { token: t, .. } if t == token) => {
            r.status = ClaimStatus::Completed {
                number: number.into(),
            };
            true
        }
        _ => false,
    }
}

#[derive(Debug, Clone, Default)]
struct ConversationRecord {
    incident: Option<KnownIncident>,
    lock: Option<(String, u64)>,
    settle_until: Option<u64>,
}

/// How a scripted record-and-complete transaction ends.
#[derive(Debug, Clone, Copy)]
enum Together {
    /// Refused: nothing written.
    Refuse,
    /// Written, but the answer was lost.
    CommitThenLose,
    /// The claim is taken over by another invocation just before (its condition fails).
    ClaimTakenOver,
}

#[derive(Default)]
struct FakeConversations {
    records: Mutex<HashMap<String, ConversationRecord>>,
    tokens: AtomicUsize,
    /// The claims [`Conversations::record_completing`] completes: shared with a [`FakeClaims`] by
    /// [`fake_stores`]; by default none, so the writer records and completes each on its own.
    claims: ClaimRecords,
    together: Mutex<VecDeque<Together>>,
    /// Record-and-complete transactions written, and records written on their own.
    transactions: AtomicUsize,
    singles: AtomicUsize,
}

/// Claims and conversations over one table, as DynamoDB has them: one transaction can write both.
fn fake_stores() -> (FakeClaims, FakeConversations) {
    let claims = FakeClaims::default();
    let conversations = FakeConversations {
        claims: claims.records.clone(),
        ..FakeConversations::default()
    };
    (claims, conversations)
}

impl Conversations for FakeConversations {
    async fn lock(&self, key: &str, until_ms: u64) -> Result<Locked, StoreError> {
        let mut records = self.records.lock().unwrap();
        let existed = records.contains_key(key);
        let record = records.entry(key.into()).or_default();
        if record.lock.as_ref().is_some_and(|(_, u)| *u >= epoch_ms()) {
            return Ok(Locked::Busy {
                settle_until_ms: record.settle_until.filter(|u| *u > epoch_ms()),
            });
        }
        let token = format!("lock-{}", self.tokens.fetch_add(1, Ordering::SeqCst));
        record.lock = Some((token.clone(), until_ms));
        record.settle_until = None;
        Ok(Locked::Acquired(ConversationLock {
            token,
            incident: record.incident.clone(),
            existed,
        }))
    }

    async fn record(
        &self,
        key: &str,
        token: &str,
        incident: &KnownIncident,
    ) -> Result<bool, StoreError> {
        self.singles.fetch_add(1, Ordering::SeqCst);
        let mut records = self.records.lock().unwrap();
        let record = records.entry(key.into()).or_default();
        let held = record.lock.as_ref().is_some_and(|(t, _)| t == token);
        if held {
            record.incident = Some(incident.clone());
            record.lock = None;
        }
        Ok(held)
    }

    async fn record_completing(
        &self,
        key: &str,
        token: &str,
        incident: &KnownIncident,
        claim: ClaimCompletion<'_>,
    ) -> Result<bool, StoreError> {
        let step = self.together.lock().unwrap().pop_front();
        let mut claims = self.claims.lock().unwrap();
        if let (Some(Together::ClaimTakenOver), Some(r)) = (step, claims.get_mut(claim.key)) {
            if let ClaimStatus::InProgress { token, .. } = &mut r.status {
                *token = "taken-over".into();
            }
        }
        if let Some(Together::Refuse) = step {
            return Err(store_down("TransactWriteItems"));
        }
        let mut records = self.records.lock().unwrap();
        let lock_held = records
            .get(key)
            .and_then(|r| r.lock.as_ref())
            .is_some_and(|(t, _)| t == token);
        let claim_held = claims.get(claim.key).is_some_and(
            |r| matches!(&r.status, ClaimStatus::InProgress { token: t, .. } if t == claim.token),
        );
        if !(lock_held && claim_held) {
            return Ok(false);
        }
        self.transactions.fetch_add(1, Ordering::SeqCst);
        complete_claim(&mut claims, claim.key, claim.token, claim.number);
        let record = records.entry(key.into()).or_default();
        record.incident = Some(incident.clone());
        record.lock = None;
        match step {
            Some(Together::CommitThenLose) => Err(store_down("TransactWriteItems")),
            _ => Ok(true),
        }
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap();
        if let Some(record) = records.get_mut(key) {
            if record.lock.as_ref().is_some_and(|(t, _)| t == token) {
                record.lock = None;
            }
        }
        Ok(())
    }

    async fn hold(&self, key: &str, token: &str, until_ms: u64) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap();
        if let Some(record) = records.get_mut(key) {
            if record.lock.as_ref().is_some_and(|(t, _)| t == token) {
                record.lock = Some((token.into(), until_ms));
                record.settle_until = Some(until_ms);
            }
        }
        Ok(())
    }
}

/// How one scripted ServiceNow write ends.
#[derive(Debug, Clone)]
enum Step {
    /// Applied and answered.
    Answer,
    /// Not applied; answered with this error.
    Refuse(ServiceNowError),
    /// Applied, but the answer was lost (a timeout after the commit, a dropped connection).
    CommitThenLose,
    /// Timed out, and ServiceNow commits it later (when the test says time has passed).
    CommitLater,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FakeIncident {
    sys_id: String,
    number: String,
    correlation_id: String,
    /// Newest last.
    notes: Vec<String>,
    impact: u8,
    urgency: u8,
}

/// ServiceNow's incident table, in memory; writes follow a script (then answer normally).
#[derive(Default)]
struct FakeServiceNow {
    incidents: Mutex<Vec<FakeIncident>>,
    creates: Mutex<VecDeque<Step>>,
    updates: Mutex<VecDeque<Step>>,
    /// Creates still committing: (correlation_id, note).
    late: Mutex<Vec<(String, String)>>,
    /// Every lookup by correlation_id fails so.
    lookup_fails: Mutex<Option<ServiceNowError>>,
}

impl FakeServiceNow {
    fn scripted(creates: &[Step], updates: &[Step]) -> Self {
        Self {
            creates: Mutex::new(creates.iter().cloned().collect()),
            updates: Mutex::new(updates.iter().cloned().collect()),
            ..Self::default()
        }
    }

    fn insert(&self, correlation_id: &str, note: &str) -> IncidentRef {
        let mut incidents = self.incidents.lock().unwrap();
        let n = incidents.len() + 1;
        let incident = FakeIncident {
            sys_id: format!("sys-{n}"),
            number: format!("INC{n:07}"),
            correlation_id: correlation_id.into(),
            notes: vec![note.into()],
            impact: 3,
            urgency: 3,
        };
        let found = IncidentRef {
            sys_id: incident.sys_id.clone(),
            number: incident.number.clone(),
        };
        incidents.push(incident);
        found
    }

    fn incidents(&self) -> Vec<FakeIncident> {
        self.incidents.lock().unwrap().clone()
    }

    /// The creates still committing land.
    fn commit_late_creates(&self) {
        let late: Vec<_> = self.late.lock().unwrap().drain(..).collect();
        for (correlation_id, note) in late {
            self.insert(&correlation_id, &note);
        }
    }

    fn next(script: &Mutex<VecDeque<Step>>) -> Step {
        script.lock().unwrap().pop_front().unwrap_or(Step::Answer)
    }
}

fn lost() -> ServiceNowError {
    ServiceNowError::Transport("operation timed out".into())
}

fn status(status: u16) -> ServiceNowError {
    ServiceNowError::Status {
        status,
        retry_after: None,
    }
}

impl Incidents for FakeServiceNow {
    async fn create_incident(&self, draft: &IncidentDraft) -> Result<Created, ServiceNowError> {
        match Self::next(&self.creates) {
            Step::Refuse(e) => Err(e),
            Step::Answer => Ok(Created {
                incident: self.insert(&draft.correlation_id, &draft.work_notes),
                existed: false,
            }),
            Step::CommitThenLose => {
                self.insert(&draft.correlation_id, &draft.work_notes);
                Err(lost())
            }
            Step::CommitLater => {
                self.late
                    .lock()
                    .unwrap()
                    .push((draft.correlation_id.clone(), draft.work_notes.clone()));
                Err(lost())
            }
        }
    }

    async fn update_incident(
        &self,
        sys_id: &str,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<IncidentRef, ServiceNowError> {
        if !self.incidents().iter().any(|i| i.sys_id == sys_id) {
            return Err(status(404));
        }
        let step = Self::next(&self.updates);
        if let Step::Refuse(e) = step {
            return Err(e);
        }
        if let Step::CommitLater = step {
            unimplemented!("late commits are scripted for creates");
        }
        let mut incidents = self.incidents.lock().unwrap();
        let Some(incident) = incidents.iter_mut().find(|i| i.sys_id == sys_id) else {
            return Err(status(404));
        };
        let level = |f: &str| {
            fields
                .get(f)
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
        };
        if let Some(note) = fields.get("work_notes").and_then(Value::as_str) {
            incident.notes.push(note.into());
        }
        incident.impact = level("impact").unwrap_or(incident.impact);
        incident.urgency = level("urgency").unwrap_or(incident.urgency);
        match step {
            Step::CommitThenLose => Err(lost()),
            _ => Ok(IncidentRef {
                sys_id: incident.sys_id.clone(),
                number: incident.number.clone(),
            }),
        }
    }

    async fn incident_state(&self, sys_id: &str) -> Result<Option<IncidentState>, ServiceNowError> {
        Ok(self
            .incidents()
            .into_iter()
            .find(|i| i.sys_id == sys_id)
            .map(|i| IncidentState {
                work_notes: i
                    .notes
                    .iter()
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n\n"),
                impact: Some(i.impact),
                urgency: Some(i.urgency),
            }))
    }

    async fn find_by_correlation_id(
        &self,
        correlation_id: &str,
    ) -> Result<Option<IncidentRef>, ServiceNowError> {
        if let Some(e) = self.lookup_fails.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(self
            .incidents()
            .into_iter()
            .find(|i| i.correlation_id == correlation_id)
            .map(|i| IncidentRef {
                sys_id: i.sys_id,
                number: i.number,
            }))
    }

    async fn find_caller(&self, _e164: &str) -> Result<Option<String>, ServiceNowError> {
        Ok(None)
    }
}

#[derive(Default)]
struct FakeQueues {
    sent: Mutex<Vec<DeadLetter>>,
    /// (receipt handle, delay) of each delayed redelivery.
    delayed: Mutex<Vec<(String, Duration)>>,
    /// Callback requests sent.
    callbacks: Mutex<Vec<String>>,
    callbacks_down: AtomicBool,
}

impl FakeQueues {
    fn reasons(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                l.attributes
                    .iter()
                    .find(|(k, _)| *k == "failure_reason")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }
}

impl Queues for FakeQueues {
    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), String> {
        self.sent.lock().unwrap().push(letter);
        Ok(())
    }

    async fn redeliver_after(
        &self,
        _queue_arn: &str,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), String> {
        self.delayed
            .lock()
            .unwrap()
            .push((receipt_handle.into(), delay));
        Ok(())
    }

    async fn request_callback(&self, request: String) -> Result<(), String> {
        if self.callbacks_down.load(Ordering::SeqCst) {
            return Err("fake callback queue unavailable".into());
        }
        self.callbacks.lock().unwrap().push(request);
        Ok(())
    }
}

type FakeWriter = Writer<FakeServiceNow, FakeClaims, FakeConversations, FakeQueues>;

fn config() -> WriterConfig {
    WriterConfig {
        dead_letter_queue_url: "fake-dlq".into(),
        idempotency_table: "fake-table".into(),
        idempotency_ttl: Duration::from_secs(3600),
        conversation_ttl: Duration::from_secs(14 * 24 * 3600),
        conversation_lock_wait: Duration::from_millis(200),
        key: KeyConfig::default(),
        max_concurrency: 2,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(30),
        },
        deadline_reserve: Duration::from_millis(100),
        default_caller_sys_id: None,
        settle: Duration::from_secs(60),
        events_queue_url: None,
        max_receive_count: Some(5),
        allowed_event_types: None,
        rate_limit_containers: 1,
        import_set_table: None,
        callback_requests_queue_url: None,
    }
}

fn writer(servicenow: FakeServiceNow) -> FakeWriter {
    writer_with(config(), servicenow)
}

fn writer_with(config: WriterConfig, servicenow: FakeServiceNow) -> FakeWriter {
    writer_mapping(
        config,
        Mapping::default_mapping().expect("built-in mapping"),
        servicenow,
    )
}

fn writer_mapping(
    config: WriterConfig,
    mapping: Mapping,
    servicenow: FakeServiceNow,
) -> FakeWriter {
    let (claims, conversations) = fake_stores();
    Writer::with_ports(
        config,
        mapping,
        servicenow,
        claims,
        conversations,
        FakeQueues::default(),
    )
}

const CONVERSATION: &str = "3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b";

fn customer_end() -> String {
    include_str!("../../../shared/tests/fixtures/conversation-customer-end.json").to_string()
}

fn acw() -> String {
    serde_json::json!({
        "event": format!("v2.detail.events.conversation.{CONVERSATION}.acw"),
        "data": {"conversationId": CONVERSATION, "wrapupCode": "Billing", "wrapupNotes": "refund issued",
                 "mediaType": "voice", "direction": "inbound", "eventTime": 1_795_428_120_000i64},
        "metadata": {"organizationId": "6f1a0c4e-0000-4000-8000-00000000000a",
                     "timestamp": "2026-11-23T10:02:00.000Z"}
    })
    .to_string()
}

/// The event key and payload hash the writer derives for `body`.
fn key_and_hash(body: &str) -> (String, String) {
    let event = InboundEvent::parse(body.as_bytes()).expect("valid event");
    let hash = payload_hash(&event);
    (KeyConfig::default().derive_hashed(&event, &hash).key, hash)
}

fn record(body: &str) -> SqsMessage {
    delivery(body, 1)
}

/// `body` as SQS delivers it for the `receive`-th time.
fn delivery(body: &str, receive: u32) -> SqsMessage {
    let mut message = SqsMessage::default();
    message.message_id = Some("m-1".into());
    message.receipt_handle = Some(format!("receipt-{receive}"));
    message.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:events".into());
    message.body = Some(body.into());
    message
        .attributes
        .insert("ApproximateReceiveCount".into(), receive.to_string());
    message
}

async fn process(w: &FakeWriter, body: &str) -> Outcome {
    process_delivery(w, delivery(body, 1)).await
}

async fn process_delivery(w: &FakeWriter, message: SqsMessage) -> Outcome {
    let report = w
        .process_batch(vec![message], Deadline::after(Duration::from_secs(30)))
        .await;
    let mut outcomes = report.outcomes;
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0).1
}

impl FakeWriter {
    /// Time passes until every lease, lock and settle window has ended; creates still committing land.
    fn time_passes(&self) {
        let past = epoch_ms() - 1;
        for r in self.store.records.lock().unwrap().values_mut() {
            if let ClaimStatus::InProgress {
                lease_until,
                settle_until,
                ..
            } = &mut r.status
            {
                *lease_until = (*lease_until).min(past);
                *settle_until = settle_until.map(|u| u.min(past));
            }
        }
        for r in self.conversations.records.lock().unwrap().values_mut() {
            if let Some((_, until)) = &mut r.lock {
                *until = (*until).min(past);
            }
            r.settle_until = r.settle_until.map(|u| u.min(past));
        }
        self.servicenow.commit_late_creates();
    }

    /// Delivers `body` until it no longer comes back (at most the queue's receive count), time passing
    /// between deliveries; the outcome of each.
    async fn deliver_until_done(&self, body: &str) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for receive in 1..=self.config.max_receive_count.unwrap_or(1) {
            let outcome = process_delivery(self, delivery(body, receive)).await;
            let again = matches!(outcome, Outcome::Retry { .. });
            outcomes.push(outcome);
            if !again {
                break;
            }
            self.time_passes();
        }
        outcomes
    }
}

/// The event's claim as the table holds it before the record arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    /// Never seen.
    New,
    /// Claimed by an invocation that died before creating anything (its lease ran out).
    DiedBeforeCreate,
    /// Claimed by an invocation that created the incident and died before recording it.
    DiedAfterCreate,
    Completed,
    /// Another invocation holds a live lease (it never creates: its lease runs out).
    InFlight,
    /// The same key with another payload.
    OtherPayload,
    /// DynamoDB unavailable.
    StoreDown,
}

/// How the creates of this record end, in order (later calls answer normally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creates {
    Answered,
    ThrottledThenAnswered,
    /// 429 with a `Retry-After` longer than an invocation waits: back to the queue for that long.
    ThrottledForLong,
    /// A timeout after the commit: the next attempt must find it, not create again.
    CommittedButLost,
    /// A timeout before the commit: the next attempt looks, finds nothing, creates.
    LostBeforeCommit,
    /// A timeout, and ServiceNow commits the insert later: nothing is created before it had the time to.
    CommitsAfterTimeout,
    Refused,
    AlwaysUnavailable,
}

impl Creates {
    const ALL: [Creates; 8] = [
        Creates::Answered,
        Creates::ThrottledThenAnswered,
        Creates::ThrottledForLong,
        Creates::CommittedButLost,
        Creates::LostBeforeCommit,
        Creates::CommitsAfterTimeout,
        Creates::Refused,
        Creates::AlwaysUnavailable,
    ];

    fn script(self) -> Vec<Step> {
        let throttled = |secs| {
            Step::Refuse(ServiceNowError::Status {
                status: 429,
                retry_after: Some(Duration::from_millis(secs)),
            })
        };
        match self {
            Creates::Answered => vec![],
            Creates::ThrottledThenAnswered => vec![throttled(1)],
            Creates::ThrottledForLong => vec![throttled(3_600_000)],
            Creates::CommittedButLost => vec![Step::CommitThenLose],
            Creates::LostBeforeCommit => vec![Step::Refuse(lost())],
            Creates::CommitsAfterTimeout => vec![Step::CommitLater],
            Creates::Refused => vec![Step::Refuse(status(400))],
            Creates::AlwaysUnavailable => vec![Step::Refuse(status(503)); 20],
        }
    }
}

/// An outcome without its details; a dead letter keeps its reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Created,
    Updated,
    Reconciled,
    Duplicate,
    DeadLettered(String),
    Retry,
}

fn dead_lettered(code: &str) -> Kind {
    Kind::DeadLettered(code.into())
}

fn kind(outcome: &Outcome) -> Kind {
    match outcome {
        Outcome::Created { .. } => Kind::Created,
        Outcome::Updated { .. } => Kind::Updated,
        Outcome::Reconciled { .. } => Kind::Reconciled,
        Outcome::Duplicate { .. } => Kind::Duplicate,
        Outcome::DeadLettered { reason } => {
            dead_lettered(reason.split(':').next().unwrap_or_default())
        }
        Outcome::Retry { .. } => Kind::Retry,
    }
}

/// The event's claim after the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Completed,
    /// Released and kept as long as a dead letter (the DLQ's retention): a replay reconciles first.
    Kept,
    /// Not touched by this record (someone else's, or never claimed).
    AsBefore,
}

/// `n - 1` retries, then `last`.
fn retries_then(n: usize, last: Kind) -> Vec<Kind> {
    let mut kinds = vec![Kind::Retry; n - 1];
    kinds.push(last);
    kinds
}

/// What must happen: (the outcome of each delivery, incidents in ServiceNow afterwards, the claim afterwards).
fn expected(before: Before, creates: Creates) -> (Vec<Kind>, usize, After) {
    let receives = config().max_receive_count.unwrap_or(1) as usize;
    let preexisting = usize::from(before == Before::DiedAfterCreate);
    let first = match before {
        Before::Completed => return (vec![Kind::Duplicate], 0, After::AsBefore),
        Before::StoreDown => {
            let last = dead_lettered("idempotency_store_unavailable");
            return (retries_then(receives, last), 0, After::AsBefore);
        }
        Before::OtherPayload => {
            return (
                vec![dead_lettered("idempotency_conflict")],
                0,
                After::AsBefore,
            )
        }
        // The dying invocation's incident is found by correlation_id: nothing is created, whatever would fail.
        Before::DiedAfterCreate => return (vec![Kind::Reconciled], 1, After::Completed),
        // Back later, when the other invocation's lease has run out: then as if it had died.
        Before::InFlight => vec![Kind::Retry],
        Before::New | Before::DiedBeforeCreate => vec![],
    };
    let receives = receives - first.len();
    let (kinds, incidents, after) = match creates {
        Creates::Answered | Creates::ThrottledThenAnswered => {
            (vec![Kind::Created], preexisting + 1, After::Completed)
        }
        Creates::ThrottledForLong | Creates::LostBeforeCommit => (
            vec![Kind::Retry, Kind::Created],
            preexisting + 1,
            After::Completed,
        ),
        Creates::CommittedButLost | Creates::CommitsAfterTimeout => {
            (vec![Kind::Retry, Kind::Reconciled], 1, After::Completed)
        }
        Creates::Refused => (vec![dead_lettered("servicenow_rejected")], 0, After::Kept),
        // Each 503 may have been applied: looked up at every next delivery, dead-lettered at the last one.
        Creates::AlwaysUnavailable => (
            retries_then(receives, dead_lettered("servicenow_write_unconfirmed")),
            0,
            After::Kept,
        ),
    };
    ([first, kinds].concat(), incidents, after)
}

async fn arrange(w: &FakeWriter, before: Before, body: &str) {
    let (key, hash) = key_and_hash(body);
    let in_progress = |lease_until| ClaimRecord {
        hash: hash.clone(),
        status: ClaimStatus::InProgress {
            lease_until,
            token: "dead-invocation".into(),
            settle_until: None,
        },
        released: None,
    };
    let record = match before {
        Before::New | Before::StoreDown => None,
        Before::DiedBeforeCreate => Some(in_progress(epoch_ms() - 1)),
        Before::DiedAfterCreate => {
            // Its note carries this event's reference, as every create does.
            let note = shared::incident::with_event_ref("created by the dead invocation", &key);
            w.servicenow
                .insert(&shared::keys::conversation_key(CONVERSATION), &note);
            Some(in_progress(epoch_ms() - 1))
        }
        Before::Completed => Some(ClaimRecord {
            hash: hash.clone(),
            status: ClaimStatus::Completed {
                number: "INC-EARLIER".into(),
            },
            released: None,
        }),
        Before::InFlight => Some(in_progress(epoch_ms() + 60_000)),
        Before::OtherPayload => Some(ClaimRecord {
            hash: "another-payload".into(),
            ..in_progress(epoch_ms() + 60_000)
        }),
    };
    if let Some(r) = record {
        w.store.records.lock().unwrap().insert(key, r);
    }
    w.store
        .down
        .store(before == Before::StoreDown, Ordering::SeqCst);
}

fn after(w: &FakeWriter, before: Option<&ClaimRecord>, body: &str) -> After {
    let (key, _) = key_and_hash(body);
    let now = w.store.record(&key);
    match now.as_ref().map(|r| (&r.status, r.released)) {
        _ if now.as_ref() == before => After::AsBefore,
        Some((ClaimStatus::Completed { .. }, _)) => After::Completed,
        Some((ClaimStatus::InProgress { .. }, Some(Some(keep))))
            if keep >= w.config.conversation_ttl =>
        {
            After::Kept
        }
        other => panic!("unexpected claim afterwards: {other:?}"),
    }
}

#[tokio::test]
async fn every_claim_state_against_every_way_a_create_ends() {
    let befores = [
        Before::New,
        Before::DiedBeforeCreate,
        Before::DiedAfterCreate,
        Before::Completed,
        Before::InFlight,
        Before::OtherPayload,
        Before::StoreDown,
    ];
    let body = customer_end();
    let mut failures = Vec::new();
    for before in befores {
        for creates in Creates::ALL {
            let w = writer(FakeServiceNow::scripted(&creates.script(), &[]));
            arrange(&w, before, &body).await;
            let claim_before = w.store.record(&key_and_hash(&body).0);
            let outcomes = w.deliver_until_done(&body).await;
            let claim_after = after(&w, claim_before.as_ref(), &body);
            // Whatever is still committing lands before the incidents are counted.
            w.time_passes();
            let got = (
                outcomes.iter().map(kind).collect::<Vec<_>>(),
                w.servicenow.incidents().len(),
                claim_after,
            );
            let want = expected(before, creates);
            if got != want {
                failures.push(format!(
                    "{before:?} × {creates:?}: got {got:?} ({outcomes:?}), want {want:?}"
                ));
            }
            let dead_letters = w.queues.reasons();
            let want_dlq = usize::from(matches!(want.0.last(), Some(Kind::DeadLettered(_))));
            if dead_letters.len() != want_dlq {
                failures.push(format!(
                    "{before:?} × {creates:?}: dead letters {dead_letters:?}"
                ));
            }
            // Exactly one incident per conversation, whatever happened.
            let incidents = w.servicenow.incidents();
            if incidents
                .iter()
                .filter(|i| i.correlation_id == shared::keys::conversation_key(CONVERSATION))
                .count()
                > 1
            {
                failures.push(format!(
                    "{before:?} × {creates:?}: duplicate incidents {incidents:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_create_committed_after_its_timeout_is_duplicated_without_a_settle_window_and_not_with_one(
) {
    let body = customer_end();
    for (settle, want_incidents) in [(Duration::ZERO, 2), (Duration::from_secs(60), 1)] {
        let w = writer_with(
            WriterConfig { settle, ..config() },
            FakeServiceNow::scripted(&[Step::CommitLater], &[]),
        );
        w.deliver_until_done(&body).await;
        w.time_passes();
        assert_eq!(
            w.servicenow.incidents().len(),
            want_incidents,
            "settle window {settle:?}"
        );
    }
}

#[tokio::test]
async fn an_unconfirmed_create_holds_the_conversation_and_its_event_until_the_settle_window_ends() {
    let w = writer(FakeServiceNow::scripted(&[Step::CommitLater], &[]));
    let outcome = process(&w, &customer_end()).await;
    let Outcome::Retry { delay, reason } = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        reason.starts_with("servicenow_write_unconfirmed"),
        "{reason}"
    );
    let delay = delay.expect("given back after the settle window");
    assert!(
        delay > Duration::from_secs(50) && delay <= w.config.settle + Duration::from_secs(1),
        "{delay:?}"
    );
    assert_eq!(
        w.queues.delayed.lock().unwrap().as_slice(),
        &[("receipt-1".to_string(), delay)],
        "redelivered only after the settle window"
    );
    // Another event of the conversation, and a copy of this one, wait too: nothing is written meanwhile.
    for body in [acw(), customer_end()] {
        let outcome = process_delivery(&w, delivery(&body, 2)).await;
        assert!(
            matches!(&outcome, Outcome::Retry { delay: Some(d), .. } if *d > Duration::from_secs(50)),
            "{outcome:?}"
        );
    }
    assert!(w.servicenow.incidents().is_empty());
    w.time_passes();
    assert_eq!(
        kind(&process_delivery(&w, delivery(&customer_end(), 3)).await),
        Kind::Reconciled
    );
    assert_eq!(
        kind(&process_delivery(&w, delivery(&acw(), 3)).await),
        Kind::Updated
    );
    assert_eq!(w.servicenow.incidents().len(), 1);
}

#[tokio::test]
async fn a_long_retry_after_is_waited_out_in_the_queue_and_the_last_receive_dead_letters_with_the_reason(
) {
    let hour = ServiceNowError::Status {
        status: 429,
        retry_after: Some(Duration::from_secs(3600)),
    };
    let w = writer(FakeServiceNow::scripted(&[Step::Refuse(hour.clone())], &[]));
    let outcome = process(&w, &customer_end()).await;
    assert!(
        matches!(&outcome, Outcome::Retry { delay: Some(d), .. } if *d >= Duration::from_secs(3600)),
        "{outcome:?}"
    );
    assert_eq!(w.queues.delayed.lock().unwrap().len(), 1);

    // Throttled at every receive: the last one dead-letters it with the reason, before SQS would without.
    let w = writer(FakeServiceNow::scripted(&vec![Step::Refuse(hour); 10], &[]));
    let outcomes = w.deliver_until_done(&customer_end()).await;
    assert_eq!(
        outcomes.iter().map(kind).collect::<Vec<_>>(),
        retries_then(5, dead_lettered("servicenow_throttled"))
    );
    let letters = w.queues.sent.lock().unwrap().clone();
    let attribute = |name: &str| {
        letters[0]
            .attributes
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(attribute("http_status").as_deref(), Some("429"));
    assert!(attribute("failure_detail").is_some_and(|d| d.contains("receive 5")));
}

#[tokio::test]
async fn a_record_delivered_before_or_replayed_is_reconciled_even_without_its_claim() {
    for message in [
        delivery(&customer_end(), 2),
        {
            let mut replayed = record(&customer_end());
            let mut reason = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
            reason.string_value = Some("servicenow_unavailable".into());
            reason.data_type = Some("String".into());
            replayed
                .message_attributes
                .insert("failure_reason".into(), reason);
            replayed
        },
        {
            let mut old = record(&customer_end());
            let sent = epoch_ms() - config().idempotency_ttl.as_millis() as u64 - 1000;
            old.attributes
                .insert("SentTimestamp".into(), sent.to_string());
            old
        },
    ] {
        // The claim is gone (expired), but the incident exists: found, not created again.
        let w = writer(FakeServiceNow::default());
        let (key, _) = key_and_hash(&customer_end());
        let note = shared::incident::with_event_ref("created earlier", &key);
        w.servicenow
            .insert(&shared::keys::conversation_key(CONVERSATION), &note);
        assert_eq!(kind(&process_delivery(&w, message).await), Kind::Reconciled);
        assert_eq!(w.servicenow.incidents().len(), 1);
    }
}

#[tokio::test]
async fn an_untrustworthy_lookup_never_leads_to_a_create() {
    let w = writer(FakeServiceNow::default());
    *w.servicenow.lookup_fails.lock().unwrap() = Some(ServiceNowError::Untrustworthy("hidden"));
    let outcomes = w
        .deliver_until_done(&customer_end())
        .await
        .iter()
        .map(kind)
        .collect::<Vec<_>>();
    // The first delivery creates (nothing may have been written before); a lookup is only asked when it may.
    assert_eq!(outcomes, vec![Kind::Created]);
    let w = writer(FakeServiceNow::scripted(&[Step::Refuse(lost())], &[]));
    *w.servicenow.lookup_fails.lock().unwrap() = Some(ServiceNowError::Untrustworthy("hidden"));
    let outcomes = w.deliver_until_done(&customer_end()).await;
    assert_eq!(
        outcomes.iter().map(kind).collect::<Vec<_>>(),
        retries_then(5, dead_lettered("servicenow_lookup_untrustworthy"))
    );
    assert!(w.servicenow.incidents().is_empty());
}

#[tokio::test]
async fn an_event_type_outside_the_writers_allow_list_is_dead_lettered() {
    let w = writer_with(
        WriterConfig {
            allowed_event_types: Some(vec!["v2.detail.events.conversation.{id}.acw".into()]),
            ..config()
        },
        FakeServiceNow::default(),
    );
    assert_eq!(
        kind(&process(&w, &customer_end()).await),
        dead_lettered("event_type_not_allowed")
    );
    assert_eq!(kind(&process(&w, &acw()).await), Kind::Created);
}

/// How the work-note update of a later event ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Updates {
    Answered,
    /// Written, answer lost: the next attempt reads the journal and does not write it twice.
    CommittedButLost,
    LostBeforeCommit,
    Refused,
    AlwaysUnavailable,
    /// The incident was deleted in ServiceNow: one replacement carrying the event's note.
    IncidentDeleted,
}

#[tokio::test]
async fn every_way_a_later_events_work_note_ends() {
    let cases = [
        (Updates::Answered, vec![Kind::Updated], 1, 1),
        (
            Updates::CommittedButLost,
            vec![Kind::Retry, Kind::Reconciled],
            1,
            1,
        ),
        (
            Updates::LostBeforeCommit,
            vec![Kind::Retry, Kind::Updated],
            1,
            1,
        ),
        (
            Updates::Refused,
            vec![dead_lettered("servicenow_update_rejected")],
            1,
            0,
        ),
        (
            Updates::AlwaysUnavailable,
            retries_then(5, dead_lettered("servicenow_write_unconfirmed")),
            1,
            0,
        ),
        (Updates::IncidentDeleted, vec![Kind::Created], 1, 1),
    ];
    let mut failures = Vec::new();
    for (updates, want_kinds, want_incidents, want_notes) in cases {
        let script = match updates {
            Updates::Answered | Updates::IncidentDeleted => vec![],
            Updates::CommittedButLost => vec![Step::CommitThenLose],
            Updates::LostBeforeCommit => vec![Step::Refuse(lost())],
            Updates::Refused => vec![Step::Refuse(status(400))],
            Updates::AlwaysUnavailable => vec![Step::Refuse(status(503)); 20],
        };
        let w = writer(FakeServiceNow::scripted(&[], &script));
        assert_eq!(kind(&process(&w, &customer_end()).await), Kind::Created);
        if updates == Updates::IncidentDeleted {
            w.servicenow.incidents.lock().unwrap().clear();
        }
        let outcomes = w.deliver_until_done(&acw()).await;
        let incidents = w.servicenow.incidents();
        let (acw_key, _) = key_and_hash(&acw());
        let notes = incidents
            .iter()
            .flat_map(|i| &i.notes)
            .filter(|n| n.contains(&shared::incident::event_ref(&acw_key)))
            .count();
        let got = (
            outcomes.iter().map(kind).collect::<Vec<_>>(),
            incidents.len(),
            notes,
        );
        let want = (want_kinds, want_incidents, want_notes);
        if got != want {
            failures.push(format!(
                "{updates:?}: got {got:?} ({outcomes:?}), want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_body_near_the_queue_limit_is_dead_lettered_with_the_reason_that_fits() {
    // Before: 9 attributes on top of a body near 256 KiB made the DLQ refuse it, and SQS later moved it
    // without any reason.
    let w = writer(FakeServiceNow::scripted(&[Step::Refuse(status(400))], &[]));
    let mut event: Value = serde_json::from_str(&customer_end()).unwrap();
    // 150 bytes short of the limit: room for the reason and the key, not for the rest.
    let base = event.to_string().len() + r#","padding":"""#.len();
    event["data"]["padding"] = Value::String("x".repeat(256 * 1024 - 150 - base));
    let body = event.to_string();
    assert_eq!(body.len(), 256 * 1024 - 150);
    assert_eq!(
        kind(&process(&w, &body).await),
        dead_lettered("servicenow_rejected")
    );
    let letter = w.queues.sent.lock().unwrap()[0].clone();
    let names: Vec<&str> = letter
        .attributes
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| *k)
        .collect();
    assert!(names.contains(&"failure_reason"), "{names:?}");
    assert!(!names.contains(&"failure_detail"), "{names:?}");
    let size: usize = letter.body.len()
        + letter
            .attributes
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| k.len() + 6 + v.len())
            .sum::<usize>();
    assert!(size <= 256 * 1024, "{size}");
    // A small body keeps every attribute.
    let w = writer(FakeServiceNow::scripted(&[Step::Refuse(status(400))], &[]));
    process(&w, &customer_end()).await;
    let letter = w.queues.sent.lock().unwrap()[0].clone();
    assert!(letter
        .attributes
        .iter()
        .any(|(k, _)| *k == "failure_detail"));
}

/// The one conversation's record: its incident recorded, and unlocked.
fn assert_recorded_and_unlocked(w: &FakeWriter) -> KnownIncident {
    let record = w
        .conversations
        .records
        .lock()
        .unwrap()
        .values()
        .next()
        .cloned();
    let record = record.expect("a conversation record");
    assert!(record.lock.is_none(), "{record:?}");
    record.incident.expect("the incident recorded")
}

/// The conversation's record and the event's claim after one event: the incident recorded and unlocked,
/// the claim completed with its number.
fn assert_recorded_and_completed(w: &FakeWriter, body: &str) {
    let incidents = w.servicenow.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let recorded = assert_recorded_and_unlocked(w);
    assert_eq!(recorded.sys_id, incidents[0].sys_id);
    let claim = w.store.record(&key_and_hash(body).0).expect("a claim");
    assert_eq!(
        claim.status,
        ClaimStatus::Completed {
            number: recorded.number
        }
    );
}

#[tokio::test]
async fn a_conversation_event_records_its_incident_and_completes_its_claim_in_one_write() {
    let w = writer(FakeServiceNow::default());
    let body = customer_end();
    assert_eq!(kind(&process(&w, &body).await), Kind::Created);
    assert_recorded_and_completed(&w, &body);
    assert_eq!(w.conversations.transactions.load(Ordering::SeqCst), 1);
    assert_eq!(w.conversations.singles.load(Ordering::SeqCst), 0);
    assert_eq!(w.store.completions.load(Ordering::SeqCst), 0);
    // A later event of the conversation: a note, recorded the same way.
    assert_eq!(kind(&process(&w, &acw()).await), Kind::Updated);
    assert_eq!(w.conversations.transactions.load(Ordering::SeqCst), 2);
    assert_eq!(w.store.completions.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_refused_unanswered_or_half_stale_record_and_complete_still_leaves_one_incident_recorded_and_done(
) {
    for step in [
        Together::Refuse,
        Together::CommitThenLose,
        Together::ClaimTakenOver,
    ] {
        let w = writer(FakeServiceNow::default());
        w.conversations.together.lock().unwrap().push_back(step);
        let body = customer_end();
        assert_eq!(kind(&process(&w, &body).await), Kind::Created, "{step:?}");
        // Each then on its own, under its own token.
        assert_eq!(
            w.conversations.singles.load(Ordering::SeqCst),
            1,
            "{step:?}"
        );
        assert_eq!(w.store.completions.load(Ordering::SeqCst), 1, "{step:?}");
        match step {
            Together::ClaimTakenOver => {
                // The lock was still ours: the conversation is recorded; the other holder completes the claim.
                assert_recorded_and_unlocked(&w);
            }
            _ => {
                assert_recorded_and_completed(&w, &body);
                // SQS delivers it again: the completed claim suppresses it.
                let again = process_delivery(&w, delivery(&body, 2)).await;
                assert_eq!(kind(&again), Kind::Duplicate, "{step:?}");
                assert_eq!(w.servicenow.incidents().len(), 1, "{step:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_callback_request_that_cannot_be_queued_still_records_the_conversations_incident() {
    let mut file: Value =
        serde_json::from_str(include_str!("../../../shared/mappings/default.json")).unwrap();
    file["profiles"][0]["callback"] = serde_json::json!({"queue": "support",
        "when": [{"var": "disconnect_type", "in": ["TRANSPORT_FAILURE"]}]});
    let mapping = Mapping::from_json(&file.to_string()).expect("mapping with a callback");
    let w = writer_mapping(config(), mapping, FakeServiceNow::default());
    w.queues.callbacks_down.store(true, Ordering::SeqCst);
    let body = customer_end();
    assert_eq!(kind(&process(&w, &body).await), Kind::Retry);
    assert_recorded_and_unlocked(&w);
    assert!(matches!(
        w.store.record(&key_and_hash(&body).0).map(|r| r.status),
        Some(ClaimStatus::InProgress { .. })
    ));
    // The queue is back: the retry asks again, and finds the incident instead of creating one.
    w.queues.callbacks_down.store(false, Ordering::SeqCst);
    w.time_passes();
    assert!(!matches!(
        kind(&process_delivery(&w, delivery(&body, 2)).await),
        Kind::Retry | Kind::DeadLettered(_)
    ));
    assert_eq!(w.queues.callbacks.lock().unwrap().len(), 1);
    assert_recorded_and_completed(&w, &body);
}
