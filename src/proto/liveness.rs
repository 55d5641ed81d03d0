//! Connection deadlines: the HELLO deadline (a session must be established in time) and
//! liveness pings (an idle connection is pinged; one that stays silent past the ping
//! timeout is reaped, which frees its registrations). Decided here from the core's own
//! timer table; the runtime only reports input and pongs and writes the pings it is told to.
//!
//! Pings are always on for WebSocket, where RFC 6455 obliges every client to answer.
//! RawSocket PING support is optional in practice (Autobahn|Python's asyncio transport drops
//! the connection on a PING), so by default (`rawsocket_ping = "auto"`) a RawSocket peer is
//! pinged only once it has sent a PING itself; TCP keepalive reaps half-open connections
//! either way.

use std::time::Instant;

use super::frame::Transport;
use super::out::{CoreEvent, Live, Out};
use super::realm::{Liveness, RawSocketPing};
use super::session::ConnId;
use super::timers::{Timer, Timers};

/// A connection the timers found dead.
pub(crate) enum Reap {
    HelloTimeout(ConnId),
    PingTimeout(ConnId),
}

/// The liveness state of a connection opened at `now`.
pub(crate) fn new_live(cfg: &Liveness, transport: Transport, now: Instant) -> Live {
    let (pings_on, learns_pings) = match (transport, cfg.rawsocket_ping) {
        (Transport::WebSocket, _) | (Transport::RawSocket, RawSocketPing::Always) => (true, false),
        (Transport::RawSocket, RawSocketPing::Auto) => (false, true),
        (Transport::RawSocket, RawSocketPing::Never) => (false, false),
    };
    Live { established: false, pings_on, learns_pings, last_rx: now, ping_sent: None, opened_at: now }
}

/// Arm the timers of a connection just opened.
pub(crate) fn on_open(timers: &mut Timers, cfg: &Liveness, conn: ConnId, live: &Live) {
    timers.arm(live.opened_at + cfg.hello_timeout, Timer::Hello(conn));
    if let Some(interval) = cfg.ping_interval.filter(|_| live.pings_on) {
        timers.arm(live.opened_at + interval, Timer::Liveness(conn));
    }
}

/// The peer pinged us: a peer that pings can be pinged (`rawsocket_ping = "auto"`).
pub(crate) fn on_peer_ping(cx: &mut Out, timers: &mut Timers, cfg: &Liveness, conn: ConnId) {
    let Some(c) = cx.conns.get_mut(conn) else { return };
    if c.live.pings_on || !c.live.learns_pings {
        return;
    }
    c.live.pings_on = true;
    if let Some(interval) = cfg.ping_interval {
        timers.arm(c.live.last_rx + interval, Timer::Liveness(conn));
    }
}

/// A timer is due: what it means now (it may be stale — then it is dropped or re-armed).
pub(crate) fn on_timer(cx: &mut Out, timers: &mut Timers, cfg: &Liveness, timer: Timer) -> Option<Reap> {
    let now = cx.now;
    match timer {
        // The login's (`ShardCore::handle_timeout` gives it to `login.rs`).
        Timer::Authenticator(_) | Timer::Authorizer(_) | Timer::Call(_) => None,
        Timer::Hello(conn) => {
            let c = cx.conns.get(conn)?;
            (!c.live.established && !c.closing).then_some(Reap::HelloTimeout(conn))
        }
        Timer::Liveness(conn) => {
            let interval = cfg.ping_interval?;
            let c = cx.conns.get_mut(conn)?;
            if c.closing || !c.live.pings_on {
                return None;
            }
            match c.live.ping_sent {
                Some(sent) if now >= sent + cfg.ping_timeout => Some(Reap::PingTimeout(conn)),
                Some(sent) => {
                    timers.arm(sent + cfg.ping_timeout, Timer::Liveness(conn));
                    None
                }
                None if now >= c.live.last_rx + interval => {
                    c.live.ping_sent = Some(now);
                    let payload = (now.duration_since(c.live.opened_at).as_micros() as u64).to_be_bytes();
                    cx.events.push_back(CoreEvent::Ping { conn, payload });
                    timers.arm(now + cfg.ping_timeout, Timer::Liveness(conn));
                    None
                }
                None => {
                    timers.arm(c.live.last_rx + interval, Timer::Liveness(conn));
                    None
                }
            }
        }
    }
}
