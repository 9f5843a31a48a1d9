//! The inference settings: the node's `[nn]` table ([`NnSettings`]) and the per-module
//! inference limits in `[module.limits]` (`nn_model`, `nn_tensor`).
//!
//! The decision worth knowing: `[nn]` is node-wide and read once at node start (devices,
//! libraries and the models the host serves are the node's, not a release's), while the
//! limits are per module and travel with each release like the other limits. Without an
//! `[nn]` table the node runs no inference host and guests' `wasi:nn` calls fail cleanly.

use std::path::PathBuf;
use std::time::Duration;

/// The backends a node may be told to use, best first (names as in logs and metrics).
pub const NN_BACKENDS: &[&str] = &["ort-npu", "ort-webgpu", "ort-cpu", "tract"];
/// Default cap on a model a guest passes as bytes to `graph.load`: none may (guest-supplied
/// models are host memory and code the node did not vet; a module opts in with `nn_model`).
pub const DEFAULT_NN_MODEL: u64 = 0;
/// Default cap on one input tensor's data.
pub const DEFAULT_NN_TENSOR: u64 = 16 << 20;
/// How often devices are looked for again by default.
pub const DEFAULT_NN_REDISCOVER: Duration = Duration::from_secs(30);
/// How long a backend that is not the fastest goes unmeasured by default before one inference
/// is sent to it again, so a device that got faster (or a fastest one that got slower) is seen.
pub const DEFAULT_NN_REPROBE: Duration = Duration::from_secs(30);

/// How a target's backend is picked among the usable ones of its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NnSelection {
    /// By measurement (`"measured"`, the default): each backend of the chain is measured on
    /// the model as it serves, then the fastest serves, the others re-probed now and then.
    /// The guest's target is a hint: it orders the chain and picks who is measured first.
    #[default]
    Measured,
    /// In the chain's order, always (`"chain"`): the hint decides.
    Chain,
}

/// The node's inference host, from the optional `[nn]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct NnSettings {
    /// Backends this node may use (from [`NN_BACKENDS`]); `tract` is always kept.
    pub backends: Vec<String>,
    /// The ONNX Runtime library (`libonnxruntime.so`); `None`: ONNX Runtime is not used.
    pub ort_library: Option<PathBuf>,
    /// Count software GPU adapters (Mesa's lavapipe) as accelerators. A test setting.
    pub allow_software_adapters: bool,
    /// Where device discovery reads `/dev` and `/sys` (fake trees in tests).
    pub device_root: PathBuf,
    /// Threads one CPU inference may use.
    pub cpu_threads: u32,
    /// How often devices are discovered again (zero: only at startup).
    pub rediscover: Duration,
    /// In the orchestrator's power-save mode, run inference on the CPU only.
    pub power_save_cpu_only: bool,
    /// Inferences running at once on one accelerator beyond which it counts as saturated
    /// and new ones go to the CPU (zero: never).
    pub saturation: u32,
    /// How each target's backend is picked: by measurement (default) or the chain's order.
    pub selection: NnSelection,
    /// With measured selection: how long a slower backend goes unmeasured before one
    /// inference re-probes it (zero: never).
    pub reprobe: Duration,
    /// Models the host serves by name (`graph.load-by-name`).
    pub models: Vec<NnModel>,
}

impl Default for NnSettings {
    fn default() -> Self {
        NnSettings {
            backends: NN_BACKENDS.iter().map(|b| (*b).to_owned()).collect(),
            ort_library: None,
            allow_software_adapters: false,
            device_root: PathBuf::from("/"),
            cpu_threads: 1,
            rediscover: DEFAULT_NN_REDISCOVER,
            power_save_cpu_only: true,
            saturation: 0,
            selection: NnSelection::Measured,
            reprobe: DEFAULT_NN_REPROBE,
            models: Vec::new(),
        }
    }
}

/// A model the host registers under a name (`[[nn.model]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct NnModel {
    /// What guests pass to `graph.load-by-name`; unique on the node.
    pub name: String,
    /// The ONNX file (manifest-relative paths resolved).
    pub path: PathBuf,
    /// Expected SHA-256 (lowercase hex); a mismatch stops the node from starting.
    pub sha256: Option<String>,
}
