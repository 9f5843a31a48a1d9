//! Device discovery: what accelerators and inference libraries this node has, and why each is
//! or is not used.
//!
//! NPUs come from `/dev/accel/accel*` and `/sys/class/accel/*/device/` (driver, PCI ids); GPUs
//! from `/dev/dri/renderD*` (`/sys/class/drm/renderD*/device/`) and from the Vulkan loader,
//! which also says which adapters are software (`VK_PHYSICAL_DEVICE_TYPE_CPU`: lavapipe,
//! SwiftShader). Paths are read under a configurable root so tests use fake sysfs trees.
//!
//! The decision worth knowing: discovery never fails. Each probe degrades alone to "unknown,
//! because ..." with one log line, and the CPU backend does not depend on any of them.

mod sysfs;
#[allow(
    unsafe_code,
    reason = "Vulkan is a C API reached through ash; each call has its SAFETY note"
)]
mod vulkan;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::VulkanProbe;

pub use sysfs::{Accel, RenderNode};

/// What discovery found, at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInventory {
    /// Seconds since the Unix epoch when this inventory was taken.
    pub taken_at: u64,
    /// NPUs (`/dev/accel/accel*`).
    pub npus: Vec<Accel>,
    /// GPU render nodes (`/dev/dri/renderD*`).
    pub render_nodes: Vec<RenderNode>,
    /// Vulkan adapters, or why there are none.
    pub vulkan: VulkanReport,
    /// Inference libraries looked for.
    pub libraries: Vec<LibraryReport>,
}

/// The Vulkan loader's view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum VulkanReport {
    /// The config turned the probe off ([`VulkanProbe::Off`]).
    NotProbed,
    /// The loader answered; possibly with no adapters.
    Adapters {
        /// The physical devices, in the loader's order.
        adapters: Vec<Adapter>,
    },
    /// The loader or the instance could not be had.
    Unavailable {
        /// What went wrong: no loader, no driver, or the probe panicked or did not answer in time.
        reason: String,
    },
}

/// One Vulkan physical device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adapter {
    /// The driver's device name (Vulkan's `deviceName`).
    pub name: String,
    /// Hardware or software, discrete or integrated.
    pub kind: AdapterKind,
    /// PCI vendor ID as Vulkan reports it (`0x10de` NVIDIA, `0x1002` AMD, `0x8086` Intel).
    pub vendor_id: u32,
    /// The vendor's device ID.
    pub device_id: u32,
}

/// Vulkan's physical device types; `Cpu` is a software rasteriser (lavapipe, SwiftShader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterKind {
    /// A GPU of its own (`DISCRETE_GPU`).
    Discrete,
    /// A GPU sharing the CPU's package and memory (`INTEGRATED_GPU`).
    Integrated,
    /// A GPU a hypervisor presents to a virtual machine (`VIRTUAL_GPU`).
    Virtual,
    /// Software rendering on the CPU (`CPU`): not an accelerator unless the config allows it.
    Cpu,
    /// Any other type (`OTHER`, or one newer than this code).
    Other,
}

impl Adapter {
    /// Whether it is a software rasteriser (lavapipe, SwiftShader) rather than hardware.
    pub fn is_software(&self) -> bool {
        self.kind == AdapterKind::Cpu
    }
}

/// An inference library looked for on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LibraryReport {
    /// Which library (`onnxruntime`).
    pub name: String,
    /// Where it was looked for (the configured `ort_library`).
    pub path: PathBuf,
    /// Whether a file is there (not whether it loads).
    pub present: bool,
}

impl VulkanReport {
    /// The adapters found; empty when not probed or unavailable.
    pub fn adapters(&self) -> &[Adapter] {
        match self {
            VulkanReport::Adapters { adapters } => adapters,
            _ => &[],
        }
    }
}

/// Takes an inventory: sysfs under `root`, Vulkan as `vulkan` says, and the ORT library.
pub fn discover(root: &Path, vulkan: &VulkanProbe, ort_library: Option<&Path>) -> DeviceInventory {
    let vulkan = match vulkan {
        VulkanProbe::Off => VulkanReport::NotProbed,
        VulkanProbe::Assume(adapters) => VulkanReport::Adapters {
            adapters: adapters.clone(),
        },
        VulkanProbe::Loader => vulkan::probe(),
    };
    if let VulkanReport::Unavailable { reason } = &vulkan {
        tracing::info!(%reason, "no Vulkan adapters");
    }
    let libraries = ort_library
        .map(|path| LibraryReport {
            name: "onnxruntime".into(),
            path: path.to_path_buf(),
            present: path.is_file(),
        })
        .into_iter()
        .collect();
    let inventory = DeviceInventory {
        taken_at: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        npus: sysfs::accels(root),
        render_nodes: sysfs::render_nodes(root),
        vulkan,
        libraries,
    };
    tracing::info!(
        npus = inventory.npus.len(),
        render_nodes = inventory.render_nodes.len(),
        vulkan_adapters = inventory.vulkan.adapters().len(),
        "devices discovered"
    );
    inventory
}
