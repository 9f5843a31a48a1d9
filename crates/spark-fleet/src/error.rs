//! The crate's one error type: each variant says what was refused and why.

/// What went wrong talking to the fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot reach NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(
        "conflict: the desired state of '{app}' changed since it was read (revision {expected}); another change won. Check `spark fleet status` and retry"
    )]
    Conflict { app: String, expected: u64 },
    #[error(
        "conflict: '{app}' already has a desired state (someone deployed it first); check `spark fleet status` and retry"
    )]
    AlreadyExists { app: String },
    #[error(
        "artifact sha256:{expected} refused: its bytes hash to sha256:{actual} (corrupt or tampered)"
    )]
    DigestMismatch { expected: String, actual: String },
    #[error("artifact sha256:{0} is not in the fleet's object store")]
    MissingArtifact(String),
    #[error("invalid {what} '{value}': {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{what}: {reason}")]
    Nats { what: &'static str, reason: String },
    #[error("{what}: malformed JSON: {reason}")]
    Json { what: String, reason: String },
}

impl FleetError {
    pub(crate) fn nats(what: &'static str, error: impl std::fmt::Display) -> FleetError {
        FleetError::Nats {
            what,
            reason: error.to_string(),
        }
    }

    /// True when the write lost a compare-and-set.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            FleetError::Conflict { .. } | FleetError::AlreadyExists { .. }
        )
    }
}
