//! Reading CBOR items: the header of one item (tags skipped, strings validated) with the
//! fast path for items whose value fits the initial byte, and building values from items
//! with bounded recursion.
//!
//! Must not: allocate from a length prefix before the bytes it announces are there,
//! recurse deeper than `VALUE_DEPTH_MAX`, or panic on any input.

use minicbor::Decoder;
use minicbor::data::Type;

use crate::limits::{DECODE_PREALLOC_MAX_ELEMENTS, VALUE_DEPTH_MAX};
use crate::proto::wire::codec::{Budget, ValueKind};
use crate::proto::wire::error::DecodeError;
use crate::proto::wire::value::{Dict, MapBuilder, Value};

/// The break byte that ends an indefinite-length item.
pub(super) const BREAK: u8 = 0xff;

/// One CBOR item header, tags already skipped. Containers carry their length (`None` for
/// indefinite); definite strings borrow their bodies (text already checked to be UTF-8), and
/// indefinite strings, already validated, are remembered by the offset of their header.
#[derive(Debug)]
pub(super) enum Head<'a> {
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
    /// A bignum (tag 2, or tag 3 when `negative`) beyond 64 bits (`u64` for tag 2, `i64`
    /// for tag 3): its value is the byte string whose header is at the offset, as before
    /// bignums were read. Those within 64 bits are `UInt` or `Int`.
    BigNum {
        negative: bool,
        at: usize,
    },
    Array(Option<u64>),
    Map(Option<u64>),
    /// `undefined` or an unassigned simple value: no WAMP meaning (wampy's `undefined`).
    Undefined,
}

impl Head<'_> {
    pub(super) fn kind(&self) -> ValueKind {
        match self {
            Head::Null => ValueKind::Null,
            Head::Bool(_) => ValueKind::Bool,
            Head::UInt(_) | Head::Int(_) => ValueKind::Int,
            // Reported as it decodes: such an integer becomes a float.
            Head::BigNeg(_) | Head::Float(_) => ValueKind::Float,
            Head::Str(_) | Head::StrChunks(_) => ValueKind::Str,
            Head::Bytes(_) | Head::BytesChunks(_) | Head::BigNum { .. } => ValueKind::Bytes,
            Head::Array(_) => ValueKind::List,
            Head::Map(_) => ValueKind::Dict,
            Head::Undefined => ValueKind::Other,
        }
    }

    /// The type's name in error texts (the same words as `Value::type_name`).
    pub(super) fn name(&self) -> &'static str {
        match self {
            Head::Null => "null",
            Head::Bool(_) => "bool",
            Head::UInt(_) | Head::Int(_) | Head::BigNeg(_) => "integer",
            Head::Float(_) => "float",
            Head::Str(_) | Head::StrChunks(_) => "string",
            Head::Bytes(_) | Head::BytesChunks(_) => "binary",
            Head::BigNum { negative: false, .. } => "integer beyond 64 bits",
            Head::BigNum { negative: true, .. } => "negative integer beyond 64 bits",
            Head::Array(_) => "list",
            Head::Map(_) => "dict",
            Head::Undefined => "undefined",
        }
    }
}

/// How values that WAMP cannot express are treated while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// An options/details dict: `undefined` entries are absent, keys must be strings.
    Options,
    /// Application payload: `undefined` becomes null, integer keys their decimal string.
    Payload,
}

pub(super) fn truncated(at: usize) -> DecodeError {
    DecodeError::Truncated { at }
}

/// A minicbor error as a `DecodeError` naming the offset of the item that failed.
fn invalid(e: minicbor::decode::Error, at: usize) -> DecodeError {
    if e.is_end_of_input() { truncated(at) } else { DecodeError::refused("invalid CBOR item", Some(at), &e) }
}

/// One nesting level deeper, or an error past `VALUE_DEPTH_MAX` (hostile input would
/// otherwise drive the recursion as deep as it likes).
fn enter(depth: usize) -> Result<usize, DecodeError> {
    if depth >= VALUE_DEPTH_MAX {
        return Err(too_deep());
    }
    Ok(depth + 1)
}

pub(super) fn too_deep() -> DecodeError {
    DecodeError::TooDeep { at: None }
}

/// A capacity to reserve for `n` announced elements (`None`: indefinite). The count is the
/// sender's word, so it is capped by what the bytes left could hold (each element takes at
/// least `min_bytes`) and by `limits::DECODE_PREALLOC_MAX_ELEMENTS`: a decoded element is much larger than its
/// encoding (a 1-byte null is a 32-byte `Value`), and reserving for a hostile count up front
/// would multiply that.
fn capacity(n: Option<u64>, left_bytes: usize, min_bytes: usize) -> usize {
    let fit = (left_bytes / min_bytes).min(DECODE_PREALLOC_MAX_ELEMENTS);
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

/// The big-endian magnitude `bytes` appended to `m`, or `None` past 64 bits. Leading zero
/// bytes are allowed (RFC 8949 §3.4.3 does not forbid them).
fn magnitude(m: Option<u64>, bytes: &[u8]) -> Option<u64> {
    bytes.iter().try_fold(m?, |m, &b| if m >> 56 == 0 { Some(m << 8 | u64::from(b)) } else { None })
}

/// The head of a bignum (tag 2 positive, tag 3 `negative`) whose byte string starts at `at`
/// and has the magnitude `m` (`None`: beyond 64 bits): an integer when it fits the value
/// model (tag 2 up to `u64::MAX`, tag 3 down to `i64::MIN`), else `BigNum`.
fn bignum<'a>(negative: bool, m: Option<u64>, at: usize) -> Head<'a> {
    match (negative, m) {
        (false, Some(v)) => Head::UInt(v),
        // -1 - n for n <= i64::MAX is at least i64::MIN.
        (true, Some(n)) if n <= i64::MAX as u64 => Head::Int(-1 - n as i64),
        _ => Head::BigNum { negative, at },
    }
}

/// A position in the input and the item-level decoding on top of it.
pub(super) struct Cursor<'a> {
    pub(super) d: Decoder<'a>,
    /// Values this cursor may still build.
    pub(super) budget: Budget,
}

impl<'a> Cursor<'a> {
    /// A cursor for payload values, which builds as many as the input holds.
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Cursor { d: Decoder::new(buf), budget: Budget::UNLIMITED }
    }

    /// A cursor for one message: its values are counted against `limits::OPTIONS_VALUES_MAX`.
    pub(super) fn for_message(buf: &'a [u8]) -> Self {
        Cursor { d: Decoder::new(buf), budget: Budget::MESSAGE }
    }

    pub(super) fn pos(&self) -> usize {
        self.d.position()
    }

    pub(super) fn left(&self) -> usize {
        self.d.input().len().saturating_sub(self.pos())
    }

    pub(super) fn at_end(&self) -> bool {
        self.left() == 0
    }

    /// Whether the next byte is a break; running out of input here is a truncation.
    pub(super) fn at_break(&self) -> Result<bool, DecodeError> {
        match self.d.input().get(self.pos()) {
            Some(&b) => Ok(b == BREAK),
            None => Err(truncated(self.pos())),
        }
    }

    /// Whether a container with `left` elements to go (`None`: indefinite) has another one;
    /// consumes the break that ends an indefinite container.
    pub(super) fn next_item(&mut self, left: &mut Option<u64>) -> Result<bool, DecodeError> {
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
    pub(super) fn head(&mut self) -> Result<Head<'a>, DecodeError> {
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
                let text = std::str::from_utf8(body).map_err(|_| DecodeError::InvalidUtf8 { at })?;
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
                    // Tags only annotate the item that follows, and only bignums change what
                    // it means; each tag takes at least one byte, so a chain of them ends with
                    // the input.
                    let tag = self.d.tag().map_err(e)?.as_u64();
                    if (tag == 2 || tag == 3)
                        && let Some(head) = self.bignum(tag == 3)?
                    {
                        return Ok(head);
                    }
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
                        return Err(DecodeError::InvalidSimpleValue { value: v, at });
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
                Type::Break => return Err(DecodeError::UnexpectedBreak { at }),
                Type::Unknown(byte) => return Err(DecodeError::InvalidByte { what: "CBOR initial byte", byte, at }),
            };
            return Ok(head);
        }
    }

    /// After a bignum tag (3: `negative`): the head of the byte string that follows, as the
    /// integer it holds when that fits, with every chunk validated; `None`, having read
    /// nothing, when anything else follows (another tag, which decides instead, or an item
    /// the tag does not apply to, which is read as if untagged).
    #[cold]
    fn bignum(&mut self, negative: bool) -> Result<Option<Head<'a>>, DecodeError> {
        let at = self.pos();
        let e = |e| invalid(e, at);
        let magnitude = match self.d.datatype().map_err(e)? {
            Type::Bytes => magnitude(Some(0), self.d.bytes().map_err(e)?),
            Type::BytesIndef => {
                let mut m = Some(0);
                for chunk in self.d.bytes_iter().map_err(e)? {
                    m = magnitude(m, chunk.map_err(e)?);
                }
                m
            }
            _ => return Ok(None),
        };
        Ok(Some(bignum(negative, magnitude, at)))
    }

    /// The text of an indefinite-length string whose header is at `at` (already validated).
    pub(super) fn text_chunks(&self, at: usize) -> Result<String, DecodeError> {
        let mut d = Decoder::new(self.d.input());
        d.set_position(at);
        let mut out = String::new();
        for chunk in d.str_iter().map_err(|e| invalid(e, at))? {
            out.push_str(chunk.map_err(|e| invalid(e, at))?);
        }
        Ok(out)
    }

    /// The bytes of a byte string (of definite or indefinite length) whose header is at `at`.
    fn byte_chunks(&self, at: usize) -> Result<Vec<u8>, DecodeError> {
        let mut d = Decoder::new(self.d.input());
        d.set_position(at);
        let mut out = Vec::new();
        for chunk in d.bytes_iter().map_err(|e| invalid(e, at))? {
            out.extend_from_slice(chunk.map_err(|e| invalid(e, at))?);
        }
        Ok(out)
    }

    /// Decode one value; `None` is `undefined` (an absent entry in `Mode::Options` dicts).
    pub(super) fn value(&mut self, depth: usize, mode: Mode) -> Result<Option<Value>, DecodeError> {
        self.budget.take()?;
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
            Head::BytesChunks(at) | Head::BigNum { at, .. } => Value::Bytes(self.byte_chunks(at)?),
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

    pub(super) fn map(&mut self, mut left: Option<u64>, depth: usize, mode: Mode) -> Result<Dict, DecodeError> {
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
            other => Err(DecodeError::KeyType { found: other.name(), at, integers_allowed: mode == Mode::Payload }),
        }
    }
}
