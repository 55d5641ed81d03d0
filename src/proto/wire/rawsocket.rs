//! RawSocket transport codec (placeholder until the full codec lands).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Message,
}

pub fn encode_header(_kind: FrameKind, len: u32) -> [u8; 4] {
    let l = len.to_be_bytes();
    [0, l[1], l[2], l[3]]
}
