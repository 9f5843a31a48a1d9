//! A model as the host knows it before any backend does: its bytes, digest and signature.
//!
//! The decision worth knowing: the signature (input names, element types, fixed and free
//! dimensions) is read from the ONNX protobuf by Spark itself, once, when the model is loaded.
//! Guest tensors are checked against it ([`crate::tensor::validate`]) before any backend sees
//! them, so a backend never has to be trusted to reject a malformed input safely.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

use crate::error::NnError;
use crate::policy::Target;
use crate::selection::{Choice, Measured};
use crate::tensor::ElemType;

/// One input or output of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The name in the ONNX graph.
    pub name: String,
    /// `None` when the model does not say, or uses a type wasi-nn cannot carry.
    pub ty: Option<ElemType>,
    /// `None` for a free (symbolic or unknown) dimension.
    pub dims: Vec<Option<u64>>,
}

/// A model's inputs and outputs, in graph order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// What the caller must feed (initializers excluded), in graph order.
    pub inputs: Vec<TensorSpec>,
    /// What the model produces, in graph order.
    pub outputs: Vec<TensorSpec>,
}

/// A model ready to be compiled by any backend: shared by every invocation that uses it.
pub(crate) struct Model {
    pub name: String,
    pub sha256: String,
    pub bytes: Arc<[u8]>,
    pub info: ModelInfo,
    /// Per backend: the compiled graph, or why compiling failed (and when).
    pub compiled: Mutex<HashMap<Arc<str>, Compiled>>,
    /// Per backend: how fast it has served this model.
    pub measured: Mutex<HashMap<String, Measured>>,
    /// Per target: who served it last and why it went first.
    pub chosen: Mutex<HashMap<Target, (String, Choice)>>,
}

pub(crate) enum Compiled {
    Ready(wasmtime_wasi_nn::Graph),
    Failed { reason: String, at: Instant },
}

impl Model {
    /// Reads the signature; refuses bytes that are not an ONNX model with a graph.
    pub(crate) fn new(name: &str, bytes: Arc<[u8]>) -> Result<Model, NnError> {
        let info = parse_signature(name, &bytes)?;
        Ok(Model {
            name: name.to_owned(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes,
            info,
            compiled: Mutex::new(HashMap::new()),
            measured: Mutex::new(HashMap::new()),
            chosen: Mutex::new(HashMap::new()),
        })
    }

    /// Forgets what a backend compiled (after a panic its state is not trusted), and how
    /// fast it was.
    pub(crate) fn forget(&self, backend: &str) {
        self.compiled.lock().expect("compiled lock").remove(backend);
        self.measured.lock().expect("measured lock").remove(backend);
    }

    /// Records one inference `backend` served for `target` in `micros` (`compiled`: this call
    /// also compiled the model), and why it went first.
    pub(crate) fn served(
        &self,
        target: Target,
        backend: &str,
        micros: u64,
        compiled: bool,
        choice: Choice,
    ) {
        let now = Instant::now();
        let mut measured = self.measured.lock().expect("measured lock");
        let next = Measured::record(measured.get_mut(backend), micros, compiled, now);
        measured.insert(backend.to_owned(), next);
        drop(measured);
        self.chosen
            .lock()
            .expect("chosen lock")
            .insert(target, (backend.to_owned(), choice));
    }
}

fn parse_signature(name: &str, bytes: &[u8]) -> Result<ModelInfo, NnError> {
    let bad = |reason: String| NnError::model(name, reason);
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &*bytes)
        .map_err(|e| NnError::model(name, spark_error::context("not an ONNX model", e)))?;
    let graph = proto
        .graph
        .ok_or_else(|| bad("the model has no graph".into()))?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<TensorSpec> = graph
        .input
        .iter()
        .filter(|v| !initializers.contains(v.name.as_str()))
        .map(spec)
        .collect();
    if inputs.is_empty() {
        return Err(bad("the model has no inputs".into()));
    }
    if graph.output.is_empty() {
        return Err(bad("the model has no outputs".into()));
    }
    Ok(ModelInfo {
        inputs,
        outputs: graph.output.iter().map(spec).collect(),
    })
}

fn spec(value: &pb::ValueInfoProto) -> TensorSpec {
    let tensor = value
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .map(|pb::type_proto::Value::TensorType(t)| t);
    let ty = tensor.and_then(|t| ElemType::from_onnx(t.elem_type));
    let dims = tensor
        .and_then(|t| t.shape.as_ref())
        .map(|shape| {
            shape
                .dim
                .iter()
                .map(|d| match d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => {
                        Some(v as u64)
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    TensorSpec {
        name: value.name.clone(),
        ty,
        dims,
    }
}
