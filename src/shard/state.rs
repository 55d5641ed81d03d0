//! The state every task of one shard shares: the `ShardCore`, the connection handles, the
//! wake-ups between tasks, the router-wide [`Guard`] and the places the runtime counts
//! itself ([`Place`]).
//!
//! Single-threaded (`Rc`/`RefCell`/`Cell`); the core is never borrowed across an `.await`.
//! This file holds data and trivial accessors only: what the tasks do with it lives in
//! `mesh.rs` (the flusher), `conn.rs` (connections) and `lifecycle.rs` (start and stop).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::buffers::Buffers;
use super::guard::{Guard, LogLimiter, ShardCounters};
use super::mesh::MeshOut;
use super::notify::{Gate, Notify};
use super::reload::{self, Slot};
use super::tls::ListenerTls;
use crate::config::Config;
use crate::limits;
use crate::proto::core::{CloseReason, ShardCore};
use crate::proto::session::ConnId;

/// A connection's handle as other tasks of the shard see it.
pub(crate) struct ConnHandle {
    /// Wakes the connection task: frames queued, a ping or a close asked for, or its
    /// session's teardown finished.
    pub(crate) notify: Notify,
    /// Set when the core (or shutdown) asked to close the connection, with the reason.
    pub(crate) closing: Cell<Option<CloseReason>>,
    /// A liveness ping the core asked for, not yet written.
    pub(crate) ping: Cell<Option<[u8; 8]>>,
}

impl ConnHandle {
    pub(crate) fn new() -> Self {
        ConnHandle { notify: Notify::default(), closing: Cell::new(None), ping: Cell::new(None) }
    }

    /// Ask the connection task to close (it says why in its log line and close frame).
    pub(crate) fn close(&self, reason: CloseReason) {
        self.closing.set(Some(reason));
        self.notify.notify();
    }

    /// Ask the connection task to send a liveness ping.
    pub(crate) fn ping(&self, payload: [u8; 8]) {
        self.ping.set(Some(payload));
        self.notify.notify();
    }
}

/// One shard's shared state.
pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) config: Arc<Config>,
    pub(crate) core: RefCell<ShardCore>,
    pub(crate) conns: RefCell<HashMap<ConnId, Rc<ConnHandle>>>,
    /// Wakes the flusher.
    pub(crate) flush: Notify,
    /// Readers wait here while the mesh backlog is too large.
    pub(crate) read_gate: Gate,
    pub(crate) shutting_down: Cell<bool>,
    /// How many shards bound their listeners (every one: `/health` says ok).
    pub(crate) serving: Arc<AtomicUsize>,
    /// The sending side of the mesh (owned by `mesh.rs`).
    pub(crate) mesh: MeshOut,
    /// Connections open on this shard (including ones still in their handshake); held by
    /// their `admission::Ticket`s.
    pub(crate) open_conns: Cell<usize>,
    /// Router-wide connection counts and every shard's runtime counters.
    pub(crate) guard: Arc<Guard>,
    /// Rate limit of this shard's log lines about hit caps.
    pub(crate) log_limit: LogLimiter,
    /// Refused connections being answered (`limits::REFUSALS_IN_FLIGHT_MAX`).
    pub(crate) refusals: Cell<usize>,
    /// Connections open on the metrics listener (`limits::METRICS_CONNECTIONS_MAX`).
    pub(crate) metrics_conns: Cell<usize>,
    /// `/metrics` requests gathering (`limits::METRICS_REQUESTS_IN_FLIGHT_MAX`).
    pub(crate) metrics_gathers: Cell<usize>,
    /// The core timer deadline the timer task sleeps towards; the flusher wakes it
    /// (`timer_wake`) when the core's next deadline is earlier.
    pub(crate) timer_at: Cell<Option<Instant>>,
    pub(crate) timer_wake: Notify,
    /// `/metrics` requests waiting for every shard's counters, by stats token.
    pub(crate) stats_waiters: RefCell<HashMap<u64, Rc<Notify>>>,
    /// Each listener's TLS (None: plaintext only), by its index in `config.listeners`. A
    /// connection takes its listener's at accept; `reload::apply` replaces them for the
    /// connections accepted after it.
    pub(crate) listener_tls: RefCell<Vec<Option<ListenerTls>>>,
    /// The read scratch and write buffers the shard's connections share.
    pub(crate) buffers: Buffers,
    /// A descriptor kept open (on /dev/null) to lend when the process runs out: accept then
    /// takes the waiting connection and refuses it (`admission::refuse_out_of_fds`). None
    /// while lent.
    pub(crate) spare_fd: RefCell<Option<std::fs::File>>,
    /// Rung when a lent spare descriptor is back: a paused accept loop goes on at once.
    pub(crate) spare_back: Notify,
    /// Where SIGHUP publishes reloaded settings, and the generation this shard applied.
    settings: Arc<Slot>,
    applied: Cell<u64>,
}

impl Shard {
    pub(crate) fn new(
        id: usize,
        config: Arc<Config>,
        core: ShardCore,
        serving: Arc<AtomicUsize>,
        mesh: MeshOut,
        guard: Arc<Guard>,
        settings: Arc<Slot>,
    ) -> Self {
        // Read the generation before the settings: a publish in between is applied again.
        let applied = Cell::new(settings.generation());
        let listener_tls = settings.current().listener_tls.clone();
        Shard {
            id,
            config,
            core: RefCell::new(core),
            conns: RefCell::new(HashMap::new()),
            flush: Notify::default(),
            read_gate: Gate::default(),
            shutting_down: Cell::new(false),
            serving,
            mesh,
            open_conns: Cell::new(0),
            guard,
            log_limit: LogLimiter::default(),
            refusals: Cell::new(0),
            metrics_conns: Cell::new(0),
            metrics_gathers: Cell::new(0),
            timer_at: Cell::new(None),
            timer_wake: Notify::default(),
            stats_waiters: RefCell::new(HashMap::new()),
            listener_tls: RefCell::new(listener_tls),
            buffers: Buffers::default(),
            spare_fd: RefCell::new(std::fs::File::open("/dev/null").ok()),
            spare_back: Notify::default(),
            settings,
            applied,
        }
    }

    /// Apply settings a reload published since this shard last looked: called on every
    /// connection's arrival (so one accepted after the reload was published never uses the
    /// old TLS or principals, whichever shard takes it) and by the shard's poll loop.
    pub(crate) fn sync_settings(&self) {
        let published = self.settings.generation();
        if published != self.applied.get() {
            self.applied.set(published);
            reload::apply(self, &self.settings.current());
        }
    }

    /// Wake the flusher: the core has output (call after every input to the core).
    pub(crate) fn request_flush(&self) {
        self.flush.notify();
    }

    /// The TLS of listener `index` now (None: plaintext only).
    pub(crate) fn tls_of(&self, index: u16) -> Option<ListenerTls> {
        self.listener_tls.borrow().get(usize::from(index)).cloned().flatten()
    }

    /// This shard's runtime counters (in the shared [`Guard`]).
    pub(crate) fn counters(&self) -> &ShardCounters {
        &self.guard.shards[self.id]
    }

    /// `/health`: every shard is serving and none is stopping.
    pub(crate) fn ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst) >= self.config.shards && !self.shutting_down.get()
    }
}

/// What a [`Place`] is counted in, and its bound.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counted {
    /// `Shard::refusals`, at most `limits::REFUSALS_IN_FLIGHT_MAX`.
    Refusals,
    /// `Shard::metrics_conns`, at most `limits::METRICS_CONNECTIONS_MAX`.
    MetricsConns,
    /// `Shard::metrics_gathers`, at most `limits::METRICS_REQUESTS_IN_FLIGHT_MAX`.
    MetricsGathers,
}

impl Shard {
    fn counted(&self, which: Counted) -> (&Cell<usize>, usize) {
        match which {
            Counted::Refusals => (&self.refusals, limits::REFUSALS_IN_FLIGHT_MAX),
            Counted::MetricsConns => (&self.metrics_conns, limits::METRICS_CONNECTIONS_MAX),
            Counted::MetricsGathers => (&self.metrics_gathers, limits::METRICS_REQUESTS_IN_FLIGHT_MAX),
        }
    }
}

/// One of a bounded number of places of a shard (see [`Counted`]), owned so that it can
/// move into the task that uses it; given back on drop.
pub(crate) struct Place {
    shard: Rc<Shard>,
    which: Counted,
}

impl Place {
    /// A place, if the bound leaves one.
    pub(crate) fn take(shard: &Rc<Shard>, which: Counted) -> Option<Place> {
        let (count, max) = shard.counted(which);
        let n = count.get();
        (n < max).then(|| {
            count.set(n + 1);
            Place { shard: shard.clone(), which }
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let (count, _) = self.shard.counted(self.which);
        count.set(count.get().saturating_sub(1));
    }
}
