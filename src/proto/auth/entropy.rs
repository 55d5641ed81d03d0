//! Unpredictable bytes for challenges and nonces, and the wall-clock text a WAMP-CRA
//! challenge carries — both injected, so the core stays sans-IO and the simulation seeds
//! them.
//!
//! [`Entropy`] is SHA-256 in counter mode over a 32-byte seed: the runtime seeds it from
//! the OS (`getrandom`) once per shard; the simulation from its test seed. Knowing past
//! outputs does not reveal the seed or later outputs (SHA-256 preimage resistance).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// A deterministic stream of unpredictable bytes.
pub struct Entropy {
    seed: [u8; 32],
    counter: u64,
}

impl Entropy {
    pub fn new(seed: [u8; 32]) -> Entropy {
        Entropy { seed, counter: 0 }
    }

    /// Fill `out` with fresh bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(self.counter.to_le_bytes());
            self.counter += 1;
            let block = h.finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }

    /// A value that is fixed for `data` under this seed and unpredictable without the seed
    /// (fake salts for unknown authids, stable across their retries).
    pub fn keyed(&self, data: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"shardbar keyed");
        h.update(self.seed);
        h.update(data);
        h.finalize().into()
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.fill(&mut b);
        b
    }
}

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entropy")
    }
}

/// `t` as ISO 8601 UTC with milliseconds, `2026-12-04T20:25:09.123Z` (what Crossbar puts
/// in a WAMP-CRA challenge's `timestamp`).
pub fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem / 60 % 60, rem % 60, since.subsec_millis())
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days` algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_is_deterministic_per_seed_and_never_repeats_a_block() {
        let mut a = Entropy::new([7; 32]);
        let mut b = Entropy::new([7; 32]);
        let x: [u8; 48] = a.bytes();
        assert_eq!(x, b.bytes::<48>());
        let y: [u8; 48] = a.bytes();
        assert_ne!(x, y);
        assert_ne!(Entropy::new([8; 32]).bytes::<32>(), Entropy::new([7; 32]).bytes::<32>());
    }

    #[test]
    fn iso8601_formats_utc_with_milliseconds() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2026-12-04T20:25:09.123Z
        let t = UNIX_EPOCH + Duration::from_millis(1_796_415_909_123);
        assert_eq!(iso8601(t), "2026-12-04T20:25:09.123Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(t), "2000-02-29T00:00:00.000Z");
    }
}
