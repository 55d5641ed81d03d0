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
//! A session's testaments (`testaments.rs`) live in the session on its home shard and need
//! no gather.
//!
//! Meta events are ordinary publications from the router (publisher 0), so authorization
//! (SUBSCRIBE to `wamp.session.on_join` is checked like any topic) and fan-out apply.

pub(crate) mod sessions;
pub(crate) mod testaments;

use std::sync::Arc;

use super::Map;
use super::mesh::ShardId;
use super::out::Conn;
use super::session::{ConnId, Session};
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

/// An ERROR for a router-procedure call: (URI, message).
pub(crate) type CallError = (&'static str, String);

/// How the home shard turns the parts into the caller's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Combine {
    /// The number of IDs in all parts.
    Count,
    /// All parts' IDs, sorted.
    List,
    /// The one non-null part, else `wamp.error.no_such_session`.
    One,
    /// `null` if some part killed the session, else `wamp.error.no_such_session`.
    KilledOne,
}

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

/// The shards a gather asks: all of them.
pub(crate) fn all_shards(shards: usize) -> impl Iterator<Item = ShardId> {
    0..shards
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
