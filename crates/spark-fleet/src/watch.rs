//! Watching an application's desired state (or its rollout progress), forever: a JetStream watch can end (after a
//! leader change or a restarted server it fails with a missing heartbeat), so the loop opens a
//! new one from the last revision seen + 1. Every change arrives once, in order; a delete
//! arrives as `None`.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::desired::{app_key, decode};
use crate::{DesiredApp, Fleet, RolloutProgress, Versioned};

/// Pause before opening a new watch after one failed or ended.
const REWATCH_DELAY: Duration = Duration::from_millis(250);

/// A change of desired state (`None`: deleted).
pub type Change = Versioned<Option<DesiredApp>>;

/// A change of rollout progress (`None`: deleted).
pub type ProgressChange = Versioned<Option<RolloutProgress>>;

impl Fleet {
    /// Streams the changes of `app`'s desired state from revision `from` (0: its current value
    /// first). The task stops when the receiver is dropped.
    pub fn watch_desired(&self, app: &str, from: u64) -> mpsc::Receiver<Change> {
        watch(self.desired.clone(), app, from)
    }

    /// Streams the changes of `app`'s rollout progress, like [`Fleet::watch_desired`].
    pub fn watch_progress(&self, app: &str, from: u64) -> mpsc::Receiver<ProgressChange> {
        watch(self.rollouts.clone(), app, from)
    }
}

fn watch<T: serde::de::DeserializeOwned + Send + 'static>(
    store: kv::Store,
    app: &str,
    from: u64,
) -> mpsc::Receiver<Versioned<Option<T>>> {
    let (tx, rx) = mpsc::channel(16);
    let key = app_key(app);
    tokio::spawn(async move {
        tokio::select! {
            _ = rewatch(store, key, from, &tx) => {}
            _ = tx.closed() => {}
        }
    });
    rx
}

/// The re-watch loop.
async fn rewatch<T: serde::de::DeserializeOwned>(
    store: kv::Store,
    key: String,
    mut next: u64,
    tx: &mpsc::Sender<Versioned<Option<T>>>,
) {
    loop {
        let watch = if next == 0 {
            store.watch_with_history(&key).await
        } else {
            store.watch_from_revision(&key, next).await
        };
        match watch {
            Ok(mut watch) => {
                while let Some(item) = watch.next().await {
                    match item {
                        Ok(entry) => {
                            next = entry.revision + 1;
                            if tx.send(change(&entry)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::info!(%key, error = %spark_error::chain(&e), next, "watch ended; watching again from the next revision");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(%key, error = %spark_error::chain(&e), "cannot watch yet"),
        }
        tokio::time::sleep(REWATCH_DELAY).await;
    }
}

fn change<T: serde::de::DeserializeOwned>(entry: &kv::Entry) -> Versioned<Option<T>> {
    let value = match entry.operation {
        kv::Operation::Put => decode(&entry.key, &entry.value)
            .map_err(
                |e| tracing::warn!(error = %spark_error::chain(&e), "ignoring an unreadable entry"),
            )
            .ok(),
        _ => None,
    };
    Versioned {
        value,
        revision: entry.revision,
    }
}
