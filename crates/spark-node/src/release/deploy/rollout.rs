//! Driving a rollout: every tick of the node's clock the canary's window and its baseline's (a
//! fresh copy of the stable version with as much traffic) go to the pure state machine, and its
//! decisions are committed and published: a step advances the canary's share, a promotion makes
//! the new release current, a rollback drops the canary. A person's promote or abort goes
//! through the same path.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spark_manifest::ModuleSpec;
use spark_rollout::{AnalysisConfig, RolloutAction, RolloutState, StepRules};
use spark_store::{NewEvent, RolloutChange, Transition};
use tokio_util::sync::CancellationToken;

use super::{Active, DeployError, Deployer, Serving, State, publish, store_error};
use crate::serve::snapshot::ModuleSlot;

/// How often a running rollout is evaluated.
const TICK: Duration = Duration::from_millis(500);

/// A rollout's progress, for the admin API and `spark rollout status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// Id of the stable release.
    pub current: String,
    /// The rollout in progress; `None`: none.
    pub rollout: Option<RolloutView>,
    /// With no rollout in progress: how the last one ended (its `promoted` or `rolled-back`
    /// event), so an automatic rollback is visible where the operator looks for it.
    #[serde(default)]
    pub last_outcome: Option<spark_api::EventView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutView {
    pub from: Option<String>,
    pub to: String,
    pub started_ms: u64,
    pub state: RolloutState,
    pub modules: BTreeMap<String, ModuleProgress>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleProgress {
    pub share: f64,
    pub step: usize,
    pub steps: Vec<f64>,
    /// The verdict on the counters beside it (the same windows, judged when status was read).
    pub last: Option<String>,
    pub canary_requests: u64,
    pub canary_errors: u64,
    /// The version the canary is compared with in this step: a fresh baseline copy of the
    /// stable version (`baseline`), or the stable version itself (`stable`).
    pub compared_with: String,
    pub stable_requests: u64,
    pub stable_errors: u64,
}

/// The rules a module's manifest gives its rollout.
pub(super) fn rules_of(modules: &[(ModuleSpec, String)], id: &str) -> StepRules {
    let spec = modules
        .iter()
        .find(|(s, _)| s.id.as_str() == id)
        .map(|(s, _)| &s.rollout)
        .cloned()
        .unwrap_or_default();
    StepRules {
        steps: spec.steps,
        step_duration_ms: spec.step_duration.as_millis() as u64,
        min_requests: spec.min_requests,
    }
}

impl Deployer {
    /// Evaluates the rollout in progress, if any.
    pub async fn tick(&self) -> Result<(), DeployError> {
        let mut state = self.state.lock().await;
        let stable = state_stable_slots(&state);
        let Some(active) = state.active.as_mut() else {
            return Ok(());
        };
        active.restart_windows_on_tier_change(&stable);
        let windows = active.windows(&stable);
        let decisions =
            active
                .rollout
                .evaluate(self.clock.unix_ms(), &windows, &AnalysisConfig::default());
        self.apply(&mut state, decisions, "analysis")
    }

    /// A person promotes the rollout now.
    pub async fn promote(&self, by: &str) -> Result<String, DeployError> {
        let mut state = self.state.lock().await;
        let active = state
            .active
            .as_mut()
            .ok_or_else(|| DeployError::NotFound("no rollout in progress".into()))?;
        let decisions: Vec<RolloutAction> = active
            .rollout
            .promote(self.clock.unix_ms(), by)
            .into_iter()
            .collect();
        let to = active.release.id.as_str().to_owned();
        self.apply(&mut state, decisions, by)?;
        Ok(to)
    }

    /// A person aborts the rollout: the stable release serves everything again.
    pub async fn abort(&self, by: &str) -> Result<String, DeployError> {
        let mut state = self.state.lock().await;
        let active = state
            .active
            .as_mut()
            .ok_or_else(|| DeployError::NotFound("no rollout in progress".into()))?;
        let decisions: Vec<RolloutAction> = active
            .rollout
            .abort(self.clock.unix_ms(), by)
            .into_iter()
            .collect();
        self.apply(&mut state, decisions, by)?;
        Ok(state.stable.release.id.as_str().to_owned())
    }

    fn apply(
        &self,
        state: &mut State,
        decisions: Vec<RolloutAction>,
        by: &str,
    ) -> Result<(), DeployError> {
        for decision in decisions {
            match decision {
                RolloutAction::Advance {
                    module,
                    from,
                    to,
                    evidence,
                } => {
                    tracing::info!(%module, from, to, %evidence, "canary advanced");
                    let stable = state_stable_slots(state);
                    let active = state
                        .active
                        .as_mut()
                        .expect("advancing a rollout in progress");
                    active.reset_module(&module, &stable);
                    self.persist(
                        active,
                        "step",
                        &format!("module '{module}' {from}% -> {to}%: {evidence}"),
                    )?;
                }
                RolloutAction::Promote { reason } => {
                    let active = state
                        .active
                        .take()
                        .expect("promoting a rollout in progress");
                    let slots = promoted_slots(&state.stable, &active);
                    tracing::info!(release = %active.release.id.as_str(), %reason, by, "release promoted");
                    let transition = Transition {
                        current: Some(active.release.id.clone()),
                        rollout: RolloutChange::Clear,
                    };
                    let event = NewEvent {
                        kind: "promoted",
                        release: Some(&active.release.id),
                        detail: &reason,
                        at_ms: self.clock.unix_ms(),
                    };
                    if let Err(e) = self.store.commit_with_event(transition, event) {
                        state.active = Some(active);
                        return Err(store_error(e));
                    }
                    state.stable = Serving {
                        release: active.release,
                        slots,
                    };
                }
                RolloutAction::Rollback { reason } => {
                    let active = state
                        .active
                        .take()
                        .expect("rolling back a rollout in progress");
                    tracing::warn!(release = %active.release.id.as_str(), %reason, by, "rollout rolled back");
                    let transition = Transition {
                        current: None,
                        rollout: RolloutChange::Clear,
                    };
                    let event = NewEvent {
                        kind: "rolled-back",
                        release: Some(&active.release.id),
                        detail: &reason,
                        at_ms: self.clock.unix_ms(),
                    };
                    if let Err(e) = self.store.commit_with_event(transition, event) {
                        state.active = Some(active);
                        return Err(store_error(e));
                    }
                }
            }
        }
        publish(&self.snapshot, state);
        Ok(())
    }

    /// Where releases stand now.
    pub async fn rollout_status(&self) -> RolloutStatus {
        let state = self.state.lock().await;
        let now = self.clock.unix_ms();
        let rollout = state.active.as_ref().map(|active| {
            let windows = active.windows(&state_stable_slots(&state));
            let modules = active
                .rollout
                .modules
                .iter()
                .map(|(id, m)| {
                    let (stable, canary) = windows.get(id).cloned().unwrap_or_default();
                    let progress = ModuleProgress {
                        share: m.share(),
                        step: m.step,
                        steps: m.steps.clone(),
                        last: Some(m.assess(now, &stable, &canary, &AnalysisConfig::default())),
                        canary_requests: canary.requests,
                        canary_errors: canary.errors,
                        compared_with: if active.baselines.contains_key(id) {
                            "baseline"
                        } else {
                            "stable"
                        }
                        .to_owned(),
                        stable_requests: stable.requests,
                        stable_errors: stable.errors,
                    };
                    (id.clone(), progress)
                })
                .collect();
            RolloutView {
                from: active.rollout.from.clone(),
                to: active.rollout.to.clone(),
                started_ms: active.rollout.started_ms,
                state: active.rollout.state.clone(),
                modules,
            }
        });
        RolloutStatus {
            current: state.stable.release.id.as_str().to_owned(),
            rollout,
            last_outcome: None,
        }
    }

    /// Evaluates the rollout every [`TICK`] until `shutdown`. The ticker is taken now, before
    /// the task runs, so a manual clock knows the loop from the start.
    pub fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut ticker = self.clock.ticker("rollouts", TICK);
        async move {
            loop {
                tokio::select! {
                    () = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                if let Err(e) = self.tick().await {
                    tracing::error!(error = %spark_error::chain(&e), "rollout evaluation failed; trying again next tick");
                }
            }
        }
    }
}

fn state_stable_slots(state: &State) -> Vec<Arc<ModuleSlot>> {
    state.stable.slots.clone()
}

/// The slots of the promoted release: canaries for changed modules, added ones, and the
/// unchanged stable ones; modules the new release dropped are gone.
fn promoted_slots(stable: &Serving, active: &Active) -> Vec<Arc<ModuleSlot>> {
    let Ok(modules) = crate::release::startup::release_modules(&active.release) else {
        return stable.slots.clone();
    };
    modules
        .iter()
        .filter_map(|(spec, _)| {
            let id = spec.id.as_str();
            active
                .canaries
                .get(id)
                .or_else(|| active.added.iter().find(|s| s.id() == id))
                .or_else(|| stable.slots.iter().find(|s| s.id() == id))
                .cloned()
        })
        .collect()
}

impl Active {
    /// The version `module`'s canary is compared with: its baseline, else the stable slot.
    fn compared_with<'a>(
        &'a self,
        module: &str,
        stable: &'a [Arc<ModuleSlot>],
    ) -> Option<&'a Arc<ModuleSlot>> {
        self.baselines
            .get(module)
            .or_else(|| stable.iter().find(|s| s.id() == module))
    }

    /// Each changed module's (compared-with, canary) window since its step began.
    fn windows(
        &self,
        stable: &[Arc<ModuleSlot>],
    ) -> BTreeMap<String, (spark_rollout::VersionWindow, spark_rollout::VersionWindow)> {
        let mut windows = BTreeMap::new();
        for (id, canary) in &self.canaries {
            let Some(slot) = self.compared_with(id, stable) else {
                continue;
            };
            let (start_stable, start_canary) =
                self.window_starts.get(id).cloned().unwrap_or_default();
            windows.insert(
                id.clone(),
                (
                    snapshot(slot).since(&start_stable),
                    snapshot(canary).since(&start_canary),
                ),
            );
        }
        windows
    }

    /// Starts `module`'s window afresh (its step advanced, or a side changed tiers).
    pub(super) fn reset_module(&mut self, module: &str, stable: &[Arc<ModuleSlot>]) {
        let canary = self.canaries.get(module);
        let slot = self.compared_with(module, stable);
        if let (Some(canary), Some(slot)) = (canary, slot) {
            let starts = (snapshot(slot), snapshot(canary));
            self.window_starts.insert(module.to_owned(), starts);
        }
    }

    /// Starts afresh the window of every module whose canary or compared-with version
    /// changed tiers since its window began (baseline code swapped for optimized code): the
    /// latencies compared are then all from one tier on each side.
    fn restart_windows_on_tier_change(&mut self, stable: &[Arc<ModuleSlot>]) {
        let changed: Vec<String> = self
            .canaries
            .iter()
            .filter(|(id, canary)| {
                let Some(slot) = self.compared_with(id, stable) else {
                    return false;
                };
                let now = (on_baseline(slot), on_baseline(canary));
                let start = self
                    .window_starts
                    .get(*id)
                    .map_or((false, false), |(s, c)| (s.baseline_code, c.baseline_code));
                now != start
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in changed {
            self.reset_module(&id, stable);
        }
    }
}

fn on_baseline(slot: &ModuleSlot) -> bool {
    slot.tier().state == spark_runtime::TierState::Baseline
}

/// The slot's cumulative counters, marked with the tier it runs now.
fn snapshot(slot: &ModuleSlot) -> spark_rollout::VersionWindow {
    spark_rollout::VersionWindow {
        baseline_code: on_baseline(slot),
        ..slot.outcomes.snapshot()
    }
}
