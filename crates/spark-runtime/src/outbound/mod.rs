//! Outbound HTTP from guests: only to the hosts the manifest allows, only to addresses the
//! node does not protect, over pooled connections, a bounded number at a time, timed per
//! module.
//!
//! Four checks, in order, each refusing with a standard `wasi:http` error code that guests can
//! tell apart from a network failure, counted as a denied request and logged once:
//! 1. the name: scheme, host and port against `allowed_outbound_hosts`, after Wasmtime has
//!    assembled the full URI (`HTTP-request-denied`);
//! 2. the invocation's places: at most `limits.outbound_requests` requests in flight, a place
//!    held until the response body ends or is dropped (`connection-limit-reached`);
//! 3. pacing (a wait, not a refusal: the orchestrator spaces background modules' requests);
//! 4. the address: the host is resolved once and every address judged ([`address`]); the
//!    connection goes only to addresses that passed (`destination-IP-prohibited`).
//!
//! The decision worth knowing: the node, not Wasmtime's `default_send_request`, dials. That
//! is what lets it judge the address it really connects to, and keep connections alive
//! ([`client`], [`pool`], [`body`]) instead of a new TCP and TLS handshake per request.

mod address;
mod body;
mod client;
mod pool;
#[cfg(test)]
mod tests;
mod trace;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

pub(crate) use client::{NodeOutbound, OutboundClient};
pub use trace::{OutboundOutcome, OutboundSpan, OutboundTracer, TraceOutbound};

use crate::guest::LatencySink;
use crate::stats::ModuleStats;
use client::{SendError, Target, Timeouts};

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

/// The `wasi:http` hooks of one invocation.
pub(crate) struct OutboundHooks {
    /// The module's client (its policy and connection pool).
    pub(crate) client: OutboundClient,
    pub(crate) stats: Arc<ModuleStats>,
    pub(crate) module: Arc<str>,
    pub(crate) pacing: Arc<OutboundPacing>,
    pub(crate) latency: Option<Arc<dyn LatencySink>>,
    /// This invocation's places for requests in flight (`limits.outbound_requests`).
    pub(crate) in_flight: InFlight,
    /// Traces the invocation's outbound requests (its module opted in and tracing is on).
    pub(crate) tracer: Option<TraceOutbound>,
}

/// Places for one invocation's outbound requests in flight.
pub(crate) struct InFlight {
    places: Arc<Semaphore>,
    limit: u32,
}

impl InFlight {
    pub(crate) fn new(limit: u32) -> InFlight {
        InFlight {
            places: Arc::new(Semaphore::new(limit as usize)),
            limit,
        }
    }
}

/// Spaces a module's outbound requests at least `gap` apart (0: no spacing). The orchestrator
/// sets the gap for background modules when the uplink is slow, so their traffic does not
/// compete with critical modules for a congested link.
#[derive(Debug, Default)]
pub struct OutboundPacing {
    gap_ms: AtomicU64,
    next_slot: Mutex<Option<Instant>>,
}

impl OutboundPacing {
    /// Sets the minimum gap between the module's outbound requests, kept in whole milliseconds
    /// (zero: no spacing). Applies from the next request.
    pub fn set_gap(&self, gap: Duration) {
        self.gap_ms.store(
            u64::try_from(gap.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The gap in force, in whole milliseconds.
    pub fn gap(&self) -> Duration {
        Duration::from_millis(self.gap_ms.load(Ordering::Relaxed))
    }

    /// Reserves the next send slot; returns how long to wait for it.
    fn reserve(&self) -> Duration {
        let gap = self.gap();
        if gap.is_zero() {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut next = self.next_slot.lock().expect("pacing lock");
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + gap);
        slot - now
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let refuse = |e: HttpError| -> SendFuture { Box::new(async { Err(e) }) };
        let target = match Target::of(request.uri()) {
            Ok(target) => target,
            Err(e) => return refuse(e),
        };
        let (module, stats) = (self.module.clone(), self.stats.clone());
        let (scheme, host, port) = (target.scheme(), target.host(), target.port());
        if !self.client.policy().allows(scheme, host, port) {
            tracing::warn!(%module, scheme, host, port, "outbound request denied: host not in allowed_outbound_hosts");
            stats.outbound(false, Duration::ZERO);
            return refuse(HttpError::HttpRequestDenied);
        }
        let Ok(place) = self.in_flight.places.clone().try_acquire_owned() else {
            let limit = self.in_flight.limit;
            tracing::warn!(%module, scheme, host, port, limit, "outbound request refused: limits.outbound_requests already in flight");
            stats.outbound(false, Duration::ZERO);
            return refuse(HttpError::ConnectionLimitReached);
        };
        let wait = self.pacing.reserve();
        let latency = self.latency.clone();
        let client = self.client.clone();
        let span = self.tracer.as_ref().map(|tracer| {
            let span = tracer.0.start(request.method(), request.uri());
            for (name, value) in span.headers() {
                match value {
                    Some(value) => request.headers_mut().insert(name, value),
                    None => request.headers_mut().remove(name),
                };
            }
            span
        });
        Box::new(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let started = Instant::now();
            let result = client
                .send(&target, request, Timeouts::from(options), place)
                .await;
            let took = started.elapsed();
            let response = match result {
                Err(SendError::Refused { refused }) => {
                    let (host, port) = (target.host(), target.port());
                    tracing::warn!(%module, host, port, addresses = %client::list(&refused), "outbound request refused: the host resolves only to addresses the node protects (allow one by IP literal with its port)");
                    stats.outbound(false, Duration::ZERO);
                    if let Some(span) = span {
                        span.end(OutboundOutcome::Failed("destination-IP-prohibited".into()));
                    }
                    return Err(HttpError::DestinationIpProhibited);
                }
                other => {
                    stats.outbound(true, took);
                    if let Some(sink) = &latency {
                        sink.record(took);
                    }
                    let sent = other.map_err(SendError::into_http);
                    if let Some(span) = span {
                        span.end(match &sent {
                            Ok(response) => OutboundOutcome::Response(response.status().as_u16()),
                            Err(e) => OutboundOutcome::Failed(format!("{e:?}")),
                        });
                    }
                    sent?
                }
            };
            let io = Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>;
            Ok((response, io))
        })
    }
}
