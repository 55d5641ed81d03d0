//! Deterministic simulation of call timeouts (see `tests/sim/mod.rs`): the router answers a
//! caller whose call outlives `CALL.Options.timeout` (or the realm's default), interrupts a
//! callee that can be interrupted, and drops the late answer — across shards, per seed.
//! Replay a failure with `SIM_SEED=<n> cargo test --test simulation_timeouts`.

mod sim;

use std::time::Duration;

use shardbar::proto::realm::{CallTimeoutUnit, RealmConfig, RouterConfig};
use shardbar::proto::wire::{Dict, Message, Value};
use sim::{ClientId, Sim, for_seeds, seeds, serializer_for};

fn config(unit: CallTimeoutUnit, default: Option<Duration>) -> RouterConfig {
    let realm = RealmConfig { call_timeout_unit: unit, call_timeout_default: default, ..RealmConfig::new("realm1") };
    RouterConfig { realms: vec![realm], ..RouterConfig::default() }
}

/// A callee that does not announce call canceling.
fn plain_callee(s: &mut Sim, shard: usize) -> ClientId {
    let c = s.connect(shard, serializer_for(shard));
    let roles = Dict::new().with("callee", Dict::new()).with("caller", Dict::new());
    s.send(c, &Message::Hello { realm: "realm1".into(), details: Dict::new().with("roles", roles) });
    let Message::Welcome { session, .. } = s.wait_for(c, |m| matches!(m, Message::Welcome { .. })) else {
        unreachable!()
    };
    s.clients[c].session = Some(session);
    c
}

#[test]
fn a_call_past_its_timeout_is_answered_and_the_callee_interrupted() {
    // Goal: with and without a cancel-capable callee, the caller gets ERROR
    // wamp.error.timeout at the deadline (not before); the callee gets INTERRUPT killnowait
    // only if it announced call_canceling; its late YIELD reaches nobody; INVOCATION carries
    // the timeout.
    for_seeds("a_call_past_its_timeout_is_answered_and_the_callee_interrupted", seeds(50), |seed| {
        let shards = 1 + (seed % 3) as usize;
        let mut s = Sim::with_config(shards, seed, config(CallTimeoutUnit::Millis, None));
        let cancelable = seed % 2 == 0;
        let callee_shard = s.rng.below(shards);
        let callee =
            if cancelable { s.join(callee_shard, serializer_for(0)) } else { plain_callee(&mut s, callee_shard) };
        s.register_wait(callee, "sim.slow", Dict::new()).expect("register");
        let (caller_shard, ser) = (s.rng.below(shards), serializer_for(s.rng.below(3)));
        let caller = s.join(caller_shard, ser);
        let req = s.call(caller, "sim.slow", Dict::new().with("timeout", 500u64), vec![]);
        let Message::Invocation { request, details, .. } =
            s.wait_for(callee, |m| matches!(m, Message::Invocation { .. }))
        else {
            unreachable!()
        };
        assert_eq!(details.get("timeout").and_then(Value::as_u64), Some(500));
        s.advance(Duration::from_millis(300));
        assert!(
            !s.clients[caller].inbox.iter().any(|m| matches!(m, Message::Error { .. })),
            "answered before the deadline"
        );
        s.advance(Duration::from_millis(300));
        let m = s.wait_for(caller, |m| matches!(m, Message::Error { request: r, .. } if *r == req));
        let Message::Error { error, .. } = m else { unreachable!() };
        assert_eq!(error, "wamp.error.timeout");
        s.run_until_idle();
        let interrupted = s.clients[callee].inbox.iter().any(|m| {
            matches!(m, Message::Interrupt { options, .. } if options.get("mode").and_then(Value::as_str) == Some("killnowait"))
        });
        assert_eq!(interrupted, cancelable);
        s.yield_(callee, request, Dict::new(), vec![Value::str("late")]);
        s.run_until_idle();
        assert!(
            !s.clients[caller].inbox.iter().any(|m| matches!(m, Message::Result { .. })),
            "a late YIELD reached the caller"
        );
    });
}

#[test]
fn realm_default_and_crossbar_seconds() {
    // Goal: a call without a timeout gets the realm's default; a realm with Crossbar's
    // seconds reads `timeout` as seconds and answers wamp.error.canceled.
    let mut s = Sim::with_config(2, 1, config(CallTimeoutUnit::Millis, Some(Duration::from_secs(2))));
    let callee = s.join(0, serializer_for(0));
    s.register_wait(callee, "sim.slow", Dict::new()).expect("register");
    let caller = s.join(1, serializer_for(1));
    let req = s.call(caller, "sim.slow", Dict::new(), vec![]);
    s.wait_for(callee, |m| matches!(m, Message::Invocation { .. }));
    s.advance(Duration::from_millis(2100));
    let m = s.wait_for(caller, |m| matches!(m, Message::Error { request: r, .. } if *r == req));
    assert!(matches!(m, Message::Error { ref error, .. } if error == "wamp.error.timeout"), "{m:?}");

    let mut s = Sim::with_config(2, 2, config(CallTimeoutUnit::Seconds, None));
    let callee = s.join(0, serializer_for(0));
    s.register_wait(callee, "sim.slow", Dict::new()).expect("register");
    let caller = s.join(1, serializer_for(2));
    let req = s.call(caller, "sim.slow", Dict::new().with("timeout", 1u64), vec![]);
    s.wait_for(callee, |m| matches!(m, Message::Invocation { .. }));
    s.advance(Duration::from_millis(900));
    assert!(!s.clients[caller].inbox.iter().any(|m| matches!(m, Message::Error { .. })));
    s.advance(Duration::from_millis(200));
    let m = s.wait_for(caller, |m| matches!(m, Message::Error { request: r, .. } if *r == req));
    assert!(matches!(m, Message::Error { ref error, .. } if error == "wamp.error.canceled"), "{m:?}");
}

/// A callee that takes progressive call invocations (and can be interrupted).
fn streaming_callee(s: &mut Sim, shard: usize) -> ClientId {
    let c = s.connect(shard, serializer_for(shard + 1));
    let features = Dict::new().with("progressive_call_invocations", true).with("call_canceling", true);
    let roles = Dict::new().with("callee", Dict::new().with("features", features)).with("caller", Dict::new());
    s.send(c, &Message::Hello { realm: "realm1".into(), details: Dict::new().with("roles", roles) });
    let Message::Welcome { session, .. } = s.wait_for(c, |m| matches!(m, Message::Welcome { .. })) else {
        unreachable!()
    };
    s.clients[c].session = Some(session);
    c
}

#[test]
fn progressive_call_invocations_keep_their_order_across_shards() {
    // Goal: CALL chunks with progress=true reach the same callee as INVOCATIONs with the
    // first one's request ID, in order, the last without progress; the RESULT ends the call;
    // a callee that did not announce the feature makes the call fail with
    // wamp.error.feature_not_supported; a CALL repeating a non-streaming request ID is a
    // protocol violation.
    for_seeds("progressive_call_invocations_keep_their_order_across_shards", seeds(40), |seed| {
        let shards = 1 + (seed % 3) as usize;
        let mut s = Sim::with_config(shards, seed, config(CallTimeoutUnit::Millis, None));
        let callee_shard = s.rng.below(shards);
        let callee = streaming_callee(&mut s, callee_shard);
        s.register_wait(callee, "sim.stream", Dict::new()).expect("register");
        let (caller_shard, ser) = (s.rng.below(shards), serializer_for(s.rng.below(3)));
        let caller = s.join(caller_shard, ser);
        let request = s.next_request(caller);
        let chunks = 5u64;
        for i in 0..chunks {
            let progress = i + 1 < chunks;
            let payload = shardbar::proto::wire::Payload::from_values(ser, Some(&[Value::from(i)]), None);
            let options = Dict::new().with("progress", progress);
            s.send(caller, &Message::Call { request, options, procedure: "sim.stream".into(), payload });
            let steps = s.rng.below(4);
            s.run_some(steps);
        }
        let mut seen = Vec::new();
        let mut inv_request = None;
        while seen.len() < chunks as usize {
            let Message::Invocation { request: r, details, payload, .. } =
                s.wait_for(callee, |m| matches!(m, Message::Invocation { .. }))
            else {
                unreachable!()
            };
            assert_eq!(*inv_request.get_or_insert(r), r, "every chunk goes to the same invocation");
            let progress = details.get("progress").and_then(Value::as_bool).unwrap_or(false);
            seen.push((payload.args().expect("args")[0].as_u64().expect("n"), progress));
        }
        let expected: Vec<_> = (0..chunks).map(|i| (i, i + 1 < chunks)).collect();
        assert_eq!(seen, expected);
        s.yield_(callee, inv_request.expect("invoked"), Dict::new(), vec![Value::str("done")]);
        s.wait_for(caller, |m| matches!(m, Message::Result { request: r, .. } if *r == request));

        // Not streaming: the same request ID again while the call runs is a violation.
        let req = s.call(caller, "sim.stream", Dict::new(), vec![]);
        s.wait_for(callee, |m| matches!(m, Message::Invocation { .. }));
        s.send(
            caller,
            &Message::Call {
                request: req,
                options: Dict::new(),
                procedure: "sim.stream".into(),
                payload: shardbar::proto::wire::Payload::empty(),
            },
        );
        let m = s.wait_for(caller, |m| matches!(m, Message::Abort { .. }));
        assert!(matches!(m, Message::Abort { ref reason, .. } if reason == "wamp.error.protocol_violation"));

        // A callee without the feature.
        let plain = plain_callee(&mut s, callee_shard);
        s.register_wait(plain, "sim.plain", Dict::new()).expect("register");
        let caller = s.join(caller_shard, ser);
        let req = s.call(caller, "sim.plain", Dict::new().with("progress", true), vec![]);
        let m = s.wait_for(caller, |m| matches!(m, Message::Error { request: r, .. } if *r == req));
        assert!(matches!(m, Message::Error { ref error, .. } if error == "wamp.error.feature_not_supported"), "{m:?}");
    });
}
