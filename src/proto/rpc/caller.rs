//! The caller's side of a call, on the caller's shard: CALL (pick a callee in the replica
//! and send the invocation), CANCEL, results and errors coming back, re-routing when a
//! callee's shard bounces the invocation.

use smallvec::SmallVec;

use super::super::dealer::CallOptions;
use super::super::mesh::{Bounce, CallKey, CallMsg, CancelMode, Identity, Invoke, MeshMsg};
use super::super::options;
use super::super::out::Out;
use super::super::realm::{CallTimeoutUnit, Realms};
use super::super::session::Sessions;
use super::super::uris;
use super::super::violation::Violation;
use super::super::wire::message::code;
use super::super::wire::peer_text;
use super::super::wire::uri::{self, MatchPolicy};
use super::super::wire::{Dict, Id, Message, Payload};
use super::table::{Calls, Failure, PendingCall, ROUTER_CALLER};
use crate::limits;
use std::sync::Arc;

/// The parts of a CALL message.
pub(crate) struct CallReq {
    pub request: Id,
    pub options: Dict,
    pub procedure: String,
    pub payload: Payload,
}

/// CALL from session `sid`.
pub(crate) fn on_call(
    cx: &mut Out,
    calls: &mut Calls,
    realms: &mut Realms,
    sessions: &Sessions,
    sid: Id,
    msg: CallReq,
) -> Result<(), Violation> {
    let CallReq { request, options, procedure, payload } = msg;
    let opts = CallOptions::parse(&options)?;
    let Some(s) = sessions.get(&sid) else { return Ok(()) };
    let Some(realm) = realms.get_mut(&s.realm) else { return Ok(()) };
    if !uri::is_valid(&procedure, realm.config.strict_uri, false) {
        let msg = format!("invalid procedure {:?}", peer_text(&procedure));
        cx.error(s.conn, code::CALL, request, uris::INVALID_URI, Some(msg));
        return Ok(());
    }
    let rpc = calls.session(sid);
    if rpc.calls.len() >= limits::SESSION_CALLS_MAX {
        let msg = "too many calls in flight".to_owned();
        cx.error(s.conn, code::CALL, request, uris::LIMIT_EXCEEDED, Some(msg));
        return Ok(());
    }
    if let Some(&seq) = rpc.calls.get(&request) {
        // A further chunk of a progressive call invocation, or a protocol violation.
        return next_chunk(cx, calls, seq, request, opts.progress, payload);
    }
    if !calls.payload_fits(sid, payload.len_bytes()) {
        let msg = "too many call payload bytes in flight".to_owned();
        cx.error(s.conn, code::CALL, request, uris::LIMIT_EXCEEDED, Some(msg));
        return Ok(());
    }
    let streaming = opts.progress;
    // The effective timeout (after the realm's default and maximum) is what the callee is told.
    let mut opts = opts;
    let timeout = realm.config.call_timeout(opts.timeout);
    opts.timeout = timeout.map_or(0.0, |t| realm.config.timeout_value(t) as f64);
    cx.stats.calls += 1;
    realm.stats.calls += 1;
    let seq = calls.insert(PendingCall {
        caller: sid,
        request,
        realm: s.realm.clone(),
        procedure: Arc::from(procedure),
        payload,
        options: opts,
        callee: None,
        tried: SmallVec::new(),
        disclose: Identity { session: sid, authid: s.authid.clone(), authrole: s.authrole.clone() },
        read_at: cx.now,
        streaming,
    });
    if let Some(t) = timeout {
        calls.deadlines.push((seq, cx.now + t));
    }
    route(cx, calls, realms, sessions, seq);
    Ok(())
}

/// A CALL with the request ID of call `seq` in flight: the next chunk of a progressive
/// call invocation goes to the callee that has the first (in order: same mesh pair); after
/// a chunk without `progress` the stream is closed.
fn next_chunk(
    cx: &mut Out,
    calls: &mut Calls,
    seq: u64,
    request: Id,
    progress: bool,
    payload: Payload,
) -> Result<(), Violation> {
    let Some(pc) = calls.get_mut(seq) else { return Ok(()) };
    if !pc.streaming {
        return Err(Violation::CallInFlight { request });
    }
    pc.streaming = progress;
    if let Some(c) = pc.callee.clone() {
        let chunk = CallMsg::Chunk { call: CallKey { shard: cx.shard, seq }, callee: c.session, progress, payload };
        cx.send_mesh(c.shard, MeshMsg::Call(chunk));
    }
    Ok(())
}

/// Call `seq`'s timeout expired (if it is still waiting): the caller gets ERROR
/// `wamp.error.timeout` (`wamp.error.canceled` in a realm with Crossbar's seconds) whether
/// or not it announced call canceling, and the callee INTERRUPT (killnowait) if it can take
/// one; its late answer is dropped.
pub(crate) fn on_call_timeout(cx: &mut Out, calls: &mut Calls, realms: &mut Realms, sessions: &Sessions, seq: u64) {
    let Some(pc) = calls.get(seq) else { return };
    let (callee, procedure) = (pc.callee.clone(), pc.procedure.clone());
    let unit = realms.get_mut(&pc.realm).map(|r| r.config.call_timeout_unit);
    if let Some(c) = callee {
        let call = CallKey { shard: cx.shard, seq };
        cx.send_mesh(c.shard, MeshMsg::Call(CallMsg::Cancel { call, callee: c.session, mode: CancelMode::KillNoWait }));
    }
    cx.stats.call_timeouts += 1;
    let uri = if unit == Some(CallTimeoutUnit::Seconds) { uris::CANCELED } else { uris::TIMEOUT };
    let message = format!("call to {} timed out", peer_text(&procedure));
    calls.fail(cx, realms, sessions, seq, Failure::Router { uri, message });
}

/// Pick a callee for call `seq` and send the invocation; on failure answer the caller.
pub(crate) fn route(cx: &mut Out, calls: &mut Calls, realms: &mut Realms, sessions: &Sessions, seq: u64) {
    let Some(pc) = calls.get_mut(seq) else { return };
    let route = realms.get_mut(&pc.realm).and_then(|r| r.dealer.resolve(&pc.procedure));
    let failure = match route {
        None => Some((uris::NO_SUCH_PROCEDURE, format!("no callee registered procedure {}", peer_text(&pc.procedure)))),
        Some(route) => match route.pick(&pc.tried, &mut cx.ids) {
            None => {
                Some((uris::NO_AVAILABLE_CALLEE, format!("no callee of {} is available", peer_text(&pc.procedure))))
            }
            Some(callee) => {
                let inv = Invoke {
                    realm: pc.realm.clone(),
                    call: CallKey { shard: cx.shard, seq },
                    callee: callee.session,
                    registration: route.id,
                    reg_uri: route.procedure.clone(),
                    reg_policy: route.policy,
                    procedure: (route.policy != MatchPolicy::Exact).then(|| pc.procedure.clone()),
                    caller: (pc.options.disclose_me || route.disclose_caller).then(|| pc.disclose.clone()),
                    receive_progress: pc.options.receive_progress,
                    timeout_ms: pc.options.timeout as u64,
                    progress: pc.options.progress,
                    payload: pc.payload.clone(),
                    read_at: pc.read_at,
                };
                let shard = callee.shard;
                pc.callee = Some(callee);
                cx.send_mesh(shard, MeshMsg::Call(CallMsg::Invoke(Box::new(inv))));
                None
            }
        },
    };
    if let Some((uri, message)) = failure {
        calls.fail(cx, realms, sessions, seq, Failure::Router { uri, message });
    }
}

/// A call the router makes itself (a dynamic authenticator): routed like any call, its
/// answer lands in `Calls::pop_router_answer`. Returns the call's sequence number.
pub(crate) fn router_call(
    cx: &mut Out,
    calls: &mut Calls,
    realms: &mut Realms,
    sessions: &Sessions,
    realm: Arc<str>,
    procedure: Arc<str>,
    payload: Payload,
) -> u64 {
    let request = calls.router_request();
    let seq = calls.insert(PendingCall {
        caller: ROUTER_CALLER,
        request,
        realm,
        procedure,
        payload,
        options: CallOptions::default(),
        callee: None,
        tried: SmallVec::new(),
        disclose: Identity { session: ROUTER_CALLER, authid: Arc::from("shardbar"), authrole: Arc::from("trusted") },
        read_at: cx.now,
        streaming: false,
    });
    route(cx, calls, realms, sessions, seq);
    seq
}

/// Give up on the router's call `seq` (timeout, or the login it was for went away): the
/// callee gets INTERRUPT (killnowait), the answer becomes `wamp.error.canceled`.
pub(crate) fn cancel_router_call(cx: &mut Out, calls: &mut Calls, realms: &mut Realms, sessions: &Sessions, seq: u64) {
    let Some(pc) = calls.get(seq) else { return };
    if let Some(callee) = pc.callee.clone() {
        let call = CallKey { shard: cx.shard, seq };
        cx.send_mesh(
            callee.shard,
            MeshMsg::Call(CallMsg::Cancel { call, callee: callee.session, mode: CancelMode::KillNoWait }),
        );
    }
    calls.fail(cx, realms, sessions, seq, Failure::canceled());
}

/// CANCEL from session `sid`.
pub(crate) fn on_cancel(
    cx: &mut Out,
    calls: &mut Calls,
    realms: &mut Realms,
    sessions: &Sessions,
    sid: Id,
    request: Id,
    options: Dict,
) -> Result<(), Violation> {
    let mode = match options::opt_str(&options, "CANCEL", "mode")? {
        None => CancelMode::KillNoWait,
        Some(m) => CancelMode::parse(m).ok_or_else(|| Violation::unknown_cancel_mode(m))?,
    };
    // The call may already have finished; then there is nothing to cancel.
    let Some(&seq) = calls.sessions.get(&sid).and_then(|rpc| rpc.calls.get(&request)) else { return Ok(()) };
    let Some(callee) = calls.get(seq).and_then(|pc| pc.callee.clone()) else { return Ok(()) };
    let call = CallKey { shard: cx.shard, seq };
    cx.send_mesh(callee.shard, MeshMsg::Call(CallMsg::Cancel { call, callee: callee.session, mode }));
    if mode != CancelMode::Kill {
        calls.fail(cx, realms, sessions, seq, Failure::canceled());
    }
    Ok(())
}

/// A YIELD relayed from the callee's shard.
pub(crate) fn on_yielded(
    cx: &mut Out,
    calls: &mut Calls,
    realms: &mut Realms,
    sessions: &Sessions,
    call: CallKey,
    progress: bool,
    payload: Payload,
) {
    let Some(pc) = calls.get(call.seq) else { return };
    if progress && !pc.options.receive_progress {
        return;
    }
    if pc.caller == ROUTER_CALLER {
        if !progress && calls.remove(call.seq).is_some() {
            calls.router_answered(call.seq, Ok(payload));
        }
        return;
    }
    let (caller, request, callee) = (pc.caller, pc.request, pc.callee.clone());
    let Some(conn) = sessions.get(&caller).map(|s| s.conn) else { return };
    let details = if progress { Dict::new().with("progress", true) } else { Dict::new() };
    if let Err(why) = cx.try_send(conn, &Message::Result { request, details, payload }) {
        // The caller cannot receive this RESULT: fail the call instead of leaving it
        // waiting, and stop a progressive callee from producing more.
        let (uri, message) = why.failure("RESULT", "this client");
        calls.fail(cx, realms, sessions, call.seq, Failure::Router { uri, message });
        if progress && let Some(c) = callee {
            let cancel = CallMsg::Cancel { call, callee: c.session, mode: CancelMode::KillNoWait };
            cx.send_mesh(c.shard, MeshMsg::Call(cancel));
        }
        return;
    }
    if !progress
        && let Some(pc) = calls.remove(call.seq)
        && let Some(r) = realms.get_mut(&pc.realm)
    {
        r.stats.calls_ok += 1;
    }
}

/// The callee's shard could not start the invocation: try another callee, up to
/// `limits::CALL_REROUTES_MAX` times.
pub(crate) fn on_bounced(
    cx: &mut Out,
    calls: &mut Calls,
    realms: &mut Realms,
    sessions: &Sessions,
    call: CallKey,
    callee: Id,
    reason: Bounce,
) {
    let Some(pc) = calls.get_mut(call.seq) else { return };
    if pc.tried.len() >= limits::CALL_REROUTES_MAX {
        let message = format!("no callee of {} accepted the call ({reason:?})", peer_text(&pc.procedure));
        calls.fail(cx, realms, sessions, call.seq, Failure::Router { uri: uris::NO_AVAILABLE_CALLEE, message });
        return;
    }
    pc.tried.push(callee);
    cx.stats.calls_rerouted += 1;
    route(cx, calls, realms, sessions, call.seq);
}
