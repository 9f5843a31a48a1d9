//! Per-module demand history (issue 4): opaque snapshots the predictor serialises itself.
//!
//! Decision: the store bounds each snapshot at [`MAX_HISTORY_SNAPSHOT`] (1 MiB) and refuses a
//! bigger one instead of truncating it. The predictor owns the format, so only it can shrink
//! a snapshot meaningfully (coarser buckets for the distant past); a truncated blob would
//! just fail to decode after the next restart. With a bound per module, the table's size is
//! bounded by the number of modules.

use redb::ReadableTable;

use crate::db::HISTORY;
use crate::error::StoreError;
use crate::store::Store;

/// Largest history snapshot the store accepts for one module, in bytes.
pub const MAX_HISTORY_SNAPSHOT: usize = 1 << 20;

fn check(module: &str, snapshot: &[u8]) -> Result<(), StoreError> {
    if snapshot.len() > MAX_HISTORY_SNAPSHOT {
        return Err(StoreError::HistoryTooLarge {
            module: module.to_owned(),
            size: snapshot.len(),
            max: MAX_HISTORY_SNAPSHOT,
        });
    }
    Ok(())
}

impl Store {
    /// Replaces the module's history snapshot.
    pub fn put_history(&self, module: &str, snapshot: &[u8]) -> Result<(), StoreError> {
        self.put_history_many(&[(module, snapshot)])
    }

    /// Replaces several modules' snapshots in one transaction (one fsync). If any snapshot is
    /// too large, none is written.
    pub fn put_history_many(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        for (module, snapshot) in entries {
            check(module, snapshot)?;
        }
        self.write(|txn| {
            let mut table = txn.open_table(HISTORY)?;
            for (module, snapshot) in entries {
                table.insert(*module, *snapshot)?;
            }
            Ok(())
        })
    }

    /// The module's snapshot, if one was stored.
    pub fn history(&self, module: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(HISTORY)?;
            Ok(table.get(module)?.map(|v| v.value().to_vec()))
        })
    }

    /// Every module's snapshot, sorted by module id.
    pub fn all_history(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(HISTORY)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Deletes the module's snapshot. Returns whether there was one.
    pub fn forget_history(&self, module: &str) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(HISTORY)?;
            let existed = table.remove(module)?.is_some();
            Ok(existed)
        })
    }
}
