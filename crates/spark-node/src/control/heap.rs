//! Gives the heap that compiles, loads and evictions freed back to the kernel, once a burst of
//! them is over (see [`spark_runtime::heap`] for why glibc keeps it and what a trim costs).
//!
//! A task of its own, paced by the node's [`Clock`] like the other control loops and running
//! whether or not the orchestrator does: every [`CHECK_EVERY`] it reads the runtime's code
//! churn ([`Runtime::code_churn`]) and the process's resident size, and when [`SettledChurn`]
//! says a burst has settled (or trickling churn has waited its spacing, or a long burst has
//! grown the process by [`heap::GROWTH`]) it trims on a blocking thread. The request path
//! never waits for it except on an arena lock while a trim hands that arena's pages back.

use std::time::Duration;

use spark_runtime::Runtime;
use spark_runtime::heap::{self, SettledChurn};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// How often the churn count is read: a burst is over once it held still this long.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Trims after each settled burst of code churn until `shutdown`. Its ticker is taken now,
/// before the task runs, so a manual clock knows the loop from the start.
pub(crate) fn trim_after_code_churn(
    runtime: Runtime,
    clock: &Clock,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let mut ticker = clock.ticker("heap", CHECK_EVERY);
    let clock = clock.clone();
    async move {
        let mut rule = SettledChurn::default();
        loop {
            tokio::select! {
                () = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if !rule.due(clock.now(), runtime.code_churn(), heap::resident_bytes()) {
                continue;
            }
            if let Ok(trimmed) = tokio::task::spawn_blocking(heap::trim).await {
                rule.trimmed(trimmed.resident);
                tracing::debug!(
                    released_mb = trimmed.released as f64 / 1_048_576.0,
                    took_ms = trimmed.took.as_secs_f64() * 1e3,
                    "heap trimmed after code churn"
                );
            }
        }
    }
}
