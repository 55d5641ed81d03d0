//! `wamp.registration.*`: the procedures (what each asks of which shards, and each shard's
//! part) and the four lifecycle events, mirroring `subscriptions`.
//!
//! Lists, lookups and the best match come from the home shard's route replica; `get` and
//! the callee list from the owner (it keeps the authoritative list). The events are
//! published by the callee's home shard: `on_create` (told by the owner's `RegMsg::Done`)
//! right before its `on_register`, `on_delete` (told by `RegMsg::UnregDone`) right after
//! its `on_unregister`.

use std::time::SystemTime;

use super::super::auth::entropy::iso8601;
use super::super::mesh::InvokePolicy;
use super::super::out::Out;
use super::super::realm::{Realm, Realms};
use super::super::rpc::{self, Calls};
use super::super::session::Sessions;
use super::super::uris;
use super::super::wire::uri::MatchPolicy;
use super::super::wire::{Dict, Id, Value};
use super::{
    Asks, Combine, KNOWN, Planned, Query, REMOVED, arg_id, arg_uri, by_policy, event, lookup_policy, opt_arg_id, reason,
};

pub(crate) const ON_CREATE: &str = "wamp.registration.on_create";
pub(crate) const ON_REGISTER: &str = "wamp.registration.on_register";
pub(crate) const ON_UNREGISTER: &str = "wamp.registration.on_unregister";
pub(crate) const ON_DELETE: &str = "wamp.registration.on_delete";

/// What a registration procedure asks.
#[derive(Clone, Debug)]
pub enum RegQuery {
    /// Every registration of the realm, by policy (home replica).
    List,
    /// The registrations of one session, by policy (its home shard; null elsewhere).
    OfSession { session: Id },
    /// The registration of exactly (procedure, policy) (home replica).
    Lookup { procedure: String, policy: MatchPolicy },
    /// The registration a call to `procedure` would go to (home replica).
    Match { procedure: String },
    /// `{id, created, uri, match, invoke}` (owner; null elsewhere).
    Get { id: Id },
    /// The callees' session IDs, or their number (owner; null elsewhere).
    Callees { id: Id, count: bool },
    /// Remove a callee (its home shard) with a revocation.
    Remove { id: Id, session: Id, reason: Option<String> },
}

impl RegQuery {
    pub(crate) fn asks(&self) -> Asks {
        match self {
            RegQuery::List | RegQuery::Lookup { .. } | RegQuery::Match { .. } => Asks::Home,
            RegQuery::Get { id } | RegQuery::Callees { id, .. } => Asks::Owner(*id),
            RegQuery::OfSession { .. } | RegQuery::Remove { .. } => Asks::All,
        }
    }
}

/// What a registration procedure asks, and how the parts combine; or the ERROR for bad
/// arguments. None: not a procedure of this module.
pub(crate) fn plan(procedure: &str, args: &[Value], kwargs: &Dict) -> Option<Planned> {
    let reg = "a registration ID";
    let missing = uris::NO_SUCH_REGISTRATION;
    let plan = match procedure {
        "wamp.registration.list" => opt_arg_id(args, 0, "a session ID").map(|session| match session {
            None => (RegQuery::List, Combine::Value),
            Some(session) => (RegQuery::OfSession { session }, Combine::One { missing: uris::NO_SUCH_SESSION }),
        }),
        "wamp.registration.lookup" => arg_uri(args, 0, "a procedure").and_then(|procedure| {
            Ok((RegQuery::Lookup { procedure, policy: lookup_policy(args, kwargs)? }, Combine::Value))
        }),
        "wamp.registration.match" => {
            arg_uri(args, 0, "a procedure").map(|procedure| (RegQuery::Match { procedure }, Combine::Value))
        }
        "wamp.registration.get" => arg_id(args, 0, reg).map(|id| (RegQuery::Get { id }, Combine::One { missing })),
        "wamp.registration.list_callees" => {
            arg_id(args, 0, reg).map(|id| (RegQuery::Callees { id, count: false }, Combine::One { missing }))
        }
        "wamp.registration.count_callees" => {
            arg_id(args, 0, reg).map(|id| (RegQuery::Callees { id, count: true }, Combine::One { missing }))
        }
        "wamp.registration.remove_callee" => (|| {
            let id = arg_id(args, 0, reg)?;
            let session = arg_id(args, 1, "a session ID")?;
            let reason = reason(args, 2, kwargs)?;
            Ok((RegQuery::Remove { id, session, reason }, Combine::Removed { missing }))
        })(),
        _ => return None,
    };
    Some(plan.map(|(q, c)| (Query::Reg(q), c)))
}

/// This shard's part of a registration query in `realm`.
pub(crate) fn answer(
    cx: &mut Out,
    realms: &mut Realms,
    sessions: &Sessions,
    calls: &mut Calls,
    realm: &str,
    q: &RegQuery,
) -> Value {
    let Some(r) = realms.get_mut(realm) else {
        return match q {
            RegQuery::List => by_policy([]),
            _ => Value::Null,
        };
    };
    match q {
        RegQuery::List => {
            let mut all = Vec::new();
            r.dealer.for_each_route(|policy, id| all.push((policy, id)));
            by_policy(all)
        }
        RegQuery::OfSession { session } => match (sessions.get(session), calls.sessions.get(session)) {
            (Some(s), rpc) if &*s.realm == realm => {
                by_policy(rpc.into_iter().flat_map(|rpc| rpc.registrations.iter().map(|(&id, (_, p))| (*p, id))))
            }
            _ => Value::Null,
        },
        RegQuery::Lookup { procedure, policy } => {
            r.dealer.route_id(procedure, *policy).map_or(Value::Null, Value::from)
        }
        RegQuery::Match { procedure } => r.dealer.best_id(procedure).map_or(Value::Null, Value::from),
        RegQuery::Get { id } => match r.dealer.owned_reg(*id) {
            Some(reg) => {
                let at = cx.wall(reg.created);
                Value::Dict(details(reg.id, at, &reg.procedure, reg.policy, reg.invoke))
            }
            None => Value::Null,
        },
        RegQuery::Callees { id, count } => match r.dealer.owned_reg(*id) {
            Some(reg) if *count => Value::from(reg.callees.len() as u64),
            Some(reg) => {
                let mut ids: Vec<Id> = reg.callees.iter().map(|c| c.session).collect();
                ids.sort_unstable();
                Value::List(ids.into_iter().map(Value::from).collect())
            }
            None => Value::Null,
        },
        RegQuery::Remove { id, session, reason } => {
            let owned = r.dealer.owned_reg(*id).is_some();
            let removed = match sessions.get(session) {
                Some(s) if &*s.realm == realm => rpc::revoke(cx, calls, s, *id, reason.as_deref()),
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

/// `wamp.registration.get`'s and `on_create`'s dict.
fn details(id: Id, created: SystemTime, procedure: &str, policy: MatchPolicy, invoke: InvokePolicy) -> Dict {
    Dict::new()
        .with("id", id)
        .with("created", iso8601(created))
        .with("uri", procedure)
        .with("match", policy.as_str())
        .with("invoke", invoke.as_str())
}

/// `wamp.registration.on_create(session, {id, created, uri, match, invoke})`.
pub(crate) fn on_create(
    cx: &mut Out,
    realm: &mut Realm,
    session: Id,
    id: Id,
    (created, invoke): (SystemTime, InvokePolicy),
    procedure: &str,
    policy: MatchPolicy,
) {
    let d = || Value::Dict(details(id, created, procedure, policy, invoke));
    event(cx, realm, ON_CREATE, |_| vec![Value::from(session), d()]);
}

/// `wamp.registration.on_register(session, id)`.
pub(crate) fn on_register(cx: &mut Out, realm: &mut Realm, session: Id, id: Id) {
    event(cx, realm, ON_REGISTER, |_| vec![Value::from(session), Value::from(id)]);
}

/// `wamp.registration.on_unregister(session, id)`.
pub(crate) fn on_unregister(cx: &mut Out, realm: &mut Realm, session: Id, id: Id) {
    event(cx, realm, ON_UNREGISTER, |_| vec![Value::from(session), Value::from(id)]);
}

/// `wamp.registration.on_delete(session, id)`: `session`'s leaving removed the last callee.
pub(crate) fn on_delete(cx: &mut Out, realm: &mut Realm, session: Id, id: Id) {
    event(cx, realm, ON_DELETE, |_| vec![Value::from(session), Value::from(id)]);
}
