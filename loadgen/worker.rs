//! A worker thread: one epoll loop over its share of the sessions, playing their roles.
//!
//! Each turn: wait for readiness (or the next open-loop send time), read every ready
//! socket and handle every whole message in it, let the sources (publishers, callers) send
//! what is due, write each connection's queued bytes once, then publish counters to the
//! other threads. All recording (histograms, sequence trackers) is thread-local; the only
//! shared writes are a few counters per turn.
//!
//! Closed loop across threads: a publisher may have `window` publications per flow in
//! flight, counted as `published × receivers − delivered` where `delivered` sums every
//! worker's counter for the flow. A worker whose publisher is blocked on the window sets
//! its `waiting` flag before sleeping; a worker that raises a delivered counter wakes it
//! through its eventfd (the flag and the counter are both SeqCst, so one of the two sides
//! always sees the other).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardbar::proto::wire::message::code;
use shardbar::proto::wire::{Dict, Message, Serializer, Value};

use crate::client::{self, Conn, Opening, State, Transport};
use crate::pacer::Pacer;
use crate::payload::{self, Probe, Scan};
use crate::plan::{Plan, RoleSpec};
use crate::seq::{Integrity, OrderTracker, SeqTracker};
use crate::stats::Latency;
use crate::sys::{Epoll, EventFd, WAKE_TOKEN};

/// Most messages one source sends per turn (then the loop serves its sockets again).
const SEND_BUDGET_PER_TURN: u64 = 512;

/// A source stops generating while this many bytes wait in its socket buffer: the router is
/// not reading. Open loop keeps its schedule, so the stall shows up in the latencies.
const SOURCE_PENDING_MAX_BYTES: usize = 4 << 20;

/// Open-loop callers stop generating at this many calls outstanding (shardbar's per-session
/// limit is 65,536); the schedule keeps running.
const CALLS_OUTSTANDING_MAX: u64 = 60_000;

/// Reads per connection per turn.
const READS_PER_TURN: usize = 4;

/// How long the end of a run may spend reading a stalled subscriber's backlog.
const STALL_DRAIN: Duration = Duration::from_secs(2);

/// Error texts kept for the report.
const ERROR_SAMPLES_MAX: usize = 20;

/// Per-worker live counters, read by the main thread for progress and the drain.
#[derive(Default)]
#[repr(align(128))]
pub struct Live {
    pub received: AtomicU64,
    pub sent: AtomicU64,
    /// Deliveries expected from what this worker's publishers sent.
    pub expected: AtomicU64,
    /// Deliveries (events) received by this worker's subscribers.
    pub delivered: AtomicU64,
    pub outstanding: AtomicU64,
    pub errors: AtomicU64,
    /// Every source of this worker is past the end of the measurement: `expected` (stored
    /// before this flag) counts its last message. The drain waits for it on every worker,
    /// so it never compares deliveries with a count that is still growing.
    pub sources_done: AtomicBool,
}

/// State shared by the main thread and the workers.
pub struct Shared {
    pub epoch: Instant,
    /// Sessions are set up: sources may start.
    pub go: AtomicBool,
    pub done: AtomicBool,
    pub start_ns: AtomicU64,
    pub measure_start_ns: AtomicU64,
    pub measure_end_ns: AtomicU64,
    pub ready: AtomicUsize,
    pub failed: AtomicUsize,
    /// Sessions closed by the router after they were ready.
    pub dropped: AtomicUsize,
    pub wakers: Vec<EventFd>,
    waiting: Vec<AtomicBool>,
    /// [worker][flow] deliveries received so far.
    delivered: Vec<Box<[AtomicU64]>>,
    pub live: Vec<Live>,
    pub errors: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(workers: usize, flows: usize) -> std::io::Result<Shared> {
        Ok(Shared {
            epoch: Instant::now(),
            go: AtomicBool::new(false),
            done: AtomicBool::new(false),
            start_ns: AtomicU64::new(0),
            measure_start_ns: AtomicU64::new(u64::MAX),
            measure_end_ns: AtomicU64::new(u64::MAX),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            wakers: (0..workers).map(|_| EventFd::new()).collect::<Result<_, _>>()?,
            waiting: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            delivered: (0..workers).map(|_| (0..flows).map(|_| AtomicU64::new(0)).collect()).collect(),
            live: (0..workers).map(|_| Live::default()).collect(),
            errors: Mutex::new(Vec::new()),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn wake_all(&self) {
        self.wakers.iter().for_each(EventFd::wake);
    }

    pub fn error(&self, msg: String) {
        if let Ok(mut e) = self.errors.lock()
            && e.len() < ERROR_SAMPLES_MAX
        {
            e.push(msg);
        }
    }

    /// Keep `msg` only if no sample yet ends with `why` (a login storm refused 10k times
    /// for one reason keeps one sample of it).
    pub fn error_distinct(&self, why: &str, msg: String) {
        if let Ok(mut e) = self.errors.lock()
            && e.len() < ERROR_SAMPLES_MAX
            && !e.iter().any(|m| m.ends_with(why))
        {
            e.push(msg);
        }
    }
}

/// What a worker hands back when the run ends.
#[derive(Default)]
pub struct WorkerResult {
    pub latency: Latency,
    pub setup: Latency,
    pub received_window: u64,
    pub sent_window: u64,
    pub bytes_in_window: u64,
    pub bytes_out_window: u64,
    pub integrity: Integrity,
    /// Final sequence number per flow of this worker's sources (= messages sent).
    pub published: Vec<u64>,
    /// Per flow: sum over this worker's receivers of the last number seen, and how many
    /// receivers that is (tail loss = receivers × published − Σ last).
    pub last_sum: Vec<u64>,
    pub receivers: Vec<u64>,
    pub outstanding: u64,
    /// Stalled subscribers, and how many of them the router had closed by the end.
    pub stalled: u64,
    pub stalled_closed: u64,
    /// ERRORs, unexpected or undecodable messages.
    pub protocol_errors: u64,
    /// Session openings the router ABORTed, by reason URI.
    pub aborts: BTreeMap<String, u64>,
}

struct Source {
    index: u32,
    next_topic: usize,
    /// Per topic (publisher) or single (caller) sequence: messages sent.
    seq: Vec<u64>,
    gseq: u64,
    pacer: Option<Pacer>,
    outstanding: u64,
    /// Results in call order (single callee or raw echo).
    results: SeqTracker,
    stopped: bool,
}

struct Sink {
    trackers: Vec<SeqTracker>,
    order: Vec<OrderTracker>,
    topics: Vec<u32>,
}

enum Role {
    Publisher(Source),
    Subscriber(Sink),
    Caller(Source),
    Callee(Vec<OrderTracker>),
    Stalled,
    Idle,
}

struct Session {
    conn: Conn,
    role: Role,
    spec: RoleSpec,
    dirty: bool,
}

/// Thread-local recording state.
struct Ctx {
    latency: Latency,
    setup: Latency,
    now_ns: u64,
    measure_start: u64,
    measure_end: u64,
    received_window: u64,
    sent_window: u64,
    bytes_in_window: u64,
    bytes_out_window: u64,
    integrity: Integrity,
    local_delivered: Vec<u64>,
    flow_dirty: Vec<bool>,
    dirty_flows: Vec<usize>,
    received_total: u64,
    sent_total: u64,
    expected: u64,
    delivered_total: u64,
    protocol_errors: u64,
    aborts: BTreeMap<String, u64>,
    args: Vec<u8>,
}

impl Ctx {
    fn in_window(&self, t: u64) -> bool {
        t >= self.measure_start && t < self.measure_end
    }
}

pub struct Worker {
    id: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    epoll: Epoll,
    sessions: Vec<Session>,
    next_connect: usize,
    handshaking: usize,
    dirty: Vec<usize>,
    sources: Vec<usize>,
    ctx: Ctx,
    started: bool,
}

impl Worker {
    pub fn new(id: usize, plan: Arc<Plan>, shared: Arc<Shared>, specs: Vec<RoleSpec>) -> std::io::Result<Worker> {
        let epoll = Epoll::new()?;
        epoll.add(shared.wakers[id].fd(), WAKE_TOKEN, libc::EPOLLIN as u32)?;
        let transport = plan.transport();
        let ser = plan.target.serializer;
        let publishers = plan.sources;
        let topics = plan.topics();
        let sessions: Vec<Session> = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let (role, raw_role) = match &spec {
                    RoleSpec::Publisher(p) => (Role::Publisher(Source::new(*p, topics)), client::RAW_ROLE_PUBLISHER),
                    RoleSpec::Subscriber(ts) => (
                        Role::Subscriber(Sink {
                            trackers: vec![SeqTracker::default(); plan.flows],
                            order: vec![OrderTracker::default(); publishers],
                            topics: ts.clone(),
                        }),
                        client::RAW_ROLE_SUBSCRIBER,
                    ),
                    RoleSpec::Caller(c) => (Role::Caller(Source::new(*c, 1)), client::RAW_ROLE_ECHO),
                    RoleSpec::Callee => {
                        (Role::Callee(vec![OrderTracker::default(); publishers]), client::RAW_ROLE_ECHO)
                    }
                    RoleSpec::Stalled(_) => (Role::Stalled, client::RAW_ROLE_SUBSCRIBER),
                    RoleSpec::Idle => (Role::Idle, client::RAW_ROLE_ECHO),
                };
                let busy = !matches!(spec, RoleSpec::Idle);
                let seed = (id as u32).wrapping_mul(0x9E37_79B9) ^ (i as u32).wrapping_mul(0x85EB_CA6B);
                Session { conn: Conn::new(transport, ser, busy, raw_role, seed), role, spec, dirty: false }
            })
            .collect();
        let sources = sessions
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.role, Role::Publisher(_) | Role::Caller(_)))
            .map(|(i, _)| i)
            .collect();
        let flows = plan.flows;
        Ok(Worker {
            id,
            plan,
            shared,
            epoll,
            sessions,
            next_connect: 0,
            handshaking: 0,
            dirty: Vec::new(),
            sources,
            ctx: Ctx {
                latency: Latency::new(),
                setup: Latency::new(),
                now_ns: 0,
                measure_start: u64::MAX,
                measure_end: u64::MAX,
                received_window: 0,
                sent_window: 0,
                bytes_in_window: 0,
                bytes_out_window: 0,
                integrity: Integrity::default(),
                local_delivered: vec![0; flows],
                flow_dirty: vec![false; flows],
                dirty_flows: Vec::new(),
                received_total: 0,
                sent_total: 0,
                expected: 0,
                delivered_total: 0,
                protocol_errors: 0,
                aborts: BTreeMap::new(),
                args: Vec::with_capacity(256),
            },
            started: false,
        })
    }

    pub fn run(mut self) -> WorkerResult {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        loop {
            if self.shared.done.load(Ordering::Acquire) {
                break;
            }
            self.ctx.now_ns = self.shared.now_ns();
            self.start_connects();
            let go = self.shared.go.load(Ordering::Acquire);
            if go && !self.started {
                self.start_sources();
            }
            let mut timeout = Some(Duration::from_millis(if go { 50 } else { 10 }));
            if go {
                // Sources first, so a blocked window is known before deciding to sleep.
                let blocked = self.drive_sources();
                self.flush_dirty();
                self.publish_counters();
                if blocked {
                    self.shared.waiting[self.id].store(true, Ordering::SeqCst);
                    // Re-check after raising the flag: a delivery may have landed between.
                    if !self.drive_sources() {
                        timeout = Some(Duration::ZERO);
                    }
                    self.flush_dirty();
                }
                if let Some(next) = self.next_send_ns() {
                    let now = self.shared.now_ns();
                    let wait = Duration::from_nanos(next.saturating_sub(now));
                    timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
                }
            }
            let n = self.epoll.wait(&mut events, timeout);
            self.shared.waiting[self.id].store(false, Ordering::SeqCst);
            self.ctx.now_ns = self.shared.now_ns();
            for ev in &events[..n] {
                let (token, flags) = (ev.u64, ev.events);
                if token == WAKE_TOKEN {
                    self.shared.wakers[self.id].drain();
                    continue;
                }
                self.handle_event(token as usize, flags);
            }
            if go {
                self.drive_sources();
            }
            self.flush_dirty();
            self.publish_counters();
        }
        self.finish()
    }

    fn start_sources(&mut self) {
        self.started = true;
        let start = self.shared.start_ns.load(Ordering::Acquire);
        self.ctx.measure_start = self.shared.measure_start_ns.load(Ordering::Acquire);
        self.ctx.measure_end = self.shared.measure_end_ns.load(Ordering::Acquire);
        if let Some(rate) = self.plan.rate {
            for &i in &self.sources {
                if let Role::Publisher(s) | Role::Caller(s) = &mut self.sessions[i].role {
                    // Spread sources over one period so they do not all fire at once.
                    let offset = 1_000_000_000 / rate * u64::from(s.index) / self.plan.sources.max(1) as u64;
                    s.pacer = Some(Pacer::new(start + offset, rate));
                }
            }
        }
    }

    fn start_connects(&mut self) {
        while self.handshaking < self.plan.handshakes_max && self.next_connect < self.sessions.len() {
            let i = self.next_connect;
            self.next_connect += 1;
            let s = &mut self.sessions[i];
            // Sessions are dealt to the workers round-robin: worker `id`'s i-th is the run's
            // (i × workers + id)-th, which picks its source address.
            let source = self.plan.target.source_for(i * self.shared.live.len() + self.id);
            let r = s
                .conn
                .connect(self.plan.target.addr, source)
                .and_then(|()| self.epoll.add(s.conn.fd(), i as u64, (libc::EPOLLIN | libc::EPOLLOUT) as u32));
            match r {
                Ok(()) => {
                    s.conn.want_out = true;
                    self.handshaking += 1;
                }
                Err(e) => self.fail(i, format!("connect to {}: {e}", self.plan.target.addr)),
            }
        }
    }

    /// End a session: close it and count why.
    fn fail(&mut self, i: usize, why: String) {
        let s = &mut self.sessions[i];
        let was = s.conn.state;
        if was == State::Closed {
            return;
        }
        if s.conn.fd() >= 0 {
            self.epoll.delete(s.conn.fd());
        }
        s.conn.close();
        if was == State::Ready {
            if matches!(s.role, Role::Stalled) {
                return;
            }
            if !self.shared.done.load(Ordering::Relaxed) {
                self.shared.dropped.fetch_add(1, Ordering::SeqCst);
                self.shared.live[self.id].errors.fetch_add(1, Ordering::Relaxed);
                self.shared.error(format!("session {i} ({:?}) lost: {why}", kind_name(&s.spec)));
            }
        } else {
            self.handshaking = self.handshaking.saturating_sub(1);
            self.shared.failed.fetch_add(1, Ordering::SeqCst);
            self.shared.error_distinct(&why, format!("session {i} setup failed: {why}"));
        }
    }

    fn mark_ready(&mut self, i: usize) {
        let s = &mut self.sessions[i];
        s.conn.state = State::Ready;
        if let Some(t0) = s.conn.started {
            self.ctx.setup.record(t0.elapsed().as_nanos() as u64);
        }
        self.handshaking = self.handshaking.saturating_sub(1);
        self.shared.ready.fetch_add(1, Ordering::SeqCst);
        if matches!(s.role, Role::Stalled) {
            // Never read again: the router's queue for this session can only grow.
            let _ = self.epoll.modify(s.conn.fd(), i as u64, 0);
        }
        if self.plan.close_on_welcome {
            // Login storm: the session has done its part; free the slot for the next one.
            self.epoll.delete(s.conn.fd());
            s.conn.close();
        }
    }

    fn handle_event(&mut self, i: usize, flags: u32) {
        let Some(s) = self.sessions.get_mut(i) else { return };
        if s.conn.state == State::Closed {
            return;
        }
        if s.conn.state == State::Connecting {
            if flags & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
                return;
            }
            if let Err(e) = s.conn.on_connected(&self.plan.target) {
                self.fail(i, e.0);
                return;
            }
            self.mark_dirty(i);
            return;
        }
        if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            let r = s.conn.read_some(READS_PER_TURN);
            // Arrival time of what was just read: latencies end here.
            self.ctx.now_ns = self.shared.now_ns();
            match r {
                Ok(true) => {}
                Ok(false) => {
                    self.process_input(i);
                    self.fail(i, "router closed the connection".into());
                    return;
                }
                Err(e) => {
                    self.fail(i, format!("read: {e}"));
                    return;
                }
            }
            self.process_input(i);
        }
        if flags & libc::EPOLLOUT as u32 != 0 {
            self.mark_dirty(i);
        }
    }

    fn mark_dirty(&mut self, i: usize) {
        let s = &mut self.sessions[i];
        if !s.dirty {
            s.dirty = true;
            self.dirty.push(i);
        }
    }

    fn process_input(&mut self, i: usize) {
        let now = self.ctx.now_ns;
        let s = &mut self.sessions[i];
        let n = s.conn.take_bytes_in();
        if self.ctx.in_window(now) {
            self.ctx.bytes_in_window += n;
        }
        if s.conn.state == State::AwaitTransport {
            match s.conn.advance_transport(&self.plan.target) {
                Ok(false) => {
                    // A TLS handshake step may still have records to send.
                    if s.conn.needs_flush() {
                        self.mark_dirty(i);
                    }
                    return;
                }
                Ok(true) => {
                    if s.conn.state == State::Ready {
                        self.mark_ready(i);
                    }
                    self.mark_dirty(i);
                }
                Err(e) => {
                    self.fail(i, e.0);
                    return;
                }
            }
        }
        loop {
            let s = &mut self.sessions[i];
            let msg = match s.conn.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    self.fail(i, e.0);
                    return;
                }
            };
            if let Err(why) = self.handle_message(i, msg) {
                self.fail(i, why);
                return;
            }
        }
        if self.sessions[i].conn.needs_flush() {
            self.mark_dirty(i);
        }
    }

    fn handle_message(&mut self, i: usize, msg: Bytes) -> Result<(), String> {
        let state = self.sessions[i].conn.state;
        if state != State::Ready {
            return self.handle_setup(i, msg);
        }
        let plan = &*self.plan;
        let ctx = &mut self.ctx;
        let s = &mut self.sessions[i];
        let ser = s.conn.ser;
        if s.conn.transport == Transport::Raw {
            // Raw baseline: the frame is the probe itself.
            return match &mut s.role {
                Role::Subscriber(sink) => {
                    on_event(ctx, plan, sink, ser, &msg);
                    Ok(())
                }
                Role::Caller(src) => {
                    on_result(ctx, src, ser, &msg, true);
                    Ok(())
                }
                _ => Ok(()),
            };
        }
        let scanned = payload::scan(ser, &msg).map_err(|e| format!("bad message from router: {e}"))?;
        match (scanned, &mut s.role) {
            (Scan::Event { args: Some(r) }, Role::Subscriber(sink)) => on_event(ctx, plan, sink, ser, &msg[r]),
            (Scan::Result { args, .. }, Role::Caller(src)) => {
                on_result(ctx, src, ser, args.map_or(&[][..], |r| &msg[r]), plan.callees <= 1)
            }
            (Scan::Invocation { request, args }, Role::Callee(order)) => {
                let args = args.map(|r| &msg[r]);
                if let Some(p) = args.and_then(|a| payload::decode_probe(ser, a))
                    && let Some(o) = order.get_mut(p.source as usize)
                    && !o.observe(p.seq)
                {
                    ctx.integrity.reordered += 1;
                }
                s.conn.send_with(|ser, out| payload::write_yield(ser, request, args, out));
            }
            (Scan::Other(code::PUBLISHED), _) => {}
            (Scan::Other(code::ERROR), role) => {
                let m = s.conn.decode(&msg).map_err(|e| e.0)?;
                ctx.protocol_errors += 1;
                if let (Message::Error { request_type: code::CALL, .. }, Role::Caller(src)) = (&m, role) {
                    src.outstanding = src.outstanding.saturating_sub(1);
                }
                if ctx.protocol_errors <= 5 {
                    self.shared.error(format!("router sent {m:?}"));
                }
            }
            (Scan::Other(code::GOODBYE | code::ABORT), _) => {
                let m = s.conn.decode(&msg).map_err(|e| e.0)?;
                return Err(format!("router ended the session: {m:?}"));
            }
            (other, _) => {
                ctx.protocol_errors += 1;
                if ctx.protocol_errors <= 5 {
                    self.shared.error(format!("unexpected message for a {}: {other:?}", kind_name(&s.spec)));
                }
            }
        }
        Ok(())
    }

    fn handle_setup(&mut self, i: usize, msg: Bytes) -> Result<(), String> {
        let s = &mut self.sessions[i];
        let m = s.conn.decode(&msg).map_err(|e| e.0)?;
        if matches!(s.conn.state, State::AwaitWelcome | State::Authenticating) {
            return match s.conn.on_opening(m, &self.plan.target) {
                Ok(None) => {
                    self.mark_dirty(i);
                    Ok(())
                }
                Ok(Some(_)) => {
                    self.on_welcome(i);
                    Ok(())
                }
                Err(e) => {
                    if let Opening::Aborted { reason, .. } = &e {
                        *self.ctx.aborts.entry(reason.clone()).or_default() += 1;
                    }
                    Err(e.to_string())
                }
            };
        }
        match (s.conn.state, m) {
            (State::Setup, Message::Subscribed { .. } | Message::Registered { .. }) => {
                s.conn.setup_pending -= 1;
                if s.conn.setup_pending == 0 {
                    self.mark_ready(i);
                }
                Ok(())
            }
            (_, Message::Abort { reason, details, .. }) => Err(format!("ABORT {reason} {details:?}")),
            (_, Message::Error { error, .. }) => Err(format!("setup refused: {error}")),
            (st, m) => Err(format!("unexpected {} in state {st:?}", m.name())),
        }
    }

    /// WELCOME: subscribe or register what the role needs, or be ready at once.
    fn on_welcome(&mut self, i: usize) {
        let s = &mut self.sessions[i];
        match &s.spec {
            RoleSpec::Subscriber(ts) | RoleSpec::Stalled(ts) => {
                for &t in ts {
                    let request = s.conn.next_request;
                    s.conn.next_request += 1;
                    s.conn.send(&Message::Subscribe {
                        request,
                        options: Dict::new(),
                        topic: self.plan.topic_names[t as usize].clone(),
                    });
                }
                s.conn.setup_pending = ts.len();
            }
            RoleSpec::Callee => {
                let options = if self.plan.callees > 1 {
                    Dict::new().with("invoke", Value::str("roundrobin"))
                } else {
                    Dict::new()
                };
                let request = s.conn.next_request;
                s.conn.next_request += 1;
                s.conn.send(&Message::Register { request, options, procedure: self.plan.procedure.clone() });
                s.conn.setup_pending = 1;
            }
            _ => {}
        }
        if s.conn.setup_pending == 0 {
            self.mark_ready(i);
        } else {
            s.conn.state = State::Setup;
        }
        self.mark_dirty(i);
    }

    /// Let every source send what is due. Returns true if a closed-loop source is blocked
    /// on its window (and the worker should sleep until a delivery wakes it).
    fn drive_sources(&mut self) -> bool {
        let now = self.shared.now_ns();
        self.ctx.now_ns = now;
        let mut blocked = false;
        for k in 0..self.sources.len() {
            let i = self.sources[k];
            let sent_before = self.ctx.sent_total;
            let s = &mut self.sessions[i];
            if s.conn.state != State::Ready {
                continue;
            }
            if s.conn.pending_out() > SOURCE_PENDING_MAX_BYTES {
                continue;
            }
            let before = s.conn.pending_out();
            match &mut s.role {
                Role::Publisher(src) => {
                    blocked |= drive_publisher(&mut self.ctx, &self.plan, &self.shared, self.id, src, &mut s.conn, now)
                }
                Role::Caller(src) => blocked |= drive_caller(&mut self.ctx, &self.plan, src, &mut s.conn, now),
                _ => {}
            }
            let wrote = s.conn.pending_out().saturating_sub(before) as u64;
            if self.ctx.in_window(now) {
                self.ctx.bytes_out_window += wrote;
            }
            if self.ctx.sent_total != sent_before {
                self.mark_dirty(i);
            }
        }
        blocked
    }

    /// Earliest intended send time among open-loop sources still running.
    fn next_send_ns(&self) -> Option<u64> {
        self.sources
            .iter()
            .filter_map(|&i| match &self.sessions[i].role {
                Role::Publisher(s) | Role::Caller(s) if !s.stopped => s.pacer.as_ref().map(Pacer::next_ns),
                _ => None,
            })
            .min()
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            let s = &mut self.sessions[i];
            s.dirty = false;
            if s.conn.state == State::Closed || s.conn.state == State::Connecting {
                continue;
            }
            match s.conn.flush() {
                Ok(all) => {
                    if all == s.conn.want_out {
                        s.conn.want_out = !all;
                        let ev = if all { libc::EPOLLIN } else { libc::EPOLLIN | libc::EPOLLOUT };
                        let _ = self.epoll.modify(s.conn.fd(), i as u64, ev as u32);
                    }
                }
                Err(e) => self.fail(i, format!("write: {e}")),
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn publish_counters(&mut self) {
        let mut delivered_any = false;
        for &f in &self.ctx.dirty_flows {
            self.shared.delivered[self.id][f].store(self.ctx.local_delivered[f], Ordering::SeqCst);
            self.ctx.flow_dirty[f] = false;
            delivered_any = true;
        }
        self.ctx.dirty_flows.clear();
        if delivered_any {
            for (w, flag) in self.shared.waiting.iter().enumerate() {
                if w != self.id && flag.load(Ordering::SeqCst) && flag.swap(false, Ordering::SeqCst) {
                    self.shared.wakers[w].wake();
                }
            }
        }
        let live = &self.shared.live[self.id];
        live.received.store(self.ctx.received_total, Ordering::Relaxed);
        live.sent.store(self.ctx.sent_total, Ordering::Relaxed);
        live.expected.store(self.ctx.expected, Ordering::Relaxed);
        live.delivered.store(self.ctx.delivered_total, Ordering::Relaxed);
        let outstanding: u64 = self
            .sources
            .iter()
            .map(|&i| match &self.sessions[i].role {
                Role::Caller(s) => s.outstanding,
                _ => 0,
            })
            .sum();
        live.outstanding.store(outstanding, Ordering::Relaxed);
        live.errors.store(self.ctx.protocol_errors + self.ctx.integrity.reordered, Ordering::Relaxed);
        if self.started && self.sources_finished() {
            live.sources_done.store(true, Ordering::Release);
        }
    }

    /// No source of this worker will send again: each is stopped, or paced with its next
    /// tick at or after the end of the measurement.
    fn sources_finished(&self) -> bool {
        let end = self.ctx.measure_end;
        self.ctx.now_ns >= end
            && self.sources.iter().all(|&i| match &self.sessions[i].role {
                Role::Publisher(s) | Role::Caller(s) => {
                    s.stopped || s.pacer.as_ref().is_some_and(|p| p.next_ns() >= end)
                }
                _ => true,
            })
    }

    fn finish(mut self) -> WorkerResult {
        let flows = self.plan.flows;
        let mut r = WorkerResult {
            published: vec![0; flows],
            last_sum: vec![0; flows],
            receivers: vec![0; flows],
            ..WorkerResult::default()
        };
        let topics = self.plan.topics();
        for s in &mut self.sessions {
            match &s.role {
                Role::Publisher(src) => {
                    for (t, &n) in src.seq.iter().enumerate() {
                        r.published[src.index as usize * topics + t] = n;
                    }
                }
                Role::Caller(src) => {
                    r.published[src.index as usize] = src.seq[0];
                    r.outstanding += src.outstanding;
                }
                Role::Subscriber(sink) => {
                    for (f, tr) in sink.trackers.iter().enumerate() {
                        if sink.topics.contains(&((f % topics) as u32)) {
                            r.last_sum[f] += tr.last();
                            r.receivers[f] += 1;
                        }
                    }
                }
                Role::Stalled => {
                    r.stalled += 1;
                    // A router that dropped the slow consumer closed the socket, but its FIN
                    // waits behind the data we never read: read it all to find out.
                    if s.conn.state != State::Ready || crate::sys::drained_to_eof(s.conn.fd(), STALL_DRAIN) {
                        r.stalled_closed += 1;
                    }
                }
                _ => {}
            }
            if s.conn.state != State::Closed {
                s.conn.close();
            }
        }
        r.latency = self.ctx.latency;
        r.setup = self.ctx.setup;
        r.received_window = self.ctx.received_window;
        r.sent_window = self.ctx.sent_window;
        r.bytes_in_window = self.ctx.bytes_in_window;
        r.bytes_out_window = self.ctx.bytes_out_window;
        r.integrity = self.ctx.integrity;
        r.protocol_errors = self.ctx.protocol_errors;
        r.aborts = self.ctx.aborts;
        r
    }
}

impl Source {
    fn new(index: u32, topics: usize) -> Source {
        Source {
            index,
            next_topic: 0,
            seq: vec![0; topics.max(1)],
            gseq: 0,
            pacer: None,
            outstanding: 0,
            results: SeqTracker::default(),
            stopped: false,
        }
    }
}

fn kind_name(spec: &RoleSpec) -> &'static str {
    match spec {
        RoleSpec::Publisher(_) => "publisher",
        RoleSpec::Subscriber(_) => "subscriber",
        RoleSpec::Stalled(_) => "stalled subscriber",
        RoleSpec::Caller(_) => "caller",
        RoleSpec::Callee => "callee",
        RoleSpec::Idle => "idle session",
    }
}

/// Sum of every worker's delivered counter for a flow (ours from the local copy).
fn delivered(ctx: &Ctx, shared: &Shared, me: usize, flow: usize) -> u64 {
    let mut sum = ctx.local_delivered[flow];
    for (w, d) in shared.delivered.iter().enumerate() {
        if w != me {
            sum += d[flow].load(Ordering::SeqCst);
        }
    }
    sum
}

fn drive_publisher(
    ctx: &mut Ctx,
    plan: &Plan,
    shared: &Shared,
    me: usize,
    src: &mut Source,
    conn: &mut Conn,
    now: u64,
) -> bool {
    if src.stopped {
        return false;
    }
    let topics = plan.topics();
    let mut budget = SEND_BUDGET_PER_TURN;
    while budget > 0 {
        let topic = src.next_topic;
        let flow = src.index as usize * topics + topic;
        let receivers = plan.receivers[flow];
        let t = match &mut src.pacer {
            Some(p) => {
                if p.due(now) == 0 {
                    return false;
                }
                let t = p.take();
                if t >= ctx.measure_end {
                    src.stopped = true;
                    return false;
                }
                t
            }
            None => {
                if now >= ctx.measure_end {
                    src.stopped = true;
                    return false;
                }
                let in_flight = (src.seq[topic] * receivers).saturating_sub(delivered(ctx, shared, me, flow));
                if receivers > 0 && in_flight >= plan.window * receivers {
                    return true;
                }
                now
            }
        };
        src.seq[topic] += 1;
        src.gseq += 1;
        src.next_topic = (topic + 1) % topics;
        let probe = Probe { source: src.index, topic: topic as u32, seq: src.seq[topic], gseq: src.gseq, t_ns: t };
        send_probe(ctx, plan, conn, &probe, src.gseq, Kind::Publish(&plan.topic_names[topic]));
        ctx.expected += receivers;
        ctx.sent_total += 1;
        if ctx.in_window(t) {
            ctx.sent_window += 1;
        }
        budget -= 1;
    }
    false
}

fn drive_caller(ctx: &mut Ctx, plan: &Plan, src: &mut Source, conn: &mut Conn, now: u64) -> bool {
    if src.stopped {
        return false;
    }
    let mut budget = SEND_BUDGET_PER_TURN;
    while budget > 0 {
        let t = match &mut src.pacer {
            Some(p) => {
                if p.due(now) == 0 || src.outstanding >= CALLS_OUTSTANDING_MAX {
                    return false;
                }
                let t = p.take();
                if t >= ctx.measure_end {
                    src.stopped = true;
                    return false;
                }
                t
            }
            None => {
                if now >= ctx.measure_end {
                    src.stopped = true;
                    return false;
                }
                if src.outstanding >= plan.window {
                    return false;
                }
                now
            }
        };
        src.seq[0] += 1;
        src.outstanding += 1;
        let seq = src.seq[0];
        let probe = Probe { source: src.index, topic: 0, seq, gseq: seq, t_ns: t };
        send_probe(ctx, plan, conn, &probe, seq, Kind::Call(&plan.procedure));
        ctx.sent_total += 1;
        if ctx.in_window(t) {
            ctx.sent_window += 1;
        }
        budget -= 1;
    }
    false
}

enum Kind<'a> {
    Publish(&'a str),
    Call(&'a str),
}

fn send_probe(ctx: &mut Ctx, plan: &Plan, conn: &mut Conn, probe: &Probe, request: u64, kind: Kind<'_>) {
    let size = plan.payload_bytes;
    if conn.transport == Transport::Raw {
        conn.send_with(|ser, out| payload::encode_probe(ser, probe, size, out));
        return;
    }
    let args = &mut ctx.args;
    args.clear();
    payload::encode_probe(conn.ser, probe, size, args);
    conn.send_with(|ser, out| match kind {
        Kind::Publish(topic) => payload::write_publish(ser, request, topic, args, out),
        Kind::Call(procedure) => payload::write_call(ser, request, procedure, args, out),
    });
}

fn on_event(ctx: &mut Ctx, plan: &Plan, sink: &mut Sink, ser: Serializer, args: &[u8]) {
    let Some(p) = payload::decode_probe(ser, args) else {
        ctx.protocol_errors += 1;
        return;
    };
    let flow = p.source as usize * plan.topics() + p.topic as usize;
    let (Some(tr), Some(order)) = (sink.trackers.get_mut(flow), sink.order.get_mut(p.source as usize)) else {
        ctx.protocol_errors += 1;
        return;
    };
    ctx.integrity.record(tr.observe(p.seq));
    // Across topics (the per-flow tracker already covers one topic).
    if sink.topics.len() > 1 && !order.observe(p.gseq) {
        ctx.integrity.reordered += 1;
    }
    ctx.local_delivered[flow] += 1;
    if !ctx.flow_dirty[flow] {
        ctx.flow_dirty[flow] = true;
        ctx.dirty_flows.push(flow);
    }
    ctx.delivered_total += 1;
    record(ctx, &p);
}

fn on_result(ctx: &mut Ctx, src: &mut Source, ser: Serializer, args: &[u8], ordered: bool) {
    // Any RESULT ends a call, probe or not: a missing probe is a protocol error, not a
    // window slot lost for the rest of the run.
    src.outstanding = src.outstanding.saturating_sub(1);
    let Some(p) = payload::decode_probe(ser, args) else {
        ctx.protocol_errors += 1;
        return;
    };
    if ordered {
        ctx.integrity.record(src.results.observe(p.seq));
    }
    record(ctx, &p);
}

fn record(ctx: &mut Ctx, p: &Probe) {
    ctx.received_total += 1;
    let now = ctx.now_ns;
    if ctx.in_window(now) {
        ctx.received_window += 1;
    }
    if ctx.in_window(p.t_ns) {
        ctx.latency.record(now.saturating_sub(p.t_ns));
    }
}
