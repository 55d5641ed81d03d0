//! WebSocket transport codec (RFC 6455): the HTTP/1.1 opening handshake on both sides and
//! the frame codec, as pure functions and an incremental [`Decoder`] over `BytesMut`.
//!
//! Owns: parsing HTTP request/response heads (also used to route `GET /metrics` and
//! `GET /health`, so a request here is not assumed to be an upgrade), validating an
//! upgrade and choosing the WAMP subprotocol, building the 101 / 400 / 426 responses,
//! decoding frames (in-place unmasking, reassembly of fragments, fail-fast UTF-8
//! validation, close-frame checks), and writing frame headers.
//!
//! Must not: do I/O, read the clock or know about glommio; decode WAMP (that is `message`);
//! answer pings or close handshakes itself — it reports [`Event`]s and the connection code,
//! which owns the write queue, replies. No extension is ever negotiated, so RSV bits are
//! always a protocol error.
//!
//! Outgoing server frames are unmasked, and only the header is written here
//! ([`encode_header`]): one encoded EVENT payload is shared by every subscriber's queue
//! and each connection gets its own few header bytes in front of it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Buf, Bytes, BytesMut};
use sha1::{Digest, Sha1};

use super::message::Serializer;
use crate::limits;

// =======================================================================================
// HTTP heads
// =======================================================================================

/// The GUID RFC 6455 §1.3 appends to the key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The HTTP version of a parsed head. HTTP/2+ never reaches us as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    Http10,
    Http11,
}

/// Header fields in arrival order. Names compare case-insensitively (RFC 9110 §5.1);
/// values are kept as sent minus surrounding whitespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of `name`, in order (a field may be repeated).
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.0.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether any value of `name`, read as a comma-separated token list, contains `token`
    /// (ASCII case-insensitive). `Connection: keep-alive, Upgrade` contains `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).flat_map(list_items).any(|t| t.eq_ignore_ascii_case(token))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Items of a comma-separated header list, trimmed, empty items skipped (RFC 9110 §5.6.1).
fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(|t| t.trim_matches([' ', '\t'])).filter(|t| !t.is_empty())
}

/// A parsed HTTP request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request-target as sent: path and query (`/ws?x=1`), or another form; the router
    /// serves any path.
    pub path: String,
    pub version: HttpVersion,
    pub headers: Headers,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// [`Request::path`] without its query string, for routing `/metrics` and `/health`.
    pub fn path_without_query(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// Whether the client asks for a WebSocket upgrade at all (`Upgrade: websocket`).
    /// A request that asks but is otherwise bad still goes to [`accept`], which says why.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.headers.has_token("upgrade", "websocket")
    }
}

/// A parsed HTTP response head (client side of the handshake).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub version: HttpVersion,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
}

/// Why an HTTP head could not be parsed. Each maps to the status to answer with before
/// closing ([`HttpError::response`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// No end of head within `limits::HTTP_HEAD_MAX_BYTES`. Status 431.
    HeadTooLarge,
    /// More than `limits::HTTP_HEADERS_MAX` fields. Status 431.
    TooManyHeaders,
    /// An HTTP version other than 1.0 or 1.1. Status 505.
    UnsupportedVersion,
    /// Not HTTP/1.x syntax; says which part. Status 400.
    Malformed(&'static str),
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UnsupportedVersion => 505,
            HttpError::Malformed(_) => 400,
        }
    }

    /// A complete response to write before closing.
    pub fn response(self) -> Vec<u8> {
        text_response(self.status(), &[], &self.to_string())
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeadTooLarge => f.write_str("request head too large"),
            HttpError::TooManyHeaders => f.write_str("too many header fields"),
            HttpError::UnsupportedVersion => f.write_str("HTTP version not supported"),
            HttpError::Malformed(what) => write!(f, "malformed HTTP head: {what}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Parse a request head from the start of `buf`. `Ok(None)`: incomplete, read more.
/// `Ok(Some((request, n)))`: the head is `buf[..n]`; bytes after it (a body, or the first
/// WebSocket frames of an eager client) are the caller's.
///
/// Lines may end in CRLF or a bare LF (RFC 9112 §2.2 lets a recipient accept LF). Each
/// complete line is checked as soon as it arrives, so garbage fails before the 16 KiB bound.
/// Stateless: a caller that re-parses after every read rescans the head, at most
/// `HTTP_HEAD_MAX_BYTES` per read; the runtime can skip the call when a read added no `\n`.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let parsed = parse_head(buf, parse_request_line)?;
    Ok(parsed.map(|((method, path, version), headers, len)| (Request { method, path, version, headers }, len)))
}

/// Parse a response head from the start of `buf` (client side); same rules as
/// [`parse_request`].
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HttpError> {
    let parsed = parse_head(buf, parse_status_line)?;
    Ok(parsed.map(|((version, status, reason), headers, len)| (Response { version, status, reason, headers }, len)))
}

/// The shared line loop: start line via `parse_start`, then fields, then an empty line.
fn parse_head<T>(
    buf: &[u8],
    parse_start: fn(&[u8]) -> Result<T, HttpError>,
) -> Result<Option<(T, Headers, usize)>, HttpError> {
    let window = buf.get(..limits::HTTP_HEAD_MAX_BYTES).unwrap_or(buf);
    // No line end in the bounded window: either wait, or the head is too large.
    let incomplete = || if buf.len() >= limits::HTTP_HEAD_MAX_BYTES { Err(HttpError::HeadTooLarge) } else { Ok(None) };
    let Some((line, mut rest)) = split_line(window) else {
        return incomplete();
    };
    let start = parse_start(line)?;
    let mut fields = Vec::new();
    loop {
        let Some((line, after)) = split_line(rest) else {
            return incomplete();
        };
        rest = after;
        if line.is_empty() {
            return Ok(Some((start, Headers(fields), window.len() - rest.len())));
        }
        if fields.len() == limits::HTTP_HEADERS_MAX {
            return Err(HttpError::TooManyHeaders);
        }
        fields.push(parse_field_line(line)?);
    }
}

/// The first complete line of `buf` without its CRLF or LF, and what follows it.
fn split_line(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let (line, after) = buf.split_at(nl);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, after.get(1..).unwrap_or_default()))
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, HttpVersion), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("request line"));
    };
    if method.is_empty() || !method.iter().copied().all(is_tchar) {
        return Err(HttpError::Malformed("method"));
    }
    // Visible ASCII only: a target never holds spaces, controls or raw non-ASCII.
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7E).contains(b)) {
        return Err(HttpError::Malformed("request target"));
    }
    let version = parse_version(version)?;
    Ok((ascii_string(method), ascii_string(target), version))
}

fn parse_status_line(line: &[u8]) -> Result<(HttpVersion, u16, String), HttpError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(HttpError::Malformed("status line"));
    };
    let version = parse_version(version)?;
    let status = match code {
        [a, b, c] if code.iter().all(u8::is_ascii_digit) => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return Err(HttpError::Malformed("status code")),
    };
    let reason = parts.next().unwrap_or_default();
    if reason.iter().any(|&b| is_ctl(b) && b != b'\t') {
        return Err(HttpError::Malformed("reason phrase"));
    }
    Ok((version, status, String::from_utf8_lossy(reason).into_owned()))
}

fn parse_version(v: &[u8]) -> Result<HttpVersion, HttpError> {
    match v {
        b"HTTP/1.1" => Ok(HttpVersion::Http11),
        b"HTTP/1.0" => Ok(HttpVersion::Http10),
        _ if v.starts_with(b"HTTP/") => Err(HttpError::UnsupportedVersion),
        _ => Err(HttpError::Malformed("HTTP version")),
    }
}

fn parse_field_line(line: &[u8]) -> Result<(String, String), HttpError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        // obs-fold: RFC 9112 §5.2 lets a server reject it, and nobody sends it any more.
        return Err(HttpError::Malformed("folded header line"));
    }
    let colon = line.iter().position(|&b| b == b':').ok_or(HttpError::Malformed("header line without colon"))?;
    let (name, value) = line.split_at(colon);
    // Includes "no whitespace before the colon" (RFC 9112 §5.1: MUST reject).
    if name.is_empty() || !name.iter().copied().all(is_tchar) {
        return Err(HttpError::Malformed("header name"));
    }
    let value = value.get(1..).unwrap_or_default().trim_ascii();
    if value.iter().any(|&b| is_ctl(b) && b != b'\t') {
        return Err(HttpError::Malformed("control character in header value"));
    }
    // Values are compared, never re-emitted; a stray non-UTF-8 byte in a cookie is not
    // worth refusing a connection over, so it is replaced rather than rejected.
    Ok((ascii_string(name), String::from_utf8_lossy(value).into_owned()))
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7F
}

fn ascii_string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A complete HTTP/1.1 response with the given extra fields and a `Content-Length`.
/// Used for the handshake rejections and by the runtime for `/metrics` and `/health`.
pub fn http_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// A short plain-text response that closes the connection.
fn text_response(status: u16, extra: &[(&str, &str)], text: &str) -> Vec<u8> {
    let mut headers = vec![("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")];
    headers.extend_from_slice(extra);
    http_response(status, &headers, format!("{text}\n").as_bytes())
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

// =======================================================================================
// Opening handshake, server side
// =======================================================================================

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
    if !req.headers.get_all("sec-websocket-version").flat_map(list_items).any(|v| v == "13") {
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
        .get_all("sec-websocket-protocol")
        .flat_map(list_items)
        .filter_map(Serializer::from_subprotocol)
        .find(|s| serializers.contains(s))
}

// =======================================================================================
// Opening handshake, client side (load generator, tests)
// =======================================================================================

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
    /// The server chose a subprotocol we did not offer.
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
            _ => Err(ClientHandshakeError::UnexpectedProtocol(name.to_owned())),
        },
    }
}

// =======================================================================================
// Frames
// =======================================================================================

/// Frame opcodes (RFC 6455 §5.2); 3–7 and 11–15 are reserved and rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        match bits {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    /// The data opcode WAMP uses for a serializer: text for JSON, binary otherwise.
    pub fn for_serializer(ser: Serializer) -> OpCode {
        if ser.is_binary() { OpCode::Binary } else { OpCode::Text }
    }
}

/// Which end of the connection the decoder sits on; decides the masking rule (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We are the server: every incoming frame must be masked.
    Server,
    /// We are the client: no incoming frame may be masked.
    Client,
}

/// Close status codes shardbar sends (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Whether `code` may appear in a Close frame on the wire: 1000–1003, 1007–1011 and the
/// application/library ranges 3000–4999. 1004 is reserved; 1005, 1006 and 1015 are for
/// local reporting only (RFC 6455 §7.4.1); everything else is unassigned.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Longest close reason that fits a control frame after the 2-byte code.
pub const CLOSE_REASON_MAX_BYTES: usize = limits::WS_CONTROL_PAYLOAD_MAX_BYTES - 2;

/// Longest unmasked (server) frame header.
pub const HEADER_MAX_BYTES: usize = 10;

/// Longest masked (client) frame header.
pub const MASKED_HEADER_MAX_BYTES: usize = 14;

/// One decoded item. Data messages are whole (fragments reassembled); text messages are
/// valid UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Message {
        binary: bool,
        data: Bytes,
    },
    /// Answer with a Pong carrying the same payload.
    Ping(Bytes),
    Pong(Bytes),
    /// The peer started (or answered) the closing handshake. `code` is `None` for an empty
    /// Close. The decoder yields nothing after this.
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// A protocol violation by the peer: send a Close with `code` and `reason`, then drop the
/// connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: u16,
    pub reason: &'static str,
}

impl Error {
    const fn protocol(reason: &'static str) -> Error {
        Error { code: close_code::PROTOCOL_ERROR, reason }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for Error {}

const INVALID_UTF8: Error = Error { code: close_code::INVALID_PAYLOAD, reason: "invalid UTF-8 in text message" };

/// A frame whose header has been consumed from the buffer; its payload is at the buffer's
/// front, `processed` bytes of it already unmasked (and UTF-8 checked, if text).
#[derive(Clone, Copy, Debug)]
struct FrameState {
    fin: bool,
    opcode: OpCode,
    len: usize,
    mask: Option<[u8; 4]>,
    /// Payload belongs to a text message: validate as it arrives.
    text: bool,
    processed: usize,
}

/// A data message split over several frames, being reassembled.
#[derive(Debug)]
struct Fragmented {
    binary: bool,
    data: BytesMut,
    frames: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// A Close arrived; nothing more is decoded.
    Closed,
    /// The peer violated the protocol; the error is repeated to any further call.
    Failed(Error),
}

/// Incremental frame decoder for one connection.
///
/// Feed it the connection's read buffer after every read. It consumes a frame header as
/// soon as it is complete and valid — so a bad or oversized frame fails before its payload
/// is read — and then unmasks (and, for text, UTF-8-checks) payload bytes in place as they
/// arrive. A complete unfragmented payload leaves as a zero-copy `split_to(..).freeze()`;
/// fragments are copied into one reassembly buffer.
///
/// Contract: the caller appends to `buf` and never modifies the bytes at its front between
/// calls (they may already be unmasked).
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message_bytes: usize,
    frame: Option<FrameState>,
    fragmented: Option<Fragmented>,
    utf8: Utf8Validator,
    state: State,
}

impl Decoder {
    /// # Panics
    /// If `max_message_bytes` exceeds `limits::MESSAGE_SIZE_CEILING_BYTES`.
    pub fn new(role: Role, max_message_bytes: usize) -> Decoder {
        assert!(max_message_bytes <= limits::MESSAGE_SIZE_CEILING_BYTES, "WebSocket message limit above ceiling");
        Decoder {
            role,
            max_message_bytes,
            frame: None,
            fragmented: None,
            utf8: Utf8Validator::default(),
            state: State::Open,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// A Close frame has been decoded.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// How many more bytes (beyond `buffered`) are needed before the current frame can
    /// complete: lets the runtime reserve once for a large frame. A lower bound when no
    /// header has been parsed yet.
    pub fn bytes_wanted(&self, buffered: usize) -> usize {
        match &self.frame {
            Some(f) => f.len.saturating_sub(buffered),
            None => 2usize.saturating_sub(buffered),
        }
    }

    /// The next event, `Ok(None)` when more bytes are needed (or after a Close).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Error> {
        match self.state {
            State::Failed(e) => return Err(e),
            State::Closed => return Ok(None),
            State::Open => {}
        }
        let result = self.decode_open(buf);
        if let Err(e) = result {
            self.state = State::Failed(e);
        }
        result
    }

    fn decode_open(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Error> {
        // Each turn consumes a header or completes a frame, so the loop is bounded by `buf`;
        // it only goes round again after a non-final fragment, which yields no event.
        loop {
            let frame = match &mut self.frame {
                Some(frame) => frame,
                None => {
                    let Some((frame, header_len)) = self.read_header(buf)? else {
                        return Ok(None);
                    };
                    buf.advance(header_len);
                    self.frame.insert(frame)
                }
            };
            let available = buf.len().min(frame.len);
            if let Some(fresh) = buf.get_mut(frame.processed..available)
                && !fresh.is_empty()
            {
                if let Some(key) = frame.mask {
                    unmask_at(fresh, key, frame.processed);
                }
                if frame.text {
                    self.utf8.feed(fresh)?;
                }
                frame.processed = available;
            }
            if frame.processed < frame.len {
                return Ok(None);
            }
            let frame = *frame;
            self.frame = None;
            // Cannot panic: `processed == len` was reached in this call, with
            // `processed <= available <= buf.len()`.
            let payload = buf.split_to(frame.len);
            if let Some(event) = self.complete_frame(frame, payload)? {
                return Ok(Some(event));
            }
        }
    }

    /// Parse and validate the header at the front of `buf`. Every check that the first two
    /// octets allow is made before waiting for the extended length or mask key.
    fn read_header(&mut self, buf: &[u8]) -> Result<Option<(FrameState, usize)>, Error> {
        let Some(&[b0, b1]) = buf.first_chunk::<2>() else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(Error::protocol("reserved bits set without a negotiated extension"));
        }
        let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(Error::protocol("reserved opcode"))?;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(Error::protocol("client frame is not masked")),
            (Role::Client, true) => return Err(Error::protocol("server frame is masked")),
            _ => {}
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(Error::protocol("fragmented control frame"));
            }
            if usize::from(len7) > limits::WS_CONTROL_PAYLOAD_MAX_BYTES {
                return Err(Error::protocol("control frame payload over 125 bytes"));
            }
        }
        let mut text = false;
        let mut already = 0;
        match (opcode, &self.fragmented) {
            (OpCode::Continuation, None) => return Err(Error::protocol("continuation frame without a message")),
            (OpCode::Continuation, Some(frag)) => {
                if frag.frames >= limits::WS_FRAGMENTS_MAX {
                    return Err(Error { code: close_code::TOO_BIG, reason: "too many fragments in one message" });
                }
                text = !frag.binary;
                already = frag.data.len();
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(Error::protocol("new data frame inside a fragmented message"));
            }
            (OpCode::Text, None) => text = true,
            _ => {}
        }

        let ext_len = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let header_len = 2 + ext_len + if masked { 4 } else { 0 };
        let Some(header) = buf.get(..header_len) else {
            return Ok(None);
        };
        // Non-minimal length encodings are accepted: RFC 6455 says "minimal number of
        // bytes MUST be used" for senders but names no receiver action, and rejecting
        // them buys nothing.
        let len: u64 = match header {
            [_, _, a, b, ..] if ext_len == 2 => u64::from(u16::from_be_bytes([*a, *b])),
            [_, _, a, b, c, d, e, f, g, h, ..] if ext_len == 8 => u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]),
            _ => u64::from(len7),
        };
        if len >> 63 != 0 {
            return Err(Error::protocol("64-bit payload length with the most significant bit set"));
        }
        let limit = self.max_message_bytes.saturating_sub(already);
        let len = match usize::try_from(len) {
            Ok(len) if opcode.is_control() || len <= limit => len,
            _ => return Err(Error { code: close_code::TOO_BIG, reason: "message too big" }),
        };
        let mask = match header.get(2 + ext_len..) {
            Some(&[k0, k1, k2, k3]) if masked => Some([k0, k1, k2, k3]),
            _ => None,
        };
        if opcode == OpCode::Text {
            self.utf8 = Utf8Validator::default();
        }
        Ok(Some((FrameState { fin, opcode, len, mask, text, processed: 0 }, header_len)))
    }

    /// A frame's payload is complete (unmasked, text already checked up to any trailing
    /// partial character).
    fn complete_frame(&mut self, frame: FrameState, payload: BytesMut) -> Result<Option<Event>, Error> {
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                let binary = frame.opcode == OpCode::Binary;
                if frame.fin {
                    if !binary {
                        self.utf8.finish()?;
                    }
                    return Ok(Some(Event::Message { binary, data: payload.freeze() }));
                }
                // Kept as is; the first continuation copies it into a buffer of its own,
                // which also stops it pinning the read buffer.
                self.fragmented = Some(Fragmented { binary, data: payload, frames: 1 });
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(frag) = self.fragmented.as_mut() else {
                    return Err(Error::protocol("continuation frame without a message"));
                };
                frag.data.extend_from_slice(&payload);
                frag.frames += 1;
                if !frame.fin {
                    return Ok(None);
                }
                let binary = frag.binary;
                let data = self.fragmented.take().map(|f| f.data.freeze()).unwrap_or_default();
                if !binary {
                    self.utf8.finish()?;
                }
                Ok(Some(Event::Message { binary, data }))
            }
            OpCode::Ping => Ok(Some(Event::Ping(payload.freeze()))),
            OpCode::Pong => Ok(Some(Event::Pong(payload.freeze()))),
            OpCode::Close => {
                let event = parse_close(&payload)?;
                self.state = State::Closed;
                Ok(Some(event))
            }
        }
    }
}

fn parse_close(payload: &[u8]) -> Result<Event, Error> {
    match payload {
        [] => Ok(Event::Close { code: None, reason: String::new() }),
        [_] => Err(Error::protocol("close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(Error::protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| Error { code: close_code::INVALID_PAYLOAD, reason: "invalid UTF-8 in close reason" })?;
            Ok(Event::Close { code: Some(code), reason: reason.to_owned() })
        }
    }
}

/// Incremental UTF-8 check for one text message. Fail-fast: a byte that cannot continue
/// any valid sequence fails at once; a sequence cut by a chunk or fragment boundary is
/// carried (at most 3 bytes) until the next bytes complete or break it. Uses the standard
/// library's validator, which reports exactly that distinction (`Utf8Error::error_len`).
#[derive(Clone, Copy, Debug, Default)]
struct Utf8Validator {
    partial: [u8; 4],
    partial_len: usize,
}

impl Utf8Validator {
    fn feed(&mut self, mut input: &[u8]) -> Result<(), Error> {
        if self.partial_len > 0 {
            let have = self.partial_len;
            let need = utf8_width(self.partial[0]).saturating_sub(have);
            let take = need.min(input.len());
            let (head, rest) = input.split_at(take);
            let total = have + take;
            let Some(slot) = self.partial.get_mut(have..total) else {
                return Err(INVALID_UTF8);
            };
            slot.copy_from_slice(head);
            match std::str::from_utf8(self.partial.get(..total).unwrap_or_default()) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete, and `input` is used up.
                    self.partial_len = total;
                    return Ok(());
                }
                Err(_) => return Err(INVALID_UTF8),
            }
            input = rest;
        }
        // JSON is almost always ASCII: a word-at-a-time check first (from_utf8 on short
        // messages was 8% of loadgen's CPU per WebSocket/JSON event).
        if is_ascii(input) {
            return Ok(());
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = input.get(e.valid_up_to()..).unwrap_or_default();
                let slot = self.partial.get_mut(..tail.len()).ok_or(INVALID_UTF8)?;
                slot.copy_from_slice(tail);
                self.partial_len = tail.len();
                Ok(())
            }
            Err(_) => Err(INVALID_UTF8),
        }
    }

    /// End of message: a character still incomplete is invalid.
    fn finish(&mut self) -> Result<(), Error> {
        let complete = self.partial_len == 0;
        *self = Utf8Validator::default();
        if complete { Ok(()) } else { Err(INVALID_UTF8) }
    }
}

/// Whether every byte is below 0x80, sixteen at a time (std's `is_ascii` fell back to a
/// byte loop for message-sized inputs: ~7% of loadgen's CPU per WebSocket/JSON event).
fn is_ascii(input: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = input.chunks_exact(16);
    let mut acc = 0u64;
    for c in &mut chunks {
        let (a, b) = c.split_at(8);
        acc |=
            u64::from_le_bytes(a.try_into().unwrap_or_default()) | u64::from_le_bytes(b.try_into().unwrap_or_default());
    }
    let tail = chunks.remainder().iter().fold(0u8, |m, &b| m | b);
    acc & HIGH == 0 && tail < 0x80
}

/// Length of the UTF-8 sequence a valid lead byte starts; 0 for a byte that leads none.
fn utf8_width(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

/// XOR `buf` with the repeating 4-byte masking `key` (RFC 6455 §5.3), in place.
///
/// The hot path of every client→server byte. Works on 8-byte words (the key repeated
/// twice), which the compiler turns into SIMD; the tail is done byte by byte.
pub fn unmask(buf: &mut [u8], key: [u8; 4]) {
    let [k0, k1, k2, k3] = key;
    let key_word = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let (words, tail) = buf.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ key_word).to_ne_bytes();
    }
    // `words` covered a multiple of 8 bytes, so the tail starts at key index 0.
    for (b, k) in tail.iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

/// [`unmask`] for a slice that starts `offset` bytes into the payload.
fn unmask_at(buf: &mut [u8], mut key: [u8; 4], offset: usize) {
    key.rotate_left(offset % 4);
    unmask(buf, key);
}

// =======================================================================================
// Frame encoding
// =======================================================================================

/// Write an unmasked (server) frame header for a payload of `payload_len` bytes into `out`;
/// returns how many bytes of `out` it used (2, 4 or 10). The payload itself is not
/// touched, so one payload can go to many connections.
///
/// # Panics
/// For a control frame that is not final or longer than 125 bytes: we build those
/// ourselves, so that is a bug here, not peer input.
pub fn encode_header(opcode: OpCode, fin: bool, payload_len: usize, out: &mut [u8; HEADER_MAX_BYTES]) -> usize {
    assert_control_frame(opcode, fin, payload_len);
    out[0] = (u8::from(fin) << 7) | opcode as u8;
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// Write a masked (client) frame header with the caller's `mask` key; returns its length
/// (6, 8 or 14). The caller masks the payload (see [`write_masked_frame`]).
///
/// # Panics
/// As [`encode_header`].
pub fn encode_masked_header(
    opcode: OpCode,
    fin: bool,
    payload_len: usize,
    mask: [u8; 4],
    out: &mut [u8; MASKED_HEADER_MAX_BYTES],
) -> usize {
    let mut plain = [0u8; HEADER_MAX_BYTES];
    let n = encode_header(opcode, fin, payload_len, &mut plain);
    out[..n].copy_from_slice(&plain[..n]);
    out[1] |= 0x80;
    out[n..n + 4].copy_from_slice(&mask);
    n + 4
}

fn assert_control_frame(opcode: OpCode, fin: bool, payload_len: usize) {
    assert!(
        !opcode.is_control() || (fin && payload_len <= limits::WS_CONTROL_PAYLOAD_MAX_BYTES),
        "control frame must be final and at most 125 bytes"
    );
}

/// Append a final, unmasked (server) frame to `out`.
pub fn write_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let mut header = [0u8; HEADER_MAX_BYTES];
    let n = encode_header(opcode, true, payload.len(), &mut header);
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
}

/// Append a masked (client) frame to `out`. The key is a parameter so that tests and the
/// load generator stay deterministic; a real client should draw it at random per frame.
pub fn write_masked_frame(opcode: OpCode, fin: bool, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let mut header = [0u8; MASKED_HEADER_MAX_BYTES];
    let n = encode_masked_header(opcode, fin, payload.len(), mask, &mut header);
    out.extend_from_slice(&header[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask);
}

/// A Close payload: the code, then `reason` cut at a character boundary to fit in a
/// control frame.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(CLOSE_REASON_MAX_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

/// Append a server Close frame with `code` and `reason` to `out`.
pub fn write_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    write_frame(OpCode::Close, &close_payload(code, reason), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::ids::IdGen;

    /// RFC 6455 §1.3 example key.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    /// RFC 6455 §5.7 example masking key.
    const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
    const WAMP: AcceptOptions<'static> = AcceptOptions { serializers: &Serializer::ALL, allow_no_protocol: false };

    fn upgrade_request(extra: &str) -> String {
        format!(
            "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn parse(text: &str) -> Request {
        match parse_request(text.as_bytes()) {
            Ok(Some((req, len))) => {
                assert_eq!(len, text.len());
                req
            }
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    // ----- HTTP -----------------------------------------------------------------------

    #[test]
    fn accept_key_rfc_example() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    // Goal: a request head parses into its parts; lookup ignores case; bytes after the head
    // are not counted.
    #[test]
    fn parse_request_fields() {
        let text = upgrade_request("X-Empty:\r\nX-Spaced: \t padded value \t\r\n");
        let mut wire = text.clone().into_bytes();
        wire.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let Ok(Some((req, len))) = parse_request(&wire) else { panic!("complete request") };
        assert_eq!(len, text.len());
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/ws");
        assert_eq!(req.version, HttpVersion::Http11);
        assert_eq!(req.headers.len(), 7);
        assert_eq!(req.header("HOST"), Some("example.com"));
        assert_eq!(req.header("sec-websocket-key"), Some(KEY));
        assert_eq!(req.header("x-empty"), Some(""));
        assert_eq!(req.header("X-SPACED"), Some("padded value"));
        assert_eq!(req.header("missing"), None);
        assert!(req.is_websocket_upgrade());
    }

    // Goal: incomplete input is `None` at every byte boundary, never an error or a wrong
    // parse; bare-LF line ends give the same result as CRLF.
    #[test]
    fn parse_request_every_byte_boundary() {
        let text = upgrade_request("Sec-WebSocket-Protocol: wamp.2.json\r\n");
        let whole = parse(&text);
        for i in 0..text.len() {
            assert_eq!(parse_request(&text.as_bytes()[..i]), Ok(None), "prefix of {i} bytes");
        }
        let lf_only = text.replace("\r\n", "\n");
        assert_eq!(parse(&lf_only), whole);
    }

    // Goal: every malformed-head path fails with the right error, and a bad start line
    // fails as soon as its line is complete (no need to wait for the whole head).
    #[test]
    fn parse_request_errors() {
        let malformed = HttpError::Malformed;
        let cases: &[(&str, HttpError)] = &[
            ("GET /ws HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", malformed("folded header line")),
            ("GET /ws HTTP/1.1\r\nHost a\r\n\r\n", malformed("header line without colon")),
            ("GET /ws HTTP/1.1\r\nHost : a\r\n\r\n", malformed("header name")),
            ("GET /ws HTTP/1.1\r\n: a\r\n\r\n", malformed("header name")),
            ("GET /ws HTTP/1.1\r\nX: a\x00b\r\n\r\n", malformed("control character in header value")),
            ("GET /ws HTTP/1.1\r\nX: a\rb\r\n\r\n", malformed("control character in header value")),
            ("GET  /ws HTTP/1.1\r\n\r\n", malformed("request line")),
            ("GET /ws\r\n\r\n", malformed("request line")),
            ("\r\n", malformed("request line")),
            ("G(T /ws HTTP/1.1\r\n\r\n", malformed("method")),
            ("GET /w\x7Fs HTTP/1.1\r\n\r\n", malformed("request target")),
            ("GET /ws FTP/1.1\r\n\r\n", malformed("HTTP version")),
            ("GET /ws HTTP/2.0\r\n\r\n", HttpError::UnsupportedVersion),
            ("PRI * HTTP/2.0\r\n", HttpError::UnsupportedVersion),
            ("\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03\n", malformed("request line")), // TLS hello
        ];
        for (input, want) in cases {
            assert_eq!(parse_request(input.as_bytes()), Err(*want), "input {input:?}");
        }
        assert_eq!(HttpError::Malformed("x").status(), 400);
        assert!(HttpError::UnsupportedVersion.response().starts_with(b"HTTP/1.1 505 "));
    }

    // Goal: the header-count and head-size bounds hold exactly at their limits.
    #[test]
    fn parse_request_bounds() {
        let many = |n: usize| {
            let mut s = String::from("GET / HTTP/1.1\r\n");
            for i in 0..n {
                s.push_str(&format!("X-{i}: v\r\n"));
            }
            s + "\r\n"
        };
        assert_eq!(parse(&many(limits::HTTP_HEADERS_MAX)).headers.len(), limits::HTTP_HEADERS_MAX);
        assert_eq!(parse_request(many(limits::HTTP_HEADERS_MAX + 1).as_bytes()), Err(HttpError::TooManyHeaders));

        // A head of exactly the maximum size parses; one byte more is refused.
        let fixed = "GET / HTTP/1.1\r\nX: \r\n\r\n".len();
        let fill = |extra: usize| {
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(limits::HTTP_HEAD_MAX_BYTES - fixed + extra))
        };
        assert_eq!(parse(&fill(0)).header("x").map(str::len), Some(limits::HTTP_HEAD_MAX_BYTES - fixed));
        assert_eq!(parse_request(fill(1).as_bytes()), Err(HttpError::HeadTooLarge));
        assert!(HttpError::HeadTooLarge.response().starts_with(b"HTTP/1.1 431 "));

        // A slow head below the bound waits; at the bound it fails.
        let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(limits::HTTP_HEAD_MAX_BYTES));
        assert_eq!(parse_request(&endless.as_bytes()[..limits::HTTP_HEAD_MAX_BYTES - 1]), Ok(None));
        assert_eq!(parse_request(endless.as_bytes()), Err(HttpError::HeadTooLarge));
    }

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

    // ----- Frames ---------------------------------------------------------------------

    /// One frame, masked with `mask` if given.
    fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::new();
        match mask {
            Some(key) => write_masked_frame(opcode, fin, payload, key, &mut out),
            None => {
                let mut header = [0u8; HEADER_MAX_BYTES];
                let n = encode_header(opcode, fin, payload.len(), &mut header);
                out.extend_from_slice(&header[..n]);
                out.extend_from_slice(payload);
            }
        }
        out
    }

    /// A masked frame with a raw first octet and a chosen (possibly non-minimal) length
    /// encoding: `ext` is 0, 2 or 8 extra length bytes.
    fn raw_frame(b0: u8, payload: &[u8], ext: usize, mask: [u8; 4]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![b0];
        match ext {
            0 => out.push(0x80 | len as u8),
            2 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        let start = out.len();
        out.extend_from_slice(payload);
        unmask(&mut out[start..], mask);
        out
    }

    fn text(data: &str) -> Event {
        Event::Message { binary: false, data: Bytes::copy_from_slice(data.as_bytes()) }
    }

    fn binary(data: &[u8]) -> Event {
        Event::Message { binary: true, data: Bytes::copy_from_slice(data) }
    }

    /// Feeds `wire` in chunks sized by `next_chunk`, decoding after each; returns the events
    /// and the error that ended decoding, if any.
    fn decode_chunked(
        role: Role,
        max: usize,
        wire: &[u8],
        mut next_chunk: impl FnMut() -> usize,
    ) -> (Vec<Event>, Option<Error>) {
        let mut dec = Decoder::new(role, max);
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            let end = (pos + next_chunk().max(1)).min(wire.len());
            buf.extend_from_slice(&wire[pos..end]);
            pos = end;
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(event)) => events.push(event),
                    Ok(None) => break,
                    Err(e) => return (events, Some(e)),
                }
            }
        }
        (events, None)
    }

    fn decode_whole(role: Role, max: usize, wire: &[u8]) -> (Vec<Event>, Option<Error>) {
        decode_chunked(role, max, wire, || wire.len())
    }

    /// A client→server stream touching every decoder path that succeeds.
    fn sample_stream(mask: Option<[u8; 4]>) -> (Vec<u8>, Vec<Event>) {
        let kosme = "κόσμε".as_bytes(); // 11 bytes, multi-byte characters
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        let mut add = |opcode, fin, payload: &[u8]| wire.extend(frame(opcode, fin, payload, mask));
        add(OpCode::Text, true, b"Hello");
        add(OpCode::Binary, true, &big[..300]);
        add(OpCode::Binary, true, &big);
        // Fragments cut through characters, with control frames between them.
        add(OpCode::Text, false, &kosme[..1]);
        add(OpCode::Ping, true, b"ping!");
        add(OpCode::Continuation, false, &kosme[1..6]);
        add(OpCode::Pong, true, b"");
        add(OpCode::Continuation, false, &[]);
        add(OpCode::Continuation, true, &kosme[6..]);
        add(OpCode::Text, true, b"");
        add(OpCode::Binary, false, &[1, 2]);
        add(OpCode::Continuation, false, &[]);
        add(OpCode::Continuation, true, &[3]);
        add(OpCode::Close, true, &close_payload(1000, "bye"));
        let events = vec![
            text("Hello"),
            binary(&big[..300]),
            binary(&big),
            Event::Ping(Bytes::from_static(b"ping!")),
            Event::Pong(Bytes::new()),
            text("κόσμε"),
            text(""),
            binary(&[1, 2, 3]),
            Event::Close { code: Some(1000), reason: "bye".into() },
        ];
        (wire, events)
    }

    // Goal: partial input at every byte boundary yields exactly what whole input yields.
    // Method: the sample stream, whole, byte by byte, and in 100 seeded random chunkings,
    // for both roles.
    #[test]
    fn decode_partial_input_matches_whole() {
        for (role, mask) in [(Role::Server, Some(MASK)), (Role::Client, None)] {
            let (wire, want) = sample_stream(mask);
            let want = (want, None);
            assert_eq!(decode_whole(role, 1 << 20, &wire), want);
            assert_eq!(decode_chunked(role, 1 << 20, &wire, || 1), want);
            let mut rng = IdGen::new(42);
            for _ in 0..100 {
                let max_chunk = [3, 17, 200, 5000][rng.below(4)];
                assert_eq!(decode_chunked(role, 1 << 20, &wire, || rng.below(max_chunk) + 1), want);
            }
        }
    }

    // Goal: RFC 6455 §5.7's example frames decode as the RFC says, and our encoders
    // produce them byte for byte.
    #[test]
    fn rfc_examples() {
        let unmasked_hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let masked_hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        let mut out = Vec::new();
        write_frame(OpCode::Text, b"Hello", &mut out);
        assert_eq!(out, unmasked_hello);
        out.clear();
        write_masked_frame(OpCode::Text, true, b"Hello", MASK, &mut out);
        assert_eq!(out, masked_hello);
        assert_eq!(decode_whole(Role::Client, 1024, &unmasked_hello), (vec![text("Hello")], None));
        assert_eq!(decode_whole(Role::Server, 1024, &masked_hello), (vec![text("Hello")], None));
        assert_eq!(decode_whole(Role::Client, 1024, &fragmented), (vec![text("Hello")], None));
        let mut header = [0u8; HEADER_MAX_BYTES];
        assert_eq!(encode_header(OpCode::Binary, true, 256, &mut header), 4);
        assert_eq!(header[..4], [0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(encode_header(OpCode::Binary, true, 65536, &mut header), 10);
        assert_eq!(header, [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    // Goal: header length boundaries and the fin / mask bits.
    #[test]
    fn encode_header_boundaries() {
        let mut h = [0u8; HEADER_MAX_BYTES];
        for (len, n, second) in [(0, 2, 0), (125, 2, 125), (126, 4, 126), (65535, 4, 126), (65536, 10, 127)] {
            assert_eq!(encode_header(OpCode::Text, false, len, &mut h), n, "len {len}");
            assert_eq!((h[0], h[1]), (0x01, second));
        }
        let mut m = [0u8; MASKED_HEADER_MAX_BYTES];
        for (len, n) in [(5, 6), (300, 8), (70_000, 14)] {
            assert_eq!(encode_masked_header(OpCode::Binary, true, len, MASK, &mut m), n);
            assert_eq!((m[0], m[1] & 0x80), (0x82, 0x80));
            assert_eq!(m[n - 4..n], MASK);
        }
        assert_eq!(OpCode::for_serializer(Serializer::Json), OpCode::Text);
        assert_eq!(OpCode::for_serializer(Serializer::Cbor), OpCode::Binary);
    }

    #[test]
    #[should_panic(expected = "control frame")]
    fn encode_header_refuses_long_control_frame() {
        let _ = encode_header(OpCode::Ping, true, 126, &mut [0u8; HEADER_MAX_BYTES]);
    }

    /// Decode `wire` whole and by single bytes; both must stop with an error of `code`
    /// and `reason`, after the same events.
    fn assert_fails(role: Role, max: usize, wire: &[u8], code: u16, reason: &str) {
        let whole = decode_whole(role, max, wire);
        let bytewise = decode_chunked(role, max, wire, || 1);
        assert_eq!(whole, bytewise, "{reason}");
        let Some(e) = whole.1 else { panic!("expected {reason}, decoded {:?}", whole.0) };
        assert_eq!((e.code, e.reason), (code, reason));
    }

    // Goal: every framing rule the decoder enforces, each with its close code.
    #[test]
    fn decode_protocol_errors() {
        let s = Role::Server;
        let m = Some(MASK);
        let p = close_code::PROTOCOL_ERROR;
        assert_fails(s, 1024, &frame(OpCode::Text, true, b"Hello", None), p, "client frame is not masked");
        assert_fails(Role::Client, 1024, &frame(OpCode::Text, true, b"Hello", m), p, "server frame is masked");
        for rsv in [0x40, 0x20, 0x10, 0x70] {
            let reason = "reserved bits set without a negotiated extension";
            assert_fails(s, 1024, &raw_frame(0x81 | rsv, b"x", 0, MASK), p, reason);
            assert_fails(s, 1024, &raw_frame(0x89 | rsv, b"x", 0, MASK), p, reason);
        }
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            assert_fails(s, 1024, &raw_frame(0x80 | op, b"x", 0, MASK), p, "reserved opcode");
        }
        for op in [0x8, 0x9, 0xA] {
            assert_fails(s, 1024, &raw_frame(op, b"", 0, MASK), p, "fragmented control frame");
            let long = raw_frame(0x80 | op, &[b'a'; 126], 2, MASK);
            assert_fails(s, 1024, &long, p, "control frame payload over 125 bytes");
            // 126 announced in the 7-bit field is already too long: fail on two octets.
            assert_fails(s, 1024, &long[..2], p, "control frame payload over 125 bytes");
        }
        let cont = frame(OpCode::Continuation, true, b"x", m);
        assert_fails(s, 1024, &cont, p, "continuation frame without a message");
        let mut after_message = frame(OpCode::Text, true, b"done", m);
        after_message.extend(&cont);
        assert_fails(s, 1024, &after_message, p, "continuation frame without a message");
        for second in [OpCode::Text, OpCode::Binary] {
            let mut wire = frame(OpCode::Binary, false, b"a", m);
            wire.extend(frame(OpCode::Ping, true, b"", m));
            wire.extend(frame(second, true, b"b", m));
            assert_fails(s, 1024, &wire, p, "new data frame inside a fragmented message");
        }
        let mut msb = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1];
        msb.extend_from_slice(&MASK);
        assert_fails(s, 1024, &msb, p, "64-bit payload length with the most significant bit set");
    }

    // Goal: only the close codes RFC 6455 §7.4 allows on the wire are accepted; a 1-byte
    // payload and a non-UTF-8 reason are refused.
    #[test]
    fn decode_close_frames() {
        let close = |payload: &[u8]| frame(OpCode::Close, true, payload, Some(MASK));
        for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            let wire = close(&close_payload(code, "why"));
            let want = vec![Event::Close { code: Some(code), reason: "why".into() }];
            assert_eq!(decode_whole(Role::Server, 1024, &wire), (want, None), "code {code}");
        }
        for code in [0u16, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert_fails(Role::Server, 1024, &close(&code.to_be_bytes()), 1002, "invalid close code");
        }
        let empty = (vec![Event::Close { code: None, reason: String::new() }], None);
        assert_eq!(decode_whole(Role::Server, 1024, &close(&[])), empty);
        assert_fails(Role::Server, 1024, &close(&[0x03]), 1002, "close payload of one byte");
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.extend_from_slice(&[0xCE, 0xBA, 0xED, 0xA0, 0x80]);
        assert_fails(Role::Server, 1024, &close(&bad_reason), 1007, "invalid UTF-8 in close reason");
    }

    // Goal: after a Close nothing more is decoded; after an error the same error repeats.
    #[test]
    fn decode_after_close_and_after_error() {
        let mut wire = frame(OpCode::Close, true, &close_payload(1001, ""), Some(MASK));
        wire.extend(frame(OpCode::Text, true, b"late", Some(MASK)));
        let mut buf = BytesMut::from(&wire[..]);
        let mut dec = Decoder::new(Role::Server, 1024);
        assert_eq!(dec.decode(&mut buf), Ok(Some(Event::Close { code: Some(1001), reason: String::new() })));
        assert!(dec.is_closed());
        assert_eq!(dec.decode(&mut buf), Ok(None));

        let mut buf = BytesMut::from(&[0x81u8, 0x00][..]);
        let mut dec = Decoder::new(Role::Server, 1024);
        let err = dec.decode(&mut buf).expect_err("unmasked");
        buf.extend_from_slice(&frame(OpCode::Text, true, b"ok", Some(MASK)));
        assert_eq!(dec.decode(&mut buf), Err(err));
    }

    // Goal: the size and fragment-count bounds hold exactly at their limits, and an
    // oversized frame fails from its header, before any payload arrives.
    #[test]
    fn decode_size_limits() {
        let big = close_code::TOO_BIG;
        let at_limit = frame(OpCode::Binary, true, &[7; 1000], Some(MASK));
        assert_eq!(decode_whole(Role::Server, 1000, &at_limit), (vec![binary(&[7; 1000])], None));
        let over = frame(OpCode::Binary, true, &[7; 1001], Some(MASK));
        assert_fails(Role::Server, 1000, &over[..8], big, "message too big");
        let mut huge = vec![0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        huge.extend_from_slice(&MASK);
        assert_fails(Role::Server, 1000, &huge, big, "message too big");

        let mut fragmented = frame(OpCode::Text, false, &[b'a'; 600], Some(MASK));
        fragmented.extend(frame(OpCode::Continuation, true, &[b'a'; 400], Some(MASK)));
        assert_eq!(decode_whole(Role::Server, 1000, &fragmented).0.len(), 1);
        let mut too_much = frame(OpCode::Text, false, &[b'a'; 600], Some(MASK));
        too_much.extend(&frame(OpCode::Continuation, true, &[b'a'; 401], Some(MASK))[..8]);
        assert_fails(Role::Server, 1000, &too_much, big, "message too big");

        // WS_FRAGMENTS_MAX frames form one message; one more fails.
        let max = limits::WS_FRAGMENTS_MAX;
        let piece = frame(OpCode::Continuation, false, b"a", Some(MASK));
        let mut wire = frame(OpCode::Binary, false, b"a", Some(MASK));
        for _ in 0..max - 2 {
            wire.extend(&piece);
        }
        let mut exact = wire.clone();
        exact.extend(frame(OpCode::Continuation, true, b"a", Some(MASK)));
        assert_eq!(decode_whole(Role::Server, 2 * max, &exact), (vec![binary(&vec![b'a'; max])], None));
        wire.extend(&piece);
        wire.extend(frame(OpCode::Continuation, true, b"a", Some(MASK)));
        let (events, err) = decode_whole(Role::Server, 2 * max, &wire);
        assert!(events.is_empty());
        assert_eq!(err, Some(Error { code: big, reason: "too many fragments in one message" }));
    }

    // Goal: non-minimal length encodings are accepted (RFC 6455 only constrains senders).
    #[test]
    fn decode_non_minimal_lengths() {
        for ext in [0, 2, 8] {
            let wire = raw_frame(0x81, b"Hello", ext, MASK);
            assert_eq!(decode_whole(Role::Server, 1024, &wire), (vec![text("Hello")], None), "ext {ext}");
        }
    }

    // Goal: UTF-8 is checked incrementally and fails fast (Autobahn 6.x): an invalid byte
    // fails before its frame (or message) is complete; a character cut by a fragment
    // boundary waits; a message ending inside a character fails.
    #[test]
    fn decode_utf8_fail_fast() {
        let m = Some(MASK);
        let inv = close_code::INVALID_PAYLOAD;
        let reason = "invalid UTF-8 in text message";
        // Autobahn 6.3.1: a surrogate in a single frame.
        let surrogate = [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80, 0x65];
        assert_fails(Role::Server, 1024, &frame(OpCode::Text, true, &surrogate, m), inv, reason);
        // Only the first 8 payload bytes of a 15-byte frame arrive: fails already at 0xED 0xA0.
        let partial = frame(OpCode::Text, true, &surrogate, m);
        assert_fails(Role::Server, 1024, &partial[..6 + 13], inv, reason);
        // An invalid first fragment of an unfinished message fails at once.
        assert_fails(Role::Server, 1024, &frame(OpCode::Text, false, &[b'a', 0xFF], m), inv, reason);
        // Autobahn 6.4.1: valid fragment, then one holding 0xF4 0x90 (> U+10FFFF).
        let mut wire = frame(OpCode::Text, false, "κόσμε".as_bytes(), m);
        wire.extend(frame(OpCode::Continuation, false, &[0xF4, 0x90, 0x80, 0x80], m));
        assert_fails(Role::Server, 1024, &wire, inv, reason);
        // A character split over fragments is fine...
        let mut wire = frame(OpCode::Text, false, &[0xF0], m);
        wire.extend(frame(OpCode::Continuation, false, &[0x9F, 0x98], m));
        wire.extend(frame(OpCode::Continuation, true, &[0x80], m));
        assert_eq!(decode_whole(Role::Server, 1024, &wire), (vec![text("😀")], None));
        // ...and waits without error while incomplete...
        let (events, err) = decode_whole(Role::Server, 1024, &frame(OpCode::Text, false, &[0xF0, 0x9F], m));
        assert_eq!((events.len(), err), (0, None));
        // ...but a message may not end inside one.
        assert_fails(Role::Server, 1024, &frame(OpCode::Text, true, &[b'a', 0xF0, 0x9F], m), inv, reason);
        let mut wire = frame(OpCode::Text, false, b"a", m);
        wire.extend(frame(OpCode::Continuation, true, &[0xE2, 0x82], m));
        assert_fails(Role::Server, 1024, &wire, inv, reason);
        // Binary messages are not checked.
        let (events, err) = decode_whole(Role::Server, 1024, &frame(OpCode::Binary, true, &[0xFF], m));
        assert_eq!((events, err), (vec![binary(&[0xFF])], None));
    }

    // Goal: the sixteen-at-a-time ASCII check agrees with std at every length around its
    // chunk size and with one high byte at every position.
    #[test]
    fn ascii_check_matches_std() {
        for len in 0..70usize {
            let mut v: Vec<u8> = (0..len).map(|i| b' ' + (i % 90) as u8).collect();
            assert!(is_ascii(&v), "len {len}");
            for pos in 0..len {
                for high in [0x80u8, 0xC3, 0xFF] {
                    let keep = v[pos];
                    v[pos] = high;
                    assert_eq!(is_ascii(&v), v.is_ascii(), "len {len}, {high:#x} at {pos}");
                    assert!(!is_ascii(&v));
                    v[pos] = keep;
                }
            }
        }
    }

    // Goal: the incremental validator agrees with `std::str::from_utf8` on whole input,
    // however the input is cut. Method: tricky sequences and random bytes, cut at every
    // pair of positions.
    #[test]
    fn utf8_validator_matches_std() {
        let mut samples: Vec<Vec<u8>> = [
            &b"plain ascii"[..],
            "κόσμε 😀 \u{10FFFF} \u{FFFD}".as_bytes(),
            &[0xC0, 0x80],             // overlong NUL
            &[0xE0, 0x80, 0x80],       // overlong
            &[0xED, 0xA0, 0x80],       // surrogate
            &[0xF4, 0x90, 0x80, 0x80], // above U+10FFFF
            &[0xF0, 0x9F, 0x98],       // truncated
            &[0x80],                   // lone continuation
            &[0xF8, 0x88, 0x80, 0x80, 0x80],
            &[0xE2, 0x82, 0xAC, 0xE2, 0x82],
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect();
        let mut rng = IdGen::new(6);
        for _ in 0..300 {
            let len = rng.below(9);
            // Bias towards bytes that form or break multi-byte sequences.
            samples
                .push((0..len).map(|_| [0x41, 0x80, 0xBF, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xFF][rng.below(9)]).collect());
        }
        for s in &samples {
            let want = std::str::from_utf8(s).is_ok();
            for i in 0..=s.len() {
                for j in i..=s.len() {
                    let mut v = Utf8Validator::default();
                    let got = v.feed(&s[..i]).and_then(|()| v.feed(&s[i..j])).and_then(|()| v.feed(&s[j..]));
                    assert_eq!(got.and_then(|()| v.finish()).is_ok(), want, "{s:02x?} cut at {i}, {j}");
                }
            }
        }
    }

    // Goal: word-at-a-time unmasking equals the byte-by-byte definition for every length
    // and starting offset, and payloads are unmasked in place (no copy).
    #[test]
    fn unmask_matches_definition() {
        let data: Vec<u8> = (0..100u8).collect();
        for len in 0..data.len() {
            for offset in 0..4 {
                let mut fast = data[..len].to_vec();
                unmask_at(&mut fast, MASK, offset);
                let slow: Vec<u8> = data[..len].iter().enumerate().map(|(i, b)| b ^ MASK[(i + offset) % 4]).collect();
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
        let mut buf = BytesMut::from(&frame(OpCode::Binary, true, &data, Some(MASK))[..]);
        let payload_at = buf.as_ptr() as usize + 6; // 2 octets + mask key
        let Ok(Some(Event::Message { data: got, .. })) = Decoder::new(Role::Server, 1024).decode(&mut buf) else {
            panic!("a message")
        };
        assert_eq!((got.as_ptr() as usize, &got[..]), (payload_at, &data[..]));
    }

    // Goal: a close reason is cut to fit a control frame at a character boundary, and the
    // result decodes.
    #[test]
    fn close_payload_truncates_at_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let payload = close_payload(1009, &reason);
        assert_eq!(payload.len(), 2 + 122);
        let mut wire = Vec::new();
        write_close(1009, &reason, &mut wire);
        let want = Event::Close { code: Some(1009), reason: "é".repeat(61) };
        assert_eq!(decode_whole(Role::Client, 1024, &wire), (vec![want], None));
    }

    // Goal: no input makes either decoder, or the HTTP parsers, panic. Method: seeded random
    // bytes, and random mutations of valid streams and heads, fed in random chunks.
    #[test]
    fn fuzz_no_panic() {
        let mut rng = IdGen::new(0x5EED);
        let (server_wire, _) = sample_stream(Some(MASK));
        let (client_wire, _) = sample_stream(None);
        let head = upgrade_request("Sec-WebSocket-Protocol: wamp.2.json\r\n").into_bytes();
        let response = accept(&parse(&String::from_utf8_lossy(&head)), &WAMP).map(|a| a.response()).unwrap_or_default();
        for round in 0..6_000 {
            let mut bytes: Vec<u8> = match round % 3 {
                0 => (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect(),
                1 => server_wire[..rng.below(400)].to_vec(),
                _ => client_wire[..rng.below(400)].to_vec(),
            };
            for _ in 0..rng.below(4) {
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            for role in [Role::Server, Role::Client] {
                let _ = decode_chunked(role, 256, &bytes, || rng.below(16) + 1);
            }
            let mut text = if round % 2 == 0 { head.clone() } else { response.clone() };
            for _ in 0..rng.below(4) + 1 {
                let i = rng.below(text.len());
                text[i] = rng.next_u64() as u8;
            }
            for input in [&text[..], &bytes[..]] {
                if let Ok(Some((req, _))) = parse_request(input) {
                    let _ = accept(&req, &WAMP);
                }
                if let Ok(Some((resp, _))) = parse_response(input) {
                    let _ = validate_response(&resp, KEY, &Serializer::ALL);
                }
            }
        }
    }
}
