//! WAMP-over-RawSocket transport codec (`advanced/transport_rawsocket.md`): the 4-byte
//! opening handshake, both sides, and the 4-byte-prefix framing.
//!
//! Owns: parsing and building handshake octets, the incremental frame [`Decoder`] over a
//! `BytesMut`, and frame-prefix encoding. Must not: touch sockets, clocks or glommio, decode
//! WAMP messages (that is `message`), or answer PINGs itself — it reports [`Frame::Ping`]
//! and the connection code sends the PONG, because only it owns the write queue.
//!
//! Handshake layout (big-endian):
//!
//! ```text
//! request / success reply:  0x7F | LLLL SSSS | 0x00 | 0x00   (max receive length 2^(9+L))
//! error reply:              0x7F | EEEE 0000 | 0x00 | 0x00
//! frame prefix:             RRRR XTTT | 24-bit length         (X = 25th length bit)
//! ```

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::codec::Serializer;

/// First octet of every handshake. It cannot start an HTTP request, so RawSocket and
/// WebSocket share a port: the listener peeks one byte.
pub const MAGIC: u8 = 0x7F;

/// Length of a handshake request or reply.
pub const HANDSHAKE_BYTES: usize = 4;

/// Largest `LLLL`: 2^(9+15) = 16 MiB.
pub const LEN_EXP_MAX: u8 = 15;

/// Length of a frame prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Largest payload the prefix can describe: 2^24, which needs the X bit.
pub const FRAME_PAYLOAD_MAX_BYTES: usize = 1 << 24;

/// The 24 ordinary length bits.
const LEN_MASK: u32 = 0x00FF_FFFF;

/// The X bit: length bit 25, inside the first octet.
const EXTRA_LEN_BIT: u8 = 0x08;

// ---------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------

/// One side's half of the handshake: the serializer and the largest message that side is
/// willing to *receive*, as the exponent `L` of 2^(9+L).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub serializer: Serializer,
    pub max_len_exp: u8,
}

impl Handshake {
    /// # Panics
    /// If `max_len_exp > 15`: the caller chose it, the nibble cannot carry it.
    pub fn new(serializer: Serializer, max_len_exp: u8) -> Handshake {
        assert!(max_len_exp <= LEN_EXP_MAX, "RawSocket length exponent {max_len_exp} > 15");
        Handshake { serializer, max_len_exp }
    }

    /// The receive limit in bytes, 512 B ..= 16 MiB.
    pub fn max_len_bytes(self) -> usize {
        1 << (9 + u32::from(self.max_len_exp.min(LEN_EXP_MAX)))
    }

    /// The four octets of a request (client) or success reply (router); same layout.
    pub fn to_bytes(self) -> [u8; 4] {
        debug_assert!(self.max_len_exp <= LEN_EXP_MAX);
        [MAGIC, (self.max_len_exp << 4) | (self.serializer.rawsocket_id() & 0x0F), 0, 0]
    }
}

/// The largest `L` whose limit 2^(9+L) does not exceed `max_bytes` (clamped to 0..=15).
/// Turns the configured `limits.message_size_max` into the exponent we advertise.
pub fn len_exp_for(max_bytes: usize) -> u8 {
    let mut exp = 0u8;
    while exp < LEN_EXP_MAX && (1usize << (9 + u32::from(exp) + 1)) <= max_bytes {
        exp += 1;
    }
    exp
}

/// Why the router refuses a handshake. Every variant except [`HandshakeError::NotRawSocket`]
/// has an error reply to send before closing ([`HandshakeError::reply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The first octet is not `0x7F`: not RawSocket. No reply; fail the connection (the
    /// listener only hands over connections that start with `0x7F`, so this is a bug or a
    /// confused peer).
    NotRawSocket(u8),
    /// `EEEE = 1`: `SSSS` is 0, unknown, or not enabled on this listener.
    SerializerUnsupported,
    /// `EEEE = 2`: the client's receive limit is below what the router requires.
    MaxLengthUnacceptable,
    /// `EEEE = 3`: octets 3 and 4 are not zero.
    ReservedBits,
    /// `EEEE = 4`: the router is at its connection limit. Never produced by parsing; the
    /// runtime raises it and sends [`HandshakeError::reply`].
    MaxConnections,
}

impl HandshakeError {
    /// The `EEEE` error code, or `None` when there is no reply to send.
    pub fn code(self) -> Option<u8> {
        match self {
            HandshakeError::NotRawSocket(_) => None,
            HandshakeError::SerializerUnsupported => Some(1),
            HandshakeError::MaxLengthUnacceptable => Some(2),
            HandshakeError::ReservedBits => Some(3),
            HandshakeError::MaxConnections => Some(4),
        }
    }

    /// The error reply `0x7F | EEEE 0000 | 0 | 0` to write before closing, if any.
    pub fn reply(self) -> Option<[u8; 4]> {
        self.code().map(|code| [MAGIC, code << 4, 0, 0])
    }

    fn from_code(code: u8) -> Option<HandshakeError> {
        match code {
            1 => Some(HandshakeError::SerializerUnsupported),
            2 => Some(HandshakeError::MaxLengthUnacceptable),
            3 => Some(HandshakeError::ReservedBits),
            4 => Some(HandshakeError::MaxConnections),
            _ => None,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NotRawSocket(b) => write!(f, "not a RawSocket handshake (first octet 0x{b:02x})"),
            HandshakeError::SerializerUnsupported => f.write_str("serializer unsupported"),
            HandshakeError::MaxLengthUnacceptable => f.write_str("maximum message length unacceptable"),
            HandshakeError::ReservedBits => f.write_str("use of reserved bits"),
            HandshakeError::MaxConnections => f.write_str("maximum connection count reached"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Router side: parse a client's request. Checks, in order, the magic octet, the reserved
/// octets and the serializer nibble (0, 4 UBJSON, 5 FlatBuffers and 6–15 are all
/// "unsupported" for us). Does not apply listener policy; see [`accept`].
pub fn parse_request(request: [u8; 4]) -> Result<Handshake, HandshakeError> {
    let [magic, second, r1, r2] = request;
    if magic != MAGIC {
        return Err(HandshakeError::NotRawSocket(magic));
    }
    if r1 != 0 || r2 != 0 {
        return Err(HandshakeError::ReservedBits);
    }
    let serializer = Serializer::from_rawsocket_id(second & 0x0F).ok_or(HandshakeError::SerializerUnsupported)?;
    Ok(Handshake { serializer, max_len_exp: second >> 4 })
}

/// Router side: [`parse_request`] plus listener policy — the serializer must be one of
/// `serializers`, and the client must accept messages of at least 2^(9+`min_peer_len_exp`)
/// bytes (a router that cannot send a WELCOME or a typical EVENT to a client gains nothing
/// from the connection).
pub fn accept(request: [u8; 4], serializers: &[Serializer], min_peer_len_exp: u8) -> Result<Handshake, HandshakeError> {
    let client = parse_request(request)?;
    if !serializers.contains(&client.serializer) {
        return Err(HandshakeError::SerializerUnsupported);
    }
    if client.max_len_exp < min_peer_len_exp {
        return Err(HandshakeError::MaxLengthUnacceptable);
    }
    Ok(client)
}

/// Router side: the success reply — the client's serializer echoed, our own receive limit.
pub fn success_reply(serializer: Serializer, our_max_len_exp: u8) -> [u8; 4] {
    Handshake::new(serializer, our_max_len_exp).to_bytes()
}

/// Client side: the request octets.
pub fn client_request(serializer: Serializer, max_len_exp: u8) -> [u8; 4] {
    Handshake::new(serializer, max_len_exp).to_bytes()
}

/// Why a client rejects the router's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// First octet is not `0x7F`.
    NotRawSocket(u8),
    /// Octets 3 and 4 are not zero.
    ReservedBits,
    /// The router sent an error reply with a defined code.
    Refused(HandshakeError),
    /// The router sent an error reply with code 0 (illegal) or 5–15 (undefined).
    RefusedUnknown(u8),
    /// The router answered with a serializer other than the one requested.
    SerializerMismatch { requested: Serializer, got: u8 },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NotRawSocket(b) => write!(f, "not a RawSocket reply (first octet 0x{b:02x})"),
            ReplyError::ReservedBits => f.write_str("reply uses reserved bits"),
            ReplyError::Refused(e) => write!(f, "router refused: {e}"),
            ReplyError::RefusedUnknown(code) => write!(f, "router refused with unknown error code {code}"),
            ReplyError::SerializerMismatch { requested, got } => {
                write!(f, "requested serializer {} but router chose {got}", requested.rawsocket_id())
            }
        }
    }
}

impl std::error::Error for ReplyError {}

/// Client side: parse the router's reply to a request for `requested`. On success returns
/// the router's half: the serializer and the router's receive limit (we must not send more).
pub fn parse_reply(reply: [u8; 4], requested: Serializer) -> Result<Handshake, ReplyError> {
    let [magic, second, r1, r2] = reply;
    if magic != MAGIC {
        return Err(ReplyError::NotRawSocket(magic));
    }
    if r1 != 0 || r2 != 0 {
        return Err(ReplyError::ReservedBits);
    }
    let ser_id = second & 0x0F;
    if ser_id == 0 {
        let code = second >> 4;
        return Err(HandshakeError::from_code(code).map_or(ReplyError::RefusedUnknown(code), ReplyError::Refused));
    }
    if ser_id != requested.rawsocket_id() {
        return Err(ReplyError::SerializerMismatch { requested, got: ser_id });
    }
    Ok(Handshake { serializer: requested, max_len_exp: second >> 4 })
}

// ---------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------

/// The `TTT` transport message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Message = 0,
    Ping = 1,
    Pong = 2,
}

impl FrameKind {
    fn from_bits(bits: u8) -> Option<FrameKind> {
        match bits {
            0 => Some(FrameKind::Message),
            1 => Some(FrameKind::Ping),
            2 => Some(FrameKind::Pong),
            _ => None,
        }
    }
}

/// One decoded transport message. The payload is a slice of the read buffer, not a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A serialized WAMP message.
    Message(Bytes),
    /// Must be answered with exactly one PONG echoing this payload, immediately.
    Ping(Bytes),
    Pong(Bytes),
}

/// A framing violation. Every one of them fails the connection (no reply is defined).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `RRRR` is not zero; carries the first octet.
    ReservedBits(u8),
    /// `TTT` is 3–7.
    ReservedType(u8),
    /// The X bit is set but the 24 length bits are not all zero.
    ExtraLengthBit,
    /// The frame is larger than our advertised receive limit (spec: MUST fail).
    TooBig { len: usize, max: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ReservedBits(b) => write!(f, "reserved bits set in frame prefix (0x{b:02x})"),
            Error::ReservedType(t) => write!(f, "reserved frame type {t}"),
            Error::ExtraLengthBit => f.write_str("X length bit set with a non-zero 24-bit length"),
            Error::TooBig { len, max } => write!(f, "frame of {len} bytes exceeds the limit of {max}"),
        }
    }
}

impl std::error::Error for Error {}

/// Incremental frame decoder. Feed it the connection's read buffer after every read; it
/// splits complete frames off the front without copying and leaves partial ones in place.
///
/// The prefix is consumed as soon as it is complete and validated, so an oversized or
/// malformed frame fails the connection before its payload is read.
#[derive(Clone, Debug)]
pub struct Decoder {
    max_len: usize,
    /// Prefix already consumed; waiting for this many payload bytes.
    pending: Option<(FrameKind, usize)>,
}

impl Decoder {
    /// `max_len` is our receive limit — the 2^(9+L) we advertised in the handshake.
    ///
    /// # Panics
    /// If `max_len` exceeds what the prefix can describe (16 MiB).
    pub fn new(max_len: usize) -> Decoder {
        assert!(max_len <= FRAME_PAYLOAD_MAX_BYTES, "RawSocket receive limit {max_len} > 16 MiB");
        Decoder { max_len, pending: None }
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// How many more bytes must be buffered (beyond `buffered`) before [`Decoder::decode`]
    /// can return a frame. Lets the runtime reserve once for a large frame.
    pub fn bytes_wanted(&self, buffered: usize) -> usize {
        match self.pending {
            Some((_, len)) => len.saturating_sub(buffered),
            None => FRAME_HEADER_BYTES.saturating_sub(buffered),
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After an `Err` the
    /// connection must be failed; the bad prefix is left in `buf`, so a further call
    /// returns the same error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Error> {
        let (kind, len) = match self.pending {
            Some(pending) => pending,
            None => {
                let Some(prefix) = buf.first_chunk::<FRAME_HEADER_BYTES>() else {
                    return Ok(None);
                };
                let header = parse_header(*prefix, self.max_len)?;
                buf.advance(FRAME_HEADER_BYTES);
                self.pending = Some(header);
                header
            }
        };
        if buf.len() < len {
            return Ok(None);
        }
        self.pending = None;
        let payload = buf.split_to(len).freeze();
        Ok(Some(match kind {
            FrameKind::Message => Frame::Message(payload),
            FrameKind::Ping => Frame::Ping(payload),
            FrameKind::Pong => Frame::Pong(payload),
        }))
    }
}

fn parse_header(prefix: [u8; 4], max_len: usize) -> Result<(FrameKind, usize), Error> {
    let first = prefix[0];
    if first & 0xF0 != 0 {
        return Err(Error::ReservedBits(first));
    }
    let kind = FrameKind::from_bits(first & 0x07).ok_or(Error::ReservedType(first & 0x07))?;
    let low = (u32::from_be_bytes(prefix) & LEN_MASK) as usize;
    let len = if first & EXTRA_LEN_BIT != 0 {
        // The only legal use of X: exactly 2^24, which 24 bits cannot say.
        if low != 0 {
            return Err(Error::ExtraLengthBit);
        }
        FRAME_PAYLOAD_MAX_BYTES
    } else {
        low
    };
    if len > max_len {
        return Err(Error::TooBig { len, max: max_len });
    }
    Ok((kind, len))
}

/// The 4-byte prefix for an outgoing frame of `len` payload bytes.
///
/// # Panics
/// If `len > 16 MiB`. The caller must already have checked `len` against the peer's limit
/// (the spec says a router MUST NOT send more), which is at most 16 MiB.
pub fn encode_header(kind: FrameKind, len: usize) -> [u8; 4] {
    assert!(len <= FRAME_PAYLOAD_MAX_BYTES, "RawSocket frame of {len} bytes > 16 MiB");
    if len == FRAME_PAYLOAD_MAX_BYTES {
        [EXTRA_LEN_BIT | kind as u8, 0, 0, 0]
    } else {
        // `len < 2^24`, so the top octet of the u32 is zero and is replaced by the type.
        let mut out = (len as u32).to_be_bytes();
        out[0] = kind as u8;
        out
    }
}

/// Prefix plus payload appended to `out` (tests, the load generator, PONG replies).
pub fn write_frame(kind: FrameKind, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&encode_header(kind, payload.len()));
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::ids::IdGen;

    // Goal: every (L, S) request the spec allows parses to what the spec's Python table
    // says; the success reply echoes S with our own L.
    #[test]
    fn handshake_request_and_success_reply() {
        for l in 0..=15u8 {
            for ser in Serializer::ALL {
                let req = [MAGIC, (l << 4) | ser.rawsocket_id(), 0, 0];
                let hs = accept(req, &Serializer::ALL, 0).expect("valid request");
                assert_eq!(hs, Handshake { serializer: ser, max_len_exp: l });
                assert_eq!(hs.max_len_bytes(), 1 << (9 + l));
                assert_eq!(client_request(ser, l), req);
                let reply = success_reply(hs.serializer, 15);
                assert_eq!(reply, [0x7F, 0xF0 | ser.rawsocket_id(), 0, 0]);
                let router = parse_reply(reply, ser).expect("valid reply");
                assert_eq!(router.max_len_bytes(), 16 * 1024 * 1024);
            }
        }
        assert_eq!(Handshake::new(Serializer::Json, 0).max_len_bytes(), 512);
    }

    // Goal: each refusal the router can produce maps to the spec's EEEE code and a reply
    // the client side decodes back to the same error.
    #[test]
    fn handshake_errors_and_replies() {
        let json = Serializer::Json.rawsocket_id();
        let cases: [([u8; 4], &[Serializer], u8, HandshakeError); 8] = [
            ([MAGIC, 0xF0, 0, 0], &Serializer::ALL, 0, HandshakeError::SerializerUnsupported), // SSSS = 0
            ([MAGIC, 0xF4, 0, 0], &Serializer::ALL, 0, HandshakeError::SerializerUnsupported), // UBJSON
            ([MAGIC, 0xFF, 0, 0], &Serializer::ALL, 0, HandshakeError::SerializerUnsupported), // reserved
            ([MAGIC, 0xF0 | json, 0, 0], &[Serializer::Cbor], 0, HandshakeError::SerializerUnsupported),
            ([MAGIC, 0x30 | json, 0, 0], &Serializer::ALL, 4, HandshakeError::MaxLengthUnacceptable),
            ([MAGIC, 0xF0 | json, 1, 0], &Serializer::ALL, 0, HandshakeError::ReservedBits),
            ([MAGIC, 0xF0 | json, 0, 0x80], &Serializer::ALL, 0, HandshakeError::ReservedBits),
            ([b'G', b'E', b'T', b' '], &Serializer::ALL, 0, HandshakeError::NotRawSocket(b'G')),
        ];
        for (req, sers, min, want) in cases {
            assert_eq!(accept(req, sers, min), Err(want), "request {req:02x?}");
        }
        assert_eq!(HandshakeError::SerializerUnsupported.reply(), Some([0x7F, 0x10, 0, 0]));
        assert_eq!(HandshakeError::MaxLengthUnacceptable.reply(), Some([0x7F, 0x20, 0, 0]));
        assert_eq!(HandshakeError::ReservedBits.reply(), Some([0x7F, 0x30, 0, 0]));
        assert_eq!(HandshakeError::MaxConnections.reply(), Some([0x7F, 0x40, 0, 0]));
        assert_eq!(HandshakeError::NotRawSocket(0).reply(), None);
        for err in [
            HandshakeError::SerializerUnsupported,
            HandshakeError::MaxLengthUnacceptable,
            HandshakeError::ReservedBits,
            HandshakeError::MaxConnections,
        ] {
            let reply = err.reply().expect("has a reply");
            assert_eq!(parse_reply(reply, Serializer::Json), Err(ReplyError::Refused(err)));
        }
    }

    // Goal: the client side rejects every malformed or unexpected reply.
    #[test]
    fn client_rejects_bad_replies() {
        let s = Serializer::MsgPack;
        assert_eq!(parse_reply([0x00, 0xF2, 0, 0], s), Err(ReplyError::NotRawSocket(0)));
        assert_eq!(parse_reply([MAGIC, 0xF2, 0, 1], s), Err(ReplyError::ReservedBits));
        assert_eq!(parse_reply([MAGIC, 0x00, 0, 0], s), Err(ReplyError::RefusedUnknown(0)));
        assert_eq!(parse_reply([MAGIC, 0x50, 0, 0], s), Err(ReplyError::RefusedUnknown(5)));
        assert_eq!(parse_reply([MAGIC, 0xF1, 0, 0], s), Err(ReplyError::SerializerMismatch { requested: s, got: 1 }));
        assert_eq!(parse_reply([MAGIC, 0x92, 0, 0], s), Ok(Handshake { serializer: s, max_len_exp: 9 }));
    }

    #[test]
    fn len_exp_for_rounds_down_and_clamps() {
        assert_eq!(len_exp_for(0), 0);
        assert_eq!(len_exp_for(512), 0);
        assert_eq!(len_exp_for(1023), 0);
        assert_eq!(len_exp_for(1024), 1);
        assert_eq!(len_exp_for(crate::limits::MESSAGE_SIZE_MAX_BYTES), 15);
        assert_eq!(len_exp_for(usize::MAX), 15);
    }

    // Goal: the prefix encodes length and type as the spec's bit diagrams show, including
    // both sides of the X-bit boundary.
    #[test]
    fn encode_header_bit_layout() {
        assert_eq!(encode_header(FrameKind::Message, 0), [0, 0, 0, 0]);
        assert_eq!(encode_header(FrameKind::Ping, 0x010203), [1, 1, 2, 3]);
        assert_eq!(encode_header(FrameKind::Pong, 5), [2, 0, 0, 5]);
        assert_eq!(encode_header(FrameKind::Message, (1 << 24) - 1), [0x00, 0xFF, 0xFF, 0xFF]);
        assert_eq!(encode_header(FrameKind::Message, 1 << 24), [0x08, 0, 0, 0]);
        assert_eq!(encode_header(FrameKind::Pong, 1 << 24), [0x0A, 0, 0, 0]);
    }

    #[test]
    #[should_panic(expected = "> 16 MiB")]
    fn encode_header_refuses_more_than_16_mib() {
        let _ = encode_header(FrameKind::Message, (1 << 24) + 1);
    }

    fn sample_stream() -> (Vec<u8>, Vec<Frame>) {
        let mut wire = Vec::new();
        let mut frames = Vec::new();
        let payloads: [(FrameKind, &[u8]); 6] = [
            (FrameKind::Message, b"[1,\"realm1\",{}]"),
            (FrameKind::Ping, b"are you there"),
            (FrameKind::Message, b""),
            (FrameKind::Pong, b""),
            (FrameKind::Message, &[0x93, 0x01, 0x02, 0x03]),
            (FrameKind::Message, &[0xAB; 600]),
        ];
        for (kind, p) in payloads {
            write_frame(kind, p, &mut wire);
            let b = Bytes::copy_from_slice(p);
            frames.push(match kind {
                FrameKind::Message => Frame::Message(b),
                FrameKind::Ping => Frame::Ping(b),
                FrameKind::Pong => Frame::Pong(b),
            });
        }
        (wire, frames)
    }

    /// Feeds `wire` in chunks whose sizes `next_chunk` picks, decoding after each.
    fn decode_chunked(wire: &[u8], max: usize, mut next_chunk: impl FnMut() -> usize) -> Result<Vec<Frame>, Error> {
        let mut dec = Decoder::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            let end = (pos + next_chunk().max(1)).min(wire.len());
            buf.extend_from_slice(&wire[pos..end]);
            pos = end;
            while let Some(f) = dec.decode(&mut buf)? {
                out.push(f);
            }
        }
        assert!(buf.is_empty(), "bytes left over");
        Ok(out)
    }

    // Goal: partial input at every byte boundary gives the same frames as whole input.
    // Method: whole, byte-at-a-time, and 200 seeded random chunkings.
    #[test]
    fn decode_partial_input_matches_whole() {
        let (wire, want) = sample_stream();
        assert_eq!(decode_chunked(&wire, 1024, || wire.len()), Ok(want.clone()));
        assert_eq!(decode_chunked(&wire, 1024, || 1), Ok(want.clone()));
        let mut rng = IdGen::new(7);
        for _ in 0..200 {
            assert_eq!(decode_chunked(&wire, 1024, || rng.below(40) + 1), Ok(want.clone()));
        }
    }

    // Goal: payloads are slices of the read buffer (no copy).
    #[test]
    fn decode_does_not_copy_payload() {
        let mut buf = BytesMut::new();
        write_frame_into(&mut buf, FrameKind::Message, b"hello");
        let base = buf.as_ptr() as usize;
        let Ok(Some(Frame::Message(p))) = Decoder::new(512).decode(&mut buf) else { panic!("expected a message") };
        assert_eq!(p.as_ptr() as usize, base + FRAME_HEADER_BYTES);
    }

    fn write_frame_into(buf: &mut BytesMut, kind: FrameKind, payload: &[u8]) {
        let mut v = Vec::new();
        write_frame(kind, payload, &mut v);
        buf.extend_from_slice(&v);
    }

    fn decode_one(prefix: [u8; 4], max: usize) -> Result<Option<Frame>, Error> {
        Decoder::new(max).decode(&mut BytesMut::from(&prefix[..]))
    }

    // Goal: every framing error path, detected from the prefix alone (no payload needed).
    #[test]
    fn decode_errors() {
        for t in 3..=7u8 {
            assert_eq!(decode_one([t, 0, 0, 1], 512), Err(Error::ReservedType(t)));
        }
        for r in [0x10u8, 0x20, 0x40, 0x80] {
            assert_eq!(decode_one([r, 0, 0, 1], 512), Err(Error::ReservedBits(r)));
        }
        assert_eq!(decode_one([0x08, 0, 0, 1], 1 << 24), Err(Error::ExtraLengthBit));
        assert_eq!(decode_one([0x08, 0x80, 0, 0], 1 << 24), Err(Error::ExtraLengthBit));
        assert_eq!(decode_one([0x08, 0, 0, 0], 1 << 23), Err(Error::TooBig { len: 1 << 24, max: 1 << 23 }));
        assert_eq!(decode_one([0x00, 0, 0x02, 0x01], 512), Err(Error::TooBig { len: 513, max: 512 }));
        assert_eq!(decode_one([0x01, 0, 0x02, 0x01], 512), Err(Error::TooBig { len: 513, max: 512 }));
        // At the limit is fine: the decoder waits for the payload.
        assert_eq!(decode_one([0x00, 0, 0x02, 0x00], 512), Ok(None));
    }

    // Goal: the X bit carries exactly 16 MiB, end to end.
    #[test]
    fn decode_16_mib_frame_with_x_bit() {
        let mut buf = BytesMut::with_capacity(FRAME_HEADER_BYTES + FRAME_PAYLOAD_MAX_BYTES);
        buf.extend_from_slice(&encode_header(FrameKind::Message, FRAME_PAYLOAD_MAX_BYTES));
        let mut dec = Decoder::new(FRAME_PAYLOAD_MAX_BYTES);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(dec.bytes_wanted(buf.len()), FRAME_PAYLOAD_MAX_BYTES);
        buf.resize(FRAME_PAYLOAD_MAX_BYTES - 1, 0x5A);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(dec.bytes_wanted(buf.len()), 1);
        buf.extend_from_slice(&[0x5A]);
        let Ok(Some(Frame::Message(p))) = dec.decode(&mut buf) else { panic!("expected a message") };
        assert_eq!(p.len(), FRAME_PAYLOAD_MAX_BYTES);
        assert!(buf.is_empty());
    }

    // Goal: no input makes the decoder panic. Method: seeded random bytes, biased towards
    // valid-looking prefixes so payload paths are reached too.
    #[test]
    fn decode_fuzz_no_panic() {
        let mut rng = IdGen::new(0xF022);
        for _ in 0..20_000 {
            let n = rng.below(64);
            let mut bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            if let Some(b) = bytes.first_mut()
                && rng.below(2) == 0
            {
                *b &= 0x0F;
            }
            let mut buf = BytesMut::from(&bytes[..]);
            let mut dec = Decoder::new(64);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }

    // Goal: every possible second octet is handled on both sides without panicking, and
    // the server accepts exactly the octets with a known serializer nibble.
    #[test]
    fn handshake_exhaustive_second_octet() {
        for second in 0..=255u8 {
            let ok = accept([MAGIC, second, 0, 0], &Serializer::ALL, 0).is_ok();
            assert_eq!(ok, (1..=3).contains(&(second & 0x0F)), "octet 0x{second:02x}");
            let _ = parse_reply([MAGIC, second, 0, 0], Serializer::Cbor);
        }
    }
}
