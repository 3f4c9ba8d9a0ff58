//! Latency reports from an HDR histogram of nanoseconds: the percentile summary printed and stored in the
//! results file, and the `.hgrm` percentile distribution file (the text layout HdrHistogram's
//! `outputPercentileDistribution` prints, values in microseconds), which HdrHistogram's plotters read.

use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::path::Path;

/// Percentiles of one-way latency, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Summary {
    /// The summary of a histogram of nanoseconds (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Summary {
            count: h.len(),
            min: us(h.min()),
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "latency µs: min {:.1} p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} ({} samples)",
            self.min, self.p50, self.p90, self.p99, self.p999, self.max, self.count
        )
    }
}

/// The percentile distribution of `h` (nanoseconds) as `.hgrm` text, values in microseconds: five rows per
/// halving of the distance to 100%, then the mean, standard deviation, max and count.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let us = |ns: u64| ns as f64 / 1000.0;
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    s,
                    "{:>12.3} {:>2.12} {:>10} {:>14.2}",
                    us(v.value_iterated_to()),
                    q,
                    total,
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(
                    s,
                    "{:>12.3} {:>2.12} {:>10}",
                    us(v.value_iterated_to()),
                    q,
                    total
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        us(h.max()),
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    s
}

/// Writes [`hgrm`] to `path`.
pub fn write_hgrm(h: &Histogram<u64>, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, hgrm(h)).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// `(percentile as a fraction, microseconds)` points of the distribution, for plotting: the `.hgrm` rows.
pub fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| {
            (
                v.quantile_iterated_to(),
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_hgrm_of_a_known_distribution() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        // 1..=1000 µs, once each.
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 1000);
        assert!((s.min - 1.0).abs() < 0.01, "{s:?}");
        assert!((s.p50 - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99 - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max - 1000.0).abs() < 1.0, "{s:?}");
        let text = hgrm(&h);
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains("Value"))
            .collect();
        assert!(rows.len() > 20, "{text}");
        // Cumulative counts rise to the total, percentiles to 1.
        let last: Vec<&str> = rows.last().unwrap().split_whitespace().collect();
        assert_eq!(last[2], "1000");
        assert!(last[1].starts_with("1.0"), "{}", rows.last().unwrap());
        assert!(text.contains("Total count    =         1000"), "{text}");
        let p = points(&h);
        assert!(p.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(Summary::of(&Histogram::new(3).unwrap()), Summary::default());
    }
}
