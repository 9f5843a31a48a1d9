//! File-system primitives for crash-safe writes: private directories, directory fsync, and
//! the write-temp / fsync / rename / fsync-directory protocol.
//!
//! Decision: durability of a *name* needs an fsync of the directory that holds it, not just of
//! the file. Every function here that creates or removes a directory entry syncs the parent
//! before returning, so "returned Ok" means "survives power loss" (on file systems that honour
//! fsync; see DESIGN.md).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::StoreError;

/// Prefix of every temporary file. Files with this prefix are never final names and are
/// deleted when an [`crate::ArtifactStore`] opens.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// Creates `dir` (and missing parents) owner-only (0700 on unix). An existing directory is
/// left as it is. The parent is fsynced when the directory was created.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    // Create missing ancestors top-down, syncing each one's parent so every new name is
    // durable, not only the last one.
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.is_dir())
        .collect();
    for path in missing.into_iter().rev() {
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        match builder.create(path) {
            Ok(()) => {}
            // Lost a race with another creator: fine, it exists now.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(StoreError::io("creating directory", path)(e)),
        }
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        sync_dir(parent.unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Fsyncs a directory, making the names created, renamed or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(StoreError::io("syncing directory", dir))
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened for syncing on this platform; renames are
        // made durable by the file system's own metadata journal, if any.
        let _ = dir;
        Ok(())
    }
}

/// A name for a temporary file in `dir`, unique in this process.
pub(crate) fn temp_name(dir: &Path, hint: &str) -> std::path::PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TMP_PREFIX}{hint}-{}-{n}", std::process::id()))
}

/// Writes `bytes` to `dest` atomically: a temporary file in the same directory, written and
/// fsynced, renamed over `dest`, then the directory fsynced. A crash at any point leaves
/// either the old `dest` (or none) or the complete new one, plus at most a temporary file.
/// On error the temporary file is removed and `dest` is untouched.
pub(crate) fn write_atomic(dest: &Path, bytes: &[u8], hint: &str) -> Result<(), StoreError> {
    write_atomic_mode(dest, bytes, hint, 0o644)
}

/// [`write_atomic`] for a secret: the file is owner-only (0600 on unix) from its creation on,
/// so the secret is never readable by others, not even while it is being written.
pub(crate) fn write_secret(dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomic_mode(dest, bytes, "secret", 0o600)
}

fn write_atomic_mode(dest: &Path, bytes: &[u8], hint: &str, mode: u32) -> Result<(), StoreError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = temp_name(dir, hint);
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options
            .open(&tmp)
            .map_err(StoreError::io("creating temporary file", &tmp))?;
        file.write_all(bytes)
            .map_err(StoreError::io("writing temporary file", &tmp))?;
        file.sync_all()
            .map_err(StoreError::io("syncing temporary file", &tmp))?;
        drop(file);
        fs::rename(&tmp, dest).map_err(StoreError::io("renaming into place", dest))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir)
}

/// Removes `path` and fsyncs its directory. Returns whether it existed.
pub(crate) fn remove_durably(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io("removing", path)(e)),
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        write_atomic(&dest, b"one", "t").unwrap();
        write_atomic(&dest, b"two", "t").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // The destination is a non-empty directory, so the rename fails after the temp
        // file was written: the temp file must be cleaned up.
        let dest = dir.path().join("d");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("x"), b"x").unwrap();
        assert!(write_atomic(&dest, b"data", "t").is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("d")]);
    }

    #[cfg(unix)]
    #[test]
    fn private_dir_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        create_private_dir(&d).unwrap();
        let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
