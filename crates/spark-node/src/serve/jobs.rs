//! Scheduled jobs: each `schedule = { every = ... }` module runs once per period.
//!
//! A run that is still going when the next one is due is not doubled up: the tick is skipped
//! and counted. The scheduler looks the module up in the current snapshot at every tick, so a
//! module replaced by a new version runs as that version from its next tick on.

use std::sync::Arc;
use std::time::Duration;

use spark_runtime::InvokeError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::serve::capacity::NodeCapacity;
use crate::serve::snapshot::{ModuleSlot, SharedSnapshot};

/// How a job run ended, as reported by the admin API.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct JobOutcome {
    /// The module id.
    pub module: String,
    /// `ok`, `failed`, `timeout`, `error`, or `skipped`/`shed` when it did not run.
    pub outcome: String,
    /// How long the run took, in ms (0 if it did not run).
    pub millis: u64,
    /// What went wrong, when the run failed.
    pub error: Option<String>,
}

/// Runs every scheduled module of the snapshot until `shutdown`, then waits up to `grace` for
/// runs in progress.
pub(crate) async fn run_schedules(
    snapshot: SharedSnapshot,
    capacity: Arc<NodeCapacity>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut schedules = JoinSet::new();
    let current = snapshot.load_full();
    for slot in &current.modules {
        if let spark_manifest::Trigger::Schedule { every } = slot.spec.trigger {
            let id = slot.id().to_owned();
            schedules.spawn(schedule(
                snapshot.clone(),
                capacity.clone(),
                id,
                every,
                shutdown.clone(),
            ));
        }
    }
    let drained = async { while schedules.join_next().await.is_some() {} };
    shutdown.cancelled().await;
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("job runs still in progress after the grace period were abandoned");
    }
}

/// One job's schedule. The period is read at every run, so a pacing factor set by the
/// orchestrator (power save) stretches the next wait without restarting anything.
async fn schedule(
    snapshot: SharedSnapshot,
    capacity: Arc<NodeCapacity>,
    id: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut runs = JoinSet::new();
    let mut last = tokio::time::Instant::now();
    loop {
        let pacing = snapshot
            .load()
            .module(&id)
            .map_or(1.0, |slot| slot.controls.job_pacing());
        tokio::select! {
            () = tokio::time::sleep_until(last + every.mul_f64(pacing)) => {}
            () = shutdown.cancelled() => break,
        }
        last = tokio::time::Instant::now();
        while runs.try_join_next().is_some() {}
        let current = snapshot.load();
        let Some(stable) = current.module(&id) else {
            tracing::info!(module = %id, "job module removed; its schedule stops");
            break;
        };
        let slot = current.version_for(stable, None).clone();
        let capacity = capacity.clone();
        runs.spawn(async move { run_once(&slot, &capacity).await });
    }
    while runs.join_next().await.is_some() {}
}

/// Runs a job now unless a run is already in progress (then it reports `skipped`) or the node
/// has no capacity left for its class (`shed`).
pub(crate) async fn run_once(slot: &Arc<ModuleSlot>, capacity: &NodeCapacity) -> JobOutcome {
    let module = slot.id().to_owned();
    let Some(_ticket) = slot.admission.try_admit() else {
        slot.metrics.job_run("skipped", Duration::ZERO);
        tracing::info!(%module, "job still running from the previous period; skipping this run");
        return JobOutcome {
            module,
            outcome: "skipped".into(),
            millis: 0,
            error: None,
        };
    };
    let reserve = super::capacity::reservation(&slot.spec.limits);
    let Ok(_node_slot) = capacity
        .admit(slot.spec.priority, reserve, Duration::ZERO)
        .await
    else {
        slot.metrics.job_run("shed", Duration::ZERO);
        tracing::info!(%module, "node at capacity; this job run is shed");
        return JobOutcome {
            module,
            outcome: "shed".into(),
            millis: 0,
            error: None,
        };
    };
    let started = std::time::Instant::now();
    let result = match slot.residency.acquire().await {
        Ok((guest, cold)) => {
            if let Some(cold) = cold {
                slot.metrics.cold_start(cold);
            }
            guest.run_job().await
        }
        Err(e) => Err(spark_runtime::InvokeError::Cancelled(format!(
            "its code could not be loaded: {}",
            spark_error::chain(&e)
        ))),
    };
    let took = started.elapsed();
    let (outcome, error) = match &result {
        Ok(report) => {
            tracing::debug!(%module, took_ms = took.as_millis() as u64, cpu_ms = report.cpu.as_millis() as u64, "job run succeeded");
            ("ok", None)
        }
        Err(e) => {
            tracing::warn!(%module, kind = e.kind(), error = %spark_error::chain(&e), "job run failed");
            (outcome_label(e), Some(e.to_string()))
        }
    };
    slot.metrics.job_run(outcome, took);
    slot.outcomes
        .record(if error.is_none() { 200 } else { 500 }, took);
    JobOutcome {
        module,
        outcome: outcome.into(),
        millis: took.as_millis() as u64,
        error,
    }
}

fn outcome_label(error: &InvokeError) -> &'static str {
    match error {
        InvokeError::JobFailed => "failed",
        InvokeError::Timeout(_) | InvokeError::CpuLimit(_) => "timeout",
        _ => "error",
    }
}
