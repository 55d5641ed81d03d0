// Completes package-lock.json after `npm install`, so that `npm ci` accepts it.
//
// Why: wampy's serializers (cbor-x, msgpackr) have optional native accelerators published as
// one package per platform (@cbor-extract/*, @msgpackr-extract/*). The registry this project
// reaches does not serve all of them (404), so `npm install` leaves them out of the lock, and
// `npm ci` then refuses the lock as "out of sync" (Missing: ... from lock file). This adds
// each missing optional platform package to the lock with its os/cpu, exactly as npm writes it
// when the registry does serve it; `npm ci` then skips the ones for other platforms and
// tolerates a 404 for an optional one (the pure-JS fallback is used instead).
//
// Usage (from tests/js): npm install && node complete-lock.mjs && rm -rf node_modules && npm ci

import { readFileSync, writeFileSync } from 'node:fs';

const PATH = new URL('./package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(PATH, 'utf8'));
const pkgs = lock.packages;
let added = 0;
for (const [key, meta] of Object.entries(pkgs)) {
  for (const [name, version] of Object.entries(meta.optionalDependencies || {})) {
    const nested = `${key}/node_modules/${name}`;
    const hoisted = `node_modules/${name}`;
    if (pkgs[nested] || pkgs[hoisted]) continue;
    const m = /-(darwin|linux|win32|freebsd)-(arm64|x64|arm|ia32)$/.exec(name);
    if (!m) {
      console.warn(`left alone: optional ${name}@${version} of ${key} (not a platform package)`);
      continue;
    }
    pkgs[hoisted] = { version, cpu: [m[2]], optional: true, os: [m[1]] };
    added++;
    console.log(`added ${hoisted}@${version} (${m[1]}/${m[2]})`);
  }
}
const sorted = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)));
lock.packages = sorted;
writeFileSync(PATH, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`${added} entries added`);
