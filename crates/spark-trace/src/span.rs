//! A finished span as the node records it, and its OTLP encoding (the protobuf
//! `ExportTraceServiceRequest` of `opentelemetry-proto`).
//!
//! Spans are plain data: whoever serves a request fills one in when the request is over and
//! hands it to the exporter. Encoding happens on the exporter's task, off the request path.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::{self as proto, ResourceSpans, ScopeSpans};
use prost::Message;

use crate::context::{SpanId, TraceId};

/// What kind of span (OTLP `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The node serving a request.
    Server,
    /// A guest's outbound request, sent by the node.
    Client,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Str(String),
    /// A whole number.
    Int(i64),
    /// A number with a fraction (milliseconds).
    Double(f64),
    /// Yes or no.
    Bool(bool),
}

/// How the span's operation ended (OTLP `Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing to say (the OpenTelemetry convention for a server's 4xx and for success).
    Unset,
    /// Failed, with why.
    Error(String),
}

/// One finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    /// Its trace.
    pub trace_id: TraceId,
    /// Its own id.
    pub span_id: SpanId,
    /// The span it is a child of, if any.
    pub parent_id: Option<SpanId>,
    /// Whether the parent came from another process (a `traceparent` header).
    pub remote_parent: bool,
    /// The `tracestate` it carries, if any.
    pub tracestate: Option<String>,
    /// What it measures (`GET /api/...`).
    pub name: String,
    /// Server or client.
    pub kind: SpanKind,
    /// When it started, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// When it ended, nanoseconds since the Unix epoch.
    pub end_unix_nanos: u64,
    /// Its attributes, in order.
    pub attributes: Vec<(&'static str, Value)>,
    /// How it ended.
    pub status: Status,
}

/// `trace-flags` sampled, as OTLP's `Span.flags` low byte.
const FLAG_SAMPLED: u32 = 0x01;
/// OTLP `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// OTLP `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
const FLAG_IS_REMOTE: u32 = 0x200;

/// Who produced the spans: OTLP resource attributes (`service.name`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resource {
    /// Attribute names and values.
    pub attributes: Vec<(&'static str, String)>,
}

/// The protobuf body of one OTLP/HTTP export of `spans`.
pub fn encode(resource: &Resource, spans: &[SpanRecord]) -> Vec<u8> {
    request(resource, spans).encode_to_vec()
}

/// The OTLP export request carrying `spans` from `resource`.
pub fn request(resource: &Resource, spans: &[SpanRecord]) -> ExportTraceServiceRequest {
    let resource = ProtoResource {
        attributes: resource
            .attributes
            .iter()
            .map(|(k, v)| key_value(k, Value::Str(v.clone())))
            .collect(),
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "spark".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: spans.iter().map(to_proto).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn to_proto(span: &SpanRecord) -> proto::Span {
    let remote = if span.remote_parent {
        FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE
    } else {
        FLAG_HAS_IS_REMOTE
    };
    let (code, message) = match &span.status {
        Status::Unset => (proto::status::StatusCode::Unset, String::new()),
        Status::Error(message) => (proto::status::StatusCode::Error, message.clone()),
    };
    proto::Span {
        trace_id: span.trace_id.0.to_vec(),
        span_id: span.span_id.0.to_vec(),
        trace_state: span.tracestate.clone().unwrap_or_default(),
        parent_span_id: span.parent_id.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: FLAG_SAMPLED | remote,
        name: span.name.clone(),
        kind: match span.kind {
            SpanKind::Server => proto::span::SpanKind::Server,
            SpanKind::Client => proto::span::SpanKind::Client,
        } as i32,
        start_time_unix_nano: span.start_unix_nanos,
        end_time_unix_nano: span.end_unix_nanos.max(span.start_unix_nanos),
        attributes: span
            .attributes
            .iter()
            .map(|(k, v)| key_value(k, v.clone()))
            .collect(),
        status: Some(proto::Status {
            message,
            code: code as i32,
        }),
        ..Default::default()
    }
}

fn key_value(key: &str, value: Value) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Double(d) => any_value::Value::DoubleValue(d),
        Value::Bool(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_round_trip_through_protobuf() {
        let span = SpanRecord {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([8; 8]),
            parent_id: Some(SpanId([9; 8])),
            remote_parent: true,
            tracestate: Some("k=v".to_owned()),
            name: "GET /api/...".to_owned(),
            kind: SpanKind::Server,
            start_unix_nanos: 10,
            end_unix_nanos: 20,
            attributes: vec![
                ("spark.module", Value::Str("api".to_owned())),
                ("spark.cold_start", Value::Bool(true)),
            ],
            status: Status::Error("boom".to_owned()),
        };
        let resource = Resource {
            attributes: vec![("service.name", "spark".to_owned())],
        };
        let body = encode(&resource, std::slice::from_ref(&span));
        let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(decoded, request(&resource, &[span]));
        let got = &decoded.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(got.trace_id, vec![7; 16]);
        assert_eq!(got.parent_span_id, vec![9; 8]);
        assert_eq!(got.kind, proto::span::SpanKind::Server as i32);
        assert_eq!(got.flags, 0x301);
        assert_eq!(got.status.as_ref().unwrap().message, "boom");
    }
}
