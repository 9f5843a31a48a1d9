//! Desired state: one KV entry per application (`app.<name>`), written only with
//! compare-and-set on the revision the writer read.

use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::kv;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::plan::{FleetRollout, Target, target_for};
use crate::{Fleet, FleetError, FleetRelease, check_name};

/// What an application should run across the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredApp {
    /// The application's name (its key is `app.<name>`).
    pub app: String,
    /// Bumped by every `spark fleet deploy`.
    pub generation: u64,
    /// The release being rolled out (or run, once the rollout is complete).
    pub release: FleetRelease,
    /// What nodes return to when the rollout rolls back (none on the first deploy).
    pub previous: Option<FleetRelease>,
    /// Which nodes take `release` so far, and where the rollout stands.
    pub rollout: FleetRollout,
    /// Who wrote this state last (a person, or `node <id>` for a planning step).
    #[serde(default)]
    pub updated_by: String,
    /// A person's promote or rollback of this generation, signed when the deployer has a key
    /// (nodes with trusted keys skip their canaries on a promotion only when it is signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<crate::signing::Intent>,
}

impl DesiredApp {
    /// The release `node` should run, or `None` when it should keep what it has.
    pub fn release_for(&self, node: &str) -> Option<&FleetRelease> {
        match target_for(&self.rollout, node) {
            Target::New => Some(&self.release),
            Target::Previous => self.previous.as_ref(),
        }
    }
}

/// A value with the KV revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The decoded value.
    pub value: T,
    /// The KV revision, to pass back for compare-and-set.
    pub revision: u64,
}

pub(crate) fn app_key(app: &str) -> String {
    format!("app.{app}")
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, FleetError> {
    serde_json::from_slice(bytes).map_err(|source| FleetError::Json {
        what: what.to_owned(),
        source,
    })
}

/// `app`'s entry in `store`, decoded, with its revision (`None`: none, or deleted).
pub(crate) async fn read<T: serde::de::DeserializeOwned>(
    store: &kv::Store,
    app: &str,
    what: &'static str,
) -> Result<Option<Versioned<T>>, FleetError> {
    check_name("application", app)?;
    let entry = store
        .entry(app_key(app))
        .await
        .map_err(|e| FleetError::nats(what, e))?;
    match entry {
        Some(entry) if entry.operation == kv::Operation::Put => Ok(Some(Versioned {
            value: decode(&entry.key, &entry.value)?,
            revision: entry.revision,
        })),
        _ => Ok(None),
    }
}

/// How long a write waits for its bucket's stream to have a leader again (a JetStream
/// cluster elects a new one within seconds of losing a server).
const LEADERLESS_PATIENCE: Duration = Duration::from_secs(10);

/// Writes `value` as `app`'s entry in `store` by compare-and-set on `expected` (`None`: only
/// if there is none); a lost race is [`FleetError::Conflict`] or [`FleetError::AlreadyExists`].
/// While the bucket's stream has no leader (no server answers the write: a cluster electing a
/// new one after losing a server) the write is retried for up to [`LEADERLESS_PATIENCE`].
pub(crate) async fn write<T: Serialize>(
    store: &kv::Store,
    app: &str,
    value: &T,
    expected: Option<u64>,
    what: &'static str,
) -> Result<u64, FleetError> {
    check_name("application", app)?;
    let bytes: bytes::Bytes = serde_json::to_vec(value)
        .expect("fleet state serializes")
        .into();
    let started = tokio::time::Instant::now();
    loop {
        match write_once(store, app, bytes.clone(), expected, what).await {
            Err(e) if no_stream_answered(&e) && started.elapsed() < LEADERLESS_PATIENCE => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            done => return done,
        }
    }
}

/// Whether `error` says no server took a publish (NATS "no responders"): the stream is
/// missing or, in a cluster, between leaders.
fn no_stream_answered(error: &FleetError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<PublishError>()
            .is_some_and(|e| e.kind() == PublishErrorKind::StreamNotFound)
        {
            return true;
        }
        source = e.source();
    }
    false
}

async fn write_once(
    store: &kv::Store,
    app: &str,
    bytes: bytes::Bytes,
    expected: Option<u64>,
    what: &'static str,
) -> Result<u64, FleetError> {
    let key = app_key(app);
    match expected {
        None => store.create(&key, bytes).await.map_err(|e| {
            if e.kind() == kv::CreateErrorKind::AlreadyExists {
                FleetError::AlreadyExists {
                    app: app.to_owned(),
                }
            } else {
                FleetError::nats(what, e)
            }
        }),
        Some(revision) => store.update(&key, bytes, revision).await.map_err(|e| {
            if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                FleetError::Conflict {
                    app: app.to_owned(),
                    expected: revision,
                }
            } else {
                FleetError::nats(what, e)
            }
        }),
    }
}

impl Fleet {
    /// The desired state of `app` and its revision, if any.
    pub async fn desired(&self, app: &str) -> Result<Option<Versioned<DesiredApp>>, FleetError> {
        read(&self.desired, app, "reading desired state").await
    }

    /// Writes `state` if the entry is still at `expected` (`None`: only if there is none).
    /// Returns the new revision; a lost race is [`FleetError::Conflict`] or
    /// [`FleetError::AlreadyExists`], with nothing written.
    pub async fn put_desired(
        &self,
        state: &DesiredApp,
        expected: Option<u64>,
    ) -> Result<u64, FleetError> {
        write(
            &self.desired,
            &state.app,
            state,
            expected,
            "writing desired state",
        )
        .await
    }

    /// Every application's desired state.
    pub async fn apps(&self) -> Result<Vec<Versioned<DesiredApp>>, FleetError> {
        let keys = match self.desired.keys().await {
            Ok(keys) => keys,
            Err(e) => return Err(FleetError::nats("listing applications", e)),
        };
        let keys: Vec<String> = keys
            .try_collect()
            .await
            .map_err(|e| FleetError::nats("listing applications", e))?;
        let mut apps = Vec::new();
        for key in keys {
            if let Some(app) = key.strip_prefix("app.")
                && let Some(state) = self.desired(app).await?
            {
                apps.push(state);
            }
        }
        Ok(apps)
    }
}
