//! Benchmark B4: every policy on one trace, Spark matched to each baseline's wasted memory.
//!
//! Decision worth knowing: Spark is compared with a baseline at the baseline's own wasted
//! memory, found on its trade-off curve rather than with a fixed setting. One replay scores a
//! log-spaced grid of budgets ([`crate::replay::sweep`]); a second one refines, for every
//! target at once, between the two grid budgets around it; the largest budget whose waste does
//! not exceed the target is chosen (waste is monotone in the budget). The targets are each
//! baseline's second-half waste, each member of the hybrid family's ([`hybrid_family`]), and,
//! for the *calibrated* matches, the baselines' first-half waste: a live node can only set its
//! budget from what it has seen, so that budget is chosen on the first half and the second half
//! is scored at it. The two headline matches (hybrid, fixed-10) are then replayed on their own
//! through the ordinary [`Policy`] path (so those figures come from the same code a node runs);
//! the family and calibrated matches are read from one more sweep at exactly their budgets
//! (which gives the same outcomes, as a test of the sweep checks).

use crate::policy::{FixedKeepAlive, Hybrid, Oracle, Spark, SparkFamily, hybrid_family};
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

/// Runs B4 on `trace`: fixed 10-minute keep-alive, hybrid histogram (and its family), oracle,
/// Spark's curve, and Spark matched to the baselines' wasted memory (second half, and
/// calibrated on the first half).
pub fn run_b4(trace: &TraceSet, opts: &SimOptions) -> Report {
    let horizon = Horizon::of(trace, opts.scored_from);
    let fixed = run(trace, &FixedKeepAlive::default(), horizon, "fixed-10min");
    let hybrid = run(trace, &Hybrid::default(), horizon, "hybrid");
    let oracle = run(trace, &Oracle::new(trace), horizon, "oracle");
    let family: Vec<PolicyResult> = hybrid_family()
        .iter()
        .map(|(name, h)| run(trace, h, horizon, name))
        .collect();
    let grid = log_grid(opts.budget_min, opts.budget_max, opts.points_per_decade);
    let curve = curve(trace, &grid, horizon);
    let mut targets = vec![
        Target::scored(&hybrid),
        Target::scored(&fixed),
        Target::first_part(&hybrid),
        Target::first_part(&fixed),
    ];
    targets.extend(family.iter().map(Target::scored));
    let budgets = match_budgets(trace, &curve, &targets, opts, horizon);
    let at_hybrid = replay_matched(trace, &hybrid, budgets[0], horizon);
    let at_fixed = replay_matched(trace, &fixed, budgets[1], horizon);
    let mut names = vec![
        "spark@hybrid-calibrated".to_owned(),
        "spark@fixed-10min-calibrated".to_owned(),
    ];
    names.extend(family.iter().map(|f| format!("spark@{}", f.name)));
    let mut swept = spark_at(trace, &budgets[2..], &names, horizon).into_iter();
    let calibrated = [&hybrid, &fixed]
        .into_iter()
        .zip(swept.by_ref())
        .map(|(b, s)| Matched::new(b, s))
        .collect();
    let family = family
        .iter()
        .zip(swept)
        .map(|(b, s)| Matched::new(b, s))
        .collect();
    Report {
        trace: TraceSummary::of(trace, horizon),
        policies: vec![
            fixed,
            hybrid,
            oracle,
            at_hybrid.spark.clone(),
            at_fixed.spark.clone(),
        ],
        curve,
        matched: vec![at_hybrid, at_fixed],
        family,
        calibrated,
    }
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

/// Which part of the trace a matched waste is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The scored part (the second half in B4).
    Scored,
    /// The part before scoring starts: what a live node has seen when it sets its budget.
    FirstPart,
}

impl Basis {
    /// Wasted memory in this part, from whole-trace and scored-part figures.
    pub fn waste(self, whole: &PeriodScore, scored: &PeriodScore) -> f64 {
        match self {
            Basis::Scored => scored.wasted_mb_min,
            Basis::FirstPart => whole.wasted_mb_min - scored.wasted_mb_min,
        }
    }
}

/// A wasted memory for Spark to match, and the part it is measured on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// MB-minutes not to exceed.
    pub waste: f64,
    /// Where.
    pub basis: Basis,
}

impl Target {
    /// `baseline`'s waste in the scored part.
    pub fn scored(baseline: &PolicyResult) -> Target {
        let s = &baseline.scores;
        Target {
            waste: Basis::Scored.waste(&s.whole, &s.scored),
            basis: Basis::Scored,
        }
    }

    /// `baseline`'s waste before the scored part.
    pub fn first_part(baseline: &PolicyResult) -> Target {
        let s = &baseline.scores;
        Target {
            waste: Basis::FirstPart.waste(&s.whole, &s.scored),
            basis: Basis::FirstPart,
        }
    }

    /// Whether a point's waste is within the target (a hair below it, so that a replay summing
    /// in another order stays under).
    fn holds(&self, c: &CurvePoint) -> bool {
        self.basis.waste(&c.whole, &c.scored) <= self.waste * (1.0 - 1e-9)
    }
}

/// For each target, the largest budget whose waste does not exceed it (the smallest budget of
/// the curve when none does): the curve, refined between the grid budgets around every target
/// in one more replay.
pub fn match_budgets(
    trace: &TraceSet,
    curve: &[CurvePoint],
    targets: &[Target],
    opts: &SimOptions,
    horizon: Horizon,
) -> Vec<f64> {
    let mut fine = Vec::new();
    for t in targets {
        if let Some(i) = curve.iter().rposition(|c| t.holds(c))
            && i + 1 < curve.len()
        {
            let (lo, hi) = (curve[i].budget, curve[i + 1].budget);
            fine.extend(
                (1..opts.refine_points)
                    .map(|j| lo * (hi / lo).powf(j as f64 / opts.refine_points as f64)),
            );
        }
    }
    fine.sort_by(f64::total_cmp);
    fine.dedup();
    let mut points = curve.to_vec();
    if !fine.is_empty() {
        let runs = sweep(trace, &SparkFamily, &fine, horizon);
        points.extend(
            fine.iter()
                .zip(&runs)
                .map(|(&b, r)| CurvePoint::new(b, &score(r))),
        );
        points.sort_by(|a, b| a.budget.total_cmp(&b.budget));
    }
    targets
        .iter()
        .map(|t| match points.iter().rposition(|c| t.holds(c)) {
            Some(i) => points[i].budget,
            None => points.first().map_or(0.0, |c| c.budget),
        })
        .collect()
}

/// Spark at `budget`, replayed through the ordinary [`Policy`] path, against `baseline`.
pub fn replay_matched(
    trace: &TraceSet,
    baseline: &PolicyResult,
    budget: f64,
    horizon: Horizon,
) -> Matched {
    let name = format!("spark@{}", baseline.name);
    let spark = PolicyResult::new(
        &name,
        Some(budget),
        &simulate(trace, &Spark { budget }, horizon),
    );
    Matched::new(baseline, spark)
}

/// Spark at the largest budget whose scored waste does not exceed `baseline`'s.
pub fn match_baseline(
    trace: &TraceSet,
    baseline: &PolicyResult,
    curve: &[CurvePoint],
    opts: &SimOptions,
    horizon: Horizon,
) -> Matched {
    let budget = match_budgets(trace, curve, &[Target::scored(baseline)], opts, horizon)[0];
    replay_matched(trace, baseline, budget, horizon)
}

/// Spark at each of `budgets` (any order, repeats allowed), named `names`, from one sweep.
pub fn spark_at(
    trace: &TraceSet,
    budgets: &[f64],
    names: &[String],
    horizon: Horizon,
) -> Vec<PolicyResult> {
    let mut grid = budgets.to_vec();
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    let runs = sweep(trace, &SparkFamily, &grid, horizon);
    budgets
        .iter()
        .zip(names)
        .map(|(b, name)| {
            let k = grid.partition_point(|g| g < b);
            PolicyResult::new(name, Some(*b), &runs[k])
        })
        .collect()
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
