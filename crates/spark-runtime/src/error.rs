//! What can go wrong in the runtime, sorted by who has to act on it.
//!
//! [`LoadError`]: a component could not be made ready (the operator fixes the deploy).
//! [`InvokeError`]: one request or job run failed (the caller gets a 4xx/5xx; nobody else
//! notices). [`RuntimeError`]: the engine itself could not start.
//!
//! As everywhere in Spark, `Display` says what failed and `source()` is the cause: Wasmtime's
//! own error (a `wasmtime::Error`, boxed with its chain) or the I/O error, never its text.
//! Show them with `spark_error::chain` (or anyhow's `{:#}`) to see why.

use std::path::PathBuf;
use std::time::Duration;

use spark_error::BoxError;

/// The engine could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Wasmtime refused the engine configuration, even without the pooling allocator.
    #[error("cannot create the Wasmtime engine")]
    Engine(#[source] BoxError),
    /// A host interface (WASI, `wasi:http`, `wasi:config`, `wasi:nn`) could not be added to the
    /// linker.
    #[error("cannot prepare the host interfaces")]
    Linker(#[source] BoxError),
    /// The AOT cache directory or its key file (`aot.key`) could not be created, restricted to
    /// the owner, or read.
    #[error("AOT cache at {}", path.display())]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// The file-system error.
        #[source]
        source: std::io::Error,
    },
    /// The AOT cache's signing key could not be read or made.
    #[error("AOT cache key")]
    CacheKey(#[source] spark_store::StoreError),
    /// The background optimizer's threads could not be started.
    #[error("cannot start the background optimizer's threads")]
    Optimizer(#[source] BoxError),
}

/// A component could not be loaded, compiled or linked.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The file-system error.
        #[source]
        source: std::io::Error,
    },
    /// The component's bytes could not be had when the load needed them (the node's store
    /// could not read them, or they no longer hash to their digest).
    #[error("cannot read the component {}", path.display())]
    Unavailable {
        /// The name given to the component.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: BoxError,
    },
    /// The bytes are shorter than a Wasm header or lack the `\0asm` magic.
    #[error("{} is not a WebAssembly file (it does not start with the \\0asm magic bytes)", path.display())]
    NotWasm {
        /// The file (or the name given to the bytes).
        path: PathBuf,
    },
    /// The file is a core Wasm module (version 1), not a component.
    #[error(
        "{} is a core WebAssembly module, not a component: Spark runs components (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)",
        path.display()
    )]
    CoreModule {
        /// The file (or the name given to the bytes).
        path: PathBuf,
    },
    /// Wasmtime refused to compile it, or its header is not a component's (the source says
    /// which).
    #[error("{} is not a valid component", path.display())]
    Invalid {
        /// The file (or the name given to the bytes).
        path: PathBuf,
        /// Wasmtime's compile error, or the header bytes that were not understood.
        #[source]
        source: BoxError,
    },
    /// Linking failed: Wasmtime's error, or which inference imports a node without `[nn]`
    /// cannot satisfy.
    #[error("{} imports something this node does not provide", path.display())]
    Link {
        /// The file (or the name given to the bytes).
        path: PathBuf,
        /// Wasmtime's link error, or the inference imports named (on a node without `[nn]`).
        #[source]
        source: BoxError,
    },
    /// It is a component, but not of the world the module needs (`reason` says what it
    /// exports and what was wanted).
    #[error("{} does not fit this module: {reason}", path.display())]
    WrongWorld {
        /// The file (or the name given to the bytes).
        path: PathBuf,
        /// What the module needed, and the exports the component has.
        reason: String,
    },
    /// The blocking task that compiles the component panicked or was cancelled (the runtime
    /// shutting down).
    #[error("compiling {} was interrupted", path.display())]
    Interrupted {
        /// The file (or the name given to the bytes).
        path: PathBuf,
        /// Whether the task panicked or was cancelled.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Why one invocation (a request or a job run) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// The guest trapped (panic, unreachable, out of bounds, ...).
    #[error("the guest trapped: {0}")]
    Trap(String),
    /// The guest asked for more linear memory than its limit.
    #[error("the guest exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The module's `limits.memory`, in bytes.
        limit: u64,
    },
    /// The host held more memory on the guest's behalf (headers, bodies, tensors, handles)
    /// than the module's `limits.host_memory`.
    #[error(
        "the guest exceeded its host memory limit of {limit} bytes (memory the host holds for it outside its linear memory)"
    )]
    HostMemoryLimit {
        /// The module's `limits.host_memory`, in bytes.
        limit: u64,
    },
    /// The guest held more resource handles at once than the module's `limits.resources`.
    #[error("the guest exceeded its limit on resource handles: {0}")]
    ResourceLimit(String),
    /// The guest overflowed its Wasm stack.
    #[error("the guest overflowed its stack")]
    StackOverflow,
    /// The invocation took longer than its wall-clock limit.
    #[error("the guest exceeded its time limit of {0:?}")]
    Timeout(Duration),
    /// The guest used more CPU time than its limit.
    #[error("the guest exceeded its CPU time limit of {0:?}")]
    CpuLimit(Duration),
    /// No instance could be created right now (instance pool exhausted).
    #[error("no instance available: {0}")]
    Capacity(String),
    /// The guest returned without producing a response.
    #[error("the guest returned without sending a response")]
    NoResponse,
    /// The guest sent an error code instead of a response.
    #[error("the guest answered with error code {0}")]
    GuestError(String),
    /// The incoming request could not be handed to the guest.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The guest declared a response body larger than the module's limit.
    #[error("the guest's response body exceeds the module's limit of {0} bytes")]
    BodyTooLarge(u64),
    /// A job exited with a failure status.
    #[error("the job exited with a failure status")]
    JobFailed,
    /// The node is shutting down or the module was retired.
    #[error("cancelled: {0}")]
    Cancelled(String),
}

impl InvokeError {
    /// A short label for metrics (`trap`, `timeout`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Trap(_) => "trap",
            InvokeError::MemoryLimit { .. } => "memory_limit",
            InvokeError::StackOverflow => "stack_overflow",
            InvokeError::HostMemoryLimit { .. } => "host_memory_limit",
            InvokeError::ResourceLimit(_) => "resource_limit",
            InvokeError::Timeout(_) => "timeout",
            InvokeError::CpuLimit(_) => "cpu_limit",
            InvokeError::Capacity(_) => "capacity",
            InvokeError::NoResponse => "no_response",
            InvokeError::GuestError(_) => "guest_error",
            InvokeError::BadRequest(_) => "bad_request",
            InvokeError::BodyTooLarge(_) => "body_too_large",
            InvokeError::JobFailed => "job_failed",
            InvokeError::Cancelled(_) => "cancelled",
        }
    }

    /// The HTTP status a client should see for this failure.
    pub fn status(&self) -> u16 {
        match self {
            InvokeError::Timeout(_) | InvokeError::CpuLimit(_) => 504,
            InvokeError::Capacity(_) | InvokeError::Cancelled(_) => 503,
            InvokeError::BadRequest(_) => 400,
            _ => 500,
        }
    }
}
