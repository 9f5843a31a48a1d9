//! Release records: [`Release`], its [`ReleaseId`], and how the id is derived.
//!
//! Decision: the id is `r<number>-<content hash>`, carrying both the sequence number (so ids
//! sort and read naturally: `r12-…` came after `r11-…`) and the first 12 hex characters of
//! the SHA-256 over the release's canonical JSON (so two releases with the same suffix have
//! the same manifest and artifacts: a redeploy of identical content is visible at a glance).
//! The canonical form is fixed here, byte for byte:
//! `{"manifest":<string>,"modules":[{"digest":<hex>,"id":<string>},...]}` with modules sorted
//! by id, no whitespace, serde_json string escaping. The author note and the time are not
//! part of it: they describe the deploy, not the content.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::artifacts::ArtifactStore;
use crate::digest::Digest;
use crate::error::StoreError;

/// Number of hex characters of the content hash in a [`ReleaseId`].
pub const RELEASE_HASH_LEN: usize = 12;

/// `r<number>-<12 hex>`, e.g. `r3-9f86d081884c`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReleaseId(String);

impl ReleaseId {
    /// Parses and validates an id: `r`, a number >= 1 without leading zeros, `-`, then 12
    /// lowercase hex characters.
    pub fn parse(s: &str) -> Result<ReleaseId, StoreError> {
        let invalid = || StoreError::InvalidReleaseId {
            input: s.chars().take(80).collect(),
        };
        let rest = s.strip_prefix('r').ok_or_else(invalid)?;
        let (num, hash) = rest.split_once('-').ok_or_else(invalid)?;
        let num_ok = !num.is_empty()
            && num.len() <= 20
            && num.bytes().all(|b| b.is_ascii_digit())
            && !num.starts_with('0')
            && num.parse::<u64>().is_ok();
        let hash_ok = hash.len() == RELEASE_HASH_LEN
            && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !(num_ok && hash_ok) {
            return Err(invalid());
        }
        Ok(ReleaseId(s.to_owned()))
    }

    fn from_parts(number: u64, content_hash: &str) -> ReleaseId {
        ReleaseId(format!("r{number}-{}", &content_hash[..RELEASE_HASH_LEN]))
    }

    /// The release number encoded in the id.
    pub fn number(&self) -> u64 {
        // Validated at construction, so this cannot fail.
        self.0[1..self.0.find('-').unwrap_or(1)]
            .parse()
            .unwrap_or(0)
    }

    /// The 12-character content hash.
    pub fn content_hash(&self) -> &str {
        &self.0[self.0.len() - RELEASE_HASH_LEN..]
    }

    /// The whole id, `r<number>-<12 hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReleaseId({})", self.0)
    }
}

impl FromStr for ReleaseId {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReleaseId::parse(s)
    }
}

impl TryFrom<String> for ReleaseId {
    type Error = StoreError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        ReleaseId::parse(&s)
    }
}

impl From<ReleaseId> for String {
    fn from(id: ReleaseId) -> String {
        id.0
    }
}

/// One module of a release: its id in the manifest and its component's digest.
/// Field order is the canonical JSON order (alphabetical); do not reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseModule {
    /// The component's digest: the artifact's name in the store.
    pub digest: Digest,
    /// The module id in the manifest.
    pub id: String,
}

impl ReleaseModule {
    /// Pairs a module id with its component's digest.
    pub fn new(id: impl Into<String>, digest: Digest) -> ReleaseModule {
        ReleaseModule {
            id: id.into(),
            digest,
        }
    }
}

/// An immutable deploy: written once by [`crate::Store::create_release`], never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// `r<number>-<content hash>`, see [`ReleaseId`].
    pub id: ReleaseId,
    /// 1, 2, 3, ... in creation order, never reused.
    pub number: u64,
    /// Unix milliseconds, as given by the caller.
    pub created_ms: u64,
    /// Free-form note of the deploy; not part of the content hash.
    pub author_note: String,
    /// The manifest text as deployed.
    pub manifest: String,
    /// Sorted by module id; ids are unique.
    pub modules: Vec<ReleaseModule>,
}

impl Release {
    /// Whether every artifact this release refers to exists in `artifacts` (files present;
    /// not re-hashed). A release whose artifacts were collected is kept as a record but can
    /// no longer be rolled back to.
    pub fn artifacts_present(&self, artifacts: &ArtifactStore) -> bool {
        self.modules.iter().all(|m| artifacts.contains(&m.digest))
    }

    /// The module with this id.
    pub fn module(&self, id: &str) -> Option<&ReleaseModule> {
        self.modules
            .binary_search_by(|m| m.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.modules[i])
    }
}

/// What a deploy supplies; the store assigns the number and the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRelease {
    /// The manifest text as deployed.
    pub manifest: String,
    /// In any order: the store sorts them by id and refuses empty or duplicate ids.
    pub modules: Vec<ReleaseModule>,
    /// Free-form note of the deploy; not part of the content hash.
    pub author_note: String,
    /// Unix milliseconds, as given by the caller.
    pub created_ms: u64,
}

/// Sorts modules by id and refuses empty or duplicate ids.
pub(crate) fn normalize_modules(
    mut modules: Vec<ReleaseModule>,
) -> Result<Vec<ReleaseModule>, StoreError> {
    modules.sort_by(|a, b| a.id.cmp(&b.id));
    if modules.iter().any(|m| m.id.is_empty()) {
        return Err(StoreError::InvalidRelease(
            "a module has an empty id".into(),
        ));
    }
    if let Some(w) = modules.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(StoreError::InvalidRelease(format!(
            "module {:?} is listed twice",
            w[0].id
        )));
    }
    Ok(modules)
}

/// The canonical JSON of a release's content (see the module docs). `modules` must be
/// normalized.
pub fn canonical_json(manifest: &str, modules: &[ReleaseModule]) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        manifest: &'a str,
        modules: &'a [ReleaseModule],
    }
    serde_json::to_string(&Canonical { manifest, modules })
        .expect("strings and digests always serialize")
}

/// The id release number `number` gets for this content.
pub(crate) fn release_id(number: u64, manifest: &str, modules: &[ReleaseModule]) -> ReleaseId {
    let hash = Digest::of(canonical_json(manifest, modules).as_bytes());
    ReleaseId::from_parts(number, hash.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, bytes: &[u8]) -> ReleaseModule {
        ReleaseModule::new(id, Digest::of(bytes))
    }

    #[test]
    fn id_parse_and_parts() {
        let id = ReleaseId::parse("r12-0123456789ab").unwrap();
        assert_eq!(id.number(), 12);
        assert_eq!(id.content_hash(), "0123456789ab");
        for bad in [
            "",
            "r",
            "12-0123456789ab",
            "r0-0123456789ab",
            "r01-0123456789ab",
            "r1-0123456789a",
            "r1-0123456789AB",
            "r1_0123456789ab",
            "r-0123456789ab",
            "r99999999999999999999-0123456789ab",
        ] {
            assert!(ReleaseId::parse(bad).is_err(), "{bad:?} accepted");
        }
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ReleaseId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ReleaseId>("\"r1-x\"").is_err());
    }

    #[test]
    fn canonical_form_is_fixed() {
        let modules = normalize_modules(vec![m("b", b"2"), m("a", b"1")]).unwrap();
        let json = canonical_json("name = \"x\"\n", &modules);
        assert_eq!(
            json,
            format!(
                r#"{{"manifest":"name = \"x\"\n","modules":[{{"digest":"{}","id":"a"}},{{"digest":"{}","id":"b"}}]}}"#,
                Digest::of(b"1"),
                Digest::of(b"2")
            )
        );
        let id = release_id(7, "name = \"x\"\n", &modules);
        assert_eq!(id.number(), 7);
        assert_eq!(id.content_hash(), Digest::of(json.as_bytes()).short(12));
    }

    #[test]
    fn id_depends_on_content_not_order() {
        let a = normalize_modules(vec![m("a", b"1"), m("b", b"2")]).unwrap();
        let b = normalize_modules(vec![m("b", b"2"), m("a", b"1")]).unwrap();
        assert_eq!(release_id(1, "x", &a), release_id(1, "x", &b));
        assert_ne!(release_id(1, "x", &a), release_id(1, "y", &a));
        let c = normalize_modules(vec![m("a", b"1"), m("b", b"3")]).unwrap();
        assert_ne!(release_id(1, "x", &a), release_id(1, "x", &c));
    }

    #[test]
    fn duplicate_and_empty_module_ids_refused() {
        assert!(normalize_modules(vec![m("a", b"1"), m("a", b"2")]).is_err());
        assert!(normalize_modules(vec![m("", b"1")]).is_err());
        assert!(normalize_modules(vec![]).unwrap().is_empty());
    }
}
