//! What each module did since the last tick, as the policy's [`ModuleObservation`]s: counters
//! are read from the runtime's atomics and the admission gates, and differenced here.

use std::collections::HashMap;
use std::time::Duration;

use spark_manifest::Trigger;
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
    pub(crate) fn observe(
        &mut self,
        snapshot: &Snapshot,
        window: Duration,
    ) -> Vec<ModuleObservation> {
        snapshot
            .modules
            .iter()
            .map(|slot| {
                let stats = slot.stats.snapshot();
                let now = Counters {
                    invocations: stats.invocations,
                    rejected: slot.admission.rejected(),
                    cpu_nanos: stats.cpu_nanos,
                };
                let before = self.last.insert(slot.id().to_owned(), now).unwrap_or(now);
                let (p99, _) = slot.latency.drain_p99();
                let spec = &slot.spec;
                ModuleObservation {
                    id: spec.id.to_string(),
                    priority: spec.priority,
                    weight: spec.weight,
                    job: matches!(spec.trigger, Trigger::Schedule { .. }),
                    concurrency: match spec.trigger {
                        Trigger::Schedule { .. } => 1,
                        Trigger::Http { .. } => spec.limits.concurrency,
                    },
                    queue: match spec.trigger {
                        Trigger::Schedule { .. } => 0,
                        Trigger::Http { .. } => spec.limits.queue,
                    },
                    requests: now.invocations.saturating_sub(before.invocations),
                    rejected: now.rejected.saturating_sub(before.rejected),
                    queued: slot.admission.queued(),
                    in_flight: slot.admission.running(),
                    cpu_seconds: now.cpu_nanos.saturating_sub(before.cpu_nanos) as f64 / 1e9,
                    p99_ms: p99.map(|d| d.as_secs_f64() * 1e3),
                    window_secs: window.as_secs_f64(),
                }
            })
            .collect()
    }
}
