//! `createIncident`: the caller's incident, created during the call, or found when the conversation has one.
//!
//! Same idempotency as servicenow-writer, keyed on the conversation: the conversation's record (and lock) in
//! the idempotency table, and the conversation key as the incident's `correlation_id`. An IVR escalation and
//! the later webhook or EventBridge events of that call give one incident (the writer adds those as work
//! notes); calling again for the conversation answers the same incident with `created: false`, and an
//! escalation for a conversation whose incident the writer made first is added to it once as a work note. A
//! create that may have been applied without an answer holds the conversation for the settle window:
//! meanwhile the incident is looked up by `correlation_id`, never created again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use tracing::warn;

use shared::clock::epoch_ms;
use shared::failure::FailureClass;
use shared::incident::{event_ref, with_event_ref};
use shared::keys::KeyConfig;
use shared::mapping::{Mapped, OnRepeat, Raise};
use shared::retry::{Attempt, Deadline, Retryable};
use shared::{InboundEvent, IncidentDraft};

use servicenow_writer::conversations::{ConversationLock, KnownIncident, Locked};
use servicenow_writer::servicenow::{IncidentRef, ServiceNowError};

use crate::callers::Known;
use crate::contract::{optional, required, Contract, Kind};

use super::{Action, ActionError, Input, Output, Services, Spec};

pub struct CreateIncident;

const SPEC: Spec = Spec {
    name: "createIncident",
    input: INPUT,
    output: OUTPUT,
};

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
    fn spec(&self) -> &'static Spec {
        &SPEC
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
        body: shared::json::Object::from(&body),
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
    let ctx = Ctx {
        services,
        mapped: &mapped,
        draft: &draft,
        key: &key,
        event_key: &event_key,
        deadline,
    };
    // Held past the deadline by the settle window, as the writer does: a create cut off at the deadline may
    // still commit, and nothing else may create before it would have.
    let until =
        || epoch_ms() + (deadline.remaining() + services.settings.settle).as_millis() as u64;
    // The caller is looked up while the conversation is locked (a lookup is safe to repeat; the create
    // needs it next).
    let (first, caller) = tokio::join!(
        store.lock(&key, until()),
        resolve_caller(services, &draft, deadline)
    );
    let mut first = Some(first);
    let mut wait = Duration::from_millis(25);
    loop {
        let locked = match first.take() {
            Some(locked) => locked,
            None => store.lock(&key, until()).await,
        };
        match locked.map_err(store_unavailable)? {
            Locked::Acquired(lock) => return ctx.under_lock(lock, caller).await,
            Locked::Busy {
                settle_until_ms: Some(_),
            } => return ctx.look_only(pending()).await,
            Locked::Busy {
                settle_until_ms: None,
            } => {
                // Another request (or the writer) is applying this conversation: wait for it, keeping time to
                // answer from what is already known.
                if !deadline.allows(wait + LOOK_ONLY_TIME, services.settings.reserve) {
                    return ctx.while_busy().await;
                }
                tokio::time::sleep(shared::retry::jitter(wait)).await;
                wait = (wait * 2).min(Duration::from_millis(250));
            }
        }
    }
}

/// Time kept, when waiting for a busy conversation, to answer from its record or a lookup instead.
const LOOK_ONLY_TIME: Duration = Duration::from_millis(600);

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

/// How a held conversation lock ends.
enum LockEnd {
    Record(KnownIncident),
    /// Kept until then (epoch ms): a create may still commit.
    Hold(u64),
    Unlock,
}

/// Ends the lock in a task of its own: a request cut off at its deadline still records, holds or releases.
async fn end_lock(services: &Services, key: &str, token: &str, end: LockEnd) {
    let (store, key, token) = (
        services.conversations.clone(),
        key.to_string(),
        token.to_string(),
    );
    let task = tokio::spawn(async move {
        let (what, result) = match end {
            LockEnd::Record(known) => (
                "record",
                store.record(&key, &token, &known).await.map(|_| ()),
            ),
            LockEnd::Hold(until) => ("hold", store.hold(&key, &token, until).await),
            LockEnd::Unlock => ("unlock", store.unlock(&key, &token).await),
        };
        if let Err(e) = result {
            // The incident carries the conversation key as correlation_id: the next call finds it.
            warn!(step = what, error = %e, "could not update the conversation record; its lock expires");
        }
    });
    if let Err(e) = task.await {
        warn!(error = %e, "conversation record update did not finish");
    }
}

/// One `createIncident` call's view of its conversation.
struct Ctx<'a> {
    services: &'a Services,
    mapped: &'a Mapped<'a>,
    draft: &'a IncidentDraft,
    key: &'a str,
    event_key: &'a str,
    deadline: Deadline,
}

impl Ctx<'_> {
    async fn under_lock(
        &self,
        lock: ConversationLock,
        caller: Option<String>,
    ) -> Result<Output, ActionError> {
        let services = self.services;
        if let Some(known) = lock.incident {
            // The conversation has its incident (the writer's, or an earlier call's): this escalation is added
            // to it once, as a work note, like any later event of the call.
            let end = match self.note_escalation(&known).await {
                Some(updated) => LockEnd::Record(updated),
                None => LockEnd::Unlock,
            };
            end_lock(services, self.key, &lock.token, end).await;
            return Ok(answer(&known.number, &known.sys_id, false));
        }
        // A record without an incident: an earlier attempt may have created it without recording it.
        match self.create_or_find(lock.existed, caller).await {
            Ok((incident, found)) => {
                let known = KnownIncident {
                    sys_id: incident.sys_id.clone(),
                    number: incident.number.clone(),
                    impact: (!found).then_some(self.draft.impact),
                    urgency: (!found).then_some(self.draft.urgency),
                    replaces: None,
                };
                end_lock(services, self.key, &lock.token, LockEnd::Record(known)).await;
                if let (false, Some(phone)) = (found, self.draft.caller_phone.as_deref()) {
                    services.callers.forget_count(phone);
                }
                Ok(answer(&incident.number, &incident.sys_id, !found))
            }
            Err(CreateError::Unconfirmed(e)) => {
                let until = epoch_ms() + services.settings.settle.as_millis() as u64;
                warn!(error = %e, settle_ms = services.settings.settle.as_millis() as u64,
                      "create unconfirmed; the conversation is held for the settle window");
                end_lock(services, self.key, &lock.token, LockEnd::Hold(until)).await;
                Err(pending())
            }
            Err(CreateError::Failed(e)) => {
                end_lock(services, self.key, &lock.token, LockEnd::Unlock).await;
                Err(ActionError::servicenow(&e))
            }
        }
    }

    /// Adds this escalation's work note to the conversation's existing incident unless it carries it already
    /// (its reference is the same for every call of the conversation), raising levels the profile allows.
    /// Best effort within the deadline: the caller is answered the number either way. Returns the incident
    /// with the levels it has now, when they changed.
    async fn note_escalation(&self, known: &KnownIncident) -> Option<KnownIncident> {
        let note = match (self.mapped.update_note(), self.mapped.on_repeat) {
            (Some(note), OnRepeat::Update) => with_event_ref(&note, self.event_key),
            _ => return None,
        };
        let budget = self
            .deadline
            .remaining()
            .saturating_sub(self.services.settings.reserve);
        let sn = &self.services.servicenow;
        let work = async {
            let state = sn.incident_state(&known.sys_id).await?;
            let Some(state) = state else {
                return Ok(None);
            };
            if state.work_notes.contains(&event_ref(self.event_key)) {
                return Ok(None);
            }
            let wanted = self.mapped.levels();
            let mut fields = serde_json::Map::new();
            fields.insert("work_notes".into(), note.clone().into());
            let mut updated = known.clone();
            for (which, new, current, slot) in [
                (
                    Raise::Impact,
                    wanted.impact,
                    state.impact,
                    &mut updated.impact,
                ),
                (
                    Raise::Urgency,
                    wanted.urgency,
                    state.urgency,
                    &mut updated.urgency,
                ),
            ] {
                *slot = current;
                if self.mapped.raise.contains(&which) && current.is_none_or(|c| new < c) {
                    let field = if which == Raise::Impact {
                        "impact"
                    } else {
                        "urgency"
                    };
                    fields.insert(field.into(), new.to_string().into());
                    *slot = Some(new);
                }
            }
            sn.update_incident(&known.sys_id, &fields).await?;
            Ok::<_, ServiceNowError>(Some(updated))
        };
        match tokio::time::timeout(budget, work).await {
            Ok(Ok(updated)) => updated,
            Ok(Err(e)) => {
                warn!(incident_number = %known.number, error = %e, "escalation note not added to the existing incident");
                None
            }
            Err(_) => {
                warn!(incident_number = %known.number, "escalation note not added in time to the existing incident");
                None
            }
        }
    }

    /// The conversation is held after a create that may still commit, or busy until the deadline: look,
    /// never create; `otherwise` when nothing is found.
    async fn look_only(&self, otherwise: ActionError) -> Result<Output, ActionError> {
        let sn = &self.services.servicenow;
        let found = self
            .services
            .retrier()
            .run(
                self.deadline,
                |_| sn.find_by_correlation_id(self.key),
                |_, _| {},
            )
            .await
            .map_err(|e| ActionError::servicenow(&e))?;
        match found {
            Some(incident) => Ok(answer(&incident.number, &incident.sys_id, false)),
            None => Err(otherwise),
        }
    }

    /// Still busy near the deadline: the incident the record names, else one ServiceNow has, else 503.
    async fn while_busy(&self) -> Result<Output, ActionError> {
        let recorded = self
            .services
            .conversations
            .incident(self.key)
            .await
            .map_err(store_unavailable)?;
        if let Some(known) = recorded {
            return Ok(answer(&known.number, &known.sys_id, false));
        }
        self.look_only(ActionError::Unavailable {
            code: "conversation_busy",
            message: "another request for this conversation is still being applied".into(),
            retry_after: Some(Duration::from_secs(1)),
        })
        .await
    }

    /// Creates the incident (retrying within the deadline), looking it up by `correlation_id` first when an
    /// earlier attempt may have created it. Returns it and whether it was found.
    async fn create_or_find(
        &self,
        reconcile: bool,
        caller: Option<String>,
    ) -> Result<(IncidentRef, bool), CreateError> {
        // Whether the attempt cut off last had sent its create: only then may it have been applied.
        let sent = AtomicBool::new(false);
        let result = self
            .services
            .retrier()
            .run(
                self.deadline,
                |a: Attempt| {
                    sent.store(false, Ordering::SeqCst);
                    self.attempt(reconcile || a.after_ambiguous, caller.clone(), &sent)
                },
                |e, n| warn!(error = ?e, attempt = n.failed_attempt, delay_ms = n.delay.as_millis() as u64, "ServiceNow call failed; retrying"),
            )
            .await;
        match result {
            Err(CreateError::Unconfirmed(_)) if !sent.load(Ordering::SeqCst) => {
                // Cut off while looking up, before the create was sent: nothing to wait for.
                Err(CreateError::Failed(ServiceNowError::OutOfTime))
            }
            other => other,
        }
    }

    async fn attempt(
        &self,
        reconcile: bool,
        caller: Option<String>,
        sent: &AtomicBool,
    ) -> Result<(IncidentRef, bool), CreateError> {
        let sn = &self.services.servicenow;
        if reconcile {
            if let Some(found) = sn
                .find_by_correlation_id(&self.draft.correlation_id)
                .await
                .map_err(CreateError::Failed)?
            {
                return Ok((found, true));
            }
        }
        let mut body = self.draft.clone();
        if body.caller_id.is_none() {
            body.caller_id = caller;
        }
        body.work_notes = with_event_ref(&self.draft.work_notes, self.event_key);
        sent.store(true, Ordering::SeqCst);
        match sn.create_incident(&body).await {
            Ok(created) => Ok((created.incident, created.existed)),
            Err(e) if e.ambiguous() && !self.services.settings.settle.is_zero() => {
                Err(CreateError::Unconfirmed(e))
            }
            Err(e) => Err(CreateError::Failed(e)),
        }
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
            // Cut off mid-attempt: the create may have been sent (`create_or_find` knows whether it was).
            true => CreateError::Unconfirmed(ServiceNowError::Transport(format!(
                "no answer within the request's remaining {} ms",
                budget.as_millis()
            ))),
            false => CreateError::Failed(ServiceNowError::OutOfTime),
        }
    }
}

/// The longest the caller lookup may take: the create comes after it, and matters more.
const CALLER_LOOKUP_MAX: Duration = Duration::from_millis(1500);

/// The caller's `sys_user` (through the caller cache), else the default caller. Never fails: a slow,
/// failing or refused lookup gives the default caller, so the incident is still created in time.
async fn resolve_caller(
    services: &Services,
    draft: &IncidentDraft,
    deadline: Deadline,
) -> Option<String> {
    let default = || services.settings.default_caller_sys_id.clone();
    let phone = draft.caller_phone.as_deref()?;
    if let Some(known) = services.callers.get(phone) {
        return known.profile.map(|p| p.sys_id).or_else(default);
    }
    let budget = CALLER_LOOKUP_MAX.min(deadline.remaining() / 3);
    match tokio::time::timeout(budget, services.servicenow.caller_profile(phone)).await {
        Ok(Ok(profile)) => {
            let sys_id = profile.as_ref().map(|p| p.sys_id.clone());
            services.callers.put(
                phone,
                Known {
                    profile,
                    open_incidents: None,
                },
            );
            sys_id.or_else(default)
        }
        Ok(Err(e)) => {
            warn!(error = %e, "caller lookup failed; the incident gets the default caller");
            default()
        }
        Err(_) => {
            warn!(
                budget_ms = budget.as_millis() as u64,
                "caller lookup too slow; the incident gets the default caller"
            );
            default()
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
