//! The B4 simulation model: one instance per application, replayed in simulated minutes.
//!
//! Rules (as `BENCHMARKS.md` B4 defines them): a minute's n calls arrive at `m + (j + 0.5) / n`;
//! each runs for the app's average duration; a call arriving while the instance is loaded (busy
//! or idle) is warm; idle time runs from the end of an execution to the next arrival; wasted
//! memory = minutes loaded but not executing x the app's memory, cut at the end of the trace.
//! The first-ever call of an app is cold for every policy (no policy knows the app before it).
//!
//! Decision worth knowing: a policy is asked for its plan for an idle period *lazily*, when the
//! next arrival after the end of execution is processed (or at the end of the trace), and the
//! plan itself is an iterator of consecutive loaded/unloaded [`Segment`]s in absolute time that
//! the simulator reads only up to that arrival. Because no event reaches the policy during an
//! idle period, this is exactly what an eager policy would decide at the end of execution; the
//! policy never sees the next call, may plan a week ahead at no cost, and one trait covers
//! keep-alive, pre-warm windows, Spark's minute-by-minute plans and the oracle.

mod score;
mod sweep;

pub use score::{PeriodScore, Scores, percentile, score};
pub use sweep::{BudgetedApp, BudgetedPolicy, Critical, sweep, sweep_app};

use crate::trace::{AppTrace, TraceSet};

/// A stretch of an idle period (simulated minutes) in which the instance is loaded or not.
/// A plan is a sequence of consecutive segments in time order; after its last segment the
/// instance stays unloaded. A loaded segment covers its closed interval `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Start of the stretch.
    pub start: f64,
    /// End of the stretch.
    pub end: f64,
    /// Whether the instance is loaded during it.
    pub loaded: bool,
}

impl Segment {
    /// A loaded stretch.
    pub fn loaded(start: f64, end: f64) -> Segment {
        Segment {
            start,
            end,
            loaded: true,
        }
    }

    /// An unloaded stretch.
    pub fn unloaded(start: f64, end: f64) -> Segment {
        Segment {
            start,
            end,
            loaded: false,
        }
    }
}

/// What a policy knows about an application when it first sees it (never its future calls).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AppInfo {
    /// Position of the app in the trace (stable id for the run).
    pub index: usize,
    /// Average execution time, minutes.
    pub duration_min: f64,
    /// Memory while loaded, MB.
    pub memory_mb: f64,
}

/// A policy's per-application state, fed online.
pub trait AppPolicy {
    /// The plan for one idle period: produced lazily, so the simulator reads it only up to the
    /// next call (which the policy never sees) and a policy may plan arbitrarily far ahead.
    type Plan<'a>: Iterator<Item = Segment>
    where
        Self: 'a;
    /// A call arrived at `t` (minutes), after the decision about it was taken.
    fn on_arrival(&mut self, t: f64);
    /// The instance went idle at `idle_start`: the plan until the next call.
    fn plan_idle(&mut self, idle_start: f64) -> Self::Plan<'_>;
}

/// A keep-alive / pre-warm policy: a factory of per-application state.
pub trait Policy: Sync {
    /// Per-application state.
    type App: AppPolicy;
    /// Display name.
    fn name(&self) -> String;
    /// State for a new application.
    fn for_app(&self, info: &AppInfo) -> Self::App;
}

/// Counts for one period of the trace (the whole trace or its scored part).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Calls arriving in the period.
    pub invocations: u64,
    /// Of which cold.
    pub cold: u64,
    /// Memory loaded but not executing in the period, MB-minutes.
    pub wasted_mb_min: f64,
}

/// One application's result.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AppOutcome {
    /// Over the whole trace.
    pub whole: Tally,
    /// Over `[split, end)`: arrivals and wasted memory in the scored part only.
    pub scored: Tally,
}

/// Where the scored part starts, and the trace end (minutes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Horizon {
    /// Start of the scored part.
    pub split: f64,
    /// End of the trace.
    pub end: f64,
}

impl Horizon {
    /// The B4 horizon: the trace end, scored from `fraction` of it.
    pub fn of(trace: &TraceSet, fraction: f64) -> Horizon {
        let end = trace.minutes as f64;
        Horizon {
            split: end * fraction,
            end,
        }
    }
}

/// The information a policy gets about app `index` of a trace.
pub fn app_info(index: usize, app: &AppTrace) -> AppInfo {
    AppInfo {
        index,
        duration_min: app.duration_ms / 60_000.0,
        memory_mb: app.memory_mb,
    }
}

/// Replays every application of `trace` through `policy`.
pub fn simulate<P: Policy>(trace: &TraceSet, policy: &P, horizon: Horizon) -> Vec<AppOutcome> {
    trace
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let info = app_info(i, app);
            let mut state = policy.for_app(&info);
            simulate_app(app.arrivals(), &info, &mut state, horizon)
        })
        .collect()
}

/// Replays one application's arrivals (ascending, minutes) through one policy state.
pub fn simulate_app(
    arrivals: impl Iterator<Item = f64>,
    info: &AppInfo,
    policy: &mut impl AppPolicy,
    horizon: Horizon,
) -> AppOutcome {
    let mut out = AppOutcome::default();
    let mut busy_end = f64::NEG_INFINITY;
    let mut seen = false;
    for t in arrivals {
        let warm = if t < busy_end {
            true
        } else if !seen {
            false
        } else {
            replay_idle(
                &mut out,
                policy.plan_idle(busy_end),
                busy_end,
                t,
                info.memory_mb,
                horizon,
            )
        };
        seen = true;
        count_arrival(&mut out, t, warm, horizon);
        policy.on_arrival(t);
        busy_end = busy_end.max(t + info.duration_min);
    }
    if seen && busy_end < horizon.end {
        replay_idle(
            &mut out,
            policy.plan_idle(busy_end),
            busy_end,
            horizon.end,
            info.memory_mb,
            horizon,
        );
    }
    out
}

/// MB-minutes an application spends executing before `end` (minutes), by the replay's rules
/// (each call runs for the app's average duration from its arrival; overlapping calls share
/// one instance). The same for every policy; with a policy's wasted memory it makes the
/// memory the policy keeps loaded, which is what a live node can be measured by.
pub fn executing_mb_min(app: &AppTrace, end: f64) -> f64 {
    let duration = app.duration_ms / 60_000.0;
    let mut busy_end = f64::NEG_INFINITY;
    let mut minutes = 0.0;
    for t in app.arrivals() {
        let (from, to) = (t.max(busy_end), (t + duration).min(end));
        minutes += (to - from).max(0.0);
        busy_end = busy_end.max(t + duration);
    }
    minutes * app.memory_mb
}

fn count_arrival(out: &mut AppOutcome, t: f64, warm: bool, horizon: Horizon) {
    out.whole.invocations += 1;
    out.whole.cold += u64::from(!warm);
    if t >= horizon.split {
        out.scored.invocations += 1;
        out.scored.cold += u64::from(!warm);
    }
}

/// Walks a plan from `from` up to `until` (the next call, or the trace end), charging loaded
/// time as waste; returns whether the instance is loaded at `until`.
fn replay_idle(
    out: &mut AppOutcome,
    plan: impl Iterator<Item = Segment>,
    from: f64,
    until: f64,
    mb: f64,
    horizon: Horizon,
) -> bool {
    let to = until.min(horizon.end);
    for seg in plan {
        let start = seg.start.max(from);
        if start > until {
            break;
        }
        if seg.loaded && seg.end >= start {
            out.whole.wasted_mb_min += span(start, seg.end, from, to) * mb;
            out.scored.wasted_mb_min += span(start, seg.end, from.max(horizon.split), to) * mb;
            if until <= seg.end {
                return true;
            }
        }
        if seg.end > until {
            break;
        }
    }
    false
}

/// Length of `[a, b] ∩ [from, to]`.
fn span(a: f64, b: f64, from: f64, to: f64) -> f64 {
    (b.min(to) - a.max(from)).max(0.0)
}

#[cfg(test)]
mod tests;
