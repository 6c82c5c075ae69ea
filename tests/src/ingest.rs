//! legacy-ingest served over loopback HTTP against the Genesys simulator, with the dev keys and a JWKS
//! endpoint whose answer a test can change.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use legacy_ingest::auth::{Jwks, JwksSource, JwksTiming};
use legacy_ingest::event::EventRules;
use legacy_ingest::genesys::Publisher;
use legacy_ingest::{Config, Ingest, IngestConfig, KeysFrom};
use local::dev_tokens::{DEV_AUDIENCE, DEV_ISSUER, JWKS_JSON, KEY_SET_JSON};
use local::genesys_sim::{GenesysSim, DEFAULT_INGEST_PATH};
use serde_json::Value;
use shared::config::Env;
use shared::oauth::ClientCredentials;
use shared::retry::{Retrier, RetryPolicy};
use shared::tokens::TokenSource;

pub const GENESYS_CLIENT_ID: &str = "ingest-client";
pub const GENESYS_CLIENT_SECRET: &str = "ingest-client-secret";

pub struct IngestOptions {
    /// Static PEM keys (the dev key set); JWKS only when false.
    pub static_keys: bool,
    pub jwks: bool,
    /// legacy-ingest settings over the harness's (`JWT_ISSUERS` = the billing issuer, the dev audience, the
    /// dev key set, the JWKS URL), read by `Config::from_vars` like the function does.
    pub env: Vec<(&'static str, String)>,
    pub deadline: Duration,
    /// JWKS timing instead of the configured one (sub-second intervals for tests).
    pub jwks_timing: Option<JwksTiming>,
    /// What the JWKS endpoint answers from the start (cold-start fetch included).
    pub jwks_reply: JwksReply,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            static_keys: true,
            jwks: false,
            env: Vec::new(),
            deadline: Duration::from_secs(3),
            jwks_timing: None,
            jwks_reply: JwksReply::Document(JWKS_JSON.into()),
        }
    }
}

/// What the test JWKS endpoint answers.
#[derive(Debug, Clone)]
pub enum JwksReply {
    Document(String),
    /// The document in 1 KiB chunks without `Content-Length`.
    Chunked(String),
    Status(u16),
    /// 302 to another path on the same server that serves the dev JWKS.
    Redirect,
}

/// A JWKS endpoint on loopback.
#[derive(Clone)]
pub struct JwksEndpoint {
    pub url: String,
    reply: Arc<Mutex<JwksReply>>,
    hits: Arc<AtomicUsize>,
}

impl JwksEndpoint {
    pub async fn start(reply: JwksReply) -> Self {
        let reply = Arc::new(Mutex::new(reply));
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (reply.clone(), hits.clone());
        let router = axum::Router::new()
            .route(
                "/.well-known/jwks.json",
                axum::routing::get(move || {
                    h.fetch_add(1, Ordering::SeqCst);
                    let current = r.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    async move { answer(current) }
                }),
            )
            .route(
                "/moved/jwks.json",
                axum::routing::get(|| async { JWKS_JSON }),
            );
        let addr = local::http::spawn(([127, 0, 0, 1], 0).into(), router)
            .await
            .expect("jwks server");
        Self {
            url: format!("http://{addr}/.well-known/jwks.json"),
            reply,
            hits,
        }
    }

    pub fn set(&self, reply: JwksReply) {
        *self.reply.lock().unwrap_or_else(|e| e.into_inner()) = reply;
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn answer(reply: JwksReply) -> Response {
    match reply {
        JwksReply::Document(doc) => ([("content-type", "application/json")], doc).into_response(),
        JwksReply::Chunked(doc) => {
            let chunks: Vec<Result<Vec<u8>, std::convert::Infallible>> = doc
                .into_bytes()
                .chunks(1024)
                .map(|c| Ok(c.to_vec()))
                .collect();
            axum::body::Body::from_stream(futures::stream::iter(chunks)).into_response()
        }
        JwksReply::Status(s) => http::StatusCode::from_u16(s)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        JwksReply::Redirect => {
            (http::StatusCode::FOUND, [("location", "/moved/jwks.json")]).into_response()
        }
    }
}

pub struct IngestHarness {
    pub genesys: GenesysSim,
    pub url: String,
    pub ingest: Arc<Ingest>,
    pub jwks: JwksEndpoint,
}

impl IngestHarness {
    pub async fn start(opts: IngestOptions) -> Self {
        let genesys = GenesysSim::new(GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET);
        let genesys_url = format!(
            "http://{}",
            genesys
                .spawn(([127, 0, 0, 1], 0).into())
                .await
                .expect("genesys sim")
        );
        let jwks_endpoint = JwksEndpoint::start(opts.jwks_reply.clone()).await;
        let mut base = vec![
            ("JWT_ISSUERS", DEV_ISSUER.to_string()),
            ("JWT_AUDIENCES", DEV_AUDIENCE.to_string()),
            ("GENESYS_CLIENT_ID", GENESYS_CLIENT_ID.to_string()),
            ("GENESYS_CLIENT_SECRET", GENESYS_CLIENT_SECRET.to_string()),
            // This harness publishes to the custom ingestion endpoint (tests/tests/ingest_targets.rs: the others).
            ("INGEST_TARGET", "custom-endpoint".to_string()),
        ];
        if opts.static_keys {
            base.push(("JWT_KEYS_JSON", KEY_SET_JSON.to_string()));
        }
        if opts.jwks {
            base.push(("JWT_JWKS_URL", jwks_endpoint.url.clone()));
        }
        let config = Config::from_vars(&Env::from_pairs(base).with(opts.env))
            .expect("legacy-ingest configuration");
        let key_set = match &config.keys {
            KeysFrom::Json(json) => Some(json.as_str()),
            _ => None,
        };
        let jwks = config.jwks.clone().map(|c| {
            Jwks::new(
                JwksSource::Url {
                    http: legacy_ingest::jwks_http_client().expect("jwks client"),
                    url: jwks_endpoint.url.clone(),
                },
                c.binding,
                opts.jwks_timing.unwrap_or(c.timing),
            )
        });
        let authenticator = legacy_ingest::authenticator(config.jwt.clone(), key_set, jwks)
            .await
            .expect("authenticator, as at cold start");
        let http = legacy_ingest::http_client().expect("http client");
        let tokens = Arc::new(TokenSource::new(
            "genesys",
            http.clone(),
            ClientCredentials::basic(
                format!("{genesys_url}/oauth/token"),
                GENESYS_CLIENT_ID,
                GENESYS_CLIENT_SECRET,
            ),
            None,
            Duration::from_secs(60),
        ));
        let publisher = Publisher::new(
            http,
            &genesys_url,
            DEFAULT_INGEST_PATH,
            tokens,
            Retrier {
                policy: RetryPolicy {
                    max_attempts: 5,
                    base_delay: Duration::from_millis(50),
                    max_delay: Duration::from_millis(500),
                    max_retry_after: Duration::from_secs(2),
                },
                reserve: Duration::from_millis(50),
                attempt_timeout: Duration::from_secs(5),
                min_attempt: Duration::from_millis(100),
            },
        );
        let ingest = Arc::new(Ingest::new(
            IngestConfig {
                max_body_bytes: 16 * 1024,
                rules: EventRules {
                    allowed_event_types: vec!["payment.*".into(), "refund.*".into()],
                },
                source_name: None,
                source_version: "1".into(),
                deadline: opts.deadline,
            },
            authenticator,
            publisher,
        ));
        let addr = local::http::spawn(
            ([127, 0, 0, 1], 0).into(),
            local::http::ingest_router(ingest.clone()),
        )
        .await
        .expect("serve ingest");
        Self {
            genesys,
            url: format!("http://{addr}/ingest"),
            ingest,
            jwks: jwks_endpoint,
        }
    }

    /// POSTs `body` with `Authorization: <authorization>`; returns status, `Retry-After` and JSON body.
    pub async fn post(
        &self,
        authorization: Option<&str>,
        body: &str,
    ) -> (u16, Option<String>, Value) {
        let mut req = reqwest::Client::new()
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.expect("ingest reachable");
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (
            status,
            retry_after,
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    pub async fn post_with_token(&self, token: &str, body: &Value) -> (u16, Option<String>, Value) {
        self.post(Some(&format!("Bearer {token}")), &body.to_string())
            .await
    }
}
