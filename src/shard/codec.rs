//! The transport framing of an established WAMP connection, WebSocket or RawSocket,
//! behind one enum: decode frames from the read buffer, write control frames (ping, pong,
//! WebSocket close).
//!
//! Framing only: what a message means is the core's business, when to ping is `timers.rs`'s.

use bytes::{Bytes, BytesMut};

use crate::proto::wire::{rawsocket, websocket};

/// Transport decoder of a WAMP connection.
pub(crate) enum Codec {
    Ws(websocket::Decoder),
    Raw(rawsocket::Decoder),
}

/// One decoded transport frame.
pub(crate) enum Decoded {
    Message(Bytes),
    Ping(Bytes),
    Pong,
    /// The peer closed (WebSocket Close; carries the code to echo).
    Close(Option<u16>),
}

/// A transport error: the WebSocket close code to send, and why.
pub(crate) struct TransportError {
    pub(crate) ws_code: Option<u16>,
    pub(crate) reason: String,
}

impl Codec {
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, TransportError> {
        match self {
            Codec::Ws(d) => match d.decode(buf) {
                Ok(None) => Ok(None),
                Ok(Some(websocket::Event::Message { data, .. })) => Ok(Some(Decoded::Message(data))),
                Ok(Some(websocket::Event::Ping(p))) => Ok(Some(Decoded::Ping(p))),
                Ok(Some(websocket::Event::Pong(_))) => Ok(Some(Decoded::Pong)),
                Ok(Some(websocket::Event::Close { code, .. })) => Ok(Some(Decoded::Close(code))),
                Err(e) => Err(TransportError { ws_code: Some(e.code), reason: e.reason.to_owned() }),
            },
            Codec::Raw(d) => match d.decode(buf) {
                Ok(None) => Ok(None),
                Ok(Some(rawsocket::Frame::Message(m))) => Ok(Some(Decoded::Message(m))),
                Ok(Some(rawsocket::Frame::Ping(p))) => Ok(Some(Decoded::Ping(p))),
                Ok(Some(rawsocket::Frame::Pong(_))) => Ok(Some(Decoded::Pong)),
                Err(e) => Err(TransportError { ws_code: None, reason: e.to_string() }),
            },
        }
    }

    pub(crate) fn write_pong(&self, payload: &[u8], out: &mut Vec<u8>) {
        match self {
            Codec::Ws(_) => websocket::write_frame(websocket::OpCode::Pong, payload, out),
            Codec::Raw(_) => rawsocket::write_frame(rawsocket::FrameKind::Pong, payload, out),
        }
    }

    pub(crate) fn write_ping(&self, payload: &[u8], out: &mut Vec<u8>) {
        match self {
            Codec::Ws(_) => websocket::write_frame(websocket::OpCode::Ping, payload, out),
            Codec::Raw(_) => rawsocket::write_frame(rawsocket::FrameKind::Ping, payload, out),
        }
    }

    /// A WebSocket Close frame; nothing for RawSocket, which has no close frame.
    pub(crate) fn write_close(&self, code: u16, reason: &str, out: &mut Vec<u8>) {
        if let Codec::Ws(_) = self {
            websocket::write_close(code, reason, out);
        }
    }
}
