//! Where guests run. Critical and normal guests run on the node's main runtime; with the
//! orchestrator on, background guests run on a runtime of their own whose threads have a
//! higher nice value, so the kernel preempts them the moment foreground work is runnable. The
//! epoch-tick pacer enforces shares on top; the nice value makes the preemption immediate
//! rather than at the next tick.
//!
//! The nice value is set once per thread and never lowered again: lowering it needs a
//! privilege a node should not require.

/// A low-priority executor for background guests.
pub struct BackgroundExecutor {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl BackgroundExecutor {
    pub fn start(threads: usize, nice: i32) -> std::io::Result<BackgroundExecutor> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("spark-background")
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        let handle = runtime.handle().clone();
        Ok(BackgroundExecutor {
            runtime: Some(runtime),
            handle,
        })
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }
}

impl Drop for BackgroundExecutor {
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
        let executor = BackgroundExecutor::start(1, 7).unwrap();
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
