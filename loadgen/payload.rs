//! What loadgen puts on the wire and reads back, on the hot path.
//!
//! Every measured message carries a [`Probe`] as its `Arguments` list:
//! `[source, topic, seq, gseq, t_ns, "xxxx…"]` — who sent it, on which topic, its number
//! in its flow and in its source, its intended send time on the run's clock, and padding
//! that brings the encoded list to the requested payload size. The router passes the list
//! through verbatim (shardbar) or re-encodes it (Crossbar); either way it arrives as a
//! list in the receiver's serializer.
//!
//! Hot messages (PUBLISH, CALL, YIELD) are written with the serializers' own `Writer`s
//! from `shardbar::proto::wire`, straight into the connection's buffer; hot arrivals
//! (EVENT, RESULT, INVOCATION) are scanned with their `Reader`s, which skip the `Details`
//! dict and locate the payload without allocating. Everything else goes through the full
//! `decode`/`encode` of the message model.

use std::ops::Range;

use shardbar::proto::wire::message::{Reader, Writer, code};
use shardbar::proto::wire::{DecodeError, Dict, Serializer, cbor, json, msgpack};

/// Longest padding string: payloads up to 64 KiB.
pub const PAYLOAD_MAX_BYTES: usize = 64 * 1024;

static PAD: [u8; PAYLOAD_MAX_BYTES] = [b'x'; PAYLOAD_MAX_BYTES];
static EMPTY: Dict = Dict::new();

/// The measurement fields carried by every measured message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// Publisher or caller index.
    pub source: u32,
    /// Topic index (0 for calls).
    pub topic: u32,
    /// Number in the flow (publisher × topic, or caller), from 1.
    pub seq: u64,
    /// Number across all of the source's messages, from 1 (cross-topic order check).
    pub gseq: u64,
    /// Intended send time, ns on the run's clock.
    pub t_ns: u64,
}

fn with_writer<T>(ser: Serializer, out: &mut Vec<u8>, f: impl FnOnce(&mut dyn Writer) -> T) -> T {
    match ser {
        Serializer::Json => f(&mut json::Writer::new(out)),
        Serializer::MsgPack => f(&mut msgpack::Writer::new(out)),
        Serializer::Cbor => f(&mut cbor::Writer::new(out)),
    }
}

/// Bytes a string header grows by when the string is `len` long instead of empty.
fn str_header_growth(ser: Serializer, len: usize) -> usize {
    match ser {
        Serializer::Json => 0,
        Serializer::MsgPack => match len {
            0..32 => 0,
            32..256 => 1,
            256..65_536 => 2,
            _ => 4,
        },
        Serializer::Cbor => match len {
            0..24 => 0,
            24..256 => 1,
            256..65_536 => 2,
            _ => 4,
        },
    }
}

/// Padding length that brings a list of `base` bytes (with an empty pad string) as close
/// to `size` as possible without exceeding it.
fn pad_len(ser: Serializer, base: usize, size: usize) -> usize {
    let extra = size.saturating_sub(base).min(PAYLOAD_MAX_BYTES);
    (0..=extra).rev().find(|&p| p + str_header_growth(ser, p) <= extra).unwrap_or(0)
}

/// Append the probe as an `Arguments` list of about `size` bytes (exactly, when `size`
/// is at least the unpadded list).
pub fn encode_probe(ser: Serializer, p: &Probe, size: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let write = |out: &mut Vec<u8>, pad: usize| {
        with_writer(ser, out, |w| {
            w.begin(6);
            w.uint(u64::from(p.source));
            w.uint(u64::from(p.topic));
            w.uint(p.seq);
            w.uint(p.gseq);
            w.uint(p.t_ns);
            // PAD is ASCII, so any prefix is valid UTF-8.
            w.string(std::str::from_utf8(&PAD[..pad]).unwrap_or(""));
            w.end();
        })
    };
    write(out, 0);
    let base = out.len() - start;
    let pad = pad_len(ser, base, size);
    if pad > 0 {
        out.truncate(start);
        write(out, pad);
    }
}

/// Read the probe from an `Arguments` list; `None` if it is not one of ours.
pub fn decode_probe(ser: Serializer, args: &[u8]) -> Option<Probe> {
    let fast = match ser {
        Serializer::MsgPack => mp::probe(args),
        Serializer::Json => js::probe(args),
        Serializer::Cbor => None,
    };
    if fast.is_some() {
        return fast;
    }
    fn read<R: Reader>(r: &mut R) -> Result<Probe, DecodeError> {
        r.begin()?;
        let source = u32::try_from(r.uint()?).map_err(|_| DecodeError::new("source"))?;
        let topic = u32::try_from(r.uint()?).map_err(|_| DecodeError::new("topic"))?;
        Ok(Probe { source, topic, seq: r.uint()?, gseq: r.uint()?, t_ns: r.uint()? })
    }
    match ser {
        Serializer::Json => read(&mut json::Reader::new(args)),
        Serializer::MsgPack => read(&mut msgpack::Reader::new(args)),
        Serializer::Cbor => read(&mut cbor::Reader::new(args)),
    }
    .ok()
}

/// A received message, located without building it.
///
/// For EVENT and RESULT, `args` *starts* at the payload and runs to the end of the
/// message: only the probe at its front is read, so the payload is neither skipped nor
/// UTF-8-checked (that skip was half of loadgen's CPU per event). For INVOCATION it is
/// exactly the `Arguments` element, because the callee echoes it back verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scan {
    Event {
        args: Option<Range<usize>>,
    },
    Result {
        request: u64,
        args: Option<Range<usize>>,
    },
    Invocation {
        request: u64,
        args: Option<Range<usize>>,
    },
    /// Any other message: decode it in full.
    Other(u64),
}

/// Where the element after one ending at `end` starts: at `end` in the binary formats,
/// after the separating comma (and whitespace) in JSON.
fn next_element(ser: Serializer, frame: &[u8], end: usize) -> Option<usize> {
    if ser != Serializer::Json {
        return (end < frame.len()).then_some(end);
    }
    let ws = |p: usize| (p..frame.len()).find(|&i| !matches!(frame[i], b' ' | b'\t' | b'\n' | b'\r'));
    let comma = ws(end)?;
    if frame[comma] != b',' {
        return None;
    }
    ws(comma + 1)
}

/// Locate the parts of a hot message; other messages only report their code.
pub fn scan(ser: Serializer, frame: &[u8]) -> Result<Scan, DecodeError> {
    fn exact<R: Reader>(r: &mut R) -> Result<Option<Range<usize>>, DecodeError> {
        if r.more()? { Ok(Some(r.skip()?.0)) } else { Ok(None) }
    }
    fn go<R: Reader>(r: &mut R, ser: Serializer, frame: &[u8]) -> Result<Scan, DecodeError> {
        // The payload from its first byte to the end of the message, not validated.
        let rest = |r: &mut R, details_end: usize| -> Result<Option<Range<usize>>, DecodeError> {
            if !r.more()? {
                return Ok(None);
            }
            Ok(next_element(ser, frame, details_end).map(|start| start..frame.len()))
        };
        r.begin()?;
        let c = r.uint()?;
        Ok(match c {
            code::EVENT => {
                r.uint()?; // subscription
                r.uint()?; // publication
                let (details, _) = r.skip()?;
                Scan::Event { args: rest(r, details.end)? }
            }
            code::RESULT => {
                let request = r.uint()?;
                let (details, _) = r.skip()?;
                Scan::Result { request, args: rest(r, details.end)? }
            }
            code::INVOCATION => {
                let request = r.uint()?;
                r.uint()?; // registration
                r.skip()?;
                Scan::Invocation { request, args: exact(r)? }
            }
            other => Scan::Other(other),
        })
    }
    let fast = match ser {
        Serializer::MsgPack => mp::scan(frame),
        Serializer::Json => js::scan(frame),
        Serializer::Cbor => None,
    };
    if let Some(scan) = fast {
        return Ok(scan);
    }
    match ser {
        Serializer::Json => go(&mut json::Reader::new(frame), ser, frame),
        Serializer::MsgPack => go(&mut msgpack::Reader::new(frame), ser, frame),
        Serializer::Cbor => go(&mut cbor::Reader::new(frame), ser, frame),
    }
}

/// MessagePack fast paths for the two things every delivered message needs: the EVENT or
/// RESULT envelope with empty details, and the probe's leading integers. rmp's generic
/// readers behind `msgpack::Reader` cost about a third of loadgen's CPU per event; these
/// read the few markers involved directly and give up (`None`) on anything else, which
/// then takes the general `Reader` path.
mod mp {
    use super::{Probe, Scan};
    use shardbar::proto::wire::message::code;

    fn take<const N: usize>(b: &[u8], p: &mut usize) -> Option<[u8; N]> {
        let v: [u8; N] = b.get(*p..*p + N)?.try_into().ok()?;
        *p += N;
        Some(v)
    }

    pub fn uint(b: &[u8], p: &mut usize) -> Option<u64> {
        let m = *b.get(*p)?;
        *p += 1;
        match m {
            0x00..=0x7f => Some(u64::from(m)),
            0xcc => take::<1>(b, p).map(|v| u64::from(v[0])),
            0xcd => take::<2>(b, p).map(|v| u64::from(u16::from_be_bytes(v))),
            0xce => take::<4>(b, p).map(|v| u64::from(u32::from_be_bytes(v))),
            0xcf => take::<8>(b, p).map(u64::from_be_bytes),
            _ => None,
        }
    }

    fn array_len(b: &[u8], p: &mut usize) -> Option<usize> {
        let m = *b.get(*p)?;
        *p += 1;
        match m {
            0x90..=0x9f => Some(usize::from(m & 0x0f)),
            0xdc => take::<2>(b, p).map(|v| usize::from(u16::from_be_bytes(v))),
            0xdd => take::<4>(b, p).map(|v| u32::from_be_bytes(v) as usize),
            _ => None,
        }
    }

    pub fn probe(b: &[u8]) -> Option<Probe> {
        let mut p = 0;
        if array_len(b, &mut p)? < 5 {
            return None;
        }
        let source = u32::try_from(uint(b, &mut p)?).ok()?;
        let topic = u32::try_from(uint(b, &mut p)?).ok()?;
        Some(Probe { source, topic, seq: uint(b, &mut p)?, gseq: uint(b, &mut p)?, t_ns: uint(b, &mut p)? })
    }

    /// EVENT `[36, sub, pub, {}, args…]` or RESULT `[50, req, {}, args…]` with empty details.
    pub fn scan(b: &[u8]) -> Option<Scan> {
        let mut p = 0;
        let n = array_len(b, &mut p)?;
        let args = |p: usize, min: usize| (n > min && b.get(p - 1) == Some(&0x80)).then_some(p..b.len());
        match uint(b, &mut p)? {
            code::EVENT => {
                uint(b, &mut p)?;
                uint(b, &mut p)?;
                p += 1; // details: must be the empty map, checked by `args`
                if n == 4 && b.get(p - 1) == Some(&0x80) {
                    return Some(Scan::Event { args: None });
                }
                Some(Scan::Event { args: Some(args(p, 4)?) })
            }
            code::RESULT => {
                let request = uint(b, &mut p)?;
                p += 1;
                if n == 3 && b.get(p - 1) == Some(&0x80) {
                    return Some(Scan::Result { request, args: None });
                }
                Some(Scan::Result { request, args: Some(args(p, 3)?) })
            }
            _ => None,
        }
    }
}

/// JSON fast paths, as `mp` for MessagePack: compact `[36,sub,pub,{},[…]…]` and
/// `[50,req,{},[…]…]` (what shardbar sends), and the probe's leading integers. Anything
/// else (whitespace, non-empty details) declines to the general `Reader`.
mod js {
    use super::{Probe, Scan};
    use shardbar::proto::wire::message::code;

    /// Digits at `p` as a u64 (no sign, no fraction, at most 19 digits).
    pub fn uint(b: &[u8], p: &mut usize) -> Option<u64> {
        let start = *p;
        let mut v: u64 = 0;
        while let Some(&d) = b.get(*p) {
            if !d.is_ascii_digit() || *p - start == 19 {
                break;
            }
            v = v * 10 + u64::from(d - b'0');
            *p += 1;
        }
        let next = b.get(*p).copied();
        (*p > start && matches!(next, Some(b',' | b']'))).then_some(v)
    }

    fn byte(b: &[u8], p: &mut usize, want: u8) -> Option<()> {
        (b.get(*p) == Some(&want)).then(|| *p += 1)
    }

    pub fn probe(b: &[u8]) -> Option<Probe> {
        let mut p = 0;
        byte(b, &mut p, b'[')?;
        let mut v = [0u64; 5];
        for (i, slot) in v.iter_mut().enumerate() {
            if i > 0 {
                byte(b, &mut p, b',')?;
            }
            *slot = uint(b, &mut p)?;
        }
        Some(Probe {
            source: u32::try_from(v[0]).ok()?,
            topic: u32::try_from(v[1]).ok()?,
            seq: v[2],
            gseq: v[3],
            t_ns: v[4],
        })
    }

    pub fn scan(b: &[u8]) -> Option<Scan> {
        let mut p = 0;
        byte(b, &mut p, b'[')?;
        let c = uint(b, &mut p)?;
        let ids = match c {
            code::EVENT => 2,
            code::RESULT => 1,
            _ => return None,
        };
        let mut first = 0;
        for i in 0..ids {
            byte(b, &mut p, b',')?;
            let v = uint(b, &mut p)?;
            if i == 0 {
                first = v;
            }
        }
        byte(b, &mut p, b',')?;
        byte(b, &mut p, b'{')?;
        byte(b, &mut p, b'}')?;
        let args = match b.get(p) {
            Some(b']') => None,
            Some(b',') => Some(p + 1..b.len()),
            _ => return None,
        };
        Some(if c == code::EVENT { Scan::Event { args } } else { Scan::Result { request: first, args } })
    }
}

/// `[PUBLISH, Request, {}, Topic, Arguments]`
pub fn write_publish(ser: Serializer, request: u64, topic: &str, args: &[u8], out: &mut Vec<u8>) {
    with_writer(ser, out, |w| {
        w.begin(5);
        w.uint(code::PUBLISH);
        w.uint(request);
        w.dict(&EMPTY);
        w.string(topic);
        w.raw(args);
        w.end();
    });
}

/// `[CALL, Request, {}, Procedure, Arguments]`
pub fn write_call(ser: Serializer, request: u64, procedure: &str, args: &[u8], out: &mut Vec<u8>) {
    with_writer(ser, out, |w| {
        w.begin(5);
        w.uint(code::CALL);
        w.uint(request);
        w.dict(&EMPTY);
        w.string(procedure);
        w.raw(args);
        w.end();
    });
}

/// `[YIELD, Request, {}, Arguments?]` — the callee echoes the call's arguments.
pub fn write_yield(ser: Serializer, request: u64, args: Option<&[u8]>, out: &mut Vec<u8>) {
    with_writer(ser, out, |w| {
        w.begin(if args.is_some() { 4 } else { 3 });
        w.uint(code::YIELD);
        w.uint(request);
        w.dict(&EMPTY);
        if let Some(a) = args {
            w.raw(a);
        }
        w.end();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use shardbar::proto::wire::{Message, Payload, decode, encode_to_vec};

    fn probe() -> Probe {
        Probe { source: 7, topic: 3, seq: 123_456, gseq: 987_654_321, t_ns: 1_234_567_890_123 }
    }

    // Goal: the probe round-trips in every serializer, and padding hits the requested
    // size exactly across the string-header boundaries (msgpack 31/32, CBOR 23/24, 255/256).
    #[test]
    fn probe_round_trips_at_exact_sizes() {
        for ser in Serializer::ALL {
            for size in [0, 40, 50, 56, 57, 64, 70, 100, 300, 1024, 4096] {
                let mut out = Vec::new();
                encode_probe(ser, &probe(), size, &mut out);
                assert_eq!(decode_probe(ser, &out), Some(probe()), "{ser:?} {size}");
                let mut bare = Vec::new();
                encode_probe(ser, &probe(), 0, &mut bare);
                if size >= bare.len() {
                    assert_eq!(out.len(), size, "{ser:?} {size}");
                } else {
                    assert_eq!(out.len(), bare.len());
                }
            }
        }
    }

    // Goal: scanning a hot message finds what the full decoder finds (and the payload the
    // full decoder keeps as raw bytes).
    #[test]
    fn scan_agrees_with_decode() {
        for ser in Serializer::ALL {
            let mut args = Vec::new();
            encode_probe(ser, &probe(), 64, &mut args);
            let payload = Payload { format: ser, raw: Bytes::from(args.clone()), count: 1 };
            let event = Message::Event {
                subscription: 5,
                publication: 1 << 52,
                details: Dict::new().with("topic", "x.y"),
                payload: payload.clone(),
            };
            let frame = encode_to_vec(ser, &event).unwrap();
            let Scan::Event { args: Some(r) } = scan(ser, &frame).unwrap() else { panic!("{ser:?}") };
            assert_eq!(decode_probe(ser, &frame[r]), Some(probe()));

            let result = Message::Result { request: 99, details: Dict::new(), payload: payload.clone() };
            let frame = encode_to_vec(ser, &result).unwrap();
            let Scan::Result { request: 99, args: Some(r) } = scan(ser, &frame).unwrap() else { panic!() };
            assert!(frame[r.clone()].starts_with(&args), "{ser:?}");
            assert_eq!(decode_probe(ser, &frame[r]), Some(probe()));

            // JSON with whitespace between elements (other routers may send it).
            if ser == Serializer::Json {
                let spaced = format!("[36, 5, 7, {{}} ,\n {}]", String::from_utf8(args.clone()).unwrap());
                let Scan::Event { args: Some(r) } = scan(ser, spaced.as_bytes()).unwrap() else { panic!() };
                assert_eq!(decode_probe(ser, &spaced.as_bytes()[r]), Some(probe()));
            }

            let inv = Message::Invocation { request: 4, registration: 8, details: Dict::new(), payload };
            let frame = encode_to_vec(ser, &inv).unwrap();
            let Scan::Invocation { request: 4, args: Some(r) } = scan(ser, &frame).unwrap() else { panic!() };
            assert_eq!(&frame[r], &args[..], "the callee echoes exactly the Arguments");

            let empty = Message::Result { request: 1, details: Dict::new(), payload: Payload::empty() };
            let frame = encode_to_vec(ser, &empty).unwrap();
            assert_eq!(scan(ser, &frame).unwrap(), Scan::Result { request: 1, args: None });

            let w = Message::Welcome { session: 1, details: Dict::new() };
            assert_eq!(scan(ser, &encode_to_vec(ser, &w).unwrap()).unwrap(), Scan::Other(code::WELCOME));
        }
    }

    // Goal: the MessagePack fast paths read every integer width the Writers and other
    // encoders produce, agree with the generic Reader, and decline what they do not cover.
    #[test]
    fn msgpack_fast_paths_agree_with_the_reader() {
        let ser = Serializer::MsgPack;
        for v in [0u64, 1, 127, 128, 255, 256, 65_535, 65_536, u32::MAX as u64, u32::MAX as u64 + 1, u64::MAX >> 1] {
            let p = Probe { source: 3, topic: 1, seq: v, gseq: v, t_ns: v };
            let mut args = Vec::new();
            encode_probe(ser, &p, 64, &mut args);
            assert_eq!(mp::probe(&args), Some(p), "{v}");
            let event = Message::Event {
                subscription: v,
                publication: v,
                details: Dict::new(),
                payload: Payload { format: ser, raw: Bytes::from(args.clone()), count: 1 },
            };
            let frame = encode_to_vec(ser, &event).unwrap();
            let fast = mp::scan(&frame).expect("fast path taken");
            let Scan::Event { args: Some(r) } = fast.clone() else { panic!() };
            assert_eq!(decode_probe(ser, &frame[r]), Some(p));
            let result = Message::Result {
                request: v,
                details: Dict::new(),
                payload: Payload { format: ser, raw: Bytes::from(args.clone()), count: 1 },
            };
            let frame = encode_to_vec(ser, &result).unwrap();
            assert!(matches!(mp::scan(&frame), Some(Scan::Result { request, args: Some(_) }) if request == v));
        }
        // Non-empty details, a payload-less EVENT, other messages: declined or exact.
        let e = Message::Event {
            subscription: 1,
            publication: 2,
            details: Dict::new().with("a", 1u64),
            payload: Payload::empty(),
        };
        assert_eq!(mp::scan(&encode_to_vec(ser, &e).unwrap()), None);
        let e = Message::Event { subscription: 1, publication: 2, details: Dict::new(), payload: Payload::empty() };
        assert_eq!(mp::scan(&encode_to_vec(ser, &e).unwrap()), Some(Scan::Event { args: None }));
        let w = Message::Welcome { session: 1, details: Dict::new() };
        assert_eq!(mp::scan(&encode_to_vec(ser, &w).unwrap()), None);
        assert_eq!(mp::probe(&[0x95, 0xc0]), None);
        assert_eq!(mp::probe(&[]), None);
    }

    // Goal: the JSON fast paths agree with the generic Reader and decline what they do
    // not cover (whitespace, details, other messages, numbers that are not plain digits).
    #[test]
    fn json_fast_paths_agree_with_the_reader() {
        let ser = Serializer::Json;
        for v in [0u64, 9, 10, 1 << 53, u64::MAX / 10] {
            let p = Probe { source: 1, topic: 2, seq: v, gseq: v, t_ns: v };
            let mut args = Vec::new();
            encode_probe(ser, &p, 80, &mut args);
            assert_eq!(js::probe(&args), Some(p), "{v}");
            let payload = Payload { format: ser, raw: Bytes::from(args.clone()), count: 1 };
            let e = Message::Event { subscription: v, publication: v, details: Dict::new(), payload: payload.clone() };
            let frame = encode_to_vec(ser, &e).unwrap();
            let Some(Scan::Event { args: Some(r) }) = js::scan(&frame) else { panic!("{v}") };
            assert_eq!(js::probe(&frame[r]), Some(p));
            let res = Message::Result { request: v, details: Dict::new(), payload };
            let frame = encode_to_vec(ser, &res).unwrap();
            assert!(matches!(js::scan(&frame), Some(Scan::Result { request, args: Some(_) }) if request == v));
        }
        assert_eq!(js::scan(b"[36,1,2,{}]"), Some(Scan::Event { args: None }));
        assert_eq!(js::scan(b"[36, 1,2,{},[1]]"), None);
        assert_eq!(js::scan(b"[36,1,2,{\"a\":1},[1]]"), None);
        assert_eq!(js::scan(b"[2,1,{}]"), None);
        assert_eq!(js::probe(b"[1,2,3,4,5.5,\"x\"]"), None);
        assert_eq!(js::probe(b"[1,2,-3,4,5]"), None);
        assert_eq!(js::probe(b"[1,2,3,4,99999999999999999999]"), None, "20 digits overflow u64");
        // The digit loop at every length up to 19 digits, and a non-digit at every
        // position of an eight-digit number.
        for len in 1..=19usize {
            let digits: String = (0..len).map(|i| char::from(b'0' + ((i * 7 + len) % 10) as u8)).collect();
            let text = format!("{digits},");
            let mut p = 0;
            assert_eq!(js::uint(text.as_bytes(), &mut p), digits.parse().ok(), "{digits}");
            assert_eq!(p, len);
        }
        for bad in 0..8 {
            for c in [b'/', b':', b'?', b'a', 0xB5] {
                let mut text = b"12345678,".to_vec();
                text[bad] = c;
                let mut p = 0;
                assert_eq!(js::uint(&text, &mut p), None, "{c:#x} at {bad} is not a digit");
            }
        }
    }

    // Goal: what we write with the Writers is what the full decoder reads.
    #[test]
    fn hot_writers_produce_valid_messages() {
        for ser in Serializer::ALL {
            let mut args = Vec::new();
            encode_probe(ser, &probe(), 64, &mut args);
            let mut out = Vec::new();
            write_publish(ser, 3, "t.0", &args, &mut out);
            match decode(ser, &Bytes::from(out)).unwrap() {
                Message::Publish { request: 3, topic, payload, .. } => {
                    assert_eq!(topic, "t.0");
                    assert_eq!(decode_probe(ser, &payload.raw), Some(probe()));
                }
                m => panic!("{m:?}"),
            }
            let mut out = Vec::new();
            write_call(ser, 4, "p", &args, &mut out);
            assert!(matches!(decode(ser, &Bytes::from(out)).unwrap(), Message::Call { request: 4, .. }));
            let mut out = Vec::new();
            write_yield(ser, 5, Some(&args), &mut out);
            match decode(ser, &Bytes::from(out)).unwrap() {
                Message::Yield { request: 5, payload, .. } => assert_eq!(&payload.raw[..], &args[..]),
                m => panic!("{m:?}"),
            }
            let mut out = Vec::new();
            write_yield(ser, 6, None, &mut out);
            assert!(matches!(decode(ser, &Bytes::from(out)).unwrap(), Message::Yield { request: 6, .. }));
        }
    }

    // Goal: a payload re-encoded compactly by another router (Crossbar re-serializes) still
    // reads back.
    #[test]
    fn probe_reads_after_reencoding() {
        for ser in Serializer::ALL {
            let mut args = Vec::new();
            encode_probe(ser, &probe(), 64, &mut args);
            let p = Payload { format: ser, raw: Bytes::from(args), count: 1 };
            for to in Serializer::ALL {
                let t = p.transcode(to).unwrap();
                assert_eq!(decode_probe(to, &t.raw), Some(probe()), "{ser:?} -> {to:?}");
            }
        }
        assert_eq!(decode_probe(Serializer::Json, b"[\"a\"]"), None);
    }
}
