use proptest::prelude::*;
use serde_json::Value;

use super::*;

fn kind_at(text: &[u8]) -> (ErrorKind, usize) {
    let e = check(text).expect_err(&String::from_utf8_lossy(text));
    (e.kind, e.at)
}

#[test]
fn well_formed_texts_pass() {
    let texts = [
        &b"{}"[..],
        b" [ ] ",
        b"0",
        b"-0.5e+10",
        b"1E-3",
        b"123456789012345678901234567890e99999",
        b"true",
        b"null",
        b"\"\"",
        br#"{"a":[1,{"b":null,"c":[true,false]}],"d":"x\"\\\/\b\f\n\r\t\u00e9"}"#,
        "\t{\"caf\u{e9}\" :\r\n \"\u{1F600}\u{FFFF}\"}\n".as_bytes(),
        br#"["\ud83d\ude00", "\uD83D\uDE00", "\\ud800"]"#,
        b"{\"t\":\"00000000000000000012\",\"p\":\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"}",
    ];
    for text in texts {
        assert_eq!(check(text), Ok(()), "{}", String::from_utf8_lossy(text));
    }
}

#[test]
fn each_broken_rule_is_named_with_its_offset() {
    use ErrorKind::*;
    let cases: &[(&[u8], ErrorKind, usize)] = &[
        (b"", UnexpectedEnd, 0),
        (b"  ", UnexpectedEnd, 2),
        (b"x", ExpectedValue, 0),
        (b".5", ExpectedValue, 0),
        (b"{1:2}", ExpectedName, 1),
        (b"{\"a\" 1}", ExpectedColon, 5),
        (b"{\"a\":1 \"b\":2}", ExpectedCommaOrBrace, 7),
        (b"{\"a\":1,}", ExpectedName, 7),
        (b"[1 2]", ExpectedCommaOrBracket, 3),
        (b"[1,]", ExpectedValue, 3),
        (b"[1}", ExpectedCommaOrBracket, 2),
        (b"{} x", TrailingCharacters, 3),
        (b"{} {}", TrailingCharacters, 3),
        (b"01", TrailingCharacters, 1),
        (b"\"a\x01\"", ControlCharacter, 2),
        (b"\"a\nb\"", ControlCharacter, 2),
        (b"\"\\x\"", InvalidEscape, 2),
        (b"\"\\u12G4\"", InvalidEscape, 5),
        (b"[01]", ExpectedCommaOrBracket, 2),
        (b"[1.x]", InvalidNumber, 3),
        (b"[-x]", InvalidNumber, 2),
        (b"[1e]", InvalidNumber, 3),
        (b"1.", UnexpectedEnd, 2),
        (b"-", UnexpectedEnd, 1),
        (b"1e+", UnexpectedEnd, 3),
        (b"trux", InvalidLiteral, 0),
        (b"[nul]", InvalidLiteral, 1),
        (b"fals", UnexpectedEnd, 4),
        (b"\"abc", UnexpectedEnd, 4),
        (b"\"\\u12", UnexpectedEnd, 5),
        (b"{\"a\":[1,2]", UnexpectedEnd, 10),
        (br#"{"s":"\ud800"}"#, UnpairedSurrogate, 6),
        (br#"["\udc00x"]"#, UnpairedSurrogate, 2),
        (br#"["\ud83d\u0041"]"#, UnpairedSurrogate, 2),
        (br#"["\ud83d\n"]"#, UnpairedSurrogate, 2),
        (br#"["\ud83d"#, UnpairedSurrogate, 2),
        (b"{\"name\":\"caf\xe9\"}", InvalidUtf8, 12),
        (b"[\"\xed\xa0\x80\"]", InvalidUtf8, 2),
    ];
    for &(text, kind, at) in cases {
        assert_eq!(
            kind_at(text),
            (kind, at),
            "{}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn the_reason_reads_as_a_sentence_with_the_offset() {
    let e = check(b"{\"a\" 1}").unwrap_err();
    assert_eq!(e.to_string(), "expected ':' at byte 5");
    let e = check(b"not json").unwrap_err();
    assert_eq!(e.to_string(), "expected true, false or null at byte 0");
}

#[test]
fn nesting_is_not_limited_and_every_level_is_remembered() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(check(deep.as_bytes()), Ok(()));
    // Objects and arrays alternate, so a level remembered wrongly, inline or beyond the first
    // 64, closes with the wrong bracket.
    let levels = 200;
    let mut text = String::new();
    for level in 0..levels {
        text.push_str(if level % 2 == 0 { "{\"k\":" } else { "[" });
    }
    text.push('1');
    let closers: Vec<&str> = (0..levels)
        .rev()
        .map(|level| if level % 2 == 0 { "}" } else { "]" })
        .collect();
    assert_eq!(
        check(format!("{text}{}", closers.concat()).as_bytes()),
        Ok(())
    );
    for wrong in [3, 70, 150] {
        let mut bad = closers.clone();
        bad[wrong] = if bad[wrong] == "}" { "]" } else { "}" };
        assert!(check(format!("{text}{}", bad.concat()).as_bytes()).is_err());
    }
}

/// The check this module replaced: serde_json's skipping parser, then UTF-8, then a scan of the
/// escapes for unpaired surrogates. Slower, but each piece is easy to trust.
fn reference(text: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
        && std::str::from_utf8(text).is_ok()
        && !has_lone_surrogate(text)
}

fn has_lone_surrogate(json: &[u8]) -> bool {
    let unit = |at: usize| {
        let hex = std::str::from_utf8(json.get(at..at + 4)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    };
    let mut from = 0;
    while let Some(found) = json[from..].iter().position(|&b| b == b'\\') {
        let escape = from + found;
        from = escape + 2;
        if json.get(escape + 1) != Some(&b'u') {
            continue;
        }
        from = escape + 6;
        match unit(escape + 2) {
            Some(0xD800..=0xDBFF) => {
                let low = json.get(escape + 6..escape + 8) == Some(b"\\u")
                    && matches!(unit(escape + 8), Some(0xDC00..=0xDFFF));
                if !low {
                    return true;
                }
                from = escape + 12;
            }
            Some(0xDC00..=0xDFFF) => return true,
            _ => {}
        }
    }
    false
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[\\\\\"\u{0}-\u{1f}\u{7f}-\u{10ffff}a-z]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn text(value: &Value, pretty: bool) -> Vec<u8> {
    if pretty {
        serde_json::to_vec_pretty(value).expect("serialises")
    } else {
        serde_json::to_vec(value).expect("serialises")
    }
}

/// Pieces that make up JSON and its near misses.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"\\u",
    b"d800",
    b"dc00",
    b"\\ud83d",
    b"\\ude00",
    b"0",
    b"7",
    b"-",
    b".",
    b"e",
    b"E",
    b"+",
    b"true",
    b"fals",
    b"null",
    b" ",
    b"\n",
    b"a",
    b"\xc3\xa9",
    b"\xe9",
    b"\x01",
    b"\xf0\x9f\x98",
    b"\x80",
];

proptest! {
    #[test]
    fn what_serde_json_writes_passes(v in value(), pretty in any::<bool>()) {
        let t = text(&v, pretty);
        prop_assert_eq!(check(&t), Ok(()));
    }

    #[test]
    fn edited_texts_get_the_verdict_of_the_reference(
        v in value(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..4u8, any::<u8>()), 1..4),
    ) {
        let mut t = text(&v, false);
        for (index, op, byte) in edits {
            let at = index.index(t.len() + 1);
            match op {
                0 => t.insert(at, byte),
                1 if at < t.len() => { t.remove(at); }
                2 if at < t.len() => t[at] = byte,
                _ => t.truncate(at),
            }
        }
        prop_assert_eq!(check(&t).is_ok(), reference(&t), "{:?}", String::from_utf8_lossy(&t));
    }

    #[test]
    fn token_soup_gets_the_verdict_of_the_reference(
        picks in prop::collection::vec(0..TOKENS.len(), 0..24),
    ) {
        let t: Vec<u8> = picks.iter().flat_map(|&i| TOKENS[i].iter().copied()).collect();
        prop_assert_eq!(check(&t).is_ok(), reference(&t), "{:?}", String::from_utf8_lossy(&t));
    }

    #[test]
    fn a_plain_run_ends_at_the_first_byte_a_string_cannot_hold_as_is(
        bytes in prop::collection::vec(
            prop_oneof![4 => 0x20u8..0x7f, 1 => any::<u8>()], 0..40),
    ) {
        let expected = bytes
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b))
            .unwrap_or(bytes.len());
        prop_assert_eq!(plain_run(&bytes), expected);
    }
}
