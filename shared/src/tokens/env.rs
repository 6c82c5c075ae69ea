//! Where each provider's OAuth client and token secret come from in the environment.

use std::time::Duration;

use serde::Deserialize;

use super::source::TokenSource;
use super::stored::TokenStore;
use crate::aws::{read_secret, SecretError};
use crate::oauth::ClientCredentials;

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
                        return Err(config::ConfigError::Invalid {
                            name: "SERVICENOW_OAUTH_GRANT",
                            reason: "the password grant needs a username and password with the \
                                     OAuth client (secret fields or SERVICENOW_USERNAME/PASSWORD)"
                                .into(),
                        }
                        .into())
                    }
                },
                Some("client_credentials") => Grant::ClientCredentials,
                Some(other) => {
                    return Err(config::ConfigError::Invalid {
                        name: "SERVICENOW_OAUTH_GRANT",
                        reason: format!("expected password or client_credentials, got {other:?}"),
                    }
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
