"""Machinery of the hostile-input suite (test_hostile_suite.py): one event loop that outlives
the test functions, the outcomes a case may expect, and the check run after every case.

Autobahn sessions are bound to the event loop they were made in, and the conftest runs each
``async def`` test in a fresh loop. To keep one pair of witness sessions for a whole module
(instead of connecting, and placing on a shard, four new sessions per case), the suite's
tests are plain functions that hand their coroutine to ``Env.run``: a loop in a thread of
its own that lives as long as the module's router.

An *outcome* is what a case must see, exactly:

- ``Abort(text)``: the next message is ABORT ``wamp.error.protocol_violation`` (or ``uri``)
  whose ``Details.message`` contains ``text``, then the router closes the transport
  (a WebSocket with close 1000) with nothing after the ABORT;
- ``Err(uri)``: the next message is ERROR answering the request with ``uri``; the session
  goes on (a fence proves it);
- ``Reply(code)``: the next message is the request's own answer (``code``, same request ID);
  the session goes on;
- ``Ignored()``: nothing comes back, and the session goes on: the fence (an acknowledged
  PUBLISH) is answered first;
- ``WsClose(code)``: no WAMP message, a WebSocket Close with ``code``, then EOF;
- ``Eof()``: no WAMP message and the router closes the transport (RawSocket has no close
  frame), within ``CLOSE_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from dataclasses import dataclass

import rawwamp as rw

ANSWER_S = 5.0  # a router answers in milliseconds; 5 s means "never"
CLOSE_S = 3.0  # a close the router owes must come long before its 10 s HELLO deadline
PV = "wamp.error.protocol_violation"


def uid() -> str:
    return uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class Abort:
    text: str | None = None
    uri: str = PV


@dataclass(frozen=True)
class Err:
    uri: str
    text: str | None = None


@dataclass(frozen=True)
class Reply:
    code: int


@dataclass(frozen=True)
class Ignored:
    pass


@dataclass(frozen=True)
class WsClose:
    code: int


@dataclass(frozen=True)
class Eof:
    pass


class LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro)`` waits for its result."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hostile-loop", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 60.0):
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop)
        return fut.result(timeout + 5)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def expect_abort(conn, text: str | None, uri: str = PV):
    """ABORT ``uri`` (with ``text`` in Details.message), then the transport is closed."""
    m = await conn.recv(ANSWER_S)
    assert m[0] == rw.ABORT, f"expected ABORT, got {m!r}"
    assert m[2] == uri, m
    msg = m[1].get("message")
    assert isinstance(msg, str) and msg, f"ABORT without Details.message: {m!r}"
    if text is not None:
        assert text in msg, f"ABORT message {msg!r} does not say {text!r}"
    rest, closed = await conn.recv_closed(ANSWER_S)
    assert rest == [], f"messages after ABORT: {rest!r}"
    if isinstance(conn, rw.WebSocketConn):
        assert closed.code == 1000, closed
    return m


async def expect_closed(conn, ws_code: int | None):
    """No WAMP message; the router closes (WebSocket: with ``ws_code``) within CLOSE_S."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    got, closed = await conn.recv_closed(CLOSE_S + 1)
    assert got == [], f"messages before the close: {got!r}"
    assert loop.time() - t0 < CLOSE_S, "closed only by a timeout"
    if ws_code is not None:
        assert closed.code == ws_code, f"expected close {ws_code}, got {closed}"
    return closed


async def fence(conn):
    """An acknowledged PUBLISH answered by PUBLISHED: the session is alive and everything
    sent before it was handled (WAMP orders one session's messages)."""
    req = conn.request_id() + 10_000_000
    await conn.send([rw.PUBLISH, req, {"acknowledge": True}, "test.hostile.fence"])
    m = await conn.recv(ANSWER_S)
    assert m[:2] == [rw.PUBLISHED, req], f"fence: expected PUBLISHED {req}, got {m!r}"


async def expect(conn, outcome, request=None):
    """Check ``outcome`` on ``conn`` after a message with request ID ``request`` was sent."""
    if isinstance(outcome, Abort):
        await expect_abort(conn, outcome.text, outcome.uri)
    elif isinstance(outcome, Err):
        m = await conn.recv(ANSWER_S)
        assert m[0] == rw.ERROR and m[4] == outcome.uri, f"expected ERROR {outcome.uri}, got {m!r}"
        if request is not None:
            assert m[2] == request, m
        if outcome.text is not None:
            assert outcome.text in m[3].get("message", ""), m
        await fence(conn)
    elif isinstance(outcome, Reply):
        m = await conn.recv(ANSWER_S)
        assert m[0] == outcome.code, f"expected message type {outcome.code}, got {m!r}"
        if request is not None:
            assert m[1] == request, m
        await fence(conn)
    elif isinstance(outcome, Ignored):
        await fence(conn)
    elif isinstance(outcome, WsClose):
        await expect_closed(conn, outcome.code)
    elif isinstance(outcome, Eof):
        await expect_closed(conn, None)
    else:
        raise TypeError(outcome)


def session_ends(outcome) -> bool:
    return isinstance(outcome, (Abort, WsClose, Eof))


async def close_quietly(conn):
    with contextlib.suppress(Exception):
        conn.close()
