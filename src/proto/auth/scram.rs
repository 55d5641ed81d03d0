//! WAMP-SCRAM as Autobahn|Python and Crossbar compute it: the server nonce, the
//! AuthMessage, checking a ClientProof, the ServerSignature, and deriving the stored
//! credential from a password.
//!
//! The exchange, and where it departs from the WAMP spec (Autobahn is what clients run):
//! - HELLO.authextra `{nonce: base64(16 random bytes)}`; Crossbar denies a nonce that is
//!   not base64, and the authid goes through SASLprep ([`normalize_authid`]) but is not
//!   `=2C`/`=3D`-escaped as the spec says.
//! - CHALLENGE `{nonce: server_nonce(..), salt: encode_salt(salt), kdf: Kdf::as_str(),
//!   iterations, memory}`. Autobahn refuses any other key, and two more traps: a
//!   `channel_binding: null` key turns into the text `c=None` in its AuthMessage, so leave
//!   the key out; and for pbkdf2 leave `memory` out (Autobahn reads `int(memory)` when the
//!   key is present; its pbkdf2 path fails anyway, see [`derive_credential`]).
//! - AUTHENTICATE signature = base64(ClientProof), no extra; check it with [`verify_proof`]
//!   against the [`auth_message`], whose channel-binding part is the empty `c=` (the spec
//!   has `c=biws`).
//! - WELCOME.authextra `scram_server_signature` = [`server_signature`] (Autobahn reads that
//!   key and fails without it); the spec's `verifier` is `"v=" +` the same text.
//!
//! The router stores only StoredKey and ServerKey and never runs the KDF at login;
//! [`derive_credential`] is for `shardbar credential scram` and tests. No I/O, no
//! randomness here: random bytes come in as arguments.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::secret;
use crate::limits;

/// The key derivation function of a stored credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// Argon2id, version 1.3, parallelism 1, 32-byte output.
    Argon2id13,
    /// PBKDF2-HMAC-SHA256, 32-byte output.
    Pbkdf2,
}

impl Kdf {
    /// `"argon2id-13"` (Autobahn, Crossbar) or `"argon2id13"` (the WAMP spec), or
    /// `"pbkdf2"`.
    pub fn parse(s: &str) -> Option<Kdf> {
        match s {
            "argon2id-13" | "argon2id13" => Some(Kdf::Argon2id13),
            "pbkdf2" => Some(Kdf::Pbkdf2),
            _ => None,
        }
    }

    /// The name for CHALLENGE.extra.kdf and configs: Autobahn accepts only these spellings.
    pub fn as_str(self) -> &'static str {
        match self {
            Kdf::Argon2id13 => "argon2id-13",
            Kdf::Pbkdf2 => "pbkdf2",
        }
    }
}

/// The CHALLENGE nonce: the client's base64 nonce text followed by base64(`random`). It
/// starts with the client nonce, as the spec requires a client to check (Crossbar's
/// base64(client bytes ‖ random) does not, since 16 bytes do not end on a base64 boundary).
pub fn server_nonce(client_nonce_b64: &str, random: &[u8; 16]) -> String {
    format!("{client_nonce_b64}{}", secret::base64_encode(random))
}

/// The salt as CHALLENGE.extra.salt carries it and the AuthMessage quotes it: standard
/// padded base64.
pub fn encode_salt(salt: &[u8]) -> String {
    secret::base64_encode(salt)
}

/// The authid as the AuthMessage quotes it: SASLprep (RFC 4013), as Autobahn's client
/// (passlib `saslprep`) and Crossbar apply it. `None` when SASLprep forbids the string
/// (control characters, private use, bad bidi): Autobahn cannot log in with such an authid,
/// so deny it at HELLO. Characters "commonly mapped to nothing" (RFC 3454 B.1) are dropped
/// first, as passlib does: U+200B is in both B.1 and the space table C.1.2, and passlib
/// drops it where a mapping to space would keep it.
pub fn normalize_authid(authid: &str) -> Option<String> {
    let mapped: String = authid.chars().filter(|&c| !stringprep::tables::commonly_mapped_to_nothing(c)).collect();
    stringprep::saslprep(&mapped).ok().map(|s| s.into_owned())
}

/// Autobahn's AuthMessage: `n=<saslprep(authid)>,r=<client nonce>,r=<server nonce>,
/// s=<base64 salt>,i=<iterations>,c=,r=<server nonce>`. An authid SASLprep refuses is used
/// as is (see [`normalize_authid`]; no Autobahn client gets this far with one).
pub fn auth_message(authid: &str, client_nonce: &str, server_nonce: &str, salt: &[u8], iterations: u32) -> String {
    let authid = normalize_authid(authid).unwrap_or_else(|| authid.to_owned());
    let salt = encode_salt(salt);
    format!("n={authid},r={client_nonce},r={server_nonce},s={salt},i={iterations},c=,r={server_nonce}")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length (long keys are hashed), so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Whether `proof_b64` (base64(ClientProof), padded or not) proves knowledge of the
/// password behind `stored_key`: SHA-256(HMAC(StoredKey, AuthMessage) XOR proof) must equal
/// StoredKey, compared in constant time.
pub fn verify_proof(stored_key: &[u8], auth_message: &str, proof_b64: &str) -> bool {
    let Some(proof) = secret::base64_decode(proof_b64) else { return false };
    let client_signature = hmac_sha256(stored_key, auth_message.as_bytes());
    if proof.len() != client_signature.len() {
        return false;
    }
    let client_key: Vec<u8> = client_signature.iter().zip(&proof).map(|(s, p)| s ^ p).collect();
    secret::ct_eq(&Sha256::digest(&client_key), stored_key)
}

/// base64(HMAC(ServerKey, AuthMessage)): WELCOME.authextra.scram_server_signature, which
/// Autobahn's client checks.
pub fn server_signature(server_key: &[u8], auth_message: &str) -> String {
    secret::base64_encode(&hmac_sha256(server_key, auth_message.as_bytes()))
}

/// Why KDF parameters cannot be used, or `Ok`: what [`derive_credential`] needs, and what a
/// stored credential must satisfy for a client to compute its proof.
pub fn check_params(kdf: Kdf, salt_len: usize, iterations: u32, memory_kib: u32) -> Result<(), String> {
    if salt_len < limits::SCRAM_SALT_MIN_BYTES {
        return Err(format!("the salt must be at least {} bytes", limits::SCRAM_SALT_MIN_BYTES));
    }
    if !(1..=limits::SCRAM_ITERATIONS_CEILING).contains(&iterations) {
        return Err(format!("iterations must be from 1 to {}", limits::SCRAM_ITERATIONS_CEILING));
    }
    let memory = limits::SCRAM_ARGON2_MEMORY_MIN_KIB..=limits::SCRAM_ARGON2_MEMORY_CEILING_KIB;
    if kdf == Kdf::Argon2id13 && !memory.contains(&memory_kib) {
        return Err(format!("memory must be from {} to {} KiB", memory.start(), memory.end()));
    }
    Ok(())
}

/// StoredKey and ServerKey for `password`, as Autobahn's `derive_scram_credential` computes
/// them for argon2id-13: SaltedPassword is the *unpadded base64 text* of the Argon2id hash
/// (the PHC string's hash field), not its bytes. The password is used as UTF-8, without
/// SASLprep (Autobahn applies none). For pbkdf2, SaltedPassword is the 32 raw bytes of
/// PBKDF2-HMAC-SHA256(password, salt, iterations), as the spec says: Autobahn|Python's
/// pbkdf2 path fails before computing anything, so no Autobahn client can use it.
/// `memory_kib` is ignored for pbkdf2.
///
/// # Panics
/// If [`check_params`] refuses the parameters; callers check first.
pub fn derive_credential(
    password: &str,
    salt: &[u8],
    kdf: Kdf,
    iterations: u32,
    memory_kib: u32,
) -> ([u8; 32], [u8; 32]) {
    let salted_password = salted_password(password, salt, kdf, iterations, memory_kib);
    let client_key = hmac_sha256(&salted_password, b"Client Key");
    (Sha256::digest(client_key).into(), hmac_sha256(&salted_password, b"Server Key"))
}

/// The client's side, for tests and tools: base64(ClientProof) for `auth_message`, from the
/// password (the KDF runs here, as in a client).
///
/// # Panics
/// As [`derive_credential`].
pub fn client_proof(
    password: &str,
    salt: &[u8],
    kdf: Kdf,
    iterations: u32,
    memory_kib: u32,
    auth_message: &str,
) -> String {
    let salted_password = salted_password(password, salt, kdf, iterations, memory_kib);
    let client_key = hmac_sha256(&salted_password, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let signature = hmac_sha256(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
    secret::base64_encode(&proof)
}

/// SaltedPassword (see [`derive_credential`]).
fn salted_password(password: &str, salt: &[u8], kdf: Kdf, iterations: u32, memory_kib: u32) -> Vec<u8> {
    if let Err(e) = check_params(kdf, salt.len(), iterations, memory_kib) {
        panic!("SCRAM key derivation: {e}");
    }
    let mut hash = [0u8; 32];
    match kdf {
        Kdf::Argon2id13 => {
            let params = Params::new(memory_kib, iterations, 1, Some(hash.len())).expect("check_params bounds these");
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(password.as_bytes(), salt, &mut hash)
                .expect("check_params bounds the salt length");
            STANDARD_NO_PAD.encode(hash).into_bytes()
        }
        Kdf::Pbkdf2 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut hash);
            hash.to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from Autobahn|Python 26.10.2 (argon2-cffi 25.1.0, passlib 1.7.4): `AuthScram`
    // driven with a fake CHALLENGE (`on_challenge` gives the proof and `_auth_message`;
    // `on_welcome` accepts the server signature), and `derive_scram_credential`.
    // Regenerate: tests/interop/gen_auth_vectors.py.
    struct Exchange {
        authid: &'static str,
        password: &'static str,
        client_nonce: &'static str,
        random: &'static str,
        server_nonce: &'static str,
        salt: &'static str,
        iterations: u32,
        memory: u32,
        auth_message: &'static str,
        proof: &'static str,
        stored_key: &'static str,
        server_key: &'static str,
        server_signature: &'static str,
    }

    /// Autobahn's defaults (4096 iterations, 512 KiB): `derive_scram_credential("alice",
    /// "secret123", salt)` gave these stored and server keys.
    const FULL: Exchange = Exchange {
        authid: "alice",
        password: "secret123",
        client_nonce: "ABEiM0RVZneImaq7zN3u/w==",
        random: "f0e1d2c3b4a5968778695a4b3c2d1e0f",
        server_nonce: "ABEiM0RVZneImaq7zN3u/w==8OHSw7Sllod4aVpLPC0eDw==",
        salt: "5ee0a9b1c2d3e4f5061728394a5b6c7d",
        iterations: 4096,
        memory: 512,
        auth_message: "n=alice,r=ABEiM0RVZneImaq7zN3u/w==,r=ABEiM0RVZneImaq7zN3u/w==8OHSw7Sllod4aVpLPC0eDw==,\
            s=XuCpscLT5PUGFyg5SltsfQ==,i=4096,c=,r=ABEiM0RVZneImaq7zN3u/w==8OHSw7Sllod4aVpLPC0eDw==",
        proof: "4VpULbBPEBU2CXCWOSZxmgAr4pIEXq8a1VXj9EQw5Kg=",
        stored_key: "dd2ae399dc04561536d07b886e04619158debe6bb5c526e94a40f76bd89544d6",
        server_key: "43bbf8b881c9684f925d90be81f4d79f7e58465f7cca7787de038cc882db1e52",
        server_signature: "uxzQ9bgeSidZkTWstUV30xliC5s0qoOasnmcEFk7WY0=",
    };

    /// Cheap parameters, a non-ASCII password, and an authid SASLprep changes (soft hyphen
    /// dropped, no-break space to space).
    const SMALL: Exchange = Exchange {
        authid: "Al\u{ad}ice\u{a0}B",
        password: "pässwörd",
        client_nonce: "AAECAwQFBgcICQoLDA0ODw==",
        random: "6465666768696a6b6c6d6e6f70717273",
        server_nonce: "AAECAwQFBgcICQoLDA0ODw==ZGVmZ2hpamtsbW5vcHFycw==",
        salt: "c8c9cacbcccdcecfd0d1d2d3d4d5d6d7",
        iterations: 3,
        memory: 64,
        auth_message: "n=Alice B,r=AAECAwQFBgcICQoLDA0ODw==,r=AAECAwQFBgcICQoLDA0ODw==ZGVmZ2hpamtsbW5vcHFycw==,\
            s=yMnKy8zNzs/Q0dLT1NXW1w==,i=3,c=,r=AAECAwQFBgcICQoLDA0ODw==ZGVmZ2hpamtsbW5vcHFycw==",
        proof: "yXnsmrzC0Xdq/x3Q/wbK3fm/kRDgeZ2vwTluVlJlzow=",
        stored_key: "2684dcfe1a9250762cdc83140a0affd403dc63b7b4bf47fde09a4703c27db1a7",
        server_key: "3ca1719d99fa475b20a8a2e8a7555ab37ae392e1927d6d20e39607d407dce967",
        server_signature: "mjT1PscUgUvI6s4jyj2IxMZ4qlxK376+YEvi+WhYR5Q=",
    };

    fn hex(s: &str) -> Vec<u8> {
        secret::hex_decode(s).unwrap()
    }

    /// The router's side of one exchange, from the stored credential only.
    fn router_side(x: &Exchange) {
        let random: [u8; 16] = hex(x.random).try_into().unwrap();
        let server_nonce = server_nonce(x.client_nonce, &random);
        assert_eq!(server_nonce, x.server_nonce);
        assert!(server_nonce.starts_with(x.client_nonce));
        let am = auth_message(x.authid, x.client_nonce, &server_nonce, &hex(x.salt), x.iterations);
        assert_eq!(am, x.auth_message);
        let (stored, server) = (hex(x.stored_key), hex(x.server_key));
        assert!(verify_proof(&stored, &am, x.proof));
        assert!(verify_proof(&stored, &am, x.proof.trim_end_matches('=')), "unpadded");
        assert_eq!(server_signature(&server, &am), x.server_signature);
        // Another exchange's proof, another AuthMessage, another stored key: refused.
        let other = if x.proof == FULL.proof { SMALL.proof } else { FULL.proof };
        assert!(!verify_proof(&stored, &am, other));
        assert!(!verify_proof(&stored, &am.replacen("i=", "i=1", 1), x.proof));
        assert!(!verify_proof(&server, &am, x.proof));
        for bad in ["", "not base64", &x.proof[..20], &format!("{}AAAA", x.proof)] {
            assert!(!verify_proof(&stored, &am, bad), "{bad:?}");
        }
    }

    #[test]
    fn router_side_matches_autobahn() {
        // Goal: an Autobahn client's proof passes and its on_welcome accepts our server
        // signature. Method: replay Autobahn's exchanges from the stored keys alone.
        router_side(&FULL);
        router_side(&SMALL);
    }

    #[test]
    fn credential_matches_derive_scram_credential_and_logs_in() {
        // Goal: `shardbar credential scram`'s math is Autobahn's, and what it stores lets
        // Autobahn's client in. Method: derive both records, compare with Autobahn's, and
        // check the client side (our `client_proof`) gives Autobahn's proofs.
        for x in [&FULL, &SMALL] {
            let (stored, server) = derive_credential(x.password, &hex(x.salt), Kdf::Argon2id13, x.iterations, x.memory);
            assert_eq!(secret::hex_encode(&stored), x.stored_key);
            assert_eq!(secret::hex_encode(&server), x.server_key);
            let proof = client_proof(x.password, &hex(x.salt), Kdf::Argon2id13, x.iterations, x.memory, x.auth_message);
            assert_eq!(proof, x.proof);
        }
    }

    #[test]
    fn pbkdf2_follows_the_spec_rfc7677_vector() {
        // Goal: the pbkdf2 path is plain SCRAM-SHA-256 (raw PBKDF2 bytes as SaltedPassword).
        // Method: the RFC 7677 section 3 example (its AuthMessage has the spec's c=biws).
        let salt = secret::base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let (stored, server) = derive_credential("pencil", &salt, Kdf::Pbkdf2, 4096, 0);
        let am = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        assert!(verify_proof(&stored, am, "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
        assert_eq!(server_signature(&server, am), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(
            client_proof("pencil", &salt, Kdf::Pbkdf2, 4096, 0, am),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
    }

    #[test]
    fn authid_saslprep_matches_passlib() {
        // passlib.utils.saslprep (what AuthScram applies) on the same inputs.
        let cases: &[(&str, Option<&str>)] = &[
            ("alice", Some("alice")),
            ("Al\u{ad}ice\u{a0}B", Some("Alice B")),
            ("\u{2168}", Some("IX")),
            ("I\u{ad}X", Some("IX")),
            ("a\u{200b}b", Some("ab")),
            ("ｆｕｌｌ", Some("full")),
            ("e\u{301}", Some("\u{e9}")),
            ("a\u{7}b", None),
            ("\u{627}1", None),
            ("\u{627}1\u{628}", Some("\u{627}1\u{628}")),
            ("", Some("")),
            ("\u{e000}", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_authid(input).as_deref(), *want, "{input:?}");
        }
        // Refused by SASLprep: quoted as is (no Autobahn client reaches this).
        assert!(auth_message("a\u{7}b", "c", "s", b"12345678", 1).starts_with("n=a\u{7}b,r=c,"));
    }

    #[test]
    fn kdf_names_and_parameter_checks() {
        assert_eq!(Kdf::parse("argon2id-13"), Some(Kdf::Argon2id13));
        assert_eq!(Kdf::parse("argon2id13"), Some(Kdf::Argon2id13));
        assert_eq!(Kdf::parse("pbkdf2"), Some(Kdf::Pbkdf2));
        assert_eq!(Kdf::parse("Argon2id-13"), None);
        assert_eq!(Kdf::parse("scrypt"), None);
        assert_eq!(Kdf::Argon2id13.as_str(), "argon2id-13");
        assert_eq!(Kdf::Pbkdf2.as_str(), "pbkdf2");
        assert!(check_params(Kdf::Argon2id13, 16, 4096, 512).is_ok());
        assert!(check_params(Kdf::Pbkdf2, 16, 4096, 0).is_ok(), "memory is not pbkdf2's");
        assert!(check_params(Kdf::Argon2id13, 7, 1, 512).is_err(), "short salt");
        assert!(check_params(Kdf::Argon2id13, 16, 0, 512).is_err(), "no iterations");
        assert!(check_params(Kdf::Argon2id13, 16, 1, 7).is_err(), "too little memory");
        assert!(check_params(Kdf::Pbkdf2, 16, limits::SCRAM_ITERATIONS_CEILING + 1, 0).is_err());
    }
}
