//! Signed releases: a deployer signs what it releases with an Ed25519 key; nodes that hold
//! the deployer's public key refuse what it did not sign.
//!
//! Why: anyone who can write the desired-state bucket could otherwise make every node run any
//! component with any outbound hosts, and the digests a node checks come from the same writer.
//! With trusted keys configured, a node runs a release only when a key it trusts signed *that
//! application's* manifest and component digests (the full SHA-256 of the release's canonical
//! content, [`crate::release::content_digest`]); a person's promotion (which skips the nodes'
//! canaries) and rollback are signed the same way, for one application and generation.
//!
//! Text forms: a public key is `ed25519:<64 hex>`; a secret key file holds
//! `spark-ed25519-secret:<64 hex>` (the 32-byte seed), owner-only.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::FleetRelease;

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "spark-ed25519-secret:";

/// A signature and the public key that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The signer's public key, `ed25519:<hex>`.
    pub key: String,
    /// The Ed25519 signature, hex.
    pub signature: String,
}

/// What a person asked of a fleet rollout, signed with the deployer's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// `promote` or `rollback`.
    pub action: String,
    /// The desired-state generation it applies to.
    pub generation: u64,
    /// Who asked (free text).
    pub by: String,
    /// The deployer's signature; `None` when no key was given.
    pub signature: Option<Signature>,
}

/// Why a node refuses a release or an intent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefusal {
    /// Trusted keys are configured and the release carries no signature.
    #[error("unsigned (this node only runs releases signed by its trusted keys)")]
    Unsigned,
    /// Signed, but not by a key this node trusts.
    #[error("signed by {key}, which this node does not trust")]
    UnknownKey {
        /// The key it was signed with.
        key: String,
    },
    /// A trusted key signed something else: the manifest, the digests or the application
    /// differ from what was signed.
    #[error(
        "the signature does not match: the manifest, components or application differ from what {key} signed"
    )]
    Mismatch {
        /// The key named by the signature.
        key: String,
    },
    /// The signature or key is not well formed.
    #[error("malformed signature: {0}")]
    Malformed(String),
}

/// Why a key could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}")]
    Io {
        /// The file.
        path: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a key of the expected form.
    #[error("{0}")]
    Parse(String),
}

/// The message signed for a release of `app`.
fn release_message(app: &str, release: &FleetRelease) -> Vec<u8> {
    format!(
        "spark-release/v1\n{app}\n{}",
        crate::release::content_digest(&release.manifest, &release.components)
    )
    .into_bytes()
}

/// The message signed for an intent on `app`.
fn intent_message(app: &str, action: &str, generation: u64) -> Vec<u8> {
    format!("spark-intent/v1\n{app}\n{action}\n{generation}").into_bytes()
}

/// A deployer's secret key.
pub struct ReleaseSigner {
    key: SigningKey,
}

impl std::fmt::Debug for ReleaseSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseSigner")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl ReleaseSigner {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<ReleaseSigner, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| KeyError::Parse(format!("no random source: {e}")))?;
        Ok(ReleaseSigner {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Reads a secret key file (`spark key generate` writes them).
    pub fn load(path: &Path) -> Result<ReleaseSigner, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let hex_seed = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            KeyError::Parse(format!(
                "{} is not a Spark secret key (it should start with {SECRET_PREFIX})",
                path.display()
            ))
        })?;
        let seed: [u8; 32] = hex::decode(hex_seed)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::Parse(format!("{}: bad key bytes", path.display())))?;
        Ok(ReleaseSigner {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The secret key file's text (keep it owner-only).
    pub fn secret_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", hex::encode(self.key.to_bytes()))
    }

    /// The public key, `ed25519:<hex>`: what nodes are told to trust.
    pub fn public_key(&self) -> String {
        format!(
            "{PUBLIC_PREFIX}{}",
            hex::encode(self.key.verifying_key().to_bytes())
        )
    }

    /// Signs `release` for application `app`.
    pub fn sign_release(&self, app: &str, release: &FleetRelease) -> Signature {
        self.signature(&release_message(app, release))
    }

    /// A signed intent (`promote` or `rollback`) on generation `generation` of `app`.
    pub fn intent(&self, app: &str, action: &str, generation: u64, by: &str) -> Intent {
        Intent {
            action: action.to_owned(),
            generation,
            by: by.to_owned(),
            signature: Some(self.signature(&intent_message(app, action, generation))),
        }
    }

    fn signature(&self, message: &[u8]) -> Signature {
        Signature {
            key: self.public_key(),
            signature: hex::encode(self.key.sign(message).to_bytes()),
        }
    }
}

/// Parses a public key, `ed25519:<64 hex>`.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bad = || {
        KeyError::Parse(format!(
            "{text:?} is not a public key (expected {PUBLIC_PREFIX}<64 hex digits>, as `spark key generate` prints)"
        ))
    };
    let hex_key = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

/// The public keys a node trusts; empty: it runs unsigned releases (as before signing).
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl TrustedKeys {
    /// Parses each `ed25519:<hex>` key.
    pub fn parse<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<TrustedKeys, KeyError> {
        let mut keys = Vec::new();
        for text in texts {
            let key = parse_public_key(text)?;
            keys.push((
                format!("{PUBLIC_PREFIX}{}", hex::encode(key.to_bytes())),
                key,
            ));
        }
        Ok(TrustedKeys { keys })
    }

    /// Whether any key is trusted (otherwise nothing is checked).
    pub fn enforced(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks that a trusted key signed `release` for `app`.
    pub fn verify_release(
        &self,
        app: &str,
        release: &FleetRelease,
    ) -> Result<(), SignatureRefusal> {
        if !self.enforced() {
            return Ok(());
        }
        let signature = release
            .signature
            .as_ref()
            .ok_or(SignatureRefusal::Unsigned)?;
        self.verify(signature, &release_message(app, release))
    }

    /// Checks that a trusted key signed `intent` for `app` at `generation`.
    pub fn verify_intent(
        &self,
        app: &str,
        intent: &Intent,
        generation: u64,
    ) -> Result<(), SignatureRefusal> {
        if !self.enforced() {
            return Ok(());
        }
        let signature = intent
            .signature
            .as_ref()
            .ok_or(SignatureRefusal::Unsigned)?;
        if intent.generation != generation {
            return Err(SignatureRefusal::Mismatch {
                key: signature.key.clone(),
            });
        }
        self.verify(signature, &intent_message(app, &intent.action, generation))
    }

    fn verify(&self, signature: &Signature, message: &[u8]) -> Result<(), SignatureRefusal> {
        let given = parse_public_key(&signature.key)
            .map_err(|e| SignatureRefusal::Malformed(e.to_string()))?;
        let Some((name, key)) = self.keys.iter().find(|(_, k)| *k == given) else {
            return Err(SignatureRefusal::UnknownKey {
                key: signature.key.clone(),
            });
        };
        let bytes: [u8; 64] = hex::decode(&signature.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SignatureRefusal::Malformed("not 64 hex bytes".into()))?;
        key.verify(message, &ed25519_dalek::Signature::from_bytes(&bytes))
            .map_err(|_| SignatureRefusal::Mismatch { key: name.clone() })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn release(manifest: &str) -> FleetRelease {
        FleetRelease {
            manifest: manifest.into(),
            components: BTreeMap::from([("api".into(), "ab".repeat(32))]),
            note: String::new(),
            signature: None,
        }
    }

    #[test]
    fn only_what_a_trusted_key_signed_for_this_app_passes() {
        let deployer = ReleaseSigner::generate().unwrap();
        let stranger = ReleaseSigner::generate().unwrap();
        let trusted = TrustedKeys::parse([deployer.public_key().as_str()]).unwrap();
        let mut good = release("version = 1\n");
        good.signature = Some(deployer.sign_release("shop", &good));
        assert_eq!(trusted.verify_release("shop", &good), Ok(()));
        assert!(matches!(
            trusted.verify_release("other-app", &good),
            Err(SignatureRefusal::Mismatch { .. })
        ));
        let mut tampered = good.clone();
        tampered
            .manifest
            .push_str("# allowed_outbound_hosts = [\"*\"]\n");
        assert!(matches!(
            trusted.verify_release("shop", &tampered),
            Err(SignatureRefusal::Mismatch { .. })
        ));
        let mut swapped = good.clone();
        swapped.components.insert("api".into(), "cd".repeat(32));
        assert!(matches!(
            trusted.verify_release("shop", &swapped),
            Err(SignatureRefusal::Mismatch { .. })
        ));
        assert_eq!(
            trusted.verify_release("shop", &release("version = 1\n")),
            Err(SignatureRefusal::Unsigned)
        );
        let mut foreign = release("version = 1\n");
        foreign.signature = Some(stranger.sign_release("shop", &foreign));
        assert!(matches!(
            trusted.verify_release("shop", &foreign),
            Err(SignatureRefusal::UnknownKey { .. })
        ));
        // No trusted key: nothing is checked (a fleet that has not turned signing on).
        assert_eq!(
            TrustedKeys::default().verify_release("shop", &foreign),
            Ok(())
        );
    }

    #[test]
    fn intents_bind_the_app_the_action_and_the_generation() {
        let deployer = ReleaseSigner::generate().unwrap();
        let trusted = TrustedKeys::parse([deployer.public_key().as_str()]).unwrap();
        let promote = deployer.intent("shop", "promote", 7, "ops");
        assert_eq!(trusted.verify_intent("shop", &promote, 7), Ok(()));
        assert!(
            trusted.verify_intent("shop", &promote, 8).is_err(),
            "replayed"
        );
        let mut relabelled = promote.clone();
        relabelled.action = "rollback".into();
        assert!(trusted.verify_intent("shop", &relabelled, 7).is_err());
        let unsigned = Intent {
            signature: None,
            ..promote
        };
        assert_eq!(
            trusted.verify_intent("shop", &unsigned, 7),
            Err(SignatureRefusal::Unsigned)
        );
    }

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let dir = tempfile::tempdir().unwrap();
        let signer = ReleaseSigner::generate().unwrap();
        let path = dir.path().join("deployer.key");
        std::fs::write(&path, signer.secret_text()).unwrap();
        let loaded = ReleaseSigner::load(&path).unwrap();
        assert_eq!(loaded.public_key(), signer.public_key());
        assert!(!format!("{loaded:?}").contains(&signer.secret_text()[22..40]));
        assert!(parse_public_key(&signer.public_key()).is_ok());
        assert!(parse_public_key("ed25519:nothex").is_err());
        std::fs::write(&path, "not a key").unwrap();
        assert!(ReleaseSigner::load(&path).is_err());
    }
}
