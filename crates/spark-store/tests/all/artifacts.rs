//! Artifact store: digest checks on write, verification on read, crash leftovers.

use std::fs;

use spark_store::{ArtifactStore, Digest, StoreError};

use crate::{digest, files_under, store};

#[test]
fn put_expecting_refuses_a_mismatch_and_writes_nothing() {
    let (_dir, store) = store();
    let artifacts = store.artifacts();
    let announced = digest(b"what the client said it sent");
    let err = artifacts
        .put_expecting(b"what actually arrived", &announced)
        .unwrap_err();
    let actual = digest(b"what actually arrived");
    match &err {
        StoreError::DigestMismatch {
            expected,
            actual: got,
        } => {
            assert_eq!(expected, &announced);
            assert_eq!(got, &actual);
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(announced.as_str()) && msg.contains(actual.as_str()),
        "{msg}"
    );
    assert!(
        files_under(artifacts.root()).is_empty(),
        "something was written"
    );
    assert!(!artifacts.contains(&announced) && !artifacts.contains(&actual));

    artifacts
        .put_expecting(b"what actually arrived", &actual)
        .unwrap();
    assert_eq!(artifacts.get(&actual).unwrap(), b"what actually arrived");
}

#[test]
fn put_is_idempotent_and_fans_out() {
    let (_dir, store) = store();
    let a = store.artifacts();
    let d1 = a.put(b"one").unwrap();
    let d2 = a.put(b"one").unwrap();
    assert_eq!(d1, d2);
    let path = a.path(&d1);
    assert_eq!(
        path.strip_prefix(a.root()).unwrap(),
        std::path::Path::new(d1.fan_out()).join(d1.as_str())
    );
    assert_eq!(files_under(a.root()), vec![path]);
}

#[test]
fn a_flipped_byte_is_detected_on_read() {
    let (_dir, store) = store();
    let a = store.artifacts();
    let bytes: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let d = a.put(&bytes).unwrap();
    let path = a.path(&d);
    let mut on_disk = fs::read(&path).unwrap();
    on_disk[54_321] ^= 0x01;
    fs::write(&path, &on_disk).unwrap();

    let err = a.get(&d).unwrap_err();
    assert!(matches!(err, StoreError::ArtifactCorrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(d.as_str()), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(matches!(
        a.verify(&d),
        Err(StoreError::ArtifactCorrupt { .. })
    ));
}

#[test]
fn a_truncated_artifact_is_detected_on_read() {
    let (_dir, store) = store();
    let a = store.artifacts();
    let d = a.put(&vec![42u8; 10_000]).unwrap();
    let file = fs::OpenOptions::new().write(true).open(a.path(&d)).unwrap();
    file.set_len(9_999).unwrap();
    drop(file);
    assert!(matches!(a.get(&d), Err(StoreError::ArtifactCorrupt { .. })));
    fs::write(a.path(&d), b"").unwrap();
    let err = a.get(&d).unwrap_err();
    assert!(err.to_string().contains("0 bytes"), "{err}");
}

#[test]
fn missing_artifact_is_its_own_error() {
    let (_dir, store) = store();
    let d = digest(b"never stored");
    let err = store.artifacts().get(&d).unwrap_err();
    assert!(matches!(err, StoreError::ArtifactMissing { .. }), "{err:?}");
    assert!(err.to_string().contains(d.as_str()));
}

#[test]
fn temporary_files_are_cleaned_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let kept;
    {
        let store = spark_store::Store::open(&root).unwrap();
        kept = store.artifacts().put(b"a complete artifact").unwrap();
    }
    let artifacts = root.join(spark_store::ARTIFACTS_DIR);
    // What a crash mid-write leaves: partial temp files in a fan-out dir and at the root.
    let fan_out = artifacts.join(kept.fan_out());
    fs::write(
        fan_out.join(".tmp-0123456789abcdef-999-0"),
        b"half of somethi",
    )
    .unwrap();
    fs::create_dir_all(artifacts.join("ff")).unwrap();
    fs::write(artifacts.join("ff").join(".tmp-ffee-1-2"), b"").unwrap();
    fs::write(artifacts.join(".tmp-stray"), b"x").unwrap();
    // A foreign file is neither listed nor deleted.
    fs::write(fan_out.join("README"), b"not an artifact").unwrap();
    assert_eq!(files_under(&artifacts).len(), 5);

    let store = spark_store::Store::open(&root).unwrap();
    let remaining = files_under(&artifacts);
    let mut expected = vec![fan_out.join("README"), store.artifacts().path(&kept)];
    expected.sort();
    assert_eq!(remaining, expected);
    assert_eq!(store.artifacts().list().unwrap(), vec![kept.clone()]);
    assert_eq!(
        store.artifacts().get(&kept).unwrap(),
        b"a complete artifact"
    );
}

#[test]
fn list_is_sorted_and_remove_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = ArtifactStore::open(dir.path()).unwrap();
    let mut ds: Vec<Digest> = (0..20u8).map(|i| a.put(&[i; 3]).unwrap()).collect();
    ds.sort();
    assert_eq!(a.list().unwrap(), ds);
    assert!(a.remove(&ds[0]).unwrap());
    assert!(!a.remove(&ds[0]).unwrap());
    assert_eq!(a.list().unwrap(), ds[1..].to_vec());
}

#[cfg(unix)]
#[test]
fn the_store_directory_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _store) = store();
    let mode = fs::metadata(dir.path().join("store"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}
