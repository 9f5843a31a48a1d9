//! The policy: a pure function from what the node sees to what it should do.
//!
//! `plan(now, signals, observations, config, state)` returns a [`Plan`] (per-module CPU share,
//! concurrency cap, queue, warm-pool limit, job pacing, outbound pacing; node-wide, the share
//! of the predictor's memory budget to give back and where inference may run) and the
//! [`Decision`]s that changed something, each with its reason, typed. No clock, no I/O: the
//! caller passes time and data, so every trigger and every hysteresis path is tested
//! deterministically and can be replayed offline. The plan is complete: the node pushes all
//! of it to its actuators every tick and nothing reads it back to decide.
//!
//! The decision worth knowing: surge detection looks at what throttling cannot change. It
//! enters on pressure at a critical module (queueing, rejections, p99 well above its calm
//! baseline) or on its request rate jumping above its calm baseline, and it exits only when
//! the critical request rate has come back down, with nothing queueing or refused, for several
//! ticks. Exiting on "latency is fine again" would flap: throttling the background is exactly
//! what makes latency fine again. A surge that turns out to be the new normal (steady, no
//! pressure, for `settle_ticks`) becomes the baseline.

mod decision;
mod hysteresis;
mod node;
mod rules;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use spark_manifest::Priority;

pub use decision::{Change, Decision, DecisionText, Mode, ModulePressure, Pressure, Reason, Scope};
pub use hysteresis::Hysteresis;
pub use node::{inference_plan, optimization_plan, warm_pressure};
pub use rules::plan;

/// What the probes say about the node, reduced to what the policy uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSignals {
    /// CPUs the node may use (cgroup limit or online CPUs).
    pub cpus: f64,
    /// Busy fraction of those CPUs over the last interval, if known.
    pub cpu_utilisation: Option<f64>,
    /// Memory pressure in 0..=1, if known.
    pub memory_pressure: Option<f64>,
    /// Mains, or battery with its charge.
    pub power: PowerSignal,
    /// Worst recent round trip to the configured upstreams (or observed outbound), if known.
    pub uplink_latency_ms: Option<f64>,
    /// Inferences in flight on each accelerator backend (empty without an inference host).
    #[serde(default)]
    pub accelerators_in_flight: BTreeMap<String, u32>,
}

impl Default for NodeSignals {
    fn default() -> Self {
        NodeSignals {
            cpus: 1.0,
            cpu_utilisation: None,
            memory_pressure: None,
            power: PowerSignal::Mains,
            uplink_latency_ms: None,
            accelerators_in_flight: BTreeMap::new(),
        }
    }
}

/// Where the node's power comes from, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum PowerSignal {
    /// External power, or no readable battery.
    Mains,
    /// On a battery.
    Battery {
        /// Charge, 0..=100 percent.
        percent: f64,
        /// External power is connected (power save does not start, or ends).
        charging: bool,
    },
}

/// One module over the last interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleObservation {
    /// The module's id.
    pub id: String,
    /// Its priority class from the manifest.
    pub priority: Priority,
    /// Relative CPU weight within its priority class (1..=1000).
    pub weight: u32,
    /// A scheduled job rather than an HTTP module.
    pub job: bool,
    /// Configured concurrency: invocations at once (a cap the plan never exceeds).
    pub concurrency: u32,
    /// Configured queue: requests that may wait (a cap the plan never exceeds).
    pub queue: u32,
    /// Requests completed (or job runs) in the interval.
    pub requests: u64,
    /// Requests refused by admission in the interval.
    pub rejected: u64,
    /// Requests waiting right now.
    pub queued: u32,
    /// Invocations running right now.
    pub in_flight: u32,
    /// Guest CPU seconds used in the interval.
    pub cpu_seconds: f64,
    /// p99 latency of requests completed in the interval, if any.
    pub p99_ms: Option<f64>,
    /// Length of the interval, seconds.
    pub window_secs: f64,
}

impl ModuleObservation {
    fn rate(&self) -> f64 {
        if self.window_secs > 0.0 {
            self.requests as f64 / self.window_secs
        } else {
            0.0
        }
    }
}

/// Thresholds and factors; defaults are named constants in [`PolicyConfig::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// CPU share (of the whole node) background modules keep even during a surge, split
    /// among them by weight.
    pub background_min_share: f64,
    /// Consecutive ticks of critical pressure or a rate jump before a surge starts.
    pub surge_enter_ticks: u32,
    /// Consecutive calm ticks (no queueing or refusals, rate near baseline) before a surge
    /// ends.
    pub surge_exit_ticks: u32,
    /// Critical request rate over its calm baseline that counts as a surge.
    pub surge_rate_factor: f64,
    /// Critical request rate over its calm baseline below which a surge may end.
    pub calm_rate_factor: f64,
    /// Critical p99 over its calm baseline that counts as pressure.
    pub surge_latency_factor: f64,
    /// Memory pressure (0..=1) at or above which the memory-pressure mode starts.
    pub memory_high: f64,
    /// Memory pressure (0..=1) at or below which it ends (unknown pressure counts as low).
    pub memory_low: f64,
    /// Battery percentage at or below which (discharging) the node saves power.
    pub battery_low_percent: f64,
    /// Battery percentage at or above which (or once charging) power save ends.
    pub battery_ok_percent: f64,
    /// Uplink round trip (ms) at or above which the uplink is slow.
    pub uplink_slow_ms: f64,
    /// Uplink round trip (ms) at or below which it is fine again (unknown counts as fine).
    pub uplink_ok_ms: f64,
    /// How much longer background job periods get in power-save mode.
    pub power_save_job_pacing: f64,
    /// Minimum gap between outbound requests of a background module on a slow uplink, ms.
    pub slow_uplink_outbound_interval_ms: u64,
    /// Consecutive ticks a mode (memory, power, uplink) needs to switch on.
    pub enter_ticks: u32,
    /// Consecutive ticks such a mode needs to switch off.
    pub exit_ticks: u32,
    /// Smoothing of the calm baselines (weight of the newest interval).
    pub baseline_alpha: f64,
    /// Intervals of pressure-free, steady load after which a surge's rate becomes the baseline.
    pub settle_ticks: u32,
    /// Share (0..=1) of the predictor's memory budget given back under memory pressure (with
    /// power save on too, the larger of the two applies).
    pub memory_pressure_warm_release: f64,
    /// Share (0..=1) of the predictor's memory budget given back in power save.
    pub power_save_warm_release: f64,
    /// How the inference host is steered.
    pub inference: InferenceConfig,
    /// Postpone background optimization (the Cranelift tier-up of modules serving baseline
    /// code) while a surge, memory pressure or power save is on.
    #[serde(default = "yes")]
    pub postpone_optimization: bool,
}

fn yes() -> bool {
    true
}

/// How the policy steers the inference host (from the manifest's `[nn]`; the default, for a
/// node without one, never changes anything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferenceConfig {
    /// Power save keeps inference on the CPU.
    pub cpu_only_on_power_save: bool,
    /// In-flight inferences at or above which an accelerator is saturated, and at or below
    /// half of which it no longer is (0: never).
    pub saturation: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            background_min_share: 0.10,
            surge_enter_ticks: 2,
            surge_exit_ticks: 6,
            surge_rate_factor: 2.0,
            calm_rate_factor: 1.25,
            surge_latency_factor: 2.0,
            memory_high: 0.60,
            memory_low: 0.30,
            battery_low_percent: 20.0,
            battery_ok_percent: 30.0,
            uplink_slow_ms: 300.0,
            uplink_ok_ms: 150.0,
            power_save_job_pacing: 4.0,
            slow_uplink_outbound_interval_ms: 1000,
            enter_ticks: 2,
            exit_ticks: 6,
            baseline_alpha: 0.1,
            settle_ticks: 40,
            memory_pressure_warm_release: 0.5,
            power_save_warm_release: 0.25,
            inference: InferenceConfig::default(),
            postpone_optimization: true,
        }
    }
}

/// What the policy remembers between ticks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyState {
    /// The surge mode's switch.
    pub surge: Hysteresis,
    /// The memory-pressure mode's switch.
    pub memory: Hysteresis,
    /// The power-save mode's switch.
    pub power_save: Hysteresis,
    /// The slow-uplink mode's switch.
    pub uplink: Hysteresis,
    /// Calm-period baselines of critical modules.
    pub baselines: BTreeMap<String, Baseline>,
    /// The plan of the previous tick (decisions are the differences to it).
    pub last: Option<Plan>,
}

/// A critical module's calm behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Calm request rate (requests/s), smoothed by `baseline_alpha`.
    pub rate: f64,
    /// Calm p99 latency (ms), smoothed the same way; 0 until one is seen.
    pub p99_ms: f64,
    /// Calm intervals learned from; rate and latency jumps count from the third.
    pub samples: u32,
    /// During a surge: the rate (requests/s) the load has been steady at.
    pub settling_rate: f64,
    /// Consecutive pressure-free surge intervals within 25% of `settling_rate`.
    pub settled_ticks: u32,
}

/// Node-wide modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modes {
    /// Critical modules under pressure: background modules get a CPU share, a quarter of
    /// their concurrency and no queue.
    pub surge: bool,
    /// Memory pressure high: background warm pools emptied and concurrency halved, normal
    /// ones kept to one warm instance.
    pub memory_pressure: bool,
    /// Low battery: non-critical warm pools emptied, background CPU capped and jobs paced.
    pub power_save: bool,
    /// Uplink slow: background outbound requests spaced out.
    pub uplink_slow: bool,
}

/// What the node should do now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The node-wide modes in force.
    pub modes: Modes,
    /// Each observed module's allowances, by module id.
    pub modules: BTreeMap<String, ModulePlan>,
    /// Share of the predictor's memory budget it must give back, in `[0, 1]` (memory gets
    /// dearer in proportion; see `spark_predict::live::WarmthPlanner::plan`).
    #[serde(default)]
    pub warm_pressure: f64,
    /// Where inference may run.
    #[serde(default)]
    pub inference: InferencePlan,
    /// Whether background optimization may run.
    #[serde(default)]
    pub optimization: OptimizationPlan,
}

/// Whether the background optimizer may start compiles now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptimizationPlan {
    /// Why it waits (`surge`, `memory pressure`, `power save`, joined by `, `); `None`: it may
    /// run. Compiles already running finish; the modules keep serving baseline code meanwhile.
    pub postponed: Option<String>,
}

/// Where inference may run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferencePlan {
    /// Every inference on the CPU.
    pub cpu_only: bool,
    /// Accelerator backends marked saturated: new inferences go elsewhere.
    pub saturated: BTreeSet<String>,
}

/// One module's allowances.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModulePlan {
    /// Fraction of the node's CPU the module may use; `None`: no cap.
    pub cpu_share: Option<f64>,
    /// Invocations at once.
    pub concurrency: u32,
    /// Requests that may wait; 0 sheds at once (503 + Retry-After) when at the cap.
    pub queue: u32,
    /// Most instances the predictor may keep warm; `None`: its own judgement.
    pub warm_limit: Option<u32>,
    /// Multiplier on a job's period (1 = as configured).
    pub job_pacing: f64,
    /// Minimum gap between the module's outbound requests, ms (0 = none).
    pub outbound_interval_ms: u64,
}

#[cfg(test)]
mod tests;
