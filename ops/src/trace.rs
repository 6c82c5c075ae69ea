//! Tracing one conversation through the bridge: what the idempotency table knows (its incident), what
//! ServiceNow holds (the incident, its state, the notes the bridge wrote), and what the dead-letter queue holds
//! for it (each failure with its reason and age). Read-only: the dead letters are listed as a dry-run replay
//! lists them, and left where they are.

use servicenow_writer::conversations::ConversationStore;
use servicenow_writer::servicenow::{IncidentBy, ServiceNowClient};

use crate::replay::{Filter, Letter, Options, Replay};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    pub conversation_id: String,
    /// `correlation_id` of its incident.
    pub key: String,
    /// The incident the idempotency table records for the conversation.
    pub recorded_incident: Option<String>,
    /// What ServiceNow answers for the key: number, state label, opened at.
    pub servicenow: Option<(String, String, String)>,
    /// Work notes the bridge wrote (its `[ref …]` lines).
    pub notes: usize,
    /// The conversation's dead letters, oldest first.
    pub dead_letters: Vec<Letter>,
    /// What could not be read (each source is asked independently).
    pub unreadable: Vec<String>,
}

impl Trace {
    /// The last failure: its reason and detail.
    pub fn last_error(&self) -> Option<(&str, &str)> {
        self.dead_letters
            .iter()
            .min_by_key(|l| l.age)
            .map(|l| (l.reason.as_str(), l.detail.as_str()))
    }
}

pub async fn trace(
    conversation_id: &str,
    store: &ConversationStore,
    dead_letters: &Replay,
    servicenow: Option<&ServiceNowClient>,
) -> Trace {
    let key = shared::keys::conversation_key(conversation_id);
    let mut t = Trace {
        conversation_id: conversation_id.to_string(),
        key: key.clone(),
        ..Trace::default()
    };
    match store.incident(&key).await {
        Ok(known) => t.recorded_incident = known.map(|k| k.number),
        Err(e) => t.unreadable.push(format!("idempotency table: {e}")),
    }
    if let Some(sn) = servicenow {
        match sn.incident_summary(IncidentBy::CorrelationId(&key)).await {
            Ok(Some(s)) => {
                match sn.incident_state(&s.sys_id).await {
                    Ok(Some(state)) => t.notes = state.work_notes.matches("[ref ").count(),
                    Ok(None) => {}
                    Err(e) => t
                        .unreadable
                        .push(format!("ServiceNow work notes: {}", e.code())),
                }
                t.servicenow = Some((s.number, s.state_label, s.opened_at));
            }
            Ok(None) => {}
            Err(e) => t.unreadable.push(format!("ServiceNow: {}", e.code())),
        }
    }
    let listing = Options {
        filter: Filter::default(),
        dry_run: true,
        rate: 100,
        limit: None,
    };
    match dead_letters.run(&listing).await {
        Ok(report) => {
            let mut mine: Vec<Letter> = report
                .letters
                .into_iter()
                .filter(|l| l.conversation_id.as_deref() == Some(conversation_id))
                .collect();
            mine.sort_by_key(|l| std::cmp::Reverse(l.age));
            t.dead_letters = mine;
        }
        Err(e) => t.unreadable.push(format!("dead-letter queue: {e}")),
    }
    t
}
