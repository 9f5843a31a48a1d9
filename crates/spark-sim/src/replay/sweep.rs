//! Replaying a budgeted policy for a whole grid of budgets at once.
//!
//! Decision worth knowing: a budgeted policy's plan is a sequence of stretches, each with the
//! smallest budget at which it is loaded ([`Critical`]); its model learns from calls only, never
//! from its own decisions, and busy periods depend only on the calls. So one replay gives the
//! outcome at every budget: a stretch's waste counts for the budgets above its critical value,
//! a call is warm for the budgets above the critical value of the stretch it lands in. This
//! gives exactly what [`super::simulate`] gives budget by budget (a test checks it), at the
//! cost of one replay, and makes the outcome monotone in the budget by construction.

pub use spark_predict::policy::Critical;

use super::{AppInfo, AppOutcome, Horizon, app_info};
use crate::trace::TraceSet;

/// Per-application state of a budgeted policy.
pub trait BudgetedApp {
    /// The critical plan of one idle period, in time order, consecutive.
    type Bins<'a>: Iterator<Item = Critical>
    where
        Self: 'a;
    /// A call arrived at `t`.
    fn on_arrival(&mut self, t: f64);
    /// The instance went idle at `idle_start`.
    fn critical_plan(&mut self, idle_start: f64) -> Self::Bins<'_>;
}

/// A policy family indexed by a budget.
pub trait BudgetedPolicy: Sync {
    /// Per-application state.
    type App: BudgetedApp;
    /// State for a new application.
    fn for_app(&self, info: &AppInfo) -> Self::App;
}

/// Outcomes of every app at every budget: `result[k][app]` for `budgets[k]`.
pub fn sweep<P: BudgetedPolicy>(
    trace: &TraceSet,
    policy: &P,
    budgets: &[f64],
    horizon: Horizon,
) -> Vec<Vec<AppOutcome>> {
    debug_assert!(
        budgets.windows(2).all(|w| w[0] < w[1]),
        "budgets must ascend"
    );
    let mut result = vec![Vec::with_capacity(trace.apps.len()); budgets.len()];
    for (i, app) in trace.apps.iter().enumerate() {
        let info = app_info(i, app);
        let mut state = policy.for_app(&info);
        let per_budget = sweep_app(app.arrivals(), &info, &mut state, budgets, horizon);
        for (k, outcome) in per_budget.into_iter().enumerate() {
            result[k].push(outcome);
        }
    }
    result
}

/// Differences over the budget grid, summed at the end: entry `k` applies to budgets `k..`.
struct Ladder {
    whole_warm: Vec<i64>,
    scored_warm: Vec<i64>,
    whole_waste: Vec<f64>,
    scored_waste: Vec<f64>,
}

/// One app at every budget (see the module doc).
pub fn sweep_app(
    arrivals: impl Iterator<Item = f64>,
    info: &AppInfo,
    policy: &mut impl BudgetedApp,
    budgets: &[f64],
    horizon: Horizon,
) -> Vec<AppOutcome> {
    let n = budgets.len() + 1;
    let mut ladder = Ladder {
        whole_warm: vec![0; n],
        scored_warm: vec![0; n],
        whole_waste: vec![0.0; n],
        scored_waste: vec![0.0; n],
    };
    let (mut whole_calls, mut scored_calls) = (0u64, 0u64);
    let mut busy_end = f64::NEG_INFINITY;
    let mut seen = false;
    for t in arrivals {
        let warm_from = if t < busy_end {
            Some(0)
        } else if !seen {
            None
        } else {
            walk(
                &mut ladder,
                policy.critical_plan(busy_end),
                busy_end,
                t,
                info.memory_mb,
                budgets,
                horizon,
            )
        };
        seen = true;
        whole_calls += 1;
        let scored = t >= horizon.split;
        scored_calls += u64::from(scored);
        if let Some(k) = warm_from {
            ladder.whole_warm[k] += 1;
            if scored {
                ladder.scored_warm[k] += 1;
            }
        }
        policy.on_arrival(t);
        busy_end = busy_end.max(t + info.duration_min);
    }
    if seen && busy_end < horizon.end {
        walk(
            &mut ladder,
            policy.critical_plan(busy_end),
            busy_end,
            horizon.end,
            info.memory_mb,
            budgets,
            horizon,
        );
    }
    collect(&ladder, budgets.len(), whole_calls, scored_calls)
}

/// Walks one critical plan up to `until`; returns the first budget index at which `until` is
/// covered (warm), if any.
fn walk(
    ladder: &mut Ladder,
    plan: impl Iterator<Item = Critical>,
    from: f64,
    until: f64,
    mb: f64,
    budgets: &[f64],
    horizon: Horizon,
) -> Option<usize> {
    let to = until.min(horizon.end);
    // A call exactly on the edge of two stretches is warm if either is loaded (segments are
    // closed intervals), so keep the smallest critical index among the stretches holding it.
    let mut warm_from: Option<usize> = None;
    for c in plan {
        let start = c.start.max(from);
        if start > until {
            break;
        }
        let k = budgets.partition_point(|&b| b <= c.budget);
        if c.end >= start {
            ladder.whole_waste[k] += (c.end.min(to) - start).max(0.0) * mb;
            ladder.scored_waste[k] += (c.end.min(to) - start.max(horizon.split)).max(0.0) * mb;
            if until <= c.end {
                warm_from = Some(warm_from.map_or(k, |w| w.min(k)));
            }
        }
        if c.end > until {
            break;
        }
    }
    warm_from
}

fn collect(ladder: &Ladder, k_max: usize, whole_calls: u64, scored_calls: u64) -> Vec<AppOutcome> {
    let mut out = Vec::with_capacity(k_max);
    let (mut ww, mut sw, mut wm, mut sm) = (0i64, 0i64, 0.0, 0.0);
    for k in 0..k_max {
        ww += ladder.whole_warm[k];
        sw += ladder.scored_warm[k];
        wm += ladder.whole_waste[k];
        sm += ladder.scored_waste[k];
        let mut o = AppOutcome::default();
        o.whole.invocations = whole_calls;
        o.whole.cold = whole_calls - ww as u64;
        o.whole.wasted_mb_min = wm;
        o.scored.invocations = scored_calls;
        o.scored.cold = scored_calls - sw as u64;
        o.scored.wasted_mb_min = sm;
        out.push(o);
    }
    out
}
