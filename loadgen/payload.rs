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

/// Locate the parts of a hot message; other messages only report their code.
pub fn scan(ser: Serializer, frame: &[u8]) -> Result<Scan, DecodeError> {
    fn args<R: Reader>(r: &mut R) -> Result<Option<Range<usize>>, DecodeError> {
        if r.more()? { Ok(Some(r.skip()?.0)) } else { Ok(None) }
    }
    fn go<R: Reader>(r: &mut R) -> Result<Scan, DecodeError> {
        r.begin()?;
        let c = r.uint()?;
        Ok(match c {
            code::EVENT => {
                r.uint()?; // subscription
                r.uint()?; // publication
                r.skip()?; // details
                Scan::Event { args: args(r)? }
            }
            code::RESULT => {
                let request = r.uint()?;
                r.skip()?;
                Scan::Result { request, args: args(r)? }
            }
            code::INVOCATION => {
                let request = r.uint()?;
                r.uint()?; // registration
                r.skip()?;
                Scan::Invocation { request, args: args(r)? }
            }
            other => Scan::Other(other),
        })
    }
    match ser {
        Serializer::Json => go(&mut json::Reader::new(frame)),
        Serializer::MsgPack => go(&mut msgpack::Reader::new(frame)),
        Serializer::Cbor => go(&mut cbor::Reader::new(frame)),
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
            assert_eq!(&frame[r], &args[..]);

            let inv = Message::Invocation { request: 4, registration: 8, details: Dict::new(), payload };
            let frame = encode_to_vec(ser, &inv).unwrap();
            assert!(matches!(scan(ser, &frame).unwrap(), Scan::Invocation { request: 4, args: Some(_) }));

            let empty = Message::Result { request: 1, details: Dict::new(), payload: Payload::empty() };
            let frame = encode_to_vec(ser, &empty).unwrap();
            assert_eq!(scan(ser, &frame).unwrap(), Scan::Result { request: 1, args: None });

            let w = Message::Welcome { session: 1, details: Dict::new() };
            assert_eq!(scan(ser, &encode_to_vec(ser, &w).unwrap()).unwrap(), Scan::Other(code::WELCOME));
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
