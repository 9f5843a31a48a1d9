//! The node's data directory: where every file of a node lives, and the one way its secret
//! files (the admin token, the AOT cache's signing key, the fleet node id) are made.
//!
//! The decision worth knowing: a secret is created once and then only read. It is written
//! through the store's crash-safe protocol (owner-only temporary file, fsync, rename, fsync of
//! the directory), so a crash while it is being made leaves either no secret (the next start
//! makes one) or the complete one, never a truncated key that would silently change what the
//! node trusts. A file that exists but does not hold a valid secret is replaced, loudly.

use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::fsutil;

/// The directory that holds everything a node keeps: `store/` (releases and artifacts),
/// `aot/` (compiled code), `admin.token` and `fleet-node-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

/// Bytes of randomness in the admin token (hex-encoded in its file).
const TOKEN_BYTES: usize = 32;
/// Bytes of randomness in a fleet node id (`node-<hex>`).
const NODE_ID_BYTES: usize = 4;

impl DataDir {
    /// The data directory at `root` (nothing is created until a file is asked for).
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The embedded store: the release database and the content-addressed artifacts.
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// The AOT cache of compiled components (its key file lives inside it).
    pub fn aot_cache(&self) -> PathBuf {
        self.root.join("aot")
    }

    /// Where the admin API's bearer token is kept (what admin commands read).
    pub fn admin_token_path(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    /// The admin API's bearer token: 32 random bytes, hex; made on first use.
    pub fn admin_token(&self) -> Result<String, StoreError> {
        let bytes = load_or_create_secret(
            &self.admin_token_path(),
            |text| text.trim_ascii().len() >= 2 * TOKEN_BYTES,
            || random_bytes::<TOKEN_BYTES>().map(|b| hex::encode(b).into_bytes()),
        )?;
        Ok(String::from_utf8_lossy(bytes.trim_ascii()).into_owned())
    }

    /// This node's id in a fleet (`node-<8 hex digits>`), stable across restarts.
    pub fn fleet_node_id(&self) -> Result<String, StoreError> {
        let bytes = load_or_create_secret(
            &self.root.join("fleet-node-id"),
            |text| !text.trim_ascii().is_empty() && std::str::from_utf8(text).is_ok(),
            || {
                random_bytes::<NODE_ID_BYTES>()
                    .map(|b| format!("node-{}", hex::encode(b)).into_bytes())
            },
        )?;
        Ok(String::from_utf8_lossy(bytes.trim_ascii()).into_owned())
    }
}

/// Reads the secret at `path` if `valid` accepts its bytes; otherwise makes one with `make`
/// and writes it owner-only and durably (see the module notes) before returning it. Missing
/// parent directories are created owner-only.
pub fn load_or_create_secret(
    path: &Path,
    valid: impl Fn(&[u8]) -> bool,
    make: impl FnOnce() -> Result<Vec<u8>, StoreError>,
) -> Result<Vec<u8>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) if valid(&bytes) => return Ok(bytes),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "secret file is malformed; making a new one");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("reading secret", path)(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fsutil::create_private_dir(dir)?;
    }
    let secret = make()?;
    fsutil::write_secret(path, &secret)?;
    Ok(secret)
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(StoreError::Random)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_made_once_owner_only_and_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("fresh"));
        let token = data.admin_token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(data.admin_token().unwrap(), token, "read back, not remade");
        assert_eq!(mode(&data.admin_token_path()), 0o600);
        assert_eq!(
            mode(data.root()),
            0o700,
            "a data directory it made is private"
        );
        let id = data.fleet_node_id().unwrap();
        assert!(id.starts_with("node-") && id.len() == 13, "{id}");
        assert_eq!(data.fleet_node_id().unwrap(), id);
        let leftovers: Vec<_> = std::fs::read_dir(data.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(fsutil::TMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_malformed_secret_is_replaced_and_an_operator_written_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        std::fs::write(data.admin_token_path(), "short").unwrap();
        let token = data.admin_token().unwrap();
        assert_eq!(token.len(), 64, "a too-short token is replaced");
        let chosen = "a".repeat(70);
        std::fs::write(data.admin_token_path(), format!("{chosen}\n")).unwrap();
        assert_eq!(data.admin_token().unwrap(), chosen, "trimmed, kept");
    }
}
