//! TLS for loadgen's client connections (`wss://`, `rss://`): the rustls client
//! configuration built from the command line, and the two I/O steps that move bytes
//! between a non-blocking socket and a `rustls::ClientConnection`.
//!
//! rustls does no I/O itself; `client.rs` owns the socket and the plaintext buffers and
//! calls [`read_some`] / [`flush`] instead of its plain `read`/`write` loop when the
//! connection has TLS. Nothing here knows WAMP, WebSocket or RawSocket framing.
//!
//! Costs: one `read` syscall per chunk as on plain connections (the ciphertext lands in a
//! per-thread buffer and is fed to rustls from there: rustls's own `read_tls` would read at
//! most 4 KiB per call), one copy of the plaintext into the connection's read buffer, and
//! one `writev` per flush of rustls's records.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead as _, Write as _};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

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
    }
}

/// A client configuration and the name to present: shared by every connection of a run.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    pub verified: bool,
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
        let name = a.server_name.clone().unwrap_or_else(|| host.to_owned());
        let server_name = ServerName::try_from(name.clone()).map_err(|e| format!("TLS server name {name:?}: {e}"))?;
        Ok(TlsClient { config: Arc::new(config), server_name, verified: !a.insecure })
    }

    /// A fresh client connection; its ClientHello is queued at once.
    pub fn connect(&self) -> Result<Box<ClientConnection>, String> {
        let mut c =
            ClientConnection::new(self.config.clone(), self.server_name.clone()).map_err(|e| format!("TLS: {e}"))?;
        c.set_buffer_limit(Some(TLS_BUFFER_LIMIT_BYTES));
        Ok(Box::new(c))
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
    /// Ciphertext just read, before rustls takes it: one per thread, as a worker reads
    /// one connection at a time and hands everything read to rustls before returning.
    static CIPHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Read what the socket has (at most `max_reads` reads of up to `chunk` bytes), decrypt it
/// and append the plaintext to `rbuf`. Ok(false) on EOF or the router's close_notify.
/// `plain_bytes` counts the plaintext (the transport's bytes, comparable with a plain run).
pub fn read_some(
    tls: &mut ClientConnection,
    fd: RawFd,
    rbuf: &mut BytesMut,
    chunk: usize,
    max_reads: usize,
    plain_bytes: &mut u64,
) -> io::Result<bool> {
    let chunk = chunk.clamp(1, CIPHER_CHUNK_MAX_BYTES);
    CIPHER.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < chunk {
            buf.resize(chunk, 0);
        }
        for _ in 0..max_reads {
            // SAFETY: reading into an initialised buffer of at least `chunk` bytes.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), chunk) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(true),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            let n = n as usize;
            let before = rbuf.len();
            // At EOF the empty slice tells rustls the peer closed (read_tls returns 0).
            let open = feed(tls, &buf[..n], rbuf)?;
            *plain_bytes += (rbuf.len() - before) as u64;
            if !open || n == 0 {
                return Ok(false);
            }
            if n < chunk {
                break;
            }
        }
        Ok(true)
    })
}

/// Hand `cipher` to rustls record by record, moving the plaintext into `rbuf`.
/// Ok(false) once the router has closed the TLS session.
fn feed(tls: &mut ClientConnection, mut cipher: &[u8], rbuf: &mut BytesMut) -> io::Result<bool> {
    loop {
        // Takes at most about one record per call; an empty slice is the EOF.
        tls.read_tls(&mut cipher)?;
        tls.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
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

/// Encrypt `wbuf[*wpos..]` and write the records. Ok(true) when nothing waits for the
/// socket to become writable: everything is written, or rustls holds the rest until its
/// handshake completes (a later read finishes it, and the caller flushes again then).
pub fn flush(tls: &mut ClientConnection, fd: RawFd, wbuf: &[u8], wpos: &mut usize) -> io::Result<bool> {
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
