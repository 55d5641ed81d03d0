"""Slow consumers: one subscriber that stops reading must not make the router buffer without
limit, nor slow down or reorder the subscribers that keep up.

Scenario (``flood``): on a router with ``pending_bytes_max`` = 1 MiB, a raw MessagePack
publisher on shard 0 publishes 64 KiB events as fast as the *fast* subscribers (raw clients
on both shards, MessagePack and JSON, so the transcoder is in the path) read them: it never
runs more than ``WINDOW`` events ahead of the slowest fast subscriber, so their router-side
queues stay below the cap and they must receive every event, in order. The *stuck*
subscriber (RawSocket, SO_RCVBUF 4 KiB, on shard 1) does the handshake, HELLO and SUBSCRIBE,
then stops reading. Publishing stops after ``EVENTS_MAX`` events or ``PUBLISH_S`` seconds.

RSS bound: the router queues at most ``pending_bytes_max`` per connection; each connection
also has a 64 KiB read chunk and a 256 KiB coalesced-write buffer (src/limits.rs); the
publisher is paced, so mesh batches in flight are at most ``WINDOW`` events. Hence
``VmRSS <= rss_before + connections * (pending_bytes_max + 320 KiB) + 24 MiB``, the 24 MiB for
what the allocator keeps after freeing (per-shard heaps, 64 KiB frames churned at a high
rate: measured growth with a 1 MiB cap is 8-16 MiB on the debug build). A router that
buffered the stuck subscriber's backlog would grow by the whole flood (96 MiB) less what the
kernel socket buffers absorb (the stuck client's receive buffer
is pinned at 4 KiB; the router's send buffer grows to at most ``tcp_wmem`` max, 4 MiB by
default), far above the bound: ``check_fast_and_rss`` requires the flood to exceed the bound
by that much, and ``test_rss_bound_catches_an_unbounded_queue`` shows the check does catch a
router that buffers without limit (it grows by about 130 MiB there).
"""

from __future__ import annotations

import asyncio
import uuid

import msgpack
import pytest

import rawwamp as rw

PENDING_BYTES_MAX = 1 << 20
PAYLOAD = "x" * 65536
WINDOW = 6  # events the publisher may run ahead of the slowest fast subscriber (384 KiB)
EVENTS_MAX = 1500  # 96 MiB of payload
PUBLISH_S = 20.0  # publishing stops after this even if EVENTS_MAX was not reached (slow CI)
SLACK_BYTES = 24 << 20
PER_CONN_BUFFERS = 320 << 10


class Fast:
    """A subscriber that reads everything and checks the sequence."""

    def __init__(self, conn, progress: asyncio.Event):
        self.conn, self.progress = conn, progress
        self.next = 0
        self.error = None
        self.task = None

    async def run(self):
        try:
            while True:
                m = await self.conn.recv(30)
                if m[0] != rw.EVENT:
                    continue
                seq = m[4][0]
                if seq != self.next:
                    self.error = f"expected event {self.next}, got {seq}"
                    self.progress.set()
                    return
                self.next += 1
                self.progress.set()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = f"{type(e).__name__}: {e}"
            self.progress.set()


class Flood:
    pass


async def flood(router, realm="realm1", stuck_shard=1) -> Flood:
    topic = f"test.slow.{uuid.uuid4().hex[:12]}"
    f = Flood()
    f.topic = topic
    # The stuck subscriber first: small receive buffer, subscribes, then never reads.
    for _ in range(64):
        stuck = await rw.RawSocketConn.open(port=router.port, serializer="msgpack", rcvbuf=4096)
        await stuck.hello(realm)
        if stuck.shard == stuck_shard:
            break
        stuck.close()
    assert stuck.shard == stuck_shard
    await stuck.subscribe(topic)
    f.stuck = stuck

    progress = asyncio.Event()
    f.fast = []
    for kind, shard in (("rs-msgpack", 1), ("rs-msgpack", 0), ("ws-json", 1)):
        c = await rw.raw_session(router, kind, shard=shard, realm=realm)
        await c.subscribe(topic)
        f.fast.append(Fast(c, progress))
    pub = await rw.raw_session(router, "rs-msgpack", shard=0, realm=realm)
    f.pub = pub
    f.connections = 2 + len(f.fast)
    for x in f.fast:
        x.task = asyncio.ensure_future(x.run())

    loop = asyncio.get_running_loop()
    f.rss_before = router.rss_bytes()
    f.rss_max = f.rss_before
    start = loop.time()
    last_sample = start
    sent = 0
    while sent < EVENTS_MAX and loop.time() - start < PUBLISH_S:
        batch = []
        for _ in range(4):
            payload = msgpack.packb([rw.PUBLISH, pub.request_id(), {}, topic, [sent, PAYLOAD]], use_bin_type=True)
            batch.append(rw.rawsocket_prefix(len(payload)) + payload)
            sent += 1
        await pub.send_raw(b"".join(batch))
        while min(x.next for x in f.fast) < sent - WINDOW:
            errors = [x.error for x in f.fast if x.error]
            assert not errors, errors
            progress.clear()
            await asyncio.wait_for(progress.wait(), 15)
        if loop.time() - last_sample >= 0.05:
            f.rss_max = max(f.rss_max, router.rss_bytes())
            last_sample = loop.time()
    f.sent = sent
    f.publish_s = loop.time() - start
    # The fast subscribers must get every event; then sample RSS once more.
    while min(x.next for x in f.fast) < sent:
        errors = [x.error for x in f.fast if x.error]
        assert not errors, errors
        progress.clear()
        await asyncio.wait_for(progress.wait(), 15)
    f.rss_max = max(f.rss_max, router.rss_bytes())
    f.rss_bound = f.rss_before + f.connections * (PENDING_BYTES_MAX + PER_CONN_BUFFERS) + SLACK_BYTES
    print(f"flood: {sent} events in {f.publish_s:.2f}s; RSS before {f.rss_before >> 20} MiB, "
          f"max {f.rss_max >> 20} MiB, bound {f.rss_bound >> 20} MiB")
    return f


def cleanup(f: Flood):
    for x in f.fast:
        x.task.cancel()
        x.conn.close()
    f.pub.close()
    f.stuck.close()


def kernel_buffer_bytes() -> int:
    """The most a stuck TCP peer's socket buffers can absorb on this host (router send buffer
    at tcp_wmem max, doubled for safety, plus a small receive buffer)."""
    try:
        wmem_max = int(open("/proc/sys/net/ipv4/tcp_wmem").read().split()[2])
    except (OSError, ValueError, IndexError):
        wmem_max = 4 << 20
    return 2 * wmem_max + (1 << 20)


def check_fast_and_rss(f: Flood):
    for x in f.fast:
        assert x.error is None, x.error
        assert x.next == f.sent, f"a fast subscriber got {x.next} of {f.sent} events"
    mib = 1 << 20
    assert f.rss_max <= f.rss_bound, (
        f"router RSS {f.rss_max / mib:.1f} MiB above the bound {f.rss_bound / mib:.1f} MiB "
        f"(before the flood: {f.rss_before / mib:.1f} MiB; {f.sent} events of 64 KiB)"
    )
    # The flood must be big enough for the bound to mean something: a router that queued the
    # whole backlog of the stuck subscriber would have gone over it.
    needed = (f.rss_bound - f.rss_before) + kernel_buffer_bytes()
    assert f.sent * len(PAYLOAD) > needed, (
        f"only {f.sent} events ({f.sent * len(PAYLOAD) >> 20} MiB) published in {PUBLISH_S}s; "
        f"need {needed >> 20} MiB for the RSS bound to be meaningful")


async def read_stuck_until_closed(stuck, timeout=20.0):
    """The stuck client resumes reading: returns (event sequence numbers, GOODBYE or None)."""
    seqs, goodbye = [], None
    while True:
        try:
            m = await stuck.recv(timeout)
        except rw.Closed:
            return seqs, goodbye
        if m[0] == rw.EVENT:
            seqs.append(m[4][0])
        elif m[0] == rw.GOODBYE:
            goodbye = m


def slow_limits(**extra):
    lim = {"pending_bytes_max": PENDING_BYTES_MAX, "write_deadline_ms": 30000, "ping_interval_ms": 0}
    lim.update(extra)
    return lim


@pytest.mark.async_timeout(90)
@pytest.mark.parametrize("stuck_shard", [1, 0], ids=["stuck-on-other-shard", "stuck-on-publisher-shard"])
async def test_stuck_subscriber_is_disconnected(make_router, stuck_shard):
    # Goal: with the default realm policy (disconnect), a subscriber that stops reading is
    # disconnected once more than pending_bytes_max is queued for it; the router's memory
    # stays bounded; the fast subscribers get every event in order; the router logs it.
    # Method: the flood scenario (module doc), with the stuck subscriber on the publisher's
    # shard (local delivery) or the other one (mesh delivery); then the stuck client resumes
    # reading and must get GOODBYE shardbar.close.slow_consumer, then EOF.
    router = make_router(name="slow-disconnect", limits=slow_limits())
    f = await flood(router, stuck_shard=stuck_shard)
    try:
        check_fast_and_rss(f)
        seqs, goodbye = await read_stuck_until_closed(f.stuck)
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "stuck subscriber got events out of order"
        assert len(seqs) < f.sent, "the stuck subscriber was never cut off"
        if goodbye is not None:
            assert goodbye[2] == "shardbar.close.slow_consumer", goodbye
        assert "slow consumer disconnected" in router.log_text()
        assert goodbye is not None, "EOF without GOODBYE shardbar.close.slow_consumer"
    finally:
        cleanup(f)


@pytest.mark.async_timeout(90)
async def test_drop_policy_keeps_the_stuck_subscriber(make_router):
    # Goal: with slow_consumer = "drop" the stuck subscriber stays connected and loses only
    # EVENTs (in order, with gaps), the fast ones are unaffected, memory stays bounded, and
    # no disconnect is logged.
    # Method: the flood scenario on a "drop" realm; then the stuck client resumes reading.
    # Which events survive depends on timing, so the publisher sends marker events until the
    # resumed client sees one (bounded); then the stuck session publishes with acknowledge
    # to prove it is alive.
    router = make_router(name="slow-drop", limits=slow_limits(),
                         realms=[{"name": "realm1", "slow_consumer": "drop"}])
    f = await flood(router)
    try:
        check_fast_and_rss(f)
        seqs, seen_marker = [], asyncio.Event()

        async def reader():
            while True:
                m = await f.stuck.recv(30)
                if m[0] == rw.EVENT:
                    if m[4][0] == "marker":
                        seen_marker.set()
                        return
                    seqs.append(m[4][0])

        task = asyncio.ensure_future(reader())
        for i in range(100):
            await f.pub.send([rw.PUBLISH, f.pub.request_id(), {}, f.topic, ["marker"]])
            try:
                await asyncio.wait_for(asyncio.shield(seen_marker.wait()), 0.1)
                break
            except asyncio.TimeoutError:
                assert not task.done(), task.exception()
        assert seen_marker.is_set(), "the stuck subscriber never received a marker after resuming"
        await task
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "events out of order"
        assert 0 < len(seqs) < f.sent, f"stuck subscriber got {len(seqs)} of {f.sent}: nothing was dropped"
        m = await f.stuck.call_expect([rw.PUBLISH, f.stuck.request_id(), {"acknowledge": True}, "test.alive", []],
                                      rw.PUBLISHED)
        assert m[0] == rw.PUBLISHED, m
        assert "slow consumer disconnected" not in router.log_text()
    finally:
        cleanup(f)


@pytest.mark.async_timeout(60)
async def test_write_deadline_disconnects_a_stalled_reader(make_router):
    # Goal: a subscriber whose socket makes no write progress for write_deadline_ms is a slow
    # consumer even while its queue is below pending_bytes_max.
    # Method: pending_bytes_max 64 MiB, write_deadline_ms 500; publish (acknowledged) until
    # the stuck client's kernel buffers are full and a bit more is queued (well below the
    # cap); then the stuck client must be disconnected: the warning is logged and it reaches
    # EOF when it resumes reading. The publisher keeps working throughout.
    router = make_router(name="slow-deadline", limits=slow_limits(pending_bytes_max=64 << 20, write_deadline_ms=500))
    topic = f"test.deadline.{uuid.uuid4().hex[:12]}"
    stuck = await rw.RawSocketConn.open(port=router.port, serializer="msgpack", rcvbuf=4096)
    await stuck.hello()
    await stuck.subscribe(topic)
    pub = await rw.raw_session(router, "rs-msgpack")
    try:
        # 12 MiB: more than the socket buffers hold (tcp_wmem/rmem maxima are 4-6 MiB), so
        # the router's write stalls, yet far below pending_bytes_max.
        for i in range(192):
            await pub.send([rw.PUBLISH, pub.request_id(), {}, topic, [i, PAYLOAD]])
        m = await pub.call_expect([rw.PUBLISH, pub.request_id(), {"acknowledge": True}, topic, ["end"]], rw.PUBLISHED)
        assert m[0] == rw.PUBLISHED
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        # The deadline is time-based by nature: wait (bounded) for the log line.
        while "slow consumer disconnected" not in router.log_text():
            assert loop.time() < deadline, "no slow-consumer disconnect logged within 15 s"
            await asyncio.sleep(0.1)
        seqs, goodbye = await read_stuck_until_closed(stuck)
        assert len(seqs) < 192
        assert goodbye is None or goodbye[2] == "shardbar.close.slow_consumer", goodbye
        m = await pub.call_expect([rw.PUBLISH, pub.request_id(), {"acknowledge": True}, topic, []], rw.PUBLISHED)
        assert m[0] == rw.PUBLISHED
    finally:
        stuck.close()
        pub.close()


@pytest.mark.async_timeout(90)
async def test_rss_bound_catches_an_unbounded_queue(make_router):
    # Goal: show the RSS check above can fail — a router that is allowed to queue without
    # limit for the stuck subscriber (pending_bytes_max 1 GiB, write deadline 30 s) grows
    # above the bound computed for a 1 MiB cap.
    # Method: the same flood against that router; expect the bound to be exceeded and the
    # stuck subscriber not to be disconnected.
    router = make_router(name="slow-control", limits=slow_limits(pending_bytes_max=1 << 30))
    f = await flood(router)
    try:
        assert all(x.next == f.sent for x in f.fast)
        needed = (f.rss_bound - f.rss_before) + kernel_buffer_bytes()
        assert f.sent * len(PAYLOAD) > needed, f"flood too small ({f.sent} events) to show anything"
        assert f.rss_max > f.rss_bound, (
            f"RSS {f.rss_max >> 20} MiB stayed under the bound {f.rss_bound >> 20} MiB even with an "
            f"unbounded queue: the RSS check in the other tests could not fail"
        )
        assert "slow consumer disconnected" not in router.log_text()
    finally:
        cleanup(f)


@pytest.mark.async_timeout(60)
async def test_drop_policy_never_drops_rpc_messages(make_router):
    # Goal: under slow_consumer = "drop" only EVENTs may be dropped: a RESULT for a stuck
    # client whose queue is full of events is either delivered or the client is disconnected
    # as a slow consumer (GOODBYE shardbar.close.slow_consumer) — never silently lost.
    # Method: pending_bytes_max 64 KiB; the stuck client (4 KiB receive buffer) subscribes and
    # CALLs a procedure of a raw callee, then stops reading; 8 MiB of events fill its
    # socket buffers and queue; the callee then YIELDs. The stuck client resumes reading:
    # it must see the RESULT, or GOODBYE slow_consumer / EOF, within 10 s.
    router = make_router(name="slow-drop-rpc", limits=slow_limits(pending_bytes_max=64 << 10),
                         realms=[{"name": "realm1", "slow_consumer": "drop"}])
    tag = uuid.uuid4().hex[:12]
    topic, proc = f"test.droprpc.{tag}", f"test.droprpc.{tag}.proc"
    callee = await rw.raw_session(router, "rs-json", shard=0)
    await callee.register(proc)
    stuck = await rw.RawSocketConn.open(port=router.port, serializer="msgpack", rcvbuf=4096)
    await stuck.hello()
    await stuck.subscribe(topic)
    pub = await rw.raw_session(router, "rs-msgpack", shard=0)
    try:
        await stuck.send([rw.CALL, 99, {}, proc, []])
        inv, _ = await callee.recv_until(lambda m: m[0] == rw.INVOCATION)
        for i in range(128):
            await pub.send([rw.PUBLISH, pub.request_id(), {}, topic, [i, PAYLOAD]])
        m = await pub.call_expect([rw.PUBLISH, pub.request_id(), {"acknowledge": True}, topic, [-1]], rw.PUBLISHED)
        assert m[0] == rw.PUBLISHED
        await callee.send([rw.YIELD, inv[1], {}, ["the result"]])
        # A later acknowledged call to the callee proves the YIELD was processed.
        probe = await callee.call_expect([rw.CALL, callee.request_id(), {}, "test.nothing.here", []], rw.RESULT)
        assert probe[0] == rw.ERROR
        outcome = None
        while outcome is None:
            try:
                m = await stuck.recv(10)
            except rw.Closed:
                outcome = "closed"
                break
            except asyncio.TimeoutError:
                raise AssertionError("stuck client connected, reading, but neither RESULT nor GOODBYE arrived") from None
            if m[0] == rw.RESULT:
                assert m[1] == 99 and m[3] == ["the result"], m
                outcome = "result"
            elif m[0] == rw.GOODBYE:
                assert m[2] == "shardbar.close.slow_consumer", m
                outcome = "goodbye"
        print(f"drop policy, RPC to a stuck client: {outcome}")
        if outcome != "result":
            assert "slow consumer disconnected" in router.log_text()
    finally:
        for c in (callee, stuck, pub):
            c.close()
