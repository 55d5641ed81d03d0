//! The validating walk over one CBOR item ([`Cursor::skip`]): what the payload goes through
//! on its way through the router, checked in place and never built; and the size check of a
//! dict element built on it ([`Cursor::check_dict_size`]).
//!
//! Must not: build values, allocate, or recurse: the open containers live in a fixed array
//! of `VALUE_DEPTH_MAX` entries, so the depth bound is also the bound on the walk's memory.

use super::item::{Cursor, Head, too_deep};
use crate::limits::{OPTIONS_MAX_BYTES, VALUE_DEPTH_MAX};
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
    /// Validate one item without building it, whatever its dict keys are (as payload values
    /// may have them).
    pub(super) fn skip(&mut self) -> Result<ValueKind, DecodeError> {
        self.walk(&mut [Open::Items(0); VALUE_DEPTH_MAX])
    }

    /// Validate one element of a message without building it: as `skip`, and a dict's own
    /// keys must be strings (WAMP's rule for `Options`, `Details` and `ArgumentsKw`, so such
    /// a payload can reach a JSON peer); keys nested deeper are application data. A dict's
    /// pairs are read here, each value walked one level down, so the walk itself is the
    /// payload's and costs nothing more.
    pub(super) fn skip_element(&mut self) -> Result<ValueKind, DecodeError> {
        let mut open = [Open::Items(0); VALUE_DEPTH_MAX];
        let start = self.pos();
        let Head::Map(mut left) = self.head()? else {
            self.d.set_position(start);
            return self.walk(&mut open);
        };
        let Some(inner) = open.get_mut(1..) else {
            return Err(too_deep());
        };
        while self.next_item(&mut left)? {
            let at = self.pos();
            let key = self.head()?;
            if !matches!(key, Head::Str(_) | Head::StrChunks(_)) {
                return Err(DecodeError::KeyType { found: key.name(), at, integers_allowed: false });
            }
            if left.is_none() && self.at_break()? {
                return Err(DecodeError::KeyWithoutValue { at: self.pos() });
            }
            self.walk(inner)?;
        }
        Ok(ValueKind::Dict)
    }

    /// Refuse the dict whose header is at `start` if its encoding runs past
    /// `limits::OPTIONS_MAX_BYTES`, before any of it is built: it is walked over a view of
    /// the input cut at the cap, so the walk reads no further and allocates nothing. When the
    /// rest of the input fits the cap there is nothing to check.
    pub(super) fn check_dict_size(&self, start: usize) -> Result<(), DecodeError> {
        let input = self.d.input();
        let Some(cut) = input.get(..start.saturating_add(OPTIONS_MAX_BYTES)) else {
            return Ok(());
        };
        if cut.len() == input.len() {
            return Ok(());
        }
        let mut probe = Cursor::new(cut);
        probe.d.set_position(start);
        match probe.skip() {
            // Running out of the cut view means the dict needs bytes beyond the cap.
            Err(DecodeError::Truncated { .. }) => Err(DecodeError::DictTooLarge),
            other => other.map(|_| ()),
        }
    }

    /// The walk behind `skip`: it keeps the open containers in `open` instead of recursing,
    /// so the nesting it accepts is `open`'s length (the depth bound less the containers
    /// around the item), and that is also the bound on its memory.
    fn walk(&mut self, open: &mut [Open]) -> Result<ValueKind, DecodeError> {
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
