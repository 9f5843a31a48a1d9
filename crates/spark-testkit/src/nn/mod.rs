//! Inference test material: the real model (`scripts/fetch-model.sh`), the ONNX Runtime
//! library with WebGPU (`scripts/fetch-ort.sh`), sample images with known labels and a slow
//! model ([`mod@samples`]), a backend that always fails ([`FailingBackend`]), and fake device
//! trees. B6 (`spark-bench`) and `spark nn classify` draw their images here too, so the node's
//! `spark-nn` carries none of it.
//!
//! The decision worth knowing: a missing ONNX Runtime or Vulkan driver makes a test check
//! only the CPU branch and print what it skipped, unless `SPARK_NN_REQUIRE_ACCEL=1` (set by
//! CI after installing them), where it is a failure: CI must test both branches for real.

pub mod samples;

use std::path::{Path, PathBuf};

use wasmtime_wasi_nn::backend::{BackendError, BackendFromDir, BackendInner};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding};

/// The model's SHA-256 (PP-OCR text-orientation classifier, `rapidocr-onnxruntime` 1.4.4).
pub const MODEL_SHA256: &str = "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c";

fn cache() -> PathBuf {
    std::env::var_os("SPARK_NN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/spark-nn")
        })
}

/// CI sets this once ONNX Runtime and lavapipe are installed: the GPU branch must run.
pub fn require_accel() -> bool {
    std::env::var("SPARK_NN_REQUIRE_ACCEL").is_ok_and(|v| v == "1")
}

/// The real model; panics with the fix when it was not fetched.
pub fn model() -> PathBuf {
    let path = std::env::var_os("SPARK_NN_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("models/ch_ppocr_mobile_v2.0_cls_infer.onnx"));
    assert!(
        path.is_file(),
        "no model at {}: run scripts/fetch-nn.sh",
        path.display()
    );
    path
}

/// The ONNX Runtime library (with WebGPU), or `None` with a note on stderr; a failure when
/// [`require_accel`].
pub fn ort_library() -> Option<PathBuf> {
    let path = std::env::var_os("SPARK_NN_ORT_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("ort/libonnxruntime.so.1"));
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !require_accel(),
        "SPARK_NN_REQUIRE_ACCEL=1 but no ONNX Runtime at {}: run scripts/fetch-nn.sh",
        path.display()
    );
    eprintln!(
        "NOTE: no ONNX Runtime at {}: only the CPU branch (tract) is tested here",
        path.display()
    );
    None
}

/// `ort_library = "..."` for a manifest's `[nn]` table, or nothing.
pub fn ort_line() -> String {
    ort_library().map_or(String::new(), |p| {
        format!("ort_library = {:?}", p.display().to_string())
    })
}

/// Upright (class 0) and turned-over (class 1) lines of text as PPM images.
pub fn samples() -> Vec<(Vec<u8>, usize)> {
    samples::TEXTS
        .iter()
        .flat_map(|t| {
            let image = samples::text_line(t, 3);
            [(image.rotated().to_ppm(), 1), (image.to_ppm(), 0)]
        })
        .collect()
}

/// A fake `/dev` + `/sys` tree with an NPU at accel0 bound to `driver` (e.g. `intel_vpu`).
pub fn fake_npu_tree(root: &Path, driver: &str) {
    std::fs::create_dir_all(root.join("dev/accel")).unwrap();
    std::fs::write(root.join("dev/accel/accel0"), "").unwrap();
    let device = root.join("sys/class/accel/accel0/device");
    std::fs::create_dir_all(&device).unwrap();
    let drivers = root.join("sys/bus/pci/drivers").join(driver);
    std::fs::create_dir_all(&drivers).unwrap();
    std::os::unix::fs::symlink(&drivers, device.join("driver")).unwrap();
    std::fs::write(device.join("vendor"), "0x8086\n").unwrap();
    std::fs::write(device.join("device"), "0x7d1d\n").unwrap();
}

/// A backend that always fails to load: a stand-in device (an NPU that does not respond) for
/// fall-through tests and B6, with the error a failing backend gives.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailingBackend;

impl BackendInner for FailingBackend {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Onnx
    }

    fn load(
        &mut self,
        _builders: &[&[u8]],
        _target: ExecutionTarget,
    ) -> Result<wasmtime_wasi_nn::Graph, BackendError> {
        Err(
            spark_nn::NnError::backend(spark_nn::ORT_NPU, "device not responding (stand-in)")
                .into(),
        )
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}
