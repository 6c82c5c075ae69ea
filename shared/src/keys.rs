//! Idempotency keys and payload hashes.
//!
//! An *event* key is, in order of preference: the event's own id; the values at configured JSON pointers
//! into the event body together with the event type (none by default); else the SHA-256 of the event type
//! and canonical body, so two different events of one conversation never share a key while a re-delivered
//! copy always does. A *conversation* key identifies the incident of a conversation. Keys are `gc-` and 64
//! hex characters: DynamoDB record ids and the incident's `correlation_id` (ServiceNow allows 100).

use sha2::{Digest, Sha256};

use crate::event::{for_each_normalised_segment, InboundEvent};
use crate::json::{Json, Sink};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    EventId,
    Pointers,
    BodyHash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// `gc-` followed by 64 hex characters.
    pub key: String,
    pub source: KeySource,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// JSON pointers into the event body; all must resolve to a non-empty scalar to be used.
    pub pointers: Vec<String>,
    /// Use the envelope's event id when present.
    pub prefer_event_id: bool,
}

impl Default for KeyConfig {
    fn default() -> Self {
        Self {
            pointers: Vec::new(),
            prefer_event_id: true,
        }
    }
}

impl KeyConfig {
    pub fn derive(&self, event: &InboundEvent) -> IdempotencyKey {
        self.derive_inner(event, None)
    }

    /// As `derive`, reusing the event's [`payload_hash`] when the caller has computed it anyway.
    pub fn derive_hashed(&self, event: &InboundEvent, payload_hash: &str) -> IdempotencyKey {
        self.derive_inner(event, Some(payload_hash))
    }

    fn derive_inner(&self, event: &InboundEvent, known_hash: Option<&str>) -> IdempotencyKey {
        if self.prefer_event_id {
            if let Some(id) = event.event_id.as_deref().filter(|s| !s.trim().is_empty()) {
                return key_of(KeySource::EventId, &["event-id", id]);
            }
        }
        if !self.pointers.is_empty() {
            let values: Option<Vec<String>> = self
                .pointers
                .iter()
                .map(|p| event.pointer(p).and_then(scalar_text))
                .collect();
            if let Some(values) = values {
                let kind = event.event_kind();
                let mut parts: Vec<&str> = vec!["pointers", &kind];
                parts.extend(values.iter().map(String::as_str));
                return key_of(KeySource::Pointers, &parts);
            }
        }
        match known_hash {
            Some(hash) => key_of(KeySource::BodyHash, &["body", hash]),
            None => key_of(KeySource::BodyHash, &["body", &payload_hash(event)]),
        }
    }
}

/// The key of a conversation's incident: its `correlation_id` and the DynamoDB id of its record. Whatever
/// profile maps an event of the conversation, the key is the same, so an IVR escalation and the later
/// conversation events of that call share one incident.
pub fn conversation_key(conversation_id: &str) -> String {
    key_of(
        KeySource::Pointers,
        &["conversation", conversation_id.trim()],
    )
    .key
}

fn scalar_text(v: &Json<'_>) -> Option<String> {
    match v {
        Json::String(s) if !s.trim().is_empty() => Some(s.to_string()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn key_of(source: KeySource, parts: &[&str]) -> IdempotencyKey {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefix each part so ("ab","c") and ("a","bc") differ.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let mut key = String::with_capacity(67);
    key.push_str("gc-");
    push_hex(&mut key, &h.finalize());
    IdempotencyKey { key, source }
}

/// SHA-256 (hex) of the event type and canonical body: the same event always hashes the same,
/// whatever its key order or envelope. The canonical form (keys sorted, JSON-escaped) is streamed into the
/// hash, never built as a string.
pub fn payload_hash(event: &InboundEvent<'_>) -> String {
    let mut h = HashSink::new();
    for_each_normalised_segment(&event.event_type, |seg| h.put(seg.as_bytes()));
    h.put(b"\n");
    event.body.write_canonical(&mut h);
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &h.finish());
    out
}

struct HashSink(Sha256);

impl HashSink {
    fn new() -> Self {
        HashSink(Sha256::new())
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

impl Sink for HashSink {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EnvelopeKind;
    use crate::json::Object;
    use serde_json::{json, Value};

    fn event(id: Option<&str>, body: Value) -> InboundEvent<'static> {
        InboundEvent {
            kind: EnvelopeKind::Webhook,
            event_type:
                "v2.detail.events.conversation.3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b.customer.end"
                    .into(),
            event_id: id.map(str::to_string),
            organization_id: None,
            timestamp: None,
            body: body
                .as_object()
                .cloned()
                .map(Object::from)
                .unwrap_or_default(),
        }
    }

    #[test]
    fn prefers_event_id_then_pointers_then_hash() {
        let cfg = pointer_config();
        let with_id = cfg.derive(&event(Some("e-1"), json!({"conversationId": "c-1"})));
        assert_eq!(with_id.source, KeySource::EventId);
        let by_ptr = cfg.derive(&event(None, json!({"conversationId": "c-1"})));
        assert_eq!(by_ptr.source, KeySource::Pointers);
        let by_hash = cfg.derive(&event(None, json!({"other": 1})));
        assert_eq!(by_hash.source, KeySource::BodyHash);
        assert_ne!(with_id.key, by_ptr.key);
        assert_ne!(by_ptr.key, by_hash.key);
        assert!(with_id.key.starts_with("gc-") && with_id.key.len() == 67);
    }

    #[test]
    fn keys_are_deterministic_and_distinguish_events() {
        let cfg = pointer_config();
        let a = cfg.derive(&event(None, json!({"conversationId": "c-1", "x": 1})));
        let b = cfg.derive(&event(None, json!({"x": 2, "conversationId": "c-1"})));
        assert_eq!(a, b, "pointer keys ignore unrelated fields");
        let c = cfg.derive(&event(None, json!({"conversationId": "c-2"})));
        assert_ne!(a, c);
        let mut other_type = event(None, json!({"conversationId": "c-1"}));
        other_type.event_type =
            "v2.detail.events.conversation.3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b.acw".into();
        assert_ne!(a, cfg.derive(&other_type));
        // The conversation id inside the topic name does not change the key: its kind is used.
        let mut same_kind = event(None, json!({"conversationId": "c-1"}));
        same_kind.event_type =
            "v2.detail.events.conversation.00000000-0000-0000-0000-000000000000.customer.end"
                .into();
        assert_eq!(a, cfg.derive(&same_kind));
    }

    fn pointer_config() -> KeyConfig {
        KeyConfig {
            pointers: vec!["/conversationId".into()],
            prefer_event_id: true,
        }
    }

    #[test]
    fn by_default_events_without_id_are_keyed_by_content() {
        let cfg = KeyConfig::default();
        let end = cfg.derive(&event(None, json!({"conversationId": "c-1", "a": 1})));
        assert_eq!(end.source, KeySource::BodyHash);
        let again = cfg.derive(&event(None, json!({"a": 1, "conversationId": "c-1"})));
        assert_eq!(end, again, "a re-delivered copy has the same key");
        let other = cfg.derive(&event(None, json!({"conversationId": "c-1", "a": 2})));
        assert_ne!(
            end, other,
            "another event of the conversation has its own key"
        );
        assert_ne!(conversation_key("c-1"), end.key);
        assert_eq!(conversation_key(" c-1 "), conversation_key("c-1"));
        assert!(conversation_key("c-1").starts_with("gc-"));
    }

    #[test]
    fn payload_hash_is_stable_and_reusable_for_keys() {
        let e = event(
            None,
            json!({"a": "x\"y", "b": [1, 2.5, null, true], "c": {"z": 1, "y": "é"}}),
        );
        // The canonical form `{"a":"x\"y","b":[1,2.5,null,true],"c":{"y":"é","z":1}}` after the kind.
        let mut expected = Sha256::new();
        expected.update(e.event_kind().as_bytes());
        expected.update(
            b"\n{\"a\":\"x\\\"y\",\"b\":[1,2.5,null,true],\"c\":{\"y\":\"\xc3\xa9\",\"z\":1}}",
        );
        assert_eq!(payload_hash(&e), hex::encode(expected.finalize()));
        let cfg = KeyConfig::default();
        assert_eq!(cfg.derive(&e), cfg.derive_hashed(&e, &payload_hash(&e)));
    }

    #[test]
    fn payload_hash_is_the_hash_of_the_canonical_form_at_any_size() {
        // Bodies of a few bytes to several hash blocks, and strings longer than a block.
        for body in [
            json!({}),
            json!({"s": "x".repeat(1000)}),
            json!({"s": "x".repeat(1017), "t": "y"}),
            json!({"s": "é".repeat(700), "n": (0..300).collect::<Vec<_>>()}),
            json!({"long": "z".repeat(5000), "a": 1}),
        ] {
            let e = event(None, body.clone());
            let mut expected = Sha256::new();
            expected.update(e.event_kind().as_bytes());
            expected.update(b"\n");
            expected.update(body.to_string().as_bytes());
            assert_eq!(payload_hash(&e), hex::encode(expected.finalize()));
        }
    }

    #[test]
    fn payload_hash_is_order_independent() {
        let a = event(None, json!({"a": 1, "b": {"d": [1, 2], "c": "x"}}));
        let b = event(None, json!({"b": {"c": "x", "d": [1, 2]}, "a": 1}));
        assert_eq!(payload_hash(&a), payload_hash(&b));
        let c = event(None, json!({"b": {"c": "x", "d": [2, 1]}, "a": 1}));
        assert_ne!(payload_hash(&a), payload_hash(&c));
    }
}
