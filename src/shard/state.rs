//! The state every task of one shard shares: the `ShardCore`, the connection handles, the
//! wake-ups between tasks, and the shard's counters the runtime keeps itself.
//!
//! Single-threaded (`Rc`/`RefCell`/`Cell`); the core is never borrowed across an `.await`.
//! This file holds data and trivial accessors only: what the tasks do with it lives in
//! `mesh.rs` (the flusher), `conn.rs` (connections) and `lifecycle.rs` (start and stop).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::mesh::MeshOut;
use super::notify::{Gate, Notify};
use crate::config::Config;
use crate::proto::core::ShardCore;
use crate::proto::session::ConnId;

/// A connection's handle as other tasks of the shard see it.
pub(crate) struct ConnHandle {
    /// Wakes the connection task: frames queued, or it must close.
    pub(crate) notify: Notify,
    /// Set when the core (or shutdown) asked to close the connection, with the reason.
    pub(crate) closing: Cell<Option<&'static str>>,
}

impl ConnHandle {
    pub(crate) fn new() -> Self {
        ConnHandle { notify: Notify::default(), closing: Cell::new(None) }
    }

    /// Ask the connection task to close (it says why in its log line and close frame).
    pub(crate) fn close(&self, reason: &'static str) {
        self.closing.set(Some(reason));
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
    /// Connections open on this shard (including ones still in their handshake).
    pub(crate) open_conns: Cell<usize>,
}

impl Shard {
    pub(crate) fn new(
        id: usize,
        config: Arc<Config>,
        core: ShardCore,
        serving: Arc<AtomicUsize>,
        mesh: MeshOut,
    ) -> Self {
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
        }
    }

    /// Wake the flusher: the core has output (call after every input to the core).
    pub(crate) fn request_flush(&self) {
        self.flush.notify();
    }

    /// `/health`: every shard is serving and none is stopping.
    pub(crate) fn ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst) >= self.config.shards && !self.shutting_down.get()
    }
}
