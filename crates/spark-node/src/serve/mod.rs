//! The data plane: everything a request (or a job run) passes through, in order.
//!
//! [`listener`] (caps, TLS from [`tls`], one task per [`connection`] with its watchdog) ->
//! [`front`] (hyper, HTTP/1.1 and HTTP/2; [`bodies`] carry the body limits) -> route lookup
//! in the current [`snapshot`] ->
//! [`admission`] (per-module concurrency, bounded queue with deadline) -> node [`capacity`]
//! by priority class -> [`residency`] (load the module if it is not in memory) -> the
//! module's `spark_runtime::GuestModule` (on the module's [`executor`], paced by its
//! [`pacing::ModulePacer`]) -> the response body streamed back. [`jobs`] run scheduled
//! modules through the same admission and capacity.
//!
//! The decision worth knowing: nothing here waits on the control plane. The snapshot is
//! swapped whole; the orchestrator's actuators are atomics this plane reads.

pub mod admission;
pub mod bodies;
pub mod capacity;
pub mod connection;
pub mod executor;
pub mod front;
pub mod jobs;
pub mod latency;
pub mod listener;
pub mod pacing;
pub mod residency;
pub mod snapshot;
pub mod tls;
pub mod versions;
