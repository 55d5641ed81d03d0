//! Live reload on SIGHUP: read the config file again (with the flags the router was started
//! with), and if it is valid and its certificates load, hand the result to every shard.
//!
//! What changes live: each listener's `[listener.tls]` (certificate, key, client CA,
//! `allow_plaintext`), for the connections accepted afterwards, and its `[listener.auth]`
//! (methods, static principals, authenticators), for the logins that start afterwards; open
//! connections keep the TLS session they have and established sessions stay. Listeners are matched by address, since they are bound at start.
//! Everything else (shard count, listener addresses, serializers, limits, metrics, realms)
//! needs a restart, and a reload that changes it says so in the log. A file that does not
//! validate, or a certificate that does not load, is logged with the file and key, and the
//! running settings stay.
//!
//! The signal thread loads ([`reload`]) and publishes into the [`Slot`]; each shard's loop
//! (`lifecycle.rs`) polls the slot's generation and applies what changed in [`apply`]. This
//! file serves no connection and touches no socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::state::Shard;
use super::tls::{self, ListenerTls};
use crate::config::{Config, ConfigError, RunFlags};
use crate::proto::auth::AuthConfig;

/// What the shards run with, as loaded at start or by the latest good reload.
pub(crate) struct Settings {
    /// The config these settings came from (the start config, or the latest good reload).
    pub(crate) config: Arc<Config>,
    /// The TLS of each listener bound at start, by its index in the *start* config's
    /// listener list (which shards and `Origin.listener` index by; a reloaded config's
    /// list may differ: its listeners are matched to the bound ones by address,
    /// [`bound_listeners`]).
    pub(crate) listener_tls: Vec<Option<ListenerTls>>,
    /// Each bound listener's authentication (static principals, methods), indexed like
    /// `listener_tls`.
    pub(crate) auth: Arc<AuthConfig>,
}

impl Settings {
    /// The start settings: `config` and its listeners' TLS (an unreadable certificate is a
    /// config error naming the file and key).
    pub(crate) fn initial(config: Config) -> Result<Settings, ConfigError> {
        let listener_tls = tls::load(&config)?;
        let auth = config.router.auth.clone();
        Ok(Settings { config: Arc::new(config), listener_tls, auth })
    }
}

/// Where the signal thread leaves new settings for the shards: the settings and a
/// generation counter that each shard compares with the last one it applied.
pub(crate) struct Slot {
    /// The config the router started with: its listeners are the bound ones, and only
    /// what can change live may differ from it.
    started: Arc<Config>,
    current: Mutex<Arc<Settings>>,
    /// Bumped after each publish (after `current` is replaced).
    generation: AtomicU64,
}

impl Slot {
    pub(crate) fn new(settings: Settings) -> Slot {
        Slot {
            started: settings.config.clone(),
            current: Mutex::new(Arc::new(settings)),
            generation: AtomicU64::new(0),
        }
    }

    /// The config the router started with.
    pub(crate) fn started(&self) -> &Arc<Config> {
        &self.started
    }

    /// How many reloads were published; read it before [`Slot::current`], so that a publish
    /// in between is seen again on the next poll rather than missed.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn current(&self) -> Arc<Settings> {
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn publish(&self, settings: Settings) {
        *self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(settings);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// SIGHUP (on the signal thread): load the config as at start, and publish it to the shards
/// if it is valid and its certificates load; otherwise log why and keep what runs.
pub(crate) fn reload(flags: &RunFlags, slot: &Slot) {
    let current = slot.current();
    match load(flags, slot, &current) {
        Ok(settings) => {
            let ignored = ignored_changes(slot.started(), &settings.config);
            if !ignored.is_empty() {
                tracing::warn!(
                    ignored = %ignored.join(", "),
                    "config reload: these settings changed but apply only at restart; the running ones stay"
                );
            }
            let source = settings.config.source.clone();
            slot.publish(settings);
            tracing::info!(
                source,
                "config reloaded: listener TLS certificates and authentication (principals, methods) apply to \
                 new connections and logins"
            );
        }
        Err(e) => tracing::error!(error = %e, "config reload failed; the running config stays"),
    }
}

/// The new settings: the config, and the TLS of each bound listener from the new config's
/// listener at the same address (a bound listener the new config lacks keeps its TLS).
fn load(flags: &RunFlags, slot: &Slot, current: &Settings) -> Result<Settings, ConfigError> {
    let config = Config::load(flags)?;
    let loaded = tls::load(&config)?;
    let listener_tls = bound_listeners(slot.started(), &config)
        .zip(&current.listener_tls)
        .map(|(index, running)| match index {
            Some(j) => loaded[j].clone(),
            None => running.clone(),
        })
        .collect();
    let listeners = bound_listeners(slot.started(), &config)
        .zip(&current.auth.listeners)
        .map(|(index, running)| match index {
            Some(j) => config.router.auth.listeners[j].clone(),
            None => running.clone(),
        })
        .collect();
    let auth = Arc::new(AuthConfig { listeners });
    Ok(Settings { config: Arc::new(config), listener_tls, auth })
}

/// For each listener bound at start (in the start config's order), the index in `new`'s
/// listener list of the listener at the same address; None if `new` has none there.
pub(crate) fn bound_listeners<'a>(started: &'a Config, new: &'a Config) -> impl Iterator<Item = Option<usize>> + 'a {
    started.listeners.iter().map(|bound| new.listeners.iter().position(|l| l.addr == bound.addr))
}

/// The keys that differ between the running config and a reloaded one but cannot change
/// while running.
fn ignored_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let (o, n) = (&old.router, &new.router);
    let sections = [
        ("router.shards", old.shards != new.shards),
        ("router.spin_before_park_us", old.spin_before_park != new.spin_before_park),
        ("router.log", old.log != new.log),
        ("router.auto_create_realms", o.auto_create_realms != n.auto_create_realms),
        (
            "limits",
            old.limits != new.limits
                || (o.message_size_max, o.pending_bytes_max, &o.liveness)
                    != (n.message_size_max, n.pending_bytes_max, &n.liveness),
        ),
        (
            "metrics",
            (old.metrics_addr, old.http_endpoints_on_wamp_port, old.summary_interval)
                != (new.metrics_addr, new.http_endpoints_on_wamp_port, new.summary_interval),
        ),
        ("realm", o.realms != n.realms || o.realm_template != n.realm_template),
    ];
    out.extend(sections.iter().filter(|(_, changed)| *changed).map(|(key, _)| (*key).to_owned()));
    for (i, l) in old.listeners.iter().enumerate() {
        match new.listeners.iter().find(|n| n.addr == l.addr) {
            None => out.push(format!("listener[{i}] {} (removed)", l.addr)),
            Some(n) if (&n.serializers, n.websocket_testee) != (&l.serializers, l.websocket_testee) => {
                out.push(format!("listener[{i}] {} serializers/websocket_testee", l.addr))
            }
            Some(_) => {}
        }
    }
    for l in new.listeners.iter().filter(|n| !old.listeners.iter().any(|l| l.addr == n.addr)) {
        out.push(format!("listener {} (added)", l.addr));
    }
    out
}

/// Apply newly published settings on one shard: its listeners' TLS, for the connections
/// accepted from now on (open ones keep theirs). Runs on the shard, between its tasks'
/// turns; the place to add whatever else becomes live.
pub(crate) fn apply(shard: &Shard, settings: &Settings) {
    *shard.listener_tls.borrow_mut() = settings.listener_tls.clone();
    shard.core.borrow_mut().reload_auth(settings.auth.clone());
    tracing::debug!(shard = shard.id, "reloaded settings applied");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_that_need_a_restart_are_named() {
        // Goal: a reload that changes only TLS names nothing; one that changes the shard
        // count, a limit, a listener's address and a realm names each of them.
        // Method: compare configs parsed from small files.
        let base = "[router]\nshards = 2\n[[listener]]\naddress = \"127.0.0.1:1\"\n";
        let old = Config::from_toml(base, "a.toml").unwrap();
        let tls = format!("{base}[listener.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
        assert!(ignored_changes(&old, &Config::from_toml(&tls, "a.toml").unwrap()).is_empty());
        let text = "[router]\nshards = 3\n[[listener]]\naddress = \"127.0.0.1:2\"\n\
                    [limits]\nwrite_deadline_ms = 2000\n[[realm]]\nname = \"other\"\n";
        let changed = ignored_changes(&old, &Config::from_toml(text, "a.toml").unwrap());
        assert_eq!(
            changed,
            [
                "router.shards",
                "limits",
                "realm",
                "listener[0] tcp://127.0.0.1:1 (removed)",
                "listener tcp://127.0.0.1:2 (added)"
            ]
        );
    }

    #[test]
    fn listeners_are_matched_by_address() {
        // Goal: a reloaded config's listeners are found by address whatever their order,
        // and a bound listener the new config lacks maps to nothing.
        // Method: start [A, B], reload [B, C].
        let listeners = |addrs: &[&str]| {
            let text: String = addrs.iter().map(|a| format!("[[listener]]\naddress = \"{a}\"\n")).collect();
            Config::from_toml(&text, "a.toml").unwrap()
        };
        let started = listeners(&["127.0.0.1:1", "127.0.0.1:2"]);
        let new = listeners(&["127.0.0.1:2", "127.0.0.1:3"]);
        assert_eq!(bound_listeners(&started, &new).collect::<Vec<_>>(), [None, Some(0)]);
    }
}
