//! callback-events: each SQS record is one of
//!
//! - a Genesys conversation event: callback events move their reservation forwards
//!   ([`callback_api::lifecycle`]);
//! - a callback request from the servicenow-writer (`{"kind": "callback-request", "conversation_id", "queue",
//!   "phone", "incident_number"}`, when a mapping profile asks for one): a callback to the caller as soon as a
//!   slot has room, one per conversation ([`callback_api::booking::Booking::book_asap`]).
//!
//! - a continuation from callback-api (`{"kind": "callback-continue", "reservation_id"}`, sent with a delay when a
//!   booking answered 503 and stayed `requested`): the booking is finished even if the client never comes back
//!   ([`callback_api::booking::Booking::resume`]).
//!
//! A failure that may pass gives the record back (partial batch failure); one that will not is reported and
//! left to the queue's dead-letter queue (after `maxReceiveCount`), never dropped.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use serde::Deserialize;
use tracing::{error, info, warn};

use callback_api::booking::{BookError, Booking};
use callback_api::lifecycle::{apply, Applied, LifecycleError};
use callback_api::reservations::Reservations;
use shared::config::{ConfigError, Env};
use shared::retry::Deadline;
use shared::StartupError;

pub struct Config {
    pub table: String,
    /// callback-api's settings, when `CALLBACK_QUEUES` is set: callback requests are booked with them.
    pub booking: Option<callback_api::config::Config>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        let booking = match env.optional("CALLBACK_QUEUES") {
            Some(_) => Some(callback_api::config::Config::from_vars(env)?),
            None => None,
        };
        Ok(Self {
            table: env.required("CALLBACKS_TABLE")?,
            booking,
        })
    }
}

pub struct CallbackEvents {
    pub reservations: Reservations,
    pub booking: Option<Booking>,
    /// How long a callback request may take to book.
    pub deadline: Duration,
}

pub async fn build(
    config: Config,
    aws: &aws_config::SdkConfig,
) -> Result<CallbackEvents, StartupError> {
    let booking = match config.booking {
        Some(c) => Some(callback_api::config::build_booking(c, aws).await?),
        None => None,
    };
    Ok(CallbackEvents {
        reservations: Reservations::new(
            aws_sdk_dynamodb::Client::new(aws),
            config.table,
            Duration::from_secs(30 * 86_400),
        ),
        booking,
        deadline: Duration::from_secs(8),
    })
}

/// What the servicenow-writer asks for.
#[derive(Debug, Deserialize)]
struct CallbackRequest {
    kind: String,
    conversation_id: String,
    queue: String,
    phone: String,
    #[serde(default)]
    incident_number: Option<String>,
}

/// What callback-api asks for when a booking was left `requested`.
#[derive(Debug, Deserialize)]
struct Continuation {
    kind: String,
    reservation_id: String,
}

/// Finishes a booking left `requested`; `false`: give the record back (tried again after the queue's
/// visibility timeout, dead-lettered after `maxReceiveCount`).
async fn resume(events: &CallbackEvents, id: &str, c: Continuation) -> bool {
    let Some(booking) = &events.booking else {
        error!(message_id = %id, reservation_id = %c.reservation_id,
               "a booking continuation arrived but callback-events has no CALLBACK_QUEUES configured");
        return false;
    };
    match booking
        .resume(&c.reservation_id, Deadline::after(events.deadline))
        .await
    {
        Ok(r) if r.status == callback_api::reservations::Status::Requested => {
            info!(message_id = %id, reservation_id = %r.id, "booking still being made elsewhere; tried again later");
            false
        }
        Ok(r) => {
            info!(message_id = %id, reservation_id = %r.id, status = r.status.name(), "unfinished booking finished");
            true
        }
        Err(BookError::NotFound) => {
            warn!(message_id = %id, reservation_id = %c.reservation_id, "continuation for a reservation that is gone");
            true
        }
        Err(e) => {
            warn!(message_id = %id, reservation_id = %c.reservation_id, error = %e, "unfinished booking not finished yet");
            false
        }
    }
}

fn continuation(body: &str) -> Option<Continuation> {
    serde_json::from_str::<Continuation>(body)
        .ok()
        .filter(|c| c.kind == "callback-continue")
}

fn callback_request(body: &str) -> Option<CallbackRequest> {
    serde_json::from_str::<CallbackRequest>(body)
        .ok()
        .filter(|r| r.kind == "callback-request")
}

/// Books a requested callback; `false`: give the record back.
async fn book(events: &CallbackEvents, id: &str, r: CallbackRequest) -> bool {
    let Some(booking) = &events.booking else {
        error!(message_id = %id, conversation_id = %r.conversation_id,
               "a callback was requested but callback-events has no CALLBACK_QUEUES (and Genesys credentials) configured");
        return false;
    };
    let name = match &r.incident_number {
        Some(n) => format!("Callback for {n}"),
        None => "Callback".to_string(),
    };
    let result = booking
        .book_asap(
            &r.conversation_id,
            &r.queue,
            &r.phone,
            &name,
            r.incident_number.as_deref(),
            jiff::Timestamp::now(),
            Deadline::after(events.deadline),
        )
        .await;
    match result {
        Ok(reservation) if reservation.status == callback_api::reservations::Status::Failed => {
            error!(message_id = %id, conversation_id = %r.conversation_id, reservation_id = %reservation.id,
                   reason = reservation.failure_reason.as_deref().unwrap_or(""),
                   "Genesys refused the requested callback; left to the dead-letter queue");
            false
        }
        Ok(reservation) => {
            info!(message_id = %id, conversation_id = %r.conversation_id, reservation_id = %reservation.id,
                  status = reservation.status.name(), slot = %reservation.slot, "requested callback booked");
            true
        }
        Err(BookError::Unavailable { reason, .. }) => {
            warn!(message_id = %id, conversation_id = %r.conversation_id, reason = %reason, "callback not booked yet; retried");
            false
        }
        Err(e) => {
            error!(message_id = %id, conversation_id = %r.conversation_id, queue = %r.queue, error = %e,
                   "requested callback cannot be booked; left to the dead-letter queue");
            false
        }
    }
}

const NOT_INDEXED: &str = "no reservation for this conversation";

/// A callback event of a conversation no reservation is indexed under: if Genesys says it was made for one
/// of ours (a create whose answer was lost), it is indexed now. `Ok(false)`: not ours (or no booking here).
async fn adopt(events: &CallbackEvents, body: &str) -> Result<bool, String> {
    let Some(booking) = &events.booking else {
        return Ok(false);
    };
    let Ok(event) = shared::InboundEvent::parse(body.as_bytes()) else {
        return Ok(false);
    };
    let (Some(conversation), Some(queue)) = (
        event.body.get("conversationId").and_then(|v| v.as_str()),
        event.body.get("queueId").and_then(|v| v.as_str()),
    ) else {
        return Ok(false);
    };
    booking
        .adopt(conversation, queue)
        .await
        .map_err(|e| e.to_string())
}

/// Applies every record; the ids of those to retry are reported.
pub async fn process_batch(events: &CallbackEvents, records: Vec<SqsMessage>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or("");
        if let Some(request) = callback_request(body) {
            if !book(events, &id, request).await {
                response.add_failure(id);
            }
            continue;
        }
        if let Some(c) = continuation(body) {
            if !resume(events, &id, c).await {
                response.add_failure(id);
            }
            continue;
        }
        let mut applied = apply(&events.reservations, body.as_bytes()).await;
        if matches!(applied, Ok(Applied::Ignored(NOT_INDEXED))) {
            applied = match adopt(events, body).await {
                Ok(true) => apply(&events.reservations, body.as_bytes()).await,
                Ok(false) => applied,
                Err(reason) => {
                    warn!(message_id = %id, reason = %reason, "callback conversation not looked up; record returned to the queue");
                    response.add_failure(id);
                    continue;
                }
            };
        }
        match applied {
            Ok(Applied::Moved { reservation, to }) => {
                info!(message_id = %id, reservation_id = %reservation, status = to.name(), "callback status moved")
            }
            Ok(Applied::Unchanged { reservation }) => {
                info!(message_id = %id, reservation_id = %reservation, "callback event already applied")
            }
            Ok(Applied::Ignored(why)) => info!(message_id = %id, reason = why, "event ignored"),
            Err(LifecycleError::Invalid(reason)) => {
                // Given back until the queue's maxReceiveCount moves it to the dead-letter queue.
                error!(message_id = %id, reason = %reason, "not a Genesys event");
                response.add_failure(id);
            }
            Err(e @ LifecycleError::Contended) => {
                warn!(message_id = %id, error = %e, "record returned to the queue");
                response.add_failure(id);
            }
            Err(LifecycleError::Store(e)) => {
                warn!(message_id = %id, error = %e, "reservation store unavailable; record returned to the queue");
                response.add_failure(id);
            }
        }
    }
    response
}
