"""The subscription and registration meta API (wamp.subscription.*, wamp.registration.*)
through a private 2-shard router with Autobahn|Python: every procedure and error, the
lifecycle events with their payloads and order across shards, removals, the realm switch,
and the WELCOME announcement."""

from __future__ import annotations

import asyncio
import copy
import functools
from datetime import datetime, timezone

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions

from abclient import Pool, other
from rawwamp import CLIENT_ROLES, UNSUBSCRIBED, raw_session

REALMS = [{"name": "m1"}, {"name": "m2"}, {"name": "quiet", "meta_api": False}]
SUB_EVENTS = ["on_create", "on_subscribe", "on_unsubscribe", "on_delete"]
REG_EVENTS = ["on_create", "on_register", "on_unregister", "on_delete"]
MATCH = {"exact": 0, "prefix": 1, "wildcard": 2}
MISSING = 999_999  # its owner bits (63) name no shard of a 2-shard router


@pytest.fixture
def meta_router(make_router):
    return make_router(name="metaps", realms=REALMS, limits={"ping_interval_ms": 0})


def owner_shard(realm: str, uri: str, match: str = "exact", shards: int = 2) -> int:
    """The router's owner of (realm, uri, match): FNV-1a as in `Out::owner_shard`."""
    h = 0xCBF29CE484222325
    for b in realm.encode() + b"\0" + uri.encode() + bytes([MATCH[match]]):
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % shards


def uri_owned_by(shard: int, base: str, realm: str = "m1", match: str = "exact") -> str:
    """A URI under ``base`` whose subscription/registration the given shard owns."""
    for i in range(1000):
        uri = f"{base}.n{i}"
        if owner_shard(realm, uri, match) == shard:
            return uri
    raise AssertionError("no URI found")


def owner_of(id_: int) -> int:
    return id_ & 63


async def call_error(session, proc, *args, **kwargs) -> str:
    with pytest.raises(ApplicationError) as e:
        await session.call(proc, *args, **kwargs)
    return e.value.error


def check_created(text: str):
    """`created` is ISO 8601 UTC with milliseconds, and about now."""
    t = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - t).total_seconds()) < 60, text


async def until(pred, timeout: float = 5.0):
    """Poll ``await pred()`` until truthy (route removals reach replicas asynchronously)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        v = await pred()
        if v or loop.time() > deadline:
            return v
        await asyncio.sleep(0.02)


class Listener:
    """A session subscribed to all eight lifecycle events, recording them in arrival order."""

    @classmethod
    async def create(cls, session) -> "Listener":
        li = cls()
        li.events = []
        for kind, names in (("subscription", SUB_EVENTS), ("registration", REG_EVENTS)):
            for n in names:
                uri = f"wamp.{kind}.{n}"
                await session.subscribe(functools.partial(li._on, f"{kind}.{n}"), uri)
        return li

    def _on(self, name, *args):
        self.events.append((name, list(args)))

    def of(self, session_id: int, kind: str = ""):
        return [(n, a) for n, a in self.events if a and a[0] == session_id and n.startswith(kind)]

    async def wait_of(self, session_id: int, n: int, kind: str = "", timeout: float = 5.0):
        async def enough():
            return len(self.of(session_id, kind)) >= n

        await until(enough, timeout)
        await asyncio.sleep(0.1)  # anything extra would show up too
        return self.of(session_id, kind)


async def test_subscription_procedures_across_shards(meta_router):
    # Goal: list/lookup/match answer from the route replica (all three policies), get from
    # the owner (created, uri, match), subscribers from both shards; errors for unknown IDs
    # and bad arguments; another realm sees none of it.
    async with Pool(meta_router) as pool:
        caller = await pool.connect("ws-json", shard=0, realm="m1")
        a = await pool.connect("rs-msgpack", shard=1, realm="m1")
        b = await pool.connect("ws-cbor", shard=0, realm="m1")
        elsewhere = await pool.connect("ws-json", shard=1, realm="m2")
        aid, bid = a.details.session, b.details.session
        sa = await a.subscribe(lambda *x: None, "com.ps.one")
        sb = await b.subscribe(lambda *x: None, "com.ps.one")
        ex = sa.id
        assert sb.id == ex
        px = (await a.subscribe(lambda *x: None, "com.ps", SubscribeOptions(match="prefix"))).id
        wx = (await b.subscribe(lambda *x: None, "com..one", SubscribeOptions(match="wildcard"))).id

        lst = await caller.call("wamp.subscription.list")
        assert set(lst) == {"exact", "prefix", "wildcard"}
        assert ex in lst["exact"] and px in lst["prefix"] and wx in lst["wildcard"]
        assert await caller.call("wamp.subscription.list", aid) == {"exact": [ex], "prefix": [px], "wildcard": []}
        assert await caller.call("wamp.subscription.list", bid) == {"exact": [ex], "prefix": [], "wildcard": [wx]}

        assert await caller.call("wamp.subscription.lookup", "com.ps.one") == ex
        assert await caller.call("wamp.subscription.lookup", "com.ps", {"match": "prefix"}) == px
        assert await caller.call("wamp.subscription.lookup", "com..one", match="wildcard") == wx
        assert await caller.call("wamp.subscription.lookup", "com.ps") is None
        assert await caller.call("wamp.subscription.match", "com.ps.one") == sorted([ex, px, wx])
        assert await caller.call("wamp.subscription.match", "com.ps.two") == [px]
        assert await caller.call("wamp.subscription.match", "org.nothing") is None

        for sid, uri, match in ((ex, "com.ps.one", "exact"), (px, "com.ps", "prefix"), (wx, "com..one", "wildcard")):
            d = await caller.call("wamp.subscription.get", sid)
            assert set(d) == {"id", "created", "uri", "match"}
            assert (d["id"], d["uri"], d["match"]) == (sid, uri, match)
            check_created(d["created"])
            assert owner_of(sid) == owner_shard("m1", uri, match)

        assert await caller.call("wamp.subscription.list_subscribers", ex) == sorted([aid, bid])
        assert await caller.call("wamp.subscription.count_subscribers", ex) == 2
        assert await caller.call("wamp.subscription.list_subscribers", px) == [aid]
        assert await caller.call("wamp.subscription.count_subscribers", wx) == 1

        nosub = "wamp.error.no_such_subscription"
        for bogus in (MISSING, ex + 64 * 1000):
            assert await call_error(caller, "wamp.subscription.get", bogus) == nosub
            assert await call_error(caller, "wamp.subscription.list_subscribers", bogus) == nosub
            assert await call_error(caller, "wamp.subscription.count_subscribers", bogus) == nosub
        bad = "wamp.error.invalid_argument"
        assert await call_error(caller, "wamp.subscription.get", "x") == bad
        assert await call_error(caller, "wamp.subscription.get") == bad
        assert await call_error(caller, "wamp.subscription.lookup", 7) == bad
        assert await call_error(caller, "wamp.subscription.lookup", "com.ps", {"match": "nope"}) == bad
        assert await call_error(caller, "wamp.subscription.match", None) == bad
        assert await call_error(caller, "wamp.subscription.list", MISSING) == "wamp.error.no_such_session"

        # Another realm: none of m1's IDs, nor m1's sessions.
        assert await call_error(elsewhere, "wamp.subscription.get", ex) == nosub
        assert await call_error(elsewhere, "wamp.subscription.list_subscribers", ex) == nosub
        assert await call_error(elsewhere, "wamp.subscription.list", aid) == "wamp.error.no_such_session"
        assert await elsewhere.call("wamp.subscription.lookup", "com.ps.one") is None
        assert ex not in (await elsewhere.call("wamp.subscription.list"))["exact"]

        # Unsubscribed everywhere: gone from the owner and every replica.
        await sa.unsubscribe()
        await sb.unsubscribe()

        async def gone():
            return await caller.call("wamp.subscription.lookup", "com.ps.one") is None

        assert await until(gone)
        assert await call_error(caller, "wamp.subscription.get", ex) == nosub


async def test_registration_procedures_across_shards(meta_router):
    # Goal: the registration mirror: list/lookup from the replica, match the single best
    # match, get with invoke, callees from the owner; errors; realm isolation.
    async with Pool(meta_router) as pool:
        caller = await pool.connect("ws-json", shard=0, realm="m1")
        a = await pool.connect("rs-cbor", shard=1, realm="m1")
        b = await pool.connect("ws-msgpack", shard=0, realm="m1")
        elsewhere = await pool.connect("ws-json", shard=1, realm="m2")
        aid, bid = a.details.session, b.details.session
        ex = (await a.register(lambda: 1, "com.pr.one")).id
        px = (await b.register(lambda: 2, "com.pr", RegisterOptions(match="prefix"))).id
        wx = (await a.register(lambda: 3, "com..x", RegisterOptions(match="wildcard"))).id
        sh = (await a.register(lambda: 4, "com.pr_shared", RegisterOptions(invoke="roundrobin"))).id
        assert (await b.register(lambda: 5, "com.pr_shared", RegisterOptions(invoke="roundrobin"))).id == sh

        lst = await caller.call("wamp.registration.list")
        assert set(lst) == {"exact", "prefix", "wildcard"}
        assert {ex, sh} <= set(lst["exact"]) and px in lst["prefix"] and wx in lst["wildcard"]
        assert await caller.call("wamp.registration.list", aid) == {"exact": sorted([ex, sh]), "prefix": [],
                                                                     "wildcard": [wx]}
        assert await caller.call("wamp.registration.lookup", "com.pr.one") == ex
        assert await caller.call("wamp.registration.lookup", "com.pr", {"match": "prefix"}) == px
        assert await caller.call("wamp.registration.lookup", "com.pr") is None
        assert await caller.call("wamp.registration.match", "com.pr.one") == ex
        assert await caller.call("wamp.registration.match", "com.pr.two") == px
        assert await caller.call("wamp.registration.match", "com.y.x") == wx
        assert await caller.call("wamp.registration.match", "org.none") is None

        for rid, uri, match, invoke in ((ex, "com.pr.one", "exact", "single"), (px, "com.pr", "prefix", "single"),
                                        (sh, "com.pr_shared", "exact", "roundrobin")):
            d = await caller.call("wamp.registration.get", rid)
            assert set(d) == {"id", "created", "uri", "match", "invoke"}
            assert (d["id"], d["uri"], d["match"], d["invoke"]) == (rid, uri, match, invoke)
            check_created(d["created"])

        assert await caller.call("wamp.registration.list_callees", sh) == sorted([aid, bid])
        assert await caller.call("wamp.registration.count_callees", sh) == 2
        assert await caller.call("wamp.registration.list_callees", px) == [bid]
        assert await caller.call("wamp.registration.count_callees", ex) == 1

        noreg = "wamp.error.no_such_registration"
        for bogus in (MISSING, ex + 64 * 1000):
            assert await call_error(caller, "wamp.registration.get", bogus) == noreg
            assert await call_error(caller, "wamp.registration.list_callees", bogus) == noreg
            assert await call_error(caller, "wamp.registration.count_callees", bogus) == noreg
        bad = "wamp.error.invalid_argument"
        assert await call_error(caller, "wamp.registration.get", "x") == bad
        assert await call_error(caller, "wamp.registration.lookup", "com.pr", {"match": 3}) == bad
        assert await call_error(caller, "wamp.registration.match") == bad
        assert await call_error(caller, "wamp.registration.list", MISSING) == "wamp.error.no_such_session"

        assert await call_error(elsewhere, "wamp.registration.get", ex) == noreg
        assert await call_error(elsewhere, "wamp.registration.count_callees", sh) == noreg
        assert await elsewhere.call("wamp.registration.match", "com.pr.one") is None


async def test_subscription_events_in_order_across_shards(meta_router):
    # Goal: on_create precedes on_subscribe, and on_unsubscribe precedes on_delete, for a
    # listener on the other shard than the subscribing session, with the subscription owned
    # by either shard; a second subscriber (on the listener's shard) only subscribes and
    # unsubscribes; payload shapes.
    async with Pool(meta_router) as pool:
        for listener_shard in (0, 1):
            listener = await Listener.create(await pool.connect("ws-json", shard=listener_shard, realm="m1"))
            for owner in (0, 1):
                s = await pool.connect("rs-msgpack", shard=other(listener_shard), realm="m1")
                t = await pool.connect("ws-cbor", shard=listener_shard, realm="m1")
                sid, tid = s.details.session, t.details.session
                topic = uri_owned_by(owner, f"com.order.l{listener_shard}")
                sub = await s.subscribe(lambda *x: None, topic)
                assert owner_of(sub.id) == owner
                tsub = await t.subscribe(lambda *x: None, topic)
                await tsub.unsubscribe()
                await sub.unsubscribe()
                got = await listener.wait_of(sid, 4)
                assert [n for n, _ in got] == [f"subscription.{e}" for e in SUB_EVENTS], got
                (_, create), (_, subscribe), (_, unsubscribe), (_, delete) = got
                assert create[0] == sid and create[1]["id"] == sub.id and create[1]["uri"] == topic
                assert create[1]["match"] == "exact" and set(create[1]) == {"id", "created", "uri", "match"}
                check_created(create[1]["created"])
                assert subscribe == unsubscribe == delete == [sid, sub.id]
                tgot = await listener.wait_of(tid, 2)
                assert tgot == [("subscription.on_subscribe", [tid, sub.id]),
                                ("subscription.on_unsubscribe", [tid, sub.id])]


async def test_registration_events_in_order_across_shards(meta_router):
    # Goal: on_create precedes on_register and on_unregister precedes on_delete across
    # shards, for both owners; a shared registration's second callee only registers and
    # unregisters; payload shapes (on_create carries invoke).
    async with Pool(meta_router) as pool:
        for listener_shard in (0, 1):
            listener = await Listener.create(await pool.connect("ws-json", shard=listener_shard, realm="m1"))
            for owner in (0, 1):
                s = await pool.connect("rs-json", shard=other(listener_shard), realm="m1")
                t = await pool.connect("ws-msgpack", shard=listener_shard, realm="m1")
                sid, tid = s.details.session, t.details.session
                proc = uri_owned_by(owner, f"com.rorder.l{listener_shard}")
                opts = RegisterOptions(invoke="first")
                reg = await s.register(lambda: None, proc, opts)
                assert owner_of(reg.id) == owner
                treg = await t.register(lambda: None, proc, opts)
                await treg.unregister()
                await reg.unregister()
                got = await listener.wait_of(sid, 4)
                assert [n for n, _ in got] == [f"registration.{e}" for e in REG_EVENTS], got
                (_, create), (_, register), (_, unregister), (_, delete) = got
                assert create[0] == sid
                assert {k: create[1][k] for k in ("id", "uri", "match", "invoke")} == {
                    "id": reg.id, "uri": proc, "match": "exact", "invoke": "first"}
                check_created(create[1]["created"])
                assert register == unregister == delete == [sid, reg.id]
                tgot = await listener.wait_of(tid, 2)
                assert tgot == [("registration.on_register", [tid, reg.id]),
                                ("registration.on_unregister", [tid, reg.id])]


async def test_session_end_unsubscribes_and_unregisters(meta_router):
    # Goal: a session that leaves produces on_unsubscribe/on_delete and
    # on_unregister/on_delete for everything it held alone, on_unsubscribe only where others
    # remain; a meta-event listener subscribed to on_subscribe hears of its own subscription
    # once, and nothing recurses.
    async with Pool(meta_router) as pool:
        li_session = await pool.connect("ws-json", shard=0, realm="m1")
        listener = await Listener.create(li_session)
        # Its own subscriptions to the event topics are reported (at least its subscription to
        # on_subscribe, through itself), each once.
        own = [repr(e) for e in await listener.wait_of(li_session.details.session, 100, timeout=1)]
        assert own and len(own) == len(set(own)) <= 16
        stay = await pool.connect("ws-json", shard=0, realm="m1")
        shared = (await stay.subscribe(lambda *x: None, "com.end.shared")).id
        s = await pool.connect("rs-msgpack", shard=1, realm="m1")
        sid = s.details.session
        alone = (await s.subscribe(lambda *x: None, "com.end.alone")).id
        assert (await s.subscribe(lambda *x: None, "com.end.shared")).id == shared
        reg = (await s.register(lambda: None, "com.end.proc")).id
        await listener.wait_of(sid, 5)
        await s.close()
        got = await listener.wait_of(sid, 10)
        subs = [(n, a) for n, a in got[5:] if n.startswith("subscription")]
        regs = [(n, a) for n, a in got[5:] if n.startswith("registration")]
        assert sorted(subs) == sorted([("subscription.on_unsubscribe", [sid, alone]),
                                       ("subscription.on_delete", [sid, alone]),
                                       ("subscription.on_unsubscribe", [sid, shared])])
        assert subs.index(("subscription.on_unsubscribe", [sid, alone])) < subs.index(
            ("subscription.on_delete", [sid, alone]))
        assert regs == [("registration.on_unregister", [sid, reg]), ("registration.on_delete", [sid, reg])]
        assert await li_session.call("wamp.subscription.list_subscribers", shared) == [stay.details.session]


async def test_remove_subscriber(meta_router):
    # Goal: remove_subscriber sends a subscriber that announced subscription_revocation
    # UNSUBSCRIBED(0, {subscription, reason}) and stops its events; one that did not is
    # removed silently; the last removal deletes the subscription; errors.
    roles = copy.deepcopy(CLIENT_ROLES)
    roles["subscriber"]["features"]["subscription_revocation"] = True
    async with Pool(meta_router) as pool:
        caller = await pool.connect("ws-json", shard=0, realm="m1")
        listener = await Listener.create(caller)
        keeper = await pool.connect("ws-msgpack", shard=0, realm="m1")
        got_events = asyncio.Queue()
        r1 = pool.track_raw(await raw_session(meta_router, "rs-msgpack", shard=1, realm="m1",
                                              details={"roles": roles}))
        r2 = pool.track_raw(await raw_session(meta_router, "rs-json", shard=1, realm="m1"))
        topic = "com.rm.topic"
        sub = await r1.subscribe(topic)
        assert await r2.subscribe(topic) == sub
        await keeper.subscribe(lambda n: got_events.put_nowait(n), topic)
        kid = keeper.details.session

        assert await caller.call("wamp.subscription.remove_subscriber", sub, r1.session_id,
                                 "com.example.kicked") is None
        m = await r1.recv()
        assert m == [UNSUBSCRIBED, 0, {"subscription": sub, "reason": "com.example.kicked"}]
        assert await caller.call("wamp.subscription.remove_subscriber", sub, r2.session_id) is None
        assert sorted(await caller.call("wamp.subscription.list_subscribers", sub)) == [kid]
        await caller.publish(topic, 1, options=PublishOptions(acknowledge=True))
        assert await asyncio.wait_for(got_events.get(), 5) == 1
        for r in (r1, r2):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(r.recv(), 0.3)
        assert [n for n, _ in await listener.wait_of(r1.session_id, 3)] == [
            "subscription.on_create", "subscription.on_subscribe", "subscription.on_unsubscribe"]
        assert [n for n, _ in await listener.wait_of(r2.session_id, 2)] == [
            "subscription.on_subscribe", "subscription.on_unsubscribe"]

        nosess, nosub = "wamp.error.no_such_session", "wamp.error.no_such_subscription"
        assert await call_error(caller, "wamp.subscription.remove_subscriber", sub, r1.session_id) == nosess
        assert await call_error(caller, "wamp.subscription.remove_subscriber", MISSING, kid) == nosub
        assert await call_error(caller, "wamp.subscription.remove_subscriber", sub) == "wamp.error.invalid_argument"
        assert await call_error(caller, "wamp.subscription.remove_subscriber", sub, kid,
                                reason="not a uri!") == "wamp.error.invalid_argument"
        # The last one: the subscription goes.
        assert await caller.call("wamp.subscription.remove_subscriber", sub, kid) is None
        assert await listener.wait_of(kid, 3) == [("subscription.on_subscribe", [kid, sub]),
                                                  ("subscription.on_unsubscribe", [kid, sub]),
                                                  ("subscription.on_delete", [kid, sub])]
        assert await call_error(caller, "wamp.subscription.get", sub) == nosub


async def test_remove_callee(meta_router):
    # Goal: remove_callee revokes an Autobahn callee's registration (UNREGISTERED(0, ...),
    # which Autobahn accepts) on the other shard; calls then find no procedure; events;
    # errors.
    async with Pool(meta_router) as pool:
        caller = await pool.connect("ws-json", shard=0, realm="m1")
        listener = await Listener.create(caller)
        callee = await pool.connect("rs-msgpack", shard=1, realm="m1")
        cid = callee.details.session
        reg = (await callee.register(lambda: "hi", "com.rc.proc")).id
        assert await caller.call("com.rc.proc") == "hi"
        assert await call_error(caller, "wamp.registration.remove_callee", reg, caller.details.session) == \
            "wamp.error.no_such_session"
        assert await caller.call("wamp.registration.remove_callee", reg, cid, reason="com.example.off") is None

        async def unregistered():
            try:
                await caller.call("com.rc.proc")
            except ApplicationError as e:
                return e.error == "wamp.error.no_such_procedure"
            return False

        assert await until(unregistered)
        assert callee.is_attached()
        got = await listener.wait_of(cid, 4)
        assert got[2:] == [("registration.on_unregister", [cid, reg]), ("registration.on_delete", [cid, reg])]
        assert await call_error(caller, "wamp.registration.remove_callee", reg, cid) == \
            "wamp.error.no_such_registration"
        assert await call_error(caller, "wamp.registration.remove_callee", "x", cid) == "wamp.error.invalid_argument"


async def test_welcome_announces_meta_apis(meta_router):
    # Goal: WELCOME announces session/subscription meta API on the broker and
    # session/registration meta API on the dealer, only in realms with the meta API.
    async with Pool(meta_router) as pool:
        on = await pool.connect("ws-json", realm="m1")
        off = await pool.connect("ws-json", realm="quiet")
        broker, dealer = on._router_roles["broker"], on._router_roles["dealer"]
        assert broker.session_meta_api and broker.subscription_meta_api
        assert dealer.session_meta_api and dealer.registration_meta_api
        broker, dealer = off._router_roles["broker"], off._router_roles["dealer"]
        assert not broker.session_meta_api and not broker.subscription_meta_api
        assert not dealer.session_meta_api and not dealer.registration_meta_api
        assert broker.pattern_based_subscription and dealer.shared_registration


async def test_meta_api_off_in_a_realm(meta_router):
    # Goal: with meta_api = false the procedures do not exist and no lifecycle event is sent.
    async with Pool(meta_router) as pool:
        s = await pool.connect("ws-json", shard=0, realm="quiet")
        listener = await Listener.create(s)
        t = await pool.connect("rs-cbor", shard=1, realm="quiet")
        sub = await t.subscribe(lambda *x: None, "com.quiet.t")
        reg = await t.register(lambda: None, "com.quiet.p")
        await sub.unsubscribe()
        await reg.unregister()
        nop = "wamp.error.no_such_procedure"
        for proc, args in (("wamp.subscription.list", ()), ("wamp.subscription.get", (sub.id,)),
                           ("wamp.subscription.lookup", ("com.quiet.t",)), ("wamp.registration.list", ()),
                           ("wamp.registration.match", ("com.quiet.p",))):
            assert await call_error(s, proc, *args) == nop
        await asyncio.sleep(0.3)
        assert listener.events == []
