//! Is the canary worse than the stable version? Two one-sided tests on one step's windows:
//!
//! - **errors** (5xx, traps and timeouts): a pooled two-proportion z-test of "canary fails more
//!   often", plus a minimum effect (a difference of a tenth of a percent on a million requests
//!   is significant but not worth a rollback);
//! - **latency**: a Mann-Whitney rank test of "canary is slower" on the two latency histograms
//!   (bucket index as the rank value, ties corrected), plus a minimum effect on p50 or p99.
//!
//! Latency is compared only between versions on the same tier of code: a canary still on
//! baseline (Winch) code while the stable version runs optimized code is judged on its errors
//! (which can roll it back at once) and otherwise waits, with the reason, until its optimized
//! code serves (the node then starts the step's windows afresh).
//!
//! The decision worth knowing: the analysis looks at the data many times during a step, so a
//! plain 1% test would cry wolf. An early rollback (before the step's time is up, or before the
//! step has its minimum samples) needs overwhelming evidence (z > 3.29, one-sided p < 0.0005);
//! at the end of a step the bar is p < 0.01 (`machine` picks the bar for each look). A canary is never promoted on too little data: without the minimum requests on
//! both sides the verdict is "wait".

use serde::{Deserialize, Serialize};

use crate::stats::VersionWindow;

/// Thresholds of the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnalysisConfig {
    /// Requests each version needs in the step before the canary may advance.
    pub min_requests: u64,
    /// Canary requests needed before an early rollback is considered.
    pub min_early_requests: u64,
    /// z for a rollback at the end of a step (one-sided p < 0.01).
    pub z_final: f64,
    /// z for a rollback before the step has its samples (one-sided p < 0.0005).
    pub z_early: f64,
    /// Least error-rate difference worth a rollback.
    pub min_error_increase: f64,
    /// Least slowdown worth a rollback: canary p50 over stable p50, or p99 over p99.
    pub p50_factor: f64,
    /// Least p99 slowdown worth a rollback, canary over stable; only counts once both
    /// versions have 200 requests.
    pub p99_factor: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            min_requests: 100,
            min_early_requests: 20,
            z_final: 2.326,
            z_early: 3.291,
            min_error_increase: 0.01,
            p50_factor: 1.5,
            p99_factor: 2.0,
        }
    }
}

/// What to do with the canary after looking at a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// Not worse, with enough data: the step may advance (if its time is up).
    Healthy {
        /// Error rates, p50 and p99 of both versions and the request counts, for status.
        summary: String,
    },
    /// Not enough data to tell.
    Wait {
        /// The requests needed and those seen on each side.
        reason: String,
    },
    /// Worse, with the evidence.
    Rollback {
        /// Which test failed, with the rates or latencies compared and its z.
        reason: String,
    },
}

/// Compares one step's windows.
pub fn analyze(stable: &VersionWindow, canary: &VersionWindow, config: &AnalysisConfig) -> Verdict {
    let enough = canary.requests >= config.min_requests && stable.requests >= config.min_requests;
    let early = canary.requests >= config.min_early_requests;
    let bar = if enough {
        config.z_final
    } else {
        config.z_early
    };
    let comparable = stable.baseline_code == canary.baseline_code;
    if early || enough {
        if let Some(reason) = worse_errors(stable, canary, config, bar) {
            return Verdict::Rollback { reason };
        }
        if comparable && let Some(reason) = worse_latency(stable, canary, config, bar) {
            return Verdict::Rollback { reason };
        }
    }
    if !comparable {
        let (slow, fast) = if canary.baseline_code {
            ("canary", "stable")
        } else {
            ("stable", "canary")
        };
        return Verdict::Wait {
            reason: format!(
                "latency not comparable yet: the {slow} version runs baseline code, the {fast} optimized code (errors {:.2}% vs {:.2}% over {}+{} requests)",
                canary.error_rate() * 100.0,
                stable.error_rate() * 100.0,
                canary.requests,
                stable.requests
            ),
        };
    }
    if !enough {
        return Verdict::Wait {
            reason: format!(
                "needs {} requests per version (canary {}, stable {})",
                config.min_requests, canary.requests, stable.requests
            ),
        };
    }
    Verdict::Healthy {
        summary: format!(
            "errors {:.2}% vs {:.2}%, p50 {} vs {} ms, p99 {} vs {} ms over {}+{} requests",
            canary.error_rate() * 100.0,
            stable.error_rate() * 100.0,
            ms(canary.latency_ms(0.5)),
            ms(stable.latency_ms(0.5)),
            ms(canary.latency_ms(0.99)),
            ms(stable.latency_ms(0.99)),
            canary.requests,
            stable.requests
        ),
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn worse_errors(
    stable: &VersionWindow,
    canary: &VersionWindow,
    config: &AnalysisConfig,
    bar: f64,
) -> Option<String> {
    let z = two_proportion_z(
        canary.errors,
        canary.requests,
        stable.errors,
        stable.requests,
    );
    let increase = canary.error_rate() - stable.error_rate();
    (z > bar && increase >= config.min_error_increase).then(|| {
        format!(
            "canary fails more: {:.2}% vs {:.2}% ({} of {} vs {} of {}; {} timeouts), z = {z:.2}",
            canary.error_rate() * 100.0,
            stable.error_rate() * 100.0,
            canary.errors,
            canary.requests,
            stable.errors,
            stable.requests,
            canary.timeouts
        )
    })
}

fn worse_latency(
    stable: &VersionWindow,
    canary: &VersionWindow,
    config: &AnalysisConfig,
    bar: f64,
) -> Option<String> {
    let z = mann_whitney_z(&canary.latency, &stable.latency)?;
    let (c50, s50) = (canary.latency_ms(0.5)?, stable.latency_ms(0.5)?);
    let (c99, s99) = (canary.latency_ms(0.99)?, stable.latency_ms(0.99)?);
    // The median is robust on a few dozen requests; a p99 is one slow request away from
    // doubling until there are a few hundred.
    let tail_known = canary.requests >= P99_MIN_REQUESTS && stable.requests >= P99_MIN_REQUESTS;
    let slower = c50 >= config.p50_factor * s50 || (tail_known && c99 >= config.p99_factor * s99);
    (z > bar && slower).then(|| format!("canary is slower: p50 {c50:.1} vs {s50:.1} ms, p99 {c99:.1} vs {s99:.1} ms, rank test z = {z:.2}"))
}

/// Requests each version needs before its p99 counts as evidence.
const P99_MIN_REQUESTS: u64 = 200;

/// Pooled two-proportion z statistic of "the first proportion is larger" (0 with no variance).
pub fn two_proportion_z(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 0.0;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p1 = x1 as f64 / n1f;
    let p2 = x2 as f64 / n2f;
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se == 0.0 { 0.0 } else { (p1 - p2) / se }
}

/// Mann-Whitney z statistic of "values drawn from `a` are larger than from `b`", for two
/// histograms over the same ordered buckets (ties corrected); `None` without samples.
pub fn mann_whitney_z(a: &[u64], b: &[u64]) -> Option<f64> {
    let (n1, n2) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    if n1 == 0.0 || n2 == 0.0 {
        return None;
    }
    // U for `a`: for each bucket, a's count times (b below it + half of b in it).
    let (mut u, mut b_below, mut ties) = (0.0, 0.0, 0.0);
    for (&ca, &cb) in a.iter().zip(b.iter().chain(std::iter::repeat(&0))) {
        let (ca, cb) = (ca as f64, cb as f64);
        u += ca * (b_below + cb / 2.0);
        b_below += cb;
        let t = ca + cb;
        ties += t * t * t - t;
    }
    let n = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance <= 0.0 {
        return Some(0.0);
    }
    Some((u - n1 * n2 / 2.0) / variance.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::bucket;

    /// `requests` with `errors` failures, latencies spread around `millis`.
    fn window(requests: u64, errors: u64, millis: f64) -> VersionWindow {
        let mut w = VersionWindow {
            requests,
            errors,
            ..VersionWindow::default()
        };
        for i in 0..requests {
            let jitter = 0.8 + 0.4 * ((i * 7919) % 100) as f64 / 100.0;
            w.latency[bucket((millis * 1e3 * jitter) as u64)] += 1;
        }
        w
    }

    #[test]
    fn the_z_statistics_are_right() {
        // Textbook example: 30/100 vs 20/100 gives z = 1.633.
        assert!((two_proportion_z(30, 100, 20, 100) - 1.633).abs() < 1e-3);
        assert_eq!(two_proportion_z(0, 100, 0, 100), 0.0);
        let same = mann_whitney_z(&[5, 10, 5], &[5, 10, 5]).unwrap();
        assert!(same.abs() < 1e-9, "{same}");
        let higher = mann_whitney_z(&[0, 0, 20], &[20, 0, 0]).unwrap();
        assert!(higher > 5.0, "{higher}");
    }

    #[test]
    fn a_canary_on_baseline_code_is_not_judged_slower_but_still_on_errors() {
        let stable = window(400, 0, 2.0);
        let slow_baseline = VersionWindow {
            baseline_code: true,
            ..window(400, 0, 6.0)
        };
        let verdict = analyze(&stable, &slow_baseline, &AnalysisConfig::default());
        let Verdict::Wait { reason } = verdict else {
            panic!("{verdict:?}")
        };
        assert!(
            reason.contains("the canary version runs baseline code"),
            "{reason}"
        );
        let failing = VersionWindow {
            baseline_code: true,
            ..window(100, 10, 2.0)
        };
        assert!(matches!(
            analyze(&stable, &failing, &AnalysisConfig::default()),
            Verdict::Rollback { .. }
        ));
        // Both on optimized code again: the same slowdown is a rollback.
        assert!(matches!(
            analyze(&stable, &window(400, 0, 6.0), &AnalysisConfig::default()),
            Verdict::Rollback { .. }
        ));
        let since = slow_baseline.since(&VersionWindow::default());
        assert!(since.baseline_code);
    }

    #[test]
    fn a_canary_failing_ten_percent_is_rolled_back() {
        let verdict = analyze(
            &window(400, 0, 2.0),
            &window(100, 10, 2.0),
            &AnalysisConfig::default(),
        );
        let Verdict::Rollback { reason } = verdict else {
            panic!("{verdict:?}")
        };
        assert!(
            reason.contains("canary fails more: 10.00% vs 0.00%"),
            "{reason}"
        );
    }

    #[test]
    fn a_canary_three_times_slower_is_rolled_back() {
        let verdict = analyze(
            &window(300, 0, 2.0),
            &window(100, 0, 6.0),
            &AnalysisConfig::default(),
        );
        let Verdict::Rollback { reason } = verdict else {
            panic!("{verdict:?}")
        };
        assert!(reason.contains("canary is slower"), "{reason}");
    }

    #[test]
    fn a_good_canary_is_healthy_and_noise_is_not_a_regression() {
        let verdict = analyze(
            &window(500, 2, 2.0),
            &window(120, 1, 2.1),
            &AnalysisConfig::default(),
        );
        assert!(matches!(verdict, Verdict::Healthy { .. }), "{verdict:?}");
    }

    #[test]
    fn too_little_data_waits_unless_the_evidence_is_overwhelming() {
        let verdict = analyze(
            &window(50, 0, 2.0),
            &window(10, 1, 2.0),
            &AnalysisConfig::default(),
        );
        assert!(matches!(verdict, Verdict::Wait { .. }), "{verdict:?}");
        let verdict = analyze(
            &window(60, 0, 2.0),
            &window(30, 3, 2.0),
            &AnalysisConfig::default(),
        );
        assert!(
            matches!(verdict, Verdict::Wait { .. }),
            "3 of 30 is not yet overwhelming: {verdict:?}"
        );
        let verdict = analyze(
            &window(60, 0, 2.0),
            &window(30, 15, 2.0),
            &AnalysisConfig::default(),
        );
        assert!(
            matches!(verdict, Verdict::Rollback { .. }),
            "half failing is: {verdict:?}"
        );
    }
}
