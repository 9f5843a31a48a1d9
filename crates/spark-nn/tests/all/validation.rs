//! Guest input is untrusted: shapes, lengths and sizes are checked before any backend.

use spark_nn::{NamedTensor, NnError, NnLimits, Target, Tensor};
use wasmtime_wasi_nn::wit::TensorType;

use crate::support;

fn tensor(dims: Vec<u32>, len: usize) -> Vec<NamedTensor> {
    vec![NamedTensor {
        name: "x".into(),
        tensor: Tensor::new(dims, TensorType::Fp32, vec![0; len]),
    }]
}

#[test]
fn malformed_tensors_are_refused_before_any_backend() {
    let service = support::service(support::config());
    let cases = [
        tensor(vec![1, 3, 48, 192], 100),
        tensor(vec![1, 4, 48, 192], 4 * 4 * 48 * 192),
        tensor(vec![1, 3, 48], 4 * 3 * 48),
        tensor(vec![0, 3, 48, 192], 0),
        tensor(vec![u32::MAX, u32::MAX, 48, 192], 16),
    ];
    for inputs in cases {
        let err = service
            .infer(support::MODEL_NAME, Target::Gpu, inputs)
            .expect_err("refused");
        assert!(matches!(err, NnError::InvalidInput(_)), "{err}");
    }
    let status = service.status();
    assert_eq!(status.rejected, 5);
    for b in &status.backends {
        assert_eq!(
            b.counters.served + b.counters.failures,
            0,
            "{} saw input",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_model_over_the_module_limit_is_refused() {
    let service = support::service(support::config());
    let limits = NnLimits {
        max_model_bytes: 100_000,
        ..NnLimits::default()
    };
    let h = spark_nn::harness::Harness::new(service.clone(), &support::classify_wasm(), limits)
        .expect("guest");
    let image = spark_testkit::nn::samples::text_line("limits", 3).to_ppm();
    let reply = h
        .request("POST", "/classify?target=cpu", image)
        .await
        .expect("reply");
    let body = String::from_utf8_lossy(&reply.body);
    assert_eq!(reply.status, 502, "{body}");
    assert!(
        body.contains("too large") && body.contains("100000"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_without_guest_models_can_still_load_by_name() {
    let service = support::service(support::config());
    let limits = NnLimits {
        allow_guest_models: false,
        ..NnLimits::default()
    };
    let h = spark_nn::harness::Harness::new(service.clone(), &support::classify_wasm(), limits)
        .expect("guest");
    let image = spark_testkit::nn::samples::text_line("by name", 3).to_ppm();
    let own = h
        .request("POST", "/classify?target=cpu", image.clone())
        .await
        .expect("reply");
    assert_eq!(own.status, 502);
    assert!(String::from_utf8_lossy(&own.body).contains("may not load its own models"));
    assert!(String::from_utf8_lossy(&own.body).contains("load: ErrorCode::Security"));
    let named = h
        .request(
            "POST",
            &format!("/classify?model={}", support::MODEL_NAME),
            image,
        )
        .await
        .expect("reply");
    assert_eq!(
        named.status,
        200,
        "{}",
        String::from_utf8_lossy(&named.body)
    );
}

#[test]
fn a_model_file_with_the_wrong_digest_is_refused() {
    let mut config = support::config();
    config.settings.models[0].sha256 = Some("00".repeat(32));
    let err = spark_nn::NnService::start(config).expect_err("refused");
    let shown = spark_error::chain(&err).to_string();
    assert!(shown.contains("SHA-256"), "{shown}");
}

#[test]
fn garbage_is_not_a_model() {
    let service = support::service(support::config());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.onnx");
    std::fs::write(&path, b"\x08\x07 not a protobuf at all \xff\xff\xff").unwrap();
    let mut config = support::config();
    config.settings.models.push(spark_nn::NnModel {
        name: "junk".into(),
        path,
        sha256: None,
    });
    let err = spark_nn::NnService::start(config).expect_err("refused");
    assert!(matches!(err, NnError::Model { .. }), "{err}");
    drop(service);
}
