//! Unit and property tests of [`super`] (validation.rs).

use super::*;
use bytes::Bytes;
use proptest::prelude::*;

fn message(headers: &[(&str, &str)], payload: &[u8]) -> MessageView {
    MessageView {
        dedupe_key: None,
        id: None,
        key: None,
        ttl_ms: None,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), Bytes::copy_from_slice(v.as_bytes())))
            .collect(),
        payload: Bytes::copy_from_slice(payload),
    }
}

fn format(f: PayloadFormat) -> Contract {
    Contract {
        payload_format: Some(f),
        ..Contract::default()
    }
}

fn json_types(types: &[&str]) -> Contract {
    Contract {
        content_types: types.iter().map(|t| t.to_string()).collect(),
        ..Contract::default()
    }
}

#[test]
fn the_default_contract_is_empty_and_accepts_anything() {
    let c = Contract::default();
    assert!(c.is_empty());
    assert_eq!(c.check(&message(&[], &[0xff; 10_000])), Ok(()));
}

#[test]
fn a_bytes_format_alone_leaves_the_contract_empty() {
    assert!(format(PayloadFormat::Bytes).is_empty());
    assert!(!format(PayloadFormat::Utf8).is_empty());
    assert!(!json_types(&["a/b"]).is_empty());
    let size = Contract {
        max_payload_bytes: Some(1),
        ..Contract::default()
    };
    assert!(!size.is_empty());
}

#[test]
fn a_payload_over_the_limit_is_too_large_and_one_at_it_is_not() {
    let c = Contract {
        max_payload_bytes: Some(1024),
        ..Contract::default()
    };
    assert_eq!(c.check(&message(&[], &[0; 1024])), Ok(()));
    let err = c.check(&message(&[], &[0; 2048])).unwrap_err();
    assert_eq!(err, "payload-too-large: 2048 > 1024");
}

#[test]
fn a_missing_required_header_is_named() {
    let c = Contract {
        required_headers: vec!["tenant".into(), "trace-id".into()],
        ..Contract::default()
    };
    let err = c.check(&message(&[("tenant", "a")], b"")).unwrap_err();
    assert_eq!(err, "missing-header: trace-id");
    let ok = message(&[("trace-id", ""), ("tenant", "a")], b"");
    assert_eq!(c.check(&ok), Ok(()));
}

#[test]
fn content_type_ignores_parameters_whitespace_and_case() {
    let c = json_types(&["application/json", "text/plain"]);
    for value in [
        "application/json",
        "Application/JSON",
        " application/json ; charset=utf-8",
        "text/plain;charset=us-ascii",
    ] {
        let m = message(&[("content-type", value)], b"");
        assert_eq!(c.check(&m), Ok(()), "{value}");
    }
}

#[test]
fn a_content_type_not_in_the_list_is_named_with_the_list() {
    let c = json_types(&["application/json"]);
    let m = message(&[("content-type", "text/plain; charset=utf-8")], b"");
    assert_eq!(
        c.check(&m).unwrap_err(),
        "content-type: text/plain not in [application/json]"
    );
}

#[test]
fn a_missing_content_type_breaks_a_content_type_rule() {
    let c = json_types(&["application/json"]);
    assert_eq!(
        c.check(&message(&[], b"")).unwrap_err(),
        "missing-header: content-type"
    );
    assert_eq!(Contract::default().check(&message(&[], b"")), Ok(()));
}

#[test]
fn a_huge_content_type_is_cut_short_in_the_reason() {
    let c = json_types(&["application/json"]);
    let long = "x".repeat(10_000);
    let err = c
        .check(&message(&[("content-type", &long)], b""))
        .unwrap_err();
    assert!(err.len() < 200, "{err}");
}

#[test]
fn json_payloads_must_be_one_complete_document() {
    let c = format(PayloadFormat::Json);
    for ok in [
        &b"{\"a\":[1,2,{\"b\":null}]}"[..],
        b" 42 ",
        b"\"s\\n\"",
        b"[]",
    ] {
        assert_eq!(c.check(&message(&[], ok)), Ok(()));
    }
    for bad in [&b""[..], b"{", b"{} {}", b"nul", b"[1,]"] {
        let err = c.check(&message(&[], bad)).unwrap_err();
        assert!(err.starts_with("payload-format: not json: "), "{err}");
    }
    // Well-formed but for a byte that is not UTF-8, inside a string.
    let not_utf8 = b"{\"name\":\"caf\xe9\"}";
    assert!(serde_json::from_slice::<serde_json::Value>(not_utf8).is_err());
    assert_eq!(
        c.check(&message(&[], not_utf8)),
        Err("payload-format: not json: invalid UTF-8 at byte 12".to_owned())
    );
    assert_eq!(
        c.check(&message(&[], "{\"name\":\"café\"}".as_bytes())),
        Ok(())
    );
    // An escape of half a surrogate pair has no text to decode to: refused (I-JSON), as
    // serde_json's Value refuses it. Pairs, other escapes and an escaped backslash before
    // "ud800" (plain text, not an escape) pass.
    let lone = [
        &br#"{"s":"\ud800"}"#[..],
        br#"["\udc00x"]"#,
        br#"{"\ud83d":1}"#,
        br#"["\ud83d\u0041"]"#,
        br#"["\ud83d\n"]"#,
    ];
    for lone in lone {
        assert!(serde_json::from_slice::<serde_json::Value>(lone).is_err());
        let err = c.check(&message(&[], lone)).unwrap_err();
        assert!(
            err.starts_with("payload-format: not json: unpaired surrogate escape at byte "),
            "{lone:?}: {err}"
        );
    }
    let fine = [
        &br#"{"s":"\ud83d\ude00"}"#[..],
        br#"["\u00e9\"\\\/\b\f\n\r\t"]"#,
        br#"["\\ud800"]"#,
        br#"["\uD83D\uDE00", "\uFFFF"]"#,
    ];
    for fine in fine {
        assert_eq!(c.check(&message(&[], fine)), Ok(()), "{fine:?}");
    }
}

#[test]
fn json_is_checked_against_the_grammar_not_one_parser_s_limits() {
    // Numbers beyond f64 and deep nesting are valid JSON; serde_json's Value refuses both, other
    // parsers do not. The contract takes them, with or without escapes elsewhere in the text.
    let c = format(PayloadFormat::Json);
    let deep = |s: &str| format!("{}{s}{}", "[".repeat(200), "]".repeat(200));
    for payload in [
        "1e999".to_owned(),
        r#"["\n", 1e999]"#.to_owned(),
        deep("1"),
        deep(r#""\u00e9""#),
    ] {
        assert_eq!(
            c.check(&message(&[], payload.as_bytes())),
            Ok(()),
            "{payload}"
        );
    }
    let unbalanced = format!("{}1{}", "[".repeat(200), "]".repeat(199));
    assert!(c.check(&message(&[], unbalanced.as_bytes())).is_err());
}

#[test]
fn utf8_payloads_must_be_valid_text() {
    let c = format(PayloadFormat::Utf8);
    assert_eq!(c.check(&message(&[], "héllo".as_bytes())), Ok(()));
    assert_eq!(c.check(&message(&[], b"")), Ok(()));
    let err = c.check(&message(&[], &[0x68, 0xff])).unwrap_err();
    assert_eq!(err, "payload-format: not utf8");
}

#[test]
fn msgpack_payloads_must_be_exactly_one_value() {
    let c = format(PayloadFormat::Msgpack);
    let value = rmp_serde::to_vec(&("a", 1u8, vec![1.5f64], [(2u32, true)])).unwrap();
    assert_eq!(c.check(&message(&[], &value)), Ok(()));
    let mut trailing = value.clone();
    trailing.push(0xc0);
    for bad in [&b""[..], &value[..value.len() - 1], &trailing, &[0xc1]] {
        let err = c.check(&message(&[], bad)).unwrap_err();
        assert_eq!(err, "payload-format: not msgpack");
    }
}

#[test]
fn msgpack_covers_every_marker_family() {
    let values: [&[u8]; 14] = [
        &[0x7f],
        &[0xe0],
        &[0x81, 0x01, 0xc3],
        &[0xa2, b'h', b'i'],
        &[0xc4, 0x01, 0x00],
        &[0xc8, 0x00, 0x01, 0x05, 0x00],
        &[0xca, 0, 0, 0, 0],
        &[0xcf, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0xd8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0xda, 0x00, 0x01, b'x'],
        &[0xdc, 0x00, 0x02, 0xc0, 0xc0],
        &[0xdd, 0x00, 0x00, 0x00, 0x00],
        &[0xde, 0x00, 0x01, 0x01, 0x02],
        &[0xdf, 0x00, 0x00, 0x00, 0x01, 0xc0, 0xc2],
    ];
    for v in values {
        assert_eq!(msgpack_value_len(v), Some(v.len()), "{v:02x?}");
        assert_eq!(msgpack_value_len(&v[..v.len() - 1]), None, "{v:02x?}");
    }
}

#[test]
fn an_msgpack_array_announcing_more_items_than_bytes_fails_fast() {
    assert_eq!(
        msgpack_value_len(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]),
        None
    );
    assert_eq!(msgpack_value_len(&[0xc6, 0xff, 0xff, 0xff, 0xff]), None);
}

#[test]
fn rules_are_checked_cheapest_first() {
    let c = Contract {
        max_payload_bytes: Some(1),
        content_types: vec!["application/json".into()],
        required_headers: vec!["h".into()],
        payload_format: Some(PayloadFormat::Json),
    };
    let m = message(&[], b"not json");
    assert!(c.check(&m).unwrap_err().starts_with("payload-too-large"));
    let c = Contract {
        max_payload_bytes: None,
        ..c
    };
    assert!(c.check(&m).unwrap_err().starts_with("missing-header: h"));
}

fn nested() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,4}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn msgpack_scanner_measures_what_rmp_serde_writes(v in nested(), cut in any::<prop::sample::Index>()) {
        let bytes = rmp_serde::to_vec(&v).unwrap();
        prop_assert_eq!(msgpack_value_len(&bytes), Some(bytes.len()));
        let cut = cut.index(bytes.len());
        prop_assert_eq!(msgpack_value_len(&bytes[..cut]), None);
    }

    #[test]
    fn msgpack_scanner_accepts_only_what_rmp_serde_accepts(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
        if let Some(len) = msgpack_value_len(&bytes) {
            prop_assert!(rmp_serde::from_slice::<serde::de::IgnoredAny>(&bytes[..len]).is_ok());
        }
    }
}
