//! Callbacks per queue slot, counted in DynamoDB: a slot is taken with one conditional update, so concurrent
//! reservations can never put more callbacks in a slot than its limit.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use jiff::Timestamp;

use shared::idempotency::{is_condition_failure, n, s, store_error, StoreError};

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

    /// Takes one place in `queue`'s slot starting at `slot` if fewer than `limit` are taken.
    pub async fn take(&self, queue: &str, slot: Timestamp, limit: u32) -> Result<bool, StoreError> {
        let expires = (slot.as_second().max(0) as u64) + self.keep_after.as_secs();
        let res = self
            .client
            .update_item()
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
            .expression_attribute_values(":exp", n(expires))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    /// The first of `slots` (in order) with room, taken; `None` when every one is full.
    pub async fn take_first(
        &self,
        queue: &str,
        slots: &[Timestamp],
        limit: u32,
    ) -> Result<Option<Timestamp>, StoreError> {
        for slot in slots {
            if self.take(queue, *slot, limit).await? {
                return Ok(Some(*slot));
            }
        }
        Ok(None)
    }

    /// Gives a place back (a cancelled or failed reservation); never below zero.
    pub async fn give_back(&self, queue: &str, slot: Timestamp) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(Self::key(queue, slot)))
            .update_expression("ADD #taken :minus")
            .condition_expression("#taken > :zero")
            .expression_attribute_names("#taken", "taken")
            .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
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
