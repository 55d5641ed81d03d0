"""TLS on the WAMP listeners (``[listener.tls]``): Autobahn|Python over ``wss://`` and over
RawSocket in TLS (TCP and the Unix socket), plaintext refused on a TLS-only listener and
served beside TLS with ``allow_plaintext = true``, client certificates checked against
``client_ca``, and SIGHUP swapping the server certificate for new connections while open
sessions carry on.

Every certificate is made at test time with the ``openssl`` command (``tlspki.py``) into a
temporary directory. The routers' configs name them by paths relative to the config file,
which lives in its own directory, so relative paths are checked on every start.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import ssl
import uuid
from functools import partial

import pytest
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig, PublishOptions

from abclient import Client, open_session
from conftest import Router
from test_metrics import scrape, total
from tlspki import Cert, client_context, temporary_pki

ANSWER_S = 5.0  # a router answers in milliseconds; 5 s means "never"
REJECTED = "shardbar_tls_rejected_total"
SERIALIZERS = {"json": JsonSerializer, "msgpack": MsgPackSerializer, "cbor": CBORSerializer}

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def pki():
    """Two CAs; server certificates from each; a client certificate from the first and one
    from the second (which the first CA does not vouch for)."""
    with temporary_pki("sb-pki-") as p:
        p.ca1 = p.ca("ca1")
        p.ca2 = p.ca("ca2")
        p.server1 = p.leaf("server1", p.ca1, "server")
        p.server2 = p.leaf("server2", p.ca2, "server")
        p.client1 = p.leaf("client1", p.ca1, "client")
        p.client2 = p.leaf("client2", p.ca2, "client")
        yield p


class TlsRouter:
    """Start routers whose TCP and Unix listeners have ``[listener.tls]`` with ``server.pem``
    and ``server.key`` in the config's directory (``client_ca.pem`` too, if asked)."""

    def __init__(self, pki):
        self.pki = pki
        self.started: list[Router] = []

    def start(self, server: Cert, client_ca: Cert | None = None, allow_plaintext: bool = False,
              unix_tls: bool = True, log: str = "info") -> Router:
        tls = {"cert": "server.pem", "key": "server.key", "allow_plaintext": allow_plaintext}
        if client_ca is not None:
            tls["client_ca"] = "client_ca.pem"
        r = Router(name="tls", limits={"ping_interval_ms": 0}, router={"log": log},
                   listener={"tls": tls}, unix_listener={"tls": tls} if unix_tls else None)
        server.install(r.dir / "server.pem", r.dir / "server.key")
        if client_ca is not None:
            shutil.copyfile(client_ca.pem, r.dir / "client_ca.pem")
        self.started.append(r)
        return r.start()

    def cleanup(self, failed: bool):
        for r in self.started:
            if failed:
                print(f"\n--- router log ({r.log_path}) ---\n{r.log_text()[-4000:]}")
            r.cleanup()


@pytest.fixture
def tls_router(pki, request):
    t = TlsRouter(pki)
    yield t
    t.cleanup(getattr(request.node, "rep_call_failed", False))


async def join(router, kind: str, ctx: ssl.SSLContext, host: str = "127.0.0.1") -> Client:
    """An Autobahn|Python session over TLS. ``kind``: ``wss-SER``, ``rs-SER`` (RawSocket over
    TLS on TCP) or ``unix-SER`` (RawSocket over TLS on the Unix socket); ``host`` is the
    name the server certificate is checked against."""
    return await open_session(router, kind, partial(plain_client, kind), ctx, host, timeout=ANSWER_S)


async def join_plain(router, kind: str) -> Client:
    """An Autobahn|Python session without TLS: ``ws-SER`` or ``rs-SER``."""
    return await open_session(router, kind, partial(plain_client, kind), timeout=ANSWER_S)


def plain_client(kind: str, joined) -> Client:
    return Client(ComponentConfig("realm1", {}), kind, joined)


async def round_trip(a: Client, b: Client):
    """``b`` publishes (acknowledged) to a subscriber ``a`` and calls a procedure of ``a``."""
    tag = uuid.uuid4().hex[:10]
    events: asyncio.Queue = asyncio.Queue()
    sub = await a.subscribe(lambda n: events.put_nowait(n), f"test.tls.{tag}")
    reg = await a.register(lambda n: n * 2, f"test.tls.{tag}.double")
    await b.publish(f"test.tls.{tag}", 21, options=PublishOptions(acknowledge=True, exclude_me=False))
    assert await asyncio.wait_for(events.get(), ANSWER_S) == 21
    assert await asyncio.wait_for(b.call(f"test.tls.{tag}.double", 21), ANSWER_S) == 42
    await sub.unsubscribe()
    await reg.unregister()


async def peer_cert_sha256(router, ctx: ssl.SSLContext, host: str = "localhost") -> str:
    """The SHA-256 of the certificate a new TLS connection is shown (the handshake fails,
    raising, if ``ctx`` does not trust it)."""
    import hashlib

    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", router.port, ssl=ctx, server_hostname=host), ANSWER_S)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return hashlib.sha256(der).hexdigest()


async def closes_without_answer(port: int, data: bytes) -> bytes:
    """Send ``data`` in plaintext; return what the router answers before it closes."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), ANSWER_S)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), ANSWER_S)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def refused_after_handshake(router, ctx: ssl.SSLContext) -> bool:
    """Whether a TLS client with ``ctx`` is refused: at its handshake (TLS 1.2), or (TLS 1.3,
    where the client sends its certificate last) by an alert or a close when it then sends a
    RawSocket handshake and waits for the answer."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", router.port, ssl=ctx, server_hostname="localhost"), ANSWER_S)
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        writer.write(bytes([0x7F, 0xF1, 0, 0]))
        await writer.drain()
        return await asyncio.wait_for(reader.read(4), ANSWER_S) == b""
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        writer.close()


async def eventually(check, what: str, timeout: float = ANSWER_S):
    """Retry ``check()`` (an async callable returning a truthy value) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            if await check():
                return
        except Exception as e:  # noqa: BLE001 - kept for the failure message
            last = e
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not seen within {timeout}s (last error: {last!r})")


@pytest.mark.async_timeout(60)
async def test_wss_and_rawsocket_over_tls_every_serializer(tls_router, pki):
    # Goal: Autobahn|Python joins over wss:// and over RawSocket in TLS (TCP and Unix
    # socket), with each serializer, verifying the server certificate against the CA (by
    # name and by IP address), and pub/sub and RPC work between TLS sessions on both shards.
    # Method: one TLS-only router; a session per transport × serializer; round trips.
    r = tls_router.start(pki.server1)
    ctx = client_context(pki.ca1)
    sessions = []
    try:
        for ser in SERIALIZERS:
            sessions.append(await join(r, f"wss-{ser}", ctx, host="localhost"))
            sessions.append(await join(r, f"rs-{ser}", ctx, host="127.0.0.1"))
            sessions.append(await join(r, f"unix-{ser}", ctx, host="localhost"))
        for a, b in zip(sessions, sessions[1:] + sessions[:1]):
            await round_trip(a, b)
        samples = scrape(r.metrics_port)
        assert total(samples, "shardbar_tls_handshakes_total") >= len(sessions)
        assert total(samples, REJECTED) == 0
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


@pytest.mark.async_timeout(60)
async def test_plaintext_is_refused_on_a_tls_only_listener(tls_router, pki):
    # Goal: without allow_plaintext, a plaintext HTTP request gets a 400 saying TLS is
    # required, a plaintext RawSocket handshake is closed unanswered, both are counted, and
    # TLS clients are still served. A client that does not trust the certificate fails.
    # Method: raw sockets against the TLS-only router, then /metrics, then a wss session.
    r = tls_router.start(pki.server1)
    answer = await closes_without_answer(r.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"TLS required" in answer, answer
    assert await closes_without_answer(r.port, bytes([0x7F, 0xF1, 0, 0])) == b""
    with pytest.raises(ssl.SSLError):
        await peer_cert_sha256(r, client_context(pki.ca2))
    samples = scrape(r.metrics_port)
    assert total(samples, REJECTED, reason="plaintext_on_tls_listener") == 2
    assert total(samples, REJECTED, reason="handshake_failed") == 1
    c = await join(r, "wss-json", client_context(pki.ca1), host="localhost")
    await c.close()
    assert "connection closed at TLS" in r.log_text()


@pytest.mark.async_timeout(60)
async def test_allow_plaintext_serves_both_on_one_port(tls_router, pki):
    # Goal: with allow_plaintext = true, ws:// and plain RawSocket sessions and TLS sessions
    # share the port and talk to each other.
    # Method: one session of each kind; round trips across them.
    r = tls_router.start(pki.server1, allow_plaintext=True)
    ctx = client_context(pki.ca1)
    sessions = []
    try:
        sessions.append(await join_plain(r, "ws-json"))
        sessions.append(await join(r, "wss-msgpack", ctx, host="localhost"))
        sessions.append(await join_plain(r, "rs-cbor"))
        sessions.append(await join(r, "rs-json", ctx))
        for a, b in zip(sessions, sessions[1:] + sessions[:1]):
            await round_trip(a, b)
        assert total(scrape(r.metrics_port), REJECTED) == 0
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


@pytest.mark.async_timeout(60)
async def test_tls_on_a_plaintext_listener_is_closed(make_router, pki):
    # Goal: a TLS ClientHello on a listener without [listener.tls] is closed (counted), and
    # the listener serves plaintext as before.
    # Method: a default router; a TLS client fails; a ws:// session joins.
    r = make_router(name="plain", limits={"ping_interval_ms": 0})
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        await peer_cert_sha256(r, client_context(pki.ca1))
    assert total(scrape(r.metrics_port), REJECTED, reason="tls_not_configured") == 1
    c = await join_plain(r, "ws-json")
    await c.close()


@pytest.mark.async_timeout(60)
async def test_client_certificates_are_verified_against_client_ca(tls_router, pki):
    # Goal: with client_ca, a client presenting a certificate that CA signed connects (and
    # the router reads its fingerprint), a client without one connects too (client auth is
    # optional), and one presenting a certificate of another CA is refused.
    # Method: a router logging the TLS handshakes at debug; three clients; the fingerprint
    # of the first must appear in the log in openssl's colon form.
    r = tls_router.start(pki.server1, client_ca=pki.ca1, log="info,shardbar::shard::accept=debug")
    with_cert = await join(r, "wss-json", client_context(pki.ca1, pki.client1), host="localhost")
    without = await join(r, "rs-msgpack", client_context(pki.ca1))
    try:
        await round_trip(with_cert, without)
        assert f'client_cert_sha1="{pki.client1.sha1_colons()}"' in r.log_text() or \
            f"client_cert_sha1={pki.client1.sha1_colons()}" in r.log_text(), r.log_text()[-2000:]
        assert await refused_after_handshake(r, client_context(pki.ca1, pki.client2))

        async def counted():
            return total(scrape(r.metrics_port), REJECTED, reason="handshake_failed") == 1

        await eventually(counted, "the refused client certificate counted")
    finally:
        await asyncio.gather(with_cert.close(), without.close(), return_exceptions=True)


@pytest.mark.async_timeout(90)
async def test_sighup_swaps_the_certificate_for_new_connections_only(tls_router, pki):
    # Goal: after the certificate files are replaced (by one from another CA) and SIGHUP,
    # new connections get the new certificate, while sessions opened before carry on with
    # pub/sub and RPC. A reload whose certificate does not load is logged naming the file
    # and changes nothing.
    # Method: sessions over wss and RawSocket-TLS with CA 1; install server2 (CA 2); SIGHUP;
    # poll until a new connection shows server2; round trips on the old sessions and with a
    # new CA-2 session; then a broken certificate file and SIGHUP again.
    r = tls_router.start(pki.server1)
    ctx1, ctx2 = client_context(pki.ca1), client_context(pki.ca2)
    assert await peer_cert_sha256(r, ctx1) == pki.server1.sha256
    old_ws = await join(r, "wss-json", ctx1, host="localhost")
    old_rs = await join(r, "rs-msgpack", ctx1)
    new = None
    try:
        pki.server2.install(r.dir / "server.pem", r.dir / "server.key")
        r.proc.send_signal(signal.SIGHUP)

        async def sees_server2():
            return await peer_cert_sha256(r, ctx2) == pki.server2.sha256

        await eventually(sees_server2, "the new certificate on a new connection")
        with pytest.raises(ssl.SSLError):
            await peer_cert_sha256(r, ctx1)
        await round_trip(old_ws, old_rs)
        new = await join(r, "rs-cbor", ctx2)
        await round_trip(new, old_ws)
        await round_trip(old_rs, new)
        assert "config reloaded" in r.log_text()

        # A broken certificate: the reload fails, naming the file and key; nothing changes.
        (r.dir / "server.pem").write_text("not a certificate\n")
        r.proc.send_signal(signal.SIGHUP)

        async def reload_failed():
            return "config reload failed" in r.log_text()

        await eventually(reload_failed, "the failed reload in the log")
        failure = next(line for line in r.log_text().splitlines() if "config reload failed" in line)
        assert "listener[0].tls.cert" in failure and "server.pem" in failure, failure
        assert await peer_cert_sha256(r, ctx2) == pki.server2.sha256
        await round_trip(old_ws, new)
        assert r.alive()
    finally:
        await asyncio.gather(old_ws.close(), old_rs.close(), *([new.close()] if new else []),
                             return_exceptions=True)


def test_unusable_certificate_stops_the_start_naming_file_and_key(tmp_path, pki):
    # Goal: a certificate path that does not exist, or a key that does not belong to the
    # certificate, stops the router at start with exit code 2 and a message naming the
    # config file, the key and the PEM file.
    # Method: two configs; run the binary (bounded) and read stderr.
    import subprocess

    from conftest import shardbar_bin

    def run(cert: str, key: str) -> subprocess.CompletedProcess:
        cfg = tmp_path / "tls.toml"
        cfg.write_text(f'[[listener]]\naddress = "127.0.0.1:1"\n[listener.tls]\ncert = "{cert}"\nkey = "{key}"\n')
        return subprocess.run([shardbar_bin(), "--config", str(cfg)], capture_output=True, text=True, timeout=20)

    p = run("missing.pem", str(pki.server1.key))
    assert p.returncode == 2, p.stderr
    assert re.search(r"tls\.toml: key `listener\[0\]\.tls\.cert`: cannot read .*missing\.pem", p.stderr), p.stderr
    p = run(str(pki.server1.pem), str(pki.server2.key))
    assert p.returncode == 2, p.stderr
    assert "listener[0].tls.key" in p.stderr and "server2.key" in p.stderr, p.stderr
