//! Development JWTs for local runs and tests, signed with the keys in `local/dev-keys/` (never deployed).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const DEV_ISSUER: &str = "https://billing.legacy.example";
pub const DEV_AUDIENCE: &str = "genesys-legacy-ingest";
pub const DEV_SUBJECT: &str = "billing";
/// A second legacy system, with its own key (`dev-orders-es256`) bound to its issuer in `keyset.json`.
pub const ORDERS_ISSUER: &str = "https://orders.legacy.example";
pub const ORDERS_SUBJECT: &str = "orders";

pub const ES256_PRIVATE: &str = include_str!("../dev-keys/es256-private.pem");
pub const ES256_PUBLIC: &str = include_str!("../dev-keys/es256-public.pem");
pub const ES256_OTHER_PRIVATE: &str = include_str!("../dev-keys/es256-other-private.pem");
pub const ES256_ORDERS_PRIVATE: &str = include_str!("../dev-keys/es256-orders-private.pem");
pub const ES256_ORDERS_PUBLIC: &str = include_str!("../dev-keys/es256-orders-public.pem");
pub const RS256_PRIVATE: &str = include_str!("../dev-keys/rs256-private.pem");
pub const RS256_PUBLIC: &str = include_str!("../dev-keys/rs256-public.pem");
pub const KEY_SET_JSON: &str = include_str!("../dev-keys/keyset.json");
pub const JWKS_JSON: &str = include_str!("../dev-keys/jwks.json");

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Claims a legacy system would send: issuer, audience, subject, issued now, valid 5 minutes.
pub fn standard_claims() -> Value {
    let now = now();
    json!({"iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": DEV_SUBJECT, "iat": now, "nbf": now, "exp": now + 300})
}

/// Signs `claims` with the dev key for `alg` (ES256 or RS256), `kid` `dev-es256` / `dev-rs256`.
pub fn mint(alg: Algorithm, claims: &Value) -> String {
    let (pem, kid) = match alg {
        Algorithm::RS256 => (RS256_PRIVATE, "dev-rs256"),
        _ => (ES256_PRIVATE, "dev-es256"),
    };
    sign(alg, pem, Some(kid), claims)
}

/// Signs with any PEM private key (ES* or RS*), for tests that need a wrong key or kid.
pub fn sign(alg: Algorithm, private_pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
            EncodingKey::from_rsa_pem(private_pem.as_bytes())
        }
        _ => EncodingKey::from_ec_pem(private_pem.as_bytes()),
    }
    .unwrap_or_else(|e| panic!("dev key does not load: {e}"));
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &key).unwrap_or_else(|e| panic!("signing failed: {e}"))
}

/// A sample legacy business event.
pub fn sample_business_event(transaction_id: &str) -> Value {
    json!({"transaction_id": transaction_id, "event_type": "payment.received", "amount": 129.95,
           "currency": "EUR", "timestamp": "2026-11-23T10:00:00Z"})
}
