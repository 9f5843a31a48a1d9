//! The experts of the demand model: each predicts the gap until an app's next call as a survival
//! function `S(x) = P(gap > x)` (minutes since the last call).
//!
//! Decision worth knowing: an expert that has no data yet answers with the [`prior`], so every
//! expert is always defined and the mixture's weights need no special cases; an expert becomes
//! useful (and gains weight) exactly when its data starts predicting better than the prior.

use serde::{Deserialize, Serialize};

/// Shape of the heavy-tailed prior: `S(x) = (1 + x / PRIOR_SCALE_MIN)^-PRIOR_TAIL`.
pub const PRIOR_TAIL: f64 = 0.3;
/// Scale of the prior, minutes.
pub const PRIOR_SCALE_MIN: f64 = 1.0;

/// The prior: a heavy tail, hazard `PRIOR_TAIL / (PRIOR_SCALE_MIN + x)`, so the longer an app
/// has been quiet, the less likely it is to come back in the next minute. About 11% of its mass
/// lies beyond a day: some apps never come back.
pub fn prior(x: f64) -> f64 {
    (1.0 + x.max(0.0) / PRIOR_SCALE_MIN).powf(-PRIOR_TAIL)
}

/// Number of recent gaps kept.
pub const RECENT_GAPS: usize = 8;

/// The last [`RECENT_GAPS`] gaps, each predicted again with a tolerance: the *repeat* expert
/// (as precise as the app's own gaps have repeated, see [`repeat_tolerance`]) and
/// the *recent* expert (tolerance growing with the gap, for loosely regular and bursty apps).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentGaps {
    gaps: Vec<f64>,
    next: usize,
    /// The repeat expert's tolerance of each gap in `gaps` (same order), set on every push.
    #[serde(default)]
    repeat: Vec<f64>,
}

impl RecentGaps {
    /// Records a gap, forgetting the oldest beyond [`RECENT_GAPS`].
    pub fn push(&mut self, gap: f64) {
        if self.gaps.len() < RECENT_GAPS {
            self.gaps.push(gap);
        } else {
            self.gaps[self.next] = gap;
        }
        self.next = (self.next + 1) % RECENT_GAPS;
        self.repeat = (0..self.gaps.len())
            .map(|i| repeat_tolerance(&self.gaps, i))
            .collect();
    }

    /// The repeat expert's view: each kept gap with its tolerance.
    pub fn repeats(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let cached = self.repeat.len() == self.gaps.len();
        self.gaps.iter().enumerate().map(move |(i, &g)| {
            let d = if cached {
                self.repeat[i]
            } else {
                repeat_tolerance(&self.gaps, i)
            };
            (g, d)
        })
    }

    /// Survival of the repeat expert: each kept gap `g` predicted uniform on `g ± d`, `d` its
    /// repeat tolerance.
    pub fn repeat_survival(&self, x: f64) -> f64 {
        if self.gaps.is_empty() {
            return prior(x);
        }
        let sum: f64 = self.repeats().map(|(g, d)| uniform_survival(x, g, d)).sum();
        sum / self.gaps.len() as f64
    }

    /// The gaps kept, oldest first.
    pub fn ordered(&self) -> impl Iterator<Item = f64> + '_ {
        let (a, b) = self.gaps.split_at(self.next.min(self.gaps.len()));
        b.iter().chain(a).copied()
    }

    /// Number of gaps kept.
    pub fn len(&self) -> usize {
        self.gaps.len()
    }

    /// Whether no gap was seen.
    pub fn is_empty(&self) -> bool {
        self.gaps.is_empty()
    }

    /// Survival when each gap `g` is predicted uniform on `g ± tolerance(g)`.
    pub fn survival(&self, x: f64, tolerance: impl Fn(f64) -> f64) -> f64 {
        if self.gaps.is_empty() {
            return prior(x);
        }
        let sum: f64 = self
            .gaps
            .iter()
            .map(|&g| uniform_survival(x, g, tolerance(g)))
            .sum();
        sum / self.gaps.len() as f64
    }

    /// The period, if at least 3/4 of the kept gaps of a minute or more agree with their median
    /// within half a minute (a timer); `(period, share of agreeing gaps)`.
    pub fn period(&self) -> Option<(f64, f64)> {
        let mut long: Vec<f64> = self.gaps.iter().copied().filter(|&g| g >= 1.0).collect();
        if long.len() < 3 {
            return None;
        }
        long.sort_by(f64::total_cmp);
        let median = long[long.len() / 2];
        let agree = long.iter().filter(|&&g| (g - median).abs() <= 0.5).count();
        let share = agree as f64 / self.gaps.len() as f64;
        (4 * agree >= 3 * long.len()).then_some((median, share))
    }
}

/// `P(gap > x)` for a gap uniform on `g ± d` (cut at 0).
fn uniform_survival(x: f64, g: f64, d: f64) -> f64 {
    let (lo, hi) = ((g - d).max(0.0), g + d);
    if hi - lo < 1e-9 {
        f64::from(u8::from(x < hi))
    } else {
        ((hi - x) / (hi - lo)).clamp(0.0, 1.0)
    }
}

/// The widest tolerance of the repeat expert: half a minute (half the gap for sub-minute gaps,
/// which come from several calls in one minute). The trace's resolution is the minute, so a
/// timer's calls land in the same minute, not necessarily at the same second.
pub fn exact_tolerance(gap: f64) -> f64 {
    0.5 * gap.clamp(1e-3, 1.0)
}

/// The finest tolerance of the repeat expert (minutes; 3 s): gaps that repeat closer than this
/// are still predicted this wide. The node sees calls and moves modules on revisions (every
/// `predictor.interval`, 10 s by default; 250 ms in a 60x replay) and a load takes its time, so
/// a window much narrower than this would be missed live.
pub const FINE_TOLERANCE_MIN: f64 = 0.05;

/// The repeat expert's tolerance of `gaps[i]`, learned from how closely the app's gaps have
/// repeated: the kept gaps within a minute of it (it included) agree; the spread of the
/// draws they look like (their range x `(n + 1) / (n - 1)`: the range of `n` uniform draws
/// covers `(n - 1) / (n + 1)` of their spread on average, so two gaps close by chance do not
/// make a sharp timer), between [`FINE_TOLERANCE_MIN`] and [`exact_tolerance`]; no other gap
/// agreeing: the widest.
/// A timer whose gaps agree to the second is predicted to the second (a load window of seconds,
/// not of a minute, before each run); an app whose gaps scatter over the minute keeps the
/// minute, so the expert claims no precision its data does not show.
pub fn repeat_tolerance(gaps: &[f64], i: usize) -> f64 {
    let g = gaps[i];
    let widest = exact_tolerance(g);
    let agree = || gaps.iter().copied().filter(|&h| (g - h).abs() <= 1.0);
    let n = agree().count() as f64;
    if n < 2.0 {
        return widest;
    }
    let lo = agree().fold(f64::INFINITY, f64::min);
    let hi = agree().fold(f64::NEG_INFINITY, f64::max);
    // The range of n uniform draws covers (n - 1) / (n + 1) of their spread on average.
    let spread = (hi - lo) * (n + 1.0) / (n - 1.0);
    spread.clamp(FINE_TOLERANCE_MIN.min(widest), widest)
}

/// Tolerance of the recent expert: the repeat one plus a quarter of the gap.
pub fn loose_tolerance(gap: f64) -> f64 {
    exact_tolerance(gap) + 0.25 * gap
}

/// Bins of the long-term histogram: `[0, 0.5)`, then edges growing by [`LOG_BIN_RATIO`].
pub const LOG_BINS: usize = 48;
/// Ratio between consecutive histogram edges (about 4 bins per doubling).
pub const LOG_BIN_RATIO: f64 = 1.25;
/// Each new gap has weight 1; older ones decay by this factor per new gap (half-life ~ 45).
pub const HISTOGRAM_DECAY: f64 = 0.985;

/// The long-term expert: a decayed histogram of all gaps on log-spaced bins (half a minute up
/// to ~8 days), uniform within a bin. It captures an app's idle-time distribution as the hybrid
/// policy's histogram does, without its 4-hour range limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogHistogram {
    mass: Vec<f64>,
    /// `above[i]` = mass of bins `i..`, kept so that survival is O(1).
    above: Vec<f64>,
}

impl Default for LogHistogram {
    fn default() -> Self {
        LogHistogram {
            mass: vec![0.0; LOG_BINS],
            above: vec![0.0; LOG_BINS + 1],
        }
    }
}

impl LogHistogram {
    /// Lower edge of bin `i` (minutes).
    pub fn edge(i: usize) -> f64 {
        if i == 0 {
            0.0
        } else {
            0.5 * LOG_BIN_RATIO.powi(i as i32 - 1)
        }
    }

    fn bin(x: f64) -> usize {
        if x < 0.5 {
            return 0;
        }
        let i = 1 + ((x / 0.5).ln() / LOG_BIN_RATIO.ln()).floor() as usize;
        i.min(LOG_BINS - 1)
    }

    /// Records a gap.
    pub fn push(&mut self, gap: f64) {
        for m in &mut self.mass {
            *m *= HISTOGRAM_DECAY;
        }
        self.mass[Self::bin(gap)] += 1.0;
        for i in (0..LOG_BINS).rev() {
            self.above[i] = self.above[i + 1] + self.mass[i];
        }
    }

    /// Survival, uniform within bins; the last bin's mass is spread over one more bin width.
    pub fn survival(&self, x: f64) -> f64 {
        let total = self.above[0];
        if total <= 0.0 {
            return prior(x);
        }
        let i = Self::bin(x);
        let (lo, hi) = (Self::edge(i), Self::edge(i + 1));
        let inside = ((hi - x) / (hi - lo)).clamp(0.0, 1.0) * self.mass[i];
        ((self.above[i + 1] + inside) / total).clamp(0.0, 1.0)
    }
}

/// Time constant of the short-term rate, minutes.
pub const RATE_TAU_MIN: f64 = 60.0;

/// The short-term rate expert: calls arrive as a Poisson process at the rate of the last hour
/// (exponentially weighted), so a burst raises the chance of a call in the next minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ShortRate {
    /// Decayed call count at `at`.
    count: f64,
    at: f64,
    first: Option<f64>,
}

impl ShortRate {
    /// Records a call at `t`.
    pub fn push(&mut self, t: f64) {
        self.count = self.count * (-(t - self.at).max(0.0) / RATE_TAU_MIN).exp() + 1.0;
        self.at = t;
        self.first.get_or_insert(t);
    }

    /// Calls per minute at the last call, normalized by the window actually observed.
    pub fn rate(&self) -> f64 {
        let Some(first) = self.first else { return 0.0 };
        let window = RATE_TAU_MIN * (1.0 - (-(self.at - first) / RATE_TAU_MIN).exp());
        self.count / window.max(1.0)
    }

    /// Survival of an exponential gap at the current rate.
    pub fn survival(&self, x: f64) -> f64 {
        if self.first.is_none() {
            return prior(x);
        }
        (-self.rate() * x.max(0.0)).exp()
    }
}

/// The long-run rate expert: calls as a Poisson process whose rate is uncertain (Gamma
/// posterior from the calls and time seen, both decayed with a one-day time constant). Its
/// predictive gap is a Lomax: hazard `a / (b + x)`, so it extends an app's loaded time past the
/// longest gap seen so far when the app is busy enough, and lets it go as the quiet lasts.
/// It answers with the prior until two calls were seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DailyRate {
    calls: f64,
    exposure: f64,
    last: Option<f64>,
}

impl DailyRate {
    /// Records a call at `t`.
    pub fn push(&mut self, t: f64) {
        if let Some(last) = self.last {
            let decay = (-(t - last).max(0.0) / DAY_MIN).exp();
            self.calls *= decay;
            self.exposure = self.exposure * decay + DAY_MIN * (1.0 - decay);
        }
        self.calls += 1.0;
        self.last = Some(t);
    }

    /// Survival of the gap: `(1 + x / b)^-a` with `a = calls - 1/2`, `b = exposure`.
    pub fn survival(&self, x: f64) -> f64 {
        if self.calls < 2.0 || self.exposure <= 0.0 {
            return prior(x);
        }
        (1.0 + x.max(0.0) / self.exposure).powf(-(self.calls - 0.5))
    }
}

/// Minutes per day.
pub const DAY_MIN: f64 = 1440.0;
/// Days of history the time-of-day expert needs before it predicts.
pub const TIME_OF_DAY_MIN_DAYS: f64 = 2.0;

/// The time-of-day expert: calls per hour of day, averaged over the days seen, as an
/// inhomogeneous Poisson process. It answers with the prior until [`TIME_OF_DAY_MIN_DAYS`] of
/// history exist (on a one-day trace it never predicts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeOfDay {
    hours: Vec<f64>,
    first: Option<f64>,
    last: f64,
}

impl Default for TimeOfDay {
    fn default() -> Self {
        TimeOfDay {
            hours: vec![0.0; 24],
            first: None,
            last: 0.0,
        }
    }
}

impl TimeOfDay {
    /// Records a call at `t` (minutes; minute 0 is midnight).
    pub fn push(&mut self, t: f64) {
        self.hours[hour_of(t)] += 1.0;
        self.first.get_or_insert(t);
        self.last = t;
    }

    fn days(&self) -> f64 {
        self.first.map_or(0.0, |f| (self.last - f) / DAY_MIN)
    }

    /// Expected calls from minute 0 to absolute time `t` under the daily profile.
    fn cumulative(&self, t: f64) -> f64 {
        let per_min = 1.0 / (60.0 * self.days().max(1.0));
        let day = (t / DAY_MIN).floor();
        let in_day = t - day * DAY_MIN;
        let h = hour_of(t);
        let before: f64 = self.hours[..h].iter().sum::<f64>() * 60.0;
        let within = self.hours[h] * (in_day - 60.0 * h as f64);
        (day * self.hours.iter().sum::<f64>() * 60.0 + before + within) * per_min
    }

    /// Survival of the gap after a call at `t_last`.
    pub fn survival(&self, t_last: f64, x: f64) -> f64 {
        if self.days() < TIME_OF_DAY_MIN_DAYS {
            return prior(x);
        }
        (self.cumulative(t_last) - self.cumulative(t_last + x.max(0.0))).exp()
    }
}

fn hour_of(t: f64) -> usize {
    ((t.rem_euclid(DAY_MIN) / 60.0) as usize).min(23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prior_decreases_and_keeps_a_tail() {
        assert_eq!(prior(0.0), 1.0);
        assert!(prior(10.0) > prior(100.0));
        assert!(prior(1440.0) > 0.1 && prior(1440.0) < 0.12);
    }

    #[test]
    fn recent_gaps_detect_a_timer() {
        let mut r = RecentGaps::default();
        for _ in 0..5 {
            r.push(15.0);
        }
        r.push(15.2);
        assert_eq!(r.period().map(|p| p.0), Some(15.0));
        assert!((r.survival(14.4, exact_tolerance) - 1.0).abs() < 1e-9);
        assert!(r.survival(15.8, exact_tolerance) < 1e-9);
        let mut irregular = RecentGaps::default();
        for g in [3.0, 40.0, 7.0, 120.0] {
            irregular.push(g);
        }
        assert_eq!(irregular.period(), None);
    }

    #[test]
    fn the_repeat_tolerance_is_as_fine_as_the_gaps_have_repeated() {
        let of = |gaps: &[f64]| {
            let mut r = RecentGaps::default();
            for &g in gaps {
                r.push(g);
            }
            r.repeats().collect::<Vec<_>>()
        };
        // A timer to the second: its windows are seconds wide.
        for (g, d) in of(&[15.0, 15.0, 15.0, 15.0]) {
            assert_eq!((g, d), (15.0, FINE_TOLERANCE_MIN));
        }
        // Three gaps that agree within 12 s: the spread they suggest, twice their range.
        for (_, d) in of(&[15.0, 15.2, 15.1]) {
            assert!((d - 0.4).abs() < 1e-9, "{d}");
        }
        // Eight: little more than their range.
        for (_, d) in of(&[15.0, 15.1, 15.05, 15.0, 15.1, 15.02, 15.08, 15.04]) {
            assert!((d - 0.1 * 9.0 / 7.0).abs() < 1e-9, "{d}");
        }
        // Scattered over the minute, or alone: the whole half minute.
        assert!(of(&[15.0, 15.9, 15.5]).iter().all(|&(_, d)| d == 0.5));
        assert!(of(&[3.0, 40.0, 7.0]).iter().all(|&(_, d)| d == 0.5));
        // Several calls a minute: never wider than half the gap.
        assert!(of(&[0.25, 0.25, 0.5]).iter().all(|&(g, d)| d <= 0.5 * g));
        // The repeat survival drops within the window and only there.
        let mut r = RecentGaps::default();
        for _ in 0..4 {
            r.push(15.0);
        }
        assert_eq!(r.repeat_survival(14.9), 1.0);
        assert_eq!(r.repeat_survival(15.1), 0.0);
        assert!((r.repeat_survival(15.0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn recent_gaps_ring_keeps_the_newest() {
        let mut r = RecentGaps::default();
        for g in 0..10 {
            r.push(f64::from(g));
        }
        let kept: Vec<f64> = r.ordered().collect();
        assert_eq!(kept, vec![2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }

    #[test]
    fn histogram_survival_is_monotone_and_normalized() {
        let mut h = LogHistogram::default();
        for g in [0.2, 3.0, 3.0, 50.0, 700.0] {
            h.push(g);
        }
        assert!((h.survival(0.0) - 1.0).abs() < 1e-9);
        let mut prev = 1.0;
        for i in 0..2000 {
            let s = h.survival(f64::from(i));
            assert!(s <= prev + 1e-12);
            prev = s;
        }
        assert!(h.survival(1e6) < 1e-9);
        assert!(LogHistogram::edge(LOG_BINS) > 8.0 * DAY_MIN);
    }

    #[test]
    fn short_rate_follows_bursts() {
        let mut r = ShortRate::default();
        for i in 0..60 {
            r.push(f64::from(i));
        }
        assert!((r.rate() - 1.0).abs() < 0.05, "{}", r.rate());
        assert!(r.survival(1.0) < 0.4);
    }

    #[test]
    fn daily_rate_has_a_declining_hazard() {
        let mut d = DailyRate::default();
        assert_eq!(d.survival(100.0), prior(100.0));
        for i in 0..20 {
            d.push(f64::from(i) * 60.0);
        }
        let hazard = |x: f64| (d.survival(x) - d.survival(x + 1.0)) / d.survival(x);
        assert!((hazard(0.0) - 1.0 / 60.0).abs() < 0.005, "{}", hazard(0.0));
        assert!(hazard(600.0) < hazard(0.0));
    }

    #[test]
    fn time_of_day_waits_for_two_days_then_follows_the_profile() {
        let mut d = TimeOfDay::default();
        for day in 0..3 {
            for m in 0..60 {
                d.push(f64::from(day) * DAY_MIN + 600.0 + f64::from(m));
            }
        }
        assert!(d.days() >= TIME_OF_DAY_MIN_DAYS);
        let busy = 1.0 - d.survival(3.0 * DAY_MIN + 599.0, 10.0);
        let quiet = 1.0 - d.survival(3.0 * DAY_MIN + 100.0, 10.0);
        assert!(busy > 0.5 && quiet < 1e-9, "busy {busy} quiet {quiet}");
    }
}
