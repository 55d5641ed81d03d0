//! The bodies of shardbar's fuzz targets. Each target in `fuzz_targets/` is one line that
//! calls a function here; the functions call the `shardbar` library's public API and check
//! what must hold for any input (beyond "does not panic").
//!
//! - `codecs`: the three WAMP serializers (decode, re-encode, transcode) and the config file;
//! - `transports`: the WebSocket and RawSocket frame decoders and the HTTP request head;
//! - `shards`: a multi-shard `ShardCore` set driven by arbitrary client actions.
//!
//! Must not: reach into the router's private state, do I/O, or depend on the clock (the
//! shards harness reads it once for a starting `Instant` and then advances its own time as
//! the input says), so every input replays the same way.

pub mod codecs;
pub mod shards;
pub mod transports;

/// Splits a byte stream into the read-sized pieces a socket might deliver, so the
/// incremental decoders see headers and payloads cut at every place. The cut sizes come
/// from `seed` (0: one piece), never from the stream itself, so the stream part of a seed
/// input stays a plain capture.
pub struct Chunks<'a> {
    rest: &'a [u8],
    state: u32,
}

impl<'a> Chunks<'a> {
    pub fn new(stream: &'a [u8], seed: u8) -> Chunks<'a> {
        Chunks { rest: stream, state: u32::from(seed) }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let len = if self.state == 0 {
            self.rest.len()
        } else {
            // A small LCG: piece sizes 1..=64, different for every seed.
            self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            1 + (self.state >> 16) as usize % 64
        };
        let (piece, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        Some(piece)
    }
}
