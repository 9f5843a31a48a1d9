//! The hybrid histogram policy of "Serverless in the Wild" (Shahrad et al., ATC 2020).
//!
//! Per application, a histogram of idle times (end of an execution to the next call) in
//! 1-minute bins over a 4-hour range. After each execution:
//! - no idle time seen yet, or fewer than [`HybridParams::min_samples`] in range, or the
//!   histogram is not representative (coefficient of variation of the 240 bin counts below
//!   [`HybridParams::cv_threshold`] = 2, i.e. idle times spread over more than ~48 bins): the
//!   standard fixed keep-alive ([`HybridParams::keep_alive_min`]; the paper's is the whole
//!   range, 4 h), no unloading;
//! - at least half of the idle times out of range (> 4 h): the paper's time-series fallback. The
//!   paper fits ARIMA to the app's idle-time series; we fit its AR(1) member (mean and lag-1
//!   autocorrelation by Yule-Walker over the last 64 idle times; the last value while fewer than
//!   3) and, as the paper does, pre-warm at the forecast minus 15% and keep alive to plus 15%;
//! - otherwise: pre-warm at the head (5th percentile bin's lower edge) minus 10%, keep alive up
//!   to the tail (99th percentile bin's upper edge) plus 10%; a head in bin 0 means no unloading.
//!
//! Decision worth knowing: the CV threshold (2), out-of-range threshold (0.5) and margins (10%,
//! 15%) are the paper's and those of public re-implementations; the minimum sample count (5) is
//! ours: with the CV test alone a single idle time makes a perfectly "representative" spike
//! (CV ~ 15.5), which would trust one observation. Because that count and the fixed keep-alive
//! before the histogram is trusted move the hybrid along its own memory / cold-start trade-off,
//! B4 also runs the hybrid as a family ([`hybrid_family`]) and compares Spark with the member it
//! does worst against.

use crate::replay::{AppInfo, AppPolicy, Policy, Segment};

/// Parameters of the hybrid histogram policy (defaults: the paper's, see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridParams {
    /// Histogram range, minutes.
    pub range_min: usize,
    /// Head percentile (pre-warm).
    pub head: f64,
    /// Tail percentile (keep-alive).
    pub tail: f64,
    /// Margin on the histogram windows.
    pub margin: f64,
    /// Below this CV of bin counts the histogram is not representative.
    pub cv_threshold: f64,
    /// In-range idle times needed before the histogram is trusted.
    pub min_samples: u32,
    /// Fixed keep-alive (minutes) while the histogram is not trusted or not representative
    /// (the paper: the whole range, 240).
    pub keep_alive_min: f64,
    /// Share of out-of-range idle times above which the time-series fallback is used.
    pub oob_threshold: f64,
    /// Margin around the time-series forecast.
    pub forecast_margin: f64,
}

impl Default for HybridParams {
    fn default() -> Self {
        HybridParams {
            range_min: 240,
            head: 0.05,
            tail: 0.99,
            margin: 0.10,
            cv_threshold: 2.0,
            min_samples: 5,
            keep_alive_min: 240.0,
            oob_threshold: 0.5,
            forecast_margin: 0.15,
        }
    }
}

/// Idle times kept for the time-series fallback.
const SERIES_LEN: usize = 64;

/// Minimum in-range idle times of the members of [`hybrid_family`].
pub const FAMILY_MIN_SAMPLES: [u32; 4] = [1, 5, 10, 20];
/// Fixed keep-alives (minutes) before trust of the members of [`hybrid_family`] (240: the
/// paper's).
pub const FAMILY_KEEP_ALIVE_MIN: [f64; 4] = [10.0, 20.0, 60.0, 240.0];

/// The hybrid as a family: every combination of [`FAMILY_MIN_SAMPLES`] and
/// [`FAMILY_KEEP_ALIVE_MIN`], the other parameters the paper's, named
/// `hybrid-min{samples}-ka{minutes}`. Each member is another point on the hybrid's trade-off
/// between memory and cold starts; B4 matches Spark to each one's memory.
pub fn hybrid_family() -> Vec<(String, Hybrid)> {
    let mut out = Vec::new();
    for min_samples in FAMILY_MIN_SAMPLES {
        for keep_alive_min in FAMILY_KEEP_ALIVE_MIN {
            let params = HybridParams {
                min_samples,
                keep_alive_min,
                ..HybridParams::default()
            };
            out.push((
                format!("hybrid-min{min_samples}-ka{keep_alive_min:.0}"),
                Hybrid { params },
            ));
        }
    }
    out
}

/// The hybrid histogram policy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Hybrid {
    /// Its parameters.
    pub params: HybridParams,
}

/// Per-application state of [`Hybrid`].
#[derive(Debug, Clone)]
pub struct HybridApp {
    params: HybridParams,
    bins: Vec<u32>,
    in_range: u32,
    out_of_range: u32,
    series: Vec<f64>,
    idle_since: Option<f64>,
}

impl Policy for Hybrid {
    type App = HybridApp;

    fn name(&self) -> String {
        "hybrid".to_owned()
    }

    fn for_app(&self, _info: &AppInfo) -> HybridApp {
        HybridApp {
            params: self.params,
            bins: vec![0; self.params.range_min],
            in_range: 0,
            out_of_range: 0,
            series: Vec::new(),
            idle_since: None,
        }
    }
}

impl AppPolicy for HybridApp {
    type Plan<'a> = std::array::IntoIter<Segment, 2>;

    fn on_arrival(&mut self, t: f64) {
        if let Some(start) = self.idle_since.take() {
            self.record_idle((t - start).max(0.0));
        }
    }

    fn plan_idle(&mut self, idle_start: f64) -> Self::Plan<'_> {
        self.idle_since = Some(idle_start);
        let (from, to) = self.window();
        let (load, unload) = (idle_start + from, idle_start + to);
        [
            Segment::unloaded(idle_start, load),
            Segment::loaded(load, unload),
        ]
        .into_iter()
    }
}

impl HybridApp {
    fn record_idle(&mut self, it: f64) {
        let bin = it.floor() as usize;
        match self.bins.get_mut(bin) {
            Some(b) => {
                *b += 1;
                self.in_range += 1;
            }
            None => self.out_of_range += 1,
        }
        if self.series.len() == SERIES_LEN {
            self.series.remove(0);
        }
        self.series.push(it);
    }

    /// The loaded window, relative to the start of the idle period (minutes).
    pub fn window(&self) -> (f64, f64) {
        let p = &self.params;
        let keep_alive = p.keep_alive_min;
        let total = self.in_range + self.out_of_range;
        if total == 0 {
            return (0.0, keep_alive);
        }
        if f64::from(self.out_of_range) >= p.oob_threshold * f64::from(total) {
            let f = ar1_forecast(&self.series).max(1.0);
            return (f * (1.0 - p.forecast_margin), f * (1.0 + p.forecast_margin));
        }
        if self.in_range < p.min_samples || self.cv() < p.cv_threshold {
            return (0.0, keep_alive);
        }
        let head = self.bin_at(p.head) as f64;
        let tail = (self.bin_at(p.tail) + 1) as f64;
        let from = if head == 0.0 {
            0.0
        } else {
            head * (1.0 - p.margin)
        };
        (from, tail * (1.0 + p.margin))
    }

    /// Coefficient of variation of the bin counts (population standard deviation / mean).
    fn cv(&self) -> f64 {
        let n = self.bins.len() as f64;
        let mean = f64::from(self.in_range) / n;
        let var = self
            .bins
            .iter()
            .map(|&b| (f64::from(b) - mean).powi(2))
            .sum::<f64>()
            / n;
        var.sqrt() / mean
    }

    /// The bin holding the `q` quantile of in-range idle times.
    fn bin_at(&self, q: f64) -> usize {
        let target = q * f64::from(self.in_range);
        let mut seen = 0u32;
        for (i, &b) in self.bins.iter().enumerate() {
            seen += b;
            if b > 0 && f64::from(seen) >= target {
                return i;
            }
        }
        self.bins.len() - 1
    }
}

/// AR(1) one-step forecast of a series (Yule-Walker); the last value while shorter than 3.
pub(crate) fn ar1_forecast(series: &[f64]) -> f64 {
    let Some(&last) = series.last() else {
        return 0.0;
    };
    if series.len() < 3 {
        return last;
    }
    let n = series.len() as f64;
    let mean = series.iter().sum::<f64>() / n;
    let var: f64 = series.iter().map(|x| (x - mean).powi(2)).sum();
    if var <= f64::EPSILON * mean.abs().max(1.0) {
        return mean;
    }
    let cov: f64 = series
        .windows(2)
        .map(|w| (w[0] - mean) * (w[1] - mean))
        .sum();
    let phi = (cov / var).clamp(-0.99, 0.99);
    (mean + phi * (last - mean)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> HybridApp {
        Hybrid::default().for_app(&AppInfo {
            index: 0,
            duration_min: 0.0,
            memory_mb: 1.0,
        })
    }

    #[test]
    fn unknown_app_keeps_alive_for_the_whole_range() {
        assert_eq!(app().window(), (0.0, 240.0));
    }

    #[test]
    fn a_regular_idle_time_gives_a_tight_prewarm_window() {
        let mut a = app();
        for _ in 0..10 {
            a.record_idle(30.4);
        }
        let (from, to) = a.window();
        assert!((from - 27.0).abs() < 1e-9, "{from}");
        assert!((to - 34.1).abs() < 1e-9, "{to}");
    }

    #[test]
    fn too_few_samples_fall_back_to_keep_alive() {
        let mut a = app();
        for _ in 0..4 {
            a.record_idle(30.4);
        }
        assert_eq!(a.window(), (0.0, 240.0));
    }

    #[test]
    fn the_family_varies_trust_and_keep_alive() {
        let family = hybrid_family();
        assert_eq!(family.len(), 16);
        assert!(
            family
                .iter()
                .any(|(n, h)| n == "hybrid-min5-ka240" && *h == Hybrid::default())
        );
        let (_, short) = family
            .iter()
            .find(|(n, _)| n == "hybrid-min1-ka10")
            .unwrap();
        let mut a = short.for_app(&AppInfo {
            index: 0,
            duration_min: 0.0,
            memory_mb: 1.0,
        });
        assert_eq!(a.window(), (0.0, 10.0));
        a.record_idle(30.4);
        let (from, to) = a.window();
        assert!(
            (from - 27.0).abs() < 1e-9 && (to - 34.1).abs() < 1e-9,
            "{from} {to}"
        );
    }

    #[test]
    fn spread_idle_times_are_not_representative() {
        let mut a = app();
        for i in 0..200 {
            a.record_idle(f64::from(i));
        }
        assert!(a.cv() < 2.0);
        assert_eq!(a.window(), (0.0, 240.0));
    }

    #[test]
    fn out_of_range_idle_times_use_the_forecast() {
        let mut a = app();
        for _ in 0..3 {
            a.record_idle(600.0);
        }
        let (from, to) = a.window();
        assert!(
            (from - 510.0).abs() < 1e-9 && (to - 690.0).abs() < 1e-9,
            "{from} {to}"
        );
    }

    #[test]
    fn ar1_follows_an_alternating_series() {
        let s = [100.0, 300.0, 100.0, 300.0, 100.0, 300.0];
        let f = ar1_forecast(&s);
        assert!(f < 200.0, "after a high value expect a low one, got {f}");
    }
}
