//! The dealer's state on one shard, split like the broker's:
//!
//! - **Route replica** (every shard): procedure (exact/prefix/wildcard) → registration ID,
//!   invoke policy and callees in registration order. The caller's shard resolves a call
//!   here with the spec's best-match rule and picks the callee, so the invocation goes
//!   straight from the caller's shard to the callee's.
//! - **Owned registrations** (the owner shard): authoritative callee lists; every change is
//!   pushed to all replicas.
//!
//! Calls in flight live in the call table (`rpc::table`); the best-match rule is
//! `pattern::UriIndex::best_match`.

use crate::limits;
use crate::proto::Map;
use std::sync::Arc;
use std::time::Instant;

use super::mesh::{Callee, InvokePolicy};
use super::options::{self, OptionError};
use super::pattern::UriIndex;
use super::wire::ids::{IdGen, router_scope_id};
use super::wire::uri::MatchPolicy;
use super::wire::{Dict, Id};

/// A replica's entry for one registration.
#[derive(Clone, Debug)]
pub struct RegRoute {
    pub id: Id,
    pub procedure: Arc<str>,
    pub policy: MatchPolicy,
    pub invoke: InvokePolicy,
    pub disclose_caller: bool,
    pub callees: Arc<Vec<Callee>>,
    /// Round-robin position (per shard: each caller shard rotates on its own, which spreads
    /// load evenly without a shared counter).
    rr: usize,
}

/// The owner's entry for one registration.
#[derive(Clone, Debug)]
pub struct OwnedReg {
    pub id: Id,
    pub procedure: Arc<str>,
    pub policy: MatchPolicy,
    pub invoke: InvokePolicy,
    pub disclose_caller: bool,
    pub callees: Vec<Callee>,
    /// When the owner created it (`wamp.registration.get`'s `created`).
    pub created: Instant,
}

type Key = (Arc<str>, MatchPolicy);

#[derive(Debug, Default)]
pub struct Dealer {
    routes: UriIndex<RegRoute>,

    owned: Map<Key, OwnedReg>,
    owned_by_id: Map<Id, Key>,
    next_seq: u64,
}

impl Dealer {
    // ---- route replica ----

    /// Apply the owner's update (empty callee list = registration deleted).
    pub fn set_route(&mut self, reg: &OwnedRegView<'_>) {
        let OwnedRegView { id, procedure, policy, invoke, disclose_caller, callees } = *reg;
        if callees.is_empty() {
            self.routes.remove(procedure, policy);
            return;
        }
        let make = || RegRoute {
            id,
            procedure: procedure.clone(),
            policy,
            invoke,
            disclose_caller,
            callees: callees.clone(),
            rr: 0,
        };
        let slot = self.routes.entry_or_insert_with(procedure, policy, make);
        slot.id = id;
        slot.invoke = invoke;
        slot.disclose_caller = disclose_caller;
        slot.callees = callees.clone();
    }

    /// The registration a call to `procedure` goes to: exact, else the longest prefix, else
    /// the most specific wildcard (spec, pattern-based registration; see
    /// `UriIndex::best_match`).
    pub fn resolve(&mut self, procedure: &str) -> Option<&mut RegRoute> {
        self.routes.best_match_mut(procedure)
    }

    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// Every registration in the replica: (policy, ID).
    pub fn for_each_route(&self, mut visit: impl FnMut(MatchPolicy, Id)) {
        self.routes.for_each(|policy, r| visit(policy, r.id));
    }

    /// The registration of exactly (procedure, policy) in the replica.
    pub fn route_id(&self, procedure: &str, policy: MatchPolicy) -> Option<Id> {
        self.routes.get(procedure, policy).map(|r| r.id)
    }

    /// The registration a call to `procedure` would go to, without touching its state.
    pub fn best_id(&self, procedure: &str) -> Option<Id> {
        self.routes.best_match(procedure).map(|r| r.id)
    }

    /// No route and no owned registration.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.owned.is_empty()
    }

    // ---- owned registrations ----

    /// Add a callee (`now`: the creation time if this creates the registration). Refuses
    /// (with the error URI and a message) when the procedure is registered with `single`,
    /// with another invoke policy, or by the same session.
    #[allow(clippy::too_many_arguments)]
    pub fn owner_register(
        &mut self,
        owner: usize,
        procedure: &Arc<str>,
        policy: MatchPolicy,
        invoke: InvokePolicy,
        disclose_caller: bool,
        callee: Callee,
        now: Instant,
    ) -> Result<&OwnedReg, RegisterRefused> {
        let key = (procedure.clone(), policy);
        if let Some(reg) = self.owned.get(&key) {
            if reg.invoke == InvokePolicy::Single || invoke == InvokePolicy::Single {
                return Err(RegisterRefused::Exists);
            }
            if reg.invoke != invoke {
                return Err(RegisterRefused::OtherPolicy { registered: reg.invoke, asked: invoke });
            }
            if reg.callees.iter().any(|c| c.session == callee.session) {
                return Err(RegisterRefused::SameSession);
            }
            if reg.callees.len() >= limits::REGISTRATION_CALLEES_MAX {
                return Err(RegisterRefused::TooManyCallees);
            }
        } else {
            self.next_seq += 1;
            let id = router_scope_id(self.next_seq, owner);
            self.owned_by_id.insert(id, key.clone());
            self.owned.insert(
                key.clone(),
                OwnedReg {
                    id,
                    procedure: procedure.clone(),
                    policy,
                    invoke,
                    disclose_caller,
                    callees: Vec::new(),
                    created: now,
                },
            );
        }
        let reg = self.owned.get_mut(&key).expect("present or inserted above");
        reg.callees.push(callee);
        Ok(reg)
    }

    /// Remove a callee from registration `id`. Returns the new state (no callees = deleted),
    /// or None if unknown or the session was not a callee.
    pub fn owner_unregister(&mut self, id: Id, session: Id) -> Option<OwnedReg> {
        let key = self.owned_by_id.get(&id)?.clone();
        let reg = self.owned.get_mut(&key)?;
        let before = reg.callees.len();
        reg.callees.retain(|c| c.session != session);
        if reg.callees.len() == before {
            return None;
        }
        let out = reg.clone();
        if out.callees.is_empty() {
            self.owned.remove(&key);
            self.owned_by_id.remove(&id);
        }
        Some(out)
    }

    /// Whether this shard owns a registration of exactly (procedure, policy).
    pub fn owns(&self, procedure: &Arc<str>, policy: MatchPolicy) -> bool {
        self.owned.contains_key(&(procedure.clone(), policy))
    }

    /// The registration `id` if this shard owns it.
    pub fn owned_reg(&self, id: Id) -> Option<&OwnedReg> {
        self.owned.get(self.owned_by_id.get(&id)?)
    }

    #[cfg(test)]
    pub fn owned(&self) -> impl Iterator<Item = &OwnedReg> {
        self.owned.values()
    }
}

/// Why the owner refused a REGISTER (the ERROR's URI is [`RegisterRefused::uri`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterRefused {
    /// Registered with `single`, or asked for `single` while registered.
    Exists,
    /// Registered with another shared-registration policy.
    OtherPolicy { registered: InvokePolicy, asked: InvokePolicy },
    /// This session is already a callee of it.
    SameSession,
    /// The shared registration has `limits::REGISTRATION_CALLEES_MAX` callees.
    TooManyCallees,
    /// Creating it would exceed the realm's route budget (`limits::REALM_ROUTE_BYTES_MAX`).
    RouteBudget,
}

impl RegisterRefused {
    pub fn uri(self) -> &'static str {
        match self {
            RegisterRefused::TooManyCallees | RegisterRefused::RouteBudget => crate::proto::uris::LIMIT_EXCEEDED,
            _ => crate::proto::uris::PROCEDURE_ALREADY_EXISTS,
        }
    }

    /// The ERROR's message for the registering client.
    pub fn message(self, procedure: &str) -> String {
        let procedure = crate::proto::wire::peer_text(procedure);
        match self {
            RegisterRefused::Exists => format!("procedure {procedure} is already registered"),
            RegisterRefused::OtherPolicy { registered, asked } => format!(
                "procedure {procedure} is registered with invoke policy {:?}, not {:?}",
                registered.as_str(),
                asked.as_str()
            ),
            RegisterRefused::SameSession => format!("this session already registered {procedure}"),
            RegisterRefused::TooManyCallees => {
                format!(
                    "procedure {procedure} has {} callees, the most a shared registration may have",
                    limits::REGISTRATION_CALLEES_MAX
                )
            }
            RegisterRefused::RouteBudget => format!(
                "procedure {procedure} not registered: the realm's route memory budget (route_bytes_max) is full"
            ),
        }
    }
}

/// The fields of a route update, borrowed (from an owned registration or a mesh message).
#[derive(Clone, Copy)]
pub struct OwnedRegView<'a> {
    pub id: Id,
    pub procedure: &'a Arc<str>,
    pub policy: MatchPolicy,
    pub invoke: InvokePolicy,
    pub disclose_caller: bool,
    pub callees: &'a Arc<Vec<Callee>>,
}

impl RegRoute {
    /// Pick a callee by the invoke policy, skipping sessions in `tried` (callees that
    /// already bounced this call). `single` never re-routes.
    pub fn pick(&mut self, tried: &[Id], rng: &mut IdGen) -> Option<Callee> {
        let n = self.callees.len();
        if n == 0 || (self.invoke == InvokePolicy::Single && !tried.is_empty()) {
            return None;
        }
        let ok = |c: &Callee| !tried.contains(&c.session);
        let chosen = match self.invoke {
            InvokePolicy::Single | InvokePolicy::First => self.callees.iter().find(|c| ok(c)),
            InvokePolicy::Last => self.callees.iter().rev().find(|c| ok(c)),
            InvokePolicy::RoundRobin => {
                let mut found = None;
                for step in 0..n {
                    let i = (self.rr + step) % n;
                    if ok(&self.callees[i]) {
                        self.rr = (i + 1) % n;
                        found = Some(&self.callees[i]);
                        break;
                    }
                }
                found
            }
            InvokePolicy::Random => {
                let candidates: smallvec::SmallVec<[&Callee; 8]> = self.callees.iter().filter(|c| ok(c)).collect();
                if candidates.is_empty() { None } else { Some(candidates[rng.below(candidates.len())]) }
            }
        };
        chosen.cloned()
    }
}

/// `REGISTER.Options`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterOptions {
    pub policy: MatchPolicy,
    pub invoke: InvokePolicy,
    pub disclose_caller: bool,
}

impl RegisterOptions {
    pub fn parse(d: &Dict) -> Result<RegisterOptions, OptionError> {
        const M: &str = "REGISTER";
        options::check_forward_for(d, M)?;
        let policy = match options::opt_str(d, M, "match")? {
            None => MatchPolicy::Exact,
            Some(s) => MatchPolicy::parse(s).ok_or_else(|| OptionError::unknown(M, "match", "match policy", s))?,
        };
        let invoke = match options::opt_str(d, M, "invoke")? {
            None => InvokePolicy::Single,
            Some(s) => {
                InvokePolicy::parse(s).ok_or_else(|| OptionError::unknown(M, "invoke", "invocation policy", s))?
            }
        };
        Ok(RegisterOptions {
            policy,
            invoke,
            disclose_caller: options::opt_bool(d, M, "disclose_caller")?.unwrap_or(false),
        })
    }
}

/// `CALL.Options`, validated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallOptions {
    pub receive_progress: bool,
    pub disclose_me: bool,
    /// As sent (the spec says ms; Autobahn sends seconds — handled where timeouts are
    /// enforced), 0 = none.
    pub timeout: f64,
    /// A progressive call invocation: more CALLs with this request ID follow.
    pub progress: bool,
}

impl CallOptions {
    pub fn parse(d: &Dict) -> Result<CallOptions, OptionError> {
        const M: &str = "CALL";
        if d.is_empty() {
            return Ok(CallOptions::default());
        }
        options::check_forward_for(d, M)?;
        options::check_transparency(d, M)?;
        Ok(CallOptions {
            receive_progress: options::opt_bool(d, M, "receive_progress")?.unwrap_or(false),
            disclose_me: options::opt_bool(d, M, "disclose_me")?.unwrap_or(false),
            timeout: options::opt_number(d, M, "timeout")?.unwrap_or(0.0),
            progress: options::opt_bool(d, M, "progress")?.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(id: Id, p: &'a Arc<str>, policy: MatchPolicy, callees: &'a Arc<Vec<Callee>>) -> OwnedRegView<'a> {
        OwnedRegView { id, procedure: p, policy, invoke: InvokePolicy::Single, disclose_caller: false, callees }
    }

    #[test]
    fn best_match_follows_the_spec_example() {
        let mut d = Dealer::default();
        let one = Arc::new(vec![Callee { shard: 0, session: 1 }]);
        let regs = [
            (1, "a1.b2.c3.d4.e55", MatchPolicy::Exact),
            (2, "a1.b2.c3", MatchPolicy::Prefix),
            (3, "a1.b2.c3.d4", MatchPolicy::Prefix),
            (4, "a1.b2..d4.e5", MatchPolicy::Wildcard),
            (5, "a1.b2.c3..e5", MatchPolicy::Wildcard),
            (6, "a1.b2..d4.e5..g7", MatchPolicy::Wildcard),
            (7, "a1.b2..d4..f6.g7", MatchPolicy::Wildcard),
        ];
        for (id, uri, policy) in regs {
            let p: Arc<str> = Arc::from(uri);
            d.set_route(&view(id, &p, policy, &one));
        }
        let mut got = |uri: &str| d.resolve(uri).map(|r| r.id);
        assert_eq!(got("a1.b2.c3.d4.e55"), Some(1));
        assert_eq!(got("a1.b2.c3.d98.e74"), Some(2));
        assert_eq!(got("a1.b2.c3.d4.e325"), Some(3));
        assert_eq!(got("a1.b2.c55.d4.e5"), Some(4));
        assert_eq!(got("a1.b2.c3.d4.e5"), Some(3), "a prefix match wins over wildcards");
        assert_eq!(got("a1.b2.c88.d4.e5.f6.g7"), Some(6));
        assert_eq!(got("a2.b2.c2.d2.e2"), None);
    }

    #[test]
    fn invoke_policies_pick_and_reroute() {
        let callees = Arc::new((1..=3).map(|s| Callee { shard: 0, session: s }).collect::<Vec<_>>());
        let p: Arc<str> = Arc::from("p");
        let mut rng = IdGen::new(3);
        let route = |invoke| {
            let mut d = Dealer::default();
            d.set_route(&OwnedRegView { invoke, ..view(9, &p, MatchPolicy::Exact, &callees) });
            d.resolve("p").unwrap().clone()
        };
        let mut rr = route(InvokePolicy::RoundRobin);
        let seq: Vec<Id> = (0..4).map(|_| rr.pick(&[], &mut rng).unwrap().session).collect();
        assert_eq!(seq, [1, 2, 3, 1]);
        assert_eq!(rr.pick(&[2], &mut rng).unwrap().session, 3);
        let mut first = route(InvokePolicy::First);
        assert_eq!(first.pick(&[], &mut rng).unwrap().session, 1);
        assert_eq!(first.pick(&[1], &mut rng).unwrap().session, 2);
        let mut last = route(InvokePolicy::Last);
        assert_eq!(last.pick(&[], &mut rng).unwrap().session, 3);
        assert_eq!(last.pick(&[3], &mut rng).unwrap().session, 2);
        let mut random = route(InvokePolicy::Random);
        for _ in 0..20 {
            assert_ne!(random.pick(&[1, 3], &mut rng).unwrap().session, 1);
        }
        assert!(random.pick(&[1, 2, 3], &mut rng).is_none());
        let mut single = route(InvokePolicy::Single);
        assert_eq!(single.pick(&[], &mut rng).unwrap().session, 1);
        assert!(single.pick(&[1], &mut rng).is_none(), "single never re-routes");
    }

    #[test]
    fn owner_refuses_conflicts() {
        let mut d = Dealer::default();
        let p: Arc<str> = Arc::from("p");
        let c = |s| Callee { shard: 0, session: s };
        let id = d
            .owner_register(0, &p, MatchPolicy::Exact, InvokePolicy::RoundRobin, false, c(1), Instant::now())
            .unwrap()
            .id;
        assert!(
            d.owner_register(0, &p, MatchPolicy::Exact, InvokePolicy::Random, false, c(2), Instant::now()).is_err()
        );
        assert!(
            d.owner_register(0, &p, MatchPolicy::Exact, InvokePolicy::Single, false, c(2), Instant::now()).is_err()
        );
        assert!(
            d.owner_register(0, &p, MatchPolicy::Exact, InvokePolicy::RoundRobin, false, c(1), Instant::now()).is_err()
        );
        let reg =
            d.owner_register(0, &p, MatchPolicy::Exact, InvokePolicy::RoundRobin, false, c(2), Instant::now()).unwrap();
        assert_eq!(reg.callees.len(), 2);
        assert_eq!(d.owner_unregister(id, 1).unwrap().callees.len(), 1);
        assert!(d.owner_unregister(id, 1).is_none());
        assert!(d.owner_unregister(id, 2).unwrap().callees.is_empty());
        assert!(d.owned().next().is_none());
        let s: Arc<str> = Arc::from("s");
        d.owner_register(0, &s, MatchPolicy::Exact, InvokePolicy::Single, false, c(1), Instant::now()).unwrap();
        let e =
            d.owner_register(0, &s, MatchPolicy::Exact, InvokePolicy::Single, false, c(2), Instant::now()).unwrap_err();
        assert_eq!(e, RegisterRefused::Exists);
        assert_eq!(e.uri(), "wamp.error.procedure_already_exists");
        // A shared registration's callee list is capped (each change is pushed to every
        // shard whole, so joins would otherwise cost O(n²)).
        let m: Arc<str> = Arc::from("many");
        for s in 0..limits::REGISTRATION_CALLEES_MAX as u64 {
            d.owner_register(0, &m, MatchPolicy::Exact, InvokePolicy::RoundRobin, false, c(s), Instant::now()).unwrap();
        }
        let e = d
            .owner_register(0, &m, MatchPolicy::Exact, InvokePolicy::RoundRobin, false, c(u64::MAX), Instant::now())
            .unwrap_err();
        assert_eq!(e, RegisterRefused::TooManyCallees);
        assert_eq!(e.uri(), "shardbar.error.limit_exceeded");
    }
}
