//! Admission of accepted connections: whether one may be served, the [`Ticket`] that holds
//! its places while it is, what happens to one that may not, and what a failed accept does.
//!
//! Checked at accept, cheapest first: the shard's connections without a session
//! (`limits.max_handshakes_per_shard`), then the router-wide caps in [`Guard`]
//! (`limits.max_connections`, `limits.max_connections_per_ip`). A refused connection is
//! counted, logged (rate-limited) and answered where its protocol allows — RawSocket error 4,
//! HTTP 503 (`handshake::answer_refusal`) — unless `limits::REFUSALS_IN_FLIGHT_MAX` answers are
//! already under way on the shard: then it is closed at once.
//!
//! This file decides and counts; it must not speak a protocol (`handshake.rs` does).

use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_lite::future::or;
use futures_lite::{AsyncRead, AsyncWrite};

use super::guard::{AcceptError, LogKind, Refusal};
use super::handshake;
use super::state::{Counted, Place, Shard};
use crate::limits;

/// The places an admitted connection holds: one in the router-wide counts, one among the
/// shard's open connections, and (until its session is established) one among the shard's
/// handshakes. Dropping it gives them all back.
pub(crate) struct Ticket {
    shard: Rc<Shard>,
    ip: Option<IpAddr>,
    in_handshake: bool,
}

impl Ticket {
    /// Whether the connection still has no session (its place among handshakes is held and
    /// its bytes count against `limits.pre_session_bytes_max`).
    pub(crate) fn in_handshake(&self) -> bool {
        self.in_handshake
    }

    /// The connection's session is established: give back its place among handshakes.
    pub(crate) fn session_established(&mut self) {
        if std::mem::take(&mut self.in_handshake) {
            self.shard.counters().handshakes.fetch_sub(1, Relaxed);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.session_established();
        self.shard.guard.release(self.ip);
        self.shard.open_conns.set(self.shard.open_conns.get().saturating_sub(1));
    }
}

/// Admit a connection from `ip` (None: a Unix socket), or say which cap is full.
pub(crate) fn admit(shard: &Rc<Shard>, ip: Option<IpAddr>) -> Result<Ticket, Refusal> {
    let handshakes = &shard.counters().handshakes;
    if handshakes.load(Relaxed) >= shard.config.limits.max_handshakes_per_shard {
        return Err(Refusal::MaxHandshakes);
    }
    shard.guard.admit(ip)?;
    handshakes.fetch_add(1, Relaxed);
    shard.open_conns.set(shard.open_conns.get() + 1);
    Ok(Ticket { shard: shard.clone(), ip, in_handshake: true })
}

/// Count and log a refusal, then answer it in a task of its own (bounded) or close the
/// stream at once. `tcp`: the stream may carry HTTP (Unix sockets carry RawSocket only).
pub(crate) fn refuse<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    shard: &Rc<Shard>,
    stream: S,
    refusal: Refusal,
    ip: Option<IpAddr>,
    tcp: bool,
) {
    note_refused(shard, refusal, ip);
    let Some(place) = Place::take(shard, Counted::Refusals) else { return }; // dropping the stream closes it
    glommio::spawn_local(async move {
        handshake::answer_refusal(stream, refusal, tcp).await;
        drop(place);
    })
    .detach();
}

/// Count a refusal and log it (at most once per `limits::GUARD_LOG_INTERVAL_MS`).
pub(crate) fn note_refused(shard: &Shard, refusal: Refusal, ip: Option<IpAddr>) {
    shard.counters().count_refused(refusal);
    if let Some(skipped) = shard.log_limit.allow(LogKind::Refused, Instant::now()) {
        tracing::warn!(
            shard = shard.id,
            reason = refusal.as_str(),
            peer = ?ip,
            not_logged_since = skipped,
            "connection refused (counted in shardbar_connections_refused_total)"
        );
    }
}

/// A failed accept: count it and log it (rate-limited). Returns why it failed; the accept
/// loop then refuses a connection on the spare descriptor (`refuse_out_of_fds`, when out of
/// descriptors) or pauses (`pause_accept`).
pub(crate) fn accept_failed(shard: &Shard, listener: &str, error: glommio::GlommioError<()>) -> AcceptError {
    let error = std::io::Error::from(error);
    let kind = match error.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => AcceptError::FdLimit,
        _ => AcceptError::Other,
    };
    shard.counters().count_accept_error(kind);
    if let Some(skipped) = shard.log_limit.allow(LogKind::AcceptFailed, Instant::now()) {
        tracing::warn!(
            shard = shard.id,
            listener,
            %error,
            not_logged_since = skipped,
            "accept failed (counted in shardbar_accept_errors_total)"
        );
    }
    kind
}

/// Pause after a failed accept, so that a listener out of file descriptors does not spin:
/// `limits::ACCEPT_RETRY_MS`, or until the shard's lent spare descriptor is back (the next
/// waiting connection is then refused at once). Connections wait in the listen backlog
/// meanwhile.
pub(crate) async fn pause_accept(shard: &Shard) {
    or(shard.spare_back.notified(), glommio::timer::sleep(Duration::from_millis(limits::ACCEPT_RETRY_MS))).await;
}

/// Out of file descriptors: lend the shard's spare descriptor to the connection that made
/// accept fail — accept it and refuse it (`Refusal::FdLimit`: RawSocket error 4, HTTP 503),
/// then take the spare back once it is closed. A client hears "at the connection limit" at
/// once instead of waiting in the backlog until its connect times out. Returns false (the
/// caller pauses) if there is no spare to lend or the accept fails again.
///
/// The accept is not given a deadline: EMFILE means a connection is waiting, and dropping
/// an accept in flight could lose the descriptor it completes with.
pub(crate) async fn refuse_out_of_fds<S, F>(shard: &Rc<Shard>, accept: F, tcp: bool) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
    F: Future<Output = Result<S, glommio::GlommioError<()>>>,
{
    // A spare that could not be reopened after an earlier refusal (another shard took the
    // descriptor) is opened again first, or this shard would never refuse again.
    retake_spare(shard);
    let Some(spare) = shard.spare_fd.borrow_mut().take() else { return false };
    drop(spare);
    let Ok(stream) = accept.await else {
        retake_spare(shard);
        return false;
    };
    note_refused(shard, Refusal::FdLimit, None);
    let shard = shard.clone();
    glommio::spawn_local(async move {
        handshake::answer_refusal(stream, Refusal::FdLimit, tcp).await;
        retake_spare(&shard);
        shard.spare_back.notify();
    })
    .detach();
    true
}

/// Open the shard's spare descriptor again if it is not held (fails quietly while the
/// process is still out of descriptors; the next refusal tries again).
fn retake_spare(shard: &Shard) {
    let mut spare = shard.spare_fd.borrow_mut();
    if spare.is_none() {
        *spare = std::fs::File::open("/dev/null").ok();
    }
}
