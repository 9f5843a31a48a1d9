//! B2 (first half): first-response latency of a module never seen (compile + link +
//! instantiate + run) with tiering (Winch's code first) and without (Cranelift's), the time
//! until the optimized code takes over, requests/s on baseline and on optimized code, and the
//! first response of a module whose AOT artifact is on disk (a node restart) or already loaded
//! and linked (what pre-warming leaves behind), measured through the same runtime API the node
//! uses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use spark_runtime::{
    CodeSource, EngineSettings, Expect, GuestLimits, GuestModule, GuestSettings, LoadReport,
    Runtime, RuntimeConfig, TierState,
};

use crate::{BenchError, write_json};

/// Settings of `spark bench coldstart`.
#[derive(Debug, Clone)]
pub struct ColdstartOptions {
    /// (name, component) pairs; the first is the headline.
    pub components: Vec<(String, PathBuf)>,
    /// Fewer samples: 3 instead of 7 for the cold and cached medians.
    pub quick: bool,
    /// Where `coldstart.json` goes.
    pub out_dir: PathBuf,
}

/// B2 figures for one component; latencies are medians of first-response times.
#[derive(Debug, Clone, Serialize)]
pub struct ColdstartResult {
    /// The component's name as given in the options.
    pub name: String,
    /// Size of the `.wasm` file, bytes.
    pub wasm_bytes: u64,
    /// Samples behind the cold and cached medians (pre-warmed and ready take at least 10).
    pub samples: usize,
    /// Module never seen, tiered: Winch compile + link + instantiate + first response, ms.
    pub first_ms: f64,
    /// Module never seen, tiering off: Cranelift compile + link + instantiate + first
    /// response, ms.
    pub first_cranelift_ms: f64,
    /// `first_ms` / `first_cranelift_ms`.
    pub first_ratio: f64,
    /// From the start of a tiered load to the optimized code serving, ms.
    pub optimized_after_ms: f64,
    /// Requests/s on baseline (Winch) code, one at a time, fresh instance each.
    pub baseline_rps: f64,
    /// Requests/s on optimized (Cranelift) code, one at a time, fresh instance each.
    pub optimized_rps: f64,
    /// The same as `first_cranelift_ms` (the key B2 always had).
    pub cold_ms: f64,
    /// AOT artifact on disk (a node restart): load + link + instantiate + first response, ms.
    /// Loaded as the node loads a module from its store, by digest
    /// (`Runtime::prepare_stored`).
    pub cached_ms: f64,
    /// Of `cached_ms`: the code (opening, authenticating and mapping the artifact), ms.
    pub cached_code_ms: f64,
    /// Of `cached_ms`: checking imports and pre-linking, ms.
    pub cached_link_ms: f64,
    /// Already loaded and linked: instantiate + first response, ms.
    pub prewarmed_ms: f64,
    /// Pre-warmed with an instance ready (what the predictor leaves for a module it expects
    /// to be called).
    pub ready_ms: f64,
    /// How much faster pre-warmed is than cold, in percent.
    pub reduction_pct: f64,
    /// The same with an instance ready.
    pub ready_reduction_pct: f64,
    /// How much faster the cached start is than cold, in percent.
    pub cached_reduction_pct: f64,
}

fn median(mut values: Vec<Duration>) -> f64 {
    values.sort();
    values[values.len() / 2].as_secs_f64() * 1e3
}

fn runtime(
    cache_dir: Option<PathBuf>,
    tiering: bool,
    optimize_delay: Duration,
) -> Result<Runtime, BenchError> {
    Runtime::new(&RuntimeConfig {
        engine: EngineSettings {
            max_instances: 64,
            ..EngineSettings::default()
        },
        cache_dir,
        nn: false,
        tiering,
        optimize_delay,
    })
    .map_err(BenchError::runtime)
}

fn bench_module(
    runtime: &Runtime,
    prepared: std::sync::Arc<spark_runtime::Prepared>,
) -> GuestModule {
    let limits = GuestLimits::from(&spark_manifest::Limits::default());
    runtime.module(
        "bench",
        prepared,
        limits,
        GuestSettings::default(),
        Default::default(),
    )
}

/// Waits until `module` runs optimized code (its background compile is done).
async fn until_optimized(module: &GuestModule) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match module.tier().state {
            TierState::Optimized => return Ok(()),
            TierState::CraneliftOnly(reason) => {
                return Err(BenchError::runtime(format!(
                    "not tiered (cranelift-only: {reason})"
                )));
            }
            TierState::Baseline if Instant::now() > deadline => {
                return Err(BenchError::runtime("no optimized code within 10 minutes"));
            }
            TierState::Baseline => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// A never-seen start on a fresh tiered runtime: (first response, optimized code serving),
/// both from the start of the load.
async fn tiered_first(component: &std::path::Path) -> Result<(Duration, Duration), BenchError> {
    let runtime = runtime(None, true, Duration::ZERO)?;
    let started = Instant::now();
    let prepared = runtime
        .prepare(component, Expect::Http)
        .await
        .map_err(BenchError::runtime)?;
    let module = bench_module(&runtime, prepared);
    probe_ok(&module, component).await?;
    let first = started.elapsed();
    until_optimized(&module).await?;
    Ok((first, started.elapsed()))
}

/// Requests/s of `module`, one `GET /` after another for `window`.
async fn throughput(module: &GuestModule, window: Duration) -> Result<f64, BenchError> {
    let started = Instant::now();
    let mut served = 0u64;
    while started.elapsed() < window {
        probe_ok(module, std::path::Path::new("bench")).await?;
        served += 1;
    }
    Ok(served as f64 / started.elapsed().as_secs_f64())
}

async fn probe_ok(module: &GuestModule, component: &std::path::Path) -> Result<(), BenchError> {
    let status = module.probe("/").await.map_err(BenchError::runtime)?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(BenchError::runtime(format!(
            "{} answered {status}",
            component.display()
        )))
    }
}

/// Prepares `component` on `runtime` (when `prepared` is None) and serves one `GET /`.
async fn first_response(
    runtime: &Runtime,
    component: &std::path::Path,
    prepared: Option<std::sync::Arc<spark_runtime::Prepared>>,
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let prepared = match prepared {
        Some(p) => p,
        None => runtime
            .prepare(component, Expect::Http)
            .await
            .map_err(BenchError::runtime)?,
    };
    let limits = GuestLimits::from(&spark_manifest::Limits::default());
    let module = runtime.module(
        "bench",
        prepared,
        limits,
        GuestSettings::default(),
        Default::default(),
    );
    let status = module.probe("/").await.map_err(BenchError::runtime)?;
    if !(200..300).contains(&status) {
        return Err(BenchError::runtime(format!(
            "{} answered {status}",
            component.display()
        )));
    }
    Ok(started.elapsed())
}

/// A restart's first response: the component loaded by digest as the node loads it from its
/// store (read only if there is no code for it), then one `GET /`; with the load's report.
async fn stored_response(
    runtime: &Runtime,
    component: &std::path::Path,
    digest: &str,
) -> Result<(Duration, LoadReport), BenchError> {
    let started = Instant::now();
    let len = std::fs::metadata(component).map_err(BenchError::Io)?.len();
    let file = component.to_path_buf();
    let prepared = runtime
        .prepare_stored(
            component,
            digest,
            len,
            std::sync::Arc::new(move || Ok(std::fs::read(&file)?)),
            Expect::Http,
            true,
        )
        .await
        .map_err(BenchError::runtime)?;
    let report = prepared.report.clone();
    let took = first_response(runtime, component, Some(prepared)).await?;
    Ok((took + (started.elapsed() - took), report))
}

/// First response of a module with one instance made ahead of the request.
async fn ready_response(
    runtime: &Runtime,
    prepared: std::sync::Arc<spark_runtime::Prepared>,
) -> Result<Duration, BenchError> {
    let limits = GuestLimits::from(&spark_manifest::Limits::default());
    let module = runtime.module(
        "bench",
        prepared,
        limits,
        GuestSettings::default(),
        Default::default(),
    );
    module.prewarm(1).await.map_err(BenchError::runtime)?;
    let started = Instant::now();
    let status = module.probe("/").await.map_err(BenchError::runtime)?;
    if !(200..300).contains(&status) {
        return Err(BenchError::runtime(format!("answered {status}")));
    }
    Ok(started.elapsed())
}

async fn measure(
    name: &str,
    component: &std::path::Path,
    samples: usize,
) -> Result<ColdstartResult, BenchError> {
    let wasm_bytes = std::fs::metadata(component).map_err(BenchError::Io)?.len();
    let uncached = runtime(None, false, Duration::ZERO)?;
    let mut cold = Vec::new();
    for _ in 0..samples {
        cold.push(first_response(&uncached, component, None).await?);
    }
    let (mut first, mut optimized_after) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let (to_first, to_optimized) = tiered_first(component).await?;
        first.push(to_first);
        optimized_after.push(to_optimized);
    }
    let window = Duration::from_millis(if samples < 7 { 300 } else { 1000 });
    // Baseline code held there (the optimizer waits longer than the measurement).
    let held = runtime(None, true, Duration::from_secs(3600))?;
    let baseline = bench_module(
        &held,
        held.prepare(component, Expect::Http)
            .await
            .map_err(BenchError::runtime)?,
    );
    let baseline_rps = throughput(&baseline, window).await?;
    let optimized = bench_module(
        &uncached,
        uncached
            .prepare(component, Expect::Http)
            .await
            .map_err(BenchError::runtime)?,
    );
    let optimized_rps = throughput(&optimized, window).await?;
    drop((baseline, optimized));

    let cache = tempfile::tempdir().map_err(BenchError::Io)?;
    {
        // Writes both tiers' artifacts.
        let writer = runtime(Some(cache.path().to_path_buf()), true, Duration::ZERO)?;
        let prepared = writer
            .prepare(component, Expect::Http)
            .await
            .map_err(BenchError::runtime)?;
        until_optimized(&bench_module(&writer, prepared)).await?;
    }
    // A restarted node: nothing in memory, the artifacts on disk.
    let cached_runtime = runtime(Some(cache.path().to_path_buf()), true, Duration::ZERO)?;
    // What the node's store knows of the component (computed at upload, not at a restart).
    let digest = spark_runtime::digest(&std::fs::read(component).map_err(BenchError::Io)?);
    let (mut cached, mut cached_code, mut cached_link) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        let (took, report) = stored_response(&cached_runtime, component, &digest).await?;
        if report.source != CodeSource::AotCache {
            return Err(BenchError::runtime(format!(
                "{}: loaded from {:?}, not from the AOT cache",
                component.display(),
                report.source
            )));
        }
        cached.push(took);
        cached_code.push(report.code);
        cached_link.push(report.link);
    }
    let prepared = cached_runtime
        .prepare(component, Expect::Http)
        .await
        .map_err(BenchError::runtime)?;
    let mut prewarmed = Vec::new();
    for _ in 0..samples.max(10) {
        prewarmed.push(first_response(&cached_runtime, component, Some(prepared.clone())).await?);
    }
    let mut ready = Vec::new();
    for _ in 0..samples.max(10) {
        ready.push(ready_response(&cached_runtime, prepared.clone()).await?);
    }
    let (cold_ms, cached_ms, prewarmed_ms, ready_ms) = (
        median(cold),
        median(cached),
        median(prewarmed),
        median(ready),
    );
    let (first_ms, optimized_after_ms) = (median(first), median(optimized_after));
    Ok(ColdstartResult {
        name: name.to_owned(),
        wasm_bytes,
        samples,
        first_ms,
        first_cranelift_ms: cold_ms,
        first_ratio: first_ms / cold_ms,
        optimized_after_ms,
        baseline_rps,
        optimized_rps,
        cold_ms,
        cached_ms,
        cached_code_ms: median(cached_code),
        cached_link_ms: median(cached_link),
        prewarmed_ms,
        ready_ms,
        reduction_pct: 100.0 * (1.0 - prewarmed_ms / cold_ms),
        ready_reduction_pct: 100.0 * (1.0 - ready_ms / cold_ms),
        cached_reduction_pct: 100.0 * (1.0 - cached_ms / cold_ms),
    })
}

/// Runs B2 for every component and writes `coldstart.json`.
pub async fn run(options: &ColdstartOptions) -> Result<Vec<ColdstartResult>, BenchError> {
    let samples = if options.quick { 3 } else { 7 };
    let mut results = Vec::new();
    for (name, component) in &options.components {
        results.push(measure(name, component, samples).await?);
    }
    write_json(&options.out_dir, "coldstart.json", &results)?;
    Ok(results)
}

/// The table and the closing `coldstart:` line (headline keys for the first component,
/// prefixed keys for the others).
pub fn render(results: &[ColdstartResult]) -> String {
    let mut out = String::from("B2 cold start (median first-response latency)\n");
    out.push_str(&format!(
        "{:<10} {:>8} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9}\n",
        "component",
        "wasm KB",
        "first ms",
        "crane ms",
        "ratio",
        "opt@ ms",
        "base r/s",
        "opt r/s",
        "cached ms",
        "prewarm",
        "ready ms"
    ));
    for r in results {
        out.push_str(&format!(
            "{:<10} {:>8} {:>9.1} {:>9.1} {:>6.2} {:>9.1} {:>9.0} {:>9.0} {:>10.2} {:>9.3} {:>9.3}\n",
            r.name,
            r.wasm_bytes / 1024,
            r.first_ms,
            r.first_cranelift_ms,
            r.first_ratio,
            r.optimized_after_ms,
            r.baseline_rps,
            r.optimized_rps,
            r.cached_ms,
            r.prewarmed_ms,
            r.ready_ms
        ));
    }
    let mut keys = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let p = if i == 0 {
            String::new()
        } else {
            format!("{}_", r.name)
        };
        keys.push(format!(
            "{p}first_ms={:.2} {p}first_cranelift_ms={:.2} {p}first_ratio={:.3} {p}optimized_after_ms={:.2} {p}baseline_rps={:.0} {p}optimized_rps={:.0} {p}cached_ms={:.2} {p}cached_code_ms={:.2} {p}cached_link_ms={:.2} {p}prewarmed_ms={:.3} {p}ready_ms={:.3} {p}cold_ms={:.2} {p}reduction_pct={:.2}",
            r.first_ms,
            r.first_cranelift_ms,
            r.first_ratio,
            r.optimized_after_ms,
            r.baseline_rps,
            r.optimized_rps,
            r.cached_ms,
            r.cached_code_ms,
            r.cached_link_ms,
            r.prewarmed_ms,
            r.ready_ms,
            r.cold_ms,
            r.reduction_pct
        ));
    }
    out.push_str(&format!("coldstart: {}\n", keys.join(" ")));
    out
}
