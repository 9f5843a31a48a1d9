//! A module ready to run: one pre-linked component plus its limits and settings.
//!
//! Every request (or job run) gets a fresh store and a fresh instance, so nothing leaks from
//! one invocation to the next, and a guest that traps, loops or exhausts its memory takes only
//! its own invocation down. The guest runs in its own task; the caller gets the response as
//! soon as the guest sets it, while the body keeps streaming from that task.
//!
//! A WASI 0.3 component (`wasi:http/handler@0.3.0`) is served the same way, except that one
//! instance may take several requests at once, within `limits.max_concurrent_per_instance`
//! (see `concurrent`; its request path is `guest/p3.rs`). Instances made ahead of requests
//! are in `guest/ready.rs`.
//!
//! A module's code can change under it once: from baseline to optimized code (tiering). Each
//! invocation takes the code current when it starts and keeps it to its end; instances made
//! ahead of requests on the old code are replaced by instances on the new code before they are
//! dropped, so the module keeps its warmth across the swap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use spark_manifest::OutboundPolicy;
use tokio::sync::oneshot;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p3::bindings::Service;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::body::{GuestTask, Owner, ResponseBody};
use crate::budget::{Budget, CpuShare, Metered, Pacer};
use crate::claims::Claims;
use crate::concurrent::SharedInstance;
use crate::critical_first::{self, CriticalFirst, Start};
use crate::error::InvokeError;
use crate::guest_log::{GuestLog, LogBudget, Stream};
use crate::host::{Host, MemoryLimiter};
use crate::loader::{Entry, Prepared};
use crate::outbound::{
    InFlight, NodeOutbound, OutboundClient, OutboundHooks, OutboundPacing, TraceOutbound,
};
use crate::stats::ModuleStats;
use crate::tier::TierStatus;

mod p3;
mod ready;

pub(crate) use p3::instantiate_p3;

/// A guest that is not being paced gives its worker away every this many epoch ticks (limits
/// are still checked on every tick). Yielding on every tick turned CPU-bound requests into
/// round-robin time slicing: each took about as long as all the others in flight, which on
/// 16 concurrent CPython requests doubled p99 against `wasmtime serve`.
/// Measured with `wrk -c16` on `hello-py` against `wasmtime serve` on the same 2 cores: every
/// tick, p99 134-147 ms vs 56-65 ms; every 4 ticks (20 ms), 52-64 ms, at a higher rate.
const YIELD_EVERY_TICKS: u32 = 4;

/// Limits enforced on every invocation of a module.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuestLimits {
    /// Linear memory per instance, all its memories together, in bytes.
    pub memory: u64,
    /// Wall-clock time per invocation; for a ready instance the clock starts when a request
    /// takes it.
    pub timeout: Duration,
    /// Guest CPU time per invocation (thread CPU time; instantiation and host calls included).
    pub cpu_time: Duration,
    /// Bytes of response body per invocation: a larger `Content-Length` is refused before the
    /// response is sent, a longer stream is cut off.
    pub response_body: u64,
    /// What the module may ask of `wasi:nn` (model and tensor sizes).
    pub nn: spark_nn::NnLimits,
    /// Host memory one invocation may hold outside its linear memory.
    pub host_memory: u64,
    /// Resource handles one invocation may hold at once.
    pub resources: u32,
    /// Outbound requests one invocation may have in flight.
    pub outbound_requests: u32,
    /// Bytes one invocation may log (stdout and stderr together).
    pub log: u64,
    /// WASI 0.3 components: requests one instance serves at once.
    pub max_concurrent_per_instance: u32,
    /// WASI 0.3 components: requests one instance serves over its life.
    pub max_requests_per_instance: u32,
    /// WASI 0.3 components: how long an instance with no request waits for the next one.
    pub instance_idle_timeout: Duration,
}

impl From<&spark_manifest::Limits> for GuestLimits {
    fn from(l: &spark_manifest::Limits) -> Self {
        GuestLimits {
            memory: l.memory,
            timeout: l.timeout,
            cpu_time: l.cpu_time,
            response_body: l.response_body,
            nn: spark_nn::NnLimits {
                max_model_bytes: l.nn_model,
                max_tensor_bytes: l.nn_tensor,
                max_total_tensor_bytes: spark_nn::total_tensor_bytes(l.nn_tensor, l.host_memory),
                allow_guest_models: l.nn_model > 0,
            },
            host_memory: l.host_memory,
            resources: l.resources,
            outbound_requests: l.outbound_requests,
            log: l.log,
            max_concurrent_per_instance: l.max_concurrent_per_instance,
            max_requests_per_instance: l.max_requests_per_instance,
            instance_idle_timeout: l.instance_idle_timeout,
        }
    }
}

/// What a module's guests see of the world besides the request.
#[derive(Debug, Clone, Default)]
pub struct GuestSettings {
    /// Environment variables every instance sees.
    pub env: BTreeMap<String, String>,
    /// Values served through `wasi:config/store`.
    pub config: BTreeMap<String, String>,
    /// The hosts outbound HTTP may reach.
    pub outbound: OutboundPolicy,
    /// Host directories every instance sees read-only, with the guest path of each (WASI
    /// preopens; Spin's `files`).
    pub files: Vec<(std::path::PathBuf, String)>,
    /// Key-value stores and variables (also served through `wasi:config/store`).
    pub app: Arc<crate::spin::AppHost>,
}

/// Attached to every response: how the invocation went before the response was sent.
#[derive(Debug, Clone, Copy)]
pub struct InvocationInfo {
    /// How long creating the instance took (for a ready instance, when it was made ahead of the
    /// request).
    pub instantiate: Duration,
    /// The request took an instance made ahead of it (no instantiation on its path).
    pub ready_instance: bool,
}

/// Attached to every response: the invocation's guest CPU time, read when wanted (the guest
/// may still run while its response body streams).
#[derive(Clone)]
pub struct InvocationCpu(CpuOf);

#[derive(Clone)]
enum CpuOf {
    /// The whole instance's (one request per instance).
    Instance(Arc<Budget>),
    /// The request's share of an instance it shares with others.
    Share(CpuShare),
}

impl InvocationCpu {
    /// Guest CPU time so far (instantiation and host calls included; on an instance several
    /// requests share, this request's equal share of it).
    pub fn used(&self) -> Duration {
        match &self.0 {
            CpuOf::Instance(budget) => budget.cpu_used(),
            CpuOf::Share(share) => share.used(),
        }
    }
}

impl std::fmt::Debug for InvocationCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InvocationCpu({:?})", self.used())
    }
}

/// How a job run ended.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Wall-clock time of the run.
    pub took: Duration,
    /// Guest CPU time of the run.
    pub cpu: Duration,
}

/// A module ready to serve: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct GuestModule {
    inner: Arc<Inner>,
}

struct Inner {
    id: Arc<str>,
    /// The code new invocations use: baseline until the optimized code replaces it.
    code: ArcSwap<Prepared>,
    limits: GuestLimits,
    env: Vec<(String, String)>,
    /// Read-only mounts: host directory, guest path.
    files: Vec<(std::path::PathBuf, String)>,
    config: Arc<WasiConfigVariables>,
    /// The same values, for `wasi:config/store@0.2.0-draft-2024-09-27` (see `spin`).
    config_map: Arc<BTreeMap<String, String>>,
    /// Key-value stores and variables (the Spin interfaces).
    app: Arc<crate::spin::AppHost>,
    /// Outbound HTTP: the module's policy and its connection pool.
    outbound: OutboundClient,
    stats: Arc<ModuleStats>,
    controls: ModuleControls,
    ready: std::sync::Mutex<Vec<ReadyInstance>>,
    /// Node-wide permits for ready instances; each ready instance holds one.
    ready_slots: Arc<tokio::sync::Semaphore>,
    /// WASI 0.3: the instance new requests join while it takes them.
    open: std::sync::Mutex<Option<Arc<SharedInstance>>>,
}

/// Live controls over how a module runs, set by the orchestrator (all optional).
#[derive(Clone, Default)]
pub struct ModuleControls {
    /// Consulted at every epoch tick of the module's guests (CPU shares).
    pub pacer: Option<Arc<dyn Pacer>>,
    /// Where the module's guests run (e.g. a low-priority executor for background modules);
    /// `None`: the caller's runtime.
    pub executor: Option<tokio::runtime::Handle>,
    /// Critical guests first (see [`crate::critical_first`]): a critical module's guests count
    /// as critical work; a normal module's start on threads in the idle class while there is
    /// some. `None`: always on `executor`.
    pub critical_first: Option<CriticalFirst>,
    /// Minimum gap between the module's outbound requests.
    pub outbound: Arc<OutboundPacing>,
    /// Told the round trip of every outbound request (the orchestrator's uplink view).
    pub outbound_latency: Option<Arc<dyn LatencySink>>,
    /// The module's counters; shared so they outlive a reload of the module's code.
    pub stats: Arc<ModuleStats>,
    /// The node's inference host; `None`: `wasi:nn` calls fail (no backend, no models).
    pub nn: Option<spark_nn::NnService>,
}

/// What a module gets from the node's runtime besides the engine.
pub(crate) struct Shared {
    /// Permits for ready instances across the node; each ready instance holds one.
    pub(crate) ready_slots: Arc<tokio::sync::Semaphore>,
    /// The node's listeners and TLS roots, for outbound HTTP.
    pub(crate) outbound: Arc<NodeOutbound>,
}

/// Receives latencies observed on the request path. Must be cheap and never block for long.
pub trait LatencySink: Send + Sync {
    /// One latency observed (for an outbound request: from sending it to its response head).
    fn record(&self, latency: Duration);
}

impl GuestModule {
    pub(crate) fn new(
        id: &str,
        prepared: Arc<Prepared>,
        limits: GuestLimits,
        settings: GuestSettings,
        controls: ModuleControls,
        node: Shared,
    ) -> GuestModule {
        let id: Arc<str> = Arc::from(id);
        // Module variables are served through `wasi:config/store` too; an explicit `config`
        // entry of the same name wins.
        let config_map: Arc<BTreeMap<String, String>> = Arc::new(
            settings
                .app
                .variables
                .clone()
                .into_iter()
                .chain(settings.config)
                .collect(),
        );
        let outbound = OutboundClient::new(id.clone(), Arc::new(settings.outbound), node.outbound);
        let pending = prepared.pending.clone();
        let module = GuestModule {
            inner: Arc::new(Inner {
                id,
                code: ArcSwap::new(prepared),
                limits,
                env: settings.env.into_iter().collect(),
                files: settings.files,
                config: Arc::new(
                    config_map
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                config_map,
                app: settings.app,
                outbound,
                stats: controls.stats.clone(),
                controls,
                ready: std::sync::Mutex::new(Vec::new()),
                ready_slots: node.ready_slots,
                open: std::sync::Mutex::new(None),
            }),
        };
        if let Some(pending) = pending
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Holds the module weakly: an unloaded module is not kept alive for its tier-up.
            let module = Arc::downgrade(&module.inner);
            runtime.spawn(async move {
                let Some(optimized) = pending.optimized().await else {
                    return;
                };
                if let Some(inner) = module.upgrade() {
                    GuestModule { inner }.swap_code(optimized).await;
                }
            });
        }
        module
    }

    /// Moves the module to `code` (its optimized code): new invocations use it at once,
    /// those in flight finish on theirs; ready instances are rebuilt on it, each old one
    /// dropped only once its replacement is ready (or to free a slot for it).
    async fn swap_code(&self, code: Arc<Prepared>) {
        let warm = self.ready_count();
        self.inner.code.store(code.clone());
        tracing::info!(
            module = %self.id(),
            tier = %code.tier.state,
            to_optimized_ms = code.tier.to_optimized_ms.unwrap_or(0.0) as u64,
            "switched to optimized code"
        );
        if warm > 0
            && let Err(e) = self.prewarm(warm).await
        {
            tracing::warn!(module = %self.id(), error = %e, "rebuilding ready instances on the optimized code failed");
        }
        self.drop_stale_ready();
    }

    /// Which tier the module runs now, and how long its load took to reach each tier.
    pub fn tier(&self) -> TierStatus {
        self.inner.code.load().tier.clone()
    }

    /// The code new invocations use.
    fn code(&self) -> Arc<Prepared> {
        self.inner.code.load_full()
    }

    fn drop_stale_ready(&self) {
        let current = self.code();
        self.inner
            .ready
            .lock()
            .expect("ready lock")
            .retain(|instance| Arc::ptr_eq(&instance.code, &current));
    }

    /// The module's id (also the guest's `argv[0]` and the `x-spark-probe` header of probes).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The component it runs (new invocations' code: baseline or optimized).
    pub fn prepared(&self) -> Arc<Prepared> {
        self.code()
    }

    /// The limits every invocation runs under.
    pub fn limits(&self) -> &GuestLimits {
        &self.inner.limits
    }

    /// The module's counters (the same as [`ModuleControls::stats`]).
    pub fn stats(&self) -> &Arc<ModuleStats> {
        &self.inner.stats
    }

    /// Serves one HTTP request with a fresh instance. `hold` (the caller's admission slots
    /// and node capacity, see [`Claims`]) is kept exactly as long as the guest works for the
    /// request: it is dropped when the guest ends, however it ends. Dropping the returned future before the response, or the response body before
    /// its end, cancels the guest.
    pub async fn handle<B>(
        &self,
        request: http::Request<B>,
        hold: impl Claims,
    ) -> Result<http::Response<ResponseBody>, InvokeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut request = request;
        let tracer = request.extensions_mut().remove::<TraceOutbound>();
        let code = self.code();
        if let Entry::HttpP3(_) = code.entry {
            return self.handle_p3(code, request, tracer, hold).await;
        }
        let pre = match &code.entry {
            Entry::Http(pre) => pre.clone(),
            Entry::HttpP3(_) | Entry::Command(_) => {
                return Err(InvokeError::BadRequest(format!(
                    "module '{}' is not an HTTP component",
                    self.id()
                )));
            }
        };
        let (mut store, budget, ready) = match self.take_ready() {
            Some(mut instance) => {
                // Its clocks start now: the wall-clock budget, and the epoch deadline (which
                // passed long ago while it waited, and would make the guest yield at once).
                instance.budget.restart();
                instance.store.set_epoch_deadline(1);
                let proxy = match instance.proxy {
                    ReadyProxy::P2(proxy) => Some(proxy),
                    ReadyProxy::P3(_) => None,
                };
                (instance.store, instance.budget, proxy)
            }
            None => {
                let budget = self.budget(&code);
                (self.new_store(&code, budget.clone()), budget, None)
            }
        };
        let ready_instance = ready.is_some();
        store.data_mut().hooks.tracer = tracer;
        let (sender, receiver) = oneshot::channel();
        let http = &mut store.data_mut().http();
        let request = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| InvokeError::BadRequest(format!("{e:#}")))?;
        let out = http
            .new_response_outparam(sender)
            .map_err(|e| InvokeError::BadRequest(format!("{e:#}")))?;
        let stats = self.inner.stats.clone();
        let run = async move {
            let proxy = match ready {
                Some(proxy) => proxy,
                None => instantiate(&pre, &mut store, &stats).await?,
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await
                .map_err(|e| classify(e, &store))
        };
        let task = GuestTask::new(
            self.spawn_for(Start::Invocation, self.supervise(run, budget.clone(), hold)),
        );
        match receiver.await {
            Ok(Ok(response)) => {
                let info = InvocationInfo {
                    instantiate: budget.instantiate_time(),
                    ready_instance,
                };
                let cpu = InvocationCpu(CpuOf::Instance(budget));
                self.accept_response(response, info, cpu, Owner::Task(task))
            }
            Ok(Err(code)) => Err(InvokeError::GuestError(format!("{code:?}"))),
            Err(_) => Err(match task.join().await {
                Err(e) => e,
                Ok(()) => InvokeError::NoResponse,
            }),
        }
    }

    fn accept_response(
        &self,
        response: http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
        info: InvocationInfo,
        cpu: InvocationCpu,
        owner: Owner,
    ) -> Result<http::Response<ResponseBody>, InvokeError> {
        let limit = self.inner.limits.response_body;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            if let Owner::Request(mut live) = owner {
                live.finish(Err(InvokeError::BodyTooLarge(limit)));
            }
            return Err(InvokeError::BodyTooLarge(limit));
        }
        let stats = self.inner.stats.clone();
        let mut response = response.map(|body| ResponseBody::new(body, limit, stats, owner));
        response.extensions_mut().insert(info);
        response.extensions_mut().insert(cpu);
        Ok(response)
    }

    /// Runs the module as a job: `wasi:cli/run` for commands, `GET /` for HTTP components.
    pub async fn run_job(&self) -> Result<JobReport, InvokeError> {
        let started = Instant::now();
        let code = self.code();
        let budget = self.budget(&code);
        let outcome = match &code.entry {
            Entry::Command(pre) => {
                let pre = pre.clone();
                let mut store = self.new_store(&code, budget.clone());
                let stats = self.inner.stats.clone();
                let run = async move {
                    let t0 = Instant::now();
                    let command = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(|e| classify(e, &store))?;
                    stats.instantiated(t0.elapsed());
                    match command.wasi_cli_run().call_run(&mut store).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(())) => Err(InvokeError::JobFailed),
                        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                            Some(exit) if exit.0 == 0 => Ok(()),
                            Some(_) => Err(InvokeError::JobFailed),
                            None => Err(classify(e, &store)),
                        },
                    }
                };
                GuestTask::new(
                    self.spawn_for(Start::Invocation, self.supervise(run, budget.clone(), ())),
                )
                .join()
                .await
            }
            Entry::Http(_) | Entry::HttpP3(_) => self.run_http_job().await,
        };
        outcome.map(|()| JobReport {
            took: started.elapsed(),
            cpu: budget.cpu_used(),
        })
    }

    async fn run_http_job(&self) -> Result<(), InvokeError> {
        let status = self.probe("/").await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(InvokeError::JobFailed)
        }
    }

    /// Sends `GET path` (with an `x-spark-probe` header), reads the whole body and returns the
    /// status: health checks and HTTP jobs.
    pub async fn probe(&self, path: &str) -> Result<u16, InvokeError> {
        use http_body_util::BodyExt;
        let request = http::Request::get(format!("http://localhost{path}"))
            .header(http::header::HOST, "localhost")
            .header("x-spark-probe", self.id())
            .body(
                http_body_util::Empty::<Bytes>::new()
                    .map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
            )
            .map_err(|e| InvokeError::BadRequest(e.to_string()))?;
        let response = self.handle(request, ()).await?;
        let status = response.status().as_u16();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| InvokeError::Trap(e.to_string()))?;
        Ok(status)
    }

    /// A new invocation's budget: per request; for WASI 0.3 code, an instance's that
    /// requests share.
    fn budget(&self, code: &Prepared) -> Arc<Budget> {
        let limits = &self.inner.limits;
        let pacer = self.inner.controls.pacer.clone();
        Arc::new(match code.entry {
            Entry::HttpP3(_) => {
                Budget::shared(limits.timeout, limits.cpu_time, limits.host_memory, pacer)
            }
            _ => Budget::new(limits.timeout, limits.cpu_time, limits.host_memory, pacer),
        })
    }

    /// Runs a guest task started for `start` on the module's executor, or on the idle-class
    /// one while critical work is live (`crate::critical_first`).
    pub(crate) fn spawn_for<F>(&self, start: Start, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let controls = &self.inner.controls;
        let usual = controls.executor.as_ref();
        critical_first::spawn(
            controls.critical_first.as_ref(),
            usual,
            start,
            &self.inner.stats,
            task,
        )
    }

    /// Wraps a guest run with CPU metering, the wall-clock deadline and outcome accounting.
    /// `hold` (admission slots) outlives the in-flight count however the run ends, aborted
    /// included: locals drop in reverse order, so the guest's store and then its in-flight
    /// count are gone before the next request can take the slot.
    fn supervise(
        &self,
        run: impl Future<Output = Result<(), InvokeError>> + Send + 'static,
        budget: Arc<Budget>,
        hold: impl Send + 'static,
    ) -> impl Future<Output = Result<(), InvokeError>> + Send + 'static {
        let stats = self.inner.stats.clone();
        let module = self.inner.id.clone();
        async move {
            let _hold = hold;
            let in_flight = stats.started();
            let deadline = tokio::time::Instant::from_std(budget.deadline());
            let metered = Metered::new(run, budget.clone(), stats.clone());
            let outcome = match tokio::time::timeout_at(deadline, metered).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    budget.record(InvokeError::Timeout(budget.timeout));
                    Err(budget
                        .verdict()
                        .unwrap_or(InvokeError::Timeout(budget.timeout)))
                }
            };
            if let Err(e) = &outcome {
                tracing::warn!(%module, kind = e.kind(), error = %e, "invocation failed");
            }
            in_flight.finish(outcome.as_ref().map(|_| ()));
            outcome
        }
    }

    /// A store in the engine of `code` (baseline and optimized code have different engines).
    /// For WASI 0.3 code, the per-invocation limits on handles and outbound requests are the
    /// instance's, times the requests it may serve at once; its log, times the requests it
    /// may serve over its life.
    fn new_store(&self, code: &Prepared, budget: Arc<Budget>) -> Store<Host> {
        let inner = &self.inner;
        let (requests, life) = match code.entry {
            Entry::HttpP3(_) => (
                u64::from(inner.limits.max_concurrent_per_instance.max(1)),
                u64::from(inner.limits.max_requests_per_instance.max(1)),
            ),
            _ => (1, 1),
        };
        let log = LogBudget::new(inner.limits.log.saturating_mul(requests.max(life)));
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&inner.env)
            .arg(&*inner.id)
            .stdout(GuestLog::new(inner.id.clone(), Stream::Stdout, log.clone()))
            .stderr(GuestLog::new(inner.id.clone(), Stream::Stderr, log));
        for (host, guest) in &inner.files {
            // Checked when the manifest was loaded; a directory removed since is left out
            // (the guest finds no such path) rather than failing every request.
            if let Err(error) = wasi.preopened_dir(host, guest, FsPerms::ReadOnly) {
                tracing::warn!(module = %inner.id, dir = %host.display(), error = %error, "cannot mount a files directory");
            }
        }
        let wasi = wasi.build();
        let mut table = ResourceTable::new();
        table.set_max_capacity((u64::from(inner.limits.resources) * requests) as usize);
        let host = Host {
            wasi,
            http: WasiHttpCtx::new(),
            table,
            hooks: OutboundHooks {
                client: inner.outbound.clone(),
                stats: inner.stats.clone(),
                module: inner.id.clone(),
                pacing: inner.controls.outbound.clone(),
                latency: inner.controls.outbound_latency.clone(),
                in_flight: InFlight::new(
                    u32::try_from(u64::from(inner.limits.outbound_requests) * requests)
                        .unwrap_or(u32::MAX),
                ),
                tracer: None,
            },
            config: inner.config.clone(),
            memory: MemoryLimiter::new(inner.limits.memory),
            budget,
            ticks_since_yield: 0,
            spin: crate::spin::SpinState {
                app: inner.app.clone(),
                config: inner.config_map.clone(),
                open_stores: 0,
            },
            nn: match &inner.controls.nn {
                Some(service) => service.invocation(&inner.id, inner.limits.nn),
                None => spark_nn::NnInvocation::disabled(),
            },
        };
        let mut store = Store::new(&code.engine, host);
        store.limiter(|host| &mut host.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let host = ctx.data_mut();
            let budget = &host.budget;
            if let Some(breach) = budget.check() {
                return Err(wasmtime::Error::msg(breach.to_string()));
            }
            if let Some(wait) = budget
                .pacer
                .as_ref()
                .and_then(|p| p.on_tick(&host.hooks.stats))
            {
                host.ticks_since_yield = 0;
                return Ok(UpdateDeadline::YieldCustom(1, wait));
            }
            host.ticks_since_yield += 1;
            if host.ticks_since_yield < YIELD_EVERY_TICKS {
                return Ok(UpdateDeadline::Continue(1));
            }
            host.ticks_since_yield = 0;
            // Tokio's `yield_now` re-queues the guest only after the runtime has polled its
            // timers and I/O; Wasmtime's plain `Yield` would let a spinning guest keep its
            // worker for dozens of ticks before a timer or socket gets a look in.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }
}

/// An instance created ahead of its request.
struct ReadyInstance {
    store: Store<Host>,
    proxy: ReadyProxy,
    budget: Arc<Budget>,
    /// The code it was made from (its store belongs to that code's engine).
    code: Arc<Prepared>,
    /// Released when the instance is taken by a request or dropped.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// A ready instance's exports: a WASI 0.2 or 0.3 HTTP handler.
enum ReadyProxy {
    P2(Proxy),
    P3(Service),
}

/// Waits until the budget's deadline has passed (it moves later as requests join a shared
/// instance).
async fn deadline_passes(budget: &Budget) {
    loop {
        tokio::time::sleep_until(tokio::time::Instant::from_std(budget.deadline())).await;
        if Instant::now() >= budget.deadline() {
            return;
        }
    }
}

/// Instantiates a proxy in `store`, recording the time and the instance's memory.
async fn instantiate(
    pre: &ProxyPre<Host>,
    store: &mut Store<Host>,
    stats: &ModuleStats,
) -> Result<Proxy, InvokeError> {
    let started = Instant::now();
    let proxy = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| classify(e, store))?;
    record_instantiation(store, stats, started);
    Ok(proxy)
}

/// Records an instantiation begun at `started` (WASI 0.2 or 0.3): its time in the module's
/// stats and the invocation's budget, and the instance's memory.
fn record_instantiation(store: &Store<Host>, stats: &ModuleStats, started: Instant) {
    stats.instantiated(started.elapsed());
    stats.set_instance_bytes(store.data().memory.in_use() as u64);
    store.data().budget.instantiated(started.elapsed());
}

/// Turns a Wasmtime error into the reason the invocation failed.
pub(crate) fn classify(error: wasmtime::Error, store: &Store<Host>) -> InvokeError {
    let host = store.data();
    if let Some(verdict) = host.budget.verdict() {
        return verdict;
    }
    if host.memory.exceeded {
        return InvokeError::MemoryLimit {
            limit: host.memory.limit() as u64,
        };
    }
    if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::StackOverflow) {
        return InvokeError::StackOverflow;
    }
    let table_full = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    });
    if table_full {
        return InvokeError::ResourceLimit(format!(
            "more than {} handles at once",
            host.table.max_capacity()
        ));
    }
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return InvokeError::Capacity(format!("{error:#}"));
    }
    InvokeError::Trap(format!("{error:#}"))
}
