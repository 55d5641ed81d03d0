"""Hostile peers and long runs: the runtime's caps on connections, on what a connection may
send before its session exists, on PONGs, and what accept does out of file descriptors.

Every cap is configured small here (``[limits]``), hit on purpose, and then checked three
ways: what the peer sees (RawSocket error 4, HTTP 503, a close), the counter in ``/metrics``
(scraped on the metrics listener) and that the router goes on serving others.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import struct

import pytest

import rawwamp as rw
from test_metrics import scrape, total

ANSWER_S = 5.0  # a router answers in milliseconds; 5 s means "never"
REFUSED = "shardbar_connections_refused_total"


async def rs_handshake(port: int, source: str = "127.0.0.1"):
    """A RawSocket handshake (JSON) from ``source``; returns (reader, writer, reply octets,
    b"" if the router closed instead)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), ANSWER_S)
    writer.write(bytes([0x7F, 0xF1, 0, 0]))
    await writer.drain()
    try:
        reply = await asyncio.wait_for(reader.readexactly(4), ANSWER_S)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        reply = b""
    return reader, writer, reply


def accepted(reply: bytes) -> bool:
    return len(reply) == 4 and reply[0] == 0x7F and reply[1] & 0x0F == 1


async def ws_upgrade_status(port: int) -> int:
    key = base64.b64encode(os.urandom(16)).decode()
    status, _, _ = await rw.http_exchange(port, rw.ws_upgrade_request(port, ["wamp.2.json"], key))
    return status


async def eventually_accepted(port: int, source: str = "127.0.0.1"):
    """A RawSocket handshake that succeeds within ANSWER_S (places are given back when the
    router notices a close, a moment after the client's)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_S
    while True:
        r, w, reply = await rs_handshake(port, source)
        if accepted(reply):
            return r, w
        w.close()
        assert loop.time() < deadline, f"still refused after {ANSWER_S}s: {reply.hex()}"
        await asyncio.sleep(0.05)


async def test_max_connections_is_router_wide_and_refuses_cleanly(make_router):
    # Goal: with `max_connections = 4` the router holds 4 connections whatever shard the
    # kernel puts them on; the fifth is refused with an answer its client understands
    # (RawSocket error 4 "maximum connection count reached", HTTP 503 to a WebSocket
    # upgrade), counted by reason; closing one lets a new one in.
    # Method: 4 raw sessions (spread over both shards by the kernel), then one RawSocket
    # handshake and one WebSocket upgrade, a scrape, a close and a retry.
    router = make_router(name="maxconn", limits={"ping_interval_ms": 0, "max_connections": 4}, unix=False)
    held = [await rw.raw_session(router, "rs-json") for _ in range(2)]
    held += [await rw.raw_session(router, "ws-json") for _ in range(2)]
    _, w, reply = await rs_handshake(router.port)
    w.close()
    assert reply == bytes([0x7F, 0x40, 0, 0]), reply.hex()
    assert await ws_upgrade_status(router.port) == 503
    m = scrape(router.metrics_port)
    assert total(m, REFUSED, reason="max_connections") == 2, m
    assert total(m, "shardbar_connections_admitted") == 4
    held.pop().close()
    _, w = await eventually_accepted(router.port)
    w.close()
    for c in held:
        c.close()


async def test_max_connections_per_ip_counts_each_source_address(make_router):
    # Goal: `max_connections_per_ip = 2` refuses a third connection from 127.0.0.1 (error 4,
    # counted as max_connections_per_ip) while 127.0.0.2 still gets in.
    # Method: two handshakes from 127.0.0.1 held open, a third from it, one from 127.0.0.2.
    router = make_router(name="perip", limits={"ping_interval_ms": 0, "max_connections_per_ip": 2}, unix=False)
    held = [await rs_handshake(router.port) for _ in range(2)]
    assert all(accepted(reply) for _, _, reply in held)
    _, w, reply = await rs_handshake(router.port)
    w.close()
    assert reply == bytes([0x7F, 0x40, 0, 0]), reply.hex()
    _, w2, reply2 = await rs_handshake(router.port, source="127.0.0.2")
    assert accepted(reply2), reply2.hex()
    assert total(scrape(router.metrics_port), REFUSED, reason="max_connections_per_ip") == 1
    for _, w, _ in held:
        w.close()
    w2.close()


async def test_handshake_cap_counts_connections_until_welcome(make_router):
    # Goal: `max_handshakes_per_shard = 2` bounds the connections without a session: one
    # that sent nothing and one that did its RawSocket handshake but no HELLO fill the shard,
    # and a third is refused (RawSocket error 4, HTTP 503); sessions past WELCOME hold no
    # place; once a silent one closes, a newcomer gets in.
    # Method: one shard; five established sessions first (each gave its place back at
    # WELCOME), then the two silent connections, the refused attempts, a close, a retry.
    router = make_router(name="handshakes", shards=1, unix=False,
                         limits={"ping_interval_ms": 0, "max_handshakes_per_shard": 2})
    sessions = [await rw.raw_session(router, kind) for kind in ("rs-json", "ws-json", "rs-cbor", "ws-msgpack", "rs-json")]
    _, silent_writer = await asyncio.open_connection("127.0.0.1", router.port)
    no_hello = await rw.RawSocketConn.open(port=router.port, serializer="json")
    await asyncio.sleep(0.2)  # let the router accept the silent connection
    _, w, reply = await rs_handshake(router.port)
    w.close()
    assert reply == bytes([0x7F, 0x40, 0, 0]), reply.hex()
    assert await ws_upgrade_status(router.port) == 503
    m = scrape(router.metrics_port)
    assert total(m, REFUSED, reason="max_handshakes_per_shard") == 2, m
    assert total(m, "shardbar_handshakes") == 2
    silent_writer.close()
    _, w = await eventually_accepted(router.port)
    w.close()
    for c in sessions + [no_hello]:
        c.close()


async def test_bytes_before_welcome_are_bounded(make_router):
    # Goal: a peer that trickles a huge frame before its session exists is closed once it
    # has sent more than `pre_session_bytes_max` (RawSocket: closed; WebSocket: close 1009),
    # counted; an established session may still send a message far larger than that.
    # Method: after the transport handshake, a frame header announcing 16 MiB, then its
    # payload in 8 KiB pieces until one byte more than the 64 KiB budget was sent (exactly:
    # bytes the router never reads would turn its close into a reset); the router must close
    # within 5 s (it used to wait for the whole frame or the 10 s HELLO deadline). Then a
    # session publishes 1 MiB with acknowledge.
    router = make_router(name="presession", limits={"ping_interval_ms": 0}, unix=False)
    raw = await rw.RawSocketConn.open(port=router.port, serializer="msgpack")
    ws = await rw.WebSocketConn.open(router.port, "json")
    size = (1 << 24) - 1
    # A zero mask key keeps the text payload valid UTF-8 once unmasked (the decoder checks
    # text frames as they arrive and would close early on garbage).
    ws_head = rw.ws_frame(rw.OP_TEXT, b"")[:1] + bytes([0xFF]) + struct.pack("!Q", size) + bytes(4)
    budget = 64 * 1024
    for c, head in ((raw, rw.rawsocket_prefix(size)), (ws, ws_head)):
        data = head + b"x" * (budget + 1 - len(head))
        for i in range(0, len(data), 8192):
            await c.send_raw(data[i:i + 8192])
            await asyncio.sleep(0.005)
    assert await asyncio.wait_for(raw.wait_eof(ANSWER_S), ANSWER_S + 1) == b""
    with pytest.raises(rw.Closed) as e:
        await ws.recv(ANSWER_S)
    assert e.value.code == 1009, (e.value.code, e.value.reason)
    assert total(scrape(router.metrics_port), "shardbar_pre_session_budget_exceeded_total") == 2
    s = await rw.raw_session(router, "rs-msgpack")
    m = await s.call_expect([rw.PUBLISH, 1, {"acknowledge": True}, "test.presession.big", ["y" * (1 << 20)]], rw.PUBLISHED)
    assert m[0] == rw.PUBLISHED, m
    s.close()


async def test_big_rawsocket_ping_is_not_echoed(make_router):
    # Goal: the router echoes RawSocket PINGs of up to 125 bytes and no larger ones (a 1 MiB
    # PONG used to be written, outside every budget); an unanswered PING is counted and the
    # session goes on.
    # Method: an established RawSocket session sends PINGs of 1 MiB, 126 and 125 bytes, then
    # one of 8 bytes; the only PONGs to come back are the 125- and 8-byte ones, in order.
    router = make_router(name="bigping", limits={"ping_interval_ms": 0}, unix=False)
    c = await rw.raw_session(router, "rs-msgpack")
    pings = [b"a" * (1 << 20), b"b" * 126, b"c" * 125, b"d" * 8]
    for p in pings:
        await c.send_frame(p, 1)
    got = [await c.recv_frame(ANSWER_S) for _ in range(2)]
    assert got == [(2, b"c" * 125), (2, b"d" * 8)], [(t, len(p)) for t, p in got]
    m = scrape(router.metrics_port)
    assert total(m, "shardbar_pings_unanswered_total", reason="too_big") == 2, m
    sub = await c.subscribe("test.bigping.alive")
    assert sub > 0
    c.close()


@pytest.mark.parametrize("kind", ["rs-json", "ws-json"])
async def test_ping_flood_gets_bounded_answers(make_router, kind):
    # Goal: a peer that floods PINGs cannot grow the router's control buffer: PONGs beyond
    # the connection's control budget are not written, and every PING is either answered or
    # counted unanswered; the session still works afterwards.
    # Method: 4000 PINGs of 125 bytes in one write (about 500 KB), then a SUBSCRIBE; count
    # the PONGs that arrive before SUBSCRIBED and add the counter.
    router = make_router(name="pingflood", limits={"ping_interval_ms": 0}, unix=False)
    c = await rw.raw_session(router, kind)
    n, payload = 4000, b"p" * 125
    if kind.startswith("rs"):
        burst = (rw.rawsocket_prefix(len(payload), 1) + payload) * n
    else:
        burst = b"".join(rw.ws_frame(rw.OP_PING, payload) for _ in range(n))
    await c.send_raw(burst)
    await c.send([rw.SUBSCRIBE, 1, {}, "test.pingflood.alive"])
    pongs = 0
    while True:
        if kind.startswith("rs"):
            ftype, data = await c.recv_frame(ANSWER_S)
            if ftype == 2:
                pongs += 1
                continue
        else:
            fin, op, data = await c.recv_ws_frame(ANSWER_S)
            if op == rw.OP_PONG:
                pongs += 1
                continue
        assert rw.decode("json", data)[0] == rw.SUBSCRIBED
        break
    unanswered = total(scrape(router.metrics_port), "shardbar_pings_unanswered_total", reason="budget")
    assert pongs + unanswered == n, (pongs, unanswered)
    assert unanswered > 0 and pongs > 0, (pongs, unanswered)
    c.close()


@pytest.mark.async_timeout(90)
async def test_out_of_file_descriptors_accept_pauses_and_recovers(make_router):
    # Goal: when the process runs out of file descriptors, accept neither spins nor crashes:
    # it pauses, counts each failure (shardbar_accept_errors_total{reason="fd_limit"}), logs
    # at most one line per 10 s per shard, and serves again once descriptors are free.
    # Method: a one-shard router under RLIMIT_NOFILE 64 (it warns at start that this is below
    # max_connections); open 100 idle TCP connections, hold them 1.5 s while sampling the
    # router's CPU time, close them, then scrape and open a session.
    router = low_nofile_router("emfile")
    try:
        assert "RLIMIT_NOFILE is below limits.max_connections" in router.log_text()
        conns = []
        for _ in range(100):
            conns.append(await asyncio.open_connection("127.0.0.1", router.port))
        cpu0 = cpu_seconds(router.pid)
        await asyncio.sleep(1.5)
        cpu = cpu_seconds(router.pid) - cpu0
        assert router.alive(), router.log_text()
        assert cpu < 0.5, f"router used {cpu:.2f} s of CPU in 1.5 s while out of descriptors"
        for _, w in conns:
            w.close()
        m = await eventually(lambda: scrape(router.metrics_port))
        assert total(m, "shardbar_accept_errors_total", reason="fd_limit") >= 1, m
        assert router.log_text().count("accept failed") <= 2, router.log_text()
        s = await rw.raw_session(router, "rs-json")
        s.close()
    finally:
        router.cleanup()


@pytest.mark.async_timeout(90)
async def test_out_of_file_descriptors_refuses_cleanly_and_counts(make_router):
    # Goal: a client arriving while the router is out of file descriptors is answered at
    # once — RawSocket error 4, the same "at the connection limit" as a full
    # max_connections — instead of waiting in the listen backlog until its connect times
    # out (the shard lends its spare descriptor to accept and refuse it); each one counted
    # in shardbar_connections_refused_total{reason="fd_limit"}; the router does not spin
    # and serves again once descriptors are free.
    # Method: a one-shard router under RLIMIT_NOFILE 64; 100 clients each send a RawSocket
    # handshake at once and keep what they get. Every one must get an answer: accepted
    # (while descriptors last) or error 4.
    router = low_nofile_router("emfile-refuse")
    try:
        cpu0 = cpu_seconds(router.pid)
        results = await asyncio.gather(*(rs_handshake(router.port) for _ in range(100)))
        replies = [reply for _, _, reply in results]
        ok = sum(accepted(r) for r in replies)
        refused = sum(r == bytes([0x7F, 0x40, 0, 0]) for r in replies)
        assert ok + refused == 100, [r.hex() for r in replies]
        assert ok > 10 and refused > 10, (ok, refused)
        assert router.alive(), router.log_text()
        cpu = cpu_seconds(router.pid) - cpu0
        assert cpu < 2.0, f"router used {cpu:.2f} s of CPU refusing {refused} connections"
        for _, w, _ in results:
            w.close()
        m = await eventually(lambda: scrape(router.metrics_port))
        assert total(m, REFUSED, reason="fd_limit") == refused, m
        # Descriptors come back as the router notices the closes.
        _, w = await eventually_accepted(router.port)
        w.close()
        s = await rw.raw_session(router, "rs-json")
        s.close()
    finally:
        router.cleanup()


def low_nofile_router(name: str):
    """A started one-shard router (TCP only, no liveness pings) under RLIMIT_NOFILE 64."""
    from conftest import Router

    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    router = Router(name=name, shards=1, unix=False, limits={"ping_interval_ms": 0})
    router.start(preexec_fn=low_nofile)
    return router


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def eventually(f, timeout: float = 10.0):
    """``f()`` once it stops raising (the router accepts again once it noticed the closes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return f()
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)
