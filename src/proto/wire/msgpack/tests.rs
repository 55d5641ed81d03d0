//! Tests of the MessagePack serializer: the exact bytes written, every item form read, the walk
//! and the builder agreeing, hostile lengths and nesting, and whole messages through
//! `message::decode` (the only place here that reaches above the serializer).

use bytes::Bytes as Frame;

use super::*;
use crate::proto::wire::codec::{Reader as _, Serializer};
use crate::proto::wire::fuzz::{Binary, hex, to_hex};
use crate::proto::wire::message::{Message, decode, encode_to_vec};

/// Input for a `Reader` in a test (leaked: tests are short-lived).
fn input(h: &str) -> &'static [u8] {
    hex(h).leak()
}

fn enc(v: &Value) -> String {
    let mut out = Vec::new();
    encode_value(v, &mut out);
    to_hex(&out)
}

fn dec(h: &str) -> Result<Message, DecodeError> {
    decode(Serializer::MsgPack, &Frame::from(hex(h)))
}

/// A msgpack str header and body.
fn s(text: &str) -> String {
    let mut out = Vec::new();
    write_str(&mut out, text);
    to_hex(&out)
}

#[test]
fn integers_use_the_smallest_form() {
    let cases: &[(Value, &str)] = &[
        (Value::UInt(0), "00"),
        (Value::UInt(127), "7f"),
        (Value::UInt(128), "cc80"),
        (Value::UInt(255), "ccff"),
        (Value::UInt(256), "cd0100"),
        (Value::UInt(65_535), "cdffff"),
        (Value::UInt(65_536), "ce00010000"),
        (Value::UInt(u64::from(u32::MAX)), "ceffffffff"),
        (Value::UInt(1 << 32), "cf0000000100000000"),
        (Value::UInt(u64::MAX), "cfffffffffffffffff"),
        (Value::Int(-1), "ff"),
        (Value::Int(-32), "e0"),
        (Value::Int(-33), "d0df"),
        (Value::Int(-128), "d080"),
        (Value::Int(-129), "d1ff7f"),
        (Value::Int(-32_768), "d18000"),
        (Value::Int(-32_769), "d2ffff7fff"),
        (Value::Int(i64::from(i32::MIN)), "d280000000"),
        (Value::Int(i64::from(i32::MIN) - 1), "d3ffffffff7fffffff"),
        (Value::Int(i64::MIN), "d38000000000000000"),
    ];
    for (v, want) in cases {
        assert_eq!(enc(v), *want, "{v:?}");
        assert_eq!(decode_values(&hex(want)), Ok(vec![v.clone()]), "{want}");
    }
}

#[test]
fn strings_binaries_and_containers_use_the_smallest_header() {
    let str_of = |n: usize| Value::Str("a".repeat(n));
    let bin_of = |n: usize| Value::Bytes(vec![7; n]);
    let list_of = |n: usize| Value::List(vec![Value::Null; n]);
    let dict_of = |n: usize| Value::Dict((0..n).map(|i| (i.to_string(), Value::Null)).collect());
    let cases: Vec<(Value, &str)> = vec![
        (str_of(0), "a0"),
        (str_of(31), "bf"),
        (str_of(32), "d920"),
        (str_of(255), "d9ff"),
        (str_of(256), "da0100"),
        (str_of(65_536), "db00010000"),
        (bin_of(0), "c400"),
        (bin_of(255), "c4ff"),
        (bin_of(256), "c50100"),
        (bin_of(65_536), "c600010000"),
        (list_of(0), "90"),
        (list_of(15), "9f"),
        (list_of(16), "dc0010"),
        (list_of(65_536), "dd00010000"),
        (dict_of(0), "80"),
        (dict_of(15), "8f"),
        (dict_of(16), "de0010"),
    ];
    for (v, prefix) in cases {
        let got = enc(&v);
        assert!(got.starts_with(prefix), "{}: {}", v.type_name(), &got[..got.len().min(16)]);
        assert_eq!(decode_values(&hex(&got)), Ok(vec![v]));
    }
}

#[test]
fn floats_are_written_as_float64_and_read_in_both_widths() {
    assert_eq!(enc(&Value::Float(1.5)), "cb3ff8000000000000");
    assert_eq!(decode_values(&hex("ca3fc00000")), Ok(vec![Value::Float(1.5)]));
    assert_eq!(decode_values(&hex("cb3ff8000000000000")), Ok(vec![Value::Float(1.5)]));
}

#[test]
fn non_minimal_and_signed_forms_normalise() {
    assert_eq!(decode_values(&hex("d005")), Ok(vec![Value::UInt(5)]));
    assert_eq!(decode_values(&hex("d3000000000000002a")), Ok(vec![Value::UInt(42)]));
    assert_eq!(decode_values(&hex("cd0001")), Ok(vec![Value::UInt(1)]));
    assert_eq!(decode_values(&hex("d90161")), Ok(vec![Value::str("a")]));
}

#[test]
fn values_round_trip() {
    let v = Value::List(vec![
        Value::Null,
        Value::Bool(true),
        Value::Bool(false),
        Value::UInt(300),
        Value::Int(-300),
        Value::Float(-0.25),
        Value::str("héllo"),
        Value::Bytes(vec![0, 1, 255]),
        Value::Dict(Dict::new().with("a", Value::List(vec![Value::UInt(1)])).with("b", Dict::new())),
    ]);
    let mut out = Vec::new();
    encode_value(&v, &mut out);
    encode_value(&Value::Dict(Dict::new().with("k", 1u64)), &mut out);
    let back = decode_values(&out).expect("decode");
    assert_eq!(back, vec![v, Value::Dict(Dict::new().with("k", 1u64))]);
}

#[test]
fn uint_says_what_it_found() {
    let err = |h: &str| dec(h).expect_err("must fail").to_string();
    assert_eq!(err(&format!("92{}00", s("x"))), "message type: expected an integer, found string");
    assert_eq!(err("93ff0000"), "message type: expected a non-negative integer, found -1");
    assert_eq!(err("93cb3ff80000000000000000"), "message type: expected an integer, found float");
    // PUBLISHED with a string publication.
    assert_eq!(err(&format!("931101{}", s("x"))), "PUBLISHED.Publication: expected an integer, found string");
    assert!(err("9211c0").contains("expected an integer, found null"));
}

#[test]
fn ext_is_absent_in_options_and_null_in_payloads() {
    // [16, 1, {"acknowledge": ext, "x": 1, "y": fixext1}, "t", [ext8], {"k": ext}]
    let h = format!(
        "9610 01 83 {} d40001 {} 01 {} c7020a0102 {} 91 c70000 81 {} d50100ff",
        s("acknowledge"),
        s("x"),
        s("y"),
        s("t"),
        s("k")
    )
    .replace(' ', "");
    let Message::Publish { options, payload, .. } = dec(&h).expect("decode") else { panic!("not a PUBLISH") };
    assert_eq!(options, Dict::new().with("x", 1u64));
    assert_eq!(
        payload.values().expect("values"),
        vec![Value::List(vec![Value::Null]), Value::Dict(Dict::new().with("k", Value::Null))]
    );
    // Nested options dicts drop ext entries too; lists in options keep a null.
    let h = format!("931001 82 {} 81 {} d40000 {} 92 01 d40000", s("a"), s("b"), s("c")).replace(' ', "");
    let mut r = Reader::new(input(&h));
    r.begin().expect("begin");
    assert_eq!(r.uint(), Ok(16));
    assert_eq!(r.uint(), Ok(1));
    let d = r.dict().expect("dict");
    assert_eq!(d, Dict::new().with("a", Dict::new()).with("c", Value::List(vec![Value::UInt(1), Value::Null])));
    let mut r = Reader::new(input("92d4000000"));
    r.begin().expect("begin");
    assert_eq!(r.skip(), Ok((1..4, ValueKind::Other)));
    assert_eq!(r.skip(), Ok((4..5, ValueKind::Int)));
    assert_eq!(r.end(), Ok(()));
}

#[test]
fn duplicate_keys_keep_the_last() {
    let h = format!("91 83 {a} 01 {b} 02 {a} 03", a = s("a"), b = s("b")).replace(' ', "");
    let mut r = Reader::new(input(&h));
    r.begin().expect("begin");
    assert_eq!(r.dict(), Ok(Dict::new().with("a", 3u64).with("b", 2u64)));
    // A later ext removes the earlier value: the last word is "absent".
    let h = format!("91 82 {a} 01 {a} d40000", a = s("a")).replace(' ', "");
    let mut r = Reader::new(input(&h));
    r.begin().expect("begin");
    assert_eq!(r.dict(), Ok(Dict::new()));
}

#[test]
fn dict_keys_must_be_strings_except_integers_in_payloads() {
    let mut r = Reader::new(input("918101c3"));
    r.begin().expect("begin");
    assert_eq!(r.dict().expect_err("int key").to_string(), "dict keys must be strings, found integer at offset 2");
    assert_eq!(
        decode_values(&hex("8301c3ff02d0fd03")),
        Ok(vec![Value::Dict(Dict::new().with("1", true).with("-1", 2u64).with("-3", 3u64))])
    );
    assert!(decode_values(&hex("81c40161c3")).expect_err("bin key").to_string().contains("found binary"));
}

// Goal: every dict element of a message has string keys. Options/Details with another key
// are refused (as they always were), and now so is an ArgumentsKw map whose own keys are not
// all strings, at decode time, so it never reaches a peer of another serializer. Keys nested
// deeper are application data: they pass, and a transcode that cannot carry them fails
// cleanly. Method: PUBLISH frames with each kind of key, then transcodes.
#[test]
fn dict_elements_have_string_keys() {
    let key_error = |h: &str| match dec(h).expect_err(h).innermost() {
        DecodeError::KeyType { found, integers_allowed: false, .. } => *found,
        other => panic!("{h}: {other}"),
    };
    assert_eq!(key_error(&format!("94 10 01 81 01 c3 {}", s("t"))), "integer");
    let kwargs = |kw: &str| format!("96 10 01 80 {} 90 {kw}", s("t")).replace(' ', "");
    assert_eq!(key_error(&kwargs("81 c3 01")), "bool");
    assert_eq!(key_error(&kwargs("81 01 02")), "integer");
    assert_eq!(key_error(&kwargs("81 ff 02")), "integer");
    assert_eq!(key_error(&kwargs(&format!("82 {} 01 c0 02", s("a")))), "null");
    assert_eq!(key_error(&kwargs("81 c40161 01")), "binary");
    assert_eq!(key_error(&kwargs("81 90 01")), "list");
    assert!(dec(&kwargs(&format!("82 {} 01 {} 81 01 02", s("k"), s("j")))).is_ok());

    // The dict and its values nest at most VALUE_DEPTH_MAX deep together, as before.
    let deep = |levels: usize| kwargs(&format!("81 {} {}01", s("k"), "91".repeat(levels)));
    let Ok(Message::Publish { payload, .. }) = dec(&deep(VALUE_DEPTH_MAX - 1)) else { panic!("63 levels in kwargs") };
    assert!(payload.values().is_ok(), "what the walk accepts, the builder accepts");
    assert!(matches!(dec(&deep(VALUE_DEPTH_MAX)).expect_err("too deep").innermost(), DecodeError::TooDeep { .. }));

    // Deeper keys pass; JSON cannot carry a bool key, integer keys become their decimal string.
    let nested = |inner: &str| match dec(&kwargs(&format!("81 {} {inner}", s("k")))) {
        Ok(Message::Publish { payload, .. }) => payload,
        other => panic!("{inner}: {other:?}"),
    };
    let bool_key = nested("81 c3 01");
    for to in [Serializer::Json, Serializer::Cbor] {
        let e = bool_key.transcode(to).expect_err("a bool key");
        assert!(matches!(e.innermost(), DecodeError::KeyType { found: "bool", .. }), "{to:?}: {e}");
    }
    assert_eq!(&nested("81 01 02").transcode(Serializer::Json).expect("to JSON").raw[..], br#"[],{"k":{"1":2}}"#);
}

// Goal: an ID that is not an integer in 0..=u64::MAX is a typed decode error, never a panic
// or a truncation (MessagePack has no integer beyond 64 bits). Method: PUBLISHED frames with
// each kind of bad ID.
#[test]
fn ids_outside_u64_are_typed_errors() {
    let innermost = |h: &str| dec(h).expect_err(h).innermost().clone();
    let negative = |n| DecodeError::WrongType { expected: "a non-negative integer", found: Found::Negative(n) };
    assert_eq!(dec("931101cfffffffffffffffff"), Ok(Message::Published { request: 1, publication: u64::MAX }));
    assert_eq!(innermost("931101ff"), negative(0));
    assert_eq!(innermost("931101d3ffffffffffffffff"), negative(0));
    assert_eq!(innermost("931101d38000000000000000"), negative(i64::MAX as u64));
    for float in ["ca3f800000", "cb3ff0000000000000", "cb43f0000000000000"] {
        let e = innermost(&format!("931101{float}"));
        assert_eq!(e, DecodeError::WrongType { expected: "an integer", found: Found::Type("float") }, "{float}");
    }
    let e = innermost("931101d40000");
    assert_eq!(e, DecodeError::WrongType { expected: "an integer", found: Found::Type("msgpack ext") });
}

#[test]
fn top_level_list_is_exact() {
    // One element more than the header announces: trailing bytes.
    assert_eq!(dec("9243ce2f0604aa00").expect_err("trailing").to_string(), "1 trailing bytes after the message");
    // One element less: the item runs past the end.
    assert_eq!(
        dec("9343ce2f0604aa").expect_err("short").to_string(),
        "UNREGISTERED.Details: truncated input: the item at offset 7 runs past the end"
    );
    assert!(dec("80").expect_err("not a list").to_string().contains("must be a list, found dict"));
    assert_eq!(dec("90").expect_err("empty").to_string(), "empty message list");
    assert_eq!(dec("").expect_err("nothing").to_string(), "truncated input: the item at offset 0 runs past the end");
    // Reading past the announced count is an error, not a read into whatever follows.
    let mut r = Reader::new(input("9101 02"));
    r.begin().expect("begin");
    assert_eq!(r.uint(), Ok(1));
    assert!(!r.more().expect("more"));
    assert!(r.uint().is_err());
    assert!(r.end().is_err());
}

#[test]
fn hostile_lengths_fail_without_allocating() {
    for h in [
        "dd ffffffff",
        "dc ffff",
        "df ffffffff",
        "de ffff 00",
        "db ffffffff",
        "da ffff 61",
        "d9 ff",
        "c6 ffffffff",
        "c5 ffff",
        "c9 ffffffff 01",
        "c8 ffff 01 00",
        "d8 01 0000",
        "cf 0000",
        "cb 3ff8",
        "dd ffffffff 90 90 90",
    ] {
        let h = h.replace(' ', "");
        assert!(decode_values(&hex(&h)).is_err(), "{h}");
        let frame = hex(&(format!("9510 01 80 {}", s("t")).replace(' ', "") + &h));
        assert!(decode(Serializer::MsgPack, &Frame::from(frame)).is_err(), "{h}");
        assert!(dec(&h).is_err(), "{h}");
    }
    assert!(dec("c1").expect_err("reserved").to_string().contains("0xc1"));
}

fn nested(levels: usize) -> Vec<u8> {
    let mut out = vec![0x91; levels];
    out.push(0x01);
    out
}

#[test]
fn nesting_is_bounded() {
    assert!(decode_values(&nested(VALUE_DEPTH_MAX)).is_ok());
    let err = decode_values(&nested(VALUE_DEPTH_MAX + 1)).expect_err("too deep").to_string();
    assert!(err.contains("nested deeper than 64"), "{err}");
    assert_eq!(Cursor::new(&nested(VALUE_DEPTH_MAX)).skip(), Ok(ValueKind::List));
    assert!(Cursor::new(&nested(VALUE_DEPTH_MAX + 1)).skip().is_err());
    // A million-deep dict chain errors early rather than overflowing the stack.
    let mut dicts = Vec::new();
    for _ in 0..1_000_000 {
        dicts.extend_from_slice(&[0x81, 0xa1, b'k']);
    }
    dicts.push(0xc0);
    assert!(decode_values(&dicts).is_err());
    assert!(Cursor::new(&dicts).skip().is_err());
}

#[test]
fn skip_validates_utf8_and_reports_the_range() {
    let h = format!("9510 01 80 {} 92 a2c328 01", s("t")).replace(' ', "");
    assert!(dec(&h).expect_err("bad utf-8").to_string().contains("invalid UTF-8"));
    let h = format!("9510 01 80 {} 92 {} 01", s("t"), s("é")).replace(' ', "");
    let Message::Publish { payload, .. } = dec(&h).expect("decode") else { panic!("not a PUBLISH") };
    assert_eq!(&payload.raw[..], &hex(&format!("92{}01", s("é")))[..]);
    assert_eq!(payload.count, 1);
}

#[test]
fn writer_appends_raw_payload_verbatim() {
    let payload = crate::proto::wire::Payload::from_values(Serializer::MsgPack, Some(&[Value::UInt(1)]), None);
    let msg = Message::Event { subscription: 1, publication: 2, details: Dict::new(), payload };
    assert_eq!(to_hex(&encode_to_vec(Serializer::MsgPack, &msg).expect("encode")), "952401028091 01".replace(' ', ""));
}

// Robustness: random and mutated frames must never panic, and whatever decodes must
// re-encode to something that decodes to the same bytes again.

const FUZZ: Binary = Binary {
    serializer: Serializer::MsgPack,
    transcode_to: Serializer::Cbor,
    // Bytes that are headers with large or edge-case lengths, or otherwise special.
    interesting: &[
        0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc4, 0xc6, 0xc9, 0xcf, 0xd3, 0xd4, 0xdb, 0xdd,
        0xdf, 0xff,
    ],
    headers: &[
        &[0xdd, 0xff, 0xff, 0xff, 0xff],
        &[0xdb, 0xff, 0xff, 0xff, 0xff],
        &[0xc6, 0x7f, 0xff, 0xff, 0xff],
        &[0xdf, 0x00, 0x01, 0x00, 0x00],
    ],
};

#[test]
fn vectors_truncated_or_extended_fail_cleanly() {
    FUZZ.vectors_truncated_or_extended_fail_cleanly(0xc0);
}

#[test]
fn skip_and_value_agree_on_mutated_items() {
    FUZZ.skip_and_value_agree(0x5eed_0003, |bytes| {
        let mut walked = Cursor::new(bytes);
        let skipped = walked.skip().map(|_| walked.pos);
        let mut built = Cursor::new(bytes);
        (skipped.ok(), built.value(0, Mode::Payload).map(|_| built.pos))
    });
}

#[test]
fn mutated_and_random_frames_never_panic() {
    FUZZ.mutated_and_random_frames_never_panic(0x5eed_0001, |rng| {
        [0x90 | rng.below(8) as u8, [16u8, 36, 48, 50, 1, 3][rng.below(6)]]
    });
}

// Goal: a message's Options cannot cost more memory than `limits::OPTIONS_DECODED_MAX_BYTES`,
// and a dict over the size cap is refused before anything is built. Method: the shared
// checks of `fuzz::options_bounds_hold`, with a counting allocator, at and past each bound.
#[test]
fn options_bounds_hold() {
    crate::proto::wire::fuzz::options_bounds_hold(Serializer::MsgPack);
}
