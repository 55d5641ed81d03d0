//! WAMP-CRA: the challenge text, the (salted) key and the signature, as Autobahn computes
//! them.
//!
//! The router sends `CHALLENGE.extra.challenge` = [`challenge_text`] (plus `salt`,
//! `iterations`, `keylen` for a salted secret); the client answers with
//! base64(HMAC-SHA256(key, challenge)) and the router checks it with [`verify`]. The key is
//! the secret's UTF-8 bytes, or for a salted secret [`derive_key`]'s output: the *ASCII
//! text* of base64(PBKDF2), which is what Autobahn|Python and Autobahn|JS both use as the
//! HMAC key. Deriving costs `iterations` HMACs, so do it once at config load, never per
//! login. No I/O, no clock, no randomness: the nonce and timestamp come in as arguments.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::secret;

/// Autobahn's salted key: the ASCII bytes of base64(PBKDF2-HMAC-SHA256(secret, salt,
/// iterations, keylen)), with the salt used as UTF-8 text, not decoded (Autobahn|Python
/// `auth.derive_key`, Autobahn|JS `auth/cra.js derive_key`).
///
/// Work and memory grow with `iterations` and `keylen`; callers bound them
/// (`limits::WAMPCRA_ITERATIONS_CEILING`, `limits::WAMPCRA_KEYLEN_CEILING_BYTES`).
pub fn derive_key(secret: &str, salt: &str, iterations: u32, keylen: usize) -> Vec<u8> {
    let mut key = vec![0u8; keylen];
    pbkdf2::pbkdf2_hmac::<Sha256>(secret.as_bytes(), salt.as_bytes(), iterations, &mut key);
    secret::base64_encode(&key).into_bytes()
}

/// The text Crossbar puts in `CHALLENGE.extra.challenge`: Python's
/// `json.dumps({authid, authrole, authmethod: "wampcra", authprovider, session, nonce,
/// timestamp}, ensure_ascii=False)`, keys in that order, `", "` and `": "` separators.
/// Clients sign the text as received, so only its being valid JSON matters to them; we
/// match Crossbar byte for byte anyway.
pub fn challenge_text(
    authid: &str,
    authrole: &str,
    authprovider: &str,
    session: u64,
    nonce: &str,
    timestamp: &str,
) -> String {
    let mut out = String::with_capacity(160 + authid.len() + authrole.len() + nonce.len());
    out.push_str("{\"authid\": ");
    push_json_string(&mut out, authid);
    out.push_str(", \"authrole\": ");
    push_json_string(&mut out, authrole);
    out.push_str(", \"authmethod\": \"wampcra\", \"authprovider\": ");
    push_json_string(&mut out, authprovider);
    out.push_str(", \"session\": ");
    out.push_str(&session.to_string());
    out.push_str(", \"nonce\": ");
    push_json_string(&mut out, nonce);
    out.push_str(", \"timestamp\": ");
    push_json_string(&mut out, timestamp);
    out.push('}');
    out
}

/// A JSON string as Python's `json.dumps(ensure_ascii=False)` writes it: `"` and `\`
/// escaped, the C0 controls with short forms as `\b \t \n \f \r`, the other C0 controls as
/// `\u00xx` (lower-case hex); everything else, DEL and U+2028 included, as is.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn mac(key: &[u8], challenge: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length (long keys are hashed), so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(challenge.as_bytes());
    mac
}

/// The signature a client sends: base64 (standard, padded) of HMAC-SHA256(key, challenge)
/// (Autobahn|Python `auth.compute_wcs`).
pub fn signature(key: &[u8], challenge: &str) -> String {
    secret::base64_encode(&mac(key, challenge).finalize().into_bytes())
}

/// Whether `signature_b64` (padded or unpadded base64) is the signature of `challenge`
/// under `key`. The comparison takes the same time wherever the first wrong byte is.
pub fn verify(key: &[u8], challenge: &str, signature_b64: &str) -> bool {
    match secret::base64_decode(signature_b64) {
        Some(sent) => mac(key, challenge).verify_slice(&sent).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from Autobahn|Python 26.10.2 (`AuthWampCra.on_challenge`, `auth.derive_key`,
    // `auth.compute_wcs`), confirmed equal by Autobahn|JS 22.11.1 (`lib/auth/cra.js`
    // `derive_key`, `sign`); the challenge texts are Crossbar's `json.dumps(...,
    // ensure_ascii=False)`. Regenerate: tests/interop/gen_auth_vectors.py.
    const NONCE: &str = "Fw9aT1kQ2c8Vb7LxR3mN5pE0dH6jK4sU9yZ1qW8eA2rT7uI3oP5aS6dF0gH4jK8l";
    const CHALLENGE: &str = "{\"authid\": \"svc\", \"authrole\": \"backend\", \"authmethod\": \"wampcra\", \
        \"authprovider\": \"static\", \"session\": 3251278072152162, \"nonce\": \
        \"Fw9aT1kQ2c8Vb7LxR3mN5pE0dH6jK4sU9yZ1qW8eA2rT7uI3oP5aS6dF0gH4jK8l\", \"timestamp\": \
        \"2026-12-01T10:00:00.000Z\"}";
    const ODD_AUTHID: &str = "he said \"hi\"\\\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} é€😀\u{2028}";
    const CHALLENGE_ODD: &str = "{\"authid\": \"he said \\\"hi\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\u{7f} \
        é€😀\u{2028}\", \"authrole\": \"réle\", \"authmethod\": \"wampcra\", \"authprovider\": \
        \"dynamic\", \"session\": 0, \"nonce\": \"n\", \"timestamp\": \"t\"}";

    #[test]
    fn challenge_text_is_crossbars_json() {
        // Goal: the CHALLENGE text is byte-identical to Crossbar's, escapes included.
        // Method: compare with Python's json.dumps output for plain and awkward strings.
        let text = challenge_text("svc", "backend", "static", 3251278072152162, NONCE, "2026-12-01T10:00:00.000Z");
        assert_eq!(text, CHALLENGE);
        assert_eq!(challenge_text(ODD_AUTHID, "réle", "dynamic", 0, "n", "t"), CHALLENGE_ODD);
        let parsed: serde_json::Value = serde_json::from_str(CHALLENGE_ODD).unwrap();
        assert_eq!(parsed["authid"], ODD_AUTHID);
    }

    #[test]
    fn plain_secret_signature_matches_autobahn() {
        let sig = "BRtT4yHjbOvLwBzkbzYHCWXbUxj5P1hvPFbdleW/IWc=";
        assert_eq!(signature(b"s3cr3t", CHALLENGE), sig);
        assert!(verify(b"s3cr3t", CHALLENGE, sig));
        assert!(verify(b"s3cr3t", CHALLENGE, sig.trim_end_matches('=')), "unpadded");
        assert!(!verify(b"s3cr3T", CHALLENGE, sig));
        assert!(!verify(b"s3cr3t", CHALLENGE_ODD, sig));
    }

    #[test]
    fn salted_key_and_signature_match_autobahn() {
        let key = derive_key("s3cr3t", "salt123", 1000, 32);
        assert_eq!(key, b"TSMRO/U+jxq60liTV2uxuO6RgKFN022eOOelapaApxk=");
        let sig = "KL5+yTl2wMCoeOvlbx5WoouwG+tBaORSEayMKeUkGPc=";
        assert_eq!(signature(&key, CHALLENGE), sig);
        assert!(verify(&key, CHALLENGE, sig));
        // Non-ASCII secret and salt (UTF-8), a 64-byte key, an awkward challenge.
        let key = derive_key("pässwörd", "sälz", 100, 64);
        let want = "k5bEH+zVwz9RcQAqcT8itjIJ06yyPoz5/C8CSpsz4sdWJiPEvzpR+fcDIUwYWcG5b89moaRipDHUa/4yop3ltw==";
        assert_eq!(key, want.as_bytes());
        assert_eq!(signature(&key, CHALLENGE_ODD), "Srt847nb+45N8PHPhV1Z2Qc+vxwTciHet5aa3lUGFHw=");
    }

    #[test]
    fn verify_rejects_malformed_and_truncated_signatures() {
        let sig = "BRtT4yHjbOvLwBzkbzYHCWXbUxj5P1hvPFbdleW/IWc=";
        assert!(verify(b"s3cr3t", CHALLENGE, sig));
        for bad in ["", "not base64!", &sig[..40], &format!("{sig}AAAA"), &sig.replace('/', "_"), " BRtT"] {
            assert!(!verify(b"s3cr3t", CHALLENGE, bad), "{bad:?}");
        }
    }
}
