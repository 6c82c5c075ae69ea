//! Changing a booked callback: `DELETE` cancels it (in Genesys first, then the reservation and its place),
//! `PATCH` reschedules it within the booking rules.
//!
//! A reschedule holds both places while Genesys is asked: the new place is taken and marked `pending_slot`
//! (one transaction), Genesys moves the callback, then the reservation moves and the old place is given back
//! (another). A Genesys refusal gives the new place back; an unanswered one leaves the reservation pending,
//! and the same request again continues it (Genesys is told the same time again, which changes nothing).
//! One change runs at a time per reservation (a lease in the claims table), and every write is conditional on
//! the revision it read, so a Genesys event landing in between is never overwritten.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use tracing::warn;

use shared::failure::FailureClass;
use shared::idempotency::Claim;
use shared::retry::{Attempt, Deadline, Retryable};

use crate::booking::{unavailable, BookError, Booking};
use crate::capacity::Outcome;
use crate::genesys;
use crate::reservations::{Change, Reservation, Status};
use crate::schedule::{validate, SlotRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RescheduleRequest {
    slots: Vec<SlotRequest>,
}

/// A reservation's change lease, as the change running under it holds it.
struct Lease {
    key: String,
    token: String,
    /// Set once a transaction released it.
    released: Arc<AtomicBool>,
}

impl Booking {
    async fn scheduled_one(&self, id: &str) -> Result<Reservation, BookError> {
        self.reservations
            .get(id)
            .await
            .map_err(unavailable)?
            .ok_or(BookError::NotFound)
    }

    /// Runs `change` holding the reservation's change lease. A change whose last transaction released the
    /// lease ([`Self::finish`]) leaves it; otherwise it is released here.
    async fn exclusively<T, F, Fut>(
        &self,
        id: &str,
        deadline: Deadline,
        change: F,
    ) -> Result<T, BookError>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: std::future::Future<Output = Result<T, BookError>>,
    {
        let key = format!("callback-change:{id}");
        let until = shared::clock::epoch_ms()
            + (deadline.remaining() + Duration::from_secs(5)).as_millis() as u64;
        let token = match self
            .claims
            .claim(&key, "change", until)
            .await
            .map_err(unavailable)?
        {
            Claim::Acquired { token, .. } => token,
            // A finished change leaves no lease (it is forgotten), so anything else is one in progress.
            _ => {
                return Err(BookError::Unavailable {
                    reason: "another change of this reservation is being made".into(),
                    retry_after: Duration::from_secs(1),
                })
            }
        };
        let released = Arc::new(AtomicBool::new(false));
        let lease = Lease {
            key: key.clone(),
            token: token.clone(),
            released: released.clone(),
        };
        let result = change(lease).await;
        if !released.load(Ordering::Relaxed) {
            if let Err(e) = self.claims.forget(&key, &token).await {
                warn!(error = %e, "could not release a reservation's change lease; it expires by itself");
            }
        }
        result
    }

    /// The last transaction of a change, releasing its lease with it (one call less than after it).
    async fn finish(
        &self,
        lease: &Lease,
        queue: &str,
        give_back: &[Timestamp],
        write: aws_sdk_dynamodb::types::TransactWriteItem,
    ) -> Result<Outcome, BookError> {
        let release = self
            .claims
            .forget_item(&lease.key, &lease.token)
            .map_err(unavailable)?;
        let outcome = self
            .capacity
            .transact_releasing(queue, &[], give_back, write, release)
            .await
            .map_err(unavailable)?;
        if outcome == Outcome::Done {
            lease.released.store(true, Ordering::Relaxed);
        }
        Ok(outcome)
    }

    /// Cancels reservation `id`: the Genesys callback is disconnected, then the reservation is `cancelled`
    /// and its place given back. Cancelling a cancelled reservation answers it as it is.
    pub async fn cancel(&self, id: &str, deadline: Deadline) -> Result<Reservation, BookError> {
        // Read once, under the lease (one call less than reading before it too).
        self.exclusively(id, deadline, |lease| async move {
            let mut r = self.scheduled_one(id).await?;
            match r.status {
                Status::Cancelled => return Ok(r),
                Status::Scheduled => {}
                Status::Requested => {
                    return Err(BookError::Unavailable {
                        reason: "the callback is still being booked".into(),
                        retry_after: self.settle.max(Duration::from_secs(1)),
                    })
                }
                other => return Err(BookError::WrongState(other.name())),
            }
            if let Some(conversation) = r.conversation_id.clone() {
                self.retrier
                    .run(
                        deadline,
                        |a: Attempt| {
                            let (conversation, read_first) = (&conversation, a.after_ambiguous);
                            async move {
                                genesys::cancel(&self.genesys, conversation, read_first)
                                    .await
                                    .map_err(Call)
                            }
                        },
                        |e, _| warn!(error = %e.0, "Genesys callback cancel failed; retrying"),
                    )
                    .await
                    .map_err(|e| refusal(e.0))?;
            }
            let slots = [r.slot.clone()]
                .into_iter()
                .chain(r.pending_slot.take())
                .filter_map(|s| s.parse::<Timestamp>().ok())
                .collect::<Vec<_>>();
            r.status = Status::Cancelled;
            r.history.push(Change {
                status: Status::Cancelled,
                at: Timestamp::now().to_string(),
                event: "api:cancel".into(),
            });
            let write = self
                .reservations
                .replace(&r, Status::Scheduled)
                .map_err(unavailable)?;
            // Every place the reservation holds (two while a reschedule is pending) goes back with it.
            match self.finish(&lease, &r.queue, &slots, write).await? {
                Outcome::Done => {
                    r.revision += 1;
                    Ok(r)
                }
                _ => self.scheduled_one(id).await,
            }
        })
        .await
    }

    /// Reschedules reservation `id` to the first of `body`'s slots with room.
    pub async fn reschedule(
        &self,
        id: &str,
        body: &[u8],
        now: Timestamp,
        deadline: Deadline,
    ) -> Result<Reservation, BookError> {
        let request: RescheduleRequest = serde_json::from_slice(body).map_err(|_| {
            BookError::Invalid(vec![crate::schedule::FieldError {
                field: "slots".into(),
                problem: "expected {\"slots\": [{start, end, timezone}]} and nothing else".into(),
            }])
        })?;
        // Read once, under the lease (one call less than reading before it too).
        self.exclusively(id, deadline, |lease| async move {
            let mut r = self.scheduled_one(id).await?;
            if r.status != Status::Scheduled {
                return Err(BookError::WrongState(r.status.name()));
            }
            let queue = self.queues.get(&r.queue).ok_or(BookError::UnknownQueue)?;
            let windows = validate(&queue.calendar, &request.slots, self.max_slots, now)
                .map_err(BookError::Invalid)?;
            let wanted: Vec<Timestamp> = windows
                .iter()
                .flat_map(|w| queue.calendar.slots_in(w))
                .collect();
            let current: Option<Timestamp> = r.slot.parse().ok();
            if wanted.first().is_some_and(|w| Some(*w) == current) && r.pending_slot.is_none() {
                return Ok(r);
            }
            let target =
                match r
                    .pending_slot
                    .as_deref()
                    .and_then(|p| p.parse::<Timestamp>().ok())
                {
                    // An earlier request left this one pending: it is continued if asked for again.
                    Some(pending) if wanted.contains(&pending) => pending,
                    Some(_) => return Err(BookError::Unavailable {
                        reason:
                            "an earlier reschedule of this reservation is unfinished; send it again"
                                .into(),
                        retry_after: Duration::from_secs(1),
                    }),
                    None => {
                        let mut taken = None;
                        for slot in wanted.iter().filter(|s| Some(**s) != current) {
                            let mut held = r.clone();
                            held.pending_slot = Some(slot.to_string());
                            let write = self
                                .reservations
                                .replace(&held, Status::Scheduled)
                                .map_err(unavailable)?;
                            match self
                                .capacity
                                .transact(&r.queue, Some((*slot, queue.capacity)), None, write)
                                .await
                                .map_err(unavailable)?
                            {
                                Outcome::Done => {
                                    held.revision += 1;
                                    r = held;
                                    taken = Some(*slot);
                                    break;
                                }
                                Outcome::Full => continue,
                                Outcome::Stale => return self.scheduled_one(id).await,
                            }
                        }
                        match taken {
                            Some(slot) => slot,
                            None => {
                                return Err(BookError::Full {
                                    alternatives: self
                                        .alternatives(queue, &r.queue, &windows, now)
                                        .await,
                                })
                            }
                        }
                    }
                };
            let moved = match r.conversation_id.clone() {
                Some(conversation) => self
                    .retrier
                    .run(
                        deadline,
                        |_| async {
                            genesys::reschedule(&self.genesys, &conversation, target)
                                .await
                                .map_err(Call)
                        },
                        |e, _| warn!(error = %e.0, "Genesys callback reschedule failed; retrying"),
                    )
                    .await
                    .map_err(|e| e.0),
                None => Ok(()),
            };
            let mut done = r.clone();
            done.pending_slot = None;
            let (write, take_back) = match &moved {
                Ok(()) => {
                    done.slot = target.to_string();
                    done.history.push(Change {
                        status: Status::Scheduled,
                        at: Timestamp::now().to_string(),
                        event: format!("api:reschedule:{target}"),
                    });
                    (self.reservations.replace(&done, Status::Scheduled), current)
                }
                Err(e) if e.class() == FailureClass::Permanent && !e.ambiguous() => (
                    self.reservations.replace(&done, Status::Scheduled),
                    Some(target),
                ),
                // Unanswered or throttled: both places stay held; the same request continues it.
                Err(e) => {
                    return Err(BookError::Unavailable {
                        reason: e.to_string(),
                        retry_after: e
                            .retry_after()
                            .unwrap_or(Duration::from_secs(2))
                            .max(Duration::from_secs(1)),
                    })
                }
            };
            let write = write.map_err(unavailable)?;
            let give_back: Vec<Timestamp> = take_back.into_iter().collect();
            match self.finish(&lease, &r.queue, &give_back, write).await? {
                Outcome::Done => match moved {
                    Ok(()) => {
                        done.revision += 1;
                        Ok(done)
                    }
                    Err(e) => Err(refusal(e)),
                },
                _ => self.scheduled_one(id).await,
            }
        })
        .await
    }
}

/// A Genesys call's failure for the retry engine.
#[derive(Debug)]
struct Call(shared::genesys::ApiError);

impl Retryable for Call {
    fn class(&self) -> FailureClass {
        self.0.class()
    }
    fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after()
    }
    fn ambiguous(&self) -> bool {
        self.0.ambiguous()
    }
    fn out_of_time(budget: Duration, started: bool) -> Self {
        Call(shared::genesys::ApiError::out_of_time(budget, started))
    }
}

fn refusal(e: shared::genesys::ApiError) -> BookError {
    match e.class() {
        FailureClass::Permanent if !e.ambiguous() => BookError::Refused(e.to_string()),
        _ => BookError::Unavailable {
            reason: e.to_string(),
            retry_after: e
                .retry_after()
                .unwrap_or(Duration::from_secs(2))
                .max(Duration::from_secs(1)),
        },
    }
}
