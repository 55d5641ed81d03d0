//! The config file: reading it, and its raw TOML shape.
//!
//! Every field is optional and loosely typed (integers are `i64`, enums are strings), so
//! that `validate` can say which key is wrong and what it expected. Unknown keys and wrong
//! TOML types are rejected here, by serde, with toml's message (it names the key and the
//! line). Nothing here checks a range or applies a default.

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) router: Option<FileRouter>,
    #[serde(default)]
    pub(super) listener: Vec<FileListener>,
    pub(super) limits: Option<FileLimits>,
    pub(super) metrics: Option<FileMetrics>,
    #[serde(default)]
    pub(super) realm: Vec<FileRealm>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRouter {
    pub(super) shards: Option<i64>,
    pub(super) spin_before_park_us: Option<i64>,
    pub(super) log: Option<String>,
    pub(super) auto_create_realms: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileListener {
    pub(super) address: Option<String>,
    pub(super) path: Option<String>,
    pub(super) serializers: Option<Vec<String>>,
    pub(super) websocket_testee: Option<bool>,
    pub(super) auth: Option<super::auth::FileAuth>,
    pub(super) tls: Option<FileTls>,
}

/// `[listener.tls]`: PEM file paths as written (relative to the config file's directory).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub(super) cert: Option<String>,
    pub(super) key: Option<String>,
    pub(super) client_ca: Option<String>,
    pub(super) allow_plaintext: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    pub(super) message_size_max: Option<i64>,
    pub(super) pending_bytes_max: Option<i64>,
    pub(super) write_deadline_ms: Option<i64>,
    pub(super) ping_interval_ms: Option<i64>,
    pub(super) ping_timeout_ms: Option<i64>,
    pub(super) rawsocket_ping: Option<String>,
    pub(super) max_connections: Option<i64>,
    pub(super) max_connections_per_ip: Option<i64>,
    pub(super) max_handshakes_per_shard: Option<i64>,
    pub(super) pre_session_bytes_max: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMetrics {
    pub(super) address: Option<String>,
    pub(super) summary_interval_s: Option<i64>,
    pub(super) http_endpoints_on_wamp_port: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRealm {
    pub(super) name: String,
    pub(super) strict_uri: Option<bool>,
    pub(super) slow_consumer: Option<String>,
    pub(super) anonymous: Option<bool>,
    pub(super) role: Option<Vec<super::roles::FileRole>>,
    pub(super) call_timeout_unit: Option<String>,
    pub(super) call_timeout_default_ms: Option<i64>,
    pub(super) call_timeout_max_ms: Option<i64>,
    pub(super) meta_api: Option<bool>,
    pub(super) history: Option<Vec<FileHistory>>,
    pub(super) route_bytes_max: Option<i64>,
}

/// `[[realm.history]]`: a topic (pattern) whose publications are kept.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHistory {
    pub(super) uri: Option<String>,
    #[serde(rename = "match")]
    pub(super) policy: Option<String>,
    pub(super) limit: Option<i64>,
}

/// Read and parse the file at `path`; errors name the path.
pub(super) fn read(path: &Path) -> Result<FileConfig, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source: source.clone(),
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, &source)
}

/// Parse TOML `text`; `source` names it in errors.
pub(super) fn parse(text: &str, source: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        // toml's message names the key and the line; keep it, on one line.
        ConfigError {
            source: source.to_owned(),
            key: String::new(),
            message: e.to_string().trim_end().replace('\n', " | "),
        }
    })
}
