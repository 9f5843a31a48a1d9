//! [`StoreError`]: the one error type of the crate.
//!
//! Decision: integrity failures are their own variants ([`StoreError::ArtifactCorrupt`],
//! [`StoreError::DigestMismatch`], [`StoreError::CorruptRecord`]) naming the digest and the
//! path, never folded into a generic I/O error, so the node can tell "the disk lied" from
//! "the disk failed" and say which file to look at. As everywhere in Spark, `Display` says
//! what failed and `source()` is the cause (print both with `spark_error::chain`).

use std::path::PathBuf;

use crate::digest::Digest;
use crate::release::ReleaseId;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed (including a full disk).
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The operating system's random source failed while a secret was being made.
    #[error("reading the operating system's random source")]
    Random(#[source] getrandom::Error),

    /// The embedded database reported an error.
    #[error("store database")]
    Database(#[from] redb::Error),

    /// Another process (or another `Store` in this one) holds the database.
    #[error("store database {} is already open (another node running on this data directory?)", path.display())]
    Locked { path: PathBuf },

    /// A string is not a valid digest.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },

    /// A string is not a valid release id.
    #[error("invalid release id {input:?}: expected r<number>-<12 hex characters>")]
    InvalidReleaseId { input: String },

    /// Uploaded bytes do not hash to the digest the uploader announced. Nothing was written.
    #[error(
        "digest mismatch: expected {expected}, the bytes hash to {actual}; nothing was written"
    )]
    DigestMismatch { expected: Digest, actual: Digest },

    /// An artifact file exists but its content does not hash to its name (flipped bits,
    /// truncation). It is never returned.
    #[error("artifact {digest} at {} is corrupt: {detail}", path.display())]
    ArtifactCorrupt {
        digest: Digest,
        path: PathBuf,
        detail: String,
    },

    /// No artifact with this digest is stored.
    #[error("artifact {digest} not found at {}", path.display())]
    ArtifactMissing { digest: Digest, path: PathBuf },

    /// A release refers to an artifact that is not in the artifact store.
    #[error("module {module:?} refers to artifact {digest}, which is not in the artifact store")]
    ModuleArtifactMissing { module: String, digest: Digest },

    /// A release refers to an artifact whose stored bytes do not verify.
    #[error(
        "module {module:?} refers to artifact {digest}, whose stored copy is corrupt: {detail}"
    )]
    ModuleArtifactCorrupt {
        module: String,
        digest: Digest,
        detail: String,
    },

    /// A new release lists the same module twice, or a module with an empty id.
    #[error("invalid release: {0}")]
    InvalidRelease(String),

    /// No release with this id exists.
    #[error("unknown release {0}")]
    UnknownRelease(ReleaseId),

    /// A history snapshot is over the size bound.
    #[error(
        "history snapshot for module {module:?} is {size} bytes, over the limit of {max} bytes"
    )]
    HistoryTooLarge {
        module: String,
        size: usize,
        max: usize,
    },

    /// A record in the database does not decode: the database is damaged or was written by
    /// an incompatible version.
    #[error("corrupt record {key} in table {table}: {detail}")]
    CorruptRecord {
        table: &'static str,
        key: String,
        detail: String,
    },

    /// A record in the database is not the JSON this build writes (damaged, or written by an
    /// incompatible version); the decoder's error is the cause.
    #[error("corrupt record {key} in table {table}")]
    UndecodableRecord {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },

    /// The database was written by a newer, incompatible version of the store.
    #[error("store schema version {found} is not supported (this build reads version {supported})")]
    UnsupportedSchema { found: u32, supported: u32 },
}

impl StoreError {
    /// Whether the database refused or failed a write at the I/O level (a full disk, a
    /// failing device). redb then refuses every further write transaction of this `Store`
    /// until it is dropped and opened again; data already committed is unaffected.
    pub fn requires_reopen(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            )
        )
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.into())
            }
        }
    )*};
}

from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
