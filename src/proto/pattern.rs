//! [`UriIndex`]: values keyed by (URI, match policy), for subscriptions, registrations and
//! (next) permissions. It owns how a concrete URI finds its entries; it stores no routing,
//! membership or authorization logic of its own, and never scans every pattern.
//!
//! - Exact URIs live in a hash map.
//! - `PrefixTrie`: WAMP prefix matching is by characters, not components
//!   (`com.app.obj1` matches `com.app.obj1-sub`), so this is a byte trie; a lookup walks the
//!   URI once and meets every pattern that ends on the way (shortest first).
//! - `WildcardTrie`: a token trie with one wildcard child per node (an empty component in
//!   the pattern matches any one component). A lookup follows the exact child and the
//!   wildcard child per component; patterns must have the URI's component count.
//!
//! A lookup costs O(URI length) for prefixes and O(matching paths) for wildcards, and
//! allocates nothing for URIs of up to 31 components.

use std::ops::ControlFlow;
use std::sync::Arc;

use smallvec::SmallVec;

use super::Map;
use super::wire::uri::MatchPolicy;

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

/// A byte trie mapping prefix patterns to values.
#[derive(Debug)]
struct PrefixTrie<T> {
    nodes: Vec<PrefixNode<T>>,
    free: Vec<u32>,
    len: usize,
}

#[derive(Debug)]
struct PrefixNode<T> {
    /// Children by next byte. Most nodes have one child, so a small vec beats a map.
    children: Vec<(u8, u32)>,
    value: Option<T>,
}

impl<T> Default for PrefixTrie<T> {
    fn default() -> Self {
        PrefixTrie { nodes: vec![PrefixNode { children: Vec::new(), value: None }], free: Vec::new(), len: 0 }
    }
}

impl<T> PrefixTrie<T> {
    fn child(&self, node: u32, b: u8) -> Option<u32> {
        self.nodes[node as usize].children.iter().find(|(k, _)| *k == b).map(|&(_, n)| n)
    }

    fn alloc(&mut self) -> u32 {
        let node = PrefixNode { children: Vec::new(), value: None };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn entry_or_insert_with(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
        let mut node = ROOT;
        for &b in pattern.as_bytes() {
            node = match self.child(node, b) {
                Some(n) => n,
                None => {
                    let n = self.alloc();
                    self.nodes[node as usize].children.push((b, n));
                    n
                }
            };
        }
        let slot = &mut self.nodes[node as usize].value;
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(make)
    }

    fn find(&self, pattern: &str) -> Option<u32> {
        let mut node = ROOT;
        for &b in pattern.as_bytes() {
            node = self.child(node, b)?;
        }
        Some(node)
    }

    fn get(&self, pattern: &str) -> Option<&T> {
        self.nodes[self.find(pattern)? as usize].value.as_ref()
    }

    #[cfg(test)]
    fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let n = self.find(pattern)?;
        self.nodes[n as usize].value.as_mut()
    }

    /// Remove `pattern`, pruning nodes that no longer lead anywhere.
    fn remove(&mut self, pattern: &str) -> Option<T> {
        let mut path = Vec::with_capacity(pattern.len() + 1);
        let mut node = ROOT;
        path.push(node);
        for &b in pattern.as_bytes() {
            node = self.child(node, b)?;
            path.push(node);
        }
        let value = self.nodes[node as usize].value.take()?;
        self.len -= 1;
        // Prune from the leaf up while a node is empty.
        for i in (1..path.len()).rev() {
            let n = path[i];
            let empty = {
                let nd = &self.nodes[n as usize];
                nd.children.is_empty() && nd.value.is_none()
            };
            if !empty {
                break;
            }
            let parent = path[i - 1];
            self.nodes[parent as usize].children.retain(|&(_, c)| c != n);
            self.free.push(n);
        }
        Some(value)
    }

    /// The node of every pattern that is a prefix of `uri`, shortest first.
    fn walk(&self, uri: &str, mut visit: impl FnMut(u32)) {
        if self.len == 0 {
            return;
        }
        let mut node = ROOT;
        if self.nodes[ROOT as usize].value.is_some() {
            visit(ROOT);
        }
        for &b in uri.as_bytes() {
            match self.child(node, b) {
                Some(n) => node = n,
                None => return,
            }
            if self.nodes[node as usize].value.is_some() {
                visit(node);
            }
        }
    }

    /// Every pattern that is a prefix of `uri`, shortest first.
    fn matches<'a>(&'a self, uri: &str, mut visit: impl FnMut(&'a T)) {
        self.walk(uri, |n| {
            if let Some(v) = &self.nodes[n as usize].value {
                visit(v);
            }
        });
    }

    /// The node of the longest pattern that is a prefix of `uri`.
    fn longest(&self, uri: &str) -> Option<u32> {
        let mut best = None;
        self.walk(uri, |n| best = Some(n));
        best
    }
}

/// A token trie mapping wildcard patterns to values.
#[derive(Debug)]
struct WildcardTrie<T> {
    nodes: Vec<WildNode<T>>,
    free: Vec<u32>,
    len: usize,
}

#[derive(Debug)]
struct WildNode<T> {
    children: Map<Box<str>, u32>,
    /// The child for an empty pattern component (matches any one component).
    wild: Option<u32>,
    value: Option<T>,
}

impl<T> WildNode<T> {
    fn new() -> Self {
        WildNode { children: Map::default(), wild: None, value: None }
    }
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.wild.is_none() && self.value.is_none()
    }
}

impl<T> Default for WildcardTrie<T> {
    fn default() -> Self {
        WildcardTrie { nodes: vec![WildNode::new()], free: Vec::new(), len: 0 }
    }
}

impl<T> WildcardTrie<T> {
    fn alloc(&mut self) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = WildNode::new();
                i
            }
            None => {
                self.nodes.push(WildNode::new());
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn step(&self, node: u32, component: &str) -> Option<u32> {
        let n = &self.nodes[node as usize];
        if component.is_empty() { n.wild } else { n.children.get(component).copied() }
    }

    fn entry_or_insert_with(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
        let mut node = ROOT;
        for component in pattern.split('.') {
            node = match self.step(node, component) {
                Some(n) => n,
                None => {
                    let n = self.alloc();
                    let parent = &mut self.nodes[node as usize];
                    if component.is_empty() {
                        parent.wild = Some(n);
                    } else {
                        parent.children.insert(component.into(), n);
                    }
                    n
                }
            };
        }
        let slot = &mut self.nodes[node as usize].value;
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(make)
    }

    fn find(&self, pattern: &str) -> Option<u32> {
        let mut node = ROOT;
        for component in pattern.split('.') {
            node = self.step(node, component)?;
        }
        Some(node)
    }

    fn get(&self, pattern: &str) -> Option<&T> {
        self.nodes[self.find(pattern)? as usize].value.as_ref()
    }

    #[cfg(test)]
    fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let n = self.find(pattern)?;
        self.nodes[n as usize].value.as_mut()
    }

    fn remove(&mut self, pattern: &str) -> Option<T> {
        let mut path: Vec<(u32, &str)> = Vec::new();
        let mut node = ROOT;
        for component in pattern.split('.') {
            let next = self.step(node, component)?;
            path.push((node, component));
            node = next;
        }
        let value = self.nodes[node as usize].value.take()?;
        self.len -= 1;
        // Prune empty nodes from the leaf up.
        let mut child = node;
        for &(parent, component) in path.iter().rev() {
            if !self.nodes[child as usize].is_empty() {
                break;
            }
            let p = &mut self.nodes[parent as usize];
            if component.is_empty() {
                p.wild = None;
            } else {
                p.children.remove(component);
            }
            self.free.push(child);
            child = parent;
        }
        Some(value)
    }

    /// The node of every pattern matching `uri` (same component count; empty pattern
    /// components match any component), most specific first, until `visit` breaks.
    ///
    /// A depth-first walk that tries the exact child before the wildcard child, so patterns
    /// come in decreasing order of their component sequences with concrete > wildcard:
    /// the first is the one whose first wildcard comes latest (ties: the next wildcard),
    /// which is the spec's best match.
    fn walk(&self, uri: &str, mut visit: impl FnMut(u32) -> ControlFlow<()>) {
        if self.len == 0 {
            return;
        }
        // Each entry is a node and the byte offset of the URI component it consumes next;
        // `done` means all consumed. The stack holds at most one wildcard sibling per level
        // plus the current node, so it stays inline up to 31 components (and URIs are
        // bounded by `limits::URI_LEN_MAX_BYTES`).
        let done = uri.len() + 1;
        let mut stack: SmallVec<[(u32, usize); 32]> = smallvec::smallvec![(ROOT, 0)];
        while let Some((node, start)) = stack.pop() {
            let n = &self.nodes[node as usize];
            if start == done {
                if n.value.is_some() && visit(node).is_break() {
                    return;
                }
                continue;
            }
            // `start` follows a '.' (or is 0), so it is a char boundary.
            let rest = &uri.as_bytes()[start..];
            let len = rest.iter().position(|&b| b == b'.').unwrap_or(rest.len());
            let next = start + len + 1;
            if let Some(w) = n.wild {
                stack.push((w, next));
            }
            if len > 0
                && let Some(&c) = n.children.get(&uri[start..start + len])
            {
                stack.push((c, next));
            }
        }
    }

    /// Every pattern matching `uri`, most specific first.
    fn matches<'a>(&'a self, uri: &str, mut visit: impl FnMut(&'a T)) {
        self.walk(uri, |n| {
            if let Some(v) = &self.nodes[n as usize].value {
                visit(v);
            }
            ControlFlow::Continue(())
        });
    }

    /// The node of the best (first) wildcard match for `uri`.
    fn best(&self, uri: &str) -> Option<u32> {
        let mut best = None;
        self.walk(uri, |n| {
            best = Some(n);
            ControlFlow::Break(())
        });
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix_matches(t: &PrefixTrie<&'static str>, uri: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        t.matches(uri, |v| out.push(*v));
        out
    }

    #[test]
    fn prefix_matches_by_characters() {
        let mut t = PrefixTrie::default();
        t.entry_or_insert_with("com.myapp.myobject1", || "p1");
        t.entry_or_insert_with("com.myapp", || "p0");
        assert_eq!(prefix_matches(&t, "com.myapp.myobject1.myprocedure1"), ["p0", "p1"]);
        assert_eq!(prefix_matches(&t, "com.myapp.myobject1-mysubobject1"), ["p0", "p1"]);
        assert_eq!(prefix_matches(&t, "com.myapp.myobject1"), ["p0", "p1"]);
        assert_eq!(prefix_matches(&t, "com.myapp.myobject"), ["p0"]);
        assert_eq!(prefix_matches(&t, "com.other"), Vec::<&str>::new());
        let longest = t.longest("com.myapp.myobject1.x").and_then(|n| t.nodes[n as usize].value);
        assert_eq!(longest, Some("p1"));
    }

    #[test]
    fn prefix_remove_prunes() {
        let mut t = PrefixTrie::default();
        t.entry_or_insert_with("a.b.c", || 1);
        t.entry_or_insert_with("a.b", || 2);
        assert_eq!(t.remove("a.b.c"), Some(1));
        assert_eq!(t.remove("a.b.c"), None);
        assert_eq!(t.len, 1);
        assert_eq!(t.get("a.b"), Some(&2));
        assert_eq!(t.remove("a.b"), Some(2));
        assert_eq!(t.len, 0);
        // Only the root is left in use.
        assert_eq!(t.nodes.len() - t.free.len(), 1);
    }

    fn wild_matches(t: &WildcardTrie<&'static str>, uri: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        t.matches(uri, |v| out.push(*v));
        out.sort();
        out
    }

    #[test]
    fn wildcard_matches_whole_components() {
        let mut t = WildcardTrie::default();
        t.entry_or_insert_with("com.myapp..myprocedure1", || "w1");
        t.entry_or_insert_with("com...myprocedure1", || "w2");
        t.entry_or_insert_with("..", || "w3");
        assert_eq!(wild_matches(&t, "com.myapp.myobject1.myprocedure1"), ["w1", "w2"]);
        assert_eq!(wild_matches(&t, "com.myapp.myobject2.myprocedure1"), ["w1", "w2"]);
        assert!(wild_matches(&t, "com.myapp.myobject1.myprocedure1.mysub").is_empty());
        assert!(wild_matches(&t, "com.myapp.myobject1.myprocedure2").is_empty());
        assert_eq!(wild_matches(&t, "a.b.c"), ["w3"]);
        assert!(wild_matches(&t, "a.b").is_empty());
    }

    #[test]
    fn wildcard_remove_prunes() {
        let mut t = WildcardTrie::default();
        t.entry_or_insert_with("a..c", || 1);
        t.entry_or_insert_with("a.b.c", || 2);
        assert_eq!(t.remove("a..c"), Some(1));
        assert_eq!(wild_matches_i(&t, "a.x.c"), Vec::<i32>::new());
        assert_eq!(wild_matches_i(&t, "a.b.c"), [2]);
        assert_eq!(t.remove("a.b.c"), Some(2));
        assert_eq!(t.nodes.len() - t.free.len(), 1);
    }

    fn wild_matches_i(t: &WildcardTrie<i32>, uri: &str) -> Vec<i32> {
        let mut out = Vec::new();
        t.matches(uri, |v| out.push(*v));
        out
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
