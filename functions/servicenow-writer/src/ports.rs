//! The writer's edges as small traits: the event claims and conversation records (DynamoDB), the incident API
//! (ServiceNow) and the dead-letter queue (SQS). The Lambda uses the real clients; the unit tests use in-memory
//! fakes, so every decision of the writer is tested without AWS.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use shared::IncidentDraft;

use crate::conversations::{ClaimCompletion, ConversationStore, KnownIncident, Locked};
use crate::idempotency::{Claim, IdempotencyStore, StoreError};
use crate::servicenow::{Created, IncidentRef, IncidentState, ServiceNowClient, ServiceNowError};

/// Event claims: one per idempotency key, with a lease.
pub trait Claims: Sync {
    /// Claims `key` for `payload_hash` until `lease_until_ms` (epoch ms).
    fn claim(
        &self,
        key: &str,
        payload_hash: &str,
        lease_until_ms: u64,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    /// Marks the key done with its incident; `Ok(false)` when the lease had been taken over.
    fn complete(
        &self,
        key: &str,
        token: &str,
        number: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Gives the lease up, keeping the record (for at least `keep`) so that the next claim reconciles;
    /// `settle_until_ms`: holds it until then instead (a write that may still commit).
    fn release(
        &self,
        key: &str,
        token: &str,
        keep: Option<Duration>,
        settle_until_ms: Option<u64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Conversation records: the conversation's incident, and a lock so its events apply one at a time.
pub trait Conversations: Sync {
    fn lock(
        &self,
        key: &str,
        until_ms: u64,
    ) -> impl Future<Output = Result<Locked, StoreError>> + Send;
    /// Records the incident and unlocks; `Ok(false)` when the lock had been taken over.
    fn record(
        &self,
        key: &str,
        token: &str,
        incident: &KnownIncident,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// [`Self::record`] and the event claim's completion, in one call; `Ok(false)`: the lock or the claim
    /// had been taken over (or this store cannot), and nothing was written.
    fn record_completing(
        &self,
        key: &str,
        token: &str,
        incident: &KnownIncident,
        claim: ClaimCompletion<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn unlock(&self, key: &str, token: &str)
        -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Keeps the lock until `until_ms` (a write that may still commit); the next holder reconciles.
    fn hold(
        &self,
        key: &str,
        token: &str,
        until_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The ServiceNow Table API calls the writer makes.
pub trait Incidents: Sync {
    fn create_incident(
        &self,
        draft: &IncidentDraft,
    ) -> impl Future<Output = Result<Created, ServiceNowError>> + Send;
    fn update_incident(
        &self,
        sys_id: &str,
        fields: &serde_json::Map<String, Value>,
    ) -> impl Future<Output = Result<IncidentRef, ServiceNowError>> + Send;
    /// `None`: the incident does not exist (404).
    fn incident_state(
        &self,
        sys_id: &str,
    ) -> impl Future<Output = Result<Option<IncidentState>, ServiceNowError>> + Send;
    fn find_by_correlation_id(
        &self,
        correlation_id: &str,
    ) -> impl Future<Output = Result<Option<IncidentRef>, ServiceNowError>> + Send;
    /// The `sys_user` with this phone number, if any.
    fn find_caller(
        &self,
        e164: &str,
    ) -> impl Future<Output = Result<Option<String>, ServiceNowError>> + Send;
}

/// A message for the dead-letter queue: the original body and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub body: String,
    /// String message attributes; empty values are left out.
    pub attributes: Vec<(&'static str, String)>,
}

/// The queues around the writer: the dead-letter queue, and the events queue a record is given back to.
pub trait Queues: Sync {
    /// Sends to the dead-letter queue. `Err` carries a reason safe to log.
    fn dead_letter(&self, letter: DeadLetter) -> impl Future<Output = Result<(), String>> + Send;
    /// Makes a received record (of the queue `queue_arn`) visible again only after `delay`
    /// (`ChangeMessageVisibility`), so a long wait costs one receive.
    fn redeliver_after(
        &self,
        queue_arn: &str,
        receipt_handle: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Asks callback-events for a callback (a JSON request on its queue).
    fn request_callback(&self, request: String) -> impl Future<Output = Result<(), String>> + Send;
}

impl Claims for IdempotencyStore {
    async fn claim(&self, key: &str, hash: &str, until: u64) -> Result<Claim, StoreError> {
        IdempotencyStore::claim(self, key, hash, until).await
    }
    async fn complete(&self, key: &str, token: &str, number: &str) -> Result<bool, StoreError> {
        IdempotencyStore::complete(self, key, token, number).await
    }
    async fn release(
        &self,
        key: &str,
        token: &str,
        keep: Option<Duration>,
        settle_until_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        IdempotencyStore::release(self, key, token, keep, settle_until_ms).await
    }
}

impl Conversations for ConversationStore {
    async fn lock(&self, key: &str, until_ms: u64) -> Result<Locked, StoreError> {
        ConversationStore::lock(self, key, until_ms).await
    }
    async fn record(
        &self,
        key: &str,
        token: &str,
        incident: &KnownIncident,
    ) -> Result<bool, StoreError> {
        ConversationStore::record(self, key, token, incident).await
    }
    async fn record_completing(
        &self,
        key: &str,
        token: &str,
        incident: &KnownIncident,
        claim: ClaimCompletion<'_>,
    ) -> Result<bool, StoreError> {
        ConversationStore::record_completing(self, key, token, incident, claim).await
    }
    async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError> {
        ConversationStore::unlock(self, key, token).await
    }
    async fn hold(&self, key: &str, token: &str, until_ms: u64) -> Result<(), StoreError> {
        ConversationStore::hold(self, key, token, until_ms).await
    }
}

impl Incidents for ServiceNowClient {
    async fn create_incident(&self, draft: &IncidentDraft) -> Result<Created, ServiceNowError> {
        ServiceNowClient::create_incident(self, draft).await
    }
    async fn update_incident(
        &self,
        sys_id: &str,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<IncidentRef, ServiceNowError> {
        ServiceNowClient::update_incident(self, sys_id, fields).await
    }
    async fn incident_state(&self, sys_id: &str) -> Result<Option<IncidentState>, ServiceNowError> {
        ServiceNowClient::incident_state(self, sys_id).await
    }
    async fn find_by_correlation_id(
        &self,
        correlation_id: &str,
    ) -> Result<Option<IncidentRef>, ServiceNowError> {
        ServiceNowClient::find_by_correlation_id(self, correlation_id).await
    }
    async fn find_caller(&self, e164: &str) -> Result<Option<String>, ServiceNowError> {
        ServiceNowClient::find_caller(self, e164).await
    }
}

/// The SQS queues: the dead-letter queue, and the events queue (its URL given, or found from the record's
/// queue ARN once).
#[derive(Debug)]
pub struct SqsQueues {
    pub sqs: aws_sdk_sqs::Client,
    pub dead_letter_queue_url: String,
    pub events_queue_url: tokio::sync::OnceCell<String>,
    pub callback_requests_queue_url: Option<String>,
}

impl SqsQueues {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        dead_letter_queue_url: String,
        events_queue_url: Option<String>,
    ) -> Self {
        Self {
            sqs,
            dead_letter_queue_url,
            events_queue_url: tokio::sync::OnceCell::new_with(events_queue_url),
            callback_requests_queue_url: None,
        }
    }

    async fn events_queue_url(&self, queue_arn: &str) -> Result<&String, String> {
        self.events_queue_url
            .get_or_try_init(|| async {
                // arn:aws:sqs:<region>:<account>:<name>
                let mut parts = queue_arn.rsplitn(3, ':');
                let (Some(name), Some(account)) = (parts.next(), parts.next()) else {
                    return Err(format!("not an SQS queue ARN: {queue_arn}"));
                };
                self.sqs
                    .get_queue_url()
                    .queue_name(name)
                    .queue_owner_aws_account_id(account)
                    .send()
                    .await
                    .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?
                    .queue_url
                    .ok_or_else(|| "GetQueueUrl answered no URL".to_string())
            })
            .await
    }
}

impl Queues for SqsQueues {
    async fn request_callback(&self, request: String) -> Result<(), String> {
        let Some(url) = &self.callback_requests_queue_url else {
            return Err("CALLBACK_REQUESTS_QUEUE_URL is not set".into());
        };
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(request)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), String> {
        self.sqs
            .send_message()
            .queue_url(&self.dead_letter_queue_url)
            .message_body(letter.body)
            .set_message_attributes(Some(shared::aws::string_attributes(letter.attributes)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }

    async fn redeliver_after(
        &self,
        queue_arn: &str,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), String> {
        let url = self.events_queue_url(queue_arn).await?;
        self.sqs
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            // Whole seconds, rounded up: never visible before the delay.
            .visibility_timeout(
                i32::try_from(delay.as_secs() + u64::from(delay.subsec_nanos() > 0))
                    .unwrap_or(i32::MAX),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }
}
