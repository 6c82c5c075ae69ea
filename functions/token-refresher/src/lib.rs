//! token-refresher: for each configured provider, read the stored token and, when less than the configured
//! share of its lifetime remains (default: under 50 %, and always under 10 minutes), obtain a new one with the
//! provider's client credentials and store `{access_token, token_type, expires_at, scope, obtained_at}` in its
//! token secret. Providers are independent: one failing never stops the other. Permanent failures
//! (`invalid_client`, …) are not retried; transient ones are, with backoff and jitter, within the invocation.

use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use shared::failure::FailureClass;
use shared::oauth::{fetch_token, ClientCredentials};
use shared::retry::{Deadline, Retrier};
use shared::tokens::{oauth_client_from_env, Provider, RefreshPolicy, StoredToken, TokenStore};

pub use shared::BoxError;

/// One provider to keep a token for.
pub struct ProviderJob {
    pub provider: Provider,
    pub creds: ClientCredentials,
    pub store: TokenStore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// A new token was stored.
    Renewed,
    /// The stored token has enough life left.
    StillFresh,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct RefreshError {
    pub provider: &'static str,
    pub message: String,
    pub class: FailureClass,
}

impl RefreshError {
    pub fn class(&self) -> FailureClass {
        self.class
    }
}

/// Token requests: the token endpoint's timeout per attempt, a second kept back for storing the token.
pub fn retrier() -> Retrier {
    Retrier {
        reserve: Duration::from_secs(1),
        attempt_timeout: shared::http_client::TOKEN_ENDPOINT.request,
        ..Retrier::default()
    }
}

pub struct Refresher {
    pub http: reqwest::Client,
    pub jobs: Vec<ProviderJob>,
    pub policy: RefreshPolicy,
    pub retry: Retrier,
}

impl Refresher {
    /// Refreshes every provider concurrently.
    pub async fn run(
        &self,
        deadline: Deadline,
    ) -> Vec<(&'static str, Result<Refreshed, RefreshError>)> {
        futures::future::join_all(self.jobs.iter().map(|job| async move {
            let name = job.provider.name();
            let result = self.refresh(job, deadline).await;
            match &result {
                Ok(Refreshed::Renewed) => {
                    info!(provider = name, "token renewed");
                    shared::metrics::count("TokenRefreshed", ("Provider", name), 1);
                }
                Ok(Refreshed::StillFresh) => info!(provider = name, "stored token still fresh"),
                Err(e) => {
                    error!(provider = name, error = %e.message, permanent = e.class() == FailureClass::Permanent,
                           "token refresh failed");
                    shared::metrics::count("TokenRefreshFailed", ("Provider", name), 1);
                }
            }
            (name, result)
        }))
        .await
    }

    async fn refresh(
        &self,
        job: &ProviderJob,
        deadline: Deadline,
    ) -> Result<Refreshed, RefreshError> {
        let fail = |message: String, class| RefreshError {
            provider: job.provider.name(),
            message,
            class,
        };
        let stored = match job.store.read().await {
            Ok(s) => s,
            Err(e) => {
                // Unreadable token secret: renew anyway (the write will tell whether it is usable).
                warn!(provider = job.provider.name(), error = %e, "stored token unreadable");
                None
            }
        };
        if !self.policy.due(stored.as_ref(), SystemTime::now()) {
            return Ok(Refreshed::StillFresh);
        }
        let token = self
            .retry
            .run(
                deadline,
                |_| fetch_token(&self.http, &job.creds),
                |e, n| {
                    warn!(provider = job.provider.name(), failed_attempt = n.failed_attempt, error = %e,
                          "token request failed; retrying")
                },
            )
            .await
            .map_err(|e| match e.class() {
                FailureClass::Permanent => fail(
                    format!("{e}; check the client credentials"),
                    FailureClass::Permanent,
                ),
                FailureClass::Transient => fail(e.to_string(), FailureClass::Transient),
            })?;
        job.store
            .write(&StoredToken::new(&token, SystemTime::now()))
            .await
            .map_err(|e| fail(e.to_string(), FailureClass::Transient))?;
        Ok(Refreshed::Renewed)
    }
}

/// Fails the invocation when any provider failed, so the function's error alarm fires.
pub fn summarise(
    results: &[(&'static str, Result<Refreshed, RefreshError>)],
) -> Result<(), String> {
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("token refresh failed: {}", failed.join("; ")))
    }
}

/// Providers whose token secret is configured (`GENESYS_TOKEN_SECRET_ID`, `SERVICENOW_TOKEN_SECRET_ID`).
pub async fn jobs_from_env(
    secrets: &aws_sdk_secretsmanager::Client,
) -> Result<Vec<ProviderJob>, BoxError> {
    let mut jobs = Vec::new();
    for provider in [Provider::Genesys, Provider::ServiceNow] {
        let Some(secret_id) = shared::config::optional(provider.token_secret_var()) else {
            continue;
        };
        jobs.push(ProviderJob {
            provider,
            creds: oauth_client_from_env(secrets, provider).await?,
            store: TokenStore::new(secrets.clone(), secret_id),
        });
    }
    if jobs.is_empty() {
        return Err("set GENESYS_TOKEN_SECRET_ID and/or SERVICENOW_TOKEN_SECRET_ID".into());
    }
    Ok(jobs)
}

pub fn policy_from_env() -> Result<RefreshPolicy, shared::config::ConfigError> {
    let defaults = RefreshPolicy::default();
    Ok(RefreshPolicy {
        remaining_fraction: shared::config::parse_or(
            "REFRESH_WHEN_REMAINING_FRACTION",
            defaults.remaining_fraction,
        )?,
        floor: Duration::from_secs(shared::config::parse_or(
            "REFRESH_FLOOR_SECONDS",
            defaults.floor.as_secs(),
        )?),
    })
}
