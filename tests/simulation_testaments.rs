//! Deterministic simulation of testaments (see `tests/sim/mod.rs`): a session on one shard
//! leaves testaments, its transport drops, and a subscriber on another shard gets them as
//! that session's publications — after its earlier events, `detached` before `destroyed`,
//! in the order added, before `wamp.session.on_leave` — with mesh delivery shuffled by seed.
//! Replay a failure with `SIM_SEED=<n> cargo test --test simulation_testaments`.

mod sim;

use shardbar::proto::wire::{Dict, Id, Message, Payload, Value};
use sim::{ClientId, Sim, for_seeds, seeds, serializer_for};

/// CALL `procedure` with `args` and `kwargs`; the RESULT's first value, or the ERROR URI.
fn call(s: &mut Sim, c: ClientId, procedure: &str, args: Vec<Value>, kwargs: Dict) -> Result<Value, String> {
    let request = s.next_request(c);
    let payload = Payload::from_values(s.clients[c].ser, Some(&args), Some(&kwargs));
    s.send(c, &Message::Call { request, options: Dict::new(), procedure: procedure.into(), payload });
    let answer = s.wait_for(
        c,
        |m| matches!(m, Message::Result { request: r, .. } | Message::Error { request: r, .. } if *r == request),
    );
    match answer {
        Message::Result { payload, .. } => {
            Ok(payload.args().expect("result args").into_iter().next().unwrap_or(Value::Null))
        }
        Message::Error { error, .. } => Err(error),
        _ => unreachable!(),
    }
}

fn add(s: &mut Sim, c: ClientId, label: &str, scope: &str, options: Dict) -> Id {
    let args =
        vec![Value::str("com.t"), Value::List(vec![Value::str(label)]), Value::Dict(Dict::new().with("n", 7u64))];
    let kwargs = Dict::new().with("scope", scope).with("publish_options", options);
    let id = call(s, c, "wamp.session.add_testament", args, kwargs);
    id.expect("add_testament").as_u64().expect("a publication ID")
}

#[test]
fn testaments_cross_shards_on_transport_loss_in_order_before_on_leave() {
    // Goal: on transport loss the dying session's testaments reach a subscriber on another
    // shard as its publications: after its earlier PUBLISH, detached before destroyed, each
    // in insertion order, carrying the publication IDs add_testament returned, args and
    // kwargs intact, disclosed as asked, a flushed one never, and all before on_leave.
    // Method: 2–3 shards; per seed the serializers vary and the mesh is shuffled, partly
    // while the calls are in flight.
    for_seeds("testaments_cross_shards_on_transport_loss_in_order_before_on_leave", seeds(40), |seed| {
        let shards = 2 + (seed % 2) as usize;
        let mut s = Sim::new(shards, seed);
        let home = (seed as usize) % shards;
        let away = (home + 1) % shards;
        let sub = s.join(away, serializer_for(seed as usize));
        let sub_t = s.subscribe_wait(sub, "com.t", Dict::new());
        let sub_leave = s.subscribe_wait(sub, "wamp.session.on_leave", Dict::new());
        let dying = s.join(home, serializer_for(seed as usize + 1));
        let me = s.session(dying);
        s.publish(dying, "com.t", Dict::new(), vec![Value::str("before")]);
        s.run_some((seed % 5) as usize);
        let d1 = add(&mut s, dying, "destroyed-1", "destroyed", Dict::new().with("disclose_me", true));
        let gone = add(&mut s, dying, "flushed", "detached", Dict::new());
        let flushed = call(&mut s, dying, "wamp.session.flush_testaments", vec![Value::str("detached")], Dict::new());
        assert_eq!(flushed, Ok(Value::from(1u64)), "seed {seed}");
        let a1 = add(&mut s, dying, "detached-1", "detached", Dict::new());
        let d2 = add(&mut s, dying, "destroyed-2", "destroyed", Dict::new());
        let bad = call(
            &mut s,
            dying,
            "wamp.session.add_testament",
            vec![Value::str("com.t")],
            Dict::new().with("scope", "later"),
        );
        assert_eq!(bad, Err("wamp.error.testament_error".to_owned()), "seed {seed}");
        s.run_some((seed % 3) as usize);
        s.disconnect(dying);
        s.run_until_idle();

        let mut got = Vec::new();
        for m in &s.clients[sub].log {
            if let Message::Event { subscription, publication, details, payload } = m {
                let args = payload.args().expect("event args");
                if *subscription == sub_leave {
                    assert_eq!(args.first(), Some(&Value::from(me)), "seed {seed}");
                    got.push(("on_leave".to_owned(), *publication, details.clone()));
                    continue;
                }
                assert_eq!(*subscription, sub_t, "seed {seed}");
                let label = args.first().and_then(Value::as_str).expect("label").to_owned();
                if label != "before" {
                    assert_eq!(payload.kwargs().expect("kwargs").get("n"), Some(&Value::from(7u64)), "seed {seed}");
                }
                got.push((label, *publication, details.clone()));
            }
        }
        let labels: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(labels, ["before", "detached-1", "destroyed-1", "destroyed-2", "on_leave"], "seed {seed}");
        let ids: Vec<Id> = got[1..4].iter().map(|g| g.1).collect();
        assert_eq!(ids, [a1, d1, d2], "seed {seed}: the IDs add_testament returned");
        assert!(!ids.contains(&gone), "seed {seed}");
        assert_eq!(got[2].2.get("publisher"), Some(&Value::from(me)), "seed {seed}: disclose_me honoured");
        assert_eq!(got[1].2.get("publisher"), None, "seed {seed}: not disclosed unless asked");
        let stats = s.cores[home].stats();
        assert_eq!((stats.testaments_published, stats.testaments_stored, stats.testament_bytes_stored), (3, 0, 0));
        assert_eq!((stats.testaments_added, stats.testaments_refused), (4, 1), "seed {seed}");
    });
}
