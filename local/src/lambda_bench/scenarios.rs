//! Per function: the environment template.yaml gives it (pointed at the stub), the secrets it reads, a
//! realistic event per invocation (each one different, so every invocation takes the create path), and the
//! answer its success looks like.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::{json, Value};
use shared::signature::SignatureScheme;

/// The fixture the writer's events are made from.
const CUSTOMER_END: &str =
    include_str!("../../../shared/tests/fixtures/conversation-customer-end.json");
/// Seed 001's flat IVR escalation body, as Architect's data action posts it.
const IVR_BODY: &str =
    include_str!("../../../shared/tests/fixtures/seed-001-ivr-escalation.body.json");

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const TABLE: &str = "bench-idempotency";
const DATATABLE: &str = "legacy-events";

/// Secret ids, as the template would name them.
const WEBHOOK_SECRET: &str = "bench/webhook-hmac";
const SN_BASIC_SECRET: &str = "bench/servicenow-credentials";
const SN_OAUTH_SECRET: &str = "bench/servicenow-oauth-client";
const SN_TOKEN_SECRET: &str = "bench/servicenow-token";
const GENESYS_CLIENT_SECRET: &str = "bench/genesys-client-credentials";
const GENESYS_TOKEN_SECRET: &str = "bench/genesys-token";
const JWT_KEYS_SECRET: &str = "bench/legacy-jwt-keys";
const DATA_ACTION_SECRET: &str = "bench/data-action-credentials";

/// The functions the bench can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    WebhookReceiver,
    ServiceNowWriter,
    LegacyIngest,
    TokenRefresher,
    DataAction,
}

impl Function {
    pub const ALL: [Function; 5] = [
        Function::WebhookReceiver,
        Function::ServiceNowWriter,
        Function::LegacyIngest,
        Function::TokenRefresher,
        Function::DataAction,
    ];

    /// The binary's (and package's) name.
    pub fn name(self) -> &'static str {
        match self {
            Function::WebhookReceiver => "webhook-receiver",
            Function::ServiceNowWriter => "servicenow-writer",
            Function::LegacyIngest => "legacy-ingest",
            Function::TokenRefresher => "token-refresher",
            Function::DataAction => "data-action",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn arn(self) -> String {
        format!(
            "arn:aws:lambda:{REGION}:{ACCOUNT}:function:bench-{}",
            self.name()
        )
    }

    /// The secrets it reads, by id.
    pub fn secrets(self) -> HashMap<String, String> {
        let basic = json!({"username": crate::LOCAL_SN_USER, "password": crate::LOCAL_SN_PASSWORD});
        let genesys_client = json!({"client_id": crate::LOCAL_GENESYS_CLIENT_ID,
                                    "client_secret": crate::LOCAL_GENESYS_CLIENT_SECRET});
        let pairs: Vec<(&str, String)> = match self {
            Function::WebhookReceiver => {
                vec![(WEBHOOK_SECRET, crate::LOCAL_WEBHOOK_SECRET.to_string())]
            }
            Function::ServiceNowWriter => vec![(SN_BASIC_SECRET, basic.to_string())],
            Function::LegacyIngest => vec![
                (JWT_KEYS_SECRET, crate::dev_tokens::KEY_SET_JSON.to_string()),
                (GENESYS_CLIENT_SECRET, genesys_client.to_string()),
                (
                    GENESYS_TOKEN_SECRET,
                    stored_token("genesys", Duration::ZERO, Duration::from_secs(86_400)),
                ),
            ],
            // Both stored tokens are due (ServiceNow's 30 min tokens are renewed at every scheduled run):
            // each invocation reads, fetches and stores both.
            Function::TokenRefresher => vec![
                (GENESYS_CLIENT_SECRET, genesys_client.to_string()),
                (
                    SN_OAUTH_SECRET,
                    json!({"client_id": crate::LOCAL_SN_CLIENT_ID,
                           "client_secret": crate::LOCAL_SN_CLIENT_SECRET,
                           "username": crate::LOCAL_SN_USER, "password": crate::LOCAL_SN_PASSWORD})
                    .to_string(),
                ),
                (
                    GENESYS_TOKEN_SECRET,
                    stored_token(
                        "genesys",
                        Duration::from_secs(86_000),
                        Duration::from_secs(86_400),
                    ),
                ),
                (
                    SN_TOKEN_SECRET,
                    stored_token(
                        "servicenow",
                        Duration::from_secs(1_500),
                        Duration::from_secs(1_800),
                    ),
                ),
            ],
            Function::DataAction => vec![
                (
                    DATA_ACTION_SECRET,
                    json!({"username": crate::LOCAL_DATA_ACTION_USER,
                           "password": crate::LOCAL_DATA_ACTION_PASSWORD})
                    .to_string(),
                ),
                (SN_BASIC_SECRET, basic.to_string()),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Its own variables, as template.yaml sets them (defaults of the parameters), pointed at `stub`.
    pub fn env(self, stub: &str) -> Vec<(&'static str, String)> {
        let queue = |name: &str| format!("{stub}/{ACCOUNT}/bench-{name}");
        let pairs: Vec<(&'static str, String)> = match self {
            Function::WebhookReceiver => vec![
                ("EVENTS_QUEUE_URL", queue("events")),
                ("WEBHOOK_SECRET_ID", WEBHOOK_SECRET.into()),
                ("RECEIVER_ALLOWED_EVENT_TYPES", String::new()),
            ],
            Function::ServiceNowWriter => vec![
                ("SERVICENOW_INSTANCE_URL", stub.into()),
                ("SERVICENOW_CREDENTIALS_SECRET_ID", SN_BASIC_SECRET.into()),
                ("IDEMPOTENCY_TABLE", TABLE.into()),
                ("IDEMPOTENCY_TTL_HOURS", "336".into()),
                ("DEAD_LETTER_QUEUE_URL", queue("events-dlq")),
                ("EVENTS_QUEUE_URL", queue("events")),
                ("WRITER_MAX_RECEIVE_COUNT", "5".into()),
                ("WRITER_SETTLE_SECONDS", "90".into()),
                ("WRITER_RATE_LIMIT_CONTAINERS", "5".into()),
                ("WRITER_MAX_CONCURRENCY", "5".into()),
                ("SERVICENOW_AUTH", "basic".into()),
                ("SERVICENOW_OAUTH_GRANT", "password".into()),
                ("CALLBACK_REQUESTS_QUEUE_URL", queue("callback-events")),
            ],
            Function::LegacyIngest => vec![
                (
                    "JWT_ISSUERS",
                    format!(
                        "{},{}",
                        crate::dev_tokens::DEV_ISSUER,
                        crate::dev_tokens::ORDERS_ISSUER
                    ),
                ),
                ("JWT_AUDIENCES", crate::dev_tokens::DEV_AUDIENCE.into()),
                ("JWT_ALGORITHMS", "ES256,RS256".into()),
                ("JWT_KEYS_SECRET_ID", JWT_KEYS_SECRET.into()),
                ("JWT_MAX_AGE_SECONDS", "900".into()),
                ("JWT_MAX_LIFETIME_SECONDS", "3600".into()),
                ("INGEST_ALLOWED_EVENT_TYPES", "*".into()),
                ("GENESYS_LOGIN_URL", stub.into()),
                ("GENESYS_API_URL", stub.into()),
                ("GENESYS_INGEST_PATH", "/api/v2/eventbridge/events".into()),
                ("INGEST_TARGET", "datatable".into()),
                ("GENESYS_DATATABLE_ID", DATATABLE.into()),
                ("IDEMPOTENCY_TABLE", TABLE.into()),
                (
                    "GENESYS_CREDENTIALS_SECRET_ID",
                    GENESYS_CLIENT_SECRET.into(),
                ),
                ("GENESYS_TOKEN_SECRET_ID", GENESYS_TOKEN_SECRET.into()),
                ("PUBLISH_DEADLINE_MS", "8000".into()),
            ],
            Function::TokenRefresher => vec![
                ("GENESYS_LOGIN_URL", stub.into()),
                (
                    "GENESYS_CREDENTIALS_SECRET_ID",
                    GENESYS_CLIENT_SECRET.into(),
                ),
                ("GENESYS_TOKEN_SECRET_ID", GENESYS_TOKEN_SECRET.into()),
                ("REFRESH_SCHEDULE_RATE", "rate(15 minutes)".into()),
                ("SERVICENOW_INSTANCE_URL", stub.into()),
                ("SERVICENOW_OAUTH_GRANT", "password".into()),
                (
                    "SERVICENOW_OAUTH_CREDENTIALS_SECRET_ID",
                    SN_OAUTH_SECRET.into(),
                ),
                ("SERVICENOW_TOKEN_SECRET_ID", SN_TOKEN_SECRET.into()),
            ],
            Function::DataAction => vec![
                ("DATA_ACTION_AUTH", "basic".into()),
                ("DATA_ACTION_AUTH_HEADER", "X-Api-Key".into()),
                (
                    "DATA_ACTION_CREDENTIALS_SECRET_ID",
                    DATA_ACTION_SECRET.into(),
                ),
                ("DATA_ACTION_DEADLINE_MS", "5000".into()),
                ("SERVICENOW_INSTANCE_URL", stub.into()),
                ("SERVICENOW_CREDENTIALS_SECRET_ID", SN_BASIC_SECRET.into()),
                ("IDEMPOTENCY_TABLE", TABLE.into()),
                ("WRITER_SETTLE_SECONDS", "90".into()),
                ("SERVICENOW_AUTH", "basic".into()),
                ("SERVICENOW_OAUTH_GRANT", "password".into()),
            ],
        };
        pairs
    }

    /// Columns of the Genesys data tables it writes (the stub's schema).
    pub fn datatable_columns(self) -> Vec<String> {
        match self {
            Function::LegacyIngest => [
                "transaction_id",
                "event_type",
                "amount",
                "currency",
                "updated_at",
            ]
            .iter()
            .map(|c| c.to_string())
            .collect(),
            _ => Vec::new(),
        }
    }

    /// `count` events, each different (new conversation, transaction or call id).
    pub fn events(self, count: usize) -> Result<Vec<Vec<u8>>, String> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let run = run.get(..8).unwrap_or(&run).to_string();
        (0..count)
            .map(|i| {
                let event = match self {
                    Function::WebhookReceiver => webhook_event(i),
                    Function::ServiceNowWriter => sqs_event(i)?,
                    Function::LegacyIngest => ingest_event(&run, i),
                    Function::TokenRefresher => scheduled_event(),
                    Function::DataAction => data_action_event()?,
                };
                serde_json::to_vec(&event).map_err(|e| e.to_string())
            })
            .collect()
    }

    /// `Ok` when `body` (the function's `/response`) is what its success looks like.
    pub fn check(self, body: &[u8]) -> Result<(), String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("answer is not JSON ({e}): {}", excerpt(body)))?;
        match self {
            Function::WebhookReceiver => {
                let (status, reply) = http_reply(&value)?;
                success_if(status == 202 && reply["status"] == "queued", status, &reply)
            }
            Function::LegacyIngest => {
                let (status, reply) = http_reply(&value)?;
                success_if(status == 202, status, &reply)
            }
            Function::DataAction => {
                let (status, reply) = http_reply(&value)?;
                success_if(
                    status == 200 && reply["incidentNumber"].is_string(),
                    status,
                    &reply,
                )
            }
            Function::ServiceNowWriter => match value["batchItemFailures"].as_array() {
                Some(failures) if failures.is_empty() => Ok(()),
                Some(failures) => Err(format!(
                    "{} batch item failure(s): {}",
                    failures.len(),
                    excerpt(body)
                )),
                None => Err(format!("no batchItemFailures: {}", excerpt(body))),
            },
            Function::TokenRefresher => match value {
                Value::Null => Ok(()),
                other => Err(format!(
                    "expected null, got {}",
                    excerpt(other.to_string().as_bytes())
                )),
            },
        }
    }
}

fn success_if(ok: bool, status: u64, reply: &Value) -> Result<(), String> {
    match ok {
        true => Ok(()),
        false => Err(format!(
            "HTTP {status}: {}",
            excerpt(reply.to_string().as_bytes())
        )),
    }
}

/// At most 300 characters of `body`, for messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into_owned(),
    }
}

/// The status and JSON body of an API Gateway (HTTP API) proxy answer.
fn http_reply(value: &Value) -> Result<(u64, Value), String> {
    let status = value["statusCode"]
        .as_u64()
        .ok_or_else(|| format!("no statusCode: {}", excerpt(value.to_string().as_bytes())))?;
    let raw = value["body"].as_str().unwrap_or_default();
    let bytes = match value["isBase64Encoded"].as_bool() {
        Some(true) => base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|e| format!("body is not base64: {e}"))?,
        _ => raw.as_bytes().to_vec(),
    };
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A token secret's JSON: obtained `age` ago, valid for `lifetime`.
fn stored_token(provider: &str, age: Duration, lifetime: Duration) -> String {
    let now = SystemTime::now();
    let obtained = now.checked_sub(age).unwrap_or(now);
    json!({"access_token": format!("bench-stored-{provider}-token"), "token_type": "bearer",
           "expires_at": rfc3339(obtained + lifetime), "scope": null, "obtained_at": rfc3339(obtained)})
    .to_string()
}

fn epoch_ms() -> u64 {
    shared::clock::epoch_ms()
}

/// An API Gateway HTTP API (payload 2.0) event, as `lambda_http` reads it.
fn http_api_event(
    route: &str,
    path: &str,
    path_parameters: Option<Value>,
    headers: &[(&str, String)],
    body: &str,
) -> Value {
    let host = format!("bench.execute-api.{REGION}.amazonaws.com");
    let mut h = serde_json::Map::new();
    for (name, value) in [
        ("content-type", "application/json".to_string()),
        ("content-length", body.len().to_string()),
        ("host", host.clone()),
        ("user-agent", "lambda-bench".into()),
        (
            "x-amzn-trace-id",
            "Root=1-00000000-000000000000000000000000".into(),
        ),
        ("x-forwarded-for", "203.0.113.10".into()),
        ("x-forwarded-port", "443".into()),
        ("x-forwarded-proto", "https".into()),
    ]
    .into_iter()
    .chain(headers.iter().map(|(n, v)| (*n, v.clone())))
    {
        h.insert(name.to_string(), json!(value));
    }
    let now = epoch_ms();
    let mut event = json!({
        "version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": "",
        "headers": h,
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "bench", "domainName": host, "domainPrefix": "bench",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10",
                     "userAgent": "lambda-bench"},
            "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": route, "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": now
        },
        "body": body, "isBase64Encoded": false
    });
    if let Some(p) = path_parameters {
        event["pathParameters"] = p;
    }
    event
}

/// `POST /webhooks/genesys` with `make send-sample`'s event (a new conversation each time), signed.
fn webhook_event(_: usize) -> Value {
    let body = crate::sample_event(&uuid::Uuid::new_v4().to_string()).to_string();
    let signature =
        SignatureScheme::default().sign(crate::LOCAL_WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    http_api_event(
        "POST /webhooks/genesys",
        "/webhooks/genesys",
        None,
        &[("x-hub-signature-256", signature)],
        &body,
    )
}

fn sqs_attribute(value: &str) -> Value {
    json!({"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": "String"})
}

/// One SQS record with the `customer.end` fixture for a new conversation, as the receiver queued it.
fn sqs_event(_: usize) -> Result<Value, String> {
    let mut body: Value = serde_json::from_str(CUSTOMER_END).map_err(|e| e.to_string())?;
    let conversation = uuid::Uuid::new_v4().to_string();
    let event_type = format!("v2.detail.events.conversation.{conversation}.customer.end");
    body["event"] = json!(event_type);
    body["data"]["conversationId"] = json!(conversation);
    let sent = epoch_ms().to_string();
    Ok(json!({"Records": [{
        "messageId": uuid::Uuid::new_v4().to_string(),
        "receiptHandle": format!("bench-receipt-{}", uuid::Uuid::new_v4().simple()),
        "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": sent,
                       "SenderId": "AROABENCH:webhook-receiver", "ApproximateFirstReceiveTimestamp": sent},
        "messageAttributes": {
            "event_type": sqs_attribute(&event_type),
            "organization_id": sqs_attribute("6f1a0c4e-0000-4000-8000-00000000000a"),
            "received_at": sqs_attribute(&shared::now_rfc3339()),
            "correlation_id": sqs_attribute(&uuid::Uuid::new_v4().to_string()),
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:bench-events"),
        "awsRegion": REGION
    }]}))
}

/// `POST /ingest` with a fresh dev JWT (ES256) and a new transaction.
fn ingest_event(run: &str, i: usize) -> Value {
    let body = crate::dev_tokens::sample_business_event(&format!("TX-BENCH-{run}-{i}")).to_string();
    let token = crate::dev_tokens::mint(
        jsonwebtoken::Algorithm::ES256,
        &crate::dev_tokens::standard_claims(),
    );
    http_api_event(
        "POST /ingest",
        "/ingest",
        None,
        &[("authorization", format!("Bearer {token}"))],
        &body,
    )
}

/// The EventBridge schedule's event.
fn scheduled_event() -> Value {
    json!({"version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event",
           "source": "aws.events", "account": ACCOUNT, "time": shared::now_rfc3339(), "region": REGION,
           "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/bench-token-refresh")],
           "detail": {}})
}

/// `POST /data-actions/createIncident` with seed 001's body for a new call, Basic-authenticated.
fn data_action_event() -> Result<Value, String> {
    let mut body: Value = serde_json::from_str(IVR_BODY).map_err(|e| e.to_string())?;
    body["callId"] = json!(uuid::Uuid::new_v4().to_string());
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        crate::LOCAL_DATA_ACTION_USER,
        crate::LOCAL_DATA_ACTION_PASSWORD
    ));
    Ok(http_api_event(
        "POST /data-actions/{action}",
        "/data-actions/createIncident",
        Some(json!({"action": "createIncident"})),
        &[("authorization", format!("Basic {credentials}"))],
        &body.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Function::ALL {
            assert_eq!(Function::parse(f.name()), Some(f));
        }
        assert_eq!(Function::parse("callback-api"), None);
    }

    #[test]
    fn every_event_differs_and_parses_as_its_lambda_type() {
        for f in Function::ALL {
            let events = f.events(3).unwrap();
            assert_eq!(events.len(), 3);
            assert_ne!(events[0], events[1], "{f:?}");
        }
        let sqs = &Function::ServiceNowWriter.events(1).unwrap()[0];
        let parsed: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_slice(sqs).unwrap();
        let record = &parsed.records[0];
        let body = shared::InboundEvent::parse(record.body.as_deref().unwrap().as_bytes()).unwrap();
        assert!(body.event_type.ends_with(".customer.end"));
        let http = &Function::WebhookReceiver.events(1).unwrap()[0];
        let request = lambda_http::request::from_str(std::str::from_utf8(http).unwrap()).unwrap();
        assert_eq!(request.uri().path(), "/webhooks/genesys");
        let signature = request.headers()["x-hub-signature-256"].to_str().unwrap();
        SignatureScheme::default()
            .verify(
                crate::LOCAL_WEBHOOK_SECRET.as_bytes(),
                request.body().as_ref(),
                Some(signature),
            )
            .unwrap();
    }

    #[test]
    fn success_shapes() {
        let http = |status: u16, body: Value| {
            json!({"statusCode": status, "headers": {}, "body": body.to_string(), "isBase64Encoded": false})
                .to_string()
                .into_bytes()
        };
        let w = Function::WebhookReceiver;
        assert!(w.check(&http(202, json!({"status": "queued"}))).is_ok());
        let err = w
            .check(&http(503, json!({"error": "unavailable"})))
            .unwrap_err();
        assert!(err.starts_with("HTTP 503"), "{err}");
        let sn = Function::ServiceNowWriter;
        assert!(sn.check(br#"{"batchItemFailures":[]}"#).is_ok());
        assert!(sn
            .check(br#"{"batchItemFailures":[{"itemIdentifier":"m1"}]}"#)
            .is_err());
        assert!(Function::TokenRefresher.check(b"null").is_ok());
        assert!(Function::TokenRefresher.check(b"\"failed\"").is_err());
        let encoded = json!({"statusCode": 200, "isBase64Encoded": true,
            "body": base64::engine::general_purpose::STANDARD.encode(r#"{"incidentNumber":"INC1"}"#)});
        assert!(Function::DataAction
            .check(encoded.to_string().as_bytes())
            .is_ok());
    }
}
