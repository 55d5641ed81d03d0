"""Liveness: WebSocket ping / RawSocket PING every ``ping_interval_ms``; a connection that does
not answer within ``ping_timeout_ms`` is closed and its registrations are freed, so a
restarted callee can register the same procedure again (the stale-registration problem
of routers without liveness checks).

Autobahn|Python's asyncio RawSocket transport cannot take a RawSocket PING
(``PrefixProtocol.ping`` raises NotImplementedError and the connection drops), so the router
only pings RawSocket peers that pinged it first (``rawsocket_ping = "auto"``, the default)
and relies on TCP keepalive for the others. ``lrouter`` runs with ``rawsocket_ping =
"always"`` to test PING reaping on every transport; ``arouter`` runs the default. Time is inherent here: the router pings on a timer. The router below pings after 300 ms of
silence and waits 300 ms for the answer; the tests allow 10 s for what should take ~0.6 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import subprocess
import sys
import uuid

import pytest
from autobahn.wamp.exception import ApplicationError

import rawwamp as rw
from abclient import Pool

INTERVAL_MS = 300
TIMEOUT_MS = 300
AUTO_TIMEOUT_MS = 2000


@pytest.fixture(scope="module")
def lrouter():
    from conftest import Router

    limits = {"ping_interval_ms": INTERVAL_MS, "ping_timeout_ms": TIMEOUT_MS, "rawsocket_ping": "always"}
    r = Router(name="liveness", limits=limits)
    r.start()
    yield r
    r.cleanup()


@pytest.fixture(scope="module")
def arouter():
    from conftest import Router

    # A generous ping timeout: these tests are about *whether* a peer is pinged, and on a
    # loaded host a 300 ms answer deadline also reaped the Autobahn WebSocket caller that
    # only serves as the other end (seen once in CI as a call that never returned).
    r = Router(name="liveness-auto", limits={"ping_interval_ms": INTERVAL_MS, "ping_timeout_ms": AUTO_TIMEOUT_MS})
    r.start()
    yield r
    r.cleanup()


def uid() -> str:
    return uuid.uuid4().hex[:12]


async def register_retrying(session, proc, within: float):
    """Register, retrying on procedure_already_exists for at most ``within`` seconds; returns
    the number of refused attempts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    refused = 0
    while True:
        try:
            await session.register(lambda: "new owner", proc)
            return refused
        except ApplicationError as e:
            assert e.error == "wamp.error.procedure_already_exists", e
            refused += 1
            assert loop.time() < deadline, f"{proc} still registered after {within}s"
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", ["rs-msgpack", "ws-json", "unix-cbor"])
async def test_silent_callee_is_reaped_and_procedure_freed(lrouter, kind):
    # Goal: a callee that stops answering pings is closed after about
    # ping_interval + ping_timeout, and its procedure can then be registered by another
    # client (within 2 s; test_reaped_callee_is_gone_when_its_socket_closes is stricter).
    # Method: a raw callee registers, then reads without answering pings until the router
    # closes it (recording how many pings it saw and how long it took); then an Autobahn
    # session registers the same procedure and a caller reaches the new owner.
    proc = f"test.live.{uid()}"
    async with Pool(lrouter) as pool:
        silent = pool.track_raw(await rw.open_raw(lrouter, kind))
        await silent.hello()
        await silent.register(proc)
        silent.answer_pings = False
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        got, _ = await silent.recv_closed(timeout=10)
        elapsed = loop.time() - t0
        assert got == [], got
        assert silent.pings_seen >= 1, "closed without being pinged"
        assert elapsed >= (INTERVAL_MS + TIMEOUT_MS) / 1000 * 0.8, f"closed after only {elapsed:.2f}s"
        assert elapsed < 10
        newcomer = await pool.connect("ws-msgpack")
        await register_retrying(newcomer, proc, within=2)
        caller = await pool.connect("ws-json")
        assert await caller.call(proc) == "new owner"
        assert "liveness ping timed out" in lrouter.log_text()


async def test_callee_that_stops_reading_is_reaped(lrouter):
    # Goal: a callee that stops reading altogether (half-open peer) is reaped too.
    # Method: raw RawSocket callee registers and never reads again; another session retries
    # REGISTER (bounded, 10 s) until the router has freed the procedure; it must not be
    # freed before about one ping interval.
    proc = f"test.live.stuck.{uid()}"
    async with Pool(lrouter) as pool:
        silent = pool.track_raw(await rw.raw_session(lrouter, "rs-json"))
        await silent.register(proc)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        newcomer = await pool.connect("ws-cbor")
        refused = await register_retrying(newcomer, proc, within=10)
        elapsed = loop.time() - t0
        assert refused >= 1 and elapsed >= INTERVAL_MS / 1000 * 0.8, "freed before any ping could time out"
        caller = await pool.connect("ws-cbor")
        assert await caller.call(proc) == "new owner"


async def test_responsive_clients_stay_connected(lrouter):
    # Goal: clients that answer pings are not reaped, however idle: a raw RawSocket client, a
    # raw WebSocket client and an Autobahn WebSocket session stay usable after five pings.
    # Method: the raw clients read (answering pings) until each has seen five pings, which
    # takes at least five ping intervals of silence; then every one does an RPC round trip.
    proc = f"test.live.ok.{uid()}"
    async with Pool(lrouter) as pool:
        callee = await pool.connect("ws-json")
        await callee.register(lambda: "alive", proc)
        raws = [pool.track_raw(await rw.raw_session(lrouter, k)) for k in ("rs-msgpack", "ws-cbor")]

        await asyncio.gather(*(asyncio.wait_for(_read_pings(c, 5), 20) for c in raws))
        for c in raws:
            m = await c.call_expect([rw.CALL, c.request_id(), {}, proc, []], rw.RESULT)
            assert m[0] == rw.RESULT and m[3] == ["alive"], m
        caller = await pool.connect("ws-msgpack")
        assert await caller.call(proc) == "alive"
        assert callee.is_attached()


async def _read_pings(c, n):
    """Read, answering pings, until ``n`` pings were seen; any WAMP message is unexpected."""
    while c.pings_seen < n:
        ftype_payload = None
        if isinstance(c, rw.RawSocketConn):
            ftype, payload = await c.recv_frame(10)
            if ftype == 1:
                c.pings_seen += 1
                await c.send_frame(payload, 2)
                continue
            ftype_payload = (ftype, payload)
        else:
            fin, op, payload = await c.recv_ws_frame(10)
            if op == rw.OP_PING:
                c.pings_seen += 1
                await c.send_raw(rw.ws_frame(rw.OP_PONG, payload))
                continue
            ftype_payload = (op, payload)
        raise AssertionError(f"unexpected frame while idle: {ftype_payload!r}")


async def test_reaped_callee_is_gone_when_its_socket_closes(lrouter):
    # Goal: when the router closes a connection for a ping timeout, the session is already
    # over: a client that sees the EOF and at once registers the procedure elsewhere must not
    # get procedure_already_exists (for protocol violations the router ends the session
    # before closing; a reaped session should be no different).
    # Method: 64 silent callees (plain sockets: handshake, HELLO, REGISTER, then never
    # answer a PING) on random shards, each with its own procedure, and two raw sessions (one
    # per shard, connected beforehand). An event-loop reader callback on each callee socket
    # sends, the moment it sees EOF, a pre-encoded REGISTER of that callee's procedure from
    # the session on the other shard. The window is narrow (the router's close completing vs
    # the client's reaction), so 64 tries run concurrently while two busy-loop processes
    # (at most 10 s each, stopped by PID) contend for the CPUs as on a loaded host; on an
    # idle host the window is rarely hit.
    loop = asyncio.get_running_loop()
    hogs = [subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.DEVNULL) for _ in range(2)]
    try:
        await _reap_and_take(lrouter, loop)
    finally:
        for h in hogs:
            h.terminate()
        for h in hogs:
            h.wait(10)


HOG = "import time\nend = time.monotonic() + 10\nwhile time.monotonic() < end:\n    pass\n"


async def _reap_and_take(lrouter, loop):
    async with Pool(lrouter) as pool:
        newcomers = {s: pool.track_raw(await rw.raw_session(lrouter, "rs-msgpack", shard=s)) for s in (0, 1)}
        answers: dict[int, str] = {}
        all_answered = asyncio.Event()
        n = 64

        async def collect(c):
            # Reads (answering pings) and records REGISTERED / ERROR by request ID.
            while len(answers) < n:
                m = await c.recv(15)
                if m[0] == rw.REGISTERED:
                    answers[m[1]] = "registered"
                elif m[0] == rw.ERROR and m[1] == rw.REGISTER:
                    answers[m[2]] = m[4]
                if len(answers) >= n:
                    all_answered.set()

        collectors = [asyncio.ensure_future(collect(c)) for c in newcomers.values()]
        callees = []
        try:
            for i in range(n):
                procedure = f"test.live.gone.{uid()}"
                sock, shard = await _plain_callee(lrouter.port, procedure)
                callees.append(sock)
                request = 1000 + i
                frame = rw.encode("msgpack", [rw.REGISTER, request, {}, procedure])
                frame = rw.rawsocket_prefix(len(frame)) + frame
                target = newcomers[1 - shard]

                def on_readable(sock=sock, frame=frame, target=target):
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        return
                    except OSError:
                        data = b""
                    if data:
                        return  # a PING (or the tail of one): never answered
                    loop.remove_reader(sock.fileno())
                    target.writer.write(frame)

                loop.add_reader(sock.fileno(), on_readable)
            try:
                await asyncio.wait_for(all_answered.wait(), 20)
            except asyncio.TimeoutError:
                raise AssertionError(f"only {len(answers)} of {n} REGISTERs answered in 20 s") from None
        finally:
            for c in collectors:
                c.cancel()
            for sock in callees:
                with contextlib.suppress(Exception):
                    loop.remove_reader(sock.fileno())
                sock.close()
        refused = {r: e for r, e in answers.items() if e != "registered"}
        assert not refused, (
            f"{len(refused)} of {n} procedures were still registered right after the router had closed their "
            f"reaped callee's socket ({set(refused.values())})")


async def _plain_callee(port: int, procedure: str):
    """A non-blocking socket that did the RawSocket handshake, HELLO and REGISTER; returns
    (socket, shard). Nothing reads it afterwards except the test's own callback."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 10)

    async def exactly(k):
        buf = b""
        while len(buf) < k:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, k - len(buf)), 10)
            if not chunk:
                raise AssertionError("router closed a callee during setup")
            buf += chunk
        return buf

    async def message():
        while True:
            (word,) = struct.unpack("!I", await exactly(4))
            payload = await exactly(word & 0xFFFFFF)
            if (word >> 24) & 0x07 == 0:
                return rw.decode("msgpack", payload)

    await loop.sock_sendall(sock, bytes([0x7F, 0xF2, 0, 0]))
    await exactly(4)
    shard = None
    for msg in ([rw.HELLO, "realm1", {"roles": rw.CLIENT_ROLES}], [rw.REGISTER, 1, {}, procedure]):
        data = rw.encode("msgpack", msg)
        await loop.sock_sendall(sock, rw.rawsocket_prefix(len(data)) + data)
        m = await message()
        if m[0] == rw.WELCOME:
            shard = m[2]["authextra"]["_shard"]
    assert m[0] == rw.REGISTERED, m
    return sock, shard


async def test_default_leaves_autobahn_rawsocket_sessions_alone(arouter):
    # Goal: with the default rawsocket_ping = "auto", an idle Autobahn|Python asyncio
    # RawSocket session (which cannot take a RawSocket PING) is never pinged, so it survives
    # many ping intervals and still serves calls.
    # Method: an Autobahn RawSocket callee registers and stays idle for ten ping intervals
    # plus one timeout (a pinged Autobahn RawSocket session dies at its first PING) — time
    # is the subject here — then a WebSocket caller calls it.
    proc = f"test.live.auto.{uid()}"
    async with Pool(arouter) as pool:
        callee = await pool.connect("rs-msgpack")
        await callee.register(lambda: "still here", proc)
        await asyncio.sleep((10 * INTERVAL_MS + AUTO_TIMEOUT_MS) / 1000)
        caller = await pool.connect("ws-json")
        assert await caller.call(proc) == "still here"


async def test_default_pings_rawsocket_peers_that_ping(arouter):
    # Goal: with the default, a RawSocket peer that sent a PING has shown it speaks
    # PING/PONG: from then on it is pinged like a WebSocket peer, and reaped (its procedure
    # freed) when it stops answering.
    # Method: a raw RawSocket callee sends one PING, reads its PONG, registers, then stops
    # answering pings; it must see at least one PING and be closed within 10 s, and another
    # session can then register the procedure.
    proc = f"test.live.autoping.{uid()}"
    async with Pool(arouter) as pool:
        silent = pool.track_raw(await rw.open_raw(arouter, "rs-msgpack"))
        await silent.hello()
        await silent.send_frame(b"are you there", 1)
        ftype, payload = await silent.recv_frame(5)
        assert (ftype, payload) == (2, b"are you there"), (ftype, payload)
        await silent.register(proc)
        silent.answer_pings = False
        got, _ = await silent.recv_closed(timeout=10)
        assert got == [], got
        assert silent.pings_seen >= 1, "closed without being pinged"
        newcomer = await pool.connect("ws-msgpack")
        await register_retrying(newcomer, proc, within=2)
