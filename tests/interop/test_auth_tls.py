"""Authentication over TLS with Autobahn|Python: the ``tls`` method (client certificates
matched by Crossbar's SHA-1 form and by SHA-256), ticket and cryptosign inside ``wss://`` and
RawSocket over TLS (TCP and Unix), on both shards; and SIGHUP reloading static principals
while established sessions carry on. Certificates are made at test time (``tlspki.py``).
"""

from __future__ import annotations

import asyncio
import shutil
import signal

import pytest
import txaio

txaio.use_asyncio()

from test_auth import SEED_DEV1, AuthClient, cryptosign, login, pubkey, ticket  # noqa: E402
from conftest import Router  # noqa: E402
from test_metrics import scrape, total  # noqa: E402
from tlspki import client_context, temporary_pki  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def pki():
    with temporary_pki("sb-authpki-") as p:
        p.ca1 = p.ca("ca1")
        p.server = p.leaf("server", p.ca1, "server")
        p.client_sha1 = p.leaf("client_sha1", p.ca1, "client")
        p.client_sha256 = p.leaf("client_sha256", p.ca1, "client")
        p.client_unknown = p.leaf("client_unknown", p.ca1, "client")
        yield p


def auth_toml(pki, tickets: str) -> str:
    return f"""
[listener.auth.tls]
principals = [{{ authid = "client_0", certificate_sha1 = "{pki.client_sha1.sha1_colons()}", role = "backend" }}, {{ authid = "client_1", certificate_sha256 = "{pki.client_sha256.sha256}", role = "device" }}]
[listener.auth.ticket]
principals = [{tickets}]
[listener.auth.cryptosign]
principals = [{{ authid = "dev1", authorized_keys = ["{pubkey(SEED_DEV1)}"], role = "device" }}]
"""


JOE = '{ authid = "joe", ticket = "t0k3n", role = "frontend" }'
NEW = '{ authid = "newbie", ticket = "fr3sh", role = "frontend" }'


def start(request, pki) -> Router:
    tls = {"cert": "server.pem", "key": "server.key", "client_ca": "client_ca.pem"}
    toml = auth_toml(pki, JOE)

    # The certificates go into the router's directory before it starts (its config names
    # them relative to itself), so the router is built here rather than by make_router.
    r = Router(name="authtls", limits={"ping_interval_ms": 0}, listener={"tls": tls}, unix_listener={"tls": tls},
               listener_toml=toml, unix_listener_toml=toml)
    pki.server.install(r.dir / "server.pem", r.dir / "server.key")
    shutil.copyfile(pki.ca1.pem, r.dir / "client_ca.pem")
    request.addfinalizer(r.cleanup)
    r.start()
    return r


async def tls_login(router, kind, ctx, methods, authid=None, authenticator=None, shard=None, tries=64) -> AuthClient:
    """``test_auth.login`` over TLS (``wss``/``rss``/``unix`` kinds), the certificate checked
    against ``localhost``."""
    return await login(router, kind, methods, authid, authenticator, shard=shard, tries=tries, ssl=ctx, host="localhost")


async def tls_refused(router, kind, ctx, methods, authid=None, authenticator=None) -> str:
    with pytest.raises(RuntimeError) as e:
        c = await tls_login(router, kind, ctx, methods, authid, authenticator)
        await c.close()
    return str(e.value).split()[2]


@pytest.mark.async_timeout(120)
async def test_client_certificate_is_the_credential(request, pki):
    r = start(request, pki)
    for kind in ("wss-json", "rss-msgpack", "unix-cbor"):
        for shard in ((0, 1) if kind != "unix-cbor" else (0,)):
            c = await tls_login(r, kind, client_context(pki.ca1, pki.client_sha1), ["tls"], shard=shard)
            d = c.details
            assert (d.authid, d.authrole, d.authmethod, d.authprovider) == ("client_0", "backend", "tls", "static")
            await c.close()
    c = await tls_login(r, "wss-cbor", client_context(pki.ca1, pki.client_sha256), ["tls"])
    assert (c.details.authid, c.details.authrole) == ("client_1", "device")
    await c.close()
    # HELLO may name the certificate's authid, but not another one.
    c = await tls_login(r, "rss-json", client_context(pki.ca1, pki.client_sha1), ["tls"], authid="client_0")
    await c.close()
    assert await tls_refused(r, "rss-json", client_context(pki.ca1, pki.client_sha1), ["tls"], authid="client_1") \
        == "wamp.error.not_authorized"
    # No certificate, or one no principal has.
    assert await tls_refused(r, "wss-json", client_context(pki.ca1), ["tls"]) == "wamp.error.not_authorized"
    assert await tls_refused(r, "wss-json", client_context(pki.ca1, pki.client_unknown), ["tls"]) == \
        "wamp.error.not_authorized"
    # The certificate does not make other methods succeed.
    assert await tls_refused(r, "wss-json", client_context(pki.ca1, pki.client_sha1), ["anonymous"]) == \
        "wamp.error.no_auth_method"
    text = scrape(r.metrics_port)
    assert total(text, "shardbar_auth_total", method="tls", result="success") >= 6
    assert total(text, "shardbar_auth_total", method="tls", result="failure") >= 3


async def test_ticket_and_cryptosign_inside_tls(request, pki):
    r = start(request, pki)
    ctx = client_context(pki.ca1)
    for kind in ("wss-json", "rss-msgpack", "unix-json"):
        c = await tls_login(r, kind, ctx, ["ticket"], "joe", ticket("t0k3n"))
        assert c.details.authmethod == "ticket"
        await c.close()
        c = await tls_login(r, kind, ctx, ["cryptosign"], "dev1", cryptosign(SEED_DEV1))
        assert c.details.authmethod == "cryptosign"
        await c.close()
    assert await tls_refused(r, "wss-json", ctx, ["ticket"], "joe", ticket("nope")) == "wamp.error.not_authorized"


@pytest.mark.async_timeout(60)
async def test_sighup_reloads_principals_and_keeps_sessions(request, pki):
    r = start(request, pki)
    ctx = client_context(pki.ca1)
    joe = await tls_login(r, "wss-json", ctx, ["ticket"], "joe", ticket("t0k3n"))
    assert await tls_refused(r, "rss-json", ctx, ["ticket"], "newbie", ticket("fr3sh")) == "wamp.error.not_authorized"
    text = r.config_path.read_text()
    r.config_path.write_text(text.replace(f"principals = [{JOE}]", f"principals = [{NEW}]"))
    r.proc.send_signal(signal.SIGHUP)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        try:
            c = await tls_login(r, "rss-json", ctx, ["ticket"], "newbie", ticket("fr3sh"))
            break
        except RuntimeError:
            assert loop.time() < deadline, r.log_text()[-2000:]
            await asyncio.sleep(0.2)
    await c.close()
    # joe is gone from the principals for new logins, but his session stays.
    assert await tls_refused(r, "rss-json", ctx, ["ticket"], "joe", ticket("t0k3n")) == "wamp.error.not_authorized"
    await joe.subscribe(lambda *a: None, "test.auth.reload.still")
    assert joe.is_attached()
    await joe.close()
    assert "config reloaded" in r.log_text()

