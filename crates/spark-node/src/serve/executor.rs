//! Where guests run. With the orchestrator on, each class on a runtime of its own, and the main
//! runtime keeps only connections, routing and admission: background guests on threads in the
//! kernel's idle scheduling class (or at a higher nice value), so the kernel preempts them the
//! moment foreground work is runnable (the epoch-tick pacer enforces shares on top; the
//! scheduling class makes the preemption immediate rather than at the next tick or the end of
//! a time slice, see `spark_runtime::priority`); normal and critical guests each on their own
//! threads, so neither a critical request nor the connection that carries it ever waits in a
//! run queue behind guests that use their whole time slice (a woken thread is scheduled by the
//! kernel at once, where a task in a shared queue waits for every guest ahead of it to yield).
//! With `orchestrator.critical_first` a fourth runtime, `spark-yielding`, also in the idle
//! class, takes the normal guests that start while critical work is live
//! (`spark_runtime::critical_first`); and the critical runtime also serves the connections
//! whose first request is for a critical module (`serve::critical_home`). With the orchestrator
//! off, guests run on the node's main runtime beside the connections (plain FIFO).
//!
//! A thread's priority is lowered once and never raised again: raising it needs a privilege a
//! node should not require.

/// A runtime of its own for one class of guests.
pub(crate) struct GuestExecutor {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl GuestExecutor {
    /// `threads` worker threads named `name`, each lowered as `priority` says.
    pub(crate) fn start(
        name: &str,
        threads: usize,
        priority: ThreadPriority,
    ) -> std::io::Result<GuestExecutor> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .on_thread_start({
                let name = name.to_owned();
                move || priority.apply(&name)
            })
            .build()?;
        let handle = runtime.handle().clone();
        Ok(GuestExecutor {
            runtime: Some(runtime),
            handle,
        })
    }

    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

impl Drop for GuestExecutor {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// How an executor's threads are lowered when they start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThreadPriority {
    /// As the rest of the node.
    Normal,
    /// At this nice value.
    Nice(i32),
    /// In the kernel's idle scheduling class; at this nice value where it is refused.
    Idle { fallback_nice: i32 },
}

impl ThreadPriority {
    /// The background executor's, from the manifest's `[orchestrator]`.
    pub(crate) fn background(settings: &spark_manifest::OrchestratorSettings) -> ThreadPriority {
        match settings.background_idle_class {
            true => ThreadPriority::Idle {
                fallback_nice: settings.background_nice,
            },
            false => ThreadPriority::Nice(settings.background_nice),
        }
    }

    /// Lowers the calling thread, one of the executor `name`'s.
    fn apply(self, name: &str) {
        match self {
            ThreadPriority::Normal => {}
            ThreadPriority::Nice(nice) => spark_runtime::priority::set_nice(name, nice),
            ThreadPriority::Idle { fallback_nice } => {
                spark_runtime::priority::enter_idle_class(name, fallback_nice)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_threads_run_at_the_requested_nice_value() {
        let executor = GuestExecutor::start("test", 1, ThreadPriority::Nice(7)).unwrap();
        let nice = std::thread::spawn({
            let handle = executor.handle();
            move || {
                handle.block_on(async {
                    tokio::spawn(async {
                        rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                    })
                    .await
                })
            }
        })
        .join()
        .unwrap()
        .unwrap()
        .unwrap();
        assert_eq!(nice, 7);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn background_threads_run_in_the_idle_class_by_default() {
        let settings = spark_manifest::OrchestratorSettings::default();
        let priority = ThreadPriority::background(&settings);
        assert_eq!(priority, ThreadPriority::Idle { fallback_nice: 19 });
        let executor = GuestExecutor::start("test", 1, priority).unwrap();
        let policy = executor
            .handle()
            .block_on(async {
                tokio::spawn(async { spark_runtime::priority::current_policy() }).await
            })
            .unwrap()
            .unwrap();
        assert_eq!(policy, libc::SCHED_IDLE as u32);
    }
}
