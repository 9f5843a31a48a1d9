//! Heartbeats: each node writes its report to `node.<id>` every second or so; the bucket's
//! `max_age` drops the entry of a node that stops, so the listing is the live fleet.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::desired::decode;
use crate::plan::NodeView;
use crate::{Fleet, FleetError, check_name};

/// How many times a cut listing of the nodes is read, and the pause before the n-th retry
/// (n times this).
const LISTING_ATTEMPTS: u32 = 3;
const LISTING_RETRY: Duration = Duration::from_millis(250);

/// What a node says about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The node's id (its key is `node.<id>`).
    pub node: String,
    /// The application the node serves.
    pub app: String,
    /// The node's `k=v` labels, matched by canary selectors.
    pub labels: BTreeMap<String, String>,
    /// Address of the application listener.
    pub http: String,
    /// Address of the admin listener.
    pub admin: String,
    /// The node's current release id (`r3-...`).
    pub release: Option<String>,
    /// The current release's content key ([`FleetRelease::key`](crate::FleetRelease::key)).
    pub release_key: Option<String>,
    /// A node-level rollout in progress.
    pub rollout: Option<NodeRollout>,
    /// Release keys this node rolled back (for the desired generation it last saw).
    pub rejected: Vec<String>,
    /// The desired generation the node last acted on.
    pub generation: u64,
    /// Why the node could not apply the desired state, if it could not.
    pub last_error: Option<String>,
    /// Requests in flight now, over all modules.
    pub running: u64,
    /// Requests handled so far, over all modules.
    pub requests: u64,
    /// CPU busy fraction (0..1), when the node's probes know it.
    pub cpu: Option<f64>,
    /// Memory pressure (PSI some avg10 or used fraction, 0..1), when known.
    pub memory_pressure: Option<f64>,
    /// Battery charge in percent, when on battery.
    pub battery: Option<f64>,
    /// Active orchestrator modes (`surge`, `power-save`, ...).
    pub modes: Vec<String>,
    /// Health of each loaded module version (a module under rollout appears once per
    /// release).
    pub modules: Vec<ModuleHealth>,
    /// When the report was written (Unix ms, the node's clock).
    pub at_ms: u64,
}

/// A node-level rollout as reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRollout {
    /// The release id being rolled out (`r3-...`).
    pub to: String,
    /// Its content key, if the node has the release in its store.
    pub to_key: Option<String>,
    /// Module id -> canary share in percent.
    pub shares: BTreeMap<String, f64>,
}

/// One module's health on a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModuleHealth {
    /// The module's id.
    pub id: String,
    /// The release id this version of the module belongs to.
    pub release: String,
    /// Requests handled so far.
    pub requests: u64,
    /// Of those, responses with a 5xx status.
    pub errors: u64,
    /// Invocations running now.
    pub running: u32,
    /// Requests refused by admission (queue full or queue timeout) so far.
    pub rejected: u64,
}

impl NodeReport {
    /// The planner's view of this node.
    pub fn view(&self) -> NodeView {
        NodeView {
            id: self.node.clone(),
            labels: self.labels.clone(),
            release_key: self.release_key.clone(),
            rejected: self.rejected.clone(),
        }
    }
}

impl Fleet {
    /// Writes this node's heartbeat.
    pub async fn report(&self, report: &NodeReport) -> Result<(), FleetError> {
        check_name("node id", &report.node)?;
        let bytes = serde_json::to_vec(report)
            .expect("reports serialize")
            .into();
        self.nodes
            .put(format!("node.{}", report.node), bytes)
            .await
            .map(drop)
            .map_err(|e| FleetError::nats("writing a heartbeat", e))
    }

    /// The live nodes' latest reports, sorted by node id. A listing the connection cut is
    /// read again (the client reconnects by itself), [`LISTING_ATTEMPTS`] times in all.
    pub async fn nodes(&self) -> Result<Vec<NodeReport>, FleetError> {
        let mut attempt = 1;
        loop {
            match self.list_nodes().await {
                Err(e) if attempt < LISTING_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "listing the fleet's nodes again");
                    tokio::time::sleep(LISTING_RETRY * attempt).await;
                    attempt += 1;
                }
                listed => return listed,
            }
        }
    }

    async fn list_nodes(&self) -> Result<Vec<NodeReport>, FleetError> {
        let keys = self
            .nodes
            .keys()
            .await
            .map_err(|e| FleetError::nats("listing nodes", e))?;
        // An error in the listing (the connection lost mid-way) is an error, not an end: an
        // empty or partial list would read as "no live node" and refuse a canary deploy.
        let keys: Vec<String> = keys
            .try_collect()
            .await
            .map_err(|e| FleetError::nats("listing nodes", e))?;
        let mut reports = Vec::new();
        for key in keys {
            let value = self
                .nodes
                .get(&key)
                .await
                .map_err(|e| FleetError::nats("reading a heartbeat", e))?;
            if let Some(bytes) = value {
                reports.push(decode::<NodeReport>(&key, &bytes)?);
            }
        }
        reports.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(reports)
    }

    /// The live nodes of one application.
    pub async fn app_nodes(&self, app: &str) -> Result<Vec<NodeReport>, FleetError> {
        let mut nodes = self.nodes().await?;
        nodes.retain(|n| n.app == app);
        Ok(nodes)
    }
}
