//! The `shardbar` router binary: parse the command line, load the config, run the shards.
//!
//! It owns the process's exit codes and logging set-up; it parses and checks nothing itself
//! (`shardbar::config` does), routes nothing (`shardbar::shard` does) and hands `shardbar
//! credential` to `shardbar::credential`.

use std::process::ExitCode;

use clap::Parser;
use shardbar::config::{Cli, Command, Config, RunFlags};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A bad flag: clap's message on stderr, exit 2; --help and --version: stdout, exit 0.
    let cli = Cli::parse();
    match cli.command {
        None => run(&cli.run),
        Some(Command::Credential { method }) => shardbar::credential::main(&method),
    }
}

/// No subcommand: load the config, set up logging, run the shards until a signal.
fn run(flags: &RunFlags) -> ExitCode {
    let config = match Config::load(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardbar: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(quiet_rustls(&config.log)).unwrap_or_else(|_| {
        eprintln!("shardbar: log filter {:?} is not valid; using \"info\"", config.log);
        tracing_subscriber::EnvFilter::new(quiet_rustls("info"))
    });
    // Colour only on a terminal: logs piped to files or journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).init();
    let listeners: Vec<String> = config.listeners.iter().map(|l| l.addr.to_string()).collect();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        shards = config.shards,
        listeners = %listeners.join(", "),
        realms = %config.router.realms.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", "),
        "starting shardbar"
    );
    match shardbar::shard::run(config, flags.clone()) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(shardbar::shard::RunError::Config(e)) => {
            eprintln!("shardbar: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("shardbar: {e}");
            ExitCode::from(1)
        }
    }
}

/// rustls logs a peer's TLS mistakes at `warn`, one line per connection, which any client
/// could use to flood the log; the router counts and logs them itself, rate-limited
/// (`shardbar_tls_rejected_total`). So rustls is held to errors unless the filter names it.
fn quiet_rustls(filter: &str) -> String {
    if filter.contains("rustls") { filter.to_owned() } else { format!("{filter},rustls=error") }
}
