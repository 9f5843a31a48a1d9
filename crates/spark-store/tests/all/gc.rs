//! Garbage collection keeps the newest N and the current release.

use std::collections::BTreeSet;

use spark_store::Digest;

use crate::{digest, release, store};

#[test]
fn gc_keeps_newest_n_and_current_and_reports_removals() {
    let (_dir, store) = store();
    let shared: &[u8] = b"shared by every release";
    let rs: Vec<_> = (1..=5)
        .map(|i| {
            let own = format!("module v{i}");
            release(
                &store,
                &format!("v{i}"),
                &[("own", own.as_bytes()), ("shared", shared)],
            )
        })
        .collect();
    let orphan = store.artifacts().put(b"uploaded, never released").unwrap();
    // Rolled back to r1.
    store.set_current(&rs[0].id).unwrap();

    let report = store.gc(2).unwrap();
    let removed: BTreeSet<Digest> = report.removed.iter().cloned().collect();
    let expected: BTreeSet<Digest> = [digest(b"module v2"), digest(b"module v3"), orphan.clone()]
        .into_iter()
        .collect();
    assert_eq!(removed, expected);
    assert_eq!(report.removed.len(), 3, "reported twice");
    assert_eq!(report.kept, 4); // v1, v4, v5, shared
    assert_eq!(
        report.protected,
        vec![rs[4].id.clone(), rs[3].id.clone(), rs[0].id.clone()]
    );

    for d in &report.removed {
        assert!(!store.artifacts().contains(d));
    }
    // Records are kept; only the collected ones are no longer rollback-able.
    assert_eq!(store.releases().unwrap().len(), 5);
    let rollbackable: Vec<bool> = rs
        .iter()
        .map(|r| store.rollbackable(&r.id).unwrap())
        .collect();
    assert_eq!(rollbackable, vec![true, false, false, true, true]);
    assert!(store.verify_release(&rs[0].id).unwrap().is_complete());
    assert_eq!(store.verify_release(&rs[1].id).unwrap().missing.len(), 1);

    // A second run finds nothing more.
    let again = store.gc(2).unwrap();
    assert!(again.removed.is_empty());
    assert_eq!(again.kept, 4);
}

#[test]
fn gc_zero_keeps_only_current_unless_a_rollout_runs() {
    let (_dir, store) = store();
    let r1 = release(&store, "v1", &[("a", b"one")]);
    let r2 = release(&store, "v2", &[("a", b"two")]);
    store.set_current(&r1.id).unwrap();
    // A rollout towards r2 is in progress: r2 (the newest) keeps its artifacts.
    store.put_rollout(b"canary r2").unwrap();
    let report = store.gc(0).unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    assert!(store.rollbackable(&r2.id).unwrap());

    store.clear_rollout().unwrap();
    let report = store.gc(0).unwrap();
    assert_eq!(report.removed, vec![digest(b"two")]);
    assert!(store.rollbackable(&r1.id).unwrap());
    assert!(!store.rollbackable(&r2.id).unwrap());
}

#[test]
fn gc_on_an_empty_store_removes_orphans() {
    let (_dir, store) = store();
    let d = store.artifacts().put(b"orphan").unwrap();
    let report = store.gc(3).unwrap();
    assert_eq!(report.removed, vec![d]);
    assert_eq!(report.kept, 0);
    assert!(report.protected.is_empty());
}
