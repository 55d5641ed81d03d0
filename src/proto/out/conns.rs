//! Connections as the core sees them: generational slots, each with its out queue, its
//! state in the session state machine, and the slow-consumer rule for pushing a frame.
//! Nothing here routes or knows about sessions beyond their ID.

use std::time::Instant;

use super::super::frame::{Framing, OutFrame, OutQueue};
use super::super::realm::SlowConsumerPolicy;
use super::super::session::ConnId;
use super::super::wire::Id;

/// How the runtime opens a connection in the core.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub framing: Framing,
    /// Largest message the peer accepts (RawSocket handshake), `usize::MAX` if unlimited.
    pub max_out_message: usize,
    /// Where the connection came from: its listener, peer address, TLS.
    pub origin: Origin,
}

/// Where a connection came from. Authentication hangs off the listener (its index in the
/// config's listener list); the peer address is for logs only (`core::net`'s plain value
/// type: the core names no socket); `tls` is set when the transport is TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub listener: u16,
    pub peer: Option<core::net::SocketAddr>,
    pub tls: Option<TlsPeer>,
}

/// A TLS connection's facts the core may use: the client certificate's fingerprints, when
/// the client presented one that the listener's `client_ca` verified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsPeer {
    pub client_cert: Option<CertFingerprints>,
}

/// SHA-1 and SHA-256 of a certificate's DER bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertFingerprints {
    pub sha1: [u8; 20],
    pub sha256: [u8; 32],
}

/// Something the runtime must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreEvent {
    /// Close the connection's transport as `reason` says (flush first unless the peer is
    /// dead), then call `handle_close`.
    Close { conn: ConnId, reason: CloseReason },
    /// Send a transport-level ping (WebSocket ping frame, RawSocket PING) with this payload.
    Ping { conn: ConnId, payload: [u8; 8] },
    /// The session that lived on `conn` has released its registrations at their owners
    /// (see `ShardCore::teardown_pending`).
    TeardownDone { conn: ConnId },
    /// Every shard answered stats request `token`: `ShardCore::take_stats` has it.
    StatsReady { token: u64 },
}

/// Why the core closes a connection; decides the WebSocket close code and whether what is
/// queued is still flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The GOODBYE handshake finished.
    Goodbye,
    /// The router sent ABORT.
    Abort,
    /// The peer sent ABORT.
    PeerAbort,
    /// Even the compact WELCOME is larger than the peer's RawSocket limit.
    WelcomeTooLarge,
    SlowConsumer,
    /// No session established within the HELLO deadline.
    HelloTimeout,
    /// A liveness ping went unanswered: the peer is gone, nothing more is written.
    PingTimeout,
    /// Router shutdown, after the grace time.
    Shutdown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Goodbye => "goodbye",
            CloseReason::Abort => "abort",
            CloseReason::PeerAbort => "peer abort",
            CloseReason::WelcomeTooLarge => "peer limit too small for WELCOME",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::HelloTimeout => "no HELLO in time",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// The WebSocket close frame's code, or None when nothing more is written (the peer
    /// does not answer).
    pub fn ws_close_code(self) -> Option<u16> {
        match self {
            CloseReason::PingTimeout => None,
            CloseReason::Shutdown => Some(1001),
            _ => Some(1000),
        }
    }
}

/// Where a connection is in the WAMP session state machine.
#[derive(Debug)]
pub(crate) enum ConnState {
    ExpectHello,
    /// HELLO received; waiting for AUTHENTICATE or a dynamic authenticator (`login.rs`).
    Authenticating,
    Established(Id),
    /// The router sent GOODBYE and waits for the echo.
    Closing,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub info: ConnInfo,
    pub out: OutQueue,
    pub state: ConnState,
    pub dirty: bool,
    /// ABORTed or otherwise ending: nothing more is queued except what is already there.
    pub closing: bool,
    pub slow_policy: SlowConsumerPolicy,
    /// In `Out::slow`, waiting for `settle` (keeps that list free of duplicates in O(1)).
    pub slow_marked: bool,
    pub live: Live,
}

/// A connection's liveness state (`proto::liveness` acts on it).
#[derive(Debug)]
pub(crate) struct Live {
    /// A session was established on the connection at some point: no HELLO deadline.
    pub established: bool,
    /// Liveness pings are sent (always on WebSocket; per `rawsocket_ping` on RawSocket).
    pub pings_on: bool,
    /// Pings turn on once the peer pings (`rawsocket_ping = "auto"`).
    pub learns_pings: bool,
    /// The last time the peer sent anything.
    pub last_rx: Instant,
    /// An unanswered ping's send time.
    pub ping_sent: Option<Instant>,
    pub opened_at: Instant,
}

impl Conn {
    pub fn new(info: ConnInfo, live: Live) -> Conn {
        Conn {
            info,
            out: OutQueue::default(),
            state: ConnState::ExpectHello,
            dirty: false,
            closing: false,
            slow_policy: SlowConsumerPolicy::Disconnect,
            slow_marked: false,
            live,
        }
    }
}

/// Generational slots for connections: a stale `ConnId` never reaches a new connection.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    entries: Vec<(u32, Option<Conn>)>,
    free: Vec<u32>,
    len: usize,
}

impl Slots {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn insert(&mut self, c: Conn) -> ConnId {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            let e = &mut self.entries[i as usize];
            e.0 = e.0.wrapping_add(1);
            e.1 = Some(c);
            return (u64::from(e.0) << 32) | u64::from(i);
        }
        self.entries.push((0, Some(c)));
        (self.entries.len() - 1) as u64
    }

    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        let (g, i) = ((id >> 32) as u32, id as u32);
        match self.entries.get(i as usize) {
            Some((gen_, Some(c))) if *gen_ == g => Some(c),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let (g, i) = ((id >> 32) as u32, id as u32);
        match self.entries.get_mut(i as usize) {
            Some((gen_, Some(c))) if *gen_ == g => Some(c),
            _ => None,
        }
    }

    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let (g, i) = ((id >> 32) as u32, id as u32);
        match self.entries.get_mut(i as usize) {
            Some((gen_, slot @ Some(_))) if *gen_ == g => {
                self.free.push(i);
                self.len -= 1;
                slot.take()
            }
            _ => None,
        }
    }

    /// Every open connection.
    pub fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.entries.iter().filter_map(|(_, c)| c.as_ref())
    }
}

/// Whether a frame may be dropped under the `drop` slow-consumer policy (only EVENTs).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Event,
    Control,
}

/// What pushing one frame did (the counters are the caller's to add up).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Connection closing, or gone.
    Skipped,
    /// Larger than the peer's RawSocket limit.
    TooBig,
    /// Over the pending-bytes cap under the drop policy (EVENTs only).
    DroppedSlow,
    /// Over the pending-bytes cap: the connection is now a slow consumer.
    Slow,
}

/// Queue `frame` on connection `c` (id `conn`), applying the size limit and the
/// slow-consumer policy. The hot path of fan-out: no lookups, no counters. Always inlined:
/// out of line it cost a 1→100 fan-out ~10% more instructions (callgrind, `bench/fanout.rs`).
#[inline(always)]
pub(crate) fn push_frame(
    c: &mut Conn,
    conn: ConnId,
    frame: OutFrame,
    class: Class,
    pending_bytes_max: usize,
    dirty: &mut Vec<ConnId>,
) -> Pushed {
    if c.closing {
        return Pushed::Skipped;
    }
    let len = frame.len();
    if len > c.info.max_out_message.saturating_add(4) {
        return Pushed::TooBig;
    }
    if c.out.bytes() + len > pending_bytes_max {
        return over_cap(c, class);
    }
    c.out.push_sized(len, frame);
    if !c.dirty {
        c.dirty = true;
        dirty.push(conn);
    }
    Pushed::Queued
}

/// What [`push_frame`] would certainly do with any frame of `least..=most()` bytes on `c`,
/// if it refuses every such frame the same way; `None` if one might be queued, or if the
/// outcome depends on the exact size (`most` is only asked then). A fan-out asks before it
/// builds a frame, so a connection already over its limits costs no encoding.
pub(crate) fn refusal(
    c: &Conn,
    least: usize,
    most: impl FnOnce() -> usize,
    class: Class,
    pending_bytes_max: usize,
) -> Option<Pushed> {
    if c.closing {
        return Some(Pushed::Skipped);
    }
    let too_big = c.info.max_out_message.saturating_add(4);
    if least > too_big {
        return Some(Pushed::TooBig);
    }
    // Over the cap for the smallest frame, so for all of them; but "too big" is checked
    // first, so a size limit within reach of the largest frame leaves the outcome open.
    if c.out.bytes() + least > pending_bytes_max && (too_big == usize::MAX || most() <= too_big) {
        return Some(over_cap(c, class));
    }
    None
}

/// A frame of `class` does not fit under `c`'s pending-bytes cap: dropped (EVENTs under the
/// drop policy) or the connection is a slow consumer.
#[inline]
fn over_cap(c: &Conn, class: Class) -> Pushed {
    if class == Class::Event && c.slow_policy == SlowConsumerPolicy::Drop {
        return Pushed::DroppedSlow;
    }
    Pushed::Slow
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::Transport;
    use crate::proto::wire::Serializer;
    use bytes::Bytes;

    fn conn(max_out_message: usize, queued: usize, policy: SlowConsumerPolicy, closing: bool) -> Conn {
        let now = Instant::now();
        let framing = Framing { transport: Transport::RawSocket, serializer: Serializer::MsgPack };
        let info = ConnInfo { framing, max_out_message, origin: Origin::default() };
        let live = Live {
            established: true,
            pings_on: false,
            learns_pings: false,
            last_rx: now,
            ping_sent: None,
            opened_at: now,
        };
        let mut c = Conn::new(info, live);
        c.slow_policy = policy;
        c.closing = closing;
        if queued > 0 {
            c.out.push(Bytes::from(vec![0u8; queued]));
        }
        c
    }

    /// Goal: `refusal` answers only what `push_frame` would certainly do with every frame
    /// of the given size range, so skipping the build never changes an outcome. Method:
    /// every combination of small peer limits, queued bytes, policies and closing, and
    /// every size range within a small universe; where `refusal` answers, push a frame of
    /// each size in the range and compare.
    #[test]
    fn refusals_are_what_push_frame_would_do() {
        const CAP: usize = 40;
        let mut answered = 0;
        for max_out in [8, 20, 30, usize::MAX] {
            for queued in [0, 10, 25, 40] {
                for policy in [SlowConsumerPolicy::Drop, SlowConsumerPolicy::Disconnect] {
                    for closing in [false, true] {
                        for class in [Class::Event, Class::Control] {
                            for least in 1..50 {
                                for most in least..50 {
                                    let c = conn(max_out, queued, policy, closing);
                                    let Some(r) = refusal(&c, least, || most, class, CAP) else { continue };
                                    answered += 1;
                                    for len in least..=most {
                                        let mut c = conn(max_out, queued, policy, closing);
                                        let frame = OutFrame::Owned(Bytes::from(vec![0u8; len]));
                                        let pushed = push_frame(&mut c, 1, frame, class, CAP, &mut Vec::new());
                                        assert!(
                                            pushed == r,
                                            "len {len} in {least}..={most}, max_out {max_out}, queued {queued}"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(answered > 1000, "refusal answers the certain cases ({answered})");
    }
}
