//! A callback booking service over moto and the Genesys simulator, as callback-api builds it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use callback_api::booking::{Booking, Queue};
use callback_api::capacity::SlotCapacity;
use callback_api::reservations::Reservations;
use callback_api::schedule::{CalendarSpec, QueueCalendar};
use jiff::Timestamp;
use local::genesys_sim::GenesysSim;
use serde_json::json;
use shared::idempotency::IdempotencyStore;
use shared::retry::{Retrier, RetryPolicy};

use crate::aws_config;

pub const NOW: &str = "2026-12-01T08:00:00Z"; // a Tuesday

pub async fn booking(genesys_queue: &str, settle: Duration) -> (GenesysSim, Arc<Booking>) {
    let (sim, genesys) = crate::genesys_with_api().await;
    let aws = aws_config().await;
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let names = local::aws_setup::ResourceNames::with_prefix(&prefix);
    let table = local::aws_setup::ensure(&aws, &names, &crate::secret_values())
        .await
        .unwrap()
        .callbacks_table;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let hours = ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|d| (d.to_string(), ["09:00".to_string(), "17:00".to_string()]))
        .collect();
    let calendar = QueueCalendar::from_spec(&CalendarSpec {
        timezone: "Europe/Berlin".into(),
        hours,
        slot_minutes: 30,
        horizon_days: 14,
    })
    .unwrap();
    let queues = HashMap::from([(
        "support".to_string(),
        Queue {
            genesys_queue_id: genesys_queue.into(),
            calendar,
            capacity: 5,
        },
    )]);
    let b = Booking {
        queues,
        capacity: SlotCapacity::new(dynamodb.clone(), table.clone(), Duration::from_secs(86_400)),
        reservations: Reservations::new(
            dynamodb.clone(),
            table.clone(),
            Duration::from_secs(86_400),
        ),
        claims: IdempotencyStore::new(dynamodb, table, Duration::from_secs(86_400)),
        genesys,
        retrier: Retrier {
            policy: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
                max_retry_after: Duration::from_secs(1),
            },
            reserve: Duration::from_millis(300),
            attempt_timeout: Duration::MAX,
            min_attempt: Duration::from_millis(100),
        },
        max_slots: 3,
        settle,
    };
    (sim, Arc::new(b))
}

/// A booking for Wednesday 10:00–11:00 in Berlin (two 30-minute slots).
pub fn body(phone: &str) -> Vec<u8> {
    json!({"name": "Ada Lovelace", "phone": phone, "queue": "support", "reason": "card charged twice",
           "incident_number": "INC0010001",
           "slots": [{"start": "2026-12-02T10:00", "end": "2026-12-02T11:00", "timezone": "Europe/Berlin"}]})
    .to_string()
    .into_bytes()
}

pub fn now() -> Timestamp {
    NOW.parse().unwrap()
}
