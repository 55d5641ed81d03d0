//! End to end: the `loadgen` binary against a real `shardbar` router.
//!
//! Goal: every loadgen scenario runs for about a second against a two-shard router on a
//! free loopback port and exits 0 — which, in a closed loop, means no loss, no
//! reordering, no dropped session and no protocol error — and its JSON report holds the
//! figures. Method: start the router, wait for a session with `loadgen wait`, run each
//! scenario with a short warm-up and duration, read the report, stop the router. The
//! scenarios cover both transports and all three serializers. Budget: well under 30 s.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const SHARDBAR: &str = env!("CARGO_BIN_EXE_shardbar");

struct Router {
    child: Child,
    port: u16,
}

impl Router {
    fn start() -> Router {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(SHARDBAR)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--shards", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shardbar");
        let r = Router { child, port };
        let ok = Command::new(LOADGEN)
            .args(["wait", "--url", &r.url("ws"), "--timeout", "15s"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "router did not accept a session");
        r
    }

    fn url(&self, scheme: &str) -> String {
        match scheme {
            "ws" => format!("ws://127.0.0.1:{}/ws", self.port),
            _ => format!("rs://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("loadgen-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run loadgen with `args` plus a short timeline; return its JSON report.
fn run(dir: &Path, name: &str, args: &[&str]) -> serde_json::Value {
    let json = dir.join(format!("{name}.json"));
    let t0 = Instant::now();
    let out = Command::new(LOADGEN)
        .args(args)
        .args(["--warmup", "0.2s", "--duration", "0.8s", "--drain", "3s", "--threads", "2", "--no-progress"])
        .args(["--connect-timeout", "10s", "--label", name, "--json"])
        .arg(&json)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: loadgen failed ({:?})\n{stdout}\n{stderr}", out.status);
    assert!(t0.elapsed() < Duration::from_secs(10), "{name} took {:?}", t0.elapsed());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["ok"], true, "{name}: {report}");
    report
}

#[test]
fn every_scenario_runs_clean_against_shardbar() {
    let router = Router::start();
    let dir = scratch_dir();
    let (ws, rs) = (router.url("ws"), router.url("rs"));
    let pid = router.child.id().to_string();

    let r = run(&dir, "fanout", &["fanout", "--url", &ws, "--serializer", "json", "--subscribers", "50"]);
    assert!(r["received"].as_u64().unwrap() > 0);
    assert!(r["latency"]["count"].as_u64().unwrap() > 0);
    assert_eq!(r["integrity"]["reordered"], 0);

    let r = run(
        &dir,
        "fanout-open",
        &["fanout", "--url", &rs, "--serializer", "cbor", "--subscribers", "20", "--rate", "2000"],
    );
    assert_eq!(r["mode"], "open");
    // 2000/s for 0.8 s: about 1600 publications in the window, each to 20 subscribers.
    let sent = r["sent"].as_u64().unwrap();
    assert!((1500..=1700).contains(&sent), "paced sends: {sent}");

    // Two slow consumers that never read: not an error, and not counted as receivers.
    let r = run(
        &dir,
        "fanout-stall",
        &["fanout", "--url", &rs, "--subscribers", "12", "--stall", "2", "--rate", "500", "--payload", "1024"],
    );
    assert_eq!(r["stalled"], 2);
    assert_eq!(r["expected_total"].as_u64().unwrap(), r["sent_total"].as_u64().unwrap() * 10);

    let r = run(&dir, "fanin", &["fanin", "--url", &rs, "--publishers", "10"]);
    assert!(r["received"].as_u64().unwrap() > 0);

    let r = run(
        &dir,
        "pubsub",
        &["pubsub", "--url", &ws, "--serializer", "msgpack", "--publishers", "3", "--subscribers", "8"],
    );
    assert_eq!(r["params"]["topics"], 10);
    assert!(r["received"].as_u64().unwrap() > 0);

    let r = run(&dir, "rpc", &["rpc", "--url", &rs, "--callers", "8", "--callees", "2", "--window", "4"]);
    assert!(r["received"].as_u64().unwrap() > 0);
    assert_eq!(r["calls_unanswered"], 0);

    let r = run(&dir, "rpc-1", &["rpc", "--url", &ws, "--serializer", "cbor", "--callers", "1"]);
    assert!(r["latency"]["p50_us"].as_f64().unwrap() > 0.0);

    let r = run(&dir, "connections", &["connections", "--url", &rs, "--sessions", "300", "--pid", &pid]);
    assert_eq!(r["sessions"], 300);
    assert!(r["rss"]["ready_kib"].as_u64().unwrap() > 0);

    // A login storm: every session opens, reaches WELCOME and is closed again.
    let r = run(&dir, "logins", &["logins", "--url", &ws, "--sessions", "300", "--concurrency", "16"]);
    assert_eq!(r["logins"]["succeeded"], 300);
    assert_eq!(r["logins"]["failed"], 0);
    assert!(r["logins"]["per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(r["latency"]["count"], 300);

    let r = run(&dir, "raw-fanout", &["raw", "--subscribers", "50"]);
    assert!(r["received"].as_u64().unwrap() > 0);
    let r = run(&dir, "raw-echo", &["raw", "--shape", "echo"]);
    assert!(r["received"].as_u64().unwrap() > 0);

    // Two runs on one plot.
    let svg = dir.join("cmp.svg");
    let ok = Command::new(LOADGEN)
        .arg("plot")
        .args([dir.join("rpc-1.json"), dir.join("raw-echo.json")])
        .arg("--out")
        .arg(&svg)
        .status()
        .unwrap();
    assert!(ok.success());
    let text = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(text.matches("<polyline").count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Goal: loadgen fails (exit 2) with a clear message when nothing listens, instead of
/// hanging or reporting zeros.
#[test]
fn no_router_is_a_setup_error() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(LOADGEN)
        .args(["fanout", "--url", &format!("rs://127.0.0.1:{port}"), "--subscribers", "2"])
        .args(["--duration", "0.2s", "--connect-timeout", "3s", "--no-progress"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to set up"));
}
