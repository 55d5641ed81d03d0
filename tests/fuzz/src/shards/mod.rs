//! The structure-aware target: N `ShardCore`s in one thread, joined by an in-memory mesh
//! that is FIFO per (from, to) pair (the runtime's guarantee) with the order across pairs
//! chosen by the input, driven by arbitrary actions of several clients (see `scenario`).
//!
//! Checked besides "no panic", while it runs: the router's frames decode in each client's
//! serializer, the per-message checks of `client`, no connection's out queue holds more
//! than `pending_bytes_max`, and the mesh carries no more than `MESH_MESSAGES_PER_INPUT`
//! messages per shard per input the harness gave (so no message storm or ping-pong between
//! shards). At the end every client reads, every pending INVOCATION is answered, the mesh
//! drains, and every checked CALL of a client whose session is still alive must have had
//! exactly one final answer.
//!
//! The harness logic follows `tests/sim/mod.rs`; it is copied (small), not imported, so
//! this crate depends on the library only.

mod client;
pub mod scenario;

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardbar::proto::core::{ConnInfo, CoreConfig, CoreEvent, ShardCore};
use shardbar::proto::frame::{Framing, Transport};
use shardbar::proto::mesh::MeshMsg;
use shardbar::proto::realm::{RealmConfig, RouterConfig, SlowConsumerPolicy};
use shardbar::proto::session::ConnId;
use shardbar::proto::wire::message::code;
use shardbar::proto::wire::{Dict, Message, Payload, Serializer, Value, decode, encode_to_vec};

use self::client::Client;
use self::scenario::{ACTIONS_MAX, Action, CLIENTS_MAX, MARK, Scenario};
use crate::codecs::payload_of;

/// Mesh messages allowed per shard per input (a client message, open, close, pong, or a
/// timer run). The worst single inputs measured in this harness: a session ending, which
/// releases each of its routes at its owner shard, which tells every shard; and a CALL,
/// which may be re-routed up to `limits::CALL_REROUTES_MAX` times. Each of those routes
/// and calls was itself an input, so spread over all inputs the ratio stays small: at most
/// 1.3 over the corpora of 150-second runs (`SHARDBAR_FUZZ_STATS` prints it). The
/// constant leaves a wide margin; a storm or a ping-pong between shards goes past it.
const MESH_MESSAGES_PER_INPUT: u64 = 16;

/// Rounds of "read everything, answer every INVOCATION, drain the mesh" at the end; a
/// round that answers nothing ends it early. Re-routing (`wamp.error.unavailable`) is not
/// used there, so one round normally suffices.
const FINISH_ROUNDS: usize = 8;

/// Timer runs allowed in one `Advance` (a storm of re-armed timers is a bug).
const TIMER_RUNS_PER_ADVANCE_MAX: usize = 10_000;

/// Run one input. With `SHARDBAR_FUZZ_STATS` set, print what it exercised (to see what a
/// corpus reaches, and the mesh ratio `MESH_MESSAGES_PER_INPUT` bounds).
pub fn run(scenario: &Scenario) {
    let mut world = World::new(scenario);
    for action in scenario.actions.iter().take(ACTIONS_MAX) {
        world.act(action);
        if scenario.settle_each {
            world.settle();
        }
        world.check_bounds();
    }
    let calls_checked = world.finish();
    static STATS: OnceLock<bool> = OnceLock::new();
    if *STATS.get_or_init(|| std::env::var_os("SHARDBAR_FUZZ_STATS").is_some()) {
        let w = &world;
        let events: u64 = w.clients.iter().map(|c| c.events_checked).sum();
        let ratio = w.mesh_sent as f64 / (w.cores.len() as u64 * (w.inputs + 1)) as f64;
        eprintln!(
            "shards stats: shards {} clients {} inputs {} mesh {} ratio {ratio:.2} calls_checked {calls_checked} \
             events_checked {events}",
            w.cores.len(),
            w.clients.len(),
            w.inputs,
            w.mesh_sent,
        );
    }
}

struct World {
    cores: Vec<ShardCore>,
    /// queues[from][to]: mesh batches in flight, FIFO.
    queues: Vec<Vec<VecDeque<Vec<MeshMsg>>>>,
    clients: Vec<Client>,
    now: Instant,
    pending_bytes_max: usize,
    /// `handle_*` calls made for clients and the clock (mesh deliveries are not counted).
    inputs: u64,
    /// Mesh messages the cores have sent, in all.
    mesh_sent: u64,
    /// Rotates the (from, to) pair `Settle` delivers from.
    settle_turn: usize,
    dirty: Vec<ConnId>,
}

/// Every static method on the one listener, so inputs reach the CHALLENGE/AUTHENTICATE
/// paths (HELLOs without `authmethods` still get anonymous). Cheap to build: the salted
/// WAMP-CRA principal uses one PBKDF2 iteration.
fn auth_config() -> shardbar::proto::auth::AuthConfig {
    use shardbar::proto::auth::config::*;
    use shardbar::proto::auth::{AuthConfig, cryptosign, wampcra};
    let id = |a: &str| Identity { authid: Arc::from(a), role: Arc::from("user"), realm: None, extra: None };
    let mut ticket = Principals::new();
    ticket.insert(Arc::from("joe"), TicketPrincipal { id: id("joe"), ticket: Secret(b"t".to_vec()) });
    let mut cra = Principals::new();
    cra.insert(Arc::from("svc"), CraPrincipal { id: id("svc"), key: Secret(b"s".to_vec()), salt: None });
    let salt = CraSalt { salt: "x".into(), iterations: 1, keylen: 32 };
    let key = Secret(wampcra::derive_key("s", "x", 1, 32));
    cra.insert(Arc::from("salty"), CraPrincipal { id: id("salty"), key, salt: Some(salt) });
    let mut cs = Principals::new();
    let keys = vec![cryptosign::keypair_from_seed(&[7; 32])];
    cs.insert(Arc::from("dev"), CryptosignPrincipal { id: id("dev"), authorized_keys: keys });
    let la = ListenerAuth {
        anonymous: Some(Arc::from("anonymous")),
        ticket: Some(Method::Static(ticket)),
        wampcra: Some(Method::Static(cra)),
        cryptosign: Some(Method::Static(cs)),
        scram: None,
        tls: None,
    };
    AuthConfig { listeners: vec![la] }
}

impl World {
    fn new(scenario: &Scenario) -> World {
        let shards = scenario.shard_count();
        let slow_consumer =
            if scenario.drop_slow_events { SlowConsumerPolicy::Drop } else { SlowConsumerPolicy::Disconnect };
        let pending_bytes_max = scenario.cap.bytes();
        let router = Arc::new(RouterConfig {
            realms: vec![RealmConfig { slow_consumer, ..RealmConfig::new("realm1") }],
            pending_bytes_max,
            auth: Arc::new(auth_config()),
            ..RouterConfig::default()
        });
        // The only clock read: every later time is this plus what the input says.
        let now = Instant::now();
        let cores = (0..shards)
            .map(|shard| ShardCore::new(CoreConfig { shard, shards, seed: 7, router: router.clone(), auth_seed: [7; 32], wall_clock: std::time::UNIX_EPOCH }, now))
            .collect();
        World {
            cores,
            queues: (0..shards).map(|_| (0..shards).map(|_| VecDeque::new()).collect()).collect(),
            clients: Vec::new(),
            now,
            pending_bytes_max,
            inputs: 0,
            mesh_sent: 0,
            settle_turn: 0,
            dirty: Vec::new(),
        }
    }

    /// The open client that `index` picks, if any.
    fn pick(&self, index: u8) -> Option<usize> {
        let open: Vec<usize> = (0..self.clients.len()).filter(|&c| !self.clients[c].closed).collect();
        (!open.is_empty()).then(|| open[usize::from(index) % open.len()])
    }

    fn act(&mut self, action: &Action) {
        match *action {
            Action::Open { shard, serializer, websocket, small_peer_limit, hello } => {
                if self.open(shard, serializer, websocket, small_peer_limit) && hello {
                    let c = self.clients.len() - 1;
                    self.client_act(c, &Action::Hello { client: 0, unknown_realm: false });
                }
            }
            Action::Deliver { pick, count } => {
                for i in 0..=count % 32 {
                    if !self.step(usize::from(pick.wrapping_add(i.wrapping_mul(7)))) {
                        break;
                    }
                }
            }
            Action::Settle => self.settle(),
            Action::Advance { ms } => self.advance(Duration::from_millis(u64::from(ms))),
            Action::Hello { client, .. }
            | Action::Subscribe { client, .. }
            | Action::Unsubscribe { client, .. }
            | Action::Publish { client, .. }
            | Action::Register { client, .. }
            | Action::Unregister { client, .. }
            | Action::Call { client, .. }
            | Action::Yield { client, .. }
            | Action::InvocationError { client, .. }
            | Action::Cancel { client, .. }
            | Action::Goodbye { client }
            | Action::Close { client }
            | Action::Garbage { client, .. }
            | Action::Reading { client, .. }
            | Action::Rx { client }
            | Action::Pong { client }
            | Action::PeerPing { client } => {
                if let Some(c) = self.pick(client) {
                    self.client_act(c, action);
                }
            }
        }
    }

    /// Open a connection; false when `CLIENTS_MAX` are open already.
    fn open(&mut self, shard: u8, serializer: u8, websocket: bool, small_peer_limit: bool) -> bool {
        if self.clients.len() >= CLIENTS_MAX {
            return false;
        }
        let shard = usize::from(shard) % self.cores.len();
        let ser = Serializer::ALL[usize::from(serializer) % 3];
        let transport = if websocket { Transport::WebSocket } else { Transport::RawSocket };
        // A RawSocket peer may announce the smallest receive limit, 2^9 bytes.
        let max_out_message = if small_peer_limit && !websocket { 512 } else { usize::MAX };
        let info = ConnInfo { framing: Framing { transport, serializer: ser }, max_out_message, origin: Default::default() };
        self.inputs += 1;
        let conn = self.cores[shard].handle_open(info, self.now);
        self.clients.push(Client::new(shard, conn, ser, transport));
        self.collect(shard);
        true
    }

    /// One action of open client `c`.
    fn client_act(&mut self, c: usize, action: &Action) {
        match *action {
            Action::Hello { unknown_realm, .. } => {
                self.clients[c].in_session = false;
                let realm = if unknown_realm { "fz.nowhere" } else { "realm1" };
                self.send(c, &Message::Hello { realm: realm.into(), details: scenario::hello_details() });
            }
            Action::Subscribe { topic, policy, .. } => {
                let (topic, options) = scenario::route(topic, policy);
                let request = self.clients[c].request();
                self.send(c, &Message::Subscribe { request, options, topic });
            }
            Action::Unsubscribe { which, .. } => {
                let subscription = pick_id(&self.clients[c].subscriptions, which);
                let request = self.clients[c].request();
                self.send(c, &Message::Unsubscribe { request, subscription });
            }
            Action::Publish { topic, exclude_me, acknowledge, size, burst, .. } => {
                for _ in 0..=burst % 8 {
                    let client = &mut self.clients[c];
                    let (request, seq) = (client.request(), client.next_seq);
                    client.next_seq += 1;
                    let args = [Value::str(MARK), Value::UInt(c as u64), Value::UInt(seq), scenario::filler(size)];
                    let payload = Payload::from_values(client.ser, Some(&args), None);
                    let options = Dict::new().with("exclude_me", exclude_me).with("acknowledge", acknowledge);
                    self.send(c, &Message::Publish { request, options, topic: scenario::name(topic), payload });
                }
            }
            Action::Register { procedure, policy, invoke, .. } => {
                let (procedure, options) = scenario::route(procedure, policy);
                let options = options.with("invoke", scenario::invoke_policy(invoke));
                let request = self.clients[c].request();
                self.send(c, &Message::Register { request, options, procedure });
            }
            Action::Unregister { which, .. } => {
                let registration = pick_id(&self.clients[c].registrations, which);
                let request = self.clients[c].request();
                self.send(c, &Message::Unregister { request, registration });
            }
            Action::Call { procedure, receive_progress, timeout_ms, size, .. } => {
                let mut options = Dict::new().with("receive_progress", receive_progress);
                if let Some(ms) = timeout_ms {
                    options.insert("timeout", u64::from(ms));
                }
                let client = &mut self.clients[c];
                let request = client.request();
                let payload = Payload::from_values(client.ser, Some(&[scenario::filler(size)]), None);
                // Recorded first: the answer may come before `send` returns.
                client.called(request);
                self.send(c, &Message::Call { request, options, procedure: scenario::name(procedure), payload });
            }
            _ => self.client_act_more(c, action),
        }
    }

    /// The rest of [`World::client_act`]: answering INVOCATIONs, ending, and transport events.
    fn client_act_more(&mut self, c: usize, action: &Action) {
        match *action {
            Action::Yield { which, progress, size, .. } => {
                let request = self.take_invocation(c, which, !progress);
                let options = if progress { Dict::new().with("progress", true) } else { Dict::new() };
                let payload = Payload::from_values(self.clients[c].ser, Some(&[scenario::filler(size)]), None);
                self.send(c, &Message::Yield { request, options, payload });
            }
            Action::InvocationError { which, unavailable, .. } => {
                let request = self.take_invocation(c, which, true);
                let error = if unavailable { "wamp.error.unavailable" } else { "fz.error.failed" };
                let details = Dict::new();
                let payload = Payload::empty();
                let msg =
                    Message::Error { request_type: code::INVOCATION, request, details, error: error.into(), payload };
                self.send(c, &msg);
            }
            Action::Cancel { which, mode, .. } => {
                let open: Vec<u64> =
                    self.clients[c].calls.iter().filter(|(_, t)| t.finals == 0).map(|(r, _)| *r).collect();
                let request = pick_id(&open, which);
                let options = Dict::new().with("mode", scenario::cancel_mode(mode));
                self.send(c, &Message::Cancel { request, options });
            }
            Action::Goodbye { .. } => {
                self.clients[c].in_session = false;
                let reason = "wamp.close.close_realm".to_owned();
                self.send(c, &Message::Goodbye { details: Dict::new(), reason });
            }
            Action::Close { .. } => {
                self.clients[c].closed = true;
                let (shard, conn) = (self.clients[c].shard, self.clients[c].conn);
                self.inputs += 1;
                self.cores[shard].handle_close(conn, self.now);
                self.collect(shard);
            }
            Action::Garbage { ref bytes, .. } => self.garbage(c, bytes),
            Action::Reading { on, .. } => {
                self.clients[c].reading = on;
                if on {
                    self.drain(c);
                }
            }
            Action::Rx { .. } | Action::Pong { .. } | Action::PeerPing { .. } => {
                let (shard, conn) = (self.clients[c].shard, self.clients[c].conn);
                self.inputs += 1;
                match action {
                    Action::Rx { .. } => self.cores[shard].handle_rx(conn, self.now),
                    Action::Pong { .. } => self.cores[shard].handle_pong(conn),
                    _ => self.cores[shard].handle_peer_ping(conn, self.now),
                }
                self.collect(shard);
            }
            _ => unreachable!("client_act handles {action:?}"),
        }
    }

    /// The INVOCATION request `which` picks (any ID when none is pending: a hostile
    /// callee), removed from the pending ones if `finally`.
    fn take_invocation(&mut self, c: usize, which: u8, finally: bool) -> u64 {
        let pending = &mut self.clients[c].invocations;
        if pending.is_empty() {
            return u64::from(which);
        }
        let i = usize::from(which) % pending.len();
        if finally { pending.remove(i).unwrap_or_default() } else { pending[i] }
    }

    /// Send `bytes` as one message. One that decodes is sent too, but makes the client's
    /// RPC answers unchecked from now on; one whose payload mentions the publication mark
    /// is not sent (it would forge a checked EVENT).
    fn garbage(&mut self, c: usize, bytes: &[u8]) {
        let frame = Bytes::copy_from_slice(bytes);
        if let Ok(msg) = decode(self.clients[c].ser, &frame) {
            let values = payload_of(&msg).and_then(|p| p.values().ok()).unwrap_or_default();
            if values.iter().any(scenario::mentions_mark) {
                return;
            }
            self.clients[c].tainted = true;
        }
        self.send_frame(c, frame);
    }

    fn send(&mut self, c: usize, msg: &Message) {
        let bytes = encode_to_vec(self.clients[c].ser, msg).unwrap_or_else(|e| panic!("encode {msg:?}: {e}"));
        self.send_frame(c, Bytes::from(bytes));
    }

    fn send_frame(&mut self, c: usize, frame: Bytes) {
        let (shard, conn) = (self.clients[c].shard, self.clients[c].conn);
        self.inputs += 1;
        self.cores[shard].handle_message(conn, frame, self.now);
        self.collect(shard);
    }

    /// Gather a core's outputs until it has none: mesh batches into the pair queues, frames
    /// to reading clients, and closes (a close may produce more of both).
    fn collect(&mut self, shard: usize) {
        loop {
            while let Some((to, batch)) = self.cores[shard].poll_mesh() {
                self.mesh_sent += batch.len() as u64;
                self.queues[shard][to].push_back(batch);
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            self.cores[shard].take_dirty(&mut dirty);
            for conn in dirty.drain(..) {
                if let Some(c) = self.client_on(shard, conn)
                    && self.clients[c].reading
                {
                    self.drain(c);
                }
            }
            self.dirty = dirty;
            let Some(event) = self.cores[shard].poll_event() else { break };
            if let CoreEvent::Close { conn, .. } = event {
                if let Some(c) = self.client_on(shard, conn) {
                    // A runtime flushes what is queued before closing.
                    self.drain(c);
                    self.clients[c].closed = true;
                }
                self.cores[shard].handle_close(conn, self.now);
            }
        }
    }

    fn client_on(&self, shard: usize, conn: ConnId) -> Option<usize> {
        self.clients.iter().position(|c| c.shard == shard && c.conn == conn && !c.closed)
    }

    /// Client `c` reads everything queued for it.
    fn drain(&mut self, c: usize) {
        let (shard, conn, ser, transport) =
            (self.clients[c].shard, self.clients[c].conn, self.clients[c].ser, self.clients[c].transport);
        let mut bytes = Vec::new();
        if let Some(q) = self.cores[shard].out_queue(conn) {
            q.drain_into(&mut bytes, usize::MAX);
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (head, len) = frame_len(transport, rest);
            let Some(body) = rest.get(head..head + len) else { panic!("client {c}: a partial frame was queued") };
            let msg = decode(ser, &Bytes::copy_from_slice(body))
                .unwrap_or_else(|e| panic!("client {c}: the router sent undecodable {ser:?}: {e}"));
            self.clients[c].receive(c, &msg);
            rest = &rest[head + len..];
        }
    }

    /// Deliver the oldest batch of the non-empty (from, to) pair `pick` chooses. False if
    /// the mesh is idle.
    fn step(&mut self, pick: usize) -> bool {
        let n = self.cores.len();
        let pairs: Vec<(usize, usize)> =
            (0..n * n).map(|i| (i / n, i % n)).filter(|&(f, t)| !self.queues[f][t].is_empty()).collect();
        let Some(&(from, to)) = pairs.get(pick % pairs.len().max(1)) else { return false };
        let Some(batch) = self.queues[from][to].pop_front() else { return false };
        self.now += Duration::from_micros(10);
        self.cores[to].handle_mesh(from, batch, self.now);
        self.collect(to);
        self.check_mesh();
        true
    }

    fn settle(&mut self) {
        loop {
            self.settle_turn = self.settle_turn.wrapping_add(1);
            if !self.step(self.settle_turn) {
                break;
            }
        }
    }

    /// Let `by` pass: every timer that falls due runs, in time order across shards.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        for _ in 0..TIMER_RUNS_PER_ADVANCE_MAX {
            let due = self.cores.iter().filter_map(ShardCore::poll_timeout).min();
            let Some(at) = due.filter(|&at| at <= end) else {
                self.now = end;
                return;
            };
            self.now = self.now.max(at);
            for shard in 0..self.cores.len() {
                if self.cores[shard].poll_timeout().is_some_and(|at| at <= self.now) {
                    self.inputs += 1;
                    self.cores[shard].handle_timeout(self.now);
                    self.collect(shard);
                }
            }
        }
        panic!("timers still due after {TIMER_RUNS_PER_ADVANCE_MAX} runs in one advance of {by:?}");
    }

    /// Out queues and the mesh stay within their bounds.
    fn check_bounds(&mut self) {
        for c in 0..self.clients.len() {
            let (shard, conn) = (self.clients[c].shard, self.clients[c].conn);
            if self.clients[c].closed {
                continue;
            }
            let queued = self.cores[shard].out_queue(conn).map_or(0, |q| q.bytes());
            assert!(
                queued <= self.pending_bytes_max,
                "client {c}: {queued} bytes queued, cap {}",
                self.pending_bytes_max
            );
        }
        self.check_mesh();
    }

    fn check_mesh(&self) {
        let bound = MESH_MESSAGES_PER_INPUT * self.cores.len() as u64 * (self.inputs + 1);
        assert!(self.mesh_sent <= bound, "{} mesh messages for {} inputs (bound {bound})", self.mesh_sent, self.inputs);
    }

    /// Everyone reads, every INVOCATION is answered, the mesh drains; then every checked
    /// CALL of a live session has had its one final answer. Returns how many were checked.
    fn finish(&mut self) -> usize {
        for _ in 0..FINISH_ROUNDS {
            for c in 0..self.clients.len() {
                if !self.clients[c].closed {
                    self.clients[c].reading = true;
                    self.drain(c);
                }
            }
            self.settle();
            let mut answered = false;
            for c in 0..self.clients.len() {
                while !self.clients[c].closed
                    && let Some(request) = self.clients[c].invocations.pop_front()
                {
                    answered = true;
                    let payload = Payload::from_values(self.clients[c].ser, Some(&[Value::str("done")]), None);
                    self.send(c, &Message::Yield { request, options: Dict::new(), payload });
                }
            }
            self.settle();
            if !answered {
                break;
            }
        }
        self.check_bounds();
        let mut checked = 0;
        for (c, client) in self.clients.iter().enumerate() {
            if !client.checks_calls() {
                continue;
            }
            for (request, track) in &client.calls {
                if track.checked && track.epoch == client.epoch {
                    assert_eq!(track.finals, 1, "client {c}: CALL {request} never answered (session alive)");
                    checked += 1;
                }
            }
        }
        checked
    }
}

/// The ID `which` picks from `ids`, or `which` itself when there are none (a hostile
/// client naming an ID it was never given).
fn pick_id(ids: &[u64], which: u8) -> u64 {
    if ids.is_empty() { u64::from(which) } else { ids[usize::from(which) % ids.len()] }
}

/// (header length, payload length) of the router's frame at the front of `b`: RawSocket
/// message frames, or unmasked unfragmented WebSocket data frames; nothing else may be
/// queued (transport pings are the runtime's).
fn frame_len(transport: Transport, b: &[u8]) -> (usize, usize) {
    match transport {
        Transport::RawSocket => {
            let Some(&[kind, x, y, z]) = b.first_chunk::<4>() else { panic!("a partial RawSocket prefix was queued") };
            assert_eq!(kind, 0, "only RawSocket message frames are queued");
            (4, u32::from_be_bytes([0, x, y, z]) as usize)
        }
        Transport::WebSocket => {
            assert!(
                b.len() >= 2 && (b[0] == 0x81 || b[0] == 0x82),
                "not a final text/binary frame: {:02x?}",
                &b[..2.min(b.len())]
            );
            let ext = |n: usize| b.get(2..2 + n).unwrap_or_else(|| panic!("a partial WebSocket header was queued"));
            match b[1] {
                126 => (4, u16::from_be_bytes([ext(2)[0], ext(2)[1]]) as usize),
                127 => (10, u64::from_be_bytes(ext(8).try_into().unwrap_or_default()) as usize),
                n => (2, usize::from(n)),
            }
        }
    }
}
