//! The AOT cache: native code for a component, compiled once and reused across restarts.
//!
//! An artifact is keyed by the SHA-256 of the `.wasm` bytes and a digest of the engine's
//! compatibility hash (Wasmtime version, target, settings), so a changed component or a changed
//! engine never picks up stale code.
//!
//! The decision worth knowing: deserializing is `unsafe` in Wasmtime because the bytes become
//! executable code, so only artifacts this node wrote may ever be loaded. Every artifact file
//! carries a tag, BLAKE3 in keyed mode (a MAC) under a key derived from a per-node secret
//! (`aot.key`, created on first use, mode 0600, next to the cache), over the tier, the component
//! digest and every byte of the artifact, checked at every load. A file someone else dropped
//! into the directory, a truncated write, a flipped bit, or an artifact renamed to another tier
//! or another component fails the check and is recompiled, never loaded. (BLAKE3 rather than
//! the HMAC-SHA256 of earlier formats: a 13 MB JS component has a 34 MB artifact, which BLAKE3
//! checks in a few milliseconds and HMAC-SHA256 in about twenty.)
//!
//! # Format (`SPARKAO3`)
//! `artifact ‖ tag (32 bytes) ‖ artifact length (u64, little-endian) ‖ "SPARKAO3"`. Wasmtime's
//! bytes come first and unchanged so that Wasmtime can map the file itself
//! ([`Component::deserialize_file`]); it finds its image through the ELF headers and ignores
//! the trailer. Files of the earlier formats (`SPARKAOT`, `SPARKAO2`: a header and an
//! HMAC-SHA256) have no such trailer: they are discarded and recompiled once, never read as
//! anything else.
//!
//! # Loading without copying, and why that still loads only this node's bytes
//! A load opens the file once and checks, through that open file, that it is a regular file
//! owned by the node's user and writable by no one else, and that its tag verifies; then Wasmtime
//! maps *that open file* (`/proc/self/fd/N`, never the name again), runs the code from the page
//! cache and maps memory images copy-on-write from it: no read into memory, no copy. Nothing
//! is copied between the check and the use, so the check holds for the bytes that run as long
//! as no one writes to the file in place. Who could? The directory is 0700 and the file 0600 (a
//! temporary file, renamed into place) and owned by the node's user: only that user or root can
//! write to it, and either can also read `aot.key` and forge a tag for anything. Checking a
//! private copy would not stop them either, so mapping loses nothing the tag defends against
//! (foreign files, truncation, bit rot before the load, another tier or component), and a file
//! renamed or replaced under the same name after the check cannot reach the open file. The node
//! itself never writes into an artifact: new ones are renamed over the name, bad ones unlinked,
//! so a file in use keeps its content. A page evicted and read again from disk later is trusted
//! as much as the node's own executable, which is paged the same way. Where the open file
//! cannot be handed to Wasmtime (not Linux, or no `/proc`), the artifact is read into memory,
//! checked there and copied by Wasmtime, as before.
//!
//! [`Component::deserialize_file`]: wasmtime::component::Component::deserialize_file

use std::fs::{self, File};
use std::hash::Hasher;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

use crate::error::RuntimeError;

const MAGIC: &[u8; 8] = b"SPARKAO3";
const TAG_LEN: usize = 32;
/// Tag, artifact length, magic.
const TRAILER_LEN: usize = TAG_LEN + 8 + MAGIC.len();
const KEY_FILE: &str = "aot.key";
const KEY_LEN: usize = 32;
/// BLAKE3's key derivation context: the tag key is derived from the node's secret, never the
/// secret itself.
const TAG_KEY_CONTEXT: &str = "spark aot-cache SPARKAO3 artifact tag";
/// Bytes hashed per read when the artifact is checked (large enough for both cores to share).
const HASH_CHUNK: usize = 4 << 20;

/// A directory of authenticated precompiled artifacts.
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
    engine_tag: String,
    /// `""` for the optimized tier (the name artifacts always had), `"baseline"`.
    tier: &'static str,
    /// Whether an open file can be handed to Wasmtime by path (`/proc/self/fd`).
    fd_paths: bool,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// An artifact whose tag verified, ready for Wasmtime.
#[derive(Debug)]
pub(crate) enum Verified {
    /// The open file that was checked; Wasmtime maps it through [`Verified::path`].
    File(File),
    /// The artifact's bytes, read into memory and checked there (no `/proc/self/fd`).
    Bytes(Vec<u8>),
}

impl Verified {
    /// A path that opens this very file, whatever its name points at now.
    pub(crate) fn fd_path(file: &File) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    }
}

/// The content digest (lowercase hex SHA-256) of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache in `dir` for artifacts of `engine` (the
    /// optimizing engine).
    pub fn open(dir: &Path, engine: &Engine) -> Result<ArtifactCache, RuntimeError> {
        Self::open_tier(dir, engine, "")
    }

    /// As [`ArtifactCache::open`], for the artifacts of one tier (`"baseline"`; `""` is the
    /// optimized tier), in the same directory under the same key.
    pub(crate) fn open_tier(
        dir: &Path,
        engine: &Engine,
        tier: &'static str,
    ) -> Result<ArtifactCache, RuntimeError> {
        let io = |source| RuntimeError::Cache {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        restrict_to_owner(dir, 0o700).map_err(io)?;
        let secret = spark_store::load_or_create_secret(
            &dir.join(KEY_FILE),
            |bytes| bytes.len() == KEY_LEN,
            || spark_store::random_bytes::<KEY_LEN>().map(Vec::from),
        )
        .map_err(RuntimeError::CacheKey)?;
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            key: blake3::derive_key(TAG_KEY_CONTEXT, &secret),
            engine_tag: engine_tag(engine),
            tier,
            fd_paths: cfg!(target_os = "linux") && Path::new("/proc/self/fd").is_dir(),
        })
    }

    /// Where the artifact for a component with this content digest lives.
    pub fn path_for(&self, wasm_digest: &str) -> PathBuf {
        match self.tier {
            "" => self
                .dir
                .join(format!("{wasm_digest}-{}.cwasm", self.engine_tag)),
            tier => self
                .dir
                .join(format!("{wasm_digest}-{tier}-{}.cwasm", self.engine_tag)),
        }
    }

    /// The artifact for `wasm_digest`, if present and written by this node. Anything
    /// unreadable is reported and treated as absent; anything unauthenticated is reported,
    /// removed and treated as absent.
    pub(crate) fn get(&self, wasm_digest: &str) -> Option<Verified> {
        let path = self.path_for(wasm_digest);
        let file = match open_no_follow(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read AOT artifact; recompiling");
                return None;
            }
        };
        let checked = match self.fd_paths {
            true => self
                .check_file(wasm_digest, &file)
                .map(|_| Verified::File(file)),
            false => self.check_read(wasm_digest, file).map(Verified::Bytes),
        };
        match checked {
            Ok(verified) => Some(verified),
            Err(Refused::Io(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read AOT artifact; recompiling");
                None
            }
            Err(Refused::Untrusted(reason)) => {
                tracing::warn!(path = %path.display(), %reason, "AOT artifact refused; discarding and recompiling");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores an artifact atomically (temporary file, fsync, rename).
    pub fn put(&self, wasm_digest: &str, artifact: &[u8]) -> std::io::Result<()> {
        let path = self.path_for(wasm_digest);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        let len = artifact.len() as u64;
        let tag = self.hasher(wasm_digest, len).update(artifact).finalize();
        tmp.write_all(artifact)?;
        tmp.write_all(tag.as_bytes())?;
        tmp.write_all(&len.to_le_bytes())?;
        tmp.write_all(MAGIC)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Removes an artifact (after Wasmtime refused it, for instance).
    pub fn remove(&self, wasm_digest: &str) {
        let _ = fs::remove_file(self.path_for(wasm_digest));
    }

    /// The keyed hash of an artifact, fed with what the tag covers besides the bytes: the
    /// tier, the component digest and the length.
    fn hasher(&self, wasm_digest: &str, len: u64) -> blake3::Hasher {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(self.tier.as_bytes());
        hasher.update(&[0]);
        hasher.update(wasm_digest.as_bytes());
        hasher.update(&[0]);
        hasher.update(&len.to_le_bytes());
        hasher
    }

    /// Checks an open artifact in place: who may write to it, its trailer, its tag.
    fn check_file(&self, wasm_digest: &str, mut file: &File) -> Result<(), Refused> {
        let size = check_owner(file)?;
        let (len, tag) = trailer(file, size)?;
        let mut hasher = self.hasher(wasm_digest, len);
        let mut chunk = vec![0u8; HASH_CHUNK.min(len as usize)];
        let mut left = len as usize;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(Refused::Io)?;
        while left > 0 {
            let n = left.min(chunk.len());
            file.read_exact(&mut chunk[..n]).map_err(Refused::Io)?;
            hasher.update_rayon(&chunk[..n]);
            left -= n;
        }
        match hasher.finalize() == tag {
            true => Ok(()),
            false => Err(Refused::Untrusted("its tag does not verify".into())),
        }
    }

    /// Reads an artifact into memory and checks it there; the bytes without the trailer.
    fn check_read(&self, wasm_digest: &str, mut file: File) -> Result<Vec<u8>, Refused> {
        let size = check_owner(&file)?;
        let mut bytes = Vec::with_capacity(size as usize);
        file.read_to_end(&mut bytes).map_err(Refused::Io)?;
        let (len, tag) = parse_trailer(&bytes)?;
        bytes.truncate(len as usize);
        match self
            .hasher(wasm_digest, len)
            .update_rayon(&bytes)
            .finalize()
            == tag
        {
            true => Ok(bytes),
            false => Err(Refused::Untrusted("its tag does not verify".into())),
        }
    }
}

/// Why an artifact is not loaded.
enum Refused {
    /// It could not be read (kept: it may be fine next time).
    Io(std::io::Error),
    /// It is not an artifact this node wrote, or no longer one (removed).
    Untrusted(String),
}

fn open_no_follow(path: &Path) -> std::io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// The file's size, if it is a regular file only this node's user can write to.
fn check_owner(file: &File) -> Result<u64, Refused> {
    let meta = file.metadata().map_err(Refused::Io)?;
    if !meta.is_file() {
        return Err(Refused::Untrusted("it is not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(Refused::Untrusted(format!(
                "it is owned by uid {}, not by the node's user (uid {me})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(Refused::Untrusted(format!(
                "its mode {:o} lets others write to it",
                meta.mode() & 0o777
            )));
        }
    }
    Ok(meta.len())
}

/// The artifact length and tag in the trailer of a file of `size` bytes.
fn trailer(file: &File, size: u64) -> Result<(u64, [u8; TAG_LEN]), Refused> {
    if size < TRAILER_LEN as u64 {
        return Err(not_ours());
    }
    let mut bytes = [0u8; TRAILER_LEN];
    read_at(file, &mut bytes, size - TRAILER_LEN as u64).map_err(Refused::Io)?;
    let (len, tag) = parse_trailer_bytes(&bytes)?;
    if len != size - TRAILER_LEN as u64 {
        return Err(not_ours());
    }
    Ok((len, tag))
}

fn parse_trailer(file: &[u8]) -> Result<(u64, [u8; TAG_LEN]), Refused> {
    let Some(start) = file.len().checked_sub(TRAILER_LEN) else {
        return Err(not_ours());
    };
    let (len, tag) = parse_trailer_bytes(file[start..].try_into().expect("TRAILER_LEN bytes"))?;
    if len != start as u64 {
        return Err(not_ours());
    }
    Ok((len, tag))
}

fn parse_trailer_bytes(bytes: &[u8; TRAILER_LEN]) -> Result<(u64, [u8; TAG_LEN]), Refused> {
    let (tag, rest) = bytes.split_at(TAG_LEN);
    let (len, magic) = rest.split_at(8);
    if magic != MAGIC {
        return Err(not_ours());
    }
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    Ok((len, tag.try_into().expect("TAG_LEN bytes")))
}

fn not_ours() -> Refused {
    Refused::Untrusted(
        "it has no SPARKAO3 trailer (an older format, a truncated or a foreign file)".into(),
    )
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_at(mut file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// A short digest of the engine's precompile compatibility hash.
fn engine_tag(engine: &Engine) -> String {
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = ShaHasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict_to_owner(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> ArtifactCache {
        ArtifactCache::open(dir, &Engine::default()).unwrap()
    }

    /// What a load would hand to Wasmtime, as bytes: the artifact without its trailer, read
    /// through the very file that was checked.
    fn loaded(c: &ArtifactCache, digest: &str) -> Option<Vec<u8>> {
        match c.get(digest)? {
            Verified::File(file) => {
                let mut bytes = fs::read(Verified::fd_path(&file)).unwrap();
                bytes.truncate(bytes.len() - TRAILER_LEN);
                Some(bytes)
            }
            Verified::Bytes(bytes) => Some(bytes),
        }
    }

    #[test]
    fn round_trip_and_key_persistence() {
        let dir = tempfile::tempdir().unwrap();
        cache(dir.path()).put("abc", b"native code").unwrap();
        // A second open (a restarted node) reads the key back and accepts the artifact.
        assert_eq!(
            loaded(&cache(dir.path()), "abc").as_deref(),
            Some(&b"native code"[..])
        );
        assert_eq!(loaded(&cache(dir.path()), "missing"), None);
        // The artifact comes first in the file, unchanged (Wasmtime maps the file itself).
        let file = fs::read(cache(dir.path()).path_for("abc")).unwrap();
        assert!(file.starts_with(b"native code") && file.ends_with(MAGIC));
    }

    #[test]
    fn without_proc_the_artifact_is_checked_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cache(dir.path());
        c.fd_paths = false;
        c.put("abc", b"native code").unwrap();
        assert!(matches!(c.get("abc"), Some(Verified::Bytes(_))));
        assert_eq!(loaded(&c, "abc").as_deref(), Some(&b"native code"[..]));
        flip(&c.path_for("abc"), 3);
        assert_eq!(loaded(&c, "abc"), None);
        assert!(!c.path_for("abc").exists());
    }

    fn flip(path: &Path, at: usize) {
        let mut bytes = fs::read(path).unwrap();
        bytes[at] ^= 1;
        fs::write(path, &bytes).unwrap();
    }

    #[test]
    fn foreign_corrupt_or_truncated_artifacts_are_never_returned() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let code = vec![7u8; 100_000];
        // A flipped bit anywhere: in the code, in the tag, in the length, in the magic.
        for at in [0, 50_000, 99_999, 100_000, 100_031, 100_032, 100_040] {
            c.put("abc", &code).unwrap();
            flip(&c.path_for("abc"), at);
            assert_eq!(loaded(&c, "abc"), None, "bit flipped at {at}");
            assert!(!c.path_for("abc").exists(), "the bad artifact is removed");
        }
        // Truncated anywhere, or grown.
        for len in [0, 5, 100_000, 100_047, 100_000 + TRAILER_LEN - 1] {
            c.put("abc", &code).unwrap();
            let bytes = fs::read(c.path_for("abc")).unwrap();
            fs::write(c.path_for("abc"), &bytes[..len]).unwrap();
            assert_eq!(loaded(&c, "abc"), None, "truncated to {len}");
        }
        c.put("abc", &code).unwrap();
        let mut bytes = fs::read(c.path_for("abc")).unwrap();
        bytes.insert(0, 0);
        fs::write(c.path_for("abc"), &bytes).unwrap();
        assert_eq!(loaded(&c, "abc"), None, "a byte inserted");

        // A file written by someone without the key, with a well-formed trailer.
        let mut forged = b"evil".to_vec();
        forged.extend_from_slice(&[0u8; TAG_LEN]);
        forged.extend_from_slice(&4u64.to_le_bytes());
        forged.extend_from_slice(MAGIC);
        fs::write(c.path_for("def"), forged).unwrap();
        assert_eq!(loaded(&c, "def"), None);
        // Tagged under another node's key.
        let other = tempfile::tempdir().unwrap();
        cache(other.path()).put("ghi", b"their code").unwrap();
        fs::copy(cache(other.path()).path_for("ghi"), c.path_for("ghi")).unwrap();
        assert_eq!(loaded(&c, "ghi"), None);
        // Not a regular file.
        fs::create_dir(c.path_for("dir")).unwrap();
        assert_eq!(loaded(&c, "dir"), None);
    }

    #[test]
    fn an_artifact_moved_to_another_tier_or_component_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let optimized = cache(dir.path());
        let baseline =
            ArtifactCache::open_tier(dir.path(), &Engine::default(), "baseline").unwrap();
        optimized.put("abc", b"optimized code").unwrap();
        baseline.put("abc", b"baseline code").unwrap();
        assert_ne!(optimized.path_for("abc"), baseline.path_for("abc"));
        assert_eq!(
            loaded(&baseline, "abc").as_deref(),
            Some(&b"baseline code"[..])
        );
        assert_eq!(
            loaded(&optimized, "abc").as_deref(),
            Some(&b"optimized code"[..])
        );

        // The baseline artifact under the optimized name, and under another component's name.
        fs::copy(baseline.path_for("abc"), optimized.path_for("abc")).unwrap();
        assert_eq!(loaded(&optimized, "abc"), None);
        fs::copy(baseline.path_for("abc"), baseline.path_for("def")).unwrap();
        assert_eq!(loaded(&baseline, "def"), None);
        assert_eq!(
            loaded(&baseline, "abc").as_deref(),
            Some(&b"baseline code"[..])
        );
    }

    /// The earlier formats: `SPARKAO2` (header, HMAC-SHA256 over tier, digest and bytes) and
    /// `SPARKAOT` (header, HMAC-SHA256 over the bytes). Even with a valid tag under this node's
    /// key they are discarded, never read as the new format.
    #[test]
    fn artifacts_of_earlier_formats_are_discarded_once() {
        use hmac::{Hmac, Mac};
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let secret = fs::read(dir.path().join(KEY_FILE)).unwrap();
        let old = |magic: &[u8; 8], covers_names: bool, code: &[u8]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
            if covers_names {
                mac.update(b"\0abc\0");
            }
            mac.update(code);
            let mut file = magic.to_vec();
            file.extend_from_slice(&mac.finalize().into_bytes());
            file.extend_from_slice(code);
            file
        };
        for file in [
            old(b"SPARKAO2", true, b"old code"),
            old(b"SPARKAOT", false, b"old code"),
            // Old code that happens to end like a new trailer still has no valid tag.
            old(b"SPARKAO2", true, &[&[0u8; 40][..], MAGIC].concat()),
        ] {
            fs::write(c.path_for("abc"), file).unwrap();
            assert_eq!(loaded(&c, "abc"), None);
            assert!(!c.path_for("abc").exists(), "discarded");
        }
        // Recompiled once: the new artifact is accepted.
        c.put("abc", b"new code").unwrap();
        assert_eq!(loaded(&c, "abc").as_deref(), Some(&b"new code"[..]));
    }

    #[test]
    fn an_artifact_others_may_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        c.put("abc", b"native code").unwrap();
        let mode = fs::metadata(c.path_for("abc"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "written owner-only");
        for mode in [0o620, 0o602, 0o666] {
            c.put("abc", b"native code").unwrap();
            fs::set_permissions(c.path_for("abc"), fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(loaded(&c, "abc"), None, "mode {mode:o}");
            assert!(!c.path_for("abc").exists());
        }
        // Owned by another user (only where this test may give files away: as root).
        c.put("abc", b"native code").unwrap();
        if std::os::unix::fs::chown(c.path_for("abc"), Some(65_534), None).is_ok() {
            assert_eq!(loaded(&c, "abc"), None, "owned by another user");
        }
        // A symbolic link, even to a good artifact, is not followed.
        c.put("abc", b"native code").unwrap();
        std::os::unix::fs::symlink(c.path_for("abc"), c.path_for("link")).unwrap();
        assert_eq!(c.get("link").map(|_| ()), None);
    }

    /// The file that was checked is the file that is loaded: replacing the name afterwards
    /// (another artifact renamed over it, or the file removed) does not reach it.
    #[test]
    fn a_file_swapped_after_the_check_does_not_reach_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        c.put("abc", b"checked code").unwrap();
        let Some(Verified::File(file)) = c.get("abc") else {
            panic!("a verified open file")
        };
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join("evil"), b"evil code, not checked").unwrap();
        fs::rename(other.path().join("evil"), c.path_for("abc")).unwrap();
        let through_fd = fs::read(Verified::fd_path(&file)).unwrap();
        assert!(through_fd.starts_with(b"checked code"), "{through_fd:?}");
        fs::remove_file(c.path_for("abc")).unwrap();
        let through_fd = fs::read(Verified::fd_path(&file)).unwrap();
        assert!(through_fd.starts_with(b"checked code"));
    }

    #[test]
    fn key_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        cache(dir.path());
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn digests_are_content_addressed() {
        assert_eq!(digest(b"a"), digest(b"a"));
        assert_ne!(digest(b"a"), digest(b"b"));
        assert_eq!(digest(b"").len(), 64);
    }
}
