//! Impact and urgency rules. ServiceNow derives `priority` from them, so it is never sent.

use serde::Deserialize;
use serde_json::Value;

use crate::json::Json;

/// ServiceNow levels: 1 High, 2 Medium, 3 Low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Levels {
    pub impact: u8,
    pub urgency: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRules {
    pub default: Levels,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// When every condition holds, impact and urgency become at least as severe as the rule's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub when: Vec<Condition>,
    #[serde(default)]
    pub impact: Option<u8>,
    #[serde(default)]
    pub urgency: Option<u8>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Condition {
    pub var: String,
    #[serde(flatten)]
    pub test: Test,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// Exactly this JSON value.
    Equals(Value),
    /// `true`, `"true"`, `"yes"`, `"1"`, non-zero numbers are truthy.
    Truthy(bool),
    Gte(f64),
    Lte(f64),
    /// One of these values.
    In(Vec<Value>),
    /// Case-insensitive substring of the text (the needles are lowercased once, when loaded; `holds`
    /// relies on it).
    ContainsAny(#[serde(deserialize_with = "lowercased")] Vec<String>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("rule `{rule}`: {what} must be 1, 2 or 3, got {value}")]
    Level {
        rule: String,
        what: &'static str,
        value: u8,
    },
    #[error("rule `{rule}` has no conditions")]
    Empty { rule: String },
    #[error("rule `{rule}` sets neither impact nor urgency")]
    NoEffect { rule: String },
}

impl PriorityRules {
    pub fn validate(&self) -> Result<(), RuleError> {
        check_level("default", "impact", Some(self.default.impact))?;
        check_level("default", "urgency", Some(self.default.urgency))?;
        for r in &self.rules {
            if r.when.is_empty() {
                return Err(RuleError::Empty {
                    rule: r.name.clone(),
                });
            }
            if r.impact.is_none() && r.urgency.is_none() {
                return Err(RuleError::NoEffect {
                    rule: r.name.clone(),
                });
            }
            check_level(&r.name, "impact", r.impact)?;
            check_level(&r.name, "urgency", r.urgency)?;
        }
        Ok(())
    }

    /// The resulting levels and the names of the rules that matched; `get` gives a variable's value.
    pub fn evaluate<'v, 'j: 'v>(
        &self,
        get: impl Fn(&str) -> Option<&'v Json<'j>>,
    ) -> (Levels, Vec<&str>) {
        let mut levels = self.default;
        let mut matched = Vec::new();
        for rule in &self.rules {
            let holds = rule
                .when
                .iter()
                .all(|c| get(&c.var).is_some_and(|v| c.test.holds(v)));
            if holds {
                if let Some(i) = rule.impact {
                    levels.impact = levels.impact.min(i);
                }
                if let Some(u) = rule.urgency {
                    levels.urgency = levels.urgency.min(u);
                }
                matched.push(rule.name.as_str());
            }
        }
        (levels, matched)
    }

    /// Variables the rules read.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .flat_map(|r| r.when.iter().map(|c| c.var.as_str()))
    }
}

fn check_level(rule: &str, what: &'static str, v: Option<u8>) -> Result<(), RuleError> {
    match v {
        Some(value) if !(1..=3).contains(&value) => Err(RuleError::Level {
            rule: rule.to_string(),
            what,
            value,
        }),
        _ => Ok(()),
    }
}

impl Test {
    pub fn holds(&self, v: &Json<'_>) -> bool {
        match self {
            Test::Equals(expected) => v == expected,
            Test::Truthy(want) => truthy(v) == *want,
            Test::Gte(n) => number(v).is_some_and(|x| x >= *n),
            Test::Lte(n) => number(v).is_some_and(|x| x <= *n),
            Test::In(options) => options.iter().any(|o| v == o),
            Test::ContainsAny(needles) => {
                if let Json::String(s) = v {
                    if s.is_ascii() {
                        return needles.iter().any(|n| contains_ascii_caseless(s, n));
                    }
                }
                let hay = match v {
                    Json::String(s) if s.is_ascii() => s.to_ascii_lowercase(),
                    Json::String(s) => s.to_lowercase(),
                    Json::Null => return false,
                    other => other.to_string().to_lowercase(),
                };
                needles.iter().any(|n| hay.contains(n.as_str()))
            }
        }
    }
}

fn lowercased<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let needles = Vec::<String>::deserialize(d)?;
    Ok(needles.into_iter().map(|n| n.to_lowercase()).collect())
}

/// Whether `hay` (ASCII) contains `needle` (lower case) ignoring ASCII case: `hay.to_ascii_lowercase()
/// .contains(needle)` without the copy.
fn contains_ascii_caseless(hay: &str, needle: &str) -> bool {
    let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    hay.len() >= needle.len()
        && (0..=hay.len() - needle.len()).any(|i| {
            hay[i].to_ascii_lowercase() == first
                && hay[i + 1..i + needle.len()].eq_ignore_ascii_case(rest)
        })
}

fn truthy(v: &Json<'_>) -> bool {
    match v {
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Json::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "yes" | "y" | "1"
        ),
        _ => false,
    }
}

fn number(v: &Json<'_>) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// ServiceNow's default priority lookup: 1/1→1; 1/2,2/1→2; 1/3,2/2,3/1→3; 2/3,3/2→4; 3/3→5.
pub fn derived_priority(levels: Levels) -> u8 {
    levels.impact + levels.urgency - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    impl PriorityRules {
        fn evaluate_on(&self, vars: &Json<'_>) -> (Levels, Vec<&str>) {
            self.evaluate(|name| vars.get(name))
        }
    }

    #[test]
    fn caseless_contains_agrees_with_lowercasing() {
        let hays = [
            "",
            "a",
            "Billing Portal OUTAGE",
            "down",
            "xdownx",
            "DoWn",
            "ab",
            "outag",
        ];
        let needles = ["", "a", "outage", "down", "b", "portal outage", "é", "abc"];
        for hay in hays {
            for needle in needles {
                assert_eq!(
                    contains_ascii_caseless(hay, needle),
                    hay.to_ascii_lowercase().contains(needle),
                    "{hay:?} {needle:?}"
                );
            }
        }
    }

    fn rules() -> PriorityRules {
        serde_json::from_value(json!({
            "default": {"impact": 3, "urgency": 3},
            "rules": [
                {"name": "vip", "when": [{"var": "vip", "truthy": true}], "impact": 2, "urgency": 1},
                {"name": "long wait", "when": [{"var": "wait_ms", "gte": 300000}], "urgency": 2},
                {"name": "outage", "when": [{"var": "reason", "contains_any": ["outage", "down"]}], "impact": 1},
                {"name": "dropped", "when": [{"var": "disconnect", "in": ["TRANSPORT_FAILURE", "SYSTEM"]},
                                              {"var": "wait_ms", "gte": 1}], "urgency": 2}
            ]
        }))
        .unwrap()
    }

    fn vars(v: Value) -> Json<'static> {
        Json::from(v)
    }

    #[test]
    fn default_when_nothing_matches() {
        let r = rules();
        let (l, m) = r.evaluate_on(&vars(
            json!({"vip": false, "wait_ms": 10, "reason": "billing"}),
        ));
        assert_eq!(
            l,
            Levels {
                impact: 3,
                urgency: 3
            }
        );
        assert!(m.is_empty());
        assert_eq!(derived_priority(l), 5);
    }

    #[test]
    fn rules_combine_to_the_most_severe() {
        let r = rules();
        let (l, m) = r.evaluate_on(&vars(
            json!({"vip": "true", "wait_ms": 400000, "reason": "Network OUTAGE"}),
        ));
        assert_eq!(
            l,
            Levels {
                impact: 1,
                urgency: 1
            }
        );
        assert_eq!(m, vec!["vip", "long wait", "outage"]);
        assert_eq!(derived_priority(l), 1);

        let (l, _) = rules().evaluate_on(&vars(json!({"wait_ms": "300000"})));
        assert_eq!(
            l,
            Levels {
                impact: 3,
                urgency: 2
            }
        );
        assert_eq!(derived_priority(l), 4);
    }

    #[test]
    fn all_conditions_must_hold_and_missing_variables_never_match() {
        let r = rules();
        let (l, m) = r.evaluate_on(&vars(json!({"disconnect": "SYSTEM"})));
        assert!(m.is_empty());
        assert_eq!(l.urgency, 3);
        let (_, m) = r.evaluate_on(&vars(json!({"disconnect": "SYSTEM", "wait_ms": 5})));
        assert_eq!(m, vec!["dropped"]);
    }

    #[test]
    fn priority_matrix_matches_servicenow() {
        let p = |impact, urgency| derived_priority(Levels { impact, urgency });
        assert_eq!(
            [
                p(1, 1),
                p(1, 2),
                p(2, 1),
                p(1, 3),
                p(2, 2),
                p(3, 1),
                p(2, 3),
                p(3, 2),
                p(3, 3)
            ],
            [1, 2, 2, 3, 3, 3, 4, 4, 5]
        );
    }

    #[test]
    fn validation() {
        assert!(rules().validate().is_ok());
        let bad: PriorityRules = serde_json::from_value(json!({
            "default": {"impact": 3, "urgency": 3},
            "rules": [{"name": "x", "when": [{"var": "a", "truthy": true}], "impact": 4}]
        }))
        .unwrap();
        assert!(matches!(bad.validate(), Err(RuleError::Level { .. })));
        let bad: PriorityRules = serde_json::from_value(json!({
            "default": {"impact": 3, "urgency": 3},
            "rules": [{"name": "x", "when": [], "impact": 1}]
        }))
        .unwrap();
        assert!(matches!(bad.validate(), Err(RuleError::Empty { .. })));
    }
}
