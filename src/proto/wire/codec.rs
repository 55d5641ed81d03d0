//! What every serializer offers: the [`Reader`] and [`Writer`] traits the message layouts
//! are written against, the [`Serializer`] names, and [`ValueKind`].
//!
//! Owns: the contract between the message model (`message.rs`, which knows the layouts) and
//! the serializers (`json`, `msgpack`, `cbor`, which know the bytes). The serializers depend
//! on this file and on `error.rs`, never on `message.rs`; `message.rs` depends on them.
//!
//! Must not: know a message layout or a byte format.

use std::ops::Range;

use super::error::DecodeError;
use super::value::{Dict, Value};
use crate::limits::OPTIONS_VALUES_MAX;

/// A serializer, numbered as in the RawSocket handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Serializer {
    #[default]
    Json = 1,
    MsgPack = 2,
    Cbor = 3,
}

impl Serializer {
    pub const ALL: [Serializer; 3] = [Serializer::Json, Serializer::MsgPack, Serializer::Cbor];

    /// The RawSocket handshake serializer nibble.
    pub fn rawsocket_id(self) -> u8 {
        self as u8
    }

    pub fn from_rawsocket_id(id: u8) -> Option<Serializer> {
        match id {
            1 => Some(Serializer::Json),
            2 => Some(Serializer::MsgPack),
            3 => Some(Serializer::Cbor),
            _ => None,
        }
    }

    /// The WebSocket subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Serializer::Json => "wamp.2.json",
            Serializer::MsgPack => "wamp.2.msgpack",
            Serializer::Cbor => "wamp.2.cbor",
        }
    }

    pub fn from_subprotocol(name: &str) -> Option<Serializer> {
        match name {
            "wamp.2.json" => Some(Serializer::Json),
            "wamp.2.msgpack" => Some(Serializer::MsgPack),
            "wamp.2.cbor" => Some(Serializer::Cbor),
            _ => None,
        }
    }

    /// The config-file / CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Serializer::Json => "json",
            Serializer::MsgPack => "msgpack",
            Serializer::Cbor => "cbor",
        }
    }

    pub fn from_name(name: &str) -> Option<Serializer> {
        match name {
            "json" => Some(Serializer::Json),
            "msgpack" => Some(Serializer::MsgPack),
            "cbor" => Some(Serializer::Cbor),
            _ => None,
        }
    }

    /// WebSocket frames for this serializer are binary (else text).
    pub fn is_binary(self) -> bool {
        !matches!(self, Serializer::Json)
    }
}

/// The type of an element found while skipping it, so the payload's shape can be checked
/// without decoding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    List,
    Dict,
    /// Serializer-specific values with no WAMP meaning (msgpack ext, CBOR undefined/simple).
    Other,
}

impl ValueKind {
    /// The kind's name in error texts (the words of `Value::type_name`).
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Null => "null",
            ValueKind::Bool => "bool",
            ValueKind::Int => "integer",
            ValueKind::Float => "float",
            ValueKind::Str => "string",
            ValueKind::Bytes => "binary",
            ValueKind::List => "list",
            ValueKind::Dict => "dict",
            ValueKind::Other => "an ext or undefined value",
        }
    }
}

/// What a serializer's message reader offers. Implemented by `json`, `msgpack`, `cbor`.
///
/// Elements are read in order from the top-level list. Each typed read fails with a
/// [`DecodeError`] when the element has another type; the caller adds which element it was.
/// The values built for one message (by `dict` and `value`) are counted against
/// `limits::OPTIONS_VALUES_MAX` ([`Budget`]).
pub trait Reader {
    /// Consume the start of the top-level list.
    fn begin(&mut self) -> Result<(), DecodeError>;
    /// Whether another element of the top-level list follows.
    fn more(&mut self) -> Result<bool, DecodeError>;
    /// A non-negative integer (up to `u64::MAX`; beyond it `IntegerOutOfRange`).
    fn uint(&mut self) -> Result<u64, DecodeError>;
    /// A text string.
    fn string(&mut self) -> Result<String, DecodeError>;
    /// A dict with string keys, encoded in at most `limits::OPTIONS_MAX_BYTES` (checked
    /// before any of it is built). Entries whose value is msgpack ext or CBOR `undefined`
    /// are left out (wampy sends them for absent options).
    fn dict(&mut self) -> Result<Dict, DecodeError>;
    /// Any value.
    fn value(&mut self) -> Result<Value, DecodeError>;
    /// Validate and skip one element without decoding it; returns its byte range in the
    /// input and its kind. Used for the payload. A dict's own keys must be strings (WAMP's
    /// rule for `ArgumentsKw`); keys nested deeper are application data and may be anything
    /// the format allows.
    fn skip(&mut self) -> Result<(Range<usize>, ValueKind), DecodeError>;
    /// Consume the end of the top-level list; nothing may follow it.
    fn end(&mut self) -> Result<(), DecodeError>;
}

/// What a serializer's message writer offers. Implemented by `json`, `msgpack`, `cbor`.
pub trait Writer {
    /// Start the top-level list of `len` elements (payload elements included).
    fn begin(&mut self, len: usize);
    fn uint(&mut self, v: u64);
    fn string(&mut self, s: &str);
    fn dict(&mut self, d: &Dict);
    /// Append pre-encoded payload elements in this writer's serializer, verbatim
    /// (the JSON writer adds the separating comma).
    fn raw(&mut self, raw: &[u8]);
    fn end(&mut self);
}

/// How many more values a decoder may build: `limits::OPTIONS_VALUES_MAX` for one message
/// (whose only built values are its `Options`/`Details`), unlimited for a payload being
/// transcoded. Every value builder takes one per value (list element, dict value) before it
/// builds it, so no message's tree outgrows `limits::OPTIONS_DECODED_MAX_BYTES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget(usize);

impl Budget {
    /// The budget of one message.
    pub(crate) const MESSAGE: Budget = Budget(OPTIONS_VALUES_MAX);
    /// No limit (payload values; the message size bounds them).
    pub(crate) const UNLIMITED: Budget = Budget(usize::MAX);

    /// Account for one value about to be built.
    #[inline]
    pub(crate) fn take(&mut self) -> Result<(), DecodeError> {
        match self.0.checked_sub(1) {
            Some(left) => {
                self.0 = left;
                Ok(())
            }
            None => Err(DecodeError::TooManyValues),
        }
    }
}
