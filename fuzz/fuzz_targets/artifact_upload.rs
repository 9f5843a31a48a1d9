//! Fuzz target `artifact_upload`: what `POST /v1/artifacts/{digest}` does with a client's
//! digest and body, on a real [`ArtifactStore`] in a temporary directory.
//!
//! The handler parses the path's digest ([`Digest::parse`]) and stores the body only if it
//! hashes to it ([`ArtifactStore::put_expecting`]); this target does the same and checks the
//! invariant the release path relies on: the upload succeeds if and only if the digest is
//! well formed and the body hashes to it; a refused upload leaves nothing behind; a stored
//! artifact reads back byte for byte and verifies, and an upload over a damaged copy heals it.
//!
//! Input: a mode byte, then the body, or for mode 2 the digest text, a NUL, and the body.
//! Mode 0 claims the body's true digest, 1 the true digest with one character replaced,
//! 2 any text, 3 the true digest over a damaged copy already on disk. Run with a small
//! `-max_len`: every stored artifact is fsynced.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spark_store::{ArtifactStore, Digest};

fn store() -> &'static ArtifactStore {
    static STORE: OnceLock<(tempfile::TempDir, ArtifactStore)> = OnceLock::new();
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = ArtifactStore::open(dir.path().join("artifacts")).expect("open the store");
        (dir, store)
    });
    store
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (claimed, body) = match mode % 4 {
        0 | 3 => (Digest::of(rest).as_str().to_owned(), rest),
        1 => {
            let mut hex = Digest::of(rest).as_str().as_bytes().to_vec();
            let (at, with) = (rest.first().copied(), rest.get(1).copied());
            let at = usize::from(at.unwrap_or(0)) % hex.len();
            hex[at] = with.unwrap_or(b'0');
            (String::from_utf8_lossy(&hex).into_owned(), rest)
        }
        _ => {
            let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let body = rest.get(split + 1..).unwrap_or_default();
            (String::from_utf8_lossy(&rest[..split]).into_owned(), body)
        }
    };
    let store = store();
    let actual = Digest::of(body);
    if mode % 4 == 3 {
        damage(store, &actual, body);
    }
    let was_there = store.contains(&actual);

    let upload = Digest::parse(&claimed).and_then(|d| store.put_expecting(body, &d).map(|()| d));

    let honest = Digest::parse(&claimed).is_ok_and(|d| d == actual);
    match upload {
        Ok(digest) => {
            assert!(
                honest,
                "stored under {claimed:?} bytes that hash to {actual}"
            );
            assert_eq!(store.get(&digest).expect("reads back"), body);
            store.verify(&digest).expect("verifies");
            assert!(store.list().expect("lists").contains(&digest));
            store.remove(&digest).expect("removes");
        }
        Err(error) => {
            assert!(!honest, "refused an honest upload: {error}");
            assert_eq!(
                store.contains(&actual),
                was_there,
                "a refusal writes nothing"
            );
            if was_there {
                store.remove(&actual).expect("removes");
            }
        }
    }
});

/// Leaves a damaged copy (the body with its last byte dropped, or one byte) where `digest`'s
/// artifact goes, as bit rot or a truncating tool would.
fn damage(store: &ArtifactStore, digest: &Digest, body: &[u8]) {
    let path = store.path(digest);
    std::fs::create_dir_all(path.parent().expect("fan-out dir")).expect("fan-out dir");
    let damaged = match body.split_last() {
        Some((_, kept)) => kept,
        None => b"x",
    };
    std::fs::write(&path, damaged).expect("write the damaged copy");
}
