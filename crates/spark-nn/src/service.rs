//! [`NnService`]: the node-wide inference host. One per node; it owns the device inventory,
//! the engines, the models served by name, the [`DevicePolicy`] and the metrics, and hands each
//! invocation a fresh [`NnInvocation`].
//!
//! The decision worth knowing: everything an invocation holds is per-invocation (its graphs'
//! execution contexts, its last outcome) except compiled models, which are shared read-only by
//! content: the same model bytes are compiled once per backend per node, whoever loads them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime_wasi_nn::backend::NamedTensor;

use crate::backend::DeviceBackend;
use crate::backend::ort::{OrtInfo, OrtUnavailable};
use crate::config::{GUEST_MODEL_CACHE, NnConfig, NnLimits};
use crate::discovery::{self, DeviceInventory};
use crate::error::NnError;
use crate::host::NnInvocation;
use crate::metrics::{Metrics, NnStatus};
use crate::model::Model;
use crate::policy::{DevicePolicy, Target};
use crate::pool::Pool;
use crate::router::{self, Contexts, Outcome};

/// The node's inference host; cheap to clone.
#[derive(Clone)]
pub struct NnService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: NnConfig,
    pub ort: Result<OrtInfo, OrtUnavailable>,
    pub inventory: RwLock<DeviceInventory>,
    pub engines: RwLock<Vec<Arc<DeviceBackend>>>,
    /// Engines added by the embedder (tried before the built-in ones of the same chain).
    pub extra: RwLock<Vec<(Arc<DeviceBackend>, Vec<Target>)>>,
    pub policy: DevicePolicy,
    pub models: RwLock<HashMap<String, Arc<Model>>>,
    pub guest_models: Mutex<VecDeque<Arc<Model>>>,
    pub metrics: Metrics,
    /// The threads guests' computations run on.
    pub pool: Pool,
}

impl Inner {
    /// The engines of `target`'s chain, best first.
    pub(crate) fn chain(&self, target: Target) -> Vec<Arc<DeviceBackend>> {
        let mut chain: Vec<Arc<DeviceBackend>> = self
            .extra
            .read()
            .expect("extra lock")
            .iter()
            .filter(|(_, targets)| targets.contains(&target))
            .map(|(e, _)| e.clone())
            .collect();
        let engines = self.engines.read().expect("engines lock");
        for name in target.chain() {
            if let Some(e) = engines.iter().find(|e| &*e.name == *name)
                && !chain.iter().any(|c| c.name == e.name)
            {
                chain.push(e.clone());
            }
        }
        chain
    }
}

/// The result of [`NnService::infer`].
pub struct Inference {
    /// The model's outputs, named as the backend named them.
    pub outputs: Vec<NamedTensor>,
    /// How the compute went: who served, who fell through, what was skipped.
    pub outcome: Outcome,
}

impl std::fmt::Debug for NnService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engines = self.inner.engines.read().expect("engines lock");
        let ready: Vec<&str> = engines
            .iter()
            .filter(|e| e.unavailable.is_none())
            .map(|e| &*e.name)
            .collect();
        f.debug_struct("NnService")
            .field("backends", &ready)
            .field("models", &self.models())
            .finish()
    }
}

impl std::fmt::Debug for Inference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outputs: Vec<(&str, &[u32])> = self
            .outputs
            .iter()
            .map(|t| (t.name.as_str(), t.tensor.dimensions.as_slice()))
            .collect();
        f.debug_struct("Inference")
            .field("outputs", &outputs)
            .field("outcome", &self.outcome)
            .finish()
    }
}

impl NnService {
    /// Discovers devices, binds ONNX Runtime if configured, builds the engines and loads the
    /// named models. Blocking (file reads, library loading, the Vulkan probe): call it from a
    /// blocking thread. Fails only on a bad config or an unusable model file.
    pub fn start(config: NnConfig) -> Result<NnService, NnError> {
        for name in &config.settings.backends {
            if !crate::config::KNOWN_BACKENDS.contains(&name.as_str()) {
                return Err(NnError::Config(format!(
                    "unknown backend '{name}' (known: {:?})",
                    crate::config::KNOWN_BACKENDS
                )));
            }
        }
        let inventory = discovery::discover(
            &config.settings.device_root,
            &config.vulkan,
            config.settings.ort_library.as_deref(),
        );
        let ort = crate::engines::bind_ort(&config);
        if let Err(reason) = &ort {
            tracing::info!(reason = %spark_error::chain(reason), "ONNX Runtime not used");
        }
        let engines = crate::engines::build(&config, &inventory, &ort);
        let mut models = HashMap::new();
        for source in &config.settings.models {
            let model = load_model_file(source)?;
            models.insert(source.name.clone(), Arc::new(model));
        }
        let workers = match config.workers {
            0 => Pool::default_size(config.cpu_threads()),
            n => n,
        };
        let pool = Pool::start(workers)?;
        tracing::debug!(workers, "inference pool started");
        let service = NnService {
            inner: Arc::new(Inner {
                policy: {
                    let policy = DevicePolicy::new(config.failures_to_bench, config.retry_after);
                    policy.set_selection(config.settings.selection, config.settings.reprobe);
                    policy
                },
                config,
                ort,
                inventory: RwLock::new(inventory),
                engines: RwLock::new(engines),
                extra: RwLock::new(Vec::new()),
                models: RwLock::new(models),
                guest_models: Mutex::new(VecDeque::new()),
                metrics: Metrics::default(),
                pool,
            }),
        };
        for engine in service.inner.engines.read().expect("engines").iter() {
            match engine.availability() {
                Ok(()) => {
                    tracing::info!(backend = %engine.name, detail = %engine.detail, "inference backend ready")
                }
                Err(reason) => {
                    tracing::info!(backend = %engine.name, %reason, "inference backend not used")
                }
            }
        }
        Ok(service)
    }

    /// Adds an engine of the embedder's (an OpenVINO backend, a test double) in front of the
    /// built-in ones for `targets`; one with a built-in's name replaces it.
    pub fn add_engine(&self, engine: DeviceBackend, targets: &[Target]) {
        let engine = Arc::new(engine);
        self.inner
            .engines
            .write()
            .expect("engines lock")
            .retain(|e| e.name != engine.name);
        self.inner
            .extra
            .write()
            .expect("extra lock")
            .push((engine, targets.to_vec()));
    }

    /// The live policy handle for the orchestrator.
    pub fn policy(&self) -> DevicePolicy {
        self.inner.policy.clone()
    }

    /// The per-invocation state for one store of module `module`.
    pub fn invocation(&self, module: &str, limits: NnLimits) -> NnInvocation {
        NnInvocation::new(self.inner.clone(), module, limits)
    }

    /// Takes a new device inventory and rebuilds the engines from it (a device that appeared
    /// or went away). Compiled models of engines that changed are dropped. Blocking.
    pub fn refresh_devices(&self) {
        let inner = &self.inner;
        let config = &inner.config;
        let inventory = discovery::discover(
            &config.settings.device_root,
            &config.vulkan,
            config.settings.ort_library.as_deref(),
        );
        let engines = crate::engines::build(config, &inventory, &inner.ort);
        let replaced: Vec<String> = {
            let extra = inner.extra.read().expect("extra lock");
            let mut current = inner.engines.write().expect("engines lock");
            let changed = engines
                .iter()
                .filter(|new| {
                    !current.iter().any(|old| {
                        old.name == new.name
                            && old.detail == new.detail
                            && old.unavailable == new.unavailable
                    })
                })
                .map(|e| e.name.to_string())
                .collect();
            *current = engines
                .into_iter()
                .filter(|e| !extra.iter().any(|(x, _)| x.name == e.name))
                .collect();
            changed
        };
        for model in inner.models.read().expect("models lock").values() {
            for name in &replaced {
                model.forget(name);
            }
        }
        if !replaced.is_empty() {
            tracing::info!(?replaced, "inference backends changed with the devices");
        }
        *inner.inventory.write().expect("inventory lock") = inventory;
    }

    /// Per available accelerator (non-CPU engine): its name and the inferences running on
    /// it now. The orchestrator marks one `Saturated` above its threshold.
    pub fn accelerators_in_flight(&self) -> Vec<(String, u32)> {
        let inner = &self.inner;
        let extra = inner.extra.read().expect("extra lock");
        let engines = inner.engines.read().expect("engines lock");
        extra
            .iter()
            .map(|(e, _)| e)
            .chain(engines.iter())
            .filter(|e| e.device != crate::DeviceClass::Cpu && e.unavailable.is_none())
            .map(|e| (e.name.to_string(), e.in_flight()))
            .collect()
    }

    /// What was found, what is used, and why the rest is not (for `spark status`).
    pub fn status(&self) -> NnStatus {
        crate::metrics::status(&self.inner)
    }

    /// Prometheus text exposition of the inference metrics (to append to `/metrics`).
    pub fn metrics_text(&self) -> String {
        crate::metrics::prometheus(&self.inner)
    }

    /// Names of the models served by name.
    pub fn models(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .models
            .read()
            .expect("models lock")
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Runs a named model from the host (benchmarks, health checks): the same validation,
    /// routing and fall-through a guest gets, on the caller's thread (it blocks).
    pub fn infer(
        &self,
        model: &str,
        target: Target,
        inputs: Vec<NamedTensor>,
    ) -> Result<Inference, NnError> {
        let model = self.named(model)?;
        let mut contexts = Contexts::new();
        let (result, outcome) = router::compute(
            &self.inner,
            &model,
            target,
            inputs,
            &NnLimits::default(),
            &mut contexts,
        );
        result.map(|outputs| Inference { outputs, outcome })
    }

    /// Compiles the named model on the first backend of `target`'s chain that accepts it, with
    /// a zero input of its declared shape (free dimensions as 1), so the first request does not
    /// pay for it. Returns the backend that took it.
    pub fn warm(&self, model: &str, target: Target) -> Result<Outcome, NnError> {
        let m = self.named(model)?;
        let inputs = crate::tensor::zeros(&m.info)?;
        let started = Instant::now();
        let inference = self.infer(model, target, inputs)?;
        tracing::info!(model, backend = ?inference.outcome.backend, took_ms = started.elapsed().as_millis() as u64, "model warmed");
        Ok(inference.outcome)
    }

    pub(crate) fn named(&self, model: &str) -> Result<Arc<Model>, NnError> {
        self.inner
            .models
            .read()
            .expect("models lock")
            .get(model)
            .cloned()
            .ok_or_else(|| NnError::NotFound(model.to_owned()))
    }
}

impl Inner {
    /// The shared model for guest-supplied bytes (parsed once per content, LRU-kept).
    pub(crate) fn guest_model(&self, bytes: &[u8]) -> Result<Arc<Model>, NnError> {
        let digest = hex::encode(Sha256::digest(bytes));
        let mut cache = self.guest_models.lock().expect("guest models lock");
        if let Some(i) = cache.iter().position(|m| m.sha256 == digest) {
            let model = cache.remove(i).expect("present");
            cache.push_front(model.clone());
            return Ok(model);
        }
        let name = format!("guest:{}", &digest[..12]);
        let model = Arc::new(Model::new(&name, Arc::from(bytes))?);
        cache.push_front(model.clone());
        cache.truncate(GUEST_MODEL_CACHE);
        Ok(model)
    }
}

fn load_model_file(source: &crate::config::NnModel) -> Result<Model, NnError> {
    let bytes = std::fs::read(&source.path).map_err(|e| NnError::Io {
        path: source.path.clone(),
        source: e,
    })?;
    let model = Model::new(&source.name, Arc::from(bytes))?;
    if let Some(want) = &source.sha256
        && !want.eq_ignore_ascii_case(&model.sha256)
    {
        return Err(NnError::model(
            &source.name,
            format!(
                "{} has SHA-256 {}, expected {want}",
                source.path.display(),
                model.sha256
            ),
        ));
    }
    tracing::info!(model = %source.name, path = %source.path.display(), "model registered");
    Ok(model)
}
