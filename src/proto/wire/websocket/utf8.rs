//! Incremental UTF-8 validation of text messages, fail-fast as RFC 6455 §8.1 asks (the
//! Autobahn testsuite's 6.x cases): a byte that cannot continue any valid sequence fails at
//! once, however the message is cut into reads and fragments.
//!
//! Must not: allocate, or keep more than one partial character between calls.

use super::frame::{Error, INVALID_UTF8};

/// Incremental UTF-8 check for one text message. Fail-fast: a byte that cannot continue
/// any valid sequence fails at once; a sequence cut by a chunk or fragment boundary is
/// carried (at most 3 bytes) until the next bytes complete or break it. Uses the standard
/// library's validator, which reports exactly that distinction (`Utf8Error::error_len`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Utf8Validator {
    partial: [u8; 4],
    partial_len: usize,
}

impl Utf8Validator {
    pub(super) fn feed(&mut self, mut input: &[u8]) -> Result<(), Error> {
        if self.partial_len > 0 {
            let have = self.partial_len;
            let need = utf8_width(self.partial[0]).saturating_sub(have);
            let take = need.min(input.len());
            let (head, rest) = input.split_at(take);
            let total = have + take;
            let Some(slot) = self.partial.get_mut(have..total) else {
                return Err(INVALID_UTF8);
            };
            slot.copy_from_slice(head);
            match std::str::from_utf8(self.partial.get(..total).unwrap_or_default()) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete, and `input` is used up.
                    self.partial_len = total;
                    return Ok(());
                }
                Err(_) => return Err(INVALID_UTF8),
            }
            input = rest;
        }
        // JSON is almost always ASCII: a word-at-a-time check first (from_utf8 on short
        // messages was 8% of loadgen's CPU per WebSocket/JSON event).
        if is_ascii(input) {
            return Ok(());
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = input.get(e.valid_up_to()..).unwrap_or_default();
                let slot = self.partial.get_mut(..tail.len()).ok_or(INVALID_UTF8)?;
                slot.copy_from_slice(tail);
                self.partial_len = tail.len();
                Ok(())
            }
            Err(_) => Err(INVALID_UTF8),
        }
    }

    /// End of message: a character still incomplete is invalid.
    pub(super) fn finish(&mut self) -> Result<(), Error> {
        let complete = self.partial_len == 0;
        *self = Utf8Validator::default();
        if complete { Ok(()) } else { Err(INVALID_UTF8) }
    }
}

/// Whether every byte is below 0x80, sixteen at a time (std's `is_ascii` fell back to a
/// byte loop for message-sized inputs: ~7% of loadgen's CPU per WebSocket/JSON event).
fn is_ascii(input: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = input.chunks_exact(16);
    let mut acc = 0u64;
    for c in &mut chunks {
        let (a, b) = c.split_at(8);
        acc |=
            u64::from_le_bytes(a.try_into().unwrap_or_default()) | u64::from_le_bytes(b.try_into().unwrap_or_default());
    }
    let tail = chunks.remainder().iter().fold(0u8, |m, &b| m | b);
    acc & HIGH == 0 && tail < 0x80
}

/// Length of the UTF-8 sequence a valid lead byte starts; 0 for a byte that leads none.
fn utf8_width(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::ids::IdGen;

    // Goal: the sixteen-at-a-time ASCII check agrees with std at every length around its
    // chunk size and with one high byte at every position.
    #[test]
    fn ascii_check_matches_std() {
        for len in 0..70usize {
            let mut v: Vec<u8> = (0..len).map(|i| b' ' + (i % 90) as u8).collect();
            assert!(is_ascii(&v), "len {len}");
            for pos in 0..len {
                for high in [0x80u8, 0xC3, 0xFF] {
                    let keep = v[pos];
                    v[pos] = high;
                    assert_eq!(is_ascii(&v), v.is_ascii(), "len {len}, {high:#x} at {pos}");
                    assert!(!is_ascii(&v));
                    v[pos] = keep;
                }
            }
        }
    }

    // Goal: the incremental validator agrees with `std::str::from_utf8` on whole input,
    // however the input is cut. Method: tricky sequences and random bytes, cut at every
    // pair of positions.
    #[test]
    fn utf8_validator_matches_std() {
        let mut samples: Vec<Vec<u8>> = [
            &b"plain ascii"[..],
            "κόσμε 😀 \u{10FFFF} \u{FFFD}".as_bytes(),
            &[0xC0, 0x80],             // overlong NUL
            &[0xE0, 0x80, 0x80],       // overlong
            &[0xED, 0xA0, 0x80],       // surrogate
            &[0xF4, 0x90, 0x80, 0x80], // above U+10FFFF
            &[0xF0, 0x9F, 0x98],       // truncated
            &[0x80],                   // lone continuation
            &[0xF8, 0x88, 0x80, 0x80, 0x80],
            &[0xE2, 0x82, 0xAC, 0xE2, 0x82],
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect();
        let mut rng = IdGen::new(6);
        for _ in 0..300 {
            let len = rng.below(9);
            // Bias towards bytes that form or break multi-byte sequences.
            samples
                .push((0..len).map(|_| [0x41, 0x80, 0xBF, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xFF][rng.below(9)]).collect());
        }
        for s in &samples {
            let want = std::str::from_utf8(s).is_ok();
            for i in 0..=s.len() {
                for j in i..=s.len() {
                    let mut v = Utf8Validator::default();
                    let got = v.feed(&s[..i]).and_then(|()| v.feed(&s[i..j])).and_then(|()| v.feed(&s[j..]));
                    assert_eq!(got.and_then(|()| v.finish()).is_ok(), want, "{s:02x?} cut at {i}, {j}");
                }
            }
        }
    }
}
