"""The hostile-input suite: a table of bad inputs against the real router (2 shards), each
with one exact expected answer, and after every case proof that nobody else noticed.

Categories (the ``test_`` function names): transport handshakes (RawSocket octets, HTTP
upgrades), WebSocket framing, RawSocket framing, malformed encodings per serializer, wrong
element types at every position of every client message type in each serializer, missing
and extra elements, request IDs, messages in the wrong state (before HELLO, between
CHALLENGE and WELCOME, router-only messages, RPC answers that do not fit), HELLO details,
AUTHENTICATE abuse, Options of the wrong type, invalid URIs, router procedures with bad
arguments, transcoding edges, sessions ending with work in flight on the other shard,
resource exhaustion (route and call bursts, a subscriber that stops reading, handshake and
meta-gather caps), and re-checks of earlier findings (URIs with control characters, bounded
Options, CBOR bignums, many-key dicts, unanswered big pings, the pre-session budget, a
callee's invalid ERROR URI, request IDs outside [1, 2^53]).

What it found: a client with a small RawSocket limit lost ERRORs, ABORTs and GOODBYEs
whose router-written text quoted its multi-byte input, and router-procedure RESULTs that
did not fit (fixed; ``test_small_client_limit_*``); a callee that announced progressive call
invocations without call canceling was streamed to (fixed); an EVENT payload with no form
in a subscriber's serializer was counted as an encoder failure, "a bug if non-zero", and
warned about per drop (now its own counter; fixed); a caller that streams without
announcing the feature is served instead of aborted (xfail, strict:
``test_progressive_call_invocation_abuse``).

The answers come from the router's code: a WAMP violation is ABORT
``wamp.error.protocol_violation`` whose ``Details.message`` is the text of
``src/proto/violation.rs`` / ``src/proto/wire/error.rs`` (the cases check the part that names
what was wrong), then the transport is closed (WebSocket: close 1000) and the session's
registration is freed (a *reclaimer* session registers the violator's procedure after the
case); a refused request is ERROR with the URI of ``src/proto/uris.rs`` and the session goes
on; a transport violation is a WebSocket close code (RFC 6455) or a closed RawSocket; a bad
handshake is RawSocket error octets or an HTTP status.

After every case (``Env.case``): the *witness* — an Autobahn WebSocket-JSON session on
shard 0 subscribed to a topic and registered for a procedure, and an Autobahn
RawSocket-MessagePack session on shard 1 publishing (acknowledged) to it and calling it —
still works, the router process is alive, its log has no panic, and its RSS is under
the bound below. Where a case ended a session that had subscribed and registered, the
reclaimer (a raw session on shard 1) finds the subscription gone and registers the
procedure itself. The witness and the reclaimer are made once per module: a case never has a
reason to disturb them, so reusing them is the stronger check (a case that broke them would
fail every later case, not go unnoticed). They live on an event loop of their own
(``hostile.LoopThread``), because the conftest gives each ``async def`` test a fresh loop.

RSS bound: the router runs with ``message_size_max`` = 1 MiB, so no frame costs more than
1 MiB to hold. Measured on this suite: about 45 MiB with the witness up, at most about
117 MiB after a case. Most of the difference is not held by the router at all but kept by
the allocator after a transient peak (mimalloc keeps freed pages in each shard thread's
heap for reuse): the first burst of ~4,000 subscriptions lifts RSS by ~30 MiB and further bursts
do not lift it again; the subscriber that stops reading has up to pending_bytes_max
(8 MiB) queued plus its 512 KiB events in flight. The bound after every case is the
baseline plus ``RSS_GROWTH_MAX`` = 128 MiB: about twice the observed peak, so allocator
noise and a busy machine do not trip it, while unbounded buffering (a flood or a burst
kept whole, 16 MiB frames accepted) does. It cannot see a slow leak; that is
``test_heavy_cases_again_do_not_grow_rss``'s job: the heavy cases (5,000-route bursts,
2,000 pending calls, 200 sessions, floods, testament and meta caps) run a warm-up round and
four more, and the lowest RSS of the last round must be within ``RSS_REPEAT_SLACK`` =
16 MiB of the first's (measured: within a few MiB, up or down, over 16 rounds; keeping
each burst's 5,000 routes, or the calls, would add more than that per round, three times).
The stuck subscriber stays out of it (its 512 KiB events leave the allocator holding a
varying 30-50 MiB, levelling off over rounds); its queue being freed is checked exactly by
``test_nothing_left_behind`` (pending_out_bytes back to 0).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct

import cbor2
import msgpack
import pytest

import hostile as H
import rawwamp as rw
from abclient import Pool, Witness
from conftest import Router
from hostile import Abort, Eof, Err, Ignored, Reply, WsClose, uid

MAX = 1 << 20  # message_size_max: RawSocket length exponent 11
PRE_SESSION = 128 * 1024  # pre_session_bytes_max: above the 64 KiB HELLO cap, so that cap answers
RSS_GROWTH_MAX = 128 << 20
RSS_REPEAT_SLACK = 16 << 20
LIMITS = {
    "message_size_max": MAX,
    "ping_interval_ms": 0,
    "pre_session_bytes_max": PRE_SESSION,
    "max_handshakes_per_shard": 32,
}
ID_MAX = 1 << 53
TICKET = "t1ck3t-h0stile"
# Both listeners offer anonymous (the witness, most cases) and ticket (the AUTHENTICATE cases).
AUTH_TOML = f"""
[listener.auth.anonymous]
role = "anonymous"
[listener.auth.ticket]
principals = [{{ authid = "joe", ticket = "{TICKET}", role = "user" }}]
"""
SERS = ["json", "msgpack", "cbor"]
TRANSPORTS = ["rs", "ws", "unix"]


class Env:
    """The module's router, loop, witness and reclaimer."""

    def __init__(self, router: Router, lt: H.LoopThread):
        self.router, self.lt = router, lt
        self.cases = 0

    async def setup(self):
        self.pool = Pool(self.router)
        self.witness = await Witness.create(self.pool)
        self.reclaimer = await rw.raw_session(self.router, "rs-msgpack", shard=1)
        self.rss_base = self.router.rss_bytes()
        self.rss_bound = self.rss_base + RSS_GROWTH_MAX
        self.rss_max = self.rss_base

    async def teardown(self):
        import sys

        sys.stderr.write(f"\nhostile suite: {self.cases} cases; router RSS {self.rss_base / 2**20:.1f} MiB with the "
                         f"witness up, at most {self.rss_max / 2**20:.1f} MiB after a case "
                         f"(bound {self.rss_bound / 2**20:.1f} MiB); RSS floor per round of the heavy cases "
                         f"{[round(f / 2**20, 1) for f in getattr(self, 'floors', [])]} MiB\n")
        self.reclaimer.close()
        await self.pool.__aexit__(None, None, None)

    def run(self, coro, timeout: float = 60.0):
        return self.lt.run(coro, timeout)

    def case(self, coro, timeout: float = 60.0):
        """Run one case, then check that nobody else noticed."""
        self.run(coro, timeout)
        self.cases += 1
        assert self.router.alive(), f"router exited:\n{self.router.log_text()[-4000:]}"
        self.run(self.witness.check(), 20)
        rss = self.router.rss_bytes()
        self.rss_max = max(self.rss_max, rss)
        if os.environ.get("HOSTILE_RSS_LOG"):
            with open(os.environ["HOSTILE_RSS_LOG"], "a") as f:
                f.write(f"{rss} {os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}\n")
        assert rss < self.rss_bound, f"RSS {rss >> 20} MiB over the bound {self.rss_bound >> 20} MiB"
        assert "panicked" not in self.router.log_text(), self.router.log_text()[-4000:]

    async def assert_freed(self, proc: str, timeout: float = 2.0, subscribed: bool = False):
        """The reclaimer registers (then unregisters) ``proc``: the violator's registration is
        gone; if the violator also subscribed to the topic ``proc``, the subscription is gone
        too (``wamp.subscription.lookup`` finds none: it was deleted with its last subscriber).
        The violator's shard tells the owner over the mesh, and the reclaimer's messages may
        reach the owner from another shard first, so a short bounded retry is allowed."""
        r = self.reclaimer
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while subscribed:
            m = await r.call_expect([rw.CALL, r.request_id(), {}, "wamp.subscription.lookup", [proc]], rw.RESULT)
            assert m[0] == rw.RESULT, m
            if m[3] == [None]:
                break
            assert loop.time() < deadline, f"subscription to {proc} still there {timeout}s after its session ended"
            await asyncio.sleep(0.01)
        while True:
            m = await r.call_expect([rw.REGISTER, r.request_id(), {}, proc], rw.REGISTERED)
            if m[0] == rw.REGISTERED:
                break
            assert m[4] == "wamp.error.procedure_already_exists", m
            assert loop.time() < deadline, f"{proc} still registered {timeout}s after its session ended"
            await asyncio.sleep(0.01)
        u = await r.call_expect([rw.UNREGISTER, r.request_id(), m[2]], rw.UNREGISTERED)
        assert u[0] == rw.UNREGISTERED, u


@pytest.fixture(scope="module")
def env():
    router = Router(name="hostile", limits=LIMITS, listener_toml=AUTH_TOML, unix_listener_toml=AUTH_TOML,
                    realms=[{"name": "realm1"}, {"name": "strict", "strict_uri": True}])
    router.start()
    lt = H.LoopThread()
    e = Env(router, lt)
    try:
        e.run(e.setup())
        yield e
        e.run(e.teardown())
    finally:
        lt.stop()
        router.stop()
        router.cleanup()


def kind_for(ser: str, i: int) -> str:
    """Spread the cases of a serializer over RawSocket/TCP, WebSocket and RawSocket/Unix."""
    return f"{TRANSPORTS[i % 3]}-{ser}"


def encoded(conn, msg) -> bytes:
    if isinstance(msg, (bytes, bytearray)):
        return bytes(msg)
    if callable(msg):
        return msg(conn.serializer)
    return rw.encode(conn.serializer, msg)


def request_of(msg):
    if isinstance(msg, list) and len(msg) > 1 and msg[0] in (
            rw.PUBLISH, rw.SUBSCRIBE, rw.UNSUBSCRIBE, rw.CALL, rw.REGISTER, rw.UNREGISTER):
        return msg[1]
    return None


async def session_case(env: Env, kind: str, msgs, outcome, realm: str = "realm1", hello: bool = True):
    """A raw connection of ``kind`` (after HELLO and a REGISTER of its own procedure if
    ``hello``) sends ``msgs`` (a list of messages: lists are encoded, bytes sent as one
    message, callables get the serializer); then ``outcome`` is checked, and if the session
    ended its registration must be free."""
    c = await rw.open_raw(env.router, kind)
    try:
        proc = None
        if hello:
            await c.hello(realm)
            proc = f"test.hostile.own.{uid()}"
            await c.register(proc)
            await c.subscribe(proc)
        for m in msgs:
            await c.send_payload(encoded(c, m))
        await H.expect(c, outcome, request_of(msgs[-1]))
        if proc and H.session_ends(outcome) and realm == "realm1":
            await env.assert_freed(proc, subscribed=True)
    finally:
        c.close()


# ====================================================================== handshakes


@pytest.mark.parametrize("octets,error", [
    (bytes([0x7F, 0xF0, 0, 0]), 1),  # serializer 0 is illegal
    (bytes([0x7F, 0xF4, 0, 0]), 1),  # UBJSON: not spoken
    (bytes([0x7F, 0xF5, 0, 0]), 1),  # FlatBuffers: not spoken
    (bytes([0x7F, 0xF6, 0, 0]), 1),  # 6-15 reserved
    (bytes([0x7F, 0xFF, 0, 0]), 1),
    (bytes([0x7F, 0x0A, 0, 0]), 1),
    (bytes([0x7F, 0xF1, 0x01, 0]), 3),  # reserved octets used
    (bytes([0x7F, 0xF2, 0, 0x80]), 3),
    (bytes([0x7F, 0x03, 0xFF, 0xFF]), 3),
], ids=["ser0", "ubjson", "flatbuffers", "ser6", "ser15", "ser10-L0", "reserved3", "reserved4", "reserved-both"])
def test_rawsocket_handshake_refused(env, octets, error):
    # Goal: a RawSocket handshake the router cannot serve gets 0x7F | error<<4 | 0 | 0
    # (transport_rawsocket.md: 1 serializer unsupported, 3 reserved bits used), then EOF.
    async def case():
        reader, writer = await asyncio.open_connection("127.0.0.1", env.router.port)
        writer.write(octets)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(16), H.ANSWER_S)
        assert reply == bytes([0x7F, error << 4, 0, 0]), reply.hex()
        assert await asyncio.wait_for(reader.read(16), H.ANSWER_S) == b""
        writer.close()

    env.case(case())


@pytest.mark.parametrize("len_exp", [0, 1, 9, 15])
def test_rawsocket_handshake_any_length_exponent(env, len_exp):
    # Goal: every client length exponent is legal; the reply echoes the serializer and
    # carries the router's own limit (2^(9+11) = message_size_max 1 MiB), and a session opens
    # (a 512-byte client still gets its WELCOME: the router sends a compact one).
    async def case():
        c = await rw.RawSocketConn.open(port=env.router.port, serializer="json", len_exp=len_exp)
        try:
            assert c.router_max_len == MAX
            await c.send([rw.HELLO, "realm1", {"roles": {"subscriber": {}}}])
            payload = await c.recv_payload(H.ANSWER_S)
            assert len(payload) <= 2 ** (9 + len_exp)
            assert rw.decode("json", payload)[0] == rw.WELCOME
        finally:
            c.close()

    env.case(case())


@pytest.mark.parametrize("first,expected", [
    (b"\x00\x00\x00\x00\r\n\r\n", 400),
    (b"\xff\xff\xff\xff\r\n\r\n", 400),
    (b"\x7e\xf1\x00\x00\r\n\r\n", 400),
], ids=["zeros", "ones", "magic-minus-one"])
def test_bad_magic_is_answered_as_http(env, first, expected):
    # Goal: a first octet that is neither the RawSocket magic nor TLS is read as HTTP; bytes
    # that are not an HTTP request get 400 and the connection is closed.
    async def case():
        status, _, _ = await rw.http_exchange(env.router.port, first)
        assert status == expected

    env.case(case())


def test_tls_hello_on_plaintext_listener_is_closed(env):
    # Goal: a TLS ClientHello (first octet 0x16) on a plaintext listener is closed without
    # an answer.
    async def case():
        reader, writer = await asyncio.open_connection("127.0.0.1", env.router.port)
        writer.write(bytes([0x16, 0x03, 0x01, 0x00, 0x05]) + b"hello")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(64), H.ANSWER_S) == b""
        writer.close()

    env.case(case())


@pytest.mark.parametrize("how", ["byte-by-byte", "with-hello"])
def test_rawsocket_handshake_split_or_pipelined(env, how):
    # Goal: a handshake in four single-octet writes, or a handshake and a HELLO in one
    # write, both give a session (the router reads until it has what it needs).
    async def case():
        reader, writer = await asyncio.open_connection("127.0.0.1", env.router.port)
        hs = bytes([0x7F, 0xF1, 0, 0])
        hello = rw.encode("json", [rw.HELLO, "realm1", {"roles": {"caller": {}}}])
        if how == "byte-by-byte":
            for b in hs:
                writer.write(bytes([b]))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(rw.rawsocket_prefix(len(hello)) + hello)
        else:
            writer.write(hs + rw.rawsocket_prefix(len(hello)) + hello)
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(4), H.ANSWER_S) == bytes([0x7F, 0xB1, 0, 0])
        (word,) = struct.unpack("!I", await asyncio.wait_for(reader.readexactly(4), H.ANSWER_S))
        welcome = rw.decode("json", await asyncio.wait_for(reader.readexactly(word & 0xFFFFFF), H.ANSWER_S))
        assert welcome[0] == rw.WELCOME
        writer.close()

    env.case(case())


def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def upgrade(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def std_lines(key: str | None = None, proto: str = "wamp.2.json") -> list[str]:
    return [
        "GET / HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key or ws_key()}", "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Protocol: {proto}",
    ]


def without(lines, prefix):
    return [line for line in lines if not line.lower().startswith(prefix.lower())]


HTTP_CASES = {
    # name: (request bytes, status, subprotocol chosen on 101)
    "no-upgrade-header": (upgrade(without(std_lines(), "Upgrade:")), 426, None),
    "no-connection-header": (upgrade(without(std_lines(), "Connection:")), 426, None),
    "connection-keepalive-only": (upgrade(without(std_lines(), "Connection:") + ["Connection: keep-alive"]), 426, None),
    "upgrade-h2c": (upgrade(without(std_lines(), "Upgrade:") + ["Upgrade: h2c"]), 426, None),
    "no-version": (upgrade(without(std_lines(), "Sec-WebSocket-Version:")), 426, None),
    "version-8": (upgrade(without(std_lines(), "Sec-WebSocket-Version:") + ["Sec-WebSocket-Version: 8"]), 426, None),
    "no-key": (upgrade(without(std_lines(), "Sec-WebSocket-Key:")), 400, None),
    "duplicate-key": (upgrade(std_lines() + [f"Sec-WebSocket-Key: {ws_key()}"]), 400, None),
    "key-not-base64": (upgrade(std_lines(key="not base64 at all!!")), 400, None),
    "key-15-bytes": (upgrade(std_lines(key=base64.b64encode(b"x" * 15).decode())), 400, None),
    "key-17-bytes": (upgrade(std_lines(key=base64.b64encode(b"x" * 17).decode())), 400, None),
    "unknown-subprotocol": (upgrade(std_lines(proto="wamp.2.xml")), 400, None),
    "subprotocol-wrong-case": (upgrade(std_lines(proto="WAMP.2.JSON")), 400, None),
    "no-subprotocol": (upgrade(without(std_lines(), "Sec-WebSocket-Protocol:")), 400, None),
    "post-upgrade": (upgrade(["POST / HTTP/1.1"] + std_lines()[1:]), 400, None),
    "http-1.0-upgrade": (upgrade(["GET / HTTP/1.0"] + std_lines()[1:]), 400, None),
    "http-2.0": (upgrade(["GET / HTTP/2.0"] + std_lines()[1:]), 505, None),
    "head-over-16k": (upgrade(std_lines() + ["X-Pad: " + "a" * 17000]), 431, None),
    "65-headers": (upgrade(std_lines() + [f"X-H{i}: v" for i in range(60)]), 431, None),
    "header-without-colon": (upgrade(std_lines() + ["NoColonHere"]), 400, None),
    "request-line-garbage": (b"\x01\x02\x03 / HTTP/1.1\r\n\r\n", 400, None),
    # Accepted oddities: token lists, case-insensitive keywords, no Host, repeated fields.
    "connection-token-list": (upgrade(without(std_lines(), "Connection:") + ["Connection: keep-alive, Upgrade"]),
                              101, "wamp.2.json"),
    "upgrade-mixed-case": (upgrade(without(std_lines(), "Upgrade:") + ["Upgrade: WebSocket"]), 101, "wamp.2.json"),
    "no-host": (upgrade(without(std_lines(), "Host:")), 101, "wamp.2.json"),
    "two-protocol-fields": (upgrade(without(std_lines(), "Sec-WebSocket-Protocol:")
                                    + ["Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: wamp.2.cbor"]),
                            101, "wamp.2.cbor"),
    "client-order-wins": (upgrade(std_lines(proto="wamp.2.msgpack, wamp.2.json")), 101, "wamp.2.msgpack"),
    "path-and-query": (upgrade(["GET /ws/x?y=1 HTTP/1.1"] + std_lines()[1:]), 101, "wamp.2.json"),
    "version-list-with-13": (upgrade(without(std_lines(), "Sec-WebSocket-Version:") + ["Sec-WebSocket-Version: 8, 13"]),
                             101, "wamp.2.json"),
    "lf-only-line-ends": ("\n".join(std_lines()).encode() + b"\n\n", 101, "wamp.2.json"),
    "obs-fold-header": (upgrade(std_lines() + ["X-Folded: a", " b"]), 400, None),
    "nul-in-header-value": (upgrade(std_lines() + ["X-Nul: a\x00b"]), 400, None),
    "space-before-colon": (upgrade(std_lines() + ["X-Space : v"]), 400, None),
    "request-line-16k": (upgrade(["GET /" + "a" * 17000 + " HTTP/1.1"] + std_lines()[1:]), 431, None),
    "permessage-deflate-offered": (upgrade(std_lines() + ["Sec-WebSocket-Extensions: permessage-deflate; "
                                                          "client_max_window_bits"]), 101, "wamp.2.json"),
}


@pytest.mark.parametrize("name", list(HTTP_CASES))
def test_websocket_upgrade(env, name):
    # Goal: each upgrade request gets the status websocket/handshake.rs and http.rs define
    # (426 not an upgrade / wrong version, 400 bad key or no WAMP subprotocol or not GET or
    # not HTTP/1.1, 505 unknown version, 431 head too large); a 101 names the subprotocol
    # chosen by the client's order and carries the RFC 6455 accept hash.
    request, status, proto = HTTP_CASES[name]

    async def case():
        reader, writer = await asyncio.open_connection("127.0.0.1", env.router.port)
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), H.ANSWER_S)
        got, headers, _ = rw.parse_http_head(head)
        assert got == status, (got, head)
        if status == 101:
            assert headers.get("sec-websocket-protocol") == proto, headers
            assert "sec-websocket-extensions" not in headers, headers  # no extension is ever agreed
        else:
            assert "sec-websocket-accept" not in headers
            while await asyncio.wait_for(reader.read(65536), H.ANSWER_S):
                pass  # the router closes after the answer
        writer.close()

    env.case(case())


def test_websocket_upgrade_trickled_and_pipelined(env):
    # Goal: an upgrade head sent a few bytes at a time, followed in the same write as its
    # last bytes by a masked HELLO frame, gives a WELCOME.
    async def case():
        reader, writer = await asyncio.open_connection("127.0.0.1", env.router.port)
        key = ws_key()
        head = upgrade(std_lines(key=key))
        hello = rw.ws_frame(rw.OP_TEXT, rw.encode("json", [rw.HELLO, "realm1", {"roles": {"caller": {}}}]))
        for i in range(0, len(head) - 7, 7):
            writer.write(head[i:i + 7])
            await writer.drain()
        writer.write(head[len(head) - len(head) % 7 or len(head) - 7:] + hello)
        await writer.drain()
        resp = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), H.ANSWER_S)
        assert rw.parse_http_head(resp)[0] == 101
        conn = rw.WebSocketConn(reader, writer, "json")
        assert (await conn.recv(H.ANSWER_S))[0] == rw.WELCOME
        writer.close()

    env.case(case())


# ====================================================================== WebSocket framing


def raw_frame(b0: int, payload: bytes, mask: bool = True) -> bytes:
    """A frame with first octet ``b0`` as given (FIN, RSV bits and opcode)."""
    f = rw.ws_frame(b0 & 0x0F, payload, fin=True, mask=mask)
    return bytes([b0]) + f[1:]


def zero_mask_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    assert n < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | n]) + bytes(4) + payload


def close_frame(code: int | None, reason: bytes = b"") -> bytes:
    body = b"" if code is None else struct.pack("!H", code) + reason
    return rw.ws_frame(rw.OP_CLOSE, body)


TEXT = b'[16,1,{},"a"]'
WS_CASES = {
    # name: (frames, expected)
    "unmasked": ([rw.ws_frame(rw.OP_TEXT, TEXT, mask=False)], WsClose(1002)),
    "rsv1": ([raw_frame(0xC1, TEXT)], WsClose(1002)),
    "rsv2": ([raw_frame(0xA1, TEXT)], WsClose(1002)),
    "rsv3": ([raw_frame(0x91, TEXT)], WsClose(1002)),
    "opcode-3": ([raw_frame(0x83, TEXT)], WsClose(1002)),
    "opcode-7": ([raw_frame(0x87, TEXT)], WsClose(1002)),
    "opcode-0xB": ([raw_frame(0x8B, b"")], WsClose(1002)),
    "opcode-0xF": ([raw_frame(0x8F, b"")], WsClose(1002)),
    "continuation-first": ([rw.ws_frame(rw.OP_CONT, TEXT)], WsClose(1002)),
    "text-inside-fragmented-text": ([rw.ws_frame(rw.OP_TEXT, TEXT[:4], fin=False), rw.ws_frame(rw.OP_TEXT, TEXT)],
                                    WsClose(1002)),
    "fragmented-ping": ([rw.ws_frame(rw.OP_PING, b"x", fin=False)], WsClose(1002)),
    "fragmented-pong": ([rw.ws_frame(rw.OP_PONG, b"x", fin=False)], WsClose(1002)),
    "fragmented-close": ([rw.ws_frame(rw.OP_CLOSE, b"\x03\xe8", fin=False)], WsClose(1002)),
    "ping-126-bytes": ([rw.ws_frame(rw.OP_PING, b"p" * 126)], WsClose(1002)),
    "pong-126-bytes": ([rw.ws_frame(rw.OP_PONG, b"p" * 126)], WsClose(1002)),
    "close-126-bytes": ([rw.ws_frame(rw.OP_CLOSE, b"\x03\xe8" + b"r" * 124)], WsClose(1002)),
    "invalid-utf8": ([rw.ws_frame(rw.OP_TEXT, b'[16,1,{},"\xff"]')], WsClose(1007)),
    "overlong-utf8": ([rw.ws_frame(rw.OP_TEXT, b'[16,1,{},"\xc0\x80"]')], WsClose(1007)),
    "utf8-surrogate": ([rw.ws_frame(rw.OP_TEXT, b'[16,1,{},"\xed\xa0\x80"]')], WsClose(1007)),
    "utf8-above-10ffff": ([rw.ws_frame(rw.OP_TEXT, b'[16,1,{},"\xf4\x90\x80\x80"]')], WsClose(1007)),
    "invalid-utf8-in-second-fragment": ([rw.ws_frame(rw.OP_TEXT, b'[16,1,{},"', fin=False),
                                         rw.ws_frame(rw.OP_CONT, b'\xfe"]')], WsClose(1007)),
    "utf8-split-across-fragments": ([rw.ws_frame(rw.OP_TEXT, b'[16,7,{"acknowledge":true},"caf\xc3', fin=False),
                                     rw.ws_frame(rw.OP_CONT, b'\xa9"]')], Reply(rw.PUBLISHED)),
    # Over-size frames are sent as headers only: the router must close on the header, and
    # unread payload bytes would turn its close into a reset that loses the Close frame.
    "message-over-max": ([bytes([0x81, 0xFF]) + struct.pack("!Q", MAX + 1) + bytes(4)], WsClose(1009)),
    "fragments-over-max": ([rw.ws_frame(rw.OP_TEXT, b" " * (MAX // 2 + 8), fin=False),
                            bytes([0x80, 0xFF]) + struct.pack("!Q", MAX // 2 + 8) + bytes(4)], WsClose(1009)),
    "fragments-over-2^20": ([rw.ws_frame(rw.OP_TEXT, b"[", fin=False) + bytes([0x00, 0x80, 0, 0, 0, 0]) * (1 << 20)],
                            WsClose(1009)),
    "non-minimal-16-bit-length": ([bytes([0x81, 0xFE, 0, 31]) + bytes(4) + b'[16,7,{"acknowledge":true},"a"]'],
                                  Reply(rw.PUBLISHED)),
    "rsv1-on-continuation": ([rw.ws_frame(rw.OP_TEXT, TEXT[:4], fin=False), raw_frame(0xC0, TEXT[4:])],
                             WsClose(1002)),
    "close-reason-123-bytes-echoed": ([close_frame(1000, b"r" * 123)], WsClose(1000)),
    "length-64bit-msb-set": ([bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 63) + bytes(4)], WsClose(1002)),
    "close-code-999": ([close_frame(999)], WsClose(1002)),
    "close-code-1004": ([close_frame(1004)], WsClose(1002)),
    "close-code-1005": ([close_frame(1005)], WsClose(1002)),
    "close-code-1006": ([close_frame(1006)], WsClose(1002)),
    "close-code-1015": ([close_frame(1015)], WsClose(1002)),
    "close-code-2999": ([close_frame(2999)], WsClose(1002)),
    "close-code-5000": ([close_frame(5000)], WsClose(1002)),
    "close-one-byte": ([rw.ws_frame(rw.OP_CLOSE, b"\x03")], WsClose(1002)),
    "close-reason-invalid-utf8": ([close_frame(1000, b"\xff\xfe")], WsClose(1007)),
    "close-1000-echoed": ([close_frame(1000, b"bye")], WsClose(1000)),
    "close-1001-echoed": ([close_frame(1001)], WsClose(1001)),
    "close-3000-echoed": ([close_frame(3000)], WsClose(3000)),
    "close-4999-echoed": ([close_frame(4999, "é".encode())], WsClose(4999)),
    "close-empty-gets-1000": ([close_frame(None)], WsClose(1000)),
    "binary-frame-on-json": ([rw.ws_frame(rw.OP_BINARY, b'[16,7,{"acknowledge":true},"a"]')], Reply(rw.PUBLISHED)),
    "empty-text-frame": ([rw.ws_frame(rw.OP_TEXT, b"")], Abort("expected '[' at the start of the message")),
    "zero-mask-key": ([zero_mask_frame(rw.OP_TEXT, b'[16,7,{"acknowledge":true},"a"]')], Reply(rw.PUBLISHED)),
    "unsolicited-pong": ([rw.ws_frame(rw.OP_PONG, b"??")], Ignored()),
    "ping-125-then-message": ([rw.ws_frame(rw.OP_PING, b"p" * 125)], Ignored()),
}


@pytest.mark.parametrize("name", list(WS_CASES))
def test_websocket_framing(env, name):
    # Goal: RFC 6455 violations close with their code (1002 protocol error, 1007 bad UTF-8 in
    # a text message or close reason, 1009 over message_size_max), with no WAMP message and
    # the session's registration freed; a valid Close is echoed with its code (1000 for an
    # empty one); legal oddities (zero mask key, UTF-8 split over fragments, a binary frame
    # on a JSON session, pongs nobody asked for) leave the session working.
    frames, outcome = WS_CASES[name]

    async def case():
        c = await rw.WebSocketConn.open(env.router.port, "json")
        try:
            await c.hello()
            proc = f"test.hostile.ws.{uid()}"
            await c.register(proc)
            for f in frames:
                await c.send_raw(f)
            if name == "ping-125-then-message":
                fin, op, payload = await c.recv_ws_frame(H.ANSWER_S)
                assert (op, payload) == (rw.OP_PONG, b"p" * 125)
            if isinstance(outcome, Reply):
                m = await c.recv(H.ANSWER_S)
                assert m[:2] == [rw.PUBLISHED, 7], m
                await H.fence(c)
            else:
                await H.expect(c, outcome)
            if H.session_ends(outcome):
                await env.assert_freed(proc)
        finally:
            c.close()

    env.case(case())


# ====================================================================== RawSocket framing

RS_CASES = {
    # name: (bytes after the session is open, expected)
    "type-3": (b"\x03\x00\x00\x02[]", Eof()),
    "type-4": (b"\x04\x00\x00\x02[]", Eof()),
    "type-7": (b"\x07\x00\x00\x02[]", Eof()),
    "reserved-bit-4": (b"\x10\x00\x00\x02[]", Eof()),
    "reserved-bit-7": (b"\x80\x00\x00\x02[]", Eof()),
    "x-bit-with-length": (b"\x08\x00\x00\x01[", Eof()),
    "over-announced-max": (rw.rawsocket_prefix(MAX + 1), Eof()),
    "max-24-bit-length": (b"\x00\xff\xff\xff", Eof()),
    "x-bit-16-mib": (b"\x08\x00\x00\x00", Eof()),
    "empty-message": (rw.rawsocket_prefix(0), Abort("expected")),
    "unsolicited-pong": (rw.rawsocket_prefix(3, 2) + b"abc", Ignored()),
    "ping-126-not-echoed": (rw.rawsocket_prefix(126, 1) + b"q" * 126, Ignored()),
}


@pytest.mark.parametrize("name", list(RS_CASES))
def test_rawsocket_framing(env, name):
    # Goal: a frame prefix with a reserved type (3-7) or reserved bits, the X bit with a
    # non-zero length, or a length over the limit the router announced (1 MiB; a 16 MiB
    # frame included) closes the connection at once without a message; an empty WAMP frame
    # is an undecodable message (ABORT); an unsolicited PONG and a PING over 125 bytes are
    # not answered and change nothing.
    data, outcome = RS_CASES[name]

    async def case():
        c = await rw.RawSocketConn.open(port=env.router.port, serializer="json")
        try:
            await c.hello()
            proc = f"test.hostile.rs.{uid()}"
            await c.register(proc)
            await c.send_raw(data)
            if isinstance(outcome, Ignored):
                await H.fence(c)
                assert c.pings_seen == 0
            else:
                await H.expect(c, outcome)
                await env.assert_freed(proc)
        finally:
            c.close()

    env.case(case())


def test_rawsocket_small_ping_is_echoed(env):
    # Goal: a PING of up to 125 bytes (an empty one too) gets a PONG with the same payload.
    async def case():
        c = await rw.raw_session(env.router, "rs-cbor")
        try:
            for p in (b"", b"z" * 125):
                await c.send_frame(p, 1)
                assert await c.recv_frame(H.ANSWER_S) == (2, p)
        finally:
            c.close()

    env.case(case())


# ====================================================================== encodings


def mp(*parts) -> bytes:
    return b"".join(p if isinstance(p, bytes) else msgpack.packb(p, use_bin_type=True) for p in parts)


def cb(*parts) -> bytes:
    return b"".join(p if isinstance(p, bytes) else cbor2.dumps(p) for p in parts)


ACK = {"acknowledge": True}


def nested(depth: int):
    v = []
    for _ in range(depth - 1):
        v = [v]
    return v


def nested_dict(depth: int):
    v = {}
    for _ in range(depth - 1):
        v = {"k": v}
    return v


ENCODING_CASES = {
    # name: (serializer, bytes, expected)
    # JSON
    "json-truncated": ("json", b'[16,1,{},"a"', Abort("message list not closed at byte 12")),
    "json-trailing-garbage": ("json", b'[16,1,{},"a"]x', Abort("nothing after the message")),
    "json-trailing-comma": ("json", b'[16,1,{},"a",]', Abort("expected")),
    "json-nan": ("json", b'[16,1,{"x":NaN},"a"]', Abort("PUBLISH.Options")),
    "json-single-quotes": ("json", b"[16,1,{},'a']", Abort("PUBLISH.Topic")),
    "json-bad-escape": ("json", b'[16,1,{},"\\q"]', Abort("PUBLISH.Topic")),
    "json-lone-surrogate": ("json", b'[16,1,{},"\\ud800"]', Abort("PUBLISH.Topic")),
    "json-leading-zero": ("json", b'[016,1,{},"a"]', Abort("message type")),
    "json-request-2^64": ("json", b'[16,18446744073709551616,{},"a"]', Abort("integer out of range")),
    "json-request-float": ("json", b'[16,1.5,{},"a"]', Abort("PUBLISH.Request")),
    "json-request-negative": ("json", b'[16,-1,{},"a"]', Abort("PUBLISH.Request")),
    "json-control-char-in-string": ("json", b'[16,1,{},"a\x01b"]', Abort("PUBLISH.Topic")),
    "json-invalid-utf8": ("json", b'[16,1,{},"a\xffb"]', Abort("UTF-8")),
    "json-object": ("json", b'{"a":1}', Abort("expected '[' at the start of the message, found '{'")),
    "json-number": ("json", b"16", Abort("expected '[' at the start of the message, found '1'")),
    "json-empty-list": ("json", b"[]", Abort("empty message list")),
    "json-whitespace-only": ("json", b"   ", Abort("expected")),
    "json-bom": ("json", b'\xef\xbb\xbf[16,1,{},"a"]', Abort("found byte 0xef at byte 0")),
    "json-comment": ("json", b'[16,1,{},"a"]//c', Abort("nothing after the message")),
    "json-payload-truncated-inside": ("json", b'[16,1,{},"a",[1,2', Abort("expected")),
    "json-payload-depth-65": ("json", rw.encode("json", [16, 1, {}, "a", nested(65)]), Abort("nested deeper than 64")),
    "json-options-depth-65": ("json", rw.encode("json", [16, 1, {"x": nested(64)}, "a"]),
                              Abort("nested deeper than 64")),
    "json-payload-depth-64-ok": ("json", rw.encode("json", [16, 9, ACK, "a", nested(63)]), Reply(rw.PUBLISHED)),
    # Above JSON_HAND_PARSE_MAX_BYTES (512) another parser reads the message: same answers.
    "json-big-lone-surrogate": ("json", b'[16,1,{"_pad":"' + b"p" * 600 + b'"},"\\ud800"]',
                                Abort("PUBLISH.Topic: lone high surrogate in \\u escape")),
    "json-big-nan": ("json", b'[16,1,{"_pad":"' + b"p" * 600 + b'","x":NaN},"a"]',
                     Abort("PUBLISH.Options: expected a value")),
    "json-big-trailing-comma-dict": ("json", b'[16,1,{"_pad":"' + b"p" * 600 + b'",},"a"]',
                                     Abort("PUBLISH.Options: expected a string key")),
    "json-big-ctrl-char": ("json", b'[16,1,{"_pad":"' + b"p" * 600 + b'"},"a\x01"]',
                           Abort("PUBLISH.Topic: unescaped control character")),
    "json-big-unterminated": ("json", b'[16,1,{"_pad":"' + b"p" * 600 + b'"},"a',
                              Abort("PUBLISH.Topic: unterminated string")),
    "json-big-ok": ("json", b'[16,9,{"_pad":"' + b"p" * 600 + b'","acknowledge":true},"a"]', Reply(rw.PUBLISHED)),
    "json-duplicate-key-last-wins": ("json", b'[16,9,{"acknowledge":false,"acknowledge":true},"a"]',
                                     Reply(rw.PUBLISHED)),
    "json-vertical-tab": ("json", b'[16,\x0b1,{},"a"]', Abort("PUBLISH.Request: expected an integer, found byte 0x0b")),
    "json-request-minus-zero": ("json", b'[16,-0,{},"a"]', Abort("PUBLISH.Request: expected an integer")),
    "json-request-exponent": ("json", b'[16,1e0,{},"a"]', Abort("PUBLISH.Request: expected an integer, found float")),
    "json-true-capitalised": ("json", b'[16,1,{"acknowledge":True},"a"]', Abort("PUBLISH.Options: expected a value")),
    "json-payload-trailing-comma": ("json", b'[16,1,{},"a",[1,]]', Abort("expected a value, found ']'")),
    "json-payload-lone-surrogate": ("json", b'[16,1,{},"a",["\\udc00"]]', Abort("lone low surrogate")),
    "json-escaped-dot-topic-ok": ("json", b'[16,9,{"acknowledge":true},"a\\u002eb"]', Reply(rw.PUBLISHED)),
    "json-binary-as-topic": ("json", rw.encode("json", [16, 1, {}, b"\x01\x02"]), Abort("PUBLISH.Topic")),
    # MessagePack
    "msgpack-never-used-c1": ("msgpack", b"\xc1", Abort("invalid")),
    "msgpack-truncated-array": ("msgpack", b"\x94\x10\x01", Abort("PUBLISH")),
    "msgpack-truncated-str": ("msgpack", mp(b"\x94", 16, 1, {}) + b"\xd9\x10ab", Abort("truncated")),
    "msgpack-array32-huge-count": ("msgpack", b"\xdd\xff\xff\xff\xff\x10\x01", Abort("PUBLISH")),
    "msgpack-map32-huge-count": ("msgpack", mp(b"\x94", 16, 1) + b"\xdf\xff\xff\xff\xff", Abort("truncated")),
    "msgpack-int-key-options": ("msgpack", mp([16, 1, {1: True}, "a"]), Abort("dict keys must be strings")),
    "msgpack-bin-key-options": ("msgpack", mp(b"\x94", 16, 1, b"\x81", b"k", True, "a"), Abort("dict keys must be")),
    "msgpack-bin-topic": ("msgpack", mp([16, 1, {}, b"a"]), Abort("PUBLISH.Topic: expected a string")),
    "msgpack-nil-options": ("msgpack", mp([16, 1, None, "a"]), Abort("PUBLISH.Options: expected a dict")),
    "msgpack-invalid-utf8-topic": ("msgpack", mp(b"\x94", 16, 1, {}) + b"\xa2\xff\xfe", Abort("UTF-8")),
    "msgpack-ext-in-options-absent": ("msgpack", mp(b"\x94", 16, 9, b"\x82", "acknowledge", True, "x") + b"\xd4\x01\x00"
                                      + mp("a"), Reply(rw.PUBLISHED)),
    "msgpack-ext-as-acknowledge-absent": ("msgpack", mp(b"\x94", 16, 9, b"\x81", "acknowledge") + b"\xd4\x01\x00"
                                          + mp("a"), Ignored()),
    "msgpack-ext-as-topic": ("msgpack", mp(b"\x94", 16, 1, {}) + b"\xd4\x01\x00",
                             Abort("PUBLISH.Topic: expected a string, found msgpack ext")),
    "msgpack-float-request": ("msgpack", mp([16, 1.0, {}, "a"]), Abort("PUBLISH.Request")),
    "msgpack-trailing-bytes": ("msgpack", mp([16, 1, {}, "a"]) + b"\x00", Abort("trailing")),
    "msgpack-request-2^64-1": ("msgpack", mp([16, (1 << 64) - 1, {}, "a"]), Abort("outside [1, 2^53]")),
    "msgpack-request-negative": ("msgpack", mp([16, -5, {}, "a"]), Abort("found -5")),
    "msgpack-payload-depth-65": ("msgpack", mp([16, 1, {}, "a", nested(65)]), Abort("nested deeper than 64")),
    "msgpack-kwargs-depth-65": ("msgpack", mp([16, 1, {}, "a", [], nested_dict(65)]), Abort("nested deeper than 64")),
    "msgpack-kwargs-int-key": ("msgpack", mp([16, 1, ACK, "a", [], {1: "x"}]), Abort("dict keys must be strings")),
    "msgpack-kwargs-bool-key": ("msgpack", mp([16, 1, ACK, "a", [], {True: "x"}]), Abort("dict keys must be")),
    "msgpack-not-a-list": ("msgpack", mp({"a": 1}), Abort("a WAMP message must be a list")),
    # CBOR
    "cbor-break-at-top": ("cbor", b"\xff", Abort("break")),
    "cbor-reserved-info-28": ("cbor", b"\x84\x10\x01\xa0\x7c", Abort("invalid")),
    "cbor-two-byte-simple-16": ("cbor", b"\x84\x10\x01\xa1\x61x\xf8\x10\x61a", Abort("simple value")),
    "cbor-indefinite-array-ok": ("cbor", b"\x9f" + cb(16, 9, ACK, "a") + b"\xff", Reply(rw.PUBLISHED)),
    "cbor-indefinite-map-break-after-key": ("cbor", b"\x84\x10\x01\xbf\x61k\xff\x61a",
                                            Abort("PUBLISH.Options: unexpected break byte (0xff) at offset 6")),
    "cbor-array-2^64-1-items": ("cbor", b"\x9b" + b"\xff" * 8 + b"\x10\x01", Abort("PUBLISH")),
    "cbor-int-key-options": ("cbor", cb([16, 1, {1: True}, "a"]), Abort("dict keys must be strings")),
    "cbor-bignum-request-ok": ("cbor", b"\x84\x10" + cb(cbor2.CBORTag(2, b"\x09")) + cb(ACK, "a"), Reply(rw.PUBLISHED)),
    "cbor-bignum-request-2^64": ("cbor", b"\x84\x10" + cb(cbor2.CBORTag(2, b"\x01" + bytes(8))) + cb({}, "a"),
                                 Abort("integer out of range")),
    "cbor-invalid-utf8-topic": ("cbor", b"\x84\x10\x01\xa0\x62\xff\xfe", Abort("UTF-8")),
    "cbor-bytes-topic": ("cbor", cb([16, 1, {}, b"a"]), Abort("PUBLISH.Topic: expected a string")),
    "cbor-undefined-options": ("cbor", b"\x84\x10\x01\xf7\x61a", Abort("PUBLISH.Options")),
    "cbor-half-float-request": ("cbor", b"\x84\x10\xf9\x3c\x00\xa0\x61a", Abort("PUBLISH.Request")),
    "cbor-trailing-bytes": ("cbor", cb([16, 1, {}, "a"]) + b"\x00", Abort("trailing")),
    "cbor-payload-depth-65": ("cbor", cb([16, 1, {}, "a", nested(65)]), Abort("nested deeper than 64")),
    "cbor-negative-request": ("cbor", cb([16, -1, {}, "a"]), Abort("found -1")),
    "cbor-not-a-list": ("cbor", cb("hello"), Abort("a WAMP message must be a list")),
}


@pytest.mark.parametrize("name", list(ENCODING_CASES))
def test_malformed_encoding(env, name):
    # Goal: bytes that are not one well-formed WAMP message in the session's serializer get
    # ABORT protocol_violation naming what is wrong (and where); encodings that are legal
    # if unusual (CBOR indefinite lengths and bignums, UTF-8 in JSON, nesting of exactly 64)
    # are served. The violator's registration is freed.
    ser, data, outcome = ENCODING_CASES[name]
    kind = f"{'rs' if ser == 'json' else TRANSPORTS[len(name) % 3]}-{ser}"  # WebSocket checks UTF-8 itself

    async def case():
        await session_case(env, kind, [data], outcome)

    env.case(case())


# ====================================================================== element types

# Every client message type with its elements after the code: (valid value, decoder name).
LAYOUTS = {
    "HELLO": (rw.HELLO, [("realm1", "Realm"), ({}, "Details")]),
    "AUTHENTICATE": (5, [("sig", "Signature"), ({}, "Extra")]),
    "GOODBYE": (rw.GOODBYE, [({}, "Details"), ("wamp.close.close_realm", "Reason")]),
    "ABORT": (rw.ABORT, [({}, "Details"), ("wamp.close.x", "Reason"), ([], "Arguments"), ({}, "ArgumentsKw")]),
    "ERROR": (rw.ERROR, [(rw.INVOCATION, "REQUEST.Type"), (1, "REQUEST.Request"), ({}, "Details"),
                         ("com.err", "Error"), ([], "Arguments"), ({}, "ArgumentsKw")]),
    "PUBLISH": (rw.PUBLISH, [(1, "Request"), ({}, "Options"), ("com.t", "Topic"), ([], "Arguments"),
                             ({}, "ArgumentsKw")]),
    "SUBSCRIBE": (rw.SUBSCRIBE, [(1, "Request"), ({}, "Options"), ("com.t", "Topic")]),
    "UNSUBSCRIBE": (rw.UNSUBSCRIBE, [(1, "Request"), (1, "SUBSCRIBED.Subscription")]),
    "CALL": (rw.CALL, [(1, "Request"), ({}, "Options"), ("com.p", "Procedure"), ([], "Arguments"),
                       ({}, "ArgumentsKw")]),
    "CANCEL": (rw.CANCEL, [(1, "CALL.Request"), ({}, "Options")]),
    "REGISTER": (rw.REGISTER, [(1, "Request"), ({}, "Options"), ("com.p", "Procedure")]),
    "UNREGISTER": (rw.UNREGISTER, [(1, "Request"), (1, "REGISTERED.Registration")]),
    "YIELD": (rw.YIELD, [(1, "INVOCATION.Request"), ({}, "Options"), ([], "Arguments"), ({}, "ArgumentsKw")]),
}


def wrong_for(value, name):
    """A value of another type than the element's."""
    if name == "Arguments":
        return 7  # a list (or opaque string/binary) belongs here
    if name == "ArgumentsKw":
        return ["x"]
    if isinstance(value, bool):
        return "x"
    if isinstance(value, int):
        return "1"
    if isinstance(value, str):
        return 7
    if isinstance(value, dict):
        return ["x"]
    raise TypeError(value)


TYPE_CASES = {}
for _msg, (_code, _els) in LAYOUTS.items():
    for _i, (_v, _el) in enumerate(_els):
        for _ser in SERS:
            _m = [_code] + [v for v, _ in _els]
            _m[1 + _i] = wrong_for(_v, _el)
            TYPE_CASES[f"{_msg}.{_el}-{_ser}"] = (_ser, _msg, _m, f"{_msg}.{_el}: expected")


@pytest.mark.parametrize("name", list(TYPE_CASES))
def test_wrong_element_type(env, name):
    # Goal: WAMP has no polymorphism: a value of the wrong type at any position of any client
    # message, in any serializer, is ABORT protocol_violation whose message names the message
    # and the element ("CALL.Procedure: expected a string, found integer"). HELLO is sent as
    # the first message; the others in an established session (decoding comes before state).
    ser, msg, m, text = TYPE_CASES[name]

    async def case():
        await session_case(env, kind_for(ser, len(name)), [m], Abort(text), hello=msg != "HELLO")

    env.case(case())


COUNT_CASES = {}
for _n, (_msg, (_code, _els)) in enumerate(LAYOUTS.items()):
    _full = [_code] + [v for v, _ in _els]
    # The last mandatory element missing (payload elements are optional).
    _mandatory = [e for e in _els if e[1] not in ("Arguments", "ArgumentsKw")]
    _short = _full[:len(_mandatory)]
    COUNT_CASES[f"{_msg}-missing-{_mandatory[-1][1]}"] = (SERS[_n % 3], _msg, _short,
                                                        f"{_msg}: missing element {_mandatory[-1][1]}")
    COUNT_CASES[f"{_msg}-extra-element"] = (SERS[(_n + 1) % 3], _msg, _full + [{}], f"{_msg}: too many elements")


@pytest.mark.parametrize("name", list(COUNT_CASES))
def test_wrong_element_count(env, name):
    # Goal: a message that ends before its last mandatory element, or has one element more
    # than its layout (after ArgumentsKw where there is one), is ABORT protocol_violation
    # naming the message ("PUBLISH: missing element Topic", "YIELD: too many elements").
    ser, msg, m, text = COUNT_CASES[name]

    async def case():
        await session_case(env, kind_for(ser, len(name)), [m], Abort(text), hello=msg != "HELLO")

    env.case(case())


# ====================================================================== request IDs

REQUEST_TEMPLATES = {
    "PUBLISH": lambda r: [rw.PUBLISH, r, ACK, "com.t"],
    "SUBSCRIBE": lambda r: [rw.SUBSCRIBE, r, {}, "com.t"],
    "UNSUBSCRIBE": lambda r: [rw.UNSUBSCRIBE, r, 1],
    "CALL": lambda r: [rw.CALL, r, {}, "com.p"],
    "CANCEL": lambda r: [rw.CANCEL, r, {}],
    "REGISTER": lambda r: [rw.REGISTER, r, {}, "com.p"],
    "UNREGISTER": lambda r: [rw.UNREGISTER, r, 1],
}
ID_CASES = {}
for _n, (_msg, _t) in enumerate(REQUEST_TEMPLATES.items()):
    ID_CASES[f"{_msg}-0"] = (kind_for(SERS[_n % 3], _n), [_t(0)], Abort("request ID 0 is outside [1, 2^53]"))
    ID_CASES[f"{_msg}-2^53+1"] = (kind_for(SERS[(_n + 1) % 3], _n + 1), [_t(ID_MAX + 1)],
                                  Abort(f"request ID {ID_MAX + 1} is outside [1, 2^53]"))
ID_CASES.update({
    "PUBLISH-2^53-ok": ("rs-json", [[rw.PUBLISH, ID_MAX, ACK, "com.t"]], Reply(rw.PUBLISHED)),
    "SUBSCRIBE-2^53-ok": ("ws-cbor", [[rw.SUBSCRIBE, ID_MAX, {}, "com.t"]], Reply(rw.SUBSCRIBED)),
    "CALL-2^53-ok": ("rs-msgpack", [[rw.CALL, ID_MAX, {}, "com.nobody"]], Err("wamp.error.no_such_procedure")),
    "YIELD-0": ("rs-json", [[rw.YIELD, 0, {}]], Abort("YIELD for unknown INVOCATION.Request 0")),
    "ERROR-invocation-0": ("ws-msgpack", [[rw.ERROR, rw.INVOCATION, 0, {}, "com.err"]],
                           Abort("ERROR for unknown INVOCATION.Request 0")),
    "duplicate-SUBSCRIBE-request": ("rs-cbor", [[rw.SUBSCRIBE, 5, {}, "com.a"], [rw.SUBSCRIBE, 5, {}, "com.b"]],
                                    "two-replies"),
    "duplicate-PUBLISH-request": ("ws-json", [[rw.PUBLISH, 5, ACK, "com.a"], [rw.PUBLISH, 5, ACK, "com.a"]],
                                  "two-replies"),
    "duplicate-REGISTER-request": ("unix-msgpack", [[rw.REGISTER, 5, {}, f"com.dup.{uid()}"],
                                                    [rw.REGISTER, 5, {}, f"com.dup.{uid()}"]], "two-replies"),
    "CALL-request-reused-after-answer": ("rs-json", [[rw.CALL, 5, {}, "com.nobody"], [rw.CALL, 5, {}, "com.nobody"]],
                                         "two-replies"),
    "non-sequential-requests": ("ws-cbor", [[rw.PUBLISH, 9, ACK, "com.a"], [rw.PUBLISH, 3, ACK, "com.a"]],
                                "two-replies"),
})


@pytest.mark.parametrize("name", list(ID_CASES))
def test_request_ids(env, name):
    # Goal: request IDs outside [1, 2^53] in any client request are ABORT protocol_violation
    # ("request ID N is outside [1, 2^53]"); 2^53 itself is served; a YIELD or ERROR for
    # INVOCATION 0 is an unknown invocation. Request IDs need not be sequential or unique
    # (the router's lenient mode; only a CALL still in flight may not be reused, see
    # test_state_machine): each request gets its own answer.
    kind, msgs, outcome = ID_CASES[name]

    async def case():
        if outcome != "two-replies":
            return await session_case(env, kind, msgs, outcome)
        c = await rw.raw_session(env.router, kind)
        try:
            for m in msgs:
                await c.send(m)
            for m in msgs:
                got = await c.recv(H.ANSWER_S)
                assert got[0] in (rw.PUBLISHED, rw.SUBSCRIBED, rw.REGISTERED, rw.ERROR), got
                assert (got[2] if got[0] == rw.ERROR else got[1]) == m[1], got
                if got[0] == rw.ERROR:
                    assert got[4] == "wamp.error.no_such_procedure", got
            await H.fence(c)
        finally:
            c.close()

    env.case(case())


# ====================================================================== state machine

_CLIENT_MSGS = {
    "AUTHENTICATE": [5, "sig", {}],
    "GOODBYE": [rw.GOODBYE, {}, "wamp.close.close_realm"],
    "ERROR": [rw.ERROR, rw.INVOCATION, 1, {}, "com.err"],
    "PUBLISH": [rw.PUBLISH, 1, {}, "com.t"],
    "SUBSCRIBE": [rw.SUBSCRIBE, 1, {}, "com.t"],
    "UNSUBSCRIBE": [rw.UNSUBSCRIBE, 1, 1],
    "CALL": [rw.CALL, 1, {}, "com.p"],
    "CANCEL": [rw.CANCEL, 1, {}],
    "REGISTER": [rw.REGISTER, 1, {}, "com.p"],
    "UNREGISTER": [rw.UNREGISTER, 1, 1],
    "YIELD": [rw.YIELD, 1, {}],
}
_ROUTER_MSGS = {
    "WELCOME": [rw.WELCOME, 1, {}],
    "CHALLENGE": [4, "ticket", {}],
    "PUBLISHED": [rw.PUBLISHED, 1, 2],
    "SUBSCRIBED": [rw.SUBSCRIBED, 1, 2],
    "UNSUBSCRIBED": [rw.UNSUBSCRIBED, 1],
    "EVENT": [rw.EVENT, 1, 2, {}],
    "RESULT": [rw.RESULT, 1, {}],
    "REGISTERED": [rw.REGISTERED, 1, 2],
    "UNREGISTERED": [rw.UNREGISTERED, 1],
    "INVOCATION": [rw.INVOCATION, 1, 2, {}],
    "INTERRUPT": [rw.INTERRUPT, 1, {}],
}
STATE_CASES = {}
for _n, (_name, _m) in enumerate({**_CLIENT_MSGS, **_ROUTER_MSGS}.items()):
    STATE_CASES[f"before-hello-{_name}"] = (kind_for(SERS[_n % 3], _n), False, [_m],
                                            Abort(f"expected HELLO, received {_name}"))
for _n, (_name, _m) in enumerate({**_ROUTER_MSGS, "HELLO": [rw.HELLO, "realm1", {}],
                                  "AUTHENTICATE": [5, "sig", {}]}.items()):
    STATE_CASES[f"in-session-{_name}"] = (kind_for(SERS[(_n + 1) % 3], _n), True, [_m],
                                          Abort(f"{_name} is not valid from a client in an established session"))
for _n, _t in enumerate([0, rw.HELLO, rw.PUBLISH, rw.SUBSCRIBE, rw.CALL, rw.REGISTER, rw.YIELD, 999]):
    STATE_CASES[f"ERROR-for-type-{_t}"] = (kind_for(SERS[_n % 3], _n), True, [[rw.ERROR, _t, 1, {}, "com.err"]],
                                           Abort(f"ERROR with REQUEST.Type {_t}"))
STATE_CASES.update({
    "before-hello-unknown-type": ("rs-json", False, [[99, 1]], Abort("unknown message type 99")),
    "in-session-unknown-type-7": ("ws-msgpack", True, [[7, 1, {}]], Abort("unknown message type 7")),
    "in-session-unknown-type-256": ("rs-cbor", True, [[256, 1, {}]], Abort("unknown message type 256")),
    "in-session-event-received-ignored": ("rs-msgpack", True, [[337, 1]], Ignored()),
    "YIELD-unknown-invocation": ("unix-json", True, [[rw.YIELD, 4242, {}, ["x"]]],
                                 Abort("YIELD for unknown INVOCATION.Request 4242")),
    "ERROR-unknown-invocation": ("ws-cbor", True, [[rw.ERROR, rw.INVOCATION, 4242, {}, "com.err"]],
                                 Abort("ERROR for unknown INVOCATION.Request 4242")),
    "ERROR-invalid-uri-before-unknown": ("rs-json", True, [[rw.ERROR, rw.INVOCATION, 4242, {}, "bad uri"]],
                                         Abort("ERROR.Error \"bad uri\" is not a valid URI")),
    "CANCEL-unknown-call-ignored": ("rs-msgpack", True, [[rw.CANCEL, 4242, {"mode": "kill"}]], Ignored()),
    "UNSUBSCRIBE-unknown": ("ws-json", True, [[rw.UNSUBSCRIBE, 3, ID_MAX]], Err("wamp.error.no_such_subscription")),
    "UNREGISTER-unknown": ("rs-cbor", True, [[rw.UNREGISTER, 3, ID_MAX]], Err("wamp.error.no_such_registration")),
    "CALL-no-callee": ("unix-msgpack", True, [[rw.CALL, 3, {}, "com.nobody.home"]],
                       Err("wamp.error.no_such_procedure")),
    "CALL-unknown-router-procedure": ("rs-json", True, [[rw.CALL, 3, {}, "wamp.no.such"]],
                                      Err("wamp.error.no_such_procedure")),
    "CALL-meta-bad-arguments": ("ws-msgpack", True, [[rw.CALL, 3, {}, "wamp.session.get", ["not an id"]]],
                                Err("wamp.error.invalid_argument")),
    "abort-before-hello-closes": ("rs-json", False, [[rw.ABORT, {}, "wamp.close.x"]], Eof()),
})


@pytest.mark.parametrize("name", list(STATE_CASES))
def test_state_machine(env, name):
    # Goal: only HELLO (or ABORT) may open a session ("expected HELLO, received X"); a message
    # only a router sends, a second HELLO or an AUTHENTICATE without a CHALLENGE is not valid
    # in an established session; an ERROR may only answer an INVOCATION; a YIELD/ERROR for
    # an invocation the session never got is a violation (an invalid ERROR URI is caught
    # first). Requests for things that do not exist get their ERROR and the session goes on;
    # an ABORT before HELLO closes the connection without an answer.
    kind, hello, msgs, outcome = STATE_CASES[name]

    async def case():
        await session_case(env, kind, msgs, outcome, hello=hello)

    env.case(case())


async def callee_and_caller(env, kind_callee="rs-msgpack", kind_caller="ws-json", caller_shard=None):
    callee = await rw.raw_session(env.router, kind_callee, shard=0)
    proc = f"test.hostile.rpc.{uid()}"
    await callee.register(proc)
    caller = await rw.raw_session(env.router, kind_caller, shard=caller_shard)
    return callee, caller, proc


async def next_invocation(callee):
    inv = await callee.recv(H.ANSWER_S)
    assert inv[0] == rw.INVOCATION, inv
    return inv


@pytest.mark.parametrize("name", [
    "yield-twice", "error-then-yield", "invalid-error-uri-for-real-invocation", "progress-without-receive-progress",
    "call-request-in-flight", "cancel-bad-mode", "cancel-mode-not-string", "goodbye-then-publish",
    "goodbye-then-hello", "goodbye-twice", "abort-in-session", "yield-after-caller-left",
    "progressive-call-to-callee-without-feature", "late-yield-after-timeout", "cancel-skip-then-yield",
    "cancel-kill-then-error-canceled", "yield-by-other-session", "error-unavailable-without-other-callee",
    "unregister-then-yield-pending", "callee-goodbye-with-pending-invocation", "cancel-twice",
    "self-call-then-violation", "self-call-then-goodbye", "shared-registration-callee-aborts",
    "kill-own-authid", "kill-other-session", "huge-timeout-then-yield",
])
def test_rpc_state_abuse(env, name):
    # Goal: state-machine abuse around a real call, each with its answer: a second YIELD (or
    # a YIELD after ERROR) for one invocation is an unknown invocation (ABORT) while the
    # caller got exactly the first answer; an invalid ERROR URI aborts the callee and the
    # caller gets wamp.error.canceled; a progressive YIELD the caller did not ask for is
    # dropped and the final one delivered; reusing the request ID of a call in flight or an
    # unknown CANCEL mode aborts the caller; after GOODBYE the transport expects HELLO again
    # (a PUBLISH is "expected HELLO", a HELLO opens a new session); a client ABORT ends the
    # session silently; a YIELD for a caller that left is dropped.
    async def case():
        callee, caller, proc = await callee_and_caller(env)
        try:
            if name in ("yield-twice", "error-then-yield"):
                await caller.send([rw.CALL, 1, {}, proc, ["a"]])
                inv = await next_invocation(callee)
                first = ([rw.YIELD, inv[1], {}, ["one"]] if name == "yield-twice"
                         else [rw.ERROR, rw.INVOCATION, inv[1], {}, "com.app.failed"])
                await callee.send(first)
                await callee.send([rw.YIELD, inv[1], {}, ["two"]])
                await H.expect_abort(callee, f"YIELD for unknown INVOCATION.Request {inv[1]}")
                got = await caller.recv(H.ANSWER_S)
                if name == "yield-twice":
                    assert got[:2] == [rw.RESULT, 1] and got[3] == ["one"], got
                else:
                    assert got[0] == rw.ERROR and got[4] == "com.app.failed", got
                await H.fence(caller)
                await env.assert_freed(proc)
            elif name == "invalid-error-uri-for-real-invocation":
                await caller.send([rw.CALL, 1, {}, proc])
                inv = await next_invocation(callee)
                await callee.send([rw.ERROR, rw.INVOCATION, inv[1], {}, "com.app.\x00bad"])
                await H.expect_abort(callee, "is not a valid URI")
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ERROR and got[2] == 1 and got[4] == "wamp.error.canceled", got
                await env.assert_freed(proc)
            elif name == "progress-without-receive-progress":
                await caller.send([rw.CALL, 1, {}, proc])
                inv = await next_invocation(callee)
                await callee.send([rw.YIELD, inv[1], {"progress": True}, ["partial"]])
                await callee.send([rw.YIELD, inv[1], {}, ["final"]])
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.RESULT and got[3] == ["final"] and not got[2].get("progress"), got
                await H.fence(callee)
            elif name == "call-request-in-flight":
                await caller.send([rw.CALL, 1, {}, proc])
                await next_invocation(callee)
                await caller.send([rw.CALL, 1, {}, proc])
                await H.expect_abort(caller, "CALL.Request 1 is already in flight")
                # The callee is told (INTERRUPT killnowait: it announced call canceling).
                intr = await callee.recv(H.ANSWER_S)
                assert intr[0] == rw.INTERRUPT and intr[2] == {"mode": "killnowait"}, intr
                await H.fence(callee)
            elif name in ("cancel-bad-mode", "cancel-mode-not-string"):
                await caller.send([rw.CALL, 1, {}, proc])
                await next_invocation(callee)
                mode = "explode" if name == "cancel-bad-mode" else 3
                await caller.send([rw.CANCEL, 1, {"mode": mode}])
                text = ("CANCEL.Options.mode: unknown mode \"explode\"" if name == "cancel-bad-mode"
                        else "CANCEL.Options.mode: expected a string")
                await H.expect_abort(caller, text)
                intr = await callee.recv(H.ANSWER_S)
                assert intr[0] == rw.INTERRUPT, intr
            elif name.startswith("goodbye"):
                await caller.send([rw.GOODBYE, {}, "wamp.close.close_realm"])
                assert await caller.recv(H.ANSWER_S) == [rw.GOODBYE, {}, "wamp.close.goodbye_and_out"]
                if name == "goodbye-then-publish":
                    await caller.send([rw.PUBLISH, 1, ACK, "com.t"])
                    await H.expect_abort(caller, "expected HELLO, received PUBLISH")
                elif name == "goodbye-twice":
                    await caller.send([rw.GOODBYE, {}, "wamp.close.close_realm"])
                    await H.expect_abort(caller, "expected HELLO, received GOODBYE")
                else:
                    old = caller.session_id
                    await caller.hello()
                    assert caller.session_id != old
                    await H.fence(caller)
            elif name == "abort-in-session":
                await callee.send([rw.ABORT, {}, "wamp.close.bye"])
                got, _ = await callee.recv_closed(H.CLOSE_S)
                assert got == [], got
                await env.assert_freed(proc)
            elif name == "progressive-call-to-callee-without-feature":
                await caller.send([rw.CALL, 1, {"progress": True}, proc, ["chunk"]])
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ERROR and got[2] == 1 and got[4] == "wamp.error.feature_not_supported", got
                await H.fence(caller)
                await H.fence(callee)  # and no INVOCATION came
            elif name == "late-yield-after-timeout":
                await caller.send([rw.CALL, 1, {"timeout": 50}, proc])
                inv = await next_invocation(callee)
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ERROR and got[2] == 1 and got[4] == "wamp.error.timeout", got
                intr = await callee.recv(H.ANSWER_S)
                assert intr[:3] == [rw.INTERRUPT, inv[1], {"mode": "killnowait"}], intr
                await callee.send([rw.YIELD, inv[1], {}, ["late"]])
                await H.fence(callee)
                await H.fence(caller)
            elif name == "cancel-skip-then-yield":
                await caller.send([rw.CALL, 1, {}, proc])
                inv = await next_invocation(callee)
                await caller.send([rw.CANCEL, 1, {"mode": "skip"}])
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ERROR and got[4] == "wamp.error.canceled", got
                await callee.send([rw.YIELD, inv[1], {}, ["late"]])
                await H.fence(callee)  # no INTERRUPT for skip, and the late YIELD is no violation
                await H.fence(caller)
            elif name == "cancel-kill-then-error-canceled":
                await caller.send([rw.CALL, 1, {}, proc])
                inv = await next_invocation(callee)
                await caller.send([rw.CANCEL, 1, {"mode": "kill"}])
                intr = await callee.recv(H.ANSWER_S)
                assert intr[:3] == [rw.INTERRUPT, inv[1], {"mode": "kill"}], intr
                await callee.send([rw.ERROR, rw.INVOCATION, inv[1], {}, "wamp.error.canceled"])
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ERROR and got[4] == "wamp.error.canceled", got
                await H.fence(callee)
            elif name == "yield-by-other-session":
                await caller.send([rw.CALL, 1, {}, proc, ["x"]])
                inv = await next_invocation(callee)
                thief = await rw.raw_session(env.router, "rs-cbor", shard=1)
                try:
                    await thief.send([rw.YIELD, inv[1], {}, ["stolen"]])
                    await H.expect_abort(thief, f"YIELD for unknown INVOCATION.Request {inv[1]}")
                finally:
                    thief.close()
                await callee.send([rw.YIELD, inv[1], {}, ["mine"]])
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.RESULT and got[3] == ["mine"], got
            elif name == "error-unavailable-without-other-callee":
                await caller.send([rw.CALL, 1, {}, proc])
                inv = await next_invocation(callee)
                await callee.send([rw.ERROR, rw.INVOCATION, inv[1], {}, "wamp.error.unavailable"])
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ERROR and got[4] == "wamp.error.no_available_callee", got
                await H.fence(callee)
            elif name == "unregister-then-yield-pending":
                await caller.send([rw.CALL, 1, {}, proc, ["x"]])
                inv = await next_invocation(callee)
                await callee.send([rw.UNREGISTER, 500, inv[2]])
                assert (await callee.recv(H.ANSWER_S))[:2] == [rw.UNREGISTERED, 500]
                await callee.send([rw.YIELD, inv[1], {}, ["still mine"]])
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.RESULT and got[3] == ["still mine"], got
                await H.fence(callee)
            elif name == "callee-goodbye-with-pending-invocation":
                await caller.send([rw.CALL, 1, {}, proc])
                await next_invocation(callee)
                await callee.send([rw.GOODBYE, {}, "wamp.close.close_realm"])
                assert await callee.recv(H.ANSWER_S) == [rw.GOODBYE, {}, "wamp.close.goodbye_and_out"]
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ERROR and got[2] == 1 and got[4] == "wamp.error.canceled", got
                await env.assert_freed(proc)
            elif name == "cancel-twice":
                await caller.send([rw.CALL, 1, {}, proc])
                inv = await next_invocation(callee)
                await caller.send([rw.CANCEL, 1, {"mode": "killnowait"}])
                await caller.send([rw.CANCEL, 1, {"mode": "killnowait"}])
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ERROR and got[4] == "wamp.error.canceled", got
                await H.fence(caller)  # one answer only
                intr = await callee.recv(H.ANSWER_S)
                assert intr[:2] == [rw.INTERRUPT, inv[1]], intr
                await H.fence(callee)  # one INTERRUPT only
            elif name.startswith("self-call"):
                # One session is caller and callee of the same call when it ends.
                await callee.send([rw.CALL, 1, {}, proc])
                inv = await next_invocation(callee)
                assert inv[2] and inv[3] == {}, inv
                if name.endswith("violation"):
                    await callee.send([rw.WELCOME, 1, {}])
                    await H.expect_abort(callee, "WELCOME is not valid")
                else:
                    await callee.send([rw.GOODBYE, {}, "wamp.close.close_realm"])
                    assert await callee.recv(H.ANSWER_S) == [rw.GOODBYE, {}, "wamp.close.goodbye_and_out"]
                    await callee.hello()  # the transport is reused: nothing of the old call follows
                    await H.fence(callee)
                await env.assert_freed(proc)
            elif name == "shared-registration-callee-aborts":
                other = await rw.raw_session(env.router, "rs-cbor", shard=1)
                try:
                    shared = f"test.hostile.shared.{uid()}"
                    await callee.register(shared, {"invoke": "first"})
                    await other.register(shared, {"invoke": "first"})
                    await caller.send([rw.CALL, 1, {}, shared, ["x"]])
                    inv = await next_invocation(callee)  # "first": the earliest callee
                    await callee.send([rw.WELCOME, 1, {}])
                    await H.expect_abort(callee, "WELCOME is not valid")
                    got = await caller.recv(H.ANSWER_S)
                    assert got[0] == rw.ERROR and got[2] == 1 and got[4] == "wamp.error.canceled", got
                    await H.fence(other)  # the call is not re-sent to the other callee
                    await caller.send([rw.CALL, 2, {}, shared, ["y"]])
                    inv = await next_invocation(other)
                    await other.send([rw.YIELD, inv[1], {}, ["other"]])
                    got = await caller.recv(H.ANSWER_S)
                    assert got[:2] == [rw.RESULT, 2] and got[3] == ["other"], got
                finally:
                    other.close()
            elif name == "kill-own-authid":
                await caller.send([rw.CALL, 1, {}, "wamp.session.kill_by_authid", [caller.welcome[2]["authid"]]])
                got = await caller.recv(H.ANSWER_S)
                assert got[:2] == [rw.RESULT, 1] and got[3] == [[]], got  # the caller is not among the killed
                await H.fence(caller)
            elif name == "kill-other-session":
                await caller.send([rw.CALL, 1, {}, "wamp.session.kill", [callee.session_id],
                                   {"reason": "wamp.close.hostile", "message": "bye"}])
                got = await caller.recv(H.ANSWER_S)
                assert got[:2] == [rw.RESULT, 1], got
                assert await callee.recv(H.ANSWER_S) == [rw.GOODBYE, {"message": "bye"}, "wamp.close.hostile"]
                await env.assert_freed(proc)
            elif name == "huge-timeout-then-yield":
                # 1e308 ms is capped (RealmConfig::call_timeout), not an overflowing deadline.
                await caller.send([rw.CALL, 1, {"timeout": 1e308}, proc])
                inv = await next_invocation(callee)
                assert inv[3].get("timeout", 0) >= 10 ** 12, inv
                await callee.send([rw.YIELD, inv[1], {}, ["ok"]])
                got = await caller.recv(H.ANSWER_S)
                assert got[:2] == [rw.RESULT, 1] and got[3] == ["ok"], got
            elif name == "yield-after-caller-left":
                await caller.send([rw.CALL, 1, {}, proc])
                inv = await next_invocation(callee)
                caller.close()
                intr = await callee.recv(H.ANSWER_S)
                assert intr[0] == rw.INTERRUPT and intr[1] == inv[1], intr
                await callee.send([rw.YIELD, inv[1], {}, ["late"]])
                await H.fence(callee)
        finally:
            callee.close()
            caller.close()

    env.case(case())


# ====================================================================== HELLO

HELLO_CASES = {
    # name: (realm, Details, expected: "welcome" or Abort)
    "roles-not-a-dict": ("realm1", {"roles": 5}, "welcome"),
    "role-not-a-dict": ("realm1", {"roles": {"callee": 5, "caller": []}}, "welcome"),
    "features-wrong-types": ("realm1", {"roles": {"callee": {"features": {"call_canceling": "yes"}}}}, "welcome"),
    "no-details-keys": ("realm1", {}, "welcome"),
    "agent-not-a-string": ("realm1", {"agent": 5}, "welcome"),
    "authid-not-a-string": ("realm1", {"authid": 5}, "welcome"),
    "authextra-not-a-dict": ("realm1", {"authextra": "x"}, "welcome"),
    "authmethods-anonymous": ("realm1", {"authmethods": ["anonymous"]}, "welcome"),
    "authmethods-not-a-list": ("realm1", {"authmethods": "anonymous"}, Abort(uri="wamp.error.no_auth_method")),
    "authmethods-empty": ("realm1", {"authmethods": []}, Abort(uri="wamp.error.no_auth_method")),
    "authmethods-not-strings": ("realm1", {"authmethods": [1, None]}, Abort(uri="wamp.error.no_auth_method")),
    "authmethods-unknown": ("realm1", {"authmethods": ["telepathy"]}, Abort(uri="wamp.error.no_auth_method")),
    "authid-empty": ("realm1", {"authid": ""}, Abort("authid is empty or too long",
                                                    uri="wamp.error.authentication_failed")),
    "authid-257-bytes": ("realm1", {"authid": "a" * 257}, Abort("authid is empty or too long",
                                                               uri="wamp.error.authentication_failed")),
    "realm-empty": ("", {}, Abort(uri="wamp.error.invalid_uri")),
    "realm-with-space": ("realm 1", {}, Abort(uri="wamp.error.invalid_uri")),
    "realm-4097-bytes": ("r" * 4097, {}, Abort(uri="wamp.error.invalid_uri")),
    "realm-nul": ("realm\x001", {}, Abort(uri="wamp.error.invalid_uri")),
    "realm-unknown": ("no.such.realm", {}, Abort(uri="wamp.error.no_such_realm")),
    "realm-case-differs": ("Realm1", {}, Abort(uri="wamp.error.no_such_realm")),
}


@pytest.mark.parametrize("name", list(HELLO_CASES))
def test_hello_details(env, name):
    # Goal: HELLO.Details are read leniently where the spec lets a router (roles, features,
    # agent, authid of the wrong type are as if absent: WELCOME) and strictly where the
    # client asked for something the router cannot give: authmethods that name no offered
    # method (or are not a list of strings) get ABORT wamp.error.no_auth_method, an empty or
    # over-256-byte authid wamp.error.authentication_failed, a realm that is not a URI
    # wamp.error.invalid_uri, a realm that does not exist (auto-creation is off; names are
    # case-sensitive) wamp.error.no_such_realm.
    realm, details, outcome = HELLO_CASES[name]

    async def case():
        c = await rw.open_raw(env.router, kind_for(SERS[len(name) % 3], len(name) // 3))
        try:
            await c.send([rw.HELLO, realm, details])
            if outcome == "welcome":
                m = await c.recv(H.ANSWER_S)
                assert m[0] == rw.WELCOME, m
                await H.fence(c)
            else:
                await H.expect_abort(c, outcome.text, outcome.uri)
        finally:
            c.close()

    env.case(case())


# ====================================================================== authentication

TICKET_HELLO = {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": "joe"}
AUTH_CASES = {
    # name: (HELLO.Details, messages after the CHALLENGE (None: no CHALLENGE expected), expected)
    "wrong-ticket": (TICKET_HELLO, [[5, "nope", {}]], Abort(uri="wamp.error.not_authorized")),
    "unknown-authid": ({**TICKET_HELLO, "authid": "mallory"}, [[5, TICKET, {}]],
                       Abort(uri="wamp.error.not_authorized")),
    "ticket-60k": (TICKET_HELLO, [[5, "t" * 60000, {}]], Abort(uri="wamp.error.not_authorized")),
    "ticket-over-64k": (TICKET_HELLO, [[5, "t" * 70000, {}]], Abort("-byte message before WELCOME")),
    "publish-instead": (TICKET_HELLO, [[rw.PUBLISH, 1, {}, "com.t"]], Abort("expected AUTHENTICATE, received PUBLISH")),
    "hello-instead": (TICKET_HELLO, [[rw.HELLO, "realm1", {}]], Abort("expected AUTHENTICATE, received HELLO")),
    "goodbye-instead": (TICKET_HELLO, [[rw.GOODBYE, {}, "wamp.close.close_realm"]],
                        Abort("expected AUTHENTICATE, received GOODBYE")),
    "welcome-instead": (TICKET_HELLO, [[rw.WELCOME, 1, {}]], Abort("expected AUTHENTICATE, received WELCOME")),
    "signature-int": (TICKET_HELLO, [[5, 12345, {}]], Abort("AUTHENTICATE.Signature: expected")),
    "extra-list": (TICKET_HELLO, [[5, TICKET, []]], Abort("AUTHENTICATE.Extra: expected")),
    "abort-instead": (TICKET_HELLO, [[rw.ABORT, {}, "wamp.close.bye"]], "closed"),
    "right-ticket-then-authenticate-again": (
        TICKET_HELLO, [[5, TICKET, {}], [5, TICKET, {}]],
        Abort("AUTHENTICATE is not valid from a client in an established session")),
    "no-authid": ({"authmethods": ["ticket"]}, None, Abort("needs an authid", uri="wamp.error.authentication_failed")),
    "method-not-offered": ({"authmethods": ["wampcra"], "authid": "joe"}, None,
                           Abort(uri="wamp.error.no_auth_method")),
}


@pytest.mark.parametrize("name", list(AUTH_CASES))
def test_authenticate_abuse(env, name):
    # Goal: between CHALLENGE and WELCOME only AUTHENTICATE (or ABORT) is valid: anything
    # else is ABORT protocol_violation "expected AUTHENTICATE, received X"; a wrong ticket or
    # an unknown authid is ABORT wamp.error.not_authorized (which one is not told); the
    # 64 KiB cap before WELCOME applies to AUTHENTICATE too; AUTHENTICATE after WELCOME is a
    # violation; ticket without an authid is authentication_failed, a method the listener
    # does not offer no_auth_method; an ABORT after the CHALLENGE closes silently.
    details, after, outcome = AUTH_CASES[name]

    async def case():
        c = await rw.open_raw(env.router, ["rs-json", "ws-msgpack", "unix-cbor"][len(name) % 3])
        try:
            await c.send([rw.HELLO, "realm1", details])
            if after is not None:
                ch = await c.recv(H.ANSWER_S)
                assert ch == [4, "ticket", {}], ch
                for m in after:
                    await c.send(m)
                if name.startswith("right-ticket"):
                    w = await c.recv(H.ANSWER_S)
                    assert w[0] == rw.WELCOME and w[2]["authid"] == "joe" and w[2]["authrole"] == "user", w
            if outcome == "closed":
                await H.expect_closed(c, 1000 if isinstance(c, rw.WebSocketConn) else None)
            else:
                await H.expect_abort(c, outcome.text, outcome.uri)
        finally:
            c.close()

    env.case(case())


def test_authenticate_pipelined(env):
    # Goal: a client that sends HELLO, AUTHENTICATE and an acknowledged PUBLISH in one write
    # (before seeing the CHALLENGE) gets CHALLENGE, WELCOME and PUBLISHED in that order.
    async def case():
        c = await rw.open_raw(env.router, "rs-msgpack")
        try:
            frames = [rw.encode("msgpack", m) for m in ([rw.HELLO, "realm1", TICKET_HELLO], [5, TICKET, {}],
                                                        [rw.PUBLISH, 3, ACK, "com.t"])]
            await c.send_raw(b"".join(rw.rawsocket_prefix(len(f)) + f for f in frames))
            assert (await c.recv(H.ANSWER_S))[0] == 4
            assert (await c.recv(H.ANSWER_S))[0] == rw.WELCOME
            assert (await c.recv(H.ANSWER_S))[:2] == [rw.PUBLISHED, 3]
        finally:
            c.close()

    env.case(case())


# ====================================================================== router procedures

META_CASES = {
    # name: (CALL procedure, args, kwargs, expected ERROR URI or RESULT)
    "session.get-no-args": ("wamp.session.get", [], None, "wamp.error.invalid_argument"),
    "session.get-negative": ("wamp.session.get", [-1], None, "wamp.error.invalid_argument"),
    "session.get-unknown": ("wamp.session.get", [ID_MAX], None, "wamp.error.no_such_session"),
    "session.count-roles-not-list": ("wamp.session.count", ["x"], None, "wamp.error.invalid_argument"),
    "session.count-roles-not-strings": ("wamp.session.count", [[1, 2]], None, "wamp.error.invalid_argument"),
    "session.count-nobody": ("wamp.session.count", [["no-such-role"]], None, rw.RESULT),
    "session.kill-unknown": ("wamp.session.kill", [ID_MAX], None, "wamp.error.no_such_session"),
    "session.kill-bad-reason": ("wamp.session.kill", [ID_MAX], {"reason": "not a uri"}, "wamp.error.invalid_argument"),
    "session.kill_by_authid-not-string": ("wamp.session.kill_by_authid", [5], None, "wamp.error.invalid_argument"),
    "session.kill_by_authid-nobody": ("wamp.session.kill_by_authid", ["nobody-at-all"], None, rw.RESULT),
    "subscription.get-unknown": ("wamp.subscription.get", [ID_MAX], None, "wamp.error.no_such_subscription"),
    "subscription.lookup-not-string": ("wamp.subscription.lookup", [5], None, "wamp.error.invalid_argument"),
    "subscription.match-invalid-uri": ("wamp.subscription.match", ["a b"], None, "wamp.error.invalid_argument"),
    "subscription.list_subscribers-string": ("wamp.subscription.list_subscribers", ["x"], None,
                                             "wamp.error.invalid_argument"),
    "subscription.get_events-string": ("wamp.subscription.get_events", ["x"], None, "wamp.error.invalid_argument"),
    "registration.get-unknown": ("wamp.registration.get", [ID_MAX], None, "wamp.error.no_such_registration"),
    "registration.lookup-bad-options": ("wamp.registration.lookup", ["com.p", {"match": "regex"}], None,
                                        "wamp.error.invalid_argument"),
    "registration.match-list": ("wamp.registration.match", [[1]], None, "wamp.error.invalid_argument"),
    "add_testament-no-args": ("wamp.session.add_testament", [], None, "wamp.error.invalid_argument"),
    "add_testament-bad-topic": ("wamp.session.add_testament", ["a b", [], {}], None, "wamp.error.invalid_uri"),
    "add_testament-bad-scope": ("wamp.session.add_testament", ["com.t", [], {}], {"scope": "forever"},
                                "wamp.error.testament_error"),
    "flush_testaments-bad-scope": ("wamp.session.flush_testaments", [], {"scope": 5}, "wamp.error.testament_error"),
    "opaque-arguments": ("wamp.session.count", "opaque", None, "wamp.error.invalid_argument"),
}


@pytest.mark.parametrize("name", list(META_CASES))
def test_router_procedures(env, name):
    # Goal: the router's own procedures validate their arguments: a wrong type or a missing
    # argument is ERROR wamp.error.invalid_argument, an unknown ID its no_such_* URI, an
    # invalid URI invalid_uri, a bad testament scope wamp.error.testament_error; well-formed
    # questions get a RESULT; the session goes on either way.
    proc, args, kwargs, expected = META_CASES[name]
    msg = [rw.CALL, 3, {}, proc, args] + ([kwargs] if kwargs is not None else [])

    async def case():
        outcome = Reply(rw.RESULT) if expected == rw.RESULT else Err(expected)
        await session_case(env, kind_for(SERS[len(name) % 3], len(name) // 3), [msg], outcome)

    env.case(case())


@pytest.mark.parametrize("name", [
    "hello-and-subscribe-in-one-write", "hello-and-goodbye-in-one-write", "hello-and-abort-in-one-write",
    "subscribe-twice-unsubscribe-twice", "register-twice", "shared-registration-policy-mismatch",
    "half-frame-then-eof-rs", "half-frame-then-eof-ws", "messages-after-ws-close",
])
def test_session_lifecycle_abuse(env, name):
    # Goal: messages pipelined behind a HELLO are handled after the WELCOME, in order (a
    # SUBSCRIBE gets SUBSCRIBED; a GOODBYE its GOODBYE; an ABORT closes silently); a
    # repeated SUBSCRIBE gets the same subscription and the second UNSUBSCRIBE
    # no_such_subscription; a second REGISTER of one procedure, or one with another invoke
    # policy from another session, gets wamp.error.procedure_already_exists; a transport
    # that ends inside a frame frees the session's registration; whatever a WebSocket peer
    # sends after its Close is not read.
    async def case():
        if name.startswith("hello-and-"):
            c = await rw.open_raw(env.router, "rs-json" if "subscribe" in name else "ws-msgpack")
            try:
                hello = rw.encode(c.serializer, [rw.HELLO, "realm1", {"roles": rw.CLIENT_ROLES}])
                second = {"subscribe": [rw.SUBSCRIBE, 1, {}, "test.hostile.pipelined"],
                          "goodbye": [rw.GOODBYE, {}, "wamp.close.close_realm"],
                          "abort": [rw.ABORT, {}, "wamp.close.bye"]}[name.split("-")[2]]
                frames = [hello, rw.encode(c.serializer, second)]
                if isinstance(c, rw.RawSocketConn):
                    await c.send_raw(b"".join(rw.rawsocket_prefix(len(f)) + f for f in frames))
                else:
                    await c.send_raw(b"".join(rw.ws_frame(rw.OP_BINARY, f) for f in frames))
                assert (await c.recv(H.ANSWER_S))[0] == rw.WELCOME
                if "subscribe" in name:
                    assert (await c.recv(H.ANSWER_S))[:2] == [rw.SUBSCRIBED, 1]
                    await H.fence(c)
                elif "goodbye" in name:
                    assert await c.recv(H.ANSWER_S) == [rw.GOODBYE, {}, "wamp.close.goodbye_and_out"]
                else:
                    got, _ = await c.recv_closed(H.CLOSE_S)
                    assert got == [], got
            finally:
                c.close()
        elif name == "subscribe-twice-unsubscribe-twice":
            c = await rw.raw_session(env.router, "rs-cbor")
            try:
                topic = f"test.hostile.twice.{uid()}"
                a, b = await c.subscribe(topic), await c.subscribe(topic)
                assert a == b
                u = await c.call_expect([rw.UNSUBSCRIBE, c.request_id(), a], rw.UNSUBSCRIBED)
                assert u[0] == rw.UNSUBSCRIBED, u
                req = c.request_id()
                await c.send([rw.UNSUBSCRIBE, req, a])
                await H.expect(c, Err("wamp.error.no_such_subscription"), req)
            finally:
                c.close()
        elif name in ("register-twice", "shared-registration-policy-mismatch"):
            a = await rw.raw_session(env.router, "rs-msgpack", shard=0)
            b = a if name == "register-twice" else await rw.raw_session(env.router, "ws-json", shard=1)
            try:
                proc = f"test.hostile.twice.{uid()}"
                await a.register(proc, {"invoke": "roundrobin"})
                req = b.request_id()
                await b.send([rw.REGISTER, req, {"invoke": "roundrobin" if b is a else "single"}, proc])
                await H.expect(b, Err("wamp.error.procedure_already_exists"), req)
            finally:
                a.close()
                b.close()
        elif name.startswith("half-frame"):
            c = await rw.raw_session(env.router, "rs-json" if name.endswith("rs") else "ws-json")
            proc = f"test.hostile.half.{uid()}"
            await c.register(proc)
            await c.send_raw(rw.rawsocket_prefix(100) + b"[16," if name.endswith("rs")
                             else rw.ws_frame(rw.OP_TEXT, b"[16,1,{}," * 20)[:30])
            c.close()
            await env.assert_freed(proc)
        elif name == "messages-after-ws-close":
            c = await rw.raw_session(env.router, "ws-json")
            try:
                await c.send_raw(close_frame(1000) + rw.ws_frame(rw.OP_TEXT, b'[16,1,{"acknowledge":true},"a"]')
                                 + rw.ws_frame(rw.OP_PING, b"p"))
                await H.expect_closed(c, 1000)
            finally:
                c.close()

    env.case(case())


STREAM_CALLEE = {"callee": {"features": {"progressive_call_invocations": True, "call_canceling": True}}}
STREAM_CALLER = {"caller": {"features": {"progressive_call_invocations": True}}}


@pytest.mark.parametrize("name", [
    "callee-without-call-canceling",
    pytest.param("caller-did-not-announce", marks=pytest.mark.xfail(strict=True, reason=(
        "spec (progressive call invocations): a CALL with progress=true from a caller that did not announce "
        "progressive_call_invocations MUST be a protocol error; the router streams it (rpc/caller.rs on_call "
        "never looks at the caller's features). Not changed here: test_rpc.py's and simulation_timeouts.rs's "
        "stream tests use such callers, so it needs a decision"))),
    "different-procedure-in-a-later-chunk",
])
def test_progressive_call_invocation_abuse(env, name):
    # Goal: the spec's rules for progressive call invocations. A callee that announces them
    # without call_canceling counts as not taking them: the caller gets ERROR
    # wamp.error.feature_not_supported (fixed here: it was streamed to). A caller that did
    # not announce the feature and streams anyway is a protocol violation (not yet: xfail).
    # A later chunk naming another procedure still belongs to the call its request ID
    # started (the initiating CALL's Options and target are frozen): it reaches the first
    # callee.
    async def case():
        callee_roles = STREAM_CALLEE if name != "callee-without-call-canceling" else \
            {"callee": {"features": {"progressive_call_invocations": True}}}
        callee = await rw.raw_session(env.router, "rs-json", shard=0, details={"roles": callee_roles})
        caller_roles = {} if name == "caller-did-not-announce" else {"roles": STREAM_CALLER}
        caller = await rw.raw_session(env.router, "ws-msgpack", shard=1, details=caller_roles or None)
        try:
            proc = f"test.hostile.stream.{uid()}"
            await callee.register(proc)
            await caller.send([rw.CALL, 1, {"progress": True}, proc, ["c1"]])
            if name == "callee-without-call-canceling":
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ERROR and got[4] == "wamp.error.feature_not_supported", got
                await H.fence(callee)  # no INVOCATION
            elif name == "caller-did-not-announce":
                # An acknowledged PUBLISH behind the CALL: its PUBLISHED must not come (the
                # ABORT and the close must).
                await caller.send([rw.PUBLISH, 2, ACK, "test.hostile.fence"])
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ABORT and got[2] == H.PV, got
            else:
                inv = await next_invocation(callee)
                await caller.send([rw.CALL, 1, {}, "com.some.other.proc", ["c2"]])
                last = await next_invocation(callee)
                assert last[1] == inv[1] and last[4] == ["c2"] and not last[3].get("progress"), last
                await callee.send([rw.YIELD, inv[1], {}, ["done"]])
                got = await caller.recv(H.ANSWER_S)
                assert got[:2] == [rw.RESULT, 1] and got[3] == ["done"], got
        finally:
            callee.close()
            caller.close()

    env.case(case())


@pytest.mark.parametrize("end", ["violation", "transport-drop", "goodbye"])
def test_ending_violator_is_announced(env, end):
    # Goal: a session that ends by a protocol violation is announced like any other ending
    # (a dropped transport, GOODBYE): its testament is published, then
    # wamp.session.on_leave with its session ID, authid and authrole, to a watcher on the
    # other shard, in that order (test_testaments.py's order for every ending).
    async def case():
        watcher = await rw.raw_session(env.router, "rs-json", shard=1)
        v = await rw.raw_session(env.router, "ws-msgpack")
        try:
            tag = uid()
            await watcher.subscribe("wamp.session.on_leave")
            await watcher.subscribe(f"test.hostile.testament.{tag}")
            added = await v.call_expect([rw.CALL, 9, {}, "wamp.session.add_testament",
                                         [f"test.hostile.testament.{tag}", ["last words", tag], {}]], rw.RESULT)
            assert added[0] == rw.RESULT, added
            if end == "violation":
                await v.send([rw.WELCOME, 1, {}])
                await H.expect_abort(v, "WELCOME is not valid")
            elif end == "goodbye":
                await v.send([rw.GOODBYE, {}, "wamp.close.close_realm"])
                assert await v.recv(H.ANSWER_S) == [rw.GOODBYE, {}, "wamp.close.goodbye_and_out"]
            else:
                v.close()
            # Sessions of earlier cases may still be ending: only this session's events count.
            mine = []
            while not mine or mine[-1][0] != "leave":
                m = await watcher.recv(H.ANSWER_S)
                assert m[0] == rw.EVENT, m
                if m[4] == ["last words", tag]:
                    mine.append(("testament", m))
                elif m[4] and m[4][0] == v.session_id:
                    assert m[4][1:] == [v.welcome[2]["authid"], v.welcome[2]["authrole"]], m
                    mine.append(("leave", m))
            assert [k for k, _ in mine] == ["testament", "leave"], mine
        finally:
            v.close()
            watcher.close()

    env.case(case())


# ====================================================================== options

OPTION_CASES = {
    # name: (message, text)
    "PUBLISH.acknowledge-int": ([rw.PUBLISH, 2, {"acknowledge": 1}, "com.t"], "PUBLISH.Options.acknowledge"),
    "PUBLISH.exclude_me-string": ([rw.PUBLISH, 2, {"exclude_me": "no"}, "com.t"], "PUBLISH.Options.exclude_me"),
    "PUBLISH.disclose_me-list": ([rw.PUBLISH, 2, {"disclose_me": []}, "com.t"], "PUBLISH.Options.disclose_me"),
    "PUBLISH.retain-int": ([rw.PUBLISH, 2, {"retain": 0}, "com.t"], "PUBLISH.Options.retain"),
    "PUBLISH.exclude-string": ([rw.PUBLISH, 2, {"exclude": "1"}, "com.t"], "PUBLISH.Options.exclude"),
    "PUBLISH.exclude-item-string": ([rw.PUBLISH, 2, {"exclude": ["a"]}, "com.t"], "PUBLISH.Options.exclude"),
    "PUBLISH.eligible-item-negative": ([rw.PUBLISH, 2, {"eligible": [-1]}, "com.t"], "PUBLISH.Options.eligible"),
    "PUBLISH.exclude_authid-item-int": ([rw.PUBLISH, 2, {"exclude_authid": [1]}, "com.t"],
                                        "PUBLISH.Options.exclude_authid"),
    "PUBLISH.eligible_authrole-dict": ([rw.PUBLISH, 2, {"eligible_authrole": {}}, "com.t"],
                                       "PUBLISH.Options.eligible_authrole"),
    "PUBLISH.exclude-4097-entries": ([rw.PUBLISH, 2, {"exclude": list(range(1, 4098))}, "com.t"],
                                     "PUBLISH.Options.exclude: more than 4096 entries"),
    "PUBLISH.forward_for-int": ([rw.PUBLISH, 2, {"forward_for": 5}, "com.t"], "PUBLISH.Options.forward_for"),
    "PUBLISH.enc_algo-unknown": ([rw.PUBLISH, 2, {"enc_algo": "rot13"}, "com.t"], "PUBLISH.Options.enc_algo"),
    "PUBLISH.ppt_scheme-int": ([rw.PUBLISH, 2, {"ppt_scheme": 1}, "com.t"], "PUBLISH.Options.ppt_scheme"),
    "SUBSCRIBE.match-regex": ([rw.SUBSCRIBE, 2, {"match": "regex"}, "com.t"],
                              "SUBSCRIBE.Options.match: unknown match policy"),
    "SUBSCRIBE.match-int": ([rw.SUBSCRIBE, 2, {"match": 1}, "com.t"], "SUBSCRIBE.Options.match: expected a string"),
    "SUBSCRIBE.get_retained-string": ([rw.SUBSCRIBE, 2, {"get_retained": "yes"}, "com.t"],
                                      "SUBSCRIBE.Options.get_retained"),
    "REGISTER.match-glob": ([rw.REGISTER, 2, {"match": "glob"}, "com.p"], "REGISTER.Options.match"),
    "REGISTER.invoke-sometimes": ([rw.REGISTER, 2, {"invoke": "sometimes"}, "com.p"],
                                  "REGISTER.Options.invoke: unknown invocation policy"),
    "REGISTER.disclose_caller-int": ([rw.REGISTER, 2, {"disclose_caller": 1}, "com.p"],
                                     "REGISTER.Options.disclose_caller"),
    "CALL.receive_progress-int": ([rw.CALL, 2, {"receive_progress": 1}, "com.p"], "CALL.Options.receive_progress"),
    "CALL.timeout-negative": ([rw.CALL, 2, {"timeout": -1}, "com.p"], "CALL.Options.timeout"),
    "CALL.timeout-string": ([rw.CALL, 2, {"timeout": "10"}, "com.p"], "CALL.Options.timeout"),
    "CALL.disclose_me-string": ([rw.CALL, 2, {"disclose_me": "yes"}, "com.p"], "CALL.Options.disclose_me"),
    "CALL.progress-int": ([rw.CALL, 2, {"progress": 1}, "com.p"], "CALL.Options.progress"),
    "CALL.enc_serializer-unknown": ([rw.CALL, 2, {"enc_serializer": "xml"}, "com.p"], "CALL.Options.enc_serializer"),
    "YIELD.progress-int": ([rw.YIELD, 77, {"progress": 1}], "YIELD.Options.progress"),
}


@pytest.mark.parametrize("name", list(OPTION_CASES))
def test_option_types(env, name):
    # Goal: a known Options key with a value of the wrong type or an unknown value (match,
    # invoke, CANCEL mode, payload-transparency algorithm/serializer), or a filter list over
    # 4096 entries, is ABORT protocol_violation naming MESSAGE.Options.key (options.rs).
    m, text = OPTION_CASES[name]

    async def case():
        await session_case(env, kind_for(SERS[len(name) % 3], len(name) // 3), [m], Abort(text))

    env.case(case())


@pytest.mark.parametrize("name,msg,outcome", [
    ("unknown-keys-ignored", [rw.PUBLISH, 2, {"acknowledge": True, "_x_vendor": [1, {}], "foo": None}, "com.t"],
     Reply(rw.PUBLISHED)),
    ("null-is-absent", [rw.PUBLISH, 2, {"acknowledge": None}, "com.t"], Ignored()),
    ("timeout-float-ok", [rw.CALL, 2, {"timeout": 1.5}, "com.nobody"], Err("wamp.error.no_such_procedure")),
    ("opaque-string-arguments", [rw.PUBLISH, 2, ACK, "com.t", "opaque"], Reply(rw.PUBLISHED)),
    ("timeout-1e308", [rw.CALL, 2, {"timeout": 1e308}, "com.nobody"], Err("wamp.error.no_such_procedure")),
    ("timeout-zero", [rw.CALL, 2, {"timeout": 0}, "com.nobody"], Err("wamp.error.no_such_procedure")),
], ids=["unknown-keys-ignored", "null-is-absent", "timeout-float-ok", "opaque-string-arguments", "timeout-1e308",
        "timeout-zero"])
def test_option_leniency(env, name, msg, outcome):
    # Goal: what the spec allows is served: unknown Options keys are ignored, null is the
    # same as absent (so acknowledge: null asks for no PUBLISHED), a float timeout is a
    # number, and Arguments may be an opaque string (payload transparency).
    async def case():
        await session_case(env, "rs-msgpack", [msg], outcome)

    env.case(case())


# ====================================================================== URIs

BAD_URIS = {
    "empty": "",
    "double-dot": "com..t",
    "space": "com.t t",
    "hash": "com.t#x",
    "leading-dot": ".com.t",
    "trailing-dot": "com.t.",
    "nul-start": "\x00com.t",
    "nul-inside": "com.\x00t",
    "tab": "com.\tt",
    "4097-bytes": "c" * 4097,
}
URI_CASES = {}
for _n, (_uname, _uri) in enumerate(BAD_URIS.items()):
    for _k, (_msg, _m, _el) in enumerate([("PUBLISH", [rw.PUBLISH, 2, ACK, _uri], "Topic"),
                                          ("SUBSCRIBE", [rw.SUBSCRIBE, 2, {}, _uri], "Topic"),
                                          ("REGISTER", [rw.REGISTER, 2, {}, _uri], "Procedure"),
                                          ("CALL", [rw.CALL, 2, {}, _uri], "Procedure")]):
        _kind = kind_for(SERS[(_n + _k) % 3], _n + _k // 3)
        # In JSON a string starting with U+0000 is WAMP binary (serialization_binary_json.md),
        # so there it is not a URI at all: a wrong element type.
        _out = (Abort(f"{_msg}.{_el}: expected a string, found binary") if _uri.startswith("\x00") and "json" in _kind
                else Err("wamp.error.invalid_uri"))
        URI_CASES[f"{_msg}-{_uname}"] = (_kind, _m, _out)
URI_CASES.update({
    "PUBLISH-reserved": ("rs-json", [rw.PUBLISH, 2, ACK, "wamp.my.topic"], Err("wamp.error.invalid_uri")),
    "REGISTER-reserved": ("ws-msgpack", [rw.REGISTER, 2, {}, "wamp.my.proc"], Err("wamp.error.invalid_uri")),
    "SUBSCRIBE-reserved-ok": ("rs-cbor", [rw.SUBSCRIBE, 2, {}, "wamp.session.on_join"], Reply(rw.SUBSCRIBED)),
    "SUBSCRIBE-prefix-trailing-dot-ok": ("ws-json", [rw.SUBSCRIBE, 2, {"match": "prefix"}, "com.t."],
                                         Reply(rw.SUBSCRIBED)),
    "SUBSCRIBE-wildcard-empty-ok": ("unix-cbor", [rw.SUBSCRIBE, 2, {"match": "wildcard"}, "com..t"],
                                    Reply(rw.SUBSCRIBED)),
    "REGISTER-wildcard-empty-ok": ("rs-msgpack", [rw.REGISTER, 2, {"match": "wildcard"}, f"com..{uid()}"],
                                   Reply(rw.REGISTERED)),
    "SUBSCRIBE-wildcard-with-space": ("rs-json", [rw.SUBSCRIBE, 2, {"match": "wildcard"}, "com. .t"],
                                      Err("wamp.error.invalid_uri")),
    "PUBLISH-unicode-ok": ("ws-cbor", [rw.PUBLISH, 2, ACK, "com.café.ü"], Reply(rw.PUBLISHED)),
    "PUBLISH-unicode-space": ("rs-json", [rw.PUBLISH, 2, ACK, "com.caf\u00a0e"], Err("wamp.error.invalid_uri")),
    "PUBLISH-4096-bytes-ok": ("rs-msgpack", [rw.PUBLISH, 2, ACK, "c" * 4096], Reply(rw.PUBLISHED)),
})


@pytest.mark.parametrize("name", list(URI_CASES))
def test_uris(env, name):
    # Goal: a topic or procedure that breaks the loose URI rules (empty, empty component
    # outside a pattern, whitespace, '#', control characters, longer than 4096 bytes) gets
    # ERROR wamp.error.invalid_uri and the session goes on; PUBLISH and REGISTER under
    # "wamp." are refused the same way while SUBSCRIBE may listen there; patterns may have
    # the empty components their policy allows; non-ASCII letters are URI text.
    kind, msg, outcome = URI_CASES[name]

    async def case():
        await session_case(env, kind, [msg], outcome)

    env.case(case())


@pytest.mark.parametrize("realm,outcome", [("strict", Err("wamp.error.invalid_uri")), ("realm1", Reply(rw.PUBLISHED))])
def test_strict_uri_realm(env, realm, outcome):
    # Goal: upper case is refused in a strict_uri realm and accepted in a loose one.
    async def case():
        await session_case(env, "rs-json", [[rw.PUBLISH, 2, ACK, "Com.App.Topic"]], outcome, realm=realm)

    env.case(case())


# ====================================================================== races with the mesh


async def lookups_empty(env, topics, procs, timeout=2.0):
    """Every topic has no subscription and every procedure can be registered again (then
    unregistered) by the reclaimer, within ``timeout`` (the owners hear over the mesh)."""
    r = env.reclaimer
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for t in topics:
        while True:
            m = await r.call_expect([rw.CALL, r.request_id(), {}, "wamp.subscription.lookup", [t]], rw.RESULT)
            assert m[0] == rw.RESULT, m
            if m[3] == [None]:
                break
            assert loop.time() < deadline, f"subscription to {t} outlived its session"
            await asyncio.sleep(0.01)
    for p in procs:
        await env.assert_freed(p, timeout=timeout)


@pytest.mark.parametrize("end", ["violation", "goodbye", "abort", "transport-drop"])
@pytest.mark.parametrize("what", ["subscribe", "register"])
def test_session_ends_with_route_changes_in_flight(env, what, end):
    # Goal: a session that ends (protocol violation, GOODBYE, its own ABORT, or a dropped
    # transport) in the same write as 50 SUBSCRIBEs or REGISTERs — still in flight to their
    # owner shards, half of them on the other shard — leaves no subscription or registration
    # behind once the owners hear of it (the answers for a session that is gone must not
    # create routes for nobody).
    async def case():
        c = await rw.raw_session(env.router, "rs-msgpack")
        tag = uid()
        names = [f"test.hostile.race.{tag}.{i}" for i in range(50)]
        code = rw.SUBSCRIBE if what == "subscribe" else rw.REGISTER
        msgs = [rw.encode("msgpack", [code, i + 1, {}, n]) for i, n in enumerate(names)]
        tail = {"violation": [rw.encode("msgpack", [rw.WELCOME, 1, {}])],
                "goodbye": [rw.encode("msgpack", [rw.GOODBYE, {}, "wamp.close.close_realm"])],
                "abort": [rw.encode("msgpack", [rw.ABORT, {}, "wamp.close.bye"])],
                "transport-drop": []}[end]
        await c.send_raw(b"".join(rw.rawsocket_prefix(len(p)) + p for p in msgs + tail))
        c.close()
        await lookups_empty(env, names if what == "subscribe" else [], names if what == "register" else [])

    env.case(case())


@pytest.mark.parametrize("who", ["caller", "callee"])
def test_session_ends_with_invocation_in_flight(env, who):
    # Goal: a caller that aborts right behind its CALL, or a callee that aborts right after
    # the INVOCATION was sent to it, leaves the other side with a defined end: the callee
    # gets INVOCATION then INTERRUPT (or neither), the caller ERROR wamp.error.canceled; the
    # callee's registration is freed.
    async def case():
        callee, caller, proc = await callee_and_caller(env, caller_shard=1)
        try:
            if who == "caller":
                frames = [rw.encode("json", m) for m in ([rw.CALL, 1, {}, proc], [rw.WELCOME, 1, {}])]
                await caller.send_raw(b"".join(rw.rawsocket_prefix(len(f)) + f for f in frames)
                                      if isinstance(caller, rw.RawSocketConn)
                                      else b"".join(rw.ws_frame(rw.OP_TEXT, f) for f in frames))
                await H.expect_abort(caller, "WELCOME is not valid")
                # The CALL was routed before the violation was read, so the callee gets its
                # INVOCATION and then (same mesh pair, in order) the INTERRUPT.
                inv = await next_invocation(callee)
                intr = await callee.recv(H.ANSWER_S)
                assert intr[:3] == [rw.INTERRUPT, inv[1], {"mode": "killnowait"}], intr
                await H.fence(callee)
            else:
                await caller.send([rw.CALL, 1, {}, proc])
                await next_invocation(callee)
                await callee.send([rw.WELCOME, 1, {}])
                await H.expect_abort(callee, "WELCOME is not valid")
                got = await caller.recv(H.ANSWER_S)
                assert got[0] == rw.ERROR and got[2] == 1 and got[4] == "wamp.error.canceled", got
                await H.fence(caller)
                await env.assert_freed(proc)
        finally:
            callee.close()
            caller.close()

    env.case(case())


# ====================================================================== small client limits

EMOJI = "\U0001F600"
SMALL_CASES = {
    # name: (serializer, message, expected: ("error"|"abort", URI, text prefix))
    "publish-invalid-topic": ("json", [rw.PUBLISH, 5, ACK, EMOJI * 300 + " x"], ("error", "wamp.error.invalid_uri",
                                                                                  "invalid topic")),
    "subscribe-invalid-topic": ("msgpack", [rw.SUBSCRIBE, 5, {}, EMOJI * 300 + " x"],
                                ("error", "wamp.error.invalid_uri", "invalid topic")),
    "register-invalid-procedure": ("cbor", [rw.REGISTER, 5, {}, EMOJI * 300 + " x"],
                                   ("error", "wamp.error.invalid_uri", "invalid procedure")),
    "call-no-such-procedure": ("json", [rw.CALL, 5, {}, "com." + EMOJI * 300],
                               ("error", "wamp.error.no_such_procedure", "no callee registered procedure")),
    "abort-cancel-mode": ("msgpack", [rw.CANCEL, 5, {"mode": EMOJI * 300}],
                          ("abort", H.PV, "CANCEL.Options.mode: unknown mode")),
    "abort-enc-algo": ("cbor", [rw.PUBLISH, 5, {"enc_algo": EMOJI * 300}, "com.t"],
                       ("abort", H.PV, "PUBLISH.Options.enc_algo: unknown algorithm")),
    "abort-error-uri": ("json", [rw.ERROR, rw.INVOCATION, 5, {}, EMOJI * 300 + " x"],
                        ("abort", H.PV, "ERROR.Error")),
    "router-result-too-big": ("json", [rw.CALL, 5, {}, "wamp.registration.list"],
                              ("error", "wamp.error.payload_size_exceeded", "the RESULT")),
}


async def small_session(env, ser, len_exp=0):
    c = await rw.RawSocketConn.open(port=env.router.port, serializer=ser, len_exp=len_exp)
    await c.send([rw.HELLO, "realm1", {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}])
    m = await c.recv(H.ANSWER_S)
    assert m[0] == rw.WELCOME, m
    c.session_id = m[1]
    return c


@pytest.mark.parametrize("name", list(SMALL_CASES))
def test_small_client_limit_still_gets_its_answer(env, name):
    # Goal (bug found here, fixed): a client that announced the smallest RawSocket limit
    # (512 bytes, L=0) still gets the ERROR or ABORT its message earns when the router's text
    # quotes 256 characters of its 4-byte-UTF-8 input (over 1 KiB): the text is cut to fit
    # (ending in "…") instead of the whole message being dropped as too big for the client
    # (which left the request unanswered forever, or closed the connection with no ABORT). A
    # router procedure's RESULT that does not fit is answered with ERROR
    # wamp.error.payload_size_exceeded instead of nothing.
    ser, msg, (what, uri, prefix) = SMALL_CASES[name]

    async def case():
        c, helper = await small_session(env, ser), None
        try:
            if name == "router-result-too-big":
                # Enough registrations that their IDs alone pass 512 bytes.
                helper = await rw.raw_session(env.router, "rs-msgpack")
                tag, n = uid(), 200
                regs = [rw.encode("msgpack", [rw.REGISTER, i, {}, f"test.hostile.small.{tag}.{i}"])
                        for i in range(1, n + 1)]
                await helper.send_raw(b"".join(rw.rawsocket_prefix(len(p)) + p for p in regs))
                for _ in range(n):
                    assert (await helper.recv(H.ANSWER_S))[0] == rw.REGISTERED
            await c.send(msg)
            raw = await c.recv_payload(H.ANSWER_S)
            assert len(raw) <= 512, len(raw)
            m = rw.decode(ser, raw)
            if what == "error":
                assert m[0] == rw.ERROR and m[2] == 5 and m[4] == uri, m
                assert m[5][0].startswith(prefix), m
                await H.fence(c)
            else:
                assert m[0] == rw.ABORT and m[2] == uri, m
                assert m[1]["message"].startswith(prefix) and m[1]["message"].endswith("…"), m
                rest, _ = await c.recv_closed(H.ANSWER_S)
                assert rest == []
        finally:
            c.close()
            if helper:
                helper.close()

    env.case(case())


def test_small_client_limit_killed_with_long_message(env):
    # Goal (same bug): a session killed through wamp.session.kill with a long message gets
    # its GOODBYE (the message cut to fit its 512-byte limit) instead of silence.
    async def case():
        victim = await small_session(env, "cbor")
        killer = await rw.raw_session(env.router, "rs-json")
        try:
            await killer.send([rw.CALL, 1, {}, "wamp.session.kill", [victim.session_id],
                               {"reason": "wamp.close.hostile", "message": EMOJI * 200}])
            assert (await killer.recv(H.ANSWER_S))[:2] == [rw.RESULT, 1]
            raw = await victim.recv_payload(H.ANSWER_S)
            m = rw.decode("cbor", raw)
            assert len(raw) <= 512 and m[0] == rw.GOODBYE and m[2] == "wamp.close.hostile", m
            assert m[1]["message"].endswith("…"), m
        finally:
            victim.close()
            killer.close()

    env.case(case())


# ====================================================================== transcoding

NAN = float("nan")
TRANSCODE_CASES = {
    # name: (publisher kind, PUBLISH Arguments, subscriber kind, Arguments the subscriber gets)
    "cbor-nan-inf-to-json": ("rs-cbor", [NAN, float("inf")], "ws-json", [None, None]),
    "msgpack-minus-inf-to-json": ("rs-msgpack", [float("-inf")], "rs-json", [None]),
    "cbor-tag-to-json": ("rs-cbor", [cbor2.CBORTag(1, 5)], "ws-json", [5]),
    "cbor-bignum-to-json-binary": ("rs-cbor", [(1 << 64) + 5], "ws-json", [b"\x01" + bytes(7) + b"\x05"]),
    "msgpack-u64-i64-to-json": ("rs-msgpack", [(1 << 64) - 1, -(1 << 63)], "ws-json", [(1 << 64) - 1, -(1 << 63)]),
    "json-bigint-to-msgpack": ("rs-json", b"[123456789012345678901234567890]", "rs-msgpack", [1.2345678901234568e+29]),
    "json-1e400-to-cbor": ("ws-json", b"[1e400]", "rs-cbor", [float("inf")]),
    "msgpack-binary-to-json": ("rs-msgpack", [b"\x00\xff"], "ws-json", [b"\x00\xff"]),
    "json-binary-to-cbor": ("rs-json", [b"\x00\xff"], "ws-cbor", [b"\x00\xff"]),
}


@pytest.mark.parametrize("name", list(TRANSCODE_CASES))
def test_transcoding_edges(env, name):
    # Goal: a payload that has no exact equivalent in the subscriber's serializer is still
    # delivered as a well-formed message of that serializer: NaN and infinities become null
    # in JSON (strict JSON has neither), CBOR tags are dropped to their content, a CBOR
    # bignum beyond 64 bits travels as its bytes (JSON binary), JSON numbers beyond 64 bits
    # become floats (1e400 an infinity); binary crosses JSON as "\0"+base64 both ways. The
    # JSON subscriber's bytes are checked with a strict parser.
    pub_kind, args, sub_kind, want = TRANSCODE_CASES[name]

    async def case():
        import json

        sub = await rw.raw_session(env.router, sub_kind)
        pub = await rw.raw_session(env.router, pub_kind)
        try:
            topic = f"test.hostile.transcode.{uid()}"
            await sub.subscribe(topic)
            if isinstance(args, bytes):
                data = b'[16,1,{"acknowledge":true},"' + topic.encode() + b'",' + args + b"]"
                await pub.send_payload(data)
            else:
                await pub.send([rw.PUBLISH, 1, ACK, topic, args])
            assert (await pub.recv(H.ANSWER_S))[:2] == [rw.PUBLISHED, 1]
            raw = await sub.recv_payload(H.ANSWER_S)
            if sub.serializer == "json":
                def refuse(c):
                    raise AssertionError(f"not strict JSON: {c} in {raw!r}")
                json.loads(raw, parse_constant=refuse)
            ev = rw.decode(sub.serializer, raw)
            assert ev[0] == rw.EVENT and ev[4] == want, ev
        finally:
            sub.close()
            pub.close()

    env.case(case())


def test_unrepresentable_payload_is_dropped_per_serializer_and_counted(env):
    # Goal (counted as peer input, fixed: it was counted as an encoder failure, "a bug if
    # non-zero", with a warning per drop): a MessagePack publication whose kwargs hold a
    # map with a boolean key is acknowledged and delivered to MessagePack subscribers;
    # JSON and CBOR subscribers (whose form of the payload has string keys only) do not get
    # it — their next event is the following publication — and each miss is counted in
    # shardbar_events_dropped_unencodable_total.
    from test_metrics import scrape, total

    async def case():
        topic = f"test.hostile.unrepresentable.{uid()}"
        subs = {k: await rw.raw_session(env.router, k) for k in ("ws-json", "rs-msgpack", "rs-cbor")}
        pub = await rw.raw_session(env.router, "rs-msgpack")
        try:
            for c in subs.values():
                await c.subscribe(topic)
            before = scrape(env.router.metrics_port)
            await pub.send_payload(mp([rw.PUBLISH, 1, ACK, topic, [], {"k": {True: 1}}]))
            await pub.send([rw.PUBLISH, 2, ACK, topic, ["next"]])
            assert (await pub.recv(H.ANSWER_S))[:2] == [rw.PUBLISHED, 1]
            second = await pub.recv(H.ANSWER_S)
            assert second[:2] == [rw.PUBLISHED, 2]
            for kind, c in subs.items():
                ev = await c.recv(H.ANSWER_S)
                if kind == "rs-msgpack":
                    assert ev[5] == {"k": {True: 1}}, ev
                    ev = await c.recv(H.ANSWER_S)
                assert ev[0] == rw.EVENT and ev[2] == second[2] and ev[4] == ["next"], (kind, ev)
            after = scrape(env.router.metrics_port)
            dropped = "shardbar_events_dropped_unencodable_total"
            assert total(after, dropped) - total(before, dropped) == 2
            fails = "shardbar_encode_failures_total"
            assert total(after, fails) == total(before, fails)
        finally:
            for c in list(subs.values()) + [pub]:
                c.close()

    env.case(case())


# ====================================================================== resources


async def heavy_subscribe_burst_is_bounded(env):
    # Goal: 5,000 SUBSCRIBEs to distinct topics in one write (more than the 4,096 pending
    # route changes a session may have) each get exactly one answer, SUBSCRIBED or ERROR
    # shardbar.error.limit_exceeded; the session still works; closing it frees them (the RSS
    # bound after the case).
    c = await rw.raw_session(env.router, "rs-msgpack")
    try:
        n, tag = 5000, uid()
        await c.send_raw(b"".join(rw.rawsocket_prefix(len(p)) + p for p in (
            rw.encode("msgpack", [rw.SUBSCRIBE, i, {}, f"test.burst.{tag}.{i}"]) for i in range(1, n + 1))))
        seen, ok = set(), 0
        for _ in range(n):
            m = await c.recv(H.ANSWER_S)
            if m[0] == rw.SUBSCRIBED:
                seen.add(m[1])
                ok += 1
            else:
                assert m[0] == rw.ERROR and m[4] == "shardbar.error.limit_exceeded", m
                seen.add(m[2])
        # The first 4096 are always admitted; later ones only once earlier ones finished.
        assert seen == set(range(1, n + 1)) and ok >= 4096, ok
        await H.fence(c)
    finally:
        c.close()


def test_subscribe_burst_is_bounded(env):
    env.case(heavy_subscribe_burst_is_bounded(env))


async def heavy_register_burst_is_bounded(env):
    # Goal: the same for 5,000 REGISTERs: REGISTERED or ERROR shardbar.error.limit_exceeded,
    # one answer each.
    c = await rw.raw_session(env.router, "ws-cbor")
    try:
        n, tag = 5000, uid()
        for i in range(1, n + 1):
            c.writer.write(rw.ws_frame(rw.OP_BINARY, rw.encode("cbor", [rw.REGISTER, i, {}, f"test.rburst.{tag}.{i}"])))
        await c.writer.drain()
        seen, ok = set(), 0
        for _ in range(n):
            m = await c.recv(H.ANSWER_S)
            if m[0] == rw.REGISTERED:
                seen.add(m[1])
                ok += 1
            else:
                assert m[0] == rw.ERROR and m[4] == "shardbar.error.limit_exceeded", m
                seen.add(m[2])
        assert seen == set(range(1, n + 1)) and ok >= 4096, ok
        await H.fence(c)
    finally:
        c.close()


def test_register_burst_is_bounded(env):
    env.case(heavy_register_burst_is_bounded(env))


async def heavy_many_pending_calls_then_caller_leaves(env):
    # Goal: 2,000 calls left pending on a callee that never answers, from a caller on the
    # other shard, are each delivered once; when the caller's transport drops, the callee
    # gets one INTERRUPT (killnowait) per invocation and the router holds nothing afterwards.
    callee = await rw.raw_session(env.router, "rs-msgpack", shard=0)
    proc = f"test.hostile.pending.{uid()}"
    await callee.register(proc)
    caller = await rw.raw_session(env.router, "rs-json", shard=1)
    try:
        n = 2000
        await caller.send_raw(b"".join(rw.rawsocket_prefix(len(p)) + p for p in (
            rw.encode("json", [rw.CALL, i, {}, proc, [i]]) for i in range(1, n + 1))))
        invs = set()
        for _ in range(n):
            m = await callee.recv(H.ANSWER_S)
            assert m[0] == rw.INVOCATION, m
            invs.add(m[1])
        assert len(invs) == n
        caller.close()
        interrupted = set()
        for _ in range(n):
            m = await callee.recv(H.ANSWER_S)
            assert m[0] == rw.INTERRUPT and m[2] == {"mode": "killnowait"}, m
            interrupted.add(m[1])
        assert interrupted == invs
        await H.fence(callee)
    finally:
        caller.close()
        callee.close()


def test_many_pending_calls_then_caller_leaves(env):
    env.case(heavy_many_pending_calls_then_caller_leaves(env))


async def heavy_testament_cap(env):
    # Goal: a session may keep 64 testaments (SESSION_TESTAMENTS_MAX): the 65th
    # wamp.session.add_testament gets ERROR wamp.error.testament_error; the session goes on.
    c = await rw.raw_session(env.router, "rs-json")
    try:
        n = 65
        await c.send_raw(b"".join(rw.rawsocket_prefix(len(p)) + p for p in (
            rw.encode("json", [rw.CALL, i, {}, "wamp.session.add_testament",
                               [f"test.hostile.testament.{i}", [i], {}]]) for i in range(1, n + 1))))
        for i in range(1, n + 1):
            m = await c.recv(H.ANSWER_S)
            if i < n:
                assert m[:2] == [rw.RESULT, i], m
            else:
                assert m[0] == rw.ERROR and m[2] == i and m[4] == "wamp.error.testament_error", m
        await H.fence(c)
    finally:
        c.close()


def test_testament_cap(env):
    env.case(heavy_testament_cap(env))


async def heavy_meta_gather_burst_is_bounded(env):
    # Goal: 40 wamp.session.count calls in one write (each a gather over both shards; a
    # session may have 16 in flight, META_GATHERS_PER_SESSION_MAX) get one answer each: a
    # RESULT (at least the first 16) or ERROR shardbar.error.limit_exceeded.
    c = await rw.raw_session(env.router, "ws-msgpack")
    try:
        n = 40
        calls = [rw.encode("msgpack", [rw.CALL, i, {}, "wamp.session.count"]) for i in range(1, n + 1)]
        await c.send_raw(b"".join(rw.ws_frame(rw.OP_BINARY, f) for f in calls))
        answered, results = set(), 0
        for _ in range(n):
            m = await c.recv(H.ANSWER_S)
            if m[0] == rw.RESULT:
                results += 1
                answered.add(m[1])
            else:
                assert m[0] == rw.ERROR and m[4] == "shardbar.error.limit_exceeded", m
                answered.add(m[2])
        assert answered == set(range(1, n + 1)) and results >= 16, results
        await H.fence(c)
    finally:
        c.close()


def test_meta_gather_burst_is_bounded(env):
    env.case(heavy_meta_gather_burst_is_bounded(env))


async def heavy_subscriber_that_stops_reading(env):
    # Goal: a subscriber that stops reading (4 KiB receive buffer) while 24 events of 512 KiB
    # are published to it is cut off once more than pending_bytes_max (8 MiB) is queued for
    # it: the publisher gets all its PUBLISHED, the stuck subscriber, once it reads again,
    # finds a prefix of the events in order, then GOODBYE shardbar.close.slow_consumer and
    # EOF; its registration is freed.
    stuck = await rw.RawSocketConn.open(port=env.router.port, serializer="msgpack", rcvbuf=4096)
    pub = await rw.raw_session(env.router, "rs-msgpack")
    try:
        await stuck.hello()
        topic = f"test.hostile.stuck.{uid()}"
        await stuck.subscribe(topic)
        await stuck.register(topic)
        n, blob = 24, b"b" * (512 * 1024)
        for i in range(1, n + 1):
            await pub.send([rw.PUBLISH, i, ACK, topic, [i, blob]])
        for i in range(1, n + 1):
            assert (await pub.recv(H.ANSWER_S))[:2] == [rw.PUBLISHED, i]
        seqs, goodbye = [], None
        while True:
            try:
                m = await stuck.recv(H.ANSWER_S)
            except rw.Closed:
                break
            if m[0] == rw.EVENT:
                seqs.append(m[4][0])
            else:
                goodbye = m
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < n, seqs
        assert goodbye is not None and goodbye[0] == rw.GOODBYE and goodbye[2] == "shardbar.close.slow_consumer", \
            goodbye
        await env.assert_freed(topic)
    finally:
        stuck.close()
        pub.close()


def test_subscriber_that_stops_reading(env):
    env.case(heavy_subscriber_that_stops_reading(env))


async def heavy_publish_flood_without_subscribers(env):
    # Goal: 20,000 unacknowledged PUBLISHes in one write cost nothing lasting: the fence
    # after them is answered, nothing else comes back.
    c = await rw.raw_session(env.router, "rs-cbor")
    try:
        p = rw.encode("cbor", [rw.PUBLISH, 1, {}, "test.hostile.flood.nobody", ["x" * 64]])
        await c.send_raw((rw.rawsocket_prefix(len(p)) + p) * 20000)
        await H.fence(c)
    finally:
        c.close()


def test_publish_flood_without_subscribers(env):
    env.case(heavy_publish_flood_without_subscribers(env))


def test_handshake_flood_is_capped(env):
    # Goal: with max_handshakes_per_shard = 32, 100 connections that do their RawSocket
    # handshake and never say HELLO get either the success reply or error 4 ("maximum
    # connection count reached"); at most 64 (2 shards x 32) succeed and at least 36 are
    # refused; once they close, a new session opens.
    async def case():
        conns, ok, refused = [], 0, 0
        try:
            for _ in range(100):
                r, w = await asyncio.open_connection("127.0.0.1", env.router.port)
                conns.append(w)
                w.write(bytes([0x7F, 0xF1, 0, 0]))
                await w.drain()
                reply = await asyncio.wait_for(r.readexactly(4), H.ANSWER_S)
                if reply == bytes([0x7F, 0xB1, 0, 0]):
                    ok += 1
                else:
                    assert reply == bytes([0x7F, 0x40, 0, 0]), reply.hex()
                    refused += 1
            assert ok <= 64 and refused >= 36, (ok, refused)
        finally:
            for w in conns:
                w.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + H.ANSWER_S
        while True:
            try:
                c = await rw.raw_session(env.router, "rs-json")
                c.close()
                break
            except rw.HandshakeRefused:
                assert loop.time() < deadline, "handshake places not given back"
                await asyncio.sleep(0.05)

    env.case(case())


@pytest.mark.parametrize("kind", ["rs-msgpack", "ws-json"])
def test_pre_session_trickle_is_cut(env, kind):
    # Goal (earlier finding): a frame announced at 1 MiB and trickled before HELLO is cut
    # once more than pre_session_bytes_max (128 KiB) arrived: RawSocket closed, WebSocket
    # close 1009; the router does not wait for the whole frame or the HELLO deadline.
    async def case():
        c = await rw.open_raw(env.router, kind)
        try:
            size = MAX - 16
            if kind.startswith("rs"):
                head = rw.rawsocket_prefix(size)
            else:
                head = bytes([0x81, 0xFF]) + struct.pack("!Q", size) + bytes(4)
            data = head + b"x" * (PRE_SESSION + 1 - len(head))
            for i in range(0, len(data), 16384):
                await c.send_raw(data[i:i + 16384])
            await H.expect_closed(c, 1009 if kind.startswith("ws") else None)
        finally:
            c.close()

    env.case(case())


@pytest.mark.parametrize("kind", ["rs-json", "ws-msgpack"])
def test_hello_over_64k_is_refused(env, kind):
    # Goal: a HELLO larger than 64 KiB (HELLO_MESSAGE_MAX_BYTES) is not decoded: ABORT
    # protocol_violation "a N-byte message before WELCOME".
    async def case():
        c = await rw.open_raw(env.router, kind)
        try:
            await c.send([rw.HELLO, "realm1", {"roles": {"caller": {}}, "pad": "p" * 70000}])
            await H.expect_abort(c, "-byte message before WELCOME")
        finally:
            c.close()

    env.case(case())


@pytest.mark.parametrize("name,ser,msg,outcome", [
    ("options-over-256k", "msgpack", [rw.PUBLISH, 1, {"pad": "p" * 270000}, "com.t"],
     Abort("dict encoded in more than 262144 bytes")),
    ("options-40000-values", "cbor", [rw.PUBLISH, 1, {"pad": [0] * 40000}, "com.t"],
     Abort("more than 32768 values in one message")),
    ("options-20000-keys-ok", "msgpack", [rw.PUBLISH, 1, {**{f"_k{i}": i for i in range(20000)}, **ACK}, "com.t"],
     Reply(rw.PUBLISHED)),
    ("payload-1000-keys-ok", "json", [rw.PUBLISH, 1, ACK, "com.t", [], {f"k{i}": i for i in range(1000)}],
     Reply(rw.PUBLISHED)),
    ("payload-near-max-ok", "msgpack", [rw.PUBLISH, 1, ACK, "com.t", ["x" * (MAX - 100)]], Reply(rw.PUBLISHED)),
    ("details-over-256k-in-error", "json", [rw.ERROR, rw.INVOCATION, 5, {"pad": "p" * 270000}, "com.err"],
     Abort("dict encoded in more than 262144 bytes")),
], ids=lambda x: x if isinstance(x, str) and x.count("-") > 0 else "")
def test_huge_dicts(env, name, ser, msg, outcome):
    # Goal (earlier findings): Options/Details are bounded — over 256 KiB encoded or over
    # 32,768 values is ABORT naming the bound — while a dict of 20,000 keys within the
    # bounds is decoded (in linear time) and served, and a payload is not bounded by them.
    async def case():
        await session_case(env, f"rs-{ser}", [msg], outcome)

    env.case(case())


async def heavy_many_sessions_come_and_go(env):
    # Goal: 200 sessions opened at once, each with a subscription and a registration, then
    # dropped without GOODBYE, leave the router serving (and under the RSS bound).
    async def one(i):
        c = await rw.raw_session(env.router, ["rs-json", "ws-msgpack", "rs-cbor", "unix-json"][i % 4])
        await c.subscribe(f"test.hostile.many.{i}")
        await c.register(f"test.hostile.many.{uid()}")
        return c

    conns = []
    for batch in range(0, 200, 20):  # 20 at a time: under max_handshakes_per_shard
        conns += await asyncio.gather(*(one(i) for i in range(batch, batch + 20)))
    for c in conns:
        c.close()


def test_many_sessions_come_and_go(env):
    env.case(heavy_many_sessions_come_and_go(env), timeout=90)


# The stuck subscriber is not among them: its 512 KiB events leave the allocator holding a
# varying 30-50 MiB (it levels off over rounds, measured to 30), which would drown the
# signal; that its queue is freed is test_nothing_left_behind's pending_out_bytes == 0.
HEAVY = [heavy_subscribe_burst_is_bounded, heavy_register_burst_is_bounded, heavy_many_pending_calls_then_caller_leaves,
         heavy_testament_cap, heavy_meta_gather_burst_is_bounded, heavy_publish_flood_without_subscribers,
         heavy_many_sessions_come_and_go]


def test_heavy_cases_again_do_not_grow_rss(env):
    # Goal: the leak check. After one more warm-up round of the heavy cases, four rounds of
    # all of them must not raise the floor of the router's RSS: the lowest RSS seen after a
    # case of the last round is within RSS_REPEAT_SLACK of the lowest of the first. (RSS
    # after one case swings by MiBs with what the allocator keeps, so single readings are
    # not compared.) Memory a case kept — 5,000 routes, 2,000 calls, 200 sessions, 64
    # testaments — would lift the floor by that much every round.
    for heavy in HEAVY:
        env.case(heavy(env), timeout=90)
    floors = []
    for _ in range(int(os.environ.get("HOSTILE_HEAVY_ROUNDS", "4"))):
        low = None
        for heavy in HEAVY:
            env.case(heavy(env), timeout=90)
            rss = env.router.rss_bytes()
            low = rss if low is None else min(low, rss)
        floors.append(low)
    growth = floors[-1] - floors[0]
    env.floors = floors
    assert growth < RSS_REPEAT_SLACK, f"RSS floor per round (MiB): {[round(f / 2**20, 1) for f in floors]}"


def test_nothing_left_behind(env):
    # Goal: after every case above, the router holds exactly what the three module sessions
    # need — the state-leak check behind "the session is cleaned up": no connection, handshake
    # place, login, session, testament or queued byte of a case survives it, and each shard's
    # replica has exactly the witness's one subscription and one registration; and no input
    # made the router fail to encode a message of its own (encode_failures_total, "a bug if
    # non-zero"). Read from
    # /metrics; the last closes are noticed a moment after the client's, so this waits (5 s
    # at most) for the figures to settle.
    from test_metrics import scrape, total

    want = {"shardbar_connections_admitted": 3, "shardbar_connections": 3, "shardbar_handshakes": 0,
            "shardbar_sessions": 3, "shardbar_auth_pending": 0, "shardbar_testaments_stored": 0,
            "shardbar_pending_out_bytes": 0, "shardbar_subscriptions": 2, "shardbar_registrations": 2,
            "shardbar_encode_failures_total": 0}

    async def case():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + H.ANSWER_S
        while True:
            m = scrape(env.router.metrics_port)
            got = {name: total(m, name) for name in want}
            if got == want or loop.time() > deadline:
                break
            await asyncio.sleep(0.1)
        assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}

    env.case(case())
