//! Which engines this node has, built from the config and the device inventory; and, for
//! those it does not have, the reason (shown by `spark status`).
//!
//! The decision worth knowing: an accelerator engine exists only for a device discovery really
//! found (an NPU with a driver Spark knows a provider for; a Vulkan adapter that is hardware,
//! or software when the node allows it). Whether the provider then *works* is learnt by trying
//! it, and a failure there is a fall-through, not a startup error.

use std::path::Path;
use std::sync::Arc;

use crate::backend::ort::{OrtBackend, OrtInfo, Provider};
use crate::backend::tract::TractBackend;
use crate::backend::{DeviceClass, Engine};
use crate::config::{NnConfig, ORT_CPU, ORT_NPU, ORT_WEBGPU, TRACT};
use crate::discovery::{DeviceInventory, VulkanReport};

/// Builds every known engine (available or not) for this inventory.
pub(crate) fn build(
    config: &NnConfig,
    inventory: &DeviceInventory,
    ort: &Result<OrtInfo, String>,
) -> Vec<Arc<Engine>> {
    let allowed = |name: &str| config.backends.iter().any(|b| b == name);
    let mut engines = vec![Engine::new(
        TRACT,
        DeviceClass::Cpu,
        "tract-onnx 0.23 (pure Rust)",
        TractBackend,
    )];
    let ort_engine = |name: &str, device, provider, detail: String| -> Engine {
        if !allowed(name) {
            return Engine::unavailable(name, device, "disabled by config");
        }
        match (ort, &config.ort_library) {
            (Ok(info), Some(path)) => Engine::new(
                name,
                device,
                format!("ONNX Runtime {}, {detail}", version(info)),
                OrtBackend::new(name, path, provider, config.cpu_threads),
            ),
            (Err(e), _) => Engine::unavailable(name, device, e.clone()),
            (Ok(_), None) => Engine::unavailable(name, device, "no ONNX Runtime library"),
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
        Err(reason) => Engine::unavailable(ORT_WEBGPU, DeviceClass::Gpu, reason),
    });
    engines.push(match npu(inventory) {
        Ok((provider, detail)) => ort_engine(ORT_NPU, DeviceClass::Npu, provider, detail),
        Err(reason) => Engine::unavailable(ORT_NPU, DeviceClass::Npu, reason),
    });
    engines.into_iter().map(Arc::new).collect()
}

/// The ORT library to bind, or why there is none.
pub(crate) fn bind_ort(config: &NnConfig) -> Result<OrtInfo, String> {
    let ort_wanted = [ORT_CPU, ORT_WEBGPU, ORT_NPU]
        .iter()
        .any(|n| config.backends.iter().any(|b| b == n));
    match &config.ort_library {
        _ if !ort_wanted => Err("ONNX Runtime disabled by config".into()),
        None => Err("no ONNX Runtime library configured".into()),
        Some(path) => crate::backend::ort::bind(Path::new(path)),
    }
}

/// The Vulkan adapter WebGPU would use, described; or why none qualifies.
fn gpu_adapter(config: &NnConfig, inventory: &DeviceInventory) -> Result<String, String> {
    let adapters = match &inventory.vulkan {
        VulkanReport::NotProbed => return Err("Vulkan not probed (config)".into()),
        VulkanReport::Unavailable { reason } => return Err(format!("no Vulkan adapter: {reason}")),
        VulkanReport::Adapters { adapters } => adapters,
    };
    if adapters.is_empty() {
        return Err("the Vulkan loader reports no adapter".into());
    }
    let usable = adapters.iter().find(|a| !a.is_software()).or_else(|| {
        adapters
            .iter()
            .find(|a| a.is_software() && config.allow_software_accelerators)
    });
    match usable {
        Some(a) if a.is_software() => Ok(format!("{} (software, allowed by config)", a.name)),
        Some(a) => Ok(format!("{} ({:?})", a.name, a.kind)),
        None => Err(format!(
            "only software Vulkan adapters ({}); software adapters are not accelerators unless allowed (allow_software_adapters)",
            adapters
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The first NPU Spark has a provider for.
fn npu(inventory: &DeviceInventory) -> Result<(Provider, String), String> {
    if inventory.npus.is_empty() {
        return Err("no NPU found (/dev/accel, /sys/class/accel)".into());
    }
    for accel in &inventory.npus {
        if let Some(driver) = &accel.driver
            && let Some(provider) = Provider::for_npu_driver(driver)
        {
            let detail = format!("{provider:?} provider on {} ({driver})", accel.name);
            return Ok((provider, detail));
        }
    }
    Err(format!(
        "NPUs found but no provider known for their drivers: {}",
        inventory
            .npus
            .iter()
            .map(|a| format!(
                "{} ({})",
                a.name,
                a.driver.as_deref().unwrap_or("driver unknown")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ))
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
