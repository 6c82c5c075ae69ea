//! token-refresher: for each configured provider, read the stored token and, when the next scheduled run
//! would find less than the floor left (remaining < schedule + floor, default 15 + 10 min) or less than the
//! configured share of its lifetime remains (default 50 %), obtain a new one with the provider's client
//! credentials and store `{access_token, token_type, expires_at, scope, obtained_at}` in its
//! token secret. Providers are independent: one failing never stops the other. Permanent failures
//! (`invalid_client`, …) are not retried; transient ones are, with backoff and jitter, within the invocation.

use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use shared::config::{ConfigError, Env};
use shared::failure::FailureClass;
use shared::oauth::{fetch_token, ClientCredentials};
use shared::retry::{Deadline, Retrier};
use shared::tokens::{
    OAuthClientSettings, Provider, RefreshPolicy, Rotating, StoredToken, TokenStore,
};
use shared::StartupError;

/// One provider to keep a token for.
pub struct ProviderJob {
    pub provider: Provider,
    /// Re-read from their secret when the token endpoint refuses them (rotation needs no redeploy).
    pub creds: Rotating<ClientCredentials>,
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
        let used = job.creds.current();
        let token = match self.fetch(job, &used, deadline).await {
            Err(e) if e.credentials_refused() => match job.creds.replacement(&used).await {
                Some(new) => self.fetch(job, &new, deadline).await,
                None => Err(e),
            },
            other => other,
        }
        .map_err(|e| match e.class() {
            FailureClass::Permanent => fail(
                format!("{e}; check the client credentials"),
                FailureClass::Permanent,
            ),
            FailureClass::Transient => fail(e.to_string(), FailureClass::Transient),
        })?;
        let lifetime = token
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if !self.policy.covers(lifetime) {
            warn!(provider = job.provider.name(), lifetime_secs = lifetime.as_secs(),
                  "tokens live shorter than the schedule interval + floor: functions will fetch their own between runs");
        }
        job.store
            .write(&StoredToken::new(&token, SystemTime::now()))
            .await
            .map_err(|e| fail(e.to_string(), FailureClass::Transient))?;
        Ok(Refreshed::Renewed)
    }
}

impl Refresher {
    async fn fetch(
        &self,
        job: &ProviderJob,
        creds: &ClientCredentials,
        deadline: Deadline,
    ) -> Result<shared::oauth::AccessToken, shared::oauth::OAuthError> {
        self.retry
            .run(
                deadline,
                |_| fetch_token(&self.http, creds),
                |e, n| {
                    warn!(provider = job.provider.name(), failed_attempt = n.failed_attempt, error = %e,
                          "token request failed; retrying")
                },
            )
            .await
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

/// The token-refresher's configuration, read without I/O.
#[derive(Debug, Clone)]
pub struct Config {
    /// Providers whose token secret is configured (`GENESYS_TOKEN_SECRET_ID`, `SERVICENOW_TOKEN_SECRET_ID`).
    pub providers: Vec<ProviderSettings>,
    pub policy: RefreshPolicy,
}

/// A provider's OAuth client and the secret its tokens are kept in.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub client: OAuthClientSettings,
    pub token_secret_id: String,
}

impl Config {
    /// Reads the configuration from the process environment (see README). No I/O.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        let mut providers = Vec::new();
        for provider in [Provider::Genesys, Provider::ServiceNow] {
            if let Some(token_secret_id) = env.optional(provider.token_secret_var()) {
                providers.push(ProviderSettings {
                    client: OAuthClientSettings::from_env(env, provider)?,
                    token_secret_id,
                });
            }
        }
        if providers.is_empty() {
            return Err(ConfigError::Missing(
                "GENESYS_TOKEN_SECRET_ID and/or SERVICENOW_TOKEN_SECRET_ID",
            ));
        }
        let defaults = RefreshPolicy::default();
        Ok(Self {
            providers,
            policy: RefreshPolicy {
                remaining_fraction: env.parse_or(
                    "REFRESH_WHEN_REMAINING_FRACTION",
                    defaults.remaining_fraction,
                )?,
                floor: env.secs_or("REFRESH_FLOOR_SECONDS", defaults.floor.as_secs())?,
                schedule: schedule(env, defaults.schedule)?,
            },
        })
    }
}

/// The schedule interval: `REFRESH_SCHEDULE_SECONDS`, else the schedule's own expression
/// `REFRESH_SCHEDULE_RATE` (`rate(15 minutes)`, as template.yaml's `TokenRefreshRate`), else `default`.
fn schedule(env: &Env, default: Duration) -> Result<Duration, ConfigError> {
    if env.optional("REFRESH_SCHEDULE_SECONDS").is_some() {
        return env.secs_or("REFRESH_SCHEDULE_SECONDS", default.as_secs());
    }
    let Some(rate) = env.optional("REFRESH_SCHEDULE_RATE") else {
        return Ok(default);
    };
    parse_rate(&rate).ok_or(ConfigError::Invalid {
        name: "REFRESH_SCHEDULE_RATE",
        reason: "expected rate(<n> minute[s]|hour[s]|day[s]); for a cron schedule set \
                 REFRESH_SCHEDULE_SECONDS to its longest interval"
            .into(),
    })
}

/// `rate(15 minutes)` → 900 s.
fn parse_rate(expr: &str) -> Option<Duration> {
    let inner = expr.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
    let unit_secs = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(unit_secs)?))
}

/// The refresher at cold start: each provider's client credentials read from their secrets.
pub async fn build(config: Config, aws: &aws_config::SdkConfig) -> Result<Refresher, StartupError> {
    let secrets = aws_sdk_secretsmanager::Client::new(aws);
    let mut jobs = Vec::new();
    for p in config.providers {
        jobs.push(ProviderJob {
            provider: p.client.provider,
            creds: p.client.build_rotating(&secrets).await?,
            store: TokenStore::new(secrets.clone(), p.token_secret_id),
        });
    }
    Ok(Refresher {
        http: shared::http_client::token_client("token-refresher")?,
        jobs,
        policy: config.policy,
        retry: retrier(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_those_with_a_token_secret() {
        let env = Env::from_pairs([
            ("GENESYS_TOKEN_SECRET_ID", "genesys-token"),
            ("GENESYS_CREDENTIALS_SECRET_ID", "genesys-client"),
            ("REFRESH_FLOOR_SECONDS", "300"),
        ]);
        let c = Config::from_vars(&env).unwrap();
        assert_eq!(c.policy.schedule, Duration::from_secs(900));
        let c =
            Config::from_vars(&env.clone().with([("REFRESH_SCHEDULE_SECONDS", "300")])).unwrap();
        assert_eq!(c.policy.schedule, Duration::from_secs(300));
        let rate = |r: &str| Config::from_vars(&env.clone().with([("REFRESH_SCHEDULE_RATE", r)]));
        assert_eq!(
            rate("rate(15 minutes)").unwrap().policy.schedule,
            Duration::from_secs(900)
        );
        assert_eq!(
            rate("rate(1 hour)").unwrap().policy.schedule,
            Duration::from_secs(3600)
        );
        for bad in ["cron(0/15 * * * ? *)", "rate(0 minutes)", "rate(5 weeks)"] {
            let err = rate(bad).unwrap_err();
            assert!(
                err.to_string().contains("REFRESH_SCHEDULE_RATE"),
                "{bad}: {err}"
            );
        }
        assert_eq!(c.providers.len(), 1);
        assert_eq!(c.providers[0].client.provider, Provider::Genesys);
        assert_eq!(c.providers[0].token_secret_id, "genesys-token");
        assert_eq!(c.policy.floor, Duration::from_secs(300));
        let err = Config::from_vars(&Env::default()).unwrap_err();
        assert!(err.to_string().contains("GENESYS_TOKEN_SECRET_ID"), "{err}");
        let bad = Env::from_pairs([
            ("GENESYS_TOKEN_SECRET_ID", "t"),
            ("GENESYS_CREDENTIALS_SECRET_ID", "c"),
            ("REFRESH_WHEN_REMAINING_FRACTION", "half"),
        ]);
        let err = Config::from_vars(&bad).unwrap_err();
        assert!(
            err.to_string().contains("REFRESH_WHEN_REMAINING_FRACTION"),
            "{err}"
        );
    }
}
