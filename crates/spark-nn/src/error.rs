//! The crate's one error type.
//!
//! The decision worth knowing: errors are split by *whose fault* they are. `InvalidInput`,
//! `TooLarge`, `Unsupported`, `Denied` and `NotFound` are the guest's (or the operator's) and end
//! the call at once; `Backend` and `Panic` are a backend's and make the router fall through to the next one;
//! `Exhausted` says every backend in the chain was tried and lists what each one said.

use std::path::PathBuf;

/// Everything that can go wrong in `spark-nn`.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// The guest's tensors or arguments do not fit the model (caught before any backend).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A model or tensor over the module's limits.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A valid request this host does not serve (e.g. an encoding other than ONNX).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A request the module's limits do not allow (models from bytes with `nn_model` 0).
    #[error("not allowed: {0}")]
    Denied(String),
    /// No model registered under this name.
    #[error("model not found: {0}")]
    NotFound(String),
    /// The model bytes are not a usable ONNX model.
    #[error("model {name}: {reason}")]
    Model { name: String, reason: String },
    /// One backend failed; the router tries the next one.
    #[error("backend {backend}: {reason}")]
    Backend { backend: String, reason: String },
    /// One backend panicked; the panic was caught and the backend's state discarded.
    #[error("backend {backend} panicked: {message}")]
    Panic { backend: String, message: String },
    /// Every backend in the chain failed or was skipped.
    #[error("no backend could serve the request: {0}")]
    Exhausted(String),
    /// The node's inference settings are wrong.
    #[error("inference config: {0}")]
    Config(String),
    /// The test/bench harness could not run the guest.
    #[error("guest: {0}")]
    Guest(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The inference threads could not be started.
    #[error("cannot start the inference threads: {source}")]
    Workers {
        #[source]
        source: std::io::Error,
    },
}

impl NnError {
    /// True when the next backend may succeed where this one failed.
    pub fn falls_through(&self) -> bool {
        matches!(self, NnError::Backend { .. } | NnError::Panic { .. })
    }

    /// The message without the backend's name (for lists already keyed by backend).
    pub fn reason(&self) -> String {
        match self {
            NnError::Backend { reason, .. } => reason.clone(),
            NnError::Panic { message, .. } => format!("panicked: {message}"),
            other => other.to_string(),
        }
    }

    /// A short, stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            NnError::InvalidInput(_) => "invalid-input",
            NnError::TooLarge(_) => "too-large",
            NnError::Unsupported(_) => "unsupported",
            NnError::Denied(_) => "denied",
            NnError::NotFound(_) => "not-found",
            NnError::Model { .. } => "model",
            NnError::Backend { .. } => "backend",
            NnError::Panic { .. } => "panic",
            NnError::Exhausted(_) => "exhausted",
            NnError::Config(_) => "config",
            NnError::Guest(_) => "guest",
            NnError::Io { .. } => "io",
            NnError::Workers { .. } => "workers",
        }
    }

    pub(crate) fn backend(backend: &str, reason: impl std::fmt::Display) -> NnError {
        NnError::Backend {
            backend: backend.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Turns our error into the `wasi-nn` crate's backend error, keeping the whole message (the
/// crate shows guests only the outer text, so the message is what `spark:nn/info` reports).
impl From<NnError> for wasmtime_wasi_nn::backend::BackendError {
    fn from(e: NnError) -> Self {
        wasmtime_wasi_nn::backend::BackendError::BackendAccess(wasmtime::Error::msg(e.to_string()))
    }
}
