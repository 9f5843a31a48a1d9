//! B2's interference figure: what a background optimization costs a critical module. A small
//! critical module on optimized code answers a paced stream of requests (one every 4 ms, on
//! the async runtime like the node's request path) while calm, then while a large component
//! that was just loaded on baseline code is compiled by Cranelift in the background (the
//! optimizer's idle-class threads), until its optimized code serves. Both p99s are measured in
//! the same process, back to back; the ratio is what the target (<= 1.2x) is about.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use spark_runtime::{
    EngineSettings, Expect, GuestLimits, GuestModule, GuestSettings, Runtime, RuntimeConfig,
    TierState,
};

use crate::BenchError;

/// Gap between the critical module's requests.
const PACE: Duration = Duration::from_millis(4);

/// The critical module's latency, calm and during a background optimization.
#[derive(Debug, Clone, Serialize)]
pub struct CriticalDuringOptimization {
    /// The component optimized in the background.
    pub optimized: String,
    /// Requests measured calm.
    pub calm_requests: usize,
    /// Requests measured during the optimization.
    pub optimizing_requests: usize,
    /// p50 of the critical module, calm, ms.
    pub calm_p50_ms: f64,
    /// p99 of the critical module, calm, ms.
    pub calm_p99_ms: f64,
    /// p50 while the large component's optimized code compiled, ms.
    pub optimizing_p50_ms: f64,
    /// p99 while the large component's optimized code compiled, ms.
    pub optimizing_p99_ms: f64,
    /// `optimizing_p99_ms / calm_p99_ms`.
    pub p99_ratio: f64,
    /// How long the background optimization took, ms.
    pub optimize_ms: f64,
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1e3
}

fn module(
    runtime: &Runtime,
    id: &str,
    prepared: std::sync::Arc<spark_runtime::Prepared>,
) -> GuestModule {
    runtime.module(
        id,
        prepared,
        GuestLimits::from(&spark_manifest::Limits::default()),
        GuestSettings::default(),
        Default::default(),
    )
}

/// Paced requests to `critical` until `done` says stop (checked between requests) or
/// `at_most` passes; the latencies, sorted.
async fn paced(
    critical: &GuestModule,
    at_most: Duration,
    done: impl Fn() -> bool,
) -> Result<Vec<Duration>, BenchError> {
    let started = Instant::now();
    let mut next = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < at_most && !done() {
        tokio::time::sleep_until(next.into()).await;
        next += PACE;
        let sent = Instant::now();
        let status = critical.probe("/").await.map_err(BenchError::runtime)?;
        if !(200..300).contains(&status) {
            return Err(BenchError::runtime(format!(
                "critical module answered {status}"
            )));
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

/// Measures `critical` (a small component) calm and while `heavy` is optimized.
pub async fn measure(
    critical: &Path,
    heavy: &Path,
    quick: bool,
) -> Result<CriticalDuringOptimization, BenchError> {
    let runtime = Runtime::new(&RuntimeConfig {
        engine: EngineSettings {
            max_instances: 64,
            ..EngineSettings::default()
        },
        cache_dir: None,
        nn: false,
        tiering: true,
        optimize_delay: Duration::ZERO,
    })
    .map_err(BenchError::runtime)?;
    // The critical module on optimized code, as on a node that has run a while.
    let prepared = runtime
        .prepare_bytes_with(
            critical,
            std::fs::read(critical).map_err(BenchError::Io)?.into(),
            Expect::Http,
            false,
        )
        .await
        .map_err(BenchError::runtime)?;
    let critical = module(&runtime, "critical", prepared);
    let calm_for = Duration::from_secs(if quick { 2 } else { 5 });
    paced(&critical, Duration::from_millis(300), || false).await?; // warm-up
    let calm = paced(&critical, calm_for, || false).await?;

    let loaded = runtime
        .prepare(heavy, Expect::Http)
        .await
        .map_err(BenchError::runtime)?;
    let heavy_module = module(&runtime, "heavy", loaded);
    if heavy_module.tier().state != TierState::Baseline {
        return Err(BenchError::runtime(format!(
            "{} did not load on baseline code ({}): nothing to optimize",
            heavy.display(),
            heavy_module.tier().state
        )));
    }
    let optimizing_since = Instant::now();
    let optimizing = paced(&critical, Duration::from_secs(600), || {
        heavy_module.tier().state != TierState::Baseline
    })
    .await?;
    let optimize_ms = optimizing_since.elapsed().as_secs_f64() * 1e3;
    if heavy_module.tier().state != TierState::Optimized {
        return Err(BenchError::runtime(format!(
            "{} never reached optimized code ({})",
            heavy.display(),
            heavy_module.tier().state
        )));
    }
    let (calm_p99_ms, optimizing_p99_ms) = (quantile(&calm, 0.99), quantile(&optimizing, 0.99));
    Ok(CriticalDuringOptimization {
        optimized: heavy
            .file_stem()
            .map_or("component".into(), |s| s.to_string_lossy().into_owned()),
        calm_requests: calm.len(),
        optimizing_requests: optimizing.len(),
        calm_p50_ms: quantile(&calm, 0.5),
        calm_p99_ms,
        optimizing_p50_ms: quantile(&optimizing, 0.5),
        optimizing_p99_ms,
        p99_ratio: optimizing_p99_ms / calm_p99_ms.max(1e-6),
        optimize_ms,
    })
}

impl CriticalDuringOptimization {
    /// One table line.
    pub fn line(&self) -> String {
        format!(
            "critical module while {} optimizes ({:.0} ms): p50 {:.3} -> {:.3} ms, p99 {:.3} -> {:.3} ms ({:.2}x; {} + {} requests)\n",
            self.optimized,
            self.optimize_ms,
            self.calm_p50_ms,
            self.optimizing_p50_ms,
            self.calm_p99_ms,
            self.optimizing_p99_ms,
            self.p99_ratio,
            self.calm_requests,
            self.optimizing_requests
        )
    }

    /// The keys it adds to the `coldstart:` line.
    pub fn keys(&self) -> String {
        format!(
            "critical_p99_calm_ms={:.3} critical_p99_optimizing_ms={:.3} critical_p99_ratio={:.3}",
            self.calm_p99_ms, self.optimizing_p99_ms, self.p99_ratio
        )
    }
}
