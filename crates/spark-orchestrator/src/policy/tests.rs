//! Every trigger, its hysteresis, and the restore, on scripted ticks.

use super::*;

const TICK_MS: u64 = 500;

fn module(id: &str, priority: Priority) -> ModuleObservation {
    ModuleObservation {
        id: id.into(),
        priority,
        weight: 1,
        job: false,
        concurrency: 16,
        queue: 64,
        requests: 0,
        rejected: 0,
        queued: 0,
        in_flight: 0,
        cpu_seconds: 0.0,
        p99_ms: None,
        window_secs: TICK_MS as f64 / 1000.0,
    }
}

/// A node with one module per class; `critical_rate` requests/s at the critical one.
fn node(critical_rate: f64) -> Vec<ModuleObservation> {
    let mut critical = module("shop", Priority::Critical);
    critical.requests = (critical_rate * critical.window_secs) as u64;
    critical.p99_ms = Some(4.0);
    let mut job = module("sync", Priority::Background);
    job.job = true;
    vec![
        critical,
        module("api", Priority::Normal),
        module("reports", Priority::Background),
        job,
    ]
}

struct Driver {
    state: PolicyState,
    config: PolicyConfig,
    now: u64,
}

impl Driver {
    fn new() -> Driver {
        Driver {
            state: PolicyState::default(),
            config: PolicyConfig::default(),
            now: 0,
        }
    }

    fn tick(
        &mut self,
        signals: &NodeSignals,
        modules: &[ModuleObservation],
    ) -> (Plan, Vec<Decision>) {
        self.now += TICK_MS;
        plan(self.now, signals, modules, &self.config, &mut self.state)
    }

    fn ticks(
        &mut self,
        n: usize,
        signals: &NodeSignals,
        modules: &[ModuleObservation],
    ) -> (Plan, Vec<Decision>) {
        let mut all = Vec::new();
        let mut last = None;
        for _ in 0..n {
            let (plan, decisions) = self.tick(signals, modules);
            all.extend(decisions);
            last = Some(plan);
        }
        (last.expect("at least one tick"), all)
    }
}

fn calm() -> NodeSignals {
    NodeSignals {
        cpus: 2.0,
        cpu_utilisation: Some(0.3),
        ..NodeSignals::default()
    }
}

#[test]
fn a_rate_surge_throttles_background_and_the_end_restores_it() {
    let mut d = Driver::new();
    let (plan, decisions) = d.ticks(5, &calm(), &node(10.0));
    assert!(!plan.modes.surge);
    assert!(decisions.is_empty(), "{decisions:?}");
    assert_eq!(plan.modules["reports"].cpu_share, None);

    // Three times the calm rate: surge after two ticks.
    let (plan, _) = d.tick(&calm(), &node(30.0));
    assert!(!plan.modes.surge, "one tick is not enough");
    let (plan, decisions) = d.tick(&calm(), &node(30.0));
    assert!(plan.modes.surge);
    let started = decisions
        .iter()
        .find(|d| d.change.to_string() == "surge started")
        .expect("surge decision");
    assert!(
        started
            .reason
            .to_string()
            .contains("critical module 'shop'")
            && started.reason.to_string().contains("req/s"),
        "{}",
        started.reason
    );
    let reports = plan.modules["reports"];
    assert_eq!(
        reports.cpu_share,
        Some(0.05),
        "the 10% background minimum, split between two background modules"
    );
    assert_eq!((reports.concurrency, reports.queue), (4, 0));
    assert!(
        decisions.iter().any(|d| d.scope.to_string() == "reports"
            && d.change.to_string() == "cpu share unlimited -> 5%"),
        "{decisions:?}"
    );
    assert_eq!(
        plan.modules["shop"].cpu_share, None,
        "critical is never throttled"
    );
    assert_eq!(plan.modules["api"].cpu_share, None);

    // Still high: the surge holds (no flapping although nothing queues).
    let (plan, decisions) = d.ticks(20, &calm(), &node(30.0));
    assert!(plan.modes.surge);
    assert!(decisions.is_empty(), "{decisions:?}");

    // Back to the calm rate: the surge ends after the exit ticks, and shares are restored.
    let (plan, _) = d.ticks(5, &calm(), &node(10.0));
    assert!(plan.modes.surge, "five calm ticks are not yet enough");
    let (plan, decisions) = d.tick(&calm(), &node(10.0));
    assert!(!plan.modes.surge);
    assert!(
        decisions
            .iter()
            .any(|d| d.change.to_string() == "surge ended")
    );
    assert!(decisions.iter().any(|d| d.scope.to_string() == "reports"
        && d.change.to_string() == "cpu share 5% -> unlimited"
        && d.reason.to_string().contains("restored")));
    assert_eq!(
        plan.modules["reports"],
        ModulePlan {
            cpu_share: None,
            concurrency: 16,
            queue: 64,
            warm_limit: None,
            job_pacing: 1.0,
            outbound_interval_ms: 0
        }
    );
}

#[test]
fn queueing_at_a_critical_module_is_a_surge_even_without_a_baseline() {
    let mut d = Driver::new();
    let mut modules = node(10.0);
    modules[0].queued = 3;
    let (plan, decisions) = d.ticks(2, &calm(), &modules);
    assert!(plan.modes.surge);
    assert!(
        decisions[0].reason.to_string().contains("3 queued"),
        "{}",
        decisions[0].reason
    );
}

#[test]
fn latency_far_above_baseline_is_pressure() {
    let mut d = Driver::new();
    d.ticks(4, &calm(), &node(10.0));
    let mut slow = node(10.0);
    slow[0].p99_ms = Some(25.0);
    let (plan, decisions) = d.ticks(2, &calm(), &slow);
    assert!(plan.modes.surge);
    assert!(
        decisions[0]
            .reason
            .to_string()
            .contains("p99 25.0 ms vs baseline 4.0 ms"),
        "{}",
        decisions[0].reason
    );
}

#[test]
fn signals_that_alternate_never_flip_the_mode() {
    let mut d = Driver::new();
    d.ticks(4, &calm(), &node(10.0));
    for i in 0..40 {
        let rate = if i % 2 == 0 { 40.0 } else { 10.0 };
        let (plan, decisions) = d.tick(&calm(), &node(rate));
        assert!(
            !plan.modes.surge && decisions.is_empty(),
            "tick {i}: {decisions:?}"
        );
    }
}

#[test]
fn memory_pressure_shrinks_low_priority_first_with_hysteresis() {
    let mut d = Driver::new();
    let pressured = NodeSignals {
        memory_pressure: Some(0.7),
        ..calm()
    };
    let (plan, decisions) = d.ticks(2, &pressured, &node(10.0));
    assert!(plan.modes.memory_pressure);
    assert!(
        decisions
            .iter()
            .any(|d| d.change.to_string() == "memory pressure started"
                && d.reason.to_string().contains("0.70"))
    );
    assert_eq!(plan.modules["reports"].warm_limit, Some(0));
    assert_eq!(plan.modules["reports"].concurrency, 8);
    assert_eq!(plan.modules["api"].warm_limit, Some(1));
    assert_eq!(plan.modules["shop"].warm_limit, None);
    assert_eq!(plan.modules["shop"].concurrency, 16);

    // Between the marks: hold.
    let middle = NodeSignals {
        memory_pressure: Some(0.45),
        ..calm()
    };
    let (plan, _) = d.ticks(10, &middle, &node(10.0));
    assert!(plan.modes.memory_pressure);
    let relieved = NodeSignals {
        memory_pressure: Some(0.1),
        ..calm()
    };
    let (plan, _) = d.ticks(6, &relieved, &node(10.0));
    assert!(!plan.modes.memory_pressure);
    assert_eq!(plan.modules["reports"].warm_limit, None);
}

#[test]
fn low_battery_saves_power_until_charging() {
    let mut d = Driver::new();
    let low = NodeSignals {
        power: PowerSignal::Battery {
            percent: 15.0,
            charging: false,
        },
        ..calm()
    };
    let (plan, decisions) = d.ticks(2, &low, &node(10.0));
    assert!(plan.modes.power_save);
    assert!(
        decisions
            .iter()
            .any(|d| d.change.to_string() == "power save started"
                && d.reason.to_string().contains("15%"))
    );
    assert_eq!(
        plan.modules["sync"].job_pacing, 4.0,
        "background jobs paced down"
    );
    assert_eq!(
        plan.modules["reports"].job_pacing, 1.0,
        "HTTP modules have no job period"
    );
    assert_eq!(
        plan.modules["api"].warm_limit,
        Some(0),
        "pre-warming reduced"
    );
    assert_eq!(
        plan.modules["shop"].warm_limit, None,
        "except for critical modules"
    );
    assert!(plan.modules["reports"].cpu_share.is_some());

    let charging = NodeSignals {
        power: PowerSignal::Battery {
            percent: 16.0,
            charging: true,
        },
        ..calm()
    };
    let (plan, _) = d.ticks(6, &charging, &node(10.0));
    assert!(!plan.modes.power_save);
    assert_eq!(plan.modules["sync"].job_pacing, 1.0);

    // Mains never saves power; a battery above the low mark neither.
    let mut d = Driver::new();
    let fine = NodeSignals {
        power: PowerSignal::Battery {
            percent: 80.0,
            charging: false,
        },
        ..calm()
    };
    assert!(!d.ticks(10, &fine, &node(10.0)).0.modes.power_save);
}

#[test]
fn a_slow_uplink_paces_background_outbound_only() {
    let mut d = Driver::new();
    let slow = NodeSignals {
        uplink_latency_ms: Some(450.0),
        ..calm()
    };
    let (plan, decisions) = d.ticks(2, &slow, &node(10.0));
    assert!(plan.modes.uplink_slow);
    assert!(
        decisions
            .iter()
            .any(|d| d.change.to_string() == "slow uplink started"
                && d.reason.to_string().contains("450 ms"))
    );
    assert_eq!(plan.modules["reports"].outbound_interval_ms, 1000);
    assert_eq!(plan.modules["api"].outbound_interval_ms, 0);
    let fine = NodeSignals {
        uplink_latency_ms: Some(40.0),
        ..calm()
    };
    assert!(!d.ticks(6, &fine, &node(10.0)).0.modes.uplink_slow);
}

#[test]
fn unknown_signals_trigger_nothing() {
    let mut d = Driver::new();
    let (plan, decisions) = d.ticks(20, &NodeSignals::default(), &node(0.0));
    assert_eq!(plan.modes, Modes::default());
    assert!(decisions.is_empty());
}

#[test]
fn background_minimum_is_split_by_weight() {
    let mut d = Driver::new();
    let mut modules = node(10.0);
    modules[2].weight = 3;
    modules[0].queued = 1;
    let (plan, _) = d.ticks(2, &calm(), &modules);
    let share = |id: &str| plan.modules[id].cpu_share.unwrap();
    assert!((share("reports") - 0.075).abs() < 1e-9);
    assert!((share("sync") - 0.025).abs() < 1e-9);
}

#[test]
fn idle_intervals_do_not_make_the_first_traffic_a_surge() {
    let mut d = Driver::new();
    d.ticks(10, &calm(), &node(0.0));
    let (plan, decisions) = d.ticks(10, &calm(), &node(50.0));
    assert!(!plan.modes.surge, "{decisions:?}");
}

#[test]
fn a_lasting_step_up_without_pressure_becomes_the_new_baseline() {
    let mut d = Driver::new();
    d.ticks(5, &calm(), &node(10.0));
    let (plan, _) = d.ticks(2, &calm(), &node(40.0));
    assert!(plan.modes.surge);
    // Steady at 40 req/s, no queueing, latency fine: after the settle ticks the surge ends.
    let settle = d.config.settle_ticks;
    let mut ticks = 0;
    loop {
        let (plan, decisions) = d.tick(&calm(), &node(40.0));
        ticks += 1;
        assert!(plan.modes.surge);
        if decisions.iter().any(|d| {
            d.scope.to_string() == "shop" && d.change.to_string() == "baseline 10 -> 40 req/s"
        }) {
            break;
        }
        assert!(
            ticks <= settle + 2,
            "no re-baseline after {ticks} steady ticks"
        );
    }
    assert!(ticks >= settle, "re-baselined after only {ticks} ticks");
    let (plan, decisions) = d.ticks(6, &calm(), &node(40.0));
    assert!(!plan.modes.surge, "{decisions:?}");
    // A real surge on top of the new normal is still one.
    let (plan, _) = d.ticks(2, &calm(), &node(100.0));
    assert!(plan.modes.surge);
}

#[test]
fn a_lone_slow_request_does_not_hold_a_surge_open() {
    let mut d = Driver::new();
    d.ticks(5, &calm(), &node(10.0));
    assert!(d.ticks(2, &calm(), &node(30.0)).0.modes.surge);
    let mut ended = false;
    for i in 0..8 {
        let mut modules = node(10.0);
        if i % 3 == 0 {
            modules[0].p99_ms = Some(40.0);
        }
        ended |= !d.tick(&calm(), &modules).0.modes.surge;
    }
    assert!(
        ended,
        "the surge must end once the rate is back, outliers or not"
    );
}

#[test]
fn memory_pressure_and_power_save_give_back_part_of_the_warm_budget_tick_by_tick() {
    let mut d = Driver::new();
    let pressured = NodeSignals {
        memory_pressure: Some(0.7),
        ..calm()
    };
    let (plan, decisions) = d.tick(&pressured, &node(10.0));
    assert_eq!(plan.warm_pressure, 0.0, "one tick is not a mode yet");
    assert!(decisions.is_empty(), "{decisions:?}");
    let (plan, decisions) = d.tick(&pressured, &node(10.0));
    assert_eq!(
        plan.warm_pressure, 0.5,
        "memory pressure: half the budget back"
    );
    let budget = decisions
        .iter()
        .find(|d| d.scope == Scope::Node && matches!(d.change, Change::WarmBudget { .. }))
        .expect("the warm budget decision");
    assert_eq!(
        (
            budget.change.to_string(),
            budget.reason.to_string().as_str()
        ),
        (
            "warm budget 100% -> 50%".to_owned(),
            "active: memory pressure"
        )
    );

    // Power save on top: the larger release holds; nothing changes, nothing is logged.
    let both = NodeSignals {
        power: PowerSignal::Battery {
            percent: 10.0,
            charging: false,
        },
        ..pressured.clone()
    };
    let (plan, decisions) = d.ticks(2, &both, &node(10.0));
    assert!(plan.modes.power_save && plan.modes.memory_pressure);
    assert_eq!(plan.warm_pressure, 0.5);
    assert!(
        !decisions
            .iter()
            .any(|d| matches!(d.change, Change::WarmBudget { .. })),
        "{decisions:?}"
    );

    // Memory relieved (after its exit ticks), still on a low battery: a quarter back.
    let battery_only = NodeSignals {
        memory_pressure: Some(0.1),
        ..both.clone()
    };
    for tick in 1..=5 {
        let (plan, _) = d.tick(&battery_only, &node(10.0));
        assert_eq!(plan.warm_pressure, 0.5, "tick {tick}: hysteresis holds");
    }
    let (plan, decisions) = d.tick(&battery_only, &node(10.0));
    assert_eq!(plan.warm_pressure, 0.25);
    assert!(
        decisions.iter().any(|d| d.change
            == Change::WarmBudget {
                from: 0.5,
                to: 0.75
            }
            && d.reason.to_string() == "active: power save"),
        "{decisions:?}"
    );

    // Charging: after the exit ticks the whole budget is back.
    let charging = NodeSignals {
        power: PowerSignal::Battery {
            percent: 10.0,
            charging: true,
        },
        ..battery_only
    };
    let (plan, decisions) = d.ticks(6, &charging, &node(10.0));
    assert_eq!(plan.warm_pressure, 0.0);
    assert!(
        decisions
            .iter()
            .any(|d| d.change.to_string() == "warm budget 75% -> 100%"
                && d.reason.to_string() == "no constraint active: restored"),
        "{decisions:?}"
    );
}

#[test]
fn warm_pressure_is_the_larger_release_of_the_active_modes() {
    let config = PolicyConfig::default();
    let modes = |memory_pressure, power_save| Modes {
        memory_pressure,
        power_save,
        ..Modes::default()
    };
    assert_eq!(warm_pressure(modes(false, false), &config), 0.0);
    assert_eq!(warm_pressure(modes(true, false), &config), 0.5);
    assert_eq!(warm_pressure(modes(false, true), &config), 0.25);
    assert_eq!(warm_pressure(modes(true, true), &config), 0.5);
    let surge = Modes {
        surge: true,
        uplink_slow: true,
        ..Modes::default()
    };
    assert_eq!(
        warm_pressure(surge, &config),
        0.0,
        "surge and uplink leave warmth alone"
    );
}

#[test]
fn power_save_moves_inference_to_the_cpu_only_when_configured() {
    let low = NodeSignals {
        power: PowerSignal::Battery {
            percent: 15.0,
            charging: false,
        },
        ..calm()
    };
    // A node without an inference host: nothing to steer, nothing logged.
    let mut d = Driver::new();
    let (plan, decisions) = d.ticks(2, &low, &node(10.0));
    assert!(plan.modes.power_save && !plan.inference.cpu_only);
    assert!(!decisions.iter().any(|d| d.scope == Scope::Inference));

    let mut d = Driver::new();
    d.config.inference.cpu_only_on_power_save = true;
    let (plan, _) = d.tick(&low, &node(10.0));
    assert!(!plan.inference.cpu_only, "follows the mode's hysteresis");
    let (plan, decisions) = d.tick(&low, &node(10.0));
    assert!(plan.inference.cpu_only);
    let moved: Vec<String> = decisions
        .iter()
        .filter(|d| d.scope == Scope::Inference)
        .map(|d| format!("{}: {} ({})", d.scope, d.change, d.reason))
        .collect();
    assert_eq!(moved, ["nn: inference on CPU only (power save)"]);
    let (plan, decisions) = d.ticks(6, &calm(), &node(10.0));
    assert!(!plan.inference.cpu_only);
    assert!(decisions.iter().any(|d| d.scope == Scope::Inference
        && d.change.to_string() == "inference on the best device"
        && d.reason.to_string() == "power save ended"));
}

#[test]
fn a_busy_accelerator_is_saturated_until_half_its_limit() {
    let mut d = Driver::new();
    d.config.inference.saturation = 4;
    let busy = |n: u32| NodeSignals {
        accelerators_in_flight: [("ort-webgpu".to_owned(), n), ("ort-npu".to_owned(), 0)]
            .into_iter()
            .collect(),
        ..calm()
    };
    let (plan, decisions) = d.tick(&busy(3), &node(10.0));
    assert!(plan.inference.saturated.is_empty());
    assert!(decisions.is_empty(), "{decisions:?}");
    let (plan, decisions) = d.tick(&busy(4), &node(10.0));
    assert_eq!(
        plan.inference.saturated.iter().collect::<Vec<_>>(),
        ["ort-webgpu"]
    );
    assert_eq!(
        decisions
            .iter()
            .map(|d| format!("{}: {} ({})", d.scope, d.change, d.reason))
            .collect::<Vec<_>>(),
        ["nn: ort-webgpu saturated: inference moves on (4 inferences in flight (limit 4))"]
    );
    for n in [3, 5, 3] {
        let (plan, decisions) = d.tick(&busy(n), &node(10.0));
        assert!(plan.inference.saturated.contains("ort-webgpu"), "at {n}");
        assert!(decisions.is_empty(), "{decisions:?}");
    }
    let (plan, decisions) = d.tick(&busy(2), &node(10.0));
    assert!(plan.inference.saturated.is_empty());
    assert_eq!(
        decisions[0].change,
        Change::Saturation {
            backend: "ort-webgpu".into(),
            saturated: false
        }
    );
    assert_eq!(
        decisions[0].change.to_string(),
        "ort-webgpu no longer saturated"
    );
}

#[test]
fn decisions_serialize_to_the_same_text_as_before() {
    let mut d = Driver::new();
    d.ticks(5, &calm(), &node(10.0));
    let (_, decisions) = d.ticks(2, &calm(), &node(30.0));
    let json = serde_json::to_value(&decisions[0]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "at_ms": 3500,
            "scope": "node",
            "change": "surge started",
            "reason": "critical module 'shop': 30 req/s vs baseline 10 req/s",
        })
    );
    let text: DecisionText = serde_json::from_value(json).unwrap();
    assert_eq!(text, DecisionText::from(&decisions[0]));
    assert!(matches!(
        &decisions[0].reason,
        Reason::CriticalPressure(modules) if modules[0].module == "shop"
            && matches!(modules[0].signs[..], [Pressure::RateJump { .. }])
    ));
}

#[test]
fn background_optimization_waits_for_surge_memory_pressure_and_power_save() {
    let config = PolicyConfig::default();
    let postponed = |modes: Modes| optimization_plan(modes, &config).postponed;
    assert_eq!(postponed(Modes::default()), None);
    assert_eq!(
        postponed(Modes {
            uplink_slow: true,
            ..Modes::default()
        }),
        None,
        "a slow uplink does not hold compiles"
    );
    assert_eq!(
        postponed(Modes {
            surge: true,
            power_save: true,
            ..Modes::default()
        })
        .as_deref(),
        Some("surge, power save")
    );
    let off = PolicyConfig {
        postpone_optimization: false,
        ..PolicyConfig::default()
    };
    let all = Modes {
        surge: true,
        memory_pressure: true,
        power_save: true,
        uplink_slow: true,
    };
    assert_eq!(optimization_plan(all, &off).postponed, None);
}

#[test]
fn memory_pressure_postpones_optimization_once_and_resumes_it_once() {
    let mut d = Driver::new();
    let pressured = NodeSignals {
        memory_pressure: Some(0.7),
        ..calm()
    };
    let optimization = |decisions: &[Decision]| -> Vec<String> {
        decisions
            .iter()
            .filter(|d| matches!(d.change, Change::Optimization { .. }))
            .map(|d| d.change.to_string())
            .collect()
    };
    let (plan, _) = d.tick(&pressured, &node(10.0));
    assert_eq!(plan.optimization.postponed, None, "one tick is not a mode");
    let (plan, decisions) = d.tick(&pressured, &node(10.0));
    assert_eq!(
        plan.optimization.postponed.as_deref(),
        Some("memory pressure")
    );
    assert_eq!(
        optimization(&decisions),
        ["background optimization postponed (memory pressure)"]
    );
    let (_, decisions) = d.tick(&pressured, &node(10.0));
    assert!(optimization(&decisions).is_empty(), "said once");
    let mut resumed = Vec::new();
    for _ in 0..10 {
        resumed.extend(optimization(&d.tick(&calm(), &node(10.0)).1));
    }
    assert_eq!(resumed, ["background optimization resumed"]);
}
