//! B3: surge isolation. A `critical` module under steady load plus a surge, and background
//! modules burning CPU: two "inventory sync" jobs whose runs take longer than their period, so
//! they run back to back and would take every core. Three runs of the same script against a
//! real node process: critical alone (the jobs' schedules far away); critical + jobs with the
//! orchestrator on; the same with it off (plain FIFO). Critical load is open-loop (requests
//! are sent on schedule whatever the latency, and latency is measured from the scheduled time,
//! so queueing is not hidden). Background work is counted in items reconciled. A fourth run
//! repeats "orchestrator on" while a disconnect storm (HTTP/1 closes and HTTP/2 resets of a
//! looping route) hits a background HTTP module: abandoned work must cost no more than work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::admin::{ModuleCounters, StatusSummary, status};
use crate::node::{NodeLaunch, SparkNode};
use crate::openloop::{self, Phase};
use crate::{BenchError, write_json};

/// Settings of `spark bench surge`.
#[derive(Debug, Clone)]
pub struct SurgeOptions {
    /// The `spark` executable the node runs.
    pub spark: PathBuf,
    /// The CPU-bound HTTP guest of the critical module (`busy`).
    pub component: PathBuf,
    /// The background job (`inventory-sync`).
    pub job: PathBuf,
    /// The looping guest the storm run abandons requests to (`faults`).
    pub faults: PathBuf,
    /// Shorter phases at lower rates: 3/4/3 s at 100/300/100 req/s instead of 5/8/6 s at
    /// 150/450/150.
    pub quick: bool,
    /// Where `surge.json` (and the node logs, if kept) go.
    pub out_dir: PathBuf,
}

/// One of the four runs.
#[derive(Debug, Clone, Serialize)]
pub struct SurgeRun {
    /// `alone`, `orchestrator on`, `orchestrator off` or `on + disconnects`.
    pub name: &'static str,
    /// Critical requests answered with success over the three phases.
    pub critical_requests: u64,
    /// Critical requests that failed or got no answer within 30 s.
    pub critical_errors: u64,
    /// Successful critical requests per second over the three phases.
    pub critical_rps: f64,
    /// Critical median latency, measured from each request's scheduled send time, ms.
    pub p50_ms: f64,
    /// Critical p99 latency, the same way, ms.
    pub p99_ms: f64,
    /// Critical p99 latency during the surge phase alone, ms.
    pub surge_p99_ms: f64,
    /// Background CPU as a fraction of the node's CPUs, before, during and after the surge.
    pub bg_share: [f64; 3],
    /// Background CPU time per second of wall time (CPU-seconds/s), before, during and after
    /// the surge.
    pub bg_rate: [f64; 3],
    /// Background job runs over the three phases.
    pub bg_runs: u64,
    /// Modules loaded again during the run (see [`restarts`]).
    pub restarts: u64,
    /// Orchestrator CPU time over the three phases, percent of the node's CPUs.
    pub orchestrator_cpu_pct: f64,
    /// Decisions the status lists at the end (the most recent ones, capped).
    pub decisions: usize,
    /// Those decisions, as text.
    pub decision_log: Vec<String>,
}

/// The B3 result, as written to `surge.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SurgeReport {
    /// Length of the before, surge and after phases, seconds.
    pub phases_secs: [f64; 3],
    /// Critical request rate in each phase, requests per second.
    pub rates: [f64; 3],
    /// The orchestrator's `background_min_share`, a fraction of the node's CPUs.
    pub background_min_share: f64,
    /// The four runs, `alone` first.
    pub runs: Vec<SurgeRun>,
}

const BACKGROUND_MIN_SHARE: f64 = 0.10;
/// Steady critical load before the measured phases (not measured).
const WARMUP: Duration = Duration::from_secs(3);
/// Background jobs, and items per run (a run of `inventory-sync` with this many items takes
/// longer than the 1 s period on the machines we measured, so runs go back to back).
const JOBS: [&str; 2] = ["sync-a", "sync-b"];
const JOB_ITEMS: u64 = 20_000_000;
/// Rounds of the `busy` guest per critical request.
const CRITICAL_WORK: u32 = 1;

fn manifest(
    options: &SurgeOptions,
    addr: SocketAddr,
    admin: SocketAddr,
    orchestrated: bool,
    jobs: bool,
) -> String {
    let faults = options.faults.display();
    let every = if jobs { "1s" } else { "24h" };
    let mut text = format!(
        r#"version = 1
[node]
listen = "{addr}"
admin = "{admin}"
[orchestrator]
enabled = {orchestrated}
interval = "250ms"
background_min_share = {BACKGROUND_MIN_SHARE}

[[module]]
id = "shop"
component = "{c}"
routes = ["/shop/..."]
priority = "critical"
[module.limits]
concurrency = 256
queue = 1024

[[module]]
id = "bg-http"
component = "{faults}"
routes = ["/bg/..."]
priority = "background"
[module.limits]
concurrency = 8
timeout = "30s"
cpu_time = "30s"
"#,
        c = options.component.display()
    );
    for job in JOBS {
        text.push_str(&format!(
            r#"
[[module]]
id = "{job}"
component = "{c}"
schedule = {{ every = "{every}" }}
priority = "background"
[module.env]
ITEMS = "{JOB_ITEMS}"
[module.limits]
timeout = "10m"
cpu_time = "10m"
"#,
            c = options.job.display()
        ));
    }
    text
}

async fn start_node(
    options: &SurgeOptions,
    orchestrated: bool,
    jobs: bool,
) -> Result<SparkNode, BenchError> {
    let manifest = |addr, admin| manifest(options, addr, admin, orchestrated, jobs);
    SparkNode::start(NodeLaunch {
        spark: &options.spark,
        manifest: &manifest,
        ready_path: "/shop/?work=0",
        out_dir: &options.out_dir,
        log_name: if orchestrated {
            "surge-node-on"
        } else {
            "surge-node-off"
        },
        tls: None,
    })
    .await
}

async fn one_run(
    options: &SurgeOptions,
    name: &'static str,
    jobs: bool,
    orchestrated: bool,
    storm: bool,
    phases: &[Phase; 3],
) -> Result<SurgeRun, BenchError> {
    let node = start_node(options, orchestrated, jobs).await?;
    let storm = storm.then(|| {
        crate::attacks::disconnect_storm(
            &crate::dial::Dialer::plain(),
            node.addr,
            "/bg/loop",
            40,
            2,
        )
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // Steady critical load first, so the orchestrator knows what normal looks like.
    let warmup = Phase {
        duration: WARMUP,
        rate: phases[0].rate,
    };
    let path = format!("/shop/?work={CRITICAL_WORK}");
    let mut all_phases = vec![warmup];
    all_phases.extend_from_slice(phases);
    let critical = openloop::run_apart(node.addr, path, all_phases, 1, None);
    tokio::time::sleep(WARMUP).await;
    let first = status(node.admin, &node.token).await?;
    let mut marks = vec![(Instant::now(), first.clone())];
    for phase in phases {
        tokio::time::sleep(phase.duration).await;
        marks.push((Instant::now(), status(node.admin, &node.token).await?));
    }
    let critical = critical.await.map_err(BenchError::runtime)?;
    if let Some(storm) = storm {
        storm.stop().await;
    }
    let background = |s: &StatusSummary, f: fn(&ModuleCounters) -> f64| {
        JOBS.iter().map(|j| f(s.module(j))).sum::<f64>()
    };
    let mut bg_share = [0.0; 3];
    let mut bg_rate = [0.0; 3];
    for i in 0..3 {
        let (t0, s0) = &marks[i];
        let (t1, s1) = &marks[i + 1];
        let secs = t1.duration_since(*t0).as_secs_f64();
        bg_share[i] =
            (background(s1, |m| m.cpu_seconds) - background(s0, |m| m.cpu_seconds)) / secs / cpus;
        bg_rate[i] = (background(s1, |m| m.cpu_seconds) - background(s0, |m| m.cpu_seconds)) / secs;
    }
    let last = &marks[3].1;
    let elapsed = marks[3].0.duration_since(marks[0].0).as_secs_f64();
    Ok(SurgeRun {
        name,
        critical_requests: critical.requests,
        critical_errors: critical.errors,
        critical_rps: critical.requests as f64 / elapsed,
        p50_ms: critical.p50_ms,
        p99_ms: critical.p99_ms,
        surge_p99_ms: critical.phase_p99_ms[1],
        bg_share,
        bg_rate,
        bg_runs: (background(&marks[3].1, |m| m.invocations as f64)
            - background(&marks[0].1, |m| m.invocations as f64)) as u64,
        restarts: restarts(&first.modules, &last.modules),
        orchestrator_cpu_pct: 100.0 * (last.orchestrator_cpu - first.orchestrator_cpu)
            / elapsed
            / cpus,
        decisions: last.decisions,
        decision_log: last.decision_log.clone(),
    })
}

/// Modules whose code was loaded again between two status reads (a restart would show as a
/// new load report or a lost module).
pub fn restarts(before: &[ModuleCounters], after: &[ModuleCounters]) -> u64 {
    before
        .iter()
        .filter(|b| {
            !after
                .iter()
                .any(|a| a.id == b.id && a.digest == b.digest && a.load_ms == b.load_ms)
        })
        .count() as u64
}

/// Runs B3 and writes `surge.json`.
pub async fn run(options: &SurgeOptions) -> Result<SurgeReport, BenchError> {
    let (secs, rates) = if options.quick {
        ([3.0, 4.0, 3.0], [100.0, 300.0, 100.0])
    } else {
        ([5.0, 8.0, 6.0], [150.0, 450.0, 150.0])
    };
    let phases: [Phase; 3] = std::array::from_fn(|i| Phase {
        duration: Duration::from_secs_f64(secs[i]),
        rate: rates[i],
    });
    let runs = vec![
        one_run(options, "alone", false, true, false, &phases).await?,
        one_run(options, "orchestrator on", true, true, false, &phases).await?,
        one_run(options, "orchestrator off", true, false, false, &phases).await?,
        one_run(options, "on + disconnects", true, true, true, &phases).await?,
    ];
    let report = SurgeReport {
        phases_secs: secs,
        rates,
        background_min_share: BACKGROUND_MIN_SHARE,
        runs,
    };
    write_json(&options.out_dir, "surge.json", &report)?;
    Ok(report)
}

/// The table and the closing `B3:` line.
pub fn render(report: &SurgeReport) -> String {
    let mut out = format!(
        "B3 surge isolation: critical at {:?} req/s for {:?} s; {} background jobs back to back; min share {:.0}%\n",
        report.rates,
        report.phases_secs,
        JOBS.len(),
        report.background_min_share * 100.0
    );
    out.push_str(&format!(
        "{:<17} {:>8} {:>7} {:>8} {:>8} {:>9} {:>22} {:>20} {:>6} {:>7}\n",
        "run",
        "crit rps",
        "errors",
        "p50 ms",
        "p99 ms",
        "surge p99",
        "bg share pre/surge/post",
        "bg cpu-s/s pre/sur/post",
        "orch%",
        "restart"
    ));
    for r in &report.runs {
        out.push_str(&format!(
            "{:<17} {:>8.0} {:>7} {:>8.2} {:>8.2} {:>9.2} {:>8.2}/{:>5.2}/{:>5.2} {:>8.2}/{:>5.2}/{:>5.2} {:>6.2} {:>7}\n",
            r.name, r.critical_rps, r.critical_errors, r.p50_ms, r.p99_ms, r.surge_p99_ms,
            r.bg_share[0], r.bg_share[1], r.bg_share[2], r.bg_rate[0], r.bg_rate[1], r.bg_rate[2],
            r.orchestrator_cpu_pct, r.restarts
        ));
    }
    let alone = &report.runs[0];
    let on = &report.runs[1];
    let off = &report.runs[2];
    let storm = &report.runs[3];
    let restarts: u64 = report.runs.iter().map(|r| r.restarts).sum();
    out.push_str(&format!(
        "B3: p99_ratio_on={:.3} p99_ratio_off={:.3} p99_ratio_storm={:.3} surge_p99_ratio_on={:.3} surge_p99_ratio_off={:.3} bg_share={:.3} bg_share_min={:.3} bg_catchup={:.2} restarts={restarts} orchestrator_cpu_pct={:.2}\n",
        on.p99_ms / alone.p99_ms,
        off.p99_ms / alone.p99_ms,
        storm.p99_ms / alone.p99_ms,
        on.surge_p99_ms / alone.surge_p99_ms,
        off.surge_p99_ms / alone.surge_p99_ms,
        on.bg_share[1],
        report.background_min_share,
        on.bg_rate[2] / on.bg_rate[0].max(f64::EPSILON),
        on.orchestrator_cpu_pct,
    ));
    out
}
