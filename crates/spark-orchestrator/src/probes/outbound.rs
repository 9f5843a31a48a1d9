//! Passive latency: the round trips Spark observes on guests' outbound requests.
//!
//! The runtime holds an [`OutboundLatency`] handle and calls [`OutboundLatency::record`] on the
//! request path; each probe sample drains the window into a p90 and smooths it. The decision
//! worth knowing: the window is a fixed ring of the most recent [`WINDOW_CAPACITY`] records
//! behind a mutex held only for a push, so recording never allocates after the first window
//! and a burst cannot grow memory.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::network::{EWMA_ALPHA, ewma};

/// Most records one window keeps; older ones in the same window are overwritten.
pub const WINDOW_CAPACITY: usize = 1024;

/// Cloneable handle the runtime records observed outbound latencies into.
#[derive(Debug, Clone, Default)]
pub struct OutboundLatency {
    window: Arc<Mutex<Window>>,
}

#[derive(Debug, Default)]
struct Window {
    micros: Vec<u64>,
    /// Records since the last drain (may exceed the kept ones).
    count: u64,
}

/// Outbound latency as of one sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboundReading {
    /// Requests recorded since the previous sample.
    pub count: u64,
    /// p90 of those requests (nearest rank), if any.
    pub p90_ms: Option<f64>,
    /// Exponentially weighted mean of the per-sample p90s; windows without requests leave it
    /// unchanged.
    pub ewma_p90_ms: Option<f64>,
}

impl OutboundLatency {
    /// Records one observed outbound round trip. Cheap and never blocks for long.
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut window = self.lock();
        let slot = (window.count % WINDOW_CAPACITY as u64) as usize;
        match window.micros.get_mut(slot) {
            Some(kept) => *kept = micros,
            None => window.micros.push(micros),
        }
        window.count += 1;
    }

    /// Takes the current window's records and its count, leaving an empty window.
    fn drain(&self) -> (Vec<u64>, u64) {
        let mut window = self.lock();
        let count = std::mem::take(&mut window.count);
        let kept = window.micros.clone();
        window.micros.clear();
        (kept, count)
    }

    fn lock(&self) -> MutexGuard<'_, Window> {
        // A panic while holding the lock cannot leave the window inconsistent.
        self.window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The probe side: drains the handle once per sample.
#[derive(Debug, Default)]
pub(crate) struct OutboundProbe {
    handle: OutboundLatency,
    ewma_p90_ms: Option<f64>,
}

impl OutboundProbe {
    pub(super) fn handle(&self) -> OutboundLatency {
        self.handle.clone()
    }

    pub(super) fn sample(&mut self) -> OutboundReading {
        let (mut micros, count) = self.handle.drain();
        let p90_ms = p90(&mut micros).map(|us| us as f64 / 1000.0);
        if let Some(p90) = p90_ms {
            self.ewma_p90_ms = Some(ewma(self.ewma_p90_ms, p90, EWMA_ALPHA));
        }
        OutboundReading {
            count,
            p90_ms,
            ewma_p90_ms: self.ewma_p90_ms,
        }
    }
}

/// Nearest-rank 90th percentile.
fn p90(values: &mut [u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let rank = (values.len() * 9).div_ceil(10) - 1;
    let (_, value, _) = values.select_nth_unstable(rank);
    Some(*value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p90_is_nearest_rank() {
        let mut values: Vec<u64> = (1..=10).collect();
        assert_eq!(p90(&mut values), Some(9));
        assert_eq!(p90(&mut [7]), Some(7));
        assert_eq!(p90(&mut []), None);
    }

    #[test]
    fn window_keeps_the_latest_records_and_counts_all() {
        let mut probe = OutboundProbe::default();
        let handle = probe.handle();
        for _ in 0..WINDOW_CAPACITY {
            handle.record(Duration::from_millis(500));
        }
        for _ in 0..WINDOW_CAPACITY {
            handle.record(Duration::from_millis(10));
        }
        let reading = probe.sample();
        assert_eq!(reading.count, 2 * WINDOW_CAPACITY as u64);
        assert_eq!(reading.p90_ms, Some(10.0));
        let empty = probe.sample();
        assert_eq!(
            (empty.count, empty.p90_ms, empty.ewma_p90_ms),
            (0, None, Some(10.0))
        );
    }
}
