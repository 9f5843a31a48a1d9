//! Rollout progress: where the nodes' planning steps have taken a fleet rollout, one KV entry
//! per application (`app.<name>`) in [`ROLLOUTS_BUCKET`](crate::ROLLOUTS_BUCKET), apart from
//! the desired state so that nodes never need to write what deployers write.
//!
//! The decision worth knowing: **the split is the permission boundary.** Desired state
//! (release, previous release, canary selection, a person's promote or rollback) is written
//! only by deployers; nodes may write progress (which nodes a rollout targets so far, and
//! whether the canary verdict completed or rolled it back) and their own heartbeat. The
//! effective rollout ([`effective`]) is, in order:
//! 1. the desired state's own rollout when a person ended it (promoted or rolled back): a
//!    person's word is final at every level;
//! 2. else the progress written for the same generation and release;
//! 3. else the rollout the deploy started.
//!
//! So the most a node's credentials can do is move a rollout between releases a deployer (and,
//! with trusted keys, a signature) already allowed: it can never pick a release, change one,
//! or skip nodes' canaries (`forced` is read from the desired state only).

use serde::{Deserialize, Serialize};

use crate::desired::{read, write};
use crate::plan::{FleetRollout, Stage};
use crate::{DesiredApp, Fleet, FleetError, Versioned};

/// A fleet rollout as the nodes' planning steps left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutProgress {
    /// The application (its key is `app.<name>`).
    pub app: String,
    /// The desired generation this progress belongs to; progress of another generation is
    /// ignored.
    pub generation: u64,
    /// The rollout after the last planning step.
    pub rollout: FleetRollout,
    /// Who wrote it (`node <id>`).
    pub updated_by: String,
}

/// The rollout in force for `desired`, given the progress read beside it (see the module
/// documentation for the order). Pure: the same inputs give the same answer on every machine.
pub fn effective(desired: &DesiredApp, progress: Option<&RolloutProgress>) -> FleetRollout {
    let own = &desired.rollout;
    if own.stage != Stage::Rolling {
        return own.clone();
    }
    match progress {
        Some(p)
            if p.app == desired.app
                && p.generation == desired.generation
                && p.rollout.release_key == own.release_key =>
        {
            let mut rollout = p.rollout.clone();
            rollout.forced = own.forced;
            rollout
        }
        _ => own.clone(),
    }
}

impl DesiredApp {
    /// This desired state with its rollout replaced by the effective one ([`effective`]).
    pub fn with_progress(mut self, progress: Option<&RolloutProgress>) -> DesiredApp {
        self.rollout = effective(&self, progress);
        self
    }
}

impl Fleet {
    /// The rollout progress of `app` and its revision, if any was written.
    pub async fn progress(
        &self,
        app: &str,
    ) -> Result<Option<Versioned<RolloutProgress>>, FleetError> {
        read(&self.rollouts, app, "reading rollout progress").await
    }

    /// Writes `progress` if the entry is still at `expected` (`None`: only if there is none),
    /// like [`Fleet::put_desired`]: a lost race is [`FleetError::Conflict`] or
    /// [`FleetError::AlreadyExists`], with nothing written.
    pub async fn put_progress(
        &self,
        progress: &RolloutProgress,
        expected: Option<u64>,
    ) -> Result<u64, FleetError> {
        write(
            &self.rollouts,
            &progress.app,
            progress,
            expected,
            "writing rollout progress",
        )
        .await
    }

    /// `app`'s desired state with the effective rollout ([`effective`]) and the desired
    /// state's revision (what a deployer's compare-and-set needs).
    pub async fn effective(&self, app: &str) -> Result<Option<Versioned<DesiredApp>>, FleetError> {
        let Some(desired) = self.desired(app).await? else {
            return Ok(None);
        };
        let progress = self.progress(app).await?;
        Ok(Some(Versioned {
            value: desired
                .value
                .with_progress(progress.as_ref().map(|p| &p.value)),
            revision: desired.revision,
        }))
    }

    /// Every application's effective desired state ([`Fleet::effective`]).
    pub async fn effective_apps(&self) -> Result<Vec<Versioned<DesiredApp>>, FleetError> {
        let mut apps = self.apps().await?;
        for app in &mut apps {
            if let Some(progress) = self.progress(&app.value.app).await? {
                app.value.rollout = effective(&app.value, Some(&progress.value));
            }
        }
        Ok(apps)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::FleetRelease;
    use crate::plan::{self, CanarySpec, NodeView};

    fn desired(generation: u64) -> DesiredApp {
        let release = FleetRelease {
            manifest: format!("v{generation}"),
            components: BTreeMap::new(),
            note: String::new(),
            signature: None,
        };
        let nodes = [node("a"), node("b")];
        let spec = CanarySpec {
            count: Some(1),
            ..CanarySpec::default()
        };
        DesiredApp {
            app: "shop".into(),
            generation,
            rollout: plan::start(&release.key(), &spec, &nodes).unwrap(),
            release,
            previous: None,
            updated_by: "ops".into(),
            intent: None,
        }
    }

    fn node(id: &str) -> NodeView {
        NodeView {
            id: id.into(),
            ..NodeView::default()
        }
    }

    fn progressed(desired: &DesiredApp) -> RolloutProgress {
        let mut rollout = desired.rollout.clone();
        rollout.targets = BTreeSet::from(["a".into(), "b".into()]);
        rollout.waves = 1;
        RolloutProgress {
            app: desired.app.clone(),
            generation: desired.generation,
            rollout,
            updated_by: "node a".into(),
        }
    }

    #[test]
    fn progress_of_the_same_generation_and_release_is_in_force() {
        let d = desired(3);
        let p = progressed(&d);
        assert_eq!(effective(&d, None), d.rollout);
        assert_eq!(effective(&d, Some(&p)), p.rollout);
    }

    #[test]
    fn progress_of_another_generation_release_or_app_is_ignored() {
        let d = desired(3);
        let mut older = progressed(&d);
        older.generation = 2;
        assert_eq!(effective(&d, Some(&older)), d.rollout);
        let mut other_release = progressed(&d);
        other_release.rollout.release_key = "000000000000".into();
        assert_eq!(effective(&d, Some(&other_release)), d.rollout);
        let mut other_app = progressed(&d);
        other_app.app = "other".into();
        assert_eq!(effective(&d, Some(&other_app)), d.rollout);
    }

    #[test]
    fn a_persons_final_word_wins_and_nodes_cannot_force() {
        let d = desired(3);
        let mut p = progressed(&d);
        p.rollout.forced = true;
        assert!(
            !effective(&d, Some(&p)).forced,
            "forced comes from deployers only"
        );
        let promoted = DesiredApp {
            rollout: plan::promote(&d.rollout, "ops").unwrap(),
            ..d.clone()
        };
        let seen = effective(&promoted, Some(&p));
        assert!(seen.forced);
        assert!(matches!(seen.stage, Stage::Complete { .. }));
        let rolled_back = DesiredApp {
            rollout: plan::rollback(&d.rollout, "ops").unwrap(),
            ..d
        };
        assert!(matches!(
            effective(&rolled_back, Some(&p)).stage,
            Stage::RolledBack { .. }
        ));
    }
}
