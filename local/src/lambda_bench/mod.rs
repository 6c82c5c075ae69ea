//! `lambda-bench`: Lambda-shaped figures (cold init, first and warm invocation latency, peak RSS) of the real
//! release binaries, each run against a Lambda Runtime API emulator of our own and an in-process AWS /
//! ServiceNow / Genesys stub, all on loopback. Local only, never deployed.
//!
//! - [`runtime_api`]: the Runtime API (2018-06-01) the binary polls, recording when it asks and answers.
//! - [`aws_stub`]: minimal valid answers to the calls the functions make, chosen to drive their success path.
//! - [`item_store`]: the stub's in-memory DynamoDB (items, conditions, updates, transactions).
//! - [`scenarios`]: per function, its environment (as template.yaml sets it), events and expected answer.
//! - [`runner`]: spawns a binary, drives its invocations, reads its peak RSS.
//! - [`stats`]: percentiles, medians across runs, budgets and the Markdown table.

pub mod aws_stub;
pub mod item_store;
pub mod runner;
pub mod runtime_api;
pub mod scenarios;
pub mod stats;

use std::net::SocketAddr;

use axum::body::Body;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// A loopback HTTP server; dropping it stops accepting (open connections end with their client).
pub struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves `router` on 127.0.0.1 with an ephemeral port (HTTP/1.1, keep-alive, `TCP_NODELAY`).
    pub async fn start(router: Router) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?;
        let task = tokio::spawn(accept_loop(listener, router));
        Ok(Self { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, router: Router) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // E.g. out of file descriptors: do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        // Small request/response pairs: never let Nagle hold a write back.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            let svc = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                router.clone().oneshot(req.map(Body::new))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .await;
        });
    }
}

/// SDK configuration for tests against the stub at `url`: clients built as the functions build theirs.
#[cfg(test)]
async fn sdk_config_for_tests(url: &str) -> aws_config::SdkConfig {
    shared::aws::as_the_functions_call(aws_config::defaults(aws_config::BehaviorVersion::latest()))
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "a", "b", None, None, "test",
        ))
        .load()
        .await
}
