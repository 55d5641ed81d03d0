//! Transport handshakes, from the sniffed first byte to an open WAMP connection: the
//! RawSocket handshake, and on HTTP the WebSocket upgrade (or a plain HTTP answer).
//!
//! Both run under the connection's handshake deadline and hand the stream, with any bytes
//! read past the handshake and the connection's admission ticket, to `conn::spawn_session` (or
//! `echo::echo` in testee mode). Also the answer to a connection refused at accept
//! (`answer_refusal`) and to plaintext on a TLS-only listener (`tls_required`). Parsing the
//! handshakes is `proto::wire`'s; this file only does their I/O. The TLS handshake, which
//! comes before these on a TLS connection, is `tls.rs`'s.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::admission::{self, Ticket};
use super::codec::Codec;
use super::guard::Refusal;
use super::io::{read_until, write_all_by};
use super::state::Shard;
use super::{conn, echo, http};
use crate::config::ListenerConfig;
use crate::limits;
use crate::proto::core::{ConnInfo, Origin};
use crate::proto::frame::{Framing, Transport};
use crate::proto::wire::{rawsocket, websocket};

/// Deadline of a handshake's success reply.
fn reply_deadline() -> Duration {
    Duration::from_millis(limits::HANDSHAKE_REPLY_WRITE_DEADLINE_MS)
}

/// Write a refusal (bounded by its own short deadline) and close.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, reply: &[u8]) {
    let _ = write_all_by(stream, reply, Duration::from_millis(limits::REFUSAL_WRITE_DEADLINE_MS)).await;
    let _ = stream.close().await;
}

/// Answer a connection refused at accept (`admission::refuse`), within
/// `limits::REFUSAL_READ_MS`: a RawSocket handshake gets error 4 ("maximum connection count
/// reached"), an HTTP request (`tcp` only) a 503; then the connection is closed. Anything
/// slower or stranger is closed without an answer.
pub(crate) async fn answer_refusal<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, refusal: Refusal, tcp: bool) {
    let deadline = Instant::now() + Duration::from_millis(limits::REFUSAL_READ_MS);
    let mut buf = BytesMut::with_capacity(limits::READ_CHUNK_MIN_BYTES);
    if !read_until(&mut stream, &mut buf, deadline, |b| !b.is_empty()).await {
        return;
    }
    if buf[0] == rawsocket::MAGIC {
        if read_until(&mut stream, &mut buf, deadline, |b| b.len() >= rawsocket::HANDSHAKE_BYTES).await
            && let Some(reply) = rawsocket::HandshakeError::MaxConnections.reply()
        {
            refuse(&mut stream, &reply).await;
        }
    } else if tcp && http::read_request_head(&mut stream, &mut buf, deadline).await.is_some() {
        let text = match refusal {
            Refusal::MaxConnectionsPerIp => "too many connections from your address; try again later\n",
            _ => "shardbar is at its connection limit; try again later\n",
        };
        let headers = [("Content-Type", "text/plain"), ("Connection", "close"), ("Retry-After", "1")];
        refuse(&mut stream, &websocket::http_response(503, &headers, text.as_bytes())).await;
    }
}

/// Plaintext on a listener that serves TLS only: an HTTP request (on a TCP listener) gets a
/// short 400 saying so, read and answered within the connection's handshake deadline;
/// anything else is closed at once.
pub(crate) async fn tls_required<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    mut buf: BytesMut,
    tcp: bool,
    deadline: Instant,
) {
    if tcp && buf[0] != rawsocket::MAGIC && http::read_request_head(&mut stream, &mut buf, deadline).await.is_some() {
        let headers = [("Content-Type", "text/plain"), ("Connection", "close")];
        let text = "TLS required: this listener serves https:// and wss:// only\n";
        refuse(&mut stream, &websocket::http_response(400, &headers, text.as_bytes())).await;
    }
}

/// The RawSocket handshake (`buf` holds at least the magic byte), then the session.
pub(crate) async fn rawsocket<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    shard: Rc<Shard>,
    mut stream: S,
    mut buf: BytesMut,
    listener: &ListenerConfig,
    origin: Origin,
    deadline: Instant,
    ticket: Ticket,
) {
    if !read_until(&mut stream, &mut buf, deadline, |b| b.len() >= rawsocket::HANDSHAKE_BYTES).await {
        return;
    }
    let request = [buf[0], buf[1], buf[2], buf[3]];
    let _ = buf.split_to(rawsocket::HANDSHAKE_BYTES);
    let max_in = shard.config.router.message_size_max;
    let our_exp = rawsocket::len_exp_for(max_in);
    let result = if shard.core.borrow().connection_count() >= limits::SHARD_SESSIONS_MAX {
        admission::note_refused(&shard, Refusal::ShardSessions, None);
        Err(rawsocket::HandshakeError::MaxConnections)
    } else {
        rawsocket::accept(request, &listener.serializers, 0)
    };
    let hs = match result {
        Ok(hs) => hs,
        Err(e) => {
            tracing::debug!(shard = shard.id, error = %e, "rawsocket handshake refused");
            match e.reply() {
                Some(reply) => refuse(&mut stream, &reply).await,
                None => {
                    let _ = stream.close().await;
                }
            }
            return;
        }
    };
    let reply = rawsocket::success_reply(hs.serializer, our_exp);
    if write_all_by(&mut stream, &reply, reply_deadline()).await.is_err() {
        return;
    }
    let framing = Framing { transport: Transport::RawSocket, serializer: hs.serializer };
    let codec = Codec::Raw(rawsocket::Decoder::new(max_in));
    let info = ConnInfo { framing, max_out_message: hs.max_len_bytes(), origin };
    conn::spawn_session(shard, stream, buf, codec, info, ticket);
}

/// HTTP on the WAMP port: a WebSocket upgrade, or a plain request answered and closed.
pub(crate) async fn http<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    shard: Rc<Shard>,
    mut stream: S,
    mut buf: BytesMut,
    listener: &ListenerConfig,
    origin: Origin,
    deadline: Instant,
    ticket: Ticket,
) {
    let Some(request) = http::read_request_head(&mut stream, &mut buf, deadline).await else { return };
    if request.is_websocket_upgrade() {
        websocket_upgrade(shard, stream, buf, listener, origin, &request, ticket).await;
    } else {
        http::respond(&shard, stream, &request, true).await;
    }
}

/// Accept or refuse the upgrade; once accepted, a WAMP session (or an echo in testee mode).
async fn websocket_upgrade<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    shard: Rc<Shard>,
    mut stream: S,
    buf: BytesMut,
    listener: &ListenerConfig,
    origin: Origin,
    request: &websocket::Request,
    mut ticket: Ticket,
) {
    let opts =
        websocket::AcceptOptions { serializers: &listener.serializers, allow_no_protocol: listener.websocket_testee };
    let accepted = match websocket::accept(request, &opts) {
        Ok(accepted) => accepted,
        Err(rejection) => {
            tracing::debug!(shard = shard.id, error = %rejection, "websocket upgrade refused");
            refuse(&mut stream, &rejection.response()).await;
            return;
        }
    };
    if write_all_by(&mut stream, &accepted.response(), reply_deadline()).await.is_err() {
        return;
    }
    let max_in = shard.config.router.message_size_max;
    let decoder = websocket::Decoder::new(websocket::Role::Server, max_in);
    match (listener.websocket_testee, accepted.serializer) {
        (true, _) => {
            // An echo has no session to wait for: it is past its handshake now.
            ticket.session_established();
            echo::echo(stream, buf, decoder).await;
        }
        (false, Some(ser)) => {
            let framing = Framing { transport: Transport::WebSocket, serializer: ser };
            let info = ConnInfo { framing, max_out_message: usize::MAX, origin };
            conn::spawn_session(shard, stream, buf, Codec::Ws(decoder), info, ticket);
        }
        (false, None) => {}
    }
}
