//! The per-application demand model: when is the next call likely, learned online from calls.
//!
//! The model predicts the gap from an app's last call to its next one as a mixture of experts
//! (see [`experts`] and [`periodic`]): *repeat* (the last gaps again, as precisely as they
//! have repeated: timers), *recent* (the last gaps, loosely: bursts and rate changes),
//! *histogram* (the long-term idle-time distribution, as the hybrid policy keeps, on log bins
//! up to a week), *burst-rate*
//! (Poisson at the last hour's rate), *daily-rate* (Poisson at an uncertain long-run rate),
//! *phase* (a period detected by autocorrelation, in absolute time: timers mixed with other
//! calls), *time-of-day* (the hourly profile over past days), and a heavy-tailed *prior*.
//! Each expert gives a survival function; after every call each expert is scored on the
//! probability it gave to the gap that happened (to within a quarter of it, at most half a
//! minute: [`score_window`]), and the mixture weights are the softmax of
//! those log-scores with forgetting ([`FORGETTING`]), so an app's weights follow what has been
//! predicting it lately. The prior keeps a floor weight ([`PRIOR_FLOOR`]) so no app is ever
//! declared certain never to come back.
//!
//! Decision worth knowing: the model forecasts a *distribution* (a survival function of the
//! gap), not a point. Everything downstream reads it through the conditional probability of a
//! call in a time window given that none has come yet, which is what an expected-value decision
//! needs, and the same code serves the simulator and the live node.

pub mod experts;
mod history;
pub mod periodic;

pub use history::{HistorySnapshot, MinuteHistory};
pub use periodic::PhaseFit;

use serde::{Deserialize, Serialize};

use experts::{
    DAY_MIN, DailyRate, LogHistogram, RecentGaps, ShortRate, TimeOfDay, loose_tolerance, prior,
};
use periodic::PhaseModel;

/// Number of experts in the mixture.
pub const EXPERTS: usize = 8;
/// Names of the experts, in weight order.
pub const EXPERT_NAMES: [&str; EXPERTS] = [
    "repeat",
    "recent",
    "histogram",
    "burst-rate",
    "daily-rate",
    "phase",
    "time-of-day",
    "prior",
];
/// Each expert's log-score is multiplied by this before a new one is added: recent calls
/// count more (memory of about ten calls).
pub const FORGETTING: f64 = 0.9;
/// Minimum weight of the heavy-tailed prior in the mixture.
pub const PRIOR_FLOOR: f64 = 0.02;
/// Probability floor when scoring an expert, so one miss does not erase it.
const SCORE_FLOOR: f64 = 1e-4;
/// An expert is scored on the probability it gave to a window around the gap that came, this
/// share of the gap on either side (see [`score_window`]).
pub const SCORE_SHARE: f64 = 0.25;
/// The widest half-window an expert is scored on (minutes): a trace records calls per minute,
/// so a longer gap is not known more precisely than this.
pub const SCORE_HALF_WIDTH_MAX: f64 = 0.5;
const PRIOR: usize = EXPERTS - 1;

/// What the model knows about one application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppModel {
    last: Option<f64>,
    calls: u64,
    day_count: f64,
    recent: RecentGaps,
    histogram: LogHistogram,
    rate: ShortRate,
    daily: DailyRate,
    phase: PhaseModel,
    time_of_day: TimeOfDay,
    log_score: [f64; EXPERTS],
    weights: [f64; EXPERTS],
}

impl Default for AppModel {
    fn default() -> Self {
        AppModel {
            last: None,
            calls: 0,
            day_count: 0.0,
            recent: RecentGaps::default(),
            histogram: LogHistogram::default(),
            rate: ShortRate::default(),
            daily: DailyRate::default(),
            phase: PhaseModel::default(),
            time_of_day: TimeOfDay::default(),
            log_score: [0.0; EXPERTS],
            weights: mix_weights(&[0.0; EXPERTS]),
        }
    }
}

impl AppModel {
    /// Records one call at `t` (minutes; calls must come in non-decreasing time order).
    pub fn observe(&mut self, t: f64) {
        if let Some(last) = self.last {
            let gap = (t - last).max(0.0);
            self.score(last, gap);
            self.recent.push(gap);
            self.histogram.push(gap);
            self.day_count *= (-(t - last).max(0.0) / DAY_MIN).exp();
        }
        self.rate.push(t);
        self.daily.push(t);
        self.phase.push(t);
        self.time_of_day.push(t);
        self.day_count += 1.0;
        self.calls += 1;
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
    }

    fn score(&mut self, last: f64, gap: f64) {
        let (lo, hi) = score_window(gap);
        for e in 0..EXPERTS {
            let p = self.expert_survival(e, last, lo) - self.expert_survival(e, last, hi);
            self.log_score[e] = FORGETTING * self.log_score[e] + p.max(SCORE_FLOOR).ln();
        }
        self.weights = mix_weights(&self.log_score);
    }

    fn expert_survival(&self, expert: usize, last: f64, x: f64) -> f64 {
        match expert {
            0 => self.recent.repeat_survival(x),
            1 => self.recent.survival(x, loose_tolerance),
            2 => self.histogram.survival(x),
            3 => self.rate.survival(x),
            4 => self.daily.survival(x),
            5 => self.phase.survival(last, x),
            6 => self.time_of_day.survival(last, x),
            _ => prior(x),
        }
    }

    /// `P(gap > x)`: probability that no call comes within `x` minutes of the last one.
    pub fn survival(&self, x: f64) -> f64 {
        let last = self.last.unwrap_or(0.0);
        (0..EXPERTS)
            .map(|e| self.weights[e] * self.expert_survival(e, last, x))
            .sum()
    }

    /// Probability of at least one call in `(now, now + within]`, given none since the last
    /// call; `None` before the first call.
    pub fn p_call_within(&self, now: f64, within: f64) -> Option<f64> {
        let last = self.last?;
        let elapsed = (now - last).max(0.0);
        let s0 = self.survival(elapsed);
        if s0 <= 0.0 {
            return Some(0.0);
        }
        Some((1.0 - self.survival(elapsed + within.max(0.0)) / s0).clamp(0.0, 1.0))
    }

    /// The time by which the next call has probability `q` (given none until `now`), to the
    /// whole minute, up to `horizon` minutes ahead; `None` if not within the horizon.
    ///
    /// The probability grows with the window (the survival function never increases), so the
    /// first whole minute where it reaches `q` is found by bisection: a dozen evaluations of
    /// the mixture for a day's horizon, where a minute-by-minute scan made up to 1,441 (half a
    /// millisecond for a rarely called module, on every forecast the node makes).
    pub fn quantile_after(&self, now: f64, q: f64, horizon: f64) -> Option<f64> {
        let reaches =
            |minutes: u64| -> Option<bool> { Some(self.p_call_within(now, minutes as f64)? >= q) };
        let mut high = horizon.max(0.0).floor() as u64;
        if !reaches(high)? {
            return None;
        }
        let mut low = 0;
        if reaches(low)? {
            return Some(now);
        }
        // Invariant: not reached at `low`, reached at `high`.
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if reaches(mid)? {
                high = mid;
            } else {
                low = mid;
            }
        }
        Some(now + high as f64)
    }

    /// Where the repeat expert's mass starts or ends inside a minute (minutes after the last
    /// call, ascending): the edges of its windows narrower than the minute, where a decision
    /// finer than the minute pays (a timer known to the second is loaded for seconds).
    pub fn sharp_edges(&self) -> Vec<f64> {
        let mut edges: Vec<f64> = self
            .recent
            .repeats()
            .filter(|&(g, d)| d < experts::exact_tolerance(g))
            .flat_map(|(g, d)| [(g - d).max(0.0), g + d])
            .collect();
        edges.sort_by(f64::total_cmp);
        edges.dedup();
        edges
    }

    /// Time of the last call.
    pub fn last_call(&self) -> Option<f64> {
        self.last
    }

    /// Calls seen.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Calls in the last day, exponentially weighted (time constant one day), at the last call.
    pub fn calls_per_day(&self) -> f64 {
        self.day_count
    }

    /// Short-term rate (calls per minute) at the last call.
    pub fn rate_per_min(&self) -> f64 {
        self.rate.rate()
    }

    /// The detected period (minutes): the phase expert's, else the one the recent gaps agree on.
    pub fn period(&self) -> Option<f64> {
        self.phase
            .fit()
            .map(|f| f.period)
            .or_else(|| self.recent.period().map(|p| p.0))
    }

    /// The phase expert's fit, if it detected a period.
    pub fn phase(&self) -> Option<PhaseFit> {
        self.phase.fit()
    }

    /// Current mixture weights, in [`EXPERT_NAMES`] order.
    pub fn weights(&self) -> [f64; EXPERTS] {
        self.weights
    }
}

/// The window `(lo, hi)` an expert is scored on after a gap of `gap` minutes: a quarter of the
/// gap on either side ([`SCORE_SHARE`]), between the repeat expert's finest tolerance (3 s) and
/// half a minute ([`SCORE_HALF_WIDTH_MAX`]).
///
/// Gaps span five decades, so what tells experts apart is relative: an expert that expected a
/// call 10 s after the last one and one that expected it at 40 s are both "right" about a 20 s
/// gap when scored on a whole minute around it, and the mixture then cannot learn which of them
/// knows the app. (Until 2026-12-06 every gap was scored on +-half a minute.) Long gaps keep the
/// half minute: a share of them would be minutes wide and stop rewarding the experts that know
/// a timer to the minute.
pub fn score_window(gap: f64) -> (f64, f64) {
    let half = (SCORE_SHARE * gap).clamp(experts::FINE_TOLERANCE_MIN, SCORE_HALF_WIDTH_MAX);
    ((gap - half).max(0.0), gap + half)
}

/// Softmax of the log-scores, with the prior's floor.
fn mix_weights(log_score: &[f64; EXPERTS]) -> [f64; EXPERTS] {
    let max = log_score.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut w = log_score.map(|l| (l - max).exp());
    let sum: f64 = w.iter().sum();
    for x in &mut w {
        *x = *x / sum * (1.0 - PRIOR_FLOOR);
    }
    w[PRIOR] += PRIOR_FLOOR;
    w
}

#[cfg(test)]
mod tests;
