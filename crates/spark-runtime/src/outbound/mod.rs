//! Outbound HTTP from guests: only to the hosts the manifest allows, timed per module.
//!
//! The check runs in `send_request`, after Wasmtime has assembled the full URI, so it sees the
//! scheme, host and port that will really be dialled. A refused request gets the standard
//! `HTTP-request-denied` error code, which guests can tell apart from a network failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use spark_manifest::OutboundPolicy;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::guest::LatencySink;
use crate::stats::ModuleStats;

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
    pub(crate) policy: Arc<OutboundPolicy>,
    pub(crate) stats: Arc<ModuleStats>,
    pub(crate) module: Arc<str>,
    pub(crate) pacing: Arc<OutboundPacing>,
    pub(crate) latency: Option<Arc<dyn LatencySink>>,
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
    pub fn set_gap(&self, gap: Duration) {
        self.gap_ms.store(
            u64::try_from(gap.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

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
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_owned();
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let stats = self.stats.clone();
        if !self.policy.allows(&scheme, &host, port) {
            tracing::warn!(module = %self.module, %scheme, %host, port, "outbound request denied: host not in allowed_outbound_hosts");
            stats.outbound(false, Duration::ZERO);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let wait = self.pacing.reserve();
        let latency = self.latency.clone();
        Box::new(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let started = Instant::now();
            let result = wasmtime_wasi_http::default_send_request(request, options).await;
            let took = started.elapsed();
            stats.outbound(true, took);
            if let Some(sink) = &latency {
                sink.record(took);
            }
            let (response, io) = result?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_spaces_reservations_by_the_gap() {
        let pacing = OutboundPacing::default();
        assert_eq!(pacing.reserve(), Duration::ZERO, "no gap, no wait");
        pacing.set_gap(Duration::from_millis(200));
        assert_eq!(
            pacing.reserve(),
            Duration::ZERO,
            "the first request goes at once"
        );
        let second = pacing.reserve();
        let third = pacing.reserve();
        assert!(
            second > Duration::from_millis(150) && second <= Duration::from_millis(200),
            "{second:?}"
        );
        assert!(
            third > Duration::from_millis(350) && third <= Duration::from_millis(400),
            "{third:?}"
        );
    }
}
