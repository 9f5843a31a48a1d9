//! The pure-Rust CPU backend (`tract-onnx`): always present, the end of every chain.
//!
//! The decision worth knowing: the model is optimised once per shape of input it meets. The
//! batch dimension of most ONNX models is free; tract optimises far better with concrete
//! shapes, and a node sees few distinct shapes, so plans are cached by input shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding};
use wasmtime_wasi_nn::{ExecutionContext, Graph, Tensor};

use crate::backend::{find_output, set_named_input, to_backend_error};
use crate::error::NnError;
use crate::tensor::ElemType;

const NAME: &str = crate::config::TRACT;

type Plan = Arc<TypedRunnableModel>;

/// `tract-onnx` behind the `wasmtime-wasi-nn` backend traits.
#[derive(Default)]
pub struct TractBackend;

impl BackendInner for TractBackend {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Onnx
    }

    fn load(
        &mut self,
        builders: &[&[u8]],
        _target: ExecutionTarget,
    ) -> Result<Graph, BackendError> {
        let [bytes] = builders else {
            return Err(BackendError::InvalidNumberOfBuilders(1, builders.len()));
        };
        let model = tract_onnx::onnx()
            .model_for_read(&mut &**bytes)
            .map_err(|e| to_backend_error(step("parse")(e)))?;
        let inputs = model.input_outlets().map(|o| o.len()).unwrap_or(0);
        let names = (0..inputs)
            .map(|i| {
                let outlet = model.input_outlets().expect("inputs")[i];
                model.node(outlet.node).name.clone()
            })
            .collect();
        let graph = TractGraph(Arc::new(Shared {
            model,
            input_names: names,
            plans: Mutex::new(HashMap::new()),
        }));
        Ok(Graph::from(Box::new(graph) as Box<dyn BackendGraph>))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

fn fail(reason: impl Into<spark_error::BoxError>) -> NnError {
    NnError::backend(NAME, reason)
}

/// For `map_err`: tract failed at `what` because of the error given (kept as the cause).
fn step<E: Into<spark_error::BoxError>>(what: &str) -> impl FnOnce(E) -> NnError + '_ {
    move |e| NnError::backend_step(NAME, what, e)
}

struct TractGraph(Arc<Shared>);

/// What every execution context of one graph shares: the parsed model and its plans.
struct Shared {
    model: InferenceModel,
    input_names: Vec<String>,
    plans: Mutex<HashMap<Vec<Vec<usize>>, Plan>>,
}

impl Shared {
    /// The optimised plan for inputs of these shapes (built on first use).
    fn plan(&self, inputs: &[(usize, Tensor)]) -> Result<Plan, NnError> {
        let shapes: Vec<Vec<usize>> = inputs
            .iter()
            .map(|(_, t)| t.dimensions.iter().map(|&d| d as usize).collect())
            .collect();
        if let Some(plan) = self.plans.lock().expect("plans").get(&shapes) {
            return Ok(plan.clone());
        }
        let mut model = self.model.clone();
        for ((index, tensor), shape) in inputs.iter().zip(&shapes) {
            let dt = datum(ElemType::from_wit(tensor.ty))?;
            model = model
                .with_input_fact(*index, InferenceFact::dt_shape(dt, shape.as_slice()))
                .map_err(step("input fact"))?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(step("optimise"))?;
        let mut plans = self.plans.lock().expect("plans");
        if plans.len() >= 16 {
            plans.clear();
        }
        plans.insert(shapes, plan.clone());
        Ok(plan)
    }
}

impl BackendGraph for TractGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        Ok(ExecutionContext::from(Box::new(TractContext {
            graph: self.0.clone(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        })
            as Box<dyn BackendExecutionContext>))
    }
}

struct TractContext {
    graph: Arc<Shared>,
    inputs: Vec<NamedTensor>,
    outputs: Vec<NamedTensor>,
}

impl TractContext {
    fn run(&mut self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, NnError> {
        let mut ordered = Vec::with_capacity(self.graph.input_names.len());
        for (index, name) in self.graph.input_names.iter().enumerate() {
            let tensor = inputs
                .iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| fail(format!("missing input '{name}'")))?;
            ordered.push((index, tensor.tensor.clone()));
        }
        let plan = self.graph.plan(&ordered)?;
        let values: TVec<TValue> = ordered
            .iter()
            .map(|(_, t)| to_tract(t).map(|t| t.into_tvalue()))
            .collect::<Result<_, _>>()?;
        let outputs = plan.run(values).map_err(step("run"))?;
        let model = plan.model();
        outputs
            .into_iter()
            .zip(model.output_outlets().map_err(fail)?.iter())
            .map(|(value, outlet)| {
                let name = model
                    .outlet_label(*outlet)
                    .map(str::to_owned)
                    .unwrap_or_else(|| model.node(outlet.node).name.clone());
                Ok(NamedTensor {
                    name,
                    tensor: from_tract(&value)?,
                })
            })
            .collect()
    }
}

impl BackendExecutionContext for TractContext {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        let name = match id {
            Id::Name(n) => n,
            Id::Index(i) => self
                .graph
                .input_names
                .get(i as usize)
                .cloned()
                .ok_or_else(|| to_backend_error(fail(format!("no input {i}"))))?,
        };
        set_named_input(&mut self.inputs, name, tensor);
        Ok(())
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        find_output(&self.outputs, &id)
            .ok_or_else(|| to_backend_error(fail(format!("no output {id:?}"))))
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        match inputs {
            Some(inputs) => self.run(inputs).map(Some).map_err(to_backend_error),
            None => {
                let inputs = std::mem::take(&mut self.inputs);
                self.outputs = self.run(inputs).map_err(to_backend_error)?;
                Ok(None)
            }
        }
    }
}

fn datum(ty: ElemType) -> Result<DatumType, NnError> {
    Ok(match ty {
        ElemType::F32 => f32::datum_type(),
        ElemType::F64 => f64::datum_type(),
        ElemType::U8 => u8::datum_type(),
        ElemType::I32 => i32::datum_type(),
        ElemType::I64 => i64::datum_type(),
        other => return Err(fail(format!("element type {other:?} not supported"))),
    })
}

fn to_tract(t: &Tensor) -> Result<tract_onnx::prelude::Tensor, NnError> {
    let shape: Vec<usize> = t.dimensions.iter().map(|&d| d as usize).collect();
    let d = &t.data;
    let made = match ElemType::from_wit(t.ty) {
        ElemType::F32 => {
            tract_onnx::prelude::Tensor::from_shape(&shape, &le::<4, f32>(d, f32::from_le_bytes))
        }
        ElemType::F64 => {
            tract_onnx::prelude::Tensor::from_shape(&shape, &le::<8, f64>(d, f64::from_le_bytes))
        }
        ElemType::I32 => {
            tract_onnx::prelude::Tensor::from_shape(&shape, &le::<4, i32>(d, i32::from_le_bytes))
        }
        ElemType::I64 => {
            tract_onnx::prelude::Tensor::from_shape(&shape, &le::<8, i64>(d, i64::from_le_bytes))
        }
        ElemType::U8 => tract_onnx::prelude::Tensor::from_shape(&shape, d.as_slice()),
        other => return Err(fail(format!("element type {other:?} not supported"))),
    };
    made.map_err(step("input tensor"))
}

fn le<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunk of N")))
        .collect()
}

fn from_tract(value: &TValue) -> Result<Tensor, NnError> {
    let ty = match value.datum_type() {
        DatumType::F32 => ElemType::F32,
        DatumType::F64 => ElemType::F64,
        DatumType::U8 => ElemType::U8,
        DatumType::I32 => ElemType::I32,
        DatumType::I64 => ElemType::I64,
        other => return Err(fail(format!("output type {other:?} cannot be returned"))),
    };
    let dims = value
        .shape()
        .iter()
        .map(|&d| u32::try_from(d).map_err(|_| fail("output dimension over u32")))
        .collect::<Result<_, _>>()?;
    Ok(Tensor::new(dims, ty.to_wit(), value.as_bytes().to_vec()))
}
