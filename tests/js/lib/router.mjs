// Starts and stops a real shardbar router for the smoke tests.
//
// The binary is $SHARDBAR_BIN (tests/run.sh exports it), else target/debug/shardbar.
// Every router listens on a free loopback port (WebSocket and RawSocket on that one port,
// JSON/MessagePack/CBOR), and on one more free port per extra listener a suite asks for; it
// is ready once GET /health answers 200 on one of its plaintext listeners (the config opts in
// with [metrics] http_endpoints_on_wamp_port), and is stopped by its PID with SIGTERM
// (SIGKILL only if it has not exited within the grace period). The log level is `log`, else
// $SHARDBAR_JS_LOG (e.g. `debug` to see a login on the wire), else warn.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 8_000;
const LOG_TAIL_BYTES = 16 * 1024;

// Routers still running when the test process exits (a crashed hook, an uncaught error):
// killed by PID on the way out so nothing outlives the test file.
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

export function routerBinary() {
  const bin = process.env.SHARDBAR_BIN || path.join(REPO_ROOT, 'target', 'debug', 'shardbar');
  if (!existsSync(bin)) {
    throw new Error(`shardbar binary not found at ${bin}: run \`cargo build --bins\` or set SHARDBAR_BIN`);
  }
  return bin;
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function healthStatus(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/health', timeout: 500 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startOnce({ shards, serializers, listener, moreListeners, healthListener, extra, log: level }) {
  const bin = routerBinary();
  const ports = [];
  for (let i = 0; i <= moreListeners.length; i++) ports.push(await freePort());
  const port = ports[0];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'shardbar-js-'));
  const config = path.join(dir, 'router.toml');
  const listenerTable = (p, lines) => [
    '',
    '[[listener]]',
    `address = "127.0.0.1:${p}"`,
    `serializers = [${serializers.map((s) => `"${s}"`).join(', ')}]`,
    ...lines,
  ];
  writeFileSync(config, [
    '[router]',
    `shards = ${shards}`,
    ...listenerTable(port, listener),
    ...moreListeners.flatMap((lines, i) => listenerTable(ports[i + 1], lines)),
    '',
    '[metrics]',
    'http_endpoints_on_wamp_port = true',
    '',
    ...extra,
    '',
  ].join('\n'));

  const child = spawn(bin, ['--config', config, '--log', level || process.env.SHARDBAR_JS_LOG || 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let log = '';
  const keep = (chunk) => {
    log += chunk.toString();
    if (log.length > LOG_TAIL_BYTES) log = log.slice(-LOG_TAIL_BYTES);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  let exitInfo = null;
  exited.then((info) => { exitInfo = info; });

  const router = {
    port,
    /** The port of every listener, in config order (`port` is the first). */
    ports,
    pid: child.pid,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    log: () => log,
    exitInfo: () => exitInfo,
    /** SIGTERM by PID, wait for a clean exit; SIGKILL after the grace period. */
    async stop() {
      if (exitInfo === null) {
        child.kill('SIGTERM');
        let timer;
        const grace = new Promise((r) => { timer = setTimeout(() => r('timeout'), STOP_GRACE_MS); });
        const first = await Promise.race([exited, grace]);
        clearTimeout(timer);
        if (first === 'timeout') {
          child.kill('SIGKILL');
          await exited;
          rmSync(dir, { recursive: true, force: true });
          throw new Error(`router pid ${child.pid} ignored SIGTERM for ${STOP_GRACE_MS} ms; killed\n${log}`);
        }
      }
      rmSync(dir, { recursive: true, force: true });
      return exitInfo;
    },
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exitInfo !== null) {
      rmSync(dir, { recursive: true, force: true });
      const err = new Error(`router exited before it was ready (${JSON.stringify(exitInfo)})\n${log}`);
      err.routerLog = log;
      throw err;
    }
    if ((await healthStatus(ports[healthListener])) === 200) return router;
    await sleep(50);
  }
  await router.stop().catch(() => {});
  throw new Error(`router on port ${port} not ready within ${READY_TIMEOUT_MS} ms\n${log}`);
}

/**
 * Start a router; resolves once /health answers 200. Retries with new ports if a chosen
 * port was taken in between (the only expected start failure). `listener`: more lines for
 * the first listener's table (e.g. a `[listener.tls]` or `[listener.auth.ticket]` sub-table).
 * `moreListeners`: one array of such lines per further listener, each on its own port.
 * `healthListener`: the index of the listener /health is asked on; the check is plain HTTP,
 * so that listener has no TLS or has `allow_plaintext = true`. `extra`: raw TOML lines at the
 * end of the config (`[[realm]]` tables and their sub-tables).
 */
export async function startRouter({
  shards = 2,
  serializers = ['json', 'msgpack', 'cbor'],
  listener = [],
  moreListeners = [],
  healthListener = 0,
  extra = [],
  log,
} = {}) {
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce({ shards, serializers, listener, moreListeners, healthListener, extra, log });
    } catch (e) {
      lastError = e;
      if (!/address already in use|Address in use|EADDRINUSE/i.test(e.routerLog || '')) throw e;
    }
  }
  throw lastError;
}

// One router (2 shards) for the tests of the enclosing describe(): started before them,
// stopped after them (after `beforeStop`, e.g. closing clients), and its clean exit on
// SIGTERM asserted. Returns an object whose `router` is set once started.
// `start()` returns more options for startRouter, computed when the suite starts.
export function routerForSuite({ beforeStop = async () => {}, start = () => ({}) } = {}) {
  const env = { router: null };
  before(async () => {
    env.router = await startRouter({ shards: 2, ...start() });
  }, { timeout: 20_000 });
  after(async () => {
    await beforeStop();
    if (!env.router) return;
    const exit = await env.router.stop();
    // Goal: the router shuts down cleanly on SIGTERM after serving these clients.
    assert.deepEqual(exit, { code: 0, signal: null }, `router exit ${JSON.stringify(exit)}\n${env.router.log()}`);
  }, { timeout: 20_000 });
  return env;
}
