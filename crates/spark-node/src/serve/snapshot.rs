//! What the request path reads: an immutable snapshot of the modules and the route table.
//!
//! The snapshot is swapped as a whole (`ArcSwap`), so a request sees exactly one version of
//! the node from routing to response, readers never take a lock, and whoever changes the node
//! builds the next snapshot off to the side and publishes it in one store.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use spark_manifest::{ModuleSpec, Route, RouteTable, Trigger};
use spark_runtime::{ModuleStats, OutboundPacing};

use crate::admin::metrics::ModuleMetrics;
use crate::serve::activity::Activity;
use crate::serve::admission::Admission;
use crate::serve::latency::LatencyWindow;
use crate::serve::pacing::ModulePacer;
use crate::serve::residency::{CodeInfo, Residency};
use crate::serve::versions::VersionCounters;

/// One module as the node runs it.
pub struct ModuleSlot {
    pub spec: ModuleSpec,
    /// The module's code in memory (or not), loaded on demand.
    pub residency: Residency,
    /// The module's counters, kept across loads and unloads of its code.
    pub stats: Arc<ModuleStats>,
    pub admission: Admission,
    pub metrics: ModuleMetrics,
    /// The live controls the orchestrator turns.
    pub controls: SlotControls,
    /// Latencies since the control loop last looked.
    pub latency: LatencyWindow,
    /// The release this version of the module belongs to.
    pub release: String,
    /// Outcomes of this version (canary analysis).
    pub outcomes: VersionCounters,
    /// Lists the module for the control loop and the predictor when it has work.
    pub activity: Arc<Activity>,
}

/// A module's actuators besides its admission caps: CPU share, outbound pacing, job pacing,
/// and the warm limit. The control loop sets them every tick; the request path, the job timer
/// and the warmth controller read them.
pub struct SlotControls {
    pub pacer: Arc<ModulePacer>,
    pub outbound: Arc<OutboundPacing>,
    job_pacing_bits: AtomicU64,
    /// Ready instances the warmth controller may keep; [`NO_WARM_LIMIT`]: its own judgement.
    warm_limit: AtomicU64,
}

const NO_WARM_LIMIT: u64 = u64::MAX;

impl SlotControls {
    pub fn new(pacer: Arc<ModulePacer>, outbound: Arc<OutboundPacing>) -> SlotControls {
        SlotControls {
            pacer,
            outbound,
            job_pacing_bits: AtomicU64::new(1.0f64.to_bits()),
            warm_limit: AtomicU64::new(NO_WARM_LIMIT),
        }
    }

    /// Multiplier on a job's period (1 = as configured).
    pub fn job_pacing(&self) -> f64 {
        f64::from_bits(self.job_pacing_bits.load(Ordering::Relaxed))
    }

    pub fn set_job_pacing(&self, factor: f64) {
        self.job_pacing_bits
            .store(factor.max(1.0).to_bits(), Ordering::Relaxed);
    }

    /// Most instances the warmth controller may keep ready; `None`: its own judgement.
    pub fn warm_limit(&self) -> Option<u32> {
        match self.warm_limit.load(Ordering::Relaxed) {
            NO_WARM_LIMIT => None,
            n => Some(n as u32),
        }
    }

    pub fn set_warm_limit(&self, limit: Option<u32>) {
        let raw = limit.map_or(NO_WARM_LIMIT, u64::from);
        self.warm_limit.store(raw, Ordering::Relaxed);
    }
}

impl ModuleSlot {
    pub fn new(
        spec: ModuleSpec,
        residency: Residency,
        stats: Arc<ModuleStats>,
        metrics: ModuleMetrics,
        controls: SlotControls,
        release: String,
        activity: Arc<Activity>,
    ) -> ModuleSlot {
        let limits = &spec.limits;
        let admission = match spec.trigger {
            // A job runs once at a time: an overdue run is skipped, never doubled up.
            Trigger::Schedule { .. } => Admission::new(1, 0, limits.queue_timeout),
            Trigger::Http { .. } => {
                Admission::new(limits.concurrency, limits.queue, limits.queue_timeout)
            }
        };
        ModuleSlot {
            spec,
            residency,
            stats,
            admission,
            metrics,
            controls,
            latency: LatencyWindow::default(),
            release,
            outcomes: VersionCounters::default(),
            activity,
        }
    }

    pub fn id(&self) -> &str {
        self.spec.id.as_str()
    }

    /// A request this version served (or failed), finished after `took`.
    pub fn finished(&self, status: u16, took: std::time::Duration) {
        self.metrics.request(status, took);
        self.outcomes.record(status, took);
        self.latency.record(took);
        self.activity.mark();
    }

    /// A request refused before it reached the guest (admission, capacity, loading).
    pub fn refused(&self, status: u16, took: std::time::Duration) {
        self.metrics.request(status, took);
        self.metrics.refused();
        self.outcomes.record(status, took);
        self.activity.mark();
    }

    /// Facts about the module's code (kept while it is unloaded).
    pub fn info(&self) -> CodeInfo {
        self.residency.info()
    }

    /// The tier of the module's code: live while it is loaded (it moves from baseline to
    /// optimized in the background), as last loaded otherwise.
    pub fn tier(&self) -> spark_runtime::TierStatus {
        match self.residency.current() {
            Some(guest) => guest.tier(),
            None => self.info().tier,
        }
    }
}

/// The node's modules at one point in time.
pub struct Snapshot {
    /// The stable release these modules belong to.
    pub release: Option<String>,
    pub modules: Vec<Arc<ModuleSlot>>,
    pub routes: RouteTable<usize>,
    /// Each module's place in `modules`, by id.
    index: HashMap<String, usize>,
    /// Canary versions of modules being rolled out, by module id.
    pub canaries: HashMap<String, Canary>,
}

/// A module's new version taking part of its traffic.
pub struct Canary {
    pub slot: Arc<ModuleSlot>,
    /// A fresh copy of the stable version, taking as much traffic as the canary, to compare
    /// it with (see `spark_rollout::split`). None if it could not be built.
    pub baseline: Option<Arc<ModuleSlot>>,
    /// Percent of the module's requests (or job runs) it takes.
    pub share: f64,
}

impl Snapshot {
    /// Builds the route table over `modules`; duplicates were refused by manifest validation.
    pub fn new(modules: Vec<Arc<ModuleSlot>>) -> Snapshot {
        Snapshot::with(None, modules, HashMap::new())
    }

    pub fn with(
        release: Option<String>,
        modules: Vec<Arc<ModuleSlot>>,
        canaries: HashMap<String, Canary>,
    ) -> Snapshot {
        let entries = modules.iter().enumerate().flat_map(|(index, slot)| {
            let routes = match &slot.spec.trigger {
                Trigger::Http { routes } => routes.clone(),
                Trigger::Schedule { .. } => Vec::new(),
            };
            routes.into_iter().map(move |route| (route, index))
        });
        let routes = RouteTable::new(entries).unwrap_or_else(|duplicate| {
            panic!("duplicate route {duplicate} passed manifest validation")
        });
        let index = modules
            .iter()
            .enumerate()
            .map(|(i, slot)| (slot.id().to_owned(), i))
            .collect();
        Snapshot {
            release,
            modules,
            routes,
            index,
            canaries,
        }
    }

    /// The module serving `path`, if any, with the route that matched (the stable version).
    pub fn route(&self, path: &str) -> Option<(&Route, &Arc<ModuleSlot>)> {
        self.routes
            .lookup_route(path)
            .map(|(route, &index)| (route, &self.modules[index]))
    }

    /// The version of `stable`'s module that serves this request: the canary for its share of
    /// requests, the baseline for as many (sticky per client when the module names a key
    /// header and the request has it), else the stable version.
    pub fn version_for<'a>(
        &'a self,
        stable: &'a Arc<ModuleSlot>,
        headers: Option<&http::HeaderMap>,
    ) -> &'a Arc<ModuleSlot> {
        let Some(canary) = self.canaries.get(stable.id()) else {
            return stable;
        };
        let key = canary
            .slot
            .spec
            .rollout
            .sticky_header
            .as_deref()
            .and_then(|name| headers?.get(name))
            .map(|v| v.as_bytes());
        let sequence = REQUESTS.fetch_add(1, Ordering::Relaxed);
        match spark_rollout::choose_version(canary.share, canary.baseline.is_some(), key, sequence)
        {
            spark_rollout::Pick::Canary => &canary.slot,
            spark_rollout::Pick::Baseline => canary.baseline.as_ref().unwrap_or(stable),
            spark_rollout::Pick::Stable => stable,
        }
    }

    /// The stable version of module `id`.
    pub fn module(&self, id: &str) -> Option<&Arc<ModuleSlot>> {
        self.position(id).map(|i| &self.modules[i])
    }

    /// Where module `id` is in [`Snapshot::modules`].
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }
}

/// Which snapshot a control task last worked on, to tell when a new one was published (a
/// deploy, a start) and a full pass over the modules is due. A weak reference keeps the old
/// snapshot's address from being reused.
#[derive(Debug, Default)]
pub(crate) struct LastSnapshot(std::sync::Weak<Snapshot>);

impl LastSnapshot {
    /// True if `snapshot` is not the one seen last time; it is the one seen from now on.
    pub(crate) fn replaced_by(&mut self, snapshot: &Arc<Snapshot>) -> bool {
        let replaced = !std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(snapshot));
        if replaced {
            self.0 = Arc::downgrade(snapshot);
        }
        replaced
    }
}

/// Spreads requests without a key over versions.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The published snapshot.
pub(crate) type SharedSnapshot = Arc<ArcSwap<Snapshot>>;
