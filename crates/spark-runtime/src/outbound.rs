//! Outbound HTTP from guests: only to the hosts the manifest allows, timed per module.
//!
//! The check runs in `send_request`, after Wasmtime has assembled the full URI, so it sees the
//! scheme, host and port that will really be dialled. A refused request gets the standard
//! `HTTP-request-denied` error code, which guests can tell apart from a network failure.

use std::sync::Arc;
use std::time::Instant;

use http_body_util::BodyExt;
use spark_manifest::OutboundPolicy;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

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
            stats.outbound(false, std::time::Duration::ZERO);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        Box::new(async move {
            let started = Instant::now();
            let result = wasmtime_wasi_http::default_send_request(request, options).await;
            stats.outbound(true, started.elapsed());
            let (response, io) = result?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}
