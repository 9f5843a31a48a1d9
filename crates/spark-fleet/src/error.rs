//! The crate's one error type: each variant says what was refused and why; where NATS or a
//! decoder said why, that error is the `source()`, not part of the message.

use spark_error::BoxError;

/// What went wrong talking to the fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A URL that does not parse, or no server answering.
    #[error("cannot reach NATS at {url}")]
    Connect {
        /// The server URLs as configured, comma-separated.
        url: String,
        /// The parse or connection error.
        #[source]
        source: BoxError,
    },
    /// A compare-and-set update lost: the entry is no longer at the revision read.
    #[error(
        "conflict: the desired state of '{app}' changed since it was read (revision {expected}); another change won. Check `spark fleet status` and retry"
    )]
    Conflict {
        /// The application written.
        app: String,
        /// The revision the writer read and expected to replace.
        expected: u64,
    },
    /// A create-only write (first deploy) found an entry already there.
    #[error(
        "conflict: '{app}' already has a desired state (someone deployed it first); check `spark fleet status` and retry"
    )]
    AlreadyExists {
        /// The application written.
        app: String,
    },
    /// A downloaded artifact's bytes do not hash to its name.
    #[error(
        "artifact sha256:{expected} refused: its bytes hash to sha256:{actual} (corrupt or tampered)"
    )]
    DigestMismatch {
        /// The requested digest (hex SHA-256).
        expected: String,
        /// The digest of the bytes received (hex SHA-256).
        actual: String,
    },
    /// The NATS credentials or TLS settings cannot be used (a file missing, half a pair).
    #[error("NATS authentication: {what}")]
    Auth {
        /// What was wrong (no secret in it).
        what: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The artifact is larger than a node accepts.
    #[error("artifact sha256:{digest} is {size} bytes or more, over the {max}-byte limit: refused")]
    ArtifactTooLarge {
        /// Its name.
        digest: String,
        /// Its size (or how much arrived before the download was stopped).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// No object under this digest (hex SHA-256) in the artifacts bucket.
    #[error("artifact sha256:{0} is not in the fleet's object store")]
    MissingArtifact(String),
    /// An application or node name outside 1-64 of `[A-Za-z0-9_-]`, a label without `=`, or a
    /// bucket replica count outside 1-5.
    #[error("invalid {what} '{value}': {reason}")]
    InvalidName {
        /// What was named: "application", "node id", "label".
        what: &'static str,
        /// The text refused.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A NATS operation (`what`: "writing desired state", ...) failed.
    #[error("{what}")]
    Nats {
        /// The operation, as the message.
        what: &'static str,
        /// The NATS client's error.
        #[source]
        source: BoxError,
    },
    /// A KV entry (desired state or heartbeat) that does not decode.
    #[error("{what}: malformed JSON")]
    Json {
        /// The entry's key (`app.<name>`, `node.<id>`).
        what: String,
        /// The decoder's error.
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
