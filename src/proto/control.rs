//! The owner side of subscriptions and registrations, and the barriers that make
//! SUBSCRIBED/REGISTERED safe: the owner of (realm, URI, match) assigns the ID, keeps the
//! authoritative shard set / callee list, pushes every change to all replicas, and for an
//! addition answers the requesting shard only once every other shard acknowledged.
//!
//! The owner also keeps the realm's route budget (`limits::REALM_ROUTE_BYTES_MAX`): a
//! request that would create a route is charged [`route_cost_bytes`] against this shard's
//! share of the budget, or refused when it does not fit; the route's deletion gives the
//! charge back. Joining an existing route costs nothing.

use std::sync::Arc;
use std::time::SystemTime;

use super::broker::OwnedSub;
use super::dealer::{OwnedReg, OwnedRegView, RegisterRefused};
use super::mesh::{BarrierId, Callee, InvokePolicy, MeshMsg, RegMsg, ShardId, SubMsg};
use super::out::{Out, log_allowed};
use super::realm::{Realm, Realms};
use super::wire::{Id, peer_text};
use crate::limits;
use crate::proto::Map;

/// What happens when a barrier completes.
#[derive(Debug)]
enum BarrierDone {
    Subscribe { to: ShardId, realm: Arc<str>, token: u64, subscription: Id, created: Option<SystemTime> },
    Register { to: ShardId, realm: Arc<str>, token: u64, registration: Id, created: Option<(SystemTime, InvokePolicy)> },
}

#[derive(Debug)]
struct Barrier {
    remaining: usize,
    done: BarrierDone,
}

/// Barriers in progress on this shard (as an owner).
#[derive(Debug, Default)]
pub(crate) struct Control {
    barriers: Map<BarrierId, Barrier>,
    next_barrier: BarrierId,
}

impl Control {
    /// Subscription control messages for the owner or a replica. (`SubMsg::Done` is the
    /// requester's: `pubsub::on_subscribe_done`.)
    pub fn on_sub(&mut self, cx: &mut Out, realms: &mut Realms, from: ShardId, msg: SubMsg) {
        match msg {
            SubMsg::Req { realm, topic, policy, token } => {
                let owner = cx.shard;
                let r = realms.get_or_create(&realm);
                if !r.broker.owns(&topic, policy) && !charge_route(cx, r, &topic) {
                    cx.send_mesh(from, MeshMsg::Sub(SubMsg::Refused { realm, token }));
                    return;
                }
                let (sub, changed) = r.broker.owner_add(owner, &topic, policy, from, cx.now);
                let created = sub.is_new(changed).then(|| cx.wall(sub.created));
                let sub = sub.clone();
                let done =
                    BarrierDone::Subscribe { to: from, realm: realm.clone(), token, subscription: sub.id, created };
                self.broadcast_barrier(cx, realms, done, |barrier| sub_route(&realm, &sub, barrier));
            }
            SubMsg::Release { realm, subscription, session, left_at } => {
                let r = realms.get_or_create(&realm);
                let meta_api = r.config.meta_api;
                if let Some(sub) = r.broker.owner_release(subscription, from, (left_at, session)) {
                    if sub.shards == 0 {
                        release_route(cx, r, &sub.topic);
                    }
                    broadcast(cx, realms, || sub_route(&realm, &sub, None));
                    if sub.shards == 0
                        && meta_api
                        && let Some((_, shard, session)) = sub.last_leave
                    {
                        cx.send_mesh(shard, MeshMsg::Sub(SubMsg::Deleted { realm, subscription, session }));
                    }
                }
            }
            SubMsg::Route { barrier, .. } => {
                let msg = MeshMsg::Sub(msg);
                apply_route(realms, &msg);
                if let Some(barrier) = barrier {
                    cx.send_mesh(from, MeshMsg::BarrierAck { barrier });
                }
            }
            SubMsg::Done { .. } | SubMsg::Refused { .. } | SubMsg::Deleted { .. } => {
                debug_assert!(false, "requester messages go to pubsub")
            }
        }
    }

    /// Registration control messages for the owner or a replica. (`RegMsg::Done` and
    /// `RegMsg::UnregDone` are the requester's: `rpc::on_register_done`/`on_unregister_done`.)
    pub fn on_reg(&mut self, cx: &mut Out, realms: &mut Realms, from: ShardId, msg: RegMsg) {
        match msg {
            RegMsg::Req { realm, procedure, policy, invoke, disclose_caller, callee, token } => {
                let owner = cx.shard;
                let callee = Callee { shard: from, session: callee };
                let r = realms.get_or_create(&realm);
                let new = !r.dealer.owns(&procedure, policy);
                let result = if new && !charge_route(cx, r, &procedure) {
                    Err(RegisterRefused::RouteBudget)
                } else {
                    r.dealer.owner_register(owner, &procedure, policy, invoke, disclose_caller, callee, cx.now)
                };
                match result {
                    Err(refused) => {
                        // (A new registration is never refused past the budget; if it were,
                        // its charge goes back.)
                        if new && refused != RegisterRefused::RouteBudget {
                            release_route(cx, r, &procedure);
                        }
                        let done = RegMsg::Done { realm, token, result: Err(refused), created: None };
                        cx.send_mesh(from, MeshMsg::Reg(done));
                    }
                    Ok(reg) => {
                        // Its first callee: this request created it.
                        let created = (reg.callees.len() == 1).then(|| (cx.wall(reg.created), reg.invoke));
                        let reg = reg.clone();
                        let callees = Arc::new(reg.callees.clone());
                        let registration = reg.id;
                        let done =
                            BarrierDone::Register { to: from, realm: realm.clone(), token, registration, created };
                        self.broadcast_barrier(cx, realms, done, |barrier| reg_route(&realm, &reg, &callees, barrier));
                    }
                }
            }
            RegMsg::UnregReq { realm, registration, callee, token } => {
                let r = realms.get_or_create(&realm);
                let result = r.dealer.owner_unregister(registration, callee);
                let deleted = result.as_ref().is_some_and(|reg| reg.callees.is_empty());
                if let Some(reg) = result.as_ref().filter(|_| deleted) {
                    release_route(cx, r, &reg.procedure);
                }
                cx.send_mesh(from, MeshMsg::Reg(RegMsg::UnregDone { token, deleted }));
                if let Some(reg) = result {
                    let callees = Arc::new(reg.callees.clone());
                    broadcast(cx, realms, || reg_route(&realm, &reg, &callees, None));
                }
            }
            RegMsg::Route { barrier, .. } => {
                let msg = MeshMsg::Reg(msg);
                apply_route(realms, &msg);
                if let Some(barrier) = barrier {
                    cx.send_mesh(from, MeshMsg::BarrierAck { barrier });
                }
            }
            RegMsg::Done { .. } | RegMsg::UnregDone { .. } => debug_assert!(false, "requester messages go to rpc"),
        }
    }

    /// A replica acknowledged barrier `barrier`; the last ack completes it.
    pub fn on_barrier_ack(&mut self, cx: &mut Out, barrier: BarrierId) {
        let done = match self.barriers.get_mut(&barrier) {
            Some(b) if b.remaining > 1 => {
                b.remaining -= 1;
                None
            }
            Some(_) => self.barriers.remove(&barrier).map(|b| b.done),
            None => None,
        };
        if let Some(done) = done {
            finish_barrier(cx, done);
        }
    }

    /// Send a route update to every other shard with a barrier, apply it here, and run
    /// `done` once every other shard acknowledged.
    fn broadcast_barrier(
        &mut self,
        cx: &mut Out,
        realms: &mut Realms,
        done: BarrierDone,
        make: impl Fn(Option<BarrierId>) -> MeshMsg,
    ) {
        self.next_barrier += 1;
        let id = self.next_barrier;
        let me = cx.shard;
        for shard in (0..cx.shards).filter(|&s| s != me) {
            cx.send_mesh(shard, make(Some(id)));
        }
        // Apply locally now (no ack needed from ourselves).
        apply_route(realms, &make(None));
        if cx.shards == 1 {
            finish_barrier(cx, done);
        } else {
            self.barriers.insert(id, Barrier { remaining: cx.shards - 1, done });
        }
    }
}

/// What one route costs the process, for the realm's route budget: its URI bytes plus
/// `limits::ROUTE_OVERHEAD_BYTES`, in each of the `shards` replicas.
pub(crate) fn route_cost_bytes(uri: &str, shards: usize) -> u64 {
    (uri.len() as u64 + limits::ROUTE_OVERHEAD_BYTES) * shards as u64
}

/// Charge `realm`'s route budget on this owner shard for a new route on `uri`: false
/// (counted, and logged rate-limited) when it does not fit in this shard's share,
/// `route_bytes_max / shards`, so the shards' charges together never exceed the budget.
fn charge_route(cx: &Out, realm: &mut Realm, uri: &str) -> bool {
    let cost = route_cost_bytes(uri, cx.shards);
    let share = realm.config.route_bytes_max / cx.shards as u64;
    if realm.route_bytes + cost <= share {
        realm.route_bytes += cost;
        return true;
    }
    realm.stats.route_budget_refused += 1;
    let total = realm.stats.route_budget_refused;
    if log_allowed(total) {
        tracing::warn!(
            realm = %realm.name,
            uri = %peer_text(uri),
            charged = realm.route_bytes,
            cost,
            share,
            total,
            "route budget full (route_bytes_max): SUBSCRIBE/REGISTER refused"
        );
    }
    false
}

/// Give back the charge of a deleted route on `uri`.
fn release_route(cx: &Out, realm: &mut Realm, uri: &str) {
    let cost = route_cost_bytes(uri, cx.shards);
    debug_assert!(realm.route_bytes >= cost, "route budget released more than it was charged");
    realm.route_bytes = realm.route_bytes.saturating_sub(cost);
}

/// Send a route update to every other shard without waiting, and apply it here.
fn broadcast(cx: &mut Out, realms: &mut Realms, make: impl Fn() -> MeshMsg) {
    let me = cx.shard;
    for shard in (0..cx.shards).filter(|&s| s != me) {
        cx.send_mesh(shard, make());
    }
    apply_route(realms, &make());
}

/// Apply an owner's route update to this shard's replica.
fn apply_route(realms: &mut Realms, msg: &MeshMsg) {
    match msg {
        MeshMsg::Sub(SubMsg::Route { realm, subscription, topic, policy, shards, .. }) => {
            realms.get_or_create(realm).broker.set_route(topic, *policy, *subscription, *shards);
        }
        MeshMsg::Reg(RegMsg::Route {
            realm,
            registration,
            procedure,
            policy,
            invoke,
            disclose_caller,
            callees,
            ..
        }) => {
            let view = OwnedRegView {
                id: *registration,
                procedure,
                policy: *policy,
                invoke: *invoke,
                disclose_caller: *disclose_caller,
                callees,
            };
            realms.get_or_create(realm).dealer.set_route(&view);
        }
        _ => debug_assert!(false, "not a route update"),
    }
}

/// The owner's route update for a subscription.
fn sub_route(realm: &Arc<str>, sub: &OwnedSub, barrier: Option<BarrierId>) -> MeshMsg {
    MeshMsg::Sub(SubMsg::Route {
        realm: realm.clone(),
        subscription: sub.id,
        topic: sub.topic.clone(),
        policy: sub.policy,
        shards: sub.shards,
        barrier,
    })
}

/// The owner's route update for a registration (`callees` shared by every copy).
fn reg_route(realm: &Arc<str>, reg: &OwnedReg, callees: &Arc<Vec<Callee>>, barrier: Option<BarrierId>) -> MeshMsg {
    MeshMsg::Reg(RegMsg::Route {
        realm: realm.clone(),
        registration: reg.id,
        procedure: reg.procedure.clone(),
        policy: reg.policy,
        invoke: reg.invoke,
        disclose_caller: reg.disclose_caller,
        callees: callees.clone(),
        barrier,
    })
}

fn finish_barrier(cx: &mut Out, done: BarrierDone) {
    match done {
        BarrierDone::Subscribe { to, realm, token, subscription, created } => {
            cx.send_mesh(to, MeshMsg::Sub(SubMsg::Done { realm, token, subscription, created }))
        }
        BarrierDone::Register { to, realm, token, registration, created } => {
            cx.send_mesh(to, MeshMsg::Reg(RegMsg::Done { realm, token, result: Ok(registration), created }))
        }
    }
}
