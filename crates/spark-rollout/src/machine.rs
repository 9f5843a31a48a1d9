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
    Running,
    Promoted { at_ms: u64, reason: String },
    RolledBack { at_ms: u64, reason: String },
}

/// One module's progress through its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleRollout {
    /// Canary shares in percent, ending at 100.
    pub steps: Vec<f64>,
    /// Index of the current step.
    pub step: usize,
    pub step_started_ms: u64,
    pub step_duration_ms: u64,
    pub min_requests: u64,
    /// The last verdict, for status.
    pub last: Option<String>,
}

impl ModuleRollout {
    pub fn share(&self) -> f64 {
        self.steps.get(self.step).copied().unwrap_or(100.0)
    }

    fn finished(&self) -> bool {
        self.share() >= 100.0
    }
}

/// A release being rolled out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The release serving before (none on a first deploy).
    pub from: Option<String>,
    /// The release being rolled out.
    pub to: String,
    pub started_ms: u64,
    pub modules: BTreeMap<String, ModuleRollout>,
    pub state: RolloutState,
}

/// Something the rollout did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    Advance {
        module: String,
        from: f64,
        to: f64,
        evidence: String,
    },
    Promote {
        reason: String,
    },
    Rollback {
        reason: String,
    },
}

/// One module's rollout settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRules {
    pub steps: Vec<f64>,
    pub step_duration_ms: u64,
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
    ) -> Vec<Decision> {
        if !self.running() {
            return Vec::new();
        }
        let mut decisions = Vec::new();
        for (id, module) in self.modules.iter_mut().filter(|(_, m)| !m.finished()) {
            let Some((stable, canary)) = windows.get(id) else {
                continue;
            };
            let config = AnalysisConfig {
                min_requests: module.min_requests,
                ..*config
            };
            match analyze(stable, canary, &config) {
                Verdict::Rollback { reason } => {
                    let reason = format!("module '{id}' at {}%: {reason}", module.share());
                    self.state = RolloutState::RolledBack {
                        at_ms: now_ms,
                        reason: reason.clone(),
                    };
                    return vec![Decision::Rollback { reason }];
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
                    decisions.push(Decision::Advance {
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
            decisions.push(Decision::Promote { reason });
        }
        decisions
    }

    /// A person promotes the release now.
    pub fn promote(&mut self, now_ms: u64, by: &str) -> Option<Decision> {
        self.running().then(|| {
            let reason = format!("promoted by {by}");
            self.state = RolloutState::Promoted {
                at_ms: now_ms,
                reason: reason.clone(),
            };
            Decision::Promote { reason }
        })
    }

    /// A person aborts the rollout: back to the stable release.
    pub fn abort(&mut self, now_ms: u64, by: &str) -> Option<Decision> {
        self.running().then(|| {
            let reason = format!("aborted by {by}");
            self.state = RolloutState::RolledBack {
                at_ms: now_ms,
                reason: reason.clone(),
            };
            Decision::Rollback { reason }
        })
    }
}

#[cfg(test)]
mod tests;
