//! Fuzz target: an HTTP request head and the WebSocket upgrade checks (`transports`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shardbar_fuzz::transports::http_request(data));
