//! The crate's one error type: each variant says what was refused and why; where NATS or a
//! decoder said why, that error is the `source()`, not part of the message.

use spark_error::BoxError;

/// What went wrong talking to the fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A URL that does not parse, or no server answering.
    #[error("cannot reach NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: BoxError,
    },
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
    /// A NATS operation (`what`: "writing desired state", ...) failed.
    #[error("{what}")]
    Nats {
        what: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("{what}: malformed JSON")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl FleetError {
    pub(crate) fn nats(what: &'static str, error: impl Into<BoxError>) -> FleetError {
        FleetError::Nats {
            what,
            source: error.into(),
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
