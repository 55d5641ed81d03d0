//! `loadgen`: shardbar's bundled WAMP load generator.
//!
//! It speaks WAMP itself with `shardbar::proto::wire` (WebSocket and RawSocket, plain or
//! over TLS; JSON, MessagePack, CBOR; anonymous, ticket, WAMP-CRA or cryptosign
//! authentication), plays the scenarios in `plan.rs` (fan-out, fan-in, pub/sub, RPC,
//! idle connections, login storms) in closed loop (maximum sustainable rate, bounded in flight) or open
//! loop (fixed rate, latency from the intended send time), and records publish→deliver
//! and call→result latencies carried in the payload in per-thread HdrHistograms. The `raw`
//! scenario runs the same shapes over plain TCP against loadgen's own server
//! (`raw_server.rs`) to give the machine's limit.
//!
//! # Why std threads and epoll, not glommio
//!
//! - It must run against any router on any Linux box, including ones where
//!   `RLIMIT_MEMLOCK` is too small for io_uring, without tuning first.
//! - A load generator's loop is simple and batch-shaped: wait, read every ready socket,
//!   send what is due, write each socket once. Level-triggered epoll does exactly that
//!   with one syscall per turn, and `epoll_pwait2` gives nanosecond timeouts for open-loop
//!   pacing.
//! - Closed-loop publishers need to hear about deliveries on other threads; an eventfd in
//!   the epoll set is the natural wake-up, and plain threads share atomics freely.
//!
//! Each worker thread owns a slice of the sessions; nothing on the hot path is shared
//! except a few counters per loop turn (see `worker.rs`). `loadgen raw` shows the
//! generator is not the bottleneck: the same client code saturates a server that does
//! no work per message.

mod auth;
mod cli;
mod client;
mod pacer;
mod payload;
mod plan;
mod plot;
mod raw_server;
mod report;
mod runner;
mod seq;
mod stats;
mod sys;
mod tls;
#[cfg(test)]
mod tls_loopback;
mod worker;

use std::process::ExitCode;
use std::time::Duration;

use cli::Command;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A bad flag: clap's message on stderr, exit 2; --help: stdout, exit 0.
    let command = cli::parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match command {
        Command::Help => {
            print!("{}", cli::help());
            ExitCode::SUCCESS
        }
        Command::Plot { inputs, out, title, linear } => match plot::plot_files(&inputs, &out, title.as_deref(), linear)
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::from(2)
            }
        },
        Command::Rss { pid } => match sys::tree_rss_kib(pid) {
            Some(kib) => {
                println!("{kib}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("loadgen: no process {pid}");
                ExitCode::from(2)
            }
        },
        Command::Wait { url, serializer, realm, source, tls, auth, timeout } => {
            match runner::target_from(&url, serializer, &realm, &source, &tls, &auth) {
                Ok(target) => wait(&target, timeout),
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run(o) => run(&o),
    }
}

/// Retry opening a session until one opens or `timeout` passes; print the milliseconds it
/// took from the first attempt (a router's time to ready when started just before).
fn wait(target: &client::Target, timeout: Duration) -> ExitCode {
    let t0 = std::time::Instant::now();
    let mut last = String::new();
    while t0.elapsed() < timeout {
        match client::open_session_blocking(target, Duration::from_secs(5)) {
            Ok(_) => {
                println!("{:.1}", t0.elapsed().as_secs_f64() * 1e3);
                return ExitCode::SUCCESS;
            }
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("loadgen: no session within {timeout:?}: {last}");
    ExitCode::from(1)
}

fn run(o: &cli::Options) -> ExitCode {
    let report = match runner::run(o) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if !o.quiet {
        print!("{}", report.human());
    }
    if let Some(path) = &o.json {
        let text = match serde_json::to_string_pretty(&report) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("loadgen: cannot serialise the report: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("loadgen: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if let Some(path) = &o.plot {
        let title = format!("{} {} latency by percentile", report.scenario, report.latency_kind);
        if let Err(e) = plot::write(path, &[plot::series_of(&report, "run")], &title, false) {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    }
    if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
