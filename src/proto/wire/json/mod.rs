//! The JSON serializer (`wamp.2.json`): the message [`Reader`] and [`Writer`], the
//! validating scanner that lets payloads pass through without being decoded, and
//! [`Value`] ⇄ JSON for dicts and transcoded payloads.
//!
//! Files: `scan.rs` the byte helpers and the validating scanner, `build.rs` the value
//! builders (hand parser, simd-json), `write.rs` the writer, this file the message reader and
//! payload decoding. Must not: know message layouts (that is `message.rs`, which uses the
//! [`codec::Reader`]/[`codec::Writer`] implemented here) or panic on any input.
//!
//! **Scanning.** `skip_value` is a hand-written validating scanner: it checks one JSON
//! value against RFC 8259 completely (string escapes, surrogate pairs, UTF-8, the number
//! grammar, literals, nesting of at most `VALUE_DEPTH_MAX` lists/dicts counted from the
//! element itself) and returns where it ends and its [`ValueKind`], building nothing.
//! `Reader::skip` uses it for the payload. The hand parser is built from the same
//! string, number and literal functions and the same depth rule, so what `skip` accepts is
//! exactly what the decoders accept (a test checks this against serde_json too). Strings
//! are scanned eight bytes at a time. A string starting with the escape `\u0000` is
//! `ValueKind::Bytes` without its base64 being checked.
//!
//! **Decoding.** `{}` (the common `Options`) allocates nothing; `uint()` and `string()`
//! parse scalars by hand, taking escape-free strings straight from the slice. Values larger
//! than `limits::JSON_HAND_PARSE_MAX_BYTES` are scanned for their extent and go to simd-json, which
//! parses in place, so the slice is copied into a thread-local scratch buffer first
//! (thread-per-core: one per shard, reused). Smaller values are validated and built in one
//! pass by the hand-written parser: measured with `bench/codec_json.rs`,
//! simd-json's per-document setup (structural index pass, tape, padded copy) costs more
//! than it saves on the small `Options`/`Details` dicts that make up most WAMP traffic (see
//! that constant for the figures). The hand parser is also the fallback when simd-json
//! refuses a value the scanner accepted, which happens only for numbers outside its range:
//! integers beyond i64/u64 (floats here) and floats beyond f64 (`1e999` is infinity here,
//! and is written back as `null`).
//!
//! **Bounds.** A dict element (`Options`, `Details`) encoded in more than
//! `limits::OPTIONS_MAX_BYTES` is refused once the scanner has found its extent, before
//! anything is built, and both builders count the values they build for one message against
//! `limits::OPTIONS_VALUES_MAX` ([`codec::Budget`]). Dict keys are strings by the grammar.
//!
//! **Value mapping.** Non-negative integers are `UInt`, negative ones `Int`, integers
//! outside both ranges and numbers with a fraction or exponent `Float` (`-0` is `UInt(0)`).
//! A string starting with U+0000 is WAMP binary: `Bytes` of the base64 (standard alphabet,
//! padded) that follows; when that is not valid base64 the string stays a `Str`. Of
//! duplicate dict keys the last value wins. Lone surrogate escapes (`"\ud800"`) are
//! rejected everywhere, since no Rust string can hold them. `string()` (URIs, reasons)
//! refuses a binary string rather than return text with a NUL in it.
//!
//! **Encoding** reproduces autobahn-python (`json.dumps(separators=(',', ':'),
//! ensure_ascii=False)`) byte for byte: no spaces; `"` and `\` escaped, control characters
//! as `\b \f \n \r \t` or lowercase `\u00XX`; `/`, DEL and all non-ASCII written as they
//! are (UTF-8). Floats use Python's `repr` (shortest round-trip digits, `1.0`, `1e+16`,
//! `1e-05`); NaN and ±infinity, which JSON cannot carry, become `null`. `Bytes` become
//! `"\u0000" + base64`.

use std::ops::Range;

use self::build::{build_at, string_text};
use self::scan::{NumScan, scan_number, scan_string, skip_value, skip_ws, syntax, unexpected, wrong_type};
pub use self::write::{Writer, encode_value};
use super::codec::{self, Budget, ValueKind};
use super::error::{DecodeError, Found};
use super::value::{Dict, Value};
use crate::limits::OPTIONS_MAX_BYTES;

mod build;
mod scan;
#[cfg(test)]
mod tests;
mod write;

/// Reads one JSON WAMP message: a top-level list whose elements are read in order.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// `begin` has consumed the `[`.
    started: bool,
    /// An element has been read, so the next one must be preceded by a comma.
    need_comma: bool,
    /// `more` returned true and the element it announced has not been read yet; `pos` is
    /// at its first byte.
    pending: bool,
    /// Values the message may still build (`limits::OPTIONS_VALUES_MAX`).
    budget: Budget,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, started: false, need_comma: false, pending: false, budget: Budget::MESSAGE }
    }

    /// The position of the next element's first byte, marking it read.
    fn element(&mut self) -> Result<usize, DecodeError> {
        if !self.pending && !codec::Reader::more(self)? {
            return Err(DecodeError::ReadPastEnd);
        }
        self.pending = false;
        self.need_comma = true;
        Ok(self.pos)
    }

    /// Build the element at `start`, encoded in at most `max_bytes`, leaving `pos` after it.
    fn build_element(&mut self, start: usize, max_bytes: usize) -> Result<Value, DecodeError> {
        let (v, end) = build_at(self.buf, start, max_bytes, &mut self.budget)?;
        self.pos = end;
        Ok(v)
    }
}

impl codec::Reader for Reader<'_> {
    fn begin(&mut self) -> Result<(), DecodeError> {
        let pos = skip_ws(self.buf, 0);
        if self.buf.get(pos) != Some(&b'[') {
            return Err(unexpected(self.buf, pos, "'[' at the start of the message"));
        }
        self.pos = pos + 1;
        self.started = true;
        Ok(())
    }

    fn more(&mut self) -> Result<bool, DecodeError> {
        if self.pending {
            return Ok(true);
        }
        if !self.started {
            return Err(DecodeError::ListNotStarted);
        }
        let buf = self.buf;
        let pos = skip_ws(buf, self.pos);
        match buf.get(pos) {
            None => Err(syntax("message list not closed", pos)),
            Some(b']') => {
                self.pos = pos;
                Ok(false)
            }
            Some(b',') if self.need_comma => {
                let next = skip_ws(buf, pos + 1);
                if matches!(buf.get(next), Some(b']') | None) {
                    return Err(unexpected(buf, next, "an element after ','"));
                }
                self.pos = next;
                self.pending = true;
                Ok(true)
            }
            Some(_) if !self.need_comma => {
                self.pos = pos;
                self.pending = true;
                Ok(true)
            }
            Some(_) => Err(unexpected(buf, pos, "',' or ']'")),
        }
    }

    fn uint(&mut self) -> Result<u64, DecodeError> {
        let buf = self.buf;
        let start = self.element()?;
        const INTEGER: &str = "an integer";
        if !matches!(buf.get(start), Some(b'0'..=b'9')) {
            let found = match buf.get(start) {
                Some(b'-') => match scan_number(buf, start) {
                    Ok(NumScan { integer: true, .. }) => "negative integer",
                    Ok(NumScan { integer: false, .. }) => "float",
                    Err(e) => return Err(e),
                },
                _ => return Err(wrong_type(buf, start, INTEGER)),
            };
            return Err(DecodeError::WrongType { expected: INTEGER, found: Found::Type(found) });
        }
        let n = scan_number(buf, start)?;
        if !n.integer {
            return Err(DecodeError::WrongType { expected: INTEGER, found: Found::Type("float") });
        }
        let mut v = 0u64;
        for &d in buf.get(start..n.end).unwrap_or_default() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or(DecodeError::IntegerOutOfRange)?;
        }
        self.pos = n.end;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let buf = self.buf;
        let start = self.element()?;
        if buf.get(start) != Some(&b'"') {
            return Err(wrong_type(buf, start, "a string"));
        }
        let s = scan_string(buf, start)?;
        if s.binary {
            return Err(DecodeError::WrongType { expected: "a string", found: Found::Type("binary") });
        }
        let text = string_text(buf, start, &s)?.into_owned();
        self.pos = s.end;
        Ok(text)
    }

    fn dict(&mut self) -> Result<Dict, DecodeError> {
        let buf = self.buf;
        let start = self.element()?;
        if buf.get(start) != Some(&b'{') {
            return Err(wrong_type(buf, start, "a dict"));
        }
        // The usual `Options`/`Details`: nothing to build, nothing to allocate.
        if buf.get(start + 1) == Some(&b'}') {
            self.pos = start + 2;
            return Ok(Dict::new());
        }
        match self.build_element(start, OPTIONS_MAX_BYTES)? {
            Value::Dict(d) => Ok(d),
            other => Err(DecodeError::WrongType { expected: "a dict", found: Found::Type(other.type_name()) }),
        }
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        let start = self.element()?;
        self.build_element(start, usize::MAX)
    }

    fn skip(&mut self) -> Result<(Range<usize>, ValueKind), DecodeError> {
        let start = self.element()?;
        let (end, kind) = skip_value(self.buf, start)?;
        self.pos = end;
        Ok((start..end, kind))
    }

    fn end(&mut self) -> Result<(), DecodeError> {
        let buf = self.buf;
        let pos = skip_ws(buf, self.pos);
        if self.pending || buf.get(pos) != Some(&b']') {
            return Err(unexpected(buf, pos, "']' at the end of the message"));
        }
        let rest = skip_ws(buf, pos + 1);
        if rest != buf.len() {
            return Err(unexpected(buf, rest, "nothing after the message"));
        }
        self.pos = rest;
        Ok(())
    }
}

/// Decode a payload's raw elements: JSON values separated by commas and optional
/// whitespace, as `Payload.raw` holds them. Empty input is no elements.
pub fn decode_values(raw: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let mut out = Vec::with_capacity(2);
    let mut pos = skip_ws(raw, 0);
    if pos == raw.len() {
        return Ok(out);
    }
    let mut budget = Budget::UNLIMITED;
    loop {
        let (v, end) = build_at(raw, pos, usize::MAX, &mut budget)?;
        out.push(v);
        pos = skip_ws(raw, end);
        match raw.get(pos) {
            None => return Ok(out),
            Some(b',') => pos = skip_ws(raw, pos + 1),
            Some(_) => return Err(unexpected(raw, pos, "',' between payload elements")),
        }
    }
}
