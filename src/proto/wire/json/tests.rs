//! Tests of the JSON serializer: the scanner, both value builders and the writer, each
//! value-level rule, and whole messages through `message::decode` (the only place here that
//! reaches above the serializer).

use bytes::Bytes;

use super::build::{Parser, simd_value};
use super::*;
use crate::limits::{JSON_HAND_PARSE_MAX_BYTES as HAND_PARSE_MAX_BYTES, VALUE_DEPTH_MAX};
use crate::proto::wire::codec::{Reader as _, Serializer, Writer as _};
use crate::proto::wire::fuzz::{Rng, vector_frames};
use crate::proto::wire::message::{Message, Payload, decode, encode_to_vec};

/// Validate `json` as one document (the scanner, then only whitespace).
fn scan(json: &[u8]) -> Result<ValueKind, DecodeError> {
    let start = skip_ws(json, 0);
    let (end, kind) = skip_value(json, start)?;
    if skip_ws(json, end) != json.len() {
        return Err(unexpected(json, end, "end of input"));
    }
    Ok(kind)
}

/// Decode `json` as one value, by the hand parser and by simd-json, which must agree.
fn parse(json: &[u8]) -> Result<Value, DecodeError> {
    let scanned = scan(json);
    let hand = Parser::document(json);
    assert_eq!(scanned.is_ok(), hand.is_ok(), "scanner and parser disagree on {:?}", String::from_utf8_lossy(json));
    if let Ok(v) = &hand {
        // simd-json refuses integers beyond 64 bits, where `build` falls back to the hand parser.
        match simd_value(json) {
            Ok(s) => assert!(same(&s, v), "simd-json and parser disagree on {:?}", String::from_utf8_lossy(json)),
            // The grammar was checked, so this can only be a number out of its range.
            Err(e) => assert!(
                e.to_string().contains("InvalidNumber"),
                "simd-json refused {:?} for another reason than a number's range: {e}",
                String::from_utf8_lossy(json)
            ),
        }
        let values = decode_values(json)?;
        assert!(values.len() == 1 && same(&values[0], v));
    }
    hand
}

/// Equality that treats NaN as equal to itself.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Value::List(x), Value::List(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

fn enc(v: &Value) -> String {
    let mut out = Vec::new();
    encode_value(v, &mut out);
    String::from_utf8(out).expect("encoder writes UTF-8")
}

fn decode_json(json: &str) -> Result<Message, DecodeError> {
    decode(Serializer::Json, &Bytes::copy_from_slice(json.as_bytes()))
}

#[test]
fn escapes_decode() {
    assert_eq!(parse(br#""\"\\\/\b\f\n\r\t\u00e9\u20AC""#), Ok(Value::str("\"\\/\u{8}\u{c}\n\r\té€")));
    assert_eq!(parse(br#""plain""#), Ok(Value::str("plain")));
    assert_eq!(parse(b"\"caf\xc3\xa9 \xf0\x9f\x98\x80\""), Ok(Value::str("café 😀")));
    for bad in [&br#""\x""#[..], br#""\u12""#, br#""\u12G4""#, br#""\"#, br#""abc"#, b"\"a\nb\"", b"\"\x00\""] {
        assert!(parse(bad).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
    }
    // DEL is not a control character for JSON.
    assert_eq!(parse(b"\"\x7f\""), Ok(Value::str("\u{7f}")));
}

#[test]
fn surrogates() {
    assert_eq!(parse(br#""\ud83d\ude00""#), Ok(Value::str("😀")));
    assert_eq!(parse(br#""a\uD83D\uDE00b""#), Ok(Value::str("a😀b")));
    // Lone surrogates are rejected by the scanner, the parser and the typed reads alike.
    for bad in [&br#""\ud83d""#[..], br#""\ud83dx""#, br#""\ud83d\u0041""#, br#""\ude00""#, br#""\ud83d\ud83d""#] {
        assert!(parse(bad).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        let msg = format!("[1,{},{{}}]", String::from_utf8_lossy(bad));
        assert!(decode_json(&msg).is_err());
    }
}

#[test]
fn invalid_utf8_is_rejected() {
    for bad in [
        &b"\"\xff\""[..],
        b"\"\xc0\x80\"",             // overlong NUL
        b"\"\xe2\x82\"",             // truncated
        b"\"\xed\xa0\x80\"",         // UTF-8-encoded surrogate
        b"\"\xf4\x90\x80\x80\"",     // above U+10FFFF
        b"\"abcdefgh\x80ijklmnop\"", // in the eight-byte fast path
    ] {
        assert!(parse(bad).is_err(), "{bad:?} accepted");
        let mut msg = b"[1,".to_vec();
        msg.extend_from_slice(bad);
        msg.extend_from_slice(b",{}]");
        assert!(decode(Serializer::Json, &Bytes::from(msg)).is_err());
    }
    // A bad byte at every offset before the closing quote, inside and after the first
    // eight-byte word; good UTF-8 in the same places passes.
    for n in 0..20 {
        let pad = "a".repeat(n);
        assert!(parse(format!("\"{pad}\u{e9}\"").as_bytes()).is_ok());
        assert!(parse(&[b"\"", pad.as_bytes(), b"\xff\""].concat()).is_err(), "offset {n}");
        assert!(parse(&[b"\"", pad.as_bytes(), b"\xc3\\n\""].concat()).is_err(), "offset {n}");
    }
    // Non-ASCII outside strings is a syntax error.
    assert!(parse(b"[\xc3\xa9]").is_err());
}

#[test]
fn nesting_depth_is_bounded() {
    let lists_ok = "[".repeat(VALUE_DEPTH_MAX) + &"]".repeat(VALUE_DEPTH_MAX);
    let lists_deep = "[".repeat(VALUE_DEPTH_MAX + 1) + &"]".repeat(VALUE_DEPTH_MAX + 1);
    assert!(parse(lists_ok.as_bytes()).is_ok());
    assert!(parse(lists_deep.as_bytes()).is_err());
    let dicts = |n: usize| "{\"k\":".repeat(n) + "1" + &"}".repeat(n);
    assert!(parse(dicts(VALUE_DEPTH_MAX).as_bytes()).is_ok());
    assert!(parse(dicts(VALUE_DEPTH_MAX + 1).as_bytes()).is_err());
    // Large enough for simd-json: the scanner still refuses first.
    let big_deep = format!("[{}\"{}\"{}]", "[".repeat(VALUE_DEPTH_MAX), "x".repeat(1000), "]".repeat(VALUE_DEPTH_MAX));
    assert!(decode_values(big_deep.as_bytes()).is_err());
    // A hostile megabyte of brackets fails fast, without recursion.
    let hostile = "[".repeat(1 << 20);
    assert!(scan(hostile.as_bytes()).is_err());
    assert!(decode_json(&format!("[16,1,{{}},\"t\",{hostile}")).is_err());
}

#[test]
fn numbers() {
    assert_eq!(parse(b"0"), Ok(Value::UInt(0)));
    assert_eq!(parse(b"-0"), Ok(Value::UInt(0)));
    assert_eq!(parse(b"-0.0").map(|v| matches!(v, Value::Float(f) if f == 0.0 && f.is_sign_negative())), Ok(true));
    assert_eq!(parse(b"1e5"), Ok(Value::Float(100000.0)));
    assert_eq!(parse(b"1E+2"), Ok(Value::Float(100.0)));
    assert_eq!(parse(b"2.5e-3"), Ok(Value::Float(0.0025)));
    assert_eq!(parse(b"-17"), Ok(Value::Int(-17)));
    assert_eq!(parse(b"18446744073709551615"), Ok(Value::UInt(u64::MAX)));
    assert_eq!(parse(b"18446744073709551616"), Ok(Value::Float(18446744073709551616.0)));
    assert_eq!(parse(b"-9223372036854775808"), Ok(Value::Int(i64::MIN)));
    assert_eq!(parse(b"-9223372036854775809"), Ok(Value::Float(-9223372036854775809.0)));
    assert_eq!(parse(b"1e400"), Ok(Value::Float(f64::INFINITY)));
    assert_eq!(parse(b"-1e400"), Ok(Value::Float(f64::NEG_INFINITY)));
    assert_eq!(parse(b"1e-400"), Ok(Value::Float(0.0)));
    assert_eq!(scan(b"12"), Ok(ValueKind::Int));
    assert_eq!(scan(b"-12"), Ok(ValueKind::Int));
    assert_eq!(scan(b"1.5"), Ok(ValueKind::Float));
    for bad in ["01", "-01", "00", "-", "1.", ".5", "1e", "1e+", "+1", "1.e3", "0x10", "Infinity", "NaN", "--1", "1-"] {
        assert!(parse(bad.as_bytes()).is_err(), "{bad} accepted");
    }
    // Numbers simd-json refuses, inside values large enough for it, fall back to the
    // hand parser.
    let pad = "x".repeat(HAND_PARSE_MAX_BYTES);
    let v = decode_values(format!("[123456789012345678901234567890,1e999,\"{pad}\"]").as_bytes()).expect("big");
    assert_eq!(
        v[0].as_list().map(|l| &l[..2]),
        Some(&[Value::Float(1.2345678901234568e29), Value::Float(f64::INFINITY)][..])
    );
}

#[test]
fn literals_and_trailing_garbage() {
    assert_eq!(parse(b" true "), Ok(Value::Bool(true)));
    assert_eq!(parse(b"false"), Ok(Value::Bool(false)));
    assert_eq!(parse(b"null"), Ok(Value::Null));
    for bad in
        ["tru", "nul", "True", "truex", "[1]x", "{}}", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{1:2}", "[1 2]"]
    {
        assert!(parse(bad.as_bytes()).is_err(), "{bad} accepted");
    }
    assert!(decode_json("[67,1]x").is_err());
    assert!(decode_json("[67,1] ]").is_err());
    assert!(decode_json("[67,1],").is_err());
    assert_eq!(decode_json(" \r\n\t[ 67 , 1 ] \n"), Ok(Message::Unregistered { request: 1, details: None }));
    assert!(decode_json("[67,1,]").is_err());
    assert!(decode_json("[67,,1]").is_err());
    assert!(decode_json("[67 1]").is_err());
    assert!(decode_json("[67,1").is_err());
    assert!(decode_json("67,1]").is_err());
    assert!(decode_json("[]").is_err());
    assert!(decode_json("").is_err());
    assert!(decode_values(b"[1] [2]").is_err());
    assert!(decode_values(b"[1],").is_err());
}

#[test]
fn binary_convention_both_ways() {
    let bytes = Value::Bytes(vec![0, 1, 2, 0xfe, 0xff]);
    assert_eq!(enc(&bytes), r#""\u0000AAEC/v8=""#);
    assert_eq!(parse(enc(&bytes).as_bytes()), Ok(bytes));
    assert_eq!(enc(&Value::Bytes(Vec::new())), r#""\u0000""#);
    assert_eq!(parse(br#""\u0000""#), Ok(Value::Bytes(Vec::new())));
    // Not base64 after the marker: the string is kept as text.
    assert_eq!(parse(br#""\u0000not base64!""#), Ok(Value::str("\0not base64!")));
    assert_eq!(scan(br#""\u0000AAEC""#), Ok(ValueKind::Bytes));
    assert_eq!(scan(br#""u0000AAEC""#), Ok(ValueKind::Str));
    // Binary payload elements pass through; a binary where a URI belongs is refused.
    let m = decode_json(r#"[16,1,{},"t","\u0000AAEC"]"#).expect("binary payload");
    let Message::Publish { payload, .. } = &m else { panic!("not a PUBLISH") };
    assert_eq!(payload.values(), Ok(vec![Value::Bytes(vec![0, 1, 2])]));
    let e = decode_json(r#"[16,1,{},"\u0000AAEC"]"#).expect_err("binary topic");
    assert!(e.to_string().contains("expected a string, found binary"), "{e}");
}

#[test]
fn uint_errors_say_what_was_found() {
    let cases = [
        ("\"x\"", "expected an integer, found string"),
        ("-1", "expected an integer, found negative integer"),
        ("-1.5", "expected an integer, found float"),
        ("1.5", "expected an integer, found float"),
        ("1e3", "expected an integer, found float"),
        ("{}", "expected an integer, found dict"),
        ("[]", "expected an integer, found list"),
        ("null", "expected an integer, found null"),
        ("true", "expected an integer, found bool"),
        ("18446744073709551616", "integer out of range"),
        ("01", "leading zero"),
    ];
    for (elem, want) in cases {
        let e = decode_json(&format!("[{elem},1]")).expect_err(elem);
        assert!(e.to_string().contains(want), "{elem}: {e}");
        let e = decode_json(&format!("[67,{elem}]")).expect_err(elem);
        assert!(e.to_string().contains(want) && e.to_string().starts_with("UNREGISTERED."), "{elem}: {e}");
    }
    let mut r = Reader::new(b"[18446744073709551615]");
    r.begin().expect("begin");
    assert_eq!(r.uint(), Ok(u64::MAX));
    assert_eq!(r.more(), Ok(false));
    assert_eq!(r.end(), Ok(()));
}

// Goal: an ID that is not an integer in 0..=u64::MAX is a typed decode error, never a panic
// or a truncation; and no dict element can have a non-string key (the grammar has none).
// Method: PUBLISHED frames with each kind of bad ID; PUBLISH frames with number keys.
#[test]
fn ids_outside_u64_are_typed_errors() {
    let innermost = |json: &str| decode_json(json).expect_err(json).innermost().clone();
    let found = |what| DecodeError::WrongType { expected: "an integer", found: Found::Type(what) };
    assert_eq!(
        decode_json("[17,1,18446744073709551615]"),
        Ok(Message::Published { request: 1, publication: u64::MAX })
    );
    assert_eq!(innermost("[17,1,18446744073709551616]"), DecodeError::IntegerOutOfRange);
    assert_eq!(innermost("[17,1,99999999999999999999999999999]"), DecodeError::IntegerOutOfRange);
    assert_eq!(innermost("[18446744073709551633,1,2]"), DecodeError::IntegerOutOfRange);
    assert_eq!(innermost("[17,1,-1]"), found("negative integer"));
    assert_eq!(innermost("[17,1,-0]"), found("negative integer"));
    for float in ["1.0", "1E+2", "18446744073709551616.0", "-1e400"] {
        assert_eq!(innermost(&format!("[17,1,{float}]")), found("float"), "{float}");
    }
    for json in [r#"[16,1,{1:true},"t"]"#, r#"[16,1,{},"t",[],{1:2}]"#, r#"[16,1,{},"t",[],{"a":{true:1}}]"#] {
        assert!(matches!(innermost(json), DecodeError::Unexpected { expected: "a string key", .. }), "{json}");
    }
}

// Goal: a decode error is a value that says what went wrong and in which element, and its
// text is the one the ABORT carries.
#[test]
fn errors_are_typed_and_name_the_element() {
    let e = decode_json(r#"[16,1,{},5]"#).expect_err("number topic");
    assert_eq!(e.innermost(), &DecodeError::WrongType { expected: "a string", found: Found::Type("number") });
    assert!(matches!(e, DecodeError::InElement { message: Some("PUBLISH"), element: "Topic", .. }), "{e:?}");
    assert_eq!(e.to_string(), "PUBLISH.Topic: expected a string, found number");
    assert_eq!(decode_json("[16,1,{}]"), Err(DecodeError::MissingElement { message: "PUBLISH", element: "Topic" }));
    assert_eq!(decode_json("[999]"), Err(DecodeError::UnknownType(999)));
    let e = decode_json("[16,1,{},\"t\",[1,]]").expect_err("bad payload");
    assert_eq!(e, DecodeError::Unexpected { expected: "a value", found: Some(b']'), at: 16 });
}

#[test]
fn reader_protocol() {
    let mut r = Reader::new(br#" [ 1 , "s" , {"a":[1,{"b":null}]} , [true] , {"k":1} ] "#);
    r.begin().expect("begin");
    assert_eq!(r.more(), Ok(true));
    assert_eq!(r.more(), Ok(true), "more is idempotent");
    assert_eq!(r.uint(), Ok(1));
    assert_eq!(r.string().as_deref(), Ok("s"));
    let d = r.dict().expect("dict");
    assert_eq!(enc(&Value::Dict(d)), r#"{"a":[1,{"b":null}]}"#);
    assert!(r.more().expect("more"));
    let (range, kind) = r.skip().expect("skip");
    assert_eq!(kind, ValueKind::List);
    let (range2, kind2) = r.skip().expect("skip without more");
    assert_eq!(kind2, ValueKind::Dict);
    assert!(range.end < range2.start);
    assert_eq!(r.more(), Ok(false));
    assert_eq!(r.more(), Ok(false));
    assert_eq!(r.end(), Ok(()));

    let mut r = Reader::new(b"[1]");
    r.begin().expect("begin");
    assert!(r.more().expect("more"));
    assert!(r.end().is_err(), "end with an unread element");
    assert!(Reader::new(b"{}").begin().is_err());
    assert!(Reader::new(b"").begin().is_err());

    // Wrong types name what they found.
    let mut r = Reader::new(br#"[[], 5, {"a":1}, "x"]"#);
    r.begin().expect("begin");
    assert_eq!(r.dict().map_err(|e| e.to_string()), Err("expected a dict, found list".into()));
    let mut r = Reader::new(br#"[5]"#);
    r.begin().expect("begin");
    assert_eq!(r.string().map_err(|e| e.to_string()), Err("expected a string, found number".into()));
}

#[test]
fn dicts() {
    let mut r = Reader::new(b"[{}, { }, {\"a\":1,\"b\":2,\"a\":3}]");
    r.begin().expect("begin");
    assert_eq!(r.dict(), Ok(Dict::new()));
    assert_eq!(r.dict(), Ok(Dict::new()));
    let d = r.dict().expect("dict");
    // Last of duplicate keys wins.
    assert_eq!(d.get("a"), Some(&Value::UInt(3)));
    assert_eq!(d.len(), 2);
    // The same through simd-json (a dict beyond the hand-parse threshold), keys in order.
    let big = format!(r#"{{"z":"{}","a":1,"m":[1.5,-2,null],"a":{{"x":true}}}}"#, "p".repeat(HAND_PARSE_MAX_BYTES));
    let v = parse(big.as_bytes()).expect("big dict");
    let d = v.as_dict().expect("dict");
    assert_eq!(d.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["z", "a", "m"]);
    assert_eq!(d.get("a"), Some(&Value::Dict(Dict::new().with("x", true))));
    assert_eq!(enc(&v), big.replace(r#""a":1"#, r#""a":{"x":true}"#).replace(r#","a":{"x":true}}"#, "}"));
}

#[test]
fn simd_and_hand_parser_agree() {
    let docs = [
        r#"{"roles":{"subscriber":{},"publisher":{"features":{"x":true}}},"authid":"é\u00e9\n"}"#,
        r#"[1,-2,3.25,-0.5e-7,true,false,null,"\u0000AAEC","\ud83d\ude00",[],{},[[]],{"":""}]"#,
        r#"  [ 1 , { "a" : [ 2 , 3 ] } ]  "#,
        r#""a string with \"quotes\" and \\ backslashes \t""#,
        "12345678901234567",
        "-12345678901234567",
        "0.1",
        "1.7976931348623157e308",
        "5e-324",
    ];
    for doc in docs {
        parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{doc}: {e}"));
    }
}

#[test]
fn string_escaping_matches_python() {
    assert_eq!(enc(&Value::str("a\"b\\c/d")), r#""a\"b\\c/d""#);
    assert_eq!(enc(&Value::str("\u{8}\u{c}\n\r\t")), r#""\b\f\n\r\t""#);
    assert_eq!(enc(&Value::str("é€😀\u{2028}")), "\"é€😀\u{2028}\"");
    // Long runs go through the eight-byte fast path; escapes at every alignment.
    for n in 0..20 {
        let s = format!("{}\"{}\n", "x".repeat(n), "y".repeat(n));
        let want = format!("\"{}\\\"{}\\n\"", "x".repeat(n), "y".repeat(n));
        assert_eq!(enc(&Value::str(s.as_str())), want);
        assert_eq!(parse(want.as_bytes()), Ok(Value::str(s)));
    }
}

#[test]
fn control_characters_use_lowercase_u_escapes() {
    assert_eq!(enc(&Value::str("\u{0}\u{1}\u{1f}\u{7f}")), "\"\\u0000\\u0001\\u001f\u{7f}\"");
}

#[test]
fn floats_match_python_repr() {
    let cases: [(f64, &str); 18] = [
        (1.0, "1.0"),
        (-1.0, "-1.0"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (1.5, "1.5"),
        (123456789.125, "123456789.125"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e+16"),
        (1.5e16, "1.5e+16"),
        (1e22, "1e+22"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.2345e-7, "1.2345e-07"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (f64::NAN, "null"),
        (f64::NEG_INFINITY, "null"),
    ];
    for (f, want) in cases {
        assert_eq!(enc(&Value::Float(f)), want, "{f:?}");
        if f.is_finite() {
            assert_eq!(parse(want.as_bytes()), Ok(Value::Float(f)), "{want} round trip");
        }
    }
    assert_eq!(enc(&Value::Float(f64::INFINITY)), "null");
}

#[test]
fn encodes_compact() {
    let v = Value::List(vec![
        Value::UInt(0),
        Value::UInt(u64::MAX),
        Value::Int(i64::MIN),
        Value::Int(-1),
        Value::Null,
        Value::Bool(true),
        Value::Dict(Dict::new().with("k", Value::List(vec![])).with("e", Dict::new())),
    ]);
    assert_eq!(enc(&v), r#"[0,18446744073709551615,-9223372036854775808,-1,null,true,{"k":[],"e":{}}]"#);
    assert_eq!(parse(enc(&v).as_bytes()), Ok(v));
}

#[test]
fn writer_puts_commas_between_elements() {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.begin(6);
    w.uint(16);
    w.uint(1);
    w.dict(&Dict::new().with("acknowledge", true));
    w.string("com.x");
    w.raw(br#"[1], {"a":2}"#);
    w.end();
    assert_eq!(out, br#"[16,1,{"acknowledge":true},"com.x",[1], {"a":2}]"#);
}

#[test]
fn payload_passes_through_and_transcodes_back() {
    let msg = r#"[16,7,{},"t",["Alice",30,{"deep":[1.5,"\u0000AAEC"]}], {"role":"admin"}]"#;
    let m = decode_json(msg).expect("decode");
    let Message::Publish { payload, .. } = &m else { panic!("not a PUBLISH") };
    assert_eq!(payload.count, 2);
    assert_eq!(&payload.raw[..], br#"["Alice",30,{"deep":[1.5,"\u0000AAEC"]}], {"role":"admin"}"#);
    let values = payload.values().expect("values");
    assert_eq!(values[1], Value::Dict(Dict::new().with("role", "admin")));
    let rebuilt = Payload::from_values(Serializer::Json, values[0].as_list(), values[1].as_dict());
    assert_eq!(&rebuilt.raw[..], br#"["Alice",30,{"deep":[1.5,"\u0000AAEC"]}],{"role":"admin"}"#);
    let out = encode_to_vec(Serializer::Json, &m).expect("encode");
    assert_eq!(out, msg.as_bytes());
    // Payload shape is checked from the scanned kinds.
    assert!(decode_json(r#"[16,7,{},"t",5]"#).is_err());
    assert!(decode_json(r#"[16,7,{},"t",[],[]]"#).is_err());
    assert!(decode_json(r#"[16,7,{},"t",[],{},{}]"#).is_err());
    assert!(decode_json(r#"[16,7,{},"t",[1,]]"#).is_err());
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"[]{}\",:\\-+.0123456789eEtfnu \x00\x1f\x7f\x80\xc3\xed\xff/";
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        let byte = if rng.below(2) == 0 { INTERESTING[rng.below(INTERESTING.len())] } else { rng.next() as u8 };
        match rng.below(7) {
            0 if at < v.len() => v[at] = byte,
            1 => v.insert(at, byte),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 => v.truncate(at),
            4 if at < v.len() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                let chunk = v[at..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, chunk);
            }
            5 => {
                let escape: &[u8] =
                    [&b"\\ud83d"[..], b"\\ude00", b"\\u0000", b"\\\"", b"1e999", b"-0", b"[[[["][rng.below(7)];
                v.splice(at..at, escape.iter().copied());
            }
            _ => v.reverse(),
        }
    }
    v
}

/// Thousands of random and mutated messages through the full decoder: it must never
/// panic; whatever it accepts must re-encode, decode again to the same message, and
/// have a payload that decodes (what `skip` accepts, `decode_values` must accept).
#[test]
fn fuzz_decode_never_panics() {
    let corpus = vector_frames(Serializer::Json);
    let mut rng = Rng::XorShift64Star(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for round in 0..20_000 {
        let input = if round % 10 == 0 {
            let len = rng.below(64);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            {
                let pick = rng.below(corpus.len());
                mutate(&mut rng, &corpus[pick])
            }
        };
        let frame = Bytes::from(input);
        let result = std::panic::catch_unwind(|| decode(Serializer::Json, &frame));
        let Ok(result) = result else {
            panic!("decode panicked on {:?}", String::from_utf8_lossy(&frame));
        };
        let Ok(msg) = result else { continue };
        accepted += 1;
        // One re-encoding reaches a fixed point (not the same message: `1e999` decodes to
        // infinity, which is written as `null`).
        let again = encode_to_vec(Serializer::Json, &msg)
            .unwrap_or_else(|e| panic!("re-encode failed for {:?}: {e}", String::from_utf8_lossy(&frame)));
        let msg2 = decode(Serializer::Json, &Bytes::from(again.clone()))
            .unwrap_or_else(|e| panic!("re-encoding of {:?} does not decode: {e}", String::from_utf8_lossy(&frame)));
        assert_eq!(encode_to_vec(Serializer::Json, &msg2).as_ref(), Ok(&again));
        let payload = match &msg {
            Message::Publish { payload, .. }
            | Message::Event { payload, .. }
            | Message::Call { payload, .. }
            | Message::Result { payload, .. }
            | Message::Invocation { payload, .. }
            | Message::Yield { payload, .. }
            | Message::Error { payload, .. }
            | Message::Abort { payload, .. }
            | Message::EventReceived { payload, .. } => Some(payload),
            _ => None,
        };
        if let Some(p) = payload {
            p.values()
                .unwrap_or_else(|e| panic!("payload of {:?} does not decode: {e}", String::from_utf8_lossy(&frame)));
        }
    }
    assert!(accepted > 100, "mutations too destructive: only {accepted} accepted");
}

/// The scanner agrees with serde_json on what is JSON, for mutated JSON texts, and the
/// hand parser and simd-json build the same values from what it accepts.
#[test]
fn scanner_agrees_with_serde_json() {
    let mut corpus = vector_frames(Serializer::Json);
    // Documents beyond the hand-parse threshold, so mutations also reach simd-json.
    let joined = corpus.join(&b","[..]);
    corpus.push([&b"["[..], &joined, b"]"].concat());
    corpus.push([&b"{\"k\":["[..], &joined, b"],\"s\":\"\\u0000AAEC\\n\"}"].concat());
    let mut rng = Rng::XorShift64Star(0xD1B5_4A32_D192_ED03);
    let (mut big, mut big_ok) = (0, 0);
    for _ in 0..20_000 {
        let input = {
            let pick = rng.below(corpus.len());
            mutate(&mut rng, &corpus[pick])
        };
        let ours = std::panic::catch_unwind(|| scan(&input)).expect("scanner panicked");
        let theirs = serde_json::from_slice::<serde_json::Value>(&input);
        // serde_json refuses floats that overflow to infinity (JSON's grammar allows them)
        // and stops there, so it says nothing about the rest of the input.
        if let Err(e) = &theirs
            && e.to_string().contains("number out of range")
        {
            continue;
        }
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "{:?}: ours {ours:?}, serde_json {theirs:?}",
            String::from_utf8_lossy(&input)
        );
        big += usize::from(input.len() > HAND_PARSE_MAX_BYTES);
        if ours.is_ok() {
            parse(&input)
                .unwrap_or_else(|e| panic!("{:?} scans but does not build: {e}", String::from_utf8_lossy(&input)));
            big_ok += usize::from(input.len() > HAND_PARSE_MAX_BYTES);
        }
    }
    assert!(big > 100 && big_ok > 10, "too few large documents: {big} mutated, {big_ok} valid");
}

// Goal: a message's Options cannot cost more memory than `limits::OPTIONS_DECODED_MAX_BYTES`,
// and a dict over the size cap is refused before anything is built. Method: the shared
// checks of `fuzz::options_bounds_hold`, with a counting allocator, at and past each bound.
#[test]
fn options_bounds_hold() {
    crate::proto::wire::fuzz::options_bounds_hold(Serializer::Json);
}
