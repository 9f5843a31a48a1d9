//! Deterministic tests of the demand model on synthetic patterns.

use super::*;
use crate::synth::{Pattern, Rng, counts};

/// Feeds a pattern's calls (spread within minutes, as the simulator does) into a model.
fn model_of(pattern: Pattern, minutes: u32, seed: u64) -> AppModel {
    let mut m = AppModel::default();
    for (minute, n) in counts(pattern, minutes, &mut Rng::new(seed)) {
        for j in 0..n {
            m.observe(f64::from(minute) + (f64::from(j) + 0.5) / f64::from(n));
        }
    }
    m
}

#[test]
fn periodic_timer_is_expected_at_the_next_period_only() {
    let m = model_of(
        Pattern::Timer {
            period: 15,
            phase: 2,
        },
        300,
        1,
    );
    let last = m.last_call().unwrap();
    assert_eq!(last, 287.5);
    assert_eq!(m.period(), Some(15.0));
    let soon = m.p_call_within(last + 1.0, 12.0).unwrap();
    let at_period = m.p_call_within(last + 14.0, 2.0).unwrap();
    assert!(soon < 0.05, "no call expected before the period: {soon}");
    assert!(
        at_period > 0.9,
        "a call expected at the period: {at_period}"
    );
    let w = m.weights();
    assert!(
        w[0] + w[5] > 0.8,
        "repeat or phase expert should dominate: {w:?}"
    );
}

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
fn diurnal_profile_predicts_the_busy_hours_after_two_days() {
    let m = model_of(
        Pattern::Diurnal {
            peak_per_min: 0.5,
            from_hour: 9,
            to_hour: 17,
        },
        3 * 1440,
        5,
    );
    let day4 = 3.0 * 1440.0;
    assert!(
        m.weights()[6] > 0.05,
        "time-of-day expert should earn weight: {:?}",
        m.weights()
    );
    let night = m.p_call_within(day4 + 2.0 * 60.0, 60.0).unwrap();
    let morning = m.p_call_within(day4 + 9.0 * 60.0, 60.0).unwrap();
    assert!(morning > night + 0.05, "morning {morning} vs night {night}");
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

#[test]
fn survival_is_monotone_and_weights_sum_to_one() {
    let m = model_of(Pattern::Poisson { per_min: 0.05 }, 2000, 11);
    let mut prev = 1.0 + 1e-12;
    for i in 0..3000 {
        let s = m.survival(f64::from(i) * 0.5);
        assert!(s <= prev + 1e-12 && s >= 0.0);
        prev = s;
    }
    let sum: f64 = m.weights().iter().sum();
    assert!((sum - 1.0).abs() < 1e-9);
    assert!(m.weights()[EXPERTS - 1] >= PRIOR_FLOOR);
}

#[test]
fn model_is_deterministic() {
    let a = model_of(
        Pattern::Bursty {
            start_per_min: 0.01,
            length: 5,
            per_min_in_burst: 2.0,
        },
        1440,
        3,
    );
    let b = model_of(
        Pattern::Bursty {
            start_per_min: 0.01,
            length: 5,
            per_min_in_burst: 2.0,
        },
        1440,
        3,
    );
    assert_eq!(a, b);
    assert!(a.calls() > 0 && a.calls_per_day() > 0.0 && a.rate_per_min() >= 0.0);
}
