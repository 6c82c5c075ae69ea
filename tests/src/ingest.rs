//! legacy-ingest served over loopback HTTP against the Genesys simulator, with the dev keys.

use std::sync::Arc;
use std::time::Duration;

use legacy_ingest::auth::{self, Authenticator, Jwks, JwksSource, JwtPolicy};
use legacy_ingest::event::EventRules;
use legacy_ingest::genesys::Publisher;
use legacy_ingest::{Ingest, IngestConfig};
use local::dev_tokens::{DEV_AUDIENCE, DEV_ISSUER, JWKS_JSON, KEY_SET_JSON};
use local::genesys_sim::{GenesysSim, DEFAULT_INGEST_PATH};
use serde_json::Value;
use shared::oauth::ClientCredentials;
use shared::retry::{Retrier, RetryPolicy};
use shared::tokens::TokenSource;

pub const GENESYS_CLIENT_ID: &str = "ingest-client";
pub const GENESYS_CLIENT_SECRET: &str = "ingest-client-secret";

pub struct IngestOptions {
    /// Static PEM keys (the dev key set); JWKS only when false.
    pub static_keys: bool,
    pub jwks: bool,
    pub max_age: Option<Duration>,
    pub deadline: Duration,
    pub jwks_min_refresh: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            static_keys: true,
            jwks: false,
            max_age: None,
            deadline: Duration::from_secs(3),
            jwks_min_refresh: Duration::from_secs(300),
        }
    }
}

pub struct IngestHarness {
    pub genesys: GenesysSim,
    pub url: String,
    pub ingest: Arc<Ingest>,
    /// Requests served by the JWKS endpoint.
    pub jwks_hits: Arc<std::sync::atomic::AtomicUsize>,
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
        let jwks_hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hits = jwks_hits.clone();
        let jwks_router = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { JWKS_JSON }
            }),
        );
        let jwks_addr = local::http::spawn(([127, 0, 0, 1], 0).into(), jwks_router)
            .await
            .expect("jwks server");
        let http = legacy_ingest::http_client().expect("http client");
        let keys = if opts.static_keys {
            auth::keys_from_pem_set(KEY_SET_JSON).expect("dev key set")
        } else {
            Vec::new()
        };
        let jwks = opts.jwks.then(|| {
            Jwks::new(
                JwksSource::Url {
                    http: http.clone(),
                    url: format!("http://{jwks_addr}/.well-known/jwks.json"),
                },
                opts.jwks_min_refresh,
            )
        });
        if let Some(j) = &jwks {
            j.refresh()
                .await
                .expect("initial JWKS fetch, as at cold start");
        }
        let authenticator = Authenticator::new(
            JwtPolicy {
                issuers: vec![DEV_ISSUER.into()],
                audiences: vec![DEV_AUDIENCE.into()],
                leeway: Duration::from_secs(60),
                max_age: opts.max_age,
                algorithms: auth::parse_algorithms(&["ES256".into(), "RS256".into()])
                    .expect("algorithms"),
            },
            keys,
            jwks,
        );
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
            jwks_hits,
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
