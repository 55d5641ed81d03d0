//! The call table of one shard: every piece of RPC state in one place — calls whose caller
//! lives here, invocations running on callees here, per-session registrations and request
//! IDs, (un)registrations waiting for their owner, and ended callees whose callers are
//! told once the owners confirm.

use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use super::super::dealer::CallOptions;
use super::super::mesh::{CallKey, Callee, Identity, Invoke};
use super::super::out::Out;
use super::super::realm::Realms;
use super::super::session::{ConnId, Sessions};
use super::super::uris;
use super::super::wire::ids::RequestIds;
use super::super::wire::message::code;
use super::super::wire::uri::MatchPolicy;
use super::super::wire::{Dict, Id, Message, Payload};
use crate::limits;
use crate::proto::Map;

/// A call whose caller lives on this shard.
#[derive(Debug)]
pub(crate) struct PendingCall {
    pub caller: Id,
    pub request: Id,
    pub realm: Arc<str>,
    pub procedure: Arc<str>,
    pub payload: Payload,
    pub options: CallOptions,
    pub callee: Option<Callee>,
    /// Callees that bounced this call (re-routing skips them).
    pub tried: SmallVec<[Id; 2]>,
    pub disclose: Identity,
    pub read_at: Instant,
    /// A progressive call invocation whose last chunk has not come yet.
    pub streaming: bool,
}

/// An invocation a callee on this shard has not answered yet.
#[derive(Clone, Debug)]
pub(crate) struct InvocationState {
    pub call: CallKey,
    /// The caller went away or canceled: the answer is dropped, not relayed. The entry
    /// stays until the callee answers, so a late YIELD is not a protocol violation.
    pub caller_gone: bool,
    /// The caller asked for progressive results.
    pub receive_progress: bool,
    /// The registration invoked (further chunks of a progressive invocation name it).
    pub registration: Id,
}

/// One session's RPC state.
#[derive(Debug, Default)]
pub(crate) struct SessionRpc {
    /// Registrations held: ID → (procedure, policy).
    pub registrations: Map<Id, (Arc<str>, MatchPolicy)>,
    /// REGISTERs waiting for the owner's barrier: token → (procedure, policy).
    pub pending_registrations: Map<u64, (Arc<str>, MatchPolicy)>,
    /// Invocations that overtook the REGISTERED of a pending registration; released in
    /// order once it is confirmed. Boxed as they arrive from the mesh: parking moves a
    /// pointer, not the invocation.
    #[allow(clippy::vec_box)]
    pub parked: Vec<Box<Invoke>>,
    /// Outstanding calls as caller: CALL.Request → call sequence in `Calls::calls`.
    pub calls: Map<Id, u64>,
    /// Outstanding invocations as callee: INVOCATION.Request → state.
    pub invocations: Map<Id, InvocationState>,
    /// Session-scope IDs for INVOCATIONs sent to this session.
    pub invocation_ids: RequestIds,
    /// Payload bytes of this session's calls in flight (kept for re-routing).
    pub call_payload_bytes: usize,
}

/// A REGISTER waiting for its owner's barrier.
#[derive(Debug)]
pub(crate) struct PendingRegister {
    pub session: Id,
    pub request: Id,
}

/// An unregistration waiting for its owner: whose (for the meta events) and what then.
#[derive(Debug)]
pub(crate) struct Unregistering {
    pub realm: Arc<str>,
    pub session: Id,
    pub registration: Id,
    pub then: AfterUnregister,
}

/// What to do when an unregistration is confirmed by its owner.
#[derive(Debug)]
pub(crate) enum AfterUnregister {
    /// Send UNREGISTERED for this request.
    Reply { conn: ConnId, request: Id },
    /// One of an ended session's registrations (teardown token).
    Teardown(u64),
    /// A revocation (`wamp.registration.remove_callee`): UNREGISTERED went out already.
    Revoked,
}

/// An ended callee session: its callers' errors wait until its registrations are released.
#[derive(Debug)]
pub(crate) struct Teardown {
    pub remaining: usize,
    pub calls: Vec<CallKey>,
    /// The session's connection: the runtime closes it only once this completes, so a peer
    /// that sees the connection end can register the same procedure again at once.
    pub conn: ConnId,
}

/// How a call ends with an ERROR.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The router's own error, with a message for `Arguments[0]`.
    Router { uri: &'static str, message: String },
    /// An ERROR as given (a callee's, relayed; or the router's without a message).
    Plain { uri: String, details: Dict, payload: Payload },
}

impl Failure {
    /// `wamp.error.canceled` with no details.
    pub fn canceled() -> Failure {
        Failure::Plain { uri: uris::CANCELED.to_owned(), details: Dict::new(), payload: Payload::empty() }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Calls {
    /// Calls in flight; insert and remove through `insert`/`remove` (payload budgets).
    calls: Map<u64, PendingCall>,
    /// Payload bytes of all calls in flight on this shard.
    call_payload_bytes: usize,
    next_call: u64,
    /// Invocations running on this shard's callees: call key → (callee session, INVOCATION.Request).
    pub invocations: Map<CallKey, (Id, Id)>,
    pub sessions: Map<Id, SessionRpc>,
    pub pending_registers: Map<u64, PendingRegister>,
    /// Unregistrations waiting for the owner's answer, by token.
    pub pending_unregisters: Map<u64, Unregistering>,
    /// Ended sessions whose callers are told only once every registration is released.
    pub teardowns: Map<u64, Teardown>,
    /// Teardowns in progress per connection (`teardown_pending` is polled while closing).
    pub teardown_conns: Map<ConnId, u32>,
    /// Answers to the router's own calls ([`ROUTER_CALLER`]), for the core to hand on:
    /// (call sequence, result payload or error URI). Bounded by the calls the router makes
    /// (`limits::AUTHENTICATOR_CALLS_PER_SHARD_MAX`).
    router_answers: std::collections::VecDeque<(u64, Result<Payload, String>)>,
    next_router_request: Id,
    /// Call deadlines to arm (call sequence, when): the core moves them to its timers.
    pub deadlines: Vec<(u64, Instant)>,
}

/// The caller of calls the router makes itself (dynamic authenticators). No session has
/// ID 0: session IDs are in [1, 2^53].
pub(crate) const ROUTER_CALLER: Id = 0;

impl Calls {
    /// A session's RPC state (created on first use).
    pub fn session(&mut self, sid: Id) -> &mut SessionRpc {
        self.sessions.entry(sid).or_default()
    }

    /// Whether a call with `bytes` of payload from session `sid` fits the payload budgets
    /// (`limits::SESSION_CALL_PAYLOAD_BYTES_MAX`, `limits::SHARD_CALL_PAYLOAD_BYTES_MAX`).
    pub fn payload_fits(&mut self, sid: Id, bytes: usize) -> bool {
        self.session(sid).call_payload_bytes + bytes <= limits::SESSION_CALL_PAYLOAD_BYTES_MAX
            && self.call_payload_bytes + bytes <= limits::SHARD_CALL_PAYLOAD_BYTES_MAX
    }

    /// Add a call; returns its sequence number.
    pub fn insert(&mut self, call: PendingCall) -> u64 {
        self.next_call += 1;
        let seq = self.next_call;
        let bytes = call.payload.len_bytes();
        let rpc = self.session(call.caller);
        rpc.calls.insert(call.request, seq);
        rpc.call_payload_bytes += bytes;
        self.call_payload_bytes += bytes;
        self.calls.insert(seq, call);
        seq
    }

    pub fn get(&self, seq: u64) -> Option<&PendingCall> {
        self.calls.get(&seq)
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut PendingCall> {
        self.calls.get_mut(&seq)
    }

    /// Remove call `seq` (its caller's request entry too) and release its payload budget.
    pub fn remove(&mut self, seq: u64) -> Option<PendingCall> {
        let pc = self.calls.remove(&seq)?;
        let bytes = pc.payload.len_bytes();
        self.call_payload_bytes -= bytes;
        if let Some(rpc) = self.sessions.get_mut(&pc.caller) {
            rpc.calls.remove(&pc.request);
            rpc.call_payload_bytes -= bytes;
        }
        Some(pc)
    }

    /// Whether the session on `conn` still waits for owners to release its registrations.
    pub fn teardown_pending(&self, conn: ConnId) -> bool {
        self.teardown_conns.contains_key(&conn)
    }

    /// Whether session `sid`'s call `request` is a progressive call invocation still taking
    /// chunks (they were authorized with the first).
    pub fn is_streaming(&self, sid: Id, request: Id) -> bool {
        let seq = self.sessions.get(&sid).and_then(|rpc| rpc.calls.get(&request));
        seq.and_then(|seq| self.calls.get(seq)).is_some_and(|pc| pc.streaming)
    }

    /// A request ID for a call the router makes (unique among [`ROUTER_CALLER`]'s calls).
    pub fn router_request(&mut self) -> Id {
        self.next_router_request += 1;
        self.next_router_request
    }

    /// The next answer to one of the router's own calls.
    pub fn pop_router_answer(&mut self) -> Option<(u64, Result<Payload, String>)> {
        self.router_answers.pop_front()
    }

    pub(super) fn router_answered(&mut self, seq: u64, answer: Result<Payload, String>) {
        self.router_answers.push_back((seq, answer));
    }

    /// Answer call `seq` with an ERROR and forget it.
    pub fn fail(&mut self, cx: &mut Out, realms: &mut Realms, sessions: &Sessions, seq: u64, failure: Failure) {
        let Some(pc) = self.remove(seq) else { return };
        if let Some(r) = realms.get_mut(&pc.realm) {
            r.stats.calls_error += 1;
        }
        if pc.caller == ROUTER_CALLER {
            let uri = match failure {
                Failure::Router { uri, .. } => uri.to_owned(),
                Failure::Plain { uri, .. } => uri,
            };
            self.router_answered(seq, Err(uri));
            return;
        }
        let Some(conn) = sessions.get(&pc.caller).map(|s| s.conn) else { return };
        match failure {
            Failure::Router { uri, message } => cx.error(conn, code::CALL, pc.request, uri, Some(message)),
            Failure::Plain { uri, details, payload } => {
                let msg =
                    Message::Error { request_type: code::CALL, request: pc.request, details, error: uri, payload };
                if let Err(why) = cx.try_send(conn, &msg) {
                    let (uri, m) = why.failure("callee's ERROR", "this client");
                    cx.error(conn, code::CALL, pc.request, uri, Some(m));
                }
            }
        }
    }
}
