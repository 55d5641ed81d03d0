//! Deterministic simulation of logins (see `tests/sim/mod.rs`): the CHALLENGE/AUTHENTICATE
//! state machine for every static method with seeded randomness, and dynamic authenticators
//! called across shards (answer, refusal, timeout, absence, and the registration guard).
//! A failure names the seed; replay with `SIM_SEED=<n> cargo test --test simulation_auth`.

mod sim;

use std::sync::Arc;
use std::time::Duration;

use shardbar::proto::auth::config::{
    Authenticator, CraPrincipal, CraSalt, CryptosignPrincipal, Identity, ListenerAuth, Method, Principals, Secret,
    TicketPrincipal,
};
use shardbar::proto::auth::{AuthConfig, cryptosign, secret, wampcra};
use shardbar::proto::realm::RouterConfig;
use shardbar::proto::wire::{Dict, Message, Serializer, Value};
use sim::{ClientId, Sim, for_seeds, seeds, serializer_for};

const SEED_DEV1: [u8; 32] = [7; 32];

fn id(authid: &str, role: &str) -> Identity {
    Identity { authid: Arc::from(authid), role: Arc::from(role), realm: None, extra: None }
}

/// Listener 0: anonymous as `trusted` (the backend providing the authenticator), ticket
/// (static or dynamic), wampcra (plain and salted), cryptosign.
fn config(dynamic_ticket: bool) -> RouterConfig {
    let mut tickets = Principals::new();
    tickets.insert(Arc::from("joe"), TicketPrincipal { id: id("joe", "frontend"), ticket: Secret(b"t1ck3t".to_vec()) });
    let mut cra = Principals::new();
    cra.insert(
        Arc::from("svc"),
        CraPrincipal { id: id("svc", "backend"), key: Secret(b"s3cr3t".to_vec()), salt: None },
    );
    let salt = CraSalt { salt: "salt123".into(), iterations: 10, keylen: 32 };
    let key = wampcra::derive_key("s3cr3t", &salt.salt, salt.iterations, 32);
    cra.insert(Arc::from("salty"), CraPrincipal { id: id("salty", "backend"), key: Secret(key), salt: Some(salt) });
    let mut cs = Principals::new();
    let pk = cryptosign::keypair_from_seed(&SEED_DEV1);
    cs.insert(Arc::from("dev1"), CryptosignPrincipal { id: id("dev1", "device"), authorized_keys: vec![pk] });
    let ticket = if dynamic_ticket {
        Method::Dynamic(Authenticator {
            procedure: Arc::from("com.example.authenticate"),
            realm: Arc::from("realm1"),
            roles: vec![Arc::from("trusted")],
        })
    } else {
        Method::Static(tickets)
    };
    let la = ListenerAuth {
        anonymous: Some(Arc::from("trusted")),
        ticket: Some(ticket),
        wampcra: Some(Method::Static(cra)),
        cryptosign: Some(Method::Static(cs)),
        scram: None,
        tls: None,
    };
    RouterConfig { auth: Arc::new(AuthConfig { listeners: vec![la] }), ..RouterConfig::default() }
}

fn hello(s: &mut Sim, c: ClientId, methods: &[&str], authid: Option<&str>, extra: Option<Dict>) -> Message {
    let mut d = Dict::new()
        .with("roles", Dict::new().with("caller", Dict::new()))
        .with("authmethods", methods.iter().map(|m| Value::str(*m)).collect::<Vec<_>>());
    if let Some(a) = authid {
        d.insert("authid", a);
    }
    if let Some(e) = extra {
        d.insert("authextra", e);
    }
    s.send(c, &Message::Hello { realm: "realm1".into(), details: d });
    s.wait_for(c, |m| matches!(m, Message::Challenge { .. } | Message::Welcome { .. } | Message::Abort { .. }))
}

fn authenticate(s: &mut Sim, c: ClientId, signature: String) -> Message {
    s.send(c, &Message::Authenticate { signature, extra: Dict::new() });
    s.wait_for(c, |m| matches!(m, Message::Welcome { .. } | Message::Abort { .. }))
}

fn welcomed(m: &Message, authid: &str, role: &str, method: &str, provider: &str) {
    let Message::Welcome { details, .. } = m else { panic!("expected WELCOME, got {m:?}") };
    let get = |k: &str| details.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    assert_eq!(
        (get("authid"), get("authrole"), get("authmethod"), get("authprovider")),
        (authid.into(), role.into(), method.into(), provider.into())
    );
}

fn aborted(m: &Message, uri: &str) {
    let Message::Abort { reason, .. } = m else { panic!("expected ABORT {uri}, got {m:?}") };
    assert_eq!(reason, uri);
}

fn challenge_extra(m: &Message) -> Dict {
    let Message::Challenge { extra, .. } = m else { panic!("expected CHALLENGE, got {m:?}") };
    extra.clone()
}

#[test]
fn static_methods_challenge_and_verify() {
    // Goal: each static method's exchange succeeds with the right answer and fails with a
    // wrong one (not_authorized), on any shard and serializer, with challenges from the
    // seeded entropy.
    for_seeds("static_methods_challenge_and_verify", seeds(60), |seed| {
        let mut s = Sim::with_config(1 + (seed % 3) as usize, seed, config(false));
        let shard = s.rng.below(s.shards());
        let ser = serializer_for(s.rng.below(3));

        let c = s.connect(shard, ser);
        hello(&mut s, c, &["ticket"], Some("joe"), None);
        welcomed(&authenticate(&mut s, c, "t1ck3t".into()), "joe", "frontend", "ticket", "static");
        let c = s.connect(shard, ser);
        hello(&mut s, c, &["ticket"], Some("joe"), None);
        aborted(&authenticate(&mut s, c, "wrong".into()), "wamp.error.not_authorized");

        for (authid, key) in [("svc", b"s3cr3t".to_vec()), ("salty", wampcra::derive_key("s3cr3t", "salt123", 10, 32))]
        {
            let c = s.connect(shard, ser);
            let extra = challenge_extra(&hello(&mut s, c, &["wampcra"], Some(authid), None));
            let text = extra.get("challenge").and_then(Value::as_str).expect("challenge").to_owned();
            welcomed(&authenticate(&mut s, c, wampcra::signature(&key, &text)), authid, "backend", "wampcra", "static");
            let c = s.connect(shard, ser);
            hello(&mut s, c, &["wampcra"], Some(authid), None);
            aborted(&authenticate(&mut s, c, wampcra::signature(b"nope", &text)), "wamp.error.not_authorized");
        }

        let pk_hex = secret::hex_encode(&cryptosign::keypair_from_seed(&SEED_DEV1));
        let c = s.connect(shard, ser);
        let extra = challenge_extra(&hello(
            &mut s,
            c,
            &["cryptosign"],
            None,
            Some(Dict::new().with("pubkey", pk_hex.as_str())),
        ));
        let ch_hex = extra.get("challenge").and_then(Value::as_str).expect("challenge");
        let mut ch = [0u8; 32];
        assert!(secret::hex_decode_into(ch_hex, &mut ch), "challenge is 64 hex characters");
        let sig = cryptosign::sign_challenge(&SEED_DEV1, &ch);
        welcomed(&authenticate(&mut s, c, sig.clone()), "dev1", "device", "cryptosign", "static");
        // A replayed signature does not answer a fresh challenge.
        let c = s.connect(shard, ser);
        hello(&mut s, c, &["cryptosign"], Some("dev1"), Some(Dict::new().with("pubkey", pk_hex.as_str())));
        aborted(&authenticate(&mut s, c, sig), "wamp.error.not_authorized");
    });
}

#[test]
fn challenges_come_from_the_seed() {
    // Goal: the same seed gives the same challenges (replayable); another seed does not.
    let first = |seed| {
        let mut s = Sim::with_config(2, seed, config(false));
        let c = s.connect(0, Serializer::Json);
        let pk = secret::hex_encode(&cryptosign::keypair_from_seed(&SEED_DEV1));
        let m = hello(&mut s, c, &["cryptosign"], Some("dev1"), Some(Dict::new().with("pubkey", pk)));
        challenge_extra(&m).get("challenge").and_then(Value::as_str).expect("challenge").to_owned()
    };
    assert_eq!(first(5), first(5));
    assert_ne!(first(5), first(6));
}

#[test]
fn dynamic_authenticator_across_shards() {
    // Goal: a ticket login on one shard asks the authenticator registered on another; its
    // answer (role string, dict, ERROR) decides; no answer within the timeout, or no
    // authenticator, means ABORT authentication_failed — never a hung login. Only the
    // trusted role may register the procedure.
    for_seeds("dynamic_authenticator_across_shards", seeds(40), |seed| {
        let shards = 2 + (seed % 2) as usize;
        let mut s = Sim::with_config(shards, seed, config(true));
        let (bshard, cshard) = (s.rng.below(shards), s.rng.below(shards));
        let ser = serializer_for(s.rng.below(3));

        // Not registered yet.
        let c = s.connect(cshard, ser);
        hello(&mut s, c, &["ticket"], Some("joe"), None);
        aborted(&authenticate(&mut s, c, "x".into()), "wamp.error.authentication_failed");

        let backend = s.join(bshard, ser);
        s.register_wait(backend, "com.example.authenticate", Dict::new()).expect("trusted may register");

        for (ticket, answer, expect) in [
            ("a", Some(Value::str("frontend")), Ok(("joe", "frontend"))),
            ("b", Some(Value::Dict(Dict::new().with("role", "ops").with("authid", "renamed"))), Ok(("renamed", "ops"))),
            ("c", None, Err("wamp.error.authentication_failed")),
        ] {
            let c = s.connect(cshard, ser);
            hello(&mut s, c, &["ticket"], Some("joe"), None);
            s.send(c, &Message::Authenticate { signature: ticket.into(), extra: Dict::new() });
            let inv = s.wait_for(backend, |m| matches!(m, Message::Invocation { .. }));
            let Message::Invocation { request, payload, .. } = inv else { unreachable!() };
            let args = payload.args().expect("args");
            assert_eq!(args[0].as_str(), Some("realm1"));
            assert_eq!(args[2].as_dict().and_then(|d| d.get("ticket")).and_then(Value::as_str), Some(ticket));
            match answer {
                Some(v) => s.yield_(backend, request, Dict::new(), vec![v]),
                None => {
                    let payload = shardbar::proto::wire::Payload::empty();
                    s.send(
                        backend,
                        &Message::Error {
                            request_type: 68,
                            request,
                            details: Dict::new(),
                            error: "wamp.error.not_authorized".into(),
                            payload,
                        },
                    );
                }
            }
            let m = s.wait_for(c, |m| matches!(m, Message::Welcome { .. } | Message::Abort { .. }));
            match expect {
                Ok((authid, role)) => welcomed(&m, authid, role, "ticket", "dynamic"),
                Err(uri) => aborted(&m, uri),
            }
        }

        // Timeout: the authenticator never answers; it is interrupted.
        let c = s.connect(cshard, ser);
        hello(&mut s, c, &["ticket"], Some("joe"), None);
        s.send(c, &Message::Authenticate { signature: "slow".into(), extra: Dict::new() });
        s.wait_for(backend, |m| matches!(m, Message::Invocation { .. }));
        s.advance(Duration::from_secs(6));
        let m = s.wait_for(c, |m| matches!(m, Message::Welcome { .. } | Message::Abort { .. }));
        aborted(&m, "wamp.error.authentication_failed");

        // An ordinary (non-trusted) session cannot register it, exactly or by pattern.
        let joe = s.connect(cshard, ser);
        hello(&mut s, joe, &["ticket"], Some("joe"), None);
        s.send(joe, &Message::Authenticate { signature: "a".into(), extra: Dict::new() });
        let Message::Invocation { request, .. } = s.wait_for(backend, |m| matches!(m, Message::Invocation { .. }))
        else {
            unreachable!()
        };
        s.yield_(backend, request, Dict::new(), vec![Value::str("frontend")]);
        s.wait_for(joe, |m| matches!(m, Message::Welcome { .. }));
        for (proc, opts) in [
            ("com.example.authenticate", Dict::new()),
            ("com.example", Dict::new().with("match", "prefix")),
            ("com..authenticate", Dict::new().with("match", "wildcard")),
        ] {
            assert_eq!(s.register_wait(joe, proc, opts), Err("wamp.error.not_authorized".to_owned()), "{proc}");
        }
    });
}

/// realm1 with roles: `anonymous` may publish/subscribe `sim.open.` and register the
/// authorizer; `frontend` (ticket joe) asks the authorizer `sim.authorize`.
fn authz_config() -> RouterConfig {
    use shardbar::proto::authz::{Action, Role, Roles, Rule};
    use shardbar::proto::wire::uri::MatchPolicy;
    let mut config = config(false);
    let mut roles = Roles::default();
    let rule = |uri: &str, policy, allow: &[Action]| Rule {
        uri: uri.into(),
        policy,
        allow: allow.to_vec(),
        disclose_caller: false,
        disclose_publisher: false,
    };
    roles.insert(
        Arc::from("trusted"),
        Role::from_rules(vec![
            rule("sim.open.", MatchPolicy::Prefix, &[Action::Publish, Action::Subscribe]),
            rule("sim.authorize", MatchPolicy::Exact, &[Action::Register]),
            rule("sim.open.secret", MatchPolicy::Exact, &[Action::Subscribe]),
        ]),
    );
    roles.insert(Arc::from("frontend"), Role::Dynamic { authorizer: Arc::from("sim.authorize") });
    config.realms[0].roles = Some(Arc::new(roles));
    config
}

fn error_uri(m: &Message) -> Option<&str> {
    match m {
        Message::Error { error, .. } => Some(error),
        _ => None,
    }
}

#[test]
fn permissions_and_authorizers_across_shards() {
    // Goal: static rules decide once per request on the requester's shard (the most specific
    // rule wins, an unacknowledged denied PUBLISH is dropped silently); a dynamic
    // authorizer on another shard is asked per request unless it said `cache`, its answer
    // releases or denies the parked request, and no answer in time denies.
    for_seeds("permissions_and_authorizers_across_shards", seeds(40), |seed| {
        let shards = 2 + (seed % 3) as usize;
        let mut s = Sim::with_config(shards, seed, authz_config());
        let ser = serializer_for(s.rng.below(3));
        let (a, b) = (s.rng.below(shards), s.rng.below(shards));
        let backend = s.join(a, ser); // anonymous → role "trusted"
        let sub = s.subscribe_wait(backend, "sim.open.t", Dict::new());
        let req = s.subscribe(backend, "sim.closed", Dict::new());
        let m = s.wait_for(backend, |m| matches!(m, Message::Error { request, .. } if *request == req));
        assert_eq!(error_uri(&m), Some("wamp.error.not_authorized"));
        // Exact rule without publish beats the prefix that allows it.
        let req = s.publish(backend, "sim.open.secret", Dict::new().with("acknowledge", true), vec![]);
        let m = s.wait_for(
            backend,
            |m| matches!(m, Message::Error { request, .. } | Message::Published { request, .. } if *request == req),
        );
        assert_eq!(error_uri(&m), Some("wamp.error.not_authorized"));
        s.publish(backend, "sim.open.secret", Dict::new(), vec![]);
        s.register_wait(backend, "sim.authorize", Dict::new()).expect("trusted registers the authorizer");

        let joe = s.connect(b, ser);
        hello(&mut s, joe, &["ticket"], Some("joe"), None);
        welcomed(&authenticate(&mut s, joe, "t1ck3t".into()), "joe", "frontend", "ticket", "static");
        // Round 0 allows with cache; round 1 denies another topic without cache; round 2
        // asks again for that topic (nothing was cached) and allows.
        for (round, (topic, allow, cache)) in
            [("sim.open.t", true, true), ("sim.open.u", false, false), ("sim.open.u", true, false)]
                .into_iter()
                .enumerate()
        {
            let req = s.publish(joe, topic, Dict::new().with("acknowledge", true), vec![Value::from(round as u64)]);
            let inv = s.wait_for(backend, |m| matches!(m, Message::Invocation { .. }));
            let Message::Invocation { request, payload, .. } = inv else { unreachable!() };
            let args = payload.args().expect("args");
            assert_eq!((args[1].as_str(), args[2].as_str()), (Some(topic), Some("publish")));
            let answer = Dict::new().with("allow", allow).with("cache", cache);
            s.yield_(backend, request, Dict::new(), vec![Value::Dict(answer)]);
            let m = s.wait_for(
                joe,
                |m| matches!(m, Message::Error { request, .. } | Message::Published { request, .. } if *request == req),
            );
            assert_eq!(matches!(m, Message::Published { .. }), allow, "round {round}: {m:?}");
            if round == 0 {
                let ev = s.wait_for(backend, |m| matches!(m, Message::Event { .. }));
                assert!(matches!(ev, Message::Event { subscription, .. } if subscription == sub));
                // Cached: the same request again is decided without the authorizer.
                let req = s.publish(joe, topic, Dict::new().with("acknowledge", true), vec![]);
                s.wait_for(joe, |m| matches!(m, Message::Published { request, .. } if *request == req));
                s.wait_for(backend, |m| matches!(m, Message::Event { .. }));
                // Another action on the same URI is not covered by it.
                break_cache_check(&mut s, joe, backend);
            }
        }
        // Order: a request decided from the cache waits behind an earlier one of the same
        // session that waits for the authorizer.
        let first = s.publish(joe, "sim.open.v", Dict::new().with("acknowledge", true), vec![]);
        let second = s.publish(joe, "sim.open.t", Dict::new().with("acknowledge", true), vec![]);
        let Message::Invocation { request, .. } = s.wait_for(backend, |m| matches!(m, Message::Invocation { .. }))
        else {
            unreachable!()
        };
        s.run_until_idle();
        assert!(
            !s.clients[joe].inbox.iter().any(|m| matches!(m, Message::Published { .. })),
            "a cached decision overtook a request waiting for the authorizer"
        );
        s.yield_(backend, request, Dict::new(), vec![Value::Bool(true)]);
        let order: Vec<_> = (0..2)
            .map(|_| match s.wait_for(joe, |m| matches!(m, Message::Published { .. })) {
                Message::Published { request, .. } => request,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, vec![first, second]);

        // No answer in time: denied.
        let req = s.call(joe, "sim.open.proc", Dict::new(), vec![]);
        s.wait_for(backend, |m| matches!(m, Message::Invocation { .. }));
        s.advance(Duration::from_secs(6));
        let m = s.wait_for(joe, |m| matches!(m, Message::Error { request, .. } if *request == req));
        assert_eq!(error_uri(&m), Some("wamp.error.not_authorized"));
    });
}

/// A SUBSCRIBE is not covered by a cached PUBLISH decision on the same URI: the authorizer
/// is asked (and denies).
fn break_cache_check(s: &mut Sim, joe: ClientId, backend: ClientId) {
    let req = s.subscribe(joe, "sim.open.t", Dict::new());
    let Message::Invocation { request, payload, .. } = s.wait_for(backend, |m| matches!(m, Message::Invocation { .. }))
    else {
        unreachable!()
    };
    assert_eq!(payload.args().expect("args")[2].as_str(), Some("subscribe"));
    s.yield_(backend, request, Dict::new(), vec![Value::Bool(false)]);
    let m = s.wait_for(joe, |m| matches!(m, Message::Error { request, .. } if *request == req));
    assert_eq!(error_uri(&m), Some("wamp.error.not_authorized"));
}

#[test]
fn one_session_cannot_take_every_authorizer_slot() {
    // Goal: requests parked for the authorizer are bounded per session; the ones over the
    // bound are denied at once instead of waiting (and holding their payloads).
    let mut s = Sim::with_config(2, 3, authz_config());
    let backend = s.join(0, Serializer::MsgPack);
    s.register_wait(backend, "sim.authorize", Dict::new()).expect("register");
    let joe = s.connect(1, Serializer::Json);
    hello(&mut s, joe, &["ticket"], Some("joe"), None);
    authenticate(&mut s, joe, "t1ck3t".into());
    let max = shardbar::limits::AUTHORIZER_PARKED_PER_SESSION_MAX;
    let requests: Vec<_> = (0..max + 5)
        .map(|i| s.publish(joe, &format!("sim.open.p{i}"), Dict::new().with("acknowledge", true), vec![]))
        .collect();
    s.run_until_idle();
    let denied: Vec<_> = s.clients[joe]
        .inbox
        .iter()
        .filter_map(|m| match m {
            Message::Error { request, error, .. } if error == "wamp.error.not_authorized" => Some(*request),
            _ => None,
        })
        .collect();
    assert_eq!(denied, requests[max..].to_vec());
    let asked = s.clients[backend].inbox.iter().filter(|m| matches!(m, Message::Invocation { .. })).count();
    assert_eq!(asked, max);
}
