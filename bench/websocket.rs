//! WebSocket codec hot paths: unmasking client payloads in place, decoding a read buffer
//! full of small masked frames (the publisher side of a fan-out), and parsing the HTTP
//! head of an upgrade request (once per connection, but a reconnect storm is all heads).
//!
//! Run: `cargo bench --bench websocket`. To compare two runs, save a baseline with
//! `-- --save-baseline before` and compare with `-- --baseline before`.
//!
//! `unmask/bytewise` is the one-byte-at-a-time definition of RFC 6455 §5.3, kept here only
//! as the reference the word-at-a-time `unmask/word` is measured against.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shardbar::proto::wire::http::parse_request;
use shardbar::proto::wire::websocket::{Decoder, Event, OpCode, Role, unmask, write_masked_frame};

const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

fn unmask_bytewise(buf: &mut [u8], key: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

fn bench_unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for (name, len) in [("64B", 64), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let mut buf = vec![0xA5u8; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("word", name), &len, |b, _| {
            b.iter(|| unmask(black_box(&mut buf), black_box(KEY)))
        });
        group.bench_with_input(BenchmarkId::new("bytewise", name), &len, |b, _| {
            b.iter(|| unmask_bytewise(black_box(&mut buf), black_box(KEY)))
        });
    }
    group.finish();
}

fn bench_decode(c: &mut Criterion) {
    // 1000 masked 64-byte binary frames, as one read buffer would hold them.
    const FRAMES: usize = 1000;
    let mut wire = Vec::new();
    for i in 0..FRAMES {
        write_masked_frame(OpCode::Binary, true, &[i as u8; 64], KEY, &mut wire);
    }
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function("1000x64B_masked_binary", |b| {
        b.iter_batched_ref(
            || (BytesMut::from(&wire[..]), Decoder::new(Role::Server, 1 << 20)),
            |(buf, dec)| {
                let mut n = 0;
                while let Ok(Some(Event::Message { data, .. })) = dec.decode(buf) {
                    n += data.len();
                }
                black_box(n)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// An upgrade request as a browser sends it (Chromium's header set, with the WAMP
/// subprotocols autobahn-js offers).
const UPGRADE_HEAD: &[u8] = b"GET /ws HTTP/1.1\r\n\
Host: localhost:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://localhost:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: wamp.2.json, wamp.2.msgpack, wamp.2.cbor\r\n\
\r\n";

/// One run each, shared 2-core VM (2026-12-04, load 1.6–2.5): the hand-written line parser
/// `wire::http` used before took 1.69 µs (95% CI 1.63–1.75 µs) for this head; httparse,
/// building the same owned `Request`, 0.65 µs (0.647–0.653 µs).
fn bench_handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Bytes(UPGRADE_HEAD.len() as u64));
    group.bench_function("parse_upgrade_request", |b| {
        b.iter(|| match parse_request(black_box(UPGRADE_HEAD)) {
            Ok(Some((request, len))) => black_box((request.headers.len(), len)),
            other => panic!("the upgrade head must parse: {other:?}"),
        })
    });
    group.finish();
}

criterion_group!(benches, bench_unmask, bench_decode, bench_handshake);
criterion_main!(benches);
