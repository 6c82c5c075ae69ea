//! Legacy business events: strict validation and mapping to the Genesys event schema.
//!
//! Input: `{transaction_id, event_type, amount, currency, timestamp}` and, for the delivery targets, optional
//! `reference` (an order number…), `customer_phone` (E.164), `customer_email`, `conversation_id`,
//! `participant_id` and `attributes` (a flat object); every problem is reported with its field.
//! Output: `{eventType: "custom.<source>.<event_type>", eventTime, source{system, version}, data{…}}`.

use serde::Serialize;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use shared::event::glob_match;

const FIELDS: &[&str] = &[
    "transaction_id",
    "event_type",
    "amount",
    "currency",
    "timestamp",
    "reference",
    "customer_phone",
    "customer_email",
    "conversation_id",
    "participant_id",
    "attributes",
];

/// At most this many `attributes`, each value at most [`MAX_ATTRIBUTE_CHARS`] characters.
const MAX_ATTRIBUTES: usize = 32;
const MAX_ATTRIBUTE_CHARS: usize = 1024;

/// ISO 4217 active currency codes.
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN \
BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP \
GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT \
LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB \
PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS \
TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG \
XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

fn problem(field: &str, problem: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A validated legacy event.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessEvent {
    pub transaction_id: String,
    pub event_type: String,
    pub amount: serde_json::Number,
    pub currency: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// The optional fields given, validated and normalised (`customer_phone` in E.164).
    pub optional: Map<String, Value>,
}

impl BusinessEvent {
    /// The event as the targets' JSON pointers read it: every field, plus `source`.
    pub fn document(&self, source: &str) -> Value {
        let mut doc = json!({
            "transaction_id": self.transaction_id,
            "event_type": self.event_type,
            "amount": self.amount,
            "currency": self.currency,
            "timestamp": self.timestamp,
            "source": source,
        });
        if let Some(d) = doc.as_object_mut() {
            d.extend(self.optional.clone());
        }
        doc
    }
}

#[derive(Debug, Clone)]
pub struct EventRules {
    /// Globs the `event_type` must match (after the charset check).
    pub allowed_event_types: Vec<String>,
}

/// Validates the body, reporting every field problem at once.
pub fn validate(body: &[u8], rules: &EventRules) -> Result<BusinessEvent, Vec<FieldError>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| vec![problem("$", format!("not valid JSON ({e})"))])?;
    let Value::Object(map) = value else {
        return Err(vec![problem("$", "expected a JSON object")]);
    };
    let mut errors: Vec<FieldError> = map
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .map(|k| problem(k, "unknown field"))
        .collect();
    let transaction_id = text(&map, "transaction_id", &mut errors).and_then(|t| {
        let ok = (1..=128).contains(&t.len())
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        ok.then_some(t).or_else(|| {
            none(
                &mut errors,
                "transaction_id",
                "1-128 characters of A-Z a-z 0-9 - _ . :",
            )
        })
    });
    let event_type = text(&map, "event_type", &mut errors).and_then(|t| {
        if !valid_event_type(&t) {
            none(
                &mut errors,
                "event_type",
                "lowercase words of a-z 0-9 _ separated by dots, at most 64 characters",
            )
        } else if !rules.allowed_event_types.iter().any(|p| glob_match(p, &t)) {
            none(
                &mut errors,
                "event_type",
                "event type is not accepted by this deployment",
            )
        } else {
            Some(t)
        }
    });
    let amount = match map.get("amount") {
        None => none(&mut errors, "amount", "required"),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|x| x.is_finite() && x.abs() < 1e15) => {
            Some(n.clone())
        }
        Some(Value::Number(_)) => none(&mut errors, "amount", "out of range"),
        Some(_) => none(&mut errors, "amount", "expected a number"),
    };
    let currency = text(&map, "currency", &mut errors).and_then(|c| {
        let ok = c.len() == 3
            && c.chars().all(|x| x.is_ascii_uppercase())
            && ISO_4217.split(' ').any(|x| x == c);
        ok.then_some(c).or_else(|| {
            none(
                &mut errors,
                "currency",
                "expected an ISO 4217 code such as EUR",
            )
        })
    });
    let timestamp = match map.get("timestamp") {
        None => none(&mut errors, "timestamp", "required"),
        Some(v) => normalise_timestamp(v).or_else(|| {
            none(
                &mut errors,
                "timestamp",
                "expected RFC 3339 or epoch seconds/milliseconds",
            )
        }),
    };
    let optional = optional_fields(&map, &mut errors);
    match (transaction_id, event_type, amount, currency, timestamp) {
        (Some(transaction_id), Some(event_type), Some(amount), Some(currency), Some(timestamp))
            if errors.is_empty() =>
        {
            Ok(BusinessEvent {
                transaction_id,
                event_type,
                amount,
                currency,
                timestamp,
                optional,
            })
        }
        _ => {
            errors.sort_by(|a, b| a.field.cmp(&b.field));
            Err(errors)
        }
    }
}

/// The optional fields, each checked (values never echoed: they may be PII).
fn optional_fields(map: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Map<String, Value> {
    let mut out = Map::new();
    let identifier = |s: &str, max: usize| {
        (1..=max).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    };
    for field in [
        "reference",
        "customer_phone",
        "customer_email",
        "conversation_id",
        "participant_id",
    ] {
        let Some(v) = map.get(field) else { continue };
        let Some(s) = v.as_str().map(str::trim) else {
            errors.push(problem(field, "expected a string"));
            continue;
        };
        let checked = match field {
            "reference" => identifier(s, 128)
                .then(|| s.to_string())
                .ok_or("1-128 characters of A-Z a-z 0-9 - _ . :"),
            "customer_phone" => shared::redact::normalise_e164(s)
                .ok_or("expected a phone number in E.164 (+ and 8 to 15 digits)"),
            "customer_email" => {
                let ok = s.len() <= 254
                    && s.split_once('@').is_some_and(|(local, domain)| {
                        !local.is_empty() && domain.contains('.') && !domain.contains('@')
                    })
                    && !s.chars().any(char::is_whitespace);
                ok.then(|| s.to_ascii_lowercase())
                    .ok_or("expected an e-mail address")
            }
            _ => identifier(s, 64)
                .then(|| s.to_string())
                .ok_or("expected a Genesys id (A-Z a-z 0-9 -, at most 64 characters)"),
        };
        match checked {
            Ok(v) => {
                out.insert(field.to_string(), Value::String(v));
            }
            Err(why) => errors.push(problem(field, why)),
        }
    }
    match map.get("attributes") {
        None => {}
        Some(Value::Object(attrs)) if attrs.len() <= MAX_ATTRIBUTES => {
            let mut kept = Map::new();
            for (k, v) in attrs {
                let field = format!("attributes.{k}");
                let name_ok = k.len() <= 64
                    && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !name_ok {
                    errors.push(problem(
                        &field,
                        "names are a letter, then letters, digits or _ (at most 64)",
                    ));
                    continue;
                }
                match v {
                    Value::String(s) if s.chars().count() <= MAX_ATTRIBUTE_CHARS => {}
                    Value::Number(_) | Value::Bool(_) => {}
                    Value::String(_) => {
                        errors.push(problem(&field, "at most 1024 characters"));
                        continue;
                    }
                    _ => {
                        errors.push(problem(&field, "expected a string, number or boolean"));
                        continue;
                    }
                }
                kept.insert(k.clone(), v.clone());
            }
            out.insert("attributes".into(), Value::Object(kept));
        }
        Some(Value::Object(_)) => errors.push(problem("attributes", "at most 32 attributes")),
        Some(_) => errors.push(problem("attributes", "expected an object")),
    }
    out
}

fn none<T>(errors: &mut Vec<FieldError>, field: &str, why: &str) -> Option<T> {
    errors.push(problem(field, why));
    None
}

fn text(map: &Map<String, Value>, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match map.get(field) {
        None => none(errors, field, "required"),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => none(errors, field, "expected a string"),
    }
}

fn valid_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.split('.').all(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// A source name for `custom.<source>.…`: lowercase, a-z 0-9 _ -, at most 64 characters.
pub fn valid_source(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// RFC 3339 (any offset) or epoch seconds / milliseconds → RFC 3339 UTC. Years 1970–9999 only.
pub fn normalise_timestamp(v: &Value) -> Option<String> {
    let dt = match v {
        Value::String(s) => OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?,
        Value::Number(n) => {
            let x = n.as_i64().filter(|x| *x >= 0)?;
            // Below 10^11 it is seconds (until year 5138); above, milliseconds.
            let nanos = if x < 100_000_000_000 {
                i128::from(x) * 1_000_000_000
            } else {
                i128::from(x) * 1_000_000
            };
            OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?
        }
        _ => return None,
    };
    // `to_offset` panics where the UTC form leaves years ±9999 (`9999-12-31T23:59:59-01:00`).
    let utc = dt.checked_to_offset(time::UtcOffset::UTC)?;
    (1970..=9999)
        .contains(&utc.year())
        .then(|| utc.format(&Rfc3339).ok())
        .flatten()
}

/// Deterministic Idempotency-Key: UUIDv5 of the token issuer and the transaction id, so a legacy system
/// retrying a transaction can never create a second Genesys event. Keys are bound to their issuers
/// ([`crate::auth::KeyBinding`]), so no other system can claim this issuer and pre-empt its keys.
pub fn idempotency_key(issuer: &str, transaction_id: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_3c2e_8d4b_4a57_9f0e_2b7d_51a4_c9e3);
    let name = format!("{}\n{}", issuer.len(), issuer) + "\n" + transaction_id;
    uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

/// The Genesys event body.
pub fn to_genesys(event: &BusinessEvent, source: &str, source_version: &str) -> Value {
    json!({
        "eventType": format!("custom.{source}.{}", event.event_type),
        "eventTime": event.timestamp,
        "source": {"system": source, "version": source_version},
        "data": {
            "transactionId": event.transaction_id,
            "eventType": event.event_type,
            "amount": event.amount,
            "currency": event.currency,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> EventRules {
        EventRules {
            allowed_event_types: vec!["*".into()],
        }
    }

    fn body(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn accepts_a_valid_event_and_normalises_time() {
        let e = validate(
            &body(
                json!({"transaction_id": "TX-1", "event_type": "payment.received", "amount": 12.5,
                         "currency": "EUR", "timestamp": "2026-11-23T11:00:00+01:00"}),
            ),
            &rules(),
        )
        .unwrap();
        assert_eq!(e.timestamp, "2026-11-23T10:00:00Z");
        let g = to_genesys(&e, "billing", "1.0");
        assert_eq!(g["eventType"], "custom.billing.payment.received");
        assert_eq!(g["data"]["amount"], json!(12.5));
        assert_eq!(g["source"]["system"], "billing");
    }

    #[test]
    fn reports_every_bad_field() {
        let errs = validate(
            &body(
                json!({"transaction_id": 7, "event_type": "Bad Type", "amount": "12",
                         "currency": "eur", "timestamp": "yesterday", "extra": true}),
            ),
            &rules(),
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "amount",
                "currency",
                "event_type",
                "extra",
                "timestamp",
                "transaction_id"
            ]
        );
        let errs = validate(&body(json!({})), &rules()).unwrap_err();
        assert_eq!(errs.len(), 5);
        assert!(errs.iter().all(|e| e.problem == "required"));
        assert_eq!(validate(b"[1]", &rules()).unwrap_err()[0].field, "$");
        assert_eq!(validate(b"{", &rules()).unwrap_err()[0].field, "$");
    }

    #[test]
    fn currency_must_be_iso_4217() {
        let mk = |c: &str| {
            validate(
                &body(
                    json!({"transaction_id": "t", "event_type": "a", "amount": 1, "currency": c, "timestamp": 0}),
                ),
                &rules(),
            )
        };
        assert!(mk("USD").is_ok());
        assert!(mk("XYZ").is_err());
        assert!(mk("US").is_err());
    }

    #[test]
    fn event_type_allow_list() {
        let r = EventRules {
            allowed_event_types: vec!["payment.*".into()],
        };
        let mk = |t: &str| {
            validate(
                &body(
                    json!({"transaction_id": "t", "event_type": t, "amount": 1, "currency": "EUR", "timestamp": 0}),
                ),
                &r,
            )
        };
        assert!(mk("payment.received").is_ok());
        assert_eq!(mk("refund.issued").unwrap_err()[0].field, "event_type");
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            normalise_timestamp(&json!(1_795_428_000)).unwrap(),
            "2026-11-23T10:00:00Z"
        );
        assert_eq!(
            normalise_timestamp(&json!(1_795_428_000_000i64)).unwrap(),
            "2026-11-23T10:00:00Z"
        );
        assert_eq!(
            normalise_timestamp(&json!("2026-11-23T10:00:00.250Z")).unwrap(),
            "2026-11-23T10:00:00.25Z"
        );
        assert_eq!(normalise_timestamp(&json!("2026-11-23")), None);
        assert_eq!(normalise_timestamp(&json!(-5)), None);
        assert_eq!(normalise_timestamp(&json!(1.5)), None);
        assert_eq!(normalise_timestamp(&json!(null)), None);
        // Beyond year 9999 once in UTC: refused, not a panic.
        assert_eq!(
            normalise_timestamp(&json!("9999-12-31T23:59:59-01:00")),
            None
        );
        assert_eq!(
            normalise_timestamp(&json!("9999-12-31T23:59:59+01:00")).unwrap(),
            "9999-12-31T22:59:59Z"
        );
    }

    #[test]
    fn idempotency_keys_are_deterministic_per_issuer_and_transaction() {
        let a = idempotency_key("https://billing.example", "TX-1");
        assert_eq!(a, idempotency_key("https://billing.example", "TX-1"));
        assert_ne!(a, idempotency_key("https://billing.example", "TX-2"));
        assert_ne!(a, idempotency_key("https://orders.example", "TX-1"));
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 5);
    }

    #[test]
    fn sources() {
        assert!(valid_source("billing"));
        assert!(valid_source("order-system_2"));
        assert!(!valid_source("Billing"));
        assert!(!valid_source("a.b"));
        assert!(!valid_source(""));
    }
}
