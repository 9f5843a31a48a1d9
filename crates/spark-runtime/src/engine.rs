//! The Wasmtime [`Engine`]s of a node: configuration, pooling with fallback, epoch ticks.
//!
//! A node has one optimizing engine (Cranelift) and, with tiering, a baseline engine (Winch):
//! Winch code has its own calling convention, so it cannot share an engine with Cranelift code.
//! Both get the same settings (epoch interruption, stacks, copy-on-write images, limits); the
//! baseline engine's pool is a quarter of the optimizing one's ([`Compiler::Baseline`]), since
//! a module runs on baseline code only until its optimized code is ready.
//!
//! Pooling is the fast path (slots for instances, memories and stacks reserved once; memory
//! images mapped copy-on-write), but it reserves several TiB of virtual address space. Boards
//! with a 39-bit address space cannot give that, so the pooled engine is attempted first and, if
//! Wasmtime cannot reserve the pool, the node falls back to on-demand allocation and says so in
//! a log line. Everything else behaves the same either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::RuntimeError;

/// How often the engine's epoch advances; the granularity of preemption and time limits.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(5);

/// Wasm stack per instance. Deep enough for real guests; overflow traps cleanly.
const MAX_WASM_STACK: usize = 1 << 20;
/// Native stack for each async guest invocation (must exceed `MAX_WASM_STACK`).
const ASYNC_STACK: usize = 2 << 20;

/// Bytes of a freed slot's linear memory, table and fiber stack reset in place rather than
/// decommitted (see `pooling_config`).
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;
const KEEP_RESIDENT_STACK: usize = 64 << 10;

/// Whether to use the pooling allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    /// Try pooling; fall back to on-demand allocation if the pool cannot be reserved.
    Auto,
    /// Always allocate on demand (what small boards end up with).
    Off,
}

/// Engine settings that a node derives from its configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Instances (one per in-flight request or job run) that may exist at once.
    pub max_instances: u32,
    /// The largest linear memory any instance may have.
    pub max_memory: u64,
    /// Whether to try the pooling allocator ([`Allocation`] says what the node got).
    pub pooling: PoolingMode,
    /// How often the epoch advances (default [`DEFAULT_EPOCH_TICK`]): how late a time or CPU
    /// limit may be noticed, and how often a [`crate::Pacer`] is asked.
    pub epoch_tick: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_instances: 1000,
            max_memory: 1 << 30,
            pooling: PoolingMode::Auto,
            epoch_tick: DEFAULT_EPOCH_TICK,
        }
    }
}

/// What the node ended up with, for logs and `spark status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// The pooling allocator: slots reserved up front, memory images mapped copy-on-write.
    Pooling,
    /// Instances allocated one by one: pooling was disabled, or could not reserve its address
    /// space.
    OnDemand {
        /// Why: `pooling disabled by configuration`, or Wasmtime's error reserving the pool.
        reason: String,
    },
}

/// Which compiler an engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compiler {
    /// Cranelift: the optimized tier, and the only one without tiering.
    Optimizing,
    /// Winch: the baseline tier. Its pool has a quarter of the optimizing pool's slots (at
    /// least 16 instances), so it reserves about a quarter of the virtual address space; a
    /// surge of more concurrent instances on baseline code than that is refused like a full
    /// pool (503) until the optimized code takes over.
    Baseline,
}

impl Compiler {
    fn pool_settings(self, settings: &EngineSettings) -> EngineSettings {
        match self {
            Compiler::Optimizing => settings.clone(),
            Compiler::Baseline => EngineSettings {
                max_instances: (settings.max_instances / 4).max(16),
                ..settings.clone()
            },
        }
    }
}

/// Builds the engine, trying pooling first when allowed.
pub(crate) fn build_engine(
    settings: &EngineSettings,
    compiler: Compiler,
) -> Result<(Engine, Allocation), RuntimeError> {
    let base_config = |pool| {
        let mut config = base_config(pool);
        if compiler == Compiler::Baseline {
            config.strategy(wasmtime::Strategy::Winch);
            // Winch compiles the guest's functions; Cranelift still compiles the component's
            // trampolines and adapters in this engine, and optimizing them was about a sixth of
            // a first start (1,000 new components: 19.5-20.5 s with, 15.7-17.8 s without).
            // Baseline code lives until its optimized code is ready, so its trampolines need
            // not be optimized either.
            config.cranelift_opt_level(wasmtime::OptLevel::None);
        }
        config
    };
    let settings = &compiler.pool_settings(settings);
    if settings.pooling == PoolingMode::Auto {
        match Engine::new(&base_config(Some(pooling_config(settings)))) {
            Ok(engine) => return Ok((engine, Allocation::Pooling)),
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::warn!(
                    %reason,
                    "pooling allocator unavailable (too little address space?); falling back to on-demand allocation"
                );
                let engine =
                    Engine::new(&base_config(None)).map_err(|e| RuntimeError::Engine(e.into()))?;
                return Ok((engine, Allocation::OnDemand { reason }));
            }
        }
    }
    let engine = Engine::new(&base_config(None)).map_err(|e| RuntimeError::Engine(e.into()))?;
    let reason = "pooling disabled by configuration".to_owned();
    tracing::info!(%reason, "using on-demand instance allocation");
    Ok((engine, Allocation::OnDemand { reason }))
}

fn base_config(pooling: Option<PoolingAllocationConfig>) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // WASI 0.3 components (`wasi:http/handler@0.3.0`) use the component model's async ABI,
    // streams and futures; both tiers get it (Winch compiles the same trampolines).
    config.wasm_component_model_async(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.async_stack_size(ASYNC_STACK);
    config.memory_init_cow(true);
    config.parallel_compilation(true);
    if let Some(pool) = pooling {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Instances the predictor may keep ready (instantiated ahead of requests) on top of
/// `max_instances`: a quarter more, at least 4. Ready instances are a cache and must never take
/// the pool slot a request needs, so the pool is sized for both and the runtime caps ready
/// instances at this number.
pub(crate) fn ready_headroom(max_instances: u32) -> u32 {
    (max_instances / 4).max(4)
}

/// Pool sizes for `max_instances` component instances (plus [`ready_headroom`]). Real components (Rust std, JS, Python)
/// contain several core instances, tables and sometimes more than one memory, so those pools
/// get a multiple of the component count.
fn pooling_config(settings: &EngineSettings) -> PoolingAllocationConfig {
    let n = settings.max_instances.max(1) + ready_headroom(settings.max_instances);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .total_gc_heaps(n)
        .max_memories_per_module(2)
        .max_tables_per_module(4)
        .table_elements(100_000)
        .max_memory_size(usize::try_from(settings.max_memory).unwrap_or(usize::MAX))
        .max_unused_warm_slots(n / 10 + 8)
        // A slot freed by one request is reset for the next by rewriting the pages the guest
        // dirtied (found with PAGEMAP_SCAN where the kernel has it) instead of `madvise`-ing
        // them away: no TLB shootdown across cores, no page faults on the next request.
        // Measured on `hello` at 16 connections: about 1.6x the requests/s of resetting with
        // `madvise` alone, at the same resident memory.
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .async_stack_keep_resident(KEEP_RESIDENT_STACK)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

/// A thread that advances the engines' epochs every tick until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engines: Vec<Engine>, tick: Duration) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("spark-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
