//! NPUs and GPU render nodes from `/dev` and `/sys`, under a root directory.
//!
//! The decision worth knowing: a device node without a readable sysfs entry is still listed
//! (driver unknown), since the device file is what a backend would open.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// An NPU: `/dev/accel/accelN` with what `/sys/class/accel/accelN/device/` says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accel {
    /// The device name (`accel0`).
    pub name: String,
    /// The device file, under the discovery root (`<root>/dev/accel/accel0`).
    pub dev_path: PathBuf,
    /// The bound kernel driver (`intel_vpu`, `amdxdna`); `None` when sysfs does not say.
    pub driver: Option<String>,
    /// PCI vendor ID as sysfs writes it (`0x8086`).
    pub vendor: Option<String>,
    /// PCI device ID as sysfs writes it.
    pub device: Option<String>,
}

/// A GPU render node: `/dev/dri/renderDN` and its driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderNode {
    /// The device name (`renderD128`).
    pub name: String,
    /// The device file, under the discovery root (`<root>/dev/dri/renderD128`).
    pub dev_path: PathBuf,
    /// The bound kernel driver (`i915`, `amdgpu`, ...); `None` when sysfs does not say.
    pub driver: Option<String>,
    /// PCI vendor ID as sysfs writes it (`0x8086`).
    pub vendor: Option<String>,
}

/// NPUs under `root`.
pub(super) fn accels(root: &Path) -> Vec<Accel> {
    let mut names = entries(&root.join("dev/accel"), "accel");
    for name in entries(&root.join("sys/class/accel"), "accel") {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let device = root.join("sys/class/accel").join(&name).join("device");
            Accel {
                dev_path: root.join("dev/accel").join(&name),
                driver: driver(&device),
                vendor: attribute(&device, "vendor"),
                device: attribute(&device, "device"),
                name,
            }
        })
        .collect()
}

/// GPU render nodes under `root`.
pub(super) fn render_nodes(root: &Path) -> Vec<RenderNode> {
    let mut names = entries(&root.join("dev/dri"), "renderD");
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let device = root.join("sys/class/drm").join(&name).join("device");
            RenderNode {
                dev_path: root.join("dev/dri").join(&name),
                driver: driver(&device),
                vendor: attribute(&device, "vendor"),
                name,
            }
        })
        .collect()
}

/// Names in `dir` starting with `prefix`; none if `dir` cannot be read.
fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    read.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The driver bound to a device: the `driver` symlink's target name, else `DRIVER=` in `uevent`.
fn driver(device: &Path) -> Option<String> {
    if let Ok(target) = std::fs::read_link(device.join("driver"))
        && let Some(name) = target.file_name().and_then(|n| n.to_str())
    {
        return Some(name.to_owned());
    }
    let uevent = std::fs::read_to_string(device.join("uevent")).ok()?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DRIVER="))
        .map(|d| d.trim().to_owned())
}

fn attribute(device: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(device.join(name))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_npu_with_driver_from_symlink_and_uevent() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("dev/accel")).unwrap();
        std::fs::write(r.join("dev/accel/accel0"), "").unwrap();
        std::fs::write(r.join("dev/accel/accel1"), "").unwrap();
        let d0 = r.join("sys/class/accel/accel0/device");
        std::fs::create_dir_all(&d0).unwrap();
        std::fs::create_dir_all(r.join("drivers/intel_vpu")).unwrap();
        std::os::unix::fs::symlink(r.join("drivers/intel_vpu"), d0.join("driver")).unwrap();
        std::fs::write(d0.join("vendor"), "0x8086\n").unwrap();
        let d1 = r.join("sys/class/accel/accel1/device");
        std::fs::create_dir_all(&d1).unwrap();
        std::fs::write(d1.join("uevent"), "DRIVER=amdxdna\nPCI_ID=1022:17F0\n").unwrap();
        let found = accels(r);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].driver.as_deref(), Some("intel_vpu"));
        assert_eq!(found[0].vendor.as_deref(), Some("0x8086"));
        assert_eq!(found[1].driver.as_deref(), Some("amdxdna"));
    }

    #[test]
    fn missing_tree_is_empty_not_an_error() {
        let root = tempfile::tempdir().unwrap();
        assert!(accels(root.path()).is_empty());
        assert!(render_nodes(root.path()).is_empty());
    }

    #[test]
    fn finds_render_nodes_only() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("dev/dri")).unwrap();
        std::fs::write(r.join("dev/dri/card0"), "").unwrap();
        std::fs::write(r.join("dev/dri/renderD128"), "").unwrap();
        let nodes = render_nodes(r);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].name, "renderD128");
        assert_eq!(nodes[0].driver, None);
    }
}
