//! Hardware-agnostic inference for Spark: guests call the standard `wasi:nn`; the host picks a
//! device, falls through explicitly on any failure, and says what it did.
//!
//! # Tour
//! - [`discovery`]: NPUs (`/dev/accel`, `/sys/class/accel`), GPU render nodes, Vulkan adapters
//!   (hardware vs software) and the ONNX Runtime library, under a configurable root.
//! - [`backend`]: the engines: `tract` (pure Rust, always there), and ONNX Runtime loaded at run
//!   time (`ort-cpu`, `ort-webgpu`, `ort-npu`) with accelerated providers registered explicitly.
//!   Each implements the `wasmtime-wasi-nn` backend traits.
//! - [`policy`]: the guest's target (cpu/gpu/tpu) is a hint mapped to a chain of backends,
//!   filtered at every call by the orchestrator's [`DevicePolicy`] (CPU only on battery,
//!   saturated or unhealthy devices skipped) and by backends' recent failures.
//! - [`selection`]: the target's hint orders the chain; measurement picks who serves: each
//!   usable backend is measured on the model as it serves, then the fastest serves and the
//!   others are re-probed now and then (`[nn] selection = "chain"` keeps the hint's order).
//! - `router`: validates the guest's tensors against the model's signature and limits, then
//!   tries the chain, catching errors *and panics*, and records an [`Outcome`].
//! - `wit`: Spark's own bindings for the standard `wasi:nn`: sizes checked before guest bytes
//!   are copied, tensor bytes capped per invocation, `compute` async.
//! - `pool`: the few threads inference runs on, off the async workers; a guest awaits its
//!   result, so its deadline and cancellation stop the wait.
//! - [`NnService`]: one per node; [`NnInvocation`]: one per store; [`add_to_linker`] adds
//!   `wasi:nn` and `spark:nn/info` (which backend served).
//! - [`harness`]: a minimal embedding (WASI + `wasi:http` + `wasi:nn`) for this crate's
//!   tests, B6 and `spark nn` (`spark-bench`, `spark-cli`); the node itself runs guests
//!   through `spark-runtime`.
//!
//! What is not here, so the node does not link it: benchmark B6 (`spark-bench`'s `nn`), the
//! in-process probe (`spark nn` in `spark-cli`), and the sample images and slow model tests use
//! (`spark-testkit`'s `nn::samples`).
//!
//! # Wiring into a runtime
//! Spark's node does exactly this: `spark-runtime` adds [`add_to_linker`] to its one linker
//! and keeps an [`NnInvocation`] in every store (`Host::nn`), made from the module's
//! `ModuleControls::nn` (the node's [`NnService`]) and its `GuestLimits::nn` ([`NnLimits`]);
//! `spark-node` starts the service from `[nn]` and steers its [`DevicePolicy`]. A runtime
//! for a node without `[nn]` does not link `wasi:nn` at all (its guests cannot import it).
//! ```text
//! let nn = spark_nn::NnService::start(config)?;            // once, on a blocking thread
//! struct Host { table: ResourceTable, nn: spark_nn::NnInvocation, /* ... */ }
//! spark_nn::add_to_linker(&mut linker, |h: &mut Host| h.nn.view(&mut h.table))?;
//! let host = Host { nn: nn.invocation("module-id", limits), /* ... */ };  // per store
//! nn.policy().set_preference(spark_nn::Preference::CpuOnly);       // orchestrator, on battery
//! ```
//!
//! The decision worth knowing: nothing is silent. A backend that is not used says why
//! ([`NnService::status`]); a backend that fails is skipped *visibly* (log, metrics, and the
//! guest's `spark:nn/info`); and no backend's panic reaches the guest or the node.

pub mod backend;
mod config;
pub mod discovery;
mod engines;
mod error;
pub mod harness;
mod host;
mod info;
mod metrics;
mod model;
pub mod policy;
mod pool;
mod router;
pub mod selection;
mod service;
pub mod tensor;
mod wit;

pub use backend::ort::OrtUnavailable;
pub use backend::{DeviceBackend, DeviceClass};
pub use config::{
    DEFAULT_FAILURES_TO_BENCH, DEFAULT_MAX_MODEL_BYTES, DEFAULT_MAX_TENSOR_BYTES,
    DEFAULT_MAX_TOTAL_TENSOR_BYTES, KNOWN_BACKENDS, NnConfig, NnLimits, NnModel, NnSettings,
    ORT_CPU, ORT_NPU, ORT_WEBGPU, TRACT, VulkanProbe, total_tensor_bytes,
};
pub use engines::Unavailable;
pub use error::NnError;
pub use host::{NnInvocation, NnView, add_to_linker};
pub use metrics::{
    BackendCounters, BackendSpeed, BackendStatus, ModelSelection, NnStatus, TargetChoice,
};
pub use model::{ModelInfo, TensorSpec};
pub use policy::{DevicePolicy, Health, Preference, Target};
pub use router::{Attempt, Outcome};
pub use service::{Inference, NnService};
pub use wasmtime_wasi_nn::backend::NamedTensor;
pub use wasmtime_wasi_nn::{Backend, Tensor};
