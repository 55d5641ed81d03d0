//! The command line (clap, derive API) and how its flags override the config file.
//!
//! `shardbar [FLAGS]` with no subcommand runs the router. Subcommands (`shardbar credential
//! …`) are [`Command`]'s variants; `main.rs` matches on it. Each
//! router flag may also come from a `SHARDBAR_*` environment variable; a flag on the
//! command line wins over the variable, and both win over the file. Values are parsed into
//! their types here (a socket address, a shard count in range), so a bad flag is clap's
//! usage error (exit 2) naming the flag; nothing here reads the file or checks its keys.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand};

use super::DEFAULT_LISTEN;
use super::file::{FileConfig, FileListener};
use crate::credential::CredentialCommand;
use crate::limits;

const AFTER_HELP: &str = "\
With no options: listen on 127.0.0.1:8080 (WebSocket and RawSocket on one port; JSON,
MessagePack and CBOR), realm `realm1`, anonymous, every permission, one shard per core.
A flag overrides its environment variable, and both override the config file.

Signals:
  SIGHUP          read the config file again and swap the listeners' TLS certificates for
                  new connections (nothing else changes until a restart)
  SIGINT/SIGTERM  stop accepting, send GOODBYE wamp.close.system_shutdown to every session,
                  flush, exit 0 (within a few seconds); a second signal exits at once (130)

Host setup:
  glommio needs RLIMIT_MEMLOCK >= 512 KiB (`ulimit -l`); see tuning/README.md.";

/// The whole command line.
#[derive(Parser, Debug)]
#[command(name = "shardbar", version, about = "shardbar — a thread-per-core WAMP v2 router")]
#[command(after_help = AFTER_HELP)]
// A router flag before a subcommand (`shardbar --shards 2 credential …`) would be ignored;
// refuse it instead.
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// The router's flags (used when there is no subcommand).
    #[command(flatten)]
    pub run: RunFlags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands besides running the router. With no subcommand, `shardbar` runs the router
/// with [`Cli::run`].
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Make a principal's credential (SCRAM, WAMP-CRA, cryptosign) to paste into the config
    Credential {
        #[command(subcommand)]
        method: CredentialCommand,
    },
}

/// The router's flags: each overrides the config file.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFlags {
    /// TOML configuration (see README.md, "Configuration")
    #[arg(long, value_name = "FILE", env = "SHARDBAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// TCP address for WebSocket+RawSocket (replaces the file's first TCP listener), e.g. 127.0.0.1:9000
    #[arg(long, value_name = "ADDR", env = "SHARDBAR_LISTEN", value_parser = listen_addr)]
    pub listen: Option<SocketAddr>,
    /// Number of shards (one pinned thread each); 0 = one per core
    #[arg(long, value_name = "N", env = "SHARDBAR_SHARDS", value_parser = shard_count)]
    pub shards: Option<usize>,
    /// error, warn, info (default), debug, trace, or a tracing filter
    #[arg(long, value_name = "LEVEL", env = "SHARDBAR_LOG", value_parser = NonEmptyStringValueParser::new())]
    pub log: Option<String>,
}

fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("expected an address like {DEFAULT_LISTEN}"))
}

fn shard_count(s: &str) -> Result<usize, String> {
    let max = limits::SHARDS_MAX;
    let expected = || format!("expected a number from 0 to {max} (0 = one per core)");
    let n: usize = s.parse().map_err(|_| expected())?;
    if n > max { Err(expected()) } else { Ok(n) }
}

impl RunFlags {
    /// Lay the flags over the file: `--listen` replaces the first TCP listener's address
    /// (or adds a TCP listener in front), `--shards` and `--log` replace `[router]` keys.
    pub(super) fn apply_to(&self, file: &mut FileConfig) {
        if let Some(addr) = self.listen {
            let address = Some(addr.to_string());
            match file.listener.iter_mut().find(|l| l.path.is_none()) {
                Some(l) => l.address = address,
                None => file.listener.insert(0, FileListener { address, ..FileListener::default() }),
            }
        }
        if let Some(n) = self.shards {
            // `shard_count` bounds n by SHARDS_MAX (64), so it fits an i64.
            file.router.get_or_insert_with(Default::default).shards = Some(n as i64);
        }
        if let Some(level) = &self.log {
            file.router.get_or_insert_with(Default::default).log = Some(level.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::super::{Config, ListenAddr};
    use super::*;
    use crate::proto::auth::scram::Kdf;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("shardbar").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn command_line_overrides() {
        let cli = parse(&["--listen", "127.0.0.1:9999", "--shards=3"]).unwrap();
        assert_eq!(cli.command, None);
        let c = Config::load(&cli.run).unwrap();
        assert_eq!(c.listeners[0].addr, ListenAddr::Tcp("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(c.shards, 3);
        assert_eq!(parse(&["--help"]).unwrap_err().kind(), ErrorKind::DisplayHelp);
        assert_eq!(parse(&["--version"]).unwrap_err().kind(), ErrorKind::DisplayVersion);
        let e = parse(&["--bogus"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert!(e.to_string().contains("--bogus"), "{e}");
        let e = parse(&["--shards", "lots"]).unwrap_err();
        assert!(e.to_string().contains("--shards"), "{e}");
        let e = parse(&["--shards", "65"]).unwrap_err();
        assert!(e.to_string().contains("expected a number from 0 to 64"), "{e}");
        let e = parse(&["--listen", "nowhere"]).unwrap_err();
        assert!(e.to_string().contains("--listen") && e.to_string().contains("127.0.0.1:8080"), "{e}");
        // Now that `credential` exists, clap names a stray word an unknown subcommand.
        assert_eq!(parse(&["run"]).unwrap_err().kind(), ErrorKind::InvalidSubcommand, "no stub subcommands");
    }

    #[test]
    fn credential_subcommand_parses_and_stands_alone() {
        // Goal: `shardbar credential METHOD …` parses with its defaults, checks its values,
        // and refuses router flags beside it (they would be ignored). Method: parse.
        use crate::credential::CredentialCommand;
        let cli = parse(&["credential", "scram", "--authid", "alice"]).unwrap();
        let Some(Command::Credential { method: CredentialCommand::Scram(args) }) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(
            (args.authid.as_str(), args.kdf, args.iterations, args.memory),
            ("alice", Kdf::Argon2id13, None, None)
        );
        let cli = parse(&["credential", "wampcra", "--authid", "svc"]).unwrap();
        let Some(Command::Credential { method: CredentialCommand::Wampcra(args) }) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!((args.iterations, args.keylen, args.unsalted), (1000, 32, false));
        let e = parse(&["--shards", "2", "credential", "cryptosign", "--authid", "d"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict, "{e}");
        for bad in [
            &["credential", "scram"][..],
            &["credential", "scram", "--authid", ""],
            &["credential", "scram", "--authid", "a", "--kdf", "scrypt"],
            &["credential", "scram", "--authid", "a", "--memory", "7"],
            &["credential", "scram", "--authid", "a", "--iterations", "0"],
            &["credential", "wampcra", "--authid", "a", "--keylen", "257"],
            &["credential", "wampcra", "--authid", "a", "--unsalted", "--iterations", "5"],
            &["credential", "cryptosign", "--authid", "a", "--pubkey", "00"],
            &["credential", "tls", "--authid", "a"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn listen_replaces_the_first_tcp_listener_or_goes_in_front() {
        // Goal: --listen keeps the file's other listeners. Method: lay it over a file with a
        // Unix listener only, then over one with two TCP listeners.
        let flags = RunFlags { listen: Some("127.0.0.1:9001".parse().unwrap()), ..RunFlags::default() };
        let mut file = super::super::file::parse("[[listener]]\npath = \"/tmp/x.sock\"\n", "t").unwrap();
        flags.apply_to(&mut file);
        let addrs: Vec<_> = file.listener.iter().map(|l| (l.address.clone(), l.path.clone())).collect();
        assert_eq!(addrs, [(Some("127.0.0.1:9001".into()), None), (None, Some("/tmp/x.sock".into()))]);
        let text = "[[listener]]\naddress = \"127.0.0.1:1\"\n[[listener]]\naddress = \"127.0.0.1:2\"\n";
        let mut file = super::super::file::parse(text, "t").unwrap();
        flags.apply_to(&mut file);
        let addrs: Vec<_> = file.listener.iter().filter_map(|l| l.address.clone()).collect();
        assert_eq!(addrs, ["127.0.0.1:9001", "127.0.0.1:2"]);
    }

    #[test]
    fn each_main_flag_has_its_environment_variable() {
        // Goal: the four main flags read SHARDBAR_CONFIG/LISTEN/SHARDS/LOG and nothing else
        // (the test scripts export SHARDBAR_BIN, which must stay no flag's). Method: read the
        // clap definition.
        let cmd = Cli::command();
        let envs: Vec<(String, String)> = cmd
            .get_arguments()
            .filter_map(|a| Some((a.get_long()?.to_owned(), a.get_env()?.to_str()?.to_owned())))
            .collect();
        let want = [
            ("config", "SHARDBAR_CONFIG"),
            ("listen", "SHARDBAR_LISTEN"),
            ("shards", "SHARDBAR_SHARDS"),
            ("log", "SHARDBAR_LOG"),
        ];
        assert_eq!(envs, want.map(|(f, e)| (f.to_owned(), e.to_owned())));
    }

    /// Set in the child process of `environment_variables_set_flags_and_flags_win`.
    const CHILD_MARK: &str = "SHARDBAR_TEST_ENV_CHILD";

    #[test]
    fn environment_variables_set_flags_and_flags_win() {
        // Goal: SHARDBAR_* variables set the flags, and a flag on the command line wins.
        // Method: the process environment is shared by every test thread, so this test runs
        // itself again in a child process with the variables set, and only there parses.
        // (A bad value in a variable: tests/interop/test_lifecycle.py.)
        let name = "config::flags::tests::environment_variables_set_flags_and_flags_win";
        if std::env::var_os(CHILD_MARK).is_none() {
            let exe = std::env::current_exe().expect("the test binary's path");
            let out = std::process::Command::new(exe)
                .args([name, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_MARK, "1")
                .env("SHARDBAR_CONFIG", "/nonexistent/shardbar.toml")
                .env("SHARDBAR_LISTEN", "127.0.0.1:9002")
                .env("SHARDBAR_SHARDS", "3")
                .env("SHARDBAR_LOG", "debug")
                .output()
                .expect("run the test binary");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}");
            return;
        }
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.run.config, Some(PathBuf::from("/nonexistent/shardbar.toml")));
        assert_eq!(cli.run.listen, Some("127.0.0.1:9002".parse().unwrap()));
        assert_eq!(cli.run.shards, Some(3));
        assert_eq!(cli.run.log.as_deref(), Some("debug"));
        let cli = parse(&["--shards", "2", "--listen", "127.0.0.1:9003"]).unwrap();
        assert_eq!((cli.run.shards, cli.run.listen), (Some(2), Some("127.0.0.1:9003".parse().unwrap())));
    }
}
