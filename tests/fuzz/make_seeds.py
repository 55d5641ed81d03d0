#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into corpus/<target>/ (stdlib only).

The decoders get the WAMP test vectors (tests/wamp-vectors); the transports get those
messages framed as a client would send them; http_request and config get a few typical
heads and files. Each file is named by the SHA-1 of its content, as libFuzzer names corpus
entries, so running this twice adds nothing. The committed corpus is this output minimised
with `cargo fuzz cmin` (README.md, "Fuzzing"); the shards target has no hand-made seeds:
its corpus is what a fuzzing run found, minimised.

    python3 tests/fuzz/make_seeds.py
"""
import hashlib
import json
import pathlib
import re
import struct

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = HERE.parent / "wamp-vectors" / "singlemessage"


def vectors(serializer):
    out = []
    for path in sorted(VECTORS.glob("*/*.json")):
        doc = json.loads(path.read_text())
        for sample in doc.get("samples", []):
            for v in sample.get("serializers", {}).get(serializer, []):
                out.append(bytes.fromhex(v["bytes_hex"]))
    return out


def write(target, data):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def ws_frame(opcode, payload, mask=b"\x11\x22\x33\x44", fin=True):
    """A client (masked) frame; mask=None for a server (unmasked) frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def rs_frame(kind, payload):
    return bytes([kind]) + struct.pack(">I", len(payload))[1:] + payload


def main():
    msgs = {s: vectors(s) for s in ("json", "msgpack", "cbor")}
    for ser, target in (("json", "decode_json"), ("msgpack", "decode_msgpack"), ("cbor", "decode_cbor")):
        for m in msgs[ser]:
            write(target, m)

    # websocket: [flags, chunk seed, stream]; flags bit 0 = client role, bits 1-2 = limit.
    big = 3 << 1
    for i, m in enumerate(msgs["json"][:8]):
        write("websocket", bytes([big, i * 37 % 256]) + ws_frame(1, m))
    for i, m in enumerate(msgs["msgpack"][:4]):
        write("websocket", bytes([big, i * 11 % 256]) + ws_frame(2, m))
    m = msgs["json"][0]
    half = len(m) // 2
    write("websocket", bytes([big, 5]) + ws_frame(1, m[:half], fin=False) + ws_frame(9, b"hi") + ws_frame(0, m[half:]))
    write("websocket", bytes([big, 0]) + ws_frame(9, b"ping") + ws_frame(8, struct.pack(">H", 1000) + b"bye"))
    write("websocket", bytes([big | 1, 3]) + ws_frame(2, msgs["cbor"][0], mask=None) + ws_frame(10, b"", mask=None))
    write("websocket", bytes([1 << 1, 9]) + ws_frame(1, "é€𝄞".encode() * 3))

    # rawsocket: [4-byte handshake, chunk seed, frames]; 0x7F, max length nibble | serializer.
    for ser_id, ser in ((1, "json"), (2, "msgpack"), (3, "cbor")):
        for i, m in enumerate(msgs[ser][:4]):
            hs = bytes([0x7F, 0xF0 | ser_id, 0, 0])
            write("rawsocket", hs + bytes([i * 53 % 256]) + rs_frame(0, m) + rs_frame(1, b"ping"))
    write("rawsocket", bytes([0x7F, 0x01, 0, 0, 0]) + rs_frame(2, b"pong") + rs_frame(0, msgs["json"][1]))
    write("rawsocket", bytes([0x7F, 0x05, 0, 0, 0]))

    upgrade = (
        "GET /ws?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: wamp.2.msgpack.batched, wamp.2.cbor, wamp.2.json\r\n\r\n"
    )
    write("http_request", upgrade.encode())
    write("http_request", upgrade.replace("\r\n", "\n").encode() + ws_frame(1, msgs["json"][0]))
    write("http_request", b"GET /metrics HTTP/1.0\r\nAccept: */*\r\n\r\n")
    write("http_request", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")

    readme = (HERE.parent.parent / "README.md").read_text()
    example = re.search(r"```toml\n(.*?)```", readme, re.S)
    if example:
        write("config", example.group(1).encode())
    write("config", b"")
    write("config", b'[router]\nshards = 2\n\n[[realm]]\nname = "a.b"\nslow_consumer = "drop"\n')
    write("config", b'[[listener]]\npath = "/tmp/x.sock"\nserializers = ["cbor"]\n[limits]\nping_interval_ms = 0\n')


if __name__ == "__main__":
    main()
