//! The data plane: everything a request (or a job run) passes through, in order.
//!
//! [`listener`] (caps, TLS from [`tls`], one task per [`connection`] with its watchdog; a
//! connection whose first request is for a critical module moves to [`critical_home`]) ->
//! [`front`] (hyper, HTTP/1.1 and HTTP/2; [`bodies`] carry the body limits) -> route lookup
//! in the current [`snapshot`] ->
//! [`admission`] (per-module concurrency, bounded queue with deadline) -> node [`capacity`]
//! by priority class -> [`residency`] (load the module if it is not in memory) -> the
//! module's `spark_runtime::GuestModule` (on the module's [`executor`], paced by its
//! [`pacing::ModulePacer`]) -> the response body streamed back. [`jobs`] run scheduled
//! modules through the same admission and capacity. [`trace`] gives each request a span
//! (W3C `traceparent` in, OTLP out) when the node exports traces.
//!
//! The decision worth knowing: nothing here waits on the control plane. The snapshot is
//! swapped whole; the orchestrator's actuators are atomics this plane reads. The one thing
//! this plane tells the control plane is which modules had work ([`activity`]): a flag set
//! at a request's start and end, so the control loop and the predictor read only those.

pub(crate) mod activity;
pub(crate) mod admission;
pub(crate) mod bodies;
pub(crate) mod capacity;
pub(crate) mod connection;
pub(crate) mod connection_rate;
pub(crate) mod critical_home;
pub(crate) mod executor;
pub(crate) mod front;
pub(crate) mod gate;
pub(crate) mod gathered;
pub(crate) mod jobs;
pub(crate) mod latency;
pub(crate) mod linger;
pub(crate) mod listener;
pub(crate) mod loaded;
pub(crate) mod pacing;
pub(crate) mod residency;
pub(crate) mod snapshot;
pub(crate) mod tls;
pub(crate) mod trace;
pub(crate) mod versions;
