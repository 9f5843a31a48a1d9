//! Paths to the real model, ONNX Runtime and the guests; services for tests.

use std::path::PathBuf;
use std::sync::Arc;

use spark_nn::{NnConfig, NnModel, NnService, NnSettings, VulkanProbe};
// The model, ONNX Runtime and the accelerator switch are the test kit's, shared with the
// node's and the CLI's inference tests.
pub(crate) use spark_testkit::nn::{MODEL_SHA256, model, ort_library as ort, require_accel};

pub(crate) const MODEL_NAME: &str = "ppocr-cls";

/// The `classify` guest.
pub(crate) fn classify_wasm() -> PathBuf {
    guest_wasm("classify")
}

/// The `nn-limits` guest (it pushes the host's limits; a library crate, hence `nn_limits`).
pub(crate) fn nn_limits_wasm() -> PathBuf {
    guest_wasm("nn_limits")
}

fn guest_wasm(name: &str) -> PathBuf {
    spark_testkit::guest(name)
}

/// The node config tests start from: the real model by name, ORT if present, software
/// adapters allowed (the test setting), Vulkan through the loader.
pub(crate) fn config() -> NnConfig {
    NnConfig {
        settings: NnSettings {
            ort_library: ort(),
            allow_software_adapters: true,
            models: vec![NnModel {
                name: MODEL_NAME.into(),
                path: model(),
                sha256: Some(MODEL_SHA256.into()),
            }],
            ..NnSettings::default()
        },
        vulkan: VulkanProbe::Loader,
        ..NnConfig::default()
    }
}

/// A deliberately slow real model (`spark-testkit`'s `nn::samples::slow_model`, about a second
/// on tract here), registered as `slow` next to the real one; `dir` keeps its file.
pub(crate) fn config_with_slow_model(dir: &std::path::Path) -> NnConfig {
    let path = dir.join("slow.onnx");
    std::fs::write(
        &path,
        spark_testkit::nn::samples::slow_model(SLOW_TILES, SLOW_ROUNDS),
    )
    .unwrap();
    let mut config = config();
    // The slow model is about threads and deadlines, not devices: on a software GPU (CI's
    // lavapipe) it would take a minute.
    config.settings.backends = vec!["tract".into()];
    config.settings.models.push(NnModel {
        name: "slow".into(),
        path,
        sha256: None,
    });
    config
}

/// The slow model's size: a 1536-square matrix squared 24 times (1.1-1.3 s on tract here; 8 times
/// took 0.42 s on a CI machine, under the 500 ms the test needs to call it slow).
pub(crate) const SLOW_TILES: i64 = 8;
pub(crate) const SLOW_ROUNDS: usize = 24;

pub(crate) fn service(config: NnConfig) -> NnService {
    NnService::start(config).expect("inference host starts")
}

/// Backends available in `service`, in status order.
pub(crate) fn available(service: &NnService) -> Vec<String> {
    service
        .status()
        .backends
        .into_iter()
        .filter(|b| b.available)
        .map(|b| b.name)
        .collect()
}

/// Upright and turned-over sample lines with their labels.
pub(crate) fn samples() -> Vec<(Arc<spark_testkit::nn::samples::Image>, usize)> {
    spark_testkit::nn::samples::TEXTS
        .iter()
        .flat_map(|t| {
            let image = spark_testkit::nn::samples::text_line(t, 3);
            [(Arc::new(image.rotated()), 1), (Arc::new(image), 0)]
        })
        .collect()
}

/// Top-1 class of one sample through the host API.
pub(crate) fn top1(
    service: &NnService,
    target: spark_nn::Target,
    image: &spark_testkit::nn::samples::Image,
) -> (usize, spark_nn::Outcome) {
    let inference = service
        .infer(MODEL_NAME, target, spark_testkit::nn::samples::input(image))
        .expect("inference");
    let (class, _) =
        spark_testkit::nn::samples::top1(&inference.outputs[0].tensor).expect("scores");
    (class, inference.outcome)
}
