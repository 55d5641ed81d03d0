//! The JSON serializer (`wamp.2.json`): the message [`Reader`] and [`Writer`], the
//! validating scanner that lets payloads pass through without being decoded, and
//! [`Value`] ⇄ JSON for dicts and transcoded payloads.
//!
//! **Scanning.** `skip_value` is a hand-written validating scanner: it checks one JSON
//! value against RFC 8259 completely (string escapes, surrogate pairs, UTF-8, the number
//! grammar, literals, nesting of at most [`VALUE_DEPTH_MAX`] lists/dicts counted from the
//! element itself) and returns where it ends and its [`ValueKind`], building nothing.
//! `Reader::skip` uses it for the payload. The hand parser below is built from the same
//! string, number and literal functions and the same depth rule, so what `skip` accepts is
//! exactly what the decoders accept (a test checks this against serde_json too). Strings
//! are scanned eight bytes at a time. A string starting with the escape `\u0000` is
//! `ValueKind::Bytes` without its base64 being checked.
//!
//! **Decoding.** `{}` (the common `Options`) allocates nothing; `uint()` and `string()`
//! parse scalars by hand, taking escape-free strings straight from the slice. Values larger
//! than `HAND_PARSE_MAX_BYTES` are scanned for their extent and go to simd-json, which
//! parses in place, so the slice is copied into a thread-local scratch buffer first
//! (thread-per-core: one per shard, reused). Smaller values are validated and built in one
//! pass by the hand-written parser in this file: measured with `bench/codec_json.rs`,
//! simd-json's per-document setup (structural index pass, tape, padded copy) costs more
//! than it saves on the small `Options`/`Details` dicts that make up most WAMP traffic (see
//! the constant for the figures). The hand parser is also the fallback when simd-json
//! refuses a value the scanner accepted, which happens only for numbers outside its range:
//! integers beyond i64/u64 (floats here) and floats beyond f64 (`1e999` is infinity here,
//! and is written back as `null`).
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

use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use simd_json::{Buffers, Node, StaticNode, Tape};

use super::message::{self, DecodeError, ValueKind};
use super::value::{Dict, Value};
use crate::limits::VALUE_DEPTH_MAX;

/// Values (as encoded bytes) up to this size are built by the hand-written parser; larger
/// ones by simd-json. Measured with `bench/codec_json.rs` (`json_payload_values`), forcing
/// one builder or the other: hand-built is ~20% faster at 64 B, the two are even from
/// ~600 B to 1 KiB, and simd-json is ~5% faster at 64 KiB.
const HAND_PARSE_MAX_BYTES: usize = 512;

/// A scratch buffer grown past this by one large value is released after use, so one
/// 16 MiB payload does not pin 16 MiB per shard for ever.
const SCRATCH_KEEP_BYTES: usize = 256 * 1024;

// The scanner keeps the dict/list state of each open container in one bit of a u64.
const _: () = assert!(VALUE_DEPTH_MAX <= 64, "the scanner's nesting stack is a u64 bit set");

// ---------------------------------------------------------------------------------------
// Byte-level helpers
// ---------------------------------------------------------------------------------------

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of the result is set for a byte of `w` that is zero (exact for the
/// "any byte" question: false positives only occur above a true one).
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(ONES) & !w & HIGHS
}

/// Where the word has a `"`, `\` or control character (< 0x20), the bytes that end a run
/// of plain string content when scanning and when escaping: `None` if there is none, else
/// the count of plain bytes before the first (the lowest flagged byte is always exact).
#[inline(always)]
fn string_special(w: u64) -> Option<usize> {
    let quote = zero_bytes(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_bytes(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    let special = quote | backslash | control;
    if special == 0 { None } else { Some((special.trailing_zeros() / 8) as usize) }
}

/// The 8 bytes at `pos` as a little-endian word, if there are 8.
#[inline(always)]
fn word_at(buf: &[u8], pos: usize) -> Option<u64> {
    let chunk: [u8; 8] = buf.get(pos..pos.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

#[inline(always)]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The position of the first non-whitespace byte at or after `pos`.
#[inline]
fn skip_ws(buf: &[u8], mut pos: usize) -> usize {
    while let Some(&b) = buf.get(pos) {
        if !is_ws(b) {
            break;
        }
        pos += 1;
    }
    pos
}

/// What the byte at `pos` is, for error texts.
fn describe_byte(buf: &[u8], pos: usize) -> String {
    match buf.get(pos) {
        None => "end of input".to_owned(),
        Some(&b) if b.is_ascii_graphic() => format!("'{}'", b as char),
        Some(&b) => format!("byte 0x{b:02x}"),
    }
}

fn unexpected(buf: &[u8], pos: usize, wanted: &str) -> DecodeError {
    DecodeError(format!("expected {wanted}, found {} at byte {pos}", describe_byte(buf, pos)))
}

fn syntax(what: &str, pos: usize) -> DecodeError {
    DecodeError(format!("{what} at byte {pos}"))
}

/// The type of the value starting at `pos`, by its first byte, for "expected X, found Y".
fn describe_value(buf: &[u8], pos: usize) -> String {
    match buf.get(pos) {
        Some(b'"') if buf.get(pos + 1..pos + 7) == Some(&b"\\u0000"[..]) => "binary".to_owned(),
        Some(b'"') => "string".to_owned(),
        Some(b'{') => "dict".to_owned(),
        Some(b'[') => "list".to_owned(),
        Some(b't' | b'f') => "bool".to_owned(),
        Some(b'n') => "null".to_owned(),
        Some(b'-') => "negative number".to_owned(),
        Some(b'0'..=b'9') => "number".to_owned(),
        _ => describe_byte(buf, pos),
    }
}

// ---------------------------------------------------------------------------------------
// The validating scanner
// ---------------------------------------------------------------------------------------

/// What scanning one string found.
struct StrScan {
    /// Position just after the closing quote.
    end: usize,
    /// The string contains escapes, so its text differs from its bytes.
    escaped: bool,
    /// The string starts with the escape `\u0000` (WAMP binary).
    binary: bool,
}

/// Scan the string whose opening quote is at `start`. Validates escapes (including
/// surrogate pairs), rejects raw control characters and checks UTF-8.
fn scan_string(buf: &[u8], start: usize) -> Result<StrScan, DecodeError> {
    let body = start + 1;
    let mut pos = body;
    let mut escaped = false;
    let mut high = 0u64;
    loop {
        // Plain content, eight bytes at a time, then straight to the first special byte.
        // Non-ASCII bytes are plain here; they are remembered and UTF-8 is checked once at
        // the end.
        if let Some(w) = word_at(buf, pos) {
            match string_special(w) {
                None => {
                    high |= w & HIGHS;
                    pos += 8;
                    continue;
                }
                Some(plain) => {
                    high |= w & HIGHS & ((1u64 << (8 * plain)) - 1);
                    pos += plain;
                }
            }
        }
        let Some(&b) = buf.get(pos) else {
            return Err(syntax("unterminated string", start));
        };
        match b {
            b'"' => break,
            b'\\' => {
                escaped = true;
                pos = escape(buf, pos)?.1;
            }
            0..=0x1f => return Err(syntax("unescaped control character in string", pos)),
            _ => {
                high |= u64::from(b & 0x80);
                pos += 1;
            }
        }
    }
    if high != 0 {
        let bytes = buf.get(body..pos).unwrap_or_default();
        if let Err(e) = std::str::from_utf8(bytes) {
            return Err(syntax("invalid UTF-8 in string", body + e.valid_up_to()));
        }
    }
    let binary = buf.get(body..body + 6) == Some(&b"\\u0000"[..]);
    Ok(StrScan { end: pos + 1, escaped, binary })
}

/// The four hex digits at `pos` as a number.
fn hex4(buf: &[u8], pos: usize) -> Result<u32, DecodeError> {
    let digits = buf.get(pos..pos + 4).ok_or_else(|| syntax("truncated \\u escape", pos))?;
    let mut v = 0u32;
    for (i, &d) in digits.iter().enumerate() {
        let n = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(syntax("invalid hex digit in \\u escape", pos + i)),
        };
        v = v << 4 | u32::from(n);
    }
    Ok(v)
}

/// Decode the escape whose backslash is at `pos`: the character and the position after
/// the escape. A `\uD8xx` high surrogate must be followed by a `\uDCxx` low one.
fn escape(buf: &[u8], pos: usize) -> Result<(char, usize), DecodeError> {
    let c = match buf.get(pos + 1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let unit = hex4(buf, pos + 2)?;
            return match unit {
                0xD800..=0xDBFF => {
                    let low =
                        if buf.get(pos + 6..pos + 8) == Some(&b"\\u"[..]) { hex4(buf, pos + 8).ok() } else { None };
                    match low {
                        Some(low @ 0xDC00..=0xDFFF) => {
                            let cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                            let c = char::from_u32(cp).ok_or_else(|| syntax("invalid surrogate pair", pos))?;
                            Ok((c, pos + 12))
                        }
                        _ => Err(syntax("lone high surrogate in \\u escape", pos)),
                    }
                }
                0xDC00..=0xDFFF => Err(syntax("lone low surrogate in \\u escape", pos)),
                _ => {
                    let c = char::from_u32(unit).ok_or_else(|| syntax("invalid \\u escape", pos))?;
                    Ok((c, pos + 6))
                }
            };
        }
        None => return Err(syntax("unterminated string", pos)),
        Some(_) => return Err(syntax("invalid escape in string", pos)),
    };
    Ok((c, pos + 2))
}

/// What scanning one number found.
struct NumScan {
    end: usize,
    /// No fraction and no exponent.
    integer: bool,
}

/// The position after the ASCII digits starting at `pos`.
#[inline]
fn digits_end(buf: &[u8], mut pos: usize) -> usize {
    while matches!(buf.get(pos), Some(b'0'..=b'9')) {
        pos += 1;
    }
    pos
}

/// Scan the number at `start`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn scan_number(buf: &[u8], start: usize) -> Result<NumScan, DecodeError> {
    let mut pos = start;
    if buf.get(pos) == Some(&b'-') {
        pos += 1;
    }
    match buf.get(pos) {
        Some(b'0') => {
            pos += 1;
            if matches!(buf.get(pos), Some(b'0'..=b'9')) {
                return Err(syntax("leading zero in number", start));
            }
        }
        Some(b'1'..=b'9') => pos = digits_end(buf, pos + 1),
        _ => return Err(unexpected(buf, pos, "a digit")),
    }
    let mut integer = true;
    if buf.get(pos) == Some(&b'.') {
        integer = false;
        let end = digits_end(buf, pos + 1);
        if end == pos + 1 {
            return Err(unexpected(buf, end, "a digit after '.'"));
        }
        pos = end;
    }
    if matches!(buf.get(pos), Some(b'e' | b'E')) {
        integer = false;
        pos += 1;
        if matches!(buf.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        let end = digits_end(buf, pos);
        if end == pos {
            return Err(unexpected(buf, end, "a digit in the exponent"));
        }
        pos = end;
    }
    Ok(NumScan { end: pos, integer })
}

/// The position after `lit` (`true`, `false`, `null`) at `pos`.
fn scan_literal(buf: &[u8], pos: usize, lit: &'static [u8]) -> Result<usize, DecodeError> {
    if buf.get(pos..pos + lit.len()) == Some(lit) { Ok(pos + lit.len()) } else { Err(syntax("invalid literal", pos)) }
}

/// Scan a dict key starting at `pos` (after whitespace) and the `:` after it; returns the
/// position of the value.
fn scan_key(buf: &[u8], pos: usize) -> Result<usize, DecodeError> {
    if buf.get(pos) != Some(&b'"') {
        return Err(unexpected(buf, pos, "a string key"));
    }
    let pos = skip_ws(buf, scan_string(buf, pos)?.end);
    if buf.get(pos) != Some(&b':') {
        return Err(unexpected(buf, pos, "':'"));
    }
    Ok(skip_ws(buf, pos + 1))
}

/// Validate the one JSON value starting at `start` (no leading whitespace) without building
/// it. Returns the position just after it and its kind.
///
/// Iterative, so hostile nesting costs no stack; bit `i` of `dicts` says whether the open
/// container at depth `i + 1` is a dict.
fn skip_value(buf: &[u8], start: usize) -> Result<(usize, ValueKind), DecodeError> {
    let mut dicts = 0u64;
    let mut depth = 0usize;
    let mut pos = start;
    let mut top: Option<ValueKind> = None;
    'value: loop {
        // `pos` is at the first byte of a value.
        let kind = match buf.get(pos).copied() {
            Some(b'"') => {
                let s = scan_string(buf, pos)?;
                pos = s.end;
                if s.binary { ValueKind::Bytes } else { ValueKind::Str }
            }
            Some(b'-' | b'0'..=b'9') => {
                let n = scan_number(buf, pos)?;
                pos = n.end;
                if n.integer { ValueKind::Int } else { ValueKind::Float }
            }
            Some(b't') => {
                pos = scan_literal(buf, pos, b"true")?;
                ValueKind::Bool
            }
            Some(b'f') => {
                pos = scan_literal(buf, pos, b"false")?;
                ValueKind::Bool
            }
            Some(b'n') => {
                pos = scan_literal(buf, pos, b"null")?;
                ValueKind::Null
            }
            Some(open @ (b'{' | b'[')) => {
                if depth >= VALUE_DEPTH_MAX {
                    return Err(syntax(&format!("nesting deeper than {VALUE_DEPTH_MAX}"), pos));
                }
                let is_dict = open == b'{';
                if is_dict {
                    dicts |= 1 << depth;
                } else {
                    dicts &= !(1 << depth);
                }
                depth += 1;
                let kind = if is_dict { ValueKind::Dict } else { ValueKind::List };
                top.get_or_insert(kind);
                pos = skip_ws(buf, pos + 1);
                let close = if is_dict { b'}' } else { b']' };
                if buf.get(pos) == Some(&close) {
                    depth -= 1;
                    pos += 1;
                } else {
                    if is_dict {
                        pos = scan_key(buf, pos)?;
                    }
                    continue 'value;
                }
                kind
            }
            _ => return Err(unexpected(buf, pos, "a value")),
        };
        top.get_or_insert(kind);
        // After a value: close finished containers, or go on to the next element.
        loop {
            if depth == 0 {
                return Ok((pos, top.unwrap_or(kind)));
            }
            pos = skip_ws(buf, pos);
            let in_dict = dicts & (1 << (depth - 1)) != 0;
            match buf.get(pos) {
                Some(b',') => {
                    pos = skip_ws(buf, pos + 1);
                    if in_dict {
                        pos = scan_key(buf, pos)?;
                    }
                    continue 'value;
                }
                Some(b'}') if in_dict => {
                    depth -= 1;
                    pos += 1;
                }
                Some(b']') if !in_dict => {
                    depth -= 1;
                    pos += 1;
                }
                _ => return Err(unexpected(buf, pos, if in_dict { "',' or '}'" } else { "',' or ']'" })),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Building values
// ---------------------------------------------------------------------------------------

/// The text of a string whose scan is `s` and whose opening quote is at `start`.
fn string_text<'b>(buf: &'b [u8], start: usize, s: &StrScan) -> Result<Cow<'b, str>, DecodeError> {
    let bytes = buf.get(start + 1..s.end - 1).ok_or_else(|| syntax("unterminated string", start))?;
    let text =
        std::str::from_utf8(bytes).map_err(|e| syntax("invalid UTF-8 in string", start + 1 + e.valid_up_to()))?;
    if !s.escaped {
        return Ok(Cow::Borrowed(text));
    }
    let raw = text.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut run = 0;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'\\' {
            out.push_str(text.get(run..i).unwrap_or_default());
            let (c, next) = escape(raw, i)?;
            out.push(c);
            i = next;
            run = next;
        } else {
            i += 1;
        }
    }
    out.push_str(text.get(run..).unwrap_or_default());
    Ok(Cow::Owned(out))
}

/// A decoded JSON string as a value: WAMP binary when it starts with U+0000 and the rest
/// is base64, else text.
fn string_value(s: Cow<'_, str>) -> Value {
    if let Some(b64) = s.strip_prefix('\0')
        && let Ok(bytes) = BASE64.decode(b64)
    {
        return Value::Bytes(bytes);
    }
    Value::Str(s.into_owned())
}

/// A scanned number's text as a value (see the module doc for the mapping).
fn number_value(text: &[u8], integer: bool, pos: usize) -> Result<Value, DecodeError> {
    let text = std::str::from_utf8(text).map_err(|_| syntax("invalid number", pos))?;
    if integer {
        if text.starts_with('-') {
            if let Ok(v) = text.parse::<i64>() {
                return Ok(Value::int(v));
            }
        } else if let Ok(v) = text.parse::<u64>() {
            return Ok(Value::UInt(v));
        }
    }
    text.parse::<f64>().map(Value::Float).map_err(|_| syntax("invalid number", pos))
}

/// The hand-written recursive-descent parser, for small values and as the fallback for the
/// numbers simd-json refuses. It validates as it goes (with the scanner's own functions),
/// and recursion is bounded by `VALUE_DEPTH_MAX`.
struct Parser<'b> {
    buf: &'b [u8],
    pos: usize,
}

impl<'b> Parser<'b> {
    /// Parse the whole of `buf` as one value (surrounding whitespace allowed).
    fn document(buf: &'b [u8]) -> Result<Value, DecodeError> {
        let mut p = Parser { buf, pos: skip_ws(buf, 0) };
        let v = p.value(0)?;
        let end = skip_ws(buf, p.pos);
        if end != buf.len() {
            return Err(unexpected(buf, end, "end of value"));
        }
        Ok(v)
    }

    /// Parse the value at `self.pos`; `depth` containers enclose it.
    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let buf = self.buf;
        let start = self.pos;
        match buf.get(start).copied() {
            Some(b'"') => {
                let s = scan_string(buf, start)?;
                self.pos = s.end;
                Ok(string_value(string_text(buf, start, &s)?))
            }
            Some(b'-' | b'0'..=b'9') => {
                let n = scan_number(buf, start)?;
                self.pos = n.end;
                number_value(buf.get(start..n.end).unwrap_or_default(), n.integer, start)
            }
            Some(b't') => {
                self.pos = scan_literal(buf, start, b"true")?;
                Ok(Value::Bool(true))
            }
            Some(b'f') => {
                self.pos = scan_literal(buf, start, b"false")?;
                Ok(Value::Bool(false))
            }
            Some(b'n') => {
                self.pos = scan_literal(buf, start, b"null")?;
                Ok(Value::Null)
            }
            Some(b'[') => {
                if depth >= VALUE_DEPTH_MAX {
                    return Err(syntax(&format!("nesting deeper than {VALUE_DEPTH_MAX}"), start));
                }
                let mut list = Vec::new();
                self.pos = skip_ws(buf, start + 1);
                if buf.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    return Ok(Value::List(list));
                }
                loop {
                    list.push(self.value(depth + 1)?);
                    self.pos = skip_ws(buf, self.pos);
                    match buf.get(self.pos) {
                        Some(b',') => self.pos = skip_ws(buf, self.pos + 1),
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::List(list));
                        }
                        _ => return Err(unexpected(buf, self.pos, "',' or ']'")),
                    }
                }
            }
            Some(b'{') => {
                if depth >= VALUE_DEPTH_MAX {
                    return Err(syntax(&format!("nesting deeper than {VALUE_DEPTH_MAX}"), start));
                }
                let mut dict = Dict::new();
                self.pos = skip_ws(buf, start + 1);
                if buf.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    return Ok(Value::Dict(dict));
                }
                loop {
                    let key_at = self.pos;
                    if buf.get(key_at) != Some(&b'"') {
                        return Err(unexpected(buf, key_at, "a string key"));
                    }
                    let s = scan_string(buf, key_at)?;
                    let key = string_text(buf, key_at, &s)?.into_owned();
                    self.pos = skip_ws(buf, s.end);
                    if buf.get(self.pos) != Some(&b':') {
                        return Err(unexpected(buf, self.pos, "':'"));
                    }
                    self.pos = skip_ws(buf, self.pos + 1);
                    let v = self.value(depth + 1)?;
                    dict.insert(key, v);
                    self.pos = skip_ws(buf, self.pos);
                    match buf.get(self.pos) {
                        Some(b',') => self.pos = skip_ws(buf, self.pos + 1),
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Value::Dict(dict));
                        }
                        _ => return Err(unexpected(buf, self.pos, "',' or '}'")),
                    }
                }
            }
            _ => Err(unexpected(buf, start, "a value")),
        }
    }
}

/// simd-json's reusable state: the padded copy of the input it parses in place, its
/// internal buffers and the tape. One per thread, that is one per shard.
struct Scratch {
    input: Vec<u8>,
    buffers: Buffers,
    tape: Option<Tape<'static>>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { input: Vec::new(), buffers: Buffers::new(HAND_PARSE_MAX_BYTES * 4), tape: None }
    }

    fn parse(&mut self, json: &[u8]) -> Result<Value, DecodeError> {
        let Scratch { input, buffers, tape: slot } = &mut *self;
        input.clear();
        input.extend_from_slice(json);
        input.resize(json.len() + simd_json::INPUT_PADDING, b' ');
        let mut tape = slot.take().unwrap_or_else(Tape::null).reset();
        let result = match simd_json::fill_tape_padded(input, json.len(), buffers, &mut tape) {
            Ok(()) => tape_value(&tape.0, &mut 0, 0),
            Err(e) => Err(DecodeError(format!("invalid JSON: {e}"))),
        };
        *slot = Some(tape.reset());
        if input.capacity() > SCRATCH_KEEP_BYTES {
            *self = Scratch::new();
        }
        result
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Build one value with simd-json.
fn simd_value(json: &[u8]) -> Result<Value, DecodeError> {
    let shared = SCRATCH.try_with(|cell| cell.try_borrow_mut().ok().map(|mut s| s.parse(json)));
    match shared {
        Ok(Some(result)) => result,
        // Thread teardown or re-entry: parse with a private scratch rather than fail.
        _ => Scratch::new().parse(json),
    }
}

/// The value at `nodes[*i]`, advancing `*i` past it.
fn tape_value(nodes: &[Node<'_>], i: &mut usize, depth: usize) -> Result<Value, DecodeError> {
    let node = nodes.get(*i).ok_or_else(|| DecodeError::new("JSON tape ended early"))?;
    *i += 1;
    Ok(match *node {
        Node::String(s) => string_value(Cow::Borrowed(s)),
        Node::Static(StaticNode::Null) => Value::Null,
        Node::Static(StaticNode::Bool(b)) => Value::Bool(b),
        Node::Static(StaticNode::U64(v)) => Value::UInt(v),
        Node::Static(StaticNode::I64(v)) => Value::int(v),
        Node::Static(StaticNode::F64(v)) => Value::Float(v),
        // 128-bit integers exist only with a simd-json feature this crate does not enable.
        #[allow(unreachable_patterns)]
        Node::Static(_) => return Err(DecodeError::new("unsupported JSON number")),
        Node::Array { len, .. } => {
            if depth >= VALUE_DEPTH_MAX {
                return Err(DecodeError(format!("nesting deeper than {VALUE_DEPTH_MAX}")));
            }
            let mut list = Vec::with_capacity(len.min(nodes.len()));
            for _ in 0..len {
                list.push(tape_value(nodes, i, depth + 1)?);
            }
            Value::List(list)
        }
        Node::Object { len, .. } => {
            if depth >= VALUE_DEPTH_MAX {
                return Err(DecodeError(format!("nesting deeper than {VALUE_DEPTH_MAX}")));
            }
            let mut dict = Dict::with_capacity(len.min(nodes.len()));
            for _ in 0..len {
                let Some(Node::String(key)) = nodes.get(*i) else {
                    return Err(DecodeError::new("JSON tape: dict key is not a string"));
                };
                *i += 1;
                let v = tape_value(nodes, i, depth + 1)?;
                dict.insert(*key, v);
            }
            Value::Dict(dict)
        }
    })
}

/// Validate and build the value starting at `start` (no leading whitespace); returns it
/// and the position just after it.
///
/// When what is left of the input is small, the hand parser validates and builds in one
/// pass. Otherwise the scanner finds the value's extent first, and a large value goes to
/// simd-json; either way the grammar is checked by the same functions.
fn build_at(buf: &[u8], start: usize) -> Result<(Value, usize), DecodeError> {
    if buf.len().saturating_sub(start) > HAND_PARSE_MAX_BYTES {
        let (end, _) = skip_value(buf, start)?;
        if end - start > HAND_PARSE_MAX_BYTES {
            let json = buf.get(start..end).unwrap_or_default();
            // The grammar has been checked, so simd-json can only refuse a number beyond its
            // range (integers beyond 64 bits, floats beyond f64); the hand parser decodes
            // those as floats.
            let v = simd_value(json).or_else(|_| Parser::document(json))?;
            return Ok((v, end));
        }
    }
    let mut p = Parser { buf, pos: start };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

// ---------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------

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
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, started: false, need_comma: false, pending: false }
    }

    /// The position of the next element's first byte, marking it read.
    fn element(&mut self) -> Result<usize, DecodeError> {
        if !self.pending && !message::Reader::more(self)? {
            return Err(DecodeError::new("no more elements in the message list"));
        }
        self.pending = false;
        self.need_comma = true;
        Ok(self.pos)
    }

    /// Build the element at `start`, leaving `pos` after it.
    fn build_element(&mut self, start: usize) -> Result<Value, DecodeError> {
        let (v, end) = build_at(self.buf, start)?;
        self.pos = end;
        Ok(v)
    }
}

impl message::Reader for Reader<'_> {
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
            return Err(DecodeError::new("message list not started"));
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
        if !matches!(buf.get(start), Some(b'0'..=b'9')) {
            let found = match buf.get(start) {
                Some(b'-') => match scan_number(buf, start) {
                    Ok(NumScan { integer: true, .. }) => "negative integer".to_owned(),
                    Ok(NumScan { integer: false, .. }) => "float".to_owned(),
                    Err(e) => return Err(e),
                },
                _ => describe_value(buf, start),
            };
            return Err(DecodeError(format!("expected an integer, found {found}")));
        }
        let n = scan_number(buf, start)?;
        if !n.integer {
            return Err(DecodeError::new("expected an integer, found float"));
        }
        let mut v = 0u64;
        for &d in buf.get(start..n.end).unwrap_or_default() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or_else(|| DecodeError::new("integer out of range (above 2^64 - 1)"))?;
        }
        self.pos = n.end;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let buf = self.buf;
        let start = self.element()?;
        if buf.get(start) != Some(&b'"') {
            return Err(DecodeError(format!("expected a string, found {}", describe_value(buf, start))));
        }
        let s = scan_string(buf, start)?;
        if s.binary {
            return Err(DecodeError::new("expected a string, found binary"));
        }
        let text = string_text(buf, start, &s)?.into_owned();
        self.pos = s.end;
        Ok(text)
    }

    fn dict(&mut self) -> Result<Dict, DecodeError> {
        let buf = self.buf;
        let start = self.element()?;
        if buf.get(start) != Some(&b'{') {
            return Err(DecodeError(format!("expected a dict, found {}", describe_value(buf, start))));
        }
        // The usual `Options`/`Details`: nothing to build, nothing to allocate.
        if buf.get(start + 1) == Some(&b'}') {
            self.pos = start + 2;
            return Ok(Dict::new());
        }
        match self.build_element(start)? {
            Value::Dict(d) => Ok(d),
            other => Err(DecodeError(format!("expected a dict, found {}", other.type_name()))),
        }
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        let start = self.element()?;
        self.build_element(start)
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
    loop {
        let (v, end) = build_at(raw, pos)?;
        out.push(v);
        pos = skip_ws(raw, end);
        match raw.get(pos) {
            None => return Ok(out),
            Some(b',') => pos = skip_ws(raw, pos + 1),
            Some(_) => return Err(unexpected(raw, pos, "',' between payload elements")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writer and encoding
// ---------------------------------------------------------------------------------------

/// Writes one JSON WAMP message; it puts the commas between top-level elements itself.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out, first: true }
    }

    fn separator(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.out.push(b',');
        }
    }
}

impl message::Writer for Writer<'_> {
    fn begin(&mut self, len: usize) {
        // Scalars and URIs are short; the payload is the bulk and is reserved by `raw`.
        self.out.reserve(2 + len * 12);
        self.out.push(b'[');
        self.first = true;
    }

    fn uint(&mut self, v: u64) {
        self.separator();
        write_u64(v, self.out);
    }

    fn string(&mut self, s: &str) {
        self.separator();
        write_str(s, self.out);
    }

    fn dict(&mut self, d: &Dict) {
        self.separator();
        write_dict(d, self.out);
    }

    fn raw(&mut self, raw: &[u8]) {
        if raw.is_empty() {
            return;
        }
        self.separator();
        self.out.extend_from_slice(raw);
    }

    fn end(&mut self) {
        self.out.push(b']');
    }
}

/// Encode one value, compact.
pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::UInt(n) => write_u64(*n, out),
        Value::Int(n) => {
            if *n < 0 {
                out.push(b'-');
            }
            write_u64(n.unsigned_abs(), out);
        }
        Value::Float(f) => write_f64(*f, out),
        Value::Str(s) => write_str(s, out),
        Value::Bytes(b) => write_bytes(b, out),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode_value(item, out);
            }
            out.push(b']');
        }
        Value::Dict(d) => write_dict(d, out),
    }
}

fn write_dict(d: &Dict, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in d.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        encode_value(v, out);
    }
    out.push(b'}');
}

fn write_u64(mut v: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A JSON string with the escaping of Python's `json.dumps(ensure_ascii=False)`.
fn write_str(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(w) = word_at(bytes, i) {
            match string_special(w) {
                None => {
                    i += 8;
                    continue;
                }
                Some(plain) => i += plain,
            }
        }
        let b = bytes[i];
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => 0,
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[run..i]);
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
        i += 1;
        run = i;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// WAMP binary in JSON: `"\u0000" + base64`.
fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"\\u0000");
    let start = out.len();
    let len = base64::encoded_len(b.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    match out.get_mut(start..).map(|tail| BASE64.encode_slice(b, tail)) {
        Some(Ok(n)) => out.truncate(start + n),
        // Unreachable (the length was computed for this input), but never write garbage.
        _ => {
            out.truncate(start);
            out.extend_from_slice(BASE64.encode(b).as_bytes());
        }
    }
    out.push(b'"');
}

/// A small stack buffer for `core::fmt` output.
struct StackText {
    buf: [u8; 40],
    len: usize,
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A float as Python's `repr` writes it, so the output matches autobahn-python: the
/// shortest digits that round-trip, positional notation for decimal exponents -4..16
/// (with `.0` when integral), else `d.ddde±XX`. NaN and infinities become `null`.
fn write_f64(f: f64, out: &mut Vec<u8>) {
    use std::fmt::Write as _;
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-5`, `1e16`, `0e0`.
    let mut text = StackText { buf: [0; 40], len: 0 };
    if write!(text, "{f:e}").is_err() {
        out.extend_from_slice(format!("{f:?}").as_bytes());
        return;
    }
    let sci = text.buf.get(..text.len).unwrap_or_default();
    let (negative, sci) = match sci.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, sci),
    };
    let e_at = sci.iter().position(|&b| b == b'e').unwrap_or(sci.len());
    let (mantissa, exp) = sci.split_at(e_at);
    let exp: i32 = std::str::from_utf8(exp.get(1..).unwrap_or_default()).ok().and_then(|e| e.parse().ok()).unwrap_or(0);
    let mut digits = [0u8; 20];
    let mut n = 0;
    for &d in mantissa.iter().filter(|d| d.is_ascii_digit()) {
        if let Some(slot) = digits.get_mut(n) {
            *slot = d;
            n += 1;
        }
    }
    let digits = &digits[..n];
    if negative {
        out.push(b'-');
    }
    // Python's rule: the decimal point sits after `point` digits; exponent form when
    // point <= -4 or point > 16.
    let point = exp + 1;
    if point > -4 && point <= 16 {
        if point <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', point.unsigned_abs() as usize));
            out.extend_from_slice(digits);
        } else {
            let point = point as usize;
            if point < digits.len() {
                out.extend_from_slice(&digits[..point]);
                out.push(b'.');
                out.extend_from_slice(&digits[point..]);
            } else {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat_n(b'0', point - digits.len()));
                out.extend_from_slice(b".0");
            }
        }
    } else {
        if let Some((first, rest)) = digits.split_first() {
            out.push(*first);
            if !rest.is_empty() {
                out.push(b'.');
                out.extend_from_slice(rest);
            }
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        write_u64(u64::from(e), out);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::proto::wire::fuzz::{Rng, vector_frames};
    use crate::proto::wire::message::{Message, Payload, Reader as _, Serializer, Writer as _, decode, encode_to_vec};

    /// Validate `json` as one document (the scanner, then only whitespace).
    fn scan(json: &[u8]) -> Result<ValueKind, DecodeError> {
        let start = skip_ws(json, 0);
        let (end, kind) = skip_value(json, start)?;
        if skip_ws(json, end) != json.len() {
            return Err(unexpected(json, end, "end of input"));
        }
        Ok(kind)
    }

    /// Decode `json` as one value, by the hand parser and by simd-json, which must agree.
    fn parse(json: &[u8]) -> Result<Value, DecodeError> {
        let scanned = scan(json);
        let hand = Parser::document(json);
        assert_eq!(scanned.is_ok(), hand.is_ok(), "scanner and parser disagree on {:?}", String::from_utf8_lossy(json));
        if let Ok(v) = &hand {
            // simd-json refuses integers beyond 64 bits, where `build` falls back to the hand parser.
            match simd_value(json) {
                Ok(s) => assert!(same(&s, v), "simd-json and parser disagree on {:?}", String::from_utf8_lossy(json)),
                // The grammar was checked, so this can only be a number out of its range.
                Err(e) => assert!(
                    e.0.contains("InvalidNumber"),
                    "simd-json refused {:?} for another reason than a number's range: {e}",
                    String::from_utf8_lossy(json)
                ),
            }
            let values = decode_values(json)?;
            assert!(values.len() == 1 && same(&values[0], v));
        }
        hand
    }

    /// Equality that treats NaN as equal to itself.
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            (Value::List(x), Value::List(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
            (Value::Dict(x), Value::Dict(y)) => {
                x.len() == y.len() && x.iter().zip(y.iter()).all(|((ka, a), (kb, b))| ka == kb && same(a, b))
            }
            _ => a == b,
        }
    }

    fn enc(v: &Value) -> String {
        let mut out = Vec::new();
        encode_value(v, &mut out);
        String::from_utf8(out).expect("encoder writes UTF-8")
    }

    fn decode_json(json: &str) -> Result<Message, DecodeError> {
        decode(Serializer::Json, &Bytes::copy_from_slice(json.as_bytes()))
    }

    #[test]
    fn escapes_decode() {
        assert_eq!(parse(br#""\"\\\/\b\f\n\r\t\u00e9\u20AC""#), Ok(Value::str("\"\\/\u{8}\u{c}\n\r\té€")));
        assert_eq!(parse(br#""plain""#), Ok(Value::str("plain")));
        assert_eq!(parse(b"\"caf\xc3\xa9 \xf0\x9f\x98\x80\""), Ok(Value::str("café 😀")));
        for bad in [&br#""\x""#[..], br#""\u12""#, br#""\u12G4""#, br#""\"#, br#""abc"#, b"\"a\nb\"", b"\"\x00\""] {
            assert!(parse(bad).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
        // DEL is not a control character for JSON.
        assert_eq!(parse(b"\"\x7f\""), Ok(Value::str("\u{7f}")));
    }

    #[test]
    fn surrogates() {
        assert_eq!(parse(br#""\ud83d\ude00""#), Ok(Value::str("😀")));
        assert_eq!(parse(br#""a\uD83D\uDE00b""#), Ok(Value::str("a😀b")));
        // Lone surrogates are rejected by the scanner, the parser and the typed reads alike.
        for bad in [&br#""\ud83d""#[..], br#""\ud83dx""#, br#""\ud83d\u0041""#, br#""\ude00""#, br#""\ud83d\ud83d""#] {
            assert!(parse(bad).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
            let msg = format!("[1,{},{{}}]", String::from_utf8_lossy(bad));
            assert!(decode_json(&msg).is_err());
        }
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        for bad in [
            &b"\"\xff\""[..],
            b"\"\xc0\x80\"",             // overlong NUL
            b"\"\xe2\x82\"",             // truncated
            b"\"\xed\xa0\x80\"",         // UTF-8-encoded surrogate
            b"\"\xf4\x90\x80\x80\"",     // above U+10FFFF
            b"\"abcdefgh\x80ijklmnop\"", // in the eight-byte fast path
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
            let mut msg = b"[1,".to_vec();
            msg.extend_from_slice(bad);
            msg.extend_from_slice(b",{}]");
            assert!(decode(Serializer::Json, &Bytes::from(msg)).is_err());
        }
        // A bad byte at every offset before the closing quote, inside and after the first
        // eight-byte word; good UTF-8 in the same places passes.
        for n in 0..20 {
            let pad = "a".repeat(n);
            assert!(parse(format!("\"{pad}\u{e9}\"").as_bytes()).is_ok());
            assert!(parse(&[b"\"", pad.as_bytes(), b"\xff\""].concat()).is_err(), "offset {n}");
            assert!(parse(&[b"\"", pad.as_bytes(), b"\xc3\\n\""].concat()).is_err(), "offset {n}");
        }
        // Non-ASCII outside strings is a syntax error.
        assert!(parse(b"[\xc3\xa9]").is_err());
    }

    #[test]
    fn nesting_depth_is_bounded() {
        let lists_ok = "[".repeat(VALUE_DEPTH_MAX) + &"]".repeat(VALUE_DEPTH_MAX);
        let lists_deep = "[".repeat(VALUE_DEPTH_MAX + 1) + &"]".repeat(VALUE_DEPTH_MAX + 1);
        assert!(parse(lists_ok.as_bytes()).is_ok());
        assert!(parse(lists_deep.as_bytes()).is_err());
        let dicts = |n: usize| "{\"k\":".repeat(n) + "1" + &"}".repeat(n);
        assert!(parse(dicts(VALUE_DEPTH_MAX).as_bytes()).is_ok());
        assert!(parse(dicts(VALUE_DEPTH_MAX + 1).as_bytes()).is_err());
        // Large enough for simd-json: the scanner still refuses first.
        let big_deep =
            format!("[{}\"{}\"{}]", "[".repeat(VALUE_DEPTH_MAX), "x".repeat(1000), "]".repeat(VALUE_DEPTH_MAX));
        assert!(decode_values(big_deep.as_bytes()).is_err());
        // A hostile megabyte of brackets fails fast, without recursion.
        let hostile = "[".repeat(1 << 20);
        assert!(scan(hostile.as_bytes()).is_err());
        assert!(decode_json(&format!("[16,1,{{}},\"t\",{hostile}")).is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse(b"0"), Ok(Value::UInt(0)));
        assert_eq!(parse(b"-0"), Ok(Value::UInt(0)));
        assert_eq!(parse(b"-0.0").map(|v| matches!(v, Value::Float(f) if f == 0.0 && f.is_sign_negative())), Ok(true));
        assert_eq!(parse(b"1e5"), Ok(Value::Float(100000.0)));
        assert_eq!(parse(b"1E+2"), Ok(Value::Float(100.0)));
        assert_eq!(parse(b"2.5e-3"), Ok(Value::Float(0.0025)));
        assert_eq!(parse(b"-17"), Ok(Value::Int(-17)));
        assert_eq!(parse(b"18446744073709551615"), Ok(Value::UInt(u64::MAX)));
        assert_eq!(parse(b"18446744073709551616"), Ok(Value::Float(18446744073709551616.0)));
        assert_eq!(parse(b"-9223372036854775808"), Ok(Value::Int(i64::MIN)));
        assert_eq!(parse(b"-9223372036854775809"), Ok(Value::Float(-9223372036854775809.0)));
        assert_eq!(parse(b"1e400"), Ok(Value::Float(f64::INFINITY)));
        assert_eq!(parse(b"-1e400"), Ok(Value::Float(f64::NEG_INFINITY)));
        assert_eq!(parse(b"1e-400"), Ok(Value::Float(0.0)));
        assert_eq!(scan(b"12"), Ok(ValueKind::Int));
        assert_eq!(scan(b"-12"), Ok(ValueKind::Int));
        assert_eq!(scan(b"1.5"), Ok(ValueKind::Float));
        for bad in
            ["01", "-01", "00", "-", "1.", ".5", "1e", "1e+", "+1", "1.e3", "0x10", "Infinity", "NaN", "--1", "1-"]
        {
            assert!(parse(bad.as_bytes()).is_err(), "{bad} accepted");
        }
        // Numbers simd-json refuses, inside values large enough for it, fall back to the
        // hand parser.
        let pad = "x".repeat(HAND_PARSE_MAX_BYTES);
        let v = decode_values(format!("[123456789012345678901234567890,1e999,\"{pad}\"]").as_bytes()).expect("big");
        assert_eq!(
            v[0].as_list().map(|l| &l[..2]),
            Some(&[Value::Float(1.2345678901234568e29), Value::Float(f64::INFINITY)][..])
        );
    }

    #[test]
    fn literals_and_trailing_garbage() {
        assert_eq!(parse(b" true "), Ok(Value::Bool(true)));
        assert_eq!(parse(b"false"), Ok(Value::Bool(false)));
        assert_eq!(parse(b"null"), Ok(Value::Null));
        for bad in
            ["tru", "nul", "True", "truex", "[1]x", "{}}", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{1:2}", "[1 2]"]
        {
            assert!(parse(bad.as_bytes()).is_err(), "{bad} accepted");
        }
        assert!(decode_json("[67,1]x").is_err());
        assert!(decode_json("[67,1] ]").is_err());
        assert!(decode_json("[67,1],").is_err());
        assert_eq!(decode_json(" \r\n\t[ 67 , 1 ] \n"), Ok(Message::Unregistered { request: 1, details: None }));
        assert!(decode_json("[67,1,]").is_err());
        assert!(decode_json("[67,,1]").is_err());
        assert!(decode_json("[67 1]").is_err());
        assert!(decode_json("[67,1").is_err());
        assert!(decode_json("67,1]").is_err());
        assert!(decode_json("[]").is_err());
        assert!(decode_json("").is_err());
        assert!(decode_values(b"[1] [2]").is_err());
        assert!(decode_values(b"[1],").is_err());
    }

    #[test]
    fn binary_convention_both_ways() {
        let bytes = Value::Bytes(vec![0, 1, 2, 0xfe, 0xff]);
        assert_eq!(enc(&bytes), r#""\u0000AAEC/v8=""#);
        assert_eq!(parse(enc(&bytes).as_bytes()), Ok(bytes));
        assert_eq!(enc(&Value::Bytes(Vec::new())), r#""\u0000""#);
        assert_eq!(parse(br#""\u0000""#), Ok(Value::Bytes(Vec::new())));
        // Not base64 after the marker: the string is kept as text.
        assert_eq!(parse(br#""\u0000not base64!""#), Ok(Value::str("\0not base64!")));
        assert_eq!(scan(br#""\u0000AAEC""#), Ok(ValueKind::Bytes));
        assert_eq!(scan(br#""u0000AAEC""#), Ok(ValueKind::Str));
        // Binary payload elements pass through; a binary where a URI belongs is refused.
        let m = decode_json(r#"[16,1,{},"t","\u0000AAEC"]"#).expect("binary payload");
        let Message::Publish { payload, .. } = &m else { panic!("not a PUBLISH") };
        assert_eq!(payload.values(), Ok(vec![Value::Bytes(vec![0, 1, 2])]));
        let e = decode_json(r#"[16,1,{},"\u0000AAEC"]"#).expect_err("binary topic");
        assert!(e.0.contains("expected a string, found binary"), "{e}");
    }

    #[test]
    fn uint_errors_say_what_was_found() {
        let cases = [
            ("\"x\"", "expected an integer, found string"),
            ("-1", "expected an integer, found negative integer"),
            ("-1.5", "expected an integer, found float"),
            ("1.5", "expected an integer, found float"),
            ("1e3", "expected an integer, found float"),
            ("{}", "expected an integer, found dict"),
            ("[]", "expected an integer, found list"),
            ("null", "expected an integer, found null"),
            ("true", "expected an integer, found bool"),
            ("18446744073709551616", "integer out of range"),
            ("01", "leading zero"),
        ];
        for (elem, want) in cases {
            let e = decode_json(&format!("[{elem},1]")).expect_err(elem);
            assert!(e.0.contains(want), "{elem}: {e}");
            let e = decode_json(&format!("[67,{elem}]")).expect_err(elem);
            assert!(e.0.contains(want) && e.0.starts_with("UNREGISTERED."), "{elem}: {e}");
        }
        let mut r = Reader::new(b"[18446744073709551615]");
        r.begin().expect("begin");
        assert_eq!(r.uint(), Ok(u64::MAX));
        assert_eq!(r.more(), Ok(false));
        assert_eq!(r.end(), Ok(()));
    }

    #[test]
    fn reader_protocol() {
        let mut r = Reader::new(br#" [ 1 , "s" , {"a":[1,{"b":null}]} , [true] , {"k":1} ] "#);
        r.begin().expect("begin");
        assert_eq!(r.more(), Ok(true));
        assert_eq!(r.more(), Ok(true), "more is idempotent");
        assert_eq!(r.uint(), Ok(1));
        assert_eq!(r.string().as_deref(), Ok("s"));
        let d = r.dict().expect("dict");
        assert_eq!(enc(&Value::Dict(d)), r#"{"a":[1,{"b":null}]}"#);
        assert!(r.more().expect("more"));
        let (range, kind) = r.skip().expect("skip");
        assert_eq!(kind, ValueKind::List);
        let (range2, kind2) = r.skip().expect("skip without more");
        assert_eq!(kind2, ValueKind::Dict);
        assert!(range.end < range2.start);
        assert_eq!(r.more(), Ok(false));
        assert_eq!(r.more(), Ok(false));
        assert_eq!(r.end(), Ok(()));

        let mut r = Reader::new(b"[1]");
        r.begin().expect("begin");
        assert!(r.more().expect("more"));
        assert!(r.end().is_err(), "end with an unread element");
        assert!(Reader::new(b"{}").begin().is_err());
        assert!(Reader::new(b"").begin().is_err());

        // Wrong types name what they found.
        let mut r = Reader::new(br#"[[], 5, {"a":1}, "x"]"#);
        r.begin().expect("begin");
        assert_eq!(r.dict().map_err(|e| e.0), Err("expected a dict, found list".into()));
        let mut r = Reader::new(br#"[5]"#);
        r.begin().expect("begin");
        assert_eq!(r.string().map_err(|e| e.0), Err("expected a string, found number".into()));
    }

    #[test]
    fn dicts() {
        let mut r = Reader::new(b"[{}, { }, {\"a\":1,\"b\":2,\"a\":3}]");
        r.begin().expect("begin");
        assert_eq!(r.dict(), Ok(Dict::new()));
        assert_eq!(r.dict(), Ok(Dict::new()));
        let d = r.dict().expect("dict");
        // Last of duplicate keys wins.
        assert_eq!(d.get("a"), Some(&Value::UInt(3)));
        assert_eq!(d.len(), 2);
        // The same through simd-json (a dict beyond the hand-parse threshold), keys in order.
        let big = format!(r#"{{"z":"{}","a":1,"m":[1.5,-2,null],"a":{{"x":true}}}}"#, "p".repeat(HAND_PARSE_MAX_BYTES));
        let v = parse(big.as_bytes()).expect("big dict");
        let d = v.as_dict().expect("dict");
        assert_eq!(d.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["z", "a", "m"]);
        assert_eq!(d.get("a"), Some(&Value::Dict(Dict::new().with("x", true))));
        assert_eq!(enc(&v), big.replace(r#""a":1"#, r#""a":{"x":true}"#).replace(r#","a":{"x":true}}"#, "}"));
    }

    #[test]
    fn simd_and_hand_parser_agree() {
        let docs = [
            r#"{"roles":{"subscriber":{},"publisher":{"features":{"x":true}}},"authid":"é\u00e9\n"}"#,
            r#"[1,-2,3.25,-0.5e-7,true,false,null,"\u0000AAEC","\ud83d\ude00",[],{},[[]],{"":""}]"#,
            r#"  [ 1 , { "a" : [ 2 , 3 ] } ]  "#,
            r#""a string with \"quotes\" and \\ backslashes \t""#,
            "12345678901234567",
            "-12345678901234567",
            "0.1",
            "1.7976931348623157e308",
            "5e-324",
        ];
        for doc in docs {
            parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{doc}: {e}"));
        }
    }

    #[test]
    fn string_escaping_matches_python() {
        assert_eq!(enc(&Value::str("a\"b\\c/d")), r#""a\"b\\c/d""#);
        assert_eq!(enc(&Value::str("\u{8}\u{c}\n\r\t")), r#""\b\f\n\r\t""#);
        assert_eq!(enc(&Value::str("é€😀\u{2028}")), "\"é€😀\u{2028}\"");
        // Long runs go through the eight-byte fast path; escapes at every alignment.
        for n in 0..20 {
            let s = format!("{}\"{}\n", "x".repeat(n), "y".repeat(n));
            let want = format!("\"{}\\\"{}\\n\"", "x".repeat(n), "y".repeat(n));
            assert_eq!(enc(&Value::str(s.as_str())), want);
            assert_eq!(parse(want.as_bytes()), Ok(Value::str(s)));
        }
    }

    #[test]
    fn control_characters_use_lowercase_u_escapes() {
        assert_eq!(enc(&Value::str("\u{0}\u{1}\u{1f}\u{7f}")), "\"\\u0000\\u0001\\u001f\u{7f}\"");
    }

    #[test]
    fn floats_match_python_repr() {
        let cases: [(f64, &str); 18] = [
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (123456789.125, "123456789.125"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e22, "1e+22"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.2345e-7, "1.2345e-07"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::NAN, "null"),
            (f64::NEG_INFINITY, "null"),
        ];
        for (f, want) in cases {
            assert_eq!(enc(&Value::Float(f)), want, "{f:?}");
            if f.is_finite() {
                assert_eq!(parse(want.as_bytes()), Ok(Value::Float(f)), "{want} round trip");
            }
        }
        assert_eq!(enc(&Value::Float(f64::INFINITY)), "null");
    }

    #[test]
    fn encodes_compact() {
        let v = Value::List(vec![
            Value::UInt(0),
            Value::UInt(u64::MAX),
            Value::Int(i64::MIN),
            Value::Int(-1),
            Value::Null,
            Value::Bool(true),
            Value::Dict(Dict::new().with("k", Value::List(vec![])).with("e", Dict::new())),
        ]);
        assert_eq!(enc(&v), r#"[0,18446744073709551615,-9223372036854775808,-1,null,true,{"k":[],"e":{}}]"#);
        assert_eq!(parse(enc(&v).as_bytes()), Ok(v));
    }

    #[test]
    fn writer_puts_commas_between_elements() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.begin(6);
        w.uint(16);
        w.uint(1);
        w.dict(&Dict::new().with("acknowledge", true));
        w.string("com.x");
        w.raw(br#"[1], {"a":2}"#);
        w.end();
        assert_eq!(out, br#"[16,1,{"acknowledge":true},"com.x",[1], {"a":2}]"#);
    }

    #[test]
    fn payload_passes_through_and_transcodes_back() {
        let msg = r#"[16,7,{},"t",["Alice",30,{"deep":[1.5,"\u0000AAEC"]}], {"role":"admin"}]"#;
        let m = decode_json(msg).expect("decode");
        let Message::Publish { payload, .. } = &m else { panic!("not a PUBLISH") };
        assert_eq!(payload.count, 2);
        assert_eq!(&payload.raw[..], br#"["Alice",30,{"deep":[1.5,"\u0000AAEC"]}], {"role":"admin"}"#);
        let values = payload.values().expect("values");
        assert_eq!(values[1], Value::Dict(Dict::new().with("role", "admin")));
        let rebuilt = Payload::from_values(Serializer::Json, values[0].as_list(), values[1].as_dict());
        assert_eq!(&rebuilt.raw[..], br#"["Alice",30,{"deep":[1.5,"\u0000AAEC"]}],{"role":"admin"}"#);
        let out = encode_to_vec(Serializer::Json, &m).expect("encode");
        assert_eq!(out, msg.as_bytes());
        // Payload shape is checked from the scanned kinds.
        assert!(decode_json(r#"[16,7,{},"t",5]"#).is_err());
        assert!(decode_json(r#"[16,7,{},"t",[],[]]"#).is_err());
        assert!(decode_json(r#"[16,7,{},"t",[],{},{}]"#).is_err());
        assert!(decode_json(r#"[16,7,{},"t",[1,]]"#).is_err());
    }

    fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
        const INTERESTING: &[u8] = b"[]{}\",:\\-+.0123456789eEtfnu \x00\x1f\x7f\x80\xc3\xed\xff/";
        let mut v = input.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(v.len() + 1);
            let byte = if rng.below(2) == 0 { INTERESTING[rng.below(INTERESTING.len())] } else { rng.next() as u8 };
            match rng.below(7) {
                0 if at < v.len() => v[at] = byte,
                1 => v.insert(at, byte),
                2 if at < v.len() => {
                    v.remove(at);
                }
                3 => v.truncate(at),
                4 if at < v.len() => {
                    let end = (at + 1 + rng.below(16)).min(v.len());
                    let chunk = v[at..end].to_vec();
                    let to = rng.below(v.len() + 1);
                    v.splice(to..to, chunk);
                }
                5 => {
                    let escape: &[u8] =
                        [&b"\\ud83d"[..], b"\\ude00", b"\\u0000", b"\\\"", b"1e999", b"-0", b"[[[["][rng.below(7)];
                    v.splice(at..at, escape.iter().copied());
                }
                _ => v.reverse(),
            }
        }
        v
    }

    /// Thousands of random and mutated messages through the full decoder: it must never
    /// panic; whatever it accepts must re-encode, decode again to the same message, and
    /// have a payload that decodes (what `skip` accepts, `decode_values` must accept).
    #[test]
    fn fuzz_decode_never_panics() {
        let corpus = vector_frames(Serializer::Json);
        let mut rng = Rng::XorShift64Star(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for round in 0..20_000 {
            let input = if round % 10 == 0 {
                let len = rng.below(64);
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                {
                    let pick = rng.below(corpus.len());
                    mutate(&mut rng, &corpus[pick])
                }
            };
            let frame = Bytes::from(input);
            let result = std::panic::catch_unwind(|| decode(Serializer::Json, &frame));
            let Ok(result) = result else {
                panic!("decode panicked on {:?}", String::from_utf8_lossy(&frame));
            };
            let Ok(msg) = result else { continue };
            accepted += 1;
            // One re-encoding reaches a fixed point (not the same message: `1e999` decodes to
            // infinity, which is written as `null`).
            let again = encode_to_vec(Serializer::Json, &msg)
                .unwrap_or_else(|e| panic!("re-encode failed for {:?}: {e}", String::from_utf8_lossy(&frame)));
            let msg2 = decode(Serializer::Json, &Bytes::from(again.clone())).unwrap_or_else(|e| {
                panic!("re-encoding of {:?} does not decode: {e}", String::from_utf8_lossy(&frame))
            });
            assert_eq!(encode_to_vec(Serializer::Json, &msg2).as_ref(), Ok(&again));
            let payload = match &msg {
                Message::Publish { payload, .. }
                | Message::Event { payload, .. }
                | Message::Call { payload, .. }
                | Message::Result { payload, .. }
                | Message::Invocation { payload, .. }
                | Message::Yield { payload, .. }
                | Message::Error { payload, .. }
                | Message::Abort { payload, .. }
                | Message::EventReceived { payload, .. } => Some(payload),
                _ => None,
            };
            if let Some(p) = payload {
                p.values().unwrap_or_else(|e| {
                    panic!("payload of {:?} does not decode: {e}", String::from_utf8_lossy(&frame))
                });
            }
        }
        assert!(accepted > 100, "mutations too destructive: only {accepted} accepted");
    }

    /// The scanner agrees with serde_json on what is JSON, for mutated JSON texts, and the
    /// hand parser and simd-json build the same values from what it accepts.
    #[test]
    fn scanner_agrees_with_serde_json() {
        let mut corpus = vector_frames(Serializer::Json);
        // Documents beyond the hand-parse threshold, so mutations also reach simd-json.
        let joined = corpus.join(&b","[..]);
        corpus.push([&b"["[..], &joined, b"]"].concat());
        corpus.push([&b"{\"k\":["[..], &joined, b"],\"s\":\"\\u0000AAEC\\n\"}"].concat());
        let mut rng = Rng::XorShift64Star(0xD1B5_4A32_D192_ED03);
        let (mut big, mut big_ok) = (0, 0);
        for _ in 0..20_000 {
            let input = {
                let pick = rng.below(corpus.len());
                mutate(&mut rng, &corpus[pick])
            };
            let ours = std::panic::catch_unwind(|| scan(&input)).expect("scanner panicked");
            let theirs = serde_json::from_slice::<serde_json::Value>(&input);
            // serde_json refuses floats that overflow to infinity (JSON's grammar allows them)
            // and stops there, so it says nothing about the rest of the input.
            if let Err(e) = &theirs
                && e.to_string().contains("number out of range")
            {
                continue;
            }
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{:?}: ours {ours:?}, serde_json {theirs:?}",
                String::from_utf8_lossy(&input)
            );
            big += usize::from(input.len() > HAND_PARSE_MAX_BYTES);
            if ours.is_ok() {
                parse(&input)
                    .unwrap_or_else(|e| panic!("{:?} scans but does not build: {e}", String::from_utf8_lossy(&input)));
                big_ok += usize::from(input.len() > HAND_PARSE_MAX_BYTES);
            }
        }
        assert!(big > 100 && big_ok > 10, "too few large documents: {big} mutated, {big_ok} valid");
    }
}
