//! The broker's state on one shard, in three parts with different owners:
//!
//! - **Route replica** (every shard): (topic, match) → subscription ID and the set of shards
//!   with members. A publisher's shard resolves a publication here, so delivery never asks
//!   another shard. Updated only by the owner's `SubRoute` messages.
//! - **Owned subscriptions** (the owner shard, `hash(realm, topic, match) % shards`): the
//!   authoritative ID and shard set; the owner pushes every change to all replicas.
//! - **Local membership** (the home shard of each subscriber): subscription ID → the
//!   sessions on this shard, so one delivery message fans out locally.
//!
//! Nothing here sends anything: `pubsub` and `control` turn the results into messages.
//! Pattern matching is `pattern::UriIndex`'s.

use crate::proto::Map;
use std::sync::Arc;
use std::time::Instant;

use super::mesh::{Filters, ShardSet, SubTarget};
use super::options::{self, OptionError};
use super::pattern::UriIndex;
use super::session::ConnId;
use super::wire::ids::router_scope_id;
use super::wire::uri::MatchPolicy;
use super::wire::{Dict, Id};

/// A replica's entry for one subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubRoute {
    pub id: Id,
    pub shards: ShardSet,
}

/// The owner's entry for one subscription.
#[derive(Clone, Debug)]
pub struct OwnedSub {
    pub id: Id,
    pub topic: Arc<str>,
    pub policy: MatchPolicy,
    pub shards: ShardSet,
    /// When the owner created it (`wamp.subscription.get`'s `created`).
    pub created: Instant,
    /// The latest reported leave: (when, shard, session); `on_delete` is that session's.
    pub last_leave: Option<(Instant, usize, Id)>,
}

impl OwnedSub {
    /// Whether the last `owner_add` created it (its first shard).
    pub fn is_new(&self, changed: bool) -> bool {
        changed && self.shards.count_ones() == 1
    }
}

/// A subscriber on this shard.
#[derive(Clone, Debug)]
pub struct Member {
    pub session: Id,
    pub conn: ConnId,
    pub authid: Arc<str>,
    pub authrole: Arc<str>,
}

/// A subscription's members on this shard. `members` is a dense vec for fan-out speed;
/// `pos` makes removal O(1) (swap-remove).
#[derive(Debug)]
pub struct LocalSub {
    pub topic: Arc<str>,
    pub policy: MatchPolicy,
    pub members: Vec<Member>,
    pos: Map<Id, usize>,
}

/// A subscription request waiting for the owner's barrier; later local SUBSCRIBEs for the
/// same (topic, match) wait on the same request.
#[derive(Debug)]
pub struct PendingSub {
    pub waiters: Vec<Waiter>,
}

/// A SUBSCRIBE waiting for the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub session: Id,
    /// `SUBSCRIBE.Request`
    pub request: Id,
    /// `SUBSCRIBE.Options.get_retained`
    pub get_retained: bool,
}

type Key = (Arc<str>, MatchPolicy);

/// A confirmed subscription request: topic, policy and the waiters.
pub type Confirmed = (Arc<str>, MatchPolicy, Vec<Waiter>);

#[derive(Debug, Default)]
pub struct Broker {
    routes: UriIndex<SubRoute>,
    /// Subscription ID → (topic, match) of every route in the replica.
    route_keys: Map<Id, Key>,

    owned: Map<Key, OwnedSub>,
    owned_by_id: Map<Id, Key>,
    next_seq: u64,

    local: Map<Id, LocalSub>,
    local_by_topic: Map<Key, Id>,
    pending: Map<Key, PendingSub>,
    pending_by_token: Map<u64, Key>,
}

/// What `leave` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Leave {
    NotMember,
    /// Others remain on this shard.
    Left,
    /// That was the last member on this shard: release the shard's interest.
    LastLeft,
}

impl Broker {
    // ---- route replica ----

    /// Apply the owner's update: the subscription's shard set, or removal when empty.
    pub fn set_route(&mut self, topic: &Arc<str>, policy: MatchPolicy, id: Id, shards: ShardSet) {
        if shards == 0 {
            if let Some(old) = self.routes.remove(topic, policy) {
                self.route_keys.remove(&old.id);
            }
            return;
        }
        let route = SubRoute { id, shards };
        let slot = self.routes.entry_or_insert_with(topic, policy, || route);
        if slot.id != id {
            self.route_keys.remove(&slot.id);
        }
        *slot = route;
        self.route_keys.insert(id, (topic.clone(), policy));
    }

    /// Every subscription matching `topic`, with the shards that have members.
    pub fn routes(&self, topic: &str, mut visit: impl FnMut(SubTarget, ShardSet)) {
        self.routes.matches(topic, |policy, r| {
            visit(SubTarget { subscription: r.id, pattern: policy != MatchPolicy::Exact }, r.shards)
        });
    }

    /// Every subscription in the replica: (policy, ID).
    pub fn for_each_route(&self, mut visit: impl FnMut(MatchPolicy, Id)) {
        self.routes.for_each(|policy, r| visit(policy, r.id));
    }

    /// The subscription of exactly (topic, policy) in the replica.
    pub fn route_id(&self, topic: &str, policy: MatchPolicy) -> Option<Id> {
        self.routes.get(topic, policy).map(|r| r.id)
    }

    /// The (topic, match) of subscription `id`, if the replica routes it.
    pub fn route_of(&self, id: Id) -> Option<(&Arc<str>, MatchPolicy)> {
        self.route_keys.get(&id).map(|(t, p)| (t, *p))
    }

    /// Number of subscriptions in the replica (exact, prefix, wildcard).
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// No route, owned subscription, local membership or pending request.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.owned.is_empty() && self.local.is_empty() && self.pending.is_empty()
    }

    // ---- owned subscriptions ----

    /// Add `shard` to the subscription for (topic, policy), creating it if needed.
    /// Returns the subscription and whether the shard set changed.
    pub fn owner_add(
        &mut self,
        owner: usize,
        topic: &Arc<str>,
        policy: MatchPolicy,
        shard: usize,
        now: Instant,
    ) -> (&OwnedSub, bool) {
        let key = (topic.clone(), policy);
        if !self.owned.contains_key(&key) {
            self.next_seq += 1;
            let id = router_scope_id(self.next_seq, owner);
            self.owned_by_id.insert(id, key.clone());
            self.owned.insert(
                key.clone(),
                OwnedSub { id, topic: topic.clone(), policy, shards: 0, created: now, last_leave: None },
            );
        }
        let sub = self.owned.get_mut(&key).expect("inserted above");
        let bit = 1u64 << shard;
        let changed = sub.shards & bit == 0;
        sub.shards |= bit;
        (sub, changed)
    }

    /// Whether this shard owns a subscription of exactly (topic, policy).
    pub fn owns(&self, topic: &Arc<str>, policy: MatchPolicy) -> bool {
        self.owned.contains_key(&(topic.clone(), policy))
    }

    /// Remove `shard` from subscription `id`; `leave` is the (time, session) of the member
    /// whose leave released it (session 0: none to report). Returns the subscription's new
    /// state (shard set 0 = deleted), or None if the owner does not know it.
    pub fn owner_release(&mut self, id: Id, shard: usize, leave: (Instant, Id)) -> Option<OwnedSub> {
        let key = self.owned_by_id.get(&id)?.clone();
        let sub = self.owned.get_mut(&key)?;
        sub.shards &= !(1u64 << shard);
        let (at, session) = leave;
        if session != 0 && sub.last_leave.is_none_or(|(t, _, _)| at >= t) {
            sub.last_leave = Some((at, shard, session));
        }
        let out = sub.clone();
        if out.shards == 0 {
            self.owned.remove(&key);
            self.owned_by_id.remove(&id);
        }
        Some(out)
    }

    /// The subscription `id` if this shard owns it.
    pub fn owned(&self, id: Id) -> Option<&OwnedSub> {
        self.owned.get(self.owned_by_id.get(&id)?)
    }

    // ---- local membership ----

    /// The local subscription for (topic, policy), if this shard already has members.
    pub fn local_id(&self, topic: &str, policy: MatchPolicy) -> Option<Id> {
        // A borrowed (str, policy) lookup needs an owned key; topics are short.
        self.local_by_topic.get(&(Arc::from(topic), policy)).copied()
    }

    pub fn local(&self, id: Id) -> Option<&LocalSub> {
        self.local.get(&id)
    }

    /// Register the shard's local entry once the owner confirmed subscription `id`.
    pub fn local_create(&mut self, id: Id, topic: Arc<str>, policy: MatchPolicy) {
        self.local_by_topic.insert((topic.clone(), policy), id);
        self.local.entry(id).or_insert_with(|| LocalSub { topic, policy, members: Vec::new(), pos: Map::default() });
    }

    /// Add a member; false if it already was one.
    pub fn join(&mut self, id: Id, member: Member) -> bool {
        let Some(sub) = self.local.get_mut(&id) else { return false };
        if sub.pos.contains_key(&member.session) {
            return false;
        }
        sub.pos.insert(member.session, sub.members.len());
        sub.members.push(member);
        true
    }

    pub fn leave(&mut self, id: Id, session: Id) -> Leave {
        let Some(sub) = self.local.get_mut(&id) else { return Leave::NotMember };
        let Some(i) = sub.pos.remove(&session) else { return Leave::NotMember };
        sub.members.swap_remove(i);
        if let Some(moved) = sub.members.get(i) {
            sub.pos.insert(moved.session, i);
        }
        if !sub.members.is_empty() {
            return Leave::Left;
        }
        let key = (sub.topic.clone(), sub.policy);
        self.local.remove(&id);
        self.local_by_topic.remove(&key);
        Leave::LastLeft
    }

    /// Drop an empty local entry (a confirmation arrived after all waiters left).
    pub fn local_remove_if_empty(&mut self, id: Id) -> bool {
        match self.local.get(&id) {
            Some(sub) if sub.members.is_empty() => {
                let key = (sub.topic.clone(), sub.policy);
                self.local.remove(&id);
                self.local_by_topic.remove(&key);
                true
            }
            _ => false,
        }
    }

    // ---- pending requests ----

    /// Queue a SUBSCRIBE behind a request in flight; returns false if none is in flight.
    pub fn pending_wait(&mut self, topic: &Arc<str>, policy: MatchPolicy, waiter: Waiter) -> bool {
        match self.pending.get_mut(&(topic.clone(), policy)) {
            Some(p) => {
                p.waiters.push(waiter);
                true
            }
            None => false,
        }
    }

    pub fn pending_start(&mut self, topic: Arc<str>, policy: MatchPolicy, token: u64, waiter: Waiter) {
        let key = (topic, policy);
        self.pending_by_token.insert(token, key.clone());
        self.pending.insert(key, PendingSub { waiters: vec![waiter] });
    }

    /// Take a confirmed request: its key and waiters.
    pub fn pending_finish(&mut self, token: u64) -> Option<Confirmed> {
        let key = self.pending_by_token.remove(&token)?;
        let p = self.pending.remove(&key)?;
        Some((key.0, key.1, p.waiters))
    }
}

/// `PUBLISH.Options`, validated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PublishOptions {
    pub acknowledge: bool,
    pub exclude_me: bool,
    pub disclose_me: bool,
    pub retain: bool,
    pub filters: Option<Box<Filters>>,
}

impl PublishOptions {
    pub fn parse(d: &Dict) -> Result<PublishOptions, OptionError> {
        const M: &str = "PUBLISH";
        if d.is_empty() {
            // The common case on the hot path: every option at its default.
            return Ok(PublishOptions { exclude_me: true, ..PublishOptions::default() });
        }
        options::check_forward_for(d, M)?;
        options::check_transparency(d, M)?;
        let filters = Filters {
            exclude: options::opt_id_list(d, M, "exclude")?.unwrap_or_default(),
            exclude_authid: options::opt_str_list(d, M, "exclude_authid")?.unwrap_or_default(),
            exclude_authrole: options::opt_str_list(d, M, "exclude_authrole")?.unwrap_or_default(),
            eligible: options::opt_id_list(d, M, "eligible")?,
            eligible_authid: options::opt_str_list(d, M, "eligible_authid")?,
            eligible_authrole: options::opt_str_list(d, M, "eligible_authrole")?,
        };
        Ok(PublishOptions {
            acknowledge: options::opt_bool(d, M, "acknowledge")?.unwrap_or(false),
            exclude_me: options::opt_bool(d, M, "exclude_me")?.unwrap_or(true),
            disclose_me: options::opt_bool(d, M, "disclose_me")?.unwrap_or(false),
            retain: options::opt_bool(d, M, "retain")?.unwrap_or(false),
            filters: (filters != Filters::default()).then(|| Box::new(filters)),
        })
    }
}

/// `SUBSCRIBE.Options`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscribeOptions {
    pub policy: MatchPolicy,
    pub get_retained: bool,
}

impl SubscribeOptions {
    pub fn parse(d: &Dict) -> Result<SubscribeOptions, OptionError> {
        const M: &str = "SUBSCRIBE";
        options::check_forward_for(d, M)?;
        let policy = match options::opt_str(d, M, "match")? {
            None => MatchPolicy::Exact,
            Some(s) => MatchPolicy::parse(s).ok_or_else(|| OptionError::unknown(M, "match", "match policy", s))?,
        };
        Ok(SubscribeOptions { policy, get_retained: options::opt_bool(d, M, "get_retained")?.unwrap_or(false) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(session: Id) -> Member {
        Member { session, conn: session, authid: Arc::from("a"), authrole: Arc::from("r") }
    }

    #[test]
    fn membership_swap_remove_keeps_positions() {
        let mut b = Broker::default();
        b.local_create(7, Arc::from("t"), MatchPolicy::Exact);
        for s in 1..=4 {
            assert!(b.join(7, member(s)));
        }
        assert!(!b.join(7, member(2)));
        assert_eq!(b.leave(7, 1), Leave::Left);
        assert_eq!(b.leave(7, 1), Leave::NotMember);
        assert_eq!(b.leave(7, 3), Leave::Left);
        let left: Vec<Id> = b.local(7).unwrap().members.iter().map(|m| m.session).collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&2) && left.contains(&4));
        assert_eq!(b.leave(7, 2), Leave::Left);
        assert_eq!(b.leave(7, 4), Leave::LastLeft);
        assert!(b.local(7).is_none());
        assert_eq!(b.local_id("t", MatchPolicy::Exact), None);
    }

    #[test]
    fn routes_cover_all_policies() {
        let mut b = Broker::default();
        b.set_route(&Arc::from("a.b.c"), MatchPolicy::Exact, 1, 0b01);
        b.set_route(&Arc::from("a.b"), MatchPolicy::Prefix, 2, 0b10);
        b.set_route(&Arc::from("a..c"), MatchPolicy::Wildcard, 3, 0b11);
        let mut seen = Vec::new();
        b.routes("a.b.c", |t, s| seen.push((t.subscription, t.pattern, s)));
        seen.sort();
        assert_eq!(seen, [(1, false, 0b01), (2, true, 0b10), (3, true, 0b11)]);
        b.set_route(&Arc::from("a.b"), MatchPolicy::Prefix, 2, 0);
        let mut n = 0;
        b.routes("a.b.c", |_, _| n += 1);
        assert_eq!(n, 2);
    }

    #[test]
    fn owner_tracks_shards_and_deletes() {
        let mut b = Broker::default();
        let t: Arc<str> = Arc::from("t");
        let (s, changed) = b.owner_add(1, &t, MatchPolicy::Exact, 0, Instant::now());
        let id = s.id;
        assert!(changed);
        assert_eq!(super::super::wire::ids::owner_of(id), 1);
        let (s, changed) = b.owner_add(1, &t, MatchPolicy::Exact, 0, Instant::now());
        assert!(!changed);
        assert_eq!(s.id, id);
        b.owner_add(1, &t, MatchPolicy::Exact, 3, Instant::now());
        // Shard 0's member left after shard 3's, but its release arrives first: the delete
        // is still the later leaver's.
        let (early, late) = (Instant::now(), Instant::now() + std::time::Duration::from_millis(1));
        assert_eq!(b.owner_release(id, 0, (late, 7)).unwrap().shards, 0b1000);
        let gone = b.owner_release(id, 3, (early, 9)).unwrap();
        assert_eq!(gone.shards, 0);
        assert_eq!(gone.last_leave, Some((late, 0, 7)));
        assert!(b.owner_release(id, 3, (late, 9)).is_none());
        // A new subscription for the same topic gets a new ID.
        let (s, _) = b.owner_add(1, &t, MatchPolicy::Exact, 0, Instant::now());
        assert_ne!(s.id, id);
    }

    #[test]
    fn publish_options_validate_like_the_vectors() {
        use crate::proto::wire::Value;
        assert!(PublishOptions::parse(&Dict::new()).unwrap().exclude_me);
        let e = PublishOptions::parse(&Dict::new().with("exclude", Value::str("hello"))).unwrap_err();
        assert!(e.to_string().contains("exclude"), "{e}");
        let e = PublishOptions::parse(&Dict::new().with("enc_algo", Value::str("invalid"))).unwrap_err();
        assert!(e.to_string().contains("enc_algo"), "{e}");
        let ok = PublishOptions::parse(&Dict::new().with("eligible", Vec::<Value>::new())).unwrap();
        assert_eq!(ok.filters.unwrap().eligible, Some(vec![]));
        let e = SubscribeOptions::parse(&Dict::new().with("match", Value::str("invalid"))).unwrap_err();
        assert!(e.to_string().contains("match"), "{e}");
    }
}
