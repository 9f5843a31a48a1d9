//! The node's fleet agent (`spark up --fleet`): a reconciler that makes the node run what the
//! fleet's desired state wants here, a heartbeat, and the fleet-canary planner's driver.
//!
//! The decisions worth knowing:
//! - **Edge autonomy.** The agent is a side task. The node starts from its own store and
//!   serves whether or not NATS answers; the request path never touches the agent. Losing NATS
//!   only pauses reconciliation, which resumes (re-watch from the last revision + 1, plus a
//!   full re-read every tick) when the link returns.
//! - **One deploy path.** Changes are applied through the same [`Deployer`] the admin API
//!   uses, so a fleet deploy gets exactly the validation, canary and crash safety of
//!   `spark deploy`. Artifacts are fetched from the object store, verified, and put in the
//!   node's store (which verifies again) before the deploy sees them.
//! - **Signed releases.** With trusted keys ([`FleetOptions::trusted`]) a release runs only
//!   when a trusted key signed it for this application; a refusal is a rejection like a
//!   failed canary (reported in the heartbeat with its reason, so the fleet rolls back), and
//!   a promotion skips this node's canary only when its intent is signed.
//! - **Every node drives the rollout.** Each tick every node runs the pure planner
//!   ([`spark_fleet::plan::step`]) on the heartbeats and writes a change with compare-and-set
//!   to the rollout-progress bucket (never to the desired state, which only deployers may
//!   write); one write wins, the others re-read and find nothing left to do. So the rollout survives
//!   the operator's CLI exiting and any node dying, without a lease or a leader.
//! - **Fleet-wide key-value stores** ([`kv`]) replicate through one JetStream KV bucket, last
//!   writer wins per key; the guest's write commits locally first and is published after.

mod agent;
mod decide;
mod kv;
mod reconcile;
mod report;

use std::collections::{BTreeMap, BTreeSet};

pub(crate) use agent::Agent;
pub(crate) use report::Reporter;

/// How a node joins a fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// NATS server URL(s), comma-separated.
    pub url: String,
    /// The application this node runs (its key in the desired-state bucket).
    pub app: String,
    /// This node's name in the fleet (see [`persistent_node_id`]).
    pub node_id: String,
    /// `k=v` labels the fleet's canary selectors match.
    pub labels: BTreeMap<String, String>,
    /// Public keys whose signatures this node accepts; with any, unsigned releases (and
    /// unsigned promotions skipping the canaries) are refused. Empty: nothing is checked.
    pub trusted: spark_fleet::TrustedKeys,
    /// How the node authenticates to NATS and checks its certificate.
    pub auth: spark_fleet::FleetAuth,
    /// Copies JetStream keeps of the buckets this node creates (3 on a three-server cluster).
    pub replicas: usize,
}

/// What the agent remembers between ticks (and reports).
#[derive(Debug, Default)]
struct AgentState {
    /// The desired generation last acted on; a new one forgets `rejected`.
    generation: u64,
    rejected: BTreeSet<String>,
    /// A node-level rollout the agent is following: (release id, content key).
    attempt: Option<(String, String)>,
    last_error: Option<String>,
}
