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

// Goal: the subscription/registration meta API, retained events, event history and
// testaments work for Autobahn|JS as Crossbar serves them, across shards.
// Method: a router whose realm1 keeps history for one topic (3 events); watchers and members
// on different shards; meta events matched by subscription/registration ID.
describe('meta API, retained events, event history, testaments (Autobahn|JS)', { timeout: 60_000 }, () => {
  const HIST = 'test.js.hist';
  const open = [];
  const env = routerForSuite({
    beforeStop: async () => { for (const c of open.splice(0)) await c.close(); },
    start: () => ({
      extra: ['[[realm]]', 'name = "realm1"', '', '[[realm.history]]', `uri = "${HIST}"`, 'match = "exact"', 'limit = 3'],
    }),
  });
  const track = (c) => { open.push(c); return c; };
  after(async () => { for (const c of open.splice(0)) await c.close(); });

  /** Subscribe `session` to the meta events `names`; returns the [name, args] seen, in order. */
  async function metaEvents(session, prefix, names) {
    const seen = [];
    for (const n of names) await session.subscribe(`${prefix}.${n}`, (args) => { seen.push([n, args]); });
    return seen;
  }

  /** Resolves once `pred()` is true (polled), else rejects after the operation timeout. */
  async function until(pred, what) {
    const deadline = Date.now() + 5_000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('subscription and registration meta API: events in order and the procedures', async () => {
    const r = env.router;
    const topic = `test.js.meta.${uid()}`;
    const proc = `test.js.metaproc.${uid()}`;
    const watcher = track(await connectAutobahn(r));
    const features = watcher.details.roles;
    assert.equal(features.broker.features.subscription_meta_api, true);
    assert.equal(features.dealer.features.registration_meta_api, true);
    const subEvents = await metaEvents(watcher.session, 'wamp.subscription', ['on_create', 'on_subscribe', 'on_unsubscribe', 'on_delete']);
    const regEvents = await metaEvents(watcher.session, 'wamp.registration', ['on_create', 'on_register', 'on_unregister', 'on_delete']);
    const member = track(await connectOnOtherShard(() => connectAutobahn(r, { serializer: 'msgpack' }), watcher.shard));
    const me = member.session.id;

    const sub = await member.session.subscribe(topic, () => {});
    const subId = sub.id;
    const forSub = () => subEvents.filter(([n, a]) => (n === 'on_create' ? a[1].id : a[1]) === subId);
    await until(() => forSub().length === 2, 'on_create and on_subscribe');
    assert.deepEqual(forSub().map(([n]) => n), ['on_create', 'on_subscribe']);
    const [, created] = forSub()[0];
    assert.equal(created[0], me);
    assert.equal(created[1].uri, topic);
    assert.equal(created[1].match, 'exact');
    assert.deepEqual(forSub()[1][1], [me, subId]);

    assert.equal(await watcher.session.call('wamp.subscription.lookup', [topic]), subId);
    assert.deepEqual(await watcher.session.call('wamp.subscription.list_subscribers', [subId]), [me]);
    assert.equal(await watcher.session.call('wamp.subscription.count_subscribers', [subId]), 1);
    const got = await watcher.session.call('wamp.subscription.get', [subId]);
    assert.equal(got.uri, topic);
    assert.equal(await autobahnError(watcher.session.call('wamp.subscription.get', [1])), 'wamp.error.no_such_subscription');

    await sub.unsubscribe();
    await until(() => forSub().length === 4, 'on_unsubscribe and on_delete');
    assert.deepEqual(forSub().map(([n]) => n), ['on_create', 'on_subscribe', 'on_unsubscribe', 'on_delete']);
    assert.equal(await watcher.session.call('wamp.subscription.lookup', [topic]), null);

    const reg = await member.session.register(proc, () => 'ok');
    const regId = reg.id;
    const forReg = () => regEvents.filter(([n, a]) => (n === 'on_create' ? a[1].id : a[1]) === regId);
    await until(() => forReg().length === 2, 'registration on_create and on_register');
    assert.deepEqual(forReg().map(([n]) => n), ['on_create', 'on_register']);
    assert.equal(forReg()[0][1][1].uri, proc);
    assert.equal(await watcher.session.call('wamp.registration.lookup', [proc]), regId);
    assert.deepEqual(await watcher.session.call('wamp.registration.list_callees', [regId]), [me]);
    assert.equal((await watcher.session.call('wamp.registration.get', [regId])).uri, proc);
    await reg.unregister();
    await until(() => forReg().length === 4, 'registration on_unregister and on_delete');
    assert.deepEqual(forReg().map(([n]) => n), ['on_create', 'on_register', 'on_unregister', 'on_delete']);
  });

  it('retained event after SUBSCRIBED, and get_events newest first', async () => {
    const r = env.router;
    const retTopic = `test.js.retained.${uid()}`;
    const publisher = track(await connectAutobahn(r));
    assert.equal(publisher.details.roles.broker.features.event_retention, true);
    assert.equal(publisher.details.roles.broker.features.event_history, true);
    await publisher.session.publish(retTopic, ['r1'], {}, { acknowledge: true, retain: true });
    await publisher.session.publish(retTopic, ['r2'], {}, { acknowledge: true, retain: true });
    for (let i = 0; i < 5; i++) await publisher.session.publish(HIST, [i], { n: i }, { acknowledge: true });

    const subscriber = track(await connectOnOtherShard(() => connectAutobahn(r, { serializer: 'msgpack' }), publisher.shard));
    const retained = signal();
    await subscriber.session.subscribe(retTopic, (args, kwargs, details) => retained.resolve({ args, details }), { get_retained: true });
    const ev = await within(retained.promise, 'retained event');
    assert.deepEqual(ev.args, ['r2']);
    assert.equal(ev.details.retained, true);

    const hist = await subscriber.session.subscribe(HIST, () => {});
    const events = await subscriber.session.call('wamp.subscription.get_events', [hist.id, 2]);
    assert.deepEqual(events.map((e) => e.args[0]), [4, 3]);
    assert.deepEqual(events[0].kwargs, { n: 4 });
    assert.equal(events[0].topic, HIST);
    const all = await subscriber.session.call('wamp.subscription.get_events', [hist.id, 10]);
    assert.deepEqual(all.map((e) => e.args[0]), [4, 3, 2], 'the ring keeps the newest 3');
  });

  it('the other procedures and each feature\'s errors (Autobahn|JS)', async () => {
    const r = env.router;
    const base = `test.js.rest.${uid()}`;
    const caller = track(await connectAutobahn(r));
    const member = track(await connectOnOtherShard(() => connectAutobahn(r, { serializer: 'msgpack' }), caller.shard));
    const me = member.session.id;
    const call = (proc, args = [], kwargs = {}) => caller.session.call(proc, args, kwargs);

    const exact = await member.session.subscribe(`${base}.one`, () => {});
    const prefix = await member.session.subscribe(base, () => {}, { match: 'prefix' });
    assert.deepEqual(await call('wamp.subscription.list', [me]), { exact: [exact.id], prefix: [prefix.id], wildcard: [] });
    assert.deepEqual(await call('wamp.subscription.match', [`${base}.one`]), [exact.id, prefix.id].sort((a, b) => a - b));
    assert.equal(await call('wamp.subscription.lookup', [base], { match: 'prefix' }), prefix.id);

    const reg = await member.session.register(`${base}.proc`, () => 'ok');
    const list = await call('wamp.registration.list', [me]);
    assert.deepEqual(list.exact, [reg.id]);
    assert.equal(await call('wamp.registration.match', [`${base}.proc`]), reg.id);
    assert.equal(await call('wamp.registration.count_callees', [reg.id]), 1);

    // Removing the member: the router ends its subscription and its registration.
    assert.equal(await call('wamp.subscription.remove_subscriber', [exact.id, me]), null);
    assert.deepEqual(await call('wamp.subscription.list', [me]), { exact: [], prefix: [prefix.id], wildcard: [] });
    assert.equal(await call('wamp.registration.remove_callee', [reg.id, me]), null);
    assert.equal(await autobahnError(call('wamp.registration.count_callees', [reg.id])), 'wamp.error.no_such_registration');
    assert.equal(await autobahnError(call('wamp.registration.get', [1])), 'wamp.error.no_such_registration');
    assert.equal(await autobahnError(call('wamp.subscription.list_subscribers', [1])), 'wamp.error.no_such_subscription');
    assert.equal(await autobahnError(call('wamp.session.kill', [1])), 'wamp.error.no_such_session');

    // get_events on a subscription without history; a testament with a bad scope; flush.
    assert.equal(await autobahnError(call('wamp.subscription.get_events', [prefix.id])), 'wamp.error.history_unavailable');
    assert.equal(await autobahnError(call('wamp.session.add_testament', [`${base}.will`, [], {}], { scope: 'soon' })),
      'wamp.error.testament_error');
    await call('wamp.session.add_testament', [`${base}.will`, ['a'], {}]);
    await call('wamp.session.add_testament', [`${base}.will`, ['b'], {}], { scope: 'detached' });
    assert.equal(await call('wamp.session.flush_testaments'), 1);
    assert.equal(await call('wamp.session.flush_testaments', [], { scope: 'detached' }), 1);

    // kill_by_authid / kill_by_authrole spare the caller; here the member's authid is its own.
    const killed = await call('wamp.session.kill_by_authid', [member.details.authid]);
    assert.deepEqual(killed, [me]);
  });

  it('testament: published as the leaving session when it says GOODBYE', async () => {
    const r = env.router;
    const topic = `test.js.will.${uid()}`;
    const watcher = track(await connectAutobahn(r));
    const will = signal();
    await watcher.session.subscribe(topic, (args, kwargs) => will.resolve({ args, kwargs }));
    const dying = await connectOnOtherShard(() => connectAutobahn(r), watcher.shard);
    assert.equal(dying.details.roles.dealer.features.testament_meta_api, true);
    const publication = await dying.session.call('wamp.session.add_testament', [topic, ['gone'], { why: 'test' }]);
    assert.ok(Number.isInteger(publication) && publication > 0, String(publication));
    await dying.close();
    const ev = await within(will.promise, 'testament event');
    assert.deepEqual(ev.args, ['gone']);
    assert.deepEqual(ev.kwargs, { why: 'test' });
  });
});
