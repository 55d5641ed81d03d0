"""Observability: ``GET /metrics`` parses as Prometheus text and its counters add up to what
clients sent and received, per shard and in total; ``GET /health`` flips to ready. Both are
served on the metrics listener (``[metrics] address``), and on the WAMP port only with
``http_endpoints_on_wamp_port = true``; scrapes gathering at once are capped.

The router gathers every shard's counters over its mesh on each scrape, so a scrape answered
by any shard sees both. Each test runs its own router, so counts start at zero.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from abclient import Pool
from conftest import Router, free_port, shardbar_bin

N_EVENTS = 40
N_CALLS = 25


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of ``GET /metrics`` as {(name, sorted labels): value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples, name: str, **labels) -> float:
    """Sum of ``name`` over every label set that includes ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def per_shard(samples, name: str, **labels) -> dict[str, float]:
    out: dict[str, float] = {}
    want = set(labels.items())
    for (n, ls), v in samples.items():
        if n == name and want <= set(ls):
            shard = dict(ls)["shard"]
            out[shard] = out.get(shard, 0) + v
    return out


@pytest.fixture()
def mrouter():
    r = Router(name="metrics", limits={"ping_interval_ms": 0})
    r.start()
    yield r
    r.cleanup()


async def test_counters_add_up_per_shard_and_in_total(mrouter):
    # Goal: after a known pub/sub and RPC workload through a 2-shard router, the scraped
    # counters equal what the clients did: PUBLISH/CALL counts, EVENTs delivered per shard
    # (by where the subscribers live), calls answered, sessions and connections per shard,
    # errors by URI, and a routing-latency observation for every publication and call.
    # Method: two subscribers (one per shard), a publisher and a callee/caller pair on
    # chosen shards; publish N_EVENTS with acknowledge, make N_CALLS calls and one call to a
    # missing procedure; scrape and compare.
    async with Pool(mrouter) as pool:
        subs = [await pool.connect("ws-json", shard=0), await pool.connect("rs-msgpack", shard=1)]
        publisher = await pool.connect("ws-cbor", shard=0)
        callee = await pool.connect("rs-cbor", shard=1)
        caller = await pool.connect("ws-msgpack", shard=0)
        got = [[], []]
        for i, s in enumerate(subs):
            await s.subscribe(lambda x, i=i: got[i].append(x), "test.metrics.topic")
        await callee.register(lambda x: x * 2, "test.metrics.double")
        from autobahn.wamp.types import PublishOptions

        for k in range(N_EVENTS):
            await publisher.publish("test.metrics.topic", k, options=PublishOptions(acknowledge=True))
        for k in range(N_CALLS):
            assert await caller.call("test.metrics.double", k) == 2 * k
        with pytest.raises(Exception):
            await caller.call("test.metrics.missing")
        for _ in range(200):
            if all(len(g) == N_EVENTS for g in got):
                break
            await asyncio.sleep(0.01)
        assert [len(g) for g in got] == [N_EVENTS, N_EVENTS]

        m = scrape(mrouter.metrics_port)
        assert total(m, "shardbar_messages_in_total", type="PUBLISH") == N_EVENTS
        assert total(m, "shardbar_publications_total", realm="realm1") == N_EVENTS
        assert per_shard(m, "shardbar_publications_total") == {"0": N_EVENTS, "1": 0}
        # One subscriber per shard: each shard delivered every event once.
        assert per_shard(m, "shardbar_events_delivered_total", realm="realm1") == {"0": N_EVENTS, "1": N_EVENTS}
        assert total(m, "shardbar_messages_out_total", type="EVENT") == 2 * N_EVENTS
        assert total(m, "shardbar_messages_out_total", type="PUBLISHED") == N_EVENTS
        assert total(m, "shardbar_messages_in_total", type="CALL") == N_CALLS + 1
        assert per_shard(m, "shardbar_calls_total") == {"0": N_CALLS + 1, "1": 0}
        assert total(m, "shardbar_calls_ok_total") == N_CALLS
        assert total(m, "shardbar_calls_error_total") == 1
        assert per_shard(m, "shardbar_invocations_total") == {"0": 0, "1": N_CALLS}
        assert total(m, "shardbar_messages_in_total", type="YIELD") == N_CALLS
        assert total(m, "shardbar_errors_total", uri="wamp.error.no_such_procedure") == 1
        # Sessions and connections live where the kernel put them.
        assert per_shard(m, "shardbar_sessions", realm="realm1") == {"0": 3, "1": 2}
        # Opened minus closed is what is live (the pool opens extra sessions until the kernel
        # puts one on the wanted shard, and closes those).
        opened = per_shard(m, "shardbar_sessions_opened_total", realm="realm1")
        closed = per_shard(m, "shardbar_sessions_closed_total")
        assert {k: opened[k] - closed.get(k, 0) for k in opened} == {"0": 3, "1": 2}, (opened, closed)
        assert total(m, "shardbar_connections", shard="1", transport="rawsocket", serializer="msgpack") == 1
        assert total(m, "shardbar_connections", shard="0", transport="websocket", serializer="cbor") == 1
        assert total(m, "shardbar_connections") == 5
        # Every publication is observed once per shard it was delivered on, every call once.
        assert total(m, "shardbar_routing_latency_seconds_count") >= 2 * N_EVENTS + N_CALLS
        # Cross-shard traffic went over the mesh.
        assert per_shard(m, "shardbar_mesh_messages_sent_total")["0"] >= N_EVENTS
        assert total(m, "shardbar_encode_failures_total") == 0

        # Later scrapes see the same publications.
        before = total(m, "shardbar_publications_total")
        for _ in range(5):
            again = scrape(mrouter.metrics_port)
            assert total(again, "shardbar_publications_total") == before


def test_health_flips_to_ready_and_metrics_listener_serves():
    # Goal: GET /health on the metrics listener is unreachable or 503 until every shard
    # serves, then 200; the metrics listener serves /metrics too and refuses WAMP paths; the
    # WAMP port serves neither (404) without the opt-in.
    # Method: start a router (the fixture's config has a metrics listener) and poll /health
    # on the metrics port from the moment the process starts, recording every answer until
    # the first 200; then GET the other paths.
    r = Router(name="health", limits={"ping_interval_ms": 0})
    mport = r.metrics_port
    proc = subprocess.Popen(
        [shardbar_bin(), "--config", str(r.config_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        answers = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                code = urllib.request.urlopen(f"http://127.0.0.1:{mport}/health", timeout=2).status
            except urllib.error.HTTPError as e:
                code = e.code
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                code = None
            answers.append(code)
            if code == 200:
                break
            time.sleep(0.002)
        assert answers[-1] == 200, answers[-10:]
        assert all(a in (None, 503) for a in answers[:-1]), set(answers)
        assert "shardbar_connections" in urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        for port, path in ((mport, "/ws"), (r.port, "/health"), (r.port, "/metrics")):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert e.value.code == 404, (port, path)
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        r.cleanup()


def test_http_endpoints_on_the_wamp_port_with_the_opt_in(make_router):
    # Goal: `[metrics] http_endpoints_on_wamp_port = true` serves /health and /metrics on the
    # WAMP port as well (for setups that cannot open a second port); other paths still get
    # 426. Method: a router with the opt-in; GET the three paths on its WAMP port.
    router = make_router(name="optin", limits={"ping_interval_ms": 0}, metrics={"http_endpoints_on_wamp_port": True})
    assert urllib.request.urlopen(f"http://127.0.0.1:{router.port}/health", timeout=5).status == 200
    assert "shardbar_sessions" in scrape_text(router.port)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{router.port}/other", timeout=5)
    assert e.value.code == 426


def scrape_text(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


async def test_scrapes_gathering_at_once_are_capped_and_counted(mrouter):
    # Goal: at most a few /metrics requests gather at once on a shard (each asks every
    # shard over the mesh); the rest get 503 at once, and every 503 is counted in
    # shardbar_metrics_requests_refused_total.
    # Method: open 48 connections to the metrics listener (all served by shard 0), then
    # send every request in one burst, so they arrive before any gather can finish; count
    # the answers, then scrape once more and compare.
    n = 48
    conns = [await asyncio.open_connection("127.0.0.1", mrouter.metrics_port) for _ in range(n)]
    for _, w in conns:
        w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.gather(*(w.drain() for _, w in conns))

    async def status(reader, writer) -> int:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        return int(head.split()[1])

    answers = await asyncio.gather(*(status(r, w) for r, w in conns))
    assert set(answers) <= {200, 503}, answers
    assert answers.count(200) >= 1 and answers.count(503) >= 1, answers
    refused = total(scrape(mrouter.metrics_port), "shardbar_metrics_requests_refused_total")
    assert refused == answers.count(503), (refused, answers)


async def test_route_budget_refuses_counts_and_frees(make_router):
    # Goal: a realm's `route_bytes_max` (config file) bounds its routes: past it a SUBSCRIBE
    # or REGISTER that would create a route gets ERROR shardbar.error.limit_exceeded, counted
    # in shardbar_route_budget_refused_total, with the charge (shardbar_route_budget_bytes)
    # within the budget; unsubscribing and unregistering give the room back.
    # Method: realm1 with the smallest budget (64 KiB) on 2 shards, so each owner shard
    # admits 32 KiB and a ~2 KiB route costs (URI + 256) x 2 bytes; prefix subscriptions,
    # then registrations, until refused; scrape; delete everything; the refused ones fit.
    from autobahn.wamp.exception import ApplicationError
    from autobahn.wamp.types import SubscribeOptions

    budget = 65536
    r = make_router(name="budget", limits={"ping_interval_ms": 0}, realms=[{"name": "realm1", "route_bytes_max": budget}])
    head = "test.budget." + "x" * 2000
    async with Pool(r) as pool:
        s = await pool.connect("rs-msgpack", shard=0)
        subs, refused_topic = [], None
        for i in range(100):
            topic = f"{head}.t{i}"
            try:
                subs.append((topic, await s.subscribe(lambda *a: None, topic, options=SubscribeOptions(match="prefix"))))
            except ApplicationError as e:
                assert e.error == "shardbar.error.limit_exceeded", e
                assert "route_bytes_max" in str(e.args), e
                refused_topic = topic
                break
        assert refused_topic is not None and subs, "never refused, or refused at once"
        regs, refused_procedure = [], None
        for i in range(100):
            procedure = f"{head}.p{i}"
            try:
                regs.append((procedure, await s.register(lambda: None, procedure)))
            except ApplicationError as e:
                assert e.error == "shardbar.error.limit_exceeded", e
                refused_procedure = procedure
                break
        assert refused_procedure is not None, "registrations never refused"

        m = scrape(r.metrics_port)
        assert total(m, "shardbar_route_budget_refused_total", realm="realm1") == 2
        charged = total(m, "shardbar_route_budget_bytes", realm="realm1")
        assert charged == sum((len(uri) + 256) * r.shards for uri, _ in subs + regs), (charged, subs, regs)
        assert charged <= budget

        for _, sub in subs:
            await sub.unsubscribe()
        for _, reg in regs:
            await reg.unregister()
        await asyncio.sleep(0.1)
        assert total(scrape(r.metrics_port), "shardbar_route_budget_bytes", realm="realm1") == 0
        await s.subscribe(lambda *a: None, refused_topic, options=SubscribeOptions(match="prefix"))
        await s.register(lambda: None, refused_procedure)
