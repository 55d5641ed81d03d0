//! The dynamic value model for WAMP `Options`/`Details` dicts and for payloads that must be
//! transcoded between serializers.
//!
//! Every serializer decodes into and encodes from [`Value`]. Integers are normalised at
//! decode time: a non-negative integer is always [`Value::UInt`], a negative one always
//! [`Value::Int`], so equality and lookups do not depend on which serializer a value came
//! from. Binary data is [`Value::Bytes`]; the JSON codec maps it to and from the WAMP
//! `"\u0000" + base64` string convention.

use std::collections::{HashMap, HashSet};

/// One decoded value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer (always `< 0`).
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(Dict),
}

impl Value {
    /// An integer value from a signed number, normalised (non-negative → `UInt`).
    pub fn int(v: i64) -> Value {
        if v >= 0 { Value::UInt(v as u64) } else { Value::Int(v) }
    }

    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::UInt(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::UInt(v) => i64::try_from(v).ok(),
            Value::Int(v) => Some(v),
            _ => None,
        }
    }

    /// A number as f64 (integers convert; used for timeouts that clients send either way).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::UInt(v) => Some(v as f64),
            Value::Int(v) => Some(v as f64),
            Value::Float(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::UInt(_) | Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "binary",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::UInt(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<Dict> for Value {
    fn from(d: Dict) -> Value {
        Value::Dict(d)
    }
}
impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Value {
        Value::List(l)
    }
}

/// A dict with string keys that keeps insertion order (so re-encoding reproduces the
/// peer's key order). Keys are unique: [`Dict::insert`] replaces, and decoders keep the
/// last of duplicate keys.
///
/// WAMP option dicts hold a handful of keys, where a linear scan beats hashing; above
/// `INDEX_ABOVE` keys a hash index is kept as well, so a hostile dict with 100k keys
/// decodes in linear time instead of quadratic. The index is boxed: inline it made every
/// [`Value`] 72 bytes instead of 32, and decoded trees are mostly small values.
#[derive(Clone, Debug, Default)]
pub struct Dict {
    entries: Vec<(String, Value)>,
    // Boxed on purpose (see above): the extra allocation is paid only by dicts of more than
    // `INDEX_ABOVE` keys, the 40 bytes saved by every value.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<String, usize>>>,
}

// The per-value cost `limits::OPTIONS_DECODED_MAX_BYTES` was measured with.
const _: () = assert!(std::mem::size_of::<Value>() <= 32, "a Value grew: re-measure the decode memory bound");

/// Entry count above which a dict keeps a hash index.
const INDEX_ABOVE: usize = 16;

impl PartialEq for Dict {
    fn eq(&self, other: &Dict) -> bool {
        self.entries == other.entries
    }
}

impl Dict {
    pub const fn new() -> Dict {
        Dict { entries: Vec::new(), index: None }
    }

    pub fn with_capacity(n: usize) -> Dict {
        Dict { entries: Vec::with_capacity(n), index: None }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k == key),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.position(key).map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Insert or replace `key`.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        if let Some(i) = self.position(&key) {
            self.entries[i].1 = value;
            return;
        }
        if let Some(ix) = &mut self.index {
            ix.insert(key.clone(), self.entries.len());
        } else if self.entries.len() >= INDEX_ABOVE {
            let mut ix: HashMap<String, usize> =
                self.entries.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
            ix.insert(key.clone(), self.entries.len());
            self.index = Some(Box::new(ix));
        }
        self.entries.push((key, value));
    }

    /// Builder form of [`Dict::insert`].
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Dict {
        self.insert(key, value);
        self
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.position(key)?;
        let (_, v) = self.entries.remove(i);
        if self.index.is_some() {
            // Rare (the router's own dicts): rebuild rather than shift every position.
            self.rebuild_index();
        }
        Some(v)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Keep the entries whose key `keep` accepts (one pass, one index rebuild).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.entries.retain(|(k, _)| keep(k));
        if self.index.is_some() {
            self.rebuild_index();
        }
    }

    /// The index for the entries as they are now, or none when they are few.
    fn rebuild_index(&mut self) {
        self.index = (self.entries.len() > INDEX_ABOVE)
            .then(|| Box::new(self.entries.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect()));
    }
}

/// Builds a decoded map, shared by the binary codecs. Of duplicate keys the last wins. In an
/// options/details dict an *absent* value (msgpack ext, CBOR `undefined`) as the last one
/// leaves the key out; elsewhere it becomes null. Absent keys are dropped in one pass at the
/// end: removing them entry by entry rebuilt the dict's index each time, quadratic in the
/// entry count of a peer's message (before authentication, in HELLO.Details).
pub(crate) struct MapBuilder {
    dict: Dict,
    options: bool,
    absent: HashSet<String>,
}

impl MapBuilder {
    pub fn new(capacity: usize, options: bool) -> MapBuilder {
        MapBuilder { dict: Dict::with_capacity(capacity), options, absent: HashSet::new() }
    }

    pub fn entry(&mut self, key: String, value: Option<Value>) {
        match value {
            Some(v) => {
                if !self.absent.is_empty() {
                    self.absent.remove(&key);
                }
                self.dict.insert(key, v);
            }
            None if self.options => {
                self.absent.insert(key);
            }
            None => self.dict.insert(key, Value::Null),
        }
    }

    pub fn finish(self) -> Dict {
        let MapBuilder { mut dict, absent, .. } = self;
        if !absent.is_empty() {
            dict.retain(|k| !absent.contains(k));
        }
        dict
    }
}

impl FromIterator<(String, Value)> for Dict {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Dict {
        let mut d = Dict::new();
        for (k, v) in iter {
            d.insert(k, v);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: absent values in an options dict win over earlier values and lose to later
    // ones, and a message of many set-then-absent pairs decodes in linear time (it was
    // quadratic: a remove rebuilt the index). Method: semantics on a small map, then
    // 200k pairs under a generous time bound.
    #[test]
    fn map_builder_drops_absent_keys_once() {
        let mut b = MapBuilder::new(0, true);
        b.entry("a".into(), Some(Value::UInt(1)));
        b.entry("b".into(), Some(Value::UInt(2)));
        b.entry("a".into(), None);
        b.entry("c".into(), None);
        b.entry("c".into(), Some(Value::UInt(3)));
        let d = b.finish();
        let keys: Vec<&str> = d.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "c"]);
        let mut payload = MapBuilder::new(0, false);
        payload.entry("x".into(), None);
        assert_eq!(payload.finish().get("x"), Some(&Value::Null));

        let n = 200_000;
        let start = std::time::Instant::now();
        let mut b = MapBuilder::new(n, true);
        for i in 0..n {
            b.entry(format!("k{i}"), Some(Value::UInt(i as u64)));
        }
        for i in 0..n {
            b.entry(format!("k{i}"), None);
        }
        assert!(b.finish().is_empty());
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{:?}", start.elapsed());
    }

    #[test]
    fn dict_keeps_order_and_replaces() {
        let mut d = Dict::new().with("b", 1u64).with("a", 2u64);
        d.insert("b", 3u64);
        let keys: Vec<&str> = d.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(d.get("b"), Some(&Value::UInt(3)));
        assert_eq!(d.remove("a"), Some(Value::UInt(2)));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn large_dicts_stay_linear_and_consistent() {
        // 100k distinct keys plus a duplicate: would be ~5e9 comparisons without the index.
        let mut d = Dict::new();
        for i in 0..100_000u64 {
            d.insert(format!("k{i}"), i);
        }
        d.insert("k5", 99u64);
        assert_eq!(d.len(), 100_000);
        assert_eq!(d.get("k5"), Some(&Value::UInt(99)));
        assert_eq!(d.get("k99999"), Some(&Value::UInt(99_999)));
        assert_eq!(d.remove("k0"), Some(Value::UInt(0)));
        assert_eq!(d.get("k1"), Some(&Value::UInt(1)));
        assert_eq!(d.iter().next().map(|(k, _)| k), Some("k1"), "order kept");
        let small = Dict::new().with("a", 1u64);
        assert_eq!(small, small.clone());
    }

    #[test]
    fn int_normalises_sign() {
        assert_eq!(Value::int(5), Value::UInt(5));
        assert_eq!(Value::int(-5), Value::Int(-5));
        assert_eq!(Value::UInt(7).as_i64(), Some(7));
        assert_eq!(Value::UInt(u64::MAX).as_i64(), None);
    }
}
