//! The token every outbound call uses: cached, single-flight, with a direct-fetch fallback.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;
use tracing::{info, warn};

use super::stored::{StoredToken, TokenStore};
use crate::failure::FailureClass;
use crate::oauth::{fetch_token, AccessToken, ClientCredentials, OAuthError};

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
