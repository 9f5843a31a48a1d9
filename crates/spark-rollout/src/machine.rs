//! The rollout state machine: a new release's changed modules get growing shares of traffic,
//! step by step, each step judged by [`analyze`]; all modules through their last step promote
//! the release, any module judged worse rolls the whole release back. A person can promote or
//! abort at any time, and that always wins.
//!
//! The state serializes to JSON and the node stores it with the release pointer in one
//! transaction, so a restarted node resumes the same step (its timer and its windows start
//! again: evidence from before a crash is not trusted across it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::{AnalysisConfig, Verdict, analyze};
use crate::stats::VersionWindow;

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RolloutState {
    /// Steps are still being judged; the canary takes its shares.
    Running,
    /// Final: the new release takes all traffic.
    Promoted {
        /// When it was promoted (Unix ms).
        at_ms: u64,
        /// Why: every module passed its steps, or who promoted it.
        reason: String,
    },
    /// Final: traffic is back on the release serving before.
    RolledBack {
        /// When it was rolled back (Unix ms).
        at_ms: u64,
        /// Why: the failing module and its evidence, or who aborted.
        reason: String,
    },
}

/// One module's progress through its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleRollout {
    /// Canary shares in percent, ending at 100.
    pub steps: Vec<f64>,
    /// Index of the current step.
    pub step: usize,
    /// When the current step started (Unix ms); reset on advance and on resume.
    pub step_started_ms: u64,
    /// Least time a step runs, healthy, before it advances (ms).
    pub step_duration_ms: u64,
    /// Requests each version needs in a step before it may advance (overrides
    /// [`AnalysisConfig::min_requests`]).
    pub min_requests: u64,
    /// The last verdict, for status.
    pub last: Option<String>,
}

impl ModuleRollout {
    /// The canary's current share in percent (100 once past the last step).
    pub fn share(&self) -> f64 {
        self.steps.get(self.step).copied().unwrap_or(100.0)
    }

    fn finished(&self) -> bool {
        self.share() >= 100.0
    }

    /// The analysis settings for a look at `now_ms`: this module's minimum requests, and the
    /// final bar only once the step's time is up. The windows are looked at every tick, so a
    /// rollback before then needs the early bar's overwhelming evidence whatever the sample
    /// size (looking often at p < 0.01 would roll back healthy canaries on noise).
    fn step_config(&self, now_ms: u64, config: &AnalysisConfig) -> AnalysisConfig {
        let step_over = now_ms.saturating_sub(self.step_started_ms) >= self.step_duration_ms;
        AnalysisConfig {
            min_requests: self.min_requests,
            z_final: if step_over {
                config.z_final
            } else {
                config.z_early.max(config.z_final)
            },
            ..*config
        }
    }

    /// What the next evaluation would make of these windows, as text, without changing
    /// anything: status shows it beside the same windows' counters, so the verdict and the
    /// numbers on one line always agree (the stored [`ModuleRollout::last`] is as old as the
    /// last tick).
    pub fn assess(
        &self,
        now_ms: u64,
        stable: &VersionWindow,
        canary: &VersionWindow,
        config: &AnalysisConfig,
    ) -> String {
        if self.finished() {
            return "passed every step".to_owned();
        }
        match analyze(stable, canary, &self.step_config(now_ms, config)) {
            Verdict::Rollback { reason } => format!("failing: {reason}"),
            Verdict::Wait { reason } => format!("waiting: {reason}"),
            Verdict::Healthy { summary } => {
                let elapsed = now_ms.saturating_sub(self.step_started_ms);
                if elapsed < self.step_duration_ms {
                    format!(
                        "healthy so far ({summary}); step time {}s of {}s",
                        elapsed / 1000,
                        self.step_duration_ms / 1000
                    )
                } else {
                    format!("healthy, advancing: {summary}")
                }
            }
        }
    }
}

/// A release being rolled out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The release serving before (none on a first deploy).
    pub from: Option<String>,
    /// The release being rolled out.
    pub to: String,
    /// When the rollout started (Unix ms).
    pub started_ms: u64,
    /// Progress of each module in the rollout, by module id.
    pub modules: BTreeMap<String, ModuleRollout>,
    /// Running, or how it ended.
    pub state: RolloutState,
}

/// Something the rollout did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RolloutAction {
    /// A module's canary moved to its next step.
    Advance {
        /// The module's id.
        module: String,
        /// Canary share before, in percent.
        from: f64,
        /// Canary share now, in percent.
        to: f64,
        /// The analysis summary that let it advance.
        evidence: String,
    },
    /// The new release takes all traffic.
    Promote {
        /// Every module passed its steps, or who promoted it.
        reason: String,
    },
    /// Back to the release serving before.
    Rollback {
        /// The failing module and its evidence, or who aborted.
        reason: String,
    },
}

/// One module's rollout settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRules {
    /// Canary shares in percent, one per step, ending at 100.
    pub steps: Vec<f64>,
    /// Least time a step runs, healthy, before it advances (ms).
    pub step_duration_ms: u64,
    /// Requests each version needs in a step before it may advance.
    pub min_requests: u64,
}

impl Rollout {
    /// Starts a rollout of `to` over `from` for the given modules, each at its first step.
    pub fn start(
        from: Option<String>,
        to: String,
        modules: Vec<(String, StepRules)>,
        now_ms: u64,
    ) -> Rollout {
        let modules = modules
            .into_iter()
            .map(|(id, rules)| {
                let module = ModuleRollout {
                    steps: rules.steps,
                    step: 0,
                    step_started_ms: now_ms,
                    step_duration_ms: rules.step_duration_ms,
                    min_requests: rules.min_requests,
                    last: None,
                };
                (id, module)
            })
            .collect();
        Rollout {
            from,
            to,
            started_ms: now_ms,
            modules,
            state: RolloutState::Running,
        }
    }

    /// Whether the rollout is neither promoted nor rolled back.
    pub fn running(&self) -> bool {
        self.state == RolloutState::Running
    }

    /// The canary's share of `module`'s traffic in percent (`None`: not in this rollout).
    pub fn share(&self, module: &str) -> Option<f64> {
        self.running()
            .then(|| self.modules.get(module).map(ModuleRollout::share))
            .flatten()
    }

    /// After a restart: every step's clock starts again (its windows do too).
    pub fn resume(&mut self, now_ms: u64) {
        for module in self.modules.values_mut() {
            module.step_started_ms = now_ms;
        }
    }

    /// Judges every module on its step's windows `(stable, canary)`; advances, promotes or
    /// rolls back.
    pub fn evaluate(
        &mut self,
        now_ms: u64,
        windows: &BTreeMap<String, (VersionWindow, VersionWindow)>,
        config: &AnalysisConfig,
    ) -> Vec<RolloutAction> {
        if !self.running() {
            return Vec::new();
        }
        let mut decisions = Vec::new();
        for (id, module) in self.modules.iter_mut().filter(|(_, m)| !m.finished()) {
            let Some((stable, canary)) = windows.get(id) else {
                continue;
            };
            match analyze(stable, canary, &module.step_config(now_ms, config)) {
                Verdict::Rollback { reason } => {
                    let reason = format!("module '{id}' at {}%: {reason}", module.share());
                    self.state = RolloutState::RolledBack {
                        at_ms: now_ms,
                        reason: reason.clone(),
                    };
                    return vec![RolloutAction::Rollback { reason }];
                }
                Verdict::Wait { reason } => module.last = Some(format!("waiting: {reason}")),
                Verdict::Healthy { summary } => {
                    let elapsed = now_ms.saturating_sub(module.step_started_ms);
                    if elapsed < module.step_duration_ms {
                        module.last = Some(format!(
                            "healthy so far ({summary}); step time {}s of {}s",
                            elapsed / 1000,
                            module.step_duration_ms / 1000
                        ));
                        continue;
                    }
                    let from = module.share();
                    module.step += 1;
                    module.step_started_ms = now_ms;
                    module.last = Some(format!("advanced: {summary}"));
                    decisions.push(RolloutAction::Advance {
                        module: id.clone(),
                        from,
                        to: module.share(),
                        evidence: summary,
                    });
                }
            }
        }
        if self.modules.values().all(ModuleRollout::finished) {
            let reason = "every module passed its steps".to_owned();
            self.state = RolloutState::Promoted {
                at_ms: now_ms,
                reason: reason.clone(),
            };
            decisions.push(RolloutAction::Promote { reason });
        }
        decisions
    }

    /// A person promotes the release now.
    pub fn promote(&mut self, now_ms: u64, by: &str) -> Option<RolloutAction> {
        self.running().then(|| {
            let reason = format!("promoted by {by}");
            self.state = RolloutState::Promoted {
                at_ms: now_ms,
                reason: reason.clone(),
            };
            RolloutAction::Promote { reason }
        })
    }

    /// A person aborts the rollout: back to the stable release.
    pub fn abort(&mut self, now_ms: u64, by: &str) -> Option<RolloutAction> {
        self.running().then(|| {
            let reason = format!("aborted by {by}");
            self.state = RolloutState::RolledBack {
                at_ms: now_ms,
                reason: reason.clone(),
            };
            RolloutAction::Rollback { reason }
        })
    }
}

#[cfg(test)]
mod tests;
