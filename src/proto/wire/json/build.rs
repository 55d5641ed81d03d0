//! Building JSON values: the hand-written recursive-descent parser for small values, and
//! simd-json for large ones, behind one entry point ([`build_at`]).
//!
//! Values larger than `limits::JSON_HAND_PARSE_MAX_BYTES` are scanned for their extent and go
//! to simd-json, which parses in place, so the slice is copied into a thread-local scratch
//! buffer first (thread-per-core: one per shard, reused). Smaller values are validated and
//! built in one pass by the hand parser, with the scanner's own string, number and literal
//! functions. The hand parser is also the fallback when simd-json refuses a value the scanner
//! accepted, which happens only for numbers outside its range.
//!
//! Both builders take one value from a [`Budget`] for each value they build, and [`build_at`]
//! refuses a value encoded in more than its caller's byte cap before building any of it.
//!
//! Must not: accept anything the scanner (`scan.rs`) refuses, or recurse deeper than
//! `VALUE_DEPTH_MAX`.

use std::borrow::Cow;
use std::cell::RefCell;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use simd_json::{Buffers, Node, StaticNode, Tape};

use super::scan::{StrScan, escape, scan_literal, scan_number, scan_string, skip_value, skip_ws, syntax, unexpected};
use crate::limits::{JSON_HAND_PARSE_MAX_BYTES, JSON_SCRATCH_KEEP_BYTES, VALUE_DEPTH_MAX};
use crate::proto::wire::codec::Budget;
use crate::proto::wire::error::DecodeError;
use crate::proto::wire::value::{Dict, Value};

/// The text of a string whose scan is `s` and whose opening quote is at `start`.
pub(super) fn string_text<'b>(buf: &'b [u8], start: usize, s: &StrScan) -> Result<Cow<'b, str>, DecodeError> {
    let bytes = buf.get(start + 1..s.end - 1).ok_or_else(|| syntax("unterminated string", start))?;
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 { at: start + 1 + e.valid_up_to() })?;
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
pub(super) struct Parser<'b> {
    pub(super) buf: &'b [u8],
    pub(super) pos: usize,
    /// Values this parser may still build.
    pub(super) budget: Budget,
}

impl<'b> Parser<'b> {
    /// Parse the whole of `buf` as one value (surrounding whitespace allowed), with no limit
    /// on the values built.
    #[cfg(test)]
    pub(super) fn document(buf: &'b [u8]) -> Result<Value, DecodeError> {
        let mut unlimited = Budget::UNLIMITED;
        Parser::document_within(buf, &mut unlimited)
    }

    /// Parse the whole of `buf` as one value, taking what it builds from `budget`.
    fn document_within(buf: &'b [u8], budget: &mut Budget) -> Result<Value, DecodeError> {
        let mut p = Parser { buf, pos: skip_ws(buf, 0), budget: *budget };
        let v = p.value(0);
        *budget = p.budget;
        let v = v?;
        let end = skip_ws(buf, p.pos);
        if end != buf.len() {
            return Err(unexpected(buf, end, "end of value"));
        }
        Ok(v)
    }

    /// Parse the value at `self.pos`; `depth` containers enclose it.
    pub(super) fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.budget.take()?;
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
            Some(b'[') => self.list(start, depth),
            Some(b'{') => self.dict(start, depth),
            _ => Err(unexpected(buf, start, "a value")),
        }
    }

    /// The list whose `[` is at `start`; `depth` containers enclose it.
    fn list(&mut self, start: usize, depth: usize) -> Result<Value, DecodeError> {
        let buf = self.buf;
        if depth >= VALUE_DEPTH_MAX {
            return Err(DecodeError::TooDeep { at: Some(start) });
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

    /// The dict whose `{` is at `start`; `depth` containers enclose it.
    fn dict(&mut self, start: usize, depth: usize) -> Result<Value, DecodeError> {
        let buf = self.buf;
        if depth >= VALUE_DEPTH_MAX {
            return Err(DecodeError::TooDeep { at: Some(start) });
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
        Scratch { input: Vec::new(), buffers: Buffers::new(JSON_HAND_PARSE_MAX_BYTES * 4), tape: None }
    }

    fn parse(&mut self, json: &[u8], budget: &mut Budget) -> Result<Value, DecodeError> {
        let Scratch { input, buffers, tape: slot } = &mut *self;
        input.clear();
        input.extend_from_slice(json);
        input.resize(json.len() + simd_json::INPUT_PADDING, b' ');
        let mut tape = slot.take().unwrap_or_else(Tape::null).reset();
        let result = match simd_json::fill_tape_padded(input, json.len(), buffers, &mut tape) {
            Ok(()) => tape_value(&tape.0, &mut 0, 0, budget),
            Err(e) => Err(DecodeError::refused("invalid JSON", None, &e)),
        };
        *slot = Some(tape.reset());
        if input.capacity() > JSON_SCRATCH_KEEP_BYTES {
            *self = Scratch::new();
        }
        result
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Build one value with simd-json, with no limit on the values built.
#[cfg(test)]
pub(super) fn simd_value(json: &[u8]) -> Result<Value, DecodeError> {
    let mut unlimited = Budget::UNLIMITED;
    simd_value_within(json, &mut unlimited)
}

/// Build one value with simd-json, taking what it builds from `budget`.
fn simd_value_within(json: &[u8], budget: &mut Budget) -> Result<Value, DecodeError> {
    let shared = SCRATCH.try_with(|cell| cell.try_borrow_mut().ok().map(|mut s| s.parse(json, budget)));
    match shared {
        Ok(Some(result)) => result,
        // Thread teardown or re-entry: parse with a private scratch rather than fail.
        _ => Scratch::new().parse(json, budget),
    }
}

/// The value at `nodes[*i]`, advancing `*i` past it.
fn tape_value(nodes: &[Node<'_>], i: &mut usize, depth: usize, budget: &mut Budget) -> Result<Value, DecodeError> {
    budget.take()?;
    let node = nodes.get(*i).ok_or_else(|| DecodeError::refused("invalid JSON", None, &"the tape ended early"))?;
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
        Node::Static(_) => return Err(DecodeError::refused("invalid JSON", None, &"an unsupported number")),
        Node::Array { len, .. } => {
            if depth >= VALUE_DEPTH_MAX {
                return Err(DecodeError::TooDeep { at: None });
            }
            let mut list = Vec::with_capacity(len.min(nodes.len()));
            for _ in 0..len {
                list.push(tape_value(nodes, i, depth + 1, budget)?);
            }
            Value::List(list)
        }
        Node::Object { len, .. } => {
            if depth >= VALUE_DEPTH_MAX {
                return Err(DecodeError::TooDeep { at: None });
            }
            let mut dict = Dict::with_capacity(len.min(nodes.len()));
            for _ in 0..len {
                let Some(Node::String(key)) = nodes.get(*i) else {
                    return Err(DecodeError::refused("invalid JSON", None, &"a dict key on the tape is not a string"));
                };
                *i += 1;
                let v = tape_value(nodes, i, depth + 1, budget)?;
                dict.insert(*key, v);
            }
            Value::Dict(dict)
        }
    })
}

/// Validate and build the value starting at `start` (no leading whitespace); returns it
/// and the position just after it. A value encoded in more than `max_bytes` is refused
/// before any of it is built ([`DecodeError::DictTooLarge`]: only dicts are capped); the
/// values built are taken from `budget`.
///
/// When what is left of the input is small, the hand parser validates and builds in one
/// pass. Otherwise the scanner finds the value's extent first, and a large value goes to
/// simd-json; either way the grammar is checked by the same functions.
pub(super) fn build_at(
    buf: &[u8],
    start: usize,
    max_bytes: usize,
    budget: &mut Budget,
) -> Result<(Value, usize), DecodeError> {
    let rest = buf.len().saturating_sub(start);
    if rest > JSON_HAND_PARSE_MAX_BYTES || rest > max_bytes {
        let (end, _) = skip_value(buf, start)?;
        if end - start > max_bytes {
            return Err(DecodeError::DictTooLarge);
        }
        if end - start > JSON_HAND_PARSE_MAX_BYTES {
            let json = buf.get(start..end).unwrap_or_default();
            // The grammar has been checked, so simd-json can only refuse a number beyond its
            // range (integers beyond 64 bits, floats beyond f64); the hand parser decodes
            // those as floats, with the budget as it was before simd-json's attempt.
            let before = *budget;
            let v = match simd_value_within(json, budget) {
                Ok(v) => v,
                Err(DecodeError::TooManyValues) => return Err(DecodeError::TooManyValues),
                Err(_) => {
                    *budget = before;
                    Parser::document_within(json, budget)?
                }
            };
            return Ok((v, end));
        }
    }
    let mut p = Parser { buf, pos: start, budget: *budget };
    let v = p.value(0);
    *budget = p.budget;
    Ok((v?, p.pos))
}
