//! Inference metrics read at scrape time from the node's [`NnService`]: devices found,
//! whether each backend is usable (and, as a label, why not), and per-backend counters.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use spark_nn::{BackendStatus, NnService, NnStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
    device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AvailableLabels {
    backend: String,
    device: String,
    /// What it runs on, or why it is not used.
    detail: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

pub(super) struct NnCollector(pub(super) NnService);

impl std::fmt::Debug for NnCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NnCollector")
    }
}

type Counted = (&'static str, &'static str, fn(&BackendStatus) -> f64);

const BACKEND_COUNTERS: &[Counted] = &[
    ("nn_inferences", "Inferences served, by backend", |b| {
        b.counters.served as f64
    }),
    (
        "nn_backend_failures",
        "Failed attempts the router fell through from, by backend",
        |b| b.counters.failures as f64,
    ),
    (
        "nn_backend_panics",
        "Backend panics caught, by backend",
        |b| b.counters.panics as f64,
    ),
    (
        "nn_inference_seconds",
        "Time spent serving inferences, by backend",
        |b| b.counters.micros_total as f64 / 1e6,
    ),
];

impl Collector for NnCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.0.status();
        encode_backends(&mut encoder, &status)?;
        encode_totals(&mut encoder, &status)?;
        encode_devices(&mut encoder, &status)
    }
}

fn backend_label(b: &BackendStatus) -> BackendLabel {
    BackendLabel {
        backend: b.name.clone(),
        device: format!("{:?}", b.device).to_lowercase(),
    }
}

fn encode_backends(
    encoder: &mut DescriptorEncoder,
    status: &NnStatus,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "nn_backend_available",
        "1 if this node can use the inference backend; `detail` says on what, or why not",
        None,
        ConstGauge::new(0i64).metric_type(),
    )?;
    for b in &status.backends {
        let labels = AvailableLabels {
            backend: b.name.clone(),
            device: format!("{:?}", b.device).to_lowercase(),
            detail: b.benched.clone().unwrap_or_else(|| b.detail.clone()),
        };
        ConstGauge::new(i64::from(b.available)).encode(family.encode_family(&labels)?)?;
    }
    for (name, help, read) in BACKEND_COUNTERS {
        let mut family =
            encoder.encode_descriptor(name, help, None, ConstCounter::new(0.0).metric_type())?;
        for b in &status.backends {
            ConstCounter::new(read(b)).encode(family.encode_family(&backend_label(b))?)?;
        }
    }
    Ok(())
}

fn encode_totals(
    encoder: &mut DescriptorEncoder,
    status: &NnStatus,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(0u64).metric_type();
    for (name, help, value) in [
        (
            "nn_fallbacks",
            "Inferences served after falling through at least one backend",
            status.fallbacks,
        ),
        (
            "nn_exhausted",
            "Inferences no backend could serve",
            status.exhausted,
        ),
        (
            "nn_rejected",
            "Inference calls refused before any backend (bad input, limits)",
            status.rejected,
        ),
        (
            "nn_abandoned",
            "Computations that finished after their guest had gone (deadline or client); the result was dropped",
            status.abandoned,
        ),
        (
            "nn_cancelled",
            "Queued computations skipped because their guest had gone",
            status.cancelled,
        ),
    ] {
        ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, counter)?)?;
    }
    let gauge = ConstGauge::new(0i64).metric_type();
    for (name, help, value) in [
        (
            "nn_workers",
            "Threads of the inference pool (computations run at once)",
            status.workers as u64,
        ),
        (
            "nn_queued",
            "Computations waiting for an inference thread",
            status.queued,
        ),
        ("nn_running", "Computations running now", status.running),
    ] {
        ConstGauge::new(value as i64)
            .encode(encoder.encode_descriptor(name, help, None, gauge)?)?;
    }
    let cpu_only = status.preference == spark_nn::Preference::CpuOnly;
    ConstGauge::new(i64::from(cpu_only)).encode(encoder.encode_descriptor(
        "nn_cpu_only",
        "1 while the orchestrator keeps inference on the CPU",
        None,
        ConstGauge::new(0i64).metric_type(),
    )?)
}

fn encode_devices(
    encoder: &mut DescriptorEncoder,
    status: &NnStatus,
) -> Result<(), std::fmt::Error> {
    let d = &status.devices;
    let adapters = d.vulkan.adapters();
    let software = adapters.iter().filter(|a| a.is_software()).count();
    let mut family = encoder.encode_descriptor(
        "nn_devices",
        "Devices discovered, by kind",
        None,
        ConstGauge::new(0i64).metric_type(),
    )?;
    for (kind, n) in [
        ("npu", d.npus.len()),
        ("render_node", d.render_nodes.len()),
        ("vulkan_hardware", adapters.len() - software),
        ("vulkan_software", software),
    ] {
        ConstGauge::new(n as i64)
            .encode(family.encode_family(&KindLabel { kind: kind.into() })?)?;
    }
    Ok(())
}
