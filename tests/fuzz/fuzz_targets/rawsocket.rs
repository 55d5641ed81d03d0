//! Fuzz target: a RawSocket handshake and frame stream (`transports`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shardbar_fuzz::transports::rawsocket(data));
