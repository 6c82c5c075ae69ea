//! Percent-encoding (RFC 3986) and the decoding a query string's values get.

use std::borrow::Cow;

/// `value` with every byte `keep` refuses written as `%XX`; borrowed when nothing needs it.
pub fn encode(value: &str, keep: impl Fn(u8) -> bool) -> Cow<'_, str> {
    if value.bytes().all(&keep) {
        return Cow::Borrowed(value);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len() + 16);
    for b in value.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    Cow::Owned(out)
}

/// A query string value decoded: `%XX` escapes and `+` as a space; anything else, a stray `%` included, as
/// it is. Bytes that are not UTF-8 once decoded become U+FFFD.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_is_not_kept_and_decodes_it_back() {
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-_.~".contains(&b);
        assert!(matches!(encode("ORD-1_a.b~", unreserved), Cow::Borrowed(_)));
        assert_eq!(encode("+1 555/x", unreserved), "%2B1%20555%2Fx");
        assert_eq!(encode("café", unreserved), "caf%C3%A9");
        assert_eq!(decode("caf%C3%A9+au%20lait%2"), "café au lait%2");
        assert_eq!(decode("%zz%"), "%zz%");
        assert_eq!(decode(&encode("a+b c", unreserved)), "a+b c");
    }
}
