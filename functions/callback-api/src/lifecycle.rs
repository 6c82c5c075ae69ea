//! The lifecycle of a booked callback from Genesys' conversation events (the Amazon EventBridge envelope,
//! `v2.detail.events.conversation.{id}.{user.start|customer.end|acw|…}` with `mediaType: callback`):
//! `scheduled → connected → completed | missed`. Each event moves the reservation only forwards (a late,
//! duplicate or out-of-order event never moves it back), once, with an audit entry.

use shared::idempotency::StoreError;
use shared::json::Json;
use shared::InboundEvent;

use crate::reservations::{Change, Reservation, Reservations, Status};

/// What an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Moved {
        reservation: String,
        to: Status,
    },
    /// Already at or past where the event would move it.
    Unchanged {
        reservation: String,
    },
    /// Not a callback of ours, or an event that moves nothing.
    Ignored(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// Not an event envelope: dead-letter it.
    #[error("not a Genesys event: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Other events of the reservation kept moving it: try again later.
    #[error("the reservation kept changing")]
    Contended,
}

/// The status a callback event means, given the reservation's current one.
pub fn status_for(kind: &str, current: Status) -> Option<Status> {
    match kind {
        // An agent was on the call after all (its event came after the customer's end): not missed.
        "user.start" | "acw" | "user.end" if current == Status::Missed => Some(Status::Completed),
        "user.start" => Some(Status::Connected),
        "acw" | "user.end" => Some(Status::Completed),
        // The customer left: after an agent answered, done; before, the callback was missed.
        "customer.end" if current.rank() >= Status::Connected.rank() => Some(Status::Completed),
        "customer.end" => Some(Status::Missed),
        _ => None,
    }
}

/// The event kind after the conversation id: `…conversation.{id}.user.start` → `user.start`.
fn kind_of(event: &InboundEvent, conversation: &str) -> Option<String> {
    let topic = &event.event_type;
    let marker = format!(".{conversation}.");
    let at = topic.find(&marker)?;
    Some(topic[at + marker.len()..].to_string())
}

/// Applies one raw event.
pub async fn apply(reservations: &Reservations, raw: &[u8]) -> Result<Applied, LifecycleError> {
    apply_at(reservations, raw, jiff::Timestamp::now()).await
}

/// [`apply`] at `now` (which decides whether a callback ended before its slot).
pub async fn apply_at(
    reservations: &Reservations,
    raw: &[u8],
    now: jiff::Timestamp,
) -> Result<Applied, LifecycleError> {
    let event = InboundEvent::parse(raw).map_err(|e| LifecycleError::Invalid(e.to_string()))?;
    if event.body.get("mediaType").and_then(Json::as_str) != Some("callback") {
        return Ok(Applied::Ignored("not a callback"));
    }
    let Some(conversation) = event.body.get("conversationId").and_then(Json::as_str) else {
        return Err(LifecycleError::Invalid("no conversationId".into()));
    };
    let Some(kind) = kind_of(&event, conversation) else {
        return Ok(Applied::Ignored("not a conversation detail event"));
    };
    let event_id = event.event_id.clone().unwrap_or_else(|| kind.clone());
    let at = event.timestamp.clone().unwrap_or_else(shared::now_rfc3339);
    // Two attempts: another event of the reservation may move it between the read and the write.
    for _ in 0..3 {
        let Some(mut r): Option<Reservation> = reservations.by_conversation(conversation).await?
        else {
            return Ok(Applied::Ignored("no reservation for this conversation"));
        };
        let Some(to) = status_for(&kind, r.status) else {
            return Ok(Applied::Ignored("an event that moves nothing"));
        };
        // Forwards only; the one sideways move is the correction of a `missed` an agent's event disproves.
        let forwards =
            to.rank() > r.status.rank() || (r.status == Status::Missed && to == Status::Completed);
        if !forwards || r.history.iter().any(|c| c.event == event_id) {
            return Ok(Applied::Unchanged { reservation: r.id });
        }
        let from = r.status;
        // Places it no longer needs, given back with the move: a reschedule's held place, and, for a callback
        // that ended before its slot (cancelled or missed early), its own.
        let mut give_back: Vec<jiff::Timestamp> = r
            .pending_slot
            .take()
            .and_then(|p| p.parse().ok())
            .into_iter()
            .collect();
        if to.rank() == Status::Completed.rank() && from.rank() < Status::Completed.rank() {
            give_back.extend(r.slot.parse::<jiff::Timestamp>().ok().filter(|s| *s > now));
        }
        r.status = to;
        r.history.push(Change {
            status: to,
            at: at.clone(),
            event: event_id.clone(),
        });
        let write = reservations.replace(&r, from)?;
        let outcome = reservations
            .capacity()
            .transact_many(&r.queue, &[], &give_back, write)
            .await?;
        if outcome == crate::capacity::Outcome::Done {
            return Ok(Applied::Moved {
                reservation: r.id,
                to,
            });
        }
    }
    // Lost every race: given back to the queue, never acknowledged unapplied.
    Err(LifecycleError::Contended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forwards() {
        assert_eq!(
            status_for("user.start", Status::Scheduled),
            Some(Status::Connected)
        );
        assert_eq!(
            status_for("customer.end", Status::Scheduled),
            Some(Status::Missed)
        );
        assert_eq!(
            status_for("customer.end", Status::Connected),
            Some(Status::Completed)
        );
        assert_eq!(status_for("acd.start", Status::Scheduled), None);
        // Out of order: the customer's end came first; the agent's start proves it was answered.
        assert_eq!(
            status_for("user.start", Status::Missed),
            Some(Status::Completed)
        );
        assert_eq!(
            status_for("user.start", Status::Cancelled),
            Some(Status::Connected),
            "and the rank keeps a cancelled callback cancelled"
        );
        for s in [
            Status::Completed,
            Status::Missed,
            Status::Cancelled,
            Status::Failed,
        ] {
            assert!(Status::Connected.rank() < s.rank());
        }
    }
}
