//! The command line (clap, derive API): subcommands and flags into [`Command`].
//!
//! Every scenario (fanout, fanin, pubsub, rpc, connections, logins, raw) takes the same flags, as
//! scripts pass common flags to all of them; a flag a scenario does not use is ignored, and
//! the help says which scenario reads it. A flag given twice takes the last value
//! (`bench/compare.sh` puts a scenario's own flags after the common ones). Values are
//! parsed and bounded here, so [`Options`] holds only runnable values; nothing here
//! connects, spawns or writes a file.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use shardbar::proto::wire::Serializer;

use crate::auth::{AuthArgs, AuthMethod};
use crate::payload::PAYLOAD_MAX_BYTES;
use crate::tls::TlsArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Fanout,
    Fanin,
    Pubsub,
    Rpc,
    Connections,
    Logins,
    Raw,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Fanin => "fanin",
            Scenario::Pubsub => "pubsub",
            Scenario::Rpc => "rpc",
            Scenario::Connections => "connections",
            Scenario::Logins => "logins",
            Scenario::Raw => "raw",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RawShape {
    Fanout,
    Echo,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub scenario: Scenario,
    pub url: String,
    pub serializer: Option<Serializer>,
    pub realm: String,
    /// Local addresses to bind client sockets to, round-robin per session; empty: the
    /// kernel picks.
    pub source: Vec<IpAddr>,
    pub tls: TlsArgs,
    pub auth: AuthArgs,
    pub threads: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub topics: usize,
    pub topics_per_sub: Option<usize>,
    pub callers: usize,
    pub callees: usize,
    pub sessions: usize,
    /// Session openings in progress at once, over all threads; None: 64 per thread.
    pub concurrency: Option<usize>,
    pub stall: usize,
    /// connections: hold the sessions that opened when others fail to (or time out).
    pub hold_partial: bool,
    pub shape: RawShape,
    pub server_threads: usize,
    pub rate: Option<u64>,
    pub window: Option<u64>,
    pub payload: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    pub connect_timeout: Duration,
    pub pid: Option<u32>,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub label: Option<String>,
    pub progress: Option<bool>,
    pub quiet: bool,
}

#[derive(Debug)]
pub enum Command {
    Help,
    Run(Box<Options>),
    Plot {
        inputs: Vec<PathBuf>,
        out: PathBuf,
        title: Option<String>,
        linear: bool,
    },
    Wait {
        url: String,
        serializer: Option<Serializer>,
        realm: String,
        source: Vec<IpAddr>,
        tls: Box<TlsArgs>,
        auth: Box<AuthArgs>,
        timeout: Duration,
    },
    Rss {
        pid: u32,
    },
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Options {
    fn defaults(scenario: Scenario) -> Options {
        let (publishers, subscribers) = match scenario {
            Scenario::Fanin => (100, 1),
            Scenario::Pubsub => (10, 100),
            _ => (1, 1000),
        };
        Options {
            scenario,
            url: "ws://127.0.0.1:8080/ws".into(),
            serializer: None,
            realm: "realm1".into(),
            source: Vec::new(),
            tls: TlsArgs::default(),
            auth: AuthArgs::default(),
            threads: cpus(),
            publishers,
            subscribers,
            topics: 10,
            topics_per_sub: None,
            callers: if scenario == Scenario::Raw { 1 } else { 64 },
            callees: 1,
            sessions: if scenario == Scenario::Logins { 10_000 } else { 1000 },
            concurrency: None,
            stall: 0,
            hold_partial: false,
            shape: RawShape::Fanout,
            server_threads: cpus(),
            rate: None,
            window: None,
            payload: 64,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            drain: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
            pid: None,
            json: None,
            plot: None,
            label: None,
            progress: None,
            quiet: false,
        }
    }

    /// Every parameter, for the JSON report (never a secret: the method and authid only).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.scenario.name(),
            "url": self.url,
            "serializer": self.serializer.map(|s| s.name()),
            "realm": self.realm,
            "source": self.source.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "tls_verified": self.tls.ca.is_some(),
            "tls_client_cert": self.tls.cert.is_some(),
            "tls_server_name": self.tls.server_name,
            "tls_resume": self.tls.resume,
            "tls_rustls_records": self.tls.rustls_records,
            "authmethod": self.auth.method.map(AuthMethod::name),
            "authid": self.auth.authid,
            "authrole": self.auth.authrole,
            "cryptosign_pubkey": self.auth.cryptosign_seed.as_deref().and_then(|s| crate::auth::parse_seed(s).ok())
                .map(|seed| crate::auth::public_key_hex(&seed)),
            "threads": self.threads,
            "publishers": self.publishers,
            "subscribers": self.subscribers,
            "topics": self.topics,
            "topics_per_sub": self.topics_per_sub,
            "callers": self.callers,
            "callees": self.callees,
            "sessions": self.sessions,
            "concurrency": self.concurrency,
            "stall": self.stall,
            "hold_partial": self.hold_partial,
            "shape": match self.shape { RawShape::Fanout => "fanout", RawShape::Echo => "echo" },
            "server_threads": self.server_threads,
            "rate_per_source": self.rate,
            "window": self.window,
            "payload_bytes": self.payload,
            "warmup_s": self.warmup.as_secs_f64(),
            "duration_s": self.duration.as_secs_f64(),
            "drain_s": self.drain.as_secs_f64(),
            "connect_timeout_s": self.connect_timeout.as_secs_f64(),
            "pid": self.pid,
            "label": self.label,
        })
    }
}

/// `500ms`, `2s`, `1.5s`, `1m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (500ms, 2s, 1m)");
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// `1000`, `10k`, `1.5M`.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a count (1000, 10k, 1.5M)");
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('M') => (&s[..s.len() - 1], 1e6),
        Some('G') => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    Ok((v * mult).round() as u64)
}

/// `--source`'s value (a newtype: clap would read a bare `Vec` as a repeated flag).
#[derive(Clone, Debug)]
struct Sources(Vec<IpAddr>);

fn sources(s: &str) -> Result<Sources, String> {
    parse_sources(s).map(Sources)
}

/// `127.0.0.2,127.0.0.3`: one or more IP addresses of one family, comma-separated, no repeats.
pub fn parse_sources(s: &str) -> Result<Vec<IpAddr>, String> {
    let mut out: Vec<IpAddr> = Vec::new();
    for part in s.split(',').map(str::trim) {
        let ip: IpAddr = part.parse().map_err(|_| format!("{part:?} is not an IP address (127.0.0.2,127.0.0.3)"))?;
        if out.contains(&ip) {
            return Err(format!("{ip} is given twice"));
        }
        out.push(ip);
    }
    match out.first() {
        Some(first) if out.iter().any(|ip| ip.is_ipv4() != first.is_ipv4()) => {
            Err("mixes IPv4 and IPv6 addresses".into())
        }
        _ => Ok(out),
    }
}

fn serializer(s: &str) -> Result<Serializer, String> {
    Serializer::from_name(s).ok_or_else(|| "expected json, msgpack or cbor".to_owned())
}

fn count(s: &str) -> Result<usize, String> {
    parse_count(s).map(|n| n as usize)
}

fn payload_bytes(s: &str) -> Result<usize, String> {
    let n = count(s)?;
    if n > PAYLOAD_MAX_BYTES { Err(format!("at most {PAYLOAD_MAX_BYTES} bytes")) } else { Ok(n) }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() { Err("must be positive".into()) } else { Ok(d) }
}

const AFTER_HELP: &str = "\
Durations: 500ms, 2s, 1.5s, 1m; a bare number is seconds. Counts: 1000, 10k, 1.5M.
`loadgen SCENARIO --help` lists a scenario's flags.

TLS and authentication (every scenario, and `wait`):
  --url wss://HOST:PORT/PATH is WebSocket over TLS, --url rss://HOST:PORT RawSocket over TLS;
  either needs --tls-ca FILE (PEM roots) or --tls-insecure. --tls-cert/--tls-key present a
  client certificate, --tls-server-name overrides the name checked and sent as SNI.
  --authmethod ticket --authid ID --ticket T
  --authmethod wampcra --authid ID --secret S   (salted keys as the CHALLENGE says)
  --authmethod cryptosign --cryptosign-seed HEX [--authid ID]
  --authmethod tls   (with --tls-cert)     --authmethod anonymous
  Secrets may come from LOADGEN_TICKET, LOADGEN_SECRET, LOADGEN_CRYPTOSIGN_SEED instead.
  A refused login is reported with the router's ABORT reason URI.
  Login storm: loadgen logins --sessions 10k --concurrency 256 [auth flags]: logins/s and
  connect→WELCOME latency (TCP, TLS, transport handshake, HELLO…WELCOME).

Exit status:
  0 success; 1 loss, reordering, lost sessions or protocol errors in a closed-loop run
  (reordering and lost sessions in any run), or a login storm with refused or unfinished
  logins; 2 usage or setup error.";

/// The whole command line.
#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "loadgen — a WAMP load generator (shardbar's, works against any WAMP router)")]
#[command(after_help = AFTER_HELP, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// 1 publisher → N subscribers (--subscribers, 1000)
    Fanout(ScenarioArgs),
    /// N publishers (--publishers, 100) → 1 subscriber
    Fanin(ScenarioArgs),
    /// P publishers (10) × S subscribers (100) × T topics (10)
    Pubsub(ScenarioArgs),
    /// C callers (--callers, 64) → K callees (--callees, 1)
    Rpc(ScenarioArgs),
    /// Open and hold N idle sessions (--sessions, 1000)
    Connections(ScenarioArgs),
    /// Login storm: open N sessions (--sessions, 10k), --concurrency at a time, each closed at its WELCOME; logins/s and connect→WELCOME latency
    Logins(ScenarioArgs),
    /// The fanout or echo shape over plain TCP, no WAMP, against loadgen's own server: the machine's limit
    Raw(ScenarioArgs),
    /// Draw the latency percentile distributions of JSON reports into one SVG
    Plot(PlotArgs),
    /// Wait until a session opens; print the milliseconds it took
    Wait(WaitArgs),
    /// Print the RSS of PID and its children, in KiB
    Rss(RssArgs),
}

/// Where to connect.
#[derive(Args, Debug)]
#[command(next_help_heading = "Target")]
struct TargetArgs {
    /// ws://HOST:PORT/PATH (WebSocket), rs://HOST:PORT (RawSocket); over TLS: wss://HOST:PORT/PATH, rss://HOST:PORT
    #[arg(long, value_name = "URL", default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// json | msgpack | cbor [default: json for ws, msgpack for rs]
    #[arg(long, value_name = "S", value_parser = serializer)]
    serializer: Option<Serializer>,
    /// The realm to join
    #[arg(long, value_name = "R", default_value = "realm1")]
    realm: String,
    /// Bind client sockets to these local addresses before connecting, sessions round-robin over them (more connections to one router port than one address's ephemeral ports, or per-address caps) [default: the kernel picks]
    #[arg(long, value_name = "ADDR[,ADDR…]", value_parser = sources)]
    source: Option<Sources>,
}

/// TLS for wss:// and rss:// URLs.
#[derive(Args, Debug)]
#[command(next_help_heading = "TLS (wss://, rss://)")]
struct TlsFlags {
    /// PEM file of the CA certificate(s) that verify the router's certificate
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Do not verify the router's certificate (benchmarks against a throw-away certificate); needed without --tls-ca
    #[arg(long)]
    tls_insecure: bool,
    /// Client certificate chain (PEM), presented to the router; with --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name to verify the certificate against and send as SNI [default: the URL's host]
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// Resume earlier TLS sessions (session tickets): cheaper handshakes; off, every connection does a full handshake like a distinct client
    #[arg(long)]
    tls_resume: bool,
    /// Keep rustls's record layer after the handshake (default: TLS 1.3 records are sealed and opened by loadgen with the negotiated keys, one plaintext copy per record; this flag measures the difference)
    #[arg(long)]
    tls_rustls_records: bool,
}

/// How sessions authenticate (HELLO.authmethods and the CHALLENGE answer).
#[derive(Args, Debug)]
#[command(next_help_heading = "Authentication")]
struct AuthFlags {
    /// anonymous | ticket | wampcra | cryptosign | tls (the client certificate, --tls-cert) [default: HELLO without authmethods]
    #[arg(long, value_name = "METHOD", value_parser = authmethod)]
    authmethod: Option<AuthMethod>,
    /// HELLO.authid (needed for ticket and wampcra; cryptosign may omit it)
    #[arg(long, value_name = "ID")]
    authid: Option<String>,
    /// HELLO.authrole (Autobahn|Python sends it when set)
    #[arg(long, value_name = "ROLE")]
    authrole: Option<String>,
    /// ticket: the ticket (AUTHENTICATE carries it as is)
    #[arg(long, value_name = "T", env = "LOADGEN_TICKET", hide_env_values = true)]
    ticket: Option<String>,
    /// wampcra: the secret (salted derivation when the CHALLENGE carries salt/iterations/keylen)
    #[arg(long, value_name = "S", env = "LOADGEN_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// cryptosign: the Ed25519 private key as its 32-byte seed, 64 hex characters
    #[arg(long, value_name = "HEX", env = "LOADGEN_CRYPTOSIGN_SEED", hide_env_values = true)]
    cryptosign_seed: Option<String>,
}

/// A scenario's flags (every scenario takes all of them).
#[derive(Args, Debug)]
struct ScenarioArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    tls: TlsFlags,
    #[command(flatten)]
    auth: AuthFlags,
    #[command(flatten)]
    shape: ShapeArgs,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    timeline: TimelineArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Who takes part; the defaults depend on the scenario.
#[derive(Args, Debug)]
#[command(next_help_heading = "Shape")]
struct ShapeArgs {
    /// fanin, pubsub: publishers [default: fanin 100, pubsub 10]
    #[arg(long, value_name = "N", value_parser = count)]
    publishers: Option<usize>,
    /// fanout, fanin, pubsub, raw fanout: subscribers [default: fanout 1000, fanin 1, pubsub 100]
    #[arg(long, value_name = "N", value_parser = count)]
    subscribers: Option<usize>,
    /// pubsub: topics [default: 10]
    #[arg(long, value_name = "T", value_parser = count)]
    topics: Option<usize>,
    /// pubsub: topics each subscriber subscribes to [default: all]
    #[arg(long, value_name = "K", value_parser = count)]
    topics_per_sub: Option<usize>,
    /// rpc, raw echo: callers [default: rpc 64, raw 1]
    #[arg(long, value_name = "C", value_parser = count)]
    callers: Option<usize>,
    /// rpc: callees [default: 1]
    #[arg(long, value_name = "K", value_parser = count)]
    callees: Option<usize>,
    /// connections: idle sessions to open and hold [default: 1000]; logins: sessions to open and close [default: 10k]
    #[arg(long, value_name = "N", value_parser = count)]
    sessions: Option<usize>,
    /// Session openings (connect → WELCOME) in progress at once, over all threads [default: 64 per thread]
    #[arg(long, value_name = "N", value_parser = count)]
    concurrency: Option<usize>,
    /// pub/sub: N of the subscribers subscribe and then never read (slow consumers); shows whether the router pushes back or buffers
    #[arg(long, value_name = "N", value_parser = count)]
    stall: Option<usize>,
    /// connections: when some sessions fail to open (a router at its limit) or have not opened by --connect-timeout, hold those that did and report the rest (exit 1) instead of giving up
    #[arg(long)]
    hold_partial: bool,
    /// raw: the shape to run without WAMP
    #[arg(long, value_enum, default_value_t = RawShape::Fanout)]
    shape: RawShape,
    /// raw: threads of loadgen's own server [default: number of CPUs]
    #[arg(long, value_name = "N", value_parser = count)]
    server_threads: Option<usize>,
}

/// How hard to push.
#[derive(Args, Debug)]
#[command(next_help_heading = "Load")]
struct LoadArgs {
    /// Worker threads [default: number of CPUs]
    #[arg(long, value_name = "N", value_parser = count)]
    threads: Option<usize>,
    /// Open loop: messages/s per publisher or caller; latency is measured from the intended send time. Omit (or 0) for closed loop
    #[arg(long, value_name = "R", value_parser = parse_count)]
    rate: Option<u64>,
    /// Closed loop: publications in flight per publisher and topic [default: 16], or calls outstanding per caller [default: 1]
    #[arg(long, value_name = "W", value_parser = parse_count)]
    window: Option<u64>,
    /// Size of the Arguments list carrying the probe
    #[arg(long, value_name = "BYTES", value_parser = payload_bytes, default_value = "64")]
    payload: usize,
}

/// How long each phase lasts.
#[derive(Args, Debug)]
#[command(next_help_heading = "Timeline")]
struct TimelineArgs {
    /// Run before measuring
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Measure for this long (connections: hold the sessions this long; SIGTERM or SIGINT ends the hold early, with the report)
    #[arg(long, value_name = "D", value_parser = positive_duration, default_value = "5s")]
    duration: Duration,
    /// Wait this long for messages still in flight
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "2s")]
    drain: Duration,
    /// Give up setting up sessions after this long (logins: the storm's bound; what it reached by then is reported)
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "30s")]
    connect_timeout: Duration,
}

/// What to record and print.
#[derive(Args, Debug)]
#[command(next_help_heading = "Output")]
struct OutputArgs {
    /// Sample the RSS of PID and its children during the run
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// Write every figure and the parameters as JSON
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw this run's latency percentile distribution
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// The run's name in reports and plots
    #[arg(long, value_name = "NAME")]
    label: Option<String>,
    /// Live progress line [default: when stderr is a terminal]
    #[arg(long, overrides_with = "no_progress")]
    progress: bool,
    /// No live progress line
    #[arg(long, overrides_with = "progress")]
    no_progress: bool,
    /// No summary on stdout
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct PlotArgs {
    /// JSON reports written with --json
    #[arg(value_name = "REPORT.json", required = true)]
    inputs: Vec<PathBuf>,
    /// The SVG to write
    #[arg(short, long, value_name = "FILE.svg")]
    out: PathBuf,
    /// The plot's title
    #[arg(long, value_name = "T")]
    title: Option<String>,
    /// Linear latency axis instead of the logarithmic one
    #[arg(long)]
    linear: bool,
}

#[derive(Args, Debug)]
struct WaitArgs {
    /// Give up after this long
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    // Last: its help heading would also cover the flags after it.
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    tls: TlsFlags,
    #[command(flatten)]
    auth: AuthFlags,
}

impl TlsFlags {
    fn into_args(self) -> TlsArgs {
        TlsArgs {
            ca: self.tls_ca,
            insecure: self.tls_insecure,
            cert: self.tls_cert,
            key: self.tls_key,
            server_name: self.tls_server_name,
            resume: self.tls_resume,
            rustls_records: self.tls_rustls_records,
        }
    }
}

impl AuthFlags {
    fn into_args(self) -> AuthArgs {
        AuthArgs {
            method: self.authmethod,
            authid: self.authid,
            authrole: self.authrole,
            ticket: self.ticket,
            secret: self.secret,
            cryptosign_seed: self.cryptosign_seed,
        }
    }
}

fn authmethod(s: &str) -> Result<AuthMethod, String> {
    AuthMethod::parse(s)
        .filter(|m| *m != AuthMethod::Scram)
        .ok_or_else(|| "expected anonymous, ticket, wampcra, cryptosign or tls".into())
}

#[derive(Args, Debug)]
struct RssArgs {
    /// The process whose tree to measure
    #[arg(long, value_name = "PID")]
    pid: u32,
}

impl ScenarioArgs {
    /// The scenario's defaults with the given flags laid over them.
    fn into_options(self, scenario: Scenario) -> Options {
        let d = Options::defaults(scenario);
        let (t, s, l, tl, out) = (self.target, self.shape, self.load, self.timeline, self.output);
        Options {
            scenario,
            url: t.url,
            serializer: t.serializer,
            realm: t.realm,
            source: t.source.map(|s| s.0).unwrap_or_default(),
            tls: self.tls.into_args(),
            auth: self.auth.into_args(),
            threads: l.threads.map_or(d.threads, |n| n.max(1)),
            publishers: s.publishers.unwrap_or(d.publishers),
            subscribers: s.subscribers.unwrap_or(d.subscribers),
            topics: s.topics.map_or(d.topics, |n| n.max(1)),
            topics_per_sub: s.topics_per_sub.map(|n| n.max(1)),
            callers: s.callers.unwrap_or(d.callers),
            callees: s.callees.map_or(d.callees, |n| n.max(1)),
            sessions: s.sessions.unwrap_or(d.sessions),
            concurrency: s.concurrency.map(|n| n.max(1)),
            stall: s.stall.unwrap_or(d.stall),
            hold_partial: s.hold_partial,
            shape: s.shape,
            server_threads: s.server_threads.map_or(d.server_threads, |n| n.max(1)),
            // 0 is the closed loop, like no --rate.
            rate: l.rate.filter(|&r| r > 0),
            window: l.window.map(|w| w.max(1)),
            payload: l.payload,
            warmup: tl.warmup,
            duration: tl.duration,
            drain: tl.drain,
            connect_timeout: tl.connect_timeout,
            pid: out.pid,
            json: out.json,
            plot: out.plot,
            label: out.label,
            progress: if out.progress {
                Some(true)
            } else if out.no_progress {
                Some(false)
            } else {
                None
            },
            quiet: out.quiet,
        }
    }
}

/// Parse the command line (with the program name first). `Err` is clap's: usage errors,
/// and also `--help`; `clap::Error::exit` prints it and exits 2 (or 0 for help).
pub fn parse_args<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let scenario = |args: ScenarioArgs, s: Scenario| Command::Run(Box::new(args.into_options(s)));
    Ok(match Cli::try_parse_from(args)?.command {
        None => Command::Help,
        Some(Sub::Fanout(a)) => scenario(a, Scenario::Fanout),
        Some(Sub::Fanin(a)) => scenario(a, Scenario::Fanin),
        Some(Sub::Pubsub(a)) => scenario(a, Scenario::Pubsub),
        Some(Sub::Rpc(a)) => scenario(a, Scenario::Rpc),
        Some(Sub::Connections(a)) => scenario(a, Scenario::Connections),
        Some(Sub::Logins(a)) => scenario(a, Scenario::Logins),
        Some(Sub::Raw(a)) => scenario(a, Scenario::Raw),
        Some(Sub::Plot(p)) => Command::Plot { inputs: p.inputs, out: p.out, title: p.title, linear: p.linear },
        Some(Sub::Wait(w)) => Command::Wait {
            url: w.target.url,
            serializer: w.target.serializer,
            realm: w.target.realm,
            source: w.target.source.map(|s| s.0).unwrap_or_default(),
            tls: Box::new(w.tls.into_args()),
            auth: Box::new(w.auth.into_args()),
            timeout: w.timeout,
        },
        Some(Sub::Rss(r)) => Command::Rss { pid: r.pid },
    })
}

/// The top-level help (what `loadgen` with no arguments prints).
pub fn help() -> String {
    Cli::command().render_help().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, clap::Error> {
        parse_args(std::iter::once("loadgen").chain(s.split_whitespace()))
    }

    fn options(s: &str) -> Options {
        match parse(s) {
            Ok(Command::Run(o)) => *o,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_and_counts() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_count("10k").unwrap(), 10_000);
        assert_eq!(parse_count("1.5M").unwrap(), 1_500_000);
        assert!(parse_count("-1").is_err());
    }

    #[test]
    fn scenario_flags() {
        let o = options("fanout --subscribers 1k --rate=2k --payload 128 --url rs://127.0.0.1:9");
        assert_eq!((o.subscribers, o.rate, o.payload), (1000, Some(2000), 128));
        assert_eq!(o.url, "rs://127.0.0.1:9");
        assert!(parse("fanout --bogus 1").is_err());
        assert!(parse("fanout --rate").is_err());
        assert!(matches!(parse("").unwrap(), Command::Help));
        let Command::Plot { inputs, out, .. } = parse("plot a.json b.json --out x.svg").unwrap() else { panic!() };
        assert_eq!((inputs.len(), out), (2, PathBuf::from("x.svg")));
        assert!(parse("plot a.json").is_err());
        assert!(parse("plot --out x.svg").is_err());
    }

    #[test]
    fn defaults_depend_on_the_scenario() {
        // Goal: each scenario's defaults are the ones the help states. Method: parse bare.
        let o = options("fanin");
        assert_eq!((o.publishers, o.subscribers), (100, 1));
        let o = options("pubsub");
        assert_eq!((o.publishers, o.subscribers, o.topics, o.topics_per_sub), (10, 100, 10, None));
        let o = options("rpc");
        assert_eq!((o.callers, o.callees, o.window), (64, 1, None));
        let o = options("raw --shape echo");
        assert_eq!((o.callers, o.shape), (1, RawShape::Echo));
        let o = options("connections");
        assert_eq!(
            (o.sessions, o.duration, o.warmup, o.progress),
            (1000, Duration::from_secs(5), Duration::from_secs(1), None)
        );
        assert_eq!(o.url, "ws://127.0.0.1:8080/ws");
    }

    #[test]
    fn tls_auth_and_login_storm_flags() {
        // Goal: the TLS and authentication flags reach the options (also for `wait`), the
        // login storm has its own defaults, and pairs that belong together are enforced.
        // Method: parse.
        let o = options(
            "logins --url rss://127.0.0.1:9 --tls-ca ca.pem --tls-server-name localhost \
             --authmethod cryptosign --cryptosign-seed 00 --concurrency 100",
        );
        assert_eq!((o.scenario, o.sessions, o.concurrency), (Scenario::Logins, 10_000, Some(100)));
        assert_eq!(o.tls.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(o.tls.server_name.as_deref(), Some("localhost"));
        assert_eq!(o.auth.method, Some(AuthMethod::Cryptosign));
        let o = options("rpc --authmethod ticket --authid joe --ticket t --tls-insecure");
        assert_eq!(
            (o.auth.authid.as_deref(), o.auth.ticket.as_deref(), o.tls.insecure),
            (Some("joe"), Some("t"), true)
        );
        assert_eq!(o.concurrency, None);
        assert!(parse("rpc --authmethod password").is_err());
        assert!(parse("rpc --authmethod scram").is_err(), "the router knows scram, loadgen does not");
        assert!(parse("rpc --tls-cert c.pem").is_err(), "--tls-cert without --tls-key");
        let Command::Wait { tls, auth, .. } =
            parse("wait --url wss://h:1/ws --tls-insecure --authmethod anonymous").unwrap()
        else {
            panic!()
        };
        assert!(tls.insecure);
        assert_eq!(auth.method, Some(AuthMethod::Anonymous));
        // Secrets never reach the report's parameters.
        let o = options("rpc --authmethod wampcra --authid a --secret hush");
        assert!(!o.to_json().to_string().contains("hush"));
    }

    #[test]
    fn source_addresses() {
        // Goal: --source takes one or more addresses of one family, in order, for every
        // scenario and `wait`; a bad list is a usage error. Method: parse.
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(parse_sources("127.0.0.2").unwrap(), vec![ip("127.0.0.2")]);
        assert_eq!(parse_sources("127.0.0.3, 127.0.0.2").unwrap(), vec![ip("127.0.0.3"), ip("127.0.0.2")]);
        assert_eq!(parse_sources("::1").unwrap(), vec![ip("::1")]);
        for bad in ["", "127.0.0.2,", "localhost", "127.0.0.2:80", "127.0.0.2,127.0.0.2", "127.0.0.2,::1"] {
            assert!(parse_sources(bad).is_err(), "{bad:?}");
        }
        let o = options("connections --source 127.0.0.2,127.0.0.3 --hold-partial --url rs://127.0.0.1:9");
        assert_eq!((o.source.clone(), o.hold_partial), (vec![ip("127.0.0.2"), ip("127.0.0.3")], true));
        assert_eq!(o.to_json()["source"], serde_json::json!(["127.0.0.2", "127.0.0.3"]));
        let o = options("connections --source 127.0.0.2 --source 127.0.0.4");
        assert_eq!(o.source, vec![ip("127.0.0.4")], "the last --source wins");
        assert!(options("rpc").source.is_empty() && !options("rpc").hold_partial);
        assert!(parse("connections --source 127.0.0.2,nope").is_err());
        let Command::Wait { source, .. } = parse("wait --source 127.0.0.5").unwrap() else { panic!() };
        assert_eq!(source, vec![ip("127.0.0.5")]);
    }

    #[test]
    fn later_flags_win_and_values_are_bounded() {
        // Goal: a repeated flag takes its last value (bench/compare.sh relies on it), and
        // out-of-range values are usage errors. Method: parse both kinds.
        let o = options("connections --warmup 1 --duration 3 --warmup 2 --progress --no-progress");
        assert_eq!((o.warmup, o.duration, o.progress), (Duration::from_secs(2), Duration::from_secs(3), Some(false)));
        let o = options("rpc --no-progress --progress --threads 0 --window 0 --rate 0");
        assert_eq!((o.progress, o.threads, o.window, o.rate), (Some(true), 1, Some(1), None));
        assert!(parse(&format!("fanout --payload {}", PAYLOAD_MAX_BYTES + 1)).is_err());
        assert!(parse("fanout --duration 0").is_err());
        assert!(parse("fanout --shape sideways").is_err());
        assert!(parse("fanout --serializer xml").is_err());
        assert!(parse("rss").is_err());
        let Command::Wait { timeout, realm, .. } = parse("wait --timeout 15s --realm r2").unwrap() else { panic!() };
        assert_eq!((timeout, realm.as_str()), (Duration::from_secs(15), "r2"));
    }
}
