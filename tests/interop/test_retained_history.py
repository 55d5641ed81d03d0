"""Retained events (PUBLISH retain, SUBSCRIBE get_retained) and event history
([[realm.history]], wamp.subscription.get_events) through the real 2-shard router with
Autobahn|Python: stores live on owner shards, so publishers, subscribers and callers are
placed on different shards on purpose."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from abclient import Pool, other

HISTORY = """
[[realm.history]]
uri = "hist.exact"
limit = 5

[[realm.history]]
uri = "hist.pre"
match = "prefix"
limit = 10

[[realm.history]]
uri = "hist..w"
match = "wildcard"
"""

ACK = PublishOptions(acknowledge=True)

# How long a test waits to conclude that no retained EVENT comes (it follows SUBSCRIBED
# after one owner round trip, well under this on loopback).
NOTHING_S = 0.5


@pytest.fixture
def store_router(make_router):
    # [[realm.history]] binds to the last realm: realm1.
    realms = [{"name": "plain"}, {"name": "quiet", "meta_api": False}, {"name": "realm1"}]
    return make_router(name="store", realms=realms, extra_toml=HISTORY, limits={"ping_interval_ms": 0})


async def retained_of(session, topic: str, match: str | None = None):
    """Subscribe with get_retained and return (args, details) of the retained EVENT, or
    None; unsubscribes again."""
    got: asyncio.Queue = asyncio.Queue()
    opts = SubscribeOptions(get_retained=True, match=match, details_arg="details")
    sub = await session.subscribe(lambda *a, details: got.put_nowait((list(a), details)), topic, options=opts)
    try:
        return await asyncio.wait_for(got.get(), NOTHING_S)
    except asyncio.TimeoutError:
        return None
    finally:
        await sub.unsubscribe()


async def call_error(session, proc, *args, **kwargs) -> str:
    with pytest.raises(ApplicationError) as e:
        await session.call(proc, *args, **kwargs)
    return e.value.error


def metric(router, name: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{router.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(int(v) for v in re.findall(rf"^shardbar_{name}{{[^}}]*}} (\d+)$", text, re.M))


async def test_retained_event_follows_subscribed_across_shards(store_router):
    # Goal: a retained publication reaches a later subscriber on the other shard that asks
    # for it, after SUBSCRIBED (Autobahn drops an EVENT for an unknown subscription), with a
    # fresh publication ID and retained=true; the local join path (the shard already has the
    # subscription) gets it too; a plain publish does not replace it; nobody gets it
    # without asking; the publisher is excluded as it would have been (exclude_me).
    async with Pool(store_router) as pool:
        pub = await pool.connect("rs-msgpack", shard=1)
        original = await pub.publish("ret.a", "v1", options=PublishOptions(acknowledge=True, retain=True))
        await pub.publish("ret.a", "not kept", options=ACK)
        sub = await pool.connect("ws-json", shard=other(1))
        plain: asyncio.Queue = asyncio.Queue()
        await sub.subscribe(lambda *a: plain.put_nowait(a), "ret.a")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(plain.get(), NOTHING_S)
        # sub keeps its plain subscription: the next one on shard 0 joins locally.
        late = await pool.connect("ws-cbor", shard=other(1))
        got = await retained_of(late, "ret.a")
        assert got is not None, "no retained event"
        args, details = got
        assert args == ["v1"]
        assert details.retained is True
        assert details.publication != original.id
        assert details.publisher is None, "the original was not disclosed"
        far = await pool.connect("rs-json", shard=1)
        assert (await retained_of(far, "ret.a"))[0] == ["v1"]
        assert await retained_of(pub, "ret.a") is None, "exclude_me applies to the publisher"
        assert await retained_of(far, "ret.other") is None
        assert metric(store_router, "retained_stored_total") >= 1
        assert metric(store_router, "retained_delivered_total") >= 2


async def test_unfiltered_retain_replaces_filtered_retain_appends(store_router):
    # Goal: Crossbar's semantics: a filtered (exclude/eligible) retain is added beside the
    # last unfiltered one, an unfiltered retain replaces them all; each subscriber gets the
    # newest one it is eligible for, subscribing after the publication.
    # Method: two subscribers known by session ID, four retained publishes from the other
    # shard, get_retained after each step.
    async with Pool(store_router) as pool:
        pub = await pool.connect("ws-json", shard=0)
        a = await pool.connect("ws-msgpack", shard=1)
        b = await pool.connect("rs-cbor", shard=0)
        ida, idb = a.details.session, b.details.session

        async def retain(value, **filters):
            await pub.publish("ret.f", value, options=PublishOptions(acknowledge=True, retain=True, **filters))

        async def seen(s):
            got = await retained_of(s, "ret.f")
            return got and got[0][0]

        await retain("all-1")
        await retain("only-a", eligible=[ida])
        assert await seen(a) == "only-a"
        assert await seen(b) == "all-1"
        await retain("all-2")
        assert await seen(a) == "all-2", "an unfiltered retain replaces the filtered ones"
        await retain("not-b", exclude=[idb])
        assert await seen(b) == "all-2"
        assert await seen(a) == "not-b"
        await retain("authid-b", eligible_authid=[b.details.authid])
        assert await seen(b) == "authid-b"
        assert await seen(a) == "not-b"
        late = await pool.connect("rs-msgpack", shard=1)
        assert await seen(late) == "not-b", "a session unknown at publish time is not in exclude"


async def test_pattern_subscriptions_get_no_retained_event(store_router):
    # Goal: only the exact subscription's own topic is consulted (best effort, as allowed by
    # the spec); a prefix or wildcard subscriber gets nothing.
    async with Pool(store_router) as pool:
        pub = await pool.connect("ws-json", shard=0)
        await pub.publish("ret.p.x", 1, options=PublishOptions(acknowledge=True, retain=True))
        s = await pool.connect("ws-json", shard=1)
        assert await retained_of(s, "ret.p", match="prefix") is None
        assert await retained_of(s, "ret..x", match="wildcard") is None
        assert (await retained_of(s, "ret.p.x"))[0] == [1]


async def test_welcome_announces_retention_and_history_where_configured(store_router):
    async with Pool(store_router) as pool:
        with_history = await pool.connect("ws-json", shard=0, realm="realm1")
        without = await pool.connect("ws-json", shard=0, realm="plain")
        quiet = await pool.connect("ws-json", shard=0, realm="quiet")
        assert with_history._router_roles["broker"].event_retention is True
        assert with_history._router_roles["broker"].event_history is True
        assert without._router_roles["broker"].event_retention is True
        assert not without._router_roles["broker"].event_history
        assert not quiet._router_roles["broker"].event_history


def rfc3339(time_ns: int) -> str:
    """An exact RFC 3339 UTC timestamp (nanoseconds) for a history event's time_ns."""
    secs, ns = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"


async def publish_n(pub, topic: str, values) -> list[int]:
    return [(await pub.publish(topic, v, k=v, options=ACK)).id for v in values]


async def test_history_newest_first_positional_and_ring_eviction(store_router):
    # Goal: events published before anyone subscribed are kept; Crossbar's positional form
    # answers newest first (default limit 10); the ring keeps the newest `limit` (5); each
    # event has Crossbar's and the spec's keys.
    # Method: 7 publications from shard 1, the caller (and subscriber) on shard 0.
    async with Pool(store_router) as pool:
        pub = await pool.connect("rs-msgpack", shard=1)
        ids = await publish_n(pub, "hist.exact", range(1, 8))
        caller = await pool.connect("ws-json", shard=0)
        sub = await caller.subscribe(lambda *a, **k: None, "hist.exact")
        events = await caller.call("wamp.subscription.get_events", sub.id)
        assert [e["args"] for e in events] == [[7], [6], [5], [4], [3]]
        e = events[0]
        assert e["publication"] == ids[-1] and e["topic"] == "hist.exact" and e["realm"] == "realm1"
        assert e["subscription"] == sub.id and e["kwargs"] == {"k": 7}
        assert e["session_id"] == pub.details.session and e["authrole"] == "anonymous"
        assert e["authid"] == pub.details.authid
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["timestamp"]), e["timestamp"]
        assert isinstance(e["time_ns"], int) and e["time_ns"] >= events[1]["time_ns"]
        two = await caller.call("wamp.subscription.get_events", sub.id, 2)
        assert [x["args"] for x in two] == [[7], [6]]
        assert metric(store_router, "history_stored_total") >= 7
        assert metric(store_router, "history_evicted_total") >= 2
        assert metric(store_router, "history_bytes") > 0


async def test_history_spec_keyword_form(store_router):
    # Goal: any keyword argument selects the spec's form: chronological unless reverse,
    # limit from the oldest, publication and time bounds, AND-combined.
    async with Pool(store_router) as pool:
        pub = await pool.connect("ws-cbor", shard=0)
        ids = await publish_n(pub, "hist.exact", range(1, 6))
        caller = await pool.connect("rs-json", shard=1)
        sub = await caller.subscribe(lambda *a, **k: None, "hist.exact")
        get = lambda **kw: caller.call("wamp.subscription.get_events", sub.id, **kw)  # noqa: E731
        values = lambda evs: [e["args"][0] for e in evs]  # noqa: E731
        assert values(await get(limit=2)) == [1, 2]
        assert values(await get(reverse=True, limit=2)) == [5, 4]
        assert values(await get(after_publication=ids[1])) == [3, 4, 5]
        assert values(await get(from_publication=ids[1], before_publication=ids[3])) == [2, 3]
        assert values(await get(until_publication=ids[1], reverse=True)) == [2, 1]
        assert values(await get(after_publication=123)) == [], "an unknown publication selects nothing"
        allv = await get(reverse=False)
        assert values(allv) == [1, 2, 3, 4, 5]
        t3, t4 = rfc3339(allv[2]["time_ns"]), rfc3339(allv[3]["time_ns"])
        assert values(await get(from_time=t3)) == [3, 4, 5]
        assert values(await get(after_time=t3, until_time=t4)) == [4]
        assert values(await get(before_time=t3)) == [1, 2]
        assert values(await get(until_time="2000-01-01T00:00:00Z")) == []
        assert values(await get(after_time="2000-01-01T00:00:00+02:00")) == [1, 2, 3, 4, 5]
        for bad in [{"limit": 0}, {"from_time": "yesterday"}, {"reverse": "yes"}, {"colour": 1}]:
            assert await call_error(caller, "wamp.subscription.get_events", sub.id, **bad) == "wamp.error.invalid_argument"


async def test_session_filtered_publications_are_not_stored(store_router):
    # Goal: the spec: publications with exclude/eligible (session IDs) are not kept; authid
    # and authrole filters are kept, and applied to the reader.
    async with Pool(store_router) as pool:
        pub = await pool.connect("ws-json", shard=1)
        caller = await pool.connect("ws-json", shard=0)
        await pub.publish("hist.exact", "plain", options=ACK)
        await pub.publish("hist.exact", "excl", options=PublishOptions(acknowledge=True, exclude=[caller.details.session]))
        await pub.publish("hist.exact", "elig", options=PublishOptions(acknowledge=True, eligible=[caller.details.session]))
        await pub.publish("hist.exact", "role", options=PublishOptions(acknowledge=True, exclude_authrole=["nobody"]))
        await pub.publish("hist.exact", "hidden", options=PublishOptions(acknowledge=True, exclude_authrole=["anonymous"]))
        sub = await caller.subscribe(lambda *a: None, "hist.exact")
        events = await caller.call("wamp.subscription.get_events", sub.id)
        assert [e["args"][0] for e in events] == ["role", "plain"]


async def test_pattern_history_entries(store_router):
    # Goal: prefix and wildcard entries keep every matching publication for the pattern
    # subscription with the same URI and policy (topic filter available, details.topic set);
    # an exact subscription to the same URI has no history.
    async with Pool(store_router) as pool:
        pub = await pool.connect("rs-cbor", shard=0)
        await publish_n(pub, "hist.pre.a", ["a1"])
        await publish_n(pub, "hist.pre.b", ["b1"])
        await publish_n(pub, "hist.pre.a", ["a2"])
        await publish_n(pub, "hist.x.w", ["w1"])
        await publish_n(pub, "hist.x.y.w", ["not"])
        caller = await pool.connect("ws-msgpack", shard=1)
        pre = await caller.subscribe(lambda *a, **k: None, "hist.pre", options=SubscribeOptions(match="prefix"))
        events = await caller.call("wamp.subscription.get_events", pre.id)
        assert [e["args"][0] for e in events] == ["a2", "b1", "a1"]
        assert events[0]["details"]["topic"] == "hist.pre.a"
        only_a = await caller.call("wamp.subscription.get_events", pre.id, topic="hist.pre.a")
        assert [e["args"][0] for e in only_a] == ["a1", "a2"]
        w = await caller.subscribe(lambda *a, **k: None, "hist..w", options=SubscribeOptions(match="wildcard"))
        assert [e["args"][0] for e in await caller.call("wamp.subscription.get_events", w.id)] == ["w1"]
        exact = await caller.subscribe(lambda *a, **k: None, "hist.pre")
        assert await call_error(caller, "wamp.subscription.get_events", exact.id) == "wamp.error.history_unavailable"


async def test_get_events_errors_and_meta_switch(store_router):
    async with Pool(store_router) as pool:
        caller = await pool.connect("ws-json", shard=0)
        sub = await caller.subscribe(lambda *a: None, "no.history.here")
        assert await call_error(caller, "wamp.subscription.get_events", sub.id) == "wamp.error.history_unavailable"
        assert await call_error(caller, "wamp.subscription.get_events", 12345) == "wamp.error.no_such_subscription"
        assert await call_error(caller, "wamp.subscription.get_events", "x") == "wamp.error.invalid_argument"
        hist = await caller.subscribe(lambda *a: None, "hist.exact")
        assert await call_error(caller, "wamp.subscription.get_events", hist.id, 0) == "wamp.error.invalid_argument"
        plain = await pool.connect("ws-json", shard=1, realm="plain")
        psub = await plain.subscribe(lambda *a: None, "hist.exact")
        assert await call_error(plain, "wamp.subscription.get_events", psub.id) == "wamp.error.history_unavailable"
        quiet = await pool.connect("ws-json", shard=1, realm="quiet")
        qsub = await quiet.subscribe(lambda *a: None, "hist.exact")
        assert await call_error(quiet, "wamp.subscription.get_events", qsub.id) == "wamp.error.no_such_procedure"


@pytest.mark.parametrize(
    "history, key",
    [
        ('uri = "a"\nmatch = "fuzzy"', "realm[0].history[0].match"),
        ('limit = 3', "realm[0].history[0].uri"),
        ('uri = "a"\nlimit = 0', "realm[0].history[0].limit"),
        ('uri = "a"\nlimit = 100001', "realm[0].history[0].limit"),
        ('uri = "wamp.session.on_join"', "realm[0].history[0].uri"),
    ],
)
def test_bad_history_config_names_the_key(make_router, history, key):
    # Goal: the binary refuses a bad [[realm.history]] at start with a message that names
    # the file's key.
    with pytest.raises(RuntimeError) as e:
        make_router(name="badhist", realms=[{"name": "realm1"}], extra_toml="[[realm.history]]\n" + history + "\n")
    assert f"key `{key}`" in str(e.value), str(e.value)[-2000:]
