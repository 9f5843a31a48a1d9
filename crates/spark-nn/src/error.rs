//! The crate's one error type.
//!
//! The decision worth knowing: errors are split by *whose fault* they are. `InvalidInput`,
//! `TooLarge`, `Unsupported`, `Denied` and `NotFound` are the guest's (or the operator's) and end
//! the call at once; `Backend` and `Panic` are a backend's and make the router fall through to the next one;
//! `Exhausted` says every backend in the chain was tried and lists what each one said.
//!
//! As everywhere in Spark, `Display` says what failed and `source()` is the cause: a backend's
//! own error (ONNX Runtime's, tract's, Wasmtime's) is kept as the source of `Backend`, `Model`
//! and `Harness`, never flattened into their text. Guests, logs and the status see the whole
//! chain (`spark_error::chain`): "backend ort-cpu: run: <ONNX Runtime's message>". The
//! guest-facing refusals (`InvalidInput` ... `NotFound`, `Exhausted`, `Config`, `Guest`) are
//! messages for people with no error beneath them, so they stay text.

use std::path::PathBuf;

use spark_error::BoxError;

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
    /// The model bytes are not a usable ONNX model (the source says why).
    #[error("model {name}")]
    Model {
        /// The name it was registered under; `guest:<first 12 hex digits of its SHA-256>` for a
        /// guest's bytes.
        name: String,
        /// Why: not ONNX, no graph, no inputs or outputs, or not the configured SHA-256.
        #[source]
        source: BoxError,
    },
    /// One backend failed; the router tries the next one. The source is the backend's error.
    #[error("backend {backend}")]
    Backend {
        /// The backend's name (`ort-webgpu`, ...).
        backend: String,
        /// The backend's own error, under the step that failed.
        #[source]
        source: BoxError,
    },
    /// One backend panicked; the panic was caught and the backend's state discarded.
    #[error("backend {backend} panicked: {message}")]
    Panic {
        /// The backend's name.
        backend: String,
        /// The panic's message (`(no message)` when it carried no string).
        message: String,
    },
    /// Every backend in the chain failed or was skipped.
    #[error("no backend could serve the request: {0}")]
    Exhausted(String),
    /// The node's inference settings are wrong.
    #[error("inference config: {0}")]
    Config(String),
    /// The test/bench harness could not run the guest.
    #[error("guest: {0}")]
    Guest(String),
    /// The test/bench harness failed to embed or run the guest (Wasmtime's error beneath).
    #[error("guest")]
    Harness(#[source] BoxError),
    /// A model file named in the config could not be read.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The file-system error.
        #[source]
        source: std::io::Error,
    },
    /// The inference threads could not be started.
    #[error("cannot start the inference threads")]
    Workers {
        /// Why the system refused a thread.
        #[source]
        source: std::io::Error,
    },
}

impl NnError {
    /// True when the next backend may succeed where this one failed.
    pub fn falls_through(&self) -> bool {
        matches!(self, NnError::Backend { .. } | NnError::Panic { .. })
    }

    /// The message without the backend's name (for lists already keyed by backend): the
    /// backend's error and its causes.
    pub fn reason(&self) -> String {
        match self {
            NnError::Backend { source, .. } => spark_error::chain(source.as_ref()).to_string(),
            NnError::Panic { message, .. } => format!("panicked: {message}"),
            other => spark_error::chain(other).to_string(),
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
            NnError::Guest(_) | NnError::Harness(_) => "guest",
            NnError::Io { .. } => "io",
            NnError::Workers { .. } => "workers",
        }
    }

    /// Backend `backend` failed: `cause` is its error, or a message when there is none.
    pub fn backend(backend: &str, cause: impl Into<BoxError>) -> NnError {
        NnError::Backend {
            backend: backend.to_owned(),
            source: cause.into(),
        }
    }

    /// Backend `backend` failed at `step` ("run", "session builder", ...) because of `cause`.
    pub(crate) fn backend_step(backend: &str, step: &str, cause: impl Into<BoxError>) -> NnError {
        NnError::backend(backend, spark_error::context(step, cause))
    }

    /// Model `name` is not usable: `cause` is why.
    pub(crate) fn model(name: &str, cause: impl Into<BoxError>) -> NnError {
        NnError::Model {
            name: name.to_owned(),
            source: cause.into(),
        }
    }
}

/// Turns our error into the `wasi-nn` crate's backend error, keeping the whole chain as its
/// message (the crate shows guests only the outer text, so the message is what
/// `spark:nn/info` reports).
impl From<NnError> for wasmtime_wasi_nn::backend::BackendError {
    fn from(e: NnError) -> Self {
        let message = spark_error::chain(&e).to_string();
        wasmtime_wasi_nn::backend::BackendError::BackendAccess(wasmtime::Error::msg(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_error_keeps_the_backends_own_error_as_its_cause() {
        let cause = std::io::Error::other("device lost");
        let e = NnError::backend_step("ort-cpu", "run", cause);
        assert_eq!(e.to_string(), "backend ort-cpu");
        let step = std::error::Error::source(&e).expect("the step");
        assert_eq!(step.to_string(), "run");
        let io = step
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("the backend's own error");
        assert_eq!(io.to_string(), "device lost");
        assert_eq!(e.reason(), "run: device lost");
        assert_eq!(
            spark_error::chain(&e).to_string(),
            "backend ort-cpu: run: device lost"
        );
    }
}
