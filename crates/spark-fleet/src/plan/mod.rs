//! The fleet canary, as pure functions: no I/O, no clocks. Node reports and the rollout go in,
//! the next rollout comes out; whoever applies it does so with compare-and-set, so running the
//! same step on several machines at once is harmless (one write wins, the others find the new
//! state and have nothing left to do).
//!
//! A rollout first *targets* a canary set of nodes (a label selector and/or a count or a
//! percentage, chosen by node id so the choice is reproducible). Each targeted node runs the
//! release through its own node-level canary. The verdict aggregates:
//! - any targeted node that rolled the release back → the fleet rolls back (every node returns
//!   to the previous release);
//! - every targeted node runs it → the next wave of untargeted live nodes is targeted
//!   (`wave_size` at a time, 0 = all the rest);
//! - nobody left untargeted → complete: every node, including ones that join later, runs it;
//! - otherwise wait. A targeted node that is down keeps the rollout waiting, on purpose: the
//!   verdict never treats "no news" as "good news".

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Where a fleet rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "kebab-case")]
pub enum Stage {
    /// Targeted nodes are taking the release.
    Rolling,
    /// Every node runs the release.
    Complete {
        /// How many nodes ran it, or who promoted it.
        reason: String,
    },
    /// Every node returns to the previous release.
    RolledBack {
        /// The nodes that rolled it back, or who rolled it back.
        reason: String,
    },
}

/// How the first nodes are chosen, and how many follow at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanarySpec {
    /// Only nodes carrying all these labels are canary candidates.
    pub selector: BTreeMap<String, String>,
    /// At most this many canary nodes.
    pub count: Option<usize>,
    /// At most this percentage (rounded up) of the candidates.
    pub percent: Option<u32>,
    /// Nodes per wave after the canary; 0 = all the rest at once.
    pub wave_size: usize,
}

impl CanarySpec {
    /// No selector, count or percentage: every node is targeted at once (still aggregated: one
    /// node's rollback rolls the fleet back).
    pub fn is_everyone(&self) -> bool {
        self.selector.is_empty() && self.count.is_none() && self.percent.is_none()
    }
}

/// A fleet rollout of one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetRollout {
    /// The content key of the release rolled out.
    pub release_key: String,
    /// Nodes told to run it so far (the canary, then each wave).
    pub targets: BTreeSet<String>,
    /// The canary nodes (the first targets).
    pub canary: BTreeSet<String>,
    /// Waves released after the canary.
    pub waves: usize,
    /// Nodes per wave after the canary; 0 = all the rest at once.
    pub wave_size: usize,
    /// Rolling, or how it ended.
    pub stage: Stage,
    /// A person promoted it: nodes skip what is left of their own canary and take the
    /// release at once (a manual promote wins at every level).
    #[serde(default)]
    pub forced: bool,
    /// What happened, oldest first (bounded).
    pub log: Vec<String>,
}

/// What the planner knows of a live node (from its heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// The node's id.
    pub id: String,
    /// The node's labels, matched by the canary selector.
    pub labels: BTreeMap<String, String>,
    /// Content key of the release it serves.
    pub release_key: Option<String>,
    /// Release keys it rolled back locally (its node-level canary judged them worse, or it
    /// could not build them).
    pub rejected: Vec<String>,
}

/// Which release a node should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The release being rolled out.
    New,
    /// The release before it (on a first deploy: whatever the node has).
    Previous,
}

const LOG_LIMIT: usize = 32;

/// Why a rollout cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No live node is a canary candidate (the selector is in the message, `(any)` without one).
    #[error("no live node matches the canary selection {0}: start nodes first (spark up --fleet)")]
    NoCanary(String),
}

/// Starts a rollout of `release_key` over the live `nodes`.
pub fn start(
    release_key: &str,
    spec: &CanarySpec,
    nodes: &[NodeView],
) -> Result<FleetRollout, PlanError> {
    let canary = select_canary(spec, nodes)?;
    let what = if spec.is_everyone() {
        "every node at once".to_owned()
    } else {
        format!("canary on {}", join(&canary))
    };
    Ok(FleetRollout {
        release_key: release_key.to_owned(),
        targets: canary.clone(),
        canary,
        waves: 0,
        wave_size: spec.wave_size,
        stage: Stage::Rolling,
        forced: false,
        log: vec![format!("started: {what}")],
    })
}

/// The canary nodes: candidates by selector, sorted by id, cut to count and percentage.
/// With no live node at all, the set is empty and the first nodes to join take it.
pub fn select_canary(spec: &CanarySpec, nodes: &[NodeView]) -> Result<BTreeSet<String>, PlanError> {
    let mut candidates: Vec<&NodeView> = nodes
        .iter()
        .filter(|n| {
            spec.selector
                .iter()
                .all(|(k, v)| n.labels.get(k) == Some(v))
        })
        .collect();
    candidates.sort_by(|a, b| a.id.cmp(&b.id));
    if candidates.is_empty() && !spec.is_everyone() {
        let selector: Vec<String> = spec
            .selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        return Err(PlanError::NoCanary(if selector.is_empty() {
            "(any)".to_owned()
        } else {
            selector.join(",")
        }));
    }
    let mut take = candidates.len();
    if let Some(count) = spec.count {
        take = take.min(count.max(1));
    }
    if let Some(percent) = spec.percent {
        let share = (candidates.len() * percent as usize).div_ceil(100).max(1);
        take = take.min(share);
    }
    Ok(candidates
        .into_iter()
        .take(take)
        .map(|n| n.id.clone())
        .collect())
}

/// Which release `node` should run under `rollout`.
pub fn target_for(rollout: &FleetRollout, node: &str) -> Target {
    match &rollout.stage {
        Stage::Complete { .. } => Target::New,
        Stage::RolledBack { .. } => Target::Previous,
        Stage::Rolling if rollout.targets.contains(node) => Target::New,
        Stage::Rolling => Target::Previous,
    }
}

/// Where the targeted nodes stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Targeted nodes serving the release.
    pub converged: Vec<String>,
    /// Targeted nodes not (yet) serving it, including silent ones.
    pub pending: Vec<String>,
    /// Targeted nodes that rolled it back.
    pub rejected: Vec<String>,
}

/// Sorts the targeted nodes by what their heartbeats say of the release.
pub fn progress(rollout: &FleetRollout, nodes: &[NodeView]) -> Progress {
    let mut progress = Progress::default();
    for id in &rollout.targets {
        let view = nodes.iter().find(|n| &n.id == id);
        match view {
            Some(n) if n.rejected.contains(&rollout.release_key) => {
                progress.rejected.push(id.clone())
            }
            Some(n) if n.release_key.as_deref() == Some(rollout.release_key.as_str()) => {
                progress.converged.push(id.clone())
            }
            _ => progress.pending.push(id.clone()),
        }
    }
    progress
}

/// Where every node stands against what it should run *now*, for display: while rolling,
/// the targets against the new release ([`progress`]); once complete, every live node and
/// target against the new release; once rolled back, against `previous_key` (the release
/// they return to; `None` on a first deploy: serving nothing). `rejected` lists the nodes
/// that rejected the new release, whether or not they are back yet.
pub fn standing(
    rollout: &FleetRollout,
    previous_key: Option<&str>,
    nodes: &[NodeView],
) -> Progress {
    let expected = match &rollout.stage {
        Stage::Rolling => return progress(rollout, nodes),
        Stage::Complete { .. } => Some(rollout.release_key.as_str()),
        Stage::RolledBack { .. } => previous_key,
    };
    let everyone: BTreeSet<&str> = rollout
        .targets
        .iter()
        .map(String::as_str)
        .chain(nodes.iter().map(|n| n.id.as_str()))
        .collect();
    let mut standing = Progress::default();
    for id in everyone {
        let view = nodes.iter().find(|n| n.id == id);
        if view.is_some_and(|n| n.rejected.contains(&rollout.release_key)) {
            standing.rejected.push(id.to_owned());
        }
        match view {
            Some(n) if n.release_key.as_deref() == expected => {
                standing.converged.push(id.to_owned())
            }
            _ => standing.pending.push(id.to_owned()),
        }
    }
    standing
}

/// One planning step: the next rollout when something changes, else `None`.
pub fn step(rollout: &FleetRollout, nodes: &[NodeView]) -> Option<FleetRollout> {
    if rollout.stage != Stage::Rolling {
        return None;
    }
    let progress = progress(rollout, nodes);
    let mut next = rollout.clone();
    if !progress.rejected.is_empty() {
        let reason = format!("rolled back on {}", progress.rejected.join(", "));
        next.finish(Stage::RolledBack { reason });
        return Some(next);
    }
    if !progress.pending.is_empty() || rollout.targets.is_empty() && nodes.is_empty() {
        return None;
    }
    let mut rest: Vec<&str> = nodes
        .iter()
        .map(|n| n.id.as_str())
        .filter(|id| !rollout.targets.contains(*id))
        .collect();
    rest.sort_unstable();
    if rest.is_empty() {
        let reason = format!("{} node(s) run it", rollout.targets.len());
        next.finish(Stage::Complete { reason });
        return Some(next);
    }
    let take = if rollout.wave_size == 0 {
        rest.len()
    } else {
        rollout.wave_size
    };
    let wave: BTreeSet<String> = rest.into_iter().take(take).map(str::to_owned).collect();
    next.waves += 1;
    next.note(format!("wave {}: {}", next.waves, join(&wave)));
    next.targets.extend(wave);
    Some(next)
}

/// A person promotes the rollout: every node takes the release now.
pub fn promote(rollout: &FleetRollout, by: &str) -> Option<FleetRollout> {
    (rollout.stage == Stage::Rolling).then(|| {
        let mut next = rollout.clone();
        next.forced = true;
        next.finish(Stage::Complete {
            reason: format!("promoted by {by}"),
        });
        next
    })
}

/// A person rolls the rollout back (also after completion: back to the previous release).
pub fn rollback(rollout: &FleetRollout, by: &str) -> Option<FleetRollout> {
    (!matches!(rollout.stage, Stage::RolledBack { .. })).then(|| {
        let mut next = rollout.clone();
        next.finish(Stage::RolledBack {
            reason: format!("rolled back by {by}"),
        });
        next
    })
}

impl FleetRollout {
    fn finish(&mut self, stage: Stage) {
        let line = match &stage {
            Stage::Complete { reason } => format!("complete: {reason}"),
            Stage::RolledBack { reason } => format!("rolled back: {reason}"),
            Stage::Rolling => "rolling".to_owned(),
        };
        self.stage = stage;
        self.note(line);
    }

    fn note(&mut self, line: String) {
        self.log.push(line);
        let excess = self.log.len().saturating_sub(LOG_LIMIT);
        self.log.drain(..excess);
    }
}

fn join(ids: &BTreeSet<String>) -> String {
    if ids.is_empty() {
        "(no node yet)".to_owned()
    } else {
        ids.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}
