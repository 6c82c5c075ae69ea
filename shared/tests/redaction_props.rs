//! Property test of `redact_text` / `redact_json`: generated cards (random Luhn-valid digits), phones, SSNs
//! and e-mail addresses in every separator style and embedding context leave no digit run or address behind;
//! generated ids, UUIDs, dates, times, addresses and small numbers come through unchanged.

use proptest::prelude::*;
use serde_json::json;
use shared::redact::{redact_json, redact_text};

fn digits_of(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// A Luhn-valid card number of 13–19 digits.
fn card() -> impl Strategy<Value = String> {
    (13usize..=19, 3u8..=6)
        .prop_flat_map(|(len, first)| (Just(first), prop::collection::vec(0u8..=9, len - 2)))
        .prop_map(|(first, rest)| {
            let mut d = vec![first];
            d.extend(rest);
            // The check digit that makes the sum a multiple of 10.
            let sum: u32 = d
                .iter()
                .rev()
                .enumerate()
                .map(|(i, &x)| {
                    let x = u32::from(x);
                    if i % 2 == 0 {
                        let y = x * 2;
                        if y > 9 {
                            y - 9
                        } else {
                            y
                        }
                    } else {
                        x
                    }
                })
                .sum();
            d.push(((10 - sum % 10) % 10) as u8);
            d.iter().map(|x| char::from(b'0' + x)).collect()
        })
}

fn groups(digits: &str, sizes: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = digits;
    for &n in sizes {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a.to_string());
        rest = b;
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

const CARD_SEPARATORS: &[&str] = &[
    "", " ", "-", ".", "  ", "\t", "\n", "\r\n", "/", " / ", " - ",
];

/// A card written in card groups (4-4-4-…, or 4-6-5 for 15 digits) joined by any separator style.
fn written_card() -> impl Strategy<Value = String> {
    (card(), prop::sample::select(CARD_SEPARATORS), any::<bool>()).prop_map(|(c, sep, amex)| {
        let sizes: &[usize] = if amex && c.len() == 15 {
            &[4, 6, 5]
        } else {
            &[4, 4, 4, 4, 4]
        };
        groups(&c, sizes).join(sep)
    })
}

/// A card in arbitrary groups of 3–6 digits joined by single spaces or dashes.
fn loosely_grouped_card() -> impl Strategy<Value = String> {
    (
        card(),
        prop::collection::vec(3usize..=6, 5),
        prop::sample::select(&[" ", "-"][..]),
    )
        .prop_map(|(c, sizes, sep)| groups(&c, &sizes).join(sep))
}

const PREFIXES: &[&str] = &[
    "",
    "card ",
    "Card: ",
    "cc",
    "(",
    "number\n",
    "ref-",
    "cc:",
    "pay with ",
];
const SUFFIXES: &[&str] = &["", " ok", ")", ".", ",", "exp", " thanks", "\n"];

/// A phone number (E.164 or a local form) and its last four digits.
fn phone() -> impl Strategy<Value = (String, String)> {
    (200u32..=999, 200u32..=999, 0u32..=9999, 0usize..10).prop_map(
        |(area, exchange, line, form)| {
            let f = match form {
                0 => format!("+1{area}{exchange}{line:04}"),
                1 => format!("+1 {area} {exchange} {line:04}"),
                2 => format!("+1 ({area}) {exchange}-{line:04}"),
                3 => format!("({area}) {exchange}-{line:04}"),
                4 => format!("{area}-{exchange}-{line:04}"),
                5 => format!("{area}.{exchange}.{line:04}"),
                6 => format!("{area} {exchange} {line:04}"),
                7 => format!("0{area} {exchange} {line:04}"),
                8 => format!("+44 {} {exchange} {line:04}", area % 100),
                _ => format!("{area}{exchange}{line:04}"),
            };
            (f, format!("{line:04}"))
        },
    )
}

/// An SSN that passes the structural rules, with or without separators.
fn ssn() -> impl Strategy<Value = String> {
    (
        1u32..=899,
        1u32..=99,
        1u32..=9999,
        prop::sample::select(&["-", " ", ".", ""][..]),
    )
        .prop_filter("area 666 is never issued", |(a, ..)| *a != 666)
        .prop_map(|(a, g, s, sep)| format!("{a:03}{sep}{g:02}{sep}{s:04}"))
}

fn email() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9._+-]{0,15}",
        prop::collection::vec("[a-z0-9][a-z0-9-]{0,10}", 1..=3),
        "[a-z]{2,6}",
    )
        .prop_map(|(local, labels, tld)| format!("{local}@{}.{tld}", labels.join(".")))
}

/// Text that must come through unchanged: ids, UUIDs, dates, times, addresses, small numbers.
fn benign() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&["INC", "RITM", "CHG", "PRB", "TASK"][..]),
        0u32..=9_999_999,
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        (1990u32..=2099, 1u32..=12, 1u32..=28, 0u32..=23, 0u32..=59),
        (0u32..=255, 0u32..=255, 0u32..=255, 0u32..=255),
        0u32..=999_999,
        "[0-9a-f]{64}",
    )
        .prop_map(|(prefix, inc, uuid, (y, mo, d, h, mi), (a, b, c, e), n, hash)| {
            format!(
                "{prefix}{inc:07} for {uuid} at {y}-{mo:02}-{d:02} {h:02}:{mi:02}:00, also {d:02}/{mo:02}/{y} \
                 and {d}.{mo}.{y} ({y}-{mo:02}-{d:02}T{h:02}:{mi:02}:00Z); host {a}.{b}.{c}.{e} waited {n} s, \
                 key gc-{hash}, order A{inc}, "
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_card_digit_survives_in_card_groups(
        c in written_card(),
        pre in prop::sample::select(PREFIXES),
        suf in prop::sample::select(SUFFIXES),
    ) {
        let out = redact_text(&format!("{pre}{c}{suf}"));
        prop_assert_eq!(digits_of(&out), "", "{:?} → {:?}", c, out);
        prop_assert!(out.contains("[REDACTED CARD]"));
    }

    #[test]
    fn no_card_digit_survives_in_any_grouping(
        c in loosely_grouped_card(),
        pre in prop::sample::select(&["", "card ", "(", "Card: "][..]),
        suf in prop::sample::select(&["", " ok", ")", ".", ","][..]),
    ) {
        let out = redact_text(&format!("{pre}{c}{suf}"));
        prop_assert_eq!(digits_of(&out), "", "{:?} → {:?}", c, out);
    }

    #[test]
    fn phones_keep_only_their_last_four_digits(
        (p, last4) in phone(),
        pre in prop::sample::select(&["", "call me on ", "(", "tel: ", "Phone\t"][..]),
        suf in prop::sample::select(&["", " please", ")", ".", ",", "\n"][..]),
    ) {
        let out = redact_text(&format!("{pre}{p}{suf}"));
        prop_assert_eq!(digits_of(&out), last4, "{:?} → {:?}", p, out);
    }

    #[test]
    fn phones_glued_to_letters_keep_only_their_last_four_digits(
        (p, last4) in phone(),
        pre in prop::sample::select(&["tel", "ph", "mobile_"][..]),
        suf in prop::sample::select(&["", "ext", " please"][..]),
    ) {
        let p: String = p.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
        let out = redact_text(&format!("{pre}{p}{suf}"));
        prop_assert_eq!(digits_of(&out), last4, "{:?} → {:?}", p, out);
    }

    #[test]
    fn no_ssn_digit_survives(
        s in ssn(),
        pre in prop::sample::select(&["", "ssn ", "SSN: ", "ssn", "(", "\n"][..]),
        suf in prop::sample::select(&["", " ok", ")", ".", "x"][..]),
    ) {
        let out = redact_text(&format!("{pre}{s}{suf}"));
        prop_assert_eq!(digits_of(&out), "", "{:?} → {:?}", s, out);
        prop_assert!(out.contains("[REDACTED SSN]"));
    }

    #[test]
    fn no_email_address_survives(
        e in email(),
        pre in prop::sample::select(&["", "mail ", "<", "mailto:", "(", "contact: "][..]),
        suf in prop::sample::select(&["", ">", ".", ",", " thanks", ")"][..]),
    ) {
        let out = redact_text(&format!("{pre}{e}{suf}"));
        prop_assert!(!out.contains('@'), "{:?} → {:?}", e, out);
        prop_assert_eq!(out, format!("{pre}[REDACTED EMAIL]{suf}"));
    }

    #[test]
    fn benign_forms_survive_and_pii_after_them_does_not(b in benign(), c in written_card(), (p, last4) in phone()) {
        prop_assert_eq!(redact_text(&b), b.clone());
        let out = redact_text(&format!("{b}card {c}, call {p}."));
        prop_assert!(out.starts_with(&b), "{:?}", out);
        prop_assert_eq!(digits_of(&out[b.len()..]), last4, "{:?}", out);
    }

    #[test]
    fn non_string_values_lose_cards_and_phones(c in card(), (p, last4) in phone()) {
        let n: u64 = c.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let phone_number: u64 = digits_of(&p).parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(redact_json(&json!(n)), "[REDACTED CARD]");
        let out = redact_json(&json!({"notes": [p.clone(), {"card": n, "cb": phone_number}]}));
        // The phone twice (string and number), nothing else.
        prop_assert_eq!(digits_of(&out), format!("{last4}{last4}"), "{}", out);
    }
}
