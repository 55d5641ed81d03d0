//! Enforcement of authorization at the four request points (PUBLISH, SUBSCRIBE, REGISTER,
//! CALL), once per request, before the feature handler runs: static rules through `authz`,
//! dynamic authorizers through a router call, with their cached decisions.
//!
//! A request whose role has a dynamic authorizer is parked here while the authorizer is
//! asked `(session_details, uri, action, options)`; its answer (`true`/`false`, or
//! `{allow, disclose, cache}`) is recorded for the session — kept until the session ends
//! when `cache` is true, for this one request otherwise — and the request is dispatched
//! again. An ERROR, no authorizer, or no answer in time denies. Denials are counted per
//! realm, role and action, and logged (rate-limited) with session, authid, role, URI and
//! action. The caller (`core/dispatch.rs`) answers the peer.

use std::sync::Arc;
use std::time::Duration;

use super::Map;
use super::authz::{self, Action, Decision};
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
    /// Parked: the authorizer was asked.
    Asked,
}

/// A request waiting for its authorizer.
#[derive(Debug)]
pub(crate) struct Parked {
    pub session: Id,
    pub conn: ConnId,
    pub msg: Message,
    action: Action,
    uri: Arc<str>,
}

#[derive(Clone, Copy, Debug)]
struct Cached {
    allow: bool,
    disclose: bool,
    /// Recorded for one request only (the authorizer did not ask to cache).
    once: bool,
}

/// The shard's authorizer state: cached decisions per session, parked requests.
#[derive(Debug, Default)]
pub(crate) struct Authorizer {
    cache: Map<Id, Map<(Arc<str>, Action), Cached>>,
    parked: Map<u64, Parked>,
    /// Payload bytes of the parked requests (`limits::AUTHORIZER_PARKED_BYTES_MAX`).
    parked_bytes: usize,
    /// Parked requests per session (`limits::AUTHORIZER_PARKED_PER_SESSION_MAX`).
    parked_per_session: Map<Id, usize>,
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
    /// The session ended: forget its decisions (its parked requests are dropped when their
    /// answers come).
    pub(crate) fn forget_session(&mut self, sid: Id) {
        if let Some(m) = self.cache.remove(&sid) {
            self.cached -= m.len() as u64;
        }
    }

    /// Take parked request `call` out of the table and its budgets.
    fn unpark(&mut self, call: u64) -> Option<Parked> {
        let p = self.parked.remove(&call)?;
        self.parked_bytes -= payload_bytes(&p.msg);
        if let Some(n) = self.parked_per_session.get_mut(&p.session) {
            *n -= 1;
            if *n == 0 {
                self.parked_per_session.remove(&p.session);
            }
        }
        Some(p)
    }

    pub(crate) fn parked_len(&self) -> usize {
        self.parked.len()
    }

    fn lookup(&mut self, sid: Id, uri: &str, action: Action) -> Option<Cached> {
        let m = self.cache.get_mut(&sid)?;
        let key = (Arc::<str>::from(uri), action);
        let c = *m.get(&key)?;
        if c.once {
            m.remove(&key);
            self.cached -= 1;
        }
        Some(c)
    }

    fn record(&mut self, sid: Id, uri: Arc<str>, action: Action, c: Cached) {
        let m = self.cache.entry(sid).or_default();
        if m.len() >= limits::AUTHZ_CACHE_PER_SESSION_MAX && !m.contains_key(&(uri.clone(), action)) {
            // Full: this decision is used once and not kept.
            if !c.once {
                return self.record(sid, uri, action, Cached { once: true, ..c });
            }
        }
        if m.insert((uri, action), c).is_none() {
            self.cached += 1;
        }
    }
}

/// Check `msg` (from session `sid` on `conn`) before its handler runs.
pub(crate) fn check(pc: PermitCx<'_>, sid: Id, conn: ConnId, msg: &Message) -> Verdict {
    let Some((action, uri, request, options)) = target(msg) else { return Verdict::Allow { disclose: false } };
    if action == Action::Call && pc.calls.is_streaming(sid, request) {
        // A further chunk of a progressive call invocation: authorized with the first.
        return Verdict::Allow { disclose: false };
    }
    let Some(s) = pc.sessions.get(&sid) else { return Verdict::Deny };
    let Some(realm) = pc.realms.get_mut(&s.realm) else { return Verdict::Deny };
    match authz::authorize(realm.config.roles.as_deref(), &s.authrole, uri, action) {
        Decision::Allow { disclose } => Verdict::Allow { disclose },
        Decision::Deny => {
            denied(pc.cx, realm, s, action, uri, "no rule allows it");
            Verdict::Deny
        }
        Decision::Ask(procedure) => {
            if let Some(c) = pc.authorizer.lookup(sid, uri, action) {
                if c.allow {
                    return Verdict::Allow { disclose: c.disclose };
                }
                denied(pc.cx, realm, s, action, uri, "the authorizer denied it (cached)");
                return Verdict::Deny;
            }
            if action == Action::Register && uri::covers(msg, &procedure) {
                // The authorizer cannot authorize its own registration.
                denied(pc.cx, realm, s, action, uri, "a role with an authorizer cannot provide it");
                return Verdict::Deny;
            }
            let bytes = payload_bytes(msg);
            let mine = pc.authorizer.parked_per_session.get(&sid).copied().unwrap_or(0);
            if pc.authorizer.parked.len() >= limits::AUTHORIZER_CALLS_PER_SHARD_MAX
                || mine >= limits::AUTHORIZER_PARKED_PER_SESSION_MAX
                || pc.authorizer.parked_bytes + bytes > limits::AUTHORIZER_PARKED_BYTES_MAX
            {
                denied(pc.cx, realm, s, action, uri, "too many requests waiting for the authorizer");
                return Verdict::Deny;
            }
            let args = [session_details(s), Value::from(uri), Value::from(action.name()), Value::Dict(options.clone())];
            let payload = Payload::from_values(Serializer::MsgPack, Some(&args), None);
            let realm_name = s.realm.clone();
            let parked = Parked { session: sid, conn, msg: msg.clone(), action, uri: Arc::from(uri) };
            let call = rpc::router_call(pc.cx, pc.calls, pc.realms, pc.sessions, realm_name, procedure, payload);
            let at = pc.cx.now + Duration::from_millis(limits::AUTHORIZER_TIMEOUT_MS);
            pc.timers.arm(at, Timer::Authorizer(call));
            pc.authorizer.parked.insert(call, parked);
            pc.authorizer.parked_bytes += bytes;
            *pc.authorizer.parked_per_session.entry(sid).or_default() += 1;
            Verdict::Asked
        }
    }
}

/// The payload bytes a parked request holds (PUBLISH and CALL carry one).
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

/// The authorizer's call `call` ended. Returns the parked request to dispatch again when it
/// is allowed, or (conn, the request's message type, request ID, action, URI) to deny.
pub(crate) fn on_answer(pc: PermitCx<'_>, call: u64, answer: Result<Payload, String>) -> Option<Answered> {
    let parked = pc.authorizer.unpark(call)?;
    let decision = answer.map_err(|uri| format!("authorizer failed: {uri}")).and_then(|p| parse_answer(&p));
    let s = pc.sessions.get(&parked.session)?;
    match decision {
        Ok((allow, disclose, cache)) => {
            // Kept for the session when the authorizer asked to cache; an allowed request is
            // also recorded once, for its own second dispatch below.
            if cache || allow {
                let c = Cached { allow, disclose, once: !cache };
                pc.authorizer.record(parked.session, parked.uri.clone(), parked.action, c);
            }
            if allow {
                return Some(Answered::Retry(parked));
            }
            if let Some(realm) = pc.realms.get_mut(&s.realm) {
                denied(pc.cx, realm, s, parked.action, &parked.uri, "the authorizer denied it");
            }
        }
        Err(why) => {
            if let Some(realm) = pc.realms.get_mut(&s.realm) {
                denied(pc.cx, realm, s, parked.action, &parked.uri, &why);
            }
        }
    }
    Some(Answered::Deny(parked))
}

/// What an authorizer's answer means for the parked request.
pub(crate) enum Answered {
    Retry(Parked),
    Deny(Parked),
}

/// The authorizer's call `call` is late: cancel it (its answer, `canceled`, then denies).
pub(crate) fn on_timeout(pc: PermitCx<'_>, call: u64) {
    if pc.authorizer.parked.contains_key(&call) {
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

fn denied(cx: &mut Out, realm: &mut Realm, s: &Session, action: Action, uri: &str, why: &str) {
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
