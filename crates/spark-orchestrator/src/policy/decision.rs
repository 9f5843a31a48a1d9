//! Decisions: what the policy changed ([`Change`]), where ([`Scope`]) and why ([`Reason`]),
//! as types, so tests and readers match on what happened rather than on wording.
//!
//! The decision worth knowing: the text is part of the interface. Operators read decisions in
//! `spark status`, `/v1/orchestrator` and the log, and scripts grep them, so each type renders
//! (`Display`) exactly the sentence the policy used to write, and a [`Decision`] serializes
//! as `{at_ms, scope, change, reason}` with those sentences: the JSON is the same as when the
//! fields were strings. Readers of that JSON get [`DecisionText`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Modes, PowerSignal};

/// One change the policy made, when, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The tick's time (Unix ms, the caller's clock).
    pub at_ms: u64,
    /// What it applies to.
    pub scope: Scope,
    /// What changed.
    pub change: Change,
    /// Why.
    pub reason: Reason,
}

/// What a decision applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The node as a whole (modes, the warm budget): `node`.
    Node,
    /// The inference host: `nn`.
    Inference,
    /// One module, by id.
    Module(String),
}

/// A node-wide mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Critical modules under pressure: the background is throttled.
    Surge,
    /// Memory pressure high: warm pools and background concurrency shrink.
    MemoryPressure,
    /// Low battery: warm pools emptied, background paced.
    PowerSave,
    /// Uplink round trip high: background outbound requests spaced out.
    UplinkSlow,
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A mode switched on or off.
    Mode {
        /// Which mode.
        mode: Mode,
        /// `true`: it started; `false`: it ended.
        active: bool,
    },
    /// A critical module's calm request rate was re-learned (req/s).
    Baseline {
        /// The old baseline, requests/s.
        from: f64,
        /// The new one (the settled rate), requests/s.
        to: f64,
    },
    /// CPU share (`None`: unlimited).
    CpuShare {
        /// Share before, a fraction (0..=1) of the node's CPU.
        from: Option<f64>,
        /// Share now, a fraction (0..=1) of the node's CPU.
        to: Option<f64>,
    },
    /// Admission caps: (concurrency, queue).
    Admission {
        /// Caps before.
        from: (u32, u32),
        /// Caps now.
        to: (u32, u32),
    },
    /// Ready instances the predictor may keep (`None`: its own judgement).
    WarmLimit {
        /// Limit before.
        from: Option<u32>,
        /// Limit now.
        to: Option<u32>,
    },
    /// Multiplier on a job's period.
    JobPacing {
        /// Multiplier before (1 = as configured).
        from: f64,
        /// Multiplier now.
        to: f64,
    },
    /// Minimum gap between outbound requests, ms.
    OutboundGap {
        /// Gap before, ms (0 = none).
        from_ms: u64,
        /// Gap now, ms (0 = none).
        to_ms: u64,
    },
    /// Share of the predictor's memory budget it may use.
    WarmBudget {
        /// Usable share before (0..=1).
        from: f64,
        /// Usable share now (0..=1): 1 minus the plan's `warm_pressure`.
        to: f64,
    },
    /// Background optimization postponed (with why), or allowed again (`None`).
    Optimization {
        /// The modes it waits for; `None`: it may run again.
        postponed: Option<String>,
    },
    /// Inference on the CPU only, or on the best device again.
    InferenceCpuOnly {
        /// `true`: CPU only; `false`: the best device again.
        cpu_only: bool,
    },
    /// An accelerator marked saturated (inference moves on), or no longer.
    Saturation {
        /// The accelerator backend's name.
        backend: String,
        /// `true`: marked saturated; `false`: cleared.
        saturated: bool,
    },
}

/// One sign of pressure at a critical module.
#[derive(Debug, Clone, PartialEq)]
pub enum Pressure {
    /// Requests waiting right now.
    Queued(u32),
    /// Requests refused by admission in the interval.
    Rejected(u64),
    /// p99 above `surge_latency_factor` times its calm baseline.
    SlowP99 {
        /// The interval's p99, ms.
        p99_ms: f64,
        /// The calm p99 baseline, ms (at least 1).
        baseline_ms: f64,
    },
    /// Request rate above `surge_rate_factor` times its calm baseline.
    RateJump {
        /// The interval's rate, requests/s.
        rate: f64,
        /// The calm rate, requests/s (at least 1).
        baseline: f64,
    },
}

/// A critical module under pressure and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ModulePressure {
    /// The critical module's id.
    pub module: String,
    /// Its signs, in the order queued, rejected, slow p99, rate jump.
    pub signs: Vec<Pressure>,
}

/// Why it changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Critical modules under pressure (a surge started).
    CriticalPressure(Vec<ModulePressure>),
    /// Critical load back to its baseline with nothing queued (a surge ended).
    SurgeOver,
    /// Memory pressure reached its high mark (memory-pressure mode started).
    MemoryHigh {
        /// The pressure seen (0..=1).
        pressure: f64,
        /// The configured high mark (0..=1).
        high: f64,
    },
    /// Memory pressure at or below its low mark, or unknown (the mode ended).
    MemoryRelieved,
    /// Discharging at or below the low battery mark (power save started).
    BatteryLow {
        /// The power signal seen.
        power: PowerSignal,
        /// The configured low mark, percent.
        low_percent: f64,
    },
    /// On mains, charging, or charged to the ok mark (power save ended).
    PowerBack,
    /// Uplink round trip at or above its slow mark (slow-uplink mode started).
    UplinkSlow {
        /// The round trip seen, ms.
        latency_ms: f64,
        /// The configured slow mark, ms.
        slow_ms: f64,
    },
    /// Uplink round trip at or below its ok mark, or unknown (the mode ended).
    UplinkBack,
    /// A surge steady without pressure for this many intervals: the new normal.
    Settled {
        /// The configured `settle_ticks`.
        ticks: u32,
    },
    /// The modes in force (a module's allowances follow them).
    Modes(Modes),
    /// Power save started (`true`) or ended.
    PowerSave(bool),
    /// Inferences in flight on an accelerator against the saturation limit.
    InFlight {
        /// Inferences in flight on the backend now.
        in_flight: u32,
        /// The configured saturation limit.
        limit: u32,
    },
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Node => f.write_str("node"),
            Scope::Inference => f.write_str("nn"),
            Scope::Module(id) => f.write_str(id),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Surge => "surge",
            Mode::MemoryPressure => "memory pressure",
            Mode::PowerSave => "power save",
            Mode::UplinkSlow => "slow uplink",
        })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Mode { mode, active } => {
                write!(f, "{mode} {}", if *active { "started" } else { "ended" })
            }
            Change::Baseline { from, to } => write!(f, "baseline {from:.0} -> {to:.0} req/s"),
            Change::CpuShare { from, to } => {
                write!(f, "cpu share {} -> {}", share(*from), share(*to))
            }
            Change::Admission { from, to } => write!(
                f,
                "concurrency {}/queue {} -> {}/{}",
                from.0, from.1, to.0, to.1
            ),
            Change::WarmLimit { from, to } => {
                write!(f, "warm limit {} -> {}", limit(*from), limit(*to))
            }
            Change::JobPacing { from, to } => write!(f, "job pacing x{from} -> x{to}"),
            Change::OutboundGap { from_ms, to_ms } => {
                write!(f, "outbound gap {from_ms} ms -> {to_ms} ms")
            }
            Change::WarmBudget { from, to } => {
                write!(f, "warm budget {:.0}% -> {:.0}%", from * 100.0, to * 100.0)
            }
            Change::Optimization {
                postponed: Some(modes),
            } => write!(f, "background optimization postponed ({modes})"),
            Change::Optimization { postponed: None } => {
                f.write_str("background optimization resumed")
            }
            Change::InferenceCpuOnly { cpu_only: true } => f.write_str("inference on CPU only"),
            Change::InferenceCpuOnly { cpu_only: false } => {
                f.write_str("inference on the best device")
            }
            Change::Saturation {
                backend,
                saturated: true,
            } => write!(f, "{backend} saturated: inference moves on"),
            Change::Saturation {
                backend,
                saturated: false,
            } => write!(f, "{backend} no longer saturated"),
        }
    }
}

impl fmt::Display for Pressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pressure::Queued(n) => write!(f, "{n} queued"),
            Pressure::Rejected(n) => write!(f, "{n} rejected"),
            Pressure::SlowP99 {
                p99_ms,
                baseline_ms,
            } => write!(f, "p99 {p99_ms:.1} ms vs baseline {baseline_ms:.1} ms"),
            Pressure::RateJump { rate, baseline } => {
                write!(f, "{rate:.0} req/s vs baseline {baseline:.0} req/s")
            }
        }
    }
}

impl fmt::Display for ModulePressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "critical module '{}': ", self.module)?;
        write_joined(f, &self.signs, ", ")
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::CriticalPressure(modules) => write_joined(f, modules, "; "),
            Reason::SurgeOver => f.write_str("critical load back to its baseline, no queueing"),
            Reason::MemoryHigh { pressure, high } => {
                write!(f, "memory pressure {pressure:.2} >= {high:.2}")
            }
            Reason::MemoryRelieved => f.write_str("memory pressure back below its low mark"),
            Reason::BatteryLow { power, low_percent } => {
                match power {
                    PowerSignal::Battery { percent, .. } => {
                        write!(f, "on battery at {percent:.0}%")?
                    }
                    PowerSignal::Mains => f.write_str("on mains")?,
                }
                write!(f, " (low mark {low_percent:.0}%)")
            }
            Reason::PowerBack => f.write_str("back on mains or charged"),
            Reason::UplinkSlow {
                latency_ms,
                slow_ms,
            } => write!(f, "uplink round trip {latency_ms:.0} ms >= {slow_ms:.0} ms"),
            Reason::UplinkBack => f.write_str("uplink round trip back to normal"),
            Reason::Settled { ticks } => write!(
                f,
                "load steady for {ticks} intervals without pressure: the new normal"
            ),
            Reason::Modes(modes) => {
                let active: Vec<Mode> = [
                    (modes.surge, Mode::Surge),
                    (modes.memory_pressure, Mode::MemoryPressure),
                    (modes.power_save, Mode::PowerSave),
                    (modes.uplink_slow, Mode::UplinkSlow),
                ]
                .into_iter()
                .filter_map(|(on, mode)| on.then_some(mode))
                .collect();
                if active.is_empty() {
                    f.write_str("no constraint active: restored")
                } else {
                    f.write_str("active: ")?;
                    write_joined(f, &active, ", ")
                }
            }
            Reason::PowerSave(true) => f.write_str("power save"),
            Reason::PowerSave(false) => f.write_str("power save ended"),
            Reason::InFlight { in_flight, limit } => {
                write!(f, "{in_flight} inferences in flight (limit {limit})")
            }
        }
    }
}

fn write_joined<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    sep: &str,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

fn share(s: Option<f64>) -> String {
    s.map_or("unlimited".into(), |s| format!("{:.0}%", s * 100.0))
}

fn limit(l: Option<u32>) -> String {
    l.map_or("free".into(), |l| l.to_string())
}

/// A decision as text, the way the admin API serves it and `spark status` reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionText {
    /// The tick's time (Unix ms).
    pub at_ms: u64,
    /// `node`, `nn` or a module id.
    pub scope: String,
    /// The change as a sentence (`cpu share unlimited -> 10%`).
    pub change: String,
    /// The reason as a sentence.
    pub reason: String,
}

impl From<&Decision> for DecisionText {
    fn from(d: &Decision) -> DecisionText {
        DecisionText {
            at_ms: d.at_ms,
            scope: d.scope.to_string(),
            change: d.change.to_string(),
            reason: d.reason.to_string(),
        }
    }
}

impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        DecisionText::from(self).serialize(serializer)
    }
}
