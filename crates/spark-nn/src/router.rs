//! The fall-through router: for one `compute`, plan the chain ([`crate::policy::route`]),
//! order it by measurement ([`crate::selection::select`]), then try each backend in turn
//! until one answers, compiling the model on it on first use and recording how fast it was.
//!
//! The decision worth knowing: any error *or panic* of a backend moves on to the next one, and
//! every step is recorded in an [`Outcome`] (served by, fallbacks with their errors, what was
//! skipped and why) that goes to the log, the metrics and the guest (`spark:nn/info`). A failed
//! compile is remembered per model and backend until the backend's retry time, so a broken
//! accelerator costs one attempt, not one per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use wasmtime_wasi_nn::backend::NamedTensor;
use wasmtime_wasi_nn::{ExecutionContext, Graph};

use crate::backend::{DeviceBackend, DeviceClass, guarded};
use crate::error::NnError;
use crate::model::{Compiled, Model};
use crate::policy::{self, Candidate, Health, Target};
use crate::selection::{self, Choice};
use crate::service::Inner;
use crate::tensor;
use spark_manifest::NnSelection;

/// How one `compute` went: who served it, who failed first, what was skipped and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The model's name (`guest:<digest prefix>` for a guest's bytes).
    pub model: String,
    /// The guest's execution target.
    pub target: Target,
    /// The backend that served; `None` when the call failed.
    pub backend: Option<String>,
    /// The kind of device of the backend that served.
    pub device: Option<DeviceClass>,
    /// Backends tried before (or instead of) the one that served, with their errors.
    pub fallbacks: Vec<Attempt>,
    /// Backends of the chain not tried, with the reason.
    pub skipped: Vec<Attempt>,
    /// Time of the whole compute, in µs (validation and fall-throughs included).
    pub micros: u64,
    /// The error the guest got, with its causes; `None` on success.
    pub error: Option<String>,
}

/// One backend and what it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The backend's name.
    pub backend: String,
    /// Its error, or why it was skipped.
    pub error: String,
}

/// Execution contexts one caller holds, per backend (created on first use).
pub(crate) type Contexts = HashMap<Arc<str>, ExecutionContext>;

/// Validates `inputs`, then runs them on the first backend of the chain that works.
pub(crate) fn compute(
    inner: &Inner,
    model: &Model,
    target: Target,
    mut inputs: Vec<NamedTensor>,
    limits: &crate::NnLimits,
    contexts: &mut Contexts,
) -> (Result<Vec<NamedTensor>, NnError>, Outcome) {
    let started = Instant::now();
    let mut outcome = Outcome {
        model: model.name.clone(),
        target,
        backend: None,
        device: None,
        fallbacks: Vec::new(),
        skipped: Vec::new(),
        micros: 0,
        error: None,
    };
    let result = route(
        inner,
        model,
        target,
        &mut inputs,
        limits,
        contexts,
        &mut outcome,
    );
    outcome.micros = started.elapsed().as_micros() as u64;
    if let Err(e) = &result {
        outcome.error = Some(spark_error::chain(e).to_string());
    }
    inner.metrics.record(&outcome, result.as_ref().err());
    log(&outcome);
    (result, outcome)
}

fn route(
    inner: &Inner,
    model: &Model,
    target: Target,
    inputs: &mut [NamedTensor],
    limits: &crate::NnLimits,
    contexts: &mut Contexts,
    outcome: &mut Outcome,
) -> Result<Vec<NamedTensor>, NnError> {
    tensor::validate(&model.info, inputs, limits)?;
    let engines = inner.chain(target);
    let candidates: Vec<Candidate<'_>> = engines
        .iter()
        .map(|e| Candidate {
            name: &e.name,
            cpu: e.device == DeviceClass::Cpu,
            available: e.availability(),
        })
        .collect();
    let now = Instant::now();
    let state = inner.policy.snapshot();
    let planned = policy::route(&candidates, &state, now);
    outcome.skipped = planned
        .skipped
        .into_iter()
        .map(|(backend, error)| Attempt { backend, error })
        .collect();
    let (order, choice) = match state.selection {
        NnSelection::Measured => selection::select(
            &planned.attempts,
            &model.measured.lock().expect("measured lock"),
            &state.selection_rules,
            now,
        ),
        NnSelection::Chain => (planned.attempts, Choice::Chain),
    };
    for (i, name) in order.iter().enumerate() {
        let engine = engines
            .iter()
            .find(|e| &*e.name == name.as_str())
            .expect("planned from these engines");
        let started = Instant::now();
        match attempt(inner, engine, model, target, inputs, contexts) {
            Ok((outputs, compiled)) => {
                inner.policy.record_success(&engine.name);
                let why = if i == 0 { choice } else { Choice::Chain };
                let micros = started.elapsed().as_micros() as u64;
                model.served(target, &engine.name, micros, compiled, why);
                outcome.backend = Some(engine.name.to_string());
                outcome.device = Some(engine.device);
                return Ok(outputs);
            }
            Err(e) if e.falls_through() => {
                if let NnError::Panic { .. } = e {
                    // A panicking backend's state is not trusted again until someone says so.
                    contexts.remove(&engine.name);
                    model.forget(&engine.name);
                    inner
                        .policy
                        .set_health(&engine.name, Health::Unhealthy(e.to_string()));
                } else if inner.policy.record_failure(&engine.name, &e.reason(), now) {
                    tracing::warn!(backend = %engine.name, "backend benched after repeated failures");
                }
                outcome.fallbacks.push(Attempt {
                    backend: engine.name.to_string(),
                    error: e.reason(),
                });
            }
            Err(e) => return Err(e),
        }
    }
    let mut tried: Vec<String> = outcome
        .fallbacks
        .iter()
        .chain(&outcome.skipped)
        .map(|a| format!("{}: {}", a.backend, a.error))
        .collect();
    if tried.is_empty() {
        tried.push(format!("no backend in the {} chain", target.name()));
    }
    Err(NnError::Exhausted(tried.join("; ")))
}

/// One backend: compile (or reuse) the model, make (or reuse) a context, run, check outputs.
/// Also says whether this call compiled the model (its time is not steady-state time).
fn attempt(
    inner: &Inner,
    engine: &DeviceBackend,
    model: &Model,
    target: Target,
    inputs: &[NamedTensor],
    contexts: &mut Contexts,
) -> Result<(Vec<NamedTensor>, bool), NnError> {
    let _busy = engine.busy();
    let mut compiled_now = false;
    if !contexts.contains_key(&engine.name) {
        let (graph, fresh) = compiled(inner, engine, model, target)?;
        compiled_now = fresh;
        let context = guarded(&engine.name, || {
            graph
                .init_execution_context()
                .map_err(|e| crate::backend::from_backend(&engine.name, &e))
        })?;
        contexts.insert(engine.name.clone(), context);
    }
    let context = contexts.get_mut(&engine.name).expect("inserted above");
    let outputs = guarded(&engine.name, || {
        context
            .compute_with_io(copy(inputs))
            .map_err(|e| crate::backend::from_backend(&engine.name, &e))
    })?;
    if outputs.is_empty() {
        return Err(NnError::backend(&engine.name, "returned no outputs"));
    }
    for output in &outputs {
        tensor::check_output(&engine.name, output)?;
    }
    Ok((outputs, compiled_now))
}

/// The model compiled on `engine`, compiling it now if needed (failures are remembered);
/// `true` when it was compiled by this call.
fn compiled(
    inner: &Inner,
    engine: &DeviceBackend,
    model: &Model,
    target: Target,
) -> Result<(Graph, bool), NnError> {
    let retry_after = inner.policy.snapshot().retry_after;
    {
        let cache = model.compiled.lock().expect("compiled lock");
        match cache.get(&engine.name) {
            Some(Compiled::Ready(graph)) => return Ok((graph.clone(), false)),
            Some(Compiled::Failed { reason, at }) if at.elapsed() < retry_after => {
                return Err(NnError::backend(
                    &engine.name,
                    format!("compiling the model failed earlier: {reason}"),
                ));
            }
            _ => {}
        }
    }
    let started = Instant::now();
    let exec_target = match target {
        Target::Cpu => wasmtime_wasi_nn::wit::ExecutionTarget::Cpu,
        Target::Gpu => wasmtime_wasi_nn::wit::ExecutionTarget::Gpu,
        Target::Tpu => wasmtime_wasi_nn::wit::ExecutionTarget::Tpu,
    };
    let result = engine.load(&model.bytes, exec_target);
    let mut cache = model.compiled.lock().expect("compiled lock");
    match result {
        Ok(graph) => {
            tracing::info!(backend = %engine.name, model = %model.name, took_ms = started.elapsed().as_millis() as u64, "model compiled");
            cache.insert(engine.name.clone(), Compiled::Ready(graph.clone()));
            Ok((graph, true))
        }
        Err(e) => {
            let reason = e.reason();
            cache.insert(
                engine.name.clone(),
                Compiled::Failed {
                    reason,
                    at: Instant::now(),
                },
            );
            Err(e)
        }
    }
}

/// A copy of the inputs for one attempt (the crate's `NamedTensor` is not `Clone`).
fn copy(inputs: &[NamedTensor]) -> Vec<NamedTensor> {
    inputs
        .iter()
        .map(|t| NamedTensor {
            name: t.name.clone(),
            tensor: t.tensor.clone(),
        })
        .collect()
}

fn log(outcome: &Outcome) {
    match (&outcome.backend, outcome.fallbacks.is_empty()) {
        (Some(backend), true) => tracing::debug!(
            %backend, model = %outcome.model, target = outcome.target.name(), micros = outcome.micros,
            "inference served"
        ),
        (Some(backend), false) => tracing::warn!(
            %backend, model = %outcome.model, target = outcome.target.name(),
            fallbacks = ?outcome.fallbacks, "inference served after falling back"
        ),
        (None, _) => tracing::warn!(
            model = %outcome.model, target = outcome.target.name(), error = ?outcome.error,
            "inference failed"
        ),
    }
}
