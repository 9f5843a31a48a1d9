//! The node's inference host: `spark-nn`'s [`NnService`], started from the manifest's `[nn]`
//! table when the node starts (device discovery included), re-discovering devices in the
//! background, and steered by the orchestrator through [`NnControl`].
//!
//! The decision worth knowing: the orchestrator never touches a guest or a graph. The pure
//! policy decides (CPU only in power save; an accelerator with too many inferences in flight
//! marked saturated) and [`NnControl::set`] writes that into the service's
//! [`spark_nn::DevicePolicy`], which the router reads at every `compute`: inference moves to
//! the CPU and back with no restart and no change to the guest.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use spark_manifest::NnSettings;
use spark_nn::{Health, NnConfig, NnService, Preference};
use spark_orchestrator::policy::{InferenceConfig, InferencePlan};
use tokio_util::sync::CancellationToken;

/// Why the inference host did not start.
#[derive(Debug, thiserror::Error)]
pub enum NnStartError {
    #[error(transparent)]
    Service(#[from] spark_nn::NnError),
    /// The blocking start-up task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Starts the inference host for `[nn]` (on a blocking thread: discovery, library loading,
/// model files). `None` when the manifest has no `[nn]` table.
pub(crate) async fn start(
    settings: Option<&NnSettings>,
) -> Result<Option<NnService>, NnStartError> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let config = config(settings);
    let service = tokio::task::spawn_blocking(move || NnService::start(config)).await??;
    tracing::info!(?service, "inference host started");
    Ok(Some(service))
}

/// The `spark-nn` configuration for `[nn]`: the same settings, every host-internal knob at
/// its default.
pub(crate) fn config(s: &NnSettings) -> NnConfig {
    NnConfig::new(s.clone())
}

/// Looks for devices again every `every` until `shutdown` (a device that appeared or went
/// away changes the backends; see [`NnService::refresh_devices`]).
pub(crate) async fn rediscover(service: NnService, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let service = service.clone();
        let _ = tokio::task::spawn_blocking(move || service.refresh_devices()).await;
    }
}

/// The orchestrator's hand on inference: reports the accelerators' load for the policy's
/// signals, and is set to the plan's [`InferencePlan`] at the end of every tick.
pub(crate) struct NnControl {
    service: NnService,
    config: InferenceConfig,
    /// What was last set: only changes touch the service's policy.
    cpu_only: bool,
    saturated: BTreeSet<String>,
}

impl NnControl {
    pub(crate) fn new(service: NnService, settings: &NnSettings) -> NnControl {
        NnControl {
            service,
            config: InferenceConfig {
                cpu_only_on_power_save: settings.power_save_cpu_only,
                saturation: settings.saturation,
            },
            cpu_only: false,
            saturated: BTreeSet::new(),
        }
    }

    /// The policy's settings for inference, from `[nn]`.
    pub(crate) fn config(&self) -> InferenceConfig {
        self.config
    }

    /// Inferences in flight on each accelerator now (a signal for the policy).
    pub(crate) fn in_flight(&self) -> BTreeMap<String, u32> {
        self.service.accelerators_in_flight().into_iter().collect()
    }

    /// Sets the service's device policy to `plan`: CPU only or auto, and each accelerator
    /// saturated or healthy again. The router reads it at every `compute`.
    pub(crate) fn set(&mut self, plan: &InferencePlan) {
        let policy = self.service.policy();
        if plan.cpu_only != self.cpu_only {
            self.cpu_only = plan.cpu_only;
            policy.set_preference(if plan.cpu_only {
                Preference::CpuOnly
            } else {
                Preference::Auto
            });
        }
        for backend in plan.saturated.difference(&self.saturated) {
            policy.set_health(backend, Health::Saturated);
        }
        for backend in self.saturated.difference(&plan.saturated) {
            policy.set_health(backend, Health::Healthy);
        }
        self.saturated.clone_from(&plan.saturated);
    }
}
