//! Bytes ↔ WAMP: the message model, the three serializers and the two transports.
//!
//! Everything here is pure: buffers in, buffers and values out. `message` holds the model
//! and the per-message layouts; `json`, `msgpack` and `cbor` implement its `Reader`/`Writer`
//! traits; `websocket` and `rawsocket` are incremental transport codecs over `BytesMut`.

pub mod cbor;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod ids;
pub mod json;
pub mod message;
pub mod msgpack;
pub mod rawsocket;
pub mod uri;
pub mod value;
pub mod websocket;

pub use message::{DecodeError, Id, Message, Payload, Serializer, ValueKind, decode, encode, encode_to_vec};
pub use value::{Dict, Value};
