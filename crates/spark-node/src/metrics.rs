//! Prometheus metrics of a node, one registry per node (so several nodes can share a process
//! in tests).
//!
//! Two kinds: what the front end observes (requests by status, latency, instantiation time,
//! rejections, job runs) is recorded as it happens through per-module handles created once, so
//! the request path never looks up a label set; what the runtime counts (guest CPU, traps,
//! timeouts, ...) lives in its atomics and is read by a collector at scrape time.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use spark_runtime::StatsSnapshot;

use crate::state::{ModuleSlot, SharedSnapshot};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModuleLabel {
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    module: String,
    priority: String,
    world: String,
    digest: String,
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
    unrouted: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 18))
}

fn instantiation_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 18))
}

impl NodeMetrics {
    pub fn new(snapshot: SharedSnapshot) -> NodeMetrics {
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
        registry.register_collector(Box::new(RuntimeCollector { snapshot }));
        NodeMetrics {
            registry,
            requests,
            latency,
            instantiation,
            rejections,
            job_runs,
            job_duration,
            unrouted,
        }
    }

    /// Handles for one module, created once when the module is installed. Latency series
    /// exist for HTTP modules, run-duration series for jobs.
    pub fn module(&self, id: &str, is_job: bool) -> ModuleMetrics {
        let label = ModuleLabel {
            module: id.to_owned(),
        };
        let (latency, job_duration) = if is_job {
            (
                latency_histogram(),
                self.job_duration.get_or_create(&label).clone(),
            )
        } else {
            (
                self.latency.get_or_create(&label).clone(),
                latency_histogram(),
            )
        };
        ModuleMetrics {
            module: id.to_owned(),
            requests: self.requests.clone(),
            latency,
            instantiation: self.instantiation.get_or_create(&label).clone(),
            rejections: self.rejections.clone(),
            job_runs: self.job_runs.clone(),
            job_duration,
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

/// Per-module metric handles.
#[derive(Clone)]
pub struct ModuleMetrics {
    module: String,
    requests: Family<StatusLabels, Counter>,
    latency: Histogram,
    instantiation: Histogram,
    rejections: Family<ReasonLabels, Counter>,
    job_runs: Family<ReasonLabels, Counter>,
    job_duration: Histogram,
}

impl ModuleMetrics {
    pub fn request(&self, status: u16, took: Duration) {
        let labels = StatusLabels {
            module: self.module.clone(),
            code: status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.observe(took.as_secs_f64());
    }

    pub fn instantiated(&self, took: Duration) {
        self.instantiation.observe(took.as_secs_f64());
    }

    pub fn rejected(&self, reason: &str) {
        self.rejections.get_or_create(&self.reason(reason)).inc();
    }

    pub fn job_run(&self, outcome: &str, took: Duration) {
        self.job_runs.get_or_create(&self.reason(outcome)).inc();
        self.job_duration.observe(took.as_secs_f64());
    }

    fn reason(&self, reason: &str) -> ReasonLabels {
        ReasonLabels {
            module: self.module.clone(),
            reason: reason.to_owned(),
        }
    }
}

/// Reads the runtime's per-module atomics at scrape time.
struct RuntimeCollector {
    snapshot: SharedSnapshot,
}

impl std::fmt::Debug for RuntimeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeCollector")
    }
}

type Counted = (&'static str, &'static str, fn(&StatsSnapshot) -> f64);
type Gauged = (&'static str, &'static str, fn(&ModuleSlot) -> i64);

const COUNTERS: &[Counted] = &[
    (
        "guest_cpu_seconds",
        "Guest CPU time measured around guest execution",
        |s| s.cpu_nanos as f64 / 1e9,
    ),
    ("instantiations", "Instances created", |s| {
        s.instantiations as f64
    }),
    (
        "guest_traps",
        "Invocations that trapped or returned no response",
        |s| s.traps as f64,
    ),
    (
        "guest_timeouts",
        "Invocations stopped at their wall-clock limit",
        |s| s.timeouts as f64,
    ),
    (
        "guest_cpu_limit_exceeded",
        "Invocations stopped at their CPU-time limit",
        |s| s.cpu_limits as f64,
    ),
    (
        "guest_memory_limit_exceeded",
        "Invocations stopped at their memory limit",
        |s| s.memory_limits as f64,
    ),
    (
        "guest_stack_overflows",
        "Invocations that overflowed the Wasm stack",
        |s| s.stack_overflows as f64,
    ),
    (
        "guest_response_body_limit_exceeded",
        "Responses aborted at the body size limit",
        |s| s.body_limits as f64,
    ),
    (
        "outbound_requests",
        "Outbound HTTP requests attempted by guests",
        |s| s.outbound_requests as f64,
    ),
    (
        "outbound_denied",
        "Outbound HTTP requests refused by the allow list",
        |s| s.outbound_denied as f64,
    ),
];

impl Collector for RuntimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot.load();
        let rows: Vec<(ModuleLabel, StatsSnapshot)> = snapshot
            .modules
            .iter()
            .map(|slot| {
                (
                    ModuleLabel {
                        module: slot.id().to_owned(),
                    },
                    slot.guest.stats().snapshot(),
                )
            })
            .collect();
        for (name, help, read) in COUNTERS {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0.0).metric_type(),
            )?;
            for (label, stats) in &rows {
                ConstCounter::new(read(stats)).encode(family.encode_family(label)?)?;
            }
        }
        let gauges: [Gauged; 2] = [
            ("module_in_flight", "Invocations running now", |slot| {
                i64::from(slot.admission.running())
            }),
            (
                "module_queued",
                "Requests waiting for admission now",
                |slot| i64::from(slot.admission.queued()),
            ),
        ];
        for (name, help, read) in gauges {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            for (slot, (label, _)) in snapshot.modules.iter().zip(&rows) {
                ConstGauge::new(read(slot)).encode(family.encode_family(label)?)?;
            }
        }
        let mut info = encoder.encode_descriptor(
            "module_info",
            "Modules installed on this node",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for slot in &snapshot.modules {
            let labels = InfoLabels {
                module: slot.id().to_owned(),
                priority: slot.spec.priority.as_str().to_owned(),
                world: slot.guest.prepared().entry.world().to_owned(),
                digest: slot.guest.prepared().digest.clone(),
            };
            ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Keeps the type alias readable where a shared registry is passed around.
pub type SharedMetrics = Arc<NodeMetrics>;
