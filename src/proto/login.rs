//! Logins on the home shard: HELLO → (CHALLENGE → AUTHENTICATE | authenticator call)* →
//! WELCOME or ABORT. Owns the table of connections between HELLO and WELCOME and glues the
//! pure decisions of `auth` to the connection state, the dynamic authenticator's call
//! (`rpc::router_call`) and its timeout.
//!
//! It decides nothing about credentials itself (that is `auth`'s) and creates sessions only
//! through `lifecycle::establish`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Map;
use super::auth::{self, Ask, AuthConfig, AuthMethod, Entropy, Granted, HelloFacts, Pending, Refused, Step};
use super::lifecycle::{self, Hello};
use super::out::{ConnState, Origin, Out, log_allowed};
use super::realm::Realms;
use super::rpc::{self, Calls};
use super::session::{ClientFeatures, ConnId, Sessions};
use super::timers::{Timer, Timers};
use super::violation::Abort;
use super::wire::uri;
use super::wire::{Dict, Id, Message, Payload, Serializer, Value};
use crate::limits;

use super::stats::AuthCounts;

/// The shard's logins in progress and what they need.
#[derive(Debug)]
pub(crate) struct Logins {
    config: Arc<AuthConfig>,
    rng: Entropy,
    /// Wall-clock time at `mono` (the core reads no clock; challenges carry a timestamp).
    wall: SystemTime,
    mono: Instant,
    waiting: Map<ConnId, Waiting>,
    /// Entries of `waiting` that wait for an authenticator; by its call, → connection.
    asking: Map<u64, ConnId>,
    pub counts: AuthCounts,
}

#[derive(Debug)]
struct Waiting {
    realm: String,
    features: ClientFeatures,
    session: Id,
    origin: Origin,
    /// The authid the HELLO claimed, clipped (logs).
    authid: String,
    state: WaitState,
}

#[derive(Debug)]
enum WaitState {
    /// CHALLENGE sent.
    Challenge(Pending),
    /// Authenticator called (call sequence in `Calls`).
    Asking { ask: Ask, call: u64 },
}

impl Logins {
    pub(crate) fn new(config: Arc<AuthConfig>, seed: [u8; 32], wall: SystemTime, mono: Instant) -> Logins {
        Logins {
            config,
            rng: Entropy::new(seed),
            wall,
            mono,
            waiting: Map::default(),
            asking: Map::default(),
            counts: AuthCounts::new(),
        }
    }

    /// New principals and methods (SIGHUP): logins already in progress finish with what they
    /// started with.
    pub(crate) fn reload(&mut self, config: Arc<AuthConfig>) {
        self.config = config;
    }

    /// Whether router call `call` is one of this shard's authenticator calls.
    pub(crate) fn owns(&self, call: u64) -> bool {
        self.asking.contains_key(&call)
    }

    pub(crate) fn pending(&self) -> usize {
        self.waiting.len()
    }

    /// Whether session role `role` in `realm` may register `procedure` (with `policy`):
    /// a procedure a dynamic authenticator uses — or a pattern that would catch it — is
    /// reserved for the roles named in its `authenticator_role`.
    pub(crate) fn may_register(&self, realm: &str, role: &str, procedure: &str, policy: uri::MatchPolicy) -> bool {
        self.config.authenticators().all(|a| {
            &*a.realm != realm
                || !uri::pattern_matches(policy, procedure, &a.procedure)
                || a.roles.iter().any(|r| &**r == role)
        })
    }

    fn timestamp(&self, now: Instant) -> String {
        let wall = self.wall + now.saturating_duration_since(self.mono);
        auth::entropy::iso8601(wall)
    }

    fn count(&mut self, listener: u16, method: Option<AuthMethod>, ok: bool) {
        if let Some(m) = method {
            self.counts.entry((listener, m)).or_default()[usize::from(!ok)] += 1;
        }
    }
}

/// Everything a login step may touch.
pub(crate) struct LoginCx<'a> {
    pub cx: &'a mut Out,
    pub realms: &'a mut Realms,
    pub sessions: &'a mut Sessions,
    pub calls: &'a mut Calls,
    pub logins: &'a mut Logins,
    pub timers: &'a mut Timers,
}

/// HELLO on `conn`.
pub(crate) fn on_hello(lc: LoginCx<'_>, conn: ConnId, realm: String, details: Dict) -> Result<Hello, Abort> {
    lifecycle::admit(lc.realms, lc.sessions, &realm)?;
    if lc.logins.waiting.len() >= limits::AUTH_PENDING_PER_SHARD_MAX {
        return Err(Abort::AuthLimit);
    }
    let origin = lc.cx.conns.get(conn).map(|c| c.info.origin).unwrap_or_default();
    let anonymous_allowed = lc.realms.router().realm(&realm).is_some_and(|r| r.anonymous);
    let session = lifecycle::fresh_session_id(lc.cx, lc.sessions);
    let timestamp = lc.logins.timestamp(lc.cx.now);
    let facts = HelloFacts {
        realm: &realm,
        details: &details,
        origin: &origin,
        anonymous_allowed,
        session,
        timestamp: &timestamp,
    };
    let config = lc.logins.config.clone();
    let step = auth::on_hello(config.listener(origin.listener), &facts, &mut lc.logins.rng);
    let features = ClientFeatures::from_hello(&details);
    let authid = details.get("authid").and_then(Value::as_str).map_or_else(String::new, crate::proto::wire::peer_text);
    let w = Waiting { realm, features, session, origin, authid, state: WaitState::Challenge(placeholder()) };
    take_step(lc, conn, w, step)
}

/// A placeholder state, replaced before the entry is stored.
fn placeholder() -> Pending {
    Pending { method: AuthMethod::Anonymous, authid: None, expect: auth::Expect::Ticket { principal: None } }
}

/// AUTHENTICATE on `conn`.
pub(crate) fn on_authenticate(lc: LoginCx<'_>, conn: ConnId, signature: String) -> Result<Hello, Abort> {
    let Some(mut w) = lc.logins.waiting.remove(&conn) else {
        return Err(Abort::Violation(super::violation::Violation::NotFromClient { received: "AUTHENTICATE" }));
    };
    let pending = match std::mem::replace(&mut w.state, WaitState::Challenge(placeholder())) {
        WaitState::Challenge(p) => p,
        WaitState::Asking { ask, call } => {
            // An AUTHENTICATE while the authenticator decides: no CHALLENGE was sent.
            lc.logins.asking.remove(&call);
            rpc::cancel_router_call(lc.cx, lc.calls, lc.realms, lc.sessions, call);
            drop(ask);
            return Err(Abort::Violation(super::violation::Violation::NotFromClient { received: "AUTHENTICATE" }));
        }
    };
    let timestamp = lc.logins.timestamp(lc.cx.now);
    let no_details = Dict::new();
    let facts = w.facts(&no_details, &timestamp);
    let step = match auth::on_authenticate(pending, &signature, &facts) {
        Ok(Ok(granted)) => Ok(Step::Granted(granted)),
        Ok(Err(ask)) => Ok(Step::Ask(ask)),
        Err(refused) => Err(refused),
    };
    take_step(lc, conn, w, step)
}

impl Waiting {
    fn facts<'a>(&'a self, details: &'a Dict, timestamp: &'a str) -> HelloFacts<'a> {
        HelloFacts {
            realm: &self.realm,
            details,
            origin: &self.origin,
            anonymous_allowed: false,
            session: self.session,
            timestamp,
        }
    }
}

/// The authenticator's call `call` ended (`Ok(args)` or `Err(error URI)`).
pub(crate) fn on_answer(lc: LoginCx<'_>, call: u64, answer: Result<Payload, String>) -> Option<(ConnId, Abort)> {
    let conn = lc.logins.asking.remove(&call)?;
    let mut w = lc.logins.waiting.remove(&conn)?;
    let WaitState::Asking { ask, .. } = std::mem::replace(&mut w.state, WaitState::Challenge(placeholder())) else {
        return None;
    };
    let answer = answer.and_then(|p| p.args().map_err(|e| format!("undecodable result: {e}")));
    let timestamp = lc.logins.timestamp(lc.cx.now);
    let no_details = Dict::new();
    let facts = w.facts(&no_details, &timestamp);
    let step = auth::on_answer(ask, answer, &facts, &mut lc.logins.rng);
    match take_step(lc, conn, w, step) {
        Ok(_) => None,
        Err(abort) => Some((conn, abort)),
    }
}

/// The authenticator's call `call` did not answer in time.
pub(crate) fn on_authenticator_timeout(lc: LoginCx<'_>, call: u64) -> Option<(ConnId, Abort)> {
    let conn = *lc.logins.asking.get(&call)?;
    rpc::cancel_router_call(lc.cx, lc.calls, lc.realms, lc.sessions, call);
    // Canceling answered the call with an error (now in `Calls`' answers); answer it here
    // first, as a timeout.
    lc.logins.asking.remove(&call);
    let w = lc.logins.waiting.remove(&conn)?;
    let method = match &w.state {
        WaitState::Asking { ask, .. } => Some(ask.method),
        WaitState::Challenge(p) => Some(p.method),
    };
    let why = "authenticator did not answer in time".to_owned();
    let refused = Refused { method, abort: Abort::AuthFailed { message: "authentication failed".into() }, why };
    Some((conn, refused_abort(lc.cx, lc.logins, conn, &w, refused)))
}

/// `conn` is going away (closed, aborted): forget its login.
pub(crate) fn forget(lc: LoginCx<'_>, conn: ConnId) {
    if let Some(w) = lc.logins.waiting.remove(&conn)
        && let WaitState::Asking { call, .. } = w.state
    {
        lc.logins.asking.remove(&call);
        rpc::cancel_router_call(lc.cx, lc.calls, lc.realms, lc.sessions, call);
    }
}

/// Act on a step: WELCOME, CHALLENGE, or call the authenticator.
fn take_step(lc: LoginCx<'_>, conn: ConnId, mut w: Waiting, step: Result<Step, Refused>) -> Result<Hello, Abort> {
    let step = match step {
        Ok(s) => s,
        Err(refused) => return Err(refused_abort(lc.cx, lc.logins, conn, &w, refused)),
    };
    match step {
        Step::Granted(g) => grant(lc, conn, w, g),
        Step::Challenge { method, extra, pending } => {
            lc.cx.send(conn, &Message::Challenge { authmethod: method.name().to_owned(), extra });
            w.state = WaitState::Challenge(pending);
            set_authenticating(lc.cx, conn);
            lc.logins.waiting.insert(conn, w);
            Ok(Hello::Pending)
        }
        Step::Ask(ask) => {
            if lc.logins.asking.len() >= limits::AUTHENTICATOR_CALLS_PER_SHARD_MAX {
                let why = "too many authenticator calls in flight".to_owned();
                let abort = Abort::AuthFailed { message: "authenticator busy; try again later".into() };
                return Err(refused_abort(
                    lc.cx,
                    lc.logins,
                    conn,
                    &w,
                    Refused { method: Some(ask.method), abort, why },
                ));
            }
            let realm: Arc<str> = Arc::from(&*ask.authenticator.realm);
            let procedure = ask.authenticator.procedure.clone();
            let payload = Payload::from_values(Serializer::MsgPack, Some(&ask.args), None);
            let call = rpc::router_call(lc.cx, lc.calls, lc.realms, lc.sessions, realm, procedure, payload);
            lc.timers
                .arm(lc.cx.now + Duration::from_millis(limits::AUTHENTICATOR_TIMEOUT_MS), Timer::Authenticator(call));
            w.state = WaitState::Asking { ask, call };
            set_authenticating(lc.cx, conn);
            lc.logins.asking.insert(call, conn);
            lc.logins.waiting.insert(conn, w);
            Ok(Hello::Pending)
        }
    }
}

fn set_authenticating(cx: &mut Out, conn: ConnId) {
    if let Some(c) = cx.conns.get_mut(conn) {
        c.state = ConnState::Authenticating;
    }
}

/// WELCOME, unless the principal is bound to another realm or the realm went away.
fn grant(lc: LoginCx<'_>, conn: ConnId, w: Waiting, g: Granted) -> Result<Hello, Abort> {
    if let Some(bound) = &g.realm
        && **bound != *w.realm
    {
        let why = format!("principal {:?} is bound to realm {bound:?}", &*g.authid);
        return Err(refused_abort(lc.cx, lc.logins, conn, &w, Refused::denied(g.method, why)));
    }
    lifecycle::admit(lc.realms, lc.sessions, &w.realm)?;
    lc.logins.count(w.origin.listener, Some(g.method), true);
    let id = lifecycle::Established { realm: &w.realm, session: w.session, granted: g, features: w.features };
    lifecycle::establish(lc.cx, lc.realms, lc.sessions, conn, id)
}

/// Count and log a refusal; the ABORT it becomes.
fn refused_abort(cx: &mut Out, logins: &mut Logins, conn: ConnId, w: &Waiting, r: Refused) -> Abort {
    logins.count(w.origin.listener, r.method, false);
    let failures: u64 = logins.counts.values().map(|c| c[1]).sum();
    if log_allowed(failures) {
        tracing::info!(
            shard = cx.shard,
            conn,
            listener = w.origin.listener,
            peer = %w.origin.peer.map_or_else(|| "local".to_owned(), |p| p.to_string()),
            method = r.method.map_or("none", AuthMethod::name),
            authid = %w.authid,
            realm = %crate::proto::wire::peer_text(&w.realm),
            why = %r.why,
            total = failures,
            "authentication refused"
        );
    }
    r.abort
}
