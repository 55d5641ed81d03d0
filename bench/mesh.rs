//! Cost per message between two cores, by batch size: which inter-shard channel to use.
//!
//! Question: the design sends cross-shard messages in batches (`Vec<MeshMsg>` per
//! destination per loop turn). How much does one message cost on the way from one core to
//! the other, as a function of the batch size, with
//! - `glommio_mesh`: glommio's `channel_mesh` between two pinned `LocalExecutor`s (what
//!   shardbar uses), the receiver awaiting `recv_from` (parks in io_uring when idle);
//! - `crossbeam_eventfd`: a bounded `crossbeam-channel` between two pinned threads, the
//!   receiver spinning briefly and then sleeping on an eventfd that the sender writes only
//!   when the receiver announced (atomic flag) that it is going to sleep — the shape that
//!   also works with non-glommio threads.
//!
//! `mesh_round_trip` sends one message to the other core and waits for it to come back:
//! the wake-up latency of a parked executor (or sleeping thread), which a request that
//! crosses shards pays on every hop.
//!
//! Each measured round moves `MESSAGES` u64 messages from core 0 to core 1 in batches of
//! `batch` (one `Vec` per batch, as the router does), timed from the first send to the
//! last receive; criterion reports time per round and messages/s. Channel capacity is the
//! router's (`limits::MESH_CHANNEL_BATCHES`).
//!
//! Run: `cargo bench --bench mesh -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{LocalExecutorBuilder, Placement};
use shardbar::limits::MESH_CHANNEL_BATCHES;

const MESSAGES: u64 = 1 << 15;
const BATCHES: [usize; 5] = [1, 8, 64, 512, 4096];
/// Receiver polls this many times before announcing it will sleep (crossbeam variant).
const SPIN_TRIES: u32 = 200;

fn cores() -> (usize, usize) {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (0, 1 % n)
}

fn batch_of(from: u64, n: usize, total: u64) -> Vec<u64> {
    (from..(from + n as u64).min(total)).collect()
}

/// Move `total` messages core 0 → core 1 over a glommio mesh; time first send → last recv.
fn glommio_mesh(batch: usize, total: u64) -> Duration {
    let (c0, c1) = cores();
    let mesh: MeshBuilder<Vec<u64>, Full> = MeshBuilder::full(2, MESH_CHANNEL_BATCHES);
    let spawn = |core: usize, mesh: MeshBuilder<Vec<u64>, Full>| {
        LocalExecutorBuilder::new(Placement::Fixed(core))
            .spawn(move || async move {
                let (senders, receivers) = mesh.join().await.expect("join mesh");
                if senders.peer_id() == 0 {
                    let t0 = Instant::now();
                    let mut sent = 0;
                    while sent < total {
                        let b = batch_of(sent, batch, total);
                        sent += b.len() as u64;
                        senders.send_to(1, b).await.expect("send");
                    }
                    (Some(t0), None)
                } else {
                    let mut got = 0u64;
                    let mut sum = 0u64;
                    while got < total {
                        let b = receivers.recv_from(0).await.expect("recv").expect("open");
                        got += b.len() as u64;
                        sum = sum.wrapping_add(b.iter().sum::<u64>());
                    }
                    black_box(sum);
                    (None, Some(Instant::now()))
                }
            })
            .expect("glommio executor (RLIMIT_MEMLOCK >= 512 KiB?)")
    };
    let a = spawn(c0, mesh.clone());
    let b = spawn(c1, mesh);
    let (ra, rb) = (a.join().expect("executor a"), b.join().expect("executor b"));
    let t0 = ra.0.or(rb.0).expect("a producer");
    let t1 = ra.1.or(rb.1).expect("a consumer");
    t1 - t0
}

/// An eventfd the receiver sleeps on, written by the sender only when the receiver said
/// it is going to sleep.
struct Waker {
    fd: i32,
    sleeping: AtomicBool,
}

impl Waker {
    fn new() -> Waker {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(fd >= 0, "eventfd");
        Waker { fd, sleeping: AtomicBool::new(false) }
    }

    fn wake_if_sleeping(&self) {
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a local.
            unsafe { libc::write(self.fd, (&one as *const u64).cast(), 8) };
        }
    }

    fn sleep(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a local; blocks until the sender writes.
        unsafe { libc::read(self.fd, (&mut v as *mut u64).cast(), 8) };
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

fn pin(core: usize) {
    if let Some(id) = core_affinity::get_core_ids().and_then(|ids| ids.into_iter().find(|c| c.id == core)) {
        core_affinity::set_for_current(id);
    }
}

/// Same transfer over crossbeam-channel with the eventfd/atomic waker.
fn crossbeam_eventfd(batch: usize, total: u64) -> Duration {
    let (c0, c1) = cores();
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u64>>(MESH_CHANNEL_BATCHES);
    let waker = Arc::new(Waker::new());
    let w = waker.clone();
    let consumer = std::thread::spawn(move || {
        pin(c1);
        let (mut got, mut sum, mut idle) = (0u64, 0u64, 0u32);
        while got < total {
            match rx.try_recv() {
                Ok(b) => {
                    idle = 0;
                    got += b.len() as u64;
                    sum = sum.wrapping_add(b.iter().sum::<u64>());
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    idle += 1;
                    if idle < SPIN_TRIES {
                        std::hint::spin_loop();
                        continue;
                    }
                    w.sleeping.store(true, Ordering::SeqCst);
                    // Re-check after announcing: a send may have raced the flag.
                    if !rx.is_empty() {
                        w.sleeping.store(false, Ordering::SeqCst);
                        continue;
                    }
                    w.sleep();
                    idle = 0;
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => break,
            }
        }
        black_box(sum);
        Instant::now()
    });
    pin(c0);
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < total {
        let b = batch_of(sent, batch, total);
        sent += b.len() as u64;
        tx.send(b).expect("send");
        waker.wake_if_sleeping();
    }
    let t1 = consumer.join().expect("consumer");
    t1 - t0
}

/// Round trips of one message core 0 → core 1 → core 0 over a glommio mesh: the wake-up
/// latency of a parked executor, which a 1-caller RPC across shards pays twice.
fn glommio_pingpong(rounds: u64) -> Duration {
    let (c0, c1) = cores();
    let mesh: MeshBuilder<u64, Full> = MeshBuilder::full(2, MESH_CHANNEL_BATCHES);
    let spawn = |core: usize, mesh: MeshBuilder<u64, Full>| {
        LocalExecutorBuilder::new(Placement::Fixed(core))
            .spawn(move || async move {
                let (senders, receivers) = mesh.join().await.expect("join mesh");
                let me = senders.peer_id();
                let peer = 1 - me;
                let t0 = Instant::now();
                for i in 0..rounds {
                    if me == 0 {
                        senders.send_to(peer, i).await.expect("send");
                        receivers.recv_from(peer).await.expect("recv").expect("open");
                    } else {
                        let v = receivers.recv_from(peer).await.expect("recv").expect("open");
                        senders.send_to(peer, v).await.expect("send");
                    }
                }
                (me, t0.elapsed())
            })
            .expect("glommio executor")
    };
    let a = spawn(c0, mesh.clone());
    let b = spawn(c1, mesh);
    let (ra, rb) = (a.join().expect("a"), b.join().expect("b"));
    if ra.0 == 0 { ra.1 } else { rb.1 }
}

/// The same round trips over two crossbeam channels with the eventfd waker.
fn crossbeam_pingpong(rounds: u64, spin_tries: u32) -> Duration {
    let (c0, c1) = cores();
    let (tx_a, rx_b) = crossbeam_channel::bounded::<u64>(MESH_CHANNEL_BATCHES);
    let (tx_b, rx_a) = crossbeam_channel::bounded::<u64>(MESH_CHANNEL_BATCHES);
    let (wa, wb) = (Arc::new(Waker::new()), Arc::new(Waker::new()));
    let recv = move |rx: &crossbeam_channel::Receiver<u64>, w: &Waker| -> u64 {
        let mut idle = 0;
        loop {
            if let Ok(v) = rx.try_recv() {
                return v;
            }
            idle += 1;
            if idle < spin_tries {
                std::hint::spin_loop();
                continue;
            }
            w.sleeping.store(true, Ordering::SeqCst);
            if let Ok(v) = rx.try_recv() {
                w.sleeping.store(false, Ordering::SeqCst);
                return v;
            }
            w.sleep();
            idle = 0;
        }
    };
    let (wa2, wb2) = (wa.clone(), wb.clone());
    let echo = std::thread::spawn(move || {
        pin(c1);
        for _ in 0..rounds {
            let v = recv(&rx_b, &wb2);
            tx_b.send(v).expect("send");
            wa2.wake_if_sleeping();
        }
    });
    pin(c0);
    let t0 = Instant::now();
    for i in 0..rounds {
        tx_a.send(i).expect("send");
        wb.wake_if_sleeping();
        black_box(recv(&rx_a, &wa));
    }
    let d = t0.elapsed();
    echo.join().expect("echo");
    d
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("mesh_round_trip");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("glommio_mesh", |b| b.iter_custom(glommio_pingpong));
    g.bench_function("crossbeam_eventfd", |b| b.iter_custom(|n| crossbeam_pingpong(n, SPIN_TRIES)));
    // No spinning: every hop sleeps on the eventfd, the pure wake-up cost.
    g.bench_function("crossbeam_eventfd_nospin", |b| b.iter_custom(|n| crossbeam_pingpong(n, 0)));
    g.finish();
}

fn mesh(c: &mut Criterion) {
    let mut g = c.benchmark_group("mesh_message");
    g.sample_size(10);
    g.throughput(Throughput::Elements(MESSAGES));
    for batch in BATCHES {
        g.bench_with_input(BenchmarkId::new("glommio_mesh", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| glommio_mesh(batch, MESSAGES * iters))
        });
        g.bench_with_input(BenchmarkId::new("crossbeam_eventfd", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| crossbeam_eventfd(batch, MESSAGES * iters))
        });
    }
    g.finish();
}

criterion_group!(benches, mesh, pingpong);
criterion_main!(benches);
