//! WAMP IDs (`basic/building_blocks.md` § IDs).
//!
//! - Global scope (session, publication): random, uniform over [1, 2^53] — [`IdGen`].
//! - Router scope (subscription, registration): chosen by the router. shardbar encodes the
//!   owner shard in the low bits ([`router_scope_id`]) so any shard can tell who owns an ID
//!   without a lookup.
//! - Session scope (request IDs): sequential from 1, wrapping after 2^53 — [`RequestIds`].
//!
//! Sans-IO: [`IdGen`] is a seeded PRNG (xoshiro256**), so a simulation replays exactly; the
//! runtime seeds it from the OS.

use super::message::Id;
use crate::limits::{ID_MAX, SHARDS_MAX};

/// Random ID source: xoshiro256** (Blackman & Vigna), seeded by splitmix64.
#[derive(Clone, Debug)]
pub struct IdGen {
    s: [u64; 4],
}

impl IdGen {
    pub fn new(seed: u64) -> IdGen {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        IdGen { s: [next(), next(), next(), next()] }
    }

    /// Next raw 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A global-scope ID: uniform over [1, 2^53].
    pub fn next_global(&mut self) -> Id {
        (self.next_u64() >> 11) + 1
    }

    /// Uniform integer in [0, n) (n > 0), by Lemire's multiply-shift (bias < 2^-32 for
    /// the small n used here: picking among callees).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// A router-scope ID whose low 6 bits name the owner shard. `seq` starts at 1.
pub fn router_scope_id(seq: u64, owner_shard: usize) -> Id {
    debug_assert!(owner_shard < SHARDS_MAX);
    debug_assert!((1..(ID_MAX >> 6)).contains(&seq));
    (seq << 6) | owner_shard as u64
}

/// The owner shard encoded in a router-scope ID.
pub fn owner_of(id: Id) -> usize {
    (id & (SHARDS_MAX as u64 - 1)) as usize
}

/// Session-scope request IDs the router issues (INVOCATION requests to one callee):
/// 1, 2, 3, … wrapping back to 1 after 2^53.
#[derive(Clone, Debug, Default)]
pub struct RequestIds {
    last: u64,
}

impl RequestIds {
    pub fn next_id(&mut self) -> Id {
        self.last = if self.last >= ID_MAX { 1 } else { self.last + 1 };
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_ids_are_in_range_and_vary() {
        let mut g = IdGen::new(7);
        let ids: Vec<Id> = (0..10_000).map(|_| g.next_global()).collect();
        assert!(ids.iter().all(|&id| (1..=ID_MAX).contains(&id)));
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "10k random 53-bit IDs should not collide");
        // Top bit of the 53 is set about half the time: the range is really used.
        let high = ids.iter().filter(|&&id| id > ID_MAX / 2).count();
        assert!((4_000..6_000).contains(&high), "high={high}");
    }

    #[test]
    fn router_scope_ids_encode_owner() {
        for shard in [0, 1, 5, 63] {
            let id = router_scope_id(12345, shard);
            assert_eq!(owner_of(id), shard);
            assert!((1..=ID_MAX).contains(&id));
        }
    }

    #[test]
    fn request_ids_wrap_to_one() {
        let mut r = RequestIds { last: ID_MAX - 1 };
        assert_eq!(r.next_id(), ID_MAX);
        assert_eq!(r.next_id(), 1);
        assert_eq!(r.next_id(), 2);
    }

    #[test]
    fn below_stays_in_range() {
        let mut g = IdGen::new(1);
        let mut seen = [0usize; 3];
        for _ in 0..3000 {
            seen[g.below(3)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }
}
