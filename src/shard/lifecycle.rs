//! One shard's life on its executor: join the mesh, build the shard's state, start its
//! tasks and listeners, log the periodic summary, apply reloaded settings (SIGHUP), and
//! shut down in order (stop accepting, GOODBYE, flush within the grace time, close the
//! rest).
//!
//! This file sequences the other files' pieces; it must not serve connections or move mesh
//! batches itself.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use glommio::Task;
use glommio::channels::channel_mesh::{Full, MeshBuilder};

use super::guard::Guard;
use super::mesh::{self, Batch, MeshOut};
use super::reload::Slot;
use super::{accept, state::Shard};
use crate::limits;
use crate::proto::core::{CloseReason, CoreConfig, ShardCore};
use crate::proto::stats::Stats;

/// The body of shard `id`'s thread: runs until `shutdown` is raised.
pub(crate) async fn shard_main(
    id: usize,
    slot: Arc<Slot>,
    mesh: MeshBuilder<Batch, Full>,
    shutdown: Arc<AtomicBool>,
    serving: Arc<AtomicUsize>,
    guard: Arc<Guard>,
) -> Result<(), String> {
    let config = slot.started().clone();
    let n = config.shards;
    let joined = mesh::join(id, n, mesh, &shutdown).await?;
    let core = ShardCore::new(
        CoreConfig {
            shard: id,
            shards: n,
            seed: random_seed(),
            router: Arc::new(config.router.clone()),
            auth_seed: auth_seed()?,
            wall_clock: std::time::SystemTime::now(),
        },
        Instant::now(),
    );
    let mesh_out = MeshOut::new(joined.senders, n);
    let shard = Rc::new(Shard::new(id, config.clone(), core, serving.clone(), mesh_out, guard, slot));
    let tasks = mesh::spawn_tasks(&shard, joined.receivers);
    let accept_tasks = accept::bind_listeners(&shard)?;
    serving.fetch_add(1, Ordering::SeqCst);
    tracing::info!(shard = id, shards = n, "shard serving");

    let mut summary = Summary::new(&shard);
    while !shutdown.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(limits::SHUTDOWN_POLL_MS)).await;
        shard.sync_settings();
        if let Some(every) = config.summary_interval {
            summary.log_if_due(&shard, every);
        }
    }
    shut_down(&shard, accept_tasks, tasks).await;
    Ok(())
}

/// Stop accepting, say GOODBYE, flush within the grace time, close the rest.
async fn shut_down(shard: &Shard, accept_tasks: Vec<Task<()>>, tasks: Vec<Task<()>>) {
    tracing::info!(shard = shard.id, "shutting down");
    shard.shutting_down.set(true);
    drop(accept_tasks);
    shard.core.borrow_mut().shutdown(Instant::now());
    shard.flush_now();
    wait_for_connections(shard, limits::SHUTDOWN_GRACE_MS).await;
    for h in shard.conns.borrow().values() {
        h.close(CloseReason::Shutdown);
    }
    wait_for_connections(shard, limits::SHUTDOWN_CLOSE_WAIT_MS).await;
    shard.mesh.close();
    drop(tasks);
}

/// Wait until the shard has no connection open, or for `ms` at most.
async fn wait_for_connections(shard: &Shard, ms: u64) {
    let deadline = Instant::now() + Duration::from_millis(ms);
    while shard.open_conns.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(limits::SHUTDOWN_DRAIN_POLL_MS)).await;
    }
}

/// The periodic summary log line: rates since the previous line.
struct Summary {
    last_at: Instant,
    last: Stats,
}

impl Summary {
    fn new(shard: &Shard) -> Self {
        Summary { last_at: Instant::now(), last: shard.core.borrow().stats().clone() }
    }

    fn log_if_due(&mut self, shard: &Shard, every: Duration) {
        if self.last_at.elapsed() < every {
            return;
        }
        let core = shard.core.borrow();
        let (s, last) = (core.stats(), &self.last);
        let secs = self.last_at.elapsed().as_secs_f64();
        tracing::info!(
            shard = shard.id,
            sessions = core.session_count(),
            connections = core.connection_count(),
            publish_per_s = ((s.publications - last.publications) as f64 / secs).round(),
            events_per_s = ((s.events_delivered - last.events_delivered) as f64 / secs).round(),
            calls_per_s = ((s.calls - last.calls) as f64 / secs).round(),
            slow_consumer_disconnects = s.slow_consumer_disconnects,
            events_dropped = s.events_dropped_slow + s.events_dropped_too_big,
            "summary"
        );
        self.last = s.clone();
        self.last_at = Instant::now();
    }
}

/// Seed for the core's ID generator.
/// The seed of the shard's entropy stream for authentication challenges: from the OS, or
/// the shard does not start (predictable challenges would let a recorded answer replay).
fn auth_seed() -> Result<[u8; 32], String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("no OS randomness for authentication challenges: {e}"))?;
    Ok(b)
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
