//! Request tracing on the request path: one server span per request, a client span per
//! outbound request of a module that opted in (`trace_outbound`), both handed to the
//! exporter (`spark-trace`) when they end.
//!
//! A request's span is a guard like its other records: it is finished exactly once, with the
//! response's status when the response body is done, with the refusal's status when the node
//! answers for the module, or as abandoned (499) when it is dropped first (the client went
//! away at any `.await`). Requests that match no route get a span too (404, no module), so a
//! trace that reaches the node never ends in a gap; connections refused before a request was
//! read have none.
//!
//! The decision worth knowing: tracing off is `None` in [`super::front::Front`], and then no
//! header is parsed, no id drawn, nothing allocated. On, a request costs two `getrandom`
//! calls, a few attribute strings and a `try_send`; the exporter runs on its own task and
//! never makes a request wait (see `spark_trace::export`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use spark_runtime::{
    InvocationCpu, InvocationInfo, OutboundOutcome, OutboundSpan, OutboundTracer, TraceOutbound,
};
use spark_trace::{
    Exporter, IdSource, OsRandom, SpanId, SpanKind, SpanRecord, Status, TraceId, TraceParent, Value,
};

use super::front::{CLIENT_CLOSED, cold_kind};
use super::residency::ColdStart;
use super::snapshot::ModuleSlot;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The node's tracing: where finished spans go.
pub(crate) struct Tracing {
    exporter: Exporter,
}

impl Tracing {
    pub(crate) fn new(exporter: Exporter) -> Tracing {
        Tracing { exporter }
    }

    /// The span of a request that arrived now with these headers: a child of the caller's
    /// span if `traceparent` is valid (and then with its `tracestate`), else a new trace.
    pub(crate) fn begin(&self, method: &http::Method, headers: &HeaderMap) -> RequestSpan {
        let mut ids = OsRandom;
        let mut parents = headers.get_all(TRACEPARENT).iter();
        // Two `traceparent` headers are as good as none: which one would be meant?
        let parent = match (parents.next(), parents.next()) {
            (Some(value), None) => TraceParent::parse(value.as_bytes()),
            _ => None,
        };
        let tracestate = parent.and_then(|_| {
            let values: Vec<&[u8]> = headers
                .get_all(TRACESTATE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            spark_trace::tracestate(&values)
        });
        let context = SpanContext {
            trace_id: parent.map_or_else(|| ids.trace_id(), |p| p.trace_id),
            span_id: ids.span_id(),
            // The OpenTelemetry default: follow the caller's decision, record new traces.
            sampled: parent.is_none_or(|p| p.sampled()),
            tracestate,
            exporter: self.exporter.clone(),
        };
        RequestSpan {
            context: Arc::new(context),
            parent: parent.map(|p| p.parent_id),
            start_unix_nanos: unix_nanos(),
            started: Instant::now(),
            method: method.to_string(),
            route: None,
            attributes: Vec::new(),
            cpu: None,
            finished: false,
        }
    }
}

/// What a request's span and its outbound spans share.
struct SpanContext {
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
    tracestate: Option<String>,
    exporter: Exporter,
}

/// The span of one request; finished once (dropped unfinished: abandoned).
pub(crate) struct RequestSpan {
    context: Arc<SpanContext>,
    parent: Option<SpanId>,
    start_unix_nanos: u64,
    started: Instant,
    method: String,
    route: Option<String>,
    attributes: Vec<(&'static str, Value)>,
    cpu: Option<InvocationCpu>,
    finished: bool,
}

impl RequestSpan {
    /// The request was routed to this version of a module.
    pub(crate) fn module(&mut self, slot: &ModuleSlot, route: &str) {
        self.route = Some(route.to_owned());
        self.attributes.extend([
            ("spark.module", Value::Str(slot.id().to_owned())),
            ("spark.release", Value::Str(slot.release.clone())),
            (
                "spark.priority",
                Value::Str(slot.spec.priority.as_str().to_owned()),
            ),
            ("http.route", Value::Str(route.to_owned())),
        ]);
    }

    /// Admission and node capacity let the request through after `waited`.
    pub(crate) fn admitted(&mut self, waited: Duration) {
        self.attributes
            .push(("spark.queue_ms", Value::Double(millis(waited))));
    }

    /// Whether the request waited for its module's code.
    pub(crate) fn residency(&mut self, cold: Option<ColdStart>) {
        self.attributes
            .push(("spark.cold_start", Value::Bool(cold.is_some())));
        if let Some(cold) = cold {
            self.attributes.extend([
                (
                    "spark.cold_start.kind",
                    Value::Str(cold_kind(cold).to_owned()),
                ),
                ("spark.cold_start_ms", Value::Double(millis(cold.took))),
            ]);
        }
    }

    /// The guest answered: how its instance was made, and its CPU meter.
    pub(crate) fn invoked(&mut self, info: Option<&InvocationInfo>, cpu: Option<InvocationCpu>) {
        if let Some(info) = info {
            self.attributes.extend([
                ("spark.instance_ready", Value::Bool(info.ready_instance)),
                (
                    "spark.instantiate_ms",
                    Value::Double(millis(info.instantiate)),
                ),
            ]);
        }
        self.cpu = cpu;
    }

    /// The tracer of the request's outbound requests (children of this span).
    pub(crate) fn outbound(&self, module: &str) -> TraceOutbound {
        TraceOutbound(Arc::new(ClientTracer {
            context: self.context.clone(),
            module: module.to_owned(),
        }))
    }

    /// Ends the span with the response's status; `outcome` says how the request went
    /// (`ok`, a refusal's reason, a guest failure's kind), `message` why it failed.
    pub(crate) fn finish(mut self, status: u16, outcome: &str, message: Option<String>) {
        self.end(status, outcome, message);
    }

    fn end(&mut self, status: u16, outcome: &str, message: Option<String>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let context = &self.context;
        if !context.sampled {
            return;
        }
        let mut attributes = std::mem::take(&mut self.attributes);
        attributes.extend([
            ("http.request.method", Value::Str(self.method.clone())),
            ("http.response.status_code", Value::Int(i64::from(status))),
            ("spark.outcome", Value::Str(outcome.to_owned())),
        ]);
        if let Some(cpu) = &self.cpu {
            attributes.push(("spark.cpu_ms", Value::Double(millis(cpu.used()))));
        }
        let status = match (status, message) {
            (CLIENT_CLOSED, _) => {
                Status::Error("the client went away before the response was complete".to_owned())
            }
            (500.., message) => {
                Status::Error(message.unwrap_or_else(|| format!("status {status}")))
            }
            _ => Status::Unset,
        };
        let name = match &self.route {
            Some(route) => format!("{} {route}", self.method),
            None => self.method.clone(),
        };
        context.exporter.record(SpanRecord {
            trace_id: context.trace_id,
            span_id: context.span_id,
            parent_id: self.parent,
            remote_parent: self.parent.is_some(),
            tracestate: context.tracestate.clone(),
            name,
            kind: SpanKind::Server,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.start_unix_nanos + nanos(self.started.elapsed()),
            attributes,
            status,
        });
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        self.end(CLIENT_CLOSED, "client_abandoned", None);
    }
}

/// Makes the client spans of one request's outbound requests.
struct ClientTracer {
    context: Arc<SpanContext>,
    module: String,
}

impl OutboundTracer for ClientTracer {
    fn start(&self, method: &http::Method, uri: &http::Uri) -> Box<dyn OutboundSpan> {
        Box::new(ClientSpan {
            context: self.context.clone(),
            span_id: OsRandom.span_id(),
            start_unix_nanos: unix_nanos(),
            started: Instant::now(),
            method: method.to_string(),
            attributes: vec![
                ("spark.module", Value::Str(self.module.clone())),
                ("http.request.method", Value::Str(method.to_string())),
                (
                    "server.address",
                    Value::Str(uri.host().unwrap_or("").to_owned()),
                ),
                (
                    "server.port",
                    Value::Int(i64::from(uri.port_u16().unwrap_or(
                        if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
                            443
                        } else {
                            80
                        },
                    ))),
                ),
                ("url.full", Value::Str(without_query(uri))),
            ],
            ended: false,
        })
    }
}

/// The URL without its query (which may carry secrets) and fragment.
fn without_query(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let authority = uri.authority().map_or("", |a| a.as_str());
    format!("{scheme}://{authority}{}", uri.path())
}

/// The span of one outbound request.
struct ClientSpan {
    context: Arc<SpanContext>,
    span_id: SpanId,
    start_unix_nanos: u64,
    started: Instant,
    method: String,
    attributes: Vec<(&'static str, Value)>,
    ended: bool,
}

impl ClientSpan {
    fn record(&mut self, outcome: OutboundOutcome) {
        if std::mem::replace(&mut self.ended, true) || !self.context.sampled {
            return;
        }
        let mut attributes = std::mem::take(&mut self.attributes);
        let status = match outcome {
            OutboundOutcome::Response(code) => {
                attributes.push(("http.response.status_code", Value::Int(i64::from(code))));
                if code >= 400 {
                    Status::Error(format!("status {code}"))
                } else {
                    Status::Unset
                }
            }
            OutboundOutcome::Failed(why) => {
                attributes.push(("error.type", Value::Str(why.clone())));
                Status::Error(why)
            }
        };
        let context = &self.context;
        context.exporter.record(SpanRecord {
            trace_id: context.trace_id,
            span_id: self.span_id,
            parent_id: Some(context.span_id),
            remote_parent: false,
            tracestate: context.tracestate.clone(),
            name: self.method.clone(),
            kind: SpanKind::Client,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.start_unix_nanos + nanos(self.started.elapsed()),
            attributes,
            status,
        });
    }
}

impl OutboundSpan for ClientSpan {
    fn headers(&self) -> Vec<(HeaderName, Option<HeaderValue>)> {
        let context = &self.context;
        let parent = spark_trace::traceparent(context.trace_id, self.span_id, context.sampled);
        let state = context.tracestate.as_deref().map(HeaderValue::from_str);
        vec![
            (
                HeaderName::from_static(TRACEPARENT),
                HeaderValue::from_str(&parent).ok(),
            ),
            (
                HeaderName::from_static(TRACESTATE),
                state.and_then(Result::ok),
            ),
        ]
    }

    fn end(mut self: Box<Self>, outcome: OutboundOutcome) {
        self.record(outcome);
    }
}

impl Drop for ClientSpan {
    fn drop(&mut self) {
        self.record(OutboundOutcome::Failed("abandoned".to_owned()));
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, nanos)
}
