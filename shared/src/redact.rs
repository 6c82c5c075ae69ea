//! PII redaction for free text that ends up in ServiceNow.
//!
//! - E-mail addresses (`local@domain.tld`) → `[REDACTED EMAIL]`
//! - SSNs → `[REDACTED SSN]`: `123-45-6789`; `123 45 6789`, `123.45.6789` and `123456789` when the number
//!   can be an SSN (area not 000, 666 or 9xx, group not 00, serial not 0000). Masking such a number as a phone
//!   would keep its last four digits, the part of an SSN used to verify identities.
//! - Luhn-valid card numbers (13–19 digits) → `[REDACTED CARD]`: in any grouping when the groups are joined by
//!   single spaces or dashes; in card groups (4-4-4-4 with a shorter last group, 4-6-5, 4-6-4) when joined by
//!   dots, slashes, tabs, newlines or runs of up to three of these; also in parentheses and glued to letters.
//! - Phone numbers (7–15 digits, optional `+`, groups joined by one space, dash, dot or parenthesis) →
//!   `***` + last 4 digits. Glued to a letter, only 10–15 digits whose first group has at most 4 digits
//!   (`tel4155550123`), so `INC0010001` and `A1234567` stay.
//!
//! Left alone: UUIDs, hex identifiers (`3f2a5c1e`), dates (`2026-11-23`, `23/11/2026`, `23.11.2026`),
//! IPv4 addresses, numbers of up to 6 digits, and digits joined to a word after separators (`12345678-1234abcd`,
//! `2026-11-23T10`) unless the whole is a card or an SSN.

use serde_json::Value;

const CARD: &str = "[REDACTED CARD]";
const SSN: &str = "[REDACTED SSN]";
const EMAIL: &str = "[REDACTED EMAIL]";

/// Redacts e-mail addresses, SSNs and card numbers and masks phone numbers in `text`.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    redact_text_into(text, &mut out);
    out
}

/// [`redact_text`], appended to `out`.
pub fn redact_text_into(text: &str, out: &mut String) {
    // Every pattern needs a digit or an `@`.
    if find_byte(text.as_bytes(), 0, |b| b.is_ascii_digit() | (b == b'@')).is_none() {
        out.push_str(text);
    } else if text.as_bytes().contains(&b'@') {
        redact_numbers(&redact_emails(text), out)
    } else {
        redact_numbers(text, out)
    }
}

/// A JSON value as incident text, every string, object key and integer in it redacted as by [`redact_text`].
/// Fractions are measures and stay.
pub fn redact_json(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => redact_text(s),
        other => match redact_value(other) {
            Value::String(s) => s,
            v => v.to_string(),
        },
    }
}

/// `value` with every string, object key and integer redacted; a redacted integer becomes a string.
pub fn redact_value(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact_text(s)),
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let plain = n.to_string();
            let redacted = redact_text(&plain);
            if redacted == plain {
                value.clone()
            } else {
                Value::String(redacted)
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(redact_value).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (redact_text(k), redact_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A measure (a number the mapping converted): `[REDACTED CARD]` when it is a card number, else `None`.
/// Phone masking does not apply: a duration of 7 digits is common.
pub fn redact_measure(n: &serde_json::Number) -> Option<String> {
    let mut buffer = itoa::Buffer::new();
    let text = buffer.format(n.as_u64()?);
    ((13..=19).contains(&text.len()) && luhn(text.bytes().map(|b| b - b'0')))
        .then(|| CARD.to_string())
}

/// Masks a phone number to its last four digits (`***0123`); fewer than 5 digits → `***`.
pub fn mask_phone(phone: &str) -> String {
    let mut out = String::with_capacity(7);
    mask_phone_into(phone, &mut out);
    out
}

/// [`mask_phone`], appended to `out`.
pub fn mask_phone_into(phone: &str, out: &mut String) {
    let digits = phone.bytes().filter(u8::is_ascii_digit);
    let count = digits.clone().count();
    out.push_str("***");
    if count >= 5 {
        out.extend(digits.skip(count - 4).map(char::from));
    }
}

/// Normalises a phone number to E.164 (`+14155550123`); strips `tel:`/`sip:` prefixes and separators.
pub fn normalise_e164(raw: &str) -> Option<String> {
    let s = raw.trim();
    let s = s
        .strip_prefix("tel:")
        .or_else(|| s.strip_prefix("sip:"))
        .unwrap_or(s);
    let s = s.split(['@', ';']).next().unwrap_or(s);
    let plus = s.trim_start().starts_with('+');
    // `+` and at most 15 digits; the bytes are checked to be ASCII digits before they are kept.
    let mut e164 = String::with_capacity(16);
    e164.push('+');
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => e164.push(char::from(b)),
            b'+' | b' ' | b'-' | b'.' | b'(' | b')' => {}
            _ => return None,
        }
    }
    let digits = e164.len() - 1;
    if !(8..=15).contains(&digits) || !plus && digits < 11 {
        // Without '+' only accept numbers that already carry a country code (11+ digits).
        return None;
    }
    Some(e164)
}

/// The first position from `from` on whose byte is a `hit`. Free text is mostly letters: it is skipped 32
/// bytes at a time with a test of the whole block that has no early exit, which the compiler turns into
/// vector compares (SSE2, NEON).
#[inline]
fn find_byte(bytes: &[u8], from: usize, hit: impl Fn(u8) -> bool) -> Option<usize> {
    const BLOCK: usize = 32;
    let rest = bytes.get(from..)?;
    let mut blocks = rest.chunks_exact(BLOCK);
    let mut skipped = 0;
    for block in blocks.by_ref() {
        if block.iter().fold(false, |any, &b| any | hit(b)) {
            break;
        }
        skipped += BLOCK;
    }
    rest[skipped..]
        .iter()
        .position(|&b| hit(b))
        .map(|p| from + skipped + p)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn redact_emails(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = find_byte(b, at, |c| c == b'@') {
        at = found;
        let mut start = at;
        while start > copied && is_email_local(b[start - 1]) {
            start -= 1;
        }
        while start < at && b[start] == b'.' {
            start += 1;
        }
        match domain_end(b, at + 1) {
            Some(end) if start < at => {
                out.push_str(&text[copied..start]);
                out.push_str(EMAIL);
                copied = end;
                at = end;
            }
            _ => at += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// End of a domain of two or more labels whose last label is 2+ letters, starting at `start`.
fn domain_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    let mut labels = 0;
    let mut last = (start, start);
    loop {
        let s = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
            i += 1;
        }
        if i == s {
            break;
        }
        labels += 1;
        last = (s, i);
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_alphanumeric() {
            i += 1;
        } else {
            break;
        }
    }
    let tld = &b[last.0..last.1];
    (labels >= 2 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)).then_some(last.1)
}

/// How two digit groups are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// Before the first group.
    None,
    /// One space, dash or dot.
    Tight(u8),
    /// A parenthesis, alone or next to one separator (`(415) 555`, `+1 (415)`).
    Paren,
    /// Up to three of space, tab, newline, `/`, `-`, `.`; the byte when it is a single one, else 0.
    Loose(u8),
}

#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
    /// The gap before this group.
    gap: Gap,
}

impl Group {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// Digit groups joined by gaps, with what surrounds them.
struct Candidate<'a> {
    bytes: &'a [u8],
    /// Position of a leading `+` or `(`, else of the first digit.
    start: usize,
    prefix: Option<u8>,
    /// A `)` closing the leading `(` right after the last group.
    closing: bool,
    groups: &'a [Group],
    glued_left: bool,
    glued_right: bool,
}

enum Found {
    Card,
    Ssn,
    Phone,
}

fn tight(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.')
}

fn loose(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'-' | b'.')
}

/// The gap at `i` when a digit follows it: its kind and the position of that digit.
fn gap_at(bytes: &[u8], i: usize) -> Option<(Gap, usize)> {
    let digit = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_digit);
    let b = *bytes.get(i)?;
    if matches!(b, b'(' | b')') && digit(i + 1) {
        return Some((Gap::Paren, i + 1));
    }
    let next = bytes.get(i + 1).copied();
    let paired = (b == b')' && next.is_some_and(|c| tight(c) || c == b'('))
        || (tight(b) && next == Some(b'('));
    if paired && digit(i + 2) {
        return Some((Gap::Paren, i + 2));
    }
    if tight(b) && digit(i + 1) {
        return Some((Gap::Tight(b), i + 1));
    }
    let mut j = i;
    while j < bytes.len() && j < i + 3 && loose(bytes[j]) {
        j += 1;
    }
    (j > i && digit(j)).then(|| (Gap::Loose(if j == i + 1 { b } else { 0 }), j))
}

/// Fills `groups` from the digit (or `+`/`(` before one) at `start`; returns the candidate's end.
fn scan(bytes: &[u8], start: usize, groups: &mut Vec<Group>) -> usize {
    groups.clear();
    let mut i = start;
    if !bytes[i].is_ascii_digit() {
        i += 1;
    }
    let mut gap = Gap::None;
    loop {
        let s = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        groups.push(Group {
            start: s,
            end: i,
            gap,
        });
        match gap_at(bytes, i) {
            Some((g, next)) => {
                gap = g;
                i = next;
            }
            None => return i,
        }
    }
}

/// Redacts SSNs and cards and masks phones in `text` (e-mails already done), appending to `out`.
fn redact_numbers(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    let mut copied = 0;
    let mut groups = Vec::new();
    // The word start last checked for being an identifier.
    let mut checked = usize::MAX;
    let mut i = 0;
    while let Some(found) = find_byte(bytes, i, |c| c.is_ascii_digit() | (c == b'+') | (c == b'('))
    {
        i = found;
        let b = bytes[i];
        let prefixed = !b.is_ascii_digit();
        if prefixed && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            continue;
        }
        let after_word = !prefixed && i > 0 && is_word(bytes[i - 1]);
        if !prefixed {
            let mut w = i;
            while w > 0 && is_word(bytes[w - 1]) {
                w -= 1;
            }
            if w != checked {
                checked = w;
                if let Some(end) = identifier_end(bytes, w) {
                    i = end;
                    continue;
                }
            }
        }
        let mut end = scan(bytes, i, &mut groups);
        let closing = b == b'(' && bytes.get(end) == Some(&b')');
        if closing {
            end += 1;
        }
        let candidate = Candidate {
            bytes,
            start: i,
            prefix: prefixed.then_some(b),
            closing,
            groups: &groups,
            glued_left: !prefixed && after_word,
            glued_right: bytes.get(end).is_some_and(|&c| is_word(c)),
        };
        for (s, e, pii) in candidate.findings() {
            let (from, to) = candidate.span(s, e);
            out.push_str(&text[copied..from]);
            match pii {
                Found::Card => out.push_str(CARD),
                Found::Ssn => out.push_str(SSN),
                Found::Phone => mask_phone_into(&text[from..to], out),
            }
            copied = to;
        }
        i = end;
    }
    out.push_str(&text[copied..]);
}

/// The end of the UUID the word at `w` belongs to, or of the hex identifier (a word of hex digits with two
/// or more digit runs) it is.
fn identifier_end(bytes: &[u8], w: usize) -> Option<usize> {
    if w > 0 && bytes[w - 1] == b'-' {
        // A later group of a UUID.
        for back in [9, 14, 19, 24] {
            if let Some(end) = w.checked_sub(back).and_then(|start| uuid_end(bytes, start)) {
                return Some(end);
            }
        }
    }
    let mut j = w;
    let mut runs = 0;
    let mut in_digits = false;
    while j < bytes.len() && is_word(bytes[j]) {
        let c = bytes[j];
        if !c.is_ascii_hexdigit() {
            return None;
        }
        let digit = c.is_ascii_digit();
        if digit && !in_digits {
            runs += 1;
        }
        in_digits = digit;
        j += 1;
    }
    if j - w == 8 && bytes.get(j) == Some(&b'-') {
        if let Some(end) = uuid_end(bytes, w) {
            return Some(end);
        }
    }
    (runs >= 2).then_some(j)
}

/// The end of a UUID starting at `i` (a word start).
fn uuid_end(bytes: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_word(bytes[i - 1]) {
        return None;
    }
    let s = bytes.get(i..i + 36)?;
    let ok = s.iter().enumerate().all(|(k, c)| match k {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    (ok && !bytes.get(i + 36).is_some_and(|&c| is_word(c))).then_some(i + 36)
}

impl Candidate<'_> {
    /// The groups `[s, e)` to replace, left to right.
    fn findings(&self) -> Vec<(usize, usize, Found)> {
        let k = self.groups.len();
        let mut found = Vec::new();
        if self.glued_right && k > 1 {
            // Digits joined to a word after separators: an identifier, unless the whole is a card or SSN.
            if let Some(pii) = self.card(0, k).or_else(|| self.ssn(0, k)) {
                found.push((0, k, pii));
            }
            return found;
        }
        let mut s = 0;
        while s < k {
            if let Some(e) = self.benign(s) {
                s = e;
                continue;
            }
            // The longest run of groups from `s` (up to 19 digits, not into a date or address) that is PII.
            let mut e_max = s;
            let mut digits = 0;
            while e_max < k
                && digits + self.groups[e_max].len() <= 19
                && (e_max == s || self.benign(e_max).is_none())
            {
                digits += self.groups[e_max].len();
                e_max += 1;
            }
            match (s + 1..=e_max)
                .rev()
                .find_map(|e| self.classify(s, e).map(|p| (e, p)))
            {
                Some((e, pii)) => {
                    found.push((s, e, pii));
                    s = e;
                }
                None => s += 1,
            }
        }
        found
    }

    /// Byte range of groups `[s, e)`, with the leading `+`/`(` and the closing `)` when they belong to it.
    fn span(&self, s: usize, e: usize) -> (usize, usize) {
        let from = if s == 0 {
            self.start
        } else {
            self.groups[s].start
        };
        let mut to = self.groups[e - 1].end;
        if s == 0 && e == self.groups.len() && self.closing {
            to += 1;
        }
        (from, to)
    }

    fn digits(&self, s: usize, e: usize) -> impl DoubleEndedIterator<Item = u8> + '_ {
        self.groups[s..e]
            .iter()
            .flat_map(|g| self.bytes[g.start..g.end].iter().map(|b| b - b'0'))
    }

    fn count(&self, s: usize, e: usize) -> usize {
        self.groups[s..e].iter().map(Group::len).sum()
    }

    fn lens(&self, s: usize, e: usize, want: &[usize]) -> bool {
        e - s == want.len()
            && self.groups[s..e]
                .iter()
                .zip(want)
                .all(|(g, w)| g.len() == *w)
    }

    fn inner_gaps(&self, s: usize, e: usize) -> impl Iterator<Item = Gap> + '_ {
        self.groups[s + 1..e].iter().map(|g| g.gap)
    }

    fn value(&self, g: usize) -> u32 {
        let g = self.groups[g];
        self.bytes[g.start..g.end].iter().fold(0u32, |acc, b| {
            acc.saturating_mul(10).saturating_add(u32::from(b - b'0'))
        })
    }

    fn plus(&self, s: usize) -> bool {
        s == 0 && self.prefix == Some(b'+')
    }

    fn glued(&self, s: usize, e: usize) -> bool {
        (s == 0 && self.glued_left) || (e == self.groups.len() && self.glued_right)
    }

    fn classify(&self, s: usize, e: usize) -> Option<Found> {
        self.card(s, e)
            .or_else(|| self.ssn(s, e))
            .or_else(|| self.phone(s, e))
    }

    fn card(&self, s: usize, e: usize) -> Option<Found> {
        let n = self.count(s, e);
        if !(13..=19).contains(&n) || self.plus(s) || self.inner_gaps(s, e).any(|g| g == Gap::Paren)
        {
            return None;
        }
        let plain = self
            .inner_gaps(s, e)
            .all(|g| matches!(g, Gap::Tight(b' ' | b'-')));
        let shaped = self.card_shape(s, e);
        if !(shaped || plain && !(self.glued(s, e) && e - s > 1)) {
            return None;
        }
        luhn(self.digits(s, e)).then_some(Found::Card)
    }

    /// 4-4-4-4 with a last group of 1–4 (13–19 digits), 4-6-5 or 4-6-4.
    fn card_shape(&self, s: usize, e: usize) -> bool {
        let g = &self.groups[s..e];
        let fours = g.len() >= 4
            && g[..g.len() - 1].iter().all(|x| x.len() == 4)
            && (1..=4).contains(&g[g.len() - 1].len());
        fours || self.lens(s, e, &[4, 6, 5]) || self.lens(s, e, &[4, 6, 4])
    }

    fn ssn(&self, s: usize, e: usize) -> Option<Found> {
        if self.plus(s) {
            return None;
        }
        let digits = || self.digits(s, e);
        if self.lens(s, e, &[9]) {
            return ssn_possible(digits()).then_some(Found::Ssn);
        }
        if !self.lens(s, e, &[3, 2, 4]) {
            return None;
        }
        match (self.groups[s + 1].gap, self.groups[s + 2].gap) {
            (Gap::Tight(b'-'), Gap::Tight(b'-')) => Some(Found::Ssn),
            (Gap::Tight(a), Gap::Tight(b)) if a == b && ssn_possible(digits()) => Some(Found::Ssn),
            _ => None,
        }
    }

    fn phone(&self, s: usize, e: usize) -> Option<Found> {
        let n = self.count(s, e);
        if !(7..=15).contains(&n) || self.inner_gaps(s, e).any(|g| matches!(g, Gap::Loose(_))) {
            return None;
        }
        if self.glued(s, e) && (n < 10 || self.groups[s].len() > 4 && e - s > 1) {
            return None;
        }
        Some(Found::Phone)
    }

    /// The end of a date or IPv4 address starting at group `s`.
    fn benign(&self, s: usize) -> Option<usize> {
        if self.plus(s) {
            return None;
        }
        let k = self.groups.len();
        if s + 3 <= k {
            let (a, b) = (self.groups[s + 1].gap, self.groups[s + 2].gap);
            let date_gap = a == b && matches!(a, Gap::Tight(b'-' | b'.') | Gap::Loose(b'/'));
            let (x, y, z) = (self.value(s), self.value(s + 1), self.value(s + 2));
            let ymd =
                self.lens(s, s + 3, &[4, 2, 2]) && (1..=12).contains(&y) && (1..=31).contains(&z);
            let short = |g: usize| (1..=2).contains(&self.groups[g].len());
            let dmy = short(s)
                && short(s + 1)
                && self.groups[s + 2].len() == 4
                && (1..=31).contains(&x)
                && (1..=31).contains(&y)
                && (x <= 12 || y <= 12);
            if date_gap && (ymd || dmy) {
                return Some(s + 3);
            }
        }
        if s + 4 <= k
            && (s..s + 4).all(|g| self.groups[g].len() <= 3 && self.value(g) <= 255)
            && self.inner_gaps(s, s + 4).all(|g| g == Gap::Tight(b'.'))
        {
            return Some(s + 4);
        }
        None
    }
}

/// Whether nine digits can be an SSN: area not 000, 666 or 900–999, group not 00, serial not 0000.
fn ssn_possible(digits: impl Iterator<Item = u8>) -> bool {
    let (mut value, mut n) = (0u32, 0);
    for d in digits {
        if n == 9 {
            return false;
        }
        value = value * 10 + u32::from(d);
        n += 1;
    }
    let (area, group, serial) = (value / 1_000_000, value / 10_000 % 100, value % 10_000);
    n == 9 && area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Luhn checksum over decimal digits.
pub fn luhn_valid(digits: &[u8]) -> bool {
    luhn(digits.iter().copied())
}

fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    let mut n = 0;
    for (i, d) in digits.rev().enumerate() {
        let d = u32::from(d);
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
        n += 1;
    }
    n > 0 && sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_finds_the_first_hit_in_and_after_whole_blocks() {
        for len in [0, 1, 31, 32, 33, 64, 95, 200] {
            for at in 0..len {
                let mut text = vec![b'a'; len];
                text[at] = b'7';
                if at + 40 < len {
                    text[at + 40] = b'8';
                }
                for from in [0, at.saturating_sub(1), at, at + 1] {
                    let want = text
                        .iter()
                        .enumerate()
                        .skip(from)
                        .find(|(_, b)| b.is_ascii_digit())
                        .map(|(i, _)| i);
                    assert_eq!(
                        find_byte(&text, from, |b| b.is_ascii_digit()),
                        want,
                        "len {len}, digit at {at}, from {from}"
                    );
                }
            }
            assert_eq!(find_byte(&vec![b'a'; len], 0, |b| b == b'@'), None);
        }
        assert_eq!(find_byte(b"abc", 4, |_| true), None);
    }

    #[test]
    fn masks_phone_numbers_to_last_four() {
        assert_eq!(
            redact_text("call me on +1 415 555 0123 please"),
            "call me on ***0123 please"
        );
        assert_eq!(redact_text("(415) 555-0199"), "***0199");
        assert_eq!(redact_text("tel +44.20.7946.0958."), "tel ***0958.");
        assert_eq!(redact_text("04155550123"), "***0123");
        assert_eq!(redact_text("+1 (415) 555-0123"), "***0123");
    }

    #[test]
    fn redacts_ssn_and_luhn_valid_cards() {
        assert_eq!(
            redact_text("ssn 123-45-6789 given"),
            "ssn [REDACTED SSN] given"
        );
        assert_eq!(
            redact_text("card 4111 1111 1111 1111 ok"),
            "card [REDACTED CARD] ok"
        );
        assert_eq!(
            redact_text("card 4111-1111-1111-1111"),
            "card [REDACTED CARD]"
        );
        assert_eq!(redact_text("amex 378282246310005"), "amex [REDACTED CARD]");
        // Not Luhn-valid, 16 digits: neither a card nor a phone number.
        assert_eq!(redact_text("ref 4111111111111112"), "ref 4111111111111112");
    }

    #[test]
    fn leaves_ids_dates_and_small_numbers_alone() {
        let text = "conversation 3f2a5c1e-4b6d-4e8f-9a0b-1c2d3e4f5a6b on 2026-11-23 waited 42 s, order A1234567";
        assert_eq!(redact_text(text), text);
        assert_eq!(redact_text("12345678-1234abcd"), "12345678-1234abcd");
        assert_eq!(redact_text("queue 5, 120 seconds"), "queue 5, 120 seconds");
        assert_eq!(redact_text(""), "");
        assert_eq!(redact_text("ünïcode 555-0123-456 ok"), "ünïcode ***3456 ok");
    }

    #[test]
    fn cards_with_dots_parentheses_and_loose_separators_are_redacted() {
        for card in [
            "4111.1111.1111.1111",
            "(4111 1111 1111 1111)",
            "4111  1111  1111  1111",
            "4111\t1111\t1111\t1111",
            "4111\n1111\n1111\n1111",
            "4111\r\n1111\r\n1111\r\n1111",
            "4111/1111/1111/1111",
            "4111 / 1111 / 1111 / 1111",
            "3782.822463.10005",
        ] {
            assert_eq!(
                redact_text(&format!("card {card} ok")),
                "card [REDACTED CARD] ok",
                "{card:?}"
            );
        }
        // Followed by more digits: the card is still found.
        assert_eq!(redact_text("4111 1111 1111 1111 12"), "[REDACTED CARD] 12");
    }

    #[test]
    fn digits_glued_to_letters_are_redacted_but_ids_stay() {
        assert_eq!(redact_text("cc4111111111111111"), "cc[REDACTED CARD]");
        assert_eq!(
            redact_text("cc4111-1111-1111-1111exp"),
            "cc[REDACTED CARD]exp"
        );
        assert_eq!(
            redact_text("4111111111111111exp0129"),
            "[REDACTED CARD]exp0129"
        );
        assert_eq!(redact_text("tel4155550123"), "tel***0123");
        assert_eq!(redact_text("phone_14155550123."), "phone_***0123.");
        assert_eq!(redact_text("tel415 555 0123"), "tel***0123");
        assert_eq!(redact_text("ssn123456789"), "ssn[REDACTED SSN]");
        assert_eq!(redact_text("123-45-6789x"), "[REDACTED SSN]x");
        for id in [
            "INC0010001",
            "order A1234567",
            "RITM0012345 and CHG0030001",
            "admin_user_01",
            "v2.10.3",
        ] {
            assert_eq!(redact_text(id), id);
        }
    }

    #[test]
    fn ssns_without_dashes_are_redacted_not_masked_as_phones() {
        assert_eq!(redact_text("ssn 123456789"), "ssn [REDACTED SSN]");
        assert_eq!(redact_text("ssn 123 45 6789."), "ssn [REDACTED SSN].");
        assert_eq!(redact_text("ssn 123.45.6789"), "ssn [REDACTED SSN]");
        // Nine digits that cannot be an SSN (area 9xx, 000, 666; group 00; serial 0000) are masked as phones.
        assert_eq!(redact_text("987654321"), "***4321");
        assert_eq!(redact_text("666123456"), "***3456");
        assert_eq!(redact_text("123004567"), "***4567");
    }

    #[test]
    fn email_addresses_are_redacted() {
        assert_eq!(
            redact_text("mail john.doe+vip@example.co.uk, or <ana_2@mail-1.example.com>."),
            "mail [REDACTED EMAIL], or <[REDACTED EMAIL]>."
        );
        assert_eq!(redact_text("mailto:a@b.io"), "mailto:[REDACTED EMAIL]");
        assert_eq!(redact_text("4155550123@example.com"), "[REDACTED EMAIL]");
        // Not addresses: no domain with a top-level name.
        for text in [
            "@team please",
            "user@localhost",
            "a@b",
            "x @ y.com",
            "price @ 5.00",
        ] {
            assert_eq!(redact_text(text), text);
        }
        assert_eq!(redact_text("sip:+14155550123@pbx"), "sip:***0123@pbx");
    }

    #[test]
    fn dates_times_addresses_uuids_and_hex_ids_stay() {
        for text in [
            "2026-11-23 10:00:00",
            "2026-11-23T10:00:00.000Z",
            "on 23/11/2026 and 11/23/2026 and 23.11.2026 and 2026/11/23",
            "host 10.0.12.255 down",
            "conversation 3f2a5c1e-4b6d-4e8f-9a0b-123456789012",
            "call 00000000-0000-0000-0000-000000000000",
            "sys_id 46d44a23a9fe19810012d100cca80666",
            "gc-fee90b71de8a2a8b6da621c9f127f6bd8078382cf3e079e89df0b0bd87b2d495",
            "INC0010001 at 10:45, 3 calls, 120 s, 1.5 h, 99.95%",
            "expires 12/26, amount 1,234.56",
        ] {
            assert_eq!(redact_text(text), text);
        }
        assert_eq!(redact_text("2026-11-23 4155550123"), "2026-11-23 ***0123");
    }

    #[test]
    fn non_string_values_are_redacted() {
        use serde_json::json;
        assert_eq!(redact_json(&json!(4111111111111111u64)), "[REDACTED CARD]");
        assert_eq!(redact_json(&json!(14155550123u64)), "***0123");
        assert_eq!(redact_json(&json!(123456789)), "[REDACTED SSN]");
        assert_eq!(redact_json(&json!(42)), "42");
        assert_eq!(redact_json(&json!(3.25)), "3.25");
        assert_eq!(redact_json(&json!(true)), "true");
        assert_eq!(redact_json(&json!(null)), "");
        assert_eq!(
            redact_json(&json!(["+1 415 555 0123", 4111111111111111u64, 7])),
            r#"["***0123","[REDACTED CARD]",7]"#
        );
        assert_eq!(
            redact_json(&json!({"phone": {"home": 14155550123u64}, "a@example.com": "x", "n": 2})),
            r#"{"[REDACTED EMAIL]":"x","n":2,"phone":{"home":"***0123"}}"#
        );
        // A measure: only a card number is taken out.
        let n = |v: u64| serde_json::Number::from(v);
        assert_eq!(
            redact_measure(&n(4111111111111111)).as_deref(),
            Some("[REDACTED CARD]")
        );
        assert_eq!(redact_measure(&n(1234567)), None);
        assert_eq!(redact_measure(&n(123456789)), None);
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(&[
            4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
        ]));
        assert!(!luhn_valid(&[
            4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2
        ]));
        assert!(!luhn_valid(&[]));
    }

    #[test]
    fn e164_normalisation() {
        assert_eq!(
            normalise_e164("tel:+14155550123").as_deref(),
            Some("+14155550123")
        );
        assert_eq!(
            normalise_e164("+1 (415) 555-0123").as_deref(),
            Some("+14155550123")
        );
        assert_eq!(
            normalise_e164("sip:+442079460958@host;user=phone").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(normalise_e164("4155550123"), None);
        assert_eq!(normalise_e164("anonymous"), None);
        assert_eq!(normalise_e164(""), None);
        assert_eq!(
            normalise_e164(" 14155550123 ").as_deref(),
            Some("+14155550123"),
            "11 digits carry a country code"
        );
        assert_eq!(normalise_e164("+1415555０123"), None, "a full-width digit");
        assert_eq!(normalise_e164("+1 415 555 0123 ext 9"), None);
        assert_eq!(normalise_e164("+1234567"), None, "7 digits");
        assert_eq!(
            normalise_e164("+12345678").as_deref(),
            Some("+12345678"),
            "8 digits"
        );
        assert_eq!(normalise_e164("+1234567890123456"), None, "16 digits");
    }

    #[test]
    fn mask_phone_edge_cases() {
        assert_eq!(mask_phone("+14155550123"), "***0123");
        assert_eq!(mask_phone("123"), "***");
    }
}
