//! Credentials read from their secret at cold start and re-read when refused: rotating a secret needs no
//! redeploy. Re-reads are single-flight and at most one per interval per container, so a refusal that is
//! not about the credentials cannot turn every request into a Secrets Manager call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::aws::read_secret;

/// Turns a secret's text into the credentials (the reason on a bad shape, never the value).
pub type ParseSecret<T> = Arc<dyn Fn(&str) -> Result<T, String> + Send + Sync>;

struct Reload<T> {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    parse: ParseSecret<T>,
}

/// Credentials that can be re-read from their secret; see the module documentation.
pub struct Rotating<T> {
    current: std::sync::Mutex<T>,
    reload: Option<Reload<T>>,
    interval: Duration,
    last: tokio::sync::Mutex<Option<Instant>>,
    reloads: AtomicU64,
}

impl<T> std::fmt::Debug for Rotating<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotating")
            .field("secret_id", &self.reload.as_ref().map(|r| &r.secret_id))
            .field("interval", &self.interval)
            .finish()
    }
}

impl<T> From<T> for Rotating<T> {
    /// Credentials given directly (local runs, tests): never re-read.
    fn from(value: T) -> Self {
        Self {
            current: std::sync::Mutex::new(value),
            reload: None,
            interval: Duration::ZERO,
            last: tokio::sync::Mutex::new(None),
            reloads: AtomicU64::new(0),
        }
    }
}

impl<T: Clone + PartialEq> Rotating<T> {
    /// `value` as read from `secret_id` at cold start; re-read at most once per `interval`.
    pub fn from_secret(
        value: T,
        client: aws_sdk_secretsmanager::Client,
        secret_id: impl Into<String>,
        parse: ParseSecret<T>,
        interval: Duration,
    ) -> Self {
        Self {
            reload: Some(Reload {
                client,
                secret_id: secret_id.into(),
                parse,
            }),
            interval,
            ..Self::from(value)
        }
    }

    pub fn current(&self) -> T {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads of the secret after cold start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// `refused` was refused: what to try instead, if anything. Another caller's replacement when there is
    /// one; else the secret re-read (unless re-read less than the interval ago) when it holds something new.
    pub async fn replacement(&self, refused: &T) -> Option<T> {
        let mut last = self.last.lock().await;
        let now = self.current();
        if now != *refused {
            return Some(now);
        }
        let reload = self.reload.as_ref()?;
        if last.is_some_and(|at| at.elapsed() < self.interval) {
            return None;
        }
        *last = Some(Instant::now());
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let id = &reload.secret_id;
        let new = match read_secret(&reload.client, id).await {
            Ok(raw) => match (reload.parse)(&raw) {
                Ok(v) => v,
                Err(reason) => {
                    warn!(secret = %id, reason = %reason, "credentials secret has the wrong shape");
                    return None;
                }
            },
            Err(e) => {
                warn!(secret = %id, error = %e, "credentials secret unreadable");
                return None;
            }
        };
        if new == *refused {
            warn!(secret = %id, "credentials refused and their secret still holds them");
            return None;
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = new.clone();
        info!(secret = %id, "credentials re-read from their secret after a refusal");
        Some(new)
    }
}
