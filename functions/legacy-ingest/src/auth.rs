//! JWT authentication of legacy systems.
//!
//! Keys are asymmetric only (ES256/ES384, RS256/RS384/RS512, PS256) and each key is bound to one algorithm:
//! a token is verified only with keys whose algorithm equals the header's, so `alg: none`, HS* (including
//! HMAC signed with the public key's PEM — the key-confusion attack) and algorithm/key mismatches fail.
//! `exp`, `iss` and `aud` are required; `nbf` is checked; an optional maximum age applies to `iat`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use tracing::warn;

/// Algorithms a key may be bound to. Symmetric algorithms are never accepted.
pub const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
];

#[derive(Clone)]
pub struct BoundKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    key: DecodingKey,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key set is not valid JSON: {0}")]
    Json(String),
    #[error("key {kid}: algorithm {alg} is not allowed (asymmetric algorithms only)")]
    Algorithm { kid: String, alg: String },
    #[error("key {kid}: {reason}")]
    Key { kid: String, reason: String },
}

/// Static key set: `{"keys": [{"kid": "…", "alg": "ES256", "pem": "-----BEGIN PUBLIC KEY-----…"}]}`.
pub fn keys_from_pem_set(json: &str) -> Result<Vec<BoundKey>, KeyError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        kid: Option<String>,
        alg: String,
        pem: String,
    }
    let set: Set = serde_json::from_str(json).map_err(|e| KeyError::Json(e.to_string()))?;
    set.keys
        .into_iter()
        .map(|e| {
            let kid = e.kid.clone().unwrap_or_else(|| "(no kid)".into());
            let alg = asymmetric(&e.alg).ok_or_else(|| KeyError::Algorithm {
                kid: kid.clone(),
                alg: e.alg.clone(),
            })?;
            let key = match alg {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(e.pem.as_bytes()),
                _ => DecodingKey::from_rsa_pem(e.pem.as_bytes()),
            }
            .map_err(|err| KeyError::Key {
                kid: kid.clone(),
                reason: format!("not a {alg:?} public key PEM ({err})"),
            })?;
            Ok(BoundKey {
                kid: e.kid,
                alg,
                key,
            })
        })
        .collect()
}

/// A JWKS document; keys without `alg` get the usual one for their type (EC P-256 → ES256, RSA → RS256).
pub fn keys_from_jwks(json: &str) -> Result<Vec<BoundKey>, KeyError> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| KeyError::Json(e.to_string()))?;
    let mut out = Vec::new();
    for jwk in &set.keys {
        let kid = jwk.common.key_id.clone();
        let name = kid.clone().unwrap_or_else(|| "(no kid)".into());
        let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(a), _) => key_algorithm_name(a).and_then(asymmetric),
            (None, AlgorithmParameters::EllipticCurve(p)) => match p.curve {
                EllipticCurve::P256 => Some(Algorithm::ES256),
                EllipticCurve::P384 => Some(Algorithm::ES384),
                _ => None,
            },
            (None, AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
            _ => None,
        };
        let Some(alg) = alg else {
            warn!(kid = %name, "JWKS key skipped: not an accepted asymmetric key");
            continue;
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Key {
            kid: name,
            reason: e.to_string(),
        })?;
        out.push(BoundKey { kid, alg, key });
    }
    Ok(out)
}

fn key_algorithm_name(a: &KeyAlgorithm) -> Option<&'static str> {
    Some(match a {
        KeyAlgorithm::ES256 => "ES256",
        KeyAlgorithm::ES384 => "ES384",
        KeyAlgorithm::RS256 => "RS256",
        KeyAlgorithm::RS384 => "RS384",
        KeyAlgorithm::RS512 => "RS512",
        KeyAlgorithm::PS256 => "PS256",
        _ => return None,
    })
}

fn asymmetric(name: &str) -> Option<Algorithm> {
    name.parse::<Algorithm>()
        .ok()
        .filter(|a| ASYMMETRIC.contains(a))
}

/// Where a JWKS document comes from.
pub enum JwksSource {
    Url {
        http: reqwest::Client,
        url: String,
    },
    Secret {
        client: aws_sdk_secretsmanager::Client,
        id: String,
    },
}

impl JwksSource {
    async fn fetch(&self) -> Result<String, String> {
        match self {
            JwksSource::Url { http, url } => {
                let r = http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| shared::http_client::describe(&e))?;
                if !r.status().is_success() {
                    return Err(format!(
                        "JWKS endpoint answered HTTP {}",
                        r.status().as_u16()
                    ));
                }
                r.text()
                    .await
                    .map_err(|e| shared::http_client::describe(&e))
            }
            JwksSource::Secret { client, id } => shared::aws::read_secret(client, id)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// JWKS keys, refreshed when an unknown `kid` arrives, at most once per `min_interval`.
pub struct Jwks {
    source: JwksSource,
    keys: RwLock<Vec<BoundKey>>,
    last_fetch: Mutex<Option<Instant>>,
    min_interval: Duration,
}

impl Jwks {
    pub fn new(source: JwksSource, min_interval: Duration) -> Self {
        Self {
            source,
            keys: RwLock::new(Vec::new()),
            last_fetch: Mutex::new(None),
            min_interval,
        }
    }

    /// Fetches now (call at cold start). Returns how many keys were loaded.
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut last = self.last_fetch.lock().await;
        self.fetch_locked(&mut last).await
    }

    async fn fetch_locked(&self, last: &mut Option<Instant>) -> Result<usize, String> {
        *last = Some(Instant::now());
        let text = self.source.fetch().await?;
        let keys = keys_from_jwks(&text).map_err(|e| e.to_string())?;
        let n = keys.len();
        *self.keys.write().await = keys;
        Ok(n)
    }

    async fn with_kid(&self, kid: &str) -> Vec<BoundKey> {
        let found = self.find(kid).await;
        if !found.is_empty() {
            return found;
        }
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_interval) {
            return self.find(kid).await;
        }
        if let Err(e) = self.fetch_locked(&mut last).await {
            warn!(error = %e, "JWKS refresh failed");
        }
        self.find(kid).await
    }

    async fn find(&self, kid: &str) -> Vec<BoundKey> {
        self.keys
            .read()
            .await
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .cloned()
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct JwtPolicy {
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    pub max_age: Option<Duration>,
    pub algorithms: Vec<Algorithm>,
}

/// The claims the function uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub iat: Option<u64>,
    pub exp: u64,
}

/// Why a request is not authenticated. The message is safe to return to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not accepted")]
    Algorithm,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token too old")]
    TooOld,
    #[error("issuer not accepted")]
    Issuer,
    #[error("audience not accepted")]
    Audience,
    #[error("required claim missing or invalid")]
    Claims,
}

pub struct Authenticator {
    policy: JwtPolicy,
    keys: Vec<BoundKey>,
    jwks: Option<Jwks>,
}

impl Authenticator {
    pub fn new(policy: JwtPolicy, keys: Vec<BoundKey>, jwks: Option<Jwks>) -> Self {
        Self { policy, keys, jwks }
    }

    pub fn jwks(&self) -> Option<&Jwks> {
        self.jwks.as_ref()
    }

    /// Verifies an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Claims, AuthError> {
        let token = authorization
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        self.verify(token).await
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > 16 * 1024 || token.split('.').count() != 3 {
            return Err(AuthError::Malformed);
        }
        let header = decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName => AuthError::Algorithm,
            _ => AuthError::Malformed,
        })?;
        if !self.policy.algorithms.contains(&header.alg) || !ASYMMETRIC.contains(&header.alg) {
            return Err(AuthError::Algorithm);
        }
        let mut candidates: Vec<BoundKey> = match header.kid.as_deref() {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .cloned()
                .collect(),
            None => self.keys.clone(),
        };
        if let (Some(kid), true, Some(jwks)) =
            (header.kid.as_deref(), candidates.is_empty(), &self.jwks)
        {
            candidates = jwks.with_kid(kid).await;
        }
        if candidates.is_empty() {
            return Err(AuthError::UnknownKey);
        }
        let mut error = AuthError::Algorithm;
        for key in candidates.iter().filter(|k| k.alg == header.alg) {
            match decode::<Claims>(token, &key.key, &self.validation(key.alg)) {
                Ok(data) => return self.check_age(data.claims),
                Err(e) => {
                    error = match e.kind() {
                        ErrorKind::InvalidSignature => AuthError::Signature,
                        ErrorKind::ExpiredSignature => AuthError::Expired,
                        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                        ErrorKind::InvalidIssuer => AuthError::Issuer,
                        ErrorKind::InvalidAudience => AuthError::Audience,
                        ErrorKind::MissingRequiredClaim(_)
                        | ErrorKind::InvalidClaimFormat(_)
                        | ErrorKind::Json(_) => AuthError::Claims,
                        ErrorKind::InvalidAlgorithm => AuthError::Algorithm,
                        _ => AuthError::Malformed,
                    };
                    if error != AuthError::Signature {
                        // The signature matched this key; the claims are what is wrong.
                        return Err(error);
                    }
                }
            }
        }
        Err(error)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.policy.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.set_issuer(&self.policy.issuers);
        v.set_audience(&self.policy.audiences);
        v
    }

    fn check_age(&self, claims: Claims) -> Result<Claims, AuthError> {
        let Some(max_age) = self.policy.max_age else {
            return Ok(claims);
        };
        let now = shared::clock::epoch_secs();
        let iat = claims.iat.ok_or(AuthError::Claims)?;
        let leeway = self.policy.leeway.as_secs();
        if iat > now + leeway {
            return Err(AuthError::NotYetValid);
        }
        if now.saturating_sub(iat) > max_age.as_secs() + leeway {
            return Err(AuthError::TooOld);
        }
        Ok(claims)
    }
}

/// Parses `ES256,RS256` into algorithms, refusing anything symmetric.
pub fn parse_algorithms(list: &[String]) -> Result<Vec<Algorithm>, String> {
    let mut seen = HashSet::new();
    list.iter()
        .map(|s| {
            asymmetric(s.trim())
                .ok_or_else(|| format!("algorithm {s:?} is not an accepted asymmetric algorithm"))
        })
        .filter(|r| r.as_ref().map_or(true, |a| seen.insert(*a)))
        .collect()
}
