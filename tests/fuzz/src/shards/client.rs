//! One simulated client as the shards target sees it: its connection, what it sent, and
//! the checks on every message the router sends it.
//!
//! Checked here, message by message: every RESULT or ERROR answers a CALL this client
//! made, at most one final answer per CALL, no progressive RESULT after the final one, no
//! INVOCATION request ID handed out twice while pending, and EVENTs of one publisher on one
//! subscription arrive in publication order. A client that sent a garbage frame which
//! decoded as a WAMP message is "tainted": it may have made requests the harness did not
//! track, so its RPC answers are no longer checked.

use std::collections::{BTreeMap, VecDeque};

use shardbar::proto::frame::Transport;
use shardbar::proto::session::ConnId;
use shardbar::proto::wire::message::code;
use shardbar::proto::wire::{Id, Message, Serializer, Value};

use super::scenario::MARK;

/// A CALL this client made.
#[derive(Debug, Default)]
pub struct CallTrack {
    /// Made while the client had a session it knew of and was untainted: it must be
    /// answered exactly once if that session is still alive at the end.
    pub checked: bool,
    /// The session (counted by WELCOMEs received) the CALL was made in.
    pub epoch: u32,
    pub finals: u32,
}

#[derive(Debug)]
pub struct Client {
    pub shard: usize,
    pub conn: ConnId,
    pub ser: Serializer,
    pub transport: Transport,
    pub closed: bool,
    /// Reading its connection (else its out queue fills up).
    pub reading: bool,
    pub tainted: bool,
    /// WELCOMEs received so far.
    pub epoch: u32,
    /// Received a WELCOME and, since, no ABORT or GOODBYE, and sent no GOODBYE or HELLO.
    pub in_session: bool,
    pub next_request: Id,
    /// Publications made with the [`MARK`] payload.
    pub next_seq: u64,
    pub calls: BTreeMap<Id, CallTrack>,
    /// INVOCATION request IDs not answered with a final YIELD or an ERROR yet.
    pub invocations: VecDeque<Id>,
    pub subscriptions: Vec<Id>,
    pub registrations: Vec<Id>,
    /// (publisher client, subscription) → last sequence number received.
    pub last_seq: BTreeMap<(u64, Id), u64>,
    /// EVENTs whose order was checked (for `SHARDBAR_FUZZ_STATS`).
    pub events_checked: u64,
}

impl Client {
    pub fn new(shard: usize, conn: ConnId, ser: Serializer, transport: Transport) -> Client {
        Client {
            shard,
            conn,
            ser,
            transport,
            closed: false,
            reading: true,
            tainted: false,
            epoch: 0,
            in_session: false,
            next_request: 0,
            next_seq: 0,
            calls: BTreeMap::new(),
            invocations: VecDeque::new(),
            subscriptions: Vec::new(),
            registrations: Vec::new(),
            last_seq: BTreeMap::new(),
            events_checked: 0,
        }
    }

    pub fn request(&mut self) -> Id {
        self.next_request += 1;
        self.next_request
    }

    /// Whether this client's CALLs are checked now.
    pub fn checks_calls(&self) -> bool {
        self.in_session && !self.closed && !self.tainted
    }

    /// The CALL `request` was sent.
    pub fn called(&mut self, request: Id) {
        let track = CallTrack { checked: self.checks_calls(), epoch: self.epoch, finals: 0 };
        self.calls.insert(request, track);
    }

    /// Check and record one message from the router. `me` names the client in panics.
    pub fn receive(&mut self, me: usize, msg: &Message) {
        match msg {
            Message::Welcome { .. } => {
                self.epoch += 1;
                self.in_session = true;
                self.invocations.clear();
                self.subscriptions.clear();
                self.registrations.clear();
            }
            Message::Abort { .. } | Message::Goodbye { .. } => self.in_session = false,
            Message::Result { request, details, .. } => {
                let progress = details.get("progress") == Some(&Value::Bool(true));
                self.answer(me, *request, progress, msg);
            }
            Message::Error { request_type: code::CALL, request, .. } => self.answer(me, *request, false, msg),
            Message::Invocation { request, .. } => {
                assert!(!self.invocations.contains(request), "client {me}: INVOCATION {request} handed out twice");
                self.invocations.push_back(*request);
            }
            Message::Subscribed { subscription, .. } => self.subscriptions.push(*subscription),
            Message::Registered { registration, .. } => self.registrations.push(*registration),
            Message::Event { subscription, payload, .. } => {
                let Ok(args) = payload.args() else { return };
                if let [Value::Str(mark), Value::UInt(publisher), Value::UInt(seq), ..] = &args[..]
                    && mark == MARK
                {
                    self.events_checked += 1;
                    let last = self.last_seq.insert((*publisher, *subscription), *seq);
                    assert!(
                        last.is_none_or(|last| last < *seq),
                        "client {me}: EVENT {seq} of client {publisher} on subscription {subscription} after {last:?}"
                    );
                }
            }
            _ => {}
        }
    }

    /// A RESULT (`progress`: not final) or an ERROR for CALL `request`.
    fn answer(&mut self, me: usize, request: Id, progress: bool, msg: &Message) {
        if self.tainted {
            return;
        }
        let Some(track) = self.calls.get_mut(&request) else {
            panic!("client {me}: answer to a CALL it never made: {msg:?}");
        };
        assert_eq!(track.finals, 0, "client {me}: CALL {request} answered again after its final answer: {msg:?}");
        assert!(
            !track.checked || track.epoch == self.epoch,
            "client {me}: answer to a CALL of an earlier session (epoch {} now {}): {msg:?}",
            track.epoch,
            self.epoch
        );
        if !progress {
            track.finals += 1;
        }
    }
}
