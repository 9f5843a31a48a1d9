//! B6: hardware-agnostic inference. One `.wasm` (the `classify` guest, standard `wasi:nn`)
//! classifies the same images on every backend this machine has, pinned one at a time, then
//! with the automatic choice, a failing preferred NPU and a saturated accelerator; all in one
//! run, each backend's latency printed as a ratio to the CPU reference (`tract`). [`probe`] is
//! what `spark nn classify` runs (the inference host in one process).
//!
//! The decision worth knowing: the measurement ([`b6`]) pins backends and adds a stand-in NPU
//! through the inference host's public API, on a host started here exactly as a node's `[nn]`
//! table would start it; this module configures the host and renders the figures. It lives
//! here, not in `spark-nn`, so the node does not link a benchmark (nor its sample images).

pub mod b6;
pub mod probe;

use std::fmt::Write as _;
use std::path::PathBuf;

pub use b6::{B6Options, B6Report, BackendFigures, Classified};
use spark_nn::{NnConfig, NnService, NnSettings, VulkanProbe};

use crate::BenchError;

/// What to run.
#[derive(Debug, Clone)]
pub struct NnBenchOptions {
    /// The `classify` guest.
    pub component: PathBuf,
    /// The ONNX Runtime library; `None`: tract only.
    pub ort_library: Option<PathBuf>,
    /// Count software Vulkan adapters (lavapipe) as GPUs, as the test setting does.
    pub allow_software: bool,
    /// Requests per image per backend after the warm-up pass.
    pub rounds: usize,
    /// Where `b6.json` goes.
    pub out_dir: PathBuf,
}

/// Starts the inference host, runs B6, writes `b6.json`.
pub async fn run(options: &NnBenchOptions) -> Result<B6Report, BenchError> {
    let config = NnConfig {
        settings: NnSettings {
            ort_library: options.ort_library.clone(),
            allow_software_adapters: options.allow_software,
            ..NnSettings::default()
        },
        vulkan: VulkanProbe::Loader,
        ..NnConfig::default()
    };
    let service = tokio::task::spawn_blocking(move || NnService::start(config))
        .await
        .map_err(BenchError::runtime)?
        .map_err(BenchError::runtime)?;
    let b6 = B6Options {
        wasm: options.component.clone(),
        rounds: options.rounds,
        ort_library: options.ort_library.clone(),
    };
    let report = b6::run(service, &b6).await.map_err(BenchError::runtime)?;
    crate::write_json(&options.out_dir, "b6.json", &report)?;
    Ok(report)
}

/// One row per backend (latency, ratio to the CPU reference, top-1 agreement), the choices,
/// the fallback costs, and the `B6:` summary line last.
pub fn render(report: &B6Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<11} {:>9} {:>10} {:>11} {:>9} {:>7}  DETAIL",
        "BACKEND", "FIRST(ms)", "INFER(ms)", "REQUEST(ms)", "VS CPU", "TOP-1"
    );
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    for b in &report.backends {
        let ratio = match (b.infer_p50_ms, report.cpu_ms) {
            (Some(v), Some(cpu)) if cpu > 0.0 => format!("{:.2}x", v / cpu),
            _ => "-".to_owned(),
        };
        let agrees = match b.agrees {
            Some(true) => "agree",
            Some(false) => "DIFFER",
            None => "-",
        };
        let detail = b.error.as_deref().unwrap_or(&b.detail);
        let _ = writeln!(
            out,
            "{:<11} {:>9} {:>10} {:>11} {:>9} {:>7}  {}",
            b.backend,
            ms(b.first_ms),
            ms(b.infer_p50_ms),
            ms(b.request_p50_ms),
            ratio,
            agrees,
            detail.chars().take(90).collect::<String>()
        );
    }
    let _ = writeln!(
        out,
        "chosen by measurement: gpu -> {} (by the hint's chain alone: {}), tpu -> {}, cpu -> {}; reference correct on {}/{} images",
        report.chosen_gpu.as_deref().unwrap_or("-"),
        report.chosen_gpu_chain.as_deref().unwrap_or("-"),
        report.chosen_tpu.as_deref().unwrap_or("-"),
        report.chosen_cpu.as_deref().unwrap_or("-"),
        report.reference_correct,
        report.images
    );
    let _ = writeln!(
        out,
        "fallback from a failing NPU: first {} ms, then {} ms; saturated accelerator: {} ms on {} (back to {} when cleared)",
        ms(report.fallback_first_ms),
        ms(report.fallback_next_ms),
        ms(report.saturated_ms),
        report.saturated_backend.as_deref().unwrap_or("-"),
        report.recovered_backend.as_deref().unwrap_or("-"),
    );
    let _ = writeln!(out, "{}", report.summary_line());
    out
}
