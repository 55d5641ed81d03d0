//! The router's own procedures on the caller's home shard (`proto::meta`): parse the call,
//! gather what other shards know, answer the caller; and each shard's part of a gather.

use std::sync::Arc;

use super::super::authz::{Action, Decision};
use super::super::mesh::{MeshMsg, ShardId};
use super::super::meta::testaments::{self, Testament};
use super::super::meta::{
    self, Combine, Gather, KNOWN, MetaMsg, Query, REMOVED, history, registrations, sessions, subscriptions,
};
use super::super::out::ConnState;
use super::super::permit;
use super::super::session::ConnId;
use super::super::uris;
use super::super::wire::message::code;
use super::super::wire::{Dict, Id, Message, Payload, Value, peer_text};
use super::ShardCore;
use crate::limits;

impl ShardCore {
    /// A CALL (already authorized) to a `wamp.` procedure: answered by the router.
    pub(super) fn on_router_procedure(
        &mut self,
        conn: ConnId,
        sid: Id,
        request: Id,
        procedure: &str,
        payload: Payload,
    ) {
        let Some(s) = self.sessions.get(&sid) else { return };
        let realm = s.realm.clone();
        let meta_on = self.realms.get_mut(&realm).is_some_and(|r| r.config.meta_api);
        let (args, kwargs) = match (payload.args(), payload.kwargs()) {
            (Ok(a), Ok(k)) => (a, k),
            (Err(e), _) | (_, Err(e)) => {
                let msg = format!("cannot read the arguments: {e}");
                return self.cx.error(conn, code::CALL, request, uris::INVALID_ARGUMENT, Some(msg));
            }
        };
        if meta_on && procedure == history::GET_EVENTS {
            return self.get_events(conn, (sid, request), realm, &args, &kwargs);
        }
        if meta_on && (procedure == testaments::ADD || procedure == testaments::FLUSH) {
            return self.on_testament_call(conn, sid, request, procedure, &args, &kwargs);
        }
        let plan = if meta_on {
            sessions::plan(procedure, sid, &args, &kwargs)
                .or_else(|| subscriptions::plan(procedure, &args, &kwargs))
                .or_else(|| registrations::plan(procedure, &args, &kwargs))
        } else {
            None
        };
        match plan {
            Some(Ok((query, combine))) => self.gather(conn, (sid, request), realm, query, combine),
            Some(Err((uri, msg))) => self.cx.error(conn, code::CALL, request, uri, Some(msg)),
            None => {
                let msg = format!("no procedure {} in this realm", peer_text(procedure));
                self.cx.error(conn, code::CALL, request, uris::NO_SUCH_PROCEDURE, Some(msg));
            }
        }
    }

    /// `wamp.subscription.get_events`: ask the owner of the subscription's history.
    fn get_events(&mut self, conn: ConnId, (sid, request): (Id, Id), realm: Arc<str>, args: &[Value], kwargs: &Dict) {
        let Some(s) = self.sessions.get(&sid) else { return };
        let reader = (sid, &*s.authid, &*s.authrole);
        let planned = match self.realms.get_mut(&realm) {
            Some(r) => history::plan(r, reader, args, kwargs),
            None => Err((uris::NO_SUCH_SUBSCRIPTION, "no such subscription".to_owned())),
        };
        match planned {
            Ok(mut q) => {
                let owner = self.cx.owner_shard(&realm, &q.uri, q.policy);
                q.bytes_max = self
                    .cx
                    .conns
                    .get(conn)
                    .map(|c| c.info.max_out_message.saturating_mul(limits::HISTORY_ANSWER_ESTIMATE_FACTOR));
                self.gather(conn, (sid, request), realm, Query::Events(owner, Box::new(q)), Combine::Events)
            }
            Err((uri, msg)) => self.cx.error(conn, code::CALL, request, uri, Some(msg)),
        }
    }

    /// `wamp.session.add_testament` or `flush_testaments` from session `sid`: answered here,
    /// where the session's testaments are.
    fn on_testament_call(
        &mut self,
        conn: ConnId,
        sid: Id,
        request: Id,
        procedure: &str,
        args: &[Value],
        kwargs: &Dict,
    ) {
        let answer = if procedure == testaments::ADD {
            let answer = self.add_testament(conn, sid, args, kwargs);
            if answer.is_err() {
                self.cx.stats.testaments_refused += 1;
            }
            answer
        } else {
            testaments::parse_flush(args, kwargs).map(|scope| {
                let Some(s) = self.sessions.get_mut(&sid) else { return Value::from(0u64) };
                let (n, bytes) = s.testaments.flush(scope);
                self.cx.stats.testaments_stored -= n as u64;
                self.cx.stats.testament_bytes_stored -= bytes as u64;
                Value::from(n as u64)
            })
        };
        match answer {
            Ok(v) => self.result(conn, request, v),
            Err((uri, msg)) => self.cx.error(conn, code::CALL, request, uri, Some(msg)),
        }
    }

    /// Keep a testament for session `sid` if it may publish it: the publication ID it will
    /// carry, or the ERROR.
    fn add_testament(&mut self, conn: ConnId, sid: Id, args: &[Value], kwargs: &Dict) -> Result<Value, meta::Refusal> {
        let Some(s) = self.sessions.get(&sid) else { return Err((uris::NO_SUCH_SESSION, "gone".to_owned())) };
        let Some(realm) = self.realms.get_mut(&s.realm) else { return Err((uris::NO_SUCH_REALM, "gone".to_owned())) };
        let mut add = testaments::parse_add(args, kwargs, realm.config.strict_uri)?;
        // It will be published as the session: it must be allowed to publish there now.
        if let Some(roles) = realm.config.roles.clone() {
            let not_authorized = |why: &str| (uris::NOT_AUTHORIZED, why.to_owned());
            match realm.authz_memo.decide(&roles, &s.authrole, &add.topic, Action::Publish) {
                Decision::Allow { disclose } => add.options.disclose_me |= disclose,
                Decision::Deny => {
                    permit::denied(&mut self.cx, realm, s, Action::Publish, &add.topic, "testament: no rule allows it");
                    let why = format!("not authorized to publish {}", peer_text(&add.topic));
                    return Err(not_authorized(&why));
                }
                Decision::Ask(_) => {
                    // A dynamic authorizer answers later; a testament cannot wait for it.
                    return Err(not_authorized("testaments are not available to roles with a dynamic authorizer"));
                }
            }
        }
        let ser = self.cx.conns.get(conn).map(|c| c.info.framing.serializer).unwrap_or_default();
        let event_args = (!add.args.is_empty() || !add.kwargs.is_empty()).then_some(&add.args[..]);
        let payload = Payload::from_values(ser, event_args, (!add.kwargs.is_empty()).then_some(&add.kwargs));
        let publication = self.cx.ids.next_global();
        let t = Testament { publication, topic: Arc::from(add.topic), options: add.options, payload };
        let shard_bytes = self.cx.stats.testament_bytes_stored as usize;
        let Some(s) = self.sessions.get_mut(&sid) else { return Err((uris::NO_SUCH_SESSION, "gone".to_owned())) };
        let bytes = s.testaments.add(add.scope, t, shard_bytes).map_err(|why| (uris::TESTAMENT_ERROR, why))?;
        self.cx.stats.testaments_added += 1;
        self.cx.stats.testaments_stored += 1;
        self.cx.stats.testament_bytes_stored += bytes as u64;
        Ok(Value::from(publication))
    }

    /// Ask the shards `query` is for (`Query::asks`); the caller is answered when the last
    /// part is in.
    fn gather(&mut self, conn: ConnId, (sid, request): (Id, Id), realm: Arc<str>, query: Query, combine: Combine) {
        if !self.gathers.may_start(sid) {
            let msg = "too many meta API calls in flight".to_owned();
            return self.cx.error(conn, code::CALL, request, uris::LIMIT_EXCEEDED, Some(msg));
        }
        let token = self.cx.token();
        let targets = meta::targets(query.asks(), self.cx.shard, self.cx.shards);
        let waiting = targets.len();
        self.gathers.start(token, Gather { session: sid, conn, request, combine, waiting, parts: Vec::new() });
        let query = Arc::new(query);
        for shard in targets {
            let ask = MetaMsg::Ask { token, realm: realm.clone(), query: query.clone() };
            self.cx.send_mesh(shard, MeshMsg::Meta(ask));
        }
    }

    /// A meta API message from shard `from`.
    pub(super) fn on_meta_msg(&mut self, from: ShardId, msg: MetaMsg) {
        match msg {
            MetaMsg::Ask { token, realm, query } => {
                let part = self.answer(&realm, &query);
                self.cx.send_mesh(from, MeshMsg::Meta(MetaMsg::Reply { token, part }));
            }
            MetaMsg::Reply { token, part } => {
                if let Some(g) = self.gathers.add(token, part) {
                    self.finish(g);
                }
            }
        }
    }

    /// This shard's part of a gather.
    fn answer(&mut self, realm: &str, query: &Query) -> Value {
        match query {
            Query::SessionIds { roles } => {
                let mut ids: Vec<Id> = self
                    .sessions
                    .values()
                    .filter(|s| &*s.realm == realm)
                    .filter(|s| roles.as_ref().is_none_or(|r| r.iter().any(|x| x == &*s.authrole)))
                    .map(|s| s.id)
                    .collect();
                ids.sort_unstable();
                Value::List(ids.into_iter().map(Value::from).collect())
            }
            Query::SessionGet { session } => match self.sessions.get(session) {
                Some(s) if &*s.realm == realm => {
                    let transport = meta::transport_details(self.cx.conns.get(s.conn));
                    Value::Dict(meta::session_details(s, transport))
                }
                _ => Value::Null,
            },
            Query::Kill { who, except, reason, message } => {
                let mut ids: Vec<(Id, ConnId)> = self
                    .sessions
                    .values()
                    .filter(|s| &*s.realm == realm)
                    .filter(|s| sessions::kill_matches(who, *except, s.id, &s.authid, &s.authrole))
                    .map(|s| (s.id, s.conn))
                    .collect();
                ids.sort_unstable();
                for &(sid, conn) in &ids {
                    self.kill(sid, conn, reason, message.as_deref());
                }
                Value::List(ids.into_iter().map(|(id, _)| Value::from(id)).collect())
            }
            Query::Sub(q) => subscriptions::answer(&mut self.cx, &mut self.realms, &mut self.sessions, realm, q),
            Query::Reg(q) => {
                registrations::answer(&mut self.cx, &mut self.realms, &self.sessions, &mut self.calls, realm, q)
            }
            Query::Events(_, q) => match self.store.history.select(realm, q) {
                Ok(events) => Value::List(events.into_iter().map(|e| history::event_value(e, realm, q)).collect()),
                // Too large for the caller: `finish` answers with an ERROR.
                Err(_) => Value::Null,
            },
        }
    }

    /// End session `sid` for the meta API: GOODBYE with `reason`, then the connection waits
    /// for the client's echo like at shutdown.
    fn kill(&mut self, sid: Id, conn: ConnId, reason: &str, message: Option<&str>) {
        self.cx.stats.sessions_killed += 1;
        self.cx.send_with_text(conn, message, |m| {
            let details = m.map_or_else(Dict::new, |m| Dict::new().with("message", m));
            Message::Goodbye { details, reason: reason.to_owned() }
        });
        self.end_session(sid);
        if let Some(c) = self.cx.conns.get_mut(conn) {
            c.state = ConnState::Closing;
        }
    }

    /// All parts of a gather are in: answer its caller (if it is still there).
    fn finish(&mut self, g: Gather) {
        if self.session_of(g.conn) != Some(g.session) {
            return;
        }
        if matches!(g.combine, Combine::Events) && matches!(g.parts.first(), None | Some(Value::Null)) {
            let message = "the events selected are more than this client accepts in one message: ask for fewer (limit)";
            self.cx.error(g.conn, code::CALL, g.request, uris::PAYLOAD_SIZE_EXCEEDED, Some(message.to_owned()));
            return;
        }
        let ids = |parts: &[Value]| -> Vec<Value> {
            let mut all: Vec<Value> = parts.iter().filter_map(Value::as_list).flatten().cloned().collect();
            all.sort_by_key(|v| v.as_u64());
            all
        };
        let result = match g.combine {
            Combine::Count => Ok(Value::from(ids(&g.parts).len() as u64)),
            Combine::List => Ok(Value::List(ids(&g.parts))),
            Combine::One { missing } => g.parts.into_iter().find(|p| !matches!(p, Value::Null)).ok_or(missing),
            Combine::Value | Combine::Events => Ok(g.parts.into_iter().next().unwrap_or(Value::Null)),
            Combine::Members { count } => {
                if g.parts.iter().all(|p| matches!(p, Value::Null)) {
                    Err(uris::NO_SUCH_SUBSCRIPTION)
                } else if count {
                    Ok(Value::from(ids(&g.parts).len() as u64))
                } else {
                    Ok(Value::List(ids(&g.parts)))
                }
            }
            Combine::Removed { missing } => {
                let has = |code: u64| g.parts.iter().any(|p| p.as_u64() == Some(code));
                if has(REMOVED) {
                    Ok(Value::Null)
                } else if has(KNOWN) {
                    Err(uris::NO_SUCH_SESSION)
                } else {
                    Err(missing)
                }
            }
            Combine::KilledOne => {
                if ids(&g.parts).is_empty() {
                    Err(uris::NO_SUCH_SESSION)
                } else {
                    Ok(Value::Null)
                }
            }
        };
        match result {
            Ok(v) => self.result(g.conn, g.request, v),
            Err(uri) => self.cx.error(g.conn, code::CALL, g.request, uri, None),
        }
    }

    /// RESULT with one positional value; if the client cannot take it (larger than its
    /// RawSocket limit), ERROR wamp.error.payload_size_exceeded instead of nothing.
    pub(super) fn result(&mut self, conn: ConnId, request: Id, value: Value) {
        let ser = self.cx.conns.get(conn).map(|c| c.info.framing.serializer).unwrap_or_default();
        let payload = Payload::from_values(ser, Some(&[value]), None);
        if let Err(why) = self.cx.try_send(conn, &Message::Result { request, details: Dict::new(), payload }) {
            let (uri, message) = why.failure("RESULT", "this client");
            self.cx.error(conn, code::CALL, request, uri, Some(message));
        }
    }
}
