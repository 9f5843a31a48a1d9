//! Applying desired state on this node: read where the node stands ([`Local`]), [`decide`],
//! then act through the [`Deployer`] (deploy, switch back, abort). A release the node's canary
//! rolled back, or that cannot be built or whose artifact is damaged, is *rejected*: reported
//! in the heartbeat (which rolls the fleet back) and not retried for this generation.

use spark_error::chain;
use spark_fleet::{DesiredApp, Fleet, FleetError, FleetRelease, plan};
use spark_store::{Digest, Release, StoreError};

use super::agent::Agent;
use super::decide::{Action, Local, Wanted, decide};
use crate::release::deploy::DeployRequest;

/// Why the agent could not put a release's artifacts into the node's store.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// The desired state names something that is not a digest: it will never fetch.
    #[error("artifact {digest:?}")]
    Digest {
        digest: String,
        #[source]
        source: StoreError,
    },
    #[error("caching an artifact")]
    Store(#[source] StoreError),
    #[error("caching an artifact")]
    Task(#[source] tokio::task::JoinError),
    #[error("writing a download to the store")]
    Download(#[source] std::io::Error),
}

impl FetchError {
    /// Whether retrying cannot help (damaged or malformed artifacts): the release is rejected.
    fn rejects(&self) -> bool {
        matches!(
            self,
            FetchError::Fleet(
                FleetError::DigestMismatch { .. } | FleetError::ArtifactTooLarge { .. }
            ) | FetchError::Digest { .. }
        )
    }
}

/// Why the agent could not read where the node stands.
#[derive(Debug, thiserror::Error)]
enum LocalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// The content key of a release in the node's store: the hash part of its id, which is what
/// [`FleetRelease::key`] computes from the fleet's copy.
pub(super) fn release_key(release: &Release) -> String {
    release.id.content_hash().to_owned()
}

impl Agent {
    pub(super) async fn reconcile(&self, fleet: &Fleet, desired: &DesiredApp) {
        let node = &self.options.node_id;
        let wanted = desired.release_for(node);
        let returning = plan::target_for(&desired.rollout, node) == plan::Target::Previous;
        let local = match self.local(desired.generation).await {
            Ok(local) => local,
            Err(e) => return self.failed(format!("reading the node's store: {}", chain(&e))),
        };
        let key = wanted.map(FleetRelease::key);
        let wanted_here = Wanted {
            key: key.as_deref(),
            returning,
            forced: desired.rollout.forced && !returning && self.promotion_signed(desired),
        };
        let action = decide(wanted_here, &local);
        let (Some(release), Some(key)) = (wanted, key) else {
            return;
        };
        match action {
            Action::Idle | Action::Wait => {}
            Action::Promote => match self.deployer.promote("fleet").await {
                Ok(_) => tracing::info!(
                    "fleet: promoted the node's canary (the fleet rollout was promoted)"
                ),
                Err(e) => self.failed(format!("promoting the node's canary: {}", chain(&e))),
            },
            Action::Abort => {
                self.state.lock().expect("agent state").attempt = None;
                let _ = self.deployer.abort("fleet").await;
            }
            Action::Switch(id) => match self.deployer.rollback(Some(&id)).await {
                Ok(_) => tracing::info!(release = %id, "fleet: switched back"),
                Err(e) => self.failed(format!("switching to {id}: {}", chain(&e))),
            },
            Action::Deploy => self.deploy(fleet, desired, release, key).await,
        }
    }

    /// Where the node stands, after noting what became of a rollout the agent followed.
    async fn local(&self, generation: u64) -> Result<Local, LocalError> {
        let status = self.deployer.rollout_status().await;
        let store = self.deployer.store().clone();
        let releases =
            tokio::task::spawn_blocking(move || -> Result<Vec<(Release, bool)>, StoreError> {
                let list = store.releases()?;
                Ok(list
                    .into_iter()
                    .map(|r| {
                        let ok = store.rollbackable(&r.id).unwrap_or(false);
                        (r, ok)
                    })
                    .collect())
            })
            .await??;
        let key_of = |id: &str| {
            releases
                .iter()
                .find(|(r, _)| r.id.as_str() == id)
                .map(|(r, _)| release_key(r))
        };
        let rolling_to = status
            .rollout
            .as_ref()
            .and_then(|r| key_of(&r.to).map(|k| (r.to.clone(), k)));
        let mut state = self.state.lock().expect("agent state");
        if state.generation != generation {
            state.generation = generation;
            state.rejected.clear();
            state.last_error = None;
        }
        if let Some((id, key)) = state.attempt.clone()
            && rolling_to.as_ref().map(|(to, _)| to) != Some(&id)
        {
            state.attempt = None;
            if status.current != id {
                tracing::warn!(release = %id, "fleet: the node's canary rolled the release back");
                state.last_error = Some(format!(
                    "release {id} was rolled back by this node's canary"
                ));
                state.rejected.insert(key);
            }
        }
        if state.attempt.is_none() {
            state.attempt = rolling_to.clone();
        }
        Ok(Local {
            current_key: key_of(&status.current),
            rolling_to,
            switchable: releases
                .iter()
                .filter(|(_, ok)| *ok)
                .map(|(r, _)| (r.id.as_str().to_owned(), release_key(r)))
                .collect(),
            rejected: state.rejected.clone(),
        })
    }

    async fn deploy(
        &self,
        fleet: &Fleet,
        desired: &DesiredApp,
        release: &FleetRelease,
        key: String,
    ) {
        if let Err(refusal) = self.options.trusted.verify_release(&desired.app, release) {
            return self.refuse(
                key.clone(),
                format!("release {key} refused: {refusal}"),
                true,
            );
        }
        if let Err(e) = self.fetch(fleet, release).await {
            let reject = e.rejects();
            return self.refuse(key, format!("fetching artifacts: {}", chain(&e)), reject);
        }
        let request = DeployRequest {
            manifest: release.manifest.clone(),
            components: release.components.clone(),
            note: format!("fleet: {} generation {}", desired.app, desired.generation),
        };
        match self.deployer.deploy(request).await {
            Ok(outcome) => {
                tracing::info!(release = %outcome.release, action = %outcome.action, "fleet: deployed");
                let mut state = self.state.lock().expect("agent state");
                state.last_error = None;
                if outcome.action == "rollout" {
                    state.attempt = Some((outcome.release, key));
                }
            }
            // Refused for what the release is (422): retrying this generation cannot help.
            Err(e) if e.status() == 422 => {
                self.refuse(key, format!("deploy refused: {}", chain(&e)), true)
            }
            Err(e) => self.failed(format!("deploy: {}", chain(&e))),
        }
    }

    /// Puts every artifact of `release` the node lacks into its store, verified.
    async fn fetch(&self, fleet: &Fleet, release: &FleetRelease) -> Result<(), FetchError> {
        for digest in release.components.values() {
            let parsed = Digest::parse(digest).map_err(|source| FetchError::Digest {
                digest: digest.clone(),
                source,
            })?;
            if self.deployer.store().artifacts().contains(&parsed) {
                continue;
            }
            // Streamed to a temporary file in the store (never whole in memory), capped,
            // then verified again by the store as it moves into place.
            let artifacts = self.deployer.store().artifacts().clone();
            let incoming = artifacts.incoming().map_err(FetchError::Store)?;
            let file = incoming.file().map_err(FetchError::Download)?;
            let mut file = tokio::fs::File::from_std(file);
            fleet
                .fetch_artifact_to(digest, &mut file, spark_fleet::MAX_ARTIFACT_BYTES)
                .await?;
            drop(file);
            tokio::task::spawn_blocking(move || artifacts.adopt(incoming, &parsed))
                .await
                .map_err(FetchError::Task)?
                .map_err(FetchError::Store)?;
        }
        Ok(())
    }

    /// Whether a promotion may skip this node's canary: always without trusted keys; with
    /// them, only when a trusted key signed the promote intent for this generation.
    fn promotion_signed(&self, desired: &DesiredApp) -> bool {
        if !self.options.trusted.enforced() {
            return true;
        }
        let verdict = match &desired.intent {
            Some(intent) if intent.action == "promote" => {
                self.options
                    .trusted
                    .verify_intent(&desired.app, intent, desired.generation)
            }
            _ => Err(spark_fleet::SignatureRefusal::Unsigned),
        };
        match verdict {
            Ok(()) => true,
            Err(refusal) => {
                let reason = format!(
                    "promotion of generation {} not applied here: {refusal}; the node's canary decides",
                    desired.generation
                );
                let mut state = self.state.lock().expect("agent state");
                if state.last_error.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(%reason, "fleet: unsigned promotion");
                    state.last_error = Some(reason);
                }
                false
            }
        }
    }

    fn refuse(&self, key: String, reason: String, reject: bool) {
        tracing::warn!(%reason, "fleet: cannot apply the desired release");
        let mut state = self.state.lock().expect("agent state");
        if reject {
            state.rejected.insert(key);
        }
        state.last_error = Some(reason);
    }

    fn failed(&self, reason: String) {
        tracing::warn!(%reason, "fleet: reconcile failed; retrying");
        self.state.lock().expect("agent state").last_error = Some(reason);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use spark_fleet::FleetRelease;
    use spark_store::{NewRelease, ReleaseModule, Store};

    use super::release_key;

    #[test]
    fn the_fleet_key_is_the_hash_in_the_node_release_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let api = store.artifacts().put(b"\0asm api").unwrap();
        let web = store.artifacts().put(b"\0asm web").unwrap();
        let manifest = "version = 1\n# \"quoted\" and \\ escaped\n".to_owned();
        let release = store
            .create_release(NewRelease {
                manifest: manifest.clone(),
                // Out of order on purpose: both sides sort by module id.
                modules: vec![
                    ReleaseModule::new("web", web.clone()),
                    ReleaseModule::new("api", api.clone()),
                ],
                author_note: String::new(),
                created_ms: 0,
            })
            .unwrap();
        let fleet = FleetRelease {
            manifest,
            components: BTreeMap::from([
                ("api".to_owned(), api.as_str().to_owned()),
                ("web".to_owned(), web.as_str().to_owned()),
            ]),
            note: "not part of the key".into(),
            signature: None,
        };
        assert_eq!(fleet.key(), release_key(&release));
        assert!(release.id.as_str().ends_with(&fleet.key()));
    }
}
