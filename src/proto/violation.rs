//! Why the router ends a session with ABORT: typed, and mapped to the ABORT URI and message
//! in one place. Handlers return `Err(Violation)`; the dispatcher in `core` turns it into
//! ABORT and cleans the session up. Texts never echo more than
//! `limits::ERROR_PEER_TEXT_MAX_CHARS` of what a peer sent.

use std::fmt;

use super::options::OptionError;
use super::uris;
use super::wire::peer_text;
use super::wire::{DecodeError, Id};

/// A peer broke the protocol: ABORT `wamp.error.protocol_violation`.
#[derive(Debug)]
pub enum Violation {
    /// The message could not be decoded.
    Undecodable(DecodeError),
    /// A known option has the wrong type or value.
    BadOption(OptionError),
    /// Something other than HELLO before the session was established.
    ExpectedHello { received: &'static str },
    /// After a CHALLENGE only AUTHENTICATE (or ABORT) is valid.
    ExpectedAuthenticate { received: &'static str },
    /// A message a client may not send in an established session (WELCOME, EVENT, …).
    NotFromClient { received: &'static str },
    /// ERROR answering something other than an INVOCATION.
    ErrorForRequestType { request_type: u64 },
    /// A CALL reused the request ID of a call still in flight.
    CallInFlight { request: Id },
    /// CANCEL.Options.mode is not skip, kill or killnowait.
    UnknownCancelMode { mode: String },
    /// YIELD or ERROR for an invocation this session never got (or already answered).
    UnknownInvocation { answer: &'static str, request: Id },
    /// A request ID outside [1, 2^53].
    RequestIdOutOfRange { request: Id },
    /// A callee's ERROR.Error is not a valid URI (clipped).
    InvalidErrorUri { uri: String },
    /// A message before WELCOME larger than `limits::HELLO_MESSAGE_MAX_BYTES`.
    HelloTooLarge { len: usize },
}

impl Violation {
    pub(crate) fn unknown_cancel_mode(mode: &str) -> Violation {
        Violation::UnknownCancelMode { mode: peer_text(mode) }
    }
}

impl From<OptionError> for Violation {
    fn from(e: OptionError) -> Violation {
        Violation::BadOption(e)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Undecodable(e) => write!(f, "invalid message: {e}"),
            Violation::BadOption(e) => write!(f, "{e}"),
            Violation::ExpectedHello { received } => write!(f, "expected HELLO, received {received}"),
            Violation::ExpectedAuthenticate { received } => write!(f, "expected AUTHENTICATE, received {received}"),
            Violation::NotFromClient { received } => {
                write!(f, "{received} is not valid from a client in an established session")
            }
            Violation::ErrorForRequestType { request_type } => {
                write!(f, "ERROR with REQUEST.Type {request_type}: a client may only answer an INVOCATION with ERROR")
            }
            Violation::CallInFlight { request } => write!(f, "CALL.Request {request} is already in flight"),
            Violation::UnknownCancelMode { mode } => write!(f, "CANCEL.Options.mode: unknown mode {mode:?}"),
            Violation::UnknownInvocation { answer, request } => {
                write!(f, "{answer} for unknown INVOCATION.Request {request}")
            }
            Violation::HelloTooLarge { len } => write!(
                f,
                "a {len}-byte message before WELCOME (at most {} bytes are accepted before a session exists)",
                crate::limits::HELLO_MESSAGE_MAX_BYTES
            ),
            Violation::InvalidErrorUri { uri } => write!(f, "ERROR.Error {uri:?} is not a valid URI"),
            Violation::RequestIdOutOfRange { request } => {
                write!(f, "request ID {request} is outside [1, 2^53]")
            }
        }
    }
}

/// Why a HELLO is refused, or a session ended by ABORT for a reason other than a violation.
#[derive(Debug)]
pub enum Abort {
    Violation(Violation),
    InvalidRealm {
        realm: String,
    },
    NoSuchRealm {
        realm: String,
    },
    /// `limits::REALMS_MAX` realms exist on this shard.
    RealmLimit,
    /// `limits::SHARD_SESSIONS_MAX` sessions exist on this shard.
    SessionLimit,
    /// None of the client's `authmethods` is offered.
    NoAuthMethod,
    /// Wrong or unknown credentials (the peer is not told which).
    AuthDenied,
    /// The HELLO/AUTHENTICATE cannot be used, or the authenticator failed; `message` tells
    /// the client what to fix and carries nothing secret.
    AuthFailed {
        message: String,
    },
    /// AUTHENTICATE without a CHALLENGE, or too many authentications pending.
    AuthLimit,
}

impl Abort {
    pub(crate) fn invalid_realm(realm: &str) -> Abort {
        Abort::InvalidRealm { realm: peer_text(realm) }
    }

    pub fn no_such_realm(realm: &str) -> Abort {
        Abort::NoSuchRealm { realm: peer_text(realm) }
    }

    /// The ABORT.Reason URI.
    pub(crate) fn uri(&self) -> &'static str {
        match self {
            Abort::Violation(_) => uris::PROTOCOL_VIOLATION,
            Abort::InvalidRealm { .. } => uris::INVALID_URI,
            Abort::NoSuchRealm { .. } | Abort::RealmLimit => uris::NO_SUCH_REALM,
            Abort::SessionLimit => uris::LIMIT_EXCEEDED,
            Abort::NoAuthMethod => uris::NO_AUTH_METHOD,
            Abort::AuthDenied => uris::NOT_AUTHORIZED,
            Abort::AuthFailed { .. } => uris::AUTHENTICATION_FAILED,
            Abort::AuthLimit => uris::LIMIT_EXCEEDED,
        }
    }
}

impl From<Violation> for Abort {
    fn from(v: Violation) -> Abort {
        Abort::Violation(v)
    }
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Abort::Violation(v) => v.fmt(f),
            Abort::InvalidRealm { realm } => write!(f, "invalid realm URI {realm:?}"),
            Abort::NoSuchRealm { realm } => write!(f, "no realm named {realm:?}"),
            Abort::RealmLimit => f.write_str("realm limit reached"),
            Abort::SessionLimit => f.write_str("session limit reached"),
            Abort::NoAuthMethod => f.write_str("none of the client's authmethods is offered on this listener"),
            Abort::AuthDenied => f.write_str("authentication failed"),
            Abort::AuthFailed { message } => f.write_str(message),
            Abort::AuthLimit => f.write_str("too many authentications in progress; try again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits;

    #[test]
    fn texts_and_uris() {
        // Goal: every reason maps to its URI, and a peer's long string is cut.
        let v = Violation::unknown_cancel_mode(&"x".repeat(100_000));
        let text = v.to_string();
        assert!(text.len() < limits::ERROR_PEER_TEXT_MAX_CHARS + 64, "{} bytes", text.len());
        assert_eq!(Abort::from(v).uri(), uris::PROTOCOL_VIOLATION);
        assert_eq!(Abort::no_such_realm("r").uri(), uris::NO_SUCH_REALM);
        assert_eq!(Abort::RealmLimit.uri(), uris::NO_SUCH_REALM);
        assert_eq!(Abort::SessionLimit.uri(), uris::LIMIT_EXCEEDED);
        assert_eq!(Abort::invalid_realm("a..b").to_string(), "invalid realm URI \"a..b\"");
        assert_eq!(peer_text("héllo"), "héllo");
    }
}
