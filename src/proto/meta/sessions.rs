//! `wamp.session.*`: count, list, get and the kills, as gathers over every shard.

use super::super::uris;
use super::super::wire::uri;
use super::super::wire::{Dict, Id, Value};
use super::{CallError, Combine, KillWho, Query, string_list};

/// What a session procedure asks every shard, and how the parts combine; or the ERROR
/// (URI, message) for bad arguments. None: not a session procedure this module answers.
pub(crate) fn plan(
    procedure: &str,
    caller: Id,
    args: &[Value],
    kwargs: &Dict,
) -> Option<Result<(Query, Combine), CallError>> {
    let arg = |i: usize| args.get(i);
    let roles = || string_list(arg(0).or_else(|| kwargs.get("filter_authroles"))).map_err(bad);
    let id = || match arg(0).and_then(Value::as_u64) {
        Some(id) => Ok(id),
        None => Err(bad("expected a session ID as the first argument".to_owned())),
    };
    let text = |what: &str| match arg(0).and_then(Value::as_str) {
        Some(s) => Ok(s.to_owned()),
        None => Err(bad(format!("expected {what} (a string) as the first argument"))),
    };
    let plan = match procedure {
        "wamp.session.count" => roles().map(|roles| (Query::SessionIds { roles }, Combine::Count)),
        "wamp.session.list" => roles().map(|roles| (Query::SessionIds { roles }, Combine::List)),
        "wamp.session.get" => id().map(|session| (Query::SessionGet { session }, Combine::One)),
        "wamp.session.kill" => id().and_then(|id| {
            if id == caller {
                // The spec: a session cannot kill itself through the meta API.
                return Err((uris::NO_SUCH_SESSION, "a session cannot kill itself".to_owned()));
            }
            kill(KillWho::Session(id), caller, kwargs).map(|q| (q, Combine::KilledOne))
        }),
        "wamp.session.kill_by_authid" => {
            text("an authid").and_then(|a| kill(KillWho::Authid(a), caller, kwargs).map(|q| (q, Combine::List)))
        }
        "wamp.session.kill_by_authrole" => {
            text("an authrole").and_then(|a| kill(KillWho::Authrole(a), caller, kwargs).map(|q| (q, Combine::List)))
        }
        "wamp.session.kill_all" => kill(KillWho::All, caller, kwargs).map(|q| (q, Combine::Count)),
        _ => return None,
    };
    Some(plan)
}

fn bad(message: String) -> CallError {
    (uris::INVALID_ARGUMENT, message)
}

/// A kill: `reason` (a URI, default `wamp.close.killed`) and `message` from the kwargs.
fn kill(who: KillWho, caller: Id, kwargs: &Dict) -> Result<Query, CallError> {
    let reason = match kwargs.get("reason") {
        None | Some(Value::Null) => uris::CLOSE_KILLED.to_owned(),
        Some(Value::Str(r)) if uri::is_valid(r, false, false) => r.clone(),
        Some(_) => return Err(bad("reason must be a valid URI".to_owned())),
    };
    let message = match kwargs.get("message") {
        None | Some(Value::Null) => None,
        Some(Value::Str(m)) => Some(m.clone()),
        Some(_) => return Err(bad("message must be a string".to_owned())),
    };
    Ok(Query::Kill { who, except: caller, reason, message })
}

/// Whether a session of `authid`/`authrole` (not `except`) is one the kill is for.
pub(crate) fn kill_matches(who: &KillWho, except: Id, session: Id, authid: &str, authrole: &str) -> bool {
    session != except
        && match who {
            KillWho::Session(id) => *id == session,
            KillWho::Authid(a) => a == authid,
            KillWho::Authrole(r) => r == authrole,
            KillWho::All => true,
        }
}
