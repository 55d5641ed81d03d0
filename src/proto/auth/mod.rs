//! Authentication: the cryptography of each WAMP authentication method, as pure functions.
pub mod cryptosign;
pub mod fingerprint;
pub mod scram;
pub mod secret;
pub mod wampcra;
