//! What does one large publication cost the router core when many overlapping prefix
//! subscriptions match it?
//!
//! One shard; 1000 prefix subscriptions `t.a`, `t.aa`, … that all match the topic, each held
//! by its own subscriber connection (RawSocket + MessagePack), and one publisher. Each
//! iteration hands the core one PUBLISH with a 1 MiB payload:
//!
//! - `drained`: every subscriber's out queue is then emptied, as the runtime's writer would
//!   (frames popped, not copied: the writer's copy into its socket buffer is the same
//!   whichever way the frames were built);
//! - `over_cap`: every subscriber already holds one EVENT and its pending-bytes cap is
//!   nearly reached (drop policy), so every EVENT is refused.
//!
//! Before the run it prints, for one publication of each case, the bytes the core
//! allocated (a counting wrapper around the router's allocator: the EVENT payload copies
//! show up here) and the payload encodes it counted. Compare two builds by running the
//! same command on each:
//! `cargo bench --bench fanout_overlap -- --warm-up-time 1 --measurement-time 5`.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use shardbar::proto::core::{ConnInfo, CoreConfig, ShardCore};
use shardbar::proto::frame::{Framing, Transport};
use shardbar::proto::realm::{RealmConfig, RouterConfig, SlowConsumerPolicy};
use shardbar::proto::session::ConnId;
use shardbar::proto::wire::{Dict, Message, Payload, Serializer, Value, encode_to_vec};

/// The router binary's allocator, counting the bytes it hands out.
struct Counting;

static ALLOCATED_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to mimalloc; the counter has no effect on
// the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is mimalloc's.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from mimalloc.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED_BYTES.fetch_add(new_size.saturating_sub(layout.size()), Ordering::Relaxed);
        // SAFETY: as for `dealloc`.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SER: Serializer = Serializer::MsgPack;
const SUBSCRIPTIONS: usize = 1000;
const PAYLOAD_BYTES: usize = 1 << 20;

fn send(core: &mut ShardCore, conn: ConnId, msg: &Message) {
    core.handle_message(conn, Bytes::from(encode_to_vec(SER, msg).unwrap()), Instant::now());
}

/// Empty every dirty out queue (frames dropped, as written); returns the bytes.
fn drain(core: &mut ShardCore, dirty: &mut Vec<ConnId>) -> usize {
    dirty.clear();
    core.take_dirty(dirty);
    let mut bytes = 0;
    for &c in dirty.iter() {
        if let Some(q) = core.out_queue(c) {
            while let Some(f) = q.pop() {
                bytes += f.len();
            }
        }
    }
    bytes
}

fn topic() -> String {
    format!("t.{}", "a".repeat(SUBSCRIPTIONS))
}

fn publish_frame() -> Bytes {
    let payload = Payload::from_values(SER, Some(&[Value::Bytes(vec![7u8; PAYLOAD_BYTES])]), None);
    let publish = Message::Publish { request: 1, options: Dict::new(), topic: topic(), payload };
    Bytes::from(encode_to_vec(SER, &publish).unwrap())
}

/// A core with one connection per prefix subscription and a publisher; the realm drops
/// EVENTs over a connection's cap of `pending_bytes_max`.
fn setup(pending_bytes_max: usize) -> (ShardCore, ConnId) {
    let realm = RealmConfig { slow_consumer: SlowConsumerPolicy::Drop, ..RealmConfig::new("realm1") };
    let router = RouterConfig { realms: vec![realm], pending_bytes_max, ..RouterConfig::default() };
    let config = CoreConfig {
        shard: 0,
        shards: 1,
        seed: 1,
        router: Arc::new(router),
        auth_seed: [1; 32],
        wall_clock: std::time::UNIX_EPOCH,
    };
    let mut core = ShardCore::new(config, Instant::now());
    let info = ConnInfo {
        framing: Framing { transport: Transport::RawSocket, serializer: SER },
        max_out_message: usize::MAX,
        origin: Default::default(),
    };
    let hello = Message::Hello { realm: "realm1".into(), details: Dict::new() };
    for i in 1..=SUBSCRIPTIONS {
        let c = core.handle_open(info, Instant::now());
        send(&mut core, c, &hello);
        let options = Dict::new().with("match", "prefix");
        send(&mut core, c, &Message::Subscribe { request: 1, options, topic: format!("t.{}", "a".repeat(i)) });
    }
    let publisher = core.handle_open(info, Instant::now());
    send(&mut core, publisher, &hello);
    drain(&mut core, &mut Vec::new());
    (core, publisher)
}

/// The core for the `over_cap` case: every subscriber holds one EVENT it did not read, and
/// a second would pass its cap.
fn setup_over_cap() -> (ShardCore, ConnId) {
    let (mut core, publisher) = setup(PAYLOAD_BYTES + PAYLOAD_BYTES / 2);
    core.handle_message(publisher, publish_frame(), Instant::now());
    core.take_dirty(&mut Vec::new());
    (core, publisher)
}

/// Bytes allocated and payload encodes for one publication, printed before the run.
fn report(name: &str, core: &mut ShardCore, publisher: ConnId, publish: &Bytes, drained: bool) {
    let mut dirty = Vec::with_capacity(SUBSCRIPTIONS);
    let encodes = core.stats().event_payload_encodes;
    let before = ALLOCATED_BYTES.load(Ordering::Relaxed);
    let start = Instant::now();
    core.handle_message(publisher, publish.clone(), Instant::now());
    let queued = if drained { drain(core, &mut dirty) } else { 0 };
    let took = start.elapsed();
    let allocated = ALLOCATED_BYTES.load(Ordering::Relaxed) - before;
    println!(
        "{name}: one {PAYLOAD_BYTES}-byte publication, {SUBSCRIPTIONS} overlapping prefix subscriptions: \
         {allocated} bytes allocated, {} payload encodes, {queued} bytes queued, {took:?}",
        core.stats().event_payload_encodes - encodes
    );
}

fn overlapping(c: &mut Criterion) {
    let publish = publish_frame();
    let mut group = c.benchmark_group("core_fanout_overlapping_prefixes_1MiB");
    group.throughput(Throughput::Elements(SUBSCRIPTIONS as u64));
    group.sample_size(10);

    let (mut core, publisher) = setup(1 << 30);
    let mut dirty = Vec::with_capacity(SUBSCRIPTIONS);
    group.bench_function("drained", |b| {
        b.iter(|| {
            core.handle_message(publisher, publish.clone(), Instant::now());
            let bytes = drain(&mut core, &mut dirty);
            assert!(bytes > SUBSCRIPTIONS * PAYLOAD_BYTES, "every subscription got its EVENT");
        })
    });
    drop(core);

    let (mut core, publisher) = setup_over_cap();
    let dropped = core.stats().events_dropped_slow;
    group.bench_function("over_cap", |b| {
        b.iter(|| core.handle_message(publisher, publish.clone(), Instant::now()));
    });
    assert!(core.stats().events_dropped_slow > dropped, "EVENTs over the cap were refused");
    group.finish();
}

criterion_group!(benches, overlapping);

fn main() {
    let publish = publish_frame();
    let (mut core, publisher) = setup(1 << 30);
    report("drained", &mut core, publisher, &publish, true);
    drop(core);
    let (mut core, publisher) = setup_over_cap();
    report("over_cap", &mut core, publisher, &publish, false);
    drop(core);
    benches();
    Criterion::default().configure_from_args().final_summary();
}
