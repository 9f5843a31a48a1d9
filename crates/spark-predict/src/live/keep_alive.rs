//! The fixed keep-alive policy (`predictor.keep_alive`): a module stays loaded for a fixed time
//! after its last call, then goes back to its compiled artifact. This is what most serverless
//! platforms do, and B4's `fixed-10min` baseline; a node runs it instead of the
//! [`super::WarmthPlanner`] when the operator asks for it (predictable residency, nothing
//! loaded ahead), and `spark bench replay` runs it to replay that baseline live.
//!
//! Decision worth knowing: the node's memory budget still holds. Modules within their keep-alive
//! are kept most recently called first until the budget (shrunk by the orchestrator's
//! pressure, as for the planner) is full, so an operator who picks a long keep-alive cannot
//! exceed what the orchestrator relies on. Nothing is loaded ahead of a call and no instance
//! is kept ready: the policy knows only the last call.

use super::{WarmthLevel, WarmthPlan};

/// One module as the keep-alive policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleModule<'a> {
    /// Module id.
    pub module: &'a str,
    /// Its last call (Unix ms); `None` if never called.
    pub last_call_ms: Option<u64>,
    /// Memory of its loaded component, bytes.
    pub load_bytes: u64,
}

/// The keep-alive policy's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlivePlanner {
    /// How long a module stays loaded after its last call, ms.
    pub keep_alive_ms: u64,
    /// Memory the loaded modules may use, bytes.
    pub budget_bytes: u64,
}

impl KeepAlivePlanner {
    /// Levels at `now_ms` under `pressure` in `[0, 1]` (the share of the budget the
    /// orchestrator wants back): loaded while the last call is less than the keep-alive ago and
    /// the budget has room, most recent first; compiled otherwise. Eviction order: least
    /// recently called first (never called before anything called).
    pub fn plan(&self, modules: &[IdleModule<'_>], now_ms: u64, pressure: f64) -> WarmthPlan {
        let budget = (self.budget_bytes as f64 * (1.0 - pressure.clamp(0.0, 1.0))) as u64;
        let mut by_recency: Vec<usize> = (0..modules.len()).collect();
        by_recency.sort_by(|&a, &b| {
            let (ma, mb) = (&modules[a], &modules[b]);
            mb.last_call_ms
                .cmp(&ma.last_call_ms)
                .then(ma.module.cmp(mb.module))
        });
        let mut levels = vec![WarmthLevel::Compiled; modules.len()];
        let mut bytes = 0u64;
        for &i in &by_recency {
            let m = &modules[i];
            let within = m
                .last_call_ms
                .is_some_and(|last| now_ms.saturating_sub(last) < self.keep_alive_ms);
            if within && bytes + m.load_bytes <= budget {
                bytes += m.load_bytes;
                levels[i] = WarmthLevel::Loaded;
            }
        }
        WarmthPlan {
            targets: modules
                .iter()
                .zip(levels)
                .map(|(m, level)| (m.module.to_owned(), level))
                .collect(),
            eviction_order: by_recency
                .iter()
                .rev()
                .map(|&i| modules[i].module.to_owned())
                .collect(),
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn module(id: &str, last_call_ms: Option<u64>) -> IdleModule<'_> {
        IdleModule {
            module: id,
            last_call_ms,
            load_bytes: 1 << 20,
        }
    }

    fn levels(plan: &WarmthPlan) -> Vec<(&str, WarmthLevel)> {
        plan.targets.iter().map(|(m, l)| (m.as_str(), *l)).collect()
    }

    #[test]
    fn a_module_stays_loaded_for_the_keep_alive_after_its_last_call() {
        let planner = KeepAlivePlanner {
            keep_alive_ms: 10 * MIN,
            budget_bytes: u64::MAX,
        };
        let modules = [
            module("recent", Some(100 * MIN)),
            module("edge", Some(90 * MIN + 1)),
            module("expired", Some(90 * MIN)),
            module("never", None),
        ];
        let plan = planner.plan(&modules, 100 * MIN, 0.0);
        assert_eq!(
            levels(&plan),
            [
                ("recent", WarmthLevel::Loaded),
                ("edge", WarmthLevel::Loaded),
                ("expired", WarmthLevel::Compiled),
                ("never", WarmthLevel::Compiled),
            ]
        );
        assert_eq!(plan.bytes, 2 << 20);
        assert_eq!(plan.eviction_order, ["never", "expired", "edge", "recent"]);
    }

    #[test]
    fn the_budget_and_the_orchestrators_pressure_hold_most_recent_first() {
        let planner = KeepAlivePlanner {
            keep_alive_ms: 60 * MIN,
            budget_bytes: 4 << 20,
        };
        let modules: Vec<IdleModule<'_>> = ["a", "b", "c", "d", "e"]
            .iter()
            .zip(0u64..)
            .map(|(id, k)| module(id, Some(k * MIN)))
            .collect();
        let loaded = |plan: &WarmthPlan| -> Vec<String> {
            plan.targets
                .iter()
                .filter(|(_, l)| *l == WarmthLevel::Loaded)
                .map(|(m, _)| m.clone())
                .collect()
        };
        let plan = planner.plan(&modules, 10 * MIN, 0.0);
        assert_eq!(loaded(&plan), ["b", "c", "d", "e"]);
        assert_eq!(plan.bytes, 4 << 20);
        let plan = planner.plan(&modules, 10 * MIN, 0.5);
        assert_eq!(loaded(&plan), ["d", "e"]);
        assert!(loaded(&planner.plan(&modules, 10 * MIN, 1.0)).is_empty());
    }
}
