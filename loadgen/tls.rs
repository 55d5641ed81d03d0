//! TLS for loadgen's client connections (`wss://`, `rss://`): the rustls client
//! configuration built from the command line, and the I/O steps that move bytes between a
//! non-blocking socket and the connection's TLS ([`TlsConn`]).
//!
//! rustls does the handshake; `client.rs` owns the socket and the plaintext buffers and
//! calls [`TlsConn::read_some`] / [`TlsConn::flush`] instead of its plain `read`/`write`
//! loop when the connection has TLS. Nothing here knows WAMP, WebSocket or RawSocket
//! framing.
//!
//! After a TLS 1.3 handshake, loadgen protects the records itself with the traffic keys
//! rustls negotiated ([`RecordLayer`], ring's AEADs): the ciphertext is read into the
//! connection's read buffer and each record decrypted in the same pass that moves it down
//! over its header, so the plaintext costs no copy besides the kernel's. Through rustls's
//! buffered API the same bytes were copied three times (into its deframer, into a
//! per-record allocation, out to the read buffer): on two cores shared with the router that
//! was a fifth of loadgen's CPU in a TLS fan-out, and the router's share of the machine
//! shrank by as much (bench/RESULTS.md, "Authentication and TLS"). TLS 1.2, `--tls-resume`
//! (tickets arrive after the handshake) and `--tls-rustls-records` keep rustls's records.
//! Key updates, both ways, derive the next keys from the traffic secrets rustls gives a
//! per-connection key log ([`TrafficSecrets`]).

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead as _, Write as _};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use ring::{aead, hkdf};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, ConnectionTrafficSecrets, DigitallySignedStruct, ExtractedSecrets, KeyLog,
    ProtocolVersion, RootCertStore, SignatureScheme, SupportedCipherSuite,
};

/// Ciphertext read per `read` call at most (the plaintext read size is the connection's).
const CIPHER_CHUNK_MAX_BYTES: usize = 64 * 1024;

/// Plaintext rustls buffers before it encrypts, and records it holds before they are
/// written (rustls's default is 64 KiB; more means fewer `writev` calls per flush).
const TLS_BUFFER_LIMIT_BYTES: usize = 256 * 1024;

/// What the command line gave for TLS.
#[derive(Clone, Debug, Default)]
pub struct TlsArgs {
    /// PEM file of the roots that verify the router's certificate.
    pub ca: Option<PathBuf>,
    /// Do not verify the router's certificate (benchmarks with a throw-away certificate).
    pub insecure: bool,
    /// Client certificate chain and its key (PEM).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name to verify and send as SNI [default: the URL's host].
    pub server_name: Option<String>,
    /// Let sessions resume earlier TLS sessions (tickets): cheaper handshakes, less like
    /// many distinct clients.
    pub resume: bool,
    /// Keep rustls's record layer after the handshake (see [`TlsConn`]).
    pub rustls_records: bool,
}

impl TlsArgs {
    /// Whether any TLS flag was given (an error for a plaintext URL).
    pub fn any(&self) -> bool {
        self.ca.is_some()
            || self.insecure
            || self.cert.is_some()
            || self.key.is_some()
            || self.server_name.is_some()
            || self.resume
            || self.rustls_records
    }
}

/// A client configuration and the name to present: shared by every connection of a run.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    pub verified: bool,
    /// Connections switch to loadgen's record layer after a TLS 1.3 handshake.
    own_records: bool,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient").field("server_name", &self.server_name).field("verified", &self.verified).finish()
    }
}

impl TlsClient {
    /// Build the configuration for `host` (the URL's host, without port).
    pub fn new(a: &TlsArgs, host: &str) -> Result<TlsClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match (&a.ca, a.insecure) {
            (Some(_), true) => return Err("--tls-ca and --tls-insecure exclude each other".into()),
            (None, false) => {
                return Err("a TLS URL needs --tls-ca FILE (roots to verify the router) or --tls-insecure".into());
            }
            (Some(ca), false) => builder.with_root_certificates(roots(ca)?),
            (None, true) => builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider))),
        };
        let mut config = match (&a.cert, &a.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        if !a.resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        // Session tickets arrive after the handshake, where the record layer drops them.
        let own_records = !a.resume && !a.rustls_records;
        config.enable_secret_extraction = own_records;
        let name = a.server_name.clone().unwrap_or_else(|| host.to_owned());
        let server_name = ServerName::try_from(name.clone()).map_err(|e| format!("TLS server name {name:?}: {e}"))?;
        Ok(TlsClient { config: Arc::new(config), server_name, verified: !a.insecure, own_records })
    }

    /// A fresh client connection; its ClientHello is queued at once. A connection that may
    /// switch to loadgen's record layer gets a configuration of its own whose key log keeps
    /// its traffic secrets (to follow key updates).
    pub fn connect(&self) -> Result<TlsConn, String> {
        let (config, secrets) = if self.own_records {
            let secrets = Arc::new(TrafficSecrets::default());
            let mut config = (*self.config).clone();
            config.key_log = secrets.clone();
            (Arc::new(config), Some(secrets))
        } else {
            (self.config.clone(), None)
        };
        let mut c = ClientConnection::new(config, self.server_name.clone()).map_err(|e| format!("TLS: {e}"))?;
        c.set_buffer_limit(Some(TLS_BUFFER_LIMIT_BYTES));
        Ok(TlsConn::new(c, secrets))
    }
}

/// The TLS 1.3 application traffic secrets of one handshake (client, server), as rustls
/// reports them to its key log; rustls's extracted secrets are only the first keys, and a
/// key update derives the next ones from these (RFC 8446 §7.2).
#[derive(Debug, Default)]
struct TrafficSecrets(Mutex<SecretPair>);

/// (client, server) traffic secrets, each once rustls has reported it.
type SecretPair = (Option<Vec<u8>>, Option<Vec<u8>>);

const CLIENT_TRAFFIC_SECRET: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER_TRAFFIC_SECRET: &str = "SERVER_TRAFFIC_SECRET_0";

impl KeyLog for TrafficSecrets {
    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_TRAFFIC_SECRET || label == SERVER_TRAFFIC_SECRET
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let mut both = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match label {
            CLIENT_TRAFFIC_SECRET => both.0 = Some(secret.to_vec()),
            SERVER_TRAFFIC_SECRET => both.1 = Some(secret.to_vec()),
            _ => {}
        }
    }
}

impl TrafficSecrets {
    /// (client, server), taken once.
    fn take(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut both = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::take(&mut *both) {
            (Some(client), Some(server)) => Some((client, server)),
            _ => None,
        }
    }
}

fn roots(path: &PathBuf) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-ca {}: {e}", path.display()))?;
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("--tls-ca {}: no usable certificate", path.display()));
    }
    Ok(store)
}

/// `--tls-insecure`: any certificate is accepted, but the handshake signatures are still
/// checked (the session keys stay bound to the certificate the router sent).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

thread_local! {
    /// Ciphertext just read (after the start of a record carried over from the previous
    /// read), before it is decrypted: one per thread, as a worker reads one connection at a
    /// time and processes everything read before returning.
    static CIPHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A connection's TLS: rustls until the handshake is done; then, on TLS 1.3 (unless the
/// run resumes sessions or asked for `--tls-rustls-records`), loadgen's own record layer
/// with the traffic keys rustls negotiated ([`RecordLayer`]).
pub struct TlsConn {
    stage: Stage,
    /// The first bytes of a record whose rest has not arrived yet (reads through `CIPHER`).
    partial: Vec<u8>,
    /// In-place reads: bytes after the read buffer's length that are of no use, then the
    /// first bytes of a record whose rest has not arrived (see [`Self::read_in_place`]).
    tail_gap: usize,
    tail_pending: usize,
    /// Records sealed by the record layer and not yet written: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// Whether the record layer may take over once the handshake is done.
    may_switch: bool,
    /// The handshake's traffic secrets (connections that may switch).
    secrets: Option<Arc<TrafficSecrets>>,
}

enum Stage {
    Rustls(Box<ClientConnection>),
    Records(Box<RecordLayer>),
    /// The switch failed half-way (the connection is unusable; reported as an error).
    Broken,
}

impl TlsConn {
    fn new(conn: ClientConnection, secrets: Option<Arc<TrafficSecrets>>) -> TlsConn {
        TlsConn {
            stage: Stage::Rustls(Box::new(conn)),
            partial: Vec::new(),
            tail_gap: 0,
            tail_pending: 0,
            out: Vec::new(),
            out_pos: 0,
            may_switch: secrets.is_some(),
            secrets,
        }
    }

    /// Whether loadgen's record layer carries the traffic (the handshake is done).
    #[cfg(test)]
    pub fn uses_record_layer(&self) -> bool {
        matches!(self.stage, Stage::Records(_))
    }

    /// Key updates so far (the router's, loadgen's), once the record layer carries the traffic.
    #[cfg(test)]
    pub fn key_generations(&self) -> Option<(u64, u64)> {
        match &self.stage {
            Stage::Records(layer) => Some((layer.rx.generation, layer.tx.generation)),
            _ => None,
        }
    }

    /// Records loadgen's own key may seal before loadgen updates it (the cipher's limit
    /// otherwise): tests make updates happen within a few records.
    #[cfg(test)]
    pub fn set_record_limit(&mut self, records: u64) {
        if let Stage::Records(layer) = &mut self.stage {
            layer.tx.limit = records;
        }
    }

    /// Records wait to be written (a handshake reply, or sealed application data).
    pub fn wants_write(&self) -> bool {
        match &self.stage {
            Stage::Rustls(c) => c.wants_write(),
            Stage::Records(_) => self.out_pos < self.out.len(),
            Stage::Broken => false,
        }
    }

    /// Read what the socket has (at most `max_reads` reads of up to `chunk` bytes), decrypt
    /// it and append the plaintext to `rbuf`. Ok(false) on EOF or the router's close_notify.
    /// `plain_bytes` counts the plaintext (the transport's bytes, comparable with a plain run).
    pub fn read_some(
        &mut self,
        fd: RawFd,
        rbuf: &mut BytesMut,
        chunk: usize,
        max_reads: usize,
        plain_bytes: &mut u64,
    ) -> io::Result<bool> {
        let chunk = chunk.clamp(1, CIPHER_CHUNK_MAX_BYTES);
        if matches!(self.stage, Stage::Records(_)) {
            return self.read_in_place(fd, rbuf, chunk, max_reads, plain_bytes);
        }
        CIPHER.with(|cell| {
            let mut buf = cell.borrow_mut();
            for _ in 0..max_reads {
                let carried = self.partial.len();
                if buf.len() < carried + chunk {
                    buf.resize(carried + chunk, 0);
                }
                // SAFETY: reading into an initialised buffer of at least `carried + chunk` bytes.
                let n = unsafe { libc::read(fd, buf[carried..].as_mut_ptr().cast(), chunk) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return Ok(true),
                        io::ErrorKind::Interrupted => continue,
                        _ => return Err(e),
                    }
                }
                let n = n as usize;
                if n == 0 {
                    return Ok(false);
                }
                buf[..carried].copy_from_slice(&self.partial);
                self.partial.clear();
                let before = rbuf.len();
                let (used, open) = self.records_in(&mut buf[..carried + n], rbuf, fd)?;
                *plain_bytes += (rbuf.len() - before) as u64;
                if !open {
                    return Ok(false);
                }
                self.partial.extend_from_slice(&buf[used..carried + n]);
                if n < chunk {
                    break;
                }
            }
            Ok(true)
        })
    }

    /// [`Self::read_some`] once the record layer carries the traffic: the ciphertext is read
    /// into `rbuf`'s spare room right after the plaintext, and each record is decrypted by
    /// moving it down over its own header (one pass: no copy besides the kernel's).
    ///
    /// Between reads, `rbuf`'s spare room holds `tail_gap` bytes of no use and then
    /// `tail_pending` bytes of a record not complete yet; they are brought back into the
    /// buffer's length before it can move (`reserve` copies them along).
    fn read_in_place(
        &mut self,
        fd: RawFd,
        rbuf: &mut BytesMut,
        chunk: usize,
        max_reads: usize,
        plain_bytes: &mut u64,
    ) -> io::Result<bool> {
        let Stage::Records(layer) = &mut self.stage else { return Err(broken()) };
        if !self.partial.is_empty() {
            // Carried from the read that completed the handshake (through `CIPHER`).
            let plain = rbuf.len();
            rbuf.extend_from_slice(&self.partial);
            rbuf.truncate(plain);
            (self.tail_gap, self.tail_pending) = (0, self.partial.len());
            self.partial = Vec::new();
        }
        for _ in 0..max_reads {
            let plain = rbuf.len();
            let pending_at = plain + self.tail_gap;
            // SAFETY: the `tail_gap + tail_pending` bytes after the length were written by the
            // previous call and left in place by `truncate`; nothing else writes a BytesMut's
            // spare room, and `reserve` keeps them (they are within the length when it runs).
            unsafe { rbuf.set_len(pending_at + self.tail_pending) };
            rbuf.reserve(chunk);
            let room = rbuf.spare_capacity_mut();
            let want = room.len().min(CIPHER_CHUNK_MAX_BYTES);
            // SAFETY: reading into the spare capacity; `set_len` below covers exactly the bytes
            // the kernel wrote.
            let n = unsafe { libc::read(fd, room.as_mut_ptr().cast(), want) };
            let n = if n < 0 {
                let e = io::Error::last_os_error();
                rbuf.truncate(plain);
                match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(true),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            } else {
                n as usize
            };
            if n == 0 {
                rbuf.truncate(plain);
                return Ok(false);
            }
            let end = rbuf.len() + n;
            // SAFETY: the kernel initialised `n` bytes of the spare capacity.
            unsafe { rbuf.set_len(end) };
            let (written, next, open) = layer.open_within(&mut rbuf[..], plain, pending_at)?;
            *plain_bytes += (written - plain) as u64;
            if !open {
                rbuf.truncate(written);
                return Ok(false);
            }
            let pending = end - next;
            if pending > 0 && next - written > TAIL_GAP_MAX_BYTES {
                // Keep the gap small: the record's start moves down next to the plaintext.
                rbuf.copy_within(next..end, written);
                (self.tail_gap, self.tail_pending) = (0, pending);
            } else {
                (self.tail_gap, self.tail_pending) = (if pending > 0 { next - written } else { 0 }, pending);
            }
            rbuf.truncate(written);
            if n < want {
                break;
            }
        }
        Ok(true)
    }

    /// Decrypt the whole records at the start of `cipher` into `rbuf`; returns how many
    /// bytes they took (the rest is the start of a record) and false once the router closed.
    fn records_in(&mut self, cipher: &mut [u8], rbuf: &mut BytesMut, fd: RawFd) -> io::Result<(usize, bool)> {
        let mut pos = 0;
        while cipher.len() - pos >= RECORD_HEADER_BYTES {
            let len = u16::from_be_bytes([cipher[pos + 3], cipher[pos + 4]]) as usize;
            let end = if len > RECORD_LEN_MAX_BYTES {
                match self.stage {
                    // Not TLS (or broken): rustls names what is wrong.
                    Stage::Rustls(_) => cipher.len(),
                    _ => return Err(invalid(format!("TLS: a record of {len} bytes (at most {RECORD_LEN_MAX_BYTES})"))),
                }
            } else if cipher.len() - pos >= RECORD_HEADER_BYTES + len {
                pos + RECORD_HEADER_BYTES + len
            } else {
                break;
            };
            let record = &mut cipher[pos..end];
            pos = end;
            let open = match &mut self.stage {
                Stage::Rustls(conn) => {
                    let open = feed(conn, record, rbuf)?;
                    if open {
                        self.maybe_switch(fd)?;
                    }
                    open
                }
                Stage::Records(layer) => layer.open(record, rbuf)?,
                Stage::Broken => return Err(broken()),
            };
            if !open {
                return Ok((pos, false));
            }
        }
        Ok((pos, true))
    }

    /// Once rustls has finished a TLS 1.3 handshake and written everything it holds, take
    /// its traffic keys and carry on with [`RecordLayer`]. Leaves rustls in charge when the
    /// socket cannot take its last records now (the next flush tries again) or when the
    /// connection may not switch.
    fn maybe_switch(&mut self, fd: RawFd) -> io::Result<()> {
        let Stage::Rustls(conn) = &mut self.stage else { return Ok(()) };
        if !self.may_switch || conn.is_handshaking() {
            return Ok(());
        }
        let limit = match (conn.protocol_version(), conn.negotiated_cipher_suite()) {
            (Some(ProtocolVersion::TLSv1_3), Some(SupportedCipherSuite::Tls13(suite))) => {
                suite.common.confidentiality_limit
            }
            _ => {
                self.may_switch = false;
                return Ok(());
            }
        };
        // Our Finished and any application data written during the handshake go first,
        // under rustls's sequence numbers.
        while conn.wants_write() {
            match conn.write_tls(&mut FdWriter(fd)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let Stage::Rustls(conn) = std::mem::replace(&mut self.stage, Stage::Broken) else { return Ok(()) };
        let keys = conn.dangerous_extract_secrets().map_err(|e| invalid(format!("TLS: taking the keys: {e}")))?;
        let traffic = self.secrets.take().and_then(|s| s.take());
        let traffic = traffic.ok_or_else(|| io::Error::other("TLS: rustls did not report the traffic secrets"))?;
        self.stage = Stage::Records(Box::new(RecordLayer::new(keys, traffic, limit)?));
        Ok(())
    }

    /// Encrypt `wbuf[*wpos..]` and write the records. Ok(true) when nothing waits for the
    /// socket to become writable: everything is written, or rustls holds the rest until its
    /// handshake completes (a later read finishes it, and the caller flushes again then).
    pub fn flush(&mut self, fd: RawFd, wbuf: &[u8], wpos: &mut usize) -> io::Result<bool> {
        self.maybe_switch(fd)?;
        let layer = match &mut self.stage {
            Stage::Rustls(conn) => return flush_rustls(conn, fd, wbuf, wpos),
            Stage::Records(layer) => layer,
            Stage::Broken => return Err(broken()),
        };
        loop {
            while self.out_pos < self.out.len() {
                let rest = &self.out[self.out_pos..];
                // SAFETY: writes from a valid slice.
                let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return Ok(false),
                        io::ErrorKind::Interrupted => continue,
                        _ => return Err(e),
                    }
                }
                self.out_pos += n as usize;
            }
            self.out.clear();
            self.out_pos = 0;
            if *wpos == wbuf.len() {
                return Ok(true);
            }
            let take = (wbuf.len() - *wpos).min(TLS_BUFFER_LIMIT_BYTES);
            layer.seal(&wbuf[*wpos..*wpos + take], &mut self.out)?;
            *wpos += take;
        }
    }
}

/// Hand one record (or, before the handshake is done, whatever was read) to rustls, moving
/// the plaintext into `rbuf`. Ok(false) once the router has closed the TLS session.
fn feed(tls: &mut ClientConnection, mut cipher: &[u8], rbuf: &mut BytesMut) -> io::Result<bool> {
    loop {
        tls.read_tls(&mut cipher)?;
        tls.process_new_packets().map_err(|e| invalid(format!("TLS: {e}")))?;
        let mut reader = tls.reader();
        loop {
            match reader.fill_buf() {
                Ok([]) => return Ok(false),
                Ok(plain) => {
                    let n = plain.len();
                    rbuf.extend_from_slice(plain);
                    reader.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        if cipher.is_empty() {
            return Ok(true);
        }
    }
}

/// rustls's write path: encrypt `wbuf[*wpos..]` into its buffers and write its records.
fn flush_rustls(tls: &mut ClientConnection, fd: RawFd, wbuf: &[u8], wpos: &mut usize) -> io::Result<bool> {
    loop {
        let took = if *wpos < wbuf.len() { tls.writer().write(&wbuf[*wpos..])? } else { 0 };
        *wpos += took;
        while tls.wants_write() {
            match tls.write_tls(&mut FdWriter(fd)) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if *wpos == wbuf.len() || took == 0 {
            return Ok(true);
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn broken() -> io::Error {
    io::Error::other("TLS: the connection is unusable after a failed key hand-over")
}

/// The header of a TLS record: type, legacy version, length.
const RECORD_HEADER_BYTES: usize = 5;

/// Largest record length accepted in a header (TLS 1.2's 2^14 + 2048; TLS 1.3 allows
/// 2^14 + 256, which `RecordLayer::open` checks).
const RECORD_LEN_MAX_BYTES: usize = 16384 + 2048;

/// TLS 1.3's largest `TLSCiphertext.length` (RFC 8446 §5.2).
const RECORD_CIPHERTEXT_MAX_BYTES: usize = 16384 + 256;

/// In-place reads move a waiting record's start down to the plaintext once the bytes of no
/// use before it exceed this (they grow by a header and a tag per record opened).
const TAIL_GAP_MAX_BYTES: usize = 4096;

/// Plaintext per record loadgen seals (the TLS maximum, 2^14).
const RECORD_PLAINTEXT_MAX_BYTES: usize = 16384;

/// Record content types (RFC 8446 §5.1).
const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;

/// Post-handshake messages (RFC 8446 §4).
const HANDSHAKE_NEW_SESSION_TICKET: u8 = 4;
const HANDSHAKE_KEY_UPDATE: u8 = 24;

/// KeyUpdate's `request_update` (RFC 8446 §4.6.3).
const UPDATE_NOT_REQUESTED: u8 = 0;
const UPDATE_REQUESTED: u8 = 1;

/// TLS 1.3's record protection (RFC 8446 §5.2–5.3) with the traffic keys of a handshake
/// rustls did: each record is opened in place in the read buffer and its content copied
/// once into the connection's plaintext buffer; sealing writes header, plaintext, content
/// type and tag into one reused buffer. No allocation per record, no second copy.
///
/// Scope, as a load generator needs it: application data and close_notify both ways;
/// session tickets the router sends after the handshake are dropped (the run does not
/// resume, or rustls would keep the records); key updates both ways (the router's, which
/// rustls sends near the cipher's record limit, asking for ours; loadgen's own before its
/// key reaches that limit); any other alert or handshake message ends the connection with
/// an error naming it.
struct RecordLayer {
    rx: Direction,
    tx: Direction,
    /// The router asked for our key update: it goes before our next application data.
    tx_update_due: bool,
}

/// One direction's traffic secret, key, IV and next record number.
struct Direction {
    aead: &'static aead::Algorithm,
    hkdf: hkdf::Algorithm,
    secret: Vec<u8>,
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
    /// Records this key may protect.
    limit: u64,
    /// Key updates so far.
    generation: u64,
}

impl Direction {
    /// From rustls's extracted keys (sequence number, key, IV) and the traffic secret they
    /// come from; the two must agree (a check of the derivation key updates use).
    fn new((seq, keys): (u64, ConnectionTrafficSecrets), secret: Vec<u8>, limit: u64) -> io::Result<Direction> {
        let (algorithm, hkdf, key, iv) = match &keys {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, hkdf::HKDF_SHA256, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, hkdf::HKDF_SHA384, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, hkdf::HKDF_SHA256, key, iv)
            }
            _ => return Err(invalid("TLS: a cipher loadgen's record layer does not know".into())),
        };
        let (derived_key, derived_iv) = derive_key_iv(algorithm, hkdf, &secret)?;
        if derived_key != key.as_ref() || derived_iv != iv.as_ref() {
            return Err(io::Error::other("TLS: the traffic secret does not give rustls's keys"));
        }
        Direction::with(algorithm, hkdf, secret, seq, limit, 0)
    }

    fn with(
        aead: &'static aead::Algorithm,
        hkdf: hkdf::Algorithm,
        secret: Vec<u8>,
        seq: u64,
        limit: u64,
        generation: u64,
    ) -> io::Result<Direction> {
        let (key, iv) = derive_key_iv(aead, hkdf, &secret)?;
        let key = aead::UnboundKey::new(aead, &key).map_err(|_| invalid("TLS: bad key length".into()))?;
        let iv = iv.as_slice().try_into().map_err(|_| invalid("TLS: bad IV length".into()))?;
        Ok(Direction { aead, hkdf, secret, key: aead::LessSafeKey::new(key), iv, seq, limit, generation })
    }

    /// The next generation of this direction's keys (RFC 8446 §7.2): numbering restarts.
    fn update(&mut self) -> io::Result<()> {
        let next = expand_label(self.hkdf, &self.secret, b"traffic upd", self.secret.len())?;
        *self = Direction::with(self.aead, self.hkdf, next, 0, self.limit, self.generation + 1)?;
        Ok(())
    }

    /// The next record's nonce: the IV XOR the record number (RFC 8446 §5.3).
    fn next_nonce(&mut self) -> io::Result<aead::Nonce> {
        if self.seq >= self.limit {
            return Err(io::Error::other(format!(
                "TLS: the record limit of a key is reached (its generation {}, {} records)",
                self.generation, self.limit
            )));
        }
        let mut nonce = self.iv;
        for (b, s) in nonce[aead::NONCE_LEN - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq += 1;
        Ok(aead::Nonce::assume_unique_for_key(nonce))
    }
}

impl RecordLayer {
    /// `traffic`: the (client, server) traffic secrets.
    fn new(keys: ExtractedSecrets, (client, server): (Vec<u8>, Vec<u8>), limit: u64) -> io::Result<RecordLayer> {
        Ok(RecordLayer {
            rx: Direction::new(keys.rx, server, u64::MAX)?,
            tx: Direction::new(keys.tx, client, limit)?,
            tx_update_due: false,
        })
    }

    /// The router updated its key: open with the next one; answer its request with ours.
    fn router_updated(&mut self, requested: bool) -> io::Result<()> {
        self.rx.update()?;
        self.tx_update_due |= requested;
        Ok(())
    }

    /// Open one whole record (header included) in place; application data goes to `rbuf`.
    /// Ok(false) on the router's close_notify.
    fn open(&mut self, record: &mut [u8], rbuf: &mut BytesMut) -> io::Result<bool> {
        let (header, body) = record.split_at_mut(RECORD_HEADER_BYTES);
        let header = check_header(header)?;
        let nonce = self.rx.next_nonce()?;
        let plain = self
            .rx
            .key
            .open_in_place(nonce, aead::Aad::from(header), body)
            .map_err(|_| invalid("TLS: a record failed authentication".into()))?;
        match inner(plain)? {
            Inner::Data(n) => {
                rbuf.extend_from_slice(&plain[..n]);
                Ok(true)
            }
            Inner::Dropped => Ok(true),
            Inner::KeyUpdate { requested } => self.router_updated(requested).map(|()| true),
            Inner::Closed => Ok(false),
        }
    }

    /// Open the whole records in `buf[from..]` in place, moving each one's content down to
    /// `buf[to..]` as it is decrypted (`to` ≤ `from`). Returns where the content ends, where
    /// the first incomplete record starts, and false once the router closed.
    fn open_within(&mut self, buf: &mut [u8], mut to: usize, mut from: usize) -> io::Result<(usize, usize, bool)> {
        while buf.len() - from >= RECORD_HEADER_BYTES {
            let header = check_header(&buf[from..from + RECORD_HEADER_BYTES])?;
            let end = from + RECORD_HEADER_BYTES + u16::from_be_bytes([header[3], header[4]]) as usize;
            if end > buf.len() {
                break;
            }
            let nonce = self.rx.next_nonce()?;
            let body = from + RECORD_HEADER_BYTES - to;
            let plain = self
                .rx
                .key
                .open_within(nonce, aead::Aad::from(header), &mut buf[to..end], body..)
                .map_err(|_| invalid("TLS: a record failed authentication".into()))?;
            from = end;
            match inner(plain)? {
                Inner::Data(n) => to += n,
                Inner::Dropped => {}
                Inner::KeyUpdate { requested } => self.router_updated(requested)?,
                Inner::Closed => return Ok((to, from, false)),
            }
        }
        Ok((to, from, true))
    }

    /// Seal `plain` into records appended to `out`, each preceded by our KeyUpdate when the
    /// router asked for it or our key has one record left before its limit (the KeyUpdate's).
    fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        for piece in plain.chunks(RECORD_PLAINTEXT_MAX_BYTES) {
            if self.tx_update_due || self.tx.seq.saturating_add(1) >= self.tx.limit {
                let update = [HANDSHAKE_KEY_UPDATE, 0, 0, 1, UPDATE_NOT_REQUESTED];
                self.seal_record(CONTENT_HANDSHAKE, &update, out)?;
                self.tx.update()?;
                self.tx_update_due = false;
            }
            self.seal_record(CONTENT_APPLICATION_DATA, piece, out)?;
        }
        Ok(())
    }

    /// One record of content type `kind` (at most `RECORD_PLAINTEXT_MAX_BYTES`).
    fn seal_record(&mut self, kind: u8, piece: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let len = piece.len() + 1 + self.tx.key.algorithm().tag_len();
        let header = [CONTENT_APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        out.extend_from_slice(&header);
        let start = out.len();
        out.extend_from_slice(piece);
        out.push(kind);
        let nonce = self.tx.next_nonce()?;
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, aead::Aad::from(header), &mut out[start..])
            .map_err(|_| io::Error::other("TLS: sealing a record failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

/// HKDF-Expand-Label(secret, label, "", len) (RFC 8446 §7.1).
fn expand_label(algorithm: hkdf::Algorithm, secret: &[u8], label: &[u8], len: usize) -> io::Result<Vec<u8>> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    if secret.len() != hkdf::KeyType::len(&algorithm) {
        return Err(invalid(format!("TLS: a traffic secret of {} bytes", secret.len())));
    }
    let prk = hkdf::Prk::new_less_safe(algorithm, secret);
    let length = (len as u16).to_be_bytes();
    let label_len = [(b"tls13 ".len() + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    let mut out = vec![0; len];
    prk.expand(&info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| io::Error::other("TLS: HKDF-Expand-Label failed"))?;
    Ok(out)
}

/// A traffic secret's write key and IV (RFC 8446 §7.3).
fn derive_key_iv(
    aead: &'static aead::Algorithm,
    hkdf: hkdf::Algorithm,
    secret: &[u8],
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    Ok((expand_label(hkdf, secret, b"key", aead.key_len())?, expand_label(hkdf, secret, b"iv", aead::NONCE_LEN)?))
}

/// A TLS 1.3 record header after the handshake: application data (the outer type of every
/// protected record) and a length TLS 1.3 allows.
fn check_header(header: &[u8]) -> io::Result<[u8; RECORD_HEADER_BYTES]> {
    let header: [u8; RECORD_HEADER_BYTES] =
        header.try_into().map_err(|_| invalid("TLS: a short record header".into()))?;
    if header[0] != CONTENT_APPLICATION_DATA {
        return Err(invalid(format!("TLS: a record of type {} after the handshake", header[0])));
    }
    let len = u16::from_be_bytes([header[3], header[4]]) as usize;
    if len > RECORD_CIPHERTEXT_MAX_BYTES {
        return Err(invalid(format!("TLS: a record of {len} bytes (at most {RECORD_CIPHERTEXT_MAX_BYTES})")));
    }
    Ok(header)
}

/// What an opened record carried.
enum Inner {
    /// Application data: the first n bytes of the plaintext.
    Data(usize),
    /// A session ticket, dropped.
    Dropped,
    /// The router's KeyUpdate (at the end of the record), and whether it asks for ours.
    KeyUpdate { requested: bool },
    /// The router's close_notify.
    Closed,
}

/// Read a decrypted TLSInnerPlaintext: content, content type, zero padding (RFC 8446 §5.2).
fn inner(plain: &[u8]) -> io::Result<Inner> {
    let Some(end) = plain.iter().rposition(|&b| b != 0) else {
        return Err(invalid("TLS: a record without content type".into()));
    };
    let content = &plain[..end];
    match plain[end] {
        CONTENT_APPLICATION_DATA => Ok(Inner::Data(end)),
        CONTENT_ALERT => match content {
            [_, 0] => Ok(Inner::Closed),
            [_, what] => Err(invalid(format!("TLS: the router sent alert {what}"))),
            _ => Err(invalid("TLS: a malformed alert".into())),
        },
        CONTENT_HANDSHAKE => Ok(match post_handshake(content)? {
            Some(requested) => Inner::KeyUpdate { requested },
            None => Inner::Dropped,
        }),
        other => Err(invalid(format!("TLS: a record of content type {other}"))),
    }
}

/// Handshake messages after the handshake: session tickets are dropped; a KeyUpdate, which
/// must end its record (RFC 8446 §5.1), gives Some(whether it asks for ours); anything else
/// ends the connection with an error naming it.
fn post_handshake(mut messages: &[u8]) -> io::Result<Option<bool>> {
    while !messages.is_empty() {
        let [kind, a, b, c, rest @ ..] = messages else {
            return Err(invalid("TLS: a split post-handshake message".into()));
        };
        let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
        if rest.len() < len {
            return Err(invalid("TLS: a split post-handshake message".into()));
        }
        match *kind {
            HANDSHAKE_NEW_SESSION_TICKET => {}
            HANDSHAKE_KEY_UPDATE => {
                return match (&rest[..len], rest.len() == len) {
                    (_, false) => Err(invalid("TLS: a KeyUpdate not at the end of its record".into())),
                    ([UPDATE_NOT_REQUESTED], true) => Ok(Some(false)),
                    ([UPDATE_REQUESTED], true) => Ok(Some(true)),
                    _ => Err(invalid("TLS: a malformed KeyUpdate".into())),
                };
            }
            other => return Err(invalid(format!("TLS: handshake message {other} after the handshake"))),
        }
        messages = &rest[len..];
    }
    Ok(None)
}

/// `write(2)` / `writev(2)` on a borrowed non-blocking socket.
struct FdWriter(RawFd);

impl io::Write for FdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: writes from a valid slice.
        let n = unsafe { libc::write(self.0, buf.as_ptr().cast(), buf.len()) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let count = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
        // SAFETY: IoSlice is ABI-compatible with iovec, and `count` slices are valid.
        let n = unsafe { libc::writev(self.0, bufs.as_ptr().cast(), count) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: post-handshake messages are read as RFC 8446 has them: tickets dropped, a
    // KeyUpdate's request read, and a KeyUpdate that is malformed or not last in its record,
    // or any other message, refused. Method: hand-made message sequences.
    #[test]
    fn post_handshake_messages() {
        let ticket = [HANDSHAKE_NEW_SESSION_TICKET, 0, 0, 2, 9, 9];
        let update = |request: u8| [HANDSHAKE_KEY_UPDATE, 0, 0, 1, request];
        assert_eq!(post_handshake(&ticket).unwrap(), None);
        assert_eq!(post_handshake(&update(0)).unwrap(), Some(false));
        assert_eq!(post_handshake(&[&ticket[..], &update(1)].concat()).unwrap(), Some(true));
        let not_last = post_handshake(&[&update(0)[..], &ticket].concat()).unwrap_err();
        assert!(not_last.to_string().contains("not at the end"), "{not_last}");
        assert!(post_handshake(&update(2)).unwrap_err().to_string().contains("malformed KeyUpdate"));
        assert!(post_handshake(&[HANDSHAKE_KEY_UPDATE, 0, 0, 2, 0, 0]).is_err());
        assert!(post_handshake(&[HANDSHAKE_KEY_UPDATE, 0, 0, 1]).is_err(), "split");
        assert!(post_handshake(&[13, 0, 0, 0]).unwrap_err().to_string().contains("handshake message 13"));
    }
}
