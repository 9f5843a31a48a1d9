//! The HTTP front end: accept connections, route, admit, invoke, answer.
//!
//! Every failure becomes a response here (404 no route, 503 + `Retry-After` when admission
//! refuses or no instance is available, 500 for a guest that trapped, 504 for one that ran out
//! of time), so one module's trouble is one request's status code and nothing more.
//! The response body is wrapped so the module's slot is held, and its latency measured, until
//! the last byte is sent: a guest streaming a body is still running.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use spark_manifest::Route;
use spark_runtime::{InvocationInfo, InvokeError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admission::{Rejection, Ticket};
use crate::capacity::{NodeCapacity, NodeSlot};
use crate::metrics::SharedMetrics;
use crate::residency::ColdStart;
use crate::state::{ModuleSlot, SharedSnapshot};

/// Header carrying the part of the path below the matched route's prefix.
pub const PATH_INFO_HEADER: &str = "spark-path-info";
/// Header carrying the route that matched (`/api/...`).
pub const MATCHED_ROUTE_HEADER: &str = "spark-matched-route";

/// Header on responses that waited for their module to be loaded: `load` (from the AOT
/// cache) or `compile`, then the milliseconds it cost, e.g. `load; 7.2ms`.
pub const COLD_START_HEADER: &str = "spark-cold-start";

fn cold_start_value(cold: ColdStart) -> HeaderValue {
    let kind = match cold.source {
        spark_runtime::CodeSource::AotCache => "load",
        spark_runtime::CodeSource::Compiled => "compile",
    };
    let value = format!("{kind}; {:.1}ms", cold.took.as_secs_f64() * 1e3);
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("cold"))
}

/// Seconds a client is told to wait after a 503.
const RETRY_AFTER_SECS: u64 = 1;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response the node sends.
pub type NodeBody = UnsyncBoxBody<Bytes, BoxError>;

/// Routes and invokes; shared by all connections.
pub struct Front {
    pub snapshot: SharedSnapshot,
    pub metrics: SharedMetrics,
    pub capacity: Arc<NodeCapacity>,
    pub local_addr: SocketAddr,
}

/// Accepts connections until `shutdown`, then gives open connections `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    front: Arc<Front>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        let service = hyper::service::service_fn(move |request| front.clone().handle(request));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
}

impl Front {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<NodeBody>, Infallible> {
        let started = Instant::now();
        let snapshot = self.snapshot.load_full();
        let Some((route, slot)) = snapshot.route(request.uri().path()) else {
            self.metrics.unrouted();
            return Ok(text(StatusCode::NOT_FOUND, "no route matches this path"));
        };
        let slot = snapshot.version_for(slot, Some(request.headers())).clone();
        let request = self.prepare(request, route);
        let ticket = match slot.admission.admit().await {
            Ok(ticket) => ticket,
            Err(rejection) => {
                slot.metrics.rejected(rejection.as_str());
                slot.refused(503, started.elapsed());
                return Ok(busy(rejection));
            }
        };
        let Some(node_slot) = self
            .capacity
            .admit(slot.spec.priority, slot.spec.limits.queue_timeout)
            .await
        else {
            slot.metrics.rejected(Rejection::NodeFull.as_str());
            slot.refused(503, started.elapsed());
            return Ok(busy(Rejection::NodeFull));
        };
        let (guest, cold) = match slot.residency.acquire().await {
            Ok(acquired) => acquired,
            Err(error) => {
                tracing::error!(module = %slot.id(), %error, "module could not be loaded");
                slot.refused(503, started.elapsed());
                let mut response = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "module unavailable: its code could not be loaded",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                return Ok(response);
            }
        };
        if let Some(cold) = cold {
            slot.metrics.cold_start(cold);
        }
        match guest.handle(request).await {
            Ok(response) => {
                if let Some(info) = response.extensions().get::<InvocationInfo>() {
                    slot.metrics.instantiated(info.instantiate);
                }
                let status = response.status().as_u16();
                let (mut parts, body) = response.into_parts();
                if let Some(cold) = cold {
                    parts
                        .headers
                        .insert(COLD_START_HEADER, cold_start_value(cold));
                }
                let body = Tracked {
                    inner: body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
                    done: Some(Completion {
                        slot,
                        status,
                        started,
                        _ticket: ticket,
                        _node_slot: node_slot,
                    }),
                };
                Ok(Response::from_parts(parts, UnsyncBoxBody::new(body)))
            }
            Err(error) => {
                slot.finished(error.status(), started.elapsed());
                Ok(failure(&error))
            }
        }
    }

    /// Tells the guest which route matched and what lies below it (as Spin does with its
    /// `spin-path-info`), overwriting whatever the client sent under those names; and gives
    /// HTTP/1.0 requests without a `Host` the authority `wasi:http` requires.
    fn prepare(&self, mut request: Request<Incoming>, route: &Route) -> Request<Incoming> {
        let path_info = HeaderValue::from_str(route.path_info(request.uri().path()));
        let matched = HeaderValue::from_str(&route.to_string());
        let headers = request.headers_mut();
        if let (Ok(path_info), Ok(matched)) = (path_info, matched) {
            headers.insert(PATH_INFO_HEADER, path_info);
            headers.insert(MATCHED_ROUTE_HEADER, matched);
        }
        if request.uri().authority().is_none()
            && !request.headers().contains_key(header::HOST)
            && let Ok(value) = HeaderValue::from_str(&self.local_addr.to_string())
        {
            request.headers_mut().insert(header::HOST, value);
        }
        request
    }
}

/// A plain-text response from the node itself.
pub fn text(status: StatusCode, message: &str) -> Response<NodeBody> {
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

fn busy(rejection: Rejection) -> Response<NodeBody> {
    let message = match rejection {
        Rejection::QueueFull => "module busy: its queue is full",
        Rejection::QueueTimeout => "module busy: no slot freed up in time",
        Rejection::NodeFull => "node at capacity: lower-priority work is shed first",
    };
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

fn failure(error: &InvokeError) -> Response<NodeBody> {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match error {
        InvokeError::Trap(_) => "the module failed (trap); see the node log".to_owned(),
        other => other.to_string(),
    };
    let mut response = text(status, &message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// Recorded when the response body is done (or dropped, if the client went away).
struct Completion {
    slot: Arc<ModuleSlot>,
    status: u16,
    started: Instant,
    _ticket: Ticket,
    _node_slot: NodeSlot,
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.slot.finished(self.status, self.started.elapsed());
    }
}

/// A body that releases its module slot and records metrics once finished.
struct Tracked {
    inner: NodeBody,
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
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done.take();
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
