//! Configuration: the TOML file and the command line, parsed into validated types.
//!
//! "Parse, don't validate": [`Config::load`] either returns a [`Config`] whose every field
//! is in range, or a [`ConfigError`] naming the file, the key, what was expected and what
//! was found. Nothing downstream re-checks.
//!
//! With no file and no flags the router listens on 127.0.0.1:8080 (WebSocket and RawSocket
//! on one port, JSON/MessagePack/CBOR), serves realm `realm1` to anonymous clients with
//! every permission, and runs one shard per core.
//!
//! The parts: `file` reads the TOML into its raw shape, `flags` is the command line
//! (clap) and lays its values over the file, `validate` turns the raw shape into the types
//! below. This module owns those types and the order of the steps; it does no I/O beyond
//! reading the file and never starts anything.

mod auth;
mod file;
mod flags;
mod roles;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::realm::RouterConfig;
use crate::proto::wire::Serializer;

pub use flags::{Cli, Command, RunFlags};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// What [`ConfigError::source`] says when no file was given.
const BUILT_IN: &str = "built-in defaults";

/// A bad configuration: where, which key, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or "built-in defaults").
    pub source: String,
    /// The key path (`limits.pending_bytes_max`), empty when the whole file is at fault.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: key `{}`: {}", self.source, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where a listener accepts connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// TCP: WebSocket and RawSocket on one port (the first byte tells them apart).
    Tcp(SocketAddr),
    /// A Unix domain socket: RawSocket only.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp://{a}"),
            ListenAddr::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub addr: ListenAddr,
    pub serializers: Vec<Serializer>,
    /// Echo WebSocket messages instead of speaking WAMP (for the Autobahn testsuite).
    pub websocket_testee: bool,
    /// `[listener.tls]`: serve TLS on this listener (None: plaintext only).
    pub tls: Option<TlsConfig>,
}

/// A listener's `[listener.tls]`: where its certificate and key are, and what it asks of
/// clients. Paths are resolved against the config file's directory; the files are read by
/// the runtime (`shard::tls`) at start and on SIGHUP, not here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain, the listener's own certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates: ask clients for a certificate and verify it against these. A
    /// client without one still connects (its fingerprints are then absent).
    pub client_ca: Option<PathBuf>,
    /// Also serve plaintext on this listener (off: a plaintext connection is closed).
    pub allow_plaintext: bool,
}

pub use crate::proto::realm::RawSocketPing;

/// Runtime limits (the core's limits, liveness included, live in `RouterConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeLimits {
    pub write_deadline: Duration,
    /// Connections open on the whole router (enforced router-wide, not split per shard).
    pub max_connections: usize,
    /// Connections from one source address (IPv6: one /64); None = no cap.
    pub max_connections_per_ip: Option<usize>,
    /// Connections of one shard that have no session yet (handshake, then until WELCOME).
    pub max_handshakes_per_shard: usize,
    /// Bytes a connection may send before its session is established.
    pub pre_session_bytes_max: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file the config was read from, or "built-in defaults": errors found after
    /// validation (an unreadable certificate) name it.
    pub source: String,
    /// Number of shards (resolved: never 0).
    pub shards: usize,
    pub spin_before_park: Duration,
    pub log: String,
    pub listeners: Vec<ListenerConfig>,
    pub limits: RuntimeLimits,
    /// Optional separate listener for `/metrics` and `/health`.
    pub metrics_addr: Option<SocketAddr>,
    /// Also answer `/metrics` and `/health` on the WAMP listeners (off by default: they
    /// would tell anyone who can connect every realm's name and traffic).
    pub http_endpoints_on_wamp_port: bool,
    /// Period of the per-shard summary log line; None = off.
    pub summary_interval: Option<Duration>,
    pub router: RouterConfig,
}

impl Config {
    /// The built-in defaults (what `shardbar` with no arguments runs).
    pub fn default_config() -> Config {
        // The empty file is valid: `validate` tests say so (`defaults_listen_on_8080_with_realm1`).
        validate::config(file::FileConfig::default(), BUILT_IN, Path::new("")).expect("defaults are valid")
    }

    /// Parse and validate config-file `text` on its own (no command-line flags laid over
    /// it); `source` names it in errors. The entry point for tools and the config fuzz
    /// target (`tests/fuzz`); the router itself goes through [`Config::load`]. Relative
    /// paths in it are taken relative to `source`'s directory.
    pub fn from_toml(text: &str, source: &str) -> Result<Config, ConfigError> {
        validate::config(file::parse(text, source)?, source, base_dir(Path::new(source)))
    }

    /// Load the file named in `flags` (if any), lay the other flags over it, and validate.
    /// Relative paths in the file are taken relative to its directory.
    pub fn load(flags: &RunFlags) -> Result<Config, ConfigError> {
        let (mut raw, source, base) = match &flags.config {
            Some(path) => (file::read(path)?, path.display().to_string(), base_dir(path)),
            None => (file::FileConfig::default(), BUILT_IN.to_owned(), Path::new("")),
        };
        flags.apply_to(&mut raw);
        validate::config(raw, &source, base)
    }
}

/// The directory relative paths in the config file at `path` are taken from (empty: the
/// working directory, for a file named without one).
fn base_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}
