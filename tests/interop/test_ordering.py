"""Ordering through the real router (WAMP security model): for a (publisher, subscriber)
pair, events arrive in publication order *across topics*; for a (caller, callee) pair,
invocations arrive in call order *across procedures*. The topics and procedures are
owned by different shards (owner = hash(uri) % shards), so an implementation that routed
deliveries through owners could reorder them; publisher and subscribers sit on different
shards, so every event crosses the mesh.
"""

from __future__ import annotations

import asyncio
import random
import uuid

from autobahn.wamp.types import PublishOptions

import rawwamp as rw
from abclient import Pool

EVENTS = 3000
TOPICS = 8
WINDOW = 400  # how far the publisher may run ahead of the slowest subscriber


def uid() -> str:
    return uuid.uuid4().hex[:12]


async def test_cross_topic_order_one_publisher_many_subscribers(router):
    # Goal: one publisher, eight topics, subscribers on the other shard with other
    # serializers: every subscriber receives exactly the events of its topics, in
    # publication order, none lost, none duplicated.
    # Method: an Autobahn MessagePack publisher on shard 0 publishes sequence numbers
    # 0..2999 to topics picked by a seeded random generator (so consecutive events hop
    # between topics, and owners); Autobahn subscribers on shard 1 (JSON over WebSocket,
    # CBOR over RawSocket: all topics; MessagePack over WebSocket: odd topics only), a raw
    # JSON RawSocket subscriber on shard 1 and a CBOR Unix-socket subscriber on shard 0 (the
    # local path) each compare the sequence they saw with the expected one.
    base = f"test.order.{uid()}"
    topics = [f"{base}.t{i}" for i in range(TOPICS)]
    rng = random.Random(20240611)
    plan = [rng.randrange(TOPICS) for _ in range(EVENTS)]
    async with Pool(router) as pool:
        pub = await pool.connect("ws-msgpack", shard=0)
        progress = asyncio.Event()
        subs = []

        class Sub:
            def __init__(self, name, wanted):
                self.name, self.wanted, self.seen = name, wanted, []
                self.expected = [i for i, t in enumerate(plan) if t in wanted]

            def on_event(self, seq, topic_index):
                assert plan[seq] == topic_index
                self.seen.append(seq)
                progress.set()

        for kind, wanted in (("ws-json", range(TOPICS)), ("rs-cbor", range(TOPICS)),
                             ("ws-msgpack", range(1, TOPICS, 2)), ("unix-cbor", range(TOPICS))):
            sess = await pool.connect(kind, shard=0 if kind.startswith("unix") else 1)
            sub = Sub(kind, set(wanted))
            for i in sub.wanted:
                await sess.subscribe(sub.on_event, topics[i])
            subs.append(sub)
        raw = await pool.raw("rs-json", shard=1)
        raw_sub = Sub("raw rs-json", set(range(TOPICS)))
        sub_ids = {}
        for i in range(TOPICS):
            sub_ids[await raw.subscribe(topics[i])] = i

        async def raw_reader():
            while len(raw_sub.seen) < len(raw_sub.expected):
                m = await raw.recv(30)
                if m[0] == rw.EVENT:
                    assert sub_ids[m[1]] == m[4][1]
                    raw_sub.on_event(m[4][0], m[4][1])

        reader = asyncio.ensure_future(raw_reader())
        subs.append(raw_sub)

        def lag(sent):
            return max(sum(1 for i in s.expected if i < sent) - len(s.seen) for s in subs)

        for seq, t in enumerate(plan):
            pub.publish(topics[t], seq, t)
            if seq % 100 == 99:
                while lag(seq + 1) > WINDOW:
                    progress.clear()
                    await asyncio.wait_for(progress.wait(), 20)
        while any(len(s.seen) < len(s.expected) for s in subs):
            progress.clear()
            try:
                await asyncio.wait_for(progress.wait(), 20)
            except asyncio.TimeoutError:
                short = {s.name: f"{len(s.seen)}/{len(s.expected)}" for s in subs}
                raise AssertionError(f"events lost: {short}") from None
        reader.cancel()
        for s in subs:
            assert s.seen == s.expected, (
                f"{s.name}: first difference at index "
                f"{next(i for i, (a, b) in enumerate(zip(s.seen, s.expected)) if a != b)}")


async def test_call_order_across_procedures(router):
    # Goal: invocations from one caller reach one callee in call order across procedures.
    # Method: a callee on shard 1 registers four procedures; a caller on shard 0 issues 600
    # calls round-robin over them without waiting; the callee records the sequence numbers
    # in arrival order, which must be 0..599; every call gets its own result.
    base = f"test.order.rpc.{uid()}"
    procs = [f"{base}.p{i}" for i in range(4)]
    async with Pool(router) as pool:
        callee = await pool.connect("rs-msgpack", shard=1)
        arrivals = []

        def record(seq):
            arrivals.append(seq)
            return seq * 2

        for p in procs:
            await callee.register(record, p)
        caller = await pool.connect("ws-cbor", shard=0)
        calls = [caller.call(procs[i % 4], i) for i in range(600)]
        results = await asyncio.wait_for(asyncio.gather(*calls), 30)
        assert results == [i * 2 for i in range(600)]
        assert arrivals == list(range(600))


async def test_subscribed_before_event(router):
    # Goal: SUBSCRIBED precedes any EVENT of the subscription, and a subscriber that got
    # SUBSCRIBED receives an event published right after (the shard barrier): no event is
    # lost in the window where the subscription propagates to the publisher's shard.
    # Method: 30 rounds: a fresh topic; a raw subscriber on shard 1 subscribes; as soon as
    # SUBSCRIBED arrives it asks (over RPC) a publisher on shard 0 to publish; the event
    # must arrive.
    async with Pool(router) as pool:
        pub = await pool.connect("ws-json", shard=0)
        proc = f"test.order.pubnow.{uid()}"

        async def publish_now(topic, n):
            await pub.publish(topic, n, options=PublishOptions(acknowledge=True))

        await pub.register(publish_now, proc)
        sub = await pool.raw("rs-msgpack", shard=1)
        for n in range(30):
            topic = f"test.order.barrier.{uid()}"
            await sub.subscribe(topic)
            req = sub.request_id()
            await sub.send([rw.CALL, req, {}, proc, [topic, n]])
            # The publisher publishes before it returns, so the EVENT comes before the RESULT.
            _, before = await sub.recv_until(lambda m: (m[0] == rw.RESULT and m[1] == req) or (m[0] == rw.ERROR and m[2] == req), timeout=10)
            events = [m for m in before if m[0] == rw.EVENT]
            assert [m[4] for m in events] == [[n]], before


async def test_subscription_churn_on_one_topic_loses_nothing(router):
    # Goal: subscribing and unsubscribing the same topic over and over, from both shards,
    # never loses an event published after SUBSCRIBED nor delivers one after UNSUBSCRIBED
    # (the owner's release and re-create race with the other shard's requests).
    # Method: 150 rounds; a raw subscriber on shard 1 subscribes each round, one on shard 0
    # every other round; an acknowledged publication from shard 0 must reach exactly the
    # current subscribers (the first message each receives must be that event); then both
    # unsubscribe.
    topic = f"test.order.churn.{uid()}"
    async with Pool(router) as pool:
        s1 = await pool.raw("rs-json", shard=1)
        s0 = await pool.raw("ws-cbor", shard=0)
        pub = await pool.raw("rs-msgpack", shard=0)
        for i in range(150):
            current = [s1, s0] if i % 2 else [s1]
            ids = [await s.subscribe(topic) for s in current]
            m = await pub.call_expect([rw.PUBLISH, pub.request_id(), {"acknowledge": True}, topic, [i]], rw.PUBLISHED)
            assert m[0] == rw.PUBLISHED
            for s in current:
                ev = await s.recv(5)
                assert ev[0] == rw.EVENT and ev[4] == [i], (i, s.shard, ev)
            for s, sid in zip(current, ids):
                m = await s.call_expect([rw.UNSUBSCRIBE, s.request_id(), sid], rw.UNSUBSCRIBED)
                assert m[0] == rw.UNSUBSCRIBED, m
