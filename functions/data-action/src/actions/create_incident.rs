//! `createIncident`: the caller's incident, created during the call, or found when the conversation has one.
//!
//! Same idempotency as servicenow-writer, keyed on the conversation: the conversation's record (and lock) in
//! the idempotency table, and the conversation key as the incident's `correlation_id`. An IVR escalation and
//! the later webhook or EventBridge events of that call give one incident (the writer adds those as work
//! notes); calling again for the conversation answers the same incident with `created: false`. A create that
//! may have been applied without an answer holds the conversation for the settle window: meanwhile the
//! incident is looked up by `correlation_id`, never created again.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use tracing::warn;

use shared::clock::epoch_ms;
use shared::failure::FailureClass;
use shared::incident::with_event_ref;
use shared::keys::KeyConfig;
use shared::retry::{Attempt, Deadline, Retryable};
use shared::{InboundEvent, IncidentDraft};

use servicenow_writer::conversations::{ConversationLock, KnownIncident, Locked};
use servicenow_writer::servicenow::{IncidentRef, ServiceNowError};

use crate::callers::Known;
use crate::contract::{optional, required, Contract, Kind};

use super::{Action, ActionError, Input, Output, Services};

pub struct CreateIncident;

const INPUT: Contract = Contract {
    fields: &[
        optional(
            "conversationId",
            Kind::String,
            "The Genesys conversation (Call.ConversationId).",
        ),
        optional(
            "callId",
            Kind::String,
            "The same, as seed 001's IVR body names it.",
        ),
        optional(
            "customerPhone",
            Kind::String,
            "The caller's number (Call.Ani).",
        ),
        optional(
            "ani",
            Kind::String,
            "The caller's number, as Genesys conversation events name it.",
        ),
        optional(
            "escalationReason",
            Kind::String,
            "Why the IVR escalates (free text, redacted).",
        ),
        optional("queueName", Kind::String, "The queue the call is in."),
        optional("direction", Kind::String, "inbound or outbound."),
        optional(
            "agentUserId",
            Kind::String,
            "The Genesys user id of the agent, if any.",
        ),
        optional(
            "userId",
            Kind::String,
            "The same, as Genesys conversation events name it.",
        ),
        optional("startTime", Kind::String, "ISO-8601."),
        optional("endTime", Kind::String, "ISO-8601."),
        optional("ticketPriority", Kind::String, "High, Medium or Low."),
    ],
};

const OUTPUT: Contract = Contract {
    fields: &[
        required("incidentNumber", Kind::String, "e.g. INC0010001"),
        required("sysId", Kind::String, "The incident's sys_id."),
        required(
            "created",
            Kind::Boolean,
            "false when the conversation already had the incident.",
        ),
        required(
            "spokenNumber",
            Kind::String,
            "The number spaced for text-to-speech: I N C 0 0 1 0 0 0 1",
        ),
    ],
};

/// Input names that mean the same as the IVR body's (the Genesys event name first).
const ALIASES: &[(&str, &str)] = &[
    ("conversationId", "callId"),
    ("ani", "customerPhone"),
    ("userId", "agentUserId"),
];

impl Action for CreateIncident {
    fn name(&self) -> &'static str {
        "createIncident"
    }
    fn input(&self) -> &Contract {
        &INPUT
    }
    fn output(&self) -> &Contract {
        &OUTPUT
    }
    fn run<'a>(
        &'a self,
        services: &'a Services,
        input: &'a Input,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Output, ActionError>> {
        Box::pin(create(services, input, deadline))
    }
}

/// A conversation id as an identifier (a UUID in Genesys), or a 400 naming `field`.
pub fn conversation_id<'a>(raw: &'a str, field: &str) -> Result<&'a str, ActionError> {
    let id = raw.trim();
    let ok = (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    match ok {
        true => Ok(id),
        false => Err(ActionError::invalid(
            field,
            "must be a conversation id (letters, digits, - _ . : and at most 128 of them)",
        )),
    }
}

/// The IVR escalation body the mapping profile reads, from either naming.
fn ivr_body(input: &Input) -> Result<Map<String, Value>, ActionError> {
    let mut body = input.clone();
    for (alias, name) in ALIASES {
        if let Some(v) = body.remove(*alias) {
            match body.get(*name) {
                Some(existing) if existing != &v => {
                    return Err(ActionError::invalid(
                        name,
                        format!("differs from {alias}: send one of them"),
                    ))
                }
                _ => {
                    body.insert(name.to_string(), v);
                }
            }
        }
    }
    let id = body
        .get("callId")
        .and_then(Value::as_str)
        .ok_or_else(|| ActionError::invalid("conversationId", "is required (or callId)"))?;
    let id = conversation_id(id, "conversationId")?.to_string();
    body.insert("callId".into(), json!(id));
    Ok(body)
}

async fn create(
    services: &Services,
    input: &Input,
    deadline: Deadline,
) -> Result<Output, ActionError> {
    let body = ivr_body(input)?;
    let conversation = body["callId"].as_str().unwrap_or_default().to_string();
    let event = InboundEvent {
        kind: shared::EnvelopeKind::Webhook,
        event_type: services.settings.event_type.clone(),
        event_id: Some(format!("data-action:createIncident:{conversation}")),
        organization_id: None,
        timestamp: Some(shared::now_rfc3339()),
        body,
    };
    let event_key = KeyConfig::default().derive(&event).key;
    let mapped = services
        .mapping
        .apply(&event, &event_key)
        .map_err(|e| ActionError::Upstream {
            code: "mapping_failed",
            message: e.to_string(),
        })?;
    if !mapped.per_conversation() {
        return Err(ActionError::Upstream {
            code: "mapping_not_per_conversation",
            message: format!(
                "the mapping profile {} (event type {}) must name a conversation and not create an incident per event",
                mapped.profile, services.settings.event_type
            ),
        });
    }
    let draft = mapped.incident();
    let key = mapped.incident_key.clone();
    let store = &services.conversations;
    let mut wait = Duration::from_millis(25);
    // Held past the deadline by the settle window, as the writer does: a create cut off at the deadline may
    // still commit, and nothing else may create before it would have.
    let until =
        || epoch_ms() + (deadline.remaining() + services.settings.settle).as_millis() as u64;
    // The caller is looked up while the conversation is locked (a lookup is safe to repeat; the create
    // needs it next).
    let (first, ()) = tokio::join!(
        store.lock(&key, until()),
        prefetch_caller(services, &draft, deadline)
    );
    let mut first = Some(first);
    loop {
        let locked = match first.take() {
            Some(locked) => locked,
            None => store.lock(&key, until()).await,
        };
        match locked.map_err(store_unavailable)? {
            Locked::Acquired(lock) => {
                return under_lock(services, lock, &key, &draft, &event_key, deadline).await
            }
            Locked::Busy {
                settle_until_ms: Some(_),
            } => return settling(services, &key, deadline).await,
            Locked::Busy {
                settle_until_ms: None,
            } => {
                // Another request (or the writer) is applying this conversation: wait for its answer.
                if !deadline.allows(wait, services.settings.reserve) {
                    return Err(ActionError::Unavailable {
                        code: "conversation_busy",
                        message: "another request for this conversation is still being applied"
                            .into(),
                        retry_after: Some(Duration::from_secs(1)),
                    });
                }
                tokio::time::sleep(shared::retry::jitter(wait)).await;
                wait = (wait * 2).min(Duration::from_millis(250));
            }
        }
    }
}

fn store_unavailable(e: impl std::fmt::Display) -> ActionError {
    ActionError::unavailable("store_unavailable", format!("the idempotency table: {e}"))
}

fn answer(number: &str, sys_id: &str, created: bool) -> Output {
    let mut out = Output::new();
    out.insert("incidentNumber".into(), json!(number));
    out.insert("sysId".into(), json!(sys_id));
    out.insert("created".into(), json!(created));
    out.insert("spokenNumber".into(), json!(spoken(number)));
    out
}

/// `INC0010001` → `I N C 0 0 1 0 0 0 1`: read out one character at a time.
pub fn spoken(number: &str) -> String {
    let chars: Vec<String> = number
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase().to_string())
        .collect();
    chars.join(" ")
}

const PENDING: &str = "ServiceNow did not confirm the create in time and may still commit it; call createIncident \
                       again for this conversation: it finds that incident instead of creating another";

fn pending() -> ActionError {
    ActionError::Unavailable {
        code: "incident_pending",
        message: PENDING.into(),
        retry_after: Some(Duration::from_secs(2)),
    }
}

async fn under_lock(
    services: &Services,
    lock: ConversationLock,
    key: &str,
    draft: &IncidentDraft,
    event_key: &str,
    deadline: Deadline,
) -> Result<Output, ActionError> {
    let store = &services.conversations;
    if let Some(known) = lock.incident {
        if let Err(e) = store.unlock(key, &lock.token).await {
            warn!(error = %e, "could not release the conversation lock; it expires");
        }
        return Ok(answer(&known.number, &known.sys_id, false));
    }
    // A record without an incident: an earlier attempt may have created it without recording it.
    let result = create_or_find(services, draft, lock.existed, event_key, deadline).await;
    match result {
        Ok((incident, found)) => {
            let known = KnownIncident {
                sys_id: incident.sys_id.clone(),
                number: incident.number.clone(),
                impact: (!found).then_some(draft.impact),
                urgency: (!found).then_some(draft.urgency),
                replaces: None,
            };
            if let Err(e) = store.record(key, &lock.token, &known).await {
                // The incident carries the conversation key as correlation_id: the next call finds it.
                warn!(incident_number = %known.number, error = %e, "could not record the conversation's incident");
            }
            if let (false, Some(phone)) = (found, draft.caller_phone.as_deref()) {
                services.callers.forget_count(phone);
            }
            Ok(answer(&incident.number, &incident.sys_id, !found))
        }
        Err(CreateError::Unconfirmed(e)) => {
            let until = epoch_ms() + services.settings.settle.as_millis() as u64;
            if let Err(se) = store.hold(key, &lock.token, until).await {
                warn!(error = %se, "could not hold the conversation after an unconfirmed create; its lock still covers the settle window");
            }
            warn!(error = %e, settle_ms = services.settings.settle.as_millis() as u64,
                  "create unconfirmed; the conversation is held for the settle window");
            Err(pending())
        }
        Err(CreateError::Failed(e)) => {
            if let Err(se) = store.unlock(key, &lock.token).await {
                warn!(error = %se, "could not release the conversation lock; it expires");
            }
            Err(ActionError::servicenow(&e))
        }
    }
}

/// The conversation is held after a create that may still commit: look, never create.
async fn settling(
    services: &Services,
    key: &str,
    deadline: Deadline,
) -> Result<Output, ActionError> {
    let sn = &services.servicenow;
    let found = services
        .retrier()
        .run(deadline, |_| sn.find_by_correlation_id(key), |_, _| {})
        .await
        .map_err(|e| ActionError::servicenow(&e))?;
    match found {
        Some(incident) => Ok(answer(&incident.number, &incident.sys_id, false)),
        None => Err(pending()),
    }
}

/// Why the create did not happen.
#[derive(Debug)]
enum CreateError {
    Failed(ServiceNowError),
    /// It may have been applied: not retried now (ServiceNow may commit it long after the client gave up).
    Unconfirmed(ServiceNowError),
}

impl Retryable for CreateError {
    fn class(&self) -> FailureClass {
        match self {
            CreateError::Failed(e) => e.class(),
            CreateError::Unconfirmed(_) => FailureClass::Permanent,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            CreateError::Failed(e) => e.retry_after(),
            CreateError::Unconfirmed(_) => None,
        }
    }
    fn ambiguous(&self) -> bool {
        match self {
            CreateError::Failed(e) => e.ambiguous(),
            CreateError::Unconfirmed(_) => true,
        }
    }
    fn out_of_time(budget: Duration, started: bool) -> Self {
        match started {
            // Cut off mid-attempt: the create may have been sent.
            true => CreateError::Unconfirmed(ServiceNowError::Transport(format!(
                "no answer within the request's remaining {} ms",
                budget.as_millis()
            ))),
            false => CreateError::Failed(ServiceNowError::OutOfTime),
        }
    }
}

/// Creates the incident (retrying within the deadline), looking it up by `correlation_id` first when an
/// earlier attempt may have created it. Returns it and whether it was found.
async fn create_or_find(
    services: &Services,
    draft: &IncidentDraft,
    reconcile: bool,
    event_key: &str,
    deadline: Deadline,
) -> Result<(IncidentRef, bool), CreateError> {
    let caller = tokio::sync::OnceCell::new();
    services
        .retrier()
        .run(
            deadline,
            |a: Attempt| attempt(services, draft, &caller, reconcile || a.after_ambiguous, event_key),
            |e, n| warn!(error = ?e, attempt = n.failed_attempt, delay_ms = n.delay.as_millis() as u64, "ServiceNow call failed; retrying"),
        )
        .await
}

async fn attempt(
    services: &Services,
    draft: &IncidentDraft,
    caller: &tokio::sync::OnceCell<Option<String>>,
    reconcile: bool,
    event_key: &str,
) -> Result<(IncidentRef, bool), CreateError> {
    let sn = &services.servicenow;
    if reconcile {
        if let Some(found) = sn
            .find_by_correlation_id(&draft.correlation_id)
            .await
            .map_err(CreateError::Failed)?
        {
            return Ok((found, true));
        }
    }
    let mut body = draft.clone();
    if body.caller_id.is_none() {
        body.caller_id = caller
            .get_or_try_init(|| resolve_caller(services, draft))
            .await
            .map_err(CreateError::Failed)?
            .clone();
    }
    body.work_notes = with_event_ref(&draft.work_notes, event_key);
    match sn.create_incident(&body).await {
        Ok(created) => Ok((created.incident, created.existed)),
        Err(e) if e.ambiguous() && !services.settings.settle.is_zero() => {
            Err(CreateError::Unconfirmed(e))
        }
        Err(e) => Err(CreateError::Failed(e)),
    }
}

/// Fills the caller cache for the draft's number, when it has none yet. Failures are left to the create
/// attempt, which asks again and handles them.
async fn prefetch_caller(services: &Services, draft: &IncidentDraft, deadline: Deadline) {
    if let Some(phone) = draft.caller_phone.as_deref() {
        if services.callers.get(phone).is_none() {
            let budget = deadline
                .remaining()
                .saturating_sub(services.settings.reserve);
            let _ = tokio::time::timeout(budget, resolve_caller(services, draft)).await;
        }
    }
}

/// The caller's `sys_user` (through the caller cache), else the default caller.
async fn resolve_caller(
    services: &Services,
    draft: &IncidentDraft,
) -> Result<Option<String>, ServiceNowError> {
    let default = || services.settings.default_caller_sys_id.clone();
    let Some(phone) = draft.caller_phone.as_deref() else {
        return Ok(default());
    };
    if let Some(known) = services.callers.get(phone) {
        return Ok(known.profile.map(|p| p.sys_id).or_else(default));
    }
    match services.servicenow.caller_profile(phone).await {
        Ok(profile) => {
            let sys_id = profile.as_ref().map(|p| p.sys_id.clone());
            services.callers.put(
                phone,
                Known {
                    profile,
                    open_incidents: None,
                },
            );
            Ok(sys_id.or_else(default))
        }
        Err(e) if e.class() == FailureClass::Transient => Err(e),
        Err(e) => {
            // No read access to sys_user, say: the incident matters more than its caller.
            warn!(error = %e, "caller lookup refused; using the default caller");
            Ok(default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_spelled_out() {
        assert_eq!(spoken("INC0010001"), "I N C 0 0 1 0 0 0 1");
        assert_eq!(spoken(""), "");
    }

    #[test]
    fn both_namings_map_to_the_ivr_body() {
        let input = |v: Value| v.as_object().cloned().unwrap();
        let body = ivr_body(&input(
            json!({"conversationId": " c-1 ", "ani": "+15550100", "userId": "u"}),
        ))
        .unwrap();
        assert_eq!(
            body,
            input(json!({"callId": "c-1", "customerPhone": "+15550100", "agentUserId": "u"}))
        );
        let err = ivr_body(&input(json!({"conversationId": "a", "callId": "b"}))).unwrap_err();
        assert_eq!(
            err,
            ActionError::invalid("callId", "differs from conversationId: send one of them")
        );
        assert!(ivr_body(&input(json!({"customerPhone": "+15550100"}))).is_err());
        assert!(ivr_body(&input(json!({"callId": "a b"}))).is_err());
        assert!(ivr_body(&input(json!({"callId": "x".repeat(129)}))).is_err());
    }
}
