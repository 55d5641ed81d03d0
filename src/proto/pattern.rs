//! Pattern indexes for prefix and wildcard subscriptions and registrations.
//!
//! - [`PrefixTrie`]: WAMP prefix matching is by characters, not components
//!   (`com.app.obj1` matches `com.app.obj1-sub`), so this is a byte trie; a lookup walks the
//!   URI once and reports every pattern that ends on the way (longest last).
//! - [`WildcardTrie`]: a token trie with one wildcard child per node (an empty component in
//!   the pattern matches any one component). A lookup follows the exact child and the
//!   wildcard child per component; patterns must have the URI's component count.
//!
//! Neither scans every pattern: a lookup costs O(URI length) for prefixes and O(matching
//! paths) for wildcards. Both are generic over the value stored per pattern, so the broker
//! and the dealer share them.

use crate::proto::Map;
const ROOT: u32 = 0;

/// A byte trie mapping prefix patterns to values.
#[derive(Debug)]
pub struct PrefixTrie<T> {
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
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of patterns stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

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

    /// The value for `pattern`, inserting `make()` if absent.
    pub fn entry_or_insert_with(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
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

    pub fn get(&self, pattern: &str) -> Option<&T> {
        let mut node = ROOT;
        for &b in pattern.as_bytes() {
            node = self.child(node, b)?;
        }
        self.nodes[node as usize].value.as_ref()
    }

    pub fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let mut node = ROOT;
        for &b in pattern.as_bytes() {
            node = self.child(node, b)?;
        }
        self.nodes[node as usize].value.as_mut()
    }

    /// Remove `pattern`, pruning nodes that no longer lead anywhere.
    pub fn remove(&mut self, pattern: &str) -> Option<T> {
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

    /// Every pattern that is a prefix of `uri`, shortest first.
    pub fn matches<'a>(&'a self, uri: &str, mut visit: impl FnMut(&'a T)) {
        if self.len == 0 {
            return;
        }
        let mut node = ROOT;
        if let Some(v) = &self.nodes[ROOT as usize].value {
            visit(v);
        }
        for &b in uri.as_bytes() {
            match self.child(node, b) {
                Some(n) => node = n,
                None => return,
            }
            if let Some(v) = &self.nodes[node as usize].value {
                visit(v);
            }
        }
    }

    /// The longest pattern that is a prefix of `uri` (the dealer's best-match rule).
    pub fn longest_match(&self, uri: &str) -> Option<&T> {
        let mut best = None;
        self.matches(uri, |v| best = Some(v));
        best
    }

    /// Every stored value (for meta queries and tests).
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.nodes.iter().filter_map(|n| n.value.as_ref())
    }
}

/// A token trie mapping wildcard patterns to values.
#[derive(Debug)]
pub struct WildcardTrie<T> {
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
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

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

    pub fn entry_or_insert_with(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
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

    pub fn get(&self, pattern: &str) -> Option<&T> {
        self.nodes[self.find(pattern)? as usize].value.as_ref()
    }

    pub fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let n = self.find(pattern)?;
        self.nodes[n as usize].value.as_mut()
    }

    pub fn remove(&mut self, pattern: &str) -> Option<T> {
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

    /// Every pattern matching `uri` (same component count; empty pattern components match
    /// any component).
    pub fn matches<'a>(&'a self, uri: &str, mut visit: impl FnMut(&'a T)) {
        if self.len == 0 {
            return;
        }
        let components: smallvec::SmallVec<[&str; 16]> = uri.split('.').collect();
        // Iterative DFS; the stack never holds more than 2 entries per level.
        let mut stack: smallvec::SmallVec<[(u32, usize); 32]> = smallvec::smallvec![(ROOT, 0)];
        while let Some((node, depth)) = stack.pop() {
            let n = &self.nodes[node as usize];
            if depth == components.len() {
                if let Some(v) = &n.value {
                    visit(v);
                }
                continue;
            }
            if let Some(w) = n.wild {
                stack.push((w, depth + 1));
            }
            if let Some(&c) = n.children.get(components[depth]) {
                stack.push((c, depth + 1));
            }
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.nodes.iter().filter_map(|n| n.value.as_ref())
    }
}

/// The dealer's wildcard priority key: lengths of the runs of non-wildcard components, in
/// order. A lexicographically larger key is the better match (`a1.b2.c3..e5` → `[3, 1]`
/// beats `a1.b2..d4.e5` → `[2, 2]`).
pub fn wildcard_rank(pattern: &str) -> Vec<u16> {
    let mut runs = Vec::new();
    let mut run = 0u16;
    for component in pattern.split('.') {
        if component.is_empty() {
            runs.push(run);
            run = 0;
        } else {
            run = run.saturating_add(1);
        }
    }
    runs.push(run);
    runs
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
        let mut t = PrefixTrie::new();
        t.entry_or_insert_with("com.myapp.myobject1", || "p1");
        t.entry_or_insert_with("com.myapp", || "p0");
        assert_eq!(prefix_matches(&t, "com.myapp.myobject1.myprocedure1"), ["p0", "p1"]);
        assert_eq!(prefix_matches(&t, "com.myapp.myobject1-mysubobject1"), ["p0", "p1"]);
        assert_eq!(prefix_matches(&t, "com.myapp.myobject1"), ["p0", "p1"]);
        assert_eq!(prefix_matches(&t, "com.myapp.myobject"), ["p0"]);
        assert_eq!(prefix_matches(&t, "com.other"), Vec::<&str>::new());
        assert_eq!(t.longest_match("com.myapp.myobject1.x"), Some(&"p1"));
    }

    #[test]
    fn prefix_remove_prunes() {
        let mut t = PrefixTrie::new();
        t.entry_or_insert_with("a.b.c", || 1);
        t.entry_or_insert_with("a.b", || 2);
        assert_eq!(t.remove("a.b.c"), Some(1));
        assert_eq!(t.remove("a.b.c"), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get("a.b"), Some(&2));
        assert_eq!(t.remove("a.b"), Some(2));
        assert!(t.is_empty());
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
        let mut t = WildcardTrie::new();
        t.entry_or_insert_with("com.myapp..myprocedure1", || "w1");
        t.entry_or_insert_with("com...myprocedure1", || "w2");
        t.entry_or_insert_with("..", || "w3");
        assert_eq!(wild_matches(&t, "com.myapp.myobject1.myprocedure1"), ["w1", "w2"]);
        assert_eq!(wild_matches(&t, "com.myapp.myobject2.myprocedure1"), ["w1", "w2"]);
        assert!(wild_matches(&t, "com.myapp.myobject1.myprocedure1.mysub").is_empty());
        assert!(wild_matches(&t, "com.myapp.myobject1.myprocedure2").is_empty());
        assert_eq!(wild_matches(&t, "a.b.c"), ["w3"]);
    }

    #[test]
    fn wildcard_remove_prunes() {
        let mut t = WildcardTrie::new();
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

    #[test]
    fn wildcard_rank_follows_spec_examples() {
        // Spec: for a1.b2.c3.d4.e5, 'a1.b2.c3..e5' beats 'a1.b2..d4.e5'.
        assert!(wildcard_rank("a1.b2.c3..e5") > wildcard_rank("a1.b2..d4.e5"));
        // Spec: for a1.b2.c88.d4.e5.f6.g7, 'a1.b2..d4.e5..g7' beats 'a1.b2..d4..f6.g7'.
        assert!(wildcard_rank("a1.b2..d4.e5..g7") > wildcard_rank("a1.b2..d4..f6.g7"));
        assert!(wildcard_rank("a1.b2..d4") > wildcard_rank("a1...d4"));
    }
}
