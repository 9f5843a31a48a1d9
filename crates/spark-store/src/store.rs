//! [`Store`]: the node's store directory, opening it, recovering from a damaged database, and
//! running transactions.
//!
//! ```text
//! <dir>/             mode 0700
//!   spark.redb       releases, node pointer + rollout, events, history, source records (redb)
//!   artifacts/ab/…   content-addressed files (ArtifactStore)
//! ```
//!
//! Decision: every write transaction commits with `Durability::Immediate` (redb fsyncs before
//! `commit` returns), and each public mutation is exactly one transaction. The store holds a
//! few kilobytes per deploy and writes rarely, so an fsync per write is cheap, and "the call
//! returned Ok" can mean "it survives a crash" everywhere without exceptions to remember.
//! After an I/O failure (a full disk) redb refuses all further use of that `Database`; the
//! store drops it and opens the file again on the next call, so a node recovers once space
//! is freed, without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, WriteTransaction};

use crate::artifacts::ArtifactStore;
use crate::db::{ARTIFACTS_DIR, DB_FILE, OpenDb, is_damage, move_aside, open_db};
use crate::error::StoreError;
use crate::fsutil;

/// The node's embedded store. Share it behind an `Arc`; every method blocks on disk I/O (a
/// write waits for an fsync), so async callers use `spawn_blocking`.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// `None` after an I/O failure, until the next call reopens the file.
    db: RwLock<Option<OpenDb>>,
    pub(crate) artifacts: ArtifactStore,
    /// Serialises `create_release`, `commit` and `gc`, so a collection cannot delete an
    /// artifact between a release's (or a pointer move's) check of it and its commit.
    artifact_refs: Mutex<()>,
}

impl Store {
    /// Opens the store in `dir`, creating the directory (owner-only), the database and the
    /// artifact store as needed. Fails if the database is damaged (see
    /// [`Store::open_or_reset`]) or another process has it open ([`StoreError::Locked`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let dir = dir.as_ref().to_owned();
        fsutil::create_private_dir(&dir)?;
        let (db, repaired) = open_db(&dir)?;
        if let Some(note) = repaired {
            tracing::warn!("{note}");
        }
        Store::assemble(dir, db)
    }

    /// Like [`Store::open`], but a database that is corrupt or unreadable is moved aside to
    /// `spark.redb.corrupt-<unix ms>` and an empty one started; the returned message says so
    /// (the caller logs it). Artifacts stay. Errors that are not damage to the file are still
    /// errors: a database locked by another process, or an I/O failure such as a full disk
    /// (moving a healthy database aside because the disk is full would lose it for nothing).
    pub fn open_or_reset(dir: impl AsRef<Path>) -> Result<(Store, Option<String>), StoreError> {
        let dir = dir.as_ref().to_owned();
        fsutil::create_private_dir(&dir)?;
        // A damaged file can make the database library panic rather than return an error;
        // on this path that is damage like any other.
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open_db(&dir)))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned());
                Err(StoreError::Database(redb::Error::Corrupted(what)))
            });
        let (db, warning) = match attempt {
            Ok((db, repaired)) => (db, repaired),
            Err(e) if is_damage(&e) => {
                let path = dir.join(DB_FILE);
                let aside = move_aside(&path)?;
                let warning = format!(
                    "store database {} is damaged ({}); moved it aside to {} and started \
                     with an empty store (artifacts were kept)",
                    path.display(),
                    spark_error::chain(&e),
                    aside.display()
                );
                let (db, _) = open_db(&dir)?;
                (db, Some(warning))
            }
            Err(e) => return Err(e),
        };
        Ok((Store::assemble(dir, db)?, warning))
    }

    fn assemble(dir: PathBuf, db: OpenDb) -> Result<Store, StoreError> {
        let artifacts = ArtifactStore::open(dir.join(ARTIFACTS_DIR))?;
        Ok(Store {
            dir,
            db: RwLock::new(Some(db)),
            artifacts,
            artifact_refs: Mutex::new(()),
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The artifact store (for uploads and reads of components).
    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Runs `f` in one write transaction committed with immediate durability. If `f` fails
    /// the transaction is dropped, which aborts it: nothing of it is applied.
    pub(crate) fn write<R>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.with_db(|db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        })
    }

    /// Runs `f` on a read snapshot.
    pub(crate) fn read<R>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.with_db(|db| f(&db.begin_read()?))
    }

    /// Runs `f` on the open database, reopening it first if an earlier I/O failure closed it,
    /// and closing it if `f` fails at the I/O level.
    fn with_db<R>(
        &self,
        f: impl FnOnce(&Database) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            drop(guard);
            self.reopen()?;
            guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        }
        let result = match guard.as_ref() {
            Some(open) => f(&open.db),
            None => return Err(closed()),
        };
        drop(guard);
        if let Err(e) = &result
            && e.requires_reopen()
        {
            tracing::warn!(error = %spark_error::chain(e), "store database failed; it will be reopened on next use");
            // Dropping the failed handle releases the file lock for the reopen.
            drop(self.db.write().unwrap_or_else(|p| p.into_inner()).take());
        }
        result
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let (db, repaired) = open_db(&self.dir)?;
            if let Some(note) = repaired {
                tracing::warn!("{note}");
            }
            *slot = Some(db);
        }
        Ok(())
    }

    /// Held by every operation that creates or drops a reference to an artifact.
    pub(crate) fn lock_artifact_refs(&self) -> MutexGuard<'_, ()> {
        self.artifact_refs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Test hook: makes every further I/O on the database file fail, as a dying disk would.
    #[cfg(test)]
    pub(crate) fn break_db_file(&self) {
        if let Some(open) = self.db.read().unwrap().as_ref() {
            open.file.detach();
        }
    }
}

fn closed() -> StoreError {
    StoreError::Database(redb::Error::DatabaseClosed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewRelease, ReleaseModule, RolloutChange, Transition};

    #[test]
    fn store_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }

    #[test]
    fn an_io_failure_closes_the_database_and_the_next_call_reopens_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.artifacts().put(b"x").unwrap();
        let r = store
            .create_release(NewRelease {
                manifest: "m".into(),
                modules: vec![ReleaseModule::new("a", d)],
                author_note: String::new(),
                created_ms: 0,
            })
            .unwrap();
        store.set_current(&r.id).unwrap();

        store.break_db_file();
        let err = store
            .commit(Transition {
                current: None,
                rollout: RolloutChange::Set(b"lost".to_vec()),
            })
            .unwrap_err();
        assert!(err.requires_reopen(), "{err:?}");
        assert!(store.db.read().unwrap().is_none(), "failed handle kept");

        // The next call reopens the file: committed data is there, the failed write is not,
        // and writes work again.
        assert_eq!(store.current().unwrap(), Some(r.id.clone()));
        assert_eq!(store.rollout().unwrap(), None);
        store.put_rollout(b"after").unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.rollout().unwrap(), Some(b"after".to_vec()));
    }
}
