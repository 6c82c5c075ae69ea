//! Publishing to Genesys Cloud with a deterministic `Idempotency-Key`, bounded retries and a deadline.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header;
use serde_json::Value;
use tracing::{info, warn};

use shared::failure::FailureClass;
use shared::retry::{Attempt as RetryAttempt, Deadline, Retrier, Retryable};
use shared::tokens::TokenSource;

pub struct Publisher {
    http: reqwest::Client,
    url: String,
    tokens: Arc<TokenSource>,
    retrier: Retrier,
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

/// Why one attempt did not deliver.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("Genesys rejected the event (HTTP {0})")]
    Rejected(u16),
    #[error("{reason}")]
    Retry {
        reason: String,
        hint: Option<Duration>,
    },
}

impl Retryable for AttemptError {
    fn class(&self) -> FailureClass {
        match self {
            AttemptError::Rejected(_) => FailureClass::Permanent,
            AttemptError::Retry { .. } => FailureClass::Transient,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptError::Retry { hint, .. } => *hint,
            AttemptError::Rejected(_) => None,
        }
    }
    fn out_of_time(budget: Duration, started: bool) -> Self {
        let reason = match started {
            true => format!("no answer within {} ms", budget.as_millis()),
            false => "no time left for another attempt".to_string(),
        };
        AttemptError::Retry { reason, hint: None }
    }
}

impl Publisher {
    pub fn new(
        http: reqwest::Client,
        api_base: &str,
        path: &str,
        tokens: Arc<TokenSource>,
        retrier: Retrier,
    ) -> Self {
        Self {
            http,
            url: format!("{}{}", api_base.trim_end_matches('/'), path),
            tokens,
            retrier,
        }
    }

    /// Delivers the event. Every attempt carries the same `Idempotency-Key`, so one that succeeded without
    /// telling us is not delivered twice by the next.
    pub async fn publish(
        &self,
        body: &Value,
        key: &str,
        deadline: Deadline,
    ) -> Result<Published, PublishError> {
        let mut attempts = 0;
        let result = self
            .retrier
            .run(
                deadline,
                |a: RetryAttempt| {
                    attempts = a.number;
                    self.attempt(body, key)
                },
                |e, n| {
                    info!(failed_attempt = n.failed_attempt, delay_ms = n.delay.as_millis() as u64,
                          reason = %e, "retrying Genesys publish")
                },
            )
            .await;
        match result {
            Ok(status) => Ok(Published { status, attempts }),
            Err(AttemptError::Rejected(status)) => Err(PublishError::Rejected { status }),
            Err(AttemptError::Retry { reason, hint }) => Err(PublishError::Unavailable {
                retry_after: hint
                    .unwrap_or(Duration::from_secs(5))
                    .max(Duration::from_secs(1)),
                reason,
            }),
        }
    }

    /// One delivery; a refused token is replaced and the request sent once more within the attempt.
    async fn attempt(&self, body: &Value, key: &str) -> Result<u16, AttemptError> {
        match self.send(body, key).await? {
            Sent::Status(status) => Ok(status),
            Sent::Unauthorized => match self.send(body, key).await? {
                Sent::Status(status) => Ok(status),
                Sent::Unauthorized => Err(AttemptError::Retry {
                    reason: "Genesys refused a fresh access token".into(),
                    hint: None,
                }),
            },
        }
    }

    async fn send(&self, body: &Value, key: &str) -> Result<Sent, AttemptError> {
        let token = match self.tokens.token().await {
            Ok(t) => t,
            Err(e) => {
                if e.class() == FailureClass::Permanent {
                    warn!(error = %e, "Genesys OAuth client refused; check the client credentials");
                }
                return Err(AttemptError::Retry {
                    reason: format!("no Genesys access token: {e}"),
                    hint: None,
                });
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
        let response = sent.map_err(|e| AttemptError::Retry {
            reason: format!("request failed: {}", shared::http_client::describe(&e)),
            hint: None,
        })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(Sent::Status(status)),
            401 => {
                // Re-read the stored token or fetch a new one; the next request uses it.
                if let Err(e) = self.tokens.on_unauthorized(&token).await {
                    warn!(error = %e, "could not replace a refused Genesys token");
                }
                Ok(Sent::Unauthorized)
            }
            408 | 429 | 500..=599 => Err(AttemptError::Retry {
                reason: format!("HTTP {status}"),
                hint: retry_hint(response.headers()),
            }),
            _ => Err(AttemptError::Rejected(status)),
        }
    }
}

enum Sent {
    Status(u16),
    /// 401: the token was refused (and replaced).
    Unauthorized,
}

pub use shared::genesys::retry_hint;
