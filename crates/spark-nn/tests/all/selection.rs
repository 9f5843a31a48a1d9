//! Measured selection on a real model: a device the hint prefers but that is slower than the
//! CPU is measured, then left for the faster backend, re-probed now and then, and the chain's
//! order comes back when selection is `chain`.

use std::time::Duration;

use spark_manifest::NnSelection;
use spark_nn::backend::DeviceClass;
use spark_nn::backend::tract::TractBackend;
use spark_nn::selection::Choice;
use spark_nn::{DeviceBackend, Target};
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding};
use wasmtime_wasi_nn::{ExecutionContext, Graph, Tensor};

use crate::support;

/// A device that computes right but slowly: tract, plus a fixed delay per compute (a weak
/// integrated GPU, a software Vulkan device).
struct SlowDevice;

const DELAY: Duration = Duration::from_millis(20);

impl BackendInner for SlowDevice {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Onnx
    }
    fn load(&mut self, builders: &[&[u8]], target: ExecutionTarget) -> Result<Graph, BackendError> {
        let inner = TractBackend.load(builders, target)?;
        Ok(Graph::from(
            Box::new(SlowGraph(inner)) as Box<dyn BackendGraph>
        ))
    }
    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

struct SlowGraph(Graph);

impl BackendGraph for SlowGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        let inner = self.0.init_execution_context()?;
        Ok(ExecutionContext::from(
            Box::new(SlowContext(inner)) as Box<dyn BackendExecutionContext>
        ))
    }
}

struct SlowContext(ExecutionContext);

impl BackendExecutionContext for SlowContext {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        self.0.set_input(id, tensor)
    }
    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        self.0.get_output(id)
    }
    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        std::thread::sleep(DELAY);
        BackendExecutionContext::compute(&mut *self.0, inputs)
    }
}

fn service() -> spark_nn::NnService {
    let mut config = support::config();
    config.settings.backends = vec!["tract".into()];
    let service = support::service(config);
    service.add_engine(
        DeviceBackend::new("slow-gpu", DeviceClass::Gpu, "slow test device", SlowDevice),
        &[Target::Gpu],
    );
    service
}

/// Who serves `target` for the real model now, and why, as the status says.
fn chosen(service: &spark_nn::NnService, target: &str) -> (String, Choice) {
    let status = service.status();
    let model = status
        .measured
        .iter()
        .find(|m| m.model == support::MODEL_NAME)
        .expect("the model has served");
    let c = model
        .chosen
        .iter()
        .find(|c| c.target == target)
        .expect("the target has served");
    (c.backend.clone(), c.why.clone())
}

#[test]
fn the_hinted_device_is_measured_then_the_faster_backend_serves() {
    let service = service();
    let (image, label) = support::samples().remove(0);
    let mut served = Vec::new();
    for _ in 0..8 {
        let (class, outcome) = support::top1(&service, Target::Gpu, &image);
        assert_eq!(class, label, "{outcome:?}");
        served.push(outcome.backend.expect("served"));
    }
    assert_eq!(served[0], "slow-gpu", "the hint's device is measured first");
    assert!(served.contains(&"tract".to_owned()), "{served:?}");
    assert_eq!(served.last().unwrap(), "tract", "{served:?}");
    let (backend, why) = chosen(&service, "gpu");
    assert_eq!(backend, "tract");
    assert!(
        matches!(&why, Choice::Fastest { next: Some((next, next_ms)), typical_ms } if next == "slow-gpu" && next_ms > typical_ms),
        "{why:?}"
    );
    let status = service.status();
    assert_eq!(status.selection, "measured");
    let speeds = &status.measured[0].backends;
    assert_eq!(speeds[0].backend, "tract", "fastest first: {speeds:?}");
    assert!(
        speeds
            .iter()
            .all(|s| s.first_ms.is_some() && s.samples >= 2)
    );

    // Selection by the chain alone: the hint's device serves again, slow as it is.
    let policy = service.policy();
    policy.set_selection(NnSelection::Chain, Duration::from_secs(30));
    let (_, outcome) = support::top1(&service, Target::Gpu, &image);
    assert_eq!(outcome.backend.as_deref(), Some("slow-gpu"));
    assert_eq!(chosen(&service, "gpu").1, Choice::Chain);
}

#[test]
fn a_slower_backend_is_reprobed_then_the_fastest_serves_again() {
    let service = service();
    let (image, _) = support::samples().remove(1);
    for _ in 0..8 {
        support::top1(&service, Target::Gpu, &image);
    }
    service
        .policy()
        .set_selection(NnSelection::Measured, Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(60));
    let (_, probe) = support::top1(&service, Target::Gpu, &image);
    assert_eq!(probe.backend.as_deref(), Some("slow-gpu"));
    assert_eq!(
        chosen(&service, "gpu"),
        ("slow-gpu".into(), Choice::Reprobe)
    );
    let (_, next) = support::top1(&service, Target::Gpu, &image);
    assert_eq!(
        next.backend.as_deref(),
        Some("tract"),
        "still slower: back to tract"
    );
}
