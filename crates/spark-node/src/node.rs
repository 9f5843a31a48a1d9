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
use spark_manifest::{Manifest, ModuleSpec, Trigger};
use spark_runtime::{
    EngineSettings, Expect, GuestLimits, GuestSettings, LoadError, PoolingMode, Runtime,
    RuntimeConfig, RuntimeError,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::front::{self, Front};
use crate::jobs;
use crate::metrics::NodeMetrics;
use crate::state::{ModuleSlot, SharedSnapshot, Snapshot};
use crate::status::allocation_label;

/// How long a module's health route may take to answer at startup.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to start a node.
#[derive(Debug, Clone)]
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
        let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::new(Vec::new())));
        let metrics = Arc::new(NodeMetrics::new(snapshot.clone()));
        let slots = load_modules(&runtime, &metrics, &manifest.modules).await?;
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
        let front = Arc::new(Front {
            snapshot: snapshot.clone(),
            metrics: metrics.clone(),
            local_addr: http_addr,
        });
        let admin_state = AdminState {
            snapshot: snapshot.clone(),
            metrics,
            started,
            listen: http_addr.to_string(),
            admin: admin_addr.to_string(),
            allocation: allocation_label(runtime.allocation()),
            shutting_down: shutdown.clone(),
        };
        let tasks = vec![
            tokio::spawn(front::serve(listener, front, shutdown.clone(), grace)),
            tokio::spawn(serve_admin(admin_listener, admin_state, shutdown.clone())),
            tokio::spawn(jobs::run_schedules(
                snapshot.clone(),
                shutdown.clone(),
                grace,
            )),
        ];
        tracing::info!(
            %http_addr, %admin_addr, modules = manifest.modules.len(),
            allocation = %allocation_label(runtime.allocation()),
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
        })
    }

    /// The modules being served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
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

/// Loads every module concurrently; fails with all load errors at once.
pub(crate) async fn load_modules(
    runtime: &Runtime,
    metrics: &NodeMetrics,
    specs: &[ModuleSpec],
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
                let settings = GuestSettings {
                    env: spec.env.clone(),
                    config: spec.config.clone(),
                    outbound: spec.outbound.clone(),
                };
                let guest = runtime.module(
                    spec.id.as_str(),
                    prepared,
                    GuestLimits::from(&spec.limits),
                    settings,
                    None,
                );
                slots.push(Arc::new(ModuleSlot::new(
                    spec.clone(),
                    guest,
                    metrics.module(
                        spec.id.as_str(),
                        matches!(spec.trigger, Trigger::Schedule { .. }),
                    ),
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
    let status = tokio::time::timeout(HEALTH_TIMEOUT, slot.guest.probe(&path))
        .await
        .map_err(|_| fail(format!("no answer within {HEALTH_TIMEOUT:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(fail(format!("answered {status}")))
    }
}
