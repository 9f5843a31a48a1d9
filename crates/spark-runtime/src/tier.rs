//! Two tiers per module: serve a component the node has never compiled from a baseline
//! compiler (Winch) at once, and compile it with the optimizing compiler (Cranelift) in the
//! background; modules switch to the optimized code when it is ready.
//!
//! A load ([`prepare`]) looks for the best code it can have without waiting for Cranelift:
//! optimized code in memory or in the AOT cache; else baseline code in memory, in the AOT cache
//! or compiled by Winch now (about a fifth of Cranelift's time). Baseline code comes with a
//! [`Pending`] optimization: one background compile per component, however many modules and
//! loads share it, on the optimizer's own threads in the idle scheduling class (never on the
//! async runtime), its artifact written to the AOT cache under the same authentication as
//! every other one. A [`crate::GuestModule`] on baseline code waits for it and swaps its code
//! for new invocations; invocations in flight finish on the baseline code they started on.
//!
//! The decision worth knowing: Winch does not support every component. Wasmtime 48's Winch
//! rejects exception handling, tail calls, relaxed SIMD, GC and typed function references,
//! needs AVX for SIMD on x86_64, and runs on x86_64 and aarch64 only. Any Winch compile error
//! is taken as "Winch cannot do this one": the component is compiled by Cranelift alone (a
//! truly invalid component then fails there, with Cranelift's error), and the reason is kept
//! in its [`TierStatus`] (status, metrics) and logged once. A host Winch cannot serve at all
//! makes every module Cranelift-only, with the reason.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::aot::ArtifactCache;
use crate::engine::{self, Allocation, Compiler, EngineSettings};
use crate::error::{LoadError, RuntimeError};
use crate::host::Host;
use crate::loader::{
    self, Code, CodeCache, CodeSource, Expect, Linking, Prepared, SharedCode, Wasm,
};

/// Nice value of the optimizer's threads: the kernel runs them only in the gaps foreground
/// work leaves (the same value background guests get by default).
const OPTIMIZER_NICE: i32 = 19;

/// Which code a module runs, as `spark status` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "tier", content = "reason", rename_all = "kebab-case")]
pub enum TierState {
    /// Winch's code; the optimized code is being compiled in the background.
    Baseline,
    /// Cranelift's code, after (or instead of) baseline code.
    Optimized,
    /// Cranelift's code only, never tiered, and why: tiering off, Winch rejected the
    /// component, or the host cannot run Winch.
    CraneliftOnly(String),
}

impl std::fmt::Display for TierState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TierState::Baseline => f.write_str("baseline"),
            TierState::Optimized => f.write_str("optimized"),
            TierState::CraneliftOnly(reason) => write!(f, "cranelift-only ({reason})"),
        }
    }
}

impl TierState {
    /// The tier's name without its reason: `baseline`, `optimized`, `cranelift-only`.
    pub fn name(&self) -> &'static str {
        match self {
            TierState::Baseline => "baseline",
            TierState::Optimized => "optimized",
            TierState::CraneliftOnly(_) => "cranelift-only",
        }
    }
}

/// A module's tier and how long its load took to reach each tier.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TierStatus {
    /// Which code it runs.
    pub state: TierState,
    /// From the start of the load to baseline code ready to serve (tiered loads only).
    pub to_baseline_ms: Option<f64>,
    /// From the start of the load to optimized code (Cranelift's), when it exists.
    pub to_optimized_ms: Option<f64>,
}

impl TierStatus {
    pub(crate) fn cranelift_only(reason: &str, took: Duration) -> TierStatus {
        TierStatus {
            state: TierState::CraneliftOnly(reason.to_owned()),
            to_baseline_ms: None,
            to_optimized_ms: Some(ms(took)),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The baseline tier: Winch's engine, its linker, its artifacts and its code in memory.
pub(crate) struct Baseline {
    pub(crate) engine: Engine,
    pub(crate) allocation: Allocation,
    linker: Linker<Host>,
    cache: Option<ArtifactCache>,
    code: CodeCache,
}

impl Baseline {
    /// Builds the baseline engine (or says why this host cannot have one).
    pub(crate) fn build(
        settings: &EngineSettings,
        cache_dir: Option<&Path>,
        nn: bool,
    ) -> Result<Result<Baseline, String>, RuntimeError> {
        if let Err(reason) = host_supports_winch() {
            return Ok(Err(reason));
        }
        let (engine, allocation) = match engine::build_engine(settings, Compiler::Baseline) {
            Ok(built) => built,
            Err(e) => {
                return Ok(Err(format!(
                    "the baseline engine: {}",
                    spark_error::chain(&e)
                )));
            }
        };
        let linker = crate::build_linker(&engine, nn)?;
        let cache = match cache_dir {
            Some(dir) => Some(ArtifactCache::open_tier(dir, &engine, "baseline")?),
            None => None,
        };
        Ok(Ok(Baseline {
            engine,
            allocation,
            linker,
            cache,
            code: CodeCache::default(),
        }))
    }

    /// Its AOT cache, if the node keeps one.
    pub(crate) fn cache(&self) -> Option<&ArtifactCache> {
        self.cache.as_ref()
    }

    /// The baseline code cache's churn (see [`crate::Runtime::code_churn`]).
    pub(crate) fn code_churn(&self) -> u64 {
        self.code.churn()
    }

    fn code(&self, nn: bool) -> Code<'_> {
        Code {
            engine: &self.engine,
            linker: &self.linker,
            nn,
            cache: self.cache.as_ref(),
            shared: &self.code,
        }
    }
}

/// Whether Winch can run here: x86_64 with AVX (Winch needs it for SIMD), or aarch64.
fn host_supports_winch() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            Ok(())
        } else {
            Err("host CPU lacks AVX, which Winch needs".to_owned())
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        Ok(())
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Err(format!("Winch does not run on {}", std::env::consts::ARCH))
    }
}

/// The background optimizer: low-priority threads, the optimizations under way, and the
/// components Winch refused.
///
/// One compile runs at a time, on all the pool's threads (Cranelift compiles a component's
/// functions in parallel inside the pool): a dispatcher thread takes the next queued compile
/// from the gate and runs it in the pool, waiting for it to end before it takes another. The
/// queue never lives in the pool, because a rayon thread waiting for its share of a compile
/// runs whatever else the pool holds: with every queued compile spawned into the pool, each
/// started inside the previous one's wait, so a burst of large components (a first start of
/// JavaScript components) compiled dozens at once, nested, each holding its memory until the
/// innermost finished (20 of them: 1.8 GB of heap; the first queued finished last).
pub(crate) struct Optimizer {
    pending: Mutex<HashMap<String, Weak<TierUp>>>,
    rejected: Mutex<HashMap<String, String>>,
    /// Compiles waiting for the dispatcher and for the node's permission.
    gate: Arc<Gate>,
}

/// The optimizer's queue and the node's say over it: a compile starts only while nothing holds
/// the gate (the orchestrator's surge, memory-pressure and power-save modes do), and the next
/// one is a component the predictor expects to be hot before any other, else the oldest.
/// Compiles already running are not interrupted.
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
    /// How long after it is queued a compile may start at the earliest.
    delay: Duration,
}

#[derive(Default)]
struct GateState {
    held: Option<String>,
    hot: HashSet<String>,
    queue: Vec<Queued>,
    next_seq: u64,
    /// The runtime is gone: waiting threads leave.
    closed: bool,
}

/// A compile waiting in the queue.
struct Queued {
    digest: String,
    seq: u64,
    /// Not started before this (the optimizer's test delay after it was queued).
    not_before: Instant,
    run: Box<dyn FnOnce() + Send>,
}

/// What the optimizer is doing, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerStatus {
    /// Why compiles wait now (`None`: they may run).
    pub postponed: Option<String>,
    /// Compiles waiting to start.
    pub queued: usize,
    /// Components the predictor expects to be hot (their compiles go first).
    pub hot: usize,
}

impl Gate {
    /// Queues a compile, due after the gate's delay.
    fn push(&self, digest: &str, run: Box<dyn FnOnce() + Send>) {
        let not_before = Instant::now() + self.delay;
        let mut state = self.state.lock().expect("optimizer gate");
        let seq = state.next_seq;
        state.next_seq += 1;
        state.queue.push(Queued {
            digest: digest.to_owned(),
            seq,
            not_before,
            run,
        });
        self.changed.notify_all();
    }

    /// Waits for the gate to be open with a compile queued and due, then takes the best due
    /// one (none once closed).
    fn take(&self) -> Option<Queued> {
        let mut state = self.state.lock().expect("optimizer gate");
        loop {
            if state.closed {
                return None;
            }
            if state.held.is_none() {
                let now = Instant::now();
                let best = state
                    .queue
                    .iter()
                    .enumerate()
                    .filter(|(_, q)| q.not_before <= now)
                    .min_by_key(|(_, q)| (!state.hot.contains(&q.digest), q.seq))
                    .map(|(i, _)| i);
                if let Some(best) = best {
                    return Some(state.queue.remove(best));
                }
                if let Some(due) = state.queue.iter().map(|q| q.not_before).min() {
                    let wait = due.saturating_duration_since(now);
                    state = self
                        .changed
                        .wait_timeout(state, wait)
                        .expect("optimizer gate")
                        .0;
                    continue;
                }
            }
            state = self.changed.wait(state).expect("optimizer gate");
        }
    }

    pub(crate) fn hold(&self, held: Option<String>) {
        let mut state = self.state.lock().expect("optimizer gate");
        if state.held == held {
            return;
        }
        match &held {
            Some(why) => {
                tracing::info!(queued = state.queue.len(), reason = %why, "background optimization postponed")
            }
            None => tracing::info!(
                queued = state.queue.len(),
                "background optimization resumed"
            ),
        }
        state.held = held;
        self.changed.notify_all();
    }

    pub(crate) fn set_hot(&self, hot: HashSet<String>) {
        self.state.lock().expect("optimizer gate").hot = hot;
    }

    fn status(&self) -> OptimizerStatus {
        let state = self.state.lock().expect("optimizer gate");
        OptimizerStatus {
            postponed: state.held.clone(),
            queued: state.queue.len(),
            hot: state.hot.len(),
        }
    }

    fn close(&self) {
        let queue = {
            let mut state = self.state.lock().expect("optimizer gate");
            state.closed = true;
            std::mem::take(&mut state.queue)
        };
        // Dropped outside the lock: each ends its tier-up ("interrupted").
        drop(queue);
        self.changed.notify_all();
    }
}

impl Optimizer {
    /// The pool and its dispatcher; each compile starts `delay` after it was queued at the
    /// earliest (0 in production: tests hold the baseline tier with it).
    pub(crate) fn start(delay: Duration) -> Result<Optimizer, RuntimeError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("spark-optimize-{i}"))
            .start_handler(|_| lower_priority())
            .panic_handler(|_| tracing::error!("a background optimization panicked"))
            .build()
            .map_err(|e| RuntimeError::Optimizer(Box::new(e)))?;
        let gate = Arc::new(Gate {
            delay,
            ..Gate::default()
        });
        let dispatch_gate = gate.clone();
        std::thread::Builder::new()
            .name("spark-optimizer".to_owned())
            .spawn(move || dispatch(&dispatch_gate, &pool))
            .map_err(|e| RuntimeError::Optimizer(Box::new(e)))?;
        Ok(Optimizer {
            pending: Mutex::default(),
            rejected: Mutex::default(),
            gate,
        })
    }

    fn rejection(&self, digest: &str) -> Option<String> {
        self.rejected
            .lock()
            .expect("rejected lock")
            .get(digest)
            .cloned()
    }

    /// The queue's controls: hold it, name the components to compile first.
    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    pub(crate) fn status(&self) -> OptimizerStatus {
        self.gate.status()
    }

    /// Queues a compile of `digest`; the dispatcher runs it when it is the best queued one
    /// and the gate is open.
    fn submit(&self, digest: &str, run: Box<dyn FnOnce() + Send>) {
        self.gate.push(digest, run);
    }
}

/// The dispatcher's loop: the best queued compile, run in the pool (the calling thread only
/// waits), then the next, until the gate closes.
fn dispatch(gate: &Gate, pool: &rayon::ThreadPool) {
    while let Some(job) = gate.take() {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(job.run)));
        if ran.is_err() {
            // The compile's tier-up ended as interrupted when its closure unwound.
            tracing::error!("a background optimization panicked");
        }
    }
}

impl Drop for Optimizer {
    fn drop(&mut self) {
        self.gate.close();
    }
}

/// Puts the calling optimizer thread in the idle scheduling class, at nice
/// [`OPTIMIZER_NICE`] where that class is refused (see [`crate::priority`]).
fn lower_priority() {
    crate::priority::enter_idle_class("optimizer", OPTIMIZER_NICE);
}

/// One component's background optimization; shared by every load of its baseline code.
pub(crate) struct TierUp {
    /// When the load that started it began: the time to optimized counts from there.
    started: Instant,
    outcome: tokio::sync::watch::Sender<Option<Result<Arc<SharedCode>, String>>>,
}

impl TierUp {
    async fn wait(&self) -> Result<Arc<SharedCode>, String> {
        let mut outcome = self.outcome.subscribe();
        let done = outcome.wait_for(Option::is_some).await;
        match done {
            Ok(done) => done.clone().expect("waited for an outcome"),
            Err(_) => Err("the optimizer stopped".to_owned()),
        }
    }

    fn finish(&self, outcome: Result<Arc<SharedCode>, String>) {
        self.outcome.send_replace(Some(outcome));
    }
}

/// Ends a tier-up with an error if the compile never finished it (a panic).
struct FinishOnDrop(Arc<TierUp>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        let unfinished = self.0.outcome.borrow().is_none();
        if unfinished {
            self.0
                .finish(Err("the optimization was interrupted".to_owned()));
        }
    }
}

/// Baseline code's way to its optimized code: the background optimization and what linking
/// the result for the same module needs.
#[derive(Clone)]
pub(crate) struct Pending {
    tier_up: Arc<TierUp>,
    runtime: Arc<crate::RuntimeInner>,
    path: PathBuf,
    digest: String,
    wasm_bytes: u64,
    expect: Expect,
    to_baseline: Duration,
}

impl Pending {
    /// Waits for the optimized code and links it as the baseline code was; `None` (logged)
    /// if the optimization failed: the module stays on baseline code.
    pub(crate) async fn optimized(self) -> Option<Arc<Prepared>> {
        let code = match self.tier_up.wait().await {
            Ok(code) => code,
            Err(reason) => {
                tracing::warn!(path = %self.path.display(), %reason, "no optimized code; staying on baseline code");
                return None;
            }
        };
        let to_optimized = self.tier_up.started.elapsed();
        let path = self.path.clone();
        let linked = tokio::task::spawn_blocking(move || {
            let tier = TierStatus {
                state: TierState::Optimized,
                to_baseline_ms: Some(ms(self.to_baseline)),
                to_optimized_ms: Some(ms(to_optimized)),
            };
            loader::link(
                &self.runtime.code(),
                Linking {
                    path: &self.path,
                    digest: self.digest.clone(),
                    wasm_bytes: self.wasm_bytes,
                    expect: self.expect,
                    code_time: to_optimized,
                },
                code,
                CodeSource::Compiled,
                tier,
                None,
            )
        })
        .await;
        match linked {
            Ok(Ok(prepared)) => Some(prepared),
            Ok(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %spark_error::chain(&e), "cannot link the optimized code; staying on baseline code");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "linking the optimized code was interrupted");
                None
            }
        }
    }
}

/// Blocking: the best code for the component `digest` (the SHA-256 of `wasm`'s bytes) that
/// needs no Cranelift compile now (see the module docs); Cranelift only with `tiering` off or
/// where Winch cannot serve. `wasm` is read only if code has to be compiled. `started` is
/// when the load began.
pub(crate) fn prepare(
    runtime: &Arc<crate::RuntimeInner>,
    path: &Path,
    digest: &str,
    mut wasm: Wasm,
    expect: Expect,
    tiering: bool,
    started: Instant,
) -> Result<Arc<Prepared>, LoadError> {
    let wasm = &mut wasm;
    let optimized = runtime.code();
    let baseline = match (&runtime.baseline, tiering) {
        (_, false) => {
            return loader::prepare_bytes(
                &optimized,
                path,
                wasm,
                digest,
                expect,
                started,
                "tiering off",
            );
        }
        (Err(reason), true) => {
            return loader::prepare_bytes(&optimized, path, wasm, digest, expect, started, reason);
        }
        (Ok(baseline), true) => baseline,
    };
    let wasm_bytes = wasm.len();
    let linking = |digest: &str| Linking {
        path,
        digest: digest.to_owned(),
        wasm_bytes,
        expect,
        code_time: started.elapsed(),
    };
    let digest = digest.to_owned();
    // Optimized code already made (in memory, or this node's artifact): no tiering needed.
    let found = optimized.shared.get_or_try(&digest, || {
        Ok(
            loader::load_artifact(optimized.engine, optimized.cache, path, &digest)
                .map(|component| (component, CodeSource::AotCache)),
        )
    })?;
    if let Some((code, source)) = found {
        let tier = TierStatus {
            state: TierState::Optimized,
            to_baseline_ms: None,
            to_optimized_ms: Some(ms(started.elapsed())),
        };
        return loader::link(&optimized, linking(&digest), code, source, tier, None);
    }
    let optimizer = &runtime.optimizer;
    if let Some(reason) = optimizer.rejection(&digest) {
        return loader::prepare_bytes(&optimized, path, wasm, &digest, expect, started, &reason);
    }
    let base = baseline.code(runtime.nn);
    let made = base.shared.get_or_make(&digest, || {
        loader::compile_or_load(base.engine, base.cache, path, wasm, &digest)
    });
    let (code, source) = match made {
        Ok(made) => made,
        Err(LoadError::Invalid { source, .. }) => {
            let reason = format!(
                "Winch: {}",
                first_line(&spark_error::chain(&*source).to_string())
            );
            tracing::warn!(path = %path.display(), %reason, "the baseline compiler cannot compile this component; compiling with Cranelift only");
            optimizer
                .rejected
                .lock()
                .expect("rejected lock")
                .insert(digest.clone(), reason.clone());
            return loader::prepare_bytes(
                &optimized, path, wasm, &digest, expect, started, &reason,
            );
        }
        Err(e) => return Err(e),
    };
    let to_baseline = started.elapsed();
    // The optimizer reads the bytes when the compile starts (baseline code loaded from the AOT
    // cache has not read them at all): a queue of large components holds none of them.
    let tier_up = start_optimizing(runtime, path, &digest, wasm.again(), started);
    let pending = Pending {
        tier_up,
        runtime: runtime.clone(),
        path: path.to_path_buf(),
        digest: digest.clone(),
        wasm_bytes: wasm.len(),
        expect,
        to_baseline,
    };
    let tier = TierStatus {
        state: TierState::Baseline,
        to_baseline_ms: Some(ms(to_baseline)),
        to_optimized_ms: None,
    };
    let prepared = loader::link(&base, linking(&digest), code, source, tier, Some(pending))?;
    tracing::info!(path = %path.display(), baseline_ms = to_baseline.as_millis() as u64, source = ?source, "serving baseline code; optimizing in the background");
    Ok(prepared)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text).trim()
}

/// The background optimization of `digest`: the one under way, or a new one.
fn start_optimizing(
    runtime: &Arc<crate::RuntimeInner>,
    path: &Path,
    digest: &str,
    mut wasm: Wasm,
    started: Instant,
) -> Arc<TierUp> {
    let optimizer = &runtime.optimizer;
    let mut pending = optimizer.pending.lock().expect("pending lock");
    pending.retain(|_, tier_up| tier_up.strong_count() > 0);
    if let Some(tier_up) = pending.get(digest).and_then(Weak::upgrade) {
        return tier_up;
    }
    let tier_up = Arc::new(TierUp {
        started,
        outcome: tokio::sync::watch::channel(None).0,
    });
    pending.insert(digest.to_owned(), Arc::downgrade(&tier_up));
    let job = FinishOnDrop(tier_up.clone());
    let (weak, path, digest) = (
        Arc::downgrade(runtime),
        path.to_path_buf(),
        digest.to_owned(),
    );
    let key = digest.clone();
    optimizer.submit(&key, Box::new(move || {
        let job = job;
        // A runtime dropped meanwhile: the tier-up ends as interrupted.
        let Some(runtime) = weak.upgrade() else { return };
        let compiling = Instant::now();
        let bytes = match wasm.bytes(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                let reason = format!("reading the component: {}", spark_error::chain(&e));
                tracing::warn!(path = %path.display(), %reason, "background optimization failed");
                return job.0.finish(Err(reason));
            }
        };
        let compiled = wasmtime::component::Component::new(&runtime.engine, &bytes);
        drop(bytes);
        // The compile's own allocations are freed now, whether its code is kept or not.
        runtime.code.note_compile();
        let outcome = match compiled {
            Ok(component) => {
                loader::store_artifact(runtime.cache.as_ref(), &path, &digest, &component);
                let code = runtime.code.insert(&digest, component, compiling.elapsed());
                tracing::info!(
                    path = %path.display(),
                    compile_ms = compiling.elapsed().as_millis() as u64,
                    since_load_ms = job.0.started.elapsed().as_millis() as u64,
                    "optimized code ready"
                );
                Ok(code)
            }
            Err(e) => {
                let reason = format!("Cranelift: {e:#}");
                tracing::warn!(path = %path.display(), %reason, "background optimization failed");
                Err(reason)
            }
        };
        job.0.finish(outcome);
    }));
    tier_up
}

#[cfg(test)]
mod gate_tests {
    use std::sync::mpsc;

    use super::*;

    fn job(tx: &mpsc::Sender<&'static str>, name: &'static str) -> Box<dyn FnOnce() + Send> {
        let tx = tx.clone();
        Box::new(move || tx.send(name).unwrap())
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn compiles_run_in_the_idle_scheduling_class() {
        let optimizer = Optimizer::start(Duration::ZERO).unwrap();
        let (tx, rx) = mpsc::channel();
        optimizer.submit(
            "c",
            Box::new(move || tx.send(crate::priority::current_policy().unwrap()).unwrap()),
        );
        assert_eq!(rx.recv().unwrap(), libc::SCHED_IDLE as u32);
        assert_eq!(
            crate::priority::current_policy().unwrap(),
            libc::SCHED_OTHER as u32,
            "the caller's own class is untouched"
        );
    }

    #[test]
    fn queued_compiles_run_one_at_a_time_in_the_order_queued() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let optimizer = Optimizer::start(Duration::ZERO).unwrap();
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (tx, rx) = mpsc::channel();
        for i in 0..8 {
            let (running, most, tx) = (running.clone(), most.clone(), tx.clone());
            let compile = move || {
                most.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                // A compile's parallel part: a thread waiting for the other half runs
                // whatever else the pool holds.
                let half = || {
                    std::thread::sleep(Duration::from_millis(20));
                    rayon::current_thread_index().is_some()
                };
                let (a, b) = rayon::join(half, half);
                running.fetch_sub(1, SeqCst);
                tx.send((i, a && b)).unwrap();
            };
            optimizer.submit(&format!("c{i}"), Box::new(compile));
        }
        let done: Vec<(i32, bool)> = (0..8)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(most.load(SeqCst), 1, "never two compiles at once");
        assert_eq!(
            done,
            (0..8).map(|i| (i, true)).collect::<Vec<_>>(),
            "oldest first, each on the pool's threads"
        );
    }

    #[test]
    fn hot_components_go_first_then_the_oldest() {
        let gate = Gate::default();
        let (tx, rx) = mpsc::channel();
        gate.push("a", job(&tx, "a"));
        gate.push("b", job(&tx, "b"));
        gate.push("c", job(&tx, "c"));
        gate.set_hot(HashSet::from(["c".to_owned()]));
        for _ in 0..3 {
            (gate.take().unwrap().run)();
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["c", "a", "b"]);
        assert_eq!(gate.status().queued, 0);
    }

    #[test]
    fn a_held_gate_starts_nothing_until_released_and_closing_frees_waiters() {
        let gate = Arc::new(Gate::default());
        let (tx, rx) = mpsc::channel();
        gate.hold(Some("power save".into()));
        gate.push("a", job(&tx, "a"));
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.take().map(|job| (job.run)()).is_some())
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "nothing runs while held");
        let status = gate.status();
        assert_eq!(
            (status.postponed.as_deref(), status.queued),
            (Some("power save"), 1)
        );
        gate.hold(None);
        assert!(waiter.join().unwrap());
        assert_eq!(rx.recv().unwrap(), "a");

        gate.hold(Some("surge".into()));
        gate.push("b", job(&tx, "b"));
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.take().is_some())
        };
        gate.close();
        assert!(!waiter.join().unwrap(), "closing frees a waiting thread");
        assert_eq!(gate.status().queued, 0, "and drops what was queued");
    }
}
