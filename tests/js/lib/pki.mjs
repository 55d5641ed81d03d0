// Test certificates made with the `openssl` command when a suite starts (no key is committed).
//
// A CA, a server certificate (localhost, 127.0.0.1) and a client certificate, EC P-256, valid
// for two days, in a new temporary directory the caller removes (`rmSync(pki.dir, ...)`).

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The openssl sections (CA, server, client), shared with the Python TLS tests.
const OPENSSL_CNF = fileURLToPath(new URL('../../test-pki.cnf', import.meta.url));

/** Whether the `openssl` command runs here (suites that need it skip without it). */
export const haveOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
})();

/** A CA, a server and a client certificate in a new directory: { dir, file(name), read(name) }. */
export function makePki() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'shardbar-js-pki-'));
  const cnf = OPENSSL_CNF;
  const f = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: 'pipe', timeout: 30_000 });
  const newkey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...newkey, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2',
    '-subj', '/CN=shardbar js test CA', '-config', cnf, '-extensions', 'ca');
  for (const [name, kind] of [['server', 'server'], ['client', 'client']]) {
    openssl('req', '-new', ...newkey, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`),
      '-subj', `/CN=${name}`, '-config', cnf);
    openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
      '-set_serial', String(Date.now()), '-days', '2', '-out', f(`${name}.pem`),
      '-extfile', cnf, '-extensions', kind);
  }
  return { dir, file: f, read: (name) => readFileSync(f(name)) };
}
