//! Flat input and output contracts, as Genesys Data Actions define them: an object of string, integer,
//! number and boolean properties named `[A-Za-z][A-Za-z0-9_-]*` (inputs may send `null` for an unset value).
//! Inputs are checked before an action runs; outputs before they are answered.

use serde::Serialize;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
    Number,
    Boolean,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            Kind::String => v.is_string(),
            Kind::Integer => v.is_i64() || v.is_u64(),
            Kind::Number => v.is_number(),
            Kind::Boolean => v.is_boolean(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub description: &'static str,
}

/// A field that must be present.
pub const fn required(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        required: true,
        description,
    }
}

/// A field that may be absent or `null`.
pub const fn optional(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        required: false,
        description,
    }
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Contract {
    pub fields: &'static [Field],
}

/// Whether `name` is a valid Genesys contract property name.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Contract {
    fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Checks an action's input: every unknown, missing or mistyped field is named (values never are: they
    /// may hold PII). `null`, and an empty or blank string, count as absent (Architect sends them for unset
    /// variables); the fields kept are returned.
    pub fn check_input(&self, body: &Value) -> Result<Map<String, Value>, Vec<FieldError>> {
        let Value::Object(object) = body else {
            return Err(vec![FieldError::new(".", "the body must be a JSON object")]);
        };
        let mut errors = Vec::new();
        let mut kept = Map::new();
        for (name, value) in object {
            match self.field(name) {
                None => errors.push(FieldError::new(name, "unknown field")),
                Some(_)
                    if value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty()) => {}
                Some(f) if !f.kind.accepts(value) => errors.push(FieldError::new(
                    name,
                    format!("must be a {}", f.kind.name()),
                )),
                Some(_) => {
                    kept.insert(name.clone(), value.clone());
                }
            }
        }
        for f in self.fields.iter().filter(|f| f.required) {
            if !kept.contains_key(f.name) && !errors.iter().any(|e| e.field == f.name) {
                errors.push(FieldError::new(f.name, "is required"));
            }
        }
        match errors.is_empty() {
            true => Ok(kept),
            false => Err(errors),
        }
    }

    /// Checks an action's answer: exactly the declared fields, each of its kind, nothing nested.
    pub fn check_output(&self, output: &Map<String, Value>) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        for (name, value) in output {
            match self.field(name) {
                None => errors.push(FieldError::new(name, "not in the output contract")),
                Some(f) if !f.kind.accepts(value) => errors.push(FieldError::new(
                    name,
                    format!("must be a {}", f.kind.name()),
                )),
                Some(_) => {}
            }
        }
        for f in self.fields {
            if !output.contains_key(f.name) {
                errors.push(FieldError::new(f.name, "missing from the output"));
            }
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors),
        }
    }

    /// The contract as the JSON Schema Genesys's action editor takes (paste it as the input or output
    /// contract). `closed`: other properties are refused (inputs are).
    pub fn schema(&self, title: &str, closed: bool) -> Value {
        let properties: Map<String, Value> = self
            .fields
            .iter()
            .map(|f| {
                (
                    f.name.to_string(),
                    json!({"type": f.kind.name(), "description": f.description}),
                )
            })
            .collect();
        let required: Vec<&str> = self
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name)
            .collect();
        json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "title": title,
            "type": "object",
            "required": required,
            "properties": properties,
            "additionalProperties": !closed,
        })
    }

    /// Contract names that Genesys would refuse (a test guards the shipped contracts).
    pub fn invalid_names(&self) -> Vec<&'static str> {
        self.fields
            .iter()
            .map(|f| f.name)
            .filter(|n| !valid_name(n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Contract = Contract {
        fields: &[
            required("conversationId", Kind::String, "id"),
            optional("count", Kind::Integer, "n"),
            optional("score", Kind::Number, "x"),
            optional("vip", Kind::Boolean, "b"),
        ],
    };

    #[test]
    fn input_errors_name_every_field_and_never_a_value() {
        let err = C
            .check_input(&json!({"count": "+15550199888", "surprise": 1, "vip": "yes"}))
            .unwrap_err();
        let named: Vec<(&str, &str)> = err
            .iter()
            .map(|e| (e.field.as_str(), e.problem.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("count", "must be a integer"),
                ("surprise", "unknown field"),
                ("vip", "must be a boolean"),
                ("conversationId", "is required"),
            ]
        );
        assert!(!format!("{err:?}").contains("15550199888"));
        assert!(C.check_input(&json!([1])).is_err());
        assert!(C.check_input(&json!({"conversationId": null})).is_err());
    }

    #[test]
    fn nulls_are_absent_and_numbers_accept_integers() {
        let kept = C
            .check_input(&json!({"conversationId": "c", "count": null, "score": 3}))
            .unwrap();
        assert_eq!(
            kept,
            *json!({"conversationId": "c", "score": 3})
                .as_object()
                .unwrap()
        );
        assert!(C
            .check_input(&json!({"conversationId": "c", "count": 1.5}))
            .is_err());
        // Unset Architect variables: blank strings are absent, so a required one is missing.
        let err = C.check_input(&json!({"conversationId": " "})).unwrap_err();
        assert_eq!(err, [FieldError::new("conversationId", "is required")]);
    }

    #[test]
    fn output_must_be_exactly_the_contract() {
        let ok = json!({"conversationId": "c", "count": 1, "score": 0.5, "vip": false});
        assert!(C.check_output(ok.as_object().unwrap()).is_ok());
        let bad = json!({"conversationId": "c", "count": "1", "score": 0.5, "extra": [1]});
        let err = C.check_output(bad.as_object().unwrap()).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["count", "extra", "vip"]);
    }

    #[test]
    fn names_follow_the_genesys_rule() {
        assert!(valid_name("incidentNumber") && valid_name("a-b_c9"));
        assert!(
            !valid_name("9lives") && !valid_name("") && !valid_name("a.b") && !valid_name("_x")
        );
        let schema = C.schema("t", true);
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], json!(["conversationId"]));
        assert_eq!(schema["properties"]["count"]["type"], "integer");
    }
}
