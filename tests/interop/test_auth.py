"""Authentication with the real router and Autobahn|Python's own authenticators.

Every method (anonymous, ticket, wampcra plain and salted, cryptosign, scram), success and
each failure (wrong secret, unknown authid, wrong key, no answer to the CHALLENGE, method not
offered), over WebSocket, RawSocket and the Unix socket, on both shards; dynamic
authenticators (accept, reject, error, timeout, not registered, may not be registered by an
ordinary client); the config refusing an authenticator role for anonymous sessions; the
/metrics counters. Raw clients (``rawwamp``) send what Autobahn never would.

TLS and the ``tls`` method (client certificates) are in ``test_tls.py``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import urllib.request

import pytest
import txaio

txaio.use_asyncio()

from autobahn.wamp import auth as ab_auth  # noqa: E402
from autobahn.wamp.exception import ApplicationError  # noqa: E402
from autobahn.wamp.types import ComponentConfig  # noqa: E402

from abclient import Client, on_shard, open_session  # noqa: E402
from conftest import Router, shardbar_bin  # noqa: E402
from rawwamp import ABORT, HELLO, Closed, RawSocketConn  # noqa: E402

CHALLENGE, AUTHENTICATE = 4, 5

# Ed25519 seeds (private keys) for the tests; the public keys go into the router's config.
SEED_DEV1 = "4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510"
SEED_OTHER = "1b4a9e7e4f3c2d1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f70"

SCRAM_PASSWORD = "pencil"


def pubkey(seed_hex: str) -> str:
    return ab_auth.create_authenticator("cryptosign", authid="x", privkey=seed_hex)._privkey.public_key()


def scram_record(password: str) -> dict:
    """A SCRAM principal record made by the router's own credential tool."""
    out = subprocess.run(
        [shardbar_bin(), "credential", "scram", "--authid", "alice", "--iterations", "16", "--memory", "64",
         "--role", "frontend", "--password-env", "SB_TEST_PW"],
        capture_output=True, text=True, env={**os.environ, "SB_TEST_PW": password}, timeout=60, check=True,
    )
    line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("{"))
    return line.strip()


def auth_router(make_router, extra_auth: str = "", realms=None, unix_auth: str = "", **kw) -> Router:
    """Listener 0 (TCP) offers every method; the Unix listener offers ticket for the
    backend (the trusted role that provides dynamic authenticators)."""
    ticket = ('principals = [{ authid = "joe", ticket = "${SB_JOE_TICKET}", role = "frontend" }, '
              '{ authid = "bound", ticket = "b0und", role = "frontend", realm = "realm2" }, '
              '{ authid = "xtra", ticket = "x", role = "frontend", extra = { tier = "gold", n = 3 } }]')
    tcp = f"""
[listener.auth.anonymous]
role = "public"
[listener.auth.ticket]
{ticket}
[listener.auth.wampcra]
principals = [{{ authid = "svc", secret = "s3cr3t", role = "backend" }}, {{ authid = "salty", secret = "s3cr3t", role = "backend", salt = "salt123", iterations = 100, keylen = 32 }}]
[listener.auth.cryptosign]
principals = [{{ authid = "dev1", authorized_keys = ["{pubkey(SEED_DEV1)}"], role = "device" }}]
[listener.auth.scram]
principals = [{scram_record(SCRAM_PASSWORD)}]
{extra_auth}
"""
    unix = unix_auth or """
[listener.auth.ticket]
principals = [{ authid = "backend", ticket = "b4ck", role = "trusted" }]
"""
    os.environ["SB_JOE_TICKET"] = "s3cr3t-ticket"
    return make_router(listener_toml=tcp, unix_listener_toml=unix,
                       realms=realms or [{"name": "realm1"}, {"name": "realm2"}],
                       limits={"ping_interval_ms": 0}, **kw)


class AuthClient(Client):
    """A session that joins with ``authmethods``/``authid``/``authextra`` and answers the
    CHALLENGE with an Autobahn authenticator (or a fixed ``answer``)."""

    def __init__(self, config, kind, joined, methods, authid, authenticator, answer):
        super().__init__(config, kind, joined)
        # (ApplicationSession owns `authid`, `authmethod`, ...: our names must differ.)
        self._methods, self._claimed, self._auth, self._answer = methods, authid, authenticator, answer
        self.challenges = []

    def onConnect(self):
        extra = self._auth.authextra if self._auth is not None else None
        self.join(self.config.realm, authmethods=self._methods, authid=self._claimed, authextra=extra)

    def onChallenge(self, challenge):
        self.challenges.append(challenge)
        if self._answer is not None:
            return self._answer
        return self._auth.on_challenge(self, challenge)

    def onWelcome(self, welcome):
        if self._auth is not None and hasattr(self._auth, "on_welcome"):
            return self._auth.on_welcome(self, welcome.authextra)
        return None


async def login(router, kind="ws-json", methods=("ticket",), authid=None, authenticator=None, answer=None,
                realm="realm1", shard=None, tries=64, ssl=None, host="127.0.0.1") -> AuthClient:
    """A joined AuthClient; raises RuntimeError("not joined: <reason> ...") on ABORT. With
    ``ssl``, over TLS (``open_session``'s ``wss``/``rss``/``unix`` kinds)."""

    def make(joined):
        return AuthClient(ComponentConfig(realm, {}), kind, joined, list(methods), authid, authenticator, answer)

    return await on_shard(lambda: open_session(router, kind, make, ssl, host, timeout=15), shard, tries)


async def refused(router, **kw) -> str:
    """The ABORT reason of a login that must fail."""
    with pytest.raises(RuntimeError) as e:
        c = await login(router, **kw)
        await c.close()
    text = str(e.value)
    assert text.startswith("not joined: "), text
    return text.split()[2]


def ticket(t):
    return ab_auth.create_authenticator("ticket", ticket=t)


def cra(secret):
    # Autobahn insists on an authid here; the HELLO's comes from `login(authid=...)`.
    return ab_auth.create_authenticator("wampcra", authid="unused", secret=secret)


def cryptosign(seed, authid=None):
    kw = {"privkey": seed}
    if authid:
        kw["authid"] = authid
    return ab_auth.create_authenticator("cryptosign", **kw)


def scram(password, authid="alice"):
    return ab_auth.create_authenticator("scram", authid=authid, password=password)


def metrics(router) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{router.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def auth_count(text: str, listener: int, method: str, result: str) -> int:
    total = 0
    for line in text.splitlines():
        if line.startswith("shardbar_auth_total{") and f'listener="{listener}"' in line \
                and f'method="{method}"' in line and f'result="{result}"' in line:
            total += int(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- static methods


@pytest.mark.async_timeout(180)
async def test_every_static_method_logs_in_on_every_transport_and_shard(make_router):
    r = auth_router(make_router)
    cases = [
        (["ticket"], "joe", lambda: ticket("s3cr3t-ticket"), "frontend"),
        (["wampcra"], "svc", lambda: cra("s3cr3t"), "backend"),
        (["wampcra"], "salty", lambda: cra("s3cr3t"), "backend"),
        (["cryptosign"], "dev1", lambda: cryptosign(SEED_DEV1), "device"),
        (["scram"], "alice", lambda: scram(SCRAM_PASSWORD), "frontend"),
    ]
    for methods, authid, make_auth, role in cases:
        for kind in ("ws-json", "rs-msgpack", "ws-cbor"):
            for shard in (0, 1):
                c = await login(r, kind, methods, authid, make_auth(), shard=shard)
                d = c.details
                assert (d.authid, d.authrole, d.authmethod, d.authprovider) == (authid, role, methods[0], "static"), \
                    (methods, kind, d)
                assert c.shard == shard
                # The session works.
                await c.subscribe(lambda *a: None, "test.auth.works")
                await c.close()
    # The Unix-socket listener has its own principals.
    c = await login(r, "unix-json", ["ticket"], "backend", ticket("b4ck"))
    assert c.details.authrole == "trusted"
    await c.close()
    assert await refused(r, kind="unix-msgpack", methods=["ticket"], authid="joe",
                         authenticator=ticket("s3cr3t-ticket")) == "wamp.error.not_authorized"


async def test_scram_welcome_carries_the_server_signature_autobahn_checks(make_router):
    r = auth_router(make_router)
    c = await login(r, "rs-json", ["scram"], "alice", scram(SCRAM_PASSWORD))
    extra = c.details.authextra
    assert extra["scram_server_signature"] and extra["verifier"] == "v=" + extra["scram_server_signature"]
    await c.close()


async def test_anonymous_gets_the_configured_role(make_router):
    r = auth_router(make_router)
    c = await login(r, "ws-msgpack", ["anonymous"])
    assert (c.details.authrole, c.details.authmethod) == ("public", "anonymous")
    await c.close()


async def test_first_configured_method_in_the_clients_order_wins(make_router):
    r = auth_router(make_router)
    # "tls" is not offered on this listener and "ticket" comes before "anonymous".
    c = await login(r, "ws-json", ["tls", "ticket", "anonymous"], "joe", ticket("s3cr3t-ticket"))
    assert c.details.authmethod == "ticket"
    await c.close()
    c = await login(r, "ws-json", ["anonymous", "ticket"], "joe", ticket("s3cr3t-ticket"))
    assert c.details.authmethod == "anonymous"
    await c.close()


async def test_principal_extra_reaches_welcome_authextra(make_router):
    r = auth_router(make_router)
    c = await login(r, "ws-json", ["ticket"], "xtra", ticket("x"))
    assert c.details.authextra["tier"] == "gold" and c.details.authextra["n"] == 3
    assert "_shard" in c.details.authextra
    await c.close()


@pytest.mark.async_timeout(120)
async def test_failures_abort_with_the_uri_autobahn_expects_and_leak_nothing(make_router):
    r = auth_router(make_router)
    cases = [
        dict(methods=["ticket"], authid="joe", authenticator=ticket("wrong")),
        dict(methods=["ticket"], authid="nobody", authenticator=ticket("s3cr3t-ticket")),
        dict(methods=["wampcra"], authid="svc", authenticator=cra("wrong")),
        dict(methods=["wampcra"], authid="nobody", authenticator=cra("s3cr3t")),
        dict(methods=["wampcra"], authid="salty", authenticator=cra("wrong")),
        dict(methods=["cryptosign"], authid="dev1", authenticator=cryptosign(SEED_OTHER)),
        dict(methods=["cryptosign"], authenticator=cryptosign(SEED_OTHER)),
        dict(methods=["scram"], authid="alice", authenticator=scram("wrong")),
        dict(methods=["scram"], authid="nobody", authenticator=scram(SCRAM_PASSWORD, "nobody")),
    ]
    for kind in ("ws-json", "rs-cbor"):
        for case in cases:
            reason = await refused(r, kind=kind, **case)
            assert reason == "wamp.error.not_authorized", (case, reason)
    # Method not offered on this listener.
    assert await refused(r, methods=["tls"]) == "wamp.error.no_auth_method"
    assert await refused(r, methods=["foo", "bar"]) == "wamp.error.no_auth_method"
    # A principal bound to another realm.
    assert await refused(r, methods=["ticket"], authid="bound", authenticator=ticket("b0und")) == \
        "wamp.error.not_authorized"
    c = await login(r, "ws-json", ["ticket"], "bound", ticket("b0und"), realm="realm2")
    await c.close()
    # The log names the authid and the peer, and never a secret.
    log = r.log_text()
    assert "authentication refused" in log and "nobody" in log and "127.0.0.1" in log
    for secret in ("s3cr3t-ticket", "s3cr3t", "b4ck", SCRAM_PASSWORD):
        assert secret not in log, secret
    m = metrics(r)
    assert auth_count(m, 0, "ticket", "failure") >= 4
    assert auth_count(m, 0, "ticket", "success") >= 1
    assert auth_count(m, 0, "scram", "failure") >= 4


async def test_unknown_authid_gets_a_challenge_like_a_known_one(make_router):
    """A prober cannot tell unknown authids from known ones by the CHALLENGE."""
    r = auth_router(make_router)
    seen = {}
    for authid in ("salty", "nobody"):
        conn = await RawSocketConn.open(port=r.port, serializer="json")
        await conn.send([HELLO, "realm1", {"roles": {"caller": {}}, "authmethods": ["wampcra"], "authid": authid}])
        m = await conn.recv()
        assert m[0] == CHALLENGE and m[1] == "wampcra", m
        seen[authid] = set(m[2])
        await conn.send([AUTHENTICATE, "AAAA", {}])
        m = await conn.recv()
        assert m[0] == ABORT and m[2] == "wamp.error.not_authorized", m
        assert m[1]["message"] == "authentication failed"
        conn.close()
    assert seen["salty"] == seen["nobody"] == {"challenge", "salt", "iterations", "keylen"}


async def test_cryptosign_finds_the_principal_from_the_key_and_refuses_tls_unique(make_router):
    r = auth_router(make_router)
    c = await login(r, "rs-msgpack", ["cryptosign"], None, cryptosign(SEED_DEV1))
    assert c.details.authid == "dev1"
    await c.close()
    for binding, uri in (("tls-unique", "wamp.error.authentication_failed"), (None, None)):
        conn = await RawSocketConn.open(port=r.port, serializer="msgpack")
        extra = {"pubkey": pubkey(SEED_DEV1), "channel_binding": binding}
        await conn.send([HELLO, "realm1", {"roles": {"caller": {}}, "authmethods": ["cryptosign"], "authextra": extra}])
        m = await conn.recv()
        if uri:
            assert m[0] == ABORT and m[2] == uri and "tls-unique" in m[1]["message"], m
        else:
            # null is "no binding": a CHALLENGE with a 32-byte challenge.
            assert m[0] == CHALLENGE and len(m[2]["challenge"]) == 64, m
        conn.close()


async def test_raw_protocol_errors_during_login(make_router):
    r = auth_router(make_router)
    # AUTHENTICATE before HELLO.
    conn = await RawSocketConn.open(port=r.port, serializer="json")
    await conn.send([AUTHENTICATE, "x", {}])
    m = await conn.recv()
    assert m[0] == ABORT and m[2] == "wamp.error.protocol_violation", m
    conn.close()
    # Something else than AUTHENTICATE after a CHALLENGE.
    conn = await RawSocketConn.open(port=r.port, serializer="json")
    await conn.send([HELLO, "realm1", {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": "joe"}])
    assert (await conn.recv())[0] == CHALLENGE
    await conn.send([HELLO, "realm1", {"roles": {"caller": {}}}])
    m = await conn.recv()
    assert m[0] == ABORT and m[2] == "wamp.error.protocol_violation", m
    conn.close()
    # ticket without an authid; cryptosign without a pubkey; scram without a nonce.
    for details in ({"authmethods": ["ticket"]}, {"authmethods": ["cryptosign"], "authid": "dev1"},
                    {"authmethods": ["scram"], "authid": "alice"}):
        conn = await RawSocketConn.open(port=r.port, serializer="json")
        await conn.send([HELLO, "realm1", {"roles": {"caller": {}}, **details}])
        m = await conn.recv()
        assert m[0] == ABORT and m[2] == "wamp.error.authentication_failed", (details, m)
        conn.close()
    # Other sessions never noticed.
    c = await login(r, "ws-json", ["ticket"], "joe", ticket("s3cr3t-ticket"))
    await c.close()


@pytest.mark.async_timeout(60)
async def test_a_peer_that_never_answers_the_challenge_is_closed(make_router):
    r = auth_router(make_router)
    conn = await RawSocketConn.open(port=r.port, serializer="json")
    await conn.send([HELLO, "realm1", {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": "joe"}])
    assert (await conn.recv())[0] == CHALLENGE
    # The HELLO deadline (connect → WELCOME, 10 s by default) closes it.
    got, closed = await conn.recv_closed(timeout=20)
    assert isinstance(closed, Closed) and got == [], got
    assert "hello_timeouts_total" in metrics(r)


# ---------------------------------------------------------------- dynamic authenticators


DYNAMIC = """
[listener.auth.ticket]
authenticator = "com.example.authenticate"
authenticator_realm = "realm1"
authenticator_role = "trusted"
"""


def dynamic_router(make_router):
    """Ticket on the TCP listener is dynamic; anonymous there has role "public"."""
    tcp = """
[listener.auth.anonymous]
role = "public"
""" + DYNAMIC
    os.environ["SB_JOE_TICKET"] = "s3cr3t-ticket"
    return make_router(listener_toml=tcp, unix_listener_toml="""
[listener.auth.ticket]
principals = [{ authid = "backend", ticket = "b4ck", role = "trusted" }]
""", limits={"ping_interval_ms": 0})


@pytest.mark.async_timeout(120)
async def test_dynamic_authenticator_accepts_rejects_errors_times_out_and_is_missing(make_router):
    r = dynamic_router(make_router)
    # Nobody registered it yet: the login fails, it does not hang.
    assert await refused(r, methods=["ticket"], authid="joe", authenticator=ticket("t")) == \
        "wamp.error.authentication_failed"
    backend = await login(r, "unix-json", ["ticket"], "backend", ticket("b4ck"))
    calls = []

    async def authenticate(realm, authid, details):
        calls.append((realm, authid, details))
        t = details["ticket"]
        if t == "role-string":
            return "frontend"
        if t == "dict":
            return {"role": "ops", "authid": "renamed", "extra": {"k": "v"}}
        if t == "slow":
            await asyncio.sleep(8)
            return "frontend"
        if t == "boom":
            raise RuntimeError("backend bug")
        raise ApplicationError("wamp.error.not_authorized", "bad ticket")

    await backend.register(authenticate, "com.example.authenticate")
    for kind in ("ws-json", "rs-msgpack"):
        for shard in (0, 1):
            c = await login(r, kind, ["ticket"], "joe", ticket("role-string"), shard=shard)
            assert (c.details.authid, c.details.authrole, c.details.authprovider) == ("joe", "frontend", "dynamic")
            await c.close()
    c = await login(r, "ws-cbor", ["ticket"], "joe", ticket("dict"))
    assert (c.details.authid, c.details.authrole) == ("renamed", "ops")
    assert c.details.authextra["k"] == "v"
    await c.close()
    realm, authid, details = calls[0]
    assert (realm, authid, details["authmethod"]) == ("realm1", "joe", "ticket")
    assert details["transport"]["peer"].startswith("tcp4:127.0.0.1:")
    assert await refused(r, methods=["ticket"], authid="joe", authenticator=ticket("nope")) == \
        "wamp.error.authentication_failed"
    assert await refused(r, methods=["ticket"], authid="joe", authenticator=ticket("boom")) == \
        "wamp.error.authentication_failed"
    # Timeout: the authenticator has 5 s.
    t0 = asyncio.get_running_loop().time()
    assert await refused(r, methods=["ticket"], authid="joe", authenticator=ticket("slow")) == \
        "wamp.error.authentication_failed"
    assert asyncio.get_running_loop().time() - t0 < 8
    assert "did not answer in time" in r.log_text()
    await backend.close()


async def test_an_ordinary_client_cannot_register_the_authenticator(make_router):
    r = dynamic_router(make_router)
    anon = await login(r, "ws-json", ["anonymous"])
    for proc, match in (("com.example.authenticate", None), ("com.example.", "prefix"), ("com..authenticate", "wildcard")):
        opts = {"match": match} if match else {}
        from autobahn.wamp.types import RegisterOptions

        with pytest.raises(ApplicationError) as e:
            await anon.register(lambda *a: "admin", proc, options=RegisterOptions(**opts))
        assert e.value.error == "wamp.error.not_authorized", (proc, e.value)
    await anon.close()


def test_config_refuses_an_authenticator_role_for_anonymous(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("""
[[listener]]
address = "127.0.0.1:1"
[listener.auth.anonymous]
role = "trusted"
[listener.auth.ticket]
authenticator = "com.example.authenticate"
authenticator_realm = "realm1"
authenticator_role = "trusted"
""")
    p = subprocess.run([shardbar_bin(), "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p
    assert str(cfg) in p.stderr and "listener[0].auth.anonymous.role" in p.stderr, p.stderr


def test_config_errors_name_file_key_and_expectation(tmp_path):
    cases = [
        ('[listener.auth.ticket]\nprincipals = [{ authid = "a", role = "r", ticket = "${SB_UNSET_VAR_X}" }]',
         "listener[0].auth.ticket.principals[0].ticket", "SB_UNSET_VAR_X"),
        ('[listener.auth.cryptosign]\nprincipals = [{ authid = "a", role = "r", authorized_keys = ["abc"] }]',
         "listener[0].auth.cryptosign.principals[0].authorized_keys[0]", "64 hex"),
        ('[listener.auth.wampcra]\nprincipals = [{ authid = "a", role = "r", secret = "s" }, { authid = "a", role = "r", secret = "t" }]',
         "listener[0].auth.wampcra.principals[1].authid", "twice"),
        ('[listener.auth.scram]\nprincipals = [{ authid = "a", role = "r", kdf = "md5", iterations = 1, salt = "00", stored_key = "00", server_key = "00" }]',
         "listener[0].auth.scram.principals[0].kdf", "argon2id-13"),
        ('[listener.auth.ticket]\nprincipals = [{ authid = "a", role = "r", ticket = "t" }]\nauthenticator = "x.y"',
         "listener[0].auth.ticket", "not both"),
    ]
    for body, key, expected in cases:
        cfg = tmp_path / "bad.toml"
        cfg.write_text(f'[[listener]]\naddress = "127.0.0.1:1"\n{body}\n')
        p = subprocess.run([shardbar_bin(), "--config", str(cfg)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (body, p)
        assert str(cfg) in p.stderr and key in p.stderr and expected in p.stderr, (key, p.stderr)
        assert "s3cr3t" not in p.stderr



async def test_dynamic_wampcra_cryptosign_and_scram_get_their_secret_from_the_authenticator(make_router):
    """For these methods the authenticator is asked at HELLO for the secret, key or SCRAM
    record; the router then runs the exchange itself."""
    import tomllib

    record = tomllib.loads("p = " + scram_record(SCRAM_PASSWORD))["p"]
    dyn = "\n".join(f"""
[listener.auth.{m}]
authenticator = "com.example.authenticate"
authenticator_realm = "realm1"
authenticator_role = "trusted"
""" for m in ("wampcra", "cryptosign", "scram"))
    r = make_router(listener_toml=dyn, unix_listener_toml="""
[listener.auth.ticket]
principals = [{ authid = "backend", ticket = "b4ck", role = "trusted" }]
""", limits={"ping_interval_ms": 0})
    backend = await login(r, "unix-json", ["ticket"], "backend", ticket("b4ck"))

    def authenticate(realm, authid, details):
        m = details["authmethod"]
        if m == "wampcra":
            return {"role": "backend", "secret": "dyn-s3cr3t", "salt": "pepper", "iterations": 100, "keylen": 32}
        if m == "cryptosign":
            key = details["authextra"]["pubkey"]
            return {"role": "device", "authid": "dev-" + key[:8], "pubkey": pubkey(SEED_DEV1)}
        return {"role": "frontend", **record}

    await backend.register(authenticate, "com.example.authenticate")
    c = await login(r, "ws-json", ["wampcra"], "svc", cra("dyn-s3cr3t"))
    assert (c.details.authrole, c.details.authprovider) == ("backend", "dynamic")
    await c.close()
    assert await refused(r, methods=["wampcra"], authid="svc", authenticator=cra("wrong")) == "wamp.error.not_authorized"
    c = await login(r, "rs-msgpack", ["cryptosign"], None, cryptosign(SEED_DEV1))
    assert (c.details.authid, c.details.authrole) == ("dev-" + pubkey(SEED_DEV1)[:8], "device")
    await c.close()
    # The authenticator vouches for another key than the client's: refused.
    assert await refused(r, kind="rs-msgpack", methods=["cryptosign"], authenticator=cryptosign(SEED_OTHER)) == \
        "wamp.error.not_authorized"
    c = await login(r, "ws-cbor", ["scram"], "alice", scram(SCRAM_PASSWORD))
    assert c.details.authextra["scram_server_signature"]
    await c.close()
    await backend.close()
