//! What the shards target's input means: a router setup and a list of client actions,
//! derived with `arbitrary`, and how each structured action becomes a WAMP message.
//!
//! Names are drawn from small fixed sets so that sessions meet: every topic and procedure
//! starts with `fz`, and the pattern subscriptions and registrations overlap the exact ones.
//! Indices (`client`, `which`) are taken modulo whatever exists, so every input is usable.

use arbitrary::Arbitrary;
use shardbar::limits;
use shardbar::proto::wire::{Dict, Value};

/// Marks the payload of a structured PUBLISH: `[MARK, publisher client, sequence]`. An
/// EVENT that carries it is checked for order.
pub const MARK: &str = "fz-seq";

/// Largest number of actions run from one input (more are ignored): keeps one execution
/// short so the fuzzer explores instead of grinding.
pub const ACTIONS_MAX: usize = 256;

/// Largest number of connections one input opens.
pub const CLIENTS_MAX: usize = 12;

#[derive(Arbitrary, Debug)]
pub struct Scenario {
    /// 1 to 4 shards.
    pub shards: u8,
    pub cap: PendingCap,
    /// The realm drops EVENTs for a full connection instead of disconnecting it.
    pub drop_slow_events: bool,
    /// Deliver the whole mesh after every action: no interleavings across shards, but
    /// short inputs reach deep states (sessions that subscribe, publish and call).
    pub settle_each: bool,
    pub actions: Vec<Action>,
}

impl Scenario {
    pub fn shard_count(&self) -> usize {
        1 + usize::from(self.shards % 4)
    }
}

/// The per-connection queued-bytes cap (`pending_bytes_max`): small ones make slow
/// consumers out of a few messages.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum PendingCap {
    Tiny,
    Small,
    Floor,
}

impl PendingCap {
    pub fn bytes(self) -> usize {
        match self {
            PendingCap::Tiny => 2 * 1024,
            PendingCap::Small => 8 * 1024,
            PendingCap::Floor => limits::PENDING_BYTES_FLOOR,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum Action {
    /// A transport finished its handshake on `shard`; `hello`: the client sends HELLO.
    Open {
        shard: u8,
        serializer: u8,
        websocket: bool,
        small_peer_limit: bool,
        hello: bool,
    },
    Hello {
        client: u8,
        unknown_realm: bool,
    },
    Subscribe {
        client: u8,
        topic: u8,
        policy: Policy,
    },
    Unsubscribe {
        client: u8,
        which: u8,
    },
    /// `1 + burst % 8` publications in a row.
    Publish {
        client: u8,
        topic: u8,
        exclude_me: bool,
        acknowledge: bool,
        size: u8,
        burst: u8,
    },
    Register {
        client: u8,
        procedure: u8,
        policy: Policy,
        invoke: u8,
    },
    Unregister {
        client: u8,
        which: u8,
    },
    Call {
        client: u8,
        procedure: u8,
        receive_progress: bool,
        timeout_ms: Option<u16>,
        size: u8,
    },
    /// Answer a pending INVOCATION (a progressive YIELD leaves it pending).
    Yield {
        client: u8,
        which: u8,
        progress: bool,
        size: u8,
    },
    /// Fail a pending INVOCATION; `wamp.error.unavailable` asks the router to re-route.
    InvocationError {
        client: u8,
        which: u8,
        unavailable: bool,
    },
    Cancel {
        client: u8,
        which: u8,
        mode: u8,
    },
    Goodbye {
        client: u8,
    },
    /// The transport drops.
    Close {
        client: u8,
    },
    /// Bytes that may or may not be a WAMP message, as one message frame.
    Garbage {
        client: u8,
        bytes: Vec<u8>,
    },
    /// The client stops or starts reading its connection.
    Reading {
        client: u8,
        on: bool,
    },
    /// Bytes arrived, or a transport pong, or a transport ping from the peer.
    Rx {
        client: u8,
    },
    Pong {
        client: u8,
    },
    PeerPing {
        client: u8,
    },
    /// Deliver up to `count` mesh batches, picking (from, to) pairs by `pick`.
    Deliver {
        pick: u8,
        count: u8,
    },
    /// Deliver every mesh batch until none is left.
    Settle,
    /// Time passes; due timers run.
    Advance {
        ms: u16,
    },
}

/// Subscription and registration match policies.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Policy {
    Exact,
    Prefix,
    Wildcard,
}

const TOPICS: [&str; 4] = ["fz.a", "fz.b", "fz.a.x", "fz.b.x"];
const PREFIXES: [&str; 2] = ["fz", "fz.a"];
const WILDCARDS: [&str; 2] = ["fz..x", "fz.a."];
const INVOKE: [&str; 5] = ["single", "roundrobin", "random", "first", "last"];
const CANCEL_MODES: [&str; 3] = ["skip", "kill", "killnowait"];

/// The URI and options of a SUBSCRIBE or REGISTER.
pub fn route(index: u8, policy: Policy) -> (String, Dict) {
    let i = usize::from(index);
    match policy {
        Policy::Exact => (TOPICS[i % TOPICS.len()].into(), Dict::new()),
        Policy::Prefix => (PREFIXES[i % PREFIXES.len()].into(), Dict::new().with("match", "prefix")),
        Policy::Wildcard => (WILDCARDS[i % WILDCARDS.len()].into(), Dict::new().with("match", "wildcard")),
    }
}

/// A concrete topic or procedure (what PUBLISH and CALL name).
pub fn name(index: u8) -> String {
    TOPICS[usize::from(index) % TOPICS.len()].into()
}

pub fn invoke_policy(index: u8) -> &'static str {
    INVOKE[usize::from(index) % INVOKE.len()]
}

pub fn cancel_mode(index: u8) -> &'static str {
    CANCEL_MODES[usize::from(index) % CANCEL_MODES.len()]
}

/// `size` × 8 bytes of filler, so payloads range from nothing to about 2 KiB.
pub fn filler(size: u8) -> Value {
    Value::Str("x".repeat(usize::from(size) * 8))
}

/// The HELLO details of every client: all four roles, with the RPC features the router
/// acts on.
pub fn hello_details() -> Dict {
    let roles = Dict::new()
        .with("publisher", Dict::new())
        .with("subscriber", Dict::new())
        .with("caller", Dict::new().with("features", Dict::new().with("progressive_call_results", true)))
        .with(
            "callee",
            Dict::new()
                .with("features", Dict::new().with("progressive_call_results", true).with("call_canceling", true)),
        );
    Dict::new().with("roles", roles)
}

/// Whether `v` contains the string [`MARK`] anywhere (a garbage frame that does would
/// forge a checked publication, so it is not sent).
pub fn mentions_mark(v: &Value) -> bool {
    match v {
        Value::Str(s) => s == MARK,
        Value::List(items) => items.iter().any(mentions_mark),
        Value::Dict(d) => d.iter().any(|(k, v)| k == MARK || mentions_mark(v)),
        _ => false,
    }
}
