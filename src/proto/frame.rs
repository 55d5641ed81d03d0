//! Outgoing frames: a WAMP message encoded once, with its transport header in front, as one
//! `Bytes` that any number of connections can share.
//!
//! The message is encoded after a fixed headroom; the transport header is then written
//! right-aligned into the headroom and the buffer is sliced to start at it. One allocation,
//! no copy, and the same bytes go to every receiver with the same (serializer, transport).

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use super::wire::{DecodeError, Message, Serializer, encode, rawsocket, websocket};

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

/// Frame an already-encoded body that sits in `buf[HEADROOM..]`. A body over RawSocket's
/// 16 MiB frame limit (an EVENT can exceed a maximal PUBLISH by its header) is an error the
/// caller counts and drops.
fn frame_body(framing: Framing, mut buf: Vec<u8>) -> Result<Bytes, DecodeError> {
    let body_len = buf.len() - HEADROOM;
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
    Ok(Bytes::from(buf).slice(start..))
}

/// One queued frame: owned by its connection, or shared by every receiver of a fan-out on
/// this shard. Shared frames use a non-atomic count: frames never leave their shard, and an
/// atomic increment and decrement per receiver was ~16% of the router's CPU in a 1→1000
/// fan-out (perf).
#[derive(Clone, Debug)]
pub enum OutFrame {
    Owned(Bytes),
    Shared(Rc<Bytes>),
}

impl std::ops::Deref for OutFrame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            OutFrame::Owned(b) => b,
            OutFrame::Shared(b) => b,
        }
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
        self.bytes += frame.len();
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
            out.extend_from_slice(front);
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
