"""Autobahn|Python (asyncio) sessions for the tests, over every transport the router offers.

A *kind* names transport and serializer: ``ws-json``, ``ws-msgpack``, ``ws-cbor`` (WebSocket),
``rs-json``, ``rs-msgpack``, ``rs-cbor`` (RawSocket over TCP), ``unix-json``,
``unix-msgpack``, ``unix-cbor`` (RawSocket over the router's Unix socket).

``connect(router, kind, shard=...)`` returns a joined ``Client`` (an ``ApplicationSession``)
with ``.shard`` taken from ``WELCOME.Details.authextra._shard``. Connections are spread over
shards by the kernel's SO_REUSEPORT hash, so asking for a shard reconnects until one lands
there; the Unix-socket listener is served by shard 0 only.
"""

from __future__ import annotations

import asyncio
import contextlib

import txaio

txaio.use_asyncio()

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory  # noqa: E402
from autobahn.asyncio.wamp import ApplicationSession  # noqa: E402
from autobahn.asyncio.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer  # noqa: E402
from autobahn.wamp.types import ComponentConfig  # noqa: E402

TCP_KINDS = ["ws-json", "ws-msgpack", "ws-cbor", "rs-json", "rs-msgpack", "rs-cbor"]
UNIX_KINDS = ["unix-json", "unix-msgpack", "unix-cbor"]
ALL_KINDS = TCP_KINDS + UNIX_KINDS

_SERIALIZERS = {"json": JsonSerializer, "msgpack": MsgPackSerializer, "cbor": CBORSerializer}


class Client(ApplicationSession):
    """A session whose lifecycle is visible as futures: ``joined`` (SessionDetails),
    ``left`` (CloseDetails: the GOODBYE/ABORT reason), ``gone`` (transport closed)."""

    def __init__(self, config, kind, joined):
        super().__init__(config)
        loop = asyncio.get_running_loop()
        self.kind = kind
        self.joined = joined
        self.left = loop.create_future()
        self.gone = loop.create_future()
        self.shard = None

    def onJoin(self, details):
        self.shard = details.authextra.get("_shard") if details.authextra else None
        self.details = details
        if not self.joined.done():
            self.joined.set_result(self)

    def onLeave(self, details):
        if not self.left.done():
            self.left.set_result(details)
        if not self.joined.done():
            self.joined.set_exception(RuntimeError(f"not joined: {details.reason} {details.message}"))
        return super().onLeave(details)

    def onDisconnect(self):
        if not self.gone.done():
            self.gone.set_result(True)
        if not self.joined.done():
            self.joined.set_exception(RuntimeError("transport closed before WELCOME"))
        if not self.left.done():
            self.left.set_exception(RuntimeError("transport closed without GOODBYE/ABORT"))
        return super().onDisconnect()

    async def close(self, timeout: float = 5.0):
        """Leave politely (if still joined) and wait for the transport to close."""
        if self.is_attached():
            with contextlib.suppress(Exception):
                self.leave()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.gone), timeout)
        if not self.gone.done() and self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()


async def open_session(router, kind: str, make, ssl=None, host: str = "127.0.0.1", timeout: float = 10) -> Client:
    """Connect a session over the transport ``kind`` names and wait until it joins.

    ``make(joined)`` builds the session (a ``Client`` that resolves the future ``joined``).
    Transports: ``ws`` (WebSocket), ``rs`` (RawSocket over TCP), ``unix`` (RawSocket over the
    Unix socket); ``wss`` and ``rss`` are WebSocket and RawSocket over TLS, and ``ssl`` (an
    ``ssl.SSLContext``) puts any of them in TLS, checking the server certificate against
    ``host``. Connecting and joining are each bounded by ``timeout`` seconds."""
    transport, ser = kind.split("-")
    if transport in ("wss", "rss") and ssl is None:
        raise ValueError(f"{kind} needs an ssl context")
    transport = {"wss": "ws", "rss": "rs"}.get(transport, transport)
    loop = asyncio.get_running_loop()
    txaio.config.loop = loop
    joined = loop.create_future()
    tls = {} if ssl is None else {"ssl": ssl, "server_hostname": host}
    serializer = _SERIALIZERS[ser]()
    if transport == "ws":
        scheme = "ws" if ssl is None else "wss"
        factory = WampWebSocketClientFactory(lambda: make(joined), url=f"{scheme}://{host}:{router.port}/",
                                             serializers=[serializer])
        factory.setProtocolOptions(openHandshakeTimeout=10.0, closeHandshakeTimeout=2.0, failByDrop=False)
        conn = loop.create_connection(factory, "127.0.0.1", router.port, **tls)
    elif transport == "rs":
        factory = WampRawSocketClientFactory(lambda: make(joined), serializer=serializer)
        conn = loop.create_connection(factory, "127.0.0.1", router.port, **tls)
    elif transport == "unix":
        factory = WampRawSocketClientFactory(lambda: make(joined), serializer=serializer)
        conn = loop.create_unix_connection(factory, router.unix_path, **tls)
    else:
        raise ValueError(kind)
    await asyncio.wait_for(conn, timeout)
    return await asyncio.wait_for(joined, timeout)


async def on_shard(open_once, shard: int | None, tries: int = 64, what: str = "session"):
    """``await open_once()`` until the session it returns is on ``shard`` (any if None),
    closing the others: the kernel, not the client, picks a connection's shard."""
    for _ in range(tries):
        c = await open_once()
        if shard is None or c.shard == shard:
            return c
        await c.close()
    raise AssertionError(f"no {what} landed on shard {shard} in {tries} tries")


async def connect(router, kind: str = "ws-json", shard: int | None = None, realm: str = "realm1",
                  tries: int = 64) -> Client:
    """A joined session of ``kind``, on ``shard`` if given."""
    if kind.startswith("unix") and shard not in (None, 0):
        raise ValueError("the Unix-socket listener is served by shard 0 only")

    def make(joined):
        return Client(ComponentConfig(realm, {}), kind, joined)

    return await on_shard(lambda: open_session(router, kind, make), shard, tries, f"{kind} session")


class Pool:
    """Sessions opened in a test, all closed at the end (``async with Pool(router) as p``)."""

    def __init__(self, router):
        self.router = router
        self.clients = []
        self.raws = []

    async def __aenter__(self):
        return self

    async def connect(self, kind="ws-json", shard=None, realm="realm1") -> Client:
        c = await connect(self.router, kind, shard, realm)
        self.clients.append(c)
        return c

    async def raw(self, kind="rs-msgpack", shard=None, realm="realm1"):
        from rawwamp import raw_session

        c = await raw_session(self.router, kind, shard, realm)
        self.raws.append(c)
        return c

    def track_raw(self, c):
        self.raws.append(c)
        return c

    async def __aexit__(self, *exc):
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
        for r in self.raws:
            r.close()


def other(shard: int) -> int:
    return 1 - shard


class Witness:
    """Two Autobahn sessions on different shards (WebSocket JSON on shard 0, RawSocket
    MessagePack on shard 1) that prove the router still serves pub/sub and RPC:
    ``check()`` publishes (acknowledged) from shard 1 to a subscriber on shard 0 and calls a
    procedure registered on shard 0 from shard 1."""

    @classmethod
    async def create(cls, pool: Pool) -> "Witness":
        import uuid

        from autobahn.wamp.types import PublishOptions

        w = cls()
        w.ack = PublishOptions(acknowledge=True)
        w.a = await pool.connect("ws-json", shard=0)
        w.b = await pool.connect("rs-msgpack", shard=1)
        tag = uuid.uuid4().hex[:12]
        w.topic, w.proc = f"test.witness.{tag}", f"test.witness.{tag}.echo"
        w.events: asyncio.Queue = asyncio.Queue()
        await w.a.subscribe(lambda n: w.events.put_nowait(n), w.topic)
        await w.a.register(lambda n: ["echo", n], w.proc)
        w.n = 0
        await w.check()
        return w

    async def check(self):
        self.n += 1
        await self.b.publish(self.topic, self.n, options=self.ack)
        assert await asyncio.wait_for(self.events.get(), 10) == self.n, "witness pub/sub broken"
        assert await asyncio.wait_for(self.b.call(self.proc, self.n), 10) == ["echo", self.n], "witness RPC broken"
