//! The shard's side of the inter-shard mesh, and the flusher that drains the core.
//!
//! - joining the glommio channel mesh (`join`);
//! - the *flusher* (`Shard::flush_now`), woken after inputs: mesh batches to their
//!   channels, dirty connections to their tasks, close events to their connections;
//! - per peer, a receiver task (`recv_from` → `core.handle_mesh`) and a sender task that
//!   drains the batches a full channel refused, in order.
//!
//! A full channel never blocks the loop: the batch waits in the backlog, and above
//! `limits::MESH_OUTBOX_PAUSE_MESSAGES` the shard closes its read gate until it drains.
//! This file moves batches; it must not look inside them (that is the core's job).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::{GlommioError, ResourceType, Task};

use super::notify::Notify;
use super::state::Shard;
use crate::limits;
use crate::proto::core::CoreEvent;
use crate::proto::mesh::MeshMsg;

/// What one shard sends another in one channel slot.
pub(crate) type Batch = Vec<MeshMsg>;

/// This shard's ends of the mesh once joined (both None with a single shard).
pub(crate) struct Joined {
    pub(crate) senders: Option<Senders<Batch>>,
    pub(crate) receivers: Option<Rc<Receivers<Batch>>>,
}

/// Join the mesh (with more than one shard). Another shard that fails to start never
/// joins: stop waiting once it raises the shutdown flag.
pub(crate) async fn join(
    id: usize,
    shards: usize,
    mesh: MeshBuilder<Batch, Full>,
    shutdown: &AtomicBool,
) -> Result<Joined, String> {
    if shards <= 1 {
        return Ok(Joined { senders: None, receivers: None });
    }
    let joined = futures_lite::future::or(async { Some(mesh.join().await) }, async {
        while !shutdown.load(Ordering::SeqCst) {
            glommio::timer::sleep(Duration::from_millis(limits::SHUTDOWN_POLL_MS)).await;
        }
        None
    })
    .await;
    let Some(joined) = joined else { return Err("stopped before every shard started".into()) };
    let (senders, receivers) = joined.map_err(|_| "could not join the shard mesh".to_string())?;
    if senders.peer_id() != id {
        return Err(format!("mesh peer id {} does not match shard {id}", senders.peer_id()));
    }
    Ok(Joined { senders: Some(senders), receivers: Some(Rc::new(receivers)) })
}

/// The sending side of this shard's mesh links.
pub(crate) struct MeshOut {
    senders: Option<Senders<Batch>>,
    /// Per peer: batches a full channel refused, and whether the sender task is mid-send
    /// (then new batches must queue behind it, to keep the pair FIFO).
    backlog: RefCell<Vec<VecDeque<Batch>>>,
    in_flight: Vec<Cell<bool>>,
    backlog_notify: Vec<Notify>,
    /// Messages (not batches) in `backlog`, all peers: gates reading (`Shard::read_gate`).
    backlog_len: Cell<usize>,
}

impl MeshOut {
    pub(crate) fn new(senders: Option<Senders<Batch>>, shards: usize) -> Self {
        MeshOut {
            senders,
            backlog: RefCell::new((0..shards).map(|_| VecDeque::new()).collect()),
            in_flight: (0..shards).map(|_| Cell::new(false)).collect(),
            backlog_notify: (0..shards).map(|_| Notify::default()).collect(),
            backlog_len: Cell::new(0),
        }
    }

    /// Close the outgoing channels (shutdown).
    pub(crate) fn close(&self) {
        if let Some(s) = &self.senders {
            s.close();
        }
    }
}

impl Shard {
    /// Drain the core: mesh batches, dirty connections, close events. Called once per loop
    /// turn by the flusher (and directly during shutdown).
    pub(crate) fn flush_now(&self) {
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
            if let Some(at) = core.poll_timeout()
                && self.timer_at.get().is_none_or(|t| at < t)
            {
                self.timer_wake.notify();
            }
            let backlog = self.mesh.backlog_len.get();
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
        for ev in events {
            match ev {
                CoreEvent::Close { conn, reason } => {
                    if let Some(h) = conns.get(&conn) {
                        h.close(reason);
                    }
                }
                CoreEvent::Ping { conn, payload } => {
                    if let Some(h) = conns.get(&conn) {
                        h.ping(payload);
                    }
                }
                // The closing connection waits for this on its own wake-up.
                CoreEvent::TeardownDone { conn } => {
                    if let Some(h) = conns.get(&conn) {
                        h.notify.notify();
                    }
                }
                CoreEvent::StatsReady { token } => {
                    if let Some(w) = self.stats_waiters.borrow().get(&token) {
                        w.notify();
                    }
                }
            }
        }
    }

    /// Send a batch now if the channel has room, else queue it behind the sender task.
    /// Returns whether the channel was full.
    fn send_batch(&self, to: usize, batch: Batch) -> bool {
        let mesh = &self.mesh;
        let Some(senders) = &mesh.senders else { return false };
        let messages = batch.len();
        let mut backlog = mesh.backlog.borrow_mut();
        let mut full = false;
        if backlog[to].is_empty() && !mesh.in_flight[to].get() {
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
        mesh.backlog_len.set(mesh.backlog_len.get() + messages);
        mesh.backlog_notify[to].notify();
        full
    }
}

/// Start the flusher and, per peer, the mesh receiver and sender. Dropping the tasks
/// stops them.
pub(crate) fn spawn_tasks(shard: &Rc<Shard>, receivers: Option<Rc<Receivers<Batch>>>) -> Vec<Task<()>> {
    let mut tasks = vec![glommio::spawn_local(flusher(shard.clone())), glommio::spawn_local(timer_task(shard.clone()))];
    if let Some(receivers) = receivers {
        for peer in (0..shard.config.shards).filter(|&p| p != shard.id) {
            tasks.push(glommio::spawn_local(mesh_receiver(shard.clone(), receivers.clone(), peer)));
            tasks.push(glommio::spawn_local(mesh_sender(shard.clone(), peer)));
        }
    }
    tasks
}

/// Runs the core's timers: sleeps until the core's next deadline (or until the flusher
/// says an earlier one was armed), then lets the core handle what is due.
async fn timer_task(shard: Rc<Shard>) {
    loop {
        let at = shard.core.borrow().poll_timeout();
        shard.timer_at.set(at);
        let now = Instant::now();
        match at {
            Some(at) if at <= now => {
                shard.core.borrow_mut().handle_timeout(now);
                shard.flush_now();
                glommio::yield_if_needed().await;
            }
            Some(at) => {
                let sleep = async {
                    glommio::timer::sleep(at - now).await;
                };
                futures_lite::future::or(shard.timer_wake.notified(), sleep).await;
            }
            None => shard.timer_wake.notified().await,
        }
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
    let mesh = &shard.mesh;
    let Some(senders) = &mesh.senders else { return };
    loop {
        mesh.backlog_notify[peer].notified().await;
        loop {
            let Some(batch) = mesh.backlog.borrow_mut()[peer].pop_front() else { break };
            mesh.in_flight[peer].set(true);
            mesh.backlog_len.set(mesh.backlog_len.get() - batch.len());
            let r = senders.send_to(peer, batch).await;
            mesh.in_flight[peer].set(false);
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
