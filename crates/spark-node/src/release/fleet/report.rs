//! The heartbeat's content: what the node serves, its rollout, what it rejected, and its load,
//! pressure, battery and per-module health, read from the same live state `spark status` shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use spark_fleet::{ModuleHealth, NodeReport, NodeRollout};
use spark_orchestrator::policy::PowerSignal;

use super::agent::Agent;
use super::reconcile::release_key;
use crate::clock::Clock;
use crate::control::ControlView;
use crate::serve::snapshot::SharedSnapshot;

/// What the heartbeat reads.
pub(crate) struct Reporter {
    pub snapshot: SharedSnapshot,
    pub control: Option<Arc<ControlView>>,
    pub http: String,
    pub admin: String,
    /// Stamps the heartbeat (the node's clock).
    pub clock: Clock,
    /// Where the fleet's nodes are shown (the dashboard's fleet panel).
    pub dashboard: Arc<crate::admin::dashboard::DashboardState>,
}

impl Agent {
    pub(super) async fn report(&self) -> NodeReport {
        let status = self.deployer.rollout_status().await;
        let store = self.deployer.store().clone();
        let ids: Vec<String> = std::iter::once(status.current.clone())
            .chain(status.rollout.as_ref().map(|r| r.to.clone()))
            .collect();
        let keys = tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| {
                    let key = spark_store::ReleaseId::parse(id)
                        .ok()
                        .and_then(|rid| store.release(&rid).ok().flatten())
                        .map(|r| release_key(&r));
                    (id.clone(), key)
                })
                .collect::<BTreeMap<_, _>>()
        })
        .await
        .unwrap_or_default();
        let state = self.state.lock().expect("agent state");
        let mut report = NodeReport {
            node: self.options.node_id.clone(),
            app: self.options.app.clone(),
            labels: self.options.labels.clone(),
            http: self.reporter.http.clone(),
            admin: self.reporter.admin.clone(),
            release_key: keys.get(&status.current).cloned().flatten(),
            release: Some(status.current.clone()),
            rollout: status.rollout.as_ref().map(|r| NodeRollout {
                to: r.to.clone(),
                to_key: keys.get(&r.to).cloned().flatten(),
                shares: r
                    .modules
                    .iter()
                    .map(|(id, m)| (id.clone(), m.share))
                    .collect(),
            }),
            rejected: state.rejected.iter().cloned().collect(),
            generation: state.generation,
            last_error: state.last_error.clone(),
            at_ms: self.reporter.clock.unix_ms(),
            ..NodeReport::default()
        };
        drop(state);
        self.reporter.fill_load(&mut report);
        report
    }
}

impl Reporter {
    /// Load, pressure, battery, modes and per-module health.
    fn fill_load(&self, report: &mut NodeReport) {
        let snapshot = self.snapshot.load();
        for slot in &snapshot.modules {
            let outcomes = slot.outcomes.snapshot();
            let stats = slot.stats.snapshot();
            report.running += stats.in_flight;
            report.requests += outcomes.requests;
            report.modules.push(ModuleHealth {
                id: slot.id().to_owned(),
                release: slot.release.clone(),
                requests: outcomes.requests,
                errors: outcomes.errors,
                running: slot.admission.running(),
                rejected: slot.admission.rejected(),
            });
        }
        let Some(view) = &self.control else {
            return;
        };
        let state = view.state();
        if let Some(signals) = state.signals {
            report.cpu = signals.cpu_utilisation;
            report.memory_pressure = signals.memory_pressure;
            if let PowerSignal::Battery { percent, .. } = signals.power {
                report.battery = Some(percent);
            }
        }
        let modes = state.plan.modes;
        for (on, name) in [
            (modes.surge, "surge"),
            (modes.memory_pressure, "memory-pressure"),
            (modes.power_save, "power-save"),
            (modes.uplink_slow, "uplink-slow"),
        ] {
            if on {
                report.modes.push(name.to_owned());
            }
        }
    }
}
