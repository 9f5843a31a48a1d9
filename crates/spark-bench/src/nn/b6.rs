//! Benchmark B6: one `.wasm` (the `classify` guest) classifies the same images on every
//! backend the node has; report per-inference latency and top-1 agreement per backend, the
//! backend chosen automatically (by measurement, and by the hint's chain alone), and what
//! falling back costs.
//!
//! The decision worth knowing: every figure is measured through the guest and `wasi:nn`, in
//! one run, side by side, as BENCHMARKS.md asks: latency is the host's inference time as
//! `spark:nn/info` reports it (`infer_us`; the guest's image decoding is excluded) plus the
//! whole request, per backend pinned with [`Preference::Only`]. Fallback is measured twice:
//! a preferred accelerator whose provider fails (an NPU provider this ONNX Runtime build does
//! not have, or a failing stand-in without ONNX Runtime), and a saturated one. It drives the
//! inference host only through `spark-nn`'s public API (pinning, `add_engine`, health), the
//! same calls the node's orchestrator makes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use spark_manifest::NnSelection;
use spark_nn::backend::ort::{OrtBackend, Provider};
use spark_nn::backend::{DeviceBackend, DeviceClass};
use spark_nn::harness::Harness;
use spark_nn::{Health, NnError, NnLimits, NnService, ORT_CPU, ORT_NPU, Preference, TRACT, Target};
use spark_testkit::nn::FailingBackend;
use spark_testkit::nn::samples;

/// What to run.
#[derive(Debug, Clone)]
pub struct B6Options {
    /// The `classify` guest.
    pub wasm: PathBuf,
    /// Requests per image per backend (after one warm-up pass).
    pub rounds: usize,
    /// The ONNX Runtime library the service was started with, if any: the stand-in NPU of
    /// the fallback measurement is ONNX Runtime's OpenVINO provider on it.
    pub ort_library: Option<PathBuf>,
}

/// Figures for one backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendFigures {
    /// Backend name as the inference host lists it (`tract`, `ort-cpu`, ...).
    pub backend: String,
    /// Whether the host can use it on this machine; unavailable backends are not measured.
    pub available: bool,
    /// The host's description of it, or why it is unavailable.
    pub detail: String,
    /// Compile + first inference (ms), from the warm-up request.
    pub first_ms: Option<f64>,
    /// Host inference time per request, median (ms).
    pub infer_p50_ms: Option<f64>,
    /// Host inference time per request, mean (ms).
    pub infer_mean_ms: Option<f64>,
    /// Whole guest request (instantiate, decode, preprocess, infer), median (ms).
    pub request_p50_ms: Option<f64>,
    /// Top-1 class per sample image.
    pub top1: Vec<usize>,
    /// Same top-1 as the reference (`tract`) on every image.
    pub agrees: Option<bool>,
    /// Why measuring it failed, if it did.
    pub error: Option<String>,
}

/// The whole B6 result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct B6Report {
    /// One entry per backend the host lists, measured or not.
    pub backends: Vec<BackendFigures>,
    /// The backend chosen automatically for target `gpu`, by measurement (`None`: the
    /// request failed).
    pub chosen_gpu: Option<String>,
    /// The backend target `gpu` gets without measurement (`[nn] selection = "chain"`: the
    /// hint's order).
    #[serde(default)]
    pub chosen_gpu_chain: Option<String>,
    /// The same for target `tpu`.
    pub chosen_tpu: Option<String>,
    /// The same for target `cpu`.
    pub chosen_cpu: Option<String>,
    /// Top-1 of every image matches the label (upright = 0, turned over = 1) on the reference.
    pub reference_correct: usize,
    /// Sample images classified (each text upright and turned over).
    pub images: usize,
    /// Every measured backend gave the reference's top-1 on every image.
    pub top1_agree: bool,
    /// Median inference time of the CPU reference (`tract`), ms: what the ratios divide by.
    pub cpu_ms: Option<f64>,
    /// First request after the preferred accelerator failed: failed attempt + CPU (ms).
    pub fallback_first_ms: Option<f64>,
    /// Next requests: the failure is remembered, so only the CPU cost remains (ms, median).
    pub fallback_next_ms: Option<f64>,
    /// Median inference after the orchestrator marked the accelerator saturated (ms).
    pub saturated_ms: Option<f64>,
    /// Backend serving while the chosen accelerator was marked saturated.
    pub saturated_backend: Option<String>,
    /// Backend serving again once the saturation was cleared.
    pub recovered_backend: Option<String>,
}

impl B6Report {
    /// `B6: backends=... chosen=... top1_agree=... cpu_ms=...` (BENCHMARKS.md).
    pub fn summary_line(&self) -> String {
        let backends: Vec<&str> = self
            .backends
            .iter()
            .filter(|b| b.available && b.error.is_none())
            .map(|b| b.backend.as_str())
            .collect();
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        let per: Vec<String> = self
            .backends
            .iter()
            .filter(|b| b.infer_p50_ms.is_some())
            .map(|b| format!("{}_ms={}", b.backend.replace('-', "_"), ms(b.infer_p50_ms)))
            .collect();
        format!(
            "B6: backends={} chosen={} chosen_by_chain={} top1_agree={} cpu_ms={} {} correct={}/{} fallback_first_ms={} fallback_next_ms={} saturated_ms={} saturated_backend={} recovered_backend={}",
            backends.join(","),
            self.chosen_gpu.as_deref().unwrap_or("-"),
            self.chosen_gpu_chain.as_deref().unwrap_or("-"),
            self.top1_agree,
            ms(self.cpu_ms),
            per.join(" "),
            self.reference_correct,
            self.images,
            ms(self.fallback_first_ms),
            ms(self.fallback_next_ms),
            ms(self.saturated_ms),
            self.saturated_backend.as_deref().unwrap_or("-"),
            self.recovered_backend.as_deref().unwrap_or("-"),
        )
    }
}

/// One classification as the guest reported it.
#[derive(Debug, Clone, Deserialize)]
pub struct Classified {
    /// Top-1 class index (0: upright, 1: turned over).
    pub class: usize,
    /// The classifier's score for that class.
    pub score: f32,
    /// The backend that served the inference, as the host reports it.
    pub backend: Option<String>,
    /// Backends tried first that failed, as `{"backend", "error"}` objects.
    #[serde(default)]
    pub fallbacks: Vec<serde_json::Value>,
    /// The host's inference time, µs (image decoding excluded).
    pub infer_us: u64,
}

/// Sends one image to the guest.
pub async fn classify(h: &Harness, image: &[u8], target: &str) -> Result<Classified, NnError> {
    let reply = h
        .request(
            "POST",
            &format!("/classify?target={target}"),
            image.to_vec(),
        )
        .await?;
    if reply.status != 200 {
        return Err(NnError::Guest(format!(
            "status {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )));
    }
    serde_json::from_slice(&reply.body).map_err(|e| NnError::Guest(format!("answer: {e}")))
}

/// The sample images (each text upright, then turned over) as PPM, with their labels.
pub fn sample_images() -> Vec<(Vec<u8>, usize)> {
    samples::TEXTS
        .iter()
        .flat_map(|t| {
            let image = samples::text_line(t, 3);
            [(image.to_ppm(), 0), (image.rotated().to_ppm(), 1)]
        })
        .collect()
}

/// Runs B6 against `service` (already started with the node's config).
pub async fn run(service: NnService, options: &B6Options) -> Result<B6Report, NnError> {
    let harness = Harness::new(service.clone(), &options.wasm, NnLimits::default())?;
    let policy = service.policy();
    let images = sample_images();
    let mut figures = Vec::new();
    for status in service.status().backends {
        let mut f = BackendFigures {
            backend: status.name.clone(),
            available: status.available,
            detail: status.detail.clone(),
            first_ms: None,
            infer_p50_ms: None,
            infer_mean_ms: None,
            request_p50_ms: None,
            top1: Vec::new(),
            agrees: None,
            error: None,
        };
        if status.available {
            policy.set_preference(Preference::Only(status.name.clone()));
            if let Err(e) = measure(&harness, &images, options.rounds, &mut f).await {
                f.error = Some(e.to_string());
            }
        }
        figures.push(f);
    }
    policy.set_preference(Preference::Auto);
    let reference = figures
        .iter()
        .find(|f| f.backend == TRACT && f.error.is_none())
        .map(|f| f.top1.clone())
        .unwrap_or_default();
    for f in figures.iter_mut().filter(|f| !f.top1.is_empty()) {
        f.agrees = Some(f.top1 == reference);
    }
    let first = &images[0].0;
    let chosen = |r: Result<Classified, NnError>| r.ok().and_then(|c| c.backend);
    // Every backend has served this model above (pinned), so measured selection has what it
    // needs: the automatic choice is the fastest. Then the same request without measurement.
    let chosen_gpu = chosen(classify(&harness, first, "gpu").await);
    let chosen_tpu = chosen(classify(&harness, first, "tpu").await);
    let chosen_cpu = chosen(classify(&harness, first, "cpu").await);
    let selection = policy.snapshot();
    policy.set_selection(NnSelection::Chain, selection.selection_rules.reprobe);
    let chosen_gpu_chain = chosen(classify(&harness, first, "gpu").await);
    policy.set_selection(selection.selection, selection.selection_rules.reprobe);
    let (fallback_first_ms, fallback_next_ms) =
        fallback(&service, options.ort_library.as_deref(), &harness, first).await;
    let (saturated_ms, saturated_backend, recovered_backend) =
        saturation(&service, &harness, first, chosen_gpu.as_deref()).await;
    let measured: Vec<&BackendFigures> = figures.iter().filter(|f| f.agrees.is_some()).collect();
    Ok(B6Report {
        reference_correct: reference
            .iter()
            .zip(&images)
            .filter(|(got, (_, want))| *got == want)
            .count(),
        images: images.len(),
        top1_agree: !measured.is_empty() && measured.iter().all(|f| f.agrees == Some(true)),
        cpu_ms: figures
            .iter()
            .find(|f| f.backend == TRACT)
            .and_then(|f| f.infer_p50_ms),
        backends: figures,
        chosen_gpu,
        chosen_gpu_chain,
        chosen_tpu,
        chosen_cpu,
        fallback_first_ms,
        fallback_next_ms,
        saturated_ms,
        saturated_backend,
        recovered_backend,
    })
}

async fn measure(
    h: &Harness,
    images: &[(Vec<u8>, usize)],
    rounds: usize,
    f: &mut BackendFigures,
) -> Result<(), NnError> {
    let started = Instant::now();
    for (image, _) in images {
        let c = classify(h, image, "gpu").await?;
        f.top1.push(c.class);
    }
    f.first_ms = Some(started.elapsed().as_secs_f64() * 1e3 / images.len() as f64);
    let (mut infer, mut request) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        for (image, _) in images {
            let t = Instant::now();
            let c = classify(h, image, "gpu").await?;
            request.push(t.elapsed().as_secs_f64() * 1e3);
            infer.push(c.infer_us as f64 / 1e3);
        }
    }
    f.infer_p50_ms = Some(median(&mut infer));
    f.infer_mean_ms = Some(infer.iter().sum::<f64>() / infer.len() as f64);
    f.request_p50_ms = Some(median(&mut request));
    Ok(())
}

/// A preferred NPU whose provider fails; the tpu target must end on a working backend.
async fn fallback(
    service: &NnService,
    ort_library: Option<&Path>,
    h: &Harness,
    image: &[u8],
) -> (Option<f64>, Option<f64>) {
    let ort = service.status().onnxruntime;
    let engine = match (&ort, ort_library) {
        (Ok(_), Some(path)) => DeviceBackend::new(
            ORT_NPU,
            DeviceClass::Npu,
            "ONNX Runtime, OpenVINO provider (NPU) - B6 stand-in device",
            OrtBackend::new(ORT_NPU, path, Provider::OpenVinoNpu, 1),
        ),
        _ => DeviceBackend::new(ORT_NPU, DeviceClass::Npu, "B6 stand-in NPU", FailingBackend),
    };
    service.add_engine(engine, &[Target::Tpu]);
    let first = classify(h, image, "tpu").await.ok();
    let first_ms = first
        .as_ref()
        .filter(|c| !c.fallbacks.is_empty())
        .map(|c| c.infer_us as f64 / 1e3);
    let mut next = Vec::new();
    for _ in 0..5 {
        if let Ok(c) = classify(h, image, "tpu").await {
            next.push(c.infer_us as f64 / 1e3);
        }
    }
    let next_ms = (!next.is_empty()).then(|| median(&mut next));
    (first_ms, next_ms)
}

/// Marks the automatically chosen accelerator saturated, then healthy again.
async fn saturation(
    service: &NnService,
    h: &Harness,
    image: &[u8],
    chosen: Option<&str>,
) -> (Option<f64>, Option<String>, Option<String>) {
    let policy = service.policy();
    let busy = chosen.unwrap_or(ORT_CPU).to_owned();
    policy.set_health(&busy, Health::Saturated);
    let mut times = Vec::new();
    let mut during = None;
    for _ in 0..5 {
        if let Ok(c) = classify(h, image, "gpu").await {
            times.push(c.infer_us as f64 / 1e3);
            during = c.backend;
        }
    }
    policy.set_health(&busy, Health::Healthy);
    let after = classify(h, image, "gpu").await.ok().and_then(|c| c.backend);
    let ms = (!times.is_empty()).then(|| median(&mut times));
    (ms, during, after)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
