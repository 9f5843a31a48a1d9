//! One `.wasm` (the `classify` guest), every backend present, the same answer.

use serde_json::Value;
use spark_nn::harness::Harness;
use spark_nn::{NnLimits, Preference};

use crate::support;

async fn classify(h: &Harness, image: &[u8], query: &str) -> Value {
    let reply = h
        .request("POST", &format!("/classify?{query}"), image.to_vec())
        .await
        .expect("reply");
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON");
    assert_eq!(reply.status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_wasm_classifies_correctly_on_every_backend_present() {
    let service = support::service(support::config());
    let h = Harness::new(
        service.clone(),
        &support::classify_wasm(),
        NnLimits::default(),
    )
    .unwrap();
    let backends = support::available(&service);
    assert!(backends.contains(&spark_nn::TRACT.to_owned()));
    if support::require_accel() {
        for needed in [spark_nn::ORT_WEBGPU, spark_nn::ORT_CPU] {
            assert!(
                backends.iter().any(|b| b == needed),
                "{needed} missing: {:?}",
                service.status().backends
            );
        }
    }
    for backend in &backends {
        service
            .policy()
            .set_preference(Preference::Only(backend.clone()));
        for (image, label) in support::samples() {
            let answer = classify(&h, &image.to_ppm(), "target=gpu").await;
            assert_eq!(answer["backend"], backend.as_str(), "{answer}");
            assert_eq!(answer["class"], label, "{backend}: {answer}");
            assert_eq!(answer["label"], ["0", "180"][label]);
            assert!(answer["score"].as_f64().unwrap() > 0.5, "{answer}");
        }
        eprintln!("{backend}: all samples classified correctly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_is_told_which_device_served_it() {
    let service = support::service(support::config());
    let h = Harness::new(
        service.clone(),
        &support::classify_wasm(),
        NnLimits::default(),
    )
    .unwrap();
    let image = spark_testkit::nn::samples::text_line("TOTAL 42.50 EUR", 3).to_ppm();
    let gpu = classify(&h, &image, "target=gpu").await;
    let cpu = classify(&h, &image, "target=cpu").await;
    assert_eq!(gpu["target"], "gpu");
    assert_eq!(cpu["device"], "cpu", "{cpu}");
    if support::require_accel() {
        assert_eq!(gpu["backend"], spark_nn::ORT_WEBGPU, "{gpu}");
        assert_eq!(gpu["device"], "gpu", "{gpu}");
        assert_eq!(cpu["backend"], spark_nn::ORT_CPU, "{cpu}");
    }
    assert_eq!(gpu["class"], cpu["class"]);
    assert!(gpu["infer_us"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn software_adapters_are_not_accelerators_unless_allowed() {
    let mut config = support::config();
    config.settings.allow_software_adapters = false;
    let service = support::service(config);
    let status = service.status();
    let software = status
        .devices
        .vulkan
        .adapters()
        .iter()
        .any(|a| a.is_software());
    let hardware = status
        .devices
        .vulkan
        .adapters()
        .iter()
        .any(|a| !a.is_software());
    let webgpu = status
        .backends
        .iter()
        .find(|b| b.name == spark_nn::ORT_WEBGPU)
        .unwrap();
    if software && !hardware {
        assert!(!webgpu.available);
        assert!(
            webgpu.detail.contains("unless allowed"),
            "{}",
            webgpu.detail
        );
    }
    assert!(
        !support::require_accel() || software,
        "lavapipe expected: {:?}",
        status.devices.vulkan
    );
    let h = Harness::new(
        service.clone(),
        &support::classify_wasm(),
        NnLimits::default(),
    )
    .unwrap();
    let image = spark_testkit::nn::samples::text_line("Keep upright please", 3).to_ppm();
    let answer = classify(&h, &image, "target=gpu").await;
    assert_eq!(answer["class"], 0);
    if !hardware {
        assert_eq!(answer["device"], "cpu", "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_are_the_guests_400_and_the_node_stays_up() {
    let service = support::service(support::config());
    let h = Harness::new(
        service.clone(),
        &support::classify_wasm(),
        NnLimits::default(),
    )
    .unwrap();
    for body in [
        b"not an image".to_vec(),
        b"P6\n99999 2\n255\n".to_vec(),
        b"\x89PNG\r\n\x1a\nxx".to_vec(),
    ] {
        let reply = h.request("POST", "/classify", body).await.unwrap();
        assert_eq!(
            reply.status,
            400,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let image = spark_testkit::nn::samples::text_line("still up", 3).to_ppm();
    classify(&h, &image, "target=tpu").await;
}
