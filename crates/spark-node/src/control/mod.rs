//! The orchestrator's control loop, one tick per interval of the node's [`Clock`]:
//! probes -> [`NodeSignals`] -> observations -> pure policy -> [`Plan`] -> actuators.
//!
//! Runs beside the request path, never on it: the request path only reads atomics the
//! actuators set. The whole plan is pushed to the actuators at the end of every tick
//! ([`apply`]). Every decision is the policy's, typed, and recorded in one place
//! ([`ControlView::record`]): logged once as a structured event (`target: spark::decision`),
//! kept in a bounded ring for the admin API, and counted in metrics. The loop measures its own
//! CPU time so its cost is visible (`spark_orchestrator_cpu_seconds_total`).

mod apply;
pub(crate) mod heap;
pub(crate) mod nn;
mod observe;
pub(crate) mod warmth;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use spark_manifest::OrchestratorSettings;
use spark_orchestrator::policy::{
    self, Decision, InferenceConfig, ModuleObservation, NodeSignals, Plan, PolicyConfig,
    PolicyState, Scope,
};
use spark_orchestrator::probes::{ProbeConfig, Probes, Telemetry};
use tokio_util::sync::CancellationToken;

pub(crate) use apply::{Actuators, apply};
pub(crate) use observe::Observer;

use crate::clock::Clock;
use crate::serve::activity::{ActivityLog, Watcher};
use crate::serve::snapshot::{SharedSnapshot, Snapshot};

/// Decisions kept for the admin API.
const DECISION_LOG: usize = 200;

/// What the control loop last saw and did, for `/v1/orchestrator` and metrics.
#[derive(Debug, Default)]
pub struct ControlView {
    state: Mutex<ViewState>,
    cpu_nanos: AtomicU64,
    ticks: AtomicU64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewState {
    pub telemetry: Option<Telemetry>,
    pub signals: Option<NodeSignals>,
    pub plan: Plan,
    pub decisions: VecDeque<Decision>,
    /// What each module did over the last tick's window (rates, p99, CPU), for the dashboard.
    pub observations: Vec<ModuleObservation>,
    /// Modules whose counters the last tick read: those with work, those planned before, and
    /// critical, background and job modules (all of them after a deploy).
    pub modules_read: usize,
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

    /// Records a tick: what it saw, its plan, and its decisions, each logged once here and
    /// counted against its module.
    fn record(
        &self,
        snapshot: &Snapshot,
        telemetry: Telemetry,
        signals: NodeSignals,
        plan: Plan,
        decisions: Vec<Decision>,
        (observations, read): (Vec<ModuleObservation>, usize),
    ) {
        for d in &decisions {
            tracing::info!(target: "spark::decision", scope = %d.scope, change = %d.change, reason = %d.reason, "orchestrator decision");
            if let Scope::Module(id) = &d.scope
                && let Some(slot) = snapshot.module(id)
            {
                slot.metrics.decision();
            }
        }
        let mut state = self.state.lock().expect("view lock");
        state.telemetry = Some(telemetry);
        state.signals = Some(signals);
        state.plan = plan;
        state.observations = observations;
        state.modules_read = read;
        for decision in decisions {
            if state.decisions.len() == DECISION_LOG {
                state.decisions.pop_front();
            }
            state.decisions.push_back(decision);
        }
    }
}

/// The control loop's configuration, from the manifest's `[orchestrator]` table (and `[nn]`'s
/// part, when the node has an inference host).
pub(crate) fn policy_config(
    settings: &OrchestratorSettings,
    inference: Option<InferenceConfig>,
) -> PolicyConfig {
    let slow = settings.uplink_slow.as_secs_f64() * 1e3;
    PolicyConfig {
        background_min_share: settings.background_min_share,
        battery_low_percent: settings.battery_low,
        battery_ok_percent: (settings.battery_low + 10.0).min(100.0),
        uplink_slow_ms: slow,
        uplink_ok_ms: slow / 2.0,
        memory_high: settings.memory_high,
        memory_low: settings.memory_high / 2.0,
        inference: inference.unwrap_or_default(),
        postpone_optimization: settings.postpone_optimization,
        ..PolicyConfig::default()
    }
}

/// The probes for these settings (validated: a bad upstream is an error here, at startup).
pub(crate) fn probes(
    settings: &OrchestratorSettings,
) -> Result<Probes, spark_orchestrator::probes::ProbeConfigError> {
    Probes::new(ProbeConfig {
        root: settings.probe_root.clone(),
        upstreams: settings.upstreams.clone(),
        probe_timeout: settings.interval.min(Duration::from_secs(2)),
        network_every: settings.interval.max(Duration::from_secs(2)),
    })
}

/// What the control loop works with.
pub(crate) struct ControlLoop {
    pub snapshot: SharedSnapshot,
    pub settings: OrchestratorSettings,
    pub probes: Probes,
    pub view: Arc<ControlView>,
    pub actuators: Actuators,
    pub clock: Clock,
    /// Which modules had work since the last tick.
    pub activity: Arc<ActivityLog>,
}

impl ControlLoop {
    /// The loop until `shutdown`. Its ticker is taken now, before the task runs, so a manual
    /// clock knows the loop from the start.
    pub(crate) fn run(
        self,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let ticker = self.clock.ticker("control", self.settings.interval);
        self.run_with(ticker, shutdown)
    }

    async fn run_with(mut self, mut ticker: crate::clock::Ticker, shutdown: CancellationToken) {
        let inference = self.actuators.nn.as_ref().map(|nn| nn.config());
        let config = policy_config(&self.settings, inference);
        let mut state = PolicyState::default();
        let mut observer = Observer::default();
        let mut last = self.clock.now();
        loop {
            tokio::select! {
                () = ticker.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let now = self.clock.now();
            let window = now.saturating_sub(last);
            last = now;
            let tick = tick(&mut self, &mut observer, &config, &mut state, window);
            let (cpu, ()) = CpuMeter::new(tick).await;
            let cpu = cpu + self.probes.last_sample_cpu();
            self.view
                .cpu_nanos
                .fetch_add(cpu.as_nanos() as u64, Ordering::Relaxed);
            self.view.ticks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One tick: sample, observe, plan, push the plan to every actuator, record.
async fn tick(
    control: &mut ControlLoop,
    observer: &mut Observer,
    config: &PolicyConfig,
    state: &mut PolicyState,
    window: Duration,
) {
    let now_ms = control.clock.unix_ms();
    let telemetry = control.probes.sample(now_ms).await;
    let current = control.snapshot.load_full();
    let mut signals = telemetry.node_signals();
    if let Some(nn) = &control.actuators.nn {
        signals.accelerators_in_flight = nn.in_flight();
    }
    let marked = control.activity.drain(Watcher::Control);
    let observations = observer.observe(&current, &marked, window);
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
    apply(&plan, &current, &mut control.actuators);
    control.view.record(
        &current,
        telemetry,
        signals,
        plan,
        decisions,
        (observations, observer.read()),
    );
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
