//! Scores of a run: per-application cold-start percentages and their percentiles, totals.
//!
//! Decision worth knowing: an application with no call in a period has no cold-start
//! percentage for that period and is left out of its percentiles (it is counted in
//! `apps_scored`' complement); its wasted memory still counts. Percentiles interpolate linearly
//! between order statistics (the common "linear" definition), so small changes in one app move
//! them smoothly.

use serde::{Deserialize, Serialize};

use super::AppOutcome;

/// Figures for one period (whole trace, or the scored part).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodScore {
    /// Applications with at least one call in the period.
    pub apps_scored: usize,
    /// Median per-application cold-start %.
    pub p50: f64,
    /// 75th percentile per-application cold-start %.
    pub p75: f64,
    /// 90th percentile per-application cold-start %.
    pub p90: f64,
    /// Mean per-application cold-start %.
    pub mean: f64,
    /// Total cold starts.
    pub cold_starts: u64,
    /// Total calls.
    pub invocations: u64,
    /// Memory loaded but not executing, MB-minutes.
    pub wasted_mb_min: f64,
}

/// Whole-trace and scored-part figures of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Over the whole trace.
    pub whole: PeriodScore,
    /// Over the scored part (the second half in B4).
    pub scored: PeriodScore,
}

/// Scores a run.
pub fn score(outcomes: &[AppOutcome]) -> Scores {
    Scores {
        whole: period(outcomes.iter().map(|o| o.whole)),
        scored: period(outcomes.iter().map(|o| o.scored)),
    }
}

fn period(tallies: impl Iterator<Item = super::Tally>) -> PeriodScore {
    let mut pct = Vec::new();
    let mut s = PeriodScore::default();
    for t in tallies {
        s.cold_starts += t.cold;
        s.invocations += t.invocations;
        s.wasted_mb_min += t.wasted_mb_min;
        if t.invocations > 0 {
            pct.push(100.0 * t.cold as f64 / t.invocations as f64);
        }
    }
    pct.sort_by(f64::total_cmp);
    s.apps_scored = pct.len();
    s.p50 = percentile(&pct, 50.0);
    s.p75 = percentile(&pct, 75.0);
    s.p90 = percentile(&pct, 90.0);
    s.mean = if pct.is_empty() {
        0.0
    } else {
        pct.iter().sum::<f64>() / pct.len() as f64
    };
    s
}

/// The `q`-th percentile (0..=100) of ascending `sorted`, linear between order statistics;
/// 0 for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Tally;

    #[test]
    fn percentiles_interpolate() {
        let v = [0.0, 10.0, 20.0, 30.0, 40.0];
        assert_eq!(percentile(&v, 50.0), 20.0);
        assert_eq!(percentile(&v, 75.0), 30.0);
        assert_eq!(percentile(&v, 90.0), 36.0);
        assert_eq!(percentile(&[7.0], 75.0), 7.0);
        assert_eq!(percentile(&[], 75.0), 0.0);
    }

    #[test]
    fn apps_without_calls_are_left_out_of_percentiles_but_not_memory() {
        let t = |invocations, cold, wasted_mb_min| Tally {
            invocations,
            cold,
            wasted_mb_min,
        };
        let outcomes = [
            AppOutcome {
                whole: t(4, 1, 2.0),
                scored: t(2, 1, 1.0),
            },
            AppOutcome {
                whole: t(1, 1, 5.0),
                scored: t(0, 0, 3.0),
            },
        ];
        let s = score(&outcomes);
        assert_eq!(s.scored.apps_scored, 1);
        assert_eq!(s.scored.p75, 50.0);
        assert_eq!(s.scored.wasted_mb_min, 4.0);
        assert_eq!(s.whole.apps_scored, 2);
        assert_eq!(s.whole.mean, (25.0 + 100.0) / 2.0);
        assert_eq!(s.whole.cold_starts, 2);
    }
}
