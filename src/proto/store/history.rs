//! Event history on its owner shard: one ring per `[[realm.history]]` entry (realm, uri,
//! match), holding the newest `limit` publications that matched it, and the selection
//! `wamp.subscription.get_events` asks for. Bounded per entry (`limit`) and per shard
//! (`limits::HISTORY_BYTES_PER_SHARD_MAX`): an event that would go over the shard's bytes
//! first evicts its own entry's oldest events; if that is not enough it is not stored.

use std::collections::VecDeque;
use std::sync::Arc;

use super::super::Map;
use super::super::mesh::{Identity, Publication};
use super::super::meta::history::EventsQuery;
use super::super::wire::uri::MatchPolicy;
use super::stored_bytes;

/// One kept publication.
#[derive(Debug)]
pub(crate) struct StoredEvent {
    /// Wall-clock time the PUBLISH was read, ns since the Unix epoch.
    pub time_ns: u64,
    pub publication: Arc<Publication>,
    /// Who published (kept whether or not it was disclosed, like Crossbar).
    pub publisher: Identity,
    bytes: usize,
}

/// What `record` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Stored; this many older events were evicted to make room (count or bytes).
    Stored { evicted: usize },
    /// Not stored: the shard's history bytes are held by other entries.
    DroppedForBytes,
}

type Key = (Arc<str>, Arc<str>, MatchPolicy);

#[derive(Debug, Default)]
pub(crate) struct History {
    rings: Map<Key, Ring>,
    bytes: usize,
    bytes_max: usize,
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<StoredEvent>,
    bytes: usize,
}

impl Ring {
    fn pop_oldest(&mut self) -> usize {
        let freed = self.events.pop_front().map_or(0, |e| e.bytes);
        self.bytes -= freed;
        freed
    }
}

impl History {
    pub fn new(bytes_max: usize) -> History {
        History { bytes_max, ..History::default() }
    }

    /// Bytes held (the gauge).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keep `p` (payload already copied) in the ring of entry (uri, policy) of its realm,
    /// which holds at most `limit` events (`limit` ≥ 1).
    pub fn record(
        &mut self,
        entry: (&Arc<str>, MatchPolicy, usize),
        p: Arc<Publication>,
        publisher: Identity,
        time_ns: u64,
    ) -> Recorded {
        let (uri, policy, limit) = entry;
        let size = stored_bytes(&p) + publisher.authid.len() + publisher.authrole.len();
        let ring = self.rings.entry((p.realm.clone(), uri.clone(), policy)).or_default();
        // Room this ring can make by evicting its own events, plus what is free.
        if self.bytes - ring.bytes + size > self.bytes_max {
            return Recorded::DroppedForBytes;
        }
        let mut evicted = 0;
        while ring.events.len() >= limit.max(1) || (self.bytes + size > self.bytes_max && !ring.events.is_empty()) {
            self.bytes -= ring.pop_oldest();
            evicted += 1;
        }
        ring.events.push_back(StoredEvent { time_ns, publication: p, publisher, bytes: size });
        ring.bytes += size;
        self.bytes += size;
        Recorded::Stored { evicted }
    }

    /// The events of entry (realm, uri, policy) that `q` selects, in the order asked for;
    /// Err(n) if their stored bytes pass `q.bytes_max` (after the n-th event).
    pub fn select(&self, realm: &str, q: &EventsQuery) -> Result<Vec<&StoredEvent>, usize> {
        let Some(ring) = self.rings.get(&(Arc::from(realm), q.uri.clone(), q.policy)) else { return Ok(Vec::new()) };
        let events = &ring.events;
        let position = |id| events.iter().position(|e| e.publication.id == id);
        // The index range [lo, hi) the publication bounds leave; an unknown publication ID
        // (never stored, or evicted) selects nothing.
        let mut lo = 0;
        let mut hi = events.len();
        for (bound, inclusive, lower) in [
            (q.from_publication, true, true),
            (q.after_publication, false, true),
            (q.before_publication, false, false),
            (q.until_publication, true, false),
        ] {
            let Some(id) = bound else { continue };
            let Some(i) = position(id) else { return Ok(Vec::new()) };
            match (lower, inclusive) {
                (true, true) => lo = lo.max(i),
                (true, false) => lo = lo.max(i + 1),
                (false, false) => hi = hi.min(i),
                (false, true) => hi = hi.min(i + 1),
            }
        }
        if lo >= hi {
            return Ok(Vec::new());
        }
        let admits = |e: &&StoredEvent| q.admits(e.time_ns, &e.publication);
        let range = events.range(lo..hi);
        let limit = q.limit.unwrap_or(usize::MAX);
        let bytes_max = q.bytes_max.unwrap_or(usize::MAX);
        if q.newest_first {
            within(range.rev().filter(admits).take(limit), bytes_max)
        } else {
            within(range.filter(admits).take(limit), bytes_max)
        }
    }
}

/// The events of `selected` while their stored bytes stay within `bytes_max`, else Err(the
/// number taken before).
fn within<'a>(
    selected: impl Iterator<Item = &'a StoredEvent>,
    bytes_max: usize,
) -> Result<Vec<&'a StoredEvent>, usize> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for e in selected {
        bytes = bytes.saturating_add(e.bytes);
        if bytes > bytes_max {
            return Err(out.len());
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::publication;
    use super::*;

    fn who() -> Identity {
        Identity { session: 1, authid: Arc::from("a"), authrole: Arc::from("r") }
    }

    fn query(newest_first: bool, limit: Option<usize>) -> EventsQuery {
        EventsQuery { uri: Arc::from("t"), newest_first, limit, ..EventsQuery::default() }
    }

    fn ids(h: &History, q: &EventsQuery) -> Vec<u64> {
        h.select("r1", q).unwrap().iter().map(|e| e.publication.id).collect()
    }

    #[test]
    fn ring_keeps_the_newest_limit_and_selects_both_ways() {
        // Goal: the count bound evicts the oldest; selection order, limit and publication
        // bounds follow the spec. Method: 7 events into a ring of 5.
        let mut h = History::new(1 << 20);
        let uri: Arc<str> = Arc::from("t");
        for i in 1..=7 {
            h.record((&uri, MatchPolicy::Exact, 5), publication(i, "t", 10, None), who(), i * 100);
        }
        assert_eq!(ids(&h, &query(false, None)), [3, 4, 5, 6, 7]);
        assert_eq!(ids(&h, &query(true, Some(2))), [7, 6]);
        let q = EventsQuery { after_publication: Some(4), ..query(false, Some(2)) };
        assert_eq!(ids(&h, &q), [5, 6]);
        let q = EventsQuery { from_publication: Some(4), until_publication: Some(6), ..query(true, None) };
        assert_eq!(ids(&h, &q), [6, 5, 4]);
        let q = EventsQuery { before_publication: Some(1), ..query(false, None) };
        assert!(ids(&h, &q).is_empty(), "an evicted publication selects nothing");
        let q = EventsQuery { time_min_ns: Some(450), time_max_ns: Some(600), ..query(false, None) };
        assert_eq!(ids(&h, &q), [5, 6]);
    }

    #[test]
    fn selection_stops_at_its_byte_bound() {
        // Goal: a selection whose stored bytes pass `bytes_max` is refused (with how many
        // events fitted) instead of built, whichever direction; one that fits, or is cut by
        // `limit` first, is not. Method: 10 events of the same size, bounds around 4 of them.
        let mut h = History::new(1 << 20);
        let uri: Arc<str> = Arc::from("t");
        for i in 1..=10 {
            h.record((&uri, MatchPolicy::Exact, 100), publication(i, "t", 1000, None), who(), i);
        }
        let size = stored_bytes(&publication(1, "t", 1000, None)) + 2;
        let bounded = |newest_first, limit| EventsQuery { bytes_max: Some(size * 4), ..query(newest_first, limit) };
        assert_eq!(h.select("r1", &bounded(true, None)).unwrap_err(), 4);
        assert_eq!(h.select("r1", &bounded(false, Some(5))).unwrap_err(), 4);
        assert_eq!(ids(&h, &bounded(false, Some(4))), [1, 2, 3, 4]);
        assert_eq!(ids(&h, &bounded(true, Some(3))), [10, 9, 8]);
    }

    #[test]
    fn shard_bytes_evict_own_events_first_then_drop() {
        // Goal: the shard's byte bound holds; an entry over it evicts its own oldest events,
        // and an event that cannot fit even then is dropped and reported. Method: room for
        // three events, two entries.
        let size = stored_bytes(&publication(1, "t", 1000, None)) + 2;
        let mut h = History::new(size * 3);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("t"), Arc::from("u"));
        for i in 1..=2 {
            assert_eq!(
                h.record((&a, MatchPolicy::Exact, 100), publication(i, "t", 1000, None), who(), 0),
                Recorded::Stored { evicted: 0 }
            );
        }
        assert_eq!(
            h.record((&b, MatchPolicy::Exact, 100), publication(3, "u", 1000, None), who(), 0),
            Recorded::Stored { evicted: 0 }
        );
        assert_eq!(
            h.record((&b, MatchPolicy::Exact, 100), publication(4, "u", 1000, None), who(), 0),
            Recorded::Stored { evicted: 1 }
        );
        assert!(h.bytes() <= size * 3);
        let big = publication(5, "u", 3000, None);
        assert_eq!(h.record((&b, MatchPolicy::Exact, 100), big, who(), 0), Recorded::DroppedForBytes);
        assert_eq!(ids(&h, &query(false, None)), [1, 2]);
        assert!(h.bytes() <= size * 3);
    }
}
