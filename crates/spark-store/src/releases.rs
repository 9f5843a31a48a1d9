//! Creating and reading releases, and checking whether one can still be rolled back to.
//!
//! Decision: releases are keyed by their number, and the next number is read and written in
//! the same write transaction (redb has one writer at a time), so numbers are gap-free and
//! never reused, and "create" can only insert: there is no code path that overwrites a
//! release. A release is created only after every artifact it names has been verified
//! against its digest, so a committed release never points at bytes the store does not have.

use redb::ReadableTable;

use crate::db::{RELEASES, decode, encode};
use crate::error::StoreError;
use crate::release::{
    NewRelease, Release, ReleaseId, ReleaseModule, normalize_modules, release_id,
};
use crate::store::Store;

/// The state of each artifact of a release, from [`Store::verify_release`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReleaseCheck {
    /// Modules whose artifact is gone (collected, or deleted by hand).
    pub missing: Vec<ReleaseModule>,
    /// Modules whose artifact exists but does not hash to its digest.
    pub corrupt: Vec<ReleaseModule>,
}

impl ReleaseCheck {
    /// Every artifact is present and verifies.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

impl Store {
    /// Records a new release with the next number. Refuses if a module id is empty or
    /// repeated, or if any artifact is missing or does not verify (the error names the module
    /// and the digest). Never changes an existing release.
    pub fn create_release(&self, new: NewRelease) -> Result<Release, StoreError> {
        let modules = normalize_modules(new.modules)?;
        let _refs = self.lock_artifact_refs();
        for m in &modules {
            self.check_module(m)?;
        }
        self.write(|txn| {
            let mut table = txn.open_table(RELEASES)?;
            let number = table.last()?.map(|(k, _)| k.value()).unwrap_or(0) + 1;
            let release = Release {
                id: release_id(number, &new.manifest, &modules),
                number,
                created_ms: new.created_ms,
                author_note: new.author_note,
                manifest: new.manifest,
                modules,
            };
            table.insert(number, encode(&release).as_slice())?;
            Ok(release)
        })
    }

    fn check_module(&self, m: &ReleaseModule) -> Result<(), StoreError> {
        match self.artifacts.verify(&m.digest) {
            Ok(()) => Ok(()),
            Err(StoreError::ArtifactMissing { digest, .. }) => {
                Err(StoreError::ModuleArtifactMissing {
                    module: m.id.clone(),
                    digest,
                })
            }
            Err(StoreError::ArtifactCorrupt { digest, detail, .. }) => {
                Err(StoreError::ModuleArtifactCorrupt {
                    module: m.id.clone(),
                    digest,
                    detail,
                })
            }
            Err(other) => Err(other),
        }
    }

    /// The release with this id, if it exists.
    pub fn release(&self, id: &ReleaseId) -> Result<Option<Release>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(RELEASES)?;
            let Some(v) = table.get(id.number())? else {
                return Ok(None);
            };
            let release: Release = decode("releases", id.number(), v.value())?;
            Ok((release.id == *id).then_some(release))
        })
    }

    /// Every release, newest first.
    pub fn releases(&self) -> Result<Vec<Release>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(RELEASES)?;
            let mut out = Vec::new();
            for entry in table.iter()?.rev() {
                let (k, v) = entry?;
                out.push(decode("releases", k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    /// The newest release.
    pub fn latest(&self) -> Result<Option<Release>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(RELEASES)?;
            match table.last()? {
                Some((k, v)) => Ok(Some(decode("releases", k.value(), v.value())?)),
                None => Ok(None),
            }
        })
    }

    /// Whether the node could switch to this release: it exists and all its artifacts are
    /// present (an older release whose artifacts were collected is kept as a record only).
    /// Does not re-hash the files; [`Store::verify_release`] does.
    pub fn rollbackable(&self, id: &ReleaseId) -> Result<bool, StoreError> {
        let release = self
            .release(id)?
            .ok_or_else(|| StoreError::UnknownRelease(id.clone()))?;
        Ok(release.artifacts_present(&self.artifacts))
    }

    /// Reads and hashes every artifact of the release and reports which are missing or
    /// corrupt.
    pub fn verify_release(&self, id: &ReleaseId) -> Result<ReleaseCheck, StoreError> {
        let release = self
            .release(id)?
            .ok_or_else(|| StoreError::UnknownRelease(id.clone()))?;
        let mut check = ReleaseCheck::default();
        for m in release.modules {
            match self.artifacts.verify(&m.digest) {
                Ok(()) => {}
                Err(StoreError::ArtifactMissing { .. }) => check.missing.push(m),
                Err(StoreError::ArtifactCorrupt { .. }) => check.corrupt.push(m),
                Err(other) => return Err(other),
            }
        }
        Ok(check)
    }
}
