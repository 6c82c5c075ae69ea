//! `lookupIncident`: a conversation's incident (or an incident by number) → its number, state, short
//! description and assignee, for the flow to read back. No caller details; the description is redacted.

use futures::future::BoxFuture;
use serde_json::json;

use shared::keys::conversation_key;
use shared::retry::Deadline;

use servicenow_writer::servicenow::IncidentBy;

use crate::contract::{optional, required, Contract, Kind};

use super::{Action, ActionError, Input, Output, Services, Spec};

pub struct LookupIncident;

const SPEC: Spec = Spec {
    name: "lookupIncident",
    input: INPUT,
    output: OUTPUT,
};

const INPUT: Contract = Contract {
    fields: &[
        optional(
            "conversationId",
            Kind::String,
            "The Genesys conversation (Call.ConversationId) whose incident to read.",
        ),
        optional(
            "incidentNumber",
            Kind::String,
            "Or the incident's number (INC0010001).",
        ),
    ],
};

const OUTPUT: Contract = Contract {
    fields: &[
        required("found", Kind::Boolean, "An incident was found."),
        required("incidentNumber", Kind::String, "e.g. INC0010001"),
        required(
            "state",
            Kind::String,
            "The state's value (1 = New, 2 = In Progress, …).",
        ),
        required(
            "stateLabel",
            Kind::String,
            "The state as ServiceNow displays it.",
        ),
        required(
            "shortDescription",
            Kind::String,
            "Redacted of phone numbers, cards and e-mails.",
        ),
        required(
            "assignedTo",
            Kind::String,
            "The assignee's name; empty when unassigned.",
        ),
    ],
};

impl Action for LookupIncident {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }
    fn run<'a>(
        &'a self,
        services: &'a Services,
        input: &'a Input,
        deadline: Deadline,
    ) -> BoxFuture<'a, Result<Output, ActionError>> {
        Box::pin(async move {
            let text = |k: &str| input.get(k).and_then(|v| v.as_str()).map(str::trim);
            let key;
            let by = match (text("conversationId"), text("incidentNumber")) {
                (Some(c), None) => {
                    key = conversation_key(super::create_incident::conversation_id(
                        c,
                        "conversationId",
                    )?);
                    IncidentBy::CorrelationId(&key)
                }
                (None, Some(n)) if valid_number(n) => {
                    // ServiceNow matches numbers case-insensitively and answers them upper-case.
                    key = n.to_ascii_uppercase();
                    IncidentBy::Number(&key)
                }
                (None, Some(_)) => {
                    return Err(ActionError::invalid(
                        "incidentNumber",
                        "must be an incident number (letters and digits, e.g. INC0010001)",
                    ))
                }
                _ => {
                    return Err(ActionError::invalid(
                        "conversationId",
                        "exactly one of conversationId and incidentNumber is required",
                    ))
                }
            };
            let sn = &services.servicenow;
            let found = services
                .retrier()
                .run(deadline, |_| sn.incident_summary(by), |_, _| {})
                .await
                .map_err(|e| ActionError::servicenow(&e))?;
            let mut out = Output::new();
            out.insert("found".into(), json!(found.is_some()));
            let s = found.unwrap_or_default();
            out.insert("incidentNumber".into(), json!(s.number));
            out.insert("state".into(), json!(s.state));
            out.insert("stateLabel".into(), json!(s.state_label));
            out.insert(
                "shortDescription".into(),
                json!(shared::redact::redact_text(&s.short_description)),
            );
            out.insert("assignedTo".into(), json!(s.assigned_to));
            Ok(out)
        })
    }
}

fn valid_number(n: &str) -> bool {
    (3..=40).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric())
}
