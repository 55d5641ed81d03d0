//! shardbar: a thread-per-core WAMP v2 router.
//!
//! # The layer rule
//!
//! Nothing under [`proto`] does I/O, spawns, sleeps or reads the clock. Time comes in as
//! `now`, bytes come in as buffers, and everything goes out through `poll_*` methods. The
//! runtime ([`shard`]) is the only code that names glommio or touches a socket.

pub mod config;
pub mod credential;
pub mod limits;
pub mod proto;
pub mod shard;
