//! The inference pool: the few threads every guest's `compute` runs on, off the async workers.
//!
//! A guest's `compute` hands its work to the pool and *awaits* the answer, so the guest's
//! Tokio worker stays free, and the guest's wall-clock deadline (a Tokio timeout around the
//! whole invocation) or the cancellation of a guest whose client went away ends the wait at
//! once. A computation already running cannot be interrupted (no backend has a cancel hook):
//! it finishes in the background, and its result is dropped on the pool thread and counted
//! (`abandoned`). One still queued when its guest goes is skipped (`cancelled`).
//!
//! The decision worth knowing: a small dedicated pool (by default the machine's cores divided
//! by `cpu_threads`, at least one thread) rather than Tokio's blocking pool (up to 512
//! threads). The pool is what bounds the host threads inference uses: a client that times out
//! and retries in a loop leaves at most `workers` computations running, and the rest of its
//! retries wait in the queue, under their own deadlines, instead of each taking a new thread.
//! The price is that inference of all modules shares `workers` threads (first come, first
//! served), and that time spent on the pool is not the guest's CPU time (only its wall time).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

use crate::error::NnError;

/// Work for one pool thread.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The node's inference threads and their queue.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    stats: PoolStats,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Set when the pool is dropped: workers finish what they hold and exit.
    closed: bool,
}

/// What the pool did, for status and `/metrics`.
#[derive(Default)]
struct PoolStats {
    queued: AtomicU64,
    running: AtomicU64,
    /// Finished after their guest had gone; the result was dropped.
    abandoned: AtomicU64,
    /// Skipped: their guest had gone before they started.
    cancelled: AtomicU64,
}

/// A snapshot of the pool's counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PoolFigures {
    pub workers: usize,
    pub queued: u64,
    pub running: u64,
    pub abandoned: u64,
    pub cancelled: u64,
}

impl Pool {
    /// Starts `workers` threads (at least one).
    pub(crate) fn start(workers: usize) -> Result<Pool, NnError> {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            stats: PoolStats::default(),
        });
        for i in 0..workers {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("spark-nn-{i}"))
                .spawn(move || work(&shared))
                .map_err(|source| NnError::Workers { source })?;
        }
        Ok(Pool { shared, workers })
    }

    /// The default size: the machine's cores shared out by `cpu_threads` per inference.
    pub(crate) fn default_size(cpu_threads: usize) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / cpu_threads.max(1)).max(1)
    }

    /// Runs `f` on a pool thread; the returned future resolves to its result. Dropping the
    /// future abandons the result: `f` is skipped if it has not started, otherwise it runs to
    /// the end and what it returns is dropped (on the pool thread) and counted.
    pub(crate) fn run<R, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<R, NnError>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<R>();
        let shared = self.shared.clone();
        let job: Job = Box::new(move || {
            let stats = &shared.stats;
            if tx.is_closed() {
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("inference skipped: its guest is gone");
                return;
            }
            stats.running.fetch_add(1, Ordering::Relaxed);
            let result = catch_unwind(AssertUnwindSafe(f));
            stats.running.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(value) => {
                    if tx.send(value).is_err() {
                        stats.abandoned.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            "inference finished after its guest was gone; result dropped"
                        );
                    }
                }
                // `tx` is dropped: the waiting guest gets an error (backends' own panics
                // are caught closer to them; this is anything else).
                Err(_) => tracing::error!("inference job panicked; caught"),
            }
        });
        {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.jobs.push_back(job);
            self.shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.ready.notify_one();
        async move {
            rx.await.map_err(|_| NnError::Panic {
                backend: "inference pool".into(),
                message: "the inference job panicked outside any backend".into(),
            })
        }
    }

    pub(crate) fn figures(&self) -> PoolFigures {
        let s = &self.shared.stats;
        PoolFigures {
            workers: self.workers,
            queued: s.queued.load(Ordering::Relaxed),
            running: s.running.load(Ordering::Relaxed),
            abandoned: s.abandoned.load(Ordering::Relaxed),
            cancelled: s.cancelled.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.closed = true;
        drop(queue);
        self.shared.ready.notify_all();
    }
}

/// One pool thread: takes jobs until the pool is dropped and the queue is empty.
fn work(shared: &Shared) {
    loop {
        let job = {
            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
                    break job;
                }
                if queue.closed {
                    return;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[tokio::test]
    async fn answers_and_counts_what_nobody_waited_for() {
        let pool = Pool::start(1).unwrap();
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);

        // A running job whose waiter goes away finishes and is counted as abandoned; one
        // queued behind it is skipped.
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let running = pool.run(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            vec![0u8; 1024]
        });
        let queued = pool.run(|| unreachable!("skipped: its waiter is gone"));
        started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        drop(running);
        drop(queued);
        release_tx.send(()).unwrap();
        assert_eq!(pool.run(|| 1).await.unwrap(), 1);
        let f = pool.figures();
        assert_eq!((f.abandoned, f.cancelled, f.running), (1, 1, 0), "{f:?}");
        assert_eq!(f.queued, 0);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_pool_keeps_working() {
        let pool = Pool::start(1).unwrap();
        let failed = pool.run(|| -> u8 { panic!("boom") }).await;
        assert!(failed.is_err());
        assert_eq!(pool.run(|| 2).await.unwrap(), 2);
    }
}
