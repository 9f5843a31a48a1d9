//! Critical guests first: on which threads a normal module's next guest starts.
//!
//! With the orchestrator on, each priority class has an executor of its own (the node's
//! `serve::executor`), and critical and normal guests' threads run at the same kernel priority.
//! On a node whose cores are all busy with normal guests, a woken critical thread (and the
//! connection thread that carries its request) waits out a normal guest's time slice on each
//! hop: in B9, a critical module's p99 was 2.0-2.6x its calm p99 while normal modules' guests
//! looped on host calls, 1.4-1.9x with those guests in the kernel's idle class (2.1-2.6x and
//! 1.3-1.4x while they looped until their clients left). So while
//! critical work is live ([`CriticalWork::live`]: a critical guest started and not finished, or
//! one finished within [`LIVE_FOR`]), a normal module's new guests start on a second executor
//! whose threads are in the idle scheduling class, preempted the moment a critical guest or a
//! connection wants the core; otherwise on the usual one. A guest stays on the threads it
//! started on. (The node does the same for connections: one whose first request is for a
//! critical module is served on the critical executor, `spark-node`'s `serve::critical_home`.)
//!
//! Decision worth knowing: the switch is made per guest on the data plane (two relaxed atomic
//! loads), not by the control loop. The orchestrator's tick (500 ms) and its surge hysteresis
//! would leave the first second of every burst of normal work unprotected, more than the 1% a
//! p99 is made of; and a surge mode that gave critical work its cores back would see the
//! latency recover and end, over and over.
//!
//! The price, while critical work is live: normal guests run on what critical guests, the
//! node's connections and the machine's other processes leave, on equal terms with background
//! guests (also in the idle class; the orchestrator's surge mode still caps background at its
//! minimum share), and a normal guest preempted holding a lock a critical thread wants keeps it
//! until the kernel runs it again (see [`crate::priority`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::stats::ModuleStats;

/// How long critical work stays live after its last guest finished: long enough to span the
/// gaps between a steady stream's requests, short enough that a node whose critical traffic
/// stopped gives normal guests their priority back within a second.
pub const LIVE_FOR: Duration = Duration::from_secs(1);

/// Whether critical guests are running or ran lately.
#[derive(Debug)]
pub struct CriticalWork {
    origin: Instant,
    running: AtomicU64,
    /// Milliseconds after `origin` at which the last critical guest finished, plus one (0:
    /// none yet).
    last_end_ms: AtomicU64,
}

impl Default for CriticalWork {
    fn default() -> Self {
        CriticalWork {
            origin: Instant::now(),
            running: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }
}

impl CriticalWork {
    /// A critical guest starts; it counts as running until the guard drops.
    pub fn begin(self: &Arc<Self>) -> CriticalGuard {
        self.running.fetch_add(1, Ordering::Relaxed);
        CriticalGuard(self.clone())
    }

    /// Whether a normal guest starting now should yield: a critical guest is running, or one
    /// finished less than [`LIVE_FOR`] ago.
    pub fn live(&self) -> bool {
        if self.running.load(Ordering::Relaxed) > 0 {
            return true;
        }
        match self.last_end_ms.load(Ordering::Relaxed) {
            0 => false,
            end => self.now_ms() + 1 < end + LIVE_FOR.as_millis() as u64,
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

/// A critical guest counted as running (see [`CriticalWork::begin`]).
#[derive(Debug)]
pub struct CriticalGuard(Arc<CriticalWork>);

impl Drop for CriticalGuard {
    fn drop(&mut self) {
        let work = &self.0;
        work.last_end_ms.store(work.now_ms() + 1, Ordering::Relaxed);
        work.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A module's part in "critical guests first" ([`crate::ModuleControls::critical_first`]).
#[derive(Debug, Clone)]
pub enum CriticalFirst {
    /// A critical module: its guests count as critical work.
    Marks(Arc<CriticalWork>),
    /// A normal module: while critical work is live its new guests start on `idle` (threads in
    /// the idle scheduling class) instead of the module's usual executor.
    Yields {
        /// The executor whose threads are in the idle class.
        idle: tokio::runtime::Handle,
        /// The node's critical work.
        critical: Arc<CriticalWork>,
    },
}

impl CriticalFirst {
    /// Where a guest of this module starts (`usual` unless it yields), and the guard a critical
    /// guest holds while it runs. An instance made ahead of requests (`Start::Prewarm`) moves
    /// like a normal guest but counts as neither critical work nor a yield: the warmth
    /// controller makes them on its own schedule, and they would otherwise hold critical work
    /// live with no request in sight.
    fn place<'a>(&'a self, usual: Option<&'a tokio::runtime::Handle>, start: Start) -> Placed<'a> {
        let invocation = start == Start::Invocation;
        match self {
            CriticalFirst::Marks(work) => Placed {
                executor: usual,
                critical: invocation.then(|| work.begin()),
                yielded: false,
            },
            CriticalFirst::Yields { idle, critical } if critical.live() => Placed {
                executor: Some(idle),
                critical: None,
                yielded: invocation,
            },
            CriticalFirst::Yields { .. } => Placed {
                executor: usual,
                critical: None,
                yielded: false,
            },
        }
    }
}

/// Runs a guest task started for `start`: on `usual` (`None`: the caller's runtime), or on the
/// idle-class executor while critical work is live (counted in `stats` as a yield); a critical
/// guest counts as critical work until its task ends, however it ends.
pub(crate) fn spawn<F>(
    first: Option<&CriticalFirst>,
    usual: Option<&tokio::runtime::Handle>,
    start: Start,
    stats: &ModuleStats,
    task: F,
) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let placed = match first {
        Some(first) => first.place(usual, start),
        None => Placed {
            executor: usual,
            critical: None,
            yielded: false,
        },
    };
    if placed.yielded {
        stats.yielded();
    }
    let critical = placed.critical;
    let task = async move {
        let _running = critical;
        task.await
    };
    match placed.executor {
        Some(executor) => executor.spawn(task),
        None => tokio::spawn(task),
    }
}

/// What a guest task starts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// A request, a job run, a WASI 0.3 instance taking requests.
    Invocation,
    /// An instance made ahead of requests.
    Prewarm,
}

/// Where one guest starts, from [`CriticalFirst::place`].
struct Placed<'a> {
    /// The executor (`None`: the caller's runtime).
    executor: Option<&'a tokio::runtime::Handle>,
    /// Held by a critical guest while it runs.
    critical: Option<CriticalGuard>,
    /// Whether it yields to live critical work.
    yielded: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_work_is_live_while_a_guest_runs_and_for_a_while_after() {
        let work = Arc::new(CriticalWork::default());
        assert!(!work.live(), "no critical guest yet");
        let guard = work.begin();
        assert!(work.live());
        let second = work.begin();
        drop(guard);
        assert!(work.live(), "one still running");
        drop(second);
        assert!(work.live(), "just finished");
        std::thread::sleep(LIVE_FOR + Duration::from_millis(50));
        assert!(!work.live(), "quiet for longer than LIVE_FOR");
    }

    #[tokio::test]
    async fn a_normal_guest_yields_only_while_critical_work_is_live() {
        let work = Arc::new(CriticalWork::default());
        let usual = tokio::runtime::Handle::current();
        let idle_runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let normal = CriticalFirst::Yields {
            idle: idle_runtime.handle().clone(),
            critical: work.clone(),
        };
        let critical = CriticalFirst::Marks(work.clone());
        let quiet = normal.place(Some(&usual), Start::Invocation);
        assert!(quiet.executor.is_some_and(|h| h.id() == usual.id()));
        assert!(!quiet.yielded && quiet.critical.is_none());
        let running = critical.place(Some(&usual), Start::Invocation);
        assert!(running.executor.is_some_and(|h| h.id() == usual.id()));
        assert!(running.critical.is_some() && work.live());
        let behind = normal.place(Some(&usual), Start::Invocation);
        assert!(
            behind
                .executor
                .is_some_and(|h| h.id() == idle_runtime.handle().id())
        );
        assert!(behind.yielded);
        let prewarm = critical.place(Some(&usual), Start::Prewarm);
        assert!(prewarm.critical.is_none(), "a prewarm is not critical work");
        let prewarm = normal.place(Some(&usual), Start::Prewarm);
        assert!(
            prewarm
                .executor
                .is_some_and(|h| h.id() == idle_runtime.handle().id())
        );
        assert!(!prewarm.yielded, "moved, not counted");
        drop(running);
        idle_runtime.shutdown_background();
    }
}
