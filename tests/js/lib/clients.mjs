// Connecting Autobahn|JS and wampy sessions to a test router, with bounded waits.
//
// Every helper returns an object with `close()`; tests close what they open in `after` hooks
// so no socket or ping timer keeps the test process alive.

import autobahn from 'autobahn';
import { Wampy } from 'wampy';
import { JsonSerializer } from 'wampy/JsonSerializer.js';
import { MsgpackSerializer } from 'wampy/MsgpackSerializer.js';
import { CborSerializer } from 'wampy/CborSerializer.js';
import WebSocket from 'ws';

export const REALM = 'realm1';
export const OP_TIMEOUT_MS = 5_000;

/** Rejects with `what` if `promise` has not settled within `ms`. */
export function within(promise, what, ms = OP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A promise with its resolve/reject exposed (an event a handler will signal). */
export function signal() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

// ---- Autobahn|JS ----

const AUTOBAHN_SERIALIZERS = {
  json: () => new autobahn.serializer.JSONSerializer(),
  msgpack: () => new autobahn.serializer.MsgpackSerializer(),
  cbor: () => new autobahn.serializer.CBORSerializer(),
};

/**
 * Open an Autobahn|JS session.
 * transport: 'websocket' (any serializer) or 'rawsocket' (Autobahn|JS's Node RawSocket
 * transport speaks JSON only). For WebSocket, `url` replaces the router's ws:// URL (e.g. a
 * wss:// one) and `agent` is the https.Agent to connect with (its CA, client certificate).
 * `auth`: the Connection options of a login, { authmethods, authid, authextra, onchallenge }
 * (onchallenge(session, method, extra) as Autobahn|JS calls it).
 * Resolves { session, details, protocol, shard, close }. A refused login rejects with an
 * Error whose `abortReason` is the ABORT's reason URI (Autobahn|JS's close details.reason).
 */
export function connectAutobahn(router, {
  transport = 'websocket', serializer = 'json', url, agent, realm = REALM, auth = {},
} = {}) {
  const make = AUTOBAHN_SERIALIZERS[serializer];
  if (!make) throw new Error(`Autobahn|JS has no serializer ${serializer}`);
  let transports;
  if (transport === 'websocket') {
    transports = [{ type: 'websocket', url: url || router.wsUrl, serializers: [make()], agent }];
  } else if (transport === 'rawsocket') {
    if (serializer !== 'json') throw new Error('Autobahn|JS RawSocket (Node) is JSON-only');
    transports = [{ type: 'rawsocket', host: '127.0.0.1', port: router.port }];
  } else {
    throw new Error(`unknown transport ${transport}`);
  }
  const connection = new autobahn.Connection({
    realm,
    transports,
    authmethods: auth.authmethods,
    authid: auth.authid,
    authextra: auth.authextra,
    onchallenge: auth.onchallenge,
    use_es6_promises: true,
    max_retries: 0,
    retry_if_unreachable: false,
  });
  const opened = signal();
  const closed = signal();
  let isOpen = false;
  connection.onopen = (session, details) => {
    isOpen = true;
    opened.resolve({ session, details });
  };
  connection.onclose = (reason, details) => {
    if (!isOpen) {
      const e = new Error(`Autobahn|JS ${transport}/${serializer} could not connect: ${reason} ${JSON.stringify(details)}`);
      e.abortReason = details && details.reason;
      opened.reject(e);
    }
    closed.resolve({ reason, details });
    return true; // never reconnect
  };
  connection.open();
  return within(opened.promise, `Autobahn|JS ${transport}/${serializer} session open`).then(({ session, details }) => ({
    session,
    details,
    protocol: connection.transport && connection.transport.info && connection.transport.info.protocol,
    shard: details && details.authextra ? details.authextra._shard : undefined,
    close: async () => {
      if (!isOpen) return;
      isOpen = false;
      try { connection.close(); } catch { /* already closing */ }
      await within(closed.promise, `Autobahn|JS ${transport}/${serializer} close`);
    },
  }), (e) => {
    try { connection.close(); } catch { /* not open */ }
    throw e;
  });
}

/** The positional and keyword arguments of an Autobahn|JS call result, however it came back. */
export function autobahnResult(res) {
  if (res instanceof autobahn.Result) return { args: res.args, kwargs: res.kwargs };
  return { args: res === undefined ? [] : [res], kwargs: {} };
}

// ---- wampy ----

/**
 * A WAMP ID as a Number. wampy's MessagePack serializer (msgpackr with default options)
 * decodes every 64-bit integer as a BigInt, so IDs above 2^32 (session and publication IDs)
 * arrive as BigInt; WAMP IDs are at most 2^53, so they convert without loss.
 */
export function idNumber(id) {
  if (typeof id === 'bigint') {
    if (id > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`WAMP ID ${id} is above 2^53`);
    return Number(id);
  }
  return id;
}

/** JSON.stringify that prints BigInts instead of throwing. */
export function show(v) {
  return JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}n` : x));
}

const WAMPY_SERIALIZERS = {
  json: () => new JsonSerializer(),
  msgpack: () => new MsgpackSerializer(),
  cbor: () => new CborSerializer(),
};

/**
 * The `ws` WebSocket class wampy constructs, connecting with `agent` (an https.Agent with the
 * test CA). wampy calls `new ws(url, protocols, origin, headers, requestOptions)` (the
 * `websocket` package's signature); `ws` takes its options third, so the agent is bound here.
 */
function wsWithAgent(agent) {
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { agent });
    }
  };
}

/**
 * Open a wampy session over WebSocket (wampy has no RawSocket transport). `url` replaces the
 * router's ws:// URL (e.g. a wss:// one), `agent` is the https.Agent to connect with; `auth`
 * holds wampy's login options ({ authid, authmethods, authextra, onChallenge }).
 * Resolves { wampy, details, protocol, shard, close }. A refused login rejects with an Error
 * whose `abortReason` is the ABORT's reason URI.
 */
export async function connectWampy(router, { serializer = 'json', url, agent, auth = {} } = {}) {
  const make = WAMPY_SERIALIZERS[serializer];
  if (!make) throw new Error(`wampy has no serializer ${serializer}`);
  const errors = [];
  const wampy = new Wampy(url || router.wsUrl, {
    realm: REALM,
    ws: agent ? wsWithAgent(agent) : WebSocket,
    serializer: make(),
    autoReconnect: false,
    onError: (e) => errors.push(e),
    ...auth,
  });
  let details;
  try {
    details = await within(wampy.connect(), `wampy ${serializer} session open`);
  } catch (e) {
    try { wampy.abort(); } catch { /* not open */ }
    const err = new Error(`wampy ${serializer} could not connect: ${e && e.message} ${errors.map(String).join('; ')}`);
    err.abortReason = e && e.errorUri;
    throw err;
  }
  let open = true;
  return {
    wampy,
    details,
    errors,
    protocol: wampy._ws && wampy._ws.protocol,
    shard: details && details.authextra ? details.authextra._shard : undefined,
    close: async () => {
      if (!open) return;
      open = false;
      await within(wampy.disconnect(), `wampy ${serializer} disconnect`);
    },
  };
}

/**
 * Open sessions with `connect()` until one is on a shard different from `shard`, closing the
 * ones that are not (the kernel spreads SO_REUSEPORT connections over the shards by hash).
 */
export async function connectOnOtherShard(connect, shard, attempts = 32) {
  for (let i = 0; i < attempts; i++) {
    const c = await connect();
    if (c.shard !== shard) return c;
    await c.close();
  }
  throw new Error(`${attempts} sessions in a row landed on shard ${shard}`);
}
