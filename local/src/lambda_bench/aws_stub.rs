//! An in-process stand-in for what the functions call on their success path, answering at once so the bench
//! measures the function and not an emulator: AWS JSON-protocol calls (chosen by `X-Amz-Target`; SQS,
//! DynamoDB, Secrets Manager), ServiceNow's Table API and OAuth endpoint, Genesys' OAuth endpoint, data
//! tables and callback create, the API Gateway Management API (`PostToConnection`) and a callback webhook
//! subscriber. It logs nothing per request, counts what the bench checks after a run ([`Observed`]), and
//! lists requests it has no answer for ([`AwsStub::unexpected`]).
//!
//! DynamoDB is a small in-memory item store ([`ItemStore`]), seeded with a scenario's fixtures: conditions are
//! evaluated, so the functions' fresh claims, locks and reservations succeed as on DynamoDB and the items they
//! read are the ones they (or the fixtures) wrote. Lookups in ServiceNow find nothing, a create answers a new
//! incident, a data-table row does not exist yet. aws-sdk-sqs does not check `MD5OfMessageBody`, so none is
//! computed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

use super::item_store::{Item, ItemStore, StoreError};
use super::Server;

const JSON_10: &str = "application/x-amz-json-1.0";
const JSON_11: &str = "application/x-amz-json-1.1";
const JSON: &str = "application/json";

/// What the stub answers with.
#[derive(Debug, Clone, Default)]
pub struct StubConfig {
    /// `SecretString` by `SecretId`; a secret not listed (and any `AWSPREVIOUS` stage) is
    /// `ResourceNotFoundException`, as for a secret never rotated.
    pub secrets: HashMap<String, String>,
    /// The queues' `MaximumMessageSize` (template.yaml: 262144).
    pub max_message_size: u64,
    /// Columns of every Genesys data table's schema.
    pub datatable_columns: Vec<String>,
    /// DynamoDB items present before the function starts: (table, item).
    pub items: Vec<(String, Item)>,
    /// The secret callback webhooks to `POST /bench/subscriber` must be signed with.
    pub subscriber_secret: Option<Vec<u8>>,
}

/// What the functions did through the stub, for the checks after a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Genesys callbacks created (`POST /api/v2/conversations/callbacks`).
    pub callbacks_created: u64,
    /// Genesys callbacks cancelled (`PATCH /api/v2/conversations/callbacks/{id}` `{"state": "disconnected"}`).
    pub callbacks_cancelled: u64,
    /// Genesys callbacks moved (`PATCH /api/v2/conversations/callbacks` with a new `callbackScheduledTime`).
    pub callbacks_rescheduled: u64,
    /// `PostToConnection` calls.
    pub pushes: u64,
    /// Webhooks to the subscriber whose signature held, and those whose did not.
    pub webhooks_signed: u64,
    pub webhooks_badly_signed: u64,
    /// SQS messages sent, by queue name (the queue URL's last segment).
    pub sent: HashMap<String, u64>,
}

struct StubState {
    config: StubConfig,
    counter: AtomicU64,
    /// Every request answered.
    requests: AtomicU64,
    unexpected: Mutex<Vec<String>>,
    store: Mutex<ItemStore>,
    observed: Mutex<Observed>,
}

/// The running stub; it stops when dropped.
pub struct AwsStub {
    state: Arc<StubState>,
    server: Server,
}

impl AwsStub {
    pub async fn start(config: StubConfig) -> Result<Self, String> {
        let mut store = ItemStore::default();
        for (table, item) in &config.items {
            store
                .insert(table, item.clone())
                .map_err(|e| format!("fixture not stored: {e:?}"))?;
        }
        let state = Arc::new(StubState {
            config,
            counter: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            unexpected: Mutex::new(Vec::new()),
            store: Mutex::new(store),
            observed: Mutex::new(Observed::default()),
        });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let server = Server::start(router).await?;
        Ok(Self { state, server })
    }

    /// `http://127.0.0.1:<port>`: for `AWS_ENDPOINT_URL` and the ServiceNow / Genesys URLs.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Requests answered with an error because the stub knows no answer (`METHOD path` or the target).
    pub fn unexpected(&self) -> Vec<String> {
        self.state
            .unexpected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Requests answered so far (AWS, ServiceNow and Genesys alike).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    pub fn observed(&self) -> Observed {
        lock(&self.state.observed).clone()
    }

    /// Reads the DynamoDB items as they are now.
    pub fn with_items<T>(&self, read: impl FnOnce(&ItemStore) -> T) -> T {
        read(&lock(&self.state.store))
    }
}

/// A lock that a panicked holder did not poison for good (the stub's state stays readable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StubState {
    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn note_unexpected(&self, what: String) {
        let mut seen = self.unexpected.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() < 20 && !seen.contains(&what) {
            seen.push(what);
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn ok(content_type: &'static str, body: impl Into<Body>) -> Response {
    reply(StatusCode::OK, content_type, body)
}

fn aws_error(content_type: &'static str, code: &str, message: &str) -> Response {
    let body = json!({"__type": code, "message": message}).to_string();
    reply(StatusCode::BAD_REQUEST, content_type, body)
}

async fn handle(
    State(s): State<Arc<StubState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    match headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        Some(target) => aws(&s, target, &body),
        None => http_api(&s, &method, uri.path(), &headers, &body),
    }
}

/// The queue name of a `QueueUrl` (its last path segment).
fn queue_name(request: &Value) -> String {
    let url = request["QueueUrl"].as_str().unwrap_or_default();
    url.rsplit('/').next().unwrap_or_default().to_string()
}

fn count_sent(s: &StubState, request: &Value, messages: u64) {
    *lock(&s.observed)
        .sent
        .entry(queue_name(request))
        .or_default() += messages;
}

/// A DynamoDB call against the item store, answered as DynamoDB's JSON protocol does.
fn dynamodb(s: &StubState, operation: &str, body: &[u8]) -> Response {
    const PREFIX: &str = "com.amazonaws.dynamodb.v20120810#";
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let result = {
        let mut store = lock(&s.store);
        match operation {
            "GetItem" => store.get_item(&request),
            "PutItem" | "UpdateItem" | "DeleteItem" => store.write(operation, &request),
            "TransactWriteItems" => store.transact_write(&request),
            _ => Err(StoreError::Invalid(format!("{operation} is not answered"))),
        }
    };
    match result {
        Ok(answer) => ok(JSON_10, answer.to_string()),
        Err(StoreError::ConditionFailed) => aws_error(
            JSON_10,
            &format!("{PREFIX}ConditionalCheckFailedException"),
            "The conditional request failed",
        ),
        Err(StoreError::Cancelled(codes)) => {
            let reasons: Vec<Value> = codes
                .iter()
                .map(|c| match *c {
                    "None" => json!({"Code": "None"}),
                    code => json!({"Code": code, "Message": "The conditional request failed"}),
                })
                .collect();
            let body = json!({"__type": format!("{PREFIX}TransactionCanceledException"),
                "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", codes.join(", ")),
                "CancellationReasons": reasons});
            reply(StatusCode::BAD_REQUEST, JSON_10, body.to_string())
        }
        Err(StoreError::Invalid(why)) => {
            s.note_unexpected(format!("DynamoDB_20120810.{operation}: {why}"));
            aws_error(
                JSON_10,
                "com.amazon.coral.validate#ValidationException",
                &why,
            )
        }
    }
}

fn aws(s: &StubState, target: &str, body: &[u8]) -> Response {
    let (service, operation) = target.split_once('.').unwrap_or((target, ""));
    match (service, operation) {
        ("AmazonSQS", "SendMessage") => {
            let request: Value = serde_json::from_slice(body).unwrap_or_default();
            count_sent(s, &request, 1);
            ok(
                JSON_10,
                json!({"MessageId": message_id(s.next())}).to_string(),
            )
        }
        ("AmazonSQS", "SendMessageBatch") => {
            let request: Value = serde_json::from_slice(body).unwrap_or_default();
            let entries = request["Entries"].as_array().map_or(0, Vec::len);
            count_sent(s, &request, entries as u64);
            let successful: Vec<Value> = request["Entries"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|e| json!({"Id": e["Id"], "MessageId": message_id(s.next()), "MD5OfMessageBody": ""}))
                .collect();
            ok(
                JSON_10,
                json!({"Successful": successful, "Failed": []}).to_string(),
            )
        }
        ("AmazonSQS", "GetQueueAttributes") => ok(
            JSON_10,
            json!({"Attributes": {"MaximumMessageSize": s.config.max_message_size.to_string()}})
                .to_string(),
        ),
        ("AmazonSQS", "ChangeMessageVisibility" | "DeleteMessage") => ok(JSON_10, "{}"),
        (
            "DynamoDB_20120810",
            "PutItem" | "UpdateItem" | "DeleteItem" | "GetItem" | "TransactWriteItems",
        ) => dynamodb(s, operation, body),
        ("secretsmanager", "GetSecretValue") => {
            let request: Value = serde_json::from_slice(body).unwrap_or_default();
            let id = request["SecretId"].as_str().unwrap_or_default();
            let stage = request["VersionStage"].as_str().unwrap_or("AWSCURRENT");
            match s.config.secrets.get(id) {
                Some(value) if stage == "AWSCURRENT" => ok(
                    JSON_11,
                    json!({"ARN": secret_arn(id), "Name": id, "SecretString": value,
                           "VersionId": "00000000-0000-4000-8000-000000000001",
                           "VersionStages": ["AWSCURRENT"], "CreatedDate": 1.7e9})
                    .to_string(),
                ),
                _ => aws_error(
                    JSON_11,
                    "ResourceNotFoundException",
                    "Secrets Manager can't find the specified secret value for staging label",
                ),
            }
        }
        ("secretsmanager", "PutSecretValue") => {
            let request: Value = serde_json::from_slice(body).unwrap_or_default();
            let id = request["SecretId"].as_str().unwrap_or_default();
            ok(
                JSON_11,
                json!({"ARN": secret_arn(id), "Name": id,
                       "VersionId": format!("00000000-0000-4000-8000-{:012x}", s.next()),
                       "VersionStages": ["AWSCURRENT"]})
                .to_string(),
            )
        }
        _ => {
            s.note_unexpected(target.to_string());
            let content_type = if service == "secretsmanager" {
                JSON_11
            } else {
                JSON_10
            };
            aws_error(
                content_type,
                "UnknownOperationException",
                "not answered by the bench stub",
            )
        }
    }
}

fn message_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn secret_arn(id: &str) -> String {
    format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{id}-AbCdEf")
}

fn incident(n: u64) -> Value {
    json!({"sys_id": format!("{:032x}", 0x5e71_0000_0000_u64 + n), "number": format!("INC{:07}", 10_000 + n)})
}

/// A Genesys callback conversation id.
fn conversation_id(n: u64) -> String {
    format!("c0000000-0000-4000-8000-{n:012x}")
}

/// `POST /bench/subscriber`: 204 when the webhook is signed with the subscriber's secret, else 401.
fn subscriber(s: &StubState, headers: &HeaderMap, body: &[u8]) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let timestamp = header("x-callback-timestamp").and_then(|t| t.parse::<u64>().ok());
    let signed = match (&s.config.subscriber_secret, timestamp) {
        (Some(secret), Some(t)) => {
            header("x-callback-signature")
                == Some(callback_notifier::signature(secret, t, body).as_str())
        }
        _ => false,
    };
    let mut observed = lock(&s.observed);
    match signed {
        true => {
            observed.webhooks_signed += 1;
            reply(StatusCode::NO_CONTENT, JSON, "")
        }
        false => {
            observed.webhooks_badly_signed += 1;
            reply(
                StatusCode::UNAUTHORIZED,
                JSON,
                r#"{"error":"bad signature"}"#,
            )
        }
    }
}

fn http_api(
    s: &StubState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    const NONE: &str = r#"{"result":[]}"#;
    let datatable = path.strip_prefix("/api/v2/flows/datatables/");
    match (method, path) {
        // Genesys: a callback created, as CreateCallbackCommand answers.
        (&Method::POST, "/api/v2/conversations/callbacks") => {
            let n = s.next();
            lock(&s.observed).callbacks_created += 1;
            let id = conversation_id(n);
            ok(
                JSON,
                json!({"conversation": {"id": id, "selfUri": format!("/api/v2/conversations/{id}")},
                       "callbackIdentifiers": [{"type": "EXTERNAL", "id": message_id(n)}]})
                .to_string(),
            )
        }
        // Genesys: a callback moved (PatchCallbackRequest).
        (&Method::PATCH, "/api/v2/conversations/callbacks") => {
            let moved = serde_json::from_slice::<Value>(body).is_ok_and(|b| {
                b["conversationId"].is_string() && b["callbackScheduledTime"].is_string()
            });
            if !moved {
                s.note_unexpected(format!("{method} {path} without conversationId and time"));
            }
            lock(&s.observed).callbacks_rescheduled += u64::from(moved);
            ok(JSON, json!({"conversation": {"id": "moved"}}).to_string())
        }
        // Genesys: a callback conversation, still waiting (its customer not disconnected).
        (&Method::GET, p) if p.starts_with("/api/v2/conversations/callbacks/") => {
            let id = p.rsplit('/').next().unwrap_or_default();
            ok(
                JSON,
                json!({"id": id, "participants": [
                    {"id": format!("{id}-customer"), "purpose": "customer", "state": "connected"},
                    {"id": format!("{id}-acd"), "purpose": "acd", "state": "connected"}]})
                .to_string(),
            )
        }
        // Genesys: the callback disconnected (cancelled).
        (&Method::PATCH, p) if p.starts_with("/api/v2/conversations/callbacks/") => {
            let cancels =
                serde_json::from_slice::<Value>(body).is_ok_and(|b| b["state"] == "disconnected");
            if !cancels {
                s.note_unexpected(format!("{method} {path} without state disconnected"));
            }
            lock(&s.observed).callbacks_cancelled += u64::from(cancels);
            let id = p.rsplit('/').next().unwrap_or_default();
            ok(JSON, json!({"id": id, "state": "disconnected"}).to_string())
        }
        // API Gateway Management API (the WebSocket stage `live`): PostToConnection.
        (&Method::POST, p) if p.starts_with("/live/@connections/") => {
            lock(&s.observed).pushes += 1;
            reply(StatusCode::OK, JSON, "")
        }
        (&Method::POST, "/bench/subscriber") => subscriber(s, headers, body),
        // ServiceNow (/oauth_token.do) and Genesys (/oauth/token) token endpoints.
        (&Method::POST, "/oauth_token.do" | "/oauth/token") => ok(
            JSON,
            json!({"access_token": format!("bench-token-{}", s.next()), "token_type": "Bearer",
                   "expires_in": 3600})
            .to_string(),
        ),
        (&Method::POST, "/api/now/table/incident") => reply(
            StatusCode::CREATED,
            JSON,
            json!({"result": incident(s.next())}).to_string(),
        ),
        // Lookups by correlation_id, callers by phone, open incidents of a caller: nothing matches.
        (
            &Method::GET,
            "/api/now/v2/table/incident"
            | "/api/now/table/incident"
            | "/api/now/table/sys_user"
            | "/api/now/v2/table/sys_user",
        ) => ok(JSON, NONE),
        (&Method::PATCH | &Method::PUT, p) if p.starts_with("/api/now/table/incident/") => {
            ok(JSON, json!({"result": incident(s.next())}).to_string())
        }
        (&Method::GET, p) if p.starts_with("/api/now/table/incident/") => {
            let mut i = incident(s.next());
            i["work_notes"] = json!("");
            i["impact"] = json!("3");
            i["urgency"] = json!("3");
            ok(JSON, json!({"result": i}).to_string())
        }
        // Genesys data tables: the schema, a row that does not exist yet, its create.
        (&Method::GET, _) if datatable.is_some_and(|t| !t.contains('/')) => {
            let id = datatable.unwrap_or_default();
            let mut properties = serde_json::Map::new();
            properties.insert("key".into(), json!({"type": "string"}));
            for c in &s.config.datatable_columns {
                properties.insert(c.clone(), json!({"type": "string"}));
            }
            ok(
                JSON,
                json!({"id": id, "name": id, "schema": {"type": "object", "required": ["key"],
                       "properties": properties}})
                .to_string(),
            )
        }
        (&Method::GET, _) if datatable.is_some_and(|t| t.contains("/rows/")) => {
            reply(StatusCode::NOT_FOUND, JSON, "{}")
        }
        (&Method::POST, _) if datatable.is_some_and(|t| t.ends_with("/rows")) => ok(JSON, "{}"),
        (&Method::PUT, _) if datatable.is_some_and(|t| t.contains("/rows/")) => ok(JSON, "{}"),
        _ => {
            s.note_unexpected(format!("{method} {path}"));
            reply(
                StatusCode::NOT_FOUND,
                JSON,
                r#"{"error":"not answered by the bench stub"}"#,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    async fn stub() -> AwsStub {
        AwsStub::start(StubConfig {
            secrets: HashMap::from([("s1".to_string(), r#"{"username":"u"}"#.to_string())]),
            max_message_size: 262_144,
            datatable_columns: vec!["amount".into()],
            items: vec![(
                "t".to_string(),
                serde_json::from_value(json!({"id": {"S": "fixture"}, "n": {"N": "7"}})).unwrap(),
            )],
            subscriber_secret: Some(b"sub-secret".to_vec()),
        })
        .await
        .unwrap()
    }

    /// The answers parse in the SDKs the functions use, and lead where the functions expect.
    #[tokio::test]
    async fn the_sdks_accept_the_answers() {
        let stub = stub().await;
        let aws = super::super::sdk_config_for_tests(&stub.url()).await;
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let sent = sqs
            .send_message()
            .queue_url("http://q")
            .message_body("{}")
            .send()
            .await
            .unwrap();
        assert!(sent.message_id().is_some());
        let attrs = sqs
            .get_queue_attributes()
            .queue_url("http://q")
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::MaximumMessageSize)
            .send()
            .await
            .unwrap();
        let size = attrs.attributes().and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::MaximumMessageSize)
                .cloned()
        });
        assert_eq!(size.as_deref(), Some("262144"));

        let ddb = aws_sdk_dynamodb::Client::new(&aws);
        let get = |id: &str| {
            ddb.get_item()
                .table_name("t")
                .key("id", AttributeValue::S(id.into()))
                .send()
        };
        assert!(get("k").await.unwrap().item().is_none());
        let put = || {
            ddb.put_item()
                .table_name("t")
                .item("id", AttributeValue::S("k".into()))
                .condition_expression("attribute_not_exists(id)")
                .send()
        };
        put().await.unwrap();
        let refused = put().await.unwrap_err();
        assert!(refused
            .as_service_error()
            .is_some_and(|e| e.is_conditional_check_failed_exception()));
        assert!(get("k").await.unwrap().item().is_some());
        let fixture = get("fixture").await.unwrap();
        assert_eq!(
            fixture.item().and_then(|i| i.get("n")),
            Some(&AttributeValue::N("7".into()))
        );
        // A transaction whose second condition fails: cancelled, with the reasons in order.
        let put_new = |id: &str| {
            aws_sdk_dynamodb::types::TransactWriteItem::builder()
                .put(
                    aws_sdk_dynamodb::types::Put::builder()
                        .table_name("t")
                        .item("id", AttributeValue::S(id.into()))
                        .condition_expression("attribute_not_exists(#id)")
                        .expression_attribute_names("#id", "id")
                        .build()
                        .unwrap(),
                )
                .build()
        };
        let cancelled = ddb
            .transact_write_items()
            .transact_items(put_new("t1"))
            .transact_items(put_new("k"))
            .send()
            .await
            .unwrap_err();
        let codes: Vec<Option<String>> = match cancelled.as_service_error() {
            Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t)) => {
                t.cancellation_reasons().iter().map(|r| r.code().map(str::to_string)).collect()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            codes,
            [
                Some("None".to_string()),
                Some("ConditionalCheckFailed".to_string())
            ]
        );
        assert!(get("t1").await.unwrap().item().is_none());
        ddb.transact_write_items()
            .transact_items(put_new("t1"))
            .send()
            .await
            .unwrap();
        assert!(get("t1").await.unwrap().item().is_some());
        assert!(stub.with_items(|s| s.item("t", "t1").is_some()));

        let push = aws_sdk_apigatewaymanagement::Client::from_conf(
            aws_sdk_apigatewaymanagement::config::Builder::from(&aws)
                .endpoint_url(format!("{}/live", stub.url()))
                .build(),
        );
        push.post_to_connection()
            .connection_id("L0SM9cOFvHcCIhw=")
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
                b"{}".to_vec(),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(stub.observed().pushes, 1);
        assert_eq!(stub.observed().sent.get("q"), Some(&1));

        let sm = aws_sdk_secretsmanager::Client::new(&aws);
        let s1 = sm.get_secret_value().secret_id("s1").send().await.unwrap();
        assert_eq!(s1.secret_string(), Some(r#"{"username":"u"}"#));
        let previous = sm
            .get_secret_value()
            .secret_id("s1")
            .version_stage("AWSPREVIOUS")
            .send()
            .await
            .unwrap_err();
        assert!(previous
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()));
        sm.put_secret_value()
            .secret_id("s1")
            .secret_string("x")
            .send()
            .await
            .unwrap();
        assert!(stub.unexpected().is_empty(), "{:?}", stub.unexpected());
    }

    async fn json_of(request: reqwest::RequestBuilder) -> Value {
        request.send().await.unwrap().json().await.unwrap()
    }

    #[tokio::test]
    async fn servicenow_and_genesys_answers() {
        let stub = stub().await;
        let http = reqwest::Client::new();
        let url = stub.url();
        assert_eq!(stub.requests(), 0);
        let created = http
            .post(format!("{url}/api/now/table/incident"))
            .json(&json!({"short_description": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), reqwest::StatusCode::CREATED);
        assert_eq!(stub.requests(), 1, "every request is counted");
        let body: Value = created.json().await.unwrap();
        assert!(body["result"]["number"]
            .as_str()
            .unwrap()
            .starts_with("INC"));
        let none =
            json_of(http.get(format!("{url}/api/now/v2/table/incident?sysparm_query=x"))).await;
        assert_eq!(none, json!({"result": []}));
        let schema =
            json_of(http.get(format!("{url}/api/v2/flows/datatables/t1?expand=schema"))).await;
        assert!(schema["schema"]["properties"]["amount"].is_object());
        let row = http
            .get(format!("{url}/api/v2/flows/datatables/t1/rows/k"))
            .send()
            .await
            .unwrap();
        assert_eq!(row.status(), reqwest::StatusCode::NOT_FOUND);
        let token = json_of(http.post(format!("{url}/oauth/token"))).await;
        assert_eq!(token["expires_in"], 3600);
        let callback = json_of(
            http.post(format!("{url}/api/v2/conversations/callbacks"))
                .json(&json!({"queueId": "q"})),
        )
        .await;
        assert!(callback["conversation"]["id"].is_string());
        assert_eq!(stub.observed().callbacks_created, 1);
        let webhook = |signature: String| {
            http.post(format!("{url}/bench/subscriber"))
                .header("x-callback-timestamp", "1000")
                .header("x-callback-signature", signature)
                .body("{}")
                .send()
        };
        let good = callback_notifier::signature(b"sub-secret", 1000, b"{}");
        assert_eq!(
            webhook(good).await.unwrap().status(),
            reqwest::StatusCode::NO_CONTENT
        );
        let bad = callback_notifier::signature(b"other", 1000, b"{}");
        assert_eq!(
            webhook(bad).await.unwrap().status(),
            reqwest::StatusCode::UNAUTHORIZED
        );
        let o = stub.observed();
        assert_eq!((o.webhooks_signed, o.webhooks_badly_signed), (1, 1));
        assert!(stub.unexpected().is_empty());
        let r = http.get(format!("{url}/elsewhere")).send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
        assert_eq!(stub.unexpected(), vec!["GET /elsewhere".to_string()]);
    }
}
