//! The data-action function served over loopback HTTP, on the harness's moto resources and ServiceNow
//! simulator (the same table and simulator as the writer, so both sides of a conversation meet).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use data_action::DataActions;
use shared::config::Env;

use crate::{Harness, Options, DATA_ACTION_PASSWORD, DATA_ACTION_USER, SN_PASSWORD, SN_USER};

pub struct DataActionOptions {
    pub harness: Options,
    pub deadline: Duration,
    /// `WRITER_SETTLE_SECONDS` for the data action.
    pub settle_secs: u64,
    /// `DATA_ACTION_AUTH`.
    pub auth: &'static str,
    /// Replaces the credentials secret's value before the function starts.
    pub secret: Option<Value>,
    pub extra_env: Vec<(&'static str, String)>,
}

impl Default for DataActionOptions {
    fn default() -> Self {
        Self {
            harness: Options::default(),
            deadline: Duration::from_secs(5),
            settle_secs: 2,
            auth: "basic",
            secret: None,
            extra_env: Vec::new(),
        }
    }
}

pub struct DataActionHarness {
    pub h: Harness,
    pub base_url: String,
    pub actions: Arc<DataActions>,
    pub http: reqwest::Client,
}

/// How a call authenticates.
#[derive(Clone)]
pub enum Auth {
    None,
    Basic(String, String),
    Header(&'static str, String),
    Bearer(String),
}

impl Auth {
    pub fn default_basic() -> Self {
        Auth::Basic(DATA_ACTION_USER.into(), DATA_ACTION_PASSWORD.into())
    }
}

/// One answer: status, JSON body, headers.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl DataActionHarness {
    pub async fn start() -> Self {
        Self::with(DataActionOptions::default()).await
    }

    pub async fn with(opts: DataActionOptions) -> Self {
        let h = Harness::with(opts.harness.clone()).await;
        if let Some(secret) = &opts.secret {
            put_secret(&h, &h.resources.data_action_secret_id, secret).await;
        }
        let actions = Arc::new(build(&h, &opts).await.expect("data-action starts"));
        let addr = local::http::spawn(
            ([127, 0, 0, 1], 0).into(),
            local::http::data_action_router(actions.clone()),
        )
        .await
        .expect("serve data-action");
        Self {
            h,
            base_url: format!("http://{addr}/data-actions"),
            actions,
            http: reqwest::Client::new(),
        }
    }

    /// `POST /data-actions/{action}` with the test's Basic credentials.
    pub async fn call(&self, action: &str, body: Value) -> Answer {
        self.call_as(action, &body.to_string(), &Auth::default_basic())
            .await
    }

    pub async fn call_as(&self, action: &str, body: &str, auth: &Auth) -> Answer {
        let mut req = self
            .http
            .post(format!("{}/{action}", self.base_url))
            .header("content-type", "application/json")
            .body(body.to_string());
        req = match auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::Header(name, v) => req.header(*name, v),
            Auth::Bearer(t) => req.bearer_auth(t),
        };
        let response = req.send().await.expect("data-action answers");
        answer(response).await
    }

    /// `POST /data-actions/oauth/token` with a form body.
    pub async fn token(&self, form: &str) -> Answer {
        let response = self
            .http
            .post(format!("{}/oauth/token", self.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_string())
            .send()
            .await
            .expect("token endpoint answers");
        answer(response).await
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    }
}

/// data-action as `build` makes it at cold start, configured against the harness.
pub async fn build(
    h: &Harness,
    opts: &DataActionOptions,
) -> Result<DataActions, shared::StartupError> {
    let mut pairs: Vec<(&str, String)> = vec![
        ("SERVICENOW_INSTANCE_URL", h.sim_url.clone()),
        ("SERVICENOW_USERNAME", SN_USER.into()),
        ("SERVICENOW_PASSWORD", SN_PASSWORD.into()),
        ("SERVICENOW_TIMEOUT_MS", "3000".into()),
        ("IDEMPOTENCY_TABLE", h.resources.table.clone()),
        (
            "DATA_ACTION_CREDENTIALS_SECRET_ID",
            h.resources.data_action_secret_id.clone(),
        ),
        ("DATA_ACTION_AUTH", opts.auth.into()),
        (
            "DATA_ACTION_DEADLINE_MS",
            opts.deadline.as_millis().to_string(),
        ),
        ("WRITER_SETTLE_SECONDS", opts.settle_secs.to_string()),
        // Re-read the credentials secret at every refusal (rotation tests).
        ("FORCED_REFRESH_INTERVAL_SECONDS", "0".into()),
    ];
    pairs.extend(opts.extra_env.iter().cloned());
    let config = data_action::Config::from_vars(&Env::from_pairs(pairs))?;
    data_action::build(config, &h.aws).await
}

pub async fn put_secret(h: &Harness, id: &str, value: &Value) {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    aws_sdk_secretsmanager::Client::new(&h.aws)
        .put_secret_value()
        .secret_id(id)
        .secret_string(text)
        .send()
        .await
        .expect("put secret on moto");
}

/// Seed 001's IVR body for a new call.
pub fn seed_001_body(call_id: &str) -> Value {
    let mut body = crate::fixture("seed-001-ivr-escalation.body.json");
    body["callId"] = json!(call_id);
    body
}

pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
