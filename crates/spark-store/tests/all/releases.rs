//! Releases: numbering, immutability, refusal of missing or damaged artifacts.

use std::fs;

use spark_store::{Digest, NewRelease, ReleaseId, ReleaseModule, StoreError};

use crate::{digest, release, store};

#[test]
fn releases_are_numbered_and_never_change() {
    let (_dir, store) = store();
    let r1 = release(&store, "v1", &[("api", b"api v1"), ("web", b"web v1")]);
    let r1_again = store.release(&r1.id).unwrap().unwrap();
    assert_eq!(r1_again, r1);

    let r2 = release(&store, "v2", &[("api", b"api v2"), ("web", b"web v1")]);
    let r3 = release(&store, "v1", &[("web", b"web v1"), ("api", b"api v1")]);
    assert_eq!((r1.number, r2.number, r3.number), (1, 2, 3));
    assert!(r1.id.as_str().starts_with("r1-"));
    assert!(r2.id.as_str().starts_with("r2-"));
    assert!(r3.id.as_str().starts_with("r3-"));
    // Same content (module order aside) as r1: same content hash, new number, new record.
    assert_eq!(r3.id.content_hash(), r1.id.content_hash());
    assert_ne!(r2.id.content_hash(), r1.id.content_hash());
    assert_ne!(r3.id, r1.id);

    // Creating r2 and r3 did not touch r1.
    assert_eq!(store.release(&r1.id).unwrap().unwrap(), r1);
    let ids: Vec<_> = store
        .releases()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![r3.id.clone(), r2.id.clone(), r1.id.clone()]);
    assert_eq!(store.latest().unwrap().unwrap(), r3);

    // Modules are stored sorted by id, the record keeps note and time as given.
    assert_eq!(
        r3.modules.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["api", "web"]
    );
    assert_eq!(r3.author_note, "note for v1");
    assert_eq!(r3.created_ms, 1_700_000_000_000);
    assert_eq!(r3.manifest, "v1");
}

#[test]
fn an_id_must_match_number_and_hash() {
    let (_dir, store) = store();
    let r1 = release(&store, "v1", &[("api", b"a")]);
    let wrong_hash = ReleaseId::parse(&format!("r1-{}", "0".repeat(12))).unwrap();
    assert_ne!(wrong_hash, r1.id);
    assert_eq!(store.release(&wrong_hash).unwrap(), None);
    let wrong_number = ReleaseId::parse(&format!("r2-{}", r1.id.content_hash())).unwrap();
    assert_eq!(store.release(&wrong_number).unwrap(), None);
    assert!(matches!(
        store.rollbackable(&wrong_number),
        Err(StoreError::UnknownRelease(_))
    ));
}

#[test]
fn create_release_refuses_a_missing_artifact() {
    let (_dir, store) = store();
    let present = store.artifacts().put(b"present").unwrap();
    let absent = digest(b"never uploaded");
    let err = store
        .create_release(NewRelease {
            manifest: "m".into(),
            modules: vec![
                ReleaseModule::new("good", present),
                ReleaseModule::new("ghost", absent.clone()),
            ],
            author_note: String::new(),
            created_ms: 0,
        })
        .unwrap_err();
    match &err {
        StoreError::ModuleArtifactMissing { module, digest } => {
            assert_eq!(module, "ghost");
            assert_eq!(digest, &absent);
        }
        other => panic!("expected ModuleArtifactMissing, got {other:?}"),
    }
    assert!(err.to_string().contains("ghost") && err.to_string().contains(absent.as_str()));
    assert_eq!(store.latest().unwrap(), None, "a release was recorded");
}

#[test]
fn create_release_refuses_a_corrupt_artifact() {
    let (_dir, store) = store();
    let d = store.artifacts().put(b"component").unwrap();
    fs::write(store.artifacts().path(&d), b"componenT").unwrap();
    let err = store
        .create_release(NewRelease {
            manifest: "m".into(),
            modules: vec![ReleaseModule::new("api", d.clone())],
            author_note: String::new(),
            created_ms: 0,
        })
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::ModuleArtifactCorrupt { module, digest, .. } if module == "api" && digest == &d),
        "{err:?}"
    );
    assert!(store.releases().unwrap().is_empty());
}

#[test]
fn create_release_refuses_duplicate_modules() {
    let (_dir, store) = store();
    let d: Digest = store.artifacts().put(b"x").unwrap();
    let err = store
        .create_release(NewRelease {
            manifest: "m".into(),
            modules: vec![
                ReleaseModule::new("a", d.clone()),
                ReleaseModule::new("a", d),
            ],
            author_note: String::new(),
            created_ms: 0,
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidRelease(_)), "{err:?}");
    assert!(store.releases().unwrap().is_empty());
}

#[test]
fn a_failed_create_does_not_consume_a_number() {
    let (_dir, store) = store();
    let _ = store.create_release(NewRelease {
        manifest: "m".into(),
        modules: vec![ReleaseModule::new("a", digest(b"missing"))],
        author_note: String::new(),
        created_ms: 0,
    });
    assert_eq!(release(&store, "ok", &[("a", b"a")]).number, 1);
}

#[test]
fn verify_release_reports_missing_and_corrupt_modules() {
    let (_dir, store) = store();
    let r = release(&store, "v", &[("a", b"aaa"), ("b", b"bbb"), ("c", b"ccc")]);
    assert!(store.verify_release(&r.id).unwrap().is_complete());
    let a = store.artifacts();
    a.remove(&r.module("a").unwrap().digest).unwrap();
    fs::write(a.path(&r.module("b").unwrap().digest), b"bbx").unwrap();
    let check = store.verify_release(&r.id).unwrap();
    assert_eq!(check.missing, vec![r.module("a").unwrap().clone()]);
    assert_eq!(check.corrupt, vec![r.module("b").unwrap().clone()]);
    assert!(!check.is_complete());
    assert!(!store.rollbackable(&r.id).unwrap());
    assert!(!r.artifacts_present(store.artifacts()));
}
