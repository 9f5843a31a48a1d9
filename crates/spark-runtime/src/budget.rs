//! The execution budget of one invocation: wall-clock deadline, CPU time, host memory, and
//! the pacing hook.
//!
//! CPU time is measured around guest execution: [`Metered`] reads the thread's CPU clock
//! before and after every poll of the future that runs the guest (instantiation, Wasm code and
//! the host calls it makes). The thread clock, not the wall clock, so time a thread spends
//! preempted by the kernel (a low-priority executor under contention) is not charged. The epoch callback reads the total at every tick and stops the guest when
//! a limit is passed; it records *why*, so the failure is reported as a timeout or a CPU limit
//! rather than as an anonymous trap.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::InvokeError;
use crate::host_memory::{self, HostAccount};
use crate::stats::ModuleStats;

/// A future the guest waits on before it may continue (see [`Pacer`]).
pub type PaceFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Decides, at each epoch tick while a module's guest runs, whether it must wait before it
/// continues. The orchestrator implements this to enforce CPU shares: a module over its share
/// gets a future that completes when it may run again. `None` means "yield and carry on".
/// `stats` are the module's counters (its CPU time so far among them).
pub trait Pacer: Send + Sync {
    /// Called at every epoch tick while one of the module's guests runs (after the limits are
    /// checked); `Some` makes the guest wait for the future before it continues. Must not block.
    fn on_tick(&self, stats: &ModuleStats) -> Option<PaceFuture>;
}

/// CPU time of the calling thread.
pub(crate) fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Limits and accounting for one invocation, shared by the store and the metering wrapper.
pub(crate) struct Budget {
    /// When the budget was created; the deadline is kept relative to it so it can be reset.
    origin: Instant,
    deadline_ns: AtomicU64,
    pub(crate) timeout: Duration,
    pub(crate) cpu_limit: Duration,
    cpu_used_nanos: AtomicU64,
    instantiate_nanos: AtomicU64,
    verdict: Mutex<Option<InvokeError>>,
    pub(crate) pacer: Option<Arc<dyn Pacer>>,
    /// Host memory held for the invocation, charged while its guest is polled.
    pub(crate) host: HostAccount,
    pub(crate) host_limit: u64,
    /// In an instance several requests share (WASI 0.3): each request's share of the CPU.
    shares: Option<Mutex<Vec<CpuShare>>>,
}

/// One request's share of the CPU of the instance it shares with others: the instance's CPU
/// time divided equally among the requests on it at each poll.
#[derive(Clone, Default)]
pub(crate) struct CpuShare(Arc<AtomicU64>);

impl CpuShare {
    /// CPU charged to the request so far.
    pub(crate) fn used(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

impl Budget {
    pub(crate) fn new(
        timeout: Duration,
        cpu_limit: Duration,
        host_limit: u64,
        pacer: Option<Arc<dyn Pacer>>,
    ) -> Budget {
        Budget {
            origin: Instant::now(),
            deadline_ns: AtomicU64::new(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)),
            timeout,
            cpu_limit,
            cpu_used_nanos: AtomicU64::new(0),
            instantiate_nanos: AtomicU64::new(0),
            verdict: Mutex::new(None),
            pacer,
            host: HostAccount::new(),
            host_limit,
            shares: None,
        }
    }

    /// The budget of an instance that several requests share (WASI 0.3). The limits are per
    /// request: CPU is charged to the requests on the instance in equal shares and the
    /// instance stops when one share passes `cpu_limit`; host memory may reach `host_limit`
    /// times the requests on it; the deadline moves to each new request's (see
    /// [`Budget::restart`]).
    pub(crate) fn shared(
        timeout: Duration,
        cpu_limit: Duration,
        host_limit: u64,
        pacer: Option<Arc<dyn Pacer>>,
    ) -> Budget {
        Budget {
            shares: Some(Mutex::default()),
            ..Budget::new(timeout, cpu_limit, host_limit, pacer)
        }
    }

    /// A request joins a shared instance: its CPU share starts at zero.
    pub(crate) fn join_share(&self) -> CpuShare {
        let share = CpuShare::default();
        if let Some(shares) = &self.shares {
            shares.lock().expect("shares lock").push(share.clone());
        }
        share
    }

    /// A request leaves a shared instance: it is charged nothing more.
    pub(crate) fn leave_share(&self, share: &CpuShare) {
        if let Some(shares) = &self.shares {
            shares
                .lock()
                .expect("shares lock")
                .retain(|s| !Arc::ptr_eq(&s.0, &share.0));
        }
    }

    /// When the invocation must end.
    pub(crate) fn deadline(&self) -> Instant {
        self.origin + Duration::from_nanos(self.deadline_ns.load(Ordering::Relaxed))
    }

    /// Starts the clock again: a pre-instantiated instance's budget begins when a request
    /// takes it, not when it was prepared. The CPU spent instantiating stays charged.
    pub(crate) fn restart(&self) {
        let deadline = self.origin.elapsed() + self.timeout;
        self.deadline_ns.store(
            u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn cpu_used(&self) -> Duration {
        Duration::from_nanos(self.cpu_used_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn instantiated(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.instantiate_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn instantiate_time(&self) -> Duration {
        Duration::from_nanos(self.instantiate_nanos.load(Ordering::Relaxed))
    }

    fn add_cpu(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_used_nanos.fetch_add(nanos, Ordering::Relaxed);
        if let Some(shares) = &self.shares {
            let shares = shares.lock().expect("shares lock");
            if let Some(each) = nanos.checked_div(shares.len() as u64) {
                for share in shares.iter() {
                    share.0.fetch_add(each, Ordering::Relaxed);
                }
            }
        }
    }

    /// Whether the CPU limit is passed: the invocation's, or one request's share.
    fn over_cpu(&self) -> bool {
        match &self.shares {
            None => self.cpu_used() >= self.cpu_limit,
            Some(shares) => shares
                .lock()
                .expect("shares lock")
                .iter()
                .any(|share| share.used() >= self.cpu_limit),
        }
    }

    /// Host memory the invocation may hold: `host_limit`, times the requests on a shared
    /// instance.
    fn host_allowance(&self) -> u64 {
        let requests = self
            .shares
            .as_ref()
            .map_or(1, |shares| shares.lock().expect("shares lock").len().max(1));
        self.host_limit.saturating_mul(requests as u64)
    }

    /// Checks the limits; on a breach records the reason and returns it.
    pub(crate) fn check(&self) -> Option<InvokeError> {
        let breach = if Instant::now() >= self.deadline() {
            InvokeError::Timeout(self.timeout)
        } else if self.over_cpu() {
            InvokeError::CpuLimit(self.cpu_limit)
        } else if self.host.bytes() as u64 > self.host_allowance() {
            InvokeError::HostMemoryLimit {
                limit: self.host_limit,
            }
        } else {
            return None;
        };
        self.record(breach.clone());
        Some(breach)
    }

    /// Remembers the first reason this invocation was stopped.
    pub(crate) fn record(&self, reason: InvokeError) {
        let mut verdict = self.verdict.lock().expect("budget lock");
        verdict.get_or_insert(reason);
    }

    /// The reason recorded by [`Budget::check`] or [`Budget::record`], if any.
    pub(crate) fn verdict(&self) -> Option<InvokeError> {
        self.verdict.lock().expect("budget lock").clone()
    }
}

pin_project_lite::pin_project! {
    /// Runs a guest future and charges the time spent polling it to the invocation's budget
    /// and to its module's CPU counter.
    pub(crate) struct Metered<F> {
        #[pin]
        inner: F,
        budget: Arc<Budget>,
        stats: Arc<ModuleStats>,
    }
}

impl<F> Metered<F> {
    pub(crate) fn new(inner: F, budget: Arc<Budget>, stats: Arc<ModuleStats>) -> Metered<F> {
        Metered {
            inner,
            budget,
            stats,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _charged = host_memory::enter(&this.budget.host);
        let start = thread_cpu_time();
        let result = this.inner.poll(cx);
        let spent = thread_cpu_time().saturating_sub(start);
        this.budget.add_cpu(spent);
        this.stats.add_cpu(spent);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_breach_wins() {
        let budget = Budget::new(Duration::ZERO, Duration::from_secs(1), u64::MAX, None);
        assert!(matches!(budget.check(), Some(InvokeError::Timeout(_))));
        budget.record(InvokeError::StackOverflow);
        assert!(matches!(budget.verdict(), Some(InvokeError::Timeout(_))));
    }

    #[test]
    fn cpu_limit_is_detected() {
        let budget = Budget::new(
            Duration::from_secs(60),
            Duration::from_millis(5),
            u64::MAX,
            None,
        );
        assert!(budget.check().is_none());
        budget.add_cpu(Duration::from_millis(6));
        assert!(matches!(budget.check(), Some(InvokeError::CpuLimit(_))));
    }

    #[tokio::test]
    async fn metering_charges_cpu_not_sleep() {
        let budget = Arc::new(Budget::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            u64::MAX,
            None,
        ));
        let stats = Arc::new(ModuleStats::default());
        let burn = async {
            let start = thread_cpu_time();
            while thread_cpu_time() - start < Duration::from_millis(20) {
                std::hint::black_box(0u64);
            }
        };
        Metered::new(burn, budget.clone(), stats.clone()).await;
        assert!(budget.cpu_used() >= Duration::from_millis(20));
        assert!(stats.cpu_time() >= Duration::from_millis(20));
        let sleep = async { std::thread::sleep(Duration::from_millis(50)) };
        Metered::new(sleep, budget.clone(), stats.clone()).await;
        assert!(
            budget.cpu_used() < Duration::from_millis(40),
            "sleeping is not CPU time: {:?}",
            budget.cpu_used()
        );
    }
}
