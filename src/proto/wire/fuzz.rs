//! Shared robustness-test support for the serializers: a deterministic generator, hex
//! helpers, the WAMP test-vector corpus, and the mutate/decode/re-encode checks the MessagePack
//! and CBOR tests run. Test code only; there is no production code here.
//!
//! Each helper is parameterised by what differs between the codecs (the serializer, the
//! mutator's byte tables and hostile headers, seeds, how a random frame is made to look like
//! a message); the codec-specific checks stay in the codecs' own test modules.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes as Frame;

use super::codec::Serializer;
use super::error::DecodeError;
use super::message::{decode, encode_to_vec};

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
    /// is the same, and transcode to the other binary serializer. Returns whether the frame
    /// decoded.
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
