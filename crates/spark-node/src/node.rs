//! Starting and stopping a node.
//!
//! Startup is all-or-nothing: every module is loaded (in parallel, compiling on blocking
//! threads), linked and, where it declares a health route, probed before any listener opens.
//! If one fails, the node refuses to start and names every failure. Shutdown stops accepting,
//! lets in-flight requests and job runs finish within the grace period, then returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::future::join_all;
use spark_manifest::{Manifest, ModuleSpec, Priority, Trigger};
use spark_runtime::{
    EngineSettings, Expect, LatencySink, LoadError, ModuleControls, ModuleStats, OutboundPacing,
    PoolingMode, Runtime, RuntimeConfig, RuntimeError,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::capacity::NodeCapacity;
use crate::control::{self, ControlView};
use crate::executor::BackgroundExecutor;
use crate::front::{self, Front};
use crate::jobs;
use crate::metrics::NodeMetrics;
use crate::pacing::ModulePacer;
use crate::residency::Residency;
use crate::state::SlotControls;
use crate::state::{ModuleSlot, SharedSnapshot, Snapshot};
use crate::status::allocation_label;
use crate::warmth::{HistoryStore, WarmthController, WarmthView};

/// How long a module's health route may take to answer at startup.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to start a node.
#[derive(Clone)]
pub struct NodeOptions {
    pub manifest: Manifest,
    /// The node's embedded store (AOT cache, ...).
    pub data_dir: PathBuf,
    pub pooling: PoolingMode,
    /// Keep compiled artifacts on disk (off only for cold-start measurements).
    pub aot_cache: bool,
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{} module(s) failed to load:\n{}", .0.len(), render_failures(.0))]
    Modules(Vec<(String, LoadError)>),
    #[error("module '{module}' failed its health check at {path}: {reason}")]
    Health {
        module: String,
        path: String,
        reason: String,
    },
    #[error("cannot open the node's store: {0}")]
    Store(String),
    #[error("orchestrator configuration: {0}")]
    Orchestrator(String),
    #[error("cannot start the background executor: {source}")]
    Executor {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn render_failures(failures: &[(String, LoadError)]) -> String {
    failures
        .iter()
        .map(|(id, e)| format!("  module '{id}': {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A node that is serving.
pub struct RunningNode {
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub runtime: Runtime,
    snapshot: SharedSnapshot,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    control: Option<Arc<ControlView>>,
    warmth: Arc<WarmthView>,
    _background: Option<BackgroundExecutor>,
}

impl RunningNode {
    /// Loads every module, then opens the listeners and starts the job schedules.
    pub async fn start(options: NodeOptions) -> Result<RunningNode, NodeError> {
        let started = Instant::now();
        let manifest = &options.manifest;
        let runtime = Runtime::new(&RuntimeConfig {
            engine: EngineSettings {
                max_instances: manifest.node.max_instances,
                max_memory: manifest.node.max_module_memory,
                pooling: options.pooling,
                ..EngineSettings::default()
            },
            cache_dir: options.aot_cache.then(|| options.data_dir.join("aot")),
        })?;
        let (store, store_warning) = open_store(&options.data_dir).await?;
        let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::new(Vec::new())));
        let orchestrated = manifest.orchestrator.enabled;
        let control = orchestrated.then(|| Arc::new(ControlView::default()));
        let metrics = Arc::new(NodeMetrics::new(snapshot.clone(), control.clone()));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let background = match orchestrated {
            true => Some(
                BackgroundExecutor::start(cpus, manifest.orchestrator.background_nice)
                    .map_err(|source| NodeError::Executor { source })?,
            ),
            false => None,
        };
        let probes = match orchestrated {
            true => Some(
                control::probes(&manifest.orchestrator)
                    .map_err(|e| NodeError::Orchestrator(e.to_string()))?,
            ),
            false => None,
        };
        let placement = Placement {
            cpus: cpus as f64,
            background: background.as_ref().map(BackgroundExecutor::handle),
            paced: orchestrated,
            outbound_latency: probes
                .as_ref()
                .map(|p| Arc::new(ObservedOutbound(p.outbound())) as Arc<dyn LatencySink>),
        };
        let slots = load_modules(&runtime, &metrics, &manifest.modules, &placement).await?;
        for slot in &slots {
            check_health(slot).await?;
        }
        snapshot.store(Arc::new(Snapshot::new(slots)));

        let listener = bind(manifest.node.listen).await?;
        let admin_listener = bind(manifest.node.admin).await?;
        let http_addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: manifest.node.listen,
            source,
        })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| NodeError::Bind {
                addr: manifest.node.admin,
                source,
            })?;
        let shutdown = CancellationToken::new();
        let grace = manifest.node.shutdown_grace;
        let capacity = Arc::new(NodeCapacity::new(manifest.node.max_instances, orchestrated));
        let front = Arc::new(Front {
            snapshot: snapshot.clone(),
            metrics: metrics.clone(),
            capacity: capacity.clone(),
            local_addr: http_addr,
        });
        let warmth = Arc::new(WarmthView::default());
        if let Some(warning) = store_warning {
            warmth.note(format!("{warning}; demand history starts empty"));
        }
        let admin_state = AdminState {
            snapshot: snapshot.clone(),
            metrics,
            started,
            listen: http_addr.to_string(),
            admin: admin_addr.to_string(),
            allocation: allocation_label(runtime.allocation()),
            shutting_down: shutdown.clone(),
            capacity: capacity.clone(),
            orchestrator: control.clone(),
            warmth: warmth.clone(),
        };
        let mut tasks = vec![
            tokio::spawn(front::serve(listener, front, shutdown.clone(), grace)),
            tokio::spawn(serve_admin(admin_listener, admin_state, shutdown.clone())),
            tokio::spawn(jobs::run_schedules(
                snapshot.clone(),
                capacity,
                shutdown.clone(),
                grace,
            )),
        ];
        let history = Some(store.clone() as Arc<dyn HistoryStore>);
        let controller = WarmthController::new(
            snapshot.clone(),
            manifest.predictor.clone(),
            history,
            control.clone(),
            warmth.clone(),
        );
        tasks.push(tokio::spawn(controller.run(shutdown.clone())));
        if let (Some(view), Some(probes)) = (&control, probes) {
            let settings = manifest.orchestrator.clone();
            tasks.push(tokio::spawn(control::run(
                snapshot.clone(),
                settings,
                probes,
                view.clone(),
                shutdown.clone(),
            )));
        }
        tracing::info!(
            %http_addr, %admin_addr, modules = manifest.modules.len(),
            allocation = %allocation_label(runtime.allocation()),
            orchestrator = orchestrated,
            startup_ms = started.elapsed().as_millis() as u64,
            "node serving"
        );
        Ok(RunningNode {
            http_addr,
            admin_addr,
            runtime,
            snapshot,
            shutdown,
            tasks,
            control,
            warmth,
            _background: background,
        })
    }

    /// The modules being served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// What the orchestrator last saw and decided (`None` when it is off).
    pub fn control(&self) -> Option<&Arc<ControlView>> {
        self.control.as_ref()
    }

    /// What the warmth controller last decided.
    pub fn warmth(&self) -> &Arc<WarmthView> {
        &self.warmth
    }

    /// A token that, when cancelled, starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, waits for in-flight work (up to the grace period), and returns.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the node has shut down (after [`RunningNode::shutdown_token`] fired).
    pub async fn wait(self) {
        for task in self.tasks {
            let _ = task.await;
        }
        tracing::info!("node stopped");
    }
}

/// Opens the node's embedded store; a damaged database is moved aside and the node starts with
/// an empty one (and says so), since nothing in it is worth refusing to serve for.
async fn open_store(
    data_dir: &std::path::Path,
) -> Result<(Arc<spark_store::Store>, Option<String>), NodeError> {
    let dir = data_dir.join("store");
    let opened = tokio::task::spawn_blocking(move || spark_store::Store::open_or_reset(dir)).await;
    match opened {
        Ok(Ok((store, warning))) => {
            if let Some(warning) = &warning {
                tracing::warn!(%warning, "node store was damaged and has been reset");
            }
            Ok((Arc::new(store), warning))
        }
        Ok(Err(e)) => Err(NodeError::Store(e.to_string())),
        Err(e) => Err(NodeError::Store(e.to_string())),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { addr, source })
}

async fn serve_admin(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    let stop = shutdown.clone();
    let app = admin::router(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "admin listener failed");
    }
}

/// Where and how modules run: the CPU count shares are computed against, the executor for
/// background guests, and whether pacing is on.
pub(crate) struct Placement {
    pub cpus: f64,
    pub background: Option<tokio::runtime::Handle>,
    pub paced: bool,
    /// Where guests' outbound round trips are reported (the uplink probe's passive side).
    pub outbound_latency: Option<Arc<dyn LatencySink>>,
}

/// Feeds guests' outbound round trips to the orchestrator's passive uplink probe.
struct ObservedOutbound(spark_orchestrator::probes::OutboundLatency);

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
            _ => None,
        };
        let runtime_controls = ModuleControls {
            pacer: self
                .paced
                .then(|| pacer.clone() as Arc<dyn spark_runtime::Pacer>),
            executor,
            outbound: outbound.clone(),
            outbound_latency: self.outbound_latency.clone(),
            stats: Arc::new(ModuleStats::default()),
        };
        (runtime_controls, SlotControls::new(pacer, outbound))
    }
}

/// Loads every module concurrently; fails with all load errors at once.
pub(crate) async fn load_modules(
    runtime: &Runtime,
    metrics: &NodeMetrics,
    specs: &[ModuleSpec],
    placement: &Placement,
) -> Result<Vec<Arc<ModuleSlot>>, NodeError> {
    let loads = specs.iter().map(|spec| async move {
        let expect = match spec.trigger {
            Trigger::Http { .. } => Expect::Http,
            Trigger::Schedule { .. } => Expect::Job,
        };
        (spec, runtime.prepare(&spec.component, expect).await)
    });
    let mut slots = Vec::new();
    let mut failures = Vec::new();
    for (spec, loaded) in join_all(loads).await {
        match loaded {
            Ok(prepared) => {
                let report = &prepared.report;
                tracing::info!(
                    module = %spec.id, world = prepared.entry.world(), source = ?report.source,
                    code_ms = report.code.as_millis() as u64, wasm_bytes = report.wasm_bytes,
                    "module loaded"
                );
                let (controls, slot_controls) = placement.controls(spec);
                let stats = controls.stats.clone();
                let residency =
                    Residency::loaded(runtime.clone(), spec.clone(), controls, prepared);
                slots.push(Arc::new(ModuleSlot::new(
                    spec.clone(),
                    residency,
                    stats,
                    metrics.module(
                        spec.id.as_str(),
                        matches!(spec.trigger, Trigger::Schedule { .. }),
                    ),
                    slot_controls,
                )));
            }
            Err(e) => failures.push((spec.id.to_string(), e)),
        }
    }
    if failures.is_empty() {
        Ok(slots)
    } else {
        Err(NodeError::Modules(failures))
    }
}

/// Sends `GET <health>` to the module and requires a 2xx within [`HEALTH_TIMEOUT`].
pub(crate) async fn check_health(slot: &ModuleSlot) -> Result<(), NodeError> {
    let Some(path) = slot.spec.health.clone() else {
        return Ok(());
    };
    let fail = |reason: String| NodeError::Health {
        module: slot.id().to_owned(),
        path: path.clone(),
        reason,
    };
    let Some(guest) = slot.residency.current() else {
        return Err(fail("not loaded".into()));
    };
    let status = tokio::time::timeout(HEALTH_TIMEOUT, guest.probe(&path))
        .await
        .map_err(|_| fail(format!("no answer within {HEALTH_TIMEOUT:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(fail(format!("answered {status}")))
    }
}
