//! Fleet-wide key-value stores on a node: the publisher that drains the local write queue
//! into the fleet's `spark-kv` bucket, and one watcher per fleet-wide scope that applies what
//! the bucket holds to the node's store.
//!
//! The decisions worth knowing:
//! - **The data plane never waits.** Guests write the node's store as for any store; the
//!   write is then queued ([`KvReplicas`]) and published here, retried until NATS takes it.
//! - **Last writer wins per key, in the bucket's order.** Every node applies the bucket's
//!   entries in stream order, so all converge on the last entry of each key. A node does not
//!   apply another node's entry for a key while its own write of that key is still pending
//!   (queued or not yet echoed back): that write lands later in the stream and wins, and the
//!   node keeps reading its own write meanwhile.
//! - **Limits hold on every node.** A remote entry is applied within the local store's limits;
//!   one that would cross them is skipped, logged and counted.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use spark_fleet::Fleet;
use spark_fleet::replicated::KvEntry;
use spark_runtime::spin::{KvReplicas, Outgoing};
use spark_store::{KvWriteError, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Pause between attempts to publish while NATS does not answer.
const RETRY: Duration = Duration::from_millis(500);
/// Failed attempts while connected after which an entry is given up.
const MAX_REFUSALS: u32 = 3;

/// Publishes the queued local writes until `shutdown`, each with the key's value as it is
/// when published (absent: a tombstone), retrying while NATS is away.
pub(super) async fn publish(
    fleet: Fleet,
    store: Arc<Store>,
    replicas: Arc<KvReplicas>,
    origin: String,
    mut queue: mpsc::Receiver<Outgoing>,
    shutdown: CancellationToken,
) {
    loop {
        let item = tokio::select! {
            _ = shutdown.cancelled() => return,
            item = queue.recv() => match item {
                Some(item) => item,
                None => return,
            },
        };
        let mut said = false;
        let mut refused = 0;
        loop {
            let value = match store.kv_get(&item.scope, &item.key) {
                Ok(value) => value,
                Err(e) => {
                    tracing::warn!(scope = %item.scope, error = %spark_error::chain(&e), "key-value write not published: the store cannot be read");
                    replicas.settle(&item.scope, &item.key);
                    break;
                }
            };
            match fleet
                .publish_kv(&origin, &item.scope, &item.key, value.as_deref())
                .await
            {
                Ok(_) => break,
                // Connected and still failing: the server refuses this entry (a value over
                // its `max_payload`, a permission); it must not hold up the rest.
                Err(e) if fleet.connected() && refused >= MAX_REFUSALS => {
                    tracing::warn!(scope = %item.scope, error = %spark_error::chain(&e), "key-value write not published: the server refuses it; it stays node-local until the key is written again");
                    replicas.settle(&item.scope, &item.key);
                    break;
                }
                Err(e) => {
                    if fleet.connected() {
                        refused += 1;
                    }
                    if !said {
                        tracing::info!(scope = %item.scope, queued = queue.len(), error = %spark_error::chain(&e), "key-value writes wait for NATS");
                        said = true;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    }
}

/// Watches every fleet-wide scope the node serves (new ones as modules using them are built)
/// and applies their entries until `shutdown`.
pub(super) async fn apply(
    fleet: Fleet,
    store: Arc<Store>,
    replicas: Arc<KvReplicas>,
    origin: String,
    shutdown: CancellationToken,
) {
    let mut watching = BTreeSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        for scope in replicas.scopes().into_keys() {
            if watching.insert(scope.clone()) {
                tracing::info!(%scope, "replicating a fleet-wide key-value store");
                let entries = fleet.watch_kv(&scope);
                let (store, replicas, origin) = (store.clone(), replicas.clone(), origin.clone());
                tasks.spawn(apply_scope(entries, store, replicas, origin));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = replicas.scopes_changed() => {}
        }
    }
    tasks.abort_all();
}

async fn apply_scope(
    mut entries: mpsc::Receiver<KvEntry>,
    store: Arc<Store>,
    replicas: Arc<KvReplicas>,
    origin: String,
) {
    while let Some(entry) = entries.recv().await {
        if replicas.pending(&entry.scope, &entry.key) {
            // A local write of this key is on its way: it lands after this entry and wins.
            if entry.origin == origin {
                replicas.settle(&entry.scope, &entry.key);
            }
            continue;
        }
        let Some(limits) = replicas.scopes().get(&entry.scope).copied() else {
            continue;
        };
        let (s, r) = (store.clone(), replicas.clone());
        let applied = tokio::task::spawn_blocking(move || {
            // Checked again on this thread: a local write may have been queued meanwhile.
            if r.pending(&entry.scope, &entry.key) {
                return (entry, Ok(()));
            }
            let result = match &entry.value {
                Some(value) => s.kv_set(&entry.scope, &entry.key, value, &limits),
                None => s
                    .kv_delete(&entry.scope, &entry.key)
                    .map(drop)
                    .map_err(KvWriteError::from),
            };
            (entry, result)
        })
        .await;
        match applied {
            Ok((_, Ok(()))) => {}
            Ok((entry, Err(KvWriteError::Limit(limit)))) => {
                let refused = replicas.refuse_remote();
                tracing::warn!(scope = %entry.scope, from = %entry.origin, revision = entry.revision, refused, reason = %limit, "a fleet key-value write is over this node's limits: not applied");
            }
            Ok((entry, Err(KvWriteError::Store(e)))) => {
                tracing::warn!(scope = %entry.scope, revision = entry.revision, error = %spark_error::chain(&e), "a fleet key-value write could not be applied");
            }
            Err(_) => return,
        }
    }
}
