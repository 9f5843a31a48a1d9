//! [`DbFile`]: redb's own file backend (with its exclusive lock), behind a handle the store
//! can *detach*, closing the file and releasing the lock while the `Database` still exists.
//!
//! Decision: this exists for one path. When redb's integrity check fails, the `Database`
//! value is left in a state whose `Drop` panics (redb 3.1 commits on drop and asserts the
//! file needs no recovery). The store therefore detaches the file and forgets the
//! `Database` (a few kilobytes of memory, once per damaged file) instead of dropping it. A
//! leaked handle that still held the file lock would make the same process's next open of
//! the directory fail as "locked", which is why the lock must be released separately.

use std::fs::File;
use std::io;
use std::sync::{Arc, RwLock};

use redb::StorageBackend;
use redb::backends::FileBackend;

/// A shareable, detachable [`FileBackend`].
#[derive(Debug, Clone)]
pub(crate) struct DbFile(Arc<RwLock<Option<FileBackend>>>);

impl DbFile {
    /// Wraps `file`, taking redb's exclusive lock on it (`DatabaseAlreadyOpen` if held).
    pub(crate) fn new(file: File) -> Result<DbFile, redb::DatabaseError> {
        Ok(DbFile(Arc::new(RwLock::new(Some(FileBackend::new(file)?)))))
    }

    /// Releases the lock and closes the file; later I/O through any clone fails.
    pub(crate) fn detach(&self) {
        let taken = self.0.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(backend) = taken {
            let _ = backend.close();
        }
    }

    fn with<R>(&self, f: impl FnOnce(&FileBackend) -> io::Result<R>) -> io::Result<R> {
        match &*self.0.read().unwrap_or_else(|p| p.into_inner()) {
            Some(backend) => f(backend),
            None => Err(io::Error::other("store database file was detached")),
        }
    }
}

impl StorageBackend for DbFile {
    fn len(&self) -> io::Result<u64> {
        self.with(|b| b.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.with(|b| b.read(offset, out))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|b| b.set_len(len))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|b| b.sync_data())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with(|b| b.write(offset, data))
    }

    fn close(&self) -> io::Result<()> {
        self.detach();
        Ok(())
    }
}
