//! A webhook subscriber on loopback: records what it receives, answers the statuses it is told to (then 204).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

#[derive(Debug, Clone)]
pub struct Received {
    pub timestamp: String,
    pub signature: String,
    pub event_id: String,
    pub body: Vec<u8>,
}

#[derive(Clone, Default)]
pub struct WebhookSink {
    received: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl WebhookSink {
    /// Serves the sink; returns it and its URL.
    pub async fn start() -> (Self, String) {
        let sink = Self::default();
        let router = Router::new()
            .route("/hook", post(receive))
            .with_state(sink.clone());
        let addr = local::http::spawn(([127, 0, 0, 1], 0).into(), router)
            .await
            .expect("sink");
        (sink, format!("http://{addr}/hook"))
    }

    /// The next answers, in order (then 204 again).
    pub fn answer_next(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn receive(
    State(sink): State<WebhookSink>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    sink.received.lock().unwrap().push(Received {
        timestamp: header("x-callback-timestamp"),
        signature: header("x-callback-signature"),
        event_id: header("x-callback-event-id"),
        body: body.to_vec(),
    });
    let next = sink.answers.lock().unwrap().pop_front().unwrap_or(204);
    StatusCode::from_u16(next).unwrap_or(StatusCode::NO_CONTENT)
}
