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
use std::time::{Instant, SystemTime};

use smallvec::SmallVec;

use super::dealer::RegisterRefused;
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
    /// The first chunk of a progressive call invocation (more follow as `CallMsg::Chunk`).
    pub progress: bool,
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

/// How a CANCEL asks the router to treat the running invocation (spec, call canceling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelMode {
    /// Answer the caller at once; the callee is not told.
    Skip,
    /// INTERRUPT the callee and relay its answer to the caller.
    Kill,
    /// INTERRUPT the callee and answer the caller at once.
    KillNoWait,
}

impl CancelMode {
    pub fn parse(s: &str) -> Option<CancelMode> {
        match s {
            "skip" => Some(CancelMode::Skip),
            "kill" => Some(CancelMode::Kill),
            "killnowait" => Some(CancelMode::KillNoWait),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CancelMode::Skip => "skip",
            CancelMode::Kill => "kill",
            CancelMode::KillNoWait => "killnowait",
        }
    }
}

/// A message between shards, grouped by feature: the subscription and registration control
/// planes, barrier acks, then the data plane (publications, calls), then observability.
#[derive(Debug)]
pub enum MeshMsg {
    Sub(SubMsg),
    Reg(RegMsg),
    /// A replica applied a route update that carried this barrier.
    BarrierAck {
        barrier: BarrierId,
    },
    /// A publication for this shard's members of `targets` (the fan-out hot path).
    Deliver {
        publication: Arc<Publication>,
        targets: SmallVec<[SubTarget; 2]>,
    },
    Call(CallMsg),
    Stats(StatsMsg),
    /// Meta API gathers (`proto::meta`).
    Meta(super::meta::MetaMsg),
    /// Retained events and event history (`proto::store`).
    Store(StoreMsg),
}

/// Retained events and history: the publisher's or subscriber's shard ↔ the owner shard of
/// the store (retained: `(realm, topic, exact)`; history: the config entry's
/// `(realm, uri, match)`). The stored publication is the one being delivered (shared, not
/// copied, on the way; the store copies the payload out of the read buffer).
#[derive(Debug)]
pub enum StoreMsg {
    /// A publication with `retain=true`: to the owner of (realm, topic, exact).
    Retain { publication: Arc<Publication> },
    /// A session subscribed (exact) with `get_retained=true` and got SUBSCRIBED: to the
    /// owner of (realm, topic, exact).
    GetRetained { realm: Arc<str>, topic: Arc<str>, subscription: Id, subscriber: Identity },
    /// The owner's answer when it has a retained event the subscriber is eligible for.
    Retained { subscription: Id, subscriber: Id, event: Arc<Publication> },
    /// A publication matching the history entry (uri, policy): to that entry's owner, which
    /// keeps the newest `limit`.
    Record { uri: Arc<str>, policy: MatchPolicy, limit: usize, publication: Arc<Publication>, publisher: Identity },
}

/// Subscription control plane: requester ↔ owner, owner → replicas.
#[derive(Debug)]
pub enum SubMsg {
    /// A shard wants its first member of (topic, match): to the owner.
    Req { realm: Arc<str>, topic: Arc<str>, policy: MatchPolicy, token: u64 },
    /// The owner's answer once every replica routes to the requesting shard; `created`
    /// (wall clock) when this request created the subscription, so the requesting shard
    /// publishes `wamp.subscription.on_create` before its `on_subscribe`.
    Done { realm: Arc<str>, token: u64, subscription: Id, created: Option<SystemTime> },
    /// The owner's answer when creating the subscription would exceed the realm's route
    /// budget (`limits::REALM_ROUTE_BYTES_MAX`): every waiting SUBSCRIBE gets an ERROR.
    Refused { realm: Arc<str>, token: u64 },
    /// A shard lost its last member, session `session` (0: none to report), at `left_at`:
    /// to the owner.
    Release { realm: Arc<str>, subscription: Id, session: Id, left_at: Instant },
    /// The owner's answer to the `Release` that deleted the subscription (only in realms with
    /// the meta API), sent to the shard of the session that left last by the shards' clock
    /// (not the last release to arrive: releases from two shards may cross on the mesh, after
    /// one session's leave happened before the other's). That shard publishes
    /// `wamp.subscription.on_delete` after the session's `on_unsubscribe`.
    Deleted { realm: Arc<str>, subscription: Id, session: Id },
    /// The owner's route update for every replica (no shards = deleted).
    Route {
        realm: Arc<str>,
        subscription: Id,
        topic: Arc<str>,
        policy: MatchPolicy,
        shards: ShardSet,
        barrier: Option<BarrierId>,
    },
}

/// Registration control plane: requester ↔ owner, owner → replicas.
#[derive(Debug)]
pub enum RegMsg {
    /// A session on the sending shard registers: to the owner.
    Req {
        realm: Arc<str>,
        procedure: Arc<str>,
        policy: MatchPolicy,
        invoke: InvokePolicy,
        disclose_caller: bool,
        callee: Id,
        token: u64,
    },
    /// The owner's answer (after the barrier when accepted); `created` (wall clock, invoke
    /// policy) when this request created the registration, for
    /// `wamp.registration.on_create`.
    Done {
        realm: Arc<str>,
        token: u64,
        result: Result<Id, RegisterRefused>,
        created: Option<(SystemTime, InvokePolicy)>,
    },
    /// A callee leaves a registration: to the owner (token 0: nobody waits for the answer).
    UnregReq { realm: Arc<str>, registration: Id, callee: Id, token: u64 },
    /// The owner released the callee; `deleted` when that was the last one.
    UnregDone { token: u64, deleted: bool },
    /// The owner's route update for every replica (no callees = deleted).
    Route {
        realm: Arc<str>,
        registration: Id,
        procedure: Arc<str>,
        policy: MatchPolicy,
        invoke: InvokePolicy,
        disclose_caller: bool,
        callees: Arc<Vec<Callee>>,
        barrier: Option<BarrierId>,
    },
}

/// Calls in flight: caller's shard ↔ callee's shard.
#[derive(Debug)]
pub enum CallMsg {
    /// Start an invocation on the callee's shard.
    Invoke(Box<Invoke>),
    /// A further chunk of a progressive call invocation, for the running invocation.
    Chunk { call: CallKey, callee: Id, progress: bool, payload: Payload },
    /// The callee's YIELD (progressive or final).
    Yielded { call: CallKey, progress: bool, payload: Payload },
    /// The call ends with this ERROR.
    Failed { call: CallKey, error: String, details: Dict, payload: Payload },
    /// The callee's shard could not start the invocation: re-route.
    Bounced { call: CallKey, callee: Id, reason: Bounce },
    /// The caller canceled or went away.
    Cancel { call: CallKey, callee: Id, mode: CancelMode },
}

/// `/metrics` scatter-gather.
#[derive(Debug)]
pub enum StatsMsg {
    Request { token: u64 },
    Reply { token: u64, snapshot: Box<Snapshot> },
}
