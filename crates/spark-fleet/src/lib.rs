//! Spark's fleet: many nodes kept on one desired state through NATS JetStream, an existing,
//! proven engine, rather than consensus of our own.
//!
//! What lives where in JetStream:
//!
//! | bucket | kind | holds |
//! |---|---|---|
//! | [`DESIRED_BUCKET`] | KV, history kept | per application: the release it should run and its fleet rollout ([`DesiredApp`]) |
//! | [`ROLLOUTS_BUCKET`] | KV, history kept | per application: how far the nodes took its rollout ([`RolloutProgress`]) |
//! | [`NODES_BUCKET`] | KV, entries expire | per node: its heartbeat and telemetry ([`NodeReport`]) |
//! | [`KV_BUCKET`] | KV, last value per key | entries of fleet-wide key-value stores ([`replicated`]) |
//! | [`ARTIFACTS_BUCKET`] | Object Store | components, named by the SHA-256 of their bytes |
//!
//! The decisions worth knowing:
//! - Desired state changes **only by compare-and-set** on the key's revision
//!   ([`Fleet::put_desired`]): two writers that read the same revision cannot both win; the
//!   loser gets [`FleetError::Conflict`] and nothing is written.
//! - **Deployers and nodes write different buckets** ([`progress`]): desired state only
//!   deployers; rollout progress and each node's own heartbeat the nodes. The layout of NATS
//!   permissions that enforces it is in `examples/fleet/nats-accounts.conf`.
//! - **Artifacts are verified on download** ([`Fleet::fetch_artifact`]): bytes that do not hash
//!   to their name are refused, whatever the object store says about them.
//! - **Watches resume** ([`Fleet::watch_desired`]): a JetStream watch can end (a leader change, a
//!   missed heartbeat, a restarted server); the loop opens a new one from the last revision
//!   seen + 1, so no change is skipped and none is seen twice.
//! - **Releases can be signed** ([`signing`]): with trusted keys, a node runs only releases a
//!   trusted Ed25519 key signed for its application (manifest and digests), and skips its
//!   canaries on a person's promotion only when that intent is signed for the generation.
//! - The fleet canary's planning ([`plan`]) is pure: node reports and the rollout in, the next
//!   rollout out; it is tested without NATS and applied with compare-and-set by whoever runs it.

mod artifacts;
mod connect;
mod desired;
mod error;
mod heartbeat;
mod names;
pub mod plan;
pub mod progress;
pub mod release;
pub mod replicated;
pub mod signing;
mod watch;

pub use artifacts::{MAX_ARTIFACT_BYTES, sha256_hex};
pub use connect::{
    ARTIFACTS_BUCKET, DESIRED_BUCKET, Fleet, FleetAuth, FleetConfig, KV_BUCKET, NODES_BUCKET,
    ROLLOUTS_BUCKET, redact_url,
};
pub use desired::{DesiredApp, Versioned};
pub use error::FleetError;
pub use heartbeat::{ModuleHealth, NodeReport, NodeRollout};
pub use names::{check_name, parse_label};
pub use progress::RolloutProgress;
pub use release::FleetRelease;
pub use signing::{Intent, ReleaseSigner, SignatureRefusal, TrustedKeys};
pub use watch::{Change, ProgressChange};
