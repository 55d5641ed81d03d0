//! The CBOR serializer (`wamp.2.cbor`, RFC 8949): the [`codec::Reader`] and
//! [`codec::Writer`] for WAMP messages, and payload value decode/encode.
//!
//! Files: `item.rs` reads one item header and builds values, `skip.rs` is the validating
//! walk the payload goes through, `write.rs` the writer, this file the message reader and
//! payload decoding.
//!
//! This module owns the CBOR byte format only: item headers, lengths, tags, indefinite-length
//! items, the value mapping, nesting bounds and the exact bytes written. It must not know
//! message layouts (those are in `message.rs`, which it never imports), must not build values
//! for the payload on the way through (`skip` validates it in place and returns its byte range),
//! must not allocate from a length prefix before the bytes it announces are there, and must not
//! panic on any input.
//!
//! Built on `minicbor`'s [`minicbor::Decoder`] and [`minicbor::Encoder`]. What was checked about
//! minicbor 2.3: the decoder borrows the input and allocates nothing to read items, and
//! `position()` / `set_position()` expose the byte offset, which is what the zero-copy payload
//! range needs. Its `skip()` exists too, but it is not used: it does not bound nesting, it
//! accepts a stray break byte (`0xff`) where an item must be, it does not check that an
//! indefinite-length map holds whole key/value pairs, and with the `alloc` feature it keeps a
//! heap stack that hostile nesting can grow with the input. So these files walk items
//! themselves, at most `limits::VALUE_DEPTH_MAX` deep (`skip` with a fixed array of open
//! containers, value decoding by bounded recursion), and use minicbor to read item headers and
//! bodies: integers, floats, text (UTF-8 checked, chunk by chunk for indefinite strings), bytes,
//! array/map headers and tags. Items whose value or length fits in the initial byte (small
//! integers, short strings, small lists and dicts, the simple values) are read directly, which
//! made decoding a PUBLISH about 1.8 times faster than going through minicbor for every item.
//! Half floats are decoded here because minicbor only offers them behind its optional `half`
//! feature, and ten lines are cheaper than a dependency.
//!
//! Decoding accepts indefinite-length arrays, maps, text and byte strings (ended by a break
//! byte) and semantic tags, which are ignored (the tagged value is kept), including the
//! self-describe tag 55799 in front of a message, except the bignum tags (below). Encoding writes definite lengths only, every
//! header in its smallest form, the way autobahn-python's `cbor2.dumps` writes it, so
//! re-encoding reproduces the WAMP test vectors byte for byte: floats are float64 (`fb`),
//! except NaN and the infinities, which cbor2 writes as half floats (`f97e00`, `f97c00`,
//! `f9fc00`).
//!
//! Value mapping on decode: non-negative integers become [`Value::UInt`], negative ones
//! [`Value::Int`], and negatives below `i64::MIN` (CBOR reaches -2^64) [`Value::Float`]; half,
//! single and double floats become [`Value::Float`]; text becomes [`Value::Str`], byte strings
//! [`Value::Bytes`]. `undefined` (and the unassigned simple values) have no WAMP meaning, but
//! wampy sends `undefined` for absent options, so in an options/details dict read by
//! [`codec::Reader::dict`] an entry whose value is `undefined` is left out; anywhere else it
//! becomes [`Value::Null`], and `skip` reports it as [`ValueKind::Other`].
//!
//! Bignums (RFC 8949 §3.4.3; Autobahn|JS sends large integers so) are integers when they fit
//! the value model: tag 2 (positive, the byte string is the magnitude n) up to `u64::MAX` is
//! a [`Value::UInt`], tag 3 (negative, -1 - n) down to `i64::MIN` a [`Value::Int`], leading
//! zero bytes allowed; so a JSON or MessagePack peer receives them as integers, and in an ID
//! position they are read as IDs. Larger ones keep the meaning they always had here: the
//! tag is ignored and the value is the magnitude's bytes ([`Value::Bytes`], binary for every
//! peer); in an ID position they are refused (`IntegerOutOfRange`, or a negative integer).
//!
//! Bounds on what a message may cost: a dict element (`Options`, `Details`) larger than
//! `limits::OPTIONS_MAX_BYTES` is refused before any of it is built, and the values built for
//! one message are counted against `limits::OPTIONS_VALUES_MAX` ([`codec::Budget`]). The
//! payload is never built, but its walk checks that an `ArgumentsKw` dict has string keys.

use std::ops::Range;

use self::item::{Cursor, Head, Mode};
pub use self::write::{Writer, encode_value};
use super::codec::{self, ValueKind};
use super::error::{DecodeError, Found};
use super::value::{Dict, Value};

mod item;
mod skip;
#[cfg(test)]
mod tests;
mod write;

/// Reads one WAMP message: a CBOR array, of definite or indefinite length.
pub struct Reader<'a> {
    cur: Cursor<'a>,
    /// Elements of the top-level list not read yet; `None` for an indefinite list, which
    /// ends at its break byte.
    left: Option<u64>,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { cur: Cursor::for_message(buf), left: Some(0) }
    }

    /// Account for one top-level element about to be read.
    fn element(&mut self) -> Result<(), DecodeError> {
        match self.left {
            Some(0) => Err(DecodeError::ReadPastEnd),
            Some(ref mut n) => {
                *n -= 1;
                Ok(())
            }
            None if self.cur.at_break()? => Err(DecodeError::ReadPastEnd),
            None => Ok(()),
        }
    }
}

impl codec::Reader for Reader<'_> {
    fn begin(&mut self) -> Result<(), DecodeError> {
        match self.cur.head()? {
            Head::Array(n) => {
                self.left = n;
                Ok(())
            }
            other => Err(DecodeError::NotAList { found: other.name() }),
        }
    }

    fn more(&mut self) -> Result<bool, DecodeError> {
        match self.left {
            Some(n) => Ok(n > 0),
            None => Ok(!self.cur.at_break()?),
        }
    }

    fn uint(&mut self) -> Result<u64, DecodeError> {
        self.element()?;
        match self.cur.head()? {
            Head::UInt(v) => Ok(v),
            // -1 - v for a negative i64 is at most i64::MAX: the conversion cannot fail.
            Head::Int(v) => Err(non_negative(u64::try_from(-1 - i128::from(v)).unwrap_or(u64::MAX))),
            Head::BigNeg(n) => Err(non_negative(n)),
            Head::BigNum { negative: false, .. } => Err(DecodeError::IntegerOutOfRange),
            other @ Head::BigNum { negative: true, .. } => {
                Err(DecodeError::WrongType { expected: "a non-negative integer", found: Found::Type(other.name()) })
            }
            other => Err(DecodeError::WrongType { expected: "an integer", found: Found::Type(other.name()) }),
        }
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.element()?;
        match self.cur.head()? {
            Head::Str(s) => Ok(s.to_owned()),
            Head::StrChunks(at) => self.cur.text_chunks(at),
            other => Err(DecodeError::WrongType { expected: "a string", found: Found::Type(other.name()) }),
        }
    }

    fn dict(&mut self) -> Result<Dict, DecodeError> {
        self.element()?;
        let start = self.cur.pos();
        match self.cur.head()? {
            Head::Map(n) => {
                self.cur.check_dict_size(start)?;
                // The dict counts as a value, as it does where a builder makes it (JSON).
                self.cur.budget.take()?;
                self.cur.map(n, 0, Mode::Options)
            }
            other => Err(DecodeError::WrongType { expected: "a dict", found: Found::Type(other.name()) }),
        }
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        self.element()?;
        Ok(self.cur.value(0, Mode::Payload)?.unwrap_or(Value::Null))
    }

    fn skip(&mut self) -> Result<(Range<usize>, ValueKind), DecodeError> {
        self.element()?;
        let start = self.cur.pos();
        let kind = self.cur.skip_element()?;
        Ok((start..self.cur.pos(), kind))
    }

    fn end(&mut self) -> Result<(), DecodeError> {
        match self.left {
            Some(0) => {}
            Some(n) => return Err(DecodeError::UnreadElements { count: Some(n) }),
            None if self.cur.at_break()? => self.cur.d.set_position(self.cur.pos() + 1),
            None => return Err(DecodeError::UnreadElements { count: None }),
        }
        let trailing = self.cur.left();
        if trailing > 0 {
            return Err(DecodeError::TrailingBytes { count: trailing });
        }
        Ok(())
    }
}

/// The error for a negative integer `-1 - n` where a non-negative one belongs.
fn non_negative(n: u64) -> DecodeError {
    DecodeError::WrongType { expected: "a non-negative integer", found: Found::Negative(n) }
}

/// Decode a payload's raw elements: concatenated values, exactly as `Payload.raw` holds them.
pub fn decode_values(raw: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let mut cur = Cursor::new(raw);
    let mut out = Vec::with_capacity(2);
    while !cur.at_end() {
        out.push(cur.value(0, Mode::Payload)?.unwrap_or(Value::Null));
    }
    Ok(out)
}
