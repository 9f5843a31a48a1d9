//! The live-facing API: per-module demand models fed with real timestamps, forecasts, history
//! snapshots, and the [`WarmthPlanner`] that turns forecasts into warmth levels.
//!
//! Decision worth knowing: this is the simulator's model, not a copy. [`DemandModel`] keeps one
//! [`AppModel`] per module (the same type `spark-sim`'s `Spark` policy replays) and only converts
//! Unix milliseconds to the model's minutes; restoring a [`HistorySnapshot`] replays its minute
//! counts the way the simulator spreads a minute's calls, so a restarted node forecasts what a
//! replay of the same history would.

mod code_times;
mod planner;
mod window;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use code_times::CodeTimes;
pub use planner::{LevelCosts, ModuleDemand, WarmthLevel, WarmthPlan, WarmthPlanner};
pub use window::{IdleModule, WindowPlanner};

use crate::model::{AppModel, HistorySnapshot, MinuteHistory};

/// Horizons of [`Forecast::p_next_within`], milliseconds: 1, 5, 15 and 60 minutes.
pub const FORECAST_HORIZONS_MS: [u64; 4] = [60_000, 300_000, 900_000, 3_600_000];
/// How far ahead [`Forecast::next_likely_ms`] is searched (one day).
pub const NEXT_LIKELY_SEARCH_MS: u64 = 86_400_000;
const MS_PER_MIN: f64 = 60_000.0;

/// What the model expects of one module, as of `now_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// `(horizon ms, probability of at least one call within it)`, for [`FORECAST_HORIZONS_MS`].
    pub p_next_within: Vec<(u64, f64)>,
    /// Instances likely busy at once when calls come: the recent peak calls per minute times
    /// the mean execution time (at least 1).
    pub expected_concurrency: f64,
    /// When the next call is as likely as not to have come (median), if within a day.
    pub next_likely_ms: Option<u64>,
    /// Calls per day (last day, exponentially weighted).
    pub calls_per_day: f64,
    /// Detected period, if any.
    pub period_ms: Option<u64>,
}

impl Forecast {
    /// Probability of a call within `horizon_ms`, read from the nearest horizon at or above it
    /// (the longest one if beyond).
    pub fn p_within(&self, horizon_ms: u64) -> f64 {
        self.p_next_within
            .iter()
            .find(|(h, _)| *h >= horizon_ms)
            .or(self.p_next_within.last())
            .map_or(0.0, |(_, p)| *p)
    }
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The snapshot's format version is not one this build reads.
    #[error("history snapshot version {0} is not supported")]
    Version(u32),
}

#[derive(Debug, Clone, Default)]
struct Module {
    model: AppModel,
    history: MinuteHistory,
    mean_duration_ms: Option<f64>,
}

/// Demand models of all modules of a node, keyed by module id.
#[derive(Debug, Clone, Default)]
pub struct DemandModel {
    modules: HashMap<String, Module>,
}

impl DemandModel {
    /// An empty model (a node with no history, or whose history store was unreadable).
    pub fn new() -> Self {
        DemandModel::default()
    }

    /// Records `count` calls of `module` at `t_ms` (Unix ms). Reports should come in time
    /// order; a late one is treated as happening at the module's last call.
    pub fn observe(&mut self, module: &str, t_ms: u64, count: u32) {
        let m = self.modules.entry(module.to_owned()).or_default();
        m.history.record(t_ms / 60_000, count);
        let t = t_ms as f64 / MS_PER_MIN;
        for _ in 0..count {
            m.model.observe(t);
        }
    }

    /// Records an execution time of `module` (ms), kept as an exponential mean.
    pub fn observe_duration(&mut self, module: &str, duration_ms: f64) {
        let m = self.modules.entry(module.to_owned()).or_default();
        m.mean_duration_ms = Some(
            m.mean_duration_ms
                .map_or(duration_ms, |d| 0.9 * d + 0.1 * duration_ms),
        );
    }

    /// The forecast for `module` at `now_ms`; `None` for a module never called.
    pub fn forecast(&self, module: &str, now_ms: u64) -> Option<Forecast> {
        let m = self.modules.get(module)?;
        let now = now_ms as f64 / MS_PER_MIN;
        let p_next_within = FORECAST_HORIZONS_MS
            .iter()
            .map(|&h| Some((h, m.model.p_call_within(now, h as f64 / MS_PER_MIN)?)))
            .collect::<Option<Vec<_>>>()?;
        let search = NEXT_LIKELY_SEARCH_MS as f64 / MS_PER_MIN;
        let next_likely_ms = m
            .model
            .quantile_after(now, 0.5, search)
            .map(|t| (t * MS_PER_MIN).round() as u64);
        Some(Forecast {
            p_next_within,
            expected_concurrency: expected_concurrency(m, now_ms),
            next_likely_ms,
            calls_per_day: m.model.calls_per_day(),
            period_ms: m.model.period().map(|p| (p * MS_PER_MIN).round() as u64),
        })
    }

    /// When `module` was last called (Unix ms, to the model's resolution); `None` if never.
    pub fn last_call_ms(&self, module: &str) -> Option<u64> {
        let last = self.modules.get(module)?.model.last_call()?;
        Some((last * MS_PER_MIN).round() as u64)
    }

    /// The history to persist for `module`.
    pub fn snapshot(&self, module: &str) -> Option<HistorySnapshot> {
        self.modules.get(module).map(|m| m.history.snapshot())
    }

    /// Replaces `module`'s model by one rebuilt from a persisted history.
    pub fn restore(
        &mut self,
        module: &str,
        snapshot: &HistorySnapshot,
    ) -> Result<(), RestoreError> {
        let history =
            MinuteHistory::restore(snapshot).ok_or(RestoreError::Version(snapshot.version))?;
        let mut model = AppModel::default();
        for (minute, count) in history.minutes() {
            let n = f64::from(count);
            for j in 0..count {
                model.observe(minute as f64 + (f64::from(j) + 0.5) / n);
            }
        }
        let mean_duration_ms = self.modules.get(module).and_then(|m| m.mean_duration_ms);
        self.modules.insert(
            module.to_owned(),
            Module {
                model,
                history,
                mean_duration_ms,
            },
        );
        Ok(())
    }

    /// Drops a module (undeployed).
    pub fn forget(&mut self, module: &str) {
        self.modules.remove(module);
    }

    /// Ids of the modules with a model, in no particular order.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }
}

/// Peak calls per minute over the last hour x mean duration, at least 1.
fn expected_concurrency(m: &Module, now_ms: u64) -> f64 {
    let since = (now_ms / 60_000).saturating_sub(60);
    let peak = m.history.since(since).map(|(_, c)| c).max().unwrap_or(0);
    let per_ms = f64::from(peak) / MS_PER_MIN;
    (per_ms * m.mean_duration_ms.unwrap_or(0.0)).max(1.0)
}

#[cfg(test)]
mod tests;
