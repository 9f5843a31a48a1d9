//! The warmth controller: learns each module's demand and keeps it at the right warmth level
//! (compiled on disk, loaded in memory, or with instances ready) within a memory budget.
//!
//! Every `predictor.interval` it feeds the invocations since the last tick into the
//! predictor's [`DemandModel`] (the same model the B4 simulator replays), asks the
//! [`WarmthPlanner`] for a level per module, and moves modules there: pre-warming (loading,
//! instantiating ahead) modules likely to be called within the horizon, evicting those least
//! likely to be needed first. History is saved to the node's store and restored at startup.
//!
//! Bounds on top of the planner ([`WarmthLevel::within`]): critical modules are never evicted
//! below "loaded", and the orchestrator caps ready instances (each module's warm limit) and
//! shrinks the budget ([`WarmBudget`]): it decides both in its pure policy (memory pressure,
//! power save) and pushes them to these actuators every tick; this controller only reads
//! them. Pre-warming runs one module at a time in this task, on the modules' own executors, so
//! it never competes with critical work for more than a core.
//!
//! With `predictor.policy` "keep-alive" or "hybrid" the same loop runs a baseline instead of
//! the planner ([`WindowPlanner`]: each module loaded inside a window after its last call, the
//! keep-alive or its idle-time histogram's, within the same budget).
//!
//! Time is the node's [`Clock`]: model time is its wall time at the start plus its monotonic
//! time since, scaled (`time_scale`), so a test moves the model as it moves the clock.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spark_manifest::{PredictorSettings, Priority, WarmthPolicy};
use spark_predict::hybrid::{HybridParams, IdleHistogram};
use spark_predict::live::{
    CodeTimes, DemandModel, Forecast, IdleModule, LevelCosts, ModuleDemand, WarmthLevel,
    WarmthPlan, WarmthPlanner, WindowPlanner,
};
use spark_predict::model::HistorySnapshot;
use spark_store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, Ticker};
use crate::serve::activity::{ActivityLog, Watcher};
use crate::serve::loaded::{LoadedCode, LoadedCodeFigures, load_bytes};
use crate::serve::snapshot::{LastSnapshot, ModuleSlot, SharedSnapshot, Snapshot};

/// MB-minutes of memory worth one second of cold start of a module called once a day. Edge
/// nodes have little memory but every millisecond is a user's: with this rate the budget, not
/// the price, is what normally limits warmth.
const EXCHANGE: f64 = 1.0e6;
/// History is saved this often (and at shutdown).
const SAVE_EVERY: Duration = Duration::from_secs(60);
/// Probability assumed for a module never called yet, so it stays loaded while memory allows
/// but goes first when it does not.
const UNKNOWN_P: f64 = 0.01;

/// Where module histories are kept between restarts (blocking calls: the controller runs
/// them on a blocking thread).
pub(crate) trait HistoryStore: Send + Sync {
    fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    fn save_all(&self, snapshots: &[(String, Vec<u8>)]) -> Result<(), StoreError>;
}

impl HistoryStore for spark_store::Store {
    fn load_all(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.all_history()
    }

    fn save_all(&self, snapshots: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let entries: Vec<(&str, &[u8])> = snapshots
            .iter()
            .map(|(m, s)| (m.as_str(), s.as_slice()))
            .collect();
        self.put_history_many(&entries)
    }
}

/// Why one module's saved history was not restored.
#[derive(Debug, thiserror::Error)]
enum HistoryUnreadable {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Restore(#[from] spark_predict::live::RestoreError),
}

/// One module as the controller last saw it, for status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModuleWarmth {
    pub level: String,
    pub target: String,
    pub ready: usize,
    pub p_within_1m: Option<f64>,
    pub next_likely_ms: Option<u64>,
    pub period_ms: Option<u64>,
    pub calls_per_day: Option<f64>,
}

/// What the controller last decided, for `/v1/predictor` and `spark status`, and the node's
/// loaded code as it is now.
pub struct WarmthView {
    state: Mutex<WarmthState>,
    loaded: Arc<LoadedCode>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WarmthState {
    pub budget_bytes: u64,
    pub planned_bytes: u64,
    pub modules: HashMap<String, ModuleWarmth>,
    pub eviction_order: Vec<String>,
    pub history_note: Option<String>,
    /// Modules the last revision looked at: those with work, planned before or with a history
    /// (all of them after a deploy).
    #[serde(default)]
    pub modules_read: usize,
    /// The loaded code of non-critical modules now, its limit and the evictions made for
    /// requests' loads ([`crate::serve::loaded`]).
    #[serde(default)]
    pub loaded_code: LoadedCodeFigures,
}

impl WarmthView {
    /// A view of `loaded`, with nothing decided yet.
    pub(crate) fn new(loaded: Arc<LoadedCode>) -> WarmthView {
        WarmthView {
            state: Mutex::default(),
            loaded,
        }
    }

    /// Records something an operator should know about the history (shown in the status).
    pub fn note(&self, text: String) {
        self.state.lock().expect("warmth view").history_note = Some(text);
    }

    pub fn state(&self) -> WarmthState {
        let mut state = self.state.lock().expect("warmth view").clone();
        state.loaded_code = self.loaded.figures();
        state
    }
}

/// The share of the memory budget the orchestrator wants back, in `[0, 1]`: an actuator the
/// control loop sets every tick (0 when the orchestrator is off).
#[derive(Debug, Default)]
pub(crate) struct WarmBudget {
    pressure_bits: AtomicU64,
}

impl WarmBudget {
    pub(crate) fn pressure(&self) -> f64 {
        f64::from_bits(self.pressure_bits.load(Ordering::Relaxed))
    }

    pub(crate) fn set_pressure(&self, pressure: f64) {
        let pressure = pressure.clamp(0.0, 1.0);
        self.pressure_bits
            .store(pressure.to_bits(), Ordering::Relaxed);
    }
}

/// Model time: Unix milliseconds, optionally running faster than the node's clock (replays).
#[derive(Debug, Clone)]
struct ModelClock {
    clock: Clock,
    origin_unix_ms: u64,
    origin: Duration,
    scale: f64,
}

impl ModelClock {
    fn new(clock: Clock, scale: f64) -> ModelClock {
        ModelClock {
            origin_unix_ms: clock.unix_ms(),
            origin: clock.now(),
            clock,
            scale,
        }
    }

    fn now_ms(&self) -> u64 {
        let elapsed = self.clock.now().saturating_sub(self.origin);
        self.origin_unix_ms + (elapsed.as_secs_f64() * 1e3 * self.scale) as u64
    }
}

/// The controller's state between ticks.
pub(crate) struct WarmthController {
    snapshot: SharedSnapshot,
    settings: PredictorSettings,
    demand: DemandModel,
    /// Each module's idle times, under `predictor.policy = "hybrid"` (rebuilt from the saved
    /// history at start).
    idle: HashMap<String, IdleHistogram>,
    clock: ModelClock,
    seen: HashMap<String, (u64, u64)>,
    /// Reload and instantiation times learned per code digest, and each module's load and
    /// instantiation counters as last read.
    load_times: CodeTimes,
    instantiate_times: CodeTimes,
    costs_seen: HashMap<String, CostsSeen>,
    store: Option<Arc<dyn HistoryStore>>,
    budget: Arc<WarmBudget>,
    view: Arc<WarmthView>,
    /// Which modules had work since the last revision.
    activity: Arc<ActivityLog>,
    /// The snapshot `planned` is in (and the view's map was last pruned to).
    planned_in: LastSnapshot,
    /// Positions of the modules planned last revision: looked at again.
    planned: Vec<usize>,
}

impl WarmthController {
    /// A controller on `clock`; the orchestrator's loop, if any, sets its [`WarmBudget`]
    /// ([`WarmthController::budget`]).
    pub(crate) fn new(
        snapshot: SharedSnapshot,
        settings: PredictorSettings,
        store: Option<Arc<dyn HistoryStore>>,
        view: Arc<WarmthView>,
        clock: Clock,
        activity: Arc<ActivityLog>,
    ) -> WarmthController {
        let mut controller = WarmthController {
            clock: ModelClock::new(clock, settings.time_scale),
            snapshot,
            settings,
            demand: DemandModel::new(),
            idle: HashMap::new(),
            seen: HashMap::new(),
            load_times: CodeTimes::new(),
            instantiate_times: CodeTimes::new(),
            costs_seen: HashMap::new(),
            store,
            budget: Arc::new(WarmBudget::default()),
            view,
            activity,
            planned_in: LastSnapshot::default(),
            planned: Vec::new(),
        };
        controller.restore();
        controller
    }

    /// Restores saved histories; a store that cannot be read leaves the history empty (said in
    /// the log and in the status).
    fn restore(&mut self) {
        let Some(store) = &self.store else { return };
        let note = match store.load_all() {
            Ok(histories) => {
                let mut restored = 0;
                for (module, bytes) in histories {
                    let restoring = serde_json::from_slice::<HistorySnapshot>(&bytes)
                        .map_err(HistoryUnreadable::from)
                        .and_then(|s| {
                            self.demand.restore(&module, &s)?;
                            Ok(s)
                        });
                    match restoring {
                        Ok(snapshot) => {
                            restored += 1;
                            if self.settings.policy == WarmthPolicy::Hybrid {
                                let histogram = IdleHistogram::from_minutes(
                                    HybridParams::default(),
                                    snapshot.minutes,
                                );
                                self.idle.insert(module, histogram);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%module, error = %spark_error::chain(&e), "module history unreadable; starting it empty")
                        }
                    }
                }
                tracing::info!(modules = restored, "demand history restored");
                None
            }
            Err(e) => {
                tracing::warn!(error = %spark_error::chain(&e), "demand history store unreadable; starting with an empty history");
                Some(format!(
                    "history store unreadable, started empty: {}",
                    spark_error::chain(&e)
                ))
            }
        };
        if let Some(note) = note {
            self.view.note(note);
        }
    }

    /// The actuator through which the orchestrator shrinks the budget.
    pub(crate) fn budget(&self) -> Arc<WarmBudget> {
        self.budget.clone()
    }

    /// Runs until `shutdown`, then saves the history. The ticker is taken now, before the task
    /// runs, so a manual clock knows the loop from the start.
    pub(crate) fn run(
        self,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let ticker = self.clock.clock.ticker("warmth", self.settings.interval);
        self.run_with(ticker, shutdown)
    }

    async fn run_with(mut self, mut ticker: Ticker, shutdown: CancellationToken) {
        let clock = self.clock.clock.clone();
        let mut saved = clock.now();
        loop {
            tokio::select! {
                () = ticker.tick() => {}
                () = shutdown.cancelled() => break,
            }
            self.tick().await;
            if clock.now().saturating_sub(saved) >= SAVE_EVERY {
                self.save().await;
                saved = clock.now();
            }
        }
        self.save().await;
    }

    /// One revision: observe, forecast, plan, move modules.
    ///
    /// Only active modules are planned: those loaded now, and those with a demand history. A
    /// module registered and never called, whose code is only on disk, has nothing to plan (it
    /// is not pre-warmed on no evidence: its first request loads it). Only candidates are
    /// read: the modules with work since the last revision (see [`crate::serve::activity`]),
    /// those planned last time and those with a history (every module after a deploy), so a
    /// revision costs the active modules, not the registered ones.
    pub(crate) async fn tick(&mut self) {
        let now = self.clock.now_ms();
        let snapshot = self.snapshot.load_full();
        let marked: Vec<usize> = self
            .activity
            .drain(Watcher::Warmth)
            .iter()
            .filter_map(|a| snapshot.position(a.module()))
            .collect();
        let fresh = self.planned_in.replaced_by(&snapshot);
        if fresh {
            // A deploy: forget the times of code no module uses any more.
            let codes: HashSet<String> = snapshot.modules.iter().map(|m| m.info().digest).collect();
            self.load_times.retain(|code| codes.contains(code));
            self.instantiate_times.retain(|code| codes.contains(code));
            self.costs_seen
                .retain(|id, _| snapshot.position(id.as_str()).is_some());
        }
        let (observed, mut candidates): (Vec<usize>, Vec<usize>) = if fresh {
            let all: Vec<usize> = (0..snapshot.modules.len()).collect();
            (all.clone(), all)
        } else {
            let candidates = marked
                .iter()
                .chain(&self.planned)
                .copied()
                .chain(self.demand.modules().filter_map(|m| snapshot.position(m)))
                .collect();
            (marked, candidates)
        };
        for &index in &observed {
            self.observe(&snapshot.modules[index], now);
        }
        candidates.sort_unstable();
        candidates.dedup();
        self.view.state.lock().expect("warmth view").modules_read = candidates.len();
        if !self.settings.enabled {
            return;
        }
        let (planned, forecasts, plan) = match self.settings.policy {
            WarmthPolicy::Predict => self.predicted_plan(&snapshot, &candidates, now),
            WarmthPolicy::KeepAlive(_) | WarmthPolicy::Hybrid => {
                self.window_plan(&snapshot, &candidates, now)
            }
        };
        let active: Vec<&Arc<ModuleSlot>> = planned.iter().map(|&i| &snapshot.modules[i]).collect();
        self.planned = planned;
        let mut modules = Vec::with_capacity(active.len());
        let mut hot = HashSet::new();
        for ((slot, (_, target)), forecast) in active.iter().zip(&plan.targets).zip(&forecasts) {
            let target = self.adjust(slot, *target);
            let was_loaded = slot.residency.is_loaded();
            move_to(slot, target).await;
            if !was_loaded && slot.residency.is_loaded() {
                // Loaded ahead of its calls: the control loop plans it from now on.
                slot.activity.mark();
            }
            if target != WarmthLevel::Compiled
                && let Some(guest) = slot.residency.current()
            {
                hot.insert(guest.prepared().digest.clone());
            }
            modules.push((
                slot.id().to_owned(),
                describe(slot, target, forecast.as_ref()),
            ));
        }
        self.publish(&snapshot, &active, &plan.eviction_order);
        // What the predictor keeps loaded is what it expects to be called: its background
        // optimization (if it still runs baseline code) goes first.
        if let Some(slot) = snapshot.modules.first() {
            slot.residency.runtime().expect_hot(hot);
        }
        let mut state = self.view.state.lock().expect("warmth view");
        state.budget_bytes = self.settings.memory_budget;
        state.planned_bytes = plan.bytes;
        // Modules not planned this time keep what was last said of them; modules no longer
        // served (after a deploy) are dropped.
        if fresh {
            state
                .modules
                .retain(|id, _| snapshot.position(id.as_str()).is_some());
        }
        state.modules.extend(modules);
        state.eviction_order = plan.eviction_order;
    }

    /// Tells the ledger of loaded code what this revision decided: the budget left for code
    /// once the ready instances kept are counted (shrunk as the plan's was), and the plan's
    /// eviction order, by which requests' loads make room until the next revision.
    fn publish(&self, snapshot: &Snapshot, active: &[&Arc<ModuleSlot>], eviction_order: &[String]) {
        let keep = 1.0 - self.budget.pressure();
        let budget = (self.settings.memory_budget as f64 * keep) as u64;
        let instances: u64 = active
            .iter()
            .filter(|slot| slot.spec.priority != Priority::Critical)
            .map(|slot| {
                let ready = slot.residency.current().map_or(0, |g| g.ready_count());
                ready as u64 * instance_bytes(slot)
            })
            .sum();
        let order = eviction_order
            .iter()
            .filter_map(|id| snapshot.module(id))
            .map(|slot| slot.residency.cell());
        self.view
            .loaded
            .plan(Some(budget.saturating_sub(instances)), order);
    }

    /// The predictor's plan for the candidates that have a forecast or are loaded: their
    /// positions, forecasts (in the same order) and levels.
    fn predicted_plan(
        &self,
        snapshot: &Snapshot,
        candidates: &[usize],
        now: u64,
    ) -> (Vec<usize>, Vec<Option<Forecast>>, WarmthPlan) {
        let (planned, forecasts): (Vec<usize>, Vec<Option<Forecast>>) = candidates
            .iter()
            .filter_map(|&index| {
                let slot = &snapshot.modules[index];
                let forecast = self.demand.forecast(slot.id(), now);
                (forecast.is_some() || slot.residency.is_loaded()).then_some((index, forecast))
            })
            .unzip();
        let unknown = unknown_forecast();
        let demands: Vec<ModuleDemand<'_>> = planned
            .iter()
            .zip(&forecasts)
            .map(|(&index, forecast)| {
                let slot = &snapshot.modules[index];
                ModuleDemand {
                    module: slot.id(),
                    forecast: forecast.as_ref().unwrap_or(&unknown),
                    costs: self.costs(slot),
                }
            })
            .collect();
        let planner = WarmthPlanner {
            budget_bytes: self.settings.memory_budget,
            horizon_ms: self.horizon(),
            exchange: EXCHANGE,
        };
        let plan = planner.plan(&demands, self.budget.pressure());
        (planned, forecasts, plan)
    }

    /// A baseline's plan (`predictor.policy` "keep-alive" or "hybrid"): the candidates that
    /// were ever called or are loaded, each loaded inside its window after its last call (no
    /// forecasts: the baselines do not predict).
    fn window_plan(
        &self,
        snapshot: &Snapshot,
        candidates: &[usize],
        now: u64,
    ) -> (Vec<usize>, Vec<Option<Forecast>>, WarmthPlan) {
        let (planned, idle): (Vec<usize>, Vec<IdleModule<'_>>) = candidates
            .iter()
            .filter_map(|&index| {
                let slot = &snapshot.modules[index];
                let last_call_ms = self.demand.last_call_ms(slot.id());
                (last_call_ms.is_some() || slot.residency.is_loaded()).then(|| {
                    let costs = self.costs(slot);
                    let module = IdleModule {
                        module: slot.id(),
                        last_call_ms,
                        window_ms: self.load_window(slot.id()),
                        load_bytes: costs.load_bytes,
                        lead_ms: self.lead_ms(costs.load_ms),
                    };
                    (index, module)
                })
            })
            .unzip();
        let planner = WindowPlanner {
            budget_bytes: self.settings.memory_budget,
        };
        let plan = planner.plan(&idle, now, self.budget.pressure());
        let forecasts = vec![None; planned.len()];
        (planned, forecasts, plan)
    }

    /// When a module is loaded after its last call (model ms) under a baseline policy: the
    /// keep-alive, or the window of its idle-time histogram (the hybrid's, before any idle
    /// time: its fixed keep-alive).
    fn load_window(&self, module: &str) -> (u64, u64) {
        let minutes = |(from, to): (f64, f64)| ((from * 60_000.0) as u64, (to * 60_000.0) as u64);
        match self.settings.policy {
            WarmthPolicy::KeepAlive(keep_alive) => {
                (0, keep_alive.as_millis().try_into().unwrap_or(u64::MAX))
            }
            _ => minutes(self.idle.get(module).map_or_else(
                || IdleHistogram::new(HybridParams::default()).window(),
                IdleHistogram::window,
            )),
        }
    }

    /// Feeds a module's invocations since the last tick to the demand model: one read of its
    /// counters, and nothing else unless it was called.
    fn observe(&mut self, slot: &ModuleSlot, now: u64) {
        let stats = slot.stats.snapshot();
        self.observe_costs(slot, &stats);
        let counters = (stats.invocations, stats.cpu_nanos);
        let (calls, cpu) = match self.seen.get_mut(slot.id()) {
            Some(seen) => std::mem::replace(seen, counters),
            None if stats.invocations == 0 => return,
            None => {
                self.seen.insert(slot.id().to_owned(), counters);
                (0, 0)
            }
        };
        let new_calls = stats.invocations.saturating_sub(calls);
        if new_calls > 0 && self.settings.policy == WarmthPolicy::Hybrid {
            // The hybrid learns idle times: the first call of this tick ends the quiet since
            // the last one; the others came within the tick.
            let since = self.demand.last_call_ms(slot.id());
            let histogram = self
                .idle
                .entry(slot.id().to_owned())
                .or_insert_with(|| IdleHistogram::new(HybridParams::default()));
            if let Some(last) = since {
                histogram.record_idle(now.saturating_sub(last) as f64 / 60_000.0);
            }
            for _ in 1..new_calls.min(1_000) {
                histogram.record_idle(0.0);
            }
        }
        if new_calls > 0 {
            self.demand
                .observe(slot.id(), now, new_calls.min(u64::from(u32::MAX)) as u32);
            let per_call = stats.cpu_nanos.saturating_sub(cpu) as f64 / new_calls as f64 / 1e6;
            self.demand.observe_duration(slot.id(), per_call);
        }
    }

    /// Feeds the module's loads and instantiations since its last observation to the times
    /// learned for its code (reading its code's facts only when there is something new).
    fn observe_costs(&mut self, slot: &ModuleSlot, stats: &spark_runtime::StatsSnapshot) {
        let now = CostsSeen {
            loads: slot.residency.loads(),
            instantiations: stats.instantiations,
            instantiate_nanos: stats.instantiate_nanos,
        };
        let before = match self.costs_seen.get_mut(slot.id()) {
            Some(seen) => std::mem::replace(seen, now),
            None => {
                self.costs_seen.insert(slot.id().to_owned(), now);
                CostsSeen::default()
            }
        };
        let new_instantiations = now.instantiations.saturating_sub(before.instantiations);
        if now.loads == before.loads && new_instantiations == 0 {
            return;
        }
        let info = slot.info();
        if now.loads != before.loads {
            self.load_times
                .observe(&info.digest, reload_ms(&info.report));
        }
        if new_instantiations > 0 {
            let nanos = now
                .instantiate_nanos
                .saturating_sub(before.instantiate_nanos);
            self.instantiate_times
                .observe(&info.digest, nanos as f64 / new_instantiations as f64 / 1e6);
        }
    }

    /// What each warmth level costs this module, from what was measured of it: its reload
    /// and instantiation times as learned over every load and instantiation of its code (one
    /// on a busy core must not make a module look dearer than its twins), its own figures
    /// before any was observed.
    fn costs(&self, slot: &ModuleSlot) -> LevelCosts {
        let info = slot.info();
        let stats = slot.stats.snapshot();
        let load_ms = self
            .load_times
            .estimate(&info.digest)
            .unwrap_or_else(|| reload_ms(&info.report));
        let instantiate_ms =
            self.instantiate_times
                .estimate(&info.digest)
                .unwrap_or(match stats.instantiations {
                    0 => 0.2,
                    n => stats.instantiate_nanos as f64 / n as f64 / 1e6,
                });
        LevelCosts {
            load_bytes: load_bytes(info.code_bytes),
            load_ms: load_ms.max(0.1),
            instance_bytes: instance_bytes(slot),
            instantiate_ms,
        }
    }

    /// How early a baseline's window must be acted on (model ms): a call is seen up to one
    /// interval after it came, the revision that loads comes up to one interval after the
    /// window opens, and the load takes `load_ms` of the node's time.
    fn lead_ms(&self, load_ms: f64) -> u64 {
        let scale = self.settings.time_scale;
        (2.0 * self.settings.interval.as_secs_f64() * 1e3 * scale + load_ms * scale) as u64
    }

    /// Plans cover two intervals, and at least a minute of model time: a call due just after
    /// the next revision must already be covered by this one, since the next revision's load
    /// may finish after the call arrives (and a revision may run late on a busy node).
    fn horizon(&self) -> u64 {
        let interval_model_ms =
            self.settings.interval.as_secs_f64() * 1e3 * self.settings.time_scale;
        ((2.0 * interval_model_ms) as u64).max(60_000)
    }

    /// Critical modules stay loaded; the orchestrator's warm limit caps ready instances.
    fn adjust(&self, slot: &ModuleSlot, target: WarmthLevel) -> WarmthLevel {
        let floor = match slot.spec.priority {
            Priority::Critical => WarmthLevel::Loaded,
            _ => WarmthLevel::Compiled,
        };
        // A command component runs `wasi:cli/run` once per instance: nothing to instantiate ahead.
        let command = (slot.info().world == "wasi:cli/command").then_some(0);
        let max_ready = match (command, slot.controls.warm_limit()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        target.within(floor, max_ready)
    }

    /// Saves every module's history in one transaction.
    async fn save(&self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let snapshots: Vec<(String, Vec<u8>)> = self
            .demand
            .modules()
            .filter_map(|m| {
                Some((
                    m.to_owned(),
                    serde_json::to_vec(&self.demand.snapshot(m)?).ok()?,
                ))
            })
            .collect();
        let saved = tokio::task::spawn_blocking(move || store.save_all(&snapshots)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %spark_error::chain(&e), "cannot save demand history")
            }
            Err(e) => {
                tracing::warn!(error = %spark_error::chain(&e), "saving demand history was interrupted")
            }
        }
    }
}

/// What a ready instance of this module costs in the budget: its memory as measured, and never
/// less than 64 KiB.
fn instance_bytes(slot: &ModuleSlot) -> u64 {
    slot.stats.instance_bytes().max(64 << 10)
}

fn unknown_forecast() -> Forecast {
    Forecast {
        p_next_within: spark_predict::live::FORECAST_HORIZONS_MS
            .iter()
            .map(|&h| (h, UNKNOWN_P))
            .collect(),
        expected_concurrency: 1.0,
        next_likely_ms: None,
        calls_per_day: 1.0,
        period_ms: None,
    }
}

/// A module's load and instantiation counters as the controller last read them.
#[derive(Debug, Clone, Copy, Default)]
struct CostsSeen {
    loads: u64,
    instantiations: u64,
    instantiate_nanos: u64,
}

/// What reloading this code costs, from one load's report: once no other module holds the
/// code, deserializing the artifact, plus linking.
fn reload_ms(report: &spark_runtime::LoadReport) -> f64 {
    // (A module that shared another's code reports how that code was made.)
    let made_ms = report.made_in.as_secs_f64() * 1e3;
    (match report.made_by {
        spark_runtime::CodeSource::AotCache | spark_runtime::CodeSource::Shared => made_ms,
        // Compiled: a reload deserializes the artifact, about a hundredth of that.
        spark_runtime::CodeSource::Compiled => made_ms / 100.0,
    }) + report.link.as_secs_f64() * 1e3
}

/// Brings a module to `target`, logging what changed.
async fn move_to(slot: &ModuleSlot, target: WarmthLevel) {
    let module = slot.id();
    match target {
        WarmthLevel::Compiled => {
            if slot.residency.unload() {
                tracing::info!(%module, "evicted: compiled artifact kept on disk");
            }
        }
        WarmthLevel::Loaded | WarmthLevel::Ready(_) => {
            match slot.residency.ensure_loaded().await {
                Ok(true) => tracing::info!(%module, "pre-warmed: loaded ahead of predicted demand"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%module, error = %spark_error::chain(&e), "pre-warming failed");
                    return;
                }
            }
            let Some(guest) = slot.residency.current() else {
                return;
            };
            let want = match target {
                WarmthLevel::Ready(n) => n as usize,
                _ => 0,
            };
            guest.trim_ready(want);
            if want > guest.ready_count()
                && let Err(e) = guest.prewarm(want).await
            {
                tracing::warn!(%module, error = %spark_error::chain(&e), "instantiating ahead failed");
            }
        }
    }
}

fn describe(slot: &ModuleSlot, target: WarmthLevel, forecast: Option<&Forecast>) -> ModuleWarmth {
    let ready = slot.residency.current().map_or(0, |g| g.ready_count());
    let level = match (slot.residency.is_loaded(), ready) {
        (false, _) => "compiled".to_owned(),
        (true, 0) => "loaded".to_owned(),
        (true, n) => format!("ready({n})"),
    };
    ModuleWarmth {
        level,
        target: format!("{target:?}").to_lowercase(),
        ready,
        p_within_1m: forecast.map(|f| f.p_within(60_000)),
        next_likely_ms: forecast.and_then(|f| f.next_likely_ms),
        period_ms: forecast.and_then(|f| f.period_ms),
        calls_per_day: forecast.map(|f| f.calls_per_day),
    }
}
