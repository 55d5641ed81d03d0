//! `WildcardTrie`, the wildcard side of [`UriIndex`](super::UriIndex): a compressed
//! component trie (an empty pattern component matches any one component).

use std::ops::ControlFlow;

use smallvec::SmallVec;

use super::ROOT;
use crate::proto::Map;

/// A component trie mapping wildcard patterns to values, compressed: an edge consumes one
/// component (a concrete one, or any one through the wildcard child) and then the node's
/// `tail`, the components that follow up to the next branch (concrete or wildcard), so a
/// pattern with no branch of its own is one node and its bytes once.
#[derive(Debug)]
pub(super) struct WildcardTrie<T> {
    pub(super) nodes: Vec<WildNode<T>>,
    pub(super) free: Vec<u32>,
    pub(super) len: usize,
}

#[derive(Debug)]
pub(super) struct WildNode<T> {
    /// The components that follow the edge's own component, each preceded by '.'
    /// (`.a..b` is `a`, any, `b`; empty: none; always empty at the root). The leading dots
    /// tell one wildcard component (`.`) from none (``).
    tail: Box<str>,
    /// Children by their edge's (first, concrete) component.
    children: Map<Box<str>, u32>,
    /// The child for an empty pattern component (matches any one component).
    wild: Option<u32>,
    pub(super) value: Option<T>,
}

impl<T> WildNode<T> {
    fn new(tail: Box<str>) -> Self {
        WildNode { tail, children: Map::default(), wild: None, value: None }
    }

    /// The tail's components (empty ones are wildcards).
    fn tail_components(&self) -> impl Iterator<Item = &str> {
        self.tail.split('.').skip(1)
    }

    /// The number of children, the wildcard one included.
    fn branches(&self) -> usize {
        self.children.len() + usize::from(self.wild.is_some())
    }
}

/// `components` as a tail: each preceded by '.'.
fn tail_of(components: &[&str]) -> Box<str> {
    let mut tail = String::with_capacity(components.iter().map(|c| c.len() + 1).sum());
    for c in components {
        tail.push('.');
        tail.push_str(c);
    }
    tail.into()
}

impl<T> Default for WildcardTrie<T> {
    fn default() -> Self {
        WildcardTrie { nodes: vec![WildNode::new(Box::default())], free: Vec::new(), len: 0 }
    }
}

impl<T> WildcardTrie<T> {
    fn alloc(&mut self, node: WildNode<T>) -> u32 {
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

    /// Put `node` back on the free list, dropping what it holds now.
    fn release(&mut self, node: u32) {
        self.nodes[node as usize] = WildNode::new(Box::default());
        self.free.push(node);
    }

    fn step(&self, node: u32, component: &str) -> Option<u32> {
        let n = &self.nodes[node as usize];
        if component.is_empty() { n.wild } else { n.children.get(component).copied() }
    }

    fn attach(&mut self, parent: u32, component: &str, child: u32) {
        let p = &mut self.nodes[parent as usize];
        if component.is_empty() {
            p.wild = Some(child);
        } else {
            p.children.insert(component.into(), child);
        }
    }

    /// Split `node`'s tail after `at` components: `node` keeps the first `at`, and a new
    /// child (reached by the next component) takes the rest with `node`'s children,
    /// wildcard child and value.
    fn split(&mut self, node: u32, at: usize) {
        let n = &mut self.nodes[node as usize];
        let tail = std::mem::take(&mut n.tail);
        let components: Vec<&str> = tail.split('.').skip(1).collect();
        let key: Box<str> = components[at].into();
        let rest = WildNode {
            tail: tail_of(&components[at + 1..]),
            children: std::mem::take(&mut n.children),
            wild: n.wild.take(),
            value: n.value.take(),
        };
        n.tail = tail_of(&components[..at]);
        let child = self.alloc(rest);
        self.attach(node, &key, child);
    }

    pub(super) fn entry_or_insert_with(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
        let components: SmallVec<[&str; 32]> = pattern.split('.').collect();
        let mut node = ROOT;
        let mut i = 0;
        while i < components.len() {
            let component = components[i];
            let Some(child) = self.step(node, component) else {
                // A new leaf takes the rest of the pattern.
                let leaf = self.alloc(WildNode::new(tail_of(&components[i + 1..])));
                self.attach(node, component, leaf);
                node = leaf;
                break;
            };
            i += 1;
            let (common, diverged) = {
                let mut tail = self.nodes[child as usize].tail_components();
                let mut common = 0;
                loop {
                    match (tail.next(), components.get(i + common)) {
                        (None, _) => break (common, false),
                        (Some(t), Some(p)) if t == *p => common += 1,
                        _ => break (common, true),
                    }
                }
            };
            if diverged {
                self.split(child, common);
            }
            node = child;
            i += common;
        }
        let slot = &mut self.nodes[node as usize].value;
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(make)
    }

    /// The node where `pattern` ends, with (parent, edge component) for each edge on the
    /// way (root first).
    fn path<'p>(&self, pattern: &'p str, mut on_the_way: impl FnMut(u32, &'p str)) -> Option<u32> {
        let mut components = pattern.split('.');
        let mut node = ROOT;
        while let Some(component) = components.next() {
            let child = self.step(node, component)?;
            for t in self.nodes[child as usize].tail_components() {
                if components.next()? != t {
                    return None;
                }
            }
            on_the_way(node, component);
            node = child;
        }
        Some(node)
    }

    fn find(&self, pattern: &str) -> Option<u32> {
        self.path(pattern, |_, _| {})
    }

    pub(super) fn get(&self, pattern: &str) -> Option<&T> {
        self.nodes[self.find(pattern)? as usize].value.as_ref()
    }

    #[cfg(test)]
    pub(super) fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let n = self.find(pattern)?;
        self.nodes[n as usize].value.as_mut()
    }

    /// Remove `pattern`; then drop nodes that lead nowhere and merge a node left with one
    /// child and no value into that child, so the trie stays compressed.
    pub(super) fn remove(&mut self, pattern: &str) -> Option<T> {
        let mut parents: SmallVec<[(u32, &str); 16]> = SmallVec::new();
        let mut node = self.path(pattern, |n, component| parents.push((n, component)))?;
        let value = self.nodes[node as usize].value.take()?;
        self.len -= 1;
        while let Some((parent, component)) = parents.pop() {
            let n = &self.nodes[node as usize];
            if n.value.is_some() {
                break;
            }
            match n.branches() {
                0 => {
                    let p = &mut self.nodes[parent as usize];
                    if component.is_empty() {
                        p.wild = None;
                    } else {
                        p.children.remove(component);
                    }
                    self.release(node);
                    node = parent;
                }
                1 => {
                    self.merge(node);
                    break;
                }
                _ => break,
            }
        }
        Some(value)
    }

    /// Merge `node` (no value, one child) with that child: one node for the run.
    fn merge(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        let (key, child) = match n.wild.take() {
            Some(w) => (Box::<str>::default(), w),
            None => {
                let Some(only) = n.children.drain().next() else { return };
                only
            }
        };
        let c = std::mem::replace(&mut self.nodes[child as usize], WildNode::new(Box::default()));
        self.free.push(child);
        let n = &mut self.nodes[node as usize];
        n.tail = [&*n.tail, ".", &*key, &*c.tail].concat().into();
        n.children = c.children;
        n.wild = c.wild;
        n.value = c.value;
    }

    /// Where `node`'s tail ends if it matches `uri` from byte `at` (the start of a
    /// component, or past the end): the start of the next component, `uri.len() + 1`
    /// when all is consumed, None if the tail does not match there.
    fn after_tail(&self, node: u32, uri: &str, mut at: usize) -> Option<usize> {
        let bytes = uri.as_bytes();
        for t in self.nodes[node as usize].tail_components() {
            let rest = bytes.get(at..)?;
            let len = rest.iter().position(|&b| b == b'.').unwrap_or(rest.len());
            if !t.is_empty() && t.as_bytes() != &rest[..len] {
                return None;
            }
            at += len + 1;
        }
        Some(at)
    }

    /// The node of every pattern matching `uri` (same component count; empty pattern
    /// components match any component), most specific first, until `visit` breaks.
    ///
    /// A depth-first walk that tries the exact child before the wildcard child, so patterns
    /// come in decreasing order of their component sequences with concrete > wildcard:
    /// the first is the one whose first wildcard comes latest (ties: the next wildcard),
    /// which is the spec's best match. (Compression changes nothing here: a tail is a run
    /// with no branch.)
    fn walk(&self, uri: &str, mut visit: impl FnMut(u32) -> ControlFlow<()>) {
        if self.len == 0 {
            return;
        }
        // Each entry is a node (its tail consumed) and the byte offset of the URI component
        // it consumes next; `done` means all consumed. The stack holds at most one wildcard
        // sibling per level plus the current node, so it stays inline up to 31 components
        // (and URIs are bounded by `limits::URI_LEN_MAX_BYTES`).
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
            if let Some(w) = n.wild
                && let Some(after) = self.after_tail(w, uri, next)
            {
                stack.push((w, after));
            }
            if len > 0
                && let Some(&c) = n.children.get(&uri[start..start + len])
                && let Some(after) = self.after_tail(c, uri, next)
            {
                stack.push((c, after));
            }
        }
    }

    /// Every pattern matching `uri`, most specific first.
    pub(super) fn matches<'a>(&'a self, uri: &str, mut visit: impl FnMut(&'a T)) {
        self.walk(uri, |n| {
            if let Some(v) = &self.nodes[n as usize].value {
                visit(v);
            }
            ControlFlow::Continue(())
        });
    }

    /// The node of the best (first) wildcard match for `uri`.
    pub(super) fn best(&self, uri: &str) -> Option<u32> {
        let mut best = None;
        self.walk(uri, |n| {
            best = Some(n);
            ControlFlow::Break(())
        });
        best
    }
}

#[cfg(test)]
impl<T> WildcardTrie<T> {
    /// The trie is compressed and consistent: every node but the root has a value or
    /// at least two children (the wildcard one included); tails are dot-led; every
    /// node is either reachable or free.
    pub(super) fn check(&self) {
        let (mut reachable, mut values) = (0, 0);
        let mut stack = vec![ROOT];
        assert!(self.nodes[ROOT as usize].tail.is_empty());
        while let Some(node) = stack.pop() {
            let n = &self.nodes[node as usize];
            reachable += 1;
            values += n.value.is_some() as usize;
            if node != ROOT {
                assert!(n.value.is_some() || n.branches() >= 2, "uncompressed node {node}");
            }
            assert!(n.tail.is_empty() || n.tail.starts_with('.'), "tail {:?}", n.tail);
            for (k, &c) in &n.children {
                assert!(!k.is_empty());
                stack.push(c);
            }
            stack.extend(n.wild);
        }
        assert_eq!(values, self.len);
        assert_eq!(reachable + self.free.len(), self.nodes.len());
    }
}
#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn long_wildcards_cost_their_bytes_once() {
        // Goal: path compression; a pattern with no branch of its own is one node and its
        // bytes (wildcards included), not a node per component. Method: count nodes and
        // tail bytes for long patterns that share a head and part near the end.
        let head = "com.example.".repeat(300);
        let mut w: WildcardTrie<u32> = WildcardTrie::default();
        for i in 0..100u32 {
            w.entry_or_insert_with(&format!("{head}{i:03}..x.y.z"), || i);
        }
        w.check();
        let used = w.nodes.len() - w.free.len();
        let tail_bytes: usize = w.nodes.iter().map(|n| n.tail.len()).sum();
        // The root, the shared run, 100 leaves (their wildcards in their tails).
        assert!(used <= 2 + 100, "{used} nodes");
        assert!(tail_bytes <= head.len() + 100 * "..x.y.z".len(), "{tail_bytes} tail bytes");
        let mut got = Vec::new();
        w.matches(&format!("{head}042.q.x.y.z"), |v| got.push(*v));
        assert_eq!(got, [42]);
    }
}
