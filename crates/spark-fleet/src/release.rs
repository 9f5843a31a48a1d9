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
    /// The deployer's signature over the application and [`content_digest`] (not part of
    /// the key); nodes with trusted keys refuse a release without a valid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signing::Signature>,
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

/// A release's content hash: SHA-256 (lowercase hex, all 64 digits) over the canonical JSON
/// `{"manifest":..,"modules":[{"digest":..,"id":..},..]}` with modules sorted by id, exactly
/// as a node's store hashes a release's content. Signatures cover this whole hash.
pub fn content_digest(manifest: &str, components: &BTreeMap<String, String>) -> String {
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
    hex::encode(Sha256::digest(json.as_bytes()))
}

/// A release's key: the first [`KEY_LEN`] digits of its [`content_digest`], which is the hash
/// part of a node's release ids: fleet release `abcdef012345` runs on the nodes as
/// `r<n>-abcdef012345`.
pub fn content_key(manifest: &str, components: &BTreeMap<String, String>) -> String {
    content_digest(manifest, components)[..KEY_LEN].to_owned()
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
            signature: None,
        };
        let mut b = a.clone();
        b.note = "two".into();
        assert_eq!(a.key(), b.key());
        a.components.insert("x".into(), "d2".into());
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key().len(), KEY_LEN);
    }
}
