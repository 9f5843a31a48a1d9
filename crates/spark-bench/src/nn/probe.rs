//! What `spark nn classify` runs: the `classify` guest asked about one sample line of text,
//! upright or turned over, a number of times, on an inference host started in this process;
//! the answers and the host's status as one JSON document.
//!
//! The decision worth knowing: the probe is a process of its own (the `spark` binary), not a
//! function tests call, because ONNX Runtime binds one library per process and the Vulkan
//! driver is chosen by the environment when it loads: each fallback scenario (`spark-cli`'s
//! `tests/nn_probe.rs`) needs a fresh process with its own environment.

use std::path::PathBuf;

use serde_json::{Value, json};
use spark_nn::harness::Harness;
use spark_nn::{NnError, NnLimits, NnService};
use spark_testkit::nn::samples;

/// What to ask.
#[derive(Debug, Clone)]
pub struct ClassifyOptions {
    /// The `classify` guest.
    pub wasm: PathBuf,
    /// The guest's `target` query parameter (`cpu`, `gpu`, `tpu`).
    pub target: String,
    /// The line of text drawn as the image.
    pub text: String,
    /// Send the line turned 180 degrees.
    pub rotated: bool,
    /// Requests, one after the other, each to a fresh instance.
    pub requests: usize,
}

/// `{"answers": [{"status", "body"}...], "nn": <the host's status>}`.
pub async fn classify(service: NnService, options: &ClassifyOptions) -> Result<Value, NnError> {
    let harness = Harness::new(service.clone(), &options.wasm, NnLimits::default())?;
    let line = samples::text_line(&options.text, 3);
    let image = if options.rotated {
        line.rotated()
    } else {
        line
    };
    let mut answers = Vec::new();
    for _ in 0..options.requests {
        let reply = harness
            .request(
                "POST",
                &format!("/classify?target={}", options.target),
                image.to_ppm(),
            )
            .await?;
        let body: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| NnError::Guest(format!("answer: {e}")))?;
        answers.push(json!({ "status": reply.status, "body": body }));
    }
    Ok(json!({ "answers": answers, "nn": service.status() }))
}
