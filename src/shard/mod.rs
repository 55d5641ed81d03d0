//! The runtime: the only code that names glommio or does I/O.
//!
//! This file starts the process side: it loads the listeners' certificates, checks
//! RLIMIT_MEMLOCK and the listen addresses, starts the signal thread (SIGINT/SIGTERM stop,
//! SIGHUP reloads) and one thread per shard, and joins them. It must not hold per-shard
//! state or serve connections; everything a shard does lives in the files below.
//!
//! One pinned glommio executor per shard. Each shard owns a `ShardCore` (in a `RefCell`,
//! never borrowed across an `.await`), binds its own SO_REUSEPORT listener, and runs:
//!
//! - one task per connection (`conn.rs`): read → `core.handle_message`; write the
//!   connection's queued frames with one coalesced write per turn;
//! - a *flusher* task (`mesh.rs`), woken after inputs, that drains the core once per loop
//!   turn: mesh batches to their channels, dirty connections to their tasks, close events;
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
//!
//! Files, in the order a connection meets them:
//!
//! - `lifecycle.rs`: one shard's life (join the mesh, start tasks, summaries, shutdown);
//! - `state.rs`: the `Shard` every task of a shard shares;
//! - `guard.rs`: router-wide connection counts and the runtime's counters, shared by shards;
//! - `reload.rs`: the settings SIGHUP reloads (listener TLS) and how shards apply them;
//! - `accept.rs`: accept loops, socket options, and the first-byte sniff;
//! - `tls.rs`: TLS server configs from PEM files, the TLS handshake, client certificates;
//! - `admission.rs`: whether an accepted connection is served (caps, tickets, refusals);
//! - `handshake.rs`: the RawSocket handshake and the WebSocket upgrade;
//! - `http.rs`: plain HTTP (`/health`, `/metrics`, the metrics listener);
//! - `conn.rs` with `codec.rs` and `timers.rs`: the WAMP connection loop;
//! - `echo.rs`: the WebSocket testee (echo) mode;
//! - `mesh.rs`: the flusher and the inter-shard channels;
//! - `io.rs`, `buffers.rs`, `notify.rs`: read/write helpers, the buffers a shard's connections
//!   share, and wake-up primitives.

mod accept;
mod admission;
mod buffers;
mod codec;
mod conn;
mod echo;
mod guard;
mod handshake;
mod http;
mod io;
mod lifecycle;
mod mesh;
mod notify;
mod reload;
mod state;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{Config, ConfigError, ListenAddr, RunFlags};
use crate::limits;
use mesh::Batch;

/// Why the router could not run.
#[derive(Debug)]
pub enum RunError {
    /// A file the config names is unusable (a certificate or key that does not load).
    Config(ConfigError),
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
            RunError::Config(e) => write!(f, "{e}"),
            RunError::Memlock { current } => write!(
                f,
                "RLIMIT_MEMLOCK is {current} bytes; glommio (the io_uring runtime) needs at least {} KiB. \
                 Raise it with `ulimit -l 8192` (or LimitMEMLOCK=infinity in a systemd unit); see tuning/README.md",
                limits::MEMLOCK_MIN_BYTES / 1024
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
pub(crate) fn check_memlock() -> Result<(), RunError> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass; no other memory is touched.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < limits::MEMLOCK_MIN_BYTES {
        return Err(RunError::Memlock { current: lim.rlim_cur });
    }
    Ok(())
}

/// Block SIGINT, SIGTERM and SIGHUP in this thread (threads spawned later inherit the
/// mask) and start a thread that waits for them. SIGINT/SIGTERM raise `flag`; a second one
/// exits at once (130). SIGHUP reloads the config with the start flags (`reload.rs`).
fn start_signal_thread(flag: Arc<AtomicBool>, flags: RunFlags, slot: Arc<reload::Slot>) {
    // SAFETY: plain libc signal-set manipulation on a local sigset_t.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: sigwait reads the set and writes the signal number into `sig`.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                if sig == libc::SIGHUP {
                    tracing::info!("SIGHUP: reloading the config");
                    reload::reload(&flags, &slot);
                } else if flag.swap(true, Ordering::SeqCst) {
                    // A second signal while stopping: the operator wants out now.
                    tracing::warn!(signal = sig, "second shutdown signal; exiting at once");
                    std::process::exit(130);
                } else {
                    tracing::info!(signal = sig, "shutdown requested");
                }
            }
        })
        .expect("spawn the signal thread");
}

/// Check that every TCP listener can be bound before starting shards, so an address in use
/// is reported once and clearly instead of stranding the other shards.
///
/// The probe binds *without* SO_REUSEPORT: the shards' own sockets use it, so a second
/// router (or anything) already listening on the port would otherwise be joined silently
/// and the kernel would split connections between the two processes. It binds with
/// SO_REUSEADDR, which gets it past the TIME_WAIT sockets an earlier run left behind — as
/// long as those had SO_REUSEADDR too, which is why the shards' listeners set it
/// (`accept::bind_tcp`; their accepted sockets inherit it).
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

/// Run the router until SIGINT/SIGTERM. Returns after every shard has shut down. `flags`
/// are the ones `config` was loaded with: SIGHUP loads the config again with them.
pub fn run(config: Config, flags: RunFlags) -> Result<(), RunError> {
    let settings = reload::Settings::initial(config).map_err(RunError::Config)?;
    check_memlock()?;
    precheck_listeners(&settings.config)?;
    fit_fd_limit(&settings.config);
    let shutdown = Arc::new(AtomicBool::new(false));
    let slot = Arc::new(reload::Slot::new(settings));
    start_signal_thread(shutdown.clone(), flags, slot.clone());
    run_with_flag(slot, shutdown)
}

/// Make room for `limits.max_connections` in RLIMIT_NOFILE: raise the soft limit towards
/// the hard one if that is short (as Go's runtime does; the hard limit is the operator's),
/// and warn if it is still short. Accept would otherwise fail with EMFILE (paused and
/// counted, see `admission::accept_failed`) before the cap refuses anyone cleanly.
fn fit_fd_limit(config: &Config) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return;
    }
    let reserve = limits::FD_RESERVE_BASE + limits::FD_RESERVE_PER_SHARD * config.shards;
    let needed = (config.limits.max_connections + reserve) as u64;
    if lim.rlim_cur < needed && lim.rlim_max > lim.rlim_cur {
        let raised = libc::rlimit { rlim_cur: needed.min(lim.rlim_max), rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct we pass; a soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(from = lim.rlim_cur, to = raised.rlim_cur, "raised the RLIMIT_NOFILE soft limit");
            lim = raised;
        }
    }
    if lim.rlim_cur < needed {
        tracing::warn!(
            rlimit_nofile = lim.rlim_cur,
            max_connections = config.limits.max_connections,
            "RLIMIT_NOFILE is below limits.max_connections plus the router's own descriptors: past about \
             {} connections accept fails with EMFILE (counted in shardbar_accept_errors_total); raise it \
             (LimitNOFILE, `ulimit -Hn`; tuning/README.md) or lower limits.max_connections",
            lim.rlim_cur.saturating_sub(reserve as u64)
        );
    }
}

/// Run with the settings in `slot` until `shutdown` is raised (tests and embedders raise it
/// themselves).
///
/// Each shard runs on its own thread. A shard that cannot start, stops with an error or
/// panics raises `shutdown`, so the others (possibly still waiting in the mesh join) stop
/// too and the process exits with that shard's error instead of hanging.
pub(crate) fn run_with_flag(slot: Arc<reload::Slot>, shutdown: Arc<AtomicBool>) -> Result<(), RunError> {
    let config = slot.started().clone();
    let n = config.shards;
    // Pin to the CPUs this process may use (taskset, cpusets), in order.
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .filter(|ids| !ids.is_empty())
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_else(|| (0..std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1)).collect());
    let mesh: MeshBuilder<Batch, _> = MeshBuilder::full(n, limits::MESH_CHANNEL_BATCHES);
    let serving = Arc::new(AtomicUsize::new(0));
    let guard = Arc::new(guard::Guard::new(&config.limits, n));
    let mut handles = Vec::with_capacity(n);
    let (made_tx, made_rx) = std::sync::mpsc::channel::<bool>();
    for shard in 0..n {
        let (slot, mesh, flag, serving) = (slot.clone(), mesh.clone(), shutdown.clone(), serving.clone());
        let shared = guard.clone();
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
                        ex.run(lifecycle::shard_main(shard, slot, mesh, flag, serving, shared))
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
