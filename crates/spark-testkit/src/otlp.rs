//! A real OTLP/HTTP receiver on 127.0.0.1 for tracing tests: it takes `POST /v1/traces`
//! with a protobuf `ExportTraceServiceRequest`, decodes it with the real message types
//! (`opentelemetry-proto`, through `spark_trace::otlp`) and keeps every span with its
//! resource. Or, started [`OtlpReceiver::stalled`], a collector that accepts connections and
//! never answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message;
use spark_trace::otlp::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use spark_trace::otlp::common::v1::{AnyValue, KeyValue, any_value};
use spark_trace::otlp::trace::v1::Span;

/// One span as received, with the attributes of the resource that sent it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The span.
    pub span: Span,
    /// Its resource's attributes (`service.name`, ...).
    pub resource: Vec<KeyValue>,
}

impl ReceivedSpan {
    /// The trace id in lowercase hex.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id in lowercase hex.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id in lowercase hex (empty: a root span).
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// The value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&any_value::Value> {
        find(&self.span.attributes, key)
    }

    /// The value of resource attribute `key`, if it is text.
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        match find(&self.resource, key) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    /// Attribute `key` if it is text.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attribute(key) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    /// Attribute `key` if it is a boolean.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.attribute(key) {
            Some(any_value::Value::BoolValue(b)) => Some(*b),
            _ => None,
        }
    }

    /// Attribute `key` if it is a number (whole or not).
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.attribute(key) {
            Some(any_value::Value::DoubleValue(d)) => Some(*d),
            Some(any_value::Value::IntValue(i)) => Some(*i as f64),
            _ => None,
        }
    }
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The receiver and what it has received.
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    refused: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl OtlpReceiver {
    /// A collector that answers every good export with 200 and keeps its spans.
    pub async fn start() -> OtlpReceiver {
        Self::listen(false).await
    }

    /// A collector that accepts connections, reads nothing and never answers.
    pub async fn stalled() -> OtlpReceiver {
        Self::listen(true).await
    }

    async fn listen(stall: bool) -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = OtlpReceiver {
            addr: listener.local_addr().unwrap(),
            spans: Arc::default(),
            refused: Arc::default(),
            connections: Arc::default(),
        };
        let (spans, refused, connections) = (
            receiver.spans.clone(),
            receiver.refused.clone(),
            receiver.connections.clone(),
        );
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                if stall {
                    held.push(stream);
                    continue;
                }
                let (spans, refused) = (spans.clone(), refused.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (spans, refused) = (spans.clone(), refused.clone());
                        async move { Ok::<_, Infallible>(export(request, &spans, &refused).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    /// The base URL, as `node.otlp_endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// Export requests refused (wrong path, content type or body).
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The first span `matches` accepts, waiting for it up to `within`.
    pub async fn span(
        &self,
        within: Duration,
        matches: impl Fn(&ReceivedSpan) -> bool,
    ) -> Option<ReceivedSpan> {
        let mut found = None;
        crate::eventually(within, || {
            found = self.spans().into_iter().find(|s| matches(s));
            found.is_some()
        })
        .await;
        found
    }
}

async fn export(
    request: hyper::Request<hyper::body::Incoming>,
    spans: &Mutex<Vec<ReceivedSpan>>,
    refused: &AtomicUsize,
) -> hyper::Response<Full<Bytes>> {
    let status = |code: u16| {
        let mut response = hyper::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
        response
    };
    let protobuf = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/x-protobuf");
    if request.method() != http::Method::POST || request.uri().path() != "/v1/traces" || !protobuf {
        refused.fetch_add(1, Ordering::SeqCst);
        return status(404);
    }
    let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
        refused.fetch_add(1, Ordering::SeqCst);
        return status(400);
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        refused.fetch_add(1, Ordering::SeqCst);
        return status(400);
    };
    let mut received = spans.lock().unwrap();
    for resource_spans in export.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            received.extend(scope.spans.into_iter().map(|span| ReceivedSpan {
                span,
                resource: resource.clone(),
            }));
        }
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from(
        ExportTraceServiceResponse::default().encode_to_vec(),
    )));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-protobuf"),
    );
    response
}
