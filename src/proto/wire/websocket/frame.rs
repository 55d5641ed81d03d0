//! The WebSocket frame vocabulary (RFC 6455 §5) that the decoder and the encoders share:
//! opcodes, roles, close codes, header sizes, the decoded [`Event`]s, the peer's protocol
//! [`Error`]s, and unmasking.
//!
//! Must not: hold state or do I/O.

use std::fmt;

use bytes::Bytes;

use crate::limits;
use crate::proto::wire::codec::Serializer;

/// Frame opcodes (RFC 6455 §5.2); 3–7 and 11–15 are reserved and rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    pub(super) fn from_bits(bits: u8) -> Option<OpCode> {
        match bits {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    /// The data opcode WAMP uses for a serializer: text for JSON, binary otherwise.
    pub fn for_serializer(ser: Serializer) -> OpCode {
        if ser.is_binary() { OpCode::Binary } else { OpCode::Text }
    }
}

/// Which end of the connection the decoder sits on; decides the masking rule (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We are the server: every incoming frame must be masked.
    Server,
    /// We are the client: no incoming frame may be masked.
    Client,
}

/// Close status codes shardbar sends (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Whether `code` may appear in a Close frame on the wire: 1000–1003, 1007–1011 and the
/// application/library ranges 3000–4999. 1004 is reserved; 1005, 1006 and 1015 are for
/// local reporting only (RFC 6455 §7.4.1); everything else is unassigned.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Longest close reason that fits a control frame after the 2-byte code.
pub const CLOSE_REASON_MAX_BYTES: usize = limits::WS_CONTROL_PAYLOAD_MAX_BYTES - 2;

/// Longest unmasked (server) frame header.
pub const HEADER_MAX_BYTES: usize = 10;

/// Longest masked (client) frame header.
pub const MASKED_HEADER_MAX_BYTES: usize = 14;

/// One decoded item. Data messages are whole (fragments reassembled); text messages are
/// valid UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Message {
        binary: bool,
        data: Bytes,
    },
    /// Answer with a Pong carrying the same payload.
    Ping(Bytes),
    Pong(Bytes),
    /// The peer started (or answered) the closing handshake. `code` is `None` for an empty
    /// Close. The decoder yields nothing after this.
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// A protocol violation by the peer: send a Close with `code` and `reason`, then drop the
/// connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: u16,
    pub reason: &'static str,
}

impl Error {
    pub(super) const fn protocol(reason: &'static str) -> Error {
        Error { code: close_code::PROTOCOL_ERROR, reason }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for Error {}

pub(super) const INVALID_UTF8: Error =
    Error { code: close_code::INVALID_PAYLOAD, reason: "invalid UTF-8 in text message" };

/// XOR `buf` with the repeating 4-byte masking `key` (RFC 6455 §5.3), in place.
///
/// The hot path of every client→server byte. Works on 8-byte words (the key repeated
/// twice), which the compiler turns into SIMD; the tail is done byte by byte.
pub fn unmask(buf: &mut [u8], key: [u8; 4]) {
    let [k0, k1, k2, k3] = key;
    let key_word = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let (words, tail) = buf.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ key_word).to_ne_bytes();
    }
    // `words` covered a multiple of 8 bytes, so the tail starts at key index 0.
    for (b, k) in tail.iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

/// [`unmask`] for a slice that starts `offset` bytes into the payload.
pub(super) fn unmask_at(buf: &mut [u8], mut key: [u8; 4], offset: usize) {
    key.rotate_left(offset % 4);
    unmask(buf, key);
}
