//! What a handler may do, and nothing more: queue a frame for a connection, send a mesh
//! message, mint an ID or a token, ask the runtime to close a connection. Feature modules
//! (`pubsub`, `rpc`, `lifecycle`, `control`) take an [`Out`] as their first argument; it
//! never calls back into them or into `ShardCore`.

mod conns;
mod outbox;

pub use conns::{CertFingerprints, CloseReason, ConnInfo, CoreEvent, Origin, TlsPeer};
pub(crate) use conns::{Class, Conn, ConnState, Live, Pushed, Slots, push_frame, refusal};
pub(crate) use outbox::Outbox;

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::frame::{OutFrame, encode_frame};
use super::mesh::{MeshMsg, ShardId};
use super::session::ConnId;
use super::stats::Stats;
use super::uris;
use super::wire::ids::IdGen;
use super::wire::uri::MatchPolicy;
use super::wire::{DecodeError, Dict, Id, Message, Payload, Value};

/// Why a message that must not vanish (RPC traffic) could not be queued.
#[derive(Debug)]
pub(crate) enum Undeliverable {
    /// Larger than the peer's RawSocket limit (bytes, framing included).
    TooBig(usize),
    /// Not representable in the peer's serializer (e.g. a MessagePack map with a non-string
    /// key for a JSON peer).
    Unencodable(DecodeError),
}

impl Undeliverable {
    /// The ERROR URI and message for the other side; `what` names the message ("RESULT"),
    /// `who` its receiver ("this client", "the callee").
    pub fn failure(&self, what: &str, who: &str) -> (&'static str, String) {
        match self {
            Undeliverable::TooBig(len) => {
                (uris::PAYLOAD_SIZE_EXCEEDED, format!("the {what} ({len} bytes) is larger than {who} accepts"))
            }
            Undeliverable::Unencodable(e) => {
                (uris::INVALID_ARGUMENT, format!("the {what} cannot be encoded for {who}'s serializer: {e}"))
            }
        }
    }
}

/// Whether the `n`-th occurrence of a peer-triggered event is logged: the first ten, then
/// at powers of two, so no peer can flood the log.
pub(crate) fn log_allowed(n: u64) -> bool {
    n <= 10 || n.is_power_of_two()
}

/// The handler context of one shard.
#[derive(Debug)]
pub(crate) struct Out {
    pub shard: ShardId,
    pub shards: usize,
    /// The time of the input being handled.
    pub now: Instant,
    /// Session and publication IDs, random callee choice.
    pub ids: IdGen,
    next_token: u64,
    pub conns: Slots,
    pub dirty: Vec<ConnId>,
    /// Connections that crossed the pending-bytes cap under the disconnect policy; handled
    /// after the current fan-out.
    pub slow: Vec<ConnId>,
    pub events: VecDeque<CoreEvent>,
    pub stats: Stats,
    pub pending_bytes_max: usize,
    pub mesh: Outbox,
    /// Wall-clock time at `started` (the core never reads a clock; see [`Out::wall`]).
    wall_clock: SystemTime,
    started: Instant,
}

impl Out {
    pub fn new(
        shard: ShardId,
        shards: usize,
        ids: IdGen,
        pending_bytes_max: usize,
        now: Instant,
        wall_clock: SystemTime,
    ) -> Out {
        Out {
            shard,
            shards,
            now,
            ids,
            next_token: 0,
            conns: Slots::default(),
            dirty: Vec::new(),
            slow: Vec::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            pending_bytes_max,
            mesh: Outbox::new(shards),
            wall_clock,
            started: now,
        }
    }

    /// The wall-clock time of instant `at` (meta API `created` stamps): the wall clock the
    /// core was created with, plus the monotonic time since.
    pub fn wall(&self, at: Instant) -> SystemTime {
        self.wall_clock + at.saturating_duration_since(self.started)
    }

    /// A fresh shard-local token (correlates a request with its mesh answer).
    pub fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// The session established on a connection, if any.
    pub fn session_of(&self, conn: ConnId) -> Option<Id> {
        match self.conns.get(conn)?.state {
            ConnState::Established(id) => Some(id),
            _ => None,
        }
    }

    /// Send `msg` to shard `to` (this shard included) in FIFO order per destination.
    pub fn send_mesh(&mut self, to: ShardId, msg: MeshMsg) {
        self.mesh.push(self.shard, to, msg);
    }

    /// The owner shard of (realm, uri, match): FNV-1a, stable across threads and runs, so
    /// every shard agrees on owners.
    pub fn owner_shard(&self, realm: &str, uri: &str, policy: MatchPolicy) -> ShardId {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in realm.bytes().chain([0u8]).chain(uri.bytes()).chain([policy as u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % self.shards as u64) as usize
    }

    /// Ask the runtime to flush and close `conn` (once).
    pub fn close_conn(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(c) = self.conns.get_mut(conn)
            && !c.closing
        {
            c.closing = true;
            self.events.push_back(CoreEvent::Close { conn, reason });
        }
    }

    /// Count a push outcome that is not `Queued` (rare: kept out of the fan-out loop).
    #[cold]
    pub fn count_unqueued(&mut self, conn: ConnId, outcome: Pushed, len: usize) {
        match outcome {
            Pushed::TooBig => {
                // RawSocket: the peer announced it cannot receive this. Drop, count, log.
                self.stats.events_dropped_too_big += 1;
                tracing::debug!(conn, len, "message larger than the peer's limit dropped");
            }
            Pushed::DroppedSlow => self.stats.events_dropped_slow += 1,
            Pushed::Slow => self.mark_slow(conn),
            Pushed::Queued | Pushed::Skipped => {}
        }
    }

    /// Put `conn` on the slow list once; the core's `settle` acts on it.
    pub fn mark_slow(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn)
            && !c.slow_marked
        {
            c.slow_marked = true;
            self.slow.push(conn);
        }
    }

    /// Queue a frame. Returns whether it was queued.
    fn push(&mut self, conn: ConnId, frame: Bytes, class: Class, msg_code: u64) -> bool {
        let Some(c) = self.conns.get_mut(conn) else { return false };
        let len = frame.len();
        match push_frame(c, conn, OutFrame::Owned(frame), class, self.pending_bytes_max, &mut self.dirty) {
            Pushed::Queued => {
                self.stats.bytes_out_queued += len as u64;
                self.stats.messages_out[Stats::slot(msg_code)] += 1;
                true
            }
            other => {
                self.count_unqueued(conn, other, len);
                false
            }
        }
    }

    /// Send a message that must not vanish silently (RPC traffic, WELCOME): if it cannot be
    /// encoded for the peer or is larger than the peer accepts, nothing is queued and the
    /// `Err` lets the caller answer the other side instead.
    pub fn try_send(&mut self, conn: ConnId, msg: &Message) -> Result<(), Undeliverable> {
        let Some(c) = self.conns.get(conn) else { return Ok(()) };
        let (framing, max) = (c.info.framing, c.info.max_out_message);
        let frame = encode_frame(framing, msg).map_err(Undeliverable::Unencodable)?;
        if frame.len() > max.saturating_add(4) {
            return Err(Undeliverable::TooBig(frame.len()));
        }
        match msg {
            Message::Error { error, .. } => self.stats.count_error_uri(error),
            Message::Abort { reason, .. } => self.stats.count_error_uri(reason),
            _ => {}
        }
        self.push(conn, frame, Class::Control, msg.code());
        Ok(())
    }

    /// Send a message that carries a router-written `text` (`build(Some(text))`) so that it
    /// reaches a peer whose RawSocket limit is smaller than the whole message: the text is
    /// cut to `limits::PEER_LIMIT_TEXT_BYTES`, or left out (`build(None)`) if even that does
    /// not fit. ERROR, ABORT and GOODBYE must not vanish for want of room for their text.
    pub fn send_with_text(&mut self, conn: ConnId, text: Option<&str>, build: impl Fn(Option<&str>) -> Message) {
        let why = match self.try_send(conn, &build(text)) {
            Ok(()) => return,
            Err(why) => why,
        };
        if let Undeliverable::TooBig(_) = why {
            let cut = text.map(|t| cut_text(t, crate::limits::PEER_LIMIT_TEXT_BYTES));
            if cut.is_some() && self.try_send(conn, &build(cut.as_deref())).is_ok() {
                return;
            }
            if self.try_send(conn, &build(None)).is_ok() {
                return;
            }
        }
        self.stats.encode_failures += 1;
        if log_allowed(self.stats.encode_failures) {
            tracing::warn!(conn, reason = ?why, total = self.stats.encode_failures, "could not send {}", build(None).name());
        }
    }

    /// Send a control message (dropped, counted and logged if it cannot be encoded).
    pub fn send(&mut self, conn: ConnId, msg: &Message) -> bool {
        let Some(c) = self.conns.get(conn) else { return false };
        match msg {
            Message::Error { error, .. } => self.stats.count_error_uri(error),
            Message::Abort { reason, .. } => self.stats.count_error_uri(reason),
            _ => {}
        }
        match encode_frame(c.info.framing, msg) {
            Ok(frame) => self.push(conn, frame, Class::Control, msg.code()),
            Err(e) => {
                self.stats.encode_failures += 1;
                if log_allowed(self.stats.encode_failures) {
                    tracing::warn!(conn, error = %e, total = self.stats.encode_failures, "could not encode {}", msg.name());
                }
                false
            }
        }
    }

    /// ERROR for a request, with an optional human-readable message as `Arguments[0]` (cut
    /// or left out for a peer whose RawSocket limit is too small for it).
    pub fn error(&mut self, conn: ConnId, request_type: u64, request: Id, error: &str, message: Option<String>) {
        let c = self.conns.get(conn).map(|c| c.info.framing.serializer).unwrap_or_default();
        self.send_with_text(conn, message.as_deref(), |m| {
            let payload = match m {
                Some(m) => Payload::from_values(c, Some(&[Value::str(m)]), None),
                None => Payload::empty(),
            };
            Message::Error { request_type, request, details: Dict::new(), error: error.to_owned(), payload }
        });
    }
}

/// `text` cut to at most `max` bytes at a character boundary, `…` marking the cut.
fn cut_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::cut_text;

    #[test]
    fn cut_text_fits_and_marks_the_cut() {
        // Goal: a text is kept whole up to the limit, else cut at a character boundary to
        // at most `max` bytes with `…` at the end.
        assert_eq!(cut_text("short", 128), "short");
        let emoji = "\u{1F600}".repeat(100);
        let cut = cut_text(&emoji, 128);
        assert!(cut.len() <= 128 && cut.ends_with('…'), "{} bytes", cut.len());
        assert_eq!(cut.chars().count(), 1 + (128 - 3) / 4);
        assert_eq!(cut_text(&"a".repeat(200), 128).len(), 128);
    }
}
