//! A per-module latency window the control loop can read as "p99 since the last tick": a
//! fixed array of logarithmic buckets, incremented with relaxed atomics on the request path
//! and drained by the control loop. No locks, no allocation per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Quarter-octave buckets: each power of two of microseconds is split in four, so a
/// percentile is known to within about 19%.
const STEPS: usize = 4;
const BUCKETS: usize = 40 * STEPS;

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
        self.counts[bucket(micros).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Empties the window; returns the 99th percentile of what it held (the upper edge of its
    /// bucket) and how many it held.
    pub fn drain_p99(&self) -> (Option<Duration>, u64) {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return (None, 0);
        }
        let rank = total - total / 100;
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return (Some(Duration::from_micros(upper_edge(bucket))), total);
            }
        }
        (Some(Duration::from_micros(upper_edge(BUCKETS - 1))), total)
    }
}

/// Bucket of a latency in µs: octave (bit length) times four, plus the two bits below the
/// leading one.
fn bucket(micros: u64) -> usize {
    if micros < 8 {
        return micros as usize;
    }
    let octave = (u64::BITS - 1 - micros.leading_zeros()) as usize;
    let quarter = ((micros >> (octave - 2)) & 0b11) as usize;
    octave * STEPS + quarter
}

/// Smallest latency (µs) above every value in `bucket`.
fn upper_edge(bucket: usize) -> u64 {
    if bucket < 8 {
        return bucket as u64 + 1;
    }
    let (octave, quarter) = (bucket / STEPS, (bucket % STEPS) as u64);
    if octave < 3 {
        return 8; // buckets 8..12 are unused: 0..8 µs have a bucket each
    }
    (1u64 << octave) + ((quarter + 1) << (octave - 2))
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

    #[test]
    fn buckets_are_ordered_and_edges_bound_them() {
        let mut previous = 0;
        for micros in (0..5000u64).chain([1 << 20, (1 << 20) + 1, u64::MAX / 2]) {
            let b = bucket(micros);
            assert!(b >= previous || micros > 5000, "bucket order at {micros}");
            previous = b;
            assert!(
                micros < upper_edge(b),
                "{micros} not below the edge of its bucket {b}"
            );
            if b > 0 {
                assert!(
                    micros >= upper_edge(b - 1),
                    "{micros} belongs above bucket {}",
                    b - 1
                );
            }
        }
    }
}
