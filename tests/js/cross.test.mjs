// Cross-client smoke tests: wampy and Autobahn|JS talking to each other through shardbar.
//
// Goal: messages cross client libraries, serializers (the router transcodes between JSON,
// MessagePack and CBOR), transports (WebSocket and RawSocket) and shards (the two ends of
// each exchange are on different shards, chosen by WELCOME.Details.authextra._shard).
//
// One router (2 shards) serves the whole file; every test is bounded in time.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import autobahn from 'autobahn';

import { routerForSuite } from './lib/router.mjs';
import {
  autobahnResult, connectAutobahn, connectOnOtherShard, connectWampy, idNumber, show, signal, within,
} from './lib/clients.mjs';
import { ARGS, KWARGS } from './lib/payloads.mjs';

describe('wampy <-> Autobahn|JS', { timeout: 90_000 }, () => {
  const opened = [];
  const keep = (c) => { opened.push(c); return c; };
  const env = routerForSuite({ beforeStop: () => Promise.allSettled(opened.map((c) => c.close())) });

  it('wampy (MessagePack) publishes; Autobahn|JS subscribers (CBOR and MessagePack over WebSocket, JSON over RawSocket) receive it, one on the other shard', { timeout: 20_000 }, async () => {
    // Goal: one acknowledged publication from wampy fans out to three Autobahn|JS sessions with
    // three serializers and two transports, across shards, with args and kwargs intact.
    const topic = 'com.example.cross.wampy_to_autobahn';
    const publisher = keep(await connectWampy(env.router, { serializer: 'msgpack' }));
    assert.equal(publisher.protocol, 'wamp.2.msgpack');
    const subscribers = [
      keep(await connectOnOtherShard(() => connectAutobahn(env.router, { transport: 'websocket', serializer: 'cbor' }), publisher.shard)),
      keep(await connectAutobahn(env.router, { transport: 'websocket', serializer: 'msgpack' })),
      keep(await connectAutobahn(env.router, { transport: 'rawsocket', serializer: 'json' })),
    ];
    assert.notEqual(subscribers[0].shard, publisher.shard);

    const received = subscribers.map(() => signal());
    await Promise.all(subscribers.map((s, i) => within(
      s.session.subscribe(topic, (args, kwargs, details) => received[i].resolve({ args, kwargs, details })),
      `subscribe #${i}`,
    )));

    const pub = await within(publisher.wampy.publish(topic, { argsList: ARGS, argsDict: KWARGS }), 'wampy publish acknowledged');
    const pubId = idNumber(pub.publicationId);
    assert.ok(Number.isSafeInteger(pubId) && pubId > 0, show(pub));

    const events = await Promise.all(received.map((r, i) => within(r.promise, `event at subscriber #${i}`)));
    for (const ev of events) {
      assert.deepEqual(ev.args, ARGS);
      assert.deepEqual(ev.kwargs, KWARGS);
      assert.equal(ev.details.publication, pubId);
    }
  });

  it('Autobahn|JS (MessagePack) publishes; wampy subscribers (JSON and CBOR) receive it, one on the other shard', { timeout: 20_000 }, async () => {
    // Goal: the reverse direction of the exchange above, with other serializers.
    const topic = 'com.example.cross.autobahn_to_wampy';
    const publisher = keep(await connectAutobahn(env.router, { transport: 'websocket', serializer: 'msgpack' }));
    const subscribers = [
      keep(await connectOnOtherShard(() => connectWampy(env.router, { serializer: 'json' }), publisher.shard)),
      keep(await connectWampy(env.router, { serializer: 'cbor' })),
    ];
    assert.notEqual(subscribers[0].shard, publisher.shard);
    const received = subscribers.map(() => signal());
    await Promise.all(subscribers.map((s, i) => within(s.wampy.subscribe(topic, (ev) => received[i].resolve(ev)), `subscribe #${i}`)));

    const pub = await within(publisher.session.publish(topic, ARGS, KWARGS, { acknowledge: true }), 'Autobahn|JS publish acknowledged');
    assert.ok(Number.isSafeInteger(pub.id) && pub.id > 0);
    const events = await Promise.all(received.map((r, i) => within(r.promise, `event at subscriber #${i}`)));
    for (const ev of events) {
      assert.deepEqual(ev.argsList, ARGS);
      assert.deepEqual(ev.argsDict, KWARGS);
    }
  });

  it('300 events from one wampy publisher arrive complete and in order at an Autobahn|JS subscriber on the other shard', { timeout: 20_000 }, async () => {
    // Goal: WAMP's per-publisher event ordering holds when the broker hop crosses shards
    // (publishes are sent back to back, without waiting for each acknowledgement).
    const topic = 'com.example.cross.ordering';
    const N = 300;
    const publisher = keep(await connectWampy(env.router, { serializer: 'json' }));
    const subscriber = keep(await connectOnOtherShard(() => connectAutobahn(env.router, { transport: 'websocket', serializer: 'msgpack' }), publisher.shard));
    const seen = [];
    const all = signal();
    await within(subscriber.session.subscribe(topic, (args) => {
      seen.push(args[0]);
      if (seen.length === N) all.resolve();
    }), 'subscribe');
    const acks = [];
    for (let i = 0; i < N; i++) acks.push(publisher.wampy.publish(topic, { argsList: [i] }));
    await within(Promise.all(acks), `${N} publishes acknowledged`, 10_000);
    await within(all.promise, `${N} events (got ${seen.length})`, 10_000);
    assert.deepEqual(seen, Array.from({ length: N }, (_, i) => i));
  });

  it('Autobahn|JS callers (JSON over WebSocket and RawSocket) call a wampy callee (CBOR) on the other shard', { timeout: 20_000 }, async () => {
    // Goal: CALL -> INVOCATION -> YIELD -> RESULT across libraries, serializers and shards,
    // including an application error raised by the wampy callee.
    const proc = 'com.example.cross.wampy_callee';
    const failing = 'com.example.cross.wampy_callee_fails';
    const callee = keep(await connectWampy(env.router, { serializer: 'cbor' }));
    assert.equal(callee.protocol, 'wamp.2.cbor');
    const invocations = [];
    await within(callee.wampy.register(proc, ({ argsList, argsDict }) => {
      invocations.push({ argsList, argsDict });
      return { argsList: [...argsList].reverse(), argsDict: { ...argsDict, callee: 'wampy' } };
    }), 'wampy register');
    await within(callee.wampy.register(failing, () => {
      const e = new Error('refused');
      e.error = 'com.example.error.refused';
      e.argsList = ['no'];
      e.argsDict = { why: 'because' };
      throw e;
    }), 'wampy register (failing)');

    const callers = [
      keep(await connectOnOtherShard(() => connectAutobahn(env.router, { transport: 'websocket', serializer: 'json' }), callee.shard)),
      keep(await connectAutobahn(env.router, { transport: 'rawsocket', serializer: 'json' })),
    ];
    assert.notEqual(callers[0].shard, callee.shard);

    for (const [i, caller] of callers.entries()) {
      const res = autobahnResult(await within(caller.session.call(proc, ARGS, KWARGS), `call #${i}`));
      assert.deepEqual(res.args, [...ARGS].reverse());
      assert.deepEqual(res.kwargs, { ...KWARGS, callee: 'wampy' });

      await assert.rejects(within(caller.session.call(failing, [1]), `failing call #${i}`), (err) => {
        assert.ok(err instanceof autobahn.Error, `expected autobahn.Error, got ${err}`);
        assert.equal(err.error, 'com.example.error.refused');
        assert.deepEqual(err.args, ['no']);
        assert.deepEqual(err.kwargs, { why: 'because' });
        return true;
      });
    }
    assert.equal(invocations.length, callers.length);
    for (const inv of invocations) {
      assert.deepEqual(inv.argsList, ARGS);
      assert.deepEqual(inv.argsDict, KWARGS);
    }
  });

  it('a wampy caller (JSON) calls an Autobahn|JS callee (CBOR) on the other shard', { timeout: 20_000 }, async () => {
    // Goal: the reverse direction of the call above.
    const proc = 'com.example.cross.autobahn_callee';
    const callee = keep(await connectAutobahn(env.router, { transport: 'websocket', serializer: 'cbor' }));
    await within(callee.session.register(proc, (args, kwargs) => new autobahn.Result([...args].reverse(), { ...kwargs, callee: 'autobahn' })), 'Autobahn|JS register');
    const caller = keep(await connectOnOtherShard(() => connectWampy(env.router, { serializer: 'json' }), callee.shard));
    assert.notEqual(caller.shard, callee.shard);

    const res = await within(caller.wampy.call(proc, { argsList: ARGS, argsDict: KWARGS }), 'wampy call');
    assert.deepEqual(res.argsList, [...ARGS].reverse());
    assert.deepEqual(res.argsDict, { ...KWARGS, callee: 'autobahn' });
  });
});
