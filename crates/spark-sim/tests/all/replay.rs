//! End-to-end B4 on synthetic traces: the report, its renderings, and Spark against baselines.

use spark_sim::policy::{FixedKeepAlive, Hybrid, Spark};
use spark_sim::replay::{Horizon, score, simulate};
use spark_sim::report::{cdf_svg, render_table, tradeoff_svg};
use spark_sim::synth::{self, Pattern};
use spark_sim::{Report, SimOptions, run_b4};

#[test]
fn spark_needs_half_the_hybrids_memory_on_long_timers_and_one_off_apps() {
    // Timers longer than the fixed keep-alive, and apps called once in the first half: the
    // hybrid keeps every app 4 hours while its histogram has fewer than 5 idle times, and each
    // one-off app 4 hours; Spark pre-warms timers once their period is seen.
    let mut patterns = Vec::new();
    for (i, period) in [30u32, 40, 50, 70, 80, 100, 110, 130].iter().enumerate() {
        patterns.push(Pattern::Timer {
            period: *period,
            phase: 3 * i as u32,
        });
    }
    for minute in [5u32, 100, 200, 300, 400, 500, 600, 700] {
        patterns.push(Pattern::Once { minute });
    }
    let trace = synth::trace(&patterns, 1440, 300.0, 1);
    let h = Horizon::of(&trace, 0.5);
    let hybrid = score(&simulate(&trace, &Hybrid::default(), h)).scored;
    let spark_p75 = spark_at(&trace, hybrid.wasted_mb_min * 0.5);
    assert!(
        spark_p75 <= hybrid.p75,
        "spark {spark_p75} at half the memory vs hybrid {hybrid:?}"
    );
    let fixed = score(&simulate(&trace, &FixedKeepAlive::default(), h)).scored;
    assert_eq!(fixed.p75, 100.0, "every timer run is beyond ten minutes");
    assert_eq!(
        spark_at(&trace, fixed.wasted_mb_min),
        0.0,
        "Spark is warm on all of them with less memory"
    );
}

#[test]
fn b4_report_is_complete_consistent_and_serializable() {
    let trace = synth::mixed(80, 1440, 17);
    let report = run_b4(&trace, &SimOptions::default());
    for name in [
        "fixed-10min",
        "hybrid",
        "oracle",
        "spark@hybrid",
        "spark@fixed-10min",
    ] {
        assert!(report.policy(name).is_some(), "{name}");
    }
    let oracle = report.policy("oracle").unwrap().scores.scored;
    for m in &report.matched {
        let s = m.spark.scores.scored;
        assert!(
            s.wasted_mb_min <= m.baseline_scored.wasted_mb_min,
            "{}: matched at no more memory",
            m.baseline
        );
        assert!(s.p75 >= oracle.p75 && s.cold_starts >= oracle.cold_starts);
        assert!(
            m.mem_ratio.unwrap() > 0.9,
            "the match should be close, got {:?}",
            m.mem_ratio
        );
    }
    assert_eq!(report.family.len(), 16, "the hybrid family");
    for m in &report.family {
        let s = m.spark.scores.scored;
        assert!(
            s.wasted_mb_min <= m.baseline_scored.wasted_mb_min,
            "{}",
            m.baseline
        );
    }
    let best = report.best_hybrid().expect("a best member");
    assert!(
        report.family.iter().all(
            |m| m.p75_ratio.unwrap_or(f64::INFINITY) <= best.p75_ratio.unwrap_or(f64::INFINITY)
        )
    );
    // Calibrated on the first half: no more waste there than the baseline's first half.
    for name in ["hybrid", "fixed-10min"] {
        let c = report.calibrated_to(name).expect(name);
        let first = |s: &spark_sim::replay::Scores| s.whole.wasted_mb_min - s.scored.wasted_mb_min;
        let base = report.policy(name).unwrap();
        assert!(first(&c.spark.scores) <= first(&base.scores), "{name}");
    }
    let line = report.summary_line();
    assert!(line.starts_with("B4: p75_ratio_vs_hybrid="), "{line}");
    assert!(
        line.contains(&format!("best_hybrid={}", best.baseline)),
        "{line}"
    );
    for key in [
        "p75_ratio_vs_best_hybrid=",
        "p75_ratio_vs_hybrid_calibrated=",
        "p75_ratio_vs_fixed10_calibrated=",
        "mem_ratio_vs_hybrid=",
        "p75_ratio_vs_fixed10=",
        "mem_ratio_vs_fixed10=",
        "p75_hybrid=",
        "p75_fixed10=",
        "p75_oracle=",
    ] {
        assert!(line.contains(key), "{key} in {line}");
    }
    let json = serde_json::to_string(&report).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back.summary_line(), line);
    assert_eq!(
        (back.policies.len(), back.curve.len()),
        (report.policies.len(), report.curve.len())
    );
    assert_eq!(
        run_b4(&trace, &SimOptions::default()),
        report,
        "deterministic"
    );
    let table = render_table(&report);
    assert!(table.contains("spark@hybrid") && table.contains(&line));
    for svg in [cdf_svg(&report), tradeoff_svg(&report)] {
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("hybrid") && svg.contains("oracle"));
    }
    assert!(tradeoff_svg(&report).contains("hybrid family"));
    assert!(table.contains("Hybrid family") && table.contains("calibrated"));
}

/// Spark's scored p75 at (no more than) `baseline`'s scored wasted memory.
fn spark_at(trace: &spark_sim::TraceSet, waste: f64) -> f64 {
    let h = Horizon::of(trace, 0.5);
    let budgets = spark_sim::b4::log_grid(1e2, 1e10, 8);
    let curve = spark_sim::b4::curve(trace, &budgets, h);
    curve
        .iter()
        .filter(|c| c.scored.wasted_mb_min <= waste)
        .map(|c| c.scored.p75)
        .fold(100.0, f64::min)
}

#[test]
fn spark_beats_the_baselines_on_timers_mixed_with_noise() {
    let mut patterns = Vec::new();
    for (i, period) in [20u32, 45, 60, 90, 120, 180].iter().enumerate() {
        for k in 0..5u32 {
            let noise_per_min = 0.002 * f64::from(k + 1);
            patterns.push(Pattern::TimerWithNoise {
                period: *period,
                phase: 7 * i as u32 + k,
                noise_per_min,
            });
        }
    }
    let trace = synth::trace(&patterns, 1440, 500.0, 1);
    let h = Horizon::of(&trace, 0.5);
    // Sporadic calls between timer runs can only be caught by staying loaded, which the hybrid
    // does (its idle times never exceed the period): Spark matches it at equal memory, and
    // halves fixed keep-alive, which misses every timer run beyond ten minutes.
    let hybrid = score(&simulate(&trace, &Hybrid::default(), h)).scored;
    let spark = spark_at(&trace, hybrid.wasted_mb_min);
    assert!(spark <= hybrid.p75, "spark {spark} vs hybrid {hybrid:?}");
    let fixed = score(&simulate(&trace, &FixedKeepAlive::default(), h)).scored;
    let spark = spark_at(&trace, fixed.wasted_mb_min);
    assert!(spark <= fixed.p75 / 2.0, "spark {spark} vs fixed {fixed:?}");
}

#[test]
fn spark_lets_a_never_again_app_go_and_keeps_a_timer() {
    let trace = synth::trace(
        &[
            Pattern::Once { minute: 5 },
            Pattern::Timer {
                period: 30,
                phase: 0,
            },
        ],
        1440,
        0.0,
        1,
    );
    let h = Horizon::of(&trace, 0.5);
    let runs = simulate(&trace, &Spark { budget: 1e5 }, h);
    // The timer is warm on every scored call, at a few minutes of memory per period.
    assert_eq!(runs[1].scored.cold, 0);
    assert!(
        runs[1].scored.wasted_mb_min < 0.25 * 720.0 * 100.0,
        "{:?}",
        runs[1]
    );
    // The single call is not kept for the whole day.
    assert!(
        runs[0].whole.wasted_mb_min < 0.5 * 1435.0 * 100.0,
        "{:?}",
        runs[0]
    );
}
