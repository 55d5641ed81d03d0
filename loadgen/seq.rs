//! Loss and reordering detection from sequence numbers carried in the payload.
//!
//! Every source (publisher, caller) numbers its messages per *flow* from 1: a flow is one
//! (publisher, topic) pair, or one caller. A receiver keeps one [`SeqTracker`] per flow it
//! receives: a jump forward is a gap (those messages are lost unless they show up later,
//! which is then a reordering), a number at or below the last one is a reordering or a
//! duplicate. WAMP orders events per (publisher, subscriber) pair *across topics*, so the
//! receiver also checks the publisher's global sequence with an [`OrderTracker`]: it must
//! only increase, though it may skip (topics the receiver is not subscribed to).
//!
//! Messages missing at the end of a run (after the drain) are counted by comparing the
//! last number seen ([`SeqTracker::last`]) with the number the source sent.

/// What one observed sequence number says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The next number: nothing lost.
    InOrder,
    /// `n` numbers were skipped (lost, or arriving later out of order).
    Gap(u64),
    /// At or below the last number seen: out of order or duplicated. Always an error.
    Reordered,
}

/// Tracks one flow's sequence at one receiver. Sequences start at 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqTracker {
    last: u64,
}

impl SeqTracker {
    pub fn observe(&mut self, seq: u64) -> Seen {
        if seq == self.last + 1 {
            self.last = seq;
            Seen::InOrder
        } else if seq > self.last {
            let gap = seq - self.last - 1;
            self.last = seq;
            Seen::Gap(gap)
        } else {
            Seen::Reordered
        }
    }

    /// Highest number seen so far (0 = none).
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// Checks that a source's global sequence only increases at one receiver (it may skip).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderTracker {
    last: u64,
}

impl OrderTracker {
    /// False when `seq` is not above every number seen before: a reordering.
    pub fn observe(&mut self, seq: u64) -> bool {
        if seq > self.last {
            self.last = seq;
            true
        } else {
            false
        }
    }
}

/// Loss and ordering totals over any number of trackers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Integrity {
    /// Numbers skipped inside the stream.
    pub gap_lost: u64,
    /// Numbers never seen after the last one received (counted after the drain).
    pub tail_lost: u64,
    /// Out-of-order or duplicate arrivals, per flow and across topics.
    pub reordered: u64,
}

impl Integrity {
    pub fn record(&mut self, seen: Seen) {
        match seen {
            Seen::InOrder => {}
            Seen::Gap(n) => self.gap_lost += n,
            Seen::Reordered => self.reordered += 1,
        }
    }

    pub fn lost(&self) -> u64 {
        self.gap_lost + self.tail_lost
    }

    pub fn is_clean(&self) -> bool {
        self.lost() == 0 && self.reordered == 0
    }

    pub fn add(&mut self, other: &Integrity) {
        self.gap_lost += other.gap_lost;
        self.tail_lost += other.tail_lost;
        self.reordered += other.reordered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a clean stream is all InOrder; a skip is a gap of the right size; anything at
    // or below the last number is a reordering and does not move the tracker back.
    #[test]
    fn gaps_and_reorders() {
        let mut t = SeqTracker::default();
        let mut i = Integrity::default();
        for s in 1..=5 {
            assert_eq!(t.observe(s), Seen::InOrder);
        }
        assert_eq!(t.observe(9), Seen::Gap(3));
        assert_eq!(t.observe(7), Seen::Reordered, "late arrival after a gap");
        assert_eq!(t.observe(9), Seen::Reordered, "duplicate");
        assert_eq!(t.observe(10), Seen::InOrder);
        assert_eq!(t.last(), 10);
        for seen in [Seen::InOrder, Seen::Gap(3), Seen::Reordered, Seen::Reordered] {
            i.record(seen);
        }
        assert_eq!(i, Integrity { gap_lost: 3, tail_lost: 0, reordered: 2 });
        assert!(!i.is_clean());
    }

    // Goal: loss at the end of the stream (nothing after it to reveal a gap) shows as the
    // last number seen staying below what the source sent; the run adds that up.
    #[test]
    fn tail_loss_is_sent_minus_last() {
        let mut t = SeqTracker::default();
        assert_eq!(t.last(), 0, "nothing received");
        t.observe(1);
        t.observe(2);
        let sent = 4;
        assert_eq!(sent - t.last(), 2);
    }

    // Goal: the cross-topic order check accepts skips but not a step back.
    #[test]
    fn global_order_allows_skips_not_steps_back() {
        let mut o = OrderTracker::default();
        assert!(o.observe(1));
        assert!(o.observe(5));
        assert!(!o.observe(3));
        assert!(!o.observe(5));
        assert!(o.observe(6));
    }

    // Goal: totals add up across trackers (workers merge theirs).
    #[test]
    fn integrity_adds() {
        let mut a = Integrity { gap_lost: 1, tail_lost: 2, reordered: 3 };
        a.add(&Integrity { gap_lost: 10, tail_lost: 20, reordered: 30 });
        assert_eq!(a, Integrity { gap_lost: 11, tail_lost: 22, reordered: 33 });
        assert_eq!(a.lost(), 33);
        assert!(Integrity::default().is_clean());
    }
}
