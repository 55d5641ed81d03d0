//! WAMP-cryptosign: Ed25519 public keys and challenge signatures, checked as strictly as
//! libsodium's `crypto_sign_open` checks them (which is what Crossbar uses, via PyNaCl).
//!
//! The router sends `CHALLENGE.extra.challenge` = hex of 32 random bytes; the client
//! answers with hex(signature64 ‖ message32), the NaCl "signed message", where the message
//! is the challenge (Autobahn|Python `CryptosignKey.sign_challenge`, Autobahn|JS
//! `auth/cryptosign.js sign_challenge`). [`verify`] also takes the bare 64-byte signature.
//! Channel binding (`tls-unique`: message = challenge XOR channel id) cannot be offered over
//! rustls and is refused before this file is reached, so the message must equal the
//! challenge.
//!
//! Verification is `ed25519-dalek`'s `verify_strict`: it refuses non-canonical S (S ≥ L),
//! small-order public keys and small-order R, as libsodium does; [`parse_pubkey`] also
//! refuses a non-canonical key encoding, as libsodium does. Signing ([`sign`],
//! [`sign_challenge`]) is for tests, loadgen and `shardbar credential`; the router never
//! signs. No I/O, no randomness here: seeds come in as arguments.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::secret;

/// Bytes of a cryptosign challenge (and of the message a client signs).
pub const CHALLENGE_BYTES: usize = 32;

/// A public key from 64 hex characters (`HELLO.authextra.pubkey`, a config's
/// `authorized_keys`; Autobahn writes lower case, either case is accepted). `None` unless
/// it is the canonical encoding of a curve point of large order: a key no signature could
/// be strictly verified against is refused where it is read.
pub fn parse_pubkey(hex: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    if !secret::hex_decode_into(hex, &mut key) {
        return None;
    }
    let point = VerifyingKey::from_bytes(&key).ok()?;
    // `from_bytes` reduces a y ≥ p; libsodium refuses such encodings, so do we.
    let canonical = point.to_edwards().compress().to_bytes() == key;
    (canonical && !point.is_weak()).then_some(key)
}

/// Whether `signature_hex` is a valid answer to `challenge` from `pubkey`: 192 hex
/// characters (signature ‖ message, the message equal to the challenge) or 128 (the
/// signature alone), either case. Strict: see the file header.
pub fn verify(pubkey: &[u8; 32], challenge: &[u8; CHALLENGE_BYTES], signature_hex: &str) -> bool {
    let mut signed = [0u8; 64 + CHALLENGE_BYTES];
    let signature: &[u8; 64] = match signature_hex.len() {
        192 => {
            // The message is public (we sent it), so an ordinary comparison is fine.
            if !secret::hex_decode_into(signature_hex, &mut signed) || signed[64..] != challenge[..] {
                return false;
            }
            signed.first_chunk().expect("96 bytes hold 64")
        }
        128 => {
            let (sig, _) = signed.split_first_chunk_mut::<64>().expect("96 bytes hold 64");
            if !secret::hex_decode_into(signature_hex, sig) {
                return false;
            }
            sig
        }
        _ => return false,
    };
    let Ok(key) = VerifyingKey::from_bytes(pubkey) else { return false };
    key.verify_strict(challenge, &Signature::from_bytes(signature)).is_ok()
}

/// The public key of the key pair whose private seed is `seed` (NaCl's 32-byte seed, what
/// Autobahn's `privkey` holds).
pub fn keypair_from_seed(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

/// The Ed25519 signature of `msg` by the key pair with private seed `seed`.
pub fn sign(seed: &[u8; 32], msg: &[u8]) -> [u8; 64] {
    SigningKey::from_bytes(seed).sign(msg).to_bytes()
}

/// What an Autobahn client sends in AUTHENTICATE for `challenge`: hex(signature ‖
/// challenge), 192 lower-case hex characters.
pub fn sign_challenge(seed: &[u8; 32], challenge: &[u8; CHALLENGE_BYTES]) -> String {
    let mut signed = [0u8; 64 + CHALLENGE_BYTES];
    signed[..64].copy_from_slice(&sign(seed, challenge));
    signed[64..].copy_from_slice(challenge);
    secret::hex_encode(&signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from Autobahn|Python 26.10.2 (`CryptosignKey.from_bytes(seed).public_key()`,
    // `AuthCryptoSign.on_challenge`, `CryptosignKey.sign`; PyNaCl 1.6.2), confirmed equal by
    // Autobahn|JS 22.11.1 (`auth/cryptosign.js sign_challenge`, tweetnacl). Regenerate:
    // tests/interop/gen_auth_vectors.py.
    const SEED: &str = "963f85692dcf26b5c505bcec4a579b035a07d51c1370a0bdb5215bda30531c5a";
    const CHALLENGE: &str = "02ea8ea15f6d2b80112702ef06dda89b9517961bae0eb9fb0c83cf4ff12b039d";
    const PUBKEY: &str = "4f0952b990a7a563b00ace8b684623acb3d8688ab87ea4bd0cbf722eb515d817";
    const SIGNED: &str = "db1381921db681749aedc0229bffed7d2f2b294aecc52995b7d89e80438f9833\
        c06ab5db39b9ad048a4371e4c0745d5c03d5aed291fb6b8582e169087f69b002\
        02ea8ea15f6d2b80112702ef06dda89b9517961bae0eb9fb0c83cf4ff12b039d";
    /// The same signature with S + L: libsodium refuses it (checked by the generator).
    const MALLEATED: &str = "db1381921db681749aedc0229bffed7d2f2b294aecc52995b7d89e80438f9833\
        ad3eab38541cc05c60e068879f6e3c7103d5aed291fb6b8582e169087f69b012";

    fn bytes32(hex: &str) -> [u8; 32] {
        let mut b = [0u8; 32];
        assert!(secret::hex_decode_into(hex, &mut b));
        b
    }

    #[test]
    fn keys_and_signatures_match_autobahn() {
        let (seed, challenge) = (bytes32(SEED), bytes32(CHALLENGE));
        assert_eq!(secret::hex_encode(&keypair_from_seed(&seed)), PUBKEY);
        assert_eq!(parse_pubkey(PUBKEY), Some(keypair_from_seed(&seed)));
        assert_eq!(parse_pubkey(&PUBKEY.to_uppercase()), Some(keypair_from_seed(&seed)));
        assert_eq!(sign_challenge(&seed, &challenge), SIGNED);
        let any = "20d080c8ea56114e0313347a5c96d20a8535737134aaca8b50ddc33ee4aed9e4\
            19736918b754b60bc95a9b978a98605c7c0af308bc954fda9463e8b17402790a";
        assert_eq!(secret::hex_encode(&sign(&seed, b"any message")), any);
    }

    #[test]
    fn verify_takes_signed_message_or_bare_signature() {
        let (key, challenge) = (bytes32(PUBKEY), bytes32(CHALLENGE));
        assert!(verify(&key, &challenge, SIGNED));
        assert!(verify(&key, &challenge, &SIGNED.to_uppercase()));
        assert!(verify(&key, &challenge, &SIGNED[..128]));
        // A signature of another challenge, or the right signature with another message.
        let mut other = challenge;
        other[0] ^= 1;
        assert!(!verify(&key, &other, SIGNED));
        assert!(!verify(&key, &other, &SIGNED[..128]));
        let wrong_tail = format!("{}{}", &SIGNED[..128], secret::hex_encode(&other));
        assert!(!verify(&key, &challenge, &wrong_tail));
        for bad in ["", &SIGNED[..190], &SIGNED[..127], &format!("{}zz", &SIGNED[..190]), &format!("{SIGNED}00")] {
            assert!(!verify(&key, &challenge, bad), "{bad:?}");
        }
        let mut flipped = bytes32(PUBKEY);
        flipped[5] ^= 0x10;
        assert!(!verify(&flipped, &challenge, SIGNED));
    }

    #[test]
    fn strict_like_libsodium() {
        // Goal: refuse what libsodium's crypto_sign_open refuses. Method: the Autobahn
        // signature with S + L (valid to a lax verifier), the identity key with the trivial
        // signature (R = identity, S = 0: "valid" for every message to a lax verifier), and
        // non-canonical encodings of valid points.
        let (key, challenge) = (bytes32(PUBKEY), bytes32(CHALLENGE));
        assert!(!verify(&key, &challenge, MALLEATED));
        let identity = bytes32("0100000000000000000000000000000000000000000000000000000000000000");
        let trivial = format!("01{}", "0".repeat(126));
        assert!(!verify(&identity, &challenge, &trivial));
        assert_eq!(parse_pubkey(&secret::hex_encode(&identity)), None, "small order");
        // y = p + k for small k: the encoding of the point with y = k, if there is one.
        let mut found = 0;
        for k in 0u8..19 {
            let mut enc = [0xffu8; 32];
            enc[31] = 0x7f;
            enc[0] = 0xed + k; // p = 2^255 - 19 is ed ff .. ff 7f little-endian; no carry for k < 19
            if VerifyingKey::from_bytes(&enc).is_ok() {
                found += 1;
                assert_eq!(parse_pubkey(&secret::hex_encode(&enc)), None, "y = p + {k}");
            }
        }
        assert!(found > 0, "some y = p + k decodes, so the canonical check is exercised");
        assert_eq!(parse_pubkey(&PUBKEY[..62]), None);
        assert_eq!(parse_pubkey(&format!("{}0g", &PUBKEY[..62])), None);
    }
}
