//! Garbage collection of artifacts no kept release refers to.
//!
//! Decision: release *records* are never deleted, only artifacts. The newest `keep_releases`
//! releases and the current one keep their artifacts; an older release loses them and stays
//! in the history as a record that is no longer rollback-able ([`Store::rollbackable`], and
//! [`Store::commit`] refuses to point the node at it). While a rollout is stored, at least
//! the newest release is kept whatever `keep_releases` says: a deploy is refused while a
//! rollout runs, so the newest release is the canary, and a restart must be able to load it.
//! Files are removed one by one, each durably; a crash mid-collection leaves some garbage
//! that the next run removes, never a kept artifact missing.

use std::collections::BTreeSet;

use crate::digest::Digest;
use crate::error::StoreError;
use crate::release::ReleaseId;
use crate::store::Store;

/// What [`Store::gc`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcReport {
    /// Artifacts deleted.
    pub removed: Vec<Digest>,
    /// Artifacts left in place.
    pub kept: usize,
    /// Releases whose artifacts were protected (newest first, then current if older).
    pub protected: Vec<ReleaseId>,
}

impl Store {
    /// Deletes every artifact not used by the newest `keep_releases` releases or by the
    /// current release (see the module docs for the rollout rule). Artifacts uploaded for a
    /// release that has not been created yet are not referenced, so they are collected too:
    /// the node runs gc between deploys, not during one.
    pub fn gc(&self, keep_releases: usize) -> Result<GcReport, StoreError> {
        let _refs = self.lock_artifact_refs();
        let state = self.state()?;
        let keep = if state.rollout.is_some() {
            keep_releases.max(1)
        } else {
            keep_releases
        };
        let releases = self.releases()?;
        let mut protected: Vec<&crate::Release> = releases.iter().take(keep).collect();
        if let Some(current) = &state.current
            && !protected.iter().any(|r| &r.id == current)
        {
            let release = releases
                .iter()
                .find(|r| &r.id == current)
                .ok_or_else(|| StoreError::UnknownRelease(current.clone()))?;
            protected.push(release);
        }
        let live: BTreeSet<&Digest> = protected
            .iter()
            .flat_map(|r| r.modules.iter().map(|m| &m.digest))
            .collect();
        let mut report = GcReport {
            protected: protected.iter().map(|r| r.id.clone()).collect(),
            ..GcReport::default()
        };
        for digest in self.artifacts.list()? {
            if live.contains(&digest) {
                report.kept += 1;
            } else if self.artifacts.remove(&digest)? {
                report.removed.push(digest);
            }
        }
        Ok(report)
    }
}
