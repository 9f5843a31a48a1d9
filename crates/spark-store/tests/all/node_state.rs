//! The node pointer, the rollout and the event log: atomic transitions.

use spark_store::{NewEvent, NodeState, ReleaseId, RolloutChange, Store, StoreError, Transition};

use crate::{release, store};

fn unknown() -> ReleaseId {
    ReleaseId::parse("r99-0123456789ab").unwrap()
}

#[test]
fn set_current_refuses_unknown_releases() {
    let (_dir, store) = store();
    assert_eq!(store.current().unwrap(), None);
    let r1 = release(&store, "v1", &[("a", b"1")]);
    store.set_current(&r1.id).unwrap();
    let err = store.set_current(&unknown()).unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownRelease(ref id) if *id == unknown()),
        "{err:?}"
    );
    assert_eq!(store.current().unwrap(), Some(r1.id));
}

#[test]
fn commit_applies_both_or_neither() {
    let dir = tempfile::tempdir().unwrap();
    let (r1, r2);
    {
        let store = Store::open(dir.path()).unwrap();
        r1 = release(&store, "v1", &[("a", b"1")]);
        r2 = release(&store, "v2", &[("a", b"2")]);
        store
            .commit(Transition {
                current: Some(r1.id.clone()),
                rollout: RolloutChange::Set(b"canary r2 at 5%".to_vec()),
            })
            .unwrap();
        // The pointer part fails, so the rollout part must not be applied either.
        let err = store
            .commit(Transition {
                current: Some(unknown()),
                rollout: RolloutChange::Set(b"should never be stored".to_vec()),
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::UnknownRelease(_)));
        let err = store
            .commit(Transition {
                current: Some(unknown()),
                rollout: RolloutChange::Clear,
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::UnknownRelease(_)));
        let expected = NodeState {
            current: Some(r1.id.clone()),
            rollout: Some(b"canary r2 at 5%".to_vec()),
        };
        assert_eq!(store.state().unwrap(), expected);
    }
    {
        // Neither half of the failed transitions is there after a reopen either.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.current().unwrap(), Some(r1.id.clone()));
        assert_eq!(store.rollout().unwrap(), Some(b"canary r2 at 5%".to_vec()));
        // A promotion: both halves at once.
        store
            .commit(Transition {
                current: Some(r2.id.clone()),
                rollout: RolloutChange::Clear,
            })
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.state().unwrap(),
        NodeState {
            current: Some(r2.id.clone()),
            rollout: None
        }
    );
}

#[test]
fn keep_leaves_the_rollout_and_none_leaves_the_pointer() {
    let (_dir, store) = store();
    let r1 = release(&store, "v1", &[("a", b"1")]);
    store.put_rollout(b"state 1").unwrap();
    assert_eq!(store.current().unwrap(), None);
    store
        .commit(Transition {
            current: Some(r1.id.clone()),
            rollout: RolloutChange::Keep,
        })
        .unwrap();
    assert_eq!(store.rollout().unwrap(), Some(b"state 1".to_vec()));
    store.put_rollout(b"state 2").unwrap();
    assert_eq!(store.current().unwrap(), Some(r1.id.clone()));
    assert_eq!(store.rollout().unwrap(), Some(b"state 2".to_vec()));
    store.clear_rollout().unwrap();
    store.clear_rollout().unwrap();
    assert_eq!(store.rollout().unwrap(), None);
    assert_eq!(store.current().unwrap(), Some(r1.id));
}

#[test]
fn commit_with_event_logs_only_what_happened() {
    let (_dir, store) = store();
    let r1 = release(&store, "v1", &[("a", b"1")]);
    let seq = store
        .commit_with_event(
            Transition {
                current: Some(r1.id.clone()),
                rollout: RolloutChange::Keep,
            },
            NewEvent {
                kind: "promote",
                release: Some(&r1.id),
                detail: "all steps passed",
                at_ms: 10,
            },
        )
        .unwrap();
    assert_eq!(seq, 1);
    let bad = unknown();
    assert!(
        store
            .commit_with_event(
                Transition {
                    current: Some(bad.clone()),
                    rollout: RolloutChange::Clear,
                },
                NewEvent {
                    kind: "promote",
                    release: Some(&bad),
                    detail: "never happened",
                    at_ms: 20,
                },
            )
            .is_err()
    );
    let events = store.events(10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "promote");
    assert_eq!(events[0].release, Some(r1.id));
    assert_eq!(events[0].detail, "all steps passed");
    assert_eq!(events[0].at_ms, 10);
}

#[test]
fn events_are_append_only_newest_first() {
    let (_dir, store) = store();
    let r1 = release(&store, "v1", &[("a", b"1")]);
    for i in 0..5u64 {
        let seq = store
            .append_event("step", Some(&r1.id), &format!("step {i}"), 100 + i)
            .unwrap();
        assert_eq!(seq, i + 1);
    }
    store.append_event("abort", None, "manual", 200).unwrap();
    let events = store.events(3).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![6, 5, 4]);
    assert_eq!(events[0].release, None);
    assert_eq!(events[1].detail, "step 4");
    assert_eq!(store.events(100).unwrap().len(), 6);
    assert!(store.events(0).unwrap().is_empty());
}

#[test]
fn commit_refuses_a_release_whose_artifacts_were_collected() {
    let (_dir, store) = store();
    let r1 = release(&store, "v1", &[("a", b"1")]);
    let r2 = release(&store, "v2", &[("a", b"2")]);
    store.set_current(&r2.id).unwrap();
    store.gc(1).unwrap();
    let err = store.set_current(&r1.id).unwrap_err();
    assert!(
        matches!(&err, StoreError::ModuleArtifactMissing { module, .. } if module == "a"),
        "{err:?}"
    );
    assert_eq!(store.current().unwrap(), Some(r2.id));
}
