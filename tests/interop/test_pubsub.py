"""Publish/subscribe through the real router with Autobahn|Python over every transport and
serializer, publishers and subscribers on different shards.

"Did not receive" is never checked with a sleep: after the publications under test the
publisher sends a *fence* event that every subscriber receives; WAMP orders events per
(publisher, subscriber) pair, so anything a subscriber was going to get arrived before it.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

import rawwamp as rw
from abclient import ALL_KINDS, Pool, other

ARGS = [1, -2, 2**53, 3.5, "héllo ✓ \u2028", True, None, [1, [2, {"x": "y"}]], {"k": [1, 2]}, b"\x00\x01\xfe\xff"]
KWARGS = {"a": 1, "nested": {"l": [True, False]}, "s": "ünï", "bin": b"\xff\x00", "empty": {}}


def uid() -> str:
    return uuid.uuid4().hex[:12]


class Inbox:
    """Collects (args, kwargs, details) of events; ``get()`` awaits the next one."""

    def __init__(self):
        self.q: asyncio.Queue = asyncio.Queue()

    def handler(self, *args, details=None, **kwargs):
        self.q.put_nowait((list(args), kwargs, details))

    async def get(self, timeout: float = 10.0):
        return await asyncio.wait_for(self.q.get(), timeout)

    async def until_fence(self, fence_marker="fence", timeout: float = 10.0):
        """Events up to (not including) the fence event."""
        got = []
        while True:
            args, kwargs, details = await self.get(timeout)
            if args == [fence_marker]:
                return got
            got.append((args, kwargs, details))


async def subscribe(session, topic, match=None) -> Inbox:
    inbox = Inbox()
    await session.subscribe(inbox.handler, topic, options=SubscribeOptions(match=match, details=True))
    return inbox


def publisher_shard(kind: str, index: int) -> int:
    return 0 if kind.startswith("unix") else index % 2


@pytest.mark.parametrize("pub_kind", ALL_KINDS)
async def test_event_reaches_every_kind_on_the_other_shard(router, pub_kind):
    # Goal: an acknowledged publication from each transport/serializer reaches subscribers of
    # every transport/serializer (transcoding JSON <-> MessagePack <-> CBOR, binary included)
    # with identical args/kwargs and the publication ID from PUBLISHED.
    # Method: publisher on shard s; one subscriber of each kind, the TCP ones forced onto the
    # other shard (Unix-socket ones live on shard 0); compare what each receives.
    topic = f"test.pubsub.matrix.{uid()}"
    async with Pool(router) as pool:
        s = publisher_shard(pub_kind, ALL_KINDS.index(pub_kind))
        pub = await pool.connect(pub_kind, shard=s)
        subs = []
        for k in ALL_KINDS:
            sess = await pool.connect(k, shard=None if k.startswith("unix") else other(s))
            subs.append((sess, await subscribe(sess, topic)))
        assert {sess.shard for sess, _ in subs} - {pub.shard}, "no subscriber on the other shard"
        publication = await pub.publish(topic, *ARGS, options=PublishOptions(acknowledge=True), **KWARGS)
        assert publication is not None and 1 <= publication.id <= 2**53
        for sess, inbox in subs:
            args, kwargs, details = await inbox.get()
            assert args == ARGS, sess.kind
            assert kwargs == KWARGS, sess.kind
            assert details.publication == publication.id, sess.kind
            assert details.publisher is None, "publisher disclosed without disclose_me"


async def test_payload_forms_survive_transcoding(router):
    # Goal: events with no payload, args only, kwargs only, and an empty args list beside kwargs
    # arrive as sent whatever the two serializers are.
    # Method: JSON publisher, CBOR and MessagePack subscribers on the other shard, four events.
    topic = f"test.pubsub.forms.{uid()}"
    async with Pool(router) as pool:
        pub = await pool.connect("ws-json", shard=0)
        inboxes = [await subscribe(await pool.connect(k, shard=1), topic) for k in ("rs-cbor", "ws-msgpack")]
        ack = PublishOptions(acknowledge=True)
        await pub.publish(topic, options=ack)
        await pub.publish(topic, "only", 2, options=ack)
        await pub.publish(topic, options=ack, k="v")
        await pub.publish(topic, *[], options=ack, big=2**53, neg=-(2**31), f=-0.25)
        for inbox in inboxes:
            got = [(await inbox.get())[:2] for _ in range(4)]
            assert got == [([], {}), (["only", 2], {}), ([], {"k": "v"}),
                           ([], {"big": 2**53, "neg": -(2**31), "f": -0.25})]


async def test_publisher_exclusion(router):
    # Goal: by default a publisher does not receive its own event; exclude_me=false delivers it.
    # Method: the publisher is also a subscriber; publish once with defaults, once with
    # exclude_me=false; the first thing the publisher receives must be the second event,
    # while another subscriber receives both in order.
    topic = f"test.pubsub.exclme.{uid()}"
    async with Pool(router) as pool:
        pub = await pool.connect("rs-msgpack", shard=0)
        mine = await subscribe(pub, topic)
        theirs = await subscribe(await pool.connect("ws-cbor", shard=1), topic)
        await pub.publish(topic, "default", options=PublishOptions(acknowledge=True))
        await pub.publish(topic, "exclude_me=false", options=PublishOptions(acknowledge=True, exclude_me=False))
        assert (await mine.get())[0] == ["exclude_me=false"]
        assert (await theirs.get())[0] == ["default"]
        assert (await theirs.get())[0] == ["exclude_me=false"]


async def test_publisher_identification(router):
    # Goal: PUBLISH.Options.disclose_me=true puts publisher, publisher_authid and
    # publisher_authrole into EVENT.Details; without it nothing is disclosed.
    # Method: Autobahn|Python cannot send disclose_me, so a raw JSON RawSocket publisher on
    # shard 0 publishes to an Autobahn MessagePack subscriber on shard 1.
    topic = f"test.pubsub.disclose.{uid()}"
    async with Pool(router) as pool:
        sub = await pool.connect("ws-msgpack", shard=1)
        inbox = await subscribe(sub, topic)
        pub = await pool.raw("rs-json", shard=0)
        for i, opts in enumerate([{"disclose_me": True, "acknowledge": True}, {"acknowledge": True}]):
            m = await pub.call_expect([rw.PUBLISH, pub.request_id(), opts, topic, [i]], rw.PUBLISHED)
            assert m[0] == rw.PUBLISHED, m
        args, _, details = await inbox.get()
        assert args == [0]
        assert details.publisher == pub.session_id
        assert details.publisher_authid == pub.welcome[2]["authid"]
        assert details.publisher_authrole == pub.welcome[2]["authrole"]
        args, _, details = await inbox.get()
        assert args == [1]
        assert details.publisher is None and details.publisher_authid is None


async def test_subscriber_black_and_white_listing(router):
    # Goal: exclude, eligible, exclude_authid, eligible_authid, exclude_authrole and
    # eligible_authrole select exactly the subscribers the spec says (all six filters apply).
    # Method: three subscribers A, B, C across both shards and serializers; the publisher
    # sends seven filtered events then an unfiltered fence; each subscriber's events before
    # the fence must be exactly its expected list, in order.
    topic = f"test.pubsub.listing.{uid()}"
    async with Pool(router) as pool:
        pub = await pool.connect("ws-json", shard=0)
        a = await pool.connect("rs-cbor", shard=1)
        b = await pool.connect("ws-msgpack", shard=0)
        c = await pool.connect("unix-json")
        inbox = {"A": await subscribe(a, topic), "B": await subscribe(b, topic), "C": await subscribe(c, topic)}
        sid = {"A": a.session_id, "B": b.session_id, "C": c.session_id}
        authid = {"A": a.details.authid, "B": b.details.authid, "C": c.details.authid}
        role = a.details.authrole
        cases = [
            ("e1", dict(exclude=[sid["A"]]), "BC"),
            ("e2", dict(eligible=[sid["A"]]), "A"),
            ("e3", dict(exclude_authid=[authid["B"]]), "AC"),
            ("e4", dict(eligible_authid=[authid["C"]]), "C"),
            ("e5", dict(exclude_authrole=[role]), ""),
            ("e6", dict(eligible_authrole=[role]), "ABC"),
            ("e7", dict(eligible=[sid["A"], sid["B"]], exclude=[sid["B"]]), "A"),
            ("e8", dict(eligible=[sid["C"]], eligible_authid=[authid["B"]]), ""),
        ]
        for name, opts, _ in cases:
            await pub.publish(topic, name, options=PublishOptions(acknowledge=True, **opts))
        await pub.publish(topic, "fence", options=PublishOptions(acknowledge=True))
        for who in "ABC":
            got = [args[0] for args, _, _ in await inbox[who].until_fence()]
            assert got == [name for name, _, targets in cases if who in targets], who


async def test_pattern_subscriptions(router):
    # Goal: prefix and wildcard subscriptions receive matching events with EVENT.Details.topic
    # set to the concrete topic; a session with several matching subscriptions gets the event
    # once per subscription (same publication ID); exact subscriptions carry no Details.topic.
    # Method: subscribers on the other shard than the publisher; topics chosen so each
    # matches a known set of patterns; compare per-subscription event lists up to a fence.
    base = f"test.pat.u{uid()}"
    prefix, wildcard, exact = f"{base}.a", f"{base}..x.z", f"{base}.a.x.z"
    fence_topic = f"{base}.fence"
    async with Pool(router) as pool:
        pub = await pool.connect("rs-json", shard=1)
        p_sess = await pool.connect("ws-cbor", shard=0)
        w_sess = await pool.connect("rs-msgpack", shard=0)
        subs = {
            "prefix": (p_sess, await subscribe(p_sess, prefix, "prefix")),
            "wildcard": (w_sess, await subscribe(w_sess, wildcard, "wildcard")),
        }
        # Autobahn fills EventDetails.topic itself for exact subscriptions, so the session with
        # all three subscriptions is a raw client that sees the EVENT.Details as sent.
        combined = await pool.raw("ws-cbor", shard=0)
        sub_ids = {}
        for uri, match in ((prefix, "prefix"), (wildcard, "wildcard"), (exact, None), (fence_topic, None)):
            sub_ids[await combined.subscribe(uri, {"match": match} if match else {})] = match or "exact"
        for sess, _ in subs.values():
            await sess.subscribe(subs["prefix" if sess is p_sess else "wildcard"][1].handler, fence_topic,
                                 options=SubscribeOptions(details=True))
        topics = [f"{base}.a.x.z", f"{base}.a.y", f"{base}.b.x.z", f"{base}.c.q", f"{base}.ab.x"]
        pubs = {}
        for t in topics:
            pubs[t] = (await pub.publish(t, t, options=PublishOptions(acknowledge=True))).id
        await pub.publish(fence_topic, "fence", options=PublishOptions(acknowledge=True))

        # Prefix matching is by characters (the spec's example: com.myapp.myobject1 matches
        # com.myapp.myobject1-mysubobject1), so base.ab.x matches the prefix base.a.
        expect_prefix = [f"{base}.a.x.z", f"{base}.a.y", f"{base}.ab.x"]
        expect_wild = [f"{base}.a.x.z", f"{base}.b.x.z"]
        for name, expected in (("prefix", expect_prefix), ("wildcard", expect_wild)):
            events = await subs[name][1].until_fence()
            got = [args[0] for args, _, _ in events]
            assert got == expected, name
            for args, _, details in events:
                assert details.topic == args[0], f"{name}: Details.topic must be the concrete topic"
                assert details.publication == pubs[args[0]]
        events = []
        while True:
            m, _ = await combined.recv_until(lambda m: m[0] == rw.EVENT)
            if m[4] == ["fence"]:
                break
            events.append(m)
        # base.a.x.z matches all three subscriptions, base.a.y and base.ab.x the prefix,
        # base.b.x.z the wildcard: one EVENT per matching subscription, in publication order.
        got = [(m[4][0], sub_ids[m[1]], m[3].get("topic")) for m in events]
        t1 = f"{base}.a.x.z"
        first = sorted(g for g in got if g[0] == t1)
        assert first == [(t1, "exact", None), (t1, "prefix", t1), (t1, "wildcard", t1)], got
        rest = [g for g in got if g[0] != t1]
        assert rest == [(f"{base}.a.y", "prefix", f"{base}.a.y"), (f"{base}.b.x.z", "wildcard", f"{base}.b.x.z"),
                        (f"{base}.ab.x", "prefix", f"{base}.ab.x")], got
        assert {m[2] for m in events if m[4][0] == t1} == {pubs[t1]}, "same publication ID for all three"

@pytest.mark.parametrize("pub_kind", ["rs-msgpack", "ws-json"])
async def test_overlapping_prefixes_each_get_the_large_event(router, pub_kind):
    # Goal: EVENTs built from one shared payload tail per serializer arrive intact for every
    # overlapping subscription, over every transport and serializer, at sizes whose WebSocket
    # header needs the 64-bit length. Method: one session of each kind, on the other shard
    # than the publisher, subscribes to four overlapping prefixes and the exact topic; one
    # acknowledged ~70 KB publication (text and binary) and a fence; each session must get
    # five EVENTs with the same publication ID, payload and topic.
    base = f"test.overlap.u{uid()}"
    topic = f"{base}.abcd"
    prefixes = [f"{base}.a", f"{base}.ab", f"{base}.abc", f"{base}."]
    text, blob = "é" * 30_000 + "✓", bytes(range(256)) * 40
    async with Pool(router) as pool:
        pub = await pool.connect(pub_kind, shard=1)
        inboxes = []
        for k in ALL_KINDS:
            sess = await pool.connect(k, shard=None if k.startswith("unix") else 0)
            inbox = Inbox()
            for p in prefixes:
                await sess.subscribe(inbox.handler, p, options=SubscribeOptions(match="prefix", details=True))
            await sess.subscribe(inbox.handler, topic, options=SubscribeOptions(details=True))
            inboxes.append((k, inbox))
        publication = await pub.publish(topic, text, blob, options=PublishOptions(acknowledge=True), size=len(text))
        await pub.publish(topic, "fence", options=PublishOptions(acknowledge=True))
        for k, inbox in inboxes:
            events = []
            while len(events) < 5 * 2:
                events.append(await inbox.get())
            big = [e for e in events if e[0] != ["fence"]]
            assert len(big) == 5, f"{k}: one EVENT per matching subscription"
            for args, kwargs, details in big:
                assert args == [text, blob] and kwargs == {"size": len(text)}, k
                assert details.publication == publication.id, k
                assert details.topic == topic, k


async def test_unsubscribe_stops_events(router):
    # Goal: after UNSUBSCRIBED no more events of that subscription arrive; other
    # subscriptions of the same session keep working; a second UNSUBSCRIBE of the same ID
    # is wamp.error.no_such_subscription.
    # Method: subscribe to two topics, unsubscribe one, publish to both, fence on the kept one.
    t1, t2 = f"test.pubsub.unsub.{uid()}", f"test.pubsub.unsub.{uid()}"
    async with Pool(router) as pool:
        pub = await pool.connect("ws-msgpack", shard=0)
        sub = await pool.connect("rs-cbor", shard=1)
        inbox = Inbox()
        s1 = await sub.subscribe(inbox.handler, t1, options=SubscribeOptions(details=True))
        await sub.subscribe(inbox.handler, t2, options=SubscribeOptions(details=True))
        await pub.publish(t1, "before", options=PublishOptions(acknowledge=True))
        assert (await inbox.get())[0] == ["before"]
        await s1.unsubscribe()
        await pub.publish(t1, "after", options=PublishOptions(acknowledge=True))
        await pub.publish(t2, "fence", options=PublishOptions(acknowledge=True))
        assert await inbox.until_fence() == []
        raw = await pool.raw("rs-json", shard=1)
        sub_id = await raw.subscribe(t1)
        m = await raw.call_expect([rw.UNSUBSCRIBE, raw.request_id(), sub_id], rw.UNSUBSCRIBED)
        assert m[0] == rw.UNSUBSCRIBED
        m = await raw.call_expect([rw.UNSUBSCRIBE, raw.request_id(), sub_id], rw.UNSUBSCRIBED)
        assert m[0] == rw.ERROR and m[4] == "wamp.error.no_such_subscription", m


async def test_resubscribe_returns_the_same_subscription_id(router):
    # Goal: subscribers of one (topic, match) share the subscription ID, across shards too
    # (the spec's "shared subscription IDs"), and a repeated SUBSCRIBE returns the same ID.
    # Method: raw subscribers on both shards subscribe to the same topic.
    topic = f"test.pubsub.sameid.{uid()}"
    async with Pool(router) as pool:
        a = await pool.raw("ws-json", shard=0)
        b = await pool.raw("rs-cbor", shard=1)
        ida = await a.subscribe(topic)
        assert await a.subscribe(topic) == ida
        assert await b.subscribe(topic) == ida
        assert await b.subscribe(topic, {"match": "prefix"}) != ida


@pytest.mark.parametrize("kind", ["rs-json", "ws-msgpack", "rs-cbor"])
async def test_invalid_uris_are_refused(router, kind):
    # Goal: invalid or reserved topics get ERROR wamp.error.invalid_uri and the session lives on.
    # Method: raw client (Autobahn validates some URIs itself); PUBLISH with acknowledge to
    # a reserved "wamp." topic and to an empty component; SUBSCRIBE with whitespace, '#', an
    # empty component (exact) — then a normal acknowledged PUBLISH still works.
    async with Pool(router) as pool:
        c = await pool.raw(kind)
        for topic in ("wamp.session.on_join", "com..empty", "has space", "hash#tag", ""):
            m = await c.call_expect([rw.PUBLISH, c.request_id(), {"acknowledge": True}, topic, ["x"]], rw.PUBLISHED)
            assert m[0] == rw.ERROR and m[4] == "wamp.error.invalid_uri", (topic, m)
        for topic, opts in (("has space", {}), ("com..empty", {}), ("hash#tag", {}), ("a.b c", {"match": "prefix"})):
            m = await c.call_expect([rw.SUBSCRIBE, c.request_id(), opts, topic], rw.SUBSCRIBED)
            assert m[0] == rw.ERROR and m[4] == "wamp.error.invalid_uri", (topic, m)
        m = await c.call_expect([rw.SUBSCRIBE, c.request_id(), {"match": "wildcard"}, "com..empty"], rw.SUBSCRIBED)
        assert m[0] == rw.SUBSCRIBED, "empty components are allowed in wildcard patterns"
        m = await c.call_expect([rw.PUBLISH, c.request_id(), {"acknowledge": True}, "com.ok", []], rw.PUBLISHED)
        assert m[0] == rw.PUBLISHED


async def test_autobahn_sees_invalid_uri_as_application_error(router):
    # Goal: Autobahn's subscribe() surfaces the router's invalid_uri ERROR as ApplicationError.
    # Method: subscribe to a topic with an empty component via Autobahn.
    async with Pool(router) as pool:
        c = await pool.connect("ws-json")
        with pytest.raises(ApplicationError) as e:
            await c.subscribe(lambda *a: None, "com..bad")
        assert e.value.error == "wamp.error.invalid_uri"


async def test_json_escapes_in_uris_and_option_keys(router):
    # Goal: the router decodes JSON string escapes in topics and option keys: a topic sent
    # as "test.\\u00fc..." (a JSON escape) is the topic "test.ü...", and the option key
    # "\\u0061cknowledge" is "acknowledge".
    # Method: raw JSON publisher writes the escapes by hand; a MessagePack subscriber on the
    # other shard is subscribed to the unescaped topic (exact) and a prefix with a non-ASCII
    # character; both events arrive, with the concrete topic unescaped in Details.topic.
    tag = uid()
    topic = f"test.\u00fc.\u2713.{tag}"
    async with Pool(router) as pool:
        sub = await pool.raw("rs-msgpack", shard=1)
        exact_id = await sub.subscribe(topic)
        prefix_id = await sub.subscribe(f"test.pfx\u00e9.{tag}", {"match": "prefix"})
        pub = await pool.raw("rs-json", shard=0)
        await pub.send_payload(b'[16,1,{"\\u0061cknowledge":true},"test.\\u00fc.\\u2713.%s",["one"]]' % tag.encode())
        m = await pub.recv()
        assert m[:2] == [rw.PUBLISHED, 1], m
        await pub.send_payload(b'[16,2,{"acknowledge":true},"test.pfx\\u00e9.%s.\\u00e0",["two"]]' % tag.encode())
        m = await pub.recv()
        assert m[:2] == [rw.PUBLISHED, 2], m
        e1, e2 = await sub.recv(), await sub.recv()
        assert e1[1] == exact_id and e1[4] == ["one"] and "topic" not in e1[3], e1
        assert e2[1] == prefix_id and e2[4] == ["two"] and e2[3]["topic"] == f"test.pfx\u00e9.{tag}.\u00e0", e2
