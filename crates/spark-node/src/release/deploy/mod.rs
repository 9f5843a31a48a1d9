//! Releases on a running node: deploys (validated before any traffic), canary rollouts driven
//! by [`spark_rollout`], promotion, rollback, and the atomic switch between versions.
//!
//! The decision worth knowing: one lock serializes every change of release, and every change
//! ends in one store transaction followed by one snapshot publication. The store transaction
//! is the commit point (a kill -9 before it leaves the old state, after it the new), the
//! snapshot is the switch (requests already running keep the version they started on, every
//! new request sees exactly one version). A deploy during a rollout is refused, never queued
//! or interleaved.
//!
//! Time is the node's [`Clock`]: rollout steps are timed, and releases and events stamped, by
//! it, so a test walks a rollout by moving the clock.

mod rollout;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use spark_manifest::{ComponentRef, ModuleSpec};
use spark_rollout::{Rollout, VersionWindow};
use spark_store::{Digest, NewEvent, NewRelease, Release, RolloutChange, Store, Transition};

use crate::clock::Clock;
use crate::release::factory::{BuildError, ModuleFactory};
use crate::release::startup::{ReleaseError, content_hash, release_entries, release_modules};
use crate::serve::snapshot::{Canary, ModuleSlot, SharedSnapshot, Snapshot};

pub use rollout::RolloutStatus;
pub use spark_api::DeployRequest;

/// Why a deploy, promotion or rollback was refused. `Display` says what failed, the cause is
/// the `source()`; the admin API answers with the whole chain (`spark_error::chain`).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Conflict(String),
    /// A request refused for what it says (in words: no error beneath).
    #[error("{0}")]
    Invalid(String),
    /// The request's manifest or artifact digests do not check out.
    #[error(transparent)]
    Request(#[from] spark_api::RequestError),
    /// The store refused what the request named: a malformed digest or release id, or an
    /// upload whose bytes do not hash to its digest.
    #[error(transparent)]
    Rejected(spark_store::StoreError),
    /// A stored release that cannot be served as it is.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error("{} module(s) refused:\n{}", .0.len(), crate::node::render_failures(.0))]
    Refused(Vec<(String, BuildError)>),
    #[error("{0}")]
    NotFound(String),
    /// The store failed (I/O, database) or its blocking task did: the node's fault.
    #[error("store")]
    Store(#[source] spark_error::BoxError),
}

impl DeployError {
    /// The HTTP status the admin API answers with.
    pub fn status(&self) -> u16 {
        match self {
            DeployError::Conflict(_) => 409,
            DeployError::Invalid(_)
            | DeployError::Request(_)
            | DeployError::Rejected(_)
            | DeployError::Release(_)
            | DeployError::Refused(_) => 422,
            DeployError::NotFound(_) => 404,
            DeployError::Store(_) => 500,
        }
    }
}

pub(crate) fn store_error(e: impl Into<spark_error::BoxError>) -> DeployError {
    DeployError::Store(e.into())
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployOutcome {
    /// Id of the release the deploy created.
    pub release: String,
    /// `switched` (nothing to canary: the release is current now), `rollout` (started) or
    /// `unchanged` (the same content as the current release: nothing done, no new release).
    pub action: String,
    /// Modules whose new version is being canaried.
    pub canary: Vec<String>,
    /// Modules the release adds.
    pub added: Vec<String>,
    /// Modules the release drops.
    pub removed: Vec<String>,
}

/// A release and the slots serving it.
struct Serving {
    release: Release,
    slots: Vec<Arc<ModuleSlot>>,
}

/// A rollout in progress with its canary versions.
struct Active {
    rollout: Rollout,
    release: Release,
    /// New versions of changed modules, by id.
    canaries: HashMap<String, Arc<ModuleSlot>>,
    /// Fresh copies of the stable versions of changed modules, compared with the canaries.
    baselines: HashMap<String, Arc<ModuleSlot>>,
    /// Modules new in the release (serving from the start of the rollout).
    added: Vec<Arc<ModuleSlot>>,
    /// Counters of (compared-with, canary) at the start of each module's step.
    window_starts: HashMap<String, (VersionWindow, VersionWindow)>,
}

struct State {
    stable: Serving,
    active: Option<Active>,
}

/// The node's release manager.
pub struct Deployer {
    factory: ModuleFactory,
    store: Arc<Store>,
    snapshot: SharedSnapshot,
    state: tokio::sync::Mutex<State>,
    clock: Clock,
}

impl Deployer {
    /// Serves `release` with its built `slots` (and publishes them); times rollouts by `clock`.
    pub fn new(
        factory: ModuleFactory,
        snapshot: SharedSnapshot,
        release: Release,
        slots: Vec<Arc<ModuleSlot>>,
        clock: Clock,
    ) -> Deployer {
        let store = factory.store.clone();
        let state = State {
            stable: Serving { release, slots },
            active: None,
        };
        publish(&snapshot, &state);
        Deployer {
            factory,
            store,
            snapshot,
            state: tokio::sync::Mutex::new(state),
            clock,
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Resumes a rollout found in the store at startup.
    pub async fn resume(
        &self,
        mut rollout: Rollout,
        release: Release,
        modules: Vec<(ModuleSpec, String)>,
    ) -> Result<(), BuildFailures> {
        let mut state = self.state.lock().await;
        let (canaries, added) = self
            .build_changes(&state.stable, &modules, release.id.as_str(), &rollout)
            .await?;
        rollout.resume(self.clock.unix_ms());
        let baselines = self.build_baselines(&state.stable, &canaries).await;
        let mut active = Active {
            rollout,
            release,
            canaries,
            baselines,
            added,
            window_starts: HashMap::new(),
        };
        active.reset_windows(&state.stable);
        state.active = Some(active);
        publish(&self.snapshot, &state);
        Ok(())
    }

    /// Validates and starts a new release: switched at once when no module needs a canary,
    /// else a rollout.
    pub async fn deploy(&self, request: DeployRequest) -> Result<DeployOutcome, DeployError> {
        let mut state = self.state.lock().await;
        if let Some(active) = &state.active {
            return Err(DeployError::Conflict(format!(
                "a rollout of {} is in progress: promote or abort it first (spark rollout promote|abort)",
                active.release.id.as_str()
            )));
        }
        let checked = request.check()?;
        let manifest = checked.manifest;
        let modules = self.uploaded(checked.modules)?;
        let entries = release_entries(&modules).map_err(DeployError::Rejected)?;
        let next = self
            .store
            .latest()
            .map_err(store_error)?
            .map_or(1, |r| r.id.number() + 1);
        let content = content_hash(&manifest.text, &entries);
        let (changed, added, removed) = diff(&state.stable, &modules);
        let current = state.stable.release.id.as_str();
        if current
            .split_once('-')
            .is_some_and(|(_, hash)| hash == content)
        {
            // The same manifest and components as what serves: nothing to deploy, and no new
            // release id for the same content.
            return Ok(DeployOutcome {
                release: current.to_owned(),
                action: "unchanged".into(),
                canary: Vec::new(),
                added: Vec::new(),
                removed: Vec::new(),
            });
        }
        let label = format!("r{next}-{content}");
        let to_build = changed_or_added(&modules, &changed, &added);
        let built = self
            .factory
            .build_all(&to_build, &label)
            .await
            .map_err(refused)?;
        let note = if request.note.is_empty() {
            "deploy".to_owned()
        } else {
            request.note.clone()
        };
        let release = self
            .store
            .create_release(NewRelease {
                manifest: manifest.text.clone(),
                modules: entries,
                author_note: note,
                created_ms: self.clock.unix_ms(),
            })
            .map_err(store_error)?;
        let (canary_slots, added_slots): (Vec<_>, Vec<_>) = built
            .into_iter()
            .partition(|slot| changed.contains(&slot.id().to_owned()));
        let outcome = DeployOutcome {
            release: release.id.as_str().to_owned(),
            action: if changed.is_empty() {
                "switched".into()
            } else {
                "rollout".into()
            },
            canary: changed.clone(),
            added: added.clone(),
            removed: removed.clone(),
        };
        if changed.is_empty() {
            let slots = merge(&state.stable, &modules, &added_slots);
            self.commit_switch(&release, "switched (no module needs a canary)")?;
            tracing::info!(release = %release.id.as_str(), added = ?added, removed = ?removed, "deployed: switched at once (no module needs a canary)");
            state.stable = Serving { release, slots };
        } else {
            let rules = changed
                .iter()
                .map(|id| (id.clone(), rollout::rules_of(&modules, id)))
                .collect();
            let plan = Rollout::start(
                Some(state.stable.release.id.as_str().to_owned()),
                release.id.as_str().to_owned(),
                rules,
                self.clock.unix_ms(),
            );
            let canaries = canary_slots
                .into_iter()
                .map(|s| (s.id().to_owned(), s))
                .collect();
            let baselines = self.build_baselines(&state.stable, &canaries).await;
            let mut active = Active {
                rollout: plan,
                release,
                canaries,
                baselines,
                added: added_slots,
                window_starts: HashMap::new(),
            };
            active.reset_windows(&state.stable);
            self.persist(
                &active,
                "rollout-started",
                &format!("canary for {}", changed.join(", ")),
            )?;
            tracing::info!(release = %active.release.id.as_str(), from = %state.stable.release.id.as_str(), canary = ?changed, "deployed: canary rollout started");
            state.active = Some(active);
        }
        publish(&self.snapshot, &state);
        Ok(outcome)
    }

    /// The modules of a checked deploy, refused unless every artifact was uploaded beforehand.
    fn uploaded(
        &self,
        modules: Vec<(ModuleSpec, Digest)>,
    ) -> Result<Vec<(ModuleSpec, String)>, DeployError> {
        modules
            .into_iter()
            .map(|(spec, digest)| {
                if !self.store.artifacts().contains(&digest) {
                    return Err(DeployError::Invalid(format!(
                        "module '{}': artifact sha256:{digest} was not uploaded",
                        spec.id
                    )));
                }
                Ok((spec, digest.as_str().to_owned()))
            })
            .collect()
    }

    /// Builds the canary versions of changed modules and the added modules.
    async fn build_changes(
        &self,
        stable: &Serving,
        modules: &[(ModuleSpec, String)],
        label: &str,
        rollout: &Rollout,
    ) -> Result<(HashMap<String, Arc<ModuleSlot>>, Vec<Arc<ModuleSlot>>), BuildFailures> {
        let (_, added, _) = diff(stable, modules);
        let wanted: Vec<(ModuleSpec, String)> = modules
            .iter()
            .filter(|(spec, _)| {
                rollout.modules.contains_key(spec.id.as_str())
                    || added.contains(&spec.id.to_string())
            })
            .cloned()
            .collect();
        let built = self.factory.build_all(&wanted, label).await?;
        let (canaries, added): (Vec<_>, Vec<_>) = built
            .into_iter()
            .partition(|s| rollout.modules.contains_key(s.id()));
        Ok((
            canaries
                .into_iter()
                .map(|s| (s.id().to_owned(), s))
                .collect(),
            added,
        ))
    }

    /// Fresh copies of the stable versions of the canaried modules. One that cannot be built
    /// (the node is short of memory, say) leaves its canary compared with the stable version.
    async fn build_baselines(
        &self,
        stable: &Serving,
        canaries: &HashMap<String, Arc<ModuleSlot>>,
    ) -> HashMap<String, Arc<ModuleSlot>> {
        let mut baselines = HashMap::new();
        for id in canaries.keys() {
            let Some(slot) = stable.slots.iter().find(|s| s.id() == id) else {
                continue;
            };
            let ComponentRef::Artifact(digest) = &slot.spec.component else {
                continue;
            };
            match self
                .factory
                .build(&slot.spec, digest, stable.release.id.as_str())
                .await
            {
                Ok(baseline) => {
                    baselines.insert(id.clone(), baseline);
                }
                Err(e) => {
                    tracing::warn!(module = %id, error = %spark_error::chain(&e), "no baseline for the canary; comparing it with the stable version")
                }
            }
        }
        baselines
    }

    fn commit_switch(&self, release: &Release, detail: &str) -> Result<(), DeployError> {
        let transition = Transition {
            current: Some(release.id.clone()),
            rollout: RolloutChange::Clear,
        };
        let event = NewEvent {
            kind: "switch",
            release: Some(&release.id),
            detail,
            at_ms: self.clock.unix_ms(),
        };
        self.store
            .commit_with_event(transition, event)
            .map(drop)
            .map_err(store_error)
    }

    fn persist(&self, active: &Active, kind: &str, detail: &str) -> Result<(), DeployError> {
        let bytes = serde_json::to_vec(&active.rollout).map_err(store_error)?;
        let transition = Transition {
            current: None,
            rollout: RolloutChange::Set(bytes),
        };
        let event = NewEvent {
            kind,
            release: Some(&active.release.id),
            detail,
            at_ms: self.clock.unix_ms(),
        };
        self.store
            .commit_with_event(transition, event)
            .map(drop)
            .map_err(store_error)
    }

    /// Switches to an earlier release at once (validated first). Refused during a rollout.
    pub async fn rollback(&self, target: Option<&str>) -> Result<String, DeployError> {
        let mut state = self.state.lock().await;
        if state.active.is_some() {
            return Err(DeployError::Conflict(
                "a rollout is in progress: abort it instead (spark rollout abort)".into(),
            ));
        }
        let release = self.rollback_target(&state.stable.release, target)?;
        let modules = release_modules(&release)?;
        let (changed, added, _) = diff(&state.stable, &modules);
        let to_build = changed_or_added(&modules, &changed, &added);
        let built = self
            .factory
            .build_all(&to_build, release.id.as_str())
            .await
            .map_err(refused)?;
        let slots = merge(&state.stable, &modules, &built);
        self.commit_switch(
            &release,
            &format!("rollback from {}", state.stable.release.id.as_str()),
        )?;
        let id = release.id.as_str().to_owned();
        tracing::warn!(release = %id, from = %state.stable.release.id.as_str(), "rolled back");
        state.stable = Serving { release, slots };
        publish(&self.snapshot, &state);
        Ok(id)
    }

    fn rollback_target(
        &self,
        current: &Release,
        target: Option<&str>,
    ) -> Result<Release, DeployError> {
        let releases = self.store.releases().map_err(store_error)?;
        let wanted = match target {
            Some(id) => spark_api::release_number(id),
            None => self.previously_current(current)?,
        };
        let found = match wanted {
            Some(number) => releases.into_iter().find(|r| r.id.number() == number),
            None => None,
        };
        let release = found.ok_or_else(|| {
            DeployError::NotFound(match target {
                Some(id) => format!("no release {id}"),
                None => "no earlier release to roll back to".into(),
            })
        })?;
        if release.id == current.id {
            return Err(DeployError::Conflict(format!(
                "{} is already the current release",
                release.id.as_str()
            )));
        }
        if !self.store.rollbackable(&release.id).map_err(store_error)? {
            return Err(DeployError::Conflict(format!(
                "{}'s artifacts were collected: it cannot be rolled back to",
                release.id.as_str()
            )));
        }
        Ok(release)
    }

    /// The release a bare rollback goes back to (from the event log: releases that became
    /// current, newest first): the most recent one that served before `current` and is older
    /// than it. Never forward: after a rollback from r2 to r1, a second
    /// bare rollback has nothing older to go to.
    fn previously_current(&self, current: &Release) -> Result<Option<u64>, DeployError> {
        let events = self.store.events(10_000).map_err(store_error)?;
        Ok(events
            .iter()
            .filter(|e| matches!(e.kind.as_str(), "release" | "switch" | "promoted"))
            .filter_map(|e| e.release.as_ref())
            .find(|id| id.number() < current.id.number())
            .map(|id| id.number()))
    }

    /// The current release id.
    pub async fn current(&self) -> String {
        self.state
            .lock()
            .await
            .stable
            .release
            .id
            .as_str()
            .to_owned()
    }
}

/// Failures building module versions, by module.
pub(crate) type BuildFailures = Vec<(String, BuildError)>;

fn refused(failures: BuildFailures) -> DeployError {
    DeployError::Refused(failures)
}

/// (changed, added, removed) module ids of `modules` against what `stable` serves.
/// The modules of a release that must be built: those new or different from stable.
fn changed_or_added(
    modules: &[(ModuleSpec, String)],
    changed: &[String],
    added: &[String],
) -> Vec<(ModuleSpec, String)> {
    let differs = |id: &str| changed.iter().chain(added).any(|m| m == id);
    modules
        .iter()
        .filter(|(spec, _)| differs(spec.id.as_str()))
        .cloned()
        .collect()
}

fn diff(
    stable: &Serving,
    modules: &[(ModuleSpec, String)],
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut changed = Vec::new();
    let mut added = Vec::new();
    for (spec, _) in modules {
        match stable.slots.iter().find(|s| s.id() == spec.id.as_str()) {
            Some(slot) if slot.spec == *spec => {}
            Some(_) => changed.push(spec.id.to_string()),
            None => added.push(spec.id.to_string()),
        }
    }
    let removed = stable
        .slots
        .iter()
        .filter(|s| !modules.iter().any(|(spec, _)| spec.id.as_str() == s.id()))
        .map(|s| s.id().to_owned())
        .collect();
    (changed, added, removed)
}

/// The slots of a release: `built` where given, else the unchanged stable slot.
fn merge(
    stable: &Serving,
    modules: &[(ModuleSpec, String)],
    built: &[Arc<ModuleSlot>],
) -> Vec<Arc<ModuleSlot>> {
    modules
        .iter()
        .filter_map(|(spec, _)| {
            built
                .iter()
                .chain(stable.slots.iter())
                .find(|s| s.id() == spec.id.as_str())
                .cloned()
        })
        .collect()
}

/// Publishes what `state` serves: the stable release, plus during a rollout the added modules
/// and the canaries at their shares.
fn publish(snapshot: &SharedSnapshot, state: &State) {
    let mut modules = state.stable.slots.clone();
    let mut canaries = HashMap::new();
    if let Some(active) = &state.active {
        modules.extend(active.added.iter().cloned());
        for (id, slot) in &active.canaries {
            let share = active.rollout.share(id).unwrap_or(0.0);
            canaries.insert(
                id.clone(),
                Canary {
                    slot: slot.clone(),
                    baseline: active.baselines.get(id).cloned(),
                    share,
                },
            );
        }
    }
    let release = Some(state.stable.release.id.as_str().to_owned());
    snapshot.store(Arc::new(Snapshot::with(release, modules, canaries)));
}

impl Active {
    /// Starts every module's window afresh (a new step, or a resumed rollout).
    fn reset_windows(&mut self, stable: &Serving) {
        let ids: Vec<String> = self.canaries.keys().cloned().collect();
        for id in ids {
            self.reset_module(&id, &stable.slots);
        }
    }
}

/// Releases newest first, marked current and rollback-able, for the admin API.
pub(crate) fn release_list(
    store: &Store,
    current: &str,
) -> Result<Vec<ReleaseSummary>, DeployError> {
    let releases = store.releases().map_err(store_error)?;
    let events = store.events(OUTCOME_EVENTS).map_err(store_error)?;
    Ok(releases
        .into_iter()
        .map(|r| ReleaseSummary {
            outcome: outcome(&events, r.id.as_str(), current),
            current: r.id.as_str() == current,
            rollbackable: store.rollbackable(&r.id).unwrap_or(false),
            id: r.id.as_str().to_owned(),
            created_ms: r.created_ms,
            note: r.author_note.clone(),
            modules: r
                .modules
                .iter()
                .map(|m| (m.id.clone(), m.digest.as_str().to_owned()))
                .collect(),
        })
        .collect())
}

/// How many of the newest events [`release_list`] reads to tell each release's outcome.
const OUTCOME_EVENTS: usize = 1000;

/// What became of release `id`, from the newest event about it (`events` newest first):
/// `serving`, `rolling out`, `promoted`, `rolled back`, `aborted`, or `replaced` (it served
/// once, a later release took over); `-` when the log no longer says.
fn outcome(events: &[spark_store::Event], id: &str, current: &str) -> String {
    let last = events
        .iter()
        .filter(|e| e.release.as_ref().is_some_and(|r| r.as_str() == id))
        .find(|e| {
            matches!(
                e.kind.as_str(),
                "release" | "switch" | "promoted" | "rolled-back" | "rollout-started" | "step"
            )
        });
    let label = match last.map(|e| (e.kind.as_str(), e.detail.as_str())) {
        _ if id == current => "serving",
        Some(("rolled-back", detail)) if detail.starts_with("aborted") => "aborted",
        Some(("rolled-back", _)) => "rolled back",
        Some(("rollout-started" | "step", _)) => "rolling out",
        Some(("promoted" | "switch" | "release", _)) => "replaced",
        _ => "-",
    };
    label.to_owned()
}

/// One release in the admin API's list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseSummary {
    /// The release id, `r<number>-<12 hex>`.
    pub id: String,
    /// When it was created, in Unix milliseconds.
    pub created_ms: u64,
    /// The deployer's note.
    pub note: String,
    /// Each module id with its component's SHA-256 (hex).
    pub modules: BTreeMap<String, String>,
    /// Whether it is the release being served.
    pub current: bool,
    /// Whether it can be rolled back to (its artifacts are still stored).
    pub rollbackable: bool,
    /// What became of it: `serving`, `rolling out`, `promoted`... (see the event log).
    #[serde(default)]
    pub outcome: String,
}
