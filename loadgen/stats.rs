//! Latency recording: one HdrHistogram per worker thread, merged at the end.
//!
//! Values are nanoseconds with 3 significant digits from 1 ns to one hour (about 256 KiB
//! per histogram). Workers never share a histogram: each records into its own and hands
//! it back when the run ends, and the main thread adds them up ([`Latency::merge`]) — no
//! locks or atomics on the recording path. Reports are in microseconds.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Highest value a histogram tracks: one hour in ns. Larger values are clamped to it.
const HIGHEST_NS: u64 = 3_600 * 1_000_000_000;

/// A latency histogram in nanoseconds.
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

/// The figures a report shows for one histogram, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

/// One point of the percentile distribution: `percentile` in [0, 100], value in µs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub percentile: f64,
    pub value_us: f64,
}

impl Latency {
    pub fn new() -> Latency {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
        // sigfig <= 5), so creation cannot fail.
        let hist = Histogram::new_with_bounds(1, HIGHEST_NS, 3).expect("valid histogram bounds");
        Latency { hist }
    }

    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.clamp(1, HIGHEST_NS));
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Add another worker's histogram into this one.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so every value of `other` fits: add cannot fail.
        self.hist.add(&other.hist).expect("histograms with equal bounds add");
    }

    pub fn quantile_us(&self, q: f64) -> f64 {
        ns_to_us(self.hist.value_at_quantile(q))
    }

    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.hist.len(),
            min_us: ns_to_us(self.hist.min()),
            mean_us: self.hist.mean() / 1_000.0,
            p50_us: self.quantile_us(0.50),
            p90_us: self.quantile_us(0.90),
            p99_us: self.quantile_us(0.99),
            p999_us: self.quantile_us(0.999),
            p9999_us: self.quantile_us(0.9999),
            max_us: ns_to_us(self.hist.max()),
        }
    }

    /// The percentile distribution as HdrHistogram's own `outputPercentileDistribution`
    /// lists it (5 ticks per half-distance to 100%), ending with the maximum at 100%.
    pub fn distribution(&self) -> Vec<Point> {
        if self.hist.is_empty() {
            return Vec::new();
        }
        let mut points: Vec<Point> = self
            .hist
            .iter_quantiles(5)
            .map(|v| Point { percentile: v.quantile_iterated_to() * 100.0, value_us: ns_to_us(v.value_iterated_to()) })
            .collect();
        points.dedup_by(|b, a| a.percentile == b.percentile && a.value_us == b.value_us);
        points
    }

    /// The histogram in HdrHistogram's compressed V2 format, base64: lets a later tool
    /// (`loadgen plot`, or any HdrHistogram implementation) rebuild it exactly.
    pub fn to_base64(&self) -> String {
        let mut out = Vec::new();
        match V2DeflateSerializer::new().serialize(&self.hist, &mut out) {
            Ok(_) => base64::engine::general_purpose::STANDARD.encode(out),
            Err(_) => String::new(),
        }
    }

    #[cfg(test)]
    pub fn from_base64(s: &str) -> Option<Latency> {
        use hdrhistogram::serialization::Deserializer;
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        let h: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice()).ok()?;
        let mut l = Latency::new();
        l.hist.add(&h).ok()?;
        Some(l)
    }
}

fn ns_to_us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: merging per-thread histograms gives exactly the histogram of all values, so
    // percentiles of the merged one are the percentiles of the whole population.
    #[test]
    fn merged_equals_recorded_together() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        let mut all = Latency::new();
        for i in 1..=10_000u64 {
            let v = i * 1_000; // 1 µs … 10 ms
            if i % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        let mut merged = Latency::new();
        merged.merge(&a);
        merged.merge(&b);
        assert_eq!(merged.count(), 10_000);
        assert_eq!(merged.summary(), all.summary());
        let s = merged.summary();
        // 3 significant digits: within 0.1 %.
        assert!((s.p50_us - 5_000.0).abs() / 5_000.0 < 0.001, "{s:?}");
        assert!((s.p99_us - 9_900.0).abs() / 9_900.0 < 0.001, "{s:?}");
        assert!((s.max_us - 10_000.0).abs() / 10_000.0 < 0.001, "{s:?}");
    }

    // Goal: the base64 form round-trips (plots and later comparisons rebuild it).
    #[test]
    fn base64_round_trip() {
        let mut a = Latency::new();
        for v in [1, 10, 100, 1_000, 1_000_000, 123_456_789] {
            a.record(v);
        }
        let b = Latency::from_base64(&a.to_base64()).expect("decodes");
        assert_eq!(a.summary(), b.summary());
        assert!(Latency::from_base64("not base64!").is_none());
    }

    // Goal: the distribution is monotone, starts at 0 % and ends at 100 % with the max.
    #[test]
    fn distribution_is_monotone_and_ends_at_max() {
        let mut a = Latency::new();
        for i in 1..=1_000u64 {
            a.record(i * i);
        }
        let d = a.distribution();
        assert!(d.len() > 10);
        assert_eq!(d[0].percentile, 0.0);
        let last = d.last().unwrap();
        assert_eq!(last.percentile, 100.0);
        assert!((last.value_us - a.summary().max_us).abs() < 1e-9);
        assert!(d.windows(2).all(|w| w[0].percentile <= w[1].percentile && w[0].value_us <= w[1].value_us));
    }

    // Goal: values outside the tracked range are clamped, not lost or panicking.
    #[test]
    fn out_of_range_values_clamp() {
        let mut a = Latency::new();
        a.record(0);
        a.record(u64::MAX);
        assert_eq!(a.count(), 2);
        assert!(Latency::new().summary().count == 0);
    }
}
