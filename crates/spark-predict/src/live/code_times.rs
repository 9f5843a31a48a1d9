//! How long a component's code takes to load, or to instantiate, learned from every time it
//! was seen: the value of keeping a module loaded (or an instance ready) is the time it saves,
//! so one slow measurement (a load that ran while the node was busy) must not make a module
//! look many times dearer than another built from the same code.
//!
//! Decision worth knowing: the estimate is kept per code digest, not per module, because the
//! cost is the code's (modules built from one component load the same bytes and instantiate
//! the same image) and pooling gives it more samples; and it is a geometric mean
//! (exponentially weighted once it has a few samples), because timing noise is
//! multiplicative: a load preempted on a busy core takes ten times as long, not ten
//! milliseconds more.

use std::collections::HashMap;

/// Samples after which older loads start to weigh less (the mean becomes exponential).
const FULL_WEIGHT_SAMPLES: u32 = 8;

/// Learned times of one kind (loads, or instantiations), per code digest.
#[derive(Debug, Clone, Default)]
pub struct CodeTimes {
    by_code: HashMap<String, LogMean>,
}

#[derive(Debug, Clone, Copy)]
struct LogMean {
    mean_ln: f64,
    samples: u32,
}

impl CodeTimes {
    /// An estimator with nothing learned.
    pub fn new() -> CodeTimes {
        CodeTimes::default()
    }

    /// One sample of `code`: it took (or a reload would take) `ms`.
    pub fn observe(&mut self, code: &str, ms: f64) {
        if !ms.is_finite() || ms < 0.0 {
            return;
        }
        let ln = ms.max(1e-3).ln();
        match self.by_code.get_mut(code) {
            Some(m) => {
                m.samples = m.samples.saturating_add(1);
                let weight = 1.0 / f64::from(m.samples.min(FULL_WEIGHT_SAMPLES));
                m.mean_ln += weight * (ln - m.mean_ln);
            }
            None => {
                self.by_code.insert(
                    code.to_owned(),
                    LogMean {
                        mean_ln: ln,
                        samples: 1,
                    },
                );
            }
        }
    }

    /// The learned time of `code`, ms, if any sample of it was seen.
    pub fn estimate(&self, code: &str) -> Option<f64> {
        self.by_code.get(code).map(|m| m.mean_ln.exp())
    }

    /// Forgets codes `keep` says no module uses any more.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.by_code.retain(|code, _| keep(code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slow_load_does_not_make_the_code_look_dear() {
        let mut times = CodeTimes::new();
        assert_eq!(times.estimate("a"), None);
        times.observe("a", 1.0);
        assert!((times.estimate("a").unwrap() - 1.0).abs() < 1e-9);
        for _ in 0..4 {
            times.observe("a", 1.0);
        }
        // A load 20x slower than the others (a busy core) moves the estimate by 1.6x, not 4.8x.
        times.observe("a", 20.0);
        let after = times.estimate("a").unwrap();
        assert!((1.5..1.7).contains(&after), "{after}");
        // Other code is learned apart.
        times.observe("b", 40.0);
        assert!((times.estimate("b").unwrap() - 40.0).abs() < 1e-9);
    }

    #[test]
    fn the_estimate_follows_a_lasting_change() {
        let mut times = CodeTimes::new();
        for _ in 0..50 {
            times.observe("a", 2.0);
        }
        // The node became slower for good (a bigger tier, a slower disk): after 30 loads the
        // estimate has moved nearly all the way.
        for _ in 0..30 {
            times.observe("a", 8.0);
        }
        let now = times.estimate("a").unwrap();
        assert!((7.0..8.0).contains(&now), "{now}");
        times.retain(|code| code != "a");
        assert_eq!(times.estimate("a"), None);
        // Nonsense is ignored.
        times.observe("c", f64::NAN);
        times.observe("c", -1.0);
        assert_eq!(times.estimate("c"), None);
    }
}
