//! Integration tests of `spark-store`, one module per topic. `crash` drives the real
//! `store-crash-helper` process and kills it with SIGKILL.

mod artifacts;
#[cfg(unix)]
mod crash;
mod gc;
mod history;
mod node_state;
mod persistence;
mod releases;
mod reset;

use std::path::{Path, PathBuf};

use spark_store::{Digest, NewRelease, Release, ReleaseModule, Store};

/// A fresh store in a temporary directory (the directory lives as long as the guard).
pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

/// Uploads one artifact per `(module, bytes)` and creates a release of them.
pub fn release(store: &Store, manifest: &str, modules: &[(&str, &[u8])]) -> Release {
    let modules = modules
        .iter()
        .map(|(id, bytes)| ReleaseModule::new(*id, store.artifacts().put(bytes).unwrap()))
        .collect();
    store
        .create_release(NewRelease {
            manifest: manifest.to_owned(),
            modules,
            author_note: format!("note for {manifest}"),
            created_ms: 1_700_000_000_000,
        })
        .unwrap()
}

/// Every file (not directory) under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The digest of `bytes`.
pub fn digest(bytes: &[u8]) -> Digest {
    Digest::of(bytes)
}
