//! The only crate in Spark that knows Wasmtime.
//!
//! A node has one [`Runtime`]: one [`wasmtime::Engine`] (pooling allocator with copy-on-write
//! memory images, epoch interruption), one linker with the host interfaces a standard
//! component expects (`wasi:cli`, `wasi:filesystem`, `wasi:sockets`, `wasi:clocks`,
//! `wasi:random`, `wasi:http`, `wasi:config`; all of WASI 0.2.x, as `wasmtime serve -Scli`
//! gives; plus, on a node with an inference host ([`RuntimeConfig::nn`]), `wasi:nn` and
//! `spark:nn/info`, served by `spark-nn`'s router), and an [`ArtifactCache`] of native code.
//! A component importing `wasi:nn` on a runtime without it is refused at load time.
//!
//! [`Runtime::prepare`] turns a `.wasm` file into a [`Prepared`] component (checked, compiled or
//! loaded from the AOT cache, pre-linked). [`Runtime::module`] pairs it with limits and
//! settings into a [`GuestModule`], which serves requests ([`GuestModule::handle`]) and runs
//! jobs ([`GuestModule::run_job`]), each in a fresh, isolated instance.
//!
//! With tiering ([`RuntimeConfig::tiering`], on by default) a second engine runs Winch, a
//! baseline compiler: a component the node has no code for is served from Winch's code at once
//! while Cranelift compiles it in the background, and modules move to the optimized code when
//! it is ready (see `tier`).
//!
//! The decision worth knowing: guests always run on the async path with an epoch deadline
//! callback every tick. That is where time and CPU limits are enforced, and where a [`Pacer`]
//! (the orchestrator) can make a module over its CPU share wait, without restarting it.
//!
//! Guests get no ambient authority: no preopened directories, no sockets, no name lookup, and
//! outbound HTTP only to the hosts their manifest allows, never to loopback, link-local or the
//! node's own listeners unless an entry names that address by IP literal and port (the node
//! tells the runtime its listeners with [`Runtime::set_listeners`]).

mod aot;
mod body;
mod budget;
mod claims;
mod concurrent;
pub mod critical_first;
mod engine;
mod error;
mod guest;
mod guest_log;
#[allow(
    unsafe_code,
    reason = "malloc_trim and sysconf through libc; each call has its SAFETY note"
)]
pub mod heap;
mod host;
#[allow(
    unsafe_code,
    reason = "a global allocator is unsafe by nature; each block has its SAFETY note"
)]
pub mod host_memory;
#[allow(
    unsafe_code,
    reason = "deserializing compiled code: only bytes this node signed (SAFETY note)"
)]
mod loader;
pub mod missing;
mod outbound;
pub mod priority;
mod rc_names;
pub mod spin;
mod stats;
mod tier;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use aot::{ArtifactCache, digest};
pub use body::{BodyError, RequestBodyError, ResponseBody};
pub use budget::{PaceFuture, Pacer};
pub use claims::Claims;
pub use critical_first::{CriticalFirst, CriticalWork};
pub use engine::{Allocation, DEFAULT_EPOCH_TICK, EngineSettings, PoolingMode};
pub use error::{InvokeError, LoadError, RuntimeError};
pub use guest::{
    GuestLimits, GuestModule, GuestSettings, InvocationCpu, InvocationInfo, JobReport, LatencySink,
    ModuleControls,
};
pub use host::Host;
pub use loader::{CodeSource, Entry, Expect, LoadReport, Prepared, ReadWasm};
pub use outbound::{OutboundOutcome, OutboundPacing, OutboundSpan, OutboundTracer, TraceOutbound};
pub use stats::{ModuleStats, StatsSnapshot};
pub use tier::{OptimizerStatus, TierState, TierStatus};

use engine::EpochTicker;

/// Where the runtime keeps its artifacts, and how the engine is sized.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Sizing of the Wasmtime engine: instance pool, memory cap, epoch tick.
    pub engine: EngineSettings,
    /// Directory of the AOT cache; `None` compiles every time (benchmarks' cold runs).
    pub cache_dir: Option<PathBuf>,
    /// Link `wasi:nn` and `spark:nn/info` (the node runs an inference host: `[nn]`).
    /// Without it, a component importing them is refused at load time.
    pub nn: bool,
    /// Tiered compilation: serve new components from Winch's code while Cranelift compiles
    /// them in the background ([`Runtime::prepare_bytes_with`] can turn it off per module).
    /// Off: every load waits for Cranelift, as without a baseline tier.
    pub tiering: bool,
    /// How long the background optimizer waits before compiling (0 in production; tests use
    /// it to observe the baseline tier).
    pub optimize_delay: std::time::Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            engine: EngineSettings::default(),
            cache_dir: None,
            nn: false,
            tiering: true,
            optimize_delay: std::time::Duration::ZERO,
        }
    }
}

/// The node's Wasm engines (optimizing, and baseline with tiering), linkers and AOT cache.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    /// The optimizing engine (Cranelift), its linker, cache and code: everything untiered.
    engine: Engine,
    allocation: Allocation,
    linker: Linker<Host>,
    /// Whether `linker` has `wasi:nn`.
    nn: bool,
    cache: Option<ArtifactCache>,
    /// Compiled code in memory, shared by digest (identical components compile once).
    code: loader::CodeCache,
    /// Permits for instances kept ready across all modules (see [`engine::ready_headroom`]).
    ready_slots: Arc<tokio::sync::Semaphore>,
    /// What every module's outbound HTTP shares: the node's listeners, the TLS roots.
    outbound: Arc<outbound::NodeOutbound>,
    /// The baseline tier (Winch), or why this node has none (tiering off, or the host).
    baseline: Result<tier::Baseline, String>,
    /// Whether loads are tiered unless a module opts out.
    tiering: bool,
    optimizer: tier::Optimizer,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine (pooled if the address space allows), the linker and the AOT cache, and
    /// starts the epoch ticker thread. Fails if Wasmtime refuses the engine or the cache
    /// directory cannot be opened.
    pub fn new(config: &RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let (engine, allocation) =
            engine::build_engine(&config.engine, engine::Compiler::Optimizing)?;
        let linker = build_linker(&engine, config.nn)?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(ArtifactCache::open(dir, &engine)?),
            None => None,
        };
        let baseline = match config.tiering {
            true => tier::Baseline::build(&config.engine, config.cache_dir.as_deref(), config.nn)?,
            false => Err("tiering off".to_owned()),
        };
        let mut engines = vec![engine.clone()];
        match &baseline {
            Ok(baseline) => engines.push(baseline.engine.clone()),
            Err(reason) if config.tiering => {
                tracing::warn!(%reason, "tiered compilation unavailable: every component waits for Cranelift")
            }
            Err(_) => {}
        }
        let ticker = EpochTicker::start(engines, config.engine.epoch_tick);
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                allocation,
                linker,
                nn: config.nn,
                cache,
                code: loader::CodeCache::default(),
                ready_slots: Arc::new(tokio::sync::Semaphore::new(engine::ready_headroom(
                    config.engine.max_instances,
                ) as usize)),
                outbound: Arc::default(),
                baseline,
                tiering: config.tiering,
                optimizer: tier::Optimizer::start(config.optimize_delay)?,
                _ticker: ticker,
            }),
        })
    }

    /// The optimizing Wasmtime engine (Cranelift) the node's modules share.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Pooling or on-demand, and why (the optimizing engine's).
    pub fn allocation(&self) -> &Allocation {
        &self.inner.allocation
    }

    /// The baseline engine's allocation, or why the node has no baseline tier (tiering off,
    /// or a host Winch cannot run on).
    pub fn baseline(&self) -> Result<&Allocation, &str> {
        match &self.inner.baseline {
            Ok(baseline) => Ok(&baseline.allocation),
            Err(reason) => Err(reason),
        }
    }

    /// Loads a component file: checks it, compiles it (or loads its AOT artifact) on a
    /// blocking thread, links it and finds its world. Tiered as the node is.
    pub async fn prepare(&self, path: &Path, expect: Expect) -> Result<Arc<Prepared>, LoadError> {
        let read = path.to_path_buf();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(&read))
            .await
            .map_err(|source| LoadError::Interrupted {
                path: path.to_path_buf(),
                source,
            })?
            .map_err(|source| LoadError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        self.prepare_bytes(path, Arc::from(bytes), expect).await
    }

    /// As [`Runtime::prepare`], for bytes in memory; `name` identifies them in errors.
    pub async fn prepare_bytes(
        &self,
        name: &Path,
        bytes: Arc<[u8]>,
        expect: Expect,
    ) -> Result<Arc<Prepared>, LoadError> {
        self.prepare_bytes_with(name, bytes, expect, true).await
    }

    /// As [`Runtime::prepare_bytes`]; `tiering` false makes this load wait for Cranelift
    /// even on a tiered node (a module's `tiering = false`).
    pub async fn prepare_bytes_with(
        &self,
        name: &Path,
        bytes: Arc<[u8]>,
        expect: Expect,
        tiering: bool,
    ) -> Result<Arc<Prepared>, LoadError> {
        self.prepare_with(name, expect, tiering, move |name| {
            loader::check_header(name, &bytes)?;
            Ok((aot::digest(&bytes), loader::Wasm::in_memory(bytes)))
        })
        .await
    }

    /// As [`Runtime::prepare_bytes_with`], for a component in a content-addressed store:
    /// `digest` is the SHA-256 (lowercase hex) of its bytes, which the store checked when it
    /// took them, `len` their size, and `read` reads them (checking them against `digest`).
    /// They are not hashed again, and not read at all when the node has code for `digest` (in
    /// memory or in the AOT cache): a restart's load reads only the artifact.
    pub async fn prepare_stored(
        &self,
        name: &Path,
        digest: &str,
        len: u64,
        read: ReadWasm,
        expect: Expect,
        tiering: bool,
    ) -> Result<Arc<Prepared>, LoadError> {
        let digest = digest.to_owned();
        self.prepare_with(name, expect, tiering, move |_| {
            Ok((digest, loader::Wasm::stored(len, read)))
        })
        .await
    }

    /// Runs a load on a blocking thread: `source` gives the component's digest and bytes.
    async fn prepare_with(
        &self,
        name: &Path,
        expect: Expect,
        tiering: bool,
        source: impl FnOnce(&Path) -> Result<(String, loader::Wasm), LoadError> + Send + 'static,
    ) -> Result<Arc<Prepared>, LoadError> {
        let inner = self.inner.clone();
        let name = name.to_path_buf();
        let fallback = name.clone();
        let tiering = tiering && inner.tiering;
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let (digest, wasm) = source(&name)?;
            tier::prepare(&inner, &name, &digest, wasm, expect, tiering, started)
        })
        .await
        .unwrap_or_else(|source| {
            Err(LoadError::Interrupted {
                path: fallback,
                source,
            })
        })
    }

    /// A module serving `prepared` under these limits and settings.
    pub fn module(
        &self,
        id: &str,
        prepared: Arc<Prepared>,
        limits: GuestLimits,
        settings: GuestSettings,
        controls: ModuleControls,
    ) -> GuestModule {
        GuestModule::new(
            id,
            prepared,
            limits,
            settings,
            controls,
            guest::Shared {
                ready_slots: self.inner.ready_slots.clone(),
                outbound: self.inner.outbound.clone(),
            },
        )
    }

    /// The orchestrator's say over background optimization: `Some(why)` holds every compile
    /// not yet started until it is `None` again (compiles running finish; modules keep serving
    /// baseline code meanwhile).
    pub fn postpone_optimization(&self, postponed: Option<String>) {
        self.inner.optimizer.gate().hold(postponed);
    }

    /// The predictor's say: the components (content digests) it expects to be busy, whose
    /// background compiles start before any other.
    pub fn expect_hot(&self, digests: HashSet<String>) {
        self.inner.optimizer.gate().set_hot(digests);
    }

    /// Code this runtime made (compiled or loaded from the AOT cache, in either tier), compiled
    /// or dropped so far: the churn after which the node gives freed heap back ([`heap`]).
    pub fn code_churn(&self) -> u64 {
        let baseline = self.inner.baseline.as_ref().map_or(0, |b| b.code_churn());
        self.inner.code.churn() + baseline
    }

    /// What the background optimizer is doing (postponed, queued compiles).
    pub fn optimizer_status(&self) -> OptimizerStatus {
        self.inner.optimizer.status()
    }

    /// The node's own listening addresses, as bound. Guests' outbound requests may not
    /// connect to them (a listener on `0.0.0.0` or `::` covers every local address on its
    /// port) unless the module names the exact address by IP literal and port. Call it once
    /// the listeners are bound: it applies at once to every module, those built before too.
    pub fn set_listeners(&self, listeners: &[SocketAddr]) {
        self.inner.outbound.set_listeners(listeners);
    }

    /// The best tier of code this node's AOT cache holds for component `digest` (optimized
    /// first), without reading or authenticating it: `None` if it holds none, or there is no
    /// cache. A node registers such a module without loading it: a load needs no compile.
    pub fn cached_tier(&self, digest: &str) -> Option<TierState> {
        let inner = &self.inner;
        if inner
            .cache
            .as_ref()
            .is_some_and(|c| c.path_for(digest).is_file())
        {
            return Some(TierState::Optimized);
        }
        let baseline = inner.baseline.as_ref().ok()?.cache()?;
        baseline
            .path_for(digest)
            .is_file()
            .then_some(TierState::Baseline)
    }
}

impl RuntimeInner {
    pub(crate) fn code(&self) -> loader::Code<'_> {
        loader::Code {
            engine: &self.engine,
            linker: &self.linker,
            nn: self.nn,
            cache: self.cache.as_ref(),
            shared: &self.code,
        }
    }
}

/// Host bytes held right now on behalf of all running invocations together (headers, bodies,
/// tensors, handles: what `limits.host_memory` caps per invocation).
pub fn host_memory_in_use() -> u64 {
    host_memory::charged_to_guests() as u64
}

pub(crate) fn build_linker(engine: &Engine, nn: bool) -> Result<Linker<Host>, RuntimeError> {
    let mut linker = Linker::<Host>::new(engine);
    let fail = |e: wasmtime::Error| RuntimeError::Linker(e.into());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(fail)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(fail)?;
    // WASI 0.3 beside 0.2: a component imports one or the other (or both) by version.
    wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(fail)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(fail)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, Host::config_view).map_err(fail)?;
    spin::add_to_linker(&mut linker).map_err(fail)?;
    if nn {
        spark_nn::add_to_linker(&mut linker, Host::nn_view).map_err(fail)?;
    }
    Ok(linker)
}
