//! ServiceNow Table API client: create and update incidents, read their work notes, find them by
//! `correlation_id`, resolve callers by phone.
//!
//! Error bodies from ServiceNow are never logged or returned: they can hold stack traces and schema details.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::{header, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use shared::failure::FailureClass;
use shared::ratelimit::{Announced, RateLimiter};
use shared::retry::{parse_retry_after, RETRY_AFTER_CAP};
use shared::tokens::{Rotating, TokenError, TokenSource};
use shared::IncidentDraft;

#[derive(Clone)]
pub enum ServiceNowAuth {
    /// Fixed Basic credentials (local runs, tests).
    Basic { username: String, password: String },
    /// Basic credentials read from their secret, re-read when ServiceNow answers 401.
    RotatingBasic(Arc<Rotating<BasicCredentials>>),
    /// Bearer tokens from the token store (refreshed by the token-refresher), with a direct-fetch fallback.
    OAuth(Arc<TokenSource>),
}

/// The integration user's Basic credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How requests are signed, credentials given directly or not.
enum Auth {
    Basic(Arc<Rotating<BasicCredentials>>),
    OAuth(Arc<TokenSource>),
}

#[derive(Clone)]
pub struct ServiceNowConfig {
    /// e.g. `https://example.service-now.com` (no trailing slash needed).
    pub instance_url: String,
    pub auth: ServiceNowAuth,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// A created or found incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRef {
    pub sys_id: String,
    pub number: String,
}

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub incident: IncidentRef,
    /// The incident existed already (an Import Set transform coalesced on `correlation_id`): nothing new.
    pub existed: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceNowError {
    /// ServiceNow answered with an error status; `retry_after` from `Retry-After` or `X-RateLimit-Reset`.
    #[error("ServiceNow answered HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No (complete) answer: timeout or connection failure. The request may have been processed.
    #[error("ServiceNow request failed: {0}")]
    Transport(String),
    /// 2xx with a body we could not read.
    #[error("ServiceNow answer could not be read: {0}")]
    Decode(String),
    /// No access token could be had (the request was not sent).
    #[error("no ServiceNow access token: {0}")]
    Token(String),
    /// ServiceNow's rate limit leaves this container no turn for this long (none was sent).
    #[error("waiting {0:?} for a turn under ServiceNow's rate limit")]
    RateLimited(Duration),
    /// The invocation had no time left for another request (none was sent).
    #[error("no time left in the invocation for another ServiceNow request")]
    OutOfTime,
    /// The Import Set transform did not produce an incident (`status` `error` or `skipped`, or no target).
    #[error("the import set transform did not produce an incident (status {0})")]
    ImportRejected(String),
    /// A lookup answered, but its answer cannot prove that nothing matches (a 404, which ServiceNow also gives
    /// when an ACL hides the record; or rows that do not match, proof that the query was ignored). Never
    /// read as "not found": creating on it could duplicate.
    #[error("ServiceNow lookup cannot be trusted: {0}")]
    Untrustworthy(&'static str),
    /// 401 that new credentials or a new token did not cure (or could not be tried again so soon): not
    /// about the token, e.g. the integration user lost a role or its password changed.
    #[error("ServiceNow answered HTTP 401: {0}")]
    Unauthorized(String),
}

impl ServiceNowError {
    pub fn class(&self) -> FailureClass {
        match self {
            ServiceNowError::Status { status, .. } => match status {
                408 | 429 => FailureClass::Transient,
                s if *s >= 500 => FailureClass::Transient,
                _ => FailureClass::Permanent,
            },
            ServiceNowError::ImportRejected(_) => FailureClass::Permanent,
            ServiceNowError::Unauthorized(_) => FailureClass::Permanent,
            // A token problem is configuration or an outage, never the event's fault: keep it queued.
            ServiceNowError::Transport(_)
            | ServiceNowError::Decode(_)
            | ServiceNowError::Token(_)
            | ServiceNowError::OutOfTime
            | ServiceNowError::RateLimited(_)
            // An ACL or schema problem someone can fix: kept queued, dead-lettered with this reason at the
            // last receive.
            | ServiceNowError::Untrustworthy(_) => FailureClass::Transient,
        }
    }

    /// Whether a create that failed this way might still have created the incident.
    pub fn ambiguous(&self) -> bool {
        match self {
            ServiceNowError::Status { status, .. } => *status >= 500,
            ServiceNowError::Transport(_) | ServiceNowError::Decode(_) => true,
            ServiceNowError::Token(_)
            | ServiceNowError::OutOfTime
            | ServiceNowError::RateLimited(_)
            | ServiceNowError::ImportRejected(_)
            | ServiceNowError::Untrustworthy(_)
            | ServiceNowError::Unauthorized(_) => false,
        }
    }

    /// The reason code a record carries when it fails this way.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceNowError::Status { status: 429, .. } | ServiceNowError::RateLimited(_) => {
                "servicenow_throttled"
            }
            ServiceNowError::Status { .. }
            | ServiceNowError::Transport(_)
            | ServiceNowError::Decode(_)
            | ServiceNowError::OutOfTime => "servicenow_unavailable",
            ServiceNowError::Token(_) => "servicenow_token_unavailable",
            ServiceNowError::ImportRejected(_) => "servicenow_rejected",
            ServiceNowError::Untrustworthy(_) => "servicenow_lookup_untrustworthy",
            ServiceNowError::Unauthorized(_) => "servicenow_unauthorized",
        }
    }

    /// The dead-letter reason for errors that have their own (else the caller's).
    pub fn dead_letter_reason(&self) -> Option<&'static str> {
        match self {
            ServiceNowError::Unauthorized(_) => Some("servicenow_unauthorized"),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ServiceNowError::Status { retry_after, .. } => *retry_after,
            ServiceNowError::RateLimited(wait) => Some(*wait),
            _ => None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            ServiceNowError::Status { status, .. } => Some(*status),
            ServiceNowError::Unauthorized(_) => Some(401),
            _ => None,
        }
    }
}

impl shared::retry::Retryable for ServiceNowError {
    fn class(&self) -> FailureClass {
        ServiceNowError::class(self)
    }
    fn retry_after(&self) -> Option<Duration> {
        ServiceNowError::retry_after(self)
    }
    fn ambiguous(&self) -> bool {
        ServiceNowError::ambiguous(self)
    }
    fn out_of_time(budget: Duration, started: bool) -> Self {
        match started {
            true => ServiceNowError::Transport(format!(
                "no answer within the invocation's remaining {} ms",
                budget.as_millis()
            )),
            false => ServiceNowError::OutOfTime,
        }
    }
}

/// What `incident_state` reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IncidentState {
    /// The journal as displayed: every work note, newest first.
    pub work_notes: String,
    pub impact: Option<u8>,
    pub urgency: Option<u8>,
}

#[derive(Deserialize)]
struct One {
    result: Record,
}

#[derive(Deserialize)]
struct Many {
    result: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    sys_id: String,
    #[serde(default)]
    number: String,
    #[serde(default)]
    correlation_id: Option<String>,
}

const CALLER_CACHE_MAX: usize = 10_000;

pub struct ServiceNowClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    /// E.164 → sys_user sys_id (or None when no user has that number), for the life of the container.
    callers: Mutex<HashMap<String, Option<String>>>,
    /// The container's share of ServiceNow's rate limit, for every concurrent request; `None`: off.
    limiter: Option<RateLimiter>,
    /// Creates go through this Import Set staging table (its transform map coalescing on `correlation_id`).
    import_set_table: Option<String>,
}

/// The longest a request waits for its turn under the rate limit; a longer wait is the caller's to take.
const RATE_LIMIT_MAX_WAIT: Duration = Duration::from_secs(5);

impl ServiceNowClient {
    pub fn new(config: &ServiceNowConfig) -> Result<Self, reqwest::Error> {
        let http = shared::http_client::client(
            "servicenow-writer",
            shared::http_client::Timeouts::new(config.connect_timeout, config.request_timeout),
        )?;
        Ok(Self {
            http,
            base: config.instance_url.trim_end_matches('/').to_string(),
            auth: match &config.auth {
                ServiceNowAuth::Basic { username, password } => Auth::Basic(Arc::new(
                    BasicCredentials {
                        username: username.clone(),
                        password: password.clone(),
                    }
                    .into(),
                )),
                ServiceNowAuth::RotatingBasic(c) => Auth::Basic(c.clone()),
                ServiceNowAuth::OAuth(t) => Auth::OAuth(t.clone()),
            },
            callers: Mutex::new(HashMap::new()),
            limiter: Some(RateLimiter::new(RATE_LIMIT_MAX_WAIT, 1)),
            import_set_table: None,
        })
    }

    /// Creates through the Import Set API and the staging table `table` (see README: a transform map onto
    /// `incident` coalescing on `correlation_id` makes a repeated create find the first one, in ServiceNow).
    pub fn with_import_set(mut self, table: Option<String>) -> Self {
        self.import_set_table = table;
        self
    }

    /// The rate limiter paces to `1 / containers` of the announced limit (the function's maximum concurrency:
    /// each container has its own).
    pub fn with_rate_limit_share(mut self, containers: u32) -> Self {
        if self.limiter.is_some() {
            self.limiter = Some(RateLimiter::new(RATE_LIMIT_MAX_WAIT, containers));
        }
        self
    }

    /// Without the shared rate limiter: every request goes at once and honours 429s alone (for comparison
    /// in load runs).
    pub fn without_rate_limiter(mut self) -> Self {
        self.limiter = None;
        self
    }

    /// [`Self::send`] in turn under the rate limit, which learns from each answer.
    async fn limited(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ServiceNowError> {
        let started = std::time::Instant::now();
        let result = self.limited_inner(build).await;
        let throttled = matches!(&result, Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS);
        shared::metrics::values(
            ("Service", "ServiceNow"),
            &[
                (
                    "ServiceNowLatency",
                    started.elapsed().as_millis() as u64,
                    "Milliseconds",
                ),
                ("ServiceNowThrottled", u64::from(throttled), "Count"),
            ],
        );
        result
    }

    async fn limited_inner(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ServiceNowError> {
        let Some(limiter) = &self.limiter else {
            return self.send(build).await;
        };
        limiter
            .acquire()
            .await
            .map_err(ServiceNowError::RateLimited)?;
        let response = self.send(build).await?;
        limiter.observe(announced(&response));
        Ok(response)
    }

    /// Sends the request `build` makes, authenticated. A 401 gets one more try (it means the request was not
    /// processed, so repeating it is safe) with Basic credentials re-read from their secret or a new token,
    /// each at most once per interval per container; a 401 they do not cure is `Unauthorized` (permanent).
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ServiceNowError> {
        let request = |h: &reqwest::Client| build(h).header(header::ACCEPT, "application/json");
        match &self.auth {
            Auth::Basic(creds) => {
                let basic = |c: &BasicCredentials| {
                    request(&self.http).basic_auth(&c.username, Some(&c.password))
                };
                let used = creds.current();
                let response = basic(&used).send().await.map_err(transport)?;
                if response.status() != StatusCode::UNAUTHORIZED {
                    return Ok(response);
                }
                let Some(new) = creds.replacement(&used).await else {
                    return Err(ServiceNowError::Unauthorized(
                        "the Basic credentials were refused and their secret holds no others"
                            .into(),
                    ));
                };
                let response = basic(&new).send().await.map_err(transport)?;
                refused_again(
                    response,
                    "the Basic credentials re-read from their secret were refused too",
                )
            }
            Auth::OAuth(tokens) => {
                let token = tokens
                    .token()
                    .await
                    .map_err(|e| ServiceNowError::Token(e.to_string()))?;
                let response = request(&self.http)
                    .bearer_auth(&token.value)
                    .send()
                    .await
                    .map_err(transport)?;
                if response.status() != StatusCode::UNAUTHORIZED {
                    return Ok(response);
                }
                let fresh = tokens.on_unauthorized(&token).await.map_err(|e| match e {
                    TokenError::RefreshLimited { .. } => {
                        ServiceNowError::Unauthorized(e.to_string())
                    }
                    _ => ServiceNowError::Token(e.to_string()),
                })?;
                let response = request(&self.http)
                    .bearer_auth(&fresh.value)
                    .send()
                    .await
                    .map_err(transport)?;
                refused_again(response, "a freshly obtained token was refused too: not about the token (check the integration user and its roles)")
            }
        }
    }

    /// `POST /api/now/table/incident`.
    pub async fn create_incident(&self, draft: &IncidentDraft) -> Result<Created, ServiceNowError> {
        if let Some(table) = &self.import_set_table {
            return self.import_incident(table, draft).await;
        }
        let url = format!("{}/api/now/table/incident", self.base);
        let response = self
            .limited(|h| {
                h.post(&url)
                    .query(&[
                        ("sysparm_exclude_reference_link", "true"),
                        ("sysparm_fields", "sys_id,number,correlation_id"),
                    ])
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(draft.to_json())
            })
            .await?;
        let response = check(response)?;
        let one: One = response.json().await.map_err(decode)?;
        if one.result.sys_id.is_empty() {
            return Err(ServiceNowError::Decode(
                "created record has no sys_id".into(),
            ));
        }
        Ok(Created {
            incident: IncidentRef {
                sys_id: one.result.sys_id,
                number: one.result.number,
            },
            existed: false,
        })
    }

    /// `POST /api/now/import/{table}`: one staging row, columns `u_<field>`; the transform runs at once and
    /// answers the incident it inserted, or the one it coalesced onto.
    async fn import_incident(
        &self,
        table: &str,
        draft: &IncidentDraft,
    ) -> Result<Created, ServiceNowError> {
        let url = format!("{}/api/now/import/{}", self.base, path_segment(table));
        let fields = serde_json::to_value(draft).unwrap_or_default();
        let row: serde_json::Map<String, Value> = fields
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (format!("u_{k}"), v.clone()))
            .collect();
        let response = self.limited(|h| h.post(&url).json(&row)).await?;
        let body: Value = check(response)?.json().await.map_err(decode)?;
        let target = body["result"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["table"] == "incident"));
        let Some(target) = target else {
            return Err(ServiceNowError::Decode(
                "the import set answer names no incident".into(),
            ));
        };
        let text = |name: &str| target[name].as_str().unwrap_or_default().to_string();
        let status = text("status");
        let existed = match status.as_str() {
            "inserted" => false,
            "updated" | "ignored" => true,
            _ => return Err(ServiceNowError::ImportRejected(status)),
        };
        let (sys_id, number) = (text("sys_id"), text("display_value"));
        if !sys_id.is_empty() {
            return Ok(Created {
                incident: IncidentRef { sys_id, number },
                existed,
            });
        }
        // An ignored row may name no target: the incident it coalesced onto is found by its key.
        match existed {
            true => match self.find_by_correlation_id(&draft.correlation_id).await? {
                Some(incident) => Ok(Created { incident, existed }),
                None => Err(ServiceNowError::ImportRejected(status)),
            },
            false => Err(ServiceNowError::ImportRejected(format!(
                "{status}, without a target sys_id"
            ))),
        }
    }

    /// `PATCH /api/now/table/incident/{sys_id}` with `fields` (e.g. `work_notes`, raised levels). A 404 is
    /// `Status { status: 404 }`: the incident is gone (or hidden by an ACL).
    pub async fn update_incident(
        &self,
        sys_id: &str,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<IncidentRef, ServiceNowError> {
        let url = format!(
            "{}/api/now/table/incident/{}",
            self.base,
            path_segment(sys_id)
        );
        let response = self
            .limited(|h| {
                h.patch(&url)
                    .query(&[
                        ("sysparm_exclude_reference_link", "true"),
                        ("sysparm_fields", "sys_id,number"),
                    ])
                    .json(fields)
            })
            .await?;
        let one: One = check(response)?.json().await.map_err(decode)?;
        Ok(IncidentRef {
            sys_id: one.result.sys_id,
            number: one.result.number,
        })
    }

    /// The incident's work notes as ServiceNow displays its journal, and its current impact and urgency;
    /// `None` when ServiceNow answers 404 (deleted, or hidden by an ACL).
    pub async fn incident_state(
        &self,
        sys_id: &str,
    ) -> Result<Option<IncidentState>, ServiceNowError> {
        let url = format!(
            "{}/api/now/table/incident/{}",
            self.base,
            path_segment(sys_id)
        );
        let query = [
            ("sysparm_fields", "work_notes,impact,urgency"),
            // Journal fields have a value only as display values; `all` gives both forms per field.
            ("sysparm_display_value", "all"),
        ];
        let response = self.limited(|h| h.get(&url).query(&query)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = check(response)?.json().await.map_err(decode)?;
        let field = |name: &str, prefer: &str| -> Option<String> {
            match &body["result"][name] {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get(prefer).and_then(Value::as_str).map(str::to_string),
                _ => None,
            }
        };
        let level = |name: &str| field(name, "value").and_then(|v| v.trim().parse::<u8>().ok());
        Ok(Some(IncidentState {
            work_notes: field("work_notes", "display_value").unwrap_or_default(),
            impact: level("impact"),
            urgency: level("urgency"),
        }))
    }

    /// The incident whose `correlation_id` is exactly `key`, if any.
    ///
    /// Asked of Table API v2, whose "no match" is `200` with `[]`; that is the only answer read as "none".
    /// A 404 (v1's empty result, but also "ACL restricts the record retrieval") and rows whose
    /// `correlation_id` is not `key` (ServiceNow silently ignores a query part it cannot use, and the query then
    /// matches everything) are [`ServiceNowError::Untrustworthy`].
    pub async fn find_by_correlation_id(
        &self,
        key: &str,
    ) -> Result<Option<IncidentRef>, ServiceNowError> {
        let url = format!("{}/api/now/v2/table/incident", self.base);
        let query = [
            ("sysparm_query", format!("correlation_id={key}")),
            ("sysparm_fields", "sys_id,number,correlation_id".to_string()),
            ("sysparm_limit", "1".to_string()),
        ];
        let response = self.limited(|h| h.get(&url).query(&query)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ServiceNowError::Untrustworthy(
                "the lookup by correlation_id answered 404 (no record, or an ACL hides it)",
            ));
        }
        let many: Many = check(response)?.json().await.map_err(decode)?;
        let Some(first) = many.result.into_iter().next() else {
            return Ok(None);
        };
        if first.correlation_id.as_deref() != Some(key) {
            return Err(ServiceNowError::Untrustworthy(
                "the lookup by correlation_id returned another record: ServiceNow ignored the query \
                 (correlation_id not readable or not queryable by the integration user)",
            ));
        }
        Ok(Some(IncidentRef {
            sys_id: first.sys_id,
            number: first.number,
        }))
    }

    /// Checks at cold start that a lookup by `correlation_id` can be trusted: a key nothing has must answer
    /// `200` with no rows. Any other answer is why reconciling (and so creating after an unanswered attempt)
    /// would fail.
    pub async fn probe_lookup(&self) -> Result<(), ServiceNowError> {
        let probe = format!("gc-probe-{}", uuid::Uuid::new_v4().simple());
        match self.find_by_correlation_id(&probe).await? {
            None => Ok(()),
            Some(_) => Err(ServiceNowError::Untrustworthy(
                "a lookup for a correlation_id nothing has returned a record",
            )),
        }
    }

    /// The `sys_user` whose phone or mobile phone is `e164`, cached for the container's life.
    pub async fn find_caller(&self, e164: &str) -> Result<Option<String>, ServiceNowError> {
        if let Some(hit) = self.callers.lock().ok().and_then(|c| c.get(e164).cloned()) {
            return Ok(hit);
        }
        let url = format!("{}/api/now/table/sys_user", self.base);
        let query = [
            (
                "sysparm_query",
                format!("phone={e164}^ORmobile_phone={e164}"),
            ),
            ("sysparm_fields", "sys_id,phone,mobile_phone".to_string()),
            ("sysparm_limit", "1".to_string()),
        ];
        let response = self.limited(|h| h.get(&url).query(&query)).await?;
        let sys_id = if response.status() == StatusCode::NOT_FOUND {
            None
        } else {
            let body: Value = check(response)?.json().await.map_err(decode)?;
            // Same trap as above: only trust a user whose number really matches.
            body["result"].as_array().and_then(|users| {
                users
                    .iter()
                    .find(|u| {
                        [&u["phone"], &u["mobile_phone"]].iter().any(|p| {
                            p.as_str()
                                .and_then(shared::redact::normalise_e164)
                                .as_deref()
                                == Some(e164)
                        })
                    })
                    .and_then(|u| u["sys_id"].as_str())
                    .map(str::to_string)
            })
        };
        if let Ok(mut c) = self.callers.lock() {
            if c.len() >= CALLER_CACHE_MAX {
                c.clear();
            }
            c.insert(e164.to_string(), sys_id.clone());
        }
        Ok(sys_id)
    }
}

/// How an incident is looked up for a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentBy<'a> {
    /// The conversation's key ([`shared::keys::conversation_key`]).
    CorrelationId(&'a str),
    Number(&'a str),
}

/// What a flow may read back about an incident (no caller details).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IncidentSummary {
    pub sys_id: String,
    pub number: String,
    /// `state`'s value (e.g. `1`) and its label as the instance displays it (e.g. `New`).
    pub state: String,
    pub state_label: String,
    pub short_description: String,
    /// The assignee's display name; empty when unassigned.
    pub assigned_to: String,
    /// `sys_created_on`, as the instance displays it.
    pub opened_at: String,
}

/// The `sys_user` a phone number belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerProfile {
    pub sys_id: String,
    pub name: String,
    pub vip: bool,
}

impl ServiceNowClient {
    /// One incident's summary, by `correlation_id` or number (Table API v2: `200 []` is the only "none").
    pub async fn incident_summary(
        &self,
        by: IncidentBy<'_>,
    ) -> Result<Option<IncidentSummary>, ServiceNowError> {
        let (field, wanted) = match by {
            IncidentBy::CorrelationId(key) => ("correlation_id", key),
            IncidentBy::Number(number) => ("number", number),
        };
        if !query_safe(wanted) {
            return Ok(None);
        }
        let url = format!("{}/api/now/v2/table/incident", self.base);
        let query = [
            ("sysparm_query", format!("{field}={wanted}")),
            (
                "sysparm_fields",
                "sys_id,number,correlation_id,state,short_description,assigned_to,sys_created_on"
                    .to_string(),
            ),
            ("sysparm_display_value", "all".to_string()),
            ("sysparm_exclude_reference_link", "true".to_string()),
            ("sysparm_limit", "1".to_string()),
        ];
        let response = self.limited(|h| h.get(&url).query(&query)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ServiceNowError::Untrustworthy(
                "the incident lookup answered 404 (no record, or an ACL hides it)",
            ));
        }
        let body: Value = check(response)?.json().await.map_err(decode)?;
        let Some(row) = body["result"].as_array().and_then(|rows| rows.first()) else {
            return Ok(None);
        };
        let value = |name: &str| display_field(row, name, "value");
        let display = |name: &str| display_field(row, name, "display_value");
        if value(field) != wanted {
            return Err(ServiceNowError::Untrustworthy(
                "the incident lookup returned another record: ServiceNow ignored the query",
            ));
        }
        Ok(Some(IncidentSummary {
            sys_id: value("sys_id"),
            number: value("number"),
            state: value("state"),
            state_label: display("state"),
            short_description: display("short_description"),
            assigned_to: display("assigned_to"),
            opened_at: display("sys_created_on"),
        }))
    }

    /// The `sys_user` whose phone or mobile phone is `e164`, with its name and VIP flag (not cached here).
    pub async fn caller_profile(
        &self,
        e164: &str,
    ) -> Result<Option<CallerProfile>, ServiceNowError> {
        if !query_safe(e164) {
            return Ok(None);
        }
        let url = format!("{}/api/now/v2/table/sys_user", self.base);
        let query = [
            (
                "sysparm_query",
                format!("phone={e164}^ORmobile_phone={e164}"),
            ),
            (
                "sysparm_fields",
                "sys_id,name,vip,phone,mobile_phone".to_string(),
            ),
            ("sysparm_limit", "5".to_string()),
        ];
        let response = self.limited(|h| h.get(&url).query(&query)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ServiceNowError::Untrustworthy(
                "the caller lookup answered 404 (an ACL hides sys_user)",
            ));
        }
        let body: Value = check(response)?.json().await.map_err(decode)?;
        let Some(users) = body["result"].as_array() else {
            return Err(ServiceNowError::Decode(
                "the answer has no result list".into(),
            ));
        };
        // Only a user whose number really matches (an ignored query returns everyone).
        let user = users.iter().find(|u| {
            [&u["phone"], &u["mobile_phone"]].iter().any(|p| {
                p.as_str()
                    .and_then(shared::redact::normalise_e164)
                    .as_deref()
                    == Some(e164)
            })
        });
        let text = |u: &Value, name: &str| u[name].as_str().unwrap_or_default().to_string();
        Ok(user.map(|u| CallerProfile {
            sys_id: text(u, "sys_id"),
            name: text(u, "name"),
            vip: matches!(u["vip"].as_str(), Some("true" | "1")) || u["vip"] == Value::Bool(true),
        }))
    }

    /// How many active incidents the user `caller_sys_id` is the caller of (`X-Total-Count`).
    pub async fn open_incident_count(&self, caller_sys_id: &str) -> Result<u64, ServiceNowError> {
        if !query_safe(caller_sys_id) {
            return Ok(0);
        }
        let url = format!("{}/api/now/v2/table/incident", self.base);
        let query = [
            (
                "sysparm_query",
                format!("caller_id={caller_sys_id}^active=true"),
            ),
            ("sysparm_fields", "sys_id,caller_id,active".to_string()),
            ("sysparm_exclude_reference_link", "true".to_string()),
            ("sysparm_limit", "1".to_string()),
        ];
        let response = self.limited(|h| h.get(&url).query(&query)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(ServiceNowError::Untrustworthy(
                "the open incident count answered 404 (an ACL hides incident)",
            ));
        }
        let response = check(response)?;
        let total = response
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body: Value = response.json().await.map_err(decode)?;
        let rows = body["result"].as_array().cloned().unwrap_or_default();
        if let Some(row) = rows.first() {
            if row["caller_id"].as_str() != Some(caller_sys_id)
                || row["active"].as_str() != Some("true")
            {
                return Err(ServiceNowError::Untrustworthy(
                    "the open incident count returned another record: ServiceNow ignored the query",
                ));
            }
        }
        Ok(total.unwrap_or(rows.len() as u64))
    }
}

/// A value that cannot change an encoded query's meaning (no `^` separators, no operators).
fn query_safe(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '.'))
}

/// A field of a `sysparm_display_value=all` row: `{display_value, value}`, or a plain string.
fn display_field(row: &Value, name: &str, prefer: &str) -> String {
    match &row[name] {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get(prefer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

/// A sys_id as one URL path segment (sys_ids are hex; anything else is percent-encoded).
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A 2xx whose body could not be read or parsed: only the kind of error, never the URL (it can hold a
/// caller's phone number) nor the body's text.
fn decode(e: reqwest::Error) -> ServiceNowError {
    let kind = if e.is_timeout() {
        "timeout while reading the answer"
    } else if e.is_decode() {
        "the answer is not the expected JSON"
    } else {
        "the answer could not be read"
    };
    ServiceNowError::Decode(format!("{kind} ({})", shared::http_client::describe(&e)))
}

fn transport(e: reqwest::Error) -> ServiceNowError {
    ServiceNowError::Transport(shared::http_client::describe(&e))
}

/// The answer to a request repeated after a 401: a second 401 is `Unauthorized` with `why`.
fn refused_again(
    response: reqwest::Response,
    why: &str,
) -> Result<reqwest::Response, ServiceNowError> {
    if response.status() == StatusCode::UNAUTHORIZED {
        return Err(ServiceNowError::Unauthorized(why.into()));
    }
    Ok(response)
}

/// What an answer says about ServiceNow's rate limit.
fn announced(response: &reqwest::Response) -> Announced {
    let headers = response.headers();
    let number =
        |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    Announced {
        throttled: response.status() == StatusCode::TOO_MANY_REQUESTS,
        retry_after: headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now())),
        limit: number("x-ratelimit-limit").and_then(|l| u32::try_from(l).ok()),
        reset_unix: number("x-ratelimit-reset"),
    }
}

/// Maps an error status to `ServiceNowError` without reading the body.
fn check(response: reqwest::Response) -> Result<reqwest::Response, ServiceNowError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers();
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
        .or_else(|| {
            // X-RateLimit-Reset is a Unix time.
            let reset: u64 = headers
                .get("x-ratelimit-reset")?
                .to_str()
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let now = shared::clock::epoch_secs();
            (status == StatusCode::TOO_MANY_REQUESTS)
                .then(|| Duration::from_secs(reset.saturating_sub(now)).min(RETRY_AFTER_CAP))
        });
    Err(ServiceNowError::Status {
        status: status.as_u16(),
        retry_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let s = |status| ServiceNowError::Status {
            status,
            retry_after: None,
        };
        assert_eq!(s(429).class(), FailureClass::Transient);
        assert_eq!(s(408).class(), FailureClass::Transient);
        assert_eq!(s(503).class(), FailureClass::Transient);
        assert_eq!(s(400).class(), FailureClass::Permanent);
        assert_eq!(s(401).class(), FailureClass::Permanent);
        let u = ServiceNowError::Unauthorized("role removed".into());
        assert_eq!(u.class(), FailureClass::Permanent);
        assert_eq!(u.dead_letter_reason(), Some("servicenow_unauthorized"));
        assert_eq!(u.http_status(), Some(401));
        assert!(!u.ambiguous());
        assert_eq!(s(404).class(), FailureClass::Permanent);
        assert!(!s(429).ambiguous());
        assert!(s(500).ambiguous());
        assert!(ServiceNowError::Transport("x".into()).ambiguous());
        assert_eq!(
            ServiceNowError::Transport("x".into()).class(),
            FailureClass::Transient
        );
    }

    #[test]
    fn a_429s_reset_is_read_as_at_most_a_day() {
        let answer = |reset: u64| {
            let response = http::Response::builder()
                .status(429)
                .header("x-ratelimit-reset", reset.to_string())
                .body(Vec::<u8>::new())
                .unwrap();
            match check(reqwest::Response::from(response)) {
                Err(ServiceNowError::Status { retry_after, .. }) => retry_after,
                other => panic!("a 429 is a status error: {other:?}"),
            }
        };
        let now = shared::clock::epoch_secs();
        let in_a_minute = answer(now + 60).unwrap();
        assert!(in_a_minute <= Duration::from_secs(60) && in_a_minute >= Duration::from_secs(58));
        assert_eq!(answer(u64::MAX), Some(RETRY_AFTER_CAP));
    }
}
