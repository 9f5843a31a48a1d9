//! Per-version outcome counters for canary analysis: requests, 5xx, timeouts and a latency
//! histogram, cumulative, recorded with relaxed atomics when a response completes. The
//! rollout controller differences two snapshots to get a step's window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spark_rollout::VersionWindow;
use spark_rollout::stats::{LATENCY_BUCKETS, bucket};

#[derive(Debug)]
pub struct VersionCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    latency: Vec<AtomicU64>,
}

impl Default for VersionCounters {
    fn default() -> Self {
        VersionCounters {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            latency: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl VersionCounters {
    /// One finished request: its status and how long it took.
    pub fn record(&self, status: u16, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if status == 504 {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let micros = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.latency[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> VersionWindow {
        VersionWindow {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            latency: self
                .latency
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            baseline_code: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_timeouts_and_latency() {
        let c = VersionCounters::default();
        c.record(200, Duration::from_millis(2));
        c.record(500, Duration::from_millis(3));
        c.record(504, Duration::from_secs(1));
        let w = c.snapshot();
        assert_eq!((w.requests, w.errors, w.timeouts), (3, 2, 1));
        assert_eq!(w.latency.iter().sum::<u64>(), 3);
        assert!(w.latency_ms(1.0).unwrap() >= 1000.0);
    }
}
