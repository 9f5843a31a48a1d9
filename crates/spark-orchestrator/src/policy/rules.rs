//! The rules: modes from signals (with hysteresis), then each module's allowances from the
//! modes and its priority class, then the node-wide ones ([`super::node`]), then the decisions
//! as differences to the previous plan.

use std::collections::BTreeMap;

use spark_manifest::Priority;

use super::node::{diff_node, inference_plan, optimization_plan, warm_pressure};
use super::{
    Baseline, Change, Decision, Mode, Modes, ModuleObservation, ModulePlan, ModulePressure,
    NodeSignals, Plan, PolicyConfig, PolicyState, PowerSignal, Pressure, Reason, Scope,
};

/// Baselines need this many calm intervals before rate or latency jumps count.
const BASELINE_MIN_SAMPLES: u32 = 3;
/// Rates below this (requests/s) are treated as this, so an idle module's first requests are
/// not a "surge".
const MIN_BASELINE_RATE: f64 = 1.0;
/// p99 baselines below this (ms) are treated as this.
const MIN_BASELINE_P99_MS: f64 = 1.0;

/// One policy tick. See the module docs of [`super`].
pub fn plan(
    now_ms: u64,
    signals: &NodeSignals,
    modules: &[ModuleObservation],
    config: &PolicyConfig,
    state: &mut PolicyState,
) -> (Plan, Vec<Decision>) {
    let mut decisions = Vec::new();
    let (modes, pressured) = update_modes(now_ms, signals, modules, config, state, &mut decisions);
    if !modes.surge {
        learn_baselines(modules, &pressured, config, state);
    }
    let last = state.last.take().unwrap_or_default();
    // The background modules' total weight, once: each one's share is its part of it.
    let background_weight: u32 = modules
        .iter()
        .filter(|o| o.priority == Priority::Background)
        .map(|o| o.weight)
        .sum();
    let plan = Plan {
        modes,
        modules: modules
            .iter()
            .map(|m| {
                let plan = module_plan(m, modes, background_weight, config);
                (m.id.clone(), plan)
            })
            .collect(),
        warm_pressure: warm_pressure(modes, config),
        inference: inference_plan(modes, signals, &config.inference, &last.inference),
        optimization: optimization_plan(modes, config),
    };
    diff_modules(now_ms, &last, &plan, &mut decisions);
    diff_node(now_ms, &last, &plan, signals, config, &mut decisions);
    state.last = Some(plan.clone());
    (plan, decisions)
}

fn update_modes(
    now_ms: u64,
    signals: &NodeSignals,
    modules: &[ModuleObservation],
    config: &PolicyConfig,
    state: &mut PolicyState,
    decisions: &mut Vec<Decision>,
) -> (Modes, Vec<String>) {
    let surge = surge_signals(modules, config, &state.baselines);
    let surging = !surge.pressured.is_empty() || !surge.jumped.is_empty();
    if state.surge.active {
        rebaseline_if_settled(modules, &surge.pressured, config, state, now_ms, decisions);
    }
    let (calm, why) = (surge.calm, surge.why);
    let mut unsettled = surge.pressured;
    unsettled.extend(surge.jumped);
    let mut flip = |mode: Mode, changed: Option<bool>, on_reason: Reason, off_reason: Reason| {
        if let Some(active) = changed {
            decisions.push(Decision {
                at_ms: now_ms,
                scope: Scope::Node,
                change: Change::Mode { mode, active },
                reason: if active { on_reason } else { off_reason },
            });
        }
    };
    let changed = state.surge.update(
        surging,
        calm,
        config.surge_enter_ticks,
        config.surge_exit_ticks,
    );
    flip(
        Mode::Surge,
        changed,
        Reason::CriticalPressure(why),
        Reason::SurgeOver,
    );

    let pressure = signals.memory_pressure;
    let changed = state.memory.update(
        pressure.is_some_and(|p| p >= config.memory_high),
        pressure.is_none_or(|p| p <= config.memory_low),
        config.enter_ticks,
        config.exit_ticks,
    );
    flip(
        Mode::MemoryPressure,
        changed,
        Reason::MemoryHigh {
            pressure: pressure.unwrap_or(0.0),
            high: config.memory_high,
        },
        Reason::MemoryRelieved,
    );

    let (low, ok) = match signals.power {
        PowerSignal::Mains => (false, true),
        PowerSignal::Battery { percent, charging } => (
            !charging && percent <= config.battery_low_percent,
            charging || percent >= config.battery_ok_percent,
        ),
    };
    let changed = state
        .power_save
        .update(low, ok, config.enter_ticks, config.exit_ticks);
    flip(
        Mode::PowerSave,
        changed,
        Reason::BatteryLow {
            power: signals.power,
            low_percent: config.battery_low_percent,
        },
        Reason::PowerBack,
    );

    let latency = signals.uplink_latency_ms;
    let changed = state.uplink.update(
        latency.is_some_and(|l| l >= config.uplink_slow_ms),
        latency.is_none_or(|l| l <= config.uplink_ok_ms),
        config.enter_ticks,
        config.exit_ticks,
    );
    flip(
        Mode::UplinkSlow,
        changed,
        Reason::UplinkSlow {
            latency_ms: latency.unwrap_or(0.0),
            slow_ms: config.uplink_slow_ms,
        },
        Reason::UplinkBack,
    );

    let modes = Modes {
        surge: state.surge.active,
        memory_pressure: state.memory.active,
        power_save: state.power_save.active,
        uplink_slow: state.uplink.active,
    };
    (modes, unsettled)
}

/// What the critical modules say about a surge.
struct SurgeSignals {
    /// Modules queueing, refusing, or slow compared with their baseline.
    pressured: Vec<String>,
    /// Modules whose request rate jumped above their baseline.
    jumped: Vec<String>,
    /// Every critical module is calm (no pressure, rate near its baseline).
    calm: bool,
    why: Vec<ModulePressure>,
}

fn surge_signals(
    modules: &[ModuleObservation],
    config: &PolicyConfig,
    baselines: &BTreeMap<String, Baseline>,
) -> SurgeSignals {
    let mut reasons = Vec::new();
    let mut pressured = Vec::new();
    let mut jumped = Vec::new();
    let mut all_calm = true;
    for m in modules.iter().filter(|m| m.priority == Priority::Critical) {
        let base = baselines.get(&m.id).copied().unwrap_or_default();
        let known = base.samples >= BASELINE_MIN_SAMPLES;
        let base_rate = base.rate.max(MIN_BASELINE_RATE);
        let base_p99 = base.p99_ms.max(MIN_BASELINE_P99_MS);
        let mut pressure = Vec::new();
        let mut hard = false;
        if m.queued > 0 {
            pressure.push(Pressure::Queued(m.queued));
            hard = true;
        }
        if m.rejected > 0 {
            pressure.push(Pressure::Rejected(m.rejected));
            hard = true;
        }
        if let Some(p99) = m
            .p99_ms
            .filter(|&p| known && p > config.surge_latency_factor * base_p99)
        {
            pressure.push(Pressure::SlowP99 {
                p99_ms: p99,
                baseline_ms: base_p99,
            });
        }
        if !pressure.is_empty() {
            pressured.push(m.id.clone());
        }
        let rate = m.rate();
        if known && rate > config.surge_rate_factor * base_rate {
            pressure.push(Pressure::RateJump {
                rate,
                baseline: base_rate,
            });
            jumped.push(m.id.clone());
        }
        // Ending a surge looks only at what throttling cannot fix: queueing, refusals and the
        // request rate. Latency is an entry signal only; with the background throttled it
        // recovers by design, and a lone slow request must not hold the surge open.
        let calm = !hard && (!known || rate <= config.calm_rate_factor * base_rate);
        all_calm &= calm;
        if !pressure.is_empty() {
            reasons.push(ModulePressure {
                module: m.id.clone(),
                signs: pressure,
            });
        }
    }
    SurgeSignals {
        pressured,
        jumped,
        calm: all_calm,
        why: reasons,
    }
}

/// A surge that has become the new normal: during a surge the baselines do not learn, so a
/// critical module whose load stepped up for good would keep the background throttled
/// forever. After `settle_ticks` intervals of surge without any pressure and with a steady
/// rate, the current rate becomes the baseline (the surge then ends through the normal exit).
fn rebaseline_if_settled(
    modules: &[ModuleObservation],
    pressured: &[String],
    config: &PolicyConfig,
    state: &mut PolicyState,
    now_ms: u64,
    decisions: &mut Vec<Decision>,
) {
    for m in modules
        .iter()
        .filter(|m| m.priority == Priority::Critical && m.requests > 0)
    {
        let base = state.baselines.entry(m.id.clone()).or_default();
        let steady = pressured.is_empty()
            && (m.rate() - base.settling_rate).abs()
                <= 0.25 * base.settling_rate.max(MIN_BASELINE_RATE);
        if steady {
            base.settled_ticks += 1;
        } else {
            base.settled_ticks = 0;
            base.settling_rate = m.rate();
        }
        if base.settled_ticks >= config.settle_ticks {
            decisions.push(Decision {
                at_ms: now_ms,
                scope: Scope::Module(m.id.clone()),
                change: Change::Baseline {
                    from: base.rate,
                    to: m.rate(),
                },
                reason: Reason::Settled {
                    ticks: config.settle_ticks,
                },
            });
            base.rate = m.rate();
            base.settled_ticks = 0;
        }
    }
}

/// Baselines learn only from calm intervals with traffic: a module under pressure would teach
/// the policy that pressure is normal, and an idle one that any traffic is a surge.
fn learn_baselines(
    modules: &[ModuleObservation],
    pressured: &[String],
    config: &PolicyConfig,
    state: &mut PolicyState,
) {
    let calm = modules.iter().filter(|m| {
        m.priority == Priority::Critical && m.requests > 0 && !pressured.contains(&m.id)
    });
    for m in calm {
        let base = state.baselines.entry(m.id.clone()).or_default();
        let a = if base.samples == 0 {
            1.0
        } else {
            config.baseline_alpha
        };
        base.rate += a * (m.rate() - base.rate);
        if let Some(p99) = m.p99_ms {
            let b = if base.p99_ms == 0.0 {
                1.0
            } else {
                config.baseline_alpha
            };
            base.p99_ms += b * (p99 - base.p99_ms);
        }
        base.samples = base.samples.saturating_add(1);
    }
}

fn module_plan(
    m: &ModuleObservation,
    modes: Modes,
    background_weight: u32,
    config: &PolicyConfig,
) -> ModulePlan {
    let mut plan = ModulePlan {
        cpu_share: None,
        concurrency: m.concurrency,
        queue: m.queue,
        warm_limit: None,
        job_pacing: 1.0,
        outbound_interval_ms: 0,
    };
    let background = m.priority == Priority::Background;
    if background && (modes.surge || modes.power_save) {
        plan.cpu_share = Some(background_min_share(m, background_weight, config));
    }
    if background && modes.surge {
        plan.concurrency = (m.concurrency / 4).max(1);
        plan.queue = 0;
    }
    if modes.memory_pressure {
        match m.priority {
            Priority::Background => {
                plan.warm_limit = Some(0);
                plan.concurrency = (plan.concurrency / 2).max(1);
            }
            Priority::Normal => plan.warm_limit = Some(1),
            Priority::Critical => {}
        }
    }
    if modes.power_save {
        if m.priority != Priority::Critical {
            plan.warm_limit = Some(0);
        }
        if background && m.job {
            plan.job_pacing = config.power_save_job_pacing;
        }
    }
    if background && modes.uplink_slow {
        plan.outbound_interval_ms = config.slow_uplink_outbound_interval_ms;
    }
    plan
}

/// This background module's part of the background minimum share, by weight (`total`: all
/// background modules' weight).
fn background_min_share(m: &ModuleObservation, total: u32, config: &PolicyConfig) -> f64 {
    config.background_min_share * f64::from(m.weight) / f64::from(total.max(1))
}

fn diff_modules(now_ms: u64, last: &Plan, plan: &Plan, decisions: &mut Vec<Decision>) {
    for (id, new) in &plan.modules {
        let Some(old) = last.modules.get(id) else {
            continue;
        };
        let mut push = |change: Change| {
            decisions.push(Decision {
                at_ms: now_ms,
                scope: Scope::Module(id.clone()),
                change,
                reason: Reason::Modes(plan.modes),
            });
        };
        if old.cpu_share != new.cpu_share {
            push(Change::CpuShare {
                from: old.cpu_share,
                to: new.cpu_share,
            });
        }
        if old.concurrency != new.concurrency || old.queue != new.queue {
            push(Change::Admission {
                from: (old.concurrency, old.queue),
                to: (new.concurrency, new.queue),
            });
        }
        if old.warm_limit != new.warm_limit {
            push(Change::WarmLimit {
                from: old.warm_limit,
                to: new.warm_limit,
            });
        }
        if old.job_pacing != new.job_pacing {
            push(Change::JobPacing {
                from: old.job_pacing,
                to: new.job_pacing,
            });
        }
        if old.outbound_interval_ms != new.outbound_interval_ms {
            push(Change::OutboundGap {
                from_ms: old.outbound_interval_ms,
                to_ms: new.outbound_interval_ms,
            });
        }
    }
}
