// Smoke tests of shardbar with wampy (npm `wampy`) in Node.
//
// Goal: a second, independently written WAMP client library works against the router end to
// end, for each serializer wampy ships (JsonSerializer, MsgpackSerializer, CborSerializer)
// over its only transport, WebSocket (through the `ws` package). For each: session open,
// subscribe + publish (wampy always asks for acknowledge), register + call with args and
// kwargs, an application error from a callee, and wamp.error.no_such_procedure.
//
// One router (2 shards) serves the whole file; every test is bounded in time.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { routerForSuite } from './lib/router.mjs';
import { connectWampy, idNumber, show, signal, within } from './lib/clients.mjs';
import { ARGS, KWARGS, bigString } from './lib/payloads.mjs';

const SERIALIZERS = ['json', 'msgpack', 'cbor'];

describe('wampy', { timeout: 90_000 }, () => {
  const env = routerForSuite();

  for (const serializer of SERIALIZERS) {
    describe(`websocket + ${serializer}`, { timeout: 30_000 }, () => {
      const prefix = `com.example.wampy.${serializer}`;
      let a; // publisher / caller
      let b; // subscriber / callee

      before(async () => {
        a = await connectWampy(env.router, { serializer });
        b = await connectWampy(env.router, { serializer });
      }, { timeout: 15_000 });

      after(async () => {
        await Promise.allSettled([a && a.close(), b && b.close()]);
      }, { timeout: 10_000 });

      it('opens a session with the requested serializer: WELCOME with roles and the shard in authextra', () => {
        // Goal: subprotocol negotiation picks wamp.2.<serializer> (wampy would silently fall
        // back to JSON otherwise) and HELLO/WELCOME work.
        for (const s of [a, b]) {
          assert.equal(s.protocol, `wamp.2.${serializer}`);
          const id = idNumber(s.wampy.getSessionId());
          assert.ok(Number.isSafeInteger(id) && id > 0, `session id ${id}`);
          assert.ok(s.details.roles && s.details.roles.broker && s.details.roles.dealer, JSON.stringify(s.details));
          assert.ok(s.shard === 0 || s.shard === 1, `authextra._shard = ${s.shard}`);
        }
        assert.notEqual(idNumber(a.wampy.getSessionId()), idNumber(b.wampy.getSessionId()));
      });

      it('subscribe, then an acknowledged publish delivers args and kwargs to the subscriber', { timeout: 10_000 }, async () => {
        // Goal: SUBSCRIBE/SUBSCRIBED, PUBLISH(acknowledge)/PUBLISHED and EVENT round-trip the payload.
        const topic = `${prefix}.topic`;
        const got = signal();
        const sub = await within(b.wampy.subscribe(topic, (ev) => got.resolve(ev)), 'subscribe');
        const subId = idNumber(sub.subscriptionId);
        assert.ok(Number.isSafeInteger(subId) && subId > 0, show(sub));

        const pub = await within(a.wampy.publish(topic, { argsList: ARGS, argsDict: KWARGS }), 'publish acknowledged');
        const pubId = idNumber(pub.publicationId);
        assert.ok(Number.isSafeInteger(pubId) && pubId > 0, show(pub));

        const ev = await within(got.promise, 'event delivered');
        assert.deepEqual(ev.argsList, ARGS);
        assert.deepEqual(ev.argsDict, KWARGS);
        await within(b.wampy.unsubscribe(topic), 'unsubscribe');
      });

      it('register, then a call with args and kwargs returns the callee\'s result', { timeout: 10_000 }, async () => {
        // Goal: REGISTER/REGISTERED, CALL/INVOCATION/YIELD/RESULT carry args and kwargs both ways.
        const proc = `${prefix}.echo`;
        const invocations = [];
        const reg = await within(b.wampy.register(proc, ({ argsList, argsDict, details }) => {
          invocations.push({ argsList, argsDict, details });
          return { argsList: [...argsList].reverse(), argsDict: { ...argsDict, echoed: true } };
        }), 'register');
        const regId = idNumber(reg.registrationId);
        assert.ok(Number.isSafeInteger(regId) && regId > 0, show(reg));

        const res = await within(a.wampy.call(proc, { argsList: ARGS, argsDict: KWARGS }), 'call');
        assert.deepEqual(res.argsList, [...ARGS].reverse());
        assert.deepEqual(res.argsDict, { ...KWARGS, echoed: true });
        assert.equal(invocations.length, 1);
        assert.deepEqual(invocations[0].argsList, ARGS);
        assert.deepEqual(invocations[0].argsDict, KWARGS);

        // A larger argument (256 KiB) spans many socket reads.
        const big = bigString(256 * 1024);
        const res2 = await within(a.wampy.call(proc, { argsList: [big], argsDict: { n: big.length } }), 'call with 256 KiB');
        assert.equal(res2.argsList[0], big);
        assert.equal(res2.argsDict.n, big.length);
        await within(b.wampy.unregister(proc), 'unregister');
      });

      it('an application error raised by the callee reaches the caller with its URI, args and kwargs', { timeout: 10_000 }, async () => {
        // Goal: INVOCATION -> ERROR is forwarded to the caller as ERROR unchanged.
        const proc = `${prefix}.fails`;
        await within(b.wampy.register(proc, () => {
          const e = new Error('oops');
          e.error = 'com.example.error.oops';
          e.argsList = ['bad input'];
          e.argsDict = { code: 7 };
          throw e;
        }), 'register');
        await assert.rejects(within(a.wampy.call(proc, { argsList: [1] }), 'call'), (err) => {
          assert.equal(err.errorUri, 'com.example.error.oops', `${err} ${show(err)}`);
          assert.deepEqual(err.argsList, ['bad input']);
          assert.deepEqual(err.argsDict, { code: 7 });
          return true;
        });
        await within(b.wampy.unregister(proc), 'unregister');
      });

      it('a call to a procedure nobody registered fails with wamp.error.no_such_procedure', { timeout: 10_000 }, async () => {
        // Goal: the dealer answers an unknown procedure with the standard error URI.
        await assert.rejects(within(a.wampy.call(`${prefix}.nowhere`, { argsList: [1], argsDict: { k: 'v' } }), 'call'), (err) => {
          assert.equal(err.errorUri, 'wamp.error.no_such_procedure', `${err} ${show(err)}`);
          return true;
        });
      });
    });
  }
});
