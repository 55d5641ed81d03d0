//! Outgoing frames: a WAMP message encoded once, with its transport header in front, as one
//! `Bytes` that any number of connections can share; and EVENTs cut in two, so one
//! publication's payload is encoded once per serializer however many subscriptions match.
//!
//! The message is encoded after a fixed headroom; the transport header is then written
//! right-aligned into the headroom and the buffer is sliced to start at it. One allocation,
//! no copy, and the same bytes go to every receiver with the same (serializer, transport).
//!
//! An EVENT carries its subscription ID ahead of the payload, so its bytes differ per
//! subscription. A [`SplitFrame`] holds a small per-subscription head (transport header and
//! the message up to and including `Details`) and a tail shared by every subscription of the
//! publication in that serializer (the payload and the message's closing bytes): with N
//! matching subscriptions and a 16 MiB payload the payload is encoded once, not N times.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use super::wire::message::{encode_event_head, encode_event_tail};
use super::wire::{DecodeError, Id, Message, Payload, Serializer, encode, rawsocket, websocket};

/// How a connection frames messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    WebSocket,
    RawSocket,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::RawSocket => "rawsocket",
        }
    }
}

/// The framing of one connection: transport and serializer. Frames for equal `Framing`s are
/// byte-identical, which is what makes encode-once fan-out possible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Framing {
    pub transport: Transport,
    pub serializer: Serializer,
}

impl Framing {
    /// A small dense index (0..6) for per-framing caches.
    pub fn index(self) -> usize {
        let t = match self.transport {
            Transport::WebSocket => 0,
            Transport::RawSocket => 1,
        };
        t * 3 + (self.serializer as usize - 1)
    }

    pub(crate) const COUNT: usize = 6;
}

/// Room reserved in front of an encoded message for the largest transport header
/// (WebSocket server frame: 2 + 8 bytes).
const HEADROOM: usize = 10;

/// Encode `msg` and frame it for `framing`.
pub fn encode_frame(framing: Framing, msg: &Message) -> Result<Bytes, DecodeError> {
    // Room for the envelope and the payload up front: growing the buffer costs a realloc
    // and a copy per message.
    let mut buf = Vec::with_capacity(HEADROOM + 96 + payload_len(msg));
    buf.resize(HEADROOM, 0);
    encode(framing.serializer, msg, &mut buf)?;
    frame_body(framing, buf)
}

/// The raw payload size of a message, for buffer sizing (a transcoded payload may differ a
/// little; the buffer then grows once).
fn payload_len(msg: &Message) -> usize {
    match msg {
        Message::Event { payload, details, .. } => payload.len_bytes() + 16 * details.len(),
        Message::Invocation { payload, details, .. } | Message::Result { payload, details, .. } => {
            payload.len_bytes() + 16 * details.len()
        }
        Message::Error { payload, .. } | Message::Abort { payload, .. } => payload.len_bytes(),
        _ => 64,
    }
}

/// Frame an already-encoded body that sits in `buf[HEADROOM..]`.
fn frame_body(framing: Framing, mut buf: Vec<u8>) -> Result<Bytes, DecodeError> {
    let body_len = buf.len() - HEADROOM;
    let start = write_header(framing, body_len, &mut buf)?;
    Ok(Bytes::from(buf).slice(start..))
}

/// Write the transport header of a body of `body_len` bytes right-aligned into the headroom
/// at the front of `buf`; returns where the frame starts. A body over RawSocket's 16 MiB
/// frame limit (an EVENT can exceed a maximal PUBLISH by its header) is an error the caller
/// counts and drops.
fn write_header(framing: Framing, body_len: usize, buf: &mut [u8]) -> Result<usize, DecodeError> {
    if framing.transport == Transport::RawSocket && body_len > rawsocket::FRAME_PAYLOAD_MAX_BYTES {
        let max_bytes = rawsocket::FRAME_PAYLOAD_MAX_BYTES;
        return Err(DecodeError::TooLarge { transport: "RawSocket", len_bytes: body_len, max_bytes });
    }
    let mut header = [0u8; HEADROOM];
    let n = match framing.transport {
        Transport::WebSocket => {
            let opcode =
                if framing.serializer.is_binary() { websocket::OpCode::Binary } else { websocket::OpCode::Text };
            websocket::encode_header(opcode, true, body_len, &mut header)
        }
        Transport::RawSocket => {
            let h = rawsocket::encode_header(rawsocket::FrameKind::Message, body_len);
            header[..4].copy_from_slice(&h);
            4
        }
    };
    let start = HEADROOM - n;
    buf[start..HEADROOM].copy_from_slice(&header[..n]);
    Ok(start)
}

/// Most bytes of a [`SplitFrame`]'s head other than its encoded `Details`: the transport
/// header (`HEADROOM`) and the message's start — JSON's `[36,` with two 20-digit IDs and
/// their commas is the longest (46 bytes; MessagePack and CBOR need at most 24).
pub const EVENT_HEAD_FIXED_MAX_BYTES: usize = HEADROOM + 54;

/// An EVENT frame in two parts, written one after the other: `head` (the transport header,
/// computed from the whole frame's length, and the message up to and including `Details`)
/// belongs to one subscription; `tail` (the payload and the closing bytes, from
/// [`encode_tail`]) is shared by every subscription of the publication in one serializer.
#[derive(Debug)]
pub struct SplitFrame {
    /// `HEADROOM` bytes of room, of which the header uses the last few, then the message's
    /// start; the frame begins at `head_start`.
    head: Vec<u8>,
    head_start: usize,
    tail: Bytes,
    /// The whole frame's length (read once per receiver, so kept rather than summed).
    len: usize,
}

impl SplitFrame {
    /// The head's bytes and the tail's.
    pub fn parts(&self) -> (&[u8], &[u8]) {
        (&self.head[self.head_start..], &self.tail)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tail of every EVENT of a publication in serializer `ser`: its payload (transcoded if
/// it is in another serializer) and the message's closing bytes.
pub fn encode_tail(ser: Serializer, payload: &Payload) -> Result<Bytes, DecodeError> {
    let mut buf = Vec::with_capacity(payload.len_bytes() + 2);
    encode_event_tail(ser, payload, &mut buf)?;
    Ok(Bytes::from(buf))
}

/// The EVENT frame of `publication` through `subscription` for `framing`: its head, with
/// `details` already encoded in the framing's serializer (`wire::message::encode_dict`),
/// before `tail` (from [`encode_tail`] for the same serializer and a payload of
/// `payload_count` elements). The bytes equal [`encode_frame`]'s for the same EVENT.
pub fn encode_event_split(
    framing: Framing,
    subscription: Id,
    publication: Id,
    details: &[u8],
    payload_count: u8,
    tail: &Bytes,
) -> Result<SplitFrame, DecodeError> {
    let mut head = Vec::with_capacity(EVENT_HEAD_FIXED_MAX_BYTES + details.len());
    head.resize(HEADROOM, 0);
    encode_event_head(framing.serializer, subscription, publication, details, payload_count, &mut head);
    debug_assert!(head.len() - details.len() <= EVENT_HEAD_FIXED_MAX_BYTES);
    let body_len = head.len() - HEADROOM + tail.len();
    let head_start = write_header(framing, body_len, &mut head)?;
    let len = head.len() - head_start + tail.len();
    Ok(SplitFrame { head, head_start, tail: tail.clone(), len })
}

/// One queued frame: owned by its connection, or an EVENT in two parts shared by every
/// receiver of a fan-out on this shard (its tail shared further, by every subscription of
/// the publication). Shared frames use a non-atomic count: frames never leave their shard,
/// and an atomic increment and decrement per receiver was ~16% of the router's CPU in a
/// 1→1000 fan-out (perf). Two variants keep the enum as small as `Bytes` (32 bytes).
#[derive(Clone, Debug)]
pub enum OutFrame {
    Owned(Bytes),
    Split(Rc<SplitFrame>),
}

impl OutFrame {
    /// The frame's bytes in order, as two slices (the second is empty unless it is split).
    pub fn parts(&self) -> (&[u8], &[u8]) {
        match self {
            OutFrame::Owned(b) => (b, &[]),
            OutFrame::Split(f) => f.parts(),
        }
    }

    /// The frame's whole length, framing included.
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Owned(b) => b.len(),
            OutFrame::Split(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Bytes> for OutFrame {
    fn from(b: Bytes) -> OutFrame {
        OutFrame::Owned(b)
    }
}

/// Bytes waiting to be written to one connection.
#[derive(Debug, Default)]
pub struct OutQueue {
    frames: VecDeque<OutFrame>,
    bytes: usize,
}

impl OutQueue {
    pub fn push(&mut self, frame: impl Into<OutFrame>) {
        let frame = frame.into();
        self.push_sized(frame.len(), frame);
    }

    /// [`push`](Self::push) a frame whose length the caller already has.
    #[inline]
    pub(crate) fn push_sized(&mut self, len: usize, frame: OutFrame) {
        debug_assert_eq!(len, frame.len());
        self.bytes += len;
        self.frames.push_back(frame);
    }

    /// Bytes queued and not yet taken.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Move whole frames into `out` until it holds at least `max_bytes` (a frame larger than
    /// the remaining room is still taken whole if `out` is empty, so progress is guaranteed).
    /// Returns the number of bytes moved.
    pub fn drain_into(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> usize {
        let start = out.len();
        while let Some(front) = self.frames.front() {
            if out.len() > start && out.len() - start + front.len() > max_bytes {
                break;
            }
            let (head, tail) = front.parts();
            out.extend_from_slice(head);
            out.extend_from_slice(tail);
            self.bytes -= front.len();
            self.frames.pop_front();
            if out.len() - start >= max_bytes {
                break;
            }
        }
        out.len() - start
    }

    /// Take the next whole frame (for writers that send frames without coalescing).
    pub fn pop(&mut self) -> Option<OutFrame> {
        let f = self.frames.pop_front()?;
        self.bytes -= f.len();
        Some(f)
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }
}

const _: () = assert!(std::mem::size_of::<OutFrame>() == std::mem::size_of::<Bytes>());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::message::encode_dict;
    use crate::proto::wire::{Dict, Value};

    const FRAMINGS: [Framing; Framing::COUNT] = {
        let (w, r) = (Transport::WebSocket, Transport::RawSocket);
        let (j, m, c) = (Serializer::Json, Serializer::MsgPack, Serializer::Cbor);
        [
            Framing { transport: w, serializer: j },
            Framing { transport: w, serializer: m },
            Framing { transport: w, serializer: c },
            Framing { transport: r, serializer: j },
            Framing { transport: r, serializer: m },
            Framing { transport: r, serializer: c },
        ]
    };

    /// The split frame's bytes, head then tail.
    fn joined(f: &SplitFrame) -> Vec<u8> {
        let (head, tail) = f.parts();
        [head, tail].concat()
    }

    /// Payloads in `format`: none, args only, args and kwargs, kwargs only (empty args),
    /// with a string of `fill` bytes so frames cross the WebSocket length encodings.
    fn payloads(format: Serializer, fill: usize) -> Vec<Payload> {
        let args = [Value::str("é".repeat(fill / 2) + &"x".repeat(fill % 2)), Value::UInt(u64::MAX), Value::Int(-1)];
        let kwargs = Dict::new().with("k", Value::Bytes(vec![0, 1, 2])).with("f", Value::Float(1.5));
        vec![
            Payload::empty(),
            Payload::from_values(format, Some(&args), None),
            Payload::from_values(format, Some(&args), Some(&kwargs)),
            Payload::from_values(format, None, Some(&kwargs)),
        ]
    }

    /// Goal: a split EVENT frame is byte for byte the frame `encode_frame` builds for the
    /// same EVENT, for every serializer and transport. Method: payloads in each serializer
    /// (so the tail is copied or transcoded), of sizes around the WebSocket header's length
    /// boundaries (125/126 and 65535/65536 bytes), with and without `Details`, with the
    /// smallest and largest IDs; compare the joined parts with the whole frame, and the
    /// split frame's length with its bytes.
    #[test]
    fn split_event_frames_equal_whole_frames() {
        let details = [Dict::new(), Dict::new().with("topic", "com.example.topic").with("publisher", 42u64)];
        let fills = [0, 40, 90, 100, 110, 65_440, 65_480, 65_500, 65_530];
        let mut checked = 0;
        for source in Serializer::ALL {
            for fill in fills {
                for payload in payloads(source, fill) {
                    for framing in FRAMINGS {
                        let tail = encode_tail(framing.serializer, &payload).expect("tail");
                        for d in &details {
                            let mut encoded = Vec::new();
                            encode_dict(framing.serializer, d, &mut encoded);
                            for (sub, publ) in [(0, 1), (1 << 53, u64::MAX), (u64::MAX, 0)] {
                                let msg = Message::Event {
                                    subscription: sub,
                                    publication: publ,
                                    details: d.clone(),
                                    payload: payload.clone(),
                                };
                                let whole = encode_frame(framing, &msg).expect("whole frame");
                                let split = encode_event_split(framing, sub, publ, &encoded, payload.count, &tail)
                                    .expect("split frame");
                                assert_eq!(joined(&split), &whole[..], "{framing:?}, {source:?} payload, fill {fill}");
                                assert_eq!(split.len(), whole.len());
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 3 * fills.len() * 4 * Framing::COUNT * 2 * 3);
    }

    /// Goal: the tail length known without encoding is the encoded tail's length. Method:
    /// every payload shape in every serializer, read as the same serializer and the others.
    #[test]
    fn tail_length_is_known_without_encoding() {
        for source in Serializer::ALL {
            for payload in payloads(source, 10) {
                for ser in Serializer::ALL {
                    let known = crate::proto::wire::message::event_tail_len(ser, &payload);
                    let tail = encode_tail(ser, &payload).expect("tail");
                    if ser == source || payload.is_empty() {
                        assert_eq!(known, Some(tail.len()), "{source:?} → {ser:?}");
                    } else {
                        assert_eq!(known, None, "a transcoded tail's length is not known ahead");
                    }
                }
            }
        }
    }

    /// Goal: a RawSocket EVENT whose body exceeds the 16 MiB frame limit is refused by the
    /// split encoder as by the whole-frame one. Method: a tail just large enough.
    #[test]
    fn split_frames_respect_the_rawsocket_frame_limit() {
        let framing = Framing { transport: Transport::RawSocket, serializer: Serializer::MsgPack };
        let big = Payload::from_values(Serializer::MsgPack, Some(&[Value::Bytes(vec![0; 1 << 24])]), None);
        let tail = encode_tail(framing.serializer, &big).expect("tail");
        let mut details = Vec::new();
        encode_dict(framing.serializer, &Dict::new(), &mut details);
        assert!(encode_event_split(framing, 1, 2, &details, big.count, &tail).is_err());
        let ws = Framing { transport: Transport::WebSocket, ..framing };
        assert!(encode_event_split(ws, 1, 2, &details, big.count, &tail).is_ok());
    }

    /// Goal: the writer's coalescing takes split frames whole, head before tail, and keeps
    /// the queue's byte count. Method: queue owned and split frames; drain with a
    /// batch limit that falls inside a split frame, then the rest.
    #[test]
    fn queues_drain_split_frames_in_order() {
        let framing = Framing { transport: Transport::RawSocket, serializer: Serializer::Json };
        let payload = Payload::from_values(Serializer::Json, Some(&[Value::str("y".repeat(100))]), None);
        let tail = encode_tail(framing.serializer, &payload).expect("tail");
        let mut details = Vec::new();
        encode_dict(framing.serializer, &Dict::new(), &mut details);
        let split = Rc::new(encode_event_split(framing, 7, 8, &details, payload.count, &tail).expect("split"));
        let first = Bytes::from_static(b"first");
        let last = Bytes::from_static(b"last");
        let mut q = OutQueue::default();
        q.push(first.clone());
        q.push(OutFrame::Split(split.clone()));
        q.push(OutFrame::Split(split.clone()));
        q.push(last.clone());
        assert_eq!(q.bytes(), 5 + 2 * split.len() + 4);
        let mut out = Vec::new();
        let moved = q.drain_into(&mut out, 5 + split.len() + 1);
        assert_eq!(moved, 5 + split.len(), "the second split frame does not fit and waits whole");
        assert_eq!(q.bytes(), split.len() + 4);
        q.drain_into(&mut out, usize::MAX);
        let want = [&first[..], &joined(&split), &joined(&split), &last[..]].concat();
        assert_eq!(out, want);
        assert!(q.is_empty() && q.bytes() == 0);
    }
}
