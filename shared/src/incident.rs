//! The ServiceNow incident a Genesys event becomes.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::json::write_escaped;

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

impl IncidentDraft {
    /// The request body: what `serde_json::to_vec` gives for it, byte for byte, written directly.
    pub fn to_json(&self) -> Vec<u8> {
        let texts = [
            &self.short_description,
            &self.description,
            &self.work_notes,
            &self.correlation_display,
        ];
        let size: usize = texts.iter().map(|t| t.len()).sum::<usize>()
            + self
                .extra
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>();
        let mut out = Vec::with_capacity(size + size / 8 + 256);
        let field = |out: &mut Vec<u8>, name: &str, value: &str| {
            out.push(if out.is_empty() { b'{' } else { b',' });
            write_escaped(name, out);
            out.push(b':');
            write_escaped(value, out);
        };
        field(&mut out, "short_description", &self.short_description);
        field(&mut out, "description", &self.description);
        field(&mut out, "contact_type", &self.contact_type);
        if let Some(caller) = &self.caller_id {
            field(&mut out, "caller_id", caller);
        }
        field(&mut out, "category", &self.category);
        field(&mut out, "subcategory", &self.subcategory);
        field(&mut out, "impact", itoa::Buffer::new().format(self.impact));
        field(
            &mut out,
            "urgency",
            itoa::Buffer::new().format(self.urgency),
        );
        field(&mut out, "work_notes", &self.work_notes);
        field(&mut out, "correlation_id", &self.correlation_id);
        field(&mut out, "correlation_display", &self.correlation_display);
        for (k, v) in &self.extra {
            field(&mut out, k, v);
        }
        out.push(b'}');
        out
    }
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
    fn the_body_is_what_serde_json_writes() {
        let mut draft = IncidentDraft {
            short_description: "Short \"quoted\" é".into(),
            description: "line\nline\ttab \u{1}".into(),
            contact_type: "phone".into(),
            caller_id: None,
            category: "inquiry".into(),
            subcategory: "contact center".into(),
            impact: 1,
            urgency: 3,
            work_notes: "notes \\ back".into(),
            correlation_id: "gc-1".into(),
            correlation_display: "Genesys conversation c".into(),
            extra: BTreeMap::new(),
            caller_phone: Some("+14155550123".into()),
            matched_rules: vec!["vip".into()],
        };
        assert_eq!(draft.to_json(), serde_json::to_vec(&draft).unwrap());
        draft.caller_id = Some("sys-1".into());
        draft.extra.insert("u_queue".into(), "Billing".into());
        draft
            .extra
            .insert("assignment_group".into(), "Service \"Desk\"".into());
        assert_eq!(draft.to_json(), serde_json::to_vec(&draft).unwrap());
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        let long = "é".repeat(200);
        let t = truncate_chars(&long, SHORT_DESCRIPTION_MAX);
        assert_eq!(t.chars().count(), SHORT_DESCRIPTION_MAX);
    }
}
