//! One client connection: transport handshake, WAMP session setup, framing and buffered
//! non-blocking I/O. The roles (what a connection does once it is ready) live in
//! `worker.rs`; this file knows how to talk, not what to say.
//!
//! Three kinds of connection:
//! - WebSocket (`ws://`): HTTP upgrade with the serializer's subprotocol, masked frames;
//! - RawSocket (`rs://`): the 4-octet handshake, 4-octet frame prefixes;
//! - plain TCP to loadgen's own raw server (the `raw` baseline): one role byte, an ack,
//!   then RawSocket-style length-prefixed frames carrying bare probes — no WAMP at all.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardbar::proto::wire::{Dict, Message, Serializer, Value, decode, encode, rawsocket, websocket};
use socket2::{Domain, Protocol, Socket, Type};

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
}

/// Parse `ws://host:port/path`, `rs://host:port` (or `rawsocket://`, `tcp://`).
pub fn parse_url(url: &str) -> Result<(Transport, SocketAddr, String, String), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("URL {url:?} has no scheme (ws:// or rs://)"))?;
    let transport = match scheme {
        "ws" => Transport::WebSocket,
        "rs" | "rawsocket" | "tcp" => Transport::RawSocket,
        other => return Err(format!("URL scheme {other:?} is not ws or rs")),
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
    Ok((transport, addr, hostport.to_owned(), path))
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

    /// Start a non-blocking connect.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<()> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_nonblocking(true)?;
        sock.set_tcp_nodelay(true)?;
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
        let hello = Message::Hello {
            realm: target.realm.clone(),
            details: Dict::new().with("roles", Value::Dict(roles)).with("agent", "shardbar-loadgen"),
        };
        self.send(&hello);
        self.state = State::AwaitWelcome;
        Ok(true)
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

    /// Write as much as the socket takes. Ok(true) when everything queued is written.
    pub fn flush(&mut self) -> io::Result<bool> {
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
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
            Ok(true)
        } else {
            if self.wpos > 1 << 20 {
                self.wbuf.drain(..self.wpos);
                self.wpos = 0;
            }
            Ok(false)
        }
    }

    /// Close the socket (the kernel sends FIN; the router cleans up the session).
    pub fn close(&mut self) {
        self.sock = None;
        self.fd = -1;
        self.state = State::Closed;
        self.rbuf = BytesMut::new();
        self.wbuf = Vec::new();
        self.wpos = 0;
    }
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

/// Open one WAMP session with blocking I/O and return how long it took (used by `wait`,
/// and to probe a router's start time).
pub fn open_session_blocking(target: &Target, timeout: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&target.addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut c = Conn::new(target.transport, target.serializer, false, RAW_ROLE_ECHO, 0x9E37_79B9);
    c.state = State::Connecting;
    c.on_connected_blocking(target);
    s.write_all(&c.wbuf).map_err(|e| e.to_string())?;
    c.wbuf.clear();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("router closed the connection".into());
        }
        c.rbuf.extend_from_slice(&buf[..n]);
        if c.state == State::AwaitTransport {
            if !c.advance_transport(target).map_err(|e| e.0)? {
                continue;
            }
            s.write_all(&c.wbuf).map_err(|e| e.to_string())?;
            c.wbuf.clear();
            if c.state == State::Ready {
                return Ok(t0.elapsed());
            }
        }
        while let Some(m) = c.next_message().map_err(|e| e.0)? {
            match c.decode(&m).map_err(|e| e.0)? {
                Message::Welcome { .. } => return Ok(t0.elapsed()),
                Message::Abort { reason, .. } => return Err(format!("router sent ABORT {reason}")),
                _ => {}
            }
        }
        if t0.elapsed() > timeout {
            return Err("timed out".into());
        }
    }
}

impl Conn {
    fn on_connected_blocking(&mut self, target: &Target) {
        match self.transport {
            Transport::WebSocket => {
                self.ws_key = websocket::client_key([7; 16]);
                websocket::write_client_request(&target.host, &target.path, &[self.ser], &self.ws_key, &mut self.wbuf);
            }
            Transport::RawSocket => {
                self.wbuf.extend_from_slice(&rawsocket::client_request(self.ser, rawsocket::LEN_EXP_MAX))
            }
            Transport::Raw => self.wbuf.push(self.raw_role),
        }
        self.state = State::AwaitTransport;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (t, a, host, path) = parse_url("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!((t, a.port(), host.as_str(), path.as_str()), (Transport::WebSocket, 8080, "127.0.0.1:8080", "/ws"));
        let (t, a, _, _) = parse_url("rs://127.0.0.1:9000").unwrap();
        assert_eq!((t, a.port()), (Transport::RawSocket, 9000));
        assert!(parse_url("http://x:1").is_err());
        assert!(parse_url("127.0.0.1:1").is_err());
    }
}
