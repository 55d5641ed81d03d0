"""Protocol violations and bad handshakes over real sockets.

Each case gets its defined answer — ABORT ``wamp.error.protocol_violation`` with a
``Details.message`` then the transport closed (WAMP violations), a WebSocket close code
(transport violations), RawSocket error octets, or an HTTP status — and a *witness* (two
Autobahn sessions on different shards, connected before the violation) must still do
pub/sub and RPC afterwards. Where the violator had a session, its registration must be
freed: another session registers the same procedure afterwards.

The router here has ``message_size_max`` = 64 KiB, so it advertises RawSocket length
exponent 7 (2^(9+7) = 64 KiB), and its Unix-socket listener accepts JSON only.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid

import pytest

import rawwamp as rw
from abclient import Pool, Witness
from conftest import Router

MAX = 65536


@pytest.fixture(scope="module")
def vrouter():
    r = Router(name="violations", limits={"message_size_max": MAX, "ping_interval_ms": 0},
               unix_listener={"serializers": ["json"]})
    r.start()
    yield r
    r.cleanup()


def uid() -> str:
    return uuid.uuid4().hex[:12]


async def expect_abort(conn, timeout=10.0):
    """The next message is ABORT protocol_violation with a message; then the router closes."""
    m = await conn.recv(timeout)
    assert m[0] == rw.ABORT, f"expected ABORT, got {m!r}"
    assert m[2] == "wamp.error.protocol_violation", m
    assert isinstance(m[1].get("message"), str) and m[1]["message"], f"ABORT without Details.message: {m!r}"
    rest, _ = await conn.recv_closed(timeout)
    assert rest == [], f"messages after ABORT: {rest!r}"
    return m


async def session_with_registration(pool, vrouter, kind):
    """A raw session (shard 0) that registered a fresh procedure; returns (conn, procedure)."""
    c = pool.track_raw(await rw.raw_session(vrouter, kind, shard=0))
    proc = f"test.violation.{uid()}"
    await c.register(proc)
    return c, proc


async def assert_freed(pool, proc, transport_error: bool = False):
    """Another session (on the other shard) can register the violator's procedure.

    After an ABORT the session was ended before the transport closed, so the first REGISTER
    must succeed. After a transport-level error the router closes the socket first and ends
    the session just after (the ordering test_liveness.py's reaped-callee test flags), so a
    short bounded retry is allowed there."""
    from autobahn.wamp.exception import ApplicationError

    other = await pool.connect("ws-cbor", shard=1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (2.0 if transport_error else 0.0)
    while True:
        try:
            await other.register(lambda: "mine now", proc)
            break
        except ApplicationError as e:
            if e.error != "wamp.error.procedure_already_exists" or loop.time() >= deadline:
                raise
            await asyncio.sleep(0.02)
    assert await other.call(proc) == "mine now"


# ---------------------------------------------------------------- WAMP-level violations

SESSION_VIOLATIONS = {
    # name: (kind, what to send after HELLO; a list is encoded, bytes are sent as one message)
    "garbage-msgpack": ("rs-msgpack", b"\xc1\xc1\xc1 not msgpack"),
    "garbage-json": ("rs-json", b"{[this is not json"),
    "garbage-cbor": ("rs-cbor", b"\xff\xfe\xfd"),
    "not-a-list": ("rs-json", b'{"a": 1}'),
    "empty-list": ("rs-msgpack", [],),
    "second-hello": ("rs-json", [rw.HELLO, "realm1", {"roles": {"caller": {}}}]),
    "unknown-type-99": ("rs-msgpack", [99, 1, {}]),
    "unknown-type-7": ("rs-json", [7, 1, {}]),
    "router-only-welcome": ("rs-cbor", [rw.WELCOME, 12345, {}]),
    "router-only-event": ("rs-json", [rw.EVENT, 1, 2, {}]),
    "router-only-result": ("rs-msgpack", [rw.RESULT, 1, {}]),
    "router-only-invocation": ("rs-json", [rw.INVOCATION, 1, 2, {}]),
    "router-only-published": ("rs-cbor", [rw.PUBLISHED, 1, 2]),
    "yield-unknown-request": ("rs-msgpack", [rw.YIELD, 4242, {}, ["x"]]),
    "error-unknown-invocation": ("rs-json", [rw.ERROR, rw.INVOCATION, 4242, {}, "com.err"]),
    "error-for-publish": ("rs-json", [rw.ERROR, rw.PUBLISH, 1, {}, "com.err"]),
    "publish-options-not-dict": ("rs-msgpack", [rw.PUBLISH, 10, ["x"], "com.topic"]),
    "publish-too-short": ("rs-json", [rw.PUBLISH]),
    "subscribe-topic-not-string": ("rs-cbor", [rw.SUBSCRIBE, 10, {}, 42]),
    "call-args-not-list": ("rs-json", [rw.CALL, 10, {}, "com.proc", {"a": 1}]),
    "bool-as-int": ("rs-msgpack", [rw.PUBLISH, 10, {"acknowledge": 1}, "com.topic"]),
    "register-bad-match": ("rs-json", [rw.REGISTER, 10, {"match": "regex"}, "com.proc"]),
    "cancel-bad-mode": ("rs-json", [rw.CANCEL, 10, {"mode": "explode"}]),
    "ws-garbage-json": ("ws-json", b"]]]]"),
    "ws-second-hello": ("ws-cbor", [rw.HELLO, "realm1", {}]),
    "ws-router-only-welcome": ("ws-msgpack", [rw.WELCOME, 1, {}]),
}


@pytest.mark.parametrize("case", list(SESSION_VIOLATIONS))
async def test_session_violation_aborts_and_others_continue(vrouter, case):
    # Goal: a WAMP protocol violation in an established session gets ABORT
    # wamp.error.protocol_violation (with Details.message), the transport is closed, the
    # violator's registration is freed, and other sessions keep working.
    # Method: witness sessions first; a raw session on shard 0 registers a procedure, then
    # sends the violation; then the witness checks pub/sub + RPC and a session on shard 1
    # registers the freed procedure.
    kind, bad = SESSION_VIOLATIONS[case]
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        c, proc = await session_with_registration(pool, vrouter, kind)
        if isinstance(bad, bytes):
            await c.send_payload(bad)
        else:
            await c.send(bad)
        await expect_abort(c)
        await witness.check()
        await assert_freed(pool, proc)


PRE_HELLO = {
    "subscribe-before-hello": ("rs-msgpack", [rw.SUBSCRIBE, 1, {}, "com.topic"]),
    "goodbye-before-hello": ("rs-json", [rw.GOODBYE, {}, "wamp.close.close_realm"]),
    "error-before-hello": ("rs-cbor", [rw.ERROR, rw.INVOCATION, 1, {}, "com.err"]),
    "garbage-before-hello": ("rs-json", b"\x00\x01garbage"),
    "ws-call-before-hello": ("ws-json", [rw.CALL, 1, {}, "com.proc", []]),
    "hello-realm-not-string": ("rs-msgpack", [rw.HELLO, 42, {}]),
    "hello-details-not-dict": ("rs-json", [rw.HELLO, "realm1", []]),
}


@pytest.mark.parametrize("case", list(PRE_HELLO))
async def test_violation_before_hello(vrouter, case):
    # Goal: anything but a well-formed HELLO as the first message is a protocol violation:
    # ABORT protocol_violation, then the transport is closed; others keep working.
    # Method: raw connection, send the bad first message, expect ABORT and EOF; witness check.
    kind, bad = PRE_HELLO[case]
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        c = pool.track_raw(await rw.open_raw(vrouter, kind))
        if isinstance(bad, bytes):
            await c.send_payload(bad)
        else:
            await c.send(bad)
        await expect_abort(c)
        await witness.check()


@pytest.mark.parametrize("realm,details,reason", [
    ("no.such.realm", {}, "wamp.error.no_such_realm"),
    ("bad realm", {}, "wamp.error.invalid_uri"),
    ("realm1", {"authmethods": ["ticket"], "authid": "joe"}, "wamp.error.no_auth_method"),
], ids=["unknown-realm", "invalid-realm-uri", "no-anonymous-auth"])
async def test_hello_refused(vrouter, realm, details, reason):
    # Goal: a HELLO the router cannot accept (unknown realm with auto_create_realms off,
    # invalid realm URI, only non-anonymous auth methods) gets ABORT with the matching reason
    # (not a protocol violation) and no WELCOME.
    # Method: raw RawSocket JSON client sends the HELLO; expect ABORT; others keep working.
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        c = pool.track_raw(await rw.open_raw(vrouter, "rs-json"))
        await c.send([rw.HELLO, realm, {"roles": {"caller": {}}, **details}])
        m = await c.recv()
        assert m[0] == rw.ABORT and m[2] == reason, m
        await witness.check()


async def test_duplicate_call_request_in_flight_aborts(vrouter):
    # Goal: a CALL reusing the Request ID of a call still in flight is a protocol violation;
    # the callee's pending invocation is not left hanging for others.
    # Method: raw callee (shard 1) and raw caller (shard 0); the caller sends two CALLs with
    # the same ID; expect ABORT for the caller; the callee session continues.
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        proc = f"test.violation.dup.{uid()}"
        callee = pool.track_raw(await rw.raw_session(vrouter, "rs-msgpack", shard=1))
        await callee.register(proc)
        caller = pool.track_raw(await rw.raw_session(vrouter, "rs-json", shard=0))
        await caller.send([rw.CALL, 1, {}, proc, []])
        await callee.recv_until(lambda m: m[0] == rw.INVOCATION)
        await caller.send([rw.CALL, 1, {}, proc, []])
        await expect_abort(caller)
        await witness.check()
        # The callee is still registered and answers a new caller.
        caller2 = pool.track_raw(await rw.raw_session(vrouter, "ws-json", shard=0))
        await caller2.send([rw.CALL, 1, {}, proc, ["again"]])
        inv, _ = await callee.recv_until(lambda m: m[0] == rw.INVOCATION and m[4] == ["again"])
        await callee.send([rw.YIELD, inv[1], {}, ["ok"]])
        res, _ = await caller2.recv_until(lambda m: m[0] == rw.RESULT)
        assert res[3] == ["ok"]


# ---------------------------------------------------------------- RawSocket transport


async def test_rawsocket_advertises_the_configured_limit(vrouter):
    # Goal: the handshake reply carries the router's receive limit from message_size_max
    # (64 KiB = exponent 7), and a message of exactly that size is accepted.
    # Method: raw RawSocket handshake; PUBLISH (acknowledged) padded to exactly 64 KiB.
    async with Pool(vrouter) as pool:
        c = pool.track_raw(await rw.RawSocketConn.open(port=vrouter.port, serializer="msgpack"))
        assert c.router_max_len == MAX
        await c.hello()
        pad_len = MAX - 64
        while True:
            data = rw.encode("msgpack", [rw.PUBLISH, 1, {"acknowledge": True}, "com.big", ["x" * pad_len]])
            if len(data) == MAX:
                break
            pad_len += MAX - len(data)
        assert len(data) == MAX
        await c.send_payload(data)
        m = await c.recv()
        assert m[0] == rw.PUBLISHED, m


@pytest.mark.parametrize("when", ["after-hello", "before-hello"])
async def test_rawsocket_oversize_frame_closes(vrouter, when):
    # Goal: a frame longer than the limit the router advertised fails the connection (the
    # spec's MUST); the router does not wait for the payload. Others keep working.
    # Method: send only a frame prefix announcing MAX+1 bytes; expect EOF with no message.
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        if when == "after-hello":
            c, proc = await session_with_registration(pool, vrouter, "rs-msgpack")
        else:
            c = pool.track_raw(await rw.RawSocketConn.open(port=vrouter.port, serializer="msgpack"))
        await c.send_raw(rw.rawsocket_prefix(MAX + 1))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        got, closed = await c.recv_closed()
        # Before HELLO the router would also close after its 10 s HELLO deadline: the close
        # must come from the length check, long before that.
        assert loop.time() - t0 < 3, "closed only by a timeout, not by the length check"
        assert got == [] or (len(got) == 1 and got[0][0] == rw.ABORT), got
        await witness.check()
        if when == "after-hello":
            await assert_freed(pool, proc, transport_error=True)


@pytest.mark.parametrize("prefix", [b"\x03\x00\x00\x02", b"\x07\x00\x00\x00", b"\x10\x00\x00\x02",
                                    b"\x08\x00\x00\x01"], ids=["type3", "type7", "reserved-bits", "x-bit-nonzero-len"])
async def test_rawsocket_bad_frame_prefix_closes(vrouter, prefix):
    # Goal: a frame prefix with a reserved frame type, reserved bits, or the X length bit set
    # with a non-zero 24-bit length fails the connection; others keep working.
    # Method: after HELLO (with a registration), send the bad prefix (+2 bytes); expect EOF.
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        c, proc = await session_with_registration(pool, vrouter, "rs-json")
        await c.send_raw(prefix + b"[]")
        got, _ = await c.recv_closed()
        assert got == [] or (len(got) == 1 and got[0][0] == rw.ABORT), got
        await witness.check()
        await assert_freed(pool, proc, transport_error=True)


async def test_rawsocket_16_mib_message_uses_the_x_bit(router):
    # Goal: with the default 16 MiB limit (L=15) a message of exactly 2^24 bytes is legal and
    # is framed with the X bit and a zero 24-bit length (wamp-proto PR #508); the router
    # accepts it.
    # Method: on the shared router (default message_size_max), a raw MessagePack session
    # sends an acknowledged PUBLISH padded to exactly 16 MiB; expect PUBLISHED.
    async with Pool(router) as pool:
        c = pool.track_raw(await rw.raw_session(router, "rs-msgpack"))
        assert c.router_max_len == 1 << 24
        n = 1 << 24
        pad = n - 64
        while True:
            data = rw.encode("msgpack", [rw.PUBLISH, 1, {"acknowledge": True}, "test.huge", ["x" * pad]])
            if len(data) == n:
                break
            pad += n - len(data)
        await c.send_raw(bytes([0x08, 0, 0, 0]) + data)
        m = await c.recv(30)
        assert m[:2] == [rw.PUBLISHED, 1], m


async def test_rawsocket_ping_is_answered(vrouter):
    # Goal: a RawSocket PING from the client gets a PONG with the same payload.
    # Method: raw RawSocket session sends PING (frame type 1) and reads the next frame.
    async with Pool(vrouter) as pool:
        c = pool.track_raw(await rw.raw_session(vrouter, "rs-cbor"))
        await c.send_frame(b"ping-payload-123", 1)
        ftype, payload = await c.recv_frame()
        assert (ftype, payload) == (2, b"ping-payload-123")


@pytest.mark.parametrize("request_octets,error", [
    (bytes([0x7F, 0xF4, 0, 0]), 1),  # UBJSON
    (bytes([0x7F, 0xF5, 0, 0]), 1),  # FlatBuffers
    (bytes([0x7F, 0xF7, 0, 0]), 1),  # reserved serializer 7
    (bytes([0x7F, 0xF0, 0, 0]), 1),  # serializer 0 (illegal)
    (bytes([0x7F, 0xF1, 1, 0]), 3),  # reserved octets used
    (bytes([0x7F, 0xF1, 0, 9]), 3),
], ids=["ubjson", "flatbuffers", "ser7", "ser0", "reserved1", "reserved2"])
async def test_rawsocket_handshake_errors(vrouter, request_octets, error):
    # Goal: a RawSocket handshake the router cannot accept gets the error reply
    # 0x7F | EEEE 0000 | 0 | 0 with the right error code, and the connection is closed.
    # Method: send the four handshake octets; expect the four error octets, then EOF.
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        with pytest.raises(rw.HandshakeRefused) as e:
            await rw.RawSocketConn.open(port=vrouter.port, handshake=request_octets)
        assert e.value.reply == bytes([0x7F, error << 4, 0, 0]), e.value.reply.hex()
        await witness.check()


async def test_rawsocket_listener_serializer_policy(vrouter):
    # Goal: a listener configured for JSON only refuses MessagePack and CBOR with error 1
    # ("serializer unsupported") and accepts JSON.
    # Method: handshakes on the router's Unix-socket listener (serializers = ["json"]).
    async with Pool(vrouter) as pool:
        for ser in ("msgpack", "cbor"):
            with pytest.raises(rw.HandshakeRefused) as e:
                await rw.RawSocketConn.open(path=vrouter.unix_path, serializer=ser)
            assert e.value.reply == bytes([0x7F, 0x10, 0, 0])
        c = pool.track_raw(await rw.RawSocketConn.open(path=vrouter.unix_path, serializer="json"))
        await c.hello()


async def test_rawsocket_handshake_then_eof_then_reconnect(vrouter):
    # Goal: a client that sends half a handshake and disconnects does not disturb the router.
    # Method: two octets then close; then a witness check.
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        reader, writer = await asyncio.open_connection("127.0.0.1", vrouter.port)
        writer.write(b"\x7f\xf2")
        await writer.drain()
        writer.close()
        await witness.check()


# ---------------------------------------------------------------- WebSocket transport


async def ws_session(pool, vrouter, ser="json"):
    c = pool.track_raw(await rw.WebSocketConn.open(vrouter.port, ser))
    await c.hello()
    return c


async def expect_ws_close(c, code):
    got, closed = await c.recv_closed()
    assert closed.code == code, f"expected close {code}, got {closed} after {got!r}"
    return got


@pytest.mark.parametrize("name,frames,code", [
    ("invalid-utf8-text", [rw.ws_frame(rw.OP_TEXT, b'["\xff\xfe"]')], 1007),
    ("unmasked-frame", [rw.ws_frame(rw.OP_TEXT, b"[]", mask=False)], 1002),
    ("reserved-opcode", [rw.ws_frame(0x3, b"[]")], 1002),
    ("oversize-message", [rw.ws_frame(rw.OP_TEXT, b"[" + b" " * MAX + b"]")], 1009),
    ("oversize-fragmented", [rw.ws_frame(rw.OP_TEXT, b" " * 40000, fin=False),
                             rw.ws_frame(rw.OP_CONT, b" " * 40000)], 1009),
    ("continuation-without-start", [rw.ws_frame(rw.OP_CONT, b"[]")], 1002),
    ("fragmented-ping", [rw.ws_frame(rw.OP_PING, b"x", fin=False)], 1002),
    ("ping-over-125-bytes", [rw.ws_frame(rw.OP_PING, b"p" * 126)], 1002),
    ("rsv1-without-extension", [bytes([0xC1]) + rw.ws_frame(rw.OP_TEXT, b"[]")[1:]], 1002),
    ("close-code-1005", [rw.ws_frame(rw.OP_CLOSE, b"\x03\xed")], 1002),
    ("close-one-byte", [rw.ws_frame(rw.OP_CLOSE, b"\x03")], 1002),
], ids=lambda x: x if isinstance(x, str) else "")
async def test_websocket_frame_violations(vrouter, name, frames, code):
    # Goal: WebSocket-level violations close the connection with the RFC 6455 code
    # (1007 bad UTF-8, 1002 protocol error, 1009 message over message_size_max); the
    # session's registration is freed and others keep working.
    # Method: raw WebSocket JSON session with a registration sends the frames; expect a
    # Close frame with the code (an ABORT may precede it), then check the witness.
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        c = await ws_session(pool, vrouter)
        proc = f"test.violation.ws.{uid()}"
        await c.register(proc)
        for f in frames:
            await c.send_raw(f)
        got = await expect_ws_close(c, code)
        assert all(m[0] == rw.ABORT for m in got), got
        await witness.check()
        await assert_freed(pool, proc, transport_error=True)


async def test_websocket_fragmented_message_is_one_wamp_message(vrouter):
    # Goal: a WAMP message split over several WebSocket frames (with a ping between them) is
    # reassembled; the ping is answered.
    # Method: raw WebSocket JSON session sends PUBLISH (acknowledged) in three fragments.
    async with Pool(vrouter) as pool:
        c = await ws_session(pool, vrouter)
        data = rw.encode("json", [rw.PUBLISH, 1, {"acknowledge": True}, "com.frag", ["a" * 100]])
        parts = [data[:10], data[10:50], data[50:]]
        await c.send_raw(rw.ws_frame(rw.OP_TEXT, parts[0], fin=False))
        await c.send_raw(rw.ws_frame(rw.OP_PING, b"mid"))
        await c.send_raw(rw.ws_frame(rw.OP_CONT, parts[1], fin=False))
        await c.send_raw(rw.ws_frame(rw.OP_CONT, parts[2]))
        fin, op, payload = await c.recv_ws_frame()
        assert (op, payload) == (rw.OP_PONG, b"mid")
        m = await c.recv()
        assert m[:2] == [rw.PUBLISHED, 1], m


async def test_websocket_close_is_echoed(vrouter):
    # Goal: a client Close is answered with a Close (same code) and the session ends.
    # Method: raw WebSocket session with a registration sends Close 1000; expect Close 1000;
    # the registration is freed.
    async with Pool(vrouter) as pool:
        c = await ws_session(pool, vrouter, "msgpack")
        proc = f"test.violation.wsclose.{uid()}"
        await c.register(proc)
        await c.send_raw(rw.ws_frame(rw.OP_CLOSE, b"\x03\xe8bye"))
        await expect_ws_close(c, 1000)
        await assert_freed(pool, proc, transport_error=True)


# ---------------------------------------------------------------- HTTP / upgrade


def key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


@pytest.mark.parametrize("protocols", [None, ["wamp.2.ubjson"], ["chat", "superchat"], ["wamp.2.json.batched"]],
                         ids=["none", "ubjson", "foreign", "batched"])
async def test_websocket_upgrade_without_acceptable_subprotocol_is_400(vrouter, protocols):
    # Goal: a WebSocket upgrade that offers no WAMP subprotocol the router speaks gets 400
    # and the connection is closed.
    # Method: raw upgrade request; read the whole response until EOF.
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        status, headers, _ = await rw.http_exchange(vrouter.port, rw.ws_upgrade_request(vrouter.port, protocols, key()))
        assert status == 400
        assert "sec-websocket-accept" not in headers
        await witness.check()


async def test_websocket_upgrade_picks_an_offered_wamp_subprotocol(vrouter):
    # Goal: among several offered subprotocols the router picks one it speaks.
    # Method: offer ubjson (unsupported) then cbor; expect 101 with wamp.2.cbor.
    reader, writer = await asyncio.open_connection("127.0.0.1", vrouter.port)
    writer.write(rw.ws_upgrade_request(vrouter.port, ["wamp.2.ubjson", "wamp.2.cbor"], key()))
    await writer.drain()
    status, headers, _ = rw.parse_http_head(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10))
    writer.close()
    assert status == 101 and headers["sec-websocket-protocol"] == "wamp.2.cbor", headers


@pytest.mark.parametrize("request_text,status", [
    ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426),
    ("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", 426),
    ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 426),
    ("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    ("HELLO THERE\r\n\r\n", 400),
    ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"
     "Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n", 426),
    ("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 20000 + "\r\n\r\n", 431),
    ("GET / HTTP/1.1\r\n" + "".join(f"X-H{i}: v\r\n" for i in range(100)) + "\r\n", 431),
], ids=["get-root", "get-no-upgrade", "post", "health", "metrics", "garbage", "ws-version-8", "head-too-large",
        "too-many-headers"])
async def test_plain_http(vrouter, request_text, status):
    # Goal: plain HTTP gets 426 Upgrade Required naming websocket (except /health and
    # /metrics: 404, they are served on the metrics listener only), as
    # does an upgrade with an unsupported WebSocket version; garbage that is not HTTP gets
    # 400; a head over 16 KiB or with more than 64 fields gets 431; the connection is closed.
    # Method: raw HTTP request, read to EOF.
    got, headers, body = await rw.http_exchange(vrouter.port, request_text.encode())
    assert got == status, (got, headers, body)
    if status == 426:
        assert headers.get("upgrade", "").lower() == "websocket", headers


async def test_garbage_websocket_frame_on_a_healthy_router_under_load(vrouter):
    # Goal: violations while other sessions are busy do not disturb them: a stream of
    # acknowledged publications and calls between the witnesses continues, in order, while
    # ten connections send garbage one after another.
    # Method: background loop of witness checks; concurrent violators (RawSocket and
    # WebSocket garbage); every check must pass and all violators must be closed.
    async with Pool(vrouter) as pool:
        witness = await Witness.create(pool)
        stop = asyncio.Event()

        async def busy():
            n = 0
            while not stop.is_set() and n < 500:
                await witness.check()
                n += 1
            return n

        task = asyncio.ensure_future(busy())
        for i in range(10):
            if i % 2:
                c = await ws_session(pool, vrouter)
                await c.send_raw(rw.ws_frame(rw.OP_TEXT, b"\x00garbage"))
            else:
                c = pool.track_raw(await rw.raw_session(vrouter, "rs-msgpack"))
                await c.send_payload(b"\xc1" * 8)
            got, _ = await c.recv_closed()
            assert got and got[0][0] == rw.ABORT, got
        stop.set()
        assert await asyncio.wait_for(task, 30) > 0


@pytest.mark.async_timeout(40)
async def test_connections_that_never_say_hello_are_closed(vrouter):
    # Goal: a connection that never completes its transport handshake, or never sends HELLO
    # after it, is closed by the router (HANDSHAKE_TIMEOUT_MS = 10 s in src/limits.rs), so
    # idle sockets cannot pile up.
    # Method: open four at once — TCP with no bytes, half a RawSocket handshake, RawSocket
    # handshake without HELLO, WebSocket upgrade without HELLO — and wait (bounded, 20 s)
    # for EOF on each; none may be closed before ~10 s, none may stay past 20 s.
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    r1, w1 = await asyncio.open_connection("127.0.0.1", vrouter.port)
    r2, w2 = await asyncio.open_connection("127.0.0.1", vrouter.port)
    w2.write(b"\x7f\xf2")
    await w2.drain()
    rs = await rw.RawSocketConn.open(port=vrouter.port, serializer="json")
    ws = await rw.WebSocketConn.open(vrouter.port, "cbor")

    async def eof_after(reader):
        while await asyncio.wait_for(reader.read(4096), 20):
            pass
        return loop.time() - t0

    try:
        times = await asyncio.gather(eof_after(r1), eof_after(r2), eof_after(rs.reader), eof_after(ws.reader))
    except asyncio.TimeoutError:
        raise AssertionError("a connection without HELLO was still open after 20 s") from None
    finally:
        for w in (w1, w2):
            w.close()
        rs.close()
        ws.close()
    assert min(times) >= 9.0, f"closed too early: {times}"
