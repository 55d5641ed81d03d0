//! The WAMP connection loop (WebSocket or RawSocket): one task per connection, from the end
//! of its transport handshake to its close.
//!
//! The loop, per turn: decode every complete frame in the read buffer and hand each WAMP
//! message to the core; write control frames and the connection's queued frames as one
//! coalesced write (capped at `limits::WRITE_COALESCE_MAX_BYTES`); then wait for the first
//! of: readable socket, or a wake-up (frames queued, a ping or a close requested by the
//! core). Deadlines (HELLO, liveness pings, ping timeout) are the core's: its timers decide,
//! and it asks for a ping or a close through `ConnHandle`. A write that makes no progress
//! for the write deadline makes the connection a slow consumer.
//!
//! Budgets the runtime keeps itself: until its session is established the connection may
//! send at most `limits.pre_session_bytes_max` (then it is closed; its admission ticket holds
//! a place among the shard's handshakes until then), and a PING is answered only if its
//! payload is small (`limits::PING_ANSWER_PAYLOAD_MAX_BYTES`) and the PONG fits the
//! connection's control and pending-bytes budgets. Both are counted (`guard.rs`).
//!
//! The close, in order: end the session and wait (bounded) until its registrations are
//! released; flush what is queued and the WebSocket close frame (bounded); close the socket;
//! tell the core the connection is gone.
//!
//! This file does a connection's I/O only: WAMP is the core's, framing is `codec.rs`'s.

use std::io;
use std::ops::ControlFlow::{self, Break, Continue};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future::or;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::admission::Ticket;
use super::codec::{Codec, Decoded};
use super::guard::{LogKind, Unanswered};
use super::io::{next_chunk, prepare_read_tracked, write_all_by};
use super::state::{ConnHandle, Shard};
use crate::limits;
use crate::proto::core::ConnInfo;
use crate::proto::session::ConnId;
use crate::proto::wire::websocket;

/// Serve a WAMP connection whose transport handshake is done, in a task of its own; `buf`
/// holds the bytes read past the handshake. The handshake's task ends here: its futures
/// (several KiB) are not kept for the connection's life, which holds only `Conn` and its
/// loop's state.
pub(crate) fn spawn_session<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    shard: Rc<Shard>,
    stream: S,
    buf: BytesMut,
    codec: Codec,
    info: ConnInfo,
    ticket: Ticket,
) {
    let mut conn = Conn::open(shard, stream, buf, codec, info, ticket);
    glommio::spawn_local(async move {
        conn.run().await;
        // Boxed: the close's timers and flush would otherwise be part of every idle
        // connection's task.
        Box::pin(conn.close()).await;
    })
    .detach();
}

/// How the connection ends: decided by the loop, carried out by `Conn::close`.
struct Ending {
    /// Why, for the log line.
    reason: &'static str,
    /// The peer closed or broke the transport: only a WebSocket close frame (if one is
    /// due) is still written to it.
    peer_done: bool,
    /// The WebSocket close frame to send: code and reason.
    ws_close: Option<(u16, String)>,
    /// A write timed out part-way through a frame: nothing more may be written.
    write_broken: bool,
}

impl Ending {
    fn peer_gone(&mut self, reason: &'static str) {
        self.peer_done = true;
        self.reason = reason;
    }

    /// Whether the close still writes (queued frames, then the close frame).
    fn flushes(&self) -> bool {
        !self.write_broken && (!self.peer_done || self.ws_close.is_some())
    }
}

/// What ended a wait.
enum Wake {
    Read(io::Result<usize>),
    Notified,
    GateOpen,
}

/// One WAMP connection, owned by its task.
struct Conn<S> {
    shard: Rc<Shard>,
    id: ConnId,
    handle: Rc<ConnHandle>,
    stream: S,
    codec: Codec,
    /// Read buffer, the size of the next read into it, and whether its spare capacity is
    /// initialised (see `io::prepare_read_tracked`).
    buf: BytesMut,
    read_chunk: usize,
    spare_init: bool,
    /// Transport control frames (pongs, pings) to write ahead of the queued frames; at most
    /// `limits::CONTROL_PENDING_MAX_BYTES` (see `answer_ping`).
    control: Vec<u8>,
    /// The largest message the peer accepts (its RawSocket limit; unbounded on WebSocket).
    max_out_message: usize,
    /// The connection's admitted places; in its handshake until the session is established.
    ticket: Ticket,
    /// Bytes received while `ticket` is in its handshake (`limits.pre_session_bytes_max`).
    pre_session_bytes: usize,
    /// One turn's coalesced write.
    wbuf: Vec<u8>,
    write_deadline: Duration,
    ending: Ending,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Open the connection in the core and register its handle with the shard.
    fn open(shard: Rc<Shard>, stream: S, buf: BytesMut, codec: Codec, info: ConnInfo, ticket: Ticket) -> Self {
        let (framing, max_out_message) = (info.framing, info.max_out_message);
        let opened = Instant::now();
        let id = shard.core.borrow_mut().handle_open(info, opened);
        let handle = Rc::new(ConnHandle::new());
        shard.conns.borrow_mut().insert(id, handle.clone());
        tracing::debug!(
            shard = shard.id,
            conn = id,
            transport = framing.transport.name(),
            serializer = framing.serializer.name(),
            "connection open"
        );
        // The core armed this connection's deadlines: let the timer task know.
        shard.request_flush();
        let write_deadline = shard.config.limits.write_deadline;
        let buf_len = buf.len();
        Conn {
            shard,
            id,
            handle,
            stream,
            codec,
            buf,
            read_chunk: limits::READ_CHUNK_MIN_BYTES,
            spare_init: false,
            control: Vec::new(),
            max_out_message,
            ticket,
            pre_session_bytes: buf_len,
            wbuf: Vec::new(),
            write_deadline,
            ending: Ending { reason: "peer closed", peer_done: false, ws_close: None, write_broken: false },
        }
    }

    /// The loop. Returns when the connection must close; `self.ending` says how.
    async fn run(&mut self) {
        loop {
            // 1. Hand every complete message to the core.
            let handled = self.handle_input();
            if self.must_stop() {
                return;
            }
            // 2. Write control frames and queued frames, coalesced.
            let more_queued = self.fill_write_batch();
            if self.write_batch().await.is_break() {
                return;
            }
            // More to write, or complete frames left in the buffer (the per-turn message cap
            // was hit): give other tasks a turn, then go on without waiting for the socket.
            if more_queued || handled >= limits::MESSAGES_PER_READ_MAX {
                glommio::yield_if_needed().await;
                if more_queued && self.read_ready().await.is_break() {
                    return;
                }
                continue;
            }
            // 3. Wait for input, a wake-up or a timer.
            if self.wait().await.is_break() {
                return;
            }
        }
    }

    /// Decode the read buffer: WAMP messages go to the core (at most
    /// `limits::MESSAGES_PER_READ_MAX` per turn), pings are answered, pongs and closes noted.
    /// Returns how many messages the core got.
    fn handle_input(&mut self) -> usize {
        if self.check_pre_session() {
            return 0;
        }
        let mut handled = 0usize;
        while handled < limits::MESSAGES_PER_READ_MAX && !self.ending.peer_done {
            match self.codec.decode(&mut self.buf) {
                Ok(None) => break,
                Ok(Some(Decoded::Message(data))) => {
                    self.shard.core.borrow_mut().handle_message(self.id, data, Instant::now());
                    handled += 1;
                }
                Ok(Some(Decoded::Ping(p))) => {
                    self.answer_ping(&p);
                    self.shard.core.borrow_mut().handle_peer_ping(self.id, Instant::now());
                    // It may have armed a liveness timer: the flusher tells the timer task.
                    self.shard.request_flush();
                }
                Ok(Some(Decoded::Pong)) => self.shard.core.borrow_mut().handle_pong(self.id),
                Ok(Some(Decoded::Close(code))) => {
                    // Echo the close (RFC 6455 §5.5.1) and end.
                    self.ending.ws_close = Some((code.unwrap_or(1000), String::new()));
                    self.ending.peer_gone("peer closed");
                }
                Err(e) => {
                    tracing::debug!(shard = self.shard.id, conn = self.id, reason = %e.reason, "transport error");
                    if let Some(code) = e.ws_code {
                        self.ending.ws_close = Some((code, e.reason));
                    }
                    self.ending.peer_gone("transport error");
                }
            }
        }
        if handled > 0 {
            self.shard.request_flush();
            // A HELLO may have established the session: give back the handshake place now.
            self.check_pre_session();
        }
        handled
    }

    /// Until the session is established: notice when it is (the ticket gives back its place
    /// among the shard's handshakes), or end the connection once it has sent more than
    /// `limits.pre_session_bytes_max` (a transport error: WebSocket close 1009). Returns
    /// whether the connection must end.
    fn check_pre_session(&mut self) -> bool {
        if !self.ticket.in_handshake() {
            return false;
        }
        if self.shard.core.borrow().session_of(self.id).is_some() {
            self.ticket.session_established();
            return false;
        }
        let budget = self.shard.config.limits.pre_session_bytes_max;
        if self.pre_session_bytes <= budget {
            return false;
        }
        self.shard.counters().count_pre_session_budget();
        if let Some(skipped) = self.shard.log_limit.allow(LogKind::PreSessionBudget, Instant::now()) {
            tracing::warn!(
                shard = self.shard.id,
                conn = self.id,
                received = self.pre_session_bytes,
                budget,
                not_logged_since = skipped,
                "connection sent too much before its session; closing (counted in \
                 shardbar_pre_session_budget_exceeded_total)"
            );
        }
        self.ending.ws_close = Some((websocket::close_code::TOO_BIG, "too much data before WELCOME".into()));
        self.ending.peer_gone("pre-session budget exceeded");
        true
    }

    /// Note `n` bytes received (they count against the pre-session budget until WELCOME).
    fn note_received(&mut self, n: usize) {
        if self.ticket.in_handshake() {
            self.pre_session_bytes = self.pre_session_bytes.saturating_add(n);
        }
    }

    /// Queue the PONG for a PING whose payload is at most `limits::PING_ANSWER_PAYLOAD_MAX_BYTES`
    /// (and the peer's own limit), if it fits the connection's budgets: the control buffer's
    /// `limits::CONTROL_PENDING_MAX_BYTES`, and with the frames queued for the connection its
    /// `pending_bytes_max`. Otherwise the PING is counted unanswered.
    fn answer_ping(&mut self, payload: &[u8]) {
        let why = if payload.len() > limits::PING_ANSWER_PAYLOAD_MAX_BYTES.min(self.max_out_message) {
            Unanswered::TooBig
        } else {
            let before = self.control.len();
            self.codec.write_pong(payload, &mut self.control);
            let queued = self.shard.core.borrow_mut().out_queue(self.id).map_or(0, |q| q.bytes());
            let pending_max = self.shard.config.router.pending_bytes_max;
            if self.control.len() <= limits::CONTROL_PENDING_MAX_BYTES && self.control.len() + queued <= pending_max {
                return;
            }
            self.control.truncate(before);
            Unanswered::Budget
        };
        self.shard.counters().count_ping_unanswered(why);
        if let Some(skipped) = self.shard.log_limit.allow(LogKind::PingUnanswered, Instant::now()) {
            tracing::warn!(
                shard = self.shard.id,
                conn = self.id,
                payload_bytes = payload.len(),
                reason = ?why,
                not_logged_since = skipped,
                "PING not answered (counted in shardbar_pings_unanswered_total)"
            );
        }
    }

    /// Whether the loop must end now: the peer is done, or the shard asked to close (its
    /// reason then becomes the connection's, with a WebSocket close frame unless the peer's
    /// close is already being echoed).
    fn must_stop(&mut self) -> bool {
        let closing = self.handle.closing.get();
        if let Some(reason) = closing {
            self.ending.reason = reason.as_str();
            match reason.ws_close_code() {
                // The peer is gone (ping timeout): nothing more is written.
                None => self.ending.peer_done = true,
                Some(code) => {
                    if self.ending.ws_close.is_none() {
                        self.ending.ws_close = Some((code, reason.as_str().to_owned()));
                    }
                }
            }
        }
        self.ending.peer_done || closing.is_some()
    }

    /// Fill `wbuf` with the control frames and the queued frames (up to
    /// `limits::WRITE_COALESCE_MAX_BYTES`). Returns whether frames are left in the queue.
    fn fill_write_batch(&mut self) -> bool {
        self.wbuf.clear();
        if let Some(payload) = self.handle.ping.take() {
            self.codec.write_ping(&payload, &mut self.control);
        }
        let mut core = self.shard.core.borrow_mut();
        let queued = core.out_queue(self.id).map_or(0, |q| q.bytes());
        if self.control.is_empty() && queued == 0 {
            return false;
        }
        // One allocation of the right size, not a chain of doublings (growing a buffer copies
        // it): the pooled one if it is large enough, a new one otherwise.
        let need = self.control.len() + queued.min(limits::WRITE_COALESCE_MAX_BYTES);
        if self.wbuf.capacity() < need {
            let fresh = self.shard.buffers.take_write(need);
            self.shard.buffers.give_write(std::mem::replace(&mut self.wbuf, fresh));
        }
        self.wbuf.append(&mut self.control);
        let Some(q) = core.out_queue(self.id) else { return false };
        q.drain_into(&mut self.wbuf, limits::WRITE_COALESCE_MAX_BYTES);
        !q.is_empty()
    }

    /// Write `wbuf`. A write that makes no progress for the write deadline makes the
    /// connection a slow consumer (the core applies the realm's policy).
    async fn write_batch(&mut self) -> ControlFlow<()> {
        if self.wbuf.is_empty() {
            return Continue(());
        }
        match write_all_by(&mut self.stream, &self.wbuf, self.write_deadline).await {
            Ok(()) => Continue(()),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.shard.core.borrow_mut().handle_write_stalled(self.id, Instant::now());
                self.shard.request_flush();
                self.ending.reason = "write stalled";
                // The stalled write may have sent part of a frame: anything written after it
                // would corrupt the framing, so the connection is just closed.
                self.ending.write_broken = true;
                Break(())
            }
            Err(_) => {
                self.ending.peer_gone("write failed");
                Break(())
            }
        }
    }

    /// A connection that always has more to write (a busy subscriber that also publishes)
    /// must still be read: take what the socket has, without waiting (unless reading is
    /// paused by the read gate).
    async fn read_ready(&mut self) -> ControlFlow<()> {
        if self.shard.read_gate.is_closed() {
            return Continue(());
        }
        let start = prepare_read_tracked(&mut self.buf, self.read_chunk, &mut self.spare_init);
        match futures_lite::future::poll_once(self.stream.read(&mut self.buf[start..])).await {
            Some(Ok(0)) | Some(Err(_)) => {
                self.buf.truncate(start);
                self.ending.peer_gone("peer closed");
                Break(())
            }
            Some(Ok(n)) => {
                self.buf.truncate(start + n);
                self.note_received(n);
                self.shard.core.borrow_mut().handle_rx(self.id, Instant::now());
                Continue(())
            }
            None => {
                self.buf.truncate(start);
                Continue(())
            }
        }
    }

    /// Wait for input or a wake-up (frames queued, ping or close requested, read gate
    /// opened), and take in what came.
    async fn wait(&mut self) -> ControlFlow<()> {
        self.release_idle_buffers();
        let paused = self.shard.read_gate.is_closed();
        // No buffer (nothing partial, no burst): read through the shard's scratch.
        let direct = self.buf.capacity() > 0;
        let start = if direct { prepare_read_tracked(&mut self.buf, self.read_chunk, &mut self.spare_init) } else { 0 };
        let spare = if direct { self.buf.len() - start } else { self.read_chunk };
        let wake = {
            let (stream, buf, shard, handle) = (&mut self.stream, &mut self.buf, &self.shard, &self.handle);
            let read = async {
                if paused {
                    shard.read_gate.open().await;
                    Wake::GateOpen
                } else if direct {
                    Wake::Read(stream.read(&mut buf[start..]).await)
                } else {
                    Wake::Read(shard.buffers.read_via_scratch(stream, spare, buf).await)
                }
            };
            let notified = async {
                handle.notify.notified().await;
                Wake::Notified
            };
            or(read, notified).await
        };
        match wake {
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => {
                self.buf.truncate(start);
                self.ending.peer_gone("peer closed");
                Break(())
            }
            Wake::Read(Ok(n)) => {
                self.buf.truncate(start + n);
                self.note_received(n);
                self.read_chunk = next_chunk(self.read_chunk, n, spare);
                self.shard.core.borrow_mut().handle_rx(self.id, Instant::now());
                Continue(())
            }
            Wake::Notified | Wake::GateOpen => {
                self.buf.truncate(start);
                Continue(())
            }
        }
    }

    /// Going quiet: give the write buffer back to the shard, and drop an empty read buffer
    /// unless a burst is going on (reads filling it) — idle sessions hold no buffer.
    fn release_idle_buffers(&mut self) {
        self.shard.buffers.give_write(std::mem::take(&mut self.wbuf));
        let quiet = self.read_chunk <= limits::READ_CHUNK_MIN_BYTES;
        if self.buf.is_empty() && (quiet || self.buf.capacity() > 2 * self.read_chunk) {
            self.buf = BytesMut::new();
            self.spare_init = false;
        }
    }

    /// End the connection as `self.ending` says.
    async fn close(mut self) {
        let (shard, id) = (self.shard.clone(), self.id);
        // First end the session and wait (bounded) until its registrations are released at
        // their owners: a peer that sees the connection end and registers the same procedure
        // again must not get `procedure_already_exists`.
        shard.core.borrow_mut().handle_closing(id, Instant::now());
        shard.request_flush();
        // The core says `TeardownDone` (a wake-up on this connection's handle) when done.
        let release_deadline = Instant::now() + Duration::from_millis(limits::SHUTDOWN_GRACE_MS);
        while shard.core.borrow().teardown_pending(id) {
            let now = Instant::now();
            if now >= release_deadline {
                break;
            }
            let timeout = async {
                glommio::timer::sleep(release_deadline - now).await;
            };
            or(self.handle.notify.notified(), timeout).await;
        }
        // Then flush what is queued (bounded), say goodbye at the transport level, close.
        if self.ending.flushes() {
            self.flush_for_close().await;
        }
        let _ = or(async { self.stream.close().await }, async {
            glommio::timer::sleep(Duration::from_millis(limits::STREAM_CLOSE_MS)).await;
            Ok(())
        })
        .await;
        shard.conns.borrow_mut().remove(&id);
        shard.core.borrow_mut().handle_close(id, Instant::now());
        shard.request_flush();
        tracing::debug!(shard = shard.id, conn = id, reason = self.ending.reason, "connection closed");
    }

    /// Write the control frames, everything queued and the WebSocket close frame, within
    /// `limits::SHUTDOWN_GRACE_MS`.
    async fn flush_for_close(&mut self) {
        self.wbuf.clear();
        self.wbuf.append(&mut self.control);
        if let Some(q) = self.shard.core.borrow_mut().out_queue(self.id) {
            q.drain_into(&mut self.wbuf, usize::MAX);
        }
        if let Some((code, reason)) = &self.ending.ws_close {
            self.codec.write_close(*code, reason, &mut self.wbuf);
        }
        // One deadline for the whole flush (write_all_by's is per write: a peer reading a
        // little at a time could otherwise hold the task and the buffer indefinitely).
        let grace = Duration::from_millis(limits::SHUTDOWN_GRACE_MS);
        let _ = or(async { write_all_by(&mut self.stream, &self.wbuf, grace).await }, async {
            glommio::timer::sleep(grace).await;
            Ok(())
        })
        .await;
    }
}
