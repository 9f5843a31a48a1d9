//! Deterministic synthetic traces: the invocation patterns B4 cares about, for tests and for
//! robustness checks on traces other than the one the benchmark ships.
//!
//! Decision worth knowing: a tiny seeded generator (SplitMix64) instead of a `rand` dependency,
//! so a seed names the same trace on every platform and version, and tests can assert exact
//! outcomes.

use crate::trace::{AppTrace, TraceSet};

/// SplitMix64: small, fast, and enough for synthetic traces.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Poisson count with mean `lambda` (Knuth; fine for the small means used here).
    pub fn poisson(&mut self, lambda: f64) -> u32 {
        let limit = (-lambda).exp();
        let (mut k, mut p) = (0u32, self.unit());
        while p > limit && k < 10_000 {
            k += 1;
            p *= self.unit();
        }
        k
    }
}

/// An invocation pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pattern {
    /// One call every `period` minutes at minute `phase` of each period.
    Timer {
        /// Minutes between two calls.
        period: u32,
        /// Minute of each period the call comes at.
        phase: u32,
    },
    /// A timer plus Poisson calls at `noise_per_min` (an hourly job plus manual runs).
    TimerWithNoise {
        /// Minutes between two timer calls.
        period: u32,
        /// Minute of each period the timer fires at.
        phase: u32,
        /// Mean extra calls per minute.
        noise_per_min: f64,
    },
    /// Poisson calls at `per_min`.
    Poisson {
        /// Mean calls per minute.
        per_min: f64,
    },
    /// Bursts: a burst starts with probability `start_per_min`, lasts `length` minutes with
    /// `per_min_in_burst` calls per minute on average.
    Bursty {
        /// Chance per minute, outside a burst, that one starts (0 to 1).
        start_per_min: f64,
        /// Minutes a burst lasts.
        length: u32,
        /// Mean calls per minute during a burst.
        per_min_in_burst: f64,
    },
    /// Poisson at `peak_per_min` between `from_hour` and `to_hour` of each day, else nothing.
    Diurnal {
        /// Mean calls per minute inside the active hours.
        peak_per_min: f64,
        /// First active hour of the day (0-23).
        from_hour: u32,
        /// Hour the activity stops (exclusive).
        to_hour: u32,
    },
    /// A single call at `minute`, never again.
    Once {
        /// The minute of the call, from the trace's start.
        minute: u32,
    },
}

/// Per-minute counts of `pattern` over `minutes`, as `(minute, count)` for non-empty minutes.
pub fn counts(pattern: Pattern, minutes: u32, rng: &mut Rng) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut burst_left = 0u32;
    for m in 0..minutes {
        let n = match pattern {
            Pattern::Timer { period, phase } => u32::from(m % period == phase % period),
            Pattern::TimerWithNoise {
                period,
                phase,
                noise_per_min,
            } => u32::from(m % period == phase % period) + rng.poisson(noise_per_min),
            Pattern::Poisson { per_min } => rng.poisson(per_min),
            Pattern::Bursty {
                start_per_min,
                length,
                per_min_in_burst,
            } => {
                if burst_left == 0 && rng.unit() < start_per_min {
                    burst_left = length;
                }
                if burst_left > 0 {
                    burst_left -= 1;
                    rng.poisson(per_min_in_burst)
                } else {
                    0
                }
            }
            Pattern::Diurnal {
                peak_per_min,
                from_hour,
                to_hour,
            } => {
                let hour = (m % 1440) / 60;
                if (from_hour..to_hour).contains(&hour) {
                    rng.poisson(peak_per_min)
                } else {
                    0
                }
            }
            Pattern::Once { minute } => u32::from(m == minute),
        };
        if n > 0 {
            out.push((m, n));
        }
    }
    out
}

/// A trace with one app per pattern (memory 100 MB, duration `duration_ms`).
pub fn trace(patterns: &[Pattern], minutes: u32, duration_ms: f64, seed: u64) -> TraceSet {
    let mut rng = Rng::new(seed);
    let apps = patterns
        .iter()
        .enumerate()
        .map(|(i, &p)| AppTrace {
            placement: Default::default(),
            id: format!("app{i}"),
            functions: 1,
            counts: counts(p, minutes, &mut rng),
            duration_ms,
            memory_mb: 100.0,
        })
        .collect();
    TraceSet {
        minutes: minutes as usize,
        apps,
    }
}

/// A random mix of all patterns with random parameters and memory, `apps` apps.
pub fn mixed(apps: usize, minutes: u32, seed: u64) -> TraceSet {
    let mut rng = Rng::new(seed);
    let mut set = TraceSet {
        minutes: minutes as usize,
        apps: Vec::with_capacity(apps),
    };
    for i in 0..apps {
        let pattern = random_pattern(&mut rng, minutes);
        let counts = counts(pattern, minutes, &mut rng);
        let memory_mb = 50.0 + rng.unit() * 250.0;
        let duration_ms = if rng.unit() < 0.8 {
            rng.unit() * 2_000.0
        } else {
            rng.unit() * 60_000.0
        };
        set.apps.push(AppTrace {
            placement: Default::default(),
            id: format!("app{i}-{}", kind(pattern)),
            functions: 1,
            counts,
            duration_ms,
            memory_mb,
        });
    }
    set
}

/// A short name for a pattern's kind (used in synthetic app ids).
pub fn kind(p: Pattern) -> &'static str {
    match p {
        Pattern::Timer { .. } => "timer",
        Pattern::TimerWithNoise { .. } => "timer+noise",
        Pattern::Poisson { .. } => "poisson",
        Pattern::Bursty { .. } => "bursty",
        Pattern::Diurnal { .. } => "diurnal",
        Pattern::Once { .. } => "once",
    }
}

fn random_pattern(rng: &mut Rng, minutes: u32) -> Pattern {
    let periods = [5, 10, 15, 30, 60, 120, 240, 360];
    let period = periods[rng.range(0, periods.len() as u64 - 1) as usize];
    let phase = rng.range(0, u64::from(period) - 1) as u32;
    let log_rate = |rng: &mut Rng, lo: f64, hi: f64| 10f64.powf(lo + (hi - lo) * rng.unit());
    match rng.range(0, 5) {
        0 => Pattern::Timer { period, phase },
        1 => Pattern::TimerWithNoise {
            period,
            phase,
            noise_per_min: log_rate(rng, -3.0, -1.5),
        },
        2 => Pattern::Poisson {
            per_min: log_rate(rng, -3.0, 0.5),
        },
        3 => Pattern::Bursty {
            start_per_min: log_rate(rng, -3.0, -1.5),
            length: rng.range(1, 10) as u32,
            per_min_in_burst: log_rate(rng, -0.5, 1.0),
        },
        4 => {
            let from_hour = rng.range(0, 16) as u32;
            Pattern::Diurnal {
                peak_per_min: log_rate(rng, -2.5, 0.0),
                from_hour,
                to_hour: from_hour + 8,
            }
        }
        _ => Pattern::Once {
            minute: rng.range(0, u64::from(minutes) - 1) as u32,
        },
    }
}

/// Renders invocations as CSV with the In-Vitro header (`HashFunction,HashOwner,HashApp,
/// minute_1..`), or the original one (`HashOwner,HashApp,HashFunction,Trigger,1..`).
pub fn invocations_csv(trace: &TraceSet, in_vitro: bool) -> String {
    let mut out = String::new();
    let minutes = (1..=trace.minutes).map(|m| {
        if in_vitro {
            format!("minute_{m}")
        } else {
            m.to_string()
        }
    });
    let head = if in_vitro {
        "HashFunction,HashOwner,HashApp"
    } else {
        "HashOwner,HashApp,HashFunction,Trigger"
    };
    out.push_str(head);
    for m in minutes {
        out.push(',');
        out.push_str(&m);
    }
    out.push('\n');
    for app in &trace.apps {
        let mut row = vec![0u32; trace.minutes];
        for &(m, c) in &app.counts {
            row[m as usize] = c;
        }
        let id = &app.id;
        let ids = if in_vitro {
            format!("f-{id},o-{id},{id}")
        } else {
            format!("o-{id},{id},f-{id},timer")
        };
        out.push_str(&ids);
        for c in row {
            out.push(',');
            out.push_str(&c.to_string());
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_trace_and_patterns_look_right() {
        assert_eq!(mixed(20, 600, 3), mixed(20, 600, 3));
        assert_ne!(mixed(20, 600, 3), mixed(20, 600, 4));
        let mut rng = Rng::new(1);
        let timer = counts(
            Pattern::Timer {
                period: 15,
                phase: 3,
            },
            60,
            &mut rng,
        );
        assert_eq!(timer, vec![(3, 1), (18, 1), (33, 1), (48, 1)]);
        let once = counts(Pattern::Once { minute: 7 }, 60, &mut rng);
        assert_eq!(once, vec![(7, 1)]);
        let diurnal = counts(
            Pattern::Diurnal {
                peak_per_min: 2.0,
                from_hour: 1,
                to_hour: 2,
            },
            240,
            &mut rng,
        );
        assert!(diurnal.iter().all(|&(m, _)| (60..120).contains(&m)) && diurnal.len() > 40);
    }

    #[test]
    fn poisson_mean_is_close() {
        let mut rng = Rng::new(9);
        let total: u32 = (0..10_000).map(|_| rng.poisson(0.3)).sum();
        assert!((2_800..3_200).contains(&total), "{total}");
    }
}
