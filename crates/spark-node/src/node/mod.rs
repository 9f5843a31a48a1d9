//! Starting and stopping a node.
//!
//! Startup is all-or-nothing: the release to serve is chosen ([`startup`](crate::release::startup)), every module is
//! loaded (as many at once as there are CPUs, compiling on blocking threads), linked, instantiated once and, where it
//! declares a health route, probed before any listener opens ([`factory`](crate::release::factory)). If one fails, the
//! node refuses to start and names every failure. Modules whose code the AOT cache already
//! holds are registered without loading ([`ModuleFactory::start_all`]): a restart costs what the
//! predictor loads, not what is registered. Shutdown stops accepting, lets in-flight
//! requests and job runs finish within the grace period, then returns.

use spark_store::DataDir;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod doors;
mod sizing;
mod trace_export;

use doors::{Door, DoorConfig};

use arc_swap::ArcSwap;
use spark_manifest::Manifest;
use spark_runtime::{
    EngineSettings, LatencySink, PoolingMode, Runtime, RuntimeConfig, RuntimeError,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::metrics::NodeMetrics;
use crate::admin::status::allocation_label;
use crate::admin::{self, AdminState};
use crate::clock::Clock;
use crate::control::warmth::{HistoryStore, WarmthController, WarmthView};
use crate::control::{self, Actuators, ControlLoop, ControlView};
use crate::release::deploy::Deployer;
use crate::release::factory::{BuildError, ModuleFactory, ObservedOutbound, Placement};
use crate::release::startup::{self, StartupError};
use crate::serve::activity::ActivityLog;
use crate::serve::capacity::NodeCapacity;
use crate::serve::critical_home::CriticalHome;
use crate::serve::executor::{GuestExecutor, ThreadPriority};
use crate::serve::front::Front;
use crate::serve::jobs;
use crate::serve::listener::ListenerStats;
use crate::serve::loaded::LoadedCode;
use crate::serve::snapshot::{SharedSnapshot, Snapshot};

/// Everything needed to start a node.
#[derive(Clone)]
pub struct NodeOptions {
    /// What to serve and under which limits.
    pub manifest: Manifest,
    /// The node's embedded store (AOT cache, ...).
    pub data_dir: PathBuf,
    /// Whether to try the pooling allocator.
    pub pooling: PoolingMode,
    /// Keep compiled artifacts on disk (off only for cold-start measurements).
    pub aot_cache: bool,
    /// The clock of the control loop, the warmth controller and rollouts
    /// ([`Clock::system`]; tests give a [`crate::ManualClock`]'s).
    pub clock: Clock,
    /// How long background optimization waits before compiling a module first served from
    /// baseline code (`Duration::ZERO` in production; tests use it to watch the baseline tier).
    pub optimize_delay: Duration,
}

/// Why a node did not start. `Display` says what failed; the cause is the `source()` (print
/// the chain: `spark_error::chain`, or anyhow's `{:#}`). `Modules` is the exception that
/// proves it: several causes, so its message lists each module with its whole chain.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The Wasm runtime could not be created.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Modules of the release to serve failed to load: each id with its error.
    #[error("{} module(s) failed to load:\n{}", .0.len(), render_failures(.0))]
    Modules(Vec<(String, BuildError)>),
    /// The only module that failed, failed its health check (the source says how).
    #[error("module '{module}' failed its health check at {path}")]
    Health {
        /// The module id.
        module: String,
        /// The health path from the manifest.
        path: String,
        /// How the check failed.
        #[source]
        source: spark_error::BoxError,
    },
    /// The store could not be opened, or no release to serve could be chosen from it.
    #[error("cannot open the node's store")]
    Store(#[source] StartupError),
    /// No release to serve could be chosen: the manifest's components could not be read or
    /// stored, or the current release is missing from the store.
    #[error("cannot choose the release to serve")]
    Release(#[source] StartupError),
    /// The orchestrator's probes could not be set up from `[orchestrator]`.
    #[error("orchestrator configuration")]
    Orchestrator(#[source] spark_orchestrator::probes::ProbeConfigError),
    /// The inference host could not be started from `[nn]`.
    #[error("inference host ([nn])")]
    Nn(#[source] crate::control::nn::NnStartError),
    /// The admin API token could not be read or made in the data directory.
    #[error("cannot read or make the admin token")]
    AdminToken {
        /// Why the token file could not be read or written.
        #[source]
        source: spark_store::StoreError,
    },
    /// A thread pool for guests of one priority class could not be started.
    #[error("cannot start the background executor")]
    Executor {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address from the manifest.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The OTLP endpoint (from the environment) is unusable.
    #[error("request tracing")]
    Tracing(#[source] spark_trace::export::EndpointError),
    /// A listener's certificates could not be loaded.
    #[error("TLS for {listener}")]
    Tls {
        /// The listener's setting: `node.listen` or `node.admin`.
        listener: &'static str,
        /// What is wrong with the certificates.
        #[source]
        source: Box<crate::serve::tls::TlsError>,
    },
}

/// One line per module: its id and its error with every cause.
pub(crate) fn render_failures(failures: &[(String, BuildError)]) -> String {
    failures
        .iter()
        .map(|(id, e)| format!("  module '{id}': {}", spark_error::chain(e)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A node that is serving.
pub struct RunningNode {
    /// Address the public listener is bound to (the real port if `node.listen` gave 0).
    pub http_addr: SocketAddr,
    /// Address the admin listener is bound to (the real port if `node.admin` gave 0).
    pub admin_addr: SocketAddr,
    /// The Wasm runtime every module runs in.
    pub runtime: Runtime,
    snapshot: SharedSnapshot,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    control: Option<Arc<ControlView>>,
    warmth: Arc<WarmthView>,
    deployer: Arc<Deployer>,
    nn: Option<spark_nn::NnService>,
    clock: Clock,
    dashboard: Arc<crate::admin::dashboard::DashboardState>,
    kv_replicas: Arc<spark_runtime::spin::KvReplicas>,
    _executors: Vec<GuestExecutor>,
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
            cache_dir: options
                .aot_cache
                .then(|| DataDir::new(&options.data_dir).aot_cache()),
            nn: manifest.nn.is_some(),
            tiering: manifest.node.tiering,
            optimize_delay: options.optimize_delay,
        })?;
        let sizing = sizing::size(
            &manifest.node,
            machine_memory(&manifest.orchestrator.probe_root),
            crate::serve::listener::raise_fd_limit(),
            manifest.modules.len(),
        );
        for note in &sizing.notes {
            tracing::warn!("{note}");
        }
        let (store, store_warning) = open_store(&options.data_dir).await?;
        let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::new(Vec::new())));
        let control = manifest
            .orchestrator
            .enabled
            .then(|| Arc::new(ControlView::default()));
        let nn = crate::control::nn::start(manifest.nn.as_ref())
            .await
            .map_err(NodeError::Nn)?;
        let orchestrated = manifest.orchestrator.enabled;
        let capacity = Arc::new(NodeCapacity::new(
            manifest.node.max_instances,
            sizing.invocation_memory,
            orchestrated,
        ));
        let listeners = [
            Arc::new(ListenerStats::default()),
            Arc::new(ListenerStats::default()),
        ];
        let (tracer, exporter) = trace_export::start(
            &manifest.node.trace_export,
            &DataDir::new(&options.data_dir),
        )
        .map_err(NodeError::Tracing)?
        .unzip();
        // Loaded code is bounded by the predictor's budget from the start (its revisions set
        // the limit from then on); with the predictor off every module stays loaded.
        let predictor = &manifest.predictor;
        let loaded = LoadedCode::new(predictor.enabled.then_some(predictor.memory_budget));
        let metrics = Arc::new(NodeMetrics::new(
            snapshot.clone(),
            control.clone(),
            nn.clone(),
            crate::admin::metrics::FrontView {
                capacity: capacity.clone(),
                public: listeners[0].clone(),
                admin: listeners[1].clone(),
                tracing: exporter.map(|e| e.stats().clone()),
                loaded: loaded.clone(),
            },
        ));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // With the orchestrator on, each class's guests get a runtime of their own, apart from
        // the connections' (see `serve::executor`).
        let mut executors = match orchestrated {
            true => vec![
                GuestExecutor::start("spark-critical", cpus, ThreadPriority::Normal)
                    .map_err(|source| NodeError::Executor { source })?,
                GuestExecutor::start("spark-normal", cpus, ThreadPriority::Normal)
                    .map_err(|source| NodeError::Executor { source })?,
                GuestExecutor::start(
                    "spark-background",
                    cpus,
                    ThreadPriority::background(&manifest.orchestrator),
                )
                .map_err(|source| NodeError::Executor { source })?,
            ],
            false => Vec::new(),
        };
        if orchestrated && manifest.orchestrator.critical_first {
            // Normal guests started while critical work is live (`critical_first`).
            executors.push(
                GuestExecutor::start(
                    "spark-yielding",
                    cpus,
                    ThreadPriority::Idle { fallback_nice: 0 },
                )
                .map_err(|source| NodeError::Executor { source })?,
            );
        }
        let probes = match orchestrated {
            true => Some(control::probes(&manifest.orchestrator).map_err(NodeError::Orchestrator)?),
            false => None,
        };
        let placement = Placement {
            cpus: cpus as f64,
            critical: executors.first().map(GuestExecutor::handle),
            normal: executors.get(1).map(GuestExecutor::handle),
            background: executors.get(2).map(GuestExecutor::handle),
            yielding: executors.get(3).map(GuestExecutor::handle),
            critical_work: Arc::default(),
            paced: orchestrated,
            outbound_latency: probes
                .as_ref()
                .map(|p| Arc::new(ObservedOutbound(p.outbound())) as Arc<dyn LatencySink>),
            nn: nn.clone(),
        };
        let kv_replicas = Arc::new(spark_runtime::spin::KvReplicas::default());
        let activity = ActivityLog::new(orchestrated);
        let factory = ModuleFactory {
            runtime: runtime.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            placement,
            invocation_memory: sizing.invocation_memory,
            files_base: files_base(&manifest.source),
            kv_replicas: kv_replicas.clone(),
            activity: activity.clone(),
            loaded: loaded.clone(),
        };
        let clock = options.clock.clone();
        let deployer = Arc::new(
            start_releases(factory, &store, manifest, snapshot.clone(), clock.clone()).await?,
        );
        let token = DataDir::new(&options.data_dir)
            .admin_token()
            .map_err(|source| NodeError::AdminToken { source })?;

        let public = Door::open(manifest.node.listen, &manifest.node.tls, "node.listen").await?;
        let admin_door =
            Door::open(manifest.node.admin, &manifest.node.admin_tls, "node.admin").await?;
        let (http_addr, admin_addr) = (public.addr, admin_door.addr);
        // Guests' outbound requests may not come back to the node through its own doors.
        runtime.set_listeners(&[http_addr, admin_addr]);
        let shutdown = CancellationToken::new();
        let grace = manifest.node.shutdown_grace;
        let front = Arc::new(Front {
            snapshot: snapshot.clone(),
            metrics: metrics.clone(),
            capacity: capacity.clone(),
            authority: http::HeaderValue::from_str(&http_addr.to_string())
                .expect("a socket address is a valid header value"),
            scheme: public.scheme(),
            tracing: tracer,
        });
        let warmth = Arc::new(WarmthView::new(loaded));
        if let Some(warning) = store_warning {
            warmth.note(format!("{warning}; demand history starts empty"));
        }
        let scheme = public.scheme();
        let dashboard = Arc::new(crate::admin::dashboard::DashboardState::default());
        let admin_state = AdminState {
            snapshot: snapshot.clone(),
            metrics,
            started,
            listen: http_addr.to_string(),
            admin: admin_addr.to_string(),
            allocation: allocation_label(runtime.allocation()),
            tiering: crate::admin::status::tiering_label(&runtime),
            shutting_down: shutdown.clone(),
            capacity: capacity.clone(),
            orchestrator: control.clone(),
            warmth: warmth.clone(),
            deployer: deployer.clone(),
            nn: nn.clone(),
            token,
            clock: clock.clone(),
            dashboard: dashboard.clone(),
        };
        let [public_stats, admin_stats] = listeners;
        // With critical guests first, critical connections are served apart too: on the
        // critical executor, whose threads run nothing but critical work.
        let critical_home = match (executors.first(), executors.get(3)) {
            (Some(critical), Some(_yielding)) if sizing.public.max_connections_apart > 0 => {
                let snapshot = snapshot.clone();
                Some(CriticalHome::new(
                    critical.handle(),
                    Arc::new(move |path: &str| {
                        snapshot.load().route(path).is_some_and(|(_, slot)| {
                            slot.spec.priority == spark_manifest::Priority::Critical
                        })
                    }),
                    sizing.public.max_connections_apart,
                ))
            }
            _ => None,
        };
        let mut tasks = public.serve(
            doors::front_handler(front),
            DoorConfig::public(&sizing, &manifest.node, critical_home),
            public_stats,
            shutdown.clone(),
        );
        tasks.extend(admin_door.serve(
            doors::admin_handler(admin::router(admin_state)),
            DoorConfig::admin(&sizing, &manifest.node),
            admin_stats,
            shutdown.clone(),
        ));
        tasks.push(tokio::spawn(jobs::run_schedules(
            snapshot.clone(),
            capacity,
            shutdown.clone(),
            grace,
        )));
        let history = Some(store.clone() as Arc<dyn HistoryStore>);
        let controller = WarmthController::new(
            snapshot.clone(),
            manifest.predictor.clone(),
            history,
            warmth.clone(),
            clock.clone(),
            activity.clone(),
        );
        let warm_budget = controller.budget();
        tasks.push(tokio::spawn(controller.run(shutdown.clone())));
        tasks.push(tokio::spawn(deployer.clone().run(shutdown.clone())));
        tasks.push(tokio::spawn(crate::control::heap::trim_after_code_churn(
            runtime.clone(),
            &clock,
            shutdown.clone(),
        )));
        if let (Some(service), Some(settings)) = (&nn, &manifest.nn)
            && !settings.rediscover.is_zero()
        {
            let every = settings.rediscover;
            let rediscovery =
                crate::control::nn::rediscover(service.clone(), every, shutdown.clone());
            tasks.push(tokio::spawn(rediscovery));
        }
        if let (Some(view), Some(probes)) = (&control, probes) {
            let settings = manifest.orchestrator.clone();
            let nn_control = nn
                .clone()
                .zip(manifest.nn.as_ref())
                .map(|(service, s)| crate::control::nn::NnControl::new(service, s));
            let control = ControlLoop {
                snapshot: snapshot.clone(),
                settings,
                probes,
                view: view.clone(),
                actuators: Actuators {
                    warm_budget,
                    nn: nn_control,
                    runtime: runtime.clone(),
                },
                clock: clock.clone(),
                activity,
            };
            tasks.push(tokio::spawn(control.run(shutdown.clone())));
        }
        tracing::info!(
            %http_addr, %admin_addr, scheme, modules = manifest.modules.len(),
            max_memory = sizing.max_memory, invocation_memory = sizing.invocation_memory,
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
            deployer,
            nn,
            clock,
            dashboard,
            kv_replicas,
            _executors: executors,
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

    /// The inference host (`None` without an `[nn]` table).
    pub fn nn(&self) -> Option<&spark_nn::NnService> {
        self.nn.as_ref()
    }

    /// The release manager (deploys, rollouts, rollbacks).
    pub fn deployer(&self) -> &Arc<Deployer> {
        &self.deployer
    }

    /// What the warmth controller last decided.
    pub fn warmth(&self) -> &Arc<WarmthView> {
        &self.warmth
    }

    /// Joins a fleet: the agent (reconciler, heartbeat, planner) runs beside the node until
    /// shutdown, connecting in the background; the node serves meanwhile.
    pub fn join_fleet(&mut self, options: crate::release::fleet::FleetOptions) {
        let reporter = crate::release::fleet::Reporter {
            snapshot: self.snapshot.clone(),
            control: self.control.clone(),
            http: self.http_addr.to_string(),
            admin: self.admin_addr.to_string(),
            clock: self.clock.clone(),
            dashboard: self.dashboard.clone(),
        };
        let agent = crate::release::fleet::Agent::new(
            options,
            self.deployer.clone(),
            reporter,
            self.kv_replicas.clone(),
        );
        self.tasks
            .push(tokio::spawn(agent.run(self.shutdown.clone())));
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

/// Chooses the release to serve, builds its modules (and a resumed rollout's canaries).
async fn start_releases(
    factory: ModuleFactory,
    store: &Arc<spark_store::Store>,
    manifest: &Manifest,
    snapshot: SharedSnapshot,
    clock: Clock,
) -> Result<Deployer, NodeError> {
    let (plan_store, plan_manifest, now_ms) = (store.clone(), manifest.clone(), clock.unix_ms());
    let plan =
        tokio::task::spawn_blocking(move || startup::plan(&plan_store, &plan_manifest, now_ms))
            .await
            .map_err(StartupError::from)
            .and_then(|plan| plan)
            .map_err(NodeError::Release)?;
    let slots = match factory
        .start_all(&plan.modules, plan.current.id.as_str())
        .await
    {
        Ok(slots) => slots,
        Err(failures) => return Err(startup_failure(failures)),
    };
    let deployer = Deployer::new(factory, snapshot, plan.current, slots, clock);
    if let Some((rollout, release, modules)) = plan.rollout
        && let Err(failures) = deployer.resume(rollout, release, modules).await
    {
        let reasons: Vec<String> = failures
            .iter()
            .map(|(m, e)| format!("module '{m}': {}", spark_error::chain(e)))
            .collect();
        tracing::error!(reasons = %reasons.join("; "), "the rollout in progress cannot resume; serving the current release");
        let _ = deployer.store().clear_rollout();
    }
    Ok(deployer)
}

/// A health failure alone is reported as such; anything else lists every module.
fn startup_failure(mut failures: Vec<(String, BuildError)>) -> NodeError {
    if let [(_, BuildError::Health { .. })] = &failures[..]
        && let Some((module, BuildError::Health { path, source })) = failures.pop()
    {
        return NodeError::Health {
            module,
            path,
            source,
        };
    }
    NodeError::Modules(failures)
}

/// Opens the node's embedded store; a damaged database is moved aside and the node starts with
/// an empty one (and says so), since nothing in it is worth refusing to serve for.
async fn open_store(
    data_dir: &std::path::Path,
) -> Result<(Arc<spark_store::Store>, Option<String>), NodeError> {
    let dir = DataDir::new(data_dir).store();
    let opened = tokio::task::spawn_blocking(move || spark_store::Store::open_or_reset(dir)).await;
    match opened {
        Ok(Ok((store, warning))) => {
            if let Some(warning) = &warning {
                tracing::warn!(%warning, "node store was damaged and has been reset");
            }
            Ok((Arc::new(store), warning))
        }
        Ok(Err(e)) => Err(NodeError::Store(e.into())),
        Err(e) => Err(NodeError::Store(e.into())),
    }
}

/// The machine's memory (or its cgroup's limit, if lower), read where the probes read it.
fn machine_memory(probe_root: &std::path::Path) -> Option<u64> {
    let reading = spark_orchestrator::probes::MemoryProbe::new(probe_root).sample();
    let total = reading.total_kib.map(|kib| kib * 1024);
    match (total, reading.cgroup_max_bytes) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// The directory relative `files` mounts are found in: the started manifest's, made absolute
/// so a later change of directory cannot move it.
fn files_base(manifest: &std::path::Path) -> std::path::PathBuf {
    let dir = match manifest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_that_cannot_open_keeps_the_store_error_and_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("store"), b"a file where the store goes").unwrap();
        let Err(error) = open_store(dir.path()).await else {
            panic!("a store opened inside a file");
        };
        let NodeError::Store(StartupError::Store(store)) = &error else {
            panic!("not the store's error: {error:?}");
        };
        let io = std::error::Error::source(store)
            .and_then(|cause| cause.downcast_ref::<std::io::Error>())
            .expect("the I/O error is the store error's cause");
        assert_eq!(error.to_string(), "cannot open the node's store");
        let shown = spark_error::chain(&error).to_string();
        assert!(
            shown.starts_with("cannot open the node's store: "),
            "{shown}"
        );
        assert_eq!(shown.matches(&io.to_string()).count(), 1, "once: {shown}");
    }
}
