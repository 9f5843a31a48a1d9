//! Spark's decision rule: the demand model's forecast turned into load decisions by expected
//! value, shared by the node's [`crate::live::WarmthPlanner`] and the B4 simulator (`spark-sim`
//! replays it as its `Spark` policy).
//!
//! An idle period is cut into six-second bins after the last call ([`BIN_MIN`]; edges three
//! seconds off whole multiples of six seconds, so a timer's calls land mid-bin), and a bin is
//! cut again at the edges of the repeat expert's windows narrower than a minute (the model's
//! [`AppModel::sharp_edges`]: a timer known to the second is loaded for seconds). A bin
//! `[a, b)` is loaded when the value of the cold starts it avoids exceeds the memory it wastes:
//! `value x (S(a) - S(b)) > memory x integral of S over [a, b)`, with `S` the model's survival
//! of the gap (the integral, by the trapezoid rule, is the expected idle time in the bin). That
//! is the optimal rule for the Lagrangian "cold starts x value + memory x time" under the model's
//! distribution, so sweeping the budget traces the best trade-off curve the model can reach;
//! each bin carries its *critical budget* (where the two sides are equal, [`CriticalBins`]),
//! which lets the simulator score a whole grid of budgets in one replay.
//!
//! Decision worth knowing: the value of avoiding one cold start is `budget / sqrt(calls per
//! day)` (calls in the last day, exponentially weighted; see [`cold_start_weight`]). Weighting
//! by `1 / calls` alone would minimise the mean per-app cold-start share (one cold start of an
//! app called twice a day is half its calls) but unloads busy apps between calls, because each
//! of their cold starts is a tiny share; weighting all cold starts alike minimises their number
//! and abandons rare apps. The square root sits between the two; exponents 0.25, 0.6 and 1
//! did worse on held-out halves of the real trace and on synthetic traces, and it needs no cap.

use crate::model::AppModel;

/// Gaps beyond this (minutes; one week) are never planned for.
pub const MAX_PLAN_MIN: f64 = 7.0 * 1440.0;

/// Width of a decision bin (minutes): six seconds, so a load decision can start or end within
/// a minute where the model's hazard changes within it (the first minutes after a call, where
/// a busy app's next call is likely, and the edges of a timer's window).
pub const BIN_MIN: f64 = 0.1;

/// A stretch of an idle period (in the model's minutes) and the smallest budget at which it is
/// loaded (strictly above).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Critical {
    /// Start (minutes).
    pub start: f64,
    /// End (minutes).
    pub end: f64,
    /// Loaded for budgets `> budget`.
    pub budget: f64,
}

/// Weight of one cold start of an app called `calls_per_day` times a day (at least once):
/// `1 / sqrt(calls per day)`, the geometric mean of the two things a node owner cares about,
/// the share of each app's calls that start cold (weight `1 / calls`) and the number of cold
/// starts (weight 1).
pub fn cold_start_weight(calls_per_day: f64) -> f64 {
    1.0 / calls_per_day.max(1.0).sqrt()
}

/// The smallest budget at which loading the stretch `[a, b)` after the last call is worth its
/// memory: the budget where `budget x weight x (S(a) - S(b))` (expected cold starts avoided,
/// valued) equals `memory x integral of S over [a, b)` (expected idle MB-minutes).
pub fn critical_budget(
    calls_per_day: f64,
    memory_mb: f64,
    s_a: f64,
    s_b: f64,
    idle_min: f64,
) -> f64 {
    let gain = s_a - s_b;
    if gain <= 0.0 {
        return f64::INFINITY;
    }
    memory_mb * idle_min / (gain * cold_start_weight(calls_per_day))
}

/// The bins of one idle period with their critical budgets: one per six seconds, edges three
/// seconds off whole multiples of six after the last call (so a whole-minute gap lands mid-bin),
/// cut again at the model's sharp edges.
#[derive(Debug, Clone)]
pub struct CriticalBins<'a> {
    model: &'a AppModel,
    last: f64,
    x: f64,
    s_x: f64,
    scale: f64,
    /// The model's sharp edges after `x`, ascending.
    edges: Vec<f64>,
}

impl<'a> CriticalBins<'a> {
    /// The bins from `idle_start` for an app with this model and memory.
    pub fn new(model: &'a AppModel, idle_start: f64, memory_mb: f64) -> Self {
        let last = model.last_call().unwrap_or(idle_start);
        let x = (idle_start - last).max(0.0);
        let scale = critical_budget(model.calls_per_day(), memory_mb, 1.0, 0.0, 1.0);
        let mut edges = model.sharp_edges();
        edges.retain(|&e| e > x);
        CriticalBins {
            model,
            last,
            x,
            s_x: model.survival(x),
            scale,
            edges,
        }
    }
}

impl Iterator for CriticalBins<'_> {
    type Item = Critical;

    fn next(&mut self) -> Option<Critical> {
        if self.x >= MAX_PLAN_MIN || self.s_x <= 0.0 {
            return None;
        }
        let a = self.x;
        let mut b = ((a / BIN_MIN + 0.5).floor() + 0.5) * BIN_MIN;
        if b <= a + BIN_MIN * 1e-6 {
            b += BIN_MIN;
        }
        let passed = self.edges.iter().take_while(|&&e| e <= a).count();
        self.edges.drain(..passed);
        if let Some(&e) = self.edges.first().filter(|&&e| e < b) {
            b = e;
        }
        let s_b = self.model.survival(b);
        let idle = (b - a) * (self.s_x + s_b) / 2.0;
        let gain = self.s_x - s_b;
        let budget = if gain > 0.0 {
            self.scale * idle / gain
        } else {
            f64::INFINITY
        };
        self.x = b;
        self.s_x = s_b;
        Some(Critical {
            start: self.last + a,
            end: self.last + b,
            budget,
        })
    }
}
