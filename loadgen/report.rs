//! A run's figures: the JSON report (`--json`) and the human summary.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::seq::Integrity;
use crate::stats::{LatencySummary, Point};

/// CPU the process under test (`--pid`, with its descendants) used during the measurement.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CpuReport {
    pub pid: u32,
    /// User + system seconds between the start and the end of the measurement.
    pub cpu_s: f64,
    /// cpu_s / measured_s: how many cores it kept busy.
    pub cores: f64,
    /// Messages received by loadgen per CPU-second of the process: its efficiency, which
    /// the machine's other load (loadgen itself) does not change the way it changes rates.
    pub received_per_cpu_s: f64,
}

/// Memory of the process under test (`--pid`), KiB; the whole process tree.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RssReport {
    pub pid: u32,
    /// Before loadgen opened any session.
    pub before_kib: u64,
    /// Once every session was set up (connections: after settling).
    pub ready_kib: u64,
    pub max_kib: u64,
    /// When the run ended, before sessions closed.
    pub end_kib: u64,
    /// (ready − before) / sessions.
    pub per_session_kib: f64,
    /// max − ready, KiB: what the router buffered during the load.
    pub growth_kib: u64,
    /// Grew by more than 64 MiB during the load: the router buffered instead of pushing
    /// back (shardbar's per-connection cap is 8 MiB).
    pub grew_under_load: bool,
}

/// A login storm's outcome (`loadgen logins`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoginReport {
    /// Sessions the storm was to open.
    pub attempted: u64,
    /// Reached WELCOME.
    pub succeeded: u64,
    /// Refused (ABORT, see `aborts`) or failed (connect, TLS, handshake).
    pub failed: u64,
    /// Neither when the storm hit `--connect-timeout`.
    pub unfinished: u64,
    /// Sessions reaching WELCOME per second over the storm.
    pub per_s: f64,
    /// Openings in progress at once at most.
    pub concurrency: usize,
    pub timed_out: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub label: String,
    pub scenario: String,
    /// "closed" (max sustainable rate) or "open" (fixed rate).
    pub mode: String,
    pub transport: String,
    pub serializer: String,
    pub params: serde_json::Value,
    pub machine: serde_json::Value,
    pub started_unix_s: u64,
    pub sessions: u64,
    pub setup_s: f64,
    pub setup_latency: LatencySummary,
    /// Actual measurement window, seconds.
    pub measured_s: f64,
    /// PUBLISH/CALL sent with an intended time in the window.
    pub sent: u64,
    pub sent_per_s: f64,
    /// EVENT/RESULT received in the window.
    pub received: u64,
    pub received_per_s: f64,
    /// Transport bytes (WebSocket/RawSocket framing included; with TLS, the plaintext under
    /// it) read by loadgen's connections in the window, per second.
    pub bytes_in_per_s: f64,
    pub bytes_out_per_s: f64,
    /// Messages sent over the whole run (warm-up and window).
    pub sent_total: u64,
    /// Deliveries expected for them, and received.
    pub expected_total: u64,
    pub received_total: u64,
    pub integrity: Integrity,
    /// Calls without a result after the drain.
    pub calls_unanswered: u64,
    pub sessions_dropped: u64,
    /// `connections --hold-partial`: sessions that did not open (the rest were held).
    #[serde(default)]
    pub sessions_failed: u64,
    /// `connections --hold-partial`: sessions neither open nor failed at --connect-timeout.
    #[serde(default)]
    pub sessions_unfinished: u64,
    /// `--stall`: slow consumers, and how many the router had disconnected by the end.
    pub stalled: u64,
    pub stalled_closed_by_router: u64,
    pub protocol_errors: u64,
    /// `logins` only.
    #[serde(default)]
    pub logins: Option<LoginReport>,
    /// Session openings the router ABORTed, by reason URI.
    #[serde(default)]
    pub aborts: std::collections::BTreeMap<String, u64>,
    pub errors: Vec<String>,
    /// What the latency measures.
    pub latency_kind: String,
    pub latency: LatencySummary,
    pub distribution: Vec<Point>,
    /// HdrHistogram V2 compressed, base64, nanoseconds.
    pub histogram: String,
    pub rss: Option<RssReport>,
    #[serde(default)]
    pub cpu: Option<CpuReport>,
    /// The run met its integrity checks (see the exit status in `--help`).
    pub ok: bool,
}

fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0} ")
    }
}

/// Microseconds, in the unit that reads best.
pub fn us(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} ms", v / 1e3)
    } else {
        format!("{v:.1} µs")
    }
}

impl Report {
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "loadgen {} [{}] {} over {} {}, {} loop{}",
            self.scenario,
            self.label,
            self.params.get("url").and_then(|v| v.as_str()).unwrap_or(""),
            self.transport,
            self.serializer,
            self.mode,
            self.params
                .get("rate_per_source")
                .and_then(|v| v.as_u64())
                .map(|r| format!(" at {} msg/s per source", si(r as f64).trim()))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "  sessions     {} set up in {:.2} s (p50 {}, p99 {}, max {})",
            self.sessions,
            self.setup_s,
            us(self.setup_latency.p50_us),
            us(self.setup_latency.p99_us),
            us(self.setup_latency.max_us)
        );
        if let Some(l) = &self.logins {
            let _ = writeln!(
                s,
                "  logins       {} of {} reached WELCOME: {}logins/s ({} at once); {} failed, {} unfinished{}",
                l.succeeded,
                l.attempted,
                si(l.per_s),
                l.concurrency,
                l.failed,
                l.unfinished,
                if l.timed_out { " (hit --connect-timeout)" } else { "" }
            );
        }
        if self.sessions_failed + self.sessions_unfinished > 0 {
            let _ = writeln!(
                s,
                "  partial      of {} sessions {} failed to open and {} had not opened at --connect-timeout; \
                 the other {} were held",
                self.sessions,
                self.sessions_failed,
                self.sessions_unfinished,
                self.sessions.saturating_sub(self.sessions_failed + self.sessions_unfinished)
            );
        }
        for (reason, n) in &self.aborts {
            let _ = writeln!(s, "  abort        {n} × {reason}");
        }
        if self.scenario != "connections" && self.scenario != "logins" {
            let _ = writeln!(
                s,
                "  throughput   sent {}msg/s, received {}msg/s, in {}B/s, out {}B/s over {:.2} s",
                si(self.sent_per_s),
                si(self.received_per_s),
                si(self.bytes_in_per_s),
                si(self.bytes_out_per_s),
                self.measured_s
            );
            let l = &self.latency;
            let _ = writeln!(
                s,
                "  latency      {}: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                self.latency_kind,
                us(l.p50_us),
                us(l.p90_us),
                us(l.p99_us),
                us(l.p999_us),
                us(l.max_us),
                l.count
            );
            let i = &self.integrity;
            let _ = writeln!(
                s,
                "  integrity    {} sent, {} of {} deliveries received; lost {} (gaps {}, tail {}), reordered {}, \
                 unanswered calls {}, dropped sessions {}, protocol errors {}",
                self.sent_total,
                self.received_total,
                self.expected_total,
                i.lost(),
                i.gap_lost,
                i.tail_lost,
                i.reordered,
                self.calls_unanswered,
                self.sessions_dropped,
                self.protocol_errors
            );
        }
        if self.stalled > 0 {
            let _ = writeln!(
                s,
                "  slow         {} stalled subscribers (never read); {} disconnected by the router",
                self.stalled, self.stalled_closed_by_router
            );
        }
        if let Some(r) = &self.rss {
            let _ = writeln!(
                s,
                "  rss (pid {})  before {} KiB, ready {} KiB ({:.1} KiB/session), max {} KiB (+{} KiB), end {} KiB{}",
                r.pid,
                r.before_kib,
                r.ready_kib,
                r.per_session_kib,
                r.max_kib,
                r.growth_kib,
                r.end_kib,
                if r.grew_under_load { "  ← grew under load (buffering, no push-back)" } else { "" }
            );
        }
        if let Some(c) = &self.cpu {
            let _ = writeln!(
                s,
                "  cpu (pid {})  {:.2} s during the measurement ({:.2} cores), {}msg received per CPU-second",
                c.pid,
                c.cpu_s,
                c.cores,
                si(c.received_per_cpu_s)
            );
        }
        for e in &self.errors {
            let _ = writeln!(s, "  error        {e}");
        }
        let _ = writeln!(s, "  result       {}", if self.ok { "OK" } else { "FAILED" });
        s
    }
}
