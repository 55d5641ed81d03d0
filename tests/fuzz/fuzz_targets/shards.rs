//! Fuzz target: a multi-shard router driven by arbitrary client actions (`shards`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardbar_fuzz::shards::{self, scenario::Scenario};

fuzz_target!(|scenario: Scenario| shards::run(&scenario));
