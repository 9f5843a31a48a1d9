//! What each module did since the last tick, as the policy's [`ModuleObservation`]s: counters
//! are read from the runtime's atomics and the admission gates, and differenced here. Only
//! modules worth planning are observed, and only candidates are read (see
//! [`Observer::observe`]), so a tick grows with the active modules, not with all registered
//! ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use spark_manifest::{Priority, Trigger};
use spark_orchestrator::policy::ModuleObservation;

use crate::serve::activity::Activity;
use crate::serve::snapshot::{LastSnapshot, ModuleSlot, Snapshot};

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    invocations: u64,
    rejected: u64,
    cpu_nanos: u64,
}

/// Remembers each module's counters at the previous tick, and which modules to look at.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    last: HashMap<String, Counters>,
    /// The snapshot the positions below are in.
    snapshot: LastSnapshot,
    /// Observed every tick whatever they did: critical and background modules and jobs.
    always: Vec<usize>,
    /// Observed last tick: looked at again, and kept while something keeps them planned.
    planned: Vec<usize>,
    /// Modules whose counters the last tick read.
    read: usize,
}

impl Observer {
    /// The modules worth planning this tick, observed: those with work (requests, refusals,
    /// queued or running), those loaded, critical and background modules and jobs (the
    /// surge baselines and the background share are computed over them), and any whose
    /// admission or warm limit a plan changed (so that a plan can restore it).
    ///
    /// Only candidates are read: `marked` (the modules with work since the last tick, see
    /// [`crate::serve::activity`]), those planned last tick, and the critical, background and
    /// job modules; every module only when the snapshot changed (a deploy, the first tick).
    /// A module can become worth planning only by having work, by being loaded (a request or
    /// the predictor marks it) or by a plan (it was planned), so nothing is missed, and an
    /// idle module only on disk costs nothing.
    pub(crate) fn observe(
        &mut self,
        snapshot: &Arc<Snapshot>,
        marked: &[Arc<Activity>],
        window: Duration,
    ) -> Vec<ModuleObservation> {
        let candidates: Vec<usize> = if self.snapshot.replaced_by(snapshot) {
            self.always = (0..snapshot.modules.len())
                .filter(|&i| {
                    let spec = &snapshot.modules[i].spec;
                    spec.priority != Priority::Normal
                        || matches!(spec.trigger, Trigger::Schedule { .. })
                })
                .collect();
            self.last.retain(|id, _| snapshot.position(id).is_some());
            (0..snapshot.modules.len()).collect()
        } else {
            let mut candidates: Vec<usize> = self
                .always
                .iter()
                .chain(&self.planned)
                .copied()
                .chain(marked.iter().filter_map(|a| snapshot.position(a.module())))
                .collect();
            candidates.sort_unstable();
            candidates.dedup();
            candidates
        };
        self.read = candidates.len();
        self.planned.clear();
        let mut observations = Vec::new();
        for index in candidates {
            if let Some(observation) = self.observe_one(&snapshot.modules[index], window) {
                self.planned.push(index);
                observations.push(observation);
            }
        }
        observations
    }

    /// Modules whose counters the last tick read.
    pub(crate) fn read(&self) -> usize {
        self.read
    }

    fn observe_one(&mut self, slot: &ModuleSlot, window: Duration) -> Option<ModuleObservation> {
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
    }
}
