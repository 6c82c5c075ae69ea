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
use shared::retry::parse_retry_after;
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
    /// The invocation had no time left for another request (none was sent).
    #[error("no time left in the invocation for another ServiceNow request")]
    OutOfTime,
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
            ServiceNowError::Unauthorized(_) => FailureClass::Permanent,
            // A token problem is configuration or an outage, never the event's fault: keep it queued.
            ServiceNowError::Transport(_)
            | ServiceNowError::Decode(_)
            | ServiceNowError::Token(_)
            | ServiceNowError::OutOfTime => FailureClass::Transient,
        }
    }

    /// Whether a create that failed this way might still have created the incident.
    pub fn ambiguous(&self) -> bool {
        match self {
            ServiceNowError::Status { status, .. } => *status >= 500,
            ServiceNowError::Transport(_) | ServiceNowError::Decode(_) => true,
            ServiceNowError::Token(_)
            | ServiceNowError::OutOfTime
            | ServiceNowError::Unauthorized(_) => false,
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
}

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
        })
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
    pub async fn create_incident(
        &self,
        draft: &IncidentDraft,
    ) -> Result<IncidentRef, ServiceNowError> {
        let url = format!("{}/api/now/table/incident", self.base);
        let response = self
            .send(|h| {
                h.post(&url)
                    .query(&[
                        ("sysparm_exclude_reference_link", "true"),
                        ("sysparm_fields", "sys_id,number,correlation_id"),
                    ])
                    .json(draft)
            })
            .await?;
        let response = check(response)?;
        let one: One = response.json().await.map_err(decode)?;
        if one.result.sys_id.is_empty() {
            return Err(ServiceNowError::Decode(
                "created record has no sys_id".into(),
            ));
        }
        Ok(IncidentRef {
            sys_id: one.result.sys_id,
            number: one.result.number,
        })
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
            .send(|h| {
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
        let response = self.send(|h| h.get(&url).query(&query)).await?;
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
    /// ServiceNow silently ignores invalid query parts (the query can then match every record), so the
    /// returned record's `correlation_id` is compared with `key` before it is trusted.
    pub async fn find_by_correlation_id(
        &self,
        key: &str,
    ) -> Result<Option<IncidentRef>, ServiceNowError> {
        let url = format!("{}/api/now/table/incident", self.base);
        let query = [
            ("sysparm_query", format!("correlation_id={key}")),
            ("sysparm_fields", "sys_id,number,correlation_id".to_string()),
            ("sysparm_limit", "1".to_string()),
        ];
        let response = self.send(|h| h.get(&url).query(&query)).await?;
        // Table API v1 answers 404 for an empty result.
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let many: Many = check(response)?.json().await.map_err(decode)?;
        let found = many
            .result
            .into_iter()
            .find(|r| r.correlation_id.as_deref() == Some(key));
        Ok(found.map(|r| IncidentRef {
            sys_id: r.sys_id,
            number: r.number,
        }))
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
        let response = self.send(|h| h.get(&url).query(&query)).await?;
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
                .then(|| Duration::from_secs(reset.saturating_sub(now)))
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
}
