//! Counters only the runtime can know, per module: guest CPU time, instantiations, and how
//! invocations ended. Plain atomics, written on the request path without locks and read by
//! whoever exports metrics or runs the control loop.

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
    instance_bytes: AtomicU64,
}

/// A consistent-enough copy of [`ModuleStats`] for reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    pub cpu_nanos: u64,
    pub instantiations: u64,
    pub instantiate_nanos: u64,
    pub invocations: u64,
    pub in_flight: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub cpu_limits: u64,
    pub memory_limits: u64,
    pub stack_overflows: u64,
    pub other_failures: u64,
    pub outbound_requests: u64,
    pub outbound_denied: u64,
    pub outbound_nanos: u64,
    pub body_limits: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl ModuleStats {
    pub(crate) fn add_cpu(&self, spent: Duration) {
        self.cpu_nanos.fetch_add(nanos(spent), Ordering::Relaxed);
    }

    pub fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn instantiated(&self, took: Duration) {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        self.instantiate_nanos
            .fetch_add(nanos(took), Ordering::Relaxed);
    }

    pub(crate) fn started(&self) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self, outcome: Result<(), &InvokeError>) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let Err(error) = outcome else { return };
        let counter = match error {
            InvokeError::Trap(_) | InvokeError::NoResponse | InvokeError::GuestError(_) => {
                &self.traps
            }
            InvokeError::Timeout(_) => &self.timeouts,
            InvokeError::CpuLimit(_) => &self.cpu_limits,
            InvokeError::MemoryLimit { .. } => &self.memory_limits,
            InvokeError::StackOverflow => &self.stack_overflows,
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

    pub(crate) fn body_limit_hit(&self) {
        self.body_limits.fetch_add(1, Ordering::Relaxed);
    }

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
        }
    }
}
