//! The ServiceNow incident a Genesys event becomes.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

/// ServiceNow `short_description` limit.
pub const SHORT_DESCRIPTION_MAX: usize = 160;

/// Body of `POST /api/now/table/incident`. `priority` is deliberately absent: ServiceNow derives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentDraft {
    pub short_description: String,
    pub description: String,
    pub contact_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    pub category: String,
    pub subcategory: String,
    #[serde(serialize_with = "as_text")]
    pub impact: u8,
    #[serde(serialize_with = "as_text")]
    pub urgency: u8,
    pub work_notes: String,
    pub correlation_id: String,
    pub correlation_display: String,
    /// Further incident columns from the mapping (e.g. `assignment_group`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
    /// E.164 caller number to resolve to a `sys_user`; never sent.
    #[serde(skip)]
    pub caller_phone: Option<String>,
    /// Names of the priority rules that matched; never sent.
    #[serde(skip)]
    pub matched_rules: Vec<String>,
}

fn as_text<S: Serializer>(v: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// The reference an event's work note carries, so a retry can find the note before writing it again.
pub fn event_ref(event_key: &str) -> String {
    format!("[ref {event_key}]")
}

/// `note` with the event's reference on a last line of its own.
pub fn with_event_ref(note: &str, event_key: &str) -> String {
    format!("{note}\n{}", event_ref(event_key))
}

/// Truncates to at most `max` characters, ending with `…` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.len() <= max || s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        let long = "é".repeat(200);
        let t = truncate_chars(&long, SHORT_DESCRIPTION_MAX);
        assert_eq!(t.chars().count(), SHORT_DESCRIPTION_MAX);
    }
}
