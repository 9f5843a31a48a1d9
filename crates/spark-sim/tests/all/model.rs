//! The demand model (`spark-predict`'s `AppModel`, the one the node runs) learning the
//! synthetic patterns: tested here because the patterns' generator (`spark_sim::synth`) is the
//! simulator's.

use spark_predict::model::{AppModel, EXPERTS, PRIOR_FLOOR};
use spark_sim::synth::{Pattern, Rng, counts};

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
