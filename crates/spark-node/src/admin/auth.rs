//! The admin API's bearer token: 32 random bytes, hex, created on first start in
//! `<data_dir>/admin.token` with owner-only permissions, compared in constant time.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the token lives.
pub(crate) fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// Reads the token, creating it (mode 0600) on first start.
pub(crate) fn load_or_create_token(data_dir: &Path) -> std::io::Result<String> {
    let path = token_path(data_dir);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_owned();
        if token.len() >= 32 {
            return Ok(token);
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let token = hex::encode(bytes);
    let mut tmp = tempfile::NamedTempFile::new_in(data_dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(token.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(token)
}

/// Whether an `Authorization` header carries the token (`Bearer <token>`).
pub(crate) fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_owner_only_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let token = load_or_create_token(dir.path()).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(
            load_or_create_token(dir.path()).unwrap(),
            token,
            "a restart keeps the token"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(token_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(authorized(Some(&format!("Bearer {token}")), &token));
        assert!(!authorized(Some("Bearer nope"), &token));
        assert!(!authorized(Some(&token), &token), "the scheme is required");
        assert!(!authorized(None, &token));
    }
}
