//! `GET /v1/dashboard`: one JSON answer with everything the dashboard page and `spark top`
//! show, so both render the same numbers from one request a second.
//!
//! Requests/s and CPU use come from [`Rates`] (counters differenced between polls at least a
//! second apart, shared by every viewer); p99 from the orchestrator's last tick (its latency
//! window is drained there, once, so the dashboard reads the tick's figure rather than
//! draining it too).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use spark_api::EventView;
use spark_orchestrator::policy::{DecisionText, Modes, ModuleObservation};

use crate::admin::status::{CanaryStatus, ModuleStatus, RequestCounts};
use crate::release::deploy::RolloutStatus;

/// Decisions the dashboard shows, newest first.
pub(crate) const RECENT_DECISIONS: usize = 15;
/// Events the dashboard shows, newest first.
pub(crate) const RECENT_EVENTS: usize = 12;

/// What `/v1/dashboard` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DashboardView {
    /// Spark version of the node.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// The node's clock when the view was made (Unix ms).
    pub at_ms: u64,
    /// Address of the public listener.
    pub listen: String,
    /// The stable release served.
    pub release: Option<String>,
    /// Modules, critical first, then normal, then background; by id within a class.
    pub modules: Vec<ModuleRow>,
    /// New versions taking part of their module's traffic.
    pub canaries: Vec<CanaryStatus>,
    /// `None` when the orchestrator is off.
    pub orchestrator: Option<OrchestratorPanel>,
    /// The rollout in progress, if any, with each module's step and last verdict.
    pub rollout: RolloutStatus,
    /// The newest release events (deploys, verdicts, promotions, rollbacks), newest first.
    pub events: Vec<EventView>,
    /// The fleet's nodes as this node last read them; `None` outside a fleet.
    pub fleet: Option<FleetPanel>,
}

/// One module, as a dashboard row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleRow {
    /// The module id.
    pub id: String,
    /// `critical`, `normal` or `background`.
    pub class: String,
    /// The release of the version serving it.
    pub release: String,
    /// Routes, or the schedule of a job.
    pub trigger: String,
    /// Requests per second over the last window; `None` until two polls a second apart.
    pub requests_per_sec: Option<f64>,
    /// 99th percentile latency over the orchestrator's last tick, ms; `None` without traffic
    /// or without the orchestrator.
    pub p99_ms: Option<f64>,
    /// Fraction of the node's CPU the module used over the last window.
    pub cpu_used: Option<f64>,
    /// The CPU share the orchestrator capped it to; `None`: uncapped.
    pub cpu_share: Option<f64>,
    /// Warmth tier now (`cold`, `code`, `warm`, ...).
    pub warmth: String,
    /// The tier the predictor wants.
    pub warmth_target: String,
    /// `queueing`, `busy`, `throttled`, `idle`.
    pub state: String,
    /// Invocations running now.
    pub running: u32,
    /// Requests waiting now.
    pub queued: u32,
    /// Concurrency cap in force.
    pub concurrency: u32,
    /// Requests since the node started, across releases.
    pub requests: RequestCounts,
    /// The predictor's expected requests per minute (its calls per day / 1440).
    pub expected_per_min: Option<f64>,
    /// Observed requests per minute (the last window's rate × 60).
    pub observed_per_min: Option<f64>,
    /// The predictor's probability of a call within the next minute.
    pub p_within_1m: Option<f64>,
}

/// A node-wide mode, on or off, with what it does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeRow {
    /// `surge`, `memory-pressure`, `power-save`, `slow-uplink`.
    pub name: String,
    /// Whether it is in force.
    pub on: bool,
}

/// The orchestrator's state and recent decisions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrchestratorPanel {
    /// Every mode, on or off.
    pub modes: Vec<ModeRow>,
    /// Node CPU busy fraction at the last tick.
    pub cpu: Option<f64>,
    /// Memory pressure at the last tick.
    pub memory_pressure: Option<f64>,
    /// Ticks so far.
    pub ticks: u64,
    /// The newest decisions first, each with its reason.
    pub decisions: Vec<DecisionText>,
}

/// The fleet as this node's agent last read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FleetPanel {
    /// The application.
    pub app: String,
    /// This node's id.
    pub node: String,
    /// When the fleet was last read (Unix ms).
    pub read_ms: u64,
    /// Every node of the application.
    pub nodes: Vec<FleetNodeRow>,
}

/// One fleet node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetNodeRow {
    /// Node id.
    pub node: String,
    /// Its release.
    pub release: Option<String>,
    /// Requests in flight.
    pub running: u64,
    /// Requests handled so far.
    pub requests: u64,
    /// CPU busy fraction.
    pub cpu: Option<f64>,
    /// A node-level rollout in progress, as text.
    pub rollout: Option<String>,
    /// Why it could not apply the desired state.
    pub last_error: Option<String>,
}

/// The modes as rows, in a fixed order.
pub(crate) fn mode_rows(modes: &Modes) -> Vec<ModeRow> {
    [
        ("surge", modes.surge),
        ("memory-pressure", modes.memory_pressure),
        ("power-save", modes.power_save),
        ("slow-uplink", modes.uplink_slow),
    ]
    .into_iter()
    .map(|(name, on)| ModeRow {
        name: name.into(),
        on,
    })
    .collect()
}

/// A module's counters at one poll.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counters {
    pub(crate) requests: u64,
    pub(crate) cpu_nanos: u64,
}

/// Counters of every module at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Sample {
    pub(crate) at_ms: u64,
    pub(crate) modules: HashMap<String, Counters>,
}

/// A module's rates over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Rate {
    pub(crate) per_sec: f64,
    /// Fraction of the node's CPU (all cores).
    pub(crate) cpu: f64,
}

/// Shortest window rates are computed over.
pub(crate) const MIN_WINDOW_MS: u64 = 900;

/// Rates between polls, shared by every viewer: a poll less than [`MIN_WINDOW_MS`] after the
/// last sample reuses the last rates.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    last: Option<Sample>,
    rates: HashMap<String, Rate>,
}

impl Rates {
    /// Takes `now` into account and returns the rates in force.
    pub(crate) fn update(&mut self, now: Sample, cpus: f64) -> &HashMap<String, Rate> {
        match &self.last {
            Some(last) if now.at_ms < last.at_ms + MIN_WINDOW_MS => {}
            Some(last) => {
                self.rates = rates(last, &now, cpus);
                self.last = Some(now);
            }
            None => self.last = Some(now),
        }
        &self.rates
    }
}

/// Requests/s and CPU fraction per module between two samples; a counter that went down (a
/// new version after a release switch) counts from zero.
pub(crate) fn rates(before: &Sample, now: &Sample, cpus: f64) -> HashMap<String, Rate> {
    let secs = now.at_ms.saturating_sub(before.at_ms) as f64 / 1e3;
    if secs <= 0.0 {
        return HashMap::new();
    }
    now.modules
        .iter()
        .map(|(id, c)| {
            let b = before.modules.get(id).copied().unwrap_or_default();
            let requests = if c.requests >= b.requests {
                c.requests - b.requests
            } else {
                c.requests
            };
            let cpu = if c.cpu_nanos >= b.cpu_nanos {
                c.cpu_nanos - b.cpu_nanos
            } else {
                c.cpu_nanos
            };
            let rate = Rate {
                per_sec: requests as f64 / secs,
                cpu: cpu as f64 / 1e9 / secs / cpus.max(1.0),
            };
            (id.clone(), rate)
        })
        .collect()
}

fn class_rank(class: &str) -> u8 {
    match class {
        "critical" => 0,
        "normal" => 1,
        _ => 2,
    }
}

/// A module's state in a word, from its live counters.
pub(crate) fn state_word(m: &ModuleStatus) -> &'static str {
    if m.queued > 0 {
        "queueing"
    } else if m.controls.cpu_share.is_some() && m.controls.throttled_ms > 0 && m.running > 0 {
        "throttled"
    } else if m.running > 0 {
        "busy"
    } else {
        "idle"
    }
}

/// The dashboard rows from the status rows, the rates and the orchestrator's last tick.
pub(crate) fn module_rows(
    modules: &[ModuleStatus],
    rates: &HashMap<String, Rate>,
    observations: &[ModuleObservation],
) -> Vec<ModuleRow> {
    let mut rows: Vec<ModuleRow> = modules
        .iter()
        .map(|m| {
            let rate = rates.get(&m.id);
            let p99 = observations
                .iter()
                .find(|o| o.id == m.id)
                .and_then(|o| o.p99_ms);
            let warmth = m.warmth.clone().unwrap_or_default();
            ModuleRow {
                id: m.id.clone(),
                class: m.priority.clone(),
                release: m.release.clone(),
                trigger: m.trigger.clone(),
                requests_per_sec: rate.map(|r| r.per_sec),
                p99_ms: p99,
                cpu_used: rate.map(|r| r.cpu),
                cpu_share: m.controls.cpu_share,
                warmth: if warmth.level.is_empty() {
                    "-".into()
                } else {
                    warmth.level
                },
                warmth_target: if warmth.target.is_empty() {
                    "-".into()
                } else {
                    warmth.target
                },
                state: state_word(m).into(),
                running: m.running,
                queued: m.queued,
                concurrency: m.controls.concurrency,
                requests: m.requests,
                expected_per_min: warmth.calls_per_day.map(|d| d / 1440.0),
                observed_per_min: rate.map(|r| r.per_sec * 60.0),
                p_within_1m: warmth.p_within_1m,
            }
        })
        .collect();
    rows.sort_by(|a, b| (class_rank(&a.class), &a.id).cmp(&(class_rank(&b.class), &b.id)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, modules: &[(&str, u64, u64)]) -> Sample {
        Sample {
            at_ms,
            modules: modules
                .iter()
                .map(|(id, requests, cpu_nanos)| {
                    (
                        (*id).to_owned(),
                        Counters {
                            requests: *requests,
                            cpu_nanos: *cpu_nanos,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn rates_are_differences_over_the_window_shared_by_close_polls() {
        let mut rates = Rates::default();
        assert!(rates.update(sample(0, &[("a", 0, 0)]), 2.0).is_empty());
        let r = rates.update(sample(2_000, &[("a", 100, 1_000_000_000)]), 2.0)["a"];
        assert_eq!(r.per_sec, 50.0);
        assert_eq!(r.cpu, 0.25, "0.5 s of CPU per second on two cores");
        let again = rates.update(sample(2_100, &[("a", 900, 0)]), 2.0)["a"];
        assert_eq!(again, r, "a poll within the window reuses the rates");
        let after_switch = rates.update(sample(3_000, &[("a", 10, 0)]), 2.0)["a"];
        assert_eq!(
            after_switch.per_sec, 10.0,
            "a counter that went down restarts"
        );
    }
}
