//! Node-wide inference settings ([`NnConfig`]) and per-module limits ([`NnLimits`]).
//!
//! The decision worth knowing: software GPU adapters (Mesa's lavapipe, SwiftShader) are never
//! treated as accelerators unless [`NnSettings::allow_software_adapters`] says so. It is a
//! test setting: it lets CI run the accelerated branch for real on a machine without a GPU,
//! while a production node never routes work to a "GPU" slower than its CPU.

use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use spark_manifest::{NnModel, NnSettings};

/// Default cap on a model a guest hands to `graph.load`, in bytes.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 32 << 20;
/// Default cap on one input tensor's data, in bytes.
pub const DEFAULT_MAX_TENSOR_BYTES: u64 = 16 << 20;
/// Default cap on the bytes of all tensors one invocation holds at once: what
/// [`total_tensor_bytes`] gives for the manifest's defaults (`nn_tensor` 16 MiB,
/// `host_memory` 32 MiB).
pub const DEFAULT_MAX_TOTAL_TENSOR_BYTES: u64 = 16 << 20;

/// The cap on all of an invocation's tensors together, for a module whose largest tensor is
/// `max_tensor_bytes` and whose host memory is `host_memory`: half its host memory, but
/// always room for one tensor of its largest size.
///
/// Why half: tensor bytes are host memory (the allocator charges them to the invocation), so
/// without a cap of their own a guest hoarding tensors would be stopped by the host-memory
/// limit at the next epoch tick (a 500, the guest's work lost). Half leaves the rest (headers,
/// bodies, handles, the names Wasmtime lifts) room, so a refused tensor is a wasi-nn error the
/// guest can handle and survive. Why not a multiple of `nn_tensor`: that would be a second
/// number unrelated to the memory it protects.
pub fn total_tensor_bytes(max_tensor_bytes: u64, host_memory: u64) -> u64 {
    max_tensor_bytes.max(host_memory / 2)
}
/// Most dimensions an input tensor may have.
pub(crate) const MAX_TENSOR_RANK: usize = 8;
/// Most input tensors one `compute` may pass.
pub(crate) const MAX_INPUTS: usize = 16;
/// Consecutive failures after which a backend is benched.
pub const DEFAULT_FAILURES_TO_BENCH: u32 = 3;
/// How long a benched backend waits before it is tried again.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Models compiled from guest-supplied bytes kept per node (by SHA-256).
pub(crate) const GUEST_MODEL_CACHE: usize = 8;

/// The backends Spark knows, by the name used in config, logs, metrics and `spark:nn/info`.
/// (The manifest's list, so `[nn] backends` and the host never disagree.)
pub const KNOWN_BACKENDS: &[&str] = spark_manifest::NN_BACKENDS;
/// ONNX Runtime with the execution provider matching a discovered NPU's driver.
pub const ORT_NPU: &str = "ort-npu";
/// ONNX Runtime with its WebGPU execution provider (Dawn on Vulkan).
pub const ORT_WEBGPU: &str = "ort-webgpu";
/// ONNX Runtime's CPU execution provider.
pub const ORT_CPU: &str = "ort-cpu";
/// The pure-Rust CPU backend; always present.
pub const TRACT: &str = "tract";

/// Node-wide inference settings: what an operator sets in the manifest's `[nn]` table (one
/// type, [`NnSettings`], for the manifest, the node and this crate), plus the knobs only the
/// host's own tests and tools turn.
#[derive(Debug, Clone)]
pub struct NnConfig {
    /// The `[nn]` table: backends, ONNX Runtime library, device root, software adapters,
    /// CPU threads, models. (Rediscovery, power save and saturation are the node's to act on.)
    pub settings: NnSettings,
    /// How Vulkan adapters are enumerated.
    pub vulkan: VulkanProbe,
    /// Inferences computed at once, node-wide (the inference pool's threads); 0: the
    /// machine's cores divided by `cpu_threads`, at least one.
    pub workers: usize,
    /// Consecutive failures after which a backend is benched for `retry_after`.
    pub failures_to_bench: u32,
    /// How long a benched backend is skipped before it is tried again.
    pub retry_after: Duration,
}

impl Default for NnConfig {
    fn default() -> Self {
        NnConfig {
            settings: NnSettings::default(),
            vulkan: VulkanProbe::Loader,
            workers: 0,
            failures_to_bench: DEFAULT_FAILURES_TO_BENCH,
            retry_after: DEFAULT_RETRY_AFTER,
        }
    }
}

impl NnConfig {
    /// The host for a manifest's `[nn]` table, every other knob at its default.
    pub fn new(settings: NnSettings) -> NnConfig {
        NnConfig {
            settings,
            ..NnConfig::default()
        }
    }

    /// Threads one CPU inference may use (at least one).
    pub(crate) fn cpu_threads(&self) -> usize {
        (self.settings.cpu_threads as usize).max(1)
    }
}

/// How discovery learns about Vulkan adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VulkanProbe {
    /// Ask the system's Vulkan loader (`libvulkan.so.1`), honouring `VK_DRIVER_FILES`.
    Loader,
    /// Do not probe: no adapters are known.
    Off,
    /// Pretend these adapters were found (tests: a GPU that is listed but fails to work).
    Assume(Vec<crate::discovery::Adapter>),
}

/// What one module may ask of the inference host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NnLimits {
    /// Largest model the guest may pass to `graph.load` (bytes); host models are not counted.
    pub max_model_bytes: u64,
    /// Largest tensor (bytes of data) the guest may create.
    pub max_tensor_bytes: u64,
    /// Bytes all tensors of one invocation may hold together: those the guest created and
    /// has not yet passed to `compute`, those being computed, and the outputs it holds. A node
    /// sets it with [`total_tensor_bytes`] from the module's `nn_tensor` and `host_memory`.
    pub max_total_tensor_bytes: u64,
    /// Whether the guest may load models from its own bytes at all.
    pub allow_guest_models: bool,
}

impl Default for NnLimits {
    fn default() -> Self {
        NnLimits {
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
            max_tensor_bytes: DEFAULT_MAX_TENSOR_BYTES,
            max_total_tensor_bytes: DEFAULT_MAX_TOTAL_TENSOR_BYTES,
            allow_guest_models: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_names_exactly_the_backends_the_host_has() {
        assert_eq!(KNOWN_BACKENDS, [ORT_NPU, ORT_WEBGPU, ORT_CPU, TRACT]);
    }
}
