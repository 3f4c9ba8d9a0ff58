//! A latency percentile plot as a self-contained SVG file, written by hand (no plotting crate): latency in
//! microseconds up the side, percentile along the bottom on the usual HDR scale (log of 1/(1 - p), so 90%,
//! 99%, 99.9% ... are evenly spaced), one line per series, and a legend with each series' p50/p99/max.

use std::fmt::Write as _;

/// One line of the plot.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(percentile as a fraction, microseconds)`, rising (see [`crate::latency::points`]).
    pub points: Vec<(f64, f64)>,
    /// Summary shown in the legend.
    pub summary: crate::latency::Summary,
}

const W: f64 = 900.0;
const H: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 130.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
/// Nines shown on the percentile axis (10^6: 99.9999%).
const MAX_NINES: f64 = 6.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Position along the percentile axis, 0 to [`MAX_NINES`].
fn nines(q: f64) -> f64 {
    let q = q.clamp(0.0, 1.0 - 10f64.powf(-MAX_NINES));
    (1.0 / (1.0 - q)).log10()
}

/// A "nice" step for an axis spanning `max`, about `n` ticks.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// The SVG document of `series` under `title`.
pub fn svg(title: &str, series: &[Series]) -> String {
    let ymax_data = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let step = nice_step(ymax_data, 8.0);
    let ymax = (ymax_data / step).ceil() * step;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |q: f64| LEFT + nines(q) / MAX_NINES * pw;
    let y = |v: f64| TOP + ph - v / ymax * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="25" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // Grid and axes.
    let mut v = 0.0;
    while v <= ymax + step / 2.0 {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            yy + 4.0,
            if step < 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            }
        );
        v += step;
    }
    for (k, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let xx = LEFT + k as f64 / MAX_NINES * pw;
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + ph,
            TOP + ph + 16.0
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        TOP + ph + 34.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">one-way latency (µs)</text>"#,
        TOP + ph / 2.0
    );
    // Lines and legend.
    for (i, se) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let pts: Vec<String> = se
            .points
            .iter()
            .map(|&(q, v)| format!("{:.1},{:.1}", x(q), y(v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = TOP + ph + 56.0 + i as f64 * 18.0;
        let m = &se.summary;
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{} — p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs ({} samples)</text>"#,
            ly - 4.0,
            LEFT + 24.0,
            ly - 4.0,
            LEFT + 30.0,
            ly,
            esc(&se.name),
            m.p50,
            m.p99,
            m.p999,
            m.max,
            m.count
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes [`svg`] to `path`.
pub fn write_svg(title: &str, series: &[Series], path: &std::path::Path) -> anyhow::Result<()> {
    std::fs::write(path, svg(title, series))
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::{points, Summary};
    use hdrhistogram::Histogram;

    #[test]
    fn renders_every_series_inside_the_frame() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(20_000 + v).unwrap();
        }
        let a = Series {
            name: "wharf <bridge>".into(),
            points: points(&h),
            summary: Summary::of(&h),
        };
        let mut b = a.clone();
        b.name = "kernel".into();
        let doc = svg("bridge & co", &[a, b]);
        assert!(doc.starts_with("<svg") && doc.trim_end().ends_with("</svg>"));
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert!(doc.contains("wharf &lt;bridge&gt;") && doc.contains("bridge &amp; co"));
        assert!(doc.contains("99.9%"));
        // Every plotted point is inside the plot area.
        for line in doc.lines().filter(|l| l.starts_with("<polyline")) {
            let pts = line
                .split("points=\"")
                .nth(1)
                .unwrap()
                .trim_end_matches("\"/>");
            for p in pts.split(' ') {
                let (x, y) = p.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((LEFT..=W - RIGHT).contains(&x), "{x}");
                assert!((TOP..=H - BOTTOM).contains(&y), "{y}");
            }
        }
    }
}
