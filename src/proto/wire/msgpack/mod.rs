//! The MessagePack serializer (`wamp.2.msgpack`): the [`codec::Reader`] and
//! [`codec::Writer`] for WAMP messages, and payload value decode/encode.
//!
//! Files: this one holds the reader, the writer and the value mapping; `tests.rs` its tests.
//!
//! This file owns the MessagePack byte format only: item headers, lengths, the value mapping,
//! nesting bounds and the exact bytes written. It must not know message layouts (those are in
//! `message.rs`, which it never imports), must not build values for the payload on the way
//! through (`skip` validates it in place and returns its byte range), must not allocate from a
//! length prefix before the bytes it announces are there, and must not panic on any input.
//!
//! Item headers are read with `rmp`: the first byte is classified with [`Marker::from_u8`]; the
//! fix forms (small integers, short strings, small arrays and maps, nil, bool), which are most
//! items in WAMP messages, carry their value in the marker, and every longer form is read by
//! the matching `rmp::decode::read_*` function from an [`rmp::decode::Bytes`] over the rest of
//! the input. Taking the fix forms straight from the marker made decoding a PUBLISH about 1.5
//! times faster. String and binary bodies are sliced from the input by this file, so they stay
//! borrowed until a value is really wanted. `skip` walks containers with a fixed array of open
//! counts rather than recursion; value decoding recurses, bounded by `VALUE_DEPTH_MAX`.
//!
//! Bounds on what a message may cost: a dict element (`Options`, `Details`) larger than
//! `limits::OPTIONS_MAX_BYTES` is refused before any of it is built, and the values built for
//! one message are counted against `limits::OPTIONS_VALUES_MAX` ([`codec::Budget`]). The
//! payload is never built, but its walk checks that an `ArgumentsKw` dict has string keys.
//!
//! The format is the modern spec (v5, with the str/bin distinction), written the way
//! autobahn-python writes it (`msgpack.packb(obj, use_bin_type=True)`), so re-encoding
//! reproduces the WAMP test vectors byte for byte: every integer, string, binary, array and
//! map header in its smallest form, negative integers in the smallest signed form, and floats
//! always as float64 (`cb`), which is Python msgpack's default (`use_single_float=False`).
//!
//! Value mapping on decode: non-negative integers (whatever their marker) become
//! [`Value::UInt`], negative ones [`Value::Int`]; float32/float64 become [`Value::Float`]; str
//! becomes [`Value::Str`], bin [`Value::Bytes`]. Ext values have no WAMP meaning, but wampy
//! sends them for JavaScript `undefined`, so in an options/details dict read by
//! [`codec::Reader::dict`] an entry whose value is ext is left out (the option is absent);
//! anywhere else an ext becomes [`Value::Null`], and `skip` reports it as [`ValueKind::Other`].

use std::ops::Range;

use rmp::Marker;
use rmp::decode::{self as rd, Bytes};
use rmp::encode as wr;

use super::codec::{self, Budget, ValueKind};
use super::error::{DecodeError, Found};
use super::value::{Dict, MapBuilder, Value};
use crate::limits::{DECODE_PREALLOC_MAX_ELEMENTS, OPTIONS_MAX_BYTES, VALUE_DEPTH_MAX};

#[cfg(test)]
mod tests;

/// One MessagePack item header. Containers carry their element count; strings and binaries
/// borrow their bodies from the input (strings already checked to be UTF-8).
#[derive(Debug)]
enum Head<'a> {
    Nil,
    Bool(bool),
    UInt(u64),
    /// Always negative: a non-negative value in a signed marker is normalised to `UInt`.
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bin(&'a [u8]),
    Array(u32),
    Map(u32),
    /// An ext value of any type: no WAMP meaning (wampy's `undefined`).
    Ext,
}

impl Head<'_> {
    fn kind(&self) -> ValueKind {
        match self {
            Head::Nil => ValueKind::Null,
            Head::Bool(_) => ValueKind::Bool,
            Head::UInt(_) | Head::Int(_) => ValueKind::Int,
            Head::Float(_) => ValueKind::Float,
            Head::Str(_) => ValueKind::Str,
            Head::Bin(_) => ValueKind::Bytes,
            Head::Array(_) => ValueKind::List,
            Head::Map(_) => ValueKind::Dict,
            Head::Ext => ValueKind::Other,
        }
    }

    /// The type's name in error texts (the same words as `Value::type_name`).
    fn name(&self) -> &'static str {
        match self {
            Head::Nil => "null",
            Head::Bool(_) => "bool",
            Head::UInt(_) | Head::Int(_) => "integer",
            Head::Float(_) => "float",
            Head::Str(_) => "string",
            Head::Bin(_) => "binary",
            Head::Array(_) => "list",
            Head::Map(_) => "dict",
            Head::Ext => "msgpack ext",
        }
    }
}

/// How values that WAMP cannot express are treated while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// An options/details dict: ext-valued entries are absent, keys must be strings.
    Options,
    /// Application payload: ext becomes null, integer keys become their decimal string.
    Payload,
}

/// A position in the input and the item-level decoding on top of it.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Values this cursor may still build.
    budget: Budget,
}

fn truncated(at: usize) -> DecodeError {
    DecodeError::Truncated { at }
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
    DecodeError::TooDeep { at: None }
}

fn utf8(body: &[u8], at: usize) -> Result<&str, DecodeError> {
    std::str::from_utf8(body).map_err(|_| DecodeError::InvalidUtf8 { at })
}

/// A capacity to reserve for `n` announced elements. The count is the sender's word, so it
/// is capped by what the bytes left could hold (each element takes at least `min_bytes`) and
/// by `limits::DECODE_PREALLOC_MAX_ELEMENTS`: a decoded element is much larger than its encoding (a 1-byte nil is a
/// 32-byte `Value`), and reserving for a hostile count up front would multiply that.
fn capacity(n: u32, left_bytes: usize, min_bytes: usize) -> usize {
    (n as usize).min(left_bytes / min_bytes).min(DECODE_PREALLOC_MAX_ELEMENTS)
}

impl<'a> Cursor<'a> {
    /// A cursor for payload values, which builds as many as the input holds.
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0, budget: Budget::UNLIMITED }
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Read one item header and, for strings and binaries, its body.
    fn head(&mut self) -> Result<Head<'a>, DecodeError> {
        let at = self.pos;
        let Some(&first) = self.buf.get(at) else {
            return Err(truncated(at));
        };
        // The fix forms, which are most items in WAMP messages, carry their value or length in
        // the marker byte itself; only the longer forms need rmp's header readers.
        let head = match Marker::from_u8(first) {
            Marker::FixPos(v) => Head::UInt(u64::from(v)),
            Marker::FixNeg(v) => Head::Int(i64::from(v)),
            Marker::Null => Head::Nil,
            Marker::True => Head::Bool(true),
            Marker::False => Head::Bool(false),
            Marker::FixArray(n) => Head::Array(u32::from(n)),
            Marker::FixMap(n) => Head::Map(u32::from(n)),
            Marker::FixStr(n) => {
                let end = at + 1 + usize::from(n);
                let body = self.buf.get(at + 1..end).ok_or_else(|| truncated(at))?;
                self.pos = end;
                return Ok(Head::Str(utf8(body, at)?));
            }
            _ => return self.head_long(at),
        };
        self.pos = at + 1;
        Ok(head)
    }

    /// Read a header with length or value bytes after the marker, with rmp's readers.
    fn head_long(&mut self, at: usize) -> Result<Head<'a>, DecodeError> {
        let rest = self.rest();
        let Some(&first) = rest.first() else {
            return Err(truncated(at));
        };
        let mut rd = Bytes::new(rest);
        let bad = |_| truncated(at);
        let mut body_len = 0usize;
        let head = match Marker::from_u8(first) {
            Marker::Null => {
                rd::read_nil(&mut rd).map_err(bad)?;
                Head::Nil
            }
            Marker::True | Marker::False => Head::Bool(rd::read_bool(&mut rd).map_err(bad)?),
            Marker::FixPos(_) | Marker::U8 | Marker::U16 | Marker::U32 | Marker::U64 => {
                Head::UInt(rd::read_int::<u64, _>(&mut rd).map_err(|_| truncated(at))?)
            }
            Marker::FixNeg(_) | Marker::I8 | Marker::I16 | Marker::I32 | Marker::I64 => {
                let v = rd::read_int::<i64, _>(&mut rd).map_err(|_| truncated(at))?;
                // Some encoders put small positive numbers in signed markers; the value model
                // keeps every non-negative integer as `UInt`.
                if v >= 0 { Head::UInt(v as u64) } else { Head::Int(v) }
            }
            Marker::F32 => Head::Float(f64::from(rd::read_f32(&mut rd).map_err(bad)?)),
            Marker::F64 => Head::Float(rd::read_f64(&mut rd).map_err(bad)?),
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                body_len = rd::read_str_len(&mut rd).map_err(bad)? as usize;
                let body = rd.remaining_slice().get(..body_len).ok_or_else(|| truncated(at))?;
                Head::Str(utf8(body, at)?)
            }
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                body_len = rd::read_bin_len(&mut rd).map_err(bad)? as usize;
                Head::Bin(rd.remaining_slice().get(..body_len).ok_or_else(|| truncated(at))?)
            }
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                Head::Array(rd::read_array_len(&mut rd).map_err(bad)?)
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => Head::Map(rd::read_map_len(&mut rd).map_err(bad)?),
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => {
                body_len = rd::read_ext_meta(&mut rd).map_err(bad)?.size as usize;
                if rd.remaining_slice().len() < body_len {
                    return Err(truncated(at));
                }
                Head::Ext
            }
            Marker::Reserved => return Err(DecodeError::InvalidByte { what: "MessagePack byte", byte: first, at }),
        };
        // The header is what rmp consumed; the body (checked to be in the input above) follows.
        self.pos = at + (rest.len() - rd.remaining_slice().len()) + body_len;
        Ok(head)
    }

    /// Validate one item without building it, whatever its dict keys are (as payload values
    /// may have them).
    fn skip(&mut self) -> Result<ValueKind, DecodeError> {
        self.walk(&mut [0; VALUE_DEPTH_MAX])
    }

    /// Validate one element of a message without building it: as `skip`, and a dict's own
    /// keys must be strings (WAMP's rule for `Options`, `Details` and `ArgumentsKw`, so such
    /// a payload can reach a JSON peer); keys nested deeper are application data. A dict's
    /// pairs are read here, each value walked one level down, so the walk itself is the
    /// payload's and costs nothing more.
    fn skip_element(&mut self) -> Result<ValueKind, DecodeError> {
        let mut open = [0; VALUE_DEPTH_MAX];
        let start = self.pos;
        let Head::Map(pairs) = self.head()? else {
            self.pos = start;
            return self.walk(&mut open);
        };
        let Some(inner) = open.get_mut(1..) else {
            return Err(too_deep());
        };
        for _ in 0..pairs {
            let at = self.pos;
            let key = self.head()?;
            if !matches!(key, Head::Str(_)) {
                return Err(DecodeError::KeyType { found: key.name(), at, integers_allowed: false });
            }
            self.walk(inner)?;
        }
        Ok(ValueKind::Dict)
    }

    /// The walk behind `skip`: it keeps the items left in each open container in `open`
    /// instead of recursing, so the nesting it accepts is `open`'s length (the depth bound
    /// less the containers around the item), and that is also the bound on its memory.
    fn walk(&mut self, open: &mut [u64]) -> Result<ValueKind, DecodeError> {
        let mut depth = 0;
        let mut kind = None;
        loop {
            let head = self.head()?;
            kind.get_or_insert(head.kind());
            let items = match head {
                Head::Array(n) => Some(u64::from(n)),
                Head::Map(n) => Some(u64::from(n) * 2),
                _ => None,
            };
            if let Some(items) = items {
                let Some(slot) = open.get_mut(depth) else {
                    return Err(too_deep());
                };
                *slot = items;
                depth += 1;
            }
            // Close every container whose items are all read; every item takes at least one
            // byte, so a hostile count ends in a truncation error within `buf.len()` items.
            while depth > 0 && open[depth - 1] == 0 {
                depth -= 1;
            }
            if depth == 0 {
                return Ok(kind.unwrap_or(ValueKind::Other));
            }
            open[depth - 1] -= 1;
        }
    }

    /// Refuse the dict whose header is at `start` if its encoding runs past
    /// `limits::OPTIONS_MAX_BYTES`, before any of it is built: it is walked over a view of
    /// the input cut at the cap, so the walk reads no further and allocates nothing. When the
    /// rest of the input fits the cap there is nothing to check.
    fn check_dict_size(&self, start: usize) -> Result<(), DecodeError> {
        let Some(cut) = self.buf.get(..start.saturating_add(OPTIONS_MAX_BYTES)) else {
            return Ok(());
        };
        if cut.len() == self.buf.len() {
            return Ok(());
        }
        match (Cursor { buf: cut, pos: start, budget: Budget::UNLIMITED }).skip() {
            // Running out of the cut view means the dict needs bytes beyond the cap.
            Err(DecodeError::Truncated { .. }) => Err(DecodeError::DictTooLarge),
            other => other.map(|_| ()),
        }
    }

    /// Decode one value; `None` is an ext (an absent entry in `Mode::Options` dicts).
    fn value(&mut self, depth: usize, mode: Mode) -> Result<Option<Value>, DecodeError> {
        self.budget.take()?;
        Ok(Some(match self.head()? {
            Head::Nil => Value::Null,
            Head::Bool(b) => Value::Bool(b),
            Head::UInt(v) => Value::UInt(v),
            Head::Int(v) => Value::Int(v),
            Head::Float(v) => Value::Float(v),
            Head::Str(s) => Value::Str(s.to_owned()),
            Head::Bin(b) => Value::Bytes(b.to_vec()),
            Head::Array(n) => Value::List(self.list(n, depth, mode)?),
            Head::Map(n) => Value::Dict(self.map(n, depth, mode)?),
            Head::Ext => return Ok(None),
        }))
    }

    fn list(&mut self, n: u32, depth: usize, mode: Mode) -> Result<Vec<Value>, DecodeError> {
        let depth = enter(depth)?;
        let mut out = Vec::with_capacity(capacity(n, self.rest().len(), 1));
        for _ in 0..n {
            out.push(self.value(depth, mode)?.unwrap_or(Value::Null));
        }
        Ok(out)
    }

    fn map(&mut self, n: u32, depth: usize, mode: Mode) -> Result<Dict, DecodeError> {
        let depth = enter(depth)?;
        let mut out = MapBuilder::new(capacity(n, self.rest().len(), 2), mode == Mode::Options);
        for _ in 0..n {
            let key = self.key(mode)?;
            let value = self.value(depth, mode)?;
            out.entry(key, value);
        }
        Ok(out.finish())
    }

    fn key(&mut self, mode: Mode) -> Result<String, DecodeError> {
        let at = self.pos;
        match self.head()? {
            Head::Str(s) => Ok(s.to_owned()),
            Head::UInt(v) if mode == Mode::Payload => Ok(v.to_string()),
            Head::Int(v) if mode == Mode::Payload => Ok(v.to_string()),
            other => Err(DecodeError::KeyType { found: other.name(), at, integers_allowed: mode == Mode::Payload }),
        }
    }
}

/// Reads one WAMP message: a MessagePack array whose header gives the element count.
pub struct Reader<'a> {
    cur: Cursor<'a>,
    /// Elements of the top-level list not read yet.
    left: u32,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { cur: Cursor { buf, pos: 0, budget: Budget::MESSAGE }, left: 0 }
    }

    /// Account for one top-level element about to be read.
    fn element(&mut self) -> Result<(), DecodeError> {
        if self.left == 0 {
            return Err(DecodeError::ReadPastEnd);
        }
        self.left -= 1;
        Ok(())
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
        Ok(self.left > 0)
    }

    fn uint(&mut self) -> Result<u64, DecodeError> {
        self.element()?;
        match self.cur.head()? {
            Head::UInt(v) => Ok(v),
            // `Int` is always negative, so -1 - v is at most i64::MAX: the conversion cannot fail.
            Head::Int(v) => Err(DecodeError::WrongType {
                expected: "a non-negative integer",
                found: Found::Negative(u64::try_from(-1 - i128::from(v)).unwrap_or(u64::MAX)),
            }),
            other => Err(DecodeError::WrongType { expected: "an integer", found: Found::Type(other.name()) }),
        }
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.element()?;
        match self.cur.head()? {
            Head::Str(s) => Ok(s.to_owned()),
            other => Err(DecodeError::WrongType { expected: "a string", found: Found::Type(other.name()) }),
        }
    }

    fn dict(&mut self) -> Result<Dict, DecodeError> {
        self.element()?;
        let start = self.cur.pos;
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
        let start = self.cur.pos;
        let kind = self.cur.skip_element()?;
        Ok((start..self.cur.pos, kind))
    }

    fn end(&mut self) -> Result<(), DecodeError> {
        if self.left > 0 {
            return Err(DecodeError::UnreadElements { count: Some(u64::from(self.left)) });
        }
        let trailing = self.cur.rest().len();
        if trailing > 0 {
            return Err(DecodeError::TrailingBytes { count: trailing });
        }
        Ok(())
    }
}

/// A length as MessagePack's 32-bit header field. Messages are capped far below 4 GiB
/// (`limits::MESSAGE_SIZE_MAX_BYTES`), so the saturation is unreachable in practice.
fn len32(len: usize) -> u32 {
    debug_assert!(u32::try_from(len).is_ok(), "msgpack length {len} does not fit in 32 bits");
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// rmp writes through `io::Write`, which for a `Vec` never fails; the result carries nothing.
fn wrote<T, E>(r: Result<T, E>) {
    debug_assert!(r.is_ok(), "writing msgpack into a Vec failed");
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    wrote(wr::write_str_len(out, len32(s.len())));
    out.extend_from_slice(s.as_bytes());
}

fn write_dict(out: &mut Vec<u8>, d: &Dict) {
    wrote(wr::write_map_len(out, len32(d.len())));
    for (k, v) in d.iter() {
        write_str(out, k);
        encode_value(v, out);
    }
}

/// Writes one WAMP message as a MessagePack array.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }
}

impl codec::Writer for Writer<'_> {
    fn begin(&mut self, len: usize) {
        wrote(wr::write_array_len(self.out, len32(len)));
    }

    fn uint(&mut self, v: u64) {
        wrote(wr::write_uint(self.out, v));
    }

    fn string(&mut self, s: &str) {
        write_str(self.out, s);
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

/// Encode one value, each header in its smallest form.
pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => wrote(wr::write_nil(out)),
        Value::Bool(b) => wrote(wr::write_bool(out, *b)),
        Value::UInt(n) => wrote(wr::write_uint(out, *n)),
        Value::Int(n) => wrote(wr::write_sint(out, *n)),
        Value::Float(f) => wrote(wr::write_f64(out, *f)),
        Value::Str(s) => write_str(out, s),
        Value::Bytes(b) => {
            wrote(wr::write_bin_len(out, len32(b.len())));
            out.extend_from_slice(b);
        }
        Value::List(items) => {
            wrote(wr::write_array_len(out, len32(items.len())));
            for item in items {
                encode_value(item, out);
            }
        }
        Value::Dict(d) => write_dict(out, d),
    }
}
