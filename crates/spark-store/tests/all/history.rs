//! Demand history snapshots: round trip, listing, forgetting, the size bound.

use spark_store::{MAX_HISTORY_SNAPSHOT, StoreError};

use crate::store;

#[test]
fn history_round_trips() {
    let (_dir, store) = store();
    assert_eq!(store.history("api").unwrap(), None);
    store.put_history("web", b"web v1").unwrap();
    store.put_history("api", b"api v1").unwrap();
    store.put_history("api", b"api v2").unwrap();
    assert_eq!(store.history("api").unwrap(), Some(b"api v2".to_vec()));
    assert_eq!(
        store.all_history().unwrap(),
        vec![
            ("api".to_owned(), b"api v2".to_vec()),
            ("web".to_owned(), b"web v1".to_vec())
        ]
    );
    assert!(store.forget_history("api").unwrap());
    assert!(!store.forget_history("api").unwrap());
    assert_eq!(store.history("api").unwrap(), None);
    store.put_history_many(&[("a", b"1"), ("b", b"2")]).unwrap();
    assert_eq!(store.all_history().unwrap().len(), 3);
    store.put_history("empty", b"").unwrap();
    assert_eq!(store.history("empty").unwrap(), Some(Vec::new()));
}

#[test]
fn a_snapshot_over_one_mebibyte_is_refused() {
    let (_dir, store) = store();
    assert_eq!(MAX_HISTORY_SNAPSHOT, 1024 * 1024);
    let at_limit = vec![1u8; MAX_HISTORY_SNAPSHOT];
    store.put_history("api", &at_limit).unwrap();
    assert_eq!(
        store.history("api").unwrap().unwrap().len(),
        MAX_HISTORY_SNAPSHOT
    );

    let over = vec![2u8; MAX_HISTORY_SNAPSHOT + 1];
    let err = store.put_history("api", &over).unwrap_err();
    match &err {
        StoreError::HistoryTooLarge { module, size, max } => {
            assert_eq!(module, "api");
            assert_eq!(*size, MAX_HISTORY_SNAPSHOT + 1);
            assert_eq!(*max, MAX_HISTORY_SNAPSHOT);
        }
        other => panic!("expected HistoryTooLarge, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("api") && msg.contains("1048577") && msg.contains("1048576"),
        "{msg}"
    );
    // The previous snapshot is untouched.
    assert_eq!(store.history("api").unwrap(), Some(at_limit));

    // In a batch, one oversized snapshot means none is written.
    let err = store.put_history_many(&[("new", b"small"), ("big", &over)]);
    assert!(err.is_err());
    assert_eq!(store.history("new").unwrap(), None);
}
