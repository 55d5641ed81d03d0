//! Session lifecycle on its home shard: HELLO → WELCOME (or ABORT), and the end of a
//! session however it comes (GOODBYE, ABORT, transport loss, slow consumer, shutdown), which
//! removes every trace of it from this shard and tells owners and peers.

use std::sync::Arc;

use super::mesh::ShardId;
use super::out::{ConnState, Out};
use super::pubsub;
use super::realm::Realms;
use super::rpc::{self, Calls};
use super::session::{ClientFeatures, ConnId, Session, Sessions};
use super::violation::Abort;
use super::wire::uri;
use super::wire::{Dict, Id, Message, Value};
use crate::limits;

/// What a HELLO led to, when it was not refused.
pub(crate) enum Hello {
    Welcomed,
    /// The session was created but even the compact WELCOME does not fit the peer's
    /// RawSocket limit: end it and close the connection.
    WelcomeTooLarge(Id),
}

/// HELLO on `conn`.
pub(crate) fn on_hello(
    cx: &mut Out,
    realms: &mut Realms,
    sessions: &mut Sessions,
    conn: ConnId,
    realm: String,
    details: Dict,
) -> Result<Hello, Abort> {
    if !uri::is_valid(&realm, false, false) {
        return Err(Abort::invalid_realm(&realm));
    }
    let Some(rc) = realms.router().realm(&realm) else { return Err(Abort::no_such_realm(&realm)) };
    // Auto-created realms are capped; a configured realm is never locked out by them.
    if !realms.contains(&realm) && realms.len() >= limits::REALMS_MAX && !realms.router().is_configured(&realm) {
        return Err(Abort::RealmLimit);
    }
    if sessions.len() >= limits::SHARD_SESSIONS_MAX {
        return Err(Abort::SessionLimit);
    }
    let methods = details.get("authmethods").and_then(Value::as_list);
    let wants_anonymous = methods.is_none_or(|l| l.iter().any(|m| m.as_str() == Some("anonymous")));
    if !rc.anonymous || !wants_anonymous {
        return Err(Abort::NoAuthMethod);
    }
    let features = ClientFeatures::from_hello(&details);
    let realm_state = realms.get_or_create(&Arc::from(realm.as_str()));
    realm_state.sessions += 1;
    realm_state.stats.sessions_opened += 1;
    let realm_name = realm_state.name.clone();
    let mut id = cx.ids.next_global();
    while sessions.contains_key(&id) {
        id = cx.ids.next_global();
    }
    let authid: Arc<str> = Arc::from(format!("anonymous-{id:x}"));
    let authrole: Arc<str> = Arc::from("anonymous");
    let welcome = welcome_details(&authid, &authrole, cx.shard);
    if let Some(c) = cx.conns.get_mut(conn) {
        c.state = ConnState::Established(id);
        c.slow_policy = rc.slow_consumer;
        c.live.established = true;
    }
    if cx.try_send(conn, &Message::Welcome { session: id, details: welcome }).is_err() {
        // A client with a tiny RawSocket limit (512 bytes) gets the compact form: its
        // identity and bare roles, no feature lists.
        let roles = Dict::new().with("broker", Dict::new()).with("dealer", Dict::new());
        let compact = Dict::new()
            .with("authid", &*authid)
            .with("authrole", &*authrole)
            .with("authmethod", "anonymous")
            .with("roles", roles);
        if cx.try_send(conn, &Message::Welcome { session: id, details: compact }).is_err() {
            sessions.insert(id, Session::new(id, conn, realm_name, authid, authrole, features));
            return Ok(Hello::WelcomeTooLarge(id));
        }
    }
    sessions.insert(id, Session::new(id, conn, realm_name, authid, authrole, features));
    Ok(Hello::Welcomed)
}

/// Remove every trace of session `sid` on this shard and tell the owners and peers.
pub(crate) fn end_session(cx: &mut Out, realms: &mut Realms, sessions: &mut Sessions, calls: &mut Calls, sid: Id) {
    let Some(s) = sessions.remove(&sid) else { return };
    cx.stats.sessions_closed += 1;
    if let Some(c) = cx.conns.get_mut(s.conn)
        && matches!(c.state, ConnState::Established(x) if x == sid)
    {
        c.state = ConnState::ExpectHello;
    }
    let realm = realms.get_or_create(&s.realm);
    realm.sessions = realm.sessions.saturating_sub(1);
    pubsub::leave_all(cx, realm, &s);
    rpc::on_session_end(cx, calls, &s);
}

/// `WELCOME.Details`: identity, and the router's roles with only the features that work.
fn welcome_details(authid: &str, authrole: &str, shard: ShardId) -> Dict {
    let features = |names: &[&str]| {
        let mut f = Dict::new();
        for n in names {
            f.insert(*n, true);
        }
        Dict::new().with("features", f)
    };
    let broker = features(&[
        "publisher_identification",
        "publisher_exclusion",
        "subscriber_blackwhite_listing",
        "pattern_based_subscription",
    ]);
    let dealer = features(&[
        "caller_identification",
        "pattern_based_registration",
        "shared_registration",
        "progressive_call_results",
        "call_canceling",
        "call_reroute",
    ]);
    Dict::new()
        .with("authid", authid)
        .with("authrole", authrole)
        .with("authmethod", "anonymous")
        .with("authprovider", "static")
        .with("authextra", Dict::new().with("_shard", shard as u64))
        .with("roles", Dict::new().with("broker", broker).with("dealer", dealer))
        .with("agent", concat!("shardbar-", env!("CARGO_PKG_VERSION")))
}
