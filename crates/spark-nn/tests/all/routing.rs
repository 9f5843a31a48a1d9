//! Fall-through on errors and panics, and the orchestrator moving work between devices.

use spark_nn::backend::DeviceClass;
use spark_nn::{DeviceBackend, Health, Preference, Target};
use spark_testkit::nn::FailingBackend;
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding};
use wasmtime_wasi_nn::{ExecutionContext, Graph, Tensor};

use crate::support;

const ALL: &[Target] = &[Target::Cpu, Target::Gpu, Target::Tpu];

/// A stock backend gone wrong: panics when loading, or when computing.
struct Panicky {
    at_load: bool,
}

impl BackendInner for Panicky {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Onnx
    }
    fn load(&mut self, _: &[&[u8]], _: ExecutionTarget) -> Result<Graph, BackendError> {
        if self.at_load {
            panic!("driver exploded while loading");
        }
        Ok(Graph::from(Box::new(PanickyGraph) as Box<dyn BackendGraph>))
    }
    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

struct PanickyGraph;

impl BackendGraph for PanickyGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        Ok(ExecutionContext::from(
            Box::new(PanickyGraph) as Box<dyn BackendExecutionContext>
        ))
    }
}

impl BackendExecutionContext for PanickyGraph {
    fn set_input(&mut self, _: Id, _: &Tensor) -> Result<(), BackendError> {
        unreachable!("the router passes inputs to compute")
    }
    fn get_output(&mut self, _: Id) -> Result<Tensor, BackendError> {
        unreachable!("the router takes outputs from compute")
    }
    fn compute(
        &mut self,
        _: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let devices: Vec<u32> = Vec::new();
        Ok(Some(vec![NamedTensor {
            name: "y".into(),
            tensor: Tensor::new(vec![1], wasmtime_wasi_nn::wit::TensorType::Fp32, {
                // Index out of bounds: the kind of panic a stock backend has.
                let _ = devices[3];
                vec![]
            }),
        }]))
    }
}

#[test]
fn panics_at_load_and_compute_fall_through_and_the_backend_is_set_aside() {
    let service = support::service(support::config());
    let (image, label) = support::samples().remove(0);
    let (reference, _) = support::top1(&service, Target::Cpu, &image);
    assert_eq!(reference, label, "the real model classifies the sample");
    service.add_engine(
        DeviceBackend::new(
            "panic-load",
            DeviceClass::Gpu,
            "test double",
            Panicky { at_load: true },
        ),
        ALL,
    );
    service.add_engine(
        DeviceBackend::new(
            "panic-compute",
            DeviceClass::Gpu,
            "test double",
            Panicky { at_load: false },
        ),
        ALL,
    );
    let (class, outcome) = support::top1(&service, Target::Gpu, &image);
    assert_eq!(class, reference);
    let failed: Vec<&str> = outcome
        .fallbacks
        .iter()
        .map(|a| a.backend.as_str())
        .collect();
    assert_eq!(&failed[..2], ["panic-load", "panic-compute"], "{outcome:?}");
    assert!(
        outcome.fallbacks[0].error.contains("driver exploded"),
        "{outcome:?}"
    );
    assert!(
        outcome.fallbacks[1].error.contains("panicked"),
        "{outcome:?}"
    );
    // Both are now set aside as unhealthy: the next call does not touch them.
    let (class, outcome) = support::top1(&service, Target::Gpu, &image);
    assert_eq!(class, reference);
    assert!(
        outcome
            .fallbacks
            .iter()
            .all(|a| !a.backend.starts_with("panic")),
        "{outcome:?}"
    );
    assert!(
        outcome
            .skipped
            .iter()
            .any(|a| a.backend == "panic-load" && a.error.contains("unhealthy"))
    );
    let status = service.status();
    let b = status
        .backends
        .iter()
        .find(|b| b.name == "panic-compute")
        .unwrap();
    assert_eq!(b.counters.panics, 1);
    assert!(matches!(b.health, Health::Unhealthy(_)));
    // The orchestrator can clear it; it is tried (and caught) again.
    service
        .policy()
        .set_health("panic-compute", Health::Healthy);
    let (class, outcome) = support::top1(&service, Target::Gpu, &image);
    assert_eq!(class, reference);
    assert!(
        outcome
            .fallbacks
            .iter()
            .any(|a| a.backend == "panic-compute")
    );
}

#[test]
fn a_failing_npu_falls_through_with_the_same_top1_on_every_sample() {
    let service = support::service(support::config());
    service.add_engine(
        DeviceBackend::new(
            spark_nn::ORT_NPU,
            DeviceClass::Npu,
            "failing NPU",
            FailingBackend,
        ),
        &[Target::Tpu],
    );
    for (i, (image, label)) in support::samples().into_iter().enumerate() {
        let (class, outcome) = support::top1(&service, Target::Tpu, &image);
        assert_eq!(class, label, "{outcome:?}");
        assert_ne!(outcome.backend.as_deref(), Some(spark_nn::ORT_NPU));
        if i < spark_nn::DEFAULT_FAILURES_TO_BENCH as usize {
            assert_eq!(
                outcome.fallbacks[0].backend,
                spark_nn::ORT_NPU,
                "{outcome:?}"
            );
        } else {
            // Benched after repeated failures: skipped, with the reason, until retry time.
            let npu = outcome
                .skipped
                .iter()
                .find(|a| a.backend == spark_nn::ORT_NPU);
            assert!(npu.unwrap().error.contains("benched"), "{outcome:?}");
        }
    }
    let status = service.status();
    assert_eq!(
        status.fallbacks,
        u64::from(spark_nn::DEFAULT_FAILURES_TO_BENCH)
    );
    let npu = status
        .backends
        .iter()
        .find(|b| b.name == spark_nn::ORT_NPU)
        .unwrap();
    assert!(
        npu.benched
            .as_deref()
            .is_some_and(|e| e.contains("stand-in")),
        "{npu:?}"
    );
}

#[test]
fn battery_policy_moves_inference_to_cpu_and_back_without_the_caller_changing() {
    let service = support::service(support::config());
    let (image, label) = support::samples().remove(1);
    let (_, before) = support::top1(&service, Target::Gpu, &image);
    let policy = service.policy();
    policy.set_preference(Preference::CpuOnly);
    let (class, during) = support::top1(&service, Target::Gpu, &image);
    assert_eq!(class, label);
    assert_eq!(during.device, Some(DeviceClass::Cpu), "{during:?}");
    policy.set_preference(Preference::Auto);
    let (class, after) = support::top1(&service, Target::Gpu, &image);
    assert_eq!(class, label);
    assert_eq!(after.backend, before.backend);
    if support::require_accel() {
        assert_eq!(
            before.backend.as_deref(),
            Some(spark_nn::ORT_WEBGPU),
            "{before:?}"
        );
    }
}

#[test]
fn a_saturated_accelerator_is_skipped_until_cleared() {
    let service = support::service(support::config());
    let (image, label) = support::samples().remove(2);
    let (_, first) = support::top1(&service, Target::Gpu, &image);
    let busy = first.backend.clone().expect("served");
    service.policy().set_health(&busy, Health::Saturated);
    let (class, during) = support::top1(&service, Target::Gpu, &image);
    assert_eq!(class, label);
    assert_ne!(during.backend.as_deref(), Some(busy.as_str()));
    assert!(
        during
            .skipped
            .iter()
            .any(|a| a.backend == busy && a.error == "saturated")
    );
    service.policy().set_health(&busy, Health::Healthy);
    let (_, after) = support::top1(&service, Target::Gpu, &image);
    assert_eq!(after.backend.as_deref(), Some(busy.as_str()));
}

#[test]
fn metrics_and_status_say_what_served_and_what_fell_through() {
    let service = support::service(support::config());
    service.add_engine(
        DeviceBackend::new("flaky", DeviceClass::Gpu, "test double", FailingBackend),
        &[Target::Gpu],
    );
    let (image, _) = support::samples().remove(0);
    let (_, outcome) = support::top1(&service, Target::Gpu, &image);
    let text = service.metrics_text();
    let served = outcome.backend.unwrap();
    assert!(
        text.contains(&format!("spark_nn_inferences_total{{backend=\"{served}\"")),
        "{text}"
    );
    assert!(
        text.contains("spark_nn_backend_failures_total{backend=\"flaky\",device=\"gpu\"} 1"),
        "{text}"
    );
    assert!(text.contains("spark_nn_fallbacks_total 1"), "{text}");
    let status = serde_json::to_value(service.status()).unwrap();
    assert_eq!(status["last_backend"], served.as_str());
    assert_eq!(status["chains"]["gpu"][0], "flaky");
}
