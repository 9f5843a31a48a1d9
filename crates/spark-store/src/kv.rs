//! Key-value stores of applications (Spin's `key_value_stores`, `wasi:keyvalue`): each store
//! is a scope (`<application>/<label>`) in one redb table, with its usage (keys, bytes) kept in
//! another table and updated in the same transaction as the data.
//!
//! Decision: the limits are checked inside the write transaction against the usage row, so
//! two writers cannot both pass a check that only one of them fits (redb serialises write
//! transactions). A write that would cross a limit is refused whole with a [`KvLimit`] saying
//! which one; nothing of it is applied. Like every write of the store, each one is durable when
//! it returns (one fsync). The data is keyed by the application and the label only, never by
//! release or module version: a canary, its stable version and a rolled-back release share it.

use redb::{ReadableTable, TableDefinition};

use crate::error::StoreError;
use crate::store::Store;

/// `(scope, key)` to value.
pub(crate) const KV_DATA: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
/// Scope to `(keys, bytes)`: what [`Store::kv_usage`] reads without scanning.
pub(crate) const KV_USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("kv_usage");

/// Longest key accepted, in bytes.
pub const MAX_KV_KEY: usize = 1024;

/// The bounds of one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// Largest value, in bytes.
    pub max_value_size: u64,
    /// Most keys.
    pub max_keys: u64,
    /// Most bytes of keys and values together.
    pub max_bytes: u64,
}

/// How full a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct KvUsage {
    /// Keys it holds.
    pub keys: u64,
    /// Bytes of keys and values it holds.
    pub bytes: u64,
}

/// Which limit a write would cross (the message is what the guest is told).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvLimit {
    /// The value alone is over `max_value_size`.
    #[error("a value of {size} bytes is over the store's limit of {max} bytes per value")]
    ValueTooLarge {
        /// The value's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The key is longer than [`MAX_KV_KEY`].
    #[error("a key of {size} bytes is over the limit of {max} bytes per key")]
    KeyTooLong {
        /// The key's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The store holds `max_keys` keys already.
    #[error("the store is full: it holds its limit of {max} keys")]
    TooManyKeys {
        /// The limit.
        max: u64,
    },
    /// The store would hold more than `max_bytes`.
    #[error(
        "the store is over its limit of {max} bytes (it holds {used}; this write needs {more} more)"
    )]
    TooManyBytes {
        /// Bytes held now.
        used: u64,
        /// Bytes this write adds.
        more: u64,
        /// The limit.
        max: u64,
    },
}

/// Why a write failed: a limit, or the store.
#[derive(Debug, thiserror::Error)]
pub enum KvWriteError {
    /// Refused: it would cross a limit.
    #[error(transparent)]
    Limit(#[from] KvLimit),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// The value under `key` in `scope`.
    pub fn kv_get(&self, scope: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let table = match txn.open_table(KV_DATA) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(table.get((scope, key))?.map(|v| v.value().to_vec()))
        })
    }

    /// The size of the value under `key`, without reading it.
    pub fn kv_len(&self, scope: &str, key: &str) -> Result<Option<u64>, StoreError> {
        self.read(|txn| {
            let table = match txn.open_table(KV_DATA) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(table.get((scope, key))?.map(|v| v.value().len() as u64))
        })
    }

    /// Stores `value` under `key`, unless that would cross one of `limits`.
    pub fn kv_set(
        &self,
        scope: &str,
        key: &str,
        value: &[u8],
        limits: &KvLimits,
    ) -> Result<(), KvWriteError> {
        check_sizes(key, value.len() as u64, limits)?;
        let mut refused = None;
        self.write(|txn| {
            let mut data = txn.open_table(KV_DATA)?;
            let mut usage = txn.open_table(KV_USAGE)?;
            let (keys, bytes) = usage.get(scope)?.map_or((0, 0), |v| v.value());
            let old = data.get((scope, key))?.map(|v| v.value().len() as u64);
            let (new_keys, new_bytes) =
                match usage_after((keys, bytes), key, old, value.len() as u64, limits) {
                    Ok(usage) => usage,
                    Err(limit) => {
                        refused = Some(limit);
                        return Ok(());
                    }
                };
            data.insert((scope, key), value)?;
            usage.insert(scope, (new_keys, new_bytes))?;
            Ok(())
        })?;
        match refused {
            Some(limit) => Err(limit.into()),
            None => Ok(()),
        }
    }

    /// Deletes `key`; returns whether it existed.
    pub fn kv_delete(&self, scope: &str, key: &str) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut data = txn.open_table(KV_DATA)?;
            let mut usage = txn.open_table(KV_USAGE)?;
            let Some(old) = data.remove((scope, key))?.map(|v| v.value().len() as u64) else {
                return Ok(false);
            };
            let (keys, bytes) = usage.get(scope)?.map_or((0, 0), |v| v.value());
            let freed = key.len() as u64 + old;
            usage.insert(scope, (keys.saturating_sub(1), bytes.saturating_sub(freed)))?;
            Ok(true)
        })
    }

    /// Up to `max` keys of `scope` in order, starting after `after` (a cursor: the last key of
    /// the previous page).
    pub fn kv_keys(
        &self,
        scope: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let table = match txn.open_table(KV_DATA) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let start = after.unwrap_or("");
            let mut out = Vec::new();
            for entry in table.range((scope, start)..)? {
                let (k, _) = entry?;
                let (s, key) = k.value();
                if s != scope {
                    break;
                }
                if after.is_some_and(|a| a == key) {
                    continue;
                }
                out.push(key.to_owned());
                if out.len() >= max {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Adds `delta` to the number stored under `key` as a little-endian `i64` (absent: 0;
    /// a value of another size is read as decimal text, else 0), atomically; returns the new
    /// number (`wasi:keyvalue/atomics`).
    pub fn kv_increment(
        &self,
        scope: &str,
        key: &str,
        delta: i64,
        limits: &KvLimits,
    ) -> Result<i64, KvWriteError> {
        let mut next = 0;
        self.kv_update(scope, key, limits, |old| {
            let current = match old {
                Some(v) => match <[u8; 8]>::try_from(v) {
                    Ok(b) => i64::from_le_bytes(b),
                    Err(_) => std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0),
                },
                None => 0,
            };
            next = current.wrapping_add(delta);
            Some(next.to_le_bytes().to_vec())
        })?;
        Ok(next)
    }

    /// Stores `value` under `key` only if the key still holds `expected` (`None`: absent);
    /// returns whether it did (`wasi:keyvalue/atomics` `swap`).
    pub fn kv_compare_and_swap(
        &self,
        scope: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        limits: &KvLimits,
    ) -> Result<bool, KvWriteError> {
        check_sizes(key, value.len() as u64, limits)?;
        let mut swapped = false;
        self.kv_update(scope, key, limits, |old| {
            swapped = old == expected;
            swapped.then(|| value.to_vec())
        })?;
        Ok(swapped)
    }

    /// Reads `key`'s value and writes what `f` makes of it (`None`: leave it), in one
    /// transaction, within `limits`.
    fn kv_update(
        &self,
        scope: &str,
        key: &str,
        limits: &KvLimits,
        f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<(), KvWriteError> {
        let mut refused = None;
        self.write(|txn| {
            let mut data = txn.open_table(KV_DATA)?;
            let mut usage = txn.open_table(KV_USAGE)?;
            let (keys, bytes) = usage.get(scope)?.map_or((0, 0), |v| v.value());
            let old = data.get((scope, key))?.map(|v| v.value().to_vec());
            let Some(value) = f(old.as_deref()) else {
                return Ok(());
            };
            if let Err(limit) = check_sizes(key, value.len() as u64, limits) {
                refused = Some(limit);
                return Ok(());
            }
            let old_len = old.as_ref().map(|v| v.len() as u64);
            let (new_keys, new_bytes) =
                match usage_after((keys, bytes), key, old_len, value.len() as u64, limits) {
                    Ok(usage) => usage,
                    Err(limit) => {
                        refused = Some(limit);
                        return Ok(());
                    }
                };
            data.insert((scope, key), value.as_slice())?;
            usage.insert(scope, (new_keys, new_bytes))?;
            Ok(())
        })?;
        match refused {
            Some(limit) => Err(limit.into()),
            None => Ok(()),
        }
    }

    /// How full `scope` is.
    pub fn kv_usage(&self, scope: &str) -> Result<KvUsage, StoreError> {
        self.read(|txn| {
            let table = match txn.open_table(KV_USAGE) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(KvUsage::default()),
                Err(e) => return Err(e.into()),
            };
            Ok(table.get(scope)?.map_or(KvUsage::default(), |v| {
                let (keys, bytes) = v.value();
                KvUsage { keys, bytes }
            }))
        })
    }
}

/// A scope's `(keys, bytes)` once `key` holds a value of `new_len` bytes in place of one of
/// `old_len` (`None`: the key is new), or the limit that write would cross. A write that
/// shrinks the scope is never refused for bytes.
fn usage_after(
    (keys, bytes): (u64, u64),
    key: &str,
    old_len: Option<u64>,
    new_len: u64,
    limits: &KvLimits,
) -> Result<(u64, u64), KvLimit> {
    let key_len = key.len() as u64;
    let (new_keys, new_bytes) = match old_len {
        Some(old) => (keys, bytes - (key_len + old).min(bytes) + key_len + new_len),
        None => (keys + 1, bytes + key_len + new_len),
    };
    if old_len.is_none() && new_keys > limits.max_keys {
        return Err(KvLimit::TooManyKeys {
            max: limits.max_keys,
        });
    }
    if new_bytes > limits.max_bytes && new_bytes > bytes {
        return Err(KvLimit::TooManyBytes {
            used: bytes,
            more: new_bytes - bytes,
            max: limits.max_bytes,
        });
    }
    Ok((new_keys, new_bytes))
}

fn check_sizes(key: &str, value: u64, limits: &KvLimits) -> Result<(), KvLimit> {
    if key.len() > MAX_KV_KEY {
        return Err(KvLimit::KeyTooLong {
            size: key.len(),
            max: MAX_KV_KEY,
        });
    }
    if value > limits.max_value_size {
        return Err(KvLimit::ValueTooLarge {
            size: value,
            max: limits.max_value_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: KvLimits = KvLimits {
        max_value_size: 100,
        max_keys: 3,
        max_bytes: 200,
    };

    #[test]
    fn values_round_trip_and_usage_follows_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.kv_get("app/default", "a").unwrap(), None);
        store.kv_set("app/default", "a", b"one", &LIMITS).unwrap();
        store.kv_set("app/default", "a", b"three", &LIMITS).unwrap();
        store.kv_set("app/other", "a", b"x", &LIMITS).unwrap();
        assert_eq!(store.kv_get("app/default", "a").unwrap().unwrap(), b"three");
        assert_eq!(
            store.kv_usage("app/default").unwrap(),
            KvUsage { keys: 1, bytes: 6 }
        );
        assert!(store.kv_delete("app/default", "a").unwrap());
        assert!(!store.kv_delete("app/default", "a").unwrap());
        assert_eq!(store.kv_usage("app/default").unwrap(), KvUsage::default());
        assert_eq!(store.kv_get("app/other", "a").unwrap().unwrap(), b"x");
    }

    #[test]
    fn limits_refuse_a_write_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let big = vec![0u8; 101];
        assert!(matches!(
            store.kv_set("s", "k", &big, &LIMITS),
            Err(KvWriteError::Limit(KvLimit::ValueTooLarge {
                size: 101,
                ..
            }))
        ));
        for k in ["a", "b", "c"] {
            store.kv_set("s", k, &[1; 60], &LIMITS).unwrap();
        }
        assert!(matches!(
            store.kv_set("s", "d", b"x", &LIMITS),
            Err(KvWriteError::Limit(KvLimit::TooManyKeys { max: 3 }))
        ));
        // 3 * 61 = 183 bytes; growing "a" to 100 bytes would make 223.
        assert!(matches!(
            store.kv_set("s", "a", &[1; 100], &LIMITS),
            Err(KvWriteError::Limit(KvLimit::TooManyBytes { .. }))
        ));
        // Shrinking is always allowed.
        store.kv_set("s", "a", b"", &LIMITS).unwrap();
        assert_eq!(
            store.kv_usage("s").unwrap(),
            KvUsage {
                keys: 3,
                bytes: 123
            }
        );
    }

    #[test]
    fn keys_page_in_order_and_stay_in_their_scope() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let limits = KvLimits {
            max_keys: 100,
            ..LIMITS
        };
        for k in ["c", "a", "b"] {
            store.kv_set("s", k, b"", &limits).unwrap();
        }
        store.kv_set("t", "z", b"", &limits).unwrap();
        assert_eq!(store.kv_keys("s", None, 2).unwrap(), ["a", "b"]);
        assert_eq!(store.kv_keys("s", Some("b"), 2).unwrap(), ["c"]);
        assert_eq!(store.kv_increment("s", "n", 5, &limits).unwrap(), 5);
        assert_eq!(store.kv_increment("s", "n", -7, &limits).unwrap(), -2);
        assert!(
            !store
                .kv_compare_and_swap("s", "a", Some(b"x"), b"y", &limits)
                .unwrap()
        );
        assert!(
            store
                .kv_compare_and_swap("s", "a", Some(b""), b"y", &limits)
                .unwrap()
        );
        assert!(
            store
                .kv_compare_and_swap("s", "new", None, b"z", &limits)
                .unwrap()
        );
        assert_eq!(store.kv_get("s", "a").unwrap().unwrap(), b"y");
    }
}
