//! Deterministic tests of the demand model on hand-made call sequences. Its tests on the
//! synthetic patterns (timers, diurnal, Poisson, bursts) are in `spark-sim`'s
//! `tests/all/model.rs`, next to the generator.

use super::*;

#[test]
fn timer_with_sporadic_calls_keeps_its_phase() {
    let mut calls: Vec<f64> = (0..12).map(|k| f64::from(60 * k) + 30.5).collect();
    calls.extend([70.5, 150.5, 203.5, 338.5, 401.5, 512.5, 575.5, 619.5]);
    calls.sort_by(f64::total_cmp);
    let mut m = AppModel::default();
    for t in calls {
        m.observe(t);
    }
    // Last timer call at 690.5; add a sporadic one at 707.5: the next call is due at 750.5, not
    // one period after 707.5.
    m.observe(707.5);
    let fit = m.phase().expect("phase detected");
    assert_eq!(fit.period, 60.0);
    let before = m.p_call_within(708.0, 20.0).unwrap();
    let at_phase = m.p_call_within(749.0, 2.0).unwrap();
    assert!(
        at_phase > 2.0 * before,
        "phase window {at_phase} vs before it {before}"
    );
    assert!(at_phase > 0.5, "{at_phase}");
}

#[test]
fn bursty_app_is_expected_soon_during_a_burst_and_less_after_quiet() {
    let mut m = AppModel::default();
    for burst in 0..6 {
        let start = f64::from(burst) * 200.0;
        for i in 0..30 {
            m.observe(start + f64::from(i) * 0.2);
        }
    }
    let last = m.last_call().unwrap();
    let in_burst = m.p_call_within(last + 0.1, 1.0).unwrap();
    let after_quiet = m.p_call_within(last + 60.0, 1.0).unwrap();
    assert!(in_burst > 0.5, "{in_burst}");
    assert!(after_quiet < in_burst / 5.0, "{after_quiet} vs {in_burst}");
}

#[test]
fn never_again_app_becomes_less_likely_as_quiet_lasts() {
    let mut m = AppModel::default();
    m.observe(1.5);
    let early = m.p_call_within(10.0, 60.0).unwrap();
    let late = m.p_call_within(1000.0, 60.0).unwrap();
    assert!(early > 2.0 * late, "{early} vs {late}");
    assert!(m.p_call_within(10_000.0, 1e6).unwrap() < 1.0);
    assert_eq!(AppModel::default().p_call_within(5.0, 1.0), None);
}

/// The quantile search (bisection) finds the same whole minute as a minute-by-minute scan,
/// for timers, bursts, rare and irregular apps, at several points of their quiet.
#[test]
fn quantile_bisection_agrees_with_a_minute_by_minute_scan() {
    let scan = |m: &AppModel, now: f64, q: f64, horizon: f64| {
        let mut dt = 0.0;
        while dt <= horizon {
            if m.p_call_within(now, dt).unwrap() >= q {
                return Some(now + dt);
            }
            dt += 1.0;
        }
        None
    };
    let patterns: [Vec<f64>; 4] = [
        (0..30).map(|k| f64::from(k) * 20.0 + 0.5).collect(),
        (0..6)
            .flat_map(|b| (0..20).map(move |i| f64::from(b) * 300.0 + f64::from(i) * 0.3))
            .collect(),
        vec![3.5, 700.5, 1900.5],
        (0..60)
            .map(|k| f64::from(k * k % 97) + f64::from(k) * 40.0)
            .collect(),
    ];
    for calls in patterns {
        let mut m = AppModel::default();
        let mut sorted = calls.clone();
        sorted.sort_by(f64::total_cmp);
        for t in &sorted {
            m.observe(*t);
        }
        let last = m.last_call().unwrap();
        for after in [0.2, 5.0, 37.0, 300.0, 5000.0] {
            for q in [0.1, 0.5, 0.9] {
                let now = last + after;
                assert_eq!(
                    m.quantile_after(now, q, 1440.0),
                    scan(&m, now, q, 1440.0),
                    "calls {sorted:?} now {now} q {q}"
                );
            }
        }
    }
    assert_eq!(AppModel::default().quantile_after(5.0, 0.5, 1440.0), None);
}

#[test]
fn a_timer_known_to_the_second_is_loaded_for_seconds_around_its_run() {
    let mut m = AppModel::default();
    for k in 0..40 {
        m.observe(f64::from(15 * k) + 0.5);
    }
    let last = m.last_call().unwrap();
    let bins: Vec<_> = crate::policy::CriticalBins::new(&m, last, 100.0)
        .take_while(|b| b.start < last + 20.0)
        .collect();
    assert!(
        bins.windows(2).all(|w| w[0].end == w[1].start),
        "contiguous"
    );
    let cheapest = bins
        .iter()
        .min_by(|a, b| a.budget.total_cmp(&b.budget))
        .unwrap();
    let width = cheapest.end - cheapest.start;
    assert!(
        (cheapest.start - (last + 15.0 - FINE)).abs() < 1e-9 && (width - 2.0 * FINE).abs() < 1e-9,
        "{cheapest:?}"
    );
    // The rest of that minute costs far more per cold start avoided.
    let rest = bins
        .iter()
        .find(|b| b.end == cheapest.start)
        .expect("the minute's part before the window");
    assert!(
        rest.budget > 10.0 * cheapest.budget,
        "{rest:?} {cheapest:?}"
    );
}

const FINE: f64 = experts::FINE_TOLERANCE_MIN;

#[test]
fn experts_are_scored_at_the_scale_of_the_gap() {
    // A quarter of the gap on either side, between 3 s and half a minute.
    assert_eq!(score_window(0.0), (0.0, FINE));
    let (lo, hi) = score_window(0.4);
    assert!(
        (lo - 0.3).abs() < 1e-12 && (hi - 0.5).abs() < 1e-12,
        "{lo} {hi}"
    );
    assert_eq!(score_window(60.0), (59.5, 60.5));
}

#[test]
fn a_poller_every_ten_seconds_is_told_apart_from_a_loose_burst() {
    // Scored on a whole minute around a 10 s gap, every expert that expects a call within the
    // minute looks as right as the one that knows it comes at 10 s; scored at the gap's scale,
    // the mixture learns the poller, so nearly no call is expected in the first 5 s and nearly
    // every call by 15 s.
    let mut m = AppModel::default();
    for k in 0..60 {
        m.observe(f64::from(k) / 6.0);
    }
    let last = m.last_call().unwrap();
    let early = m.p_call_within(last, 5.0 / 60.0).unwrap();
    let by_15s = m.p_call_within(last, 15.0 / 60.0).unwrap();
    assert!(early < 0.1, "P(call within 5 s) = {early}");
    assert!(by_15s > 0.9, "P(call within 15 s) = {by_15s}");
}
