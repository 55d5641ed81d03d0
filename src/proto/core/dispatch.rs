//! The thin dispatchers: a client's frame to the feature module that handles it, a mesh
//! message to its feature, and a handler's `Err` into ABORT.

use super::super::lifecycle::Hello;
use super::super::login;
use super::super::mesh::{CallMsg, MeshMsg, RegMsg, ShardId, StatsMsg, SubMsg};
use super::super::meta;
use super::super::out::{CloseReason, ConnState, CoreEvent};
use super::super::permit::{self, Verdict};
use super::super::pubsub;
use super::super::rpc::{self, CallReq, Failure};
use super::super::session::ConnId;
use super::super::stats::Stats;
use super::super::uris;
use super::super::violation::{Abort, Violation};
use super::super::wire::message::code;
use super::super::wire::uri::MatchPolicy;
use super::super::wire::{Dict, Id, Message, Payload, Value, decode, peer_text};
use super::ShardCore;
use crate::limits;

impl ShardCore {
    pub(super) fn on_frame(&mut self, conn: ConnId, frame: bytes::Bytes) {
        let Some(c) = self.cx.conns.get(conn) else { return };
        if c.closing {
            return;
        }
        let ser = c.info.framing.serializer;
        self.cx.stats.bytes_in += frame.len() as u64;
        if matches!(c.state, ConnState::ExpectHello | ConnState::Authenticating)
            && frame.len() > limits::HELLO_MESSAGE_MAX_BYTES
        {
            // Before WELCOME nothing is decoded that a stranger could make expensive.
            self.cx.stats.messages_in[0] += 1;
            return self.abort(conn, Violation::HelloTooLarge { len: frame.len() }.into());
        }
        let msg = match decode(ser, &frame) {
            Ok(m) => m,
            Err(e) => {
                self.cx.stats.messages_in[0] += 1;
                return self.abort(conn, Violation::Undecodable(e).into());
            }
        };
        self.cx.stats.messages_in[Stats::slot(msg.code())] += 1;
        let sid = match self.cx.conns.get(conn).map(|c| &c.state) {
            Some(ConnState::ExpectHello) => None,
            Some(ConnState::Authenticating) => {
                if let Err(why) = self.on_authenticating(conn, msg) {
                    self.abort(conn, why);
                }
                return;
            }
            Some(ConnState::Established(sid)) => Some(*sid),
            Some(ConnState::Closing) => {
                if matches!(msg, Message::Goodbye { .. } | Message::Abort { .. }) {
                    self.cx.close_conn(conn, CloseReason::Goodbye);
                }
                return;
            }
            None => return,
        };
        let result = match sid {
            None => self.on_unestablished(conn, msg),
            Some(sid) => self.on_session_message(conn, sid, msg).map_err(Abort::from),
        };
        if let Err(why) = result {
            self.abort(conn, why);
        }
    }

    /// A message before the session exists: only HELLO (or ABORT) is valid.
    fn on_unestablished(&mut self, conn: ConnId, msg: Message) -> Result<(), Abort> {
        match msg {
            Message::Hello { realm, details } => {
                let hello = login::on_hello(self.login_cx(), conn, realm, details)?;
                self.after_login(conn, hello);
                Ok(())
            }
            Message::Abort { .. } => {
                self.cx.close_conn(conn, CloseReason::PeerAbort);
                Ok(())
            }
            other => Err(Violation::ExpectedHello { received: other.name() }.into()),
        }
    }

    /// A message between HELLO and WELCOME: only AUTHENTICATE (or ABORT) is valid.
    fn on_authenticating(&mut self, conn: ConnId, msg: Message) -> Result<(), Abort> {
        match msg {
            Message::Authenticate { signature, .. } => {
                let hello = login::on_authenticate(self.login_cx(), conn, signature)?;
                self.after_login(conn, hello);
                Ok(())
            }
            Message::Abort { .. } => {
                login::forget(self.login_cx(), conn);
                self.cx.close_conn(conn, CloseReason::PeerAbort);
                Ok(())
            }
            other => Err(Violation::ExpectedAuthenticate { received: other.name() }.into()),
        }
    }

    /// A login step succeeded: a WELCOME too large for the peer ends it at once.
    pub(super) fn after_login(&mut self, conn: ConnId, hello: Hello) {
        if let Hello::WelcomeTooLarge(sid) = hello {
            self.end_session(sid);
            self.cx.close_conn(conn, CloseReason::WelcomeTooLarge);
        }
    }

    /// A message in an established session, to the feature that handles it.
    fn on_session_message(&mut self, conn: ConnId, sid: Id, msg: Message) -> Result<(), Violation> {
        if let Some(request) = client_request_id(&msg)
            && !(1..=limits::ID_MAX).contains(&request)
        {
            return Err(Violation::RequestIdOutOfRange { request });
        }
        let mut msg = msg;
        if permit::target(&msg).is_some() {
            match permit::check(self.permit_cx(), sid, conn, &msg) {
                Verdict::Allow { disclose } => force_disclosure(&mut msg, disclose),
                Verdict::Deny => {
                    self.deny(conn, &msg);
                    return Ok(());
                }
                Verdict::Queued => return Ok(()),
            }
        }
        self.on_permitted(conn, sid, msg)
    }

    /// A message of an established session that authorization let through.
    fn on_permitted(&mut self, conn: ConnId, sid: Id, msg: Message) -> Result<(), Violation> {
        let (cx, realms, calls) = (&mut self.cx, &mut self.realms, &mut self.calls);
        let Some(s) = self.sessions.get_mut(&sid) else { return Ok(()) };
        match msg {
            Message::Publish { request, options, topic, payload } => {
                pubsub::on_publish(cx, realms, s, request, options, topic, payload)
            }
            Message::Subscribe { request, options, topic } => {
                pubsub::on_subscribe(cx, realms, s, request, options, topic)
            }
            Message::Unsubscribe { request, subscription } => {
                pubsub::on_unsubscribe(cx, realms, s, request, subscription);
                Ok(())
            }
            Message::Call { request, procedure, payload, .. } if meta::is_router_procedure(&procedure) => {
                self.on_router_procedure(conn, sid, request, &procedure, payload);
                Ok(())
            }
            Message::Call { request, options, procedure, payload } => {
                let call = CallReq { request, options, procedure, payload };
                rpc::on_call(cx, calls, realms, &self.sessions, sid, call)
            }
            Message::Cancel { request, options } => {
                rpc::on_cancel(cx, calls, realms, &self.sessions, sid, request, options)
            }
            Message::Register { request, options, procedure } => {
                let policy = options.get("match").and_then(Value::as_str).and_then(MatchPolicy::parse);
                if !self.logins.may_register(&s.realm, &s.authrole, &procedure, policy.unwrap_or(MatchPolicy::Exact)) {
                    // A dynamic authenticator's procedure: only its trusted roles provide it.
                    let message =
                        format!("procedure {} is reserved for the router's authenticator", peer_text(&procedure));
                    cx.error(conn, code::REGISTER, request, uris::NOT_AUTHORIZED, Some(message));
                    return Ok(());
                }
                rpc::on_register(cx, calls, realms, s, request, options, procedure)
            }
            Message::Unregister { request, registration } => {
                rpc::on_unregister(cx, calls, s, request, registration);
                Ok(())
            }
            Message::Yield { request, options, payload } => rpc::on_yield(cx, calls, s, request, options, payload),
            Message::Error { request_type: code::INVOCATION, request, details, error, payload } => {
                rpc::on_invocation_error(cx, calls, s, request, details, error, payload)
            }
            Message::Error { request_type, .. } => Err(Violation::ErrorForRequestType { request_type }),
            Message::Goodbye { .. } => {
                let reason = uris::GOODBYE_AND_OUT.to_owned();
                cx.send(conn, &Message::Goodbye { details: Dict::new(), reason });
                self.end_session(sid);
                Ok(())
            }
            Message::Abort { .. } => {
                self.end_session(sid);
                self.cx.close_conn(conn, CloseReason::PeerAbort);
                Ok(())
            }
            // Acknowledged delivery is not announced, so there is nothing to acknowledge.
            Message::EventReceived { .. } => Ok(()),
            other => Err(Violation::NotFromClient { received: other.name() }),
        }
    }

    /// ERROR `wamp.error.not_authorized` for a denied request (none for an unacknowledged
    /// PUBLISH).
    pub(super) fn deny(&mut self, conn: ConnId, msg: &Message) {
        if let Some((request_type, request, text)) = permit::deny_reply(msg) {
            self.cx.error(conn, request_type, request, uris::NOT_AUTHORIZED, Some(text));
        }
    }

    /// An answer to one of the router's own calls: a login's authenticator or a request's
    /// authorizer.
    pub(super) fn on_router_answer(&mut self, call: u64, answer: Result<Payload, String>) {
        if self.logins.owns(call) {
            if let Some((conn, why)) = login::on_answer(self.login_cx(), call, answer) {
                self.abort(conn, why);
            }
            return;
        }
        for r in permit::on_answer(self.permit_cx(), call, answer) {
            let mut msg = r.msg;
            match r.allow {
                None => self.deny(r.conn, &msg),
                Some(disclose) => {
                    force_disclosure(&mut msg, disclose);
                    if self.session_of(r.conn) != Some(r.session) {
                        continue;
                    }
                    if let Err(v) = self.on_permitted(r.conn, r.session, msg) {
                        self.abort(r.conn, v.into());
                    }
                }
            }
        }
    }

    /// One mesh message, to the feature that handles it.
    pub(super) fn on_mesh(&mut self, from: ShardId, msg: MeshMsg) {
        let (cx, realms, sessions, calls) = (&mut self.cx, &mut self.realms, &mut self.sessions, &mut self.calls);
        match msg {
            MeshMsg::Deliver { publication, targets } => {
                if let Some(realm) = realms.get_mut(&publication.realm) {
                    pubsub::deliver_local(cx, realm, &publication, &targets);
                }
            }
            MeshMsg::Call(m) => self.on_call_msg(m),
            MeshMsg::Meta(m) => self.on_meta_msg(from, m),
            MeshMsg::Store(m) => self.store.on_msg(cx, realms, sessions, from, m),
            MeshMsg::Sub(SubMsg::Done { realm, token, subscription, created }) => {
                pubsub::on_subscribe_done(cx, realms, sessions, realm, token, subscription, created)
            }
            MeshMsg::Sub(SubMsg::Refused { realm, token }) => {
                pubsub::on_subscribe_refused(cx, realms, sessions, &realm, token)
            }
            MeshMsg::Sub(SubMsg::Deleted { realm, subscription, session }) => {
                if let Some(r) = realms.get_mut(&realm) {
                    meta::subscriptions::on_delete(cx, r, session, subscription);
                }
            }
            MeshMsg::Sub(m) => self.control.on_sub(cx, realms, from, m),
            MeshMsg::Reg(RegMsg::Done { realm, token, result, created }) => {
                rpc::on_register_done(cx, calls, realms, sessions, realm, token, result, created)
            }
            MeshMsg::Reg(RegMsg::UnregDone { token, deleted }) => {
                rpc::on_unregister_done(cx, calls, realms, sessions, token, deleted)
            }
            MeshMsg::Reg(m) => self.control.on_reg(cx, realms, from, m),
            MeshMsg::BarrierAck { barrier } => self.control.on_barrier_ack(cx, barrier),
            MeshMsg::Stats(StatsMsg::Request { token }) => {
                let snapshot = Box::new(self.snapshot());
                self.cx.send_mesh(from, MeshMsg::Stats(StatsMsg::Reply { token, snapshot }));
            }
            MeshMsg::Stats(StatsMsg::Reply { token, snapshot }) => {
                if let Some(list) = self.stats_requests.get_mut(&token) {
                    list.push(*snapshot);
                    if list.len() == self.cx.shards {
                        self.cx.events.push_back(CoreEvent::StatsReady { token });
                    }
                }
            }
        }
    }

    fn on_call_msg(&mut self, msg: CallMsg) {
        let (cx, realms, sessions, calls) = (&mut self.cx, &mut self.realms, &self.sessions, &mut self.calls);
        match msg {
            CallMsg::Invoke(inv) => rpc::start_invocation(cx, calls, sessions, inv),
            CallMsg::Chunk { call, progress, payload, .. } => {
                rpc::on_chunk(cx, calls, sessions, call, progress, payload)
            }
            CallMsg::Yielded { call, progress, payload } => {
                rpc::on_yielded(cx, calls, realms, sessions, call, progress, payload)
            }
            CallMsg::Failed { call, error, details, payload } => {
                calls.fail(cx, realms, sessions, call.seq, Failure::Plain { uri: error, details, payload })
            }
            CallMsg::Bounced { call, callee, reason } => {
                rpc::on_bounced(cx, calls, realms, sessions, call, callee, reason)
            }
            CallMsg::Cancel { call, callee, mode } => rpc::on_cancel_invoke(cx, calls, sessions, call, callee, mode),
        }
    }
}

/// A rule with `disclose` forces caller (CALL) or publisher (PUBLISH) disclosure: as if the
/// client had asked for it.
fn force_disclosure(msg: &mut Message, disclose: bool) {
    if let (true, Message::Publish { options, .. } | Message::Call { options, .. }) = (disclose, msg) {
        options.insert("disclose_me", true);
    }
}

/// The request ID of a client request (session scope: the spec has it in [1, 2^53]).
fn client_request_id(msg: &Message) -> Option<Id> {
    match msg {
        Message::Publish { request, .. }
        | Message::Subscribe { request, .. }
        | Message::Unsubscribe { request, .. }
        | Message::Call { request, .. }
        | Message::Cancel { request, .. }
        | Message::Register { request, .. }
        | Message::Unregister { request, .. } => Some(*request),
        _ => None,
    }
}
