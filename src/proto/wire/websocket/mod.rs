//! WebSocket transport codec (RFC 6455): the opening handshake on both sides and the frame
//! codec, as pure functions and an incremental [`Decoder`] over `BytesMut`.
//!
//! Files: `handshake.rs` validates an upgrade, chooses the WAMP subprotocol and builds the
//! 101 / 400 / 426 answers (and the client side); `frame.rs` is the shared vocabulary
//! (opcodes, close codes, [`Event`], [`Error`], unmasking); `decode.rs` the [`Decoder`];
//! `utf8.rs` its fail-fast UTF-8 check; `encode.rs` writes frame headers and frames. The
//! HTTP heads themselves are read by `wire::http`, re-exported here for the callers that
//! know them as `websocket::parse_request` and friends. This file only declares and
//! re-exports; nothing here depends on it.
//!
//! Must not: do I/O, read the clock or know about glommio; decode WAMP (that is `message`);
//! answer pings or close handshakes itself — the decoder reports [`Event`]s and the
//! connection code, which owns the write queue, replies. No extension is ever negotiated,
//! so RSV bits are always a protocol error.
//!
//! Outgoing server frames are unmasked, and only the header is written here
//! ([`encode_header`]): one encoded EVENT payload is shared by every subscriber's queue
//! and each connection gets its own few header bytes in front of it.

mod decode;
mod encode;
mod frame;
mod handshake;
#[cfg(test)]
mod tests;
mod utf8;

pub use self::decode::Decoder;
pub use self::encode::{
    close_payload, encode_header, encode_masked_header, write_close, write_frame, write_masked_frame,
};
pub use self::frame::{
    CLOSE_REASON_MAX_BYTES, Error, Event, HEADER_MAX_BYTES, MASKED_HEADER_MAX_BYTES, OpCode, Role, close_code,
    is_valid_close_code, unmask,
};
pub use self::handshake::{
    AcceptOptions, Accepted, ClientHandshakeError, Rejection, accept, accept_key, client_key, select_protocol,
    validate_response, write_client_request,
};
// The head reader moved to `wire::http`; these keep the runtime's and the load generator's
// `websocket::parse_request` (and friends) working.
pub use super::http::{
    Headers, HttpError, HttpVersion, Request, Response, http_response, parse_request, parse_response,
};
