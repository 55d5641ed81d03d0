//! TLS on the WAMP listeners (rustls with the ring provider): building each listener's
//! `ServerConfig` from the PEM files its `[listener.tls]` names, the handshake on an accepted
//! stream whose first bytes were already read, and the client certificate's fingerprints.
//!
//! Certificates are read at start (an unreadable or invalid file stops the router with a
//! config error) and on SIGHUP (`reload.rs`; an error keeps the old ones). Loading happens
//! off the shards, once per process: the shards share the built configs. This file does no
//! routing of its own: `accept.rs` decides when a connection is TLS and where the decrypted
//! stream goes.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::future::or;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

use super::guard::{LogKind, TlsRejection};
use super::state::Shard;
use crate::config::{Config, ConfigError, TlsConfig};
use crate::proto::core::{CertFingerprints, TlsPeer};

/// The first byte of a TLS record carrying a handshake message (a ClientHello): the
/// `ContentType` `handshake` (RFC 8446 §5.1). It starts neither an HTTP request nor a
/// RawSocket handshake (`0x7F`).
pub(crate) const RECORD_HANDSHAKE: u8 = 0x16;

/// One listener's TLS: its acceptor (the `ServerConfig` shared by every shard) and whether
/// the listener serves plaintext too. Cloning shares the config.
#[derive(Clone)]
pub(crate) struct ListenerTls {
    acceptor: TlsAcceptor,
    pub(crate) allow_plaintext: bool,
}

/// Build the TLS of every listener in `config` (None: plaintext only), by the listener's
/// index there. Errors name the config file, the listener's key and the PEM file.
pub(crate) fn load(config: &Config) -> Result<Vec<Option<ListenerTls>>, ConfigError> {
    let provider = Arc::new(provider());
    let mut out = Vec::with_capacity(config.listeners.len());
    for (i, listener) in config.listeners.iter().enumerate() {
        let Some(tls) = &listener.tls else {
            out.push(None);
            continue;
        };
        let built = server_config(tls, &provider).map_err(|(key, message)| ConfigError {
            source: config.source.clone(),
            key: format!("listener[{i}].tls.{key}"),
            message,
        })?;
        out.push(Some(ListenerTls { acceptor: TlsAcceptor::from(built), allow_plaintext: tls.allow_plaintext }));
    }
    Ok(out)
}

/// rustls's ring provider with the cipher suites in the router's order: per protocol
/// version AES-128-GCM, then AES-256-GCM, then ChaCha20-Poly1305 (rustls lists AES-256
/// first). With `ignore_client_order` the server picks from this list: AES-128 runs 10
/// rounds per block where AES-256 runs 14, and a fan-out encrypts each event once per
/// subscriber.
fn provider() -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        let name = s.suite().as_str().unwrap_or("");
        let rank = if name.contains("AES_128_GCM") {
            0
        } else if name.contains("AES_256_GCM") {
            1
        } else {
            2
        };
        (!matches!(s, rustls::SupportedCipherSuite::Tls13(_)), rank)
    });
    provider
}

/// A listener's `ServerConfig`: TLS 1.2 and 1.3, its certificate chain and key, and (with
/// `client_ca`) optional client certificates verified against those CAs. An error says
/// which key of `[listener.tls]` is at fault and why.
fn server_config(tls: &TlsConfig, provider: &Arc<CryptoProvider>) -> Result<Arc<ServerConfig>, (&'static str, String)> {
    let chain = certificates(&tls.cert).map_err(|e| ("cert", e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| ("key", pem_error(&tls.key, "private key", e)))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("cert", format!("the TLS provider offers no protocol version: {e}")))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(path).map_err(|e| ("client_ca", e))? {
                roots
                    .add(ca)
                    .map_err(|e| ("client_ca", format!("{}: not a usable CA certificate: {e}", path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| ("client_ca", format!("{}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        let (cert, key) = (tls.cert.display(), tls.key.display());
        ("key", format!("{key} does not go with the certificate in {cert}: {e}"))
    })?;
    // Our order (`provider`), not the client's: most clients list AES-256-GCM first.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Every certificate in the PEM file at `path` (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = "certificate";
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, what, e))?.collect();
    let certs = certs.map_err(|e| pem_error(path, what, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, what, pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// An error reading `what` from the PEM file at `path`, naming the file.
fn pem_error(path: &Path, what: &str, e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read {}: {e}", path.display()),
        pem::Error::NoItemsFound => format!("{}: no PEM {what} found", path.display()),
        e => format!("{}: not a valid PEM {what}: {e}", path.display()),
    }
}

/// Why a handshake did not complete.
pub(crate) struct Failed {
    pub(crate) why: TlsRejection,
    /// What rustls or the socket said, for the log.
    pub(crate) detail: String,
}

/// The TLS handshake on `stream`, whose first bytes (`first`, read to sniff the protocol)
/// are fed to rustls before it reads on; it must finish by `deadline`. Returns the
/// encrypted stream and what the core may know of the peer.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    tls: &ListenerTls,
    stream: S,
    first: &[u8],
    deadline: Instant,
) -> Result<(TlsStream<S>, TlsPeer), Failed> {
    let failed = |detail: String| Failed { why: TlsRejection::HandshakeFailed, detail };
    let mut fed = Ok(());
    let accept = tls.acceptor.accept_with(stream, |conn| fed = feed(conn, first));
    fed.map_err(failed)?;
    let now = Instant::now();
    let done = or(async { Some(accept.await) }, async {
        glommio::timer::sleep(deadline.saturating_duration_since(now)).await;
        None
    })
    .await;
    match done {
        Some(Ok(stream)) => {
            let peer = peer_of(stream.get_ref().1);
            Ok((stream, peer))
        }
        Some(Err(e)) => Err(failed(e.to_string())),
        None => Err(Failed { why: TlsRejection::HandshakeTimeout, detail: "handshake deadline passed".into() }),
    }
}

/// Hand rustls the bytes already read from the socket, and let it process them (it will
/// not look at buffered bytes again until more arrive, and the client may be waiting for
/// our answer to a complete ClientHello).
fn feed(conn: &mut ServerConnection, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        match conn.read_tls(&mut bytes) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        conn.process_new_packets().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What the core may know of a TLS peer: the fingerprints of the certificate it presented
/// (the end-entity one, which the verifier checked against `client_ca`), if any.
fn peer_of(conn: &ServerConnection) -> TlsPeer {
    TlsPeer { client_cert: conn.peer_certificates().and_then(|chain| chain.first()).map(|der| fingerprints(der)) }
}

/// SHA-1 and SHA-256 of a certificate's DER bytes.
pub(crate) fn fingerprints(der: &[u8]) -> CertFingerprints {
    CertFingerprints { sha1: Sha1::digest(der).into(), sha256: Sha256::digest(der).into() }
}

/// Count a connection closed before or during TLS, and log it (at most once per
/// `limits::GUARD_LOG_INTERVAL_MS` per shard).
pub(crate) fn note_rejected(shard: &Shard, why: TlsRejection, peer: Option<std::net::SocketAddr>, detail: &str) {
    shard.counters().count_tls_rejected(why);
    if let Some(skipped) = shard.log_limit.allow(LogKind::TlsRejected, Instant::now()) {
        tracing::warn!(
            shard = shard.id,
            reason = why.as_str(),
            peer = ?peer,
            detail,
            not_logged_since = skipped,
            "connection closed at TLS (counted in shardbar_tls_rejected_total)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_sha1_and_sha256_of_the_der() {
        // Goal: the digests are the standard ones (the core compares them with the hex
        // fingerprints `openssl x509 -fingerprint` prints). Method: the FIPS 180 "abc" vectors.
        let f = fingerprints(b"abc");
        let hex = crate::proto::auth::secret::hex_encode;
        assert_eq!(hex(&f.sha1), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(&f.sha256), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(crate::proto::auth::fingerprint::format(&f.sha1[..3]), "A9:99:3E");
    }

    #[test]
    fn unreadable_or_invalid_pem_names_the_key_and_the_file() {
        // Goal: a missing file, a file without PEM blocks, and a key that is not a key each
        // give a config error naming the config file, the listener key and the PEM path.
        // Method: configs pointing at a missing path and at temporary files with junk.
        let dir = std::env::temp_dir().join(format!("sb-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").unwrap();
        let text = |cert: &Path, key: &Path| {
            format!(
                "[[listener]]\naddress = \"127.0.0.1:1\"\n[listener.tls]\ncert = {:?}\nkey = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            )
        };
        let missing = dir.join("missing.pem");
        let config = Config::from_toml(&text(&missing, &junk), "sb.toml").unwrap();
        let e = load(&config).err().unwrap();
        assert_eq!((e.source.as_str(), e.key.as_str()), ("sb.toml", "listener[0].tls.cert"));
        assert!(e.message.starts_with(&format!("cannot read {}", missing.display())), "{e}");
        let config = Config::from_toml(&text(&junk, &junk), "sb.toml").unwrap();
        let e = load(&config).err().unwrap();
        assert_eq!(e.key, "listener[0].tls.cert");
        assert_eq!(e.message, format!("{}: no PEM certificate found", junk.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A throw-away PKI for the tests below: a CA, a server certificate for `localhost`
    /// and a client certificate, written as PEM files into a fresh temporary directory.
    struct Pki {
        dir: std::path::PathBuf,
        ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    }

    impl Pki {
        fn new(name: &str) -> Pki {
            let dir = std::env::temp_dir().join(format!("sb-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
            let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
            std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
            Pki { dir, ca }
        }

        /// A certificate signed by the CA, written to `name.pem` and `name.key`; its DER.
        fn leaf(&self, name: &str, usage: rcgen::ExtendedKeyUsagePurpose) -> Vec<u8> {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.extended_key_usages = vec![usage];
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.ca).unwrap();
            std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
            cert.der().to_vec()
        }

        fn tls(&self, cert: &str, key: &str, client_ca: bool) -> TlsConfig {
            TlsConfig {
                cert: self.dir.join(format!("{cert}.pem")),
                key: self.dir.join(format!("{key}.key")),
                client_ca: client_ca.then(|| self.dir.join("ca.pem")),
                allow_plaintext: false,
            }
        }

        /// A client trusting the CA, presenting certificate `name` if given.
        fn client(&self, name: Option<&str>) -> rustls::ClientConnection {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.der().clone()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
            let config = match name {
                None => builder.with_no_client_auth(),
                Some(n) => {
                    let chain = certificates(&self.dir.join(format!("{n}.pem"))).unwrap();
                    let key = PrivateKeyDer::from_pem_file(self.dir.join(format!("{n}.key"))).unwrap();
                    builder.with_client_auth_cert(chain, key).unwrap()
                }
            };
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            rustls::ClientConnection::new(Arc::new(config), name).unwrap()
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Move TLS records between the two ends until both finish the handshake (or one fails).
    fn handshake_in_memory(client: &mut rustls::ClientConnection, server: &mut ServerConnection) -> Result<(), String> {
        for _ in 0..8 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            feed(server, &wire)?;
            wire.clear();
            server.write_tls(&mut wire).unwrap();
            let mut rd = &wire[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().map_err(|e| e.to_string())?;
            }
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        Err("handshake did not finish".into())
    }

    fn server_for(tls: &TlsConfig) -> ServerConnection {
        ServerConnection::new(server_config(tls, &Arc::new(provider())).unwrap()).unwrap()
    }

    #[test]
    fn the_server_picks_aes_128_gcm_and_still_serves_every_suite() {
        // Goal: whatever order the client lists them in, the router chooses AES-128-GCM when
        // offered (TLS 1.3 and 1.2), and a client offering only AES-256-GCM or only
        // ChaCha20-Poly1305 still connects with it. Method: in-memory handshakes of rustls
        // clients with restricted providers against `server_config`.
        use rustls::crypto::ring::{cipher_suite as cs, default_provider};
        let pki = Pki::new("suites");
        pki.leaf("server", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let tls = pki.tls("server", "server", false);
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca.der().clone()).unwrap();
        let negotiated = |suites: Vec<rustls::SupportedCipherSuite>, tls12_only: bool| {
            let provider = CryptoProvider { cipher_suites: suites, ..default_provider() };
            let versions: &[&rustls::SupportedProtocolVersion] =
                if tls12_only { &[&rustls::version::TLS12] } else { rustls::DEFAULT_VERSIONS };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
            let mut server = server_for(&tls);
            handshake_in_memory(&mut client, &mut server).unwrap();
            server.negotiated_cipher_suite().unwrap().suite()
        };
        // rustls's default order puts AES-256 first.
        assert_eq!(negotiated(default_provider().cipher_suites, false), cs::TLS13_AES_128_GCM_SHA256.suite());
        assert_eq!(
            negotiated(default_provider().cipher_suites, true),
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.suite()
        );
        assert_eq!(negotiated(vec![cs::TLS13_AES_256_GCM_SHA384], false), cs::TLS13_AES_256_GCM_SHA384.suite());
        assert_eq!(
            negotiated(vec![cs::TLS13_CHACHA20_POLY1305_SHA256], false),
            cs::TLS13_CHACHA20_POLY1305_SHA256.suite()
        );
        assert_eq!(provider().cipher_suites.len(), default_provider().cipher_suites.len());
    }

    #[test]
    fn a_fed_client_hello_is_answered() {
        // Goal: the bytes read while sniffing are processed when fed, so the server has its
        // answer ready without waiting for more input (the client waits for it).
        // Method: feed a client's whole first flight in two pieces.
        let pki = Pki::new("feed");
        pki.leaf("server", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let mut server = server_for(&pki.tls("server", "server", false));
        let mut hello = Vec::new();
        pki.client(None).write_tls(&mut hello).unwrap();
        assert_eq!(hello[0], RECORD_HANDSHAKE);
        feed(&mut server, &hello[..1]).unwrap();
        assert!(!server.wants_write(), "one byte is no ClientHello");
        feed(&mut server, &hello[1..]).unwrap();
        assert!(server.wants_write(), "the ServerHello is ready");
    }

    #[test]
    fn client_certificate_fingerprints_are_the_end_entity_ones() {
        // Goal: with client_ca, a client certificate the CA signed gives its fingerprints, a
        // client without one gets through with none (optional client auth), and a
        // certificate from another CA fails the handshake.
        // Method: in-memory handshakes against a server built by `server_config`.
        let pki = Pki::new("client");
        pki.leaf("server", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let client_der = pki.leaf("client", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        let tls = pki.tls("server", "server", true);
        let mut server = server_for(&tls);
        handshake_in_memory(&mut pki.client(Some("client")), &mut server).unwrap();
        assert_eq!(peer_of(&server), TlsPeer { client_cert: Some(fingerprints(&client_der)) });
        let mut server = server_for(&tls);
        handshake_in_memory(&mut pki.client(None), &mut server).unwrap();
        assert_eq!(peer_of(&server), TlsPeer { client_cert: None });
        let other = Pki::new("other");
        other.leaf("stranger", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        std::fs::copy(other.dir.join("stranger.pem"), pki.dir.join("stranger.pem")).unwrap();
        std::fs::copy(other.dir.join("stranger.key"), pki.dir.join("stranger.key")).unwrap();
        let mut server = server_for(&tls);
        let e = handshake_in_memory(&mut pki.client(Some("stranger")), &mut server).unwrap_err();
        assert!(e.contains("certificate"), "{e}");
    }

    #[test]
    fn a_key_of_another_certificate_is_a_config_error() {
        // Goal: a key that does not belong to the certificate names listener[i].tls.key and
        // both files; a good pair loads. Method: two leaf certificates, their keys swapped.
        let pki = Pki::new("mismatch");
        pki.leaf("a", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        pki.leaf("b", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let mut config = Config::from_toml("[[listener]]\naddress = \"127.0.0.1:1\"\n", "sb.toml").unwrap();
        config.listeners[0].tls = Some(pki.tls("a", "a", true));
        assert!(load(&config).unwrap()[0].is_some());
        config.listeners[0].tls = Some(pki.tls("a", "b", false));
        let e = load(&config).err().unwrap();
        assert_eq!(e.key, "listener[0].tls.key");
        assert!(e.message.contains("b.key") && e.message.contains("a.pem"), "{e}");
    }
}
