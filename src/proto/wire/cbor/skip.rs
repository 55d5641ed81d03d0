//! The validating walk over one CBOR item ([`Cursor::skip`]): what the payload goes through
//! on its way through the router, checked in place and never built.
//!
//! Must not: build values, allocate, or recurse: the open containers live in a fixed array
//! of `VALUE_DEPTH_MAX` entries, so the depth bound is also the bound on the walk's memory.

use super::item::{Cursor, Head, too_deep};
use crate::limits::VALUE_DEPTH_MAX;
use crate::proto::wire::codec::ValueKind;
use crate::proto::wire::error::DecodeError;

/// A container open during `Cursor::skip`.
#[derive(Clone, Copy, Debug)]
enum Open {
    /// A definite-length list or dict with this many items (a dict's keys and values) to go.
    Items(u64),
    /// An indefinite-length list or dict (`pairs`), which ends at a break; `half` is set
    /// between a dict key and its value, where a break is an error.
    UntilBreak { pairs: bool, half: bool },
}

impl Cursor<'_> {
    /// Validate one item without building it. The walk keeps the open containers in a fixed
    /// array instead of recursing, so the depth bound is also the bound on the walk's memory.
    pub(super) fn skip(&mut self) -> Result<ValueKind, DecodeError> {
        let mut open = [Open::Items(0); VALUE_DEPTH_MAX];
        let mut depth = 0;
        let mut head = self.head()?;
        let kind = head.kind();
        loop {
            let opened = match head {
                Head::Array(Some(n)) => Some(Open::Items(n)),
                Head::Array(None) => Some(Open::UntilBreak { pairs: false, half: false }),
                // A hostile count saturates; the input runs out long before.
                Head::Map(Some(n)) => Some(Open::Items(n.saturating_mul(2))),
                Head::Map(None) => Some(Open::UntilBreak { pairs: true, half: false }),
                _ => None,
            };
            if let Some(opened) = opened {
                let Some(slot) = open.get_mut(depth) else {
                    return Err(too_deep());
                };
                *slot = opened;
                depth += 1;
            }
            // Find the container the next item belongs to, closing the finished ones. Every
            // item takes at least one byte, so a hostile count ends in a truncation error.
            loop {
                let Some(innermost) = depth.checked_sub(1).and_then(|i| open.get_mut(i)) else {
                    return Ok(kind);
                };
                match innermost {
                    Open::Items(0) => depth -= 1,
                    Open::Items(n) => {
                        *n -= 1;
                        break;
                    }
                    Open::UntilBreak { pairs, half } => {
                        if !self.at_break()? {
                            *half = *pairs && !*half;
                            break;
                        }
                        if *half {
                            return Err(DecodeError::KeyWithoutValue { at: self.pos() });
                        }
                        self.d.set_position(self.pos() + 1);
                        depth -= 1;
                    }
                }
            }
            head = self.head()?;
        }
    }
}
