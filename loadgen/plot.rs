//! SVG latency plots in the HdrHistogram style: latency against percentile on a
//! logarithmic "1/(1−percentile)" axis (0%, 90%, 99%, 99.9%, …), one line per run, so two
//! routers' tails can be compared at a glance. Written by hand: no plotting crate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::report::{Report, us};
use crate::stats::Point;

const W: f64 = 960.0;
const H: f64 = 560.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 48.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 70.0;
const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#555555"];

/// One line of the plot.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// x position in decades: log10(1 / (1 − p)). 100 % maps to `cap`.
fn decades(percentile: f64, cap: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 0.0 { cap } else { (1.0 / rest).log10().min(cap) }
}

fn percent_label(d: u32) -> String {
    match d {
        0 => "0%".into(),
        1 => "90%".into(),
        d => format!("99.{}%", "9".repeat(d as usize - 2)).replace("99.%", "99%"),
    }
}

/// Render the series as an SVG document.
pub fn render(series: &[Series], title: &str, linear: bool) -> String {
    let all: Vec<&Point> = series.iter().flat_map(|s| s.points.iter()).collect();
    // Enough decades to show the finest percentile any run resolved, 99% at least.
    let finest = all.iter().filter(|p| p.percentile < 100.0).map(|p| decades(p.percentile, 9.0)).fold(2.0, f64::max);
    let xmax = finest.ceil().clamp(2.0, 7.0);
    let vmax = all.iter().map(|p| p.value_us).fold(0.0, f64::max).max(1e-3);
    let vmin = all.iter().map(|p| p.value_us).filter(|&v| v > 0.0).fold(f64::INFINITY, f64::min).min(vmax);
    let (ylo, yhi) = if linear {
        let step = nice_step(vmax * 1.05 / 6.0);
        (0.0, (vmax * 1.05 / step).ceil() * step)
    } else {
        (10f64.powf(vmin.max(1e-3).log10().floor()), 10f64.powf(vmax.log10().ceil().max(vmin.log10().floor() + 1.0)))
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let xpos = |d: f64| LEFT + pw * d / xmax;
    let ypos = |v: f64| {
        let f = if linear {
            (v - ylo) / (yhi - ylo)
        } else {
            (v.max(ylo).log10() - ylo.log10()) / (yhi.log10() - ylo.log10())
        };
        TOP + ph * (1.0 - f.clamp(0.0, 1.0))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#, W / 2.0, esc(title));
    // Grid and axes.
    for d in 0..=xmax as u32 {
        let x = xpos(f64::from(d));
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##, TOP + ph);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + ph + 18.0,
            percent_label(d)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of 1/(1−percentile))</text>"#,
        LEFT + pw / 2.0,
        H - 22.0
    );
    let mut yticks = Vec::new();
    if linear {
        let step = nice_step((yhi - ylo) / 6.0);
        let mut v = ylo;
        while v <= yhi + step / 2.0 {
            yticks.push((v, true));
            v += step;
        }
    } else {
        let mut decade = ylo;
        while decade <= yhi * 1.0001 {
            yticks.push((decade, true));
            for m in [2.0, 5.0] {
                if decade * m < yhi {
                    yticks.push((decade * m, false));
                }
            }
            decade *= 10.0;
        }
    }
    for (v, major) in yticks {
        let y = ypos(v);
        let color = if major { "#ccc" } else { "#eee" };
        let _ = writeln!(s, r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}"/>"#, LEFT + pw);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 6.0, y + 4.0, tick(v));
    }
    let _ = writeln!(
        s,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">latency{}</text>"#,
        TOP + ph / 2.0,
        if linear { "" } else { " (log scale)" }
    );
    let _ = writeln!(s, r##"<rect x="{LEFT}" y="{TOP}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#333"/>"##);
    // Lines.
    for (k, ser) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", xpos(decades(p.percentile, xmax)), ypos(p.value_us)))
            .collect();
        if !pts.is_empty() {
            let _ =
                writeln!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        }
        // Legend.
        let ly = TOP + 18.0 + 18.0 * k as f64;
        let at = |q: f64| ser.points.iter().find(|p| p.percentile >= q).map(|p| p.value_us).unwrap_or(f64::NAN);
        let max = ser.points.last().map(|p| p.value_us).unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/>"#,
            LEFT + 12.0,
            LEFT + 36.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{} — p50 {}, p99 {}, p99.9 {}, max {}</text>"#,
            LEFT + 42.0,
            ly + 4.0,
            esc(&ser.label),
            us(at(50.0)),
            us(at(99.0)),
            us(at(99.9)),
            us(max)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// An axis label: microseconds in the unit that reads best, without trailing zeros.
fn tick(v_us: f64) -> String {
    let (v, unit) = if v_us >= 1e6 {
        (v_us / 1e6, "s")
    } else if v_us >= 1e3 {
        (v_us / 1e3, "ms")
    } else {
        (v_us, "µs")
    };
    let text = format!("{v:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|&v| v >= raw).unwrap_or(10.0 * p)
}

pub fn series_of(r: &Report, fallback: &str) -> Series {
    let label = if r.label.is_empty() { fallback.to_owned() } else { r.label.clone() };
    Series { label, points: r.distribution.clone() }
}

pub fn write(path: &Path, series: &[Series], title: &str, linear: bool) -> Result<(), String> {
    std::fs::write(path, render(series, title, linear)).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `loadgen plot a.json b.json --out x.svg`
pub fn plot_files(inputs: &[PathBuf], out: &Path, title: Option<&str>, linear: bool) -> Result<(), String> {
    let mut series = Vec::new();
    let mut kinds = Vec::new();
    for p in inputs {
        let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        let r: Report =
            serde_json::from_str(&text).map_err(|e| format!("{} is not a loadgen report: {e}", p.display()))?;
        kinds.push(format!("{} {}", r.scenario, r.latency_kind));
        series.push(series_of(&r, &p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()));
    }
    kinds.dedup();
    let title = title.map(str::to_owned).unwrap_or_else(|| format!("{} latency by percentile", kinds.join(" / ")));
    write(out, &series, &title, linear)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latency;

    // Goal: the SVG is well-formed enough to open (one root, balanced), has one line and
    // one legend entry per series, and percent labels read like HdrHistogram's.
    #[test]
    fn renders_two_series() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for i in 1..=100_000u64 {
            a.record(10_000 + i);
            b.record(1_000_000 + i * 100);
        }
        let series = vec![
            Series { label: "shardbar <fast>".into(), points: a.distribution() },
            Series { label: "crossbar".into(), points: b.distribution() },
        ];
        for linear in [false, true] {
            let svg = render(&series, "fan-out & friends", linear);
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            assert_eq!(svg.matches("<polyline").count(), 2);
            assert!(svg.contains("shardbar &lt;fast&gt;"));
            assert!(svg.contains("fan-out &amp; friends"));
            assert!(svg.contains(">99.9%<") && svg.contains(">90%<") && svg.contains(">99%<"));
            assert!(!svg.contains("NaN"), "{svg}");
        }
    }

    #[test]
    fn labels_and_steps() {
        assert_eq!(percent_label(0), "0%");
        assert_eq!(percent_label(2), "99%");
        assert_eq!(percent_label(4), "99.99%");
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
        assert_eq!(nice_step(4.5), 5.0);
        assert!((decades(99.0, 6.0) - 2.0).abs() < 1e-9);
        assert_eq!(tick(500_000.0), "500 ms");
        assert_eq!(tick(2_000_000.0), "2 s");
        assert_eq!(tick(0.5), "0.5 µs");
        assert_eq!(tick(1_500.0), "1.5 ms");
        assert_eq!(decades(100.0, 6.0), 6.0);
    }
}
