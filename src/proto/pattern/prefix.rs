//! `PrefixTrie`, the prefix side of [`UriIndex`](super::UriIndex): a byte radix tree,
//! since WAMP prefix matching is by characters (`com.app.obj1` matches `com.app.obj1-sub`).

use smallvec::SmallVec;

use super::ROOT;

/// A radix tree mapping prefix patterns to values: each edge is labelled with a run of
/// bytes, and a node exists only where a pattern ends or two patterns part, so a pattern
/// costs one node and its bytes once (not one node per byte).
#[derive(Debug)]
pub(super) struct PrefixTrie<T> {
    pub(super) nodes: Vec<PrefixNode<T>>,
    pub(super) free: Vec<u32>,
    pub(super) len: usize,
}

#[derive(Debug)]
pub(super) struct PrefixNode<T> {
    /// The bytes on the edge from the parent (empty only at the root).
    label: Box<[u8]>,
    /// Children by the first byte of their label (unique, since labels of siblings never
    /// share a first byte), sorted by it. Most nodes have few children, so a small sorted
    /// vec beats a map.
    children: Vec<(u8, u32)>,
    pub(super) value: Option<T>,
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

    pub(super) fn entry_or_insert_with(&mut self, pattern: &str, make: impl FnOnce() -> T) -> &mut T {
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

    pub(super) fn get(&self, pattern: &str) -> Option<&T> {
        self.nodes[self.find(pattern)? as usize].value.as_ref()
    }

    #[cfg(test)]
    pub(super) fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let n = self.find(pattern)?;
        self.nodes[n as usize].value.as_mut()
    }

    /// Remove `pattern`; then drop nodes that lead nowhere and merge a node that no longer
    /// parts two patterns into its only child, so the tree stays compressed.
    pub(super) fn remove(&mut self, pattern: &str) -> Option<T> {
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
    pub(super) fn matches<'a>(&'a self, uri: &str, mut visit: impl FnMut(&'a T)) {
        self.walk(uri, |n| {
            if let Some(v) = &self.nodes[n as usize].value {
                visit(v);
            }
        });
    }

    /// The node of the longest pattern that is a prefix of `uri`.
    pub(super) fn longest(&self, uri: &str) -> Option<u32> {
        let mut best = None;
        self.walk(uri, |n| best = Some(n));
        best
    }
}

#[cfg(test)]
impl<T> PrefixTrie<T> {
    /// The tree is compressed and consistent: every node but the root has a label and
    /// either a value or at least two children, children are keyed by their label's
    /// first byte in order, and every node is either reachable or free.
    pub(super) fn check(&self) {
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
        t.check();
        assert_eq!(t.remove("a.b"), Some(2));
        assert_eq!(t.len, 0);
        // Only the root is left in use.
        assert_eq!(t.nodes.len() - t.free.len(), 1);
    }

    #[test]
    fn long_prefixes_cost_their_bytes_once() {
        // Goal: path compression; a pattern is a node and its bytes, not a node per byte.
        // Method: count nodes and label bytes for long patterns that share a head and part
        // at the end.
        let mut t: PrefixTrie<u32> = PrefixTrie::default();
        let head = "com.example.".repeat(300);
        for i in 0..100u32 {
            t.entry_or_insert_with(&format!("{head}{i:03}"), || i);
        }
        let used = t.nodes.len() - t.free.len();
        let label_bytes: usize = t.nodes.iter().map(|n| n.label.len()).sum();
        assert!(used <= 1 + 1 + 10 + 100, "{used} nodes");
        assert!(label_bytes <= head.len() + 3 * 100, "{label_bytes} label bytes");
        t.check();
        let mut got = Vec::new();
        t.matches(&format!("{head}042.more"), |v| got.push(*v));
        assert_eq!(got, [42]);
    }
}
