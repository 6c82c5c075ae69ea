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

/// `t` in RFC 3339; empty when `time` cannot hold it (`OffsetDateTime::from` would panic past year 9999).
fn rfc3339(t: SystemTime) -> String {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .and_then(|d| time::Duration::try_from(d).ok())
        .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_add(d))
        .and_then(|dt| dt.format(&Rfc3339).ok())
        .unwrap_or_default()
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

/// When the refresher renews a stored token: when the *next* scheduled run would find less than `floor`
/// left (remaining < `schedule` + `floor`), or less than `remaining_fraction` of the lifetime remains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefreshPolicy {
    /// Renew when less than this fraction of the lifetime remains (default 0.5).
    pub remaining_fraction: f64,
    /// The least a token may have left when a run renews it (default 10 min).
    pub floor: Duration,
    /// The refresher's schedule interval (default 15 min, template.yaml's `TokenRefreshRate`).
    pub schedule: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            remaining_fraction: 0.5,
            floor: Duration::from_secs(600),
            schedule: Duration::from_secs(900),
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
        self.due_after(lifetime, remaining)
    }

    /// The rule itself, for a token of `lifetime` with `remaining` left.
    pub fn due_after(&self, lifetime: Duration, remaining: Duration) -> bool {
        remaining < self.floor + self.schedule
            || remaining.as_secs_f64() < lifetime.as_secs_f64() * self.remaining_fraction
    }

    /// Whether a token of `lifetime` outlives the wait for the next run (else containers fetch their own
    /// between runs): lifetime > `schedule` + `floor`.
    pub fn covers(&self, lifetime: Duration) -> bool {
        lifetime > self.floor + self.schedule
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
    fn times_time_cannot_hold_are_written_empty_not_a_panic() {
        let epoch = SystemTime::UNIX_EPOCH;
        assert_eq!(
            rfc3339(epoch + Duration::from_secs(1_795_428_000)),
            "2026-11-23T10:00:00Z"
        );
        assert_eq!(rfc3339(epoch + Duration::from_secs(300_000_000_000)), "");
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
            !p.due(Some(&stored(600, 3_600 + 1_200)), now),
            "more than half and more than a run + 10 min left"
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

    /// ServiceNow's default 1800 s tokens on the 15 min schedule: a run renews whenever the next run (in
    /// 900 s) would find less than the 600 s floor, so no run finds a nearly dead token.
    #[test]
    fn a_1800_s_token_is_renewed_by_the_run_before_the_next_would_be_too_late() {
        let p = RefreshPolicy::default();
        let due = |age: u64| p.due_after(secs(1_800), secs(1_800 - age));
        // Just obtained: the next run (age ~900) will still find 900 s left.
        assert!(!due(0));
        assert!(!due(299));
        // From age 300 on, the next run would find < 600 s: renew now. Before the change, ages 300..900
        // kept it (more than half left) and the run at ~1800 s found it nearly dead.
        for age in [301, 600, 899, 900, 901, 1_200, 1_500, 1_799, 1_800] {
            assert!(due(age), "age {age}");
        }
        // Runs every 900 s, each finding the token left by the previous run: always >= 900 s left.
        assert!(!p.covers(secs(1_400)) && p.covers(secs(1_800)));
        let mut left_at_run = Vec::new();
        let mut obtained = 0u64;
        for run in 1..=8u64 {
            let at = run * 900;
            let remaining = (obtained + 1_800).saturating_sub(at);
            left_at_run.push(remaining);
            if p.due_after(secs(1_800), secs(remaining)) {
                obtained = at;
            }
        }
        assert!(left_at_run.iter().all(|&r| r >= 900), "{left_at_run:?}");
    }

    #[test]
    fn a_86400_s_token_is_renewed_at_half_its_life_and_never_near_the_end() {
        let p = RefreshPolicy::default();
        let due = |age: u64| p.due_after(secs(86_400), secs(86_400 - age));
        for age in [0, 900, 3_600, 43_199] {
            assert!(!due(age), "age {age}");
        }
        for age in [43_201, 80_000, 84_901, 86_000, 86_400] {
            assert!(due(age), "age {age}");
        }
        // Without the fraction rule only the next-run rule applies: renew from 1500 s before the end.
        let late = RefreshPolicy {
            remaining_fraction: 0.0,
            ..p
        };
        assert!(!late.due_after(secs(86_400), secs(1_501)));
        assert!(late.due_after(secs(86_400), secs(1_499)));
        // A 5 min schedule renews later than a 15 min one.
        let fast = RefreshPolicy {
            schedule: secs(300),
            ..late
        };
        assert!(!fast.due_after(secs(86_400), secs(1_000)));
        assert!(fast.due_after(secs(86_400), secs(899)));
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
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
