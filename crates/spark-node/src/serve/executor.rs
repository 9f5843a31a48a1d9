//! Where guests run. With the orchestrator off, on the node's main runtime beside the
//! connections (plain FIFO). With it on, each class on a runtime of its own, and the main
//! runtime keeps only connections, routing and admission: background guests on threads with
//! a higher nice value, so the kernel preempts them the moment foreground work is runnable
//! (the epoch-tick pacer enforces shares on top; the nice value makes the preemption
//! immediate rather than at the next tick); normal and critical guests each on their own
//! threads, so neither a critical request nor the connection that carries it ever waits in a
//! run queue behind guests that use their whole time slice (a woken thread is scheduled by the
//! kernel at once, where a task in a shared queue waits for every guest ahead of it to yield).
//!
//! The nice value is set once per thread and never lowered again: lowering it needs a
//! privilege a node should not require.

/// A runtime of its own for one class of guests.
pub(crate) struct GuestExecutor {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl GuestExecutor {
    /// `threads` worker threads named `name`, at `nice` (0: unchanged).
    pub(crate) fn start(name: &str, threads: usize, nice: i32) -> std::io::Result<GuestExecutor> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
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

fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), nice) {
        tracing::warn!(error = %spark_error::chain(&e), nice, "cannot lower the priority of a background thread; background guests run at normal priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_threads_run_at_the_requested_nice_value() {
        let executor = GuestExecutor::start("test", 1, 7).unwrap();
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
}
