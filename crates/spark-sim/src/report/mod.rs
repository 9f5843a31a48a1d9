//! The B4 report: what was measured (serde JSON), a plain-text table, SVG plots and the summary
//! line.
//!
//! Decision worth knowing: the report holds results only, never wall-clock times or paths, so
//! the same trace always gives byte-identical JSON; timing belongs to the caller. A ratio whose
//! baseline is 0 is 1 when Spark is 0 too and undefined (`None`, JSON `null`) otherwise.

mod svg;
mod table;

pub use svg::{cdf_svg, cold_pct_cdf_svg, tradeoff_svg};
pub use table::render_table;

use serde::{Deserialize, Serialize};

use crate::b4::scored_cold_pct;
use crate::replay::{AppOutcome, Horizon, PeriodScore, Scores, score};
use crate::trace::TraceSet;

/// The trace replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    /// Applications.
    pub apps: usize,
    /// Trace length, minutes.
    pub minutes: usize,
    /// Calls in the whole trace.
    pub invocations: u64,
    /// Scoring starts at this minute (policies learn from minute 0).
    pub scored_from_min: f64,
}

impl TraceSummary {
    /// Summary of `trace` scored from `horizon.split`.
    pub fn of(trace: &TraceSet, horizon: Horizon) -> Self {
        TraceSummary {
            apps: trace.apps.len(),
            minutes: trace.minutes,
            invocations: trace.invocations(),
            scored_from_min: horizon.split,
        }
    }
}

/// One policy's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyResult {
    /// Display name.
    pub name: String,
    /// Spark's budget, for Spark runs.
    pub budget: Option<f64>,
    /// Whole-trace and scored figures.
    pub scores: Scores,
    /// Per-application cold-start % in the scored part (apps with calls), ascending.
    pub scored_cold_pct: Vec<f64>,
}

impl PolicyResult {
    /// Figures of one replay.
    pub fn new(name: &str, budget: Option<f64>, outcomes: &[AppOutcome]) -> Self {
        PolicyResult {
            name: name.to_owned(),
            budget,
            scores: score(outcomes),
            scored_cold_pct: scored_cold_pct(outcomes),
        }
    }
}

/// One point of Spark's trade-off curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The budget.
    pub budget: f64,
    /// Figures of the scored part.
    pub scored: PeriodScore,
    /// Figures of the whole trace.
    pub whole: PeriodScore,
}

impl CurvePoint {
    /// A point from a budget and its scores.
    pub fn new(budget: f64, scores: &Scores) -> Self {
        CurvePoint {
            budget,
            scored: scores.scored,
            whole: scores.whole,
        }
    }
}

/// Spark at one baseline's wasted memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matched {
    /// The baseline's name.
    pub baseline: String,
    /// The baseline's scored figures.
    pub baseline_scored: PeriodScore,
    /// Spark at the matched budget.
    pub spark: PolicyResult,
    /// Spark's scored p75 / the baseline's.
    pub p75_ratio: Option<f64>,
    /// Spark's scored wasted memory / the baseline's.
    pub mem_ratio: Option<f64>,
    /// Spark's scored cold starts / the baseline's.
    pub cold_ratio: Option<f64>,
}

impl Matched {
    /// Ratios of `spark` to `baseline` (scored part).
    pub fn new(baseline: &PolicyResult, spark: PolicyResult) -> Self {
        let (b, s) = (baseline.scores.scored, spark.scores.scored);
        Matched {
            baseline: baseline.name.clone(),
            baseline_scored: b,
            p75_ratio: ratio(s.p75, b.p75),
            mem_ratio: ratio(s.wasted_mb_min, b.wasted_mb_min),
            cold_ratio: ratio(s.cold_starts as f64, b.cold_starts as f64),
            spark,
        }
    }
}

/// `a / b`, with `0 / 0 = 1` and `a / 0` undefined.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    match (a == 0.0, b == 0.0) {
        (true, true) => Some(1.0),
        (false, true) => None,
        _ => Some(a / b),
    }
}

/// Everything B4 measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The trace.
    pub trace: TraceSummary,
    /// Baselines, oracle and Spark at the matched budgets.
    pub policies: Vec<PolicyResult>,
    /// Spark's trade-off curve.
    pub curve: Vec<CurvePoint>,
    /// Spark matched to each baseline's wasted memory.
    pub matched: Vec<Matched>,
    /// Every member of the hybrid family, and Spark at its wasted memory (scored part).
    #[serde(default)]
    pub family: Vec<Matched>,
    /// Spark with its budget chosen to match each baseline's waste before the scored part (as
    /// a live node must), scored on the scored part.
    #[serde(default)]
    pub calibrated: Vec<Matched>,
}

impl Report {
    /// The member of the hybrid family Spark does worst against at its memory (highest p75
    /// ratio; an undefined ratio, Spark above a baseline at 0, counts as the highest).
    pub fn best_hybrid(&self) -> Option<&Matched> {
        let key = |m: &Matched| m.p75_ratio.unwrap_or(f64::INFINITY);
        self.family.iter().max_by(|a, b| key(a).total_cmp(&key(b)))
    }

    /// Spark calibrated on the first part against the baseline named `name`.
    pub fn calibrated_to(&self, name: &str) -> Option<&Matched> {
        self.calibrated.iter().find(|m| m.baseline == name)
    }

    /// The policy named `name`.
    pub fn policy(&self, name: &str) -> Option<&PolicyResult> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// Spark matched to the baseline named `name`.
    pub fn matched_to(&self, name: &str) -> Option<&Matched> {
        self.matched.iter().find(|m| m.baseline == name)
    }

    /// The summary line (scored part), starting `B4:` with the keys BENCHMARKS.md names first.
    pub fn summary_line(&self) -> String {
        let p75 = |name: &str| self.policy(name).map_or(f64::NAN, |p| p.scores.scored.p75);
        let m = |name: &str, f: fn(&Matched) -> Option<f64>| {
            self.matched_to(name).and_then(f).unwrap_or(f64::INFINITY)
        };
        let keys: [(&str, f64); 14] = [
            ("p75_ratio_vs_hybrid", m("hybrid", |x| x.p75_ratio)),
            ("mem_ratio_vs_hybrid", m("hybrid", |x| x.mem_ratio)),
            ("p75_ratio_vs_fixed10", m("fixed-10min", |x| x.p75_ratio)),
            ("mem_ratio_vs_fixed10", m("fixed-10min", |x| x.mem_ratio)),
            ("p75_hybrid", p75("hybrid")),
            ("p75_fixed10", p75("fixed-10min")),
            ("p75_oracle", p75("oracle")),
            (
                "p75_spark_at_hybrid",
                m("hybrid", |x| Some(x.spark.scores.scored.p75)),
            ),
            (
                "p75_spark_at_fixed10",
                m("fixed-10min", |x| Some(x.spark.scores.scored.p75)),
            ),
            ("cold_ratio_vs_hybrid", m("hybrid", |x| x.cold_ratio)),
            ("cold_ratio_vs_fixed10", m("fixed-10min", |x| x.cold_ratio)),
            (
                "mean_spark_at_hybrid",
                m("hybrid", |x| Some(x.spark.scores.scored.mean)),
            ),
            (
                "mean_hybrid",
                self.policy("hybrid")
                    .map_or(f64::NAN, |p| p.scores.scored.mean),
            ),
            (
                "apps_scored",
                self.policy("oracle")
                    .map_or(f64::NAN, |p| p.scores.scored.apps_scored as f64),
            ),
        ];
        let best = self.best_hybrid();
        let b = |f: fn(&Matched) -> Option<f64>| best.and_then(f).unwrap_or(f64::INFINITY);
        let c = |name: &str, f: fn(&Matched) -> Option<f64>| {
            self.calibrated_to(name)
                .and_then(f)
                .unwrap_or(f64::INFINITY)
        };
        let more: [(&str, f64); 7] = [
            ("p75_ratio_vs_best_hybrid", b(|x| x.p75_ratio)),
            ("mem_ratio_vs_best_hybrid", b(|x| x.mem_ratio)),
            ("p75_best_hybrid", b(|x| Some(x.baseline_scored.p75))),
            ("cold_ratio_vs_best_hybrid", b(|x| x.cold_ratio)),
            (
                "p75_ratio_vs_hybrid_calibrated",
                c("hybrid", |x| x.p75_ratio),
            ),
            (
                "mem_ratio_vs_hybrid_calibrated",
                c("hybrid", |x| x.mem_ratio),
            ),
            (
                "p75_ratio_vs_fixed10_calibrated",
                c("fixed-10min", |x| x.p75_ratio),
            ),
        ];
        let mut body: Vec<String> = keys
            .iter()
            .chain(&more)
            .map(|(k, v)| format!("{k}={}", fmt_num(*v)))
            .collect();
        if let Some(m) = best {
            body.push(format!("best_hybrid={}", m.baseline));
        }
        format!("B4: {}", body.join(" "))
    }
}

/// Two decimals below 1000, integers above.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        format!("{v}")
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
