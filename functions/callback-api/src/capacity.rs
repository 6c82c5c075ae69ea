//! Callbacks per queue slot, counted in DynamoDB: a slot is taken with one conditional update, so concurrent
//! reservations can never put more callbacks in a slot than its limit. The reservation that takes, moves or
//! gives back a place is written in the same transaction ([`SlotCapacity::transact`]), so a place is never
//! taken without its reservation, nor a reservation stored without its place.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use jiff::Timestamp;

use shared::idempotency::{cancellation_codes, n, s, store_error, StoreError, CONDITION_FAILED};

#[derive(Debug, Clone)]
pub struct SlotCapacity {
    client: Client,
    table: String,
    /// How long a slot's counter is kept after the slot (then DynamoDB's TTL removes it).
    keep_after: Duration,
}

impl SlotCapacity {
    pub fn new(client: Client, table: impl Into<String>, keep_after: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            keep_after,
        }
    }

    fn key(queue: &str, slot: Timestamp) -> String {
        format!("callback-slot:{queue}:{}", slot.as_second())
    }

    /// How many places of the slot are taken.
    pub async fn taken(&self, queue: &str, slot: Timestamp) -> Result<u32, StoreError> {
        let item =
            shared::idempotency::read_item(&self.client, &self.table, &Self::key(queue, slot))
                .await?;
        Ok(item
            .as_ref()
            .and_then(|i| shared::idempotency::get_n(i, "taken"))
            .unwrap_or(0) as u32)
    }
}

/// How a transaction over a slot counter and a reservation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both applied.
    Done,
    /// The slot (to take) has no room.
    Full,
    /// The reservation's own condition did not hold (it exists already, or moved meanwhile).
    Stale,
}

fn built<T>(r: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError {
        operation: "TransactWriteItems",
        reason: e.to_string(),
        class: shared::failure::FailureClass::Permanent,
    })
}

impl SlotCapacity {
    fn expires(&self, slot: Timestamp) -> u64 {
        (slot.as_second().max(0) as u64) + self.keep_after.as_secs()
    }

    fn take_item(
        &self,
        queue: &str,
        slot: Timestamp,
        limit: u32,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = built(
            Update::builder()
                .table_name(&self.table)
                .key("id", s(Self::key(queue, slot)))
                .update_expression("ADD #taken :one SET #kind = :kind, #expiration = :exp")
                .condition_expression("attribute_not_exists(#taken) OR #taken < :limit")
                .expression_attribute_names("#taken", "taken")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_names("#expiration", "expiration")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":limit", n(u64::from(limit)))
                .expression_attribute_values(":kind", s("callback-slot"))
                .expression_attribute_values(":exp", n(self.expires(slot)))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn give_back_item(
        &self,
        queue: &str,
        slot: Timestamp,
    ) -> Result<TransactWriteItem, StoreError> {
        // Not conditional: a counter gone with its TTL comes back below zero, and a slot that old is never
        // offered again.
        let update = built(
            Update::builder()
                .table_name(&self.table)
                .key("id", s(Self::key(queue, slot)))
                .update_expression("ADD #taken :minus SET #kind = :kind, #expiration = :exp")
                .expression_attribute_names("#taken", "taken")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_names("#expiration", "expiration")
                .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
                .expression_attribute_values(":kind", s("callback-slot"))
                .expression_attribute_values(":exp", n(self.expires(slot)))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// In one transaction: a place taken in `take` (if it has room), one given back in `give_back`, and
    /// `write` (the reservation's conditional write). `token` makes a repeated attempt of the same
    /// transaction (an unanswered one) apply at most once.
    pub async fn transact(
        &self,
        queue: &str,
        take: Option<(Timestamp, u32)>,
        give_back: Option<Timestamp>,
        write: TransactWriteItem,
    ) -> Result<Outcome, StoreError> {
        let take: Vec<_> = take.into_iter().collect();
        let give_back: Vec<_> = give_back.into_iter().collect();
        self.transact_many(queue, &take, &give_back, write).await
    }

    /// [`Self::transact`] over several places; `Full`: one of `take` has no room.
    pub async fn transact_many(
        &self,
        queue: &str,
        take: &[(Timestamp, u32)],
        give_back: &[Timestamp],
        write: TransactWriteItem,
    ) -> Result<Outcome, StoreError> {
        self.transact_all(queue, take, give_back, write, None).await
    }

    /// [`Self::transact_many`] that also releases a change lease (`release`, conditional on its token): `Done`
    /// means the lease is gone too. A lease taken over meanwhile cancels the transaction: nothing is written,
    /// and the error is transient.
    pub async fn transact_releasing(
        &self,
        queue: &str,
        take: &[(Timestamp, u32)],
        give_back: &[Timestamp],
        write: TransactWriteItem,
        release: TransactWriteItem,
    ) -> Result<Outcome, StoreError> {
        self.transact_all(queue, take, give_back, write, Some(release))
            .await
    }

    async fn transact_all(
        &self,
        queue: &str,
        take: &[(Timestamp, u32)],
        give_back: &[Timestamp],
        write: TransactWriteItem,
        release: Option<TransactWriteItem>,
    ) -> Result<Outcome, StoreError> {
        let mut items = vec![write];
        for (slot, limit) in take {
            items.push(self.take_item(queue, *slot, *limit)?);
        }
        for slot in give_back {
            items.push(self.give_back_item(queue, *slot)?);
        }
        let lease_at = release.is_some().then_some(items.len());
        items.extend(release);
        // The SDK's own ClientRequestToken (one per call, kept across its retries) covers a lost answer
        // within the call.
        let mut repeated = false;
        loop {
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let e = match res {
                Ok(_) => return Ok(Outcome::Done),
                Err(e) => e,
            };
            let Some(reasons) = cancellation_codes(&e) else {
                return Err(store_error("TransactWriteItems", e));
            };
            let code = |i: usize| reasons.get(i).and_then(|c| c.as_deref());
            // The lease's item met a concurrent claim of it (a second change sent at once, refused by it):
            // nothing was written, and the same transaction once more is as safe as the first.
            let lease_conflict = lease_at.is_some_and(|i| code(i) == Some("TransactionConflict"))
                && !(0..reasons.len()).any(|i| code(i) == Some(CONDITION_FAILED));
            if lease_conflict && !repeated {
                repeated = true;
                tokio::time::sleep(shared::retry::jitter(Duration::from_millis(50))).await;
                continue;
            }
            let failed = |i: usize| code(i) == Some(CONDITION_FAILED);
            // Full only when the write itself passed: a reservation held up by a conflicting transaction is
            // no answer about room, and a booking would be told "full" wrongly.
            let passed = matches!(code(0), None | Some("None"));
            return if failed(0) {
                Ok(Outcome::Stale)
            } else if passed && (1..=take.len()).any(failed) {
                Ok(Outcome::Full)
            } else if lease_at.is_some_and(failed) {
                Err(StoreError {
                    operation: "TransactWriteItems",
                    reason: "the change lease was taken over meanwhile; nothing was written".into(),
                    class: shared::failure::FailureClass::Transient,
                })
            } else {
                Err(store_error("TransactWriteItems", e))
            };
        }
    }
}
