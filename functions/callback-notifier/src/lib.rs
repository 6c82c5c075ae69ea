//! callback-notifier: what each reservation change sends out. One function, two event sources:
//!
//! - **The callbacks table's stream** (new and old images): a reservation whose status or slot changed becomes a
//!   [`Notice`]. It is pushed to the reservation's open WebSocket connections (`PostToConnection`; a 410 Gone
//!   connection is forgotten) and queued once per subscriber on a FIFO queue (a group per subscriber and
//!   reservation, so each subscriber sees a reservation's changes in order; deduplicated by the notice id). The
//!   status update itself never waits for any of it: it is already stored when the stream carries it.
//! - **That webhooks queue**: each message is POSTed to its subscriber, signed (`X-Callback-Signature:
//!   sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` with `X-Callback-Timestamp`, so a receiver can
//!   refuse replays). A 408, 429, 5xx or no answer is retried with backoff (or `Retry-After`) by hiding the
//!   message; another 4xx, or `CALLBACK_WEBHOOK_MAX_ATTEMPTS` failures, sends it to the dead-letter queue with
//!   the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use callback_api::live::{Connections, Notice};
use callback_api::reservations::Reservation;
use shared::config::{ConfigError, Env};
use shared::retry::RetryPolicy;
use shared::StartupError;

/// One subscriber of `CALLBACK_SUBSCRIBERS`: `{"<name>": {"url": "https://…", "secret_id": "<secret>"}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberSpec {
    url: String,
    secret_id: String,
}

pub struct Subscriber {
    pub name: String,
    pub url: String,
    pub secret: Vec<u8>,
}

pub struct Config {
    pub table: String,
    /// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`; without it nothing is pushed.
    pub websocket_endpoint: Option<String>,
    subscribers: BTreeMap<String, SubscriberSpec>,
    pub webhooks_queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
    pub max_attempts: u32,
    pub timeout: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        let subscribers: BTreeMap<String, SubscriberSpec> = serde_json::from_str(
            &env.optional("CALLBACK_SUBSCRIBERS")
                .unwrap_or_else(|| "{}".into()),
        )
        .map_err(|e| {
            ConfigError::invalid(
                "CALLBACK_SUBSCRIBERS",
                format!("expected {{\"<name>\": {{\"url\", \"secret_id\"}}}}: {e}"),
            )
        })?;
        for spec in subscribers.values() {
            shared::http_client::check_url("CALLBACK_SUBSCRIBERS", &spec.url)?;
        }
        let webhooks_queue_url = env.optional("CALLBACK_WEBHOOKS_QUEUE_URL");
        let dead_letter_queue_url = env.optional("CALLBACK_WEBHOOKS_DEAD_LETTER_QUEUE_URL");
        if !subscribers.is_empty()
            && (webhooks_queue_url.is_none() || dead_letter_queue_url.is_none())
        {
            return Err(ConfigError::invalid(
                "CALLBACK_WEBHOOKS_QUEUE_URL",
                "subscribers need CALLBACK_WEBHOOKS_QUEUE_URL and CALLBACK_WEBHOOKS_DEAD_LETTER_QUEUE_URL",
            ));
        }
        let websocket_endpoint = env.optional("CALLBACK_WEBSOCKET_ENDPOINT");
        if let Some(url) = &websocket_endpoint {
            shared::http_client::check_url("CALLBACK_WEBSOCKET_ENDPOINT", url)?;
        }
        let max_attempts: u32 = env.parse_or("CALLBACK_WEBHOOK_MAX_ATTEMPTS", 8)?;
        if !(1..=50).contains(&max_attempts) {
            return Err(ConfigError::invalid(
                "CALLBACK_WEBHOOK_MAX_ATTEMPTS",
                "must be 1 to 50",
            ));
        }
        Ok(Self {
            table: env.required("CALLBACKS_TABLE")?,
            websocket_endpoint,
            subscribers,
            webhooks_queue_url,
            dead_letter_queue_url,
            max_attempts,
            timeout: env.millis_or("CALLBACK_WEBHOOK_TIMEOUT_MS", 5000)?,
        })
    }
}

/// Which webhooks were delivered (`callback-webhook:<subscriber>:<notice id>`, kept 7 days): a notice queued
/// again (a replayed stream batch, later than the queue's deduplication window) is not delivered twice.
#[derive(Debug, Clone)]
pub struct Deliveries {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl Deliveries {
    fn key(subscriber: &str, notice: &str) -> String {
        format!("callback-webhook:{subscriber}:{notice}")
    }

    pub async fn done(&self, subscriber: &str, notice: &str) -> Result<bool, String> {
        shared::idempotency::read_item(&self.client, &self.table, &Self::key(subscriber, notice))
            .await
            .map(|i| i.is_some())
            .map_err(|e| e.to_string())
    }

    pub async fn record(&self, subscriber: &str, notice: &str) -> Result<(), String> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", shared::idempotency::s(Self::key(subscriber, notice)))
            .item("kind", shared::idempotency::s("callback-webhook"))
            .item(
                "expiration",
                shared::idempotency::n(shared::clock::epoch_secs() + 7 * 86_400),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
    }
}

pub struct Notifier {
    pub connections: Connections,
    pub deliveries: Deliveries,
    pub push: Option<aws_sdk_apigatewaymanagement::Client>,
    pub subscribers: Vec<Subscriber>,
    pub sqs: aws_sdk_sqs::Client,
    pub webhooks_queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
    pub http: reqwest::Client,
    /// The wait before a failed webhook is tried again (the message is hidden that long).
    pub backoff: RetryPolicy,
    pub max_attempts: u32,
}

pub async fn build(config: Config, aws: &aws_config::SdkConfig) -> Result<Notifier, StartupError> {
    let secrets = aws_sdk_secretsmanager::Client::new(aws);
    let mut subscribers = Vec::new();
    for (name, spec) in &config.subscribers {
        let secret = shared::aws::read_secret(&secrets, &spec.secret_id).await?;
        subscribers.push(Subscriber {
            name: name.clone(),
            url: spec.url.clone(),
            secret: secret.into_bytes(),
        });
    }
    let push = config.websocket_endpoint.as_ref().map(|endpoint| {
        aws_sdk_apigatewaymanagement::Client::from_conf(
            aws_sdk_apigatewaymanagement::config::Builder::from(aws)
                .endpoint_url(endpoint)
                .build(),
        )
    });
    let http = shared::http_client::client(
        "callback-notifier",
        shared::http_client::Timeouts::new(Duration::from_secs(2), config.timeout),
    )?;
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    Ok(Notifier {
        connections: Connections::new(dynamodb.clone(), &config.table, Duration::from_secs(7_200)),
        deliveries: Deliveries {
            client: dynamodb,
            table: config.table,
        },
        push,
        subscribers,
        sqs: aws_sdk_sqs::Client::new(aws),
        webhooks_queue_url: config.webhooks_queue_url,
        dead_letter_queue_url: config.dead_letter_queue_url,
        http,
        backoff: RetryPolicy {
            max_attempts: config.max_attempts,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(900),
            max_retry_after: Duration::from_secs(900),
        },
        max_attempts: config.max_attempts,
    })
}

/// A webhook queued for one subscriber.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub subscriber: String,
    pub notice: Notice,
}

/// The reservation in a stream image (`{"doc": {"S": "<json>"}, "kind": {"S": "callback-reservation"}, …}`).
fn reservation_in(image: &Value) -> Option<Reservation> {
    if image["kind"]["S"] != "callback-reservation" {
        return None;
    }
    serde_json::from_str(image["doc"]["S"].as_str()?).ok()
}

/// How a webhook attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Refused(String),
}

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Notifier {
    /// Handles one stream batch; the sequence number to resume from when one record could not be queued
    /// (Lambda retries the batch from there).
    pub async fn on_stream(&self, records: &[Value]) -> Option<String> {
        for record in records {
            let images = &record["dynamodb"];
            let Some(new) = reservation_in(&images["NewImage"]) else {
                continue;
            };
            let old = reservation_in(&images["OldImage"]);
            let Some(notice) = Notice::of_change(old.as_ref(), &new) else {
                continue;
            };
            info!(reservation_id = %notice.reservation_id, status = %notice.status, sequence = notice.sequence, "callback change");
            self.push(&notice).await;
            if let Err(e) = self.queue(&notice).await {
                warn!(reservation_id = %notice.reservation_id, error = %e, "webhooks not queued; the stream record is retried");
                return Some(
                    images["SequenceNumber"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
        None
    }

    /// Pushes to every connection watching the reservation; best effort (a WebSocket is not durable: a client
    /// that missed a push reads the status on reconnecting).
    pub async fn push(&self, notice: &Notice) {
        let Some(client) = &self.push else { return };
        let connections = match self.connections.of(&notice.reservation_id).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "connections unreadable; nothing pushed");
                return;
            }
        };
        let data = serde_json::to_vec(notice).unwrap_or_default();
        for connection in connections {
            let sent = client
                .post_to_connection()
                .connection_id(&connection)
                .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
                    data.clone(),
                ))
                .send()
                .await;
            match sent {
                Ok(_) => {
                    info!(connection_id = %connection, reservation_id = %notice.reservation_id, "status pushed")
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => {
                    info!(connection_id = %connection, "connection gone; forgotten");
                    if let Err(e) = self.connections.remove(&connection).await {
                        warn!(error = %e, "gone connection not forgotten; its TTL ends it");
                    }
                }
                Err(e) => {
                    warn!(connection_id = %connection, error = %aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e), "push failed")
                }
            }
        }
    }

    async fn queue(&self, notice: &Notice) -> Result<(), String> {
        let Some(queue) = &self.webhooks_queue_url else {
            return Ok(());
        };
        for s in &self.subscribers {
            let body = serde_json::to_string(&Delivery {
                subscriber: s.name.clone(),
                notice: notice.clone(),
            })
            .map_err(|e| e.to_string())?;
            let dedup = hex::encode(Sha256::digest(format!("{}|{}", s.name, notice.id)));
            self.sqs
                .send_message()
                .queue_url(queue)
                .message_body(body)
                .message_group_id(format!("{}:{}", s.name, notice.reservation_id))
                .message_deduplication_id(dedup)
                .send()
                .await
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
        }
        Ok(())
    }

    /// One signed POST of `delivery` to its subscriber.
    pub async fn deliver(&self, subscriber: &Subscriber, notice: &Notice) -> Attempt {
        let body = serde_json::to_vec(notice).unwrap_or_default();
        let timestamp = shared::clock::epoch_secs();
        let sent = self
            .http
            .post(&subscriber.url)
            .header("content-type", "application/json")
            .header("x-callback-timestamp", timestamp.to_string())
            .header(
                "x-callback-signature",
                signature(&subscriber.secret, timestamp, &body),
            )
            .header("x-callback-event-id", &notice.id)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    reason: format!(
                        "no answer ({})",
                        if e.is_timeout() {
                            "timeout"
                        } else {
                            "connection"
                        }
                    ),
                    after: None,
                }
            }
        };
        let status = response.status().as_u16();
        let after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| shared::retry::parse_retry_after(v, std::time::SystemTime::now()));
        match status {
            200..=299 => Attempt::Delivered,
            408 | 425 | 429 | 500..=599 => Attempt::Retry {
                reason: format!("HTTP {status}"),
                after,
            },
            _ => Attempt::Refused(format!("HTTP {status}")),
        }
    }

    /// Delivers a batch of the webhooks queue (FIFO) in order: after one message fails, the later ones of its
    /// group (subscriber + reservation) are given back too, so no subscriber sees a reservation's changes out
    /// of order; other groups go on.
    pub async fn on_webhooks(&self, records: Vec<SqsMessage>) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        // Groups (subscriber + reservation) with a message given back: their later messages wait behind it.
        let mut blocked: Vec<String> = Vec::new();
        for record in records {
            let id = record.message_id.clone().unwrap_or_default();
            let group = record
                .attributes
                .get("MessageGroupId")
                .cloned()
                .unwrap_or_default();
            if blocked.contains(&group) {
                // Back in the queue at once: its group stays locked behind the failed one (in flight until its
                // backoff ends), so it is delivered after it, in order.
                self.hide(&record, Duration::ZERO).await;
                response.add_failure(id);
                continue;
            }
            if let Err((e, _)) = self.deliver_record(&record).await {
                warn!(message_id = %id, error = %e, "webhook given back");
                response.add_failure(id);
                blocked.push(group);
            }
        }
        response
    }

    async fn hide(&self, record: &SqsMessage, wait: Duration) {
        let (Some(queue), Some(receipt)) = (&self.webhooks_queue_url, &record.receipt_handle)
        else {
            return;
        };
        let hidden = self
            .sqs
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(receipt)
            .visibility_timeout(wait.as_secs().min(43_200) as i32)
            .send()
            .await;
        if let Err(e) = hidden {
            warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "backoff not set; the queue's visibility timeout applies");
        }
    }

    /// Delivers one message; `Err((reason, wait))`: given back, hidden for `wait`.
    async fn deliver_record(&self, record: &SqsMessage) -> Result<(), (String, Duration)> {
        let quick = Duration::from_secs(1);
        let body = record.body.as_deref().unwrap_or("");
        let Ok(delivery) = serde_json::from_str::<Delivery>(body) else {
            return self
                .dead_letter(record, None, "not a webhook delivery")
                .await
                .map_err(|e| (e, quick));
        };
        let Some(subscriber) = self
            .subscribers
            .iter()
            .find(|s| s.name == delivery.subscriber)
        else {
            return self
                .dead_letter(
                    record,
                    Some(&delivery),
                    "the subscriber is no longer configured",
                )
                .await
                .map_err(|e| (e, quick));
        };
        let (subscriber_name, notice_id) = (&subscriber.name, &delivery.notice.id);
        match self.deliveries.done(subscriber_name, notice_id).await {
            Ok(true) => {
                info!(subscriber = %subscriber_name, notice_id = %notice_id, "webhook delivered before; not sent again");
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => return Err((format!("delivery records unreadable: {e}"), quick)),
        }
        let receives: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        match self.deliver(subscriber, &delivery.notice).await {
            Attempt::Delivered => {
                info!(subscriber = %subscriber_name, notice_id = %notice_id, reservation_id = %delivery.notice.reservation_id, "webhook delivered");
                if let Err(e) = self.deliveries.record(subscriber_name, notice_id).await {
                    // Acknowledged anyway: it was delivered; only a replay could deliver it again.
                    warn!(error = %e, "delivery not recorded");
                }
                Ok(())
            }
            Attempt::Refused(reason) => self
                .dead_letter(record, Some(&delivery), &format!("refused: {reason}"))
                .await
                .map_err(|e| (e, quick)),
            Attempt::Retry { reason, .. } if receives >= self.max_attempts => self
                .dead_letter(
                    record,
                    Some(&delivery),
                    &format!("gave up after {receives} attempts: {reason}"),
                )
                .await
                .map_err(|e| (e, quick)),
            Attempt::Retry { reason, after } => {
                let wait = self
                    .backoff
                    .delay(
                        receives.saturating_sub(1),
                        after.map(|a| a.min(self.backoff.max_retry_after)),
                    )
                    .max(quick);
                self.hide(record, wait).await;
                warn!(subscriber = %subscriber_name, notice_id = %notice_id, attempt = receives, reason = %reason, retry_in_secs = wait.as_secs(), "webhook not delivered; retrying");
                Err((reason, wait))
            }
        }
    }

    /// Moves a webhook to the dead-letter queue with its reason (then it is acknowledged).
    async fn dead_letter(
        &self,
        record: &SqsMessage,
        delivery: Option<&Delivery>,
        reason: &str,
    ) -> Result<(), String> {
        warn!(message_id = ?record.message_id, reason = %reason, "webhook dead-lettered");
        let Some(queue) = &self.dead_letter_queue_url else {
            return Err("no dead-letter queue configured".into());
        };
        let group = delivery
            .map(|d| format!("{}:{}", d.subscriber, d.notice.reservation_id))
            .unwrap_or_else(|| "unreadable".into());
        let attributes = shared::aws::string_attributes([
            ("reason", reason.to_string()),
            (
                "subscriber",
                delivery.map(|d| d.subscriber.clone()).unwrap_or_default(),
            ),
            (
                "reservation_id",
                delivery
                    .map(|d| d.notice.reservation_id.clone())
                    .unwrap_or_default(),
            ),
            (
                "notice_id",
                delivery.map(|d| d.notice.id.clone()).unwrap_or_default(),
            ),
        ]);
        self.sqs
            .send_message()
            .queue_url(queue)
            .message_body(record.body.clone().unwrap_or_default())
            .set_message_attributes(Some(attributes))
            .message_group_id(group)
            .message_deduplication_id(record.message_id.clone().unwrap_or_default())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }
}

/// The Lambda adapter: a DynamoDB stream batch or a webhooks queue batch, answered with the partial batch
/// failures of either (`{"batchItemFailures": [{"itemIdentifier": …}]}`).
pub async fn handle_event(notifier: &Notifier, event: Value) -> Value {
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    match records.first().and_then(|r| r["eventSource"].as_str()) {
        Some("aws:dynamodb") => {
            let failed = notifier.on_stream(&records).await;
            json!({"batchItemFailures": failed.into_iter().map(|s| json!({"itemIdentifier": s})).collect::<Vec<_>>()})
        }
        Some("aws:sqs") => {
            let messages: Vec<SqsMessage> = records
                .into_iter()
                .filter_map(|r| serde_json::from_value(r).ok())
                .collect();
            serde_json::to_value(notifier.on_webhooks(messages).await).unwrap_or_else(|_| json!({}))
        }
        _ => json!({"batchItemFailures": []}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let a = signature(b"k", 1_000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature(b"k", 1_001, b"{}"));
        assert_ne!(a, signature(b"k", 1_000, b"{ }"));
        assert_ne!(a, signature(b"other", 1_000, b"{}"));
    }

    #[test]
    fn subscribers_need_their_queues_and_https() {
        let base = [("CALLBACKS_TABLE", "t")];
        let env = |extra: &[(&'static str, &'static str)]| {
            Env::from_pairs(base.iter().chain(extra).copied())
        };
        assert!(Config::from_vars(&env(&[])).is_ok());
        let one = r#"{"calendar": {"url": "https://calendar.example.com/hook", "secret_id": "s"}}"#;
        let err = Config::from_vars(&env(&[("CALLBACK_SUBSCRIBERS", one)]))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("CALLBACK_WEBHOOKS_QUEUE_URL"),
            "{err}"
        );
        let plain =
            r#"{"calendar": {"url": "http://calendar.example.com/hook", "secret_id": "s"}}"#;
        let err = Config::from_vars(&env(&[
            ("CALLBACK_SUBSCRIBERS", plain),
            ("CALLBACK_WEBHOOKS_QUEUE_URL", "q"),
            ("CALLBACK_WEBHOOKS_DEAD_LETTER_QUEUE_URL", "d"),
        ]))
        .err()
        .unwrap();
        assert!(err.to_string().contains("CALLBACK_SUBSCRIBERS"), "{err}");
    }
}
