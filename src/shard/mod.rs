//! The runtime: the only code that names glommio or does I/O.
//!
//! One pinned glommio executor per shard. Each shard owns a `ShardCore` (in a `RefCell`,
//! never borrowed across an `.await`), binds its own SO_REUSEPORT listener, and runs:
//!
//! - one task per connection (`conn.rs`): read → `core.handle_message`; write the
//!   connection's queued frames with one coalesced write per turn;
//! - a *flusher* task, woken after inputs, that drains the core once per loop turn: mesh
//!   batches to their channels, dirty connections to their tasks, close events;
//! - per peer shard, a receiver task (`recv_from` → `core.handle_mesh`) and a sender task
//!   that drains batches a full channel refused. A full channel never blocks the loop: the
//!   batch waits in the backlog and the shard stops reading connections until it drains.
//!
//! ```text
//!   shard 0 (core 0)                         shard 1 (core 1)
//!  ┌────────────────────────────┐          ┌────────────────────────────┐
//!  │ listener ─► conn tasks ─┐  │  mesh    │  ┌─ conn tasks ◄─ listener │
//!  │                         ▼  │ 0 ──► 1  │  ▼                         │
//!  │  ShardCore ◄─► flusher ────┼──────────┼─► receiver ─► ShardCore    │
//!  │     ▲                      │ 1 ──► 0  │                  │         │
//!  │  receiver ◄────────────────┼──────────┼──── flusher ◄────┘         │
//!  └────────────────────────────┘          └────────────────────────────┘
//! ```

mod conn;
mod notify;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::{GlommioError, LocalExecutorBuilder, Placement, ResourceType};

use crate::config::{Config, ListenAddr, ListenerConfig};
use crate::limits;
use crate::proto::core::{CoreConfig, CoreEvent, ShardCore};
use crate::proto::mesh::MeshMsg;
use crate::proto::session::ConnId;
use notify::{Gate, Notify};

/// glommio's minimum locked-memory limit for its io_uring rings.
pub const MEMLOCK_MIN_BYTES: u64 = 512 * 1024;

type Batch = Vec<MeshMsg>;

/// Why the router could not run.
#[derive(Debug)]
pub enum RunError {
    /// RLIMIT_MEMLOCK below glommio's minimum.
    Memlock { current: u64 },
    /// A shard's executor could not start (io_uring unavailable, placement, …).
    Executor { shard: usize, error: String },
    /// A listener could not be bound.
    Bind { addr: String, error: String },
    /// A shard stopped with an error.
    Shard { shard: usize, error: String },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Memlock { current } => write!(
                f,
                "RLIMIT_MEMLOCK is {current} bytes; glommio (the io_uring runtime) needs at least {} KiB. \
                 Raise it with `ulimit -l 8192` (or LimitMEMLOCK=infinity in a systemd unit); see tuning/README.md",
                MEMLOCK_MIN_BYTES / 1024
            ),
            RunError::Executor { shard, error } => write!(
                f,
                "cannot start shard {shard}: {error}. shardbar needs io_uring (Linux ≥ 5.8, not disabled by \
                 /proc/sys/kernel/io_uring_disabled or a seccomp profile) and RLIMIT_MEMLOCK ≥ 512 KiB; see tuning/README.md"
            ),
            RunError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            RunError::Shard { shard, error } => write!(f, "shard {shard} failed: {error}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Check RLIMIT_MEMLOCK before starting executors, so the user gets a clear message.
pub fn check_memlock() -> Result<(), RunError> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass; no other memory is touched.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < MEMLOCK_MIN_BYTES {
        return Err(RunError::Memlock { current: lim.rlim_cur });
    }
    Ok(())
}

/// Block SIGINT/SIGTERM in this thread (threads spawned later inherit the mask) and start
/// a thread that waits for them and raises `flag`; a second signal exits at once (130).
fn start_signal_thread(flag: Arc<AtomicBool>) {
    // SAFETY: plain libc signal-set manipulation on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let set_copy = set;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                loop {
                    let mut sig: libc::c_int = 0;
                    if libc::sigwait(&set_copy, &mut sig) == 0 {
                        if flag.swap(true, Ordering::SeqCst) {
                            // A second signal while stopping: the operator wants out now.
                            tracing::warn!(signal = sig, "second shutdown signal; exiting at once");
                            std::process::exit(130);
                        }
                        tracing::info!(signal = sig, "shutdown requested");
                    }
                }
            })
            .expect("spawn the signal thread");
    }
}

/// Check that every TCP listener can be bound before starting shards, so an address in use
/// is reported once and clearly instead of stranding the other shards.
///
/// The probe binds *without* SO_REUSEPORT: the shards' own sockets use it, so a second
/// router (or anything) already listening on the port would otherwise be joined silently
/// and the kernel would split connections between the two processes.
fn precheck_listeners(config: &Config) -> Result<(), RunError> {
    let tcp = config.listeners.iter().filter_map(|l| match l.addr {
        ListenAddr::Tcp(a) => Some(a),
        ListenAddr::Unix(_) => None,
    });
    for addr in tcp.chain(config.metrics_addr) {
        let probe =
            socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).and_then(|s| {
                // SO_REUSEADDR only lets the probe bind over TIME_WAIT leftovers, never over a
                // listening socket.
                s.set_reuse_address(true)?;
                s.bind(&addr.into())?;
                s.listen(1)
            });
        if let Err(e) = probe {
            return Err(RunError::Bind { addr: addr.to_string(), error: e.to_string() });
        }
    }
    Ok(())
}

/// Run the router until SIGINT/SIGTERM. Returns after every shard has shut down.
pub fn run(config: Config) -> Result<(), RunError> {
    check_memlock()?;
    precheck_listeners(&config)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    start_signal_thread(shutdown.clone());
    run_with_flag(config, shutdown)
}

/// Run until `shutdown` is raised (tests and embedders raise it themselves).
///
/// Each shard runs on its own thread. A shard that cannot start, stops with an error or
/// panics raises `shutdown`, so the others (possibly still waiting in the mesh join) stop
/// too and the process exits with that shard's error instead of hanging.
pub fn run_with_flag(config: Config, shutdown: Arc<AtomicBool>) -> Result<(), RunError> {
    let n = config.shards;
    // Pin to the CPUs this process may use (taskset, cpusets), in order.
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .filter(|ids| !ids.is_empty())
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_else(|| (0..std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1)).collect());
    let config = Arc::new(config);
    let mesh: MeshBuilder<Batch, _> = MeshBuilder::full(n, limits::MESH_CHANNEL_BATCHES);
    let serving = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(n);
    let (made_tx, made_rx) = std::sync::mpsc::channel::<bool>();
    for shard in 0..n {
        let (config, mesh, flag, serving) = (config.clone(), mesh.clone(), shutdown.clone(), serving.clone());
        let made = made_tx.clone();
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cpus[shard % cpus.len()]))
            .name(&format!("shard-{shard}"))
            .spin_before_park(config.spin_before_park);
        let handle = std::thread::Builder::new()
            .name(format!("shard-{shard}"))
            .spawn(move || {
                let mut guard = RaiseOnExit { flag: flag.clone(), armed: true };
                let result = match builder.make() {
                    Ok(ex) => {
                        let _ = made.send(true);
                        ex.run(shard_main(shard, config, mesh, flag, serving))
                            .map_err(|error| RunError::Shard { shard, error })
                    }
                    Err(e) => {
                        let _ = made.send(false);
                        Err(RunError::Executor { shard, error: e.to_string() })
                    }
                };
                guard.armed = result.is_err();
                result
            })
            .map_err(|e| RunError::Executor { shard, error: e.to_string() });
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => {
                shutdown.store(true, Ordering::SeqCst);
                return Err(join_all(handles).err().unwrap_or(e));
            }
        }
        // glommio hands out executor IDs in creation order, and channel_mesh ranks peers by
        // them: create the executors one after another so that mesh peer i is shard i.
        if made_rx.recv() != Ok(true) {
            shutdown.store(true, Ordering::SeqCst);
            return join_all(handles);
        }
    }
    join_all(handles)
}

/// Join every shard thread; the first error (or panic) is the result.
fn join_all(handles: Vec<std::thread::JoinHandle<Result<(), RunError>>>) -> Result<(), RunError> {
    let mut first_error = None;
    for (shard, h) in handles.into_iter().enumerate() {
        let result = h.join().unwrap_or_else(|panic| {
            let error = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panicked".into());
            Err(RunError::Shard { shard, error })
        });
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Raises the shutdown flag when a shard thread ends in error or unwinds from a panic.
struct RaiseOnExit {
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for RaiseOnExit {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

/// A connection's handle as other tasks of the shard see it.
pub(crate) struct ConnHandle {
    /// Wakes the connection task: frames queued, or it must close.
    pub notify: Notify,
    /// Set when the core asked to close the connection.
    pub closing: Cell<Option<&'static str>>,
}

/// One shard's shared state (single-threaded: `Rc`/`RefCell`).
pub(crate) struct Shard {
    pub id: usize,
    pub config: Arc<Config>,
    pub core: RefCell<ShardCore>,
    pub conns: RefCell<HashMap<ConnId, Rc<ConnHandle>>>,
    /// Wakes the flusher.
    pub flush: Notify,
    /// Readers wait here while the mesh backlog is too large.
    pub read_gate: Gate,
    pub shutting_down: Cell<bool>,
    /// Every shard bound its listeners (for `/health`).
    pub serving: Arc<AtomicUsize>,
    senders: Option<Senders<Batch>>,
    /// Per peer: batches a full channel refused, and whether the sender task is mid-send
    /// (then new batches must queue behind it, to keep the pair FIFO).
    backlog: RefCell<Vec<VecDeque<Batch>>>,
    in_flight: Vec<Cell<bool>>,
    backlog_notify: Vec<Notify>,
    /// Messages (not batches) in `backlog`, all peers: gates reading (`read_gate`).
    backlog_len: Cell<usize>,
    /// Connections open on this shard (including ones still in their handshake).
    pub open_conns: Cell<usize>,
}

impl Shard {
    /// Drain the core: mesh batches, dirty connections, close events. Called once per loop
    /// turn by the flusher (and directly during shutdown).
    pub fn flush_now(&self) {
        let mut dirty = Vec::new();
        let mut events = Vec::new();
        {
            let mut core = self.core.borrow_mut();
            while let Some((to, batch)) = core.poll_mesh() {
                if self.send_batch(to, batch) {
                    core.count_mesh_full();
                }
            }
            core.take_dirty(&mut dirty);
            while let Some(ev) = core.poll_event() {
                events.push(ev);
            }
            let backlog = self.backlog_len.get();
            core.set_mesh_backlog(backlog);
            let pause = core.outbox_len() + backlog > limits::MESH_OUTBOX_PAUSE_MESSAGES;
            self.read_gate.set_closed(pause);
        }
        let conns = self.conns.borrow();
        for c in dirty {
            if let Some(h) = conns.get(&c) {
                h.notify.notify();
            }
        }
        for CoreEvent::Close { conn, reason } in events {
            if let Some(h) = conns.get(&conn) {
                h.closing.set(Some(reason));
                h.notify.notify();
            }
        }
    }

    /// Send a batch now if the channel has room, else queue it behind the sender task.
    /// Returns whether the channel was full.
    fn send_batch(&self, to: usize, batch: Batch) -> bool {
        let Some(senders) = &self.senders else { return false };
        let messages = batch.len();
        let mut backlog = self.backlog.borrow_mut();
        let mut full = false;
        if backlog[to].is_empty() && !self.in_flight[to].get() {
            match senders.try_send_to(to, batch) {
                Ok(()) => return false,
                Err(GlommioError::WouldBlock(ResourceType::Channel(batch))) => {
                    backlog[to].push_back(batch);
                    full = true;
                }
                Err(e) => {
                    // Only during shutdown: the peer is gone.
                    tracing::debug!(shard = self.id, peer = to, error = %e, "mesh channel closed; batch dropped");
                    return false;
                }
            }
        } else {
            backlog[to].push_back(batch);
        }
        self.backlog_len.set(self.backlog_len.get() + messages);
        self.backlog_notify[to].notify();
        full
    }

    pub fn request_flush(&self) {
        self.flush.notify();
    }
}

async fn flusher(shard: Rc<Shard>) {
    loop {
        shard.flush.notified().await;
        shard.flush_now();
    }
}

/// Sends batches that a full channel refused, in order, waiting for room.
async fn mesh_sender(shard: Rc<Shard>, peer: usize) {
    let Some(senders) = &shard.senders else { return };
    loop {
        shard.backlog_notify[peer].notified().await;
        loop {
            let Some(batch) = shard.backlog.borrow_mut()[peer].pop_front() else { break };
            shard.in_flight[peer].set(true);
            shard.backlog_len.set(shard.backlog_len.get() - batch.len());
            let r = senders.send_to(peer, batch).await;
            shard.in_flight[peer].set(false);
            if r.is_err() {
                return;
            }
        }
        shard.request_flush();
    }
}

async fn mesh_receiver(shard: Rc<Shard>, receivers: Rc<Receivers<Batch>>, peer: usize) {
    loop {
        match receivers.recv_from(peer).await {
            Ok(Some(batch)) => {
                shard.core.borrow_mut().handle_mesh(peer, batch, Instant::now());
                shard.request_flush();
                glommio::yield_if_needed().await;
            }
            _ => return,
        }
    }
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No OS entropy: fall back to time and address bits (IDs stay unique, only less
        // unpredictable).
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        return t as u64 ^ (&b as *const _ as u64);
    }
    u64::from_le_bytes(b)
}

async fn shard_main(
    id: usize,
    config: Arc<Config>,
    mesh: MeshBuilder<Batch, glommio::channels::channel_mesh::Full>,
    shutdown: Arc<AtomicBool>,
    serving: Arc<AtomicUsize>,
) -> Result<(), String> {
    let n = config.shards;
    let (senders, receivers) = if n > 1 {
        // Another shard that fails to start never joins: stop waiting once it raises
        // the shutdown flag.
        let joined = futures_lite::future::or(async { Some(mesh.join().await) }, async {
            while !shutdown.load(Ordering::SeqCst) {
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            None
        })
        .await;
        let Some(joined) = joined else { return Err("stopped before every shard started".into()) };
        let (s, r) = joined.map_err(|_| "could not join the shard mesh".to_string())?;
        if s.peer_id() != id {
            return Err(format!("mesh peer id {} does not match shard {id}", s.peer_id()));
        }
        (Some(s), Some(Rc::new(r)))
    } else {
        (None, None)
    };
    let core = ShardCore::new(CoreConfig {
        shard: id,
        shards: n,
        seed: random_seed(),
        router: Arc::new(config.router.clone()),
    });
    let shard = Rc::new(Shard {
        id,
        config: config.clone(),
        core: RefCell::new(core),
        conns: RefCell::new(HashMap::new()),
        flush: Notify::default(),
        read_gate: Gate::default(),
        shutting_down: Cell::new(false),
        serving: serving.clone(),
        senders,
        backlog: RefCell::new((0..n).map(|_| VecDeque::new()).collect()),
        in_flight: (0..n).map(|_| Cell::new(false)).collect(),
        backlog_notify: (0..n).map(|_| Notify::default()).collect(),
        backlog_len: Cell::new(0),
        open_conns: Cell::new(0),
    });
    let mut tasks = Vec::new();
    tasks.push(glommio::spawn_local(flusher(shard.clone())));
    if let Some(receivers) = receivers {
        for peer in (0..n).filter(|&p| p != id) {
            tasks.push(glommio::spawn_local(mesh_receiver(shard.clone(), receivers.clone(), peer)));
            tasks.push(glommio::spawn_local(mesh_sender(shard.clone(), peer)));
        }
    }
    let mut accept_tasks = Vec::new();
    for l in &config.listeners {
        let l = Rc::new(l.clone());
        match &l.addr {
            ListenAddr::Tcp(addr) => {
                let listener =
                    glommio::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                accept_tasks.push(glommio::spawn_local(accept_tcp(shard.clone(), listener, l.clone())));
            }
            ListenAddr::Unix(path) if id == 0 => {
                // A stale socket file from an earlier run would make bind fail.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    let _ = std::fs::remove_file(path);
                }
                let listener = glommio::net::UnixListener::bind(path)
                    .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
                accept_tasks.push(glommio::spawn_local(accept_unix(shard.clone(), listener, l.clone())));
            }
            ListenAddr::Unix(_) => {}
        }
    }
    if let (0, Some(addr)) = (id, config.metrics_addr) {
        let listener =
            glommio::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} (metrics): {e}"))?;
        accept_tasks.push(glommio::spawn_local(accept_metrics(shard.clone(), listener)));
    }
    serving.fetch_add(1, Ordering::SeqCst);
    tracing::info!(shard = id, shards = n, "shard serving");

    let mut last_summary = Instant::now();
    let mut last_stats = shard.core.borrow().stats().clone();
    while !shutdown.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(20)).await;
        if let Some(every) = config.summary_interval
            && last_summary.elapsed() >= every
        {
            let core = shard.core.borrow();
            let s = core.stats();
            let secs = last_summary.elapsed().as_secs_f64();
            tracing::info!(
                shard = id,
                sessions = core.session_count(),
                connections = core.connection_count(),
                publish_per_s = ((s.publications - last_stats.publications) as f64 / secs).round(),
                events_per_s = ((s.events_delivered - last_stats.events_delivered) as f64 / secs).round(),
                calls_per_s = ((s.calls - last_stats.calls) as f64 / secs).round(),
                slow_consumer_disconnects = s.slow_consumer_disconnects,
                events_dropped = s.events_dropped_slow + s.events_dropped_too_big,
                "summary"
            );
            last_stats = s.clone();
            last_summary = Instant::now();
        }
    }

    // Shutdown: stop accepting, say GOODBYE, flush within the grace time, close the rest.
    tracing::info!(shard = id, "shutting down");
    shard.shutting_down.set(true);
    drop(accept_tasks);
    shard.core.borrow_mut().shutdown(Instant::now());
    shard.flush_now();
    let deadline = Instant::now() + Duration::from_millis(limits::SHUTDOWN_GRACE_MS);
    while shard.open_conns.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    for h in shard.conns.borrow().values() {
        h.closing.set(Some("shutdown"));
        h.notify.notify();
    }
    let deadline = Instant::now() + Duration::from_millis(500);
    while shard.open_conns.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    if let Some(s) = &shard.senders {
        s.close();
    }
    drop(tasks);
    Ok(())
}

async fn accept_tcp(shard: Rc<Shard>, listener: glommio::net::TcpListener, l: Rc<ListenerConfig>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                if let Some(ka) = keepalive_for(&shard.config) {
                    use std::os::fd::{AsRawFd, BorrowedFd};
                    // SAFETY: the fd belongs to `stream`, which outlives this borrow.
                    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
                    if let Err(e) = socket2::SockRef::from(&fd).set_tcp_keepalive(&ka) {
                        tracing::debug!(shard = shard.id, error = %e, "could not set TCP keepalive");
                    }
                }
                glommio::spawn_local(conn::serve(shard.clone(), stream, l.clone(), true)).detach();
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// TCP keepalive matching the liveness settings: probes start after `ping_interval` of
/// silence and the kernel drops the connection after 3 unanswered probes spread over
/// `ping_timeout`. This is what reaps half-open RawSocket connections (whose clients may
/// not implement RawSocket PING); WebSocket connections get application pings as well.
fn keepalive_for(config: &Config) -> Option<socket2::TcpKeepalive> {
    let idle = config.limits.ping_interval?;
    let every = (config.limits.ping_timeout / 3).max(Duration::from_secs(1));
    Some(socket2::TcpKeepalive::new().with_time(idle.max(Duration::from_secs(1))).with_interval(every).with_retries(3))
}

async fn accept_metrics(shard: Rc<Shard>, listener: glommio::net::TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(conn::serve_http_only(shard.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, error = %e, "metrics accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accept_unix(shard: Rc<Shard>, listener: glommio::net::UnixListener, l: Rc<ListenerConfig>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(conn::serve(shard.clone(), stream, l.clone(), false)).detach();
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
