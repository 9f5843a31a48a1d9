//! The AOT cache: native code for a component, compiled once and reused across restarts.
//!
//! An artifact is keyed by the SHA-256 of the `.wasm` bytes and a digest of the engine's
//! compatibility hash (Wasmtime version, target, settings), so a changed component or a changed
//! engine never picks up stale code.
//!
//! The decision worth knowing: deserializing is `unsafe` in Wasmtime because the bytes become
//! executable code, so only artifacts this node wrote may ever be loaded. Every artifact file
//! carries an HMAC-SHA256 over its bytes under a per-node key (created on first use, mode 0600,
//! next to the cache). A file someone else dropped into the directory, a truncated write or a
//! flipped bit fails the check and is recompiled, never loaded.
//!
//! With tiering a component has two artifacts, one per tier (`<digest>-<engine>.cwasm` for
//! the optimized code, `<digest>-baseline-<engine>.cwasm` for the baseline code). The HMAC
//! covers the tier and the component digest besides the bytes, so an artifact renamed to
//! another tier or another component fails authentication like a forged one. (Artifacts of
//! the first format, `SPARKAOT`, whose HMAC covered the bytes only, are discarded and
//! recompiled once.)

use std::fs;
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;

use crate::error::RuntimeError;

const MAGIC: &[u8; 8] = b"SPARKAO2";
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + TAG_LEN;
const KEY_FILE: &str = "aot.key";
const KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// A directory of authenticated precompiled artifacts.
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
    engine_tag: String,
    /// `""` for the optimized tier (the name artifacts always had), `"baseline"`.
    tier: &'static str,
}

impl std::fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
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
        let key = spark_store::load_or_create_secret(
            &dir.join(KEY_FILE),
            |bytes| bytes.len() == KEY_LEN,
            || spark_store::random_bytes::<KEY_LEN>().map(Vec::from),
        )
        .map_err(RuntimeError::CacheKey)?;
        let key = key.try_into().expect("a validated key has KEY_LEN bytes");
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            key,
            engine_tag: engine_tag(engine),
            tier,
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

    /// The artifact bytes for `wasm_digest`, if present and written by this node.
    /// Anything unreadable or unauthenticated is reported and treated as absent.
    pub fn get(&self, wasm_digest: &str) -> Option<Vec<u8>> {
        let path = self.path_for(wasm_digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read AOT artifact; recompiling");
                return None;
            }
        };
        match self.verify(wasm_digest, &bytes) {
            true => Some(bytes[HEADER_LEN..].to_vec()),
            false => {
                tracing::warn!(path = %path.display(), "AOT artifact failed authentication; discarding and recompiling");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores an artifact atomically (temporary file, fsync, rename).
    pub fn put(&self, wasm_digest: &str, artifact: &[u8]) -> std::io::Result<()> {
        let path = self.path_for(wasm_digest);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&self.tag(wasm_digest, artifact))?;
        tmp.write_all(artifact)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Removes an artifact (after Wasmtime refused it, for instance).
    pub fn remove(&self, wasm_digest: &str) {
        let _ = fs::remove_file(self.path_for(wasm_digest));
    }

    /// The MAC of an artifact: over the tier, the component digest and the bytes.
    fn mac(&self, wasm_digest: &str, artifact: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(self.tier.as_bytes());
        mac.update(&[0]);
        mac.update(wasm_digest.as_bytes());
        mac.update(&[0]);
        mac.update(artifact);
        mac
    }

    fn tag(&self, wasm_digest: &str, artifact: &[u8]) -> [u8; TAG_LEN] {
        self.mac(wasm_digest, artifact)
            .finalize()
            .into_bytes()
            .into()
    }

    fn verify(&self, wasm_digest: &str, file: &[u8]) -> bool {
        if file.len() < HEADER_LEN || &file[..MAGIC.len()] != MAGIC {
            return false;
        }
        self.mac(wasm_digest, &file[HEADER_LEN..])
            .verify_slice(&file[MAGIC.len()..HEADER_LEN])
            .is_ok()
    }
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

    #[test]
    fn round_trip_and_key_persistence() {
        let dir = tempfile::tempdir().unwrap();
        cache(dir.path()).put("abc", b"native code").unwrap();
        // A second open (a restarted node) reads the key back and accepts the artifact.
        assert_eq!(
            cache(dir.path()).get("abc").as_deref(),
            Some(&b"native code"[..])
        );
        assert_eq!(cache(dir.path()).get("missing"), None);
    }

    #[test]
    fn foreign_or_corrupt_artifacts_are_never_returned() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        c.put("abc", b"native code").unwrap();
        let path = c.path_for("abc");
        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(c.get("abc"), None, "a flipped bit must fail authentication");
        assert!(!path.exists(), "the bad artifact is removed");

        // A file written by someone without the key.
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&[0u8; TAG_LEN]);
        forged.extend_from_slice(b"evil");
        fs::write(c.path_for("def"), forged).unwrap();
        assert_eq!(c.get("def"), None);
        fs::write(c.path_for("short"), b"SPARK").unwrap();
        assert_eq!(c.get("short"), None);
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
        assert_eq!(baseline.get("abc").as_deref(), Some(&b"baseline code"[..]));
        assert_eq!(
            optimized.get("abc").as_deref(),
            Some(&b"optimized code"[..])
        );

        // The baseline artifact under the optimized name, and under another component's name.
        fs::copy(baseline.path_for("abc"), optimized.path_for("abc")).unwrap();
        assert_eq!(optimized.get("abc"), None);
        fs::copy(baseline.path_for("abc"), baseline.path_for("def")).unwrap();
        assert_eq!(baseline.get("def"), None);
        assert_eq!(baseline.get("abc").as_deref(), Some(&b"baseline code"[..]));
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
