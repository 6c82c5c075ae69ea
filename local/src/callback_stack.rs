//! The web callback system as `make run` and the browser test run it: callback-api over HTTP with the booking
//! page, the WebSocket stand-in with callback-websocket, callback-notifier with a local subscriber, and the
//! pumps that play EventBridge, DynamoDB Streams and SQS between them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tracing::{info, warn};

use callback_api::access::AccessKeys;
use callback_api::live::Connections;
use callback_api::reservations::Reservations;

use crate::aws_setup::{BoxError, Resources};
use crate::callback_pumps::{deliver_event, pump_callback_events, pump_webhooks, StreamPump};

/// The booking page; `{{WEBSOCKET_URL}}` is replaced with the live status endpoint.
pub const BOOKING_PAGE: &str = include_str!("../web/callback.html");

/// Where lifecycle events come from: the simulator in this process, or one at a URL (`GET
/// /sim/callback-events?since=N`).
#[derive(Clone)]
pub enum EventSource {
    InProcess(crate::genesys_sim::GenesysSim),
    Http {
        url: String,
        client: reqwest::Client,
    },
}

impl EventSource {
    async fn since(&self, n: usize) -> Result<Vec<Value>, BoxError> {
        match self {
            EventSource::InProcess(sim) => Ok(sim.emitted(n)),
            EventSource::Http { url, client } => Ok(client
                .get(format!("{url}/sim/callback-events?since={n}"))
                .send()
                .await?
                .json()
                .await?),
        }
    }
}

pub const LOCAL_SUBSCRIBER_SECRET: &str = "local-calendar-subscriber-secret";

/// What the local subscriber (`POST /local/subscriber`) received: the notices whose signature held.
#[derive(Clone, Default)]
pub struct LocalSubscriber {
    pub received: Arc<Mutex<Vec<Value>>>,
}

async fn subscriber(
    State(s): State<LocalSubscriber>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let timestamp: u64 = header("x-callback-timestamp").parse().unwrap_or(0);
    let expected =
        callback_notifier::signature(LOCAL_SUBSCRIBER_SECRET.as_bytes(), timestamp, &body);
    let fresh = shared::clock::epoch_secs().abs_diff(timestamp) <= 300;
    if header("x-callback-signature") != expected || !fresh {
        return (axum::http::StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    if let Ok(notice) = serde_json::from_slice::<Value>(&body) {
        println!(
            "  subscriber: reservation {} is {}",
            notice["reservation_id"].as_str().unwrap_or_default(),
            notice["status"].as_str().unwrap_or_default()
        );
        if let Ok(mut r) = s.received.lock() {
            r.push(notice);
        }
    }
    axum::http::StatusCode::NO_CONTENT.into_response()
}

/// `GET /book` (the page), `POST /local/subscriber` (the local calendar system).
pub fn page_router(websocket_url: &str, subscriber_state: LocalSubscriber) -> Router {
    let page = BOOKING_PAGE.replace("{{WEBSOCKET_URL}}", websocket_url);
    Router::new()
        .route("/book", get(move || async move { Html(page.clone()) }))
        .route("/local/subscriber", post(subscriber))
        .with_state(subscriber_state)
}

pub struct CallbackStack {
    /// `ws://127.0.0.1:<port>/`
    pub websocket_url: String,
    pub gateway: crate::ws_gateway::WsGateway,
}

/// Starts the WebSocket stand-in on `ws_addr` and the pumps in the background; the subscriber is told at
/// `subscriber_url`.
pub async fn start(
    aws: &aws_config::SdkConfig,
    res: &Resources,
    access_key: &str,
    ws_addr: std::net::SocketAddr,
    subscriber_url: String,
    events: EventSource,
    booking: Option<callback_api::booking::Booking>,
) -> Result<CallbackStack, BoxError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let hours = Duration::from_secs(7_200);
    let live = callback_websocket::Live {
        connections: Connections::new(dynamodb.clone(), &res.callbacks_table, hours),
        reservations: Reservations::new(
            dynamodb.clone(),
            &res.callbacks_table,
            Duration::from_secs(30 * 86_400),
        ),
        access: AccessKeys::from_secret(access_key),
    };
    let gateway = crate::ws_gateway::WsGateway::new(Arc::new(live));
    let bound = crate::http::spawn(ws_addr, gateway.router()).await?;
    let push = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(aws)
            .endpoint_url(format!("http://{bound}"))
            .build(),
    );
    let notifier = callback_notifier::Notifier {
        connections: Connections::new(dynamodb.clone(), &res.callbacks_table, hours),
        deliveries: callback_notifier::Deliveries {
            client: dynamodb.clone(),
            table: res.callbacks_table.clone(),
        },
        push: Some(push),
        subscribers: vec![callback_notifier::Subscriber {
            name: "local-calendar".into(),
            url: subscriber_url,
            secret: LOCAL_SUBSCRIBER_SECRET.as_bytes().to_vec(),
        }],
        sqs: aws_sdk_sqs::Client::new(aws),
        webhooks_queue_url: Some(res.callback_webhooks_queue_url.clone()),
        dead_letter_queue_url: Some(res.callback_webhooks_dead_letter_queue_url.clone()),
        http: shared::http_client::client(
            "local",
            shared::http_client::Timeouts::new(Duration::from_secs(2), Duration::from_secs(5)),
        )?,
        backoff: shared::retry::RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        },
        max_attempts: 5,
    };
    let mut stream = StreamPump::new(aws, &res.callbacks_stream_arn);
    let sqs = aws_sdk_sqs::Client::new(aws);
    let callback_events = callback_events::CallbackEvents {
        reservations: Reservations::new(
            dynamodb,
            &res.callbacks_table,
            Duration::from_secs(30 * 86_400),
        ),
        booking,
        deadline: Duration::from_secs(8),
    };
    let (events_queue, webhooks_queue) = (
        res.callback_events_queue_url.clone(),
        res.callback_webhooks_queue_url.clone(),
    );
    tokio::spawn(async move {
        let mut forwarded = 0;
        loop {
            // EventBridge: the simulator's callback events onto their queue.
            match events.since(forwarded).await {
                Ok(new) => {
                    for event in &new {
                        if let Err(e) = deliver_event(&sqs, &events_queue, event).await {
                            warn!(error = %e, "callback event not queued");
                        }
                    }
                    forwarded += new.len();
                }
                Err(e) => warn!(error = %e, "simulator events unreadable"),
            }
            let steps = async {
                let moved = pump_callback_events(&sqs, &events_queue, &callback_events).await?;
                let changes = stream.pump(&notifier).await?;
                let sent = pump_webhooks(&sqs, &webhooks_queue, &notifier).await?;
                Ok::<_, BoxError>(moved + changes + sent)
            };
            match steps.await {
                Ok(0) => tokio::time::sleep(Duration::from_millis(250)).await,
                Ok(n) => info!(n, "callback pumps moved records"),
                Err(e) => {
                    warn!(error = %e, "callback pump failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(CallbackStack {
        websocket_url: format!("ws://{bound}/"),
        gateway,
    })
}
