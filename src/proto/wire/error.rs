//! Why bytes from a peer are not a WAMP message: [`DecodeError`], and [`PeerText`] for
//! quoting a peer's string in any error text without copying all of it.
//!
//! Owns: the kinds of decode failure as values (what went wrong, and where: the element of
//! the message, the byte offset in the frame) and their wording. The router sends the
//! `Display` text to the peer in the ABORT `Details.message`, so every text names what was
//! wrong and where, and never carries more than `limits::ERROR_PEER_TEXT_MAX_CHARS`
//! characters of the peer's own data.
//!
//! Must not: depend on any other file of `wire` (they all may depend on this), or
//! allocate on the success path of a decoder. Variants are grouped by where they arise: the
//! message layout, the top-level list, element types, malformed items, sizes.

use std::fmt;

use crate::limits::{ERROR_PEER_TEXT_MAX_CHARS, OPTIONS_MAX_BYTES, OPTIONS_VALUES_MAX, VALUE_DEPTH_MAX};

/// A decode failure: the peer sent something that is not a well-formed WAMP message.
///
/// Positions are byte offsets into the frame (JSON texts say "at byte", the binary formats
/// "at offset", as they always have). The `Display` text is what the peer reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    // ----- The message layout ----------------------------------------------------------
    /// The top-level list has no elements, so not even a message type.
    EmptyMessage,
    /// A message type code that WAMP (or this router) does not define.
    UnknownType(u64),
    /// `message` ended before its mandatory `element`.
    MissingElement { message: &'static str, element: &'static str },
    /// `message` has more elements than its layout allows.
    TooManyElements { message: &'static str },
    /// `error` is in one element: `PUBLISH.Topic: expected a string, found dict`.
    /// `message` is `None` for the message type itself and for a payload read on its own.
    InElement { message: Option<&'static str>, element: &'static str, error: Box<DecodeError> },
    /// A payload holds another number of elements than its count says.
    PayloadCount { expected: u8, found: usize },

    // ----- The top-level list ------------------------------------------------------------
    /// An element was read after the last one (a reader used without `more`).
    ReadPastEnd,
    /// An element was read before `begin`.
    ListNotStarted,
    /// The list was closed with elements not read; the count where the format says it.
    UnreadElements { count: Option<u64> },
    /// Bytes follow the end of the message.
    TrailingBytes { count: usize },

    // ----- Element types -------------------------------------------------------------------
    /// An element of another type than its position requires: `expected` is a phrase such as
    /// `"an integer"`.
    WrongType { expected: &'static str, found: Found },
    /// The message is not a list at all (binary formats; JSON says what byte it found).
    NotAList { found: &'static str },
    /// A dict key that is not a string (nor, in a payload, an integer).
    KeyType { found: &'static str, at: usize, integers_allowed: bool },
    /// An integer above `u64::MAX` (JSON digits, a CBOR bignum) where an ID or a code belongs.
    IntegerOutOfRange,

    // ----- Malformed items -------------------------------------------------------------------
    /// The input ends inside the item that starts at `at`.
    Truncated { at: usize },
    /// A string that is not UTF-8; `at` is the string (binary formats) or the first bad byte
    /// (JSON).
    InvalidUtf8 { at: usize },
    /// Lists and dicts nested deeper than `limits::VALUE_DEPTH_MAX`.
    TooDeep { at: Option<usize> },
    /// JSON text that breaks the grammar in a way named by `what`, at byte `at`.
    Syntax { what: &'static str, at: usize },
    /// JSON text with an unexpected byte (`None`: the end of the input) where `expected`
    /// belongs.
    Unexpected { expected: &'static str, found: Option<u8>, at: usize },
    /// A byte that starts no item: `what` names the format's term for it.
    InvalidByte { what: &'static str, byte: u8, at: usize },
    /// A CBOR break byte where an item must be.
    UnexpectedBreak { at: usize },
    /// A CBOR two-byte simple value below 32 (RFC 8949 §3.3).
    InvalidSimpleValue { value: u8, at: usize },
    /// An indefinite-length CBOR map that ends between a key and its value.
    KeyWithoutValue { at: usize },
    /// An item a parsing library refused; `detail` is its reason, cut to
    /// `limits::ERROR_PEER_TEXT_MAX_CHARS` characters.
    Refused { what: &'static str, at: Option<usize>, detail: String },

    // ----- Sizes ---------------------------------------------------------------------------
    /// An encoded message larger than a transport can frame.
    TooLarge { transport: &'static str, len_bytes: usize, max_bytes: usize },
    /// A dict element (`Options`, `Details`) encoded in more than `limits::OPTIONS_MAX_BYTES`.
    DictTooLarge,
    /// More values built for one message than `limits::OPTIONS_VALUES_MAX`.
    TooManyValues,

    /// A failure of a reader built on these codecs outside this module (the load generator's
    /// probe reader), which has no variant of its own. The codecs never return it.
    Other(String),
}

/// What was found where another type was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// A type, by the name `Value::type_name` and `ValueKind::name` use (`"dict"`,
    /// `"binary"`).
    Type(&'static str),
    /// A negative integer where a non-negative one belongs: the value is `-1 - n` (CBOR's
    /// own representation, which reaches -2^64).
    Negative(u64),
}

impl DecodeError {
    /// A failure of a reader outside the codecs (see [`DecodeError::Other`]).
    pub fn new(msg: impl Into<String>) -> DecodeError {
        DecodeError::Other(msg.into())
    }

    /// Put this error in `element` of `message` (`None`: no message around it).
    pub fn in_element(self, message: Option<&'static str>, element: &'static str) -> DecodeError {
        DecodeError::InElement { message, element, error: Box::new(self) }
    }

    /// A library's refusal of the item at `at`, its reason cut to the excerpt length.
    pub fn refused(what: &'static str, at: Option<usize>, detail: &dyn fmt::Display) -> DecodeError {
        DecodeError::Refused { what, at, detail: peer_text(&detail.to_string()) }
    }

    /// The error inside any element contexts.
    pub fn innermost(&self) -> &DecodeError {
        match self {
            DecodeError::InElement { error, .. } => error.innermost(),
            other => other,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeError as E;
        match self {
            E::EmptyMessage => f.write_str("empty message list"),
            E::UnknownType(code) => write!(f, "unknown message type {code}"),
            E::MissingElement { message, element } => write!(f, "{message}: missing element {element}"),
            E::TooManyElements { message } => write!(f, "{message}: too many elements"),
            E::InElement { message: Some(message), element, error } => write!(f, "{message}.{element}: {error}"),
            E::InElement { message: None, element, error } => write!(f, "{element}: {error}"),
            E::PayloadCount { expected, found } => {
                write!(f, "payload element count mismatch: {found} found, {expected} announced")
            }
            E::ReadPastEnd => f.write_str("read past the end of the message list"),
            E::ListNotStarted => f.write_str("message list not started"),
            E::UnreadElements { count: Some(n) } => write!(f, "{n} elements of the message list left unread"),
            E::UnreadElements { count: None } => f.write_str("elements of the message list left unread"),
            E::TrailingBytes { count } => write!(f, "{count} trailing bytes after the message"),
            E::WrongType { expected, found } => write!(f, "expected {expected}, found {found}"),
            E::NotAList { found } => write!(f, "a WAMP message must be a list, found {found}"),
            E::KeyType { found, at, integers_allowed } => {
                let allowed = if *integers_allowed { "strings or integers" } else { "strings" };
                write!(f, "dict keys must be {allowed}, found {found} at offset {at}")
            }
            E::IntegerOutOfRange => f.write_str("integer out of range (above 2^64 - 1)"),
            E::Truncated { at } => write!(f, "truncated input: the item at offset {at} runs past the end"),
            E::InvalidUtf8 { at } => write!(f, "invalid UTF-8 in the string at offset {at}"),
            E::TooDeep { at } => {
                write!(f, "lists and dicts nested deeper than {VALUE_DEPTH_MAX} levels")?;
                at.map_or(Ok(()), |at| write!(f, " at offset {at}"))
            }
            E::Syntax { what, at } => write!(f, "{what} at byte {at}"),
            E::Unexpected { expected, found, at } => {
                write!(f, "expected {expected}, found {} at byte {at}", ByteName(*found))
            }
            E::InvalidByte { what, byte, at } => write!(f, "invalid {what} 0x{byte:02x} at offset {at}"),
            E::UnexpectedBreak { at } => write!(f, "unexpected break byte (0xff) at offset {at}"),
            E::InvalidSimpleValue { value, at } => write!(f, "invalid CBOR simple value {value} at offset {at}"),
            E::KeyWithoutValue { at } => write!(f, "a dict ends after a key with no value at offset {at}"),
            E::Refused { what, at: Some(at), detail } => write!(f, "{what} at offset {at}: {detail}"),
            E::Refused { what, at: None, detail } => write!(f, "{what}: {detail}"),
            E::TooLarge { transport, len_bytes, max_bytes } => {
                write!(f, "a {len_bytes}-byte message exceeds {transport}'s ")?;
                if max_bytes % (1024 * 1024) == 0 {
                    write!(f, "{} MiB frame limit", max_bytes / (1024 * 1024))
                } else {
                    write!(f, "{max_bytes}-byte frame limit")
                }
            }
            E::DictTooLarge => write!(f, "dict encoded in more than {OPTIONS_MAX_BYTES} bytes"),
            E::TooManyValues => write!(f, "more than {OPTIONS_VALUES_MAX} values in one message"),
            E::Other(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for DecodeError {}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Type(name) => f.write_str(name),
            Found::Negative(n) => write!(f, "{}", -1 - i128::from(*n)),
        }
    }
}

/// A byte as a JSON error names it: a visible character quoted, anything else in hex.
struct ByteName(Option<u8>);

impl fmt::Display for ByteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("end of input"),
            Some(b) if b.is_ascii_graphic() => write!(f, "'{}'", b as char),
            Some(b) => write!(f, "byte 0x{b:02x}"),
        }
    }
}

/// A peer's string as an error text may show it: at most `limits::ERROR_PEER_TEXT_MAX_CHARS`
/// characters, then `…` if anything was cut. `{}` writes it plainly, `{:?}` quoted and
/// escaped like a `str` (the ellipsis after the closing quote). Formatting never copies or
/// scans more than the characters shown, so a 16 MiB topic costs as much as a short one.
#[derive(Clone, Copy)]
pub struct PeerText<'a>(pub &'a str);

impl<'a> PeerText<'a> {
    /// The part shown, and whether anything was cut.
    fn shown(self) -> (&'a str, bool) {
        match self.0.char_indices().nth(ERROR_PEER_TEXT_MAX_CHARS) {
            Some((end, _)) => (self.0.get(..end).unwrap_or_default(), true),
            None => (self.0, false),
        }
    }
}

impl fmt::Display for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shown, cut) = self.shown();
        f.write_str(shown)?;
        if cut { f.write_str("…") } else { Ok(()) }
    }
}

impl fmt::Debug for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shown, cut) = self.shown();
        write!(f, "{shown:?}")?;
        if cut { f.write_str("…") } else { Ok(()) }
    }
}

/// [`PeerText`] as an owned string, for errors that keep the text.
pub fn peer_text(s: &str) -> String {
    PeerText(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a peer's string is shown whole up to the limit and cut with an ellipsis after it,
    // at a character boundary, in both renderings.
    #[test]
    fn peer_text_is_cut_at_the_limit() {
        let max = ERROR_PEER_TEXT_MAX_CHARS;
        let exact = "é".repeat(max);
        assert_eq!(peer_text(&exact), exact);
        assert_eq!(format!("{:?}", PeerText(&exact)), format!("{exact:?}"));
        let long = "é".repeat(max + 1);
        assert_eq!(peer_text(&long), format!("{exact}…"));
        assert_eq!(format!("{:?}", PeerText(&long)), format!("{exact:?}…"));
        let huge = "x".repeat(16 << 20);
        assert_eq!(peer_text(&huge).chars().count(), max + 1);
        assert_eq!(format!("{:?}", PeerText("a\"b\n")), r#""a\"b\n""#);
    }

    // Goal: the texts name the element, the kind of failure and its position, as the ABORT
    // messages always have.
    #[test]
    fn texts_say_what_and_where() {
        let e = DecodeError::WrongType { expected: "a string", found: Found::Type("dict") };
        assert_eq!(
            e.clone().in_element(Some("PUBLISH"), "Topic").to_string(),
            "PUBLISH.Topic: expected a string, found dict"
        );
        assert_eq!(
            e.clone().in_element(None, "message type").to_string(),
            "message type: expected a string, found dict"
        );
        assert_eq!(e.clone().in_element(Some("CALL"), "Procedure").innermost(), &e);
        let negative = DecodeError::WrongType { expected: "a non-negative integer", found: Found::Negative(u64::MAX) };
        assert_eq!(negative.to_string(), "expected a non-negative integer, found -18446744073709551616");
        assert_eq!(
            DecodeError::Unexpected { expected: "':'", found: Some(b'x'), at: 7 }.to_string(),
            "expected ':', found 'x' at byte 7"
        );
        assert_eq!(
            DecodeError::Unexpected { expected: "a value", found: None, at: 0 }.to_string(),
            "expected a value, found end of input at byte 0"
        );
        assert_eq!(
            DecodeError::Unexpected { expected: "a value", found: Some(0x80), at: 3 }.to_string(),
            "expected a value, found byte 0x80 at byte 3"
        );
        assert_eq!(
            DecodeError::TooLarge { transport: "RawSocket", len_bytes: 16_777_217, max_bytes: 16 << 20 }.to_string(),
            "a 16777217-byte message exceeds RawSocket's 16 MiB frame limit"
        );
        assert_eq!(
            DecodeError::TooDeep { at: Some(9) }.to_string(),
            "lists and dicts nested deeper than 64 levels at offset 9"
        );
        let refused = DecodeError::refused("invalid JSON", None, &"z".repeat(1000));
        assert!(
            refused.to_string().ends_with('…') && refused.to_string().len() < ERROR_PEER_TEXT_MAX_CHARS + 64,
            "{refused}"
        );
    }
}
