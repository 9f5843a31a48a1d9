//! The node-wide part of the plan: how much of its memory budget the predictor gives back,
//! where inference may run, and whether background optimization may run; and the decisions
//! when any of them changes.
//!
//! The decision worth knowing: these rules read the modes, not the probes, so they inherit the
//! modes' hysteresis. The warm budget used to be read by the warmth controller from whatever
//! plan was last recorded, with its own constants; here it is one more allowance of the plan,
//! decided and logged with the others and pushed to the predictor by the node's actuators.

use super::{
    Change, Decision, InferenceConfig, InferencePlan, Modes, NodeSignals, OptimizationPlan, Plan,
    PolicyConfig, Reason, Scope,
};

/// Whether background optimization may run under these modes: it waits during a surge (its
/// compiles, though niced, take cores and memory bandwidth the critical modules want), under
/// memory pressure (a Cranelift compile of a large component takes hundreds of MB) and in power
/// save (a compile is seconds of full-core work that can wait for the charger). Baseline code
/// keeps serving meanwhile. Inherits the modes' hysteresis.
pub fn optimization_plan(modes: Modes, config: &PolicyConfig) -> OptimizationPlan {
    if !config.postpone_optimization {
        return OptimizationPlan::default();
    }
    let reasons: Vec<&str> = [
        (modes.surge, "surge"),
        (modes.memory_pressure, "memory pressure"),
        (modes.power_save, "power save"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    OptimizationPlan {
        postponed: (!reasons.is_empty()).then(|| reasons.join(", ")),
    }
}

/// Share of the predictor's memory budget to give back under these modes: the larger of the
/// configured releases of the active modes (memory pressure 0.5, power save 0.25 by default),
/// 0 when neither is on.
pub fn warm_pressure(modes: Modes, config: &PolicyConfig) -> f64 {
    let mut pressure: f64 = 0.0;
    if modes.memory_pressure {
        pressure = pressure.max(config.memory_pressure_warm_release);
    }
    if modes.power_save {
        pressure = pressure.max(config.power_save_warm_release);
    }
    pressure.clamp(0.0, 1.0)
}

/// Where inference may run: the CPU only in power save (if configured), and accelerators
/// marked saturated at `saturation` inferences in flight until they are down to half of it
/// (`last` is the previous tick's answer: the marks are the hysteresis).
pub fn inference_plan(
    modes: Modes,
    signals: &NodeSignals,
    config: &InferenceConfig,
    last: &InferencePlan,
) -> InferencePlan {
    let mut saturated = last.saturated.clone();
    if config.saturation > 0 {
        for (backend, &in_flight) in &signals.accelerators_in_flight {
            let marked = saturated.contains(backend);
            if !marked && in_flight >= config.saturation {
                saturated.insert(backend.clone());
            } else if marked && in_flight <= config.saturation / 2 {
                saturated.remove(backend);
            }
        }
    }
    InferencePlan {
        cpu_only: modes.power_save && config.cpu_only_on_power_save,
        saturated,
    }
}

/// The node-wide decisions: differences to `last` (a node starts with its whole budget and
/// inference on the best device).
pub(super) fn diff_node(
    now_ms: u64,
    last: &Plan,
    plan: &Plan,
    signals: &NodeSignals,
    config: &PolicyConfig,
    decisions: &mut Vec<Decision>,
) {
    let mut push = |scope: Scope, change: Change, reason: Reason| {
        decisions.push(Decision {
            at_ms: now_ms,
            scope,
            change,
            reason,
        });
    };
    if last.warm_pressure != plan.warm_pressure {
        push(
            Scope::Node,
            Change::WarmBudget {
                from: 1.0 - last.warm_pressure,
                to: 1.0 - plan.warm_pressure,
            },
            Reason::Modes(plan.modes),
        );
    }
    if last.optimization != plan.optimization {
        push(
            Scope::Node,
            Change::Optimization {
                postponed: plan.optimization.postponed.clone(),
            },
            Reason::Modes(plan.modes),
        );
    }
    let (old, new) = (&last.inference, &plan.inference);
    if old.cpu_only != new.cpu_only {
        push(
            Scope::Inference,
            Change::InferenceCpuOnly {
                cpu_only: new.cpu_only,
            },
            Reason::PowerSave(new.cpu_only),
        );
    }
    let marked = new.saturated.difference(&old.saturated).map(|b| (b, true));
    let cleared = old.saturated.difference(&new.saturated).map(|b| (b, false));
    for (backend, saturated) in marked.chain(cleared) {
        push(
            Scope::Inference,
            Change::Saturation {
                backend: backend.clone(),
                saturated,
            },
            Reason::InFlight {
                in_flight: signals
                    .accelerators_in_flight
                    .get(backend)
                    .copied()
                    .unwrap_or(0),
                limit: config.inference.saturation,
            },
        );
    }
}
