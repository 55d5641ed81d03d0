//! Micro-benchmarks of the JSON codec (`src/proto/wire/json.rs`): decoding a PUBLISH with
//! a 64 B, 1 KiB and 64 KiB payload (the payload is only validated, not built), building a
//! payload's values (the transcode path: hand parser below the threshold, simd-json
//! above; serde_json alongside as a reference point for the machine), decoding a HELLO (a
//! typical nested `Details` dict), and encoding an EVENT.
//!
//! Run: `cargo bench --bench codec_json -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shardbar::proto::wire::{Dict, Message, Payload, Serializer, Value, decode, encode};

const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

/// A JSON payload (`[args],{kwargs}`) of about `size` bytes: records of mixed types, the
/// shape of typical application data.
fn payload(size: usize) -> Payload {
    let kwargs = Dict::new().with("source", "bench");
    let mut args: Vec<Value> = vec![Value::str("Hello, world!"), Value::UInt(42)];
    let build = |args: &[Value]| Payload::from_values(Serializer::Json, Some(args), Some(&kwargs));
    if size <= 64 {
        // Too small for a record: pad with one string (`,"…"` adds three bytes around it).
        let base = build(&args).raw.len();
        args.push(Value::str("x".repeat(size.saturating_sub(base + 3))));
        return build(&args);
    }
    for i in 0u64.. {
        let p = build(&args);
        if p.raw.len() >= size {
            return p;
        }
        args.push(Value::Dict(
            Dict::new()
                .with("id", i)
                .with("name", format!("item-{i}"))
                .with("price", Value::Float(12.5 + i as f64))
                .with("tags", Value::List(vec![Value::str("a"), Value::str("b\"q")]))
                .with("active", i % 2 == 0),
        ));
    }
    unreachable!("the payload grows each round")
}

fn publish_frame(p: &Payload) -> Bytes {
    let msg = Message::Publish {
        request: 239_714_735,
        options: Dict::new().with("acknowledge", true),
        topic: "com.myapp.mytopic1".to_owned(),
        payload: p.clone(),
    };
    let mut out = Vec::new();
    encode(Serializer::Json, &msg, &mut out).expect("encode");
    Bytes::from(out)
}

fn decode_publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_decode_publish");
    for (size, name) in SIZES {
        let frame = publish_frame(&payload(size));
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, frame| {
            b.iter(|| decode(Serializer::Json, black_box(frame)).expect("decode"))
        });
    }
    g.finish();
}

fn payload_values(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_payload_values");
    for (size, name) in SIZES {
        let p = payload(size);
        g.throughput(Throughput::Bytes(p.raw.len() as u64));
        g.bench_with_input(BenchmarkId::new("shardbar", name), &p, |b, p| {
            b.iter(|| black_box(p).values().expect("values"))
        });
        // Reference point on the same machine: serde_json building its own value tree.
        let wrapped = [&b"["[..], &p.raw, b"]"].concat();
        g.bench_with_input(BenchmarkId::new("serde_json_ref", name), &wrapped, |b, json| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(json)).expect("serde_json"))
        });
    }
    g.finish();
}

fn decode_hello(c: &mut Criterion) {
    let frame = Bytes::from_static(
        br#"[1,"realm1",{"agent":"AutobahnPython-23.1.2","authid":"joe","authmethods":["wampcra","anonymous"],"roles":{"caller":{"features":{"caller_identification":true,"progressive_call_results":true,"call_canceling":true}},"callee":{"features":{"caller_identification":true,"pattern_based_registration":true,"shared_registration":true,"progressive_call_results":true,"registration_revocation":true,"call_canceling":true}},"publisher":{"features":{"publisher_identification":true,"subscriber_blackwhite_listing":true,"publisher_exclusion":true}},"subscriber":{"features":{"publisher_identification":true,"pattern_based_subscription":true,"subscription_revocation":true}}}}]"#,
    );
    let mut g = c.benchmark_group("json_decode_hello");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function(BenchmarkId::from_parameter(frame.len()), |b| {
        b.iter(|| decode(Serializer::Json, black_box(&frame)).expect("decode"))
    });
    g.finish();
}

fn encode_event(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_encode_event");
    for (size, name) in SIZES {
        let msg = Message::Event {
            subscription: 5_512_315_355,
            publication: 4_429_313_566,
            details: Dict::new().with("topic", "com.myapp.mytopic1").with("publisher", 3_335_656u64),
            payload: payload(size),
        };
        let mut out = Vec::with_capacity(size + 128);
        encode(Serializer::Json, &msg, &mut out).expect("encode");
        g.throughput(Throughput::Bytes(out.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &msg, |b, msg| {
            b.iter(|| {
                out.clear();
                encode(Serializer::Json, black_box(msg), &mut out).expect("encode");
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode_publish, payload_values, decode_hello, encode_event);
criterion_main!(benches);
