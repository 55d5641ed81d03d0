//! Test only: loadgen's TLS client and ticket authentication against a scripted router on
//! a loopback port, with no external router.
//!
//! The router side is a blocking rustls `StreamOwned` in a thread with a CA and a server
//! certificate made by rcgen: it accepts the RawSocket handshake, checks HELLO's auth keys,
//! sends a ticket CHALLENGE, checks AUTHENTICATE, sends WELCOME, then echoes frames. The
//! client side is loadgen's own `Conn` driven by `client::drive_to_welcome` and the same
//! non-blocking read/flush the workers use.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use shardbar::proto::wire::{Dict, Message, Serializer, Value, decode, encode, rawsocket};

use crate::auth::{AuthArgs, AuthMethod, Credentials};
use crate::client::{self, Conn, State, Target, Transport};
use crate::tls::{TlsArgs, TlsClient, TlsConn};

const TICKET: &str = "loopback-ticket";

struct Pki {
    ca_file: PathBuf,
    server: rustls::ServerConfig,
    /// The same certificate, TLS 1.2 only.
    server_tls12: rustls::ServerConfig,
    /// The same certificate, TLS 1.3 with one cipher suite each: AES-128-GCM, AES-256-GCM,
    /// ChaCha20-Poly1305.
    server_suites: Vec<rustls::ServerConfig>,
}

/// A CA and a server certificate for localhost / 127.0.0.1; the CA's PEM in a temp file.
fn pki(tag: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let ca_file = std::env::temp_dir().join(format!("loadgen-tls-{tag}-{}.pem", std::process::id()));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server_with = |versions: &[&'static rustls::SupportedProtocolVersion],
                       suites: &[rustls::SupportedCipherSuite]| {
        let mut provider = rustls::crypto::ring::default_provider();
        if !suites.is_empty() {
            provider.cipher_suites = suites.to_vec();
        }
        rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .unwrap()
    };
    let server = server_with(rustls::DEFAULT_VERSIONS, &[]);
    let server_tls12 = server_with(&[&rustls::version::TLS12], &[]);
    use rustls::crypto::ring::cipher_suite as cs;
    let server_suites =
        [cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_CHACHA20_POLY1305_SHA256]
            .iter()
            .map(|&suite| server_with(&[&rustls::version::TLS13], &[suite]))
            .collect();
    Pki { ca_file, server, server_tls12, server_suites }
}

/// Read one RawSocket message frame from a blocking stream.
fn next_frame(s: &mut impl Read, dec: &mut rawsocket::Decoder, buf: &mut BytesMut) -> Result<Bytes, String> {
    loop {
        if let Some(rawsocket::Frame::Message(m)) = dec.decode(buf).map_err(|e| e.to_string())? {
            return Ok(m);
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("client closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn send(s: &mut impl Write, m: &Message) -> Result<(), String> {
    let mut body = Vec::new();
    encode(Serializer::MsgPack, m, &mut body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    rawsocket::write_frame(rawsocket::FrameKind::Message, &body, &mut out);
    s.write_all(&out).map_err(|e| e.to_string())
}

/// One session on the scripted router: handshake, ticket auth, WELCOME, then echo until
/// the client leaves.
fn serve_one(listener: &TcpListener, config: Arc<rustls::ServerConfig>) -> Result<(), String> {
    let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let conn = rustls::ServerConnection::new(config).map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    let mut hs = [0u8; 4];
    s.read_exact(&mut hs).map_err(|e| e.to_string())?;
    rawsocket::accept(hs, &[Serializer::MsgPack], 0).map_err(|e| format!("{e:?}"))?;
    s.write_all(&rawsocket::success_reply(Serializer::MsgPack, rawsocket::LEN_EXP_MAX)).map_err(|e| e.to_string())?;
    let (mut dec, mut buf) = (rawsocket::Decoder::new(1 << 24), BytesMut::new());
    let hello = decode(Serializer::MsgPack, &next_frame(&mut s, &mut dec, &mut buf)?).map_err(|e| e.to_string())?;
    let Message::Hello { details, .. } = hello else { return Err(format!("expected HELLO, got {hello:?}")) };
    if details.get("authmethods") != Some(&Value::List(vec![Value::str("ticket")])) {
        return Err(format!("HELLO without ticket: {details:?}"));
    }
    send(&mut s, &Message::Challenge { authmethod: "ticket".into(), extra: Dict::new() })?;
    let auth = decode(Serializer::MsgPack, &next_frame(&mut s, &mut dec, &mut buf)?).map_err(|e| e.to_string())?;
    let Message::Authenticate { signature, .. } = auth else { return Err(format!("expected AUTHENTICATE: {auth:?}")) };
    if signature != TICKET {
        let reason = "wamp.error.not_authorized".to_owned();
        return send(&mut s, &Message::Abort { details: Dict::new(), reason, payload: Default::default() });
    }
    send(&mut s, &Message::Welcome { session: 7, details: Dict::new() })?;
    while let Ok(frame) = next_frame(&mut s, &mut dec, &mut buf) {
        let mut out = Vec::new();
        rawsocket::write_frame(rawsocket::FrameKind::Message, &frame, &mut out);
        s.write_all(&out).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn start_router(pki: &Pki, sessions: usize) -> (SocketAddr, std::thread::JoinHandle<Vec<Result<(), String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Arc::new(pki.server.clone());
    let t = std::thread::spawn(move || (0..sessions).map(|_| serve_one(&listener, config.clone())).collect());
    (addr, t)
}

fn target(addr: SocketAddr, tls: &TlsArgs, ticket: &str) -> Target {
    let auth = AuthArgs {
        method: Some(AuthMethod::Ticket),
        authid: Some("joe".into()),
        ticket: Some(ticket.into()),
        ..AuthArgs::default()
    };
    Target {
        addr,
        transport: Transport::RawSocket,
        serializer: Serializer::MsgPack,
        host: addr.to_string(),
        path: "/".into(),
        realm: "realm1".into(),
        source: Vec::new(),
        tls: Some(TlsClient::new(tls, "127.0.0.1").unwrap()),
        auth: Arc::new(Credentials::from_args(&auth).unwrap()),
    }
}

/// Send `payload` as one frame and wait for the router's echo, with poll(2).
fn echo(c: &mut Conn, payload: &[u8]) -> Bytes {
    c.send_with(|_, out| out.extend_from_slice(payload));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no echo");
        let out = if c.needs_flush() && !c.flush().unwrap() { libc::POLLOUT } else { 0 };
        let mut pfd = libc::pollfd { fd: c.fd(), events: libc::POLLIN | out, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        if pfd.revents & libc::POLLIN != 0 {
            assert!(c.read_some(4).unwrap(), "router closed");
            if let Some(m) = c.next_message().unwrap() {
                return m;
            }
        }
    }
}

// Goal: a RawSocket session over TLS opens with ticket authentication, and messages
// larger than a TLS record and than rustls's buffers (1 MiB) go both ways intact.
// Method: verified (--tls-ca) connection to the scripted router; WELCOME; echo 100 B and
// 1 MiB frames through the same read/flush the workers use.
#[test]
fn rawsocket_over_tls_with_ticket() {
    let pki = pki("ticket");
    let (addr, router) = start_router(&pki, 1);
    let tls = TlsArgs { ca: Some(pki.ca_file.clone()), ..TlsArgs::default() };
    let target = target(addr, &tls, TICKET);
    let mut c = Conn::new(Transport::RawSocket, Serializer::MsgPack, true, client::RAW_ROLE_ECHO, 1);
    c.connect(addr, None).unwrap();
    client::drive_to_welcome(&mut c, &target, Instant::now() + Duration::from_secs(10)).unwrap();
    assert_eq!((c.state, c.session), (State::Authenticating, 7));
    assert_eq!(&echo(&mut c, b"hello over tls")[..], b"hello over tls");
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    assert!(echo(&mut c, &big)[..] == big[..], "1 MiB echo differs");
    c.close();
    assert_eq!(router.join().unwrap(), vec![Ok(())]);
    let _ = std::fs::remove_file(&pki.ca_file);
}

// Goal: verification is real — a wrong server name fails the handshake — while
// --tls-insecure connects anyway; a wrong ticket ends in the router's ABORT with its URI.
// Method: three sessions against the scripted router.
#[test]
fn verification_insecure_and_abort() {
    let pki = pki("verify");
    let (addr, router) = start_router(&pki, 3);
    let deadline = || Instant::now() + Duration::from_secs(10);
    let wrong_name =
        TlsArgs { ca: Some(pki.ca_file.clone()), server_name: Some("other.example".into()), ..TlsArgs::default() };
    let e = client::open_session_blocking(&target(addr, &wrong_name, TICKET), Duration::from_secs(10)).unwrap_err();
    assert!(e.contains("TLS") || e.contains("certificate"), "{e}");
    let insecure = TlsArgs { insecure: true, ..TlsArgs::default() };
    client::open_session_blocking(&target(addr, &insecure, TICKET), Duration::from_secs(10)).unwrap();
    let t = target(addr, &insecure, "wrong");
    let mut c = Conn::new(Transport::RawSocket, Serializer::MsgPack, false, client::RAW_ROLE_ECHO, 1);
    c.connect(addr, None).unwrap();
    let e = client::drive_to_welcome(&mut c, &t, deadline()).unwrap_err();
    assert_eq!(e, "ABORT wamp.error.not_authorized");
    let results = router.join().unwrap();
    assert!(results[0].is_err(), "the handshake with the wrong name failed on the router too");
    assert!(results[1..].iter().all(Result::is_ok), "{results:?}");
    let _ = std::fs::remove_file(&pki.ca_file);
}

/// loadgen's `TlsConn` on one end of a socketpair, a rustls server driven by hand on the
/// other (both non-blocking): the record layer meets rustls's, byte for byte.
struct Pair {
    client: TlsConn,
    client_sock: UnixStream,
    server: rustls::ServerConnection,
    server_sock: UnixStream,
    /// Plaintext the client received, and what the server received.
    client_got: BytesMut,
    server_got: Vec<u8>,
}

impl Pair {
    fn new(pki: &Pki, server: &rustls::ServerConfig, tls: TlsArgs) -> Pair {
        let (client_sock, server_sock) = UnixStream::pair().unwrap();
        client_sock.set_nonblocking(true).unwrap();
        server_sock.set_nonblocking(true).unwrap();
        let tls = TlsArgs { ca: Some(pki.ca_file.clone()), ..tls };
        let client = TlsClient::new(&tls, "localhost").unwrap().connect().unwrap();
        let server = rustls::ServerConnection::new(Arc::new(server.clone())).unwrap();
        Pair { client, client_sock, server, server_sock, client_got: BytesMut::new(), server_got: Vec::new() }
    }

    /// One round: the client writes `wbuf[*wpos..]` and reads; the server reads, and writes
    /// what rustls holds. Ok(false) once the client saw the server close.
    fn round(&mut self, wbuf: &[u8], wpos: &mut usize) -> io::Result<bool> {
        let fd = self.client_sock.as_raw_fd();
        self.client.flush(fd, wbuf, wpos)?;
        let mut bytes = 0;
        let open = self.client.read_some(fd, &mut self.client_got, 64 * 1024, 4, &mut bytes)?;
        loop {
            match self.server.read_tls(&mut self.server_sock) {
                Ok(0) => break,
                Ok(_) => {
                    self.server.process_new_packets().map_err(|e| io::Error::other(e.to_string()))?;
                    let _ = self.server.reader().read_to_end(&mut self.server_got);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        self.server_out()?;
        Ok(open)
    }

    /// Write the server's records until the socket is full.
    fn server_out(&mut self) -> io::Result<()> {
        while self.server.wants_write() {
            match self.server.write_tls(&mut self.server_sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn handshake(&mut self) {
        for _ in 0..100 {
            self.round(&[], &mut 0).unwrap();
            if !self.server.is_handshaking() && !self.client.wants_write() {
                // One more round: the client takes the keys once its Finished is out.
                self.round(&[], &mut 0).unwrap();
                return;
            }
        }
        panic!("handshake did not finish");
    }

    /// Both directions: `up` from the client, `down` from the server (written to rustls in
    /// pieces of `sizes`, one piece per round, or with `burst` all at once), until each side
    /// has received all of it.
    fn exchange(&mut self, up: &[u8], down: &[u8], sizes: &[usize], burst: bool) {
        let (mut wpos, mut sent) = (0, 0);
        if burst {
            self.server.set_buffer_limit(None);
            let mut at = 0;
            for &n in sizes.iter().cycle() {
                if at == down.len() {
                    break;
                }
                let end = (at + n).min(down.len());
                self.server.writer().write_all(&down[at..end]).unwrap();
                at = end;
            }
            sent = down.len();
        }
        let (c0, s0) = (self.client_got.len(), self.server_got.len());
        for i in 0..100_000 {
            if sent < down.len() && !self.server.wants_write() {
                let n = sizes[i % sizes.len()].min(down.len() - sent);
                sent += self.server.writer().write(&down[sent..sent + n]).unwrap();
            }
            assert!(self.round(up, &mut wpos).unwrap(), "the connection closed");
            if self.client_got.len() - c0 == down.len() && self.server_got.len() - s0 == up.len() {
                assert!(self.client_got[c0..] == *down, "the client received other bytes");
                assert!(self.server_got[s0..] == *up, "the server received other bytes");
                return;
            }
        }
        let (down_got, up_got) = (self.client_got.len() - c0, self.server_got.len() - s0);
        panic!("exchange did not finish: {down_got} of {} down, {up_got} of {} up", down.len(), up.len());
    }
}

/// Sizes of the server's writes: one byte to several records.
const MIXED: &[usize] = &[1, 100, 16 * 1024, 20_000, 3, 70_000];

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8 ^ seed).collect()
}

// Goal: after a TLS 1.3 handshake loadgen's own record layer carries the traffic, and what
// it seals and opens is what rustls opens and seals: multi-record writes both ways, records
// of every size, the session tickets rustls sends after the handshake, and the close_notify
// that ends the session. Method: a socketpair with a hand-driven rustls server; 3 MiB down
// in writes of 1 B to 70 kB, 1 MiB up, then close_notify.
#[test]
fn record_layer_matches_rustls_both_ways() {
    let pki = pki("records");
    let mut p = Pair::new(&pki, &pki.server, TlsArgs::default());
    p.handshake();
    assert!(p.client.uses_record_layer(), "TLS 1.3 switches to loadgen's record layer");
    p.exchange(&pattern(1 << 20, 1), &pattern(3 << 20, 2), MIXED, false);
    // Thousands of small records per read: incomplete records wait behind a growing gap
    // in the read buffer until it is moved down.
    p.exchange(b"small", &pattern(1 << 20, 5), &[1, 7, 33, 60], true);
    p.server.send_close_notify();
    p.server_out().unwrap();
    let mut closed = false;
    for _ in 0..100 {
        if !p.round(&[], &mut 0).unwrap() {
            closed = true;
            break;
        }
    }
    assert!(closed, "close_notify ends the session");
    let _ = std::fs::remove_file(&pki.ca_file);
}

// Goal: a record altered in transit is an error that says so, never wrong data.
// Method: a byte of the server's next record flipped on its way.
#[test]
fn altered_records_are_errors() {
    let pki = pki("errors");
    let mut p = Pair::new(&pki, &pki.server, TlsArgs::default());
    p.handshake();
    p.exchange(b"", b"before", MIXED, false);
    p.server.writer().write_all(b"altered").unwrap();
    let mut wire = Vec::new();
    p.server.write_tls(&mut wire).unwrap();
    let last = wire.len() - 20;
    wire[last] ^= 1;
    p.server_sock.write_all(&wire).unwrap();
    let e = p.round(&[], &mut 0).unwrap_err();
    assert!(e.to_string().contains("failed authentication"), "{e}");
    let _ = std::fs::remove_file(&pki.ca_file);
}

// Goal: key updates keep a long connection going both ways (rustls sends one near the
// cipher's record limit, asking for ours; loadgen updates its own before its limit): data
// sealed and opened under each new generation of keys is what rustls opens and seals.
// Method: per TLS 1.3 suite: the server updates its keys three times, each with data down,
// then both ways (ours answers its request before our next data, not before); then with
// loadgen's key limited to 8 records, 1 MiB up (64 records, ~9 updates of ours) and 1 MiB
// down, twice.
#[test]
fn key_updates_both_ways_keep_the_data_flowing() {
    let pki = pki("updates");
    let mut suites = Vec::new();
    for server in &pki.server_suites {
        let mut p = Pair::new(&pki, server, TlsArgs::default());
        p.handshake();
        assert!(p.client.uses_record_layer());
        suites.push(p.server.negotiated_cipher_suite().map(|s| s.suite()));
        for i in 0..3u8 {
            p.server.refresh_traffic_keys().unwrap();
            p.exchange(b"", &pattern(70_000, i + 10), MIXED, false);
            assert_eq!(p.client.key_generations(), Some((u64::from(i) + 1, u64::from(i))));
            // Its request is answered with our update before our next data.
            p.exchange(&pattern(50_000, i), &pattern(70_000, i + 20), MIXED, false);
            assert_eq!(p.client.key_generations(), Some((u64::from(i) + 1, u64::from(i) + 1)));
        }
        // Our key's numbering restarted at the last update (4 records since).
        p.client.set_record_limit(8);
        let (_, ours) = p.client.key_generations().unwrap();
        for i in 0..2u8 {
            p.exchange(&pattern(1 << 20, 30 + i), &pattern(1 << 20, 40 + i), MIXED, false);
        }
        let (theirs, now) = p.client.key_generations().unwrap();
        assert_eq!(theirs, 3);
        assert!(now - ours >= 2 * 64 / 7, "our updates at the 8-record limit: {}", now - ours);
    }
    use rustls::CipherSuite as S;
    let expected = [S::TLS13_AES_128_GCM_SHA256, S::TLS13_AES_256_GCM_SHA384, S::TLS13_CHACHA20_POLY1305_SHA256];
    assert_eq!(suites, expected.map(Some));
    let _ = std::fs::remove_file(&pki.ca_file);
}

// Goal: the record layer is only for TLS 1.3 runs that do not resume sessions and did not
// ask for rustls's records: TLS 1.2, --tls-resume and --tls-rustls-records stay on rustls,
// and their data flows. Method: the exchange above in each case.
#[test]
fn tls12_resume_and_rustls_records_stay_on_rustls() {
    let pki = pki("stay");
    let cases = [
        (&pki.server_tls12, TlsArgs::default()),
        (&pki.server, TlsArgs { resume: true, ..TlsArgs::default() }),
        (&pki.server, TlsArgs { rustls_records: true, ..TlsArgs::default() }),
    ];
    for (server, args) in cases {
        let mut p = Pair::new(&pki, server, args);
        p.handshake();
        assert!(!p.client.uses_record_layer());
        p.exchange(&pattern(100_000, 3), &pattern(300_000, 4), MIXED, false);
    }
    let _ = std::fs::remove_file(&pki.ca_file);
}
