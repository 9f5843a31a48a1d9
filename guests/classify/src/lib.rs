//! Image classification through the standard `wasi:nn`: one `.wasm` that runs on whatever
//! device the host has. The model (PP-OCR's text-orientation classifier, MobileNetV3, 585 KB,
//! from the PyPI package `rapidocr-onnxruntime`, Apache-2.0) is embedded at build time.
//!
//! - `POST .../classify?target=cpu|gpu|tpu[&model=NAME]` with a PNG or a binary PPM (`P6`)
//!   image of a line of text: answers
//!   `{"label":"0"|"180","class":0|1,"score":..,"scores":[..],"target":..,"backend":..,
//!   "device":..,"fallbacks":[{"backend","error"}],"skipped":[..],"infer_us":..,"model":..}`.
//!   `target` is a hint (default `gpu`); `backend`/`device` say what served it (from the
//!   host's `spark:nn/info`). `model=NAME` uses a model the host serves by name instead of the
//!   embedded one. Images up to 4096 x 4096; a bad image is a 400, a failed inference a 502
//!   with the host's whole error.
//! - `GET .../health`: 200 `ok`.
//!
//! Preprocessing is PP-OCR's: resize to height 48 (width by aspect ratio, at most 192),
//! bilinear, BGR channels first, scaled to [-1, 1], right-padded with zeros.

use guest_util::wasip2::exports::http::incoming_handler::Guest;
use guest_util::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use serde_json::{Value, json};

wit_bindgen::generate!({ world: "classify", path: "wit", generate_all });
use spark::nn::info;
use wasi::nn::{errors, graph, inference, tensor};

mod image;

/// The model, embedded by `build.rs` (empty when it was not fetched).
static MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model.onnx"));
const LABELS: [&str; 2] = ["0", "180"];

struct Classify;

impl Guest for Classify {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = guest_util::Request::new(request);
        let (status, body) = match (&request.method, request.last_segment()) {
            (Method::Get, "health") => (200, json!("ok")),
            (Method::Post, "classify") => classify(&request),
            _ => (
                404,
                json!({ "error": "POST .../classify or GET .../health" }),
            ),
        };
        let mut bytes = serde_json::to_vec(&body).expect("serializable");
        bytes.push(b'\n');
        guest_util::respond(out, status, "application/json", &bytes);
    }
}

fn classify(request: &guest_util::Request) -> (u16, Value) {
    let target = match request.param("target").unwrap_or("gpu") {
        "cpu" => graph::ExecutionTarget::Cpu,
        "gpu" => graph::ExecutionTarget::Gpu,
        "tpu" => graph::ExecutionTarget::Tpu,
        other => return (400, json!({ "error": format!("unknown target '{other}'") })),
    };
    let image = match image::decode(&request.body()) {
        Ok(image) => image,
        Err(e) => return (400, json!({ "error": e })),
    };
    let input = image::preprocess(&image);
    match infer(request.param("model"), target, &input) {
        Ok(scores) => {
            let (class, score) = scores
                .iter()
                .copied()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, 0.0));
            let mut answer = json!({
                "label": LABELS.get(class).copied().unwrap_or("?"),
                "class": class,
                "score": score,
                "scores": scores,
            });
            merge(&mut answer, outcome());
            (200, answer)
        }
        Err(e) => {
            let mut answer = json!({ "error": e });
            merge(&mut answer, outcome());
            (502, answer)
        }
    }
}

/// Loads the model, runs one input, returns the scores of the first output.
fn infer(
    model: Option<&str>,
    target: graph::ExecutionTarget,
    input: &[f32],
) -> Result<Vec<f32>, String> {
    let graph = match model {
        Some(name) => graph::load_by_name(name),
        None if MODEL.is_empty() => {
            return Err("built without an embedded model; pass ?model=NAME".into());
        }
        None => graph::load(&[MODEL.to_vec()], graph::GraphEncoding::Onnx, target),
    }
    .map_err(|e| describe("load", e))?;
    let context = graph
        .init_execution_context()
        .map_err(|e| describe("init", e))?;
    let data: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensor = tensor::Tensor::new(&image::SHAPE.to_vec(), tensor::TensorType::Fp32, &data);
    let outputs: Vec<inference::NamedTensor> = context
        .compute(vec![("x".to_string(), tensor)])
        .map_err(|e| describe("compute", e))?;
    let (_, output) = outputs
        .into_iter()
        .next()
        .ok_or("the model returned no output")?;
    if output.ty() != tensor::TensorType::Fp32 {
        return Err(format!("output is {:?}, expected FP32", output.ty()));
    }
    Ok(output
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn describe(step: &str, e: errors::Error) -> String {
    format!("{step}: {:?}: {}", e.code(), e.data())
}

/// What the host says about the last inference (`spark:nn/info`).
fn outcome() -> Value {
    let Some(o) = info::last_outcome() else {
        return json!({});
    };
    let attempts = |list: Vec<info::Attempt>| -> Vec<Value> {
        list.into_iter()
            .map(|a| json!({ "backend": a.backend, "error": a.error }))
            .collect()
    };
    json!({
        "model": o.model,
        "target": o.target,
        "backend": o.backend,
        "device": o.device,
        "fallbacks": attempts(o.fallbacks),
        "skipped": attempts(o.skipped),
        "infer_us": o.micros,
        "host_error": o.error,
    })
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

guest_util::wasip2::http::proxy::export!(Classify with_types_in guest_util::wasip2);
