//! The HTTP front end: route, admit, invoke, answer.
//!
//! A request's life is one owned unit. Its admission ticket (the module's concurrency slot)
//! is owned by the guest task and released when the guest ends, however it ends; its node
//! slot (instance slot and reserved memory) is shared by the guest task and the response
//! body and released when both are done; the client going away (an HTTP/1 close, an HTTP/2
//! reset, a connection closed for stalling) drops the response body or the request future,
//! which cancels the guest. Nothing is counted up without a guard that counts it down.
//!
//! Every failure becomes a response in one place ([`Refusal::respond`]): 404 no route, 413 a
//! declared body over the module's limit, 503 + `Retry-After` when admission or the node
//! refuses or the module cannot be loaded, 500 for a guest that trapped, 504 for one that ran
//! out of time. One module's trouble is one request's status code and nothing more.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use spark_manifest::{Route, SpinRouteHeaders};
use spark_runtime::{InvocationCpu, InvocationInfo, InvokeError, LoadError};

use super::admission::Rejection;
use super::bodies::{Progress, RequestBody};
use super::capacity::{NodeCapacity, NodeRefusal, NodeSlot, reservation};
use super::listener::ClientAddr;
use super::residency::ColdStart;
use super::snapshot::{ModuleSlot, SharedSnapshot};
use super::trace::{RequestSpan, Tracing};
use crate::admin::metrics::SharedMetrics;

/// Header carrying the part of the path below the matched route's prefix.
pub(crate) const PATH_INFO_HEADER: &str = "spark-path-info";
/// Header carrying the route that matched (`/api/...`).
pub(crate) const MATCHED_ROUTE_HEADER: &str = "spark-matched-route";

/// Header on responses that waited for their module to be loaded: `load` (from the AOT
/// cache), `shared` (another module had the same code in memory) or `compile`, then the
/// milliseconds it cost, e.g. `load; 7.2ms`.
pub(crate) const COLD_START_HEADER: &str = "spark-cold-start";

/// Recorded for a request whose client went away before its response was complete (the
/// status nginx uses for "client closed request").
pub(crate) const CLIENT_CLOSED: u16 = 499;

fn cold_start_value(cold: ColdStart) -> HeaderValue {
    let value = format!(
        "{}; {:.1}ms",
        cold_kind(cold),
        cold.took.as_secs_f64() * 1e3
    );
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("cold"))
}

/// How a cold start got its code, as headers and metrics name it.
pub(crate) fn cold_kind(cold: ColdStart) -> &'static str {
    match cold.source {
        spark_runtime::CodeSource::AotCache => "load",
        spark_runtime::CodeSource::Shared => "shared",
        spark_runtime::CodeSource::Compiled => "compile",
    }
}

/// Seconds a client is told to wait after a 503.
const RETRY_AFTER_SECS: u64 = 1;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the node sends.
pub(crate) type NodeBody = UnsyncBoxBody<Bytes, BoxError>;

/// Routes and invokes; shared by all connections.
pub(crate) struct Front {
    pub snapshot: SharedSnapshot,
    pub metrics: SharedMetrics,
    pub capacity: Arc<NodeCapacity>,
    /// The listener's address (the `Host` of HTTP/1.0 requests that name none).
    pub authority: HeaderValue,
    /// The listener's scheme (`http` or `https`), for Spin's `spin-full-url`.
    pub scheme: &'static str,
    /// Request tracing; `None`: off (no header read, no span made).
    pub tracing: Option<Arc<Tracing>>,
}

/// Why a routed request got no answer from its guest.
#[derive(Debug)]
enum Refusal {
    BodyTooLarge(u64),
    Admission(Rejection),
    Node(NodeRefusal),
    Unloadable(LoadError),
    Guest(InvokeError),
}

impl Refusal {
    /// How the request went, as its span's `spark.outcome` says it.
    fn outcome(&self) -> &'static str {
        match self {
            Refusal::BodyTooLarge(_) => "body_too_large",
            Refusal::Admission(rejection) => rejection.as_str(),
            Refusal::Node(refusal) => refusal.as_str(),
            Refusal::Unloadable(_) => "unloadable",
            Refusal::Guest(error) => error.kind(),
        }
    }

    /// The response, with the module's metrics recorded: the one exit for every failure.
    fn respond(self, slot: &ModuleSlot, started: Instant) -> Response<NodeBody> {
        let (status, message) = match &self {
            Refusal::BodyTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over the module's limit of {limit} bytes"),
            ),
            Refusal::Admission(Rejection::QueueFull) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "module busy: its queue is full".to_owned(),
            ),
            Refusal::Admission(Rejection::QueueTimeout) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "module busy: no slot freed up in time".to_owned(),
            ),
            Refusal::Admission(Rejection::NodeFull) | Refusal::Node(NodeRefusal::Slots) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "node at capacity: lower-priority work is shed first".to_owned(),
            ),
            Refusal::Node(NodeRefusal::Memory) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "node memory fully reserved: lower-priority work is shed first".to_owned(),
            ),
            Refusal::Unloadable(error) => {
                tracing::error!(module = %slot.id(), error = %spark_error::chain(error), "module could not be loaded");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "module unavailable: its code could not be loaded".to_owned(),
                )
            }
            Refusal::Guest(error) => (
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                match error {
                    InvokeError::Trap(_) => "the module failed (trap); see the node log".to_owned(),
                    other => other.to_string(),
                },
            ),
        };
        match &self {
            Refusal::Admission(rejection) => slot.metrics.rejected(rejection.as_str()),
            Refusal::Node(refusal) => slot.metrics.rejected(refusal.as_str()),
            Refusal::BodyTooLarge(_) => slot.metrics.rejected("body_too_large"),
            Refusal::Unloadable(_) | Refusal::Guest(_) => {}
        }
        let took = started.elapsed();
        match self {
            Refusal::Guest(_) => slot.finished(status.as_u16(), took),
            _ => slot.refused(status.as_u16(), took),
        }
        let mut response = text(status, &message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

impl Front {
    /// Serves one request. Never fails: every error is a response.
    pub(crate) async fn handle(
        self: Arc<Self>,
        request: Request<RequestBody>,
    ) -> Response<NodeBody> {
        let started = Instant::now();
        let mut span = self
            .tracing
            .as_ref()
            .map(|tracing| tracing.begin(request.method(), request.headers()));
        let snapshot = self.snapshot.load_full();
        let Some((route, stable)) = snapshot.route(request.uri().path()) else {
            self.metrics.unrouted();
            if let Some(span) = span {
                span.finish(StatusCode::NOT_FOUND.as_u16(), "unrouted", None);
            }
            return text(StatusCode::NOT_FOUND, "no route matches this path");
        };
        let slot = snapshot
            .version_for(stable, Some(request.headers()))
            .clone();
        // The control loop sees the module from now on (and again at the request's end).
        slot.activity.mark();
        let mut record = Record::new(slot.clone(), started);
        let mut request = self.prepare(request, route, &slot);
        if let Some(span) = &mut span {
            span.module(&slot, &route.to_string());
            if slot.spec.trace_outbound {
                request.extensions_mut().insert(span.outbound(slot.id()));
            }
        }
        match self.invoke(&slot, request, started, &mut span).await {
            Ok(response) => {
                record.disarm();
                response
            }
            Err(refusal) => {
                record.disarm();
                let outcome = refusal.outcome();
                let message = match &refusal {
                    Refusal::Guest(error) => Some(spark_error::chain(error).to_string()),
                    _ => None,
                };
                let response = refusal.respond(&slot, started);
                if let Some(span) = span {
                    span.finish(response.status().as_u16(), outcome, message);
                }
                response
            }
        }
    }

    /// Admission, node capacity, residency, then the guest; each step's refusal is a `?`.
    async fn invoke(
        &self,
        slot: &Arc<ModuleSlot>,
        request: Request<RequestBody>,
        started: Instant,
        span: &mut Option<RequestSpan>,
    ) -> Result<Response<NodeBody>, Refusal> {
        let limits = &slot.spec.limits;
        if let Some(declared) = request.body().declared_length()
            && declared > limits.request_body
        {
            return Err(Refusal::BodyTooLarge(limits.request_body));
        }
        let request = request.map(|body| body.limit(limits.request_body));
        let ticket = slot.admission.admit().await.map_err(Refusal::Admission)?;
        slot.activity.mark();
        let node_slot = self
            .capacity
            .admit(
                slot.spec.priority,
                reservation(limits),
                limits.queue_timeout,
            )
            .await
            .map_err(Refusal::Node)?;
        if let Some(span) = span {
            span.admitted(started.elapsed());
        }
        let (guest, cold) = slot
            .residency
            .acquire()
            .await
            .map_err(Refusal::Unloadable)?;
        if let Some(cold) = cold {
            slot.metrics.cold_start(cold);
        }
        if let Some(span) = span {
            span.residency(cold);
        }
        let node_slot = Arc::new(node_slot);
        let response = guest
            .handle(
                request,
                GuestClaims {
                    _ticket: ticket,
                    node: node_slot.clone(),
                },
            )
            .await
            .map_err(Refusal::Guest)?;
        let info = response.extensions().get::<InvocationInfo>();
        if let Some(info) = info {
            slot.metrics.instantiated(info.instantiate);
        }
        if let Some(span) = span {
            let cpu = response.extensions().get::<InvocationCpu>().cloned();
            span.invoked(info, cpu);
        }
        let status = response.status().as_u16();
        let (mut parts, body) = response.into_parts();
        if let Some(cold) = cold {
            parts
                .headers
                .insert(COLD_START_HEADER, cold_start_value(cold));
        }
        let inner = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
        let progress = Progress::declared(&parts.headers, &inner);
        let body = Tracked {
            progress,
            inner,
            done: Some(Completion {
                record: Record::new(slot.clone(), started).with_status(status),
                span: span.take(),
                _node_slot: node_slot,
            }),
        };
        Ok(Response::from_parts(parts, UnsyncBoxBody::new(body)))
    }

    /// Tells the guest which route matched and what lies below it (as Spin does with its
    /// `spin-path-info`), overwriting whatever the client sent under those names; and gives
    /// HTTP/1.0 requests without a `Host` the authority `wasi:http` requires. A module of a
    /// Spin application also gets Spin's own headers ([`spin_headers`]).
    fn prepare(
        &self,
        mut request: Request<RequestBody>,
        route: &Route,
        slot: &ModuleSlot,
    ) -> Request<RequestBody> {
        let path_info = HeaderValue::from_str(route.path_info(request.uri().path()));
        let matched = HeaderValue::from_str(&route.to_string());
        let headers = request.headers_mut();
        if let (Ok(path_info), Ok(matched)) = (path_info, matched) {
            headers.insert(PATH_INFO_HEADER, path_info);
            headers.insert(MATCHED_ROUTE_HEADER, matched);
        }
        if request.uri().authority().is_none() && !request.headers().contains_key(header::HOST) {
            let authority = self.authority.clone();
            request.headers_mut().insert(header::HOST, authority);
        }
        if let Some(base) = &slot.spec.spin_base_path {
            spin_headers(&mut request, route, base, self.scheme);
        }
        request
    }
}

/// Spin's request headers (`spin-full-url`, `spin-path-info`, `spin-matched-route`,
/// `spin-base-path`, `spin-component-route`, `spin-raw-component-route`, `spin-client-addr`),
/// replacing any the client sent: a Spin component may trust them as it does under Spin.
fn spin_headers(request: &mut Request<RequestBody>, route: &Route, base: &str, scheme: &str) {
    let path = request.uri().path();
    let spin = SpinRouteHeaders::new(route, base, path);
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            let host = request.headers().get(header::HOST)?;
            host.to_str().ok().map(str::to_owned)
        })
        .unwrap_or_default();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let full_url = format!("{scheme}://{host}{path_and_query}");
    let client = request
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.to_string());
    let headers = request.headers_mut();
    // Whatever the client sent under these names goes, even when a value cannot be given.
    for name in SPIN_HEADERS {
        headers.remove(name);
    }
    let values = [
        ("spin-full-url", Some(full_url)),
        ("spin-path-info", Some(spin.path_info)),
        ("spin-matched-route", Some(spin.matched_route)),
        ("spin-base-path", Some(spin.base_path)),
        ("spin-component-route", Some(spin.component_route)),
        ("spin-raw-component-route", Some(spin.raw_component_route)),
        ("spin-client-addr", client),
    ];
    for (name, value) in values {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
}

/// The headers [`spin_headers`] sets.
const SPIN_HEADERS: [&str; 7] = [
    "spin-full-url",
    "spin-path-info",
    "spin-matched-route",
    "spin-base-path",
    "spin-component-route",
    "spin-raw-component-route",
    "spin-client-addr",
];

/// A plain-text response from the node itself.
pub(crate) fn text(status: StatusCode, message: &str) -> Response<NodeBody> {
    let body = Full::new(Bytes::from(format!("{message}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Records a request in its module's metrics exactly once: with its status when it is done,
/// or as [`CLIENT_CLOSED`] if it is dropped first (the client went away).
struct Record {
    slot: Option<Arc<ModuleSlot>>,
    started: Instant,
    status: u16,
}

impl Record {
    fn new(slot: Arc<ModuleSlot>, started: Instant) -> Record {
        Record {
            slot: Some(slot),
            started,
            status: CLIENT_CLOSED,
        }
    }

    fn with_status(mut self, status: u16) -> Record {
        self.status = status;
        self
    }

    /// Someone else records this request.
    fn disarm(&mut self) {
        self.slot = None;
    }

    /// Records `status` now.
    fn done(&mut self, status: u16) {
        if let Some(slot) = self.slot.take() {
            slot.finished(status, self.started.elapsed());
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.done(CLIENT_CLOSED);
    }
}

/// Held by a response body: its record, its span, and its share of the node slot.
struct Completion {
    record: Record,
    span: Option<RequestSpan>,
    _node_slot: Arc<NodeSlot>,
}

impl Completion {
    /// The request is over: with its response's status, or [`CLIENT_CLOSED`].
    fn finish(mut self, status: u16) {
        self.record.done(status);
        if let Some(span) = self.span.take() {
            let outcome = if status == CLIENT_CLOSED {
                "client_abandoned"
            } else {
                "ok"
            };
            span.finish(status, outcome, None);
        }
    }
}

/// What the guest's side of a request holds: the module's admission ticket and the node slot
/// (shared with the response body). The runtime splits the instance's part off the node slot
/// and says when what is left is only waiting for an instance to end.
struct GuestClaims {
    _ticket: super::admission::Ticket,
    node: Arc<NodeSlot>,
}

impl spark_runtime::Claims for GuestClaims {
    fn split_instance(&mut self) -> Option<Box<dyn spark_runtime::Claims>> {
        let instance = self.node.split_instance()?;
        Some(Box::new(InstanceClaims(instance)))
    }

    fn ending(&mut self) {
        self.node.ending();
    }
}

/// An instance's part of a node slot (its slot and linear memory), held by the instance.
struct InstanceClaims(super::capacity::NodeClaim);

impl spark_runtime::Claims for InstanceClaims {
    fn ending(&mut self) {
        self.0.ending();
    }
}

/// A body that releases its node slot and records its request once finished.
struct Tracked {
    inner: NodeBody,
    progress: Progress,
    done: Option<Completion>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            self.progress.sent(frame);
        }
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => self.progress.finished(self.inner.is_end_stream()),
            Poll::Ready(Some(Err(_))) => true,
            Poll::Pending => false,
        };
        if ended && let Some(done) = self.done.take() {
            let status = done.record.status;
            done.finish(status);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // A body at its end may be dropped without a last poll (an empty body, a known
        // length): that is a finished request, not an abandoned one.
        if let Some(done) = self.done.take() {
            let status = if self.progress.finished(self.inner.is_end_stream()) {
                done.record.status
            } else {
                CLIENT_CLOSED
            };
            done.finish(status);
        }
    }
}
