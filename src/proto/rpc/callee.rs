//! The callee's side of a call, on the callee's shard: INVOCATION out, YIELD and ERROR
//! back to the caller's shard, INTERRUPT when the caller cancels.

use super::super::mesh::{Bounce, CallKey, CallMsg, CancelMode, Invoke, MeshMsg};
use super::super::options;
use super::super::out::Out;
use super::super::session::{Session, Sessions};
use super::super::uris;
use super::super::violation::Violation;
use super::super::wire::peer_text;
use super::super::wire::uri;
use super::super::wire::{Dict, Id, Message, Payload, Serializer, Value};
use super::table::{Calls, InvocationState};
use crate::limits;

/// An invocation arrives at its callee's shard.
pub(crate) fn start_invocation(cx: &mut Out, calls: &mut Calls, sessions: &Sessions, inv: Box<Invoke>) {
    let bounce = |reason| MeshMsg::Call(CallMsg::Bounced { call: inv.call, callee: inv.callee, reason });
    let Some(s) = sessions.get(&inv.callee) else {
        return cx.send_mesh(inv.call.shard, bounce(Bounce::CalleeGone));
    };
    let rpc = calls.session(inv.callee);
    if !rpc.registrations.contains_key(&inv.registration) {
        let pending = rpc.pending_registrations.values().any(|(u, p)| *u == inv.reg_uri && *p == inv.reg_policy);
        if pending && rpc.parked.len() < limits::SESSION_INVOCATIONS_MAX {
            rpc.parked.push(inv);
            return;
        }
        return cx.send_mesh(inv.call.shard, bounce(Bounce::CalleeGone));
    }
    if rpc.invocations.len() >= limits::SESSION_INVOCATIONS_MAX {
        return cx.send_mesh(inv.call.shard, bounce(Bounce::Overloaded));
    }
    // The spec: a callee that takes progressive call invocations but cannot be interrupted
    // counts as not taking them (a stream it cannot be told to drop would pin it).
    if inv.progress && !(s.features.callee_progressive_invocations && s.features.callee_call_canceling) {
        let error = uris::FEATURE_NOT_SUPPORTED.to_owned();
        let message = "the callee does not take progressive call invocations".to_owned();
        let payload = Payload::from_values(Serializer::Json, Some(&[Value::Str(message)]), None);
        let failed = CallMsg::Failed { call: inv.call, error, details: Dict::new(), payload };
        return cx.send_mesh(inv.call.shard, MeshMsg::Call(failed));
    }
    let request = rpc.invocation_ids.next_id();
    let receive_progress = inv.receive_progress && s.features.callee_progressive_results;
    let registration = inv.registration;
    rpc.invocations
        .insert(request, InvocationState { call: inv.call, caller_gone: false, receive_progress, registration });
    calls.invocations.insert(inv.call, (inv.callee, request));
    let details = invocation_details(&inv, receive_progress);
    cx.stats.invocations += 1;
    cx.stats.routing_latency.observe(cx.now.saturating_duration_since(inv.read_at));
    let (call, callee) = (inv.call, inv.callee);
    let Invoke { registration, payload, .. } = *inv;
    if let Err(why) = cx.try_send(s.conn, &Message::Invocation { request, registration, details, payload }) {
        // The callee cannot receive it: the call fails instead of waiting forever.
        calls.session(callee).invocations.remove(&request);
        calls.invocations.remove(&call);
        let (uri, message) = why.failure("INVOCATION", "the callee");
        let payload = Payload::from_values(Serializer::Json, Some(&[Value::Str(message)]), None);
        let error = uri.to_owned();
        cx.send_mesh(call.shard, MeshMsg::Call(CallMsg::Failed { call, error, details: Dict::new(), payload }));
    }
}

/// `INVOCATION.Details`: the matched procedure for pattern registrations, the caller when
/// disclosed, progressive results and the timeout when asked for.
fn invocation_details(inv: &Invoke, receive_progress: bool) -> Dict {
    let mut details = Dict::new();
    if let Some(p) = &inv.procedure {
        details.insert("procedure", &**p);
    }
    if let Some(c) = &inv.caller {
        details.insert("caller", c.session);
        details.insert("caller_authid", &*c.authid);
        details.insert("caller_authrole", &*c.authrole);
    }
    if receive_progress {
        details.insert("receive_progress", true);
    }
    if inv.timeout_ms > 0 {
        details.insert("timeout", inv.timeout_ms);
    }
    if inv.progress {
        details.insert("progress", true);
    }
    details
}

/// A further chunk of a progressive call invocation: INVOCATION with the running
/// invocation's request ID (`progress` until the last). A chunk for an invocation that has
/// ended (answered, interrupted, or still parked behind its registration) is dropped.
pub(crate) fn on_chunk(
    cx: &mut Out,
    calls: &mut Calls,
    sessions: &Sessions,
    call: CallKey,
    progress: bool,
    payload: Payload,
) {
    let Some(&(sid, request)) = calls.invocations.get(&call) else { return };
    let Some(s) = sessions.get(&sid) else { return };
    let Some(st) = calls.session(sid).invocations.get(&request) else { return };
    if st.caller_gone {
        return;
    }
    let details = if progress { Dict::new().with("progress", true) } else { Dict::new() };
    let registration = st.registration;
    if let Err(why) = cx.try_send(s.conn, &Message::Invocation { request, registration, details, payload }) {
        let (uri, message) = why.failure("INVOCATION", "the callee");
        let payload = Payload::from_values(Serializer::Json, Some(&[Value::Str(message)]), None);
        let failed = CallMsg::Failed { call, error: uri.to_owned(), details: Dict::new(), payload };
        cx.send_mesh(call.shard, MeshMsg::Call(failed));
    }
}

/// YIELD from callee session `s`.
pub(crate) fn on_yield(
    cx: &mut Out,
    calls: &mut Calls,
    s: &Session,
    request: Id,
    options: Dict,
    payload: Payload,
) -> Result<(), Violation> {
    let progress = options::opt_bool(&options, "YIELD", "progress")?.unwrap_or(false);
    let rpc = calls.session(s.id);
    let Some(st) = rpc.invocations.get(&request) else {
        return Err(Violation::UnknownInvocation { answer: "YIELD", request });
    };
    let (call, gone, wants_progress) = (st.call, st.caller_gone, st.receive_progress);
    if progress && !wants_progress {
        // The call did not ask for progressive results: nothing to relay.
        return Ok(());
    }
    if !progress {
        rpc.invocations.remove(&request);
        calls.invocations.remove(&call);
    }
    if gone {
        // The caller canceled or timed out: the answer goes nowhere.
        cx.stats.late_answers_dropped += 1;
    } else {
        cx.send_mesh(call.shard, MeshMsg::Call(CallMsg::Yielded { call, progress, payload }));
    }
    Ok(())
}

/// ERROR for an INVOCATION from callee session `s`.
pub(crate) fn on_invocation_error(
    cx: &mut Out,
    calls: &mut Calls,
    s: &Session,
    request: Id,
    details: Dict,
    error: String,
    payload: Payload,
) -> Result<(), Violation> {
    if !uri::is_valid(&error, false, false) {
        // Validated like any URI (length and characters): it is relayed to the caller.
        return Err(Violation::InvalidErrorUri { uri: peer_text(&error) });
    }
    let Some(st) = calls.session(s.id).invocations.remove(&request) else {
        return Err(Violation::UnknownInvocation { answer: "ERROR", request });
    };
    calls.invocations.remove(&st.call);
    if st.caller_gone {
        cx.stats.late_answers_dropped += 1;
        return Ok(());
    }
    let msg = if error == uris::UNAVAILABLE {
        CallMsg::Bounced { call: st.call, callee: s.id, reason: Bounce::Unavailable }
    } else {
        CallMsg::Failed { call: st.call, error, details, payload }
    };
    cx.send_mesh(st.call.shard, MeshMsg::Call(msg));
    Ok(())
}

/// The caller canceled (or went away): INTERRUPT the callee where it can be interrupted,
/// and answer the caller as the mode says.
pub(crate) fn on_cancel_invoke(
    cx: &mut Out,
    calls: &mut Calls,
    sessions: &Sessions,
    call: CallKey,
    callee: Id,
    mode: CancelMode,
) {
    let Some(&(sid, request)) = calls.invocations.get(&call) else { return };
    debug_assert_eq!(sid, callee);
    let Some(s) = sessions.get(&sid) else { return };
    let Some(st) = calls.session(sid).invocations.get_mut(&request) else { return };
    let can_interrupt = s.features.callee_call_canceling;
    let interrupt = |mode: CancelMode| Message::Interrupt { request, options: Dict::new().with("mode", mode.as_str()) };
    match mode {
        // The callee's answer (normally ERROR wamp.error.canceled) goes to the caller.
        CancelMode::Kill if can_interrupt => {
            cx.send(s.conn, &interrupt(mode));
        }
        CancelMode::Kill => {
            // No INTERRUPT possible: answer the caller now, drop the callee's answer.
            st.caller_gone = true;
            let error = uris::CANCELED.to_owned();
            let failed = CallMsg::Failed { call, error, details: Dict::new(), payload: Payload::empty() };
            cx.send_mesh(call.shard, MeshMsg::Call(failed));
        }
        CancelMode::Skip | CancelMode::KillNoWait => {
            st.caller_gone = true;
            if mode == CancelMode::KillNoWait && can_interrupt {
                cx.send(s.conn, &interrupt(mode));
            }
        }
    }
}
