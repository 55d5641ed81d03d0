//! Session lifecycle on its home shard: whether a realm admits a session, its creation and
//! WELCOME once the login (`login.rs`) succeeded, and the end of a session however it comes
//! (GOODBYE, ABORT, transport loss, kill, slow consumer, ping timeout, shutdown), which
//! publishes its testaments, removes every trace of it from this shard and tells owners and
//! peers.

use std::sync::Arc;

use super::auth::Granted;
use super::mesh::ShardId;
use super::meta;
use super::out::{ConnState, Out};
use super::pubsub;
use super::realm::Realms;
use super::rpc::{self, Calls};
use super::session::{ClientFeatures, ConnId, Session, SessionAuth, Sessions};
use super::violation::Abort;
use super::wire::uri;
use super::wire::{Dict, Id, Message, Value};
use crate::limits;

/// What a HELLO (or AUTHENTICATE, or an authenticator's answer) led to, when it was not
/// refused.
pub(crate) enum Hello {
    Welcomed,
    /// CHALLENGE sent, or an authenticator asked: the login goes on.
    Pending,
    /// The session was created but even the compact WELCOME does not fit the peer's
    /// RawSocket limit: end it and close the connection.
    WelcomeTooLarge(Id),
}

/// Whether a session may be created in `realm` on this shard now (the realm exists or may
/// be created, the shard's limits). Checked at HELLO and again at WELCOME.
pub(crate) fn admit(realms: &Realms, sessions: &Sessions, realm: &str) -> Result<(), Abort> {
    if !uri::is_valid(realm, false, false) {
        return Err(Abort::invalid_realm(realm));
    }
    if realms.router().realm(realm).is_none() {
        return Err(Abort::no_such_realm(realm));
    }
    // Auto-created realms are capped; a configured realm is never locked out by them.
    if !realms.contains(realm) && realms.len() >= limits::REALMS_MAX && !realms.router().is_configured(realm) {
        return Err(Abort::RealmLimit);
    }
    if sessions.len() >= limits::SHARD_SESSIONS_MAX {
        return Err(Abort::SessionLimit);
    }
    Ok(())
}

/// A session ID not in use on this shard (IDs are random over the whole router).
pub(crate) fn fresh_session_id(cx: &mut Out, sessions: &Sessions) -> Id {
    let mut id = cx.ids.next_global();
    while sessions.contains_key(&id) {
        id = cx.ids.next_global();
    }
    id
}

/// A login that succeeded: the session to create.
pub(crate) struct Established<'a> {
    pub realm: &'a str,
    /// The ID reserved at HELLO (replaced if another session took it meanwhile).
    pub session: Id,
    pub granted: Granted,
    pub features: ClientFeatures,
}

/// Create the session on `conn` and send WELCOME.
pub(crate) fn establish(
    cx: &mut Out,
    realms: &mut Realms,
    sessions: &mut Sessions,
    conn: ConnId,
    e: Established<'_>,
) -> Result<Hello, Abort> {
    let Some(rc) = realms.router().realm(e.realm) else { return Err(Abort::no_such_realm(e.realm)) };
    let realm_state = realms.get_or_create(&Arc::from(e.realm));
    realm_state.sessions += 1;
    realm_state.stats.sessions_opened += 1;
    let realm_name = realm_state.name.clone();
    let id = if sessions.contains_key(&e.session) { fresh_session_id(cx, sessions) } else { e.session };
    let g = e.granted;
    let welcome = welcome_details(&g, cx.shard, rc.meta_api, rc.meta_api && !rc.history.is_empty());
    if let Some(c) = cx.conns.get_mut(conn) {
        c.state = ConnState::Established(id);
        c.slow_policy = rc.slow_consumer;
        c.live.established = true;
    }
    let mut session = Session::new(id, conn, realm_name, g.authid.clone(), g.role.clone(), e.features);
    session.auth = SessionAuth { method: g.method.name(), provider: g.provider, extra: g.extra.clone() };
    if cx.try_send(conn, &Message::Welcome { session: id, details: welcome }).is_err() {
        // A client with a tiny RawSocket limit (512 bytes) gets the compact form: its
        // identity and bare roles, no feature lists.
        let roles = Dict::new().with("broker", Dict::new()).with("dealer", Dict::new());
        let compact = Dict::new()
            .with("authid", &*g.authid)
            .with("authrole", &*g.role)
            .with("authmethod", g.method.name())
            .with("roles", roles);
        if cx.try_send(conn, &Message::Welcome { session: id, details: compact }).is_err() {
            sessions.insert(id, session);
            return Ok(Hello::WelcomeTooLarge(id));
        }
    }
    if rc.meta_api {
        let details =
            |cx: &Out| vec![Value::Dict(meta::session_details(&session, meta::transport_details(cx.conns.get(conn))))];
        let realm = realms.get_or_create(&session.realm);
        pubsub::publish_from_router(cx, realm, meta::ON_JOIN, details);
    }
    sessions.insert(id, session);
    Ok(Hello::Welcomed)
}

/// Remove every trace of session `sid` on this shard and tell the owners and peers.
pub(crate) fn end_session(cx: &mut Out, realms: &mut Realms, sessions: &mut Sessions, calls: &mut Calls, sid: Id) {
    let Some(mut s) = sessions.remove(&sid) else { return };
    cx.stats.sessions_closed += 1;
    if let Some(c) = cx.conns.get_mut(s.conn)
        && matches!(c.state, ConnState::Established(x) if x == sid)
    {
        c.state = ConnState::ExpectHello;
    }
    let realm = realms.get_or_create(&s.realm);
    realm.sessions = realm.sessions.saturating_sub(1);
    // Its last words first, as it, while its earlier publications are ahead of them.
    if !s.testaments.is_empty() {
        meta::testaments::publish_on_end(cx, realm, &mut s);
    }
    pubsub::leave_all(cx, realm, &s);
    rpc::on_session_end(cx, calls, &s);
    if realm.config.meta_api {
        let args = |_: &Out| vec![Value::from(s.id), Value::from(&*s.authid), Value::from(&*s.authrole)];
        pubsub::publish_from_router(cx, realm, meta::ON_LEAVE, args);
    }
}

/// `WELCOME.Details`: identity, and the router's roles with only the features that work
/// (the meta APIs only in realms that have them, event history only where it is kept).
fn welcome_details(g: &Granted, shard: ShardId, meta_api: bool, event_history: bool) -> Dict {
    let features = |names: &[&str], meta: &[&str]| {
        let mut f = Dict::new();
        for n in names.iter().chain(if meta_api { meta } else { &[] }) {
            f.insert(*n, true);
        }
        Dict::new().with("features", f)
    };
    let mut broker = features(
        &[
            "publisher_identification",
            "publisher_exclusion",
            "subscriber_blackwhite_listing",
            "pattern_based_subscription",
            "event_retention",
        ],
        &["session_meta_api", "subscription_meta_api"],
    );
    if event_history && let Some(Value::Dict(f)) = broker.get_mut("features") {
        f.insert("event_history", true);
    }
    let dealer = features(
        &[
            "caller_identification",
            "pattern_based_registration",
            "shared_registration",
            "progressive_call_results",
            "call_canceling",
            "call_reroute",
            "call_timeout",
            "progressive_call_invocations",
        ],
        &["session_meta_api", "registration_meta_api", "testament_meta_api"],
    );
    let mut authextra = g.extra.clone();
    authextra.insert("_shard", shard as u64);
    Dict::new()
        .with("authid", &*g.authid)
        .with("authrole", &*g.role)
        .with("authmethod", g.method.name())
        .with("authprovider", g.provider)
        .with("authextra", authextra)
        .with("roles", Dict::new().with("broker", broker).with("dealer", dealer))
        .with("agent", concat!("shardbar-", env!("CARGO_PKG_VERSION")))
}
