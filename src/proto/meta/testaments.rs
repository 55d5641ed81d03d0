//! Testaments (`wamp.session.add_testament`, `wamp.session.flush_testaments`; the spec's
//! Testament feature with Crossbar's shapes, `../shared/WAMP-ADVANCED-NOTES.md` §D.6):
//! events a session leaves behind. They are kept in the session on its home shard, per
//! scope in the order they were added, and published **as that session** when it ends,
//! however it ends (`lifecycle::end_session`): the `detached` ones, then the `destroyed`
//! ones, before `wamp.session.on_leave`. Going through the normal publish path keeps the
//! publisher's FIFO: subscribers see the session's earlier events first.
//!
//! This file parses the two calls, holds a session's testaments within their bounds
//! (`limits::SESSION_TESTAMENTS_MAX`, `SESSION_TESTAMENT_BYTES_MAX`, and the shard's
//! `SHARD_TESTAMENT_BYTES_MAX`), and publishes them at the end. It does not authorize: the
//! caller (`core/procedures.rs`) checks that the session may PUBLISH to the topic.

use std::sync::Arc;

use super::super::broker::PublishOptions;
use super::super::out::Out;
use super::super::pubsub;
use super::super::realm::Realm;
use super::super::session::Session;
use super::super::uris;
use super::super::wire::uri;
use super::super::wire::{Dict, Id, Payload, Value, peer_text};
use super::{Refusal, bad};
use crate::limits;

pub(crate) const ADD: &str = "wamp.session.add_testament";
pub(crate) const FLUSH: &str = "wamp.session.flush_testaments";

/// When a testament is published. Without session resumption both happen at the end of
/// the session, `detached` first; they stay separate so each can be flushed alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    Detached,
    Destroyed,
}

/// One stored testament: the publication it becomes.
#[derive(Debug)]
pub(crate) struct Testament {
    /// The publication ID the event will carry (returned by `add_testament`, like Crossbar).
    pub publication: Id,
    pub topic: Arc<str>,
    /// As asked, without `acknowledge` and `exclude_me`; disclosure forced by a rule is in.
    pub options: PublishOptions,
    pub payload: Payload,
}

impl Testament {
    /// What it counts against the bytes bounds: its topic and payload.
    fn bytes(&self) -> usize {
        self.topic.len() + self.payload.len_bytes()
    }
}

/// A session's testaments.
#[derive(Debug, Default)]
pub(crate) struct Testaments {
    detached: Vec<Testament>,
    destroyed: Vec<Testament>,
    bytes: usize,
}

impl Testaments {
    pub fn len(&self) -> usize {
        self.detached.len() + self.destroyed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn scope(&mut self, scope: Scope) -> &mut Vec<Testament> {
        match scope {
            Scope::Detached => &mut self.detached,
            Scope::Destroyed => &mut self.destroyed,
        }
    }

    /// Keep `t` in `scope` unless the session's or the shard's bounds say no (the reason).
    /// `shard_bytes`: the bytes all of the shard's sessions hold now.
    pub fn add(&mut self, scope: Scope, t: Testament, shard_bytes: usize) -> Result<usize, String> {
        let bytes = t.bytes();
        if self.len() >= limits::SESSION_TESTAMENTS_MAX {
            return Err(format!("a session may leave at most {} testaments", limits::SESSION_TESTAMENTS_MAX));
        }
        if self.bytes + bytes > limits::SESSION_TESTAMENT_BYTES_MAX {
            let max = limits::SESSION_TESTAMENT_BYTES_MAX;
            return Err(format!("a session's testaments may hold at most {max} bytes (this one: {bytes})"));
        }
        if shard_bytes + bytes > limits::SHARD_TESTAMENT_BYTES_MAX {
            return Err("the router holds too many testaments; try again later".to_owned());
        }
        self.bytes += bytes;
        self.scope(scope).push(t);
        Ok(bytes)
    }

    /// Remove the testaments of `scope`: (how many, their bytes).
    pub fn flush(&mut self, scope: Scope) -> (usize, usize) {
        let gone = std::mem::take(self.scope(scope));
        let bytes: usize = gone.iter().map(Testament::bytes).sum();
        self.bytes -= bytes;
        (gone.len(), bytes)
    }

    /// All testaments in publishing order (`detached`, then `destroyed`), and their bytes.
    fn take_all(&mut self) -> (Vec<Testament>, usize) {
        let bytes = std::mem::take(&mut self.bytes);
        let mut all = std::mem::take(&mut self.detached);
        all.append(&mut self.destroyed);
        (all, bytes)
    }
}

/// A parsed `add_testament` call (topic checked against the realm's URI rules).
#[derive(Debug)]
pub(crate) struct AddTestament {
    pub topic: String,
    pub args: Vec<Value>,
    pub kwargs: Dict,
    pub options: PublishOptions,
    pub scope: Scope,
}

/// `add_testament(topic, args, kwargs, publish_options=None, scope="destroyed")`:
/// positional or by keyword from `publish_options` on.
pub(crate) fn parse_add(args: &[Value], kwargs: &Dict, strict_uri: bool) -> Result<AddTestament, Refusal> {
    let arg = |i: usize, key: &str| match args.get(i) {
        Some(v) => Some(v),
        None => kwargs.get(key),
    };
    let topic = match args.first() {
        Some(Value::Str(t)) => t.clone(),
        Some(other) => return Err(bad(format!("topic must be a string, got {}", other.type_name()))),
        None => return Err(bad("expected the topic as the first argument".to_owned())),
    };
    if !uri::is_valid(&topic, strict_uri, false) || uri::is_reserved(&topic) {
        return Err((uris::INVALID_URI, format!("invalid topic {:?}", peer_text(&topic))));
    }
    let event_args = match args.get(1) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::List(l)) => l.clone(),
        Some(other) => return Err(bad(format!("args must be a list, got {}", other.type_name()))),
    };
    let event_kwargs = match args.get(2) {
        None | Some(Value::Null) => Dict::new(),
        Some(Value::Dict(d)) => d.clone(),
        Some(other) => return Err(bad(format!("kwargs must be a dict, got {}", other.type_name()))),
    };
    let mut options = match arg(3, "publish_options") {
        None | Some(Value::Null) => Dict::new(),
        Some(Value::Dict(d)) => d.clone(),
        Some(other) => return Err(bad(format!("publish_options must be a dict, got {}", other.type_name()))),
    };
    // Crossbar drops these: nobody is there to acknowledge, and the session is leaving.
    options.remove("acknowledge");
    options.remove("exclude_me");
    let options = PublishOptions::parse(&options).map_err(|e| bad(e.to_string()))?;
    let scope = scope(arg(4, "scope"))?;
    Ok(AddTestament { topic, args: event_args, kwargs: event_kwargs, options, scope })
}

/// `flush_testaments(scope="destroyed")`.
pub(crate) fn parse_flush(args: &[Value], kwargs: &Dict) -> Result<Scope, Refusal> {
    scope(args.first().or_else(|| kwargs.get("scope")))
}

fn scope(v: Option<&Value>) -> Result<Scope, Refusal> {
    match v {
        None | Some(Value::Null) => Ok(Scope::Destroyed),
        Some(Value::Str(s)) if s == "destroyed" => Ok(Scope::Destroyed),
        Some(Value::Str(s)) if s == "detached" => Ok(Scope::Detached),
        Some(other) => {
            let shown = other.as_str().map_or_else(|| other.type_name().to_owned(), |s| format!("{:?}", peer_text(s)));
            Err((uris::TESTAMENT_ERROR, format!("scope must be \"detached\" or \"destroyed\", got {shown}")))
        }
    }
}

/// Session `s` is ending: publish its testaments as it, `detached` then `destroyed`, each
/// in the order added. The session's own `exclude_me` is moot (it is leaving); it is
/// excluded like the publisher of any PUBLISH.
pub(crate) fn publish_on_end(cx: &mut Out, realm: &mut Realm, s: &mut Session) {
    let (all, bytes) = s.testaments.take_all();
    let mut n = 0u64;
    for t in all {
        n += 1;
        let options = PublishOptions { exclude_me: true, ..t.options };
        pubsub::publish_as(cx, realm, s, t.publication, t.topic, options, t.payload);
    }
    cx.stats.testaments_published += n;
    cx.stats.testaments_stored -= n;
    cx.stats.testament_bytes_stored -= bytes as u64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::Serializer;

    fn testament(id: Id, payload_bytes: usize) -> Testament {
        let args = [Value::str("x".repeat(payload_bytes))];
        Testament {
            publication: id,
            topic: Arc::from("com.t"),
            options: PublishOptions::default(),
            payload: Payload::from_values(Serializer::Json, Some(&args), None),
        }
    }

    #[test]
    fn add_parses_crossbar_arguments_and_strips_options() {
        let options = Dict::new().with("acknowledge", true).with("exclude_me", false).with("disclose_me", true);
        let args =
            [Value::str("com.t"), Value::List(vec![Value::from(1u64)]), Value::Dict(Dict::new().with("k", 2u64))];
        let kwargs = Dict::new().with("publish_options", options).with("scope", "detached");
        let a = parse_add(&args, &kwargs, false).expect("valid");
        assert_eq!(a.topic, "com.t");
        assert_eq!(a.args, vec![Value::from(1u64)]);
        assert_eq!(a.kwargs.get("k"), Some(&Value::from(2u64)));
        assert!(a.options.disclose_me && !a.options.acknowledge && a.options.exclude_me);
        assert_eq!(a.scope, Scope::Detached);
        let only_topic = parse_add(&[Value::str("com.t")], &Dict::new(), false).expect("valid");
        assert_eq!(only_topic.scope, Scope::Destroyed);
    }

    #[test]
    fn add_refuses_bad_scope_topic_and_types() {
        let topic = |t: &str| vec![Value::str(t), Value::List(vec![]), Value::Dict(Dict::new())];
        let scope = |s: Value| Dict::new().with("scope", s);
        let err = |r: Result<AddTestament, Refusal>| r.expect_err("refused").0;
        assert_eq!(err(parse_add(&topic("com.t"), &scope(Value::str("gone")), false)), uris::TESTAMENT_ERROR);
        assert_eq!(err(parse_add(&topic("com.t"), &scope(Value::from(3u64)), false)), uris::TESTAMENT_ERROR);
        assert_eq!(err(parse_add(&topic("wamp.session.x"), &Dict::new(), false)), uris::INVALID_URI);
        assert_eq!(err(parse_add(&topic("com..t"), &Dict::new(), false)), uris::INVALID_URI);
        assert_eq!(err(parse_add(&[Value::from(1u64)], &Dict::new(), false)), uris::INVALID_ARGUMENT);
        assert_eq!(
            err(parse_add(&[Value::str("com.t"), Value::str("no")], &Dict::new(), false)),
            uris::INVALID_ARGUMENT
        );
        let bad_options = Dict::new().with("publish_options", Dict::new().with("eligible", "x"));
        assert_eq!(err(parse_add(&topic("com.t"), &bad_options, false)), uris::INVALID_ARGUMENT);
        assert_eq!(parse_flush(&[], &Dict::new()), Ok(Scope::Destroyed));
        assert_eq!(parse_flush(&[Value::str("detached")], &Dict::new()), Ok(Scope::Detached));
        assert_eq!(parse_flush(&[], &scope(Value::str("x"))).map_err(|e| e.0), Err(uris::TESTAMENT_ERROR));
    }

    #[test]
    fn bounded_flushed_and_taken_in_order() {
        // Goal: the count and byte bounds refuse, flush frees its scope only, and the end
        // takes detached before destroyed, each in insertion order.
        let mut t = Testaments::default();
        t.add(Scope::Destroyed, testament(1, 10), 0).expect("room");
        t.add(Scope::Detached, testament(2, 10), 0).expect("room");
        t.add(Scope::Destroyed, testament(3, 10), 0).expect("room");
        assert!(t.add(Scope::Destroyed, testament(9, limits::SESSION_TESTAMENT_BYTES_MAX), 0).is_err());
        assert!(t.add(Scope::Destroyed, testament(9, 10), limits::SHARD_TESTAMENT_BYTES_MAX).is_err());
        let (all, _) = t.take_all();
        assert_eq!(all.iter().map(|x| x.publication).collect::<Vec<_>>(), vec![2, 1, 3]);
        assert!(t.is_empty() && t.bytes == 0);
        for i in 0..limits::SESSION_TESTAMENTS_MAX {
            t.add(Scope::Detached, testament(i as Id, 1), 0).expect("room");
        }
        assert!(t.add(Scope::Destroyed, testament(0, 1), 0).is_err());
        assert_eq!(t.flush(Scope::Destroyed).0, 0);
        assert_eq!(t.flush(Scope::Detached).0, limits::SESSION_TESTAMENTS_MAX);
        assert_eq!(t.bytes, 0);
    }
}
