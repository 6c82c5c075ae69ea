//! Inbound Genesys event envelopes.
//!
//! Two shapes are accepted:
//! - the webhook envelope `{event, data, metadata{organizationId, timestamp}}` (Architect data actions, workflows);
//! - the native Genesys Amazon EventBridge envelope `{id, detail-type, source, time, detail{topicName, eventBody}}`.

use serde::Deserialize;
use serde_json::{Map, Value};

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

/// A validated event, whichever envelope it came in.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundEvent {
    pub kind: EnvelopeKind,
    /// Webhook `event`, or EventBridge `detail.topicName`.
    pub event_type: String,
    /// The sender's own event id, when the envelope has one.
    pub event_id: Option<String>,
    pub organization_id: Option<String>,
    pub timestamp: Option<String>,
    /// Webhook `data` or EventBridge `detail.eventBody`.
    pub body: Map<String, Value>,
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
}

#[derive(Deserialize)]
struct WebhookEnvelope {
    #[serde(deserialize_with = "non_empty")]
    event: String,
    data: Map<String, Value>,
    metadata: WebhookMetadata,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct WebhookMetadata {
    #[serde(rename = "organizationId", deserialize_with = "non_empty")]
    organization_id: String,
    #[serde(deserialize_with = "non_empty")]
    timestamp: String,
    #[serde(rename = "eventId", default)]
    event_id: Option<String>,
}

#[derive(Deserialize)]
struct EventBridgeEnvelope {
    #[serde(deserialize_with = "non_empty")]
    id: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    account: Option<String>,
    detail: EventBridgeDetail,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    #[serde(rename = "topicName", deserialize_with = "non_empty")]
    topic_name: String,
    #[serde(rename = "eventBody")]
    event_body: Map<String, Value>,
    #[serde(default)]
    timestamp: Option<String>,
}

fn non_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(serde::de::Error::custom("must not be empty"));
    }
    Ok(s)
}

impl InboundEvent {
    /// Parses and validates raw bytes as either envelope.
    pub fn parse(raw: &[u8]) -> Result<Self, EnvelopeError> {
        let value: Value =
            serde_json::from_slice(raw).map_err(|e| EnvelopeError::Syntax(e.to_string()))?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, EnvelopeError> {
        let Value::Object(ref top) = value else {
            return Err(EnvelopeError::Field {
                path: ".".into(),
                reason: "expected a JSON object".into(),
            });
        };
        if top.contains_key("detail-type") || top.contains_key("detail") {
            let env: EventBridgeEnvelope = typed(value)?;
            let timestamp = env.detail.timestamp.or(env.time);
            let _ = env.account;
            Ok(InboundEvent {
                kind: EnvelopeKind::EventBridge,
                event_type: env.detail.topic_name,
                event_id: Some(env.id),
                organization_id: None,
                timestamp,
                body: env.detail.event_body,
            })
        } else {
            let env: WebhookEnvelope = typed(value)?;
            Ok(InboundEvent {
                kind: EnvelopeKind::Webhook,
                event_type: env.event,
                event_id: env
                    .metadata
                    .event_id
                    .or(env.id)
                    .filter(|s| !s.trim().is_empty()),
                organization_id: Some(env.metadata.organization_id),
                timestamp: Some(env.metadata.timestamp),
                body: env.data,
            })
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
    pub fn is_bare(top: &Map<String, Value>) -> bool {
        !["event", "detail", "detail-type"]
            .iter()
            .any(|k| top.contains_key(*k))
    }

    /// The value at a JSON pointer into the body (`/a/b`), without copying the body.
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        let rest = pointer.strip_prefix('/')?;
        let (first, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let v = if first.contains('~') {
            self.body
                .get(&first.replace("~1", "/").replace("~0", "~"))?
        } else {
            self.body.get(first)?
        };
        if tail.is_empty() {
            Some(v)
        } else {
            v.pointer(tail)
        }
    }

    /// The event type with conversation ids replaced by `{id}`, e.g.
    /// `v2.detail.events.conversation.{id}.customer.end`: the form allow-lists and rules match on.
    pub fn event_kind(&self) -> String {
        normalise_topic(&self.event_type)
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, EnvelopeError> {
    serde_path_to_error::deserialize(value).map_err(|e| EnvelopeError::Field {
        path: e.path().to_string(),
        reason: without_quoted_values(&e.inner().to_string()),
    })
}

/// serde echoes offending values (`invalid type: string "call me on …"`); they may hold PII, so drop them.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    // serde quotes strings with `"`, and numbers and characters with backticks (`integer `415…``); field
    // and variant names are backticked too, and are kept.
    const BACKTICKED_VALUES: [&str; 3] = ["integer ", "floating point ", "character "];
    let mut inside: Option<(char, bool)> = None;
    for c in message.chars() {
        match inside {
            None if c == '"'
                || (c == '`' && BACKTICKED_VALUES.iter().any(|p| out.ends_with(p))) =>
            {
                out.push(c);
                out.push('…');
                out.push(c);
                inside = Some((c, true));
            }
            None if c == '`' => {
                out.push(c);
                inside = Some((c, false));
            }
            None => out.push(c),
            Some((q, masked)) if c == q => {
                if !masked {
                    out.push(c);
                }
                inside = None;
            }
            Some((_, true)) => {}
            Some((_, false)) => out.push(c),
        }
    }
    out
}

/// Replaces UUID segments of a dotted topic name with `{id}`.
pub fn normalise_topic(topic: &str) -> String {
    topic
        .split('.')
        .map(|seg| if looks_like_uuid(seg) { "{id}" } else { seg })
        .collect::<Vec<_>>()
        .join(".")
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Glob match where `*` matches any run of characters (including dots).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
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
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CONV: &str = "3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b";

    #[test]
    fn parses_webhook_envelope() {
        let raw = json!({
            "event": "v2.detail.events.conversation.customer.end",
            "data": {"conversationId": CONV},
            "metadata": {"organizationId": "org-1", "timestamp": "2026-11-23T10:00:00Z", "eventId": "e-1"}
        });
        let ev = InboundEvent::parse(raw.to_string().as_bytes()).unwrap();
        assert_eq!(ev.kind, EnvelopeKind::Webhook);
        assert_eq!(ev.event_id.as_deref(), Some("e-1"));
        assert_eq!(ev.organization_id.as_deref(), Some("org-1"));
        assert_eq!(ev.body["conversationId"], CONV);
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
        let ev = InboundEvent::parse(raw.to_string().as_bytes()).unwrap();
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
        let ev = InboundEvent::parse(raw.to_string().as_bytes()).unwrap();
        assert_eq!(ev.pointer("/a/b/1"), Some(&json!(2)));
        assert_eq!(ev.pointer("/x~1y"), Some(&json!(3)));
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
