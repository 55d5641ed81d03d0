//! The sans-IO WAMP router: no sockets, no threads, no clock reads, no glommio.
//!
//! Time comes in as `now`, bytes come in as buffers, and everything goes out through
//! `poll_*`. That makes the whole router testable in a deterministic multi-shard simulation
//! (`tests/simulation.rs`) and keeps the runtime (`crate::shard`) thin and swappable.

pub mod wire;

pub mod auth;
pub mod authz;
pub(crate) mod broker;
mod control;
pub mod core;
pub(crate) mod dealer;
pub mod frame;
mod lifecycle;
mod liveness;
mod login;
pub mod mesh;
pub(crate) mod meta;
pub(crate) mod options;
mod out;
// Public (hidden) only so `bench/pattern.rs` can measure the index directly.
#[doc(hidden)]
pub mod pattern;
mod permit;
mod pubsub;
pub mod realm;
mod rpc;
pub mod session;
pub mod stats;
pub(crate) mod store;
mod timers;
pub(crate) mod uris;
pub(crate) mod violation;

/// The core's hash map: aHash with random keys (fast, and still resistant to peers choosing
/// colliding topic names). Code that emits messages never depends on its iteration order.
pub type Map<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
/// The core's hash set (see [`Map`]).
pub type Set<K> = std::collections::HashSet<K, ahash::RandomState>;
