//! Prometheus metrics of a node, one registry per node (so several nodes can share a process
//! in tests).
//!
//! Two kinds: what the front end observes (requests by status, latency, instantiation time,
//! rejections, job runs) is recorded as it happens through per-module handles created once, so
//! the request path never looks up a label set; what the runtime counts (guest CPU, traps,
//! timeouts, ...) lives in its atomics and is read by a collector at scrape time.
//!
//! Decision worth knowing: a module's histograms and its decisions counter get their series at
//! their first observation ([`Lazy`]), not when the module is installed. A node may register
//! thousands of modules it never serves; their three histograms were 63 of each module's 89
//! lines (1,000 registered modules: 6 MB and 22 ms per scrape, nearly all of it for modules
//! that had served nothing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

mod collector;
mod front;
mod nn;

pub(crate) use front::FrontView;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::control::ControlView;
use crate::serve::snapshot::SharedSnapshot;
use collector::NodeCollector;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ModuleLabel {
    module: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    module: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    module: String,
    reason: String,
}

/// The node's registry and metric families.
pub struct NodeMetrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    latency: Family<ModuleLabel, Histogram>,
    instantiation: Family<ModuleLabel, Histogram>,
    rejections: Family<ReasonLabels, Counter>,
    job_runs: Family<ReasonLabels, Counter>,
    job_duration: Family<ModuleLabel, Histogram>,
    decisions: Family<ModuleLabel, Counter>,
    cold_starts: Family<ReasonLabels, Counter>,
    cold_start_seconds: Family<ModuleLabel, Histogram>,
    unrouted: Counter,
    /// Each module's request counts since the node started, kept across its releases.
    totals: Mutex<HashMap<String, Arc<RequestTotals>>>,
}

/// A module's requests since the node started, across every release that served it: the
/// same requests `spark_http_requests` counts, summed for `spark status`.
#[derive(Debug, Default)]
struct RequestTotals {
    requests: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 18))
}

fn instantiation_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 18))
}

impl NodeMetrics {
    pub fn new(
        snapshot: SharedSnapshot,
        control: Option<Arc<ControlView>>,
        nn: Option<spark_nn::NnService>,
        front: FrontView,
    ) -> NodeMetrics {
        let mut registry = Registry::with_prefix("spark");
        let requests = Family::<StatusLabels, Counter>::default();
        let latency = Family::<ModuleLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let instantiation = Family::<ModuleLabel, Histogram>::new_with_constructor(
            instantiation_histogram as fn() -> Histogram,
        );
        let rejections = Family::<ReasonLabels, Counter>::default();
        let job_runs = Family::<ReasonLabels, Counter>::default();
        let job_duration = Family::<ModuleLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let unrouted = Counter::default();
        let decisions = Family::<ModuleLabel, Counter>::default();
        let cold_starts = Family::<ReasonLabels, Counter>::default();
        let cold_start_seconds = Family::<ModuleLabel, Histogram>::new_with_constructor(
            instantiation_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests served, by module and status code",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from admission to the end of the response body",
            latency.clone(),
        );
        registry.register(
            "instantiation_duration_seconds",
            "Time to create a fresh instance for a request",
            instantiation.clone(),
        );
        registry.register(
            "admission_rejections",
            "Requests refused by admission control (503), by reason",
            rejections.clone(),
        );
        registry.register(
            "job_runs",
            "Scheduled job runs, by outcome",
            job_runs.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Wall time of scheduled job runs",
            job_duration.clone(),
        );
        registry.register(
            "unrouted_requests",
            "Requests that matched no route (404)",
            unrouted.clone(),
        );
        registry.register(
            "orchestrator_decisions",
            "Plan changes the orchestrator made to a module",
            decisions.clone(),
        );
        registry.register(
            "cold_starts",
            "Requests or job runs that waited for their module's code to be loaded, by kind (load: from the AOT cache; shared: in memory for another module; compile)",
            cold_starts.clone(),
        );
        registry.register(
            "cold_start_duration_seconds",
            "Time a cold start added to a request",
            cold_start_seconds.clone(),
        );
        registry.register_collector(Box::new(NodeCollector { snapshot, control }));
        registry.register_collector(Box::new(front));
        if let Some(nn) = nn {
            registry.register_collector(Box::new(nn::NnCollector(nn)));
        }
        NodeMetrics {
            registry,
            requests,
            latency,
            instantiation,
            rejections,
            job_runs,
            job_duration,
            decisions,
            cold_starts,
            cold_start_seconds,
            unrouted,
            totals: Mutex::default(),
        }
    }

    /// Handles for one module, created once when the module is installed; each of its
    /// series appears at its first observation (request latency for HTTP modules, run
    /// durations for jobs).
    pub fn module(&self, id: &str) -> ModuleMetrics {
        let label = ModuleLabel {
            module: id.to_owned(),
        };
        let totals = self
            .totals
            .lock()
            .expect("totals lock")
            .entry(id.to_owned())
            .or_default()
            .clone();
        ModuleMetrics {
            module: id.to_owned(),
            totals,
            requests: self.requests.clone(),
            latency: Lazy::new(&self.latency, &label),
            instantiation: Lazy::new(&self.instantiation, &label),
            rejections: self.rejections.clone(),
            job_runs: self.job_runs.clone(),
            job_duration: Lazy::new(&self.job_duration, &label),
            decisions: Lazy::new(&self.decisions, &label),
            cold_starts: self.cold_starts.clone(),
            cold_start_seconds: Lazy::new(&self.cold_start_seconds, &label),
        }
    }

    pub fn unrouted(&self) {
        self.unrouted.inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// One module's series in a family, created there at its first use and then held, so that
/// later uses look nothing up. Clones share it.
#[derive(Clone)]
struct Lazy<M> {
    family: Family<ModuleLabel, M>,
    label: ModuleLabel,
    made: Arc<OnceLock<M>>,
}

impl<M: Clone + prometheus_client::metrics::TypedMetric> Lazy<M>
where
    fn() -> M: prometheus_client::metrics::family::MetricConstructor<M>,
{
    fn new(family: &Family<ModuleLabel, M>, label: &ModuleLabel) -> Lazy<M> {
        Lazy {
            family: family.clone(),
            label: label.clone(),
            made: Arc::default(),
        }
    }

    fn get(&self) -> &M {
        self.made
            .get_or_init(|| self.family.get_or_create(&self.label).clone())
    }
}

/// Per-module metric handles.
#[derive(Clone)]
pub struct ModuleMetrics {
    module: String,
    totals: Arc<RequestTotals>,
    requests: Family<StatusLabels, Counter>,
    latency: Lazy<Histogram>,
    instantiation: Lazy<Histogram>,
    rejections: Family<ReasonLabels, Counter>,
    job_runs: Family<ReasonLabels, Counter>,
    job_duration: Lazy<Histogram>,
    decisions: Lazy<Counter>,
    cold_starts: Family<ReasonLabels, Counter>,
    cold_start_seconds: Lazy<Histogram>,
}

impl ModuleMetrics {
    pub fn decision(&self) {
        self.decisions.get().inc();
    }

    pub fn cold_start(&self, cold: crate::serve::residency::ColdStart) {
        let kind = crate::serve::front::cold_kind(cold);
        self.cold_starts.get_or_create(&self.reason(kind)).inc();
        self.cold_start_seconds
            .get()
            .observe(cold.took.as_secs_f64());
    }

    pub fn request(&self, status: u16, took: Duration) {
        let labels = StatusLabels {
            module: self.module.clone(),
            code: status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get().observe(took.as_secs_f64());
        self.totals.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.totals.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request turned away before it reached the guest (also counted by `request`).
    pub(crate) fn refused(&self) {
        self.totals.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The module's requests since the node started, across its releases.
    pub(crate) fn counts(&self) -> crate::admin::status::RequestCounts {
        crate::admin::status::RequestCounts {
            requests: self.totals.requests.load(Ordering::Relaxed),
            errors: self.totals.errors.load(Ordering::Relaxed),
            refused: self.totals.refused.load(Ordering::Relaxed),
        }
    }

    pub fn instantiated(&self, took: Duration) {
        self.instantiation.get().observe(took.as_secs_f64());
    }

    pub fn rejected(&self, reason: &str) {
        self.rejections.get_or_create(&self.reason(reason)).inc();
    }

    pub fn job_run(&self, outcome: &str, took: Duration) {
        self.job_runs.get_or_create(&self.reason(outcome)).inc();
        self.job_duration.get().observe(took.as_secs_f64());
    }

    fn reason(&self, reason: &str) -> ReasonLabels {
        ReasonLabels {
            module: self.module.clone(),
            reason: reason.to_owned(),
        }
    }
}

/// Keeps the type alias readable where a shared registry is passed around.
pub(crate) type SharedMetrics = Arc<NodeMetrics>;
