//! `spark-nn`'s fallback scenarios, each in a fresh process (`spark nn classify`, the inference
//! host without a node): the Vulkan driver hidden, a bogus ONNX Runtime library, `tpu` on a
//! node without an NPU, and a fake sysfs NPU whose backend fails. Each must end on a working
//! backend with the same top-1, and the process must stay up (it answers every request and
//! exits cleanly). A process each, because ONNX Runtime binds one library per process and the
//! Vulkan driver is chosen by environment at load.

use std::process::Command;

use serde_json::Value;
use spark_testkit::{guest, nn};

/// Runs `spark nn classify` for the upright and the turned-over line; returns both outputs
/// after checking exit status and top-1 labels.
fn scenario(args: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    [false, true]
        .into_iter()
        .map(|rotated| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_spark"));
            cmd.env("RUST_LOG", "warn")
                .args(["nn", "classify"])
                .arg("--wasm")
                .arg(guest("classify"))
                .args(["--requests", "2"])
                .args(args);
            if rotated {
                cmd.arg("--rotated");
            }
            for (k, v) in env {
                cmd.env(k, v);
            }
            let out = cmd.output().expect("spark nn runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "spark nn failed ({}): {stderr}",
                out.status
            );
            let v: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("spark nn output: {e}: {stderr}"));
            for answer in v["answers"].as_array().unwrap() {
                assert_eq!(answer["status"], 200, "{answer}");
                assert_eq!(answer["body"]["class"], usize::from(rotated), "{answer}");
            }
            v
        })
        .collect()
}

fn first(v: &Value) -> &Value {
    &v["answers"][0]["body"]
}

fn backend<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nn"]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap()
}

fn ort_args() -> Vec<String> {
    match nn::ort_library() {
        Some(lib) => vec!["--ort".into(), lib.display().to_string()],
        None => vec!["--no-ort".into()],
    }
}

fn args<'a>(owned: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    owned
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

#[test]
fn vulkan_driver_hidden_at_startup_is_explained_and_served_on_cpu() {
    let ort = ort_args();
    let runs = scenario(
        &args(&ort, &["--allow-software", "--target", "gpu"]),
        &[("VK_DRIVER_FILES", "/nonexistent.json")],
    );
    for v in &runs {
        assert_eq!(first(v)["device"], "cpu", "{}", first(v));
        let webgpu = backend(v, spark_nn::ORT_WEBGPU);
        assert_eq!(webgpu["available"], false);
        assert!(
            webgpu["detail"].as_str().unwrap().contains("Vulkan"),
            "{webgpu}"
        );
    }
}

#[test]
fn vulkan_driver_gone_after_discovery_fails_the_provider_and_falls_through() {
    let ort = ort_args();
    // Discovery "saw" a software GPU, but the driver is hidden: ONNX Runtime's WebGPU
    // provider must fail at session creation, explicitly, and the CPU must answer.
    let runs = scenario(
        &args(
            &ort,
            &[
                "--allow-software",
                "--vulkan",
                "assume-software",
                "--target",
                "gpu",
            ],
        ),
        &[("VK_DRIVER_FILES", "/nonexistent.json")],
    );
    for v in &runs {
        let answer = first(v);
        assert_eq!(answer["device"], "cpu", "{answer}");
        if nn::ort_library().is_some() {
            let failed = &answer["fallbacks"][0];
            assert_eq!(failed["backend"], spark_nn::ORT_WEBGPU, "{answer}");
            eprintln!("WebGPU provider without a driver: {}", failed["error"]);
            // The failure is remembered: the second request does not retry the provider.
            let second = &v["answers"][1]["body"];
            let again = second["fallbacks"][0]["error"].as_str().unwrap_or("");
            assert!(again.contains("failed earlier"), "{second}");
        }
    }
}

#[test]
fn a_bogus_onnx_runtime_library_leaves_tract() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("libonnxruntime.so.1");
    std::fs::write(&bogus, b"\x7fELF but not really a library").unwrap();
    let bogus = bogus.display().to_string();
    let runs = scenario(
        &["--ort", &bogus, "--allow-software", "--target", "gpu"],
        &[],
    );
    for v in &runs {
        assert_eq!(first(v)["backend"], spark_nn::TRACT, "{}", first(v));
        let reason = v["nn"]["onnxruntime"]["Err"].as_str().unwrap();
        assert!(reason.contains(&bogus), "{reason}");
        assert!(
            backend(v, spark_nn::ORT_CPU)["detail"]
                .as_str()
                .unwrap()
                .contains(&bogus)
        );
    }
}

#[test]
fn tpu_on_a_node_without_an_npu_is_served_by_the_next_device() {
    let ort = ort_args();
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().display().to_string();
    let runs = scenario(
        &args(
            &ort,
            &["--allow-software", "--root", &root_arg, "--target", "tpu"],
        ),
        &[],
    );
    for v in &runs {
        let answer = first(v);
        assert!(answer["backend"].is_string(), "{answer}");
        let skipped = answer["skipped"].as_array().unwrap();
        assert!(
            skipped.iter().any(|s| s["backend"] == spark_nn::ORT_NPU
                && s["error"].as_str().unwrap().contains("no NPU")),
            "{answer}"
        );
        if nn::require_accel() {
            assert_eq!(answer["backend"], spark_nn::ORT_WEBGPU, "{answer}");
        }
    }
}

#[test]
fn a_fake_npu_whose_backend_fails_falls_through_with_the_same_top1() {
    let ort = ort_args();
    let root = tempfile::tempdir().unwrap();
    nn::fake_npu_tree(root.path(), "intel_vpu");
    let root_arg = root.path().display().to_string();
    let runs = scenario(
        &args(
            &ort,
            &["--allow-software", "--root", &root_arg, "--target", "tpu"],
        ),
        &[],
    );
    for v in &runs {
        let answer = first(v);
        assert_eq!(v["nn"]["devices"]["npus"][0]["driver"], "intel_vpu");
        assert_ne!(answer["backend"], spark_nn::ORT_NPU, "{answer}");
        if nn::ort_library().is_some() {
            // The NPU engine exists (device found, provider known) and fails for real:
            // this ONNX Runtime build has no OpenVINO provider.
            assert_eq!(backend(v, spark_nn::ORT_NPU)["available"], true);
            assert_eq!(
                answer["fallbacks"][0]["backend"],
                spark_nn::ORT_NPU,
                "{answer}"
            );
            eprintln!("NPU provider: {}", answer["fallbacks"][0]["error"]);
        }
    }
}
