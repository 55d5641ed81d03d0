#!/usr/bin/env python3
"""Computes the authentication test vectors in src/proto/auth/*.rs with Autobahn|Python's own
client-side code (and Autobahn|JS's, when node and the npm package are at hand).

The Rust unit tests hard-code what this prints; rerun it to check them against another
Autobahn release. Every value comes from the client library's public functions or from
driving its authenticator objects (AuthWampCra, AuthCryptoSign, AuthScram) with a fake
CHALLENGE, so the vectors say what a real client sends and what it accepts.

    python3 -m venv /tmp/crypto-venv
    /tmp/crypto-venv/bin/pip install 'autobahn[encryption,scram]==26.10.2'
    /tmp/crypto-venv/bin/python tests/interop/gen_auth_vectors.py [--js DIR]

`encryption` brings PyNaCl (cryptosign), `scram` brings argon2-cffi and passlib (SCRAM and
SASLprep). `--js DIR` names a directory whose node_modules holds `autobahn` (22.11.1 was
used: `npm install autobahn@22.11.1`); without it the Autobahn|JS part is skipped.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys

import txaio

txaio.use_asyncio()
LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
txaio.config.loop = LOOP

import autobahn  # noqa: E402
from autobahn.wamp import auth  # noqa: E402
from autobahn.wamp.cryptosign import CryptosignKey  # noqa: E402
from autobahn.wamp.types import Challenge  # noqa: E402
from passlib.utils import saslprep  # noqa: E402


def show(name, value):
    if isinstance(value, bytes):
        value = value.hex()
    print(f"{name} = {value!r}")


class FakeLog:
    def info(self, *a, **k):
        pass

    def error(self, *a, **k):
        pass


class FakeSession:
    """What AuthCryptoSign.on_challenge and AuthScram.on_welcome read from a session."""

    class _Transport:
        class transport_details:  # noqa: N801
            channel_id = {}

    _transport = _Transport()
    log = FakeLog()


def resolve(value):
    if asyncio.isfuture(value):
        return LOOP.run_until_complete(value)
    return value


def crossbar_challenge_text(authid, authrole, authprovider, session, nonce, timestamp):
    # crossbar router/auth/wampcra.py _compute_challenge: this dict, in this order, through
    # json.dumps(ensure_ascii=False).
    obj = {
        "authid": authid,
        "authrole": authrole,
        "authmethod": "wampcra",
        "authprovider": authprovider,
        "session": session,
        "nonce": nonce,
        "timestamp": timestamp,
    }
    return json.dumps(obj, ensure_ascii=False)


def wampcra():
    print("\n## wampcra (autobahn.wamp.auth.AuthWampCra.on_challenge, derive_key, compute_wcs)")
    nonce = "Fw9aT1kQ2c8Vb7LxR3mN5pE0dH6jK4sU9yZ1qW8eA2rT7uI3oP5aS6dF0gH4jK8l"
    text = crossbar_challenge_text(
        "svc", "backend", "static", 3251278072152162, nonce, "2026-12-01T10:00:00.000Z"
    )
    show("challenge", text)
    odd = crossbar_challenge_text(
        'he said "hi"\\\n\r\t\b\f\x01\x1f\x7f é€😀\u2028', "r\u00e9le", "dynamic", 0, "n", "t"
    )
    show("challenge_odd", odd)

    a = auth.AuthWampCra(authid="svc", secret="s3cr3t")
    sig = a.on_challenge(FakeSession(), Challenge("wampcra", {"challenge": text}))
    assert sig == auth.compute_wcs(b"s3cr3t", text.encode()).decode()
    show("plain_signature(secret='s3cr3t')", sig)

    salted(text, "s3cr3t", "salt123", 1000, 32, "salted_signature")
    salted(odd, "pässwörd", "sälz", 100, 64, "salted_signature_odd(keylen 64)")
    return text, odd


def salted(challenge, secret, salt, iterations, keylen, label):
    """The derived key, and AuthWampCra's answer to a salted CHALLENGE with these parameters."""
    key = auth.derive_key(secret, salt, iterations, keylen)
    show(f"derive_key({secret!r}, {salt!r}, {iterations}, {keylen})", key.decode())
    a = auth.AuthWampCra(authid="svc", secret=secret)
    extra = {"challenge": challenge, "salt": salt, "iterations": iterations, "keylen": keylen}
    show(label, a.on_challenge(FakeSession(), Challenge("wampcra", extra)))


def cryptosign():
    print("\n## cryptosign (autobahn.wamp.cryptosign.CryptosignKey, AuthCryptoSign.on_challenge)")
    seed = hashlib.sha256(b"shardbar cryptosign vector seed").digest()
    challenge = hashlib.sha256(b"shardbar cryptosign vector challenge").digest()
    show("seed", seed)
    show("challenge", challenge)
    key = CryptosignKey.from_bytes(seed)
    show("pubkey", key.public_key())
    a = auth.AuthCryptoSign(privkey=seed.hex(), authid="dev1")
    ch = Challenge("cryptosign", {"challenge": challenge.hex(), "channel_binding": None})
    sig = resolve(a.on_challenge(FakeSession(), ch))
    assert sig == resolve(key.sign_challenge(ch))
    show("signature(192 hex)", sig)
    msg = b"any message"
    show("sign(b'any message')", resolve(key.sign(msg)))

    # What the router must refuse, as libsodium's crypto_sign_open (PyNaCl, hence Crossbar)
    # refuses it: S + L (same signature modulo L, non-canonical) and a small-order key.
    import nacl.exceptions
    import nacl.signing

    raw = bytes.fromhex(sig[:128])
    order = 2**252 + 27742317777372353535851937790883648493
    s_plus_l = (int.from_bytes(raw[32:], "little") + order).to_bytes(32, "little")
    malleated = raw[:32] + s_plus_l
    vk = nacl.signing.VerifyKey(bytes.fromhex(key.public_key()))
    vk.verify(challenge, raw)
    for bad_key, bad_sig in [(vk, malleated),
                             (nacl.signing.VerifyKey(bytes([1]) + bytes(31)), bytes([1]) + bytes(63))]:
        try:
            bad_key.verify(challenge, bad_sig)
            raise AssertionError("libsodium accepted a signature it should refuse")
        except nacl.exceptions.BadSignatureError:
            pass
    show("malleated (S + L, libsodium refuses)", malleated)
    print("# libsodium also refuses the identity key 0100..00 with signature R = identity, S = 0")
    return seed, challenge, key.public_key(), sig


def scram_exchange(authid, password, client_nonce, random16, salt, iterations, memory):
    """Drives AuthScram through CHALLENGE and WELCOME; returns its values."""
    a = auth.AuthScram(authid=authid, password=password)
    a._client_nonce = client_nonce  # what `authextra` would have drawn from os.urandom(16)
    assert a.authextra == {"nonce": client_nonce}
    server_nonce = client_nonce + base64.b64encode(random16).decode()
    extra = {
        "nonce": server_nonce,
        "kdf": "argon2id-13",
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
        "memory": memory,
    }
    proof = a.on_challenge(FakeSession(), Challenge("scram", extra)).decode()
    # The router's record, as derive_scram_credential computes it from the salted password.
    salted = auth._hash_argon2id13_secret(
        password.encode(), extra["salt"], iterations, memory
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    server_sig = base64.b64encode(
        hmac.new(server_key, a._auth_message, hashlib.sha256).digest()
    ).decode()
    assert a.on_welcome(FakeSession(), {"scram_server_signature": server_sig}) is None
    bad = base64.b64encode(bytes(32)).decode()
    assert a.on_welcome(FakeSession(), {"scram_server_signature": bad}) is not None
    return {
        "authid": authid,
        "saslprep(authid)": saslprep(authid),
        "password": password,
        "client_nonce": client_nonce,
        "random16": random16.hex(),
        "server_nonce": server_nonce,
        "salt": salt.hex(),
        "iterations": iterations,
        "memory": memory,
        "auth_message": a._auth_message.decode(),
        "client_proof": proof,
        "stored_key": stored_key.hex(),
        "server_key": server_key.hex(),
        "server_signature (on_welcome accepts)": server_sig,
    }


def scram():
    print("\n## scram (autobahn.wamp.auth.AuthScram.on_challenge/on_welcome, derive_scram_credential)")
    salt = bytes.fromhex("5ee0a9b1c2d3e4f5061728394a5b6c7d")
    cred = auth.derive_scram_credential("alice", "secret123", salt=salt)
    show("derive_scram_credential('alice', 'secret123', salt)", json.dumps(cred))
    cred = auth.derive_scram_credential("alice@example.com", "secret123")
    show("derive_scram_credential('alice@example.com', 'secret123') (salt from email)", json.dumps(cred))

    cn = base64.b64encode(bytes.fromhex("00112233445566778899aabbccddeeff")).decode()
    r16 = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
    # The credential above logs in: same salt, Autobahn's defaults (4096, 512).
    for k, v in scram_exchange("alice", "secret123", cn, r16, salt, 4096, 512).items():
        show(f"full.{k}", v)
    # A cheap exchange with an authid SASLprep changes (soft hyphen dropped, NBSP to space).
    cn2 = base64.b64encode(bytes(range(16))).decode()
    r16b = bytes(range(100, 116))
    salt2 = bytes(range(200, 216))
    for k, v in scram_exchange("Al\u00adice\u00a0B", "pässwörd", cn2, r16b, salt2, 3, 64).items():
        show(f"small.{k}", v)

    # A CHALLENGE carrying `channel_binding: null` puts "c=None" into the AuthMessage:
    # the router must leave the key out.
    a = auth.AuthScram(authid="alice", password="x")
    a._client_nonce = cn
    extra = {"nonce": cn + "AAAA", "kdf": "argon2id-13", "salt": base64.b64encode(salt).decode(),
             "iterations": 1, "memory": 64, "channel_binding": None}
    a.on_challenge(FakeSession(), Challenge("scram", extra))
    assert b",c=None," in a._auth_message, a._auth_message
    print("# channel_binding: null in CHALLENGE -> AuthMessage has 'c=None' (leave the key out)")

    # Autobahn's pbkdf2 SCRAM path fails: the base64 salt text reaches pbkdf2() as a str.
    a = auth.AuthScram(authid="alice", password="x")
    a._client_nonce = cn
    extra.pop("channel_binding")
    extra.update(kdf="pbkdf2", iterations=1000)
    try:
        a.on_challenge(FakeSession(), Challenge("scram", extra))
        print("# pbkdf2: Autobahn computed a proof (the path works in this release)")
    except Exception as e:  # noqa: BLE001
        print(f"# pbkdf2: Autobahn fails: {type(e).__name__}: {e}")

    print("\n## saslprep (passlib.utils.saslprep, as AuthScram applies to the authid)")
    for s in ["alice", "Al\u00adice\u00a0B", "\u2168", "I\u00adX", "a\u200bb", "ｆｕｌｌ",
              "e\u0301", "a\x07b", "\u0627\u0031", "\u0627\u0031\u0628", "", "\ue000"]:
        try:
            show(f"saslprep({s!r})", saslprep(s))
        except ValueError as e:
            show(f"saslprep({s!r})", f"ValueError: {e}")


def fingerprint():
    print("\n## fingerprint (autobahn.util.peer_certificate_details)")
    import datetime

    from autobahn.util import peer_certificate_details
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client_0")])
    day = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(day).not_valid_after(day + datetime.timedelta(days=3650))
        .sign(key, None)
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    details = peer_certificate_details(cert)
    assert details["sha1"] == ":".join(f"{b:02X}" for b in hashlib.sha1(der).digest())
    show("sha1(der)", hashlib.sha1(der).digest())
    show("details.sha1", details["sha1"])
    show("details.sha256", details["sha256"])
    assert details["sha256"].replace(":", "").lower() == hashlib.sha256(der).hexdigest()


JS = r"""
const cra = require('autobahn/lib/auth/cra.js');
const cs = require('autobahn/lib/auth/cryptosign.js');
const nacl = require('tweetnacl');
const [text, odd, seedHex, chHex] = JSON.parse(process.argv[1]);
const out = {};
out.plain_signature = cra.sign('s3cr3t', text);
const key = cra.derive_key('s3cr3t', 'salt123', 1000, 32);
out.derive_key = key;
out.salted_signature = cra.sign(key, text);
const key2 = cra.derive_key('pässwörd', 'sälz', 100, 64);
out.derive_key_odd = key2;
out.salted_signature_odd = cra.sign(key2, odd);
const pair = nacl.sign.keyPair.fromSeed(Buffer.from(seedHex, 'hex'));
out.pubkey = cs.public_key(pair);
out.cryptosign_signature = cs.sign_challenge(pair, {challenge: chHex});
console.log(JSON.stringify(out, null, 1));
"""


def javascript(js_dir, text, odd, seed, challenge, pubkey, cs_sig):
    """Runs the same inputs through Autobahn|JS and checks it agrees with Autobahn|Python."""
    print("\n## Autobahn|JS (lib/auth/cra.js sign/derive_key, lib/auth/cryptosign.js sign_challenge)")
    args = json.dumps([text, odd, seed.hex(), challenge.hex()])
    pkg = json.load(open(os.path.join(js_dir, "node_modules/autobahn/package.json")))
    print(f"# autobahn (npm) {pkg['version']}")
    out = subprocess.run(["node", "-e", JS, args], cwd=js_dir, check=True,
                         capture_output=True, text=True).stdout
    out = json.loads(out)
    py = {
        "plain_signature": auth.compute_wcs(b"s3cr3t", text.encode()).decode(),
        "derive_key": auth.derive_key("s3cr3t", "salt123", 1000, 32).decode(),
        "derive_key_odd": auth.derive_key("pässwörd", "sälz", 100, 64).decode(),
        "pubkey": pubkey,
        "cryptosign_signature": cs_sig,
    }
    py["salted_signature"] = auth.compute_wcs(py["derive_key"], text).decode()
    py["salted_signature_odd"] = auth.compute_wcs(py["derive_key_odd"], odd).decode()
    for k, v in out.items():
        assert py[k] == v, (k, v, py[k])
        show(f"js.{k}", v)
    print("# Autobahn|JS agrees with Autobahn|Python on every value above")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--js", metavar="DIR", help="directory with node_modules/autobahn")
    args = p.parse_args()
    print(f"# autobahn (python) {autobahn.__version__}, python {sys.version.split()[0]}")
    text, odd = wampcra()
    cs = cryptosign()
    scram()
    fingerprint()
    if args.js:
        javascript(args.js, text, odd, *cs)


if __name__ == "__main__":
    main()
