//! Dynamic authenticators: the question the router calls the authenticator procedure with,
//! `(realm, authid, details)` as Crossbar does, and what its answer leads to — a role
//! string, or a dict (`role`, `authid`, `realm`, `extra`, plus the secret or key the
//! method needs: `secret`/`salt`/`iterations`/`keylen` for wampcra, `pubkey` for
//! cryptosign, `kdf`/`iterations`/`memory`/`salt`/`stored_key`/`server_key` for scram).
//!
//! The call itself, its timeout and the cap on pending authentications are the caller's
//! (`lifecycle.rs`, `rpc`); nothing here does I/O.

use std::sync::Arc;

use super::config::{Authenticator, CraPrincipal, CraSalt, CryptosignPrincipal, ScramPrincipal, Secret};
use super::secret::{self, hex_encode as hex};
use super::{AuthMethod, Entropy, Granted, HelloFacts, Identity, Refused, Step, fingerprint, wampcra};
use crate::limits;
use crate::proto::wire::{Dict, Value};

/// Where a dynamic authentication stands when the authenticator is asked.
#[derive(Debug, Clone)]
pub(crate) enum AskAt {
    /// After AUTHENTICATE: the ticket is for the authenticator to check.
    Ticket {
        ticket: String,
    },
    Cryptosign {
        pubkey: [u8; 32],
    },
    Scram {
        client_nonce: String,
    },
    /// The client certificate (in `details.transport.client_cert`) is for the authenticator.
    Tls,
}

/// A question for a dynamic authenticator.
#[derive(Debug)]
pub(crate) struct Ask {
    pub authenticator: Authenticator,
    pub method: AuthMethod,
    pub authid: Option<String>,
    pub at: Option<AskAt>,
    /// The call's positional arguments: `[realm, authid, details]`.
    pub args: Vec<Value>,
}

impl Ask {
    pub(crate) fn new(
        a: &Authenticator,
        method: AuthMethod,
        hello: &HelloFacts<'_>,
        authid: Option<&str>,
        at: Option<AskAt>,
    ) -> Ask {
        let mut details = Dict::new()
            .with("authmethod", method.name())
            .with("authid", authid.map_or(Value::Null, Value::from))
            .with("session", hello.session)
            .with("transport", transport(hello));
        if let Some(extra) = hello.details.get("authextra").and_then(Value::as_dict) {
            details.insert("authextra", extra.clone());
        }
        if let Some(AskAt::Ticket { ticket }) = &at {
            details.insert("ticket", ticket.as_str());
        }
        let args = vec![Value::from(hello.realm), authid.map_or(Value::Null, Value::from), Value::Dict(details)];
        Ask { authenticator: a.clone(), method, authid: authid.map(str::to_owned), at, args }
    }
}

/// `details.transport` as Crossbar shapes it (the parts a router can know).
fn transport(hello: &HelloFacts<'_>) -> Dict {
    let mut t = Dict::new().with("is_secure", hello.origin.tls.is_some());
    if let Some(peer) = hello.origin.peer {
        let family = if peer.is_ipv4() { "tcp4" } else { "tcp6" };
        t.insert("peer", format!("{family}:{}:{}", peer.ip(), peer.port()));
    }
    if let Some(cert) = hello.origin.tls.and_then(|t| t.client_cert) {
        let c = Dict::new().with("sha1", fingerprint::format_sha1(&cert.sha1)).with("sha256", hex(&cert.sha256));
        t.insert("client_cert", c);
    }
    t
}

/// The authenticator answered (`Ok(args)`: the result's positional arguments) or failed
/// (`Err(uri)`: its ERROR, a timeout, or no callee). Returns the next step.
pub(crate) fn on_answer(
    ask: Ask,
    answer: Result<Vec<Value>, String>,
    hello: &HelloFacts<'_>,
    rng: &mut Entropy,
) -> Result<Step, Refused> {
    let m = ask.method;
    let args = answer.map_err(|uri| Refused {
        method: Some(m),
        abort: crate::proto::violation::Abort::AuthFailed { message: "authentication failed".to_owned() },
        why: format!("authenticator {} failed: {uri}", ask.authenticator.procedure),
    })?;
    let answer = args.into_iter().next().ok_or_else(|| bad(&ask, "no result"))?;
    let claimed = ask.authid.as_deref();
    let (id, dict) = identity(&ask, claimed, &answer)?;
    match (m, ask.at.clone()) {
        (AuthMethod::Ticket | AuthMethod::Tls, _) => Ok(Step::Granted(Granted {
            method: m,
            provider: "dynamic",
            authid: id.authid.clone(),
            role: id.role.clone(),
            extra: id.extra.clone().unwrap_or_default(),
            realm: id.realm.clone(),
        })),
        (AuthMethod::Wampcra, _) => {
            let p = cra_principal(&ask, id, dict)?;
            let authid = p.id.authid.clone();
            Ok(super::cra_challenge(hello, &authid, Some(p), false, "dynamic", rng))
        }
        (AuthMethod::Cryptosign, Some(AskAt::Cryptosign { pubkey })) => {
            let key = dict.and_then(|d| d.get("pubkey")).and_then(Value::as_str);
            // The authenticator must vouch for the key the client showed.
            let vouched = key.and_then(super::cryptosign::parse_pubkey) == Some(pubkey);
            let authid = id.authid.clone();
            let principal = vouched.then(|| CryptosignPrincipal { id, authorized_keys: vec![pubkey] });
            Ok(super::cryptosign_challenge(Some(&authid), pubkey, principal, "dynamic", rng))
        }
        (AuthMethod::Scram, Some(AskAt::Scram { client_nonce })) => {
            let p = scram_principal(&ask, id, dict)?;
            let authid = p.id.authid.clone();
            Ok(super::scram_challenge(&authid, &client_nonce, Some(p), "dynamic", rng))
        }
        _ => Err(bad(&ask, "unexpected state")),
    }
}

fn bad(ask: &Ask, what: &str) -> Refused {
    Refused {
        method: Some(ask.method),
        abort: crate::proto::violation::Abort::AuthFailed { message: "authentication failed".to_owned() },
        why: format!("authenticator {} answered badly: {what}", ask.authenticator.procedure),
    }
}

/// A role string, or a dict with at least `role`.
fn identity<'a>(ask: &Ask, claimed: Option<&str>, answer: &'a Value) -> Result<(Identity, Option<&'a Dict>), Refused> {
    let (role, dict) = match answer {
        Value::Str(role) => (role.as_str(), None),
        Value::Dict(d) => (d.get("role").and_then(Value::as_str).ok_or_else(|| bad(ask, "no role"))?, Some(d)),
        _ => return Err(bad(ask, "neither a role string nor a dict")),
    };
    if role.is_empty() || role.len() > limits::AUTHID_MAX_BYTES {
        return Err(bad(ask, "empty or too long role"));
    }
    let authid = dict.and_then(|d| d.get("authid")).and_then(Value::as_str).or(claimed);
    let authid = authid.ok_or_else(|| bad(ask, "no authid (the client sent none)"))?;
    if authid.is_empty() || authid.len() > limits::AUTHID_MAX_BYTES {
        return Err(bad(ask, "empty or too long authid"));
    }
    let realm = dict.and_then(|d| d.get("realm")).and_then(Value::as_str).map(Arc::from);
    let extra = dict.and_then(|d| d.get("extra")).and_then(Value::as_dict).cloned();
    Ok((Identity { authid: Arc::from(authid), role: Arc::from(role), realm, extra }, dict))
}

fn cra_principal(ask: &Ask, id: Identity, dict: Option<&Dict>) -> Result<CraPrincipal, Refused> {
    let d = dict.ok_or_else(|| bad(ask, "wampcra needs a dict with `secret`"))?;
    let secret = d.get("secret").and_then(Value::as_str).ok_or_else(|| bad(ask, "no secret"))?;
    let salt = match d.get("salt").and_then(Value::as_str) {
        None => None,
        Some(salt) => {
            let iterations = d.get("iterations").and_then(Value::as_u64).unwrap_or(1000);
            let keylen = d.get("keylen").and_then(Value::as_u64).unwrap_or(32);
            // Deriving the key runs on the shard: keep it small (a static principal's
            // salted key is derived once, at config load, and has no such cap).
            if iterations == 0 || iterations > limits::DYNAMIC_CRA_ITERATIONS_MAX || keylen == 0 || keylen > 64 {
                return Err(bad(ask, "salted secret with iterations or keylen out of range"));
            }
            Some(CraSalt { salt: salt.to_owned(), iterations: iterations as u32, keylen: keylen as u32 })
        }
    };
    let key = match &salt {
        None => secret.as_bytes().to_vec(),
        Some(s) => wampcra::derive_key(secret, &s.salt, s.iterations, s.keylen as usize),
    };
    Ok(CraPrincipal { id, key: Secret(key), salt })
}

fn scram_principal(ask: &Ask, id: Identity, dict: Option<&Dict>) -> Result<ScramPrincipal, Refused> {
    let d = dict.ok_or_else(|| bad(ask, "scram needs a dict with the SCRAM record"))?;
    let text = |k: &str, alt: &str| d.get(k).or_else(|| d.get(alt)).and_then(Value::as_str);
    let hex_of = |k: &str, alt: &str| text(k, alt).and_then(secret::hex_decode);
    let kdf = text("kdf", "kdf").unwrap_or("argon2id-13");
    if super::scram::Kdf::parse(kdf).is_none() {
        return Err(bad(ask, "unknown kdf"));
    }
    let num = |k: &str| d.get(k).and_then(Value::as_u64).filter(|n| *n > 0 && *n <= u64::from(u32::MAX));
    Ok(ScramPrincipal {
        id,
        kdf: kdf.to_owned(),
        iterations: num("iterations").ok_or_else(|| bad(ask, "no iterations"))? as u32,
        memory: num("memory").unwrap_or(512) as u32,
        salt: hex_of("salt", "salt").ok_or_else(|| bad(ask, "no salt (hex)"))?,
        stored_key: Secret(hex_of("stored_key", "stored-key").ok_or_else(|| bad(ask, "no stored_key (hex)"))?),
        server_key: Secret(hex_of("server_key", "server-key").ok_or_else(|| bad(ask, "no server_key (hex)"))?),
    })
}
