//! What each module did since the last tick, as the policy's [`ModuleObservation`]s: counters
//! are read from the runtime's atomics and the admission gates, and differenced here. Only
//! modules worth planning are observed (see [`Observer::observe`]), so a tick's planning
//! grows with the active modules, not with all registered ones.

use std::collections::HashMap;
use std::time::Duration;

use spark_manifest::{Priority, Trigger};
use spark_orchestrator::policy::ModuleObservation;

use crate::serve::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    invocations: u64,
    rejected: u64,
    cpu_nanos: u64,
}

/// Remembers each module's counters at the previous tick.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    last: HashMap<String, Counters>,
}

impl Observer {
    /// The modules worth planning this tick, observed: those with work (requests, refusals,
    /// queued or running), those loaded, critical and background modules and jobs (the
    /// surge baselines and the background share are computed over them), and any whose
    /// admission or warm limit a plan changed (so that a plan can restore it). An idle
    /// normal-priority module only on disk is left out: it costs a read of its counters.
    pub(crate) fn observe(
        &mut self,
        snapshot: &Snapshot,
        window: Duration,
    ) -> Vec<ModuleObservation> {
        snapshot
            .modules
            .iter()
            .filter_map(|slot| {
                let stats = slot.stats.snapshot();
                let now = Counters {
                    invocations: stats.invocations,
                    rejected: slot.admission.rejected(),
                    cpu_nanos: stats.cpu_nanos,
                };
                let before = match self.last.get_mut(slot.id()) {
                    Some(last) => std::mem::replace(last, now),
                    None => {
                        self.last.insert(slot.id().to_owned(), now);
                        now
                    }
                };
                let spec = &slot.spec;
                let (queued, in_flight) = (slot.admission.queued(), slot.admission.running());
                let job = matches!(spec.trigger, Trigger::Schedule { .. });
                let (concurrency, queue) = match spec.trigger {
                    Trigger::Schedule { .. } => (1, 0),
                    Trigger::Http { .. } => (spec.limits.concurrency, spec.limits.queue),
                };
                let planned = spec.priority != Priority::Normal
                    || job
                    || now.invocations != before.invocations
                    || now.rejected != before.rejected
                    || queued > 0
                    || in_flight > 0
                    || slot.residency.is_loaded()
                    || slot.controls.warm_limit().is_some()
                    || slot.admission.concurrency() != concurrency
                    || slot.admission.queue_capacity() != queue;
                if !planned {
                    return None;
                }
                let (p99, _) = slot.latency.drain_p99();
                Some(ModuleObservation {
                    id: spec.id.to_string(),
                    priority: spec.priority,
                    weight: spec.weight,
                    job,
                    concurrency,
                    queue,
                    requests: now.invocations.saturating_sub(before.invocations),
                    rejected: now.rejected.saturating_sub(before.rejected),
                    queued,
                    in_flight,
                    cpu_seconds: now.cpu_nanos.saturating_sub(before.cpu_nanos) as f64 / 1e9,
                    p99_ms: p99.map(|d| d.as_secs_f64() * 1e3),
                    window_secs: window.as_secs_f64(),
                })
            })
            .collect()
    }
}
