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

/// A radix tree mapping prefix patterns to values: each edge is labelled with a run of
/// bytes, and a node exists only where a pattern ends or two patterns part, so a pattern
/// costs one node and its bytes once (not one node per byte).
#[derive(Debug)]
struct PrefixTrie<T> {
    nodes: Vec<PrefixNode<T>>,
    free: Vec<u32>,
    len: usize,
}

#[derive(Debug)]
struct PrefixNode<T> {
    /// The bytes on the edge from the parent (empty only at the root).
    label: Box<[u8]>,
    /// Children by the first byte of their label (unique, since labels of siblings never
    /// share a first byte), sorted by it. Most nodes have few children, so a small sorted
    /// vec beats a map.
    children: Vec<(u8, u32)>,
    value: Option<T>,
}

impl<T> PrefixNode<T> {
    fn new(label: Box<[u8]>) -> Self {
        PrefixNode { label, children: Vec::new(), value: None }
    }
}

impl<T> Default for PrefixTrie<T> {
    fn default() -> Self {
        PrefixTrie { nodes: vec![PrefixNode::new(Box::default())], free: Vec::new(), len: 0 }
    }
}

impl<T> PrefixTrie<T> {
    fn child(&self, node: u32, b: u8) -> Option<u32> {
        let children = &self.nodes[node as usize].children;
        children.binary_search_by_key(&b, |&(k, _)| k).ok().map(|i| children[i].1)
    }

    fn alloc(&mut self, node: PrefixNode<T>) -> u32 {
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
        self.nodes[node as usize] = PrefixNode::new(Box::default());
        self.free.push(node);
    }

    fn attach(&mut self, parent: u32, child: u32) {
        let b = self.nodes[child as usize].label[0];
        let children = &mut self.nodes[parent as usize].children;
        let at = children.partition_point(|&(k, _)| k < b);
        children.insert(at, (b, child));
    }

    /// Split `node`'s edge after `at` bytes: `node` keeps the first `at` bytes, and a new
    /// child takes the rest of the label with `node`'s children and value.
    fn split(&mut self, node: u32, at: usize) {
        let n = &mut self.nodes[node as usize];
        let rest = PrefixNode {
            label: n.label[at..].into(),
            children: std::mem::take(&mut n.children),
            value: n.value.take(),
        };
        n.label = n.label[..at].into();
        let child = self.alloc(rest);
        self.attach(node, child);
    }

    fn entry_or_insert_with(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
        let bytes = pattern.as_bytes();
        let mut node = ROOT;
        let mut pos = 0;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            match self.child(node, rest[0]) {
                Some(c) => {
                    let label = &self.nodes[c as usize].label;
                    let common = label.iter().zip(rest).take_while(|(a, b)| a == b).count();
                    if common < label.len() {
                        self.split(c, common);
                    }
                    node = c;
                    pos += common;
                }
                None => {
                    let leaf = self.alloc(PrefixNode::new(rest.into()));
                    self.attach(node, leaf);
                    node = leaf;
                    pos = bytes.len();
                }
            }
        }
        let slot = &mut self.nodes[node as usize].value;
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(make)
    }

    /// The node where `pattern` ends, with the nodes before it on the way (root first).
    fn path(&self, pattern: &str, mut on_the_way: impl FnMut(u32)) -> Option<u32> {
        let bytes = pattern.as_bytes();
        let mut node = ROOT;
        let mut pos = 0;
        while pos < bytes.len() {
            let c = self.child(node, bytes[pos])?;
            let label = &self.nodes[c as usize].label;
            if !bytes[pos..].starts_with(label) {
                return None;
            }
            on_the_way(node);
            pos += label.len();
            node = c;
        }
        Some(node)
    }

    fn find(&self, pattern: &str) -> Option<u32> {
        self.path(pattern, |_| {})
    }

    fn get(&self, pattern: &str) -> Option<&T> {
        self.nodes[self.find(pattern)? as usize].value.as_ref()
    }

    #[cfg(test)]
    fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let n = self.find(pattern)?;
        self.nodes[n as usize].value.as_mut()
    }

    /// Remove `pattern`; then drop nodes that lead nowhere and merge a node that no longer
    /// parts two patterns into its only child, so the tree stays compressed.
    fn remove(&mut self, pattern: &str) -> Option<T> {
        let mut parents: SmallVec<[u32; 16]> = SmallVec::new();
        let mut node = self.path(pattern, |n| parents.push(n))?;
        let value = self.nodes[node as usize].value.take()?;
        self.len -= 1;
        while let Some(parent) = parents.pop() {
            let n = &self.nodes[node as usize];
            if n.value.is_some() {
                break;
            }
            match n.children.len() {
                0 => {
                    self.nodes[parent as usize].children.retain(|&(_, c)| c != node);
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

    /// Merge `node` (no value, one child) with its child: one edge, one node.
    fn merge(&mut self, node: u32) {
        let child = self.nodes[node as usize].children[0].1;
        let c = std::mem::replace(&mut self.nodes[child as usize], PrefixNode::new(Box::default()));
        self.free.push(child);
        let n = &mut self.nodes[node as usize];
        n.label = [&n.label[..], &c.label[..]].concat().into();
        n.children = c.children;
        n.value = c.value;
    }

    /// The node of every pattern that is a prefix of `uri`, shortest first.
    fn walk(&self, uri: &str, mut visit: impl FnMut(u32)) {
        if self.len == 0 {
            return;
        }
        let bytes = uri.as_bytes();
        if self.nodes[ROOT as usize].value.is_some() {
            visit(ROOT);
        }
        let mut node = ROOT;
        let mut pos = 0;
        while pos < bytes.len() {
            let Some(c) = self.child(node, bytes[pos]) else { return };
            let label = &self.nodes[c as usize].label;
            // A pattern ending inside this label would have split it: none ends here.
            if !bytes[pos..].starts_with(label) {
                return;
            }
            pos += label.len();
            node = c;
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

/// A component trie mapping wildcard patterns to values, compressed: an edge consumes one
/// component (a concrete one, or any one through the wildcard child) and then the node's
/// `tail`, the components that follow up to the next branch (concrete or wildcard), so a
/// pattern with no branch of its own is one node and its bytes once.
#[derive(Debug)]
struct WildcardTrie<T> {
    nodes: Vec<WildNode<T>>,
    free: Vec<u32>,
    len: usize,
}

#[derive(Debug)]
struct WildNode<T> {
    /// The components that follow the edge's own component, each preceded by '.'
    /// (`.a..b` is `a`, any, `b`; empty: none; always empty at the root). The leading dots
    /// tell one wildcard component (`.`) from none (``).
    tail: Box<str>,
    /// Children by their edge's (first, concrete) component.
    children: Map<Box<str>, u32>,
    /// The child for an empty pattern component (matches any one component).
    wild: Option<u32>,
    value: Option<T>,
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

    fn entry_or_insert_with(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
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

    fn get(&self, pattern: &str) -> Option<&T> {
        self.nodes[self.find(pattern)? as usize].value.as_ref()
    }

    #[cfg(test)]
    fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let n = self.find(pattern)?;
        self.nodes[n as usize].value.as_mut()
    }

    /// Remove `pattern`; then drop nodes that lead nowhere and merge a node left with one
    /// child and no value into that child, so the trie stays compressed.
    fn remove(&mut self, pattern: &str) -> Option<T> {
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

    impl<T> PrefixTrie<T> {
        /// The tree is compressed and consistent: every node but the root has a label and
        /// either a value or at least two children, children are keyed by their label's
        /// first byte in order, and every node is either reachable or free.
        fn check(&self) {
            let (mut reachable, mut values) = (0, 0);
            let mut stack = vec![ROOT];
            while let Some(node) = stack.pop() {
                let n = &self.nodes[node as usize];
                reachable += 1;
                values += n.value.is_some() as usize;
                if node != ROOT {
                    assert!(!n.label.is_empty());
                    assert!(n.value.is_some() || n.children.len() >= 2, "uncompressed node {node}");
                }
                assert!(n.children.windows(2).all(|w| w[0].0 < w[1].0), "children out of order");
                for &(b, c) in &n.children {
                    assert_eq!(self.nodes[c as usize].label[0], b);
                    stack.push(c);
                }
            }
            assert_eq!(values, self.len);
            assert_eq!(reachable + self.free.len(), self.nodes.len());
        }
    }

    impl<T> WildcardTrie<T> {
        /// The trie is compressed and consistent: every node but the root has a value or
        /// at least two children (the wildcard one included); tails are dot-led; every
        /// node is either reachable or free.
        fn check(&self) {
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

    #[test]
    fn long_patterns_cost_their_bytes_once() {
        // Goal: path compression; a pattern is a node and its bytes, not a node per byte or
        // per component. Method: count nodes and label bytes for long patterns that share
        // a head and part at the end.
        let mut t: PrefixTrie<u32> = PrefixTrie::default();
        let head = "com.example.".repeat(300);
        for i in 0..100u32 {
            t.entry_or_insert_with(&format!("{head}{i:03}"), || i);
        }
        let used = t.nodes.len() - t.free.len();
        let label_bytes: usize = t.nodes.iter().map(|n| n.label.len()).sum();
        assert!(used <= 1 + 1 + 10 + 100, "{used} nodes");
        assert!(label_bytes <= head.len() + 3 * 100, "{label_bytes} label bytes");

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
        t.check();
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
