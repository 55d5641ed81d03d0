//! `ShardCore`: everything one shard knows, driven by inputs and drained through outputs.
//! It orchestrates and never routes: frames and mesh messages are dispatched
//! (`dispatch.rs`) to the feature modules — `lifecycle`, `pubsub`, `rpc`, `control` — which
//! act only through the handler context [`Out`](super::out::Out).
//!
//! Inputs (`handle_*`): a connection opened, one WAMP message from a connection (transport
//! framing already removed), a connection closed, a batch of mesh messages from another
//! shard, the clock ticking. Outputs (`poll_*` and friends): frames queued per connection
//! (`out_queue`, `take_dirty`), mesh batches per destination shard (`poll_mesh`), and
//! events for the runtime (`poll_event`: close this connection after flushing it).
//!
//! Call order for a runtime, once per loop turn: feed inputs; then drain `poll_mesh` and
//! send each batch; then `take_dirty` and flush those connections; then `poll_event`.
//!
//! Messages to this shard itself go through a local queue that is drained before each
//! `handle_*` returns, so the control plane behaves the same with 1 shard or 64. The one
//! exception is local delivery of a publication, done directly (the hot path).

mod dispatch;
mod observe;
mod procedures;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::auth::AuthConfig;
use super::control::Control;
use super::frame::OutQueue;
use super::lifecycle;
use super::liveness::{self, Reap};
use super::login::{self, LoginCx, Logins};
use super::mesh::{MeshMsg, ShardId};
use super::meta::Gathers;
pub use super::out::{CertFingerprints, CloseReason, ConnInfo, CoreEvent, Origin, TlsPeer};
use super::out::{Conn, ConnState, Out, log_allowed};
use super::permit::{self, Authorizer, PermitCx};
use super::realm::{Realms, RouterConfig};
use super::rpc::{self, Calls};
use super::session::{ConnId, Sessions};
use super::stats::Snapshot;
pub use super::stats::Stats;
use super::store::Store;
use super::timers::{Timer, Timers};
use super::uris;
use super::violation::Abort;
use super::wire::ids::IdGen;
use super::wire::{Dict, Id, Message, Payload};
use crate::limits;
use crate::proto::Map;

/// How a core is set up.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub shard: ShardId,
    pub shards: usize,
    /// Seed for session/publication IDs and random callee choice.
    pub seed: u64,
    pub router: Arc<RouterConfig>,
    /// Seed of the entropy stream for authentication challenges: from the OS in the
    /// runtime, from the test seed in the simulation.
    pub auth_seed: [u8; 32],
    /// Wall-clock time at the `now` the core is created with (challenges carry a timestamp;
    /// the core never reads a clock).
    pub wall_clock: SystemTime,
}

/// All state of one shard.
pub struct ShardCore {
    /// What handlers may do: connections, out queues, the mesh outbox, IDs, counters.
    cx: Out,
    sessions: Sessions,
    realms: Realms,
    calls: Calls,
    control: Control,
    timers: Timers,
    logins: Logins,
    authorizer: Authorizer,
    /// Router-procedure calls waiting for other shards' parts.
    gathers: Gathers,
    /// Retained events and event history this shard owns.
    store: Store,
    /// `/metrics` requests in progress: token → snapshots received so far.
    stats_requests: Map<u64, Vec<Snapshot>>,
}

impl ShardCore {
    /// A core for shard `cfg.shard`, starting at `now` (the core never reads the clock).
    pub fn new(cfg: CoreConfig, now: Instant) -> ShardCore {
        assert!(cfg.shards >= 1 && cfg.shards <= limits::SHARDS_MAX, "shard count out of range");
        assert!(cfg.shard < cfg.shards);
        let ids = IdGen::new(cfg.seed ^ (cfg.shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let logins = Logins::new(cfg.router.auth.clone(), cfg.auth_seed, cfg.wall_clock, now);
        ShardCore {
            cx: Out::new(cfg.shard, cfg.shards, ids, cfg.router.pending_bytes_max, now, cfg.wall_clock),
            sessions: Sessions::default(),
            realms: Realms::new(cfg.router),
            calls: Calls::default(),
            control: Control::default(),
            timers: Timers::default(),
            logins,
            authorizer: Authorizer::default(),
            gathers: Gathers::default(),
            store: Store::new(cfg.wall_clock, now),
            stats_requests: Map::default(),
        }
    }

    // ---------------------------------------------------------------- getters

    pub fn shard(&self) -> ShardId {
        self.cx.shard
    }

    pub fn stats(&self) -> &Stats {
        &self.cx.stats
    }

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.cx.conns.len()
    }

    /// Mesh messages waiting to be sent (the runtime stops reading connections above
    /// `limits::MESH_OUTBOX_PAUSE_MESSAGES`).
    pub(crate) fn outbox_len(&self) -> usize {
        self.cx.mesh.len()
    }

    /// The session established on a connection, if any.
    pub(crate) fn session_of(&self, conn: ConnId) -> Option<Id> {
        self.cx.session_of(conn)
    }

    /// Whether the session that lived on `conn` still waits for owners to confirm that its
    /// registrations are released.
    pub(crate) fn teardown_pending(&self, conn: ConnId) -> bool {
        self.calls.teardown_pending(conn)
    }

    // ---------------------------------------------------------------- inputs

    /// A transport finished its handshake. Arms the HELLO deadline and the liveness pings
    /// (check [`ShardCore::poll_timeout`] after this).
    pub fn handle_open(&mut self, info: ConnInfo, now: Instant) -> ConnId {
        self.cx.now = now;
        self.cx.stats.connections_opened += 1;
        let cfg = self.realms.router().liveness;
        let live = liveness::new_live(&cfg, info.framing.transport, now);
        let conn = self.cx.conns.insert(Conn::new(info, live));
        if let Some(c) = self.cx.conns.get(conn) {
            liveness::on_open(&mut self.timers, &cfg, conn, &c.live);
        }
        conn
    }

    /// Bytes arrived on `conn`: the peer is alive (any outstanding ping counts as answered).
    pub fn handle_rx(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.cx.conns.get_mut(conn) {
            c.live.last_rx = now;
            c.live.ping_sent = None;
        }
    }

    /// The peer answered a transport-level ping.
    pub fn handle_pong(&mut self, conn: ConnId) {
        if let Some(c) = self.cx.conns.get_mut(conn) {
            c.live.ping_sent = None;
        }
    }

    /// The peer sent a transport-level ping (the runtime answers it): under
    /// `rawsocket_ping = "auto"` it is pinged from now on.
    pub fn handle_peer_ping(&mut self, conn: ConnId, now: Instant) {
        self.cx.now = now;
        let cfg = self.realms.router().liveness;
        liveness::on_peer_ping(&mut self.cx, &mut self.timers, &cfg, conn);
    }

    /// When [`ShardCore::handle_timeout`] is next due (None: no timer armed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Run every timer due at `now`: HELLO deadlines, liveness pings, reaping.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.cx.now = now;
        let cfg = self.realms.router().liveness;
        while let Some(timer) = self.timers.pop_due(now) {
            if let Timer::Authenticator(call) = timer {
                if let Some((conn, why)) = login::on_authenticator_timeout(self.login_cx(), call) {
                    self.abort(conn, why);
                }
                continue;
            }
            if let Timer::Call(seq) = timer {
                let (cx, calls, realms, sessions) = (&mut self.cx, &mut self.calls, &mut self.realms, &self.sessions);
                rpc::on_call_timeout(cx, calls, realms, sessions, seq);
                self.settle();
                continue;
            }
            if let Timer::Authorizer(call) = timer {
                permit::on_timeout(self.permit_cx(), call);
                self.settle();
                continue;
            }
            match liveness::on_timer(&mut self.cx, &mut self.timers, &cfg, timer) {
                None => {}
                Some(Reap::HelloTimeout(conn)) => {
                    self.cx.stats.hello_timeouts += 1;
                    self.cx.close_conn(conn, CloseReason::HelloTimeout);
                }
                Some(Reap::PingTimeout(conn)) => {
                    self.cx.stats.ping_timeouts += 1;
                    tracing::info!(shard = self.cx.shard, conn, "liveness ping timed out; closing");
                    if let Some(sid) = self.session_of(conn) {
                        self.end_session(sid);
                    }
                    self.cx.close_conn(conn, CloseReason::PingTimeout);
                }
            }
        }
        self.settle();
    }

    /// One WAMP message arrived on `conn`.
    pub fn handle_message(&mut self, conn: ConnId, frame: bytes::Bytes, now: Instant) {
        self.cx.now = now;
        self.on_frame(conn, frame);
        self.settle();
    }

    /// The transport of `conn` is gone (closed by the peer, by the runtime, or reaped).
    pub fn handle_close(&mut self, conn: ConnId, now: Instant) {
        self.cx.now = now;
        login::forget(self.login_cx(), conn);
        if let Some(c) = self.cx.conns.remove(conn) {
            self.cx.stats.connections_closed += 1;
            if let ConnState::Established(sid) = c.state {
                self.end_session(sid);
            }
        }
        self.settle();
    }

    /// A batch of messages from shard `from`, in the order it sent them.
    pub fn handle_mesh(&mut self, from: ShardId, batch: Vec<MeshMsg>, now: Instant) {
        self.cx.now = now;
        self.cx.stats.mesh_batches_in += 1;
        self.cx.stats.mesh_messages_in += batch.len() as u64;
        for msg in batch {
            self.on_mesh(from, msg);
        }
        self.settle();
    }

    /// The runtime is about to close `conn` (ping timeout, HELLO deadline, transport error,
    /// or a close the core asked for): end its session now, so its registrations are
    /// released before the peer sees the connection end. Poll [`ShardCore::teardown_pending`]
    /// before closing the socket.
    pub(crate) fn handle_closing(&mut self, conn: ConnId, now: Instant) {
        self.cx.now = now;
        if let Some(sid) = self.session_of(conn) {
            self.end_session(sid);
        }
        self.settle();
    }

    /// The runtime found `conn` making no write progress for the write deadline.
    pub(crate) fn handle_write_stalled(&mut self, conn: ConnId, now: Instant) {
        self.cx.now = now;
        self.cx.mark_slow(conn);
        self.settle();
    }

    /// Router shutdown: GOODBYE `wamp.close.system_shutdown` to every session. Each
    /// connection is closed when its GOODBYE echo arrives; the runtime closes the rest after
    /// `limits::SHUTDOWN_GRACE_MS`.
    pub fn shutdown(&mut self, now: Instant) {
        self.cx.now = now;
        let mut conns: Vec<(ConnId, Id)> = self.sessions.values().map(|s| (s.conn, s.id)).collect();
        conns.sort_unstable();
        for (conn, sid) in conns {
            let details = Dict::new().with("message", "the router is shutting down");
            self.cx.send(conn, &Message::Goodbye { details, reason: uris::SYSTEM_SHUTDOWN.to_owned() });
            self.end_session(sid);
            // Wait for the echo; the runtime closes whatever is left after the grace time.
            if let Some(c) = self.cx.conns.get_mut(conn) {
                c.state = ConnState::Closing;
            }
        }
        self.settle();
    }

    /// The runtime found a mesh channel full.
    pub(crate) fn count_mesh_full(&mut self) {
        self.cx.stats.mesh_channel_full += 1;
    }

    // ---------------------------------------------------------------- outputs

    /// The next mesh batch to send: (destination, messages in order).
    pub fn poll_mesh(&mut self) -> Option<(ShardId, Vec<MeshMsg>)> {
        let (to, batch) = self.cx.mesh.pop_batch()?;
        self.cx.stats.mesh_batches_out += 1;
        self.cx.stats.mesh_messages_out += batch.len() as u64;
        Some((to, batch))
    }

    /// Messages the runtime is holding for full mesh channels (for the outbox gauge).
    pub(crate) fn set_mesh_backlog(&mut self, messages: usize) {
        self.cx.mesh.backlog = messages;
    }

    /// Connections that got frames since the last call.
    pub fn take_dirty(&mut self, into: &mut Vec<ConnId>) {
        for &c in &self.cx.dirty {
            if let Some(conn) = self.cx.conns.get_mut(c) {
                conn.dirty = false;
            }
        }
        into.append(&mut self.cx.dirty);
    }

    /// The frames queued for `conn`.
    pub fn out_queue(&mut self, conn: ConnId) -> Option<&mut OutQueue> {
        self.cx.conns.get_mut(conn).map(|c| &mut c.out)
    }

    pub fn poll_event(&mut self) -> Option<CoreEvent> {
        self.cx.events.pop_front()
    }

    // ---------------------------------------------------------------- internals

    /// Finish an input: run messages this shard sent itself, and act on slow consumers.
    fn settle(&mut self) {
        loop {
            while let Some(msg) = self.cx.mesh.pop_local() {
                self.on_mesh(self.cx.shard, msg);
            }
            while let Some((call, answer)) = self.calls.pop_router_answer() {
                self.on_router_answer(call, answer);
            }
            for (seq, at) in std::mem::take(&mut self.calls.deadlines) {
                self.timers.arm(at, Timer::Call(seq));
            }
            if !self.cx.mesh.local_is_empty() {
                continue;
            }
            if self.cx.slow.is_empty() {
                break;
            }
            for conn in std::mem::take(&mut self.cx.slow) {
                if let Some(c) = self.cx.conns.get_mut(conn) {
                    c.slow_marked = false;
                }
                self.disconnect_slow(conn);
            }
        }
        self.realms.release_idle();
    }

    /// The parts a login step works on.
    fn login_cx(&mut self) -> LoginCx<'_> {
        LoginCx {
            cx: &mut self.cx,
            realms: &mut self.realms,
            sessions: &mut self.sessions,
            calls: &mut self.calls,
            logins: &mut self.logins,
            timers: &mut self.timers,
        }
    }

    /// The parts an authorization check works on.
    fn permit_cx(&mut self) -> PermitCx<'_> {
        PermitCx {
            cx: &mut self.cx,
            realms: &mut self.realms,
            sessions: &self.sessions,
            calls: &mut self.calls,
            timers: &mut self.timers,
            authorizer: &mut self.authorizer,
        }
    }

    /// New listener authentication (SIGHUP): logins in progress finish with the old one.
    pub fn reload_auth(&mut self, auth: Arc<AuthConfig>) {
        self.logins.reload(auth);
    }

    fn end_session(&mut self, sid: Id) {
        self.authorizer.forget_session(sid);
        lifecycle::end_session(&mut self.cx, &mut self.realms, &mut self.sessions, &mut self.calls, sid);
    }

    /// ABORT the connection's session and close the transport.
    fn abort(&mut self, conn: ConnId, why: Abort) {
        if let Abort::Violation(v) = &why {
            self.cx.stats.protocol_violations += 1;
            if log_allowed(self.cx.stats.protocol_violations) {
                tracing::debug!(conn, message = %v, total = self.cx.stats.protocol_violations, "protocol violation");
            }
        }
        let (text, reason) = (why.to_string(), why.uri());
        self.cx.send_with_text(conn, Some(&text), |m| {
            let details = m.map_or_else(Dict::new, |m| Dict::new().with("message", m));
            Message::Abort { details, reason: reason.to_owned(), payload: Payload::empty() }
        });
        if let Some(sid) = self.session_of(conn) {
            self.end_session(sid);
        }
        login::forget(self.login_cx(), conn);
        if let Some(c) = self.cx.conns.get_mut(conn) {
            c.state = ConnState::ExpectHello;
        }
        self.cx.close_conn(conn, CloseReason::Abort);
    }

    fn disconnect_slow(&mut self, conn: ConnId) {
        let Some(c) = self.cx.conns.get_mut(conn) else { return };
        if c.closing {
            return;
        }
        // Drop the backlog: the client is too far behind for it to matter, and the GOODBYE
        // must get through. Frames the writer already took are finished first.
        let dropped = c.out.bytes();
        c.out.clear();
        self.cx.stats.slow_consumer_disconnects += 1;
        let n = self.cx.stats.slow_consumer_disconnects;
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!(conn, dropped_bytes = dropped, total = n, "slow consumer disconnected");
        }
        let details = Dict::new().with("message", "slow consumer: too many bytes queued or no write progress");
        self.cx.send(conn, &Message::Goodbye { details, reason: uris::SLOW_CONSUMER.to_owned() });
        if let Some(sid) = self.session_of(conn) {
            self.end_session(sid);
        }
        self.cx.close_conn(conn, CloseReason::SlowConsumer);
    }
}
