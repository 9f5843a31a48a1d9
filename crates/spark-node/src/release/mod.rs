//! What the node runs, and how that changes: [`startup`] chooses the release to serve,
//! [`factory`] builds modules exactly as they will serve, [`deploy`] runs deploys, canary
//! rollouts, promotions and rollbacks, and [`fleet`] is the agent that makes the node follow
//! a fleet's desired state through that same deployer.
//!
//! The decision worth knowing: every change of release ends in one store transaction
//! followed by one snapshot publication, so a node killed at any point restarts on the old
//! state or the new one, and the data plane sees exactly one version per request.

pub(crate) mod deploy;
pub(crate) mod factory;
pub(crate) mod fleet;
pub(crate) mod startup;
