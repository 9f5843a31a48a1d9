//! A guest that pushes the inference host's limits through the standard `wasi:nn`, for
//! Spark's tests of them. Every answer is 200 with JSON saying what the host did (a trap, e.g.
//! over the module's handle limit, is the runtime's 500).
//!
//! - `POST .../tensors?count=N&bytes=B[&model=NAME]`: creates `N` u8 tensors of `B` bytes and
//!   keeps them all; answers `{"created":N,"first_refused":i|null,"host_error":..}` (the
//!   first tensor after which `spark:nn/info` reported a refused `tensor.new`, and why).
//!   With `model`, then computes model `NAME` (by name) with the last tensor as input `x` and
//!   adds `"compute":{"code":..,"data":..}` (or `"compute":"ok"`).
//! - `POST .../load?bytes=B`: passes `B` zero bytes to `graph.load` as an ONNX model; answers
//!   `{"load":{"code":..,"data":..}}` (or `"load":"ok"`).
//! - `GET .../health`: 200 `ok`.

use guest_util::wasip2::exports::http::incoming_handler::Guest;
use guest_util::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use serde_json::{Value, json};

wit_bindgen::generate!({ world: "nn-limits", path: "wit", generate_all });
use spark::nn::info;
use wasi::nn::{errors, graph, tensor};

struct NnLimits;

impl Guest for NnLimits {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = guest_util::Request::new(request);
        let body = match (&request.method, request.last_segment()) {
            (Method::Get, "health") => json!("ok"),
            (Method::Post, "tensors") => tensors(&request),
            (Method::Post, "load") => load(request.number("bytes", 0) as usize),
            _ => json!({ "error": "POST .../tensors, POST .../load or GET .../health" }),
        };
        let mut bytes = serde_json::to_vec(&body).expect("serializable");
        bytes.push(b'\n');
        guest_util::respond(out, 200, "application/json", &bytes);
    }
}

fn tensors(request: &guest_util::Request) -> Value {
    let count = request.number("count", 1) as usize;
    let bytes = request.number("bytes", 16) as u32;
    let data = vec![1u8; bytes as usize];
    let mut kept = Vec::with_capacity(count);
    let mut first_refused = None;
    let mut host_error = None;
    for i in 0..count {
        kept.push(tensor::Tensor::new(&[bytes], tensor::TensorType::U8, &data));
        if first_refused.is_none()
            && let Some(o) = info::last_outcome()
            && o.model == "tensor.new"
        {
            first_refused = Some(i);
            host_error = o.error;
        }
    }
    let mut answer = json!({
        "created": kept.len(),
        "first_refused": first_refused,
        "host_error": host_error,
    });
    if let (Some(model), Some(last)) = (request.param("model"), kept.pop()) {
        answer["compute"] = compute(model, last);
    }
    answer
}

fn compute(model: &str, input: tensor::Tensor) -> Value {
    let result = graph::load_by_name(model)
        .and_then(|g| g.init_execution_context())
        .and_then(|c| c.compute(vec![("x".to_string(), input)]));
    match result {
        Ok(_) => json!("ok"),
        Err(e) => describe(e),
    }
}

fn load(bytes: usize) -> Value {
    let model = vec![0u8; bytes];
    match graph::load(&[model], graph::GraphEncoding::Onnx, graph::ExecutionTarget::Cpu) {
        Ok(_) => json!({ "load": "ok" }),
        Err(e) => json!({ "load": describe(e) }),
    }
}

fn describe(e: errors::Error) -> Value {
    json!({ "code": format!("{:?}", e.code()), "data": e.data() })
}

guest_util::wasip2::http::proxy::export!(NnLimits with_types_in guest_util::wasip2);
