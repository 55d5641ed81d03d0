//! What does the pattern index (`proto::pattern::UriIndex`) cost per lookup and per stored
//! URI byte?
//!
//! - Memory: before the timings, inserts long prefix and wildcard patterns (the worst
//!   case a peer can build: `limits::URI_LEN_MAX_BYTES` each) and prints the heap bytes the
//!   index holds per stored pattern byte, counted by a wrapper around the router's
//!   allocator. Each shard keeps one replica, so the figure is paid once per shard.
//! - Time: `matches` (the broker's fan-out lookup) and `best_match` (the dealer's) against
//!   an index of 10 000 prefix and 10 000 wildcard patterns, for a URI that matches a few
//!   of them and one that matches none.
//!
//! `PATTERN_MEMORY_ONLY=1` prints the memory figures and skips the timings.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{Criterion, criterion_group};
use shardbar::proto::pattern::UriIndex;
use shardbar::proto::wire::uri::MatchPolicy;

/// The router binary's allocator, counting the bytes it has handed out.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A small deterministic generator (xorshift), so every run builds the same patterns.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
    fn letter(&mut self) -> char {
        (b'a' + self.below(26) as u8) as char
    }
}

/// `count` distinct patterns of `len` bytes: a shared head, then random components of
/// 1–8 letters; for wildcards, about one component in four is empty.
fn long_patterns(rng: &mut Rng, count: usize, len: usize, wildcard: bool) -> Vec<String> {
    (0..count)
        .map(|i| {
            let mut p = format!("com.example.{i}");
            while p.len() < len {
                p.push('.');
                if wildcard && rng.below(4) == 0 {
                    continue;
                }
                for _ in 0..rng.below(8) + 1 {
                    p.push(rng.letter());
                }
            }
            p.truncate(len);
            // A pattern never ends in '.' here (a wildcard would, legally; it does not matter).
            if p.ends_with('.') {
                p.pop();
                p.push('z');
            }
            p
        })
        .collect()
}

/// Heap bytes held by an index of `patterns` under `policy`, per pattern byte.
fn bytes_per_uri_byte(patterns: &[String], policy: MatchPolicy) -> f64 {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut ix: UriIndex<u64> = UriIndex::default();
    for (i, p) in patterns.iter().enumerate() {
        let key: Arc<str> = Arc::from(p.as_str());
        ix.entry_or_insert_with(&key, policy, || i as u64);
    }
    let held = LIVE_BYTES.load(Ordering::Relaxed) - before;
    black_box(&ix);
    let stored: usize = patterns.iter().map(String::len).sum();
    held as f64 / stored as f64
}

fn memory() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (count, len) in [(1000, 4096), (10_000, 64)] {
        for policy in [MatchPolicy::Prefix, MatchPolicy::Wildcard] {
            let patterns = long_patterns(&mut rng, count, len, policy == MatchPolicy::Wildcard);
            let per_byte = bytes_per_uri_byte(&patterns, policy);
            println!(
                "memory: {count} {} patterns of {len} B: {per_byte:.2} heap bytes per pattern byte",
                policy.as_str()
            );
        }
    }
}

/// 10 000 prefix patterns (`com.example.dev<i>.`, every 100th replaced by the shorter
/// `com.example.dev<i / 100>`) and
/// 10 000 wildcard patterns (`com.example..dev<i>.<signal>` and `com..dev<i>.`).
fn routing_index() -> UriIndex<u64> {
    let mut ix = UriIndex::default();
    let mut add = |p: String, policy| {
        let n = ix.len() as u64;
        ix.entry_or_insert_with(&Arc::from(p.as_str()), policy, || n);
    };
    for i in 0..10_000 {
        if i % 100 == 0 {
            add(format!("com.example.dev{}", i / 100), MatchPolicy::Prefix);
        } else {
            add(format!("com.example.dev{i}."), MatchPolicy::Prefix);
        }
    }
    for i in 0..10_000 {
        if i % 2 == 0 {
            add(format!("com.example..dev{i}.temperature"), MatchPolicy::Wildcard);
        } else {
            add(format!("com..dev{i}."), MatchPolicy::Wildcard);
        }
    }
    ix
}

fn lookups(c: &mut Criterion) {
    let ix = routing_index();
    let mut group = c.benchmark_group("pattern_10k_prefix_10k_wildcard");
    // `matches_hit` meets the prefixes `com.example.dev4` and `com.example.dev42.` and the
    // wildcard `com.example..dev42.temperature`; `matches_wild_hit` only that wildcard.
    for (name, uri) in [
        ("matches_hit", "com.example.dev42.temperature"),
        ("matches_miss", "org.other.device.temperature"),
        ("matches_wild_hit", "com.site7.dev42.temperature"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut hits = 0u64;
                ix.matches(black_box(uri), |_, v| hits += v);
                hits
            })
        });
    }
    group.bench_function("best_match_hit", |b| b.iter(|| ix.best_match(black_box("com.example.dev42.temperature"))));
    group.bench_function("best_match_wild", |b| b.iter(|| ix.best_match(black_box("com.site7.dev43.x"))));
    group.finish();
}

criterion_group!(benches, lookups);

fn main() {
    memory();
    if std::env::var_os("PATTERN_MEMORY_ONLY").is_some() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
