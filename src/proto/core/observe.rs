//! Observability: this shard's snapshot, and the scatter-gather of every shard's snapshot
//! for one `/metrics` scrape.

use std::time::Instant;

use super::super::mesh::{MeshMsg, StatsMsg};
use super::super::out::CoreEvent;
use super::super::realm::Realm;
use super::super::stats::{RealmSnapshot, Snapshot, render_prometheus};
use super::ShardCore;

impl ShardCore {
    /// This shard's counters and gauges.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            shard: self.cx.shard,
            stats: self.cx.stats.clone(),
            realms: Vec::with_capacity(self.realms.len()),
            connections: Default::default(),
            pending_out_bytes: 0,
            mesh_outbox: (self.cx.mesh.len() + self.cx.mesh.backlog) as u64,
            auth: self.logins.counts.clone(),
            auth_pending: self.logins.pending() as u64,
            authz_cached: self.authorizer.cached,
            authz_pending: self.authorizer.parked_len() as u64,
        };
        for c in self.cx.conns.iter() {
            snap.connections[c.info.framing.index()] += 1;
            snap.pending_out_bytes += c.out.bytes() as u64;
        }
        let mut realms: Vec<&Realm> = self.realms.values().collect();
        realms.sort_by(|a, b| a.name.cmp(&b.name));
        for r in realms {
            snap.realms.push(RealmSnapshot {
                name: r.name.to_string(),
                stats: r.stats.clone(),
                sessions: r.sessions as u64,
                subscriptions: r.broker.route_count() as u64,
                registrations: r.dealer.route_count() as u64,
                route_bytes: r.route_bytes,
            });
        }
        snap
    }

    /// This shard's part of `/metrics`, rendered alone (for tests that drive cores directly;
    /// the runtime renders all shards' snapshots together).
    pub fn render_metrics(&self) -> String {
        render_prometheus(&[self.snapshot()])
    }

    /// Start gathering every shard's snapshot; poll [`ShardCore::take_stats`] with the token.
    /// At most a handful are in flight (one per scrape), so the map stays tiny.
    pub(crate) fn request_stats(&mut self, now: Instant) -> u64 {
        self.cx.now = now;
        let token = self.cx.token();
        self.stats_requests.insert(token, vec![self.snapshot()]);
        let me = self.cx.shard;
        for shard in (0..self.cx.shards).filter(|&s| s != me) {
            self.cx.send_mesh(shard, MeshMsg::Stats(StatsMsg::Request { token }));
        }
        if self.cx.shards == 1 {
            self.cx.events.push_back(CoreEvent::StatsReady { token });
        }
        self.settle();
        token
    }

    /// Every shard's snapshot, once all have answered (sorted by shard).
    pub(crate) fn take_stats(&mut self, token: u64) -> Option<Vec<Snapshot>> {
        if self.stats_requests.get(&token)?.len() < self.cx.shards {
            return None;
        }
        let mut list = self.stats_requests.remove(&token)?;
        list.sort_by_key(|s| s.shard);
        Some(list)
    }

    /// Give up on a stats request (the scrape timed out).
    pub(crate) fn cancel_stats(&mut self, token: u64) {
        self.stats_requests.remove(&token);
    }
}
