//! Which engines this node has, built from the config and the device inventory; and, for
//! those it does not have, the reason (shown by `spark status`).
//!
//! The decision worth knowing: an accelerator engine exists only for a device discovery really
//! found (an NPU with a driver Spark knows a provider for; a Vulkan adapter that is hardware,
//! or software when the node allows it). Whether the provider then *works* is learnt by trying
//! it, and a failure there is a fall-through, not a startup error.

use std::path::Path;
use std::sync::Arc;

use crate::backend::ort::{OrtBackend, OrtInfo, OrtUnavailable, Provider};
use crate::backend::tract::TractBackend;
use crate::backend::{DeviceBackend, DeviceClass};
use crate::config::{NnConfig, ORT_CPU, ORT_NPU, ORT_WEBGPU, TRACT};
use crate::discovery::{DeviceInventory, VulkanReport};

/// Why this node does not have an engine (shown by `spark status`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unavailable {
    /// The backend is not in the config's `backends`.
    #[error("disabled by config")]
    Disabled,
    /// ONNX Runtime is loaded but the config names no library.
    #[error("no ONNX Runtime library")]
    NoOrtLibrary,
    /// ONNX Runtime cannot be used on this node.
    #[error(transparent)]
    Ort(#[from] OrtUnavailable),
    /// The config turned the Vulkan probe off, so no GPU is known.
    #[error("Vulkan not probed (config)")]
    VulkanNotProbed,
    /// The Vulkan probe's report (a text in the device inventory).
    #[error("no Vulkan adapter: {reason}")]
    NoVulkan {
        /// Why the probe found none ([`crate::discovery::VulkanReport::Unavailable`]).
        reason: String,
    },
    /// The Vulkan loader answered with no adapters.
    #[error("the Vulkan loader reports no adapter")]
    NoAdapter,
    /// Every adapter is a software one, and the config does not allow those.
    #[error(
        "only software Vulkan adapters ({names}); software adapters are not accelerators unless allowed (allow_software_adapters in [nn])"
    )]
    OnlySoftware {
        /// The adapters' names, comma-separated.
        names: String,
    },
    /// No NPU under `/dev/accel` or `/sys/class/accel`.
    #[error("no NPU found (/dev/accel, /sys/class/accel)")]
    NoNpu,
    /// NPUs were found, but none with a driver Spark knows a provider for (`intel_vpu`,
    /// `amdxdna`).
    #[error("NPUs found but no provider known for their drivers: {found}")]
    NoNpuProvider {
        /// Each NPU with its driver, comma-separated.
        found: String,
    },
}

/// Builds every known engine (available or not) for this inventory.
pub(crate) fn build(
    config: &NnConfig,
    inventory: &DeviceInventory,
    ort: &Result<OrtInfo, OrtUnavailable>,
) -> Vec<Arc<DeviceBackend>> {
    let allowed = |name: &str| config.settings.backends.iter().any(|b| b == name);
    let mut engines = vec![DeviceBackend::new(
        TRACT,
        DeviceClass::Cpu,
        "tract-onnx 0.23 (pure Rust)",
        TractBackend,
    )];
    let ort_engine = |name: &str, device, provider, detail: String| -> DeviceBackend {
        if !allowed(name) {
            return DeviceBackend::unavailable(name, device, &Unavailable::Disabled);
        }
        match (ort, &config.settings.ort_library) {
            (Ok(info), Some(path)) => DeviceBackend::new(
                name,
                device,
                format!("ONNX Runtime {}, {detail}", version(info)),
                OrtBackend::new(name, path, provider, config.cpu_threads()),
            ),
            (Err(e), _) => DeviceBackend::unavailable(name, device, e),
            (Ok(_), None) => DeviceBackend::unavailable(name, device, &Unavailable::NoOrtLibrary),
        }
    };
    engines.push(ort_engine(
        ORT_CPU,
        DeviceClass::Cpu,
        Provider::Cpu,
        "CPU provider".into(),
    ));
    engines.push(match gpu_adapter(config, inventory) {
        Ok(adapter) => ort_engine(
            ORT_WEBGPU,
            DeviceClass::Gpu,
            Provider::WebGpu,
            format!("WebGPU provider on Vulkan adapter {adapter}"),
        ),
        Err(reason) => DeviceBackend::unavailable(ORT_WEBGPU, DeviceClass::Gpu, &reason),
    });
    engines.push(match npu(inventory) {
        Ok((provider, detail)) => ort_engine(ORT_NPU, DeviceClass::Npu, provider, detail),
        Err(reason) => DeviceBackend::unavailable(ORT_NPU, DeviceClass::Npu, &reason),
    });
    engines.into_iter().map(Arc::new).collect()
}

/// The ORT library to bind, or why there is none.
pub(crate) fn bind_ort(config: &NnConfig) -> Result<OrtInfo, OrtUnavailable> {
    let ort_wanted = [ORT_CPU, ORT_WEBGPU, ORT_NPU]
        .iter()
        .any(|n| config.settings.backends.iter().any(|b| b == n));
    match &config.settings.ort_library {
        _ if !ort_wanted => Err(OrtUnavailable::Disabled),
        None => Err(OrtUnavailable::NotConfigured),
        Some(path) => crate::backend::ort::bind(Path::new(path)),
    }
}

/// The Vulkan adapter WebGPU would use, described; or why none qualifies.
fn gpu_adapter(config: &NnConfig, inventory: &DeviceInventory) -> Result<String, Unavailable> {
    let adapters = match &inventory.vulkan {
        VulkanReport::NotProbed => return Err(Unavailable::VulkanNotProbed),
        VulkanReport::Unavailable { reason } => {
            return Err(Unavailable::NoVulkan {
                reason: reason.clone(),
            });
        }
        VulkanReport::Adapters { adapters } => adapters,
    };
    if adapters.is_empty() {
        return Err(Unavailable::NoAdapter);
    }
    let usable = adapters.iter().find(|a| !a.is_software()).or_else(|| {
        adapters
            .iter()
            .find(|a| a.is_software() && config.settings.allow_software_adapters)
    });
    match usable {
        Some(a) if a.is_software() => Ok(format!("{} (software, allowed by config)", a.name)),
        Some(a) => Ok(format!("{} ({:?})", a.name, a.kind)),
        None => Err(Unavailable::OnlySoftware {
            names: adapters
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The first NPU Spark has a provider for.
fn npu(inventory: &DeviceInventory) -> Result<(Provider, String), Unavailable> {
    if inventory.npus.is_empty() {
        return Err(Unavailable::NoNpu);
    }
    for accel in &inventory.npus {
        if let Some(driver) = &accel.driver
            && let Some(provider) = Provider::for_npu_driver(driver)
        {
            let detail = format!("{provider:?} provider on {} ({driver})", accel.name);
            return Ok((provider, detail));
        }
    }
    Err(Unavailable::NoNpuProvider {
        found: inventory
            .npus
            .iter()
            .map(|a| {
                format!(
                    "{} ({})",
                    a.name,
                    a.driver.as_deref().unwrap_or("driver unknown")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// "1.30.0" out of ONNX Runtime's build string, else its commit, else the string itself.
fn version(info: &OrtInfo) -> String {
    let field = |key: &str| {
        info.build.split(',').find_map(|part| {
            part.trim()
                .split_once(key)
                .map(|(_, v)| v.trim().to_owned())
        })
    };
    match (field("git-branch="), field("git-commit-id=")) {
        (Some(branch), _) if branch.starts_with("rel-") => branch["rel-".len()..].to_owned(),
        (_, Some(commit)) => format!("(commit {commit})"),
        _ => info.build.clone(),
    }
}
