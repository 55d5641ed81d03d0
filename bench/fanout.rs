//! What does one publication cost the router core, by number of local subscribers?
//!
//! One shard, N subscriber connections (RawSocket + MessagePack) on one topic, one
//! publisher. Each iteration hands the core one encoded PUBLISH (64-byte payload) and then
//! drains every subscriber's out queue, as the runtime's writer would. Throughput is in
//! delivered EVENTs, so the per-element time is the marginal cost of one more subscriber:
//! the EVENT is encoded once and its bytes shared by every receiver.
//!
//! Also measured: a publication whose topic matches prefix and wildcard subscriptions
//! among many that do not (the pattern side of routing, `UriIndex::matches`), and encoding
//! one EVENT frame (the per-(subscription, serializer) cost).
//!
//! For instruction counts that do not depend on machine load, run a fixed number of
//! publications under callgrind instead of criterion:
//! `FANOUT_PROFILE=100:20000 valgrind --tool=callgrind target/release/deps/fanout-<hash>`
//! (subscribers:publications, or `patterns:20000` for the pattern case; subtract a `:0` run
//! to remove setup).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use shardbar::proto::core::{ConnInfo, CoreConfig, ShardCore};
use shardbar::proto::frame::{Framing, Transport, encode_frame};
use shardbar::proto::realm::RouterConfig;
use shardbar::proto::session::ConnId;
use shardbar::proto::wire::{Dict, Message, Payload, Serializer, Value, encode_to_vec};

// The router binary's allocator, so allocation costs match production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SER: Serializer = Serializer::MsgPack;

fn send(core: &mut ShardCore, conn: ConnId, msg: &Message) {
    core.handle_message(conn, Bytes::from(encode_to_vec(SER, msg).unwrap()), Instant::now());
}

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

/// One encoded PUBLISH of a 64-byte payload to the bench topic.
fn publish_frame() -> Bytes {
    let payload = Payload::from_values(SER, Some(&[Value::Bytes(vec![7u8; 56])]), None);
    let publish = Message::Publish { request: 1, options: Dict::new(), topic: "bench.topic".into(), payload };
    Bytes::from(encode_to_vec(SER, &publish).unwrap())
}

fn setup(subscribers: usize) -> (ShardCore, ConnId) {
    setup_with(&vec![("exact", "bench.topic".to_string()); subscribers])
}

/// A core with one subscriber connection per (match policy, topic), and a publisher.
fn setup_with(subscriptions: &[(&str, String)]) -> (ShardCore, ConnId) {
    let router = RouterConfig { pending_bytes_max: 1 << 30, ..RouterConfig::default() };
    let mut core = ShardCore::new(
        CoreConfig {
            shard: 0,
            shards: 1,
            seed: 1,
            router: Arc::new(router),
            auth_seed: [1; 32],
            wall_clock: std::time::UNIX_EPOCH,
        },
        Instant::now(),
    );
    let info = ConnInfo {
        framing: Framing { transport: Transport::RawSocket, serializer: SER },
        max_out_message: usize::MAX,
        origin: Default::default(),
    };
    let hello = Message::Hello { realm: "realm1".into(), details: Dict::new() };
    let mut dirty = Vec::new();
    for (policy, topic) in subscriptions {
        let c = core.handle_open(info, Instant::now());
        send(&mut core, c, &hello);
        let options = if *policy == "exact" { Dict::new() } else { Dict::new().with("match", Value::str(*policy)) };
        send(&mut core, c, &Message::Subscribe { request: 1, options, topic: topic.as_str().into() });
    }
    let publisher = core.handle_open(info, Instant::now());
    send(&mut core, publisher, &hello);
    drain(&mut core, &mut dirty);
    (core, publisher)
}

fn fanout(c: &mut Criterion) {
    let publish = publish_frame();
    let mut group = c.benchmark_group("core_fanout_msgpack_64B");
    for n in [1usize, 100, 10_000] {
        let (mut core, publisher) = setup(n);
        let mut dirty = Vec::with_capacity(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                core.handle_message(publisher, publish.clone(), Instant::now());
                let bytes = drain(&mut core, &mut dirty);
                assert!(bytes >= n * 64, "every subscriber got its EVENT");
            })
        });
    }
    group.finish();
}

/// Subscriptions for the pattern case: 8 that match `bench.topic` (1 exact, 3 prefix,
/// 4 wildcard) and 1000 that do not but share its first component or its trie paths.
fn pattern_subscriptions() -> Vec<(&'static str, String)> {
    let mut subs: Vec<(&str, String)> = vec![("exact", "bench.topic".into())];
    subs.extend(["bench", "bench.", "bench.top"].map(|t| ("prefix", t.to_string())));
    subs.extend(["bench.", ".topic", ".", "bench.topic"].map(|t| ("wildcard", t.to_string())));
    for i in 0..250 {
        subs.push(("exact", format!("bench.topic{i}")));
        subs.push(("prefix", format!("bench.topic{i}")));
        subs.push(("wildcard", format!("bench.topic{i}.")));
        subs.push(("wildcard", format!(".t{i}")));
    }
    subs
}

fn fanout_patterns(c: &mut Criterion) {
    let publish = publish_frame();
    let (mut core, publisher) = setup_with(&pattern_subscriptions());
    let mut dirty = Vec::new();
    let mut group = c.benchmark_group("core_fanout_patterns_msgpack_64B");
    group.throughput(Throughput::Elements(8));
    group.bench_function("8_of_1008", |b| {
        b.iter(|| {
            core.handle_message(publisher, publish.clone(), Instant::now());
            let bytes = drain(&mut core, &mut dirty);
            assert!(dirty.len() == 8 && bytes >= 8 * 64, "every matching subscriber, and only those, got its EVENT");
        })
    });
    group.finish();
}

fn encode_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_event_frame");
    for ser in Serializer::ALL {
        let payload = Payload::from_values(ser, Some(&[Value::str("x".repeat(56))]), None);
        let msg = Message::Event { subscription: 1234567, publication: 7654321987, details: Dict::new(), payload };
        let framing = Framing { transport: Transport::WebSocket, serializer: ser };
        group.bench_function(ser.name(), |b| b.iter(|| encode_frame(framing, &msg).unwrap()));
    }
    group.finish();
}

/// Fixed-count mode for callgrind: `FANOUT_PROFILE=<subscribers>:<publications>`, where
/// `<subscribers>` is a count of exact subscribers or `patterns` for the pattern case.
fn profile(spec: &str) {
    let (n, iters) = spec.split_once(':').expect("FANOUT_PROFILE=<subscribers>:<publications>");
    let iters: usize = iters.parse().expect("publications");
    let (mut core, publisher) = match n {
        "patterns" => setup_with(&pattern_subscriptions()),
        n => setup(n.parse().expect("subscribers")),
    };
    let publish = publish_frame();
    let mut dirty = Vec::new();
    let mut total = 0;
    for _ in 0..iters {
        core.handle_message(publisher, publish.clone(), Instant::now());
        total += drain(&mut core, &mut dirty);
    }
    println!("{iters} publications to {n} subscribers: {total} bytes delivered");
}

criterion_group!(benches, fanout, fanout_patterns, encode_event);

fn main() {
    if let Ok(spec) = std::env::var("FANOUT_PROFILE") {
        return profile(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
