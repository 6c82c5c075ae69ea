//! Access tokens kept in Secrets Manager by the token-refresher, read by every function.
//!
//! A token secret holds `{"access_token", "token_type", "expires_at", "scope", "obtained_at"}` (times RFC 3339).
//! [`TokenSource`] reads it once and caches the token until `expires_at` minus a margin; concurrent callers
//! share one read or fetch. When no fresh token is stored (refresher late or broken), or the API answers 401
//! with the stored one, it fetches a token directly with the client credentials, stores it for the others, and
//! counts the fallback (`TokenFallbackFetch` metric), so an outage of the refresher means slower calls, not
//! failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::aws::{read_secret, SecretError};
use crate::failure::FailureClass;
use crate::oauth::{fetch_token, AccessToken, ClientCredentials, OAuthError};

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

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{provider}: {source}")]
    OAuth {
        provider: String,
        #[source]
        source: OAuthError,
    },
}

impl TokenError {
    pub fn class(&self) -> FailureClass {
        match self {
            TokenError::OAuth { source, .. } => source.class(),
        }
    }
}

/// The token every outbound call uses; see the module documentation.
pub struct TokenSource {
    provider: String,
    http: reqwest::Client,
    creds: ClientCredentials,
    store: Option<TokenStore>,
    margin: Duration,
    current: Mutex<Option<AccessToken>>,
    fallbacks: AtomicU64,
    store_reads: AtomicU64,
}

impl TokenSource {
    /// `store`: the token secret the refresher maintains (None: fetch and cache in memory only).
    pub fn new(
        provider: impl Into<String>,
        http: reqwest::Client,
        creds: ClientCredentials,
        store: Option<TokenStore>,
        margin: Duration,
    ) -> Self {
        Self {
            provider: provider.into(),
            http,
            creds,
            store,
            margin,
            current: Mutex::new(None),
            fallbacks: AtomicU64::new(0),
            store_reads: AtomicU64::new(0),
        }
    }

    /// Direct fetches made because no usable token was stored.
    pub fn fallback_count(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Reads of the token secret.
    pub fn store_reads(&self) -> u64 {
        self.store_reads.load(Ordering::Relaxed)
    }

    /// A token fresh for at least the margin.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref().filter(|t| t.fresh_for(self.margin)) {
            return Ok(t.clone());
        }
        if let Some(t) = self.read_store(None).await {
            *current = Some(t.clone());
            return Ok(t);
        }
        let t = self.fallback_fetch().await?;
        *current = Some(t.clone());
        Ok(t)
    }

    /// The API answered 401 with `rejected`: re-read the secret once (the refresher may have rotated it);
    /// if it still holds `rejected` or nothing fresh, fetch directly and store the result.
    pub async fn on_unauthorized(&self, rejected: &AccessToken) -> Result<AccessToken, TokenError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current
            .as_ref()
            .filter(|t| t.value != rejected.value && t.fresh_for(self.margin))
        {
            // Another caller already replaced it.
            return Ok(t.clone());
        }
        if let Some(t) = self.read_store(Some(rejected)).await {
            *current = Some(t.clone());
            return Ok(t);
        }
        let t = self.fallback_fetch().await?;
        *current = Some(t.clone());
        Ok(t)
    }

    async fn read_store(&self, rejected: Option<&AccessToken>) -> Option<AccessToken> {
        let store = self.store.as_ref()?;
        self.store_reads.fetch_add(1, Ordering::Relaxed);
        match store.read().await {
            Ok(stored) => stored
                .and_then(|s| s.to_access_token())
                .filter(|t| t.fresh_for(self.margin))
                .filter(|t| rejected.is_none_or(|r| r.value != t.value)),
            Err(e) => {
                warn!(provider = %self.provider, error = %e, "token secret unreadable");
                None
            }
        }
    }

    async fn fallback_fetch(&self) -> Result<AccessToken, TokenError> {
        let token = fetch_token(&self.http, &self.creds)
            .await
            .map_err(|source| TokenError::OAuth {
                provider: self.provider.clone(),
                source,
            })?;
        if let Some(store) = &self.store {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            crate::metrics::count("TokenFallbackFetch", ("Provider", &self.provider), 1);
            info!(provider = %self.provider, "no usable stored token; fetched one directly");
            if let Err(e) = store
                .write(&StoredToken::new(&token, SystemTime::now()))
                .await
            {
                warn!(provider = %self.provider, error = %e, "could not store the fetched token");
            }
        }
        Ok(token)
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

/// The two OAuth providers and where their settings live in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Genesys,
    ServiceNow,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Genesys => "genesys",
            Provider::ServiceNow => "servicenow",
        }
    }

    /// Environment variable naming the provider's token secret.
    pub fn token_secret_var(self) -> &'static str {
        match self {
            Provider::Genesys => "GENESYS_TOKEN_SECRET_ID",
            Provider::ServiceNow => "SERVICENOW_TOKEN_SECRET_ID",
        }
    }

    /// Environment variable naming the provider's client-credentials secret.
    pub fn credentials_secret_var(self) -> &'static str {
        match self {
            Provider::Genesys => "GENESYS_CREDENTIALS_SECRET_ID",
            Provider::ServiceNow => "SERVICENOW_OAUTH_CREDENTIALS_SECRET_ID",
        }
    }
}

#[derive(Deserialize)]
struct CredentialsSecret {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

use crate::BoxError;

/// The provider's OAuth client from the environment. Credentials come from the secret named by
/// `credentials_secret_var` (`{"client_id", "client_secret"[, "username", "password"]}`), else from
/// `<PROVIDER>_CLIENT_ID` / `<PROVIDER>_CLIENT_SECRET` (local runs).
///
/// Genesys: `GENESYS_LOGIN_URL` (default `https://login.mypurecloud.com`) + `/oauth/token`, HTTP Basic,
/// `client_credentials`. ServiceNow: `SERVICENOW_INSTANCE_URL` + `/oauth_token.do`, form client auth,
/// `SERVICENOW_OAUTH_GRANT` = `password` (default; classic instances) or `client_credentials`.
pub async fn oauth_client_from_env(
    secrets: &aws_sdk_secretsmanager::Client,
    provider: Provider,
) -> Result<ClientCredentials, BoxError> {
    use crate::config;
    use crate::oauth::{ClientAuth, Grant};
    let secret = match config::optional(provider.credentials_secret_var()) {
        Some(id) => {
            let raw = read_secret(secrets, &id).await?;
            serde_json::from_str::<CredentialsSecret>(&raw).map_err(|_| SecretError::Shape {
                id,
                fields: "client_id and client_secret".into(),
            })?
        }
        None => {
            let (id_var, secret_var, user_var, password_var) = match provider {
                Provider::Genesys => ("GENESYS_CLIENT_ID", "GENESYS_CLIENT_SECRET", "", ""),
                Provider::ServiceNow => (
                    "SERVICENOW_CLIENT_ID",
                    "SERVICENOW_CLIENT_SECRET",
                    "SERVICENOW_USERNAME",
                    "SERVICENOW_PASSWORD",
                ),
            };
            CredentialsSecret {
                client_id: config::required(id_var)?,
                client_secret: config::required(secret_var)?,
                username: (!user_var.is_empty())
                    .then(|| config::optional(user_var))
                    .flatten(),
                password: (!password_var.is_empty())
                    .then(|| config::optional(password_var))
                    .flatten(),
            }
        }
    };
    Ok(match provider {
        Provider::Genesys => {
            let login = config::optional("GENESYS_LOGIN_URL")
                .unwrap_or_else(|| "https://login.mypurecloud.com".into());
            let mut c = ClientCredentials::basic(
                format!("{}/oauth/token", login.trim_end_matches('/')),
                secret.client_id,
                secret.client_secret,
            );
            c.scope = config::optional("GENESYS_SCOPE");
            c
        }
        Provider::ServiceNow => {
            let instance = config::required("SERVICENOW_INSTANCE_URL")?;
            let grant = match config::optional("SERVICENOW_OAUTH_GRANT").as_deref() {
                None | Some("password") => match (secret.username, secret.password) {
                    (Some(username), Some(password)) => Grant::Password { username, password },
                    _ => {
                        return Err(
                            "the ServiceNow password grant needs username and password".into()
                        )
                    }
                },
                Some("client_credentials") => Grant::ClientCredentials,
                Some(other) => {
                    return Err(format!(
                        "SERVICENOW_OAUTH_GRANT {other:?}: password or client_credentials"
                    )
                    .into())
                }
            };
            ClientCredentials {
                token_url: format!("{}/oauth_token.do", instance.trim_end_matches('/')),
                client_id: secret.client_id,
                client_secret: secret.client_secret,
                scope: None,
                grant,
                client_auth: ClientAuth::Form,
            }
        }
    })
}

/// The provider's [`TokenSource`] from the environment: its OAuth client, and its token secret when
/// `<PROVIDER>_TOKEN_SECRET_ID` is set.
pub async fn token_source_from_env(
    secrets: &aws_sdk_secretsmanager::Client,
    http: reqwest::Client,
    provider: Provider,
) -> Result<TokenSource, BoxError> {
    let creds = oauth_client_from_env(secrets, provider).await?;
    let store = crate::config::optional(provider.token_secret_var())
        .map(|id| TokenStore::new(secrets.clone(), id));
    Ok(TokenSource::new(
        provider.name(),
        http,
        creds,
        store,
        Duration::from_secs(120),
    ))
}
