//! Building module versions: an artifact from the store becomes a running [`ModuleSlot`]
//! (compiled or taken from the AOT cache, linked, instantiated once, health-checked), placed on
//! its executor with its pacer. Used at startup, for deploys and for rollbacks alike, so a
//! version that would not start is refused before it sees any traffic.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use spark_manifest::{ModuleSpec, Priority, Trigger};
use spark_runtime::{
    CriticalFirst, CriticalWork, GuestModule, InvokeError, LatencySink, LoadError, ModuleControls,
    ModuleStats, OutboundPacing, Prepared, Runtime,
};
use spark_store::Store;

use crate::admin::metrics::NodeMetrics;
use crate::serve::activity::ActivityLog;
use crate::serve::capacity::reservation;
use crate::serve::loaded::LoadedCode;
use crate::serve::pacing::ModulePacer;
use crate::serve::residency::{Residency, prepare_artifact};
use crate::serve::snapshot::{ModuleSlot, SlotControls};

/// How long a module's health route may take to answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how modules run: the CPU count shares are computed against, the executor for
/// background guests, and whether pacing is on.
pub struct Placement {
    pub cpus: f64,
    pub background: Option<tokio::runtime::Handle>,
    /// The executors for critical and normal guests (`None`: the caller's runtime).
    pub critical: Option<tokio::runtime::Handle>,
    pub normal: Option<tokio::runtime::Handle>,
    /// Where normal guests start while critical work is live (`orchestrator.critical_first`;
    /// `None`: always on `normal`).
    pub yielding: Option<tokio::runtime::Handle>,
    /// Whether critical guests run or ran lately, for `yielding`.
    pub critical_work: Arc<CriticalWork>,
    pub paced: bool,
    /// Where guests' outbound round trips are reported (the uplink probe's passive side).
    pub outbound_latency: Option<Arc<dyn LatencySink>>,
    /// The node's inference host, handed to every module's guests.
    pub nn: Option<spark_nn::NnService>,
}

/// Feeds guests' outbound round trips to the orchestrator's passive uplink probe.
pub(crate) struct ObservedOutbound(pub spark_orchestrator::probes::OutboundLatency);

impl LatencySink for ObservedOutbound {
    fn record(&self, latency: Duration) {
        self.0.record(latency);
    }
}

impl Placement {
    fn controls(&self, spec: &ModuleSpec) -> (ModuleControls, SlotControls) {
        let pacer = Arc::new(ModulePacer::new(self.cpus));
        let outbound = Arc::new(OutboundPacing::default());
        let executor = match spec.priority {
            Priority::Background => self.background.clone(),
            Priority::Critical => self.critical.clone(),
            Priority::Normal => self.normal.clone(),
        };
        let critical_first = self.yielding.as_ref().and_then(|idle| match spec.priority {
            Priority::Critical => Some(CriticalFirst::Marks(self.critical_work.clone())),
            Priority::Normal => Some(CriticalFirst::Yields {
                idle: idle.clone(),
                critical: self.critical_work.clone(),
            }),
            Priority::Background => None,
        });
        let runtime_controls = ModuleControls {
            pacer: self
                .paced
                .then(|| pacer.clone() as Arc<dyn spark_runtime::Pacer>),
            executor,
            critical_first,
            outbound: outbound.clone(),
            outbound_latency: self.outbound_latency.clone(),
            stats: Arc::new(ModuleStats::default()),
            nn: self.nn.clone(),
        };
        (runtime_controls, SlotControls::new(pacer, outbound))
    }
}

/// Why a module version was refused. The cause is the `source()`: the guest's failure, or
/// what the health check got instead of a 2xx.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("failed its health check at {path}")]
    Health {
        path: String,
        #[source]
        source: spark_error::BoxError,
    },
    #[error("could not be instantiated")]
    Instantiate(#[source] InvokeError),
    #[error("its variables cannot be resolved")]
    Variables(#[source] spark_manifest::VariableError),
    #[error(
        "needs {needs} bytes per invocation (limits.memory + limits.host_memory) but the node has {has} bytes for running invocations (node.max_memory)"
    )]
    TooLarge { needs: u64, has: u64 },
    #[error("its files directory {} is not a directory on this node", path.display())]
    Files {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Everything needed to turn a module spec and an artifact into a running version.
pub struct ModuleFactory {
    pub runtime: Runtime,
    pub store: Arc<Store>,
    pub metrics: Arc<NodeMetrics>,
    pub placement: Placement,
    /// Memory the node has for running invocations: no module may need more than this.
    pub invocation_memory: u64,
    /// What relative `files` directories are relative to: the directory of the manifest the
    /// node was started with (a release's recorded text no longer says where it came from).
    pub files_base: std::path::PathBuf,
    /// The fleet-wide key-value stores' bookkeeping (replicated only under `--fleet`).
    pub kv_replicas: Arc<spark_runtime::spin::KvReplicas>,
    /// Where modules are listed when they have work (for the control loop and the predictor).
    pub activity: Arc<ActivityLog>,
    /// The ledger every module's loaded code is on.
    pub loaded: Arc<LoadedCode>,
}

impl ModuleFactory {
    /// Loads, links, instantiates once and health-checks one version of a module.
    pub async fn build(
        &self,
        spec: &ModuleSpec,
        digest: &str,
        release: &str,
    ) -> Result<Arc<ModuleSlot>, BuildError> {
        let needs = reservation(&spec.limits).total();
        if needs > self.invocation_memory {
            return Err(BuildError::TooLarge {
                needs,
                has: self.invocation_memory,
            });
        }
        let spec = &self.with_files(spec)?;
        let app = Arc::new(
            app_host(&self.store, &self.kv_replicas, spec).map_err(BuildError::Variables)?,
        );
        let prepared = prepare_artifact(&self.runtime, &self.store, digest, spec).await?;
        check_missing_imports(spec, &prepared)?;
        let report = &prepared.report;
        tracing::info!(
            module = %spec.id, %release, world = prepared.entry.world(), source = ?report.source,
            code_ms = report.code.as_millis() as u64, wasm_bytes = report.wasm_bytes,
            "module loaded"
        );
        let (controls, slot_controls) = self.placement.controls(spec);
        let stats = controls.stats.clone();
        let (residency, guest) = Residency::loaded(
            self.runtime.clone(),
            self.store.clone(),
            spec.clone(),
            controls,
            prepared,
            app,
            self.loaded.clone(),
        );
        let metrics = self.metrics.module(spec.id.as_str());
        let slot = Arc::new(ModuleSlot::new(
            spec.clone(),
            residency,
            stats,
            metrics,
            slot_controls,
            release.to_owned(),
            self.activity.activity(spec.id.as_str()),
        ));
        check_instance(&guest).await?;
        check_health(&slot.spec, &guest).await?;
        drop(guest);
        slot.residency.make_room();
        Ok(slot)
    }

    /// `spec` with its `files` directories anchored at [`Self::files_base`] and checked.
    fn with_files(&self, spec: &ModuleSpec) -> Result<ModuleSpec, BuildError> {
        let mut spec = spec.clone();
        for mount in &mut spec.files {
            if mount.source.is_relative() {
                mount.source = self.files_base.join(&mount.source);
            }
            match std::fs::metadata(&mount.source) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(BuildError::Files {
                        path: mount.source.clone(),
                        source: std::io::Error::other("not a directory"),
                    });
                }
                Err(source) => {
                    return Err(BuildError::Files {
                        path: mount.source.clone(),
                        source,
                    });
                }
            }
        }
        Ok(spec)
    }

    /// A module whose code the AOT cache already holds, registered without loading it (its
    /// first request or the predictor loads it), or `None` if it must be built: a scheduled
    /// job, a critical module (never below loaded), a module with a health route (checked
    /// before serving), or code the cache does not hold (never compiled by this node, or by
    /// another Wasmtime: then it could fail to link).
    pub fn register(
        &self,
        spec: &ModuleSpec,
        digest: &str,
        release: &str,
    ) -> Option<Arc<ModuleSlot>> {
        let lazy = matches!(spec.trigger, Trigger::Http { .. })
            && spec.priority != Priority::Critical
            && spec.health.is_none()
            && reservation(&spec.limits).total() <= self.invocation_memory
            && spark_store::Digest::parse(digest)
                .is_ok_and(|d| self.store.artifacts().contains(&d));
        let tier = self.runtime.cached_tier(digest).filter(|_| lazy)?;
        // Files or variables that fail are reported by the build this then falls back to.
        let spec = &self.with_files(spec).ok()?;
        let app = Arc::new(app_host(&self.store, &self.kv_replicas, spec).ok()?);
        let (controls, slot_controls) = self.placement.controls(spec);
        let stats = controls.stats.clone();
        let residency = Residency::on_disk(
            self.runtime.clone(),
            self.store.clone(),
            spec.clone(),
            controls,
            digest.to_owned(),
            tier,
            app,
            self.loaded.clone(),
        );
        let metrics = self.metrics.module(spec.id.as_str());
        Some(Arc::new(ModuleSlot::new(
            spec.clone(),
            residency,
            stats,
            metrics,
            slot_controls,
            release.to_owned(),
            self.activity.activity(spec.id.as_str()),
        )))
    }

    /// A starting node's modules: those the AOT cache holds registered without loading
    /// ([`ModuleFactory::register`]), the others built ([`ModuleFactory::build_all`]). So a
    /// restart costs what the predictor loads, not what is registered.
    pub async fn start_all(
        &self,
        modules: &[(ModuleSpec, String)],
        release: &str,
    ) -> Result<Vec<Arc<ModuleSlot>>, Vec<(String, BuildError)>> {
        let mut slots: Vec<Option<Arc<ModuleSlot>>> = modules
            .iter()
            .map(|(spec, digest)| self.register(spec, digest, release))
            .collect();
        let to_build: Vec<(ModuleSpec, String)> = modules
            .iter()
            .zip(&slots)
            .filter(|(_, slot)| slot.is_none())
            .map(|(module, _)| module.clone())
            .collect();
        tracing::info!(
            registered = modules.len() - to_build.len(),
            to_build = to_build.len(),
            "modules whose code is cached are registered without loading"
        );
        let mut built = self.build_all(&to_build, release).await?.into_iter();
        for slot in &mut slots {
            if slot.is_none() {
                *slot = built.next();
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// Builds every module, as many at once as the node has CPUs (compiles are CPU-bound: more
    /// at once only adds memory), in order; all failures at once.
    pub async fn build_all(
        &self,
        modules: &[(ModuleSpec, String)],
        release: &str,
    ) -> Result<Vec<Arc<ModuleSlot>>, Vec<(String, BuildError)>> {
        let at_once = tokio::sync::Semaphore::new((self.placement.cpus as usize).max(2));
        let at_once = &at_once;
        let builds = modules.iter().map(|(spec, digest)| async move {
            let _permit = at_once.acquire().await.expect("never closed");
            (spec, self.build(spec, digest, release).await)
        });
        let results = join_all(builds).await;
        let mut slots = Vec::new();
        let mut failures = Vec::new();
        for (spec, built) in results {
            match built {
                Ok(slot) => slots.push(slot),
                Err(e) => failures.push((spec.id.to_string(), e)),
            }
        }
        if failures.is_empty() {
            Ok(slots)
        } else {
            Err(failures)
        }
    }
}

/// A module must instantiate; the instance is kept ready for its first request.
async fn check_instance(guest: &GuestModule) -> Result<(), BuildError> {
    guest
        .prewarm(1)
        .await
        .map(drop)
        .map_err(BuildError::Instantiate)
}

/// Sends `GET <health>` to the module and requires a 2xx within [`HEALTH_TIMEOUT`].
async fn check_health(spec: &ModuleSpec, guest: &GuestModule) -> Result<(), BuildError> {
    let Some(path) = spec.health.clone() else {
        return Ok(());
    };
    let fail = |reason: spark_error::BoxError| BuildError::Health {
        path: path.clone(),
        source: reason,
    };
    let status = tokio::time::timeout(HEALTH_TIMEOUT, guest.probe(&path))
        .await
        .map_err(|_| fail(format!("no answer within {HEALTH_TIMEOUT:?}").into()))?
        .map_err(|e| fail(e.into()))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(fail(format!("answered {status}").into()))
    }
}

/// What the module's guests reach of their application: its key-value stores (scoped by the
/// application and the label, so every version of the module shares them) and its variables
/// resolved from the manifest and the environment (`SPARK_VARIABLE_<NAME>`, and
/// `SPIN_VARIABLE_<NAME>` for a Spin application).
pub(crate) fn app_host(
    store: &Arc<Store>,
    replicas: &Arc<spark_runtime::spin::KvReplicas>,
    spec: &ModuleSpec,
) -> Result<spark_runtime::spin::AppHost, spark_manifest::VariableError> {
    let values = spark_manifest::resolve_application(&spec.app.variables, spec.app.kind, |name| {
        std::env::var(name).ok()
    })?;
    let variables = spark_manifest::resolve_module(&spec.variables, &values)?;
    let stores = spec
        .app
        .key_value_stores
        .iter()
        .map(|(label, s)| {
            let scope = format!("{}/{label}", spec.app.scope);
            let limits = spark_store::KvLimits {
                max_value_size: s.max_value_size,
                max_keys: s.max_keys,
                max_bytes: s.max_bytes,
            };
            let fleet = s.fleet.then(|| {
                replicas.register(&scope, limits);
                replicas.clone()
            });
            let binding = spark_runtime::spin::KvBinding {
                scope,
                limits,
                fleet,
            };
            (label.clone(), binding)
        })
        .collect();
    Ok(spark_runtime::spin::AppHost {
        store: Some(store.clone()),
        stores,
        variables,
    })
}

/// A component importing interfaces the node does not provide is refused with their names,
/// unless its module says `missing_imports = "trap"` (then they trap, naming the interface,
/// when called).
fn check_missing_imports(spec: &ModuleSpec, prepared: &Prepared) -> Result<(), BuildError> {
    if prepared.missing_imports.is_empty() {
        return Ok(());
    }
    match spec.missing_imports {
        spark_manifest::MissingImports::Trap => {
            let list = prepared.missing_imports.join(", ");
            tracing::warn!(module = %spec.id, missing = %list, "linked imports Spark does not provide as traps");
            Ok(())
        }
        spark_manifest::MissingImports::Refuse => Err(BuildError::Load(LoadError::Link {
            path: std::path::PathBuf::from(format!("module '{}'", spec.id)),
            source: spark_runtime::missing::refusal(&prepared.missing_imports).into(),
        })),
    }
}
