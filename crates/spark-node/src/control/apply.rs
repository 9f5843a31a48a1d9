//! The actuators: a plan becomes CPU shares, admission caps, outbound and job pacing on the
//! live modules. Only what changed is touched, and nothing is restarted: running invocations
//! keep going and feel the new share at their next epoch tick.

use spark_orchestrator::policy::Plan;

use crate::serve::snapshot::Snapshot;

pub fn apply(plan: &Plan, snapshot: &Snapshot) {
    for slot in &snapshot.modules {
        let Some(new) = plan.modules.get(slot.id()) else {
            continue;
        };
        let old = slot.controls.plan();
        if old.map(|o| o.cpu_share) != Some(new.cpu_share) {
            slot.controls.pacer.set_share(new.cpu_share, &slot.stats);
        }
        if old.map(|o| (o.concurrency, o.queue)) != Some((new.concurrency, new.queue)) {
            slot.admission.set_limits(new.concurrency, new.queue);
        }
        slot.controls
            .outbound
            .set_gap(std::time::Duration::from_millis(new.outbound_interval_ms));
        slot.controls.set_job_pacing(new.job_pacing);
        slot.controls.set_plan(*new);
    }
}
