//! The MessagePack serializer (`wamp.2.msgpack`): the [`codec::Reader`] and
//! [`codec::Writer`] for WAMP messages, and payload value decode/encode.
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

use super::codec::{self, ValueKind};
use super::error::{DecodeError, Found};
use super::value::{Dict, MapBuilder, Value};
use crate::limits::{DECODE_PREALLOC_MAX_ELEMENTS, VALUE_DEPTH_MAX};

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
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
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

    /// Validate one item without building it. The walk keeps the items left in each open
    /// container in a fixed array instead of recursing, so the depth bound is also the bound
    /// on the walk's memory.
    fn skip(&mut self) -> Result<ValueKind, DecodeError> {
        let mut open = [0u64; VALUE_DEPTH_MAX];
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

    /// Decode one value; `None` is an ext (an absent entry in `Mode::Options` dicts).
    fn value(&mut self, depth: usize, mode: Mode) -> Result<Option<Value>, DecodeError> {
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
        Reader { cur: Cursor::new(buf), left: 0 }
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
        match self.cur.head()? {
            Head::Map(n) => self.cur.map(n, 0, Mode::Options),
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
        let kind = self.cur.skip()?;
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

#[cfg(test)]
mod tests {
    use bytes::Bytes as Frame;

    use super::*;
    use crate::proto::wire::codec::{Reader as _, Serializer};
    use crate::proto::wire::fuzz::{Binary, hex, to_hex};
    use crate::proto::wire::message::{Message, decode, encode_to_vec};

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
        decode(Serializer::MsgPack, &Frame::from(hex(h)))
    }

    /// A msgpack str header and body.
    fn s(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        to_hex(&out)
    }

    #[test]
    fn integers_use_the_smallest_form() {
        let cases: &[(Value, &str)] = &[
            (Value::UInt(0), "00"),
            (Value::UInt(127), "7f"),
            (Value::UInt(128), "cc80"),
            (Value::UInt(255), "ccff"),
            (Value::UInt(256), "cd0100"),
            (Value::UInt(65_535), "cdffff"),
            (Value::UInt(65_536), "ce00010000"),
            (Value::UInt(u64::from(u32::MAX)), "ceffffffff"),
            (Value::UInt(1 << 32), "cf0000000100000000"),
            (Value::UInt(u64::MAX), "cfffffffffffffffff"),
            (Value::Int(-1), "ff"),
            (Value::Int(-32), "e0"),
            (Value::Int(-33), "d0df"),
            (Value::Int(-128), "d080"),
            (Value::Int(-129), "d1ff7f"),
            (Value::Int(-32_768), "d18000"),
            (Value::Int(-32_769), "d2ffff7fff"),
            (Value::Int(i64::from(i32::MIN)), "d280000000"),
            (Value::Int(i64::from(i32::MIN) - 1), "d3ffffffff7fffffff"),
            (Value::Int(i64::MIN), "d38000000000000000"),
        ];
        for (v, want) in cases {
            assert_eq!(enc(v), *want, "{v:?}");
            assert_eq!(decode_values(&hex(want)), Ok(vec![v.clone()]), "{want}");
        }
    }

    #[test]
    fn strings_binaries_and_containers_use_the_smallest_header() {
        let str_of = |n: usize| Value::Str("a".repeat(n));
        let bin_of = |n: usize| Value::Bytes(vec![7; n]);
        let list_of = |n: usize| Value::List(vec![Value::Null; n]);
        let dict_of = |n: usize| Value::Dict((0..n).map(|i| (i.to_string(), Value::Null)).collect());
        let cases: Vec<(Value, &str)> = vec![
            (str_of(0), "a0"),
            (str_of(31), "bf"),
            (str_of(32), "d920"),
            (str_of(255), "d9ff"),
            (str_of(256), "da0100"),
            (str_of(65_536), "db00010000"),
            (bin_of(0), "c400"),
            (bin_of(255), "c4ff"),
            (bin_of(256), "c50100"),
            (bin_of(65_536), "c600010000"),
            (list_of(0), "90"),
            (list_of(15), "9f"),
            (list_of(16), "dc0010"),
            (list_of(65_536), "dd00010000"),
            (dict_of(0), "80"),
            (dict_of(15), "8f"),
            (dict_of(16), "de0010"),
        ];
        for (v, prefix) in cases {
            let got = enc(&v);
            assert!(got.starts_with(prefix), "{}: {}", v.type_name(), &got[..got.len().min(16)]);
            assert_eq!(decode_values(&hex(&got)), Ok(vec![v]));
        }
    }

    #[test]
    fn floats_are_written_as_float64_and_read_in_both_widths() {
        assert_eq!(enc(&Value::Float(1.5)), "cb3ff8000000000000");
        assert_eq!(decode_values(&hex("ca3fc00000")), Ok(vec![Value::Float(1.5)]));
        assert_eq!(decode_values(&hex("cb3ff8000000000000")), Ok(vec![Value::Float(1.5)]));
    }

    #[test]
    fn non_minimal_and_signed_forms_normalise() {
        assert_eq!(decode_values(&hex("d005")), Ok(vec![Value::UInt(5)]));
        assert_eq!(decode_values(&hex("d3000000000000002a")), Ok(vec![Value::UInt(42)]));
        assert_eq!(decode_values(&hex("cd0001")), Ok(vec![Value::UInt(1)]));
        assert_eq!(decode_values(&hex("d90161")), Ok(vec![Value::str("a")]));
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
        let back = decode_values(&out).expect("decode");
        assert_eq!(back, vec![v, Value::Dict(Dict::new().with("k", 1u64))]);
    }

    #[test]
    fn uint_says_what_it_found() {
        let err = |h: &str| dec(h).expect_err("must fail").to_string();
        assert_eq!(err(&format!("92{}00", s("x"))), "message type: expected an integer, found string");
        assert_eq!(err("93ff0000"), "message type: expected a non-negative integer, found -1");
        assert_eq!(err("93cb3ff80000000000000000"), "message type: expected an integer, found float");
        // PUBLISHED with a string publication.
        assert_eq!(err(&format!("931101{}", s("x"))), "PUBLISHED.Publication: expected an integer, found string");
        assert!(err("9211c0").contains("expected an integer, found null"));
    }

    #[test]
    fn ext_is_absent_in_options_and_null_in_payloads() {
        // [16, 1, {"acknowledge": ext, "x": 1, "y": fixext1}, "t", [ext8], {"k": ext}]
        let h = format!(
            "9610 01 83 {} d40001 {} 01 {} c7020a0102 {} 91 c70000 81 {} d50100ff",
            s("acknowledge"),
            s("x"),
            s("y"),
            s("t"),
            s("k")
        )
        .replace(' ', "");
        let Message::Publish { options, payload, .. } = dec(&h).expect("decode") else { panic!("not a PUBLISH") };
        assert_eq!(options, Dict::new().with("x", 1u64));
        assert_eq!(
            payload.values().expect("values"),
            vec![Value::List(vec![Value::Null]), Value::Dict(Dict::new().with("k", Value::Null))]
        );
        // Nested options dicts drop ext entries too; lists in options keep a null.
        let h = format!("931001 82 {} 81 {} d40000 {} 92 01 d40000", s("a"), s("b"), s("c")).replace(' ', "");
        let mut r = Reader::new(input(&h));
        r.begin().expect("begin");
        assert_eq!(r.uint(), Ok(16));
        assert_eq!(r.uint(), Ok(1));
        let d = r.dict().expect("dict");
        assert_eq!(d, Dict::new().with("a", Dict::new()).with("c", Value::List(vec![Value::UInt(1), Value::Null])));
        let mut r = Reader::new(input("92d4000000"));
        r.begin().expect("begin");
        assert_eq!(r.skip(), Ok((1..4, ValueKind::Other)));
        assert_eq!(r.skip(), Ok((4..5, ValueKind::Int)));
        assert_eq!(r.end(), Ok(()));
    }

    #[test]
    fn duplicate_keys_keep_the_last() {
        let h = format!("91 83 {a} 01 {b} 02 {a} 03", a = s("a"), b = s("b")).replace(' ', "");
        let mut r = Reader::new(input(&h));
        r.begin().expect("begin");
        assert_eq!(r.dict(), Ok(Dict::new().with("a", 3u64).with("b", 2u64)));
        // A later ext removes the earlier value: the last word is "absent".
        let h = format!("91 82 {a} 01 {a} d40000", a = s("a")).replace(' ', "");
        let mut r = Reader::new(input(&h));
        r.begin().expect("begin");
        assert_eq!(r.dict(), Ok(Dict::new()));
    }

    #[test]
    fn dict_keys_must_be_strings_except_integers_in_payloads() {
        let mut r = Reader::new(input("918101c3"));
        r.begin().expect("begin");
        assert_eq!(r.dict().expect_err("int key").to_string(), "dict keys must be strings, found integer at offset 2");
        assert_eq!(
            decode_values(&hex("8301c3ff02d0fd03")),
            Ok(vec![Value::Dict(Dict::new().with("1", true).with("-1", 2u64).with("-3", 3u64))])
        );
        assert!(decode_values(&hex("81c40161c3")).expect_err("bin key").to_string().contains("found binary"));
    }

    #[test]
    fn top_level_list_is_exact() {
        // One element more than the header announces: trailing bytes.
        assert_eq!(dec("9243ce2f0604aa00").expect_err("trailing").to_string(), "1 trailing bytes after the message");
        // One element less: the item runs past the end.
        assert_eq!(
            dec("9343ce2f0604aa").expect_err("short").to_string(),
            "UNREGISTERED.Details: truncated input: the item at offset 7 runs past the end"
        );
        assert!(dec("80").expect_err("not a list").to_string().contains("must be a list, found dict"));
        assert_eq!(dec("90").expect_err("empty").to_string(), "empty message list");
        assert_eq!(
            dec("").expect_err("nothing").to_string(),
            "truncated input: the item at offset 0 runs past the end"
        );
        // Reading past the announced count is an error, not a read into whatever follows.
        let mut r = Reader::new(input("9101 02"));
        r.begin().expect("begin");
        assert_eq!(r.uint(), Ok(1));
        assert!(!r.more().expect("more"));
        assert!(r.uint().is_err());
        assert!(r.end().is_err());
    }

    #[test]
    fn hostile_lengths_fail_without_allocating() {
        for h in [
            "dd ffffffff",
            "dc ffff",
            "df ffffffff",
            "de ffff 00",
            "db ffffffff",
            "da ffff 61",
            "d9 ff",
            "c6 ffffffff",
            "c5 ffff",
            "c9 ffffffff 01",
            "c8 ffff 01 00",
            "d8 01 0000",
            "cf 0000",
            "cb 3ff8",
            "dd ffffffff 90 90 90",
        ] {
            let h = h.replace(' ', "");
            assert!(decode_values(&hex(&h)).is_err(), "{h}");
            let frame = hex(&(format!("9510 01 80 {}", s("t")).replace(' ', "") + &h));
            assert!(decode(Serializer::MsgPack, &Frame::from(frame)).is_err(), "{h}");
            assert!(dec(&h).is_err(), "{h}");
        }
        assert!(dec("c1").expect_err("reserved").to_string().contains("0xc1"));
    }

    fn nested(levels: usize) -> Vec<u8> {
        let mut out = vec![0x91; levels];
        out.push(0x01);
        out
    }

    #[test]
    fn nesting_is_bounded() {
        assert!(decode_values(&nested(VALUE_DEPTH_MAX)).is_ok());
        let err = decode_values(&nested(VALUE_DEPTH_MAX + 1)).expect_err("too deep").to_string();
        assert!(err.contains("nested deeper than 64"), "{err}");
        assert_eq!(Cursor::new(&nested(VALUE_DEPTH_MAX)).skip(), Ok(ValueKind::List));
        assert!(Cursor::new(&nested(VALUE_DEPTH_MAX + 1)).skip().is_err());
        // A million-deep dict chain errors early rather than overflowing the stack.
        let mut dicts = Vec::new();
        for _ in 0..1_000_000 {
            dicts.extend_from_slice(&[0x81, 0xa1, b'k']);
        }
        dicts.push(0xc0);
        assert!(decode_values(&dicts).is_err());
        assert!(Cursor::new(&dicts).skip().is_err());
    }

    #[test]
    fn skip_validates_utf8_and_reports_the_range() {
        let h = format!("9510 01 80 {} 92 a2c328 01", s("t")).replace(' ', "");
        assert!(dec(&h).expect_err("bad utf-8").to_string().contains("invalid UTF-8"));
        let h = format!("9510 01 80 {} 92 {} 01", s("t"), s("é")).replace(' ', "");
        let Message::Publish { payload, .. } = dec(&h).expect("decode") else { panic!("not a PUBLISH") };
        assert_eq!(&payload.raw[..], &hex(&format!("92{}01", s("é")))[..]);
        assert_eq!(payload.count, 1);
    }

    #[test]
    fn writer_appends_raw_payload_verbatim() {
        let payload = crate::proto::wire::Payload::from_values(Serializer::MsgPack, Some(&[Value::UInt(1)]), None);
        let msg = Message::Event { subscription: 1, publication: 2, details: Dict::new(), payload };
        assert_eq!(
            to_hex(&encode_to_vec(Serializer::MsgPack, &msg).expect("encode")),
            "952401028091 01".replace(' ', "")
        );
    }

    // Robustness: random and mutated frames must never panic, and whatever decodes must
    // re-encode to something that decodes to the same bytes again.

    const FUZZ: Binary = Binary {
        serializer: Serializer::MsgPack,
        transcode_to: Serializer::Cbor,
        // Bytes that are headers with large or edge-case lengths, or otherwise special.
        interesting: &[
            0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc4, 0xc6, 0xc9, 0xcf, 0xd3, 0xd4, 0xdb, 0xdd,
            0xdf, 0xff,
        ],
        headers: &[
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdb, 0xff, 0xff, 0xff, 0xff],
            &[0xc6, 0x7f, 0xff, 0xff, 0xff],
            &[0xdf, 0x00, 0x01, 0x00, 0x00],
        ],
    };

    #[test]
    fn vectors_truncated_or_extended_fail_cleanly() {
        FUZZ.vectors_truncated_or_extended_fail_cleanly(0xc0);
    }

    #[test]
    fn skip_and_value_agree_on_mutated_items() {
        FUZZ.skip_and_value_agree(0x5eed_0003, |bytes| {
            let mut walked = Cursor::new(bytes);
            let skipped = walked.skip().map(|_| walked.pos);
            let mut built = Cursor::new(bytes);
            (skipped.ok(), built.value(0, Mode::Payload).map(|_| built.pos))
        });
    }

    #[test]
    fn mutated_and_random_frames_never_panic() {
        FUZZ.mutated_and_random_frames_never_panic(0x5eed_0001, |rng| {
            [0x90 | rng.below(8) as u8, [16u8, 36, 48, 50, 1, 3][rng.below(6)]]
        });
    }
}
