//! WebSocket testee mode (`websocket_testee = true` on a listener): echo every message
//! back, answer pings, echo the close — for the Autobahn testsuite. No WAMP, no core.
//!
//! Must never be reachable on a listener that is not marked as a testee.

use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::io::{prepare_read, write_all_by};
use crate::limits;
use crate::proto::wire::websocket;

/// Echo until the peer closes, breaks the protocol, or stops reading.
pub(crate) async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut buf: BytesMut,
    mut decoder: websocket::Decoder,
) {
    let mut out = Vec::new();
    loop {
        let mut done = false;
        loop {
            match decoder.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(websocket::Event::Message { binary, data })) => {
                    let op = if binary { websocket::OpCode::Binary } else { websocket::OpCode::Text };
                    websocket::write_frame(op, &data, &mut out);
                }
                Ok(Some(websocket::Event::Ping(p))) => websocket::write_frame(websocket::OpCode::Pong, &p, &mut out),
                Ok(Some(websocket::Event::Pong(_))) => {}
                Ok(Some(websocket::Event::Close { code, .. })) => {
                    websocket::write_close(code.unwrap_or(1000), "", &mut out);
                    done = true;
                    break;
                }
                Err(e) => {
                    websocket::write_close(e.code, e.reason, &mut out);
                    done = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            if write_all_by(&mut stream, &out, Duration::from_millis(limits::ECHO_WRITE_DEADLINE_MS)).await.is_err() {
                return;
            }
            out.clear();
        }
        if done {
            let _ = stream.close().await;
            return;
        }
        let start = prepare_read(&mut buf, limits::READ_CHUNK_BYTES);
        match stream.read(&mut buf[start..]).await {
            Ok(n) if n > 0 => buf.truncate(start + n),
            _ => return,
        }
    }
}
