//! Fuzz bodies for the transport codecs: the incremental WebSocket and RawSocket frame
//! decoders, the RawSocket handshake, and the HTTP request head of the WebSocket upgrade.
//!
//! The decoders are fed the stream in the pieces `Chunks` cuts, then all at once into a
//! fresh decoder: the events (and the error, if any) must be the same however the bytes
//! arrived, besides respecting the decoder's documented promises (text is UTF-8, sizes stay
//! under the limit, an error repeats).

use bytes::BytesMut;
use shardbar::limits;
use shardbar::proto::wire::http::{self, HttpError};
use shardbar::proto::wire::websocket::{self, AcceptOptions, Event, Role};
use shardbar::proto::wire::{Serializer, rawsocket};

use crate::Chunks;

/// WebSocket message limits the target picks from (the first byte's bits 1–2).
const WS_LIMITS: [usize; 4] = [0, 125, 4096, limits::MESSAGE_SIZE_MAX_BYTES];

/// `data[0]`: bit 0 the role (0 server, the router's side), bits 1–2 the message limit;
/// `data[1]`: the chunking seed; the rest: the byte stream.
pub fn websocket(data: &[u8]) {
    let [flags, seed, stream @ ..] = data else { return };
    let role = if flags & 1 == 0 { Role::Server } else { Role::Client };
    let max = WS_LIMITS[usize::from(flags >> 1) & 3];
    let chunked = ws_events(role, max, Chunks::new(stream, *seed));
    let whole = ws_events(role, max, Chunks::new(stream, 0));
    assert_eq!(chunked, whole, "WebSocket events depend on how the bytes were cut");
}

/// Everything a decoder yields for `pieces`, up to and including its first error.
fn ws_events<'a>(
    role: Role,
    max: usize,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> (Vec<Event>, Option<websocket::Error>) {
    let mut decoder = websocket::Decoder::new(role, max);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(event)) => {
                    check_ws_event(&event, max);
                    events.push(event);
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(decoder.decode(&mut buf), Err(e), "a WebSocket error must repeat");
                    return (events, Some(e));
                }
            }
        }
        if decoder.is_closed() {
            break;
        }
    }
    (events, None)
}

fn check_ws_event(event: &Event, max: usize) {
    match event {
        Event::Message { binary, data } => {
            assert!(data.len() <= max, "message of {} bytes over the limit {max}", data.len());
            assert!(*binary || std::str::from_utf8(data).is_ok(), "text message is not UTF-8");
        }
        Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= limits::WS_CONTROL_PAYLOAD_MAX_BYTES),
        Event::Close { code, reason } => {
            assert!(code.is_none_or(websocket::is_valid_close_code), "close code {code:?} let through");
            assert!(code.is_some() || reason.is_empty(), "a reason without a code");
        }
    }
}

/// `data[0..4]`: the client's handshake request; `data[4]`: the chunking seed; the rest:
/// the frame stream, decoded with the receive limit the handshake settles on.
pub fn rawsocket(data: &[u8]) {
    let [a, b, c, d, seed, stream @ ..] = data else { return };
    let request = [*a, *b, *c, *d];
    // The reply side of the handshake sees the same four bytes (a hostile router).
    for requested in Serializer::ALL {
        let _ = rawsocket::parse_reply(request, requested);
    }
    let parsed = rawsocket::parse_request(request);
    let accepted = rawsocket::accept(request, &Serializer::ALL, 0);
    let hs = match (parsed, accepted) {
        (Ok(p), Ok(acc)) => {
            assert_eq!(p, acc);
            acc
        }
        (Err(e), Err(acc)) => {
            assert_eq!(e, acc);
            let _ = (e.reply(), e.to_string());
            return;
        }
        (p, acc) => panic!("parse_request {p:?} but accept {acc:?} with every serializer allowed"),
    };
    // The length nibble also picks the decoder's receive limit, so every limit from 512
    // bytes to 16 MiB (2^(9+15), what the prefix can say) is exercised.
    let max = hs.max_len_bytes();
    let chunked = rs_frames(max, Chunks::new(stream, *seed));
    let whole = rs_frames(max, Chunks::new(stream, 0));
    assert_eq!(chunked, whole, "RawSocket frames depend on how the bytes were cut");
}

fn rs_frames<'a>(
    max: usize,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> (Vec<rawsocket::Frame>, Option<rawsocket::Error>) {
    let mut decoder = rawsocket::Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let (rawsocket::Frame::Message(p) | rawsocket::Frame::Ping(p) | rawsocket::Frame::Pong(p)) = &frame;
                    assert!(p.len() <= max, "frame of {} bytes over the limit {max}", p.len());
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(decoder.decode(&mut buf), Err(e), "a RawSocket error must repeat");
                    return (frames, Some(e));
                }
            }
        }
    }
    (frames, None)
}

/// `data`: the bytes a client sent before the head ended (or did not). A complete head is
/// checked as an upgrade the way the runtime does; every prefix of a complete head is
/// incomplete or an error, and the head alone parses to the same request.
pub fn http_request(data: &[u8]) {
    match http::parse_request(data) {
        Ok(None) => assert!(data.len() < limits::HTTP_HEAD_MAX_BYTES, "an incomplete head past the bound"),
        Err(e) => check_http_error(e),
        Ok(Some((req, len))) => {
            assert!(len <= data.len() && len <= limits::HTTP_HEAD_MAX_BYTES, "head length {len}");
            match http::parse_request(&data[..len]) {
                Ok(Some((again, n))) => assert_eq!((again, n), (req.clone(), len), "the head alone parses otherwise"),
                other => panic!("the head alone does not parse: {other:?}"),
            }
            let _ = (req.path_without_query(), req.is_websocket_upgrade());
            for allow_no_protocol in [false, true] {
                let opts = AcceptOptions { serializers: &Serializer::ALL, allow_no_protocol };
                match websocket::accept(&req, &opts) {
                    Ok(accepted) => drop(accepted.response()),
                    Err(rejection) => drop(rejection.response()),
                }
            }
        }
    }
    // A response head is read by the same code on the client side (the load generator).
    if let Err(e) = http::parse_response(data) {
        check_http_error(e);
    }
}

fn check_http_error(e: HttpError) {
    let status = e.status();
    assert!(matches!(status, 400 | 431 | 505), "status {status} for {e}");
    let response = e.response();
    assert!(response.starts_with(b"HTTP/1.1 "), "error response {:?}", String::from_utf8_lossy(&response));
}
