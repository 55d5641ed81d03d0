//! Validation: the raw file shape into a [`Config`], or the first key that is wrong.
//!
//! Sections are checked in file order (router, limits, listeners, metrics, realms), each by
//! one function that returns its typed part. Defaults are applied here; every range comes
//! from `limits.rs` ("config ranges"). Errors say the source, the key path, what was
//! expected and what was found. No I/O, and nothing here knows about the command line: by
//! now flags are already laid over the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::auth::{self, AuthCheck};
use super::file::{FileConfig, FileHistory, FileLimits, FileListener, FileMetrics, FileRealm, FileRouter, FileTls};
use super::roles::{self, RolesCheck};
use super::{Config, ConfigError, DEFAULT_LISTEN, ListenAddr, ListenerConfig, RawSocketPing, RuntimeLimits, TlsConfig};
use crate::limits;
use crate::proto::auth::ListenerAuth;
use crate::proto::realm::{CallTimeoutUnit, HistoryEntry, Liveness, RealmConfig, RouterConfig, SlowConsumerPolicy};
use crate::proto::wire::Serializer;
use crate::proto::wire::uri;
use crate::proto::wire::uri::MatchPolicy;

/// Validate `f`; `source` (the file's path) names it in errors, and relative paths in it
/// are resolved against `base` (the file's directory).
pub(super) fn config(f: FileConfig, source: &str, base: &Path) -> Result<Config, ConfigError> {
    let c = Check { source, base };
    let router = f.router.unwrap_or_default();
    let (shards, spin_before_park, log) = router_section(&c, &router)?;
    let (limits, sizes) = limits_section(&c, f.limits.unwrap_or_default())?;
    let mut raw_listeners = f.listener;
    let auth_tables: Vec<_> = raw_listeners.iter_mut().map(|l| l.auth.take()).collect();
    let listeners = listeners(&c, raw_listeners)?;
    let metrics = metrics_section(&c, f.metrics.unwrap_or_default())?;
    let mut realms = realms(&c, f.realm)?;
    if realms.is_empty() {
        realms.push(RealmConfig::new("realm1"));
    }
    let auto_create_realms = router.auto_create_realms.unwrap_or(false);
    let ac = AuthCheck { source, realms: &realms, auto_create_realms };
    let mut auth = auth::auth_config(&ac, auth_tables)?;
    // The default listener (no `[[listener]]` in the file) has no auth table.
    auth.listeners.resize_with(listeners.len(), ListenerAuth::anonymous_only);
    Ok(Config {
        source: source.to_owned(),
        shards,
        spin_before_park,
        log,
        listeners,
        limits,
        metrics_addr: metrics.addr,
        http_endpoints_on_wamp_port: metrics.http_endpoints_on_wamp_port,
        summary_interval: metrics.summary_interval,
        router: RouterConfig {
            realms,
            auto_create_realms,
            realm_template: RealmConfig::new("*"),
            pending_bytes_max: sizes.pending_bytes_max,
            message_size_max: sizes.message_size_max,
            liveness: sizes.liveness,
            auth: Arc::new(auth),
        },
    })
}

/// Builds errors that name the source, and resolves the paths in it.
struct Check<'a> {
    source: &'a str,
    /// The directory relative paths are taken from.
    base: &'a Path,
}

impl Check<'_> {
    fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError { source: self.source.to_owned(), key: key.to_owned(), message }
    }

    /// `v` if it is in `lo..=hi`.
    fn range(&self, key: &str, v: i64, lo: i64, hi: i64) -> Result<i64, ConfigError> {
        if v < lo || v > hi {
            Err(self.err(key, format!("expected an integer from {lo} to {hi}, found {v}")))
        } else {
            Ok(v)
        }
    }

    fn addr(&self, key: &str, a: &str, example: &str) -> Result<SocketAddr, ConfigError> {
        a.parse().map_err(|_| self.err(key, format!("expected an address like {example}, found {a:?}")))
    }

    /// A file path (`what` says of what, for the error), relative ones resolved against the
    /// config file's directory.
    fn path(&self, key: &str, p: Option<String>, what: &str) -> Result<PathBuf, ConfigError> {
        match p {
            None => Err(self.err(key, format!("expected the path of {what}"))),
            Some(p) if p.is_empty() => {
                Err(self.err(key, format!("expected the path of {what}, found an empty string")))
            }
            Some(p) => Ok(self.base.join(p)),
        }
    }
}

/// `[router]`: shards (0 = one per core), spin before park, log filter.
fn router_section(c: &Check, r: &FileRouter) -> Result<(usize, Duration, String), ConfigError> {
    let shards = match r.shards {
        None | Some(0) => {
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            cores.min(limits::SHARDS_MAX)
        }
        Some(n) => c.range("router.shards", n, 0, limits::SHARDS_MAX as i64)? as usize,
    };
    let spin_us = c.range(
        "router.spin_before_park_us",
        r.spin_before_park_us.unwrap_or(0),
        0,
        limits::SPIN_BEFORE_PARK_CEILING_US as i64,
    )?;
    let log = r.log.clone().unwrap_or_else(|| "info".into());
    if log.trim().is_empty() {
        return Err(c.err("router.log", "expected a level (error, warn, info, debug, trace) or a filter".into()));
    }
    Ok((shards, Duration::from_micros(spin_us as u64), log))
}

/// The `[limits]` values the core enforces (they go into `RouterConfig`).
struct CoreSizes {
    message_size_max: usize,
    pending_bytes_max: usize,
    liveness: Liveness,
}

/// `[limits]`: sizes for the core, deadlines and pings for the runtime.
fn limits_section(c: &Check, l: FileLimits) -> Result<(RuntimeLimits, CoreSizes), ConfigError> {
    let message_size_max = c.range(
        "limits.message_size_max",
        l.message_size_max.unwrap_or(limits::MESSAGE_SIZE_MAX_BYTES as i64),
        limits::MESSAGE_SIZE_FLOOR_BYTES as i64,
        limits::MESSAGE_SIZE_CEILING_BYTES as i64,
    )? as usize;
    let pending_bytes_max = c.range(
        "limits.pending_bytes_max",
        l.pending_bytes_max.unwrap_or(limits::PENDING_BYTES_MAX as i64),
        limits::PENDING_BYTES_FLOOR as i64,
        limits::PENDING_BYTES_CEILING as i64,
    )? as usize;
    let write_deadline_ms = c.range(
        "limits.write_deadline_ms",
        l.write_deadline_ms.unwrap_or(limits::WRITE_DEADLINE_MS as i64),
        limits::WRITE_DEADLINE_FLOOR_MS as i64,
        limits::WRITE_DEADLINE_CEILING_MS as i64,
    )?;
    let ping_interval_ms = l.ping_interval_ms.unwrap_or(limits::PING_INTERVAL_MS as i64);
    if ping_interval_ms != 0 {
        let (lo, hi) = (limits::PING_INTERVAL_FLOOR_MS as i64, limits::PING_INTERVAL_CEILING_MS as i64);
        c.range("limits.ping_interval_ms", ping_interval_ms, lo, hi)
            .map_err(|e| ConfigError { message: format!("{} (or 0 to turn pings off)", e.message), ..e })?;
    }
    let ping_timeout_ms = c.range(
        "limits.ping_timeout_ms",
        l.ping_timeout_ms.unwrap_or(limits::PING_TIMEOUT_MS as i64),
        limits::PING_TIMEOUT_FLOOR_MS as i64,
        limits::PING_TIMEOUT_CEILING_MS as i64,
    )?;
    let rawsocket_ping = match l.rawsocket_ping.as_deref() {
        None | Some("auto") => RawSocketPing::Auto,
        Some("always") => RawSocketPing::Always,
        Some("never") => RawSocketPing::Never,
        Some(other) => {
            let msg = format!("expected \"auto\", \"always\" or \"never\", found {other:?}");
            return Err(c.err("limits.rawsocket_ping", msg));
        }
    };
    let runtime = admission_limits(c, &l, Duration::from_millis(write_deadline_ms as u64))?;
    let liveness = Liveness {
        hello_timeout: Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS),
        ping_interval: (ping_interval_ms > 0).then(|| Duration::from_millis(ping_interval_ms as u64)),
        ping_timeout: Duration::from_millis(ping_timeout_ms as u64),
        rawsocket_ping,
    };
    Ok((runtime, CoreSizes { message_size_max, pending_bytes_max, liveness }))
}

/// `[limits]` caps on connections and pre-session bytes (the runtime's admission), with
/// the write deadline already checked.
fn admission_limits(c: &Check, l: &FileLimits, write_deadline: Duration) -> Result<RuntimeLimits, ConfigError> {
    let count = |key: &str, v: Option<i64>, default: usize, lo: usize, hi: usize| {
        c.range(key, v.unwrap_or(default as i64), lo as i64, hi as i64).map(|v| v as usize)
    };
    let max_connections = count(
        "limits.max_connections",
        l.max_connections,
        limits::MAX_CONNECTIONS,
        1,
        limits::MAX_CONNECTIONS_CEILING,
    )?;
    let per_ip = count(
        "limits.max_connections_per_ip",
        l.max_connections_per_ip,
        limits::MAX_CONNECTIONS_PER_IP,
        0,
        limits::MAX_CONNECTIONS_CEILING,
    )
    .map_err(|e| ConfigError { message: format!("{} (0 = no per-address cap)", e.message), ..e })?;
    let max_handshakes_per_shard = count(
        "limits.max_handshakes_per_shard",
        l.max_handshakes_per_shard,
        limits::MAX_HANDSHAKES_PER_SHARD,
        1,
        limits::MAX_HANDSHAKES_PER_SHARD_CEILING,
    )?;
    let pre_session_bytes_max = count(
        "limits.pre_session_bytes_max",
        l.pre_session_bytes_max,
        limits::PRE_SESSION_BYTES_MAX,
        limits::PRE_SESSION_BYTES_FLOOR,
        limits::PRE_SESSION_BYTES_CEILING,
    )?;
    Ok(RuntimeLimits {
        write_deadline,
        max_connections,
        max_connections_per_ip: (per_ip > 0).then_some(per_ip),
        max_handshakes_per_shard,
        pre_session_bytes_max,
    })
}

/// `[[listener]]`s; none means one TCP listener on [`DEFAULT_LISTEN`].
fn listeners(c: &Check, raw: Vec<FileListener>) -> Result<Vec<ListenerConfig>, ConfigError> {
    let raw = if raw.is_empty() {
        vec![FileListener { address: Some(DEFAULT_LISTEN.into()), ..FileListener::default() }]
    } else {
        raw
    };
    raw.into_iter().enumerate().map(|(i, l)| listener(c, i, l)).collect()
}

/// `listener[i]`: exactly one of `address` and `path`, known serializers.
fn listener(c: &Check, i: usize, l: FileListener) -> Result<ListenerConfig, ConfigError> {
    let key = |k: &str| format!("listener[{i}].{k}");
    let addr = match (l.address, l.path) {
        (Some(a), None) => ListenAddr::Tcp(c.addr(&key("address"), &a, DEFAULT_LISTEN)?),
        (None, Some(p)) if p.is_empty() => {
            return Err(c.err(&key("path"), "expected a socket path, found an empty string".into()));
        }
        (None, Some(p)) => ListenAddr::Unix(PathBuf::from(p)),
        (Some(_), Some(_)) => {
            let msg = "expected either `address` (TCP) or `path` (Unix socket), not both";
            return Err(c.err(&key("address"), msg.into()));
        }
        (None, None) => {
            return Err(c.err(&key("address"), "expected `address` (TCP) or `path` (Unix socket)".into()));
        }
    };
    let serializers = match l.serializers {
        None => Serializer::ALL.to_vec(),
        Some(names) => {
            let mut out = Vec::new();
            for n in &names {
                let s = Serializer::from_name(n).ok_or_else(|| {
                    c.err(&key("serializers"), format!("expected json, msgpack or cbor, found {n:?}"))
                })?;
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            if out.is_empty() {
                return Err(c.err(&key("serializers"), "expected at least one serializer".into()));
            }
            out
        }
    };
    let websocket_testee = l.websocket_testee.unwrap_or(false);
    if websocket_testee && matches!(addr, ListenAddr::Unix(_)) {
        return Err(c.err(&key("websocket_testee"), "a WebSocket testee needs a TCP `address`".into()));
    }
    let tls = l.tls.map(|t| tls(c, i, t)).transpose()?;
    Ok(ListenerConfig { addr, serializers, websocket_testee, tls })
}

/// `listener[i].tls`: the certificate chain and key (both required), the optional client
/// CA, and whether plaintext is served too (default: not). The files are not read here.
fn tls(c: &Check, i: usize, t: FileTls) -> Result<TlsConfig, ConfigError> {
    let key = |k: &str| format!("listener[{i}].tls.{k}");
    let cert = c.path(&key("cert"), t.cert, "a PEM certificate chain (the listener's certificate first)")?;
    let private_key = c.path(&key("key"), t.key, "the certificate's PEM private key")?;
    let client_ca = match t.client_ca {
        None => None,
        p => Some(c.path(&key("client_ca"), p, "PEM CA certificates to verify client certificates against")?),
    };
    Ok(TlsConfig { cert, key: private_key, client_ca, allow_plaintext: t.allow_plaintext.unwrap_or(false) })
}

/// The `[metrics]` section, validated.
struct MetricsSection {
    addr: Option<SocketAddr>,
    http_endpoints_on_wamp_port: bool,
    summary_interval: Option<Duration>,
}

/// `[metrics]`: the optional listener, whether the WAMP port serves `/metrics` and
/// `/health` too (off unless set), and the summary period (0 = off).
fn metrics_section(c: &Check, m: FileMetrics) -> Result<MetricsSection, ConfigError> {
    let addr = match m.address {
        None => None,
        Some(a) => Some(c.addr("metrics.address", &a, "127.0.0.1:9100")?),
    };
    let summary_s = c.range(
        "metrics.summary_interval_s",
        m.summary_interval_s.unwrap_or(limits::SUMMARY_INTERVAL_S as i64),
        0,
        limits::SUMMARY_INTERVAL_CEILING_S as i64,
    )?;
    Ok(MetricsSection {
        addr,
        http_endpoints_on_wamp_port: m.http_endpoints_on_wamp_port.unwrap_or(false),
        summary_interval: (summary_s > 0).then(|| Duration::from_secs(summary_s as u64)),
    })
}

/// `[[realm]]`s: valid, distinct names and known policies.
fn realms(c: &Check, raw: Vec<FileRealm>) -> Result<Vec<RealmConfig>, ConfigError> {
    let mut realms: Vec<RealmConfig> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("realm[{i}].{k}");
        if !uri::is_valid(&r.name, false, false) {
            return Err(c.err(&key("name"), format!("expected a realm URI like \"realm1\", found {:?}", r.name)));
        }
        if realms.iter().any(|x| x.name == r.name) {
            return Err(c.err(&key("name"), format!("realm {:?} is defined twice", r.name)));
        }
        let slow_consumer = match r.slow_consumer.as_deref() {
            None => SlowConsumerPolicy::Disconnect,
            Some(s) => SlowConsumerPolicy::parse(s).ok_or_else(|| {
                c.err(&key("slow_consumer"), format!("expected \"disconnect\" or \"drop\", found {s:?}"))
            })?,
        };
        let call_timeout_unit = match r.call_timeout_unit.as_deref() {
            None | Some("ms") => CallTimeoutUnit::Millis,
            Some("s") => CallTimeoutUnit::Seconds,
            Some(u) => {
                return Err(c.err(
                    &key("call_timeout_unit"),
                    format!("expected \"ms\" (the spec) or \"s\" (Crossbar), found {u:?}"),
                ));
            }
        };
        let timeout_ms = |k: &str, v: Option<i64>| -> Result<Option<Duration>, ConfigError> {
            match v {
                None | Some(0) => Ok(None),
                Some(ms) => {
                    Ok(Some(Duration::from_millis(c.range(&key(k), ms, 0, limits::CALL_TIMEOUT_CEILING_MS)? as u64)))
                }
            }
        };
        realms.push(RealmConfig {
            name: r.name,
            strict_uri: r.strict_uri.unwrap_or(false),
            slow_consumer,
            anonymous: r.anonymous.unwrap_or(true),
            roles: roles::realm_roles(&RolesCheck { source: c.source }, &key("role"), r.role)?,
            call_timeout_unit,
            call_timeout_default: timeout_ms("call_timeout_default_ms", r.call_timeout_default_ms)?,
            call_timeout_max: timeout_ms("call_timeout_max_ms", r.call_timeout_max_ms)?,
            meta_api: r.meta_api.unwrap_or(true),
            history: history(c, &key("history"), r.history.unwrap_or_default())?,
            route_bytes_max: route_bytes_max(c, &key("route_bytes_max"), r.route_bytes_max)?,
        });
    }
    Ok(realms)
}

/// `route_bytes_max`: the realm's route budget, within the floor and ceiling.
fn route_bytes_max(c: &Check, key: &str, v: Option<i64>) -> Result<u64, ConfigError> {
    let Some(v) = v else { return Ok(limits::REALM_ROUTE_BYTES_MAX) };
    let (lo, hi) = (limits::REALM_ROUTE_BYTES_FLOOR as i64, limits::REALM_ROUTE_BYTES_CEILING as i64);
    Ok(c.range(key, v, lo, hi)? as u64)
}

/// `[[realm.history]]`s: a valid URI for its match policy, each (uri, match) once, a limit
/// within the ceiling.
fn history(c: &Check, prefix: &str, raw: Vec<FileHistory>) -> Result<Vec<HistoryEntry>, ConfigError> {
    if raw.len() > limits::HISTORY_ENTRIES_PER_REALM_MAX {
        let max = limits::HISTORY_ENTRIES_PER_REALM_MAX;
        return Err(c.err(prefix, format!("expected at most {max} entries, found {}", raw.len())));
    }
    let mut out: Vec<HistoryEntry> = Vec::with_capacity(raw.len());
    for (i, h) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("{prefix}[{i}].{k}");
        let policy = match h.policy.as_deref() {
            None => MatchPolicy::Exact,
            Some(m) => MatchPolicy::parse(m).ok_or_else(|| {
                c.err(&key("match"), format!("expected \"exact\", \"prefix\" or \"wildcard\", found {m:?}"))
            })?,
        };
        let Some(u) = h.uri else {
            return Err(c.err(&key("uri"), "expected the topic URI (pattern) to keep events of".to_owned()));
        };
        if !uri::is_valid_for(&u, policy, false) || uri::is_reserved(&u) {
            return Err(c.err(
                &key("uri"),
                format!("expected a topic URI (not wamp.*) valid for match \"{}\", found {u:?}", policy.as_str()),
            ));
        }
        let limit = match h.limit {
            None => limits::HISTORY_LIMIT_DEFAULT,
            Some(n) => c.range(&key("limit"), n, 1, limits::HISTORY_LIMIT_CEILING as i64)? as usize,
        };
        if out.iter().any(|e| *e.uri == *u && e.policy == policy) {
            return Err(c.err(&key("uri"), format!("{u:?} with match \"{}\" is listed twice", policy.as_str())));
        }
        out.push(HistoryEntry { uri: Arc::from(u), policy, limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::file;
    use super::*;

    fn from_str(text: &str) -> Result<Config, ConfigError> {
        config(file::parse(text, "test.toml")?, "test.toml", Path::new("/etc/sb"))
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
        assert!(c.router.liveness.ping_interval.is_some(), "liveness pings are on by default");
        assert_eq!(c.router.liveness.rawsocket_ping, RawSocketPing::Auto);
        assert_eq!(c.summary_interval, Some(Duration::from_secs(limits::SUMMARY_INTERVAL_S)));
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
    fn route_budget_defaults_and_validates() {
        // Goal: a realm's route budget defaults to limits.rs, can be set, and a value out
        // of range names the key and the bounds. Method: three realms, one bad file.
        let c = from_str("[[realm]]\nname = \"a\"\n[[realm]]\nname = \"b\"\nroute_bytes_max = 1048576\n").unwrap();
        assert_eq!(c.router.realms[0].route_bytes_max, limits::REALM_ROUTE_BYTES_MAX);
        assert_eq!(c.router.realms[1].route_bytes_max, 1 << 20);
        let e = from_str("[[realm]]\nname = \"a\"\nroute_bytes_max = 100\n").unwrap_err();
        assert_eq!(e.key, "realm[0].route_bytes_max");
        let (lo, hi) = (limits::REALM_ROUTE_BYTES_FLOOR, limits::REALM_ROUTE_BYTES_CEILING);
        assert_eq!(e.message, format!("expected an integer from {lo} to {hi}, found 100"));
    }

    #[test]
    fn history_entries_validate_with_the_key_named() {
        // Goal: `[[realm.history]]` parses with its defaults, and each wrong key is named.
        // Method: one good realm, then one bad file per key.
        let c = from_str(
            "[[realm]]\nname = \"r\"\n[[realm.history]]\nuri = \"a.b\"\n[[realm.history]]\nuri = \"a\"\nmatch = \"prefix\"\nlimit = 7\n",
        )
        .unwrap();
        let h = &c.router.realms[0].history;
        assert_eq!(h.len(), 2);
        assert_eq!((&*h[0].uri, h[0].policy, h[0].limit), ("a.b", MatchPolicy::Exact, limits::HISTORY_LIMIT_DEFAULT));
        assert_eq!((&*h[1].uri, h[1].policy, h[1].limit), ("a", MatchPolicy::Prefix, 7));
        let bad = |body: &str| from_str(&format!("[[realm]]\nname = \"r\"\n[[realm.history]]\n{body}")).unwrap_err();
        assert_eq!(bad("uri = \"a\"\nmatch = \"fuzzy\"\n").key, "realm[0].history[0].match");
        assert_eq!(bad("limit = 5\n").key, "realm[0].history[0].uri");
        assert_eq!(bad("uri = \"a..b\"\n").key, "realm[0].history[0].uri");
        assert_eq!(bad("uri = \"wamp.session.on_join\"\n").key, "realm[0].history[0].uri");
        let e = bad("uri = \"a\"\nlimit = 0\n");
        assert_eq!(e.key, "realm[0].history[0].limit");
        assert_eq!(e.message, format!("expected an integer from 1 to {}, found 0", limits::HISTORY_LIMIT_CEILING));
        assert_eq!(bad("uri = \"a\"\n[[realm.history]]\nuri = \"a\"\n").key, "realm[0].history[1].uri");
        assert!(bad("uri = \"a\"\nlimt = 3\n").message.contains("limt"));
    }

    #[test]
    fn range_errors_give_the_bounds_from_limits() {
        // Goal: the README's example message stays exact, with the bounds from limits.rs.
        // Method: one value below a floor, one above a ceiling, one non-zero ping interval.
        let e = from_str("[limits]\npending_bytes_max = 10\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.toml: key `limits.pending_bytes_max`: expected an integer from 65536 to 1073741824, found 10"
        );
        let e = from_str("[router]\nspin_before_park_us = 1000001\n").unwrap_err();
        assert_eq!(e.message, "expected an integer from 0 to 1000000, found 1000001");
        let e = from_str("[limits]\nping_interval_ms = 5\n").unwrap_err();
        assert_eq!(e.message, "expected an integer from 100 to 3600000, found 5 (or 0 to turn pings off)");
    }

    #[test]
    fn admission_limits_and_http_endpoints() {
        // Goal: the admission caps default to limits.rs, 0 turns the per-address cap off,
        // the WAMP port serves no /metrics unless opted in, and out-of-range values name the
        // key. Method: the built-in defaults, one file setting everything, three bad files.
        let c = Config::default_config();
        assert_eq!(c.limits.max_connections, limits::MAX_CONNECTIONS);
        assert_eq!(c.limits.max_connections_per_ip, None);
        assert_eq!(c.limits.max_handshakes_per_shard, limits::MAX_HANDSHAKES_PER_SHARD);
        assert_eq!(c.limits.pre_session_bytes_max, limits::PRE_SESSION_BYTES_MAX);
        assert!(!c.http_endpoints_on_wamp_port, "the built-in defaults keep /metrics off the WAMP port");
        let c = from_str(
            "[limits]\nmax_connections = 10\nmax_connections_per_ip = 3\nmax_handshakes_per_shard = 2\n\
             pre_session_bytes_max = 8192\n[metrics]\nhttp_endpoints_on_wamp_port = true\n",
        )
        .unwrap();
        assert_eq!(
            (c.limits.max_connections, c.limits.max_connections_per_ip, c.limits.max_handshakes_per_shard),
            (10, Some(3), 2)
        );
        assert_eq!(c.limits.pre_session_bytes_max, 8192);
        assert!(c.http_endpoints_on_wamp_port);
        let e = from_str("[limits]\nmax_connections = 0\n").unwrap_err();
        assert_eq!(e.key, "limits.max_connections");
        let e = from_str("[limits]\nmax_connections_per_ip = -1\n").unwrap_err();
        assert!(e.message.ends_with("(0 = no per-address cap)"), "{e}");
        let e = from_str("[limits]\npre_session_bytes_max = 100\n").unwrap_err();
        assert_eq!(e.message, "expected an integer from 4096 to 16777216, found 100");
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
        assert_eq!(c.router.liveness.ping_interval, None);
        assert_eq!(c.router.liveness.rawsocket_ping, RawSocketPing::Always);
        assert_eq!(c.router.pending_bytes_max, 1 << 20);
        assert!(c.router.auto_create_realms);
        assert_eq!(c.router.realms[0].slow_consumer, SlowConsumerPolicy::Drop);
    }

    #[test]
    fn listener_tls_paths_resolve_against_the_config_directory() {
        // Goal: `[listener.tls]` applies to the listener above it, relative paths are taken
        // from the config file's directory (absolute ones kept), `allow_plaintext` defaults to
        // false, a Unix listener may have TLS, and a listener without the table has none.
        // Method: one file with three listeners, validated with base directory /etc/sb.
        let c = from_str(
            r#"
            [[listener]]
            address = "127.0.0.1:8443"
            [listener.tls]
            cert = "certs/server.pem"
            key = "/keys/server.key"
            [[listener]]
            path = "/tmp/sb.sock"
            [listener.tls]
            cert = "s.pem"
            key = "s.key"
            client_ca = "ca.pem"
            allow_plaintext = true
            [[listener]]
            address = "127.0.0.1:8080"
            "#,
        )
        .unwrap();
        let tls = c.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.cert, PathBuf::from("/etc/sb/certs/server.pem"));
        assert_eq!(tls.key, PathBuf::from("/keys/server.key"));
        assert_eq!((tls.client_ca.as_ref(), tls.allow_plaintext), (None, false));
        let tls = c.listeners[1].tls.as_ref().unwrap();
        assert_eq!(tls.client_ca, Some(PathBuf::from("/etc/sb/ca.pem")));
        assert!(tls.allow_plaintext);
        assert_eq!(c.listeners[2].tls, None);
        assert_eq!(c.source, "test.toml");
    }

    #[test]
    fn listener_tls_errors_name_the_key() {
        // Goal: a missing or empty path, a wrong type or an unknown key in `[listener.tls]`
        // is an error naming the listener's key and what was expected.
        // Method: four bad files.
        let head = "[[listener]]\naddress = \"127.0.0.1:1\"\n[[listener]]\naddress = \"127.0.0.1:2\"\n[listener.tls]\n";
        let e = from_str(&format!("{head}key = \"k.pem\"\n")).unwrap_err();
        assert_eq!(e.key, "listener[1].tls.cert");
        assert!(e.message.starts_with("expected the path of a PEM certificate chain"), "{e}");
        let e = from_str(&format!("{head}cert = \"c.pem\"\nkey = \"\"\n")).unwrap_err();
        assert_eq!(e.key, "listener[1].tls.key");
        assert!(e.message.ends_with("found an empty string"), "{e}");
        let e = from_str(&format!("{head}cert = \"c\"\nkey = \"k\"\nclient_ca = \"\"\n")).unwrap_err();
        assert_eq!(e.key, "listener[1].tls.client_ca");
        let e = from_str(&format!("{head}cert = \"c\"\nkey = \"k\"\nallow_plaintext = \"yes\"\n")).unwrap_err();
        assert!(e.message.contains("allow_plaintext"), "{e}");
        let e = from_str(&format!("{head}cert = \"c\"\nkey = \"k\"\ncertificate = \"c\"\n")).unwrap_err();
        assert!(e.message.contains("certificate"), "{e}");
    }
}
