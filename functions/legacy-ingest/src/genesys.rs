//! Publishing to Genesys Cloud with a deterministic `Idempotency-Key`, bounded retries and a deadline.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header;
use serde_json::Value;
use tracing::{info, warn};

use shared::failure::FailureClass;
use shared::retry::{parse_retry_after, Deadline, RetryPolicy};
use shared::tokens::TokenSource;

pub struct Publisher {
    http: reqwest::Client,
    url: String,
    tokens: Arc<TokenSource>,
    retry: RetryPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub status: u16,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Genesys refused the event (4xx other than 401/408/429): retrying the same request cannot help.
    #[error("Genesys rejected the event (HTTP {status})")]
    Rejected { status: u16 },
    /// Not accepted within the deadline, or Genesys / its login is unavailable: the caller should retry.
    #[error("Genesys unavailable: {reason}")]
    Unavailable {
        retry_after: Duration,
        reason: String,
    },
}

enum Attempt {
    Done(u16),
    Rejected(u16),
    Retry {
        reason: String,
        hint: Option<Duration>,
    },
    /// 401: the token was refused; fetch a new one and try again at once.
    Unauthorized,
}

impl Publisher {
    pub fn new(
        http: reqwest::Client,
        api_base: &str,
        path: &str,
        tokens: Arc<TokenSource>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            http,
            url: format!("{}{}", api_base.trim_end_matches('/'), path),
            tokens,
            retry,
        }
    }

    pub async fn publish(
        &self,
        body: &Value,
        key: &str,
        deadline: Deadline,
    ) -> Result<Published, PublishError> {
        let mut attempts = 0;
        let mut retries = 0;
        let mut reauthorised = false;
        loop {
            attempts += 1;
            let (reason, hint) = match self.attempt(body, key).await {
                Attempt::Done(status) => return Ok(Published { status, attempts }),
                Attempt::Rejected(status) => return Err(PublishError::Rejected { status }),
                Attempt::Unauthorized if !reauthorised => {
                    reauthorised = true;
                    continue;
                }
                Attempt::Unauthorized => ("Genesys refused a fresh access token".to_string(), None),
                Attempt::Retry { reason, hint } => (reason, hint),
            };
            let delay = self.retry.delay(retries, hint);
            retries += 1;
            let too_long = hint.is_some_and(|h| h > self.retry.max_retry_after);
            if attempts >= self.retry.max_attempts
                || too_long
                || !deadline.allows(delay, Duration::from_millis(50))
            {
                return Err(PublishError::Unavailable {
                    retry_after: hint
                        .unwrap_or(Duration::from_secs(5))
                        .max(Duration::from_secs(1)),
                    reason,
                });
            }
            info!(attempt = attempts, delay_ms = delay.as_millis() as u64, reason = %reason, "retrying Genesys publish");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, body: &Value, key: &str) -> Attempt {
        let token = match self.tokens.token().await {
            Ok(t) => t,
            Err(e) => {
                if e.class() == FailureClass::Permanent {
                    warn!(error = %e, "Genesys OAuth client refused; check the client credentials");
                }
                return Attempt::Retry {
                    reason: format!("no Genesys access token: {e}"),
                    hint: None,
                };
            }
        };
        let sent = self
            .http
            .post(&self.url)
            .bearer_auth(&token.value)
            .header("Idempotency-Key", key)
            .header(header::ACCEPT, "application/json")
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    reason: format!("request failed: {}", e.without_url()),
                    hint: None,
                }
            }
        };
        let status = response.status().as_u16();
        match status {
            200..=299 => Attempt::Done(status),
            401 => {
                // Re-read the stored token or fetch a new one; the next attempt uses it.
                if let Err(e) = self.tokens.on_unauthorized(&token).await {
                    warn!(error = %e, "could not replace a refused Genesys token");
                }
                Attempt::Unauthorized
            }
            408 | 429 | 500..=599 => Attempt::Retry {
                reason: format!("HTTP {status}"),
                hint: retry_hint(response.headers()),
            },
            _ => Attempt::Rejected(status),
        }
    }
}

/// `Retry-After` (seconds or HTTP date), else Genesys' `inin-ratelimit-reset` (seconds).
pub fn retry_hint(headers: &header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    get("retry-after")
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
        .or_else(|| {
            get("inin-ratelimit-reset")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
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
    }
}
