//! The writer's edges as small traits: the event claims and conversation records (DynamoDB), the incident API
//! (ServiceNow) and the dead-letter queue (SQS). The Lambda uses the real clients; the unit tests use in-memory
//! fakes, so every decision of the writer is tested without AWS.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use shared::IncidentDraft;

use crate::conversations::{ConversationStore, KnownIncident, Locked};
use crate::idempotency::{Claim, IdempotencyStore, StoreError};
use crate::servicenow::{IncidentRef, IncidentState, ServiceNowClient, ServiceNowError};

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
    /// Gives the lease up, keeping the record (for at least `keep`) so that the next claim reconciles.
    fn release(
        &self,
        key: &str,
        token: &str,
        keep: Option<Duration>,
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
    fn unlock(&self, key: &str, token: &str)
        -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The ServiceNow Table API calls the writer makes.
pub trait Incidents: Sync {
    fn create_incident(
        &self,
        draft: &IncidentDraft,
    ) -> impl Future<Output = Result<IncidentRef, ServiceNowError>> + Send;
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

pub trait DeadLetters: Sync {
    /// `Err` carries a reason safe to log.
    fn send(&self, letter: DeadLetter) -> impl Future<Output = Result<(), String>> + Send;
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
    ) -> Result<(), StoreError> {
        IdempotencyStore::release(self, key, token, keep).await
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
    async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError> {
        ConversationStore::unlock(self, key, token).await
    }
}

impl Incidents for ServiceNowClient {
    async fn create_incident(&self, draft: &IncidentDraft) -> Result<IncidentRef, ServiceNowError> {
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

/// The SQS dead-letter queue.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl DeadLetters for SqsDeadLetters {
    async fn send(&self, letter: DeadLetter) -> Result<(), String> {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(letter.body)
            .set_message_attributes(Some(shared::aws::string_attributes(letter.attributes)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }
}
