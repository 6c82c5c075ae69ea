//! OAuth 2.0 client-credentials tokens (Genesys Cloud `POST https://login.<region>/oauth/token`, ServiceNow
//! `POST /oauth_token.do`): HTTP Basic client id/secret, `grant_type=client_credentials`.
//!
//! [`TokenCache`] keeps one token in memory until shortly before it expires; concurrent callers share one fetch.
//! Tokens and secrets never appear in `Debug` output, errors or logs.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::failure::FailureClass;

#[derive(Clone)]
pub struct ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
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

/// One client-credentials grant.
pub async fn fetch_client_credentials(
    http: &reqwest::Client,
    creds: &ClientCredentials,
) -> Result<AccessToken, OAuthError> {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = creds.scope.as_deref() {
        form.push(("scope", scope));
    }
    let response = http
        .post(&creds.token_url)
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|e| OAuthError::Transport(e.without_url().to_string()))?;
    let status = response.status();
    if !status.is_success() {
        // Only the OAuth error code is kept: descriptions can echo request details.
        let error = response
            .json::<ErrorResponse>()
            .await
            .ok()
            .and_then(|e| e.error)
            .filter(|e| e.len() <= 64 && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or_else(|| "unknown".into());
        return Err(OAuthError::Rejected {
            status: status.as_u16(),
            error,
        });
    }
    let body: TokenResponse = response
        .json()
        .await
        .map_err(|e| OAuthError::Decode(e.without_url().to_string()))?;
    if body.access_token.is_empty() {
        return Err(OAuthError::Decode("empty access_token".into()));
    }
    Ok(AccessToken {
        value: body.access_token,
        token_type: body.token_type.unwrap_or_else(|| "bearer".into()),
        expires_at: SystemTime::now() + Duration::from_secs(body.expires_in),
        scope: body.scope,
    })
}

/// An in-memory token kept until `margin` before it expires; one fetch at a time.
pub struct TokenCache {
    http: reqwest::Client,
    creds: ClientCredentials,
    margin: Duration,
    current: Mutex<Option<AccessToken>>,
}

impl TokenCache {
    pub fn new(http: reqwest::Client, creds: ClientCredentials, margin: Duration) -> Self {
        Self {
            http,
            creds,
            margin,
            current: Mutex::new(None),
        }
    }

    /// A token fresh for at least the margin. Callers arriving during a fetch wait for it and share it.
    pub async fn token(&self) -> Result<AccessToken, OAuthError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref().filter(|t| t.fresh_for(self.margin)) {
            return Ok(t.clone());
        }
        let fresh = fetch_client_credentials(&self.http, &self.creds).await?;
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets `rejected` (the API answered 401 with it) so the next call fetches a new token.
    pub async fn invalidate(&self, rejected: &AccessToken) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| t.value == rejected.value) {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let creds = ClientCredentials {
            token_url: "https://login.example/oauth/token".into(),
            client_id: "id".into(),
            client_secret: "very-secret".into(),
            scope: None,
        };
        assert!(!format!("{creds:?}").contains("very-secret"));
        let token = AccessToken {
            value: "tok-123".into(),
            token_type: "bearer".into(),
            expires_at: SystemTime::now(),
            scope: None,
        };
        assert!(!format!("{token:?}").contains("tok-123"));
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
