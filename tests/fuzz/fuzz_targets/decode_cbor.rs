//! Fuzz target: one CBOR WAMP message, decoded, re-encoded and transcoded (`codecs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardbar::proto::wire::Serializer;

fuzz_target!(|data: &[u8]| shardbar_fuzz::codecs::decode_and_transcode(Serializer::Cbor, data));
