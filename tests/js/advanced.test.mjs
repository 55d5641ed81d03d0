// The Advanced Profile's router features with Autobahn|JS and wampy: the session meta API,
// call timeouts, progressive call invocations.
//
// Goal: clients written against Crossbar's meta API shapes work unchanged, across shards;
// the router enforces call timeouts for callers that cannot cancel; a wampy progressive call
// streams to a callee that announced progressive_call_invocations, in order.
// Method: one router (2 shards); sessions are placed on different shards by reconnecting
// until `_shard` (WELCOME.authextra) differs.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import autobahn from 'autobahn';
import WebSocket from 'ws';

import { routerForSuite } from './lib/router.mjs';
import { connectAutobahn, connectOnOtherShard, connectWampy, idNumber, signal, within } from './lib/clients.mjs';

const uid = () => Math.random().toString(36).slice(2, 10);

/** The error URI of a rejected Autobahn|JS call. */
async function autobahnError(promise) {
  try {
    await promise;
  } catch (e) {
    if (e instanceof autobahn.Error) return e.error;
    throw e;
  }
  throw new Error('the call succeeded');
}

/**
 * A minimal raw WAMP JSON client over WebSocket (neither Autobahn|JS nor wampy can be a callee
 * of a streamed call): HELLO with the given roles, then `send`/`next` on parsed messages.
 */
async function rawSession(router, roles) {
  const ws = new WebSocket(router.wsUrl, ['wamp.2.json']);
  const inbox = [];
  let waiter = null;
  ws.on('message', (data) => {
    inbox.push(JSON.parse(data.toString()));
    if (waiter) { const w = waiter; waiter = null; w(); }
  });
  await within(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }), 'raw ws open');
  const next = async (pred = () => true) => {
    for (;;) {
      const i = inbox.findIndex(pred);
      if (i >= 0) return inbox.splice(i, 1)[0];
      await within(new Promise((r) => { waiter = r; }), 'raw message');
    }
  };
  const send = (msg) => ws.send(JSON.stringify(msg));
  send([1, 'realm1', { roles }]);
  const welcome = await next();
  assert.equal(welcome[0], 2, `expected WELCOME, got ${JSON.stringify(welcome)}`);
  return {
    id: welcome[1], shard: welcome[2].authextra._shard, send, next,
    close: async () => { ws.close(); },
  };
}

describe('Advanced Profile router features (Autobahn|JS, wampy)', { timeout: 60_000 }, () => {
  const open = [];
  const env = routerForSuite({ beforeStop: async () => { for (const c of open.splice(0)) await c.close(); } });
  const track = (c) => { open.push(c); return c; };
  after(async () => { for (const c of open.splice(0)) await c.close(); });

  it('session meta API: count, list, get, on_join, on_leave and kill across shards', async () => {
    const r = env.router;
    const watcher = track(await connectAutobahn(r));
    // Placing a session on the other shard may open and close others first: their events
    // come too, so the ones of `other` are looked up by session ID.
    const joins = new Map();
    const leaves = new Map();
    let otherId = null;
    const joined = signal();
    const left = signal();
    await watcher.session.subscribe('wamp.session.on_join', (args) => {
      joins.set(args[0].session, args[0]);
      if (args[0].session === otherId) joined.resolve();
    });
    await watcher.session.subscribe('wamp.session.on_leave', (args) => {
      leaves.set(args[0], args);
      if (args[0] === otherId) left.resolve();
    });
    const other = track(await connectOnOtherShard(() => connectAutobahn(r, { serializer: 'msgpack' }), watcher.shard));
    otherId = other.session.id;
    if (joins.has(otherId)) joined.resolve();
    await within(joined.promise, 'on_join');
    assert.equal(joins.get(otherId).authrole, 'anonymous');
    assert.equal(joins.get(otherId).transport.serializer, 'msgpack');

    const ids = await watcher.session.call('wamp.session.list');
    assert.ok(ids.includes(other.session.id) && ids.includes(watcher.session.id), JSON.stringify(ids));
    assert.equal(await watcher.session.call('wamp.session.count'), ids.length);
    const details = await watcher.session.call('wamp.session.get', [other.session.id]);
    assert.equal(details.session, other.session.id);
    assert.equal(details.authmethod, 'anonymous');
    assert.equal(details.transport.serializer, 'msgpack');
    assert.equal(await autobahnError(watcher.session.call('wamp.session.get', [1])), 'wamp.error.no_such_session');

    // wampy reads the same API (its MessagePack decodes IDs as BigInt).
    const w = track(await connectWampy(r, { serializer: 'json' }));
    const res = await within(w.wampy.call('wamp.session.get', [other.session.id]), 'wampy session.get');
    assert.equal(idNumber(res.argsList[0].session), other.session.id);

    await watcher.session.call('wamp.session.kill', [other.session.id], { reason: 'com.example.kicked', message: 'bye' });
    await within(left.promise, 'on_leave');
    assert.deepEqual(leaves.get(otherId), [otherId, other.details.authid, 'anonymous']);
  });

  it('call timeout: the router answers wamp.error.timeout for a callee that never answers', async () => {
    const r = env.router;
    const proc = `test.js.slow.${uid()}`;
    const callee = track(await connectAutobahn(r));
    await callee.session.register(proc, () => new Promise(() => {}));
    const caller = track(await connectOnOtherShard(() => connectAutobahn(r), callee.shard));
    const started = Date.now();
    const err = await autobahnError(caller.session.call(proc, [], {}, { timeout: 300 }));
    assert.equal(err, 'wamp.error.timeout');
    assert.ok(Date.now() - started >= 250, 'not before the timeout');
  });

  it('progressive call invocations: a wampy stream reaches the callee in order', async () => {
    const r = env.router;
    const proc = `test.js.stream.${uid()}`;
    const callee = track(await rawSession(r, { callee: { features: { progressive_call_invocations: true } } }));
    callee.send([64, 1, {}, proc]);
    const registered = await callee.next((m) => m[0] === 65 || m[0] === 8);
    assert.equal(registered[0], 65, JSON.stringify(registered));
    const caller = track(await connectOnOtherShard(() => connectWampy(r), callee.shard));
    const { result, sendData } = caller.wampy.progressiveCall(proc, [0]);
    for (let i = 1; i < 5; i++) sendData([i]);
    sendData([5], { progress: false });
    const got = [];
    while (got.length < 6) got.push(await callee.next((m) => m[0] === 68));
    assert.deepEqual(got.map((m) => m[4][0]), [0, 1, 2, 3, 4, 5]);
    assert.ok(got.slice(0, 5).every((m) => m[3].progress === true) && !got[5][3].progress);
    callee.send([70, got[0][1], {}, ['sum', 15]]);
    const res = await within(result, 'progressive call result');
    assert.deepEqual(res.argsList, ['sum', 15]);
  });
});
