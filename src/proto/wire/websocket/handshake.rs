//! The WebSocket opening handshake (RFC 6455 §4), both sides: validating an upgrade request
//! and choosing the WAMP subprotocol, the 101 / 400 / 426 answers, and the client's request
//! and its check of the server's answer.
//!
//! Must not: parse HTTP (that is `http.rs`; this file only reads the parsed fields), or do
//! I/O. The client side serves the load generator and the tests; no RNG here, so the key's
//! nonce is the caller's.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use crate::proto::wire::codec::Serializer;
use crate::proto::wire::error::peer_text;
use crate::proto::wire::http::{HttpVersion, Request, Response, text_response};

/// The GUID RFC 6455 §1.3 appends to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key ‖ GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// What a listener accepts.
#[derive(Clone, Copy, Debug)]
pub struct AcceptOptions<'a> {
    /// Serializers offered on this listener. The client's order of preference decides
    /// among them.
    pub serializers: &'a [Serializer],
    /// Accept a client that offers no acceptable subprotocol, answering without one.
    /// Off for WAMP; on for the plain WebSocket echo mode the Autobahn testsuite drives.
    pub allow_no_protocol: bool,
}

/// A valid upgrade: what to answer and which serializer the session uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// `None` only with [`AcceptOptions::allow_no_protocol`].
    pub serializer: Option<Serializer>,
    pub accept_key: String,
}

impl Accepted {
    /// The `101 Switching Protocols` response.
    pub fn response(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            self.accept_key
        );
        if let Some(ser) = self.serializer {
            out.push_str("Sec-WebSocket-Protocol: ");
            out.push_str(ser.subprotocol());
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// A refused upgrade: the status and a short reason, sent as the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

impl Rejection {
    const fn new(status: u16, reason: &'static str) -> Rejection {
        Rejection { status, reason }
    }

    /// The complete response to write before closing. A 426 names what to upgrade to
    /// and the version we speak (RFC 6455 §4.4).
    pub fn response(&self) -> Vec<u8> {
        let extra: &[(&str, &str)] =
            if self.status == 426 { &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")] } else { &[] };
        text_response(self.status, extra, self.reason)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for Rejection {}

/// Validate a request as a WebSocket upgrade (RFC 6455 §4.2.1) and choose the subprotocol.
pub fn accept(req: &Request, opts: &AcceptOptions<'_>) -> Result<Accepted, Rejection> {
    if req.method != "GET" {
        return Err(Rejection::new(400, "WebSocket upgrade needs GET"));
    }
    if req.version != HttpVersion::Http11 {
        return Err(Rejection::new(400, "WebSocket upgrade needs HTTP/1.1"));
    }
    if !req.headers.has_token("upgrade", "websocket") || !req.headers.has_token("connection", "upgrade") {
        return Err(Rejection::new(426, "this endpoint speaks WebSocket"));
    }
    if !req.headers.list("sec-websocket-version").any(|v| v == "13") {
        return Err(Rejection::new(426, "unsupported Sec-WebSocket-Version"));
    }
    let mut keys = req.headers.get_all("sec-websocket-key");
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return Err(Rejection::new(400, "need exactly one Sec-WebSocket-Key"));
    };
    if BASE64.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(Rejection::new(400, "Sec-WebSocket-Key is not 16 bytes in base64"));
    }
    let serializer = select_protocol(req, opts.serializers);
    if serializer.is_none() && !opts.allow_no_protocol {
        return Err(Rejection::new(400, "no acceptable WAMP subprotocol offered"));
    }
    Ok(Accepted { serializer, accept_key: accept_key(key) })
}

/// The first subprotocol in the client's `Sec-WebSocket-Protocol` list(s) that names one
/// of `serializers`. Subprotocol names are compared exactly (they are tokens, not
/// case-insensitive keywords); unknown ones, such as batched variants, are skipped.
pub fn select_protocol(req: &Request, serializers: &[Serializer]) -> Option<Serializer> {
    req.headers
        .list("sec-websocket-protocol")
        .filter_map(Serializer::from_subprotocol)
        .find(|s| serializers.contains(s))
}

/// A `Sec-WebSocket-Key` from 16 caller-supplied random bytes (the codec has no RNG).
pub fn client_key(nonce: [u8; 16]) -> String {
    BASE64.encode(nonce)
}

/// Append the client's upgrade request to `out`, offering `protocols` in that order.
///
/// # Panics
/// If `host` or `path` contain control characters or spaces: they come from our own
/// configuration, and letting them through would let them inject header lines.
pub fn write_client_request(host: &str, path: &str, protocols: &[Serializer], key: &str, out: &mut Vec<u8>) {
    let clean = |s: &str| !s.is_empty() && s.bytes().all(|b| (0x21..=0x7E).contains(&b));
    assert!(clean(host) && clean(path) && clean(key), "host, path and key must be visible ASCII");
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !protocols.is_empty() {
        let names: Vec<&str> = protocols.iter().map(|s| s.subprotocol()).collect();
        head.push_str("Sec-WebSocket-Protocol: ");
        head.push_str(&names.join(", "));
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
}

/// Why a client rejects the server's handshake response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientHandshakeError {
    /// Not 101; carries the status.
    Status(u16),
    /// `Upgrade: websocket` or `Connection: upgrade` missing.
    NotUpgrade,
    /// `Sec-WebSocket-Accept` missing or not the hash of our key.
    BadAccept,
    /// The server chose a subprotocol we did not offer (its name, cut to
    /// `limits::ERROR_PEER_TEXT_MAX_CHARS` characters).
    UnexpectedProtocol(String),
    /// We offered subprotocols and the server chose none (WAMP cannot proceed).
    NoProtocol,
    /// The server named an extension we did not offer.
    UnexpectedExtension,
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientHandshakeError::Status(s) => write!(f, "server answered HTTP {s}, not 101"),
            ClientHandshakeError::NotUpgrade => f.write_str("response is not a WebSocket upgrade"),
            ClientHandshakeError::BadAccept => f.write_str("wrong or missing Sec-WebSocket-Accept"),
            ClientHandshakeError::UnexpectedProtocol(p) => write!(f, "server chose unoffered subprotocol {p:?}"),
            ClientHandshakeError::NoProtocol => f.write_str("server chose no subprotocol"),
            ClientHandshakeError::UnexpectedExtension => f.write_str("server negotiated an unoffered extension"),
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

/// Check the server's response against the `key` we sent and the `offered` subprotocols;
/// returns the serializer the server chose (`None` when we offered none).
pub fn validate_response(
    resp: &Response,
    key: &str,
    offered: &[Serializer],
) -> Result<Option<Serializer>, ClientHandshakeError> {
    if resp.status != 101 {
        return Err(ClientHandshakeError::Status(resp.status));
    }
    if !resp.headers.has_token("upgrade", "websocket") || !resp.headers.has_token("connection", "upgrade") {
        return Err(ClientHandshakeError::NotUpgrade);
    }
    if resp.headers.get("sec-websocket-accept") != Some(accept_key(key).as_str()) {
        return Err(ClientHandshakeError::BadAccept);
    }
    if resp.headers.get("sec-websocket-extensions").is_some() {
        return Err(ClientHandshakeError::UnexpectedExtension);
    }
    match resp.headers.get("sec-websocket-protocol") {
        None if offered.is_empty() => Ok(None),
        None => Err(ClientHandshakeError::NoProtocol),
        Some(name) => match Serializer::from_subprotocol(name) {
            Some(s) if offered.contains(&s) => Ok(Some(s)),
            _ => Err(ClientHandshakeError::UnexpectedProtocol(peer_text(name))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::http::tests::{KEY, parse, upgrade_request};
    use crate::proto::wire::http::{HttpError, http_response, parse_request, parse_response};

    const WAMP: AcceptOptions<'static> = AcceptOptions { serializers: &Serializer::ALL, allow_no_protocol: false };

    #[test]
    fn accept_key_rfc_example() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    // Goal: a request head parses into its parts; lookup ignores case; bytes after the head
    // are not counted.

    // Goal: plain HTTP requests (metrics, health) parse and are recognised as not-upgrades;
    // handing one to `accept` anyway gets a 426 that says what to speak.
    #[test]
    fn non_upgrade_requests() {
        let req = parse("GET /metrics?format=prom HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert!(!req.is_websocket_upgrade());
        assert_eq!(req.path_without_query(), "/metrics");
        let health = parse("GET /health HTTP/1.0\r\n\r\n");
        assert_eq!((health.path_without_query(), health.version), ("/health", HttpVersion::Http10));

        let rejection = accept(&req, &WAMP).expect_err("not an upgrade");
        assert_eq!(rejection.status, 426);
        let response = String::from_utf8(rejection.response()).expect("ascii");
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{response}");
        assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{response}");
        assert!(response.contains("\r\nUpgrade: websocket\r\n"), "{response}");
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
        let body = response.split("\r\n\r\n").nth(1).expect("body");
        assert!(response.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{response}");

        let ok = http_response(200, &[("Content-Type", "text/plain")], b"ok\n");
        assert_eq!(ok, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n");
    }

    // Goal: a valid upgrade gets the exact 101 of RFC 6455 §1.3 plus the chosen protocol.
    #[test]
    fn accept_valid_upgrade() {
        let req = parse(&upgrade_request("Sec-WebSocket-Protocol: wamp.2.json\r\n"));
        let accepted = accept(&req, &WAMP).expect("valid upgrade");
        assert_eq!(accepted, Accepted { serializer: Some(Serializer::Json), accept_key: accept_key(KEY) });
        assert_eq!(
            String::from_utf8(accepted.response()).expect("ascii"),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: wamp.2.json\r\n\r\n"
        );
        // Token lists and case in Upgrade / Connection.
        let relaxed = upgrade_request("Sec-WebSocket-Protocol: wamp.2.cbor\r\n")
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: Upgrade", "Connection: keep-alive, UPGRADE");
        assert_eq!(accept(&parse(&relaxed), &WAMP).map(|a| a.serializer), Ok(Some(Serializer::Cbor)));
    }

    // Goal: the client's order of preference wins among the protocols we accept; unknown
    // and differently-cased names are skipped; lists may span several header lines.
    #[test]
    fn protocol_selection() {
        let choose = |offer: &str, ours: &[Serializer]| {
            let req = parse(&upgrade_request(offer));
            accept(&req, &AcceptOptions { serializers: ours, allow_no_protocol: false }).map(|a| a.serializer)
        };
        let all = &Serializer::ALL;
        use Serializer::{Cbor, Json, MsgPack};
        assert_eq!(choose("Sec-WebSocket-Protocol: wamp.2.cbor, wamp.2.json\r\n", &[Json, Cbor]), Ok(Some(Cbor)));
        assert_eq!(choose("Sec-WebSocket-Protocol: wamp.2.cbor, wamp.2.json\r\n", &[Json]), Ok(Some(Json)));
        assert_eq!(
            choose("Sec-WebSocket-Protocol: foo,wamp.2.json.batched ,\t wamp.2.msgpack\r\n", all),
            Ok(Some(MsgPack))
        );
        assert_eq!(
            choose("Sec-WebSocket-Protocol: foo\r\nSec-WebSocket-Protocol: wamp.2.json\r\n", all),
            Ok(Some(Json))
        );
        let none = Err(Rejection { status: 400, reason: "no acceptable WAMP subprotocol offered" });
        assert_eq!(choose("Sec-WebSocket-Protocol: WAMP.2.JSON\r\n", all), none);
        assert_eq!(choose("Sec-WebSocket-Protocol: wamp.2.msgpack\r\n", &[Json]), none);
        assert_eq!(choose("", all), none);

        // Echo / testee mode: no protocol at all is fine, and the 101 names none.
        let echo = AcceptOptions { serializers: &[], allow_no_protocol: true };
        let accepted = accept(&parse(&upgrade_request("Sec-WebSocket-Protocol: chat\r\n")), &echo).expect("echo");
        assert_eq!(accepted.serializer, None);
        assert!(!String::from_utf8(accepted.response()).expect("ascii").contains("Sec-WebSocket-Protocol"));
        // ...but a WAMP protocol is still chosen when offered and enabled.
        let both = AcceptOptions { serializers: all, allow_no_protocol: true };
        let req = parse(&upgrade_request("Sec-WebSocket-Protocol: wamp.2.json\r\n"));
        assert_eq!(accept(&req, &both).map(|a| a.serializer), Ok(Some(Json)));
    }

    // Goal: every reason to refuse an upgrade, with its status.
    #[test]
    fn upgrade_rejections() {
        let base = upgrade_request("Sec-WebSocket-Protocol: wamp.2.json\r\n");
        let cases: &[(String, u16)] = &[
            (base.replacen("GET", "POST", 1), 400),
            (base.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (base.replace("Upgrade: websocket\r\n", ""), 426),
            (base.replace("Upgrade: websocket", "Upgrade: h2c"), 426),
            (base.replace("Connection: Upgrade", "Connection: keep-alive"), 426),
            (base.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"), 426),
            (base.replace("Sec-WebSocket-Version: 13\r\n", ""), 426),
            (base.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""), 400),
            (base.replace(KEY, "not base64!"), 400),
            (base.replace(KEY, "AAAAAAAAAAAAAAAAAAAA"), 400), // 15 bytes
            (base.replace(KEY, "dGhlIHNhbXBsZSBub25jZQ"), 400), // padding missing
            (base.replace("Host:", &format!("Sec-WebSocket-Key: {KEY}\r\nHost:")), 400), // two keys
        ];
        for (text, status) in cases {
            let rejection = accept(&parse(text), &WAMP).expect_err(text);
            assert_eq!(rejection.status, *status, "{text}: {rejection}");
            let response = rejection.response();
            assert!(response.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
            let has_version = String::from_utf8_lossy(&response).contains("Sec-WebSocket-Version: 13");
            assert_eq!(has_version, *status == 426);
        }
    }

    // Goal: the client side interoperates with the server side, and rejects bad responses.
    #[test]
    fn client_handshake() {
        let key = client_key(*b"the sample nonce");
        assert_eq!(key, KEY);
        let offered = [Serializer::MsgPack, Serializer::Json];
        let mut request = Vec::new();
        write_client_request("localhost:8080", "/ws", &offered, &key, &mut request);
        let Ok(Some((req, _))) = parse_request(&request) else { panic!("our request parses") };
        assert_eq!(req.header("sec-websocket-protocol"), Some("wamp.2.msgpack, wamp.2.json"));
        let response = accept(&req, &WAMP).expect("our request is valid").response();
        for i in 0..response.len() {
            assert_eq!(parse_response(&response[..i]), Ok(None));
        }
        let Ok(Some((resp, n))) = parse_response(&response) else { panic!("response parses") };
        assert_eq!((resp.status, resp.reason.as_str(), n), (101, "Switching Protocols", response.len()));
        assert_eq!(validate_response(&resp, &key, &offered), Ok(Some(Serializer::MsgPack)));

        let check = |text: &str, offered: &[Serializer]| {
            let Ok(Some((resp, _))) = parse_response(text.as_bytes()) else { panic!("parses: {text}") };
            validate_response(&resp, KEY, offered)
        };
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        let json = [Serializer::Json];
        assert_eq!(check(&format!("{ok}\r\n"), &[]), Ok(None));
        assert_eq!(
            check(&format!("{ok}Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n"), &json),
            Ok(Some(Serializer::Json))
        );
        assert_eq!(check(&format!("{ok}\r\n"), &json), Err(ClientHandshakeError::NoProtocol));
        assert_eq!(
            check(&format!("{ok}Sec-WebSocket-Protocol: wamp.2.cbor\r\n\r\n"), &json),
            Err(ClientHandshakeError::UnexpectedProtocol("wamp.2.cbor".into()))
        );
        assert_eq!(
            check(&format!("{ok}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"), &[]),
            Err(ClientHandshakeError::UnexpectedExtension)
        );
        assert_eq!(check(&format!("{}\r\n", ok.replace("s3pP", "xxxx")), &[]), Err(ClientHandshakeError::BadAccept));
        assert_eq!(
            check(&format!("{}\r\n", ok.replace("websocket", "h2c")), &[]),
            Err(ClientHandshakeError::NotUpgrade)
        );
        assert_eq!(check("HTTP/1.1 400 Bad Request\r\n\r\n", &[]), Err(ClientHandshakeError::Status(400)));
        assert_eq!(check("HTTP/1.1 101\r\n\r\n", &[]), Err(ClientHandshakeError::NotUpgrade));
        assert_eq!(parse_response(b"HTTP/1.1 1O1 x\r\n\r\n"), Err(HttpError::Malformed("status code")));
        assert_eq!(parse_response(b"HTTP/1.1\r\n\r\n"), Err(HttpError::Malformed("status line")));
    }
}
