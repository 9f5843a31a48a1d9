//! Vulkan adapters through the system's loader (`libvulkan.so.1`, opened at run time).
//!
//! The decision worth knowing: the probe runs on its own thread with a deadline and inside
//! `catch_unwind`, because it calls into whatever drivers the machine has installed; a hung or
//! broken driver makes the report `Unavailable`, never a stuck or crashed node. The loader
//! honours `VK_DRIVER_FILES`, which is how tests hide the driver.

use std::time::Duration;

use ash::vk;

use super::{Adapter, AdapterKind, VulkanReport};

/// How long the loader and drivers get to answer.
const PROBE_DEADLINE: Duration = Duration::from_secs(20);

/// Why the loader gave no adapters; its chain is the report's `reason`.
#[derive(Debug, thiserror::Error)]
enum VulkanError {
    #[error("no Vulkan loader (libvulkan.so.1)")]
    NoLoader(#[source] ash::LoadingError),
    #[error("vkCreateInstance failed ({0}): no usable Vulkan driver")]
    CreateInstance(vk::Result),
    #[error("vkEnumeratePhysicalDevices failed")]
    Enumerate(#[source] vk::Result),
    #[error("the Vulkan loader or a driver panicked")]
    Panicked,
}

/// Asks the loader for its physical devices.
pub(super) fn probe() -> VulkanReport {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("spark-nn-vulkan-probe".into())
        .spawn(move || {
            let report = std::panic::catch_unwind(enumerate)
                .unwrap_or(Err(VulkanError::Panicked))
                .map_err(|e| spark_error::chain(&e).to_string());
            let _ = tx.send(report);
        });
    if let Err(e) = spawned {
        return VulkanReport::Unavailable {
            reason: format!("cannot start the probe thread: {e}"),
        };
    }
    match rx.recv_timeout(PROBE_DEADLINE) {
        Ok(Ok(adapters)) => VulkanReport::Adapters { adapters },
        Ok(Err(reason)) => VulkanReport::Unavailable { reason },
        Err(_) => VulkanReport::Unavailable {
            reason: format!("the Vulkan loader did not answer within {PROBE_DEADLINE:?}"),
        },
    }
}

fn enumerate() -> Result<Vec<Adapter>, VulkanError> {
    // SAFETY: `Entry::load` dlopens the system's Vulkan loader; ash requires `unsafe` because a
    // library's initialisers run on load. We load the loader the platform installed, by its
    // standard name, and keep `entry` alive until every Vulkan object made from it is gone.
    let entry = unsafe { ash::Entry::load() }.map_err(VulkanError::NoLoader)?;
    let app = vk::ApplicationInfo::default()
        .application_name(c"spark-nn")
        .api_version(vk::API_VERSION_1_0);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: `info` and `app` are valid, fully initialised structures that outlive the call;
    // no allocation callbacks are passed.
    let instance =
        unsafe { entry.create_instance(&info, None) }.map_err(VulkanError::CreateInstance)?;
    // SAFETY: `instance` was created above and is destroyed only after this call.
    let devices = unsafe { instance.enumerate_physical_devices() };
    let adapters = devices.map(|devices| {
        devices
            .into_iter()
            .map(|device| {
                // SAFETY: `device` was returned by `enumerate_physical_devices` on this live
                // instance.
                let props = unsafe { instance.get_physical_device_properties(device) };
                Adapter {
                    name: props
                        .device_name_as_c_str()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| "(unnamed)".into()),
                    kind: kind(props.device_type),
                    vendor_id: props.vendor_id,
                    device_id: props.device_id,
                }
            })
            .collect()
    });
    // SAFETY: no object created from `instance` outlives this point (physical devices are not
    // owned objects), and it is destroyed exactly once.
    unsafe { instance.destroy_instance(None) };
    adapters.map_err(VulkanError::Enumerate)
}

fn kind(t: vk::PhysicalDeviceType) -> AdapterKind {
    match t {
        vk::PhysicalDeviceType::DISCRETE_GPU => AdapterKind::Discrete,
        vk::PhysicalDeviceType::INTEGRATED_GPU => AdapterKind::Integrated,
        vk::PhysicalDeviceType::VIRTUAL_GPU => AdapterKind::Virtual,
        vk::PhysicalDeviceType::CPU => AdapterKind::Cpu,
        _ => AdapterKind::Other,
    }
}
