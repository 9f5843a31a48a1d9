//! The admin API's request bodies, as `spark deploy` (or any client) sends them and the node
//! reads them, and the checks of them that need no node: a deploy's manifest and artifact
//! digests, a rollback's release number.
//!
//! The decision worth knowing: what a client controls is parsed and checked here, apart from
//! `spark-node`, so that it can be tested and fuzzed (`fuzz/`, target `admin_bodies`) without
//! building the node and Wasmtime under it. The node's handlers deserialize exactly these
//! types and run exactly these checks before any I/O; what needs the node (is the artifact
//! uploaded? does the release exist?) stays with the `Deployer`. Responses are built from node
//! state and stay with the handlers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spark_manifest::{ComponentRef, Manifest, ManifestError, ModuleSpec};
use spark_store::{Digest, StoreError};

#[cfg(test)]
mod tests;

/// The body of `POST /v1/deploy`: the manifest text and, for modules whose `component` is a
/// file, the digest of the artifact uploaded for it (`POST /v1/artifacts/{digest}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The manifest's TOML text (errors in it name the file `deployed manifest`).
    pub manifest: String,
    /// Module id -> artifact digest (64 lowercase hex).
    #[serde(default)]
    pub components: BTreeMap<String, String>,
    /// The author's note stored with the release (empty: `deploy`).
    #[serde(default)]
    pub note: String,
}

/// What errors in a deployed manifest name as its file (it has none).
pub const DEPLOYED_MANIFEST: &str = "deployed manifest";

/// A deploy request that passed every check needing no node.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedDeploy {
    /// The parsed, validated manifest.
    pub manifest: Manifest,
    /// Every module of the manifest, in its order, with `component` set to the artifact that
    /// serves it, and that artifact's digest.
    pub modules: Vec<(ModuleSpec, Digest)>,
}

/// Why a deploy request was refused before the node looked at it.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The manifest does not parse or fails validation.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A module's component is a local file and the request gives no digest for it.
    #[error(
        "module '{module}': component {} is a file on your machine: upload it and pass its digest (spark deploy does)",
        path.display()
    )]
    LocalFile {
        /// The module's id.
        module: String,
        /// The file the manifest names.
        path: PathBuf,
    },
    /// The digest given for a module, or its `sha256:` reference, is malformed.
    #[error("module '{module}'")]
    Digest {
        /// The module's id.
        module: String,
        /// Why the digest was refused.
        #[source]
        source: StoreError,
    },
}

impl DeployRequest {
    /// Parses and validates the manifest and gives each module its artifact: the digest in
    /// `components`, else the manifest's own `sha256:` reference. A module naming a file with
    /// no digest given is refused (the file is on the client's machine, not the node's).
    pub fn check(&self) -> Result<CheckedDeploy, RequestError> {
        let manifest = Manifest::parse(&self.manifest, Path::new(DEPLOYED_MANIFEST))?;
        let modules = manifest
            .modules
            .iter()
            .map(|spec| {
                let digest = match (&spec.component, self.components.get(spec.id.as_str())) {
                    (_, Some(digest)) => digest,
                    (ComponentRef::Artifact(digest), None) => digest,
                    (ComponentRef::File(path), None) => {
                        return Err(RequestError::LocalFile {
                            module: spec.id.to_string(),
                            path: path.clone(),
                        });
                    }
                };
                let digest = Digest::parse(digest).map_err(|source| RequestError::Digest {
                    module: spec.id.to_string(),
                    source,
                })?;
                let mut spec = spec.clone();
                spec.component = ComponentRef::Artifact(digest.as_str().to_owned());
                Ok((spec, digest))
            })
            .collect::<Result<_, _>>()?;
        Ok(CheckedDeploy { manifest, modules })
    }
}

/// The body of `POST /v1/rollback`: `{"release": "r3-..."}`, or `{}` (or none) for the release
/// that served before the current one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// The release to go back to (`r3-<hash>`, `r3` or `3`); `None`: the one before the current.
    #[serde(default)]
    pub release: Option<String>,
}

/// The release number a rollback target names: `r3-<hash>`, `r3` or `3` give 3; anything whose
/// leading part is not a number gives none.
pub fn release_number(target: &str) -> Option<u64> {
    target
        .trim_start_matches('r')
        .split('-')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
}

/// The optional body of `POST /v1/rollout/promote` and `/abort`: who asked, for the decision
/// log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Actor {
    /// Who asked, as the decision log records it; `None`: `admin API`.
    #[serde(default)]
    pub by: Option<String>,
}

/// The query of `GET /v1/events`: how many of the newest events (default
/// [`DEFAULT_EVENTS`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsQuery {
    /// How many of the newest events to list.
    #[serde(default = "default_events")]
    pub limit: usize,
}

/// Events `GET /v1/events` lists without a `limit`.
pub const DEFAULT_EVENTS: usize = 50;
/// Most events one `GET /v1/events` lists, whatever `limit` asks: an answer's size is the
/// node's to bound, not the client's.
pub const MAX_EVENTS: usize = 1000;

fn default_events() -> usize {
    DEFAULT_EVENTS
}

impl EventsQuery {
    /// The number of events to list: `limit`, at most [`MAX_EVENTS`].
    pub fn capped(&self) -> usize {
        self.limit.min(MAX_EVENTS)
    }
}

/// One entry of the node's event log (deploys, switches, rollout steps, promotions,
/// rollbacks), as `GET /v1/events` lists them, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// When, in Unix milliseconds (the node's clock).
    pub at_ms: u64,
    /// What happened: `release`, `switch`, `rollout`, `promoted`, `aborted`, ...
    pub kind: String,
    /// The release it concerns, if any.
    pub release: Option<String>,
    /// The node's sentence about it (who asked, the verdict and its evidence).
    pub detail: String,
}
