//! The node's pointer to its current release, the rollout in progress, and the event log.
//!
//! Decision: the pointer and the rollout change together through [`Store::commit`], which
//! applies a whole [`Transition`] (and optionally its log event) in ONE redb write
//! transaction. A promotion is "current := canary, rollout := cleared"; if those were two
//! writes, a kill -9 between them would restart a node serving the new release while still
//! running a canary towards it. With one transaction, a crash leaves the old state or the new
//! one. The rollout itself is opaque bytes: the canary state machine lives in another crate
//! and serialises itself; the store only keeps it atomically next to the pointer.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::db::{
    EVENTS, KEY_CURRENT, KEY_ROLLOUT, KEY_STARTED_FROM, NODE, RELEASES, decode, decode_current,
    encode,
};
use crate::error::StoreError;
use crate::release::{Release, ReleaseId};
use crate::store::Store;

/// What to do with the stored rollout in a [`Transition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutChange {
    /// Leave the stored rollout as it is.
    Keep,
    /// Store these bytes (the caller's serialised rollout) in its place.
    Set(Vec<u8>),
    /// Remove it: no rollout in progress.
    Clear,
}

/// A change of the node's state, applied atomically by [`Store::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// `Some` moves the pointer to this (existing) release; `None` leaves it as it is. A node
    /// that has served a release never goes back to serving none, so there is no "unset".
    pub current: Option<ReleaseId>,
    /// What happens to the stored rollout.
    pub rollout: RolloutChange,
}

/// The pointer and the rollout, read together from one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeState {
    /// The release the node serves; `None` until the first one is committed.
    pub current: Option<ReleaseId>,
    /// The serialised rollout in progress, if any.
    pub rollout: Option<Vec<u8>>,
}

/// One entry of the append-only event log (rollout history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// 1, 2, 3, ... in append order.
    pub seq: u64,
    /// Unix milliseconds, as given by the caller.
    pub at_ms: u64,
    /// Free-form kind chosen by the caller, e.g. `deploy`, `promote`, `rollback`.
    pub kind: String,
    /// The release the event concerns, if any.
    pub release: Option<ReleaseId>,
    /// Free-form text from the caller.
    pub detail: String,
}

/// An event to append; the store assigns its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewEvent<'a> {
    /// Free-form kind, e.g. `deploy`, `promote`, `rollback`.
    pub kind: &'a str,
    /// The release the event concerns, if any.
    pub release: Option<&'a ReleaseId>,
    /// Free-form text.
    pub detail: &'a str,
    /// Unix milliseconds.
    pub at_ms: u64,
}

impl Store {
    /// The release the node serves, if any.
    pub fn current(&self) -> Result<Option<ReleaseId>, StoreError> {
        Ok(self.state()?.current)
    }

    /// The stored rollout, if one is in progress.
    pub fn rollout(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state()?.rollout)
    }

    /// The pointer and the rollout from one consistent snapshot (what a restarting node
    /// resumes from).
    pub fn state(&self) -> Result<NodeState, StoreError> {
        self.read(|txn| {
            let node = txn.open_table(NODE)?;
            let current = match node.get(KEY_CURRENT)? {
                Some(v) => Some(decode_current(v.value())?),
                None => None,
            };
            let rollout = node.get(KEY_ROLLOUT)?.map(|v| v.value().to_vec());
            Ok(NodeState { current, rollout })
        })
    }

    /// The fingerprint of the manifest file the node last took a release from at startup,
    /// so a restart with the same file keeps releases deployed since through the API, and
    /// an edited file is noticed.
    pub fn started_from(&self) -> Result<Option<String>, StoreError> {
        self.read(|txn| {
            let node = txn.open_table(NODE)?;
            let value = node.get(KEY_STARTED_FROM)?;
            Ok(value.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
        })
    }

    /// Records the fingerprint of the manifest file the node started from.
    pub fn set_started_from(&self, fingerprint: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(NODE)?
                .insert(KEY_STARTED_FROM, fingerprint.as_bytes())?;
            Ok(())
        })
    }

    /// Points the node at `id`, leaving the rollout as it is. Refuses unknown ids.
    pub fn set_current(&self, id: &ReleaseId) -> Result<(), StoreError> {
        self.commit(Transition {
            current: Some(id.clone()),
            rollout: RolloutChange::Keep,
        })
    }

    /// Stores the rollout state, leaving the pointer as it is.
    pub fn put_rollout(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.commit(Transition {
            current: None,
            rollout: RolloutChange::Set(bytes.to_vec()),
        })
    }

    /// Removes the rollout state, leaving the pointer as it is.
    pub fn clear_rollout(&self) -> Result<(), StoreError> {
        self.commit(Transition {
            current: None,
            rollout: RolloutChange::Clear,
        })
    }

    /// Applies the whole transition in one durable transaction: on error nothing changed,
    /// on success everything did, and a crash at any point leaves one or the other.
    /// Refuses to point the node at a release that does not exist or whose artifacts are
    /// not all present (collected by [`Store::gc`]).
    pub fn commit(&self, transition: Transition) -> Result<(), StoreError> {
        let _refs = self.lock_artifact_refs();
        self.write(|txn| self.apply(txn, &transition))
    }

    /// [`Store::commit`] plus an event appended in the same transaction, so the log records
    /// a promotion if and only if the promotion happened. Returns the event's sequence number.
    pub fn commit_with_event(
        &self,
        transition: Transition,
        event: NewEvent<'_>,
    ) -> Result<u64, StoreError> {
        let _refs = self.lock_artifact_refs();
        self.write(|txn| {
            self.apply(txn, &transition)?;
            append(txn, event)
        })
    }

    /// Appends an event to the log. Returns its sequence number.
    pub fn append_event(
        &self,
        kind: &str,
        release: Option<&ReleaseId>,
        detail: &str,
        at_ms: u64,
    ) -> Result<u64, StoreError> {
        let event = NewEvent {
            kind,
            release,
            detail,
            at_ms,
        };
        self.write(|txn| append(txn, event))
    }

    /// The newest `limit` events, newest first.
    pub fn events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(EVENTS)?;
            let mut out = Vec::new();
            for entry in table.iter()?.rev().take(limit) {
                let (k, v) = entry?;
                out.push(decode("events", k.value(), v.value())?);
            }
            Ok(out)
        })
    }
}

impl Store {
    fn apply(&self, txn: &WriteTransaction, t: &Transition) -> Result<(), StoreError> {
        let mut node = txn.open_table(NODE)?;
        if let Some(id) = &t.current {
            let releases = txn.open_table(RELEASES)?;
            let release = match releases.get(id.number())? {
                Some(v) => Some(decode::<Release>("releases", id.number(), v.value())?),
                None => None,
            };
            let release = release
                .filter(|r| r.id == *id)
                .ok_or_else(|| StoreError::UnknownRelease(id.clone()))?;
            if let Some(m) = release
                .modules
                .iter()
                .find(|m| !self.artifacts.contains(&m.digest))
            {
                return Err(StoreError::ModuleArtifactMissing {
                    module: m.id.clone(),
                    digest: m.digest.clone(),
                });
            }
            node.insert(KEY_CURRENT, id.as_str().as_bytes())?;
        }
        match &t.rollout {
            RolloutChange::Keep => {}
            RolloutChange::Set(bytes) => {
                node.insert(KEY_ROLLOUT, bytes.as_slice())?;
            }
            RolloutChange::Clear => {
                node.remove(KEY_ROLLOUT)?;
            }
        }
        Ok(())
    }
}

fn append(txn: &WriteTransaction, e: NewEvent<'_>) -> Result<u64, StoreError> {
    let mut table = txn.open_table(EVENTS)?;
    let seq = table.last()?.map(|(k, _)| k.value()).unwrap_or(0) + 1;
    let event = Event {
        seq,
        at_ms: e.at_ms,
        kind: e.kind.to_owned(),
        release: e.release.cloned(),
        detail: e.detail.to_owned(),
    };
    table.insert(seq, encode(&event).as_slice())?;
    Ok(seq)
}
