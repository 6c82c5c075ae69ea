//! Where each provider's OAuth client and token secret come from: read from the environment without I/O,
//! built (secrets read) at cold start.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::rotating::Rotating;
use super::source::{TokenSource, DEFAULT_FORCED_REFRESH_INTERVAL};
use super::stored::TokenStore;
use crate::aws::{read_secret, SecretError};
use crate::config::{ConfigError, Env};
use crate::oauth::{ClientAuth, ClientCredentials, Grant};
use crate::StartupError;

/// At most one forced token refresh and one re-read of a credentials secret per this many seconds per
/// container, after a 401 or a refused client (default 60).
pub const FORCED_REFRESH_INTERVAL_VAR: &str = "FORCED_REFRESH_INTERVAL_SECONDS";

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

/// A provider's OAuth client as configured, read without I/O: complete when its credentials were given
/// directly, else completed by [`OAuthClientSettings::build`] from the credentials secret.
#[derive(Debug, Clone)]
pub struct OAuthClientSettings {
    pub provider: Provider,
    pub client: ClientCredentials,
    /// Secret `{"client_id", "client_secret"[, "username", "password"]}` read at build.
    pub credentials_secret_id: Option<String>,
    /// How often the credentials secret may be re-read after the token endpoint refused them.
    pub reload_interval: Duration,
}

impl OAuthClientSettings {
    /// The provider's OAuth client from the environment. Credentials come from the secret named by
    /// `credentials_secret_var`, else from `<PROVIDER>_CLIENT_ID` / `<PROVIDER>_CLIENT_SECRET` (local runs).
    ///
    /// Genesys: `GENESYS_LOGIN_URL` (default `https://login.mypurecloud.com`) + `/oauth/token`, HTTP Basic,
    /// `client_credentials`, `GENESYS_SCOPE`. ServiceNow: `SERVICENOW_INSTANCE_URL` + `/oauth_token.do`, form
    /// client auth, `SERVICENOW_OAUTH_GRANT` = `password` (default; classic instances) or `client_credentials`.
    pub fn from_env(env: &Env, provider: Provider) -> Result<Self, ConfigError> {
        let credentials_secret_id = env.optional(provider.credentials_secret_var());
        let (id_var, secret_var) = match provider {
            Provider::Genesys => ("GENESYS_CLIENT_ID", "GENESYS_CLIENT_SECRET"),
            Provider::ServiceNow => ("SERVICENOW_CLIENT_ID", "SERVICENOW_CLIENT_SECRET"),
        };
        let given = |var: &'static str| match &credentials_secret_id {
            Some(_) => Ok(String::new()),
            None => env.required(var),
        };
        let (client_id, client_secret) = (given(id_var)?, given(secret_var)?);
        let client = match provider {
            Provider::Genesys => {
                let login = env
                    .optional("GENESYS_LOGIN_URL")
                    .unwrap_or_else(|| "https://login.mypurecloud.com".into());
                crate::http_client::check_url("GENESYS_LOGIN_URL", &login)?;
                let mut c = ClientCredentials::basic(
                    format!("{}/oauth/token", login.trim_end_matches('/')),
                    client_id,
                    client_secret,
                );
                c.scope = env.optional("GENESYS_SCOPE");
                c
            }
            Provider::ServiceNow => {
                let instance = env.required("SERVICENOW_INSTANCE_URL")?;
                crate::http_client::check_url("SERVICENOW_INSTANCE_URL", &instance)?;
                let grant = match env.choice(
                    "SERVICENOW_OAUTH_GRANT",
                    &["password", "client_credentials"],
                )? {
                    "password" => Grant::Password {
                        username: env.optional("SERVICENOW_USERNAME").unwrap_or_default(),
                        password: env.optional("SERVICENOW_PASSWORD").unwrap_or_default(),
                    },
                    _ => Grant::ClientCredentials,
                };
                if credentials_secret_id.is_none() {
                    check_password_grant(&grant)?;
                }
                ClientCredentials {
                    token_url: format!("{}/oauth_token.do", instance.trim_end_matches('/')),
                    client_id,
                    client_secret,
                    scope: None,
                    grant,
                    client_auth: ClientAuth::Form,
                }
            }
        };
        Ok(Self {
            provider,
            client,
            credentials_secret_id,
            reload_interval: env.secs_or(
                FORCED_REFRESH_INTERVAL_VAR,
                DEFAULT_FORCED_REFRESH_INTERVAL.as_secs(),
            )?,
        })
    }

    /// The OAuth client, its credentials read from their secret when configured so.
    pub async fn build(
        &self,
        secrets: &aws_sdk_secretsmanager::Client,
    ) -> Result<ClientCredentials, StartupError> {
        let Some(id) = &self.credentials_secret_id else {
            return Ok(self.client.clone());
        };
        let raw = read_secret(secrets, id).await?;
        self.apply_secret(id, &raw)
    }

    /// The OAuth client as [`OAuthClientSettings::build`] reads it, re-read from its secret (at most once
    /// per `reload_interval`) when the token endpoint refuses it: rotation needs no redeploy.
    pub async fn build_rotating(
        &self,
        secrets: &aws_sdk_secretsmanager::Client,
    ) -> Result<Rotating<ClientCredentials>, StartupError> {
        let first = self.build(secrets).await?;
        let Some(id) = self.credentials_secret_id.clone() else {
            return Ok(first.into());
        };
        let settings = self.clone();
        let secret_id = id.clone();
        let parse = Arc::new(move |raw: &str| {
            settings
                .apply_secret(&secret_id, raw)
                .map_err(|e| e.to_string())
        });
        Ok(Rotating::from_secret(
            first,
            secrets.clone(),
            id,
            parse,
            self.reload_interval,
        ))
    }

    /// The client with the credentials of the secret `id`'s text `raw`.
    fn apply_secret(&self, id: &str, raw: &str) -> Result<ClientCredentials, StartupError> {
        let mut client = self.client.clone();
        let secret: CredentialsSecret =
            serde_json::from_str(raw).map_err(|_| SecretError::Shape {
                id: id.to_string(),
                fields: "client_id and client_secret".into(),
            })?;
        client.client_id = secret.client_id;
        client.client_secret = secret.client_secret;
        if let Grant::Password { username, password } = &mut client.grant {
            if let Some(u) = secret.username {
                *username = u;
            }
            if let Some(p) = secret.password {
                *password = p;
            }
            check_password_grant(&client.grant)?;
        }
        Ok(client)
    }
}

fn check_password_grant(grant: &Grant) -> Result<(), ConfigError> {
    match grant {
        Grant::Password { username, password } if username.is_empty() || password.is_empty() => {
            Err(ConfigError::Invalid {
                name: "SERVICENOW_OAUTH_GRANT",
                reason: "the password grant needs a username and password with the OAuth client \
                         (secret fields or SERVICENOW_USERNAME/PASSWORD)"
                    .into(),
            })
        }
        _ => Ok(()),
    }
}

/// A provider's token source as configured: its OAuth client, and its token secret when
/// `<PROVIDER>_TOKEN_SECRET_ID` is set.
#[derive(Debug, Clone)]
pub struct TokenSourceSettings {
    pub client: OAuthClientSettings,
    pub token_secret_id: Option<String>,
}

impl TokenSourceSettings {
    pub fn from_env(env: &Env, provider: Provider) -> Result<Self, ConfigError> {
        Ok(Self {
            client: OAuthClientSettings::from_env(env, provider)?,
            token_secret_id: env.optional(provider.token_secret_var()),
        })
    }

    /// The token source of `function` (for its user agent), over a token client that never redirects.
    pub async fn build(
        &self,
        secrets: &aws_sdk_secretsmanager::Client,
        function: &str,
    ) -> Result<TokenSource, StartupError> {
        let creds = self.client.build_rotating(secrets).await?;
        let store = self
            .token_secret_id
            .as_ref()
            .map(|id| TokenStore::new(secrets.clone(), id));
        Ok(TokenSource::new(
            self.client.provider.name(),
            crate::http_client::token_client(function)?,
            creds,
            store,
            Duration::from_secs(120),
        )
        .with_forced_refresh_interval(self.client.reload_interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servicenow_password_grant_needs_a_user_when_credentials_are_given_directly() {
        let env = Env::from_pairs([
            (
                "SERVICENOW_INSTANCE_URL",
                "https://example.service-now.com/",
            ),
            ("SERVICENOW_CLIENT_ID", "id"),
            ("SERVICENOW_CLIENT_SECRET", "secret"),
        ]);
        let err = OAuthClientSettings::from_env(&env, Provider::ServiceNow).unwrap_err();
        assert!(err.to_string().contains("SERVICENOW_OAUTH_GRANT"), "{err}");
        let env = Env::from_pairs([
            (
                "SERVICENOW_INSTANCE_URL",
                "https://example.service-now.com/",
            ),
            ("SERVICENOW_CLIENT_ID", "id"),
            ("SERVICENOW_CLIENT_SECRET", "secret"),
            ("SERVICENOW_OAUTH_GRANT", "client_credentials"),
        ]);
        let s = OAuthClientSettings::from_env(&env, Provider::ServiceNow).unwrap();
        assert_eq!(
            s.client.token_url,
            "https://example.service-now.com/oauth_token.do"
        );
        assert!(s.client.grant == Grant::ClientCredentials);
    }

    #[test]
    fn credentials_from_a_secret_are_read_at_build_not_required_in_the_environment() {
        let env = Env::from_pairs([("GENESYS_CREDENTIALS_SECRET_ID", "genesys-client")]);
        let s = TokenSourceSettings::from_env(&env, Provider::Genesys).unwrap();
        assert_eq!(
            s.client.credentials_secret_id.as_deref(),
            Some("genesys-client")
        );
        assert_eq!(
            s.client.client.token_url,
            "https://login.mypurecloud.com/oauth/token"
        );
        assert_eq!(s.token_secret_id, None);
        assert_eq!(s.client.reload_interval, Duration::from_secs(60));
        let env = Env::from_pairs([
            ("GENESYS_CREDENTIALS_SECRET_ID", "genesys-client"),
            ("GENESYS_LOGIN_URL", "http://login.mypurecloud.com"),
        ]);
        let err = TokenSourceSettings::from_env(&env, Provider::Genesys).unwrap_err();
        assert!(err.to_string().contains("GENESYS_LOGIN_URL"), "{err}");
        let err = OAuthClientSettings::from_env(&Env::default(), Provider::Genesys).unwrap_err();
        assert!(err.to_string().contains("GENESYS_CLIENT_ID"), "{err}");
    }
}
