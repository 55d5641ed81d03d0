//! The runtime's guards against hostile peers, as state shared by every shard: the
//! router-wide connection counts (`limits.max_connections`, `limits.max_connections_per_ip`),
//! the counters of every cap the runtime enforces (and of TLS handshakes and rejections),
//! their Prometheus rendering, and the rate limit of their log lines.
//!
//! The core's counters travel over the mesh on each scrape; these live in plain atomics
//! instead (one slot per shard, written by that shard only, with `Relaxed` order), because
//! they are touched only when a cap is hit or a connection opens or closes — never per
//! message — and because the shard that answers `/metrics` must see them all. Nothing here
//! does I/O or decides what to tell a peer (`admission.rs`, `conn.rs` and `http.rs` do).

use std::collections::HashMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::config::RuntimeLimits;
use crate::limits;

/// Why a connection was not served. The order is the order of the checks at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The shard already has `limits.max_handshakes_per_shard` connections without a session.
    MaxHandshakes,
    /// The router already has `limits.max_connections` connections.
    MaxConnections,
    /// The peer's address already has `limits.max_connections_per_ip` connections.
    MaxConnectionsPerIp,
    /// The shard already holds `limits::SHARD_SESSIONS_MAX` connections (RawSocket error 4).
    ShardSessions,
    /// The metrics listener already has `limits::METRICS_CONNECTIONS_MAX` connections.
    MetricsConnections,
    /// The process is out of file descriptors (accept failed with EMFILE/ENFILE): the
    /// shard's spare descriptor was lent to accept the connection and refuse it.
    FdLimit,
}

impl Refusal {
    const ALL: [Refusal; 6] = [
        Refusal::MaxHandshakes,
        Refusal::MaxConnections,
        Refusal::MaxConnectionsPerIp,
        Refusal::ShardSessions,
        Refusal::MetricsConnections,
        Refusal::FdLimit,
    ];

    /// The `reason` label in `/metrics` and the log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxHandshakes => "max_handshakes_per_shard",
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
            Refusal::ShardSessions => "shard_sessions",
            Refusal::MetricsConnections => "metrics_connections",
            Refusal::FdLimit => "fd_limit",
        }
    }
}

/// Why a PING got no PONG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// Payload over `limits::PING_ANSWER_PAYLOAD_MAX_BYTES` (or the peer's own maximum).
    TooBig,
    /// The connection's control or pending-bytes budget is full.
    Budget,
}

/// Why a connection was closed before or during its TLS handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsRejection {
    /// Plaintext on a listener that serves TLS only (`allow_plaintext = false`).
    Plaintext,
    /// A TLS handshake on a listener without `[listener.tls]`.
    NotConfigured,
    /// The handshake failed (no shared protocol or cipher, a client certificate that
    /// `client_ca` does not verify, not TLS after all, the peer closed).
    HandshakeFailed,
    /// The handshake did not finish within `limits::HANDSHAKE_TIMEOUT_MS`.
    HandshakeTimeout,
}

impl TlsRejection {
    const ALL: [TlsRejection; 4] = [
        TlsRejection::Plaintext,
        TlsRejection::NotConfigured,
        TlsRejection::HandshakeFailed,
        TlsRejection::HandshakeTimeout,
    ];

    /// The `reason` label in `/metrics` and the log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TlsRejection::Plaintext => "plaintext_on_tls_listener",
            TlsRejection::NotConfigured => "tls_not_configured",
            TlsRejection::HandshakeFailed => "handshake_failed",
            TlsRejection::HandshakeTimeout => "handshake_timeout",
        }
    }
}

/// What failed accepts are counted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// EMFILE or ENFILE: out of file descriptors.
    FdLimit,
    /// Anything else (ENOBUFS, ENOMEM, a connection reset before accept, …).
    Other,
}

/// Each kind of event that is logged at most once per `limits::GUARD_LOG_INTERVAL_MS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogKind {
    Refused,
    PreSessionBudget,
    AcceptFailed,
    PingUnanswered,
    MetricsBusy,
    TlsRejected,
}

const LOG_KINDS: usize = 6;

/// One shard's runtime counters (written by that shard only).
#[derive(Default)]
pub(crate) struct ShardCounters {
    refused: [AtomicU64; Refusal::ALL.len()],
    pre_session_budget: AtomicU64,
    accept_errors: [AtomicU64; 2],
    pings_unanswered: [AtomicU64; 2],
    metrics_busy: AtomicU64,
    tls_handshakes: AtomicU64,
    tls_rejected: [AtomicU64; TlsRejection::ALL.len()],
    /// Connections of this shard without a session yet (a gauge; `limits.max_handshakes_per_shard`).
    pub(crate) handshakes: AtomicUsize,
}

impl ShardCounters {
    pub(crate) fn count_refused(&self, r: Refusal) {
        self.refused[r as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn count_pre_session_budget(&self) {
        self.pre_session_budget.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_accept_error(&self, e: AcceptError) {
        self.accept_errors[e as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn count_ping_unanswered(&self, why: Unanswered) {
        self.pings_unanswered[why as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn count_metrics_busy(&self) {
        self.metrics_busy.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_tls_handshake(&self) {
        self.tls_handshakes.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_tls_rejected(&self, why: TlsRejection) {
        self.tls_rejected[why as usize].fetch_add(1, Relaxed);
    }
}

/// The router-wide guard state, one per process, shared by every shard.
pub(crate) struct Guard {
    max_connections: usize,
    max_per_ip: Option<usize>,
    /// Connections open on the router (every shard, TCP and Unix, handshakes included).
    connections: AtomicUsize,
    /// Connections per source address key (see [`ip_key`]); only with a per-address cap.
    /// Locked once per accept and once per close, for one map operation.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub(crate) shards: Vec<ShardCounters>,
}

impl Guard {
    pub(crate) fn new(limits: &RuntimeLimits, shards: usize) -> Guard {
        Guard {
            max_connections: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            connections: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            shards: (0..shards).map(|_| ShardCounters::default()).collect(),
        }
    }

    /// Take a place for a connection from `ip` (None: a Unix socket), or say which cap is full.
    /// Every `Ok` must be matched by one [`Guard::release`] with the same `ip`.
    pub(crate) fn admit(&self, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let max = self.max_connections;
        if self.connections.fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1)).is_err() {
            return Err(Refusal::MaxConnections);
        }
        if let (Some(cap), Some(ip)) = (self.max_per_ip, ip) {
            let mut map = self.per_ip.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let n = map.entry(ip_key(ip)).or_insert(0);
            if *n >= cap {
                // `cap` ≥ 1, so the entry existed before: no empty entry is left behind.
                drop(map);
                self.connections.fetch_sub(1, Relaxed);
                return Err(Refusal::MaxConnectionsPerIp);
            }
            *n += 1;
        }
        Ok(())
    }

    /// Give back the place an [`Guard::admit`] took.
    pub(crate) fn release(&self, ip: Option<IpAddr>) {
        self.connections.fetch_sub(1, Relaxed);
        if let (Some(_), Some(ip)) = (self.max_per_ip, ip) {
            let mut map = self.per_ip.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let key = ip_key(ip);
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
    }

    /// The runtime's families in Prometheus text, to follow the core's.
    pub(crate) fn render(&self) -> String {
        let mut o = String::with_capacity(4 * 1024);
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP shardbar_{name} {help}\n# TYPE shardbar_{name} {kind}");
        };
        family(&mut o, "connections_admitted", "gauge", "Connections open on the router, handshakes included.");
        let _ = writeln!(o, "shardbar_connections_admitted {}", self.connections.load(Relaxed));
        family(&mut o, "handshakes", "gauge", "Connections without a session yet (handshake, then until WELCOME).");
        for (i, s) in self.shards.iter().enumerate() {
            let _ = writeln!(o, "shardbar_handshakes{{shard=\"{i}\"}} {}", s.handshakes.load(Relaxed));
        }
        family(
            &mut o,
            "connections_refused_total",
            "counter",
            "Connections refused at accept, by the cap that was full.",
        );
        for (i, s) in self.shards.iter().enumerate() {
            for r in Refusal::ALL {
                let n = s.refused[r as usize].load(Relaxed);
                let _ =
                    writeln!(o, "shardbar_connections_refused_total{{shard=\"{i}\",reason=\"{}\"}} {n}", r.as_str());
            }
        }
        let per_shard = |o: &mut String, name: &str, get: &dyn Fn(&ShardCounters) -> u64| {
            for (i, s) in self.shards.iter().enumerate() {
                let _ = writeln!(o, "shardbar_{name}{{shard=\"{i}\"}} {}", get(s));
            }
        };
        let pre = "pre_session_budget_exceeded_total";
        family(
            &mut o,
            pre,
            "counter",
            "Connections closed for sending more than pre_session_bytes_max before WELCOME.",
        );
        per_shard(&mut o, pre, &|s| s.pre_session_budget.load(Relaxed));
        family(&mut o, "accept_errors_total", "counter", "Failed accepts (each followed by a pause), by cause.");
        for (i, s) in self.shards.iter().enumerate() {
            for (j, reason) in ["fd_limit", "other"].iter().enumerate() {
                let n = s.accept_errors[j].load(Relaxed);
                let _ = writeln!(o, "shardbar_accept_errors_total{{shard=\"{i}\",reason=\"{reason}\"}} {n}");
            }
        }
        family(&mut o, "pings_unanswered_total", "counter", "PINGs not answered: payload too big, or budget full.");
        for (i, s) in self.shards.iter().enumerate() {
            for (j, reason) in ["too_big", "budget"].iter().enumerate() {
                let n = s.pings_unanswered[j].load(Relaxed);
                let _ = writeln!(o, "shardbar_pings_unanswered_total{{shard=\"{i}\",reason=\"{reason}\"}} {n}");
            }
        }
        let busy = "metrics_requests_refused_total";
        family(&mut o, busy, "counter", "/metrics requests answered 503: too many gathering at once on the shard.");
        per_shard(&mut o, busy, &|s| s.metrics_busy.load(Relaxed));
        let done = "tls_handshakes_total";
        family(&mut o, done, "counter", "TLS handshakes completed.");
        per_shard(&mut o, done, &|s| s.tls_handshakes.load(Relaxed));
        family(
            &mut o,
            "tls_rejected_total",
            "counter",
            "Connections closed before or during TLS: plaintext on a TLS-only listener, TLS on a plaintext \
             listener, handshake failed or timed out.",
        );
        for (i, s) in self.shards.iter().enumerate() {
            for r in TlsRejection::ALL {
                let n = s.tls_rejected[r as usize].load(Relaxed);
                let _ = writeln!(o, "shardbar_tls_rejected_total{{shard=\"{i}\",reason=\"{}\"}} {n}", r.as_str());
            }
        }
        o
    }
}

/// The per-address key: an IPv4 address (IPv4-mapped IPv6 included) as is, an IPv6 address
/// by its /64 prefix (one host usually holds a whole /64).
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// At most one log line per [`LogKind`] per `limits::GUARD_LOG_INTERVAL_MS` on one shard.
#[derive(Default)]
pub(crate) struct LogLimiter {
    last: [std::cell::Cell<Option<Instant>>; LOG_KINDS],
    suppressed: [std::cell::Cell<u64>; LOG_KINDS],
}

impl LogLimiter {
    /// Whether to log an event of `kind` now; `Some(n)`: log it, saying `n` were not logged
    /// since the previous line.
    pub(crate) fn allow(&self, kind: LogKind, now: Instant) -> Option<u64> {
        let i = kind as usize;
        let every = Duration::from_millis(limits::GUARD_LOG_INTERVAL_MS);
        if self.last[i].get().is_some_and(|t| now.saturating_duration_since(t) < every) {
            self.suppressed[i].set(self.suppressed[i].get() + 1);
            return None;
        }
        self.last[i].set(Some(now));
        Some(self.suppressed[i].replace(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max: usize, per_ip: Option<usize>) -> Guard {
        let limits = RuntimeLimits {
            write_deadline: Duration::from_secs(1),
            max_connections: max,
            max_connections_per_ip: per_ip,
            max_handshakes_per_shard: 1,
            pre_session_bytes_max: limits::PRE_SESSION_BYTES_MAX,
        };
        Guard::new(&limits, 2)
    }

    #[test]
    fn router_wide_and_per_address_caps() {
        // Goal: the total cap counts every address and Unix sockets; the per-address cap
        // counts each address (an IPv6 /64 as one); releases give places back and leave no
        // empty entries. Method: admit until refused, release, admit again.
        let g = guard(5, Some(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b2: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        assert_eq!(g.admit(Some(a)), Ok(()));
        assert_eq!(g.admit(Some(a)), Ok(()));
        assert_eq!(g.admit(Some(a)), Err(Refusal::MaxConnectionsPerIp));
        assert_eq!(g.admit(Some(b)), Ok(()));
        assert_eq!(g.admit(Some(b2)), Ok(()));
        assert_eq!(g.admit(Some(b)), Err(Refusal::MaxConnectionsPerIp), "b and b2 share a /64");
        assert_eq!(g.admit(None), Ok(()));
        assert_eq!(g.admit(None), Err(Refusal::MaxConnections));
        g.release(Some(a));
        assert_eq!(g.admit(Some(a)), Ok(()));
        for ip in [Some(a), Some(a), Some(b), Some(b2), None] {
            g.release(ip);
        }
        assert_eq!(g.connections.load(Relaxed), 0);
        assert!(g.per_ip.lock().unwrap().is_empty());
        // Without a per-address cap, no map is kept.
        let g = guard(2, None);
        assert_eq!(g.admit(Some(a)), Ok(()));
        assert!(g.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ip_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(ip_key("2001:db8:1:2:3:4:5:6".parse().unwrap()), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn log_lines_are_rate_limited_per_kind() {
        // Goal: one line per kind per interval, and the next line says how many were skipped.
        let l = LogLimiter::default();
        let t0 = Instant::now();
        assert_eq!(l.allow(LogKind::Refused, t0), Some(0));
        assert_eq!(l.allow(LogKind::Refused, t0), None);
        assert_eq!(l.allow(LogKind::Refused, t0), None);
        assert_eq!(l.allow(LogKind::PingUnanswered, t0), Some(0), "kinds are independent");
        let later = t0 + Duration::from_millis(limits::GUARD_LOG_INTERVAL_MS);
        assert_eq!(l.allow(LogKind::Refused, later), Some(2));
    }

    #[test]
    fn renders_every_family_with_a_type() {
        let g = guard(10, None);
        g.shards[1].count_refused(Refusal::MaxHandshakes);
        g.shards[0].count_ping_unanswered(Unanswered::TooBig);
        g.shards[1].count_tls_rejected(TlsRejection::Plaintext);
        let text = g.render();
        assert!(text.contains("shardbar_tls_rejected_total{shard=\"1\",reason=\"plaintext_on_tls_listener\"} 1\n"));
        assert!(
            text.contains("shardbar_connections_refused_total{shard=\"1\",reason=\"max_handshakes_per_shard\"} 1\n")
        );
        assert!(text.contains("shardbar_pings_unanswered_total{shard=\"0\",reason=\"too_big\"} 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{line}");
        }
    }
}
