//! Fuzz target: the TOML config file, parsed and validated (`codecs::config`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shardbar_fuzz::codecs::config(data));
