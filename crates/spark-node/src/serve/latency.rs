//! A per-module latency window the control loop can read as "p99 since the last tick": a
//! fixed array of logarithmic buckets, incremented with relaxed atomics on the request path
//! and drained by the control loop. No locks, no allocation per request. The buckets and the
//! quantile are the rollout analysis's ([`spark_rollout::stats`]): one histogram scheme.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spark_rollout::stats::{LATENCY_BUCKETS as BUCKETS, bucket, quantile_micros};

#[derive(Debug)]
pub struct LatencyWindow {
    counts: [AtomicU64; BUCKETS],
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl LatencyWindow {
    pub fn record(&self, latency: Duration) {
        let micros = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        self.counts[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Empties the window; returns the 99th percentile of what it held (the upper edge of its
    /// bucket) and how many it held.
    pub fn drain_p99(&self) -> (Option<Duration>, u64) {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        let p99 = quantile_micros(&counts, 0.99).map(Duration::from_micros);
        (p99, counts.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_within_a_factor_of_two_and_drained() {
        let window = LatencyWindow::default();
        for _ in 0..990 {
            window.record(Duration::from_micros(300));
        }
        for _ in 0..10 {
            window.record(Duration::from_millis(40));
        }
        let (p99, n) = window.drain_p99();
        assert_eq!(n, 1000);
        let p99 = p99.unwrap();
        assert!(
            p99 >= Duration::from_micros(300) && p99 <= Duration::from_micros(360),
            "{p99:?}"
        );
        assert_eq!(window.drain_p99(), (None, 0));
        window.record(Duration::from_millis(40));
        let (p99, _) = window.drain_p99();
        assert!(
            p99.unwrap() >= Duration::from_millis(40) && p99.unwrap() <= Duration::from_millis(48)
        );
    }
}
