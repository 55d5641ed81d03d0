//! Golden tests from the WAMP spec's test vectors (`tests/wamp-vectors/`, copied from
//! wamp-proto/wamp-proto `testsuite/`).
//!
//! Goal: every serializer decodes every sample's bytes, and re-encoding reproduces one of
//! the sample's canonical byte strings exactly (payload passed through untouched). Method:
//! for each sample and each of json/msgpack/cbor, decode each listed variant, encode the
//! message again in the same serializer, and look the result up among the variants; then
//! check that the three serializers decode to the same message (payload compared as
//! decoded values), and that transcoding a message to another serializer reproduces that
//! serializer's bytes. EVENT samples are also built as fan-out builds them (a head per
//! subscription, a tail per serializer) and must give the same bytes.

use bytes::Bytes;
use serde_json::Value as Json;
use shardbar::proto::frame::{Framing, Transport, encode_event_split, encode_frame, encode_tail};
use shardbar::proto::wire::message::encode_dict;
use shardbar::proto::wire::{Message, Payload, Serializer, decode, encode_to_vec};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

struct Sample {
    file: String,
    description: String,
    variants: Vec<(Serializer, Vec<Vec<u8>>)>,
}

fn samples() -> Vec<Sample> {
    let mut out = Vec::new();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wamp-vectors/singlemessage");
    let mut files = Vec::new();
    for dir in ["basic", "advanced"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).expect("vector dir") {
            files.push(entry.expect("entry").path());
        }
    }
    files.sort();
    for path in files {
        let doc: Json = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        for sample in doc["samples"].as_array().expect("samples") {
            let Some(sers) = sample.get("serializers") else {
                continue;
            };
            let mut variants = Vec::new();
            for (name, ser) in
                [("json", Serializer::Json), ("msgpack", Serializer::MsgPack), ("cbor", Serializer::Cbor)]
            {
                let Some(list) = sers.get(name).and_then(|v| v.as_array()) else {
                    continue;
                };
                let bytes: Vec<Vec<u8>> =
                    list.iter().map(|v| hex(v["bytes_hex"].as_str().expect("bytes_hex"))).collect();
                variants.push((ser, bytes));
            }
            out.push(Sample {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                description: sample["description"].as_str().unwrap_or("").to_owned(),
                variants,
            });
        }
    }
    assert!(out.len() >= 30, "expected the full vector set, found {}", out.len());
    out
}

/// The message with its payload replaced by decoded values, so messages from different
/// serializers compare equal.
fn normalised(msg: &Message) -> (Message, Vec<shardbar::proto::wire::Value>) {
    let mut m = msg.clone();
    let p = match &mut m {
        Message::Abort { payload, .. }
        | Message::Error { payload, .. }
        | Message::Publish { payload, .. }
        | Message::Event { payload, .. }
        | Message::EventReceived { payload, .. }
        | Message::Call { payload, .. }
        | Message::Result { payload, .. }
        | Message::Invocation { payload, .. }
        | Message::Yield { payload, .. } => Some(std::mem::take(payload)),
        _ => None,
    };
    let values = p.map(|p: Payload| p.values().expect("payload values")).unwrap_or_default();
    (m, values)
}

fn check_serializer(ser: Serializer) {
    let mut checked = 0;
    for s in samples() {
        let Some((_, variants)) = s.variants.iter().find(|(v, _)| *v == ser) else {
            continue;
        };
        for bytes in variants {
            let frame = Bytes::from(bytes.clone());
            let msg = decode(ser, &frame)
                .unwrap_or_else(|e| panic!("{} / {} / {ser:?}: decode failed: {e}", s.file, s.description));
            let again = encode_to_vec(ser, &msg).expect("encode");
            assert!(
                variants.contains(&again),
                "{} / {} / {ser:?}: re-encoding differs\n  got  {:02x?}\n  want {:02x?}",
                s.file,
                s.description,
                again,
                variants[0]
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "{ser:?}: only {checked} variants checked");
}

#[test]
fn json_round_trips_every_vector() {
    check_serializer(Serializer::Json);
}

#[test]
fn msgpack_round_trips_every_vector() {
    check_serializer(Serializer::MsgPack);
}

#[test]
fn cbor_round_trips_every_vector() {
    check_serializer(Serializer::Cbor);
}

#[test]
fn serializers_agree_and_transcode() {
    for s in samples() {
        let decoded: Vec<(Serializer, Message)> = s
            .variants
            .iter()
            .map(|(ser, v)| (*ser, decode(*ser, &Bytes::from(v[0].clone())).expect("decode")))
            .collect();
        let (first_ser, first) = &decoded[0];
        let first_norm = normalised(first);
        for (ser, msg) in &decoded[1..] {
            assert_eq!(
                first_norm,
                normalised(msg),
                "{} / {}: {first_ser:?} and {ser:?} disagree",
                s.file,
                s.description
            );
            // Transcode the first serializer's message into this one: same bytes as the vector.
            let out = encode_to_vec(*ser, first).expect("transcode");
            let want = &s.variants.iter().find(|(v, _)| v == ser).unwrap().1;
            assert!(
                want.contains(&out),
                "{} / {}: {first_ser:?} -> {ser:?} transcode differs\n  got  {:02x?}\n  want {:02x?}",
                s.file,
                s.description,
                out,
                want[0]
            );
        }
    }
}

/// Goal: an EVENT built in two parts, as fan-out builds it (a per-subscription head, a
/// payload tail shared per serializer), is the spec's bytes, for every serializer (the
/// payload copied or transcoded) and transport. Method: decode each EVENT sample in each
/// serializer, build the split frame for every serializer and transport, and compare its
/// message bytes with that serializer's vector and the whole frame with `encode_frame`.
#[test]
fn split_event_frames_match_the_vectors() {
    let mut checked = 0;
    for s in samples() {
        for (source, variants) in &s.variants {
            let Message::Event { subscription, publication, details, payload } =
                decode(*source, &Bytes::from(variants[0].clone())).expect("decode")
            else {
                continue;
            };
            for (ser, want) in &s.variants {
                let tail = encode_tail(*ser, &payload).expect("tail");
                let mut encoded = Vec::new();
                encode_dict(*ser, &details, &mut encoded);
                for transport in [Transport::RawSocket, Transport::WebSocket] {
                    let framing = Framing { transport, serializer: *ser };
                    let split = encode_event_split(framing, subscription, publication, &encoded, payload.count, &tail)
                        .expect("split frame");
                    let (head, tail) = split.parts();
                    let bytes = [head, tail].concat();
                    let msg = Message::Event {
                        subscription,
                        publication,
                        details: details.clone(),
                        payload: payload.clone(),
                    };
                    assert_eq!(bytes, &encode_frame(framing, &msg).expect("whole frame")[..]);
                    let header = match (transport, bytes[1]) {
                        (Transport::RawSocket, _) => 4,
                        (Transport::WebSocket, 126) => 4,
                        (Transport::WebSocket, 127) => 10,
                        (Transport::WebSocket, _) => 2,
                    };
                    assert!(
                        want.contains(&bytes[header..].to_vec()),
                        "{} / {}: {source:?} -> {ser:?} over {transport:?} differs",
                        s.file,
                        s.description
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 18, "expected EVENT samples in every serializer, checked {checked}");
}
