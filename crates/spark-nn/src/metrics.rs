//! Counters per backend, and the status report (`spark status`, `/v1/status`, `/metrics`).
//!
//! The decision worth knowing: the status shows every backend Spark knows, including those
//! this node does not use, each with the reason (no device, software adapter not allowed,
//! library missing, benched after failures, policy), because "why is my GPU not used?" is the
//! question an operator asks first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::backend::DeviceClass;
use crate::backend::ort::OrtInfo;
use crate::discovery::DeviceInventory;
use crate::error::NnError;
use crate::policy::{Health, Preference, Target};
use crate::router::Outcome;
use crate::service::Inner;

/// Counters of one backend.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackendCounters {
    /// Inferences this backend served.
    pub served: u64,
    /// Attempts that failed (the router fell through).
    pub failures: u64,
    /// Of those, panics caught.
    pub panics: u64,
    /// Time of the computes it served, in µs, end to end (validation and fall-throughs before
    /// it included).
    pub micros_total: u64,
    /// The same, for the last compute it served, in µs.
    pub last_micros: u64,
    /// Its latest failure (kept after later successes).
    pub last_error: Option<String>,
}

#[derive(Default)]
pub(crate) struct Metrics {
    inner: Mutex<Counters>,
}

#[derive(Default, Clone)]
struct Counters {
    backends: BTreeMap<String, BackendCounters>,
    /// Computes served after at least one fall-through.
    fallbacks: u64,
    /// Computes no backend could serve.
    exhausted: u64,
    /// Computes refused before any backend (bad input, limits).
    rejected: u64,
    last_backend: Option<String>,
}

impl Metrics {
    pub(crate) fn record(&self, outcome: &Outcome, error: Option<&NnError>) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in &outcome.fallbacks {
            let b = c.backends.entry(attempt.backend.clone()).or_default();
            b.failures += 1;
            if attempt.error.starts_with("panicked: ") {
                b.panics += 1;
            }
            b.last_error = Some(attempt.error.clone());
        }
        match (&outcome.backend, error) {
            (Some(backend), _) => {
                let b = c.backends.entry(backend.clone()).or_default();
                b.served += 1;
                b.micros_total += outcome.micros;
                b.last_micros = outcome.micros;
                if !outcome.fallbacks.is_empty() {
                    c.fallbacks += 1;
                }
                c.last_backend = Some(backend.clone());
            }
            (None, Some(NnError::Exhausted(_))) => c.exhausted += 1,
            (None, _) => c.rejected += 1,
        }
    }

    fn snapshot(&self) -> Counters {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The inference part of a node's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NnStatus {
    /// What discovery found at start or at the last device refresh.
    pub devices: DeviceInventory,
    /// The library in use, or why none is (`Err`: text for people; the wire form the CLI
    /// reads).
    pub onnxruntime: Result<OrtInfo, String>,
    /// The orchestrator's preference (`Auto` until one is set).
    pub preference: Preference,
    /// Every backend Spark knows (the embedder's first), available or not.
    pub backends: Vec<BackendStatus>,
    /// Per target, the chain in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Names of the models served by name, sorted.
    pub models: Vec<String>,
    /// Computes served after at least one backend failed.
    pub fallbacks: u64,
    /// Computes no backend could serve.
    pub exhausted: u64,
    /// Computes that failed without exhausting the chain (mostly inputs refused before any
    /// backend).
    pub rejected: u64,
    /// The backend that served the latest successful compute.
    pub last_backend: Option<String>,
    /// The inference pool: its threads, and the computations waiting and running now.
    #[serde(default)]
    pub workers: usize,
    /// Computations waiting for a pool thread.
    #[serde(default)]
    pub queued: u64,
    /// Computations running on the pool.
    #[serde(default)]
    pub running: u64,
    /// Computations that finished after their guest had gone (deadline, client gone): the
    /// result was dropped.
    #[serde(default)]
    pub abandoned: u64,
    /// Computations skipped because their guest had gone before they started.
    #[serde(default)]
    pub cancelled: u64,
    /// How backends are picked: `measured` or `chain`.
    #[serde(default)]
    pub selection: String,
    /// Per model that has served: each backend's measured speed, and per target who serves
    /// and why.
    #[serde(default)]
    pub measured: Vec<ModelSelection>,
}

/// How backends have done on one model, and who serves each target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSelection {
    /// The model's name (`guest:<digest prefix>` for a guest's bytes).
    pub model: String,
    /// Every backend that has served it, fastest first.
    pub backends: Vec<BackendSpeed>,
    /// Per target (`cpu`, `gpu`, `tpu`): the backend that served last and why it went first.
    pub chosen: Vec<TargetChoice>,
}

/// One backend's measured speed on one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendSpeed {
    /// The backend's name.
    pub backend: String,
    /// Compile + first inference, ms.
    pub first_ms: Option<f64>,
    /// Typical steady-state time (median of the recent inferences), ms; `None` before a
    /// steady sample.
    pub typical_ms: Option<f64>,
    /// Steady-state inferences measured.
    pub samples: u64,
}

/// Who serves a target of a model, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetChoice {
    /// The guest's target.
    pub target: String,
    /// The backend that served it last.
    pub backend: String,
    /// Why that backend went first.
    pub why: crate::selection::Choice,
}

fn model_selection(model: &crate::model::Model) -> ModelSelection {
    let mut backends: Vec<BackendSpeed> = model
        .measured
        .lock()
        .expect("measured lock")
        .iter()
        .map(|(name, m)| BackendSpeed {
            backend: name.clone(),
            first_ms: m.first_us.map(|us| us as f64 / 1e3),
            typical_ms: m.typical_us().map(|us| us / 1e3),
            samples: m.samples,
        })
        .collect();
    backends.sort_by(|a, b| {
        let key = |s: &BackendSpeed| s.typical_ms.unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b))
    });
    let mut chosen: Vec<TargetChoice> = model
        .chosen
        .lock()
        .expect("chosen lock")
        .iter()
        .map(|(target, (backend, why))| TargetChoice {
            target: target.name().to_owned(),
            backend: backend.clone(),
            why: why.clone(),
        })
        .collect();
    chosen.sort_by(|a, b| a.target.cmp(&b.target));
    ModelSelection {
        model: model.name.clone(),
        backends,
        chosen,
    }
}

/// One backend: whether this node has it, why not, how it is doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendStatus {
    /// The backend's name (`tract`, `ort-cpu`, ...).
    pub name: String,
    /// What it computes on.
    pub device: DeviceClass,
    /// Whether this node has it.
    pub available: bool,
    /// Why it is not available, or what it runs on.
    pub detail: String,
    /// How the orchestrator (or, after a panic, the router) last marked it.
    pub health: Health,
    /// Set while the router has it benched after repeated failures.
    pub benched: Option<String>,
    /// What it did since the service started.
    pub counters: BackendCounters,
}

pub(crate) fn status(inner: &Inner) -> NnStatus {
    let counters = inner.metrics.snapshot();
    let policy = inner.policy.snapshot();
    let mut engines: Vec<_> = inner
        .extra
        .read()
        .expect("extra lock")
        .iter()
        .map(|(e, _)| e.clone())
        .collect();
    engines.extend(inner.engines.read().expect("engines lock").iter().cloned());
    let backends = engines
        .iter()
        .map(|e| BackendStatus {
            name: e.name.to_string(),
            device: e.device,
            available: e.unavailable.is_none(),
            detail: e.unavailable.clone().unwrap_or_else(|| e.detail.clone()),
            health: policy
                .health
                .get(&*e.name)
                .cloned()
                .unwrap_or(Health::Healthy),
            benched: policy
                .streaks
                .get(&*e.name)
                .filter(|s| {
                    s.benched_until
                        .is_some_and(|u| u > std::time::Instant::now())
                })
                .map(|s| s.last_error.clone()),
            counters: counters.backends.get(&*e.name).cloned().unwrap_or_default(),
        })
        .collect();
    let chains = [Target::Cpu, Target::Gpu, Target::Tpu]
        .into_iter()
        .map(|t| {
            let names = inner.chain(t).iter().map(|e| e.name.to_string()).collect();
            (t.name().to_owned(), names)
        })
        .collect();
    let mut models: Vec<String> = inner
        .models
        .read()
        .expect("models")
        .keys()
        .cloned()
        .collect();
    models.sort();
    let pool = inner.pool.figures();
    let mut measured: Vec<ModelSelection> = inner
        .models
        .read()
        .expect("models")
        .values()
        .chain(inner.guest_models.lock().expect("guest models").iter())
        .map(|m| model_selection(m))
        .filter(|m| !m.backends.is_empty())
        .collect();
    measured.sort_by(|a, b| a.model.cmp(&b.model));
    NnStatus {
        devices: inner.inventory.read().expect("inventory lock").clone(),
        onnxruntime: inner
            .ort
            .clone()
            .map_err(|e| spark_error::chain(&e).to_string()),
        preference: policy.preference.unwrap_or(Preference::Auto),
        backends,
        chains,
        models,
        fallbacks: counters.fallbacks,
        exhausted: counters.exhausted,
        rejected: counters.rejected,
        last_backend: counters.last_backend,
        workers: pool.workers,
        queued: pool.queued,
        running: pool.running,
        abandoned: pool.abandoned,
        cancelled: pool.cancelled,
        selection: match policy.selection {
            spark_manifest::NnSelection::Measured => "measured",
            spark_manifest::NnSelection::Chain => "chain",
        }
        .to_owned(),
        measured,
    }
}

/// Prometheus text format, `spark_nn_*` families.
pub(crate) fn prometheus(inner: &Inner) -> String {
    let s = status(inner);
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        "spark_nn_backend_available",
        "gauge",
        "1 if the node has this inference backend.",
    );
    family(
        "spark_nn_inferences",
        "counter",
        "Inferences served, by backend.",
    );
    family(
        "spark_nn_backend_failures",
        "counter",
        "Failed attempts (fallen through), by backend.",
    );
    family(
        "spark_nn_backend_panics",
        "counter",
        "Panics caught, by backend.",
    );
    family(
        "spark_nn_inference_seconds",
        "counter",
        "Time spent serving inferences, by backend.",
    );
    family(
        "spark_nn_fallbacks",
        "counter",
        "Inferences served after falling through.",
    );
    family(
        "spark_nn_exhausted",
        "counter",
        "Inferences no backend could serve.",
    );
    family(
        "spark_nn_rejected",
        "counter",
        "Inference calls refused before any backend.",
    );
    family(
        "spark_nn_workers",
        "gauge",
        "Threads of the inference pool (computations run at once).",
    );
    family(
        "spark_nn_queued",
        "gauge",
        "Computations waiting for an inference thread.",
    );
    family("spark_nn_running", "gauge", "Computations running now.");
    family(
        "spark_nn_abandoned",
        "counter",
        "Computations that finished after their guest had gone (deadline or client); the result was dropped.",
    );
    family(
        "spark_nn_cancelled",
        "counter",
        "Queued computations skipped because their guest had gone.",
    );
    family("spark_nn_devices", "gauge", "Devices discovered, by kind.");
    let _ = &mut family;
    for b in &s.backends {
        let l = format!("backend=\"{}\",device=\"{:?}\"", b.name, b.device).to_lowercase();
        let c = &b.counters;
        let _ = writeln!(
            out,
            "spark_nn_backend_available{{{l}}} {}",
            u8::from(b.available)
        );
        let _ = writeln!(out, "spark_nn_inferences_total{{{l}}} {}", c.served);
        let _ = writeln!(out, "spark_nn_backend_failures_total{{{l}}} {}", c.failures);
        let _ = writeln!(out, "spark_nn_backend_panics_total{{{l}}} {}", c.panics);
        let secs = c.micros_total as f64 / 1e6;
        let _ = writeln!(out, "spark_nn_inference_seconds_total{{{l}}} {secs}");
    }
    let _ = writeln!(out, "spark_nn_fallbacks_total {}", s.fallbacks);
    let _ = writeln!(out, "spark_nn_exhausted_total {}", s.exhausted);
    let _ = writeln!(out, "spark_nn_rejected_total {}", s.rejected);
    let _ = writeln!(out, "spark_nn_workers {}", s.workers);
    let _ = writeln!(out, "spark_nn_queued {}", s.queued);
    let _ = writeln!(out, "spark_nn_running {}", s.running);
    let _ = writeln!(out, "spark_nn_abandoned_total {}", s.abandoned);
    let _ = writeln!(out, "spark_nn_cancelled_total {}", s.cancelled);
    let d = &s.devices;
    let software = d
        .vulkan
        .adapters()
        .iter()
        .filter(|a| a.is_software())
        .count();
    let hardware = d.vulkan.adapters().len() - software;
    let _ = writeln!(out, "spark_nn_devices{{kind=\"npu\"}} {}", d.npus.len());
    let _ = writeln!(
        out,
        "spark_nn_devices{{kind=\"render_node\"}} {}",
        d.render_nodes.len()
    );
    let _ = writeln!(
        out,
        "spark_nn_devices{{kind=\"vulkan_hardware\"}} {hardware}"
    );
    let _ = writeln!(
        out,
        "spark_nn_devices{{kind=\"vulkan_software\"}} {software}"
    );
    out
}
