// Autobahn|JS over wss:// against a shardbar listener with [listener.tls].
//
// Goal: Autobahn|JS in Node (the `ws` package under it) opens sessions over TLS, verifying
// the router's certificate against a test CA, with and without a client certificate
// (client_ca makes it optional); a client that does not trust the CA is refused; TLS and
// plaintext sessions on the same port (allow_plaintext) talk to each other.
//
// Method: a CA, a server certificate (localhost, 127.0.0.1) and a client certificate are made
// with the `openssl` command into a temporary directory when the suite starts (no key is
// committed). The CA goes to the client through an https.Agent (Autobahn|JS's own
// `tlsConfiguration` turns certificate verification off, so it is not used). One router with
// allow_plaintext, so its plain-HTTP /health check works on the same port.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { routerForSuite } from './lib/router.mjs';
import { autobahnResult, connectAutobahn, signal, within } from './lib/clients.mjs';

// The openssl sections (CA, server, client), shared with the Python TLS tests.
const OPENSSL_CNF = fileURLToPath(new URL('../test-pki.cnf', import.meta.url));

/** A CA, a server and a client certificate (EC P-256, two days) in a new directory. */
function makePki() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'shardbar-js-pki-'));
  const f = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: 'pipe', timeout: 30_000 });
  const newkey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...newkey, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2',
    '-subj', '/CN=shardbar js test CA', '-config', OPENSSL_CNF, '-extensions', 'ca');
  for (const [name, kind] of [['server', 'server'], ['client', 'client']]) {
    openssl('req', '-new', ...newkey, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`),
      '-subj', `/CN=${name}`, '-config', OPENSSL_CNF);
    openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
      '-set_serial', String(Date.now()), '-days', '2', '-out', f(`${name}.pem`),
      '-extfile', OPENSSL_CNF, '-extensions', kind);
  }
  return { dir, file: f, read: (name) => readFileSync(f(name)) };
}

let haveOpenssl = true;
try { execFileSync('openssl', ['version'], { stdio: 'pipe' }); } catch { haveOpenssl = false; }

describe('Autobahn|JS over TLS', { timeout: 60_000, skip: haveOpenssl ? false : 'needs the openssl command' }, () => {
  let pki;
  const open = [];
  const env = routerForSuite({
    start: () => {
      pki = makePki();
      return {
        listener: [
          '[listener.tls]',
          `cert = "${pki.file('server.pem')}"`,
          `key = "${pki.file('server.key')}"`,
          `client_ca = "${pki.file('ca.pem')}"`,
          'allow_plaintext = true',
        ],
      };
    },
    beforeStop: async () => {
      await Promise.allSettled(open.map((c) => c.close()));
    },
  });
  after(() => { if (pki) rmSync(pki.dir, { recursive: true, force: true }); });

  const wss = (host) => `wss://${host}:${env.router.port}/ws`;
  async function connect(opts) {
    const c = await connectAutobahn(env.router, opts);
    open.push(c);
    return c;
  }

  it('opens sessions over wss:// verifying the router certificate, with and without a client certificate', { timeout: 15_000 }, async () => {
    // Goal: the TLS handshake (by name and by IP address) and WAMP over it; client auth is optional.
    const plain = await connect({ serializer: 'msgpack', url: wss('localhost'), agent: new https.Agent({ ca: pki.read('ca.pem') }) });
    const withCert = await connect({
      serializer: 'cbor',
      url: wss('127.0.0.1'),
      agent: new https.Agent({ ca: pki.read('ca.pem'), cert: pki.read('client.pem'), key: pki.read('client.key') }),
    });
    for (const s of [plain, withCert]) {
      assert.ok(Number.isSafeInteger(s.session.id) && s.session.id > 0);
    }
    assert.equal(withCert.protocol, 'wamp.2.cbor');
  });

  it('a client that does not trust the router certificate is refused', { timeout: 15_000 }, async () => {
    // Goal: Node's default trust store does not know the test CA: the connection must fail.
    await assert.rejects(
      connectAutobahn(env.router, { url: wss('localhost'), agent: new https.Agent({}) }),
      /could not connect/,
    );
  });

  it('TLS and plaintext sessions on one port exchange events and calls', { timeout: 15_000 }, async () => {
    // Goal: allow_plaintext serves ws:// beside wss://, and both reach the same router.
    const tls = await connect({ url: wss('localhost'), agent: new https.Agent({ ca: pki.read('ca.pem') }) });
    const plain = await connect({ serializer: 'json' });
    const got = signal();
    const topic = 'com.example.abjs.tls.topic';
    await within(tls.session.subscribe(topic, (args) => got.resolve(args)), 'subscribe');
    await within(plain.session.publish(topic, ['over', 'tls'], {}, { acknowledge: true }), 'publish');
    assert.deepEqual(await within(got.promise, 'event over TLS'), ['over', 'tls']);
    await within(plain.session.register('com.example.abjs.tls.add', (args) => args[0] + args[1]), 'register');
    const res = await within(tls.session.call('com.example.abjs.tls.add', [2, 3]), 'call over TLS');
    assert.deepEqual(autobahnResult(res).args, [5]);
  });
});
