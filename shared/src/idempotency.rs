//! DynamoDB idempotency records, after the Lambda Powertools design (feature `dynamodb`): the writer's event
//! claims, legacy-ingest's transaction claims and row locks. The small helpers (`s`, `n`, `get_s`, …) serve
//! the other stores on the same table.
//!
//! Record: `{id, status: INPROGRESS|COMPLETED, payload_hash, lease_expires_ms, lease_token, expiration (TTL, s),
//! incident_number, settle_until_ms}`. A claim is a conditional put that succeeds when no live record exists or
//! the in-progress lease of the same payload ran out. Every attribute name in an expression is aliased, so
//! no name can collide with a DynamoDB reserved word. A claim that replaced a record tells the caller to look
//! the incident up in ServiceNow first: the previous holder may have created it and died before completing.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use crate::failure::FailureClass;

const IN_PROGRESS: &str = "INPROGRESS";
/// When a key can be claimed: no record, an expired one, or an expired (or released) lease of the same payload.
const CLAIMABLE: &str = "attribute_not_exists(#id) OR #expiration < :now_s \
     OR (#status = :in_progress AND #lease < :now_ms AND #hash = :hash)";
const COMPLETED: &str = "COMPLETED";

#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    client: Client,
    table: String,
    ttl: Duration,
}

/// Result of trying to claim a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// We hold the lease. `retaken`: a previous record existed, so reconcile before creating.
    Acquired { token: String, retaken: bool },
    /// Already done; nothing to create.
    Completed { incident_number: Option<String> },
    /// Someone else holds a live lease; `settle_until_ms`: it is held after a write that may still commit, and
    /// nothing may be written for the event before then.
    InFlight { settle_until_ms: Option<u64> },
    /// The same key was claimed for a different payload.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {operation} failed: {reason}")]
pub struct StoreError {
    pub operation: &'static str,
    pub reason: String,
    pub class: FailureClass,
}

impl StoreError {
    pub fn class(&self) -> FailureClass {
        self.class
    }
}

pub fn store_error<E, R>(
    operation: &'static str,
    e: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> StoreError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
    let class = match code {
        "ResourceNotFoundException" | "ValidationException" | "AccessDeniedException" => {
            FailureClass::Permanent
        }
        _ => FailureClass::Transient,
    };
    StoreError {
        operation,
        reason: DisplayErrorContext(&e).to_string(),
        class,
    }
}

pub fn is_condition_failure<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

/// `Ok(true)` when the conditional write applied, `Ok(false)` when its condition did not hold.
pub fn applied<T, E, R>(
    operation: &'static str,
    res: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
) -> Result<bool, StoreError>
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match res {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failure(&e) => Ok(false),
        Err(e) => Err(store_error(operation, e)),
    }
}

pub use crate::clock::epoch_ms as now_ms;

/// A transaction item's cancellation code when its condition did not hold.
pub const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// A cancelled transaction's reason codes, one per item in order (`None`, `ConditionalCheckFailed`,
/// `TransactionConflict`, …); `None` when the transaction was not cancelled but failed otherwise.
pub fn cancellation_codes<R>(
    e: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R>,
) -> Option<Vec<Option<String>>> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(t)) => Some(
            t.cancellation_reasons()
                .iter()
                .map(|r| r.code().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

/// Whether a single write was refused because a transaction was writing its item (nothing was written; the
/// SDK does not retry it).
pub fn is_transaction_conflict<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code()) == Some("TransactionConflictException")
}

/// How often a single write refused by a transaction on its item is sent again, after a short jittered wait.
const CONFLICT_RESENDS: usize = 2;

/// Sends `update` (built for a transaction) on its own, as an `UpdateItem`; sent again (up to
/// [`CONFLICT_RESENDS`] times) while a transaction on its item refuses it.
pub async fn send_update(
    client: &Client,
    update: Update,
) -> Result<
    aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
    aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
> {
    let request = client
        .update_item()
        .table_name(update.table_name)
        .set_key(Some(update.key))
        .update_expression(update.update_expression)
        .set_condition_expression(update.condition_expression)
        .set_expression_attribute_names(update.expression_attribute_names)
        .set_expression_attribute_values(update.expression_attribute_values);
    let mut resends = 0;
    loop {
        match request.clone().send().await {
            Err(e) if is_transaction_conflict(&e) && resends < CONFLICT_RESENDS => {
                resends += 1;
                tokio::time::sleep(crate::retry::jitter(Duration::from_millis(25))).await;
            }
            res => return res,
        }
    }
}

/// The item `key` as last written (a consistent read).
pub async fn read_item(
    client: &Client,
    table: &str,
    key: &str,
) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .key("id", s(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| store_error("GetItem", e))?;
    Ok(out.item)
}

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub fn get_n(item: &HashMap<String, AttributeValue>, k: &str) -> Option<u64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Claims several keys in one transaction, each `(store, key, payload_hash, lease_until_ms)` as
/// [`IdempotencyStore::claim`] would (no record, an expired one, or an expired or released lease of the same
/// payload), when all can be: their tokens, in order. Whether one was retaken is not known, so this is for
/// callers that do not need it. `None` when one cannot be, or the transaction failed: each is then claimed on
/// its own with `claim`. (One that committed without an answer after the SDK's retries, which resend its
/// request token, holds its claims until their leases end, as an unanswered `claim` does.)
pub async fn claim_together<const N: usize>(
    claims: [(&IdempotencyStore, &str, &str, u64); N],
) -> Option<[String; N]> {
    let client = &claims.first()?.0.client;
    let now = now_ms();
    let tokens: [String; N] = std::array::from_fn(|_| uuid::Uuid::new_v4().to_string());
    let items = claims
        .iter()
        .zip(&tokens)
        .map(|((store, key, payload_hash, until), token)| {
            let put = store.claim_put(key, payload_hash, *until, token, now)?;
            Ok(TransactWriteItem::builder().put(put).build())
        })
        .collect::<Result<Vec<_>, BuildError>>()
        .ok()?;
    client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
        .ok()
        .map(|_| tokens)
}

impl IdempotencyStore {
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            ttl,
        }
    }

    /// The claim of `key` for `payload_hash` by `token` until `lease_until_ms`, applying only while the key is
    /// claimable ([`CLAIMABLE`]).
    fn claim_put(
        &self,
        key: &str,
        payload_hash: &str,
        lease_until_ms: u64,
        token: &str,
        now: u64,
    ) -> Result<aws_sdk_dynamodb::types::Put, BuildError> {
        aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .item("id", s(key))
            .item("status", s(IN_PROGRESS))
            .item("payload_hash", s(payload_hash))
            .item("lease_token", s(token))
            .item("lease_expires_ms", n(lease_until_ms))
            .item("expiration", n(now / 1000 + self.ttl.as_secs()))
            .condition_expression(CLAIMABLE)
            .expression_attribute_names("#id", "id")
            .expression_attribute_names("#expiration", "expiration")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#lease", "lease_expires_ms")
            .expression_attribute_names("#hash", "payload_hash")
            .expression_attribute_values(":now_s", n(now / 1000))
            .expression_attribute_values(":now_ms", n(now))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":hash", s(payload_hash))
            .build()
    }

    /// Claims `key` for `payload_hash` until `lease_until_ms` (epoch ms).
    pub async fn claim(
        &self,
        key: &str,
        payload_hash: &str,
        lease_until_ms: u64,
    ) -> Result<Claim, StoreError> {
        // Two rounds: a record can vanish (TTL, release) between the failed put and the read.
        for _ in 0..2 {
            let now = now_ms();
            let token = uuid::Uuid::new_v4().to_string();
            let claim = self
                .claim_put(key, payload_hash, lease_until_ms, &token, now)
                .map_err(build_error)?;
            let put = self
                .client
                .put_item()
                .table_name(claim.table_name)
                .set_item(Some(claim.item))
                .set_condition_expression(claim.condition_expression)
                .set_expression_attribute_names(claim.expression_attribute_names)
                .set_expression_attribute_values(claim.expression_attribute_values)
                .return_values(ReturnValue::AllOld)
                .send()
                .await;
            match put {
                Ok(out) => {
                    let retaken = out.attributes().is_some_and(|a| !a.is_empty());
                    return Ok(Claim::Acquired { token, retaken });
                }
                // Refused by a transaction on the record (another claim of it in flight): read below.
                Err(e) if is_condition_failure(&e) || is_transaction_conflict(&e) => {}
                Err(e) => return Err(store_error("PutItem", e)),
            }
            let Some(item) = &read_item(&self.client, &self.table, key).await? else {
                continue;
            };
            if get_s(item, "payload_hash") != Some(payload_hash) {
                return Ok(Claim::Conflict);
            }
            return Ok(match get_s(item, "status") {
                Some(COMPLETED) => Claim::Completed {
                    incident_number: get_s(item, "incident_number").map(str::to_string),
                },
                _ if get_n(item, "lease_expires_ms").is_some_and(|l| l < now_ms()) => continue,
                _ => Claim::InFlight {
                    settle_until_ms: get_n(item, "settle_until_ms").filter(|u| *u > now_ms()),
                },
            });
        }
        Ok(Claim::InFlight {
            settle_until_ms: None,
        })
    }

    /// Marks the key COMPLETED with the incident it produced.
    pub async fn complete(&self, key: &str, token: &str, number: &str) -> Result<bool, StoreError> {
        let update = self.completion(key, token, number).map_err(build_error)?;
        applied("UpdateItem", send_update(&self.client, update).await)
    }

    /// [`Self::complete`]'s write, for a transaction ([`Self::transact`]).
    pub fn completion(&self, key: &str, token: &str, number: &str) -> Result<Update, BuildError> {
        let now = now_ms();
        Update::builder()
            .table_name(&self.table)
            .key("id", s(key))
            .update_expression(
                "SET #status = :completed, #number = :number, \
                 #completed = :now, #expiration = :exp REMOVE #token, #lease",
            )
            .condition_expression("#token = :token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#number", "incident_number")
            .expression_attribute_names("#completed", "completed_at_ms")
            .expression_attribute_names("#expiration", "expiration")
            .expression_attribute_names("#token", "lease_token")
            .expression_attribute_names("#lease", "lease_expires_ms")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":number", s(number))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":exp", n(now / 1000 + self.ttl.as_secs()))
            .expression_attribute_values(":token", s(token))
            .build()
    }

    /// Applies conditional `updates` (of this store's or another's table) in one transaction: one call for
    /// several. `Ok(false)`: a condition did not hold, and nothing was written.
    pub async fn transact(&self, updates: Vec<Update>) -> Result<bool, StoreError> {
        let items = updates
            .into_iter()
            .map(|u| TransactWriteItem::builder().update(u).build())
            .collect();
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) => match cancellation_codes(&e) {
                Some(codes) if codes.iter().any(|c| c.as_deref() == Some(CONDITION_FAILED)) => {
                    Ok(false)
                }
                _ => Err(store_error("TransactWriteItems", e)),
            },
        }
    }

    /// Deletes the record while holding its lease: nothing was done, and the key may be claimed again for any
    /// payload. `Ok(false)`: the lease had been taken over.
    pub async fn forget(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(key))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "lease_token")
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        applied("DeleteItem", res)
    }

    /// [`Self::forget`] as an item of a transaction: the lease goes with the transaction's other writes, one
    /// call less than forgetting it after them. Its condition failing cancels the whole transaction.
    pub fn forget_item(&self, key: &str, token: &str) -> Result<TransactWriteItem, BuildError> {
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .key("id", s(key))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "lease_token")
            .expression_attribute_values(":token", s(token))
            .build()?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Gives the lease up but keeps the record, so the next claim reconciles with ServiceNow first. `keep`:
    /// remember the record at least that long from now (for a dead-lettered event, the DLQ's retention).
    /// `settle_until_ms`: the lease is held until then instead (a write that may still commit).
    pub async fn release(
        &self,
        key: &str,
        token: &str,
        keep: Option<Duration>,
        settle_until_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let update = self
            .release_update(key, token, keep, settle_until_ms)
            .map_err(build_error)?;
        applied("UpdateItem", send_update(&self.client, update).await).map(|_| ())
    }

    /// [`Self::release`]'s write, for a transaction ([`Self::transact`]).
    pub fn release_update(
        &self,
        key: &str,
        token: &str,
        keep: Option<Duration>,
        settle_until_ms: Option<u64>,
    ) -> Result<Update, BuildError> {
        let mut set = vec!["#lease = :lease"];
        let mut req = Update::builder()
            .table_name(&self.table)
            .key("id", s(key))
            .condition_expression("#token = :token")
            .expression_attribute_names("#lease", "lease_expires_ms")
            .expression_attribute_names("#token", "lease_token")
            .expression_attribute_values(":lease", n(settle_until_ms.unwrap_or(0)))
            .expression_attribute_values(":token", s(token));
        if let Some(keep) = keep {
            set.push("#expiration = :exp");
            req = req
                .expression_attribute_names("#expiration", "expiration")
                .expression_attribute_values(
                    ":exp",
                    n(now_ms() / 1000 + keep.max(self.ttl).as_secs()),
                );
        }
        if let Some(until) = settle_until_ms {
            set.push("#settle = :settle");
            req = req
                .expression_attribute_names("#settle", "settle_until_ms")
                .expression_attribute_values(":settle", n(until));
        }
        req.update_expression(format!("SET {}", set.join(", ")))
            .build()
    }
}

fn build_error(e: BuildError) -> StoreError {
    StoreError {
        operation: "UpdateItem",
        reason: e.to_string(),
        class: FailureClass::Permanent,
    }
}
