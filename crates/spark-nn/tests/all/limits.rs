//! The host's limits seen from real guests: a tensor over `nn_tensor` and tensors over the
//! invocation's total are refused at creation (nothing copied, the reason in `spark:nn/info`,
//! wasi-nn's `too-large` at `compute`); models from bytes only when the module allows them;
//! `compute` runs off the async worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use spark_nn::harness::Harness;
use spark_nn::{NnLimits, NnService};

use crate::support;

async fn call(h: &Harness, path: &str, body: Vec<u8>) -> (u16, Value) {
    let reply = h.request("POST", path, body).await.expect("reply");
    let body = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&reply.body)));
    (reply.status, body)
}

fn served(service: &NnService, backend: &str) -> u64 {
    let status = service.status();
    let b = status.backends.iter().find(|b| b.name == backend).unwrap();
    b.counters.served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tensor_over_nn_tensor_is_refused_at_creation_and_never_computed() {
    let service = support::service(support::config());
    let limits = NnLimits {
        max_tensor_bytes: 65536,
        ..NnLimits::default()
    };
    let h = Harness::new(service.clone(), &support::classify_wasm(), limits).unwrap();
    let image = spark_testkit::nn::samples::text_line("far too large", 3).to_ppm();
    let path = format!("/classify?target=cpu&model={}", support::MODEL_NAME);
    let (status, body) = call(&h, &path, image).await;
    // The input is 1x3x48x192 f32 = 110592 bytes.
    assert_eq!(status, 502, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with("compute: ErrorCode::TooLarge"), "{body}");
    let host_error = body["host_error"].as_str().unwrap();
    assert!(
        host_error.contains("refused at creation") && host_error.contains("110592"),
        "{body}"
    );
    assert!(host_error.contains("at most 65536"), "{body}");
    let status = service.status();
    assert_eq!(status.rejected, 1, "counted once, at creation");
    assert_eq!(served(&service, spark_nn::TRACT), 0);
    // The host keeps serving within the limit.
    let small = NnLimits::default();
    let h = Harness::new(service.clone(), &support::classify_wasm(), small).unwrap();
    let image = spark_testkit::nn::samples::text_line("fits", 3).to_ppm();
    let (status, body) = call(&h, &path, image).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_s_tensors_together_stay_within_its_total() {
    let service = support::service(support::config());
    let limits = NnLimits {
        max_tensor_bytes: 4000,
        max_total_tensor_bytes: 10_000,
        ..NnLimits::default()
    };
    let h = Harness::new(service.clone(), &support::nn_limits_wasm(), limits).unwrap();
    let model = support::MODEL_NAME;
    let path = format!("/tensors?count=5&bytes=3000&model={model}");
    let (status, body) = call(&h, &path, Vec::new()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], 5, "{body}");
    // Three tensors hold 9000 bytes; the fourth would bring them to 12000.
    assert_eq!(body["first_refused"], 3, "{body}");
    let host_error = body["host_error"].as_str().unwrap();
    assert!(
        host_error.contains("hold 9000 bytes") && host_error.contains("10000"),
        "{body}"
    );
    assert_eq!(body["compute"]["code"], "ErrorCode::TooLarge", "{body}");
    assert!(
        body["compute"]["data"]
            .as_str()
            .unwrap()
            .contains("refused at creation"),
        "{body}"
    );
    // One over its own limit; a new invocation starts from nothing held.
    let (_, body) = call(&h, "/tensors?count=1&bytes=4001", Vec::new()).await;
    assert_eq!(body["first_refused"], 0, "{body}");
    assert!(
        body["host_error"]
            .as_str()
            .unwrap()
            .contains("at most 4000"),
        "{body}"
    );
    let (_, body) = call(&h, "/tensors?count=3&bytes=3000", Vec::new()).await;
    assert_eq!(body["first_refused"], Value::Null, "{body}");
    assert_eq!(served(&service, spark_nn::TRACT), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_from_bytes_are_refused_unless_the_module_allows_them() {
    let service = support::service(support::config());
    let denied = NnLimits {
        allow_guest_models: false,
        max_model_bytes: 0,
        ..NnLimits::default()
    };
    let h = Harness::new(service.clone(), &support::nn_limits_wasm(), denied).unwrap();
    // 64 MiB of model: refused from its length (the host copies none of it).
    let (_, body) = call(&h, "/load?bytes=67108864", Vec::new()).await;
    assert_eq!(body["load"]["code"], "ErrorCode::Security", "{body}");
    assert!(
        body["load"]["data"].as_str().unwrap().contains("nn_model"),
        "{body}"
    );
    let allowed = NnLimits {
        max_model_bytes: 1000,
        ..NnLimits::default()
    };
    let h = Harness::new(service.clone(), &support::nn_limits_wasm(), allowed).unwrap();
    let (_, body) = call(&h, "/load?bytes=1001", Vec::new()).await;
    assert_eq!(body["load"]["code"], "ErrorCode::TooLarge", "{body}");
    let (_, body) = call(&h, "/load?bytes=100", Vec::new()).await;
    assert_eq!(body["load"]["code"], "ErrorCode::InvalidEncoding", "{body}");
    assert!(service.status().rejected >= 3);
}

/// On a current-thread runtime a compute that blocked its worker would stop every other task
/// for as long as the model runs; here a ticker keeps ticking throughout.
#[tokio::test]
async fn compute_runs_off_the_async_worker() {
    let dir = tempfile::tempdir().unwrap();
    let service = support::service(support::config_with_slow_model(dir.path()));
    let h = Harness::new(
        service.clone(),
        &support::classify_wasm(),
        NnLimits::default(),
    )
    .unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let image = spark_testkit::nn::samples::text_line("slow", 3).to_ppm();
    let started = Instant::now();
    let (status, body) = call(&h, "/classify?target=cpu&model=slow", image).await;
    let took = started.elapsed();
    ticker.abort();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backend"], "tract", "{body}");
    eprintln!("slow model: {took:?} (infer_us {})", body["infer_us"]);
    assert!(took > Duration::from_millis(500), "not slow: {took:?}");
    let expected = took.as_millis() as u64 / 5;
    let ticked = ticks.load(Ordering::Relaxed);
    assert!(
        ticked >= expected / 4,
        "the worker was blocked: {ticked} ticks of 5 ms in {took:?}"
    );
}
