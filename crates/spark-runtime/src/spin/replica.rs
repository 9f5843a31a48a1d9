//! The node's side of fleet-wide key-value stores (`fleet = true`): which scopes replicate,
//! with their limits, and the bounded queue of local writes waiting to be published. The fleet
//! agent drains the queue into NATS and applies what other nodes wrote; this module owns only
//! the bookkeeping the data plane touches, so a guest's write never waits on NATS.
//!
//! The decisions worth knowing:
//! - **The queue carries keys, not values.** A write commits to the node's store first, then
//!   `(scope, key)` is queued; the publisher reads the key's value when it publishes (absent:
//!   a delete marker). So increments, compare-and-swaps and batches replicate like plain sets,
//!   and several writes of one key publish its latest value.
//! - **Bounded.** The queue holds [`KvReplicas::CAPACITY`] writes; a write that finds it full is
//!   not published (counted, logged) and stays node-local until the key is written again.
//! - **Pending writes shadow remote ones.** Each queued write of a key counts as pending until
//!   its own echo comes back from the bucket. While a key has a pending write, entries other
//!   nodes wrote earlier in the bucket's order are not applied here: the pending write will
//!   land after them and win. That gives read-your-writes on the writing node without breaking
//!   convergence.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spark_store::KvLimits;
use tokio::sync::{Notify, mpsc};

/// A local write to publish: the scope (`<application>/<label>`) and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `<application>/<label>`.
    pub scope: String,
    /// The key written.
    pub key: String,
}

/// Replication bookkeeping of one node (shared by every module's fleet stores).
pub struct KvReplicas {
    enabled: AtomicBool,
    warned: AtomicBool,
    tx: mpsc::Sender<Outgoing>,
    rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    pending: Mutex<HashMap<(String, String), u32>>,
    scopes: Mutex<BTreeMap<String, KvLimits>>,
    scopes_changed: Notify,
    dropped: AtomicU64,
    refused: AtomicU64,
}

impl std::fmt::Debug for KvReplicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvReplicas")
            .field("enabled", &self.enabled.load(Ordering::Relaxed))
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for KvReplicas {
    fn default() -> Self {
        KvReplicas::new(KvReplicas::CAPACITY)
    }
}

impl KvReplicas {
    /// Writes the queue holds while NATS is slow or away.
    pub const CAPACITY: usize = 10_000;

    /// An empty registry whose queue holds `capacity` writes; disabled until a fleet agent
    /// [`takes`](KvReplicas::enable) the queue.
    pub fn new(capacity: usize) -> KvReplicas {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        KvReplicas {
            enabled: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            tx,
            rx: Mutex::new(Some(rx)),
            pending: Mutex::default(),
            scopes: Mutex::default(),
            scopes_changed: Notify::new(),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Turns replication on and hands over the queue (once; `None` after).
    pub fn enable(&self) -> Option<mpsc::Receiver<Outgoing>> {
        let rx = self.rx.lock().expect("kv queue").take()?;
        self.enabled.store(true, Ordering::Release);
        Some(rx)
    }

    /// Is a fleet agent replicating?
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Declares `scope` fleet-wide with its limits (a module using it was built).
    pub fn register(&self, scope: &str, limits: KvLimits) {
        let new = self
            .scopes
            .lock()
            .expect("kv scopes")
            .insert(scope.to_owned(), limits)
            .is_none();
        if new {
            self.scopes_changed.notify_one();
        }
    }

    /// The fleet-wide scopes and their limits.
    pub fn scopes(&self) -> BTreeMap<String, KvLimits> {
        self.scopes.lock().expect("kv scopes").clone()
    }

    /// Resolves when a scope was registered since the last call.
    pub async fn scopes_changed(&self) {
        self.scopes_changed.notified().await
    }

    /// A local write of `key` in `scope` committed: queue it for publishing (never waits).
    pub fn wrote(&self, scope: &str, key: &str) {
        if !self.enabled() {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(%scope, "a fleet-wide key-value store is written on a node without --fleet: it stays node-local");
            }
            return;
        }
        let id = (scope.to_owned(), key.to_owned());
        *self
            .pending
            .lock()
            .expect("kv pending")
            .entry(id.clone())
            .or_default() += 1;
        let item = Outgoing {
            scope: id.0.clone(),
            key: id.1.clone(),
        };
        if self.tx.try_send(item).is_err() {
            self.settle(&id.0, &id.1);
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped == 1 || dropped.is_multiple_of(1000) {
                tracing::warn!(%scope, dropped, "fleet key-value queue full: this write stays node-local until the key is written again");
            }
        }
    }

    /// One queued write of `key` is settled (its echo came back, or it was dropped).
    pub fn settle(&self, scope: &str, key: &str) {
        let mut pending = self.pending.lock().expect("kv pending");
        let id = (scope.to_owned(), key.to_owned());
        if let Some(n) = pending.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&id);
            }
        }
    }

    /// Has `key` local writes whose echo has not come back?
    pub fn pending(&self, scope: &str, key: &str) -> bool {
        self.pending
            .lock()
            .expect("kv pending")
            .contains_key(&(scope.to_owned(), key.to_owned()))
    }

    /// Counts a remote write not applied because it would cross a local limit; returns the
    /// count so far.
    pub fn refuse_remote(&self) -> u64 {
        self.refused.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Remote writes not applied because they would cross a local limit, so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Writes not published because the queue was full, so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: KvLimits = KvLimits {
        max_value_size: 10,
        max_keys: 10,
        max_bytes: 100,
    };

    #[test]
    fn writes_queue_only_when_enabled_and_overflow_is_counted() {
        let replicas = KvReplicas::new(2);
        replicas.register("app/s", LIMITS);
        replicas.wrote("app/s", "a");
        assert!(!replicas.pending("app/s", "a"), "disabled: nothing queued");
        let mut rx = replicas.enable().unwrap();
        assert!(replicas.enable().is_none());
        replicas.wrote("app/s", "a");
        replicas.wrote("app/s", "a");
        replicas.wrote("app/s", "b");
        assert_eq!(replicas.dropped(), 1);
        assert!(
            !replicas.pending("app/s", "b"),
            "a dropped write is not pending"
        );
        assert_eq!(rx.try_recv().unwrap().key, "a");
        replicas.settle("app/s", "a");
        assert!(replicas.pending("app/s", "a"));
        replicas.settle("app/s", "a");
        assert!(!replicas.pending("app/s", "a"));
        replicas.settle("app/s", "a");
        assert!(!replicas.pending("app/s", "a"));
    }
}
