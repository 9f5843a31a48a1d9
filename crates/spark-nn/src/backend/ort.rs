//! ONNX Runtime, loaded at run time from the library the node is configured with (`ort` with
//! `load-dynamic`), with one execution provider per engine: CPU, WebGPU, or an NPU's.
//!
//! The decision worth knowing: accelerated providers are registered with `error_on_failure`
//! and the session is created with `session.disable_cpu_ep_fallback = 1`, so a provider that
//! cannot run the model makes session creation fail with ONNX Runtime's own message: the router
//! sees an error and falls through, instead of ONNX Runtime quietly running the model on its
//! CPU provider while the node reports a GPU.
//!
//! ONNX Runtime can be bound to one library per process ([`bind`]); a second, different path is
//! refused rather than silently ignored. Session creation is serialised process-wide, and so is
//! every run on the WebGPU provider: creating WebGPU sessions from two threads at once crashed
//! ONNX Runtime 1.30 here (SIGSEGV inside `CreateSession`), and one GPU queue serialises the work
//! anyway.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, ValueType};
use serde::{Deserialize, Serialize};
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding};
use wasmtime_wasi_nn::{ExecutionContext, Graph, Tensor};

use crate::backend::{find_output, guarded, set_named_input, to_backend_error};
use crate::error::NnError;
use crate::tensor::ElemType;

/// The ONNX Runtime library this process is bound to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrtInfo {
    /// The shared library loaded.
    pub path: PathBuf,
    /// ONNX Runtime's build string (version, commit).
    pub build: String,
    /// Execution providers compiled into this library (of those Spark can use).
    pub providers: Vec<String>,
}

struct Bound {
    info: OrtInfo,
    env: ort::environment::Environment,
}

static BOUND: OnceLock<Mutex<Option<Arc<Bound>>>> = OnceLock::new();

/// Held while a session is created (any provider) or run on a device shared process-wide.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why this node uses no ONNX Runtime (shown by `spark status`, with its causes).
#[derive(Debug, Clone, thiserror::Error)]
pub enum OrtUnavailable {
    /// No `ort-*` backend is in the config's `backends`.
    #[error("ONNX Runtime disabled by config")]
    Disabled,
    /// An `ort-*` backend is enabled but the config sets no `ort_library`.
    #[error("no ONNX Runtime library configured")]
    NotConfigured,
    /// No file at the configured library path.
    #[error("no ONNX Runtime library at {}", path.display())]
    NoLibrary {
        /// The configured `ort_library`.
        path: PathBuf,
    },
    /// The process already loaded ONNX Runtime from another path (it cannot be unloaded).
    #[error(
        "this process already uses ONNX Runtime from {}; cannot also load {}",
        bound.display(),
        wanted.display()
    )]
    AlreadyBound {
        /// The library in use.
        bound: PathBuf,
        /// The library the config asked for.
        wanted: PathBuf,
    },
    /// The library is there but would not load (the source is ONNX Runtime's error, or the
    /// panic caught while loading).
    #[error("cannot load ONNX Runtime from {}", path.display())]
    Load {
        /// The library that would not load.
        path: PathBuf,
        /// ONNX Runtime's error, or the panic caught.
        #[source]
        source: Arc<NnError>,
    },
}

/// Loads ONNX Runtime from `path` (once per process), or says why it cannot be used.
pub fn bind(path: &Path) -> Result<OrtInfo, OrtUnavailable> {
    bound(path).map(|b| b.info.clone())
}

fn bound(path: &Path) -> Result<Arc<Bound>, OrtUnavailable> {
    let cell = BOUND.get_or_init(|| Mutex::new(None));
    let mut slot = cell.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = slot.as_ref() {
        if b.info.path == path {
            return Ok(b.clone());
        }
        return Err(OrtUnavailable::AlreadyBound {
            bound: b.info.path.clone(),
            wanted: path.to_path_buf(),
        });
    }
    if !path.is_file() {
        return Err(OrtUnavailable::NoLibrary {
            path: path.to_path_buf(),
        });
    }
    let made = guarded("onnxruntime", || {
        let env = ort::init_from(path)
            .map_err(|e| NnError::backend("onnxruntime", e))?
            .with_name("spark")
            .with_telemetry(false)
            .build()
            .map_err(|e| NnError::backend("onnxruntime", e))?;
        let mut providers = Vec::new();
        let mut probe = |name: &str, available: ort::Result<bool>| {
            if available.unwrap_or(false) {
                providers.push(name.to_owned());
            }
        };
        probe("cpu", <ep::CPU as ExecutionProvider>::is_available());
        probe("webgpu", <ep::WebGPU as ExecutionProvider>::is_available());
        probe(
            "openvino",
            <ep::OpenVINO as ExecutionProvider>::is_available(),
        );
        probe("vitis-ai", <ep::Vitis as ExecutionProvider>::is_available());
        Ok(Bound {
            info: OrtInfo {
                path: path.to_path_buf(),
                build: ort::info().to_owned(),
                providers,
            },
            env,
        })
    });
    match made {
        Ok(b) => {
            tracing::info!(path = %path.display(), build = %b.info.build, providers = ?b.info.providers, "ONNX Runtime loaded");
            let b = Arc::new(b);
            *slot = Some(b.clone());
            Ok(b)
        }
        Err(e) => Err(OrtUnavailable::Load {
            path: path.to_path_buf(),
            source: Arc::new(e),
        }),
    }
}

/// Which execution provider an engine registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// The CPU execution provider (ONNX Runtime's default; nothing to register).
    Cpu,
    /// The WebGPU execution provider on Dawn's Vulkan backend; its runs are serialised
    /// process-wide.
    WebGpu,
    /// OpenVINO on an Intel NPU (`intel_vpu`).
    OpenVinoNpu,
    /// Vitis AI on an AMD NPU (`amdxdna`).
    VitisAi,
}

impl Provider {
    /// The provider for an NPU bound to `driver`, if Spark knows one.
    pub fn for_npu_driver(driver: &str) -> Option<Provider> {
        match driver {
            "intel_vpu" => Some(Provider::OpenVinoNpu),
            "amdxdna" => Some(Provider::VitisAi),
            _ => None,
        }
    }

    fn dispatch(&self) -> Option<ExecutionProviderDispatch> {
        match self {
            Provider::Cpu => None,
            Provider::WebGpu => Some(
                ep::WebGPU::default()
                    .with_dawn_backend_type(ep::webgpu::DawnBackendType::Vulkan)
                    .build(),
            ),
            Provider::OpenVinoNpu => Some(ep::OpenVINO::default().with_device_type("NPU").build()),
            Provider::VitisAi => Some(ep::Vitis::default().build()),
        }
    }
}

/// ONNX Runtime with one provider, behind the `wasmtime-wasi-nn` backend traits.
pub struct OrtBackend {
    name: String,
    path: PathBuf,
    provider: Provider,
    threads: usize,
}

impl OrtBackend {
    /// ONNX Runtime from `path` with `provider`, `threads` intra-op threads per inference (at
    /// least 1). Nothing is loaded until it first compiles a model.
    pub fn new(name: &str, path: &Path, provider: Provider, threads: usize) -> OrtBackend {
        OrtBackend {
            name: name.to_owned(),
            path: path.to_path_buf(),
            provider,
            threads: threads.max(1),
        }
    }

    fn session(&self, bytes: &[u8]) -> Result<Session, NnError> {
        let bound = bound(&self.path).map_err(|e| NnError::backend(&self.name, e))?;
        let mut builder = Session::builder(&bound.env)
            .map_err(step(&self.name, "session builder"))?
            .with_intra_threads(self.threads)
            .map_err(step(&self.name, "threads"))?;
        if let Some(provider) = self.provider.dispatch() {
            builder = builder
                .with_execution_providers([provider.error_on_failure()])
                .map_err(step(&self.name, "execution provider"))?
                .with_config_entry("session.disable_cpu_ep_fallback", "1")
                .map_err(step(&self.name, "config"))?;
        }
        let _one_at_a_time = exclusive();
        builder
            .commit_from_memory(bytes)
            .map_err(step(&self.name, "session"))
    }
}

/// For `map_err`: `backend` failed at `what` because of ONNX Runtime's error (a session
/// builder's error gives its builder back; only the error is kept).
fn step<'a, E: Into<ort::Error>>(
    backend: &'a str,
    what: &'a str,
) -> impl FnOnce(E) -> NnError + 'a {
    move |e| NnError::backend_step(backend, what, e.into())
}

impl BackendInner for OrtBackend {
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
        let session = self.session(bytes).map_err(to_backend_error)?;
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            exclusive: self.provider == Provider::WebGpu,
            session: Mutex::new(Some(session)),
            outputs,
        });
        Ok(Graph::from(
            Box::new(OrtGraph(shared)) as Box<dyn BackendGraph>
        ))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

struct Shared {
    name: String,
    /// Runs take the process-wide lock (a device shared by every session).
    exclusive: bool,
    /// `None` only while being dropped.
    session: Mutex<Option<Session>>,
    outputs: Vec<String>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Releasing a WebGPU session frees device buffers: not while another session runs.
        let session = self
            .session
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let _device = self.exclusive.then(exclusive);
        drop(session);
    }
}

struct OrtGraph(Arc<Shared>);

impl BackendGraph for OrtGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        Ok(ExecutionContext::from(Box::new(OrtContext {
            shared: self.0.clone(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        })
            as Box<dyn BackendExecutionContext>))
    }
}

struct OrtContext {
    shared: Arc<Shared>,
    inputs: Vec<NamedTensor>,
    outputs: Vec<NamedTensor>,
}

impl OrtContext {
    fn fail(&self, reason: impl Into<spark_error::BoxError>) -> NnError {
        NnError::backend(&self.shared.name, reason)
    }

    fn failed_step(&self, step: &str, cause: ort::Error) -> NnError {
        NnError::backend_step(&self.shared.name, step, cause)
    }

    fn run(&mut self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, NnError> {
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
        for input in inputs {
            let value = to_ort(&input.tensor).map_err(|e| self.failed_step("input", e))?;
            values.push((Cow::Owned(input.name), value));
        }
        let _device = self.shared.exclusive.then(exclusive);
        let mut session = self
            .shared
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let session = session
            .as_mut()
            .ok_or_else(|| self.fail("session released"))?;
        let outputs = session
            .run(values)
            .map_err(|e| self.failed_step("run", e))?;
        self.shared
            .outputs
            .iter()
            .map(|name| {
                let value = outputs
                    .get(name)
                    .ok_or_else(|| self.fail(format!("no output '{name}'")))?;
                Ok(NamedTensor {
                    name: name.clone(),
                    tensor: from_ort(value).map_err(|e| self.failed_step("output", e))?,
                })
            })
            .collect()
    }
}

impl BackendExecutionContext for OrtContext {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        let Id::Name(name) = id else {
            return Err(to_backend_error(self.fail("inputs are set by name")));
        };
        set_named_input(&mut self.inputs, name, tensor);
        Ok(())
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        find_output(&self.outputs, &id)
            .ok_or_else(|| to_backend_error(self.fail(format!("no output {id:?}"))))
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

fn to_ort(t: &Tensor) -> ort::Result<SessionInputValue<'static>> {
    let shape: Vec<i64> = t.dimensions.iter().map(|&d| i64::from(d)).collect();
    let d = &t.data;
    fn le<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N")))
            .collect()
    }
    use ort::value::Tensor as T;
    Ok(match ElemType::from_wit(t.ty) {
        ElemType::F32 => T::from_array((shape, le::<4, f32>(d, f32::from_le_bytes)))?.into(),
        ElemType::F64 => T::from_array((shape, le::<8, f64>(d, f64::from_le_bytes)))?.into(),
        ElemType::I32 => T::from_array((shape, le::<4, i32>(d, i32::from_le_bytes)))?.into(),
        ElemType::I64 => T::from_array((shape, le::<8, i64>(d, i64::from_le_bytes)))?.into(),
        ElemType::U8 => T::from_array((shape, d.clone()))?.into(),
        other => return Err(ort::Error::new(format!("element type {other:?}"))),
    })
}

fn from_ort(value: &DynValue) -> Result<Tensor, ort::Error> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(ort::Error::new("not a tensor"));
    };
    fn pack<T, const N: usize>(
        value: &DynValue,
        f: fn(T) -> [u8; N],
        ty: ElemType,
    ) -> Result<Tensor, ort::Error>
    where
        T: Copy + ort::value::PrimitiveTensorElementType,
    {
        let (shape, data) = value.try_extract_tensor::<T>()?;
        let dims = shape
            .iter()
            .map(|&d| u32::try_from(d).map_err(|_| ort::Error::new(format!("dimension {d}"))))
            .collect::<Result<_, _>>()?;
        let bytes = data.iter().flat_map(|&v| f(v)).collect();
        Ok(Tensor::new(dims, ty.to_wit(), bytes))
    }
    match ty {
        TensorElementType::Float32 => pack::<f32, 4>(value, f32::to_le_bytes, ElemType::F32),
        TensorElementType::Float64 => pack::<f64, 8>(value, f64::to_le_bytes, ElemType::F64),
        TensorElementType::Int32 => pack::<i32, 4>(value, i32::to_le_bytes, ElemType::I32),
        TensorElementType::Int64 => pack::<i64, 8>(value, i64::to_le_bytes, ElemType::I64),
        TensorElementType::Uint8 => pack::<u8, 1>(value, u8::to_le_bytes, ElemType::U8),
        other => Err(ort::Error::new(format!(
            "output type {other:?} cannot be returned"
        ))),
    }
}
