//! How robust B4's ratios are: Spark against the baselines on disjoint subsets of a trace's
//! applications, on the trace's two halves swapped in time, on the trace with its calls placed
//! at random within their minutes (B4's even placement makes sparse apps' gaps whole minutes,
//! a precision the trace does not record), and on synthetic traces with known structure; the
//! spread (min / median / max) of each ratio over them.
//!
//! Decision worth knowing: the reverse time slice (learn on hours 12-24, score hours 0-12) is
//! the trace *rotated* by half its length, not played backwards: minute `m` moves to
//! `(m + half) mod length`, so every policy still learns forwards in time and is scored on the
//! part it has not seen. On a one-day trace that reads as "the afternoon of day 1, then the
//! morning of day 2, assumed like day 1's"; timers whose period divides a day keep their phase
//! across the seam (the original end of day joins its start), and the seam is the only
//! approximation. Subsets are halves by a salted hash of an app's minute counts, so identical
//! apps (the shared trace repeats some) always land in the same half.

use serde::{Deserialize, Serialize};

use crate::b4::{SimOptions, run_b4};
use crate::report::{Report, fmt_num};
use crate::synth;
use crate::trace::TraceSet;

/// What the robustness run covers.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustOptions {
    /// Random halves of the apps (one per salt).
    pub app_halves: u64,
    /// Synthetic traces (one per seed).
    pub synthetic: u64,
    /// Apps per synthetic trace.
    pub synthetic_apps: usize,
}

impl Default for RobustOptions {
    fn default() -> Self {
        RobustOptions {
            app_halves: 4,
            synthetic: 4,
            synthetic_apps: 600,
        }
    }
}

/// Spark's ratios on one variant of the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// What was replayed.
    pub name: String,
    /// Applications in it.
    pub apps: usize,
    /// Scored p75 ratio at the hybrid's memory.
    pub vs_hybrid: Option<f64>,
    /// At fixed-10's memory.
    pub vs_fixed10: Option<f64>,
    /// At the memory of the hybrid family member Spark does worst against.
    pub vs_best_hybrid: Option<f64>,
    /// That member.
    pub best_hybrid: String,
    /// With the budget calibrated on the part before scoring, against the hybrid.
    pub vs_hybrid_calibrated: Option<f64>,
    /// The headline summary line of the run.
    pub summary: String,
}

impl Case {
    fn of(name: String, apps: usize, r: &Report) -> Case {
        let m = |n: &str| r.matched_to(n).and_then(|m| m.p75_ratio);
        let best = r.best_hybrid();
        Case {
            name,
            apps,
            vs_hybrid: m("hybrid"),
            vs_fixed10: m("fixed-10min"),
            vs_best_hybrid: best.and_then(|b| b.p75_ratio),
            best_hybrid: best.map_or_else(String::new, |b| b.baseline.clone()),
            vs_hybrid_calibrated: r.calibrated_to("hybrid").and_then(|m| m.p75_ratio),
            summary: r.summary_line(),
        }
    }
}

/// Min, median and max of a ratio over the cases (an undefined ratio counts as infinite).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; NaNs for none.
    pub fn of(values: impl Iterator<Item = Option<f64>>) -> Spread {
        let mut v: Vec<f64> = values.map(|x| x.unwrap_or(f64::INFINITY)).collect();
        if v.is_empty() {
            return Spread {
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            min: v[0],
            median,
            max: v[n - 1],
        }
    }
}

/// Reads one ratio of a case.
type Ratio = fn(&Case) -> Option<f64>;

/// Every case and the spreads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Robustness {
    /// The variants replayed.
    pub cases: Vec<Case>,
}

impl Robustness {
    /// The spread of one ratio over the cases whose name starts with `prefix` ("" for all).
    pub fn spread(&self, prefix: &str, f: Ratio) -> Spread {
        Spread::of(
            self.cases
                .iter()
                .filter(|c| c.name.starts_with(prefix))
                .map(f),
        )
    }

    /// The table and the summary line (`B4-robustness: key=value ...`).
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let r = |x: Option<f64>| x.map_or("undefined".to_owned(), fmt_num);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<44} {:>5} {:>9} {:>9} {:>9} {:>9}  best hybrid member",
            "case (Spark's p75 ratio at equal memory)",
            "apps",
            "hybrid",
            "fixed-10",
            "best hyb",
            "calibr"
        );
        for c in &self.cases {
            let _ = writeln!(
                out,
                "{:<44} {:>5} {:>9} {:>9} {:>9} {:>9}  {}",
                c.name,
                c.apps,
                r(c.vs_hybrid),
                r(c.vs_fixed10),
                r(c.vs_best_hybrid),
                r(c.vs_hybrid_calibrated),
                c.best_hybrid
            );
        }
        let mut keys = Vec::new();
        for (scope, prefix) in [("all", ""), ("real", "real"), ("synthetic", "synthetic")] {
            let fs: [(&str, Ratio); 4] = [
                ("vs_hybrid", |c| c.vs_hybrid),
                ("vs_fixed10", |c| c.vs_fixed10),
                ("vs_best_hybrid", |c| c.vs_best_hybrid),
                ("vs_hybrid_calibrated", |c| c.vs_hybrid_calibrated),
            ];
            for (name, f) in fs {
                let s = self.spread(prefix, f);
                let _ = writeln!(
                    out,
                    "{scope:<9} p75 ratio {name:<21} min {} median {} max {}",
                    fmt_num(s.min),
                    fmt_num(s.median),
                    fmt_num(s.max)
                );
                if scope == "all" {
                    keys.push(format!("{name}_min={}", fmt_num(s.min)));
                    keys.push(format!("{name}_median={}", fmt_num(s.median)));
                    keys.push(format!("{name}_max={}", fmt_num(s.max)));
                }
            }
        }
        let _ = writeln!(
            out,
            "B4-robustness: cases={} {}",
            self.cases.len(),
            keys.join(" ")
        );
        out
    }
}

/// Runs B4 on every variant of `trace` (see the module doc); `progress` is called after each.
pub fn robustness(
    trace: &TraceSet,
    sim: &SimOptions,
    opts: &RobustOptions,
    mut progress: impl FnMut(&Case),
) -> Robustness {
    let mut cases = Vec::new();
    let mut add = |name: String, t: &TraceSet| {
        let c = Case::of(name, t.apps.len(), &run_b4(t, sim));
        progress(&c);
        cases.push(c);
    };
    add("real: learn hours 0-12, score 12-24".to_owned(), trace);
    add(
        "real: learn hours 12-24, score 0-12 (rotated)".to_owned(),
        &rotate_half(trace),
    );
    add(
        "real: calls at random within their minute".to_owned(),
        &trace.scattered(1),
    );
    for salt in 0..opts.app_halves {
        add(
            format!("real: apps half {salt} (salted hash)"),
            &app_half(trace, salt),
        );
    }
    for seed in 1..=opts.synthetic {
        add(
            format!("synthetic: mixed seed {seed}"),
            &synth::mixed(opts.synthetic_apps, trace.minutes.max(2) as u32, seed),
        );
    }
    Robustness { cases }
}

/// The apps of `trace` whose salted hash is even: one random half, disjoint from the odd one.
pub fn app_half(trace: &TraceSet, salt: u64) -> TraceSet {
    let mut t = trace.clone();
    t.apps.retain(|a| hash(&a.counts, salt).is_multiple_of(2));
    t
}

/// `trace` rotated by half its length: the second half first (see the module doc).
pub fn rotate_half(trace: &TraceSet) -> TraceSet {
    let len = trace.minutes as u32;
    let half = len - len / 2;
    let mut t = trace.clone();
    for app in &mut t.apps {
        for c in &mut app.counts {
            c.0 = (c.0 + half) % len.max(1);
        }
        app.counts.sort_unstable();
    }
    t
}

/// FNV-1a over an app's counts, salted.
fn hash(counts: &[(u32, u32)], salt: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &(m, c) in counts {
        for b in m.to_le_bytes().into_iter().chain(c.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::AppTrace;

    fn app(counts: Vec<(u32, u32)>) -> AppTrace {
        AppTrace {
            placement: Default::default(),
            id: "a".into(),
            functions: 1,
            counts,
            duration_ms: 0.0,
            memory_mb: 1.0,
        }
    }

    #[test]
    fn rotation_puts_the_second_half_first_and_keeps_every_call() {
        let t = TraceSet {
            minutes: 10,
            apps: vec![app(vec![(1, 2), (6, 1), (9, 4)])],
        };
        let r = rotate_half(&t);
        assert_eq!(r.apps[0].counts, vec![(1, 1), (4, 4), (6, 2)]);
        assert_eq!(rotate_half(&r), t, "twice is the identity");
    }

    #[test]
    fn halves_are_disjoint_across_salts_complements() {
        let t = synth::mixed(50, 600, 3);
        let h = app_half(&t, 1);
        assert!(h.apps.len() > 10 && h.apps.len() < 40, "{}", h.apps.len());
        assert_ne!(app_half(&t, 1), app_half(&t, 2));
    }

    #[test]
    fn spread_counts_undefined_as_infinite() {
        let s = Spread::of([Some(0.5), None, Some(0.2), Some(0.3)].into_iter());
        assert_eq!((s.min, s.median, s.max), (0.2, 0.4, f64::INFINITY));
    }
}
