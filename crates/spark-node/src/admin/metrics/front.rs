//! Front-door metrics read at scrape time: each listener's connections (open, accepted,
//! refused and closed by reason, the memory they use), the node's capacity (instance slots
//! and reserved invocation memory), the host memory guests hold outside their linear
//! memory, and the loaded code on the node's ledger.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::serve::capacity::NodeCapacity;
use crate::serve::listener::ListenerStats;
use crate::serve::loaded::LoadedCode;

/// What the front-door collector reads.
#[derive(Clone)]
pub struct FrontView {
    pub capacity: Arc<NodeCapacity>,
    pub public: Arc<ListenerStats>,
    pub admin: Arc<ListenerStats>,
    /// The span exporter's counters (`None`: tracing is off, and the series are absent).
    pub tracing: Option<Arc<spark_trace::ExportStats>>,
    /// The ledger of loaded code.
    pub loaded: Arc<LoadedCode>,
}

impl std::fmt::Debug for FrontView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrontView")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerReason {
    listener: &'static str,
    reason: &'static str,
}

type Read = fn(&ListenerStats) -> f64;

const LISTENER_GAUGES: &[(&str, &str, Read)] = &[
    ("connections_open", "Client connections open now", |s| {
        s.open.load(Ordering::Relaxed) as f64
    }),
    (
        "connections_apart",
        "Connections served on the critical executor now (orchestrator.critical_first; at most node.max_connections_apart)",
        |s| s.apart.load(Ordering::Relaxed) as f64,
    ),
    (
        "connection_memory_bytes",
        "Memory the listener's connections use now (buffers, HTTP/2 stream state)",
        |s| s.memory.bytes() as f64,
    ),
];

type Count = fn(&ListenerStats) -> u64;

const LISTENER_COUNTERS: &[(&str, &str, Count)] = &[
    (
        "connections_accepted",
        "Client connections accepted (before the caps are applied)",
        |s| s.accepted.load(Ordering::Relaxed),
    ),
    (
        "connections_served_apart",
        "Connections whose first request was for a critical module, served on the critical executor (orchestrator.critical_first)",
        |s| s.moved_critical.load(Ordering::Relaxed),
    ),
    (
        "connections_apart_full",
        "Connections whose first request was for a critical module, served like any other because node.max_connections_apart were already apart",
        |s| s.apart_full.load(Ordering::Relaxed),
    ),
];

impl Collector for FrontView {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let listeners = [("public", &self.public), ("admin", &self.admin)];
        for (name, help, read) in LISTENER_GAUGES {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0.0).metric_type())?;
            for (listener, stats) in listeners {
                ConstGauge::new(read(stats))
                    .encode(family.encode_family(&ListenerLabel { listener })?)?;
            }
        }
        for (name, help, read) in LISTENER_COUNTERS {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (listener, stats) in listeners {
                ConstCounter::new(read(stats))
                    .encode(family.encode_family(&ListenerLabel { listener })?)?;
            }
        }
        let mut refused = encoder.encode_descriptor(
            "connections_refused",
            "Connections reset at accept, by the cap that refused them",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (listener, stats) in listeners {
            for (reason, counter) in [
                ("max_connections", &stats.refused_total_cap),
                ("max_connections_per_client", &stats.refused_client_cap),
                ("max_connection_rate_per_client", &stats.refused_client_rate),
                ("connection_memory", &stats.refused_memory),
            ] {
                ConstCounter::new(counter.load(Ordering::Relaxed))
                    .encode(refused.encode_family(&ListenerReason { listener, reason })?)?;
            }
        }
        let mut closed = encoder.encode_descriptor(
            "connections_closed",
            "Connections the node closed, by reason (header_timeout, idle, send_stall, reset_budget, tls_handshake, linger_cut)",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (listener, stats) in listeners {
            for (reason, n) in stats.closed() {
                let labels = ListenerReason {
                    listener,
                    reason: reason.as_str(),
                };
                ConstCounter::new(n).encode(closed.encode_family(&labels)?)?;
            }
        }
        let capacity = &self.capacity;
        let node_gauges = [
            (
                "node_slots_in_use",
                "Instance slots held by running invocations",
                f64::from(capacity.in_use()),
            ),
            (
                "node_slots",
                "Instance slots the node has (node.max_instances)",
                f64::from(capacity.total()),
            ),
            (
                "node_memory_reserved_bytes",
                "Memory reserved by running invocations (their limits.memory + limits.host_memory)",
                capacity.memory_in_use() as f64,
            ),
            (
                "node_memory_bytes",
                "Memory the node has for running invocations (from node.max_memory)",
                capacity.memory_total() as f64,
            ),
            (
                "host_memory_bytes",
                "Host memory held now for running guests outside their linear memory",
                spark_runtime::host_memory_in_use() as f64,
            ),
        ];
        let code = self.loaded.figures();
        let limit = code.limit.map(|limit| {
            (
                "loaded_code_limit_bytes",
                "What loaded code may reach before a request's load evicts other modules (the predictor's budget less its ready instances)",
                limit as f64,
            )
        });
        let loaded = (
            "loaded_code_bytes",
            "Loaded code of non-critical modules, in the predictor's units (each module's loaded artifact image: native code, metadata and data images; at least 64 KiB)",
            code.bytes as f64,
        );
        for (name, help, value) in node_gauges.into_iter().chain([loaded]).chain(limit) {
            let metric = ConstGauge::new(value);
            let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(family)?;
        }
        let (trims, released) = spark_runtime::heap::trims();
        for (name, help, value) in [
            (
                "heap_trims",
                "Times the node gave freed heap back to the kernel after compiles, loads or evictions",
                trims,
            ),
            (
                "heap_trimmed_bytes",
                "Resident bytes those trims gave back",
                released,
            ),
        ] {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let evictions = ConstCounter::new(code.evictions);
        evictions.encode(encoder.encode_descriptor(
            "loaded_code_evictions",
            "Modules evicted to make room for a request's load between the predictor's revisions",
            None,
            evictions.metric_type(),
        )?)?;
        if let Some(stats) = &self.tracing {
            encode_tracing(stats, &mut encoder)?;
        }
        Ok(())
    }
}

/// The span exporter's counters.
fn encode_tracing(
    stats: &spark_trace::ExportStats,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let counters = [
        (
            "trace_spans_exported",
            "Spans the OTLP collector accepted",
            &stats.exported,
        ),
        (
            "trace_spans_dropped",
            "Spans dropped because the export queue was full (node.otlp_queue)",
            &stats.dropped,
        ),
        (
            "trace_spans_failed",
            "Spans lost in export requests that failed (collector down, timed out or refusing)",
            &stats.failed,
        ),
        (
            "trace_export_failures",
            "OTLP export requests that failed",
            &stats.failed_requests,
        ),
    ];
    for (name, help, value) in counters {
        let metric = ConstCounter::new(value.load(Ordering::Relaxed));
        let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
        metric.encode(family)?;
    }
    Ok(())
}
