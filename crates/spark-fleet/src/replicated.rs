//! Fleet-wide key-value stores: every entry of a store declared `fleet = true` is one key of
//! the [`KV_BUCKET`](crate::KV_BUCKET) bucket, which keeps the last value per key in the
//! stream's order. Nodes publish their local writes and watch the scopes they serve.
//!
//! The formats, pure and tested here:
//! - **Key**: `s<hex scope>.k<hex key>`. JetStream KV keys allow only `[-/_=.A-Za-z0-9]` and use
//!   `.` as a separator, so both parts are hex-encoded (a key of the node's longest, 1024
//!   bytes, makes a 2 KiB subject); the `s`/`k` prefixes keep empty parts valid tokens.
//! - **Value**: a 3-byte header (format `1`, kind: `0` value or `1` deleted, the origin node
//!   id's length), the origin node id, then the value. A delete is a put of a tombstone, so it
//!   carries its origin like a write and the bucket's last entry for a key says who wrote it.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::{Fleet, FleetError};

const FORMAT: u8 = 1;
const REWATCH_DELAY: Duration = Duration::from_millis(250);

/// One entry of a fleet-wide store, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// `<application>/<label>`.
    pub scope: String,
    /// The key in the store.
    pub key: String,
    /// The value; `None`: deleted.
    pub value: Option<Vec<u8>>,
    /// The node that wrote it.
    pub origin: String,
    /// Its revision in the bucket (0 before it is published).
    pub revision: u64,
}

/// The bucket key of `key` in `scope`.
pub fn bucket_key(scope: &str, key: &str) -> String {
    format!("{}.k{}", scope_prefix(scope), hex::encode(key))
}

/// The prefix every bucket key of `scope` starts with (before the `.`).
pub fn scope_prefix(scope: &str) -> String {
    format!("s{}", hex::encode(scope))
}

/// `(scope, key)` from a bucket key; `None` for a key this format did not make.
pub fn parse_bucket_key(bucket_key: &str) -> Option<(String, String)> {
    let (scope, key) = bucket_key.split_once('.')?;
    let scope = String::from_utf8(hex::decode(scope.strip_prefix('s')?).ok()?).ok()?;
    let key = String::from_utf8(hex::decode(key.strip_prefix('k')?).ok()?).ok()?;
    Some((scope, key))
}

/// The bytes published for `value` (`None`: a tombstone) written by `origin`.
pub fn encode_value(origin: &str, value: Option<&[u8]>) -> Vec<u8> {
    let origin = &origin.as_bytes()[..origin.len().min(255)];
    let mut out = Vec::with_capacity(3 + origin.len() + value.map_or(0, <[u8]>::len));
    out.push(FORMAT);
    out.push(u8::from(value.is_none()));
    out.push(origin.len() as u8);
    out.extend_from_slice(origin);
    if let Some(value) = value {
        out.extend_from_slice(value);
    }
    out
}

/// `(origin, value)` from published bytes; `None` when they are not in this format.
pub fn decode_value(bytes: &[u8]) -> Option<(String, Option<Vec<u8>>)> {
    let [FORMAT, kind, len, rest @ ..] = bytes else {
        return None;
    };
    let len = usize::from(*len);
    if rest.len() < len {
        return None;
    }
    let origin = std::str::from_utf8(&rest[..len]).ok()?.to_owned();
    match kind {
        0 => Some((origin, Some(rest[len..].to_vec()))),
        1 if rest.len() == len => Some((origin, None)),
        _ => None,
    }
}

impl Fleet {
    /// Publishes `value` of `key` in `scope` (`None`: deleted) as written by `origin`; returns
    /// the entry's revision.
    pub async fn publish_kv(
        &self,
        origin: &str,
        scope: &str,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<u64, FleetError> {
        self.kv
            .put(bucket_key(scope, key), encode_value(origin, value).into())
            .await
            .map_err(|e| FleetError::nats("publishing a key-value entry", e))
    }

    /// Streams the entries of `scope`: the last of each key first, then every change, in the
    /// bucket's order, re-watching from the next revision when a watch ends. Entries not in
    /// this format are skipped with a warning. The task stops when the receiver is dropped.
    pub fn watch_kv(&self, scope: &str) -> mpsc::Receiver<KvEntry> {
        let (tx, rx) = mpsc::channel(256);
        let store = self.kv.clone();
        let filter = format!("{}.>", scope_prefix(scope));
        tokio::spawn(async move {
            tokio::select! {
                _ = rewatch(store, filter, &tx) => {}
                _ = tx.closed() => {}
            }
        });
        rx
    }
}

async fn rewatch(store: kv::Store, filter: String, tx: &mpsc::Sender<KvEntry>) {
    let mut next = 0;
    loop {
        let watch = if next == 0 {
            store.watch_with_history(&filter).await
        } else {
            store.watch_from_revision(&filter, next).await
        };
        match watch {
            Ok(mut watch) => {
                while let Some(item) = watch.next().await {
                    match item {
                        Ok(entry) => {
                            next = entry.revision + 1;
                            let Some(entry) = decode_entry(&entry) else {
                                tracing::warn!(key = %entry.key, "ignoring a key-value entry not in Spark's format");
                                continue;
                            };
                            if tx.send(entry).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::info!(%filter, error = %spark_error::chain(&e), next, "key-value watch ended; watching again from the next revision");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(%filter, error = %spark_error::chain(&e), "cannot watch key-value entries yet")
            }
        }
        tokio::time::sleep(REWATCH_DELAY).await;
    }
}

fn decode_entry(entry: &kv::Entry) -> Option<KvEntry> {
    let (scope, key) = parse_bucket_key(&entry.key)?;
    let (origin, value) = match entry.operation {
        kv::Operation::Put => decode_value(&entry.value)?,
        // A delete or purge made by another client (`nats kv del`): no origin.
        _ => (String::new(), None),
    };
    Some(KvEntry {
        scope,
        key,
        value,
        origin,
        revision: entry.revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_whatever_they_hold() {
        for (scope, key) in [
            ("shop/default", "cart:42"),
            ("a/b", ""),
            ("x/y", "dots.and spaces/*>"),
            ("ü/∑", "\u{0}"),
        ] {
            let k = bucket_key(scope, key);
            assert!(
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'),
                "{k}"
            );
            assert!(k.starts_with(&format!("{}.", scope_prefix(scope))));
            assert_eq!(
                parse_bucket_key(&k),
                Some((scope.to_owned(), key.to_owned()))
            );
        }
        for hostile in ["", "nodot", "s00.x", "szz.k00", "sff.kff", "x61.k61"] {
            assert_eq!(parse_bucket_key(hostile), None, "{hostile}");
        }
    }

    #[test]
    fn values_and_tombstones_carry_their_origin() {
        let v = encode_value("node-a", Some(b"hello"));
        assert_eq!(
            decode_value(&v),
            Some(("node-a".into(), Some(b"hello".to_vec())))
        );
        let empty = encode_value("n", Some(b""));
        assert_eq!(decode_value(&empty), Some(("n".into(), Some(Vec::new()))));
        let t = encode_value("node-b", None);
        assert_eq!(decode_value(&t), Some(("node-b".into(), None)));
        for hostile in [
            &b""[..],
            &[2, 0, 0],
            &[1, 0, 9, b'a'],
            &[1, 1, 1, b'a', b'x'],
            &[1, 7, 0],
            &[1, 0, 1, 0xff],
        ] {
            assert_eq!(decode_value(hostile), None, "{hostile:?}");
        }
    }
}
