//! Configuration: the TOML file and the command line, parsed into validated types.
//!
//! "Parse, don't validate": [`Config::load`] either returns a [`Config`] whose every field
//! is in range, or a [`ConfigError`] naming the file, the key, what was expected and what
//! was found. Nothing downstream re-checks.
//!
//! With no file and no flags the router listens on 127.0.0.1:8080 (WebSocket and RawSocket
//! on one port, JSON/MessagePack/CBOR), serves realm `realm1` to anonymous clients with
//! every permission, and runs one shard per core.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::limits;
use crate::proto::realm::{RealmConfig, RouterConfig, SlowConsumerPolicy};
use crate::proto::wire::Serializer;
use crate::proto::wire::uri;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// A bad configuration: where, which key, what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or "command line").
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
}

/// When the router sends RawSocket PINGs (WebSocket pings are always sent: RFC 6455 makes
/// every client answer them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawSocketPing {
    /// Only to peers that showed they speak PING/PONG (they sent a PING). Half-open
    /// connections are still reaped by TCP keepalive. Default: some clients (Autobahn|Python
    /// asyncio) drop the connection when they receive a RawSocket PING.
    Auto,
    /// To every RawSocket peer; no answer within `ping_timeout_ms` closes the connection.
    Always,
    /// Never; TCP keepalive only.
    Never,
}

/// Runtime limits (the core's limits live in `RouterConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeLimits {
    pub write_deadline: Duration,
    /// None = liveness pings (and TCP keepalive) off.
    pub ping_interval: Option<Duration>,
    pub ping_timeout: Duration,
    pub rawsocket_ping: RawSocketPing,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Number of shards (resolved: never 0).
    pub shards: usize,
    pub spin_before_park: Duration,
    pub log: String,
    pub listeners: Vec<ListenerConfig>,
    pub limits: RuntimeLimits,
    /// Optional separate listener for `/metrics` and `/health`.
    pub metrics_addr: Option<SocketAddr>,
    /// Period of the per-shard summary log line; None = off.
    pub summary_interval: Option<Duration>,
    pub router: RouterConfig,
}

// ---- the file's shape ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    router: Option<FileRouter>,
    #[serde(default)]
    listener: Vec<FileListener>,
    limits: Option<FileLimits>,
    metrics: Option<FileMetrics>,
    #[serde(default)]
    realm: Vec<FileRealm>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRouter {
    shards: Option<i64>,
    spin_before_park_us: Option<i64>,
    log: Option<String>,
    auto_create_realms: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    address: Option<String>,
    path: Option<String>,
    serializers: Option<Vec<String>>,
    websocket_testee: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    message_size_max: Option<i64>,
    pending_bytes_max: Option<i64>,
    write_deadline_ms: Option<i64>,
    ping_interval_ms: Option<i64>,
    ping_timeout_ms: Option<i64>,
    rawsocket_ping: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    address: Option<String>,
    summary_interval_s: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRealm {
    name: String,
    strict_uri: Option<bool>,
    slow_consumer: Option<String>,
    anonymous: Option<bool>,
}

/// Command-line settings that override the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub shards: Option<String>,
    pub log: Option<String>,
}

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Overrides),
    Help,
    Version,
}

pub const USAGE: &str = "\
shardbar — a thread-per-core WAMP v2 router

USAGE:
    shardbar [--config FILE] [--listen ADDR] [--shards N] [--log LEVEL]

With no options: listen on 127.0.0.1:8080 (WebSocket and RawSocket on one port;
JSON, MessagePack and CBOR), realm `realm1`, anonymous, every permission, one
shard per core.

OPTIONS:
    --config FILE    TOML configuration (see README.md, \"Configuration\")
    --listen ADDR    TCP address for WebSocket+RawSocket (replaces the file's first
                     TCP listener), e.g. 127.0.0.1:9000
    --shards N       number of shards (one pinned thread each); 0 = one per core
    --log LEVEL      error, warn, info (default), debug, trace, or a tracing filter
    -h, --help       this text
    -V, --version    the version

SIGNALS:
    SIGINT/SIGTERM   stop accepting, send GOODBYE wamp.close.system_shutdown to every
                     session, flush, exit 0 (within a few seconds)

HOST SETUP:
    glommio needs RLIMIT_MEMLOCK >= 512 KiB (`ulimit -l`); see tuning/README.md.
";

/// Parse the command line (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, ConfigError> {
    let mut o = Overrides::default();
    let mut it = args.into_iter();
    let err = |key: &str, message: String| ConfigError { source: "command line".into(), key: key.into(), message };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, ConfigError> {
            inline.clone().or_else(|| it.next()).ok_or_else(|| err(name, "expected a value".into()))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--config" => o.config = Some(PathBuf::from(value("--config")?)),
            "--listen" => o.listen = Some(value("--listen")?),
            "--shards" => o.shards = Some(value("--shards")?),
            "--log" => o.log = Some(value("--log")?),
            other => return Err(err(other, "unknown option (see --help)".into())),
        }
    }
    Ok(Command::Run(o))
}

impl Config {
    /// The built-in defaults (what `shardbar` with no arguments runs).
    pub fn default_config() -> Config {
        Config::from_file(FileConfig::default(), "built-in defaults").expect("defaults are valid")
    }

    /// Load the file named in `o` (if any) and apply the command-line overrides.
    pub fn load(o: &Overrides) -> Result<Config, ConfigError> {
        let mut file = FileConfig::default();
        let mut source = "built-in defaults".to_owned();
        if let Some(path) = &o.config {
            source = path.display().to_string();
            file = read_file(path)?;
        }
        let cli = |key: &str, message: String| ConfigError { source: "command line".into(), key: key.into(), message };
        if let Some(listen) = &o.listen {
            let addr: SocketAddr = listen
                .parse()
                .map_err(|_| cli("--listen", format!("expected an address like 127.0.0.1:8080, found {listen:?}")))?;
            match file.listener.iter_mut().find(|l| l.path.is_none()) {
                Some(l) => l.address = Some(addr.to_string()),
                None => file.listener.insert(
                    0,
                    FileListener {
                        address: Some(addr.to_string()),
                        path: None,
                        serializers: None,
                        websocket_testee: None,
                    },
                ),
            }
        }
        if let Some(n) = &o.shards {
            let n: i64 = n.parse().map_err(|_| cli("--shards", format!("expected a number, found {n:?}")))?;
            file.router.get_or_insert_with(Default::default).shards = Some(n);
        }
        if let Some(level) = &o.log {
            file.router.get_or_insert_with(Default::default).log = Some(level.clone());
        }
        Config::from_file(file, &source)
    }

    fn from_file(f: FileConfig, source: &str) -> Result<Config, ConfigError> {
        let err = |key: &str, message: String| ConfigError { source: source.to_owned(), key: key.to_owned(), message };
        let range = |key: &str, v: i64, lo: i64, hi: i64| -> Result<i64, ConfigError> {
            if v < lo || v > hi {
                Err(err(key, format!("expected an integer from {lo} to {hi}, found {v}")))
            } else {
                Ok(v)
            }
        };
        let router = f.router.unwrap_or_default();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let shards = match router.shards {
            None | Some(0) => cores.min(limits::SHARDS_MAX),
            Some(n) => range("router.shards", n, 0, limits::SHARDS_MAX as i64)? as usize,
        };
        let spin = range("router.spin_before_park_us", router.spin_before_park_us.unwrap_or(0), 0, 1_000_000)?;
        let log = router.log.unwrap_or_else(|| "info".into());
        if log.trim().is_empty() {
            return Err(err("router.log", "expected a level (error, warn, info, debug, trace) or a filter".into()));
        }

        let lim = f.limits.unwrap_or_default();
        let message_size_max = range(
            "limits.message_size_max",
            lim.message_size_max.unwrap_or(limits::MESSAGE_SIZE_MAX_BYTES as i64),
            512,
            limits::MESSAGE_SIZE_CEILING_BYTES as i64,
        )? as usize;
        let pending_bytes_max = range(
            "limits.pending_bytes_max",
            lim.pending_bytes_max.unwrap_or(limits::PENDING_BYTES_MAX as i64),
            64 * 1024,
            limits::PENDING_BYTES_CEILING as i64,
        )? as usize;
        let write_deadline_ms = range(
            "limits.write_deadline_ms",
            lim.write_deadline_ms.unwrap_or(limits::WRITE_DEADLINE_MS as i64),
            100,
            600_000,
        )?;
        let ping_interval_ms = lim.ping_interval_ms.unwrap_or(limits::PING_INTERVAL_MS as i64);
        if ping_interval_ms != 0 {
            range("limits.ping_interval_ms", ping_interval_ms, 100, 3_600_000)
                .map_err(|e| ConfigError { message: format!("{} (or 0 to turn pings off)", e.message), ..e })?;
        }
        let ping_timeout_ms = range(
            "limits.ping_timeout_ms",
            lim.ping_timeout_ms.unwrap_or(limits::PING_TIMEOUT_MS as i64),
            100,
            600_000,
        )?;
        let rawsocket_ping = match lim.rawsocket_ping.as_deref() {
            None | Some("auto") => RawSocketPing::Auto,
            Some("always") => RawSocketPing::Always,
            Some("never") => RawSocketPing::Never,
            Some(other) => {
                let msg = format!("expected \"auto\", \"always\" or \"never\", found {other:?}");
                return Err(err("limits.rawsocket_ping", msg));
            }
        };

        let mut listeners = Vec::new();
        let raw_listeners = if f.listener.is_empty() {
            vec![FileListener {
                address: Some(DEFAULT_LISTEN.into()),
                path: None,
                serializers: None,
                websocket_testee: None,
            }]
        } else {
            f.listener
        };
        for (i, l) in raw_listeners.into_iter().enumerate() {
            let key = |k: &str| format!("listener[{i}].{k}");
            let addr = match (l.address, l.path) {
                (Some(a), None) => ListenAddr::Tcp(a.parse().map_err(|_| {
                    err(&key("address"), format!("expected an address like 127.0.0.1:8080, found {a:?}"))
                })?),
                (None, Some(p)) => {
                    if p.is_empty() {
                        return Err(err(&key("path"), "expected a socket path, found an empty string".into()));
                    }
                    ListenAddr::Unix(PathBuf::from(p))
                }
                (Some(_), Some(_)) => {
                    return Err(err(
                        &key("address"),
                        "expected either `address` (TCP) or `path` (Unix socket), not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(err(&key("address"), "expected `address` (TCP) or `path` (Unix socket)".into()));
                }
            };
            let serializers = match l.serializers {
                None => Serializer::ALL.to_vec(),
                Some(names) => {
                    let mut out = Vec::new();
                    for n in &names {
                        let s = Serializer::from_name(n).ok_or_else(|| {
                            err(&key("serializers"), format!("expected json, msgpack or cbor, found {n:?}"))
                        })?;
                        if !out.contains(&s) {
                            out.push(s);
                        }
                    }
                    if out.is_empty() {
                        return Err(err(&key("serializers"), "expected at least one serializer".into()));
                    }
                    out
                }
            };
            let websocket_testee = l.websocket_testee.unwrap_or(false);
            if websocket_testee && matches!(addr, ListenAddr::Unix(_)) {
                return Err(err(&key("websocket_testee"), "a WebSocket testee needs a TCP `address`".into()));
            }
            listeners.push(ListenerConfig { addr, serializers, websocket_testee });
        }

        let metrics = f.metrics.unwrap_or_default();
        let metrics_addr = match metrics.address {
            None => None,
            Some(a) => Some(a.parse().map_err(|_| {
                err("metrics.address", format!("expected an address like 127.0.0.1:9100, found {a:?}"))
            })?),
        };
        let summary = range("metrics.summary_interval_s", metrics.summary_interval_s.unwrap_or(10), 0, 86_400)?;

        let mut realms = Vec::new();
        for (i, r) in f.realm.into_iter().enumerate() {
            let key = |k: &str| format!("realm[{i}].{k}");
            if !uri::is_valid(&r.name, false, false) {
                return Err(err(&key("name"), format!("expected a realm URI like \"realm1\", found {:?}", r.name)));
            }
            if realms.iter().any(|x: &RealmConfig| x.name == r.name) {
                return Err(err(&key("name"), format!("realm {:?} is defined twice", r.name)));
            }
            let slow_consumer = match r.slow_consumer.as_deref() {
                None => SlowConsumerPolicy::Disconnect,
                Some(s) => SlowConsumerPolicy::parse(s).ok_or_else(|| {
                    err(&key("slow_consumer"), format!("expected \"disconnect\" or \"drop\", found {s:?}"))
                })?,
            };
            realms.push(RealmConfig {
                name: r.name,
                strict_uri: r.strict_uri.unwrap_or(false),
                slow_consumer,
                anonymous: r.anonymous.unwrap_or(true),
            });
        }
        let auto_create = router.auto_create_realms.unwrap_or(false);
        if realms.is_empty() {
            realms.push(RealmConfig::new("realm1"));
        }

        Ok(Config {
            shards,
            spin_before_park: Duration::from_micros(spin as u64),
            log,
            listeners,
            limits: RuntimeLimits {
                write_deadline: Duration::from_millis(write_deadline_ms as u64),
                ping_interval: (ping_interval_ms > 0).then(|| Duration::from_millis(ping_interval_ms as u64)),
                ping_timeout: Duration::from_millis(ping_timeout_ms as u64),
                rawsocket_ping,
            },
            metrics_addr,
            summary_interval: (summary > 0).then(|| Duration::from_secs(summary as u64)),
            router: RouterConfig {
                realms,
                auto_create_realms: auto_create,
                realm_template: RealmConfig::new("*"),
                pending_bytes_max,
                message_size_max,
            },
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source: source.clone(),
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    toml::from_str(&text).map_err(|e| {
        // toml's message names the key and the line; keep it, minus trailing whitespace.
        ConfigError { source, key: String::new(), message: e.to_string().trim_end().replace('\n', " | ") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_str(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError {
            source: "test.toml".into(),
            key: String::new(),
            message: e.to_string(),
        })?;
        Config::from_file(file, "test.toml")
    }

    #[test]
    fn defaults_listen_on_8080_with_realm1() {
        let c = Config::default_config();
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].addr, ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.listeners[0].serializers, Serializer::ALL.to_vec());
        assert_eq!(c.router.realms[0].name, "realm1");
        assert!(c.router.realms[0].anonymous);
        assert!(c.shards >= 1);
        assert!(c.limits.ping_interval.is_some(), "liveness pings are on by default");
        assert_eq!(c.limits.rawsocket_ping, RawSocketPing::Auto);
    }

    #[test]
    fn errors_name_file_key_and_expectation() {
        let e = from_str("[limits]\npending_bytes_max = 10\n").unwrap_err();
        assert_eq!(e.key, "limits.pending_bytes_max");
        assert!(e.to_string().starts_with("test.toml: key `limits.pending_bytes_max`: expected an integer"), "{e}");
        let e = from_str("[[realm]]\nname = \"r\"\nslow_consumer = \"maybe\"\n").unwrap_err();
        assert_eq!(e.key, "realm[0].slow_consumer");
        let e = from_str("[[listener]]\naddress = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.key, "listener[0].address");
        let e = from_str("[router]\nshardz = 2\n").unwrap_err();
        assert!(e.message.contains("shardz"), "{e}");
        let e = from_str("[router]\nshards = \"two\"\n").unwrap_err();
        assert!(e.message.contains("shards"), "{e}");
    }

    #[test]
    fn full_file_parses() {
        let c = from_str(
            r#"
            [router]
            shards = 2
            spin_before_park_us = 50
            auto_create_realms = true
            [[listener]]
            address = "127.0.0.1:9000"
            serializers = ["msgpack"]
            [[listener]]
            path = "/tmp/sb.sock"
            [limits]
            pending_bytes_max = 1048576
            ping_interval_ms = 0
            rawsocket_ping = "always"
            [metrics]
            address = "127.0.0.1:9100"
            [[realm]]
            name = "prod"
            strict_uri = true
            slow_consumer = "drop"
            "#,
        )
        .unwrap();
        assert_eq!(c.shards, 2);
        assert_eq!(c.spin_before_park, Duration::from_micros(50));
        assert_eq!(c.listeners[1].addr, ListenAddr::Unix("/tmp/sb.sock".into()));
        assert_eq!(c.listeners[0].serializers, vec![Serializer::MsgPack]);
        assert_eq!(c.limits.ping_interval, None);
        assert_eq!(c.limits.rawsocket_ping, RawSocketPing::Always);
        assert_eq!(c.router.pending_bytes_max, 1 << 20);
        assert!(c.router.auto_create_realms);
        assert_eq!(c.router.realms[0].slow_consumer, SlowConsumerPolicy::Drop);
    }

    #[test]
    fn command_line_overrides() {
        let Command::Run(o) = parse_args(["--listen".into(), "127.0.0.1:9999".into(), "--shards=3".into()]).unwrap()
        else {
            panic!()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.listeners[0].addr, ListenAddr::Tcp("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(c.shards, 3);
        assert_eq!(parse_args(["--help".into()]).unwrap(), Command::Help);
        let e = parse_args(["--bogus".into()]).unwrap_err();
        assert_eq!(e.key, "--bogus");
        let Command::Run(o) = parse_args(["--shards".into(), "lots".into()]).unwrap() else { panic!() };
        assert_eq!(Config::load(&o).unwrap_err().key, "--shards");
    }
}
