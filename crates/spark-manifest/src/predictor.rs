//! The node's `[predictor]` table: how much memory warm modules may use, how often warmth is
//! revised, and which policy decides it (Spark's prediction or a baseline).

use std::time::Duration;

/// The predictor's settings from the optional `[predictor]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictorSettings {
    /// Off: every module stays loaded (as at startup); history is still kept.
    pub enabled: bool,
    /// Memory that loaded components and ready instances of non-critical modules may use.
    pub memory_budget: u64,
    /// How often warmth levels are revised.
    pub interval: Duration,
    /// Model time per real time (1 in production; replays compress traces with more).
    pub time_scale: f64,
    /// How warmth is decided: Spark's prediction (the default) or a baseline.
    pub policy: WarmthPolicy,
}

/// `predictor.policy`: how a node decides which modules stay loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmthPolicy {
    /// `"spark"`: each module's demand forecast, valued against its memory.
    Predict,
    /// `"keep-alive"` (or just `keep_alive = ...`): each non-critical module stays loaded this
    /// long after its last call (model time), within the budget; nothing is loaded ahead.
    KeepAlive(Duration),
    /// `"hybrid"`: the hybrid histogram policy (Shahrad et al., ATC 2020) with the paper's
    /// parameters: a load window per module from its idle times, within the budget.
    Hybrid,
}

/// `predictor.keep_alive` when `policy = "keep-alive"` names none: 10 minutes.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(600);

/// Default `predictor.memory_budget`: 256 MiB.
pub const DEFAULT_WARM_MEMORY: u64 = 256 << 20;
/// Default `predictor.interval`: 10 s.
pub const DEFAULT_PREDICTOR_INTERVAL: Duration = Duration::from_secs(10);

impl Default for PredictorSettings {
    fn default() -> Self {
        PredictorSettings {
            enabled: true,
            memory_budget: DEFAULT_WARM_MEMORY,
            interval: DEFAULT_PREDICTOR_INTERVAL,
            time_scale: 1.0,
            policy: WarmthPolicy::Predict,
        }
    }
}
