//! Shared robustness-test support for the serializers: a deterministic generator, hex
//! helpers, the WAMP test-vector corpus, the mutate/decode/re-encode checks the MessagePack
//! and CBOR tests run, and the memory checks every serializer's tests run
//! ([`options_bounds_hold`], measured by this test binary's counting allocator,
//! [`peak_alloc_bytes`]). Test code only; there is no production code here.
//!
//! Each helper is parameterised by what differs between the codecs (the serializer, the
//! mutator's byte tables and hostile headers, seeds, how a random frame is made to look like
//! a message); the codec-specific checks stay in the codecs' own test modules.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes as Frame;

use super::codec::Serializer;
use super::error::DecodeError;
use super::message::{Message, Payload, decode, encode_to_vec, encode_value};
use super::value::{Dict, Value};
use crate::limits::{
    ID_MAX, OPTIONS_DECODED_MAX_BYTES, OPTIONS_MAX_BYTES, OPTIONS_VALUES_MAX, PUBLISH_FILTER_ENTRIES_MAX,
};

/// A small deterministic generator, so a failure reproduces and the tests need no crate.
pub(crate) enum Rng {
    /// splitmix64 (the binary codecs' tests).
    SplitMix64(u64),
    /// xorshift64* (the JSON tests).
    XorShift64Star(u64),
}

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        match self {
            Rng::SplitMix64(s) => {
                *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *s;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            }
            Rng::XorShift64Star(s) => {
                *s ^= *s >> 12;
                *s ^= *s << 25;
                *s ^= *s >> 27;
                s.wrapping_mul(0x2545_F491_4F6C_DD1D)
            }
        }
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes from hex digits; spaces are ignored.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s = s.replace(' ', "");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

pub(crate) fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The `serializer` byte strings of every single-message WAMP test vector, files in name
/// order so a seed always yields the same inputs.
pub(crate) fn vector_frames(serializer: Serializer) -> Vec<Vec<u8>> {
    let name = match serializer {
        Serializer::Json => "json",
        Serializer::MsgPack => "msgpack",
        Serializer::Cbor => "cbor",
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wamp-vectors/singlemessage");
    let mut out = Vec::new();
    for dir in ["basic", "advanced"] {
        let mut files: Vec<_> =
            std::fs::read_dir(format!("{root}/{dir}")).expect("vector dir").map(|e| e.expect("entry").path()).collect();
        files.sort();
        for path in files {
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("vector json");
            for sample in doc["samples"].as_array().into_iter().flatten() {
                for v in sample["serializers"][name].as_array().into_iter().flatten() {
                    out.push(hex(v["bytes_hex"].as_str().expect("bytes_hex")));
                }
            }
        }
    }
    assert!(out.len() >= 30, "only {} {name} vectors", out.len());
    out
}

/// What the binary serializers' robustness tests differ in.
pub(crate) struct Binary {
    /// The serializer under test.
    pub(crate) serializer: Serializer,
    /// The other binary serializer: whatever decodes is transcoded to it.
    pub(crate) transcode_to: Serializer,
    /// Bytes `mutate` writes over others: headers with large, edge-case, indefinite or
    /// reserved lengths, and otherwise special bytes.
    pub(crate) interesting: &'static [u8],
    /// Hostile headers (huge lengths, unfinished items) `mutate` inserts.
    pub(crate) headers: &'static [&'static [u8]],
}

impl Binary {
    /// One to four random edits of `base`: bit flips, interesting or random bytes, inserts,
    /// deletions, truncation, a splice from another `corpus` frame, or a hostile header.
    pub(crate) fn mutate(&self, rng: &mut Rng, base: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut b = base.to_vec();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(b.len() + 1);
            match rng.below(8) {
                0 if i < b.len() => b[i] ^= 1 << rng.below(8),
                1 if i < b.len() => b[i] = self.interesting[rng.below(self.interesting.len())],
                2 if i < b.len() => b[i] = rng.next() as u8,
                3 => {
                    let n = rng.below(8);
                    b.splice(i..i, (0..n).map(|_| rng.next() as u8));
                }
                4 => {
                    let end = (i + 1 + rng.below(8)).min(b.len());
                    b.drain(i.min(end)..end);
                }
                5 => b.truncate(i),
                6 => {
                    let other = &corpus[rng.below(corpus.len())];
                    let from = rng.below(other.len());
                    let to = (from + rng.below(16)).min(other.len());
                    b.splice(i..i, other[from..to].iter().copied());
                }
                _ => {
                    let header = self.headers[rng.below(self.headers.len())];
                    b.splice(i..i, header.iter().copied());
                }
            }
        }
        b
    }

    /// Decode `bytes`; when that works, re-encode, decode again, check the second encoding
    /// is the same, and transcode to the other binary serializer and to JSON: a transcode
    /// may fail (a payload key JSON cannot carry), but what it produces must decode, or for
    /// JSON, be JSON to serde_json. Returns whether the frame decoded.
    pub(crate) fn exercise(&self, bytes: &[u8]) -> bool {
        let (ser, other) = (self.serializer, self.transcode_to);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let Ok(msg) = decode(ser, &Frame::from(bytes.to_vec())) else {
                return false;
            };
            let again = encode_to_vec(ser, &msg).expect("re-encode");
            let msg2 = decode(ser, &Frame::from(again.clone())).expect("decode our own bytes");
            assert_eq!(encode_to_vec(ser, &msg2).expect("encode"), again);
            if let Ok(transcoded) = encode_to_vec(other, &msg) {
                decode(other, &Frame::from(transcoded))
                    .unwrap_or_else(|e| panic!("decode the {other:?} transcode: {e:?}"));
            }
            // Not decoded back: a string that starts with U+0000 reads as binary in JSON.
            if let Ok(json) = encode_to_vec(Serializer::Json, &msg) {
                serde_json::from_slice::<serde_json::Value>(&json).expect("the JSON transcode is JSON");
            }
            true
        }));
        outcome.unwrap_or_else(|_| panic!("panicked on input {}", to_hex(bytes)))
    }

    /// Every vector decodes and survives `exercise`; every proper prefix of it fails to
    /// decode, and so does it followed by `trailing_item` (a complete one-byte item).
    pub(crate) fn vectors_truncated_or_extended_fail_cleanly(&self, trailing_item: u8) {
        let ser = self.serializer;
        for v in vector_frames(ser) {
            assert!(self.exercise(&v), "{}", to_hex(&v));
            assert!(decode(ser, &Frame::from(v.clone())).is_ok(), "{}", to_hex(&v));
            for cut in 0..v.len() {
                assert!(decode(ser, &Frame::from(v[..cut].to_vec())).is_err(), "{}", to_hex(&v[..cut]));
            }
            let mut longer = v.clone();
            longer.push(trailing_item);
            assert!(decode(ser, &Frame::from(longer)).is_err());
        }
    }

    /// `skip` and value decoding walk items separately; on any input, whatever decodes as a
    /// value must skip to the same end, and whatever `skip` rejects must not decode. For
    /// 40,000 mutated vectors from `seed`, `walk(bytes)` runs the codec's cursor over the
    /// first item both ways: where `skip` ended (`None` if it failed), and where value
    /// decoding ended or why it failed.
    pub(crate) fn skip_and_value_agree(
        &self,
        seed: u64,
        walk: impl Fn(&[u8]) -> (Option<usize>, Result<usize, DecodeError>),
    ) {
        let corpus = vector_frames(self.serializer);
        let mut rng = Rng::SplitMix64(seed);
        let mut decoded = 0;
        for _ in 0..40_000 {
            let base = &corpus[rng.below(corpus.len())];
            let bytes = self.mutate(&mut rng, base, &corpus);
            match walk(&bytes) {
                (skipped, Ok(built)) => {
                    decoded += 1;
                    let Some(walked) = skipped else { panic!("skip failed where decoding worked: {}", to_hex(&bytes)) };
                    assert_eq!(walked, built, "{}", to_hex(&bytes));
                }
                (None, Err(_)) => {}
                // Only key types are checked by decoding and not by `skip`.
                (Some(_), Err(e)) => assert!(matches!(e, DecodeError::KeyType { .. }), "{e} for {}", to_hex(&bytes)),
            }
        }
        assert!(decoded > 1_000, "only {decoded} mutants decoded");
    }

    /// Mutated vectors, then random frames, through `exercise`: no panics, and enough
    /// mutants decode for the re-encode checks to mean something. `seed` is the default
    /// seed; `message_prefix` gives the first bytes of a random frame that should look like
    /// the start of a message. SHARDBAR_FUZZ_ROUNDS and SHARDBAR_FUZZ_SEED allow a longer or
    /// different run.
    pub(crate) fn mutated_and_random_frames_never_panic(
        &self,
        seed: u64,
        message_prefix: impl Fn(&mut Rng) -> [u8; 2],
    ) {
        let corpus = vector_frames(self.serializer);
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let rounds = env("SHARDBAR_FUZZ_ROUNDS").unwrap_or(40_000);
        let mut rng = Rng::SplitMix64(env("SHARDBAR_FUZZ_SEED").unwrap_or(seed));
        let mut decoded = 0;
        for _ in 0..rounds {
            let base = &corpus[rng.below(corpus.len())];
            decoded += usize::from(self.exercise(&self.mutate(&mut rng, base, &corpus)));
        }
        assert!(decoded as u64 > rounds / 40, "only {decoded} of {rounds} mutants decoded");
        for _ in 0..rounds / 4 {
            let len = rng.below(48);
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half of them start like a message so the decoder gets past the first byte.
            if rng.below(2) == 0 {
                b.splice(0..0, message_prefix(&mut rng));
            }
            self.exercise(&b);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Memory: what decoding costs, measured
// ---------------------------------------------------------------------------------------

/// The test binary's allocator: the system one, counting the bytes the current thread holds
/// while [`peak_alloc_bytes`] measures. Only this crate's unit-test binary uses it.
struct Counting;

thread_local! {
    /// Whether this thread is being measured.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Bytes allocated minus bytes freed since the measurement started (frees of older
    /// memory make it negative).
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE_BYTES` seen.
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: allocations during thread teardown are not measured.
    let _ = MEASURING.try_with(|on| {
        if on.get() {
            let live = LIVE_BYTES.with(|l| {
                l.set(l.get() + delta);
                l.get()
            });
            PEAK_BYTES.with(|p| p.set(p.get().max(live)));
        }
    });
}

// SAFETY: every call is passed to `System` unchanged; the counting touches only
// const-initialised thread-locals of `Cell`s, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as a move, old and new both held at the peak: an allocator may copy.
            note(new_size as isize);
            note(-(layout.size() as isize));
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Run `f` and return its result and the most bytes the current thread held at once
/// during it, counted from zero at the start (the result itself included).
pub(crate) fn peak_alloc_bytes<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE_BYTES.with(|l| l.set(0));
    PEAK_BYTES.with(|p| p.set(0));
    MEASURING.with(|on| on.set(true));
    let out = f();
    MEASURING.with(|on| on.set(false));
    (out, PEAK_BYTES.with(|p| p.get()).max(0) as usize)
}

/// A PUBLISH frame in `ser` with `options`, topic `t` and `payload`.
fn publish_frame(ser: Serializer, options: Dict, payload: Payload) -> Frame {
    let msg = Message::Publish { request: 1, options, topic: "t".into(), payload };
    Frame::from(encode_to_vec(ser, &msg).expect("encode PUBLISH"))
}

/// The size of `v` encoded in `ser`.
fn encoded_len(ser: Serializer, v: &Value) -> usize {
    let mut out = Vec::new();
    encode_value(ser, v, &mut out);
    out.len()
}

/// `{"x": "aaa…"}` encoded in exactly `len` bytes in `ser` (for `len` well above the
/// string headers' thresholds).
fn options_of_len(ser: Serializer, len: usize) -> Dict {
    let with = |n: usize| Dict::new().with("x", "a".repeat(n));
    let overhead = encoded_len(ser, &Value::Dict(with(len))) - len;
    let d = with(len - overhead);
    assert_eq!(encoded_len(ser, &Value::Dict(d.clone())), len, "{ser:?}");
    d
}

/// Decode `frame`, returning the result and the most bytes held at once while decoding. It
/// runs on a new thread, so per-thread scratch memory (simd-json's) is counted when the
/// decode needs it rather than inherited from an earlier one.
fn measured_decode(ser: Serializer, frame: &Frame) -> (Result<Message, DecodeError>, usize) {
    std::thread::scope(|s| s.spawn(|| peak_alloc_bytes(|| decode(ser, frame))).join().expect("decode thread"))
}

/// The bounds on a message's `Options`/`Details` hold for `ser`: the encoded size cap
/// (`limits::OPTIONS_MAX_BYTES`) is exact and refuses a larger dict before building any of
/// it, the value budget (`limits::OPTIONS_VALUES_MAX`) is exact, and the worst shapes a peer
/// can pack within both stay under `limits::OPTIONS_DECODED_MAX_BYTES`; legitimate large
/// options and large payloads still pass.
pub(crate) fn options_bounds_hold(ser: Serializer) {
    // The size cap, at and one byte past it.
    let (at_cap, _) =
        measured_decode(ser, &publish_frame(ser, options_of_len(ser, OPTIONS_MAX_BYTES), Payload::empty()));
    assert!(at_cap.is_ok(), "{ser:?}: {at_cap:?}");
    let over = publish_frame(ser, options_of_len(ser, OPTIONS_MAX_BYTES + 1), Payload::empty());
    let (over, peak) = measured_decode(ser, &over);
    let e = over.expect_err("one byte over the cap");
    assert_eq!(e.innermost(), &DecodeError::DictTooLarge, "{ser:?}: {e}");
    assert_eq!(e.to_string(), format!("PUBLISH.Options: dict encoded in more than {OPTIONS_MAX_BYTES} bytes"));
    assert!(peak < 1024, "{ser:?}: {peak} bytes held to refuse a dict over the cap");

    // The 16 MiB of nils (zeros in JSON) that took ~1.2 GiB: refused fast, nothing built.
    let hostile =
        Dict::new().with("x", Value::List(vec![filler(ser); 16 << 20 >> usize::from(ser == Serializer::Json)]));
    let frame = publish_frame(ser, hostile, Payload::empty());
    let started = std::time::Instant::now();
    let (refused, peak) = measured_decode(ser, &frame);
    assert_eq!(refused.map_err(|e| e.innermost().clone()), Err(DecodeError::DictTooLarge), "{ser:?}");
    assert!(
        peak < 1024 && started.elapsed() < std::time::Duration::from_secs(1),
        "{ser:?}: {peak} bytes, {:?}",
        started.elapsed()
    );

    // The value budget: the dict and the list count as one value each, the elements one each.
    let nils = |n: usize| Dict::new().with("x", Value::List(vec![filler(ser); n]));
    let (at_budget, peak) = measured_decode(ser, &publish_frame(ser, nils(OPTIONS_VALUES_MAX - 2), Payload::empty()));
    assert!(at_budget.is_ok(), "{ser:?}: {at_budget:?}");
    assert!(peak <= OPTIONS_DECODED_MAX_BYTES, "{ser:?}: {peak} bytes");
    let (over, peak) = measured_decode(ser, &publish_frame(ser, nils(OPTIONS_VALUES_MAX - 1), Payload::empty()));
    let e = over.expect_err("one value over the budget");
    assert_eq!(e.innermost(), &DecodeError::TooManyValues, "{ser:?}: {e}");
    assert!(peak <= OPTIONS_DECODED_MAX_BYTES, "{ser:?}: {peak} bytes");

    // The worst shapes within both bounds: as many elements as fit both (the dict and the
    // list around them count as values too).
    type Shape = fn(Serializer, usize) -> Dict;
    let shapes: [(&str, Shape); 7] = [
        ("nils", |ser, n| Dict::new().with("x", Value::List(vec![filler(ser); n]))),
        ("empty lists", |_, n| Dict::new().with("x", Value::List(vec![Value::List(Vec::new()); n]))),
        ("empty dicts", |_, n| Dict::new().with("x", Value::List(vec![Value::Dict(Dict::new()); n]))),
        ("zeros", |_, n| Dict::new().with("x", Value::List(vec![Value::UInt(0); n]))),
        ("distinct keys", |ser, n| (0..n + 1).map(|i| (format!("{i:x}"), filler(ser))).collect()),
        ("short strings", |_, n| Dict::new().with("x", Value::List(vec![Value::str("abcde"); n]))),
        ("one long string", |ser, _| options_of_len(ser, OPTIONS_MAX_BYTES)),
    ];
    for (shape, make) in shapes {
        let fits = |n: usize| encoded_len(ser, &Value::Dict(make(ser, n))) <= OPTIONS_MAX_BYTES;
        let (mut n, mut over) = (0, OPTIONS_VALUES_MAX - 1);
        while n + 1 < over {
            let mid = (n + over) / 2;
            if fits(mid) { n = mid } else { over = mid }
        }
        let frame = publish_frame(ser, make(ser, n), Payload::empty());
        let (decoded, peak) = measured_decode(ser, &frame);
        assert!(decoded.is_ok(), "{ser:?} {shape}: {decoded:?}");
        assert!(peak <= OPTIONS_DECODED_MAX_BYTES, "{ser:?} {shape}: {peak} bytes held");
    }

    // Legitimate large options: full exclude and eligible lists of the largest session IDs.
    let ids = |id: u64| Value::List(vec![Value::UInt(id); PUBLISH_FILTER_ENTRIES_MAX]);
    let filters = Dict::new().with("exclude", ids(ID_MAX)).with("eligible", ids(ID_MAX - 1)).with("acknowledge", true);
    assert!(decode(ser, &publish_frame(ser, filters, Payload::empty())).is_ok(), "{ser:?}");

    // A large payload is not options: 4 MiB of nils pass through, and transcode.
    let args = vec![filler(ser); 4 << 20 >> usize::from(ser == Serializer::Json)];
    let payload = Payload::from_values(ser, Some(&args), None);
    let decoded = decode(ser, &publish_frame(ser, Dict::new(), payload)).expect("large payload");
    let Message::Publish { payload, .. } = decoded else { panic!("not a PUBLISH") };
    let other = if ser == Serializer::Json { Serializer::MsgPack } else { Serializer::Json };
    assert_eq!(payload.transcode(other).and_then(|p| p.args()).map(|a| a.len()), Ok(args.len()));
}

/// The cheapest value to encode in `ser`: nil (one byte) in the binary formats, `0` in JSON
/// (two bytes with its comma, against five for `null`).
fn filler(ser: Serializer) -> Value {
    if ser == Serializer::Json { Value::UInt(0) } else { Value::Null }
}
