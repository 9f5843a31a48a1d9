//! The hook through which the node traces guests' outbound requests (W3C Trace Context).
//!
//! The runtime knows nothing of spans or exporters: the node puts a [`TraceOutbound`] in the
//! extensions of the request it hands to [`crate::GuestModule::handle`] (only for modules
//! that opted in), and for every outbound request that passed the checks the hooks ask it
//! for the headers to set (`traceparent`, `tracestate`, replacing the guest's) and tell it
//! how the request went. Without one nothing is added and the guest's headers go as they are.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

/// Makes a span for each outbound request of one invocation.
pub trait OutboundTracer: Send + Sync {
    /// An outbound request is about to be sent: its span (a child of the invocation's).
    fn start(&self, method: &http::Method, uri: &http::Uri) -> Box<dyn OutboundSpan>;
}

/// The span of one outbound request. Dropped without [`OutboundSpan::end`], the request was
/// abandoned (the guest went away while it was in flight).
pub trait OutboundSpan: Send {
    /// The headers that carry the span's context to the server, each replacing the guest's
    /// header of that name; `None`: remove the guest's (a `tracestate` of another trace).
    fn headers(&self) -> Vec<(HeaderName, Option<HeaderValue>)>;
    /// The request got a response (its status), or failed (the `wasi:http` error code).
    fn end(self: Box<Self>, outcome: OutboundOutcome);
}

/// How an outbound request ended, as far as its span is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundOutcome {
    /// The response head arrived with this status.
    Response(u16),
    /// No response: why.
    Failed(String),
}

/// A request extension: trace this invocation's outbound requests with this tracer.
#[derive(Clone)]
pub struct TraceOutbound(pub Arc<dyn OutboundTracer>);

impl std::fmt::Debug for TraceOutbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceOutbound")
    }
}
