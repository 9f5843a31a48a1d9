//! The orchestrator's control loop, one tick per interval:
//! probes -> [`NodeSignals`] -> observations -> pure policy -> [`Plan`] -> actuators.
//!
//! Runs beside the request path, never on it: the request path only reads atomics the
//! actuators set. Every decision is logged as a structured event (`target: spark::decision`),
//! kept in a bounded ring for the admin API, and counted in metrics. The loop measures its own
//! CPU time so its cost is visible (`spark_orchestrator_cpu_seconds_total`).

mod apply;
pub mod nn;
mod observe;
pub mod warmth;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use spark_manifest::OrchestratorSettings;
use spark_orchestrator::policy::{self, Decision, NodeSignals, Plan, PolicyConfig, PolicyState};
use spark_orchestrator::probes::{ProbeConfig, Probes, Telemetry};
use tokio_util::sync::CancellationToken;

pub use apply::apply;
pub use observe::Observer;

use crate::serve::snapshot::SharedSnapshot;

/// Decisions kept for the admin API.
const DECISION_LOG: usize = 200;

/// What the control loop last saw and did, for `/v1/orchestrator` and metrics.
#[derive(Debug, Default)]
pub struct ControlView {
    state: Mutex<ViewState>,
    cpu_nanos: AtomicU64,
    ticks: AtomicU64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ViewState {
    pub telemetry: Option<Telemetry>,
    pub signals: Option<NodeSignals>,
    pub plan: Plan,
    pub decisions: VecDeque<Decision>,
}

impl ControlView {
    pub fn state(&self) -> ViewState {
        self.state.lock().expect("view lock").clone()
    }

    /// CPU the control loop has used, and how many ticks it ran.
    pub fn cost(&self) -> (Duration, u64) {
        (
            Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed)),
            self.ticks.load(Ordering::Relaxed),
        )
    }

    fn record(
        &self,
        telemetry: Telemetry,
        signals: NodeSignals,
        plan: Plan,
        decisions: Vec<Decision>,
    ) {
        let mut state = self.state.lock().expect("view lock");
        state.telemetry = Some(telemetry);
        state.signals = Some(signals);
        state.plan = plan;
        for decision in decisions {
            if state.decisions.len() == DECISION_LOG {
                state.decisions.pop_front();
            }
            state.decisions.push_back(decision);
        }
    }
}

/// The control loop's configuration, from the manifest's `[orchestrator]` table.
pub fn policy_config(settings: &OrchestratorSettings) -> PolicyConfig {
    let slow = settings.uplink_slow.as_secs_f64() * 1e3;
    PolicyConfig {
        background_min_share: settings.background_min_share,
        battery_low_percent: settings.battery_low,
        battery_ok_percent: (settings.battery_low + 10.0).min(100.0),
        uplink_slow_ms: slow,
        uplink_ok_ms: slow / 2.0,
        memory_high: settings.memory_high,
        memory_low: settings.memory_high / 2.0,
        ..PolicyConfig::default()
    }
}

/// The probes for these settings (validated: a bad upstream is an error here, at startup).
pub fn probes(
    settings: &OrchestratorSettings,
) -> Result<Probes, spark_orchestrator::probes::ProbeConfigError> {
    Probes::new(ProbeConfig {
        root: settings.probe_root.clone(),
        upstreams: settings.upstreams.clone(),
        probe_timeout: settings.interval.min(Duration::from_secs(2)),
        network_every: settings.interval.max(Duration::from_secs(2)),
    })
}

/// Runs the loop until `shutdown`.
pub async fn run(
    snapshot: SharedSnapshot,
    settings: OrchestratorSettings,
    mut probes: Probes,
    view: Arc<ControlView>,
    mut nn: Option<crate::control::nn::NnControl>,
    shutdown: CancellationToken,
) {
    let config = policy_config(&settings);
    let mut state = PolicyState::default();
    let mut observer = Observer::default();
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let window = last.elapsed();
        last = Instant::now();
        let tick = tick(
            &snapshot,
            &mut probes,
            &mut observer,
            &config,
            &mut state,
            window,
        );
        let (cpu, (telemetry, signals, plan, mut decisions)) = CpuMeter::new(tick).await;
        if let Some(nn) = &mut nn {
            let taken = nn.apply(plan.modes.power_save, unix_ms());
            for d in &taken {
                tracing::info!(target: "spark::decision", scope = %d.scope, change = %d.change, reason = %d.reason, "orchestrator decision");
            }
            decisions.extend(taken);
        }
        let cpu = cpu + probes.last_sample_cpu();
        view.cpu_nanos
            .fetch_add(cpu.as_nanos() as u64, Ordering::Relaxed);
        view.ticks.fetch_add(1, Ordering::Relaxed);
        view.record(telemetry, signals, plan, decisions);
    }
}

async fn tick(
    snapshot: &SharedSnapshot,
    probes: &mut Probes,
    observer: &mut Observer,
    config: &PolicyConfig,
    state: &mut PolicyState,
    window: Duration,
) -> (Telemetry, NodeSignals, Plan, Vec<Decision>) {
    let now_ms = unix_ms();
    let telemetry = probes.sample(now_ms).await;
    let current = snapshot.load_full();
    let signals = telemetry.node_signals();
    let observations = observer.observe(&current, window);
    let (plan, decisions) = policy::plan(now_ms, &signals, &observations, config, state);
    for o in observations
        .iter()
        .filter(|o| o.priority == spark_manifest::Priority::Critical)
    {
        tracing::debug!(
            target: "spark::control", module = %o.id, rate = o.requests as f64 / o.window_secs, queued = o.queued,
            rejected = o.rejected, p99_ms = ?o.p99_ms, surge = plan.modes.surge, "critical module observed"
        );
    }
    apply(&plan, &current);
    for d in &decisions {
        tracing::info!(target: "spark::decision", scope = %d.scope, change = %d.change, reason = %d.reason, "orchestrator decision");
        if let Some(slot) = current.module(&d.scope) {
            slot.metrics.decision();
        }
    }
    (telemetry, signals, plan, decisions)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pin_project_lite::pin_project! {
    /// Runs a future and returns the thread CPU time spent polling it alongside its output.
    struct CpuMeter<F> {
        #[pin]
        inner: F,
        spent: Duration,
    }
}

impl<F> CpuMeter<F> {
    fn new(inner: F) -> CpuMeter<F> {
        CpuMeter {
            inner,
            spent: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for CpuMeter<F> {
    type Output = (Duration, F::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let start = thread_cpu();
        let polled = this.inner.poll(cx);
        *this.spent += thread_cpu().saturating_sub(start);
        polled.map(|output| (*this.spent, output))
    }
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
