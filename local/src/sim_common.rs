//! Plumbing both simulators share: the access tokens they issue and the log of the requests they answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Access tokens a simulator issued: each lives `lifetime` unless revoked.
pub struct IssuedTokens {
    /// token → (expiry, revoked)
    live: HashMap<String, (Instant, bool)>,
    issued: u32,
    pub lifetime: Duration,
}

impl IssuedTokens {
    pub fn new(lifetime: Duration) -> Self {
        Self {
            live: HashMap::new(),
            issued: 0,
            lifetime,
        }
    }

    /// A new token `<prefix>-<random>` and its lifetime.
    pub fn issue(&mut self, prefix: &str) -> (String, Duration) {
        let token = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        self.live
            .insert(token.clone(), (Instant::now() + self.lifetime, false));
        self.issued += 1;
        (token, self.lifetime)
    }

    /// Revokes every token issued so far: the API answers 401 to them from now on.
    pub fn revoke_all(&mut self) {
        for t in self.live.values_mut() {
            t.1 = true;
        }
    }

    pub fn is_live(&self, token: &str) -> bool {
        self.live
            .get(token.trim())
            .is_some_and(|(expires, revoked)| !revoked && *expires > Instant::now())
    }

    pub fn issued(&self) -> u32 {
        self.issued
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// 0 when the connection was dropped without an answer.
    pub status: u16,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
}

/// Every request a simulator answered, in order.
pub struct RequestLog {
    started: Instant,
    entries: Vec<LoggedRequest>,
}

impl Default for RequestLog {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            entries: Vec::new(),
        }
    }
}

impl RequestLog {
    pub fn record(&mut self, method: &str, path: &str, status: u16) {
        self.entries.push(LoggedRequest {
            method: method.into(),
            path: path.into(),
            status,
            at_ms: self.started.elapsed().as_millis() as u64,
        });
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.entries.clone()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_live_until_revoked_or_expired() {
        let mut t = IssuedTokens::new(Duration::from_secs(60));
        let (a, lifetime) = t.issue("x");
        assert!(a.starts_with("x-") && lifetime == Duration::from_secs(60));
        assert!(t.is_live(&a) && !t.is_live("nope"));
        t.revoke_all();
        assert!(!t.is_live(&a));
        t.lifetime = Duration::ZERO;
        let (b, _) = t.issue("x");
        assert!(!t.is_live(&b));
        assert_eq!(t.issued(), 2);
    }
}
