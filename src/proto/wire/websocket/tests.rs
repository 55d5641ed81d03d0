//! Tests of the WebSocket frame codec: every framing rule with its close code, partial
//! input at every byte boundary, the RFC's examples, the size bounds, and a no-panic fuzz of
//! the decoders and the HTTP head parsers together.

use bytes::{Bytes, BytesMut};

use super::frame::unmask_at;
use super::*;
use crate::limits;
use crate::proto::wire::codec::Serializer;
use crate::proto::wire::http::tests::{KEY, parse, upgrade_request};
use crate::proto::wire::ids::IdGen;

/// RFC 6455 §5.7 example masking key.
const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
const WAMP: AcceptOptions<'static> = AcceptOptions { serializers: &Serializer::ALL, allow_no_protocol: false };

/// One frame, masked with `mask` if given.
fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    match mask {
        Some(key) => write_masked_frame(opcode, fin, payload, key, &mut out),
        None => {
            let mut header = [0u8; HEADER_MAX_BYTES];
            let n = encode_header(opcode, fin, payload.len(), &mut header);
            out.extend_from_slice(&header[..n]);
            out.extend_from_slice(payload);
        }
    }
    out
}

/// A masked frame with a raw first octet and a chosen (possibly non-minimal) length
/// encoding: `ext` is 0, 2 or 8 extra length bytes.
fn raw_frame(b0: u8, payload: &[u8], ext: usize, mask: [u8; 4]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![b0];
    match ext {
        0 => out.push(0x80 | len as u8),
        2 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask);
    out
}

fn text(data: &str) -> Event {
    Event::Message { binary: false, data: Bytes::copy_from_slice(data.as_bytes()) }
}

fn binary(data: &[u8]) -> Event {
    Event::Message { binary: true, data: Bytes::copy_from_slice(data) }
}

/// Feeds `wire` in chunks sized by `next_chunk`, decoding after each; returns the events
/// and the error that ended decoding, if any.
fn decode_chunked(
    role: Role,
    max: usize,
    wire: &[u8],
    mut next_chunk: impl FnMut() -> usize,
) -> (Vec<Event>, Option<Error>) {
    let mut dec = Decoder::new(role, max);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let end = (pos + next_chunk().max(1)).min(wire.len());
        buf.extend_from_slice(&wire[pos..end]);
        pos = end;
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
    }
    (events, None)
}

fn decode_whole(role: Role, max: usize, wire: &[u8]) -> (Vec<Event>, Option<Error>) {
    decode_chunked(role, max, wire, || wire.len())
}

/// A client→server stream touching every decoder path that succeeds.
fn sample_stream(mask: Option<[u8; 4]>) -> (Vec<u8>, Vec<Event>) {
    let kosme = "κόσμε".as_bytes(); // 11 bytes, multi-byte characters
    let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    let mut wire = Vec::new();
    let mut add = |opcode, fin, payload: &[u8]| wire.extend(frame(opcode, fin, payload, mask));
    add(OpCode::Text, true, b"Hello");
    add(OpCode::Binary, true, &big[..300]);
    add(OpCode::Binary, true, &big);
    // Fragments cut through characters, with control frames between them.
    add(OpCode::Text, false, &kosme[..1]);
    add(OpCode::Ping, true, b"ping!");
    add(OpCode::Continuation, false, &kosme[1..6]);
    add(OpCode::Pong, true, b"");
    add(OpCode::Continuation, false, &[]);
    add(OpCode::Continuation, true, &kosme[6..]);
    add(OpCode::Text, true, b"");
    add(OpCode::Binary, false, &[1, 2]);
    add(OpCode::Continuation, false, &[]);
    add(OpCode::Continuation, true, &[3]);
    add(OpCode::Close, true, &close_payload(1000, "bye"));
    let events = vec![
        text("Hello"),
        binary(&big[..300]),
        binary(&big),
        Event::Ping(Bytes::from_static(b"ping!")),
        Event::Pong(Bytes::new()),
        text("κόσμε"),
        text(""),
        binary(&[1, 2, 3]),
        Event::Close { code: Some(1000), reason: "bye".into() },
    ];
    (wire, events)
}

// Goal: partial input at every byte boundary yields exactly what whole input yields.
// Method: the sample stream, whole, byte by byte, and in 100 seeded random chunkings,
// for both roles.
#[test]
fn decode_partial_input_matches_whole() {
    for (role, mask) in [(Role::Server, Some(MASK)), (Role::Client, None)] {
        let (wire, want) = sample_stream(mask);
        let want = (want, None);
        assert_eq!(decode_whole(role, 1 << 20, &wire), want);
        assert_eq!(decode_chunked(role, 1 << 20, &wire, || 1), want);
        let mut rng = IdGen::new(42);
        for _ in 0..100 {
            let max_chunk = [3, 17, 200, 5000][rng.below(4)];
            assert_eq!(decode_chunked(role, 1 << 20, &wire, || rng.below(max_chunk) + 1), want);
        }
    }
}

// Goal: RFC 6455 §5.7's example frames decode as the RFC says, and our encoders
// produce them byte for byte.
#[test]
fn rfc_examples() {
    let unmasked_hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let masked_hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    let mut out = Vec::new();
    write_frame(OpCode::Text, b"Hello", &mut out);
    assert_eq!(out, unmasked_hello);
    out.clear();
    write_masked_frame(OpCode::Text, true, b"Hello", MASK, &mut out);
    assert_eq!(out, masked_hello);
    assert_eq!(decode_whole(Role::Client, 1024, &unmasked_hello), (vec![text("Hello")], None));
    assert_eq!(decode_whole(Role::Server, 1024, &masked_hello), (vec![text("Hello")], None));
    assert_eq!(decode_whole(Role::Client, 1024, &fragmented), (vec![text("Hello")], None));
    let mut header = [0u8; HEADER_MAX_BYTES];
    assert_eq!(encode_header(OpCode::Binary, true, 256, &mut header), 4);
    assert_eq!(header[..4], [0x82, 0x7E, 0x01, 0x00]);
    assert_eq!(encode_header(OpCode::Binary, true, 65536, &mut header), 10);
    assert_eq!(header, [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
}

// Goal: header length boundaries and the fin / mask bits.
#[test]
fn encode_header_boundaries() {
    let mut h = [0u8; HEADER_MAX_BYTES];
    for (len, n, second) in [(0, 2, 0), (125, 2, 125), (126, 4, 126), (65535, 4, 126), (65536, 10, 127)] {
        assert_eq!(encode_header(OpCode::Text, false, len, &mut h), n, "len {len}");
        assert_eq!((h[0], h[1]), (0x01, second));
    }
    let mut m = [0u8; MASKED_HEADER_MAX_BYTES];
    for (len, n) in [(5, 6), (300, 8), (70_000, 14)] {
        assert_eq!(encode_masked_header(OpCode::Binary, true, len, MASK, &mut m), n);
        assert_eq!((m[0], m[1] & 0x80), (0x82, 0x80));
        assert_eq!(m[n - 4..n], MASK);
    }
    assert_eq!(OpCode::for_serializer(Serializer::Json), OpCode::Text);
    assert_eq!(OpCode::for_serializer(Serializer::Cbor), OpCode::Binary);
}

#[test]
#[should_panic(expected = "control frame")]
fn encode_header_refuses_long_control_frame() {
    let _ = encode_header(OpCode::Ping, true, 126, &mut [0u8; HEADER_MAX_BYTES]);
}

/// Decode `wire` whole and by single bytes; both must stop with an error of `code`
/// and `reason`, after the same events.
fn assert_fails(role: Role, max: usize, wire: &[u8], code: u16, reason: &str) {
    let whole = decode_whole(role, max, wire);
    let bytewise = decode_chunked(role, max, wire, || 1);
    assert_eq!(whole, bytewise, "{reason}");
    let Some(e) = whole.1 else { panic!("expected {reason}, decoded {:?}", whole.0) };
    assert_eq!((e.code, e.reason), (code, reason));
}

// Goal: every framing rule the decoder enforces, each with its close code.
#[test]
fn decode_protocol_errors() {
    let s = Role::Server;
    let m = Some(MASK);
    let p = close_code::PROTOCOL_ERROR;
    assert_fails(s, 1024, &frame(OpCode::Text, true, b"Hello", None), p, "client frame is not masked");
    assert_fails(Role::Client, 1024, &frame(OpCode::Text, true, b"Hello", m), p, "server frame is masked");
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        let reason = "reserved bits set without a negotiated extension";
        assert_fails(s, 1024, &raw_frame(0x81 | rsv, b"x", 0, MASK), p, reason);
        assert_fails(s, 1024, &raw_frame(0x89 | rsv, b"x", 0, MASK), p, reason);
    }
    for op in (0x3..=0x7).chain(0xB..=0xF) {
        assert_fails(s, 1024, &raw_frame(0x80 | op, b"x", 0, MASK), p, "reserved opcode");
    }
    for op in [0x8, 0x9, 0xA] {
        assert_fails(s, 1024, &raw_frame(op, b"", 0, MASK), p, "fragmented control frame");
        let long = raw_frame(0x80 | op, &[b'a'; 126], 2, MASK);
        assert_fails(s, 1024, &long, p, "control frame payload over 125 bytes");
        // 126 announced in the 7-bit field is already too long: fail on two octets.
        assert_fails(s, 1024, &long[..2], p, "control frame payload over 125 bytes");
    }
    let cont = frame(OpCode::Continuation, true, b"x", m);
    assert_fails(s, 1024, &cont, p, "continuation frame without a message");
    let mut after_message = frame(OpCode::Text, true, b"done", m);
    after_message.extend(&cont);
    assert_fails(s, 1024, &after_message, p, "continuation frame without a message");
    for second in [OpCode::Text, OpCode::Binary] {
        let mut wire = frame(OpCode::Binary, false, b"a", m);
        wire.extend(frame(OpCode::Ping, true, b"", m));
        wire.extend(frame(second, true, b"b", m));
        assert_fails(s, 1024, &wire, p, "new data frame inside a fragmented message");
    }
    let mut msb = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1];
    msb.extend_from_slice(&MASK);
    assert_fails(s, 1024, &msb, p, "64-bit payload length with the most significant bit set");
}

// Goal: only the close codes RFC 6455 §7.4 allows on the wire are accepted; a 1-byte
// payload and a non-UTF-8 reason are refused.
#[test]
fn decode_close_frames() {
    let close = |payload: &[u8]| frame(OpCode::Close, true, payload, Some(MASK));
    for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
        let wire = close(&close_payload(code, "why"));
        let want = vec![Event::Close { code: Some(code), reason: "why".into() }];
        assert_eq!(decode_whole(Role::Server, 1024, &wire), (want, None), "code {code}");
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        assert_fails(Role::Server, 1024, &close(&code.to_be_bytes()), 1002, "invalid close code");
    }
    let empty = (vec![Event::Close { code: None, reason: String::new() }], None);
    assert_eq!(decode_whole(Role::Server, 1024, &close(&[])), empty);
    assert_fails(Role::Server, 1024, &close(&[0x03]), 1002, "close payload of one byte");
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.extend_from_slice(&[0xCE, 0xBA, 0xED, 0xA0, 0x80]);
    assert_fails(Role::Server, 1024, &close(&bad_reason), 1007, "invalid UTF-8 in close reason");
}

// Goal: after a Close nothing more is decoded; after an error the same error repeats.
#[test]
fn decode_after_close_and_after_error() {
    let mut wire = frame(OpCode::Close, true, &close_payload(1001, ""), Some(MASK));
    wire.extend(frame(OpCode::Text, true, b"late", Some(MASK)));
    let mut buf = BytesMut::from(&wire[..]);
    let mut dec = Decoder::new(Role::Server, 1024);
    assert_eq!(dec.decode(&mut buf), Ok(Some(Event::Close { code: Some(1001), reason: String::new() })));
    assert!(dec.is_closed());
    assert_eq!(dec.decode(&mut buf), Ok(None));

    let mut buf = BytesMut::from(&[0x81u8, 0x00][..]);
    let mut dec = Decoder::new(Role::Server, 1024);
    let err = dec.decode(&mut buf).expect_err("unmasked");
    buf.extend_from_slice(&frame(OpCode::Text, true, b"ok", Some(MASK)));
    assert_eq!(dec.decode(&mut buf), Err(err));
}

// Goal: the size and fragment-count bounds hold exactly at their limits, and an
// oversized frame fails from its header, before any payload arrives.
#[test]
fn decode_size_limits() {
    let big = close_code::TOO_BIG;
    let at_limit = frame(OpCode::Binary, true, &[7; 1000], Some(MASK));
    assert_eq!(decode_whole(Role::Server, 1000, &at_limit), (vec![binary(&[7; 1000])], None));
    let over = frame(OpCode::Binary, true, &[7; 1001], Some(MASK));
    assert_fails(Role::Server, 1000, &over[..8], big, "message too big");
    let mut huge = vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    huge.extend_from_slice(&MASK);
    assert_fails(Role::Server, 1000, &huge, big, "message too big");

    let mut fragmented = frame(OpCode::Text, false, &[b'a'; 600], Some(MASK));
    fragmented.extend(frame(OpCode::Continuation, true, &[b'a'; 400], Some(MASK)));
    assert_eq!(decode_whole(Role::Server, 1000, &fragmented).0.len(), 1);
    let mut too_much = frame(OpCode::Text, false, &[b'a'; 600], Some(MASK));
    too_much.extend(&frame(OpCode::Continuation, true, &[b'a'; 401], Some(MASK))[..8]);
    assert_fails(Role::Server, 1000, &too_much, big, "message too big");

    // WS_FRAGMENTS_MAX frames form one message; one more fails.
    let max = limits::WS_FRAGMENTS_MAX;
    let piece = frame(OpCode::Continuation, false, b"a", Some(MASK));
    let mut wire = frame(OpCode::Binary, false, b"a", Some(MASK));
    for _ in 0..max - 2 {
        wire.extend(&piece);
    }
    let mut exact = wire.clone();
    exact.extend(frame(OpCode::Continuation, true, b"a", Some(MASK)));
    assert_eq!(decode_whole(Role::Server, 2 * max, &exact), (vec![binary(&vec![b'a'; max])], None));
    wire.extend(&piece);
    wire.extend(frame(OpCode::Continuation, true, b"a", Some(MASK)));
    let (events, err) = decode_whole(Role::Server, 2 * max, &wire);
    assert!(events.is_empty());
    assert_eq!(err, Some(Error { code: big, reason: "too many fragments in one message" }));
}

// Goal: non-minimal length encodings are accepted (RFC 6455 only constrains senders).
#[test]
fn decode_non_minimal_lengths() {
    for ext in [0, 2, 8] {
        let wire = raw_frame(0x81, b"Hello", ext, MASK);
        assert_eq!(decode_whole(Role::Server, 1024, &wire), (vec![text("Hello")], None), "ext {ext}");
    }
}

// Goal: UTF-8 is checked incrementally and fails fast (Autobahn 6.x): an invalid byte
// fails before its frame (or message) is complete; a character cut by a fragment
// boundary waits; a message ending inside a character fails.
#[test]
fn decode_utf8_fail_fast() {
    let m = Some(MASK);
    let inv = close_code::INVALID_PAYLOAD;
    let reason = "invalid UTF-8 in text message";
    // Autobahn 6.3.1: a surrogate in a single frame.
    let surrogate = [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65];
    assert_fails(Role::Server, 1024, &frame(OpCode::Text, true, &surrogate, m), inv, reason);
    // Only the first 8 payload bytes of a 15-byte frame arrive: fails already at 0xED 0xA0.
    let partial = frame(OpCode::Text, true, &surrogate, m);
    assert_fails(Role::Server, 1024, &partial[..6 + 13], inv, reason);
    // An invalid first fragment of an unfinished message fails at once.
    assert_fails(Role::Server, 1024, &frame(OpCode::Text, false, &[b'a', 0xFF], m), inv, reason);
    // Autobahn 6.4.1: valid fragment, then one holding 0xF4 0x90 (> U+10FFFF).
    let mut wire = frame(OpCode::Text, false, "κόσμε".as_bytes(), m);
    wire.extend(frame(OpCode::Continuation, false, &[0xF4, 0x90, 0x80, 0x80], m));
    assert_fails(Role::Server, 1024, &wire, inv, reason);
    // A character split over fragments is fine...
    let mut wire = frame(OpCode::Text, false, &[0xF0], m);
    wire.extend(frame(OpCode::Continuation, false, &[0x9F, 0x98], m));
    wire.extend(frame(OpCode::Continuation, true, &[0x80], m));
    assert_eq!(decode_whole(Role::Server, 1024, &wire), (vec![text("😀")], None));
    // ...and waits without error while incomplete...
    let (events, err) = decode_whole(Role::Server, 1024, &frame(OpCode::Text, false, &[0xF0, 0x9F], m));
    assert_eq!((events.len(), err), (0, None));
    // ...but a message may not end inside one.
    assert_fails(Role::Server, 1024, &frame(OpCode::Text, true, &[b'a', 0xF0, 0x9F], m), inv, reason);
    let mut wire = frame(OpCode::Text, false, b"a", m);
    wire.extend(frame(OpCode::Continuation, true, &[0xE2, 0x82], m));
    assert_fails(Role::Server, 1024, &wire, inv, reason);
    // Binary messages are not checked.
    let (events, err) = decode_whole(Role::Server, 1024, &frame(OpCode::Binary, true, &[0xFF], m));
    assert_eq!((events, err), (vec![binary(&[0xFF])], None));
}

// Goal: word-at-a-time unmasking equals the byte-by-byte definition for every length
// and starting offset, and payloads are unmasked in place (no copy).
#[test]
fn unmask_matches_definition() {
    let data: Vec<u8> = (0..100u8).collect();
    for len in 0..data.len() {
        for offset in 0..4 {
            let mut fast = data[..len].to_vec();
            unmask_at(&mut fast, MASK, offset);
            let slow: Vec<u8> = data[..len].iter().enumerate().map(|(i, b)| b ^ MASK[(i + offset) % 4]).collect();
            assert_eq!(fast, slow, "len {len} offset {offset}");
        }
    }
    let mut buf = BytesMut::from(&frame(OpCode::Binary, true, &data, Some(MASK))[..]);
    let payload_at = buf.as_ptr() as usize + 6; // 2 octets + mask key
    let Ok(Some(Event::Message { data: got, .. })) = Decoder::new(Role::Server, 1024).decode(&mut buf) else {
        panic!("a message")
    };
    assert_eq!((got.as_ptr() as usize, &got[..]), (payload_at, &data[..]));
}

// Goal: a close reason is cut to fit a control frame at a character boundary, and the
// result decodes.
#[test]
fn close_payload_truncates_at_char_boundary() {
    let reason = "é".repeat(100); // 200 bytes
    let payload = close_payload(1009, &reason);
    assert_eq!(payload.len(), 2 + 122);
    let mut wire = Vec::new();
    write_close(1009, &reason, &mut wire);
    let want = Event::Close { code: Some(1009), reason: "é".repeat(61) };
    assert_eq!(decode_whole(Role::Client, 1024, &wire), (vec![want], None));
}

// Goal: no input makes either decoder, or the HTTP parsers, panic. Method: seeded random
// bytes, and random mutations of valid streams and heads, fed in random chunks.
#[test]
fn fuzz_no_panic() {
    let mut rng = IdGen::new(0x5EED);
    let (server_wire, _) = sample_stream(Some(MASK));
    let (client_wire, _) = sample_stream(None);
    let head = upgrade_request("Sec-WebSocket-Protocol: wamp.2.json\r\n").into_bytes();
    let response = accept(&parse(&String::from_utf8_lossy(&head)), &WAMP).map(|a| a.response()).unwrap_or_default();
    for round in 0..6_000 {
        let mut bytes: Vec<u8> = match round % 3 {
            0 => (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect(),
            1 => server_wire[..rng.below(400)].to_vec(),
            _ => client_wire[..rng.below(400)].to_vec(),
        };
        for _ in 0..rng.below(4) {
            if !bytes.is_empty() {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
        }
        for role in [Role::Server, Role::Client] {
            let _ = decode_chunked(role, 256, &bytes, || rng.below(16) + 1);
        }
        let mut text = if round % 2 == 0 { head.clone() } else { response.clone() };
        for _ in 0..rng.below(4) + 1 {
            let i = rng.below(text.len());
            text[i] = rng.next_u64() as u8;
        }
        for input in [&text[..], &bytes[..]] {
            if let Ok(Some((req, _))) = parse_request(input) {
                let _ = accept(&req, &WAMP);
            }
            if let Ok(Some((resp, _))) = parse_response(input) {
                let _ = validate_response(&resp, KEY, &Serializer::ALL);
            }
        }
    }
}
