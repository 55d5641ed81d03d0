//! One task per connection: transport detection, handshakes, and the read/write loop.
//!
//! The first byte decides the transport: `0x7F` can never start an HTTP request, so it
//! means RawSocket; anything else is HTTP (a WebSocket upgrade, `/health`, `/metrics`).
//!
//! The loop, per turn: decode every complete frame in the read buffer and hand each WAMP
//! message to the core; write control frames and the connection's queued frames as one
//! coalesced write (capped at `limits::WRITE_COALESCE_MAX_BYTES`); then wait for the first
//! of: readable socket, a wake-up (frames queued or close requested), or a timer (liveness
//! ping, ping timeout, HELLO deadline). A write that makes no progress for the write
//! deadline makes the connection a slow consumer.

use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future::or;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{ConnHandle, Shard};
use crate::config::{ListenerConfig, RawSocketPing};
use crate::limits;
use crate::proto::core::ConnInfo;
use crate::proto::frame::{Framing, Transport};
use crate::proto::wire::{rawsocket, websocket};

/// Counts the connection in `open_conns` for as long as the task runs.
struct OpenGuard(Rc<Shard>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open_conns.set(self.0.open_conns.get().saturating_sub(1));
    }
}

/// Serve one accepted stream. `tcp`: the stream may carry HTTP/WebSocket (Unix sockets
/// carry RawSocket only).
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    shard: Rc<Shard>,
    mut stream: S,
    listener: Rc<ListenerConfig>,
    tcp: bool,
) {
    shard.open_conns.set(shard.open_conns.get() + 1);
    let _guard = OpenGuard(shard.clone());
    if shard.shutting_down.get() {
        return;
    }
    let handshake = Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS);
    let deadline = Instant::now() + handshake;
    let mut buf = BytesMut::with_capacity(limits::READ_CHUNK_MIN_BYTES);
    if !read_until(&mut stream, &mut buf, deadline, |b| !b.is_empty()).await {
        return;
    }
    if buf[0] == rawsocket::MAGIC {
        rawsocket_handshake(shard, stream, buf, &listener, deadline).await;
    } else if tcp {
        http(shard, stream, buf, &listener, deadline).await;
    }
}

/// Read until `done(buf)` or the deadline; false on EOF, error or timeout.
async fn read_until<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    deadline: Instant,
    done: impl Fn(&[u8]) -> bool,
) -> bool {
    while !done(buf) {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let start = prepare_read(buf, limits::READ_CHUNK_MIN_BYTES);
        let r = or(async { Some(stream.read(&mut buf[start..]).await) }, async {
            glommio::timer::sleep(deadline - now).await;
            None
        })
        .await;
        let n = match r {
            Some(Ok(n)) if n > 0 => n,
            _ => {
                buf.truncate(start);
                return false;
            }
        };
        buf.truncate(start + n);
    }
    true
}

/// Make room for a read of up to about `chunk` bytes; returns where the new bytes start.
/// The caller truncates to what was actually read.
fn prepare_read(buf: &mut BytesMut, chunk: usize) -> usize {
    let mut spare_init = false;
    prepare_read_tracked(buf, chunk, &mut spare_init)
}

/// [`prepare_read`] for a buffer read many times: `spare_init` remembers that the spare
/// capacity is already initialised, so it is zeroed once per allocation instead of on every
/// wake-up (zeroing 64 KiB per wake was a quarter of the router's CPU in a 1→1000 fan-out).
fn prepare_read_tracked(buf: &mut BytesMut, chunk: usize, spare_init: &mut bool) -> usize {
    if buf.capacity() - buf.len() < chunk / 2 {
        buf.reserve(chunk);
        // `reserve` may have moved or grown the allocation.
        *spare_init = false;
    }
    let start = buf.len();
    let end = buf.capacity();
    if *spare_init {
        // SAFETY: `[start, end)` lies in the allocation an earlier `resize` zero-filled up to
        // its capacity (no `reserve` since, or `spare_init` would be false). Since then the
        // buffer was only read into, truncated, and split or advanced at the front by the
        // decoders; none of these de-initialises bytes, so every byte up to `end` is
        // initialised.
        unsafe { buf.set_len(end) };
    } else {
        buf.resize(end, 0);
        *spare_init = true;
    }
    start
}

/// The next read size after a read of `n` bytes into `spare` bytes of room: double while
/// reads fill the buffer, halve after a small read (never outside the configured bounds).
fn next_chunk(chunk: usize, n: usize, spare: usize) -> usize {
    if n == spare {
        (chunk * 2).min(limits::READ_CHUNK_BYTES)
    } else if n < chunk / 4 {
        (chunk / 2).max(limits::READ_CHUNK_MIN_BYTES)
    } else {
        chunk
    }
}

async fn write_all_by<S: AsyncWrite + Unpin>(stream: &mut S, data: &[u8], deadline: Duration) -> io::Result<()> {
    let mut pos = 0;
    while pos < data.len() {
        let w = or(async { Some(stream.write(&data[pos..]).await) }, async {
            glommio::timer::sleep(deadline).await;
            None
        })
        .await;
        match w {
            Some(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Some(Ok(n)) => pos += n,
            Some(Err(e)) => return Err(e),
            None => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
    stream.flush().await
}

async fn rawsocket_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    shard: Rc<Shard>,
    mut stream: S,
    mut buf: BytesMut,
    listener: &ListenerConfig,
    deadline: Instant,
) {
    if !read_until(&mut stream, &mut buf, deadline, |b| b.len() >= rawsocket::HANDSHAKE_BYTES).await {
        return;
    }
    let request = [buf[0], buf[1], buf[2], buf[3]];
    let _ = buf.split_to(rawsocket::HANDSHAKE_BYTES);
    let max_in = shard.config.router.message_size_max;
    let our_exp = rawsocket::len_exp_for(max_in);
    let result = if shard.core.borrow().connection_count() >= limits::SHARD_SESSIONS_MAX {
        Err(rawsocket::HandshakeError::MaxConnections)
    } else {
        rawsocket::accept(request, &listener.serializers, 0)
    };
    let hs = match result {
        Ok(hs) => hs,
        Err(e) => {
            tracing::debug!(shard = shard.id, error = %e, "rawsocket handshake refused");
            if let Some(reply) = e.reply() {
                let _ = write_all_by(&mut stream, &reply, Duration::from_secs(1)).await;
            }
            let _ = stream.close().await;
            return;
        }
    };
    let reply = rawsocket::success_reply(hs.serializer, our_exp);
    if write_all_by(&mut stream, &reply, Duration::from_secs(5)).await.is_err() {
        return;
    }
    let framing = Framing { transport: Transport::RawSocket, serializer: hs.serializer };
    let codec = Codec::Raw(rawsocket::Decoder::new(max_in));
    session(shard, stream, buf, codec, framing, hs.max_len_bytes()).await;
}

async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    shard: Rc<Shard>,
    mut stream: S,
    mut buf: BytesMut,
    listener: &ListenerConfig,
    deadline: Instant,
) {
    let Some(request) = read_request_head(&mut stream, &mut buf, deadline).await else { return };
    if request.is_websocket_upgrade() {
        let opts = websocket::AcceptOptions {
            serializers: &listener.serializers,
            allow_no_protocol: listener.websocket_testee,
        };
        match websocket::accept(&request, &opts) {
            Ok(accepted) => {
                if write_all_by(&mut stream, &accepted.response(), Duration::from_secs(5)).await.is_err() {
                    return;
                }
                let max_in = shard.config.router.message_size_max;
                let decoder = websocket::Decoder::new(websocket::Role::Server, max_in);
                match (listener.websocket_testee, accepted.serializer) {
                    (true, _) => echo(stream, buf, decoder).await,
                    (false, Some(ser)) => {
                        let framing = Framing { transport: Transport::WebSocket, serializer: ser };
                        session(shard, stream, buf, Codec::Ws(decoder), framing, usize::MAX).await;
                    }
                    (false, None) => {}
                }
            }
            Err(rejection) => {
                tracing::debug!(shard = shard.id, error = %rejection, "websocket upgrade refused");
                let _ = write_all_by(&mut stream, &rejection.response(), Duration::from_secs(1)).await;
                let _ = stream.close().await;
            }
        }
        return;
    }
    let response = plain_http(&shard, &request, true).await;
    let _ = write_all_by(&mut stream, &response, Duration::from_secs(5)).await;
    let _ = stream.close().await;
}

/// Read an HTTP request head (bounded by the deadline and `limits::HTTP_HEAD_MAX_BYTES`)
/// and consume it from `buf`; bytes after it (early WebSocket frames) stay. A malformed or
/// oversized head is answered with its HTTP error and the connection closed (None).
async fn read_request_head<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Option<websocket::Request> {
    loop {
        match websocket::parse_request(buf) {
            Ok(Some((request, consumed))) => {
                let _ = buf.split_to(consumed);
                return Some(request);
            }
            Ok(None) => {
                // Parse again only once a line ended (or the head is over its limit, for
                // the 431): a client trickling bytes would otherwise cost a re-parse each.
                let len = buf.len();
                let more = |b: &[u8]| {
                    b.get(len..).is_some_and(|new| new.contains(&b'\n')) || b.len() > limits::HTTP_HEAD_MAX_BYTES
                };
                if !read_until(stream, buf, deadline, more).await {
                    return None;
                }
            }
            Err(e) => {
                let _ = write_all_by(stream, &e.response(), Duration::from_secs(1)).await;
                let _ = stream.close().await;
                return None;
            }
        }
    }
}

/// Answer `/health`, `/metrics`, and anything else that is not a WebSocket upgrade.
/// `wamp_listener`: the request came to the WAMP port (then other paths get 426).
async fn plain_http(shard: &Rc<Shard>, request: &websocket::Request, wamp_listener: bool) -> Vec<u8> {
    match (request.method.as_str(), request.path_without_query()) {
        ("GET", "/health") => {
            let ready = shard.serving.load(Ordering::SeqCst) >= shard.config.shards && !shard.shutting_down.get();
            if ready {
                websocket::http_response(200, &[("Content-Type", "text/plain")], b"ok\n")
            } else {
                websocket::http_response(503, &[("Content-Type", "text/plain")], b"starting or stopping\n")
            }
        }
        ("GET", "/metrics") => match gather_metrics(shard).await {
            Some(text) => {
                websocket::http_response(200, &[("Content-Type", "text/plain; version=0.0.4")], text.as_bytes())
            }
            None => websocket::http_response(503, &[("Content-Type", "text/plain")], b"a shard did not answer in time\n"),
        },
        _ if wamp_listener => websocket::http_response(
            426,
            &[("Content-Type", "text/plain"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            b"shardbar is a WAMP router: connect with a WebSocket (wamp.2.json, wamp.2.msgpack, wamp.2.cbor) or RawSocket\n",
        ),
        _ => websocket::http_response(404, &[("Content-Type", "text/plain")], b"try /metrics or /health\n"),
    }
}

/// Ask every shard for its counters over the mesh and render them (bounded wait).
async fn gather_metrics(shard: &Rc<Shard>) -> Option<String> {
    let token = shard.core.borrow_mut().request_stats(Instant::now());
    shard.request_flush();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(snaps) = shard.core.borrow_mut().take_stats(token) {
            return Some(crate::proto::stats::render_prometheus(&snaps));
        }
        if Instant::now() >= deadline {
            shard.core.borrow_mut().cancel_stats(token);
            return None;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

/// A connection to the separate metrics listener: HTTP only.
pub(crate) async fn serve_http_only<S: AsyncRead + AsyncWrite + Unpin>(shard: Rc<Shard>, mut stream: S) {
    let deadline = Instant::now() + Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS);
    let mut buf = BytesMut::with_capacity(4096);
    let Some(request) = read_request_head(&mut stream, &mut buf, deadline).await else { return };
    let response = plain_http(&shard, &request, false).await;
    let _ = write_all_by(&mut stream, &response, Duration::from_secs(5)).await;
    let _ = stream.close().await;
}

/// Transport decoder of a WAMP connection.
enum Codec {
    Ws(websocket::Decoder),
    Raw(rawsocket::Decoder),
}

enum Decoded {
    Message(Bytes),
    Ping(Bytes),
    Pong,
    /// The peer closed (WebSocket Close; carries the code to echo).
    Close(Option<u16>),
}

/// A transport error: the WebSocket close code to send, and why.
struct TransportError {
    ws_code: Option<u16>,
    reason: String,
}

impl Codec {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, TransportError> {
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

    fn write_pong(&self, payload: &[u8], out: &mut Vec<u8>) {
        match self {
            Codec::Ws(_) => websocket::write_frame(websocket::OpCode::Pong, payload, out),
            Codec::Raw(_) => rawsocket::write_frame(rawsocket::FrameKind::Pong, payload, out),
        }
    }

    fn write_ping(&self, payload: &[u8], out: &mut Vec<u8>) {
        match self {
            Codec::Ws(_) => websocket::write_frame(websocket::OpCode::Ping, payload, out),
            Codec::Raw(_) => rawsocket::write_frame(rawsocket::FrameKind::Ping, payload, out),
        }
    }

    fn write_close(&self, code: u16, reason: &str, out: &mut Vec<u8>) {
        if let Codec::Ws(_) = self {
            websocket::write_close(code, reason, out);
        }
    }
}

enum Wake {
    Read(io::Result<usize>),
    Notified,
    Timer,
    GateOpen,
}

/// The WAMP connection loop (WebSocket or RawSocket).
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    shard: Rc<Shard>,
    mut stream: S,
    mut buf: BytesMut,
    mut codec: Codec,
    framing: Framing,
    max_out_message: usize,
) {
    let opened = Instant::now();
    let conn = shard.core.borrow_mut().handle_open(ConnInfo { framing, max_out_message }, opened);
    let handle = Rc::new(ConnHandle { notify: Default::default(), closing: Default::default() });
    shard.conns.borrow_mut().insert(conn, handle.clone());
    tracing::debug!(
        shard = shard.id,
        conn,
        transport = framing.transport.name(),
        serializer = framing.serializer.name(),
        "connection open"
    );

    let limits_cfg = shard.config.limits.clone();
    // Application-level pings: always on WebSocket, where RFC 6455 obliges every client to
    // answer. RawSocket PING support is optional in practice (Autobahn|Python's asyncio
    // transport drops the connection on a PING), so by default (`rawsocket_ping = "auto"`)
    // a RawSocket peer is pinged only once it has sent a PING itself; TCP keepalive, set at
    // accept (`keepalive_for`), reaps half-open connections either way.
    let mut pings_on = match codec {
        Codec::Ws(_) => true,
        Codec::Raw(_) => limits_cfg.rawsocket_ping == RawSocketPing::Always,
    };
    let peer_learns_pings = matches!(codec, Codec::Raw(_)) && limits_cfg.rawsocket_ping == RawSocketPing::Auto;
    let mut wbuf: Vec<u8> = Vec::new();
    let mut read_chunk = limits::READ_CHUNK_MIN_BYTES;
    let mut spare_init = false;
    let mut control: Vec<u8> = Vec::new();
    let mut last_rx = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let mut ever_established = false;
    let mut peer_done = false;
    let mut end_reason: &'static str = "peer closed";
    let mut ws_close: Option<(u16, String)> = None;
    let mut write_broken = false;

    loop {
        // 1. Hand every complete message to the core.
        let mut handled = 0usize;
        while handled < limits::MESSAGES_PER_READ_MAX && !peer_done {
            match codec.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(Decoded::Message(data))) => {
                    shard.core.borrow_mut().handle_message(conn, data, Instant::now());
                    handled += 1;
                }
                Ok(Some(Decoded::Ping(p))) => {
                    codec.write_pong(&p, &mut control);
                    pings_on |= peer_learns_pings;
                }
                Ok(Some(Decoded::Pong)) => ping_sent = None,
                Ok(Some(Decoded::Close(code))) => {
                    // Echo the close (RFC 6455 §5.5.1) and end.
                    ws_close = Some((code.unwrap_or(1000), String::new()));
                    peer_done = true;
                    end_reason = "peer closed";
                }
                Err(e) => {
                    tracing::debug!(shard = shard.id, conn, reason = %e.reason, "transport error");
                    if let Some(code) = e.ws_code {
                        ws_close = Some((code, e.reason.clone()));
                    }
                    peer_done = true;
                    end_reason = "transport error";
                }
            }
        }
        if handled > 0 {
            shard.request_flush();
            if !ever_established {
                ever_established = shard.core.borrow().session_of(conn).is_some();
            }
        }
        let closing = handle.closing.get();
        if peer_done || closing.is_some() {
            if let Some(reason) = closing {
                end_reason = reason;
                if ws_close.is_none() {
                    let code = if reason == "shutdown" { 1001 } else { 1000 };
                    ws_close = Some((code, reason.to_owned()));
                }
            }
            break;
        }

        // 2. Write control frames and queued frames, coalesced.
        wbuf.clear();
        wbuf.append(&mut control);
        let more_queued = {
            let mut core = shard.core.borrow_mut();
            match core.out_queue(conn) {
                Some(q) => {
                    // One allocation of the right size, not a chain of doublings (the
                    // buffer is released between bursts, so this runs once per burst).
                    wbuf.reserve(q.bytes().min(limits::WRITE_COALESCE_MAX_BYTES));
                    q.drain_into(&mut wbuf, limits::WRITE_COALESCE_MAX_BYTES);
                    !q.is_empty()
                }
                None => false,
            }
        };
        if !wbuf.is_empty() {
            match write_all_by(&mut stream, &wbuf, limits_cfg.write_deadline).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    shard.core.borrow_mut().handle_write_stalled(conn, Instant::now());
                    shard.request_flush();
                    end_reason = "write stalled";
                    // The stalled write may have sent part of a frame: anything written
                    // after it would corrupt the framing, so the connection is just closed.
                    write_broken = true;
                    break;
                }
                Err(_) => {
                    end_reason = "write failed";
                    peer_done = true;
                    break;
                }
            }
        }
        // More to write, or complete frames left in the buffer (the per-turn message cap
        // was hit): give other tasks a turn, then go on without waiting for the socket.
        if more_queued || handled >= limits::MESSAGES_PER_READ_MAX {
            glommio::yield_if_needed().await;
            // A connection that always has more to write (a busy subscriber that also
            // publishes) must still be read: take what the socket has, without waiting.
            if more_queued && !shard.read_gate.is_closed() {
                let start = prepare_read_tracked(&mut buf, read_chunk, &mut spare_init);
                match futures_lite::future::poll_once(stream.read(&mut buf[start..])).await {
                    Some(Ok(0)) | Some(Err(_)) => {
                        buf.truncate(start);
                        peer_done = true;
                        end_reason = "peer closed";
                        break;
                    }
                    Some(Ok(n)) => {
                        buf.truncate(start + n);
                        last_rx = Instant::now();
                        ping_sent = None;
                    }
                    None => buf.truncate(start),
                }
            }
            continue;
        }

        // 3. Wait for input, a wake-up or a timer.
        let now = Instant::now();
        let mut timer_at = now + Duration::from_secs(3600);
        if let Some(interval) = limits_cfg.ping_interval.filter(|_| pings_on) {
            timer_at = timer_at.min(match ping_sent {
                Some(sent) => sent + limits_cfg.ping_timeout,
                None => last_rx + interval,
            });
        }
        if !ever_established {
            timer_at = timer_at.min(opened + Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS));
        }
        // Going quiet: give back buffers a burst grew (idle sessions stay cheap).
        if wbuf.capacity() > limits::WRITE_BUF_KEEP_BYTES {
            wbuf = Vec::new();
        }
        if buf.is_empty() && buf.capacity() > 2 * read_chunk {
            buf = BytesMut::new();
            spare_init = false;
        }
        let paused = shard.read_gate.is_closed();
        let start = prepare_read_tracked(&mut buf, read_chunk, &mut spare_init);
        let spare = buf.len() - start;
        let wake = {
            let read = async {
                if paused {
                    shard.read_gate.open().await;
                    Wake::GateOpen
                } else {
                    Wake::Read(stream.read(&mut buf[start..]).await)
                }
            };
            let notified = async {
                handle.notify.notified().await;
                Wake::Notified
            };
            let timer = async {
                glommio::timer::sleep(timer_at.saturating_duration_since(now)).await;
                Wake::Timer
            };
            or(read, or(notified, timer)).await
        };
        match wake {
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => {
                buf.truncate(start);
                peer_done = true;
                end_reason = "peer closed";
                break;
            }
            Wake::Read(Ok(n)) => {
                buf.truncate(start + n);
                read_chunk = next_chunk(read_chunk, n, spare);
                last_rx = Instant::now();
                ping_sent = None;
            }
            Wake::Notified | Wake::GateOpen => buf.truncate(start),
            Wake::Timer => {
                buf.truncate(start);
                let now = Instant::now();
                if !ever_established && now >= opened + Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS) {
                    ever_established = shard.core.borrow().session_of(conn).is_some();
                    if !ever_established {
                        end_reason = "no HELLO in time";
                        ws_close = Some((1000, "no HELLO in time".into()));
                        break;
                    }
                }
                if let Some(interval) = limits_cfg.ping_interval.filter(|_| pings_on) {
                    match ping_sent {
                        Some(sent) if now >= sent + limits_cfg.ping_timeout => {
                            tracing::info!(shard = shard.id, conn, "liveness ping timed out; closing");
                            end_reason = "ping timeout";
                            peer_done = true;
                            break;
                        }
                        None if now >= last_rx + interval => {
                            codec.write_ping(
                                &(now.duration_since(opened).as_micros() as u64).to_be_bytes(),
                                &mut control,
                            );
                            ping_sent = Some(now);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    // Closing. First end the session and wait (bounded) until its registrations are
    // released at their owners: a peer that sees the connection end and registers the same
    // procedure again must not get `procedure_already_exists`.
    shard.core.borrow_mut().handle_closing(conn, Instant::now());
    shard.request_flush();
    let release_deadline = Instant::now() + Duration::from_millis(limits::SHUTDOWN_GRACE_MS);
    while shard.core.borrow().teardown_pending(conn) && Instant::now() < release_deadline {
        glommio::timer::sleep(Duration::from_micros(200)).await;
    }
    // Then flush what is queued (bounded), say goodbye at the transport level, close.
    if !write_broken && (!peer_done || ws_close.is_some()) {
        wbuf.clear();
        wbuf.append(&mut control);
        if let Some(q) = shard.core.borrow_mut().out_queue(conn) {
            q.drain_into(&mut wbuf, usize::MAX);
        }
        if let Some((code, reason)) = &ws_close {
            codec.write_close(*code, reason, &mut wbuf);
        }
        // One deadline for the whole flush (write_all_by's is per write: a peer reading a
        // little at a time could otherwise hold the task and the buffer indefinitely).
        let grace = Duration::from_millis(limits::SHUTDOWN_GRACE_MS);
        let _ = or(async { write_all_by(&mut stream, &wbuf, grace).await }, async {
            glommio::timer::sleep(grace).await;
            Ok(())
        })
        .await;
    }
    let _ = or(async { stream.close().await }, async {
        glommio::timer::sleep(Duration::from_millis(200)).await;
        Ok(())
    })
    .await;
    shard.conns.borrow_mut().remove(&conn);
    shard.core.borrow_mut().handle_close(conn, Instant::now());
    shard.request_flush();
    tracing::debug!(shard = shard.id, conn, reason = end_reason, "connection closed");
}

/// WebSocket testee mode: echo every message (for the Autobahn testsuite), no WAMP.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, mut buf: BytesMut, mut decoder: websocket::Decoder) {
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
            if write_all_by(&mut stream, &out, Duration::from_secs(30)).await.is_err() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_chunk_grows_while_full_and_shrinks_when_small() {
        let (min, max) = (limits::READ_CHUNK_MIN_BYTES, limits::READ_CHUNK_BYTES);
        let mut chunk = min;
        // Reads that fill the room double the chunk up to the maximum.
        for _ in 0..10 {
            chunk = next_chunk(chunk, chunk, chunk);
        }
        assert_eq!(chunk, max);
        // Small reads halve it back down to the minimum.
        for _ in 0..10 {
            chunk = next_chunk(chunk, 10, chunk);
        }
        assert_eq!(chunk, min);
        // A read of a middling size keeps it.
        assert_eq!(next_chunk(16 * 1024, 8 * 1024, 16 * 1024), 16 * 1024);
    }

    #[test]
    fn tracked_prepare_reuses_initialised_spare() {
        // Goal: the second prepare after a read that filled nothing must not re-zero, and the
        // bytes it exposes are the zeros (or read data) already there.
        let mut buf = BytesMut::new();
        let mut init = false;
        let start = prepare_read_tracked(&mut buf, 4096, &mut init);
        assert!(init);
        buf[start..start + 3].copy_from_slice(b"abc");
        buf.truncate(start + 3);
        let _ = buf.split_to(2); // a decoder consumed a frame
        let start = prepare_read_tracked(&mut buf, 4096, &mut init);
        assert_eq!(start, 1);
        assert_eq!(&buf[..1], b"c");
        assert!(buf[1..].iter().all(|&b| b == 0), "spare still zeroed");
        // Forcing a reallocation clears the flag and zero-fills again.
        buf.truncate(1);
        let start = prepare_read_tracked(&mut buf, 1 << 20, &mut init);
        assert!(buf.len() - start >= 1 << 19);
        assert!(buf[start..].iter().all(|&b| b == 0));
    }

    #[test]
    fn prepare_read_reserves_about_one_chunk() {
        let mut buf = BytesMut::new();
        let start = prepare_read(&mut buf, 4096);
        assert_eq!(start, 0);
        assert!(buf.len() >= 4096 && buf.len() < 64 * 1024, "{}", buf.len());
        buf.truncate(10);
        let start = prepare_read(&mut buf, 4096);
        assert_eq!(start, 10);
    }
}
