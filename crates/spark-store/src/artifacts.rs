//! [`ArtifactStore`]: immutable blobs (Wasm components) named by their SHA-256, one plain file
//! each, under `artifacts/<first two hex>/<64 hex>`.
//!
//! Decision: the content is verified on *every* read, not only on write. A file is only ever
//! created by renaming a fully written and fsynced temporary file, so a half-written artifact
//! cannot appear under its final name through a crash; but bit rot, a truncating tool or a
//! lying disk can still damage it later, and loading a damaged component is worse than
//! refusing it. Hashing costs about a millisecond per megabyte, far below compiling it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::fsutil::{self, TMP_PREFIX};

/// A download on its way into the store: a temporary file, removed on drop unless adopted.
#[derive(Debug)]
pub struct Incoming {
    path: PathBuf,
    file: Option<File>,
    adopted: bool,
}

impl Incoming {
    /// The temporary file to write the download into (a clone of the handle).
    pub fn file(&self) -> std::io::Result<File> {
        self.file.as_ref().expect("not adopted yet").try_clone()
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.adopted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Content-addressed artifact files in one directory. One process per directory (the
/// [`crate::Store`] that owns it holds the database lock).
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    /// Opens (creating if needed, owner-only) the artifact directory and deletes temporary
    /// files a crash left behind (logged at info level with their count).
    pub fn open(root: impl Into<PathBuf>) -> Result<ArtifactStore, StoreError> {
        let root = root.into();
        fsutil::create_private_dir(&root)?;
        let store = ArtifactStore { root };
        let removed = store.clean_temp_files()?;
        if removed > 0 {
            tracing::info!(
                dir = %store.root.display(),
                removed,
                "removed temporary artifact files left by an interrupted write"
            );
        }
        Ok(store)
    }

    /// The directory holding the artifacts.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the artifact with this digest lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.fan_out()).join(digest.as_str())
    }

    /// A new temporary file in the artifact directory for a download to be streamed into,
    /// then [`ArtifactStore::adopt`]ed. Dropped without being adopted (a failed or abandoned
    /// download), it is removed; a crash leaves it to the next [`ArtifactStore::open`].
    pub fn incoming(&self) -> Result<Incoming, StoreError> {
        let path = fsutil::temp_name(&self.root, "incoming");
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::io("creating temporary file", &path))?;
        Ok(Incoming {
            path,
            file: Some(file),
            adopted: false,
        })
    }

    /// Verifies a streamed download against `expected` (hashing the file again: what the
    /// downloader checked is not trusted here) and moves it into place under its digest.
    pub fn adopt(&self, mut incoming: Incoming, expected: &Digest) -> Result<(), StoreError> {
        let file = incoming
            .file
            .take()
            .expect("an incoming file is adopted once");
        file.sync_all()
            .map_err(StoreError::io("syncing temporary file", &incoming.path))?;
        drop(file);
        let actual = File::open(&incoming.path)
            .and_then(Digest::of_reader)
            .map_err(StoreError::io("reading temporary file", &incoming.path))?;
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let dest = self.path(expected);
        if self.check(expected, &dest).is_ok() {
            return Ok(());
        }
        let dir = self.root.join(expected.fan_out());
        fsutil::create_private_dir(&dir)?;
        fs::rename(&incoming.path, &dest).map_err(StoreError::io("renaming into place", &dest))?;
        incoming.adopted = true;
        fsutil::sync_dir(&dir)?;
        fsutil::sync_dir(&self.root)
    }

    /// Stores `bytes` and returns their digest. Idempotent: storing the same bytes again
    /// writes nothing, unless the stored copy no longer verifies, in which case it is
    /// replaced (a re-upload heals a damaged artifact).
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        self.write(&digest, bytes)?;
        Ok(digest)
    }

    /// Stores `bytes` only if they hash to `expected`; otherwise refuses with
    /// [`StoreError::DigestMismatch`] naming both digests, and writes nothing.
    pub fn put_expecting(&self, bytes: &[u8], expected: &Digest) -> Result<(), StoreError> {
        let actual = Digest::of(bytes);
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.write(&actual, bytes)
    }

    fn write(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(digest);
        if self.check(digest, &path).is_ok() {
            return Ok(());
        }
        let dir = self.root.join(digest.fan_out());
        fsutil::create_private_dir(&dir)?;
        fsutil::write_atomic(&path, bytes, digest.short(16))
    }

    /// Reads an artifact, verifying its content against its digest. A missing file is
    /// [`StoreError::ArtifactMissing`]; a file whose content does not hash to its name
    /// (flipped bits, truncation) is [`StoreError::ArtifactCorrupt`] and is never returned.
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest);
        let bytes = fs::read(&path).map_err(|e| self.read_error(digest, &path, e))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(corrupt(digest, &path, &actual, bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Verifies an artifact without keeping it in memory (streams it through the hash).
    pub fn verify(&self, digest: &Digest) -> Result<(), StoreError> {
        self.check(digest, &self.path(digest))
    }

    fn check(&self, digest: &Digest, path: &Path) -> Result<(), StoreError> {
        let file = File::open(path).map_err(|e| self.read_error(digest, path, e))?;
        let len = file
            .metadata()
            .map_err(StoreError::io("reading metadata of", path))?
            .len();
        let actual = Digest::of_reader(file).map_err(|e| self.read_error(digest, path, e))?;
        if &actual != digest {
            return Err(corrupt(digest, path, &actual, len));
        }
        Ok(())
    }

    fn read_error(&self, digest: &Digest, path: &Path, e: std::io::Error) -> StoreError {
        if e.kind() == std::io::ErrorKind::NotFound {
            StoreError::ArtifactMissing {
                digest: digest.clone(),
                path: path.to_owned(),
            }
        } else {
            StoreError::io("reading artifact", path)(e)
        }
    }

    /// Whether a file exists under this digest's name. Does not verify it (see
    /// [`ArtifactStore::verify`]).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Removes an artifact (durably). Returns whether it existed.
    pub fn remove(&self, digest: &Digest) -> Result<bool, StoreError> {
        fsutil::remove_durably(&self.path(digest))
    }

    /// Every stored digest, sorted. Temporary files and foreign files are not listed.
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        for dir in self.fan_out_dirs()? {
            for entry in read_dir(&dir)? {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Ok(d) = Digest::parse(name)
                    && d.fan_out() == dir.file_name().and_then(|n| n.to_str()).unwrap_or("")
                {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes temporary files (an interrupted write's leftovers). Returns how many.
    fn clean_temp_files(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut dirs = self.fan_out_dirs()?;
        dirs.push(self.root.clone());
        for dir in dirs {
            let mut any = false;
            for entry in read_dir(&dir)? {
                if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let path = entry.path();
                    match fs::remove_file(&path) {
                        Ok(()) => {
                            any = true;
                            removed += 1;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StoreError::io("removing temporary file", path)(e)),
                    }
                }
            }
            if any {
                fsutil::sync_dir(&dir)?;
            }
        }
        Ok(removed)
    }

    fn fan_out_dirs(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut dirs = Vec::new();
        for entry in read_dir(&self.root)? {
            let name = entry.file_name();
            let is_fan_out = name.len() == 2
                && name
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            if is_fan_out && entry.path().is_dir() {
                dirs.push(entry.path());
            }
        }
        Ok(dirs)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    fs::read_dir(dir)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(StoreError::io("listing", dir))
}

fn corrupt(digest: &Digest, path: &Path, actual: &Digest, len: u64) -> StoreError {
    StoreError::ArtifactCorrupt {
        digest: digest.clone(),
        path: path.to_owned(),
        detail: format!("its {len} bytes hash to {actual}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path().join("artifacts")).unwrap();
        let d = store.put(b"component bytes").unwrap();
        assert_eq!(d, Digest::of(b"component bytes"));
        assert_eq!(store.put(b"component bytes").unwrap(), d);
        assert!(store.contains(&d));
        assert_eq!(store.get(&d).unwrap(), b"component bytes");
        assert_eq!(
            store.path(&d),
            dir.path()
                .join("artifacts")
                .join(&d.as_str()[..2])
                .join(d.as_str())
        );
        assert_eq!(store.list().unwrap(), vec![d.clone()]);
        assert!(store.remove(&d).unwrap());
        assert!(!store.remove(&d).unwrap());
        assert!(!store.contains(&d));
        assert!(matches!(
            store.get(&d),
            Err(StoreError::ArtifactMissing { .. })
        ));
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn put_heals_a_damaged_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let d = store.put(b"original").unwrap();
        fs::write(store.path(&d), b"origina").unwrap();
        assert!(store.verify(&d).is_err());
        store.put(b"original").unwrap();
        assert_eq!(store.get(&d).unwrap(), b"original");
    }

    #[test]
    fn a_streamed_download_is_adopted_only_when_it_verifies() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let good = store.incoming().unwrap();
        good.file().unwrap().write_all(b"component").unwrap();
        let digest = Digest::of(b"component");
        store.adopt(good, &digest).unwrap();
        assert_eq!(store.get(&digest).unwrap(), b"component");

        let bad = store.incoming().unwrap();
        bad.file().unwrap().write_all(b"something else").unwrap();
        let claimed = Digest::of(b"another component");
        assert!(matches!(
            store.adopt(bad, &claimed),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!store.contains(&claimed));
        let abandoned = store.incoming().unwrap();
        drop(abandoned);
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(TMP_PREFIX)
            })
            .count();
        assert_eq!(leftovers, 0, "failed and abandoned downloads leave nothing");
    }

    #[test]
    fn empty_artifact_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let d = store.put(b"").unwrap();
        assert_eq!(store.get(&d).unwrap(), b"");
    }
}
