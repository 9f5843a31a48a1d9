//! The phase expert: detects an app's period from the autocorrelation of its active minutes and
//! predicts calls in the recurring phase window, whatever happened in between.
//!
//! Timers are a large share of serverless functions, and a timer mixed with other calls is a
//! common shape (an hourly job plus occasional manual runs): the gap since the last call is then
//! the wrong clock, because the next timer call comes at the next phase, not one period after
//! the last (sporadic) call. So this expert works in absolute time: over the recent active
//! minutes (distinct minutes with calls, the last [`ACTIVE_KEPT`] within [`DETECT_SPAN_MIN`]) it
//! takes the burst starts (an active minute after a quiet one, so a burst spanning several
//! minutes counts once) and counts the pairs of starts at each lag: that is their
//! autocorrelation. The period is the smallest lag whose count (with one minute of tolerance) is
//! within 80% of the best; the phase window is the 1- or 3-minute window of that period holding
//! most burst starts.
//!
//! Decision worth knowing: a period is accepted only if calls land in the window in at least
//! half the periods *and* at least twice as often as chance at the app's density; the expert
//! then predicts a hazard inside the windows (matching that share) plus a background rate
//! outside them. Whether it is believed is left to the mixture's out-of-sample score.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::experts::prior;

/// Distinct active minutes kept for detection.
pub const ACTIVE_KEPT: usize = 128;
/// Only active minutes this recent (minutes) are used for detection.
pub const DETECT_SPAN_MIN: f64 = 1440.0;
/// Longest period detected (minutes); needs three periods of history.
pub const MAX_PERIOD_MIN: usize = 480;
/// Shortest period detected (minutes).
pub const MIN_PERIOD_MIN: usize = 4;
/// Detection runs again at most this often (minutes of trace time).
pub const REDETECT_MIN: f64 = 30.0;
/// Share of periods with a call in the window is capped here (nothing is certain).
const MAX_SHARE: f64 = 0.95;

/// A detected period and phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PhaseFit {
    /// Period, minutes.
    pub period: f64,
    /// Absolute start of one phase window (minutes); windows recur every period.
    pub start: f64,
    /// Window length, minutes (1 or 3).
    pub width: f64,
    /// Share of periods with a call in the window.
    pub share: f64,
    /// Calls (active minutes) per minute outside the windows.
    pub background: f64,
}

impl PhaseFit {
    /// Window time within `(-inf, t]` relative to the first window at `start` (can be < 0).
    fn window_time(&self, t: f64) -> f64 {
        let u = t - self.start;
        let k = (u / self.period).floor();
        k * self.width + (u - k * self.period).min(self.width)
    }

    /// Survival of the gap `x` after a call at `t_last`.
    pub fn survival(&self, t_last: f64, x: f64) -> f64 {
        let x = x.max(0.0);
        let eta = -(1.0 - self.share).ln() / self.width;
        let in_window = self.window_time(t_last + x) - self.window_time(t_last);
        (-self.background * x - eta * in_window).exp()
    }
}

/// Recent active minutes and the current fit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseModel {
    active: VecDeque<i64>,
    last_detect: Option<f64>,
    fit: Option<PhaseFit>,
}

impl PhaseModel {
    /// Records a call at `t`; re-detects at most every [`REDETECT_MIN`].
    pub fn push(&mut self, t: f64) {
        let m = t.floor() as i64;
        if self.active.back() != Some(&m) {
            self.active.push_back(m);
        }
        while self.active.len() > ACTIVE_KEPT
            || self
                .active
                .front()
                .is_some_and(|&f| (m - f) as f64 > DETECT_SPAN_MIN)
        {
            self.active.pop_front();
        }
        if self.last_detect.is_none_or(|d| t - d >= REDETECT_MIN) {
            self.last_detect = Some(t);
            self.fit = detect(self.active.make_contiguous());
        }
    }

    /// The current fit, if a period is detected.
    pub fn fit(&self) -> Option<PhaseFit> {
        self.fit
    }

    /// Survival of the gap `x` after a call at `t_last` (the prior without a period).
    pub fn survival(&self, t_last: f64, x: f64) -> f64 {
        self.fit.map_or_else(|| prior(x), |f| f.survival(t_last, x))
    }
}

/// Detects a period in ascending distinct active minutes (see the module doc).
pub fn detect(active: &[i64]) -> Option<PhaseFit> {
    let n = active.len();
    if n < 4 {
        return None;
    }
    let span = (active[n - 1] - active[0] + 1) as usize;
    let max_lag = MAX_PERIOD_MIN.min(span / 3);
    if max_lag < MIN_PERIOD_MIN {
        return None;
    }
    let starts: Vec<i64> = active
        .iter()
        .enumerate()
        .filter(|&(i, &m)| i == 0 || active[i - 1] < m - 1)
        .map(|(_, &m)| m)
        .collect();
    let period = best_lag(&starts, max_lag)?;
    fit_phase(&starts, active.len(), period, span)
}

/// The smallest lag whose pair count (with +-1 minute) is within 80% of the best (if >= 3),
/// centred on the exact lag.
fn best_lag(active: &[i64], max_lag: usize) -> Option<usize> {
    let mut pairs = vec![0u32; max_lag + 2];
    for (i, &a) in active.iter().enumerate() {
        for &b in &active[i + 1..] {
            let d = (b - a) as usize;
            if d > max_lag + 1 {
                break;
            }
            pairs[d] += 1;
        }
    }
    let score = |d: usize| pairs[d - 1] + pairs[d] + pairs[d + 1];
    let best = (MIN_PERIOD_MIN..=max_lag).map(score).max()?;
    if best < 3 {
        return None;
    }
    let first =
        (MIN_PERIOD_MIN..=max_lag).find(|&d| f64::from(score(d)) >= 0.8 * f64::from(best))?;
    // The tolerance makes the lag just below a period score as well; centre on the exact lag.
    (first..=(first + 2).min(max_lag)).max_by_key(|&d| (pairs[d], score(d), std::cmp::Reverse(d)))
}

/// Finds the phase window of the burst starts for `period` and checks it beats chance;
/// `active_minutes` counts all active minutes (for the background rate).
fn fit_phase(
    active: &[i64],
    active_minutes: usize,
    period: usize,
    span: usize,
) -> Option<PhaseFit> {
    let mut hist = vec![0u32; period];
    for &m in active {
        hist[m.rem_euclid(period as i64) as usize] += 1;
    }
    let at = |i: i64| hist[i.rem_euclid(period as i64) as usize];
    let three = |p: i64| at(p - 1) + at(p) + at(p + 1);
    let single = (0..period as i64).max_by_key(|&p| (at(p), three(p)))?;
    let triple = (0..period as i64).max_by_key(|&p| (three(p), at(p)))?;
    let (first, width) = if f64::from(at(single)) >= 0.8 * f64::from(three(triple)) {
        (single, 1)
    } else {
        (triple - 1, 3)
    };
    if 2 * width > period as i64 {
        return None;
    }
    let in_window = |m: i64| (m - first).rem_euclid(period as i64) < width;
    let mut periods_hit: Vec<i64> = active
        .iter()
        .filter(|&&m| in_window(m))
        .map(|&m| (m - first).div_euclid(period as i64))
        .collect();
    periods_hit.dedup();
    let inside = active.iter().filter(|&&m| in_window(m)).count();
    let periods = (span as f64 / period as f64).max(1.0);
    let share = (periods_hit.len() as f64 / periods).min(MAX_SHARE);
    let density = active.len() as f64 / span as f64;
    let chance = 1.0 - (-density * width as f64).exp();
    if share < 0.5 || share < 2.0 * chance {
        return None;
    }
    let outside_time = span as f64 * (1.0 - width as f64 / period as f64);
    Some(PhaseFit {
        period: period as f64,
        start: first as f64,
        width: width as f64,
        share,
        background: (active_minutes - inside) as f64 / outside_time.max(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_an_hourly_timer_with_sporadic_calls() {
        let mut active: Vec<i64> = (0..10).map(|k| 15 + 60 * k).collect();
        active.extend([40, 100, 222, 390, 500]);
        active.sort_unstable();
        let fit = detect(&active).expect("period");
        assert_eq!(fit.period, 60.0);
        assert_eq!(fit.start.rem_euclid(60.0), 15.0);
        assert_eq!(fit.width, 1.0);
        assert!(fit.share > 0.9, "{fit:?}");
        // After a sporadic call at 590, the next call is expected at 615, not 650.
        let s = |x: f64| fit.survival(590.0, x);
        assert!(s(24.0) > 0.7 && s(26.0) < 0.1, "{} {}", s(24.0), s(26.0));
    }

    #[test]
    fn jittered_bursts_get_a_three_minute_window() {
        // Each burst starts up to a minute early or late (fixed draws of a seeded generator:
        // this crate has none, `spark-sim`'s `synth` does).
        let jitter: [i64; 12] = [-1, -1, -1, 1, -1, 0, -1, 0, 1, -1, -1, -1];
        let mut active = Vec::new();
        for (k, jitter) in (0..12i64).zip(jitter) {
            let start = 30 + 45 * k + jitter;
            active.push(start);
            active.push(start + 1);
        }
        active.sort_unstable();
        active.dedup();
        let fit = detect(&active).expect("period");
        assert_eq!(fit.period, 45.0);
        assert_eq!(fit.width, 3.0);
    }

    #[test]
    fn random_and_dense_activity_has_no_period() {
        let mut x: u64 = 7;
        let mut m = 0i64;
        let mut active = Vec::new();
        for _ in 0..100 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            m += 1 + (x >> 59) as i64 * 3;
            active.push(m);
        }
        assert_eq!(detect(&active), None);
        let dense: Vec<i64> = (0..128).collect();
        assert_eq!(detect(&dense), None);
    }
}
