//! CPU shares as waits: a token bucket of CPU time.
//!
//! A module with share `s` of a node with `n` CPUs earns `s x n` CPU-seconds per second, up to a
//! small burst. Every epoch tick charges the CPU its guests used since the last charge; when the
//! bucket is in debt, the guest waits until the debt is repaid. Waiting is what makes the share
//! real (wasmtime issue 10667: a bare yield lets the scheduler run the same guest again at once).
//! Pure arithmetic on nanosecond timestamps passed in by the caller.

use std::time::Duration;

/// The bucket of one module.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareBucket {
    /// CPU nanoseconds earned per wall nanosecond.
    rate: f64,
    burst_ns: f64,
    tokens_ns: f64,
    last_ns: u64,
}

/// The most a single wait lasts, so a module whose share is raised resumes promptly.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

impl ShareBucket {
    /// A full bucket for `share` of a node with `cpus` CPUs.
    pub fn new(share: f64, cpus: f64, burst: Duration, now_ns: u64) -> ShareBucket {
        let burst_ns = burst.as_nanos() as f64;
        ShareBucket {
            rate: (share * cpus).max(1e-6),
            burst_ns,
            tokens_ns: burst_ns,
            last_ns: now_ns,
        }
    }

    /// Changes the share; what was earned so far stays.
    pub fn set_share(&mut self, share: f64, cpus: f64, now_ns: u64) {
        self.refill(now_ns);
        self.rate = (share * cpus).max(1e-6);
    }

    /// Charges `cpu_ns` used since the last charge; returns how long to wait, if in debt.
    pub fn charge(&mut self, now_ns: u64, cpu_ns: u64) -> Option<Duration> {
        self.refill(now_ns);
        self.tokens_ns -= cpu_ns as f64;
        if self.tokens_ns >= 0.0 {
            return None;
        }
        let wait = Duration::from_nanos((-self.tokens_ns / self.rate) as u64);
        Some(wait.min(MAX_WAIT))
    }

    fn refill(&mut self, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.last_ns) as f64;
        self.tokens_ns = (self.tokens_ns + elapsed * self.rate).min(self.burst_ns);
        self.last_ns = self.last_ns.max(now_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_module_that_spins_gets_its_share_over_time() {
        // 10% of a 2-CPU node: 0.2 CPU-seconds per second. Simulate one guest that runs for
        // 5 ms, then waits as told, for 10 simulated seconds.
        let mut bucket = ShareBucket::new(0.10, 2.0, Duration::from_millis(20), 0);
        let (mut now, mut used) = (0u64, 0u64);
        while now < 10_000 * MS {
            now += 5 * MS;
            used += 5 * MS;
            if let Some(wait) = bucket.charge(now, 5 * MS) {
                now += wait.as_nanos() as u64;
            }
        }
        let share = used as f64 / now as f64;
        assert!(
            (0.19..=0.215).contains(&share),
            "got {share:.3} CPUs, expected about 0.2"
        );
    }

    #[test]
    fn within_the_burst_nothing_waits() {
        let mut bucket = ShareBucket::new(0.5, 1.0, Duration::from_millis(20), 0);
        assert_eq!(bucket.charge(MS, 10 * MS), None);
        assert!(bucket.charge(2 * MS, 20 * MS).is_some());
    }

    #[test]
    fn waits_are_capped_and_a_raised_share_repays_faster() {
        let mut bucket = ShareBucket::new(0.01, 1.0, Duration::from_millis(5), 0);
        assert_eq!(bucket.charge(0, 50 * MS), Some(MAX_WAIT));
        let mut raised = bucket.clone();
        raised.set_share(1.0, 1.0, 0);
        let slow = bucket.charge(10 * MS, 0).unwrap();
        let fast = raised.charge(10 * MS, 0).unwrap_or_default();
        assert!(fast < slow, "{fast:?} vs {slow:?}");
    }
}
