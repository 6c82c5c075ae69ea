//! A Lambda Runtime API (version 2018-06-01) emulator on loopback, for one function process.
//!
//! The bench queues an event with [`RuntimeApi::invoke`]; the function's long poll on
//! `GET /2018-06-01/runtime/invocation/next` takes it (with the `Lambda-Runtime-*` headers), and its
//! `POST …/invocation/{id}/response` or `…/error` completes the [`Invocation`]. Timestamps are
//! [`Instant`]s taken in the handlers: the first poll (the end of the function's init), when an event was
//! served, and when its answer had been read completely.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{oneshot, watch, Notify};

use super::Server;

pub const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
pub const RESPONSE_PATH: &str = "/2018-06-01/runtime/invocation/{id}/response";
pub const ERROR_PATH: &str = "/2018-06-01/runtime/invocation/{id}/error";
pub const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";

pub const REQUEST_ID: &str = "lambda-runtime-aws-request-id";
pub const DEADLINE_MS: &str = "lambda-runtime-deadline-ms";
pub const FUNCTION_ARN: &str = "lambda-runtime-invoked-function-arn";
pub const TRACE_ID: &str = "lambda-runtime-trace-id";
pub const ERROR_TYPE: &str = "lambda-runtime-function-error-type";

/// Where the function's init stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Started, has not asked for an event yet.
    Initialising,
    /// Asked for its first event at this instant.
    Polled(Instant),
    /// Reported `POST /runtime/init/error`.
    InitFailed { error_type: String, body: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerKind {
    /// `POST …/response`.
    Response,
    /// `POST …/error`, with its `Lambda-Runtime-Function-Error-Type` (or the body's `errorType`).
    Error { error_type: String },
}

/// How the function answered one invocation.
#[derive(Debug, Clone)]
pub struct Answer {
    pub request_id: String,
    pub kind: AnswerKind,
    pub body: Bytes,
    /// When `/next` handed the event over.
    pub served_at: Instant,
    /// When the answer's body had been read.
    pub answered_at: Instant,
}

impl Answer {
    /// Served → answered: what Lambda bills as the invocation's duration.
    pub fn latency(&self) -> Duration {
        self.answered_at.saturating_duration_since(self.served_at)
    }
}

struct Pending {
    request_id: String,
    event: Bytes,
    reply: oneshot::Sender<Answer>,
}

struct InFlight {
    served_at: Instant,
    reply: oneshot::Sender<Answer>,
}

struct Shared {
    queue: Mutex<VecDeque<Pending>>,
    queued: Notify,
    in_flight: Mutex<HashMap<String, InFlight>>,
    phase: watch::Sender<Phase>,
    /// `/next` requests so far.
    polls: watch::Sender<u64>,
    function_arn: String,
    timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An event handed to [`RuntimeApi::invoke`], answered (or not) later.
pub struct Invocation {
    pub request_id: String,
    answer: oneshot::Receiver<Answer>,
}

impl Invocation {
    /// The function's answer; an error when the emulator went away first.
    pub async fn answer(self) -> Result<Answer, String> {
        self.answer
            .await
            .map_err(|_| format!("invocation {} was never answered", self.request_id))
    }
}

/// The emulator: its server lives as long as this value.
pub struct RuntimeApi {
    shared: Arc<Shared>,
    server: Server,
}

impl RuntimeApi {
    /// Starts on 127.0.0.1 (ephemeral port). `function_arn` goes in every event's headers; `timeout` sets
    /// each event's deadline (`Lambda-Runtime-Deadline-Ms` = served + timeout).
    pub async fn start(function_arn: impl Into<String>, timeout: Duration) -> Result<Self, String> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            in_flight: Mutex::new(HashMap::new()),
            phase: watch::Sender::new(Phase::Initialising),
            polls: watch::Sender::new(0),
            function_arn: function_arn.into(),
            timeout,
        });
        let router = Router::new()
            .route(NEXT_PATH, get(next))
            .route(RESPONSE_PATH, post(response))
            .route(ERROR_PATH, post(error))
            .route(INIT_ERROR_PATH, post(init_error))
            .with_state(shared.clone());
        let server = Server::start(router).await?;
        Ok(Self { shared, server })
    }

    /// `host:port`, as `AWS_LAMBDA_RUNTIME_API` takes it.
    pub fn address(&self) -> String {
        self.server.addr().to_string()
    }

    pub fn phase(&self) -> Phase {
        self.shared.phase.borrow().clone()
    }

    /// Waits until the function polled for its first event or reported an init error.
    pub async fn ready(&self) -> Phase {
        let mut rx = self.shared.phase.subscribe();
        let phase = match rx.wait_for(|p| !matches!(p, Phase::Initialising)).await {
            Ok(p) => p.clone(),
            Err(_) => Phase::Initialising,
        };
        phase
    }

    /// Waits until the function has asked for an event `n` times (its first `/next` is 1).
    pub async fn polled(&self, n: u64) {
        let mut rx = self.shared.polls.subscribe();
        let _ = rx.wait_for(|polls| *polls >= n).await;
    }

    /// Queues `event` for the function's next poll.
    pub fn invoke(&self, event: impl Into<Bytes>) -> Invocation {
        let (reply, answer) = oneshot::channel();
        let request_id = uuid::Uuid::new_v4().to_string();
        lock(&self.shared.queue).push_back(Pending {
            request_id: request_id.clone(),
            event: event.into(),
            reply,
        });
        self.shared.queued.notify_one();
        Invocation { request_id, answer }
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `GET …/invocation/next`: long-polls until an event is queued.
async fn next(State(s): State<Arc<Shared>>) -> Response {
    let polled = Instant::now();
    s.phase.send_if_modified(|p| match p {
        Phase::Initialising => {
            *p = Phase::Polled(polled);
            true
        }
        _ => false,
    });
    s.polls.send_modify(|n| *n += 1);
    let pending = loop {
        if let Some(p) = lock(&s.queue).pop_front() {
            break p;
        }
        // `notify_one` keeps a permit when nobody waits, so an event queued since the check is not missed.
        s.queued.notified().await;
    };
    let served_at = Instant::now();
    let deadline = epoch_ms() + s.timeout.as_millis() as u64;
    let hex = pending.request_id.replace('-', "");
    let trace = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        deadline / 1000,
        hex.get(..24).unwrap_or(&hex),
        hex.get(..16).unwrap_or(&hex),
    );
    let built = axum::http::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header(REQUEST_ID, pending.request_id.as_str())
        .header(DEADLINE_MS, deadline.to_string())
        .header(FUNCTION_ARN, s.function_arn.as_str())
        .header(TRACE_ID, trace)
        .body(Body::from(pending.event));
    match built {
        Ok(r) => {
            lock(&s.in_flight).insert(
                pending.request_id,
                InFlight {
                    served_at,
                    reply: pending.reply,
                },
            );
            r
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn response(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let answered_at = Instant::now();
    complete(&s, id, AnswerKind::Response, body, answered_at)
}

async fn error(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answered_at = Instant::now();
    let error_type = error_type(&headers, &body);
    complete(&s, id, AnswerKind::Error { error_type }, body, answered_at)
}

async fn init_error(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let error_type = error_type(&headers, &body);
    s.phase.send_replace(Phase::InitFailed {
        error_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    accepted()
}

/// The error type from the header, else the body's `errorType`, else `Unhandled`.
fn error_type(headers: &HeaderMap, body: &[u8]) -> String {
    headers
        .get(ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["errorType"].as_str().map(str::to_string))
        })
        .unwrap_or_else(|| "Unhandled".into())
}

fn complete(
    s: &Shared,
    id: String,
    kind: AnswerKind,
    body: Bytes,
    answered_at: Instant,
) -> Response {
    let Some(flight) = lock(&s.in_flight).remove(&id) else {
        let body = serde_json::json!({"errorMessage": format!("unknown request id {id}"),
                                      "errorType": "InvalidRequestID"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    // The bench may have stopped waiting (a timeout): nothing to do then.
    let _ = flight.reply.send(Answer {
        request_id: id,
        kind,
        body,
        served_at: flight.served_at,
        answered_at,
    });
    accepted()
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"status": "OK"})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime client as `lambda_runtime` behaves: poll, handle, answer, poll again.
    async fn fake_function(api: String, handle_for: Duration) -> Result<(), String> {
        let http = reqwest::Client::new();
        let base = format!("http://{api}/2018-06-01/runtime/invocation");
        for n in 0.. {
            let next = http
                .get(format!("{base}/next"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let h = next.headers().clone();
            let header = |name: &str| {
                h.get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .ok_or(format!("no {name}"))
            };
            let id = header(REQUEST_ID)?;
            let deadline: u64 = header(DEADLINE_MS)?.parse().map_err(|_| "deadline")?;
            if deadline <= epoch_ms() + 20_000 {
                return Err(format!("deadline {deadline} is not 30 s ahead"));
            }
            if header(FUNCTION_ARN)? != "arn:aws:lambda:us-east-1:123456789012:function:f" {
                return Err("wrong arn".into());
            }
            header(TRACE_ID)?;
            let event = next.bytes().await.map_err(|e| e.to_string())?;
            tokio::time::sleep(handle_for).await;
            let (path, body) = match n % 2 {
                0 => (
                    "response",
                    format!(r#"{{"echo":{}}}"#, String::from_utf8_lossy(&event)),
                ),
                _ => (
                    "error",
                    r#"{"errorType":"Boom","errorMessage":"no"}"#.to_string(),
                ),
            };
            let mut req = http.post(format!("{base}/{id}/{path}")).body(body);
            if path == "error" {
                req = req.header(ERROR_TYPE, "Handler.Boom");
            }
            let status = req.send().await.map_err(|e| e.to_string())?.status();
            if status != reqwest::StatusCode::ACCEPTED {
                return Err(format!("answer got {status}"));
            }
        }
        Ok(())
    }

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:f";

    #[tokio::test]
    async fn serves_events_on_the_long_poll_and_times_each_answer() {
        let api = RuntimeApi::start(ARN, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(api.phase(), Phase::Initialising);
        let started = Instant::now();
        let client = tokio::spawn(fake_function(api.address(), Duration::from_millis(30)));
        let Phase::Polled(at) = api.ready().await else {
            panic!("not polled: {:?}", api.phase());
        };
        assert!(at >= started);
        // The poll waits for an event that is queued only now.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = api.invoke(r#"{"n":1}"#).answer().await.unwrap();
        assert_eq!(first.kind, AnswerKind::Response);
        assert_eq!(&first.body[..], br#"{"echo":{"n":1}}"#);
        assert!(first.served_at >= at + Duration::from_millis(50));
        let latency = first.latency();
        assert!(
            latency >= Duration::from_millis(30) && latency < Duration::from_secs(2),
            "{latency:?}"
        );
        let second = api.invoke(r#"{"n":2}"#).answer().await.unwrap();
        assert_eq!(
            second.kind,
            AnswerKind::Error {
                error_type: "Handler.Boom".into()
            }
        );
        assert!(second.served_at >= first.answered_at);
        // Two events answered, and the function is back on its third poll.
        tokio::time::timeout(Duration::from_secs(5), api.polled(3))
            .await
            .expect("third poll");
        assert_eq!(*api.shared.polls.borrow(), 3);
        // Queued before the poll arrives: served as soon as it does.
        let (a, b) = (api.invoke("3"), api.invoke("4"));
        assert_eq!(&a.answer().await.unwrap().body[..], br#"{"echo":3}"#);
        assert!(matches!(
            b.answer().await.unwrap().kind,
            AnswerKind::Error { .. }
        ));
        client.abort();
    }

    #[tokio::test]
    async fn unknown_request_ids_and_init_errors() {
        let api = RuntimeApi::start(ARN, Duration::from_secs(30))
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://{}/2018-06-01/runtime", api.address());
        let r = http
            .post(format!("{base}/invocation/nope/response"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST);
        let r = http
            .post(format!("{base}/init/error"))
            .body(r#"{"errorType":"Runtime.ConfigError","errorMessage":"EVENTS_QUEUE_URL is required"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        match api.ready().await {
            Phase::InitFailed { error_type, body } => {
                assert_eq!(error_type, "Runtime.ConfigError");
                assert!(body.contains("EVENTS_QUEUE_URL"));
            }
            other => panic!("{other:?}"),
        }
    }
}
