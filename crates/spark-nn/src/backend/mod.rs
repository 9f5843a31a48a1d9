//! Backends: one [`DeviceBackend`] per way of running a model (`tract`, `ort-cpu`, `ort-webgpu`,
//! `ort-npu`, or one a test brings), each wrapping a `wasmtime-wasi-nn` backend.
//!
//! Every Spark backend implements the `wasmtime-wasi-nn` crate's public traits
//! (`BackendInner` / `BackendGraph` / `BackendExecutionContext`), so any backend written for
//! that crate can be plugged in as an engine too.
//!
//! The decision worth knowing: every call into a backend goes through [`guarded`], which turns
//! a panic into [`NnError::Panic`]. A stock backend's panic is never seen by the guest (it gets
//! an answer from the next backend) nor by the host (the node keeps serving).

pub mod ort;
pub mod tract;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use wasmtime_wasi_nn::wit::ExecutionTarget;
use wasmtime_wasi_nn::{Backend, Graph};

use crate::error::NnError;

/// Sets input `name` of an execution context to `tensor`, replacing an earlier one.
pub(crate) fn set_named_input(
    inputs: &mut Vec<wasmtime_wasi_nn::backend::NamedTensor>,
    name: String,
    tensor: &wasmtime_wasi_nn::Tensor,
) {
    inputs.retain(|t| t.name != name);
    inputs.push(wasmtime_wasi_nn::backend::NamedTensor {
        name,
        tensor: tensor.clone(),
    });
}

/// Output `id` (by index or name) of the last computation, if there is one.
pub(crate) fn find_output(
    outputs: &[wasmtime_wasi_nn::backend::NamedTensor],
    id: &wasmtime_wasi_nn::backend::Id,
) -> Option<wasmtime_wasi_nn::Tensor> {
    use wasmtime_wasi_nn::backend::Id;
    let found = match id {
        Id::Index(i) => outputs.get(*i as usize),
        Id::Name(n) => outputs.iter().find(|t| &t.name == n),
    };
    found.map(|t| t.tensor.clone())
}

/// The kind of device an engine computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceClass {
    /// The host's CPU (tract, ONNX Runtime's CPU provider).
    Cpu,
    /// A GPU (ONNX Runtime's WebGPU provider on a Vulkan adapter).
    Gpu,
    /// A neural processing unit (`/dev/accel`).
    Npu,
}

/// A named backend, whether it exists on this node, and on what device it runs.
pub struct DeviceBackend {
    pub(crate) name: Arc<str>,
    pub(crate) device: DeviceClass,
    pub(crate) detail: String,
    /// Why this node does not have it (for the status), `None` when it does.
    pub(crate) unavailable: Option<String>,
    backend: Option<Mutex<Backend>>,
    /// Inferences running on it now (the orchestrator's saturation signal).
    in_flight: AtomicU32,
}

impl DeviceBackend {
    /// An engine that can run models.
    pub fn new(
        name: &str,
        device: DeviceClass,
        detail: impl Into<String>,
        backend: impl Into<Backend>,
    ) -> DeviceBackend {
        DeviceBackend {
            name: Arc::from(name),
            device,
            detail: detail.into(),
            unavailable: None,
            backend: Some(Mutex::new(backend.into())),
            in_flight: AtomicU32::new(0),
        }
    }

    /// An engine this node does not have, and why (listed in status, never tried): `reason`
    /// with its causes.
    pub fn unavailable(
        name: &str,
        device: DeviceClass,
        reason: &(dyn std::error::Error + '_),
    ) -> DeviceBackend {
        DeviceBackend {
            name: Arc::from(name),
            device,
            detail: String::new(),
            unavailable: Some(spark_error::chain(reason).to_string()),
            backend: None,
            in_flight: AtomicU32::new(0),
        }
    }

    /// Its name in config, logs, metrics and `spark:nn/info` (`tract`, `ort-cpu`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it computes on; only `Cpu` engines serve under [`crate::Preference::CpuOnly`].
    pub fn device(&self) -> DeviceClass {
        self.device
    }

    /// What it runs on ("ONNX Runtime 1.30.0, WebGPU EP, adapter ...").
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Inferences running on this engine now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one inference as running until the guard drops.
    pub(crate) fn busy(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// `Ok` when this node has the engine, else why not.
    pub fn availability(&self) -> Result<(), &str> {
        self.unavailable.as_deref().map_or(Ok(()), Err)
    }

    /// Compiles `bytes` on this backend (a panic becomes an error).
    pub(crate) fn load(&self, bytes: &[u8], target: ExecutionTarget) -> Result<Graph, NnError> {
        let Some(backend) = &self.backend else {
            let reason = self.unavailable.clone().unwrap_or_default();
            return Err(NnError::backend(&self.name, reason));
        };
        guarded(&self.name, || {
            let mut backend = backend.lock().unwrap_or_else(|p| p.into_inner());
            backend
                .load(&[bytes], target)
                .map_err(|e| from_backend(&self.name, &e))
        })
    }
}

/// One running inference on an engine (see [`DeviceBackend::busy`]).
pub(crate) struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `f`, turning a panic into [`NnError::Panic`] for `backend`.
pub(crate) fn guarded<T>(
    backend: &str,
    f: impl FnOnce() -> Result<T, NnError>,
) -> Result<T, NnError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            tracing::error!(backend, %message, "inference backend panicked; caught");
            Err(NnError::Panic {
                backend: backend.to_owned(),
                message,
            })
        }
    }
}

/// Our error for what a `wasmtime-wasi-nn` backend returned: its whole message, causes
/// included, without the crate's generic outer text or a repeated backend name.
pub(crate) fn from_backend(backend: &str, e: &wasmtime_wasi_nn::backend::BackendError) -> NnError {
    use wasmtime_wasi_nn::backend::BackendError as E;
    let text = match e {
        E::BackendAccess(inner) => format!("{inner:#}"),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    };
    let prefix = format!("backend {backend}: ");
    let reason = text.strip_prefix(&prefix).unwrap_or(&text).trim_end();
    NnError::backend(backend, reason)
}

/// A `wasmtime-wasi-nn` error carrying one of ours.
pub(crate) fn to_backend_error(e: NnError) -> wasmtime_wasi_nn::backend::BackendError {
    e.into()
}
