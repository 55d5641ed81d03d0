//! Publish & subscribe on one shard: PUBLISH (resolve routes in the replica, deliver
//! locally, hand the rest to the mesh), the local fan-out of a delivery, and the
//! subscriber side of SUBSCRIBE/UNSUBSCRIBE. The owner side (IDs, barriers) is `control`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::broker::{Leave, Member, PublishOptions, SubscribeOptions, Waiter};
use super::frame::{
    EVENT_HEAD_FIXED_MAX_BYTES, Framing, OutFrame, SplitFrame, encode_event_split, encode_frame, encode_tail,
};
use super::mesh::{Identity, MeshMsg, Publication, ShardSet, StoreMsg, SubMsg, SubTarget};
use super::meta::{self, subscriptions};
use super::out::{Class, Conn, Out, Pushed, log_allowed, push_frame, refusal};
use super::realm::{Realm, Realms};
use super::session::{Session, Sessions};
use super::stats::Stats;
use super::uris;
use super::violation::Violation;
use super::wire::ids::owner_of;
use super::wire::message::code;
use super::wire::message::{Serializer, encode_dict, event_tail_len};
use super::wire::peer_text;
use super::wire::uri::{self, MatchPolicy};
use super::wire::{DecodeError, Dict, Id, Message, Payload, Value};
use crate::limits;

/// PUBLISH from session `s`.
pub(crate) fn on_publish(
    cx: &mut Out,
    realms: &mut Realms,
    s: &Session,
    request: Id,
    options: Dict,
    topic: String,
    payload: Payload,
) -> Result<(), Violation> {
    let opts = PublishOptions::parse(&options)?;
    let Some(realm) = realms.get_mut(&s.realm) else { return Ok(()) };
    if !uri::is_valid(&topic, realm.config.strict_uri, false) || uri::is_reserved(&topic) {
        let msg = format!("invalid topic {:?}", peer_text(&topic));
        cx.error(s.conn, code::PUBLISH, request, uris::INVALID_URI, Some(msg));
        return Ok(());
    }
    let id = cx.ids.next_global();
    let acknowledge = opts.acknowledge;
    publish_as(cx, realm, s, id, Arc::from(topic), opts, payload);
    if acknowledge {
        cx.send(s.conn, &Message::Published { request, publication: id });
    }
    Ok(())
}

/// Route publication `id` of session `s` (a PUBLISH, or a testament of a session that is
/// ending), disclosed, excluding and filtered as `opts` says. The topic is already checked.
pub(crate) fn publish_as(
    cx: &mut Out,
    realm: &mut Realm,
    s: &Session,
    id: Id,
    topic: Arc<str>,
    opts: PublishOptions,
    payload: Payload,
) {
    cx.stats.publications += 1;
    realm.stats.publications += 1;
    let publication = Arc::new(Publication {
        realm: s.realm.clone(),
        id,
        topic,
        publisher: s.id,
        disclose: opts.disclose_me.then(|| Identity {
            session: s.id,
            authid: s.authid.clone(),
            authrole: s.authrole.clone(),
        }),
        exclude_me: opts.exclude_me,
        filters: opts.filters,
        payload,
        read_at: cx.now,
    });
    if opts.retain || realm.history.is_some() {
        keep(cx, realm, s, &publication, opts.retain);
    }
    fan_out(cx, realm, publication);
}

/// Send a publication to the stores that keep it (off the common path: the realm keeps
/// history, or the publisher asked to retain it): the retained store of its topic, and the
/// history of every `[[realm.history]]` entry it matches unless it filters receivers by
/// session ID (the spec: such events are not stored).
#[cold]
fn keep(cx: &mut Out, realm: &Realm, s: &Session, publication: &Arc<Publication>, retain: bool) {
    if retain {
        let owner = cx.owner_shard(&realm.name, &publication.topic, MatchPolicy::Exact);
        cx.send_mesh(owner, MeshMsg::Store(StoreMsg::Retain { publication: publication.clone() }));
    }
    let Some(history) = &realm.history else { return };
    if publication.filters.as_ref().is_some_and(|f| f.by_session()) {
        return;
    }
    history.matches(&publication.topic, |policy, entry| {
        let owner = cx.owner_shard(&realm.name, &entry.uri, policy);
        let publisher = Identity { session: s.id, authid: s.authid.clone(), authrole: s.authrole.clone() };
        let record = StoreMsg::Record {
            uri: entry.uri.clone(),
            policy,
            limit: entry.limit,
            publication: publication.clone(),
            publisher,
        };
        cx.send_mesh(owner, MeshMsg::Store(record));
    });
}

/// Route a publication through the realm's replica: deliver it to this shard's members and
/// hand it to every other shard with members (one mesh message per shard).
pub(crate) fn fan_out(cx: &mut Out, realm: &mut Realm, publication: Arc<Publication>) {
    let scratch = &mut cx.mesh.route_scratch;
    realm.broker.routes(&publication.topic, |target, mut shards: ShardSet| {
        while shards != 0 {
            let shard = shards.trailing_zeros() as usize;
            shards &= shards - 1;
            if let Some(list) = scratch.get_mut(shard) {
                list.push(target);
            }
        }
    });
    for shard in 0..cx.shards {
        if cx.mesh.route_scratch[shard].is_empty() {
            continue;
        }
        let targets = std::mem::take(&mut cx.mesh.route_scratch[shard]);
        if shard == cx.shard {
            deliver_local(cx, realm, &publication, &targets);
        } else {
            cx.send_mesh(shard, MeshMsg::Deliver { publication: publication.clone(), targets });
        }
    }
}

/// Publish an event as the router itself (meta events): an ordinary publication from no
/// session (publisher ID 0, never disclosed), so fan-out, filters and ordering apply. The
/// arguments are only built when the topic has subscribers.
pub(crate) fn publish_from_router(cx: &mut Out, realm: &mut Realm, topic: &str, args: impl FnOnce(&Out) -> Vec<Value>) {
    let mut subscribed = false;
    realm.broker.routes(topic, |_, _| subscribed = true);
    if !subscribed {
        return;
    }
    let args = args(cx);
    let id = cx.ids.next_global();
    let publication = Arc::new(Publication {
        realm: realm.name.clone(),
        id,
        topic: Arc::from(topic),
        publisher: 0,
        disclose: None,
        exclude_me: false,
        filters: None,
        payload: Payload::from_values(Serializer::Json, Some(&args), None),
        read_at: cx.now,
    });
    cx.stats.publications += 1;
    realm.stats.publications += 1;
    fan_out(cx, realm, publication);
}

/// Fan a publication out to this shard's members of `targets`. The payload is encoded once
/// per serializer, as the tail every EVENT frame of the publication shares
/// (`frame::SplitFrame`); the `Details` once per serializer and kind of subscription; and
/// each subscription's small head once per framing. Nothing is built for a member whose
/// connection would refuse the frame anyway (closing, too big for the peer, or over its
/// pending-bytes cap): the refusal is counted as if the frame had been pushed.
pub(crate) fn deliver_local(cx: &mut Out, realm: &mut Realm, p: &Publication, targets: &[SubTarget]) {
    cx.stats.routing_latency.observe(cx.now.saturating_duration_since(p.read_at));
    let mut delivered = 0u64;
    let mut bytes = 0u64;
    let mut parts = EventParts::new(p);
    for t in targets {
        let Some(local) = realm.broker.local(t.subscription) else { continue };
        // Per framing: not built yet (None), built, or failed (Some(None): counted and
        // logged once, not retried for every member).
        let mut frames: [Option<Option<Rc<SplitFrame>>>; Framing::COUNT] = Default::default();
        for m in &local.members {
            if p.exclude_me && m.session == p.publisher {
                continue;
            }
            if let Some(f) = &p.filters
                && !f.admits(m.session, &m.authid, &m.authrole)
            {
                continue;
            }
            let Some(c) = cx.conns.get_mut(m.conn) else { continue };
            let framing = c.info.framing;
            let slot = &mut frames[framing.index()];
            if slot.is_none() {
                let ser = framing.serializer;
                let mut refused = parts.refusal(c, ser, t.pattern, cx.pending_bytes_max);
                if refused.is_none() && parts.tail_len(ser).is_none() {
                    // A transcoded tail's length is known once it is encoded (once per
                    // serializer); then ask again before building this subscription's head.
                    parts.encode_tail(&mut cx.stats, ser);
                    refused = parts.refusal(c, ser, t.pattern, cx.pending_bytes_max);
                }
                if let Some(refused) = refused {
                    cx.count_unqueued(m.conn, refused, parts.tail_len(ser).unwrap_or(0));
                    continue;
                }
                *slot = Some(parts.frame(&mut cx.stats, framing, t).map(Rc::new));
            }
            let Some(Some(frame)) = slot.clone() else { continue };
            let len = frame.len();
            match push_frame(c, m.conn, OutFrame::Split(frame), Class::Event, cx.pending_bytes_max, &mut cx.dirty) {
                Pushed::Queued => {
                    delivered += 1;
                    bytes += len as u64;
                }
                other => cx.count_unqueued(m.conn, other, len),
            }
        }
    }
    cx.stats.events_delivered += delivered;
    cx.stats.messages_out[code::EVENT as usize] += delivered;
    cx.stats.bytes_out_queued += bytes;
    realm.stats.events_delivered += delivered;
}

/// What one publication's local fan-out encodes once and reuses for every subscription.
struct EventParts<'p> {
    p: &'p Publication,
    /// Per serializer: not encoded yet (None), the shared tail, or failed (Some(None):
    /// counted and logged once).
    tails: [Option<Option<Bytes>>; 3],
    /// Per serializer, and whether the subscription is a pattern (its Details carry the
    /// topic): the encoded Details.
    details: [[Option<Vec<u8>>; 2]; 3],
}

impl<'p> EventParts<'p> {
    fn new(p: &'p Publication) -> Self {
        EventParts { p, tails: Default::default(), details: Default::default() }
    }

    /// The tail's length in `ser`, if known without encoding it.
    fn tail_len(&self, ser: Serializer) -> Option<usize> {
        match &self.tails[ser as usize - 1] {
            Some(Some(tail)) => Some(tail.len()),
            Some(None) => None,
            None => event_tail_len(ser, &self.p.payload),
        }
    }

    /// The Details of an EVENT through a pattern subscription or not, encoded in `ser`.
    fn details(&mut self, ser: Serializer, pattern: bool) -> &[u8] {
        let p = self.p;
        self.details[ser as usize - 1][usize::from(pattern)].get_or_insert_with(|| {
            let mut out = Vec::new();
            encode_dict(ser, &event_details(p, pattern), &mut out);
            out
        })
    }

    /// What `c` would certainly do with this publication's EVENT through a subscription
    /// (`pattern` or not) in serializer `ser`, judged before it is built (`out::refusal`):
    /// every frame is longer than its tail, and its head adds at most its fixed part and
    /// the Details. An unknown tail length (not encoded yet, or failed) bounds nothing.
    fn refusal(&mut self, c: &Conn, ser: Serializer, pattern: bool, pending_bytes_max: usize) -> Option<Pushed> {
        let tail_len = self.tail_len(ser);
        let least = tail_len.unwrap_or(0) + 1;
        let most = || match tail_len {
            Some(n) => n.saturating_add(EVENT_HEAD_FIXED_MAX_BYTES + self.details(ser, pattern).len()),
            None => usize::MAX,
        };
        refusal(c, least, most, Class::Event, pending_bytes_max)
    }

    /// Encode the tail for `ser` unless that was done (or tried) already.
    fn encode_tail(&mut self, stats: &mut Stats, ser: Serializer) {
        let p = self.p;
        self.tails[ser as usize - 1].get_or_insert_with(|| {
            stats.event_payload_encodes += 1;
            encode_tail(ser, &p.payload).map_err(|e| payload_unrepresentable(stats, &e)).ok()
        });
    }

    /// The EVENT frame through subscription `t` for `framing`, encoding the tail first if
    /// it is the serializer's first. None if it cannot be encoded (counted and logged).
    fn frame(&mut self, stats: &mut Stats, framing: Framing, t: &SubTarget) -> Option<SplitFrame> {
        let ser = framing.serializer;
        self.encode_tail(stats, ser);
        let tail = self.tails[ser as usize - 1].clone().flatten()?;
        let p = self.p;
        let details = self.details(ser, t.pattern);
        encode_event_split(framing, t.subscription, p.id, details, p.payload.count, &tail)
            .map_err(|e| event_unencodable(stats, &e))
            .ok()
    }
}

/// The publisher's payload cannot be written in a subscriber's serializer (a MessagePack
/// map with a boolean key for a JSON or CBOR subscriber): peer input, counted once per
/// serializer and publication (not an encoder failure).
#[cold]
fn payload_unrepresentable(stats: &mut Stats, e: &DecodeError) {
    stats.events_dropped_unencodable += 1;
    let total = stats.events_dropped_unencodable;
    if log_allowed(total) {
        tracing::debug!(error = %e, total, "EVENT payload not representable for a subscriber");
    }
}

/// Count and (rate-limited) log an EVENT that could not be encoded (a bug: the payload was
/// encoded, and a frame too big for a RawSocket peer is refused before it is built).
#[cold]
fn event_unencodable(stats: &mut Stats, e: &DecodeError) {
    stats.encode_failures += 1;
    if log_allowed(stats.encode_failures) {
        tracing::warn!(error = %e, total = stats.encode_failures, "EVENT encoding failed");
    }
}

/// SUBSCRIBE from session `s`: join at once if this shard already has the subscription,
/// else ask its owner (or wait on the request already under way).
pub(crate) fn on_subscribe(
    cx: &mut Out,
    realms: &mut Realms,
    s: &mut Session,
    request: Id,
    options: Dict,
    topic: String,
) -> Result<(), Violation> {
    let opts = SubscribeOptions::parse(&options)?;
    let full = s.subscriptions.len() + s.pending_subscribes >= limits::SESSION_SUBSCRIPTIONS_MAX
        || s.pending_subscribes >= limits::SESSION_PENDING_ROUTE_CHANGES_MAX;
    let realm = realms.get_or_create(&s.realm);
    if !uri::is_valid_for(&topic, opts.policy, realm.config.strict_uri) {
        let msg = format!("invalid topic {:?}", peer_text(&topic));
        cx.error(s.conn, code::SUBSCRIBE, request, uris::INVALID_URI, Some(msg));
        return Ok(());
    }
    if full {
        let msg = "too many subscriptions".to_owned();
        cx.error(s.conn, code::SUBSCRIBE, request, uris::LIMIT_EXCEEDED, Some(msg));
        return Ok(());
    }
    let get_retained = opts.get_retained && opts.policy == MatchPolicy::Exact;
    if let Some(id) = realm.broker.local_id(&topic, opts.policy) {
        let joined = realm.broker.join(id, member_of(s));
        s.subscriptions.insert(id);
        cx.send(s.conn, &Message::Subscribed { request, subscription: id });
        if joined {
            // A repeated SUBSCRIBE gets the same subscription and no event (like Crossbar).
            subscriptions::on_subscribe(cx, realm, s.id, id);
        }
        if get_retained {
            ask_retained(cx, s, Arc::from(topic), id);
        }
        return Ok(());
    }
    let topic: Arc<str> = Arc::from(topic);
    s.pending_subscribes += 1;
    let waiter = Waiter { session: s.id, request, get_retained };
    if realm.broker.pending_wait(&topic, opts.policy, waiter) {
        return Ok(());
    }
    let token = cx.token();
    realm.broker.pending_start(topic.clone(), opts.policy, token, waiter);
    let owner = cx.owner_shard(&s.realm, &topic, opts.policy);
    cx.send_mesh(owner, MeshMsg::Sub(SubMsg::Req { realm: s.realm.clone(), topic, policy: opts.policy, token }));
    Ok(())
}

/// UNSUBSCRIBE from session `s`.
pub(crate) fn on_unsubscribe(cx: &mut Out, realms: &mut Realms, s: &mut Session, request: Id, subscription: Id) {
    if !s.subscriptions.contains(&subscription) {
        cx.error(s.conn, code::UNSUBSCRIBE, request, uris::NO_SUCH_SUBSCRIPTION, None);
        return;
    }
    cx.send(s.conn, &Message::Unsubscribed { request, details: None });
    leave(cx, realms.get_or_create(&s.realm), s, subscription);
}

/// Remove session `s` from `subscription` for the meta API (`remove_subscriber`): an
/// UNSUBSCRIBED revocation (request 0, `{subscription, reason}`) if the subscriber
/// announced `subscription_revocation` (the spec: never to one that did not), then as if it
/// had unsubscribed. False if it is not a member.
pub(crate) fn revoke(cx: &mut Out, realm: &mut Realm, s: &mut Session, subscription: Id, reason: Option<&str>) -> bool {
    if !s.subscriptions.contains(&subscription) {
        return false;
    }
    if s.features.subscription_revocation {
        let details = meta::revocation("subscription", subscription, reason);
        cx.send(s.conn, &Message::Unsubscribed { request: 0, details: Some(details) });
    }
    leave(cx, realm, s, subscription);
    true
}

/// Session `s` leaves `subscription` (its UNSUBSCRIBED already sent): the shard's interest
/// is released if it was the last member here, and `on_unsubscribe` published.
fn leave(cx: &mut Out, realm: &mut Realm, s: &mut Session, subscription: Id) {
    s.subscriptions.remove(&subscription);
    if realm.broker.leave(subscription, s.id) == Leave::LastLeft {
        let release = SubMsg::Release { realm: s.realm.clone(), subscription, session: s.id, left_at: cx.now };
        cx.send_mesh(owner_of(subscription), MeshMsg::Sub(release));
    }
    subscriptions::on_unsubscribe(cx, realm, s.id, subscription);
}

/// The owner confirmed this shard's subscription: every waiting session joins and gets
/// SUBSCRIBED (if all of them left meanwhile, the interest is released again). If the
/// request `created` it, `on_create` goes out with the first member, before its
/// `on_subscribe`.
pub(crate) fn on_subscribe_done(
    cx: &mut Out,
    realms: &mut Realms,
    sessions: &mut Sessions,
    realm: Arc<str>,
    token: u64,
    subscription: Id,
    mut created: Option<SystemTime>,
) {
    let r = realms.get_or_create(&realm);
    let Some((topic, policy, waiters)) = r.broker.pending_finish(token) else { return };
    r.broker.local_create(subscription, topic.clone(), policy);
    for w in waiters {
        let Some(s) = sessions.get_mut(&w.session) else { continue };
        s.pending_subscribes = s.pending_subscribes.saturating_sub(1);
        let joined = r.broker.join(subscription, member_of(s));
        s.subscriptions.insert(subscription);
        cx.send(s.conn, &Message::Subscribed { request: w.request, subscription });
        if w.get_retained {
            ask_retained(cx, s, topic.clone(), subscription);
        }
        if !joined {
            continue;
        }
        if let Some(at) = created.take() {
            subscriptions::on_create(cx, r, w.session, subscription, at, &topic, policy);
        }
        subscriptions::on_subscribe(cx, r, w.session, subscription);
    }
    if r.broker.local_remove_if_empty(subscription) {
        // Nobody saw it created here, so nobody is told it is deleted (session 0).
        cx.send_mesh(
            owner_of(subscription),
            MeshMsg::Sub(SubMsg::Release { realm, subscription, session: 0, left_at: cx.now }),
        );
    }
}

/// The owner refused to create this shard's subscription (the realm's route budget is
/// full): every waiting SUBSCRIBE gets ERROR `shardbar.error.limit_exceeded`.
pub(crate) fn on_subscribe_refused(
    cx: &mut Out,
    realms: &mut Realms,
    sessions: &mut Sessions,
    realm: &str,
    token: u64,
) {
    let Some(r) = realms.get_mut(realm) else { return };
    let Some((topic, _, waiters)) = r.broker.pending_finish(token) else { return };
    for w in waiters {
        let Some(s) = sessions.get_mut(&w.session) else { continue };
        s.pending_subscribes = s.pending_subscribes.saturating_sub(1);
        let msg = format!(
            "topic {} not subscribed: the realm's route memory budget (route_bytes_max) is full",
            peer_text(&topic)
        );
        cx.error(s.conn, code::SUBSCRIBE, w.request, uris::LIMIT_EXCEEDED, Some(msg));
    }
}

/// An ended session leaves every subscription; shards that lose their last member tell
/// the owners.
pub(crate) fn leave_all(cx: &mut Out, realm: &mut Realm, s: &Session) {
    // Hash-map order must not leak into what is sent (simulation seeds replay exactly).
    let mut subs: Vec<Id> = s.subscriptions.iter().copied().collect();
    subs.sort_unstable();
    for sub in subs {
        if realm.broker.leave(sub, s.id) == Leave::LastLeft {
            let release = SubMsg::Release { realm: s.realm.clone(), subscription: sub, session: s.id, left_at: cx.now };
            cx.send_mesh(owner_of(sub), MeshMsg::Sub(release));
        }
        subscriptions::on_unsubscribe(cx, realm, s.id, sub);
    }
}

/// Ask the retained store of `topic` for the newest event session `s` may receive through
/// `subscription` (after its SUBSCRIBED went out, so the EVENT follows it).
fn ask_retained(cx: &mut Out, s: &Session, topic: Arc<str>, subscription: Id) {
    let owner = cx.owner_shard(&s.realm, &topic, MatchPolicy::Exact);
    let subscriber = Identity { session: s.id, authid: s.authid.clone(), authrole: s.authrole.clone() };
    let ask = StoreMsg::GetRetained { realm: s.realm.clone(), topic, subscription, subscriber };
    cx.send_mesh(owner, MeshMsg::Store(ask));
}

/// The retained store's answer: session `s` gets `event` through `subscription` (if it is
/// still subscribed), with a fresh publication ID and `Details.retained`.
pub(crate) fn deliver_retained(cx: &mut Out, realms: &mut Realms, s: &Session, subscription: Id, event: &Publication) {
    if !s.subscriptions.contains(&subscription) {
        return;
    }
    let Some(c) = cx.conns.get(s.conn) else { return };
    let mut details = event_details(event, false);
    details.insert("retained", true);
    let publication = cx.ids.next_global();
    let msg = Message::Event { subscription, publication, details, payload: event.payload.clone() };
    cx.stats.event_payload_encodes += 1;
    let frame = match encode_frame(c.info.framing, &msg) {
        Ok(f) => f,
        Err(e) => {
            cx.stats.events_dropped_unencodable += 1;
            let total = cx.stats.events_dropped_unencodable;
            if log_allowed(total) {
                tracing::debug!(error = %e, total, "retained EVENT payload not representable for a subscriber");
            }
            return;
        }
    };
    let len = frame.len();
    let Some(c) = cx.conns.get_mut(s.conn) else { return };
    match push_frame(c, s.conn, OutFrame::Owned(frame), Class::Event, cx.pending_bytes_max, &mut cx.dirty) {
        Pushed::Queued => {
            cx.stats.events_delivered += 1;
            cx.stats.retained_delivered += 1;
            cx.stats.messages_out[code::EVENT as usize] += 1;
            cx.stats.bytes_out_queued += len as u64;
            if let Some(r) = realms.get_mut(&s.realm) {
                r.stats.events_delivered += 1;
            }
        }
        other => cx.count_unqueued(s.conn, other, len),
    }
}

fn member_of(s: &Session) -> Member {
    Member { session: s.id, conn: s.conn, authid: s.authid.clone(), authrole: s.authrole.clone() }
}

/// `EVENT.Details` for a publication delivered through a subscription.
fn event_details(p: &Publication, pattern: bool) -> Dict {
    let mut d = Dict::new();
    if pattern {
        d.insert("topic", &*p.topic);
    }
    if let Some(who) = &p.disclose {
        d.insert("publisher", who.session);
        d.insert("publisher_authid", &*who.authid);
        d.insert("publisher_authrole", &*who.authrole);
    }
    d
}
