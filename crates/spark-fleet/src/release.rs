//! A release as the fleet knows it: the manifest text and each module's artifact digest. Its
//! [`FleetRelease::key`] is a content hash that a node computes the same way from its own store,
//! so "does this node run the desired release?" is a comparison of two strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A release to run across the fleet: what [`FleetRelease::key`] is computed over, plus a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetRelease {
    /// The manifest as deployed (component paths in it are replaced by `components`).
    pub manifest: String,
    /// Module id -> hex SHA-256 of its component.
    pub components: BTreeMap<String, String>,
    /// Free text from the deployer; not part of the key.
    #[serde(default)]
    pub note: String,
}

impl FleetRelease {
    /// The content key of this release.
    pub fn key(&self) -> String {
        content_key(&self.manifest, &self.components)
    }
}

/// SHA-256 over the manifest text and the sorted `module=digest` pairs, first 16 hex digits.
pub fn content_key(manifest: &str, components: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(manifest.as_bytes());
    for (module, digest) in components {
        hasher.update(b"\n");
        hasher.update(module.as_bytes());
        hasher.update(b"=");
        hasher.update(digest.as_bytes());
    }
    hex::encode(hasher.finalize())[..16].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_text_and_digests_only() {
        let mut a = FleetRelease {
            manifest: "m".into(),
            components: BTreeMap::from([("x".into(), "d1".into())]),
            note: "one".into(),
        };
        let mut b = a.clone();
        b.note = "two".into();
        assert_eq!(a.key(), b.key());
        a.components.insert("x".into(), "d2".into());
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key().len(), 16);
    }
}
