//! callback-events: each SQS record is one Genesys conversation event; callback events move their
//! reservation forwards ([`callback_api::lifecycle`]). A store failure gives the record back (partial batch
//! failure); a record that is not an event is reported and left to the queue's dead-letter queue.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use tracing::{error, info, warn};

use callback_api::lifecycle::{apply, Applied, LifecycleError};
use callback_api::reservations::Reservations;
use shared::config::{ConfigError, Env};

pub struct Config {
    pub table: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required("CALLBACKS_TABLE")?,
        })
    }
}

pub fn build(config: Config, aws: &aws_config::SdkConfig) -> Reservations {
    Reservations::new(
        aws_sdk_dynamodb::Client::new(aws),
        config.table,
        Duration::from_secs(30 * 86_400),
    )
}

/// Applies every record; the ids of those to retry are reported.
pub async fn process_batch(
    reservations: &Reservations,
    records: Vec<SqsMessage>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or("");
        match apply(reservations, body.as_bytes()).await {
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
