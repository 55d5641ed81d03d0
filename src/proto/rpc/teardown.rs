//! The end of a session, for RPC: its registrations are released at their owners, and
//! only then are the callers of its unanswered invocations told (so a caller that retries
//! at once never meets the stale registration); its parked invocations bounce and its own
//! calls are canceled at their callees.

use super::super::mesh::{Bounce, CallKey, CallMsg, CancelMode, MeshMsg, RegMsg};
use super::super::out::{CoreEvent, Out};
use super::super::session::Session;
use super::super::uris;
use super::super::wire::ids::owner_of;
use super::super::wire::{Dict, Id, Payload, Serializer, Value};
use super::table::{AfterUnregister, Calls, Teardown, Unregistering};

/// An ended session's RPC state goes: its invocations' callers are told (once its
/// registrations are released), its parked invocations bounce, its own calls are canceled
/// at their callees.
pub(crate) fn on_session_end(cx: &mut Out, calls: &mut Calls, s: &Session) {
    let Some(rpc) = calls.sessions.remove(&s.id) else { return };
    // Hash-map order must not leak into what is sent (simulation seeds replay exactly).
    let mut invocations: Vec<_> = rpc.invocations.iter().collect();
    invocations.sort_unstable_by_key(|(request, _)| **request);
    let mut orphaned = Vec::new();
    for (_, st) in invocations {
        calls.invocations.remove(&st.call);
        if !st.caller_gone {
            orphaned.push(st.call);
        }
    }
    if rpc.registrations.is_empty() {
        fail_orphaned(cx, orphaned);
    } else {
        let teardown = cx.token();
        let td = Teardown { remaining: rpc.registrations.len(), calls: orphaned, conn: s.conn };
        calls.teardowns.insert(teardown, td);
        *calls.teardown_conns.entry(s.conn).or_default() += 1;
        let mut regs: Vec<Id> = rpc.registrations.keys().copied().collect();
        regs.sort_unstable();
        for registration in regs {
            let token = cx.token();
            let then = AfterUnregister::Teardown(teardown);
            let u = Unregistering { realm: s.realm.clone(), session: s.id, registration, then };
            calls.pending_unregisters.insert(token, u);
            let req = RegMsg::UnregReq { realm: s.realm.clone(), registration, callee: s.id, token };
            cx.send_mesh(owner_of(registration), MeshMsg::Reg(req));
        }
    }
    for inv in rpc.parked {
        let bounced = CallMsg::Bounced { call: inv.call, callee: s.id, reason: Bounce::CalleeGone };
        cx.send_mesh(inv.call.shard, MeshMsg::Call(bounced));
    }
    let mut seqs: Vec<u64> = rpc.calls.values().copied().collect();
    seqs.sort_unstable();
    for seq in seqs {
        if let Some(pc) = calls.remove(seq)
            && let Some(callee) = pc.callee
        {
            let call = CallKey { shard: cx.shard, seq };
            let cancel = CallMsg::Cancel { call, callee: callee.session, mode: CancelMode::KillNoWait };
            cx.send_mesh(callee.shard, MeshMsg::Call(cancel));
        }
    }
}

/// The owner released one registration of ended session teardown `t`; when it was the
/// last, the callers are told.
pub(crate) fn released(cx: &mut Out, calls: &mut Calls, t: u64) {
    let done = match calls.teardowns.get_mut(&t) {
        Some(td) if td.remaining > 1 => {
            td.remaining -= 1;
            None
        }
        Some(_) => calls.teardowns.remove(&t),
        None => None,
    };
    let Some(td) = done else { return };
    if let Some(n) = calls.teardown_conns.get_mut(&td.conn) {
        *n -= 1;
        if *n == 0 {
            calls.teardown_conns.remove(&td.conn);
            cx.events.push_back(CoreEvent::TeardownDone { conn: td.conn });
        }
    }
    fail_orphaned(cx, td.calls);
}

/// Tell the callers of a vanished callee's invocations that their calls are canceled.
fn fail_orphaned(cx: &mut Out, orphaned: Vec<CallKey>) {
    for call in orphaned {
        let payload = Payload::from_values(
            Serializer::Json,
            Some(&[Value::str("callee disconnected from in-flight request")]),
            None,
        );
        let error = uris::CANCELED.to_owned();
        cx.send_mesh(call.shard, MeshMsg::Call(CallMsg::Failed { call, error, details: Dict::new(), payload }));
    }
}
