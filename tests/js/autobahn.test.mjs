// Smoke tests of shardbar with Autobahn|JS (npm `autobahn`) in Node.
//
// Goal: an off-the-shelf WAMP client library works against the router end to end, for every
// serializer and transport Autobahn|JS offers in Node: WebSocket with JSON, MessagePack and
// CBOR, and RawSocket (Autobahn|JS's Node RawSocket transport speaks JSON only). For each:
// session open, subscribe + acknowledged publish, register + call with args and kwargs, an
// application error from a callee, and the router's wamp.error.no_such_procedure.
//
// One router (2 shards) serves the whole file; every test is bounded in time.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import autobahn from 'autobahn';

import { routerForSuite } from './lib/router.mjs';
import { autobahnResult, connectAutobahn, signal, within } from './lib/clients.mjs';
import { ARGS, KWARGS, bigString } from './lib/payloads.mjs';

const COMBOS = [
  { transport: 'websocket', serializer: 'json' },
  { transport: 'websocket', serializer: 'msgpack' },
  { transport: 'websocket', serializer: 'cbor' },
  { transport: 'rawsocket', serializer: 'json' },
];

describe('Autobahn|JS', { timeout: 90_000 }, () => {
  const env = routerForSuite();

  for (const { transport, serializer } of COMBOS) {
    describe(`${transport} + ${serializer}`, { timeout: 30_000 }, () => {
      const prefix = `com.example.abjs.${transport}.${serializer}`;
      let a; // publisher / caller
      let b; // subscriber / callee

      before(async () => {
        a = await connectAutobahn(env.router, { transport, serializer });
        b = await connectAutobahn(env.router, { transport, serializer });
      }, { timeout: 15_000 });

      after(async () => {
        await Promise.allSettled([a && a.close(), b && b.close()]);
      }, { timeout: 10_000 });

      it('opens a session: WELCOME with broker and dealer roles and the shard in authextra', () => {
        // Goal: the handshake (WebSocket subprotocol or RawSocket) and HELLO/WELCOME work.
        for (const s of [a, b]) {
          assert.equal(typeof s.session.id, 'number');
          assert.ok(Number.isSafeInteger(s.session.id) && s.session.id > 0, `session id ${s.session.id}`);
          assert.ok(s.details.roles && s.details.roles.broker && s.details.roles.dealer, JSON.stringify(s.details));
          assert.ok(s.shard === 0 || s.shard === 1, `authextra._shard = ${s.shard}`);
          if (transport === 'websocket') assert.equal(s.protocol, `wamp.2.${serializer}`);
        }
        assert.notEqual(a.session.id, b.session.id);
      });

      it('subscribe, then an acknowledged publish delivers args and kwargs to the subscriber', { timeout: 10_000 }, async () => {
        // Goal: SUBSCRIBE/SUBSCRIBED, PUBLISH(acknowledge)/PUBLISHED and EVENT round-trip the payload.
        const topic = `${prefix}.topic`;
        const got = signal();
        const sub = await within(b.session.subscribe(topic, (args, kwargs, details) => got.resolve({ args, kwargs, details })), 'subscribe');
        assert.ok(Number.isSafeInteger(sub.id) && sub.id > 0, `subscription id ${sub.id}`);

        const pub = await within(a.session.publish(topic, ARGS, KWARGS, { acknowledge: true }), 'publish acknowledged');
        assert.ok(Number.isSafeInteger(pub.id) && pub.id > 0, `publication id ${pub.id}`);

        const ev = await within(got.promise, 'event delivered');
        assert.deepEqual(ev.args, ARGS);
        assert.deepEqual(ev.kwargs, KWARGS);
        assert.equal(ev.details.publication, pub.id);
        await within(b.session.unsubscribe(sub), 'unsubscribe');
      });

      it('an acknowledged publish with no subscriber is still acknowledged', { timeout: 10_000 }, async () => {
        // Goal: PUBLISHED comes back even when nobody receives the event.
        const pub = await within(a.session.publish(`${prefix}.nobody`, ['x'], {}, { acknowledge: true }), 'publish acknowledged');
        assert.ok(Number.isSafeInteger(pub.id) && pub.id > 0);
      });

      it('register, then a call with args and kwargs returns the callee\'s result', { timeout: 10_000 }, async () => {
        // Goal: REGISTER/REGISTERED, CALL/INVOCATION/YIELD/RESULT carry args and kwargs both ways.
        const proc = `${prefix}.echo`;
        const invocations = [];
        const reg = await within(b.session.register(proc, (args, kwargs, details) => {
          invocations.push({ args, kwargs, details });
          return new autobahn.Result([...args].reverse(), { ...kwargs, echoed: true });
        }), 'register');
        assert.ok(Number.isSafeInteger(reg.id) && reg.id > 0, `registration id ${reg.id}`);

        const res = autobahnResult(await within(a.session.call(proc, ARGS, KWARGS), 'call'));
        assert.deepEqual(res.args, [...ARGS].reverse());
        assert.deepEqual(res.kwargs, { ...KWARGS, echoed: true });
        assert.equal(invocations.length, 1);
        assert.deepEqual(invocations[0].args, ARGS);
        assert.deepEqual(invocations[0].kwargs, KWARGS);

        // A larger argument (256 KiB) spans many socket reads and WebSocket/RawSocket frames.
        const big = bigString(256 * 1024);
        const res2 = autobahnResult(await within(a.session.call(proc, [big], { n: big.length }), 'call with 256 KiB'));
        assert.equal(res2.args[0], big);
        assert.equal(res2.kwargs.n, big.length);
        await within(b.session.unregister(reg), 'unregister');
      });

      it('an application error raised by the callee reaches the caller with its URI, args and kwargs', { timeout: 10_000 }, async () => {
        // Goal: INVOCATION -> ERROR is forwarded to the caller as ERROR unchanged.
        const proc = `${prefix}.fails`;
        const reg = await within(b.session.register(proc, () => {
          throw new autobahn.Error('com.example.error.oops', ['bad input'], { code: 7 });
        }), 'register');
        await assert.rejects(within(a.session.call(proc, [1]), 'call'), (err) => {
          assert.ok(err instanceof autobahn.Error, `expected autobahn.Error, got ${err}`);
          assert.equal(err.error, 'com.example.error.oops');
          assert.deepEqual(err.args, ['bad input']);
          assert.deepEqual(err.kwargs, { code: 7 });
          return true;
        });
        await within(b.session.unregister(reg), 'unregister');
      });

      it('a call to a procedure nobody registered fails with wamp.error.no_such_procedure', { timeout: 10_000 }, async () => {
        // Goal: the dealer answers an unknown procedure with the standard error URI.
        await assert.rejects(within(a.session.call(`${prefix}.nowhere`, [1], { k: 'v' }), 'call'), (err) => {
          assert.ok(err instanceof autobahn.Error, `expected autobahn.Error, got ${err}`);
          assert.equal(err.error, 'wamp.error.no_such_procedure');
          return true;
        });
      });
    });
  }
});
