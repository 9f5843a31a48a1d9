//! The planner step by step, with node reports written out by hand.

use super::*;

fn node(id: &str, zone: &str, key: Option<&str>) -> NodeView {
    NodeView {
        id: id.into(),
        labels: BTreeMap::from([("zone".into(), zone.into())]),
        release_key: key.map(Into::into),
        rejected: Vec::new(),
    }
}

fn fleet(keys: [Option<&str>; 4]) -> Vec<NodeView> {
    let zones = ["eu", "eu", "us", "us"];
    ["a", "b", "c", "d"]
        .iter()
        .zip(zones)
        .zip(keys)
        .map(|((id, zone), key)| node(id, zone, key))
        .collect()
}

fn spec(count: Option<usize>, wave_size: usize) -> CanarySpec {
    CanarySpec {
        count,
        wave_size,
        ..CanarySpec::default()
    }
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn canary_by_selector_count_and_percent() {
    let nodes = fleet([None; 4]);
    let by_zone = CanarySpec {
        selector: BTreeMap::from([("zone".into(), "us".into())]),
        ..CanarySpec::default()
    };
    assert_eq!(select_canary(&by_zone, &nodes).unwrap(), ids(&["c", "d"]));
    let one_us = CanarySpec {
        count: Some(1),
        ..by_zone.clone()
    };
    assert_eq!(select_canary(&one_us, &nodes).unwrap(), ids(&["c"]));
    let quarter = CanarySpec {
        percent: Some(25),
        ..CanarySpec::default()
    };
    assert_eq!(select_canary(&quarter, &nodes).unwrap(), ids(&["a"]));
    let nowhere = CanarySpec {
        selector: BTreeMap::from([("zone".into(), "mars".into())]),
        ..CanarySpec::default()
    };
    assert!(matches!(
        select_canary(&nowhere, &nodes),
        Err(PlanError::NoCanary(_))
    ));
    assert!(select_canary(&spec(Some(1), 0), &[]).is_err());
    assert!(
        select_canary(&CanarySpec::default(), &[])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn canary_then_waves_then_complete() {
    let mut rollout = start("k2", &spec(Some(1), 2), &fleet([Some("k1"); 4])).unwrap();
    assert_eq!(rollout.targets, ids(&["a"]));
    assert_eq!(target_for(&rollout, "a"), Target::New);
    assert_eq!(target_for(&rollout, "b"), Target::Previous);
    // The canary has not switched yet: wait.
    assert_eq!(step(&rollout, &fleet([Some("k1"); 4])), None);
    // The canary runs it: the next wave (two nodes) is released.
    rollout = step(
        &rollout,
        &fleet([Some("k2"), Some("k1"), Some("k1"), Some("k1")]),
    )
    .unwrap();
    assert_eq!(rollout.targets, ids(&["a", "b", "c"]));
    assert_eq!(rollout.waves, 1);
    assert_eq!(
        step(
            &rollout,
            &fleet([Some("k2"), Some("k2"), Some("k1"), Some("k1")])
        ),
        None
    );
    rollout = step(
        &rollout,
        &fleet([Some("k2"), Some("k2"), Some("k2"), Some("k1")]),
    )
    .unwrap();
    assert_eq!(rollout.targets.len(), 4);
    rollout = step(&rollout, &fleet([Some("k2"); 4])).unwrap();
    assert!(
        matches!(rollout.stage, Stage::Complete { .. }),
        "{rollout:?}"
    );
    assert_eq!(target_for(&rollout, "someone-new"), Target::New);
    assert_eq!(step(&rollout, &fleet([Some("k2"); 4])), None);
}

#[test]
fn one_rejection_rolls_the_fleet_back() {
    let rollout = start("k2", &spec(Some(2), 0), &fleet([Some("k1"); 4])).unwrap();
    let mut nodes = fleet([Some("k2"), Some("k1"), Some("k1"), Some("k1")]);
    nodes[1].rejected.push("k2".into());
    let next = step(&rollout, &nodes).unwrap();
    assert!(
        matches!(&next.stage, Stage::RolledBack { reason } if reason.contains('b')),
        "{next:?}"
    );
    for id in ["a", "b", "c", "d"] {
        assert_eq!(target_for(&next, id), Target::Previous);
    }
    // A rejection of another release does not count.
    let mut other = fleet([Some("k2"), Some("k2"), Some("k1"), Some("k1")]);
    other[0].rejected.push("k0".into());
    assert_eq!(step(&rollout, &other).unwrap().waves, 1);
}

#[test]
fn after_a_rollback_nodes_are_judged_against_the_previous_release() {
    let rollout = start("k2", &spec(Some(2), 0), &fleet([Some("k1"); 4])).unwrap();
    let mut nodes = fleet([Some("k2"), Some("k1"), Some("k1"), Some("k1")]);
    nodes[1].rejected.push("k2".into());
    let rolled_back = step(&rollout, &nodes).unwrap();
    // "a" still serves k2: it is on its way back; "b" rejected k2 and never left k1.
    let now = standing(&rolled_back, Some("k1"), &nodes);
    assert_eq!(now.converged, ["b", "c", "d"]);
    assert_eq!(now.pending, ["a"]);
    assert_eq!(now.rejected, ["b"]);
    nodes[0].release_key = Some("k1".into());
    let settled = standing(&rolled_back, Some("k1"), &nodes);
    assert_eq!(settled.converged, ["a", "b", "c", "d"]);
    assert!(settled.pending.is_empty());
    // While rolling, it is the targets' progress on the new release.
    assert_eq!(
        standing(&rollout, Some("k1"), &nodes),
        progress(&rollout, &nodes)
    );
    // Complete: every live node, targeted or not, should run the new release.
    let done = promote(&rollout, "ops").unwrap();
    let all_new = fleet([Some("k2"), Some("k2"), Some("k2"), Some("k1")]);
    let now = standing(&done, Some("k1"), &all_new);
    assert_eq!(
        (now.converged.len(), now.pending),
        (3, vec!["d".to_owned()])
    );
}

#[test]
fn a_silent_target_keeps_the_rollout_waiting() {
    let rollout = start("k2", &spec(Some(2), 0), &fleet([Some("k1"); 4])).unwrap();
    let without_b: Vec<NodeView> = fleet([Some("k2"), None, Some("k1"), Some("k1")])
        .into_iter()
        .filter(|n| n.id != "b")
        .collect();
    assert_eq!(step(&rollout, &without_b), None);
    assert_eq!(
        progress(&rollout, &without_b).pending,
        vec!["b".to_string()]
    );
}

#[test]
fn everyone_at_once_and_late_joiners() {
    let rollout = start("k2", &CanarySpec::default(), &[]).unwrap();
    assert!(rollout.targets.is_empty());
    assert_eq!(step(&rollout, &[]), None);
    let nodes = fleet([Some("k1"); 4]);
    let next = step(&rollout, &nodes).unwrap();
    assert_eq!(next.targets.len(), 4);
}

#[test]
fn manual_promote_and_rollback() {
    let rollout = start("k2", &spec(Some(1), 0), &fleet([Some("k1"); 4])).unwrap();
    let promoted = promote(&rollout, "ops").unwrap();
    assert!(matches!(promoted.stage, Stage::Complete { .. }));
    assert_eq!(promote(&promoted, "ops"), None);
    let back = rollback(&promoted, "ops").unwrap();
    assert_eq!(target_for(&back, "a"), Target::Previous);
    assert_eq!(rollback(&back, "ops"), None);
    assert!(back.log.last().unwrap().contains("ops"));
}

#[test]
fn the_same_inputs_give_the_same_plan() {
    let nodes = fleet([Some("k1"); 4]);
    let a = start("k2", &spec(Some(2), 1), &nodes).unwrap();
    let mut shuffled = nodes.clone();
    shuffled.reverse();
    let b = start("k2", &spec(Some(2), 1), &shuffled).unwrap();
    assert_eq!(a, b);
}
