//! The composition root of a Spark node: it turns a manifest into a serving node.
//!
//! The tree shows the node's planes, as ARCHITECTURE.md draws them:
//! - [`serve`], the data plane: listeners and connections (front-door limits, TLS), the HTTP
//!   front end, route lookup in the current immutable snapshot, admission (per module),
//!   node capacity (slots and memory, by priority class), residency, pacing, the executor
//!   of background guests, and scheduled jobs. It reads what the other planes publish and
//!   never waits on them.
//! - [`control`], the control plane: the orchestrator's loop (probes -> pure policy -> plan
//!   -> actuators), the predictor live (warmth), and the inference host's controls.
//! - [`clock`]: the one clock the control plane and releases read, injected at start
//!   ([`NodeOptions::clock`]); tests drive a [`ManualClock`].
//! - [`release`]: what the node runs and how that changes: startup, module building,
//!   deploys and canary rollouts, and the fleet agent.
//! - [`admin`]: the operator's listener (health, metrics, status, the release API) and its
//!   token.
//!
//! The decision worth knowing: the request path reads one immutable snapshot through an
//! `ArcSwap` and never waits on anything the control side holds; whatever changes the node
//! (startup, deploys, rollouts) publishes a new snapshot.

mod admin;
mod clock;
mod control;
mod node;
#[cfg(test)]
mod offline_tools;
mod release;
mod serve;

pub use admin::dashboard::LoginCode;
pub use admin::dashboard::view::{
    DashboardView, FleetNodeRow, FleetPanel, ModeRow, ModuleRow, OrchestratorPanel,
};
pub use admin::status::{
    FleetKvStatus, KeyValueStatus, ModuleStatus, NodeStatus, OrchestratorStatus, RequestCounts,
};
pub use clock::{Clock, ManualClock};
pub use node::{NodeError, NodeOptions, RunningNode};
pub use release::deploy::{DeployOutcome, DeployRequest, ReleaseSummary, RolloutStatus};
pub use release::fleet::FleetOptions;
pub use serve::jobs::JobOutcome;
pub use serve::loaded::LoadedCodeFigures;
