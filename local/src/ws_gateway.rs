//! A local stand-in for an API Gateway WebSocket API: clients connect to `ws://…/?token=…`; each connection
//! gets an id and runs callback-websocket's routes (`$connect` may refuse it, `$default` answers each message,
//! `$disconnect` when it closes). The management API is served beside it, as API Gateway's `@connections`
//! endpoint: `POST /@connections/{id}` sends a frame (410 `GoneException` for a closed connection), `GET`
//! describes it, `DELETE` closes it. callback-notifier's `PostToConnection` calls reach it through the AWS SDK.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use callback_websocket::Live;

#[derive(Clone)]
pub struct WsGateway {
    live: Arc<Live>,
    open: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Outgoing>>>>,
}

enum Outgoing {
    Text(String),
    Close,
}

#[derive(Deserialize)]
struct ConnectQuery {
    token: Option<String>,
}

fn gone() -> Response {
    (
        StatusCode::GONE,
        [("x-amzn-errortype", "GoneException")],
        axum::Json(serde_json::json!({"message": "Gone"})),
    )
        .into_response()
}

impl WsGateway {
    pub fn new(live: Arc<Live>) -> Self {
        Self {
            live,
            open: Arc::default(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(connect))
            .route(
                "/@connections/{id}",
                get(describe).post(post_to_connection).delete(close),
            )
            .with_state(self.clone())
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    fn sender(&self, id: &str) -> Option<mpsc::UnboundedSender<Outgoing>> {
        self.open.lock().ok()?.get(id).cloned()
    }

    async fn run(self, socket: WebSocket, id: String) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        if let Ok(mut open) = self.open.lock() {
            open.insert(id.clone(), tx);
        }
        let (mut sink, mut stream) = socket.split();
        loop {
            tokio::select! {
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        let answer = self.live.route("$default", &id, None).await;
                        if let Some(body) = answer.body {
                            if sink.send(Message::Text(body.to_string().into())).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                outgoing = rx.recv() => match outgoing {
                    Some(Outgoing::Text(text)) => {
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Outgoing::Close) | None => {
                        let _ = sink.send(Message::Close(None)).await;
                        break;
                    }
                },
            }
        }
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
        self.live.route("$disconnect", &id, None).await;
    }
}

async fn connect(
    State(gw): State<WsGateway>,
    Query(q): Query<ConnectQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // API Gateway's connection ids are short base64 strings.
    let id = format!("{}=", &uuid::Uuid::new_v4().simple().to_string()[..15]);
    let answer = gw.live.route("$connect", &id, q.token.as_deref()).await;
    if answer.status != 200 {
        return StatusCode::from_u16(answer.status)
            .unwrap_or(StatusCode::FORBIDDEN)
            .into_response();
    }
    upgrade.on_upgrade(move |socket| gw.run(socket, id))
}

async fn post_to_connection(
    State(gw): State<WsGateway>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match gw.sender(&id) {
        Some(tx)
            if tx
                .send(Outgoing::Text(String::from_utf8_lossy(&body).into_owned()))
                .is_ok() =>
        {
            StatusCode::OK.into_response()
        }
        _ => gone(),
    }
}

async fn describe(State(gw): State<WsGateway>, Path(id): Path<String>) -> Response {
    match gw.sender(&id) {
        Some(_) => {
            axum::Json(serde_json::json!({"identity": {"sourceIp": "127.0.0.1"}})).into_response()
        }
        None => gone(),
    }
}

async fn close(State(gw): State<WsGateway>, Path(id): Path<String>) -> Response {
    match gw.sender(&id) {
        Some(tx) => {
            let _ = tx.send(Outgoing::Close);
            StatusCode::NO_CONTENT.into_response()
        }
        None => gone(),
    }
}
