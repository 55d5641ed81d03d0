//! Typed reading of `Options`/`Details` dicts.
//!
//! WAMP has no polymorphism: a known key with the wrong type is a protocol violation, and
//! the error text names the key (the spec's validation vectors check for it). Unknown keys
//! are ignored, as the spec requires. Absent and `null` are the same.

use super::wire::{Dict, Id, Value};
use crate::limits::PUBLISH_FILTER_ENTRIES_MAX;

/// An option that failed validation. `Display` names the message and the key (the spec's
/// validation vectors check for the key in the ABORT text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionError {
    /// The key holds a value of the wrong type.
    WrongType { msg: &'static str, key: &'static str, expected: &'static str, found: &'static str },
    /// A list holds an element of the wrong type.
    WrongItem { msg: &'static str, key: &'static str, expected: &'static str, found: &'static str },
    /// A list is longer than `limits::PUBLISH_FILTER_ENTRIES_MAX`.
    TooMany { msg: &'static str, key: &'static str },
    /// A string that is not one of the values the key allows (`what` names the kind).
    Unknown { msg: &'static str, key: &'static str, what: &'static str, value: String },
}

impl OptionError {
    /// An unknown value for `key`; the peer's string is clipped before it is kept.
    pub fn unknown(msg: &'static str, key: &'static str, what: &'static str, value: &str) -> OptionError {
        OptionError::Unknown { msg, key, what, value: crate::proto::wire::peer_text(value) }
    }
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionError::WrongType { msg, key, expected, found } => {
                write!(f, "{msg}.Options.{key}: expected {expected}, found {found}")
            }
            OptionError::WrongItem { msg, key, expected, found } => {
                write!(f, "{msg}.Options.{key}: expected {expected}, found {found}")
            }
            OptionError::TooMany { msg, key } => {
                write!(f, "{msg}.Options.{key}: more than {PUBLISH_FILTER_ENTRIES_MAX} entries")
            }
            OptionError::Unknown { msg, key, what, value } => {
                write!(f, "{msg}.Options.{key}: unknown {what} {value:?}")
            }
        }
    }
}

fn get<'a>(d: &'a Dict, key: &str) -> Option<&'a Value> {
    match d.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

fn wrong(msg: &'static str, key: &'static str, expected: &'static str, found: &Value) -> OptionError {
    OptionError::WrongType { msg, key, expected, found: found.type_name() }
}

pub fn opt_bool(d: &Dict, msg: &'static str, key: &'static str) -> Result<Option<bool>, OptionError> {
    match get(d, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong(msg, key, "a bool", v)),
    }
}

pub fn opt_str<'a>(d: &'a Dict, msg: &'static str, key: &'static str) -> Result<Option<&'a str>, OptionError> {
    match get(d, key) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(v) => Err(wrong(msg, key, "a string", v)),
    }
}

/// A non-negative number (integer or float; some clients send timeouts as floats).
pub fn opt_number(d: &Dict, msg: &'static str, key: &'static str) -> Result<Option<f64>, OptionError> {
    match get(d, key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if n >= 0.0 && n.is_finite() => Ok(Some(n)),
            _ => Err(wrong(msg, key, "a non-negative number", v)),
        },
    }
}

/// A list of IDs, sorted and deduplicated.
pub fn opt_id_list(d: &Dict, msg: &'static str, key: &'static str) -> Result<Option<Vec<Id>>, OptionError> {
    let Some(v) = get(d, key) else { return Ok(None) };
    let Some(list) = v.as_list() else { return Err(wrong(msg, key, "a list of session IDs", v)) };
    if list.len() > PUBLISH_FILTER_ENTRIES_MAX {
        return Err(OptionError::TooMany { msg, key });
    }
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        match item.as_u64() {
            Some(id) => out.push(id),
            None => {
                let found = item.type_name();
                return Err(OptionError::WrongItem { msg, key, expected: "session IDs", found });
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

/// A list of strings, sorted and deduplicated.
pub fn opt_str_list(d: &Dict, msg: &'static str, key: &'static str) -> Result<Option<Vec<String>>, OptionError> {
    let Some(v) = get(d, key) else { return Ok(None) };
    let Some(list) = v.as_list() else { return Err(wrong(msg, key, "a list of strings", v)) };
    if list.len() > PUBLISH_FILTER_ENTRIES_MAX {
        return Err(OptionError::TooMany { msg, key });
    }
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        match item.as_str() {
            Some(s) => out.push(s.to_owned()),
            None => {
                return Err(OptionError::WrongItem { msg, key, expected: "strings", found: item.type_name() });
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

/// `forward_for`: a list of dicts (router-to-router links). Checked for shape only.
pub fn check_forward_for(d: &Dict, msg: &'static str) -> Result<(), OptionError> {
    let Some(v) = get(d, "forward_for") else { return Ok(()) };
    match v.as_list() {
        Some(l) if l.iter().all(|e| e.as_dict().is_some()) => Ok(()),
        _ => Err(wrong(msg, "forward_for", "a list of dicts", v)),
    }
}

/// Payload-transparency keys (`enc_algo`/`ppt_scheme`, `enc_serializer`/`ppt_serializer`).
/// The router never looks inside such a payload; it only checks the announced values.
pub fn check_transparency(d: &Dict, msg: &'static str) -> Result<(), OptionError> {
    const ALGOS: [&str; 4] = ["null", "cryptobox", "mqtt", "xbr"];
    const SERIALIZERS: [&str; 7] = ["null", "json", "msgpack", "cbor", "ubjson", "opaque", "flatbuffers"];
    if let Some(a) = opt_str(d, msg, "enc_algo")?
        && !ALGOS.contains(&a)
    {
        return Err(OptionError::unknown(msg, "enc_algo", "algorithm", a));
    }
    if let Some(s) = opt_str(d, msg, "enc_serializer")?
        && !SERIALIZERS.contains(&s)
    {
        return Err(OptionError::unknown(msg, "enc_serializer", "serializer", s));
    }
    opt_str(d, msg, "ppt_scheme")?;
    opt_str(d, msg, "ppt_serializer")?;
    opt_str(d, msg, "ppt_cipher")?;
    opt_str(d, msg, "ppt_keyid")?;
    opt_str(d, msg, "transaction_hash")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_null_are_none() {
        let d = Dict::new().with("a", Value::Null);
        assert_eq!(opt_bool(&d, "PUBLISH", "a"), Ok(None));
        assert_eq!(opt_bool(&d, "PUBLISH", "b"), Ok(None));
    }

    #[test]
    fn wrong_type_names_the_key() {
        let d = Dict::new().with("acknowledge", 1u64);
        let e = opt_bool(&d, "PUBLISH", "acknowledge").unwrap_err();
        assert!(e.to_string().contains("acknowledge"), "{e}");
    }

    #[test]
    fn id_lists_are_sorted() {
        let d = Dict::new().with("exclude", vec![Value::UInt(3), Value::UInt(1), Value::UInt(3)]);
        assert_eq!(opt_id_list(&d, "PUBLISH", "exclude").unwrap(), Some(vec![1, 3]));
        let bad = Dict::new().with("exclude", vec![Value::str("x")]);
        assert!(opt_id_list(&bad, "PUBLISH", "exclude").unwrap_err().to_string().contains("exclude"));
    }
}
