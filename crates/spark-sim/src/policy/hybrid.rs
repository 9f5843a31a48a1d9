//! The hybrid histogram policy of "Serverless in the Wild" (Shahrad et al., ATC 2020) in the
//! simulator: `spark-predict`'s [`IdleHistogram`] (the code a node runs with
//! `predictor.policy = "hybrid"`) behind [`Policy`], and the hybrid as a family.
//!
//! Decision worth knowing: the minimum sample count and the fixed keep-alive before the
//! histogram is trusted move the hybrid along its own memory / cold-start trade-off, so B4 also
//! runs it as a family ([`hybrid_family`]) and compares Spark with the member it does worst
//! against. The parameters and their sources are [`HybridParams`]'.

use spark_predict::hybrid::{HybridParams, IdleHistogram};

use crate::replay::{AppInfo, AppPolicy, Policy, Segment};

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
    histogram: IdleHistogram,
    idle_since: Option<f64>,
}

impl Policy for Hybrid {
    type App = HybridApp;

    fn name(&self) -> String {
        "hybrid".to_owned()
    }

    fn for_app(&self, _info: &AppInfo) -> HybridApp {
        HybridApp {
            histogram: IdleHistogram::new(self.params),
            idle_since: None,
        }
    }
}

impl AppPolicy for HybridApp {
    type Plan<'a> = std::array::IntoIter<Segment, 2>;

    fn on_arrival(&mut self, t: f64) {
        if let Some(start) = self.idle_since.take() {
            self.histogram.record_idle((t - start).max(0.0));
        }
    }

    fn plan_idle(&mut self, idle_start: f64) -> Self::Plan<'_> {
        self.idle_since = Some(idle_start);
        let (from, to) = self.histogram.window();
        let (load, unload) = (idle_start + from, idle_start + to);
        [
            Segment::unloaded(idle_start, load),
            Segment::loaded(load, unload),
        ]
        .into_iter()
    }
}

impl HybridApp {
    /// The loaded window, relative to the start of the idle period (minutes).
    pub fn window(&self) -> (f64, f64) {
        self.histogram.window()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        a.on_arrival(0.0);
        a.plan_idle(0.0).for_each(drop);
        a.on_arrival(30.4);
        let (from, to) = a.window();
        assert!(
            (from - 27.0).abs() < 1e-9 && (to - 34.1).abs() < 1e-9,
            "{from} {to}"
        );
    }
}
