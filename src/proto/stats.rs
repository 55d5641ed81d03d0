//! Per-shard counters, their snapshots, and the Prometheus text rendering.
//!
//! Counters are plain integers owned by one shard's core — no atomics on the hot path.
//! `/metrics` asks every shard for a [`Snapshot`] over the mesh and renders them together,
//! labelled by shard (and realm where the counter belongs to one).

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use super::frame::Framing;
use super::wire::message::code_name;
use crate::limits;

pub use crate::limits::ERROR_URIS_MAX;

/// Upper bounds (µs) of the routing-latency histogram buckets.
pub(crate) const LATENCY_BOUNDS_US: [u64; 14] =
    [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000];

/// A fixed-bucket latency histogram (Prometheus style: cumulative on output).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyHistogram {
    /// Count per bucket; the last slot is +Inf.
    pub buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub sum_us: u64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn observe(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = LATENCY_BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }
}

/// Counters that belong to one realm on one shard.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RealmStats {
    pub sessions_opened: u64,
    pub publications: u64,
    pub events_delivered: u64,
    pub calls: u64,
    pub calls_ok: u64,
    pub calls_error: u64,
    /// SUBSCRIBE/REGISTER refused on this owner shard: the realm's route budget was full.
    pub route_budget_refused: u64,
    /// Requests denied by authorization, by (role, action); at most
    /// `limits::DENIAL_COUNTERS_MAX` keys, then `_other`.
    pub denied: std::collections::BTreeMap<(std::sync::Arc<str>, crate::proto::authz::Action), u64>,
}

/// Shard-wide counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub sessions_closed: u64,
    /// Messages received, by WAMP message code (0..=70; unknown/undecodable in slot 0).
    pub messages_in: Vec<u64>,
    /// Messages queued for sending, by code (EVENTs counted per receiver).
    pub messages_out: Vec<u64>,
    pub bytes_in: u64,
    pub bytes_out_queued: u64,
    pub publications: u64,
    pub events_delivered: u64,
    pub events_dropped_slow: u64,
    pub events_dropped_too_big: u64,
    /// EVENTs not delivered because the payload has no form in the subscriber's serializer
    /// (a MessagePack map with a boolean key for a JSON or CBOR subscriber): peer input, not
    /// a router failure.
    pub events_dropped_unencodable: u64,
    pub slow_consumer_disconnects: u64,
    /// Sessions ended through the meta API (`wamp.session.kill*`).
    pub sessions_killed: u64,
    /// Testaments accepted by `wamp.session.add_testament`.
    pub testaments_added: u64,
    /// Testaments published when their session ended.
    pub testaments_published: u64,
    /// `add_testament` calls refused (bad arguments, not authorized, no room).
    pub testaments_refused: u64,
    /// Testaments held by this shard's sessions now (a gauge).
    pub testaments_stored: u64,
    /// Their bytes (topic + payload; a gauge, bounded by `limits::SHARD_TESTAMENT_BYTES_MAX`).
    pub testament_bytes_stored: u64,
    pub protocol_violations: u64,
    /// Requests denied by authorization (all realms).
    pub authorization_denials: u64,
    /// Calls that reached their timeout.
    pub call_timeouts: u64,
    /// YIELDs and ERRORs from callees whose caller had canceled or timed out.
    pub late_answers_dropped: u64,
    /// Connections closed for not establishing a session in time.
    pub hello_timeouts: u64,
    /// Connections reaped for not answering a liveness ping.
    pub ping_timeouts: u64,
    pub calls: u64,
    pub calls_rerouted: u64,
    pub invocations: u64,
    /// ERROR and ABORT URIs sent to clients.
    pub errors_by_uri: HashMap<String, u64>,
    pub mesh_batches_out: u64,
    pub mesh_messages_out: u64,
    pub mesh_batches_in: u64,
    pub mesh_messages_in: u64,
    /// Times a mesh channel was full and a batch had to wait (counted by the runtime).
    pub mesh_channel_full: u64,
    pub encode_failures: u64,
    /// EVENT payloads encoded into frames (copied verbatim or transcoded): once per
    /// serializer per publication on each shard with subscribers, however many
    /// subscriptions match; plus one per retained EVENT sent.
    pub event_payload_encodes: u64,
    /// Retained events kept (`PUBLISH.Options.retain`, on the owner shard).
    pub retained_stored: u64,
    /// Retained events not kept: a `limits::RETAINED_*` bound was reached.
    pub retained_refused: u64,
    /// Retained EVENTs sent to subscribers that asked (`get_retained`).
    pub retained_delivered: u64,
    /// Gauge: bytes of retained events held.
    pub retained_bytes: u64,
    /// Publications kept in an event history ring.
    pub history_stored: u64,
    /// History events evicted (ring full, or to make room in the shard's bytes).
    pub history_evicted: u64,
    /// Publications not kept in history: the shard's history bytes were full.
    pub history_dropped_bytes: u64,
    /// Gauge: bytes of history events held.
    pub history_bytes: u64,
    /// Time from a PUBLISH/CALL being read to its EVENTs/INVOCATION being queued.
    pub routing_latency: LatencyHistogram,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            connections_opened: 0,
            connections_closed: 0,
            sessions_closed: 0,
            messages_in: vec![0; 71],
            messages_out: vec![0; 71],
            bytes_in: 0,
            bytes_out_queued: 0,
            publications: 0,
            events_delivered: 0,
            events_dropped_slow: 0,
            events_dropped_too_big: 0,
            events_dropped_unencodable: 0,
            slow_consumer_disconnects: 0,
            sessions_killed: 0,
            testaments_added: 0,
            testaments_published: 0,
            testaments_refused: 0,
            testaments_stored: 0,
            testament_bytes_stored: 0,
            protocol_violations: 0,
            authorization_denials: 0,
            call_timeouts: 0,
            late_answers_dropped: 0,
            hello_timeouts: 0,
            ping_timeouts: 0,
            calls: 0,
            calls_rerouted: 0,
            invocations: 0,
            errors_by_uri: HashMap::new(),
            mesh_batches_out: 0,
            mesh_messages_out: 0,
            mesh_batches_in: 0,
            mesh_messages_in: 0,
            mesh_channel_full: 0,
            encode_failures: 0,
            event_payload_encodes: 0,
            retained_stored: 0,
            retained_refused: 0,
            retained_delivered: 0,
            retained_bytes: 0,
            history_stored: 0,
            history_evicted: 0,
            history_dropped_bytes: 0,
            history_bytes: 0,
            routing_latency: LatencyHistogram::default(),
        }
    }
}

impl Stats {
    /// The `messages_*` slot of a message code.
    pub fn slot(code: u64) -> usize {
        if code <= 70 { code as usize } else { 0 }
    }

    pub(crate) fn count_error_uri(&mut self, uri: &str) {
        if let Some(n) = self.errors_by_uri.get_mut(uri) {
            *n += 1;
        } else if self.errors_by_uri.len() < ERROR_URIS_MAX && uri.len() <= limits::ERROR_URI_COUNTED_MAX_BYTES {
            self.errors_by_uri.insert(uri.to_owned(), 1);
        } else {
            *self.errors_by_uri.entry("_other".to_owned()).or_default() += 1;
        }
    }
}

/// Gauges of one realm on one shard at snapshot time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RealmSnapshot {
    pub name: String,
    pub stats: RealmStats,
    pub sessions: u64,
    pub subscriptions: u64,
    pub registrations: u64,
    /// Route budget charged for the routes this shard owns (`Realm::route_bytes`).
    pub route_bytes: u64,
}

/// Everything one shard reports for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub shard: usize,
    pub stats: Stats,
    pub realms: Vec<RealmSnapshot>,
    /// Open connections by framing (`Framing::index`).
    pub connections: [u64; Framing::COUNT],
    /// Bytes queued for writing over all connections.
    pub pending_out_bytes: u64,
    /// Mesh messages waiting in the outbox.
    pub mesh_outbox: u64,
    /// Logins by (listener, method): [succeeded, refused].
    pub auth: AuthCounts,
    /// Connections between HELLO and WELCOME.
    pub auth_pending: u64,
    /// Dynamic authorizer decisions cached for sessions.
    pub authz_cached: u64,
    /// Requests waiting for a dynamic authorizer.
    pub authz_pending: u64,
}

/// Login counters by (listener index, method): [succeeded, refused]. Bounded by listeners
/// × methods.
pub type AuthCounts = std::collections::BTreeMap<(u16, crate::proto::auth::AuthMethod), [u64; 2]>;

const FRAMINGS: [(&str, &str); Framing::COUNT] = [
    ("websocket", "json"),
    ("websocket", "msgpack"),
    ("websocket", "cbor"),
    ("rawsocket", "json"),
    ("rawsocket", "msgpack"),
    ("rawsocket", "cbor"),
];

/// Render shard snapshots in the Prometheus text exposition format (version 0.0.4).
///
/// Longer than the function-length limit on purpose: it is the table of metric families,
/// one line (or macro call) each, in the order `/metrics` shows them; splitting it would
/// scatter that table (listed in `tests/tidy.rs`).
pub(crate) fn render_prometheus(snaps: &[Snapshot]) -> String {
    let mut o = String::with_capacity(16 * 1024);
    macro_rules! shard_counter {
        ($name:literal, $help:literal, $field:ident) => {
            family(&mut o, $name, "counter", $help);
            for s in snaps {
                let _ = writeln!(o, "shardbar_{}{{shard=\"{}\"}} {}", $name, s.shard, s.stats.$field);
            }
        };
    }
    // One sample per (shard, realm); `$get` picks the value from a realm snapshot.
    macro_rules! realm_metric {
        ($kind:literal, $name:literal, $help:literal, $get:expr) => {
            family(&mut o, $name, $kind, $help);
            for s in snaps {
                for r in &s.realms {
                    let _ = writeln!(
                        o,
                        "shardbar_{}{{shard=\"{}\",realm=\"{}\"}} {}",
                        $name,
                        s.shard,
                        escape(&r.name),
                        ($get)(r)
                    );
                }
            }
        };
    }

    family(&mut o, "connections", "gauge", "Open connections, by transport and serializer.");
    for s in snaps {
        for (i, (t, ser)) in FRAMINGS.iter().enumerate() {
            let _ = writeln!(
                o,
                "shardbar_connections{{shard=\"{}\",transport=\"{t}\",serializer=\"{ser}\"}} {}",
                s.shard, s.connections[i]
            );
        }
    }
    shard_counter!("connections_opened_total", "Connections opened (transport handshake done).", connections_opened);
    shard_counter!("connections_closed_total", "Connections closed.", connections_closed);
    realm_metric!("gauge", "sessions", "Established sessions.", |r: &RealmSnapshot| r.sessions);
    realm_metric!("counter", "sessions_opened_total", "Sessions established.", |r: &RealmSnapshot| r
        .stats
        .sessions_opened);
    shard_counter!("sessions_closed_total", "Sessions ended.", sessions_closed);

    for (name, help, pick) in [
        ("messages_in_total", "WAMP messages received, by type.", 0),
        ("messages_out_total", "WAMP messages queued for sending, by type (EVENTs per receiver).", 1),
    ] {
        family(&mut o, name, "counter", help);
        for s in snaps {
            let counts = if pick == 0 { &s.stats.messages_in } else { &s.stats.messages_out };
            for (code, &n) in counts.iter().enumerate() {
                if n > 0 {
                    let t = if code == 0 { "INVALID" } else { code_name(code as u64) };
                    let _ = writeln!(o, "shardbar_{name}{{shard=\"{}\",type=\"{t}\"}} {n}", s.shard);
                }
            }
        }
    }
    shard_counter!("bytes_in_total", "WAMP message bytes received (transport framing excluded).", bytes_in);
    shard_counter!("bytes_out_total", "Bytes queued for sending (framing included).", bytes_out_queued);
    realm_metric!("counter", "publications_total", "PUBLISH messages routed.", |r: &RealmSnapshot| r
        .stats
        .publications);
    realm_metric!("counter", "events_delivered_total", "EVENTs queued to subscribers.", |r: &RealmSnapshot| r
        .stats
        .events_delivered);
    shard_counter!(
        "events_dropped_slow_consumer_total",
        "EVENTs dropped for slow consumers (realm policy drop).",
        events_dropped_slow
    );
    shard_counter!(
        "events_dropped_too_big_total",
        "Messages dropped because the peer's RawSocket limit is smaller.",
        events_dropped_too_big
    );
    shard_counter!(
        "events_dropped_unencodable_total",
        "EVENTs not delivered because their payload has no form in the subscriber's serializer.",
        events_dropped_unencodable
    );
    shard_counter!("slow_consumer_disconnects_total", "Sessions closed as slow consumers.", slow_consumer_disconnects);
    shard_counter!("sessions_killed_total", "Sessions ended by wamp.session.kill*.", sessions_killed);
    render_testaments(&mut o, snaps);
    shard_counter!("protocol_violations_total", "Sessions aborted for protocol violations.", protocol_violations);
    shard_counter!("hello_timeouts_total", "Connections closed without a session in time.", hello_timeouts);
    shard_counter!("ping_timeouts_total", "Connections reaped for not answering a liveness ping.", ping_timeouts);
    realm_metric!("counter", "calls_total", "CALLs received from callers on this shard.", |r: &RealmSnapshot| r
        .stats
        .calls);
    realm_metric!("counter", "calls_ok_total", "CALLs answered with a final RESULT.", |r: &RealmSnapshot| r
        .stats
        .calls_ok);
    realm_metric!("counter", "calls_error_total", "CALLs answered with an ERROR.", |r: &RealmSnapshot| r
        .stats
        .calls_error);
    shard_counter!("calls_rerouted_total", "CALLs re-routed to another callee.", calls_rerouted);
    shard_counter!("invocations_total", "INVOCATIONs sent to callees on this shard.", invocations);
    shard_counter!("call_timeouts_total", "CALLs answered with a timeout.", call_timeouts);
    shard_counter!(
        "late_answers_dropped_total",
        "Callee answers dropped: the caller had canceled or timed out.",
        late_answers_dropped
    );
    family(&mut o, "errors_total", "counter", "ERROR and ABORT messages sent, by URI.");
    for s in snaps {
        let mut uris: Vec<_> = s.stats.errors_by_uri.iter().collect();
        uris.sort();
        for (uri, n) in uris {
            let _ = writeln!(o, "shardbar_errors_total{{shard=\"{}\",uri=\"{}\"}} {n}", s.shard, escape(uri));
        }
    }
    family(&mut o, "pending_out_bytes", "gauge", "Bytes queued for writing, all connections.");
    for s in snaps {
        let _ = writeln!(o, "shardbar_pending_out_bytes{{shard=\"{}\"}} {}", s.shard, s.pending_out_bytes);
    }
    realm_metric!("gauge", "subscriptions", "Subscriptions in the shard's routing replica.", |r: &RealmSnapshot| r
        .subscriptions);
    realm_metric!("gauge", "registrations", "Registrations in the shard's routing replica.", |r: &RealmSnapshot| r
        .registrations);
    realm_metric!(
        "gauge",
        "route_budget_bytes",
        "Route budget charged for the routes this shard owns (URI + overhead, times shards).",
        |r: &RealmSnapshot| r.route_bytes
    );
    realm_metric!(
        "counter",
        "route_budget_refused_total",
        "SUBSCRIBE/REGISTER refused: the realm's route budget (route_bytes_max) was full.",
        |r: &RealmSnapshot| r.stats.route_budget_refused
    );
    shard_counter!("mesh_batches_sent_total", "Batches sent to other shards.", mesh_batches_out);
    shard_counter!(
        "mesh_messages_sent_total",
        "Messages sent to other shards (batch size = messages/batches).",
        mesh_messages_out
    );
    shard_counter!("mesh_batches_received_total", "Batches received from other shards.", mesh_batches_in);
    shard_counter!("mesh_messages_received_total", "Messages received from other shards.", mesh_messages_in);
    shard_counter!("mesh_channel_full_total", "Times a mesh channel was full and a batch waited.", mesh_channel_full);
    family(&mut o, "mesh_outbox_messages", "gauge", "Mesh messages waiting to be sent.");
    for s in snaps {
        let _ = writeln!(o, "shardbar_mesh_outbox_messages{{shard=\"{}\"}} {}", s.shard, s.mesh_outbox);
    }
    shard_counter!("encode_failures_total", "Messages that could not be encoded (a bug if non-zero).", encode_failures);
    shard_counter!(
        "event_payload_encodes_total",
        "EVENT payloads encoded into frames (once per serializer per publication, not per subscription).",
        event_payload_encodes
    );
    render_store(&mut o, snaps);

    family(
        &mut o,
        "routing_latency_seconds",
        "histogram",
        "Time from a PUBLISH/CALL being read to its EVENTs/INVOCATION being queued.",
    );
    for s in snaps {
        let h = &s.stats.routing_latency;
        let mut cumulative = 0;
        for (i, b) in LATENCY_BOUNDS_US.iter().enumerate() {
            cumulative += h.buckets[i];
            let _ = writeln!(
                o,
                "shardbar_routing_latency_seconds_bucket{{shard=\"{}\",le=\"{}\"}} {cumulative}",
                s.shard,
                *b as f64 / 1e6
            );
        }
        cumulative += h.buckets[LATENCY_BOUNDS_US.len()];
        let _ =
            writeln!(o, "shardbar_routing_latency_seconds_bucket{{shard=\"{}\",le=\"+Inf\"}} {cumulative}", s.shard);
        let _ = writeln!(o, "shardbar_routing_latency_seconds_sum{{shard=\"{}\"}} {}", s.shard, h.sum_us as f64 / 1e6);
        let _ = writeln!(o, "shardbar_routing_latency_seconds_count{{shard=\"{}\"}} {}", s.shard, h.count);
    }
    render_auth(&mut o, snaps);
    render_denials(&mut o, snaps);
    o
}

/// The retained-event and history families (one sample per shard each).
fn render_store(o: &mut String, snaps: &[Snapshot]) {
    type Family = (&'static str, &'static str, &'static str, fn(&Stats) -> u64);
    let families: [Family; 8] = [
        ("retained_stored_total", "counter", "Retained events kept (owner shard).", |s| s.retained_stored),
        ("retained_refused_total", "counter", "Retained events not kept: a retained-store bound was reached.", |s| {
            s.retained_refused
        }),
        ("retained_delivered_total", "counter", "Retained EVENTs sent on SUBSCRIBE with get_retained.", |s| {
            s.retained_delivered
        }),
        ("retained_bytes", "gauge", "Bytes of retained events held.", |s| s.retained_bytes),
        ("history_stored_total", "counter", "Publications kept in event history.", |s| s.history_stored),
        ("history_evicted_total", "counter", "History events evicted (ring full or shard bytes).", |s| {
            s.history_evicted
        }),
        ("history_dropped_bytes_total", "counter", "Publications not kept in history: shard bytes full.", |s| {
            s.history_dropped_bytes
        }),
        ("history_bytes", "gauge", "Bytes of history events held.", |s| s.history_bytes),
    ];
    for (name, kind, help, get) in families {
        family(o, name, kind, help);
        for s in snaps {
            let _ = writeln!(o, "shardbar_{name}{{shard=\"{}\"}} {}", s.shard, get(&s.stats));
        }
    }
}

/// Authorization denials per shard, realm, role and action.
fn render_denials(o: &mut String, snaps: &[Snapshot]) {
    family(o, "authorization_denied_total", "counter", "Requests denied by authorization, by realm, role and action.");
    for s in snaps {
        for r in &s.realms {
            for ((role, action), n) in &r.stats.denied {
                let _ = writeln!(
                    o,
                    "shardbar_authorization_denied_total{{shard=\"{}\",realm=\"{}\",role=\"{}\",action=\"{}\"}} {n}",
                    s.shard,
                    escape(&r.name),
                    escape(role),
                    action.name()
                );
            }
        }
    }
    family(o, "authorizer_cached_decisions", "gauge", "Dynamic authorizer decisions cached for sessions.");
    for s in snaps {
        let _ = writeln!(o, "shardbar_authorizer_cached_decisions{{shard=\"{}\"}} {}", s.shard, s.authz_cached);
    }
    family(o, "authorizer_pending", "gauge", "Requests waiting for a dynamic authorizer.");
    for s in snaps {
        let _ = writeln!(o, "shardbar_authorizer_pending{{shard=\"{}\"}} {}", s.shard, s.authz_pending);
    }
}

/// The testament families: added, published when their session ended, refused, held now.
fn render_testaments(o: &mut String, snaps: &[Snapshot]) {
    type Pick = fn(&Stats) -> u64;
    let rows: [(&str, &str, &str, Pick); 5] = [
        ("testaments_added_total", "counter", "Testaments added (wamp.session.add_testament).", |s| s.testaments_added),
        ("testaments_published_total", "counter", "Testaments published when their session ended.", |s| {
            s.testaments_published
        }),
        ("testaments_refused_total", "counter", "wamp.session.add_testament calls refused.", |s| s.testaments_refused),
        ("testaments_stored", "gauge", "Testaments held by sessions.", |s| s.testaments_stored),
        ("testament_bytes_stored", "gauge", "Bytes of the testaments held (topic and payload).", |s| {
            s.testament_bytes_stored
        }),
    ];
    for (name, kind, help, get) in rows {
        family(o, name, kind, help);
        for s in snaps {
            let _ = writeln!(o, "shardbar_{name}{{shard=\"{}\"}} {}", s.shard, get(&s.stats));
        }
    }
}

/// The login families: outcomes per listener and method, logins in progress.
fn render_auth(o: &mut String, snaps: &[Snapshot]) {
    family(o, "auth_total", "counter", "Logins by listener (index in the config), method and result.");
    for s in snaps {
        for ((listener, method), [ok, refused]) in &s.auth {
            for (result, n) in [("success", ok), ("failure", refused)] {
                let _ = writeln!(
                    o,
                    "shardbar_auth_total{{shard=\"{}\",listener=\"{listener}\",method=\"{}\",result=\"{result}\"}} {n}",
                    s.shard,
                    method.name()
                );
            }
        }
    }
    family(o, "auth_pending", "gauge", "Connections between HELLO and WELCOME (challenge or authenticator).");
    for s in snaps {
        let _ = writeln!(o, "shardbar_auth_pending{{shard=\"{}\"}} {}", s.shard, s.auth_pending);
    }
}

/// A metric family's HELP and TYPE lines.
fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP shardbar_{name} {help}");
    let _ = writeln!(o, "# TYPE shardbar_{name} {kind}");
}

/// Escape a label value (backslash, quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_sum() {
        let mut h = LatencyHistogram::default();
        h.observe(Duration::from_micros(3));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(5));
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[7], 1, "700 µs falls in the ≤1 ms bucket");
        assert_eq!(h.buckets[LATENCY_BOUNDS_US.len()], 1);
        assert_eq!(h.count, 3);
        assert_eq!(h.sum_us, 5_000_703);
    }

    #[test]
    fn error_uris_are_bounded() {
        let mut s = Stats::default();
        for i in 0..ERROR_URIS_MAX + 10 {
            s.count_error_uri(&format!("app.error.e{i}"));
        }
        assert_eq!(s.errors_by_uri.len(), ERROR_URIS_MAX + 1);
        assert_eq!(s.errors_by_uri["_other"], 10);
        // Memory too: a long URI is never kept as a key.
        let mut s = Stats::default();
        s.count_error_uri(&"a".repeat(limits::ERROR_URI_COUNTED_MAX_BYTES + 1));
        assert_eq!(s.errors_by_uri.len(), 1);
        assert_eq!(s.errors_by_uri["_other"], 1);
    }

    #[test]
    fn renders_labelled_families() {
        let mut a = Snapshot { shard: 0, ..Default::default() };
        a.stats.messages_in[16] = 5;
        a.stats.count_error_uri("wamp.error.no_such_procedure");
        a.realms.push(RealmSnapshot { name: "realm1".into(), sessions: 2, ..Default::default() });
        a.connections[0] = 2;
        let b = Snapshot { shard: 1, ..Default::default() };
        let text = render_prometheus(&[a, b]);
        assert!(text.contains("shardbar_messages_in_total{shard=\"0\",type=\"PUBLISH\"} 5\n"));
        assert!(text.contains("shardbar_sessions{shard=\"0\",realm=\"realm1\"} 2\n"));
        assert!(text.contains("shardbar_connections{shard=\"0\",transport=\"websocket\",serializer=\"json\"} 2\n"));
        assert!(text.contains("shardbar_errors_total{shard=\"0\",uri=\"wamp.error.no_such_procedure\"} 1\n"));
        assert!(text.contains("shardbar_routing_latency_seconds_bucket{shard=\"1\",le=\"+Inf\"} 0\n"));
        // Every sample line belongs to a family declared with # TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {base} ")) || text.contains(&format!("# TYPE {name} ")), "{line}");
        }
    }
}
