//! Access to one reservation: the booking answer carries a `manage` token (read, reschedule, cancel; valid
//! until a day after the slot) and a short-lived `live` token (opens the status WebSocket; a fresh one comes
//! with every read). A token is `cb1.<scope>.<reservation id>.<expires>.<mac>`, the MAC an HMAC-SHA256 under
//! a key derived from the `CALLBACK_ACCESS_SECRET_ID` secret, so any container can check it without state.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Manage,
    Live,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Manage => "manage",
            Scope::Live => "live",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("no token")]
    Missing,
    #[error("the token is not valid for this reservation")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

#[derive(Clone)]
pub struct AccessKeys {
    key: [u8; 32],
}

impl std::fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessKeys(..)")
    }
}

impl AccessKeys {
    pub fn from_secret(secret: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"callback-access/v1\0");
        hash.update(secret.as_bytes());
        Self {
            key: hash.finalize().into(),
        }
    }

    fn mac(&self, payload: &str) -> Vec<u8> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            // HMAC takes a key of any length.
            Err(_) => return Vec::new(),
        };
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A token for `reservation` in `scope`, valid until `expires` (epoch seconds).
    pub fn issue(&self, scope: Scope, reservation: &str, expires: u64) -> String {
        let payload = format!("cb1.{}.{reservation}.{expires}", scope.name());
        let mac = URL_SAFE_NO_PAD.encode(self.mac(&payload));
        format!("{payload}.{mac}")
    }

    /// The reservation `token` opens in `scope` at `now` (epoch seconds).
    pub fn verify(&self, token: &str, scope: Scope, now: u64) -> Result<String, AccessError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AccessError::Missing);
        }
        let (payload, mac) = token.rsplit_once('.').ok_or(AccessError::Invalid)?;
        let given = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| AccessError::Invalid)?;
        if !bool::from(given.ct_eq(&self.mac(payload))) {
            return Err(AccessError::Invalid);
        }
        let mut parts = payload.splitn(4, '.');
        let (Some("cb1"), Some(s), Some(id), Some(expires)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AccessError::Invalid);
        };
        if s != scope.name() {
            return Err(AccessError::Invalid);
        }
        let expires: u64 = expires.parse().map_err(|_| AccessError::Invalid)?;
        if expires <= now {
            return Err(AccessError::Expired);
        }
        Ok(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_reservation_in_its_scope_until_it_expires() {
        let keys = AccessKeys::from_secret("s3cret");
        let t = keys.issue(Scope::Manage, "r-1", 1_000);
        assert_eq!(keys.verify(&t, Scope::Manage, 999), Ok("r-1".into()));
        assert_eq!(
            keys.verify(&t, Scope::Manage, 1_000),
            Err(AccessError::Expired)
        );
        assert_eq!(keys.verify(&t, Scope::Live, 999), Err(AccessError::Invalid));
        let other = AccessKeys::from_secret("other");
        assert_eq!(
            other.verify(&t, Scope::Manage, 999),
            Err(AccessError::Invalid)
        );
        // Any change to the payload breaks the MAC.
        let forged = t.replacen("r-1", "r-2", 1);
        assert_eq!(
            keys.verify(&forged, Scope::Manage, 999),
            Err(AccessError::Invalid)
        );
        let later = t.replacen(".1000.", ".9999.", 1);
        assert_eq!(
            keys.verify(&later, Scope::Manage, 999),
            Err(AccessError::Invalid)
        );
        for junk in ["", "cb1", "a.b.c.d.e", "cb1.manage.r-1.1000.!!"] {
            assert!(keys.verify(junk, Scope::Manage, 0).is_err(), "{junk}");
        }
    }
}
