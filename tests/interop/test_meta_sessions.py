"""The session meta API (wamp.session.*) through the real router with Autobahn|Python:
answers gathered over both shards, the meta events, kills, the realm switch."""

from __future__ import annotations

import asyncio

import pytest
from autobahn.wamp.exception import ApplicationError

from abclient import Pool, other

REALMS = [{"name": "m1"}, {"name": "m2"}, {"name": "quiet", "meta_api": False}]


@pytest.fixture
def meta_router(make_router):
    return make_router(name="meta", realms=REALMS, limits={"ping_interval_ms": 0})


async def call_error(session, proc, *args, **kwargs) -> str:
    with pytest.raises(ApplicationError) as e:
        await session.call(proc, *args, **kwargs)
    return e.value.error


async def test_count_list_get_cover_both_shards(meta_router):
    # Goal: count/list/get see the sessions of every shard of the caller's realm, and only
    # those; get returns Autobahn's SessionDetails keys.
    # Method: sessions on both shards in m1, one in m2; the caller on shard 0 asks.
    async with Pool(meta_router) as pool:
        caller = await pool.connect("ws-json", shard=0, realm="m1")
        a = await pool.connect("rs-msgpack", shard=1, realm="m1")
        b = await pool.connect("ws-cbor", shard=0, realm="m1")
        await pool.connect("ws-json", shard=1, realm="m2")
        ids = sorted(s.details.session for s in (caller, a, b))
        assert await caller.call("wamp.session.count") == 3
        assert await caller.call("wamp.session.list") == ids
        assert await caller.call("wamp.session.count", ["anonymous"]) == 3
        assert await caller.call("wamp.session.count", ["nobody"]) == 0
        assert await caller.call("wamp.session.list", ["nobody"]) == []
        d = await caller.call("wamp.session.get", a.details.session)
        assert d["session"] == a.details.session and d["realm"] == "m1"
        assert d["authid"] == a.details.authid and d["authrole"] == "anonymous"
        assert d["authmethod"] == "anonymous" and d["authprovider"] == "static"
        assert d["transport"]["type"] == "rawsocket" and d["transport"]["serializer"] == "msgpack"
        assert d["transport"]["peer"].startswith("tcp4:127.0.0.1:")
        assert await call_error(caller, "wamp.session.get", 1) == "wamp.error.no_such_session"
        assert await call_error(caller, "wamp.session.get", "x") == "wamp.error.invalid_argument"


async def arrived(box: dict, key, timeout: float = 5.0):
    """The event stored under ``key`` in ``box``, once it is there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while key not in box:
        assert loop.time() < deadline, f"no event for {key} in {timeout} s"
        await asyncio.sleep(0.02)
    return box[key]


async def test_on_join_and_on_leave_reach_a_listener_on_the_other_shard(meta_router):
    # Goal: wamp.session.on_join carries the details dict, on_leave the spec's
    # [session, authid, authrole], as ordinary events to a subscriber on another shard.
    async with Pool(meta_router) as pool:
        listener = await pool.connect("ws-json", shard=0, realm="m1")
        joins, leaves = {}, {}
        await listener.subscribe(lambda d: joins.setdefault(d["session"], d), "wamp.session.on_join")
        await listener.subscribe(lambda *a: leaves.setdefault(a[0], a), "wamp.session.on_leave")
        # Shard placement may open and drop other sessions first: match by session ID.
        joiner = await pool.connect("rs-cbor", shard=other(0), realm="m1")
        sid = joiner.details.session
        d = await arrived(joins, sid)
        assert d["authrole"] == "anonymous" and d["authid"] == joiner.details.authid
        assert d["transport"]["type"] == "rawsocket"
        assert sid not in leaves
        await joiner.close()
        assert list(await arrived(leaves, sid)) == [sid, joiner.details.authid, "anonymous"]


async def test_kill_reaches_a_session_on_the_other_shard(meta_router):
    # Goal: kill ends a session on any shard with the given reason and message; a session
    # cannot kill itself, nor an unknown or other-realm session; kill_by_authrole spares the
    # caller; kill_all answers the number killed.
    async with Pool(meta_router) as pool:
        caller = await pool.connect("ws-json", shard=0, realm="m1")
        victim = await pool.connect("ws-msgpack", shard=1, realm="m1")
        elsewhere = await pool.connect("ws-json", shard=1, realm="m2")
        me = caller.details.session
        assert await call_error(caller, "wamp.session.kill", me) == "wamp.error.no_such_session"
        assert await call_error(caller, "wamp.session.kill", elsewhere.details.session) == "wamp.error.no_such_session"
        r = await caller.call("wamp.session.kill", victim.details.session, reason="com.example.bye", message="go")
        assert r is None
        left = await asyncio.wait_for(victim.left, 5)
        assert left.reason == "com.example.bye" and left.message == "go"
        assert await call_error(caller, "wamp.session.kill", victim.details.session) == "wamp.error.no_such_session"
        assert await call_error(caller, "wamp.session.kill", 5, reason="not a uri!") == "wamp.error.invalid_argument"

        v0 = await pool.connect("ws-json", shard=0, realm="m1")
        v1 = await pool.connect("rs-json", shard=1, realm="m1")
        killed = await caller.call("wamp.session.kill_by_authrole", "anonymous")
        assert killed == sorted([v0.details.session, v1.details.session])
        for v in (v0, v1):
            assert (await asyncio.wait_for(v.left, 5)).reason == "wamp.close.killed"
        assert caller.is_attached() and elsewhere.is_attached()

        v2 = await pool.connect("ws-json", shard=1, realm="m1")
        assert await caller.call("wamp.session.kill_by_authid", v2.details.authid) == [v2.details.session]
        await pool.connect("ws-json", shard=0, realm="m1")
        await pool.connect("ws-json", shard=1, realm="m1")
        assert await caller.call("wamp.session.kill_all") == 2
        assert await caller.call("wamp.session.count") == 1
        assert elsewhere.is_attached()


async def test_meta_api_off_in_a_realm(meta_router):
    # Goal: with meta_api = false the procedures do not exist and no meta events are sent.
    async with Pool(meta_router) as pool:
        s = await pool.connect("ws-json", shard=0, realm="quiet")
        joins = asyncio.Queue()
        await s.subscribe(lambda d: joins.put_nowait(d), "wamp.session.on_join")
        assert await call_error(s, "wamp.session.count") == "wamp.error.no_such_procedure"
        await pool.connect("ws-json", shard=1, realm="quiet")
        await pool.connect("ws-json", shard=0, realm="quiet")
        # The joins above happened before these RPC round trips finished on both shards.
        assert await call_error(s, "wamp.session.list") == "wamp.error.no_such_procedure"
        await asyncio.sleep(0.2)
        assert joins.empty()
        # An unknown wamp.* procedure is no_such_procedure in any realm.
        m = await pool.connect("ws-json", realm="m1")
        assert await call_error(m, "wamp.session.nope") == "wamp.error.no_such_procedure"
