//! The agent's tasks: connect (retrying, while the node serves), then a heartbeat every
//! second, and a reconcile loop woken by the desired-state and rollout-progress watches or by
//! its own tick (which also runs a planning step).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use spark_fleet::{DesiredApp, Fleet, FleetConfig, RolloutProgress, plan};
use tokio_util::sync::CancellationToken;

use super::report::Reporter;
use super::{AgentState, FleetOptions};
use crate::admin::dashboard::view::{FleetNodeRow, FleetPanel};
use crate::release::deploy::Deployer;

/// Heartbeat, re-read of desired state, and planning step period.
const TICK: Duration = Duration::from_secs(1);

/// A node's fleet agent.
pub(crate) struct Agent {
    pub(super) options: FleetOptions,
    pub(super) deployer: Arc<Deployer>,
    pub(super) reporter: Reporter,
    pub(super) state: Arc<Mutex<AgentState>>,
    kv_replicas: Arc<spark_runtime::spin::KvReplicas>,
    kv_queue: Mutex<Option<tokio::sync::mpsc::Receiver<spark_runtime::spin::Outgoing>>>,
}

impl Agent {
    /// An agent for `options`; it replicates the fleet-wide key-value stores of `kv_replicas`
    /// (whose write queue it takes: writes queue from now on, published once connected).
    pub(crate) fn new(
        options: FleetOptions,
        deployer: Arc<Deployer>,
        reporter: Reporter,
        kv_replicas: Arc<spark_runtime::spin::KvReplicas>,
    ) -> Agent {
        let kv_queue = Mutex::new(kv_replicas.enable());
        Agent {
            options,
            deployer,
            reporter,
            state: Arc::default(),
            kv_replicas,
            kv_queue,
        }
    }

    /// Runs until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let Some(fleet) = self.connect(&shutdown).await else {
            return;
        };
        tracing::info!(url = %spark_fleet::redact_url(&self.options.url), node = %self.options.node_id, app = %self.options.app, signed_only = self.options.trusted.enforced(), "joined the fleet");
        let store = self.deployer.store().clone();
        let origin = self.options.node_id.clone();
        let mut kv_tasks = Vec::new();
        if let Some(queue) = self.kv_queue.lock().expect("kv queue").take() {
            kv_tasks.push(tokio::spawn(super::kv::publish(
                fleet.clone(),
                store.clone(),
                self.kv_replicas.clone(),
                origin.clone(),
                queue,
                shutdown.clone(),
            )));
        }
        kv_tasks.push(tokio::spawn(super::kv::apply(
            fleet.clone(),
            store,
            self.kv_replicas.clone(),
            origin,
            shutdown.clone(),
        )));
        let agent = Arc::new(self);
        let heartbeat = tokio::spawn(agent.clone().heartbeat(fleet.clone(), shutdown.clone()));
        agent.reconcile_loop(&fleet, &shutdown).await;
        let _ = heartbeat.await;
        for task in kv_tasks {
            let _ = task.await;
        }
    }

    async fn connect(&self, shutdown: &CancellationToken) -> Option<Fleet> {
        let config = FleetConfig {
            auth: self.options.auth.clone(),
            replicas: self.options.replicas,
            client_name: format!("spark node {}", self.options.node_id),
            ..FleetConfig::new(&self.options.url)
        };
        let mut said = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                connected = Fleet::connect(&config) => match connected {
                    Ok(fleet) => return Some(fleet),
                    Err(e) if !said => {
                        tracing::warn!(error = %spark_error::chain(&e), "fleet unreachable; serving from the local store and retrying");
                        said = true;
                    }
                    Err(_) => {}
                },
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    async fn heartbeat(self: Arc<Self>, fleet: Fleet, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        while !shutdown.is_cancelled() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let report = self.report().await;
            if let Err(e) = fleet.report(&report).await {
                tracing::debug!(error = %spark_error::chain(&e), "heartbeat not written");
            }
        }
    }

    async fn reconcile_loop(&self, fleet: &Fleet, shutdown: &CancellationToken) {
        let app = &self.options.app;
        let mut desired_changes = fleet.watch_desired(app, 0);
        let mut progress_changes = fleet.watch_progress(app, 0);
        let mut tick = tokio::time::interval(TICK);
        loop {
            let drive = tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(_) = desired_changes.recv() => false,
                Some(_) = progress_changes.recv() => false,
                _ = tick.tick() => true,
            };
            let nodes = if drive {
                let nodes = fleet.app_nodes(app).await.ok();
                if let Some(nodes) = &nodes {
                    self.show(nodes);
                }
                nodes
            } else {
                None
            };
            let (desired, progress) = match (fleet.desired(app).await, fleet.progress(app).await) {
                (Ok(Some(desired)), Ok(progress)) => (desired, progress),
                (Ok(None), _) => continue,
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %spark_error::chain(&e), "desired state not read");
                    continue;
                }
            };
            let effective = desired
                .value
                .with_progress(progress.as_ref().map(|p| &p.value));
            self.reconcile(fleet, &effective).await;
            if let Some(nodes) = &nodes {
                self.drive(fleet, &effective, progress.map(|p| p.revision), nodes)
                    .await;
            }
        }
    }

    /// Puts the fleet's nodes, as just read, on the dashboard.
    fn show(&self, nodes: &[spark_fleet::NodeReport]) {
        let panel = FleetPanel {
            app: self.options.app.clone(),
            node: self.options.node_id.clone(),
            read_ms: self.reporter.clock.unix_ms(),
            nodes: nodes
                .iter()
                .map(|n| FleetNodeRow {
                    node: n.node.clone(),
                    release: n.release.clone(),
                    running: n.running,
                    requests: n.requests,
                    cpu: n.cpu,
                    rollout: n.rollout.as_ref().map(|r| {
                        let shares: Vec<String> = r
                            .shares
                            .iter()
                            .map(|(m, s)| format!("{m} {s:.0}%"))
                            .collect();
                        format!("to {} ({})", r.to, shares.join(", "))
                    }),
                    last_error: n.last_error.clone(),
                })
                .collect(),
        };
        *self.reporter.dashboard.fleet.lock().expect("fleet panel") = Some(panel);
    }

    /// One planning step of the fleet rollout, written to the progress bucket with
    /// compare-and-set on `progress_revision` (the entry as read; `None`: there is none yet).
    async fn drive(
        &self,
        fleet: &Fleet,
        effective: &DesiredApp,
        progress_revision: Option<u64>,
        nodes: &[spark_fleet::NodeReport],
    ) {
        let views: Vec<plan::NodeView> = nodes.iter().map(|n| n.view()).collect();
        let Some(next) = plan::step(&effective.rollout, &views) else {
            return;
        };
        let progress = RolloutProgress {
            app: effective.app.clone(),
            generation: effective.generation,
            rollout: next,
            updated_by: format!("node {}", self.options.node_id),
        };
        match fleet.put_progress(&progress, progress_revision).await {
            Ok(_) => {
                tracing::info!(app = %progress.app, step = progress.rollout.log.last().map(String::as_str).unwrap_or(""), "fleet rollout advanced")
            }
            Err(e) if e.is_conflict() => tracing::debug!("another node advanced the rollout first"),
            Err(e) => {
                tracing::debug!(error = %spark_error::chain(&e), "fleet rollout step not written")
            }
        }
    }
}
