//! Simulator tests on tiny hand-computed traces, and the sweep's agreement with single runs.

use super::*;
use crate::policy::{FixedKeepAlive, Hybrid, Oracle, Spark, SparkFamily};
use crate::synth;
use crate::trace::AppTrace;

fn app(counts: &[(u32, u32)], duration_ms: f64, memory_mb: f64) -> AppTrace {
    AppTrace {
        placement: Default::default(),
        id: "a".into(),
        functions: 1,
        counts: counts.to_vec(),
        duration_ms,
        memory_mb,
    }
}

fn one(app: AppTrace, minutes: usize) -> TraceSet {
    TraceSet {
        minutes,
        apps: vec![app],
    }
}

#[test]
fn fixed_keep_alive_by_hand() {
    // Calls at 0.5, 5.5 and 30.5; duration 0; 100 MB; trace of 40 minutes scored from 20.
    let t = one(app(&[(0, 1), (5, 1), (30, 1)], 0.0, 100.0), 40);
    let o = simulate(
        &t,
        &FixedKeepAlive { minutes: 10.0 },
        Horizon {
            split: 20.0,
            end: 40.0,
        },
    )[0];
    // 0.5 cold (first ever); 5.5 warm after 5 idle minutes; 30.5 cold after 25 (10 loaded);
    // then loaded from 30.5 to 40 (cut at the end): 5 + 10 + 9.5 minutes x 100 MB.
    assert_eq!(
        o.whole,
        Tally {
            invocations: 3,
            cold: 2,
            wasted_mb_min: 2450.0
        }
    );
    // Scored part: only the call at 30.5, and only the waste after minute 20.
    assert_eq!(
        o.scored,
        Tally {
            invocations: 1,
            cold: 1,
            wasted_mb_min: 950.0
        }
    );
}

#[test]
fn busy_calls_are_warm_and_execution_is_not_waste() {
    // Two calls in minute 0 (at 0.25 and 0.75), each running 1 minute (60 s): the second
    // arrives while the first runs. Busy until 1.75, then kept 10 minutes, cut at 5.
    let t = one(app(&[(0, 2)], 60_000.0, 10.0), 5);
    let o = simulate(
        &t,
        &FixedKeepAlive { minutes: 10.0 },
        Horizon {
            split: 2.5,
            end: 5.0,
        },
    )[0];
    assert_eq!(o.whole.cold, 1);
    assert!(
        (o.whole.wasted_mb_min - (5.0 - 1.75) * 10.0).abs() < 1e-9,
        "{o:?}"
    );
    assert!((o.scored.wasted_mb_min - 2.5 * 10.0).abs() < 1e-9, "{o:?}");
    assert_eq!(o.scored.invocations, 0);
}

#[test]
fn waste_straddling_the_split_is_cut_there() {
    // One call at 10.5, kept 10 minutes, split at 15: 4.5 minutes before, 5.5 after.
    let t = one(app(&[(10, 1)], 0.0, 2.0), 60);
    let o = simulate(
        &t,
        &FixedKeepAlive { minutes: 10.0 },
        Horizon {
            split: 15.0,
            end: 60.0,
        },
    )[0];
    assert!((o.whole.wasted_mb_min - 20.0).abs() < 1e-9);
    assert!((o.scored.wasted_mb_min - 11.0).abs() < 1e-9);
}

#[test]
fn oracle_is_cold_only_on_the_first_call_and_wastes_nothing() {
    let t = synth::mixed(30, 600, 7);
    let h = Horizon::of(&t, 0.5);
    for (o, a) in simulate(&t, &Oracle::new(&t), h).iter().zip(&t.apps) {
        assert_eq!(o.whole.cold, u64::from(!a.counts.is_empty()));
        assert_eq!(o.whole.wasted_mb_min, 0.0);
    }
}

#[test]
fn no_policy_beats_the_oracle_and_each_call_is_counted_once() {
    let t = synth::mixed(40, 720, 11);
    let h = Horizon::of(&t, 0.5);
    let oracle = score(&simulate(&t, &Oracle::new(&t), h));
    for s in [
        score(&simulate(&t, &FixedKeepAlive::default(), h)),
        score(&simulate(&t, &Hybrid::default(), h)),
        score(&simulate(&t, &Spark { budget: 1e5 }, h)),
    ] {
        assert!(s.whole.cold_starts >= oracle.whole.cold_starts);
        assert_eq!(s.whole.invocations, t.invocations());
    }
}

#[test]
fn hybrid_prewarms_a_regular_app_after_enough_idle_times() {
    // A call every 30 minutes: after five idle times the hybrid unloads and pre-warms at
    // 27 minutes (head 30 - 10%), keeping until 34.1: warm at lower memory than 4 h keep-alive.
    let counts: Vec<(u32, u32)> = (0..20).map(|k| (30 * k, 1)).collect();
    let t = one(app(&counts, 0.0, 1.0), 600);
    let o = simulate(
        &t,
        &Hybrid::default(),
        Horizon {
            split: 300.0,
            end: 600.0,
        },
    )[0];
    assert_eq!(o.whole.cold, 1);
    // Scored part: 10 idle periods of 30 minutes, loaded from 27 to 30 in each (3 minutes).
    assert!((o.scored.wasted_mb_min - 30.0).abs() < 1e-6, "{o:?}");
}

#[test]
fn sweep_gives_exactly_what_single_runs_give() {
    let t = synth::mixed(40, 900, 5);
    let h = Horizon::of(&t, 0.5);
    let budgets = [3e3, 4e4, 5e5, 7e6];
    let swept = sweep(&t, &SparkFamily, &budgets, h);
    for (b, runs) in budgets.iter().zip(&swept) {
        let single = simulate(&t, &Spark { budget: *b }, h);
        for (x, y) in runs.iter().zip(&single) {
            // Same decisions; waste is summed in another order, so compare it to rounding.
            assert_eq!(
                (x.whole.cold, x.scored.cold),
                (y.whole.cold, y.scored.cold),
                "budget {b}"
            );
            assert_eq!(
                (x.whole.invocations, x.scored.invocations),
                (y.whole.invocations, y.scored.invocations)
            );
            assert!(
                (x.whole.wasted_mb_min - y.whole.wasted_mb_min).abs()
                    <= 1e-9 * y.whole.wasted_mb_min.max(1.0)
            );
            assert!(
                (x.scored.wasted_mb_min - y.scored.wasted_mb_min).abs()
                    <= 1e-9 * y.scored.wasted_mb_min.max(1.0)
            );
        }
    }
}

#[test]
fn more_budget_never_means_more_cold_starts_or_less_memory() {
    let t = synth::mixed(60, 1440, 21);
    let h = Horizon::of(&t, 0.5);
    let budgets: Vec<f64> = (0..30)
        .map(|i| 10f64.powf(2.0 + f64::from(i) * 0.25))
        .collect();
    let scores: Vec<Scores> = sweep(&t, &SparkFamily, &budgets, h)
        .iter()
        .map(|r| score(r))
        .collect();
    for w in scores.windows(2) {
        assert!(w[1].whole.cold_starts <= w[0].whole.cold_starts);
        assert!(w[1].whole.wasted_mb_min >= w[0].whole.wasted_mb_min - 1e-6);
        assert!(w[1].scored.cold_starts <= w[0].scored.cold_starts);
    }
    let (lo, hi) = (&scores[0], &scores[scores.len() - 1]);
    assert!(
        hi.whole.cold_starts < lo.whole.cold_starts,
        "the budget must matter"
    );
}

#[test]
fn executing_memory_merges_overlapping_calls_and_stops_at_the_end() {
    let app = AppTrace {
        placement: Default::default(),
        id: "a".into(),
        functions: 1,
        // Arrivals 0.5; 2.25, 2.75; 9.5, two minutes each: 0.5-2.5, then the two overlapping
        // ones add 2.5-4.75, and 9.5-10 (cut at the end).
        counts: vec![(0, 1), (2, 2), (9, 1)],
        duration_ms: 120_000.0,
        memory_mb: 10.0,
    };
    let mb_min = executing_mb_min(&app, 10.0);
    assert!(
        (mb_min - (2.0 + 2.25 + 0.5) * 10.0).abs() < 1e-9,
        "{mb_min}"
    );
    assert_eq!(
        executing_mb_min(
            &AppTrace {
                duration_ms: 0.0,
                ..app
            },
            10.0
        ),
        0.0
    );
}
