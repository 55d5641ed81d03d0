//! A deterministic simulation of a multi-shard router: N `ShardCore`s and scripted
//! clients in one thread, no sockets.
//!
//! Mesh batches wait in one FIFO queue per (from, to) pair; each step the scheduler picks a
//! random non-empty pair (by seed) and delivers its oldest batch. So delivery order across
//! pairs is shuffled while each pair stays FIFO — exactly the guarantee the runtime's
//! channels give. Clients speak real WAMP bytes (any serializer) over RawSocket framing.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardbar::proto::core::{ConnInfo, CoreConfig, CoreEvent, ShardCore};
use shardbar::proto::frame::{Framing, Transport};
use shardbar::proto::mesh::MeshMsg;
use shardbar::proto::realm::RouterConfig;
use shardbar::proto::session::ConnId;
use shardbar::proto::wire::ids::IdGen;
use shardbar::proto::wire::{Dict, Id, Message, Payload, Serializer, Value, decode, encode_to_vec};

pub struct Client {
    pub shard: usize,
    pub conn: ConnId,
    pub ser: Serializer,
    pub session: Option<Id>,
    pub inbox: VecDeque<Message>,
    /// Every message received, in order (never drained).
    pub log: Vec<Message>,
    pub next_request: Id,
    pub closed: bool,
    /// Transport-level pings the router sent this client.
    pub pings: usize,
    pub transport: Transport,
    /// The client stopped reading: what the router queues for it stays queued, counted
    /// against its pending-bytes cap (set it before the frames to hold are queued).
    pub stalled: bool,
}

pub struct Sim {
    pub rng: IdGen,
    pub cores: Vec<ShardCore>,
    /// queues[from][to]: batches in flight, FIFO.
    queues: Vec<Vec<VecDeque<Vec<MeshMsg>>>>,
    pub clients: Vec<Client>,
    pub now: Instant,
    pub seed: u64,
    dirty: Vec<ConnId>,
}

pub type ClientId = usize;

impl Sim {
    pub fn new(shards: usize, seed: u64) -> Sim {
        Self::with_config(shards, seed, RouterConfig::default())
    }

    pub fn with_config(shards: usize, seed: u64, config: RouterConfig) -> Sim {
        let router = Arc::new(config);
        let now = Instant::now();
        let cores = (0..shards)
            .map(|shard| {
                ShardCore::new(
                    CoreConfig {
                        shard,
                        shards,
                        seed,
                        router: router.clone(),
                        auth_seed: [seed as u8; 32],
                        wall_clock: std::time::UNIX_EPOCH,
                    },
                    now,
                )
            })
            .collect();
        Sim {
            rng: IdGen::new(seed.wrapping_mul(31).wrapping_add(7)),
            cores,
            queues: (0..shards).map(|_| (0..shards).map(|_| VecDeque::new()).collect()).collect(),
            clients: Vec::new(),
            now,
            seed,
            dirty: Vec::new(),
        }
    }

    pub fn shards(&self) -> usize {
        self.cores.len()
    }

    /// Open a connection on `shard` (no HELLO yet).
    pub fn connect(&mut self, shard: usize, ser: Serializer) -> ClientId {
        self.connect_over(shard, ser, Transport::RawSocket)
    }

    /// Open a connection on `shard` over `transport` (frames are RawSocket-framed in the
    /// simulation either way; the transport decides the liveness-ping policy).
    pub fn connect_over(&mut self, shard: usize, ser: Serializer, transport: Transport) -> ClientId {
        self.connect_limited(shard, ser, transport, usize::MAX)
    }

    /// Open a connection whose client accepts messages of at most `max_out_message` bytes
    /// (the RawSocket handshake's limit).
    pub fn connect_limited(
        &mut self,
        shard: usize,
        ser: Serializer,
        transport: Transport,
        max_out_message: usize,
    ) -> ClientId {
        let framing = Framing { transport, serializer: ser };
        let conn =
            self.cores[shard].handle_open(ConnInfo { framing, max_out_message, origin: Default::default() }, self.now);
        self.clients.push(Client {
            shard,
            conn,
            ser,
            session: None,
            inbox: VecDeque::new(),
            log: Vec::new(),
            next_request: 0,
            closed: false,
            pings: 0,
            transport,
            stalled: false,
        });
        self.clients.len() - 1
    }

    /// Connect, HELLO and wait for WELCOME.
    pub fn join(&mut self, shard: usize, ser: Serializer) -> ClientId {
        let c = self.connect(shard, ser);
        self.hello(c);
        c
    }

    /// Connect over `transport`, HELLO and wait for WELCOME.
    pub fn join_over(&mut self, shard: usize, ser: Serializer, transport: Transport) -> ClientId {
        let c = self.connect_over(shard, ser, transport);
        self.hello(c);
        c
    }

    /// HELLO to `realm` on an open connection; returns the WELCOME or ABORT.
    pub fn hello_realm(&mut self, c: ClientId, realm: &str) -> Message {
        self.send(c, &Message::Hello { realm: realm.into(), details: Dict::new() });
        let answer = self.wait_for(c, |m| matches!(m, Message::Welcome { .. } | Message::Abort { .. }));
        if let Message::Welcome { session, .. } = &answer {
            self.clients[c].session = Some(*session);
        }
        answer
    }

    /// HELLO on an open connection and wait for WELCOME.
    pub fn hello(&mut self, c: ClientId) {
        let roles = Dict::new()
            .with("publisher", Dict::new())
            .with("subscriber", Dict::new())
            .with("caller", Dict::new().with("features", Dict::new().with("progressive_call_results", true)))
            .with(
                "callee",
                Dict::new()
                    .with("features", Dict::new().with("progressive_call_results", true).with("call_canceling", true)),
            );
        self.send(c, &Message::Hello { realm: "realm1".into(), details: Dict::new().with("roles", roles) });
        let welcome = self.wait_for(c, |m| matches!(m, Message::Welcome { .. } | Message::Abort { .. }));
        match welcome {
            Message::Welcome { session, .. } => self.clients[c].session = Some(session),
            other => panic!("seed {}: expected WELCOME, got {other:?}", self.seed),
        }
    }

    pub fn session(&self, c: ClientId) -> Id {
        self.clients[c].session.expect("client joined")
    }

    pub fn next_request(&mut self, c: ClientId) -> Id {
        self.clients[c].next_request += 1;
        self.clients[c].next_request
    }

    /// Send one message from client `c` (encoded in its serializer).
    pub fn send(&mut self, c: ClientId, msg: &Message) {
        let client = &self.clients[c];
        let bytes = encode_to_vec(client.ser, msg).expect("client encode");
        self.send_raw(c, bytes);
    }

    pub fn send_raw(&mut self, c: ClientId, bytes: Vec<u8>) {
        let (shard, conn) = (self.clients[c].shard, self.clients[c].conn);
        self.cores[shard].handle_message(conn, Bytes::from(bytes), self.now);
        self.collect(shard);
    }

    /// The transport of client `c` drops.
    pub fn disconnect(&mut self, c: ClientId) {
        let (shard, conn) = (self.clients[c].shard, self.clients[c].conn);
        self.clients[c].closed = true;
        self.cores[shard].handle_close(conn, self.now);
        self.collect(shard);
    }

    /// Gather a core's outputs: mesh batches into the pair queues, frames into inboxes,
    /// close events into closed clients.
    fn collect(&mut self, shard: usize) {
        while let Some((to, batch)) = self.cores[shard].poll_mesh() {
            self.queues[shard][to].push_back(batch);
        }
        self.dirty.clear();
        self.cores[shard].take_dirty(&mut self.dirty);
        let dirty = std::mem::take(&mut self.dirty);
        for &conn in &dirty {
            let ci = self.clients.iter().position(|c| c.shard == shard && c.conn == conn);
            if ci.is_some_and(|ci| self.clients[ci].stalled) {
                continue;
            }
            let mut bytes = Vec::new();
            if let Some(q) = self.cores[shard].out_queue(conn) {
                q.drain_into(&mut bytes, usize::MAX);
            }
            let Some(ci) = ci else { continue };
            let (ser, transport) = (self.clients[ci].ser, self.clients[ci].transport);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let (head, len) = match transport {
                    Transport::RawSocket => {
                        assert_eq!(rest[0], 0, "seed {}: only WAMP message frames are expected", self.seed);
                        (4, u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize)
                    }
                    Transport::WebSocket => ws_frame_len(rest),
                };
                let body = Bytes::copy_from_slice(&rest[head..head + len]);
                let msg = decode(ser, &body)
                    .unwrap_or_else(|e| panic!("seed {}: router sent undecodable bytes: {e}", self.seed));
                self.clients[ci].inbox.push_back(msg.clone());
                self.clients[ci].log.push(msg);
                rest = &rest[head + len..];
            }
            assert!(rest.is_empty(), "seed {}: partial frame in the out queue", self.seed);
        }
        self.dirty = dirty;
        while let Some(ev) = self.cores[shard].poll_event() {
            let conn = match ev {
                CoreEvent::Close { conn, .. } => conn,
                CoreEvent::Ping { conn, .. } => {
                    if let Some(ci) = self.clients.iter().position(|c| c.shard == shard && c.conn == conn) {
                        self.clients[ci].pings += 1;
                    }
                    continue;
                }
                CoreEvent::TeardownDone { .. } | CoreEvent::StatsReady { .. } => continue,
            };
            if let Some(ci) = self.clients.iter().position(|c| c.shard == shard && c.conn == conn) {
                self.clients[ci].closed = true;
            }
            self.cores[shard].handle_close(conn, self.now);
            // handle_close may queue more (cleanup messages to owners).
            while let Some((to, batch)) = self.cores[shard].poll_mesh() {
                self.queues[shard][to].push_back(batch);
            }
        }
    }

    /// Let time pass: every core runs the timers that fall due, in time order across
    /// shards (in steps of at most `tick`), with the mesh drained after each.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        let tick = Duration::from_millis(100);
        while self.now < end {
            self.now = (self.now + tick).min(end);
            for shard in 0..self.shards() {
                if self.cores[shard].poll_timeout().is_some_and(|at| at <= self.now) {
                    self.cores[shard].handle_timeout(self.now);
                    self.collect(shard);
                }
            }
            self.run_until_idle();
        }
    }

    /// Client `c` sends bytes (the runtime reports them to the core as input).
    pub fn rx(&mut self, c: ClientId) {
        let (shard, conn) = (self.clients[c].shard, self.clients[c].conn);
        self.cores[shard].handle_rx(conn, self.now);
    }

    /// Client `c` answers a ping.
    pub fn pong(&mut self, c: ClientId) {
        let (shard, conn) = (self.clients[c].shard, self.clients[c].conn);
        self.cores[shard].handle_pong(conn);
    }

    /// Client `c` pings the router (a RawSocket peer that speaks PING/PONG).
    pub fn peer_ping(&mut self, c: ClientId) {
        let (shard, conn) = (self.clients[c].shard, self.clients[c].conn);
        self.cores[shard].handle_peer_ping(conn, self.now);
        self.collect(shard);
    }

    /// Deliver one batch from a random non-empty (from, to) queue. False if all are empty.
    pub fn step(&mut self) -> bool {
        let n = self.shards();
        let mut candidates = Vec::new();
        for from in 0..n {
            for to in 0..n {
                if !self.queues[from][to].is_empty() {
                    candidates.push((from, to));
                }
            }
        }
        if candidates.is_empty() {
            return false;
        }
        let (from, to) = candidates[self.rng.below(candidates.len())];
        let batch = self.queues[from][to].pop_front().expect("non-empty");
        self.now += Duration::from_micros(10);
        self.cores[to].handle_mesh(from, batch, self.now);
        self.collect(to);
        true
    }

    /// Run up to `n` random steps (partial progress, to interleave with client actions).
    pub fn run_some(&mut self, n: usize) {
        for _ in 0..n {
            if !self.step() {
                break;
            }
        }
    }

    pub fn run_until_idle(&mut self) {
        let mut steps = 0;
        while self.step() {
            steps += 1;
            assert!(steps < 1_000_000, "seed {}: mesh never went idle", self.seed);
        }
    }

    /// Run until client `c` has a message matching `pred` (messages before it stay in the
    /// inbox) and return it.
    pub fn wait_for(&mut self, c: ClientId, pred: impl Fn(&Message) -> bool) -> Message {
        loop {
            if let Some(i) = self.clients[c].inbox.iter().position(&pred) {
                return self.clients[c].inbox.remove(i).expect("index valid");
            }
            assert!(
                self.step(),
                "seed {}: client {c} waits for a message that never comes; inbox: {:?}",
                self.seed,
                self.clients[c].inbox
            );
        }
    }

    // ---- scripted client actions ----

    pub fn subscribe(&mut self, c: ClientId, topic: &str, options: Dict) -> Id {
        let request = self.next_request(c);
        self.send(c, &Message::Subscribe { request, options, topic: topic.into() });
        request
    }

    /// Subscribe and wait for SUBSCRIBED; returns the subscription ID.
    pub fn subscribe_wait(&mut self, c: ClientId, topic: &str, options: Dict) -> Id {
        let request = self.subscribe(c, topic, options);
        match self.wait_for(c, |m| matches!(m, Message::Subscribed { request: r, .. } | Message::Error { request: r, .. } if *r == request)) {
            Message::Subscribed { subscription, .. } => subscription,
            other => panic!("seed {}: SUBSCRIBE to {topic} failed: {other:?}", self.seed),
        }
    }

    pub fn publish(&mut self, c: ClientId, topic: &str, options: Dict, args: Vec<Value>) -> Id {
        let request = self.next_request(c);
        let payload = Payload::from_values(self.clients[c].ser, Some(&args), None);
        self.send(c, &Message::Publish { request, options, topic: topic.into(), payload });
        request
    }

    pub fn register(&mut self, c: ClientId, procedure: &str, options: Dict) -> Id {
        let request = self.next_request(c);
        self.send(c, &Message::Register { request, options, procedure: procedure.into() });
        request
    }

    /// Register and wait; Ok(registration) or Err(error URI).
    pub fn register_wait(&mut self, c: ClientId, procedure: &str, options: Dict) -> Result<Id, String> {
        let request = self.register(c, procedure, options);
        match self.wait_for(c, |m| matches!(m, Message::Registered { request: r, .. } | Message::Error { request: r, .. } if *r == request)) {
            Message::Registered { registration, .. } => Ok(registration),
            Message::Error { error, .. } => Err(error),
            _ => unreachable!(),
        }
    }

    pub fn call(&mut self, c: ClientId, procedure: &str, options: Dict, args: Vec<Value>) -> Id {
        let request = self.next_request(c);
        let payload = Payload::from_values(self.clients[c].ser, Some(&args), None);
        self.send(c, &Message::Call { request, options, procedure: procedure.into(), payload });
        request
    }

    pub fn yield_(&mut self, c: ClientId, request: Id, options: Dict, args: Vec<Value>) {
        let payload = Payload::from_values(self.clients[c].ser, Some(&args), None);
        self.send(c, &Message::Yield { request, options, payload });
    }

    /// Take every EVENT in client `c`'s inbox, leaving other messages.
    pub fn take_events(&mut self, c: ClientId) -> Vec<(Id, Dict, Vec<Value>)> {
        let mut out = Vec::new();
        let inbox = std::mem::take(&mut self.clients[c].inbox);
        for m in inbox {
            match m {
                Message::Event { subscription, details, payload, .. } => {
                    out.push((subscription, details, payload.args().expect("event args")))
                }
                other => self.clients[c].inbox.push_back(other),
            }
        }
        out
    }
}

/// A server-to-client WebSocket data frame (unmasked, unfragmented): (header length,
/// payload length).
fn ws_frame_len(b: &[u8]) -> (usize, usize) {
    assert!(b[0] == 0x81 || b[0] == 0x82, "only final text/binary frames are expected, got {:#x}", b[0]);
    match b[1] {
        126 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
        127 => (10, u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize),
        n => (2, n as usize),
    }
}

/// Run `f` for every seed; on failure report the seed so it can be replayed.
pub fn for_seeds(name: &str, seeds: std::ops::Range<u64>, f: impl Fn(u64)) {
    for seed in seeds {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(seed)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{name}: failed with seed {seed} (replay: SIM_SEED={seed}): {msg}");
        }
    }
}

/// Seeds to run: `SIM_SEED=n` replays one seed, else `0..count`.
pub fn seeds(count: u64) -> std::ops::Range<u64> {
    match std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => s..s + 1,
        None => 0..count,
    }
}

pub fn serializer_for(i: usize) -> Serializer {
    Serializer::ALL[i % 3]
}
