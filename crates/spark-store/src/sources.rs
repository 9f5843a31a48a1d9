//! Source records: what each component file a manifest names looked like when the node last
//! hashed it (size, modification and change times, inode, device), with the digest it hashed
//! to. A node restarted on an unchanged manifest then knows every component's digest from one
//! `stat` per file, without reading or hashing the file or its stored copy again: a restart
//! costs what changed, not what is registered.
//!
//! Decision: a file is trusted only if *nothing* `stat` reports about it changed. Any write
//! moves the modification time, and the change time (which no tool can set back) moves with
//! every write, `touch` and `chmod`; a replaced file has another inode. Two guards keep the
//! record honest: a record is made only if the file's stamp was the same before and after it
//! was read (it was not being written meanwhile), and only if the file was last modified well
//! before the read started ([`RACY_MARGIN`]): otherwise a write in the same timestamp tick
//! as the read could change the bytes without changing the stamp (git's "racily clean"
//! problem). Such a file is simply hashed again on the next start, which then records it.
//! The stored copy is trusted once verified (it was verified when stored); its size is still
//! compared. To re-verify everything, touch the component files.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::Store;

/// Absolute source path -> JSON [`SourceRecord`].
pub(crate) const SOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("sources");

/// How long before a read a file must have been last modified for its stamp to be recorded,
/// when its times have sub-second precision: far above the kernel's timestamp tick (a few
/// milliseconds). Whole-second times (a file system without finer ones) need
/// [`RACY_MARGIN_COARSE`].
pub const RACY_MARGIN: Duration = Duration::from_millis(100);

/// As [`RACY_MARGIN`], for times in whole seconds (FAT's are even two seconds).
pub const RACY_MARGIN_COARSE: Duration = Duration::from_secs(3);

/// What `stat` says about a file, as far as its content is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Size in bytes.
    pub len: u64,
    /// Modification time: seconds since the Unix epoch.
    pub mtime_s: i64,
    /// Modification time: the nanoseconds within that second.
    pub mtime_ns: u32,
    /// Status change time (set by the kernel on every write, rename, `touch` or chmod):
    /// seconds since the Unix epoch.
    pub ctime_s: i64,
    /// Status change time: the nanoseconds within that second.
    pub ctime_ns: u32,
    /// Inode number (another file put in its place has another).
    pub ino: u64,
    /// Device the file is on.
    pub dev: u64,
}

impl FileStamp {
    /// The stamp of a file's metadata (`None` where the platform has no inode and change
    /// time: there every file is hashed on every start).
    pub fn of(meta: &std::fs::Metadata) -> Option<FileStamp> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Some(FileStamp {
                len: meta.len(),
                mtime_s: meta.mtime(),
                mtime_ns: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
                ctime_s: meta.ctime(),
                ctime_ns: u32::try_from(meta.ctime_nsec()).unwrap_or(0),
                ino: meta.ino(),
                dev: meta.dev(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }

    /// The later of the modification and change times.
    fn changed_at(&self) -> SystemTime {
        let at = |s: i64, ns: u32| {
            let since = Duration::new(s.unsigned_abs(), ns);
            if s >= 0 {
                UNIX_EPOCH + since
            } else {
                UNIX_EPOCH - since
            }
        };
        at(self.mtime_s, self.mtime_ns).max(at(self.ctime_s, self.ctime_ns))
    }

    /// Whether a write right after a read that started at `read_started` could leave this
    /// stamp as it is.
    fn racy(&self, read_started: SystemTime) -> bool {
        let margin = if self.mtime_ns == 0 && self.ctime_ns == 0 {
            RACY_MARGIN_COARSE
        } else {
            RACY_MARGIN
        };
        match read_started.duration_since(self.changed_at()) {
            Ok(age) => age < margin,
            // Changed "after" the read started: a clock step, or a write during it.
            Err(_) => true,
        }
    }
}

/// A component file's stamp when it was hashed, and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The file's stamp when it was read.
    pub stamp: FileStamp,
    /// What its bytes hashed to: the artifact the store holds for it.
    pub digest: Digest,
}

impl SourceRecord {
    /// The record to keep for a file hashed to `digest`, whose stamp was `before` when it was
    /// opened and `after` once read, the read having started at `read_started`; `None` if the
    /// file changed while it was read or so recently that a change could go unseen (it is
    /// hashed again next time).
    pub fn observed(
        before: FileStamp,
        after: FileStamp,
        read_started: SystemTime,
        digest: Digest,
    ) -> Option<SourceRecord> {
        (before == after && !before.racy(read_started)).then_some(SourceRecord {
            stamp: before,
            digest,
        })
    }

    /// The digest of a file whose stamp is `now`, if this record still vouches for it: the
    /// file's stamp is exactly as recorded and the store holds a copy of the recorded size
    /// (`stored_len`). Anything else, and the file must be read and hashed.
    pub fn trusted(&self, now: &FileStamp, stored_len: Option<u64>) -> Option<&Digest> {
        (self.stamp == *now && stored_len == Some(self.stamp.len)).then_some(&self.digest)
    }
}

impl Store {
    /// Every source record, by path. A record that does not decode (written by another
    /// version, or damaged) is left out: its file is hashed again and the record replaced.
    pub fn source_records(&self) -> Result<HashMap<String, SourceRecord>, StoreError> {
        self.read(|txn| {
            let table = match txn.open_table(SOURCES) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
                Err(e) => return Err(e.into()),
            };
            let mut records = HashMap::new();
            for entry in table.iter()? {
                let (path, bytes) = entry?;
                if let Ok(record) = serde_json::from_slice::<SourceRecord>(bytes.value()) {
                    records.insert(path.value().to_owned(), record);
                }
            }
            Ok(records)
        })
    }

    /// Sets the source records, in one transaction: `records` are written, and every other
    /// path not in `keep` is forgotten (so the table holds what the last start named).
    pub fn update_source_records(
        &self,
        records: &[(String, SourceRecord)],
        keep: &HashSet<String>,
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(SOURCES)?;
            table.retain(|path, _| keep.contains(path))?;
            for (path, record) in records {
                table.insert(path.as_str(), crate::db::encode(record).as_slice())?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(mtime_s: i64, mtime_ns: u32) -> FileStamp {
        FileStamp {
            len: 100,
            mtime_s,
            mtime_ns,
            ctime_s: mtime_s,
            ctime_ns: mtime_ns,
            ino: 7,
            dev: 1,
        }
    }

    fn at(s: u64, ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms)
    }

    #[test]
    fn an_unchanged_file_is_trusted_without_reading_it() {
        let digest = Digest::of(b"component");
        let old = stamp(1_000, 5);
        let record = SourceRecord::observed(old, old, at(2_000, 0), digest.clone()).unwrap();
        assert_eq!(record.trusted(&old, Some(100)), Some(&digest));
    }

    #[test]
    fn any_change_in_the_stamp_or_the_stored_copy_means_hashing_again() {
        let digest = Digest::of(b"component");
        let old = stamp(1_000, 5);
        let record = SourceRecord::observed(old, old, at(2_000, 0), digest).unwrap();
        let changes = [
            FileStamp { len: 101, ..old },
            FileStamp { mtime_ns: 6, ..old },
            FileStamp {
                // Same bytes count and mtime set back by a tool: the change time still moved.
                ctime_s: 1_500,
                ..old
            },
            FileStamp { ino: 8, ..old },
            FileStamp { dev: 2, ..old },
        ];
        for now in changes {
            assert_eq!(record.trusted(&now, Some(100)), None, "{now:?}");
        }
        assert_eq!(record.trusted(&old, None), None, "stored copy gone");
        assert_eq!(
            record.trusted(&old, Some(99)),
            None,
            "stored copy truncated"
        );
    }

    #[test]
    fn a_file_changing_or_changed_just_before_the_read_is_not_recorded() {
        let digest = Digest::of(b"component");
        let old = stamp(1_000, 5);
        let moved = FileStamp { len: 120, ..old };
        assert!(SourceRecord::observed(old, moved, at(2_000, 0), digest.clone()).is_none());
        // Modified 50 ms before the read started: a write in the same tick could go unseen.
        let fresh = stamp(2_000, 0);
        let fresh = FileStamp {
            mtime_ns: 1,
            ..fresh
        };
        assert!(SourceRecord::observed(fresh, fresh, at(2_000, 50), digest.clone()).is_none());
        assert!(SourceRecord::observed(fresh, fresh, at(2_000, 500), digest.clone()).is_some());
        // Whole-second times: seconds of margin.
        let coarse = stamp(2_000, 0);
        assert!(SourceRecord::observed(coarse, coarse, at(2_001, 0), digest.clone()).is_none());
        assert!(SourceRecord::observed(coarse, coarse, at(2_010, 0), digest.clone()).is_some());
        // A file dated in the future (clock stepped back): never recorded.
        let future = stamp(3_000, 5);
        assert!(SourceRecord::observed(future, future, at(2_000, 0), digest).is_none());
    }

    #[test]
    fn records_round_trip_and_paths_no_longer_named_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.source_records().unwrap().is_empty());
        let record = |n: u8| SourceRecord {
            stamp: stamp(1_000, u32::from(n)),
            digest: Digest::of(&[n]),
        };
        let none = HashSet::new();
        store
            .update_source_records(&[("/a".into(), record(1)), ("/b".into(), record(2))], &none)
            .unwrap();
        let keep: HashSet<String> = ["/a".to_owned()].into();
        store
            .update_source_records(&[("/c".into(), record(3))], &keep)
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let records = store.source_records().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records["/a"], record(1));
        assert_eq!(records["/c"], record(3));
    }
}
