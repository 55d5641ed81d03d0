//! `[listener.auth.*]`: the raw TOML shape of a listener's authentication, and its
//! validation into `proto::auth::ListenerAuth`.
//!
//! Secrets may be written `"${ENV_VAR}"` (read here, once). Salted WAMP-CRA keys are
//! derived here, at load, never per login. Errors name the key path
//! (`listener[0].auth.ticket.principals[2].ticket`) and what was expected; they never
//! print a secret. Nothing here opens a socket or starts anything.

use std::sync::Arc;

use serde::Deserialize;

use super::ConfigError;
use crate::limits;
use crate::proto::auth::config::{
    Authenticator, CraPrincipal, CraSalt, CryptosignPrincipal, Identity, ListenerAuth, Method, Principals,
    ScramPrincipal, Secret, TicketPrincipal, TlsPrincipal,
};
use crate::proto::auth::{AuthConfig, AuthMethod, cryptosign, fingerprint, scram, wampcra};
use crate::proto::realm::RealmConfig;
use crate::proto::wire::{Dict, Value, uri};

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAuth {
    anonymous: Option<FileAnonymous>,
    ticket: Option<FileMethod<FileTicket>>,
    wampcra: Option<FileMethod<FileCra>>,
    cryptosign: Option<FileMethod<FileCryptosign>>,
    scram: Option<FileMethod<FileScram>>,
    tls: Option<FileMethod<FileTls>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct FileAnonymous {
    role: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct FileMethod<P> {
    principals: Option<Vec<P>>,
    authenticator: Option<String>,
    authenticator_realm: Option<String>,
    authenticator_role: Option<RoleList>,
}

/// `authenticator_role = "backend"` or `["backend", "ops"]`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RoleList {
    One(String),
    Many(Vec<String>),
}

/// The keys every principal has (each principal struct repeats them: serde's `flatten`
/// does not work with `deny_unknown_fields`).
struct FileIdentity<'a> {
    authid: &'a str,
    role: &'a str,
    realm: Option<&'a str>,
    extra: Option<&'a toml::Table>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct FileTicket {
    authid: String,
    role: String,
    realm: Option<String>,
    extra: Option<toml::Table>,
    ticket: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct FileCra {
    authid: String,
    role: String,
    realm: Option<String>,
    extra: Option<toml::Table>,
    secret: String,
    salt: Option<String>,
    iterations: Option<i64>,
    keylen: Option<i64>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct FileCryptosign {
    authid: String,
    role: String,
    realm: Option<String>,
    extra: Option<toml::Table>,
    authorized_keys: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct FileScram {
    authid: String,
    role: String,
    realm: Option<String>,
    extra: Option<toml::Table>,
    kdf: String,
    iterations: i64,
    memory: Option<i64>,
    salt: String,
    stored_key: String,
    server_key: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct FileTls {
    authid: String,
    role: String,
    realm: Option<String>,
    extra: Option<toml::Table>,
    certificate_sha1: Option<String>,
    certificate_sha256: Option<String>,
}

/// Errors naming the source file and a key path.
pub(super) struct AuthCheck<'a> {
    pub source: &'a str,
    /// Configured realms (principal realms and authenticator realms must be among them,
    /// unless realms are auto-created).
    pub realms: &'a [RealmConfig],
    pub auto_create_realms: bool,
}

impl AuthCheck<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { source: self.source.to_owned(), key: key.to_owned(), message: message.into() }
    }

    fn realm_known(&self, name: &str) -> bool {
        self.auto_create_realms || self.realms.iter().any(|r| r.name == name)
    }
}

/// Every listener's authentication (None: the listener has no auth table → anonymous).
pub(super) fn auth_config(c: &AuthCheck<'_>, tables: Vec<Option<FileAuth>>) -> Result<AuthConfig, ConfigError> {
    let mut listeners = Vec::with_capacity(tables.len());
    for (i, t) in tables.into_iter().enumerate() {
        listeners.push(match t {
            None => ListenerAuth::anonymous_only(),
            Some(t) => listener_auth(c, &format!("listener[{i}].auth"), t)?,
        });
    }
    let auth = AuthConfig { listeners };
    anonymous_cannot_authenticate(c, &auth)?;
    Ok(auth)
}

fn listener_auth(c: &AuthCheck<'_>, key: &str, t: FileAuth) -> Result<ListenerAuth, ConfigError> {
    let k = |m: &str| format!("{key}.{m}");
    let anonymous = match t.anonymous {
        None => None,
        Some(a) => Some(role(c, &k("anonymous.role"), a.role.as_deref().unwrap_or("anonymous"))?),
    };
    let la = ListenerAuth {
        anonymous,
        ticket: method(c, &k("ticket"), t.ticket, ticket)?,
        wampcra: method(c, &k("wampcra"), t.wampcra, cra)?,
        cryptosign: method(c, &k("cryptosign"), t.cryptosign, cryptosign_principal)?,
        scram: method(c, &k("scram"), t.scram, scram_principal)?,
        tls: method(c, &k("tls"), t.tls, tls)?,
    };
    if !AuthMethod::ALL.iter().any(|m| la.offers(*m)) {
        return Err(c.err(key, "expected at least one method (anonymous, ticket, wampcra, cryptosign, scram, tls)"));
    }
    Ok(la)
}

type Build<F, P> = fn(&AuthCheck<'_>, &str, F) -> Result<P, ConfigError>;

/// A method table: `principals` or `authenticator` (+ realm and roles), not both.
fn method<F: HasIdentity, P>(
    c: &AuthCheck<'_>,
    key: &str,
    m: Option<FileMethod<F>>,
    build: Build<F, P>,
) -> Result<Option<Method<P>>, ConfigError> {
    let Some(m) = m else { return Ok(None) };
    match (m.principals, m.authenticator) {
        (Some(_), Some(_)) => Err(c.err(key, "expected either `principals` or `authenticator`, not both")),
        (None, None) => Err(c.err(key, "expected `principals = [...]` or `authenticator = \"<procedure URI>\"`")),
        (Some(list), None) => {
            if list.len() > limits::PRINCIPALS_MAX {
                return Err(
                    c.err(&format!("{key}.principals"), format!("at most {} principals", limits::PRINCIPALS_MAX))
                );
            }
            let mut ps = Principals::new();
            for (i, p) in list.into_iter().enumerate() {
                let pkey = format!("{key}.principals[{i}]");
                let authid: Arc<str> = Arc::from(p.identity().authid);
                let built = build(c, &pkey, p)?;
                if !ps.insert(authid.clone(), built) {
                    return Err(c.err(&format!("{pkey}.authid"), format!("authid {authid:?} appears twice")));
                }
            }
            Ok(Some(Method::Static(ps)))
        }
        (None, Some(procedure)) => {
            if !uri::is_valid(&procedure, false, false) {
                return Err(
                    c.err(&format!("{key}.authenticator"), format!("expected a procedure URI, found {procedure:?}"))
                );
            }
            let realm = m.authenticator_realm.ok_or_else(|| {
                c.err(&format!("{key}.authenticator_realm"), "expected the realm the authenticator is registered in")
            })?;
            if !c.realm_known(&realm) {
                return Err(
                    c.err(&format!("{key}.authenticator_realm"), format!("no realm named {realm:?} is configured"))
                );
            }
            let roles = match m.authenticator_role {
                None => Vec::new(),
                Some(RoleList::One(r)) => vec![r],
                Some(RoleList::Many(rs)) => rs,
            };
            let rkey = format!("{key}.authenticator_role");
            if roles.is_empty() {
                return Err(c.err(&rkey, "expected the role(s) whose sessions may register the authenticator"));
            }
            let roles = roles.iter().map(|r| role(c, &rkey, r)).collect::<Result<Vec<_>, _>>()?;
            Ok(Some(Method::Dynamic(Authenticator { procedure: Arc::from(procedure), realm: Arc::from(realm), roles })))
        }
    }
}

/// No listener may hand an authenticator's role to anonymous sessions of its realm: they
/// could register the authenticator and read every credential.
fn anonymous_cannot_authenticate(c: &AuthCheck<'_>, auth: &AuthConfig) -> Result<(), ConfigError> {
    for a in auth.authenticators() {
        let realm_anonymous = c.realms.iter().find(|r| *r.name == *a.realm).is_none_or(|r| r.anonymous);
        for (i, l) in auth.listeners.iter().enumerate() {
            if let Some(anon) = &l.anonymous
                && realm_anonymous
                && a.roles.contains(anon)
            {
                return Err(c.err(
                    &format!("listener[{i}].auth.anonymous.role"),
                    format!(
                        "role {anon:?} may register the authenticator {:?} in realm {:?}: anonymous sessions \
                         must not get it (give anonymous another role, or set anonymous = false on the realm)",
                        &*a.procedure, &*a.realm
                    ),
                ));
            }
        }
    }
    Ok(())
}

trait HasIdentity {
    fn identity(&self) -> FileIdentity<'_>;
}

macro_rules! has_identity {
    ($($t:ty),*) => {$(
        impl HasIdentity for $t {
            fn identity(&self) -> FileIdentity<'_> {
                FileIdentity {
                    authid: &self.authid,
                    role: &self.role,
                    realm: self.realm.as_deref(),
                    extra: self.extra.as_ref(),
                }
            }
        }
    )*};
}
has_identity!(FileTicket, FileCra, FileCryptosign, FileScram, FileTls);

fn role(c: &AuthCheck<'_>, key: &str, r: &str) -> Result<Arc<str>, ConfigError> {
    if r.is_empty() || r.len() > limits::AUTHID_MAX_BYTES || r.chars().any(char::is_control) {
        return Err(c.err(key, format!("expected a role name (1 to {} characters)", limits::AUTHID_MAX_BYTES)));
    }
    Ok(Arc::from(r))
}

fn identity(c: &AuthCheck<'_>, key: &str, id: FileIdentity<'_>) -> Result<Identity, ConfigError> {
    let a = id.authid;
    if a.is_empty() || a.len() > limits::AUTHID_MAX_BYTES || a.chars().any(char::is_control) {
        let msg = format!("expected an authid (1 to {} characters)", limits::AUTHID_MAX_BYTES);
        return Err(c.err(&format!("{key}.authid"), msg));
    }
    let realm = match id.realm {
        None => None,
        Some(r) if c.realm_known(r) => Some(Arc::from(r)),
        Some(r) => return Err(c.err(&format!("{key}.realm"), format!("no realm named {r:?} is configured"))),
    };
    Ok(Identity {
        authid: Arc::from(a),
        role: role(c, &format!("{key}.role"), id.role)?,
        realm,
        extra: id.extra.map(table_to_dict),
    })
}

/// A secret as written, or the environment variable it names (`"${NAME}"`).
fn secret(c: &AuthCheck<'_>, key: &str, s: &str) -> Result<String, ConfigError> {
    let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else { return Ok(s.to_owned()) };
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err(c.err(key, format!("environment variable {name} is empty"))),
        Err(_) => Err(c.err(key, format!("environment variable {name} is not set (or not UTF-8)"))),
    }
}

fn ticket(c: &AuthCheck<'_>, key: &str, p: FileTicket) -> Result<TicketPrincipal, ConfigError> {
    let t = secret(c, &format!("{key}.ticket"), &p.ticket)?;
    if t.is_empty() {
        return Err(c.err(&format!("{key}.ticket"), "expected a non-empty ticket"));
    }
    Ok(TicketPrincipal { id: identity(c, key, p.identity())?, ticket: Secret(t.into_bytes()) })
}

fn cra(c: &AuthCheck<'_>, key: &str, p: FileCra) -> Result<CraPrincipal, ConfigError> {
    let s = secret(c, &format!("{key}.secret"), &p.secret)?;
    if s.is_empty() {
        return Err(c.err(&format!("{key}.secret"), "expected a non-empty secret"));
    }
    let id = identity(c, key, p.identity())?;
    let salt = match p.salt {
        None => {
            if p.iterations.is_some() || p.keylen.is_some() {
                return Err(c.err(&format!("{key}.salt"), "`iterations`/`keylen` need a `salt`"));
            }
            None
        }
        Some(salt) => {
            let it = p.iterations.unwrap_or(i64::from(limits::WAMPCRA_ITERATIONS_DEFAULT));
            let ceiling = i64::from(limits::WAMPCRA_ITERATIONS_CEILING);
            if !(1..=ceiling).contains(&it) {
                let msg = format!("expected an integer from 1 to {ceiling}, found {it}");
                return Err(c.err(&format!("{key}.iterations"), msg));
            }
            let kl = p.keylen.unwrap_or(limits::WAMPCRA_KEYLEN_DEFAULT_BYTES as i64);
            let ceiling = limits::WAMPCRA_KEYLEN_CEILING_BYTES as i64;
            if !(1..=ceiling).contains(&kl) {
                let msg = format!("expected an integer from 1 to {ceiling}, found {kl}");
                return Err(c.err(&format!("{key}.keylen"), msg));
            }
            Some(CraSalt { salt, iterations: it as u32, keylen: kl as u32 })
        }
    };
    let key_bytes = match &salt {
        None => s.into_bytes(),
        Some(st) => wampcra::derive_key(&s, &st.salt, st.iterations, st.keylen as usize),
    };
    Ok(CraPrincipal { id, key: Secret(key_bytes), salt })
}

fn cryptosign_principal(c: &AuthCheck<'_>, key: &str, p: FileCryptosign) -> Result<CryptosignPrincipal, ConfigError> {
    if p.authorized_keys.is_empty() {
        return Err(c.err(&format!("{key}.authorized_keys"), "expected at least one Ed25519 public key (64 hex)"));
    }
    let mut keys = Vec::with_capacity(p.authorized_keys.len());
    for (i, k) in p.authorized_keys.iter().enumerate() {
        let parsed = cryptosign::parse_pubkey(k).ok_or_else(|| {
            c.err(&format!("{key}.authorized_keys[{i}]"), format!("expected 64 hex characters, found {:?}", k))
        })?;
        keys.push(parsed);
    }
    Ok(CryptosignPrincipal { id: identity(c, key, p.identity())?, authorized_keys: keys })
}

fn scram_principal(c: &AuthCheck<'_>, key: &str, p: FileScram) -> Result<ScramPrincipal, ConfigError> {
    if scram::Kdf::parse(&p.kdf).is_none() {
        return Err(c.err(&format!("{key}.kdf"), format!("expected \"argon2id-13\" or \"pbkdf2\", found {:?}", p.kdf)));
    }
    if !(1..=i64::from(u32::MAX)).contains(&p.iterations) {
        return Err(c.err(&format!("{key}.iterations"), "expected a positive integer"));
    }
    let memory = p.memory.unwrap_or(512);
    if !(1..=i64::from(u32::MAX)).contains(&memory) {
        return Err(c.err(&format!("{key}.memory"), "expected a positive integer (KiB)"));
    }
    let hex_field = |name: &str, v: &str, want: Option<usize>| -> Result<Vec<u8>, ConfigError> {
        let v = secret(c, &format!("{key}.{name}"), v)?;
        match crate::proto::auth::secret::hex_decode(&v) {
            Some(b) if want.is_none_or(|n| b.len() == n) && !b.is_empty() => Ok(b),
            _ => Err(c.err(
                &format!("{key}.{name}"),
                match want {
                    Some(n) => format!("expected {} hex characters", 2 * n),
                    None => "expected hex".to_owned(),
                },
            )),
        }
    };
    Ok(ScramPrincipal {
        id: identity(c, key, p.identity())?,
        kdf: p.kdf.clone(),
        iterations: p.iterations as u32,
        memory: memory as u32,
        salt: hex_field("salt", &p.salt, None)?,
        stored_key: Secret(hex_field("stored_key", &p.stored_key, Some(32))?),
        server_key: Secret(hex_field("server_key", &p.server_key, Some(32))?),
    })
}

fn tls(c: &AuthCheck<'_>, key: &str, p: FileTls) -> Result<TlsPrincipal, ConfigError> {
    let sha1 = match &p.certificate_sha1 {
        None => None,
        Some(s) => Some(fingerprint::parse(s).and_then(|b| <[u8; 20]>::try_from(b).ok()).ok_or_else(|| {
            c.err(&format!("{key}.certificate_sha1"), "expected a SHA-1 fingerprint like \"B6:E5:...:EB\" (20 bytes)")
        })?),
    };
    let sha256 = match &p.certificate_sha256 {
        None => None,
        Some(s) => Some(fingerprint::parse(s).and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
            c.err(
                &format!("{key}.certificate_sha256"),
                "expected a SHA-256 fingerprint (32 bytes, hex, colons optional)",
            )
        })?),
    };
    if sha1.is_none() && sha256.is_none() {
        return Err(c.err(&format!("{key}.certificate_sha1"), "expected `certificate_sha1` or `certificate_sha256`"));
    }
    Ok(TlsPrincipal { id: identity(c, key, p.identity())?, sha1, sha256 })
}

/// A TOML table as a WAMP dict (principal `extra` → WELCOME.authextra).
fn table_to_dict(t: &toml::Table) -> Dict {
    let mut d = Dict::new();
    for (k, v) in t {
        d.insert(k.clone(), toml_to_value(v));
    }
    d
}

fn toml_to_value(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::int(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(a) => Value::List(a.iter().map(toml_to_value).collect()),
        toml::Value::Table(t) => Value::Dict(table_to_dict(t)),
    }
}
