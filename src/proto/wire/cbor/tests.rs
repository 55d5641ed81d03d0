//! Tests of the CBOR serializer: the exact bytes written, every item form read, the walk and
//! the builder agreeing, hostile lengths and nesting, and whole messages through
//! `message::decode` (the only place here that reaches above the serializer).

use bytes::Bytes as Frame;

use super::item::{BREAK, Cursor, Mode};
use super::*;
use crate::limits::VALUE_DEPTH_MAX;
use crate::proto::wire::codec::{Reader as _, Serializer};
use crate::proto::wire::fuzz::{Binary, hex, to_hex};
use crate::proto::wire::message::{Message, Payload, decode, encode_to_vec};

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
    decode(Serializer::Cbor, &Frame::from(hex(h)))
}

fn values(h: &str) -> Result<Vec<Value>, DecodeError> {
    decode_values(&hex(h))
}

/// A CBOR text string header and body.
fn s(text: &str) -> String {
    enc(&Value::str(text))
}

#[test]
fn integers_use_the_smallest_form() {
    let cases: &[(Value, &str)] = &[
        (Value::UInt(0), "00"),
        (Value::UInt(23), "17"),
        (Value::UInt(24), "1818"),
        (Value::UInt(255), "18ff"),
        (Value::UInt(256), "190100"),
        (Value::UInt(65_535), "19ffff"),
        (Value::UInt(65_536), "1a00010000"),
        (Value::UInt(u64::from(u32::MAX)), "1affffffff"),
        (Value::UInt(1 << 32), "1b0000000100000000"),
        (Value::UInt(u64::MAX), "1bffffffffffffffff"),
        (Value::Int(-1), "20"),
        (Value::Int(-24), "37"),
        (Value::Int(-25), "3818"),
        (Value::Int(-256), "38ff"),
        (Value::Int(-257), "390100"),
        (Value::Int(-65_537), "3a00010000"),
        (Value::Int(i64::MIN), "3b7fffffffffffffff"),
    ];
    for (v, want) in cases {
        assert_eq!(enc(v), *want, "{v:?}");
        assert_eq!(values(want), Ok(vec![v.clone()]), "{want}");
    }
}

#[test]
fn negatives_below_i64_min_become_floats() {
    assert_eq!(values("3bffffffffffffffff"), Ok(vec![Value::Float(-18_446_744_073_709_551_616.0)]));
    assert_eq!(values("3b8000000000000000"), Ok(vec![Value::Float(-9_223_372_036_854_775_809.0)]));
    let mut r = Reader::new(input("81 3b8000000000000000"));
    r.begin().expect("begin");
    assert_eq!(
        r.uint().expect_err("negative").to_string(),
        "expected a non-negative integer, found -9223372036854775809"
    );
    let mut r = Reader::new(input("81 3b8000000000000000"));
    r.begin().expect("begin");
    assert_eq!(r.skip(), Ok((1..10, ValueKind::Float)));
    assert_eq!(
        values("a1 3b8000000000000000 f6"),
        Ok(vec![Value::Dict(Dict::new().with("-9223372036854775809", Value::Null))])
    );
}

// Goal: bignums (tag 2, tag 3 for -1 - n) that fit the value model decode as integers, so a
// JSON or MessagePack peer receives integers (Autobahn|JS sends large integers so), and larger
// ones stay binary as they always were. Method: both sides of each boundary, definite and
// chunked byte strings, then the walk's kind, an ID position and transcodes.
#[test]
fn bignums_within_64_bits_are_integers() {
    let bytes = |h: &str| Ok(vec![Value::Bytes(hex(h))]);
    assert_eq!(values("c2 40"), Ok(vec![Value::UInt(0)]));
    assert_eq!(values("c2 4101"), Ok(vec![Value::UInt(1)]));
    assert_eq!(values("c2 48 ffffffffffffffff"), Ok(vec![Value::UInt(u64::MAX)]));
    assert_eq!(values("c2 49 00ffffffffffffffff"), Ok(vec![Value::UInt(u64::MAX)]), "leading zero");
    assert_eq!(values("c2 49 010000000000000000"), bytes("010000000000000000"), "2^64 stays binary");
    assert_eq!(values("c2 5f 41ff 47ffffffffffffff ff"), Ok(vec![Value::UInt(u64::MAX)]));
    assert_eq!(values("c2 5f 4101 48 0000000000000000 ff"), bytes("010000000000000000"));
    assert_eq!(values("c3 40"), Ok(vec![Value::Int(-1)]));
    assert_eq!(values("c3 4101"), Ok(vec![Value::Int(-2)]));
    assert_eq!(values("c3 48 7fffffffffffffff"), Ok(vec![Value::Int(i64::MIN)]));
    assert_eq!(values("c3 48 8000000000000000"), bytes("8000000000000000"), "below i64::MIN stays binary");
    // Only the innermost tag decides; a bignum tag on anything but bytes is ignored.
    assert_eq!(values("c1 c2 4101"), Ok(vec![Value::UInt(1)]));
    assert_eq!(values("c2 d818 4101"), bytes("01"));
    assert_eq!(values("c2 01"), Ok(vec![Value::UInt(1)]));
    assert_eq!(values("a1 c2 4101 f6"), Ok(vec![Value::Dict(Dict::new().with("1", Value::Null))]));
    let mut r = Reader::new(input("82 c2 4101 c2 49 010000000000000000"));
    r.begin().expect("begin");
    assert_eq!(r.skip(), Ok((1..4, ValueKind::Int)));
    assert_eq!(r.skip(), Ok((4..15, ValueKind::Bytes)));

    // In an ID position: an integer when it fits, else a typed error.
    assert_eq!(
        dec("83 11 c2 4101 c2 48 ffffffffffffffff"),
        Ok(Message::Published { request: 1, publication: u64::MAX })
    );
    let err = |h: &str| dec(h).expect_err("must fail").to_string();
    assert_eq!(
        err("83 11 01 c2 49 010000000000000000"),
        "PUBLISHED.Publication: integer out of range (above 2^64 - 1)"
    );
    assert_eq!(err("83 11 01 c3 40"), "PUBLISHED.Publication: expected a non-negative integer, found -1");
    assert_eq!(
        err("83 11 01 c3 48 8000000000000000"),
        "PUBLISHED.Publication: expected a non-negative integer, found negative integer beyond 64 bits"
    );

    // Transcoded for the other serializers: integers within 64 bits, binary beyond.
    let payload = |h: &str| Payload { format: Serializer::Cbor, raw: hex(h).into(), count: 1 };
    let within = payload("82 c2 48 ffffffffffffffff c3 48 7fffffffffffffff");
    let json = within.transcode(Serializer::Json).expect("to JSON");
    assert_eq!(&json.raw[..], b"[18446744073709551615,-9223372036854775808]");
    let msgpack = within.transcode(Serializer::MsgPack).expect("to MessagePack");
    assert_eq!(to_hex(&msgpack.raw), "92cfffffffffffffffffd38000000000000000");
    let beyond = payload("81 c2 49 010000000000000000").transcode(Serializer::Json).expect("to JSON");
    assert_eq!(&beyond.raw[..], br#"["\u0000AQAAAAAAAAAA"]"#);
}

#[test]
fn strings_binaries_and_containers_use_the_smallest_header() {
    let str_of = |n: usize| Value::Str("a".repeat(n));
    let bin_of = |n: usize| Value::Bytes(vec![7; n]);
    let list_of = |n: usize| Value::List(vec![Value::Null; n]);
    let dict_of = |n: usize| Value::Dict((0..n).map(|i| (i.to_string(), Value::Null)).collect());
    let cases: Vec<(Value, &str)> = vec![
        (str_of(0), "60"),
        (str_of(23), "77"),
        (str_of(24), "7818"),
        (str_of(256), "790100"),
        (str_of(65_536), "7a00010000"),
        (bin_of(0), "40"),
        (bin_of(24), "5818"),
        (bin_of(65_536), "5a00010000"),
        (list_of(0), "80"),
        (list_of(23), "97"),
        (list_of(24), "9818"),
        (dict_of(0), "a0"),
        (dict_of(24), "b818"),
    ];
    for (v, prefix) in cases {
        let got = enc(&v);
        assert!(got.starts_with(prefix), "{}: {}", v.type_name(), &got[..got.len().min(16)]);
        assert_eq!(decode_values(&hex(&got)), Ok(vec![v]));
    }
}

#[test]
fn floats_match_cbor2_and_read_in_every_width() {
    assert_eq!(enc(&Value::Float(1.5)), "fb3ff8000000000000");
    assert_eq!(enc(&Value::Float(f64::NAN)), "f97e00");
    assert_eq!(enc(&Value::Float(f64::INFINITY)), "f97c00");
    assert_eq!(enc(&Value::Float(f64::NEG_INFINITY)), "f9fc00");
    for (h, want) in [
        ("f93e00", 1.5),
        ("f97bff", 65_504.0),
        ("f90001", 5.960_464_477_539_063e-8),
        ("f90400", 6.103_515_625e-5),
        ("f9c400", -4.0),
        ("f97c00", f64::INFINITY),
        ("f9fc00", f64::NEG_INFINITY),
        ("fa3fc00000", 1.5),
        ("fa47c35000", 100_000.0),
        ("fb3ff8000000000000", 1.5),
    ] {
        assert_eq!(values(h), Ok(vec![Value::Float(want)]), "{h}");
    }
    let Ok(v) = values("f97e00") else { panic!("NaN") };
    assert!(matches!(v[..], [Value::Float(f)] if f.is_nan()));
    let Ok(v) = values("f98000") else { panic!("-0") };
    assert!(matches!(v[..], [Value::Float(f)] if f == 0.0 && f.is_sign_negative()));
    assert!(values("f97e").is_err());
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
    assert_eq!(decode_values(&out), Ok(vec![v, Value::Dict(Dict::new().with("k", 1u64))]));
}

#[test]
fn indefinite_lengths_are_accepted() {
    assert_eq!(values("9f 01 02 ff"), Ok(vec![Value::List(vec![Value::UInt(1), Value::UInt(2)])]));
    assert_eq!(values("bf 6161 01 ff"), Ok(vec![Value::Dict(Dict::new().with("a", 1u64))]));
    assert_eq!(values("7f 6161 60 6162 ff"), Ok(vec![Value::str("ab")]));
    assert_eq!(values("5f 4101 4102 ff"), Ok(vec![Value::Bytes(vec![1, 2])]));
    assert_eq!(values("7f ff"), Ok(vec![Value::str("")]));
    assert_eq!(values("9f 9f ff bf ff ff"), Ok(vec![Value::List(vec![Value::List(vec![]), Value::Dict(Dict::new())])]));
    // An indefinite message list, an indefinite options dict, an indefinite topic and an
    // indefinite payload list, which stays raw.
    let h = format!("9f 10 01 bf {} f5 ff 7f {} ff 9f 01 ff ff", s("acknowledge"), s("t"));
    let Message::Publish { request, options, topic, payload } = dec(&h).expect("decode") else {
        panic!("not a PUBLISH")
    };
    assert_eq!((request, topic.as_str()), (1, "t"));
    assert_eq!(options, Dict::new().with("acknowledge", true));
    assert_eq!(&payload.raw[..], &hex("9f01ff")[..]);
    assert_eq!(payload.values(), Ok(vec![Value::List(vec![Value::UInt(1)])]));
    // Re-encoding writes definite lengths.
    let again = encode_to_vec(Serializer::Cbor, &dec("9f 11 01 02 ff").expect("decode")).expect("encode");
    assert_eq!(to_hex(&again), "83110102");
    // An indefinite list that never ends, or that ends early.
    assert!(dec("9f 11 01 02").is_err());
    assert!(dec("9f 11 01 ff").expect_err("short").to_string().contains("missing element"));
    assert!(dec("9f 11 01 02 03 ff").expect_err("long").to_string().contains("too many elements"));
    assert!(dec("9f 11 01 02 ff 00").expect_err("trailing").to_string().contains("1 trailing bytes"));
}

#[test]
fn tags_are_ignored() {
    assert_eq!(values("c1 1a514b67b0"), Ok(vec![Value::UInt(1_363_896_240)]));
    // (Tags 2 and 3 on a byte string are bignums: `bignums_within_64_bits_are_integers`.)
    assert_eq!(values("d818 4101"), Ok(vec![Value::Bytes(vec![1])]));
    assert_eq!(values("d820 c0 6161"), Ok(vec![Value::str("a")]));
    assert_eq!(values("a1 c0 6161 c1 01"), Ok(vec![Value::Dict(Dict::new().with("a", 1u64))]));
    // The self-describe tag in front of a message.
    assert_eq!(dec("d9d9f7 83 11 01 02"), Ok(Message::Published { request: 1, publication: 2 }));
    let mut r = Reader::new(input("81 c1 c1 81 01"));
    r.begin().expect("begin");
    assert_eq!(r.skip(), Ok((1..5, ValueKind::List)));
    // A tag must be followed by an item.
    assert!(values("c1").is_err());
    assert!(values("9f c1 ff").is_err());
}

#[test]
fn malformed_items_are_rejected() {
    for h in [
        "ff",          // a break where an item must be
        "81 ff",       // a break in a definite list
        "bf 01 ff",    // an indefinite dict with a key and no value
        "a1 01 ff",    // a definite dict whose value is a break
        "7f 7f ff ff", // a nested indefinite chunk
        "7f 4100 ff",  // a byte chunk in a text string
        "5f 6100 ff",  // a text chunk in a byte string
        "7f 61",       // a chunk that runs past the end
        "62 c328",     // invalid UTF-8
        "7f 62c328 ff",
        "f8 10", // a two-byte simple value below 32
        "18",    // a header that runs past the end
        "fa 3fc0",
    ] {
        assert!(values(h).is_err(), "decode_values {h}");
        assert!(Cursor::new(&hex(h)).skip().is_err(), "skip {h}");
    }
    // Initial bytes with a reserved additional-information value (28 to 31 where 31 is
    // not allowed).
    for b in [0x1c, 0x1f, 0x3c, 0x3f, 0x5c, 0x7c, 0x9c, 0xbc, 0xdc, 0xdf, 0xfc, 0xfd, 0xfe] {
        assert!(decode_values(&[b, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(), "{b:02x}");
    }
}

#[test]
fn undefined_is_absent_in_options_and_null_in_payloads() {
    // [16, 1, {"acknowledge": undefined, "x": 1, "y": simple(99)}, "t", [undefined], {"k": undefined}]
    let h =
        format!("86 10 01 a3 {} f7 {} 01 {} f863 {} 81 f7 a1 {} f7", s("acknowledge"), s("x"), s("y"), s("t"), s("k"));
    let Message::Publish { options, payload, .. } = dec(&h).expect("decode") else { panic!("not a PUBLISH") };
    assert_eq!(options, Dict::new().with("x", 1u64));
    assert_eq!(
        payload.values(),
        Ok(vec![Value::List(vec![Value::Null]), Value::Dict(Dict::new().with("k", Value::Null))])
    );
    // Nested options dicts drop undefined entries too; lists in options keep a null.
    let h = format!("83 10 01 a2 {} a1 {} f7 {} 82 01 f7", s("a"), s("b"), s("c"));
    let mut r = Reader::new(input(&h));
    r.begin().expect("begin");
    assert_eq!((r.uint(), r.uint()), (Ok(16), Ok(1)));
    assert_eq!(
        r.dict(),
        Ok(Dict::new().with("a", Dict::new()).with("c", Value::List(vec![Value::UInt(1), Value::Null])))
    );
    let mut r = Reader::new(input("83 f7 e0 00"));
    r.begin().expect("begin");
    assert_eq!(r.skip(), Ok((1..2, ValueKind::Other)));
    assert_eq!(r.skip(), Ok((2..3, ValueKind::Other)));
    assert_eq!(r.skip(), Ok((3..4, ValueKind::Int)));
    assert_eq!(r.end(), Ok(()));
}

#[test]
fn duplicate_keys_keep_the_last() {
    let mut r = Reader::new(input(&format!("81 a3 {a} 01 {b} 02 {a} 03", a = s("a"), b = s("b"))));
    r.begin().expect("begin");
    assert_eq!(r.dict(), Ok(Dict::new().with("a", 3u64).with("b", 2u64)));
    let mut r = Reader::new(input(&format!("81 a2 {a} 01 {a} f7", a = s("a"))));
    r.begin().expect("begin");
    assert_eq!(r.dict(), Ok(Dict::new()));
}

#[test]
fn dict_keys_must_be_strings_except_integers_in_payloads() {
    let mut r = Reader::new(input("81 a1 01 f5"));
    r.begin().expect("begin");
    assert_eq!(r.dict().expect_err("int key").to_string(), "dict keys must be strings, found integer at offset 2");
    assert_eq!(
        values("a3 01 f5 20 02 7f 6161 ff 03"),
        Ok(vec![Value::Dict(Dict::new().with("1", true).with("-1", 2u64).with("a", 3u64))])
    );
    assert!(values("a1 4161 f5").expect_err("bytes key").to_string().contains("found binary"));
}

// Goal: every dict element of a message has string keys. Options/Details with another key
// are refused (as they always were), and now so is an ArgumentsKw dict whose own keys are
// not all strings, at decode time, so it never reaches a peer of another serializer. Keys
// nested deeper are application data: they pass, and a transcode that cannot carry them
// fails cleanly. Method: PUBLISH frames with each kind of key, then transcodes.
#[test]
fn dict_elements_have_string_keys() {
    let key_error = |h: &str| match dec(h).expect_err(h).innermost() {
        DecodeError::KeyType { found, integers_allowed: false, .. } => *found,
        other => panic!("{h}: {other}"),
    };
    assert_eq!(key_error(&format!("84 10 01 a1 01 f5 {}", s("t"))), "integer");
    assert_eq!(key_error(&format!("84 10 01 a1 c2 4101 f5 {}", s("t"))), "integer");
    let kwargs = |kw: &str| format!("86 10 01 a0 {} 80 {kw}", s("t"));
    assert_eq!(key_error(&kwargs("a1 01 02")), "integer");
    assert_eq!(key_error(&kwargs(&format!("a2 {} 01 f5 02", s("a")))), "bool");
    assert_eq!(key_error(&kwargs("bf 01 02 ff")), "integer");
    assert_eq!(key_error(&kwargs(&format!("bf {} 01 40 02 ff", s("a")))), "binary");
    assert_eq!(key_error(&kwargs("a1 80 01")), "list");
    assert!(dec(&kwargs(&format!("a3 {} 01 7f 6161 ff 02 c1 {} 03", s("k"), s("j")))).is_ok());

    // The dict and its values nest at most VALUE_DEPTH_MAX deep together, as before.
    let deep = |levels: usize| kwargs(&format!("a1 {} {}01", s("k"), "81".repeat(levels)));
    let Ok(Message::Publish { payload, .. }) = dec(&deep(VALUE_DEPTH_MAX - 1)) else { panic!("63 levels in kwargs") };
    assert!(payload.values().is_ok(), "what the walk accepts, the builder accepts");
    assert!(matches!(dec(&deep(VALUE_DEPTH_MAX)).expect_err("too deep").innermost(), DecodeError::TooDeep { .. }));

    // Deeper keys pass; JSON cannot carry a bool key, integer keys become their decimal string.
    let nested = |inner: &str| match dec(&kwargs(&format!("a1 {} {inner}", s("k")))) {
        Ok(Message::Publish { payload, .. }) => payload,
        other => panic!("{inner}: {other:?}"),
    };
    let bool_key = nested("a1 f5 01");
    for to in [Serializer::Json, Serializer::MsgPack] {
        let e = bool_key.transcode(to).expect_err("a bool key");
        assert!(matches!(e.innermost(), DecodeError::KeyType { found: "bool", .. }), "{to:?}: {e}");
    }
    assert_eq!(&nested("a1 01 02").transcode(Serializer::Json).expect("to JSON").raw[..], br#"[],{"k":{"1":2}}"#);
}

// Goal: an ID that is not an integer in 0..=u64::MAX is a typed decode error, never a panic
// or a truncation. Method: PUBLISHED frames with each kind of bad ID, and a bad type code.
#[test]
fn ids_outside_u64_are_typed_errors() {
    let innermost = |h: &str| dec(h).expect_err(h).innermost().clone();
    let negative = |n| DecodeError::WrongType { expected: "a non-negative integer", found: Found::Negative(n) };
    assert_eq!(dec("83 11 01 1b ffffffffffffffff"), Ok(Message::Published { request: 1, publication: u64::MAX }));
    assert_eq!(innermost("83 11 01 c2 49 010000000000000000"), DecodeError::IntegerOutOfRange);
    assert_eq!(innermost("83 c2 49 010000000000000000 01 02"), DecodeError::IntegerOutOfRange);
    assert_eq!(innermost("83 11 01 20"), negative(0));
    assert_eq!(innermost("83 11 01 3b ffffffffffffffff"), negative(u64::MAX));
    for float in ["f93c00", "fa3f800000", "fb3ff0000000000000", "fb43f0000000000000"] {
        let e = innermost(&format!("83 11 01 {float}"));
        assert_eq!(e, DecodeError::WrongType { expected: "an integer", found: Found::Type("float") }, "{float}");
    }
}

#[test]
fn uint_says_what_it_found() {
    let err = |h: &str| dec(h).expect_err("must fail").to_string();
    assert_eq!(err(&format!("82 {} 00", s("x"))), "message type: expected an integer, found string");
    assert_eq!(err("83 20 00 00"), "message type: expected a non-negative integer, found -1");
    assert_eq!(err("83 fb3ff8000000000000 00 00"), "message type: expected an integer, found float");
    assert_eq!(err(&format!("83 11 01 {}", s("x"))), "PUBLISHED.Publication: expected an integer, found string");
    assert_eq!(err("83 11 01 f7"), "PUBLISHED.Publication: expected an integer, found undefined");
}

#[test]
fn top_level_list_is_exact() {
    assert_eq!(dec("8218431a2f0604aa00").expect_err("trailing").to_string(), "1 trailing bytes after the message");
    assert_eq!(
        dec("8318431a2f0604aa").expect_err("short").to_string(),
        "UNREGISTERED.Details: truncated input: the item at offset 8 runs past the end"
    );
    assert!(dec("a0").expect_err("not a list").to_string().contains("must be a list, found dict"));
    assert_eq!(dec("80").expect_err("empty").to_string(), "empty message list");
    assert_eq!(dec("9fff").expect_err("empty").to_string(), "empty message list");
    assert!(dec("").expect_err("nothing").to_string().starts_with("truncated input"));
    let mut r = Reader::new(input("81 01 02"));
    r.begin().expect("begin");
    assert_eq!(r.uint(), Ok(1));
    assert_eq!(r.more(), Ok(false));
    assert!(r.uint().is_err());
    let mut r = Reader::new(input("9f 01 ff"));
    r.begin().expect("begin");
    assert_eq!(r.uint(), Ok(1));
    assert_eq!(r.more(), Ok(false));
    assert!(r.uint().is_err());
    assert_eq!(r.end(), Ok(()));
}

#[test]
fn hostile_lengths_fail_without_allocating() {
    for h in [
        "9b ffffffffffffffff",
        "9a ffffffff 00",
        "bb ffffffffffffffff",
        "ba ffffffff 00 00",
        "5b ffffffffffffffff",
        "5a ffffffff 00",
        "7b ffffffffffffffff",
        "7a ffffffff 61",
        "7f 7b ffffffffffffffff ff",
        "9b ffffffffffffffff 80 80 80",
        "1b 0000",
        "fb 3ff8",
    ] {
        assert!(values(h).is_err(), "{h}");
        assert!(dec(&(format!("85 10 01 a0 {} ", s("t")) + h)).is_err(), "{h}");
        assert!(dec(h).is_err(), "{h}");
    }
}

fn nested(levels: usize, header: u8) -> Vec<u8> {
    let mut out = vec![header; levels];
    out.push(0x01);
    if header == 0x9f {
        out.extend(std::iter::repeat_n(BREAK, levels));
    }
    out
}

#[test]
fn nesting_is_bounded() {
    for header in [0x81, 0x9f] {
        assert!(decode_values(&nested(VALUE_DEPTH_MAX, header)).is_ok());
        assert_eq!(Cursor::new(&nested(VALUE_DEPTH_MAX, header)).skip(), Ok(ValueKind::List));
        let err = decode_values(&nested(VALUE_DEPTH_MAX + 1, header)).expect_err("too deep").to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
        assert!(Cursor::new(&nested(VALUE_DEPTH_MAX + 1, header)).skip().is_err());
    }
    // A million-deep chain errors early rather than overflowing the stack.
    let mut dicts = Vec::new();
    for _ in 0..1_000_000 {
        dicts.extend_from_slice(&[0xbf, 0x61, b'k']);
    }
    assert!(decode_values(&dicts).is_err());
    assert!(Cursor::new(&dicts).skip().is_err());
    // Tags do not nest, and a long chain of them is walked, not recursed into.
    let mut tags = vec![0xc1; 1_000_000];
    tags.push(0x01);
    assert_eq!(decode_values(&tags), Ok(vec![Value::UInt(1)]));
}

#[test]
fn skip_reports_the_range_and_kind() {
    let h = format!("86 10 01 a0 {} 82 01 {} a1 {} 5f 4101 ff", s("t"), s("é"), s("k"));
    let Message::Publish { payload, .. } = dec(&h).expect("decode") else { panic!("not a PUBLISH") };
    assert_eq!(to_hex(&payload.raw), format!("8201{}a1{}5f4101ff", s("é"), s("k")));
    assert_eq!(payload.count, 2);
    assert_eq!(
        payload.values(),
        Ok(vec![
            Value::List(vec![Value::UInt(1), Value::str("é")]),
            Value::Dict(Dict::new().with("k", Value::Bytes(vec![1])))
        ])
    );
}

#[test]
fn writer_appends_raw_payload_verbatim() {
    let payload = crate::proto::wire::Payload::from_values(Serializer::Cbor, Some(&[Value::UInt(1)]), None);
    let msg = Message::Event { subscription: 1, publication: 2, details: Dict::new(), payload };
    assert_eq!(to_hex(&encode_to_vec(Serializer::Cbor, &msg).expect("encode")), "8518240102a08101");
}

// Robustness: random and mutated frames must never panic, and whatever decodes must
// re-encode to something that decodes to the same bytes again.

const FUZZ: Binary = Binary {
    serializer: Serializer::Cbor,
    transcode_to: Serializer::MsgPack,
    // Initial bytes with large, indefinite or reserved lengths, tags, simple values, break.
    interesting: &[
        0x00, 0x17, 0x1b, 0x1f, 0x3b, 0x5b, 0x5f, 0x7b, 0x7f, 0x9b, 0x9f, 0xbb, 0xbf, 0xc1, 0xc2, 0xc3, 0xd9, 0xdf,
        0xf7, 0xf8, 0xf9, 0xfb, 0xfc, 0xff,
    ],
    headers: &[
        &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x7a, 0xff, 0xff, 0xff, 0xff],
        &[0x5f, 0x41],
        &[0x9f],
        &[BREAK],
    ],
};

#[test]
fn vectors_truncated_or_extended_fail_cleanly() {
    FUZZ.vectors_truncated_or_extended_fail_cleanly(0xf6);
}

#[test]
fn skip_and_value_agree_on_mutated_items() {
    FUZZ.skip_and_value_agree(0x5eed_0004, |bytes| {
        let mut walked = Cursor::new(bytes);
        let skipped = walked.skip().map(|_| walked.pos());
        let mut built = Cursor::new(bytes);
        (skipped.ok(), built.value(0, Mode::Payload).map(|_| built.pos()))
    });
}

#[test]
fn mutated_and_random_frames_never_panic() {
    FUZZ.mutated_and_random_frames_never_panic(0x5eed_0002, |rng| {
        [[0x82u8, 0x84, 0x85, 0x86, 0x9f][rng.below(5)], [16u8, 0x01, 0x03][rng.below(3)]]
    });
}

// Goal: a message's Options cannot cost more memory than `limits::OPTIONS_DECODED_MAX_BYTES`,
// and a dict over the size cap is refused before anything is built. Method: the shared
// checks of `fuzz::options_bounds_hold`, with a counting allocator, at and past each bound.
#[test]
fn options_bounds_hold() {
    crate::proto::wire::fuzz::options_bounds_hold(Serializer::Cbor);
}
