//! Listeners and accepted sockets: binding a shard's listeners, the accept loops (TCP,
//! Unix, metrics), socket options (TCP_NODELAY, keepalive), and the first-byte sniff that
//! picks a connection's protocol: TLS (then the sniff again on the decrypted stream),
//! RawSocket or HTTP.
//!
//! This file decides where a connection goes; it must not read past the first byte (of the
//! socket, or of the decrypted stream) or speak any protocol (that starts in `tls.rs`,
//! `handshake.rs` and `http.rs`). Whether a connection may be served at all is
//! `admission.rs`'s. Plaintext connections never pass through TLS code: the handshakes and
//! the connection loop are generic over the stream, one copy per stream type.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::Task;
use glommio::net::{TcpListener, TcpStream, UnixListener};

use super::admission::{self, Ticket};
use super::guard::TlsRejection;
use super::guard::{AcceptError, Refusal};
use super::state::{Counted, Place, Shard};
use super::{handshake, http, io, tls};
use crate::config::{Config, ListenAddr, ListenerConfig};
use crate::limits;
use crate::proto::auth::fingerprint;
use crate::proto::core::Origin;
use crate::proto::wire::rawsocket;

/// A listener's config and its index in the config's listener list (which the core's
/// per-listener authentication and the shard's `listener_tls` are looked up by).
struct Listener {
    config: ListenerConfig,
    index: u16,
}

/// Bind this shard's listeners and start their accept loops. Every shard binds each TCP
/// listener (SO_REUSEPORT spreads connections); Unix sockets and the metrics listener are
/// bound by shard 0 only. Dropping the tasks stops accepting.
pub(crate) fn bind_listeners(shard: &Rc<Shard>) -> Result<Vec<Task<()>>, String> {
    let mut tasks = Vec::new();
    for (index, l) in shard.config.listeners.iter().enumerate() {
        let l = Rc::new(Listener { config: l.clone(), index: index as u16 });
        match &l.config.addr {
            ListenAddr::Tcp(addr) => {
                let listener = bind_tcp(*addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                tasks.push(glommio::spawn_local(accept_tcp(shard.clone(), listener, l.clone())));
            }
            ListenAddr::Unix(path) if shard.id == 0 => {
                // A stale socket file from an earlier run would make bind fail.
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    let _ = std::fs::remove_file(path);
                }
                let listener =
                    UnixListener::bind(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
                tasks.push(glommio::spawn_local(accept_unix(shard.clone(), listener, l.clone())));
            }
            ListenAddr::Unix(_) => {}
        }
    }
    if let (0, Some(addr)) = (shard.id, shard.config.metrics_addr) {
        let listener = bind_tcp(addr).map_err(|e| format!("cannot listen on {addr} (metrics): {e}"))?;
        tasks.push(glommio::spawn_local(accept_metrics(shard.clone(), listener)));
    }
    Ok(tasks)
}

/// Bind one of this shard's TCP listeners. SO_REUSEPORT: every shard binds the same port
/// and the kernel spreads connections over them. SO_REUSEADDR: accepted sockets inherit it,
/// so the connections this router closed first, left in TIME_WAIT for a minute after it
/// stops, do not make the next start's port check fail (`precheck_listeners`, which binds
/// with SO_REUSEADDR only: the kernel lets it past TIME_WAIT sockets that have the flag
/// too, never past a listening socket).
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket =
        socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(limits::LISTEN_BACKLOG)?;
    // SAFETY: the descriptor is a bound, listening TCP socket that `into_raw_fd` hands over:
    // nothing else owns or closes it.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

async fn accept_tcp(shard: Rc<Shard>, listener: TcpListener, l: Rc<Listener>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let peer = stream.peer_addr().ok();
                let ip = peer.map(|a| a.ip());
                match admission::admit(&shard, ip) {
                    Ok(ticket) => {
                        set_options(&shard, &stream);
                        let origin = Origin { listener: l.index, peer, tls: None };
                        glommio::spawn_local(serve(shard.clone(), stream, l.clone(), origin, ticket)).detach();
                    }
                    Err(refusal) => admission::refuse(&shard, stream, refusal, ip, true),
                }
            }
            Err(e) => {
                if admission::accept_failed(&shard, "tcp", e) == AcceptError::FdLimit
                    && admission::refuse_out_of_fds(&shard, listener.accept(), true).await
                {
                    continue;
                }
                admission::pause_accept(&shard).await;
            }
        }
    }
}

async fn accept_unix(shard: Rc<Shard>, listener: UnixListener, l: Rc<Listener>) {
    loop {
        match listener.accept().await {
            Ok(stream) => match admission::admit(&shard, None) {
                Ok(ticket) => {
                    let origin = Origin { listener: l.index, peer: None, tls: None };
                    glommio::spawn_local(serve(shard.clone(), stream, l.clone(), origin, ticket)).detach();
                }
                Err(refusal) => admission::refuse(&shard, stream, refusal, None, false),
            },
            Err(e) => {
                if admission::accept_failed(&shard, "unix", e) == AcceptError::FdLimit
                    && admission::refuse_out_of_fds(&shard, listener.accept(), false).await
                {
                    continue;
                }
                admission::pause_accept(&shard).await;
            }
        }
    }
}

/// The metrics listener: at most `limits::METRICS_CONNECTIONS_MAX` connections at once;
/// more are closed at accept.
async fn accept_metrics(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Some(place) = Place::take(&shard, Counted::MetricsConns) else {
                    admission::note_refused(
                        &shard,
                        Refusal::MetricsConnections,
                        stream.peer_addr().ok().map(|a| a.ip()),
                    );
                    continue; // dropping the stream closes it
                };
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    http::serve_metrics_listener(shard, stream).await;
                    drop(place);
                })
                .detach();
            }
            Err(e) => {
                admission::accept_failed(&shard, "metrics", e);
                admission::pause_accept(&shard).await;
            }
        }
    }
}

/// TCP_NODELAY (frames are coalesced per turn already) and the liveness keepalive.
fn set_options(shard: &Shard, stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    if let Some(ka) = keepalive_for(&shard.config) {
        use std::os::fd::{AsRawFd, BorrowedFd};
        // SAFETY: the fd belongs to `stream`, which outlives this borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        if let Err(e) = socket2::SockRef::from(&fd).set_tcp_keepalive(&ka) {
            tracing::debug!(shard = shard.id, error = %e, "could not set TCP keepalive");
        }
    }
}

/// TCP keepalive matching the liveness settings: probes start after `ping_interval` of
/// silence and the kernel drops the connection after 3 unanswered probes spread over
/// `ping_timeout`. This is what reaps half-open RawSocket connections (whose clients may
/// not implement RawSocket PING); WebSocket connections get application pings as well.
fn keepalive_for(config: &Config) -> Option<socket2::TcpKeepalive> {
    let idle = config.router.liveness.ping_interval?;
    let every = (config.router.liveness.ping_timeout / 3).max(Duration::from_secs(1));
    Some(socket2::TcpKeepalive::new().with_time(idle.max(Duration::from_secs(1))).with_interval(every).with_retries(3))
}

/// What a connection's first byte says it carries.
#[derive(Debug, PartialEq)]
enum Protocol {
    /// `0x16`, a TLS handshake record (`tls::RECORD_HANDSHAKE`): a ClientHello.
    Tls,
    /// `0x7F` can never start an HTTP request (or a TLS record): a RawSocket handshake.
    RawSocket,
    /// Anything else: an HTTP request (a WebSocket upgrade, `/health`, `/metrics`).
    Http,
}

fn sniff(first: u8) -> Protocol {
    match first {
        tls::RECORD_HANDSHAKE => Protocol::Tls,
        rawsocket::MAGIC => Protocol::RawSocket,
        _ => Protocol::Http,
    }
}

/// A connection between accept and its transport handshake: where it came from, its
/// handshake deadline, and the admission ticket that holds its places.
struct Arrival {
    listener: Rc<Listener>,
    origin: Origin,
    deadline: Instant,
    ticket: Ticket,
}

/// Serve one accepted stream. `ticket` holds the connection's admitted places until it
/// ends. TLS goes through the handshake first; on a listener with TLS and without
/// `allow_plaintext`, plaintext is refused, and on one without TLS, TLS is.
async fn serve<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    shard: Rc<Shard>,
    mut stream: S,
    listener: Rc<Listener>,
    origin: Origin,
    ticket: Ticket,
) {
    if shard.shutting_down.get() {
        return;
    }
    // One deadline for the transport handshake (TLS included), whichever protocol it is.
    let deadline = Instant::now() + Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS);
    let mut buf = BytesMut::with_capacity(limits::READ_CHUNK_MIN_BYTES);
    if !io::read_until(&mut stream, &mut buf, deadline, |b| !b.is_empty()).await {
        return;
    }
    // The TLS the listener had when the connection came: a reload changes later ones only.
    shard.sync_settings();
    let tls = shard.tls_of(listener.index);
    let arrival = Arrival { listener, origin, deadline, ticket };
    match (sniff(buf[0]), tls) {
        // Boxed: a TLS connection's state (rustls's, over a kilobyte, inside its handshake and
        // connection futures) would otherwise enlarge every plaintext connection's task too.
        (Protocol::Tls, Some(tls)) => Box::pin(serve_tls(shard, stream, buf, arrival, tls)).await,
        (Protocol::Tls, None) => {
            tls::note_rejected(&shard, TlsRejection::NotConfigured, origin.peer, "listener has no [listener.tls]");
        }
        (_, Some(tls)) if !tls.allow_plaintext => {
            tls::note_rejected(&shard, TlsRejection::Plaintext, origin.peer, "listener serves TLS only");
            handshake::tls_required(stream, buf, is_tcp(&arrival.listener), deadline).await;
        }
        _ => dispatch(shard, stream, buf, arrival).await,
    }
}

/// The TLS handshake (within the connection's handshake deadline, on its admission ticket),
/// then the first decrypted byte picks RawSocket or HTTP.
async fn serve_tls<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    shard: Rc<Shard>,
    stream: S,
    mut buf: BytesMut,
    mut arrival: Arrival,
    tls: tls::ListenerTls,
) {
    let mut stream = match tls::handshake(&tls, stream, &buf, arrival.deadline).await {
        Ok((stream, peer)) => {
            arrival.origin.tls = Some(peer);
            stream
        }
        Err(failed) => return tls::note_rejected(&shard, failed.why, arrival.origin.peer, &failed.detail),
    };
    shard.counters().count_tls_handshake();
    let cert = arrival.origin.tls.and_then(|t| t.client_cert);
    tracing::debug!(
        shard = shard.id,
        peer = ?arrival.origin.peer,
        client_cert_sha1 = cert.map(|c| fingerprint::format(&c.sha1)),
        client_cert_sha256 = cert.map(|c| fingerprint::format(&c.sha256)),
        "TLS handshake done"
    );
    buf.clear();
    if io::read_until(&mut stream, &mut buf, arrival.deadline, |b| !b.is_empty()).await {
        dispatch(shard, stream, buf, arrival).await;
    }
}

/// Hand a stream (plaintext, or decrypted) to the handshake its first byte (`buf[0]`)
/// asks for. HTTP is served on TCP listeners only (Unix sockets carry RawSocket); TLS
/// inside TLS is closed.
async fn dispatch<S: AsyncRead + AsyncWrite + Unpin + 'static>(
    shard: Rc<Shard>,
    stream: S,
    buf: BytesMut,
    arrival: Arrival,
) {
    let Arrival { listener, origin, deadline, ticket } = arrival;
    let config = &listener.config;
    match sniff(buf[0]) {
        Protocol::RawSocket => handshake::rawsocket(shard, stream, buf, config, origin, deadline, ticket).await,
        Protocol::Http if is_tcp(&listener) => {
            handshake::http(shard, stream, buf, config, origin, deadline, ticket).await
        }
        Protocol::Http | Protocol::Tls => {}
    }
}

/// Whether the listener is a TCP one (it may carry HTTP/WebSocket; Unix sockets carry
/// RawSocket only).
fn is_tcp(listener: &Listener) -> bool {
    matches!(listener.config.addr, ListenAddr::Tcp(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_picks_the_protocol() {
        // Goal: 0x16 means TLS, 0x7F means RawSocket; anything else (an HTTP method's first
        // letter, or garbage the HTTP parser will refuse) means HTTP.
        assert_eq!(sniff(0x16), Protocol::Tls);
        assert_eq!(sniff(0x7F), Protocol::RawSocket);
        for b in [b'G', b'P', b'O', b'H', b'\r', 0x00, 0xFF] {
            assert_eq!(sniff(b), Protocol::Http);
        }
    }
}
