//! The incremental WebSocket frame [`Decoder`] for one connection: header checks before the
//! payload arrives, in-place unmasking, reassembly of fragments, fail-fast UTF-8 validation
//! of text, and close-frame checks.
//!
//! Must not: answer pings or close handshakes itself (it reports [`Event`]s and the
//! connection code, which owns the write queue, replies), copy an unfragmented payload, or
//! negotiate extensions (RSV bits are always a protocol error).

use bytes::{Buf, BytesMut};

use super::frame::{Error, Event, OpCode, Role, close_code, is_valid_close_code, unmask_at};
use super::utf8::Utf8Validator;
use crate::limits;

/// A frame whose header has been consumed from the buffer; its payload is at the buffer's
/// front, `processed` bytes of it already unmasked (and UTF-8 checked, if text).
#[derive(Clone, Copy, Debug)]
struct FrameState {
    fin: bool,
    opcode: OpCode,
    len: usize,
    mask: Option<[u8; 4]>,
    /// Payload belongs to a text message: validate as it arrives.
    text: bool,
    processed: usize,
}

/// A data message split over several frames, being reassembled.
#[derive(Debug)]
struct Fragmented {
    binary: bool,
    data: BytesMut,
    frames: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// A Close arrived; nothing more is decoded.
    Closed,
    /// The peer violated the protocol; the error is repeated to any further call.
    Failed(Error),
}

/// Incremental frame decoder for one connection.
///
/// Feed it the connection's read buffer after every read. It consumes a frame header as
/// soon as it is complete and valid — so a bad or oversized frame fails before its payload
/// is read — and then unmasks (and, for text, UTF-8-checks) payload bytes in place as they
/// arrive. A complete unfragmented payload leaves as a zero-copy `split_to(..).freeze()`;
/// fragments are copied into one reassembly buffer.
///
/// Contract: the caller appends to `buf` and never modifies the bytes at its front between
/// calls (they may already be unmasked).
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message_bytes: usize,
    frame: Option<FrameState>,
    fragmented: Option<Fragmented>,
    utf8: Utf8Validator,
    state: State,
}

impl Decoder {
    /// # Panics
    /// If `max_message_bytes` exceeds `limits::MESSAGE_SIZE_CEILING_BYTES`.
    pub fn new(role: Role, max_message_bytes: usize) -> Decoder {
        assert!(max_message_bytes <= limits::MESSAGE_SIZE_CEILING_BYTES, "WebSocket message limit above ceiling");
        Decoder {
            role,
            max_message_bytes,
            frame: None,
            fragmented: None,
            utf8: Utf8Validator::default(),
            state: State::Open,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// A Close frame has been decoded.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// How many more bytes (beyond `buffered`) are needed before the current frame can
    /// complete: lets the runtime reserve once for a large frame. A lower bound when no
    /// header has been parsed yet.
    pub fn bytes_wanted(&self, buffered: usize) -> usize {
        match &self.frame {
            Some(f) => f.len.saturating_sub(buffered),
            None => 2usize.saturating_sub(buffered),
        }
    }

    /// The next event, `Ok(None)` when more bytes are needed (or after a Close).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Error> {
        match self.state {
            State::Failed(e) => return Err(e),
            State::Closed => return Ok(None),
            State::Open => {}
        }
        let result = self.decode_open(buf);
        if let Err(e) = result {
            self.state = State::Failed(e);
        }
        result
    }

    fn decode_open(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Error> {
        // Each turn consumes a header or completes a frame, so the loop is bounded by `buf`;
        // it only goes round again after a non-final fragment, which yields no event.
        loop {
            let frame = match &mut self.frame {
                Some(frame) => frame,
                None => {
                    let Some((frame, header_len)) = self.read_header(buf)? else {
                        return Ok(None);
                    };
                    buf.advance(header_len);
                    self.frame.insert(frame)
                }
            };
            let available = buf.len().min(frame.len);
            if let Some(fresh) = buf.get_mut(frame.processed..available)
                && !fresh.is_empty()
            {
                if let Some(key) = frame.mask {
                    unmask_at(fresh, key, frame.processed);
                }
                if frame.text {
                    self.utf8.feed(fresh)?;
                }
                frame.processed = available;
            }
            if frame.processed < frame.len {
                return Ok(None);
            }
            let frame = *frame;
            self.frame = None;
            // Cannot panic: `processed == len` was reached in this call, with
            // `processed <= available <= buf.len()`.
            let payload = buf.split_to(frame.len);
            if let Some(event) = self.complete_frame(frame, payload)? {
                return Ok(Some(event));
            }
        }
    }

    /// Parse and validate the header at the front of `buf`. Every check that the first two
    /// octets allow is made before waiting for the extended length or mask key.
    fn read_header(&mut self, buf: &[u8]) -> Result<Option<(FrameState, usize)>, Error> {
        let Some(&[b0, b1]) = buf.first_chunk::<2>() else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(Error::protocol("reserved bits set without a negotiated extension"));
        }
        let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(Error::protocol("reserved opcode"))?;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(Error::protocol("client frame is not masked")),
            (Role::Client, true) => return Err(Error::protocol("server frame is masked")),
            _ => {}
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(Error::protocol("fragmented control frame"));
            }
            if usize::from(len7) > limits::WS_CONTROL_PAYLOAD_MAX_BYTES {
                return Err(Error::protocol("control frame payload over 125 bytes"));
            }
        }
        let mut text = false;
        let mut already = 0;
        match (opcode, &self.fragmented) {
            (OpCode::Continuation, None) => return Err(Error::protocol("continuation frame without a message")),
            (OpCode::Continuation, Some(frag)) => {
                if frag.frames >= limits::WS_FRAGMENTS_MAX {
                    return Err(Error { code: close_code::TOO_BIG, reason: "too many fragments in one message" });
                }
                text = !frag.binary;
                already = frag.data.len();
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(Error::protocol("new data frame inside a fragmented message"));
            }
            (OpCode::Text, None) => text = true,
            _ => {}
        }

        let ext_len = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext_len + if masked { 4 } else { 0 };
        let Some(header) = buf.get(..header_len) else {
            return Ok(None);
        };
        // Non-minimal length encodings are accepted: RFC 6455 says "minimal number of
        // bytes MUST be used" for senders but names no receiver action, and rejecting
        // them buys nothing.
        let len: u64 = match header {
            [_, _, a, b, ..] if ext_len == 2 => u64::from(u16::from_be_bytes([*a, *b])),
            [_, _, a, b, c, d, e, f, g, h, ..] if ext_len == 8 => u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]),
            _ => u64::from(len7),
        };
        if len >> 63 != 0 {
            return Err(Error::protocol("64-bit payload length with the most significant bit set"));
        }
        let limit = self.max_message_bytes.saturating_sub(already);
        let len = match usize::try_from(len) {
            Ok(len) if opcode.is_control() || len <= limit => len,
            _ => return Err(Error { code: close_code::TOO_BIG, reason: "message too big" }),
        };
        let mask = match header.get(2 + ext_len..) {
            Some(&[k0, k1, k2, k3]) if masked => Some([k0, k1, k2, k3]),
            _ => None,
        };
        if opcode == OpCode::Text {
            self.utf8 = Utf8Validator::default();
        }
        Ok(Some((FrameState { fin, opcode, len, mask, text, processed: 0 }, header_len)))
    }

    /// A frame's payload is complete (unmasked, text already checked up to any trailing
    /// partial character).
    fn complete_frame(&mut self, frame: FrameState, payload: BytesMut) -> Result<Option<Event>, Error> {
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                let binary = frame.opcode == OpCode::Binary;
                if frame.fin {
                    if !binary {
                        self.utf8.finish()?;
                    }
                    return Ok(Some(Event::Message { binary, data: payload.freeze() }));
                }
                // Kept as is; the first continuation copies it into a buffer of its own,
                // which also stops it pinning the read buffer.
                self.fragmented = Some(Fragmented { binary, data: payload, frames: 1 });
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(frag) = self.fragmented.as_mut() else {
                    return Err(Error::protocol("continuation frame without a message"));
                };
                frag.data.extend_from_slice(&payload);
                frag.frames += 1;
                if !frame.fin {
                    return Ok(None);
                }
                let binary = frag.binary;
                let data = self.fragmented.take().map(|f| f.data.freeze()).unwrap_or_default();
                if !binary {
                    self.utf8.finish()?;
                }
                Ok(Some(Event::Message { binary, data }))
            }
            OpCode::Ping => Ok(Some(Event::Ping(payload.freeze()))),
            OpCode::Pong => Ok(Some(Event::Pong(payload.freeze()))),
            OpCode::Close => {
                let event = parse_close(&payload)?;
                self.state = State::Closed;
                Ok(Some(event))
            }
        }
    }
}

fn parse_close(payload: &[u8]) -> Result<Event, Error> {
    match payload {
        [] => Ok(Event::Close { code: None, reason: String::new() }),
        [_] => Err(Error::protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(Error::protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| Error { code: close_code::INVALID_PAYLOAD, reason: "invalid UTF-8 in close reason" })?;
            Ok(Event::Close { code: Some(code), reason: reason.to_owned() })
        }
    }
}
