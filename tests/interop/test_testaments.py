"""Testaments (wamp.session.add_testament / flush_testaments) through the real router with
Autobahn|Python: a session's testaments reach a subscriber on the other shard when it
ends — GOODBYE, a dropped transport, its process killed, wamp.session.kill, a liveness
ping timeout, a slow-consumer disconnect — as that
session's publications, detached before destroyed, in insertion order, before
wamp.session.on_leave; flush, bad scope, bad arguments, the bounds, authorization, the
realm's meta API switch and the WELCOME announcement."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

import rawwamp as rw
from abclient import Pool, other
from test_auth import login, ticket
from test_metrics import scrape, total

ADD = "wamp.session.add_testament"
FLUSH = "wamp.session.flush_testaments"
TOPIC = "com.example.presence"
ACK = PublishOptions(acknowledge=True)

# Mirrors limits::SESSION_TESTAMENTS_MAX and SESSION_TESTAMENT_BYTES_MAX.
SESSION_TESTAMENTS_MAX = 64
SESSION_TESTAMENT_BYTES_MAX = 64 * 1024

ROLES = """
[[realm.role]]
name = "writer"
permissions = [
  { uri = "wamp.session.", match = "prefix", allow = { call = true } },
  { uri = "com.example.", match = "prefix", allow = { publish = true, subscribe = true } },
  { uri = "com.example.secret", allow = { subscribe = true } },
  { uri = "com.example.loud", allow = { publish = true }, disclose = { publisher = true } },
]
[[realm.role]]
name = "trusted"
permissions = [{ uri = "*", allow = { call = true, register = true, publish = true, subscribe = true } }]
[[realm.role]]
name = "dyn"
authorizer = "com.example.authorize"
"""

PRINCIPALS = """
[listener.auth.ticket]
principals = [
  { authid = "w1", ticket = "w", role = "writer" },
  { authid = "backend", ticket = "b", role = "trusted" },
  { authid = "d1", ticket = "d", role = "dyn" },
]
"""


@pytest.fixture
def trouter(make_router):
    return make_router(name="testament", realms=[{"name": "realm1"}, {"name": "quiet", "meta_api": False}],
                       limits={"ping_interval_ms": 0})


async def call_error(session, proc, *args, **kwargs) -> ApplicationError:
    with pytest.raises(ApplicationError) as e:
        await session.call(proc, *args, **kwargs)
    return e.value


class Listener:
    """A session that records, in arrival order, the events on ``topic`` as
    ``("event", args, kwargs, details)`` and wamp.session.on_leave as ``("leave", session)``."""

    @classmethod
    async def create(cls, pool: Pool, shard: int, topic: str = TOPIC, kind: str = "ws-json") -> "Listener":
        w = cls()
        w.seen = []
        w.changed = asyncio.Event()
        w.session = await pool.connect(kind, shard=shard)

        def on_event(*args, details=None, **kwargs):
            w.seen.append(("event", list(args), kwargs, details))
            w.changed.set()

        def on_leave(session, authid, authrole):
            w.seen.append(("leave", session))
            w.changed.set()

        await w.session.subscribe(on_event, topic, options=SubscribeOptions(details_arg="details"))
        await w.session.subscribe(on_leave, "wamp.session.on_leave")
        return w

    async def until_left(self, session: int, timeout: float = 10):
        """Wait for the on_leave of ``session``; the events on the topic seen before it (other
        sessions' on_leave are left out: placing a session on a shard closes the misplaced)."""

        async def wait():
            while ("leave", session) not in self.seen:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)
        return [e for e in self.seen[: self.seen.index(("leave", session))] if e[0] == "event"]


def labels(events) -> list:
    return [e[1][0] for e in events]


async def test_goodbye_publishes_detached_then_destroyed_in_order_before_on_leave(trouter):
    # Goal: on GOODBYE the testaments reach a subscriber on the other shard as the leaving
    # session's publications: after its earlier event, detached before destroyed, each in
    # insertion order, args and kwargs intact, with the publication IDs add_testament
    # returned, disclosed only when publish_options asked, and all before on_leave.
    async with Pool(trouter) as pool:
        lis = await Listener.create(pool, shard=0)
        dying = await pool.connect("rs-msgpack", shard=other(0))
        me = dying.details.session
        ids = {}
        ids["d1"] = await dying.call(ADD, TOPIC, ["d1", 1.5, [1, 2]], {"who": "app1", "nested": {"a": [None, True]}},
                                     publish_options={"disclose_me": True})
        ids["a1"] = await dying.call(ADD, TOPIC, ["a1"], {}, scope="detached")
        ids["d2"] = await dying.call(ADD, TOPIC, ["d2"], {"n": 2}, scope="destroyed")
        ids["a2"] = await dying.call(ADD, TOPIC, ["a2"], {}, None, "detached")
        assert all(isinstance(i, int) and i > 0 for i in ids.values()) and len(set(ids.values())) == 4
        dying.publish(TOPIC, "before")
        await dying.close()
        events = await lis.until_left(me)
        assert labels(events) == ["before", "a1", "a2", "d1", "d2"]
        by_label = {e[1][0]: e for e in events}
        d1 = by_label["d1"]
        assert d1[1] == ["d1", 1.5, [1, 2]] and d1[2] == {"who": "app1", "nested": {"a": [None, True]}}
        assert d1[3].publisher == me and d1[3].publisher_authrole == "anonymous"
        assert by_label["d2"][2] == {"n": 2} and by_label["d2"][3].publisher is None
        assert {k: by_label[k][3].publication for k in ids} == ids


async def test_dropped_transport_publishes_testaments(trouter):
    # Goal: a session whose TCP connection is cut without GOODBYE still leaves its
    # testaments, before on_leave. Method: abort the transport (RST) under Autobahn.
    async with Pool(trouter) as pool:
        lis = await Listener.create(pool, shard=1, kind="rs-cbor")
        dying = await pool.connect("ws-cbor", shard=other(1))
        me = dying.details.session
        await dying.call(ADD, TOPIC, ["lost", me], {"reason": "transport"})
        dying._transport.transport.abort()
        events = await lis.until_left(me)
        assert events == [("event", ["lost", me], {"reason": "transport"}, events[0][3])]
        assert events[0][3].publisher is None


async def silent_session(router, shard: int):
    """A raw RawSocket session on ``shard`` with a 4 KiB receive buffer (a peer that stops
    reading fills it at once) that has left one testament ``[label]`` on TOPIC."""
    for _ in range(64):
        c = await rw.RawSocketConn.open(port=router.port, serializer="msgpack", rcvbuf=4096)
        await c.hello("realm1")
        if c.shard == shard:
            break
        c.close()
    assert c.shard == shard
    return c


async def add_raw(c, label: str):
    m = await c.call_expect([rw.CALL, c.request_id(), {}, ADD, [TOPIC, [label], {}]], rw.RESULT)
    assert m[0] == rw.RESULT, m


async def test_ping_timeout_publishes_testaments(make_router):
    # Goal: a session reaped for not answering liveness pings leaves its testament, before
    # on_leave, on the other shard. Method: a raw client that stops answering pings (and
    # keeps reading); the Autobahn listener answers its WebSocket pings.
    limits = {"ping_interval_ms": 300, "ping_timeout_ms": 1500, "rawsocket_ping": "always"}
    router = make_router(name="testament-ping", limits=limits)
    async with Pool(router) as pool:
        lis = await Listener.create(pool, shard=0, kind="ws-json")
        dying = pool.track_raw(await silent_session(router, other(0)))
        await add_raw(dying, "reaped")
        dying.answer_pings = False
        _, closed = await dying.recv_closed(timeout=15)
        assert closed is not None
        events = await lis.until_left(dying.session_id)
        assert labels(events) == ["reaped"]
        assert "liveness ping timed out" in router.log_text()


async def test_slow_consumer_disconnect_publishes_testaments(make_router):
    # Goal: a subscriber disconnected as a slow consumer leaves its testament, before
    # on_leave. Method: it subscribes to a flood topic and stops reading; an Autobahn
    # publisher sends 64 KiB events until the router gives up on it (pending_bytes_max 1 MiB
    # plus what the socket buffers take).
    limits = {"pending_bytes_max": 1 << 20, "write_deadline_ms": 30000, "ping_interval_ms": 0}
    router = make_router(name="testament-slow", limits=limits)
    flood = "com.example.flood"
    async with Pool(router) as pool:
        lis = await Listener.create(pool, shard=0, kind="ws-json")
        dying = pool.track_raw(await silent_session(router, other(0)))
        await add_raw(dying, "too slow")
        await dying.subscribe(flood)
        pub = await pool.connect("rs-msgpack", shard=0)
        payload = "x" * 65536
        for i in range(2000):
            if ("leave", dying.session_id) in lis.seen:
                break
            await pub.publish(flood, i, payload, options=ACK)
        events = await lis.until_left(dying.session_id)
        assert labels(events) == ["too slow"]
        assert "slow consumer disconnected" in router.log_text()


CHILD = r"""
import asyncio, sys, types
sys.path.insert(0, sys.argv[1])
from abclient import connect

async def main():
    router = types.SimpleNamespace(port=int(sys.argv[2]), unix_path=None)
    s = await connect(router, "rs-json", shard=int(sys.argv[3]))
    await s.call("wamp.session.add_testament", sys.argv[4], ["killed"], {"pid": __import__("os").getpid()})
    print("ready", s.details.session, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_killed_client_process_leaves_its_testament(trouter):
    # Goal: the testament survives the client process dying by SIGKILL (the kernel closes
    # its socket; the router sees the transport end). Method: a child Python process joins
    # on shard 1, adds a testament, prints "ready <session>", and is killed.
    async with Pool(trouter) as pool:
        lis = await Listener.create(pool, shard=0)
        here = str(Path(__file__).parent)
        child = subprocess.Popen([sys.executable, "-c", CHILD, here, str(trouter.port), "1", TOPIC],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
            assert line.startswith("ready "), (line, child.stderr.read() if child.poll() is not None else "")
            session = int(line.split()[1])
            os.kill(child.pid, signal.SIGKILL)
            events = await lis.until_left(session)
            assert [(e[1], e[2]) for e in events] == [(["killed"], {"pid": child.pid})]
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(10)


async def test_kill_from_another_session_publishes_testaments(trouter):
    # Goal: wamp.session.kill ends the victim (on the other shard) and its testaments go
    # out before on_leave, their exclude/eligible filters honoured; the killer's own
    # testaments stay (it is still there).
    async with Pool(trouter) as pool:
        lis = await Listener.create(pool, shard=0)
        killer = await pool.connect("ws-json", shard=0)
        victim = await pool.connect("ws-msgpack", shard=1)
        await killer.call(ADD, TOPIC, ["killer"], {})
        await victim.call(ADD, TOPIC, ["victim-destroyed"], {})
        await victim.call(ADD, TOPIC, ["victim-detached"], {}, scope="detached")
        me = lis.session.details.session
        await victim.call(ADD, TOPIC, ["excluded"], {}, publish_options={"exclude": [me]})
        await victim.call(ADD, TOPIC, ["eligible"], {}, publish_options={"eligible": [me]})
        await victim.call(ADD, TOPIC, ["not-eligible"], {}, publish_options={"eligible": [me + 1]})
        await killer.call("wamp.session.kill", victim.details.session)
        events = await lis.until_left(victim.details.session)
        assert labels(events) == ["victim-detached", "victim-destroyed", "eligible"]
        await asyncio.wait_for(victim.left, 5)


async def test_flush_removes_and_answers_the_count(trouter):
    # Goal: flush_testaments removes its scope only (default destroyed) and answers how many
    # it removed; what is left is published, nothing flushed is.
    async with Pool(trouter) as pool:
        lis = await Listener.create(pool, shard=0)
        dying = await pool.connect("rs-json", shard=1)
        for label in ("x1", "x2"):
            await dying.call(ADD, TOPIC, [label], {})
        await dying.call(ADD, TOPIC, ["kept"], {}, scope="detached")
        assert await dying.call(FLUSH) == 2
        assert await dying.call(FLUSH) == 0
        await dying.call(ADD, TOPIC, ["after"], {})
        assert await dying.call(FLUSH, scope="detached") == 1
        await dying.call(ADD, TOPIC, ["kept"], {}, scope="detached")
        await dying.close()
        assert labels(await lis.until_left(dying.details.session)) == ["kept", "after"]


async def test_bad_scope_topic_and_arguments_are_refused(trouter):
    # Goal: a bad scope is wamp.error.testament_error (add and flush), a reserved or
    # malformed topic wamp.error.invalid_uri, wrongly typed arguments or publish options
    # wamp.error.invalid_argument; none of them is published.
    async with Pool(trouter) as pool:
        lis = await Listener.create(pool, shard=0)
        s = await pool.connect("ws-json", shard=1)
        assert (await call_error(s, ADD, TOPIC, [], {}, scope="forever")).error == "wamp.error.testament_error"
        assert (await call_error(s, ADD, TOPIC, [], {}, scope=5)).error == "wamp.error.testament_error"
        assert (await call_error(s, FLUSH, scope="never")).error == "wamp.error.testament_error"
        assert (await call_error(s, ADD, "wamp.session.on_leave", [], {})).error == "wamp.error.invalid_uri"
        assert (await call_error(s, ADD, "com..bad", [], {})).error == "wamp.error.invalid_uri"
        assert (await call_error(s, ADD, 42, [], {})).error == "wamp.error.invalid_argument"
        assert (await call_error(s, ADD, TOPIC, "args", {})).error == "wamp.error.invalid_argument"
        assert (await call_error(s, ADD, TOPIC, [], [])).error == "wamp.error.invalid_argument"
        e = await call_error(s, ADD, TOPIC, [], {}, publish_options={"eligible": "everyone"})
        assert e.error == "wamp.error.invalid_argument"
        await s.close()
        assert await lis.until_left(s.details.session) == []


async def test_bounds_refuse_with_testament_error_and_are_counted(trouter):
    # Goal: the count and byte bounds per session refuse with wamp.error.testament_error
    # and a message; refusals and stored testaments show in /metrics; a flush makes room.
    async with Pool(trouter) as pool:
        s = await pool.connect("ws-msgpack", shard=0)
        for i in range(SESSION_TESTAMENTS_MAX):
            await s.call(ADD, TOPIC, [i], {})
        e = await call_error(s, ADD, TOPIC, ["one too many"], {}, scope="detached")
        assert e.error == "wamp.error.testament_error" and "at most" in e.args[0]
        samples = scrape(trouter.metrics_port)
        assert total(samples, "shardbar_testaments_stored") == SESSION_TESTAMENTS_MAX
        assert total(samples, "shardbar_testaments_refused_total") == 1
        assert await s.call(FLUSH) == SESSION_TESTAMENTS_MAX
        e = await call_error(s, ADD, TOPIC, ["x" * (SESSION_TESTAMENT_BYTES_MAX + 1)], {})
        assert e.error == "wamp.error.testament_error" and "bytes" in e.args[0]
        await s.call(ADD, TOPIC, ["x" * (SESSION_TESTAMENT_BYTES_MAX // 2)], {})
        samples = scrape(trouter.metrics_port)
        assert total(samples, "shardbar_testaments_refused_total") == 2
        assert total(samples, "shardbar_testaments_stored") == 1
        assert total(samples, "shardbar_testament_bytes_stored") > SESSION_TESTAMENT_BYTES_MAX // 2
        await s.close()
        await asyncio.sleep(0.2)
        samples = scrape(trouter.metrics_port)
        assert total(samples, "shardbar_testaments_published_total") == 1
        assert total(samples, "shardbar_testaments_stored") == 0


async def test_meta_api_switch_and_welcome(trouter):
    # Goal: WELCOME announces testament_meta_api on the dealer where the realm's meta API
    # is on, and not where it is off; there the procedures do not exist.
    async with Pool(trouter) as pool:
        on = await pool.connect("ws-json", shard=0)
        assert on._router_roles["dealer"].testament_meta_api is True
        off = await pool.connect("ws-json", shard=1, realm="quiet")
        assert not off._router_roles["dealer"].testament_meta_api
        assert (await call_error(off, ADD, TOPIC, [], {})).error == "wamp.error.no_such_procedure"
        assert (await call_error(off, FLUSH)).error == "wamp.error.no_such_procedure"


@pytest.fixture
def authz_router(make_router):
    return make_router(name="testament-authz", listener_toml=PRINCIPALS, unix_listener_toml=PRINCIPALS,
                       extra_toml=ROLES, limits={"ping_interval_ms": 0})


async def test_authorization_is_checked_when_added(authz_router):
    # Goal: a testament is accepted only where its session may PUBLISH: a denied topic is
    # wamp.error.not_authorized at add time; a rule's forced publisher disclosure applies to
    # the testament; a role with a dynamic authorizer is refused with a clear message.
    async with Pool(authz_router) as pool:
        backend = await login(authz_router, "ws-json", ["ticket"], "backend", ticket("b"), shard=0)
        pool.clients.append(backend)
        await backend.register(lambda *a: True, "com.example.authorize")
        lis = Listener()
        lis.seen, lis.changed, lis.session = [], asyncio.Event(), backend

        def on_event(*args, details=None, **kwargs):
            lis.seen.append(("event", list(args), kwargs, details))
            lis.changed.set()

        def on_leave(session, authid, authrole):
            lis.seen.append(("leave", session))
            lis.changed.set()

        opts = SubscribeOptions(match="prefix", details_arg="details")
        await backend.subscribe(on_event, "com.example.", options=opts)
        await backend.subscribe(on_leave, "wamp.session.on_leave")
        writer = await login(authz_router, "rs-msgpack", ["ticket"], "w1", ticket("w"), shard=1)
        pool.clients.append(writer)
        e = await call_error(writer, ADD, "com.example.secret", ["no"], {})
        assert e.error == "wamp.error.not_authorized" and "com.example.secret" in e.args[0]
        assert (await call_error(writer, ADD, "org.other", [], {})).error == "wamp.error.not_authorized"
        await writer.call(ADD, "com.example.loud", ["loud"], {})
        await writer.call(ADD, "com.example.quiet", ["quiet"], {})
        dyn = await login(authz_router, "ws-json", ["ticket"], "d1", ticket("d"), shard=1)
        pool.clients.append(dyn)
        e = await call_error(dyn, ADD, "com.example.x", [], {})
        assert e.error == "wamp.error.not_authorized" and "dynamic authorizer" in e.args[0]
        await writer.close()
        events = await lis.until_left(writer.details.session)
        assert labels(events) == ["loud", "quiet"]
        assert events[0][3].publisher == writer.details.session and events[1][3].publisher is None
