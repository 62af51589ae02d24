//! A lock-free duration histogram. prometheus-client's `Histogram` takes a
//! mutex per observation; sessions of one busy tenant share a histogram, so
//! on many cores that mutex would be contended on every query. Here an
//! observation is two relaxed atomic adds; the count is the sum of the
//! buckets, read at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the buckets, in seconds (50 µs … 30 s); `+Inf` is implicit.
pub const DURATION_BUCKETS: [f64; 18] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];

const BUCKETS: usize = DURATION_BUCKETS.len() + 1;

/// The bounds in nanoseconds, for comparisons without floating point.
const BOUNDS_NS: [u64; DURATION_BUCKETS.len()] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

#[derive(Debug)]
struct Inner {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

/// A histogram of durations with [`DURATION_BUCKETS`]; clones share counts.
#[derive(Debug, Clone)]
pub struct DurationHistogram(Arc<Inner>);

impl Default for DurationHistogram {
    fn default() -> Self {
        DurationHistogram(Arc::new(Inner {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }))
    }
}

impl DurationHistogram {
    /// Records one duration.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum_seconds(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_the_seconds() {
        for (s, ns) in DURATION_BUCKETS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn observations_land_in_le_buckets() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_micros(50)); // le 0.00005 (inclusive)
        h.observe(Duration::from_micros(51)); // le 0.0001
        h.observe(Duration::from_secs(60)); // +Inf
        assert_eq!(h.count(), 3);
        assert_eq!(h.0.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.0.buckets[1].load(Ordering::Relaxed), 1);
        assert_eq!(h.0.buckets[BUCKETS - 1].load(Ordering::Relaxed), 1);
        assert!((h.sum_seconds() - 60.000101).abs() < 1e-9);
    }

    #[test]
    fn encodes_cumulative_buckets() {
        let mut r = prometheus_client::registry::Registry::default();
        let h = DurationHistogram::default();
        h.observe(Duration::from_millis(2));
        r.register("d_seconds", "help", h.clone());
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
        assert!(s.contains("d_seconds_count 1\n"), "{s}");
        assert!(s.contains("d_seconds_bucket{le=\"0.001\"} 0\n"), "{s}");
        assert!(s.contains("d_seconds_bucket{le=\"0.0025\"} 1\n"), "{s}");
        assert!(s.contains("d_seconds_bucket{le=\"+Inf\"} 1\n"), "{s}");
    }
}
