//! PII redaction for free text that ends up in ServiceNow.
//!
//! - Social security numbers (`123-45-6789`) → `[REDACTED SSN]`
//! - Luhn-valid card numbers (13–19 digits, spaces or dashes allowed) → `[REDACTED CARD]`
//! - Phone numbers (7–15 digits, optional `+`, spaces, dashes, dots, parentheses) → `***` + last 4 digits
//!
//! A digit run touching a letter (ids, UUIDs) and ISO dates (`2026-11-23`) are left alone.

/// Redacts SSNs and card numbers and masks phone numbers in `text`.
pub fn redact_text(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let starts_number =
            b.is_ascii_digit() || (b == b'+' || b == b'(') && next_is_digit(bytes, i);
        if !starts_number || (i > 0 && is_word(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let end = scan_number(bytes, i);
        let candidate = &text[i..end];
        if end < bytes.len() && is_word(bytes[end]) {
            // Part of an identifier: skip the whole word.
            i = end;
            while i < bytes.len() && is_word(bytes[i]) {
                i += 1;
            }
            continue;
        }
        if let Some(replacement) = classify(candidate) {
            out.push_str(&text[copied..i]);
            out.push_str(&replacement);
            copied = end;
        }
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Masks a phone number to its last four digits (`***0123`); fewer than 5 digits → `***`.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 5 {
        return "***".to_string();
    }
    let last4: String = digits[digits.len() - 4..].iter().collect();
    format!("***{last4}")
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
    let mut digits = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' | ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    if !(8..=15).contains(&digits.len()) || !plus && digits.len() < 11 {
        // Without '+' only accept numbers that already carry a country code (11+ digits).
        return None;
    }
    Some(format!("+{digits}"))
}

fn next_is_digit(bytes: &[u8], i: usize) -> bool {
    bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

/// End of a run of digits joined by single separators.
fn scan_number(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    if matches!(bytes[i], b'+' | b'(') {
        i += 1;
    }
    let mut end = i;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            i += 1;
            end = i;
        } else if is_separator(bytes[i]) {
            // Allow ") " and similar pairs, but never end on a separator.
            let mut j = i + 1;
            if j < bytes.len() && is_separator(bytes[j]) && bytes[i] == b')' {
                j += 1;
            }
            if j < bytes.len() && bytes[j].is_ascii_digit() {
                i = j;
            } else {
                if bytes[i] == b')' {
                    end = i + 1;
                }
                break;
            }
        } else {
            break;
        }
    }
    end
}

fn classify(candidate: &str) -> Option<String> {
    let digits: Vec<u8> = candidate
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    if is_ssn(candidate) {
        return Some("[REDACTED SSN]".into());
    }
    if is_iso_date(candidate) {
        return None;
    }
    if (13..=19).contains(&digits.len())
        && luhn_valid(&digits)
        && !candidate.contains(['(', '+', '.'])
    {
        return Some("[REDACTED CARD]".into());
    }
    if (7..=15).contains(&digits.len()) {
        return Some(mask_phone(candidate));
    }
    None
}

fn is_ssn(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11
        && b.iter().enumerate().all(|(i, c)| match i {
            3 | 6 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// Luhn checksum over decimal digits.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_phone_numbers_to_last_four() {
        assert_eq!(
            redact_text("call me on +1 415 555 0123 please"),
            "call me on ***0123 please"
        );
        assert_eq!(redact_text("(415) 555-0199"), "***0199");
        assert_eq!(redact_text("tel +44.20.7946.0958."), "tel ***0958.");
        assert_eq!(redact_text("04155550123"), "***0123");
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
    }

    #[test]
    fn mask_phone_edge_cases() {
        assert_eq!(mask_phone("+14155550123"), "***0123");
        assert_eq!(mask_phone("123"), "***");
    }
}
