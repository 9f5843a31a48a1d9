//! Tests of the live API: forecasts from real timestamps, snapshots, and the planner.

use super::*;

const MIN: u64 = 60_000;

fn timer_model(period_min: u64, calls: u64) -> DemandModel {
    let mut d = DemandModel::new();
    for k in 0..calls {
        d.observe("cron", k * period_min * MIN + 30_000, 1);
    }
    d
}

#[test]
fn forecast_of_a_timer_points_at_its_next_run() {
    let d = timer_model(10, 30);
    let last = 29 * 10 * MIN + 30_000;
    let f = d.forecast("cron", last + MIN).unwrap();
    assert_eq!(f.period_ms, Some(10 * MIN));
    let next = f.next_likely_ms.unwrap();
    assert!(
        next.abs_diff(last + 10 * MIN) <= MIN,
        "next {next} vs {}",
        last + 10 * MIN
    );
    assert!(
        f.p_within(5 * MIN) < 0.1 && f.p_within(15 * MIN) > 0.9,
        "{f:?}"
    );
    let ps: Vec<f64> = f.p_next_within.iter().map(|p| p.1).collect();
    assert!(ps.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(d.forecast("unknown", 0), None);
}

#[test]
fn concurrency_follows_peak_rate_and_duration() {
    let mut d = DemandModel::new();
    d.observe("api", 10 * MIN, 120);
    d.observe_duration("api", 2_000.0);
    let f = d.forecast("api", 10 * MIN + 1_000).unwrap();
    // 120 calls in a minute, 2 s each: 4 busy at once on average.
    assert!(
        (f.expected_concurrency - 4.0).abs() < 1e-9,
        "{}",
        f.expected_concurrency
    );
}

#[test]
fn restored_history_forecasts_like_the_original() {
    let d = timer_model(15, 40);
    let snap = d.snapshot("cron").unwrap();
    let json = serde_json::to_string(&snap).unwrap();
    let mut restored = DemandModel::new();
    restored
        .restore("cron", &serde_json::from_str(&json).unwrap())
        .unwrap();
    let now = 40 * 15 * MIN + 5 * MIN;
    assert_eq!(restored.forecast("cron", now), d.forecast("cron", now));
    let bad = HistorySnapshot {
        version: 42,
        minutes: vec![],
    };
    assert_eq!(restored.restore("x", &bad), Err(RestoreError::Version(42)));
    restored.forget("cron");
    assert_eq!(restored.modules().count(), 0);
}

fn forecast(p: f64, calls_per_day: f64, concurrency: f64) -> Forecast {
    Forecast {
        p_next_within: FORECAST_HORIZONS_MS.iter().map(|&h| (h, p)).collect(),
        expected_concurrency: concurrency,
        next_likely_ms: None,
        calls_per_day,
        period_ms: None,
    }
}

const COSTS: LevelCosts = LevelCosts {
    load_bytes: 100,
    load_ms: 50.0,
    instance_bytes: 10,
    instantiate_ms: 5.0,
};

fn planner(budget_bytes: u64, exchange: f64) -> WarmthPlanner {
    WarmthPlanner {
        budget_bytes,
        horizon_ms: 60_000,
        exchange,
    }
}

fn demand<'a>(module: &'a str, forecast: &'a Forecast, costs: LevelCosts) -> ModuleDemand<'a> {
    ModuleDemand {
        module,
        forecast,
        costs,
    }
}

#[test]
fn planner_warms_the_likely_module_first_and_respects_the_budget() {
    let likely = forecast(0.9, 100.0, 2.0);
    let unlikely = forecast(0.01, 100.0, 1.0);
    let demands = [
        demand("unlikely", &unlikely, COSTS),
        demand("likely", &likely, COSTS),
    ];
    // Loading "likely" is worth 0.9 x 0.05 s x 1/sqrt(100) = 4.5 ms; at 0.1 MB-min per second
    // that beats 100 B held for 1 min (9.5e-5 MB-min). "Unlikely" (0.05 ms) does not, even
    // with room to spare.
    let plan = planner(1000, 0.1).plan(&demands, 0.0);
    assert_eq!(
        plan.targets[1],
        ("likely".to_owned(), WarmthLevel::Ready(2))
    );
    assert_eq!(
        plan.targets[0],
        ("unlikely".to_owned(), WarmthLevel::Compiled)
    );
    assert_eq!(plan.bytes, 120);
    assert_eq!(
        plan.eviction_order,
        vec!["unlikely".to_owned(), "likely".to_owned()]
    );
    let tight = planner(115, 0.1).plan(&demands, 0.0);
    assert_eq!(
        tight.targets[1].1,
        WarmthLevel::Ready(1),
        "the second instance does not fit"
    );
}

#[test]
fn planner_keeps_only_what_is_worth_its_memory_and_yields_to_pressure() {
    let likely = forecast(0.9, 10.0, 1.0);
    let demands = [demand("m", &likely, COSTS)];
    let level = |p: WarmthPlanner, pressure: f64| p.plan(&demands, pressure).targets[0].1;
    assert_eq!(level(planner(1 << 30, 0.1), 0.0), WarmthLevel::Ready(1));
    assert_eq!(level(planner(1 << 30, 0.1), 1.0), WarmthLevel::Compiled);
    assert_eq!(level(planner(1 << 30, 1e-6), 0.0), WarmthLevel::Compiled);
    assert_eq!(level(planner(105, 0.1), 0.0), WarmthLevel::Loaded);
}

#[test]
fn an_instance_is_never_planned_without_its_component() {
    // Instances are cheap and valuable, the component dear: they are merged into one step, so
    // a budget too small for both plans neither.
    let f = forecast(0.9, 10.0, 1.0);
    let costs = LevelCosts {
        load_bytes: 1000,
        load_ms: 1.0,
        instance_bytes: 1,
        instantiate_ms: 500.0,
    };
    let demands = [demand("m", &f, costs)];
    assert_eq!(
        planner(500, 0.1).plan(&demands, 0.0).targets[0].1,
        WarmthLevel::Compiled
    );
    assert_eq!(
        planner(2000, 0.1).plan(&demands, 0.0).targets[0].1,
        WarmthLevel::Ready(1)
    );
}

#[test]
fn a_module_whose_instance_does_not_fit_is_still_kept_loaded() {
    // The instance is worth far more per byte than the component, so the two are one merged
    // step; when only the component fits, the planner keeps it rather than nothing, provided
    // the component alone is worth its memory.
    let f = forecast(0.9, 10.0, 1.0);
    let costs = LevelCosts {
        load_bytes: 1000,
        load_ms: 100.0,
        instance_bytes: 10,
        instantiate_ms: 500.0,
    };
    let demands = [demand("m", &f, costs)];
    let level = |budget: u64, exchange: f64| planner(budget, exchange).plan(&demands, 0.0);
    assert_eq!(level(1010, 0.1).targets[0].1, WarmthLevel::Ready(1));
    let loaded = level(1005, 0.1);
    assert_eq!(loaded.targets[0].1, WarmthLevel::Loaded);
    assert_eq!(loaded.bytes, 1000);
    assert_eq!(level(999, 0.1).targets[0].1, WarmthLevel::Compiled);
    // At an exchange rate where only the merged step is worth its memory, no fallback.
    assert_eq!(level(1005, 0.01).targets[0].1, WarmthLevel::Compiled);
    assert_eq!(level(1010, 0.01).targets[0].1, WarmthLevel::Ready(1));
}

#[test]
fn a_part_of_a_step_that_does_not_fit_competes_at_its_own_worth() {
    // "a" has a slow instance (one instantiation measured on a busy core), so its code and
    // instance merge into a step denser than "b"'s code; that step does not fit, and a's code
    // alone is worth less per byte than b's: b is loaded, not a.
    let a = forecast(0.01, 1.0, 1.0);
    let b = forecast(0.5, 8.0, 1.0);
    let code = |instantiate_ms: f64| LevelCosts {
        load_bytes: 700,
        load_ms: 10.0,
        instance_bytes: 1100,
        instantiate_ms,
    };
    let demands = [demand("a", &a, code(1000.0)), demand("b", &b, code(0.2))];
    let plan = planner(1000, 1e6).plan(&demands, 0.0);
    assert_eq!(plan.targets[0].1, WarmthLevel::Compiled, "{plan:?}");
    assert_eq!(plan.targets[1].1, WarmthLevel::Loaded, "{plan:?}");
    // With b unlikely, a's code is the best use of the budget after all.
    let b = forecast(0.001, 8.0, 1.0);
    let demands = [demand("a", &a, code(1000.0)), demand("b", &b, code(0.2))];
    let plan = planner(1000, 1e6).plan(&demands, 0.0);
    assert_eq!(plan.targets[0].1, WarmthLevel::Loaded, "{plan:?}");
    assert_eq!(plan.targets[1].1, WarmthLevel::Compiled, "{plan:?}");
}

#[test]
fn levels_stay_within_a_modules_floor_and_ready_cap() {
    use WarmthLevel::{Compiled, Loaded, Ready};
    assert_eq!(Compiled.within(Compiled, None), Compiled);
    assert_eq!(
        Compiled.within(Loaded, None),
        Loaded,
        "critical stays loaded"
    );
    assert_eq!(Ready(3).within(Loaded, None), Ready(3));
    assert_eq!(Ready(3).within(Compiled, Some(1)), Ready(1), "capped");
    assert_eq!(
        Ready(3).within(Compiled, Some(0)),
        Loaded,
        "no instance ahead"
    );
    assert_eq!(Loaded.within(Compiled, Some(0)), Loaded);
    assert_eq!(Compiled.within(Compiled, Some(0)), Compiled);
    assert_eq!(Compiled.within(Loaded, Some(0)), Loaded);
}

#[test]
fn last_call_is_the_latest_observed_call() {
    let mut d = DemandModel::new();
    assert_eq!(d.last_call_ms("api"), None);
    d.observe("api", 10 * MIN, 1);
    d.observe("api", 25 * MIN + 30_000, 2);
    assert_eq!(d.last_call_ms("api"), Some(25 * MIN + 30_000));
}
