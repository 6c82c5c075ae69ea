//! OAuth 2.0 token requests: Genesys Cloud (`POST https://login.<region>/oauth/token`, HTTP Basic client
//! id/secret, `grant_type=client_credentials`) and ServiceNow (`POST /oauth_token.do`, client id/secret in the
//! form, `client_credentials` or `password` grant).
//!
//! Tokens and secrets never appear in `Debug` output, errors or logs.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::failure::FailureClass;
use serde::Deserialize;

#[derive(Clone, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials,
    /// Resource-owner password grant (ServiceNow's classic OAuth).
    Password {
        username: String,
        password: String,
    },
}

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic `client_id:client_secret` (Genesys).
    Basic,
    /// `client_id` and `client_secret` form fields (ServiceNow).
    Form,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub grant: Grant,
    pub client_auth: ClientAuth,
}

impl ClientCredentials {
    /// Client-credentials grant with HTTP Basic client authentication (Genesys Cloud).
    pub fn basic(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: None,
            grant: Grant::ClientCredentials,
            client_auth: ClientAuth::Basic,
        }
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("client_auth", &self.client_auth)
            .field(
                "grant",
                &match self.grant {
                    Grant::ClientCredentials => "client_credentials",
                    Grant::Password { .. } => "password",
                },
            )
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub value: String,
    pub token_type: String,
    pub expires_at: SystemTime,
    pub scope: Option<String>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AccessToken {
    /// Whether the token is still good for at least `margin`.
    pub fn fresh_for(&self, margin: Duration) -> bool {
        SystemTime::now() + margin < self.expires_at
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The token endpoint refused (`error` is the OAuth error code, e.g. `invalid_client`).
    #[error("token endpoint answered HTTP {status} ({error})")]
    Rejected { status: u16, error: String },
    #[error("token request failed: {0}")]
    Transport(String),
    #[error("token response could not be read: {0}")]
    Decode(String),
}

impl OAuthError {
    /// Whether the endpoint refused the client or user credentials themselves (rotated or revoked),
    /// so re-reading the credentials secret may help.
    pub fn credentials_refused(&self) -> bool {
        match self {
            OAuthError::Rejected { status, error } => {
                matches!(*status, 400 | 401)
                    && (*status == 401
                        || matches!(
                            error.as_str(),
                            "invalid_client" | "invalid_grant" | "unauthorized_client"
                        ))
            }
            _ => false,
        }
    }

    pub fn class(&self) -> FailureClass {
        match self {
            OAuthError::Rejected { status, .. } if *status == 429 || *status >= 500 => {
                FailureClass::Transient
            }
            OAuthError::Rejected { .. } => FailureClass::Permanent,
            OAuthError::Transport(_) | OAuthError::Decode(_) => FailureClass::Transient,
        }
    }
}

impl crate::retry::Retryable for OAuthError {
    fn class(&self) -> FailureClass {
        OAuthError::class(self)
    }
    fn out_of_time(budget: std::time::Duration, started: bool) -> Self {
        OAuthError::Transport(match started {
            true => format!("no answer within {} ms", budget.as_millis()),
            false => "no time left for another token request".into(),
        })
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    expires_in: u64,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    #[serde(default)]
    error: Option<String>,
}

/// One token request.
pub async fn fetch_token(
    http: &reqwest::Client,
    creds: &ClientCredentials,
) -> Result<AccessToken, OAuthError> {
    let mut form: Vec<(&str, &str)> = Vec::new();
    match &creds.grant {
        Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
        Grant::Password { username, password } => form.extend([
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ]),
    }
    if let Some(scope) = creds.scope.as_deref() {
        form.push(("scope", scope));
    }
    let mut request = http
        .post(&creds.token_url)
        .header(reqwest::header::ACCEPT, "application/json");
    match creds.client_auth {
        ClientAuth::Basic => {
            request = request.basic_auth(&creds.client_id, Some(&creds.client_secret))
        }
        ClientAuth::Form => form.extend([
            ("client_id", creds.client_id.as_str()),
            ("client_secret", &creds.client_secret),
        ]),
    }
    let response = request
        .form(&form)
        .send()
        .await
        .map_err(|e| OAuthError::Transport(crate::http_client::describe(&e)))?;
    let status = response.status();
    if status.is_redirection() {
        // Never followed (token clients do not redirect): the secret would go to another URL.
        return Err(OAuthError::Rejected {
            status: status.as_u16(),
            error: "redirect_refused".into(),
        });
    }
    let max = crate::http_client::TOKEN_RESPONSE_MAX_BYTES;
    let bytes = crate::http_client::read_limited(response, max).await;
    if !status.is_success() {
        // Only the OAuth error code is kept: descriptions can echo request details.
        let error = bytes
            .ok()
            .and_then(|b| serde_json::from_slice::<ErrorResponse>(&b).ok())
            .and_then(|e| e.error)
            .filter(|e| e.len() <= 64 && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or_else(|| "unknown".into());
        return Err(OAuthError::Rejected {
            status: status.as_u16(),
            error,
        });
    }
    let bytes = bytes.map_err(|e| OAuthError::Decode(e.to_string()))?;
    let body: TokenResponse = serde_json::from_slice(&bytes)
        .map_err(|_| OAuthError::Decode("not a token response".into()))?;
    if body.access_token.is_empty() {
        return Err(OAuthError::Decode("empty access_token".into()));
    }
    Ok(AccessToken {
        value: body.access_token,
        token_type: body.token_type.unwrap_or_else(|| "bearer".into()),
        expires_at: expiry(SystemTime::now(), body.expires_in),
        scope: body.scope,
    })
}

/// The longest lifetime a token is believed to have: a token endpoint's `expires_in` beyond it (`u64::MAX`) is
/// taken as this, so the token is renewed in time and no clock overflows.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

fn expiry(now: SystemTime, expires_in: u64) -> SystemTime {
    now + Duration::from_secs(expires_in).min(MAX_TOKEN_LIFETIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut creds =
            ClientCredentials::basic("https://login.example/oauth/token", "id", "very-secret");
        creds.grant = Grant::Password {
            username: "u".into(),
            password: "user-password".into(),
        };
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("user-password"),
            "{shown}"
        );
        let token = AccessToken {
            value: "tok-123".into(),
            token_type: "bearer".into(),
            expires_at: SystemTime::now(),
            scope: None,
        };
        assert!(!format!("{token:?}").contains("tok-123"));
    }

    #[test]
    fn an_absurd_lifetime_is_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_000);
        assert_eq!(expiry(now, 3600), now + Duration::from_secs(3600));
        for absurd in [u64::MAX, 300_000_000_000] {
            assert_eq!(expiry(now, absurd), now + MAX_TOKEN_LIFETIME);
        }
    }

    #[test]
    fn classification_and_freshness() {
        let r = |status| OAuthError::Rejected {
            status,
            error: "x".into(),
        };
        assert_eq!(r(401).class(), FailureClass::Permanent);
        assert_eq!(r(400).class(), FailureClass::Permanent);
        assert_eq!(r(429).class(), FailureClass::Transient);
        assert_eq!(r(503).class(), FailureClass::Transient);
        let refused = |status, error: &str| OAuthError::Rejected {
            status,
            error: error.into(),
        };
        assert!(refused(401, "invalid_client").credentials_refused());
        assert!(refused(400, "invalid_grant").credentials_refused());
        assert!(refused(401, "unknown").credentials_refused());
        assert!(!refused(400, "invalid_scope").credentials_refused());
        assert!(!refused(503, "invalid_client").credentials_refused());
        assert!(!refused(307, "redirect_refused").credentials_refused());
        let t = AccessToken {
            value: "v".into(),
            token_type: "bearer".into(),
            expires_at: SystemTime::now() + Duration::from_secs(120),
            scope: None,
        };
        assert!(t.fresh_for(Duration::from_secs(60)));
        assert!(!t.fresh_for(Duration::from_secs(180)));
    }
}
