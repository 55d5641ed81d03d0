//! The router's own procedures (`wamp.session.*`, `wamp.subscription.*`,
//! `wamp.registration.*`) and the meta events, with Crossbar's argument and result shapes
//! (`../shared/WAMP-ADVANCED-NOTES.md` §D) and the spec's where Crossbar has none.
//!
//! A router procedure is answered by the caller's home shard. What only other shards know
//! (their sessions, their members of a subscription) is gathered over the mesh: the home
//! shard sends one [`MetaMsg::Ask`] to every shard (itself included, through the local
//! queue), each answers with one [`MetaMsg::Reply`] part, and when the last part is in the
//! home shard combines them into the RESULT. Gathers in flight are bounded per shard and per
//! session; a caller that leaves meanwhile gets nothing.
//!
//! Not every question needs every shard: what the route replica knows (lists, lookups,
//! matches) is asked of the home shard only, what only the owner of an ID knows (`created`,
//! callee lists) of its owner only ([`Query::asks`]).
//! A session's testaments (`testaments.rs`) live in the session on its home shard and need
//! no gather.
//!
//! Meta events are ordinary publications from the router (publisher 0), so authorization
//! (SUBSCRIBE to `wamp.session.on_join` is checked like any topic) and fan-out apply. Events
//! whose order matters (`on_create` before `on_subscribe`, `on_unsubscribe` before
//! `on_delete`) are published by one shard, the member's home shard: shards deliver over one
//! FIFO channel per pair, so a listener anywhere sees them in that order.

pub(crate) mod history;
pub(crate) mod registrations;
pub(crate) mod sessions;
pub(crate) mod subscriptions;
pub(crate) mod testaments;

use std::sync::Arc;

use super::Map;
use super::mesh::ShardId;
use super::out::{Conn, Out};
use super::pubsub;
use super::realm::Realm;
use super::session::{ConnId, Session};
use super::uris;
use super::wire::ids::owner_of;
use super::wire::uri::{self, MatchPolicy};
use super::wire::{Dict, Id, Value};
use crate::limits;

/// Meta event topics.
pub(crate) const ON_JOIN: &str = "wamp.session.on_join";
pub(crate) const ON_LEAVE: &str = "wamp.session.on_leave";

/// The router procedures that exist (a CALL to another `wamp.` URI is `no_such_procedure`).
pub(crate) fn is_router_procedure(procedure: &str) -> bool {
    procedure.starts_with("wamp.")
}

/// A question every shard (or one) answers with a part of the result.
#[derive(Clone, Debug)]
pub enum Query {
    /// Sessions of the realm with one of these roles (all if None), the caller excepted if
    /// `except` is set: their IDs.
    SessionIds { roles: Option<Vec<String>> },
    /// The details of one session (`Value::Null` from shards that do not have it).
    SessionGet { session: Id },
    /// End these sessions (by ID, authid, authrole or all), never `except`; answers the IDs
    /// killed.
    Kill { who: KillWho, except: Id, reason: String, message: Option<String> },
    /// `wamp.subscription.*`.
    Sub(subscriptions::SubQuery),
    /// `wamp.registration.*`.
    Reg(registrations::RegQuery),
    /// The kept events a `get_events` call selects, asked of the history's owner shard.
    Events(ShardId, Box<history::EventsQuery>),
}

/// An ERROR for a router-procedure call: URI and message.
pub(crate) type Refusal = (&'static str, String);

/// What a router procedure asks and how the parts combine, or why it refuses the call.
pub(crate) type Planned = Result<(Query, Combine), Refusal>;

/// Which shards a query is asked of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Asks {
    /// Every shard (each knows its own sessions and members).
    All,
    /// The caller's home shard (its route replica knows every route).
    Home,
    /// The owner of this subscription or registration ID.
    Owner(Id),
    /// This shard (the owner of a URI's state).
    Shard(ShardId),
}

impl Query {
    pub(crate) fn asks(&self) -> Asks {
        match self {
            Query::SessionIds { .. } | Query::SessionGet { .. } | Query::Kill { .. } => Asks::All,
            Query::Sub(q) => q.asks(),
            Query::Reg(q) => q.asks(),
            Query::Events(owner, _) => Asks::Shard(*owner),
        }
    }
}

/// The shards `asks` means for a call on shard `home` of `shards`. An ID whose owner bits
/// name no shard is asked of the home shard, which does not own it either.
pub(crate) fn targets(asks: Asks, home: ShardId, shards: usize) -> std::ops::Range<ShardId> {
    match asks {
        Asks::All => 0..shards,
        Asks::Home => home..home + 1,
        Asks::Owner(id) => {
            let owner = if owner_of(id) < shards { owner_of(id) } else { home };
            owner..owner + 1
        }
        Asks::Shard(s) => s..s + 1,
    }
}

/// Which sessions a kill is for.
#[derive(Clone, Debug)]
pub enum KillWho {
    Session(Id),
    Authid(String),
    Authrole(String),
    All,
}

/// Inter-shard meta API traffic (`MeshMsg::Meta`).
#[derive(Debug)]
pub enum MetaMsg {
    Ask { token: u64, realm: Arc<str>, query: Arc<Query> },
    Reply { token: u64, part: Value },
}

/// How the home shard turns the parts into the caller's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Combine {
    /// The number of IDs in all parts.
    Count,
    /// All parts' IDs, sorted.
    List,
    /// The one non-null part, else the error `missing`.
    One { missing: &'static str },
    /// The one part as it is (a question for one shard).
    Value,
    /// `get_events`: the owner's list, or (a null part) ERROR
    /// `wamp.error.payload_size_exceeded`: the selection passed `EventsQuery::bytes_max`.
    Events,
    /// All parts' member IDs (or their number); `wamp.error.no_such_subscription` if no
    /// shard knows the subscription (every part null).
    Members { count: bool },
    /// `null` if some part [`REMOVED`] the member; the error `missing` if no part knows the
    /// ID ([`KNOWN`]); `wamp.error.no_such_session` if it is known but the session is not
    /// one of its members.
    Removed { missing: &'static str },
    /// `null` if some part killed the session, else `wamp.error.no_such_session`.
    KilledOne,
}

/// A part of a `remove_subscriber`/`remove_callee` gather: this shard removed the member.
pub(crate) const REMOVED: u64 = 2;
/// A part of a `remove_*` gather: this shard owns the ID (and removed nothing).
pub(crate) const KNOWN: u64 = 1;

/// A router-procedure call waiting for parts.
#[derive(Debug)]
pub(crate) struct Gather {
    pub session: Id,
    pub conn: ConnId,
    pub request: Id,
    pub combine: Combine,
    pub waiting: usize,
    pub parts: Vec<Value>,
}

/// The gathers in flight on one shard.
#[derive(Debug, Default)]
pub(crate) struct Gathers {
    map: Map<u64, Gather>,
    per_session: Map<Id, usize>,
}

impl Gathers {
    /// Whether session `sid` may start another gather (the shard's and its own bound).
    pub fn may_start(&self, sid: Id) -> bool {
        self.map.len() < limits::META_GATHERS_PER_SHARD_MAX
            && self.per_session.get(&sid).copied().unwrap_or(0) < limits::META_GATHERS_PER_SESSION_MAX
    }

    pub fn start(&mut self, token: u64, g: Gather) {
        *self.per_session.entry(g.session).or_default() += 1;
        self.map.insert(token, g);
    }

    /// Add a part; the gather when it was the last one.
    pub fn add(&mut self, token: u64, part: Value) -> Option<Gather> {
        let g = self.map.get_mut(&token)?;
        g.parts.push(part);
        g.waiting = g.waiting.saturating_sub(1);
        if g.waiting > 0 {
            return None;
        }
        let g = self.map.remove(&token)?;
        if let Some(n) = self.per_session.get_mut(&g.session) {
            *n -= 1;
            if *n == 0 {
                self.per_session.remove(&g.session);
            }
        }
        Some(g)
    }
}

/// `wamp.session.get`'s and `wamp.session.on_join`'s dict for a session (Autobahn's
/// `SessionDetails` keys).
pub(crate) fn session_details(s: &Session, transport: Dict) -> Dict {
    Dict::new()
        .with("realm", &*s.realm)
        .with("session", s.id)
        .with("authid", &*s.authid)
        .with("authrole", &*s.authrole)
        .with("authmethod", s.auth.method)
        .with("authprovider", s.auth.provider)
        .with("authextra", s.auth.extra.clone())
        .with("serializer", transport.get("serializer").cloned().unwrap_or(Value::Null))
        .with("transport", transport)
        .with("resumed", false)
        .with("resumable", false)
        .with("resume_token", Value::Null)
}

/// `transport` of `wamp.session.get`: kind, serializer, peer.
pub(crate) fn transport_details(c: Option<&Conn>) -> Dict {
    let Some(c) = c else { return Dict::new() };
    let f = c.info.framing;
    let mut d = Dict::new()
        .with("type", f.transport.name())
        .with("serializer", f.serializer.name())
        .with("protocol", f.serializer.subprotocol())
        .with("tls", c.info.origin.tls.is_some());
    match c.info.origin.peer {
        Some(peer) => {
            let family = if peer.is_ipv4() { "tcp4" } else { "tcp6" };
            d.insert("peer", format!("{family}:{}:{}", peer.ip(), peer.port()));
        }
        None => d.insert("peer", "unix"),
    }
    d
}

/// Publish a meta event if the realm has the meta API on (`args` only built when the topic
/// has subscribers).
pub(crate) fn event(cx: &mut Out, realm: &mut Realm, topic: &str, args: impl FnOnce(&Out) -> Vec<Value>) {
    if realm.config.meta_api {
        pubsub::publish_from_router(cx, realm, topic, args);
    }
}

/// `{exact: [ids], prefix: [ids], wildcard: [ids]}`, each list sorted.
pub(crate) fn by_policy(items: impl IntoIterator<Item = (MatchPolicy, Id)>) -> Value {
    let mut lists: [Vec<Id>; 3] = Default::default();
    for (policy, id) in items {
        lists[policy as usize].push(id);
    }
    let mut d = Dict::new();
    for (policy, mut ids) in [MatchPolicy::Exact, MatchPolicy::Prefix, MatchPolicy::Wildcard].into_iter().zip(lists) {
        ids.sort_unstable();
        d.insert(policy.as_str(), Value::List(ids.into_iter().map(Value::from).collect()));
    }
    Value::Dict(d)
}

/// A bad-argument ERROR.
pub(crate) fn bad(message: String) -> Refusal {
    (uris::INVALID_ARGUMENT, message)
}

/// Positional argument `i` as an ID.
pub(crate) fn arg_id(args: &[Value], i: usize, what: &str) -> Result<Id, Refusal> {
    args.get(i).and_then(Value::as_u64).ok_or_else(|| bad(format!("expected {what} (an ID) as argument {}", i + 1)))
}

/// Positional argument `i` as an ID, or None if absent or null.
pub(crate) fn opt_arg_id(args: &[Value], i: usize, what: &str) -> Result<Option<Id>, Refusal> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => arg_id(args, i, what).map(Some),
    }
}

/// Positional argument `i` as a URI (a topic or procedure to look up; not a pattern).
pub(crate) fn arg_uri(args: &[Value], i: usize, what: &str) -> Result<String, Refusal> {
    match args.get(i).and_then(Value::as_str) {
        Some(u) if uri::is_valid(u, false, true) => Ok(u.to_owned()),
        _ => Err(bad(format!("expected {what} (a URI) as argument {}", i + 1))),
    }
}

/// The match policy of a lookup: `options={match}` as positional argument 2 or keyword
/// `options` (or keyword `match`); exact if none.
pub(crate) fn lookup_policy(args: &[Value], kwargs: &Dict) -> Result<MatchPolicy, Refusal> {
    let options = match args.get(1).or_else(|| kwargs.get("options")) {
        None | Some(Value::Null) => None,
        Some(Value::Dict(d)) => Some(d),
        Some(_) => return Err(bad("options must be a dict".to_owned())),
    };
    match options.and_then(|o| o.get("match")).or_else(|| kwargs.get("match")) {
        None | Some(Value::Null) => Ok(MatchPolicy::Exact),
        Some(v) => v
            .as_str()
            .and_then(MatchPolicy::parse)
            .ok_or_else(|| bad("match must be \"exact\", \"prefix\" or \"wildcard\"".to_owned())),
    }
}

/// The optional `reason` of a removal: positional argument `i` or keyword `reason`, a URI.
pub(crate) fn reason(args: &[Value], i: usize, kwargs: &Dict) -> Result<Option<String>, Refusal> {
    match args.get(i).or_else(|| kwargs.get("reason")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(r)) if uri::is_valid(r, false, false) => Ok(Some(r.clone())),
        Some(_) => Err(bad("reason must be a valid URI".to_owned())),
    }
}

/// The details of a revocation (`UNSUBSCRIBED`/`UNREGISTERED` with request 0): the ID under
/// `key` and the reason if given.
pub(crate) fn revocation(key: &str, id: Id, reason: Option<&str>) -> Dict {
    let d = Dict::new().with(key, id);
    match reason {
        Some(r) => d.with("reason", r),
        None => d,
    }
}

/// Read an optional list of strings (`filter_authroles`); None if absent or null.
pub(crate) fn string_list(v: Option<&Value>) -> Result<Option<Vec<String>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::List(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| "expected a list of strings".to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!("expected a list of strings, got {}", other.type_name())),
    }
}
