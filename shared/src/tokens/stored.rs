//! The token a provider's secret holds, when the refresher renews it, and the secret itself.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::aws::{read_secret, SecretError};
use crate::oauth::AccessToken;

/// The JSON kept in a provider's token secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    pub access_token: String,
    pub token_type: String,
    pub expires_at: String,
    #[serde(default)]
    pub scope: Option<String>,
    pub obtained_at: String,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("access_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("obtained_at", &self.obtained_at)
            .finish()
    }
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

fn parse_time(s: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

impl StoredToken {
    pub fn new(token: &AccessToken, obtained_at: SystemTime) -> Self {
        Self {
            access_token: token.value.clone(),
            token_type: token.token_type.clone(),
            expires_at: rfc3339(token.expires_at),
            scope: token.scope.clone(),
            obtained_at: rfc3339(obtained_at),
        }
    }

    pub fn to_access_token(&self) -> Option<AccessToken> {
        Some(AccessToken {
            value: self.access_token.clone(),
            token_type: self.token_type.clone(),
            expires_at: parse_time(&self.expires_at)?,
            scope: self.scope.clone(),
        })
    }

    pub fn expires(&self) -> Option<SystemTime> {
        parse_time(&self.expires_at)
    }

    pub fn obtained(&self) -> Option<SystemTime> {
        parse_time(&self.obtained_at)
    }
}

/// When the refresher renews a stored token.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// Renew when less than this fraction of the lifetime remains (default 0.5).
    pub remaining_fraction: f64,
    /// Always renew when less than this remains (default 10 min).
    pub floor: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            remaining_fraction: 0.5,
            floor: Duration::from_secs(600),
        }
    }
}

impl RefreshPolicy {
    /// Whether `stored` (if any) should be replaced at `now`. Unreadable times count as due.
    pub fn due(&self, stored: Option<&StoredToken>, now: SystemTime) -> bool {
        let Some((expires, obtained)) = stored.and_then(|s| Some((s.expires()?, s.obtained()?)))
        else {
            return true;
        };
        let lifetime = expires.duration_since(obtained).unwrap_or(Duration::ZERO);
        let remaining = expires.duration_since(now).unwrap_or(Duration::ZERO);
        remaining < self.floor
            || remaining.as_secs_f64() < lifetime.as_secs_f64() * self.remaining_fraction
    }
}

/// A provider's token secret.
#[derive(Clone)]
pub struct TokenStore {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl TokenStore {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The stored token; `None` when the secret is empty, a placeholder or not a token.
    pub async fn read(&self) -> Result<Option<StoredToken>, SecretError> {
        match read_secret(&self.client, &self.secret_id).await {
            Ok(raw) => Ok(serde_json::from_str(&raw).ok()),
            Err(SecretError::Empty { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn write(&self, token: &StoredToken) -> Result<(), SecretError> {
        let body = serde_json::to_string(token).unwrap_or_default();
        self.client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SecretError::Write {
                id: self.secret_id.clone(),
                reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(obtained_ago: u64, lifetime: u64) -> StoredToken {
        let now = SystemTime::now();
        let obtained = now - Duration::from_secs(obtained_ago);
        StoredToken {
            access_token: "t".into(),
            token_type: "bearer".into(),
            expires_at: rfc3339(obtained + Duration::from_secs(lifetime)),
            scope: None,
            obtained_at: rfc3339(obtained),
        }
    }

    #[test]
    fn refresh_policy() {
        let p = RefreshPolicy::default();
        let now = SystemTime::now();
        assert!(p.due(None, now));
        assert!(!p.due(Some(&stored(60, 86_400)), now), "fresh 24 h token");
        assert!(
            p.due(Some(&stored(50_000, 86_400)), now),
            "less than half left"
        );
        assert!(
            !p.due(Some(&stored(600, 1_800 + 1_200)), now),
            "more than half and more than 10 min left"
        );
        assert!(
            p.due(Some(&stored(200, 700)), now),
            "under the 10 min floor"
        );
        assert!(p.due(Some(&stored(90_000, 86_400)), now), "expired");
        let mut broken = stored(0, 100);
        broken.expires_at = "yesterday".into();
        assert!(p.due(Some(&broken), now));
    }

    #[test]
    fn stored_token_round_trip_and_redaction() {
        let t = AccessToken {
            value: "secret-token".into(),
            token_type: "bearer".into(),
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_000),
            scope: Some("a b".into()),
        };
        let s = StoredToken::new(
            &t,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_341_600),
        );
        assert_eq!(s.expires_at, "2026-11-23T10:00:00Z");
        assert_eq!(s.to_access_token().unwrap(), t);
        let json: serde_json::Value = serde_json::to_value(&s).unwrap();
        for k in [
            "access_token",
            "token_type",
            "expires_at",
            "scope",
            "obtained_at",
        ] {
            assert!(json.get(k).is_some(), "{k}");
        }
        assert!(!format!("{s:?}").contains("secret-token"));
    }
}
