//! The command line: subcommands and flags into [`Command`].

use std::path::PathBuf;
use std::time::Duration;

use shardbar::proto::wire::Serializer;

pub const USAGE: &str = "\
loadgen — a WAMP load generator (shardbar's, works against any WAMP router)

USAGE
  loadgen fanout      [--subscribers N]                      1 publisher → N subscribers (1000)
  loadgen fanin       [--publishers N] [--subscribers N]     N publishers (100) → 1 subscriber
  loadgen pubsub      [--publishers P] [--subscribers S] [--topics T] [--topics-per-sub K]
                                                             P (10) × S (100) × T (10) topics
  loadgen rpc         [--callers C] [--callees K]            C callers (64) → K callees (1)
  loadgen connections [--sessions N] [--pid PID]             open and hold N idle sessions (1000)
  loadgen raw         [--shape fanout|echo]                  the same shapes over plain TCP, no WAMP,
                      [--subscribers N | --callers C]        against loadgen's own server: the
                      [--server-threads N]                   machine's limit
  loadgen plot A.json [B.json ...] --out FILE.svg [--title T] [--linear]
  loadgen wait        [--url URL] [--timeout 30s]            wait until a session opens; prints ms
  loadgen rss         --pid PID                              RSS of PID and its children, KiB

FLAGS (scenarios)
  --url URL            ws://127.0.0.1:8080/ws (WebSocket) or rs://127.0.0.1:8080 (RawSocket)
  --serializer S       json | msgpack | cbor (default: json for ws, msgpack for rs)
  --realm R            realm (realm1)
  --threads N          worker threads (default: number of CPUs)
  --rate R             open loop: messages/s per publisher or caller (k, M suffixes accepted);
                       latency is measured from the intended send time. Omit for closed loop.
  --window W           closed loop: publications in flight per publisher and topic (16), or
                       calls outstanding per caller (1)
  --payload BYTES      size of the Arguments list carrying the probe (64)
  --warmup D           1s       --duration D   5s       --drain D   2s
  --connect-timeout D  30s      (durations: 500ms, 2s, 1m; a bare number is seconds)
  --stall N            (pub/sub) N of the subscribers subscribe and then never read: slow
                       consumers; shows whether the router pushes back or buffers
  --pid PID            sample the RSS of PID and its children during the run
  --json FILE          write every figure and the parameters as JSON
  --plot FILE.svg      draw this run's latency percentile distribution
  --label NAME         the run's name in reports and plots
  --progress | --no-progress   live progress line (default: when stderr is a terminal)
  --quiet              no summary on stdout

EXIT STATUS
  0 success; 1 loss, reordering, lost sessions or protocol errors in a closed-loop run
  (reordering and lost sessions in any run); 2 usage or setup error.
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Fanout,
    Fanin,
    Pubsub,
    Rpc,
    Connections,
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
            Scenario::Raw => "raw",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    pub threads: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub topics: usize,
    pub topics_per_sub: Option<usize>,
    pub callers: usize,
    pub callees: usize,
    pub sessions: usize,
    pub stall: usize,
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
    Plot { inputs: Vec<PathBuf>, out: PathBuf, title: Option<String>, linear: bool },
    Wait { url: String, serializer: Option<Serializer>, realm: String, timeout: Duration },
    Rss { pid: u32 },
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
            threads: cpus(),
            publishers,
            subscribers,
            topics: 10,
            topics_per_sub: None,
            callers: if scenario == Scenario::Raw { 1 } else { 64 },
            callees: 1,
            sessions: 1000,
            stall: 0,
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

    /// Every parameter, for the JSON report.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.scenario.name(),
            "url": self.url,
            "serializer": self.serializer.map(|s| s.name()),
            "realm": self.realm,
            "threads": self.threads,
            "publishers": self.publishers,
            "subscribers": self.subscribers,
            "topics": self.topics,
            "topics_per_sub": self.topics_per_sub,
            "callers": self.callers,
            "callees": self.callees,
            "sessions": self.sessions,
            "stall": self.stall,
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

fn serializer(s: &str) -> Result<Serializer, String> {
    Serializer::from_name(s).ok_or_else(|| format!("serializer {s:?} is not json, msgpack or cbor"))
}

pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args: Vec<String> = args.into_iter().collect();
    // `--flag=value` is the same as `--flag value`.
    args = args
        .into_iter()
        .flat_map(|a| match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => vec![k.to_owned(), v.to_owned()],
            _ => vec![a],
        })
        .collect();
    let mut it = args.into_iter();
    let Some(sub) = it.next() else { return Ok(Command::Help) };
    let scenario = match sub.as_str() {
        "-h" | "--help" | "help" => return Ok(Command::Help),
        "fanout" => Scenario::Fanout,
        "fanin" => Scenario::Fanin,
        "pubsub" => Scenario::Pubsub,
        "rpc" => Scenario::Rpc,
        "connections" => Scenario::Connections,
        "raw" => Scenario::Raw,
        "plot" => return parse_plot(it),
        "wait" => {
            let (mut url, mut ser, mut realm, mut timeout) =
                ("ws://127.0.0.1:8080/ws".to_owned(), None, "realm1".to_owned(), Duration::from_secs(30));
            while let Some(flag) = it.next() {
                let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
                match flag.as_str() {
                    "--url" => url = val()?,
                    "--serializer" => ser = Some(serializer(&val()?)?),
                    "--realm" => realm = val()?,
                    "--timeout" => timeout = parse_duration(&val()?)?,
                    _ => return Err(format!("unknown flag {flag} for wait")),
                }
            }
            return Ok(Command::Wait { url, serializer: ser, realm, timeout });
        }
        "rss" => {
            let mut pid = None;
            while let Some(flag) = it.next() {
                match flag.as_str() {
                    "--pid" => pid = Some(it.next().and_then(|v| v.parse().ok()).ok_or("--pid needs a number")?),
                    _ => return Err(format!("unknown flag {flag} for rss")),
                }
            }
            return Ok(Command::Rss { pid: pid.ok_or("rss needs --pid")? });
        }
        other => return Err(format!("unknown command {other:?}; try --help")),
    };
    let mut o = Options::defaults(scenario);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let count = |v: String| -> Result<usize, String> { parse_count(&v).map(|n| n as usize) };
        match flag.as_str() {
            "--url" => o.url = val()?,
            "--serializer" => o.serializer = Some(serializer(&val()?)?),
            "--realm" => o.realm = val()?,
            "--threads" => o.threads = count(val()?)?.max(1),
            "--publishers" => o.publishers = count(val()?)?,
            "--subscribers" => o.subscribers = count(val()?)?,
            "--topics" => o.topics = count(val()?)?.max(1),
            "--topics-per-sub" => o.topics_per_sub = Some(count(val()?)?.max(1)),
            "--callers" => o.callers = count(val()?)?,
            "--callees" => o.callees = count(val()?)?.max(1),
            "--sessions" => o.sessions = count(val()?)?,
            "--stall" => o.stall = count(val()?)?,
            "--shape" => {
                o.shape = match val()?.as_str() {
                    "fanout" => RawShape::Fanout,
                    "echo" => RawShape::Echo,
                    s => return Err(format!("--shape {s:?} is not fanout or echo")),
                }
            }
            "--server-threads" => o.server_threads = count(val()?)?.max(1),
            "--rate" => {
                let r = parse_count(&val()?)?;
                o.rate = (r > 0).then_some(r);
            }
            "--window" => o.window = Some(parse_count(&val()?)?.max(1)),
            "--payload" => o.payload = count(val()?)?,
            "--warmup" => o.warmup = parse_duration(&val()?)?,
            "--duration" => o.duration = parse_duration(&val()?)?,
            "--drain" => o.drain = parse_duration(&val()?)?,
            "--connect-timeout" => o.connect_timeout = parse_duration(&val()?)?,
            "--pid" => o.pid = Some(val()?.parse().map_err(|_| "--pid needs a number")?),
            "--json" => o.json = Some(PathBuf::from(val()?)),
            "--plot" => o.plot = Some(PathBuf::from(val()?)),
            "--label" => o.label = Some(val()?),
            "--progress" => o.progress = Some(true),
            "--no-progress" => o.progress = Some(false),
            "--quiet" => o.quiet = true,
            _ => return Err(format!("unknown flag {flag} for {}; try --help", scenario.name())),
        }
    }
    if o.payload > crate::payload::PAYLOAD_MAX_BYTES {
        return Err(format!("--payload is at most {} bytes", crate::payload::PAYLOAD_MAX_BYTES));
    }
    if o.duration.is_zero() {
        return Err("--duration must be positive".into());
    }
    Ok(Command::Run(Box::new(o)))
}

fn parse_plot(mut it: impl Iterator<Item = String>) -> Result<Command, String> {
    let (mut inputs, mut out, mut title, mut linear) = (Vec::new(), None, None, false);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" | "-o" => out = Some(PathBuf::from(it.next().ok_or("--out needs a file")?)),
            "--title" => title = Some(it.next().ok_or("--title needs a value")?),
            "--linear" => linear = true,
            s if s.starts_with("--") => return Err(format!("unknown flag {s} for plot")),
            _ => inputs.push(PathBuf::from(a)),
        }
    }
    if inputs.is_empty() {
        return Err("plot needs at least one JSON report".into());
    }
    Ok(Command::Plot { inputs, out: out.ok_or("plot needs --out FILE.svg")?, title, linear })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
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
        let Command::Run(o) =
            parse_args(args("fanout --subscribers 1k --rate=2k --payload 128 --url rs://127.0.0.1:9")).unwrap()
        else {
            panic!()
        };
        assert_eq!((o.subscribers, o.rate, o.payload), (1000, Some(2000), 128));
        assert_eq!(o.url, "rs://127.0.0.1:9");
        assert!(parse_args(args("fanout --bogus 1")).is_err());
        assert!(parse_args(args("fanout --rate")).is_err());
        assert!(matches!(parse_args(args("")).unwrap(), Command::Help));
        let Command::Plot { inputs, out, .. } = parse_args(args("plot a.json b.json --out x.svg")).unwrap() else {
            panic!()
        };
        assert_eq!((inputs.len(), out), (2, PathBuf::from("x.svg")));
        assert!(parse_args(args("plot a.json")).is_err());
    }
}
