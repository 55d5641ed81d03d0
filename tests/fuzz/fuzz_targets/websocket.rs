//! Fuzz target: a WebSocket byte stream through the frame decoder, in pieces (`transports`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shardbar_fuzz::transports::websocket(data));
