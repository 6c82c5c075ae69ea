//! The token every outbound call uses: cached, single-flight, with a direct-fetch fallback, at most one
//! forced refresh per interval, and client credentials re-read from their secret when refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Mutex;
use tracing::{info, warn};

use super::rotating::Rotating;
use super::stored::{StoredToken, TokenStore};
use crate::failure::FailureClass;
use crate::oauth::{fetch_token, AccessToken, ClientCredentials, OAuthError};

/// At most one forced refresh (after a 401) per this interval per container, unless configured.
pub const DEFAULT_FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{provider}: {source}")]
    OAuth {
        provider: String,
        #[source]
        source: OAuthError,
    },
    /// A 401 for a token that replaced a refused one less than the interval ago: the refusal is not about
    /// the token (e.g. the integration user lost a role), so no new token is fetched.
    #[error(
        "{provider}: the API refused a token replaced less than {interval_secs} s ago; \
         the refusal is not about the token (check the integration user and its roles)"
    )]
    RefreshLimited {
        provider: String,
        interval_secs: u64,
    },
}

impl TokenError {
    pub fn class(&self) -> FailureClass {
        match self {
            TokenError::OAuth { source, .. } => source.class(),
            TokenError::RefreshLimited { .. } => FailureClass::Permanent,
        }
    }
}

/// The token every outbound call uses; see the module documentation.
pub struct TokenSource {
    provider: String,
    http: reqwest::Client,
    creds: Rotating<ClientCredentials>,
    store: Option<TokenStore>,
    margin: Duration,
    current: Mutex<Option<AccessToken>>,
    /// When a 401 last forced a refresh, and how often one may.
    last_forced: std::sync::Mutex<Option<Instant>>,
    forced_interval: Duration,
    fallbacks: AtomicU64,
    store_reads: AtomicU64,
}

impl TokenSource {
    /// `store`: the token secret the refresher maintains (None: fetch and cache in memory only). `http` should
    /// be a [`crate::http_client::token_client`] (no redirects). `creds`: fixed credentials, or
    /// [`Rotating::from_secret`] to re-read them when the token endpoint refuses them.
    pub fn new(
        provider: impl Into<String>,
        http: reqwest::Client,
        creds: impl Into<Rotating<ClientCredentials>>,
        store: Option<TokenStore>,
        margin: Duration,
    ) -> Self {
        Self {
            provider: provider.into(),
            http,
            creds: creds.into(),
            store,
            margin,
            current: Mutex::new(None),
            last_forced: std::sync::Mutex::new(None),
            forced_interval: DEFAULT_FORCED_REFRESH_INTERVAL,
            fallbacks: AtomicU64::new(0),
            store_reads: AtomicU64::new(0),
        }
    }

    /// At most one forced refresh per `interval` (default [`DEFAULT_FORCED_REFRESH_INTERVAL`]).
    pub fn with_forced_refresh_interval(mut self, interval: Duration) -> Self {
        self.forced_interval = interval;
        self
    }

    /// Re-reads of the client credentials secret after cold start.
    pub fn credential_reloads(&self) -> u64 {
        self.creds.reloads()
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

    /// The API answered 401 with `rejected`: re-read the secret (the refresher may have rotated it); if it
    /// still holds `rejected` or nothing fresh, fetch directly and store the result. At most once per
    /// interval: a 401 within it for the token that replaced a refused one is [`TokenError::RefreshLimited`].
    pub async fn on_unauthorized(&self, rejected: &AccessToken) -> Result<AccessToken, TokenError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current
            .as_ref()
            .filter(|t| t.value != rejected.value && t.fresh_for(self.margin))
        {
            // Another caller already replaced it.
            return Ok(t.clone());
        }
        let before = {
            let mut last = self.last_forced.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < self.forced_interval) {
                return Err(TokenError::RefreshLimited {
                    provider: self.provider.clone(),
                    interval_secs: self.forced_interval.as_secs(),
                });
            }
            last.replace(Instant::now())
        };
        if let Some(t) = self.read_store(Some(rejected)).await {
            *current = Some(t.clone());
            return Ok(t);
        }
        match self.fallback_fetch().await {
            Ok(t) => {
                *current = Some(t.clone());
                Ok(t)
            }
            Err(e) => {
                // Nothing was fetched nor stored: the next 401 may try again.
                *self.last_forced.lock().unwrap_or_else(|p| p.into_inner()) = before;
                Err(e)
            }
        }
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
        let used = self.creds.current();
        let token = match fetch_token(&self.http, &used).await {
            Err(e) if e.credentials_refused() => match self.creds.replacement(&used).await {
                Some(new) => fetch_token(&self.http, &new).await,
                None => Err(e),
            },
            other => other,
        }
        .map_err(|source| TokenError::OAuth {
            provider: self.provider.clone(),
            source,
        })?;
        if let Some(store) = &self.store {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            crate::metrics::count("TokenFallbackFetch", ("Provider", &self.provider), 1);
            info!(provider = %self.provider, "no usable stored token; fetched one directly");
            crate::metrics::count("TokenFallbacks", ("Provider", &self.provider), 1);
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
