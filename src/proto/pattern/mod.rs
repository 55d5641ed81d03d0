//! [`UriIndex`]: values keyed by (URI, match policy), for subscriptions, registrations and
//! (next) permissions. It owns how a concrete URI finds its entries; it stores no routing,
//! membership or authorization logic of its own, and never scans every pattern.
//!
//! - Exact URIs live in a hash map.
//! - `PrefixTrie`: WAMP prefix matching is by characters, not components
//!   (`com.app.obj1` matches `com.app.obj1-sub`), so this is a byte radix tree (edges
//!   labelled with byte runs); a lookup walks the URI once and meets every pattern that
//!   ends on the way (shortest first).
//! - `WildcardTrie`: a component trie with one wildcard child per node (an empty component
//!   in the pattern matches any one component), runs of concrete components with no
//!   branch stored as one node. A lookup follows the exact child and the wildcard child
//!   per component; patterns must have the URI's component count.
//!
//! Both are path-compressed: a node exists only where a pattern ends or patterns part, so
//! a stored pattern costs its bytes once plus about one node, not a node per byte or per
//! component (`bench/pattern.rs` measures it; every shard holds a replica). A lookup costs
//! O(URI length) for prefixes and O(matching paths) for wildcards, and allocates nothing
//! for URIs of up to 31 components.

use std::sync::Arc;

use super::Map;
use super::wire::uri::MatchPolicy;

mod prefix;
mod wildcard;

use prefix::PrefixTrie;
use wildcard::WildcardTrie;

/// The root's index in both tries' node arenas.
const ROOT: u32 = 0;

/// Values keyed by (URI, [`MatchPolicy`]), with the two lookups a concrete URI needs:
/// every matching entry ([`matches`](Self::matches), the broker's fan-out) and the most
/// specific one ([`best_match`](Self::best_match), the dealer's and the authorizer's rule).
#[derive(Debug)]
pub struct UriIndex<T> {
    exact: Map<Arc<str>, T>,
    prefix: PrefixTrie<T>,
    wildcard: WildcardTrie<T>,
}

impl<T> Default for UriIndex<T> {
    fn default() -> Self {
        UriIndex { exact: Map::default(), prefix: PrefixTrie::default(), wildcard: WildcardTrie::default() }
    }
}

impl<T> UriIndex<T> {
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries, all policies together.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefix.len + self.wildcard.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry stored for exactly this (pattern, policy); no matching.
    pub fn get(&self, pattern: &str, policy: MatchPolicy) -> Option<&T> {
        match policy {
            MatchPolicy::Exact => self.exact.get(pattern),
            MatchPolicy::Prefix => self.prefix.get(pattern),
            MatchPolicy::Wildcard => self.wildcard.get(pattern),
        }
    }

    #[cfg(test)]
    pub fn get_mut(&mut self, pattern: &str, policy: MatchPolicy) -> Option<&mut T> {
        match policy {
            MatchPolicy::Exact => self.exact.get_mut(pattern),
            MatchPolicy::Prefix => self.prefix.get_mut(pattern),
            MatchPolicy::Wildcard => self.wildcard.get_mut(pattern),
        }
    }

    /// The entry for (pattern, policy), inserting `make()` if absent.
    pub fn entry_or_insert_with(
        &mut self,
        pattern: &Arc<str>,
        policy: MatchPolicy,
        make: impl FnOnce() -> T,
    ) -> &mut T {
        match policy {
            MatchPolicy::Exact => self.exact.entry(pattern.clone()).or_insert_with(make),
            MatchPolicy::Prefix => self.prefix.entry_or_insert_with(pattern, make),
            MatchPolicy::Wildcard => self.wildcard.entry_or_insert_with(pattern, make),
        }
    }

    pub fn remove(&mut self, pattern: &str, policy: MatchPolicy) -> Option<T> {
        match policy {
            MatchPolicy::Exact => self.exact.remove(pattern),
            MatchPolicy::Prefix => self.prefix.remove(pattern),
            MatchPolicy::Wildcard => self.wildcard.remove(pattern),
        }
    }

    /// Every entry with its policy, in no particular order (the meta API's lists; bounded
    /// by the table, which the limits bound).
    pub fn for_each<'a>(&'a self, mut visit: impl FnMut(MatchPolicy, &'a T)) {
        for v in self.exact.values() {
            visit(MatchPolicy::Exact, v);
        }
        for v in self.prefix.nodes.iter().filter_map(|n| n.value.as_ref()) {
            visit(MatchPolicy::Prefix, v);
        }
        for v in self.wildcard.nodes.iter().filter_map(|n| n.value.as_ref()) {
            visit(MatchPolicy::Wildcard, v);
        }
    }

    /// Every entry matching the concrete `uri`, with its policy: the exact entry, then every
    /// prefix (shortest first), then every wildcard (most specific first). The publish hot
    /// path: no allocation, and an empty trie costs one comparison.
    pub fn matches<'a>(&'a self, uri: &str, mut visit: impl FnMut(MatchPolicy, &'a T)) {
        if let Some(v) = self.exact.get(uri) {
            visit(MatchPolicy::Exact, v);
        }
        self.prefix.matches(uri, |v| visit(MatchPolicy::Prefix, v));
        self.wildcard.matches(uri, |v| visit(MatchPolicy::Wildcard, v));
    }

    /// The most specific entry matching `uri` (spec, pattern-based registrations): the exact
    /// entry, else the longest prefix, else the best wildcard: the one whose first wildcard
    /// component comes latest, ties broken by the next wildcard (none counts as latest),
    /// and so on.
    pub fn best_match(&self, uri: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(uri) {
            return Some(v);
        }
        if let Some(n) = self.prefix.longest(uri) {
            return self.prefix.nodes[n as usize].value.as_ref();
        }
        let n = self.wildcard.best(uri)?;
        self.wildcard.nodes[n as usize].value.as_ref()
    }

    /// [`best_match`](Self::best_match), for updating the entry in place.
    pub fn best_match_mut(&mut self, uri: &str) -> Option<&mut T> {
        if self.exact.contains_key(uri) {
            return self.exact.get_mut(uri);
        }
        if let Some(n) = self.prefix.longest(uri) {
            return self.prefix.nodes[n as usize].value.as_mut();
        }
        let n = self.wildcard.best(uri)?;
        self.wildcard.nodes[n as usize].value.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded xorshift stream for the randomized tests.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
        /// Up to `max` pieces from `from`, joined by `sep`.
        fn join(&mut self, from: &[&str], max: usize, sep: &str) -> String {
            let n = self.below(max) + 1;
            (0..n).map(|_| self.pick(from)).collect::<Vec<_>>().join(sep)
        }
    }

    /// The spec's matching, written plainly: every stored (pattern, policy) that matches
    /// `uri`, in the index's order (exact; prefixes shortest first; wildcards by
    /// decreasing rank, then by pattern to make ties comparable).
    fn naive_matches(stored: &[(String, MatchPolicy)], uri: &str) -> Vec<(MatchPolicy, String)> {
        let mut exact = Vec::new();
        let mut prefix = Vec::new();
        let mut wild = Vec::new();
        for (p, policy) in stored {
            match policy {
                MatchPolicy::Exact if p == uri => exact.push(p.clone()),
                MatchPolicy::Prefix if uri.starts_with(p.as_str()) => prefix.push(p.clone()),
                MatchPolicy::Wildcard
                    if p.split('.').count() == uri.split('.').count()
                        && p.split('.').zip(uri.split('.')).all(|(pc, uc)| pc.is_empty() || pc == uc) =>
                {
                    wild.push(p.clone())
                }
                _ => {}
            }
        }
        prefix.sort_by_key(String::len);
        wild.sort_by(|a, b| wildcard_rank(b).cmp(&wildcard_rank(a)).then(a.cmp(b)));
        let tag = |policy| move |p| (policy, p);
        exact
            .into_iter()
            .map(tag(MatchPolicy::Exact))
            .chain(prefix.into_iter().map(tag(MatchPolicy::Prefix)))
            .chain(wild.into_iter().map(tag(MatchPolicy::Wildcard)))
            .collect()
    }

    #[test]
    fn index_agrees_with_a_naive_matcher() {
        // Goal: the compressed tries match exactly like the spec's definitions, through
        // inserts and removes that split and merge nodes, and stay compressed. Method:
        // seeded random patterns over a tiny alphabet (so they share prefixes and
        // overlap), random removals, and after each step every probe URI's matches and
        // best match compared with a plain scan of the stored patterns.
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let prefix_pieces = ["a", "b", "ab", ".", "é", "a.b"];
        let components = ["a", "b", "ab", "ba", ""];
        let probe_components = ["a", "b", "ab", "ba", "x"];
        for round in 0..60 {
            let mut ix: UriIndex<String> = UriIndex::new();
            let mut stored: Vec<(String, MatchPolicy)> = Vec::new();
            for step in 0..80 {
                let remove = !stored.is_empty() && rng.below(3) == 0;
                if remove {
                    let (p, policy) = stored.swap_remove(rng.below(stored.len()));
                    assert_eq!(ix.remove(&p, policy).as_deref(), Some(p.as_str()));
                    assert_eq!(ix.remove(&p, policy), None);
                } else {
                    let policy = [MatchPolicy::Exact, MatchPolicy::Prefix, MatchPolicy::Wildcard][rng.below(3)];
                    let p = match policy {
                        MatchPolicy::Prefix if rng.below(10) == 0 => String::new(),
                        MatchPolicy::Prefix => rng.join(&prefix_pieces, 5, ""),
                        _ => rng.join(&components, 5, "."),
                    };
                    if !stored.contains(&(p.clone(), policy)) {
                        stored.push((p.clone(), policy));
                    }
                    ix.entry_or_insert_with(&Arc::from(p.as_str()), policy, || p.clone());
                }
                ix.prefix.check();
                ix.wildcard.check();
                assert_eq!(ix.len(), stored.len());
                for (p, policy) in &stored {
                    assert_eq!(ix.get(p, *policy), Some(p), "get {p:?} {policy:?}");
                }
                for _ in 0..20 {
                    let uri = if rng.below(2) == 0 {
                        rng.join(&probe_components, 5, ".")
                    } else {
                        rng.join(&prefix_pieces, 6, "")
                    };
                    let mut got: Vec<(MatchPolicy, String)> = Vec::new();
                    ix.matches(&uri, |policy, v| got.push((policy, v.clone())));
                    let want = naive_matches(&stored, &uri);
                    // Wildcards of equal rank may come in either order.
                    let mut got_sorted = got.clone();
                    let split = got.iter().position(|(p, _)| *p == MatchPolicy::Wildcard).unwrap_or(got.len());
                    got_sorted[split..]
                        .sort_by(|(_, a), (_, b)| wildcard_rank(b).cmp(&wildcard_rank(a)).then(a.cmp(b)));
                    assert_eq!(got_sorted, want, "round {round} step {step}: {uri:?} in {stored:?}");
                    // The best match is the first entry (exact, else the longest prefix,
                    // else the first wildcard): the ranks must agree.
                    let best = ix.best_match(&uri);
                    let want_best = want
                        .iter()
                        .find(|(p, _)| *p == MatchPolicy::Exact)
                        .or_else(|| want.iter().rfind(|(p, _)| *p == MatchPolicy::Prefix))
                        .or_else(|| want.iter().find(|(p, _)| *p == MatchPolicy::Wildcard));
                    match (best, want_best) {
                        (Some(b), Some((MatchPolicy::Wildcard, w))) => assert_eq!(wildcard_rank(b), wildcard_rank(w)),
                        (b, w) => assert_eq!(b, w.map(|(_, p)| p), "best of {uri:?} in {stored:?}"),
                    }
                }
            }
            for (p, policy) in stored.drain(..) {
                assert!(ix.remove(&p, policy).is_some());
            }
            ix.prefix.check();
            ix.wildcard.check();
            assert_eq!(ix.prefix.nodes.len() - ix.prefix.free.len(), 1, "only the root is left");
            assert_eq!(ix.wildcard.nodes.len() - ix.wildcard.free.len(), 1, "only the root is left");
        }
    }

    /// The spec's wildcard priority, written out as a key to check the index against:
    /// lengths of the runs of non-wildcard components, in order; a lexicographically larger
    /// key is the better match (`a1.b2.c3..e5` → `[3, 1]` beats `a1.b2..d4.e5` → `[2, 2]`).
    fn wildcard_rank(pattern: &str) -> Vec<u16> {
        let mut runs = Vec::new();
        let mut run = 0u16;
        for component in pattern.split('.') {
            if component.is_empty() {
                runs.push(run);
                run = 0;
            } else {
                run += 1;
            }
        }
        runs.push(run);
        runs
    }

    #[test]
    fn wildcard_rank_follows_spec_examples() {
        // Spec: for a1.b2.c3.d4.e5, 'a1.b2.c3..e5' beats 'a1.b2..d4.e5'.
        assert!(wildcard_rank("a1.b2.c3..e5") > wildcard_rank("a1.b2..d4.e5"));
        // Spec: for a1.b2.c88.d4.e5.f6.g7, 'a1.b2..d4.e5..g7' beats 'a1.b2..d4..f6.g7'.
        assert!(wildcard_rank("a1.b2..d4.e5..g7") > wildcard_rank("a1.b2..d4..f6.g7"));
        assert!(wildcard_rank("a1.b2..d4") > wildcard_rank("a1...d4"));
    }

    fn all_matches(ix: &UriIndex<&'static str>, uri: &str) -> Vec<(MatchPolicy, &'static str)> {
        let mut out = Vec::new();
        ix.matches(uri, |policy, v| out.push((policy, *v)));
        out
    }

    fn insert(ix: &mut UriIndex<&'static str>, pattern: &str, policy: MatchPolicy, value: &'static str) {
        *ix.entry_or_insert_with(&Arc::from(pattern), policy, || value) = value;
    }

    #[test]
    fn index_keeps_policies_apart() {
        // Goal: the same string under each policy is three entries, each reached only with
        // its own policy, and len/remove count them separately.
        let mut ix = UriIndex::new();
        assert!(ix.is_empty());
        for (policy, v) in [(MatchPolicy::Exact, "e"), (MatchPolicy::Prefix, "p"), (MatchPolicy::Wildcard, "w")] {
            insert(&mut ix, "a.b", policy, v);
        }
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.get("a.b", MatchPolicy::Exact), Some(&"e"));
        assert_eq!(ix.get("a.b", MatchPolicy::Prefix), Some(&"p"));
        assert_eq!(ix.get("a.b", MatchPolicy::Wildcard), Some(&"w"));
        assert_eq!(ix.get("a", MatchPolicy::Prefix), None, "get does not match");
        *ix.get_mut("a.b", MatchPolicy::Prefix).unwrap() = "p2";
        assert_eq!(ix.get("a.b", MatchPolicy::Prefix), Some(&"p2"));
        let got = *ix.entry_or_insert_with(&Arc::from("a.b"), MatchPolicy::Wildcard, || unreachable!());
        assert_eq!(got, "w", "an existing entry is returned, not replaced");
        assert_eq!(ix.remove("a.b", MatchPolicy::Prefix), Some("p2"));
        assert_eq!(ix.remove("a.b", MatchPolicy::Prefix), None);
        assert_eq!(ix.len(), 2);
        assert_eq!(all_matches(&ix, "a.b"), [(MatchPolicy::Exact, "e"), (MatchPolicy::Wildcard, "w")]);
        assert_eq!(ix.remove("a.b", MatchPolicy::Exact), Some("e"));
        assert_eq!(ix.remove("a.b", MatchPolicy::Wildcard), Some("w"));
        assert!(ix.is_empty());
        assert!(all_matches(&ix, "a.b").is_empty());
        assert_eq!(ix.best_match("a.b"), None);
    }

    #[test]
    fn index_matches_every_overlapping_pattern() {
        // Goal: a concrete URI meets every entry that matches it, in a fixed order: exact,
        // prefixes shortest first, wildcards most specific first; nothing else.
        let mut ix = UriIndex::new();
        insert(&mut ix, "a.b.c", MatchPolicy::Exact, "e");
        insert(&mut ix, "a.b.cd", MatchPolicy::Exact, "e-other");
        insert(&mut ix, "a.b", MatchPolicy::Prefix, "p-ab");
        insert(&mut ix, "", MatchPolicy::Prefix, "p-all");
        insert(&mut ix, "a.b.c", MatchPolicy::Prefix, "p-abc");
        insert(&mut ix, "a.b.c.", MatchPolicy::Prefix, "p-abc.");
        insert(&mut ix, "..", MatchPolicy::Wildcard, "w-..");
        insert(&mut ix, "a..c", MatchPolicy::Wildcard, "w-a..c");
        insert(&mut ix, "a.b.", MatchPolicy::Wildcard, "w-a.b.");
        insert(&mut ix, "a.b.c", MatchPolicy::Wildcard, "w-a.b.c");
        insert(&mut ix, "a..", MatchPolicy::Wildcard, "w-a..");
        insert(&mut ix, "a.b", MatchPolicy::Wildcard, "w-a.b");
        use MatchPolicy::*;
        assert_eq!(
            all_matches(&ix, "a.b.c"),
            [
                (Exact, "e"),
                (Prefix, "p-all"),
                (Prefix, "p-ab"),
                (Prefix, "p-abc"),
                (Wildcard, "w-a.b.c"),
                (Wildcard, "w-a.b."),
                (Wildcard, "w-a..c"),
                (Wildcard, "w-a.."),
                (Wildcard, "w-.."),
            ]
        );
        assert_eq!(all_matches(&ix, "a.bc"), [(Prefix, "p-all"), (Prefix, "p-ab")]);
        assert_eq!(all_matches(&ix, "x.y.z"), [(Prefix, "p-all"), (Wildcard, "w-..")]);
        assert_eq!(ix.best_match("a.b.c"), Some(&"e"));
        assert_eq!(ix.best_match("a.b.c.d"), Some(&"p-abc."));
        assert_eq!(ix.best_match("x.y.z"), Some(&"p-all"));
        ix.remove("", Prefix);
        assert_eq!(ix.best_match("x.y.z"), Some(&"w-.."));
        assert_eq!(ix.best_match("a.x.c"), Some(&"w-a..c"));
        assert_eq!(ix.best_match("a.x.y"), Some(&"w-a.."));
        assert_eq!(ix.best_match("x.y"), None);
    }

    #[test]
    fn index_best_match_follows_the_spec_example() {
        // Goal: the spec's pattern-based registration example (exact, else longest prefix,
        // else the best-ranked wildcard), and best_match_mut reaches the same entry.
        let mut ix = UriIndex::new();
        let entries = [
            ("a1.b2.c3.d4.e55", MatchPolicy::Exact, "1"),
            ("a1.b2.c3", MatchPolicy::Prefix, "2"),
            ("a1.b2.c3.d4", MatchPolicy::Prefix, "3"),
            ("a1.b2..d4.e5", MatchPolicy::Wildcard, "4"),
            ("a1.b2.c3..e5", MatchPolicy::Wildcard, "5"),
            ("a1.b2..d4.e5..g7", MatchPolicy::Wildcard, "6"),
            ("a1.b2..d4..f6.g7", MatchPolicy::Wildcard, "7"),
        ];
        for (pattern, policy, v) in entries {
            insert(&mut ix, pattern, policy, v);
        }
        let cases = [
            ("a1.b2.c3.d4.e55", Some("1")),
            ("a1.b2.c3.d98.e74", Some("2")),
            ("a1.b2.c3.d4.e325", Some("3")),
            ("a1.b2.c55.d4.e5", Some("4")),
            ("a1.b2.c3.d4.e5", Some("3")),
            ("a1.b2.c88.d4.e5.f6.g7", Some("6")),
            ("a2.b2.c2.d2.e2", None),
        ];
        for (uri, want) in cases {
            assert_eq!(ix.best_match(uri).copied(), want, "{uri}");
            assert_eq!(ix.best_match_mut(uri).map(|v| *v), want, "{uri}");
        }
        // Without the prefixes, the wildcard ranks decide.
        ix.remove("a1.b2.c3", MatchPolicy::Prefix);
        ix.remove("a1.b2.c3.d4", MatchPolicy::Prefix);
        assert_eq!(ix.best_match("a1.b2.c3.d4.e5"), Some(&"5"));
        *ix.best_match_mut("a1.b2.c3.d4.e5").unwrap() = "5'";
        assert_eq!(ix.get("a1.b2.c3..e5", MatchPolicy::Wildcard), Some(&"5'"));
    }

    #[test]
    fn wildcard_best_match_agrees_with_rank() {
        // Goal: the index's best wildcard (first in its exact-before-wildcard walk) is the
        // one with the highest spec rank. Method: random patterns over a tiny alphabet so
        // many overlap, every URI over that alphabet, compared with a scan by rank.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let components = ["", "x", "y"];
        let uris: Vec<String> = (0..27)
            .map(|i| format!("{}.{}.{}", ["x", "y", "z"][i % 3], ["x", "y", "z"][i / 3 % 3], ["x", "y", "z"][i / 9]))
            .collect();
        for _ in 0..200 {
            let mut ix = UriIndex::new();
            let mut patterns = Vec::new();
            for _ in 0..next(8) + 1 {
                let p: Vec<&str> = (0..3).map(|_| components[next(3) as usize]).collect();
                let p = p.join(".");
                *ix.entry_or_insert_with(&Arc::from(p.as_str()), MatchPolicy::Wildcard, String::new) = p.clone();
                patterns.push(p);
            }
            for uri in &uris {
                let matching = patterns
                    .iter()
                    .filter(|p| p.split('.').zip(uri.split('.')).all(|(pc, uc)| pc.is_empty() || pc == uc));
                let want = matching.max_by_key(|p| wildcard_rank(p));
                assert_eq!(ix.best_match(uri), want, "{uri} in {patterns:?}");
            }
        }
    }
}
