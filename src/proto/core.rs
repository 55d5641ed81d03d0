//! `ShardCore`: everything one shard knows, driven by inputs and drained through outputs.
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

use crate::proto::Map;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;

use super::broker::{Leave, Member, PublishOptions, SubscribeOptions};
use super::dealer::{CallOptions, OwnedRegView, RegisterOptions};
use super::frame::{Framing, OutFrame, OutQueue, encode_frame};
use super::mesh::{
    BarrierId, Bounce, CallKey, Callee, Identity, Invoke, MeshMsg, Publication, ShardId, ShardSet, SubTarget,
};
use super::options;
use super::realm::{Realm, RouterConfig, SlowConsumerPolicy};
use super::session::{ClientFeatures, ConnId, InvocationState, Session};
pub use super::stats::Stats;
use super::stats::{RealmSnapshot, Snapshot};
use super::wire::ids::{IdGen, owner_of};
use super::wire::message::code;
use super::wire::uri::{self, MatchPolicy};
use super::wire::{Dict, Id, Message, Payload, Serializer, Value, decode};
use crate::limits;

/// URIs the router emits.
pub mod uris {
    pub const PROTOCOL_VIOLATION: &str = "wamp.error.protocol_violation";
    pub const NO_SUCH_REALM: &str = "wamp.error.no_such_realm";
    pub const NO_AUTH_METHOD: &str = "wamp.error.no_matching_auth_method";
    pub const INVALID_URI: &str = "wamp.error.invalid_uri";
    pub const INVALID_ARGUMENT: &str = "wamp.error.invalid_argument";
    pub const NO_SUCH_SUBSCRIPTION: &str = "wamp.error.no_such_subscription";
    pub const NO_SUCH_REGISTRATION: &str = "wamp.error.no_such_registration";
    pub const NO_SUCH_PROCEDURE: &str = "wamp.error.no_such_procedure";
    pub const NO_AVAILABLE_CALLEE: &str = "wamp.error.no_available_callee";
    pub const UNAVAILABLE: &str = "wamp.error.unavailable";
    pub const CANCELED: &str = "wamp.error.canceled";
    pub const GOODBYE_AND_OUT: &str = "wamp.close.goodbye_and_out";
    pub const SYSTEM_SHUTDOWN: &str = "wamp.close.system_shutdown";
    pub const LIMIT_EXCEEDED: &str = "shardbar.error.limit_exceeded";
    pub const PAYLOAD_SIZE_EXCEEDED: &str = "wamp.error.payload_size_exceeded";
    pub const SLOW_CONSUMER: &str = "shardbar.close.slow_consumer";
}

/// How the runtime opens a connection in the core.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub framing: Framing,
    /// Largest message the peer accepts (RawSocket handshake), `usize::MAX` if unlimited.
    pub max_out_message: usize,
}

/// Something the runtime must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreEvent {
    /// Flush what is queued for the connection (bounded by the shutdown grace), then
    /// close its transport and call `handle_close`.
    Close { conn: ConnId, reason: &'static str },
}

#[derive(Debug)]
enum ConnState {
    ExpectHello,
    Established(Id),
    /// The router sent GOODBYE and waits for the echo.
    Closing,
}

#[derive(Debug)]
struct Conn {
    info: ConnInfo,
    out: OutQueue,
    state: ConnState,
    dirty: bool,
    /// ABORTed or otherwise ending: nothing more is queued except what is already there.
    closing: bool,
    slow_policy: SlowConsumerPolicy,
    /// In `Output::slow`, waiting for `settle` (keeps that list free of duplicates in O(1)).
    slow_marked: bool,
}

/// Generational slots for connections: a stale `ConnId` never reaches a new connection.
#[derive(Debug, Default)]
struct Slots {
    entries: Vec<(u32, Option<Conn>)>,
    free: Vec<u32>,
    len: usize,
}

impl Slots {
    fn insert(&mut self, c: Conn) -> ConnId {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            let e = &mut self.entries[i as usize];
            e.0 = e.0.wrapping_add(1);
            e.1 = Some(c);
            return (u64::from(e.0) << 32) | u64::from(i);
        }
        self.entries.push((0, Some(c)));
        (self.entries.len() - 1) as u64
    }
    fn get(&self, id: ConnId) -> Option<&Conn> {
        let (g, i) = ((id >> 32) as u32, id as u32);
        match self.entries.get(i as usize) {
            Some((gen_, Some(c))) if *gen_ == g => Some(c),
            _ => None,
        }
    }
    fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let (g, i) = ((id >> 32) as u32, id as u32);
        match self.entries.get_mut(i as usize) {
            Some((gen_, Some(c))) if *gen_ == g => Some(c),
            _ => None,
        }
    }
    fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let (g, i) = ((id >> 32) as u32, id as u32);
        match self.entries.get_mut(i as usize) {
            Some((gen_, slot @ Some(_))) if *gen_ == g => {
                self.free.push(i);
                self.len -= 1;
                slot.take()
            }
            _ => None,
        }
    }
}

/// The output side: connections and their queues, counters. Separate from routing state
/// so a fan-out can read the broker while writing to connections.
#[derive(Debug)]
struct Output {
    conns: Slots,
    dirty: Vec<ConnId>,
    /// Connections that crossed the pending-bytes cap under the disconnect policy; handled
    /// after the current fan-out.
    slow: Vec<ConnId>,
    events: VecDeque<CoreEvent>,
    stats: Stats,
    pending_bytes_max: usize,
}

/// Whether a frame may be dropped under the `drop` slow-consumer policy (only EVENTs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Event,
    Control,
}

/// What pushing one frame did (the counters are the caller's to add up).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pushed {
    Queued,
    /// Connection closing, or gone.
    Skipped,
    /// Larger than the peer's RawSocket limit.
    TooBig,
    /// Over the pending-bytes cap under the drop policy (EVENTs only).
    DroppedSlow,
    /// Over the pending-bytes cap: the connection is now a slow consumer.
    Slow,
}

/// Queue `frame` on connection `c` (id `conn`), applying the size limit and the
/// slow-consumer policy. The hot path of fan-out: no lookups, no counters.
#[inline]
fn push_frame(
    c: &mut Conn,
    conn: ConnId,
    frame: OutFrame,
    class: Class,
    pending_bytes_max: usize,
    dirty: &mut Vec<ConnId>,
) -> Pushed {
    if c.closing {
        return Pushed::Skipped;
    }
    if frame.len() > c.info.max_out_message.saturating_add(4) {
        return Pushed::TooBig;
    }
    if c.out.bytes() + frame.len() > pending_bytes_max {
        if class == Class::Event && c.slow_policy == SlowConsumerPolicy::Drop {
            return Pushed::DroppedSlow;
        }
        return Pushed::Slow;
    }
    c.out.push(frame);
    if !c.dirty {
        c.dirty = true;
        dirty.push(conn);
    }
    Pushed::Queued
}

impl Output {
    /// Count a push outcome that is not `Queued` (rare: kept out of the fan-out loop).
    #[cold]
    fn count_unqueued(&mut self, conn: ConnId, outcome: Pushed, len: usize) {
        match outcome {
            Pushed::TooBig => {
                // RawSocket: the peer announced it cannot receive this. Drop, count, log.
                self.stats.events_dropped_too_big += 1;
                tracing::debug!(conn, len, "message larger than the peer's limit dropped");
            }
            Pushed::DroppedSlow => self.stats.events_dropped_slow += 1,
            Pushed::Slow => self.mark_slow(conn),
            Pushed::Queued | Pushed::Skipped => {}
        }
    }

    /// Put `conn` on the slow list once; `settle` acts on it.
    fn mark_slow(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn)
            && !c.slow_marked
        {
            c.slow_marked = true;
            self.slow.push(conn);
        }
    }

    /// Queue a frame. Returns whether it was queued.
    fn push(&mut self, conn: ConnId, frame: Bytes, class: Class, msg_code: u64) -> bool {
        let Some(c) = self.conns.get_mut(conn) else { return false };
        let len = frame.len();
        match push_frame(c, conn, OutFrame::Owned(frame), class, self.pending_bytes_max, &mut self.dirty) {
            Pushed::Queued => {
                self.stats.bytes_out_queued += len as u64;
                self.stats.messages_out[Stats::slot(msg_code)] += 1;
                true
            }
            other => {
                self.count_unqueued(conn, other, len);
                false
            }
        }
    }

    /// Send a message that must not vanish silently (RPC traffic, WELCOME): if it is larger
    /// than the peer accepts, nothing is queued and `Err(size)` lets the caller answer
    /// differently (`wamp.error.payload_size_exceeded`).
    fn try_send(&mut self, conn: ConnId, msg: &Message) -> Result<(), usize> {
        let Some(c) = self.conns.get(conn) else { return Ok(()) };
        let (framing, max) = (c.info.framing, c.info.max_out_message);
        let frame = match encode_frame(framing, msg) {
            Ok(f) => f,
            Err(e) => {
                self.stats.encode_failures += 1;
                tracing::warn!(conn, error = %e, "could not encode {}", msg.name());
                return Ok(());
            }
        };
        if frame.len() > max.saturating_add(4) {
            return Err(frame.len());
        }
        if let Message::Error { error, .. } = msg {
            self.stats.count_error_uri(error);
        }
        self.push(conn, frame, Class::Control, msg.code());
        Ok(())
    }

    fn send(&mut self, conn: ConnId, msg: &Message) -> bool {
        let Some(c) = self.conns.get(conn) else { return false };
        match msg {
            Message::Error { error, .. } => self.stats.count_error_uri(error),
            Message::Abort { reason, .. } => self.stats.count_error_uri(reason),
            _ => {}
        }
        match encode_frame(c.info.framing, msg) {
            Ok(frame) => self.push(conn, frame, Class::Control, msg.code()),
            Err(e) => {
                self.stats.encode_failures += 1;
                tracing::warn!(conn, error = %e, "could not encode {}", msg.name());
                false
            }
        }
    }

    fn error(&mut self, conn: ConnId, request_type: u64, request: Id, error: &str, message: Option<String>) {
        let c = self.conns.get(conn).map(|c| c.info.framing.serializer).unwrap_or_default();
        let payload = match message {
            Some(m) => Payload::from_values(c, Some(&[Value::Str(m)]), None),
            None => Payload::empty(),
        };
        self.send(
            conn,
            &Message::Error { request_type, request, details: Dict::new(), error: error.to_owned(), payload },
        );
    }
}

/// What happens when a barrier completes.
#[derive(Debug)]
enum BarrierDone {
    Subscribe { to: ShardId, realm: Arc<str>, token: u64, subscription: Id },
    Register { to: ShardId, realm: Arc<str>, token: u64, registration: Id },
}

#[derive(Debug)]
struct Barrier {
    remaining: usize,
    done: BarrierDone,
}

/// A call whose caller lives on this shard.
#[derive(Debug)]
struct PendingCall {
    caller: Id,
    request: Id,
    realm: Arc<str>,
    procedure: Arc<str>,
    payload: Payload,
    options: CallOptions,
    callee: Option<Callee>,
    /// Callees that bounced this call (re-routing skips them).
    tried: SmallVec<[Id; 2]>,
    disclose: Identity,
    read_at: Instant,
}

/// A REGISTER waiting for its owner's barrier.
#[derive(Debug)]
struct PendingRegister {
    session: Id,
    request: Id,
}

/// What to do when an unregistration is confirmed by its owner.
#[derive(Debug)]
enum Unregistering {
    /// Send UNREGISTERED for this request.
    Reply { session: Id, conn: ConnId, request: Id },
    /// One of an ended session's registrations (teardown token).
    Teardown(u64),
}

/// An ended callee session: its callers' errors wait until its registrations are released.
#[derive(Debug)]
struct Teardown {
    remaining: usize,
    calls: Vec<CallKey>,
    /// The session's connection: the runtime closes it only once this completes, so a peer
    /// that sees the connection end can register the same procedure again at once.
    conn: ConnId,
}

/// How a core is set up.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub shard: ShardId,
    pub shards: usize,
    /// Seed for session/publication IDs and random callee choice.
    pub seed: u64,
    pub router: Arc<RouterConfig>,
}

/// All state of one shard.
pub struct ShardCore {
    shard: ShardId,
    shards: usize,
    router: Arc<RouterConfig>,
    ids: IdGen,
    out: Output,
    sessions: Map<Id, Session>,
    realms: Map<Arc<str>, Realm>,

    /// Per destination shard: batches in order, each cut at `MESH_BATCH_MESSAGES_MAX`.
    outbox: Vec<VecDeque<Vec<MeshMsg>>>,
    outbox_len: usize,
    /// Messages the runtime holds for full mesh channels (reported with the outbox).
    mesh_backlog: usize,
    local: VecDeque<MeshMsg>,
    barriers: Map<BarrierId, Barrier>,
    next_barrier: BarrierId,
    next_token: u64,
    pending_registers: Map<u64, PendingRegister>,
    /// Unregistrations waiting for the owner's answer, by token.
    pending_unregisters: Map<u64, Unregistering>,
    /// Ended sessions whose callers are told only once every registration is released.
    teardowns: Map<u64, Teardown>,
    /// Teardowns in progress per connection (`teardown_pending` is polled while closing).
    teardown_conns: Map<ConnId, u32>,

    calls: Map<u64, PendingCall>,
    next_call: u64,
    /// Invocations running on this shard's callees: call key → (callee session, INVOCATION.Request).
    invocations: Map<CallKey, (Id, Id)>,
    /// `/metrics` requests in progress: token → snapshots received so far.
    stats_requests: Map<u64, Vec<Snapshot>>,
    /// Scratch: per-destination-shard targets of the publication being routed.
    route_scratch: Vec<SmallVec<[SubTarget; 2]>>,
}

impl ShardCore {
    pub fn new(cfg: CoreConfig) -> ShardCore {
        assert!(cfg.shards >= 1 && cfg.shards <= limits::SHARDS_MAX, "shard count out of range");
        assert!(cfg.shard < cfg.shards);
        ShardCore {
            shard: cfg.shard,
            shards: cfg.shards,
            ids: IdGen::new(cfg.seed ^ (cfg.shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            out: Output {
                conns: Slots::default(),
                dirty: Vec::new(),
                slow: Vec::new(),
                events: VecDeque::new(),
                stats: Stats::default(),
                pending_bytes_max: cfg.router.pending_bytes_max,
            },
            router: cfg.router,
            sessions: Map::default(),
            realms: Map::default(),
            outbox: (0..cfg.shards).map(|_| VecDeque::new()).collect(),
            outbox_len: 0,
            mesh_backlog: 0,
            local: VecDeque::new(),
            barriers: Map::default(),
            next_barrier: 0,
            next_token: 0,
            pending_registers: Map::default(),
            pending_unregisters: Map::default(),
            teardowns: Map::default(),
            teardown_conns: Map::default(),
            calls: Map::default(),
            next_call: 0,
            invocations: Map::default(),
            stats_requests: Map::default(),
            route_scratch: (0..cfg.shards).map(|_| SmallVec::new()).collect(),
        }
    }

    // ---------------------------------------------------------------- getters

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn connection_count(&self) -> usize {
        self.out.conns.len
    }

    /// Mesh messages waiting to be sent (the runtime stops reading connections above
    /// `limits::MESH_OUTBOX_PAUSE_MESSAGES`).
    pub fn outbox_len(&self) -> usize {
        self.outbox_len
    }

    /// The session established on a connection, if any.
    pub fn session_of(&self, conn: ConnId) -> Option<Id> {
        match self.out.conns.get(conn)?.state {
            ConnState::Established(id) => Some(id),
            _ => None,
        }
    }

    // ---------------------------------------------------------------- inputs

    /// A transport finished its handshake.
    pub fn handle_open(&mut self, info: ConnInfo, _now: Instant) -> ConnId {
        self.out.stats.connections_opened += 1;
        self.out.conns.insert(Conn {
            info,
            out: OutQueue::default(),
            state: ConnState::ExpectHello,
            dirty: false,
            closing: false,
            slow_policy: SlowConsumerPolicy::Disconnect,
            slow_marked: false,
        })
    }

    /// One WAMP message arrived on `conn`.
    pub fn handle_message(&mut self, conn: ConnId, frame: Bytes, now: Instant) {
        self.on_frame(conn, frame, now);
        self.settle(now);
    }

    /// The transport of `conn` is gone (closed by the peer, by the runtime, or reaped).
    pub fn handle_close(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.out.conns.remove(conn) {
            self.out.stats.connections_closed += 1;
            if let ConnState::Established(sid) = c.state {
                self.end_session(sid);
            }
        }
        self.settle(now);
    }

    /// A batch of messages from shard `from`, in the order it sent them.
    pub fn handle_mesh(&mut self, from: ShardId, batch: Vec<MeshMsg>, now: Instant) {
        self.out.stats.mesh_batches_in += 1;
        self.out.stats.mesh_messages_in += batch.len() as u64;
        for msg in batch {
            self.on_mesh(from, msg, now);
        }
        self.settle(now);
    }

    /// The runtime is about to close `conn` (ping timeout, HELLO deadline, transport error,
    /// or a close the core asked for): end its session now, so its registrations are
    /// released before the peer sees the connection end. Poll [`ShardCore::teardown_pending`]
    /// before closing the socket.
    pub fn handle_closing(&mut self, conn: ConnId, now: Instant) {
        if let Some(sid) = self.session_of(conn) {
            self.end_session(sid);
        }
        self.settle(now);
    }

    /// Whether the session that lived on `conn` still waits for owners to confirm that its
    /// registrations are released.
    pub fn teardown_pending(&self, conn: ConnId) -> bool {
        self.teardown_conns.contains_key(&conn)
    }

    /// The runtime found `conn` making no write progress for the write deadline.
    pub fn handle_write_stalled(&mut self, conn: ConnId, now: Instant) {
        self.out.mark_slow(conn);
        self.settle(now);
    }

    /// Router shutdown: GOODBYE `wamp.close.system_shutdown` to every session. Each
    /// connection is closed when its GOODBYE echo arrives; the runtime closes the rest after
    /// `limits::SHUTDOWN_GRACE_MS`.
    pub fn shutdown(&mut self, now: Instant) {
        let conns: Vec<(ConnId, Id)> = self.sessions.values().map(|s| (s.conn, s.id)).collect();
        for (conn, sid) in conns {
            self.out.send(
                conn,
                &Message::Goodbye {
                    details: Dict::new().with("message", "the router is shutting down"),
                    reason: uris::SYSTEM_SHUTDOWN.to_owned(),
                },
            );
            self.end_session(sid);
            // Wait for the echo; the runtime closes whatever is left after the grace time.
            if let Some(c) = self.out.conns.get_mut(conn) {
                c.state = ConnState::Closing;
            }
        }
        self.settle(now);
    }

    /// This shard's counters and gauges.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            shard: self.shard,
            stats: self.out.stats.clone(),
            realms: Vec::with_capacity(self.realms.len()),
            connections: Default::default(),
            pending_out_bytes: 0,
            mesh_outbox: (self.outbox_len + self.mesh_backlog) as u64,
        };
        for (_, slot) in &self.out.conns.entries {
            if let Some(c) = slot {
                snap.connections[c.info.framing.index()] += 1;
                snap.pending_out_bytes += c.out.bytes() as u64;
            }
        }
        let mut realms: Vec<&Realm> = self.realms.values().collect();
        realms.sort_by(|a, b| a.name.cmp(&b.name));
        for r in realms {
            snap.realms.push(RealmSnapshot {
                name: r.name.to_string(),
                stats: r.stats.clone(),
                sessions: r.sessions as u64,
                subscriptions: r.broker.route_count() as u64,
                registrations: r.dealer.route_count() as u64,
            });
        }
        snap
    }

    /// Start gathering every shard's snapshot; poll [`ShardCore::take_stats`] with the token.
    /// At most a handful are in flight (one per scrape), so the map stays tiny.
    pub fn request_stats(&mut self, now: Instant) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        self.stats_requests.insert(token, vec![self.snapshot()]);
        let me = self.shard;
        for shard in (0..self.shards).filter(|&s| s != me) {
            self.send_mesh(shard, MeshMsg::StatsRequest { token });
        }
        self.settle(now);
        token
    }

    /// Every shard's snapshot, once all have answered (sorted by shard).
    pub fn take_stats(&mut self, token: u64) -> Option<Vec<Snapshot>> {
        if self.stats_requests.get(&token)?.len() < self.shards {
            return None;
        }
        let mut list = self.stats_requests.remove(&token)?;
        list.sort_by_key(|s| s.shard);
        Some(list)
    }

    /// Give up on a stats request (the scrape timed out).
    pub fn cancel_stats(&mut self, token: u64) {
        self.stats_requests.remove(&token);
    }

    /// The runtime found a mesh channel full.
    pub fn count_mesh_full(&mut self) {
        self.out.stats.mesh_channel_full += 1;
    }

    // ---------------------------------------------------------------- outputs

    /// The next mesh batch to send: (destination, messages in order).
    pub fn poll_mesh(&mut self) -> Option<(ShardId, Vec<MeshMsg>)> {
        let (to, box_) = self.outbox.iter_mut().enumerate().find(|(_, b)| !b.is_empty())?;
        let batch = box_.pop_front()?;
        self.outbox_len -= batch.len();
        self.out.stats.mesh_batches_out += 1;
        self.out.stats.mesh_messages_out += batch.len() as u64;
        Some((to, batch))
    }

    /// Messages the runtime is holding for full mesh channels (for the outbox gauge).
    pub fn set_mesh_backlog(&mut self, messages: usize) {
        self.mesh_backlog = messages;
    }

    /// Connections that got frames since the last call.
    pub fn take_dirty(&mut self, into: &mut Vec<ConnId>) {
        for &c in &self.out.dirty {
            if let Some(conn) = self.out.conns.get_mut(c) {
                conn.dirty = false;
            }
        }
        into.append(&mut self.out.dirty);
    }

    /// The frames queued for `conn`.
    pub fn out_queue(&mut self, conn: ConnId) -> Option<&mut OutQueue> {
        self.out.conns.get_mut(conn).map(|c| &mut c.out)
    }

    pub fn poll_event(&mut self) -> Option<CoreEvent> {
        self.out.events.pop_front()
    }

    // ---------------------------------------------------------------- internals

    /// Finish an input: run messages this shard sent itself, and act on slow consumers.
    fn settle(&mut self, now: Instant) {
        loop {
            while let Some(msg) = self.local.pop_front() {
                self.on_mesh(self.shard, msg, now);
            }
            if self.out.slow.is_empty() {
                break;
            }
            for conn in std::mem::take(&mut self.out.slow) {
                if let Some(c) = self.out.conns.get_mut(conn) {
                    c.slow_marked = false;
                }
                self.disconnect_slow(conn);
            }
        }
    }

    fn send_mesh(&mut self, to: ShardId, msg: MeshMsg) {
        if to == self.shard {
            self.local.push_back(msg);
        } else {
            let box_ = &mut self.outbox[to];
            match box_.back_mut() {
                Some(batch) if batch.len() < limits::MESH_BATCH_MESSAGES_MAX => batch.push(msg),
                _ => box_.push_back(vec![msg]),
            }
            self.outbox_len += 1;
        }
    }

    fn owner_shard(&self, realm: &str, uri: &str, policy: MatchPolicy) -> ShardId {
        // FNV-1a: stable across threads and runs, so every shard agrees on owners.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in realm.bytes().chain([0u8]).chain(uri.bytes()).chain([policy as u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % self.shards as u64) as usize
    }

    fn realm_mut(&mut self, name: &Arc<str>) -> &mut Realm {
        if !self.realms.contains_key(name) {
            // Another shard created it (auto-create); take the same settings.
            let cfg = self.router.realm(name).unwrap_or_else(|| super::realm::RealmConfig {
                name: name.to_string(),
                ..self.router.realm_template.clone()
            });
            self.realms.insert(name.clone(), Realm::new(cfg));
        }
        self.realms.get_mut(name).expect("inserted above")
    }

    fn close_conn(&mut self, conn: ConnId, reason: &'static str) {
        if let Some(c) = self.out.conns.get_mut(conn)
            && !c.closing
        {
            c.closing = true;
            self.out.events.push_back(CoreEvent::Close { conn, reason });
        }
    }

    /// ABORT the connection's session with `reason` and close the transport.
    fn abort(&mut self, conn: ConnId, reason: &str, message: &str) {
        self.out.send(
            conn,
            &Message::Abort {
                details: Dict::new().with("message", message),
                reason: reason.to_owned(),
                payload: Payload::empty(),
            },
        );
        if let Some(sid) = self.session_of(conn) {
            self.end_session(sid);
        }
        if let Some(c) = self.out.conns.get_mut(conn) {
            c.state = ConnState::ExpectHello;
        }
        self.close_conn(conn, "abort");
    }

    fn protocol_violation(&mut self, conn: ConnId, message: &str) {
        self.out.stats.protocol_violations += 1;
        tracing::debug!(conn, message, "protocol violation");
        self.abort(conn, uris::PROTOCOL_VIOLATION, message);
    }

    fn disconnect_slow(&mut self, conn: ConnId) {
        let Some(c) = self.out.conns.get_mut(conn) else { return };
        if c.closing {
            return;
        }
        // Drop the backlog: the client is too far behind for it to matter, and the GOODBYE
        // must get through. Frames the writer already took are finished first.
        let dropped = c.out.bytes();
        c.out.clear();
        self.out.stats.slow_consumer_disconnects += 1;
        let n = self.out.stats.slow_consumer_disconnects;
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!(conn, dropped_bytes = dropped, total = n, "slow consumer disconnected");
        }
        self.out.send(
            conn,
            &Message::Goodbye {
                details: Dict::new().with("message", "slow consumer: too many bytes queued or no write progress"),
                reason: uris::SLOW_CONSUMER.to_owned(),
            },
        );
        if let Some(sid) = self.session_of(conn) {
            self.end_session(sid);
        }
        self.close_conn(conn, "slow consumer");
    }

    fn on_frame(&mut self, conn: ConnId, frame: Bytes, now: Instant) {
        let Some(c) = self.out.conns.get(conn) else { return };
        if c.closing {
            return;
        }
        let ser = c.info.framing.serializer;
        self.out.stats.bytes_in += frame.len() as u64;
        let msg = match decode(ser, &frame) {
            Ok(m) => m,
            Err(e) => {
                self.out.stats.messages_in[0] += 1;
                return self.protocol_violation(conn, &format!("invalid message: {e}"));
            }
        };
        self.out.stats.messages_in[Stats::slot(msg.code())] += 1;
        let state = match self.out.conns.get(conn).map(|c| &c.state) {
            Some(ConnState::ExpectHello) => None,
            Some(ConnState::Established(sid)) => Some(*sid),
            Some(ConnState::Closing) => {
                if matches!(msg, Message::Goodbye { .. } | Message::Abort { .. }) {
                    self.close_conn(conn, "goodbye");
                }
                return;
            }
            None => return,
        };
        match state {
            None => match msg {
                Message::Hello { realm, details } => self.on_hello(conn, realm, details, now),
                Message::Abort { .. } => self.close_conn(conn, "peer abort"),
                other => self.protocol_violation(conn, &format!("expected HELLO, received {}", other.name())),
            },
            Some(sid) => self.on_session_message(conn, sid, msg, now),
        }
    }

    fn on_hello(&mut self, conn: ConnId, realm: String, details: Dict, _now: Instant) {
        if !uri::is_valid(&realm, false, false) {
            return self.abort(conn, uris::INVALID_URI, &format!("invalid realm URI {realm:?}"));
        }
        let Some(rc) = self.router.realm(&realm) else {
            return self.abort(conn, uris::NO_SUCH_REALM, &format!("no realm named {realm:?}"));
        };
        if !self.realms.contains_key(realm.as_str()) && self.realms.len() >= limits::REALMS_MAX {
            return self.abort(conn, uris::NO_SUCH_REALM, "realm limit reached");
        }
        if self.sessions.len() >= limits::SHARD_SESSIONS_MAX {
            return self.abort(conn, uris::LIMIT_EXCEEDED, "session limit reached");
        }
        let methods = details.get("authmethods").and_then(Value::as_list);
        let wants_anonymous = methods.is_none_or(|l| l.iter().any(|m| m.as_str() == Some("anonymous")));
        if !rc.anonymous || !wants_anonymous {
            return self.abort(
                conn,
                uris::NO_AUTH_METHOD,
                "this realm offers only anonymous authentication and the client did not ask for it",
            );
        }
        let features = ClientFeatures::from_hello(&details);
        let realm_name: Arc<str> = Arc::from(realm.as_str());
        let slow_policy = rc.slow_consumer;
        let realm_state = self.realm_mut(&realm_name);
        realm_state.sessions += 1;
        realm_state.stats.sessions_opened += 1;
        let realm_name = realm_state.name.clone();
        let mut id = self.ids.next_global();
        while self.sessions.contains_key(&id) {
            id = self.ids.next_global();
        }
        let authid: Arc<str> = Arc::from(format!("anonymous-{id:x}"));
        let authrole: Arc<str> = Arc::from("anonymous");
        let welcome = welcome_details(&authid, &authrole, self.shard);
        self.sessions.insert(id, Session::new(id, conn, realm_name, authid, authrole, features));
        if let Some(c) = self.out.conns.get_mut(conn) {
            c.state = ConnState::Established(id);
            c.slow_policy = slow_policy;
        }
        if self.out.try_send(conn, &Message::Welcome { session: id, details: welcome }).is_err() {
            // A client with a tiny RawSocket limit (512 bytes) gets the compact form: its
            // identity and bare roles, no feature lists.
            let roles = Dict::new().with("broker", Dict::new()).with("dealer", Dict::new());
            let s = &self.sessions[&id];
            let compact = Dict::new()
                .with("authid", &*s.authid)
                .with("authrole", &*s.authrole)
                .with("authmethod", "anonymous")
                .with("roles", roles);
            if self.out.try_send(conn, &Message::Welcome { session: id, details: compact }).is_err() {
                self.end_session(id);
                self.close_conn(conn, "peer limit too small for WELCOME");
            }
        }
    }

    /// Remove every trace of a session on this shard and tell the owners and peers.
    fn end_session(&mut self, sid: Id) {
        let Some(s) = self.sessions.remove(&sid) else { return };
        self.out.stats.sessions_closed += 1;
        if let Some(c) = self.out.conns.get_mut(s.conn)
            && matches!(c.state, ConnState::Established(x) if x == sid)
        {
            c.state = ConnState::ExpectHello;
        }
        let realm = self.realm_mut(&s.realm);
        realm.sessions = realm.sessions.saturating_sub(1);
        // Hash-map order must not leak into what is sent (simulation seeds replay exactly):
        // every loop below walks its IDs sorted.
        let mut subs: Vec<Id> = s.subscriptions.iter().copied().collect();
        subs.sort_unstable();
        let mut releases = Vec::new();
        for sub in subs {
            if realm.broker.leave(sub, sid) == Leave::LastLeft {
                releases.push(sub);
            }
        }
        for sub in releases {
            self.send_mesh(owner_of(sub), MeshMsg::SubscribeRelease { realm: s.realm.clone(), subscription: sub });
        }
        let mut invocations: Vec<(&Id, &InvocationState)> = s.invocations.iter().collect();
        invocations.sort_unstable_by_key(|(request, _)| **request);
        let mut orphaned = Vec::new();
        for (_, st) in invocations {
            self.invocations.remove(&st.call);
            if !st.caller_gone {
                orphaned.push(st.call);
            }
        }
        if s.registrations.is_empty() {
            self.fail_orphaned(orphaned);
        } else {
            self.next_token += 1;
            let teardown = self.next_token;
            self.teardowns
                .insert(teardown, Teardown { remaining: s.registrations.len(), calls: orphaned, conn: s.conn });
            *self.teardown_conns.entry(s.conn).or_default() += 1;
            let mut regs: Vec<Id> = s.registrations.keys().copied().collect();
            regs.sort_unstable();
            for reg in regs {
                self.next_token += 1;
                let token = self.next_token;
                self.pending_unregisters.insert(token, Unregistering::Teardown(teardown));
                self.send_mesh(
                    owner_of(reg),
                    MeshMsg::UnregisterReq { realm: s.realm.clone(), registration: reg, callee: sid, token },
                );
            }
        }
        for inv in s.parked {
            self.send_mesh(
                inv.call.shard,
                MeshMsg::Bounced { call: inv.call, callee: sid, reason: Bounce::CalleeGone },
            );
        }
        let mut seqs: Vec<u64> = s.calls.values().copied().collect();
        seqs.sort_unstable();
        for seq in seqs {
            if let Some(pc) = self.calls.remove(&seq)
                && let Some(callee) = pc.callee
            {
                let call = CallKey { shard: self.shard, seq };
                self.send_mesh(
                    callee.shard,
                    MeshMsg::CancelInvoke { call, callee: callee.session, mode: "killnowait" },
                );
            }
        }
    }

    /// Tell the callers of a vanished callee's invocations that their calls are canceled.
    fn fail_orphaned(&mut self, calls: Vec<CallKey>) {
        for call in calls {
            let payload = Payload::from_values(
                Serializer::Json,
                Some(&[Value::str("callee disconnected from in-flight request")]),
                None,
            );
            self.send_mesh(
                call.shard,
                MeshMsg::CallFailed { call, error: uris::CANCELED.to_owned(), details: Dict::new(), payload },
            );
        }
    }

    fn on_session_message(&mut self, conn: ConnId, sid: Id, msg: Message, now: Instant) {
        match msg {
            Message::Goodbye { .. } => {
                self.out
                    .send(conn, &Message::Goodbye { details: Dict::new(), reason: uris::GOODBYE_AND_OUT.to_owned() });
                self.end_session(sid);
            }
            Message::Abort { .. } => {
                self.end_session(sid);
                self.close_conn(conn, "peer abort");
            }
            Message::Publish { request, options, topic, payload } => {
                self.on_publish(conn, sid, request, options, topic, payload, now)
            }
            Message::Subscribe { request, options, topic } => self.on_subscribe(conn, sid, request, options, topic),
            Message::Unsubscribe { request, subscription } => self.on_unsubscribe(conn, sid, request, subscription),
            Message::Call { request, options, procedure, payload } => {
                self.on_call(conn, sid, request, options, procedure, payload, now)
            }
            Message::Cancel { request, options } => self.on_cancel(conn, sid, request, options),
            Message::Register { request, options, procedure } => {
                self.on_register(conn, sid, request, options, procedure)
            }
            Message::Unregister { request, registration } => self.on_unregister(conn, sid, request, registration),
            Message::Yield { request, options, payload } => self.on_yield(conn, sid, request, options, payload),
            Message::Error { request_type: code::INVOCATION, request, details, error, payload } => {
                self.on_invocation_error(conn, sid, request, details, error, payload)
            }
            Message::Error { request_type, .. } => self.protocol_violation(
                conn,
                &format!("ERROR with REQUEST.Type {request_type}: a client may only answer an INVOCATION with ERROR"),
            ),
            // Acknowledged delivery is not announced, so there is nothing to acknowledge.
            Message::EventReceived { .. } => {}
            other => self.protocol_violation(
                conn,
                &format!("{} is not valid from a client in an established session", other.name()),
            ),
        }
    }

    // ---------------------------------------------------------------- broker

    #[allow(clippy::too_many_arguments)]
    fn on_publish(
        &mut self,
        conn: ConnId,
        sid: Id,
        request: Id,
        options: Dict,
        topic: String,
        payload: Payload,
        now: Instant,
    ) {
        let opts = match PublishOptions::parse(&options) {
            Ok(o) => o,
            Err(e) => return self.protocol_violation(conn, &e),
        };
        let Some(s) = self.sessions.get(&sid) else { return };
        let Some(realm) = self.realms.get(&s.realm) else { return };
        if !uri::is_valid(&topic, realm.config.strict_uri, false) || uri::is_reserved(&topic) {
            return self.out.error(
                conn,
                code::PUBLISH,
                request,
                uris::INVALID_URI,
                Some(format!("invalid topic {topic:?}")),
            );
        }
        self.out.stats.publications += 1;
        let id = self.ids.next_global();
        let publication = Arc::new(Publication {
            realm: s.realm.clone(),
            id,
            topic: Arc::from(topic),
            publisher: sid,
            disclose: opts.disclose_me.then(|| Identity {
                session: sid,
                authid: s.authid.clone(),
                authrole: s.authrole.clone(),
            }),
            exclude_me: opts.exclude_me,
            filters: opts.filters,
            payload,
            read_at: now,
        });
        let scratch = &mut self.route_scratch;
        realm.broker.routes(&publication.topic, |target, mut shards: ShardSet| {
            while shards != 0 {
                let shard = shards.trailing_zeros() as usize;
                shards &= shards - 1;
                if let Some(list) = scratch.get_mut(shard) {
                    list.push(target);
                }
            }
        });
        for shard in 0..self.shards {
            if self.route_scratch[shard].is_empty() {
                continue;
            }
            let targets = std::mem::take(&mut self.route_scratch[shard]);
            if shard == self.shard {
                self.deliver_local(&publication, &targets, now);
            } else {
                self.send_mesh(shard, MeshMsg::Deliver { publication: publication.clone(), targets });
            }
        }
        if let Some(r) = self.realms.get_mut(&publication.realm) {
            r.stats.publications += 1;
        }
        if opts.acknowledge {
            self.out.send(conn, &Message::Published { request, publication: id });
        }
    }

    /// Fan a publication out to this shard's members of `targets`: one EVENT encoding per
    /// (subscription, serializer, transport), one payload transcoding per serializer.
    fn deliver_local(&mut self, p: &Publication, targets: &[SubTarget], now: Instant) {
        self.out.stats.routing_latency.observe(now.saturating_duration_since(p.read_at));
        let Some(realm) = self.realms.get(&p.realm) else { return };
        let mut delivered = 0u64;
        let mut bytes = 0u64;
        let mut payloads: [Option<Payload>; 3] = Default::default();
        for t in targets {
            let Some(local) = realm.broker.local(t.subscription) else { continue };
            // Per framing: not encoded yet (None), encoded, or failed (Some(None): counted
            // and logged once, not retried for every member).
            let mut frames: [Option<Option<Rc<Bytes>>>; Framing::COUNT] = Default::default();
            let mut details: Option<Dict> = None;
            for m in &local.members {
                if p.exclude_me && m.session == p.publisher {
                    continue;
                }
                if let Some(f) = &p.filters
                    && !f.admits(m.session, &m.authid, &m.authrole)
                {
                    continue;
                }
                let Some(c) = self.out.conns.get_mut(m.conn) else { continue };
                let framing = c.info.framing;
                let slot = &mut frames[framing.index()];
                if slot.is_none() {
                    *slot = Some(match encode_event(p, t, framing, &mut payloads, &mut details) {
                        Ok(f) => Some(Rc::new(f)),
                        Err(e) => {
                            self.out.stats.encode_failures += 1;
                            tracing::warn!(error = %e, "EVENT encoding failed");
                            None
                        }
                    });
                }
                let Some(Some(frame)) = slot.clone() else { continue };
                let len = frame.len();
                let frame = OutFrame::Shared(frame);
                match push_frame(c, m.conn, frame, Class::Event, self.out.pending_bytes_max, &mut self.out.dirty) {
                    Pushed::Queued => {
                        delivered += 1;
                        bytes += len as u64;
                    }
                    other => self.out.count_unqueued(m.conn, other, len),
                }
            }
        }
        self.out.stats.events_delivered += delivered;
        self.out.stats.messages_out[code::EVENT as usize] += delivered;
        self.out.stats.bytes_out_queued += bytes;
        if let Some(r) = self.realms.get_mut(&p.realm) {
            r.stats.events_delivered += delivered;
        }
    }

    fn on_subscribe(&mut self, conn: ConnId, sid: Id, request: Id, options: Dict, topic: String) {
        let opts = match SubscribeOptions::parse(&options) {
            Ok(o) => o,
            Err(e) => return self.protocol_violation(conn, &e),
        };
        let Some(s) = self.sessions.get(&sid) else { return };
        let realm_name = s.realm.clone();
        let member = Member { session: sid, conn, authid: s.authid.clone(), authrole: s.authrole.clone() };
        let full = s.subscriptions.len() + s.pending_subscribes >= limits::SESSION_SUBSCRIPTIONS_MAX
            || s.pending_subscribes >= limits::SESSION_PENDING_ROUTE_CHANGES_MAX;
        let token = self.next_token + 1;
        let realm = self.realm_mut(&realm_name);
        if !uri::is_valid_for(&topic, opts.policy, realm.config.strict_uri) {
            return self.out.error(
                conn,
                code::SUBSCRIBE,
                request,
                uris::INVALID_URI,
                Some(format!("invalid topic {topic:?}")),
            );
        }
        if full {
            return self.out.error(
                conn,
                code::SUBSCRIBE,
                request,
                uris::LIMIT_EXCEEDED,
                Some("too many subscriptions".into()),
            );
        }
        if let Some(id) = realm.broker.local_id(&topic, opts.policy) {
            realm.broker.join(id, member);
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.subscriptions.insert(id);
            }
            self.out.send(conn, &Message::Subscribed { request, subscription: id });
            return;
        }
        let topic: Arc<str> = Arc::from(topic);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.pending_subscribes += 1;
        }
        let realm = self.realms.get_mut(&realm_name).expect("created above");
        if realm.broker.pending_wait(&topic, opts.policy, (sid, request)) {
            return;
        }
        realm.broker.pending_start(topic.clone(), opts.policy, token, (sid, request));
        self.next_token = token;
        let owner = self.owner_shard(&realm_name, &topic, opts.policy);
        self.send_mesh(owner, MeshMsg::SubscribeReq { realm: realm_name, topic, policy: opts.policy, token });
    }

    fn on_unsubscribe(&mut self, conn: ConnId, sid: Id, request: Id, subscription: Id) {
        let Some(s) = self.sessions.get_mut(&sid) else { return };
        if !s.subscriptions.remove(&subscription) {
            return self.out.error(conn, code::UNSUBSCRIBE, request, uris::NO_SUCH_SUBSCRIPTION, None);
        }
        let realm_name = s.realm.clone();
        if self.realm_mut(&realm_name).broker.leave(subscription, sid) == Leave::LastLeft {
            self.send_mesh(owner_of(subscription), MeshMsg::SubscribeRelease { realm: realm_name, subscription });
        }
        self.out.send(conn, &Message::Unsubscribed { request, details: None });
    }

    // ---------------------------------------------------------------- dealer

    fn on_register(&mut self, conn: ConnId, sid: Id, request: Id, options: Dict, procedure: String) {
        let opts = match RegisterOptions::parse(&options) {
            Ok(o) => o,
            Err(e) => return self.protocol_violation(conn, &e),
        };
        let Some(s) = self.sessions.get(&sid) else { return };
        let realm_name = s.realm.clone();
        let strict = self.realms.get(&realm_name).is_some_and(|r| r.config.strict_uri);
        if !uri::is_valid_for(&procedure, opts.policy, strict) || uri::is_reserved(&procedure) {
            let msg = format!("invalid procedure {procedure:?}");
            return self.out.error(conn, code::REGISTER, request, uris::INVALID_URI, Some(msg));
        }
        if s.registrations.len() + s.pending_registrations.len() >= limits::SESSION_REGISTRATIONS_MAX
            || s.pending_registrations.len() >= limits::SESSION_PENDING_ROUTE_CHANGES_MAX
        {
            return self.out.error(
                conn,
                code::REGISTER,
                request,
                uris::LIMIT_EXCEEDED,
                Some("too many registrations".into()),
            );
        }
        self.next_token += 1;
        let token = self.next_token;
        let procedure: Arc<str> = Arc::from(procedure);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.pending_registrations.insert(token, (procedure.clone(), opts.policy));
        }
        self.pending_registers.insert(token, PendingRegister { session: sid, request });
        let owner = self.owner_shard(&realm_name, &procedure, opts.policy);
        self.send_mesh(
            owner,
            MeshMsg::RegisterReq {
                realm: realm_name,
                procedure,
                policy: opts.policy,
                invoke: opts.invoke,
                disclose_caller: opts.disclose_caller,
                callee: sid,
                token,
            },
        );
    }

    fn on_unregister(&mut self, conn: ConnId, sid: Id, request: Id, registration: Id) {
        let Some(s) = self.sessions.get_mut(&sid) else { return };
        if s.registrations.remove(&registration).is_none() {
            return self.out.error(conn, code::UNREGISTER, request, uris::NO_SUCH_REGISTRATION, None);
        }
        let realm = s.realm.clone();
        self.next_token += 1;
        let token = self.next_token;
        self.pending_unregisters.insert(token, Unregistering::Reply { session: sid, conn, request });
        self.send_mesh(owner_of(registration), MeshMsg::UnregisterReq { realm, registration, callee: sid, token });
    }

    #[allow(clippy::too_many_arguments)]
    fn on_call(
        &mut self,
        conn: ConnId,
        sid: Id,
        request: Id,
        options: Dict,
        procedure: String,
        payload: Payload,
        now: Instant,
    ) {
        let opts = match CallOptions::parse(&options) {
            Ok(o) => o,
            Err(e) => return self.protocol_violation(conn, &e),
        };
        let Some(s) = self.sessions.get(&sid) else { return };
        let strict = self.realms.get(&s.realm).is_some_and(|r| r.config.strict_uri);
        if !uri::is_valid(&procedure, strict, false) {
            let msg = format!("invalid procedure {procedure:?}");
            return self.out.error(conn, code::CALL, request, uris::INVALID_URI, Some(msg));
        }
        if s.calls.len() >= limits::SESSION_CALLS_MAX {
            return self.out.error(
                conn,
                code::CALL,
                request,
                uris::LIMIT_EXCEEDED,
                Some("too many calls in flight".into()),
            );
        }
        if s.calls.contains_key(&request) {
            return self.protocol_violation(conn, &format!("CALL.Request {request} is already in flight"));
        }
        self.out.stats.calls += 1;
        if let Some(r) = self.realms.get_mut(&s.realm) {
            r.stats.calls += 1;
        }
        self.next_call += 1;
        let seq = self.next_call;
        let disclose = Identity { session: sid, authid: s.authid.clone(), authrole: s.authrole.clone() };
        self.calls.insert(
            seq,
            PendingCall {
                caller: sid,
                request,
                realm: s.realm.clone(),
                procedure: Arc::from(procedure),
                payload,
                options: opts,
                callee: None,
                tried: SmallVec::new(),
                disclose,
                read_at: now,
            },
        );
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.calls.insert(request, seq);
        }
        self.route_call(seq);
    }

    /// Pick a callee for call `seq` and send the invocation; on failure answer the caller.
    fn route_call(&mut self, seq: u64) {
        let Some(pc) = self.calls.get_mut(&seq) else { return };
        let realm = self.realms.get_mut(&pc.realm);
        let route = realm.and_then(|r| r.dealer.resolve(&pc.procedure));
        let failure = match route {
            None => Some((uris::NO_SUCH_PROCEDURE, format!("no callee registered procedure {}", pc.procedure))),
            Some(route) => match route.pick(&pc.tried, &mut self.ids) {
                None => Some((uris::NO_AVAILABLE_CALLEE, format!("no callee of {} is available", pc.procedure))),
                Some(callee) => {
                    let inv = Invoke {
                        realm: pc.realm.clone(),
                        call: CallKey { shard: self.shard, seq },
                        callee: callee.session,
                        registration: route.id,
                        reg_uri: route.procedure.clone(),
                        reg_policy: route.policy,
                        procedure: (route.policy != MatchPolicy::Exact).then(|| pc.procedure.clone()),
                        caller: (pc.options.disclose_me || route.disclose_caller).then(|| pc.disclose.clone()),
                        receive_progress: pc.options.receive_progress,
                        timeout_ms: pc.options.timeout as u64,
                        payload: pc.payload.clone(),
                        read_at: pc.read_at,
                    };
                    let shard = callee.shard;
                    pc.callee = Some(callee);
                    self.send_mesh(shard, MeshMsg::Invoke(Box::new(inv)));
                    None
                }
            },
        };
        if let Some((uri, message)) = failure {
            self.fail_call(seq, uri, Dict::new(), Some(message), Payload::empty());
        }
    }

    /// Answer call `seq` with an ERROR and forget it.
    fn fail_call(&mut self, seq: u64, error: &str, details: Dict, message: Option<String>, payload: Payload) {
        let Some(pc) = self.calls.remove(&seq) else { return };
        if let Some(r) = self.realms.get_mut(&pc.realm) {
            r.stats.calls_error += 1;
        }
        let Some(s) = self.sessions.get_mut(&pc.caller) else { return };
        s.calls.remove(&pc.request);
        let conn = s.conn;
        if let Some(m) = message {
            self.out.error(conn, code::CALL, pc.request, error, Some(m));
            return;
        }
        let msg =
            Message::Error { request_type: code::CALL, request: pc.request, details, error: error.to_owned(), payload };
        if let Err(len) = self.out.try_send(conn, &msg) {
            let m = format!("the callee's ERROR {error} ({len} bytes) is larger than this client accepts");
            self.out.error(conn, code::CALL, pc.request, uris::PAYLOAD_SIZE_EXCEEDED, Some(m));
        }
    }

    fn on_cancel(&mut self, conn: ConnId, sid: Id, request: Id, options: Dict) {
        let mode = match options::opt_str(&options, "CANCEL", "mode") {
            Ok(None) => "killnowait",
            Ok(Some(m @ ("skip" | "kill" | "killnowait"))) => match m {
                "skip" => "skip",
                "kill" => "kill",
                _ => "killnowait",
            },
            Ok(Some(other)) => {
                return self.protocol_violation(conn, &format!("CANCEL.Options.mode: unknown mode {other:?}"));
            }
            Err(e) => return self.protocol_violation(conn, &e),
        };
        let Some(&seq) = self.sessions.get(&sid).and_then(|s| s.calls.get(&request)) else {
            // The call already finished; nothing to cancel.
            return;
        };
        let Some(callee) = self.calls.get(&seq).and_then(|pc| pc.callee.clone()) else { return };
        let call = CallKey { shard: self.shard, seq };
        self.send_mesh(callee.shard, MeshMsg::CancelInvoke { call, callee: callee.session, mode });
        if mode != "kill" {
            self.fail_call(seq, uris::CANCELED, Dict::new(), None, Payload::empty());
        }
    }

    /// An invocation arrives at its callee's shard.
    fn start_invocation(&mut self, inv: Box<Invoke>, now: Instant) {
        let bounce = |reason| MeshMsg::Bounced { call: inv.call, callee: inv.callee, reason };
        let Some(s) = self.sessions.get_mut(&inv.callee) else {
            let msg = bounce(Bounce::CalleeGone);
            return self.send_mesh(inv.call.shard, msg);
        };
        if !s.registrations.contains_key(&inv.registration) {
            let pending = s.pending_registrations.values().any(|(u, p)| *u == inv.reg_uri && *p == inv.reg_policy);
            if pending && s.parked.len() < limits::SESSION_INVOCATIONS_MAX {
                s.parked.push(inv);
                return;
            }
            let msg = bounce(Bounce::CalleeGone);
            return self.send_mesh(inv.call.shard, msg);
        }
        if s.invocations.len() >= limits::SESSION_INVOCATIONS_MAX {
            let msg = bounce(Bounce::Overloaded);
            return self.send_mesh(inv.call.shard, msg);
        }
        let request = s.invocation_ids.next_id();
        let receive_progress = inv.receive_progress && s.features.callee_progressive_results;
        s.invocations.insert(request, InvocationState { call: inv.call, caller_gone: false, receive_progress });
        let conn = s.conn;
        self.invocations.insert(inv.call, (inv.callee, request));
        let mut details = Dict::new();
        if let Some(p) = &inv.procedure {
            details.insert("procedure", &**p);
        }
        if let Some(c) = &inv.caller {
            details.insert("caller", c.session);
            details.insert("caller_authid", &*c.authid);
            details.insert("caller_authrole", &*c.authrole);
        }
        if receive_progress {
            details.insert("receive_progress", true);
        }
        if inv.timeout_ms > 0 {
            details.insert("timeout", inv.timeout_ms);
        }
        self.out.stats.invocations += 1;
        self.out.stats.routing_latency.observe(now.saturating_duration_since(inv.read_at));
        let call = inv.call;
        let callee = inv.callee;
        let Invoke { registration, payload, .. } = *inv;
        if let Err(len) = self.out.try_send(conn, &Message::Invocation { request, registration, details, payload }) {
            // The callee cannot receive it: the call fails instead of waiting forever.
            if let Some(s) = self.sessions.get_mut(&callee) {
                s.invocations.remove(&request);
            }
            self.invocations.remove(&call);
            let message = format!("the INVOCATION ({len} bytes) is larger than the callee accepts");
            let payload = Payload::from_values(Serializer::Json, Some(&[Value::Str(message)]), None);
            self.send_mesh(
                call.shard,
                MeshMsg::CallFailed {
                    call,
                    error: uris::PAYLOAD_SIZE_EXCEEDED.to_owned(),
                    details: Dict::new(),
                    payload,
                },
            );
        }
    }

    fn on_yield(&mut self, conn: ConnId, sid: Id, request: Id, options: Dict, payload: Payload) {
        let progress = match options::opt_bool(&options, "YIELD", "progress") {
            Ok(p) => p.unwrap_or(false),
            Err(e) => return self.protocol_violation(conn, &e),
        };
        let Some(s) = self.sessions.get_mut(&sid) else { return };
        let Some(st) = s.invocations.get(&request) else {
            return self.protocol_violation(conn, &format!("YIELD for unknown INVOCATION.Request {request}"));
        };
        let (call, gone, wants_progress) = (st.call, st.caller_gone, st.receive_progress);
        if progress && !wants_progress {
            // The call did not ask for progressive results: nothing to relay.
            return;
        }
        if !progress {
            s.invocations.remove(&request);
            self.invocations.remove(&call);
        }
        if !gone {
            self.send_mesh(call.shard, MeshMsg::Yielded { call, progress, payload });
        }
    }

    fn on_invocation_error(
        &mut self,
        conn: ConnId,
        sid: Id,
        request: Id,
        details: Dict,
        error: String,
        payload: Payload,
    ) {
        let Some(s) = self.sessions.get_mut(&sid) else { return };
        let Some(st) = s.invocations.remove(&request) else {
            return self.protocol_violation(conn, &format!("ERROR for unknown INVOCATION.Request {request}"));
        };
        self.invocations.remove(&st.call);
        if st.caller_gone {
            return;
        }
        let msg = if error == uris::UNAVAILABLE {
            MeshMsg::Bounced { call: st.call, callee: sid, reason: Bounce::Unavailable }
        } else {
            MeshMsg::CallFailed { call: st.call, error, details, payload }
        };
        self.send_mesh(st.call.shard, msg);
    }

    // ---------------------------------------------------------------- mesh

    fn on_mesh(&mut self, from: ShardId, msg: MeshMsg, now: Instant) {
        match msg {
            MeshMsg::SubscribeReq { realm, topic, policy, token } => {
                let owner = self.shard;
                let sub = self.realm_mut(&realm).broker.owner_add(owner, &topic, policy, from).0.clone();
                let done = BarrierDone::Subscribe { to: from, realm: realm.clone(), token, subscription: sub.id };
                self.broadcast_barrier(done, now, |barrier| MeshMsg::SubRoute {
                    realm: realm.clone(),
                    subscription: sub.id,
                    topic: sub.topic.clone(),
                    policy: sub.policy,
                    shards: sub.shards,
                    barrier,
                });
            }
            MeshMsg::SubscribeRelease { realm, subscription } => {
                if let Some(sub) = self.realm_mut(&realm).broker.owner_release(subscription, from) {
                    self.broadcast(now, || MeshMsg::SubRoute {
                        realm: realm.clone(),
                        subscription,
                        topic: sub.topic.clone(),
                        policy: sub.policy,
                        shards: sub.shards,
                        barrier: None,
                    });
                }
            }
            MeshMsg::SubRoute { realm, subscription, topic, policy, shards, barrier } => {
                self.realm_mut(&realm).broker.set_route(&topic, policy, subscription, shards);
                if let Some(b) = barrier {
                    self.send_mesh(from, MeshMsg::BarrierAck { barrier: b });
                }
            }
            MeshMsg::SubscribeDone { realm, token, subscription } => self.on_subscribe_done(realm, token, subscription),
            MeshMsg::RegisterReq { realm, procedure, policy, invoke, disclose_caller, callee, token } => {
                let owner = self.shard;
                let callee = Callee { shard: from, session: callee };
                let result = self.realm_mut(&realm).dealer.owner_register(
                    owner,
                    &procedure,
                    policy,
                    invoke,
                    disclose_caller,
                    callee,
                );
                match result {
                    Err((uri, message)) => {
                        let result = Err((uri, message));
                        self.send_mesh(from, MeshMsg::RegisterDone { realm, token, result });
                    }
                    Ok(reg) => {
                        let reg = reg.clone();
                        let callees = Arc::new(reg.callees.clone());
                        let done =
                            BarrierDone::Register { to: from, realm: realm.clone(), token, registration: reg.id };
                        self.broadcast_barrier(done, now, |barrier| MeshMsg::RegRoute {
                            realm: realm.clone(),
                            registration: reg.id,
                            procedure: reg.procedure.clone(),
                            policy: reg.policy,
                            invoke: reg.invoke,
                            disclose_caller: reg.disclose_caller,
                            callees: callees.clone(),
                            barrier,
                        });
                    }
                }
            }
            MeshMsg::UnregisterReq { realm, registration, callee, token } => {
                let result = self.realm_mut(&realm).dealer.owner_unregister(registration, callee);
                self.send_mesh(from, MeshMsg::UnregisterDone { token });
                if let Some(reg) = result {
                    let callees = Arc::new(reg.callees.clone());
                    self.broadcast(now, || MeshMsg::RegRoute {
                        realm: realm.clone(),
                        registration,
                        procedure: reg.procedure.clone(),
                        policy: reg.policy,
                        invoke: reg.invoke,
                        disclose_caller: reg.disclose_caller,
                        callees: callees.clone(),
                        barrier: None,
                    });
                }
            }
            MeshMsg::RegRoute { realm, registration, procedure, policy, invoke, disclose_caller, callees, barrier } => {
                let view = OwnedRegView {
                    id: registration,
                    procedure: &procedure,
                    policy,
                    invoke,
                    disclose_caller,
                    callees: &callees,
                };
                self.realm_mut(&realm).dealer.set_route(&view);
                if let Some(b) = barrier {
                    self.send_mesh(from, MeshMsg::BarrierAck { barrier: b });
                }
            }
            MeshMsg::RegisterDone { realm, token, result } => self.on_register_done(realm, token, result, now),
            MeshMsg::UnregisterDone { token } => match self.pending_unregisters.remove(&token) {
                Some(Unregistering::Reply { session, conn, request }) if self.sessions.contains_key(&session) => {
                    self.out.send(conn, &Message::Unregistered { request, details: None });
                }
                Some(Unregistering::Reply { .. }) => {}
                Some(Unregistering::Teardown(t)) => {
                    let done = match self.teardowns.get_mut(&t) {
                        Some(td) if td.remaining > 1 => {
                            td.remaining -= 1;
                            None
                        }
                        Some(_) => self.teardowns.remove(&t),
                        None => None,
                    };
                    if let Some(td) = done {
                        if let Some(n) = self.teardown_conns.get_mut(&td.conn) {
                            *n -= 1;
                            if *n == 0 {
                                self.teardown_conns.remove(&td.conn);
                            }
                        }
                        self.fail_orphaned(td.calls);
                    }
                }
                None => {}
            },
            MeshMsg::BarrierAck { barrier } => {
                let done = match self.barriers.get_mut(&barrier) {
                    Some(b) if b.remaining > 1 => {
                        b.remaining -= 1;
                        None
                    }
                    Some(_) => self.barriers.remove(&barrier).map(|b| b.done),
                    None => None,
                };
                if let Some(done) = done {
                    self.finish_barrier(done);
                }
            }
            MeshMsg::Deliver { publication, targets } => self.deliver_local(&publication, &targets, now),
            MeshMsg::Invoke(inv) => self.start_invocation(inv, now),
            MeshMsg::Yielded { call, progress, payload } => self.on_yielded(call, progress, payload),
            MeshMsg::CallFailed { call, error, details, payload } => {
                self.fail_call(call.seq, &error, details, None, payload);
            }
            MeshMsg::Bounced { call, callee, reason } => {
                let Some(pc) = self.calls.get_mut(&call.seq) else { return };
                if pc.tried.len() >= 8 {
                    let msg = format!("no callee of {} accepted the call ({reason:?})", pc.procedure);
                    return self.fail_call(
                        call.seq,
                        uris::NO_AVAILABLE_CALLEE,
                        Dict::new(),
                        Some(msg),
                        Payload::empty(),
                    );
                }
                pc.tried.push(callee);
                self.out.stats.calls_rerouted += 1;
                self.route_call(call.seq);
            }
            MeshMsg::CancelInvoke { call, callee, mode } => self.on_cancel_invoke(call, callee, mode),
            MeshMsg::StatsRequest { token } => {
                let snapshot = Box::new(self.snapshot());
                self.send_mesh(from, MeshMsg::StatsReply { token, snapshot });
            }
            MeshMsg::StatsReply { token, snapshot } => {
                if let Some(list) = self.stats_requests.get_mut(&token) {
                    list.push(*snapshot);
                }
            }
        }
    }

    /// Send a route update to every other shard with a barrier, apply it here, and run
    /// `done` once every other shard acknowledged.
    fn broadcast_barrier(&mut self, done: BarrierDone, now: Instant, make: impl Fn(Option<BarrierId>) -> MeshMsg) {
        self.next_barrier += 1;
        let id = self.next_barrier;
        for shard in 0..self.shards {
            if shard != self.shard {
                self.send_mesh(shard, make(Some(id)));
            }
        }
        // Apply locally now (no ack needed from ourselves).
        self.on_mesh(self.shard, make(None), now);
        if self.shards == 1 {
            self.finish_barrier(done);
        } else {
            self.barriers.insert(id, Barrier { remaining: self.shards - 1, done });
        }
    }

    /// Send a route update to every shard, this one included, without waiting.
    fn broadcast(&mut self, now: Instant, make: impl Fn() -> MeshMsg) {
        for shard in 0..self.shards {
            if shard != self.shard {
                self.send_mesh(shard, make());
            }
        }
        self.on_mesh(self.shard, make(), now);
    }

    fn finish_barrier(&mut self, done: BarrierDone) {
        match done {
            BarrierDone::Subscribe { to, realm, token, subscription } => {
                self.send_mesh(to, MeshMsg::SubscribeDone { realm, token, subscription })
            }
            BarrierDone::Register { to, realm, token, registration } => {
                self.send_mesh(to, MeshMsg::RegisterDone { realm, token, result: Ok(registration) })
            }
        }
    }

    fn on_subscribe_done(&mut self, realm: Arc<str>, token: u64, subscription: Id) {
        let Some((topic, policy, waiters)) = self.realm_mut(&realm).broker.pending_finish(token) else { return };
        let r = self.realms.get_mut(&realm).expect("created by realm_mut above");
        r.broker.local_create(subscription, topic, policy);
        for (sid, request) in waiters {
            let Some(s) = self.sessions.get_mut(&sid) else { continue };
            s.pending_subscribes = s.pending_subscribes.saturating_sub(1);
            let member = Member { session: sid, conn: s.conn, authid: s.authid.clone(), authrole: s.authrole.clone() };
            r.broker.join(subscription, member);
            s.subscriptions.insert(subscription);
            self.out.send(s.conn, &Message::Subscribed { request, subscription });
        }
        if r.broker.local_remove_if_empty(subscription) {
            self.send_mesh(owner_of(subscription), MeshMsg::SubscribeRelease { realm, subscription });
        }
    }

    fn on_register_done(
        &mut self,
        realm: Arc<str>,
        token: u64,
        result: Result<Id, (&'static str, String)>,
        now: Instant,
    ) {
        let Some(p) = self.pending_registers.remove(&token) else { return };
        let Some(s) = self.sessions.get_mut(&p.session) else {
            // The session ended while its REGISTER waited: undo.
            if let Ok(reg) = result {
                // Token 0: nobody waits for the answer.
                self.send_mesh(
                    owner_of(reg),
                    MeshMsg::UnregisterReq { realm, registration: reg, callee: p.session, token: 0 },
                );
            }
            return;
        };
        let Some((procedure, policy)) = s.pending_registrations.remove(&token) else { return };
        let conn = s.conn;
        match result {
            Ok(registration) => {
                s.registrations.insert(registration, (procedure.clone(), policy));
                self.out.send(conn, &Message::Registered { request: p.request, registration });
                // Release invocations that overtook this REGISTERED, in arrival order.
                let parked = std::mem::take(&mut s.parked);
                let (mine, rest): (Vec<_>, Vec<_>) =
                    parked.into_iter().partition(|inv| inv.reg_uri == procedure && inv.reg_policy == policy);
                s.parked = rest;
                for inv in mine {
                    self.start_invocation(inv, now);
                }
            }
            Err((uri, message)) => self.out.error(conn, code::REGISTER, p.request, uri, Some(message)),
        }
    }

    fn on_yielded(&mut self, call: CallKey, progress: bool, payload: Payload) {
        let Some(pc) = self.calls.get(&call.seq) else { return };
        if progress && !pc.options.receive_progress {
            return;
        }
        let (caller, request, callee) = (pc.caller, pc.request, pc.callee.clone());
        let Some(conn) = self.sessions.get(&caller).map(|s| s.conn) else { return };
        let details = if progress { Dict::new().with("progress", true) } else { Dict::new() };
        if let Err(len) = self.out.try_send(conn, &Message::Result { request, details, payload }) {
            // The caller cannot receive this RESULT: fail the call instead of leaving it
            // waiting, and stop a progressive callee from producing more.
            let m = format!("the RESULT ({len} bytes) is larger than this client accepts");
            self.fail_call(call.seq, uris::PAYLOAD_SIZE_EXCEEDED, Dict::new(), Some(m), Payload::empty());
            if progress && let Some(c) = callee {
                self.send_mesh(c.shard, MeshMsg::CancelInvoke { call, callee: c.session, mode: "killnowait" });
            }
            return;
        }
        if !progress {
            if let Some(pc) = self.calls.remove(&call.seq)
                && let Some(r) = self.realms.get_mut(&pc.realm)
            {
                r.stats.calls_ok += 1;
            }
            if let Some(s) = self.sessions.get_mut(&caller) {
                s.calls.remove(&request);
            }
        }
    }

    fn on_cancel_invoke(&mut self, call: CallKey, callee: Id, mode: &'static str) {
        let Some(&(sid, request)) = self.invocations.get(&call) else { return };
        debug_assert_eq!(sid, callee);
        let Some(s) = self.sessions.get_mut(&sid) else { return };
        let Some(st) = s.invocations.get_mut(&request) else { return };
        let can_interrupt = s.features.callee_call_canceling;
        let conn = s.conn;
        match mode {
            "kill" if can_interrupt => {
                // The callee's answer (normally ERROR wamp.error.canceled) goes to the caller.
                self.out.send(conn, &Message::Interrupt { request, options: Dict::new().with("mode", "kill") });
            }
            "kill" => {
                // No INTERRUPT possible: answer the caller now, drop the callee's answer.
                st.caller_gone = true;
                self.send_mesh(
                    call.shard,
                    MeshMsg::CallFailed {
                        call,
                        error: uris::CANCELED.to_owned(),
                        details: Dict::new(),
                        payload: Payload::empty(),
                    },
                );
            }
            _ => {
                st.caller_gone = true;
                if mode == "killnowait" && can_interrupt {
                    self.out
                        .send(conn, &Message::Interrupt { request, options: Dict::new().with("mode", "killnowait") });
                }
            }
        }
    }
}

/// Encode the EVENT of publication `p` through subscription `t` for `framing`: the payload
/// is transcoded at most once per serializer (cached in `payloads`) and the details built
/// once per subscription (cached in `details`).
fn encode_event(
    p: &Publication,
    t: &SubTarget,
    framing: Framing,
    payloads: &mut [Option<Payload>; 3],
    details: &mut Option<Dict>,
) -> Result<Bytes, super::wire::DecodeError> {
    let ser = framing.serializer as usize - 1;
    if payloads[ser].is_none() {
        payloads[ser] = Some(p.payload.transcode(framing.serializer)?);
    }
    let details = details.get_or_insert_with(|| event_details(p, t.pattern)).clone();
    let payload = payloads[ser].clone().unwrap_or_default();
    encode_frame(framing, &Message::Event { subscription: t.subscription, publication: p.id, details, payload })
}

/// `EVENT.Details` for a publication delivered through a subscription.
fn event_details(p: &Publication, pattern: bool) -> Dict {
    let mut d = Dict::new();
    if pattern {
        d.insert("topic", &*p.topic);
    }
    if let Some(who) = &p.disclose {
        d.insert("publisher", who.session);
        d.insert("publisher_authid", &*who.authid);
        d.insert("publisher_authrole", &*who.authrole);
    }
    d
}

/// `WELCOME.Details`: identity, and the router's roles with only the features that work.
fn welcome_details(authid: &str, authrole: &str, shard: ShardId) -> Dict {
    let features = |names: &[&str]| {
        let mut f = Dict::new();
        for n in names {
            f.insert(*n, true);
        }
        Dict::new().with("features", f)
    };
    let broker = features(&[
        "publisher_identification",
        "publisher_exclusion",
        "subscriber_blackwhite_listing",
        "pattern_based_subscription",
    ]);
    let dealer = features(&[
        "caller_identification",
        "pattern_based_registration",
        "shared_registration",
        "progressive_call_results",
        "call_canceling",
        "call_reroute",
    ]);
    Dict::new()
        .with("authid", authid)
        .with("authrole", authrole)
        .with("authmethod", "anonymous")
        .with("authprovider", "static")
        .with("authextra", Dict::new().with("_shard", shard as u64))
        .with("roles", Dict::new().with("broker", broker).with("dealer", dealer))
        .with("agent", concat!("shardbar-", env!("CARGO_PKG_VERSION")))
}
