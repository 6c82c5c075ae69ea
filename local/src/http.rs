//! Loopback HTTP serving: an accept loop that can drop a connection on request (fault injection), and the
//! webhook receiver behind a Lambda-shaped request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

/// Put in every request's extensions: notifying it closes the connection without an answer.
#[derive(Clone)]
pub struct ConnectionKill(pub Arc<Notify>);

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let k = kill.clone();
            let svc = tower::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectionKill(k.clone()));
                router.clone().oneshot(req.map(Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                // WebSocket upgrades (the local API Gateway WebSocket stand-in).
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {} // dropping `conn` closes the socket mid-request
            }
        });
    }
}

/// Binds `addr` (port 0 for any) and serves in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr, router: Router) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener, router));
    Ok(bound)
}

/// The request as API Gateway hands it to a Lambda function (body collected, at most `limit` bytes).
async fn to_lambda(
    request: axum::extract::Request,
    limit: usize,
) -> Result<lambda_http::Request, Response> {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(http::Request::from_parts(
            parts,
            lambda_http::Body::Binary(bytes.to_vec()),
        )),
        Err(_) => Err((http::StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response()),
    }
}

fn from_lambda(response: lambda_http::Response<lambda_http::Body>) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::from(body.to_vec()))
}

/// `POST /webhooks/genesys` → the receiver's Lambda adapter, exactly as deployed.
pub fn receiver_router(receiver: Arc<webhook_receiver::Receiver>) -> Router {
    async fn handle(
        State(receiver): State<Arc<webhook_receiver::Receiver>>,
        request: axum::extract::Request,
    ) -> Response {
        // Larger than the receiver's own limit, so it answers 413 itself.
        let limit = receiver
            .config()
            .max_body_bytes
            .saturating_mul(4)
            .max(1 << 20);
        match to_lambda(request, limit).await {
            Ok(r) => from_lambda(webhook_receiver::handle_lambda(&receiver, r).await),
            Err(refused) => refused,
        }
    }
    Router::new()
        .route("/webhooks/genesys", axum::routing::post(handle))
        .with_state(receiver)
}

/// `POST /ingest` → legacy-ingest's Lambda adapter, exactly as deployed.
pub fn ingest_router(ingest: Arc<legacy_ingest::Ingest>) -> Router {
    async fn handle(
        State(ingest): State<Arc<legacy_ingest::Ingest>>,
        request: axum::extract::Request,
    ) -> Response {
        match to_lambda(request, 1 << 20).await {
            Ok(r) => from_lambda(legacy_ingest::handle_lambda(&ingest, r).await),
            Err(refused) => refused,
        }
    }
    Router::new()
        .route("/ingest", axum::routing::post(handle))
        .with_state(ingest)
}

/// `…/data-actions/*` → data-action's Lambda adapter, exactly as deployed.
pub fn data_action_router(actions: Arc<data_action::DataActions>) -> Router {
    async fn handle(
        State(actions): State<Arc<data_action::DataActions>>,
        request: axum::extract::Request,
    ) -> Response {
        match to_lambda(request, 1 << 20).await {
            Ok(r) => from_lambda(data_action::handle_lambda(&actions, r).await),
            Err(refused) => refused,
        }
    }
    Router::new()
        .route("/data-actions/{*rest}", axum::routing::any(handle))
        .with_state(actions)
}

/// `/callbacks` → callback-api's Lambda adapter, exactly as deployed.
pub fn callback_router(api: Arc<callback_api::api::CallbackApi>) -> Router {
    async fn handle(
        State(api): State<Arc<callback_api::api::CallbackApi>>,
        request: axum::extract::Request,
    ) -> Response {
        match to_lambda(request, 1 << 20).await {
            Ok(r) => from_lambda(callback_api::api::handle_lambda(&api, r).await),
            Err(refused) => refused,
        }
    }
    Router::new()
        .route("/callbacks", axum::routing::any(handle))
        .route("/callbacks/{id}", axum::routing::any(handle))
        .with_state(api)
}
