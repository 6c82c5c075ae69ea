//! data-action's configuration: read from the environment without I/O ([`Config::from_env`]), then built into
//! [`DataActions`] at cold start ([`build`]: the mapping, credentials from Secrets Manager, clients).

use std::time::Duration;

use shared::config::{ConfigError, Env};
use shared::tokens::{Rotating, DEFAULT_FORCED_REFRESH_INTERVAL, FORCED_REFRESH_INTERVAL_VAR};
use shared::StartupError;

use servicenow_writer::config::ServiceNowSettings;
use servicenow_writer::conversations::ConversationStore;

use crate::actions::{Services, Settings};
use crate::auth::{Authenticator, Mode};
use crate::callers::CallerCache;
use crate::DataActions;

#[derive(Debug, Clone)]
pub struct Config {
    pub servicenow: ServiceNowSettings,
    /// The writer's idempotency table: conversation records are shared with it.
    pub idempotency_table: String,
    pub conversation_ttl: Duration,
    pub mapping_file: Option<String>,
    pub auth_mode: Mode,
    /// `DATA_ACTION_CREDENTIALS_SECRET_ID`: the credentials Architect's calls must present.
    pub credentials_secret_id: String,
    /// How often (at most) the credentials secret is re-read when a caller presents others.
    pub credentials_reload_interval: Duration,
    /// Answer within this, below the data action's timeout in Genesys.
    pub deadline: Duration,
    pub caller_cache_ttl: Duration,
    pub settings: Settings,
    pub import_set_table: Option<String>,
}

impl Config {
    /// Reads the configuration from the process environment (see README). No I/O.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Self, ConfigError> {
        let d = Settings::default();
        let auth_mode = match env.choice("DATA_ACTION_AUTH", &["basic", "header", "oauth"])? {
            "basic" => Mode::Basic,
            "header" => {
                let raw = env
                    .optional("DATA_ACTION_AUTH_HEADER")
                    .unwrap_or_else(|| "X-Api-Key".into());
                let name = http::HeaderName::from_bytes(raw.trim().as_bytes()).map_err(|_| {
                    ConfigError::Invalid {
                        name: "DATA_ACTION_AUTH_HEADER",
                        reason: "not a valid HTTP header name".into(),
                    }
                })?;
                if name == http::header::AUTHORIZATION {
                    return Err(ConfigError::Invalid {
                        name: "DATA_ACTION_AUTH_HEADER",
                        reason: "use DATA_ACTION_AUTH=basic or oauth for Authorization".into(),
                    });
                }
                Mode::Header { name }
            }
            _ => {
                let secs: u64 = env.parse_or("DATA_ACTION_TOKEN_LIFETIME_SECONDS", 900)?;
                if !(60..=86_400).contains(&secs) {
                    return Err(ConfigError::Invalid {
                        name: "DATA_ACTION_TOKEN_LIFETIME_SECONDS",
                        reason: "must be between 60 and 86400".into(),
                    });
                }
                Mode::OAuth {
                    token_lifetime: Duration::from_secs(secs),
                }
            }
        };
        let deadline = env.millis_or("DATA_ACTION_DEADLINE_MS", 5000)?;
        // API Gateway's HTTP API gives an integration 30 s; template.yaml's function timeout is 29 s.
        if !(Duration::from_millis(500)..=Duration::from_secs(25)).contains(&deadline) {
            return Err(ConfigError::Invalid {
                name: "DATA_ACTION_DEADLINE_MS",
                reason: "must be between 500 and 25000 (below the data action's timeout in Genesys and API \
                         Gateway's 30 s)"
                    .into(),
            });
        }
        Ok(Self {
            servicenow: ServiceNowSettings::from_vars(env)?,
            idempotency_table: env.required("IDEMPOTENCY_TABLE")?,
            conversation_ttl: env.hours_or("CONVERSATION_TTL_HOURS", 14 * 24)?,
            mapping_file: shared::mapping::mapping_file(env),
            auth_mode,
            credentials_secret_id: env.required("DATA_ACTION_CREDENTIALS_SECRET_ID")?,
            credentials_reload_interval: env.secs_or(
                FORCED_REFRESH_INTERVAL_VAR,
                DEFAULT_FORCED_REFRESH_INTERVAL.as_secs(),
            )?,
            deadline,
            caller_cache_ttl: env.secs_or("DATA_ACTION_CALLER_CACHE_SECONDS", 300)?,
            settings: Settings {
                event_type: env
                    .optional("DATA_ACTION_EVENT_TYPE")
                    .unwrap_or(d.event_type),
                settle: env.secs_or("WRITER_SETTLE_SECONDS", d.settle.as_secs())?,
                retry: shared::retry::RetryPolicy {
                    max_attempts: env
                        .parse_or("DATA_ACTION_RETRY_MAX_ATTEMPTS", d.retry.max_attempts)?
                        .max(1),
                    ..d.retry
                },
                reserve: d.reserve,
                default_caller_sys_id: env.optional("SERVICENOW_DEFAULT_CALLER_SYS_ID"),
            },
            import_set_table: env.optional("SERVICENOW_IMPORT_SET_TABLE"),
        })
    }
}

/// data-action at cold start: the mapping loaded and checked (its profile for `DATA_ACTION_EVENT_TYPE` must
/// exist), the credentials read, clients built.
pub async fn build(
    config: Config,
    aws: &aws_config::SdkConfig,
) -> Result<DataActions, StartupError> {
    let mapping = shared::mapping::load_mapping(config.mapping_file.as_deref())?;
    let probe = shared::InboundEvent {
        kind: shared::EnvelopeKind::Webhook,
        event_type: config.settings.event_type.clone(),
        event_id: None,
        organization_id: None,
        timestamp: None,
        body: Default::default(),
    };
    if mapping.select(&probe).is_none() {
        return Err(StartupError::invalid(
            "DATA_ACTION_EVENT_TYPE",
            format!(
                "no mapping profile handles {:?} (the built-in ivr-escalation profile handles ivr:escalation)",
                config.settings.event_type
            ),
        ));
    }
    let secrets = aws_sdk_secretsmanager::Client::new(aws);
    let id = &config.credentials_secret_id;
    let raw = shared::aws::read_secret(&secrets, id).await?;
    let mode = config.auth_mode.clone();
    let credentials = mode
        .parse_secret(&raw)
        .map_err(|reason| StartupError::invalid(format!("secret {id}"), reason))?;
    let parse = std::sync::Arc::new(move |raw: &str| mode.parse_secret(raw));
    // The version before a rotation stays accepted: Genesys can be switched after the secret.
    let previous = match shared::aws::read_previous_secret(&secrets, id).await? {
        Some(raw) => match config.auth_mode.parse_secret(&raw) {
            Ok(previous) => Some(previous),
            Err(reason) => {
                tracing::warn!(secret = %id, %reason, "AWSPREVIOUS data action credentials ignored");
                None
            }
        },
        None => None,
    };
    let auth = Authenticator::new(
        config.auth_mode.clone(),
        Rotating::from_secret(
            credentials,
            secrets.clone(),
            id.clone(),
            parse,
            config.credentials_reload_interval,
        ),
    )
    .with_previous(previous);
    let servicenow = config
        .servicenow
        .build(&secrets)
        .await?
        .with_import_set(config.import_set_table.clone());
    let services = Services {
        servicenow,
        conversations: ConversationStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            config.idempotency_table.clone(),
            config.conversation_ttl,
        ),
        mapping,
        callers: CallerCache::new(config.caller_cache_ttl),
        settings: config.settings,
    };
    Ok(DataActions::new(services, auth, config.deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let base = [
            ("IDEMPOTENCY_TABLE", "idem"),
            ("SERVICENOW_INSTANCE_URL", "https://example.service-now.com"),
            ("SERVICENOW_CREDENTIALS_SECRET_ID", "sn-basic"),
            ("DATA_ACTION_CREDENTIALS_SECRET_ID", "da-creds"),
        ];
        Env::from_pairs(base.iter().chain(extra).copied())
    }

    #[test]
    fn defaults() {
        let c = Config::from_vars(&env(&[])).unwrap();
        assert_eq!(c.auth_mode, Mode::Basic);
        assert_eq!(c.deadline, Duration::from_secs(5));
        assert_eq!(c.settings.settle, Duration::from_secs(90));
        assert_eq!(c.settings.event_type, "ivr:escalation");
        assert_eq!(c.caller_cache_ttl, Duration::from_secs(300));
        let c = Config::from_vars(&env(&[("DATA_ACTION_AUTH", "header")])).unwrap();
        assert!(matches!(c.auth_mode, Mode::Header { ref name } if name == "x-api-key"));
        let c = Config::from_vars(&env(&[("DATA_ACTION_AUTH", "oauth")])).unwrap();
        assert_eq!(
            c.auth_mode,
            Mode::OAuth {
                token_lifetime: Duration::from_secs(900)
            }
        );
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        for (name, value) in [
            ("DATA_ACTION_AUTH", "kerberos"),
            ("DATA_ACTION_DEADLINE_MS", "26000"),
            ("DATA_ACTION_DEADLINE_MS", "soon"),
            ("DATA_ACTION_CALLER_CACHE_SECONDS", "-1"),
            ("WRITER_SETTLE_SECONDS", "x"),
        ] {
            let err = Config::from_vars(&env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        for (mode, name, value) in [
            ("header", "DATA_ACTION_AUTH_HEADER", "bad header"),
            ("header", "DATA_ACTION_AUTH_HEADER", "authorization"),
            ("oauth", "DATA_ACTION_TOKEN_LIFETIME_SECONDS", "5"),
        ] {
            let err =
                Config::from_vars(&env(&[("DATA_ACTION_AUTH", mode), (name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let missing = Config::from_vars(&Env::from_pairs([
            ("IDEMPOTENCY_TABLE", "t"),
            ("SERVICENOW_INSTANCE_URL", "https://x"),
            ("SERVICENOW_CREDENTIALS_SECRET_ID", "s"),
        ]))
        .unwrap_err();
        assert!(missing
            .to_string()
            .contains("DATA_ACTION_CREDENTIALS_SECRET_ID"));
    }
}
