//! Writing JSON: the message [`Writer`] and [`encode_value`], byte for byte as
//! autobahn-python writes it (`json.dumps(separators=(',', ':'), ensure_ascii=False)`).
//!
//! No spaces; `"` and `\` escaped, control characters as `\b \f \n \r \t` or lowercase
//! `\u00XX`; `/`, DEL and all non-ASCII written as they are (UTF-8). Floats use Python's
//! `repr` (shortest round-trip digits, `1.0`, `1e+16`, `1e-05`); NaN and ±infinity, which
//! JSON cannot carry, become `null`. `Bytes` become `"\u0000" + base64`.
//!
//! Must not: fail (every `Value` has a JSON form), or read anything.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::scan::{string_special, word_at};
use crate::proto::wire::codec;
use crate::proto::wire::value::{Dict, Value};

/// Writes one JSON WAMP message; it puts the commas between top-level elements itself.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out, first: true }
    }

    /// A writer that continues a message whose first elements another writer wrote (into
    /// another buffer): the next element gets its separating comma.
    pub fn continuing(out: &'a mut Vec<u8>) -> Self {
        Writer { out, first: false }
    }

    fn separator(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.out.push(b',');
        }
    }
}

impl codec::Writer for Writer<'_> {
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
