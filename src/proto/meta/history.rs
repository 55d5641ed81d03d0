//! `wamp.subscription.get_events`: which history a subscription names, the caller's
//! arguments as an [`EventsQuery`], and each kept event as the caller gets it.
//!
//! Two argument forms (`../shared/WAMP-ADVANCED-NOTES.md` §D.4): Crossbar's positional
//! `(subscription, limit=10)` answers newest first; any keyword argument selects the spec's
//! form (`reverse`, `limit`, `from/after/before/until_time` in RFC 3339,
//! `from/after/before/until_publication`, `topic`), chronological unless `reverse`. Each
//! event carries the union of both shapes. The subscription's history is the realm's
//! `[[realm.history]]` entry with the same URI and match policy, kept on that entry's
//! owner shard, which answers the query as a one-shard gather.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::super::auth::entropy::iso8601;
use super::super::mesh::Publication;
use super::super::realm::Realm;
use super::super::store::history::StoredEvent;
use super::super::uris;
use super::super::wire::uri::MatchPolicy;
use super::super::wire::{Dict, Id, Value};
use super::Refusal;
use crate::limits;

pub(crate) const GET_EVENTS: &str = "wamp.subscription.get_events";

/// What one `get_events` call selects from one history ring.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventsQuery {
    pub uri: Arc<str>,
    pub policy: MatchPolicy,
    pub subscription: Id,
    pub newest_first: bool,
    pub limit: Option<usize>,
    /// Inclusive wall-clock bounds, ns since the Unix epoch.
    pub time_min_ns: Option<u64>,
    pub time_max_ns: Option<u64>,
    pub from_publication: Option<Id>,
    pub after_publication: Option<Id>,
    pub before_publication: Option<Id>,
    pub until_publication: Option<Id>,
    pub topic: Option<String>,
    /// The caller: events whose authid/authrole filters exclude it are left out (the spec).
    pub reader: Id,
    pub reader_authid: String,
    pub reader_authrole: String,
    /// Stop once the selected events' stored bytes pass this (None: no bound); see
    /// `limits::HISTORY_ANSWER_ESTIMATE_FACTOR`.
    pub bytes_max: Option<usize>,
}

impl EventsQuery {
    /// Whether an event at `time_ns` passes the time, topic and reader filters.
    pub fn admits(&self, time_ns: u64, p: &Publication) -> bool {
        self.time_min_ns.is_none_or(|t| time_ns >= t)
            && self.time_max_ns.is_none_or(|t| time_ns <= t)
            && self.topic.as_deref().is_none_or(|t| t == &*p.topic)
            && p.filters.as_ref().is_none_or(|f| f.admits(self.reader, &self.reader_authid, &self.reader_authrole))
    }
}

/// The caller of a query (session, authid, authrole).
pub(crate) type Reader<'a> = (Id, &'a str, &'a str);

/// The query for a `get_events` call in `realm`, or the ERROR (URI, message).
pub(crate) fn plan(realm: &Realm, reader: Reader<'_>, args: &[Value], kwargs: &Dict) -> Result<EventsQuery, Refusal> {
    let Some(subscription) = args.first().and_then(Value::as_u64) else {
        return Err(bad("expected a subscription ID as the first argument"));
    };
    let Some((uri, policy)) = realm.broker.route_of(subscription) else {
        return Err((uris::NO_SUCH_SUBSCRIPTION, format!("no subscription {subscription}")));
    };
    if !realm.config.history.iter().any(|e| e.uri == *uri && e.policy == policy) {
        let msg = format!("no event history is kept for subscription {subscription}");
        return Err((uris::HISTORY_UNAVAILABLE, msg));
    }
    let (id, authid, authrole) = reader;
    let mut q = EventsQuery {
        uri: uri.clone(),
        policy,
        subscription,
        reader: id,
        reader_authid: authid.to_owned(),
        reader_authrole: authrole.to_owned(),
        ..EventsQuery::default()
    };
    let positional_limit = match args.get(1) {
        None | Some(Value::Null) => None,
        Some(v) => Some(positive(v, "limit")?),
    };
    if kwargs.is_empty() {
        // Crossbar's form.
        q.newest_first = true;
        q.limit = Some(positional_limit.unwrap_or(limits::HISTORY_GET_EVENTS_LIMIT_DEFAULT as u64) as usize);
        return Ok(q);
    }
    q.limit = positional_limit.map(|n| n as usize);
    for (key, v) in kwargs.iter() {
        match key {
            "reverse" => q.newest_first = v.as_bool().ok_or_else(|| bad("reverse must be a boolean"))?,
            "limit" => q.limit = Some(positive(v, key)? as usize),
            "from_time" => q.time_min_ns = Some(q.time_min_ns.unwrap_or(0).max(time(v, key)?)),
            "after_time" => q.time_min_ns = Some(q.time_min_ns.unwrap_or(0).max(time(v, key)?.saturating_add(1))),
            "before_time" => {
                let t = time(v, key)?;
                if t == 0 {
                    q.time_min_ns = Some(u64::MAX);
                }
                q.time_max_ns = Some(q.time_max_ns.unwrap_or(u64::MAX).min(t.saturating_sub(1)));
            }
            "until_time" => q.time_max_ns = Some(q.time_max_ns.unwrap_or(u64::MAX).min(time(v, key)?)),
            "from_publication" => q.from_publication = Some(positive(v, key)?),
            "after_publication" => q.after_publication = Some(positive(v, key)?),
            "before_publication" => q.before_publication = Some(positive(v, key)?),
            "until_publication" => q.until_publication = Some(positive(v, key)?),
            "topic" => q.topic = Some(v.as_str().ok_or_else(|| bad("topic must be a URI string"))?.to_owned()),
            other => return Err(bad(&format!("unknown keyword argument {other:?}"))),
        }
    }
    Ok(q)
}

/// One kept event as `get_events` returns it: Crossbar's keys and the spec's.
pub(crate) fn event_value(e: &StoredEvent, realm: &str, q: &EventsQuery) -> Value {
    let p = &e.publication;
    let mut details = Dict::new();
    if q.policy != MatchPolicy::Exact {
        details.insert("topic", &*p.topic);
    }
    if let Some(who) = &p.disclose {
        details.insert("publisher", who.session);
        details.insert("publisher_authid", &*who.authid);
        details.insert("publisher_authrole", &*who.authrole);
    }
    let args = match p.payload.count {
        0 => Value::Null,
        _ => p.payload.args().map(Value::List).unwrap_or(Value::Null),
    };
    let kwargs = match p.payload.count {
        0 | 1 => Value::Null,
        _ => p.payload.kwargs().map(Value::Dict).unwrap_or(Value::Null),
    };
    let timestamp = iso8601(UNIX_EPOCH + Duration::from_nanos(e.time_ns));
    Value::Dict(
        Dict::new()
            .with("timestamp", timestamp)
            .with("time_ns", e.time_ns)
            .with("realm", realm)
            .with("session_id", e.publisher.session)
            .with("authid", &*e.publisher.authid)
            .with("authrole", &*e.publisher.authrole)
            .with("publication", p.id)
            .with("topic", &*p.topic)
            .with("subscription", q.subscription)
            .with("details", details)
            .with("args", args)
            .with("kwargs", kwargs),
    )
}

fn bad(message: &str) -> Refusal {
    (uris::INVALID_ARGUMENT, message.to_owned())
}

/// A positive integer argument.
fn positive(v: &Value, key: &str) -> Result<u64, Refusal> {
    match v.as_u64() {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(bad(&format!("{key} must be a positive integer"))),
    }
}

/// An RFC 3339 timestamp argument, as ns since the Unix epoch.
fn time(v: &Value, key: &str) -> Result<u64, Refusal> {
    v.as_str()
        .and_then(rfc3339_ns)
        .ok_or_else(|| bad(&format!("{key} must be an RFC 3339 timestamp like \"2026-12-05T10:00:00Z\"")))
}

/// Parse an RFC 3339 date-time (`2026-12-05T10:00:00.123Z`, `…+01:00`) into ns since the
/// Unix epoch; None if malformed or before 1970.
pub(crate) fn rfc3339_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, chars: &[u8]| b.get(at).is_some_and(|c| chars.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            let off = oh * 3600 + om * 60;
            if *c == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    let ns = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    u64::try_from(ns).ok()
}

/// (year, month, day) → days since 1970-01-01, proleptic Gregorian (the inverse of
/// `civil_from_days` beside `iso8601`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_what_iso8601_writes() {
        // Goal: timestamps the router hands out can be passed back as time bounds, and
        // offsets and fractions are honoured. Method: round trips and known instants.
        assert_eq!(rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(rfc3339_ns("1970-01-01T01:00:00+01:00"), Some(0));
        let t = 1_796_543_109_123_000_000u64;
        let s = iso8601(UNIX_EPOCH + Duration::from_nanos(t));
        assert_eq!(rfc3339_ns(&s), Some(t), "{s}");
        assert_eq!(rfc3339_ns("2000-02-29T00:00:00.000Z"), Some(951_782_400_000_000_000));
        for bad in ["", "2026-12-05", "2026-13-01T00:00:00Z", "2026-12-05T10:00:00", "1969-12-31T23:59:59Z", "x"] {
            assert_eq!(rfc3339_ns(bad), None, "{bad}");
        }
    }
}
