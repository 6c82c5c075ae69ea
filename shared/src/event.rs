//! Inbound Genesys event envelopes.
//!
//! Two shapes are accepted:
//! - the webhook envelope `{event, data, metadata{organizationId, timestamp}}` (Architect data actions, workflows);
//! - the native Genesys Amazon EventBridge envelope `{id, detail-type, source, time, detail{topicName, eventBody}}`.

use serde_json::{Map, Value};

use crate::json::{Json, Object};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeKind {
    Webhook,
    EventBridge,
}

impl EnvelopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvelopeKind::Webhook => "webhook",
            EnvelopeKind::EventBridge => "eventbridge",
        }
    }
}

/// A validated event, whichever envelope it came in. The body borrows from the bytes it was parsed from;
/// [`InboundEvent::into_owned`] detaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundEvent<'a> {
    pub kind: EnvelopeKind,
    /// Webhook `event`, or EventBridge `detail.topicName`.
    pub event_type: String,
    /// The sender's own event id, when the envelope has one.
    pub event_id: Option<String>,
    pub organization_id: Option<String>,
    pub timestamp: Option<String>,
    /// Webhook `data` or EventBridge `detail.eventBody`.
    pub body: Object<'a>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("body is not valid JSON: {0}")]
    Syntax(String),
    #[error("invalid envelope at `{path}`: {reason}")]
    Field { path: String, reason: String },
}

impl EnvelopeError {
    /// The JSON path of the offending field, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            EnvelopeError::Syntax(_) => None,
            EnvelopeError::Field { path, .. } => Some(path),
        }
    }

    fn field(path: &str, reason: impl Into<String>) -> Self {
        EnvelopeError::Field {
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    /// The value at `path` is not what it should be. The value is never echoed: it may hold PII.
    fn wrong_type(path: &str, found: &Json<'_>, expected: &str) -> Self {
        let found = match found {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "sequence",
            Json::Object(_) => "map",
        };
        Self::field(path, format!("invalid type: {found}, expected {expected}"))
    }
}

/// One envelope object whose members are taken out by name; `path` names it in errors.
struct Members<'a> {
    object: Object<'a>,
    path: &'static str,
}

impl<'a> Members<'a> {
    fn at(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn missing(&self, name: &str) -> EnvelopeError {
        let at = if self.path.is_empty() { "." } else { self.path };
        EnvelopeError::field(at, format!("missing field `{name}`"))
    }

    fn object(&mut self, name: &str) -> Result<Object<'a>, EnvelopeError> {
        match self.object.take(name) {
            Some(Json::Object(o)) => Ok(o),
            Some(other) => Err(EnvelopeError::wrong_type(&self.at(name), &other, "a map")),
            None => Err(self.missing(name)),
        }
    }

    fn text(&mut self, name: &str) -> Result<Option<String>, EnvelopeError> {
        match self.object.take(name) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.into_owned())),
            Some(other) => Err(EnvelopeError::wrong_type(
                &self.at(name),
                &other,
                "a string",
            )),
        }
    }

    /// An optional text: absent or `null` is `None`.
    fn optional_text(&mut self, name: &str) -> Result<Option<String>, EnvelopeError> {
        if self.object.get(name).is_some_and(Json::is_null) {
            self.object.take(name);
            return Ok(None);
        }
        self.text(name)
    }

    fn required_text(&mut self, name: &str) -> Result<String, EnvelopeError> {
        match self.text(name)? {
            Some(s) if s.trim().is_empty() => {
                Err(EnvelopeError::field(&self.at(name), "must not be empty"))
            }
            Some(s) => Ok(s),
            None => Err(self.missing(name)),
        }
    }
}

impl<'a> InboundEvent<'a> {
    /// Parses and validates raw bytes as either envelope; the body borrows from `raw`.
    pub fn parse(raw: &'a [u8]) -> Result<Self, EnvelopeError> {
        let top = Json::parse(raw).map_err(|e| EnvelopeError::Syntax(e.to_string()))?;
        Self::from_json(top)
    }

    pub fn from_value(value: Value) -> Result<InboundEvent<'static>, EnvelopeError> {
        InboundEvent::from_json(Json::from(value))
    }

    pub fn from_json(top: Json<'a>) -> Result<Self, EnvelopeError> {
        let Json::Object(object) = top else {
            return Err(EnvelopeError::field(".", "expected a JSON object"));
        };
        let mut top = Members { object, path: "" };
        if top.object.contains_key("detail-type") || top.object.contains_key("detail") {
            let id = top.required_text("id")?;
            let time = top.optional_text("time")?;
            top.optional_text("account")?;
            let mut detail = Members {
                object: top.object("detail")?,
                path: "detail",
            };
            let topic_name = detail.required_text("topicName")?;
            let body = detail.object("eventBody")?;
            let timestamp = detail.optional_text("timestamp")?;
            Ok(InboundEvent {
                kind: EnvelopeKind::EventBridge,
                event_type: topic_name,
                event_id: Some(id),
                organization_id: None,
                timestamp: timestamp.or(time),
                body,
            })
        } else {
            let event_type = top.required_text("event")?;
            let body = top.object("data")?;
            let mut metadata = Members {
                object: top.object("metadata")?,
                path: "metadata",
            };
            let organization_id = metadata.required_text("organizationId")?;
            let timestamp = metadata.required_text("timestamp")?;
            let event_id = metadata.optional_text("eventId")?;
            let id = top.optional_text("id")?;
            Ok(InboundEvent {
                kind: EnvelopeKind::Webhook,
                event_type,
                event_id: event_id.or(id).filter(|s| !s.trim().is_empty()),
                organization_id: Some(organization_id),
                timestamp: Some(timestamp),
                body,
            })
        }
    }

    /// The same event, owning its body.
    pub fn into_owned(self) -> InboundEvent<'static> {
        InboundEvent {
            kind: self.kind,
            event_type: self.event_type,
            event_id: self.event_id,
            organization_id: self.organization_id,
            timestamp: self.timestamp,
            body: self.body.into_owned(),
        }
    }

    /// The webhook envelope for a bare JSON body (one without `event`/`data`/`metadata`), such as the flat
    /// body an Architect HTTP action posts, whose event type the request named.
    pub fn bare_envelope(
        event_type: &str,
        body: Map<String, Value>,
        organization_id: &str,
        timestamp: &str,
    ) -> Value {
        serde_json::json!({
            "event": event_type,
            "data": body,
            "metadata": {"organizationId": organization_id, "timestamp": timestamp, "envelope": "bare"},
        })
    }

    /// Whether a JSON object is neither envelope: it has no `event`, `detail` or `detail-type` member.
    pub fn is_bare(top: &Object<'_>) -> bool {
        !["event", "detail", "detail-type"]
            .iter()
            .any(|k| top.contains_key(k))
    }

    /// The value at a JSON pointer into the body (`/a/b`).
    pub fn pointer(&self, pointer: &str) -> Option<&Json<'a>> {
        self.body.pointer(pointer)
    }

    /// The event type with conversation ids replaced by `{id}`, e.g.
    /// `v2.detail.events.conversation.{id}.customer.end`: the form allow-lists and rules match on.
    pub fn event_kind(&self) -> String {
        normalise_topic(&self.event_type)
    }
}

/// Replaces UUID segments of a dotted topic name with `{id}`.
pub fn normalise_topic(topic: &str) -> String {
    let mut out = String::with_capacity(topic.len());
    for_each_normalised_segment(topic, |seg| out.push_str(seg));
    out
}

/// Hands the pieces of [`normalise_topic`]'s result to `put` in order (segments, dots and `{id}`s), so a
/// hash can take the normalised topic without building it.
pub fn for_each_normalised_segment(topic: &str, mut put: impl FnMut(&str)) {
    let mut start = 0;
    // Byte offsets of the dots, then the end: every segment is `topic[start..end]`.
    let ends = topic
        .bytes()
        .enumerate()
        .filter(|&(_, b)| b == b'.')
        .map(|(i, _)| i)
        .chain([topic.len()]);
    for end in ends {
        let seg = topic.get(start..end).unwrap_or_default();
        if start > 0 {
            put(".");
        }
        put(if looks_like_uuid(seg) { "{id}" } else { seg });
        start = end + 1;
    }
}

fn looks_like_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b[8] == b'-'
        && b[13] == b'-'
        && b[18] == b'-'
        && b[23] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) || c.is_ascii_hexdigit())
}

/// Glob match where `*` matches any run of characters (including dots). Matched on bytes: a literal
/// character of the pattern can only meet a whole character of the text (UTF-8 is self-synchronising).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONV: &str = "3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b";

    #[test]
    fn topics_have_their_ids_replaced() {
        for (topic, kind) in [
            (
                format!("v2.detail.events.conversation.{CONV}.customer.end"),
                "v2.detail.events.conversation.{id}.customer.end",
            ),
            (CONV.to_string(), "{id}"),
            (format!("a.{}.b", CONV.to_uppercase()), "a.{id}.b"),
            (format!("..{CONV}."), "..{id}."),
            ("".into(), ""),
            ("plain".into(), "plain"),
            // 36 characters, but a dash out of place or a non-hex digit.
            (
                "3f2a5c1e4-b6d-4e8f-9a0b-1c2d3e4f5a6b.x".into(),
                "3f2a5c1e4-b6d-4e8f-9a0b-1c2d3e4f5a6b.x",
            ),
            (
                "3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6g".into(),
                "3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6g",
            ),
            (format!("{CONV}0.x"), &format!("{CONV}0.x")),
        ] {
            assert_eq!(normalise_topic(&topic), kind, "{topic}");
        }
    }

    #[test]
    fn parses_webhook_envelope() {
        let raw = json!({
            "event": "v2.detail.events.conversation.customer.end",
            "data": {"conversationId": CONV},
            "metadata": {"organizationId": "org-1", "timestamp": "2026-11-23T10:00:00Z", "eventId": "e-1"}
        });
        let raw = raw.to_string();
        let ev = InboundEvent::parse(raw.as_bytes()).unwrap();
        assert_eq!(ev.kind, EnvelopeKind::Webhook);
        assert_eq!(ev.event_id.as_deref(), Some("e-1"));
        assert_eq!(ev.organization_id.as_deref(), Some("org-1"));
        assert_eq!(
            ev.body.get("conversationId").and_then(Json::as_str),
            Some(CONV)
        );
    }

    #[test]
    fn parses_eventbridge_envelope() {
        let topic = format!("v2.detail.events.conversation.{CONV}.customer.end");
        let raw = json!({
            "version": "0", "id": "eb-1", "detail-type": "v2.detail.events.conversation.{id}.customer.end",
            "source": "aws.partner/genesys.com/cloud/org/x", "time": "2026-11-23T10:00:00Z",
            "detail": {"topicName": topic, "version": "2", "eventBody": {"conversationId": CONV},
                       "metadata": {"CorrelationId": "c"}, "timestamp": "2026-11-23T10:00:01Z"}
        });
        let raw = raw.to_string();
        let ev = InboundEvent::parse(raw.as_bytes()).unwrap();
        assert_eq!(ev.kind, EnvelopeKind::EventBridge);
        assert_eq!(ev.event_id.as_deref(), Some("eb-1"));
        assert_eq!(ev.event_type, topic);
        assert_eq!(
            ev.event_kind(),
            "v2.detail.events.conversation.{id}.customer.end"
        );
        assert_eq!(ev.timestamp.as_deref(), Some("2026-11-23T10:00:01Z"));
    }

    #[test]
    fn reports_the_path_of_a_missing_or_wrong_field() {
        let err = InboundEvent::parse(br#"{"event":"x","data":{},"metadata":{"timestamp":"t"}}"#)
            .unwrap_err();
        assert_eq!(err.path(), Some("metadata"));
        assert!(err.to_string().contains("organizationId"), "{err}");

        let err = InboundEvent::parse(
            br#"{"event":"x","data":[],"metadata":{"organizationId":"o","timestamp":"t"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), Some("data"));

        let err = InboundEvent::parse(
            br#"{"event":"","data":{},"metadata":{"organizationId":"o","timestamp":"t"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path(), Some("event"));

        let err =
            InboundEvent::parse(br#"{"detail-type":"x","id":"1","detail":{"topicName":"t"}}"#)
                .unwrap_err();
        assert_eq!(err.path(), Some("detail"));
        assert!(err.to_string().contains("eventBody"));
    }

    #[test]
    fn errors_do_not_echo_values() {
        let err = InboundEvent::parse(br#"{"event":"x","data":"call me on +14155550123","metadata":{"organizationId":"o","timestamp":"t"}}"#)
            .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("4155550123"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
        assert_eq!(err.path(), Some("data"));
        // Numbers are quoted with backticks: `invalid type: integer `14155550123``.
        let err = InboundEvent::parse(
            br#"{"event":"x","data":14155550123,"metadata":{"organizationId":"o","timestamp":"t"}}"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("4155550123"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
    }

    #[test]
    fn rejects_syntax_errors_and_non_objects() {
        assert!(matches!(
            InboundEvent::parse(b"{not json"),
            Err(EnvelopeError::Syntax(_))
        ));
        assert!(matches!(
            InboundEvent::parse(b"[1,2]"),
            Err(EnvelopeError::Field { .. })
        ));
    }

    #[test]
    fn pointers_resolve_into_the_body() {
        let raw = json!({"event": "e", "data": {"a": {"b": [1, 2]}, "x/y": 3},
                         "metadata": {"organizationId": "o", "timestamp": "t"}});
        let raw = raw.to_string();
        let ev = InboundEvent::parse(raw.as_bytes()).unwrap();
        assert_eq!(ev.pointer("/a/b/1"), Some(&Json::from(json!(2))));
        assert_eq!(ev.pointer("/x~1y"), Some(&Json::from(json!(3))));
        assert_eq!(ev.pointer("/missing"), None);
        assert_eq!(ev.pointer("no-slash"), None);
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match(
            "v2.detail.events.conversation.*.customer.end",
            "v2.detail.events.conversation.{id}.customer.end"
        ));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*c*e", "abcde"));
        assert!(!glob_match("a*c*e", "abcdf"));
        assert!(!glob_match(
            "v2.*.acw",
            "v2.detail.events.conversation.{id}.customer.end"
        ));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }
}
