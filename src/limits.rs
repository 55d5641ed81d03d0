//! Every bound in shardbar, in one place.
//!
//! Each constant says what it bounds and why it has the value it has. Names carry their
//! unit last (`_bytes`, `_ms`, `_max`). Where the config file may override a value, the
//! constant is the default and the config validation uses the `*_CEILING` next to it.
//! Hitting any of these has a defined outcome, named in the comment: an ERROR or ABORT to
//! the peer, a close with a reason the runtime acts on, or a counted drop.

/// Largest WAMP message we accept from a peer, after transport framing is removed.
/// 16 MiB is the RawSocket maximum (L = 15); WebSocket peers get the same cap so a client
/// sees one limit whatever the transport. Outcome: RawSocket and WebSocket both fail the
/// connection (RawSocket: spec MUST; WebSocket: close 1009 "message too big").
pub const MESSAGE_SIZE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Ceiling for `limits.message_size_max` in the config file.
pub const MESSAGE_SIZE_CEILING_BYTES: usize = MESSAGE_SIZE_MAX_BYTES;

/// Largest HTTP request head (request line + headers) before the WebSocket upgrade.
/// Browsers send < 2 KiB; 16 KiB leaves room for cookies. Outcome: HTTP 431 and close.
pub const HTTP_HEAD_MAX_BYTES: usize = 16 * 1024;

/// Most headers in one HTTP request head. Outcome: HTTP 431 and close.
pub const HTTP_HEADERS_MAX: usize = 64;

/// Most WebSocket frames (fragments) in one message. Reassembly bookkeeping is constant per
/// message (one buffer, one counter), so this only stops a peer that streams empty
/// fragments forever; the message size cap bounds memory. 2^20 leaves room for the Autobahn
/// testsuite's 4 MiB messages in 64-byte fragments (65,537 frames with the empty final
/// one, cases 9.3.1/9.4.1). Outcome: close 1009.
pub const WS_FRAGMENTS_MAX: usize = 1 << 20;

/// Largest control-frame payload (RFC 6455 §5.5). Outcome: close 1002.
pub const WS_CONTROL_PAYLOAD_MAX_BYTES: usize = 125;

/// Largest socket read. 64 KiB amortises the syscall over many small messages while a
/// slow subscriber pinning one chunk stays cheap (see `PAYLOAD_COPY_BELOW_BYTES`).
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A connection's read buffer starts at this size and returns to it when the connection is
/// quiet; it doubles (up to `READ_CHUNK_BYTES`) while reads fill it. A connection whose reads
/// are this small holds no read buffer between reads: it reads through the shard's scratch
/// (`shard::buffers`), so idle sessions cost no read buffer at all.
pub const READ_CHUNK_MIN_BYTES: usize = 4 * 1024;

/// A connection gives its write buffer back when it goes quiet; the shard keeps it for the
/// next writer if it holds at most this (it grows up to `WRITE_COALESCE_MAX_BYTES` while
/// busy; larger ones are freed).
pub const WRITE_BUF_KEEP_BYTES: usize = 16 * 1024;

/// Write buffers a shard keeps for its connections (`shard::buffers`): at most this many of
/// at most `WRITE_BUF_KEEP_BYTES` each (1 MiB per shard), enough for the connections that
/// write in one turn of a busy shard; idle connections hold none.
pub const WRITE_POOL_BUFFERS: usize = 64;

/// Payload slices smaller than this are copied out of the read chunk into a right-sized
/// buffer, so a slow consumer holding a 64-byte EVENT does not pin a 64 KiB read chunk.
pub const PAYLOAD_COPY_BELOW_BYTES: usize = 4 * 1024;

/// Most bytes coalesced into one socket write. Large enough to carry thousands of small
/// EVENTs per syscall, small enough that one connection cannot monopolise a shard's turn.
pub const WRITE_COALESCE_MAX_BYTES: usize = 256 * 1024;

/// Default cap on bytes queued for one connection and not yet written. Above it the
/// connection is a slow consumer (policy per realm: disconnect, or drop and count).
/// NATS uses 64 MiB; we use less because WAMP events are typically small and a trading
/// client 8 MiB behind is already useless.
///
/// Each queued frame is charged its full length to every connection that queues it, though
/// fan-out shares the bytes: one frame among a subscription's members, and an EVENT's
/// payload tail among all subscriptions of a publication (`frame::SplitFrame`). The bound is
/// per connection and conservative: what a connection holds back is at most this, and the
/// shared memory it pins is never more than it is charged.
pub const PENDING_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Ceiling for the configurable pending-bytes cap.
pub const PENDING_BYTES_CEILING: usize = 1024 * 1024 * 1024;

/// Default: a connection with queued bytes that made no write progress for this long is a
/// slow consumer. Outcome: the slow-consumer policy.
pub const WRITE_DEADLINE_MS: u64 = 10_000;

/// Default WebSocket / RawSocket ping interval. Half-open TCP connections otherwise keep
/// stale registrations alive forever (the most common Crossbar complaint).
pub const PING_INTERVAL_MS: u64 = 30_000;

/// Default time to wait for a pong before the connection is reaped.
pub const PING_TIMEOUT_MS: u64 = 15_000;

/// Time a new connection has to finish its transport handshake and send HELLO. On a TLS
/// connection the TLS handshake counts against the same deadline (rustls bounds what the
/// peer may send meanwhile: a handshake message to 64 KiB). Outcome: the connection is
/// closed.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// glommio's minimum RLIMIT_MEMLOCK for its io_uring rings. Outcome: below it the router
/// refuses to start, with a message saying how to raise the limit.
pub const MEMLOCK_MIN_BYTES: u64 = 512 * 1024;

/// Time allowed for sessions to be told GOODBYE and for queues to flush on shutdown.
pub const SHUTDOWN_GRACE_MS: u64 = 3_000;

/// Longest URI (topic, procedure, error, realm). Outcome: `wamp.error.invalid_uri`.
pub const URI_LEN_MAX_BYTES: usize = 4 * 1024;

/// Most characters of a peer's own string (a URI, a subprotocol name, a parser's complaint
/// about its bytes) quoted in an error text sent back or logged; the rest is cut and marked
/// with `…`. 256 shows any realistic URI whole, while a 16 MiB topic costs no more to report
/// than a short one. Outcome: the error text is shortened, nothing else.
pub const ERROR_PEER_TEXT_MAX_CHARS: usize = 256;

/// Bytes a router-written text (an ERROR's message, an ABORT's or GOODBYE's
/// `Details.message`) is cut to when the whole message is larger than the peer's RawSocket
/// limit. The text quotes up to `ERROR_PEER_TEXT_MAX_CHARS` characters of the peer's own
/// string, up to 4 bytes each, so it can pass 1 KiB, while a client may announce 512 bytes;
/// 128 bytes of text fit a 512-byte limit in every serializer. If even the cut text does not
/// fit (escaping), the text is left out. Outcome: the peer gets the message with a shorter
/// text or none, never no message at all.
pub const PEER_LIMIT_TEXT_BYTES: usize = 128;

/// Deepest nesting of lists/dicts a decoder follows. Bounds recursion on hostile input.
/// Outcome: protocol violation (ABORT).
pub const VALUE_DEPTH_MAX: usize = 64;

/// Most elements a decoder reserves room for up front when a list or dict announces its
/// length (binary formats); longer ones grow as they are read. The count is the sender's
/// word and a decoded element is much larger than its encoding (a 1-byte nil is a 32-byte
/// `Value`), so reserving for a hostile count would multiply the input. Outcome: none (a
/// long container reallocates as it grows).
pub const DECODE_PREALLOC_MAX_ELEMENTS: usize = 1024;

/// Largest encoded `Options`/`Details` element (a message has at most one), checked before
/// any of it is built. Such a dict is decoded into a tree of `Value`s, which costs tens of
/// bytes per encoded byte (a one-byte msgpack nil is a 32-byte `Value`, held in a list that
/// grows by doubling): with no cap a 16 MiB PUBLISH.Options of nils took ~1.2 GiB. The
/// largest legitimate one is a PUBLISH whose `exclude` and `eligible` lists both hold
/// `PUBLISH_FILTER_ENTRIES_MAX` session IDs written as JSON numbers (16 digits and a comma
/// each): 139,264 bytes, asserted below; 256 KiB leaves room for its other keys. Payloads
/// (`Arguments`, `ArgumentsKw`) are not options: they stay raw slices, up to
/// `MESSAGE_SIZE_MAX_BYTES`. Outcome: ABORT `wamp.error.protocol_violation`.
pub const OPTIONS_MAX_BYTES: usize = 256 * 1024;

/// Most values (list elements and dict values, at any depth) built while decoding one
/// message (in practice its one `Options`/`Details` dict). Within `OPTIONS_MAX_BYTES` a peer
/// can still pack 256 Ki one-byte nils, each a 32-byte `Value`; this bounds the tree by what
/// legitimate options need instead: the six PUBLISH filter lists (`exclude`, `eligible` and
/// their authid/authrole forms) full, and room for the rest (asserted below). Payloads being
/// transcoded are not counted. Outcome: ABORT `wamp.error.protocol_violation`.
pub const OPTIONS_VALUES_MAX: usize = 32 * 1024;

/// The memory bound that follows from the two above: the most bytes decoding one message's
/// `Options`/`Details` holds at once (the values, the spare room of lists that grew by
/// doubling, dict keys and their index, and for a large JSON dict simd-json's scratch and
/// tape), as requested from the allocator. Not a counter: the worst shapes a peer can pack
/// within both bounds (nils, empty lists and dicts, zeros, distinct keys, short strings, one
/// long string) are measured against it in every serializer's tests
/// (`wire::fuzz::options_bounds_hold`). Measured worst: 9.3 MB for a JSON dict of 29,611
/// distinct keys (its key index and simd-json's tape), 5.3 MB in MessagePack and CBOR (32,766
/// keys); a list of nils 1.6 MB. The 16 MiB PUBLISH.Options of nils that took ~1.2 GiB is now
/// refused by the size cap with nothing built. Outcome: none (a documented bound).
pub const OPTIONS_DECODED_MAX_BYTES: usize = 12 * 1024 * 1024;

/// JSON values (as encoded bytes) up to this size are built by the hand-written parser,
/// larger ones by simd-json. Measured with `bench/codec_json.rs` (`json_payload_values`),
/// forcing one builder or the other: hand-built is ~20% faster at 64 B, the two are even
/// from ~600 B to 1 KiB, and simd-json is ~5% faster at 64 KiB. A threshold, not a bound.
pub const JSON_HAND_PARSE_MAX_BYTES: usize = 512;

/// simd-json's per-shard scratch buffer, grown past this by one large value, is released
/// after use, so one 16 MiB payload does not pin 16 MiB per shard for ever.
pub const JSON_SCRATCH_KEEP_BYTES: usize = 256 * 1024;

/// Most shards (cores) one router runs. Shard sets are 64-bit masks.
pub const SHARDS_MAX: usize = 64;

/// Most subscriptions one session holds. Outcome: ERROR on SUBSCRIBE
/// (`shardbar.error.limit_exceeded`).
pub const SESSION_SUBSCRIPTIONS_MAX: usize = 65_536;

/// Most registrations one session holds. Outcome: ERROR on REGISTER.
pub const SESSION_REGISTRATIONS_MAX: usize = 65_536;

/// Most CALLs one caller session has outstanding. Outcome: ERROR on CALL.
pub const SESSION_CALLS_MAX: usize = 65_536;

/// Payload bytes of one session's CALLs in flight (kept until the call ends, for
/// re-routing). Outcome: ERROR `shardbar.error.limit_exceeded` on the CALL.
pub const SESSION_CALL_PAYLOAD_BYTES_MAX: usize = 64 << 20;

/// Payload bytes of all CALLs in flight whose callers live on one shard. Outcome: ERROR
/// `shardbar.error.limit_exceeded` on the CALL.
pub const SHARD_CALL_PAYLOAD_BYTES_MAX: usize = 512 << 20;

/// Most INVOCATIONs one callee session has outstanding. Outcome: the CALL that would
/// exceed it gets ERROR `shardbar.error.limit_exceeded`, so no callee is buried.
pub const SESSION_INVOCATIONS_MAX: usize = 65_536;

/// Most callees of one shared registration. Every change to the callee list is pushed to
/// every shard whole (and each join scans it for the session), so without a cap n joins cost
/// O(n²) on every shard. Outcome: ERROR `shardbar.error.limit_exceeded` on REGISTER.
pub const REGISTRATION_CALLEES_MAX: usize = 1_024;

/// Default memory budget for one realm's routes (subscriptions and registrations),
/// `[[realm]] route_bytes_max`. Every shard keeps a replica of every route, so one route
/// costs the process `route_cost_bytes` = (URI bytes + `ROUTE_OVERHEAD_BYTES`) × shards,
/// and the budget bounds the realm's sum of that. Without it only the per-session caps
/// bound the routes: 65 536 prefix subscriptions of 4 KiB per session, on every shard, is
/// tens of GB. Each owner shard admits `budget / shards` of it for the routes it owns
/// (`owner_shard` spreads (realm, URI, match) evenly), so the realm total never exceeds
/// the budget, at the price of a refusal slightly before it when URIs hash unevenly.
/// Outcome: the SUBSCRIBE/REGISTER that would create a route gets ERROR
/// `shardbar.error.limit_exceeded`, counted in `shardbar_route_budget_refused_total`;
/// joining an existing route costs nothing and is never refused.
pub const REALM_ROUTE_BYTES_MAX: u64 = 256 << 20;

/// Smallest and largest `route_bytes_max` a realm may set: below the floor a handful of
/// routes would not fit on a many-shard router; the ceiling only catches typos.
pub const REALM_ROUTE_BYTES_FLOOR: u64 = 64 << 10;
pub const REALM_ROUTE_BYTES_CEILING: u64 = 1 << 40;

/// What one route costs one replica besides its URI bytes, for the budget: the index's
/// node or hash-map entry of the route (`bench/pattern.rs`, 10 000 patterns of 64 B: ~90 B
/// per prefix, ~200 B per wildcard pattern when all branch off one node), the replica's
/// ID → (URI, match) entry, a registration's callee list, and the owner's entries, rounded
/// up to a round figure. Counted for every policy as if each replica copied the URI (the
/// prefix and wildcard tries do; exact keys share one copy).
pub const ROUTE_OVERHEAD_BYTES: u64 = 256;

/// Most SUBSCRIBE/REGISTER requests of one session waiting for the shard barrier.
/// Outcome: ERROR on the request.
pub const SESSION_PENDING_ROUTE_CHANGES_MAX: usize = 4_096;

/// Most entries in a PUBLISH's exclude/eligible lists. Outcome: protocol violation.
pub const PUBLISH_FILTER_ENTRIES_MAX: usize = 4_096;

/// Most realms alive on a router (configured + auto-created). Outcome: ABORT
/// `wamp.error.no_such_realm`.
pub const REALMS_MAX: usize = 1_024;

/// Most sessions one shard holds. Outcome: ABORT `shardbar.error.limit_exceeded`.
pub const SHARD_SESSIONS_MAX: usize = 1_000_000;

/// Capacity of one inter-shard channel, in batches. A full channel never blocks the loop:
/// the sending shard queues the batch in its per-peer backlog, and once outbox and backlog
/// hold more than `MESH_OUTBOX_PAUSE_MESSAGES` it stops reading its connections until they
/// drain.
pub const MESH_CHANNEL_BATCHES: usize = 1_024;

/// Messages per mesh batch before it is cut and a new one started.
pub const MESH_BATCH_MESSAGES_MAX: usize = 4_096;

/// Mesh messages waiting to go out (outbox plus the backlog for full channels, over all
/// destinations) above which a shard stops reading its connections until the mesh drains. TCP then pushes back on publishers.
pub const MESH_OUTBOX_PAUSE_MESSAGES: usize = 64 * 1024;

/// Most WAMP messages handled from one connection's read before the loop yields.
pub const MESSAGES_PER_READ_MAX: usize = 4_096;

/// Largest message accepted before a session exists (HELLO, or an ABORT): a stranger's
/// HELLO.Details must not cost a tree of millions of values (a 16 MiB HELLO of nils decoded
/// to ~1.2 GiB). Autobahn's largest HELLO (every role and feature, cryptosign authextra) is
/// under 2 KiB. Outcome: ABORT `wamp.error.protocol_violation`.
pub const HELLO_MESSAGE_MAX_BYTES: usize = 64 * 1024;

// ---- authentication ----

/// Longest authid (and role) accepted from a HELLO or a dynamic authenticator. Outcome:
/// ABORT `wamp.error.authentication_failed`.
pub const AUTHID_MAX_BYTES: usize = 256;

/// Longest SCRAM client nonce (Autobahn sends 24 base64 characters). Outcome: ABORT
/// `wamp.error.authentication_failed`.
pub const SCRAM_NONCE_MAX_BYTES: usize = 128;

/// Connections of one shard between HELLO and WELCOME that wait for a CHALLENGE answer or a
/// dynamic authenticator (each holds its challenge state, a few hundred bytes). The runtime's
/// `max_handshakes_per_shard` bounds them too; this bound is the core's own. Outcome: ABORT
/// `wamp.error.limit_exceeded` for the HELLO that would exceed it.
pub const AUTH_PENDING_PER_SHARD_MAX: usize = 4096;

/// Of those, the ones waiting for a dynamic authenticator's answer (each is a call in flight
/// to the backend). Outcome: ABORT `wamp.error.authentication_failed` ("authenticator busy").
pub const AUTHENTICATOR_CALLS_PER_SHARD_MAX: usize = 1024;

/// Time a dynamic authenticator has to answer. Outcome: ABORT
/// `wamp.error.authentication_failed`, the call is canceled (killnowait), counted.
pub const AUTHENTICATOR_TIMEOUT_MS: u64 = 5_000;

/// Largest PBKDF2 iteration count a dynamic authenticator may return for a salted WAMP-CRA
/// secret: that key is derived on the shard per login (about 1 µs per iteration), unlike a
/// static principal's, which is derived once at config load. Outcome: ABORT
/// `wamp.error.authentication_failed`.
pub const DYNAMIC_CRA_ITERATIONS_MAX: u64 = 1000;

/// Requests of one shard parked while a dynamic authorizer decides (each holds its message).
/// Outcome: the request is denied (ERROR `wamp.error.not_authorized`), counted and logged.
pub const AUTHORIZER_CALLS_PER_SHARD_MAX: usize = 1024;

/// Of those, the requests one session may have parked: one session cannot take every slot.
/// Outcome: as above.
pub const AUTHORIZER_PARKED_PER_SESSION_MAX: usize = 64;

/// Payload bytes of all parked requests of one shard (a parked PUBLISH or CALL keeps its
/// payload, up to `message_size_max` each). Outcome: as above.
pub const AUTHORIZER_PARKED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Time a dynamic authorizer has to answer. Outcome: the request is denied, the call
/// canceled (killnowait).
pub const AUTHORIZER_TIMEOUT_MS: u64 = 5_000;

/// Decisions a dynamic authorizer asked to cache, per session (kept until it ends).
/// Outcome: further decisions are used once and not kept (the authorizer is asked again).
pub const AUTHZ_CACHE_PER_SESSION_MAX: usize = 1024;

/// Memoized static authorization decisions per (role, action) in one realm on one shard
/// (URIs a role requested). Outcome: the table is cleared and refills; decisions still
/// come from the rules.
pub const AUTHZ_MEMO_PER_ROLE_ACTION_MAX: usize = 4096;

/// Roles with memoized decisions per realm and shard (roles may come from a dynamic
/// authenticator). Outcome: further roles are decided from the rules every time.
pub const AUTHZ_MEMO_ROLES_MAX: usize = 256;

/// Distinct (role, action) denial counters per realm and shard in `/metrics` (roles may
/// come from a dynamic authenticator, so their names are not bounded by the config).
/// Outcome: further roles are counted under `_other`.
pub const DENIAL_COUNTERS_MAX: usize = 256;

/// Permission rules per role in the config (each is an entry in the role's URI index).
/// Outcome: a config error.
pub const ROLE_RULES_MAX: usize = 100_000;

/// Longest call timeout a realm may configure as default or maximum (a day). Outcome: a
/// config error.
pub const CALL_TIMEOUT_CEILING_MS: i64 = 86_400_000;

/// Static principals per method and listener in the config (lookups are hashed; this bounds
/// config size and reload time). Outcome: a config error at start or reload.
pub const PRINCIPALS_MAX: usize = 100_000;

/// Most distinct error URIs counted per shard in `/metrics`; more are counted under
/// `_other`, so a callee inventing URIs cannot grow the map without bound.
pub const ERROR_URIS_MAX: usize = 256;

/// Longest error URI counted under its own name; longer ones are counted under `_other`,
/// so the error map's memory is bounded (`ERROR_URIS_MAX` × this), not only its size.
pub const ERROR_URI_COUNTED_MAX_BYTES: usize = 256;

/// Times one call may be bounced by callees (gone, `wamp.error.unavailable`, overloaded)
/// and re-routed before the caller gets `wamp.error.no_available_callee`. Bounds the work
/// one CALL can cause when every callee refuses it.
pub const CALL_REROUTES_MAX: usize = 8;

// Waits and polls of the runtime (`src/shard`). None of them is configurable.

/// Write deadline for a refusal: a RawSocket handshake error, an HTTP error status, a
/// refused WebSocket upgrade. The refusal is a courtesy; the connection is closed after it
/// (or after this long) either way.
pub const REFUSAL_WRITE_DEADLINE_MS: u64 = 1_000;

/// Write deadline for a handshake's success reply (RawSocket, WebSocket 101) and for a
/// plain HTTP response (`/health`, `/metrics`, 426). Outcome: the connection is closed.
pub const HANDSHAKE_REPLY_WRITE_DEADLINE_MS: u64 = 5_000;

/// Longest a `/metrics` request waits for every shard's counters to come back over the
/// mesh. Outcome: HTTP 503 ("a shard did not answer in time").
pub const METRICS_GATHER_MS: u64 = 2_000;

/// How often a shard checks the shutdown flag, while serving and while waiting in the mesh
/// join for peers (one that fails to start never joins). Bounds how late a shard notices a
/// shutdown request.
pub const SHUTDOWN_POLL_MS: u64 = 20;

/// How often a stopping shard checks whether its connections have all closed.
pub const SHUTDOWN_DRAIN_POLL_MS: u64 = 10;

/// After `SHUTDOWN_GRACE_MS`, connections still open are told to close; the shard waits at
/// most this long for them before it stops anyway.
pub const SHUTDOWN_CLOSE_WAIT_MS: u64 = 500;

/// Longest a connection task waits for its socket's close to complete.
pub const STREAM_CLOSE_MS: u64 = 200;

/// Pause after a failed accept (EMFILE and friends) before the next one, so a listener does
/// not spin while the process is out of file descriptors.
pub const ACCEPT_RETRY_MS: u64 = 50;

/// WebSocket testee (echo) mode: deadline of each write. Outcome: the connection is dropped.
pub const ECHO_WRITE_DEADLINE_MS: u64 = 30_000;

/// Size of the default generated-ID space: IDs are in [1, 2^53].
pub const ID_MAX: u64 = 1 << 53;

/// Meta API calls answered by gathering parts from every shard, in flight per shard; more
/// get `shardbar.error.limit_exceeded`.
pub const META_GATHERS_PER_SHARD_MAX: usize = 1024;

/// The same per session.
pub const META_GATHERS_PER_SESSION_MAX: usize = 16;

/// Retained events kept per topic (`PUBLISH.Options.retain`). An unfiltered retained
/// publication replaces the topic's list; filtered ones (`exclude*`/`eligible*`) append, so
/// that subscribers they exclude still get the last event meant for them. 16 covers a few
/// audiences per topic. Outcome: the publication is delivered but not retained, counted
/// (`shardbar_retained_refused_total`) and logged (rate-limited).
pub const RETAINED_EVENTS_PER_TOPIC_MAX: usize = 16;

/// Topics with retained events, per realm on one owner shard. Outcome: as above.
pub const RETAINED_TOPICS_PER_REALM_MAX: usize = 65_536;

/// Bytes of retained events (payload, topic, filters and a fixed overhead each) one shard
/// keeps over all realms. Payloads are copied out of the read buffer when stored, so this
/// is the memory they hold. Outcome: as above.
pub const RETAINED_BYTES_PER_SHARD_MAX: usize = 64 << 20;

/// Events kept per `[[realm.history]]` entry when it sets no `limit` (Crossbar's global
/// default).
pub const HISTORY_LIMIT_DEFAULT: usize = 100;

/// Ceiling for `[[realm.history]].limit`: one `get_events` answer holds at most this many
/// events.
pub const HISTORY_LIMIT_CEILING: usize = 100_000;

/// `[[realm.history]]` entries per realm (each matching publication costs one mesh message
/// per entry it matches).
pub const HISTORY_ENTRIES_PER_REALM_MAX: usize = 256;

/// Bytes of history events one shard keeps over all entries. An event that would push the
/// shard over it first evicts the oldest events of its own entry; an event that still does not fit is not stored.
/// Outcome: counted (`shardbar_history_dropped_bytes_total`), logged (rate-limited).
pub const HISTORY_BYTES_PER_SHARD_MAX: usize = 256 << 20;

/// Bookkeeping charged per stored event (retained or history) on top of its payload,
/// topic and filters: the `Publication`, its `Arc`, the ring slot.
pub const STORED_EVENT_OVERHEAD_BYTES: usize = 192;

/// `wamp.subscription.get_events` stops selecting once the events it picked hold more than
/// this many times the caller's largest message in stored bytes (payload, topic, filters
/// and `STORED_EVENT_OVERHEAD_BYTES` each: an estimate of the encoded answer, with room for
/// its error). Such an answer could not be sent, and building it would cost the history's
/// owner shard up to `HISTORY_BYTES_PER_SHARD_MAX` of transient values per call.
/// Outcome: ERROR `wamp.error.payload_size_exceeded` (counted per URI) that says to ask
/// for fewer events.
pub const HISTORY_ANSWER_ESTIMATE_FACTOR: usize = 2;

/// `wamp.subscription.get_events` with a positional limit (Crossbar's default 10).
pub const HISTORY_GET_EVENTS_LIMIT_DEFAULT: usize = 10;

const _: () = assert!(HISTORY_LIMIT_DEFAULT <= HISTORY_LIMIT_CEILING);
const _: () = assert!(HISTORY_GET_EVENTS_LIMIT_DEFAULT <= HISTORY_LIMIT_CEILING);
/// Testaments one session may leave (`wamp.session.add_testament`, both scopes together).
/// A testament is a last word or two (a presence update); 64 leaves room for one per
/// topic a client cares about. Outcome: ERROR `wamp.error.testament_error`, counted
/// (`testaments_refused_total`).
pub const SESSION_TESTAMENTS_MAX: usize = 64;

/// Bytes (topic + encoded payload) one session's testaments may hold. Same outcome.
pub const SESSION_TESTAMENT_BYTES_MAX: usize = 64 * 1024;

/// Bytes all testaments on one shard may hold, so that many sessions each within their
/// own bound cannot run the shard out of memory. Same outcome.
pub const SHARD_TESTAMENT_BYTES_MAX: usize = 256 << 20;

const _: () = assert!(SHARDS_MAX <= 64, "shard sets are u64 masks");
const _: () = assert!(PAYLOAD_COPY_BELOW_BYTES < READ_CHUNK_BYTES);
const _: () = assert!(READ_CHUNK_MIN_BYTES <= READ_CHUNK_BYTES);
const _: () = assert!(WRITE_COALESCE_MAX_BYTES <= PENDING_BYTES_MAX);
const _: () = assert!(PING_TIMEOUT_MS < PING_INTERVAL_MS * 2);
const _: () = assert!(SESSION_TESTAMENT_BYTES_MAX <= SHARD_TESTAMENT_BYTES_MAX);

/// Decimal digits of `n` (for sizes of numbers written as JSON).
const fn decimal_digits(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// Digits of the largest generated ID written as a JSON number (2^53: 16).
const ID_JSON_DIGITS_MAX: usize = decimal_digits(ID_MAX);

const _: () = assert!(
    2 * PUBLISH_FILTER_ENTRIES_MAX * (ID_JSON_DIGITS_MAX + 1) + 4 * 1024 <= OPTIONS_MAX_BYTES,
    "PUBLISH.Options with full exclude and eligible lists of session IDs in JSON must fit"
);
const _: () = assert!(
    6 * PUBLISH_FILTER_ENTRIES_MAX + 1024 <= OPTIONS_VALUES_MAX,
    "PUBLISH.Options with all six filter lists full must fit the value budget"
);
const _: () = assert!(HELLO_MESSAGE_MAX_BYTES <= OPTIONS_MAX_BYTES);

// ---- config ranges ----
//
// What the config file (and the command line) may set, beyond the defaults above. A value
// outside its range stops the router at start with the file, the key and the range; it is
// never clamped. The ceilings for `message_size_max` and `pending_bytes_max` are
// `MESSAGE_SIZE_CEILING_BYTES` and `PENDING_BYTES_CEILING` above; `router.shards` is capped
// by `SHARDS_MAX`.

/// Smallest `limits.message_size_max`: a HELLO with its roles dict and a WELCOME with its
/// details take a few hundred bytes, so below this no session could open.
pub const MESSAGE_SIZE_FLOOR_BYTES: usize = 512;

/// Smallest `limits.pending_bytes_max`: one read chunk's worth of events queues this much at
/// once, so a lower cap would call a healthy subscriber slow after a single burst.
pub const PENDING_BYTES_FLOOR: usize = 64 * 1024;

/// Shortest `limits.write_deadline_ms`: a scheduling hiccup on a loaded host takes tens of
/// milliseconds, and must not make a healthy peer a slow consumer.
pub const WRITE_DEADLINE_FLOOR_MS: u64 = 100;

/// Longest `limits.write_deadline_ms` (10 minutes): past that the pending-bytes cap decides
/// alone, and a larger value is most likely a unit mistake (seconds meant).
pub const WRITE_DEADLINE_CEILING_MS: u64 = 600_000;

/// Shortest non-zero `limits.ping_interval_ms`: more often wakes every idle connection
/// for no faster reaping than the ping timeout gives.
pub const PING_INTERVAL_FLOOR_MS: u64 = 100;

/// Longest `limits.ping_interval_ms` (1 hour): a half-open connection kept longer holds
/// stale registrations; to turn pings off the file says 0 instead.
pub const PING_INTERVAL_CEILING_MS: u64 = 3_600_000;

/// Shortest `limits.ping_timeout_ms`: a round trip on a busy host or a WAN link can take
/// tens of milliseconds, and must not reap a live peer.
pub const PING_TIMEOUT_FLOOR_MS: u64 = 100;

/// Longest `limits.ping_timeout_ms` (10 minutes): a dead peer keeps its registrations that
/// long, so more is not liveness checking any more.
pub const PING_TIMEOUT_CEILING_MS: u64 = 600_000;

/// Longest `router.spin_before_park_us` (1 second): spinning trades idle CPU for wake-up
/// latency; a second already burns a core between messages, longer never parks at all.
pub const SPIN_BEFORE_PARK_CEILING_US: u64 = 1_000_000;

/// Default period of the per-shard summary log line (`metrics.summary_interval_s`): often
/// enough to see a trend in the log, rare enough not to flood it.
pub const SUMMARY_INTERVAL_S: u64 = 10;

/// Longest `metrics.summary_interval_s` (a day); rarer than that is "off", which is 0.
pub const SUMMARY_INTERVAL_CEILING_S: u64 = 86_400;

const _: () = assert!(MESSAGE_SIZE_FLOOR_BYTES <= MESSAGE_SIZE_MAX_BYTES);
const _: () = assert!(MESSAGE_SIZE_MAX_BYTES <= MESSAGE_SIZE_CEILING_BYTES);
const _: () = assert!(PENDING_BYTES_FLOOR <= PENDING_BYTES_MAX && PENDING_BYTES_MAX <= PENDING_BYTES_CEILING);
const _: () = assert!(WRITE_DEADLINE_FLOOR_MS <= WRITE_DEADLINE_MS && WRITE_DEADLINE_MS <= WRITE_DEADLINE_CEILING_MS);
const _: () = assert!(PING_INTERVAL_FLOOR_MS <= PING_INTERVAL_MS && PING_INTERVAL_MS <= PING_INTERVAL_CEILING_MS);
const _: () = assert!(PING_TIMEOUT_FLOOR_MS <= PING_TIMEOUT_MS && PING_TIMEOUT_MS <= PING_TIMEOUT_CEILING_MS);
const _: () = assert!(SUMMARY_INTERVAL_S <= SUMMARY_INTERVAL_CEILING_S);

// ---- hostile peers and long runs (the runtime's admission and budgets) ----
//
// Each cap here is counted in `/metrics` when hit (`src/shard/guard.rs` renders them) and
// logged at most once per `GUARD_LOG_INTERVAL_MS` per kind. The `[limits]` keys that
// override the defaults are checked against the floors and ceilings next to them.

/// Default `limits.max_connections`: connections open on the whole router (TCP and Unix,
/// including ones still in their handshake), enforced router-wide with one shared counter
/// (taken once per accept and once per close, never per message). 100,000 idle sessions
/// hold about 1 GiB of buffers and queues; past it a reconnect storm or a flood is refused
/// cleanly (RawSocket error 4, HTTP 503) instead of running the process out of memory or
/// file descriptors. Raise it with `LimitNOFILE` (tuning/README.md).
pub const MAX_CONNECTIONS: usize = 100_000;

/// Ceiling for `limits.max_connections`: every shard holds at most `SHARD_SESSIONS_MAX`.
pub const MAX_CONNECTIONS_CEILING: usize = SHARDS_MAX * SHARD_SESSIONS_MAX;

/// Default `limits.max_connections_per_ip`: 0 = no per-address cap. Clients behind one NAT
/// and load generators share an address, so a default cap would refuse legitimate
/// deployments; an Internet-facing router should set one (an IPv6 peer counts per /64,
/// since one host usually owns a whole /64).
pub const MAX_CONNECTIONS_PER_IP: usize = 0;

/// Default `limits.max_handshakes_per_shard`: connections on one shard that have not yet
/// established a session (transport handshake, then HELLO until WELCOME). A handshake takes
/// one or two round trips, so 1024 in flight still admits thousands of clients per second
/// per shard in a reconnect storm, while a peer opening sockets and saying nothing holds
/// at most this many places (each for at most `HANDSHAKE_TIMEOUT_MS`). With
/// `PRE_SESSION_BYTES_MAX` it bounds pre-session buffers to 64 MiB per shard.
pub const MAX_HANDSHAKES_PER_SHARD: usize = 1_024;

/// Ceiling for `limits.max_handshakes_per_shard`.
pub const MAX_HANDSHAKES_PER_SHARD_CEILING: usize = 1 << 20;

/// Default `limits.pre_session_bytes_max`: bytes a connection may send between its
/// transport handshake and its WELCOME (HELLO, anything pipelined after it, pings). A HELLO
/// is a few hundred bytes, a few KiB with auth extras. Without it a peer could trickle a
/// 16 MiB frame before ever saying HELLO. Outcome: the connection is closed (WebSocket
/// close 1009), counted.
pub const PRE_SESSION_BYTES_MAX: usize = 64 * 1024;

/// Smallest `limits.pre_session_bytes_max`: a HELLO with its roles and auth details must fit.
pub const PRE_SESSION_BYTES_FLOOR: usize = 4 * 1024;

/// Largest `limits.pre_session_bytes_max`: a budget above the largest message is no budget.
pub const PRE_SESSION_BYTES_CEILING: usize = MESSAGE_SIZE_CEILING_BYTES;

/// Refused connections answered at once per shard (RawSocket error 4, HTTP 503): each reads
/// at most a request head within `REFUSAL_READ_MS`. Past this many, a refused connection is
/// closed at accept, so a flood cannot turn the courtesy into a cost.
pub const REFUSALS_IN_FLIGHT_MAX: usize = 64;

/// How long a refused connection has to send its RawSocket handshake or HTTP request head
/// before it is closed without an answer.
pub const REFUSAL_READ_MS: u64 = 1_000;

/// `/metrics` requests gathering at once on one shard. Each asks every shard for a snapshot
/// over the mesh; a scraper or two (and a person) need a few. Outcome: HTTP 503, counted.
pub const METRICS_REQUESTS_IN_FLIGHT_MAX: usize = 4;

/// Connections open at once on the metrics listener (`[metrics] address`, served by shard 0).
/// Outcome: closed at accept, counted.
pub const METRICS_CONNECTIONS_MAX: usize = 64;

/// Largest PING payload the router echoes in a PONG, on both transports: the WebSocket RFC's
/// control-frame limit. A liveness ping needs a few bytes (ours carry 8); a RawSocket PING
/// may legally be 16 MiB, and echoing that would double it in memory outside every budget.
/// Outcome: the PING is not answered, counted (the connection stays open).
pub const PING_ANSWER_PAYLOAD_MAX_BYTES: usize = WS_CONTROL_PAYLOAD_MAX_BYTES;

/// Most bytes of control frames (PONGs, our PINGs) waiting to be written on one connection;
/// they also count against its `pending_bytes_max` with the queued frames. A peer flooding
/// PINGs faster than it reads gets the excess unanswered (counted) instead of growing the
/// buffer.
pub const CONTROL_PENDING_MAX_BYTES: usize = 16 * 1024;

/// At most one log line per kind of hit cap (refusal, budget, accept error, ping) per shard
/// this often; the line says how many were not logged since.
pub const GUARD_LOG_INTERVAL_MS: u64 = 10_000;

/// Listen backlog of each shard's TCP listener (the kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 1_024;

/// File descriptors the process keeps for itself besides connections: stdio, logs, the
/// listeners (`FD_RESERVE_BASE`), and each shard's io_uring rings and eventfd
/// (`FD_RESERVE_PER_SHARD`); the same budget as `tuning/check.sh`'s floor. With
/// `max_connections` plus this above RLIMIT_NOFILE, accept fails with EMFILE before the cap
/// is reached: the router warns at start, and keeps serving (accept then pauses
/// `ACCEPT_RETRY_MS` per failure, counted).
pub const FD_RESERVE_BASE: usize = 64;

/// See `FD_RESERVE_BASE`.
pub const FD_RESERVE_PER_SHARD: usize = 16;

// Authentication credentials (src/proto/auth/, `shardbar credential`). The router never
// runs a KDF at login (a salted WAMP-CRA key is derived once at config load, a SCRAM
// credential is stored derived), so these bound config values and the credential tool, not
// per-login work.

/// Default PBKDF2 iterations of a salted WAMP-CRA secret: Autobahn's and Crossbar's default.
pub const WAMPCRA_ITERATIONS_DEFAULT: u32 = 1_000;

/// Most PBKDF2 iterations of a salted WAMP-CRA secret. Each principal costs this many HMACs
/// at config load (about 0.5 s at the ceiling) and the client as many per login. Outcome:
/// the config or the credential tool refuses the value.
pub const WAMPCRA_ITERATIONS_CEILING: u32 = 1_000_000;

/// Default length of a salted WAMP-CRA key before base64: Autobahn's and Crossbar's default.
pub const WAMPCRA_KEYLEN_DEFAULT_BYTES: usize = 32;

/// Longest salted WAMP-CRA key: the HMAC key is its base64 text, and keys past the SHA-256
/// block are hashed first, so more adds nothing. Outcome: the config or the tool refuses it.
pub const WAMPCRA_KEYLEN_CEILING_BYTES: usize = 256;

/// Random characters in a secret `shardbar credential wampcra` generates (about 190 bits
/// from 62 letters and digits; Autobahn's `generate_wcs` makes 14).
pub const WAMPCRA_SECRET_GENERATED_CHARS: usize = 32;

/// Random bytes in a salt the credential tool generates (WAMP-CRA, as hex text; SCRAM, as
/// bytes): 128 bits, as the SCRAM spec and Autobahn use.
pub const CREDENTIAL_SALT_GENERATED_BYTES: usize = 16;

/// Shortest SCRAM salt: Argon2's minimum, and RFC 2898's 64 bits for PBKDF2. Outcome: the
/// config or the credential tool refuses it.
pub const SCRAM_SALT_MIN_BYTES: usize = 8;

/// Default Argon2id time cost: Autobahn's `derive_scram_credential`.
pub const SCRAM_ARGON2_ITERATIONS_DEFAULT: u32 = 4_096;

/// Default Argon2id memory cost in KiB: Autobahn's `derive_scram_credential`.
pub const SCRAM_ARGON2_MEMORY_DEFAULT_KIB: u32 = 512;

/// Default PBKDF2 iterations of a SCRAM credential: RFC 7677 asks for at least 4096 and
/// "significantly higher" where clients can afford it; clients pay this at every login.
pub const SCRAM_PBKDF2_ITERATIONS_DEFAULT: u32 = 100_000;

/// Most SCRAM KDF iterations (either KDF). Clients run the KDF at every login; far past this
/// is a typo, not a policy. Outcome: the config or the credential tool refuses it.
pub const SCRAM_ITERATIONS_CEILING: u32 = 10_000_000;

/// Least Argon2id memory in KiB: Argon2's minimum at parallelism 1 (8 blocks of 1 KiB).
pub const SCRAM_ARGON2_MEMORY_MIN_KIB: u32 = 8;

/// Most Argon2id memory in KiB (4 GiB): every client would need that much to log in.
/// Outcome: the config or the credential tool refuses it.
pub const SCRAM_ARGON2_MEMORY_CEILING_KIB: u32 = 4 * 1024 * 1024;

const _: () = assert!(MAX_CONNECTIONS <= MAX_CONNECTIONS_CEILING);
const _: () = assert!(MAX_HANDSHAKES_PER_SHARD <= MAX_HANDSHAKES_PER_SHARD_CEILING);
const _: () = assert!(PRE_SESSION_BYTES_FLOOR <= PRE_SESSION_BYTES_MAX);
const _: () = assert!(PRE_SESSION_BYTES_MAX <= PRE_SESSION_BYTES_CEILING);
const _: () = assert!(PING_ANSWER_PAYLOAD_MAX_BYTES + 14 <= CONTROL_PENDING_MAX_BYTES);
const _: () = assert!(CONTROL_PENDING_MAX_BYTES <= PENDING_BYTES_FLOOR);
const _: () = assert!(WAMPCRA_ITERATIONS_DEFAULT <= WAMPCRA_ITERATIONS_CEILING);
const _: () = assert!(WAMPCRA_KEYLEN_DEFAULT_BYTES <= WAMPCRA_KEYLEN_CEILING_BYTES);
const _: () = assert!(CREDENTIAL_SALT_GENERATED_BYTES >= SCRAM_SALT_MIN_BYTES);
const _: () = assert!(SCRAM_ARGON2_ITERATIONS_DEFAULT <= SCRAM_ITERATIONS_CEILING);
const _: () = assert!(SCRAM_PBKDF2_ITERATIONS_DEFAULT <= SCRAM_ITERATIONS_CEILING);
const _: () = assert!(SCRAM_ARGON2_MEMORY_MIN_KIB <= SCRAM_ARGON2_MEMORY_DEFAULT_KIB);
const _: () = assert!(SCRAM_ARGON2_MEMORY_DEFAULT_KIB <= SCRAM_ARGON2_MEMORY_CEILING_KIB);
