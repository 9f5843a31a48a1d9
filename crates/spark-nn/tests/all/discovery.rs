//! Device discovery from fake sysfs trees and from the real Vulkan loader.

use spark_nn::discovery::{self, AdapterKind, VulkanReport};
use spark_nn::{NnConfig, VulkanProbe};

use crate::support;
use spark_testkit::nn::fake_npu_tree;

fn config(root: &std::path::Path) -> NnConfig {
    let mut config = support::config();
    config.settings.device_root = root.to_path_buf();
    config.vulkan = VulkanProbe::Off;
    config
}

#[test]
fn a_fake_tree_is_reported_with_the_reason_each_backend_is_or_is_not_used() {
    let root = tempfile::tempdir().unwrap();
    fake_npu_tree(root.path(), "amdxdna");
    std::fs::create_dir_all(root.path().join("dev/dri")).unwrap();
    std::fs::write(root.path().join("dev/dri/renderD128"), "").unwrap();
    let service = support::service(config(root.path()));
    let status = service.status();
    assert_eq!(status.devices.npus.len(), 1);
    assert_eq!(status.devices.npus[0].driver.as_deref(), Some("amdxdna"));
    assert_eq!(status.devices.render_nodes.len(), 1);
    assert_eq!(status.devices.vulkan, VulkanReport::NotProbed);
    let webgpu = status
        .backends
        .iter()
        .find(|b| b.name == spark_nn::ORT_WEBGPU)
        .unwrap();
    assert!(
        !webgpu.available && webgpu.detail.contains("not probed"),
        "{}",
        webgpu.detail
    );
    let npu = status
        .backends
        .iter()
        .find(|b| b.name == spark_nn::ORT_NPU)
        .unwrap();
    if support::ort().is_some() {
        assert!(
            npu.available && npu.detail.contains("VitisAi"),
            "{}",
            npu.detail
        );
    } else {
        assert!(!npu.available);
    }
}

#[test]
fn an_npu_with_an_unknown_driver_is_explained() {
    let root = tempfile::tempdir().unwrap();
    fake_npu_tree(root.path(), "mystery_npu");
    let service = support::service(config(root.path()));
    let npu = service
        .status()
        .backends
        .into_iter()
        .find(|b| b.name == spark_nn::ORT_NPU)
        .unwrap();
    assert!(!npu.available);
    assert!(npu.detail.contains("mystery_npu"), "{}", npu.detail);
}

#[test]
fn refresh_picks_up_a_device_that_appears() {
    let root = tempfile::tempdir().unwrap();
    let service = support::service(config(root.path()));
    assert!(service.status().devices.npus.is_empty());
    fake_npu_tree(root.path(), "intel_vpu");
    service.refresh_devices();
    let status = service.status();
    assert_eq!(status.devices.npus.len(), 1);
    let npu = status
        .backends
        .iter()
        .find(|b| b.name == spark_nn::ORT_NPU)
        .unwrap();
    assert!(!npu.detail.contains("no NPU found"), "{}", npu.detail);
}

#[test]
fn the_real_vulkan_loader_reports_lavapipe_as_software() {
    let report = discovery::discover(std::path::Path::new("/"), &VulkanProbe::Loader, None);
    eprintln!("Vulkan here: {:?}", report.vulkan);
    let software = report
        .vulkan
        .adapters()
        .iter()
        .find(|a| a.name.contains("llvmpipe") || a.name.contains("lavapipe"));
    if let Some(adapter) = software {
        assert_eq!(adapter.kind, AdapterKind::Cpu);
    }
    assert!(
        !support::require_accel() || software.is_some(),
        "{:?}",
        report.vulkan
    );
}

#[test]
fn unknown_backend_names_in_config_are_refused() {
    let mut config = support::config();
    config.settings.backends = vec!["cuda".into()];
    assert!(spark_nn::NnService::start(config).is_err());
}
