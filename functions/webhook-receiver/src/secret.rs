//! The webhook signing key: its documented shape, and the cache of the current and previous versions.
//!
//! Shapes (README): the key as the plain secret string, or exactly `{"secret": "<key>"}`. The key must be at
//! least [`MIN_KEY_BYTES`] bytes with no leading or trailing whitespace. During rotation Secrets Manager keeps
//! the version before as `AWSPREVIOUS`; a signature made with either version is accepted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use tracing::{error, info, warn};

use shared::aws::{read_secret, SecretError};
use shared::FailureClass;

/// HMAC-SHA256 keys shorter than its 32-byte output weaken it (RFC 2104 §3); the template generates 48.
pub const MIN_KEY_BYTES: usize = 32;

/// Which rule of the documented shape a secret breaks. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("a JSON secret must be exactly {{\"secret\": \"<key>\"}} with a string key")]
    NotTheDocumentedJson,
    #[error("the key is {len} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort { len: usize },
    #[error("the key has leading or trailing whitespace (e.g. a newline from a file)")]
    Whitespace,
}

/// The HMAC key of a secret string: the plain string, or the `secret` field of `{"secret": "…"}`.
pub fn hmac_key_from_secret(raw: &str) -> Result<Vec<u8>, ShapeError> {
    let key = if raw.trim_start().starts_with('{') {
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(fields)) if fields.len() == 1 => match fields.get("secret") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err(ShapeError::NotTheDocumentedJson),
            },
            _ => return Err(ShapeError::NotTheDocumentedJson),
        }
    } else {
        raw.to_string()
    };
    if key.trim() != key {
        return Err(ShapeError::Whitespace);
    }
    if key.len() < MIN_KEY_BYTES {
        return Err(ShapeError::TooShort { len: key.len() });
    }
    Ok(key.into_bytes())
}

/// Why no usable key is at hand. The receiver answers 503 for each, so Genesys retries.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Read(#[from] SecretError),
    #[error("webhook secret {id} ({stage}) breaks its documented shape: {rule}")]
    Shape {
        id: String,
        stage: &'static str,
        rule: ShapeError,
    },
    #[error("webhook secret not re-read yet; the last read failed: {reason}")]
    RecentlyFailed { reason: String },
}

impl KeyError {
    pub fn class(&self) -> FailureClass {
        match self {
            KeyError::Read(e) => e.class(),
            KeyError::Shape { .. } => FailureClass::Permanent,
            KeyError::RecentlyFailed { .. } => FailureClass::Transient,
        }
    }
}

/// The keys a signature may be made with: `AWSCURRENT`, then `AWSPREVIOUS` when there is one.
#[derive(Debug, PartialEq, Eq)]
pub struct Keys {
    pub current: Vec<u8>,
    pub previous: Option<Vec<u8>>,
}

impl Keys {
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.current.as_slice()).chain(self.previous.as_deref())
    }
}

#[derive(Default)]
struct ReadState {
    last_attempt: Option<Instant>,
    /// The last read failed: the reason (without the value), and whether it may pass by itself.
    failure: Option<(String, FailureClass)>,
}

/// Read at cold start and again once the keys are `max_age` old (so a retired version stops working in warm
/// containers); re-read after a mismatch at most once per interval, and after a failed read at most once per
/// `retry_after`, so neither a flood of bad signatures nor a broken secret hammers Secrets Manager.
pub struct SigningKey {
    secret_id: String,
    keys: RwLock<Option<(Arc<Keys>, Instant)>>,
    state: Mutex<ReadState>,
    retry_after: Duration,
    max_age: Duration,
}

/// What a re-read gave.
pub enum Refreshed {
    /// Read less than the interval ago: the cached keys stay.
    NotYet,
    Fresh(Arc<Keys>),
}

impl SigningKey {
    pub fn new(secret_id: impl Into<String>, retry_after: Duration, max_age: Duration) -> Self {
        Self {
            secret_id: secret_id.into(),
            keys: RwLock::new(None),
            state: Mutex::new(ReadState::default()),
            retry_after,
            max_age,
        }
    }

    /// The cached keys, and whether they are younger than `max_age`.
    async fn cached(&self) -> Option<(Arc<Keys>, bool)> {
        let keys = self.keys.read().await;
        keys.as_ref()
            .map(|(k, at)| (k.clone(), at.elapsed() < self.max_age))
    }

    /// The cached keys, read now if there are none or they are too old (unless the last read failed moments
    /// ago). Keys that are only too old are still used when the re-read fails.
    pub async fn current(
        &self,
        sm: &aws_sdk_secretsmanager::Client,
    ) -> Result<Arc<Keys>, KeyError> {
        if let Some((k, true)) = self.cached().await {
            return Ok(k);
        }
        let mut state = self.state.lock().await;
        // Another caller may have loaded them while we waited for the lock.
        let stale = match self.cached().await {
            Some((k, true)) => return Ok(k),
            Some((k, false)) => Some(k),
            None => None,
        };
        if let (Some(at), Some((reason, class))) = (state.last_attempt, &state.failure) {
            if at.elapsed() < self.retry_after {
                return match (stale, class) {
                    (Some(k), FailureClass::Transient) => Ok(k),
                    _ => Err(KeyError::RecentlyFailed {
                        reason: reason.clone(),
                    }),
                };
            }
        }
        match (self.read(sm, &mut state).await, stale) {
            (Ok(k), _) => Ok(k),
            // Secrets Manager unreachable: the keys in hand are better than a 503.
            (Err(e), Some(k)) if e.class().is_transient() => Ok(k),
            (Err(e), _) => Err(e),
        }
    }

    /// Re-reads after a mismatch unless the last successful read is younger than `min_interval`. A failed
    /// re-read keeps the cached keys and is an error (the caller answers 503, not 401).
    pub async fn refresh(
        &self,
        sm: &aws_sdk_secretsmanager::Client,
        min_interval: Duration,
    ) -> Result<Refreshed, KeyError> {
        let mut state = self.state.lock().await;
        if let Some(at) = state.last_attempt {
            match &state.failure {
                None if at.elapsed() < min_interval => return Ok(Refreshed::NotYet),
                Some((reason, _)) if at.elapsed() < self.retry_after => {
                    return Err(KeyError::RecentlyFailed {
                        reason: reason.clone(),
                    })
                }
                _ => {}
            }
        }
        self.read(sm, &mut state).await.map(Refreshed::Fresh)
    }

    async fn read(
        &self,
        sm: &aws_sdk_secretsmanager::Client,
        state: &mut ReadState,
    ) -> Result<Arc<Keys>, KeyError> {
        state.last_attempt = Some(Instant::now());
        match self.read_keys(sm).await {
            Ok(keys) => {
                state.failure = None;
                let keys = Arc::new(keys);
                *self.keys.write().await = Some((keys.clone(), Instant::now()));
                Ok(keys)
            }
            Err(e) => {
                // Which rule failed, never the value.
                error!(secret_id = %self.secret_id, error = %e, "webhook signing secret unusable");
                state.failure = Some((e.to_string(), e.class()));
                Err(e)
            }
        }
    }

    async fn read_keys(&self, sm: &aws_sdk_secretsmanager::Client) -> Result<Keys, KeyError> {
        let raw = read_secret(sm, &self.secret_id).await?;
        let current = hmac_key_from_secret(&raw).map_err(|rule| KeyError::Shape {
            id: self.secret_id.clone(),
            stage: "AWSCURRENT",
            rule,
        })?;
        let previous = match shared::aws::read_previous_secret(sm, &self.secret_id).await {
            Ok(Some(raw)) => match hmac_key_from_secret(&raw) {
                Ok(k) if k != current => Some(k),
                Ok(_) => None,
                Err(rule) => {
                    warn!(secret_id = %self.secret_id, %rule, "AWSPREVIOUS webhook secret ignored");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                warn!(secret_id = %self.secret_id, error = %e, "AWSPREVIOUS webhook secret not read");
                None
            }
        };
        info!(secret_id = %self.secret_id, previous = previous.is_some(), "webhook signing secret loaded");
        Ok(Keys { current, previous })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn documented_shapes_are_accepted() {
        assert_eq!(hmac_key_from_secret(KEY).unwrap(), KEY.as_bytes());
        let json = format!(r#"{{"secret": "{KEY}"}}"#);
        assert_eq!(hmac_key_from_secret(&json).unwrap(), KEY.as_bytes());
        let padded_json = format!(" {{\"secret\":\"{KEY}\"}}\n");
        assert_eq!(hmac_key_from_secret(&padded_json).unwrap(), KEY.as_bytes());
    }

    #[test]
    fn empty_short_literal_json_and_padded_secrets_are_rejected_naming_the_rule() {
        use ShapeError::*;
        let short = &KEY[..31];
        for (raw, rule) in [
            ("", TooShort { len: 0 }),
            (r#"{"secret": ""}"#, TooShort { len: 0 }),
            ("{}", NotTheDocumentedJson),
            (
                r#"{"secret": 12345678901234567890123456789012345}"#,
                NotTheDocumentedJson,
            ),
            (
                r#"{"key": "0123456789abcdef0123456789abcdef"}"#,
                NotTheDocumentedJson,
            ),
            (
                r#"{"secret": "0123456789abcdef0123456789abcdef", "x": 1}"#,
                NotTheDocumentedJson,
            ),
            (
                r#"{"secret": "0123456789abcdef0123456789abcdef""#,
                NotTheDocumentedJson,
            ),
            (short, TooShort { len: 31 }),
            (&format!("{KEY}\n"), Whitespace),
            (&format!(r#"{{"secret": " {KEY}"}}"#), Whitespace),
        ] {
            let err = hmac_key_from_secret(raw).unwrap_err();
            assert_eq!(err, rule, "{raw:?}");
            assert!(!err.to_string().contains(KEY), "the value never appears");
        }
    }

    #[test]
    fn keys_are_tried_current_first() {
        let k = Keys {
            current: b"new".to_vec(),
            previous: Some(b"old".to_vec()),
        };
        assert_eq!(k.iter().collect::<Vec<_>>(), [&b"new"[..], &b"old"[..]]);
    }
}
