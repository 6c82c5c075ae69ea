//! The receiver against moto: what SQS can never store gets 413 instead of 503 forever, and the signing
//! secret's shape and rotation (AWSCURRENT, then AWSPREVIOUS).

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use http::HeaderMap;
use integration_tests::*;
use serde_json::{json, Value};
use shared::signature::SignatureScheme;
use webhook_receiver::{Receiver, Verification};

const ORG: &str = "6f1a0c4e-0000-4000-8000-00000000000a";

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A fresh queue with the given `MaximumMessageSize`.
async fn queue(aws: &aws_config::SdkConfig, max_message_size: u32) -> String {
    aws_sdk_sqs::Client::new(aws)
        .create_queue()
        .queue_name(unique("rcv"))
        .attributes(
            QueueAttributeName::MaximumMessageSize,
            max_message_size.to_string(),
        )
        .send()
        .await
        .expect("create queue on moto")
        .queue_url
        .expect("queue url")
}

async fn secret(aws: &aws_config::SdkConfig, value: &str) -> String {
    aws_sdk_secretsmanager::Client::new(aws)
        .create_secret()
        .name(unique("webhook/"))
        .secret_string(value)
        .send()
        .await
        .expect("create secret on moto")
        .arn
        .expect("secret arn")
}

async fn put(aws: &aws_config::SdkConfig, id: &str, value: &str) {
    aws_sdk_secretsmanager::Client::new(aws)
        .put_secret_value()
        .secret_id(id)
        .secret_string(value)
        .send()
        .await
        .expect("put secret value");
}

fn receiver(
    aws: &aws_config::SdkConfig,
    queue_url: &str,
    secret_id: Option<&str>,
    refresh: Duration,
) -> Receiver {
    receiver_with(aws, queue_url, secret_id, refresh, Duration::from_secs(300))
}

fn receiver_with(
    aws: &aws_config::SdkConfig,
    queue_url: &str,
    secret_id: Option<&str>,
    refresh: Duration,
    max_age: Duration,
) -> Receiver {
    Receiver::new(
        webhook_receiver::Config {
            queue_url: queue_url.into(),
            verification: match secret_id {
                Some(id) => Verification::Secret {
                    secret_id: id.into(),
                },
                None => Verification::Disabled,
            },
            organization_id: ORG.into(),
            secret_refresh_interval: refresh,
            secret_max_age: max_age,
            ..webhook_receiver::Config::default()
        },
        aws_sdk_sqs::Client::new(aws),
        aws_sdk_secretsmanager::Client::new(aws),
    )
}

/// A webhook event whose body is exactly `len` bytes.
fn event_of_len(len: usize) -> String {
    let mut event = webhook_event(&new_conversation(), json!({"padding": ""}));
    let base = event.to_string().len();
    assert!(len >= base, "{len} < {base}");
    event["data"]["padding"] = json!("x".repeat(len - base));
    let text = event.to_string();
    assert_eq!(text.len(), len);
    text
}

async fn post(r: &Receiver, body: &str, key: Option<&[u8]>) -> (u16, Value) {
    let mut headers = HeaderMap::new();
    if let Some(key) = key {
        let sig = SignatureScheme::default().sign(key, body.as_bytes());
        headers.insert("x-hub-signature-256", sig.parse().unwrap());
    }
    let reply = r
        .handle(&headers, body.as_bytes(), None, "c-receiver-test")
        .await;
    (reply.status, reply.body)
}

/// Messages on the queue, in flight included.
async fn depth(aws: &aws_config::SdkConfig, queue_url: &str) -> usize {
    let out = aws_sdk_sqs::Client::new(aws)
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    let attrs = out.attributes.unwrap_or_default();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|n| {
        attrs
            .get(n)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    })
    .sum()
}

#[tokio::test]
async fn a_body_that_fits_but_not_with_its_attributes_gets_413_not_503_forever() {
    let aws = aws_config().await;
    let url = queue(&aws, 2048).await;
    let r = receiver(&aws, &url, None, Duration::from_secs(60));
    r.warm_up().await.expect("queue limit read");
    assert_eq!(r.queue_limit(), 2048, "read from the queue at cold start");

    // 1900 bytes: moto takes the body alone (it does not count attributes; real SQS does)...
    let body = event_of_len(1900);
    aws_sdk_sqs::Client::new(&aws)
        .send_message()
        .queue_url(&url)
        .message_body(&body)
        .send()
        .await
        .expect("moto accepts the bare body");
    assert_eq!(depth(&aws, &url).await, 1);
    // ...but with its ~230 bytes of attributes it can never fit a 2048-byte queue: 413, nothing queued.
    let (status, reply) = post(&r, &body, None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (413, Some("payload_too_large")),
        "{reply}"
    );
    assert!(
        reply["message"].as_str().unwrap().contains("2048"),
        "{reply}"
    );
    assert_eq!(depth(&aws, &url).await, 1, "only the message sent directly");

    // What fits with its attributes is queued.
    let (status, reply) = post(&r, &event_of_len(1500), None).await;
    assert_eq!(status, 202, "{reply}");
}

#[tokio::test]
async fn sqs_refusing_a_message_as_too_large_is_answered_413_not_503() {
    let aws = aws_config().await;
    let url = queue(&aws, 4096).await;
    let r = receiver(&aws, &url, None, Duration::from_secs(60));
    r.warm_up().await.expect("queue limit read");
    // The limit is lowered after the cold start: the pre-check passes, SQS refuses (InvalidParameterValue).
    aws_sdk_sqs::Client::new(&aws)
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::MaximumMessageSize, "1024")
        .send()
        .await
        .expect("lower the limit");
    let (status, reply) = post(&r, &event_of_len(2000), None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (413, Some("payload_too_large")),
        "{reply}"
    );
}

#[tokio::test]
async fn a_character_sqs_cannot_store_gets_400_before_sqs_is_asked() {
    let aws = aws_config().await;
    let url = queue(&aws, 262_144).await;
    let r = receiver(&aws, &url, None, Duration::from_secs(60));
    r.warm_up().await.expect("queue limit read");
    // Valid JSON, but U+FFFE is outside the characters SQS accepts.
    let body = webhook_event(&new_conversation(), json!({"note": "\u{FFFE}"})).to_string();
    let (status, reply) = post(&r, &body, None).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid_payload")),
        "{reply}"
    );
    assert!(reply["message"].as_str().unwrap().contains("U+FFFE"));
    assert_eq!(depth(&aws, &url).await, 0);
}

#[tokio::test]
async fn a_queue_limit_that_cannot_be_read_stops_the_start() {
    let aws = aws_config().await;
    let r = receiver(
        &aws,
        "http://127.0.0.1:1/000000000000/missing",
        None,
        Duration::from_secs(60),
    );
    let err = r.warm_up().await.unwrap_err();
    assert!(err.to_string().contains("EVENTS_QUEUE_URL"), "{err}");
}

const FIRST: &str = "first-webhook-secret-0123456789abcdef";
const SECOND: &str = "second-webhook-secret-0123456789abcdef";
const THIRD: &str = "third-webhook-secret-0123456789abcdef";

#[tokio::test]
async fn during_rotation_the_current_and_previous_secret_pass_and_an_older_one_fails() {
    let aws = aws_config().await;
    let url = queue(&aws, 262_144).await;
    let id = secret(&aws, FIRST).await;
    let r = receiver(&aws, &url, Some(&id), Duration::ZERO);
    r.warm_up().await.expect("secret loaded");
    let body = || webhook_event(&new_conversation(), json!({})).to_string();
    assert_eq!(post(&r, &body(), Some(FIRST.as_bytes())).await.0, 202);

    // PutSecretValue: SECOND becomes AWSCURRENT, FIRST AWSPREVIOUS.
    put(&aws, &id, &json!({"secret": SECOND}).to_string()).await;
    // Genesys switched already: re-read after the mismatch.
    assert_eq!(post(&r, &body(), Some(SECOND.as_bytes())).await.0, 202);
    // Genesys has not switched yet: still accepted, no 401 gap.
    assert_eq!(post(&r, &body(), Some(FIRST.as_bytes())).await.0, 202);
    // A receiver started after the rotation accepts both at once.
    let cold = receiver(&aws, &url, Some(&id), Duration::from_secs(60));
    cold.warm_up().await.expect("secret loaded");
    assert_eq!(post(&cold, &body(), Some(FIRST.as_bytes())).await.0, 202);
    assert_eq!(post(&cold, &body(), Some(SECOND.as_bytes())).await.0, 202);

    // Another rotation: FIRST is neither current nor previous any more. A warm receiver drops it once its
    // keys are WEBHOOK_SECRET_MAX_AGE_SECONDS old (here: at once), without waiting for a mismatch.
    let aged = receiver_with(
        &aws,
        &url,
        Some(&id),
        Duration::from_secs(60),
        Duration::ZERO,
    );
    aged.warm_up().await.expect("secret loaded");
    assert_eq!(post(&aged, &body(), Some(FIRST.as_bytes())).await.0, 202);
    put(&aws, &id, THIRD).await;
    let (status, reply) = post(&aged, &body(), Some(FIRST.as_bytes())).await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("invalid_signature"))
    );
    assert_eq!(post(&aged, &body(), Some(SECOND.as_bytes())).await.0, 202);
    assert_eq!(post(&aged, &body(), Some(THIRD.as_bytes())).await.0, 202);
    assert_eq!(post(&r, &body(), Some(THIRD.as_bytes())).await.0, 202);

    assert_eq!(depth(&aws, &url).await, 9);
}

#[tokio::test]
async fn empty_short_and_literal_json_secrets_answer_503_naming_the_rule_until_fixed() {
    let logs = capture_logs("info");
    let aws = aws_config().await;
    let url = queue(&aws, 262_144).await;
    let short = "short-but-not-32-bytes";
    for (value, rule) in [
        (r#"{"secret": ""}"#.to_string(), "at least 32"),
        ("{}".to_string(), "exactly {\"secret\""),
        (short.to_string(), "at least 32"),
        (format!("{FIRST}\n"), "whitespace"),
    ] {
        let id = secret(&aws, &value).await;
        let r = receiver(&aws, &url, Some(&id), Duration::ZERO);
        let err = r.load_key().await.unwrap_err();
        assert!(err.to_string().contains(rule), "{value:?}: {err}");
        // Never the literal key: signed with the secret's raw text, it is still refused.
        let (status, reply) = post(
            &r,
            &webhook_event(&new_conversation(), json!({})).to_string(),
            Some(value.as_bytes()),
        )
        .await;
        assert_eq!(
            (status, reply["error"].as_str()),
            (503, Some("unavailable")),
            "{value:?}: {reply}"
        );
        // Fixed without a redeploy: the next request re-reads it.
        put(&aws, &id, SECOND).await;
        let (status, reply) = post(
            &r,
            &webhook_event(&new_conversation(), json!({})).to_string(),
            Some(SECOND.as_bytes()),
        )
        .await;
        assert_eq!(status, 202, "{value:?}: {reply}");
    }
    let text = logs.text();
    assert!(text.contains("breaks its documented shape"), "{text}");
    assert!(
        !text.contains(short) && !text.contains(FIRST),
        "a secret value was logged"
    );
    assert_eq!(depth(&aws, &url).await, 4);
}

#[tokio::test]
async fn build_starts_with_a_bad_secret_and_answers_503_with_retry_after() {
    let aws = aws_config().await;
    let url = queue(&aws, 262_144).await;
    let id = secret(&aws, "{}").await;
    let config = webhook_receiver::Config {
        queue_url: url,
        verification: Verification::Secret { secret_id: id },
        ..webhook_receiver::Config::default()
    };
    let r = webhook_receiver::build(config, &aws)
        .await
        .expect("a bad secret does not stop the start");
    let body = webhook_event(&new_conversation(), json!({})).to_string();
    let mut headers = HeaderMap::new();
    let sig = SignatureScheme::default().sign(b"{}", body.as_bytes());
    headers.insert("x-hub-signature-256", sig.parse().unwrap());
    let reply = r.handle(&headers, body.as_bytes(), None, "c-1").await;
    assert_eq!(reply.status, 503, "{:?}", reply.body);
    assert!(reply.retry_after.is_some());
}
