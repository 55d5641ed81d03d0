//! The JSON byte level: the helpers that find string content and whitespace eight bytes at
//! a time, and the validating scanner ([`skip_value`]) that checks one value against RFC 8259
//! and returns where it ends and its [`ValueKind`], building nothing.
//!
//! Owns: the grammar (string escapes, surrogate pairs, UTF-8, the number grammar, literals,
//! nesting of at most `VALUE_DEPTH_MAX` lists/dicts) and the error texts that point at a
//! byte. The value builders in `build.rs` use the same string, number and literal functions,
//! so what the scanner accepts is exactly what the decoders accept.
//!
//! Must not: allocate, recurse, or build values.

use crate::limits::VALUE_DEPTH_MAX;
use crate::proto::wire::codec::ValueKind;
use crate::proto::wire::error::{DecodeError, Found};

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
pub(super) fn string_special(w: u64) -> Option<usize> {
    let quote = zero_bytes(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_bytes(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    let special = quote | backslash | control;
    if special == 0 { None } else { Some((special.trailing_zeros() / 8) as usize) }
}

/// The 8 bytes at `pos` as a little-endian word, if there are 8.
#[inline(always)]
pub(super) fn word_at(buf: &[u8], pos: usize) -> Option<u64> {
    let chunk: [u8; 8] = buf.get(pos..pos.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

#[inline(always)]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The position of the first non-whitespace byte at or after `pos`.
#[inline]
pub(super) fn skip_ws(buf: &[u8], mut pos: usize) -> usize {
    while let Some(&b) = buf.get(pos) {
        if !is_ws(b) {
            break;
        }
        pos += 1;
    }
    pos
}

/// `wanted` was expected at `pos`; the error names the byte found there.
pub(super) fn unexpected(buf: &[u8], pos: usize, wanted: &'static str) -> DecodeError {
    DecodeError::Unexpected { expected: wanted, found: buf.get(pos).copied(), at: pos }
}

pub(super) fn syntax(what: &'static str, pos: usize) -> DecodeError {
    DecodeError::Syntax { what, at: pos }
}

/// An element of another type than `expected` starts at `pos`: the error names its type by
/// its first byte, or the byte when no value starts with it.
pub(super) fn wrong_type(buf: &[u8], pos: usize, expected: &'static str) -> DecodeError {
    let found = match buf.get(pos) {
        Some(b'"') if buf.get(pos + 1..pos + 7) == Some(&b"\\u0000"[..]) => "binary",
        Some(b'"') => "string",
        Some(b'{') => "dict",
        Some(b'[') => "list",
        Some(b't' | b'f') => "bool",
        Some(b'n') => "null",
        Some(b'-') => "negative number",
        Some(b'0'..=b'9') => "number",
        _ => return unexpected(buf, pos, expected),
    };
    DecodeError::WrongType { expected, found: Found::Type(found) }
}

// ---------------------------------------------------------------------------------------
// The validating scanner
// ---------------------------------------------------------------------------------------

/// What scanning one string found.
pub(super) struct StrScan {
    /// Position just after the closing quote.
    pub(super) end: usize,
    /// The string contains escapes, so its text differs from its bytes.
    pub(super) escaped: bool,
    /// The string starts with the escape `\u0000` (WAMP binary).
    pub(super) binary: bool,
}

/// Scan the string whose opening quote is at `start`. Validates escapes (including
/// surrogate pairs), rejects raw control characters and checks UTF-8.
pub(super) fn scan_string(buf: &[u8], start: usize) -> Result<StrScan, DecodeError> {
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
            return Err(DecodeError::InvalidUtf8 { at: body + e.valid_up_to() });
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
pub(super) fn escape(buf: &[u8], pos: usize) -> Result<(char, usize), DecodeError> {
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
pub(super) struct NumScan {
    pub(super) end: usize,
    /// No fraction and no exponent.
    pub(super) integer: bool,
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
pub(super) fn scan_number(buf: &[u8], start: usize) -> Result<NumScan, DecodeError> {
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
pub(super) fn scan_literal(buf: &[u8], pos: usize, lit: &'static [u8]) -> Result<usize, DecodeError> {
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

/// Validate the string, number or literal starting at `pos`; returns the position just
/// after it and its kind.
fn skip_scalar(buf: &[u8], pos: usize) -> Result<(usize, ValueKind), DecodeError> {
    Ok(match buf.get(pos).copied() {
        Some(b'"') => {
            let s = scan_string(buf, pos)?;
            (s.end, if s.binary { ValueKind::Bytes } else { ValueKind::Str })
        }
        Some(b'-' | b'0'..=b'9') => {
            let n = scan_number(buf, pos)?;
            (n.end, if n.integer { ValueKind::Int } else { ValueKind::Float })
        }
        Some(b't') => (scan_literal(buf, pos, b"true")?, ValueKind::Bool),
        Some(b'f') => (scan_literal(buf, pos, b"false")?, ValueKind::Bool),
        Some(b'n') => (scan_literal(buf, pos, b"null")?, ValueKind::Null),
        _ => return Err(unexpected(buf, pos, "a value")),
    })
}

/// Validate the one JSON value starting at `start` (no leading whitespace) without building
/// it. Returns the position just after it and its kind.
///
/// Iterative, so hostile nesting costs no stack; bit `i` of `dicts` says whether the open
/// container at depth `i + 1` is a dict.
pub(super) fn skip_value(buf: &[u8], start: usize) -> Result<(usize, ValueKind), DecodeError> {
    let mut dicts = 0u64;
    let mut depth = 0usize;
    let mut pos = start;
    let mut top: Option<ValueKind> = None;
    'value: loop {
        // `pos` is at the first byte of a value.
        let kind = match buf.get(pos).copied() {
            Some(open @ (b'{' | b'[')) => {
                if depth >= VALUE_DEPTH_MAX {
                    return Err(DecodeError::TooDeep { at: Some(pos) });
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
            _ => {
                let (end, kind) = skip_scalar(buf, pos)?;
                pos = end;
                kind
            }
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
