//! Enforcement of authorization at the four request points (PUBLISH, SUBSCRIBE, REGISTER,
//! CALL), once per request, before the feature handler runs: static rules through `authz`,
//! dynamic authorizers through a router call, with their cached decisions.
//!
//! A request whose role has a dynamic authorizer waits in its session's queue while the
//! authorizer is asked `(session_details, uri, action, options)`; its answer
//! (`true`/`false`, or `{allow, disclose, cache}`, kept for the session when `cache` is
//! true) decides it. Requests of that session decided at once (from the cache) queue behind
//! undecided ones, so a session's requests are dispatched in the order they came. An ERROR,
//! no authorizer, or no answer in time denies. Denials are counted per
//! realm, role and action, and logged (rate-limited) with session, authid, role, URI and
//! action. The caller (`core/dispatch.rs`) answers the peer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::Map;
use super::authz::{Action, Decision};
use super::out::{Out, log_allowed};
use super::realm::{Realm, Realms};
use super::rpc::{self, Calls};
use super::session::{ConnId, Session, Sessions};
use super::timers::{Timer, Timers};
use super::wire::message::code;
use super::wire::{Dict, Id, Message, Payload, Serializer, Value, peer_text};
use crate::limits;

/// What a request may do now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow {
        disclose: bool,
    },
    Deny,
    /// Queued behind the authorizer: it comes back through [`on_answer`].
    Queued,
}

/// A request of a session whose role has a dynamic authorizer, in the session's queue.
#[derive(Debug)]
pub(crate) struct Queued {
    pub conn: ConnId,
    pub msg: Message,
    action: Action,
    uri: Arc<str>,
    state: QueueState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QueueState {
    /// The authorizer was asked (its call's sequence number).
    Asking(u64),
    Allowed {
        disclose: bool,
    },
    Denied,
}

/// A request the queue released, in the session's order.
#[derive(Debug)]
pub(crate) struct Released {
    pub session: Id,
    pub conn: ConnId,
    pub msg: Message,
    /// `Some(disclose)` if allowed.
    pub allow: Option<bool>,
}

#[derive(Clone, Copy, Debug)]
struct Cached {
    allow: bool,
    disclose: bool,
}

/// The shard's authorizer state: cached decisions per session, and per session the FIFO
/// of requests waiting for an authorizer (a request decided at once — statically or from
/// the cache — also waits while earlier ones of its session do, so a session's requests
/// keep their order).
#[derive(Debug, Default)]
pub(crate) struct Authorizer {
    cache: Map<Id, Map<(Arc<str>, Action), Cached>>,
    queues: Map<Id, VecDeque<Queued>>,
    /// Authorizer call → the session whose queue waits for it.
    asking: Map<u64, Id>,
    /// Payload bytes of the queued requests (`limits::AUTHORIZER_PARKED_BYTES_MAX`).
    queued_bytes: usize,
    queued: usize,
    /// Decisions cached (gauge for `/metrics`).
    pub cached: u64,
}

/// The action and URI a client request is about, if it is one the router authorizes.
pub(crate) fn target(msg: &Message) -> Option<(Action, &str, Id, &Dict)> {
    match msg {
        Message::Publish { topic, request, options, .. } => Some((Action::Publish, topic, *request, options)),
        Message::Subscribe { topic, request, options } => Some((Action::Subscribe, topic, *request, options)),
        Message::Call { procedure, request, options, .. } => Some((Action::Call, procedure, *request, options)),
        Message::Register { procedure, request, options } => Some((Action::Register, procedure, *request, options)),
        _ => None,
    }
}

/// Everything a check may touch.
pub(crate) struct PermitCx<'a> {
    pub cx: &'a mut Out,
    pub realms: &'a mut Realms,
    pub sessions: &'a Sessions,
    pub calls: &'a mut Calls,
    pub timers: &'a mut Timers,
    pub authorizer: &'a mut Authorizer,
}

impl Authorizer {
    /// The session ended: forget its decisions and queued requests (answers to their
    /// authorizer calls find nothing).
    pub(crate) fn forget_session(&mut self, sid: Id) {
        if let Some(m) = self.cache.remove(&sid) {
            self.cached -= m.len() as u64;
        }
        if let Some(q) = self.queues.remove(&sid) {
            for e in q {
                self.queued -= 1;
                self.queued_bytes -= payload_bytes(&e.msg);
            }
        }
    }

    pub(crate) fn parked_len(&self) -> usize {
        self.queued
    }

    fn lookup(&self, sid: Id, uri: &str, action: Action) -> Option<Cached> {
        // The key is built only for sessions that have cached decisions.
        let m = self.cache.get(&sid)?;
        m.get(&(Arc::<str>::from(uri), action)).copied()
    }

    fn record(&mut self, sid: Id, uri: Arc<str>, action: Action, c: Cached) {
        let m = self.cache.entry(sid).or_default();
        if m.len() >= limits::AUTHZ_CACHE_PER_SESSION_MAX && !m.contains_key(&(uri.clone(), action)) {
            return; // Full: not kept; the authorizer is asked again next time.
        }
        if m.insert((uri, action), c).is_none() {
            self.cached += 1;
        }
    }

    /// Whether `sid` has requests waiting (a request decided now must queue behind them).
    fn busy(&self, sid: Id) -> bool {
        self.queues.get(&sid).is_some_and(|q| !q.is_empty())
    }

    fn push(&mut self, sid: Id, e: Queued) {
        self.queued += 1;
        self.queued_bytes += payload_bytes(&e.msg);
        self.queues.entry(sid).or_default().push_back(e);
    }

    /// The decided requests at the head of `sid`'s queue, in order.
    fn release(&mut self, sid: Id) -> Vec<Released> {
        let mut out = Vec::new();
        let Some(q) = self.queues.get_mut(&sid) else { return out };
        while let Some(e) = q.front() {
            let allow = match e.state {
                QueueState::Asking(_) => break,
                QueueState::Allowed { disclose } => Some(disclose),
                QueueState::Denied => None,
            };
            let Some(e) = q.pop_front() else { break };
            self.queued -= 1;
            self.queued_bytes -= payload_bytes(&e.msg);
            out.push(Released { session: sid, conn: e.conn, msg: e.msg, allow });
        }
        if q.is_empty() {
            self.queues.remove(&sid);
        }
        out
    }
}

/// Check `msg` (from session `sid` on `conn`) before its handler runs.
pub(crate) fn check(pc: PermitCx<'_>, sid: Id, conn: ConnId, msg: &Message) -> Verdict {
    let Some((action, uri, request, options)) = target(msg) else { return Verdict::Allow { disclose: false } };
    let Some(s) = pc.sessions.get(&sid) else { return Verdict::Deny };
    let Some(realm) = pc.realms.get_mut(&s.realm) else { return Verdict::Deny };
    if realm.config.roles.is_none() {
        // No roles in this realm: everything is allowed (the hot path stays a lookup).
        return Verdict::Allow { disclose: false };
    }
    if action == Action::Call && pc.calls.is_streaming(sid, request) {
        // A further chunk of a progressive call invocation: authorized with the first.
        return Verdict::Allow { disclose: false };
    }
    let Some(roles) = realm.config.roles.clone() else { return Verdict::Allow { disclose: false } };
    let procedure = match realm.authz_memo.decide(&roles, &s.authrole, uri, action) {
        Decision::Allow { disclose } => return Verdict::Allow { disclose },
        Decision::Deny => {
            denied(pc.cx, realm, s, action, uri, "no rule allows it");
            return Verdict::Deny;
        }
        Decision::Ask(procedure) => procedure,
    };
    let state = if let Some(c) = pc.authorizer.lookup(sid, uri, action) {
        if c.allow { QueueState::Allowed { disclose: c.disclose } } else { QueueState::Denied }
    } else if action == Action::Register && uri::covers(msg, &procedure) {
        // The authorizer cannot authorize its own registration.
        QueueState::Denied
    } else {
        QueueState::Asking(0)
    };
    if state == QueueState::Denied {
        denied(pc.cx, realm, s, action, uri, "the authorizer denies it (cached), or it is the authorizer itself");
    }
    let busy = pc.authorizer.busy(sid);
    match state {
        QueueState::Allowed { disclose } if !busy => return Verdict::Allow { disclose },
        QueueState::Denied if !busy => return Verdict::Deny,
        _ => {}
    }
    let bytes = payload_bytes(msg);
    let mine = pc.authorizer.queues.get(&sid).map_or(0, VecDeque::len);
    if pc.authorizer.queued >= limits::AUTHORIZER_CALLS_PER_SHARD_MAX
        || mine >= limits::AUTHORIZER_PARKED_PER_SESSION_MAX
        || pc.authorizer.queued_bytes + bytes > limits::AUTHORIZER_PARKED_BYTES_MAX
    {
        // Over budget: denied now (a session whose earlier requests still wait sees this
        // one answered first; it asked for more than the budget).
        denied(pc.cx, realm, s, action, uri, "too many requests waiting for the authorizer");
        return Verdict::Deny;
    }
    let state = match state {
        QueueState::Asking(_) => {
            let args = [session_details(s), Value::from(uri), Value::from(action.name()), Value::Dict(options.clone())];
            let payload = Payload::from_values(Serializer::MsgPack, Some(&args), None);
            let realm_name = s.realm.clone();
            let call = rpc::router_call(pc.cx, pc.calls, pc.realms, pc.sessions, realm_name, procedure, payload);
            let at = pc.cx.now + Duration::from_millis(limits::AUTHORIZER_TIMEOUT_MS);
            pc.timers.arm(at, Timer::Authorizer(call));
            pc.authorizer.asking.insert(call, sid);
            QueueState::Asking(call)
        }
        decided => decided,
    };
    pc.authorizer.push(sid, Queued { conn, msg: msg.clone(), action, uri: Arc::from(uri), state });
    Verdict::Queued
}

/// The payload bytes a queued request holds (PUBLISH and CALL carry one).
fn payload_bytes(msg: &Message) -> usize {
    match msg {
        Message::Publish { payload, .. } | Message::Call { payload, .. } => payload.len_bytes(),
        _ => 0,
    }
}

/// `(session_details)` as Crossbar passes them to an authorizer.
fn session_details(s: &Session) -> Value {
    Value::Dict(
        Dict::new()
            .with("session", s.id)
            .with("authid", &*s.authid)
            .with("authrole", &*s.authrole)
            .with("realm", &*s.realm),
    )
}

mod uri {
    use super::Message;

    /// Whether a REGISTER would provide `procedure` (exactly, or by a pattern covering it).
    pub(super) fn covers(msg: &Message, procedure: &str) -> bool {
        let Message::Register { procedure: p, options, .. } = msg else { return false };
        let policy = options
            .get("match")
            .and_then(super::Value::as_str)
            .and_then(crate::proto::wire::uri::MatchPolicy::parse)
            .unwrap_or(crate::proto::wire::uri::MatchPolicy::Exact);
        crate::proto::wire::uri::pattern_matches(policy, p, procedure)
    }
}

/// The authorizer's call `call` ended: record its decision, and release the session's
/// requests that are decided now, in order (the caller dispatches or denies them).
pub(crate) fn on_answer(pc: PermitCx<'_>, call: u64, answer: Result<Payload, String>) -> Vec<Released> {
    let Some(sid) = pc.authorizer.asking.remove(&call) else { return Vec::new() };
    let decision = answer.map_err(|uri| format!("authorizer failed: {uri}")).and_then(|p| parse_answer(&p));
    let Some(entry) =
        pc.authorizer.queues.get_mut(&sid).and_then(|q| q.iter_mut().find(|e| e.state == QueueState::Asking(call)))
    else {
        return Vec::new();
    };
    let (action, uri) = (entry.action, entry.uri.clone());
    let why = match &decision {
        Ok((true, disclose, _)) => {
            entry.state = QueueState::Allowed { disclose: *disclose };
            None
        }
        Ok((false, ..)) => {
            entry.state = QueueState::Denied;
            Some("the authorizer denied it".to_owned())
        }
        Err(why) => {
            entry.state = QueueState::Denied;
            Some(why.clone())
        }
    };
    if let Ok((allow, disclose, true)) = decision {
        pc.authorizer.record(sid, uri.clone(), action, Cached { allow, disclose });
    }
    if let (Some(why), Some(s)) = (why, pc.sessions.get(&sid))
        && let Some(realm) = pc.realms.get_mut(&s.realm)
    {
        denied(pc.cx, realm, s, action, &uri, &why);
    }
    pc.authorizer.release(sid)
}

/// The authorizer's call `call` is late: cancel it (its answer, `canceled`, then denies).
pub(crate) fn on_timeout(pc: PermitCx<'_>, call: u64) {
    if pc.authorizer.asking.contains_key(&call) {
        if log_allowed(pc.cx.stats.authorization_denials + 1) {
            tracing::info!(shard = pc.cx.shard, call, "authorizer did not answer in time; denying");
        }
        rpc::cancel_router_call(pc.cx, pc.calls, pc.realms, pc.sessions, call);
    }
}

/// `true`/`false`, or `{allow, disclose, cache}` → (allow, disclose, cache).
fn parse_answer(p: &Payload) -> Result<(bool, bool, bool), String> {
    let args = p.args().map_err(|e| format!("authorizer answered an undecodable result: {e}"))?;
    match args.first() {
        Some(Value::Bool(b)) => Ok((*b, false, false)),
        Some(Value::Dict(d)) => {
            let flag = |k: &str| d.get(k).and_then(Value::as_bool).unwrap_or(false);
            Ok((flag("allow"), flag("disclose"), flag("cache")))
        }
        _ => Err("authorizer answered neither a boolean nor {allow, disclose, cache}".to_owned()),
    }
}

/// The ERROR a denied request gets (an unacknowledged PUBLISH gets none, as the spec says).
pub(crate) fn deny_reply(msg: &Message) -> Option<(u64, Id, String)> {
    let (action, uri, request, options) = target(msg)?;
    let request_type = match action {
        Action::Publish => {
            if !options.get("acknowledge").and_then(Value::as_bool).unwrap_or(false) {
                return None;
            }
            code::PUBLISH
        }
        Action::Subscribe => code::SUBSCRIBE,
        Action::Call => code::CALL,
        Action::Register => code::REGISTER,
    };
    Some((request_type, request, format!("not authorized to {} {}", action.name(), peer_text(uri))))
}

/// Count and log a denial (per realm, role and action).
pub(crate) fn denied(cx: &mut Out, realm: &mut Realm, s: &Session, action: Action, uri: &str, why: &str) {
    let stats = &mut realm.stats.denied;
    let key = if stats.contains_key(&(s.authrole.clone(), action)) || stats.len() < limits::DENIAL_COUNTERS_MAX {
        (s.authrole.clone(), action)
    } else {
        (Arc::from("_other"), action)
    };
    *stats.entry(key).or_default() += 1;
    cx.stats.authorization_denials += 1;
    if log_allowed(cx.stats.authorization_denials) {
        tracing::info!(
            shard = cx.shard,
            realm = %realm.name,
            session = s.id,
            authid = %peer_text(&s.authid),
            role = %peer_text(&s.authrole),
            uri = %peer_text(uri),
            action = action.name(),
            why,
            total = cx.stats.authorization_denials,
            "not authorized"
        );
    }
}
