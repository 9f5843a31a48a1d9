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
        /// What was being done, e.g. `renaming into place`.
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The OS error.
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
    Locked {
        /// The database file.
        path: PathBuf,
    },

    /// A string is not a valid digest.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The text given, cut to 80 characters.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A string is not a valid release id.
    #[error("invalid release id {input:?}: expected r<number>-<12 hex characters>")]
    InvalidReleaseId {
        /// The text given, cut to 80 characters.
        input: String,
    },

    /// Uploaded bytes do not hash to the digest the uploader announced. Nothing was written.
    #[error(
        "digest mismatch: expected {expected}, the bytes hash to {actual}; nothing was written"
    )]
    DigestMismatch {
        /// The digest the uploader announced.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },

    /// An artifact file exists but its content does not hash to its name (flipped bits,
    /// truncation). It is never returned.
    #[error("artifact {digest} at {} is corrupt: {detail}", path.display())]
    ArtifactCorrupt {
        /// The digest the file is stored under.
        digest: Digest,
        /// The artifact file.
        path: PathBuf,
        /// What its bytes hash to instead.
        detail: String,
    },

    /// No artifact with this digest is stored.
    #[error("artifact {digest} not found at {}", path.display())]
    ArtifactMissing {
        /// The digest looked for.
        digest: Digest,
        /// Where its file would be.
        path: PathBuf,
    },

    /// A release refers to an artifact that is not in the artifact store.
    #[error("module {module:?} refers to artifact {digest}, which is not in the artifact store")]
    ModuleArtifactMissing {
        /// The module id in the release.
        module: String,
        /// The missing artifact.
        digest: Digest,
    },

    /// A release refers to an artifact whose stored bytes do not verify.
    #[error(
        "module {module:?} refers to artifact {digest}, whose stored copy is corrupt: {detail}"
    )]
    ModuleArtifactCorrupt {
        /// The module id in the release.
        module: String,
        /// The artifact whose stored copy is corrupt.
        digest: Digest,
        /// What its bytes hash to instead.
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
        /// The module the snapshot is for.
        module: String,
        /// Size of the snapshot, in bytes.
        size: usize,
        /// The limit, [`MAX_HISTORY_SNAPSHOT`](crate::MAX_HISTORY_SNAPSHOT), in bytes.
        max: usize,
    },

    /// A record in the database does not decode: the database is damaged or was written by
    /// an incompatible version.
    #[error("corrupt record {key} in table {table}: {detail}")]
    CorruptRecord {
        /// The redb table, e.g. `releases`.
        table: &'static str,
        /// The record's key, as text.
        key: String,
        /// What is wrong with the record.
        detail: String,
    },

    /// A record in the database is not the JSON this build writes (damaged, or written by an
    /// incompatible version); the decoder's error is the cause.
    #[error("corrupt record {key} in table {table}")]
    UndecodableRecord {
        /// The redb table, e.g. `releases`.
        table: &'static str,
        /// The record's key, as text.
        key: String,
        /// The JSON decoder's error.
        #[source]
        source: serde_json::Error,
    },

    /// The database was written by a newer, incompatible version of the store.
    #[error("store schema version {found} is not supported (this build reads version {supported})")]
    UnsupportedSchema {
        /// The version recorded in the database.
        found: u32,
        /// The version this build reads and writes ([`SCHEMA_VERSION`](crate::SCHEMA_VERSION)).
        supported: u32,
    },
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
