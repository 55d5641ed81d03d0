//! The WAMP message model and the serializer-independent encode/decode logic.
//!
//! Each serializer module (`json`, `msgpack`, `cbor`) implements the small [`Reader`] and
//! [`Writer`] traits of `codec.rs`; the message layouts are written once here, in [`decode`]
//! and [`encode`]. Because WAMP has no polymorphism, the message code and element count fix
//! the type of every element, and a wrong type is a protocol violation naming the element
//! ([`DecodeError::InElement`]).
//!
//! Must not: know a byte format (that is the serializers'), or be imported by a serializer
//! (they see only `codec.rs` and `error.rs`, so the dependency runs one way).
//!
//! The application payload (`Arguments|list`, `ArgumentsKw|dict`) is never parsed on the
//! way through: [`Payload`] holds the raw encoded trailing elements as a [`Bytes`] slice of
//! the input frame, plus the serializer they are in. Encoding for the same serializer
//! copies those bytes verbatim; encoding for another serializer transcodes them
//! ([`Payload::transcode`]), which a router does once per publication per target
//! serializer.

use std::ops::Range;

use bytes::Bytes;

// The traits and shared types moved to `codec.rs` and `error.rs`; re-exported so that
// `message::Reader` and friends keep working for the code built on them.
pub use super::codec::{Reader, Serializer, ValueKind, Writer};
pub use super::error::DecodeError;
use super::error::Found;
use super::value::{Dict, Value};
use super::{cbor, json, msgpack};
use crate::limits;

/// A WAMP ID (session, publication, subscription, registration, request).
pub type Id = u64;

/// The application payload: `Arguments` and optionally `ArgumentsKw`, as raw encoded
/// elements in `format`.
///
/// `raw` holds `count` consecutive encoded elements exactly as they were in the source
/// frame (for JSON, the separating comma and whitespace between them are included). An
/// empty payload has `count == 0` and empty `raw`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Payload {
    pub format: Serializer,
    pub raw: Bytes,
    pub count: u8,
}

impl Payload {
    pub fn empty() -> Payload {
        Payload::default()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size of the payload in its own serializer.
    pub fn len_bytes(&self) -> usize {
        self.raw.len()
    }

    /// Build a payload from values. `kwargs` without `args` writes an empty `args` list, as
    /// the message layouts require.
    pub fn from_values(format: Serializer, args: Option<&[Value]>, kwargs: Option<&Dict>) -> Payload {
        let mut out = Vec::new();
        let mut count = 0u8;
        let empty: [Value; 0] = [];
        let args = match (args, kwargs) {
            (None, Some(_)) => Some(&empty[..]),
            (a, _) => a,
        };
        let list;
        if let Some(args) = args {
            list = Value::List(args.to_vec());
            encode_value(format, &list, &mut out);
            count += 1;
        }
        if let Some(kw) = kwargs {
            if format == Serializer::Json {
                out.push(b',');
            }
            encode_value(format, &Value::Dict(kw.clone()), &mut out);
            count += 1;
        }
        Payload { format, raw: Bytes::from(out), count }
    }

    /// Decode the payload's elements (`[args]` or `[args, kwargs]`).
    pub fn values(&self) -> Result<Vec<Value>, DecodeError> {
        let values = match self.format {
            Serializer::Json => json::decode_values(&self.raw)?,
            Serializer::MsgPack => msgpack::decode_values(&self.raw)?,
            Serializer::Cbor => cbor::decode_values(&self.raw)?,
        };
        if values.len() != self.count as usize {
            return Err(DecodeError::PayloadCount { expected: self.count, found: values.len() });
        }
        Ok(values)
    }

    /// The same payload in serializer `to`. Same serializer: a refcount increment.
    /// Binary values cross into JSON as `"\u0000" + base64` and back.
    pub fn transcode(&self, to: Serializer) -> Result<Payload, DecodeError> {
        if self.format == to || self.count == 0 {
            return Ok(Payload { format: to, raw: self.raw.clone(), count: self.count });
        }
        let values = self.values()?;
        let mut out = Vec::with_capacity(self.raw.len() + 16);
        for (i, v) in values.iter().enumerate() {
            if i > 0 && to == Serializer::Json {
                out.push(b',');
            }
            encode_value(to, v, &mut out);
        }
        Ok(Payload { format: to, raw: Bytes::from(out), count: self.count })
    }

    /// The positional arguments, decoded (convenience for the router's own procedures).
    pub fn args(&self) -> Result<Vec<Value>, DecodeError> {
        let mut values = self.values()?;
        if values.is_empty() {
            return Ok(Vec::new());
        }
        match values.swap_remove(0) {
            Value::List(l) => Ok(l),
            other => Err(DecodeError::WrongType { expected: "a list", found: Found::Type(other.type_name()) }
                .in_element(None, "Arguments")),
        }
    }

    /// The keyword arguments, decoded (convenience for the router's own procedures).
    pub fn kwargs(&self) -> Result<Dict, DecodeError> {
        let mut values = self.values()?;
        if values.len() < 2 {
            return Ok(Dict::new());
        }
        match values.swap_remove(1) {
            Value::Dict(d) => Ok(d),
            other => Err(DecodeError::WrongType { expected: "a dict", found: Found::Type(other.type_name()) }
                .in_element(None, "ArgumentsKw")),
        }
    }
}

/// Encode one value in `format` (used for payloads built by the router).
pub fn encode_value(format: Serializer, v: &Value, out: &mut Vec<u8>) {
    match format {
        Serializer::Json => json::encode_value(v, out),
        Serializer::MsgPack => msgpack::encode_value(v, out),
        Serializer::Cbor => cbor::encode_value(v, out),
    }
}

/// Message type codes, in the order of the spec's table.
pub mod code {
    pub const HELLO: u64 = 1;
    pub const WELCOME: u64 = 2;
    pub const ABORT: u64 = 3;
    pub const CHALLENGE: u64 = 4;
    pub const AUTHENTICATE: u64 = 5;
    pub const GOODBYE: u64 = 6;
    pub const ERROR: u64 = 8;
    pub const PUBLISH: u64 = 16;
    pub const PUBLISHED: u64 = 17;
    pub const SUBSCRIBE: u64 = 32;
    pub const SUBSCRIBED: u64 = 33;
    pub const UNSUBSCRIBE: u64 = 34;
    pub const UNSUBSCRIBED: u64 = 35;
    pub const EVENT: u64 = 36;
    pub const CALL: u64 = 48;
    pub const CANCEL: u64 = 49;
    pub const RESULT: u64 = 50;
    pub const REGISTER: u64 = 64;
    pub const REGISTERED: u64 = 65;
    pub const UNREGISTER: u64 = 66;
    pub const UNREGISTERED: u64 = 67;
    pub const INVOCATION: u64 = 68;
    pub const INTERRUPT: u64 = 69;
    pub const YIELD: u64 = 70;
    /// Crossbar/Autobahn's private acknowledged-delivery message.
    pub const EVENT_RECEIVED: u64 = 337;
}

/// One WAMP message. Variants are in the order of the spec's message table.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Hello {
        realm: String,
        details: Dict,
    },
    Welcome {
        session: Id,
        details: Dict,
    },
    Abort {
        details: Dict,
        reason: String,
        payload: Payload,
    },
    Challenge {
        authmethod: String,
        extra: Dict,
    },
    Authenticate {
        signature: String,
        extra: Dict,
    },
    Goodbye {
        details: Dict,
        reason: String,
    },
    Error {
        request_type: u64,
        request: Id,
        details: Dict,
        error: String,
        payload: Payload,
    },
    Publish {
        request: Id,
        options: Dict,
        topic: String,
        payload: Payload,
    },
    Published {
        request: Id,
        publication: Id,
    },
    Subscribe {
        request: Id,
        options: Dict,
        topic: String,
    },
    Subscribed {
        request: Id,
        subscription: Id,
    },
    Unsubscribe {
        request: Id,
        subscription: Id,
    },
    /// `details` is present only for router-initiated revocation (`request == 0`).
    Unsubscribed {
        request: Id,
        details: Option<Dict>,
    },
    Event {
        subscription: Id,
        publication: Id,
        details: Dict,
        payload: Payload,
    },
    /// `[337, Publication|id, Details|dict?, ...payload]` acknowledged delivery (private).
    EventReceived {
        publication: Id,
        details: Option<Dict>,
        payload: Payload,
    },
    Call {
        request: Id,
        options: Dict,
        procedure: String,
        payload: Payload,
    },
    Cancel {
        request: Id,
        options: Dict,
    },
    Result {
        request: Id,
        details: Dict,
        payload: Payload,
    },
    Register {
        request: Id,
        options: Dict,
        procedure: String,
    },
    Registered {
        request: Id,
        registration: Id,
    },
    Unregister {
        request: Id,
        registration: Id,
    },
    /// `details` is present only for router-initiated revocation (`request == 0`).
    Unregistered {
        request: Id,
        details: Option<Dict>,
    },
    Invocation {
        request: Id,
        registration: Id,
        details: Dict,
        payload: Payload,
    },
    Interrupt {
        request: Id,
        options: Dict,
    },
    Yield {
        request: Id,
        options: Dict,
        payload: Payload,
    },
}

impl Message {
    pub fn code(&self) -> u64 {
        match self {
            Message::Hello { .. } => code::HELLO,
            Message::Welcome { .. } => code::WELCOME,
            Message::Abort { .. } => code::ABORT,
            Message::Challenge { .. } => code::CHALLENGE,
            Message::Authenticate { .. } => code::AUTHENTICATE,
            Message::Goodbye { .. } => code::GOODBYE,
            Message::Error { .. } => code::ERROR,
            Message::Publish { .. } => code::PUBLISH,
            Message::Published { .. } => code::PUBLISHED,
            Message::Subscribe { .. } => code::SUBSCRIBE,
            Message::Subscribed { .. } => code::SUBSCRIBED,
            Message::Unsubscribe { .. } => code::UNSUBSCRIBE,
            Message::Unsubscribed { .. } => code::UNSUBSCRIBED,
            Message::Event { .. } => code::EVENT,
            Message::EventReceived { .. } => code::EVENT_RECEIVED,
            Message::Call { .. } => code::CALL,
            Message::Cancel { .. } => code::CANCEL,
            Message::Result { .. } => code::RESULT,
            Message::Register { .. } => code::REGISTER,
            Message::Registered { .. } => code::REGISTERED,
            Message::Unregister { .. } => code::UNREGISTER,
            Message::Unregistered { .. } => code::UNREGISTERED,
            Message::Invocation { .. } => code::INVOCATION,
            Message::Interrupt { .. } => code::INTERRUPT,
            Message::Yield { .. } => code::YIELD,
        }
    }

    /// The spec name of the message type (`"PUBLISH"`), for logs and error texts.
    pub fn name(&self) -> &'static str {
        code_name(self.code())
    }
}

/// The spec name of a message code, or `"UNKNOWN"`.
pub fn code_name(code: u64) -> &'static str {
    match code {
        code::HELLO => "HELLO",
        code::WELCOME => "WELCOME",
        code::ABORT => "ABORT",
        code::CHALLENGE => "CHALLENGE",
        code::AUTHENTICATE => "AUTHENTICATE",
        code::GOODBYE => "GOODBYE",
        code::ERROR => "ERROR",
        code::PUBLISH => "PUBLISH",
        code::PUBLISHED => "PUBLISHED",
        code::SUBSCRIBE => "SUBSCRIBE",
        code::SUBSCRIBED => "SUBSCRIBED",
        code::UNSUBSCRIBE => "UNSUBSCRIBE",
        code::UNSUBSCRIBED => "UNSUBSCRIBED",
        code::EVENT => "EVENT",
        code::EVENT_RECEIVED => "EVENT_RECEIVED",
        code::CALL => "CALL",
        code::CANCEL => "CANCEL",
        code::RESULT => "RESULT",
        code::REGISTER => "REGISTER",
        code::REGISTERED => "REGISTERED",
        code::UNREGISTER => "UNREGISTER",
        code::UNREGISTERED => "UNREGISTERED",
        code::INVOCATION => "INVOCATION",
        code::INTERRUPT => "INTERRUPT",
        code::YIELD => "YIELD",
        _ => "UNKNOWN",
    }
}

/// Decode one message in serializer `ser`. Payload elements become slices of `frame`
/// (small ones are copied, see `limits::PAYLOAD_COPY_BELOW_BYTES`).
pub fn decode(ser: Serializer, frame: &Bytes) -> Result<Message, DecodeError> {
    match ser {
        Serializer::Json => decode_with(&mut json::Reader::new(frame), ser, frame),
        Serializer::MsgPack => decode_with(&mut msgpack::Reader::new(frame), ser, frame),
        Serializer::Cbor => decode_with(&mut cbor::Reader::new(frame), ser, frame),
    }
}

/// Encode one message in serializer `ser`, appending to `out`. Payloads in another
/// serializer are transcoded; a payload that cannot be decoded (it was validated when it
/// came in, so this means a bug or corruption) is an error.
pub fn encode(ser: Serializer, msg: &Message, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    match ser {
        Serializer::Json => encode_with(&mut json::Writer::new(out), ser, msg),
        Serializer::MsgPack => encode_with(&mut msgpack::Writer::new(out), ser, msg),
        Serializer::Cbor => encode_with(&mut cbor::Writer::new(out), ser, msg),
    }
}

/// Encode to a fresh buffer (tests and the router's cold paths).
pub fn encode_to_vec(ser: Serializer, msg: &Message) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(64);
    encode(ser, msg, &mut out)?;
    Ok(out)
}

/// Encode `d` as it stands in a message (`Options`, `Details`): the bytes a message writer
/// writes for it, without a separator.
pub fn encode_dict(ser: Serializer, d: &Dict, out: &mut Vec<u8>) {
    match ser {
        Serializer::Json => json::Writer::new(out).dict(d),
        Serializer::MsgPack => msgpack::Writer::new(out).dict(d),
        Serializer::Cbor => cbor::Writer::new(out).dict(d),
    }
}

/// The start of an EVENT, up to and including its `Details` (given encoded by
/// [`encode_dict`]): the part that differs per subscription. `payload_count` is the number
/// of payload elements [`encode_event_tail`] writes. Head and tail together are the bytes
/// [`encode`] writes for the same EVENT, so one tail serves every subscription of a
/// publication in one serializer.
pub fn encode_event_head(
    ser: Serializer,
    subscription: Id,
    publication: Id,
    details: &[u8],
    payload_count: u8,
    out: &mut Vec<u8>,
) {
    let head = |w: &mut dyn Writer| {
        event_head_with(w, subscription, publication, payload_count);
        // Verbatim, after the separator the writer puts in (JSON's comma).
        w.raw(details);
    };
    match ser {
        Serializer::Json => head(&mut json::Writer::new(out)),
        Serializer::MsgPack => head(&mut msgpack::Writer::new(out)),
        Serializer::Cbor => head(&mut cbor::Writer::new(out)),
    }
}

/// The end of an EVENT after its `Details`: the payload (transcoded to `ser` if it is in
/// another serializer) and the message's closing bytes. See [`encode_event_head`].
pub fn encode_event_tail(ser: Serializer, payload: &Payload, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    match ser {
        Serializer::Json => tail_with(&mut json::Writer::continuing(out), ser, payload),
        Serializer::MsgPack => tail_with(&mut msgpack::Writer::new(out), ser, payload),
        Serializer::Cbor => tail_with(&mut cbor::Writer::new(out), ser, payload),
    }
}

/// The length [`encode_event_tail`] would write, if it is known without encoding: when the
/// payload is already in `ser` (or empty), the tail is its bytes verbatim plus JSON's comma
/// before them and closing bracket. None when the payload must be transcoded.
pub fn event_tail_len(ser: Serializer, payload: &Payload) -> Option<usize> {
    if payload.count == 0 {
        return Some(usize::from(ser == Serializer::Json));
    }
    if payload.format != ser {
        return None;
    }
    Some(payload.raw.len() + if ser == Serializer::Json { 2 } else { 0 })
}

/// EVENT's elements before `Details` (the layout [`encode_with`] and [`encode_event_head`]
/// share).
fn event_head_with<W: Writer + ?Sized>(w: &mut W, subscription: Id, publication: Id, payload_count: u8) {
    w.begin(4 + payload_count as usize);
    w.uint(code::EVENT);
    w.uint(subscription);
    w.uint(publication);
}

fn tail_with<W: Writer>(w: &mut W, ser: Serializer, payload: &Payload) -> Result<(), DecodeError> {
    write_payload(w, ser, payload)?;
    w.end();
    Ok(())
}

fn ctx<T>(r: Result<T, DecodeError>, message: &'static str, element: &'static str) -> Result<T, DecodeError> {
    r.map_err(|e| e.in_element(Some(message), element))
}

// One match arm per message type, in the spec's order, each listing the message's elements:
// a table rather than logic, so it stays one function however long it is.
fn decode_with<R: Reader>(r: &mut R, ser: Serializer, frame: &Bytes) -> Result<Message, DecodeError> {
    r.begin()?;
    if !r.more()? {
        return Err(DecodeError::EmptyMessage);
    }
    let code = r.uint().map_err(|e| e.in_element(None, "message type"))?;
    let name = code_name(code);
    let need = |r: &mut R, element: &'static str| -> Result<(), DecodeError> {
        if r.more()? { Ok(()) } else { Err(DecodeError::MissingElement { message: name, element }) }
    };
    macro_rules! uint {
        ($el:expr) => {{
            need(r, $el)?;
            ctx(r.uint(), name, $el)?
        }};
    }
    macro_rules! string {
        ($el:expr) => {{
            need(r, $el)?;
            ctx(r.string(), name, $el)?
        }};
    }
    macro_rules! dict {
        ($el:expr) => {{
            need(r, $el)?;
            ctx(r.dict(), name, $el)?
        }};
    }
    let msg = match code {
        code::HELLO => Message::Hello { realm: string!("Realm"), details: dict!("Details") },
        code::WELCOME => Message::Welcome { session: uint!("Session"), details: dict!("Details") },
        code::ABORT => Message::Abort {
            details: dict!("Details"),
            reason: string!("Reason"),
            payload: payload(r, ser, frame, name)?,
        },
        code::CHALLENGE => Message::Challenge { authmethod: string!("AuthMethod"), extra: dict!("Extra") },
        code::AUTHENTICATE => Message::Authenticate { signature: string!("Signature"), extra: dict!("Extra") },
        code::GOODBYE => Message::Goodbye { details: dict!("Details"), reason: string!("Reason") },
        code::ERROR => Message::Error {
            request_type: uint!("REQUEST.Type"),
            request: uint!("REQUEST.Request"),
            details: dict!("Details"),
            error: string!("Error"),
            payload: payload(r, ser, frame, name)?,
        },
        code::PUBLISH => Message::Publish {
            request: uint!("Request"),
            options: dict!("Options"),
            topic: string!("Topic"),
            payload: payload(r, ser, frame, name)?,
        },
        code::PUBLISHED => Message::Published { request: uint!("PUBLISH.Request"), publication: uint!("Publication") },
        code::SUBSCRIBE => {
            Message::Subscribe { request: uint!("Request"), options: dict!("Options"), topic: string!("Topic") }
        }
        code::SUBSCRIBED => {
            Message::Subscribed { request: uint!("SUBSCRIBE.Request"), subscription: uint!("Subscription") }
        }
        code::UNSUBSCRIBE => {
            Message::Unsubscribe { request: uint!("Request"), subscription: uint!("SUBSCRIBED.Subscription") }
        }
        code::UNSUBSCRIBED => {
            let request = uint!("UNSUBSCRIBE.Request");
            let details = if r.more()? { Some(ctx(r.dict(), name, "Details")?) } else { None };
            Message::Unsubscribed { request, details }
        }
        code::EVENT => Message::Event {
            subscription: uint!("SUBSCRIBED.Subscription"),
            publication: uint!("PUBLISHED.Publication"),
            details: dict!("Details"),
            payload: payload(r, ser, frame, name)?,
        },
        code::EVENT_RECEIVED => {
            let publication = uint!("Publication");
            let details = if r.more()? { Some(ctx(r.dict(), name, "Details")?) } else { None };
            let payload = if details.is_some() { payload(r, ser, frame, name)? } else { Payload::empty() };
            Message::EventReceived { publication, details, payload }
        }
        code::CALL => Message::Call {
            request: uint!("Request"),
            options: dict!("Options"),
            procedure: string!("Procedure"),
            payload: payload(r, ser, frame, name)?,
        },
        code::CANCEL => Message::Cancel { request: uint!("CALL.Request"), options: dict!("Options") },
        code::RESULT => Message::Result {
            request: uint!("CALL.Request"),
            details: dict!("Details"),
            payload: payload(r, ser, frame, name)?,
        },
        code::REGISTER => {
            Message::Register { request: uint!("Request"), options: dict!("Options"), procedure: string!("Procedure") }
        }
        code::REGISTERED => {
            Message::Registered { request: uint!("REGISTER.Request"), registration: uint!("Registration") }
        }
        code::UNREGISTER => {
            Message::Unregister { request: uint!("Request"), registration: uint!("REGISTERED.Registration") }
        }
        code::UNREGISTERED => {
            let request = uint!("UNREGISTER.Request");
            let details = if r.more()? { Some(ctx(r.dict(), name, "Details")?) } else { None };
            Message::Unregistered { request, details }
        }
        code::INVOCATION => Message::Invocation {
            request: uint!("Request"),
            registration: uint!("REGISTERED.Registration"),
            details: dict!("Details"),
            payload: payload(r, ser, frame, name)?,
        },
        code::INTERRUPT => Message::Interrupt { request: uint!("INVOCATION.Request"), options: dict!("Options") },
        code::YIELD => Message::Yield {
            request: uint!("INVOCATION.Request"),
            options: dict!("Options"),
            payload: payload(r, ser, frame, name)?,
        },
        other => return Err(DecodeError::UnknownType(other)),
    };
    if r.more()? {
        return Err(DecodeError::TooManyElements { message: name });
    }
    r.end()?;
    Ok(msg)
}

/// Read the trailing `Arguments`/`ArgumentsKw` elements as a raw slice of the frame.
fn payload<R: Reader>(r: &mut R, ser: Serializer, frame: &Bytes, name: &'static str) -> Result<Payload, DecodeError> {
    let mut range: Option<Range<usize>> = None;
    let mut count = 0u8;
    while r.more()? {
        let (elem, kind) = r.skip()?;
        count += 1;
        match count {
            // Arguments: a list, or an opaque binary/string in payload-transparency mode.
            1 => {
                if !matches!(kind, ValueKind::List | ValueKind::Bytes | ValueKind::Str) {
                    let e = DecodeError::WrongType { expected: "a list", found: Found::Type(kind.name()) };
                    return Err(e.in_element(Some(name), "Arguments"));
                }
            }
            2 => {
                if kind != ValueKind::Dict {
                    let e = DecodeError::WrongType { expected: "a dict", found: Found::Type(kind.name()) };
                    return Err(e.in_element(Some(name), "ArgumentsKw"));
                }
            }
            _ => return Err(DecodeError::TooManyElements { message: name }),
        }
        range = Some(match range {
            None => elem,
            Some(first) => first.start..elem.end,
        });
    }
    let Some(range) = range else {
        return Ok(Payload { format: ser, raw: Bytes::new(), count: 0 });
    };
    let raw = if range.len() < limits::PAYLOAD_COPY_BELOW_BYTES {
        Bytes::copy_from_slice(&frame[range])
    } else {
        frame.slice(range)
    };
    Ok(Payload { format: ser, raw, count })
}

/// Write a payload's elements: verbatim when it is already in `ser`, else transcoded.
fn write_payload<W: Writer>(w: &mut W, ser: Serializer, p: &Payload) -> Result<(), DecodeError> {
    if p.count == 0 {
        return Ok(());
    }
    if p.format == ser {
        w.raw(&p.raw);
    } else {
        w.raw(&p.transcode(ser)?.raw);
    }
    Ok(())
}

// One match arm per message type, in the spec's order, as in `decode_with`: a table, kept in
// one function so each layout reads next to its decoding.
fn encode_with<W: Writer>(w: &mut W, ser: Serializer, msg: &Message) -> Result<(), DecodeError> {
    let n = |base: usize, p: &Payload| base + p.count as usize;
    match msg {
        Message::Hello { realm, details } => {
            w.begin(3);
            w.uint(code::HELLO);
            w.string(realm);
            w.dict(details);
        }
        Message::Welcome { session, details } => {
            w.begin(3);
            w.uint(code::WELCOME);
            w.uint(*session);
            w.dict(details);
        }
        Message::Abort { details, reason, payload } => {
            w.begin(n(3, payload));
            w.uint(code::ABORT);
            w.dict(details);
            w.string(reason);
            write_payload(w, ser, payload)?;
        }
        Message::Challenge { authmethod, extra } => {
            w.begin(3);
            w.uint(code::CHALLENGE);
            w.string(authmethod);
            w.dict(extra);
        }
        Message::Authenticate { signature, extra } => {
            w.begin(3);
            w.uint(code::AUTHENTICATE);
            w.string(signature);
            w.dict(extra);
        }
        Message::Goodbye { details, reason } => {
            w.begin(3);
            w.uint(code::GOODBYE);
            w.dict(details);
            w.string(reason);
        }
        Message::Error { request_type, request, details, error, payload } => {
            w.begin(n(5, payload));
            w.uint(code::ERROR);
            w.uint(*request_type);
            w.uint(*request);
            w.dict(details);
            w.string(error);
            write_payload(w, ser, payload)?;
        }
        Message::Publish { request, options, topic, payload } => {
            w.begin(n(4, payload));
            w.uint(code::PUBLISH);
            w.uint(*request);
            w.dict(options);
            w.string(topic);
            write_payload(w, ser, payload)?;
        }
        Message::Published { request, publication } => {
            w.begin(3);
            w.uint(code::PUBLISHED);
            w.uint(*request);
            w.uint(*publication);
        }
        Message::Subscribe { request, options, topic } => {
            w.begin(4);
            w.uint(code::SUBSCRIBE);
            w.uint(*request);
            w.dict(options);
            w.string(topic);
        }
        Message::Subscribed { request, subscription } => {
            w.begin(3);
            w.uint(code::SUBSCRIBED);
            w.uint(*request);
            w.uint(*subscription);
        }
        Message::Unsubscribe { request, subscription } => {
            w.begin(3);
            w.uint(code::UNSUBSCRIBE);
            w.uint(*request);
            w.uint(*subscription);
        }
        Message::Unsubscribed { request, details } => {
            w.begin(if details.is_some() { 3 } else { 2 });
            w.uint(code::UNSUBSCRIBED);
            w.uint(*request);
            if let Some(d) = details {
                w.dict(d);
            }
        }
        Message::Event { subscription, publication, details, payload } => {
            event_head_with(w, *subscription, *publication, payload.count);
            w.dict(details);
            write_payload(w, ser, payload)?;
        }
        Message::EventReceived { publication, details, payload } => {
            let base = if details.is_some() { 3 } else { 2 };
            w.begin(n(base, payload));
            w.uint(code::EVENT_RECEIVED);
            w.uint(*publication);
            if let Some(d) = details {
                w.dict(d);
                write_payload(w, ser, payload)?;
            }
        }
        Message::Call { request, options, procedure, payload } => {
            w.begin(n(4, payload));
            w.uint(code::CALL);
            w.uint(*request);
            w.dict(options);
            w.string(procedure);
            write_payload(w, ser, payload)?;
        }
        Message::Cancel { request, options } => {
            w.begin(3);
            w.uint(code::CANCEL);
            w.uint(*request);
            w.dict(options);
        }
        Message::Result { request, details, payload } => {
            w.begin(n(3, payload));
            w.uint(code::RESULT);
            w.uint(*request);
            w.dict(details);
            write_payload(w, ser, payload)?;
        }
        Message::Register { request, options, procedure } => {
            w.begin(4);
            w.uint(code::REGISTER);
            w.uint(*request);
            w.dict(options);
            w.string(procedure);
        }
        Message::Registered { request, registration } => {
            w.begin(3);
            w.uint(code::REGISTERED);
            w.uint(*request);
            w.uint(*registration);
        }
        Message::Unregister { request, registration } => {
            w.begin(3);
            w.uint(code::UNREGISTER);
            w.uint(*request);
            w.uint(*registration);
        }
        Message::Unregistered { request, details } => {
            w.begin(if details.is_some() { 3 } else { 2 });
            w.uint(code::UNREGISTERED);
            w.uint(*request);
            if let Some(d) = details {
                w.dict(d);
            }
        }
        Message::Invocation { request, registration, details, payload } => {
            w.begin(n(4, payload));
            w.uint(code::INVOCATION);
            w.uint(*request);
            w.uint(*registration);
            w.dict(details);
            write_payload(w, ser, payload)?;
        }
        Message::Interrupt { request, options } => {
            w.begin(3);
            w.uint(code::INTERRUPT);
            w.uint(*request);
            w.dict(options);
        }
        Message::Yield { request, options, payload } => {
            w.begin(n(3, payload));
            w.uint(code::YIELD);
            w.uint(*request);
            w.dict(options);
            write_payload(w, ser, payload)?;
        }
    }
    w.end();
    Ok(())
}
