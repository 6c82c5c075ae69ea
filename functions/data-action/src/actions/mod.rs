//! The actions Architect can call. Each is one module declaring its input and output contract; adding one is
//! that module and one line in [`registry`].

pub mod create_incident;
pub mod lookup_caller;
pub mod lookup_incident;

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use shared::failure::FailureClass;
use shared::retry::Deadline;
use shared::Mapping;

use servicenow_writer::conversations::ConversationStore;
use servicenow_writer::servicenow::{ServiceNowClient, ServiceNowError};

use crate::callers::CallerCache;
use crate::contract::{Contract, FieldError};

/// An action's input, checked against its contract (`null`s dropped).
pub type Input = Map<String, Value>;
/// An action's answer, checked against its contract before it is sent.
pub type Output = Map<String, Value>;

/// What an action declares: its name in the URL (`POST …/data-actions/{name}`) and its contracts.
pub struct Spec {
    pub name: &'static str,
    pub input: Contract,
    pub output: Contract,
}

pub trait Action: Send + Sync {
    fn spec(&self) -> &'static Spec;
    fn name(&self) -> &'static str {
        self.spec().name
    }
    fn input(&self) -> &'static Contract {
        &self.spec().input
    }
    fn output(&self) -> &'static Contract {
        &self.spec().output
    }
    /// The conversation the call is about, for the audit log (an identifier, never PII).
    fn conversation_id<'i>(&self, input: &'i Input) -> Option<&'i str> {
        ["conversationId", "callId"]
            .iter()
            .find_map(|k| input.get(*k).and_then(Value::as_str))
    }
    fn run<'a>(
        &'a self,
        services: &'a Services,
        input: &'a Input,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Output, ActionError>>;
}

/// Every action this function serves.
pub fn registry() -> Vec<Box<dyn Action>> {
    vec![
        Box::new(create_incident::CreateIncident),
        Box::new(lookup_incident::LookupIncident),
        Box::new(lookup_caller::LookupCaller),
    ]
}

/// What the actions use: built once per cold start.
pub struct Services {
    pub servicenow: ServiceNowClient,
    pub conversations: ConversationStore,
    pub mapping: Mapping,
    pub callers: CallerCache,
    pub settings: Settings,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The event type `createIncident` maps as (its mapping profile): `ivr:escalation`.
    pub event_type: String,
    /// After a create that may have been applied without an answer, nothing is created for the conversation
    /// until this long after (it is looked up instead): the writer's `WRITER_SETTLE_SECONDS`.
    pub settle: Duration,
    pub retry: shared::retry::RetryPolicy,
    /// Time kept back from the deadline to record the outcome and answer.
    pub reserve: Duration,
    pub default_caller_sys_id: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            event_type: "ivr:escalation".into(),
            settle: Duration::from_secs(90),
            retry: shared::retry::RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(1),
                max_retry_after: Duration::from_secs(3),
            },
            reserve: Duration::from_millis(400),
            default_caller_sys_id: None,
        }
    }
}

impl Services {
    /// The retry engine for ServiceNow calls inside one request's deadline.
    pub fn retrier(&self) -> shared::retry::Retrier {
        shared::retry::Retrier {
            policy: self.settings.retry,
            reserve: self.settings.reserve,
            attempt_timeout: Duration::MAX,
            min_attempt: Duration::from_millis(200),
        }
    }
}

/// Why an action did not answer with its output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// 400: the input is well-typed but unusable (each field named).
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// 503: worth calling again later (ServiceNow or DynamoDB unavailable, out of time).
    #[error("{code}: {message}")]
    Unavailable {
        code: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    /// 502: ServiceNow refused, or answered what cannot be used; calling again will not help.
    #[error("{code}: {message}")]
    Upstream { code: &'static str, message: String },
}

impl ActionError {
    pub fn invalid(field: &str, problem: impl Into<String>) -> Self {
        ActionError::Invalid(vec![FieldError::new(field, problem)])
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        ActionError::Unavailable {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ActionError::Invalid(_) => "invalid_input",
            ActionError::Unavailable { code, .. } | ActionError::Upstream { code, .. } => code,
        }
    }

    /// A ServiceNow failure, by its class. Genesys gets a fixed message (and the status); the detail goes to
    /// the log only.
    pub fn servicenow(e: &ServiceNowError) -> Self {
        tracing::warn!(error = %e, "ServiceNow call failed");
        let status = e
            .http_status()
            .map(|s| format!(" (HTTP {s})"))
            .unwrap_or_default();
        match (e, e.class()) {
            (ServiceNowError::Untrustworthy(_), _) => ActionError::Upstream {
                code: "servicenow_lookup_untrustworthy",
                message: "ServiceNow's answer to a lookup cannot be trusted: the integration user needs read \
                          access to the table and its fields"
                    .into(),
            },
            (_, FailureClass::Transient) => ActionError::Unavailable {
                code: "servicenow_unavailable",
                message: format!("ServiceNow did not answer in time or is unavailable{status}"),
                retry_after: e.retry_after(),
            },
            (_, FailureClass::Permanent) => ActionError::Upstream {
                code: "servicenow_rejected",
                message: format!("ServiceNow refused the request{status}"),
            },
        }
    }
}
