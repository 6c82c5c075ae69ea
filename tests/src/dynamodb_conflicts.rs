//! A loopback proxy in front of moto that refuses chosen DynamoDB calls with `TransactionConflictException`, as
//! DynamoDB refuses a single write to an item a transaction is writing (moto never does).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Clone)]
struct Shared {
    /// `(X-Amz-Target operation, refusals left)`.
    refuse: Arc<Mutex<Vec<(String, usize)>>>,
    refused: Arc<AtomicUsize>,
    moto: String,
    http: reqwest::Client,
}

/// The proxy; point a DynamoDB client's `endpoint_url` at [`Self::url`].
pub struct ConflictingDynamoDb {
    pub url: String,
    shared: Shared,
}

impl ConflictingDynamoDb {
    pub async fn start() -> Self {
        let shared = Shared {
            refuse: Arc::default(),
            refused: Arc::default(),
            moto: crate::moto_endpoint().to_string(),
            http: reqwest::Client::new(),
        };
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let addr = local::http::spawn(([127, 0, 0, 1], 0).into(), router)
            .await
            .expect("proxy");
        Self {
            url: format!("http://{addr}"),
            shared,
        }
    }

    /// Refuses the next `times` calls of `operation` (`PutItem`, `UpdateItem`, …).
    pub fn refuse(&self, operation: &str, times: usize) {
        let mut refuse = self.shared.refuse.lock().unwrap_or_else(|e| e.into_inner());
        refuse.push((operation.to_string(), times));
    }

    /// Calls refused so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// A DynamoDB client that calls moto through the proxy.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(&crate::aws_config().await)
            .endpoint_url(&self.url)
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }
}

async fn forward(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_string();
    let refuse = {
        let mut refuse = s.refuse.lock().unwrap_or_else(|e| e.into_inner());
        match refuse
            .iter_mut()
            .find(|(op, left)| *op == operation && *left > 0)
        {
            Some((_, left)) => {
                *left -= 1;
                true
            }
            None => false,
        }
    };
    if refuse {
        s.refused.fetch_add(1, Ordering::SeqCst);
        let body = serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionConflictException",
            "message": "Transaction is ongoing for the item",
        });
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.0")],
            body.to_string(),
        )
            .into_response();
    }
    let mut request = s.http.post(&s.moto).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut out = HeaderMap::new();
            for (name, value) in answer.headers() {
                if let (Ok(n), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(name.as_str().as_bytes()),
                    axum::http::HeaderValue::from_bytes(value.as_bytes()),
                ) {
                    if n != "content-length" && n != "transfer-encoding" {
                        out.insert(n, v);
                    }
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
