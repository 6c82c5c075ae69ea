//! Shared core of the Genesys ↔ ServiceNow integration: event envelopes, incident mapping,
//! priority rules, PII redaction, webhook signatures, idempotency keys and retry policy.

#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod config;
pub mod event;
pub mod failure;
#[cfg(feature = "tokens")]
pub mod genesys;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "client")]
pub mod http_client;
#[cfg(feature = "dynamodb")]
pub mod idempotency;
pub mod incident;
pub mod json;
pub mod keys;
pub mod logging;
pub mod mapping;
pub mod metrics;
#[cfg(feature = "oauth")]
pub mod oauth;
pub mod percent;
pub mod priority;
pub mod ratelimit;
pub mod redact;
pub mod retry;
pub mod signature;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tokens")]
pub mod tokens;

pub use event::{EnvelopeError, EnvelopeKind, InboundEvent};
pub use failure::FailureClass;
pub use incident::IncidentDraft;
pub use mapping::{Mapping, MappingError};

/// The error type of tools (the local runner, simulators): anything that can explain itself.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a function cannot start: each names the setting, secret or file to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("mapping: {0}")]
    Mapping(#[from] mapping::MappingLoadError),
    #[cfg(feature = "aws")]
    #[error(transparent)]
    Secret(#[from] aws::SecretError),
    #[cfg(feature = "client")]
    #[error("HTTP client could not be built: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// A setting's value or the content it points at is unusable.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

impl StartupError {
    pub fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        StartupError::Invalid {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// The current UTC time in RFC 3339, for message attributes and logs.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
