//! Load windows: the baselines' way of keeping modules warm, for a node that runs one of them
//! instead of the [`super::WarmthPlanner`] (`predictor.policy`). Each module is loaded during a
//! window after its last call: `[0, keep-alive)` for a fixed keep-alive (what most serverless
//! platforms do, B4's `fixed-10min`), or the window the hybrid histogram policy derives from
//! the module's idle times ([`crate::hybrid::IdleHistogram::window`]: it may start later,
//! pre-warming before the expected call). `spark bench replay` runs them to replay B4's
//! baselines live.
//!
//! Decision worth knowing: the node's memory budget still holds. Modules inside their window
//! are kept most recently called first until the budget (shrunk by the orchestrator's
//! pressure, as for the planner) is full, so an operator who picks a long keep-alive cannot
//! exceed what the orchestrator relies on. No instance is kept ready: a window says only
//! whether the code is loaded. A window that opens after the call is led by the module's
//! [`IdleModule::lead_ms`]: a node sees calls and moves modules only at its revisions, and
//! loading takes time, so to be loaded when the window opens it must start that much before
//! (the simulator, which loads instantly at any instant, needs no lead).

use super::{WarmthLevel, WarmthPlan};

/// One module as a load-window policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleModule<'a> {
    /// Module id.
    pub module: &'a str,
    /// Its last call (Unix ms); `None` if never called.
    pub last_call_ms: Option<u64>,
    /// When it should be loaded: from `.0` to `.1` ms after its last call.
    pub window_ms: (u64, u64),
    /// Memory of its loaded component, bytes.
    pub load_bytes: u64,
    /// How long before its window opens loading must start (model ms): the delay between a
    /// call and the revision that sees it, the delay to the revision that loads, and the load.
    pub lead_ms: u64,
}

/// A load-window policy's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPlanner {
    /// Memory the loaded modules may use, bytes.
    pub budget_bytes: u64,
}

impl WindowPlanner {
    /// Levels at `now_ms` under `pressure` in `[0, 1]` (the share of the budget the
    /// orchestrator wants back): loaded while the time since the last call is inside the
    /// module's window and the budget has room, most recent first; compiled otherwise.
    /// Eviction order: least recently called first (never called before anything called).
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
            let (from, to) = m.window_ms;
            let within = m.last_call_ms.is_some_and(|last| {
                let since = now_ms.saturating_sub(last);
                from <= since.saturating_add(m.lead_ms) && since < to
            });
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

    fn module(id: &str, last_call_ms: Option<u64>, window_ms: (u64, u64)) -> IdleModule<'_> {
        IdleModule {
            module: id,
            last_call_ms,
            window_ms,
            load_bytes: 1 << 20,
            lead_ms: 0,
        }
    }

    fn levels(plan: &WarmthPlan) -> Vec<(&str, WarmthLevel)> {
        plan.targets.iter().map(|(m, l)| (m.as_str(), *l)).collect()
    }

    #[test]
    fn a_module_is_loaded_inside_its_window_after_its_last_call() {
        let planner = WindowPlanner {
            budget_bytes: u64::MAX,
        };
        let keep_alive = (0, 10 * MIN);
        let modules = [
            module("recent", Some(100 * MIN), keep_alive),
            module("edge", Some(90 * MIN + 1), keep_alive),
            module("expired", Some(90 * MIN), keep_alive),
            module("never", None, keep_alive),
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
        // A window that opens later: unloaded after the call, loaded ahead of the next one.
        let prewarm = [module("timer", Some(0), (25 * MIN, 35 * MIN))];
        let level = |now| planner.plan(&prewarm, now, 0.0).targets[0].1;
        assert_eq!(level(MIN), WarmthLevel::Compiled);
        assert_eq!(level(25 * MIN), WarmthLevel::Loaded);
        assert_eq!(level(35 * MIN), WarmthLevel::Compiled);
        // Led by two minutes (a slow revision cycle and load): loading starts at 23.
        let led = [IdleModule {
            lead_ms: 2 * MIN,
            ..prewarm[0]
        }];
        let level = |now| planner.plan(&led, now, 0.0).targets[0].1;
        assert_eq!(level(23 * MIN - 1), WarmthLevel::Compiled);
        assert_eq!(level(23 * MIN), WarmthLevel::Loaded);
        assert_eq!(level(35 * MIN - 1), WarmthLevel::Loaded);
        assert_eq!(level(35 * MIN), WarmthLevel::Compiled);
    }

    #[test]
    fn the_budget_and_the_orchestrators_pressure_hold_most_recent_first() {
        let planner = WindowPlanner {
            budget_bytes: 4 << 20,
        };
        let modules: Vec<IdleModule<'_>> = ["a", "b", "c", "d", "e"]
            .iter()
            .zip(0u64..)
            .map(|(id, k)| module(id, Some(k * MIN), (0, 60 * MIN)))
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
