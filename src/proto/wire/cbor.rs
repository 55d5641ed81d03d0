//! The CBOR serializer (`wamp.2.cbor`, RFC 8949): the [`message::Reader`] and
//! [`message::Writer`] for WAMP messages, and payload value decode/encode.
//!
//! This file owns the CBOR byte format only: item headers, lengths, tags, indefinite-length
//! items, the value mapping, nesting bounds and the exact bytes written. It must not know
//! message layouts (those are in `message.rs`), must not build values for the payload on the
//! way through (`skip` validates it in place and returns its byte range), must not allocate
//! from a length prefix before the bytes it announces are there, and must not panic on any
//! input.
//!
//! Built on `minicbor`'s [`Decoder`] and [`Encoder`]. What was checked about minicbor 2.3:
//! the decoder borrows the input and allocates nothing to read items, and `position()` /
//! `set_position()` expose the byte offset, which is what the zero-copy payload range needs.
//! Its `skip()` exists too, but it is not used: it does not bound nesting, it accepts a stray
//! break byte (`0xff`) where an item must be, it does not check that an indefinite-length map
//! holds whole key/value pairs, and with the `alloc` feature it keeps a heap stack that hostile
//! nesting can grow with the input. So this file walks items itself, at most
//! `limits::VALUE_DEPTH_MAX` deep (`skip` with a fixed array of open containers, value decoding
//! by bounded recursion), and uses minicbor to read item headers and bodies: integers, floats,
//! text (UTF-8 checked, chunk by chunk for indefinite strings), bytes, array/map headers and
//! tags. Items whose value or length fits in the initial byte (small integers, short strings,
//! small lists and dicts, the simple values) are read directly, which made decoding a PUBLISH
//! about 1.8 times faster than going through minicbor for every item. Half floats are decoded
//! here because minicbor only offers them behind its optional `half` feature, and ten lines are
//! cheaper than a dependency.
//!
//! Decoding accepts indefinite-length arrays, maps, text and byte strings (ended by a break
//! byte) and semantic tags, which are ignored (the tagged value is kept), including the
//! self-describe tag 55799 in front of a message. Encoding writes definite lengths only, every
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
//! [`message::Reader::dict`] an entry whose value is `undefined` is left out; anywhere else it
//! becomes [`Value::Null`], and `skip` reports it as [`ValueKind::Other`].

use std::convert::Infallible;
use std::ops::Range;

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

use super::message::{self, DecodeError, ValueKind};
use super::value::{Dict, MapBuilder, Value};
use crate::limits::VALUE_DEPTH_MAX;

/// The break byte that ends an indefinite-length item.
const BREAK: u8 = 0xff;

/// One CBOR item header, tags already skipped. Containers carry their length (`None` for
/// indefinite); definite strings borrow their bodies (text already checked to be UTF-8), and
/// indefinite strings, already validated, are remembered by the offset of their header.
#[derive(Debug)]
enum Head<'a> {
    Null,
    Bool(bool),
    UInt(u64),
    /// A negative integer that fits `i64`.
    Int(i64),
    /// A negative integer below `i64::MIN`: the value is `-1 - n`.
    BigNeg(u64),
    Float(f64),
    Str(&'a str),
    StrChunks(usize),
    Bytes(&'a [u8]),
    BytesChunks(usize),
    Array(Option<u64>),
    Map(Option<u64>),
    /// `undefined` or an unassigned simple value: no WAMP meaning (wampy's `undefined`).
    Undefined,
}

impl Head<'_> {
    fn kind(&self) -> ValueKind {
        match self {
            Head::Null => ValueKind::Null,
            Head::Bool(_) => ValueKind::Bool,
            Head::UInt(_) | Head::Int(_) => ValueKind::Int,
            // Reported as it decodes: such an integer becomes a float.
            Head::BigNeg(_) | Head::Float(_) => ValueKind::Float,
            Head::Str(_) | Head::StrChunks(_) => ValueKind::Str,
            Head::Bytes(_) | Head::BytesChunks(_) => ValueKind::Bytes,
            Head::Array(_) => ValueKind::List,
            Head::Map(_) => ValueKind::Dict,
            Head::Undefined => ValueKind::Other,
        }
    }

    /// The type's name in error texts (the same words as `Value::type_name`).
    fn name(&self) -> &'static str {
        match self {
            Head::Null => "null",
            Head::Bool(_) => "bool",
            Head::UInt(_) | Head::Int(_) | Head::BigNeg(_) => "integer",
            Head::Float(_) => "float",
            Head::Str(_) | Head::StrChunks(_) => "string",
            Head::Bytes(_) | Head::BytesChunks(_) => "binary",
            Head::Array(_) => "list",
            Head::Map(_) => "dict",
            Head::Undefined => "undefined",
        }
    }
}

/// How values that WAMP cannot express are treated while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// An options/details dict: `undefined` entries are absent, keys must be strings.
    Options,
    /// Application payload: `undefined` becomes null, integer keys their decimal string.
    Payload,
}

fn truncated(at: usize) -> DecodeError {
    DecodeError(format!("truncated input: the item at offset {at} runs past the end"))
}

/// A minicbor error as a `DecodeError` naming the offset of the item that failed.
fn invalid(e: minicbor::decode::Error, at: usize) -> DecodeError {
    if e.is_end_of_input() { truncated(at) } else { DecodeError(format!("invalid CBOR item at offset {at}: {e}")) }
}

/// One nesting level deeper, or an error past `VALUE_DEPTH_MAX` (hostile input would
/// otherwise drive the recursion as deep as it likes).
fn enter(depth: usize) -> Result<usize, DecodeError> {
    if depth >= VALUE_DEPTH_MAX {
        return Err(too_deep());
    }
    Ok(depth + 1)
}

fn too_deep() -> DecodeError {
    DecodeError(format!("lists and dicts nested deeper than {VALUE_DEPTH_MAX} levels"))
}

/// A container open during `Cursor::skip`.
#[derive(Clone, Copy, Debug)]
enum Open {
    /// A definite-length list or dict with this many items (a dict's keys and values) to go.
    Items(u64),
    /// An indefinite-length list or dict (`pairs`), which ends at a break; `half` is set
    /// between a dict key and its value, where a break is an error.
    UntilBreak { pairs: bool, half: bool },
}

/// Most elements reserved up front for a list or dict; longer ones grow as they are read.
const PREALLOC_MAX: usize = 1024;

/// A capacity to reserve for `n` announced elements (`None`: indefinite). The count is the
/// sender's word, so it is capped by what the bytes left could hold (each element takes at
/// least `min_bytes`) and by `PREALLOC_MAX`: a decoded element is much larger than its
/// encoding (a 1-byte null is a 32-byte `Value`), and reserving for a hostile count up front
/// would multiply that.
fn capacity(n: Option<u64>, left_bytes: usize, min_bytes: usize) -> usize {
    let fit = (left_bytes / min_bytes).min(PREALLOC_MAX);
    n.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX).min(fit))
}

/// IEEE 754 binary16 to f64 (RFC 8949 Appendix D).
fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let mant = f64::from(bits & 0x3ff);
    let magnitude = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (mant + 1024.0) * 2f64.powi(exp - 25),
    };
    sign * magnitude
}

/// A position in the input and the item-level decoding on top of it.
struct Cursor<'a> {
    d: Decoder<'a>,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { d: Decoder::new(buf) }
    }

    fn pos(&self) -> usize {
        self.d.position()
    }

    fn left(&self) -> usize {
        self.d.input().len().saturating_sub(self.pos())
    }

    fn at_end(&self) -> bool {
        self.left() == 0
    }

    /// Whether the next byte is a break; running out of input here is a truncation.
    fn at_break(&self) -> Result<bool, DecodeError> {
        match self.d.input().get(self.pos()) {
            Some(&b) => Ok(b == BREAK),
            None => Err(truncated(self.pos())),
        }
    }

    /// Whether a container with `left` elements to go (`None`: indefinite) has another one;
    /// consumes the break that ends an indefinite container.
    fn next_item(&mut self, left: &mut Option<u64>) -> Result<bool, DecodeError> {
        match left {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None if self.at_break()? => {
                self.d.set_position(self.pos() + 1);
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// Read one item header (after any tags) and, for strings, validate the body.
    fn head(&mut self) -> Result<Head<'a>, DecodeError> {
        let at = self.pos();
        let input = self.d.input();
        let Some(&first) = input.get(at) else {
            return Err(truncated(at));
        };
        // Items whose value or length fits in the initial byte are most items in WAMP
        // messages; they are read here in one step, and minicbor reads every longer form.
        let head = match first {
            0x00..=0x17 => Head::UInt(u64::from(first)),
            0x20..=0x37 => Head::Int(-1 - i64::from(first - 0x20)),
            0x60..=0x77 => {
                let end = at + 1 + usize::from(first - 0x60);
                let body = input.get(at + 1..end).ok_or_else(|| truncated(at))?;
                let text = std::str::from_utf8(body)
                    .map_err(|_| DecodeError(format!("invalid UTF-8 in the string at offset {at}")))?;
                self.d.set_position(end);
                return Ok(Head::Str(text));
            }
            0x80..=0x97 => Head::Array(Some(u64::from(first - 0x80))),
            0xa0..=0xb7 => Head::Map(Some(u64::from(first - 0xa0))),
            0xf4 => Head::Bool(false),
            0xf5 => Head::Bool(true),
            0xf6 => Head::Null,
            0xf7 => Head::Undefined,
            _ => return self.head_long(),
        };
        self.d.set_position(at + 1);
        Ok(head)
    }

    /// Read any item header with minicbor, tags first.
    fn head_long(&mut self) -> Result<Head<'a>, DecodeError> {
        loop {
            let at = self.pos();
            let ty = self.d.datatype().map_err(|e| invalid(e, at))?;
            let e = |e| invalid(e, at);
            let head = match ty {
                Type::Tag => {
                    // Tags only annotate the item that follows; each takes at least one byte,
                    // so a chain of them ends with the input.
                    self.d.tag().map_err(e)?;
                    continue;
                }
                Type::Null => {
                    self.d.null().map_err(e)?;
                    Head::Null
                }
                Type::Undefined => {
                    self.d.undefined().map_err(e)?;
                    Head::Undefined
                }
                Type::Simple => {
                    let v = self.d.simple().map_err(e)?;
                    // RFC 8949 §3.3: the two-byte form must not carry a value below 32.
                    if self.pos() == at + 2 && v < 32 {
                        return Err(DecodeError(format!("invalid CBOR simple value {v} at offset {at}")));
                    }
                    Head::Undefined
                }
                Type::Bool => Head::Bool(self.d.bool().map_err(e)?),
                Type::U8 | Type::U16 | Type::U32 | Type::U64 => Head::UInt(self.d.u64().map_err(e)?),
                Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
                    let n = self.d.int().map_err(e)?;
                    match i64::try_from(n) {
                        Ok(v) => Head::Int(v),
                        // -1 - n with n >= 2^63: `-1 - i128` recovers n without overflow.
                        Err(_) => Head::BigNeg(u64::try_from(-1 - i128::from(n)).unwrap_or(u64::MAX)),
                    }
                }
                Type::F16 => {
                    let bits = self.d.input().get(at + 1..at + 3).ok_or_else(|| truncated(at))?;
                    self.d.set_position(at + 3);
                    Head::Float(half_to_f64(u16::from_be_bytes([bits[0], bits[1]])))
                }
                Type::F32 => Head::Float(f64::from(self.d.f32().map_err(e)?)),
                Type::F64 => Head::Float(self.d.f64().map_err(e)?),
                Type::String => Head::Str(self.d.str().map_err(e)?),
                Type::StringIndef => {
                    // Every chunk must be a definite text string and valid UTF-8 on its own.
                    for chunk in self.d.str_iter().map_err(e)? {
                        chunk.map_err(e)?;
                    }
                    Head::StrChunks(at)
                }
                Type::Bytes => Head::Bytes(self.d.bytes().map_err(e)?),
                Type::BytesIndef => {
                    for chunk in self.d.bytes_iter().map_err(e)? {
                        chunk.map_err(e)?;
                    }
                    Head::BytesChunks(at)
                }
                Type::Array | Type::ArrayIndef => Head::Array(self.d.array().map_err(e)?),
                Type::Map | Type::MapIndef => Head::Map(self.d.map().map_err(e)?),
                Type::Break => {
                    return Err(DecodeError(format!("unexpected break byte (0xff) at offset {at}")));
                }
                Type::Unknown(b) => {
                    return Err(DecodeError(format!("invalid CBOR initial byte 0x{b:02x} at offset {at}")));
                }
            };
            return Ok(head);
        }
    }

    /// The text of an indefinite-length string whose header is at `at` (already validated).
    fn text_chunks(&self, at: usize) -> Result<String, DecodeError> {
        let mut d = Decoder::new(self.d.input());
        d.set_position(at);
        let mut out = String::new();
        for chunk in d.str_iter().map_err(|e| invalid(e, at))? {
            out.push_str(chunk.map_err(|e| invalid(e, at))?);
        }
        Ok(out)
    }

    /// The bytes of an indefinite-length byte string whose header is at `at`.
    fn byte_chunks(&self, at: usize) -> Result<Vec<u8>, DecodeError> {
        let mut d = Decoder::new(self.d.input());
        d.set_position(at);
        let mut out = Vec::new();
        for chunk in d.bytes_iter().map_err(|e| invalid(e, at))? {
            out.extend_from_slice(chunk.map_err(|e| invalid(e, at))?);
        }
        Ok(out)
    }

    /// Validate one item without building it. The walk keeps the open containers in a fixed
    /// array instead of recursing, so the depth bound is also the bound on the walk's memory.
    fn skip(&mut self) -> Result<ValueKind, DecodeError> {
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
                            return Err(DecodeError(format!(
                                "a dict ends after a key with no value at offset {}",
                                self.pos()
                            )));
                        }
                        self.d.set_position(self.pos() + 1);
                        depth -= 1;
                    }
                }
            }
            head = self.head()?;
        }
    }

    /// Decode one value; `None` is `undefined` (an absent entry in `Mode::Options` dicts).
    fn value(&mut self, depth: usize, mode: Mode) -> Result<Option<Value>, DecodeError> {
        Ok(Some(match self.head()? {
            Head::Null => Value::Null,
            Head::Bool(b) => Value::Bool(b),
            Head::UInt(v) => Value::UInt(v),
            Head::Int(v) => Value::Int(v),
            Head::BigNeg(n) => Value::Float(-1.0 - n as f64),
            Head::Float(v) => Value::Float(v),
            Head::Str(s) => Value::Str(s.to_owned()),
            Head::StrChunks(at) => Value::Str(self.text_chunks(at)?),
            Head::Bytes(b) => Value::Bytes(b.to_vec()),
            Head::BytesChunks(at) => Value::Bytes(self.byte_chunks(at)?),
            Head::Array(n) => Value::List(self.list(n, depth, mode)?),
            Head::Map(n) => Value::Dict(self.map(n, depth, mode)?),
            Head::Undefined => return Ok(None),
        }))
    }

    fn list(&mut self, mut left: Option<u64>, depth: usize, mode: Mode) -> Result<Vec<Value>, DecodeError> {
        let depth = enter(depth)?;
        let mut out = Vec::with_capacity(capacity(left, self.left(), 1));
        while self.next_item(&mut left)? {
            out.push(self.value(depth, mode)?.unwrap_or(Value::Null));
        }
        Ok(out)
    }

    fn map(&mut self, mut left: Option<u64>, depth: usize, mode: Mode) -> Result<Dict, DecodeError> {
        let depth = enter(depth)?;
        let mut out = MapBuilder::new(capacity(left, self.left(), 2), mode == Mode::Options);
        while self.next_item(&mut left)? {
            let key = self.key(mode)?;
            let value = self.value(depth, mode)?;
            out.entry(key, value);
        }
        Ok(out.finish())
    }

    fn key(&mut self, mode: Mode) -> Result<String, DecodeError> {
        let at = self.pos();
        match self.head()? {
            Head::Str(s) => Ok(s.to_owned()),
            Head::StrChunks(at) => self.text_chunks(at),
            Head::UInt(v) if mode == Mode::Payload => Ok(v.to_string()),
            Head::Int(v) if mode == Mode::Payload => Ok(v.to_string()),
            Head::BigNeg(n) if mode == Mode::Payload => Ok((-1 - i128::from(n)).to_string()),
            other if mode == Mode::Payload => Err(DecodeError(format!(
                "dict keys must be strings or integers, found {} at offset {at}",
                other.name()
            ))),
            other => Err(DecodeError(format!("dict keys must be strings, found {} at offset {at}", other.name()))),
        }
    }
}

/// Reads one WAMP message: a CBOR array, of definite or indefinite length.
pub struct Reader<'a> {
    cur: Cursor<'a>,
    /// Elements of the top-level list not read yet; `None` for an indefinite list, which
    /// ends at its break byte.
    left: Option<u64>,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { cur: Cursor::new(buf), left: Some(0) }
    }

    /// Account for one top-level element about to be read.
    fn element(&mut self) -> Result<(), DecodeError> {
        match self.left {
            Some(0) => Err(DecodeError::new("read past the end of the message list")),
            Some(ref mut n) => {
                *n -= 1;
                Ok(())
            }
            None if self.cur.at_break()? => Err(DecodeError::new("read past the end of the message list")),
            None => Ok(()),
        }
    }
}

impl message::Reader for Reader<'_> {
    fn begin(&mut self) -> Result<(), DecodeError> {
        match self.cur.head()? {
            Head::Array(n) => {
                self.left = n;
                Ok(())
            }
            other => Err(DecodeError(format!("a WAMP message must be a list, found {}", other.name()))),
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
            Head::Int(v) => Err(DecodeError(format!("expected a non-negative integer, found {v}"))),
            Head::BigNeg(n) => {
                Err(DecodeError(format!("expected a non-negative integer, found {}", -1 - i128::from(n))))
            }
            other => Err(DecodeError(format!("expected an integer, found {}", other.name()))),
        }
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.element()?;
        match self.cur.head()? {
            Head::Str(s) => Ok(s.to_owned()),
            Head::StrChunks(at) => self.cur.text_chunks(at),
            other => Err(DecodeError(format!("expected a string, found {}", other.name()))),
        }
    }

    fn dict(&mut self) -> Result<Dict, DecodeError> {
        self.element()?;
        match self.cur.head()? {
            Head::Map(n) => self.cur.map(n, 0, Mode::Options),
            other => Err(DecodeError(format!("expected a dict, found {}", other.name()))),
        }
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        self.element()?;
        Ok(self.cur.value(0, Mode::Payload)?.unwrap_or(Value::Null))
    }

    fn skip(&mut self) -> Result<(Range<usize>, ValueKind), DecodeError> {
        self.element()?;
        let start = self.cur.pos();
        let kind = self.cur.skip()?;
        Ok((start..self.cur.pos(), kind))
    }

    fn end(&mut self) -> Result<(), DecodeError> {
        match self.left {
            Some(0) => {}
            Some(n) => return Err(DecodeError(format!("{n} elements of the message list left unread"))),
            None if self.cur.at_break()? => self.cur.d.set_position(self.cur.pos() + 1),
            None => return Err(DecodeError::new("elements of the message list left unread")),
        }
        let trailing = self.cur.left();
        if trailing > 0 {
            return Err(DecodeError(format!("{trailing} trailing bytes after the message")));
        }
        Ok(())
    }
}

/// minicbor's encoder over a `Vec` cannot fail (its writer's error type is `Infallible`);
/// the result carries nothing.
fn wrote<T>(r: Result<T, minicbor::encode::Error<Infallible>>) {
    debug_assert!(r.is_ok(), "writing CBOR into a Vec failed");
}

fn write_dict(out: &mut Vec<u8>, d: &Dict) {
    wrote(Encoder::new(&mut *out).map(d.len() as u64));
    for (k, v) in d.iter() {
        wrote(Encoder::new(&mut *out).str(k));
        encode_value(v, out);
    }
}

/// Writes one WAMP message as a definite-length CBOR array.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    fn enc(&mut self) -> Encoder<&mut Vec<u8>> {
        Encoder::new(&mut *self.out)
    }
}

impl message::Writer for Writer<'_> {
    fn begin(&mut self, len: usize) {
        wrote(self.enc().array(len as u64));
    }

    fn uint(&mut self, v: u64) {
        wrote(self.enc().u64(v));
    }

    fn string(&mut self, s: &str) {
        wrote(self.enc().str(s));
    }

    fn dict(&mut self, d: &Dict) {
        write_dict(self.out, d);
    }

    fn raw(&mut self, raw: &[u8]) {
        self.out.extend_from_slice(raw);
    }

    fn end(&mut self) {}
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

/// Encode one value with definite lengths, each header in its smallest form.
pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    let mut e = Encoder::new(&mut *out);
    match v {
        Value::Null => wrote(e.null()),
        Value::Bool(b) => wrote(e.bool(*b)),
        Value::UInt(n) => wrote(e.u64(*n)),
        Value::Int(n) => wrote(e.i64(*n)),
        // cbor2 writes the non-finite floats as half floats and every other float as float64.
        Value::Float(f) if f.is_nan() => out.extend_from_slice(&[0xf9, 0x7e, 0x00]),
        Value::Float(f) if f.is_infinite() => {
            out.extend_from_slice(if *f > 0.0 { &[0xf9, 0x7c, 0x00] } else { &[0xf9, 0xfc, 0x00] })
        }
        Value::Float(f) => wrote(e.f64(*f)),
        Value::Str(s) => wrote(e.str(s)),
        Value::Bytes(b) => wrote(e.bytes(b)),
        Value::List(items) => {
            wrote(e.array(items.len() as u64));
            for item in items {
                encode_value(item, out);
            }
        }
        Value::Dict(d) => write_dict(out, d),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes as Frame;

    use super::*;
    use crate::proto::wire::fuzz::{Binary, hex, to_hex};
    use crate::proto::wire::message::{Message, Reader as _, Serializer, decode, encode_to_vec};

    /// Input for a `Reader` in a test (leaked: tests are short-lived).
    fn input(h: &str) -> &'static [u8] {
        hex(h).leak()
    }

    fn enc(v: &Value) -> String {
        let mut out = Vec::new();
        encode_value(v, &mut out);
        to_hex(&out)
    }

    fn dec(h: &str) -> Result<Message, DecodeError> {
        decode(Serializer::Cbor, &Frame::from(hex(h)))
    }

    fn values(h: &str) -> Result<Vec<Value>, DecodeError> {
        decode_values(&hex(h))
    }

    /// A CBOR text string header and body.
    fn s(text: &str) -> String {
        enc(&Value::str(text))
    }

    #[test]
    fn integers_use_the_smallest_form() {
        let cases: &[(Value, &str)] = &[
            (Value::UInt(0), "00"),
            (Value::UInt(23), "17"),
            (Value::UInt(24), "1818"),
            (Value::UInt(255), "18ff"),
            (Value::UInt(256), "190100"),
            (Value::UInt(65_535), "19ffff"),
            (Value::UInt(65_536), "1a00010000"),
            (Value::UInt(u64::from(u32::MAX)), "1affffffff"),
            (Value::UInt(1 << 32), "1b0000000100000000"),
            (Value::UInt(u64::MAX), "1bffffffffffffffff"),
            (Value::Int(-1), "20"),
            (Value::Int(-24), "37"),
            (Value::Int(-25), "3818"),
            (Value::Int(-256), "38ff"),
            (Value::Int(-257), "390100"),
            (Value::Int(-65_537), "3a00010000"),
            (Value::Int(i64::MIN), "3b7fffffffffffffff"),
        ];
        for (v, want) in cases {
            assert_eq!(enc(v), *want, "{v:?}");
            assert_eq!(values(want), Ok(vec![v.clone()]), "{want}");
        }
    }

    #[test]
    fn negatives_below_i64_min_become_floats() {
        assert_eq!(values("3bffffffffffffffff"), Ok(vec![Value::Float(-18_446_744_073_709_551_616.0)]));
        assert_eq!(values("3b8000000000000000"), Ok(vec![Value::Float(-9_223_372_036_854_775_809.0)]));
        let mut r = Reader::new(input("81 3b8000000000000000"));
        r.begin().expect("begin");
        assert_eq!(r.uint().expect_err("negative").0, "expected a non-negative integer, found -9223372036854775809");
        let mut r = Reader::new(input("81 3b8000000000000000"));
        r.begin().expect("begin");
        assert_eq!(r.skip(), Ok((1..10, ValueKind::Float)));
        assert_eq!(
            values("a1 3b8000000000000000 f6"),
            Ok(vec![Value::Dict(Dict::new().with("-9223372036854775809", Value::Null))])
        );
    }

    #[test]
    fn strings_binaries_and_containers_use_the_smallest_header() {
        let str_of = |n: usize| Value::Str("a".repeat(n));
        let bin_of = |n: usize| Value::Bytes(vec![7; n]);
        let list_of = |n: usize| Value::List(vec![Value::Null; n]);
        let dict_of = |n: usize| Value::Dict((0..n).map(|i| (i.to_string(), Value::Null)).collect());
        let cases: Vec<(Value, &str)> = vec![
            (str_of(0), "60"),
            (str_of(23), "77"),
            (str_of(24), "7818"),
            (str_of(256), "790100"),
            (str_of(65_536), "7a00010000"),
            (bin_of(0), "40"),
            (bin_of(24), "5818"),
            (bin_of(65_536), "5a00010000"),
            (list_of(0), "80"),
            (list_of(23), "97"),
            (list_of(24), "9818"),
            (dict_of(0), "a0"),
            (dict_of(24), "b818"),
        ];
        for (v, prefix) in cases {
            let got = enc(&v);
            assert!(got.starts_with(prefix), "{}: {}", v.type_name(), &got[..got.len().min(16)]);
            assert_eq!(decode_values(&hex(&got)), Ok(vec![v]));
        }
    }

    #[test]
    fn floats_match_cbor2_and_read_in_every_width() {
        assert_eq!(enc(&Value::Float(1.5)), "fb3ff8000000000000");
        assert_eq!(enc(&Value::Float(f64::NAN)), "f97e00");
        assert_eq!(enc(&Value::Float(f64::INFINITY)), "f97c00");
        assert_eq!(enc(&Value::Float(f64::NEG_INFINITY)), "f9fc00");
        for (h, want) in [
            ("f93e00", 1.5),
            ("f97bff", 65_504.0),
            ("f90001", 5.960_464_477_539_063e-8),
            ("f90400", 6.103_515_625e-5),
            ("f9c400", -4.0),
            ("f97c00", f64::INFINITY),
            ("f9fc00", f64::NEG_INFINITY),
            ("fa3fc00000", 1.5),
            ("fa47c35000", 100_000.0),
            ("fb3ff8000000000000", 1.5),
        ] {
            assert_eq!(values(h), Ok(vec![Value::Float(want)]), "{h}");
        }
        let Ok(v) = values("f97e00") else { panic!("NaN") };
        assert!(matches!(v[..], [Value::Float(f)] if f.is_nan()));
        let Ok(v) = values("f98000") else { panic!("-0") };
        assert!(matches!(v[..], [Value::Float(f)] if f == 0.0 && f.is_sign_negative()));
        assert!(values("f97e").is_err());
    }

    #[test]
    fn values_round_trip() {
        let v = Value::List(vec![
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::UInt(300),
            Value::Int(-300),
            Value::Float(-0.25),
            Value::str("héllo"),
            Value::Bytes(vec![0, 1, 255]),
            Value::Dict(Dict::new().with("a", Value::List(vec![Value::UInt(1)])).with("b", Dict::new())),
        ]);
        let mut out = Vec::new();
        encode_value(&v, &mut out);
        encode_value(&Value::Dict(Dict::new().with("k", 1u64)), &mut out);
        assert_eq!(decode_values(&out), Ok(vec![v, Value::Dict(Dict::new().with("k", 1u64))]));
    }

    #[test]
    fn indefinite_lengths_are_accepted() {
        assert_eq!(values("9f 01 02 ff"), Ok(vec![Value::List(vec![Value::UInt(1), Value::UInt(2)])]));
        assert_eq!(values("bf 6161 01 ff"), Ok(vec![Value::Dict(Dict::new().with("a", 1u64))]));
        assert_eq!(values("7f 6161 60 6162 ff"), Ok(vec![Value::str("ab")]));
        assert_eq!(values("5f 4101 4102 ff"), Ok(vec![Value::Bytes(vec![1, 2])]));
        assert_eq!(values("7f ff"), Ok(vec![Value::str("")]));
        assert_eq!(
            values("9f 9f ff bf ff ff"),
            Ok(vec![Value::List(vec![Value::List(vec![]), Value::Dict(Dict::new())])])
        );
        // An indefinite message list, an indefinite options dict, an indefinite topic and an
        // indefinite payload list, which stays raw.
        let h = format!("9f 10 01 bf {} f5 ff 7f {} ff 9f 01 ff ff", s("acknowledge"), s("t"));
        let Message::Publish { request, options, topic, payload } = dec(&h).expect("decode") else {
            panic!("not a PUBLISH")
        };
        assert_eq!((request, topic.as_str()), (1, "t"));
        assert_eq!(options, Dict::new().with("acknowledge", true));
        assert_eq!(&payload.raw[..], &hex("9f01ff")[..]);
        assert_eq!(payload.values(), Ok(vec![Value::List(vec![Value::UInt(1)])]));
        // Re-encoding writes definite lengths.
        let again = encode_to_vec(Serializer::Cbor, &dec("9f 11 01 02 ff").expect("decode")).expect("encode");
        assert_eq!(to_hex(&again), "83110102");
        // An indefinite list that never ends, or that ends early.
        assert!(dec("9f 11 01 02").is_err());
        assert!(dec("9f 11 01 ff").expect_err("short").0.contains("missing element"));
        assert!(dec("9f 11 01 02 03 ff").expect_err("long").0.contains("too many elements"));
        assert!(dec("9f 11 01 02 ff 00").expect_err("trailing").0.contains("1 trailing bytes"));
    }

    #[test]
    fn tags_are_ignored() {
        assert_eq!(values("c1 1a514b67b0"), Ok(vec![Value::UInt(1_363_896_240)]));
        assert_eq!(values("c2 4101"), Ok(vec![Value::Bytes(vec![1])]));
        assert_eq!(values("d820 c0 6161"), Ok(vec![Value::str("a")]));
        assert_eq!(values("a1 c0 6161 c1 01"), Ok(vec![Value::Dict(Dict::new().with("a", 1u64))]));
        // The self-describe tag in front of a message.
        assert_eq!(dec("d9d9f7 83 11 01 02"), Ok(Message::Published { request: 1, publication: 2 }));
        let mut r = Reader::new(input("81 c1 c1 81 01"));
        r.begin().expect("begin");
        assert_eq!(r.skip(), Ok((1..5, ValueKind::List)));
        // A tag must be followed by an item.
        assert!(values("c1").is_err());
        assert!(values("9f c1 ff").is_err());
    }

    #[test]
    fn malformed_items_are_rejected() {
        for h in [
            "ff",          // a break where an item must be
            "81 ff",       // a break in a definite list
            "bf 01 ff",    // an indefinite dict with a key and no value
            "a1 01 ff",    // a definite dict whose value is a break
            "7f 7f ff ff", // a nested indefinite chunk
            "7f 4100 ff",  // a byte chunk in a text string
            "5f 6100 ff",  // a text chunk in a byte string
            "7f 61",       // a chunk that runs past the end
            "62 c328",     // invalid UTF-8
            "7f 62c328 ff",
            "f8 10", // a two-byte simple value below 32
            "18",    // a header that runs past the end
            "fa 3fc0",
        ] {
            assert!(values(h).is_err(), "decode_values {h}");
            assert!(Cursor::new(&hex(h)).skip().is_err(), "skip {h}");
        }
        // Initial bytes with a reserved additional-information value (28 to 31 where 31 is
        // not allowed).
        for b in [0x1c, 0x1f, 0x3c, 0x3f, 0x5c, 0x7c, 0x9c, 0xbc, 0xdc, 0xdf, 0xfc, 0xfd, 0xfe] {
            assert!(decode_values(&[b, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(), "{b:02x}");
        }
    }

    #[test]
    fn undefined_is_absent_in_options_and_null_in_payloads() {
        // [16, 1, {"acknowledge": undefined, "x": 1, "y": simple(99)}, "t", [undefined], {"k": undefined}]
        let h = format!(
            "86 10 01 a3 {} f7 {} 01 {} f863 {} 81 f7 a1 {} f7",
            s("acknowledge"),
            s("x"),
            s("y"),
            s("t"),
            s("k")
        );
        let Message::Publish { options, payload, .. } = dec(&h).expect("decode") else { panic!("not a PUBLISH") };
        assert_eq!(options, Dict::new().with("x", 1u64));
        assert_eq!(
            payload.values(),
            Ok(vec![Value::List(vec![Value::Null]), Value::Dict(Dict::new().with("k", Value::Null))])
        );
        // Nested options dicts drop undefined entries too; lists in options keep a null.
        let h = format!("83 10 01 a2 {} a1 {} f7 {} 82 01 f7", s("a"), s("b"), s("c"));
        let mut r = Reader::new(input(&h));
        r.begin().expect("begin");
        assert_eq!((r.uint(), r.uint()), (Ok(16), Ok(1)));
        assert_eq!(
            r.dict(),
            Ok(Dict::new().with("a", Dict::new()).with("c", Value::List(vec![Value::UInt(1), Value::Null])))
        );
        let mut r = Reader::new(input("83 f7 e0 00"));
        r.begin().expect("begin");
        assert_eq!(r.skip(), Ok((1..2, ValueKind::Other)));
        assert_eq!(r.skip(), Ok((2..3, ValueKind::Other)));
        assert_eq!(r.skip(), Ok((3..4, ValueKind::Int)));
        assert_eq!(r.end(), Ok(()));
    }

    #[test]
    fn duplicate_keys_keep_the_last() {
        let mut r = Reader::new(input(&format!("81 a3 {a} 01 {b} 02 {a} 03", a = s("a"), b = s("b"))));
        r.begin().expect("begin");
        assert_eq!(r.dict(), Ok(Dict::new().with("a", 3u64).with("b", 2u64)));
        let mut r = Reader::new(input(&format!("81 a2 {a} 01 {a} f7", a = s("a"))));
        r.begin().expect("begin");
        assert_eq!(r.dict(), Ok(Dict::new()));
    }

    #[test]
    fn dict_keys_must_be_strings_except_integers_in_payloads() {
        let mut r = Reader::new(input("81 a1 01 f5"));
        r.begin().expect("begin");
        assert_eq!(r.dict().expect_err("int key").0, "dict keys must be strings, found integer at offset 2");
        assert_eq!(
            values("a3 01 f5 20 02 7f 6161 ff 03"),
            Ok(vec![Value::Dict(Dict::new().with("1", true).with("-1", 2u64).with("a", 3u64))])
        );
        assert!(values("a1 4161 f5").expect_err("bytes key").0.contains("found binary"));
    }

    #[test]
    fn uint_says_what_it_found() {
        let err = |h: &str| dec(h).expect_err("must fail").0;
        assert_eq!(err(&format!("82 {} 00", s("x"))), "message type: expected an integer, found string");
        assert_eq!(err("83 20 00 00"), "message type: expected a non-negative integer, found -1");
        assert_eq!(err("83 fb3ff8000000000000 00 00"), "message type: expected an integer, found float");
        assert_eq!(err(&format!("83 11 01 {}", s("x"))), "PUBLISHED.Publication: expected an integer, found string");
        assert_eq!(err("83 11 01 f7"), "PUBLISHED.Publication: expected an integer, found undefined");
    }

    #[test]
    fn top_level_list_is_exact() {
        assert_eq!(dec("8218431a2f0604aa00").expect_err("trailing").0, "1 trailing bytes after the message");
        assert_eq!(
            dec("8318431a2f0604aa").expect_err("short").0,
            "UNREGISTERED.Details: truncated input: the item at offset 8 runs past the end"
        );
        assert!(dec("a0").expect_err("not a list").0.contains("must be a list, found dict"));
        assert_eq!(dec("80").expect_err("empty").0, "empty message list");
        assert_eq!(dec("9fff").expect_err("empty").0, "empty message list");
        assert!(dec("").expect_err("nothing").0.starts_with("truncated input"));
        let mut r = Reader::new(input("81 01 02"));
        r.begin().expect("begin");
        assert_eq!(r.uint(), Ok(1));
        assert_eq!(r.more(), Ok(false));
        assert!(r.uint().is_err());
        let mut r = Reader::new(input("9f 01 ff"));
        r.begin().expect("begin");
        assert_eq!(r.uint(), Ok(1));
        assert_eq!(r.more(), Ok(false));
        assert!(r.uint().is_err());
        assert_eq!(r.end(), Ok(()));
    }

    #[test]
    fn hostile_lengths_fail_without_allocating() {
        for h in [
            "9b ffffffffffffffff",
            "9a ffffffff 00",
            "bb ffffffffffffffff",
            "ba ffffffff 00 00",
            "5b ffffffffffffffff",
            "5a ffffffff 00",
            "7b ffffffffffffffff",
            "7a ffffffff 61",
            "7f 7b ffffffffffffffff ff",
            "9b ffffffffffffffff 80 80 80",
            "1b 0000",
            "fb 3ff8",
        ] {
            assert!(values(h).is_err(), "{h}");
            assert!(dec(&(format!("85 10 01 a0 {} ", s("t")) + h)).is_err(), "{h}");
            assert!(dec(h).is_err(), "{h}");
        }
    }

    fn nested(levels: usize, header: u8) -> Vec<u8> {
        let mut out = vec![header; levels];
        out.push(0x01);
        if header == 0x9f {
            out.extend(std::iter::repeat_n(BREAK, levels));
        }
        out
    }

    #[test]
    fn nesting_is_bounded() {
        for header in [0x81, 0x9f] {
            assert!(decode_values(&nested(VALUE_DEPTH_MAX, header)).is_ok());
            assert_eq!(Cursor::new(&nested(VALUE_DEPTH_MAX, header)).skip(), Ok(ValueKind::List));
            let err = decode_values(&nested(VALUE_DEPTH_MAX + 1, header)).expect_err("too deep").0;
            assert!(err.contains("nested deeper than 64"), "{err}");
            assert!(Cursor::new(&nested(VALUE_DEPTH_MAX + 1, header)).skip().is_err());
        }
        // A million-deep chain errors early rather than overflowing the stack.
        let mut dicts = Vec::new();
        for _ in 0..1_000_000 {
            dicts.extend_from_slice(&[0xbf, 0x61, b'k']);
        }
        assert!(decode_values(&dicts).is_err());
        assert!(Cursor::new(&dicts).skip().is_err());
        // Tags do not nest, and a long chain of them is walked, not recursed into.
        let mut tags = vec![0xc1; 1_000_000];
        tags.push(0x01);
        assert_eq!(decode_values(&tags), Ok(vec![Value::UInt(1)]));
    }

    #[test]
    fn skip_reports_the_range_and_kind() {
        let h = format!("86 10 01 a0 {} 82 01 {} a1 {} 5f 4101 ff", s("t"), s("é"), s("k"));
        let Message::Publish { payload, .. } = dec(&h).expect("decode") else { panic!("not a PUBLISH") };
        assert_eq!(to_hex(&payload.raw), format!("8201{}a1{}5f4101ff", s("é"), s("k")));
        assert_eq!(payload.count, 2);
        assert_eq!(
            payload.values(),
            Ok(vec![
                Value::List(vec![Value::UInt(1), Value::str("é")]),
                Value::Dict(Dict::new().with("k", Value::Bytes(vec![1])))
            ])
        );
    }

    #[test]
    fn writer_appends_raw_payload_verbatim() {
        let payload = crate::proto::wire::Payload::from_values(Serializer::Cbor, Some(&[Value::UInt(1)]), None);
        let msg = Message::Event { subscription: 1, publication: 2, details: Dict::new(), payload };
        assert_eq!(to_hex(&encode_to_vec(Serializer::Cbor, &msg).expect("encode")), "8518240102a08101");
    }

    // Robustness: random and mutated frames must never panic, and whatever decodes must
    // re-encode to something that decodes to the same bytes again.

    const FUZZ: Binary = Binary {
        serializer: Serializer::Cbor,
        transcode_to: Serializer::MsgPack,
        // Initial bytes with large, indefinite or reserved lengths, tags, simple values, break.
        interesting: &[
            0x00, 0x17, 0x1b, 0x1f, 0x3b, 0x5b, 0x5f, 0x7b, 0x7f, 0x9b, 0x9f, 0xbb, 0xbf, 0xc1, 0xd9, 0xdf, 0xf7, 0xf8,
            0xf9, 0xfb, 0xfc, 0xff,
        ],
        headers: &[
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0x7a, 0xff, 0xff, 0xff, 0xff],
            &[0x5f, 0x41],
            &[0x9f],
            &[BREAK],
        ],
    };

    #[test]
    fn vectors_truncated_or_extended_fail_cleanly() {
        FUZZ.vectors_truncated_or_extended_fail_cleanly(0xf6);
    }

    #[test]
    fn skip_and_value_agree_on_mutated_items() {
        FUZZ.skip_and_value_agree(0x5eed_0004, |bytes| {
            let mut walked = Cursor::new(bytes);
            let skipped = walked.skip().map(|_| walked.pos());
            let mut built = Cursor::new(bytes);
            (skipped.ok(), built.value(0, Mode::Payload).map(|_| built.pos()))
        });
    }

    #[test]
    fn mutated_and_random_frames_never_panic() {
        FUZZ.mutated_and_random_frames_never_panic(0x5eed_0002, |rng| {
            [[0x82u8, 0x84, 0x85, 0x86, 0x9f][rng.below(5)], [16u8, 0x01, 0x03][rng.below(3)]]
        });
    }
}
