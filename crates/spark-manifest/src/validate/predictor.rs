//! Validation of the `[predictor]` table: the warm-memory budget, the revision interval, model
//! time, and the warmth policy (`policy`, `keep_alive`).

use std::time::Duration;

use toml::Spanned;

use super::{MIN_INTERVAL, Validator};
use crate::schema::RawPredictor;
use crate::{DEFAULT_KEEP_ALIVE, PredictorSettings, WarmthPolicy};

/// Longest `predictor.keep_alive` (a week: the predictor's history does not reach further).
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(7 * 86_400);

impl Validator<'_> {
    pub(super) fn predictor(&mut self, raw: Option<&RawPredictor>) -> PredictorSettings {
        let d = PredictorSettings::default();
        let Some(raw) = raw else { return d };
        let interval = self.duration(raw.interval.as_ref(), d.interval, "predictor.interval");
        if let Some(span) = raw.interval.as_ref().map(Spanned::span)
            && !(MIN_INTERVAL..=Duration::from_secs(600)).contains(&interval)
        {
            self.error(span, "predictor.interval must be between 100ms and 10m");
        }
        let policy = self.warmth_policy(raw);
        PredictorSettings {
            policy,
            enabled: raw.enabled.unwrap_or(d.enabled),
            memory_budget: self.size(
                raw.memory_budget.as_ref(),
                d.memory_budget,
                "predictor.memory_budget",
            ),
            interval,
            time_scale: self.number(
                raw.time_scale.as_ref(),
                d.time_scale,
                1.0..=3600.0,
                "predictor.time_scale",
            ),
        }
    }

    /// `predictor.policy` and `predictor.keep_alive` (which alone means a keep-alive).
    fn warmth_policy(&mut self, raw: &RawPredictor) -> WarmthPolicy {
        let keep_alive = raw.keep_alive.as_ref().map(|raw| {
            let value = self.duration(Some(raw), DEFAULT_KEEP_ALIVE, "predictor.keep_alive");
            if !(Duration::from_secs(1)..=MAX_KEEP_ALIVE).contains(&value) {
                self.error(
                    raw.span(),
                    "predictor.keep_alive must be between 1s and 168h",
                );
            }
            value
        });
        let Some(policy) = &raw.policy else {
            return keep_alive.map_or(WarmthPolicy::Predict, WarmthPolicy::KeepAlive);
        };
        match (policy.get_ref().as_str(), keep_alive) {
            ("keep-alive", keep_alive) => {
                WarmthPolicy::KeepAlive(keep_alive.unwrap_or(DEFAULT_KEEP_ALIVE))
            }
            (name @ ("spark" | "hybrid"), Some(_)) => {
                let span = raw.keep_alive.as_ref().map_or(policy.span(), Spanned::span);
                self.error(
                    span,
                    format!(
                        "predictor.keep_alive applies to policy = \"keep-alive\", not \"{name}\""
                    ),
                );
                WarmthPolicy::Predict
            }
            ("spark", None) => WarmthPolicy::Predict,
            ("hybrid", None) => WarmthPolicy::Hybrid,
            (other, _) => {
                self.error(
                    policy.span(),
                    format!("predictor.policy must be \"spark\", \"keep-alive\" or \"hybrid\", not {other:?}"),
                );
                WarmthPolicy::Predict
            }
        }
    }
}
