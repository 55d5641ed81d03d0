//! The inter-shard messages: the whole contract between shards, as plain `Send` data.
//!
//! Shards talk over one FIFO channel per ordered pair (from, to). Two kinds of traffic share
//! it:
//!
//! - **Control plane** (interest changes): a shard asks a URI's *owner* shard
//!   (`hash(realm, uri, match) % shards`) to add or remove its interest. The owner is
//!   authoritative for the subscription/registration ID and membership. It pushes the new
//!   route to every shard and, for additions, waits for every shard's [`MeshMsg::BarrierAck`]
//!   before answering, so that SUBSCRIBED/REGISTERED is only sent once every shard routes
//!   to the new member.
//! - **Data plane**: a publication or call leaves from the publisher's/caller's home shard
//!   straight to each receiver's home shard ([`MeshMsg::Deliver`], [`MeshMsg::Invoke`]).
//!   Delivery never detours through the owner, because two owners are two queues and the
//!   spec's per-(publisher, subscriber) order across topics would break.

use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use super::stats::Snapshot;
use super::wire::uri::MatchPolicy;
use super::wire::{Dict, Id, Payload};

/// A shard's index, `0..shards`.
pub type ShardId = usize;

/// A set of shards as a bit mask (`limits::SHARDS_MAX` ≤ 64).
pub type ShardSet = u64;

/// Identifies a barrier (an interest change waiting for every shard's ack) on its owner.
pub type BarrierId = u64;

/// How a shared registration picks a callee (`REGISTER.Options.invoke`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvokePolicy {
    Single,
    RoundRobin,
    Random,
    First,
    Last,
}

impl InvokePolicy {
    pub fn parse(s: &str) -> Option<InvokePolicy> {
        match s {
            "single" => Some(InvokePolicy::Single),
            "roundrobin" => Some(InvokePolicy::RoundRobin),
            "random" => Some(InvokePolicy::Random),
            "first" => Some(InvokePolicy::First),
            "last" => Some(InvokePolicy::Last),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InvokePolicy::Single => "single",
            InvokePolicy::RoundRobin => "roundrobin",
            InvokePolicy::Random => "random",
            InvokePolicy::First => "first",
            InvokePolicy::Last => "last",
        }
    }
}

/// Who published, as the receivers' shards need it for filtering and disclosure.
#[derive(Clone, Debug)]
pub struct Publication {
    pub realm: Arc<str>,
    pub id: Id,
    pub topic: Arc<str>,
    pub publisher: Id,
    /// `Some` when the publisher asked for (or the realm forces) disclosure.
    pub disclose: Option<Identity>,
    /// The publisher does not receive its own event (default true).
    pub exclude_me: bool,
    pub filters: Option<Box<Filters>>,
    pub payload: Payload,
    /// When the PUBLISH was read (routing-latency metric).
    pub read_at: Instant,
}

/// Session identity disclosed to receivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub session: Id,
    pub authid: Arc<str>,
    pub authrole: Arc<str>,
}

/// Subscriber black/white listing (`PUBLISH.Options.exclude*`/`eligible*`). Lists are
/// sorted so membership is a binary search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    pub exclude: Vec<Id>,
    pub exclude_authid: Vec<String>,
    pub exclude_authrole: Vec<String>,
    pub eligible: Option<Vec<Id>>,
    pub eligible_authid: Option<Vec<String>>,
    pub eligible_authrole: Option<Vec<String>>,
}

impl Filters {
    /// Whether a receiver with this identity passes all six filters.
    pub fn admits(&self, session: Id, authid: &str, authrole: &str) -> bool {
        let has_id = |l: &Vec<Id>| l.binary_search(&session).is_ok();
        let has_str = |l: &Vec<String>, s: &str| l.binary_search_by(|x| x.as_str().cmp(s)).is_ok();
        !has_id(&self.exclude)
            && !has_str(&self.exclude_authid, authid)
            && !has_str(&self.exclude_authrole, authrole)
            && self.eligible.as_ref().is_none_or(has_id)
            && self.eligible_authid.as_ref().is_none_or(|l| has_str(l, authid))
            && self.eligible_authrole.as_ref().is_none_or(|l| has_str(l, authrole))
    }

    /// Whether the publication may not be stored for history (filters by session ID).
    pub fn by_session(&self) -> bool {
        !self.exclude.is_empty() || self.eligible.is_some()
    }
}

/// One subscription a delivery is for, on the receiving shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubTarget {
    pub subscription: Id,
    /// A pattern subscription: the EVENT carries `Details.topic`.
    pub pattern: bool,
}

/// A callee as the routing replica knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callee {
    pub shard: ShardId,
    pub session: Id,
}

/// A call's key in its caller's home-shard call table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub shard: ShardId,
    pub seq: u64,
}

/// What a callee's shard needs to build an INVOCATION.
#[derive(Clone, Debug)]
pub struct Invoke {
    pub realm: Arc<str>,
    pub call: CallKey,
    pub callee: Id,
    pub registration: Id,
    /// The registration's URI and match policy (to park an invocation that overtook the
    /// REGISTERED of a registration still waiting for its barrier).
    pub reg_uri: Arc<str>,
    pub reg_policy: MatchPolicy,
    /// The concrete procedure, for pattern registrations (`INVOCATION.Details.procedure`).
    pub procedure: Option<Arc<str>>,
    /// Disclosed caller identity (`INVOCATION.Details.caller*`).
    pub caller: Option<Identity>,
    pub receive_progress: bool,
    /// Call timeout in ms as forwarded to the callee (`INVOCATION.Details.timeout`), 0 = none.
    pub timeout_ms: u64,
    pub payload: Payload,
    /// When the CALL was read (routing-latency metric).
    pub read_at: Instant,
}

/// Why a callee's shard could not even start an invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bounce {
    /// The callee session is gone or no longer holds the registration: try another callee.
    CalleeGone,
    /// The callee answered `wamp.error.unavailable`: try another callee (call re-routing).
    Unavailable,
    /// The callee has too many invocations outstanding.
    Overloaded,
}

/// A message between shards. Variants are grouped: control plane first, then data plane.
#[derive(Debug)]
pub enum MeshMsg {
    // ---- control plane: subscriptions ----
    /// To the owner: the sender wants to have members for (topic, policy).
    SubscribeReq {
        realm: Arc<str>,
        topic: Arc<str>,
        policy: MatchPolicy,
        token: u64,
    },
    /// From the owner: every shard now routes the subscription to the requester.
    SubscribeDone {
        realm: Arc<str>,
        token: u64,
        subscription: Id,
    },
    /// To the owner: the sender has no members left for this subscription.
    SubscribeRelease {
        realm: Arc<str>,
        subscription: Id,
    },
    /// From the owner to every shard: the subscription's full shard set (empty = deleted).
    SubRoute {
        realm: Arc<str>,
        subscription: Id,
        topic: Arc<str>,
        policy: MatchPolicy,
        shards: ShardSet,
        barrier: Option<BarrierId>,
    },

    // ---- control plane: registrations ----
    /// To the owner: register `callee` for (procedure, policy).
    RegisterReq {
        realm: Arc<str>,
        procedure: Arc<str>,
        policy: MatchPolicy,
        invoke: InvokePolicy,
        disclose_caller: bool,
        callee: Id,
        token: u64,
    },
    /// From the owner: the registration's ID, or the error URI and message.
    RegisterDone {
        realm: Arc<str>,
        token: u64,
        result: Result<Id, (&'static str, String)>,
    },
    /// To the owner: remove `callee` from the registration. The owner always answers
    /// [`MeshMsg::UnregisterDone`] with the token, so the requester can hold UNREGISTERED
    /// (or the errors for a vanished callee's calls) until the procedure is really free:
    /// otherwise a client reacting to them could register anew and reach the owner first.
    UnregisterReq {
        realm: Arc<str>,
        registration: Id,
        callee: Id,
        token: u64,
    },
    /// From the owner: the unregistration with this token is applied.
    UnregisterDone {
        token: u64,
    },
    /// From the owner to every shard: the registration's callees in registration order
    /// (empty = deleted).
    RegRoute {
        realm: Arc<str>,
        registration: Id,
        procedure: Arc<str>,
        policy: MatchPolicy,
        invoke: InvokePolicy,
        /// The registration asked for caller disclosure on every invocation.
        disclose_caller: bool,
        callees: Arc<Vec<Callee>>,
        barrier: Option<BarrierId>,
    },

    /// To a barrier's owner: the sender applied the route update.
    BarrierAck {
        barrier: BarrierId,
    },

    // ---- data plane ----
    /// Deliver a publication to these subscriptions' members on the receiving shard.
    Deliver {
        publication: Arc<Publication>,
        targets: SmallVec<[SubTarget; 2]>,
    },
    /// Start an invocation on the callee's shard.
    Invoke(Box<Invoke>),
    /// A YIELD (progressive or final) travelling back to the caller's shard.
    Yielded {
        call: CallKey,
        progress: bool,
        payload: Payload,
    },
    /// An ERROR from the callee, or a failure on the callee's side, back to the caller's shard.
    CallFailed {
        call: CallKey,
        error: String,
        details: Dict,
        payload: Payload,
    },
    /// The invocation could not be started or was refused as unavailable: re-route.
    Bounced {
        call: CallKey,
        callee: Id,
        reason: Bounce,
    },
    /// The caller is gone (or canceled): the callee's shard drops the invocation's result
    /// and interrupts the callee if it supports call canceling.
    CancelInvoke {
        call: CallKey,
        callee: Id,
        mode: &'static str,
    },

    // ---- observability ----
    /// Ask for the receiver's counters (`/metrics`).
    StatsRequest {
        token: u64,
    },
    StatsReply {
        token: u64,
        snapshot: Box<Snapshot>,
    },
}
