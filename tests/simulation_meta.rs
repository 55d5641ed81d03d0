//! Simulation of the subscription meta API across shards: the lifecycle events keep their
//! order for a listener on any shard, and the subscriber gathers see every shard's members,
//! under every seed's shuffle of the mesh (FIFO only per shard pair).

mod sim;

use std::collections::{BTreeMap, BTreeSet};

use shardbar::proto::wire::{Dict, Id, Message, Value};
use sim::{ClientId, Sim, for_seeds, seeds, serializer_for};

const EVENTS: [&str; 4] = [
    "wamp.subscription.on_create",
    "wamp.subscription.on_subscribe",
    "wamp.subscription.on_unsubscribe",
    "wamp.subscription.on_delete",
];

fn shards_for(seed: u64) -> usize {
    2 + (seed % 3) as usize
}

/// Call a router procedure and wait for its RESULT's first argument (or the ERROR URI).
fn call(s: &mut Sim, c: ClientId, procedure: &str, args: Vec<Value>) -> Result<Value, String> {
    let request = s.call(c, procedure, Dict::new(), args);
    let answer = s.wait_for(
        c,
        |m| matches!(m, Message::Result { request: r, .. } | Message::Error { request: r, .. } if *r == request),
    );
    match answer {
        Message::Result { payload, .. } => {
            Ok(payload.args().expect("result args").into_iter().next().unwrap_or(Value::Null))
        }
        Message::Error { error, .. } => Err(error),
        other => panic!("seed {}: unexpected answer {other:?}", s.seed),
    }
}

#[test]
fn subscription_lifecycle_events_keep_their_order_across_shards() {
    // Goal: for a listener on a random shard, each session's events about a subscription
    // come as [on_create?] on_subscribe on_unsubscribe [on_delete?], every subscription is
    // created and deleted exactly once, and list/count_subscribers (gathered from every
    // shard) match the sessions subscribed.
    // Method: six sessions spread over 2–4 shards subscribe (some twice) to four topics
    // with the mesh only partly run in between, the gathers are checked, then each session
    // unsubscribes or disconnects, again interleaved; the listener's events are checked
    // once the mesh is idle.
    for_seeds("subscription_lifecycle_events", seeds(40), |seed| {
        let n = shards_for(seed);
        let mut s = Sim::new(n, seed);
        let listener_shard = s.rng.below(n);
        let listener = s.join(listener_shard, serializer_for(seed as usize));
        let mut topic_of: BTreeMap<Id, &str> = BTreeMap::new();
        for t in EVENTS {
            let id = s.subscribe_wait(listener, t, Dict::new());
            topic_of.insert(id, t);
        }
        s.run_until_idle();
        s.take_events(listener);

        let clients: Vec<ClientId> = (0..6).map(|i| s.join(i % n, serializer_for(i + seed as usize))).collect();
        let mut wanted: BTreeMap<ClientId, BTreeSet<String>> = BTreeMap::new();
        for _ in 0..3 {
            for &c in &clients {
                let topic = format!("com.sim.t{}", s.rng.below(4));
                s.subscribe(c, &topic, Dict::new());
                wanted.entry(c).or_default().insert(topic);
                let k = s.rng.below(6);
                s.run_some(k);
            }
        }
        s.run_until_idle();
        // Each client's subscription IDs by topic, from its SUBSCRIBEDs.
        let mut members: BTreeMap<Id, BTreeSet<Id>> = BTreeMap::new();
        let mut held: BTreeMap<ClientId, BTreeSet<Id>> = BTreeMap::new();
        for &c in &clients {
            let session = s.session(c);
            for m in std::mem::take(&mut s.clients[c].inbox) {
                if let Message::Subscribed { subscription, .. } = m {
                    members.entry(subscription).or_default().insert(session);
                    held.entry(c).or_default().insert(subscription);
                }
            }
            assert_eq!(held[&c].len(), wanted[&c].len(), "seed {seed}: one subscription per topic");
        }

        // The gathers: every shard's members, from a client on any shard.
        for (&sub, sessions) in &members {
            let asker = clients[s.rng.below(clients.len())];
            let count = call(&mut s, asker, "wamp.subscription.count_subscribers", vec![Value::from(sub)]);
            assert_eq!(count, Ok(Value::from(sessions.len() as u64)), "seed {seed}");
            let list = call(&mut s, asker, "wamp.subscription.list_subscribers", vec![Value::from(sub)]);
            let want: Vec<Value> = sessions.iter().map(|&id| Value::from(id)).collect();
            assert_eq!(list, Ok(Value::List(want)), "seed {seed}");
            let got = call(&mut s, asker, "wamp.subscription.get", vec![Value::from(sub)]).expect("get");
            let uri = got.as_dict().and_then(|d| d.get("uri")).and_then(Value::as_str).unwrap_or_default();
            assert!(uri.starts_with("com.sim.t"), "seed {seed}: {got:?}");
        }

        // Everyone leaves: unsubscribe (interleaved) or disconnect.
        for &c in &clients {
            if s.rng.below(3) == 0 {
                s.disconnect(c);
            } else {
                for &sub in &held[&c] {
                    let request = s.next_request(c);
                    s.send(c, &Message::Unsubscribe { request, subscription: sub });
                    let k = s.rng.below(4);
                    s.run_some(k);
                }
            }
        }
        s.run_until_idle();

        // The listener's view, per (session, subscription) and per subscription.
        let mut seq: BTreeMap<(Id, Id), Vec<&str>> = BTreeMap::new();
        let mut per_sub: BTreeMap<Id, Vec<&str>> = BTreeMap::new();
        for (via, _, args) in s.take_events(listener) {
            let name = topic_of[&via].rsplit('.').next().unwrap_or_default();
            let session = args[0].as_u64().expect("session");
            let sub = match &args[1] {
                Value::Dict(d) => d.get("id").and_then(Value::as_u64).expect("id"),
                v => v.as_u64().expect("subscription"),
            };
            if !members.contains_key(&sub) {
                continue; // the listener's own subscriptions
            }
            seq.entry((session, sub)).or_default().push(name);
            per_sub.entry(sub).or_default().push(name);
        }
        for (&sub, sessions) in &members {
            for &session in sessions {
                let got = seq.get(&(session, sub)).cloned().unwrap_or_default();
                let core: Vec<&str> = got.iter().copied().filter(|e| *e != "on_create" && *e != "on_delete").collect();
                assert_eq!(core, ["on_subscribe", "on_unsubscribe"], "seed {seed}: {got:?}");
                if let Some(i) = got.iter().position(|e| *e == "on_create") {
                    assert_eq!(i, 0, "seed {seed}: on_create after on_subscribe: {got:?}");
                }
                if let Some(i) = got.iter().position(|e| *e == "on_delete") {
                    assert_eq!(i, got.len() - 1, "seed {seed}: on_delete before on_unsubscribe: {got:?}");
                }
            }
            let all = &per_sub[&sub];
            assert_eq!(all.iter().filter(|e| **e == "on_create").count(), 1, "seed {seed}: {all:?}");
            assert_eq!(all.iter().filter(|e| **e == "on_delete").count(), 1, "seed {seed}: {all:?}");
        }
    });
}

#[test]
fn get_events_larger_than_the_caller_accepts_is_refused_before_it_is_built() {
    // Goal: `wamp.subscription.get_events` answers what fits the caller's message limit,
    // and a selection far over it is an ERROR wamp.error.payload_size_exceeded that says to
    // ask for fewer (decided from the stored sizes on the history's owner shard, before
    // the answer is built), while the session goes on.
    // Method: 20 kept events of ~1 kB; callers on random shards accepting 64 KiB and 4 KiB
    // messages ask for all 20, and for 2.
    use shardbar::proto::realm::{HistoryEntry, RealmConfig};
    use shardbar::proto::wire::uri::MatchPolicy;
    for_seeds("get_events_byte_bound", seeds(12), |seed| {
        let n = shards_for(seed);
        let mut realm = RealmConfig::new("realm1");
        realm.history = vec![HistoryEntry { uri: "hist.t".into(), policy: MatchPolicy::Exact, limit: 100 }];
        let config = shardbar::proto::realm::RouterConfig { realms: vec![realm], ..Default::default() };
        let mut s = Sim::with_config(n, seed, config);
        let ser = serializer_for(seed as usize);
        let shard = s.rng.below(n);
        let publisher = s.join(shard, ser);
        for i in 0..20u64 {
            s.publish(publisher, "hist.t", Dict::new(), vec![Value::from(i), Value::Str("x".repeat(1000))]);
        }
        s.run_until_idle();
        let caller = |s: &mut Sim, max| {
            let shard = s.rng.below(n);
            let c = s.connect_limited(shard, ser, shardbar::proto::frame::Transport::RawSocket, max);
            s.hello(c);
            let sub = s.subscribe_wait(c, "hist.t", Dict::new());
            (c, sub)
        };
        let count = |v: Value| v.as_list().map(<[Value]>::len);
        let (big, sub) = caller(&mut s, 64 * 1024);
        assert_eq!(
            call(&mut s, big, "wamp.subscription.get_events", vec![sub.into(), 20u64.into()]).map(count),
            Ok(Some(20))
        );
        let (small, sub) = caller(&mut s, 4 * 1024);
        let request = s.call(small, "wamp.subscription.get_events", Dict::new(), vec![sub.into(), 20u64.into()]);
        let answer = s.wait_for(
            small,
            |m| matches!(m, Message::Result { request: r, .. } | Message::Error { request: r, .. } if *r == request),
        );
        let Message::Error { error, payload, .. } = answer else {
            panic!("seed {seed}: expected ERROR, got {answer:?}")
        };
        assert_eq!(error, "wamp.error.payload_size_exceeded");
        let text = payload.args().ok().and_then(|a| a.first().and_then(|v| v.as_str().map(str::to_owned)));
        assert!(text.as_deref().is_some_and(|t| t.contains("ask for fewer")), "seed {seed}: {text:?}");
        assert_eq!(
            call(&mut s, small, "wamp.subscription.get_events", vec![sub.into(), 2u64.into()]).map(count),
            Ok(Some(2))
        );
    });
}
