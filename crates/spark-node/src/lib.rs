//! The composition root of a Spark node: it turns a manifest into a serving node.
//!
//! Request path: [`front`] (hyper, HTTP/1.1 and HTTP/2) -> route lookup in the current
//! [`state::Snapshot`] -> [`admission`] (per-module concurrency, bounded queue with deadline)
//! -> node [`capacity`] by priority class -> the module's [`spark_runtime::GuestModule`] (on
//! the module's [`executor`], paced by its [`pacing::ModulePacer`]) -> response body streamed
//! back, with the module's slots held until the last byte. Control surfaces: [`admin`]
//! (health, metrics, status, decisions, run-a-job-now) on its own listener, [`jobs`] for
//! scheduled modules, and [`control`], the orchestrator's loop: probes -> policy -> plan ->
//! actuators (shares, caps, pacing), applied live.
//!
//! The decision worth knowing: the request path reads one immutable snapshot through an
//! `ArcSwap` and never waits on anything the control side holds. Whatever changes the node
//! (today: startup; later: deploys and the orchestrator) publishes a new snapshot.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod capacity;
pub mod control;
pub mod deploy;
pub mod executor;
pub mod fleet;
pub mod front;
pub mod jobs;
pub mod latency;
pub mod metrics;
pub mod nn;
pub mod node;
pub mod pacing;
pub mod residency;
pub mod state;
pub mod status;
pub mod versions;
pub mod warmth;

pub use jobs::JobOutcome;
pub use node::{NodeError, NodeOptions, RunningNode};
pub use status::{ModuleStatus, NodeStatus};
