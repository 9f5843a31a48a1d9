//! A damaged database: `open` refuses it, `open_or_reset` moves it aside and starts empty
//! while the artifacts stay.

use std::fs;
use std::path::Path;

use spark_store::{DB_FILE, SCHEMA_VERSION, Store, StoreError};

use crate::release;

fn aside_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&format!("{DB_FILE}.corrupt-")))
        .collect();
    names.sort();
    names
}

#[test]
fn a_healthy_database_is_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        release(&store, "v1", &[("a", b"1")]);
    }
    let (store, warning) = Store::open_or_reset(dir.path()).unwrap();
    assert_eq!(warning, None);
    assert_eq!(store.releases().unwrap().len(), 1);
    assert!(aside_files(dir.path()).is_empty());
}

#[test]
fn a_garbage_database_is_moved_aside_and_artifacts_remain() {
    let dir = tempfile::tempdir().unwrap();
    let digest;
    {
        let store = Store::open(dir.path()).unwrap();
        let r = release(&store, "v1", &[("a", b"component a")]);
        store.set_current(&r.id).unwrap();
        digest = r.modules[0].digest.clone();
    }
    let garbage = b"this is not a redb file, it is garbage\n".repeat(100);
    fs::write(dir.path().join(DB_FILE), &garbage).unwrap();

    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    // Strict open leaves the file alone.
    assert_eq!(fs::read(dir.path().join(DB_FILE)).unwrap(), garbage);

    let (store, warning) = Store::open_or_reset(dir.path()).unwrap();
    let warning = warning.expect("a warning");
    let aside = aside_files(dir.path());
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        warning.contains("moved it aside") && warning.contains(&aside[0]),
        "{warning}"
    );
    assert!(warning.contains("empty store"), "{warning}");
    // The damaged file is preserved byte for byte, for whoever wants to look at it.
    assert_eq!(fs::read(dir.path().join(&aside[0])).unwrap(), garbage);
    // Empty records, artifacts kept.
    assert!(store.releases().unwrap().is_empty());
    assert_eq!(store.current().unwrap(), None);
    assert_eq!(store.artifacts().get(&digest).unwrap(), b"component a");
    // The new store works and persists.
    let r = release(&store, "after reset", &[("a", b"component a")]);
    assert_eq!(r.number, 1);
    drop(store);
    let (store, warning) = Store::open_or_reset(dir.path()).unwrap();
    assert_eq!(warning, None);
    assert_eq!(store.latest().unwrap().unwrap().id, r.id);
}

#[test]
fn a_short_database_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(DB_FILE), b"redb").unwrap();
    let (store, warning) = Store::open_or_reset(dir.path()).unwrap();
    assert!(warning.is_some());
    assert!(store.releases().unwrap().is_empty());
    assert_eq!(aside_files(dir.path()).len(), 1);
}

#[test]
fn an_undecodable_record_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        release(&store, "v1", &[("a", b"1")]);
    }
    // Write a record the store cannot decode, through redb itself.
    {
        let db = redb::Database::open(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn
                .open_table(redb::TableDefinition::<u64, &[u8]>::new("releases"))
                .unwrap();
            t.insert(2, b"{not json".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::UndecodableRecord { table: "releases", key, .. } if key == "2"),
        "{err:?}"
    );
    let (store, warning) = Store::open_or_reset(dir.path()).unwrap();
    assert!(
        warning
            .unwrap()
            .contains("corrupt record 2 in table releases")
    );
    assert!(store.releases().unwrap().is_empty());
}

#[test]
fn a_dangling_current_pointer_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        release(&store, "v1", &[("a", b"1")]);
    }
    {
        let db = redb::Database::open(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("node"))
                .unwrap();
            t.insert("current", b"r7-0123456789ab".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("r7-0123456789ab does not exist"),
        "{err}"
    );
}

#[test]
fn a_newer_schema_is_refused_by_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        let db = redb::Database::open(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            t.insert("schema", u64::from(SCHEMA_VERSION) + 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::UnsupportedSchema { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
}

#[test]
fn damaged_pages_are_detected_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..20 {
            let bytes = format!("module {i}");
            release(
                &store,
                &"manifest line\n".repeat(200),
                &[("a", bytes.as_bytes())],
            );
        }
        store.put_history("a", &vec![9u8; 300_000]).unwrap();
    }
    let path = dir.path().join(DB_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let len = bytes.len();
    // Scribble over the data region (past the 4 KiB super-header), in several places.
    for k in 1..8 {
        let at = 4096 + (len - 8192) * k / 8;
        bytes[at..at + 2048].fill(0xa5);
    }
    fs::write(&path, &bytes).unwrap();

    // Strict open reports the damage as an error (no panic, no lock left behind) ...
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    // ... and open_or_reset, in the same process, moves the file aside and starts empty.
    let (store, warning) = Store::open_or_reset(dir.path()).unwrap();
    let warning = warning.expect("a warning");
    assert!(warning.contains("corrupt"), "{warning}");
    assert_eq!(aside_files(dir.path()).len(), 1);
    assert!(store.releases().unwrap().is_empty());
    assert_eq!(store.artifacts().list().unwrap().len(), 20);
}
