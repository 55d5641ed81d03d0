//! One client connection: transport handshake, WAMP session setup, framing and buffered
//! non-blocking I/O. The roles (what a connection does once it is ready) live in
//! `worker.rs`; this file knows how to talk, not what to say.
//!
//! Three kinds of connection:
//! - WebSocket (`ws://`, over TLS `wss://`): HTTP upgrade with the serializer's
//!   subprotocol, masked frames;
//! - RawSocket (`rs://`, over TLS `rss://`): the 4-octet handshake, 4-octet frame prefixes;
//! - plain TCP to loadgen's own raw server (the `raw` baseline): one role byte, an ack,
//!   then RawSocket-style length-prefixed frames carrying bare probes — no WAMP at all.
//!
//! TLS sits under the framing: a TLS connection's reads and writes go through `tls.rs`
//! (one `Option` test per read or write call; the plaintext path is unchanged). Session
//! opening answers a CHALLENGE with the run's credentials (`auth.rs`) before WELCOME.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use shardbar::proto::wire::{Dict, Message, Serializer, Value, decode, encode, rawsocket, websocket};
use socket2::{Domain, Protocol, Socket, Type};

use crate::auth::Credentials;
use crate::tls::{TlsClient, TlsConn};

/// Largest message we accept from the router (RawSocket L = 15 is 16 MiB).
pub const MESSAGE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Read size per `read` call on busy connections.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Read size on connections that only hold a session (keeps 10k idle sessions small).
const READ_CHUNK_IDLE_BYTES: usize = 2 * 1024;

/// Role byte a raw-baseline client sends first, and the server's ack.
pub const RAW_ROLE_PUBLISHER: u8 = b'P';
pub const RAW_ROLE_SUBSCRIBER: u8 = b'S';
pub const RAW_ROLE_ECHO: u8 = b'E';
pub const RAW_ACK: u8 = b'K';

/// How loadgen reaches the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    RawSocket,
    /// Plain TCP to loadgen's raw server: no WAMP.
    Raw,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::RawSocket => "rawsocket",
            Transport::Raw => "raw-tcp",
        }
    }
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub serializer: Serializer,
    /// Host header and path for WebSocket.
    pub host: String,
    pub path: String,
    pub realm: String,
    /// Local addresses client sockets bind to, round-robin per session (`--source`);
    /// empty: the kernel picks.
    pub source: Vec<IpAddr>,
    /// TLS under the transport (`wss://`, `rss://`).
    pub tls: Option<TlsClient>,
    /// What HELLO announces and how a CHALLENGE is answered.
    pub auth: Arc<Credentials>,
}

impl Target {
    /// `websocket`, `rawsocket` or `raw-tcp`, with `+tls` when encrypted.
    pub fn transport_name(&self) -> String {
        let name = self.transport.name();
        if self.tls.is_some() { format!("{name}+tls") } else { name.to_owned() }
    }

    /// The local address session `i` (counted over the whole run) binds to, if any.
    pub fn source_for(&self, i: usize) -> Option<IpAddr> {
        (!self.source.is_empty()).then(|| self.source[i % self.source.len()])
    }
}

/// A parsed `--url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub transport: Transport,
    pub tls: bool,
    pub addr: SocketAddr,
    /// `host:port` as written (the WebSocket Host header).
    pub hostport: String,
    /// The host alone, without port or IPv6 brackets (the default TLS server name).
    pub host: String,
    pub path: String,
}

/// Parse `ws://host:port/path`, `wss://…`, `rs://host:port` (or `rawsocket://`, `tcp://`),
/// `rss://host:port` (RawSocket over TLS).
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("URL {url:?} has no scheme (ws:// or rs://)"))?;
    let (transport, tls) = match scheme {
        "ws" => (Transport::WebSocket, false),
        "wss" => (Transport::WebSocket, true),
        "rs" | "rawsocket" | "tcp" => (Transport::RawSocket, false),
        "rss" => (Transport::RawSocket, true),
        other => return Err(format!("URL scheme {other:?} is not ws, wss, rs or rss")),
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/ws".to_owned()),
    };
    use std::net::ToSocketAddrs;
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport:?} resolves to nothing"))?;
    let host = match hostport.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => hostport,
    };
    Ok(Url { transport, tls, addr, hostport: hostport.to_owned(), host: host.to_owned(), path })
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not started yet.
    Idle,
    /// Non-blocking connect in progress.
    Connecting,
    /// Waiting for the transport handshake reply (HTTP 101, RawSocket octets, raw ack).
    AwaitTransport,
    AwaitWelcome,
    /// AUTHENTICATE sent; waiting for WELCOME (or ABORT).
    Authenticating,
    /// Session open; waiting for SUBSCRIBED/REGISTERED.
    Setup,
    Ready,
    Closed,
}

/// A failure that ends the connection, with why.
#[derive(Debug)]
pub struct ConnError(pub String);

pub struct Conn {
    sock: Option<Socket>,
    fd: RawFd,
    /// Present on `wss://` and `rss://` connections once the TCP connect completed.
    tls: Option<Box<TlsConn>>,
    pub state: State,
    pub transport: Transport,
    pub ser: Serializer,
    rbuf: BytesMut,
    read_chunk: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    /// EPOLLOUT is registered (a write blocked).
    pub want_out: bool,
    ws: Option<websocket::Decoder>,
    rs: Option<rawsocket::Decoder>,
    ws_key: String,
    scratch: Vec<u8>,
    mask: u32,
    pub session: u64,
    /// Next request ID for setup messages (SUBSCRIBE, REGISTER).
    pub next_request: u64,
    /// SUBSCRIBED/REGISTERED still awaited.
    pub setup_pending: usize,
    pub started: Option<Instant>,
    /// Raw baseline: the role byte to send.
    raw_role: u8,
    /// Bytes read since the last `take_bytes_in`.
    bytes_in: u64,
}

impl Conn {
    pub fn new(transport: Transport, ser: Serializer, busy: bool, raw_role: u8, seed: u32) -> Conn {
        Conn {
            sock: None,
            fd: -1,
            tls: None,
            state: State::Idle,
            transport,
            ser,
            rbuf: BytesMut::new(),
            read_chunk: if busy { READ_CHUNK_BYTES } else { READ_CHUNK_IDLE_BYTES },
            wbuf: Vec::new(),
            wpos: 0,
            want_out: false,
            ws: None,
            rs: None,
            ws_key: String::new(),
            scratch: Vec::new(),
            mask: seed | 1,
            session: 0,
            next_request: 1,
            setup_pending: 0,
            started: None,
            raw_role,
            bytes_in: 0,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Start a non-blocking connect, from `source` if given (else the kernel picks).
    pub fn connect(&mut self, addr: SocketAddr, source: Option<IpAddr>) -> io::Result<()> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_nonblocking(true)?;
        sock.set_tcp_nodelay(true)?;
        if let Some(ip) = source {
            bind_source(&sock, ip)?;
        }
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        self.fd = sock.as_raw_fd();
        self.sock = Some(sock);
        self.state = State::Connecting;
        self.started = Some(Instant::now());
        Ok(())
    }

    /// The connect finished (the socket became writable): send the transport handshake.
    pub fn on_connected(&mut self, target: &Target) -> Result<(), ConnError> {
        let sock = self.sock.as_ref().ok_or_else(|| ConnError("no socket".into()))?;
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            return Err(ConnError(format!("connect to {}: {e}", target.addr)));
        }
        if let Some(t) = &target.tls {
            // The ClientHello goes out with the first flush; the transport handshake below
            // waits inside rustls until the TLS handshake is done.
            self.tls = Some(Box::new(t.connect().map_err(ConnError)?));
        }
        match self.transport {
            Transport::WebSocket => {
                let nonce: [u8; 16] = std::array::from_fn(|i| (self.next_mask() >> (i % 4 * 8)) as u8);
                self.ws_key = websocket::client_key(nonce);
                websocket::write_client_request(&target.host, &target.path, &[self.ser], &self.ws_key, &mut self.wbuf);
            }
            Transport::RawSocket => {
                self.wbuf.extend_from_slice(&rawsocket::client_request(self.ser, rawsocket::LEN_EXP_MAX));
            }
            Transport::Raw => self.wbuf.push(self.raw_role),
        }
        self.state = State::AwaitTransport;
        Ok(())
    }

    fn next_mask(&mut self) -> u32 {
        xorshift(&mut self.mask)
    }

    /// Read what the socket has (up to `max_reads` reads). Ok(false) on EOF.
    pub fn read_some(&mut self, max_reads: usize) -> io::Result<bool> {
        if let Some(t) = &mut self.tls {
            return t.read_some(self.fd, &mut self.rbuf, self.read_chunk, max_reads, &mut self.bytes_in);
        }
        for _ in 0..max_reads {
            self.rbuf.reserve(self.read_chunk);
            let spare = self.rbuf.spare_capacity_mut();
            // SAFETY: reading into the BytesMut's spare capacity; `set_len` below covers
            // exactly the bytes the kernel wrote.
            let n = unsafe { libc::read(self.fd, spare.as_mut_ptr().cast(), spare.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(true),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if n == 0 {
                return Ok(false);
            }
            let n = n as usize;
            // SAFETY: the kernel initialised `n` bytes of the spare capacity.
            unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
            self.bytes_in += n as u64;
            if n < self.read_chunk {
                break;
            }
        }
        Ok(true)
    }

    pub fn take_bytes_in(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_in)
    }

    /// Advance the transport handshake with what was read. Returns true once it is done
    /// (and, for WAMP, the HELLO is queued).
    pub fn advance_transport(&mut self, target: &Target) -> Result<bool, ConnError> {
        match self.transport {
            Transport::WebSocket => {
                let (resp, used) = match websocket::parse_response(&self.rbuf) {
                    Ok(Some(r)) => r,
                    Ok(None) => return Ok(false),
                    Err(e) => return Err(ConnError(format!("bad HTTP response: {e:?}"))),
                };
                websocket::validate_response(&resp, &self.ws_key, &[self.ser])
                    .map_err(|e| ConnError(format!("WebSocket handshake: {e}")))?;
                let _ = self.rbuf.split_to(used);
                self.ws = Some(websocket::Decoder::new(websocket::Role::Client, MESSAGE_MAX_BYTES));
            }
            Transport::RawSocket => {
                let Some(reply) = self.rbuf.first_chunk::<4>().copied() else { return Ok(false) };
                rawsocket::parse_reply(reply, self.ser).map_err(|e| ConnError(format!("RawSocket handshake: {e}")))?;
                let _ = self.rbuf.split_to(4);
                self.rs = Some(rawsocket::Decoder::new(MESSAGE_MAX_BYTES));
            }
            Transport::Raw => {
                let Some(&b) = self.rbuf.first() else { return Ok(false) };
                if b != RAW_ACK {
                    return Err(ConnError(format!("raw server answered 0x{b:02x}")));
                }
                let _ = self.rbuf.split_to(1);
                self.rs = Some(rawsocket::Decoder::new(MESSAGE_MAX_BYTES));
                self.state = State::Ready;
                return Ok(true);
            }
        }
        let roles = Dict::new()
            .with("publisher", Value::Dict(Dict::new()))
            .with("subscriber", Value::Dict(Dict::new()))
            .with("caller", Value::Dict(Dict::new()))
            .with("callee", Value::Dict(Dict::new()));
        let details = Dict::new().with("roles", Value::Dict(roles)).with("agent", "shardbar-loadgen");
        let hello = Message::Hello { realm: target.realm.clone(), details: target.auth.hello_details(details) };
        self.send(&hello);
        self.state = State::AwaitWelcome;
        Ok(true)
    }

    /// A message while the session opens: CHALLENGE is answered (once), WELCOME returns the
    /// session ID, ABORT is an error naming its reason URI. Anything else is unexpected.
    pub fn on_opening(&mut self, msg: Message, target: &Target) -> Result<Option<u64>, Opening> {
        match (self.state, msg) {
            (State::AwaitWelcome | State::Authenticating, Message::Welcome { session, .. }) => {
                self.session = session;
                Ok(Some(session))
            }
            (State::AwaitWelcome, Message::Challenge { authmethod, extra }) => {
                let answer = target.auth.answer(&authmethod, &extra).map_err(Opening::Failed)?;
                self.send(&answer);
                self.state = State::Authenticating;
                Ok(None)
            }
            (_, Message::Abort { reason, details, .. }) => Err(Opening::Aborted { reason, details }),
            (st, m) => Err(Opening::Failed(format!("unexpected {} in state {st:?}", m.name()))),
        }
    }

    /// The next whole message (WAMP message, or a raw frame's payload), if buffered.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, ConnError> {
        if let Some(d) = &mut self.ws {
            loop {
                match d.decode(&mut self.rbuf) {
                    Ok(None) => return Ok(None),
                    Ok(Some(websocket::Event::Message { data, .. })) => return Ok(Some(data)),
                    Ok(Some(websocket::Event::Ping(p))) => {
                        let mask = xorshift(&mut self.mask).to_ne_bytes();
                        websocket::write_masked_frame(websocket::OpCode::Pong, true, &p, mask, &mut self.wbuf);
                    }
                    Ok(Some(websocket::Event::Pong(_))) => {}
                    Ok(Some(websocket::Event::Close { code, reason })) => {
                        return Err(ConnError(format!("router closed the WebSocket ({code:?} {reason})")));
                    }
                    Err(e) => return Err(ConnError(format!("WebSocket: {e}"))),
                }
            }
        }
        if let Some(d) = &mut self.rs {
            loop {
                match d.decode(&mut self.rbuf) {
                    Ok(None) => return Ok(None),
                    Ok(Some(rawsocket::Frame::Message(m))) => return Ok(Some(m)),
                    Ok(Some(rawsocket::Frame::Ping(p))) => {
                        rawsocket::write_frame(rawsocket::FrameKind::Pong, &p, &mut self.wbuf);
                    }
                    Ok(Some(rawsocket::Frame::Pong(_))) => {}
                    Err(e) => return Err(ConnError(format!("RawSocket: {e}"))),
                }
            }
        }
        Ok(None)
    }

    /// Queue a message built by `build` (which appends the serialized message, or for the
    /// raw baseline the bare probe) with this connection's framing.
    pub fn send_with(&mut self, build: impl FnOnce(Serializer, &mut Vec<u8>)) {
        match self.transport {
            Transport::RawSocket | Transport::Raw => {
                let at = self.wbuf.len();
                self.wbuf.extend_from_slice(&[0; 4]);
                build(self.ser, &mut self.wbuf);
                let len = self.wbuf.len() - at - 4;
                self.wbuf[at..at + 4].copy_from_slice(&rawsocket::encode_header(rawsocket::FrameKind::Message, len));
            }
            Transport::WebSocket => {
                let mut scratch = std::mem::take(&mut self.scratch);
                scratch.clear();
                build(self.ser, &mut scratch);
                let op = websocket::OpCode::for_serializer(self.ser);
                let mask = self.next_mask().to_ne_bytes();
                websocket::write_masked_frame(op, true, &scratch, mask, &mut self.wbuf);
                self.scratch = scratch;
            }
        }
    }

    /// Queue a message from the model (setup and cold paths).
    pub fn send(&mut self, msg: &Message) {
        self.send_with(|ser, out| {
            // Messages we build ourselves always encode; a failure would be a bug here.
            if let Err(e) = encode(ser, msg, out) {
                debug_assert!(false, "encoding {} failed: {e}", msg.name());
            }
        });
    }

    /// Decode a whole message (cold path).
    pub fn decode(&self, frame: &Bytes) -> Result<Message, ConnError> {
        decode(self.ser, frame).map_err(|e| ConnError(format!("undecodable message from router: {e}")))
    }

    pub fn pending_out(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Something waits to be written: queued bytes, or TLS records (a handshake reply).
    pub fn needs_flush(&self) -> bool {
        self.pending_out() > 0 || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Write as much as the socket takes. Ok(true) when nothing waits for the socket to
    /// become writable (everything queued is written; with TLS, also: the rest waits in
    /// rustls for its handshake, which a read completes).
    pub fn flush(&mut self) -> io::Result<bool> {
        if let Some(t) = &mut self.tls {
            let all = t.flush(self.fd, &self.wbuf, &mut self.wpos)?;
            self.compact_written();
            return Ok(all);
        }
        while self.wpos < self.wbuf.len() {
            let rest = &self.wbuf[self.wpos..];
            // SAFETY: writes from a valid slice.
            let n = unsafe { libc::write(self.fd, rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            self.wpos += n as usize;
        }
        let all = self.wpos == self.wbuf.len();
        self.compact_written();
        Ok(all)
    }

    /// Drop what is written from the write buffer: all of it, or a large written prefix.
    fn compact_written(&mut self) {
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > 1 << 20 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
    }

    /// Close the socket (the kernel sends FIN; the router cleans up the session).
    pub fn close(&mut self) {
        self.tls = None;
        self.sock = None;
        self.fd = -1;
        self.state = State::Closed;
        self.rbuf = BytesMut::new();
        self.wbuf = Vec::new();
        self.wpos = 0;
    }
}

/// Bind a client socket to `ip` with the port left to `connect`: IP_BIND_ADDRESS_NO_PORT
/// lets the kernel choose the port per (source, destination) pair, so one source address
/// is not limited to the ephemeral range once over all destinations (best effort: without
/// it, `bind` picks the port).
fn bind_source(sock: &Socket, ip: IpAddr) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `one` (an int, its size given) during the call only.
    let _ = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    sock.bind(&SocketAddr::new(ip, 0).into()).map_err(|e| io::Error::new(e.kind(), format!("bind to {ip}: {e}")))
}

/// xorshift32 for WebSocket masking keys: cheap, never zero (seeded odd).
fn xorshift(state: &mut u32) -> u32 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x
}

/// Why a session did not open.
#[derive(Debug)]
pub enum Opening {
    /// The router sent ABORT with this reason URI.
    Aborted {
        reason: String,
        details: Dict,
    },
    Failed(String),
}

impl std::fmt::Display for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Opening::Aborted { reason, details } => match details.get("message").and_then(Value::as_str) {
                Some(message) => write!(f, "ABORT {reason}: {message}"),
                None => write!(f, "ABORT {reason}"),
            },
            Opening::Failed(why) => f.write_str(why),
        }
    }
}

/// Open one WAMP session (TLS and authentication included) on its own, waiting with
/// poll(2), and return how long it took (used by `wait`, and to probe a router's start
/// time). The session is closed again.
pub fn open_session_blocking(target: &Target, timeout: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut c = Conn::new(target.transport, target.serializer, false, RAW_ROLE_ECHO, 0x9E37_79B9);
    c.connect(target.addr, target.source_for(0)).map_err(|e| e.to_string())?;
    let r = drive_to_welcome(&mut c, target, t0 + timeout);
    c.close();
    r.map(|()| t0.elapsed())
}

/// Drive a connecting `Conn` until its session opens (or the raw server acks), by `deadline`.
pub fn drive_to_welcome(c: &mut Conn, target: &Target, deadline: Instant) -> Result<(), String> {
    // Wait for writability only while the connect runs or a write blocked.
    let mut want_out = true;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        let events = if want_out { libc::POLLIN | libc::POLLOUT } else { libc::POLLIN };
        let mut pfd = libc::pollfd { fd: c.fd(), events, revents: 0 };
        let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            continue;
        }
        if c.state == State::Connecting {
            c.on_connected(target).map_err(|e| e.0)?;
        } else if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && read_to_welcome(c, target)? {
            return Ok(());
        }
        // Also after every read: a TLS handshake step may have records to send.
        want_out = !c.flush().map_err(|e| format!("write: {e}"))?;
    }
}

/// Read and handle what arrived; true once the session is open.
fn read_to_welcome(c: &mut Conn, target: &Target) -> Result<bool, String> {
    if !c.read_some(4).map_err(|e| format!("read: {e}"))? {
        return Err("router closed the connection".into());
    }
    if c.state == State::AwaitTransport && !c.advance_transport(target).map_err(|e| e.0)? {
        return Ok(false);
    }
    if c.state == State::Ready {
        return Ok(true);
    }
    while let Some(m) = c.next_message().map_err(|e| e.0)? {
        let m = c.decode(&m).map_err(|e| e.0)?;
        if c.on_opening(m, target).map_err(|e| e.to_string())?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_from_the_source_address() {
        // Goal: a session given a source address connects from it (the router sees it as
        // the peer). Method: a loopback listener on 127.0.0.1; connect from 127.0.0.2 and
        // 127.0.0.3 (all of 127/8 is local on Linux) and from the kernel's choice.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for source in ["127.0.0.2", "127.0.0.3"].map(|s| Some(s.parse().unwrap())).into_iter().chain([None]) {
            let mut c = Conn::new(Transport::RawSocket, Serializer::MsgPack, false, RAW_ROLE_ECHO, 1);
            c.connect(addr, source).unwrap();
            let (_, peer) = listener.accept().unwrap();
            assert_eq!(peer.ip(), source.unwrap_or(addr.ip()));
            c.close();
        }
    }

    #[test]
    fn urls() {
        let u = parse_url("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!(
            (u.transport, u.tls, u.addr.port(), u.hostport.as_str(), u.path.as_str()),
            (Transport::WebSocket, false, 8080, "127.0.0.1:8080", "/ws")
        );
        let u = parse_url("rs://127.0.0.1:9000").unwrap();
        assert_eq!((u.transport, u.tls, u.addr.port()), (Transport::RawSocket, false, 9000));
        let u = parse_url("wss://localhost:8443/x").unwrap();
        assert_eq!(
            (u.transport, u.tls, u.host.as_str(), u.path.as_str()),
            (Transport::WebSocket, true, "localhost", "/x")
        );
        let u = parse_url("rss://[::1]:9443").unwrap();
        assert_eq!((u.transport, u.tls, u.host.as_str()), (Transport::RawSocket, true, "::1"));
        assert!(parse_url("http://x:1").is_err());
        assert!(parse_url("127.0.0.1:1").is_err());
    }
}
