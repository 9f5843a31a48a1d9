//! What the reconciler does next, as a pure function of what it knows: the release the fleet
//! wants here, what the node serves, a node-level rollout in progress, the releases in the
//! node's store, and what it has already given up on. Returning to an earlier release that the
//! store still holds is an instant switch (`Rollback`); anything else goes through the node's
//! own deploy, and so through its canary.

use std::collections::BTreeSet;

/// The node as the reconciler sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Local {
    /// Content key of the current release.
    pub current_key: Option<String>,
    /// A node-level rollout in progress: (release id, content key).
    pub rolling_to: Option<(String, String)>,
    /// Releases in the store that can be switched to: (release id, content key), newest first.
    pub switchable: Vec<(String, String)>,
    /// Keys this node rolled back or could not build (for the current generation).
    pub rejected: BTreeSet<String>,
}

/// The next action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing to do (converged, nothing wanted, or the wanted release was rejected here).
    Idle,
    /// A node-level rollout towards the wanted release is running: let it finish.
    Wait,
    /// A node-level rollout towards the wanted release is running and a person promoted the
    /// fleet rollout: promote it now.
    Promote,
    /// A node-level rollout towards something else is running: abort it first.
    Abort,
    /// Switch at once to this release id from the store.
    Switch(String),
    /// Deploy the wanted release (fetching artifacts first).
    Deploy,
}

/// What the fleet asks of this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wanted<'a> {
    /// Content key of the release the fleet wants here.
    pub key: Option<&'a str>,
    /// It is the release to go back to (a fleet rollback, or a node outside the targets).
    pub returning: bool,
    /// A person promoted the fleet rollout: no node-level canary is awaited.
    pub forced: bool,
}

/// The next action for `wanted`, given what the node has.
pub(crate) fn decide(wanted: Wanted<'_>, local: &Local) -> Action {
    let Wanted {
        key,
        returning,
        forced,
    } = wanted;
    let Some(wanted) = key else {
        return Action::Idle;
    };
    if let Some((_, to_key)) = &local.rolling_to {
        return match (to_key == wanted, forced) {
            (true, true) => Action::Promote,
            (true, false) => Action::Wait,
            (false, _) => Action::Abort,
        };
    }
    if local.current_key.as_deref() == Some(wanted) || local.rejected.contains(wanted) {
        return Action::Idle;
    }
    if returning && let Some((id, _)) = local.switchable.iter().find(|(_, key)| key == wanted) {
        return Action::Switch(id.clone());
    }
    Action::Deploy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(current: &str) -> Local {
        Local {
            current_key: Some(current.into()),
            switchable: vec![("r1-x".into(), "k1".into())],
            ..Local::default()
        }
    }

    fn decide(key: Option<&str>, returning: bool, local: &Local) -> Action {
        super::decide(
            Wanted {
                key,
                returning,
                forced: false,
            },
            local,
        )
    }

    #[test]
    fn converged_or_nothing_wanted_is_idle() {
        assert_eq!(decide(None, false, &local("k1")), Action::Idle);
        assert_eq!(decide(Some("k1"), false, &local("k1")), Action::Idle);
    }

    #[test]
    fn forward_deploys_and_backward_switches() {
        assert_eq!(decide(Some("k2"), false, &local("k1")), Action::Deploy);
        assert_eq!(
            decide(Some("k1"), true, &local("k2")),
            Action::Switch("r1-x".into())
        );
        // Going back to something the store no longer has: deploy it.
        assert_eq!(decide(Some("k0"), true, &local("k2")), Action::Deploy);
    }

    #[test]
    fn a_rollout_in_progress_is_awaited_or_aborted() {
        let mut here = local("k1");
        here.rolling_to = Some(("r2-y".into(), "k2".into()));
        assert_eq!(decide(Some("k2"), false, &here), Action::Wait);
        assert_eq!(decide(Some("k1"), true, &here), Action::Abort);
    }

    #[test]
    fn a_person_promoting_the_fleet_promotes_the_node_canary() {
        let mut here = local("k1");
        here.rolling_to = Some(("r2-y".into(), "k2".into()));
        let forced = |key| Wanted {
            key: Some(key),
            returning: false,
            forced: true,
        };
        assert_eq!(super::decide(forced("k2"), &here), Action::Promote);
        assert_eq!(super::decide(forced("k3"), &here), Action::Abort);
        here.rolling_to = None;
        assert_eq!(super::decide(forced("k2"), &here), Action::Deploy);
    }

    #[test]
    fn a_rejected_release_is_not_retried() {
        let mut here = local("k1");
        here.rejected.insert("k2".into());
        assert_eq!(decide(Some("k2"), false, &here), Action::Idle);
    }
}
