//! Deterministic multi-shard simulation of the router core (see `tests/sim/mod.rs`).
//!
//! Each test states its goal and runs over many seeds; shard counts 1, 2 and 4 rotate with
//! the seed, and clients sit on random shards with random serializers. A failure names the
//! seed; replay it with `SIM_SEED=<n> cargo test --test simulation <name>`.

mod sim;

use std::time::Duration;

use shardbar::proto::frame::Transport;
use shardbar::proto::realm::RouterConfig;
use shardbar::proto::wire::{Dict, Id, Message, Serializer, Value};
use sim::{ClientId, Sim, for_seeds, seeds, serializer_for};

const SEEDS: u64 = 1000;

fn shards_for(seed: u64) -> usize {
    [1, 2, 4][(seed % 3) as usize]
}

/// A client on a random shard with a random serializer, joined to realm1.
fn random_client(s: &mut Sim) -> ClientId {
    let shard = s.rng.below(s.shards());
    let ser = serializer_for(s.rng.below(3));
    s.join(shard, ser)
}

fn uint(v: &Value) -> u64 {
    v.as_u64().expect("uint")
}

/// Goal: per (publisher, subscriber) pair, events arrive in publish order across topics,
/// with none lost. Method: 2 publishers publish 40 events each to random topics among four
/// (with random mesh progress between publishes) to 3 subscribers on random shards that
/// subscribed to all four topics (exactly) and to their prefix; check each subscription's
/// sequence per publisher is exactly 0..40.
#[test]
fn publisher_order_holds_across_topics() {
    for_seeds("publisher_order_holds_across_topics", seeds(SEEDS), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let subs: Vec<ClientId> = (0..3).map(|_| random_client(&mut s)).collect();
        let pubs: Vec<ClientId> = (0..2).map(|_| random_client(&mut s)).collect();
        for &c in &subs {
            for t in 0..4 {
                s.subscribe_wait(c, &format!("sim.topic{t}"), Dict::new());
            }
            s.subscribe_wait(c, "sim.", Dict::new().with("match", "prefix"));
        }
        for seq in 0..40u64 {
            for (pi, &p) in pubs.iter().enumerate() {
                let t = s.rng.below(4);
                s.publish(p, &format!("sim.topic{t}"), Dict::new(), vec![Value::UInt(pi as u64), Value::UInt(seq)]);
                let k = s.rng.below(4);
                s.run_some(k);
            }
        }
        s.run_until_idle();
        for &c in &subs {
            let events = s.take_events(c);
            // (subscription kind: exact=false/prefix=true, publisher) -> sequence
            let mut seen: std::collections::HashMap<(bool, u64), Vec<u64>> = Default::default();
            for (_, details, args) in events {
                let pattern = details.contains_key("topic");
                seen.entry((pattern, uint(&args[0]))).or_default().push(uint(&args[1]));
            }
            for pattern in [false, true] {
                for pi in 0..2u64 {
                    let got = seen.get(&(pattern, pi)).cloned().unwrap_or_default();
                    assert_eq!(got, (0..40).collect::<Vec<_>>(), "subscriber {c} publisher {pi} pattern={pattern}");
                }
            }
        }
    });
}

/// Goal: SUBSCRIBED precedes every EVENT of that subscription, even when the subscription
/// is made while a publisher is publishing. Method: subscribe without waiting while a
/// publisher on another random shard keeps publishing; in the subscriber's message log,
/// no EVENT may name a subscription before its SUBSCRIBED.
#[test]
fn subscribed_precedes_event() {
    for_seeds("subscribed_precedes_event", seeds(SEEDS), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let sub = random_client(&mut s);
        let publisher = random_client(&mut s);
        let other = random_client(&mut s);
        s.subscribe_wait(other, "sim.t", Dict::new());
        s.subscribe(sub, "sim.t", Dict::new());
        for seq in 0..20u64 {
            s.publish(publisher, "sim.t", Dict::new(), vec![Value::UInt(seq)]);
            let k = s.rng.below(3);
            s.run_some(k);
        }
        s.run_until_idle();
        let mut known = std::collections::HashSet::new();
        for m in &s.clients[sub].log {
            match m {
                Message::Subscribed { subscription, .. } => {
                    known.insert(*subscription);
                }
                Message::Event { subscription, .. } => {
                    assert!(known.contains(subscription), "EVENT before SUBSCRIBED");
                }
                _ => {}
            }
        }
        assert_eq!(known.len(), 1, "subscribed exactly once");
        // The bystander got all 20.
        assert_eq!(s.take_events(other).len(), 20);
    });
}

/// Goal: no lost event in the subscribe-then-publish-over-RPC race. Method: S subscribes
/// and waits for SUBSCRIBED, then calls a procedure of P (another random shard) that
/// publishes to the topic and then yields; S must receive the event.
#[test]
fn subscribe_then_publish_over_rpc_loses_nothing() {
    for_seeds("subscribe_then_publish_over_rpc_loses_nothing", seeds(SEEDS), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let p = random_client(&mut s);
        let sub = random_client(&mut s);
        s.register_wait(p, "sim.trigger", Dict::new()).expect("register");
        let topic = format!("sim.race.{seed}");
        let sid = s.subscribe_wait(sub, &topic, Dict::new());
        let call = s.call(sub, "sim.trigger", Dict::new(), vec![]);
        let inv = s.wait_for(p, |m| matches!(m, Message::Invocation { .. }));
        let Message::Invocation { request, .. } = inv else { unreachable!() };
        s.publish(p, &topic, Dict::new(), vec![Value::str("hello")]);
        s.yield_(p, request, Dict::new(), vec![]);
        s.wait_for(sub, |m| matches!(m, Message::Result { request, .. } if *request == call));
        s.run_until_idle();
        let events = s.take_events(sub);
        assert_eq!(events.len(), 1, "the event published before the RESULT must arrive");
        assert_eq!(events[0].0, sid);
    });
}

/// Goal: publisher exclusion, identification and black/white listing admit exactly the
/// right receivers. Method: four subscribers and a subscribed publisher on random shards;
/// each publication's receiver set is compared with the expected one.
#[test]
fn exclusion_and_listing_rules() {
    for_seeds("exclusion_and_listing_rules", seeds(SEEDS / 4), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let subs: Vec<ClientId> = (0..4).map(|_| random_client(&mut s)).collect();
        let p = random_client(&mut s);
        for &c in subs.iter().chain([&p]) {
            s.subscribe_wait(c, "sim.filter", Dict::new());
        }
        let ids: Vec<Id> = subs.iter().map(|&c| s.session(c)).collect();
        let authid = |s: &Sim, c: ClientId| format!("anonymous-{:x}", s.session(c));
        let cases: Vec<(Dict, Vec<ClientId>)> = vec![
            (Dict::new(), subs.clone()),
            (Dict::new().with("exclude_me", false), subs.iter().copied().chain([p]).collect()),
            (Dict::new().with("exclude", vec![Value::UInt(ids[1])]), vec![subs[0], subs[2], subs[3]]),
            (Dict::new().with("eligible", vec![Value::UInt(ids[2]), Value::UInt(ids[3])]), vec![subs[2], subs[3]]),
            (Dict::new().with("exclude_authid", vec![Value::Str(authid(&s, subs[0]))]), subs[1..].to_vec()),
            (Dict::new().with("eligible_authid", vec![Value::Str(authid(&s, subs[3]))]), vec![subs[3]]),
            (Dict::new().with("eligible_authrole", vec![Value::str("anonymous")]), subs.clone()),
            (Dict::new().with("exclude_authrole", vec![Value::str("anonymous")]), vec![]),
            (
                Dict::new()
                    .with("eligible", vec![Value::UInt(ids[0]), Value::UInt(ids[1])])
                    .with("exclude", vec![Value::UInt(ids[0])]),
                vec![subs[1]],
            ),
        ];
        for (i, (options, expected)) in cases.into_iter().enumerate() {
            s.publish(p, "sim.filter", options.clone(), vec![Value::UInt(i as u64)]);
            s.run_until_idle();
            let mut got: Vec<ClientId> = Vec::new();
            for &c in subs.iter().chain([&p]) {
                let ev = s.take_events(c);
                assert!(ev.len() <= 1);
                if !ev.is_empty() {
                    got.push(c);
                }
            }
            let mut want = expected.clone();
            want.sort();
            got.sort();
            assert_eq!(got, want, "case {i}: {options:?}");
        }
        // Publisher identification.
        s.publish(p, "sim.filter", Dict::new().with("disclose_me", true), vec![]);
        s.run_until_idle();
        let ev = s.take_events(subs[0]);
        assert_eq!(ev[0].1.get("publisher").and_then(Value::as_u64), Some(s.session(p)));
        assert_eq!(ev[0].1.get("publisher_authrole").and_then(Value::as_str), Some("anonymous"));
        s.publish(p, "sim.filter", Dict::new(), vec![]);
        s.run_until_idle();
        let ev = s.take_events(subs[0]);
        assert!(ev[0].1.get("publisher").is_none(), "no disclosure unless asked");
    });
}

/// Goal: prefix and wildcard subscriptions match as the spec says, carry `Details.topic`,
/// and share IDs per (topic, match). Method: three subscribers with exact, prefix and
/// wildcard subscriptions; publish to topics that match subsets.
#[test]
fn pattern_subscriptions_match() {
    for_seeds("pattern_subscriptions_match", seeds(SEEDS / 4), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let (a, b, c, d) = (random_client(&mut s), random_client(&mut s), random_client(&mut s), random_client(&mut s));
        let p = random_client(&mut s);
        let exact = s.subscribe_wait(a, "com.app.x", Dict::new());
        let prefix = s.subscribe_wait(b, "com.app", Dict::new().with("match", "prefix"));
        let wild = s.subscribe_wait(c, "com..x", Dict::new().with("match", "wildcard"));
        let shared = s.subscribe_wait(d, "com..x", Dict::new().with("match", "wildcard"));
        assert_eq!(wild, shared, "same (topic, match) shares one subscription ID");
        assert!(exact != prefix && prefix != wild && exact != wild);
        let deliveries = |s: &mut Sim, topic: &str| -> Vec<(ClientId, Id, Option<String>)> {
            s.publish(p, topic, Dict::new(), vec![]);
            s.run_until_idle();
            let mut out = Vec::new();
            for cl in [a, b, c, d] {
                for (sub, details, _) in s.take_events(cl) {
                    out.push((cl, sub, details.get("topic").and_then(Value::as_str).map(str::to_owned)));
                }
            }
            out
        };
        let t = Some("com.app.x".to_string());
        assert_eq!(
            deliveries(&mut s, "com.app.x"),
            vec![(a, exact, None), (b, prefix, t.clone()), (c, wild, t.clone()), (d, wild, t)]
        );
        assert_eq!(
            deliveries(&mut s, "com.apple"),
            vec![(b, prefix, Some("com.apple".into()))],
            "prefix is by characters"
        );
        assert_eq!(
            deliveries(&mut s, "com.b.x"),
            vec![(c, wild, Some("com.b.x".into())), (d, wild, Some("com.b.x".into()))]
        );
        assert!(deliveries(&mut s, "com.b.x.y").is_empty(), "wildcard needs the same component count");
        assert!(deliveries(&mut s, "org.app.x").is_empty());
    });
}

/// Goal: every shared-registration policy picks callees as the spec says, and conflicting
/// registrations are refused. Method: three callees on random shards register the same
/// procedure with one policy; one caller makes 9 calls; count invocations per callee.
#[test]
fn shared_registration_policies() {
    for_seeds("shared_registration_policies", seeds(SEEDS / 4), |seed| {
        for policy in ["roundrobin", "first", "last", "random"] {
            let mut s = Sim::new(shards_for(seed), seed);
            let callees: Vec<ClientId> = (0..3).map(|_| random_client(&mut s)).collect();
            let caller = random_client(&mut s);
            for &c in &callees {
                s.register_wait(c, "sim.shared", Dict::new().with("invoke", policy)).expect("register");
            }
            let other = random_client(&mut s);
            let wrong = if policy == "random" { "first" } else { "random" };
            assert_eq!(
                s.register_wait(other, "sim.shared", Dict::new().with("invoke", wrong)),
                Err("wamp.error.procedure_already_exists".into())
            );
            assert_eq!(
                s.register_wait(other, "sim.shared", Dict::new()),
                Err("wamp.error.procedure_already_exists".into())
            );
            let mut counts = [0usize; 3];
            let mut order = Vec::new();
            for i in 0..9u64 {
                let call = s.call(caller, "sim.shared", Dict::new(), vec![Value::UInt(i)]);
                s.run_until_idle();
                let mut answered = false;
                for (k, &c) in callees.iter().enumerate() {
                    let invs: Vec<Message> = s.clients[c].inbox.drain(..).collect();
                    for m in invs {
                        if let Message::Invocation { request, .. } = m {
                            counts[k] += 1;
                            order.push(k);
                            s.yield_(c, request, Dict::new(), vec![Value::UInt(k as u64)]);
                            answered = true;
                        }
                    }
                }
                assert!(answered, "{policy}: call {i} reached no callee");
                s.wait_for(caller, |m| matches!(m, Message::Result { request, .. } if *request == call));
            }
            match policy {
                "roundrobin" => {
                    assert_eq!(counts, [3, 3, 3], "roundrobin");
                    assert_eq!(&order[..3], &order[3..6]);
                    assert_eq!(&order[..3], &order[6..9]);
                }
                "first" => assert_eq!(counts, [9, 0, 0]),
                "last" => assert_eq!(counts, [0, 0, 9]),
                _ => assert_eq!(counts.iter().sum::<usize>(), 9),
            }
        }
        // single: a second registration is refused until the first goes away.
        let mut s = Sim::new(shards_for(seed), seed);
        let (x, y) = (random_client(&mut s), random_client(&mut s));
        s.register_wait(x, "sim.single", Dict::new()).expect("first");
        assert_eq!(s.register_wait(y, "sim.single", Dict::new()), Err("wamp.error.procedure_already_exists".into()));
        s.disconnect(x);
        s.run_until_idle();
        s.register_wait(y, "sim.single", Dict::new()).expect("free again once the callee left");
    });
}

/// Goal: per (caller, callee), invocations arrive in call order across procedures.
/// Method: one callee registers two procedures; a caller calls them alternately with random
/// mesh progress between calls; the callee's INVOCATION args must be 0..30 in order.
#[test]
fn caller_order_holds_across_procedures() {
    for_seeds("caller_order_holds_across_procedures", seeds(SEEDS), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let callee = random_client(&mut s);
        let caller = random_client(&mut s);
        s.register_wait(callee, "sim.p1", Dict::new()).unwrap();
        s.register_wait(callee, "sim.p2", Dict::with_capacity(0).with("match", "prefix")).unwrap();
        for i in 0..30u64 {
            let proc_ = if i % 2 == 0 { "sim.p1" } else { "sim.p2.sub" };
            s.call(caller, proc_, Dict::new(), vec![Value::UInt(i)]);
            let k = s.rng.below(3);
            s.run_some(k);
        }
        s.run_until_idle();
        let mut seqs = Vec::new();
        for m in s.clients[callee].inbox.drain(..) {
            if let Message::Invocation { payload, details, .. } = m {
                let i = uint(&payload.args().unwrap()[0]);
                if i % 2 == 1 {
                    assert_eq!(details.get("procedure").and_then(Value::as_str), Some("sim.p2.sub"));
                }
                seqs.push(i);
            }
        }
        assert_eq!(seqs, (0..30).collect::<Vec<_>>());
    });
}

/// Goal: when a callee vanishes mid-call the caller gets an ERROR (never waits forever) and
/// the registration is freed; when a caller vanishes the callee is interrupted and its late
/// YIELD is dropped without a protocol violation. Method: script both cases.
#[test]
fn sessions_vanishing_mid_call_are_cleaned_up() {
    for_seeds("sessions_vanishing_mid_call_are_cleaned_up", seeds(SEEDS / 2), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let callee = random_client(&mut s);
        let caller = random_client(&mut s);
        s.register_wait(callee, "sim.slow", Dict::new()).unwrap();
        let call = s.call(caller, "sim.slow", Dict::new(), vec![]);
        s.wait_for(callee, |m| matches!(m, Message::Invocation { .. }));
        s.disconnect(callee);
        match s.wait_for(caller, |m| matches!(m, Message::Error { .. } | Message::Result { .. })) {
            Message::Error { request, error, .. } => {
                assert_eq!(request, call);
                assert_eq!(error, "wamp.error.canceled");
            }
            other => panic!("expected ERROR, got {other:?}"),
        }
        // The registration was freed.
        let callee2 = random_client(&mut s);
        s.register_wait(callee2, "sim.slow", Dict::new()).expect("registration freed");
        // Now the caller vanishes mid-call.
        s.call(caller, "sim.slow", Dict::new(), vec![]);
        let Message::Invocation { request, .. } = s.wait_for(callee2, |m| matches!(m, Message::Invocation { .. }))
        else {
            unreachable!()
        };
        s.disconnect(caller);
        match s.wait_for(callee2, |m| matches!(m, Message::Interrupt { .. })) {
            Message::Interrupt { request: r, .. } => assert_eq!(r, request),
            _ => unreachable!(),
        }
        s.yield_(callee2, request, Dict::new(), vec![]);
        s.run_until_idle();
        assert!(!s.clients[callee2].closed, "a late YIELD after INTERRUPT is not a protocol violation");
        // And the callee still serves others.
        let caller2 = random_client(&mut s);
        let c2 = s.call(caller2, "sim.slow", Dict::new(), vec![]);
        let Message::Invocation { request, .. } = s.wait_for(callee2, |m| matches!(m, Message::Invocation { .. }))
        else {
            unreachable!()
        };
        s.yield_(callee2, request, Dict::new(), vec![Value::str("ok")]);
        s.wait_for(caller2, |m| matches!(m, Message::Result { request, .. } if *request == c2));
    });
}

/// Goal: progressive results are relayed in order and only when asked for; a callee that
/// answers `wamp.error.unavailable` has the call re-routed. Method: scripted exchanges.
#[test]
fn progressive_results_and_rerouting() {
    for_seeds("progressive_results_and_rerouting", seeds(SEEDS / 4), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let callee = random_client(&mut s);
        let caller = random_client(&mut s);
        s.register_wait(callee, "sim.progress", Dict::new()).unwrap();
        let call = s.call(caller, "sim.progress", Dict::new().with("receive_progress", true), vec![]);
        let Message::Invocation { request, details, .. } =
            s.wait_for(callee, |m| matches!(m, Message::Invocation { .. }))
        else {
            unreachable!()
        };
        assert_eq!(details.get("receive_progress"), Some(&Value::Bool(true)));
        for i in 0..3u64 {
            s.yield_(callee, request, Dict::new().with("progress", true), vec![Value::UInt(i)]);
        }
        s.yield_(callee, request, Dict::new(), vec![Value::str("done")]);
        s.run_until_idle();
        let results: Vec<(bool, Value)> = s.clients[caller]
            .inbox
            .drain(..)
            .filter_map(|m| match m {
                Message::Result { request, details, payload } if request == call => {
                    Some((details.get("progress") == Some(&Value::Bool(true)), payload.args().unwrap()[0].clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            results,
            vec![(true, Value::UInt(0)), (true, Value::UInt(1)), (true, Value::UInt(2)), (false, Value::str("done"))]
        );

        // Re-routing: the first callee is unavailable, the second answers.
        let (r1, r2) = (random_client(&mut s), random_client(&mut s));
        s.register_wait(r1, "sim.rr", Dict::new().with("invoke", "first")).unwrap();
        s.register_wait(r2, "sim.rr", Dict::new().with("invoke", "first")).unwrap();
        let call = s.call(caller, "sim.rr", Dict::new(), vec![]);
        let Message::Invocation { request, .. } = s.wait_for(r1, |m| matches!(m, Message::Invocation { .. })) else {
            unreachable!()
        };
        s.send(
            r1,
            &Message::Error {
                request_type: 68,
                request,
                details: Dict::new(),
                error: "wamp.error.unavailable".into(),
                payload: Default::default(),
            },
        );
        let Message::Invocation { request, .. } = s.wait_for(r2, |m| matches!(m, Message::Invocation { .. })) else {
            unreachable!()
        };
        s.yield_(r2, request, Dict::new(), vec![Value::str("from r2")]);
        s.wait_for(caller, |m| matches!(m, Message::Result { request, .. } if *request == call));
    });
}

/// Goal: each protocol violation gets ABORT `wamp.error.protocol_violation`, the session's
/// subscriptions and registrations are removed, and other sessions do not notice.
/// Method: for each violation, a fresh client with a subscription and a registration
/// commits it; then a publish and a re-registration show the cleanup.
#[test]
fn protocol_violations_abort_and_clean_up() {
    type Violation = Box<dyn Fn(&mut Sim, ClientId)>;
    let violations: Vec<(&str, Violation)> = vec![
        ("second HELLO", Box::new(|s, c| s.send(c, &Message::Hello { realm: "realm1".into(), details: Dict::new() }))),
        ("garbage bytes", Box::new(|s, c| s.send_raw(c, b"\xff\xfe not wamp".to_vec()))),
        (
            "unknown message type",
            Box::new(|s, c| {
                let ser = s.clients[c].ser;
                let bytes =
                    shardbar::proto::wire::encode_to_vec(ser, &Message::Published { request: 1, publication: 2 })
                        .unwrap();
                // PUBLISHED is router-to-client only.
                s.send_raw(c, bytes)
            }),
        ),
        ("YIELD for unknown invocation", Box::new(|s, c| s.yield_(c, 999, Dict::new(), vec![]))),
        (
            "ERROR for a CALL",
            Box::new(|s, c| {
                s.send(
                    c,
                    &Message::Error {
                        request_type: 48,
                        request: 1,
                        details: Dict::new(),
                        error: "x.y".into(),
                        payload: Default::default(),
                    },
                )
            }),
        ),
        (
            "bad option type",
            Box::new(|s, c| {
                s.publish(c, "sim.t", Dict::new().with("acknowledge", "yes"), vec![]);
            }),
        ),
        (
            "bad match policy",
            Box::new(|s, c| {
                s.subscribe(c, "sim.t", Dict::new().with("match", "regex"));
            }),
        ),
    ];
    for_seeds("protocol_violations_abort_and_clean_up", seeds(60), |seed| {
        for (name, violate) in &violations {
            let mut s = Sim::new(shards_for(seed), seed);
            let bystander = random_client(&mut s);
            let publisher = random_client(&mut s);
            s.subscribe_wait(bystander, "sim.t", Dict::new());
            let bad = random_client(&mut s);
            s.subscribe_wait(bad, "sim.t", Dict::new());
            s.register_wait(bad, "sim.owned", Dict::new()).unwrap();
            violate(&mut s, bad);
            let abort = s.wait_for(bad, |m| matches!(m, Message::Abort { .. }));
            let Message::Abort { reason, details, .. } = abort else { unreachable!() };
            assert_eq!(reason, "wamp.error.protocol_violation", "{name}");
            assert!(details.get("message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()), "{name}: says why");
            assert!(s.clients[bad].closed, "{name}: transport closed");
            s.run_until_idle();
            s.publish(publisher, "sim.t", Dict::new(), vec![]);
            s.run_until_idle();
            assert_eq!(s.take_events(bystander).len(), 1, "{name}: bystander unaffected");
            let fresh = random_client(&mut s);
            s.register_wait(fresh, "sim.owned", Dict::new())
                .unwrap_or_else(|e| panic!("{name}: registration not freed: {e}"));
        }
    });
}

/// Goal: messages before HELLO, unknown realms and non-anonymous auth requests get the
/// right ABORT. Method: one-shard scripted sessions.
#[test]
fn session_opening_rules() {
    let mut s = Sim::new(2, 1);
    let c = s.connect(0, Serializer::Json);
    s.subscribe(c, "sim.t", Dict::new());
    let Message::Abort { reason, .. } = s.wait_for(c, |m| matches!(m, Message::Abort { .. })) else { unreachable!() };
    assert_eq!(reason, "wamp.error.protocol_violation");

    let c = s.connect(1, Serializer::MsgPack);
    s.send(c, &Message::Hello { realm: "nope".into(), details: Dict::new() });
    let Message::Abort { reason, .. } = s.wait_for(c, |m| matches!(m, Message::Abort { .. })) else { unreachable!() };
    assert_eq!(reason, "wamp.error.no_such_realm");

    let c = s.connect(1, Serializer::Cbor);
    s.send(
        c,
        &Message::Hello {
            realm: "realm1".into(),
            details: Dict::new().with("authmethods", vec![Value::str("ticket")]),
        },
    );
    let Message::Abort { reason, .. } = s.wait_for(c, |m| matches!(m, Message::Abort { .. })) else { unreachable!() };
    assert_eq!(reason, "wamp.error.no_auth_method");

    // GOODBYE is echoed and the transport can carry a new session.
    let c = s.join(0, Serializer::Json);
    let first = s.session(c);
    s.send(c, &Message::Goodbye { details: Dict::new(), reason: "wamp.close.close_realm".into() });
    let Message::Goodbye { reason, .. } = s.wait_for(c, |m| matches!(m, Message::Goodbye { .. })) else {
        unreachable!()
    };
    assert_eq!(reason, "wamp.close.goodbye_and_out");
    s.send(c, &Message::Hello { realm: "realm1".into(), details: Dict::new() });
    let Message::Welcome { session, details } = s.wait_for(c, |m| matches!(m, Message::Welcome { .. })) else {
        unreachable!()
    };
    assert_ne!(session, first);
    assert!((1..=1 << 53).contains(&session));
    let broker = details.get("roles").and_then(|r| r.as_dict()).and_then(|r| r.get("broker"));
    assert!(broker.is_some(), "WELCOME announces the broker role");
}

/// Goal: a connection without an established session is closed at the HELLO deadline, on
/// every shard, and counted; one that joined (even one that has since said GOODBYE) is
/// not. Method: open silent connections, late joiners and a GOODBYE'd session on random
/// shards, let time pass just short of and then past the deadline.
#[test]
fn hello_deadline_closes_silent_connections() {
    let hello = RouterConfig::default().liveness.hello_timeout;
    for_seeds("hello_deadline_closes_silent_connections", seeds(SEEDS / 4), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let connect = |s: &mut Sim| {
            let (shard, ser) = (s.rng.below(s.shards()), serializer_for(s.rng.below(3)));
            s.connect(shard, ser)
        };
        let silent: Vec<ClientId> = (0..3).map(|_| connect(&mut s)).collect();
        let late = connect(&mut s);
        let gone = random_client(&mut s);
        s.send(gone, &Message::Goodbye { details: Dict::new(), reason: "wamp.close.close_realm".into() });
        s.advance(hello - Duration::from_millis(200));
        assert!(silent.iter().all(|&c| !s.clients[c].closed), "seed {seed}: closed before the deadline");
        s.hello(late);
        s.advance(Duration::from_millis(400));
        assert!(silent.iter().all(|&c| s.clients[c].closed), "seed {seed}: silent connection left open");
        assert!(!s.clients[late].closed && !s.clients[gone].closed, "seed {seed}: a joined connection was closed");
        let timeouts: u64 = s.cores.iter().map(|c| c.stats().hello_timeouts).sum();
        assert_eq!(timeouts, 3, "seed {seed}");
    });
}

/// Goal: an idle WebSocket connection is pinged after the ping interval; one that answers
/// (pong or any input) stays, one that stays silent is reaped after the ping timeout and its
/// registrations are freed on every shard. RawSocket peers are pinged only after they
/// pinged (`rawsocket_ping = "auto"`). Method: callees on random shards, some answering,
/// one silent; time passes; a caller then calls the silent callee's procedure.
#[test]
fn liveness_pings_reap_silent_peers() {
    let live = RouterConfig::default().liveness;
    let (interval, timeout) = (live.ping_interval.expect("pings on by default"), live.ping_timeout);
    for_seeds("liveness_pings_reap_silent_peers", seeds(SEEDS / 4), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let ws = |s: &mut Sim| {
            let (shard, ser) = (s.rng.below(s.shards()), serializer_for(s.rng.below(3)));
            s.join_over(shard, ser, Transport::WebSocket)
        };
        let silent = ws(&mut s);
        let ponger = ws(&mut s);
        let talker = ws(&mut s);
        let raw = random_client(&mut s);
        let raw_pinger = random_client(&mut s);
        s.peer_ping(raw_pinger);
        s.register_wait(silent, "sim.silent", Dict::new()).expect("register");
        s.register_wait(ponger, "sim.ponger", Dict::new()).expect("register");
        s.advance(interval + Duration::from_millis(100));
        for c in [silent, ponger, talker, raw_pinger] {
            assert_eq!(s.clients[c].pings, 1, "seed {seed}: client {c} not pinged once");
        }
        assert_eq!(s.clients[raw].pings, 0, "seed {seed}: a RawSocket peer that never pinged was pinged");
        s.pong(ponger);
        s.pong(raw_pinger);
        s.rx(talker);
        s.advance(timeout);
        assert!(s.clients[silent].closed, "seed {seed}: silent peer not reaped");
        for c in [ponger, talker, raw, raw_pinger] {
            assert!(!s.clients[c].closed, "seed {seed}: live client {c} reaped");
        }
        let reaped: u64 = s.cores.iter().map(|c| c.stats().ping_timeouts).sum();
        assert_eq!(reaped, 1, "seed {seed}");
        let caller = random_client(&mut s);
        let request = s.call(caller, "sim.silent", Dict::new(), vec![]);
        match s.wait_for(caller, |m| matches!(m, Message::Error { request: r, .. } if *r == request)) {
            Message::Error { error, .. } => assert_eq!(error, "wamp.error.no_such_procedure", "seed {seed}"),
            _ => unreachable!(),
        }
    });
}

/// Goal: a CALL that reaches its callee's shard between the callee's UNREGISTER and the
/// refusal of its second REGISTER of the same procedure (parked behind that REGISTER) is
/// answered once the REGISTER is refused, not kept forever (found by the `shards` fuzz
/// target: the parked invocation was released only when a REGISTER succeeded). Method: a
/// callee registers `sim.p` (invoke random), then, without waiting, registers it again with
/// another invoke policy (refused: procedure_already_exists), unregisters the first and
/// calls it itself; every message is then delivered in a seeded order.
#[test]
fn call_parked_behind_a_refused_register_is_answered() {
    for_seeds("call_parked_behind_a_refused_register_is_answered", seeds(SEEDS / 10), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let (shard, ser) = (s.rng.below(s.shards()), serializer_for(s.rng.below(3)));
        let c = s.join(shard, ser);
        let reg = s.register_wait(c, "sim.p", Dict::new().with("invoke", "random")).expect("registered");
        s.register(c, "sim.p", Dict::new().with("invoke", "roundrobin"));
        let unregister = s.next_request(c);
        s.send(c, &Message::Unregister { request: unregister, registration: reg });
        let call = s.call(c, "sim.p", Dict::new(), vec![]);
        s.run_until_idle();
        // Whatever reached the callee is answered, then the call must have its answer.
        let invocations: Vec<Id> = s.clients[c]
            .log
            .iter()
            .filter_map(|m| if let Message::Invocation { request, .. } = m { Some(*request) } else { None })
            .collect();
        for request in invocations {
            s.yield_(c, request, Dict::new(), vec![]);
        }
        s.run_until_idle();
        let answers = s.clients[c]
            .log
            .iter()
            .filter(|m| {
                matches!(m, Message::Result { request, .. } | Message::Error { request_type: 48, request, .. } if *request == call)
            })
            .count();
        assert_eq!(answers, 1, "seed {seed}: CALL answered {answers} times; log {:?}", s.clients[c].log);
    });
}

/// Goal: request IDs outside [1, 2^53] are protocol violations (spec: IDs are in that
/// range), for every client request type. Method: send each with 0 and 2^53 + 1.
#[test]
fn request_ids_out_of_range_abort() {
    for_seeds("request_ids_out_of_range_abort", seeds(SEEDS / 10), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        for request in [0, (1u64 << 53) + 1] {
            let msgs = [
                Message::Publish { request, options: Dict::new(), topic: "sim.t".into(), payload: Default::default() },
                Message::Subscribe { request, options: Dict::new(), topic: "sim.t".into() },
                Message::Call { request, options: Dict::new(), procedure: "sim.p".into(), payload: Default::default() },
                Message::Register { request, options: Dict::new(), procedure: "sim.p".into() },
                Message::Unregister { request, registration: 1 },
            ];
            for msg in msgs {
                let c = random_client(&mut s);
                s.send(c, &msg);
                s.run_until_idle();
                let aborted = s.clients[c]
                    .log
                    .iter()
                    .any(|m| matches!(m, Message::Abort { reason, .. } if reason == "wamp.error.protocol_violation"));
                assert!(aborted && s.clients[c].closed, "seed {seed}: {} with request {request} accepted", msg.name());
            }
        }
    });
}

/// Goal: a client that accepts only 512-byte messages (RawSocket L=0) still gets the ERROR
/// and the ABORT its requests earn when the router's text quotes 256 four-byte characters of
/// its input (over 1 KiB): the text is cut to fit instead of the whole message being dropped
/// as too big, which left the request unanswered. Method: on random shards and serializers,
/// a limited client publishes (acknowledged) to an invalid topic of emoji, calls a missing
/// procedure of emoji, then sends CANCEL with an unknown mode of emoji.
#[test]
fn small_client_limit_gets_errors_and_aborts() {
    for_seeds("small_client_limit_gets_errors_and_aborts", seeds(SEEDS / 10), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let (shard, ser) = (s.rng.below(s.shards()), serializer_for(s.rng.below(3)));
        let c = s.connect_limited(shard, ser, Transport::RawSocket, 512);
        s.hello(c);
        let emoji = "\u{1F600}".repeat(300);
        let ack = Dict::new().with("acknowledge", true);
        let topic = format!("{emoji} x");
        s.send(c, &Message::Publish { request: 1, options: ack, topic, payload: Default::default() });
        let procedure = format!("sim.{emoji}");
        s.send(c, &Message::Call { request: 2, options: Dict::new(), procedure, payload: Default::default() });
        for (request, uri) in [(1, "wamp.error.invalid_uri"), (2, "wamp.error.no_such_procedure")] {
            match s.wait_for(c, |m| matches!(m, Message::Error { request: r, .. } if *r == request)) {
                Message::Error { error, payload, .. } => {
                    assert_eq!(error, uri, "seed {seed}");
                    let text = payload.args().expect("args");
                    assert!(text[0].as_str().is_some_and(|t| t.ends_with('…')), "seed {seed}: {text:?}");
                }
                _ => unreachable!(),
            }
        }
        s.send(c, &Message::Cancel { request: 3, options: Dict::new().with("mode", emoji.as_str()) });
        match s.wait_for(c, |m| matches!(m, Message::Abort { .. })) {
            Message::Abort { reason, details, .. } => {
                assert_eq!(reason, "wamp.error.protocol_violation", "seed {seed}");
                let text = details.get("message").and_then(Value::as_str).expect("message");
                assert!(text.starts_with("CANCEL.Options.mode") && text.ends_with('…'), "seed {seed}: {text}");
            }
            _ => unreachable!(),
        }
    });
}

/// Goal: an RPC message that cannot be re-encoded for the receiver's serializer is answered,
/// never dropped: the caller gets ERROR `wamp.error.invalid_argument` and the invocation is
/// forgotten (so repeated attempts never make the callee look overloaded). Method: a
/// MessagePack caller sends kwargs with a non-string key inside a value (`{"k": {true: 1}}`;
/// the kwargs dict's own keys must be strings and are checked at decode) to a JSON callee,
/// many times; then an ordinary call still reaches the callee.
#[test]
fn unencodable_rpc_payloads_are_answered() {
    for_seeds("unencodable_rpc_payloads_are_answered", seeds(SEEDS / 10), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let (a, b) = (s.rng.below(s.shards()), s.rng.below(s.shards()));
        let callee = s.join(a, Serializer::Json);
        let caller = s.join(b, Serializer::MsgPack);
        s.register_wait(callee, "sim.p", Dict::new()).expect("register");
        for request in 1..=50u64 {
            // [CALL, request, {}, "sim.p", [], {"k": {true: 1}}]
            let mut bytes = vec![0x96, 0x30, 0xcf];
            bytes.extend_from_slice(&request.to_be_bytes());
            bytes.extend_from_slice(&[
                0x80, 0xa5, b's', b'i', b'm', b'.', b'p', 0x90, 0x81, 0xa1, b'k', 0x81, 0xc3, 0x01,
            ]);
            s.send_raw(caller, bytes);
            match s.wait_for(caller, |m| matches!(m, Message::Error { request: r, .. } if *r == request)) {
                Message::Error { error, .. } => assert_eq!(error, "wamp.error.invalid_argument", "seed {seed}"),
                _ => unreachable!(),
            }
        }
        s.clients[caller].next_request = 100;
        let request = s.call(caller, "sim.p", Dict::new(), vec![Value::UInt(7)]);
        let invocation = s.wait_for(callee, |m| matches!(m, Message::Invocation { .. }));
        let Message::Invocation { request: inv, .. } = invocation else { unreachable!() };
        s.yield_(callee, inv, Dict::new(), vec![Value::UInt(8)]);
        s.wait_for(caller, |m| matches!(m, Message::Result { request: r, .. } if *r == request));
    });
}

/// Goal: the payload bytes a caller keeps in flight (held for re-routing) are bounded per
/// session: past `limits::SESSION_CALL_PAYLOAD_BYTES_MAX` a CALL gets ERROR
/// `shardbar.error.limit_exceeded`, and finished calls give their budget back. Method: 1 MiB
/// calls to a callee that does not answer, until refused; answer one; the next fits.
#[test]
fn call_payload_bytes_are_budgeted() {
    for_seeds("call_payload_bytes_are_budgeted", seeds(3), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        let callee = random_client(&mut s);
        let caller = random_client(&mut s);
        s.register_wait(callee, "sim.p", Dict::new()).expect("register");
        let big = Value::str("x".repeat(1 << 20));
        let budget = shardbar::limits::SESSION_CALL_PAYLOAD_BYTES_MAX >> 20;
        let mut refused = None;
        for i in 0..budget + 2 {
            let request = s.call(caller, "sim.p", Dict::new(), vec![big.clone()]);
            s.run_until_idle();
            if s.clients[caller].inbox.iter().any(|m| matches!(m, Message::Error { request: r, error, .. } if *r == request && error == "shardbar.error.limit_exceeded")) {
                refused = Some(i);
                break;
            }
        }
        let refused = refused.unwrap_or_else(|| panic!("seed {seed}: never refused"));
        assert!(refused + 1 >= budget, "seed {seed}: refused after only {refused} calls");
        let inv = match s.wait_for(callee, |m| matches!(m, Message::Invocation { .. })) {
            Message::Invocation { request, .. } => request,
            _ => unreachable!(),
        };
        s.yield_(callee, inv, Dict::new(), vec![]);
        s.run_until_idle();
        let request = s.call(caller, "sim.p", Dict::new(), vec![big.clone()]);
        s.run_until_idle();
        let refused_again =
            s.clients[caller].inbox.iter().any(|m| matches!(m, Message::Error { request: r, .. } if *r == request));
        assert!(!refused_again, "seed {seed}: a finished call did not give its budget back");
    });
}

/// The sum over shards of the realm1 samples of `/metrics` family `name`.
fn realm1_metric(s: &Sim, name: &str) -> u64 {
    let head = format!("shardbar_{name}{{");
    s.cores
        .iter()
        .flat_map(|c| c.render_metrics().lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.starts_with(&head) && l.contains("realm=\"realm1\""))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()).expect("metric value"))
        .sum()
}

/// The largest realm1 sample of `/metrics` family `name` on one shard.
fn realm1_metric_max(s: &Sim, name: &str) -> u64 {
    let head = format!("shardbar_{name}{{");
    s.cores
        .iter()
        .flat_map(|c| c.render_metrics().lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.starts_with(&head) && l.contains("realm=\"realm1\""))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
        .max()
        .unwrap_or(0)
}

/// Send `msg` built with a fresh request ID and wait for the answer to it.
fn request(s: &mut Sim, c: ClientId, msg: impl FnOnce(Id) -> Message) -> Message {
    let request = s.next_request(c);
    s.send(c, &msg(request));
    s.wait_for(c, |m| match m {
        Message::Subscribed { request: r, .. }
        | Message::Unsubscribed { request: r, .. }
        | Message::Registered { request: r, .. }
        | Message::Unregistered { request: r, .. }
        | Message::Error { request: r, .. } => *r == request,
        _ => false,
    })
}

/// Goal: a realm's routes are held to its memory budget (`route_bytes_max`): a SUBSCRIBE or
/// REGISTER that would create a route past it gets ERROR `shardbar.error.limit_exceeded`
/// and is counted in `/metrics`; the charges on all shards together stay within the
/// budget and a refusal is justified on its owner; joining an existing route is never
/// refused; deleting routes gives their budget back. Method: realm1 with the smallest
/// budget; ~1 KiB prefix subscriptions, then registrations, until refused; a second
/// session joins every subscription; everything is deleted; the refused ones now fit.
#[test]
fn route_memory_is_budgeted_per_realm() {
    for_seeds("route_memory_is_budgeted_per_realm", seeds(SEEDS / 50), |seed| {
        let budget = shardbar::limits::REALM_ROUTE_BYTES_FLOOR;
        let mut config = RouterConfig::default();
        config.realms[0].route_bytes_max = budget;
        let shards = shards_for(seed);
        let mut s = Sim::with_config(shards, seed, config);
        let (a, b) = (random_client(&mut s), random_client(&mut s));
        let head = format!("sim.budget.{}", "x".repeat(1000));
        let cost = |uri: &str| (uri.len() as u64 + shardbar::limits::ROUTE_OVERHEAD_BYTES) * shards as u64;
        let limited = "shardbar.error.limit_exceeded";
        let prefix = || Dict::new().with("match", "prefix");

        let mut subs = Vec::new();
        let refused_topic = loop {
            assert!(subs.len() < 100, "seed {seed}: never refused");
            let topic = format!("{head}.t{}", subs.len());
            match request(&mut s, a, |request| Message::Subscribe { request, options: prefix(), topic: topic.clone() })
            {
                Message::Subscribed { subscription, .. } => subs.push((topic, subscription)),
                Message::Error { error, .. } => {
                    assert_eq!(error, limited, "seed {seed}");
                    break topic;
                }
                other => panic!("seed {seed}: {other:?}"),
            }
        };
        let charged = realm1_metric(&s, "route_budget_bytes");
        assert_eq!(charged, subs.iter().map(|(t, _)| cost(t)).sum::<u64>(), "seed {seed}");
        assert!(charged <= budget, "seed {seed}: {charged} charged over a budget of {budget}");
        let share = budget / shards as u64;
        let fullest = realm1_metric_max(&s, "route_budget_bytes");
        assert!(fullest + cost(&refused_topic) > share, "seed {seed}: refused with room left");
        assert_eq!(realm1_metric(&s, "route_budget_refused_total"), 1, "seed {seed}");

        for (topic, id) in &subs {
            let joined =
                request(&mut s, b, |request| Message::Subscribe { request, options: prefix(), topic: topic.clone() });
            assert!(
                matches!(joined, Message::Subscribed { subscription, .. } if subscription == *id),
                "seed {seed}: {joined:?}"
            );
        }
        let mut regs = Vec::new();
        let refused_procedure = loop {
            assert!(regs.len() < 100, "seed {seed}: never refused");
            let procedure = format!("{head}.p{}", regs.len());
            match s.register_wait(a, &procedure, Dict::new()) {
                Ok(id) => regs.push(id),
                Err(error) => {
                    assert_eq!(error, limited, "seed {seed}");
                    break procedure;
                }
            }
        };
        assert_eq!(realm1_metric(&s, "route_budget_refused_total"), 2, "seed {seed}");
        assert!(realm1_metric(&s, "route_budget_bytes") <= budget, "seed {seed}");

        for c in [a, b] {
            for (_, subscription) in &subs {
                let answer =
                    request(&mut s, c, |request| Message::Unsubscribe { request, subscription: *subscription });
                assert!(matches!(answer, Message::Unsubscribed { .. }), "seed {seed}: {answer:?}");
            }
        }
        for registration in regs {
            let answer = request(&mut s, a, |request| Message::Unregister { request, registration });
            assert!(matches!(answer, Message::Unregistered { .. }), "seed {seed}: {answer:?}");
        }
        s.run_until_idle();
        assert_eq!(realm1_metric(&s, "route_budget_bytes"), 0, "seed {seed}: budget not given back");
        s.subscribe_wait(a, &refused_topic, prefix());
        s.register_wait(a, &refused_procedure, Dict::new()).expect("room again");
        let expected = cost(&refused_topic) + cost(&refused_procedure);
        assert_eq!(realm1_metric(&s, "route_budget_bytes"), expected, "seed {seed}");
    });
}

/// Goal: before WELCOME, a message larger than `limits::HELLO_MESSAGE_MAX_BYTES` is refused
/// before it is decoded (ABORT protocol_violation, connection closed), and an ordinary HELLO
/// still works. Method: a HELLO whose Details hold a long list of nulls, in each serializer.
#[test]
fn oversized_hello_is_refused_undecoded() {
    for_seeds("oversized_hello_is_refused_undecoded", seeds(SEEDS / 100), |seed| {
        let mut s = Sim::new(shards_for(seed), seed);
        for ser in Serializer::ALL {
            let c = s.connect(s.shards() - 1, ser);
            let nulls = vec![Value::Null; shardbar::limits::HELLO_MESSAGE_MAX_BYTES];
            let details = Dict::new().with("junk", nulls);
            s.send(c, &Message::Hello { realm: "realm1".into(), details });
            let aborted = s.clients[c]
                .log
                .iter()
                .any(|m| matches!(m, Message::Abort { reason, .. } if reason == "wamp.error.protocol_violation"));
            assert!(aborted && s.clients[c].closed, "seed {seed}: oversized {ser:?} HELLO accepted");
            random_client(&mut s);
        }
    });
}

/// Goal: auto-created realms are capped per shard, the cap never locks out a configured
/// realm, and realms that nothing refers to any more are freed (so the cap counts live
/// realms, not names ever seen). Method: with `auto_create_realms`, fill one shard with
/// `REALMS_MAX` realms (a subscription in some, so other shards hold their routes too);
/// one more is refused, `realm1` is not; the flood leaves; fresh realms join again.
#[test]
fn realm_flood_is_capped_and_freed() {
    let cap = shardbar::limits::REALMS_MAX;
    for_seeds("realm_flood_is_capped_and_freed", seeds(3), |seed| {
        let config = RouterConfig { auto_create_realms: true, ..RouterConfig::default() };
        let mut s = Sim::with_config(shards_for(seed), seed, config);
        let flood: Vec<ClientId> = (0..cap)
            .map(|i| {
                let c = s.connect(0, Serializer::MsgPack);
                assert!(matches!(s.hello_realm(c, &format!("flood.r{i}")), Message::Welcome { .. }), "seed {seed}");
                if i % 64 == 0 {
                    s.subscribe_wait(c, "flood.topic", Dict::new());
                }
                c
            })
            .collect();
        let extra = s.connect(0, Serializer::Json);
        match s.hello_realm(extra, "flood.extra") {
            Message::Abort { reason, .. } => assert_eq!(reason, "wamp.error.no_such_realm", "seed {seed}"),
            other => panic!("seed {seed}: realm over the cap accepted: {other:?}"),
        }
        let member = s.connect(0, Serializer::Json);
        assert!(
            matches!(s.hello_realm(member, "realm1"), Message::Welcome { .. }),
            "seed {seed}: configured realm locked out"
        );
        for c in flood {
            s.disconnect(c);
        }
        s.run_until_idle();
        for i in 0..8 {
            let c = s.connect(0, Serializer::Cbor);
            let answer = s.hello_realm(c, &format!("fresh.r{i}"));
            assert!(matches!(answer, Message::Welcome { .. }), "seed {seed}: realms never freed: {answer:?}");
        }
    });
}

/// Goal: a callee's ERROR.Error is validated like any URI before it is relayed (a URI with a
/// control character would read back from JSON as binary; one with a space is not a URI):
/// the callee is aborted for the violation and the caller still gets an answer. Method: a
/// JSON caller calls a MessagePack callee that answers with such an ERROR.
#[test]
fn callee_error_uris_are_validated() {
    for_seeds("callee_error_uris_are_validated", seeds(SEEDS / 10), |seed| {
        for bad in ["\u{0}app.error", "app error"] {
            let mut s = Sim::new(shards_for(seed), seed);
            let (a, b) = (s.rng.below(s.shards()), s.rng.below(s.shards()));
            let callee = s.join(a, Serializer::MsgPack);
            let caller = s.join(b, Serializer::Json);
            s.register_wait(callee, "sim.p", Dict::new()).expect("register");
            let request = s.call(caller, "sim.p", Dict::new(), vec![]);
            let Message::Invocation { request: inv, .. } =
                s.wait_for(callee, |m| matches!(m, Message::Invocation { .. }))
            else {
                unreachable!()
            };
            let error = Message::Error {
                request_type: 68,
                request: inv,
                details: Dict::new(),
                error: bad.into(),
                payload: Default::default(),
            };
            s.send(callee, &error);
            s.run_until_idle();
            let aborted = s.clients[callee]
                .log
                .iter()
                .any(|m| matches!(m, Message::Abort { reason, .. } if reason == "wamp.error.protocol_violation"));
            assert!(aborted, "seed {seed}: ERROR {bad:?} relayed");
            match s.wait_for(caller, |m| matches!(m, Message::Error { request: r, .. } if *r == request)) {
                Message::Error { error, .. } => assert_eq!(error, "wamp.error.canceled", "seed {seed}"),
                _ => unreachable!(),
            }
        }
    });
}
