//! Everything written is there after the store is dropped and opened again; one opener at a
//! time.

use spark_store::{RolloutChange, Store, StoreError, Transition};

use crate::release;

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (r1, r2, orphan);
    {
        let store = Store::open(dir.path()).unwrap();
        r1 = release(&store, "v1", &[("api", b"api 1"), ("web", b"web 1")]);
        r2 = release(&store, "v2", &[("api", b"api 2"), ("web", b"web 1")]);
        orphan = store.artifacts().put(b"uploaded, not released").unwrap();
        store
            .commit(Transition {
                current: Some(r1.id.clone()),
                rollout: RolloutChange::Set(b"canary r2 step 2".to_vec()),
            })
            .unwrap();
        store
            .append_event("deploy", Some(&r2.id), "by ci", 5)
            .unwrap();
        store.put_history("api", b"api history").unwrap();
        store.put_history("web", &[0u8; 4096]).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.releases().unwrap(), vec![r2.clone(), r1.clone()]);
    assert_eq!(store.current().unwrap(), Some(r1.id.clone()));
    assert_eq!(store.rollout().unwrap(), Some(b"canary r2 step 2".to_vec()));
    let events = store.events(10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].release, Some(r2.id.clone()));
    assert_eq!(store.history("api").unwrap(), Some(b"api history".to_vec()));
    assert_eq!(store.all_history().unwrap().len(), 2);
    assert_eq!(store.artifacts().list().unwrap().len(), 4);
    assert_eq!(
        store.artifacts().get(&orphan).unwrap(),
        b"uploaded, not released"
    );
    for r in [&r1, &r2] {
        assert!(store.verify_release(&r.id).unwrap().is_complete());
    }
    // Numbering continues after a reopen.
    assert_eq!(release(&store, "v3", &[("api", b"api 3")]).number, 3);
}

#[test]
fn a_second_opener_is_refused_and_nothing_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    release(&store, "v1", &[("a", b"1")]);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let err = Store::open_or_reset(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.releases().unwrap().len(), 1);
}
