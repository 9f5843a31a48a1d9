//! Benchmark B4: every policy on one trace, Spark matched to each baseline's wasted memory.
//!
//! Decision worth knowing: Spark is compared with a baseline at the baseline's own wasted
//! memory (second half), found on its trade-off curve rather than with a fixed setting: one
//! replay scores a log-spaced grid of budgets ([`crate::replay::sweep`]), a second one refines
//! between the two grid budgets around the target, and the largest budget whose waste does not
//! exceed the target is then replayed on its own through the ordinary [`Policy`] path, which is
//! what the report shows (so the matched figures come from the same code a node runs).

use crate::policy::{FixedKeepAlive, Hybrid, Oracle, Spark, SparkFamily};
use crate::replay::{AppOutcome, Horizon, PeriodScore, Policy, score, simulate, sweep};
use crate::report::{CurvePoint, Matched, PolicyResult, Report, TraceSummary};
use crate::trace::TraceSet;

/// Options of a B4 run.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Where scoring starts, as a fraction of the trace (B4: 0.5, the second half).
    pub scored_from: f64,
    /// Smallest budget of the grid.
    pub budget_min: f64,
    /// Largest budget of the grid.
    pub budget_max: f64,
    /// Grid points per decade of budget.
    pub points_per_decade: usize,
    /// Points of the refining replay between two grid budgets.
    pub refine_points: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            scored_from: 0.5,
            budget_min: 1e2,
            budget_max: 1e11,
            points_per_decade: 12,
            refine_points: 24,
        }
    }
}

/// Runs B4 on `trace`: fixed 10-minute keep-alive, hybrid histogram, oracle, Spark's curve and
/// Spark matched to the hybrid's and to fixed-10's wasted memory.
pub fn run_b4(trace: &TraceSet, opts: &SimOptions) -> Report {
    let horizon = Horizon::of(trace, opts.scored_from);
    let fixed = run(trace, &FixedKeepAlive::default(), horizon, "fixed-10min");
    let hybrid = run(trace, &Hybrid::default(), horizon, "hybrid");
    let oracle = run(trace, &Oracle::new(trace), horizon, "oracle");
    let grid = log_grid(opts.budget_min, opts.budget_max, opts.points_per_decade);
    let curve = curve(trace, &grid, horizon);
    let at_hybrid = match_baseline(trace, &hybrid, &curve, opts, horizon);
    let at_fixed = match_baseline(trace, &fixed, &curve, opts, horizon);
    Report::new(
        TraceSummary::of(trace, horizon),
        vec![
            fixed,
            hybrid,
            oracle,
            at_hybrid.spark.clone(),
            at_fixed.spark.clone(),
        ],
        curve,
        vec![at_hybrid, at_fixed],
    )
}

/// Replays one policy and keeps its per-application figures.
pub fn run<P: Policy>(trace: &TraceSet, policy: &P, horizon: Horizon, name: &str) -> PolicyResult {
    PolicyResult::new(name, None, &simulate(trace, policy, horizon))
}

/// `points_per_decade` log-spaced budgets from `min` to `max`.
pub fn log_grid(min: f64, max: f64, points_per_decade: usize) -> Vec<f64> {
    let decades = (max / min).log10();
    let n = (decades * points_per_decade as f64).ceil().max(1.0) as usize;
    (0..=n)
        .map(|i| min * (max / min).powf(i as f64 / n as f64))
        .collect()
}

/// Spark's trade-off curve over `budgets`, from one replay.
pub fn curve(trace: &TraceSet, budgets: &[f64], horizon: Horizon) -> Vec<CurvePoint> {
    let runs = sweep(trace, &SparkFamily, budgets, horizon);
    budgets
        .iter()
        .zip(&runs)
        .map(|(&b, r)| CurvePoint::new(b, &score(r)))
        .collect()
}

/// Spark at the largest budget whose scored waste does not exceed `baseline`'s.
pub fn match_baseline(
    trace: &TraceSet,
    baseline: &PolicyResult,
    curve: &[CurvePoint],
    opts: &SimOptions,
    horizon: Horizon,
) -> Matched {
    let target = baseline.scores.scored.wasted_mb_min;
    // A hair below the target, so that the single replay (summing in another order) stays under.
    let under = |p: &PeriodScore| p.wasted_mb_min <= target * (1.0 - 1e-9);
    let below = curve.iter().rposition(|c| under(&c.scored));
    let budget = match below {
        None => curve.first().map_or(0.0, |c| c.budget),
        Some(i) if i + 1 == curve.len() => curve[i].budget,
        Some(i) => {
            let (lo, hi) = (curve[i].budget, curve[i + 1].budget);
            let fine: Vec<f64> = (0..=opts.refine_points)
                .map(|j| lo * (hi / lo).powf(j as f64 / opts.refine_points as f64))
                .collect();
            let runs = sweep(trace, &SparkFamily, &fine, horizon);
            let k = runs
                .iter()
                .rposition(|r| under(&score(r).scored))
                .unwrap_or(0);
            fine[k]
        }
    };
    let name = format!("spark@{}", baseline.name);
    let spark = PolicyResult::new(
        &name,
        Some(budget),
        &simulate(trace, &Spark { budget }, horizon),
    );
    Matched::new(baseline, spark)
}

/// Per-application cold-start percentages of the scored period (apps with calls), ascending.
pub fn scored_cold_pct(outcomes: &[AppOutcome]) -> Vec<f64> {
    let mut v: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.scored.invocations > 0)
        .map(|o| 100.0 * o.scored.cold as f64 / o.scored.invocations as f64)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}
