//! `wamp.subscription.*`: the procedures (what each asks of which shards, and each shard's
//! part) and the four lifecycle events.
//!
//! Lists, lookups and matches come from the home shard's route replica; `get` from the
//! owner (it alone knows `created`); subscribers from every shard (each knows its own
//! members). The events are published by the subscribing session's home shard: `on_create`
//! (told by the owner's `SubMsg::Done`) right before that session's `on_subscribe`, and
//! `on_delete` (told by the owner's `SubMsg::Deleted`) after its `on_unsubscribe`.

use std::time::SystemTime;

use super::super::auth::entropy::iso8601;
use super::super::out::Out;
use super::super::pubsub;
use super::super::realm::{Realm, Realms};
use super::super::session::Sessions;
use super::super::uris;
use super::super::wire::uri::MatchPolicy;
use super::super::wire::{Dict, Id, Value};
use super::{
    Asks, Combine, KNOWN, Planned, Query, REMOVED, arg_id, arg_uri, by_policy, event, lookup_policy, opt_arg_id, reason,
};

pub(crate) const ON_CREATE: &str = "wamp.subscription.on_create";
pub(crate) const ON_SUBSCRIBE: &str = "wamp.subscription.on_subscribe";
pub(crate) const ON_UNSUBSCRIBE: &str = "wamp.subscription.on_unsubscribe";
pub(crate) const ON_DELETE: &str = "wamp.subscription.on_delete";

/// What a subscription procedure asks.
#[derive(Clone, Debug)]
pub enum SubQuery {
    /// Every subscription of the realm, by policy (home replica).
    List,
    /// The subscriptions of one session, by policy (its home shard; null elsewhere).
    OfSession { session: Id },
    /// The subscription of exactly (topic, policy) (home replica).
    Lookup { topic: String, policy: MatchPolicy },
    /// Every subscription matching a topic (home replica).
    Match { topic: String },
    /// `{id, created, uri, match}` (owner; null elsewhere).
    Get { id: Id },
    /// This shard's members (null if it neither has members nor owns the subscription).
    Subscribers { id: Id },
    /// Remove a subscriber (its home shard) with a revocation.
    Remove { id: Id, session: Id, reason: Option<String> },
}

impl SubQuery {
    pub(crate) fn asks(&self) -> Asks {
        match self {
            SubQuery::List | SubQuery::Lookup { .. } | SubQuery::Match { .. } => Asks::Home,
            SubQuery::Get { id } => Asks::Owner(*id),
            SubQuery::OfSession { .. } | SubQuery::Subscribers { .. } | SubQuery::Remove { .. } => Asks::All,
        }
    }
}

/// What a subscription procedure asks, and how the parts combine; or the ERROR for bad
/// arguments. None: not a procedure of this module.
pub(crate) fn plan(procedure: &str, args: &[Value], kwargs: &Dict) -> Option<Planned> {
    let sub = "a subscription ID";
    let missing = uris::NO_SUCH_SUBSCRIPTION;
    let plan = match procedure {
        "wamp.subscription.list" => opt_arg_id(args, 0, "a session ID").map(|session| match session {
            None => (SubQuery::List, Combine::Value),
            Some(session) => (SubQuery::OfSession { session }, Combine::One { missing: uris::NO_SUCH_SESSION }),
        }),
        "wamp.subscription.lookup" => arg_uri(args, 0, "a topic")
            .and_then(|topic| Ok((SubQuery::Lookup { topic, policy: lookup_policy(args, kwargs)? }, Combine::Value))),
        "wamp.subscription.match" => {
            arg_uri(args, 0, "a topic").map(|topic| (SubQuery::Match { topic }, Combine::Value))
        }
        "wamp.subscription.get" => arg_id(args, 0, sub).map(|id| (SubQuery::Get { id }, Combine::One { missing })),
        "wamp.subscription.list_subscribers" => {
            arg_id(args, 0, sub).map(|id| (SubQuery::Subscribers { id }, Combine::Members { count: false }))
        }
        "wamp.subscription.count_subscribers" => {
            arg_id(args, 0, sub).map(|id| (SubQuery::Subscribers { id }, Combine::Members { count: true }))
        }
        "wamp.subscription.remove_subscriber" => (|| {
            let id = arg_id(args, 0, sub)?;
            let session = arg_id(args, 1, "a session ID")?;
            let reason = reason(args, 2, kwargs)?;
            Ok((SubQuery::Remove { id, session, reason }, Combine::Removed { missing }))
        })(),
        _ => return None,
    };
    Some(plan.map(|(q, c)| (Query::Sub(q), c)))
}

/// This shard's part of a subscription query in `realm`.
pub(crate) fn answer(cx: &mut Out, realms: &mut Realms, sessions: &mut Sessions, realm: &str, q: &SubQuery) -> Value {
    let Some(r) = realms.get_mut(realm) else {
        return match q {
            SubQuery::List => by_policy([]),
            _ => Value::Null,
        };
    };
    match q {
        SubQuery::List => {
            let mut all = Vec::new();
            r.broker.for_each_route(|policy, id| all.push((policy, id)));
            by_policy(all)
        }
        SubQuery::OfSession { session } => match sessions.get(session) {
            Some(s) if &*s.realm == realm => {
                by_policy(s.subscriptions.iter().filter_map(|&id| Some((r.broker.local(id)?.policy, id))))
            }
            _ => Value::Null,
        },
        SubQuery::Lookup { topic, policy } => r.broker.route_id(topic, *policy).map_or(Value::Null, Value::from),
        SubQuery::Match { topic } => {
            let mut ids = Vec::new();
            r.broker.routes(topic, |t, _| ids.push(t.subscription));
            ids.sort_unstable();
            if ids.is_empty() { Value::Null } else { Value::List(ids.into_iter().map(Value::from).collect()) }
        }
        SubQuery::Get { id } => match r.broker.owned(*id) {
            Some(sub) => Value::Dict(details(sub.id, cx.wall(sub.created), &sub.topic, sub.policy)),
            None => Value::Null,
        },
        SubQuery::Subscribers { id } => match r.broker.local(*id) {
            Some(local) => {
                let mut ids: Vec<Id> = local.members.iter().map(|m| m.session).collect();
                ids.sort_unstable();
                Value::List(ids.into_iter().map(Value::from).collect())
            }
            None if r.broker.owned(*id).is_some() => Value::List(Vec::new()),
            None => Value::Null,
        },
        SubQuery::Remove { id, session, reason } => {
            let owned = r.broker.owned(*id).is_some();
            let removed = match sessions.get_mut(session) {
                Some(s) if &*s.realm == realm => pubsub::revoke(cx, r, s, *id, reason.as_deref()),
                _ => false,
            };
            match (removed, owned) {
                (true, _) => Value::from(REMOVED),
                (false, true) => Value::from(KNOWN),
                (false, false) => Value::Null,
            }
        }
    }
}

/// `wamp.subscription.get`'s and `on_create`'s dict.
fn details(id: Id, created: SystemTime, topic: &str, policy: MatchPolicy) -> Dict {
    Dict::new().with("id", id).with("created", iso8601(created)).with("uri", topic).with("match", policy.as_str())
}

/// `wamp.subscription.on_create(session, {id, created, uri, match})`.
pub(crate) fn on_create(
    cx: &mut Out,
    realm: &mut Realm,
    session: Id,
    id: Id,
    created: SystemTime,
    topic: &str,
    policy: MatchPolicy,
) {
    event(cx, realm, ON_CREATE, |_| vec![Value::from(session), Value::Dict(details(id, created, topic, policy))]);
}

/// `wamp.subscription.on_subscribe(session, id)`.
pub(crate) fn on_subscribe(cx: &mut Out, realm: &mut Realm, session: Id, id: Id) {
    event(cx, realm, ON_SUBSCRIBE, |_| vec![Value::from(session), Value::from(id)]);
}

/// `wamp.subscription.on_unsubscribe(session, id)`.
pub(crate) fn on_unsubscribe(cx: &mut Out, realm: &mut Realm, session: Id, id: Id) {
    event(cx, realm, ON_UNSUBSCRIBE, |_| vec![Value::from(session), Value::from(id)]);
}

/// `wamp.subscription.on_delete(session, id)`: the owner deleted subscription `id` when
/// `session` (of this shard) left it last.
pub(crate) fn on_delete(cx: &mut Out, realm: &mut Realm, session: Id, id: Id) {
    event(cx, realm, ON_DELETE, |_| vec![Value::from(session), Value::from(id)]);
}
