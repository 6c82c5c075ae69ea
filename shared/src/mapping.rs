//! Configurable, versioned mapping of a Genesys event to a ServiceNow incident.
//!
//! A mapping file (JSON) declares variables read from the event body by JSON pointers, text templates with
//! `{{variable}}` placeholders for the incident fields, the caller phone variable and the impact/urgency
//! rules. See `shared/mappings/default.json`. Built-in variables: `event_type`, `event_kind`, `event_id`,
//! `organization_id`, `event_timestamp`, `idempotency_key`, `envelope`, `matched_rules`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::event::InboundEvent;
use crate::incident::{truncate_chars, IncidentDraft, SHORT_DESCRIPTION_MAX};
use crate::priority::{PriorityRules, RuleError};
use crate::redact::{mask_phone, normalise_e164, redact_text};

/// The mapping shipped with the project.
pub const DEFAULT_MAPPING_JSON: &str = include_str!("../mappings/default.json");

const SUPPORTED_VERSION: u32 = 1;
const BUILTINS: &[&str] = &[
    "event_type",
    "event_kind",
    "event_id",
    "organization_id",
    "event_timestamp",
    "idempotency_key",
    "envelope",
    "matched_rules",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    version: u32,
    name: String,
    variables: BTreeMap<String, VariableSpec>,
    incident: IncidentTemplates,
    #[serde(default)]
    caller: CallerSpec,
    priority: PriorityRules,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariableSpec {
    pointers: Vec<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    pii: Pii,
    #[serde(default)]
    format: Format,
}

/// How a variable's text is protected when it is written into a field.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Pii {
    /// Free text: SSNs and cards redacted, phone numbers masked.
    #[default]
    Text,
    /// A phone number: masked to its last four digits.
    Phone,
    /// Trusted identifiers.
    None,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Format {
    #[default]
    Raw,
    /// Epoch milliseconds or RFC 3339 → RFC 3339 UTC.
    Timestamp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentTemplates {
    short_description: String,
    description: String,
    work_notes: String,
    #[serde(default = "phone")]
    contact_type: String,
    category: String,
    subcategory: String,
    correlation_display: String,
    #[serde(default)]
    extra: BTreeMap<String, String>,
}

fn phone() -> String {
    "phone".to_string()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerSpec {
    #[serde(default)]
    phone_variable: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingLoadError {
    #[error("mapping file is invalid at `{path}`: {reason}")]
    Parse { path: String, reason: String },
    #[error("mapping file version {0} is not supported (expected {SUPPORTED_VERSION})")]
    Version(u32),
    #[error("template for `{field}` uses unknown variable `{variable}`")]
    UnknownVariable { field: String, variable: String },
    #[error("template for `{field}` has an unclosed `{{{{`")]
    Unclosed { field: String },
    #[error("variable `{0}` needs at least one JSON pointer starting with `/`")]
    Pointer(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("could not read mapping file {path}: {reason}")]
    Io { path: String, reason: String },
}

/// Mapping failures are permanent: the same event will never map differently.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MappingError {
    #[error("required field `{variable}` is missing from the event (looked at {pointers})")]
    MissingField { variable: String, pointers: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Text(String),
    Var(String),
}

#[derive(Debug, Clone)]
struct Template(Vec<Segment>);

/// A validated mapping, ready to apply.
#[derive(Debug, Clone)]
pub struct Mapping {
    name: String,
    variables: Vec<(String, VariableSpec)>,
    short_description: Template,
    description: Template,
    work_notes: Template,
    contact_type: Template,
    category: Template,
    subcategory: Template,
    correlation_display: Template,
    extra: Vec<(String, Template)>,
    caller_variable: Option<String>,
    priority: PriorityRules,
}

impl Mapping {
    pub fn default_mapping() -> Result<Self, MappingLoadError> {
        Self::from_json(DEFAULT_MAPPING_JSON)
    }

    pub fn from_path(path: &str) -> Result<Self, MappingLoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| MappingLoadError::Io {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        Self::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Self, MappingLoadError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let file: MappingFile =
            serde_path_to_error::deserialize(de).map_err(|e| MappingLoadError::Parse {
                path: e.path().to_string(),
                reason: e.inner().to_string(),
            })?;
        if file.version != SUPPORTED_VERSION {
            return Err(MappingLoadError::Version(file.version));
        }
        file.priority.validate()?;
        for (name, spec) in &file.variables {
            if spec.pointers.is_empty() || spec.pointers.iter().any(|p| !p.starts_with('/')) {
                return Err(MappingLoadError::Pointer(name.clone()));
            }
        }
        let known = |v: &str| file.variables.contains_key(v) || BUILTINS.contains(&v);
        for var in file.priority.variables() {
            if !file.variables.contains_key(var) {
                return Err(MappingLoadError::UnknownVariable {
                    field: "priority".into(),
                    variable: var.to_string(),
                });
            }
        }
        if let Some(v) = &file.caller.phone_variable {
            if !file.variables.contains_key(v) {
                return Err(MappingLoadError::UnknownVariable {
                    field: "caller".into(),
                    variable: v.clone(),
                });
            }
        }
        let compile = |field: &str, text: &str| -> Result<Template, MappingLoadError> {
            let t = Template::parse(field, text)?;
            for seg in &t.0 {
                if let Segment::Var(v) = seg {
                    if !known(v) {
                        return Err(MappingLoadError::UnknownVariable {
                            field: field.to_string(),
                            variable: v.clone(),
                        });
                    }
                }
            }
            Ok(t)
        };
        let i = &file.incident;
        let extra = i
            .extra
            .iter()
            .map(|(k, v)| Ok((k.clone(), compile(k, v)?)))
            .collect::<Result<Vec<_>, MappingLoadError>>()?;
        Ok(Mapping {
            short_description: compile("short_description", &i.short_description)?,
            description: compile("description", &i.description)?,
            work_notes: compile("work_notes", &i.work_notes)?,
            contact_type: compile("contact_type", &i.contact_type)?,
            category: compile("category", &i.category)?,
            subcategory: compile("subcategory", &i.subcategory)?,
            correlation_display: compile("correlation_display", &i.correlation_display)?,
            extra,
            caller_variable: file.caller.phone_variable.clone(),
            name: file.name,
            variables: file.variables.into_iter().collect(),
            priority: file.priority,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Maps `event` to an incident whose `correlation_id` is `idempotency_key`.
    pub fn map(
        &self,
        event: &InboundEvent,
        idempotency_key: &str,
    ) -> Result<IncidentDraft, MappingError> {
        let mut raw: BTreeMap<String, Value> = BTreeMap::new();
        let mut text: BTreeMap<&str, String> = BTreeMap::new();
        for (name, spec) in &self.variables {
            let found = spec
                .pointers
                .iter()
                .filter_map(|p| event.pointer(p))
                .find(|v| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty()));
            let value = match (found, &spec.default) {
                (Some(v), _) => v.clone(),
                (None, _) if spec.required => {
                    return Err(MappingError::MissingField {
                        variable: name.clone(),
                        pointers: spec.pointers.join(", "),
                    })
                }
                (None, Some(d)) => d.clone(),
                (None, None) => Value::Null,
            };
            text.insert(name, render(&value, spec));
            raw.insert(name.clone(), value);
        }
        let (levels, matched) = self.priority.evaluate(&raw);
        let matched_rules: Vec<String> = matched.iter().map(|s| s.to_string()).collect();
        let kind = event.event_kind();
        let matched_text = if matched.is_empty() {
            "none".to_string()
        } else {
            matched.join(", ")
        };
        let builtins: [(&str, &str); 8] = [
            ("event_type", &event.event_type),
            ("event_kind", &kind),
            ("event_id", event.event_id.as_deref().unwrap_or("none")),
            (
                "organization_id",
                event.organization_id.as_deref().unwrap_or(""),
            ),
            ("event_timestamp", event.timestamp.as_deref().unwrap_or("")),
            ("idempotency_key", idempotency_key),
            ("envelope", event.kind.as_str()),
            ("matched_rules", &matched_text),
        ];
        let get = |name: &str| -> &str {
            text.get(name)
                .map(String::as_str)
                .or_else(|| builtins.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
                .unwrap_or("")
        };
        let caller_phone = self
            .caller_variable
            .as_ref()
            .and_then(|v| raw.get(v))
            .and_then(Value::as_str)
            .and_then(normalise_e164);
        Ok(IncidentDraft {
            short_description: truncate_chars(
                self.short_description.render(&get).trim(),
                SHORT_DESCRIPTION_MAX,
            ),
            description: self.description.render(&get),
            contact_type: self.contact_type.render(&get),
            caller_id: None,
            category: self.category.render(&get),
            subcategory: self.subcategory.render(&get),
            impact: levels.impact,
            urgency: levels.urgency,
            work_notes: self.work_notes.render(&get),
            correlation_id: idempotency_key.to_string(),
            correlation_display: truncate_chars(&self.correlation_display.render(&get), 100),
            extra: self
                .extra
                .iter()
                .map(|(k, t)| (k.clone(), t.render(&get)))
                .collect(),
            caller_phone,
            matched_rules,
        })
    }
}

fn render(value: &Value, spec: &VariableSpec) -> String {
    let plain = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        other => other.to_string(),
    };
    let plain = match spec.format {
        Format::Raw => plain,
        Format::Timestamp => format_timestamp(value).unwrap_or(plain),
    };
    match spec.pii {
        Pii::None => plain,
        Pii::Phone if plain.is_empty() => plain,
        Pii::Phone => mask_phone(&plain),
        // Numbers and booleans are not free text.
        Pii::Text if !value.is_string() => plain,
        Pii::Text => redact_text(&plain),
    }
}

fn format_timestamp(v: &Value) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let dt = match v {
        Value::Number(n) => {
            let ms = n.as_i64()?;
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?
        }
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(ms) => {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?
            }
            Err(_) => time::OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?,
        },
        _ => return None,
    };
    dt.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}

impl Template {
    fn parse(field: &str, text: &str) -> Result<Self, MappingLoadError> {
        let mut segs = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                segs.push(Segment::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| MappingLoadError::Unclosed {
                field: field.to_string(),
            })?;
            segs.push(Segment::Var(after[..end].trim().to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            segs.push(Segment::Text(rest.to_string()));
        }
        Ok(Template(segs))
    }

    fn render<'a>(&self, get: &impl Fn(&str) -> &'a str) -> String {
        let mut out = String::with_capacity(128);
        for seg in &self.0 {
            match seg {
                Segment::Text(t) => out.push_str(t),
                Segment::Var(v) => out.push_str(get(v)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EnvelopeKind;
    use serde_json::json;

    const CONV: &str = "3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b";

    fn event(body: Value) -> InboundEvent {
        InboundEvent {
            kind: EnvelopeKind::Webhook,
            event_type: format!("v2.detail.events.conversation.{CONV}.customer.end"),
            event_id: Some("evt-1".into()),
            organization_id: Some("org-1".into()),
            timestamp: Some("2026-11-23T10:00:00Z".into()),
            body: body.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn default_mapping_loads() {
        let m = Mapping::default_mapping().unwrap();
        assert_eq!(m.name(), "genesys-conversation-to-incident");
    }

    #[test]
    fn maps_a_conversation_event() {
        let m = Mapping::default_mapping().unwrap();
        let ev = event(json!({
            "conversationId": CONV, "participantId": "p-1", "ani": "tel:+14155550123",
            "queueName": "Billing", "mediaType": "voice", "direction": "inbound",
            "disconnectType": "TRANSPORT_FAILURE", "escalationReason": "Card 4111 1111 1111 1111 declined, call back on 415-555-0199",
            "eventTime": 1_795_428_000_000i64, "attributes": {"vip": "true"}
        }));
        let inc = m.map(&ev, "gc-key").unwrap();
        assert_eq!(inc.correlation_id, "gc-key");
        assert_eq!(inc.contact_type, "phone");
        assert_eq!(inc.caller_phone.as_deref(), Some("+14155550123"));
        assert!(inc.description.contains(&format!("Conversation: {CONV}")));
        assert!(
            inc.description.contains("Caller: ***0123"),
            "{}",
            inc.description
        );
        assert!(!inc.description.contains("4155550123"));
        assert!(inc.description.contains("[REDACTED CARD]"));
        assert!(inc.description.contains("***0199"));
        assert!(!inc.description.contains("4111"));
        assert!(inc.description.contains("Queue: Billing"));
        assert!(
            inc.description.contains("Event time: 2026-11-23T10:00:00Z"),
            "{}",
            inc.description
        );
        assert!(inc
            .short_description
            .starts_with("Genesys voice escalation: Card [REDACTED CARD]"));
        assert_eq!((inc.impact, inc.urgency), (2, 1));
        assert_eq!(inc.matched_rules, vec!["vip-caller", "call-dropped"]);
        assert!(inc.work_notes.contains("vip-caller, call-dropped"));
        assert_eq!(
            inc.correlation_display,
            format!("Genesys conversation {CONV}")
        );
        let json = serde_json::to_value(&inc).unwrap();
        assert_eq!(json["impact"], "2");
        assert!(json.get("priority").is_none());
        assert!(json.get("caller_phone").is_none());
        assert!(json.get("caller_id").is_none());
    }

    #[test]
    fn missing_required_field_is_named() {
        let m = Mapping::default_mapping().unwrap();
        let err = m
            .map(&event(json!({"ani": "+14155550123"})), "k")
            .unwrap_err();
        assert_eq!(
            err,
            MappingError::MissingField {
                variable: "conversation_id".into(),
                pointers: "/conversationId".into()
            }
        );
        assert!(err.to_string().contains("conversation_id"));
        // Empty strings count as missing.
        assert!(m.map(&event(json!({"conversationId": " "})), "k").is_err());
    }

    #[test]
    fn defaults_and_fallback_pointers() {
        let m = Mapping::default_mapping().unwrap();
        let inc = m.map(&event(json!({"conversationId": CONV, "queueId": "q-9", "wrapupCode": "Network outage"})), "k").unwrap();
        assert!(inc.description.contains("Queue: q-9"));
        assert!(inc.short_description.contains("Network outage"));
        assert_eq!((inc.impact, inc.urgency), (1, 2));
        assert_eq!(inc.caller_phone, None);
        assert!(inc.description.contains("Caller: \n"));
    }

    #[test]
    fn short_description_is_capped() {
        let m = Mapping::default_mapping().unwrap();
        let inc = m
            .map(
                &event(json!({"conversationId": CONV, "escalationReason": "x".repeat(500)})),
                "k",
            )
            .unwrap();
        assert_eq!(inc.short_description.chars().count(), 160);
    }

    #[test]
    fn load_errors_are_explicit() {
        let base: Value = serde_json::from_str(DEFAULT_MAPPING_JSON).unwrap();
        let mut bad = base.clone();
        bad["incident"]["description"] = json!("{{nope}}");
        assert!(matches!(
            Mapping::from_json(&bad.to_string()),
            Err(MappingLoadError::UnknownVariable { .. })
        ));
        let mut bad = base.clone();
        bad["version"] = json!(2);
        assert!(matches!(
            Mapping::from_json(&bad.to_string()),
            Err(MappingLoadError::Version(2))
        ));
        let mut bad = base.clone();
        bad["incident"]["short_description"] = json!("{{queue");
        assert!(matches!(
            Mapping::from_json(&bad.to_string()),
            Err(MappingLoadError::Unclosed { .. })
        ));
        let mut bad = base.clone();
        bad["variables"]["queue"]["pointers"] = json!(["queueName"]);
        assert!(matches!(
            Mapping::from_json(&bad.to_string()),
            Err(MappingLoadError::Pointer(_))
        ));
        let mut bad = base;
        bad["incident"]["unknown_field"] = json!("x");
        let err = Mapping::from_json(&bad.to_string()).unwrap_err();
        assert!(err.to_string().contains("incident"), "{err}");
    }

    #[test]
    fn template_parsing() {
        let t = Template::parse("f", "a {{ x }} b {{y}}").unwrap();
        assert_eq!(
            t.0,
            vec![
                Segment::Text("a ".into()),
                Segment::Var("x".into()),
                Segment::Text(" b ".into()),
                Segment::Var("y".into())
            ]
        );
    }
}
