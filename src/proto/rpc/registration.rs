//! The callee's side of REGISTER/UNREGISTER on its home shard: ask the owner, answer when
//! it confirms (after its barrier), and the release of an ended session's registrations.
//! The owner side is `control`.

use std::sync::Arc;

use super::super::dealer::{RegisterOptions, RegisterRefused};
use super::super::mesh::{MeshMsg, RegMsg};
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
use super::table::{Calls, PendingRegister, Unregistering};
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
    let token = cx.token();
    calls.pending_unregisters.insert(token, Unregistering::Reply { session: s.id, conn: s.conn, request });
    let realm = s.realm.clone();
    cx.send_mesh(owner_of(registration), MeshMsg::Reg(RegMsg::UnregReq { realm, registration, callee: s.id, token }));
}

/// The owner's answer to a REGISTER.
pub(crate) fn on_register_done(
    cx: &mut Out,
    calls: &mut Calls,
    sessions: &Sessions,
    realm: Arc<str>,
    token: u64,
    result: Result<Id, RegisterRefused>,
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
            // Release invocations that overtook this REGISTERED, in arrival order.
            let parked = std::mem::take(&mut rpc.parked);
            let (mine, rest): (Vec<_>, Vec<_>) =
                parked.into_iter().partition(|inv| inv.reg_uri == procedure && inv.reg_policy == policy);
            rpc.parked = rest;
            for inv in mine {
                start_invocation(cx, calls, sessions, inv);
            }
        }
        Err(refused) => cx.error(s.conn, code::REGISTER, p.request, refused.uri(), Some(refused.message(&procedure))),
    }
}

/// The owner released a callee: answer the UNREGISTER, or count down an ended session's
/// teardown and, once done, tell the callers of its invocations.
pub(crate) fn on_unregister_done(cx: &mut Out, calls: &mut Calls, sessions: &Sessions, token: u64) {
    match calls.pending_unregisters.remove(&token) {
        Some(Unregistering::Reply { session, conn, request }) if sessions.contains_key(&session) => {
            cx.send(conn, &Message::Unregistered { request, details: None });
        }
        Some(Unregistering::Reply { .. }) | None => {}
        Some(Unregistering::Teardown(t)) => teardown::released(cx, calls, t),
    }
}
