//! Plain HTTP: reading a request head, and the endpoints that are not a WebSocket upgrade —
//! `/health`, `/metrics` (counters gathered from every shard over the mesh, then the
//! runtime's own from `guard.rs`), 426 on the WAMP port and 404 on the metrics listener.
//! Also the metrics listener's connections.
//!
//! `/health` and `/metrics` are served on the metrics listener (`[metrics] address`); on a
//! WAMP listener only with `[metrics] http_endpoints_on_wamp_port = true`, since they tell
//! anyone who can connect every realm's name and traffic. At most
//! `limits::METRICS_REQUESTS_IN_FLIGHT_MAX` scrapes gather at once per shard (503 past it).
//!
//! One request per connection, answered and closed; no keep-alive. The WebSocket upgrade
//! itself is `handshake.rs`'s; HTTP parsing is `proto::wire::websocket`'s.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::guard::LogKind;
use super::io::{read_until, write_all_by};
use super::notify::Notify;
use super::state::{Counted, Place, Shard};
use crate::limits;
use crate::proto::wire::websocket;

/// A connection to the separate metrics listener: HTTP only.
pub(crate) async fn serve_metrics_listener<S: AsyncRead + AsyncWrite + Unpin>(shard: Rc<Shard>, mut stream: S) {
    let deadline = Instant::now() + Duration::from_millis(limits::HANDSHAKE_TIMEOUT_MS);
    let mut buf = BytesMut::with_capacity(limits::READ_CHUNK_MIN_BYTES);
    let Some(request) = read_request_head(&mut stream, &mut buf, deadline).await else { return };
    respond(&shard, stream, &request, false).await;
}

/// Answer a request that is not a WebSocket upgrade, then close the connection.
/// `wamp_listener`: the request came to the WAMP port (then other paths get 426).
pub(crate) async fn respond<S: AsyncWrite + Unpin>(
    shard: &Rc<Shard>,
    mut stream: S,
    request: &websocket::Request,
    wamp_listener: bool,
) {
    let response = plain_http(shard, request, wamp_listener).await;
    let deadline = Duration::from_millis(limits::HANDSHAKE_REPLY_WRITE_DEADLINE_MS);
    let _ = write_all_by(&mut stream, &response, deadline).await;
    let _ = stream.close().await;
}

/// Read an HTTP request head (bounded by the deadline and `limits::HTTP_HEAD_MAX_BYTES`)
/// and consume it from `buf`; bytes after it (early WebSocket frames) stay. A malformed or
/// oversized head is answered with its HTTP error and the connection closed (None).
pub(crate) async fn read_request_head<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    deadline: Instant,
) -> Option<websocket::Request> {
    loop {
        match websocket::parse_request(buf) {
            Ok(Some((request, consumed))) => {
                let _ = buf.split_to(consumed);
                return Some(request);
            }
            Ok(None) => {
                // Parse again only once a line ended (or the head is over its limit, for
                // the 431): a client trickling bytes would otherwise cost a re-parse each.
                let len = buf.len();
                let more = |b: &[u8]| {
                    b.get(len..).is_some_and(|new| new.contains(&b'\n')) || b.len() > limits::HTTP_HEAD_MAX_BYTES
                };
                if !read_until(stream, buf, deadline, more).await {
                    return None;
                }
            }
            Err(e) => {
                let deadline = Duration::from_millis(limits::REFUSAL_WRITE_DEADLINE_MS);
                let _ = write_all_by(stream, &e.response(), deadline).await;
                let _ = stream.close().await;
                return None;
            }
        }
    }
}

/// The response to `/health`, `/metrics`, and anything else that is not a WebSocket upgrade.
async fn plain_http(shard: &Rc<Shard>, request: &websocket::Request, wamp_listener: bool) -> Vec<u8> {
    const TEXT: (&str, &str) = ("Content-Type", "text/plain");
    let endpoints = !wamp_listener || shard.config.http_endpoints_on_wamp_port;
    match (request.method.as_str(), request.path_without_query()) {
        ("GET", "/health" | "/metrics") if !endpoints => websocket::http_response(
            404,
            &[TEXT],
            b"/health and /metrics are served on the metrics listener ([metrics] address), not on a WAMP port\n",
        ),
        ("GET", "/health") if shard.ready() => websocket::http_response(200, &[TEXT], b"ok\n"),
        ("GET", "/health") => websocket::http_response(503, &[TEXT], b"starting or stopping\n"),
        ("GET", "/metrics") => metrics(shard).await,
        _ if wamp_listener => websocket::http_response(
            426,
            &[TEXT, ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            b"shardbar is a WAMP router: connect with a WebSocket (wamp.2.json, wamp.2.msgpack, wamp.2.cbor) or RawSocket\n",
        ),
        _ => websocket::http_response(404, &[TEXT], b"try /metrics or /health\n"),
    }
}

/// The `/metrics` response: the gathered counters, or 503 when too many scrapes are
/// gathering on this shard or a shard did not answer in time.
async fn metrics(shard: &Rc<Shard>) -> Vec<u8> {
    const TEXT: (&str, &str) = ("Content-Type", "text/plain");
    let Some(_place) = Place::take(shard, Counted::MetricsGathers) else {
        shard.counters().count_metrics_busy();
        if let Some(skipped) = shard.log_limit.allow(LogKind::MetricsBusy, Instant::now()) {
            tracing::warn!(
                shard = shard.id,
                in_flight = limits::METRICS_REQUESTS_IN_FLIGHT_MAX,
                not_logged_since = skipped,
                "/metrics refused: too many scrapes at once (counted in shardbar_metrics_requests_refused_total)"
            );
        }
        return websocket::http_response(503, &[TEXT, ("Retry-After", "1")], b"too many /metrics requests at once\n");
    };
    match gather_metrics(shard).await {
        Some(text) => websocket::http_response(200, &[("Content-Type", "text/plain; version=0.0.4")], text.as_bytes()),
        None => websocket::http_response(503, &[TEXT], b"a shard did not answer in time\n"),
    }
}

/// Ask every shard for its counters over the mesh and render them (bounded wait: the core
/// says `StatsReady` when every shard answered).
async fn gather_metrics(shard: &Rc<Shard>) -> Option<String> {
    let token = shard.core.borrow_mut().request_stats(Instant::now());
    let ready = Rc::new(Notify::default());
    shard.stats_waiters.borrow_mut().insert(token, ready.clone());
    shard.request_flush();
    let deadline = Instant::now() + Duration::from_millis(limits::METRICS_GATHER_MS);
    let out = loop {
        if let Some(snaps) = shard.core.borrow_mut().take_stats(token) {
            let mut text = crate::proto::stats::render_prometheus(&snaps);
            text.push_str(&shard.guard.render());
            break Some(text);
        }
        let now = Instant::now();
        if now >= deadline {
            shard.core.borrow_mut().cancel_stats(token);
            break None;
        }
        let timeout = async {
            glommio::timer::sleep(deadline - now).await;
        };
        futures_lite::future::or(ready.notified(), timeout).await;
    };
    shard.stats_waiters.borrow_mut().remove(&token);
    out
}
