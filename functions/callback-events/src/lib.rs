//! callback-events: each SQS record is one of
//!
//! - a Genesys conversation event: callback events move their reservation forwards
//!   ([`callback_api::lifecycle`]);
//! - a callback request from the servicenow-writer (`{"kind": "callback-request", "conversation_id", "queue",
//!   "phone", "incident_number"}`, when a mapping profile asks for one): a callback to the caller as soon as a
//!   slot has room, one per conversation ([`callback_api::booking::Booking::book_asap`]).
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
        Some(c) => Some(callback_api::config::build(c, aws).await?.booking),
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
        match apply(&events.reservations, body.as_bytes()).await {
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
