"""RawSocket receive limits announced by the *client* (the handshake's LLLL nibble: the client
accepts messages of at most 2^(9+L) bytes). The router MUST NOT send a larger message
(transport_rawsocket.md). What it does instead must leave every peer with an answer:

- an EVENT that does not fit may be dropped (the spec leaves it to the implementation);
- a WELCOME, RESULT, ERROR or INVOCATION that does not fit must not vanish silently, or the
  client waits forever: the router should refuse the handshake (error 2, "maximum message
  length unacceptable"), or answer the call with an ERROR that fits (the spec's
  ``wamp.error.payload_size_exceeded``).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

import rawwamp as rw
from abclient import Pool

ANSWER_S = 5.0  # a router answers in milliseconds; 5 s means "never"


def uid() -> str:
    return uuid.uuid4().hex[:12]


@pytest.mark.parametrize("serializer", ["json", "msgpack", "cbor"])
async def test_client_with_512_byte_limit_gets_welcome_or_handshake_error(router, serializer):
    # Goal: a client announcing the smallest limit (L=0, 512 bytes) either is refused in the
    # handshake (error 2) or gets a WELCOME that fits in 512 bytes — never silence.
    # Method: raw RawSocket handshake with L=0, then HELLO with the usual roles; wait up to
    # 5 s for WELCOME/ABORT.
    async with Pool(router) as pool:
        try:
            c = pool.track_raw(await rw.RawSocketConn.open(port=router.port, serializer=serializer, len_exp=0))
        except rw.HandshakeRefused as e:
            assert e.error_code == 2, e
            return
        await c.send([rw.HELLO, "realm1", {"roles": rw.CLIENT_ROLES, "agent": "shardbar-interop-raw"}])
        try:
            payload = await c.recv_payload(ANSWER_S)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"{serializer}: handshake accepted with a 512-byte limit, then no WELCOME or ABORT within "
                f"{ANSWER_S}s (the WELCOME is larger than 512 bytes and was dropped)") from None
        assert len(payload) <= 512
        assert rw.decode(serializer, payload)[0] in (rw.WELCOME, rw.ABORT)


async def _callee_and_small_caller(pool, router, proc):
    callee = pool.track_raw(await rw.raw_session(router, "rs-msgpack", shard=0))
    await callee.register(proc)
    caller = pool.track_raw(await rw.RawSocketConn.open(port=router.port, serializer="msgpack", len_exp=1))
    await caller.hello()
    assert caller.shard in (0, 1)
    return callee, caller


@pytest.mark.parametrize("answer", ["yield", "error"])
async def test_call_answer_larger_than_callers_limit_is_not_lost(router, answer):
    # Goal: when the callee's answer (RESULT or ERROR) is larger than the caller's RawSocket
    # limit (1 KiB here), the caller still gets an answer: an ERROR that fits.
    # Method: raw callee answers with 4 KiB; the raw caller (L=1) waits up to 5 s.
    proc = f"test.limits.answer.{uid()}"
    async with Pool(router) as pool:
        callee, caller = await _callee_and_small_caller(pool, router, proc)
        await caller.send([rw.CALL, 1, {}, proc, []])
        inv, _ = await callee.recv_until(lambda m: m[0] == rw.INVOCATION)
        if answer == "yield":
            await callee.send([rw.YIELD, inv[1], {}, ["x" * 4096]])
        else:
            await callee.send([rw.ERROR, rw.INVOCATION, inv[1], {}, "com.example.big", ["x" * 4096]])
        try:
            m = await caller.recv(ANSWER_S)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"the caller got no answer within {ANSWER_S}s: the 4 KiB "
                f"{'RESULT' if answer == 'yield' else 'ERROR'} exceeds its 1 KiB limit and was dropped "
                "(expected ERROR wamp.error.payload_size_exceeded)") from None
        assert m[0] == rw.ERROR and m[1] == rw.CALL and m[2] == 1, m


async def test_invocation_larger_than_callees_limit_is_not_lost(router):
    # Goal: a CALL whose INVOCATION would exceed the callee's RawSocket limit is answered with
    # an ERROR to the caller, not left pending forever.
    # Method: raw callee announces L=1 (1 KiB); a raw caller sends a 4 KiB argument.
    proc = f"test.limits.invocation.{uid()}"
    async with Pool(router) as pool:
        callee = pool.track_raw(await rw.RawSocketConn.open(port=router.port, serializer="msgpack", len_exp=1))
        await callee.hello()
        await callee.register(proc)
        caller = pool.track_raw(await rw.raw_session(router, "rs-json"))
        await caller.send([rw.CALL, 1, {}, proc, ["z" * 4096]])
        try:
            m = await caller.recv(ANSWER_S)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"the caller got no answer within {ANSWER_S}s: the INVOCATION exceeds the callee's 1 KiB "
                "limit and was dropped (expected ERROR wamp.error.payload_size_exceeded)") from None
        assert m[0] == rw.ERROR and m[1] == rw.CALL and m[2] == 1, m


async def test_event_larger_than_subscribers_limit_is_dropped(router):
    # Goal: an EVENT larger than a subscriber's RawSocket limit is not sent to it (dropping
    # is the router's documented choice); the subscriber stays connected and gets the next
    # event that fits; other subscribers get both.
    # Method: subscriber with L=1 (1 KiB) and a normal one; publish 4 KiB then 10 bytes.
    topic = f"test.limits.event.{uid()}"
    async with Pool(router) as pool:
        small = pool.track_raw(await rw.RawSocketConn.open(port=router.port, serializer="cbor", len_exp=1))
        await small.hello()
        await small.subscribe(topic)
        big = pool.track_raw(await rw.raw_session(router, "ws-json"))
        await big.subscribe(topic)
        pub = pool.track_raw(await rw.raw_session(router, "rs-msgpack"))
        await pub.send([rw.PUBLISH, 1, {}, topic, ["y" * 4096]])
        m = await pub.call_expect([rw.PUBLISH, 2, {"acknowledge": True}, topic, ["small"]], rw.PUBLISHED)
        assert m[0] == rw.PUBLISHED
        got = await small.recv()
        assert got[0] == rw.EVENT and got[4] == ["small"], got
        assert [(await big.recv())[4][0][:5] for _ in range(2)] == ["yyyyy", "small"]
