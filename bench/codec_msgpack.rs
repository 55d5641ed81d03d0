//! Codec benchmarks for the binary serializers (MessagePack and CBOR).
//!
//! Measures what a router does per message on its hot path: decoding a PUBLISH (envelope
//! decoded, payload validated and kept as a raw slice) and encoding an EVENT whose payload
//! is already in the target serializer (copied verbatim). Payloads are lists of small
//! market-data records sized to about 64 B, 1 KiB and 64 KiB, so the payload walk in `skip`
//! sees realistic structure rather than one long string. This file only measures; it must not
//! assert behaviour (the unit and vector tests do that).
//!
//! Run: `cargo bench --bench codec_msgpack -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shardbar::proto::wire::{Dict, Message, Payload, Serializer, Value, decode, encode};

/// Payload sizes to measure, with their labels.
const SIZES: [(&str, usize); 3] = [("64B", 64), ("1KiB", 1024), ("64KiB", 64 * 1024)];

const SERIALIZERS: [Serializer; 2] = [Serializer::MsgPack, Serializer::Cbor];

/// One record of the kind a market-data topic carries.
fn record(i: u64) -> Value {
    Value::Dict(
        Dict::new()
            .with("id", i)
            .with("sym", "ABCD")
            .with("px", Value::Float(101.25 + i as f64))
            .with("qty", 100 * i)
            .with("live", true),
    )
}

/// A payload of `[records…]` grown until its encoding reaches `target` bytes (a single
/// short string for targets below one record).
fn payload(ser: Serializer, target: usize) -> Payload {
    let mut args = Vec::new();
    loop {
        let p = Payload::from_values(ser, Some(&args), None);
        if p.len_bytes() >= target {
            return p;
        }
        if target < 48 {
            args = vec![Value::Str("x".repeat(target.saturating_sub(4)))];
        } else {
            args.push(record(args.len() as u64));
        }
    }
}

fn publish_frame(ser: Serializer, target: usize) -> Bytes {
    let msg = Message::Publish {
        request: 239_714_735,
        options: Dict::new().with("acknowledge", true),
        topic: "com.example.marketdata.ABCD".to_owned(),
        payload: payload(ser, target),
    };
    let mut out = Vec::new();
    encode(ser, &msg, &mut out).expect("encode PUBLISH");
    Bytes::from(out)
}

fn decode_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_publish");
    for ser in SERIALIZERS {
        for (label, size) in SIZES {
            let frame = publish_frame(ser, size);
            // Fail early if the frame does not decode: the numbers would measure the error path.
            decode(ser, &frame).expect("decode PUBLISH");
            group.throughput(Throughput::Bytes(frame.len() as u64));
            group.bench_with_input(BenchmarkId::new(ser.name(), label), &frame, |b, frame| {
                b.iter(|| decode(ser, black_box(frame)))
            });
        }
    }
    group.finish();
}

fn encode_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_event");
    for ser in SERIALIZERS {
        for (label, size) in SIZES {
            let msg = Message::Event {
                subscription: 5_512_315_355,
                publication: 4_429_313_566,
                details: Dict::new(),
                payload: payload(ser, size),
            };
            let mut out = Vec::with_capacity(size + 64);
            encode(ser, &msg, &mut out).expect("encode EVENT");
            group.throughput(Throughput::Bytes(out.len() as u64));
            group.bench_with_input(BenchmarkId::new(ser.name(), label), &msg, |b, msg| {
                b.iter(|| {
                    // Reuse one buffer, as the connection's write buffer is reused.
                    out.clear();
                    encode(ser, black_box(msg), &mut out).expect("encode EVENT");
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decode_publish, encode_event);
criterion_main!(benches);
