//! A release as the fleet knows it: the manifest text and each module's artifact digest. Its
//! [`FleetRelease::key`] is the content hash a node's store puts in its release ids, so "does
//! this node run the desired release?" is a comparison of two strings, and an operator sees the
//! same hash in `spark fleet status` and in each node's `r<n>-<hash>`.

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

/// How many hex digits of the content hash a key keeps: as many as a node's release id
/// (`r<n>-<12 hex>`), so the fleet's key *is* the hash part of every node's release id.
pub const KEY_LEN: usize = 12;

/// A release's content hash, computed exactly as a node's store computes the hash in its
/// release ids: SHA-256 over the canonical JSON `{"manifest":..,"modules":[{"digest":..,
/// "id":..},..]}` with modules sorted by id, first [`KEY_LEN`] hex digits. A fleet release
/// `abcdef012345` runs on the nodes as `r<n>-abcdef012345`.
pub fn content_key(manifest: &str, components: &BTreeMap<String, String>) -> String {
    #[derive(Serialize)]
    struct Module<'a> {
        digest: &'a str,
        id: &'a str,
    }
    #[derive(Serialize)]
    struct Canonical<'a> {
        manifest: &'a str,
        modules: Vec<Module<'a>>,
    }
    let canonical = Canonical {
        manifest,
        modules: components
            .iter()
            .map(|(id, digest)| Module { digest, id })
            .collect(),
    };
    let json = serde_json::to_string(&canonical).expect("strings always serialize");
    hex::encode(Sha256::digest(json.as_bytes()))[..KEY_LEN].to_owned()
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
        assert_eq!(a.key().len(), KEY_LEN);
    }
}
