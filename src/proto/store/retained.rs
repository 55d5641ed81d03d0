//! Retained events on their owner shard: per (realm, topic), the newest unfiltered
//! retained publication and the filtered ones published after it (Crossbar's semantics:
//! an unfiltered `retain` replaces the list, a filtered one appends). Bounded per topic,
//! per realm and per shard (`limits::RETAINED_*`); over a bound the publication is not
//! retained and the caller counts it.

use std::sync::Arc;

use super::super::Map;
use super::super::mesh::Publication;
use super::super::wire::Id;
use super::stored_bytes;
use crate::limits;

/// Why a retained publication was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The topic already holds `RETAINED_EVENTS_PER_TOPIC_MAX` events (filtered appends).
    TopicFull,
    /// The realm already has `RETAINED_TOPICS_PER_REALM_MAX` topics on this shard.
    RealmFull,
    /// The shard's retained bytes would exceed `RETAINED_BYTES_PER_SHARD_MAX`.
    ShardBytes,
}

/// (realm, topic)
type TopicKey = (Arc<str>, Arc<str>);

#[derive(Debug, Default)]
pub(crate) struct Retained {
    /// (realm, topic) → events, oldest first.
    topics: Map<TopicKey, Vec<Arc<Publication>>>,
    topics_per_realm: Map<Arc<str>, usize>,
    bytes: usize,
    bytes_max: usize,
}

impl Retained {
    pub fn new(bytes_max: usize) -> Retained {
        Retained { bytes_max, ..Retained::default() }
    }

    /// Bytes held (the gauge).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keep `p` (its payload already copied out of the read buffer) for its topic.
    pub fn retain(&mut self, p: Arc<Publication>) -> Result<(), Refused> {
        let key = (p.realm.clone(), p.topic.clone());
        let size = stored_bytes(&p);
        let replaces = p.filters.is_none();
        match self.topics.get_mut(&key) {
            Some(list) => {
                let freed: usize = if replaces { list.iter().map(|e| stored_bytes(e)).sum() } else { 0 };
                if !replaces && list.len() >= limits::RETAINED_EVENTS_PER_TOPIC_MAX {
                    return Err(Refused::TopicFull);
                }
                if self.bytes - freed + size > self.bytes_max {
                    return Err(Refused::ShardBytes);
                }
                if replaces {
                    list.clear();
                }
                list.push(p);
                self.bytes = self.bytes - freed + size;
            }
            None => {
                let count = self.topics_per_realm.get(&p.realm).copied().unwrap_or(0);
                if count >= limits::RETAINED_TOPICS_PER_REALM_MAX {
                    return Err(Refused::RealmFull);
                }
                if self.bytes + size > self.bytes_max {
                    return Err(Refused::ShardBytes);
                }
                *self.topics_per_realm.entry(p.realm.clone()).or_default() += 1;
                self.topics.insert(key, vec![p]);
                self.bytes += size;
            }
        }
        Ok(())
    }

    /// The newest retained event of (realm, topic) that this subscriber would have received
    /// (filters and `exclude_me` applied).
    pub fn newest_for(
        &self,
        realm: &Arc<str>,
        topic: &Arc<str>,
        session: Id,
        authid: &str,
        authrole: &str,
    ) -> Option<&Arc<Publication>> {
        let list = self.topics.get(&(realm.clone(), topic.clone()))?;
        list.iter().rev().find(|p| {
            !(p.exclude_me && p.publisher == session)
                && p.filters.as_ref().is_none_or(|f| f.admits(session, authid, authrole))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::publication;
    use super::*;
    use crate::proto::mesh::Filters;

    fn only_authrole(role: &str) -> Option<Filters> {
        Some(Filters { eligible_authrole: Some(vec![role.to_owned()]), ..Filters::default() })
    }

    #[test]
    fn unfiltered_replaces_filtered_appends_and_eligibility_picks_the_newest() {
        // Goal: Crossbar's replace/append semantics and "the newest event this subscriber
        // may receive". Method: plain, then two filtered, then plain again.
        let mut r = Retained::new(1 << 20);
        let (realm, t) = (Arc::from("r1"), Arc::from("t"));
        r.retain(publication(1, "t", 10, None)).unwrap();
        r.retain(publication(2, "t", 10, only_authrole("admin"))).unwrap();
        r.retain(publication(3, "t", 10, only_authrole("ops"))).unwrap();
        let newest = |r: &Retained, role: &str| r.newest_for(&realm, &t, 9, "a", role).map(|p| p.id);
        assert_eq!(newest(&r, "admin"), Some(2));
        assert_eq!(newest(&r, "ops"), Some(3));
        assert_eq!(newest(&r, "user"), Some(1));
        // The publisher itself is excluded (exclude_me) unless it said otherwise.
        assert_eq!(r.newest_for(&realm, &t, 1, "a", "user").map(|p| p.id), None);
        r.retain(publication(4, "t", 10, None)).unwrap();
        assert_eq!(newest(&r, "admin"), Some(4));
        assert_eq!(r.bytes(), stored_bytes(&publication(4, "t", 10, None)));
    }

    #[test]
    fn bounds_refuse_and_keep_what_was_there() {
        // Goal: each bound refuses the new event and leaves the store as it was.
        // Method: fill the per-topic list, then the shard's bytes, then the realm's topics.
        let mut r = Retained::new(1 << 20);
        r.retain(publication(1, "t", 10, None)).unwrap();
        for i in 1..limits::RETAINED_EVENTS_PER_TOPIC_MAX {
            r.retain(publication(10 + i as u64, "t", 10, only_authrole("a"))).unwrap();
        }
        assert_eq!(r.retain(publication(99, "t", 10, only_authrole("a"))), Err(Refused::TopicFull));
        // A replacing publish still fits: it frees the list first.
        r.retain(publication(100, "t", 10, None)).unwrap();

        let size = stored_bytes(&publication(1, "u1", 1000, None));
        let mut r = Retained::new(size * 2);
        r.retain(publication(1, "u1", 1000, None)).unwrap();
        r.retain(publication(2, "u2", 1000, None)).unwrap();
        assert_eq!(r.retain(publication(3, "u3", 1000, None)), Err(Refused::ShardBytes));
        assert_eq!(r.retain(publication(4, "u1", 1000, only_authrole("a"))), Err(Refused::ShardBytes));
        assert_eq!(r.bytes(), size * 2);
        // Replacing with an event of the same size frees the old one first.
        r.retain(publication(5, "u1", 1000, None)).unwrap();

        let mut r = Retained::new(usize::MAX);
        for i in 0..limits::RETAINED_TOPICS_PER_REALM_MAX {
            r.retain(publication(i as u64 + 1, &format!("t{i}"), 0, None)).unwrap();
        }
        assert_eq!(r.retain(publication(1, "one.more", 0, None)), Err(Refused::RealmFull));
    }
}
