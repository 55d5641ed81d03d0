//! Authentication as pure functions: which method a HELLO gets, the CHALLENGE it is sent,
//! and whether its AUTHENTICATE proves the principal — for every WAMP method (anonymous,
//! ticket, wampcra, cryptosign, scram, tls), static or through a dynamic authenticator.
//!
//! Nothing here does I/O, reads a clock, or runs a KDF: randomness comes from the core's
//! [`Entropy`], time as a value, and salted keys were derived when the config loaded. The
//! caller (`lifecycle.rs`) owns the connection state and sends the messages.
//!
//! Failures tell the peer nothing about which part was wrong (an unknown authid gets a
//! CHALLENGE like a known one and fails at AUTHENTICATE); the [`Refused::why`] text is for
//! the operator's log only.

pub mod config;
pub mod cryptosign;
pub mod entropy;
pub mod fingerprint;
pub mod scram;
pub mod secret;
pub mod wampcra;

mod dynamic;

use std::sync::Arc;

pub use config::{AuthConfig, AuthMethod, Identity, ListenerAuth, Method};
pub(crate) use dynamic::{Ask, AskAt, on_answer};
pub use entropy::Entropy;

use super::out::Origin;
use super::violation::Abort;
use super::wire::{Dict, Id, Value};
use crate::limits;
use config::{CraPrincipal, CraSalt, CryptosignPrincipal, ScramPrincipal, TicketPrincipal};
use secret::hex_encode as hex;

/// What the HELLO says, and what the router knows about the connection.
pub(crate) struct HelloFacts<'a> {
    pub realm: &'a str,
    pub details: &'a Dict,
    pub origin: &'a Origin,
    /// The realm admits anonymous sessions.
    pub anonymous_allowed: bool,
    /// The ID the session will get (a WAMP-CRA challenge names it).
    pub session: Id,
    /// Wall-clock time as ISO 8601 (a WAMP-CRA challenge carries it).
    pub timestamp: &'a str,
}

/// A successful authentication: what WELCOME says.
#[derive(Debug)]
pub(crate) struct Granted {
    pub method: AuthMethod,
    /// `static` or `dynamic`.
    pub provider: &'static str,
    pub authid: Arc<str>,
    pub role: Arc<str>,
    /// Goes into `WELCOME.Details.authextra` (principal `extra`, SCRAM server signature).
    pub extra: Dict,
    /// A realm the principal is bound to.
    pub realm: Option<Arc<str>>,
}

/// A refusal: the ABORT for the peer, the reason for the operator.
#[derive(Debug)]
pub(crate) struct Refused {
    pub method: Option<AuthMethod>,
    pub abort: Abort,
    /// For the log (never sent to the peer).
    pub why: String,
}

impl Refused {
    /// Wrong or unknown credentials: the peer learns only "not authorized".
    pub(crate) fn denied(method: AuthMethod, why: impl Into<String>) -> Refused {
        Refused { method: Some(method), abort: Abort::AuthDenied, why: why.into() }
    }

    /// The client's HELLO or AUTHENTICATE cannot be used (a missing key, a bad format),
    /// or the authenticator failed: `wamp.error.authentication_failed` with `message`.
    pub(crate) fn failed(method: AuthMethod, message: &str) -> Refused {
        Refused {
            method: Some(method),
            abort: Abort::AuthFailed { message: message.to_owned() },
            why: message.to_owned(),
        }
    }
}

/// The next step after HELLO.
pub(crate) enum Step {
    /// WELCOME now (anonymous, tls).
    Granted(Granted),
    /// Send CHALLENGE(method, extra) and wait for AUTHENTICATE.
    Challenge { method: AuthMethod, extra: Dict, pending: Pending },
    /// Ask a dynamic authenticator first.
    Ask(Ask),
}

/// A HELLO waiting for its AUTHENTICATE.
#[derive(Debug)]
pub(crate) struct Pending {
    pub method: AuthMethod,
    /// The authid the client claimed (logs).
    pub authid: Option<String>,
    pub(crate) expect: Expect,
}

/// What the AUTHENTICATE must prove. `None` principals are unknown authids: the exchange
/// runs to the end and fails there, so a prober learns nothing from the CHALLENGE.
#[derive(Debug)]
pub(crate) enum Expect {
    Ticket {
        principal: Option<TicketPrincipal>,
    },
    /// The ticket goes to the dynamic authenticator after AUTHENTICATE.
    TicketDynamic {
        authenticator: config::Authenticator,
    },
    Cra {
        challenge: String,
        principal: Option<CraPrincipal>,
        provider: &'static str,
    },
    Cryptosign {
        challenge: [u8; 32],
        pubkey: [u8; 32],
        principal: Option<CryptosignPrincipal>,
        provider: &'static str,
    },
    Scram {
        auth_message: String,
        principal: Option<ScramPrincipal>,
        provider: &'static str,
    },
}

/// Pick the method for `hello` on listener `la` and take the first step.
pub(crate) fn on_hello(la: &ListenerAuth, hello: &HelloFacts<'_>, rng: &mut Entropy) -> Result<Step, Refused> {
    let method = select(la, hello.details)?;
    let authid = hello.details.get("authid").and_then(Value::as_str);
    if authid.is_some_and(|a| a.len() > limits::AUTHID_MAX_BYTES || a.is_empty()) {
        return Err(Refused::failed(method, "authid is empty or too long"));
    }
    let authextra = hello.details.get("authextra").and_then(Value::as_dict);
    let no_extra = Dict::new();
    let authextra = authextra.unwrap_or(&no_extra);
    match method {
        AuthMethod::Anonymous => anonymous(la, hello),
        AuthMethod::Ticket => ticket(la, authid),
        AuthMethod::Wampcra => wampcra_hello(la, hello, authid, rng),
        AuthMethod::Cryptosign => cryptosign_hello(la, hello, authid, authextra, rng),
        AuthMethod::Scram => scram_hello(la, hello, authid, authextra, rng),
        AuthMethod::Tls => tls(la, hello, authid),
    }
}

/// The first of the client's `authmethods` (in its order) that the listener offers. No
/// `authmethods` at all means anonymous.
fn select(la: &ListenerAuth, details: &Dict) -> Result<AuthMethod, Refused> {
    let none = || Refused { method: None, abort: Abort::NoAuthMethod, why: "no offered method matches".into() };
    let Some(list) = details.get("authmethods") else {
        return if la.offers(AuthMethod::Anonymous) { Ok(AuthMethod::Anonymous) } else { Err(none()) };
    };
    let list = list.as_list().ok_or_else(none)?;
    list.iter().filter_map(|v| v.as_str().and_then(AuthMethod::parse)).find(|m| la.offers(*m)).ok_or_else(none)
}

fn anonymous(la: &ListenerAuth, hello: &HelloFacts<'_>) -> Result<Step, Refused> {
    let role = la.anonymous.clone().ok_or_else(|| Refused::denied(AuthMethod::Anonymous, "anonymous not offered"))?;
    if !hello.anonymous_allowed {
        return Err(Refused::denied(AuthMethod::Anonymous, "the realm does not admit anonymous sessions"));
    }
    Ok(Step::Granted(Granted {
        method: AuthMethod::Anonymous,
        provider: "static",
        authid: Arc::from(format!("anonymous-{:x}", hello.session)),
        role,
        extra: Dict::new(),
        realm: None,
    }))
}

fn required_authid(method: AuthMethod, authid: Option<&str>) -> Result<&str, Refused> {
    authid.ok_or_else(|| Refused::failed(method, "this authentication method needs an authid in HELLO"))
}

fn ticket(la: &ListenerAuth, authid: Option<&str>) -> Result<Step, Refused> {
    let authid = required_authid(AuthMethod::Ticket, authid)?;
    let expect = match &la.ticket {
        Some(Method::Static(ps)) => Expect::Ticket { principal: ps.get(authid).cloned() },
        Some(Method::Dynamic(a)) => Expect::TicketDynamic { authenticator: a.clone() },
        None => return Err(Refused::denied(AuthMethod::Ticket, "ticket not offered")),
    };
    let pending = Pending { method: AuthMethod::Ticket, authid: Some(authid.to_owned()), expect };
    Ok(Step::Challenge { method: AuthMethod::Ticket, extra: Dict::new(), pending })
}

fn wampcra_hello(
    la: &ListenerAuth,
    hello: &HelloFacts<'_>,
    authid: Option<&str>,
    rng: &mut Entropy,
) -> Result<Step, Refused> {
    let authid = required_authid(AuthMethod::Wampcra, authid)?;
    match &la.wampcra {
        Some(Method::Static(ps)) => {
            let principal = ps.get(authid).cloned();
            let any_salted = ps.iter().any(|p| p.salt.is_some());
            Ok(cra_challenge(hello, authid, principal, any_salted, "static", rng))
        }
        Some(Method::Dynamic(a)) => Ok(Step::Ask(Ask::new(a, AuthMethod::Wampcra, hello, Some(authid), None))),
        None => Err(Refused::denied(AuthMethod::Wampcra, "wampcra not offered")),
    }
}

/// CHALLENGE for WAMP-CRA. An unknown authid gets a fake salt that is stable per authid
/// (when salted principals exist), so its CHALLENGE looks like a real one.
pub(crate) fn cra_challenge(
    hello: &HelloFacts<'_>,
    authid: &str,
    principal: Option<CraPrincipal>,
    fake_salt: bool,
    provider: &'static str,
    rng: &mut Entropy,
) -> Step {
    let nonce = hex(&rng.bytes::<16>());
    let role = principal.as_ref().map_or("", |p| &*p.id.role);
    let challenge = wampcra::challenge_text(authid, role, provider, hello.session, &nonce, hello.timestamp);
    let salt = match &principal {
        Some(p) => p.salt.clone(),
        None if fake_salt => {
            Some(CraSalt { salt: hex(&rng.keyed(authid.as_bytes())[..8]), iterations: 1000, keylen: 32 })
        }
        None => None,
    };
    let mut extra = Dict::new().with("challenge", challenge.as_str());
    if let Some(s) = &salt {
        extra.insert("salt", s.salt.as_str());
        extra.insert("iterations", u64::from(s.iterations));
        extra.insert("keylen", u64::from(s.keylen));
    }
    let pending = Pending {
        method: AuthMethod::Wampcra,
        authid: Some(authid.to_owned()),
        expect: Expect::Cra { challenge, principal, provider },
    };
    Step::Challenge { method: AuthMethod::Wampcra, extra, pending }
}

/// The client's Ed25519 key from `authextra.pubkey`, after refusing channel bindings
/// this router cannot do.
fn cryptosign_key(authextra: &Dict) -> Result<[u8; 32], Refused> {
    let m = AuthMethod::Cryptosign;
    match authextra.get("channel_binding") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_str() == Some("tls-unique") => {
            return Err(Refused::failed(
                m,
                "cryptosign channel_binding \"tls-unique\" is not supported by this router (its TLS stack \
                 does not expose the TLS Finished message); connect without channel binding",
            ));
        }
        Some(_) => return Err(Refused::failed(m, "unsupported cryptosign channel_binding")),
    }
    let hex_key = authextra.get("pubkey").and_then(Value::as_str);
    let hex_key = hex_key.ok_or_else(|| Refused::failed(m, "cryptosign needs authextra.pubkey (64 hex characters)"))?;
    cryptosign::parse_pubkey(hex_key).ok_or_else(|| Refused::failed(m, "authextra.pubkey is not 64 hex characters"))
}

fn cryptosign_hello(
    la: &ListenerAuth,
    hello: &HelloFacts<'_>,
    authid: Option<&str>,
    authextra: &Dict,
    rng: &mut Entropy,
) -> Result<Step, Refused> {
    let pubkey = cryptosign_key(authextra)?;
    match &la.cryptosign {
        Some(Method::Static(ps)) => {
            let principal = match authid {
                Some(a) => ps.get(a).filter(|p| p.authorized_keys.contains(&pubkey)).cloned(),
                None => ps.by_key(&pubkey).cloned(),
            };
            Ok(cryptosign_challenge(authid, pubkey, principal, "static", rng))
        }
        Some(Method::Dynamic(a)) => {
            Ok(Step::Ask(Ask::new(a, AuthMethod::Cryptosign, hello, authid, Some(AskAt::Cryptosign { pubkey }))))
        }
        None => Err(Refused::denied(AuthMethod::Cryptosign, "cryptosign not offered")),
    }
}

pub(crate) fn cryptosign_challenge(
    authid: Option<&str>,
    pubkey: [u8; 32],
    principal: Option<CryptosignPrincipal>,
    provider: &'static str,
    rng: &mut Entropy,
) -> Step {
    let challenge: [u8; 32] = rng.bytes();
    let extra = Dict::new().with("challenge", hex(&challenge)).with("channel_binding", Value::Null);
    let pending = Pending {
        method: AuthMethod::Cryptosign,
        authid: authid.map(str::to_owned),
        expect: Expect::Cryptosign { challenge, pubkey, principal, provider },
    };
    Step::Challenge { method: AuthMethod::Cryptosign, extra, pending }
}

fn scram_hello(
    la: &ListenerAuth,
    hello: &HelloFacts<'_>,
    authid: Option<&str>,
    authextra: &Dict,
    rng: &mut Entropy,
) -> Result<Step, Refused> {
    let m = AuthMethod::Scram;
    let authid = required_authid(m, authid)?;
    if scram::normalize_authid(authid).is_none() {
        // SASLprep refuses it: no Autobahn client could log in with it either.
        return Err(Refused::failed(m, "authid is not valid for SCRAM (SASLprep)"));
    }
    let nonce = scram_client_nonce(authextra)?;
    match &la.scram {
        Some(Method::Static(ps)) => Ok(scram_challenge(authid, nonce, ps.get(authid).cloned(), "static", rng)),
        Some(Method::Dynamic(a)) => {
            let at = AskAt::Scram { client_nonce: nonce.to_owned() };
            Ok(Step::Ask(Ask::new(a, m, hello, Some(authid), Some(at))))
        }
        None => Err(Refused::denied(m, "scram not offered")),
    }
}

fn scram_client_nonce(authextra: &Dict) -> Result<&str, Refused> {
    let m = AuthMethod::Scram;
    match authextra.get("channel_binding") {
        None | Some(Value::Null) => {}
        Some(_) => return Err(Refused::failed(m, "scram channel binding is not supported by this router")),
    }
    let nonce = authextra.get("nonce").and_then(Value::as_str);
    let nonce = nonce.ok_or_else(|| Refused::failed(m, "scram needs authextra.nonce"))?;
    if nonce.is_empty() || nonce.len() > limits::SCRAM_NONCE_MAX_BYTES || nonce.contains(',') {
        return Err(Refused::failed(m, "authextra.nonce is empty, too long or contains ','"));
    }
    Ok(nonce)
}

/// CHALLENGE for SCRAM. An unknown authid gets a salt that is stable per authid and the
/// usual parameters.
pub(crate) fn scram_challenge(
    authid: &str,
    client_nonce: &str,
    principal: Option<ScramPrincipal>,
    provider: &'static str,
    rng: &mut Entropy,
) -> Step {
    let server_nonce = scram::server_nonce(client_nonce, &rng.bytes::<16>());
    let fake;
    let (salt, kdf, iterations, memory) = match &principal {
        Some(p) => (&p.salt[..], p.kdf.as_str(), p.iterations, p.memory),
        None => {
            fake = rng.keyed(authid.as_bytes());
            (&fake[..16], "argon2id-13", 4096, 512)
        }
    };
    let auth_message = scram::auth_message(authid, client_nonce, &server_nonce, salt, iterations);
    // Autobahn accepts only these keys (never `channel_binding`: a null one would enter its
    // AuthMessage as "None"), and only the `argon2id-13` spelling; `memory` only for argon2.
    let kdf = scram::Kdf::parse(kdf).unwrap_or(scram::Kdf::Argon2id13);
    let mut extra = Dict::new()
        .with("nonce", server_nonce.as_str())
        .with("salt", scram::encode_salt(salt))
        .with("kdf", kdf.as_str())
        .with("iterations", u64::from(iterations));
    if kdf == scram::Kdf::Argon2id13 {
        extra.insert("memory", u64::from(memory));
    }
    let pending = Pending {
        method: AuthMethod::Scram,
        authid: Some(authid.to_owned()),
        expect: Expect::Scram { auth_message, principal, provider },
    };
    Step::Challenge { method: AuthMethod::Scram, extra, pending }
}

fn tls(la: &ListenerAuth, hello: &HelloFacts<'_>, authid: Option<&str>) -> Result<Step, Refused> {
    let m = AuthMethod::Tls;
    let Some(cert) = hello.origin.tls.and_then(|t| t.client_cert) else {
        return Err(Refused::denied(m, "no client certificate on this connection"));
    };
    match &la.tls {
        Some(Method::Static(ps)) => {
            let p = ps.by_certificate(&cert.sha1, &cert.sha256);
            let p = p.ok_or_else(|| Refused::denied(m, "no principal has this client certificate"))?;
            if authid.is_some_and(|a| a != &*p.id.authid) {
                return Err(Refused::denied(m, "HELLO.authid is not the certificate's principal"));
            }
            Ok(Step::Granted(grant(m, "static", &p.id, Dict::new())))
        }
        Some(Method::Dynamic(a)) => Ok(Step::Ask(Ask::new(a, m, hello, authid, Some(AskAt::Tls)))),
        None => Err(Refused::denied(m, "tls not offered")),
    }
}

/// Check AUTHENTICATE against what the CHALLENGE asked. `Ok(Err(ask))`: a dynamic
/// authenticator decides (ticket).
pub(crate) fn on_authenticate(
    pending: Pending,
    signature: &str,
    hello: &HelloFacts<'_>,
) -> Result<Result<Granted, Ask>, Refused> {
    let m = pending.method;
    let who = pending.authid.as_deref().unwrap_or("");
    match pending.expect {
        Expect::Ticket { principal: Some(p) } if secret::ct_eq(&p.ticket.0, signature.as_bytes()) => {
            Ok(Ok(grant(m, "static", &p.id, Dict::new())))
        }
        Expect::Ticket { principal } => Err(Refused::denied(m, wrong(principal.is_some(), "ticket"))),
        Expect::TicketDynamic { authenticator } => {
            let at = AskAt::Ticket { ticket: signature.to_owned() };
            Ok(Err(Ask::new(&authenticator, m, hello, Some(who), Some(at))))
        }
        Expect::Cra { challenge, principal: Some(p), provider } if wampcra::verify(&p.key.0, &challenge, signature) => {
            Ok(Ok(grant(m, provider, &p.id, Dict::new())))
        }
        Expect::Cra { principal, .. } => Err(Refused::denied(m, wrong(principal.is_some(), "signature"))),
        Expect::Cryptosign { challenge, pubkey, principal: Some(p), provider }
            if cryptosign::verify(&pubkey, &challenge, signature) =>
        {
            Ok(Ok(grant(m, provider, &p.id, Dict::new())))
        }
        Expect::Cryptosign { principal, .. } => Err(Refused::denied(m, wrong(principal.is_some(), "signature"))),
        Expect::Scram { auth_message, principal: Some(p), provider }
            if scram::verify_proof(&p.stored_key.0, &auth_message, signature) =>
        {
            let server_signature = scram::server_signature(&p.server_key.0, &auth_message);
            let extra = Dict::new()
                .with("verifier", format!("v={server_signature}"))
                .with("scram_server_signature", server_signature);
            Ok(Ok(grant(m, provider, &p.id, extra)))
        }
        Expect::Scram { principal, .. } => Err(Refused::denied(m, wrong(principal.is_some(), "proof"))),
    }
}

fn wrong(known: bool, what: &str) -> String {
    if known { format!("wrong {what}") } else { "unknown authid".to_owned() }
}

pub(crate) fn grant(method: AuthMethod, provider: &'static str, id: &Identity, mut extra: Dict) -> Granted {
    if let Some(e) = &id.extra {
        for (k, v) in e.iter() {
            if extra.get(k).is_none() {
                extra.insert(k, v.clone());
            }
        }
    }
    Granted { method, provider, authid: id.authid.clone(), role: id.role.clone(), extra, realm: id.realm.clone() }
}
