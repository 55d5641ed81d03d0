"""Authorization with the real router and Autobahn|Python: roles per realm with exact,
prefix, wildcard and starred rules (the most specific rule decides), every action allowed
and denied over WebSocket and RawSocket on both shards, forced disclosure, a denied PUBLISH
with and without acknowledge, dynamic authorizers (allow, deny, cached decisions, error,
timeout, unregistered, who may provide one), realm isolation, and the denial counters.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, PublishOptions, RegisterOptions, SubscribeOptions

from test_auth import login, ticket
from test_metrics import scrape, total

ROLES = """
[[realm.role]]
name = "feed"
permissions = [
  { uri = "md.", match = "prefix", allow = { publish = true } },
  { uri = "md.internal", allow = { } },
  { uri = "com.example.feed", allow = { publish = true }, disclose = { publisher = true } },
]
[[realm.role]]
name = "terminal"
permissions = [
  { uri = "md.", match = "prefix", allow = { subscribe = true } },
  { uri = "md..status", match = "wildcard", allow = { subscribe = true, publish = true } },
  { uri = "risk.*", allow = { call = true }, disclose = { caller = true } },
  { uri = "com.example.feed", allow = { subscribe = true } },
  { uri = "ops.", match = "prefix", allow = { call = true } },
]
[[realm.role]]
name = "risk"
permissions = [
  { uri = "risk.", match = "prefix", allow = { register = true, call = true } },
  { uri = "risk.admin", allow = { call = true } },
  { uri = "ops.", match = "prefix", allow = { register = true } },
]
[[realm.role]]
name = "trusted"
permissions = [
  { uri = "com.example.authorize", allow = { register = true } },
  { uri = "*", allow = { subscribe = true, publish = true } },
]
[[realm.role]]
name = "ops"
authorizer = "com.example.authorize"
"""

PRINCIPALS = """
[listener.auth.ticket]
principals = [
  { authid = "feed1", ticket = "f", role = "feed" },
  { authid = "term1", ticket = "t", role = "terminal" },
  { authid = "risk1", ticket = "r", role = "risk" },
  { authid = "backend", ticket = "b", role = "trusted" },
  { authid = "ops1", ticket = "o", role = "ops" },
  { authid = "other", ticket = "x", role = "terminal", realm = "realm2" },
]
"""


@pytest.fixture
def authz_router(make_router):
    return make_router(listener_toml=PRINCIPALS, unix_listener_toml=PRINCIPALS,
                       realms=[{"name": "realm2"}, {"name": "realm1"}], extra_toml=ROLES,
                       limits={"ping_interval_ms": 0})


async def as_(router, who, kind="ws-json", shard=None, realm="realm1"):
    secrets = {"feed1": "f", "term1": "t", "risk1": "r", "backend": "b", "ops1": "o", "other": "x"}
    return await login(router, kind, ["ticket"], who, ticket(secrets[who]), shard=shard, realm=realm)


async def denied(coro) -> str:
    with pytest.raises(ApplicationError) as e:
        await coro
    return e.value.error


NOT_AUTHORIZED = "wamp.error.not_authorized"


@pytest.mark.async_timeout(120)
async def test_each_action_allowed_and_denied_by_the_most_specific_rule(authz_router):
    r = authz_router
    for kinds in (("ws-json", "rs-msgpack"), ("rs-cbor", "ws-msgpack")):
        for shards in ((0, 1), (1, 0)):
            feed = await as_(r, "feed1", kinds[0], shards[0])
            term = await as_(r, "term1", kinds[1], shards[1])
            risk = await as_(r, "risk1", kinds[0], shards[1])
            tag = uuid.uuid4().hex[:8]
            got: asyncio.Queue = asyncio.Queue()
            # prefix subscribe allowed; exact-without-flags and unknown URIs denied
            await term.subscribe(lambda v: got.put_nowait(v), f"md.{tag}")
            assert await denied(term.subscribe(lambda v: None, f"risk.{tag}")) == NOT_AUTHORIZED
            assert await denied(feed.subscribe(lambda v: None, f"md.{tag}")) == NOT_AUTHORIZED
            # publish: prefix allowed, a more specific exact rule without flags denies
            await feed.publish(f"md.{tag}", 1, options=PublishOptions(acknowledge=True))
            assert await asyncio.wait_for(got.get(), 5) == 1
            assert await denied(feed.publish("md.internal", 2, options=PublishOptions(acknowledge=True))) == \
                NOT_AUTHORIZED
            assert await denied(term.publish(f"md.{tag}", 3, options=PublishOptions(acknowledge=True))) == \
                NOT_AUTHORIZED
            # wildcard beats nothing, prefix beats wildcard (md.x.status matches both: prefix wins)
            await term.subscribe(lambda v: None, "md..status", options=SubscribeOptions(match="wildcard"))
            assert await denied(term.publish(f"md.{tag}.status", 4, options=PublishOptions(acknowledge=True))) == \
                NOT_AUTHORIZED
            # register / call: prefix, exact overriding, starred prefix for the caller
            await risk.register(lambda x: x * 2, f"risk.{tag}.double")
            assert await term.call(f"risk.{tag}.double", 21) == 42
            assert await denied(term.register(lambda: None, f"risk.{tag}.x")) == NOT_AUTHORIZED
            assert await denied(risk.register(lambda: None, "risk.admin")) == NOT_AUTHORIZED
            assert await denied(feed.call(f"risk.{tag}.double", 1)) == NOT_AUTHORIZED
            for c in (feed, term, risk):
                await c.close()


async def test_an_unacknowledged_denied_publish_is_dropped_silently_and_counted(authz_router):
    r = authz_router
    term = await as_(r, "term1", "ws-json", 0)
    feed = await as_(r, "feed1", "rs-json", 1)
    got: asyncio.Queue = asyncio.Queue()
    await term.subscribe(lambda v: got.put_nowait(v), "md.internal")
    feed.publish("md.internal", "secret")  # no acknowledge: no ERROR
    await feed.publish("md.public", "ok", options=PublishOptions(acknowledge=True))
    await asyncio.sleep(0.3)
    assert got.empty()
    assert feed.is_attached()
    samples = scrape(r.metrics_port)
    assert total(samples, "shardbar_authorization_denied_total", realm="realm1", role="feed", action="publish") >= 1
    assert "not authorized" in r.log_text() and "md.internal" in r.log_text()
    await term.close()
    await feed.close()


async def test_disclose_is_forced_by_the_rule(authz_router):
    r = authz_router
    term = await as_(r, "term1", "ws-json", 0)
    feed = await as_(r, "feed1", "ws-cbor", 1)
    risk = await as_(r, "risk1", "rs-msgpack", 1)
    seen: asyncio.Queue = asyncio.Queue()

    def on_event(v, details=None):
        seen.put_nowait(details.publisher)

    await term.subscribe(on_event, "com.example.feed", options=SubscribeOptions(details_arg="details"))
    await feed.publish("com.example.feed", 1, options=PublishOptions(acknowledge=True))
    assert await asyncio.wait_for(seen.get(), 5) == feed.session_id
    callers: list = []

    def proc(details=None):
        callers.append(details.caller)
        return "ok"

    tag = uuid.uuid4().hex[:8]
    await risk.register(proc, f"risk.{tag}.who", options=RegisterOptions(details_arg="details"))
    assert await term.call(f"risk.{tag}.who") == "ok"
    assert callers == [term.session_id]
    for c in (term, feed, risk):
        await c.close()


async def test_wamp_namespace_and_realm_isolation(authz_router):
    r = authz_router
    backend = await as_(r, "backend", "ws-json")
    # `*` allows everything, but not the router's own namespace.
    for coro in (backend.register(lambda: None, "wamp.session.count"),
                 backend.publish("wamp.session.on_join", 1, options=PublishOptions(acknowledge=True))):
        assert await denied(coro) in ("wamp.error.invalid_uri", NOT_AUTHORIZED)
    other = await as_(r, "other", "rs-json", realm="realm2")
    got: asyncio.Queue = asyncio.Queue()
    await other.subscribe(lambda v: got.put_nowait(v), "md.same")
    await backend.publish("md.same", 1, options=PublishOptions(acknowledge=True))
    await asyncio.sleep(0.3)
    assert got.empty(), "an event crossed realms"
    # Same procedure name in both realms: each realm's callers reach only their own.
    risk = await as_(r, "risk1", "ws-cbor")
    await other.register(lambda: "realm2", "risk.same")
    assert await denied(risk.call("risk.same")) == "wamp.error.no_such_procedure"
    await risk.register(lambda: "realm1", "risk.same")
    assert await risk.call("risk.same") == "realm1"
    assert await other.call("risk.same") == "realm2"
    for c in (backend, other, risk):
        await c.close()


@pytest.mark.async_timeout(120)
async def test_dynamic_authorizer(authz_router):
    r = authz_router
    ops = await as_(r, "ops1", "ws-json", 0)
    # Nobody provides the authorizer yet: deny, not hang.
    assert await denied(ops.call("ops.status")) == NOT_AUTHORIZED
    # A role without the static right cannot provide it.
    term = await as_(r, "term1", "rs-json", 1)
    assert await denied(term.register(lambda *a: True, "com.example.authorize")) == NOT_AUTHORIZED
    backend = await as_(r, "backend", "rs-msgpack", 1)
    asked = []

    async def authorize(session, uri, action, options):
        asked.append((session["authrole"], uri, action))
        if uri == "ops.cached":
            return {"allow": True, "cache": True}
        if uri == "ops.slow":
            await asyncio.sleep(8)
            return True
        if uri == "ops.boom":
            raise RuntimeError("authorizer bug")
        return uri.startswith("ops.ok")

    await backend.register(authorize, "com.example.authorize")
    risk = await as_(r, "risk1", "ws-msgpack", 0)
    await risk.register(lambda: "fine", "ops.ok.a")
    await risk.register(lambda: "cached", "ops.cached")
    assert await ops.call("ops.ok.a") == "fine"
    assert await denied(ops.call("ops.no")) == NOT_AUTHORIZED
    for _ in range(3):
        assert await ops.call("ops.cached") == "cached"
    assert [a for a in asked if a[1] == "ops.cached"] == [("ops", "ops.cached", "call")]
    # Without cache the authorizer is asked every time.
    assert await ops.call("ops.ok.a") == "fine"
    assert len([a for a in asked if a[1] == "ops.ok.a"]) == 2
    assert await denied(ops.call("ops.boom")) == NOT_AUTHORIZED
    t0 = asyncio.get_running_loop().time()
    assert await denied(ops.call("ops.slow")) == NOT_AUTHORIZED
    assert asyncio.get_running_loop().time() - t0 < 8
    assert "authorizer did not answer in time" in r.log_text()
    samples = scrape(r.metrics_port)
    assert total(samples, "shardbar_authorizer_cached_decisions") >= 1
    for c in (ops, term, backend, risk):
        await c.close()
