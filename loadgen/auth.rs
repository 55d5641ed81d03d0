//! The client side of WAMP authentication: what HELLO announces, and how a CHALLENGE is
//! answered, for `anonymous`, `ticket`, `wampcra` and `cryptosign` — as Autobahn|Python
//! and Autobahn|JS put them on the wire — and `tls` (the client certificate is the
//! credential; no CHALLENGE).
//!
//! The cryptography is the library's (`shardbar::proto::auth`, the functions the router's
//! own tests check against Autobahn): `wampcra` for HMAC-SHA256 and PBKDF2-HMAC-SHA256,
//! `cryptosign` for Ed25519, `secret` for hex. This file holds no sockets and no state
//! machine: `client.rs` calls [`Credentials::hello_details`] when it builds HELLO
//! and [`Credentials::answer`] when a CHALLENGE arrives.
//!
//! Wire facts (shared/WAMP-ADVANCED-NOTES.md A.1):
//! - ticket: AUTHENTICATE.Signature is the ticket itself.
//! - wampcra: Signature = base64(HMAC-SHA256(key, CHALLENGE.extra.challenge)); the key is the
//!   secret, or with `salt` in the challenge the *base64 text* of
//!   PBKDF2-HMAC-SHA256(secret, salt as UTF-8, iterations (1000), keylen (32)).
//! - cryptosign: HELLO.authextra.pubkey = hex(public key); Signature =
//!   hex(signature ‖ challenge), the NaCl "signed message" of the 32 challenge bytes.
//!   Channel binding (`tls-unique`) is not offered.

use std::fmt;
use std::sync::Mutex;

// The authentication method a session offers in HELLO: the library's list; loadgen does all
// but `scram` (`tls`: the TLS client certificate, `--tls-cert`, identifies the session).
use shardbar::limits::{WAMPCRA_ITERATIONS_DEFAULT, WAMPCRA_KEYLEN_DEFAULT_BYTES};
pub use shardbar::proto::auth::AuthMethod;
use shardbar::proto::auth::{cryptosign, secret, wampcra};
use shardbar::proto::wire::{Dict, Message, Value};

/// Most PBKDF2 iterations loadgen accepts from a challenge: the router controls the
/// number, and a huge one would stall a worker (Crossbar configs use thousands).
const CRA_ITERATIONS_MAX: u64 = 10_000_000;

/// Longest derived key a challenge may ask for (bytes).
const CRA_KEYLEN_MAX: u64 = 1024;

/// The secret a method needs.
enum Secret {
    None,
    Ticket(String),
    Cra {
        secret: String,
        derived: Mutex<Option<DerivedKey>>,
    },
    /// The Ed25519 seed, and the hex public key HELLO announces (derived once).
    Cryptosign {
        seed: Box<[u8; 32]>,
        pubkey_hex: String,
    },
}

/// The last salted WAMP-CRA key: every session of a run gets the same salt, and deriving
/// it (`iterations` HMACs) per login would measure loadgen instead of the router.
struct DerivedKey {
    salt: String,
    iterations: u32,
    keylen: usize,
    /// The ASCII bytes of the base64 text ([`wampcra::derive_key`]'s output).
    key: Vec<u8>,
}

/// Who the sessions of a run say they are. Shared by every session (read-only but for the
/// derived-key cache).
pub struct Credentials {
    /// None: HELLO carries no authentication keys at all (the plain, anonymous default).
    method: Option<AuthMethod>,
    authid: Option<String>,
    authrole: Option<String>,
    secret: Secret,
}

impl fmt::Debug for Credentials {
    // Never print a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("method", &self.method)
            .field("authid", &self.authid)
            .field("authrole", &self.authrole)
            .finish_non_exhaustive()
    }
}

/// What the command line gave for authentication.
#[derive(Clone, Debug, Default)]
pub struct AuthArgs {
    pub method: Option<AuthMethod>,
    pub authid: Option<String>,
    pub authrole: Option<String>,
    pub ticket: Option<String>,
    pub secret: Option<String>,
    pub cryptosign_seed: Option<String>,
}

impl Credentials {
    /// No authentication: HELLO as before.
    pub fn none() -> Credentials {
        Credentials { method: None, authid: None, authrole: None, secret: Secret::None }
    }

    /// Check that the method has what it needs and prepare it (parse the seed once).
    pub fn from_args(a: &AuthArgs) -> Result<Credentials, String> {
        let Some(method) = a.method else {
            if a.ticket.is_some() || a.secret.is_some() || a.cryptosign_seed.is_some() {
                return Err("--ticket, --secret and --cryptosign-seed need --authmethod".into());
            }
            return Ok(Credentials {
                method: None,
                authid: a.authid.clone(),
                authrole: a.authrole.clone(),
                secret: Secret::None,
            });
        };
        let need = |v: &Option<String>, flag: &str| {
            v.clone().ok_or_else(|| format!("--authmethod {} needs {flag}", method.name()))
        };
        let secret = match method {
            AuthMethod::Scram => return Err("loadgen does not do --authmethod scram".into()),
            AuthMethod::Anonymous | AuthMethod::Tls => Secret::None,
            AuthMethod::Ticket => Secret::Ticket(need(&a.ticket, "--ticket")?),
            AuthMethod::Wampcra => Secret::Cra { secret: need(&a.secret, "--secret")?, derived: Mutex::new(None) },
            AuthMethod::Cryptosign => {
                let seed = parse_seed(&need(&a.cryptosign_seed, "--cryptosign-seed")?)?;
                Secret::Cryptosign { pubkey_hex: public_key_hex(&seed), seed: Box::new(seed) }
            }
        };
        if matches!(method, AuthMethod::Ticket | AuthMethod::Wampcra) && a.authid.is_none() {
            return Err(format!("--authmethod {} needs --authid", method.name()));
        }
        Ok(Credentials { method: Some(method), authid: a.authid.clone(), authrole: a.authrole.clone(), secret })
    }

    /// Add `authmethods`, `authid`, `authrole` and `authextra` (cryptosign's `pubkey`) to
    /// HELLO.Details.
    pub fn hello_details(&self, mut details: Dict) -> Dict {
        if let Some(m) = self.method {
            details.insert("authmethods", Value::List(vec![Value::str(m.name())]));
        }
        if let Some(id) = &self.authid {
            details.insert("authid", id.as_str());
        }
        if let Some(role) = &self.authrole {
            details.insert("authrole", role.as_str());
        }
        if let Secret::Cryptosign { pubkey_hex, .. } = &self.secret {
            details.insert("authextra", Dict::new().with("pubkey", pubkey_hex.as_str()));
        }
        details
    }

    /// The AUTHENTICATE answering a CHALLENGE, or why there is none (wrong method, a
    /// malformed challenge).
    pub fn answer(&self, authmethod: &str, extra: &Dict) -> Result<Message, String> {
        let offered = self.method.map_or("none", AuthMethod::name);
        if authmethod != offered {
            return Err(format!("router challenged for {authmethod:?}, loadgen offered {offered}"));
        }
        let signature = match &self.secret {
            Secret::None => return Err(format!("router challenged {authmethod:?} with nothing to answer")),
            Secret::Ticket(t) => t.clone(),
            Secret::Cra { secret, derived } => {
                let challenge = str_field(extra, "challenge")?;
                match cra_salt(extra)? {
                    None => wampcra::signature(secret.as_bytes(), challenge),
                    Some((salt, iterations, keylen)) => {
                        let key = self.cached_key(secret, derived, salt, iterations, keylen);
                        wampcra::signature(&key, challenge)
                    }
                }
            }
            Secret::Cryptosign { seed, .. } => {
                if let Some(cb) = extra.get("channel_binding").and_then(Value::as_str) {
                    return Err(format!("router asked for channel binding {cb:?}, which loadgen does not do"));
                }
                cryptosign_signature(seed, str_field(extra, "challenge")?)?
            }
        };
        Ok(Message::Authenticate { signature, extra: Dict::new() })
    }

    fn cached_key(
        &self,
        secret: &str,
        derived: &Mutex<Option<DerivedKey>>,
        salt: &str,
        iterations: u32,
        keylen: usize,
    ) -> Vec<u8> {
        // A poisoned lock only means another worker panicked mid-derivation: derive afresh.
        let mut cache = derived.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = &*cache
            && d.salt == salt
            && d.iterations == iterations
            && d.keylen == keylen
        {
            return d.key.clone();
        }
        let key = wampcra::derive_key(secret, salt, iterations, keylen);
        *cache = Some(DerivedKey { salt: salt.to_owned(), iterations, keylen, key: key.clone() });
        key
    }
}

fn str_field<'a>(extra: &'a Dict, key: &str) -> Result<&'a str, String> {
    extra.get(key).and_then(Value::as_str).ok_or_else(|| format!("CHALLENGE.extra has no string {key:?}"))
}

/// `(salt, iterations, keylen)` of a salted WAMP-CRA challenge, bounded; None unsalted.
fn cra_salt(extra: &Dict) -> Result<Option<(&str, u32, usize)>, String> {
    let Some(salt) = extra.get("salt").and_then(Value::as_str) else { return Ok(None) };
    let number = |key: &str, default: u64, max: u64| -> Result<u64, String> {
        match extra.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("CHALLENGE.extra.{key} {v:?} is not a count in 1..={max}")),
            },
        }
    };
    // A salted challenge that omits them gets Autobahn's defaults.
    let iterations = number("iterations", u64::from(WAMPCRA_ITERATIONS_DEFAULT), CRA_ITERATIONS_MAX)?;
    let keylen = number("keylen", WAMPCRA_KEYLEN_DEFAULT_BYTES as u64, CRA_KEYLEN_MAX)?;
    // Both bounded above, far below u32::MAX.
    Ok(Some((salt, iterations as u32, keylen as usize)))
}

/// cryptosign: hex(Ed25519 signature of the challenge bytes ‖ the challenge bytes), lower
/// case.
pub fn cryptosign_signature(seed: &[u8; 32], challenge_hex: &str) -> Result<String, String> {
    let challenge =
        secret::hex_decode(challenge_hex).ok_or_else(|| format!("challenge {challenge_hex:?} is not hex"))?;
    let challenge: [u8; cryptosign::CHALLENGE_BYTES] = challenge
        .try_into()
        .map_err(|c: Vec<u8>| format!("challenge is {} bytes, not {}", c.len(), cryptosign::CHALLENGE_BYTES))?;
    Ok(cryptosign::sign_challenge(seed, &challenge))
}

/// The hex public key of a seed (what a router's `authorized_keys` lists).
pub fn public_key_hex(seed: &[u8; 32]) -> String {
    secret::hex_encode(&cryptosign::keypair_from_seed(seed))
}

/// `--cryptosign-seed`: 64 hex characters.
pub fn parse_seed(s: &str) -> Result<[u8; 32], String> {
    let mut seed = [0u8; 32];
    if !secret::hex_decode_into(s.trim(), &mut seed) {
        return Err("--cryptosign-seed must be 64 hex characters (a 32-byte Ed25519 seed)".to_owned());
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: Ed25519 signing from a seed is RFC 8032's. Method: its test vector 1 (empty
    // message) and 2 (one byte 0x72), signature and public key.
    #[test]
    fn ed25519_rfc8032_vectors() {
        let seed = parse_seed("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
        assert_eq!(public_key_hex(&seed), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let sig = cryptosign::sign(&seed, b"");
        assert_eq!(
            secret::hex_encode(&sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        let seed = parse_seed("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb").unwrap();
        let sig = cryptosign::sign(&seed, &[0x72]);
        assert_eq!(
            secret::hex_encode(&sig),
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        );
    }

    // Goal: WAMP-CRA and cryptosign answers are byte for byte what Autobahn|Python 26.11
    // computes. Method: vectors printed by `autobahn.wamp.auth.compute_wcs`/`derive_key`
    // and `CryptosignKey.sign_challenge` (seed 00 01 … 1f, challenge 64 65 … 83).
    #[test]
    fn autobahn_vectors() {
        let challenge = r#"{"authid": "svc", "authrole": "backend", "authmethod": "wampcra", "authprovider": "static", "session": 123, "nonce": "abc", "timestamp": "2026-12-04T20:00:00.000Z"}"#;
        assert_eq!(wampcra::signature(b"s3cr3t", challenge), "tPdCVvIV4K19tKfUtfrrlqoL8qcgnr0RcZ5XwGrqB3o=");
        let key = wampcra::derive_key("s3cr3t", "salt123", 1000, 32);
        assert_eq!(key, b"TSMRO/U+jxq60liTV2uxuO6RgKFN022eOOelapaApxk=");
        assert_eq!(wampcra::signature(&key, challenge), "WELTUdWGbnaNbufcdzq/TbXHqDeJjbDI6SeokBOyuU0=");
        assert_eq!(wampcra::derive_key("secret2", "pepper", 100, 16), b"YHtOqS57wWhuDAiZhWs90g==");

        // Through the CHALLENGE path: salted (iterations and keylen from the challenge).
        let a = AuthArgs { secret: Some("s3cr3t".into()), ..args(AuthMethod::Wampcra) };
        let c = Credentials::from_args(&a).unwrap();
        let extra = Dict::new()
            .with("challenge", challenge)
            .with("salt", "salt123")
            .with("iterations", Value::UInt(1000))
            .with("keylen", Value::UInt(32));
        for _ in 0..2 {
            // The second answer comes from the derived-key cache.
            let Message::Authenticate { signature, .. } = c.answer("wampcra", &extra).unwrap() else { panic!() };
            assert_eq!(signature, "WELTUdWGbnaNbufcdzq/TbXHqDeJjbDI6SeokBOyuU0=");
        }

        let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(public_key_hex(&seed), "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8");
        let challenge: Vec<u8> = (100..132).collect();
        let a = AuthArgs {
            method: Some(AuthMethod::Cryptosign),
            cryptosign_seed: Some(secret::hex_encode(&seed)),
            ..AuthArgs::default()
        };
        let c = Credentials::from_args(&a).unwrap();
        let extra = Dict::new().with("challenge", secret::hex_encode(&challenge)).with("channel_binding", Value::Null);
        let Message::Authenticate { signature, .. } = c.answer("cryptosign", &extra).unwrap() else { panic!() };
        assert_eq!(
            signature,
            "0e6d264980051744d1e68c83a5c480a44aaf8178de36baa71b3c95eeaa825b1d\
             5a435bbd6ea103d1e39a82d6b134f59f56c38c4d1496e64227847dba0552e80e\
             6465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80818283"
        );
        let bound = extra.with("channel_binding", "tls-unique");
        assert!(c.answer("cryptosign", &bound).is_err(), "channel binding is refused, not ignored");
    }

    // Goal: the hex helpers loadgen uses round-trip and reject what is not hex.
    #[test]
    fn hex_round_trip() {
        assert_eq!(secret::hex_decode(&secret::hex_encode(&[0, 1, 0xab, 0xff])).unwrap(), vec![0, 1, 0xab, 0xff]);
        assert_eq!(secret::hex_decode("ABcd").unwrap(), vec![0xab, 0xcd]);
        assert!(secret::hex_decode("abc").is_none());
        assert!(secret::hex_decode("zz").is_none());
        assert!(parse_seed("00").is_err());
    }

    fn args(method: AuthMethod) -> AuthArgs {
        AuthArgs { method: Some(method), authid: Some("joe".into()), ..AuthArgs::default() }
    }

    // Goal: each method's HELLO keys and the flags it requires. Method: build credentials
    // from flags and read the details back.
    #[test]
    fn hello_details_and_required_flags() {
        let none = Credentials::from_args(&AuthArgs::default()).unwrap();
        assert!(none.hello_details(Dict::new()).is_empty());
        assert!(Credentials::from_args(&args(AuthMethod::Ticket)).is_err(), "ticket without --ticket");
        assert!(Credentials::from_args(&args(AuthMethod::Wampcra)).is_err(), "wampcra without --secret");
        assert!(Credentials::from_args(&args(AuthMethod::Scram)).is_err(), "loadgen does not do scram");
        let no_id = AuthArgs { method: Some(AuthMethod::Ticket), ticket: Some("t".into()), ..AuthArgs::default() };
        assert!(Credentials::from_args(&no_id).is_err(), "ticket without --authid");
        let a = AuthArgs { ticket: Some("t".into()), ..args(AuthMethod::Ticket) };
        let d = Credentials::from_args(&a).unwrap().hello_details(Dict::new());
        assert_eq!(d.get("authmethods"), Some(&Value::List(vec![Value::str("ticket")])));
        assert_eq!(d.get("authid").and_then(Value::as_str), Some("joe"));
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let a = AuthArgs {
            method: Some(AuthMethod::Cryptosign),
            cryptosign_seed: Some(seed.into()),
            ..AuthArgs::default()
        };
        let d = Credentials::from_args(&a).unwrap().hello_details(Dict::new());
        let pubkey = d.get("authextra").and_then(Value::as_dict).and_then(|e| e.get("pubkey")).and_then(Value::as_str);
        assert_eq!(pubkey, Some("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
        assert!(d.get("authid").is_none(), "cryptosign may omit authid");
    }

    // Goal: answers are refused for a method loadgen did not offer, and for malformed
    // challenges; a ticket answer is the ticket itself.
    #[test]
    fn answers() {
        let a = AuthArgs { ticket: Some("s3cret".into()), ..args(AuthMethod::Ticket) };
        let c = Credentials::from_args(&a).unwrap();
        assert_eq!(
            c.answer("ticket", &Dict::new()).unwrap(),
            Message::Authenticate { signature: "s3cret".into(), extra: Dict::new() }
        );
        assert!(c.answer("wampcra", &Dict::new()).is_err());
        let a = AuthArgs { secret: Some("x".into()), ..args(AuthMethod::Wampcra) };
        let c = Credentials::from_args(&a).unwrap();
        assert!(c.answer("wampcra", &Dict::new()).is_err(), "no challenge text");
        let huge = Dict::new().with("challenge", "{}").with("salt", "s").with("iterations", Value::UInt(u64::MAX));
        assert!(c.answer("wampcra", &huge).is_err(), "unbounded iterations");
    }
}
