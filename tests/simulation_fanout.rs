//! Deterministic simulation of what one publication costs to encode (see `tests/sim/mod.rs`):
//! EVENT payloads are encoded once per serializer on each shard, however many overlapping
//! subscriptions match, and not at all for subscribers already over their pending-bytes cap.
//! Replay a failure with `SIM_SEED=<n> cargo test --test simulation_fanout`.

mod sim;

use shardbar::proto::frame::Transport;
use shardbar::proto::realm::{RealmConfig, RouterConfig, SlowConsumerPolicy};
use shardbar::proto::wire::{Dict, Message, Payload, Serializer, Value};
use sim::{ClientId, Sim, for_seeds, seeds, serializer_for};

fn shards_for(seed: u64) -> usize {
    [1, 2, 4][(seed % 3) as usize]
}

/// Payload encodes so far, all shards.
fn encodes(s: &Sim) -> u64 {
    s.cores.iter().map(|c| c.stats().event_payload_encodes).sum()
}

/// `t.a`, `t.aa`, … (`depth` prefixes of `t.` followed by `depth` a's).
fn prefixes(depth: usize) -> Vec<String> {
    (1..=depth).map(|i| format!("t.{}", "a".repeat(i))).collect()
}

/// PUBLISH `args` and `kwargs` to `topic` from `c`.
fn publish_kw(s: &mut Sim, c: ClientId, topic: &str, args: Vec<Value>, kwargs: Dict) {
    let request = s.next_request(c);
    let payload = Payload::from_values(s.clients[c].ser, Some(&args), Some(&kwargs));
    s.send(c, &Message::Publish { request, options: Dict::new(), topic: topic.into(), payload });
}

/// Goal: a publication matching many overlapping prefix subscriptions encodes its payload
/// once per serializer on each shard (not once per subscription), and every subscription
/// still gets its own, correct EVENT over either transport. Method: subscribers with random
/// serializers, transports and shards each hold 24 prefix subscriptions and one exact
/// subscription that all match one topic; one PUBLISH with args and kwargs; count the
/// EVENTs, check their subscription IDs, `Details.topic` and payload, and compare the
/// payload-encode counter with the number of (shard, serializer) pairs that have
/// subscribers.
#[test]
fn overlapping_prefixes_encode_the_payload_once_per_serializer() {
    const DEPTH: usize = 24;
    for_seeds("overlapping_prefixes_encode_the_payload_once_per_serializer", seeds(40), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let topic = format!("t.{}", "a".repeat(DEPTH));
        let mut subscribers = Vec::new();
        for i in 0..4 {
            let shard = s.rng.below(s.shards());
            let transport = if s.rng.below(2) == 0 { Transport::RawSocket } else { Transport::WebSocket };
            let ser = serializer_for(i + s.rng.below(3));
            let c = s.join_over(shard, ser, transport);
            let mut subs = Vec::new();
            for p in prefixes(DEPTH) {
                subs.push(s.subscribe_wait(c, &p, Dict::new().with("match", "prefix")));
            }
            subs.push(s.subscribe_wait(c, &topic, Dict::new()));
            subscribers.push((c, subs));
        }
        let (shard, ser) = (s.rng.below(s.shards()), serializer_for(s.rng.below(3)));
        let publisher = s.join(shard, ser);
        s.run_until_idle();
        let mut pairs: Vec<(usize, Serializer)> =
            subscribers.iter().map(|(c, _)| (s.clients[*c].shard, s.clients[*c].ser)).collect();
        pairs.sort();
        pairs.dedup();

        let before = encodes(&s);
        let text = "x".repeat(3000);
        publish_kw(
            &mut s,
            publisher,
            &topic,
            vec![Value::str(&text), Value::UInt(7)],
            Dict::new().with("k", Value::Int(-3)),
        );
        s.run_until_idle();
        assert_eq!(
            encodes(&s) - before,
            pairs.len() as u64,
            "one payload encode per (shard, serializer) with subscribers: {pairs:?}"
        );
        for (c, subs) in &subscribers {
            let mut got = Vec::new();
            let inbox: Vec<Message> = s.clients[*c].inbox.drain(..).collect();
            for m in inbox {
                let Message::Event { subscription, details, payload, .. } = m else { continue };
                assert_eq!(payload.args().expect("args"), vec![Value::str(&text), Value::UInt(7)]);
                assert_eq!(payload.kwargs().expect("kwargs").get("k"), Some(&Value::Int(-3)));
                let exact = subscription == *subs.last().expect("exact subscription");
                let shown = details.get("topic").and_then(Value::as_str);
                assert_eq!(
                    shown,
                    if exact { None } else { Some(topic.as_str()) },
                    "Details.topic on pattern EVENTs only"
                );
                got.push(subscription);
            }
            got.sort_unstable();
            let mut want = subs.clone();
            want.sort_unstable();
            assert_eq!(got, want, "one EVENT per matching subscription");
        }
    });
}

/// Goal: a subscriber already over its pending-bytes cap costs no encoding: nothing is built
/// for its subscriptions, and the refusals are still counted. Method: a realm with the drop
/// policy and a 64 KiB cap; a subscriber that stops reading holds 16 overlapping prefix
/// subscriptions; a 40 KiB publication fills its queue with one EVENT (the rest are
/// dropped), and a second one finds it full. Same serializer as the publisher: the second
/// publication encodes nothing; another serializer: only its one transcoding.
#[test]
fn subscribers_over_their_cap_cost_no_encoding() {
    const DEPTH: usize = 16;
    for_seeds("subscribers_over_their_cap_cost_no_encoding", seeds(12), |seed| {
        let realm = RealmConfig { slow_consumer: SlowConsumerPolicy::Drop, ..RealmConfig::new("realm1") };
        let config = RouterConfig { realms: vec![realm], pending_bytes_max: 64 * 1024, ..RouterConfig::default() };
        let mut s = Sim::with_config(shards_for(seed), seed, config);
        let topic = format!("t.{}", "a".repeat(DEPTH));
        let shard = s.rng.below(s.shards());
        let publisher = s.join(shard, Serializer::MsgPack);
        let ser = serializer_for(seed as usize);
        let transport = if seed % 2 == 0 { Transport::RawSocket } else { Transport::WebSocket };
        let shard = s.rng.below(s.shards());
        let stalled = s.join_over(shard, ser, transport);
        for p in prefixes(DEPTH) {
            s.subscribe_wait(stalled, &p, Dict::new().with("match", "prefix"));
        }
        s.run_until_idle();
        s.clients[stalled].stalled = true;
        let shard = s.clients[stalled].shard;
        let dropped = |s: &Sim| s.cores[shard].stats().events_dropped_slow;

        let big = "y".repeat(40 * 1024);
        let before = encodes(&s);
        s.publish(publisher, &topic, Dict::new(), vec![Value::str(&big)]);
        s.run_until_idle();
        assert_eq!(encodes(&s) - before, 1, "the first publication is encoded once");
        assert_eq!(dropped(&s), DEPTH as u64 - 1, "one EVENT fits the cap, the others are dropped");

        let before = encodes(&s);
        s.publish(publisher, &topic, Dict::new(), vec![Value::str(&big)]);
        s.run_until_idle();
        let spent = encodes(&s) - before;
        // Another serializer's tail length is known once it is transcoded: that one encode,
        // then nothing per subscription.
        assert_eq!(spent, u64::from(ser != Serializer::MsgPack), "nothing is encoded for a full subscriber");
        assert_eq!(dropped(&s), 2 * DEPTH as u64 - 1, "every refusal is counted");
        let c = &s.clients[stalled];
        let queued = s.cores[shard].out_queue(c.conn).map_or(0, |q| q.bytes());
        assert!((40 * 1024..64 * 1024).contains(&queued), "one EVENT stays queued: {queued} bytes");
    });
}
