//! The `wasi:nn` host state: one [`NnInvocation`] per store (the node's service, the module's
//! limits, the last outcome, the bytes the invocation's tensors hold), the [`NnView`] the
//! bindings work through, and [`add_to_linker`].
//!
//! The decision worth knowing: Spark serves `wasi:nn` with its own bindings ([`crate::wit`]),
//! not those of the `wasmtime-wasi-nn` crate, which are synchronous (its `bindgen!` declares
//! no async function, so `compute` would block the guest's Tokio worker and no deadline could
//! end it) and copy every `list<u8>` into the host before an embedder sees it. Spark keeps the
//! crate for the backend traits every engine implements and for its `Tensor`/`Graph` types.
//! Graphs loaded by name come from the node's models and are routed as `gpu` (best device
//! first), since `load-by-name` carries no target.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::{Linker, ResourceTable};

use crate::config::{MAX_TENSOR_RANK, NnLimits};
use crate::error::NnError;
use crate::model::Model;
use crate::policy::Target;
use crate::router::Outcome;
use crate::service::Inner;

/// Adds `wasi:nn` (the standard WIT, `wasi:nn@0.2.0-rc-2024-10-28`, as guests built against
/// `wasmtime-wasi-nn` 48 import it) and `spark:nn/info` to a linker. `view` gives the
/// `wasi:nn` state of the store's data: its [`NnInvocation`] and resource table.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    crate::wit::add_to_linker(linker, view)?;
    crate::info::add_to_linker(linker, view)
}

/// What the bindings see of a store: its inference state and its resource table (where the
/// guest's graphs, contexts, tensors and errors live, under the store's handle limit).
pub struct NnView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) nn: &'a mut NnInvocation,
}

/// One invocation's inference state; lives in the store's data.
pub struct NnInvocation {
    state: Option<Invocation>,
}

/// What the bindings need to know about the invocation they serve.
pub(crate) struct Invocation {
    pub service: Arc<Inner>,
    pub limits: NnLimits,
    last: Option<Outcome>,
    /// Bytes this invocation's tensors hold now (see [`Held`]).
    held: Arc<AtomicU64>,
    /// Whether a refusal was logged at `info` (later ones go to `debug`: the metrics count
    /// them all, and a guest refused in a loop must not flood the log).
    refusal_logged: bool,
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
        tracing::trace!(module, "wasi-nn invocation");
        NnInvocation {
            state: Some(Invocation {
                service,
                limits,
                last: None,
                held: Arc::new(AtomicU64::new(0)),
                refusal_logged: false,
            }),
        }
    }

    /// For stores of a runtime with `wasi:nn` linked but no inference host: every call
    /// fails ("this node runs no inference host") and no tensor keeps its bytes.
    pub fn disabled() -> NnInvocation {
        NnInvocation { state: None }
    }

    /// The `wasi:nn` view over this state and the store's resource table.
    pub fn view<'a>(&'a mut self, table: &'a mut ResourceTable) -> NnView<'a> {
        NnView { table, nn: self }
    }

    /// How the last `compute` (or refused call) of this invocation went.
    pub fn last_outcome(&self) -> Option<Outcome> {
        self.state.as_ref().and_then(|s| s.last.clone())
    }

    /// Bytes this invocation's tensors hold now.
    pub fn tensor_bytes(&self) -> u64 {
        self.state
            .as_ref()
            .map_or(0, |s| s.held.load(Ordering::Relaxed))
    }

    pub(crate) fn state(&mut self) -> Result<&mut Invocation, NnError> {
        self.state
            .as_mut()
            .ok_or_else(|| NnError::Unsupported("this node runs no inference host".into()))
    }
}

/// A share of an invocation's tensor bytes, given back when dropped (wherever: a tensor the
/// guest drops, inputs at the end of their computation on the pool, the store at its end).
pub(crate) struct Held {
    ledger: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.ledger.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Invocation {
    pub(crate) fn record(&mut self, outcome: Outcome) {
        self.last = Some(outcome);
    }

    /// Marks the last outcome failed with `error` (when it did not say so already).
    pub(crate) fn fail_last(&mut self, error: &NnError) {
        if let Some(last) = &mut self.last {
            last.error
                .get_or_insert_with(|| spark_error::chain(error).to_string());
        }
    }

    /// Sets the last outcome to a failure of `call` that no backend saw (not counted again).
    pub(crate) fn record_error(&mut self, call: &str, target: Target, error: &NnError) {
        self.record(error_outcome(call, target, error));
    }

    /// A call refused before any backend: the guest's last outcome, the `rejected` counter,
    /// and the log (once per invocation at `info`).
    pub(crate) fn refuse(&mut self, call: &str, target: Target, error: &NnError) {
        let outcome = error_outcome(call, target, error);
        self.service.metrics.record(&outcome, Some(error));
        if self.refusal_logged {
            tracing::debug!(call, error = %spark_error::chain(error), "wasi-nn call refused");
        } else {
            self.refusal_logged = true;
            tracing::info!(call, error = %spark_error::chain(error), "wasi-nn call refused");
        }
        self.record(outcome);
    }

    /// Decides, from the sizes alone, whether a tensor the guest is creating may be kept;
    /// if so, reserves its bytes.
    pub(crate) fn admit_tensor(&self, rank: usize, bytes: usize) -> Result<Held, NnError> {
        if rank > MAX_TENSOR_RANK {
            return Err(NnError::InvalidInput(format!(
                "a tensor of {rank} dimensions; at most {MAX_TENSOR_RANK}"
            )));
        }
        let bytes = bytes as u64;
        if bytes > self.limits.max_tensor_bytes {
            return Err(NnError::TooLarge(format!(
                "a tensor of {bytes} bytes; this module may create tensors of at most {} bytes",
                self.limits.max_tensor_bytes
            )));
        }
        self.reserve(bytes)
    }

    /// Reserves `bytes` more for this invocation's tensors, within its total.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<Held, NnError> {
        let cap = self.limits.max_total_tensor_bytes;
        let reserved = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                now.checked_add(bytes).filter(|&total| total <= cap)
            });
        match reserved {
            Ok(_) => Ok(Held {
                ledger: self.held.clone(),
                bytes,
            }),
            Err(now) => Err(NnError::TooLarge(format!(
                "this invocation's tensors hold {now} bytes; {bytes} more would pass its limit of \
                 {cap} bytes for all its tensors together"
            ))),
        }
    }

    /// Checks that the guest may load a model of `len` bytes from `builders` parts, before
    /// any byte is copied.
    pub(crate) fn admit_model(&self, builders: usize, len: usize) -> Result<(), NnError> {
        if !self.limits.allow_guest_models {
            return Err(NnError::Denied(
                "this module may not load its own models (its nn_model limit is 0): use \
                 load-by-name with a model the node serves, or set limits.nn_model"
                    .into(),
            ));
        }
        if builders != 1 {
            return Err(NnError::InvalidInput(format!(
                "an ONNX model is one builder; {builders} given"
            )));
        }
        if len as u64 > self.limits.max_model_bytes {
            return Err(NnError::TooLarge(format!(
                "model of {len} bytes; this module may load at most {}",
                self.limits.max_model_bytes
            )));
        }
        Ok(())
    }

    /// A model the node serves by name.
    pub(crate) fn named(&self, name: &str) -> Result<Arc<Model>, NnError> {
        self.service
            .models
            .read()
            .expect("models lock")
            .get(name)
            .cloned()
            .ok_or_else(|| {
                let shown: String = name.chars().take(64).collect();
                NnError::NotFound(shown)
            })
    }
}

fn error_outcome(call: &str, target: Target, error: &NnError) -> Outcome {
    Outcome {
        model: call.to_owned(),
        target,
        backend: None,
        device: None,
        fallbacks: Vec::new(),
        skipped: Vec::new(),
        micros: 0,
        error: Some(spark_error::chain(error).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(limits: NnLimits) -> Invocation {
        let service = crate::NnService::start(crate::NnConfig {
            settings: crate::NnSettings {
                backends: vec![crate::TRACT.into()],
                ..crate::NnSettings::default()
            },
            vulkan: crate::VulkanProbe::Off,
            workers: 1,
            ..crate::NnConfig::default()
        })
        .unwrap();
        let mut nn = service.invocation("test", limits);
        nn.state.take().unwrap()
    }

    #[test]
    fn tensors_are_admitted_within_their_own_and_the_total_limit() {
        let inv = invocation(NnLimits {
            max_tensor_bytes: 1000,
            max_total_tensor_bytes: 2500,
            ..NnLimits::default()
        });
        let too_big = inv.admit_tensor(1, 1001).err().unwrap();
        assert!(too_big.to_string().contains("at most 1000"), "{too_big}");
        let rank = inv.admit_tensor(MAX_TENSOR_RANK + 1, 4).err().unwrap();
        assert!(matches!(rank, NnError::InvalidInput(_)), "{rank}");
        let a = inv.admit_tensor(2, 1000).unwrap();
        let b = inv.admit_tensor(2, 1000).unwrap();
        let over = inv.admit_tensor(2, 1000).err().unwrap();
        assert!(
            over.to_string().contains("hold 2000 bytes") && over.to_string().contains("2500"),
            "{over}"
        );
        assert_eq!(inv.held.load(Ordering::Relaxed), 2000);
        drop(a);
        let c = inv.admit_tensor(2, 1000).unwrap();
        drop((b, c));
        assert_eq!(inv.held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn guest_models_need_the_module_s_permission_and_fit_its_limit() {
        let denied = invocation(NnLimits {
            allow_guest_models: false,
            ..NnLimits::default()
        });
        let e = denied.admit_model(1, 10).err().unwrap();
        assert!(matches!(e, NnError::Denied(_)), "{e}");
        assert!(e.to_string().contains("nn_model"), "{e}");
        let allowed = invocation(NnLimits {
            max_model_bytes: 100,
            ..NnLimits::default()
        });
        allowed.admit_model(1, 100).unwrap();
        assert!(matches!(
            allowed.admit_model(1, 101),
            Err(NnError::TooLarge(_))
        ));
        assert!(matches!(
            allowed.admit_model(2, 10),
            Err(NnError::InvalidInput(_))
        ));
    }
}
