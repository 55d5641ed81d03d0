// Payloads every serializer (JSON, MessagePack, CBOR) carries without loss, so a round trip
// through the router (which may transcode between serializers) must give them back equal.

export const ARGS = [
  0,
  1,
  -2,
  3.5,
  'héllo wörld ✓ 🚀',
  '',
  true,
  false,
  null,
  [1, [2, [3, []]]],
  { nested: { deep: 'yes', list: ['a', 'b'] } },
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53 - 1,
];

export const KWARGS = {
  str: 'value',
  num: 42,
  neg: -42,
  float: 0.25,
  list: [1, 2, 3],
  obj: { a: { b: { c: 'd' } } },
  empty_list: [],
  empty_obj: {},
  unicode_ключ: 'значение',
  big: 2 ** 40,
};

/** A string of `n` bytes (ASCII), for messages larger than one read. */
export function bigString(n) {
  return 'shardbar-'.repeat(Math.ceil(n / 9)).slice(0, n);
}
