//! Drives one run: set up every session, start the clock, warm up, measure, drain, stop,
//! and add up what the workers recorded.
//!
//! Timeline (ns on the run's clock): `start` → warm-up → `measure_start` → duration →
//! `measure_end` → drain (sources stopped; in-flight messages still counted for loss) →
//! done. Latencies are recorded for messages whose *intended send time* is in the window,
//! whenever they arrive (a message stuck past the window still counts, with its full
//! latency); throughput counts arrivals inside the window.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::auth::{AuthArgs, Credentials};
use crate::cli::{Options, Scenario};
use crate::client::{Target, Transport, parse_url};
use crate::plan::{Plan, RoleSpec};
use crate::raw_server::RawServer;
use crate::report::{CpuReport, LoginReport, Report, RssReport};
use crate::seq::Integrity;
use crate::stats::Latency;
use crate::sys;
use crate::tls::{TlsArgs, TlsClient};
use crate::worker::{Shared, Worker, WorkerResult};

/// RSS sampling period.
const RSS_SAMPLE: Duration = Duration::from_millis(100);

/// Samples a process tree's RSS in the background; keeps the maximum.
struct RssSampler {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let (max, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (m, s) = (max.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("rss".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(v) = sys::tree_rss_kib(pid) {
                        m.fetch_max(v, Ordering::Relaxed);
                    }
                    std::thread::sleep(RSS_SAMPLE);
                }
            })
            .ok();
        RssSampler { max, stop, thread }
    }

    fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The router to reach: the URL, with TLS configured for `wss://`/`rss://` and the
/// credentials checked. TLS flags with a plaintext URL are an error (a benchmark meant to
/// be encrypted must not silently run in the clear).
pub fn target_from(
    url: &str,
    ser: Option<shardbar::proto::wire::Serializer>,
    realm: &str,
    source: &[IpAddr],
    tls: &TlsArgs,
    auth: &AuthArgs,
) -> Result<Target, String> {
    let u = parse_url(url)?;
    if let Some(ip) = source.iter().find(|ip| ip.is_ipv4() != u.addr.is_ipv4()) {
        return Err(format!("--source {ip} and {} are not of one address family", u.addr));
    }
    let serializer = ser.unwrap_or(match u.transport {
        Transport::WebSocket => shardbar::proto::wire::Serializer::Json,
        _ => shardbar::proto::wire::Serializer::MsgPack,
    });
    if auth.method == Some(crate::auth::AuthMethod::Tls) && (!u.tls || tls.cert.is_none()) {
        return Err("--authmethod tls needs a wss:// or rss:// URL and --tls-cert/--tls-key".into());
    }
    let tls = match (u.tls, tls.any()) {
        (true, _) => Some(TlsClient::new(tls, &u.host)?),
        (false, true) => return Err(format!("--tls-* flags need a wss:// or rss:// URL, not {url}")),
        (false, false) => None,
    };
    Ok(Target {
        addr: u.addr,
        transport: u.transport,
        serializer,
        host: u.hostport,
        path: u.path,
        realm: realm.to_owned(),
        source: source.to_vec(),
        tls,
        auth: Arc::new(Credentials::from_args(auth)?),
    })
}

struct Progress {
    enabled: bool,
    last: Instant,
    last_received: u64,
}

impl Progress {
    fn line(&mut self, shared: &Shared, phase: &str, extra: &str) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        let received: u64 = shared.live.iter().map(|l| l.received.load(Ordering::Relaxed)).sum();
        let sent: u64 = shared.live.iter().map(|l| l.sent.load(Ordering::Relaxed)).sum();
        let errors: u64 = shared.live.iter().map(|l| l.errors.load(Ordering::Relaxed)).sum();
        let rate = (received - self.last_received.min(received)) as f64 / self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        self.last_received = received;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{phase}] {extra} sent {sent}  received {received}  {:.0} msg/s  errors {errors}  dropped {}",
            rate,
            shared.dropped.load(Ordering::Relaxed)
        );
        let _ = err.flush();
    }

    fn done(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Run a scenario. Err for setup failures (exit 2); Ok carries the report, whose `ok`
/// decides exit 0 or 1.
pub fn run(o: &Options) -> Result<Report, String> {
    sys::raise_nofile();
    let mut server = None;
    let target = if o.scenario == Scenario::Raw {
        let s = RawServer::start(o.server_threads).map_err(|e| format!("cannot start the raw server: {e}"))?;
        let ser = o.serializer.unwrap_or(shardbar::proto::wire::Serializer::MsgPack);
        let t = Target {
            addr: s.addr,
            transport: Transport::Raw,
            serializer: ser,
            host: s.addr.to_string(),
            path: "/".into(),
            realm: o.realm.clone(),
            source: o.source.clone(),
            tls: None,
            auth: Arc::new(Credentials::none()),
        };
        server = Some(s);
        t
    } else {
        target_from(&o.url, o.serializer, &o.realm, &o.source, &o.tls, &o.auth)?
    };
    let plan = Arc::new(Plan::build(o, target)?);
    let threads = plan.threads.min(plan.sessions.len().max(1));
    let shared = Arc::new(Shared::new(threads, plan.flows).map_err(|e| format!("eventfd: {e}"))?);
    let rss_before = o.pid.and_then(sys::tree_rss_kib);
    if o.pid.is_some() && rss_before.is_none() {
        return Err(format!("--pid {}: no such process", o.pid.unwrap_or(0)));
    }
    let sampler = o.pid.map(RssSampler::start);
    let mut progress =
        Progress { enabled: o.progress.unwrap_or_else(sys::stderr_is_tty), last: Instant::now(), last_received: 0 };

    // Deal sessions to workers round-robin: a fan-out's subscribers spread evenly, and
    // the publisher (session 0) sits with its share of them.
    let mut per_worker: Vec<Vec<RoleSpec>> = vec![Vec::new(); threads];
    for (i, s) in plan.sessions.iter().enumerate() {
        per_worker[i % threads].push(s.clone());
    }
    let started_unix_s =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let setup_t0 = Instant::now();
    let mut handles = Vec::new();
    for (id, specs) in per_worker.into_iter().enumerate() {
        let w = Worker::new(id, plan.clone(), shared.clone(), specs).map_err(|e| format!("worker {id}: {e}"))?;
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{id}"))
            .spawn(move || w.run())
            .map_err(|e| format!("spawn worker: {e}"))?;
        handles.push(h);
    }
    let total = plan.sessions.len();
    let stop = |shared: &Shared, handles: Vec<std::thread::JoinHandle<WorkerResult>>| -> Vec<WorkerResult> {
        shared.done.store(true, Ordering::SeqCst);
        shared.wake_all();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    };

    // 1. Set up every session (a login storm: open and close them all).
    let storm = o.scenario == Scenario::Logins;
    // A partial hold, like a storm, ends its setup at --connect-timeout with what it has.
    let partial = o.scenario == Scenario::Connections && o.hold_partial;
    let mut setup_timed_out = false;
    loop {
        let (ready, failed) = (shared.ready.load(Ordering::SeqCst), shared.failed.load(Ordering::SeqCst));
        if ready + failed >= total {
            break;
        }
        if setup_t0.elapsed() > plan.connect_timeout && (storm || partial) {
            // The sessions so far are the result; the report says setup did not finish.
            setup_timed_out = true;
            break;
        }
        if setup_t0.elapsed() > plan.connect_timeout {
            progress.done();
            stop(&shared, handles);
            return Err(format!(
                "only {ready} of {total} sessions set up within {:?}; first errors: {:?}",
                plan.connect_timeout,
                shared.errors.lock().map(|e| e.clone()).unwrap_or_default()
            ));
        }
        progress.line(&shared, "setup", &format!("{ready}/{total} sessions"));
        std::thread::sleep(Duration::from_millis(5));
    }
    let setup_s = setup_t0.elapsed().as_secs_f64();
    let failed = shared.failed.load(Ordering::SeqCst);
    let logged_in = shared.ready.load(Ordering::SeqCst);
    if failed > 0 && !storm && !partial {
        progress.done();
        stop(&shared, handles);
        return Err(format!(
            "{failed} of {total} sessions failed to set up; first errors: {:?}",
            shared.errors.lock().map(|e| e.clone()).unwrap_or_default()
        ));
    }

    // 2. Load (or, for connections, hold).
    let rss_ready;
    let measured_s;
    // The process under test's CPU seconds at the start and end of the measurement.
    let mut cpu_window: Option<(f64, f64)> = None;
    if storm {
        rss_ready = o.pid.and_then(sys::tree_rss_kib);
        measured_s = setup_s;
    } else if o.scenario == Scenario::Connections {
        // From here on a SIGTERM or SIGINT ends the hold (and the report is written).
        sys::catch_stop_signals();
        let settle_end = Instant::now() + o.warmup;
        let t_end = settle_end + o.duration;
        while Instant::now() < settle_end && !sys::stop_requested() {
            std::thread::sleep(Duration::from_millis(20).min(settle_end.saturating_duration_since(Instant::now())));
        }
        rss_ready = o.pid.and_then(sys::tree_rss_kib);
        let t0 = Instant::now();
        while Instant::now() < t_end && !sys::stop_requested() {
            progress.line(&shared, "hold", &format!("{total} sessions"));
            std::thread::sleep(Duration::from_millis(50));
        }
        measured_s = t0.elapsed().as_secs_f64();
    } else {
        rss_ready = o.pid.and_then(sys::tree_rss_kib);
        let start = shared.now_ns() + 2_000_000;
        let measure_start = start + plan.warmup.as_nanos() as u64;
        let measure_end = measure_start + plan.duration.as_nanos() as u64;
        shared.start_ns.store(start, Ordering::SeqCst);
        shared.measure_start_ns.store(measure_start, Ordering::SeqCst);
        shared.measure_end_ns.store(measure_end, Ordering::SeqCst);
        shared.go.store(true, Ordering::SeqCst);
        shared.wake_all();
        let mut cpu_start = None;
        loop {
            let now = shared.now_ns();
            if now >= measure_start && cpu_start.is_none() {
                cpu_start = o.pid.and_then(sys::tree_cpu_s);
            }
            if now >= measure_end {
                break;
            }
            let phase = if now < measure_start { "warm-up" } else { "measure" };
            let left = (measure_end - now) as f64 / 1e9;
            progress.line(&shared, phase, &format!("{left:.1}s left"));
            std::thread::sleep(Duration::from_millis(20).min(Duration::from_nanos(measure_end - now)));
        }
        measured_s = plan.duration.as_secs_f64();
        if let (Some(a), Some(b)) = (cpu_start, o.pid.and_then(sys::tree_cpu_s)) {
            cpu_window = Some((a, b));
        }
        // Drain: wait for what is in flight.
        let drain_end = Instant::now() + plan.drain;
        while Instant::now() < drain_end {
            // Read the flags first: a worker stores its final `expected` before its flag.
            let sources_done = shared.live.iter().all(|l| l.sources_done.load(Ordering::Acquire));
            let expected: u64 = shared.live.iter().map(|l| l.expected.load(Ordering::Relaxed)).sum();
            let delivered: u64 = shared.live.iter().map(|l| l.delivered.load(Ordering::Relaxed)).sum();
            let outstanding: u64 = shared.live.iter().map(|l| l.outstanding.load(Ordering::Relaxed)).sum();
            if sources_done && delivered >= expected && outstanding == 0 {
                break;
            }
            progress.line(&shared, "drain", &format!("{} in flight", expected.saturating_sub(delivered) + outstanding));
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let rss_end = o.pid.and_then(sys::tree_rss_kib);
    progress.done();
    let dropped = shared.dropped.load(Ordering::SeqCst) as u64;
    let results = stop(&shared, handles);
    drop(server);

    // 3. Add up.
    let mut latency = Latency::new();
    let mut setup = Latency::new();
    let mut integrity = Integrity::default();
    let (mut received, mut sent, mut bytes_in, mut bytes_out) = (0u64, 0u64, 0u64, 0u64);
    let mut published = vec![0u64; plan.flows];
    let mut last_sum = vec![0u64; plan.flows];
    let mut receivers = vec![0u64; plan.flows];
    let (mut unanswered, mut protocol_errors) = (0u64, 0u64);
    let (mut stalled, mut stalled_closed) = (0u64, 0u64);
    let mut aborts = std::collections::BTreeMap::<String, u64>::new();
    for r in &results {
        for (reason, n) in &r.aborts {
            *aborts.entry(reason.clone()).or_default() += n;
        }
        latency.merge(&r.latency);
        setup.merge(&r.setup);
        integrity.add(&r.integrity);
        received += r.received_window;
        sent += r.sent_window;
        bytes_in += r.bytes_in_window;
        bytes_out += r.bytes_out_window;
        unanswered += r.outstanding;
        protocol_errors += r.protocol_errors;
        stalled += r.stalled;
        stalled_closed += r.stalled_closed;
        for f in 0..plan.flows {
            published[f] += r.published[f];
            last_sum[f] += r.last_sum[f];
            receivers[f] += r.receivers[f];
        }
    }
    let rpc = plan.is_rpc();
    let sent_total: u64 = published.iter().sum();
    let expected_total: u64 = published.iter().zip(&plan.receivers).map(|(p, r)| p * r).sum();
    let received_total: u64 = shared.live.iter().map(|l| l.received.load(Ordering::Relaxed)).sum();
    if !rpc {
        integrity.tail_lost = (0..plan.flows).map(|f| (receivers[f] * published[f]).saturating_sub(last_sum[f])).sum();
    } else if plan.callees <= 1 {
        // Calls are answered in order: what is unanswered at the end is the tail.
        integrity.tail_lost = unanswered;
    }
    let closed = plan.rate.is_none();
    let mut ok = integrity.reordered == 0 && dropped == 0;
    if closed {
        ok &= integrity.is_clean() && unanswered == 0 && protocol_errors == 0;
    }
    let logins = storm.then(|| LoginReport {
        attempted: total as u64,
        succeeded: logged_in as u64,
        failed: failed as u64,
        unfinished: total.saturating_sub(logged_in + failed) as u64,
        per_s: logged_in as f64 / setup_s.max(1e-9),
        concurrency: plan.handshakes_max * threads,
        timed_out: setup_timed_out,
    });
    if let Some(l) = &logins {
        ok &= l.failed == 0 && l.unfinished == 0;
    }
    let held = if partial { logged_in } else { total };
    ok &= !partial || logged_in == total;
    let rss = o.pid.map(|pid| {
        let before = rss_before.unwrap_or(0);
        let ready = rss_ready.unwrap_or(0);
        let max = sampler.as_ref().map_or(0, RssSampler::max).max(ready).max(rss_end.unwrap_or(0));
        RssReport {
            pid,
            before_kib: before,
            ready_kib: ready,
            max_kib: max,
            end_kib: rss_end.unwrap_or(0),
            // Per session held: a partial hold's failed sessions cost nothing.
            per_session_kib: if held > 0 { ready.saturating_sub(before) as f64 / held as f64 } else { 0.0 },
            growth_kib: max.saturating_sub(ready),
            grew_under_load: o.scenario != Scenario::Connections && ready > 0 && max > ready + 64 * 1024,
        }
    });
    drop(sampler);
    let cpu = o.pid.zip(cpu_window).map(|(pid, (a, b))| {
        let cpu_s = (b - a).max(0.0);
        CpuReport {
            pid,
            cpu_s,
            cores: cpu_s / measured_s.max(1e-9),
            received_per_cpu_s: if cpu_s > 0.0 { received as f64 / cpu_s } else { 0.0 },
        }
    });
    let (latency_kind, lat) = match o.scenario {
        Scenario::Connections | Scenario::Logins => ("connect→WELCOME", &setup),
        _ if rpc => ("call→result", &latency),
        _ => ("publish→deliver", &latency),
    };
    let mut params = o.to_json();
    params["window"] = serde_json::json!(plan.window);
    params["serializer"] = serde_json::json!(plan.target.serializer.name());
    params["threads"] = serde_json::json!(threads);
    let errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(Report {
        tool: "loadgen".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        label: o.label.clone().unwrap_or_else(|| format!("{} {}", o.scenario.name(), plan.target.transport_name())),
        scenario: o.scenario.name().into(),
        mode: if closed { "closed" } else { "open" }.into(),
        transport: plan.target.transport_name(),
        serializer: plan.target.serializer.name().into(),
        params,
        machine: sys::machine(),
        started_unix_s,
        sessions: total as u64,
        setup_s,
        setup_latency: setup.summary(),
        measured_s,
        sent,
        sent_per_s: sent as f64 / measured_s,
        received,
        received_per_s: received as f64 / measured_s,
        bytes_in_per_s: bytes_in as f64 / measured_s,
        bytes_out_per_s: bytes_out as f64 / measured_s,
        sent_total,
        expected_total,
        received_total,
        integrity,
        calls_unanswered: unanswered,
        sessions_dropped: dropped,
        sessions_failed: if partial { failed as u64 } else { 0 },
        sessions_unfinished: if partial { total.saturating_sub(logged_in + failed) as u64 } else { 0 },
        stalled,
        stalled_closed_by_router: stalled_closed,
        protocol_errors,
        logins,
        aborts,
        errors,
        latency_kind: latency_kind.into(),
        latency: lat.summary(),
        distribution: lat.distribution(),
        histogram: lat.to_base64(),
        rss,
        cpu,
        ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthMethod;

    // Goal: a run meant to be encrypted or authenticated refuses to start in a state that
    // would silently measure something else. Method: build targets from flag sets.
    #[test]
    fn targets_refuse_inconsistent_tls_and_auth() {
        let none = (TlsArgs::default(), AuthArgs::default());
        let t = target_from("ws://127.0.0.1:1/ws", None, "realm1", &[], &none.0, &none.1).unwrap();
        assert!(t.tls.is_none());
        assert_eq!(t.transport_name(), "websocket");
        let insecure = TlsArgs { insecure: true, ..TlsArgs::default() };
        let e = target_from("ws://127.0.0.1:1/ws", None, "realm1", &[], &insecure, &none.1).unwrap_err();
        assert!(e.contains("wss://"), "{e}");
        let e = target_from("wss://127.0.0.1:1/ws", None, "realm1", &[], &none.0, &none.1).unwrap_err();
        assert!(e.contains("--tls-ca"), "{e}");
        let t = target_from("rss://127.0.0.1:1", None, "realm1", &[], &insecure, &none.1).unwrap();
        assert_eq!(
            (t.transport_name().as_str(), t.serializer),
            ("rawsocket+tls", shardbar::proto::wire::Serializer::MsgPack)
        );
        let tls_auth = AuthArgs { method: Some(AuthMethod::Tls), ..AuthArgs::default() };
        assert!(
            target_from("rss://127.0.0.1:1", None, "realm1", &[], &insecure, &tls_auth).is_err(),
            "tls needs a client cert"
        );
        let v4: [IpAddr; 2] = ["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
        let t = target_from("rs://127.0.0.1:1", None, "realm1", &v4, &none.0, &none.1).unwrap();
        let picks: Vec<_> = (0..4).map(|i| t.source_for(i).unwrap()).collect();
        assert_eq!(picks, [v4[0], v4[1], v4[0], v4[1]], "sessions round-robin over the sources");
        assert_eq!(target_from("rs://127.0.0.1:1", None, "realm1", &[], &none.0, &none.1).unwrap().source_for(0), None);
        let e = target_from("rs://[::1]:1", None, "realm1", &v4, &none.0, &none.1).unwrap_err();
        assert!(e.contains("address family"), "{e}");
        let ticket = AuthArgs { method: Some(AuthMethod::Ticket), ..AuthArgs::default() };
        assert!(
            target_from("ws://127.0.0.1:1/ws", None, "realm1", &[], &none.0, &ticket).is_err(),
            "ticket needs a ticket"
        );
    }
}
