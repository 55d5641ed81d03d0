//! A connection's deadlines, in one place: the HELLO deadline, the liveness ping schedule
//! and the ping timeout.
//!
//! Pure decisions: time comes in as `now`, and what is due comes out as a [`TimerAction`]
//! for the connection task (`conn.rs`) to carry out. No I/O, no clock, no core — so these
//! can move into the sans-IO core as they are.

use std::time::{Duration, Instant};

use crate::limits;

/// Which peers are pinged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum PingPolicy {
    Always,
    Never,
    /// Only once the peer sent a ping itself (RawSocket with `rawsocket_ping = "auto"`).
    AfterPeerPings,
}

/// What a timer firing asks the connection to do.
#[derive(Debug, PartialEq)]
pub(crate) enum TimerAction {
    Nothing,
    /// Send a liveness ping with this payload (microseconds since the connection opened).
    SendPing([u8; 8]),
    /// The connection never established a session within the handshake timeout.
    CloseNoHello,
    /// A ping went unanswered for the ping timeout.
    ClosePingTimeout,
}

pub(crate) struct ConnTimers {
    opened: Instant,
    /// None: liveness pings are off (config).
    ping_interval: Option<Duration>,
    ping_timeout: Duration,
    pings_on: bool,
    peer_learns_pings: bool,
    /// Last time the peer sent anything.
    last_rx: Instant,
    /// An unanswered ping's send time.
    ping_sent: Option<Instant>,
    /// A session was established on the connection at some point (it need not still be).
    established: bool,
}

impl ConnTimers {
    pub(crate) fn new(
        opened: Instant,
        ping_interval: Option<Duration>,
        ping_timeout: Duration,
        pings: PingPolicy,
    ) -> Self {
        ConnTimers {
            opened,
            ping_interval,
            ping_timeout,
            pings_on: pings == PingPolicy::Always,
            peer_learns_pings: pings == PingPolicy::AfterPeerPings,
            last_rx: opened,
            ping_sent: None,
            established: false,
        }
    }

    fn hello_deadline(&self) -> Instant {
        self.opened + Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS)
    }

    fn ping_interval(&self) -> Option<Duration> {
        self.ping_interval.filter(|_| self.pings_on)
    }

    /// The peer sent bytes: it is alive, any ping is answered.
    pub(crate) fn on_rx(&mut self, now: Instant) {
        self.last_rx = now;
        self.ping_sent = None;
    }

    pub(crate) fn on_pong(&mut self) {
        self.ping_sent = None;
    }

    /// The peer pinged us: a peer that pings can be pinged (`PingPolicy::AfterPeerPings`).
    pub(crate) fn on_peer_ping(&mut self) {
        self.pings_on |= self.peer_learns_pings;
    }

    /// After messages were handled: `established()` says whether the core has a session on
    /// the connection now; asked only until it first has.
    pub(crate) fn check_established(&mut self, established: impl FnOnce() -> bool) {
        if !self.established {
            self.established = established();
        }
    }

    /// When the next timer is due (`limits::CONN_IDLE_WAKE_MS` from `now` if none is).
    pub(crate) fn next_deadline(&self, now: Instant) -> Instant {
        let mut at = now + Duration::from_millis(limits::CONN_IDLE_WAKE_MS);
        if let Some(interval) = self.ping_interval() {
            at = at.min(match self.ping_sent {
                Some(sent) => sent + self.ping_timeout,
                None => self.last_rx + interval,
            });
        }
        if !self.established {
            at = at.min(self.hello_deadline());
        }
        at
    }

    /// The timer fired: what is due at `now`. `established()` as for `check_established`,
    /// asked only once the HELLO deadline has passed.
    pub(crate) fn on_timer(&mut self, now: Instant, established: impl FnOnce() -> bool) -> TimerAction {
        if !self.established && now >= self.hello_deadline() {
            self.established = established();
            if !self.established {
                return TimerAction::CloseNoHello;
            }
        }
        let Some(interval) = self.ping_interval() else { return TimerAction::Nothing };
        match self.ping_sent {
            Some(sent) if now >= sent + self.ping_timeout => TimerAction::ClosePingTimeout,
            None if now >= self.last_rx + interval => {
                self.ping_sent = Some(now);
                TimerAction::SendPing((now.duration_since(self.opened).as_micros() as u64).to_be_bytes())
            }
            _ => TimerAction::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(30);
    const TIMEOUT: Duration = Duration::from_secs(15);

    fn hello() -> Duration {
        Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS)
    }

    #[test]
    fn no_hello_in_time_closes_unless_a_session_was_established() {
        // Goal: the HELLO deadline closes a connection without a session, and asks the core
        // only once the deadline passed. Method: fire the timer before and after it.
        let t0 = Instant::now();
        let mut t = ConnTimers::new(t0, None, TIMEOUT, PingPolicy::Never);
        assert_eq!(t.next_deadline(t0), t0 + hello());
        assert_eq!(t.on_timer(t0 + hello() / 2, || panic!("asked early")), TimerAction::Nothing);
        assert_eq!(t.on_timer(t0 + hello(), || false), TimerAction::CloseNoHello);
        let mut t = ConnTimers::new(t0, None, TIMEOUT, PingPolicy::Never);
        assert_eq!(t.on_timer(t0 + hello(), || true), TimerAction::Nothing);
        // Established once: no HELLO deadline any more, and the core is not asked again.
        t.check_established(|| panic!("asked again"));
        assert_eq!(t.next_deadline(t0), t0 + Duration::from_millis(limits::CONN_IDLE_WAKE_MS));
    }

    #[test]
    fn quiet_peer_is_pinged_then_reaped() {
        // Goal: a ping after `interval` of silence, a close after `timeout` without an
        // answer, and any received byte resets both.
        let t0 = Instant::now();
        let mut t = ConnTimers::new(t0, Some(INTERVAL), TIMEOUT, PingPolicy::Always);
        t.check_established(|| true);
        assert_eq!(t.next_deadline(t0), t0 + INTERVAL);
        let at = t0 + INTERVAL;
        let payload = (INTERVAL.as_micros() as u64).to_be_bytes();
        assert_eq!(t.on_timer(at, || unreachable!()), TimerAction::SendPing(payload));
        assert_eq!(t.next_deadline(at), at + TIMEOUT);
        t.on_rx(at + TIMEOUT / 2);
        assert_eq!(t.next_deadline(at), at + TIMEOUT / 2 + INTERVAL);
        let at = at + TIMEOUT / 2 + INTERVAL;
        assert!(matches!(t.on_timer(at, || unreachable!()), TimerAction::SendPing(_)));
        assert_eq!(t.on_timer(at + TIMEOUT, || unreachable!()), TimerAction::ClosePingTimeout);
    }

    #[test]
    fn pong_answers_the_ping() {
        // Goal: a pong clears the outstanding ping, so the next timer pings again instead of
        // reaping the connection.
        let t0 = Instant::now();
        let mut t = ConnTimers::new(t0, Some(INTERVAL), TIMEOUT, PingPolicy::Always);
        t.check_established(|| true);
        assert!(matches!(t.on_timer(t0 + INTERVAL, || unreachable!()), TimerAction::SendPing(_)));
        t.on_pong();
        assert!(matches!(t.on_timer(t0 + INTERVAL + TIMEOUT, || unreachable!()), TimerAction::SendPing(_)));
    }

    #[test]
    fn auto_rawsocket_peer_is_pinged_only_after_it_pinged() {
        // Goal: `PingPolicy::AfterPeerPings` arms no ping timer until the peer pings; `Never`
        // never does, even then.
        let t0 = Instant::now();
        let idle = t0 + Duration::from_millis(limits::CONN_IDLE_WAKE_MS);
        let mut t = ConnTimers::new(t0, Some(INTERVAL), TIMEOUT, PingPolicy::AfterPeerPings);
        t.check_established(|| true);
        assert_eq!(t.next_deadline(t0), idle);
        assert_eq!(t.on_timer(t0 + INTERVAL, || unreachable!()), TimerAction::Nothing);
        t.on_peer_ping();
        assert_eq!(t.next_deadline(t0), t0 + INTERVAL);
        let mut t = ConnTimers::new(t0, Some(INTERVAL), TIMEOUT, PingPolicy::Never);
        t.check_established(|| true);
        t.on_peer_ping();
        assert_eq!(t.next_deadline(t0), idle);
    }

    #[test]
    fn pings_off_in_config_arm_nothing() {
        let t0 = Instant::now();
        let mut t = ConnTimers::new(t0, None, TIMEOUT, PingPolicy::Always);
        t.check_established(|| true);
        assert_eq!(t.next_deadline(t0), t0 + Duration::from_millis(limits::CONN_IDLE_WAKE_MS));
        assert_eq!(t.on_timer(t0 + INTERVAL, || unreachable!()), TimerAction::Nothing);
    }
}
