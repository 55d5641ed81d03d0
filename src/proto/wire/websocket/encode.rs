//! Writing WebSocket frames: unmasked server headers, written apart from the payload so that
//! one encoded EVENT is shared by every subscriber's queue and each connection gets its own
//! few header bytes in front of it; masked client frames (load generator, tests); Close
//! frames.
//!
//! Must not: decide what to send (the connection code does), or accept a control frame it
//! cannot send (those are built here, so a bad one is a bug and panics).

use super::frame::{CLOSE_REASON_MAX_BYTES, HEADER_MAX_BYTES, MASKED_HEADER_MAX_BYTES, OpCode, unmask};
use crate::limits;

/// Write an unmasked (server) frame header for a payload of `payload_len` bytes into `out`;
/// returns how many bytes of `out` it used (2, 4 or 10). The payload itself is not
/// touched, so one payload can go to many connections.
///
/// # Panics
/// For a control frame that is not final or longer than 125 bytes: we build those
/// ourselves, so that is a bug here, not peer input.
pub fn encode_header(opcode: OpCode, fin: bool, payload_len: usize, out: &mut [u8; HEADER_MAX_BYTES]) -> usize {
    assert_control_frame(opcode, fin, payload_len);
    out[0] = (u8::from(fin) << 7) | opcode as u8;
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// Write a masked (client) frame header with the caller's `mask` key; returns its length
/// (6, 8 or 14). The caller masks the payload (see [`write_masked_frame`]).
///
/// # Panics
/// As [`encode_header`].
pub fn encode_masked_header(
    opcode: OpCode,
    fin: bool,
    payload_len: usize,
    mask: [u8; 4],
    out: &mut [u8; MASKED_HEADER_MAX_BYTES],
) -> usize {
    let mut plain = [0u8; HEADER_MAX_BYTES];
    let n = encode_header(opcode, fin, payload_len, &mut plain);
    out[..n].copy_from_slice(&plain[..n]);
    out[1] |= 0x80;
    out[n..n + 4].copy_from_slice(&mask);
    n + 4
}

fn assert_control_frame(opcode: OpCode, fin: bool, payload_len: usize) {
    assert!(
        !opcode.is_control() || (fin && payload_len <= limits::WS_CONTROL_PAYLOAD_MAX_BYTES),
        "control frame must be final and at most 125 bytes"
    );
}

/// Append a final, unmasked (server) frame to `out`.
pub fn write_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let mut header = [0u8; HEADER_MAX_BYTES];
    let n = encode_header(opcode, true, payload.len(), &mut header);
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
}

/// Append a masked (client) frame to `out`. The key is a parameter so that tests and the
/// load generator stay deterministic; a real client should draw it at random per frame.
pub fn write_masked_frame(opcode: OpCode, fin: bool, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let mut header = [0u8; MASKED_HEADER_MAX_BYTES];
    let n = encode_masked_header(opcode, fin, payload.len(), mask, &mut header);
    out.extend_from_slice(&header[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask);
}

/// A Close payload: the code, then `reason` cut at a character boundary to fit in a
/// control frame.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(CLOSE_REASON_MAX_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

/// Append a server Close frame with `code` and `reason` to `out`.
pub fn write_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    write_frame(OpCode::Close, &close_payload(code, reason), out);
}
