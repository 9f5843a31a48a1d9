//! Request tracing for a Spark node: W3C Trace Context in and out, spans out over OTLP.
//!
//! - [`context`]: `traceparent` and `tracestate` parsed strictly (a bad header is ignored,
//!   never an error), span and trace ids from the operating system's generator.
//! - [`span`]: a finished span as plain data and its OTLP protobuf encoding, with the message
//!   types of `opentelemetry-proto`.
//! - [`export`]: the bounded queue and the task that posts batches to a collector.
//!
//! The decision worth knowing: the OpenTelemetry SDK is not used. The node already knows
//! when a request starts and ends, its queue time, CPU time and cold start; what it needs is
//! the wire format and a queue it controls (bounded, counted, never waited on), posted with
//! the hyper client it already links. The SDK's batch processor would add its own threads
//! and an HTTP stack of its choosing, and would not say how many spans it dropped.

pub mod context;
pub mod export;
pub mod span;

pub use context::{IdSource, OsRandom, SpanId, TraceId, TraceParent, traceparent, tracestate};
pub use export::{ExportSettings, ExportStats, Exporter, traces_url};
pub use span::{Resource, SpanKind, SpanRecord, Status, Value};

/// The OTLP message types, for receivers (the test kit's) that decode what [`Exporter`] sends.
pub use opentelemetry_proto::tonic as otlp;
