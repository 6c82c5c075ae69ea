//! Live status: the WebSocket connections watching each reservation (in the callbacks table, with a TTL, as
//! API Gateway closes a connection after 2 hours at most), and the [`Notice`] each change sends to them and to
//! the subscribers.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use shared::idempotency::{get_s, n, read_item, s, store_error, StoreError};

use crate::reservations::Reservation;

/// A reservation's change as clients and subscribers see it (no name, no phone number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// `callback.status`
    #[serde(rename = "type")]
    pub kind: String,
    /// `<reservation>:<sequence>`: the same change has the same id, however often it is sent.
    pub id: String,
    pub reservation_id: String,
    /// Increases with each change of the reservation: a receiver keeps the highest.
    pub sequence: u64,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<String>,
    pub queue: String,
    pub slot: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub at: String,
}

impl Notice {
    /// The notice of `new` (replacing `old`), if the change is one clients see: a status or a slot.
    pub fn of_change(old: Option<&Reservation>, new: &Reservation) -> Option<Notice> {
        if old.is_some_and(|o| o.status == new.status && o.slot == new.slot) {
            return None;
        }
        // Booking writes `requested` first; a client first hears of it when it is scheduled or failed.
        if old.is_none() && new.status == crate::reservations::Status::Requested {
            return None;
        }
        let mut notice = Notice::current(new);
        notice.previous_status = old.map(|o| o.status.name().to_string());
        Some(notice)
    }

    /// Where `r` is now.
    pub fn current(new: &Reservation) -> Notice {
        let sequence = new.history.len() as u64 + u64::from(new.status.rank() > 0);
        Notice {
            kind: "callback.status".into(),
            id: format!("{}:{sequence}", new.id),
            reservation_id: new.id.clone(),
            sequence,
            status: new.status.name().into(),
            previous_status: None,
            queue: new.queue.clone(),
            slot: new.slot.clone(),
            incident_number: new.incident_number.clone(),
            failure_reason: new.failure_reason.clone(),
            at: new
                .history
                .last()
                .map(|c| c.at.clone())
                .unwrap_or_else(shared::now_rfc3339),
        }
    }
}

/// The open WebSocket connections of each reservation.
#[derive(Debug, Clone)]
pub struct Connections {
    client: Client,
    table: String,
    /// How long a connection is kept without a `$disconnect` (API Gateway's limit: 2 hours).
    ttl: Duration,
}

fn set_key(reservation: &str) -> String {
    format!("callback-connections:{reservation}")
}

fn connection_key(connection: &str) -> String {
    format!("callback-connection:{connection}")
}

impl Connections {
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            ttl,
        }
    }

    fn expiration(&self) -> AttributeValue {
        n(shared::clock::epoch_secs() + self.ttl.as_secs())
    }

    /// Records `connection` as watching `reservation`.
    pub async fn add(&self, reservation: &str, connection: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", s(connection_key(connection)))
            .item("kind", s("callback-connection"))
            .item("reservation_id", s(reservation))
            .item("expiration", self.expiration())
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", s(set_key(reservation)))
            .update_expression("ADD #connections :c SET #kind = :kind, #expiration = :exp")
            .expression_attribute_names("#connections", "connections")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#expiration", "expiration")
            .expression_attribute_values(":c", AttributeValue::Ss(vec![connection.to_string()]))
            .expression_attribute_values(":kind", s("callback-connections"))
            .expression_attribute_values(":exp", self.expiration())
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        Ok(())
    }

    /// Forgets `connection` (`$disconnect`, or a push answered 410 Gone).
    pub async fn remove(&self, connection: &str) -> Result<(), StoreError> {
        let item = read_item(&self.client, &self.table, &connection_key(connection)).await?;
        if let Some(reservation) = item.as_ref().and_then(|i| get_s(i, "reservation_id")) {
            self.remove_from(reservation, connection).await?;
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(connection_key(connection)))
            .send()
            .await
            .map_err(|e| store_error("DeleteItem", e))?;
        Ok(())
    }

    async fn remove_from(&self, reservation: &str, connection: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", s(set_key(reservation)))
            .update_expression("DELETE #connections :c")
            .expression_attribute_names("#connections", "connections")
            .expression_attribute_values(":c", AttributeValue::Ss(vec![connection.to_string()]))
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        Ok(())
    }

    /// The reservation whose status `connection` watches.
    pub async fn reservation_of(&self, connection: &str) -> Result<Option<String>, StoreError> {
        let item = read_item(&self.client, &self.table, &connection_key(connection)).await?;
        Ok(item
            .as_ref()
            .and_then(|i| get_s(i, "reservation_id"))
            .map(str::to_string))
    }

    /// The connections watching `reservation`.
    pub async fn of(&self, reservation: &str) -> Result<Vec<String>, StoreError> {
        let item = read_item(&self.client, &self.table, &set_key(reservation)).await?;
        Ok(match item.as_ref().and_then(|i| i.get("connections")) {
            Some(AttributeValue::Ss(set)) => set.clone(),
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reservations::{Change, Status};

    fn reservation(status: Status, slot: &str) -> Reservation {
        Reservation {
            id: "r-1".into(),
            status,
            queue: "support".into(),
            slot: slot.into(),
            name: "Ada".into(),
            phone: "+15550100000".into(),
            reason: None,
            incident_number: Some("INC0010001".into()),
            conversation_id: None,
            create_sent_at: None,
            pending_slot: None,
            failure_reason: None,
            history: Vec::new(),
            revision: 0,
        }
    }

    #[test]
    fn a_notice_for_each_status_or_slot_change_and_none_for_the_rest() {
        let requested = reservation(Status::Requested, "2026-12-02T09:00:00Z");
        assert_eq!(Notice::of_change(None, &requested), None);
        let mut scheduled = requested.clone();
        scheduled.status = Status::Scheduled;
        scheduled.create_sent_at = Some("x".into());
        let first = Notice::of_change(Some(&requested), &scheduled).unwrap();
        assert_eq!((first.status.as_str(), first.sequence), ("scheduled", 1));
        assert_eq!(first.previous_status.as_deref(), Some("requested"));
        let text = serde_json::to_string(&first).unwrap();
        assert!(
            !text.contains("Ada") && !text.contains("5550100000"),
            "{text}"
        );
        // A write that changes neither status nor slot says nothing.
        let mut same = scheduled.clone();
        same.create_sent_at = None;
        assert_eq!(Notice::of_change(Some(&scheduled), &same), None);
        let mut connected = scheduled.clone();
        connected.status = Status::Connected;
        connected.history.push(Change {
            status: Status::Connected,
            at: "2026-12-02T09:00:05Z".into(),
            event: "e-1".into(),
        });
        let next = Notice::of_change(Some(&scheduled), &connected).unwrap();
        assert!(next.sequence > first.sequence);
        assert_eq!(next.at, "2026-12-02T09:00:05Z");
        let mut moved = scheduled.clone();
        moved.slot = "2026-12-02T14:00:00Z".into();
        moved.history.push(Change {
            status: Status::Scheduled,
            at: "t".into(),
            event: "api:reschedule".into(),
        });
        assert_eq!(
            Notice::of_change(Some(&scheduled), &moved).unwrap().slot,
            "2026-12-02T14:00:00Z"
        );
    }
}
