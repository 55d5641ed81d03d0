//! TLS client certificate fingerprints as configs write them: Crossbar's
//! `"B6:E5:…:EB"` (upper-case hex pairs joined by colons, as Autobahn's
//! `peer_certificate_details` formats them) or plain hex, SHA-1 (20 bytes) or SHA-256
//! (32 bytes).
//!
//! Parsing and formatting only: the runtime hashes the peer's certificate (DER) and hands the
//! digests in (`TlsPeer`); the `tls` method compares them with what [`parse`] read from the
//! config. A fingerprint is public, so an ordinary comparison is fine.

use super::secret;

/// The digest bytes of a fingerprint: colon-separated hex pairs (`"B6:E5:…"`, either case)
/// or unseparated hex, 20 bytes (SHA-1) or 32 (SHA-256). `None` for anything else,
/// including a mix of the two forms, stray whitespace and other lengths.
pub fn parse(s: &str) -> Option<Vec<u8>> {
    let bytes = if s.contains(':') {
        let pairs: Vec<&str> = s.split(':').collect();
        let mut out = vec![0u8; pairs.len()];
        for (byte, pair) in out.iter_mut().zip(&pairs) {
            let mut one = [0u8; 1];
            if !secret::hex_decode_into(pair, &mut one) {
                return None;
            }
            *byte = one[0];
        }
        out
    } else {
        secret::hex_decode(s)?
    };
    matches!(bytes.len(), 20 | 32).then_some(bytes)
}

/// Crossbar's form of a SHA-1 fingerprint: `"B6:E5:…:EB"`.
pub fn format_sha1(b: &[u8; 20]) -> String {
    format(b)
}

/// Crossbar's form of any digest: upper-case hex pairs joined by colons.
pub fn format(b: &[u8]) -> String {
    let pairs: Vec<String> = b.iter().map(|byte| format!("{byte:02X}")).collect();
    pairs.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    // From Autobahn|Python 26.10.2 `autobahn.util.peer_certificate_details` on a test
    // certificate (tests/interop/gen_auth_vectors.py): its SHA-1 and SHA-256 fields.
    const SHA1: &str = "21:E7:DF:A4:EF:E0:36:01:7D:54:FB:97:25:42:D6:EC:37:9A:A7:53";
    const SHA1_HEX: &str = "21e7dfa4efe036017d54fb972542d6ec379aa753";
    const SHA256: &str =
        "0B:EC:74:EE:4E:7A:75:C2:7E:67:06:16:74:A2:F7:DB:9B:6F:58:7E:38:F0:86:BE:F4:14:48:DD:CA:D8:7A:08";

    #[test]
    fn crossbar_form_round_trips() {
        let digest: [u8; 20] = secret::hex_decode(SHA1_HEX).unwrap().try_into().unwrap();
        assert_eq!(format_sha1(&digest), SHA1);
        assert_eq!(parse(SHA1).unwrap(), digest);
        assert_eq!(parse(&SHA1.to_lowercase()).unwrap(), digest);
        assert_eq!(parse(SHA1_HEX).unwrap(), digest);
        assert_eq!(parse(&SHA1_HEX.to_uppercase()).unwrap(), digest);
        let sha256 = parse(SHA256).unwrap();
        assert_eq!(sha256.len(), 32);
        assert_eq!(format(&sha256), SHA256);
        assert_eq!(parse(&SHA256.replace(':', "")).unwrap(), sha256);
    }

    #[test]
    fn parse_refuses_other_shapes() {
        for bad in [
            "",
            ":",
            &SHA1[..SHA1.len() - 3],                                              // 19 bytes
            &format!("{SHA1}:00"),                                                // 21 bytes
            &format!("{SHA1}:"),                                                  // trailing colon
            &SHA1.replacen(':', "", 1),                                           // a four-digit group
            &SHA1.replacen(':', "::", 1),                                         // an empty group
            &SHA1.replacen("21", "2", 1),                                         // a one-digit group
            &SHA1.replacen("21", "2G", 1),                                        // not hex
            &format!(" {SHA1}"),                                                  // whitespace
            &SHA1.replace(':', "-"),                                              // another separator
            &SHA1_HEX[..39],                                                      // odd hex
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00", // 33 bytes
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
