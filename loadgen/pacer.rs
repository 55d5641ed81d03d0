//! Open-loop pacing: a fixed schedule of intended send times.
//!
//! Message `i` of a source is *intended* to leave at `start + i × interval`. The sender
//! asks [`Pacer::due`] how many messages are due by now and stamps each with its intended
//! time, never with the time it actually got around to sending it. When the router (or the
//! socket, or this process) stalls, the schedule keeps running: the messages that should
//! have gone out during the stall carry their early intended times, so their measured
//! latency includes the stall. That is what keeps coordinated omission from hiding stalls
//! (the wrk2 / HdrHistogram approach); a closed-loop sender would simply not have sent them.

/// A fixed-rate schedule in nanoseconds on the run's clock.
#[derive(Clone, Debug)]
pub struct Pacer {
    start_ns: u64,
    /// Nanoseconds between intended sends, as a fraction-free rational: `period_num /
    /// period_den` ns, so that rates that do not divide 1e9 (3 msg/s) do not drift.
    period_num: u64,
    period_den: u64,
    /// Index of the next message to send.
    next: u64,
}

impl Pacer {
    /// `rate_per_s` messages per second starting at `start_ns`.
    ///
    /// # Panics
    /// If `rate_per_s` is zero (closed loop has no pacer; the caller decides that).
    pub fn new(start_ns: u64, rate_per_s: u64) -> Pacer {
        assert!(rate_per_s > 0, "a pacer needs a positive rate");
        Pacer { start_ns, period_num: 1_000_000_000, period_den: rate_per_s, next: 0 }
    }

    /// Intended send time of message `index`.
    pub fn intended_ns(&self, index: u64) -> u64 {
        self.start_ns + ((u128::from(index) * u128::from(self.period_num)) / u128::from(self.period_den)) as u64
    }

    /// How many messages are due at `now_ns` and not yet taken.
    pub fn due(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        // Messages 0..=k are due where intended(k) <= now.
        let elapsed = u128::from(now_ns - self.start_ns);
        let due_total = (elapsed * u128::from(self.period_den) / u128::from(self.period_num)) as u64 + 1;
        due_total.saturating_sub(self.next)
    }

    /// Take the next message: returns its intended send time.
    pub fn take(&mut self) -> u64 {
        let t = self.intended_ns(self.next);
        self.next += 1;
        t
    }

    /// Intended time of the next message not yet taken (when to wake up).
    pub fn next_ns(&self) -> u64 {
        self.intended_ns(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the schedule is exact (no drift) for rates that do not divide a second, and
    // `due` counts exactly the messages whose intended time has passed.
    #[test]
    fn schedule_is_exact_and_due_counts_passed_slots() {
        let p = Pacer::new(1_000, 3);
        assert_eq!(p.intended_ns(0), 1_000);
        assert_eq!(p.intended_ns(3), 1_000 + 1_000_000_000);
        assert_eq!(p.intended_ns(1), 1_000 + 333_333_333);
        assert_eq!(p.due(999), 0);
        assert_eq!(p.due(1_000), 1);
        assert_eq!(p.due(1_000 + 333_333_332), 1);
        assert_eq!(p.due(1_000 + 333_333_334), 2);
        // After a long time the count is rate × time (+1 for message 0), no rounding drift.
        assert_eq!(p.due(1_000 + 3_600 * 1_000_000_000), 3 * 3_600 + 1);
    }

    // Goal: a stalled sender catches up with its intended times, not with "now": the
    // messages it sends late keep the early stamps, which is what exposes the stall.
    #[test]
    fn a_stall_keeps_intended_stamps() {
        let mut p = Pacer::new(0, 1_000); // one per ms
        assert_eq!(p.due(0), 1);
        assert_eq!(p.take(), 0);
        // The sender was stuck for 10 ms: 10 more are due, stamped 1 ms, 2 ms, … 10 ms.
        let now = 10_000_000;
        assert_eq!(p.due(now), 10);
        let stamps: Vec<u64> = (0..10).map(|_| p.take()).collect();
        assert_eq!(stamps, (1..=10).map(|i| i * 1_000_000).collect::<Vec<_>>());
        assert_eq!(p.due(now), 0);
        assert_eq!(p.next_ns(), 11_000_000);
    }

    // Goal: a high rate (1 M/s) paced over 1 s yields exactly one million and one slots.
    #[test]
    fn high_rate_counts() {
        let p = Pacer::new(5, 1_000_000);
        assert_eq!(p.due(5 + 1_000_000_000), 1_000_001);
        assert_eq!(p.intended_ns(999_999), 5 + 999_999_000);
    }
}
