//! Booking a callback: validate, take the first preferred slot with room, store the reservation, create the
//! Genesys callback exactly once.
//!
//! A submission is claimed by its idempotency key (the `Idempotency-Key` header, else the submission's own
//! content), so a client that submits twice, or concurrently, gets one reservation and one callback. A
//! Genesys create left without an answer is not repeated at once: the reservation keeps `create_sent_at`,
//! and the next attempt (after the settle window) looks the callback up first.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tracing::warn;

use shared::failure::FailureClass;
use shared::genesys::{ApiError, GenesysApi};
use shared::idempotency::{Claim, IdempotencyStore};
use shared::retry::{Deadline, Retrier, Retryable};

use crate::capacity::{Outcome, SlotCapacity};
use crate::genesys::{self, CallbackRequest};
use crate::reservations::{Reservation, Reservations, Scheduled, Status};
use crate::schedule::{validate, FieldError, QueueCalendar, SlotRequest};

/// How many of the next slots a callback "as soon as possible" tries.
const ASAP_SLOTS: usize = 48;

/// One queue callbacks can be booked for.
#[derive(Debug, Clone)]
pub struct Queue {
    /// The Genesys queue id.
    pub genesys_queue_id: String,
    pub calendar: QueueCalendar,
    /// Callbacks per slot (1–50).
    pub capacity: u32,
}

/// A booking as a website or app sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingRequest {
    /// Shown to the agent; "Web callback" when not given.
    #[serde(default)]
    pub name: Option<String>,
    // The aliases are the names of the reservation guide (seed 004), so its payload books as it is.
    #[serde(alias = "callback_number")]
    pub phone: String,
    #[serde(alias = "queue_id")]
    pub queue: String,
    #[serde(alias = "time_slot_matrix")]
    pub slots: Vec<SlotRequest>,
    #[serde(default)]
    pub channel: Option<String>,
    /// The guide's `{"primary": "voice"|"sms", "fallback", "allow_sms"}`: its `primary` is the channel.
    #[serde(default)]
    pub channel_preferences: Option<ChannelPreferences>,
    /// The guide's client-made id: the idempotency key when no `Idempotency-Key` header is sent.
    #[serde(default)]
    pub callback_id: Option<String>,
    /// The guide's per-request concurrency limit: refused (capacity is per queue, in `CALLBACK_QUEUES`).
    #[serde(default)]
    pub concurrency_limit: Option<serde_json::Value>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub incident_number: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPreferences {
    pub primary: String,
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default)]
    pub allow_sms: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BookError {
    #[error("invalid booking")]
    Invalid(Vec<FieldError>),
    #[error("unknown queue")]
    UnknownQueue,
    /// Every preferred slot is full; `alternatives`: the next slots with room.
    #[error("no room in any preferred slot")]
    Full { alternatives: Vec<String> },
    #[error("the idempotency key was used for another booking")]
    Conflict,
    #[error("no such reservation")]
    NotFound,
    /// The reservation is past the point where it can be changed (e.g. `connected`).
    #[error("the reservation is {0} and cannot be changed")]
    WrongState(&'static str),
    /// Genesys refused the change (the status only: its message echoes the request).
    #[error("{0}")]
    Refused(String),
    /// Not booked now; the same submission may be sent again.
    #[error("{reason}")]
    Unavailable {
        reason: String,
        retry_after: Duration,
    },
}

pub struct Booking {
    pub queues: HashMap<String, Queue>,
    pub capacity: SlotCapacity,
    pub reservations: Reservations,
    pub claims: IdempotencyStore,
    pub genesys: GenesysApi,
    pub retrier: Retrier,
    pub max_slots: usize,
    /// After a create left without an answer, how long before it is looked up and, if absent, made again.
    pub settle: Duration,
    /// Where a booking left `requested` asks callback-events to finish it (its queue).
    pub continuations: Option<(aws_sdk_sqs::Client, String)>,
}

fn field(field: &str, problem: &str) -> FieldError {
    FieldError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The claim key of a booking submitted with `Idempotency-Key: idempotency_key` (or its `callback_id`).
fn key_of_idempotency_key(idempotency_key: &str) -> String {
    format!("callback-booking:key:{idempotency_key}")
}

/// The reservation id a booking submitted with `Idempotency-Key: idempotency_key` gets.
pub fn reservation_id_for_idempotency_key(idempotency_key: &str) -> String {
    reservation_id(&key_of_idempotency_key(idempotency_key))
}

/// The stable id of a submission: its idempotency key as a UUIDv5.
fn reservation_id(key: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x2b7e_1516_28ae_4d2a_9f3c_6c1d_8e0f_4a21);
    uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes()).to_string()
}

impl Booking {
    /// Books `body` (JSON); `idempotency_key`: the client's, when it sent one.
    pub async fn book(
        &self,
        body: &[u8],
        idempotency_key: Option<&str>,
        now: Timestamp,
        deadline: Deadline,
    ) -> Result<Reservation, BookError> {
        // Only the path of the offending field: serde's messages quote values (a name, a number).
        let request: BookingRequest =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body)).map_err(|e| {
                let path = e.path().to_string();
                let at = if path.is_empty() || path == "." { "." } else { path.as_str() };
                BookError::Invalid(vec![field(
                    at,
                    "not a booking here: a required field is missing, a field is unknown, or a value has the wrong type",
                )])
            })?;
        let mut errors = Vec::new();
        let phone = shared::redact::normalise_e164(&request.phone);
        if phone.is_none() {
            errors.push(field(
                "phone",
                "expected a phone number in E.164 (+ and 8 to 15 digits)",
            ));
        }
        let name = match &request.name {
            Some(n) => n.trim().to_string(),
            None => "Web callback".to_string(),
        };
        if name.is_empty() || name.chars().count() > 100 {
            errors.push(field("name", "1 to 100 characters"));
        }
        if request.concurrency_limit.is_some() {
            errors.push(field(
                "concurrency_limit",
                "not set per booking: each queue's callbacks per slot (1-50) is its `capacity` in CALLBACK_QUEUES; leave it out",
            ));
        }
        let preferred = request
            .channel_preferences
            .as_ref()
            .map(|p| match p.primary.as_str() {
                "voice" | "phone" => "phone",
                "sms" => "sms",
                _ => "",
            });
        if preferred == Some("") {
            errors.push(field("channel_preferences.primary", "voice or sms"));
        }
        let channel = request.channel.as_deref().or(preferred);
        if request
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > 500)
        {
            errors.push(field("reason", "at most 500 characters"));
        }
        if request.incident_number.as_ref().is_some_and(|n| {
            !(3..=40).contains(&n.len()) || !n.chars().all(|c| c.is_ascii_alphanumeric())
        }) {
            errors.push(field(
                "incident_number",
                "an incident number such as INC0010001",
            ));
        }
        if channel.is_some_and(|c| !matches!(c, "phone" | "sms" | "any" | "")) {
            errors.push(field("channel", "phone, sms or any"));
        }
        let client_id = request
            .callback_id
            .as_deref()
            .map(str::trim)
            .filter(|k| (8..=128).contains(&k.len()));
        if request.callback_id.is_some() && client_id.is_none() {
            errors.push(field("callback_id", "8 to 128 characters"));
        }
        let Some(queue) = self.queues.get(&request.queue) else {
            if errors.is_empty() {
                return Err(BookError::UnknownQueue);
            }
            return Err(BookError::Invalid(errors));
        };
        let windows = match validate(&queue.calendar, &request.slots, self.max_slots, now) {
            Ok(w) => w,
            Err(mut e) => {
                errors.append(&mut e);
                Vec::new()
            }
        };
        if !errors.is_empty() {
            return Err(BookError::Invalid(errors));
        }
        let phone = phone.unwrap_or_default();
        let canonical = serde_json::json!({"queue": request.queue, "phone": phone, "name": name,
            "slots": request.slots, "reason": request.reason, "incident": request.incident_number});
        let hash = hex::encode(Sha256::digest(canonical.to_string().as_bytes()));
        let key = match idempotency_key.or(client_id) {
            Some(k) => key_of_idempotency_key(k),
            None => format!("callback-booking:body:{hash}"),
        };
        self.book_claimed(
            queue, &request, &name, &phone, &windows, key, hash, now, deadline,
        )
        .await
    }

    /// A callback to `phone` in `queue_name` as soon as a slot has room (within the queue's horizon), for
    /// conversation `conversation` (one per conversation, however often it is asked for).
    #[allow(clippy::too_many_arguments)]
    pub async fn book_asap(
        &self,
        conversation: &str,
        queue_name: &str,
        phone: &str,
        name: &str,
        incident_number: Option<&str>,
        now: Timestamp,
        deadline: Deadline,
    ) -> Result<Reservation, BookError> {
        let Some(queue) = self.queues.get(queue_name) else {
            return Err(BookError::UnknownQueue);
        };
        let Some(phone) = shared::redact::normalise_e164(phone) else {
            return Err(BookError::Invalid(vec![field("phone", "expected E.164")]));
        };
        let slots = queue.calendar.next_slots(now, ASAP_SLOTS);
        let windows: Vec<crate::schedule::Window> = slots
            .iter()
            .map(|s| crate::schedule::Window { start: *s, end: *s })
            .collect();
        let request = BookingRequest {
            name: Some(name.to_string()),
            phone: phone.clone(),
            queue: queue_name.to_string(),
            slots: Vec::new(),
            channel: None,
            channel_preferences: None,
            callback_id: None,
            concurrency_limit: None,
            reason: None,
            incident_number: incident_number.map(str::to_string),
        };
        let key = format!("callback-booking:conversation:{conversation}");
        let hash = hex::encode(Sha256::digest(format!("{queue_name}|{phone}").as_bytes()));
        self.book_slots(
            queue, &request, name, &phone, &slots, &windows, key, hash, now, deadline,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn book_claimed(
        &self,
        queue: &Queue,
        request: &BookingRequest,
        name: &str,
        phone: &str,
        windows: &[crate::schedule::Window],
        key: String,
        hash: String,
        now: Timestamp,
        deadline: Deadline,
    ) -> Result<Reservation, BookError> {
        let slots: Vec<Timestamp> = windows
            .iter()
            .flat_map(|w| queue.calendar.slots_in(w))
            .collect();
        self.book_slots(
            queue, request, name, phone, &slots, windows, key, hash, now, deadline,
        )
        .await
    }

    /// Claims the submission `key`, then reserves the first of `slots` with room and creates the callback.
    #[allow(clippy::too_many_arguments)]
    async fn book_slots(
        &self,
        queue: &Queue,
        request: &BookingRequest,
        name: &str,
        phone: &str,
        slots: &[Timestamp],
        windows: &[crate::schedule::Window],
        key: String,
        hash: String,
        now: Timestamp,
        deadline: Deadline,
    ) -> Result<Reservation, BookError> {
        let id = reservation_id(&key);
        let (token, retaken) = loop {
            let until = shared::clock::epoch_ms()
                + (deadline.remaining() + Duration::from_secs(5)).as_millis() as u64;
            match self
                .claims
                .claim(&key, &hash, until)
                .await
                .map_err(unavailable)?
            {
                Claim::Acquired { token, retaken } => break (token, retaken),
                Claim::Completed { .. } => {
                    return self
                        .reservations
                        .get(&id)
                        .await
                        .map_err(unavailable)?
                        .ok_or_else(|| {
                            unavailable("the reservation of a completed booking is missing")
                        })
                }
                Claim::Conflict => return Err(BookError::Conflict),
                Claim::InFlight { settle_until_ms } => {
                    let wait = Duration::from_millis(100);
                    let settling = settle_until_ms.map(|u| {
                        Duration::from_millis(u.saturating_sub(shared::clock::epoch_ms()))
                    });
                    if settling.is_some() || !deadline.allows(wait, Duration::from_millis(300)) {
                        return Err(BookError::Unavailable {
                            reason: "the same booking is being made".into(),
                            retry_after: settling
                                .unwrap_or(Duration::from_secs(1))
                                .max(Duration::from_secs(1)),
                        });
                    }
                    tokio::time::sleep(shared::retry::jitter(wait)).await;
                }
            }
        };
        let held = HeldClaim {
            key: &key,
            token: &token,
            completed: AtomicBool::new(false),
        };
        let result = self
            .reserve_and_create(
                &id, queue, request, name, phone, slots, windows, retaken, now, deadline, &held,
            )
            .await;
        let settle = shared::clock::epoch_ms() + self.settle.as_millis() as u64;
        let recorded = match &result {
            // Completed by the write that scheduled the reservation.
            Ok(_) if held.completed.load(Ordering::Relaxed) => Ok(()),
            // Not done yet (another attempt's reservation, still being created): a resubmission continues it.
            Ok(r) if r.status == Status::Requested => {
                self.claims.release(&key, &token, None, Some(settle)).await
            }
            Ok(r) => self
                .claims
                .complete(&key, &token, r.status.name())
                .await
                .map(|_| ()),
            Err(BookError::Unavailable { retry_after, .. }) => {
                // The reservation (and its slot) stay; a resubmission continues where this stopped, once the
                // `Retry-After` the client is told has passed, and so does callback-events if nobody does.
                if matches!(self.reservations.get(&id).await, Ok(Some(r)) if r.status == Status::Requested)
                {
                    self.continue_later(&id, *retry_after).await;
                }
                let wait = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
                let until = shared::clock::epoch_ms().saturating_add(wait);
                self.claims.release(&key, &token, None, Some(until)).await
            }
            Err(_) => self.claims.forget(&key, &token).await.map(|_| ()),
        };
        if let Err(e) = recorded {
            warn!(error = %e, "could not record the booking's outcome; a resubmission continues from the reservation");
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn reserve_and_create(
        &self,
        id: &str,
        queue: &Queue,
        request: &BookingRequest,
        name: &str,
        phone: &str,
        slots: &[Timestamp],
        windows: &[crate::schedule::Window],
        retaken: bool,
        now: Timestamp,
        deadline: Deadline,
        held: &HeldClaim<'_>,
    ) -> Result<Reservation, BookError> {
        // Under a claim that did not exist, no attempt of this booking ran while claims are kept, so the
        // reservation is not read first: its conditional write finds an older one. DynamoDB gives a reason
        // per item of a cancelled transaction, so that is Stale (read below) even when the slot is full.
        // Without a slot to try there is no write to find it: read.
        let existing = match retaken || slots.is_empty() {
            true => self.reservations.get(id).await.map_err(unavailable)?,
            false => None,
        };
        // A reservation written here records the create that follows it (see `complete_requested`).
        let (reservation, create_recorded) = match existing {
            Some(existing) => (existing, false),
            None => {
                let mut r = Reservation {
                    id: id.to_string(),
                    status: Status::Requested,
                    queue: request.queue.clone(),
                    slot: String::new(),
                    name: name.to_string(),
                    phone: phone.to_string(),
                    reason: request.reason.clone(),
                    incident_number: request.incident_number.clone(),
                    conversation_id: None,
                    create_sent_at: None,
                    pending_slot: None,
                    failure_reason: None,
                    history: Vec::new(),
                    revision: 0,
                };
                match self.take_first(&mut r, queue, slots).await? {
                    Outcome::Done => (r, true),
                    Outcome::Full => {
                        return Err(BookError::Full {
                            alternatives: self
                                .alternatives(queue, &request.queue, windows, now)
                                .await,
                        })
                    }
                    // Made meanwhile by another attempt of this booking: its slot is the one.
                    Outcome::Stale => (
                        self.reservations
                            .get(id)
                            .await
                            .map_err(unavailable)?
                            .ok_or_else(|| unavailable("the reservation vanished"))?,
                        false,
                    ),
                }
            }
        };
        self.complete_requested(
            reservation,
            queue,
            now,
            deadline,
            create_recorded,
            Some(held),
        )
        .await
    }

    /// Finishes booking `id` if it is still `requested` (a create refused as busy, or sent without an answer,
    /// and nobody resubmitted): callback-events runs this from the continuation queued when the booking
    /// answered 503. Safe beside a resubmission: every write is conditional on the revision it read.
    pub async fn resume(&self, id: &str, deadline: Deadline) -> Result<Reservation, BookError> {
        let reservation = self
            .reservations
            .get(id)
            .await
            .map_err(unavailable)?
            .ok_or(BookError::NotFound)?;
        let Some(queue) = self.queues.get(&reservation.queue) else {
            return Err(BookError::UnknownQueue);
        };
        self.complete_requested(reservation, queue, Timestamp::now(), deadline, false, None)
            .await
    }

    /// Indexes Genesys callback conversation `conversation` (of Genesys queue `genesys_queue`) under its
    /// reservation, when it is one of ours that is not indexed yet (its create was never confirmed): an event
    /// that arrives before the booking learned the conversation still finds its reservation. `false`: not ours.
    pub async fn adopt(&self, conversation: &str, genesys_queue: &str) -> Result<bool, BookError> {
        if !self
            .queues
            .values()
            .any(|q| q.genesys_queue_id == genesys_queue)
        {
            return Ok(false);
        }
        let Some(id) = genesys::reservation_of(&self.genesys, conversation).await? else {
            return Ok(false);
        };
        let Some(r) = self.reservations.get(&id).await.map_err(unavailable)? else {
            return Ok(false);
        };
        if r.conversation_id
            .as_deref()
            .is_some_and(|c| c != conversation)
        {
            return Ok(false);
        }
        self.reservations
            .index_conversation(conversation, &id)
            .await
            .map_err(unavailable)?;
        Ok(true)
    }

    /// Asks for [`Self::resume`] after `delay`, if continuations are configured.
    async fn continue_later(&self, id: &str, delay: Duration) {
        let Some((sqs, queue)) = &self.continuations else {
            return;
        };
        let body = serde_json::json!({"kind": "callback-continue", "reservation_id": id});
        let sent = sqs
            .send_message()
            .queue_url(queue)
            .message_body(body.to_string())
            .delay_seconds(delay.as_secs().clamp(1, 900) as i32)
            .send()
            .await;
        if let Err(e) = sent {
            warn!(reservation_id = %id, error = %aws_sdk_sqs::error::DisplayErrorContext(&e),
                  "continuation not queued; the booking continues when it is resubmitted");
        }
    }

    /// Creates the Genesys callback of a `requested` reservation. `create_recorded`: the reservation was
    /// just written here, its `create_sent_at` already set for the create that follows (one write less; a
    /// crash before the create is then settled and searched for like an unanswered one). `held`: the
    /// booking's claim, completed by the scheduling write when it can be.
    async fn complete_requested(
        &self,
        mut reservation: Reservation,
        queue: &Queue,
        now: Timestamp,
        deadline: Deadline,
        create_recorded: bool,
        held: Option<&HeldClaim<'_>>,
    ) -> Result<Reservation, BookError> {
        let id = reservation.id.clone();
        let id = id.as_str();
        if reservation.status != Status::Requested {
            return Ok(reservation);
        }
        let slot: Timestamp = reservation.slot.parse().unwrap_or(now);
        if let Some(sent) = reservation
            .create_sent_at
            .as_deref()
            .filter(|_| !create_recorded)
            .and_then(|t| t.parse::<Timestamp>().ok())
        {
            // An earlier create was sent and never confirmed: nothing is created again before the settle
            // window is over, and then only if Genesys has no callback for the reservation.
            let settled = sent
                .checked_add(jiff::SignedDuration::try_from(self.settle).unwrap_or_default())
                .unwrap_or(sent);
            let now_real = Timestamp::now();
            if now_real < settled {
                let wait = settled.duration_since(now_real).unsigned_abs();
                return Err(BookError::Unavailable {
                    reason: "an earlier create may still be applied by Genesys".into(),
                    retry_after: wait.max(Duration::from_secs(1)),
                });
            }
            let found = genesys::find_by_reservation(
                &self.genesys,
                &queue.genesys_queue_id,
                id,
                sent,
                deadline,
            )
            .await
            .map_err(|e| unavailable(e.to_string()))?;
            if let Some(conversation) = found {
                return self.scheduled(reservation, conversation, held).await;
            }
        }
        let callback = CallbackRequest {
            queue_id: queue.genesys_queue_id.clone(),
            name: reservation.name.clone(),
            number: reservation.phone.clone(),
            scheduled: slot,
            data: BTreeMap::from_iter(
                [
                    Some(("reservationId".to_string(), id.to_string())),
                    reservation
                        .incident_number
                        .clone()
                        .map(|n| ("incidentNumber".to_string(), n)),
                    reservation
                        .reason
                        .clone()
                        .map(|r| ("reason".to_string(), shared::redact::redact_text(&r))),
                ]
                .into_iter()
                .flatten(),
            ),
        };
        // Recorded before it is sent: however this attempt ends, the next one knows a create may exist.
        if !create_recorded {
            reservation.create_sent_at = Some(Timestamp::now().to_string());
            if let Some(moved) = self.save_from_requested(&mut reservation).await? {
                return Ok(moved);
            }
        }
        // A create left without an answer is never repeated in this attempt: Genesys may have made it.
        let created = self
            .retrier
            .run(
                deadline,
                |_| async {
                    genesys::create(&self.genesys, &callback)
                        .await
                        .map_err(CreateError::from)
                },
                |e, _| warn!(error = %e.0, "Genesys callback create failed; retrying"),
            )
            .await
            .map_err(|e| e.0);
        match created {
            Ok(conversation) => self.scheduled(reservation, conversation, held).await,
            Err(e) if e.class() == FailureClass::Permanent && !e.ambiguous() => {
                reservation.status = Status::Failed;
                reservation.failure_reason = Some(e.to_string());
                reservation.create_sent_at = None;
                // Failed and its place given back, together.
                let write = self
                    .reservations
                    .replace(&reservation, Status::Requested)
                    .map_err(unavailable)?;
                match self
                    .capacity
                    .transact(&reservation.queue, None, Some(slot), write)
                    .await
                    .map_err(unavailable)?
                {
                    Outcome::Done => {
                        reservation.revision += 1;
                        Ok(reservation)
                    }
                    _ => self
                        .reservations
                        .get(id)
                        .await
                        .map_err(unavailable)?
                        .ok_or_else(|| unavailable("the reservation vanished")),
                }
            }
            Err(e) => {
                if !e.ambiguous() {
                    // Not processed (a 429, no token): nothing to look for next time.
                    reservation.create_sent_at = None;
                    let _ = self
                        .reservations
                        .update(&mut reservation, Status::Requested)
                        .await;
                }
                Err(BookError::Unavailable {
                    reason: e.to_string(),
                    retry_after: match e.ambiguous() {
                        true => self.settle,
                        false => e.retry_after().unwrap_or(Duration::from_secs(2)),
                    }
                    .max(Duration::from_secs(1)),
                })
            }
        }
    }

    /// Saves `r` as scheduled with its Genesys `conversation` indexed, and completes `held` in the same
    /// transaction (one write unit more: two for a transaction's item, one for an `UpdateItem`; one round trip less).
    async fn scheduled(
        &self,
        mut r: Reservation,
        conversation: String,
        held: Option<&HeldClaim<'_>>,
    ) -> Result<Reservation, BookError> {
        r.status = Status::Scheduled;
        r.conversation_id = Some(conversation.clone());
        r.create_sent_at = None;
        let completion = held
            .map(|h| self.claims.completion(h.key, h.token, r.status.name()))
            .transpose()
            .map_err(unavailable)?;
        match self
            .reservations
            .schedule(&mut r, &conversation, completion)
            .await
            .map_err(unavailable)?
        {
            Scheduled::Done { with } => {
                if let (true, Some(h)) = (with, held) {
                    h.completed.store(true, Ordering::Relaxed);
                }
                return Ok(r);
            }
            Scheduled::Moved => {}
        }
        // Moved meanwhile (another attempt, a lifecycle event): indexed still, and what is stored is the answer.
        self.reservations
            .index_conversation(&conversation, &r.id)
            .await
            .map_err(unavailable)?;
        self.stored(&r.id).await
    }

    /// Saves `r` over its `requested` record. `Some`: the record had moved meanwhile (another attempt, a
    /// lifecycle event), and what is stored now is the answer.
    async fn save_from_requested(
        &self,
        r: &mut Reservation,
    ) -> Result<Option<Reservation>, BookError> {
        if self
            .reservations
            .update(r, Status::Requested)
            .await
            .map_err(unavailable)?
        {
            return Ok(None);
        }
        self.stored(&r.id).await.map(Some)
    }

    /// The reservation as stored now.
    async fn stored(&self, id: &str) -> Result<Reservation, BookError> {
        self.reservations
            .get(id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unavailable("the reservation vanished"))
    }

    /// Stores `r` in the first of `slots` with room, its place taken in the same transaction. `Full`: no
    /// slot has room; `Stale`: a reservation with this id exists already.
    async fn take_first(
        &self,
        r: &mut Reservation,
        queue: &Queue,
        slots: &[Timestamp],
    ) -> Result<Outcome, BookError> {
        for slot in slots {
            r.slot = slot.to_string();
            // The create follows this write at once: recorded with it (see `complete_requested`).
            r.create_sent_at = Some(Timestamp::now().to_string());
            let write = self.reservations.put_new(r).map_err(unavailable)?;
            match self
                .capacity
                .transact(&r.queue, Some((*slot, queue.capacity)), None, write)
                .await
                .map_err(unavailable)?
            {
                Outcome::Full => continue,
                done_or_stale => return Ok(done_or_stale),
            }
        }
        Ok(Outcome::Full)
    }

    /// Up to three slots with room after the preferred ones, within the queue's horizon.
    pub(crate) async fn alternatives(
        &self,
        queue: &Queue,
        name: &str,
        windows: &[crate::schedule::Window],
        now: Timestamp,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let Some(last) = windows.iter().map(|w| w.end).max() else {
            return out;
        };
        let horizon = jiff::SignedDuration::try_from(queue.calendar.horizon).unwrap_or_default();
        let limit = now.checked_add(horizon).unwrap_or(now);
        let mut day = last;
        for _ in 0..30 {
            let Ok(next) = day.checked_add(jiff::SignedDuration::from_hours(24)) else {
                break;
            };
            let window = crate::schedule::Window {
                start: day,
                end: next,
            };
            for slot in queue.calendar.slots_in(&window) {
                if slot > limit || out.len() >= 3 {
                    return out;
                }
                if self.capacity.taken(name, slot).await.unwrap_or(u32::MAX) < queue.capacity {
                    out.push(slot.to_string());
                }
            }
            day = next;
        }
        out
    }
}

/// A create's failure for the retry engine: an ambiguous one ends the attempts.
#[derive(Debug)]
struct CreateError(ApiError);

impl From<ApiError> for CreateError {
    fn from(e: ApiError) -> Self {
        CreateError(e)
    }
}

impl Retryable for CreateError {
    fn class(&self) -> FailureClass {
        match self.0.ambiguous() {
            true => FailureClass::Permanent,
            false => self.0.class(),
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after()
    }
    fn ambiguous(&self) -> bool {
        self.0.ambiguous()
    }
    fn out_of_time(budget: Duration, started: bool) -> Self {
        CreateError(ApiError::out_of_time(budget, started))
    }
}

/// A booking's claim while it is held: `completed` once a write completed it.
struct HeldClaim<'k> {
    key: &'k str,
    token: &'k str,
    completed: AtomicBool,
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> BookError {
    BookError::Unavailable {
        reason: e.to_string(),
        retry_after: Duration::from_secs(2),
    }
}

/// A booking error as the API answers it: status and JSON body.
pub fn answer(e: &BookError) -> (u16, Value) {
    let mut body = Map::new();
    let (status, code) = match e {
        BookError::Invalid(fields) => {
            body.insert("fields".into(), serde_json::json!(fields));
            (400, "invalid_booking")
        }
        BookError::UnknownQueue => (404, "unknown_queue"),
        BookError::Full { alternatives } => {
            body.insert("alternatives".into(), serde_json::json!(alternatives));
            (409, "slots_full")
        }
        BookError::Conflict => (409, "idempotency_conflict"),
        BookError::NotFound => (404, "not_found"),
        BookError::WrongState(_) => (409, "not_changeable"),
        BookError::Refused(_) => (502, "genesys_refused"),
        BookError::Unavailable { .. } => (503, "genesys_unavailable"),
    };
    body.insert("error".into(), Value::String(code.into()));
    body.insert("message".into(), Value::String(e.to_string()));
    (status, Value::Object(body))
}

impl From<ApiError> for BookError {
    fn from(e: ApiError) -> Self {
        unavailable(e)
    }
}
