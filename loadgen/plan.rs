//! A run's plan: every session to open and its role, the flows to track, the load shape.
//! Built from the command line by [`Plan::build`]; read-only once the workers start.

use std::time::Duration;

use crate::cli::{Options, RawShape, Scenario};
use crate::client::{Target, Transport};

/// What one session does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleSpec {
    /// Publishes round-robin over every topic. Carries the publisher index.
    Publisher(u32),
    /// Subscribes to these topic indices.
    Subscriber(Vec<u32>),
    /// Subscribes like a subscriber, then never reads: a slow consumer. Not counted as a
    /// receiver; shows whether the router pushes back or buffers without bound.
    Stalled(Vec<u32>),
    /// Calls the procedure. Carries the caller index.
    Caller(u32),
    Callee,
    /// Opens a session and holds it.
    Idle,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub target: Target,
    pub threads: usize,
    pub sessions: Vec<RoleSpec>,
    pub topic_names: Vec<String>,
    pub procedure: String,
    /// Publishers (pub/sub) or callers (RPC).
    pub sources: usize,
    /// Tracked flows: publisher × topic (pub/sub), or one per caller (RPC).
    pub flows: usize,
    /// For each flow, how many sessions receive it (subscribers of its topic; 1 for calls).
    pub receivers: Vec<u64>,
    /// Messages per second per source; None is closed loop.
    pub rate: Option<u64>,
    /// Closed loop: publications in flight per flow, or calls outstanding per caller.
    pub window: u64,
    pub payload_bytes: usize,
    pub callees: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    pub connect_timeout: Duration,
    /// Handshakes in progress per worker at most (bounds SYN bursts against a backlog;
    /// `--concurrency` spread over the workers).
    pub handshakes_max: usize,
    /// Login storm: close each session as soon as its WELCOME arrives.
    pub close_on_welcome: bool,
}

/// Session openings in progress per worker without `--concurrency`.
const HANDSHAKES_PER_WORKER_DEFAULT: usize = 64;

impl Plan {
    pub fn topics(&self) -> usize {
        self.topic_names.len()
    }

    pub fn is_rpc(&self) -> bool {
        self.sessions.iter().any(|s| matches!(s, RoleSpec::Caller(_)))
    }

    pub fn build(o: &Options, target: Target) -> Result<Plan, String> {
        let mut sessions = Vec::new();
        let mut topics = 1usize;
        let mut sources = 0usize;
        let mut callees = 0usize;
        let shape = match o.scenario {
            Scenario::Raw => o.shape,
            _ => RawShape::Fanout,
        };
        let pubsub = |publishers: usize, subscribers: usize, topics: usize, per_sub: usize, s: &mut Vec<RoleSpec>| {
            for p in 0..publishers {
                s.push(RoleSpec::Publisher(p as u32));
            }
            for i in 0..subscribers {
                let first = (i * per_sub) % topics;
                let mut ts: Vec<u32> = (0..per_sub).map(|k| ((first + k) % topics) as u32).collect();
                ts.sort_unstable();
                ts.dedup();
                s.push(RoleSpec::Subscriber(ts));
            }
        };
        match (o.scenario, shape) {
            (Scenario::Fanout, _) | (Scenario::Raw, RawShape::Fanout) => {
                sources = 1;
                pubsub(1, o.subscribers, 1, 1, &mut sessions);
            }
            (Scenario::Fanin, _) => {
                sources = o.publishers;
                pubsub(o.publishers, o.subscribers, 1, 1, &mut sessions);
            }
            (Scenario::Pubsub, _) => {
                topics = o.topics.max(1);
                sources = o.publishers;
                let per_sub = o.topics_per_sub.unwrap_or(topics).clamp(1, topics);
                if o.subscribers * per_sub < topics && o.rate.is_none() {
                    return Err(format!(
                        "{} subscribers × {per_sub} topics each leave topics without subscribers; \
                         a closed loop needs every topic received",
                        o.subscribers
                    ));
                }
                pubsub(o.publishers, o.subscribers, topics, per_sub, &mut sessions);
            }
            (Scenario::Rpc, _) | (Scenario::Raw, RawShape::Echo) => {
                sources = o.callers;
                if o.scenario == Scenario::Rpc {
                    callees = o.callees.max(1);
                    sessions.extend((0..callees).map(|_| RoleSpec::Callee));
                }
                sessions.extend((0..o.callers).map(|c| RoleSpec::Caller(c as u32)));
            }
            (Scenario::Connections | Scenario::Logins, _) => sessions.extend((0..o.sessions).map(|_| RoleSpec::Idle)),
        }
        if o.stall > 0 {
            let subs: Vec<usize> = sessions
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, RoleSpec::Subscriber(_)))
                .map(|(i, _)| i)
                .collect();
            if o.stall >= subs.len() {
                return Err(format!("--stall {} leaves no subscriber that reads", o.stall));
            }
            for &i in subs.iter().rev().take(o.stall) {
                if let RoleSpec::Subscriber(ts) = &sessions[i] {
                    sessions[i] = RoleSpec::Stalled(ts.clone());
                }
            }
        }
        let session_only = matches!(o.scenario, Scenario::Connections | Scenario::Logins);
        if sources == 0 && !session_only {
            return Err("the scenario needs at least one publisher or caller".into());
        }
        let is_rpc = matches!((o.scenario, shape), (Scenario::Rpc, _) | (Scenario::Raw, RawShape::Echo));
        let flows = if is_rpc { sources } else { sources * topics };
        let mut receivers = vec![0u64; flows];
        if is_rpc {
            receivers.iter_mut().for_each(|r| *r = 1);
        } else {
            let mut per_topic = vec![0u64; topics];
            for s in &sessions {
                if let RoleSpec::Subscriber(ts) = s {
                    for &t in ts {
                        per_topic[t as usize] += 1;
                    }
                }
            }
            for (f, r) in receivers.iter_mut().enumerate() {
                *r = per_topic[f % topics];
            }
        }
        if target.transport == Transport::Raw && o.scenario != Scenario::Raw {
            return Err("raw transport is only for the raw scenario".into());
        }
        let prefix = format!("loadgen.{}", o.scenario.name());
        // A login storm's workers only open sessions: no more of them than openings allowed
        // at once (each worker has at least one in progress).
        let threads = match (o.scenario, o.concurrency) {
            (Scenario::Logins, Some(c)) => o.threads.clamp(1, c.max(1)),
            _ => o.threads.max(1),
        };
        let workers = threads.min(sessions.len().max(1));
        Ok(Plan {
            target,
            threads,
            sessions,
            topic_names: (0..topics).map(|t| format!("{prefix}.topic{t}")).collect(),
            procedure: format!("{prefix}.echo"),
            sources,
            flows,
            receivers,
            rate: o.rate,
            window: o.window.unwrap_or(if is_rpc { 1 } else { 16 }).max(1),
            payload_bytes: o.payload,
            callees,
            warmup: o.warmup,
            duration: o.duration,
            drain: o.drain,
            connect_timeout: o.connect_timeout,
            handshakes_max: o.concurrency.map_or(HANDSHAKES_PER_WORKER_DEFAULT, |c| c.div_ceil(workers).max(1)),
            close_on_welcome: o.scenario == Scenario::Logins,
        })
    }

    /// Transport for the target (raw scenario: loadgen's own server).
    pub fn transport(&self) -> Transport {
        self.target.transport
    }
}
