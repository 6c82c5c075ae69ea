//! Reservations in DynamoDB (the idempotency table): one record per reservation, `{id: "callback:<id>", kind,
//! status, doc (the reservation as JSON), expiration}`; every change is conditional on the status it moves
//! from, so two writers can never both move one reservation.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use shared::idempotency::{
    applied, cancellation_codes, get_s, n, read_item, s, store_error, StoreError, CONDITION_FAILED,
};

/// `requested → scheduled → connected → completed | missed | cancelled`, or `failed` when Genesys refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Requested,
    Scheduled,
    Connected,
    Completed,
    Missed,
    Cancelled,
    Failed,
}

impl Status {
    /// Progress along the lifecycle: a status only ever moves to a higher rank.
    pub fn rank(self) -> u8 {
        match self {
            Status::Requested => 0,
            Status::Scheduled => 1,
            Status::Connected => 2,
            Status::Completed | Status::Missed | Status::Cancelled | Status::Failed => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Scheduled => "scheduled",
            Status::Connected => "connected",
            Status::Completed => "completed",
            Status::Missed => "missed",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: String,
    pub status: Status,
    pub queue: String,
    /// The slot taken (RFC 3339).
    pub slot: String,
    pub name: String,
    /// E.164.
    pub phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_number: Option<String>,
    /// The Genesys callback's conversation, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// When the last create was sent, kept until its answer came: while set, a create may exist, so it is
    /// looked for (around this time) before creating again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_sent_at: Option<String>,
    /// A reschedule in progress: this slot's place is held too until Genesys has moved the callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_slot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Each status change after booking: `{status, at, event}` (the audit trail).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Change>,
    /// Grows with every write; each write is conditional on the one it read, so none is ever lost.
    #[serde(default)]
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub status: Status,
    pub at: String,
    /// The Genesys event that caused it.
    pub event: String,
}

#[derive(Debug, Clone)]
pub struct Reservations {
    client: Client,
    table: String,
    ttl: Duration,
}

/// What [`Reservations::schedule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduled {
    /// Saved and indexed; `with`: the extra write was applied too.
    Done { with: bool },
    /// The record had moved meanwhile, and nothing was written.
    Moved,
}

fn key(id: &str) -> String {
    format!("callback:{id}")
}

impl Reservations {
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            ttl,
        }
    }

    fn expiration(&self) -> aws_sdk_dynamodb::types::AttributeValue {
        n(shared::clock::epoch_secs() + self.ttl.as_secs())
    }

    /// Kept until `ttl` after its slot (at least `ttl` from now).
    fn expiration_of(&self, r: &Reservation) -> aws_sdk_dynamodb::types::AttributeValue {
        let now = shared::clock::epoch_secs();
        let slot = r
            .slot
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second().max(0) as u64)
            .unwrap_or(now);
        n(slot.max(now) + self.ttl.as_secs())
    }

    /// Slot counters on the same table.
    pub fn capacity(&self) -> crate::capacity::SlotCapacity {
        crate::capacity::SlotCapacity::new(self.client.clone(), self.table.clone(), self.ttl)
    }

    fn doc(r: &Reservation) -> Result<String, StoreError> {
        serde_json::to_string(r).map_err(|e| StoreError {
            operation: "serialise",
            reason: e.to_string(),
            class: shared::failure::FailureClass::Permanent,
        })
    }

    /// A new reservation's write for a transaction: it applies only if no reservation has this id.
    pub fn put_new(&self, r: &Reservation) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .item("id", s(key(&r.id)))
            .item("kind", s("callback-reservation"))
            .item("status", s(r.status.name()))
            .item("doc", s(Self::doc(r)?))
            .item("rev", n(r.revision))
            .item("expiration", self.expiration_of(r))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", "id")
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A change's write for a transaction: `r` as revision `r.revision + 1`, applied only while the stored
    /// status is `from` and the stored revision is `r.revision` (the one `r` was read at). Once it applied,
    /// the caller counts it ([`Reservation::revision`] + 1).
    pub fn replace(&self, r: &Reservation, from: Status) -> Result<TransactWriteItem, StoreError> {
        let mut next = r.clone();
        next.revision = r.revision + 1;
        let update = Update::builder()
            .table_name(&self.table)
            .key("id", s(key(&r.id)))
            .update_expression(
                "SET #status = :status, #doc = :doc, #rev = :next, #expiration = :exp",
            )
            .condition_expression("#status = :from AND #rev = :rev")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#doc", "doc")
            .expression_attribute_names("#rev", "rev")
            .expression_attribute_names("#expiration", "expiration")
            .expression_attribute_values(":status", s(next.status.name()))
            .expression_attribute_values(":doc", s(Self::doc(&next)?))
            .expression_attribute_values(":next", n(next.revision))
            .expression_attribute_values(":rev", n(r.revision))
            .expression_attribute_values(":exp", self.expiration_of(r))
            .expression_attribute_values(":from", s(from.name()))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Records which reservation the Genesys callback conversation belongs to.
    pub async fn index_conversation(&self, conversation: &str, id: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.index_item(conversation, id)))
            .send()
            .await;
        applied("PutItem", res).map(|_| ())
    }

    fn index_item(&self, conversation: &str, id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "id".into(),
                s(format!("callback-conversation:{conversation}")),
            ),
            ("kind".into(), s("callback-conversation")),
            ("reservation_id".into(), s(id)),
            ("expiration".into(), self.expiration()),
        ])
    }

    /// Saves `r` over its `requested` record (as [`Self::update`] does) and indexes its conversation, in one
    /// transaction: one call, and a lifecycle event finds the reservation as soon as it is scheduled.
    /// `with`: one more conditional write for the same transaction (the booking's claim completion); when
    /// only its condition fails, or its item met a concurrent write, the transaction is sent again without
    /// it (`Done { with: false }`).
    pub async fn schedule(
        &self,
        r: &mut Reservation,
        conversation: &str,
        mut with: Option<Update>,
    ) -> Result<Scheduled, StoreError> {
        loop {
            let index = Put::builder()
                .table_name(&self.table)
                .set_item(Some(self.index_item(conversation, &r.id)))
                .build()
                .map_err(build_error)?;
            let items = [
                Some(self.replace(r, Status::Requested)?),
                Some(TransactWriteItem::builder().put(index).build()),
                with.clone()
                    .map(|u| TransactWriteItem::builder().update(u).build()),
            ];
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.into_iter().flatten().collect()))
                .send()
                .await;
            let e = match res {
                Ok(_) => {
                    r.revision += 1;
                    return Ok(Scheduled::Done {
                        with: with.is_some(),
                    });
                }
                Err(e) => e,
            };
            let codes = cancellation_codes(&e).unwrap_or_default();
            let code = |item: usize| codes.get(item).and_then(|c| c.as_deref());
            if code(0) == Some(CONDITION_FAILED) {
                // The reservation's own write refused: it moved.
                return Ok(Scheduled::Moved);
            }
            // Only the extra write's condition failed (the index is unconditional), or its item met a
            // concurrent write (a resubmission's claim): nothing was written; the rest goes again without it.
            if with.is_some() && matches!(code(2), Some(CONDITION_FAILED | "TransactionConflict")) {
                with = None;
                continue;
            }
            return Err(store_error("TransactWriteItems", e));
        }
    }

    /// The reservation of a Genesys callback conversation, if it is one of ours.
    pub async fn by_conversation(
        &self,
        conversation: &str,
    ) -> Result<Option<Reservation>, StoreError> {
        let item = read_item(
            &self.client,
            &self.table,
            &format!("callback-conversation:{conversation}"),
        )
        .await?;
        match item.as_ref().and_then(|i| get_s(i, "reservation_id")) {
            Some(id) => self.get(id).await,
            None => Ok(None),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Reservation>, StoreError> {
        let item = read_item(&self.client, &self.table, &key(id)).await?;
        Ok(item
            .as_ref()
            .and_then(|i| get_s(i, "doc"))
            .and_then(|d| serde_json::from_str(d).ok()))
    }

    /// Replaces the reservation if it is still as read (status `from`, revision `r.revision`); `Ok(false)`:
    /// it changed meanwhile. On success `r.revision` counts the write.
    pub async fn update(&self, r: &mut Reservation, from: Status) -> Result<bool, StoreError> {
        let item = self.replace(r, from)?;
        let Some(update) = item.update else {
            return Ok(false);
        };
        let res = shared::idempotency::send_update(&self.client, update).await;
        let done = applied("UpdateItem", res)?;
        if done {
            r.revision += 1;
        }
        Ok(done)
    }
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError {
        operation: "TransactWriteItems",
        reason: e.to_string(),
        class: shared::failure::FailureClass::Permanent,
    }
}
