//! The node's self-description served at `/v1/status` and printed by `spark status`.
//! Plain serde types, so the CLI reads exactly what the node writes.

use serde::{Deserialize, Serialize};
use spark_manifest::Trigger;
use spark_orchestrator::policy::{DecisionText, Modes, NodeSignals};
use spark_orchestrator::probes::Telemetry;
use spark_runtime::{Allocation, StatsSnapshot};

use crate::control::ControlView;
use crate::control::warmth::{ModuleWarmth, WarmthState};
use crate::serve::residency::ColdStarts;
use crate::serve::snapshot::{ModuleSlot, Snapshot};

/// What `/v1/status` answers: the node, its modules and its controllers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Spark version of the node (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Address the public listener is bound to.
    pub listen: String,
    /// Address the admin listener is bound to.
    pub admin: String,
    /// `pooling` or `on-demand (reason)`.
    pub allocation: String,
    /// Tiered compilation: `on (baseline engine: pooling)`, or `off (reason)`.
    #[serde(default)]
    pub tiering: String,
    /// The background optimizer: postponed (and why) by the orchestrator, compiles queued.
    #[serde(default)]
    pub optimizer: Option<spark_runtime::OptimizerStatus>,
    /// The stable release being served.
    pub release: Option<String>,
    /// The stable release's modules (canaries are in `canaries`).
    pub modules: Vec<ModuleStatus>,
    /// New versions taking part of their module's traffic during a rollout.
    pub canaries: Vec<CanaryStatus>,
    /// `None` when the orchestrator is off.
    pub orchestrator: Option<OrchestratorStatus>,
    /// Inference: devices found, backends used and why the others are not, counters.
    /// `None` when the node runs no inference host (no `[nn]`).
    #[serde(default)]
    pub nn: Option<spark_nn::NnStatus>,
    /// Loaded code of non-critical modules, its limit (the predictor's budget less its ready
    /// instances) and the modules evicted to make room for requests' loads.
    #[serde(default)]
    pub loaded_code: crate::serve::loaded::LoadedCodeFigures,
}

/// A canary version during a rollout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CanaryStatus {
    pub module: String,
    pub release: String,
    pub share: f64,
    pub requests: u64,
    pub errors: u64,
}

pub(crate) fn canaries(snapshot: &Snapshot) -> Vec<CanaryStatus> {
    let mut list: Vec<CanaryStatus> = snapshot
        .canaries
        .iter()
        .map(|(module, canary)| {
            let outcomes = canary.slot.outcomes.snapshot();
            CanaryStatus {
                module: module.clone(),
                release: canary.slot.release.clone(),
                share: canary.share,
                requests: outcomes.requests,
                errors: outcomes.errors,
            }
        })
        .collect();
    list.sort_by(|a, b| a.module.cmp(&b.module));
    list
}

/// What the orchestrator sees and has decided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrchestratorStatus {
    /// The node-wide modes in force.
    pub modes: Modes,
    /// What the last tick made of the probes; `None` before the first tick.
    pub signals: Option<NodeSignals>,
    /// The last telemetry sample; `None` before the first tick.
    pub telemetry: Option<Telemetry>,
    /// Most recent last, as text (the typed decisions rendered).
    pub decisions: Vec<DecisionText>,
    /// CPU time the control loop itself has used, in seconds.
    pub cpu_seconds: f64,
    /// Control-loop ticks so far.
    pub ticks: u64,
}

/// A module's requests since the node started, across every release that served it: unlike
/// the per-version `stats`, they survive a release switch and include requests turned away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Requests that ended, with any status (a client that left counts as 499).
    pub requests: u64,
    /// Of those, answered with a 5xx status (refusals included).
    pub errors: u64,
    /// Of the errors, turned away before reaching the guest (queue full, no capacity).
    pub refused: u64,
}

/// One module version being served, with its live counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleStatus {
    /// The module id.
    pub id: String,
    /// Requests since the node started, across releases (what `/metrics` counts).
    #[serde(default)]
    pub requests: RequestCounts,
    /// The release this version belongs to.
    pub release: String,
    /// Priority class: `critical`, `normal` or `background`.
    pub priority: String,
    /// CPU weight within the priority class.
    pub weight: u32,
    /// Routes (`/a/...`) or the schedule (`every 30s`).
    pub trigger: String,
    /// `wasi:http/proxy` (WASI 0.2), `wasi:http/service` (WASI 0.3) or `wasi:cli/command`.
    pub world: String,
    /// SHA-256 of the component, lowercase hex.
    pub digest: String,
    /// The component as the manifest names it: a path or `sha256:<hex>`.
    pub component: String,
    /// Where the native code came from: `Compiled`, `AotCache` or `Shared`.
    pub code_source: String,
    /// Time to get the native code and link it, in ms.
    pub load_ms: f64,
    /// The code it runs now (`baseline`, `optimized`, `cranelift-only` with the reason) and
    /// the times its load took to reach baseline and optimized code.
    #[serde(default)]
    pub tier: Option<spark_runtime::TierStatus>,
    /// Its loaded artifact image (native code, metadata, data images) while loaded.
    pub code_bytes: u64,
    /// The module's limits; `concurrency` is the cap in force now.
    pub limits: LimitsStatus,
    /// Invocations running now.
    pub running: u32,
    /// Requests waiting for a slot now.
    pub queued: u32,
    /// Requests refused since the module was loaded (queue full or queue timeout).
    pub rejected: u64,
    /// Runtime counters of its invocations.
    pub stats: StatsSnapshot,
    /// What the orchestrator has set for it.
    pub controls: ControlStatus,
    /// Loaded or not, instances ready, and what the predictor expects.
    pub warmth: Option<ModuleWarmth>,
    /// Code loads and unloads so far, and the time loads took.
    pub cold_starts: ColdStarts,
    /// The key-value stores it may open, with how full each is.
    #[serde(default)]
    pub key_value: Vec<KeyValueStatus>,
}

/// One key-value store of a module: its size and limits. Never its data, nor variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyValueStatus {
    /// The label the module opens it by.
    pub label: String,
    /// `<application>/<label>`: every version of the module shares it.
    pub scope: String,
    /// Keys held.
    pub keys: u64,
    /// Bytes of keys and values held.
    pub bytes: u64,
    /// Most keys.
    pub max_keys: u64,
    /// Most bytes.
    pub max_bytes: u64,
    /// Largest value.
    pub max_value_size: u64,
    /// Declared fleet-wide (`fleet = true`): how its replication goes on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetKvStatus>,
}

/// Replication of the fleet-wide key-value stores on a node (its counters cover all of them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetKvStatus {
    /// The node runs with `--fleet`, so the store replicates (else it is node-local).
    pub replicated: bool,
    /// Local writes not published because the queue was full, so far.
    pub dropped: u64,
    /// Other nodes' writes not applied here because they were over this node's limits.
    pub refused: u64,
}

/// A module's live controls (what the orchestrator has set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlStatus {
    /// Fraction of the node's CPU; `None`: uncapped.
    pub cpu_share: Option<f64>,
    pub concurrency: u32,
    pub queue: u32,
    pub throttled_ms: u64,
    pub job_pacing: f64,
    pub outbound_gap_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitsStatus {
    pub memory_bytes: u64,
    pub concurrency: u32,
    pub queue: u32,
    pub timeout_ms: u64,
    pub cpu_time_ms: u64,
    pub response_body_bytes: u64,
    /// Requests one WASI 0.3 instance serves at once (1 for other components).
    #[serde(default = "one")]
    pub max_concurrent_per_instance: u32,
}

fn one() -> u32 {
    1
}

/// `on (baseline engine: <allocation>)` or `off (<reason>)`.
pub(crate) fn tiering_label(runtime: &spark_runtime::Runtime) -> String {
    match runtime.baseline() {
        Ok(allocation) => format!("on (baseline engine: {})", allocation_label(allocation)),
        Err(reason) => format!("off ({reason})"),
    }
}

pub(crate) fn allocation_label(allocation: &Allocation) -> String {
    match allocation {
        Allocation::Pooling => "pooling".into(),
        Allocation::OnDemand { reason } => format!("on-demand ({reason})"),
    }
}

pub(crate) fn modules(snapshot: &Snapshot, warmth: &WarmthState) -> Vec<ModuleStatus> {
    snapshot
        .modules
        .iter()
        .map(|slot| module(slot, warmth.modules.get(slot.id()).cloned()))
        .collect()
}

fn module(slot: &ModuleSlot, warmth: Option<ModuleWarmth>) -> ModuleStatus {
    let spec = &slot.spec;
    let info = slot.info();
    let trigger = match &spec.trigger {
        Trigger::Http { routes } => routes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        Trigger::Schedule { every } => format!("every {}s", every.as_secs()),
    };
    let report = &info.report;
    let key_value = slot
        .residency
        .app()
        .usage()
        .into_iter()
        .map(|(label, binding, usage)| KeyValueStatus {
            label,
            scope: binding.scope,
            keys: usage.keys,
            bytes: usage.bytes,
            max_keys: binding.limits.max_keys,
            max_bytes: binding.limits.max_bytes,
            max_value_size: binding.limits.max_value_size,
            fleet: binding.fleet.as_ref().map(|r| FleetKvStatus {
                replicated: r.enabled(),
                dropped: r.dropped(),
                refused: r.refused(),
            }),
        })
        .collect();
    ModuleStatus {
        key_value,
        id: spec.id.to_string(),
        requests: slot.metrics.counts(),
        release: slot.release.clone(),
        priority: spec.priority.to_string(),
        weight: spec.weight,
        trigger,
        world: info.world.into(),
        digest: info.digest.clone(),
        component: spec.component.to_string(),
        code_source: format!("{:?}", report.source),
        load_ms: (report.code + report.link).as_secs_f64() * 1e3,
        tier: Some(slot.tier()),
        code_bytes: info.code_bytes as u64,
        limits: LimitsStatus {
            memory_bytes: spec.limits.memory,
            concurrency: slot.admission.concurrency(),
            queue: spec.limits.queue,
            timeout_ms: spec.limits.timeout.as_millis() as u64,
            cpu_time_ms: spec.limits.cpu_time.as_millis() as u64,
            response_body_bytes: spec.limits.response_body,
            max_concurrent_per_instance: match info.world {
                "wasi:http/service" => spec.limits.max_concurrent_per_instance,
                _ => 1,
            },
        },
        running: slot.admission.running(),
        queued: slot.admission.queued(),
        rejected: slot.admission.rejected(),
        stats: slot.stats.snapshot(),
        controls: ControlStatus {
            cpu_share: slot.controls.pacer.share(),
            concurrency: slot.admission.concurrency(),
            queue: slot.admission.queue_capacity(),
            throttled_ms: slot.controls.pacer.waited().as_millis() as u64,
            job_pacing: slot.controls.job_pacing(),
            outbound_gap_ms: slot.controls.outbound.gap().as_millis() as u64,
        },
        warmth,
        cold_starts: slot.residency.cold_starts(),
    }
}

pub(crate) fn orchestrator(view: &ControlView, recent: usize) -> OrchestratorStatus {
    let state = view.state();
    let (cpu, ticks) = view.cost();
    let skip = state.decisions.len().saturating_sub(recent);
    OrchestratorStatus {
        modes: state.plan.modes,
        signals: state.signals,
        telemetry: state.telemetry,
        decisions: state
            .decisions
            .iter()
            .skip(skip)
            .map(DecisionText::from)
            .collect(),
        cpu_seconds: cpu.as_secs_f64(),
        ticks,
    }
}
