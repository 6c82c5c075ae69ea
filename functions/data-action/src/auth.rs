//! How Architect's calls are authenticated: Basic credentials, a header secret, or bearer tokens this function
//! issues itself from a "User Defined OAuth" token endpoint (client credentials). Credentials come from
//! Secrets Manager and are compared in constant time. Rotation has no gap: the secret's `AWSPREVIOUS` version
//! (read at cold start) stays accepted, and the secret is re-read (at most once a minute) when a caller
//! presents other credentials, the ones it replaces then staying accepted in that container.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use shared::tokens::Rotating;

/// The stored credentials: Basic `username`/`password`, the header's secret (`id` empty), or the OAuth
/// client's `client_id`/`client_secret`. The template's generated `{"username", "password"}` secret serves
/// every mode: the header secret is then the password, the OAuth client the pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The shortest secret accepted: anything shorter is guessable.
pub const MIN_SECRET_CHARS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `Authorization: Basic …` (Genesys "Basic Auth" credentials).
    Basic,
    /// A header carrying the secret (Genesys "User Defined" credentials placed in the request template).
    Header { name: http::HeaderName },
    /// Bearer tokens from `POST …/oauth/token` (Genesys "User Defined (OAuth)").
    OAuth { token_lifetime: Duration },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Basic => "basic",
            Mode::Header { .. } => "header",
            Mode::OAuth { .. } => "oauth",
        }
    }

    /// Reads a secret's text for this mode (the reason on a bad shape, never the value).
    pub fn parse_secret(&self, raw: &str) -> Result<Credentials, String> {
        let json: Option<serde_json::Value> = serde_json::from_str(raw).ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|v| v[name].as_str())
                .map(str::to_string)
        };
        let creds = match self {
            Mode::Basic => match (field("username"), field("password")) {
                (Some(id), Some(secret)) if !id.is_empty() => Credentials { id, secret },
                _ => return Err("needs {\"username\", \"password\"}".into()),
            },
            Mode::Header { .. } => match (&json, field("secret").or_else(|| field("password"))) {
                (_, Some(secret)) => Credentials {
                    id: String::new(),
                    secret,
                },
                (Some(serde_json::Value::Object(_)), None) => {
                    return Err("needs {\"secret\"} (or {\"password\"}) or the plain secret".into())
                }
                _ => Credentials {
                    id: String::new(),
                    secret: raw.trim().to_string(),
                },
            },
            Mode::OAuth { .. } => match (
                field("client_id").or_else(|| field("username")),
                field("client_secret").or_else(|| field("password")),
            ) {
                (Some(id), Some(secret)) if !id.is_empty() => Credentials { id, secret },
                _ => return Err(
                    "needs {\"client_id\", \"client_secret\"} (or {\"username\", \"password\"})"
                        .into(),
                ),
            },
        };
        if creds.secret.chars().count() < MIN_SECRET_CHARS {
            return Err(format!(
                "the secret must have at least {MIN_SECRET_CHARS} characters"
            ));
        }
        Ok(creds)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: {0}")]
    Missing(&'static str),
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    #[error("the credentials are not valid")]
    Wrong,
    #[error("the access token has expired: get a new one from the token endpoint")]
    Expired,
    #[error("this endpoint issues no tokens: DATA_ACTION_AUTH is not oauth")]
    NoTokenEndpoint,
    #[error("unsupported grant_type: only client_credentials")]
    Grant,
}

/// A token the endpoint issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
}

pub struct Authenticator {
    mode: Mode,
    credentials: Rotating<Credentials>,
    /// The version before the current one: accepted too, so Genesys can be switched after the secret.
    previous: std::sync::Mutex<Option<Credentials>>,
}

const TOKEN_PREFIX: &str = "da1";

impl Authenticator {
    pub fn new(mode: Mode, credentials: Rotating<Credentials>) -> Self {
        Self {
            mode,
            credentials,
            previous: std::sync::Mutex::new(None),
        }
    }

    /// Also accepts `previous` (the secret's `AWSPREVIOUS` version).
    pub fn with_previous(self, previous: Option<Credentials>) -> Self {
        *self.previous.lock().unwrap_or_else(|p| p.into_inner()) = previous;
        self
    }

    fn previous(&self) -> Option<Credentials> {
        self.previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// Checks a data action request's credentials.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        match &self.mode {
            Mode::Basic => {
                let (id, secret) = basic(headers)?;
                self.matching(|c| same(&c.id, &id) & same(&c.secret, &secret))
                    .await
            }
            Mode::Header { name } => {
                let value = headers
                    .get(name)
                    .ok_or(AuthError::Missing("the credentials header is absent"))?
                    .to_str()
                    .map_err(|_| AuthError::Malformed("the header is not text"))?
                    .trim()
                    .to_string();
                self.matching(|c| same(&c.secret, &value)).await
            }
            Mode::OAuth { .. } => {
                let token = bearer(headers)?;
                let now = now_secs();
                let mut expired = false;
                let verdict = self
                    .matching(|c| match verify(&token, c, now) {
                        Ok(()) => true,
                        Err(AuthError::Expired) => {
                            expired = true;
                            false
                        }
                        Err(_) => false,
                    })
                    .await;
                match verdict {
                    Err(AuthError::Wrong) if expired => Err(AuthError::Expired),
                    other => other,
                }
            }
        }
    }

    /// `POST …/oauth/token`: client credentials from a Basic header or the body (form or JSON), a token back.
    pub async fn issue(&self, headers: &HeaderMap, body: &[u8]) -> Result<Issued, AuthError> {
        let Mode::OAuth { token_lifetime } = &self.mode else {
            return Err(AuthError::NoTokenEndpoint);
        };
        let form = TokenRequest::parse(headers, body)?;
        if form
            .grant_type
            .as_deref()
            .is_some_and(|g| g != "client_credentials")
        {
            return Err(AuthError::Grant);
        }
        let (id, secret) = match (form.client_id, form.client_secret) {
            (Some(id), Some(secret)) => (id, secret),
            _ => basic(headers)?,
        };
        self.matching(|c| same(&c.id, &id) & same(&c.secret, &secret))
            .await?;
        let creds = self.credentials.current();
        let expires_at = now_secs() + token_lifetime.as_secs();
        Ok(Issued {
            access_token: sign(&creds, expires_at),
            expires_in: token_lifetime.as_secs(),
        })
    }

    /// Whether `accepts` holds for the current or previous credentials, or for new ones re-read from the
    /// secret (which then make the current ones the previous).
    async fn matching(
        &self,
        mut accepts: impl FnMut(&Credentials) -> bool,
    ) -> Result<(), AuthError> {
        let current = self.credentials.current();
        // Both checked, whichever matches: no timing difference between them.
        let previous = self.previous().is_some_and(|p| accepts(&p));
        if accepts(&current) | previous {
            return Ok(());
        }
        match self.credentials.replacement(&current).await {
            Some(new) => {
                *self.previous.lock().unwrap_or_else(|p| p.into_inner()) = Some(current);
                match accepts(&new) {
                    true => Ok(()),
                    false => Err(AuthError::Wrong),
                }
            }
            None => Err(AuthError::Wrong),
        }
    }
}

/// Constant-time equality of two texts of any length (compared as SHA-256 digests).
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.ct_eq(&b).into()
}

fn authorization(headers: &HeaderMap) -> Result<&str, AuthError> {
    headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing("an Authorization header is required"))?
        .to_str()
        .map_err(|_| AuthError::Malformed("the Authorization header is not text"))
}

fn scheme<'h>(value: &'h str, name: &str) -> Option<&'h str> {
    let (s, rest) = value.trim().split_once(' ')?;
    s.eq_ignore_ascii_case(name).then(|| rest.trim())
}

fn basic(headers: &HeaderMap) -> Result<(String, String), AuthError> {
    let encoded = scheme(authorization(headers)?, "Basic")
        .ok_or(AuthError::Malformed("expected Authorization: Basic"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(AuthError::Malformed(
            "the Basic credentials are not base64 text",
        ))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or(AuthError::Malformed("the Basic credentials have no ':'"))?;
    Ok((id.to_string(), secret.to_string()))
}

fn bearer(headers: &HeaderMap) -> Result<String, AuthError> {
    scheme(authorization(headers)?, "Bearer")
        .map(str::to_string)
        .ok_or(AuthError::Malformed("expected Authorization: Bearer"))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The token-signing key, derived from the client's credentials: tokens die with the secret they came from.
fn key(creds: &Credentials) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(creds.secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"genesys-servicenow data-action token v1\n");
    mac.update(creds.id.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn mac_of(creds: &Credentials, payload: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(creds))
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `da1.<expiry>.<nonce>.<mac>`: opaque to Genesys, checkable by every container without shared state.
fn sign(creds: &Credentials, expires_at: u64) -> String {
    let nonce = hex::encode(rand::random::<[u8; 12]>());
    let payload = format!("{TOKEN_PREFIX}.{expires_at}.{nonce}");
    let mac = hex::encode(mac_of(creds, &payload));
    format!("{payload}.{mac}")
}

fn verify(token: &str, creds: &Credentials, now: u64) -> Result<(), AuthError> {
    let (payload, mac) = token
        .rsplit_once('.')
        .ok_or(AuthError::Malformed("not a token of this endpoint"))?;
    let mut parts = payload.split('.');
    let (Some(TOKEN_PREFIX), Some(expiry), Some(_nonce), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not a token of this endpoint"));
    };
    let expiry: u64 = expiry
        .parse()
        .map_err(|_| AuthError::Malformed("not a token of this endpoint"))?;
    let given = hex::decode(mac).map_err(|_| AuthError::Wrong)?;
    if !bool::from(given.ct_eq(&mac_of(creds, payload))) {
        return Err(AuthError::Wrong);
    }
    match expiry > now {
        true => Ok(()),
        false => Err(AuthError::Expired),
    }
}

#[derive(Default, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

impl TokenRequest {
    fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, AuthError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let json = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        if json {
            return serde_json::from_slice(body)
                .map_err(|_| AuthError::Malformed("the token request is not the expected JSON"));
        }
        let mut form = Self::default();
        for (k, v) in form_urlencoded::parse(body) {
            let slot = match k.as_ref() {
                "grant_type" => &mut form.grant_type,
                "client_id" => &mut form.client_id,
                "client_secret" => &mut form.client_secret,
                _ => continue,
            };
            *slot = Some(v.into_owned());
        }
        Ok(form)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(id: &str, secret: &str) -> Credentials {
        Credentials {
            id: id.into(),
            secret: secret.into(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn basic_header(id: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    }

    const SECRET: &str = "a-long-enough-secret-value";

    #[tokio::test]
    async fn basic_accepts_only_the_pair() {
        let auth = Authenticator::new(Mode::Basic, creds("architect", SECRET).into());
        let ok = headers(&[("authorization", &basic_header("architect", SECRET))]);
        assert_eq!(auth.check(&ok).await, Ok(()));
        for bad in [
            basic_header("architect", "wrong"),
            basic_header("someone", SECRET),
            "Basic !!!".into(),
            format!("Bearer {SECRET}"),
        ] {
            let h = headers(&[("authorization", &bad)]);
            assert!(auth.check(&h).await.is_err(), "{bad}");
        }
        assert!(matches!(
            auth.check(&HeaderMap::new()).await,
            Err(AuthError::Missing(_))
        ));
    }

    #[tokio::test]
    async fn the_previous_version_stays_accepted_and_its_tokens_too() {
        let mode = Mode::OAuth {
            token_lifetime: Duration::from_secs(600),
        };
        let old = creds("genesys", "the-old-client-secret-value");
        let auth = Authenticator::new(mode, creds("genesys", SECRET).into())
            .with_previous(Some(old.clone()));
        let bearer = |t: &str| headers(&[("authorization", &format!("Bearer {t}"))]);
        let from_old = sign(&old, now_secs() + 60);
        assert_eq!(auth.check(&bearer(&from_old)).await, Ok(()));
        let form = "client_id=genesys&client_secret=the-old-client-secret-value";
        assert!(auth.issue(&HeaderMap::new(), form.as_bytes()).await.is_ok());
        let other = sign(&creds("genesys", "never-was-the-secret"), now_secs() + 60);
        assert_eq!(auth.check(&bearer(&other)).await, Err(AuthError::Wrong));
    }

    #[tokio::test]
    async fn header_secret() {
        let mode = Mode::Header {
            name: http::HeaderName::from_static("x-api-key"),
        };
        let auth = Authenticator::new(mode, creds("", SECRET).into());
        assert_eq!(auth.check(&headers(&[("x-api-key", SECRET)])).await, Ok(()));
        assert_eq!(
            auth.check(&headers(&[("x-api-key", "nope")])).await,
            Err(AuthError::Wrong)
        );
    }

    #[tokio::test]
    async fn issued_tokens_work_until_they_expire_and_only_with_their_secret() {
        let mode = Mode::OAuth {
            token_lifetime: Duration::from_secs(600),
        };
        let auth = Authenticator::new(mode.clone(), creds("genesys", SECRET).into());
        let form =
            format!("grant_type=client_credentials&client_id=genesys&client_secret={SECRET}");
        let issued = auth
            .issue(&HeaderMap::new(), form.as_bytes())
            .await
            .unwrap();
        assert_eq!(issued.expires_in, 600);
        let bearer = |t: &str| headers(&[("authorization", &format!("Bearer {t}"))]);
        assert_eq!(auth.check(&bearer(&issued.access_token)).await, Ok(()));
        // Tampered, foreign or expired tokens fail.
        let mut tampered = issued.access_token.clone();
        tampered.replace_range(4..5, "9");
        assert!(auth.check(&bearer(&tampered)).await.is_err());
        let other = Authenticator::new(mode, creds("genesys", "another-long-secret-value").into());
        assert_eq!(
            other.check(&bearer(&issued.access_token)).await,
            Err(AuthError::Wrong)
        );
        let old = sign(&creds("genesys", SECRET), now_secs() - 1);
        assert_eq!(auth.check(&bearer(&old)).await, Err(AuthError::Expired));
        // Client credentials in a Basic header, or JSON; a wrong secret or grant gets nothing.
        let h = headers(&[("authorization", &basic_header("genesys", SECRET))]);
        assert!(auth
            .issue(&h, b"grant_type=client_credentials")
            .await
            .is_ok());
        let json = headers(&[("content-type", "application/json")]);
        let body = format!(r#"{{"client_id":"genesys","client_secret":"{SECRET}"}}"#);
        assert!(auth.issue(&json, body.as_bytes()).await.is_ok());
        assert_eq!(
            auth.issue(&HeaderMap::new(), b"client_id=genesys&client_secret=guess")
                .await,
            Err(AuthError::Wrong)
        );
        assert_eq!(
            auth.issue(&h, b"grant_type=password").await,
            Err(AuthError::Grant)
        );
    }

    #[test]
    fn secrets_have_a_shape_and_a_length() {
        assert!(Mode::Basic
            .parse_secret(&format!(r#"{{"username":"a","password":"{SECRET}"}}"#))
            .is_ok());
        assert!(Mode::Basic
            .parse_secret(r#"{"username":"a","password":"short"}"#)
            .is_err());
        let header = Mode::Header {
            name: http::HeaderName::from_static("x-api-key"),
        };
        assert_eq!(header.parse_secret(SECRET).unwrap().secret, SECRET);
        assert!(header.parse_secret(r#"{"value":"x"}"#).is_err());
        let err = Mode::OAuth {
            token_lifetime: Duration::from_secs(1),
        }
        .parse_secret(r#"{"client_id":"x","client_secret":"tooshort"}"#)
        .unwrap_err();
        assert!(!err.contains("tooshort"));
    }
}
