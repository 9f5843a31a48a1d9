//! Metrics read at scrape time: the runtime's per-module atomics, the orchestrator's live
//! controls, and its view of the node (telemetry, modes, own cost).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use spark_runtime::StatsSnapshot;

use super::ModuleLabel;
use crate::control::ControlView;
use crate::serve::snapshot::{ModuleSlot, SharedSnapshot, Snapshot};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    module: String,
    priority: String,
    world: String,
    digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    module: String,
    /// `baseline`, `optimized` or `cranelift-only`.
    tier: String,
    /// Why a module is Cranelift-only; empty otherwise.
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReleaseLabel {
    release: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabels {
    module: String,
    release: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: String,
}

pub(super) struct NodeCollector {
    pub(super) snapshot: SharedSnapshot,
    pub(super) control: Option<Arc<ControlView>>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCollector")
    }
}

type Counted = (&'static str, &'static str, fn(&StatsSnapshot) -> f64);
type Gauged = (&'static str, &'static str, fn(&ModuleSlot) -> f64);

const COUNTERS: &[Counted] = &[
    (
        "guest_cpu_seconds",
        "Guest CPU time measured around guest execution",
        |s| s.cpu_nanos as f64 / 1e9,
    ),
    ("instantiations", "Instances created", |s| {
        s.instantiations as f64
    }),
    (
        "guest_traps",
        "Invocations that trapped or returned no response",
        |s| s.traps as f64,
    ),
    (
        "guest_timeouts",
        "Invocations stopped at their wall-clock limit",
        |s| s.timeouts as f64,
    ),
    (
        "guest_cpu_limit_exceeded",
        "Invocations stopped at their CPU-time limit",
        |s| s.cpu_limits as f64,
    ),
    (
        "guest_memory_limit_exceeded",
        "Invocations stopped at their memory limit",
        |s| s.memory_limits as f64,
    ),
    (
        "guest_stack_overflows",
        "Invocations that overflowed the Wasm stack",
        |s| s.stack_overflows as f64,
    ),
    (
        "guest_response_body_limit_exceeded",
        "Responses aborted at the body size limit",
        |s| s.body_limits as f64,
    ),
    (
        "guest_host_memory_limit_exceeded",
        "Invocations stopped at their host memory limit (limits.host_memory)",
        |s| s.host_memory_limits as f64,
    ),
    (
        "guest_resource_limit_exceeded",
        "Invocations stopped at their limit on resource handles (limits.resources)",
        |s| s.resource_limits as f64,
    ),
    (
        "guest_cancelled",
        "Invocations cancelled because their client went away",
        |s| s.cancelled as f64,
    ),
    (
        "guest_shared_requests",
        "Requests a WASI 0.3 instance took while it served others (limits.max_concurrent_per_instance)",
        |s| s.shared_requests as f64,
    ),
    (
        "guests_yielded",
        "Guests started on idle-class threads because critical work was live (orchestrator.critical_first)",
        |s| s.yielded as f64,
    ),
    (
        "outbound_requests",
        "Outbound HTTP requests attempted by guests",
        |s| s.outbound_requests as f64,
    ),
    (
        "outbound_denied",
        "Outbound HTTP requests refused by the allow list",
        |s| s.outbound_denied as f64,
    ),
];

const GAUGES: &[Gauged] = &[
    ("module_in_flight", "Invocations running now", |slot| {
        f64::from(slot.admission.running())
    }),
    (
        "module_queued",
        "Requests waiting for admission now",
        |slot| f64::from(slot.admission.queued()),
    ),
    (
        "module_concurrency_limit",
        "Concurrency cap in force (the plan's, or the manifest's)",
        |slot| f64::from(slot.admission.concurrency()),
    ),
    (
        "module_cpu_share",
        "CPU share of the node the module may use (1 = uncapped)",
        |slot| slot.controls.pacer.share().unwrap_or(1.0),
    ),
    (
        "module_job_pacing",
        "Multiplier on a job's period (1 = as configured)",
        |slot| slot.controls.job_pacing(),
    ),
    (
        "module_loaded_bytes",
        "Memory of the module's code while it is loaded, as the predictor counts it (0: only its compiled artifact, on disk)",
        |slot| match slot.residency.is_loaded() {
            true => slot.info().code_bytes as f64,
            false => 0.0,
        },
    ),
    (
        "module_shared_instances",
        "WASI 0.3 instances serving requests now (each up to limits.max_concurrent_per_instance at once)",
        |slot| slot.stats.snapshot().shared_instances as f64,
    ),
];

const MODULE_COUNTERS: &[Gauged] = &[
    (
        "module_throttled_seconds",
        "Time the module's guests were made to wait for their CPU share",
        |slot| slot.controls.pacer.waited().as_secs_f64(),
    ),
    (
        "module_rejected",
        "Requests refused by the module's admission control",
        |slot| slot.admission.rejected() as f64,
    ),
];

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot.load();
        encode_runtime(&mut encoder, &snapshot)?;
        encode_controls(&mut encoder, &snapshot)?;
        encode_info(&mut encoder, &snapshot)?;
        encode_tiers(&mut encoder, &snapshot)?;
        if let Some(control) = &self.control {
            encode_orchestrator(&mut encoder, control)?;
        }
        Ok(())
    }
}

fn label(slot: &ModuleSlot) -> ModuleLabel {
    ModuleLabel {
        module: slot.id().to_owned(),
    }
}

fn encode_runtime(
    encoder: &mut DescriptorEncoder,
    snapshot: &Snapshot,
) -> Result<(), std::fmt::Error> {
    let rows: Vec<(ModuleLabel, StatsSnapshot)> = snapshot
        .modules
        .iter()
        .map(|slot| (label(slot), slot.stats.snapshot()))
        .collect();
    for (name, help, read) in COUNTERS {
        let mut family =
            encoder.encode_descriptor(name, help, None, ConstCounter::new(0.0).metric_type())?;
        for (label, stats) in &rows {
            ConstCounter::new(read(stats)).encode(family.encode_family(label)?)?;
        }
    }
    Ok(())
}

fn encode_controls(
    encoder: &mut DescriptorEncoder,
    snapshot: &Snapshot,
) -> Result<(), std::fmt::Error> {
    for (name, help, read) in GAUGES {
        let mut family =
            encoder.encode_descriptor(name, help, None, ConstGauge::new(0.0).metric_type())?;
        for slot in &snapshot.modules {
            ConstGauge::new(read(slot)).encode(family.encode_family(&label(slot))?)?;
        }
    }
    for (name, help, read) in MODULE_COUNTERS {
        let mut family =
            encoder.encode_descriptor(name, help, None, ConstCounter::new(0.0).metric_type())?;
        for slot in &snapshot.modules {
            ConstCounter::new(read(slot)).encode(family.encode_family(&label(slot))?)?;
        }
    }
    Ok(())
}

/// Each module's tier (one series at 1, labelled with the tier and, for Cranelift-only
/// modules, the reason) and the times its load took to reach baseline and optimized code.
fn encode_tiers(
    encoder: &mut DescriptorEncoder,
    snapshot: &Snapshot,
) -> Result<(), std::fmt::Error> {
    let tiers: Vec<(&ModuleSlot, spark_runtime::TierStatus)> = snapshot
        .modules
        .iter()
        .map(|slot| (&**slot, slot.tier()))
        .collect();
    let mut family = encoder.encode_descriptor(
        "module_tier",
        "The code a module runs: baseline (Winch), optimized or cranelift-only (with the reason)",
        None,
        ConstGauge::new(0i64).metric_type(),
    )?;
    for (slot, tier) in &tiers {
        let labels = TierLabels {
            module: slot.id().to_owned(),
            tier: tier.state.name().to_owned(),
            reason: match &tier.state {
                spark_runtime::TierState::CraneliftOnly(reason) => reason.clone(),
                _ => String::new(),
            },
        };
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
    }
    type Time = fn(&spark_runtime::TierStatus) -> Option<f64>;
    let times: [(&str, &str, Time); 2] = [
        (
            "module_time_to_baseline_seconds",
            "From the start of the module's load to baseline code serving",
            |t| t.to_baseline_ms,
        ),
        (
            "module_time_to_optimized_seconds",
            "From the start of the module's load to optimized code",
            |t| t.to_optimized_ms,
        ),
    ];
    for (name, help, read) in times {
        let mut family =
            encoder.encode_descriptor(name, help, None, ConstGauge::new(0.0).metric_type())?;
        for (slot, tier) in &tiers {
            if let Some(ms) = read(tier) {
                ConstGauge::new(ms / 1e3).encode(family.encode_family(&label(slot))?)?;
            }
        }
    }
    if let Some(slot) = snapshot.modules.first() {
        let optimizer = slot.residency.runtime().optimizer_status();
        let gauges = [
            (
                "optimizer_postponed",
                "1 while the orchestrator postpones background optimization (surge, memory pressure, power save)",
                i64::from(optimizer.postponed.is_some()),
            ),
            (
                "optimizer_queued",
                "Background optimizations (Cranelift compiles) waiting to start",
                optimizer.queued as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(family)?;
        }
    }
    Ok(())
}

fn encode_info(
    encoder: &mut DescriptorEncoder,
    snapshot: &Snapshot,
) -> Result<(), std::fmt::Error> {
    let mut info = encoder.encode_descriptor(
        "module_info",
        "Modules installed on this node",
        None,
        ConstGauge::new(0i64).metric_type(),
    )?;
    for slot in &snapshot.modules {
        let labels = InfoLabels {
            module: slot.id().to_owned(),
            priority: slot.spec.priority.as_str().to_owned(),
            world: slot.info().world.to_owned(),
            digest: slot.info().digest,
        };
        ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
    }
    if let Some(release) = &snapshot.release {
        let mut current = encoder.encode_descriptor(
            "release_info",
            "The release this node serves (its stable release during a rollout)",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        let labels = ReleaseLabel {
            release: release.clone(),
        };
        ConstGauge::new(1i64).encode(current.encode_family(&labels)?)?;
    }
    let mut shares = encoder.encode_descriptor(
        "canary_share_percent",
        "Percent of a module's requests its canary takes during a rollout",
        None,
        ConstGauge::new(0.0).metric_type(),
    )?;
    for (module, canary) in &snapshot.canaries {
        let labels = CanaryLabels {
            module: module.clone(),
            release: canary.slot.release.clone(),
        };
        ConstGauge::new(canary.share).encode(shares.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_orchestrator(
    encoder: &mut DescriptorEncoder,
    control: &ControlView,
) -> Result<(), std::fmt::Error> {
    let (cpu, ticks) = control.cost();
    let counter = ConstCounter::new(0.0).metric_type();
    ConstCounter::new(cpu.as_secs_f64()).encode(encoder.encode_descriptor(
        "orchestrator_cpu_seconds",
        "CPU time the control loop used",
        None,
        counter,
    )?)?;
    ConstCounter::new(ticks as f64).encode(encoder.encode_descriptor(
        "orchestrator_ticks",
        "Control loop ticks",
        None,
        counter,
    )?)?;
    let view = control.state();
    let modes = view.plan.modes;
    let mut family = encoder.encode_descriptor(
        "orchestrator_mode",
        "Node-wide modes (1 = active)",
        None,
        ConstGauge::new(0i64).metric_type(),
    )?;
    for (mode, on) in [
        ("surge", modes.surge),
        ("memory_pressure", modes.memory_pressure),
        ("power_save", modes.power_save),
        ("uplink_slow", modes.uplink_slow),
    ] {
        ConstGauge::new(i64::from(on))
            .encode(family.encode_family(&ModeLabel { mode: mode.into() })?)?;
    }
    let Some(signals) = view.signals else {
        return Ok(());
    };
    let gauge = ConstGauge::new(0.0).metric_type();
    let readings = [
        ("node_cpus", "CPUs the node may use", Some(signals.cpus)),
        (
            "node_cpu_utilisation",
            "Busy fraction of the node's CPUs",
            signals.cpu_utilisation,
        ),
        (
            "node_memory_pressure",
            "Memory pressure, 0 to 1",
            signals.memory_pressure,
        ),
        (
            "node_uplink_latency_seconds",
            "Worst recent upstream round trip",
            signals.uplink_latency_ms.map(|ms| ms / 1e3),
        ),
        (
            "node_battery_percent",
            "Battery charge (absent on mains)",
            match signals.power {
                spark_orchestrator::policy::PowerSignal::Battery { percent, .. } => Some(percent),
                spark_orchestrator::policy::PowerSignal::Mains => None,
            },
        ),
    ];
    for (name, help, value) in readings {
        if let Some(value) = value {
            ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, gauge)?)?;
        }
    }
    Ok(())
}
