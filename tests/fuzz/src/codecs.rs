//! Fuzz bodies for the serializers and the config file.
//!
//! A serializer must turn any byte string into a message or a `DecodeError`; what it
//! accepts must survive the router's own uses of it: re-encoding in the same serializer
//! (byte-stable on the second round), transcoding the payload to each serializer (a router
//! does that once per publication per target serializer), and encoding the whole message
//! for another serializer, which must then decode.

use bytes::Bytes;
use shardbar::config::Config;
use shardbar::proto::wire::{Dict, Message, Payload, Serializer, Value, decode, encode_to_vec};

/// Decode `data` as one `ser` message; if that works, re-encode and transcode it.
pub fn decode_and_transcode(ser: Serializer, data: &[u8]) {
    let Ok(msg) = decode(ser, &Bytes::copy_from_slice(data)) else { return };
    let again = encode_to_vec(ser, &msg).unwrap_or_else(|e| panic!("re-encode of an accepted {ser:?} message: {e}"));
    let msg2 =
        decode(ser, &Bytes::from(again.clone())).unwrap_or_else(|e| panic!("decode of our own {ser:?} bytes: {e}"));
    let third = encode_to_vec(ser, &msg2).unwrap_or_else(|e| panic!("second re-encode: {e}"));
    assert_eq!(third, again, "{ser:?}: our encoding is not stable");
    if let Some(payload) = payload_of(&msg) {
        // The payload was only skipped over on the way in, which checks less than decoding
        // (dict key types): decoding it may fail, and then transcoding to another serializer
        // must fail too, without a panic. When it decodes, every transcode must work and
        // decode again with the element count it claims.
        let decodes = payload.values().is_ok();
        for to in Serializer::ALL {
            let verbatim = to == ser || payload.count == 0;
            match payload.transcode(to) {
                Ok(out) => {
                    assert!(decodes || verbatim, "{ser:?} payload that does not decode transcoded to {to:?}");
                    assert_eq!((out.format, out.count), (to, payload.count));
                    if decodes {
                        out.values().unwrap_or_else(|e| panic!("{ser:?} payload as {to:?} does not decode: {e}"));
                    }
                }
                Err(e) => assert!(!decodes && !verbatim, "{ser:?} payload not transcoded to {to:?}: {e}"),
            }
        }
    }
    for to in Serializer::ALL.into_iter().filter(|&to| to != ser) {
        // Known and reported, not fixed here (it is the JSON codec's): a MessagePack or CBOR
        // text string that starts with U+0000 is written to JSON as `"\u0000..."`, which
        // JSON readers take for WAMP binary, so `string()` refuses it on the way back. Inputs
        // in `tests/fuzz/regressions/decode_{msgpack,cbor}/`. Skipped so the rest of the
        // check keeps finding other things; remove when the codec refuses or escapes them.
        if to == Serializer::Json && has_nul_led_text(&msg) {
            continue;
        }
        if let Ok(bytes) = encode_to_vec(to, &msg) {
            decode(to, &Bytes::from(bytes)).unwrap_or_else(|e| panic!("{ser:?} message encoded as {to:?}: {e}"));
        }
    }
}

/// Whether a string of the message outside its payload (a URI, a reason, a dict key or
/// text value in its options or details) starts with U+0000.
fn has_nul_led_text(msg: &Message) -> bool {
    let text = |s: &str| s.starts_with('\0');
    let dict = |d: &Dict| value_has_nul_led_text(&Value::Dict(d.clone()));
    match msg {
        Message::Hello { realm: s, details: d }
        | Message::Challenge { authmethod: s, extra: d }
        | Message::Authenticate { signature: s, extra: d }
        | Message::Goodbye { reason: s, details: d }
        | Message::Abort { reason: s, details: d, .. }
        | Message::Error { error: s, details: d, .. }
        | Message::Publish { topic: s, options: d, .. }
        | Message::Subscribe { topic: s, options: d, .. }
        | Message::Call { procedure: s, options: d, .. }
        | Message::Register { procedure: s, options: d, .. } => text(s) || dict(d),
        Message::Welcome { details: d, .. }
        | Message::Event { details: d, .. }
        | Message::Cancel { options: d, .. }
        | Message::Result { details: d, .. }
        | Message::Invocation { details: d, .. }
        | Message::Interrupt { options: d, .. }
        | Message::Yield { options: d, .. } => dict(d),
        Message::Unsubscribed { details: d, .. }
        | Message::Unregistered { details: d, .. }
        | Message::EventReceived { details: d, .. } => d.as_ref().is_some_and(dict),
        Message::Published { .. }
        | Message::Subscribed { .. }
        | Message::Unsubscribe { .. }
        | Message::Registered { .. }
        | Message::Unregister { .. } => false,
    }
}

fn value_has_nul_led_text(v: &Value) -> bool {
    match v {
        Value::Str(s) => s.starts_with('\0'),
        Value::List(items) => items.iter().any(value_has_nul_led_text),
        Value::Dict(d) => d.iter().any(|(k, v)| k.starts_with('\0') || value_has_nul_led_text(v)),
        _ => false,
    }
}

/// The application payload of a message, if its type has one.
pub fn payload_of(msg: &Message) -> Option<&Payload> {
    match msg {
        Message::Abort { payload, .. }
        | Message::Error { payload, .. }
        | Message::Publish { payload, .. }
        | Message::Event { payload, .. }
        | Message::EventReceived { payload, .. }
        | Message::Call { payload, .. }
        | Message::Result { payload, .. }
        | Message::Invocation { payload, .. }
        | Message::Yield { payload, .. } => Some(payload),
        _ => None,
    }
}

/// Parse `data` as a config file. Not UTF-8 is not a config file (the loader reads the
/// file as text first); anything else must give a `Config` or a `ConfigError` that names
/// the source.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_toml(text, "fuzz.toml") {
        Ok(config) => {
            assert!(config.shards >= 1, "a valid config has at least one shard");
            assert!(!config.listeners.is_empty(), "a valid config listens somewhere");
        }
        Err(e) => assert_eq!(e.source, "fuzz.toml"),
    }
}
