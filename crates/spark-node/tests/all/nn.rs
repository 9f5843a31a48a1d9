//! Inference through a real node: the `classify` guest (standard `wasi:nn`, a real model)
//! over HTTP, on every backend this machine has, with the issue's in-process fallback cases
//! (`tpu` with no NPU, a fake NPU whose backend fails), per-module limits, the orchestrator's
//! power-save mode, and what status and `/metrics` say. The cases that need their own process
//! (Vulkan driver hidden, a bogus ONNX Runtime library) are in `spark-cli`'s tests.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use spark_testkit::{TestNode, eventually, get, nn, post};

/// A node serving `classify` at `/nn/...` with `[nn]` (plus `nn_extra`) and module limits.
/// `classify` passes its embedded 585 KB model to `graph.load` as bytes, which a module may
/// do only with an `nn_model` limit (0 by default): 1 MiB unless `limits` sets one.
pub(crate) fn manifest(nn_extra: &str, limits: &str, head: &str) -> String {
    let limits = if limits.contains("nn_model") {
        limits.to_owned()
    } else {
        format!("nn_model = \"1MiB\"\n{limits}")
    };
    format!(
        r#"
version = 1
{head}
[nn]
rediscover = "0s"
{nn_extra}

[[nn.model]]
name = "ppocr-cls"
path = "{model}"
sha256 = "{sha}"

[[module]]
id = "classify"
component = "{{guest:classify}}"
routes = ["/nn/..."]
health = "/nn/health"
[module.limits]
{limits}
"#,
        model = nn::model().display(),
        sha = nn::MODEL_SHA256,
    )
}

/// ORT (if present) and software adapters allowed: every backend this machine has.
fn all_backends(extra: &str) -> String {
    format!(
        "{}\nallow_software_adapters = true\n{extra}",
        nn::ort_line()
    )
}

pub(crate) async fn classify(node: &TestNode, image: &[u8], query: &str) -> (u16, Value) {
    let reply = post(&node.url(&format!("/nn/classify?{query}")), image)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, body)
}

async fn classify_ok(node: &TestNode, image: &[u8], query: &str) -> Value {
    let (status, body) = classify(node, image, query).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub(crate) async fn still_up(node: &TestNode) {
    assert_eq!(get(&node.url("/nn/health")).await.unwrap().status, 200);
}

pub(crate) async fn status_nn(node: &TestNode) -> Value {
    let reply = node.admin("GET", "/v1/status", b"").await.unwrap();
    let status: Value = serde_json::from_slice(&reply.body).unwrap();
    status["nn"].clone()
}

fn backend<'a>(nn: &'a Value, name: &str) -> &'a Value {
    nn["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in {nn}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_serves_the_right_top1_over_http_on_cpu() {
    let node = TestNode::start(&manifest("backends = [\"tract\"]", "", ""))
        .await
        .unwrap();
    let samples = nn::samples();
    for (image, label) in &samples {
        for query in ["target=cpu", "target=gpu&model=ppocr-cls"] {
            let answer = classify_ok(&node, image, query).await;
            assert_eq!(answer["class"], *label, "{query}: {answer}");
            assert_eq!(answer["backend"], "tract", "{answer}");
            assert_eq!(answer["device"], "cpu", "{answer}");
        }
    }
    let served = 2 * samples.len() as u64;
    let nn = status_nn(&node).await;
    assert_eq!(backend(&nn, "tract")["counters"]["served"], served, "{nn}");
    let not_used = backend(&nn, "ort-webgpu");
    assert_eq!(not_used["available"], false);
    // Status says why: no GPU, only a software one (not allowed here), or not configured.
    let why = not_used["detail"].as_str().unwrap();
    assert!(
        ["Vulkan", "software", "disabled by config"]
            .iter()
            .any(|w| why.contains(w)),
        "why ort-webgpu is not used: {not_used}"
    );
    let metrics = get(&node.admin_url("/metrics")).await.unwrap().text();
    let line = format!("spark_nn_inferences_total{{backend=\"tract\",device=\"cpu\"}} {served}");
    assert!(metrics.contains(&line), "{metrics}");
    assert!(metrics.contains("spark_nn_backend_available{backend=\"ort-webgpu\""));
    assert!(metrics.contains("spark_nn_devices{kind=\"npu\"} "));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_wasm_gives_the_same_top1_on_every_backend_present() {
    // The chain's order, so each target's first device serves (measured selection would move
    // the gpu target to the faster CPU: the next test).
    let node = TestNode::start(&manifest(&all_backends("selection = \"chain\""), "", ""))
        .await
        .unwrap();
    for (image, label) in nn::samples() {
        for target in ["cpu", "gpu", "tpu"] {
            let answer = classify_ok(&node, &image, &format!("target={target}")).await;
            assert_eq!(answer["class"], label, "{target}: {answer}");
            if nn::require_accel() {
                let expected = match target {
                    "cpu" => "ort-cpu",
                    _ => "ort-webgpu",
                };
                assert_eq!(answer["backend"], expected, "{target}: {answer}");
            }
        }
    }
    let nn = status_nn(&node).await;
    if nn::require_accel() {
        assert_eq!(backend(&nn, "ort-webgpu")["available"], true, "{nn}");
        assert!(nn["devices"]["vulkan"]["adapters"][0]["name"].is_string());
    } else if backend(&nn, "ort-webgpu")["available"] == false {
        eprintln!(
            "NOTE: the accelerated branch was not tested here: {}",
            backend(&nn, "ort-webgpu")["detail"]
        );
    }
    node.stop().await;
}

/// The node picks the execution tier by measurement: the gpu target's hinted device (here a
/// software Vulkan GPU, far slower than ONNX Runtime's CPU provider on this small model) is
/// measured, then the faster backend serves, and the status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gpu_target_is_served_by_the_backend_measured_fastest() {
    let node = TestNode::start(&manifest(&all_backends(""), "", ""))
        .await
        .unwrap();
    let (image, label) = nn::samples().remove(0);
    let mut served = Vec::new();
    for _ in 0..12 {
        let answer = classify_ok(&node, &image, "target=gpu").await;
        assert_eq!(answer["class"], label, "{answer}");
        served.push(answer["backend"].as_str().unwrap_or_default().to_owned());
    }
    let nn = status_nn(&node).await;
    assert_eq!(nn["selection"], "measured", "{nn}");
    let model = &nn["measured"][0];
    let gpu = model["chosen"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["target"] == "gpu")
        .unwrap_or_else(|| panic!("{nn}"));
    if nn::require_accel() {
        assert_eq!(
            served[0], "ort-webgpu",
            "the hint is measured first: {served:?}"
        );
        let fastest = model["backends"][0]["backend"].as_str().unwrap();
        assert_eq!(
            served.last().map(String::as_str),
            Some(fastest),
            "{served:?}\n{nn}"
        );
        assert_eq!(gpu["backend"], fastest, "{nn}");
        assert_eq!(gpu["why"]["why"], "fastest", "{nn}");
        assert!(
            model["backends"].as_array().unwrap().len() >= 3,
            "every backend of the chain measured: {nn}"
        );
    } else {
        assert_eq!(gpu["backend"], "tract", "{nn}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpu_on_a_node_without_an_npu_is_served_by_the_next_device() {
    let root = tempfile::tempdir().unwrap();
    let extra = format!("device_root = {:?}", root.path().display().to_string());
    let node = TestNode::start(&manifest(&all_backends(&extra), "", ""))
        .await
        .unwrap();
    for (image, label) in nn::samples().into_iter().take(2) {
        let answer = classify_ok(&node, &image, "target=tpu").await;
        assert_eq!(answer["class"], label, "{answer}");
        let skipped = answer["skipped"].as_array().unwrap();
        assert!(
            skipped
                .iter()
                .any(|s| s["backend"] == "ort-npu" && s["error"].as_str().unwrap().contains("NPU")),
            "{answer}"
        );
    }
    still_up(&node).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_npu_whose_backend_fails_falls_through_with_the_same_top1() {
    let root = tempfile::tempdir().unwrap();
    nn::fake_npu_tree(root.path(), "intel_vpu");
    let extra = format!("device_root = {:?}", root.path().display().to_string());
    let node = TestNode::start(&manifest(&all_backends(&extra), "", ""))
        .await
        .unwrap();
    let has_ort = nn::ort_library().is_some();
    for (image, label) in nn::samples().into_iter().take(2) {
        let answer = classify_ok(&node, &image, "target=tpu").await;
        assert_eq!(answer["class"], label, "{answer}");
        assert_ne!(answer["backend"], "ort-npu", "{answer}");
        if has_ort {
            // The first request tries the NPU for real and falls through; later ones are told
            // it failed earlier, still visibly.
            assert_eq!(answer["fallbacks"][0]["backend"], "ort-npu", "{answer}");
        }
    }
    let nn = status_nn(&node).await;
    assert_eq!(nn["devices"]["npus"][0]["driver"], "intel_vpu", "{nn}");
    if has_ort {
        assert!(
            backend(&nn, "ort-npu")["counters"]["failures"]
                .as_u64()
                .unwrap()
                >= 1
        );
        let metrics = get(&node.admin_url("/metrics")).await.unwrap().text();
        assert!(metrics.contains("spark_nn_fallbacks_total 2"), "{metrics}");
    }
    still_up(&node).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_tensors_and_models_are_refused_and_the_node_stays_up() {
    let node = TestNode::start(&manifest(
        "backends = [\"tract\"]",
        "nn_tensor = \"64KiB\"",
        "",
    ))
    .await
    .unwrap();
    let (image, _) = &nn::samples()[0];
    // The input is 1x3x48x192 f32 = 110592 bytes, over the module's 64 KiB.
    let (status, body) = classify(&node, image, "target=cpu").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["host_error"].as_str().unwrap().contains("65536"),
        "{body}"
    );
    still_up(&node).await;
    let nn = status_nn(&node).await;
    assert_eq!(nn["rejected"], 1, "{nn}");
    assert_eq!(backend(&nn, "tract")["counters"]["served"], 0);
    node.stop().await;

    // A module may not pass the 585 KB model as bytes over its 100 KiB limit; by name it may.
    let node = TestNode::start(&manifest(
        "backends = [\"tract\"]",
        "nn_model = \"100KiB\"",
        "",
    ))
    .await
    .unwrap();
    let (status, body) = classify(&node, image, "target=cpu").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("load"),
        "{body}"
    );
    assert!(
        body["host_error"].as_str().unwrap().contains("102400"),
        "{body}"
    );
    classify_ok(&node, image, "target=cpu&model=ppocr-cls").await;
    node.stop().await;
}

fn write(root: &Path, path: &str, text: &str) {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_save_moves_inference_to_cpu_and_back_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let battery = "sys/class/power_supply/BAT0";
    write(root.path(), &format!("{battery}/type"), "Battery\n");
    write(root.path(), &format!("{battery}/capacity"), "12\n");
    write(root.path(), &format!("{battery}/status"), "Discharging\n");
    let head = format!(
        "[orchestrator]\ninterval = \"200ms\"\nprobe_root = {:?}\nbattery_low = 20\n",
        root.path().display().to_string()
    );
    let node = TestNode::start(&manifest(&all_backends(""), "", &head))
        .await
        .unwrap();
    let service = node.node.nn().expect("inference host").clone();
    let cpu_only = || service.policy().preference() == spark_nn::Preference::CpuOnly;
    assert!(eventually(Duration::from_secs(5), cpu_only).await);
    let (image, label) = &nn::samples()[1];
    let answer = classify_ok(&node, image, "target=gpu").await;
    assert_eq!(answer["device"], "cpu", "{answer}");
    assert_eq!(answer["class"], *label);
    if nn::require_accel() {
        let skipped = answer["skipped"].as_array().unwrap();
        assert!(
            skipped.iter().any(|s| s["backend"] == "ort-webgpu"
                && s["error"].as_str().unwrap().contains("CPU only")),
            "{answer}"
        );
    }
    let reply = node.admin("GET", "/v1/orchestrator", b"").await.unwrap();
    assert!(
        reply.text().contains("inference on CPU only"),
        "{}",
        reply.text()
    );

    write(root.path(), &format!("{battery}/status"), "Charging\n");
    assert!(eventually(Duration::from_secs(5), || !cpu_only()).await);
    let answer = classify_ok(&node, image, "target=gpu").await;
    assert_eq!(answer["class"], *label);
    if nn::require_accel() {
        assert_eq!(answer["backend"], "ort-webgpu", "{answer}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_appears_is_discovered_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let extra = format!(
        "device_root = {:?}\nrediscover = \"1s\"",
        root.path().display().to_string()
    );
    let text = manifest(&extra, "", "").replace("rediscover = \"0s\"\n", "");
    let node = TestNode::start(&text).await.unwrap();
    let npus = || {
        node.node
            .nn()
            .unwrap()
            .status()
            .devices
            .npus
            .iter()
            .map(|n| n.driver.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert!(npus().is_empty());
    nn::fake_npu_tree(root.path(), "intel_vpu");
    assert!(
        eventually(Duration::from_secs(5), || npus() == ["intel_vpu"]).await,
        "{:?}",
        npus()
    );
    let (image, label) = &nn::samples()[0];
    let answer = classify_ok(&node, image, "target=tpu").await;
    assert_eq!(answer["class"], *label, "{answer}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_accelerator_sends_new_inferences_to_the_cpu_and_gets_them_back() {
    let root = tempfile::tempdir().unwrap();
    // The probe root is empty, so the node cannot read the machine's memory and would size
    // itself for a small one: three concurrent inferences must fit its memory bound.
    let head = format!(
        "[node]\nmax_memory = \"8GiB\"\n[orchestrator]\ninterval = \"100ms\"\nprobe_root = {:?}\n",
        root.path().display().to_string()
    );
    let node = TestNode::start(&manifest(&all_backends("saturation = 1"), "", &head))
        .await
        .unwrap();
    let nn_status = status_nn(&node).await;
    let webgpu = backend(&nn_status, "ort-webgpu");
    if webgpu["available"] != true {
        assert!(!nn::require_accel(), "SPARK_NN_REQUIRE_ACCEL=1: {webgpu}");
        eprintln!(
            "NOTE: no accelerator here ({}): saturation not tested",
            webgpu["detail"]
        );
        node.stop().await;
        return;
    }
    let url = node.url("/nn/classify?target=gpu");
    let (image, label) = nn::samples()[0].clone();
    let load = |url: String, image: Vec<u8>| async move {
        let mut seen = Vec::new();
        for _ in 0..60 {
            let reply = post(&url, &image).await.unwrap();
            let body: Value = serde_json::from_slice(&reply.body)
                .unwrap_or_else(|e| panic!("{e}: {} {}", reply.status, reply.text()));
            seen.push(body);
        }
        seen
    };
    let clients: Vec<_> = (0..3)
        .map(|_| tokio::spawn(load(url.clone(), image.clone())))
        .collect();
    let mut answers = Vec::new();
    for c in clients {
        answers.extend(c.await.unwrap());
    }
    assert!(answers.iter().all(|a| a["class"] == label));
    let moved = answers.iter().find(|a| {
        a["device"] == "cpu"
            && a["skipped"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["backend"] == "ort-webgpu" && s["error"] == "saturated")
    });
    assert!(
        moved.is_some(),
        "no inference moved to the CPU while saturated"
    );
    assert!(answers.iter().any(|a| a["backend"] == "ort-webgpu"));
    let decisions = node
        .admin("GET", "/v1/orchestrator", b"")
        .await
        .unwrap()
        .text();
    assert!(decisions.contains("ort-webgpu saturated"), "{decisions}");
    assert!(decisions.contains("no longer saturated"), "{decisions}");
    node.stop().await;
}
