//! The `wasi:nn` host glue: per-invocation state ([`NnInvocation`]) and Spark's router behind
//! the `wasmtime-wasi-nn` crate's traits, which provides the standard bindings.
//!
//! The decision worth knowing: Spark registers exactly one `wasmtime-wasi-nn` backend per
//! invocation, for the ONNX encoding: the router. The guest's `execution-target` becomes the
//! router's chain, and every real backend sits behind it. Graphs loaded by name come from the
//! node's models and are routed as `gpu` (best device first), since `load-by-name` carries no
//! target.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding, WasiNnCtx, WasiNnView};
use wasmtime_wasi_nn::{Backend, ExecutionContext, Graph, GraphRegistry, Registry, Tensor};

use crate::backend::to_backend_error;
use crate::config::NnLimits;
use crate::error::NnError;
use crate::model::Model;
use crate::policy::Target;
use crate::router::{self, Contexts, Outcome};
use crate::service::Inner;

/// Adds `wasi:nn` (the standard WIT, as `wasmtime-wasi-nn` 48 ships it) and `spark:nn/info`
/// to a linker. `nn` gives the wasi-nn view of the store's data, `info` its [`NnInvocation`].
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    nn: fn(&mut T) -> WasiNnView<'_>,
    info: fn(&mut T) -> &mut NnInvocation,
) -> wasmtime::Result<()> {
    wasmtime_wasi_nn::wit::add_to_linker(linker, nn)?;
    crate::info::add_to_linker(linker, info)
}

/// One invocation's inference state; lives in the store's data.
pub struct NnInvocation {
    ctx: WasiNnCtx,
    state: Option<Arc<Invocation>>,
}

/// What the router needs to know about the invocation it serves.
pub(crate) struct Invocation {
    service: Arc<Inner>,
    limits: NnLimits,
    last: Mutex<Option<Outcome>>,
}

impl std::fmt::Debug for NnInvocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NnInvocation")
            .field("enabled", &self.state.is_some())
            .finish()
    }
}

impl NnInvocation {
    pub(crate) fn new(service: Arc<Inner>, module: &str, limits: NnLimits) -> NnInvocation {
        let state = Arc::new(Invocation {
            service: service.clone(),
            limits,
            last: Mutex::new(None),
        });
        let graphs = service
            .models
            .read()
            .expect("models lock")
            .iter()
            .map(|(name, model)| {
                let graph = RoutedGraph {
                    model: model.clone(),
                    target: Target::Gpu,
                    invocation: state.clone(),
                };
                (
                    name.clone(),
                    Graph::from(Box::new(graph) as Box<dyn BackendGraph>),
                )
            })
            .collect();
        tracing::trace!(module, "wasi-nn invocation");
        let backend = Backend::from(RouterBackend {
            invocation: state.clone(),
        });
        NnInvocation {
            ctx: WasiNnCtx::new([backend], Registry::from(ByName(graphs))),
            state: Some(state),
        }
    }

    /// For modules without inference: every `load` fails with "not found"/"no backend".
    pub fn disabled() -> NnInvocation {
        NnInvocation {
            ctx: WasiNnCtx::new([], Registry::from(ByName(HashMap::new()))),
            state: None,
        }
    }

    /// The `wasmtime-wasi-nn` view over this state and the store's resource table.
    pub fn view<'a>(&'a mut self, table: &'a mut ResourceTable) -> WasiNnView<'a> {
        WasiNnView::new(table, &mut self.ctx)
    }

    /// How the last `compute` (or failed `load`) of this invocation went.
    pub fn last_outcome(&self) -> Option<Outcome> {
        self.state
            .as_ref()
            .and_then(|s| s.last.lock().expect("last lock").clone())
    }
}

impl Invocation {
    fn record(&self, outcome: Outcome) {
        *self.last.lock().expect("last lock") = Some(outcome);
    }

    fn record_error(&self, model: &str, target: Target, error: &NnError) {
        self.record(Outcome {
            model: model.to_owned(),
            target,
            backend: None,
            device: None,
            fallbacks: Vec::new(),
            skipped: Vec::new(),
            micros: 0,
            error: Some(error.to_string()),
        });
    }
}

/// Graphs served by name; prepared per invocation so each is bound to it.
struct ByName(HashMap<String, Graph>);

impl GraphRegistry for ByName {
    fn get(&self, name: &str) -> Option<&Graph> {
        self.0.get(name)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Graph> {
        self.0.get_mut(name)
    }
}

/// The one `wasmtime-wasi-nn` backend an invocation sees: checks and routes.
struct RouterBackend {
    invocation: Arc<Invocation>,
}

impl BackendInner for RouterBackend {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Onnx
    }

    fn load(&mut self, builders: &[&[u8]], target: ExecutionTarget) -> Result<Graph, BackendError> {
        let target = Target::from(target);
        let inv = &self.invocation;
        let model = guest_model(inv, builders).inspect_err(|e| {
            inv.record_error("guest", target, e);
            tracing::info!(error = %e, "wasi-nn load refused");
        });
        let graph = RoutedGraph {
            model: model.map_err(to_backend_error)?,
            target,
            invocation: inv.clone(),
        };
        Ok(Graph::from(Box::new(graph) as Box<dyn BackendGraph>))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

/// Checks guest-supplied model bytes against the module's limits, then parses them.
fn guest_model(inv: &Invocation, builders: &[&[u8]]) -> Result<Arc<Model>, NnError> {
    if !inv.limits.allow_guest_models {
        return Err(NnError::Unsupported(
            "this module may not load its own models; use load-by-name".into(),
        ));
    }
    let [bytes] = builders else {
        return Err(NnError::InvalidInput(format!(
            "an ONNX model is one builder; {} given",
            builders.len()
        )));
    };
    if bytes.len() as u64 > inv.limits.max_model_bytes {
        return Err(NnError::TooLarge(format!(
            "model of {} bytes; this module may load at most {}",
            bytes.len(),
            inv.limits.max_model_bytes
        )));
    }
    inv.service.guest_model(bytes)
}

/// A graph as the guest holds it: a shared model, the guest's target, its invocation.
struct RoutedGraph {
    model: Arc<Model>,
    target: Target,
    invocation: Arc<Invocation>,
}

impl BackendGraph for RoutedGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        Ok(ExecutionContext::from(Box::new(RoutedContext {
            model: self.model.clone(),
            target: self.target,
            invocation: self.invocation.clone(),
            contexts: Contexts::new(),
            pending: Vec::new(),
            outputs: Vec::new(),
        })
            as Box<dyn BackendExecutionContext>))
    }
}

struct RoutedContext {
    model: Arc<Model>,
    target: Target,
    invocation: Arc<Invocation>,
    contexts: Contexts,
    /// Inputs set one by one (the witx-style API).
    pending: Vec<NamedTensor>,
    outputs: Vec<NamedTensor>,
}

impl RoutedContext {
    fn run(&mut self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, BackendError> {
        let inv = &self.invocation;
        let (result, outcome) = router::compute(
            &inv.service,
            &self.model,
            self.target,
            inputs,
            &inv.limits,
            &mut self.contexts,
        );
        inv.record(outcome);
        result.map_err(to_backend_error)
    }
}

impl BackendExecutionContext for RoutedContext {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        let name = match id {
            Id::Name(n) => n,
            Id::Index(i) => self
                .model
                .info
                .inputs
                .get(i as usize)
                .map(|s| s.name.clone())
                .ok_or_else(|| to_backend_error(NnError::InvalidInput(format!("no input {i}"))))?,
        };
        self.pending.retain(|t| t.name != name);
        self.pending.push(NamedTensor {
            name,
            tensor: tensor.clone(),
        });
        Ok(())
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        let found = match &id {
            Id::Index(i) => self.outputs.get(*i as usize),
            Id::Name(n) => self.outputs.iter().find(|t| &t.name == n),
        };
        found
            .map(|t| t.tensor.clone())
            .ok_or_else(|| to_backend_error(NnError::InvalidInput(format!("no output {id:?}"))))
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        match inputs {
            Some(inputs) => self.run(inputs).map(Some),
            None => {
                let inputs = std::mem::take(&mut self.pending);
                self.outputs = self.run(inputs)?;
                Ok(None)
            }
        }
    }
}
