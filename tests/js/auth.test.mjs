// WAMP authentication with Autobahn|JS (and wampy) against a router with TLS on its listener.
//
// Goal: the static principals of `[listener.auth.*]` admit Autobahn|JS 22.11.1 in Node with
// its own authenticators, over wss:// and over ws://: `ticket`; `wampcra` plain and salted
// (the key derived by Autobahn|JS's auth_cra.derive_key from the CHALLENGE's salt, iterations
// and keylen, the answer made by auth_cra.sign); `cryptosign` (a tweetnacl key pair from a test
// seed, HELLO authextra shaped as Autobahn|JS's auth_cryptosign.create_connection shapes it,
// with `channel_binding: null`, the answer made by auth_cryptosign.sign_challenge). WELCOME
// reaches onopen with the principal's authid and role, the method and authprovider "static".
// A wrong ticket or secret and a key no principal has are refused with ABORT
// wamp.error.not_authorized. wampy logs in with ticket, wampcra (plain, salted) and cryptosign
// with its own helpers.
//
// Method: one router (2 shards), two listeners with the same principals: listener 0 TLS only
// (certificates made by openssl at suite start, lib/pki.mjs), listener 1 plaintext (and the
// /health check). The salted WAMP-CRA principal and the cryptosign principal are made by the
// router's own `shardbar credential` subcommand (from the test secret and the test seed's
// public key), so the tool's output is checked to work with Autobahn|JS too. The seeds,
// tickets and secrets below are test values only.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import autobahn from 'autobahn';
import * as wampyCra from 'wampy/wampcra.js';
import * as wampyCryptosign from 'wampy/cryptosign.js';

import { haveOpenssl, makePki } from './lib/pki.mjs';
import { routerBinary, routerForSuite } from './lib/router.mjs';
import { connectAutobahn, connectWampy, signal, within } from './lib/clients.mjs';

// The tweetnacl that Autobahn|JS itself signs with (a dependency of autobahn, not of ours).
const require = createRequire(import.meta.url);
const nacl = createRequire(require.resolve('autobahn'))('tweetnacl');

// Ed25519 seeds (private keys) for the tests; only dev1's public key is in the config.
const SEED_DEV1 = '4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510';
const SEED_OTHER = '1b4a9e7e4f3c2d1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f70';
const TICKET = 'js-t1ck3t';
const CRA_SECRET = 'js-cr4-s3cr3t';
const CRA_ITERATIONS = 1000;
const CRA_KEYLEN = 32;

const NOT_AUTHORIZED = 'wamp.error.not_authorized';

/** A tweetnacl key pair ({ publicKey, secretKey }) from a 64-hex seed. */
function keyPair(seedHex) {
  return nacl.sign.keyPair.fromSeed(Uint8Array.from(Buffer.from(seedHex, 'hex')));
}

/**
 * A principal line from `shardbar credential <args>` (the line to paste into the config) and
 * its comment lines. `env`: environment variables for the tool (the secret it reads).
 */
function credential(args, env = {}) {
  const out = execFileSync(routerBinary(), ['credential', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30_000,
  }).toString();
  const lines = out.split('\n').map((l) => l.trim());
  const principal = lines.find((l) => l.startsWith('{'));
  assert.ok(principal, `no principal in the output of shardbar credential ${args.join(' ')}:\n${out}`);
  return { principal, comments: lines.filter((l) => l.startsWith('#')) };
}

/** The principals of every method, the same on both listeners. */
function authTables(salty, dev1) {
  return [
    '[listener.auth.ticket]',
    `principals = [{ authid = "joe", ticket = "${TICKET}", role = "frontend" }]`,
    '[listener.auth.wampcra]',
    `principals = [{ authid = "svc", secret = "${CRA_SECRET}", role = "backend" }, ${salty}]`,
    '[listener.auth.cryptosign]',
    `principals = [${dev1}]`,
  ];
}

// Autobahn|JS authenticators, each an `auth` option of connectAutobahn that records the
// CHALLENGEs it answers in `seen`.

function ticketAuth(authid, ticket, seen = []) {
  return {
    authmethods: ['ticket'],
    authid,
    onchallenge: (session, method, extra) => {
      seen.push({ method, extra });
      return ticket;
    },
  };
}

/** Autobahn|JS's documented WAMP-CRA answer: a salted key if the CHALLENGE carries a salt. */
function craAuth(authid, secret, seen = []) {
  return {
    authmethods: ['wampcra'],
    authid,
    onchallenge: (session, method, extra) => {
      seen.push({ method, extra });
      const key = extra.salt
        ? autobahn.auth_cra.derive_key(secret, extra.salt, extra.iterations, extra.keylen)
        : secret;
      return autobahn.auth_cra.sign(key, extra.challenge);
    },
  };
}

/**
 * Cryptosign as auth_cryptosign.create_connection does it (that helper takes no TLS agent,
 * so its parts are used here): HELLO authextra with the public key and Autobahn|JS's nulls
 * and undefineds, the CHALLENGE answered by sign_challenge.
 */
function cryptosignAuth(authid, seedHex, seen = []) {
  const pkey = keyPair(seedHex);
  return {
    authmethods: ['cryptosign'],
    authid,
    authextra: {
      pubkey: autobahn.auth_cryptosign.public_key(pkey),
      trustroot: null,
      challenge: null,
      channel_binding: null,
      activation_code: undefined,
      request_new_activation_code: undefined,
    },
    onchallenge: (session, method, extra) => {
      seen.push({ method, extra });
      return autobahn.auth_cryptosign.sign_challenge(pkey, extra);
    },
  };
}

/** WELCOME as Autobahn|JS hands it to onopen: session id, details of the static principal. */
function assertWelcome(c, { authid, authrole, authmethod }) {
  assert.ok(Number.isSafeInteger(c.session.id) && c.session.id > 0, `session id ${c.session.id}`);
  const d = c.details;
  assert.deepEqual(
    { authid: d.authid, authrole: d.authrole, authmethod: d.authmethod, authprovider: d.authprovider },
    { authid, authrole, authmethod, authprovider: 'static' },
  );
  assert.equal(typeof d.authextra._shard, 'number', JSON.stringify(d.authextra));
}

async function assertRefused(promise, reason = NOT_AUTHORIZED) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.abortReason, reason, e.message);
    return true;
  });
}

describe('authentication with Autobahn|JS and wampy', { timeout: 120_000, skip: haveOpenssl ? false : 'needs the openssl command' }, () => {
  let pki;
  let saltyDerivedKey;
  let saltySalt;
  const open = [];
  const env = routerForSuite({
    start: () => {
      pki = makePki();
      const salty = credential(
        ['wampcra', '--authid', 'salty', '--role', 'backend', '--secret-env', 'SB_JS_CRA_SECRET',
          '--iterations', String(CRA_ITERATIONS), '--keylen', String(CRA_KEYLEN)],
        { SB_JS_CRA_SECRET: CRA_SECRET },
      );
      saltySalt = /salt = "([^"]+)"/.exec(salty.principal)[1];
      saltyDerivedKey = salty.comments.find((l) => l.startsWith('# derived key')).split(' ').pop();
      const dev1Pub = Buffer.from(keyPair(SEED_DEV1).publicKey).toString('hex');
      const dev1 = credential(['cryptosign', '--authid', 'dev1', '--role', 'device', '--pubkey', dev1Pub]);
      const auth = authTables(salty.principal, dev1.principal);
      return {
        listener: [
          '[listener.tls]',
          `cert = "${pki.file('server.pem')}"`,
          `key = "${pki.file('server.key')}"`,
          ...auth,
        ],
        moreListeners: [auth],
        healthListener: 1,
      };
    },
    beforeStop: async () => {
      await Promise.allSettled(open.map((c) => c.close()));
    },
  });
  after(() => { if (pki) rmSync(pki.dir, { recursive: true, force: true }); });

  // Listener 0 over TLS (verifying the router's certificate against the test CA), listener 1
  // in plaintext.
  const TRANSPORTS = {
    wss: () => ({ url: `wss://localhost:${env.router.ports[0]}/ws`, agent: new https.Agent({ ca: pki.read('ca.pem') }) }),
    ws: () => ({ url: `ws://127.0.0.1:${env.router.ports[1]}/ws` }),
  };

  async function login(transport, serializer, auth) {
    const c = await connectAutobahn(env.router, { ...TRANSPORTS[transport](), serializer, auth });
    open.push(c);
    return c;
  }

  /** The login works beyond WELCOME: a subscription round trip. */
  async function assertUsable(c) {
    await within(c.session.subscribe('com.example.abjs.auth.works', () => {}), 'subscribe after login');
  }

  for (const transport of Object.keys(TRANSPORTS)) {
    describe(`Autobahn|JS over ${transport}://`, { timeout: 60_000 }, () => {
      it('ticket: the right ticket logs in, a wrong one is refused', { timeout: 15_000 }, async () => {
        const seen = [];
        const c = await login(transport, 'json', ticketAuth('joe', TICKET, seen));
        assertWelcome(c, { authid: 'joe', authrole: 'frontend', authmethod: 'ticket' });
        assert.deepEqual(seen.map((s) => s.method), ['ticket']);
        await assertUsable(c);
        await c.close();
        await assertRefused(login(transport, 'json', ticketAuth('joe', 'wrong-ticket')));
        await assertRefused(login(transport, 'msgpack', ticketAuth('nobody', TICKET)));
      });

      it('wampcra without salt: auth_cra.sign with the secret', { timeout: 15_000 }, async () => {
        const seen = [];
        const c = await login(transport, 'msgpack', craAuth('svc', CRA_SECRET, seen));
        assertWelcome(c, { authid: 'svc', authrole: 'backend', authmethod: 'wampcra' });
        assert.equal(seen.length, 1);
        assert.equal(seen[0].method, 'wampcra');
        assert.equal(typeof seen[0].extra.challenge, 'string');
        assert.equal(seen[0].extra.salt, undefined, JSON.stringify(seen[0].extra));
        await assertUsable(c);
        await c.close();
        await assertRefused(login(transport, 'msgpack', craAuth('svc', 'wrong-secret')));
      });

      it('wampcra salted: auth_cra.derive_key from the CHALLENGE extra, then sign', { timeout: 15_000 }, async () => {
        const seen = [];
        const c = await login(transport, 'cbor', craAuth('salty', CRA_SECRET, seen));
        assertWelcome(c, { authid: 'salty', authrole: 'backend', authmethod: 'wampcra' });
        const extra = seen[0].extra;
        assert.deepEqual(
          { salt: extra.salt, iterations: extra.iterations, keylen: extra.keylen },
          { salt: saltySalt, iterations: CRA_ITERATIONS, keylen: CRA_KEYLEN },
        );
        // Autobahn|JS derives the key the router's credential tool printed.
        assert.equal(autobahn.auth_cra.derive_key(CRA_SECRET, extra.salt, extra.iterations, extra.keylen), saltyDerivedKey);
        await assertUsable(c);
        await c.close();
        await assertRefused(login(transport, 'cbor', craAuth('salty', 'wrong-secret')));
        await assertRefused(login(transport, 'json', craAuth('nobody', CRA_SECRET)));
      });

      it('cryptosign: sign_challenge with the authorized key, by authid and by key alone', { timeout: 20_000 }, async () => {
        // Every serializer: Autobahn|JS's authextra has nulls and undefineds, which each
        // serializer writes its own way (JSON and msgpack5 leave an undefined out, the CBOR
        // serializer writes the simple value `undefined`, 0xf7).
        for (const [serializer, authid] of [['json', 'dev1'], ['msgpack', undefined], ['cbor', 'dev1'], ['cbor', undefined]]) {
          const seen = [];
          const c = await login(transport, serializer, cryptosignAuth(authid, SEED_DEV1, seen));
          assertWelcome(c, { authid: 'dev1', authrole: 'device', authmethod: 'cryptosign' });
          assert.equal(seen[0].method, 'cryptosign');
          assert.match(seen[0].extra.challenge, /^[0-9a-f]{64}$/);
          await assertUsable(c);
          await c.close();
        }
      });

      it('cryptosign: a key that is not authorized is refused', { timeout: 15_000 }, async () => {
        await assertRefused(login(transport, 'json', cryptosignAuth('dev1', SEED_OTHER)));
        await assertRefused(login(transport, 'cbor', cryptosignAuth(undefined, SEED_OTHER)));
      });
    });
  }

  it('Autobahn|JS auth_cryptosign.create_connection logs in over ws://', { timeout: 15_000 }, async () => {
    // Goal: Autobahn|JS's own cryptosign Connection, unchanged (it takes a URL but no TLS
    // agent, so it runs on the plaintext listener only).
    const connection = autobahn.auth_cryptosign.create_connection({
      url: TRANSPORTS.ws().url,
      realm: 'realm1',
      pkey: keyPair(SEED_DEV1),
      serializers: [new autobahn.serializer.CBORSerializer()],
    });
    const opened = signal();
    const closed = signal();
    connection.onopen = (session, details) => opened.resolve({ session, details });
    connection.onclose = (reason, details) => {
      opened.reject(new Error(`create_connection could not connect: ${reason} ${JSON.stringify(details)}`));
      closed.resolve();
      return true; // never reconnect
    };
    connection.open();
    try {
      const c = await within(opened.promise, 'auth_cryptosign.create_connection session open');
      assertWelcome(c, { authid: 'dev1', authrole: 'device', authmethod: 'cryptosign' });
    } finally {
      try { connection.close(); } catch { /* not open */ }
      await within(closed.promise, 'auth_cryptosign.create_connection close');
    }
  });

  describe('wampy', { timeout: 60_000 }, () => {
    async function wampyLogin(transport, serializer, auth) {
      const c = await connectWampy(env.router, { ...TRANSPORTS[transport](), serializer, auth });
      open.push(c);
      return c;
    }
    const wampyWelcome = (c, authid, authrole, authmethod) => {
      const d = c.details;
      assert.deepEqual(
        { authid: d.authid, authrole: d.authrole, authmethod: d.authmethod, authprovider: d.authprovider },
        { authid, authrole, authmethod, authprovider: 'static' },
      );
    };

    for (const transport of Object.keys(TRANSPORTS)) {
      it(`ticket, wampcra (plain, salted) and cryptosign over ${transport}://`, { timeout: 30_000 }, async () => {
        const ticket = (t) => ({ authid: 'joe', authmethods: ['ticket'], onChallenge: () => t });
        const cra = (authid, secret) => ({ authid, authmethods: ['wampcra'], onChallenge: wampyCra.sign(secret) });
        const cs = (seed) => ({
          authid: 'dev1',
          authmethods: ['cryptosign'],
          authextra: { pubkey: Buffer.from(keyPair(seed).publicKey).toString('hex') },
          onChallenge: wampyCryptosign.sign(seed),
        });

        let c = await wampyLogin(transport, 'json', ticket(TICKET));
        wampyWelcome(c, 'joe', 'frontend', 'ticket');
        await c.close();
        c = await wampyLogin(transport, 'msgpack', cra('svc', CRA_SECRET));
        wampyWelcome(c, 'svc', 'backend', 'wampcra');
        await c.close();
        c = await wampyLogin(transport, 'cbor', cra('salty', CRA_SECRET));
        wampyWelcome(c, 'salty', 'backend', 'wampcra');
        await c.close();
        c = await wampyLogin(transport, 'json', cs(SEED_DEV1));
        wampyWelcome(c, 'dev1', 'device', 'cryptosign');
        await c.close();

        await assertRefused(wampyLogin(transport, 'json', ticket('wrong-ticket')));
        await assertRefused(wampyLogin(transport, 'cbor', cra('salty', 'wrong-secret')));
        await assertRefused(wampyLogin(transport, 'msgpack', cs(SEED_OTHER)));
      });
    }
  });
});
