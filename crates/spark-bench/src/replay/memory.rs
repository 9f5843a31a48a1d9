//! What a live node held loaded over a replay, and the simulator at the same memory.
//!
//! [`Residency`] samples the node's loaded modules once per trace minute and counts them in
//! the trace's MB-minutes (each module at its application's memory, from the application's
//! first call on, as the simulator counts) and in the node's own prices (each module at the
//! code it holds). [`NodeCostTwin`] is the simulator run with the node's prices at the memory
//! the node kept in them: the trace prices each application at its memory, the node a module
//! at its code, and the replay's guests' code says nothing of their application's memory, so
//! only the twin differs from the live run in nothing but being live.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use spark_sim::SimOptions;
use spark_sim::TraceSet;
use spark_sim::b4::{Basis, Target, curve, log_grid, match_budgets};
use spark_sim::policy::Spark;
use spark_sim::replay::{Horizon, executing_mb_min};
use tokio::time::Instant;

use super::MIN_LOADED_BYTES;
use crate::node::SparkNode;

/// What the node held loaded over a replay.
#[derive(Debug, Default)]
pub(super) struct Residency {
    /// Loaded trace-MB x trace minutes, from each application's first call on.
    pub(super) mb_min: f64,
    /// The same, before each application's first call.
    pub(super) before_first_mb_min: f64,
    /// Trace minutes each application was loaded from its first call on.
    minutes_after_first: Vec<f64>,
    /// The most loaded bytes the node reported for each application's module.
    bytes_seen: Vec<f64>,
    /// Sum of loaded bytes over samples, and the samples.
    bytes_sum: f64,
    samples: u64,
}

impl Residency {
    pub(super) fn new(apps: usize) -> Residency {
        Residency {
            minutes_after_first: vec![0.0; apps],
            bytes_seen: vec![0.0; apps],
            ..Residency::default()
        }
    }

    /// Counts application `app` (first call at trace minute `first_call`, `memory_mb`)
    /// loaded over the trace minutes `[from, to)`: the part from its first call on as the
    /// simulator counts memory, the rest apart.
    fn count(&mut self, app: usize, memory_mb: f64, first_call: f64, from: f64, to: f64) {
        let before = (first_call.min(to) - from).max(0.0);
        let after = (to - first_call.max(from)).max(0.0);
        self.before_first_mb_min += memory_mb * before;
        self.mb_min += memory_mb * after;
        if let Some(minutes) = self.minutes_after_first.get_mut(app) {
            *minutes += after;
        }
    }

    pub(super) fn bytes_mean(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.bytes_sum / self.samples as f64
        }
    }

    /// What each application's module costs the node loaded, MiB: the most code the node
    /// reported for any module of its guest (`guest_of`; they share their code, and a module
    /// never seen loaded costs what its twins do), at least what the predictor counts for any
    /// module.
    pub(super) fn node_cost_mib(&self, guest_of: impl Fn(usize) -> usize) -> Vec<f64> {
        let mut per_guest: BTreeMap<usize, f64> = BTreeMap::new();
        for (app, &bytes) in self.bytes_seen.iter().enumerate() {
            let seen = per_guest.entry(guest_of(app)).or_default();
            *seen = seen.max(bytes);
        }
        (0..self.bytes_seen.len())
            .map(|app| {
                let bytes = per_guest.get(&guest_of(app)).copied().unwrap_or(0.0);
                bytes.max(MIN_LOADED_BYTES as f64) / f64::from(1 << 20)
            })
            .collect()
    }

    /// Loaded memory from each first call on, priced at `cost_mib` per application.
    pub(super) fn priced_mb_min(&self, cost_mib: &[f64]) -> f64 {
        self.minutes_after_first
            .iter()
            .zip(cost_mib)
            .map(|(minutes, cost)| minutes * cost)
            .sum()
    }
}

/// Samples `spark_module_loaded_bytes` once per trace minute until `done`: each sample's
/// loaded modules count their applications' trace memory for the trace minutes since the
/// previous one.
pub(super) async fn sample_residency(
    node: &SparkNode,
    trace: &TraceSet,
    speed: f64,
    done: &tokio_util::sync::CancellationToken,
) -> Residency {
    let minute = Duration::from_secs_f64(60.0 / speed);
    let first_calls: Vec<f64> = trace
        .apps
        .iter()
        .map(|a| a.arrivals().next().unwrap_or(f64::INFINITY))
        .collect();
    let mut residency = Residency::new(trace.apps.len());
    let start = Instant::now();
    let trace_minute = |at: Instant| (at - start).as_secs_f64() * speed / 60.0;
    let mut last = 0.0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(minute) => {}
            () = done.cancelled() => break,
        }
        let Ok((200, body)) = node.admin_call("GET", "/metrics", Vec::new()).await else {
            continue;
        };
        let now = trace_minute(Instant::now());
        let loaded = loaded_modules(&String::from_utf8_lossy(&body));
        residency.samples += 1;
        for (app, bytes) in loaded {
            if let Some(a) = trace.apps.get(app) {
                residency.count(app, a.memory_mb, first_calls[app], last, now);
                residency.bytes_sum += bytes;
                residency.bytes_seen[app] = residency.bytes_seen[app].max(bytes);
            }
        }
        last = now;
    }
    residency
}

/// `(application index, bytes)` of every `app-N` module with loaded code in a `/metrics`
/// text.
fn loaded_modules(metrics: &str) -> Vec<(usize, f64)> {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("spark_module_loaded_bytes{module=\"app-")?;
            let (index, value) = rest.split_once("\"} ")?;
            let bytes: f64 = value.trim().parse().ok()?;
            (bytes > 0.0).then_some((index.parse().ok()?, bytes))
        })
        .collect()
}

/// Spark simulated with each application priced as the node prices its module (its loaded
/// code), at the memory a live Spark node kept: the live run's like-for-like twin. The
/// simulator's own `spark@hybrid` prices each application at its trace memory, which a node
/// running these guests cannot see, so at an equal trace memory the two choose differently
/// what to keep; the twin has the live node's cost model and memory, and leaves only what is
/// live (load times, ticks, a busy core) between them.
#[derive(Debug, Clone, Serialize)]
pub struct NodeCostTwin {
    /// The simulated Spark's exchange rate (node-cost MB-minutes per cold start of an app
    /// called once a day) at which its loaded memory meets the live node's.
    pub budget: f64,
    /// Its cold starts after each application's first call.
    pub cold_after_first: u64,
    /// Its loaded memory (idle and running) from each first call on, node-cost MB-minutes.
    pub loaded_mb_min: f64,
    /// 75th percentile over applications of each one's cold-start share, percent.
    pub cold_pct_p75: f64,
    /// Mean over applications of the same.
    pub cold_pct_mean: f64,
}

/// The [`NodeCostTwin`] of a live run that kept `loaded_mb_min` (node-cost MB-minutes from
/// each first call on, `cost_mib` per application): the largest budget whose simulated loaded
/// memory does not exceed it.
pub(super) fn node_cost_twin(
    trace: &TraceSet,
    cost_mib: &[f64],
    loaded_mb_min: f64,
) -> NodeCostTwin {
    let priced = TraceSet {
        minutes: trace.minutes,
        apps: trace
            .apps
            .iter()
            .zip(cost_mib)
            .map(|(app, &cost)| {
                let mut app = app.clone();
                app.memory_mb = cost;
                app
            })
            .collect(),
    };
    let end = priced.minutes as f64;
    let executing: f64 = priced
        .apps
        .iter()
        .map(|app| executing_mb_min(app, end))
        .sum();
    let horizon = Horizon::of(&priced, 0.0);
    // Module costs are a few MiB at most: the grid reaches far below the trace's.
    let opts = SimOptions {
        scored_from: 0.0,
        budget_min: 1e-3,
        budget_max: 1e10,
        points_per_decade: 6,
        refine_points: 24,
    };
    let grid = log_grid(opts.budget_min, opts.budget_max, opts.points_per_decade);
    let curve = curve(&priced, &grid, horizon);
    let target = Target {
        waste: (loaded_mb_min - executing).max(0.0),
        basis: Basis::Scored,
    };
    let budget = match_budgets(&priced, &curve, &[target], &opts, horizon)[0];
    let twin = spark_sim::b4::run(&priced, &Spark { budget }, horizon, "spark@node-cost");
    let whole = &twin.scores.whole;
    NodeCostTwin {
        budget,
        cold_after_first: whole.cold_starts.saturating_sub(priced.apps.len() as u64),
        loaded_mb_min: whole.wasted_mb_min + executing,
        cold_pct_p75: whole.p75,
        cold_pct_mean: whole.mean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_modules_are_read_from_the_metrics_text() {
        let metrics = "# HELP spark_module_loaded_bytes ...\n\
            spark_module_loaded_bytes{module=\"app-0\"} 0\n\
            spark_module_loaded_bytes{module=\"app-12\"} 65536\n\
            spark_module_loaded_bytes{module=\"other\"} 4096\n\
            spark_module_in_flight{module=\"app-3\"} 1\n";
        assert_eq!(loaded_modules(metrics), vec![(12, 65536.0)]);
    }

    #[test]
    fn loaded_memory_counts_as_the_simulator_from_each_first_call() {
        let mut residency = Residency::new(3);
        // 100 MB loaded over minutes 2..5, first called at 3.5: 1.5 minutes before, 1.5 after.
        residency.count(0, 100.0, 3.5, 2.0, 5.0);
        assert_eq!(
            (residency.before_first_mb_min, residency.mb_min),
            (150.0, 150.0)
        );
        // Already called: all of it counts; never called in the slice: none of it.
        residency.count(1, 10.0, 0.5, 5.0, 6.0);
        residency.count(2, 10.0, f64::INFINITY, 5.0, 6.0);
        assert_eq!(
            (residency.before_first_mb_min, residency.mb_min),
            (160.0, 160.0)
        );
        assert_eq!(residency.minutes_after_first, vec![1.5, 1.0, 0.0]);
    }

    #[test]
    fn node_costs_are_what_the_node_reported_for_the_module_or_its_guest() {
        let mut residency = Residency::new(4);
        // Guest 0 (apps 0 and 2) seen loaded at 2 MiB through app 2; guest 1 (apps 1 and 3)
        // never seen loaded: the predictor's least.
        residency.bytes_seen[2] = f64::from(2 << 20);
        let cost = residency.node_cost_mib(|app| app % 2);
        let least = MIN_LOADED_BYTES as f64 / f64::from(1 << 20);
        assert_eq!(cost, vec![2.0, least, 2.0, least]);
        residency.minutes_after_first = vec![10.0, 4.0, 0.0, 0.0];
        assert_eq!(residency.priced_mb_min(&cost), 20.0 + 4.0 * least);
    }

    #[test]
    fn the_node_cost_twin_keeps_no_more_than_the_live_node_did() {
        let app = |every: u32| spark_sim::trace::AppTrace {
            placement: Default::default(),
            id: String::new(),
            functions: 1,
            counts: (0..120)
                .filter(|m| m % every == 0)
                .map(|m| (m, 1))
                .collect(),
            duration_ms: 100.0,
            memory_mb: 500.0,
        };
        let trace = TraceSet {
            minutes: 120,
            apps: vec![app(10), app(7)],
        };
        let cost = [1.0, 1.0];
        // Everything loaded from the first calls on: no cold start after them.
        let all = node_cost_twin(&trace, &cost, 240.0);
        assert_eq!(all.cold_after_first, 0, "{all:?}");
        assert!(all.loaded_mb_min <= 240.0, "{all:?}");
        // Nothing loaded between calls: every later call is cold.
        let none = node_cost_twin(&trace, &cost, 0.0);
        assert_eq!(none.cold_after_first, 11 + 17, "{none:?}");
        // Half of it: never over the memory (these apps are periodic: loaded just before
        // each call, the twin needs no more than that).
        let half = node_cost_twin(&trace, &cost, 120.0);
        assert!(half.loaded_mb_min <= 120.0, "{half:?}");
        assert!(half.cold_after_first < none.cold_after_first, "{half:?}");
    }
}
