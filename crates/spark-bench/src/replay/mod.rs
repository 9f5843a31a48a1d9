//! Live replay (B4's live half): a time-compressed slice of an invocation trace driven at a
//! real node with real modules, its observed cold starts next to what the simulator predicts
//! for the same slice.
//!
//! Each trace application becomes a module (`app-0`, `app-1`, ...); a few guest binaries are
//! shared among them round-robin (one guest makes every module cost the node the same). A minute's n calls leave at `(m + (j + 0.5)/n)` minutes, as
//! in the simulator, divided by the speed-up. The node's predictor runs on model time
//! (`predictor.time_scale` = the speed-up), so it sees the trace's minutes, and works to its
//! memory budget. A request is cold when the node reports it (`spark-cold-start`).
//!
//! Each live policy ([`LivePolicy`]: Spark, or one of the simulator's baselines: a fixed
//! keep-alive, the hybrid histogram policy, run by the node as `predictor.policy`)
//! gets its own node and the same calls. What a node keeps loaded is sampled once per trace
//! minute from its `spark_module_loaded_bytes` and counted in the trace's MB-minutes (each
//! loaded module's application memory) from its application's first call on, the unit and
//! the rule of the simulator's wasted memory (what it held before is reported apart), so a live
//! policy's memory and cold starts sit next to its simulated twin's; `replay-cdf.svg` plots
//! every policy's per-application cold-start % (live and simulated).
//!
//! The trace prices each application at its memory; the node prices a module at its loaded
//! code, and these guests' code says nothing of their application's memory. So live Spark is
//! also set against a [`NodeCostTwin`]: the simulator run with the node's prices, at the
//! memory the node kept in those prices. That pair differs only in being live.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use spark_sim::{SimOptions, TraceSet, run_b4};

mod drive;
mod memory;

use drive::drive;
pub use memory::NodeCostTwin;
use memory::{node_cost_twin, sample_residency};

use crate::node::{NodeLaunch, SparkNode};
use crate::{BenchError, percentile, write_json};

/// Settings of `spark bench replay`.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The `spark` executable the node runs.
    pub spark: PathBuf,
    /// The whole invocation trace the slice is cut from.
    pub trace: TraceSet,
    /// Guest components shared by the modules, round-robin.
    pub guests: Vec<PathBuf>,
    /// Applications to replay, at most (only those with calls in the slice count).
    pub apps: usize,
    /// First trace minute of the slice.
    pub start_minute: usize,
    /// Length of the slice, trace minutes.
    pub minutes: usize,
    /// Trace minutes per real minute.
    pub speed: f64,
    /// The node's `predictor.memory_budget`, e.g. "4MiB", or [`EQUAL_BUDGET`] (for
    /// [`LivePolicy::Spark`]; a fixed keep-alive runs unbounded, as the simulator's does).
    pub memory_budget: String,
    /// The policies replayed live, one node each, one after the other.
    pub live: Vec<LivePolicy>,
    /// Where `replay.json` (and the node log, if kept) go.
    pub out_dir: PathBuf,
}

/// `--memory-budget equal`: the node's budget is the share of all its modules' loaded size
/// that the simulated Spark (at the hybrid policy's memory) keeps loaded on average over the
/// slice, so the live node and the simulator are compared at the same memory.
pub const EQUAL_BUDGET: &str = "equal";

/// The policy whose residency `--memory-budget equal` matches.
const EQUAL_TO: &str = "spark@hybrid";

/// A keep-alive policy a live node runs for the replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivePolicy {
    /// Spark's predictor at the replay's memory budget.
    Spark,
    /// `predictor.keep_alive`: loaded this many minutes after each call (B4's `fixed-10min`
    /// baseline at 10), with no memory budget, as the simulator runs it.
    KeepAlive {
        /// Minutes of keep-alive.
        minutes: u32,
    },
    /// `predictor.policy = "hybrid"`: the hybrid histogram policy with the paper's parameters
    /// (B4's `hybrid`), with no memory budget.
    Hybrid,
}

impl LivePolicy {
    /// The policy's name, as the simulator names it (`spark`, `fixed-10min`).
    pub fn name(&self) -> String {
        match self {
            LivePolicy::Spark => "spark".to_owned(),
            LivePolicy::KeepAlive { minutes } => format!("fixed-{minutes}min"),
            LivePolicy::Hybrid => "hybrid".to_owned(),
        }
    }

    /// The simulated policy the live one is compared with.
    fn simulated_name(&self) -> String {
        match self {
            LivePolicy::Spark => EQUAL_TO.to_owned(),
            LivePolicy::KeepAlive { .. } | LivePolicy::Hybrid => self.name(),
        }
    }
}

impl std::str::FromStr for LivePolicy {
    type Err = String;

    /// `spark`, `hybrid` or `fixed-<N>min` (N from 1 to 10,080).
    fn from_str(text: &str) -> Result<LivePolicy, String> {
        match text {
            "spark" => return Ok(LivePolicy::Spark),
            "hybrid" => return Ok(LivePolicy::Hybrid),
            _ => {}
        }
        text.strip_prefix("fixed-")
            .and_then(|rest| rest.strip_suffix("min"))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=10_080).contains(n))
            .map(|minutes| LivePolicy::KeepAlive { minutes })
            .ok_or_else(|| {
                format!("expected `spark`, `hybrid` or `fixed-<minutes>min`, got `{text}`")
            })
    }
}

/// A predictor budget that holds every module of a replay (the probe node's, a fixed
/// keep-alive's).
const UNBOUNDED: &str = "memory_budget = \"64GiB\"";

/// The least the predictor counts for a loaded module (as the node's warmth planner does).
const MIN_LOADED_BYTES: u64 = 64 << 10;

/// The share of all applications' memory a simulated policy keeps loaded on average over the
/// slice: its idle-loaded memory (MB-minutes) over the slice's length and the applications'
/// total; time spent running is left out (calls last milliseconds, minutes are the unit).
fn mean_residency(trace: &TraceSet, wasted_mb_min: f64) -> f64 {
    let total: f64 = trace.apps.iter().map(|a| a.memory_mb).sum();
    if total <= 0.0 || trace.minutes == 0 {
        return 1.0;
    }
    (wasted_mb_min / trace.minutes as f64 / total).clamp(0.0, 1.0)
}

/// One keep-alive policy's cold starts, as the simulator predicts them for the slice.
#[derive(Debug, Clone, Serialize)]
pub struct SimulatedPolicy {
    /// The policy's name, as in the B4 report.
    pub name: String,
    /// Cold starts over the slice.
    pub cold_starts: u64,
    /// Median over applications of each one's cold-start share, percent.
    pub cold_pct_p50: f64,
    /// 75th percentile over applications of each one's cold-start share, percent.
    pub cold_pct_p75: f64,
    /// Mean over applications of each one's cold-start share, percent.
    pub cold_pct_mean: f64,
    /// Memory loaded but idle over the slice, MB-minutes (the trace's app memory).
    pub wasted_mb_min: f64,
    /// Memory loaded over the slice, idle or running (`wasted_mb_min` and the minutes the
    /// apps run, the same for every policy): what a live node's loaded memory is compared with.
    pub loaded_mb_min: f64,
    /// Each application's cold-start share, percent, ascending (for the plot).
    #[serde(skip)]
    pub cold_pct: Vec<f64>,
}

/// The live replay result, as written to `replay.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// Applications replayed (those of the slice with calls).
    pub apps: usize,
    /// Length of the slice, trace minutes.
    pub minutes: usize,
    /// First trace minute of the slice.
    pub start_minute: usize,
    /// Trace minutes per real minute.
    pub speed: f64,
    /// Spark's `predictor.memory_budget`.
    pub memory_budget: String,
    /// With `--memory-budget equal`: how the budget was derived.
    pub budget_basis: Option<String>,
    /// Spark's cold starts after each application's first call, observed over simulated (at
    /// the hybrid's memory; the simulator counts every first call cold, the live node loads
    /// every module at its start, so first calls are left out of both). Target: at most 1.25
    /// at an equal budget. `None` when Spark was not replayed or the simulator expects none.
    pub live_vs_simulated_cold: Option<f64>,
    /// Each policy replayed live, in the order run.
    pub live: Vec<LiveRun>,
    /// What the simulator predicts for the same slice (first calls cold for every policy).
    pub simulated: Vec<SimulatedPolicy>,
}

/// One policy replayed on a live node.
#[derive(Debug, Clone, Serialize)]
pub struct LiveRun {
    /// `spark` or `fixed-<N>min`.
    pub policy: String,
    /// The node's `[predictor]` settings for it.
    pub predictor: String,
    /// Calls answered with success.
    pub requests: u64,
    /// Calls that failed (error status or no response).
    pub errors: u64,
    /// The failed calls by what they got: a status code, or `no response: <why>`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Requests the node reported as cold (their module had to be loaded).
    pub observed_cold: u64,
    /// The same, leaving out each application's first call in the slice.
    pub observed_cold_after_first: u64,
    /// `observed_cold_after_first` over the same count for the simulated policy it stands for
    /// (`spark@hybrid`, `fixed-<N>min`); `None` when the simulator expects none.
    pub vs_simulated_cold: Option<f64>,
    /// `loaded_mb_min` over the simulated policy's loaded memory: how far the two are at the
    /// same memory. `None` when the simulated one kept nothing loaded.
    pub vs_simulated_memory: Option<f64>,
    /// Median over applications of each one's observed cold-start share, percent (first
    /// calls included, as in the simulated figures).
    pub observed_cold_pct_p50: f64,
    /// 75th percentile of the same.
    pub observed_cold_pct_p75: f64,
    /// Mean of the same.
    pub observed_cold_pct_mean: f64,
    /// Loaded memory over the slice in the trace's units, from each application's first call
    /// on: each minute a module was loaded (sampled from the node's
    /// `spark_module_loaded_bytes` once per trace minute) counts its application's trace
    /// memory (MB), as the simulator's wasted memory does (which has no application before
    /// its first call, and leaves out the minutes spent running, a small share).
    pub loaded_mb_min: f64,
    /// The same before each application's first call (the node starts with every module
    /// registered and keeps what its budget holds; the simulator has nothing to count there).
    pub loaded_before_first_mb_min: f64,
    /// Mean bytes of code the node held loaded (its own measure, the predictor's budget's).
    pub loaded_bytes_mean: f64,
    /// Loaded memory from each application's first call on, each module priced as the node
    /// prices it (its loaded code, MiB): node-cost MB-minutes.
    pub node_cost_mb_min: f64,
    /// For Spark: the simulator with the node's prices at the node's memory (`node_cost_mb_min`).
    pub node_cost_twin: Option<NodeCostTwin>,
    /// `observed_cold_after_first` over the twin's: the live node against its model at the
    /// same memory and cost model. Target: at most 1.25. `None` without a twin, or when the
    /// twin has no cold start after first calls.
    pub vs_node_cost_twin_cold: Option<f64>,
    /// Median latency of cold requests, ms (0 when there were none).
    pub cold_latency_p50_ms: f64,
    /// 99th percentile latency of cold requests, ms.
    pub cold_latency_p99_ms: f64,
    /// Median latency of warm requests, ms.
    pub warm_latency_p50_ms: f64,
    /// 99th percentile latency of warm requests, ms.
    pub warm_latency_p99_ms: f64,
    /// Each application's observed cold-start share, percent, ascending (for the plot).
    #[serde(skip)]
    pub cold_pct: Vec<f64>,
}

/// The slice `[start, start + minutes)` of `apps` applications that have calls in it, chosen
/// evenly across the trace's order.
pub fn slice(trace: &TraceSet, apps: usize, start: usize, minutes: usize) -> TraceSet {
    let end = (start + minutes) as u32;
    let shifted: Vec<_> = trace
        .apps
        .iter()
        .map(|app| {
            let mut app = app.clone();
            app.counts = app
                .counts
                .iter()
                .filter(|&&(m, _)| m >= start as u32 && m < end)
                .map(|&(m, c)| (m - start as u32, c))
                .collect();
            app
        })
        .filter(|app| !app.counts.is_empty())
        .collect();
    let step = (shifted.len() as f64 / apps.max(1) as f64).max(1.0);
    let chosen = (0..apps.min(shifted.len()))
        .map(|i| shifted[(i as f64 * step) as usize].clone())
        .collect();
    TraceSet {
        minutes,
        apps: chosen,
    }
}

/// The node for a replay: one module per application, each one's guest round-robin. The
/// replay's one client stands for every user of every app, so the node lets it open as many
/// connections as it has calls in flight; the guests' limits are sized to what they use
/// (reservations of the default 160 MiB per request would shed bursts by node memory long
/// before the CPU is busy, which is not what the replay measures).
fn manifest(
    options: &ReplayOptions,
    predictor: &str,
    addr: SocketAddr,
    admin: SocketAddr,
    apps: usize,
) -> String {
    let mut text = format!(
        "version = 1\n[node]\nlisten = \"{addr}\"\nadmin = \"{admin}\"\nmax_connections_per_client = 4096\n[predictor]\ninterval = \"250ms\"\ntime_scale = {:.1}\n{predictor}\n",
        options.speed
    );
    for i in 0..apps {
        let guest = &options.guests[i % options.guests.len()];
        text.push_str(&format!(
            "\n[[module]]\nid = \"app-{i}\"\ncomponent = \"{}\"\nroutes = [\"/app-{i}/...\"]\n[module.limits]\nconcurrency = 256\nqueue = 1024\nmemory = \"64MiB\"\nhost_memory = \"8MiB\"\n",
            guest.display()
        ));
    }
    text
}

/// The budget for `--memory-budget equal`: a first node with room for every module tells
/// what each costs loaded (its code, as the predictor counts it); the budget is the simulated
/// Spark's mean residency share of their sum. Returns the budget and how it was derived.
async fn equal_budget(
    options: &ReplayOptions,
    trace: &TraceSet,
    simulated: &[SimulatedPolicy],
) -> Result<(String, Option<String>), BenchError> {
    let apps = trace.apps.len();
    let policy = simulated
        .iter()
        .find(|p| p.name == EQUAL_TO)
        .ok_or_else(|| BenchError::Missing(format!("no simulated {EQUAL_TO} to match")))?;
    let share = mean_residency(trace, policy.wasted_mb_min);
    let manifest = |addr, admin| manifest(options, UNBOUNDED, addr, admin, apps);
    let probe = SparkNode::start(NodeLaunch {
        spark: &options.spark,
        manifest: &manifest,
        ready_path: "/app-0/",
        out_dir: &options.out_dir,
        log_name: "replay-probe-node",
        tls: None,
    })
    .await?;
    let (status, body) = probe.admin_call("GET", "/v1/status", Vec::new()).await?;
    drop(probe);
    if status != 200 {
        return Err(BenchError::runtime(format!(
            "the probe node's status answered {status}"
        )));
    }
    let status: serde_json::Value = serde_json::from_slice(&body).map_err(BenchError::runtime)?;
    let loaded: u64 = status["modules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["code_bytes"].as_u64().unwrap_or(0).max(MIN_LOADED_BYTES))
        .sum();
    let budget = ((loaded as f64 * share) as u64).div_ceil(1024).max(1);
    let basis = format!(
        "equal: {:.1}% of the {apps} modules' {:.1} MiB loaded, the share of the apps' memory simulated {EQUAL_TO} keeps loaded on average",
        share * 100.0,
        loaded as f64 / f64::from(1 << 20)
    );
    Ok((format!("{budget}KiB"), Some(basis)))
}

/// Runs the replay and writes `replay.json`.
pub async fn run(options: &ReplayOptions) -> Result<ReplayReport, BenchError> {
    let trace = slice(
        &options.trace,
        options.apps,
        options.start_minute,
        options.minutes,
    );
    if trace.apps.is_empty() {
        return Err(BenchError::Missing(
            "no application has calls in that slice".into(),
        ));
    }
    let simulated = simulate(&trace);
    let (memory_budget, budget_basis) = match options.memory_budget == EQUAL_BUDGET {
        false => (options.memory_budget.clone(), None),
        true => equal_budget(options, &trace, &simulated).await?,
    };
    let mut live = Vec::with_capacity(options.live.len());
    for policy in &options.live {
        let predictor = match policy {
            LivePolicy::Spark => format!("memory_budget = \"{memory_budget}\""),
            LivePolicy::KeepAlive { minutes } => {
                format!("keep_alive = \"{minutes}m\"\n{UNBOUNDED}")
            }
            LivePolicy::Hybrid => format!("policy = \"hybrid\"\n{UNBOUNDED}"),
        };
        live.push(run_live(options, &trace, &simulated, *policy, predictor).await?);
    }
    let report = ReplayReport {
        apps: trace.apps.len(),
        minutes: options.minutes,
        start_minute: options.start_minute,
        speed: options.speed,
        memory_budget,
        budget_basis,
        live_vs_simulated_cold: live
            .iter()
            .find(|run| run.policy == LivePolicy::Spark.name())
            .and_then(|run| run.vs_simulated_cold),
        live,
        simulated,
    };
    write_json(&options.out_dir, "replay.json", &report)?;
    let series: Vec<(String, Vec<f64>)> = report
        .live
        .iter()
        .map(|run| (format!("live {}", run.policy), run.cold_pct.clone()))
        .chain(
            report
                .simulated
                .iter()
                .map(|p| (p.name.clone(), p.cold_pct.clone())),
        )
        .collect();
    let title = format!(
        "Per-application cold-start %, minutes {}..{}, live and simulated (CDF)",
        report.start_minute,
        report.start_minute + report.minutes
    );
    std::fs::write(
        options.out_dir.join("replay-cdf.svg"),
        spark_sim::report::cold_pct_cdf_svg(&title, &series),
    )?;
    Ok(report)
}

/// One policy on its own node: the slice's calls, the node's loaded modules sampled each
/// trace minute.
async fn run_live(
    options: &ReplayOptions,
    trace: &TraceSet,
    simulated: &[SimulatedPolicy],
    policy: LivePolicy,
    predictor: String,
) -> Result<LiveRun, BenchError> {
    let apps = trace.apps.len();
    let manifest = |addr, admin| manifest(options, &predictor, addr, admin, apps);
    let node = SparkNode::start(NodeLaunch {
        spark: &options.spark,
        manifest: &manifest,
        ready_path: "/app-0/",
        out_dir: &options.out_dir,
        log_name: &format!("replay-node-{}", policy.name()),
        tls: None,
    })
    .await?;
    // Give the predictor a few ticks to settle the startup state before the first call.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let done = tokio_util::sync::CancellationToken::new();
    let (observed, residency) = tokio::join!(
        async {
            let observed = drive(trace, node.addr, options.speed).await;
            done.cancel();
            observed
        },
        sample_residency(&node, trace, options.speed, &done),
    );
    drop(node);
    let guests = options.guests.len().max(1);
    let cost_mib = residency.node_cost_mib(|app| app % guests);
    let node_cost_mb_min = residency.priced_mb_min(&cost_mib);
    let node_cost_twin =
        (policy == LivePolicy::Spark).then(|| node_cost_twin(trace, &cost_mib, node_cost_mb_min));
    let first: BTreeMap<usize, usize> = first_call_index(&observed.cold);
    let cold: Vec<f64> = observed.cold.iter().filter(|c| c.1).map(|c| c.2).collect();
    let warm: Vec<f64> = observed.cold.iter().filter(|c| !c.1).map(|c| c.2).collect();
    let after_first = observed
        .cold
        .iter()
        .enumerate()
        .filter(|(i, c)| c.1 && first.get(&c.0) != Some(i))
        .count() as u64;
    let shares = cold_shares(&observed.cold);
    let sim_name = policy.simulated_name();
    let twin = simulated.iter().find(|p| p.name == sim_name);
    Ok(LiveRun {
        policy: policy.name(),
        predictor: predictor.replace('\n', ", "),
        requests: observed.cold.len() as u64,
        errors: observed.errors,
        errors_by_kind: observed.errors_by_kind,
        observed_cold: cold.len() as u64,
        observed_cold_after_first: after_first,
        vs_simulated_cold: twin
            .map(|p| p.cold_starts.saturating_sub(apps as u64))
            .filter(|&expected| expected > 0)
            .map(|expected| after_first as f64 / expected as f64),
        vs_simulated_memory: twin
            .filter(|p| p.loaded_mb_min > 0.0)
            .map(|p| residency.mb_min / p.loaded_mb_min),
        observed_cold_pct_p50: spark_sim::replay::percentile(&shares, 50.0),
        observed_cold_pct_p75: spark_sim::replay::percentile(&shares, 75.0),
        observed_cold_pct_mean: mean(&shares),
        loaded_mb_min: residency.mb_min,
        loaded_before_first_mb_min: residency.before_first_mb_min,
        loaded_bytes_mean: residency.bytes_mean(),
        node_cost_mb_min,
        vs_node_cost_twin_cold: node_cost_twin
            .as_ref()
            .filter(|twin| twin.cold_after_first > 0)
            .map(|twin| after_first as f64 / twin.cold_after_first as f64),
        node_cost_twin,
        cold_latency_p50_ms: percentile(&cold, 0.50),
        cold_latency_p99_ms: percentile(&cold, 0.99),
        warm_latency_p50_ms: percentile(&warm, 0.50),
        warm_latency_p99_ms: percentile(&warm, 0.99),
        cold_pct: shares,
    })
}

fn simulate(trace: &TraceSet) -> Vec<SimulatedPolicy> {
    let end = trace.minutes as f64;
    let executing: f64 = trace
        .apps
        .iter()
        .map(|app| spark_sim::replay::executing_mb_min(app, end))
        .sum();
    let report = run_b4(
        trace,
        &SimOptions {
            scored_from: 0.0,
            ..SimOptions::default()
        },
    );
    report
        .policies
        .iter()
        .map(|p| SimulatedPolicy {
            name: p.name.clone(),
            cold_starts: p.scores.whole.cold_starts,
            cold_pct_p50: p.scores.whole.p50,
            cold_pct_p75: p.scores.whole.p75,
            cold_pct_mean: p.scores.whole.mean,
            wasted_mb_min: p.scores.whole.wasted_mb_min,
            loaded_mb_min: p.scores.whole.wasted_mb_min + executing,
            cold_pct: p.scored_cold_pct.clone(),
        })
        .collect()
}

/// Each application's share of cold calls (percent), ascending: `(app, cold, ms)` records in.
fn cold_shares(calls: &[(usize, bool, f64)]) -> Vec<f64> {
    let mut per_app: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    for &(app, cold, _) in calls {
        let e = per_app.entry(app).or_default();
        e.0 += 1;
        e.1 += u64::from(cold);
    }
    let mut v: Vec<f64> = per_app
        .values()
        .map(|&(n, c)| 100.0 * c as f64 / n as f64)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn first_call_index(calls: &[(usize, bool, f64)]) -> BTreeMap<usize, usize> {
    let mut first = BTreeMap::new();
    for (i, (app, _, _)) in calls.iter().enumerate() {
        first.entry(*app).or_insert(i);
    }
    first
}

/// The table and the closing `replay:` line.
pub fn render(report: &ReplayReport) -> String {
    let mut out = format!(
        "Live replay: {} apps, minutes {}..{} at {}x, Spark's predictor budget {}\n",
        report.apps,
        report.start_minute,
        report.start_minute + report.minutes,
        report.speed,
        report.memory_budget
    );
    if let Some(basis) = &report.budget_basis {
        out.push_str(&format!("  budget: {basis}\n"));
    }
    for run in &report.live {
        out.push_str(&format!(
            "  live {:<12} {} ok, {} errors, {} cold ({} after each app's first call, {} x simulated); per-app cold % p50/p75/mean {:.1}/{:.1}/{:.1}; loaded {:.3e} MB-min after first calls ({} x simulated; +{:.3e} before); cold p50/p99 {:.2}/{:.2} ms, warm p50/p99 {:.2}/{:.2} ms\n",
            run.policy, run.requests, run.errors, run.observed_cold, run.observed_cold_after_first,
            run.vs_simulated_cold.map_or("na".to_owned(), |r| format!("{r:.2}")),
            run.observed_cold_pct_p50, run.observed_cold_pct_p75, run.observed_cold_pct_mean, run.loaded_mb_min,
            run.vs_simulated_memory.map_or("na".to_owned(), |r| format!("{r:.2}")), run.loaded_before_first_mb_min,
            run.cold_latency_p50_ms, run.cold_latency_p99_ms, run.warm_latency_p50_ms, run.warm_latency_p99_ms
        ));
        if let Some(twin) = &run.node_cost_twin {
            out.push_str(&format!(
                "    like for like: simulated with each app priced as the node prices its module, at the node's {:.3e} node-cost MB-min ({:.3e}): {} cold after first calls (live {} x), per-app cold % p75/mean {:.1}/{:.1}\n",
                run.node_cost_mb_min, twin.loaded_mb_min, twin.cold_after_first,
                run.vs_node_cost_twin_cold.map_or("na".to_owned(), |r| format!("{r:.2}")),
                twin.cold_pct_p75, twin.cold_pct_mean
            ));
        }
        if !run.errors_by_kind.is_empty() {
            let kinds: Vec<String> = run
                .errors_by_kind
                .iter()
                .map(|(kind, n)| format!("{n} x {kind}"))
                .collect();
            out.push_str(&format!("    errors: {}\n", kinds.join(", ")));
        }
    }
    for p in &report.simulated {
        out.push_str(&format!(
            "  simulated {:<28} {:>6} cold, per-app p50/p75/mean {:.1}/{:.1}/{:.1}%, wasted {:.3e} MB-min (loaded, running included, {:.3e})\n",
            p.name, p.cold_starts, p.cold_pct_p50, p.cold_pct_p75, p.cold_pct_mean, p.wasted_mb_min, p.loaded_mb_min
        ));
    }
    let mut line = String::from("replay:");
    for run in &report.live {
        let key = run.policy.replace('-', "_");
        line.push_str(&format!(
            " {key}_requests={} {key}_errors={} {key}_cold={} {key}_cold_after_first={} {key}_cold_pct_p75={:.2} {key}_cold_pct_mean={:.2} {key}_loaded_mb_min={:.4e} {key}_loaded_before_first_mb_min={:.4e} {key}_cold_p50_ms={:.2} {key}_warm_p50_ms={:.2} {key}_vs_sim_cold={} {key}_vs_sim_memory={}",
            run.requests, run.errors, run.observed_cold, run.observed_cold_after_first, run.observed_cold_pct_p75,
            run.observed_cold_pct_mean, run.loaded_mb_min, run.loaded_before_first_mb_min, run.cold_latency_p50_ms, run.warm_latency_p50_ms,
            run.vs_simulated_cold.map_or("na".to_owned(), |r| format!("{r:.2}")),
            run.vs_simulated_memory.map_or("na".to_owned(), |r| format!("{r:.2}"))
        ));
        if run.node_cost_twin.is_some() {
            line.push_str(&format!(
                " {key}_vs_twin_cold={}",
                run.vs_node_cost_twin_cold
                    .map_or("na".to_owned(), |r| format!("{r:.2}"))
            ));
        }
    }
    line.push_str(&format!(
        " live_vs_sim_cold={}\n",
        report
            .live_vs_simulated_cold
            .map_or("na".to_owned(), |r| format!("{r:.2}"))
    ));
    out.push_str(&line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_shares_are_per_app_and_include_first_calls() {
        let calls = [
            (0, true, 1.0),
            (0, false, 1.0),
            (1, true, 1.0),
            (0, false, 1.0),
            (2, false, 1.0),
            (0, true, 1.0),
        ];
        assert_eq!(cold_shares(&calls), vec![0.0, 50.0, 100.0]);
        assert_eq!(mean(&cold_shares(&calls)), 50.0);
        assert!(cold_shares(&[]).is_empty());
    }

    #[test]
    fn live_policies_are_named_as_the_simulator_names_them() {
        assert_eq!("spark".parse(), Ok(LivePolicy::Spark));
        let fixed: LivePolicy = "fixed-10min".parse().unwrap();
        assert_eq!(fixed, LivePolicy::KeepAlive { minutes: 10 });
        assert_eq!(fixed.name(), "fixed-10min");
        assert_eq!(fixed.simulated_name(), "fixed-10min");
        assert_eq!(LivePolicy::Spark.simulated_name(), "spark@hybrid");
        assert_eq!("hybrid".parse(), Ok(LivePolicy::Hybrid));
        assert_eq!(LivePolicy::Hybrid.simulated_name(), "hybrid");
        for bad in ["fixed-0min", "fixed-10", "lru", "fixed-xmin"] {
            let err = bad.parse::<LivePolicy>().unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn mean_residency_is_the_share_of_all_memory_kept_loaded() {
        let app = |memory_mb| spark_sim::trace::AppTrace {
            placement: Default::default(),
            id: String::new(),
            functions: 1,
            counts: vec![(0, 1)],
            duration_ms: 1.0,
            memory_mb,
        };
        let trace = TraceSet {
            minutes: 10,
            apps: vec![app(100.0), app(300.0)],
        };
        // 400 MB of apps over 10 minutes: 2,000 MB-minutes is half of them, on average.
        assert_eq!(mean_residency(&trace, 2_000.0), 0.5);
        assert_eq!(mean_residency(&trace, 0.0), 0.0);
        assert_eq!(
            mean_residency(&trace, 1e9),
            1.0,
            "never more than everything"
        );
        let empty = TraceSet {
            minutes: 10,
            apps: vec![],
        };
        assert_eq!(mean_residency(&empty, 5.0), 1.0);
    }
}
