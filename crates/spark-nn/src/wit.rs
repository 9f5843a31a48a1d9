//! Spark's bindings for the standard `wasi:nn` (`wasi:nn@0.2.0-rc-2024-10-28`, the WIT the
//! `wasmtime-wasi-nn` 48 crate ships, copied to `wit/wasi-nn.wit`): where guest bytes and
//! guest work enter the inference host, and where both are bounded.
//!
//! - `tensor` and `graph` are linked by hand, with the guest's lists taken as `WasmList`s:
//!   the length of a tensor's data, of its dimensions and of a model is known *before* any
//!   byte is copied, so a tensor over `nn_tensor` (or over the invocation's total, below) and
//!   a model over `nn_model` (or any model, when the module may not load its own) are refused
//!   without the host ever copying them. (`wasmtime-wasi-nn`'s generated bindings lift every
//!   `list<u8>` into a `Vec` first: bounded only by the guest's linear memory.) What is
//!   kept is copied on the guest's thread, so the host-memory accounting charges it to the
//!   invocation. Names (`load-by-name`, `compute`'s input names) are still lifted by Wasmtime;
//!   they are small, bounded by the guest's memory, and charged the same way.
//! - `tensor.new` cannot fail in this WIT (a constructor has no error result). A refused
//!   tensor is therefore created *empty*: it holds no bytes, the refusal is recorded at once
//!   (`spark:nn/info`, the `rejected` counter, the log), and `compute` with it fails with
//!   wasi-nn's `too-large` (or `invalid-argument`) and the reason; its `data` traps.
//! - The tensors of one invocation together (created, being computed, and outputs the guest
//!   holds) may hold at most [`crate::NnLimits::max_total_tensor_bytes`]: on a node, half the
//!   module's `limits.host_memory` (but room for one tensor of `nn_tensor`; see
//!   [`crate::total_tensor_bytes`] for why). Outputs over it fail `compute` (`too-large`).
//! - Every graph, context, tensor and error lives in the store's `ResourceTable`, so the
//!   module's `limits.resources` caps them like any other handle (over it, the guest traps
//!   and the runtime reports the resource limit).
//! - `inference` and `errors` come from `bindgen!`, with `compute` async: its work runs on
//!   the inference pool ([`crate::pool`]) and the guest awaits it, so the invocation's
//!   deadline or cancellation ends the wait (the computation finishes in the background).
//!
//! The decision worth knowing: our own bindings rather than `wasmtime-wasi-nn`'s. Its
//! `bindgen!` is synchronous (no `async` import), so `compute` could only run on the guest's
//! Tokio worker: `tokio::task::block_in_place` would free the worker's *other* tasks, but the
//! guest's own future, and with it the Tokio timeout around it, would still not be polled
//! until the model finished (and `block_in_place` panics on a current-thread runtime). The
//! cost is ~400 lines and following the WIT by hand if a new `wasmtime-wasi-nn` changes it.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceType, WasmList, WasmStr};
use wasmtime::{AsContext, StoreContextMut};
use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::backend::NamedTensor;

use crate::error::NnError;
use crate::host::{Held, NnView};
use crate::model::Model;
use crate::policy::Target;
use crate::router::{self, Contexts};

mod bindings {
    wasmtime::component::bindgen!({
        world: "ml",
        path: "wit/wasi-nn.wit",
        with: {
            "wasi:nn/graph.graph": super::GuestGraph,
            "wasi:nn/tensor.tensor": super::GuestTensor,
            "wasi:nn/inference.graph-execution-context": super::GuestContext,
            "wasi:nn/errors.error": super::NnFault,
        },
        imports: {
            "wasi:nn/inference.[method]graph-execution-context.compute": async | trappable,
            default: trappable,
        },
    });
}

use bindings::wasi::nn::errors::{self, ErrorCode};
use bindings::wasi::nn::graph::{ExecutionTarget, GraphEncoding};
use bindings::wasi::nn::inference;
use bindings::wasi::nn::tensor::TensorType;

const TENSOR: &str = "wasi:nn/tensor@0.2.0-rc-2024-10-28";
const GRAPH: &str = "wasi:nn/graph@0.2.0-rc-2024-10-28";

/// A tensor as the guest holds it. `data` is `Err` for a tensor refused at creation.
#[allow(
    unreachable_pub,
    reason = "the generated bindings re-export it (`with`)"
)]
pub struct GuestTensor {
    dimensions: Vec<u32>,
    ty: TensorType,
    data: Result<Vec<u8>, NnError>,
    _held: Option<Held>,
}

/// A loaded model and the guest's target for it.
#[allow(
    unreachable_pub,
    reason = "the generated bindings re-export it (`with`)"
)]
pub struct GuestGraph {
    model: Arc<Model>,
    target: Target,
}

/// An execution context: the backends' contexts for one graph, kept across `compute`s.
#[allow(
    unreachable_pub,
    reason = "the generated bindings re-export it (`with`)"
)]
pub struct GuestContext {
    model: Arc<Model>,
    target: Target,
    contexts: Contexts,
}

/// wasi-nn's `error` resource: a code and the whole message.
#[allow(
    unreachable_pub,
    reason = "the generated bindings re-export it (`with`)"
)]
pub struct NnFault {
    code: ErrorCode,
    message: String,
}

type Answer<R> = wasmtime::Result<Result<Resource<R>, Resource<NnFault>>>;

/// Adds the four `wasi:nn` interfaces.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    add_tensor(linker, view)?;
    add_graph(linker, view)?;
    inference::add_to_linker::<T, HasNn>(linker, view)?;
    errors::add_to_linker::<T, HasNn>(linker, view)?;
    Ok(())
}

struct HasNn;

impl HasData for HasNn {
    type Data<'a> = NnView<'a>;
}

fn add_tensor<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    let mut inst = linker.instance(TENSOR)?;
    inst.resource(
        "tensor",
        ResourceType::host::<GuestTensor>(),
        move |mut store, rep| {
            view(store.data_mut())
                .table
                .delete(Resource::<GuestTensor>::new_own(rep))?;
            Ok(())
        },
    )?;
    inst.func_wrap(
        "[constructor]tensor",
        move |mut store: StoreContextMut<'_, T>,
              (dims, ty, data): (WasmList<u32>, TensorType, WasmList<u8>)| {
            let tensor = new_tensor(&mut store, view, &dims, ty, &data);
            Ok((view(store.data_mut()).table.push(tensor)?,))
        },
    )?;
    inst.func_wrap(
        "[method]tensor.dimensions",
        move |mut store: StoreContextMut<'_, T>, (this,): (Resource<GuestTensor>,)| {
            Ok((view(store.data_mut()).table.get(&this)?.dimensions.clone(),))
        },
    )?;
    inst.func_wrap(
        "[method]tensor.ty",
        move |mut store: StoreContextMut<'_, T>, (this,): (Resource<GuestTensor>,)| {
            Ok((view(store.data_mut()).table.get(&this)?.ty,))
        },
    )?;
    inst.func_wrap(
        "[method]tensor.data",
        move |mut store: StoreContextMut<'_, T>, (this,): (Resource<GuestTensor>,)| match &view(
            store.data_mut(),
        )
        .table
        .get(&this)?
        .data
        {
            Ok(data) => Ok((data.clone(),)),
            Err(refused) => wasmtime::bail!(
                "wasi:nn tensor.data: this tensor was refused at creation and holds no \
                     data ({refused})"
            ),
        },
    )?;
    Ok(())
}

/// `tensor.new`: decided from the lengths; the guest's bytes are copied only when kept.
fn new_tensor<T: 'static>(
    store: &mut StoreContextMut<'_, T>,
    view: fn(&mut T) -> NnView<'_>,
    dims: &WasmList<u32>,
    ty: TensorType,
    data: &WasmList<u8>,
) -> GuestTensor {
    let admitted = view(store.data_mut())
        .nn
        .state()
        .and_then(|inv| inv.admit_tensor(dims.len(), data.len()));
    match admitted {
        Ok(held) => GuestTensor {
            dimensions: dims
                .as_le_slice(store.as_context())
                .iter()
                .map(|d| u32::from_le(*d))
                .collect(),
            ty,
            data: Ok(data.as_le_slice(store.as_context()).to_vec()),
            _held: Some(held),
        },
        Err(error) => {
            if let Ok(inv) = view(store.data_mut()).nn.state() {
                inv.refuse("tensor.new", Target::Cpu, &error);
            }
            GuestTensor {
                dimensions: Vec::new(),
                ty,
                data: Err(error),
                _held: None,
            }
        }
    }
}

fn add_graph<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    let mut inst = linker.instance(GRAPH)?;
    inst.resource(
        "graph",
        ResourceType::host::<GuestGraph>(),
        move |mut store, rep| {
            view(store.data_mut())
                .table
                .delete(Resource::<GuestGraph>::new_own(rep))?;
            Ok(())
        },
    )?;
    inst.func_wrap(
        "[method]graph.init-execution-context",
        move |mut store: StoreContextMut<'_, T>, (this,): (Resource<GuestGraph>,)| {
            let mut v = view(store.data_mut());
            let graph = v.table.get(&this)?;
            let context = GuestContext {
                model: graph.model.clone(),
                target: graph.target,
                contexts: Contexts::new(),
            };
            Ok((v.answer(Ok(context))?,))
        },
    )?;
    inst.func_wrap(
        "load",
        move |mut store: StoreContextMut<'_, T>,
              (builders, encoding, target): (
            WasmList<WasmList<u8>>,
            GraphEncoding,
            ExecutionTarget,
        )| {
            let target = to_target(target);
            let loaded = load(&mut store, view, &builders, encoding)?;
            let mut v = view(store.data_mut());
            if let (Err(e), Ok(inv)) = (&loaded, v.nn.state()) {
                inv.refuse("guest", target, e);
            }
            Ok((v.answer(loaded.map(|model| GuestGraph { model, target }))?,))
        },
    )?;
    inst.func_wrap(
        "load-by-name",
        move |mut store: StoreContextMut<'_, T>, (name,): (WasmStr,)| {
            let name = name.to_str(store.as_context())?.into_owned();
            let mut v = view(store.data_mut());
            let found = v.nn.state().and_then(|inv| inv.named(&name));
            if let (Err(e), Ok(inv)) = (&found, v.nn.state()) {
                inv.refuse("load-by-name", Target::Gpu, e);
            }
            let graph = found.map(|model| GuestGraph {
                model,
                target: Target::Gpu,
            });
            Ok((v.answer(graph)?,))
        },
    )?;
    Ok(())
}

/// `graph.load`: the policy and the size are checked before the model's bytes are read.
fn load<T: 'static>(
    store: &mut StoreContextMut<'_, T>,
    view: fn(&mut T) -> NnView<'_>,
    builders: &WasmList<WasmList<u8>>,
    encoding: GraphEncoding,
) -> wasmtime::Result<Result<Arc<Model>, NnError>> {
    let service = match view(store.data_mut()).nn.state() {
        Ok(inv) => inv.service.clone(),
        Err(e) => return Ok(Err(e)),
    };
    if encoding != GraphEncoding::Onnx {
        return Ok(Err(NnError::model(
            "guest",
            format!("{encoding:?} models: this host runs ONNX models only"),
        )));
    }
    let first = match builders.len() {
        1 => Some(builders.get(&mut *store, 0).expect("one builder")?),
        _ => None,
    };
    let len = first.as_ref().map_or(0, WasmList::len);
    let admitted = match view(store.data_mut()).nn.state() {
        Ok(inv) => inv.admit_model(builders.len(), len),
        Err(e) => Err(e),
    };
    if let Err(e) = admitted {
        return Ok(Err(e));
    }
    let bytes = first
        .expect("admitted: one builder")
        .as_le_slice(store.as_context());
    Ok(service.guest_model(bytes))
}

impl NnView<'_> {
    /// Pushes `value` as a resource, or the error as a wasi-nn `error` resource.
    fn answer<R: Send + 'static>(&mut self, value: Result<R, NnError>) -> Answer<R> {
        match value {
            Ok(value) => Ok(Ok(self.table.push(value)?)),
            Err(e) => Ok(Err(self.fault(&e)?)),
        }
    }

    fn fault(&mut self, e: &NnError) -> wasmtime::Result<Resource<NnFault>> {
        Ok(self.table.push(NnFault {
            code: code(e),
            message: spark_error::chain(e).to_string(),
        })?)
    }
}

/// The wasi-nn error code for one of our errors.
fn code(e: &NnError) -> ErrorCode {
    match e {
        NnError::InvalidInput(_) => ErrorCode::InvalidArgument,
        NnError::TooLarge(_) => ErrorCode::TooLarge,
        NnError::Unsupported(_) => ErrorCode::UnsupportedOperation,
        NnError::Denied(_) => ErrorCode::Security,
        NnError::NotFound(_) => ErrorCode::NotFound,
        NnError::Model { .. } => ErrorCode::InvalidEncoding,
        _ => ErrorCode::RuntimeError,
    }
}

fn to_target(t: ExecutionTarget) -> Target {
    match t {
        ExecutionTarget::Cpu => Target::Cpu,
        ExecutionTarget::Gpu => Target::Gpu,
        ExecutionTarget::Tpu => Target::Tpu,
    }
}

/// The `wasmtime-wasi-nn` element type the backends use.
fn to_backend(ty: TensorType) -> wasmtime_wasi_nn::wit::TensorType {
    use wasmtime_wasi_nn::wit::TensorType as B;
    match ty {
        TensorType::Fp16 => B::Fp16,
        TensorType::Fp32 => B::Fp32,
        TensorType::Fp64 => B::Fp64,
        TensorType::Bf16 => B::Bf16,
        TensorType::U8 => B::U8,
        TensorType::I32 => B::I32,
        TensorType::I64 => B::I64,
    }
}

fn from_backend(ty: wasmtime_wasi_nn::wit::TensorType) -> TensorType {
    use wasmtime_wasi_nn::wit::TensorType as B;
    match ty {
        B::Fp16 => TensorType::Fp16,
        B::Fp32 => TensorType::Fp32,
        B::Fp64 => TensorType::Fp64,
        B::Bf16 => TensorType::Bf16,
        B::U8 => TensorType::U8,
        B::I32 => TensorType::I32,
        B::I64 => TensorType::I64,
    }
}

type Named = (String, Resource<GuestTensor>);

impl inference::Host for NnView<'_> {}

impl inference::HostGraphExecutionContext for NnView<'_> {
    async fn compute(
        &mut self,
        this: Resource<GuestContext>,
        inputs: Vec<Named>,
    ) -> wasmtime::Result<Result<Vec<Named>, Resource<NnFault>>> {
        // The inputs are owned by the call: they leave the guest's table whatever happens.
        let mut tensors = Vec::with_capacity(inputs.len());
        for (name, handle) in inputs {
            tensors.push((name, self.table.delete(handle)?));
        }
        let context = self.table.get_mut(&this)?;
        let (model, target) = (context.model.clone(), context.target);
        let inv = match self.nn.state() {
            Ok(inv) => inv,
            Err(e) => return Ok(Err(self.fault(&e)?)),
        };
        let mut inputs = Vec::with_capacity(tensors.len());
        let mut held = Vec::with_capacity(tensors.len());
        for (name, t) in tensors {
            let data = match t.data {
                Ok(data) => data,
                Err(refused) => {
                    // Refused (and counted) at creation; the guest learns it now.
                    let e = match refused {
                        NnError::TooLarge(reason) => NnError::TooLarge(format!(
                            "input '{name}' was refused at creation: {reason}"
                        )),
                        other => other,
                    };
                    inv.record_error(&model.name, target, &e);
                    return Ok(Err(self.fault(&e)?));
                }
            };
            let tensor = Tensor::new(t.dimensions, to_backend(t.ty), data);
            inputs.push(NamedTensor { name, tensor });
            held.push(t._held);
        }
        let mut contexts = std::mem::take(&mut self.table.get_mut(&this)?.contexts);
        let service = inv.service.clone();
        let limits = inv.limits;
        let job = {
            let service = service.clone();
            move || {
                // The inputs' bytes count against the invocation until the work is done.
                let _held = held;
                let (result, outcome) =
                    router::compute(&service, &model, target, inputs, &limits, &mut contexts);
                (result, outcome, contexts)
            }
        };
        // The guest waits here; its deadline or its cancellation drops this future (the
        // pool then drops the result and counts it).
        let done = service.pool.run(job).await;
        let inv = self.nn.state()?;
        let (result, outcome, contexts) = match done {
            Ok(done) => done,
            Err(e) => {
                inv.record_error("compute", target, &e);
                return Ok(Err(self.fault(&e)?));
            }
        };
        if let Ok(context) = self.table.get_mut(&this) {
            context.contexts = contexts;
        }
        inv.record(outcome);
        let outputs = match result.and_then(|outputs| keep_outputs(inv, outputs)) {
            Ok(outputs) => outputs,
            Err(e) => {
                inv.fail_last(&e);
                return Ok(Err(self.fault(&e)?));
            }
        };
        let mut named = Vec::with_capacity(outputs.len());
        for (name, tensor) in outputs {
            named.push((name, self.table.push(tensor)?));
        }
        Ok(Ok(named))
    }

    fn drop(&mut self, this: Resource<GuestContext>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// The outputs as the guest will hold them: within the invocation's total, and copied on the
/// guest's thread (the pool's allocations are not charged to the invocation; these are).
fn keep_outputs(
    inv: &mut crate::host::Invocation,
    outputs: Vec<NamedTensor>,
) -> Result<Vec<(String, GuestTensor)>, NnError> {
    outputs
        .into_iter()
        .map(|t| {
            let held = inv.reserve(t.tensor.data.len() as u64)?;
            Ok((
                t.name,
                GuestTensor {
                    dimensions: t.tensor.dimensions,
                    ty: from_backend(t.tensor.ty),
                    data: Ok(t.tensor.data.as_slice().to_vec()),
                    _held: Some(held),
                },
            ))
        })
        .collect()
}

impl errors::Host for NnView<'_> {}

impl errors::HostError for NnView<'_> {
    fn code(&mut self, this: Resource<NnFault>) -> wasmtime::Result<ErrorCode> {
        Ok(self.table.get(&this)?.code)
    }

    fn data(&mut self, this: Resource<NnFault>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.message.clone())
    }

    fn drop(&mut self, this: Resource<NnFault>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
