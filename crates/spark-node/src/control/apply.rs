//! The actuators: at the end of every tick the whole plan is pushed, to the live modules (CPU
//! share, admission caps, outbound and job pacing, warm limit) and to the node (the warm
//! budget the predictor may use, where inference may run, whether background optimization
//! may start compiles).
//!
//! The decision worth knowing: the plan is pushed, never pulled. Nothing keeps "the plan in
//! force" for others to read and interpret later; each actuator holds its own setting, and
//! whoever acts on it (the pacer at an epoch tick, admission, the job timer, the warmth
//! controller, the inference router) reads that setting. An actuator is touched only when its
//! setting changes, and nothing is restarted: running invocations keep going and feel a new
//! share at their next epoch tick.

use std::sync::Arc;
use std::time::Duration;

use spark_orchestrator::policy::Plan;

use crate::control::nn::NnControl;
use crate::control::warmth::WarmBudget;
use crate::serve::snapshot::Snapshot;

/// The node-wide actuators the plan is pushed to, besides the modules' own.
pub(crate) struct Actuators {
    /// The predictor's share of its memory budget.
    pub warm_budget: Arc<WarmBudget>,
    /// The inference host's device policy (`None` without `[nn]`).
    pub nn: Option<NnControl>,
    /// The runtime, whose background optimizer the plan holds or releases.
    pub runtime: spark_runtime::Runtime,
}

/// Sets every actuator to `plan`.
pub(crate) fn apply(plan: &Plan, snapshot: &Snapshot, actuators: &mut Actuators) {
    for (id, new) in &plan.modules {
        let Some(slot) = snapshot.module(id) else {
            continue;
        };
        let controls = &slot.controls;
        if controls.pacer.share() != new.cpu_share {
            controls.pacer.set_share(new.cpu_share, &slot.stats);
        }
        let caps = (
            slot.admission.concurrency(),
            slot.admission.queue_capacity(),
        );
        if caps != (new.concurrency, new.queue) {
            slot.admission.set_limits(new.concurrency, new.queue);
        }
        controls
            .outbound
            .set_gap(Duration::from_millis(new.outbound_interval_ms));
        controls.set_job_pacing(new.job_pacing);
        controls.set_warm_limit(new.warm_limit);
    }
    actuators.warm_budget.set_pressure(plan.warm_pressure);
    if let Some(nn) = &mut actuators.nn {
        nn.set(&plan.inference);
    }
    actuators
        .runtime
        .postpone_optimization(plan.optimization.postponed.clone());
}
