//! What the broker keeps of publications, on the store's owner shard: retained events
//! (`PUBLISH.Options.retain`, owner of `(realm, topic, exact)`) and event history
//! (`[[realm.history]]` entries, owner of `(realm, uri, match)`). Publications reach the
//! owner as [`StoreMsg`]s from the publisher's shard, after their delivery was started, so
//! keeping them never delays an EVENT. Every store is bounded (`limits::RETAINED_*`,
//! `limits::HISTORY_*`); what does not fit is counted in `/metrics`, never an error to the
//! publisher (the spec makes both best effort).
//!
//! `get_retained` is answered to the subscriber's shard after it sent SUBSCRIBED, so the
//! EVENT follows it; `wamp.subscription.get_events` is a meta API query (`meta::history`)
//! answered from [`History::select`].

pub(crate) mod history;
pub(crate) mod retained;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::mesh::{MeshMsg, Publication, ShardId, StoreMsg};
use super::out::{Out, log_allowed};
use super::pubsub;
use super::realm::Realms;
use super::session::Sessions;
use super::wire::Payload;
use crate::limits;
pub(crate) use history::History;
use history::Recorded;
pub(crate) use retained::Retained;

/// The stores of one shard, and the wall clock they stamp history with.
#[derive(Debug)]
pub(crate) struct Store {
    pub retained: Retained,
    pub history: History,
    /// Wall-clock time at `mono` (the core reads no clock).
    wall: SystemTime,
    mono: Instant,
}

impl Store {
    pub fn new(wall: SystemTime, mono: Instant) -> Store {
        Store {
            retained: Retained::new(limits::RETAINED_BYTES_PER_SHARD_MAX),
            history: History::new(limits::HISTORY_BYTES_PER_SHARD_MAX),
            wall,
            mono,
        }
    }

    /// One store message from shard `from`.
    pub fn on_msg(&mut self, cx: &mut Out, realms: &mut Realms, sessions: &Sessions, from: ShardId, msg: StoreMsg) {
        match msg {
            StoreMsg::Retain { publication } => {
                match self.retained.retain(stored_copy(&publication)) {
                    Ok(()) => cx.stats.retained_stored += 1,
                    Err(why) => {
                        cx.stats.retained_refused += 1;
                        if log_allowed(cx.stats.retained_refused) {
                            tracing::warn!(
                                realm = &*publication.realm,
                                topic = %super::wire::peer_text(&publication.topic),
                                reason = ?why,
                                total = cx.stats.retained_refused,
                                "retained event not kept: store full"
                            );
                        }
                    }
                }
                cx.stats.retained_bytes = self.retained.bytes() as u64;
            }
            StoreMsg::GetRetained { realm, topic, subscription, subscriber } => {
                let found = self.retained.newest_for(
                    &realm,
                    &topic,
                    subscriber.session,
                    &subscriber.authid,
                    &subscriber.authrole,
                );
                if let Some(event) = found {
                    let answer =
                        StoreMsg::Retained { subscription, subscriber: subscriber.session, event: event.clone() };
                    cx.send_mesh(from, MeshMsg::Store(answer));
                }
            }
            StoreMsg::Retained { subscription, subscriber, event } => {
                if let Some(s) = sessions.get(&subscriber) {
                    pubsub::deliver_retained(cx, realms, s, subscription, &event);
                }
            }
            StoreMsg::Record { uri, policy, limit, publication, publisher } => {
                let time_ns = self.time_ns(publication.read_at);
                let kept = stored_copy(&publication);
                match self.history.record((&uri, policy, limit), kept, publisher, time_ns) {
                    Recorded::Stored { evicted } => {
                        cx.stats.history_stored += 1;
                        cx.stats.history_evicted += evicted as u64;
                    }
                    Recorded::DroppedForBytes => {
                        cx.stats.history_dropped_bytes += 1;
                        if log_allowed(cx.stats.history_dropped_bytes) {
                            tracing::warn!(
                                realm = &*publication.realm,
                                uri = &*uri,
                                total = cx.stats.history_dropped_bytes,
                                "history event not kept: the shard's history bytes are full"
                            );
                        }
                    }
                }
                cx.stats.history_bytes = self.history.bytes() as u64;
            }
        }
    }

    /// Wall-clock ns since the Unix epoch at monotonic instant `at`.
    fn time_ns(&self, at: Instant) -> u64 {
        let wall = match at.checked_duration_since(self.mono) {
            Some(d) => self.wall + d,
            None => self.wall - self.mono.saturating_duration_since(at),
        };
        let since = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A publication as a store keeps it: the payload copied into its own buffer, so a kept
/// event never pins the connection's read chunk it arrived in.
fn stored_copy(p: &Arc<Publication>) -> Arc<Publication> {
    let payload = Payload { raw: Bytes::copy_from_slice(&p.payload.raw), ..p.payload.clone() };
    Arc::new(Publication { payload, ..(**p).clone() })
}

/// The bytes a kept event is charged: payload, topic, filter lists, fixed overhead.
pub(crate) fn stored_bytes(p: &Publication) -> usize {
    let filters = p.filters.as_ref().map_or(0, |f| {
        let strs = |l: &[String]| l.iter().map(|s| s.len() + 24).sum::<usize>();
        8 * (f.exclude.len() + f.eligible.as_ref().map_or(0, Vec::len))
            + strs(&f.exclude_authid)
            + strs(&f.exclude_authrole)
            + f.eligible_authid.as_deref().map_or(0, strs)
            + f.eligible_authrole.as_deref().map_or(0, strs)
    });
    p.payload.len_bytes() + p.topic.len() + filters + limits::STORED_EVENT_OVERHEAD_BYTES
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::mesh::Filters;
    use crate::proto::wire::Serializer;
    use crate::proto::wire::Value;

    /// A publication in realm `r1` on `topic` with an `n`-byte string argument.
    pub(crate) fn publication(id: u64, topic: &str, n: usize, filters: Option<Filters>) -> Arc<Publication> {
        let args = [Value::Str("x".repeat(n))];
        Arc::new(Publication {
            realm: Arc::from("r1"),
            id,
            topic: Arc::from(topic),
            publisher: 1,
            disclose: None,
            exclude_me: true,
            filters: filters.map(Box::new),
            payload: Payload::from_values(Serializer::Json, Some(&args), None),
            read_at: Instant::now(),
        })
    }

    #[test]
    fn stored_copy_owns_its_payload_and_is_charged_for_it() {
        let p = publication(1, "t", 1000, None);
        let c = stored_copy(&p);
        assert_eq!(c.payload.raw, p.payload.raw);
        assert_ne!(c.payload.raw.as_ptr(), p.payload.raw.as_ptr());
        assert!(stored_bytes(&c) >= 1000 + limits::STORED_EVENT_OVERHEAD_BYTES);
    }
}
