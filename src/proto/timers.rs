//! Deadlines in the sans-IO core, in the quinn style: the core arms timers as it handles
//! inputs, the runtime asks [`Timers::next`] (through `ShardCore::poll_timeout`) when to
//! call `ShardCore::handle_timeout`, and the core decides what an expired timer means.
//!
//! A timer is never cancelled: when it fires, its owner checks whether it still applies
//! (the connection may be gone — slot generations make a stale `ConnId` miss — or may have
//! been active since) and re-arms if needed. Each connection has at most one HELLO timer
//! and one liveness timer in the table at a time, so the table is bounded by twice the
//! connections opened within the longest deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::session::ConnId;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// The connection must have an established session (HELLO → WELCOME) by now.
    Hello(ConnId),
    /// Liveness: ping an idle connection, or reap one whose ping went unanswered.
    Liveness(ConnId),
    /// A dynamic authenticator's call (sequence in `Calls`) must have answered by now.
    Authenticator(u64),
    /// A dynamic authorizer's call (sequence in `Calls`) must have answered by now.
    Authorizer(u64),
    /// A call's timeout (`CALL.Options.timeout`, or the realm's default/maximum).
    Call(u64),
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Earliest first; the sequence number keeps equal deadlines in arming order.
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    seq: u64,
}

impl Timers {
    pub fn arm(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, timer)));
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next timer due at `now`, removed from the table.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse((_, _, t))| t),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_in_deadline_then_arming_order() {
        // Goal: timers come out earliest first, ties in arming order, none before due.
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm(t0 + Duration::from_secs(2), Timer::Liveness(1));
        t.arm(t0 + Duration::from_secs(1), Timer::Hello(2));
        t.arm(t0 + Duration::from_secs(1), Timer::Hello(1));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        let due = t0 + Duration::from_secs(1);
        assert_eq!(t.pop_due(due), Some(Timer::Hello(2)));
        assert_eq!(t.pop_due(due), Some(Timer::Hello(1)));
        assert_eq!(t.pop_due(due), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(5)), Some(Timer::Liveness(1)));
        assert_eq!(t.next(), None);
    }
}
