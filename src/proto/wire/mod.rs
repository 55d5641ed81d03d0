//! Bytes ↔ WAMP: the message model, the three serializers and the two transports.
//!
//! Everything here is pure: buffers in, buffers and values out. Dependencies run one way:
//!
//! - `error` ([`DecodeError`]) and `value` depend on nothing else here;
//! - `codec` holds the [`codec::Reader`]/[`codec::Writer`] traits and [`Serializer`];
//! - `json`, `msgpack` and `cbor` implement those traits and see only `codec`, `error` and
//!   `value`;
//! - `message` holds the model and the per-message layouts, and calls the serializers;
//! - `http` reads HTTP/1.1 heads (the WebSocket opening handshake, `/metrics`, `/health`);
//!   `websocket` and `rawsocket` are incremental transport codecs over `BytesMut`.
//!
//! Must not: do I/O, read the clock, or know about sessions and routing.

pub mod cbor;
pub mod codec;
pub mod error;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod http;
pub mod ids;
pub mod json;
pub mod message;
pub mod msgpack;
pub mod rawsocket;
pub mod uri;
pub mod value;
pub mod websocket;

pub use codec::{Serializer, ValueKind};
pub use error::{DecodeError, PeerText, peer_text};
pub use message::{Id, Message, Payload, decode, encode, encode_to_vec};
pub use value::{Dict, Value};
