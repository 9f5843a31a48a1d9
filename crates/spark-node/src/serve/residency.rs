//! Whether a module's code is in memory: loaded (and maybe with instances ready), or only
//! compiled on disk. The warmth controller moves modules between those levels; a request for a
//! module that is not loaded loads it first (a cold start, counted and reported).
//!
//! The decision worth knowing: unloading only drops the node's reference. Requests in flight
//! hold their own reference to the module, so its code stays mapped until the last of them
//! finishes; nothing running is ever cut short by an eviction. Loads are single-flight: many
//! requests arriving at a cold module cause one load, not many. Every load and unload goes
//! through the node's [`LoadedCode`] ledger, and a request's load makes room there at once
//! when it takes the loaded code over the predictor's budget (see [`crate::serve::loaded`]).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spark_manifest::{ModuleSpec, Trigger};
use spark_runtime::{
    CodeSource, Expect, GuestLimits, GuestModule, GuestSettings, LoadError, LoadReport,
    ModuleControls, Prepared, ReadWasm, Runtime,
};
use spark_store::Store;

use crate::serve::loaded::{CodeCell, LoadedCode};

/// What a cold start cost one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColdStart {
    /// Compiled from the `.wasm`, or loaded from the AOT cache.
    pub source: CodeSource,
    pub took: Duration,
}

/// Facts about a module's code that outlive its unloading (for status and metrics).
#[derive(Debug, Clone)]
pub struct CodeInfo {
    pub digest: String,
    pub world: &'static str,
    pub report: LoadReport,
    /// Size of the loaded image of its code (code, metadata, data images): what keeping the
    /// module loaded costs.
    pub code_bytes: usize,
    /// The tier its code was loaded at (see `ModuleSlot::tier` for the live one).
    pub tier: spark_runtime::TierStatus,
}

/// The world of a module registered at startup and not loaded since (it is known once loaded).
pub(crate) const WORLD_NOT_LOADED: &str = "not loaded yet";

impl CodeInfo {
    /// What is known of a component only on disk, never loaded by this process: its digest and
    /// the tier its cached code is at.
    fn on_disk(digest: &str, tier: spark_runtime::TierState) -> CodeInfo {
        CodeInfo {
            digest: digest.to_owned(),
            world: WORLD_NOT_LOADED,
            report: LoadReport {
                source: CodeSource::AotCache,
                wasm_bytes: 0,
                code: Duration::ZERO,
                link: Duration::ZERO,
                made_by: CodeSource::AotCache,
                made_in: Duration::ZERO,
            },
            code_bytes: 0,
            tier: spark_runtime::TierStatus {
                state: tier,
                to_baseline_ms: None,
                to_optimized_ms: None,
            },
        }
    }

    fn of(prepared: &Prepared) -> CodeInfo {
        CodeInfo {
            digest: prepared.digest.clone(),
            world: prepared.entry.world(),
            report: prepared.report.clone(),
            code_bytes: prepared.code_bytes,
            tier: prepared.tier.clone(),
        }
    }
}

/// How to build the module again after it was unloaded: its artifact is read back from the
/// node's store (verified against its digest) and compiled or taken from the AOT cache.
struct Loader {
    runtime: Runtime,
    store: Arc<Store>,
    digest: String,
    spec: ModuleSpec,
    controls: ModuleControls,
    app: Arc<spark_runtime::spin::AppHost>,
}

/// What a module's trigger needs its component to export.
pub(crate) fn expect(spec: &ModuleSpec) -> Expect {
    match spec.trigger {
        Trigger::Http { .. } => Expect::Http,
        Trigger::Schedule { .. } => Expect::Job,
    }
}

/// Reads artifact `digest` from the store (verified) and prepares it for `spec`.
pub(crate) async fn prepare_artifact(
    runtime: &Runtime,
    store: &Arc<Store>,
    digest: &str,
    spec: &ModuleSpec,
) -> Result<Arc<Prepared>, LoadError> {
    let name = std::path::PathBuf::from(format!(
        "module '{}' (sha256:{})",
        spec.id,
        &digest[..digest.len().min(12)]
    ));
    let unavailable = |cause: spark_error::BoxError| LoadError::Unavailable {
        path: name.clone(),
        source: spark_error::context("artifact unavailable", cause).into(),
    };
    let parsed = spark_store::Digest::parse(digest).map_err(|e| unavailable(e.into()))?;
    // The size, and that the store has it; the bytes are read only if the runtime has no code
    // for this digest (a restart with the AOT cache reads only the artifact).
    let len = std::fs::metadata(store.artifacts().path(&parsed))
        .map_err(|e| unavailable(e.into()))?
        .len();
    // The artifact directory, not the store: a compile queued for later reads through this,
    // and must not keep the store's database open after the node has stopped (a restart in
    // the same process would find it locked).
    let artifacts = store.artifacts().clone();
    let read: ReadWasm = Arc::new(move || Ok(artifacts.get(&parsed)?));
    runtime
        .prepare_stored(&name, digest, len, read, expect(spec), spec.tiering)
        .await
}

impl Loader {
    fn module(&self, prepared: Arc<Prepared>) -> GuestModule {
        let settings = GuestSettings {
            env: self.spec.env.clone(),
            config: self.spec.config.clone(),
            outbound: self.spec.outbound.clone(),
            files: self
                .spec
                .files
                .iter()
                .map(|m| (m.source.clone(), m.guest_path.clone()))
                .collect(),
            app: self.app.clone(),
        };
        self.runtime.module(
            self.spec.id.as_str(),
            prepared,
            GuestLimits::from(&self.spec.limits),
            settings,
            self.controls.clone(),
        )
    }
}

/// A module's residency.
pub struct Residency {
    code: Arc<CodeCell>,
    ledger: Arc<LoadedCode>,
    loading: tokio::sync::Mutex<()>,
    loader: Loader,
    info: Mutex<CodeInfo>,
    cold_loads: AtomicU64,
    cold_compiles: AtomicU64,
    cold_nanos: AtomicU64,
    /// Loads so far (the one at registration included): a new value means a new load report.
    loads: AtomicU64,
}

impl Residency {
    /// A module already loaded from `prepared` (its artifact is `prepared.digest` in `store`),
    /// on `ledger`, and the module itself (held by the caller while it checks the module: the
    /// ledger may evict it meanwhile to make room for another).
    #[allow(clippy::too_many_arguments)]
    pub fn loaded(
        runtime: Runtime,
        store: Arc<Store>,
        spec: ModuleSpec,
        controls: ModuleControls,
        prepared: Arc<Prepared>,
        app: Arc<spark_runtime::spin::AppHost>,
        ledger: Arc<LoadedCode>,
    ) -> (Residency, GuestModule) {
        let digest = prepared.digest.clone();
        let loader = Loader {
            runtime,
            store,
            digest,
            spec,
            controls,
            app,
        };
        let info = CodeInfo::of(&prepared);
        let code_bytes = prepared.code_bytes;
        let module = loader.module(prepared);
        let code = ledger.cell(pinned(&loader.spec));
        ledger.put(&code, module.clone(), code_bytes);
        let residency = Residency {
            code,
            ledger,
            loading: tokio::sync::Mutex::new(()),
            loader,
            info: Mutex::new(info),
            cold_loads: AtomicU64::new(0),
            cold_compiles: AtomicU64::new(0),
            cold_nanos: AtomicU64::new(0),
            loads: AtomicU64::new(1),
        };
        (residency, module)
    }

    /// After a build: evicts other modules until the ledger is within its limit, as a
    /// request's load does, so a start or deploy of many modules holds what the predictor's
    /// budget allows (plus the modules being built), not every module it built.
    pub fn make_room(&self) -> usize {
        self.ledger.make_room(&self.code)
    }

    /// Its key-value stores and variables.
    pub fn app(&self) -> &Arc<spark_runtime::spin::AppHost> {
        &self.loader.app
    }

    /// A module registered without loading it: its code is in the AOT cache (at `tier`) and is
    /// loaded by its first request, or when the predictor pre-warms it.
    #[allow(clippy::too_many_arguments)]
    pub fn on_disk(
        runtime: Runtime,
        store: Arc<Store>,
        spec: ModuleSpec,
        controls: ModuleControls,
        digest: String,
        tier: spark_runtime::TierState,
        app: Arc<spark_runtime::spin::AppHost>,
        ledger: Arc<LoadedCode>,
    ) -> Residency {
        let info = CodeInfo::on_disk(&digest, tier);
        Residency {
            code: ledger.cell(pinned(&spec)),
            ledger,
            loading: tokio::sync::Mutex::new(()),
            loader: Loader {
                runtime,
                store,
                digest,
                spec,
                controls,
                app,
            },
            info: Mutex::new(info),
            cold_loads: AtomicU64::new(0),
            cold_compiles: AtomicU64::new(0),
            cold_nanos: AtomicU64::new(0),
            loads: AtomicU64::new(0),
        }
    }

    /// The runtime the module loads into.
    pub fn runtime(&self) -> &Runtime {
        &self.loader.runtime
    }

    /// Whether its code is in memory now (cheaper than [`Residency::current`]).
    pub fn is_loaded(&self) -> bool {
        self.code.is_loaded()
    }

    /// The module, if its code is in memory now.
    pub fn current(&self) -> Option<GuestModule> {
        self.code.current().map(|m| (*m).clone())
    }

    /// The module for a request, loading it first if needed (then also saying what the cold
    /// start cost); a load makes room on the ledger before the request runs.
    pub async fn acquire(&self) -> Result<(GuestModule, Option<ColdStart>), LoadError> {
        if let Some(module) = self.current() {
            self.ledger.touch(&self.code);
            return Ok((module, None));
        }
        let started = Instant::now();
        let _single_flight = self.loading.lock().await;
        if let Some(module) = self.current() {
            // Loaded by the request we waited for: this one waited through a cold start too.
            let source = self.info().report.source;
            return Ok((
                module,
                Some(ColdStart {
                    source,
                    took: started.elapsed(),
                }),
            ));
        }
        let module = self.load().await?;
        self.make_room();
        let cold = ColdStart {
            source: module.prepared().report.source,
            took: started.elapsed(),
        };
        self.cold_nanos
            .fetch_add(cold.took.as_nanos() as u64, Ordering::Relaxed);
        let counter = match cold.source {
            CodeSource::Compiled => &self.cold_compiles,
            CodeSource::AotCache | CodeSource::Shared => &self.cold_loads,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok((module, Some(cold)))
    }

    /// Loads the module if it is not loaded (pre-warming); true if it had to load.
    pub async fn ensure_loaded(&self) -> Result<bool, LoadError> {
        if self.current().is_some() {
            return Ok(false);
        }
        let _single_flight = self.loading.lock().await;
        if self.current().is_some() {
            return Ok(false);
        }
        self.load().await?;
        Ok(true)
    }

    async fn load(&self) -> Result<GuestModule, LoadError> {
        let loader = &self.loader;
        let prepared =
            prepare_artifact(&loader.runtime, &loader.store, &loader.digest, &loader.spec).await?;
        *self.info.lock().expect("info lock") = CodeInfo::of(&prepared);
        self.loads.fetch_add(1, Ordering::Relaxed);
        let code_bytes = prepared.code_bytes;
        let module = loader.module(prepared);
        self.ledger.put(&self.code, module.clone(), code_bytes);
        Ok(module)
    }

    /// How many times its code was loaded (the load at registration included); the latest
    /// load's report is in [`Residency::info`].
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Drops the node's reference to the module's code (and its ready instances). Requests in
    /// flight keep theirs. True if it was loaded.
    pub fn unload(&self) -> bool {
        self.ledger.take(&self.code, true)
    }

    /// Its code's cell on the ledger (the plan's eviction order names cells).
    pub(crate) fn cell(&self) -> &CodeCell {
        &self.code
    }

    pub fn info(&self) -> CodeInfo {
        self.info.lock().expect("info lock").clone()
    }

    /// (loads from the AOT cache, compiles, total time) of cold starts so far, and unloads.
    pub fn cold_starts(&self) -> ColdStarts {
        ColdStarts {
            loads: self.cold_loads.load(Ordering::Relaxed),
            compiles: self.cold_compiles.load(Ordering::Relaxed),
            seconds: self.cold_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            unloads: self.code.unloads(),
        }
    }
}

impl Drop for Residency {
    /// A version dropped (after a deploy) leaves the ledger with its code.
    fn drop(&mut self) {
        self.ledger.take(&self.code, false);
    }
}

/// Critical modules stay loaded whatever the budget: their code is not the budget's.
fn pinned(spec: &ModuleSpec) -> bool {
    spec.priority == spark_manifest::Priority::Critical
}

/// Cold-start counters of one module.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColdStarts {
    pub loads: u64,
    pub compiles: u64,
    pub seconds: f64,
    pub unloads: u64,
}
