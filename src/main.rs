//! The `shardbar` router binary: parse the command line, load the config, run the shards.

use std::process::ExitCode;

use shardbar::config::{Command, Config, USAGE, parse_args};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardbar: {e}");
            return ExitCode::from(2);
        }
    };
    let overrides = match command {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("shardbar {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Run(o) => o,
    };
    let config = match Config::load(&overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardbar: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| {
        eprintln!("shardbar: log filter {:?} is not valid; using \"info\"", config.log);
        tracing_subscriber::EnvFilter::new("info")
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
    match shardbar::shard::run(config) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shardbar: {e}");
            ExitCode::from(1)
        }
    }
}
