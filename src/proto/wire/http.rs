//! HTTP/1.1 heads: reading a request head (the WebSocket opening handshake, and the plain
//! `GET /metrics` and `GET /health` the runtime serves, so a request here is not assumed to
//! be an upgrade), reading a response head (the client side of the handshake), and writing
//! the short responses the router answers with.
//!
//! The head is parsed by `httparse` (sans-IO, zero-copy, SIMD where the CPU has it). This
//! file adds what httparse leaves to its caller: the bounds (`limits::HTTP_HEAD_MAX_BYTES`,
//! `limits::HTTP_HEADERS_MAX`); two rules shardbar has always kept and httparse relaxes (no
//! empty line before the start line, a request-target of visible ASCII only); and, for a
//! refused head, the name of the part that was wrong, which is the body of the 400. httparse
//! only says which kind of token failed, so on that error path the offending line is looked
//! at again by `diagnose`; the success path never does.
//!
//! Measured with `bench/websocket.rs` (`handshake/parse_upgrade_request`: a 555-byte browser
//! upgrade head with 13 fields; one run each on the shared 2-core VM, 2026-12-04, load 1.6 to
//! 2.5): the hand-written line parser this replaced took 1.69 µs (95% CI 1.63–1.75),
//! httparse with the same owned `Request` built from its fields 0.65 µs (0.647–0.653). So
//! httparse does not cost us; either is small next to the TCP and WebSocket handshakes.
//!
//! Must not: do I/O or keep state between calls (a caller re-parses from the start of its
//! buffer after each read), or know WebSocket rules beyond the header lookups they use.

use std::fmt;
use std::mem::MaybeUninit;

use crate::limits;

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
    /// Copy httparse's borrowed fields. Values are compared, never re-emitted; a stray
    /// non-UTF-8 byte in a cookie is not worth refusing a connection over, so it is
    /// replaced rather than rejected.
    fn from_fields(fields: &[httparse::Header<'_>]) -> Headers {
        Headers(fields.iter().map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned())).collect())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of `name`, in order (a field may be repeated).
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.0.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The items of every value of `name`, read as comma-separated lists: trimmed, empty
    /// items skipped (RFC 9110 §5.6.1).
    pub fn list<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.get_all(name).flat_map(|v| v.split(',')).map(|t| t.trim_matches([' ', '\t'])).filter(|t| !t.is_empty())
    }

    /// Whether any value of `name`, read as a comma-separated token list, contains `token`
    /// (ASCII case-insensitive). `Connection: keep-alive, Upgrade` contains `upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name).any(|t| t.eq_ignore_ascii_case(token))
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
    /// A request that asks but is otherwise bad still goes to `websocket::accept`, which
    /// says why.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.headers.has_token("upgrade", "websocket")
    }
}

/// A parsed HTTP response head (client side of the handshake).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub version: HttpVersion,
    pub status: u16,
    /// The reason phrase; empty when it held bytes beyond ASCII (httparse does not return
    /// them, and no client decision depends on the phrase).
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
/// Lines may end in CRLF or a bare LF (RFC 9112 §2.2 lets a recipient accept LF). Bytes are
/// checked as they arrive, so garbage fails before the 16 KiB bound. Stateless: a caller
/// that re-parses after every read rescans the head, at most `HTTP_HEAD_MAX_BYTES` per read;
/// the runtime skips the call when a read added no `\n`.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let head = head_window(buf);
    // httparse skips empty lines before the request line (RFC 9112 §2.2 allows it); a
    // client of ours never sends them, and they have always been refused here.
    if starts_with_empty_line(head) {
        return Err(HttpError::Malformed("request line"));
    }
    let mut fields = [const { MaybeUninit::uninit() }; limits::HTTP_HEADERS_MAX];
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(head, &mut fields);
    // httparse lets raw bytes above 0x7F through in the target (as UTF-8); a target is
    // percent-encoded ASCII, and anything else has always been refused here, as soon as the
    // request line was read.
    if req.path.is_some_and(|path| !path.is_ascii()) {
        return Err(HttpError::Malformed("request target"));
    }
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(buf),
        Err(e) => return Err(diagnose(head, e, request_line_problem)),
    };
    // A complete parse has set all three; `None` cannot happen.
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed("request line"));
    };
    let request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        version: version(minor),
        headers: Headers::from_fields(req.headers),
    };
    Ok(Some((request, len)))
}

/// Parse a response head from the start of `buf` (client side); same rules as
/// [`parse_request`].
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HttpError> {
    let head = head_window(buf);
    if starts_with_empty_line(head) {
        return Err(HttpError::Malformed("status line"));
    }
    let mut fields = [httparse::EMPTY_HEADER; limits::HTTP_HEADERS_MAX];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(buf),
        Err(e) => return Err(diagnose(head, e, status_line_problem)),
    };
    let (Some(minor), Some(status)) = (resp.version, resp.code) else {
        return Err(HttpError::Malformed("status line"));
    };
    let response = Response {
        version: version(minor),
        status,
        reason: resp.reason.unwrap_or_default().to_owned(),
        headers: Headers::from_fields(resp.headers),
    };
    Ok(Some((response, len)))
}

/// The part of `buf` a head must end in.
fn head_window(buf: &[u8]) -> &[u8] {
    buf.get(..limits::HTTP_HEAD_MAX_BYTES).unwrap_or(buf)
}

fn starts_with_empty_line(head: &[u8]) -> bool {
    head.starts_with(b"\n") || head.starts_with(b"\r\n")
}

/// No end of head in the bounded window: either wait, or the head is too large.
fn incomplete<T>(buf: &[u8]) -> Result<Option<T>, HttpError> {
    if buf.len() >= limits::HTTP_HEAD_MAX_BYTES { Err(HttpError::HeadTooLarge) } else { Ok(None) }
}

/// httparse's minor version (it parses only `HTTP/1.0` and `HTTP/1.1`).
fn version(minor: u8) -> HttpVersion {
    if minor == 0 { HttpVersion::Http10 } else { HttpVersion::Http11 }
}

/// Name the part of `head` that httparse refused with `err`, by the line rules below: the
/// first line that breaks one says what was wrong. If none does, httparse refused what the
/// line rules let through (a control character that trimming would have hidden, such as a
/// CR before the line's CRLF), and its error kind names the part.
fn diagnose(head: &[u8], err: httparse::Error, start_line: fn(&[u8]) -> Option<HttpError>) -> HttpError {
    if err == httparse::Error::TooManyHeaders {
        return HttpError::TooManyHeaders;
    }
    let mut lines = head.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    if let Some(e) = start_line(lines.next().unwrap_or_default()) {
        return e;
    }
    for line in lines.take_while(|line| !line.is_empty()) {
        if let Some(e) = field_line_problem(line) {
            return e;
        }
    }
    HttpError::Malformed(match err {
        httparse::Error::HeaderName => "header name",
        httparse::Error::HeaderValue => "control character in header value",
        httparse::Error::Status => "status code",
        httparse::Error::Version => "HTTP version",
        httparse::Error::NewLine => "line ending",
        _ => "request line",
    })
}

/// What is wrong with a request line (`method SP request-target SP HTTP-version`), if
/// anything.
fn request_line_problem(line: &[u8]) -> Option<HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Some(HttpError::Malformed("request line"));
    };
    if method.is_empty() || !method.iter().copied().all(is_tchar) {
        return Some(HttpError::Malformed("method"));
    }
    // Visible ASCII only: a target never holds spaces, controls or raw non-ASCII.
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7E).contains(b)) {
        return Some(HttpError::Malformed("request target"));
    }
    version_problem(version)
}

/// What is wrong with a status line (`HTTP-version SP 3DIGIT [SP reason]`), if anything.
fn status_line_problem(line: &[u8]) -> Option<HttpError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Some(HttpError::Malformed("status line"));
    };
    if let Some(e) = version_problem(version) {
        return Some(e);
    }
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Some(HttpError::Malformed("status code"));
    }
    let reason = parts.next().unwrap_or_default();
    reason.iter().any(|&b| is_ctl(b) && b != b'\t').then_some(HttpError::Malformed("reason phrase"))
}

fn version_problem(v: &[u8]) -> Option<HttpError> {
    match v {
        b"HTTP/1.1" | b"HTTP/1.0" => None,
        _ if v.starts_with(b"HTTP/") => Some(HttpError::UnsupportedVersion),
        _ => Some(HttpError::Malformed("HTTP version")),
    }
}

/// What is wrong with a header field line (`name: value`), if anything.
fn field_line_problem(line: &[u8]) -> Option<HttpError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        // obs-fold: RFC 9112 §5.2 lets a server reject it, and nobody sends it any more.
        return Some(HttpError::Malformed("folded header line"));
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Some(HttpError::Malformed("header line without colon"));
    };
    let (name, value) = line.split_at(colon);
    // Includes "no whitespace before the colon" (RFC 9112 §5.1: MUST reject).
    if name.is_empty() || !name.iter().copied().all(is_tchar) {
        return Some(HttpError::Malformed("header name"));
    }
    let value = value.get(1..).unwrap_or_default().trim_ascii();
    value.iter().any(|&b| is_ctl(b) && b != b'\t').then_some(HttpError::Malformed("control character in header value"))
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ctl(b: u8) -> bool {
    b < 0x20 || b == 0x7F
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
pub(crate) fn text_response(status: u16, extra: &[(&str, &str)], text: &str) -> Vec<u8> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// RFC 6455 §1.3 example key.
    pub(crate) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// A WebSocket upgrade request with `extra` header lines.
    pub(crate) fn upgrade_request(extra: &str) -> String {
        format!(
            "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    /// `text` as one complete request head.
    pub(crate) fn parse(text: &str) -> Request {
        match parse_request(text.as_bytes()) {
            Ok(Some((req, len))) => {
                assert_eq!(len, text.len());
                req
            }
            other => panic!("expected a complete request, got {other:?}"),
        }
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

    // Goal: the rules shardbar keeps beyond httparse's hold, and what httparse refuses that
    // the line rules would have trimmed away still gets a 400 that names the part.
    #[test]
    fn parse_request_rules_beyond_httparse() {
        let malformed = HttpError::Malformed;
        let cases: &[(&[u8], HttpError)] = &[
            (b"\nGET / HTTP/1.1\r\n\r\n", malformed("request line")),
            (b"\r\nGET / HTTP/1.1\r\n\r\n", malformed("request line")),
            ("GET /caf\u{e9} HTTP/1.1\r\n\r\n".as_bytes(), malformed("request target")),
            (b"GET /\xff HTTP/1.1\r\n\r\n", malformed("request target")),
            (b"GET / HTTP/1.1\r\nX: a\x0c\r\n\r\n", malformed("control character in header value")),
            (b"GET / HTTP/1.1\r\nX: a\r\r\n\r\n", malformed("control character in header value")),
            (b"GET / HTTP/1.10\r\n\r\n", HttpError::UnsupportedVersion),
            (b"GET / HTTP/1.1 x\r\n\r\n", malformed("request line")),
        ];
        for (input, want) in cases {
            assert_eq!(parse_request(input), Err(*want), "input {:?}", String::from_utf8_lossy(input));
        }
        // Non-UTF-8 in a value is kept (replaced), as before.
        let req = parse_request(b"GET / HTTP/1.1\r\nCookie: a\xffb\r\n\r\n").map(|r| r.map(|(r, _)| r));
        assert_eq!(req.ok().flatten().and_then(|r| r.header("cookie").map(str::to_owned)), Some("a\u{fffd}b".into()));
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

    // Goal: response heads parse at every byte boundary and their start-line errors name
    // the part.
    #[test]
    fn parse_response_heads() {
        let text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        for i in 0..text.len() {
            assert_eq!(parse_response(&text.as_bytes()[..i]), Ok(None), "prefix of {i} bytes");
        }
        let Ok(Some((resp, n))) = parse_response(text.as_bytes()) else { panic!("response parses") };
        assert_eq!(
            (resp.version, resp.status, resp.reason.as_str(), n),
            (HttpVersion::Http11, 101, "Switching Protocols", text.len())
        );
        assert_eq!(resp.headers.len(), 2);
        let cases: &[(&[u8], HttpError)] = &[
            (b"HTTP/1.1 1O1 x\r\n\r\n", HttpError::Malformed("status code")),
            (b"HTTP/1.1\r\n\r\n", HttpError::Malformed("status line")),
            (b"HTTP/2 200 OK\r\n\r\n", HttpError::UnsupportedVersion),
            (b"\r\nHTTP/1.1 200 OK\r\n\r\n", HttpError::Malformed("status line")),
            (b"HTTP/1.1 200 O\x01K\r\n\r\n", HttpError::Malformed("reason phrase")),
        ];
        for (input, want) in cases {
            assert_eq!(parse_response(input), Err(*want), "input {:?}", String::from_utf8_lossy(input));
        }
    }
}
