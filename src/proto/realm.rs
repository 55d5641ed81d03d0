//! Realms: routing namespaces, and the router-wide settings the sans-IO core runs with.
//!
//! [`RouterConfig`] is the validated, plain-data form of the config file that the core
//! needs (the TOML parsing lives in `crate::config`). A [`Realm`] on a shard holds that
//! shard's part of the realm's broker and dealer state.

use std::sync::Arc;
use std::time::Duration;

use super::Map;
use super::auth::AuthConfig;
use super::authz::{Memo, Roles};

use super::broker::Broker;
use super::dealer::Dealer;
use super::pattern::UriIndex;
use super::stats::RealmStats;
use super::wire::uri::MatchPolicy;
use crate::limits;

/// What happens when a connection's queued bytes exceed `pending_bytes_max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Close the session with `shardbar.close.slow_consumer` (default, like NATS).
    Disconnect,
    /// Drop EVENTs that do not fit and count them; RPC traffic is never dropped.
    Drop,
}

impl SlowConsumerPolicy {
    pub fn parse(s: &str) -> Option<SlowConsumerPolicy> {
        match s {
            "disconnect" => Some(SlowConsumerPolicy::Disconnect),
            "drop" => Some(SlowConsumerPolicy::Drop),
            _ => None,
        }
    }
}

/// Per-realm settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RealmConfig {
    pub name: String,
    /// Enforce strict URIs (`[0-9a-z_]` components) instead of the loose default.
    pub strict_uri: bool,
    pub slow_consumer: SlowConsumerPolicy,
    /// Allow anonymous sessions (authrole `anonymous`).
    pub anonymous: bool,
    /// Roles and their permissions; None = no roles configured, everything allowed.
    pub roles: Option<Arc<Roles>>,
    /// How this realm reads `CALL.Options.timeout`, and how a timeout is answered.
    pub call_timeout_unit: CallTimeoutUnit,
    /// Timeout of calls that set none (or 0).
    pub call_timeout_default: Option<Duration>,
    /// Longest timeout a call may have (longer ones are cut to it).
    pub call_timeout_max: Option<Duration>,
    /// The meta API (`wamp.session.*`, `wamp.subscription.*`, `wamp.registration.*` and
    /// their events); default on.
    pub meta_api: bool,
    /// Topics whose publications are kept for `wamp.subscription.get_events`
    /// (`[[realm.history]]`).
    pub history: Vec<HistoryEntry>,
    /// Memory budget for the realm's routes, all replicas together
    /// (`limits::REALM_ROUTE_BYTES_MAX`; charged by `control`).
    pub route_bytes_max: u64,
}

/// One `[[realm.history]]` entry: publications matching (uri, policy) are kept, the newest
/// `limit` of them, on the owner shard of (realm, uri, policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub uri: Arc<str>,
    pub policy: MatchPolicy,
    pub limit: usize,
}

/// The unit of `CALL.Options.timeout` in a realm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallTimeoutUnit {
    /// The spec: milliseconds; expiry answers `wamp.error.timeout`.
    Millis,
    /// Crossbar's reading: seconds; expiry answers `wamp.error.canceled`.
    Seconds,
}

impl RealmConfig {
    /// The timeout call options ask for (`timeout`, in the realm's unit), after the realm's
    /// default and maximum; None = none.
    pub fn call_timeout(&self, requested: f64) -> Option<Duration> {
        let asked = match self.call_timeout_unit {
            CallTimeoutUnit::Millis => requested / 1000.0,
            CallTimeoutUnit::Seconds => requested,
        };
        let asked = (asked.is_finite() && asked > 0.0).then(|| Duration::from_secs_f64(asked.min(1e9)));
        match (asked.or(self.call_timeout_default), self.call_timeout_max) {
            (Some(t), Some(max)) => Some(t.min(max)),
            (None, Some(max)) => Some(max),
            (t, None) => t,
        }
    }

    /// A timeout as `INVOCATION.Details.timeout` says it (the realm's unit).
    pub fn timeout_value(&self, t: Duration) -> u64 {
        match self.call_timeout_unit {
            CallTimeoutUnit::Millis => t.as_millis() as u64,
            CallTimeoutUnit::Seconds => t.as_secs().max(1),
        }
    }
}

impl RealmConfig {
    pub fn new(name: impl Into<String>) -> RealmConfig {
        RealmConfig {
            name: name.into(),
            strict_uri: false,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            anonymous: true,
            roles: None,
            call_timeout_unit: CallTimeoutUnit::Millis,
            call_timeout_default: None,
            call_timeout_max: None,
            meta_api: true,
            history: Vec::new(),
            route_bytes_max: limits::REALM_ROUTE_BYTES_MAX,
        }
    }
}

/// When the router sends RawSocket PINGs (WebSocket pings are always sent: RFC 6455 makes
/// every client answer them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawSocketPing {
    /// Only to peers that showed they speak PING/PONG (they sent a PING). Half-open
    /// connections are still reaped by TCP keepalive. Default: some clients (Autobahn|Python
    /// asyncio) drop the connection when they receive a RawSocket PING.
    Auto,
    /// To every RawSocket peer; no answer within `ping_timeout_ms` closes the connection.
    Always,
    /// Never; TCP keepalive only.
    Never,
}

/// Connection deadlines the core enforces (`proto::liveness`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// Time from the transport handshake to an established session; then the connection
    /// is closed.
    pub hello_timeout: Duration,
    /// Idle time before a ping; None = liveness pings (and TCP keepalive) off.
    pub ping_interval: Option<Duration>,
    /// Time to wait for the pong (or any input) before the connection is reaped.
    pub ping_timeout: Duration,
    pub rawsocket_ping: RawSocketPing,
}

impl Default for Liveness {
    fn default() -> Liveness {
        Liveness {
            hello_timeout: Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS),
            ping_interval: Some(Duration::from_millis(limits::PING_INTERVAL_MS)),
            ping_timeout: Duration::from_millis(limits::PING_TIMEOUT_MS),
            rawsocket_ping: RawSocketPing::Auto,
        }
    }
}

/// Router-wide settings for the core.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterConfig {
    pub realms: Vec<RealmConfig>,
    /// Create a realm (with `realm_template`'s settings) when a HELLO names an unknown one.
    pub auto_create_realms: bool,
    pub realm_template: RealmConfig,
    /// Queued-bytes cap per connection (the slow-consumer threshold).
    pub pending_bytes_max: usize,
    /// Largest incoming message accepted.
    pub message_size_max: usize,
    pub liveness: Liveness,
    /// Who may connect, per listener (`ShardCore::reload_auth` replaces it on SIGHUP).
    pub auth: Arc<AuthConfig>,
}

impl Default for RouterConfig {
    /// shardbar's no-argument defaults: realm `realm1`, anonymous, every permission.
    fn default() -> RouterConfig {
        RouterConfig {
            realms: vec![RealmConfig::new("realm1")],
            auto_create_realms: false,
            realm_template: RealmConfig::new("*"),
            pending_bytes_max: limits::PENDING_BYTES_MAX,
            message_size_max: limits::MESSAGE_SIZE_MAX_BYTES,
            liveness: Liveness::default(),
            auth: Arc::new(AuthConfig::default()),
        }
    }
}

impl RouterConfig {
    /// Whether `name` is a configured realm (not one auto-created on demand).
    pub(crate) fn is_configured(&self, name: &str) -> bool {
        self.realms.iter().any(|r| r.name == name)
    }

    /// The settings for `name`, if it is configured or may be auto-created.
    pub fn realm(&self, name: &str) -> Option<RealmConfig> {
        if let Some(r) = self.realms.iter().find(|r| r.name == name) {
            return Some(r.clone());
        }
        self.auto_create_realms.then(|| RealmConfig { name: name.to_owned(), ..self.realm_template.clone() })
    }
}

/// One realm's state on one shard.
#[derive(Debug)]
pub(crate) struct Realm {
    pub name: Arc<str>,
    pub config: RealmConfig,
    pub broker: Broker,
    pub dealer: Dealer,
    /// Established sessions of this realm on this shard.
    pub sessions: usize,
    /// Route budget charged for the subscriptions and registrations this shard owns
    /// (`control::route_cost_bytes` each; at most `route_bytes_max / shards`).
    pub route_bytes: u64,
    pub stats: RealmStats,
    /// Static authorization decisions already made here (`authz::Memo`).
    pub authz_memo: Memo,
    /// The history entries by pattern (None: the realm keeps no history, and a PUBLISH
    /// pays one branch for it).
    pub history: Option<Box<UriIndex<HistoryEntry>>>,
    /// Listed in `Realms::touched`.
    touched: bool,
}

impl Realm {
    pub fn new(config: RealmConfig) -> Realm {
        let history = (!config.history.is_empty()).then(|| {
            let mut index = UriIndex::default();
            for e in &config.history {
                *index.entry_or_insert_with(&e.uri, e.policy, || e.clone()) = e.clone();
            }
            Box::new(index)
        });
        Realm {
            history,
            name: Arc::from(config.name.as_str()),
            config,
            broker: Broker::default(),
            dealer: Dealer::default(),
            sessions: 0,
            route_bytes: 0,
            stats: RealmStats::default(),
            authz_memo: Memo::default(),
            touched: false,
        }
    }

    /// Nothing on this shard refers to the realm: no session, no route, no owned entry.
    pub(crate) fn is_idle(&self) -> bool {
        self.sessions == 0 && self.broker.is_empty() && self.dealer.is_empty()
    }
}

/// The realms alive on one shard. A realm another shard created (auto-create) appears here
/// on first use with the same settings; an auto-created realm is freed again once nothing
/// on this shard refers to it (no session, no route, no owned entry), so `REALMS_MAX`
/// counts live realms, not names ever seen. (Its per-realm counters start again if it
/// comes back.)
#[derive(Debug)]
pub(crate) struct Realms {
    map: Map<Arc<str>, Realm>,
    router: Arc<RouterConfig>,
    /// Realms used since the last `release_idle` (may have become idle).
    touched: Vec<Arc<str>>,
}

impl Realms {
    pub fn new(router: Arc<RouterConfig>) -> Realms {
        Realms { map: Map::default(), router, touched: Vec::new() }
    }

    pub fn router(&self) -> &RouterConfig {
        &self.router
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Realm> {
        self.map.get_mut(name)
    }

    /// The realm named `name`, created with its configured (or template) settings if this
    /// shard has not seen it yet.
    pub(crate) fn get_or_create(&mut self, name: &Arc<str>) -> &mut Realm {
        let router = &self.router;
        let realm = self.map.entry(name.clone()).or_insert_with(|| {
            let cfg = router
                .realm(name)
                .unwrap_or_else(|| RealmConfig { name: name.to_string(), ..router.realm_template.clone() });
            Realm::new(cfg)
        });
        if !realm.touched {
            realm.touched = true;
            self.touched.push(name.clone());
        }
        realm
    }

    /// Free the auto-created realms that were used since the last call and are now idle.
    pub(crate) fn release_idle(&mut self) {
        for name in std::mem::take(&mut self.touched) {
            let Some(r) = self.map.get_mut(&name) else { continue };
            r.touched = false;
            if r.is_idle() && !self.router.is_configured(&name) {
                self.map.remove(&name);
            }
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &Realm> {
        self.map.values()
    }
}
