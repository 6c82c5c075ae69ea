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
    let (sim, b, _) = booking_with_resources(genesys_queue, settle).await;
    (sim, b)
}

/// [`booking`], with the resources it was made on (the callbacks table's stream, the callback queues).
pub async fn booking_with_resources(
    genesys_queue: &str,
    settle: Duration,
) -> (GenesysSim, Arc<Booking>, local::aws_setup::Resources) {
    let (sim, genesys) = crate::genesys_with_api().await;
    let aws = aws_config().await;
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let names = local::aws_setup::ResourceNames::with_prefix(&prefix);
    let resources = local::aws_setup::ensure(&aws, &names, &crate::secret_values())
        .await
        .unwrap();
    let table = resources.callbacks_table.clone();
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
        continuations: Some((
            aws_sdk_sqs::Client::new(&aws),
            resources.callback_events_queue_url.clone(),
        )),
    };
    (sim, Arc::new(b), resources)
}

/// The standard booking ([`body`] for +15550199888), booked at [`now`].
pub async fn booked(b: &Booking) -> callback_api::reservations::Reservation {
    b.book(
        &body("+15550199888"),
        None,
        now(),
        shared::retry::Deadline::after(Duration::from_secs(4)),
    )
    .await
    .expect("booked")
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

/// Booking, the live status WebSocket (callback-websocket behind the local gateway), callback-notifier with
/// one webhook subscriber, and the pumps between them, on moto and loopback.
pub struct LiveRig {
    pub sim: GenesysSim,
    pub booking: Arc<Booking>,
    pub resources: local::aws_setup::Resources,
    pub notifier: callback_notifier::Notifier,
    pub gateway: local::ws_gateway::WsGateway,
    /// `ws://127.0.0.1:<port>/`
    pub ws_url: String,
    pub stream: local::callback_pumps::StreamPump,
    pub sqs: aws_sdk_sqs::Client,
    pub sink: crate::webhook_sink::WebhookSink,
}

pub const SUBSCRIBER_SECRET: &[u8] = b"calendar-subscriber-secret";

pub async fn live_rig() -> LiveRig {
    let (sim, booking, resources) =
        booking_with_resources("queue-support", Duration::from_secs(1)).await;
    let aws = aws_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let day = Duration::from_secs(86_400);
    let live = callback_websocket::Live {
        connections: callback_api::live::Connections::new(
            dynamodb.clone(),
            &resources.callbacks_table,
            Duration::from_secs(7_200),
        ),
        reservations: Reservations::new(dynamodb.clone(), &resources.callbacks_table, day),
        access: callback_api::access::AccessKeys::from_secret(crate::CALLBACK_ACCESS_KEY),
    };
    let gateway = local::ws_gateway::WsGateway::new(Arc::new(live));
    let addr = local::http::spawn(([127, 0, 0, 1], 0).into(), gateway.router())
        .await
        .expect("gateway");
    let (sink, sink_url) = crate::webhook_sink::WebhookSink::start().await;
    let push = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&aws)
            .endpoint_url(format!("http://{addr}"))
            .build(),
    );
    let notifier = callback_notifier::Notifier {
        connections: callback_api::live::Connections::new(
            dynamodb.clone(),
            &resources.callbacks_table,
            Duration::from_secs(7_200),
        ),
        deliveries: callback_notifier::Deliveries {
            client: dynamodb,
            table: resources.callbacks_table.clone(),
        },
        push: Some(push),
        subscribers: vec![callback_notifier::Subscriber {
            name: "calendar".into(),
            url: sink_url,
            secret: SUBSCRIBER_SECRET.to_vec(),
        }],
        sqs: aws_sdk_sqs::Client::new(&aws),
        webhooks_queue_url: Some(resources.callback_webhooks_queue_url.clone()),
        dead_letter_queue_url: Some(resources.callback_webhooks_dead_letter_queue_url.clone()),
        http: shared::http_client::client(
            "tests",
            shared::http_client::Timeouts::new(Duration::from_secs(1), Duration::from_secs(2)),
        )
        .expect("http"),
        backoff: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(1),
        },
        max_attempts: 3,
    };
    let stream = local::callback_pumps::StreamPump::new(&aws, &resources.callbacks_stream_arn);
    LiveRig {
        sim,
        booking,
        resources,
        notifier,
        gateway,
        ws_url: format!("ws://{addr}/"),
        stream,
        sqs: aws_sdk_sqs::Client::new(&aws),
        sink,
    }
}

/// The next weekday after today (real clock): a day the test queues are open.
pub fn next_weekday() -> jiff::civil::Date {
    let mut day = jiff::Zoned::now().date();
    loop {
        day = day.tomorrow().unwrap();
        if !matches!(
            day.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        ) {
            return day;
        }
    }
}
