//! What one version of a module did during a rollout step: requests, failures, timeouts and a
//! latency histogram, as differences of the node's cumulative counters.
//!
//! The latency histogram uses quarter-octave buckets of microseconds ([`bucket`],
//! [`upper_edge_micros`], [`quantile_micros`]): the one histogram scheme of Spark, also behind
//! the node's per-tick latency windows. Percentiles are known to within about 19% and the rank
//! test can treat the bucket index as an ordinal value.

use serde::{Deserialize, Serialize};

/// Buckets of the latency histogram.
pub const LATENCY_BUCKETS: usize = 160;

/// Counts of one version over one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionWindow {
    /// Requests answered in the window.
    pub requests: u64,
    /// Responses with a 5xx status (traps, limits and guest errors included).
    pub errors: u64,
    /// Of the errors, those that ran out of time.
    pub timeouts: u64,
    /// Latency histogram (quarter-octave buckets of microseconds).
    pub latency: Vec<u64>,
    /// The version ran baseline (Winch) code during the window, its optimized code still
    /// compiling: its latencies are not comparable with a version on optimized code.
    #[serde(default)]
    pub baseline_code: bool,
}

impl Default for VersionWindow {
    fn default() -> Self {
        VersionWindow {
            requests: 0,
            errors: 0,
            timeouts: 0,
            latency: vec![0; LATENCY_BUCKETS],
            baseline_code: false,
        }
    }
}

impl VersionWindow {
    /// `self - earlier`: the window between two cumulative snapshots (on baseline code if
    /// either end was).
    pub fn since(&self, earlier: &VersionWindow) -> VersionWindow {
        VersionWindow {
            baseline_code: self.baseline_code || earlier.baseline_code,
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            timeouts: self.timeouts.saturating_sub(earlier.timeouts),
            latency: self
                .latency
                .iter()
                .zip(earlier.latency.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }

    /// Errors per request, 0..1 (0 without requests).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The `q` quantile of latency in milliseconds (upper edge of its bucket), if any samples.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        quantile_micros(&self.latency, q).map(|micros| micros as f64 / 1e3)
    }
}

/// The `q` quantile (0..1) of a histogram in these buckets, in microseconds: the upper edge
/// of the bucket that holds it. `None` for an empty histogram.
pub fn quantile_micros(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bucket, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(upper_edge_micros(bucket));
        }
    }
    Some(upper_edge_micros(counts.len().saturating_sub(1)))
}

/// The bucket of a latency in microseconds.
pub fn bucket(micros: u64) -> usize {
    if micros < 8 {
        return micros as usize;
    }
    let octave = (u64::BITS - 1 - micros.leading_zeros()) as usize;
    let quarter = ((micros >> (octave - 2)) & 0b11) as usize;
    (octave * 4 + quarter).min(LATENCY_BUCKETS - 1)
}

/// Smallest latency (µs) above every value in `bucket`.
pub fn upper_edge_micros(bucket: usize) -> u64 {
    if bucket < 8 {
        return bucket as u64 + 1;
    }
    let (octave, quarter) = (bucket / 4, (bucket % 4) as u64);
    if octave < 3 {
        return 8;
    }
    (1u64 << octave) + ((quarter + 1) << (octave - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_quantiles() {
        let mut later = VersionWindow {
            requests: 110,
            errors: 12,
            ..VersionWindow::default()
        };
        for _ in 0..100 {
            later.latency[bucket(1_000)] += 1;
        }
        for _ in 0..10 {
            later.latency[bucket(50_000)] += 1;
        }
        let mut earlier = VersionWindow {
            requests: 10,
            errors: 2,
            ..VersionWindow::default()
        };
        earlier.latency[bucket(50_000)] = 10;
        let window = later.since(&earlier);
        assert_eq!((window.requests, window.errors), (100, 10));
        assert!((window.error_rate() - 0.1).abs() < 1e-12);
        let p50 = window.latency_ms(0.5).unwrap();
        assert!((1.0..1.2).contains(&p50), "{p50}");
        assert_eq!(
            window.latency_ms(0.99),
            window.latency_ms(0.5),
            "the slow ones were before the window"
        );
        assert_eq!(VersionWindow::default().latency_ms(0.5), None);
    }

    #[test]
    fn buckets_are_ordered_and_edges_bound_them() {
        let mut previous = 0;
        for micros in (0..5000u64).chain([1 << 20, (1 << 20) + 1, 1 << 38]) {
            let b = bucket(micros);
            assert!(b >= previous, "bucket order at {micros}");
            previous = b;
            assert!(
                micros < upper_edge_micros(b),
                "{micros} not below the edge of its bucket {b}"
            );
            if b > 0 {
                assert!(
                    micros >= upper_edge_micros(b - 1),
                    "{micros} belongs above bucket {}",
                    b - 1
                );
            }
        }
        assert_eq!(
            bucket(u64::MAX),
            LATENCY_BUCKETS - 1,
            "the slowest share the last"
        );
    }
}
