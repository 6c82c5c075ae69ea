//! `lookupCaller`: the caller's number → whether ServiceNow knows them, their name, VIP flag and how many
//! active incidents they have, for routing decisions in the flow. Cached per container (see [`crate::callers`]).

use futures::future::BoxFuture;
use serde_json::json;
use tracing::debug;

use shared::retry::Deadline;

use crate::callers::Known;
use crate::contract::{optional, required, Contract, Kind};

use super::{Action, ActionError, Input, Output, Services, Spec};

pub struct LookupCaller;

const SPEC: Spec = Spec {
    name: "lookupCaller",
    input: INPUT,
    output: OUTPUT,
};

const INPUT: Contract = Contract {
    fields: &[
        required(
            "phoneNumber",
            Kind::String,
            "The caller's number in E.164 (+15550199888); Call.Ani works as it is (tel: is stripped).",
        ),
        optional(
            "conversationId",
            Kind::String,
            "The Genesys conversation, for the audit log only.",
        ),
    ],
};

const OUTPUT: Contract = Contract {
    fields: &[
        required("found", Kind::Boolean, "A ServiceNow user has this number."),
        required(
            "callerName",
            Kind::String,
            "The user's name; empty when not found.",
        ),
        required(
            "vip",
            Kind::Boolean,
            "The user is flagged VIP in ServiceNow.",
        ),
        required(
            "openIncidents",
            Kind::Integer,
            "Active incidents the user is the caller of.",
        ),
    ],
};

impl Action for LookupCaller {
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
            let raw = input["phoneNumber"].as_str().unwrap_or_default();
            let e164 = e164(raw, "phoneNumber")?;
            let known = caller(services, &e164, true, deadline).await?;
            let mut out = Output::new();
            let (name, vip) = known
                .profile
                .as_ref()
                .map(|p| (p.name.clone(), p.vip))
                .unwrap_or_default();
            out.insert("found".into(), json!(known.profile.is_some()));
            out.insert("callerName".into(), json!(name));
            out.insert("vip".into(), json!(vip));
            out.insert(
                "openIncidents".into(),
                json!(known.open_incidents.unwrap_or(0)),
            );
            Ok(out)
        })
    }
}

/// `raw` as E.164, or a 400 naming `field`.
pub fn e164(raw: &str, field: &str) -> Result<String, ActionError> {
    shared::redact::normalise_e164(raw).ok_or_else(|| {
        ActionError::invalid(
            field,
            "must be a phone number in E.164 (+ and 8 to 15 digits)",
        )
    })
}

/// What ServiceNow says about the number `e164` (from the cache when fresh); `with_count`: the number of
/// active incidents too.
pub async fn caller(
    services: &Services,
    e164: &str,
    with_count: bool,
    deadline: Deadline,
) -> Result<Known, ActionError> {
    let cached = services.callers.get(e164);
    if let Some(known) = &cached {
        if !with_count || known.open_incidents.is_some() || known.profile.is_none() {
            debug!("caller cache hit");
            return Ok(known.clone());
        }
    }
    let retrier = services.retrier();
    let sn = &services.servicenow;
    let (profile, fresh) = match cached {
        Some(known) => (known.profile, false),
        None => (
            retrier
                .run(deadline, |_| sn.caller_profile(e164), |_, _| {})
                .await
                .map_err(|e| ActionError::servicenow(&e))?,
            true,
        ),
    };
    let open_incidents = match (&profile, with_count) {
        (Some(p), true) => Some(
            retrier
                .run(deadline, |_| sn.open_incident_count(&p.sys_id), |_, _| {})
                .await
                .map_err(|e| ActionError::servicenow(&e))?,
        ),
        (None, _) => Some(0),
        _ => None,
    };
    let known = Known {
        profile,
        open_incidents,
    };
    match (fresh, open_incidents) {
        (true, _) => services.callers.put(e164, known.clone()),
        // Only the count is new: the profile keeps its age (and expires with it).
        (false, Some(n)) => services.callers.put_count(e164, n),
        (false, None) => {}
    }
    Ok(known)
}
