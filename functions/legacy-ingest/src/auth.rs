//! JWT authentication of legacy systems.
//!
//! Keys are asymmetric only (ES256/ES384, RS256/RS384/RS512, PS256) and each key is bound to one algorithm:
//! a token is verified only with keys whose algorithm equals the header's, so `alg: none`, HS* (including
//! HMAC signed with the public key's PEM — the key-confusion attack) and algorithm/key mismatches fail.
//! Each key is also bound to the issuer(s) and optionally the subject(s) it may sign for, so one legacy
//! system's key cannot speak for another (whose idempotency keys derive from its issuer).
//! `exp`, `iss` and `aud` are required; `nbf` is checked; `iat` is bounded by a maximum age, `exp` by a
//! maximum lifetime.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
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

/// Which tokens a key may sign: `iss` one of `issuers`, and `sub` one of `subjects` when they are given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBinding {
    pub issuers: Vec<String>,
    /// `None`: any subject of those issuers.
    pub subjects: Option<Vec<String>>,
}

impl KeyBinding {
    fn check(&self, claims: &Claims) -> Result<(), AuthError> {
        if !self.issuers.contains(&claims.iss) {
            return Err(AuthError::KeyIssuer);
        }
        match (&self.subjects, &claims.sub) {
            (None, _) => Ok(()),
            (Some(allowed), Some(sub)) if allowed.contains(sub) => Ok(()),
            (Some(_), _) => Err(AuthError::KeySubject),
        }
    }
}

#[derive(Clone)]
pub struct BoundKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub binding: KeyBinding,
    key: DecodingKey,
}

impl std::fmt::Debug for BoundKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key set is not valid JSON: {0}")]
    Json(String),
    #[error("key {kid}: algorithm {alg} is not allowed (asymmetric algorithms only)")]
    Algorithm { kid: String, alg: String },
    #[error("key {kid}: {reason}")]
    Key { kid: String, reason: String },
    #[error(
        "key {kid} has no \"issuers\": with more than one JWT_ISSUERS every key must name the issuer(s) it \
         signs for, e.g. \"issuers\": [\"https://billing.example\"] (and optionally \"subjects\": [\"billing\"])"
    )]
    Unbound { kid: String },
}

/// Static key set: `{"keys": [{"kid": "…", "alg": "ES256", "pem": "-----BEGIN PUBLIC KEY-----…",
/// "issuers": ["https://billing.example"], "subjects": ["billing"]}]}`. A key without `issuers` is bound to
/// the one configured issuer; with several configured issuers it is an error.
pub fn keys_from_pem_set(
    json: &str,
    configured_issuers: &[String],
) -> Result<Vec<BoundKey>, KeyError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<Entry>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        #[serde(default)]
        kid: Option<String>,
        alg: String,
        pem: String,
        #[serde(default)]
        issuers: Option<Vec<String>>,
        #[serde(default)]
        subjects: Option<Vec<String>>,
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
            let issuers = match e.issuers {
                Some(list) => list,
                None => match configured_issuers {
                    [only] => vec![only.clone()],
                    _ => return Err(KeyError::Unbound { kid }),
                },
            };
            let binding = KeyBinding {
                issuers,
                subjects: e.subjects,
            };
            check_binding(&kid, &binding, configured_issuers)?;
            Ok(BoundKey {
                kid: e.kid,
                alg,
                binding,
                key,
            })
        })
        .collect()
}

fn check_binding(kid: &str, b: &KeyBinding, configured: &[String]) -> Result<(), KeyError> {
    let empty = |what: &str| KeyError::Key {
        kid: kid.to_string(),
        reason: format!("\"{what}\" is empty (omit \"subjects\" to allow any subject)"),
    };
    if b.issuers.is_empty() {
        return Err(empty("issuers"));
    }
    if b.subjects.as_ref().is_some_and(Vec::is_empty) {
        return Err(empty("subjects"));
    }
    for i in b.issuers.iter().filter(|i| !configured.contains(i)) {
        warn!(kid, issuer = %i, "key bound to an issuer that is not in JWT_ISSUERS");
    }
    Ok(())
}

/// A JWKS document; every key gets `binding`. Keys without `alg` get the usual one for their type
/// (EC P-256 → ES256, RSA → RS256).
pub fn keys_from_jwks(json: &str, binding: &KeyBinding) -> Result<Vec<BoundKey>, KeyError> {
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
        out.push(BoundKey {
            kid,
            alg,
            binding: binding.clone(),
            key,
        });
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

/// The largest JWKS document accepted; a larger one is a fetch error (read incrementally, never buffered).
pub const JWKS_MAX_BYTES: usize = 64 * 1024;

/// The longest a JWKS fetch may take; requests waiting for it wait at most this long.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a JWKS fetch failed. The keys already loaded stay in use.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Transient: connection refused, reset, timed out mid-body.
    #[error("JWKS request failed: {0}")]
    Http(String),
    /// 5xx and 429 are transient; anything else (redirects included) needs a configuration change.
    #[error("JWKS endpoint answered HTTP {0} (redirects are not followed)")]
    Status(u16),
    #[error("JWKS document is larger than {JWKS_MAX_BYTES} bytes")]
    TooLarge,
    #[error("JWKS fetch took longer than {JWKS_FETCH_TIMEOUT:?}")]
    Timeout,
    #[error("JWKS secret: {0}")]
    Secret(String),
    /// Permanent until the document is fixed.
    #[error("JWKS document: {0}")]
    Keys(KeyError),
}

impl JwksError {
    pub fn is_transient(&self) -> bool {
        match self {
            JwksError::Http(_) | JwksError::Timeout | JwksError::Secret(_) => true,
            JwksError::Status(s) => *s == 429 || *s >= 500,
            JwksError::TooLarge | JwksError::Keys(_) => false,
        }
    }
}

/// Where a JWKS document comes from. Give `Url` a client that follows no redirects
/// ([`crate::jwks_http_client`]).
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
    async fn fetch(&self) -> Result<String, JwksError> {
        match self {
            JwksSource::Url { http, url } => {
                let r = http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| JwksError::Http(shared::http_client::describe(&e)))?;
                if !r.status().is_success() {
                    return Err(JwksError::Status(r.status().as_u16()));
                }
                read_limited(r, JWKS_MAX_BYTES).await
            }
            JwksSource::Secret { client, id } => {
                let text = shared::aws::read_secret(client, id)
                    .await
                    .map_err(|e| JwksError::Secret(e.to_string()))?;
                if text.len() > JWKS_MAX_BYTES {
                    return Err(JwksError::TooLarge);
                }
                Ok(text)
            }
        }
    }
}

/// The body, chunk by chunk, failing as soon as it exceeds `limit` bytes.
async fn read_limited(mut r: reqwest::Response, limit: usize) -> Result<String, JwksError> {
    if r.content_length().is_some_and(|n| n > limit as u64) {
        return Err(JwksError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| JwksError::Http(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(JwksError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| JwksError::Keys(KeyError::Json("not UTF-8".into())))
}

/// When the JWKS is fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksTiming {
    /// Keys older than this are refetched on the next request that needs them (removed keys stop working).
    pub refresh: Duration,
    /// An unknown `kid` refetches, at most this often.
    pub min_refresh: Duration,
    /// Wait after a failed fetch; doubles with each failure in a row, up to `refresh`.
    pub failure_backoff: Duration,
}

impl JwksTiming {
    /// The wait after `failures` failed fetches in a row (≥ 1): the backoff, doubling, at most `refresh`.
    pub fn wait_after(&self, failures: u32) -> Duration {
        let doubling = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        self.failure_backoff
            .saturating_mul(doubling)
            .min(self.refresh.max(self.failure_backoff))
    }
}

impl Default for JwksTiming {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(300),
            failure_backoff: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct FetchState {
    /// When the last successful fetch finished.
    fetched_at: Option<Instant>,
    failures: u32,
    /// No fetch before this (set by a failure).
    retry_at: Option<Instant>,
}

/// JWKS keys, refetched lazily (one fetch at a time; concurrent requests wait for it): on a request once
/// they are `refresh` old, and when an unknown `kid` arrives at most every `min_refresh`. A failed fetch
/// keeps the keys already loaded and backs off on its own schedule.
pub struct Jwks {
    source: JwksSource,
    binding: KeyBinding,
    timing: JwksTiming,
    /// The keys, and how many times they were loaded (tokens verified with older keys are checked again).
    keys: RwLock<(Vec<BoundKey>, u64)>,
    state: Mutex<FetchState>,
}

impl Jwks {
    pub fn new(source: JwksSource, binding: KeyBinding, timing: JwksTiming) -> Self {
        Self {
            source,
            binding,
            timing,
            keys: RwLock::new((Vec::new(), 0)),
            state: Mutex::new(FetchState::default()),
        }
    }

    /// Fetches now (call at cold start). Returns how many keys were loaded.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let mut state = self.state.lock().await;
        self.fetch_locked(&mut state).await
    }

    async fn fetch_locked(&self, state: &mut FetchState) -> Result<usize, JwksError> {
        let result = match tokio::time::timeout(JWKS_FETCH_TIMEOUT, self.source.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(JwksError::Timeout),
        }
        .and_then(|text| keys_from_jwks(&text, &self.binding).map_err(JwksError::Keys));
        let now = Instant::now();
        match result {
            Ok(keys) => {
                *state = FetchState {
                    fetched_at: Some(now),
                    failures: 0,
                    retry_at: None,
                };
                let n = keys.len();
                let mut loaded = self.keys.write().await;
                *loaded = (keys, loaded.1 + 1);
                Ok(n)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                state.retry_at = Some(now + self.timing.wait_after(state.failures));
                Err(e)
            }
        }
    }

    async fn fetch_logged(&self, state: &mut FetchState, why: &'static str) {
        if let Err(e) = self.fetch_locked(state).await {
            warn!(error = %e, transient = e.is_transient(), failures = state.failures, why,
                  "JWKS refresh failed; keeping the keys already loaded");
        }
    }

    /// The keys with `kid`, and the generation of the key set they are from.
    async fn with_kid(&self, kid: &str) -> (Vec<BoundKey>, u64) {
        let mut state = self.state.lock().await;
        let fetched = self.refresh_if_due(&mut state).await;
        let found = self.find(kid).await;
        let older_than =
            |s: &FetchState, d: Duration| s.fetched_at.is_none_or(|t| t.elapsed() >= d);
        if !found.0.is_empty()
            || fetched
            || !Self::may_fetch(&state)
            || !older_than(&state, self.timing.min_refresh)
        {
            return found;
        }
        self.fetch_logged(&mut state, "unknown kid").await;
        self.find(kid).await
    }

    /// The generation of the key set, once it was refetched if its refresh interval is over.
    async fn current_generation(&self) -> u64 {
        let mut state = self.state.lock().await;
        self.refresh_if_due(&mut state).await;
        self.keys.read().await.1
    }

    fn may_fetch(state: &FetchState) -> bool {
        state.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// Fetches when the keys are `refresh` old (and no failure backoff holds); whether it fetched.
    async fn refresh_if_due(&self, state: &mut FetchState) -> bool {
        let due = state
            .fetched_at
            .is_none_or(|t| t.elapsed() >= self.timing.refresh);
        if Self::may_fetch(state) && due {
            self.fetch_logged(state, "scheduled").await;
            return true;
        }
        false
    }

    async fn find(&self, kid: &str) -> (Vec<BoundKey>, u64) {
        let loaded = self.keys.read().await;
        let keys = loaded
            .0
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .cloned()
            .collect();
        (keys, loaded.1)
    }
}

#[derive(Debug, Clone)]
pub struct JwtPolicy {
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    /// How old (`iat`) a token may be; when set, `iat` is required.
    pub max_age: Option<Duration>,
    /// The longest `exp` may lie after `iat` (or after now, without `iat`).
    pub max_lifetime: Duration,
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
    #[error("iat claim required")]
    IatRequired,
    #[error("token lifetime too long")]
    Lifetime,
    #[error("signing key not allowed for this issuer")]
    KeyIssuer,
    #[error("signing key not allowed for this subject")]
    KeySubject,
    #[error("issuer not accepted")]
    Issuer,
    #[error("audience not accepted")]
    Audience,
    #[error("required claim missing or invalid")]
    Claims,
}

/// Tokens whose signature held, by the SHA-256 of their text, so a client that sends one token for its
/// lifetime has its signature checked once per container (as Envoy's `jwt_cache_config` does). The claims'
/// times are checked again on every request; a token verified with JWKS keys is used only while the key
/// set is the one it was verified with (any refetch, every `refresh` interval, sends it through the full
/// check again, so a removed key stops working as before).
#[derive(Default)]
struct VerifiedTokens {
    entries: std::sync::Mutex<HashMap<[u8; 32], VerifiedToken>>,
}

#[derive(Clone)]
struct VerifiedToken {
    claims: Claims,
    /// `None`: verified with a static key; else the JWKS generation of its key.
    jwks_generation: Option<u64>,
    /// The clock (epoch seconds) when it was verified: if the clock steps back before it, `nbf` could matter
    /// again, and the token is checked in full.
    verified_at: u64,
}

/// Tokens kept at most; when full, the expired ones go, and if that frees nothing, the one expiring first.
const VERIFIED_TOKENS_MAX: usize = 1024;
/// Longer tokens are not kept (a memory bound: 1024 of them stay within a few MB).
const VERIFIED_TOKEN_MAX_BYTES: usize = 4096;

impl VerifiedTokens {
    fn get(&self, digest: &[u8; 32]) -> Option<VerifiedToken> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(digest).cloned()
    }

    fn insert(&self, digest: [u8; 32], token: VerifiedToken, now: u64, leeway: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= VERIFIED_TOKENS_MAX {
            entries.retain(|_, t| t.claims.exp.saturating_add(leeway) >= now);
        }
        if entries.len() >= VERIFIED_TOKENS_MAX {
            let first = entries
                .iter()
                .min_by_key(|(_, t)| t.claims.exp)
                .map(|(digest, _)| *digest);
            if let Some(first) = first {
                entries.remove(&first);
            }
        }
        entries.insert(digest, token);
    }
}

pub struct Authenticator {
    policy: JwtPolicy,
    keys: Vec<BoundKey>,
    jwks: Option<Jwks>,
    verified: VerifiedTokens,
    signature_checks: AtomicU64,
}

impl Authenticator {
    pub fn new(policy: JwtPolicy, keys: Vec<BoundKey>, jwks: Option<Jwks>) -> Self {
        Self {
            policy,
            keys,
            jwks,
            verified: VerifiedTokens::default(),
            signature_checks: AtomicU64::new(0),
        }
    }

    /// How many signature checks were made (one per candidate key tried; a token seen before, still valid,
    /// is not checked again).
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
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
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = shared::clock::epoch_secs();
        if let Some(seen) = self.verified.get(&digest).filter(|t| now >= t.verified_at) {
            let current = match (seen.jwks_generation, &self.jwks) {
                (None, _) => true,
                (Some(generation), Some(jwks)) => jwks.current_generation().await == generation,
                (Some(_), None) => false,
            };
            if current {
                // Its signature, issuer, audience and binding held for these very bytes and keys; `nbf` only
                // moves further into the past. What time changes is checked again, as `decode` does.
                if seen.claims.exp.saturating_add(self.policy.leeway.as_secs()) < now {
                    return Err(AuthError::Expired);
                }
                return self.check_times(seen.claims);
            }
        }
        let header = decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName => AuthError::Algorithm,
            _ => AuthError::Malformed,
        })?;
        if !self.policy.algorithms.contains(&header.alg) || !ASYMMETRIC.contains(&header.alg) {
            return Err(AuthError::Algorithm);
        }
        let mut jwks_generation = None;
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
            let (keys, generation) = jwks.with_kid(kid).await;
            candidates = keys;
            jwks_generation = Some(generation);
        }
        if candidates.is_empty() {
            return Err(AuthError::UnknownKey);
        }
        let mut error = AuthError::Algorithm;
        for key in candidates.iter().filter(|k| k.alg == header.alg) {
            self.signature_checks.fetch_add(1, Ordering::Relaxed);
            match decode::<Claims>(token, &key.key, &self.validation(key.alg)) {
                Ok(data) => {
                    key.binding.check(&data.claims)?;
                    let claims = self.check_times(data.claims)?;
                    if token.len() <= VERIFIED_TOKEN_MAX_BYTES {
                        let seen = VerifiedToken {
                            claims: claims.clone(),
                            jwks_generation,
                            verified_at: now,
                        };
                        self.verified
                            .insert(digest, seen, now, self.policy.leeway.as_secs());
                    }
                    return Ok(claims);
                }
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

    fn check_times(&self, claims: Claims) -> Result<Claims, AuthError> {
        let now = shared::clock::epoch_secs();
        let leeway = self.policy.leeway.as_secs();
        if claims.iat.is_some_and(|iat| iat > now + leeway) {
            return Err(AuthError::NotYetValid);
        }
        if let Some(max_age) = self.policy.max_age {
            let iat = claims.iat.ok_or(AuthError::IatRequired)?;
            if now.saturating_sub(iat) > max_age.as_secs() + leeway {
                return Err(AuthError::TooOld);
            }
        }
        let start = claims.iat.map_or(now, |iat| iat.min(now));
        if claims.exp.saturating_sub(start) > self.policy.max_lifetime.as_secs() + leeway {
            return Err(AuthError::Lifetime);
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

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhFZwmwBVHU+XbQinQKXjgWjIUk9p\nFYm78e71heK0FZl5Yy4n0o1Lcp99a6UbQtdze4kT5QkR5vdq30rHWbRKIg==\n-----END PUBLIC KEY-----\n";

    fn set(extra: &str) -> String {
        format!(r#"{{"keys": [{{"kid": "k1", "alg": "ES256", "pem": {PEM:?}{extra}}}]}}"#)
    }

    fn issuers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn static_keys_carry_their_bindings() {
        let keys = keys_from_pem_set(
            &set(r#", "issuers": ["https://b"], "subjects": ["billing"]"#),
            &issuers(&["https://b", "https://o"]),
        )
        .unwrap();
        assert_eq!(
            keys[0].binding,
            KeyBinding {
                issuers: issuers(&["https://b"]),
                subjects: Some(vec!["billing".into()])
            }
        );
        let implicit = keys_from_pem_set(&set(""), &issuers(&["https://b"])).unwrap();
        assert_eq!(implicit[0].binding.issuers, issuers(&["https://b"]));
        assert_eq!(implicit[0].binding.subjects, None);
    }

    #[test]
    fn unbound_empty_or_misspelt_bindings_are_refused() {
        let two = issuers(&["https://b", "https://o"]);
        assert_eq!(
            keys_from_pem_set(&set(""), &two).err(),
            Some(KeyError::Unbound { kid: "k1".into() })
        );
        for extra in [
            r#", "issuers": []"#,
            r#", "issuers": ["https://b"], "subjects": []"#,
        ] {
            let err = keys_from_pem_set(&set(extra), &two).unwrap_err();
            assert!(err.to_string().contains("is empty"), "{extra}: {err}");
        }
        let err = keys_from_pem_set(&set(r#", "subject": ["billing"]"#), &two).unwrap_err();
        assert!(matches!(err, KeyError::Json(_)), "{err}");
    }

    #[test]
    fn failed_fetches_back_off_doubling_up_to_the_refresh_interval() {
        let t = JwksTiming {
            refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(300),
            failure_backoff: Duration::from_secs(5),
        };
        let waits: Vec<u64> = (1..=8).map(|n| t.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(t.wait_after(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn a_full_memory_of_tokens_drops_the_expired_then_the_one_expiring_first() {
        let memory = VerifiedTokens::default();
        let digest = |i: u64| {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&i.to_be_bytes());
            d
        };
        let token = |exp: u64| VerifiedToken {
            claims: Claims {
                iss: "https://b".into(),
                sub: None,
                iat: None,
                exp,
            },
            jwks_generation: None,
            verified_at: 0,
        };
        let max = VERIFIED_TOKENS_MAX as u64;
        for i in 0..max {
            memory.insert(digest(i), token(1_000 + i), 0, 0);
        }
        memory.insert(digest(max), token(9_000), 0, 0);
        assert!(memory.get(&digest(0)).is_none(), "the one expiring first");
        assert!(memory.get(&digest(1)).is_some() && memory.get(&digest(max)).is_some());
        // Full again at 1 500 (leeway 10): every token expired before 1 490 goes, the rest stay.
        memory.insert(digest(max + 1), token(9_000), 1_500, 10);
        let kept = memory.entries.lock().unwrap().len() as u64;
        assert_eq!(kept, (max - 490) + 2);
        assert!(memory.get(&digest(489)).is_none() && memory.get(&digest(490)).is_some());
    }

    #[test]
    fn bindings_check_issuer_then_subject() {
        let claims = |iss: &str, sub: Option<&str>| Claims {
            iss: iss.into(),
            sub: sub.map(str::to_string),
            iat: None,
            exp: 0,
        };
        let b = KeyBinding {
            issuers: issuers(&["https://b"]),
            subjects: Some(vec!["billing".into()]),
        };
        assert_eq!(b.check(&claims("https://b", Some("billing"))), Ok(()));
        assert_eq!(
            b.check(&claims("https://o", Some("billing"))),
            Err(AuthError::KeyIssuer)
        );
        assert_eq!(
            b.check(&claims("https://b", Some("orders"))),
            Err(AuthError::KeySubject)
        );
        assert_eq!(
            b.check(&claims("https://b", None)),
            Err(AuthError::KeySubject)
        );
        let any = KeyBinding {
            subjects: None,
            ..b
        };
        assert_eq!(any.check(&claims("https://b", None)), Ok(()));
    }
}
