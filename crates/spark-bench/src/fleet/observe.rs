//! How the fleet bench sees the fleet: one `spark_fleet` connection (to every server of the
//! cluster) reading the application's desired state and the live heartbeats, ten times a
//! second, instead of a `spark fleet status` process per look. The deploys still go through
//! the real CLI; this only watches. Everything the bench knows of the rollout's shape is
//! read here, in one place.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use spark_fleet::plan::Stage;
use spark_fleet::{Fleet, FleetConfig};

use crate::BenchError;

/// How often [`Observer::until`] looks.
const POLL: Duration = Duration::from_millis(100);

/// The application and its nodes, as read at one instant.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    /// The desired generation (0 before the first deploy).
    pub generation: u64,
    /// The desired release's content key.
    pub release_key: String,
    /// The fleet rollout ended with every target on the release.
    pub complete: bool,
    /// The fleet rollout was rolled back.
    pub rolled_back: bool,
    /// Why the rollout ended, when it did (`rolled back on n2`).
    pub reason: String,
    /// Waves released after the canary.
    pub waves: usize,
    /// Live nodes (by heartbeat).
    pub nodes: BTreeMap<String, Seen>,
}

/// A live node as its heartbeat shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// The content key of the release it serves.
    pub release_key: Option<String>,
    /// Release keys its own canary rolled back.
    pub rejected: Vec<String>,
}

impl View {
    /// Whether `node` is live and serves the desired release.
    pub(crate) fn current(&self, node: &str) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.release_key.as_deref() == Some(self.release_key.as_str()))
    }

    /// Whether `node`'s own canary rolled the desired release back.
    pub(crate) fn rejected(&self, node: &str) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.rejected.contains(&self.release_key))
    }
}

/// A read-only connection to the fleet.
pub(crate) struct Observer {
    fleet: Fleet,
    app: String,
}

impl Observer {
    /// Connects to `urls` (comma-separated), creating missing buckets with `replicas` copies.
    pub(crate) async fn connect(
        urls: &str,
        app: &str,
        replicas: usize,
    ) -> Result<Observer, BenchError> {
        let config = FleetConfig {
            replicas,
            client_name: "spark bench".into(),
            ..FleetConfig::new(urls)
        };
        let fleet = Fleet::connect(&config).await.map_err(BenchError::runtime)?;
        Ok(Observer {
            fleet,
            app: app.to_owned(),
        })
    }

    /// The state now (a read that fails, e.g. while a server dies, is an error).
    pub(crate) async fn view(&self) -> Result<View, BenchError> {
        let desired = self
            .fleet
            .effective(&self.app)
            .await
            .map_err(BenchError::runtime)?;
        let nodes = self
            .fleet
            .app_nodes(&self.app)
            .await
            .map_err(BenchError::runtime)?;
        let mut view = View {
            nodes: nodes
                .into_iter()
                .map(|n| {
                    let seen = Seen {
                        release_key: n.release_key,
                        rejected: n.rejected,
                    };
                    (n.node, seen)
                })
                .collect(),
            ..View::default()
        };
        if let Some(desired) = desired {
            let d = desired.value;
            view.generation = d.generation;
            view.release_key = d.release.key();
            match &d.rollout.stage {
                Stage::Rolling => {}
                Stage::Complete { reason } => {
                    view.complete = true;
                    view.reason = reason.clone();
                }
                Stage::RolledBack { reason } => {
                    view.rolled_back = true;
                    view.reason = reason.clone();
                }
            }
            view.waves = d.rollout.waves;
        }
        Ok(view)
    }

    /// Polls until `done` holds (reads that fail are retried), within `limit`; the view
    /// that satisfied it. `what` names the wait in the error.
    pub(crate) async fn until(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&View) -> bool,
    ) -> Result<View, BenchError> {
        let deadline = Instant::now() + limit;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(view) = self.view().await {
                if done(&view) {
                    return Ok(view);
                }
                last = Some(view);
            }
            tokio::time::sleep(POLL).await;
        }
        Err(BenchError::NotReady(format!(
            "{what} (last seen: {:?})",
            last.map(|v| (
                v.generation,
                v.complete,
                v.rolled_back,
                v.release_key,
                v.nodes
            ))
        )))
    }
}
