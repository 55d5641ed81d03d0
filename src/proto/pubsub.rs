//! Publish & subscribe on one shard: PUBLISH (resolve routes in the replica, deliver
//! locally, hand the rest to the mesh), the local fan-out of a delivery, and the
//! subscriber side of SUBSCRIBE/UNSUBSCRIBE. The owner side (IDs, barriers) is `control`.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::broker::{Leave, Member, PublishOptions, SubscribeOptions};
use super::frame::{Framing, OutFrame, encode_frame};
use super::mesh::{Identity, MeshMsg, Publication, ShardSet, SubMsg, SubTarget};
use super::out::{Class, Out, Pushed, log_allowed, push_frame};
use super::realm::{Realm, Realms};
use super::session::{Session, Sessions};
use super::uris;
use super::violation::Violation;
use super::wire::ids::owner_of;
use super::wire::message::Serializer;
use super::wire::message::code;
use super::wire::peer_text;
use super::wire::uri;
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
    fan_out(cx, realm, publication);
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

/// Fan a publication out to this shard's members of `targets`: one EVENT encoding per
/// (subscription, serializer, transport), one payload transcoding per serializer.
pub(crate) fn deliver_local(cx: &mut Out, realm: &mut Realm, p: &Publication, targets: &[SubTarget]) {
    cx.stats.routing_latency.observe(cx.now.saturating_duration_since(p.read_at));
    let mut delivered = 0u64;
    let mut bytes = 0u64;
    let mut payloads: [Option<Payload>; 3] = Default::default();
    for t in targets {
        let Some(local) = realm.broker.local(t.subscription) else { continue };
        // Per framing: not encoded yet (None), encoded, or failed (Some(None): counted
        // and logged once, not retried for every member).
        let mut frames: [Option<Option<Rc<Bytes>>>; Framing::COUNT] = Default::default();
        let mut details: Option<Dict> = None;
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
                *slot = Some(match encode_event(p, t, framing, &mut payloads, &mut details) {
                    Ok(f) => Some(Rc::new(f)),
                    Err(e) => {
                        cx.stats.encode_failures += 1;
                        if log_allowed(cx.stats.encode_failures) {
                            tracing::warn!(error = %e, total = cx.stats.encode_failures, "EVENT encoding failed");
                        }
                        None
                    }
                });
            }
            let Some(Some(frame)) = slot.clone() else { continue };
            let len = frame.len();
            let frame = OutFrame::Shared(frame);
            match push_frame(c, m.conn, frame, Class::Event, cx.pending_bytes_max, &mut cx.dirty) {
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
    if let Some(id) = realm.broker.local_id(&topic, opts.policy) {
        realm.broker.join(id, member_of(s));
        s.subscriptions.insert(id);
        cx.send(s.conn, &Message::Subscribed { request, subscription: id });
        return Ok(());
    }
    let topic: Arc<str> = Arc::from(topic);
    s.pending_subscribes += 1;
    if realm.broker.pending_wait(&topic, opts.policy, (s.id, request)) {
        return Ok(());
    }
    let token = cx.token();
    realm.broker.pending_start(topic.clone(), opts.policy, token, (s.id, request));
    let owner = cx.owner_shard(&s.realm, &topic, opts.policy);
    cx.send_mesh(owner, MeshMsg::Sub(SubMsg::Req { realm: s.realm.clone(), topic, policy: opts.policy, token }));
    Ok(())
}

/// UNSUBSCRIBE from session `s`.
pub(crate) fn on_unsubscribe(cx: &mut Out, realms: &mut Realms, s: &mut Session, request: Id, subscription: Id) {
    if !s.subscriptions.remove(&subscription) {
        cx.error(s.conn, code::UNSUBSCRIBE, request, uris::NO_SUCH_SUBSCRIPTION, None);
        return;
    }
    if realms.get_or_create(&s.realm).broker.leave(subscription, s.id) == Leave::LastLeft {
        let realm = s.realm.clone();
        cx.send_mesh(owner_of(subscription), MeshMsg::Sub(SubMsg::Release { realm, subscription }));
    }
    cx.send(s.conn, &Message::Unsubscribed { request, details: None });
}

/// The owner confirmed this shard's subscription: every waiting session joins and gets
/// SUBSCRIBED (if all of them left meanwhile, the interest is released again).
pub(crate) fn on_subscribe_done(
    cx: &mut Out,
    realms: &mut Realms,
    sessions: &mut Sessions,
    realm: Arc<str>,
    token: u64,
    subscription: Id,
) {
    let r = realms.get_or_create(&realm);
    let Some((topic, policy, waiters)) = r.broker.pending_finish(token) else { return };
    r.broker.local_create(subscription, topic, policy);
    for (sid, request) in waiters {
        let Some(s) = sessions.get_mut(&sid) else { continue };
        s.pending_subscribes = s.pending_subscribes.saturating_sub(1);
        r.broker.join(subscription, member_of(s));
        s.subscriptions.insert(subscription);
        cx.send(s.conn, &Message::Subscribed { request, subscription });
    }
    if r.broker.local_remove_if_empty(subscription) {
        cx.send_mesh(owner_of(subscription), MeshMsg::Sub(SubMsg::Release { realm, subscription }));
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
            let release = SubMsg::Release { realm: s.realm.clone(), subscription: sub };
            cx.send_mesh(owner_of(sub), MeshMsg::Sub(release));
        }
    }
}

fn member_of(s: &Session) -> Member {
    Member { session: s.id, conn: s.conn, authid: s.authid.clone(), authrole: s.authrole.clone() }
}

/// Encode the EVENT of publication `p` through subscription `t` for `framing`: the payload
/// is transcoded at most once per serializer (cached in `payloads`) and the details built
/// once per subscription (cached in `details`).
fn encode_event(
    p: &Publication,
    t: &SubTarget,
    framing: Framing,
    payloads: &mut [Option<Payload>; 3],
    details: &mut Option<Dict>,
) -> Result<Bytes, DecodeError> {
    let ser = framing.serializer as usize - 1;
    if payloads[ser].is_none() {
        payloads[ser] = Some(p.payload.transcode(framing.serializer)?);
    }
    let details = details.get_or_insert_with(|| event_details(p, t.pattern)).clone();
    let payload = payloads[ser].clone().unwrap_or_default();
    encode_frame(framing, &Message::Event { subscription: t.subscription, publication: p.id, details, payload })
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
