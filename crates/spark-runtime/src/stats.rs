//! Counters only the runtime can know, per module: guest CPU time, instantiations, and how
//! invocations ended. Plain atomics, written on the request path without locks and read by
//! whoever exports metrics or runs the control loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::InvokeError;

/// Per-module runtime counters (monotonic, except `in_flight`).
#[derive(Debug, Default)]
pub struct ModuleStats {
    cpu_nanos: AtomicU64,
    instantiations: AtomicU64,
    instantiate_nanos: AtomicU64,
    invocations: AtomicU64,
    in_flight: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    cpu_limits: AtomicU64,
    memory_limits: AtomicU64,
    stack_overflows: AtomicU64,
    other_failures: AtomicU64,
    outbound_requests: AtomicU64,
    outbound_denied: AtomicU64,
    outbound_nanos: AtomicU64,
    body_limits: AtomicU64,
    host_memory_limits: AtomicU64,
    resource_limits: AtomicU64,
    cancelled: AtomicU64,
    instance_bytes: AtomicU64,
    shared_requests: AtomicU64,
    shared_instances: AtomicU64,
    yielded: AtomicU64,
}

/// A consistent-enough copy of [`ModuleStats`] for reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Guest CPU time, in nanoseconds (instantiation, ready instances and host calls included).
    pub cpu_nanos: u64,
    /// Instances created, ready instances included.
    pub instantiations: u64,
    /// Wall-clock time spent instantiating, in nanoseconds.
    pub instantiate_nanos: u64,
    /// Invocations started (requests, probes and job runs).
    pub invocations: u64,
    /// Invocations running now (a gauge, not a counter).
    pub in_flight: u64,
    /// Invocations whose guest trapped (panic, unreachable, out-of-bounds access, ...).
    pub traps: u64,
    /// Invocations stopped at their wall-clock limit.
    pub timeouts: u64,
    /// Invocations stopped at their CPU time limit.
    pub cpu_limits: u64,
    /// Invocations that hit their linear-memory limit.
    pub memory_limits: u64,
    /// Invocations that overflowed their Wasm stack.
    pub stack_overflows: u64,
    /// Invocations that failed otherwise (no instance free, a job's failure status, ...).
    pub other_failures: u64,
    /// Outbound HTTP requests the guests made, refused ones included.
    pub outbound_requests: u64,
    /// Of those, refused by the node: host not allowed, too many in flight, or a protected
    /// address.
    pub outbound_denied: u64,
    /// Time the allowed outbound requests took to their response head (or failure), in
    /// nanoseconds; pacing waits not included.
    pub outbound_nanos: u64,
    /// Responses cut off for streaming more than `limits.response_body`.
    pub body_limits: u64,
    /// Invocations stopped for holding more host memory than `limits.host_memory`.
    #[serde(default)]
    pub host_memory_limits: u64,
    /// Invocations that hit `limits.resources` (too many handles at once).
    #[serde(default)]
    pub resource_limits: u64,
    /// Invocations cancelled because their client went away.
    #[serde(default)]
    pub cancelled: u64,
    /// Requests a WASI 0.3 instance took while it served another (they shared it).
    #[serde(default)]
    pub shared_requests: u64,
    /// WASI 0.3 instances serving requests now (a gauge).
    #[serde(default)]
    pub shared_instances: u64,
    /// Guests started on threads in the idle class because critical work was live
    /// (`crate::critical_first`).
    #[serde(default)]
    pub yielded: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl ModuleStats {
    pub(crate) fn add_cpu(&self, spent: Duration) {
        self.cpu_nanos.fetch_add(nanos(spent), Ordering::Relaxed);
    }

    /// Guest CPU time so far, all invocations together.
    pub fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn instantiated(&self, took: Duration) {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        self.instantiate_nanos
            .fetch_add(nanos(took), Ordering::Relaxed);
    }

    /// A guest starts running; it counts as in flight until the guard is finished or
    /// dropped (a cancelled guest is counted as such).
    pub(crate) fn started(self: &Arc<Self>) -> InFlight {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            stats: Some(self.clone()),
        }
    }

    fn ended(&self, outcome: Option<Result<(), &InvokeError>>) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let Some(outcome) = outcome else {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Err(error) = outcome else { return };
        let counter = match error {
            InvokeError::Trap(_) | InvokeError::NoResponse | InvokeError::GuestError(_) => {
                &self.traps
            }
            InvokeError::Timeout(_) => &self.timeouts,
            InvokeError::CpuLimit(_) => &self.cpu_limits,
            InvokeError::MemoryLimit { .. } => &self.memory_limits,
            InvokeError::StackOverflow => &self.stack_overflows,
            InvokeError::HostMemoryLimit { .. } => &self.host_memory_limits,
            InvokeError::ResourceLimit(_) => &self.resource_limits,
            _ => &self.other_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn outbound(&self, allowed: bool, took: Duration) {
        self.outbound_requests.fetch_add(1, Ordering::Relaxed);
        if !allowed {
            self.outbound_denied.fetch_add(1, Ordering::Relaxed);
        }
        self.outbound_nanos
            .fetch_add(nanos(took), Ordering::Relaxed);
    }

    pub(crate) fn set_instance_bytes(&self, bytes: u64) {
        self.instance_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Linear memory of the most recently created instance (what a ready instance costs).
    pub fn instance_bytes(&self) -> u64 {
        self.instance_bytes.load(Ordering::Relaxed)
    }

    /// A request joined a WASI 0.3 instance that was serving another.
    pub(crate) fn shared_request(&self) {
        self.shared_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A WASI 0.3 instance starts serving; counted until the guard is dropped.
    pub(crate) fn instance_opened(self: &Arc<Self>) -> OpenInstance {
        self.shared_instances.fetch_add(1, Ordering::Relaxed);
        OpenInstance(self.clone())
    }

    /// A guest starts on the idle-class threads, behind live critical work.
    pub(crate) fn yielded(&self) {
        self.yielded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn body_limit_hit(&self) {
        self.body_limits.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter (each atomically, not all at one instant).
    pub fn snapshot(&self) -> StatsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            cpu_nanos: load(&self.cpu_nanos),
            instantiations: load(&self.instantiations),
            instantiate_nanos: load(&self.instantiate_nanos),
            invocations: load(&self.invocations),
            in_flight: load(&self.in_flight),
            traps: load(&self.traps),
            timeouts: load(&self.timeouts),
            cpu_limits: load(&self.cpu_limits),
            memory_limits: load(&self.memory_limits),
            stack_overflows: load(&self.stack_overflows),
            other_failures: load(&self.other_failures),
            outbound_requests: load(&self.outbound_requests),
            outbound_denied: load(&self.outbound_denied),
            outbound_nanos: load(&self.outbound_nanos),
            body_limits: load(&self.body_limits),
            host_memory_limits: load(&self.host_memory_limits),
            resource_limits: load(&self.resource_limits),
            cancelled: load(&self.cancelled),
            shared_requests: load(&self.shared_requests),
            shared_instances: load(&self.shared_instances),
            yielded: load(&self.yielded),
        }
    }
}

/// A running guest as counted in [`ModuleStats`]: `in_flight` goes back down when the guest
/// ends, however it ends (a future dropped mid-run counts as cancelled).
pub(crate) struct InFlight {
    stats: Option<Arc<ModuleStats>>,
}

impl InFlight {
    /// The guest ended with `outcome`.
    pub(crate) fn finish(mut self, outcome: Result<(), &InvokeError>) {
        if let Some(stats) = self.stats.take() {
            stats.ended(Some(outcome));
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(stats) = self.stats.take() {
            stats.ended(None);
        }
    }
}

/// A WASI 0.3 instance in [`ModuleStats::shared_instances`] while it lives.
pub(crate) struct OpenInstance(Arc<ModuleStats>);

impl Drop for OpenInstance {
    fn drop(&mut self) {
        self.0.shared_instances.fetch_sub(1, Ordering::Relaxed);
    }
}
