//! The node's self-description served at `/v1/status` and printed by `spark status`.
//! Plain serde types, so the CLI reads exactly what the node writes.

use serde::{Deserialize, Serialize};
use spark_manifest::Trigger;
use spark_runtime::{Allocation, StatsSnapshot};

use crate::state::{ModuleSlot, Snapshot};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub version: String,
    pub uptime_secs: u64,
    pub listen: String,
    pub admin: String,
    /// `pooling` or `on-demand (reason)`.
    pub allocation: String,
    pub modules: Vec<ModuleStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleStatus {
    pub id: String,
    pub priority: String,
    pub weight: u32,
    /// Routes (`/a/...`) or the schedule (`every 30s`).
    pub trigger: String,
    pub world: String,
    pub digest: String,
    pub component: String,
    pub code_source: String,
    pub load_ms: f64,
    pub limits: LimitsStatus,
    pub running: u32,
    pub queued: u32,
    pub rejected: u64,
    pub stats: StatsSnapshot,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitsStatus {
    pub memory_bytes: u64,
    pub concurrency: u32,
    pub queue: u32,
    pub timeout_ms: u64,
    pub cpu_time_ms: u64,
    pub response_body_bytes: u64,
}

pub(crate) fn allocation_label(allocation: &Allocation) -> String {
    match allocation {
        Allocation::Pooling => "pooling".into(),
        Allocation::OnDemand { reason } => format!("on-demand ({reason})"),
    }
}

pub(crate) fn modules(snapshot: &Snapshot) -> Vec<ModuleStatus> {
    snapshot.modules.iter().map(|slot| module(slot)).collect()
}

fn module(slot: &ModuleSlot) -> ModuleStatus {
    let spec = &slot.spec;
    let prepared = slot.guest.prepared();
    let trigger = match &spec.trigger {
        Trigger::Http { routes } => routes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        Trigger::Schedule { every } => format!("every {}s", every.as_secs()),
    };
    let report = &prepared.report;
    ModuleStatus {
        id: spec.id.to_string(),
        priority: spec.priority.to_string(),
        weight: spec.weight,
        trigger,
        world: prepared.entry.world().into(),
        digest: prepared.digest.clone(),
        component: spec.component.display().to_string(),
        code_source: format!("{:?}", report.source),
        load_ms: (report.code + report.link).as_secs_f64() * 1e3,
        limits: LimitsStatus {
            memory_bytes: spec.limits.memory,
            concurrency: slot.admission.concurrency(),
            queue: spec.limits.queue,
            timeout_ms: spec.limits.timeout.as_millis() as u64,
            cpu_time_ms: spec.limits.cpu_time.as_millis() as u64,
            response_body_bytes: spec.limits.response_body,
        },
        running: slot.admission.running(),
        queued: slot.admission.queued(),
        rejected: slot.admission.rejected(),
        stats: slot.guest.stats().snapshot(),
    }
}
