//! B2 (first half): first-response latency of a module never seen (compile + link +
//! instantiate + run), of one whose AOT artifact is on disk (a node restart), and of one
//! already loaded and linked (what pre-warming leaves behind), measured through the same
//! runtime API the node uses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use spark_runtime::{EngineSettings, Expect, GuestLimits, GuestSettings, Runtime, RuntimeConfig};

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
    /// Module never seen: compile + link + instantiate + first response, ms.
    pub cold_ms: f64,
    /// AOT artifact on disk (a node restart): load + link + instantiate + first response, ms.
    pub cached_ms: f64,
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

fn runtime(cache_dir: Option<PathBuf>) -> Result<Runtime, BenchError> {
    Runtime::new(&RuntimeConfig {
        engine: EngineSettings {
            max_instances: 64,
            ..EngineSettings::default()
        },
        cache_dir,
        nn: false,
    })
    .map_err(BenchError::runtime)
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
    let uncached = runtime(None)?;
    let mut cold = Vec::new();
    for _ in 0..samples {
        cold.push(first_response(&uncached, component, None).await?);
    }
    let cache = tempfile::tempdir().map_err(BenchError::Io)?;
    let cached_runtime = runtime(Some(cache.path().to_path_buf()))?;
    first_response(&cached_runtime, component, None).await?; // writes the artifact
    let mut cached = Vec::new();
    for _ in 0..samples {
        cached.push(first_response(&cached_runtime, component, None).await?);
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
    Ok(ColdstartResult {
        name: name.to_owned(),
        wasm_bytes,
        samples,
        cold_ms,
        cached_ms,
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

/// The table and the closing `B2:` line (headline keys for the first component, prefixed keys
/// for the others).
pub fn render(results: &[ColdstartResult]) -> String {
    let mut out = String::from("B2 cold start (median first-response latency)\n");
    out.push_str(&format!(
        "{:<10} {:>10} {:>10} {:>10} {:>13} {:>10} {:>10} {:>10}\n",
        "component",
        "wasm KB",
        "cold ms",
        "cached ms",
        "prewarmed ms",
        "reduction",
        "ready ms",
        "reduction"
    ));
    for r in results {
        out.push_str(&format!(
            "{:<10} {:>10} {:>10.2} {:>10.2} {:>13.3} {:>9.2}% {:>10.3} {:>9.2}%\n",
            r.name,
            r.wasm_bytes / 1024,
            r.cold_ms,
            r.cached_ms,
            r.prewarmed_ms,
            r.reduction_pct,
            r.ready_ms,
            r.ready_reduction_pct
        ));
    }
    let mut keys = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let prefix = if i == 0 {
            String::new()
        } else {
            format!("{}_", r.name)
        };
        keys.push(format!(
            "{prefix}cold_ms={:.2} {prefix}cached_ms={:.2} {prefix}prewarmed_ms={:.3} {prefix}reduction_pct={:.2} {prefix}ready_ms={:.3} {prefix}ready_reduction_pct={:.3}",
            r.cold_ms, r.cached_ms, r.prewarmed_ms, r.reduction_pct, r.ready_ms, r.ready_reduction_pct
        ));
    }
    out.push_str(&format!("B2: {}\n", keys.join(" ")));
    out
}
