//! A JSON tree that borrows its strings from the input: an event body is read without copying it.
//!
//! Objects keep their members sorted by key with one member per key (the last one, as `serde_json`'s map
//! keeps it), so lookups are short scans or binary searches and the [`Display`](std::fmt::Display) form is the canonical
//! form the payload hash is computed over (keys sorted, compact, `serde_json`'s escaping and numbers).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Number, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// Members sorted by key, one per key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a> {
    members: Vec<(Cow<'a, str>, Json<'a>)>,
}

impl<'a> Json<'a> {
    /// Parses `raw`, borrowing every string that has no escape sequence. UTF-8 is checked once for the
    /// whole input, not string by string; invalid input is parsed as bytes for `serde_json`'s error.
    pub fn parse(raw: &'a [u8]) -> Result<Self, serde_json::Error> {
        match std::str::from_utf8(raw) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(raw),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.as_object()?.get(key)
    }

    /// The value at a JSON pointer (RFC 6901, `/a/0/b`); `""` is the value itself.
    pub fn pointer(&self, pointer: &str) -> Option<&Json<'a>> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/')
            .try_fold(self, |v, token| v.step(&unescape(token)))
    }

    /// One pointer step: an object member, or an array index (digits, no leading zero).
    fn step(&self, token: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(o) => o.get(token),
            Json::Array(items) => {
                let valid = !token.is_empty()
                    && token.bytes().all(|b| b.is_ascii_digit())
                    && (token == "0" || !token.starts_with('0'));
                items.get(token.parse::<usize>().ok().filter(|_| valid)?)
            }
            _ => None,
        }
    }

    /// The same tree as a `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(o) => Value::Object(o.to_map()),
        }
    }

    /// A tree that owns its strings.
    pub fn into_owned(self) -> Json<'static> {
        match self {
            Json::Null => Json::Null,
            Json::Bool(b) => Json::Bool(b),
            Json::Number(n) => Json::Number(n),
            Json::String(s) => Json::String(Cow::Owned(s.into_owned())),
            Json::Array(items) => Json::Array(items.into_iter().map(Json::into_owned).collect()),
            Json::Object(o) => Json::Object(o.into_owned()),
        }
    }

    /// Writes the canonical form: compact, keys sorted, strings escaped and numbers written as `serde_json`
    /// writes them.
    pub fn write_canonical(&self, out: &mut impl Sink) {
        match self {
            Json::Null => out.put(b"null"),
            Json::Bool(true) => out.put(b"true"),
            Json::Bool(false) => out.put(b"false"),
            Json::Number(n) => write_number(n, out),
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.put(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.put(b",");
                    }
                    item.write_canonical(out);
                }
                out.put(b"]");
            }
            Json::Object(o) => o.write_canonical(out),
        }
    }
}

impl From<Value> for Json<'static> {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Number(n) => Json::Number(n),
            Value::String(s) => Json::String(Cow::Owned(s)),
            Value::Array(items) => Json::Array(items.into_iter().map(Json::from).collect()),
            Value::Object(m) => Json::Object(Object::from(m)),
        }
    }
}

impl<'a> From<&'a Value> for Json<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Cow::Borrowed(s)),
            Value::Array(items) => Json::Array(items.iter().map(Json::from).collect()),
            Value::Object(m) => Json::Object(Object::from(m)),
        }
    }
}

impl PartialEq<Value> for Json<'_> {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Json::Null, Value::Null) => true,
            (Json::Bool(a), Value::Bool(b)) => a == b,
            (Json::Number(a), Value::Number(b)) => a == b,
            (Json::String(a), Value::String(b)) => a == b,
            (Json::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
            }
            (Json::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.get(k).is_some_and(|other| v == other))
            }
            _ => false,
        }
    }
}

impl fmt::Display for Json<'_> {
    /// The canonical form, which for a parsed `serde_json::Value` is also its `to_string()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write_canonical(&mut out);
        match std::str::from_utf8(&out) {
            Ok(text) => f.write_str(text),
            Err(_) => f.write_str(&String::from_utf8_lossy(&out)),
        }
    }
}

impl<'a> Object<'a> {
    /// From members in input order: sorted by key, the last of equal keys kept.
    fn from_members(mut members: Vec<(Cow<'a, str>, Json<'a>)>) -> Self {
        if !members.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable sort of the reversed list puts the last of equal keys first; dedup keeps the first.
            members.reverse();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            members.dedup_by(|later, kept| later.0 == kept.0);
        }
        Object { members }
    }

    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.position(key).map(|i| &self.members[i].1)
    }

    /// Where `key` is: a scan comparing lengths first in a small object (most members of an event differ
    /// in length), a binary search in a large one.
    fn position(&self, key: &str) -> Option<usize> {
        if self.members.len() <= 16 {
            self.members
                .iter()
                .position(|(k, _)| k.len() == key.len() && k.as_bytes() == key.as_bytes())
        } else {
            self.members
                .binary_search_by(|(k, _)| k.as_ref().cmp(key))
                .ok()
        }
    }

    /// The value at a JSON pointer into this object (`/a/0/b`).
    pub fn pointer(&self, pointer: &str) -> Option<&Json<'a>> {
        let mut tokens = pointer.strip_prefix('/')?.split('/');
        let first = self.get(&unescape(tokens.next()?))?;
        tokens.try_fold(first, |v, token| v.step(&unescape(token)))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Removes and returns the member `key`.
    pub fn take(&mut self, key: &str) -> Option<Json<'a>> {
        let i = self.position(key)?;
        Some(self.members.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect()
    }

    pub fn into_owned(self) -> Object<'static> {
        Object {
            members: self
                .members
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
        }
    }

    pub fn write_canonical(&self, out: &mut impl Sink) {
        out.put(b"{");
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                out.put(b",");
            }
            write_string(k, out);
            out.put(b":");
            v.write_canonical(out);
        }
        out.put(b"}");
    }
}

impl From<Map<String, Value>> for Object<'static> {
    fn from(map: Map<String, Value>) -> Self {
        Object::from_members(
            map.into_iter()
                .map(|(k, v)| (Cow::Owned(k), Json::from(v)))
                .collect(),
        )
    }
}

impl<'a> From<&'a Map<String, Value>> for Object<'a> {
    fn from(map: &'a Map<String, Value>) -> Self {
        Object::from_members(
            map.iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::from(v)))
                .collect(),
        )
    }
}

/// A JSON pointer split into its unescaped tokens once, to be resolved many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    tokens: Vec<String>,
}

impl Pointer {
    /// `None` unless it is a pointer into a document (`/a/b`).
    pub fn compile(pointer: &str) -> Option<Self> {
        let rest = pointer.strip_prefix('/')?;
        Some(Pointer {
            tokens: rest.split('/').map(|t| unescape(t).into_owned()).collect(),
        })
    }

    pub fn resolve<'j, 'a>(&self, object: &'j Object<'a>) -> Option<&'j Json<'a>> {
        let (first, rest) = self.tokens.split_first()?;
        rest.iter()
            .try_fold(object.get(first)?, |v, token| v.step(token))
    }
}

/// An RFC 6901 reference token as the member name it stands for (`~1` is `/`, `~0` is `~`).
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// Where canonical JSON is written: a hash or a buffer.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A `Sink` as an `io::Write`, for `serde_json`'s writers.
struct SinkWriter<'s, S: Sink>(&'s mut S);

impl<S: Sink> std::io::Write for SinkWriter<'_, S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.put(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_string(s: &str, out: &mut impl Sink) {
    write_escaped(s, out);
}

/// Writes `s` as a JSON string, escaped exactly as `serde_json` escapes it (`\"`, `\\`, `\b`, `\f`, `\n`,
/// `\r`, `\t`, other control characters as `\u00xx`).
pub fn write_escaped(s: &str, out: &mut impl Sink) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.put(b"\"");
    let mut copied = 0;
    while let Some(at) = next_escape(bytes, copied) {
        out.put(&bytes[copied..at]);
        let b = bytes[at];
        match b {
            b'"' => out.put(b"\\\""),
            b'\\' => out.put(b"\\\\"),
            b'\n' => out.put(b"\\n"),
            b'\r' => out.put(b"\\r"),
            b'\t' => out.put(b"\\t"),
            0x08 => out.put(b"\\b"),
            0x0c => out.put(b"\\f"),
            _ => out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        copied = at + 1;
    }
    out.put(&bytes[copied..]);
    out.put(b"\"");
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The first byte from `from` on that needs escaping; eight bytes at a time while none does.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether some byte of `w` is zero / below `n` (n <= 128).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let has_below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH != 0;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(word);
        if has_below(w, 0x20)
            || has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
        {
            break;
        }
        i += 8;
    }
    bytes
        .get(i..)?
        .iter()
        .position(|&b| needs_escape(b))
        .map(|p| i + p)
}

fn write_number(n: &Number, out: &mut impl Sink) {
    if let Some(u) = n.as_u64() {
        out.put(itoa::Buffer::new().format(u).as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.put(itoa::Buffer::new().format(i).as_bytes());
    } else {
        let _ = serde_json::to_writer(SinkWriter(out), n);
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(v) => s.serialize_str(v),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(o) => o.serialize(s),
        }
    }
}

impl Serialize for Object<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A string that borrows from the input when it can.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As `serde_json::Value` does: a non-finite float is null.
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // serde_json gives no size hint: room for 16 members allocates a body of up to 16 (a conversation
        // event's has 11) once.
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16).min(64));
        while let Some(Text(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(Json::Object(Object::from_members(members)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let raw = br#"{"plain": "abc", "escaped": "a\nb"}"#;
        let v = Json::parse(raw).unwrap();
        assert!(matches!(
            v.get("plain"),
            Some(Json::String(Cow::Borrowed("abc")))
        ));
        assert!(matches!(v.get("escaped"), Some(Json::String(Cow::Owned(s))) if s == "a\nb"));
    }

    #[test]
    fn canonical_form_is_serde_json_to_string() {
        let raw = br#"{"z": [2.50, 1e3, -0, 18446744073709551615, -9223372036854775808, 1.5e-7],
                       "a": {"y": "caf\u00e9 \"q\" \\ \/ \u0001", "x": null, "w": true}, "dup": 1, "dup": 2,
                       "": {}, "e": []}"#;
        let ours = Json::parse(raw).unwrap();
        let theirs: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(ours.to_string(), theirs.to_string());
        assert_eq!(ours.to_value(), theirs);
        assert!(ours == theirs);
        assert_eq!(
            ours.get("dup"),
            Some(&Json::Number(2.into())),
            "the last of equal keys"
        );
        assert_eq!(Json::from(theirs.clone()), ours);
        assert_eq!(Json::from(&theirs), ours);
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let doc = json!({"a": {"b": [10, {"c": "x"}]}, "x/y": 1, "m~n": 2, "": 3});
        let v = Json::from(&doc);
        for p in [
            "", "/a/b/0", "/a/b/1/c", "/x~1y", "/m~0n", "/", "/a/b/01", "/a/b/2", "/a/b/-",
            "/nope", "a",
        ] {
            assert_eq!(
                v.pointer(p).map(Json::to_value),
                doc.pointer(p).cloned(),
                "{p}"
            );
        }
    }

    #[test]
    fn compiled_pointers_resolve_as_pointers_do() {
        let doc = json!({"a": {"b": [10, {"c": "x"}]}, "x/y": 1, "m~n": 2, "": {"": 3}});
        let v = Json::from(&doc);
        let Json::Object(o) = &v else {
            panic!("object")
        };
        for p in [
            "/a/b/0", "/a/b/1/c", "/x~1y", "/m~0n", "/", "//", "/a/b/01", "/nope",
        ] {
            let compiled = Pointer::compile(p).unwrap();
            assert_eq!(compiled.resolve(o), v.pointer(p), "{p}");
            assert_eq!(o.pointer(p), v.pointer(p), "{p}");
        }
        assert_eq!(Pointer::compile("a"), None);
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é😀 \"q\" back\\slash / end");
        for s in [
            "",
            "plain text longer than eight bytes",
            "\"",
            "a\nb",
            &all,
            "12345678\u{1}",
            "1234567\\",
        ] {
            let mut ours = Vec::new();
            write_escaped(s, &mut ours);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_fails_as_serde_json_fails() {
        let raw = b"{\"a\": \"caf\xe9\"}";
        let ours = Json::parse(raw).unwrap_err().to_string();
        let theirs = serde_json::from_slice::<Value>(raw)
            .unwrap_err()
            .to_string();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn members_are_found_in_small_and_large_objects() {
        for size in [0, 1, 5, 16, 17, 40] {
            let doc: Map<String, Value> = (0..size)
                .map(|i| (format!("k{}", "x".repeat(i % 7) + &i.to_string()), json!(i)))
                .collect();
            let o = Object::from(&doc);
            for (k, v) in &doc {
                assert_eq!(o.get(k).map(Json::to_value).as_ref(), Some(v), "{size} {k}");
            }
            for absent in ["", "k", "kx", "k999", "zz"] {
                assert_eq!(o.get(absent), None, "{size} {absent}");
            }
        }
    }

    #[test]
    fn take_removes_a_member() {
        let mut o = Object::from(json!({"a": 1, "b": 2}).as_object().unwrap().clone());
        assert_eq!(o.take("a"), Some(Json::Number(1.into())));
        assert_eq!(o.take("a"), None);
        assert_eq!(o.len(), 1);
        assert!(o.contains_key("b"));
    }
}
