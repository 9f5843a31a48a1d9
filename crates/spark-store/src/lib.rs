//! The node's embedded store: content-addressed artifacts, immutable releases, the current
//! release and the rollout in progress, the rollout event log, and per-module demand history.
//! Everything a restarted node needs to resume exactly where it was, written so that a kill -9
//! or a power cut at any moment leaves a state the node can serve from.
//!
//! # Tour
//!
//! ```
//! use spark_store::{NewRelease, ReleaseModule, RolloutChange, Store, Transition};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path()).unwrap();
//!
//! // A deploy: upload the component, then record the release.
//! let digest = store.artifacts().put(b"\0asm component bytes").unwrap();
//! let release = store
//!     .create_release(NewRelease {
//!         manifest: "[modules.hello]\n".into(),
//!         modules: vec![ReleaseModule::new("hello", digest.clone())],
//!         author_note: "first deploy".into(),
//!         created_ms: 1_700_000_000_000,
//!     })
//!     .unwrap();
//! assert_eq!(release.number, 1);
//! assert!(release.id.as_str().starts_with("r1-"));
//!
//! // Start serving it and begin a rollout, in one atomic step.
//! store
//!     .commit(Transition {
//!         current: Some(release.id.clone()),
//!         rollout: RolloutChange::Set(b"canary state".to_vec()),
//!     })
//!     .unwrap();
//! assert_eq!(store.current().unwrap(), Some(release.id.clone()));
//! assert_eq!(store.artifacts().get(&digest).unwrap(), b"\0asm component bytes");
//! ```
//!
//! # Concepts
//!
//! - [`ArtifactStore`]: plain files named by SHA-256 ([`Digest`]), written with temp file +
//!   fsync + rename + directory fsync, verified on every read.
//! - [`Store`]: the store directory: a redb database (`spark.redb`) next to `artifacts/`.
//!   [`Store::open_or_reset`] moves a damaged database aside and starts empty.
//! - [`Release`]: an immutable record per deploy, numbered 1, 2, 3, ...; its [`ReleaseId`]
//!   (`r<n>-<hash>`) carries a hash of the manifest and module digests.
//! - [`Transition`]: the pointer to the current release and the opaque rollout bytes change
//!   together in one transaction ([`Store::commit`]).
//! - [`Store::gc`] deletes artifacts of releases that fell out of the newest N (never the
//!   current release's); the records stay, marked by [`Store::rollbackable`].
//! - History ([`Store::put_history`]): opaque per-module snapshots, at most 1 MiB each.
//! - Source records ([`Store::source_records`]): the `stat` stamp and digest of each
//!   component file a manifest names, so an unchanged file is not read or hashed again.
//!
//! What the store assumes about the disk, what is atomic and what survives a crash is in
//! `DESIGN.md` next to this crate's `Cargo.toml`.
//!
//! # Invariants
//!
//! - A file under an artifact's final name was complete and fsynced before it got that name;
//!   bytes are never returned unless they hash to their name.
//! - A release is created only when all its artifacts verify, and is never modified.
//! - The current release always exists and its artifacts are present ([`Store::commit`]
//!   refuses otherwise, and gc never removes them).
//! - Every database mutation is one redb write transaction with immediate durability: when
//!   a call returns `Ok`, its effect survives a crash; when it fails, none of it happened.
//! - The store knows nothing of Wasm, manifests or canary analysis: manifests, rollouts and
//!   history are text or bytes it keeps, not data it interprets.

mod artifacts;
mod data_dir;
mod db;
mod db_file;
mod digest;
mod error;
mod fsutil;
mod gc;
mod history;
mod kv;
mod node_state;
mod release;
mod releases;
mod sources;
mod store;

pub use artifacts::{ArtifactStore, Incoming};
pub use data_dir::{DataDir, load_or_create_secret, random_bytes};
pub use db::{ARTIFACTS_DIR, DB_FILE, SCHEMA_VERSION};
pub use digest::{DIGEST_HEX_LEN, Digest};
pub use error::StoreError;
pub use gc::GcReport;
pub use history::MAX_HISTORY_SNAPSHOT;
pub use kv::{KvLimit, KvLimits, KvUsage, KvWriteError, MAX_KV_KEY};
pub use node_state::{Event, NewEvent, NodeState, RolloutChange, Transition};
pub use release::{
    NewRelease, RELEASE_HASH_LEN, Release, ReleaseId, ReleaseModule, canonical_json,
};
pub use releases::ReleaseCheck;
pub use sources::{FileStamp, RACY_MARGIN, RACY_MARGIN_COARSE, SourceRecord};
pub use store::Store;
