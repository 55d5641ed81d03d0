//! Who may connect, per listener: the validated, plain-data form of `[listener.auth.*]`.
//!
//! Authentication hangs off the listener (Crossbar's model); roles hang off the realm.
//! `crate::config` builds these from TOML (deriving salted WAMP-CRA keys once, at load);
//! the core only reads them. Secrets are wrapped in [`Secret`], whose `Debug` never prints
//! them, so no log line or panic message can carry one.

use std::fmt;
use std::sync::Arc;

use crate::proto::Map;
use crate::proto::wire::Dict;

/// Bytes (or text) that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// The WAMP authentication methods, in the order `/metrics` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthMethod {
    Anonymous,
    Ticket,
    Wampcra,
    Cryptosign,
    Scram,
    Tls,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 6] = [
        AuthMethod::Anonymous,
        AuthMethod::Ticket,
        AuthMethod::Wampcra,
        AuthMethod::Cryptosign,
        AuthMethod::Scram,
        AuthMethod::Tls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Anonymous => "anonymous",
            AuthMethod::Ticket => "ticket",
            AuthMethod::Wampcra => "wampcra",
            AuthMethod::Cryptosign => "cryptosign",
            AuthMethod::Scram => "scram",
            AuthMethod::Tls => "tls",
        }
    }

    pub fn parse(s: &str) -> Option<AuthMethod> {
        AuthMethod::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Dense index (for per-method counters).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a successful authentication gives a session (a principal's static part).
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub authid: Arc<str>,
    pub role: Arc<str>,
    /// The only realm this principal may join; None = any realm that exists.
    pub realm: Option<Arc<str>>,
    /// Becomes `WELCOME.Details.authextra` (merged under the router's own keys).
    pub extra: Option<Dict>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TicketPrincipal {
    pub id: Identity,
    pub ticket: Secret,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CraPrincipal {
    pub id: Identity,
    /// The HMAC key: the secret's UTF-8, or for a salted principal the derived key
    /// (computed when the config was loaded, never per login).
    pub key: Secret,
    pub salt: Option<CraSalt>,
}

/// What a salted WAMP-CRA principal's CHALLENGE tells the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CraSalt {
    pub salt: String,
    pub iterations: u32,
    pub keylen: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CryptosignPrincipal {
    pub id: Identity,
    pub authorized_keys: Vec<[u8; 32]>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScramPrincipal {
    pub id: Identity,
    /// As configured (`argon2id-13` or `pbkdf2`); echoed in the CHALLENGE.
    pub kdf: String,
    pub iterations: u32,
    pub memory: u32,
    pub salt: Vec<u8>,
    pub stored_key: Secret,
    pub server_key: Secret,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TlsPrincipal {
    pub id: Identity,
    pub sha1: Option<[u8; 20]>,
    pub sha256: Option<[u8; 32]>,
}

/// A dynamic authenticator: a procedure registered by a trusted backend session.
#[derive(Clone, Debug, PartialEq)]
pub struct Authenticator {
    pub procedure: Arc<str>,
    /// The realm the procedure is registered in.
    pub realm: Arc<str>,
    /// Roles whose sessions may register the procedure (nobody else can).
    pub roles: Vec<Arc<str>>,
}

/// One method on one listener: a static principal table, or a dynamic authenticator.
#[derive(Clone, Debug, PartialEq)]
pub enum Method<P> {
    Static(Principals<P>),
    Dynamic(Authenticator),
}

/// Static principals by authid.
#[derive(Clone, Debug, PartialEq)]
pub struct Principals<P> {
    by_authid: Map<Arc<str>, P>,
}

impl<P> Principals<P> {
    pub fn new() -> Principals<P> {
        Principals { by_authid: Map::default() }
    }

    /// Add a principal; false if the authid was already there.
    pub fn insert(&mut self, authid: Arc<str>, p: P) -> bool {
        if self.by_authid.contains_key(&authid) {
            return false;
        }
        self.by_authid.insert(authid, p);
        true
    }

    pub fn get(&self, authid: &str) -> Option<&P> {
        self.by_authid.get(authid)
    }

    pub fn len(&self) -> usize {
        self.by_authid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_authid.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &P> {
        self.by_authid.values()
    }
}

impl<P> Default for Principals<P> {
    fn default() -> Self {
        Principals::new()
    }
}

impl Principals<CryptosignPrincipal> {
    /// The one principal that lists `key` (None if none does, or more than one: then the
    /// key does not say who the client is).
    pub fn by_key(&self, key: &[u8; 32]) -> Option<&CryptosignPrincipal> {
        let mut found = self.iter().filter(|p| p.authorized_keys.contains(key));
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }
}

impl Principals<TlsPrincipal> {
    /// The principal whose certificate fingerprint matches (SHA-256 or SHA-1).
    pub fn by_certificate(&self, sha1: &[u8; 20], sha256: &[u8; 32]) -> Option<&TlsPrincipal> {
        self.iter().find(|p| p.sha256.as_ref() == Some(sha256) || p.sha1.as_ref() == Some(sha1))
    }
}

/// `[listener.auth]` of one listener. All None = nobody may connect (the config refuses
/// that); a listener without an auth table gets [`ListenerAuth::anonymous_only`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListenerAuth {
    /// The role anonymous sessions get.
    pub anonymous: Option<Arc<str>>,
    pub ticket: Option<Method<TicketPrincipal>>,
    pub wampcra: Option<Method<CraPrincipal>>,
    pub cryptosign: Option<Method<CryptosignPrincipal>>,
    pub scram: Option<Method<ScramPrincipal>>,
    pub tls: Option<Method<TlsPrincipal>>,
}

impl ListenerAuth {
    /// A listener without an auth table: anonymous, role `anonymous` (as before
    /// authentication existed).
    pub fn anonymous_only() -> ListenerAuth {
        ListenerAuth { anonymous: Some(Arc::from("anonymous")), ..ListenerAuth::default() }
    }

    pub fn offers(&self, m: AuthMethod) -> bool {
        match m {
            AuthMethod::Anonymous => self.anonymous.is_some(),
            AuthMethod::Ticket => self.ticket.is_some(),
            AuthMethod::Wampcra => self.wampcra.is_some(),
            AuthMethod::Cryptosign => self.cryptosign.is_some(),
            AuthMethod::Scram => self.scram.is_some(),
            AuthMethod::Tls => self.tls.is_some(),
        }
    }

    /// The dynamic authenticator of method `m`, if it has one.
    pub fn authenticator(&self, m: AuthMethod) -> Option<&Authenticator> {
        fn dynamic<P>(m: &Option<Method<P>>) -> Option<&Authenticator> {
            match m {
                Some(Method::Dynamic(a)) => Some(a),
                _ => None,
            }
        }
        match m {
            AuthMethod::Anonymous => None,
            AuthMethod::Ticket => dynamic(&self.ticket),
            AuthMethod::Wampcra => dynamic(&self.wampcra),
            AuthMethod::Cryptosign => dynamic(&self.cryptosign),
            AuthMethod::Scram => dynamic(&self.scram),
            AuthMethod::Tls => dynamic(&self.tls),
        }
    }
}

/// Every listener's authentication, indexed by `Origin::listener`.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthConfig {
    pub listeners: Vec<ListenerAuth>,
}

impl Default for AuthConfig {
    /// One listener, anonymous.
    fn default() -> AuthConfig {
        AuthConfig { listeners: vec![ListenerAuth::anonymous_only()] }
    }
}

impl AuthConfig {
    /// Listener `index`'s table; a listener the config does not know (a test harness
    /// opening connections without one) gets anonymous only.
    pub fn listener(&self, index: u16) -> &ListenerAuth {
        static ANONYMOUS: std::sync::OnceLock<ListenerAuth> = std::sync::OnceLock::new();
        self.listeners.get(usize::from(index)).unwrap_or_else(|| ANONYMOUS.get_or_init(ListenerAuth::anonymous_only))
    }

    /// Every dynamic authenticator (procedure, realm, roles), for the registration guard.
    pub fn authenticators(&self) -> impl Iterator<Item = &Authenticator> {
        self.listeners.iter().flat_map(|l| AuthMethod::ALL.into_iter().filter_map(move |m| l.authenticator(m)))
    }
}
