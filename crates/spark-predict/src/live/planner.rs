//! The warmth planner: from per-module forecasts and costs to a target warmth level per module
//! under a memory budget, plus the order in which to evict.
//!
//! Levels, cheapest first: the compiled artifact on disk (always kept: disk is cheap and
//! compiling is the worst cold start), the component loaded and linked in memory, then N
//! instances ready. Each step up costs bytes and saves latency if a call comes within the
//! planning horizon, so its expected value is `P(call within horizon) x seconds saved x weight`,
//! with the simulator's weight ([`crate::policy::cold_start_weight`]), against `MB x horizon
//! minutes`. Steps are kept when their value beats their cost at the planner's exchange rate
//! (the simulator's rule, [`crate::policy::critical_budget`], per level), then the budget is
//! filled by value per byte.
//!
//! Decision worth knowing: a module's steps must be taken in order (no instance without the
//! component), so a step that is worth more per byte than the step before it is merged with it
//! (pool-adjacent-violators); after that, taking steps greedily by value per byte across all
//! modules never takes a step without its predecessors, and is the optimal fractional filling
//! of the budget. A merged step that does not fit what is left of the budget comes back as its
//! parts, each at its own value per byte: a module whose code fits but whose code-plus-instance
//! does not is still kept loaded, if its code alone is worth it against the other modules.

use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use super::Forecast;
use crate::policy::cold_start_weight;

/// How warm a module is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WarmthLevel {
    /// Only the compiled artifact, on disk.
    Compiled,
    /// The component loaded and linked in memory.
    Loaded,
    /// The component loaded and this many instances ready.
    Ready(u32),
}

impl WarmthLevel {
    /// This level within a module's bounds: at least `floor` (a critical module is never
    /// evicted below loaded), and at most `max_ready` instances ready (0: loaded, none ready),
    /// the cap the orchestrator's plan sets under memory pressure or power save.
    pub fn within(self, floor: WarmthLevel, max_ready: Option<u32>) -> WarmthLevel {
        match (self.max(floor), max_ready) {
            (WarmthLevel::Ready(_), Some(0)) => WarmthLevel::Loaded,
            (WarmthLevel::Ready(n), Some(limit)) => WarmthLevel::Ready(n.min(limit)),
            (level, _) => level,
        }
    }
}

/// What each level costs a module.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LevelCosts {
    /// Memory of the loaded component, bytes.
    pub load_bytes: u64,
    /// Time to load it from the compiled artifact, ms.
    pub load_ms: f64,
    /// Memory of one ready instance, bytes.
    pub instance_bytes: u64,
    /// Time to instantiate one, ms.
    pub instantiate_ms: f64,
}

/// One module's input to the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleDemand<'a> {
    /// Module id.
    pub module: &'a str,
    /// Its forecast.
    pub forecast: &'a Forecast,
    /// Its level costs.
    pub costs: LevelCosts,
}

/// The planner's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WarmthPlanner {
    /// Memory the warm levels may use, bytes.
    pub budget_bytes: u64,
    /// Planning horizon (the orchestrator replans at least this often), ms.
    pub horizon_ms: u64,
    /// MB-minutes of memory worth one second of cold-start latency of a module called once a
    /// day (the simulator's budget, with the cold start priced by its latency).
    pub exchange: f64,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmthPlan {
    /// Target level per module, in input order.
    pub targets: Vec<(String, WarmthLevel)>,
    /// Modules from least to most likely needed within the horizon: evict in this order.
    pub eviction_order: Vec<String>,
    /// Memory of the planned levels, bytes.
    pub bytes: u64,
}

const MIB: f64 = 1_048_576.0;

#[derive(Debug, Clone)]
struct Step {
    module: usize,
    level: WarmthLevel,
    bytes: u64,
    value: f64,
    /// For a merged step, the cumulative (level, bytes, value) of its parts before the last,
    /// in order: the fallbacks when the whole step does not fit.
    parts: Vec<(WarmthLevel, u64, f64)>,
    /// A part of a merged step that did not fit: taken even though its module is blocked.
    fallback: bool,
}

/// A step ordered for the planner's heap: densest first, then by module.
struct ByDensity(Step);

impl PartialEq for ByDensity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for ByDensity {}

impl PartialOrd for ByDensity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByDensity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .density()
            .total_cmp(&other.0.density())
            .then(other.0.module.cmp(&self.0.module))
    }
}

impl Step {
    fn density(&self) -> f64 {
        self.value / self.bytes.max(1) as f64
    }
}

impl WarmthPlanner {
    /// Plans levels for `demands` under `pressure` in `[0, 1]` (the share of the budget the
    /// orchestrator wants back: the budget shrinks and memory gets dearer in proportion; at 1
    /// nothing is kept warm).
    pub fn plan(&self, demands: &[ModuleDemand<'_>], pressure: f64) -> WarmthPlan {
        let keep = 1.0 - pressure.clamp(0.0, 1.0);
        let budget = (self.budget_bytes as f64 * keep) as u64;
        // A step is kept when value (s) x exchange x keep > MB x horizon (min), i.e. when its
        // value per byte exceeds this price.
        let horizon_min = self.horizon_ms as f64 / 60_000.0;
        let price = if keep > 0.0 {
            horizon_min / (MIB * self.exchange * keep)
        } else {
            f64::INFINITY
        };
        // Steps by value per byte, densest first (ties by module), as a heap: a merged step that
        // does not fit comes back as its longest part, at that part's own value per byte.
        let mut pending: BinaryHeap<ByDensity> = demands
            .iter()
            .enumerate()
            .flat_map(|(i, d)| self.steps(i, d))
            .filter(|s| s.density() > price)
            .map(ByDensity)
            .collect();
        let mut levels = vec![WarmthLevel::Compiled; demands.len()];
        let mut blocked = vec![false; demands.len()];
        let mut bytes = 0u64;
        while let Some(ByDensity(mut s)) = pending.pop() {
            if blocked[s.module] && !s.fallback {
                continue;
            }
            if bytes + s.bytes <= budget {
                bytes += s.bytes;
                levels[s.module] = levels[s.module].max(s.level);
                continue;
            }
            // Nothing after this step can be taken for this module; a part of it still may.
            blocked[s.module] = true;
            if let Some((level, part_bytes, value)) = s.parts.pop() {
                let part = Step {
                    module: s.module,
                    level,
                    bytes: part_bytes,
                    value,
                    parts: s.parts,
                    fallback: true,
                };
                if part.density() > price {
                    pending.push(ByDensity(part));
                }
            }
        }
        let targets = demands
            .iter()
            .zip(levels)
            .map(|(d, l)| (d.module.to_owned(), l))
            .collect();
        WarmthPlan {
            targets,
            eviction_order: eviction_order(demands, self.horizon_ms),
            bytes,
        }
    }

    /// The upgrade steps of one module, merged so value per byte never increases.
    fn steps(&self, module: usize, d: &ModuleDemand<'_>) -> Vec<Step> {
        let p = d.forecast.p_within(self.horizon_ms);
        let weight = cold_start_weight(d.forecast.calls_per_day);
        let c = d.costs;
        let value = |ms: f64| p * ms / 1000.0 * weight;
        let mut raw = vec![Step {
            module,
            level: WarmthLevel::Loaded,
            bytes: c.load_bytes,
            value: value(c.load_ms),
            parts: Vec::new(),
            fallback: false,
        }];
        let instances = d.forecast.expected_concurrency.max(1.0);
        for k in 1..=instances.ceil() as u32 {
            let share = (instances - f64::from(k - 1)).min(1.0);
            raw.push(Step {
                module,
                level: WarmthLevel::Ready(k),
                bytes: c.instance_bytes,
                value: share * value(c.instantiate_ms),
                parts: Vec::new(),
                fallback: false,
            });
        }
        let mut merged: Vec<Step> = Vec::with_capacity(raw.len());
        for mut s in raw {
            while merged
                .last()
                .is_some_and(|prev| s.density() > prev.density())
            {
                let Some(mut prev) = merged.pop() else { break };
                // The merged step's parts, cumulative from the step before the group.
                let base = (prev.bytes, prev.value);
                prev.parts.push((prev.level, prev.bytes, prev.value));
                prev.parts.extend(
                    s.parts
                        .iter()
                        .map(|&(level, b, v)| (level, base.0 + b, base.1 + v)),
                );
                s = Step {
                    module,
                    level: s.level,
                    bytes: base.0 + s.bytes,
                    value: base.1 + s.value,
                    parts: prev.parts,
                    fallback: false,
                };
            }
            merged.push(s);
        }
        merged
    }
}

/// Least likely to be called within the horizon first; ties by id.
fn eviction_order(demands: &[ModuleDemand<'_>], horizon_ms: u64) -> Vec<String> {
    let mut order: Vec<(f64, &str)> = demands
        .iter()
        .map(|d| (d.forecast.p_within(horizon_ms), d.module))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    order.into_iter().map(|(_, m)| m.to_owned()).collect()
}
