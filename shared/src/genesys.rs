//! Genesys Cloud Platform API requests with the function's OAuth token (feature `tokens`), shared by
//! legacy-ingest's targets and callback-api: a refused token is replaced and the
//! request sent once more; 408, 429 and 5xx (and no answer) are retryable, with `Retry-After` or
//! `inin-ratelimit-reset` as the hint; 404 and 409 are answers the targets act on; other 4xx are refusals.
//! Genesys' error bodies are never logged or returned (they echo the request).

use std::sync::Arc;
use std::time::Duration;

use reqwest::{header, Method};
use serde_json::Value;
use tracing::warn;

use crate::failure::FailureClass;
use crate::retry::{parse_retry_after, Retryable, RETRY_AFTER_CAP};
use crate::tokens::TokenSource;

pub struct GenesysApi {
    http: reqwest::Client,
    base: String,
    tokens: Arc<TokenSource>,
}

/// A 2xx, 404 or 409 answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn found(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Worth another attempt (and, past the deadline, a 503 for the caller). `ambiguous`: the request was
    /// sent and may have been applied (no answer, a 5xx).
    #[error("{reason}")]
    Retry {
        reason: String,
        hint: Option<Duration>,
        ambiguous: bool,
    },
    /// Genesys refused the request (a 4xx other than 401, 404, 408, 409, 429).
    #[error("Genesys refused the {what} (HTTP {status})")]
    Refused { status: u16, what: &'static str },
}

impl Retryable for ApiError {
    fn class(&self) -> FailureClass {
        match self {
            ApiError::Retry { .. } => FailureClass::Transient,
            ApiError::Refused { .. } => FailureClass::Permanent,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Retry { hint, .. } => *hint,
            ApiError::Refused { .. } => None,
        }
    }
    fn ambiguous(&self) -> bool {
        matches!(
            self,
            ApiError::Retry {
                ambiguous: true,
                ..
            }
        )
    }
    fn out_of_time(budget: Duration, started: bool) -> Self {
        let reason = match started {
            true => format!("no answer from Genesys within {} ms", budget.as_millis()),
            false => "no time left for another Genesys request".to_string(),
        };
        ApiError::Retry {
            reason,
            hint: None,
            ambiguous: started,
        }
    }
}

impl GenesysApi {
    pub fn new(http: reqwest::Client, api_base: &str, tokens: Arc<TokenSource>) -> Self {
        Self {
            http,
            base: api_base.trim_end_matches('/').to_string(),
            tokens,
        }
    }

    /// Sends `method path` (with `query` and a JSON `body`); `what` names the resource in errors.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        what: &'static str,
    ) -> Result<Answer, ApiError> {
        for attempt in 0..2 {
            let token = self.tokens.token().await.map_err(|e| {
                if e.class() == FailureClass::Permanent {
                    warn!(error = %e, "Genesys OAuth client refused; check the client credentials");
                }
                ApiError::Retry {
                    reason: format!("no Genesys access token: {e}"),
                    hint: None,
                    ambiguous: false,
                }
            })?;
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&token.value)
                .header(header::ACCEPT, "application/json")
                .query(query);
            if let Some(body) = body {
                req = req.json(body);
            }
            // Sent, perhaps applied, no answer.
            let response = req.send().await.map_err(|e| ApiError::Retry {
                reason: format!("request failed: {}", crate::http_client::describe(&e)),
                hint: None,
                ambiguous: true,
            })?;
            let status = response.status().as_u16();
            match status {
                401 if attempt == 0 => {
                    if let Err(e) = self.tokens.on_unauthorized(&token).await {
                        warn!(error = %e, "could not replace a refused Genesys token");
                    }
                }
                401 => {
                    return Err(ApiError::Retry {
                        reason: "Genesys refused a fresh access token".into(),
                        hint: None,
                        ambiguous: false,
                    })
                }
                200..=299 | 404 | 409 => {
                    let body = match status {
                        200..=299 => response.json().await.unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    return Ok(Answer { status, body });
                }
                408 | 429 | 500..=599 => {
                    return Err(ApiError::Retry {
                        reason: format!("Genesys answered HTTP {status}"),
                        hint: retry_hint(response.headers()),
                        ambiguous: status >= 500,
                    })
                }
                _ => return Err(ApiError::Refused { status, what }),
            }
        }
        Err(ApiError::Retry {
            reason: "Genesys refused the access token".into(),
            hint: None,
            ambiguous: false,
        })
    }
}

/// A value as one URL path segment (ids and keys; anything but unreserved characters percent-encoded).
pub fn segment(value: &str) -> String {
    crate::percent::encode(value, |b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        .into_owned()
}

/// `Retry-After` (seconds or HTTP date), else Genesys' `inin-ratelimit-reset` (seconds); at most
/// [`RETRY_AFTER_CAP`].
pub fn retry_hint(headers: &header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    get("retry-after")
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
        .or_else(|| {
            get("inin-ratelimit-reset")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(RETRY_AFTER_CAP))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_hints() {
        let mut h = header::HeaderMap::new();
        assert_eq!(retry_hint(&h), None);
        h.insert("inin-ratelimit-reset", "7".parse().unwrap());
        assert_eq!(retry_hint(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_hint(&h), Some(Duration::from_secs(2)));
        let mut huge = header::HeaderMap::new();
        huge.insert(
            "inin-ratelimit-reset",
            u64::MAX.to_string().parse().unwrap(),
        );
        assert_eq!(retry_hint(&huge), Some(RETRY_AFTER_CAP));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("ORD-1_a.b~"), "ORD-1_a.b~");
        assert_eq!(segment("+1 555/x"), "%2B1%20555%2Fx");
    }
}
