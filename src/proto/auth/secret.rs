//! Comparing and decoding secrets: constant-time equality, and the hex and base64 text that
//! keys, salts and signatures travel as.
//!
//! Every authentication method compares what a peer sent with what it should have sent
//! through [`ct_eq`], so the time taken does not say how many leading bytes were right
//! (Crossbar compares WAMP-CRA signatures and tickets with `==`; we do not). The decoders
//! accept exactly the forms the clients and Crossbar configs use and nothing looser. This
//! file must not know any WAMP message or method.

use base64::Engine;
use base64::alphabet::STANDARD as STANDARD_ALPHABET;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use subtle::ConstantTimeEq;

/// Standard-alphabet base64 without padding, canonical (no stray trailing bits): what
/// [`base64_decode`] hands the text to once it has checked and removed any padding.
const BASE64_UNPADDED: GeneralPurpose = GeneralPurpose::new(
    &STANDARD_ALPHABET,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Whether `a` and `b` are equal, taking time that depends on their lengths but not on
/// their contents. Use it for every secret or MAC a peer sends.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Standard base64 with padding: what Autobahn and Crossbar send (signatures, salts, keys).
pub fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Standard-alphabet base64, fully padded (as clients send it) or without padding (as a
/// hand-written config or another client may); `None` for anything else (URL-safe alphabet,
/// whitespace, partial padding).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let unpadded = text.trim_end_matches('=');
    let padding = text.len() - unpadded.len();
    if padding > 2 || (padding > 0 && !text.len().is_multiple_of(4)) {
        return None;
    }
    BASE64_UNPADDED.decode(unpadded).ok()
}

/// Lower-case hex, as Crossbar configs and cryptosign messages write bytes.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Hex (either case, no separators) into `out`, which it must fill exactly; false (and
/// `out` unspecified) for a wrong length or a non-hex character.
pub fn hex_decode_into(text: &str, out: &mut [u8]) -> bool {
    let text = text.as_bytes();
    if text.len() != out.len() * 2 {
        return false;
    }
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
            _ => return false,
        }
    }
    true
}

/// Hex (either case, no separators) of any even length.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = vec![0; text.len() / 2];
    hex_decode_into(text, &mut out).then_some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_compares_content_and_length() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"ticket", b"ticket"));
        assert!(!ct_eq(b"ticket", b"ticker"));
        assert!(!ct_eq(b"ticket", b"ticket!"));
        assert!(!ct_eq(b"", b"x"));
    }

    #[test]
    fn base64_decodes_padded_and_unpadded_standard_only() {
        assert_eq!(base64_decode("AAEC/w==").unwrap(), [0, 1, 2, 255]);
        assert_eq!(base64_decode("AAEC/w").unwrap(), [0, 1, 2, 255]);
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("AAEC_w"), None, "URL-safe alphabet");
        assert_eq!(base64_decode("AAEC /w=="), None, "whitespace");
        assert_eq!(base64_decode("AAEC/w="), None, "half padding");
        assert_eq!(base64_decode("AAEC/w==="), None, "too much padding");
        assert_eq!(base64_decode("AAEC="), None, "padding where none belongs");
        assert_eq!(base64_decode("AAEC/x=="), None, "stray trailing bits");
        assert_eq!(base64_encode(&[0, 1, 2, 255]), "AAEC/w==");
    }

    #[test]
    fn hex_round_trips_in_either_case() {
        assert_eq!(hex_encode(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(hex_decode("00ABff").unwrap(), [0x00, 0xab, 0xff]);
        assert_eq!(hex_decode(""), Some(vec![]));
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("0g"), None);
        assert_eq!(hex_decode("+1"), None);
        let mut four = [0u8; 2];
        assert!(!hex_decode_into("abcdef", &mut four));
        assert!(hex_decode_into("abcd", &mut four) && four == [0xab, 0xcd]);
    }
}
