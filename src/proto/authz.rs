//! Authorization: what a session's role may do with a URI, decided once per request
//! (PUBLISH, SUBSCRIBE, REGISTER, CALL), never per delivered event.
//!
//! A realm with roles configured denies everything a role's rules do not allow; a realm
//! without roles allows everything (the defaults). A role's rules are looked up by the
//! **most specific** match — the exact rule, else the longest prefix rule, else the best
//! wildcard rule (`pattern::UriIndex::best_match`) — and only that rule decides (missing
//! `allow` flags are false). Crossbar's lookup can fall back to a role's default when a
//! longer non-matching exact rule exists; this one does not.
//!
//! Pure data and functions; the enforcement points are in `pubsub.rs` and `rpc/`.

use std::sync::Arc;

use super::Map;
use super::pattern::UriIndex;
use super::wire::uri::MatchPolicy;

/// What a request does to a URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Publish,
    Subscribe,
    Call,
    Register,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Publish, Action::Subscribe, Action::Call, Action::Register];

    pub fn name(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Call => "call",
            Action::Register => "register",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// One permission rule as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub uri: String,
    pub policy: MatchPolicy,
    pub allow: Vec<Action>,
    pub disclose_caller: bool,
    pub disclose_publisher: bool,
}

/// A rule's compiled form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    allow: u8,
    disclose_caller: bool,
    disclose_publisher: bool,
}

/// What a role may do.
#[derive(Debug)]
pub enum Role {
    /// Static rules, indexed for most-specific lookup.
    Static { rules: Vec<Rule>, index: UriIndex<Grant> },
    /// A dynamic authorizer procedure decides (called with `(session, uri, action, options)`).
    Dynamic { authorizer: Arc<str> },
}

impl Role {
    pub fn from_rules(rules: Vec<Rule>) -> Role {
        let mut index = UriIndex::default();
        for r in &rules {
            let mut allow = 0;
            for a in &r.allow {
                allow |= a.bit();
            }
            let g = Grant { allow, disclose_caller: r.disclose_caller, disclose_publisher: r.disclose_publisher };
            // A later rule for the same URI and policy replaces an earlier one.
            *index.entry_or_insert_with(&Arc::from(r.uri.as_str()), r.policy, || g) = g;
        }
        Role::Static { rules, index }
    }
}

impl PartialEq for Role {
    fn eq(&self, other: &Role) -> bool {
        match (self, other) {
            (Role::Static { rules: a, .. }, Role::Static { rules: b, .. }) => a == b,
            (Role::Dynamic { authorizer: a }, Role::Dynamic { authorizer: b }) => a == b,
            _ => false,
        }
    }
}

/// A realm's roles by name.
#[derive(Debug, Default, PartialEq)]
pub struct Roles {
    by_name: Map<Arc<str>, Role>,
}

/// The answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow {
        /// The rule forces caller (CALL) or publisher (PUBLISH) disclosure.
        disclose: bool,
    },
    Deny,
    /// Ask this authorizer procedure.
    Ask(Arc<str>),
}

impl Roles {
    pub fn insert(&mut self, name: Arc<str>, role: Role) -> bool {
        if self.by_name.contains_key(&name) {
            return false;
        }
        self.by_name.insert(name, role);
        true
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.by_name.get(name)
    }

    /// The dynamic authorizer procedures of this realm's roles.
    pub fn authorizers(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_name.values().filter_map(|r| match r {
            Role::Dynamic { authorizer } => Some(authorizer),
            Role::Static { .. } => None,
        })
    }
}

/// May a session with `role` do `action` on `uri`? `roles`: the realm's (None: no roles
/// configured, everything allowed).
pub fn authorize(roles: Option<&Roles>, role: &str, uri: &str, action: Action) -> Decision {
    let Some(roles) = roles else { return Decision::Allow { disclose: false } };
    match roles.role(role) {
        None => Decision::Deny,
        Some(Role::Dynamic { authorizer }) => Decision::Ask(authorizer.clone()),
        Some(Role::Static { index, .. }) => match index.best_match(uri) {
            Some(g) if g.allow & action.bit() != 0 => {
                let disclose = match action {
                    Action::Call => g.disclose_caller,
                    Action::Publish => g.disclose_publisher,
                    Action::Subscribe | Action::Register => false,
                };
                Decision::Allow { disclose }
            }
            _ => Decision::Deny,
        },
    }
}

/// A shard's memo of static decisions in one realm: (role, action, URI) → (allow,
/// disclose), so a URI requested again skips the rule walk. Bounded: a role-action table
/// that reaches `limits::AUTHZ_MEMO_PER_ROLE_ACTION_MAX` entries is cleared (the rules
/// are still there; only the memo restarts). Lookups do not allocate.
#[derive(Debug, Default)]
pub struct Memo {
    by_role: Map<Arc<str>, [MemoTable; 4]>,
}

/// One (role, action)'s memo: URI → (allow, disclose).
type MemoTable = Map<Box<str>, (bool, bool)>;

impl Memo {
    /// [`authorize`], memoized for static roles.
    pub fn decide(&mut self, roles: &Roles, role: &str, uri: &str, action: Action) -> Decision {
        let slot = action as usize;
        if let Some((allow, disclose)) = self.by_role.get(role).and_then(|t| t[slot].get(uri)) {
            return if *allow { Decision::Allow { disclose: *disclose } } else { Decision::Deny };
        }
        let d = authorize(Some(roles), role, uri, action);
        let entry = match &d {
            Decision::Allow { disclose } => (true, *disclose),
            Decision::Deny => (false, false),
            Decision::Ask(_) => return d,
        };
        if self.by_role.len() >= crate::limits::AUTHZ_MEMO_ROLES_MAX && !self.by_role.contains_key(role) {
            return d;
        }
        let tables = self.by_role.entry(Arc::from(role)).or_default();
        let t = &mut tables[slot];
        if t.len() >= crate::limits::AUTHZ_MEMO_PER_ROLE_ACTION_MAX {
            t.clear();
        }
        t.insert(Box::from(uri), entry);
        d
    }
}

/// Crossbar's starred URIs, for a rule without `match`: no `*` is exact; one trailing `*`
/// is a prefix (`"*"` alone: everything); any other `*` makes a wildcard with the stars
/// removed (`"com.*.status"` → `"com..status"`).
pub fn starred(uri: &str) -> (String, MatchPolicy) {
    match uri.find('*') {
        None => (uri.to_owned(), MatchPolicy::Exact),
        Some(i) if i == uri.len() - 1 => (uri[..i].to_owned(), MatchPolicy::Prefix),
        Some(_) => (uri.replace('*', ""), MatchPolicy::Wildcard),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(uri: &str, policy: MatchPolicy, allow: &[Action]) -> Rule {
        Rule { uri: uri.into(), policy, allow: allow.to_vec(), disclose_caller: false, disclose_publisher: false }
    }

    fn roles(rules: Vec<Rule>) -> Roles {
        let mut r = Roles::default();
        r.insert(Arc::from("frontend"), Role::from_rules(rules));
        r
    }

    const ALLOW: Decision = Decision::Allow { disclose: false };

    #[test]
    fn no_roles_allow_everything_and_unknown_roles_nothing() {
        assert_eq!(authorize(None, "anyone", "com.x", Action::Register), ALLOW);
        let r = roles(vec![rule("com.", MatchPolicy::Prefix, &Action::ALL)]);
        assert_eq!(authorize(Some(&r), "stranger", "com.x", Action::Call), Decision::Deny);
    }

    #[test]
    fn the_most_specific_rule_decides() {
        // Goal: exact beats prefix beats wildcard, the longest prefix wins, and a rule that
        // matches but lacks the flag denies even if a less specific rule would allow.
        let r = roles(vec![
            rule("com.example.", MatchPolicy::Prefix, &[Action::Call, Action::Subscribe]),
            rule("com.example.api.", MatchPolicy::Prefix, &[Action::Call]),
            rule("com.example.api.admin", MatchPolicy::Exact, &[]),
            rule("com..status", MatchPolicy::Wildcard, &[Action::Subscribe]),
        ]);
        let r = Some(&r);
        assert_eq!(authorize(r, "frontend", "com.example.feed", Action::Subscribe), ALLOW);
        assert_eq!(authorize(r, "frontend", "com.example.api.x", Action::Call), ALLOW);
        assert_eq!(authorize(r, "frontend", "com.example.api.x", Action::Subscribe), Decision::Deny);
        assert_eq!(authorize(r, "frontend", "com.example.api.admin", Action::Call), Decision::Deny);
        assert_eq!(authorize(r, "frontend", "com.other.status", Action::Subscribe), ALLOW);
        // A prefix rule is more specific than a wildcard that also matches.
        assert_eq!(authorize(r, "frontend", "com.example.status", Action::Subscribe), ALLOW);
        assert_eq!(authorize(r, "frontend", "com.example.status", Action::Publish), Decision::Deny);
        assert_eq!(authorize(r, "frontend", "org.x", Action::Call), Decision::Deny);
    }

    #[test]
    fn crossbar_bug_is_not_copied() {
        // Crossbar: an exact rule "com.a.b.c" makes "com.a.b.x" fall to the default (deny)
        // although the prefix "com.a." allows it. Here the prefix decides.
        let r = roles(vec![
            rule("com.a.", MatchPolicy::Prefix, &[Action::Call]),
            rule("com.a.b.c", MatchPolicy::Exact, &[Action::Register]),
        ]);
        assert_eq!(authorize(Some(&r), "frontend", "com.a.b.x", Action::Call), ALLOW);
    }

    #[test]
    fn disclose_applies_to_call_and_publish() {
        let mut rl = rule("com.feed", MatchPolicy::Exact, &[Action::Publish, Action::Call]);
        rl.disclose_publisher = true;
        let r = roles(vec![rl]);
        assert_eq!(authorize(Some(&r), "frontend", "com.feed", Action::Publish), Decision::Allow { disclose: true });
        assert_eq!(authorize(Some(&r), "frontend", "com.feed", Action::Call), ALLOW);
    }

    #[test]
    fn memo_gives_the_same_decisions_and_stays_bounded() {
        let r = roles(vec![rule("com.", MatchPolicy::Prefix, &[Action::Call]), rule("com.x", MatchPolicy::Exact, &[])]);
        let mut m = Memo::default();
        for _ in 0..2 {
            assert_eq!(m.decide(&r, "frontend", "com.y", Action::Call), ALLOW);
            assert_eq!(m.decide(&r, "frontend", "com.x", Action::Call), Decision::Deny);
            assert_eq!(m.decide(&r, "frontend", "com.y", Action::Publish), Decision::Deny);
            assert_eq!(m.decide(&r, "stranger", "com.y", Action::Call), Decision::Deny);
        }
        for i in 0..crate::limits::AUTHZ_MEMO_PER_ROLE_ACTION_MAX + 10 {
            assert_eq!(m.decide(&r, "frontend", &format!("com.u{i}"), Action::Call), ALLOW);
        }
        let t = &m.by_role["frontend"][Action::Call as usize];
        assert!(t.len() <= crate::limits::AUTHZ_MEMO_PER_ROLE_ACTION_MAX);
    }

    #[test]
    fn starred_uris() {
        assert_eq!(starred("com.example.api"), ("com.example.api".into(), MatchPolicy::Exact));
        assert_eq!(starred("com.example.*"), ("com.example.".into(), MatchPolicy::Prefix));
        assert_eq!(starred("*"), ("".into(), MatchPolicy::Prefix));
        assert_eq!(starred("com.*.status"), ("com..status".into(), MatchPolicy::Wildcard));
    }
}
