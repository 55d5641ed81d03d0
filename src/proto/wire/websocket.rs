//! WebSocket transport codec (placeholder until the full codec lands).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Text,
    Binary,
}

/// Write a server (unmasked) frame header; returns its length.
pub fn encode_header(opcode: OpCode, fin: bool, len: u64, out: &mut [u8; 10]) -> usize {
    out[0] = (if fin { 0x80 } else { 0 }) | if opcode == OpCode::Text { 1 } else { 2 };
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= 0xFFFF {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    }
}
