//! The callee's side of REGISTER/UNREGISTER on its home shard: ask the owner, answer when
//! it confirms (after its barrier), and the release of an ended session's registrations.
//! The owner side is `control`.

use std::sync::Arc;
use std::time::SystemTime;

use super::super::dealer::{RegisterOptions, RegisterRefused};
use super::super::mesh::{InvokePolicy, MeshMsg, RegMsg};
use super::super::meta::{self, registrations};
use super::super::out::Out;
use super::super::realm::Realms;
use super::super::session::{Session, Sessions};
use super::super::uris;
use super::super::violation::Violation;
use super::super::wire::ids::owner_of;
use super::super::wire::message::code;
use super::super::wire::peer_text;
use super::super::wire::uri;
use super::super::wire::{Dict, Id, Message};
use super::callee::start_invocation;
use super::table::{AfterUnregister, Calls, PendingRegister, Unregistering};
use super::teardown;
use crate::limits;

/// REGISTER from session `s`.
pub(crate) fn on_register(
    cx: &mut Out,
    calls: &mut Calls,
    realms: &mut Realms,
    s: &Session,
    request: Id,
    options: Dict,
    procedure: String,
) -> Result<(), Violation> {
    let opts = RegisterOptions::parse(&options)?;
    let strict = realms.get_mut(&s.realm).is_some_and(|r| r.config.strict_uri);
    if !uri::is_valid_for(&procedure, opts.policy, strict) || uri::is_reserved(&procedure) {
        let msg = format!("invalid procedure {:?}", peer_text(&procedure));
        cx.error(s.conn, code::REGISTER, request, uris::INVALID_URI, Some(msg));
        return Ok(());
    }
    let rpc = calls.session(s.id);
    if rpc.registrations.len() + rpc.pending_registrations.len() >= limits::SESSION_REGISTRATIONS_MAX
        || rpc.pending_registrations.len() >= limits::SESSION_PENDING_ROUTE_CHANGES_MAX
    {
        let msg = "too many registrations".to_owned();
        cx.error(s.conn, code::REGISTER, request, uris::LIMIT_EXCEEDED, Some(msg));
        return Ok(());
    }
    let token = cx.token();
    let procedure: Arc<str> = Arc::from(procedure);
    rpc.pending_registrations.insert(token, (procedure.clone(), opts.policy));
    calls.pending_registers.insert(token, PendingRegister { session: s.id, request });
    let owner = cx.owner_shard(&s.realm, &procedure, opts.policy);
    let req = RegMsg::Req {
        realm: s.realm.clone(),
        procedure,
        policy: opts.policy,
        invoke: opts.invoke,
        disclose_caller: opts.disclose_caller,
        callee: s.id,
        token,
    };
    cx.send_mesh(owner, MeshMsg::Reg(req));
    Ok(())
}

/// UNREGISTER from session `s`: answered once the owner confirms.
pub(crate) fn on_unregister(cx: &mut Out, calls: &mut Calls, s: &Session, request: Id, registration: Id) {
    if calls.session(s.id).registrations.remove(&registration).is_none() {
        cx.error(s.conn, code::UNREGISTER, request, uris::NO_SUCH_REGISTRATION, None);
        return;
    }
    release(cx, calls, s, registration, AfterUnregister::Reply { conn: s.conn, request });
}

/// Remove session `s` as a callee of `registration` for the meta API (`remove_callee`): an
/// UNREGISTERED revocation (request 0, `{registration, reason}`) if the callee announced
/// `registration_revocation`, then as if it had unregistered. False if it is not a callee.
pub(crate) fn revoke(cx: &mut Out, calls: &mut Calls, s: &Session, registration: Id, reason: Option<&str>) -> bool {
    let Some(rpc) = calls.sessions.get_mut(&s.id) else { return false };
    if rpc.registrations.remove(&registration).is_none() {
        return false;
    }
    if s.features.registration_revocation {
        let details = meta::revocation("registration", registration, reason);
        cx.send(s.conn, &Message::Unregistered { request: 0, details: Some(details) });
    }
    release(cx, calls, s, registration, AfterUnregister::Revoked);
    true
}

/// Ask the owner to release session `s` as a callee of `registration` (already removed from
/// the session's registrations).
fn release(cx: &mut Out, calls: &mut Calls, s: &Session, registration: Id, then: AfterUnregister) {
    let token = cx.token();
    let realm = s.realm.clone();
    let u = Unregistering { realm: realm.clone(), session: s.id, registration, then };
    calls.pending_unregisters.insert(token, u);
    cx.send_mesh(owner_of(registration), MeshMsg::Reg(RegMsg::UnregReq { realm, registration, callee: s.id, token }));
}

/// The owner's answer to a REGISTER (`created` when the request created the registration:
/// `on_create` goes out before `on_register`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn on_register_done(
    cx: &mut Out,
    calls: &mut Calls,
    realms: &mut Realms,
    sessions: &Sessions,
    realm: Arc<str>,
    token: u64,
    result: Result<Id, RegisterRefused>,
    created: Option<(SystemTime, InvokePolicy)>,
) {
    let Some(p) = calls.pending_registers.remove(&token) else { return };
    let Some(s) = sessions.get(&p.session) else {
        // The session ended while its REGISTER waited: undo (token 0: nobody waits).
        if let Ok(reg) = result {
            let undo = RegMsg::UnregReq { realm, registration: reg, callee: p.session, token: 0 };
            cx.send_mesh(owner_of(reg), MeshMsg::Reg(undo));
        }
        return;
    };
    let rpc = calls.session(p.session);
    let Some((procedure, policy)) = rpc.pending_registrations.remove(&token) else { return };
    match result {
        Ok(registration) => {
            rpc.registrations.insert(registration, (procedure.clone(), policy));
            cx.send(s.conn, &Message::Registered { request: p.request, registration });
            if let Some(r) = realms.get_mut(&realm) {
                if let Some(created) = created {
                    registrations::on_create(cx, r, s.id, registration, created, &procedure, policy);
                }
                registrations::on_register(cx, r, s.id, registration);
            }
        }
        Err(refused) => cx.error(s.conn, code::REGISTER, p.request, refused.uri(), Some(refused.message(&procedure))),
    }
    // Invocations that overtook this answer, in arrival order: they start now, or (the
    // REGISTER refused) bounce back to their callers — unless another REGISTER of the same
    // procedure is still pending, behind which they park again.
    let rpc = calls.session(p.session);
    let parked = std::mem::take(&mut rpc.parked);
    let (mine, rest): (Vec<_>, Vec<_>) =
        parked.into_iter().partition(|inv| inv.reg_uri == procedure && inv.reg_policy == policy);
    rpc.parked = rest;
    for inv in mine {
        start_invocation(cx, calls, sessions, inv);
    }
}

/// The owner released a callee: answer the UNREGISTER, or count down an ended session's
/// teardown and, once done, tell the callers of its invocations. Then `on_unregister`, and
/// `on_delete` if that was the registration's last callee.
pub(crate) fn on_unregister_done(
    cx: &mut Out,
    calls: &mut Calls,
    realms: &mut Realms,
    sessions: &Sessions,
    token: u64,
    deleted: bool,
) {
    let Some(u) = calls.pending_unregisters.remove(&token) else { return };
    match u.then {
        AfterUnregister::Reply { conn, request } if sessions.contains_key(&u.session) => {
            cx.send(conn, &Message::Unregistered { request, details: None });
        }
        AfterUnregister::Reply { .. } | AfterUnregister::Revoked => {}
        AfterUnregister::Teardown(t) => teardown::released(cx, calls, t),
    }
    if let Some(r) = realms.get_mut(&u.realm) {
        registrations::on_unregister(cx, r, u.session, u.registration);
        if deleted {
            registrations::on_delete(cx, r, u.session, u.registration);
        }
    }
}
