//! The database file: its tables, opening and checking it, moving a damaged one aside, and
//! the JSON codec of its records.
//!
//! Decision: opening is also checking. Every open runs redb's full integrity check (every
//! page checksum), then decodes every release and event and checks that the current pointer
//! names an existing release. The database holds kilobytes per deploy (about 25 ms to open
//! 25 MB), so the cost is small, and damage is found at startup, where the node can still
//! decide to reset, rather than in the middle of a rollout.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db_file::DbFile;
use crate::error::StoreError;
use crate::fsutil;
use crate::node_state::Event;
use crate::release::{Release, ReleaseId};

/// File name of the database inside the store directory.
pub const DB_FILE: &str = "spark.redb";
/// Directory name of the artifact store inside the store directory.
pub const ARTIFACTS_DIR: &str = "artifacts";
/// Schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Release number -> JSON [`Release`].
pub(crate) const RELEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("releases");
/// `current` -> release id, `rollout` -> opaque bytes.
pub(crate) const NODE: TableDefinition<&str, &[u8]> = TableDefinition::new("node");
/// Sequence number -> JSON [`Event`].
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Module id -> opaque snapshot.
pub(crate) const HISTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("history");

pub(crate) const KEY_CURRENT: &str = "current";
pub(crate) const KEY_ROLLOUT: &str = "rollout";
pub(crate) const KEY_STARTED_FROM: &str = "started_from";
const KEY_SCHEMA: &str = "schema";

/// An open database and the file handle under it (kept so the file can be detached).
#[derive(Debug)]
pub(crate) struct OpenDb {
    pub(crate) db: Database,
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) file: DbFile,
}

/// Opens or creates the database, verifies every page checksum (redb's `check_integrity`),
/// creates the tables, checks the schema version and decodes every structured record, so
/// damage is found at open rather than mid-rollout. Returns a note if redb had to repair the
/// file (roll back to its last intact commit).
pub(crate) fn open_db(dir: &Path) -> Result<(OpenDb, Option<String>), StoreError> {
    let path = dir.join(DB_FILE);
    let created = !path.exists();
    let locked_or = |e: DatabaseError| match e {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path: path.clone() },
        other => StoreError::Database(other.into()),
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Database(redb::Error::Io(e)))?;
    let handle = DbFile::new(file).map_err(locked_or)?;
    let mut db = Database::builder()
        .create_with_backend(handle.clone())
        .map_err(locked_or)?;
    if created {
        fsutil::sync_dir(dir)?;
    }
    let repaired = match db.check_integrity() {
        Ok(true) => None,
        Err(e) => {
            // See `db_file`: dropping this Database would panic; release the file and the
            // lock, and forget the rest.
            handle.detach();
            std::mem::forget(db);
            return Err(locked_or(e));
        }
        Ok(false) => Some(format!(
            "store database {} failed its integrity check and was repaired to its last intact \
             commit",
            path.display()
        )),
    };
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut meta = txn.open_table(META)?;
        let found = meta.get(KEY_SCHEMA)?.map(|v| v.value());
        match found {
            None => {
                meta.insert(KEY_SCHEMA, u64::from(SCHEMA_VERSION))?;
            }
            Some(v) if v == u64::from(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(StoreError::UnsupportedSchema {
                    found: u32::try_from(v).unwrap_or(u32::MAX),
                    supported: SCHEMA_VERSION,
                });
            }
        }
        txn.open_table(RELEASES)?;
        txn.open_table(NODE)?;
        txn.open_table(EVENTS)?;
        txn.open_table(HISTORY)?;
    }
    txn.commit()?;
    validate(&db)?;
    Ok((OpenDb { db, file: handle }, repaired))
}

/// Whether an error opening the database means the file is damaged or unreadable (so moving
/// it aside is the fix) rather than the environment failing (locked, disk full, I/O error).
pub(crate) fn is_damage(e: &StoreError) -> bool {
    use std::io::ErrorKind;
    match e {
        StoreError::CorruptRecord { .. }
        | StoreError::UndecodableRecord { .. }
        | StoreError::UnsupportedSchema { .. } => true,
        StoreError::Database(db) => match db {
            redb::Error::Corrupted(_)
            | redb::Error::UpgradeRequired(_)
            | redb::Error::RepairAborted
            | redb::Error::TableTypeMismatch { .. }
            | redb::Error::TableIsMultimap(_)
            | redb::Error::TypeDefinitionChanged { .. } => true,
            redb::Error::Io(io) => matches!(
                io.kind(),
                ErrorKind::InvalidData | ErrorKind::UnexpectedEof | ErrorKind::PermissionDenied
            ),
            _ => false,
        },
        _ => false,
    }
}

/// Decodes every release and event and checks that `current` names an existing release.
fn validate(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_read()?;
    let releases = txn.open_table(RELEASES)?;
    for entry in releases.iter()? {
        let (k, v) = entry?;
        let release: Release = decode("releases", k.value(), v.value())?;
        if release.number != k.value() || release.id.number() != k.value() {
            return Err(StoreError::CorruptRecord {
                table: "releases",
                key: k.value().to_string(),
                detail: format!("record {} is stored under number {}", release.id, k.value()),
            });
        }
    }
    for entry in txn.open_table(EVENTS)?.iter()? {
        let (k, v) = entry?;
        decode::<Event>("events", k.value(), v.value())?;
    }
    let node = txn.open_table(NODE)?;
    if let Some(v) = node.get(KEY_CURRENT)? {
        let id = decode_current(v.value())?;
        let stored = releases.get(id.number())?;
        let matches = match stored {
            Some(r) => decode::<Release>("releases", id.number(), r.value())?.id == id,
            None => false,
        };
        if !matches {
            return Err(StoreError::CorruptRecord {
                table: "node",
                key: KEY_CURRENT.into(),
                detail: format!("current release {id} does not exist"),
            });
        }
    }
    Ok(())
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("store records always serialize")
}

pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: impl ToString,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::UndecodableRecord {
        table,
        key: key.to_string(),
        source,
    })
}

pub(crate) fn decode_current(bytes: &[u8]) -> Result<ReleaseId, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| ReleaseId::parse(s).ok())
        .ok_or_else(|| StoreError::CorruptRecord {
            table: "node",
            key: KEY_CURRENT.into(),
            detail: "not a release id".into(),
        })
}

/// Renames a damaged database to `<name>.corrupt-<unix ms>` (with a counter if that exists)
/// and fsyncs the directory. Returns the new path.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| DB_FILE.to_owned());
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut aside = dir.join(format!("{name}.corrupt-{ms}"));
    let mut n = 1;
    while aside.exists() {
        aside = dir.join(format!("{name}.corrupt-{ms}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &aside).map_err(StoreError::io("moving aside", path))?;
    fsutil::sync_dir(dir)?;
    Ok(aside)
}
