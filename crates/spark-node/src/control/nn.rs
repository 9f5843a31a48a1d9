//! The node's inference host: `spark-nn`'s [`NnService`], started from the manifest's `[nn]`
//! table when the node starts (device discovery included), re-discovering devices in the
//! background, and steered by the orchestrator through [`NnControl`].
//!
//! The decision worth knowing: the orchestrator never touches a guest or a graph. It changes
//! the service's [`spark_nn::DevicePolicy`] (CPU only in power save; an accelerator with too
//! many inferences in flight marked saturated), which the router reads at every `compute`:
//! inference moves to the CPU and back with no restart and no change to the guest.

use std::collections::BTreeSet;
use std::time::Duration;

use spark_manifest::NnSettings;
use spark_nn::{Health, ModelSource, NnConfig, NnService, Preference, VulkanProbe};
use spark_orchestrator::policy::Decision;
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
pub async fn start(settings: Option<&NnSettings>) -> Result<Option<NnService>, NnStartError> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let config = config(settings);
    let service = tokio::task::spawn_blocking(move || NnService::start(config)).await??;
    tracing::info!(?service, "inference host started");
    Ok(Some(service))
}

/// The `spark-nn` configuration for `[nn]`.
pub fn config(s: &NnSettings) -> NnConfig {
    NnConfig {
        backends: s.backends.clone(),
        ort_library: s.ort_library.clone(),
        root: s.device_root.clone(),
        vulkan: VulkanProbe::Loader,
        allow_software_accelerators: s.allow_software_adapters,
        cpu_threads: s.cpu_threads as usize,
        models: s
            .models
            .iter()
            .map(|m| ModelSource {
                name: m.name.clone(),
                path: m.path.clone(),
                sha256: m.sha256.clone(),
            })
            .collect(),
        ..NnConfig::default()
    }
}

/// Looks for devices again every `every` until `shutdown` (a device that appeared or went
/// away changes the backends; see [`NnService::refresh_devices`]).
pub async fn rediscover(service: NnService, every: Duration, shutdown: CancellationToken) {
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

/// The orchestrator's hand on inference; called once per control tick.
pub struct NnControl {
    service: NnService,
    cpu_only_on_power_save: bool,
    /// In-flight inferences at or above which an accelerator is saturated (0: never).
    saturation: u32,
    cpu_only: bool,
    saturated: BTreeSet<String>,
}

impl NnControl {
    pub fn new(service: NnService, settings: &NnSettings) -> NnControl {
        NnControl {
            service,
            cpu_only_on_power_save: settings.power_save_cpu_only,
            saturation: settings.saturation,
            cpu_only: false,
            saturated: BTreeSet::new(),
        }
    }

    /// Applies this tick's modes and device load; returns the decisions taken.
    pub fn apply(&mut self, power_save: bool, now_ms: u64) -> Vec<Decision> {
        let mut decisions = Vec::new();
        let decide = |change: &str, reason: String| Decision {
            at_ms: now_ms,
            scope: "nn".into(),
            change: change.into(),
            reason,
        };
        let want_cpu_only = power_save && self.cpu_only_on_power_save;
        if want_cpu_only != self.cpu_only {
            self.cpu_only = want_cpu_only;
            let policy = self.service.policy();
            if want_cpu_only {
                policy.set_preference(Preference::CpuOnly);
                decisions.push(decide("inference on CPU only", "power save".into()));
            } else {
                policy.set_preference(Preference::Auto);
                decisions.push(decide(
                    "inference on the best device",
                    "power save ended".into(),
                ));
            }
        }
        if self.saturation > 0 {
            decisions.extend(self.saturation_changes().into_iter().map(|(b, on, n)| {
                let change = if on {
                    "saturated: inference moves on"
                } else {
                    "no longer saturated"
                };
                decide(
                    &format!("{b} {change}"),
                    format!("{n} inferences in flight (limit {})", self.saturation),
                )
            }));
        }
        decisions
    }

    /// Marks accelerators saturated at the threshold and clears them below half of it.
    fn saturation_changes(&mut self) -> Vec<(String, bool, u32)> {
        let policy = self.service.policy();
        let mut changes = Vec::new();
        for (backend, in_flight) in self.service.accelerators_in_flight() {
            let marked = self.saturated.contains(&backend);
            if !marked && in_flight >= self.saturation {
                policy.set_health(&backend, Health::Saturated);
                self.saturated.insert(backend.clone());
                changes.push((backend, true, in_flight));
            } else if marked && in_flight <= self.saturation / 2 {
                policy.set_health(&backend, Health::Healthy);
                self.saturated.remove(&backend);
                changes.push((backend, false, in_flight));
            }
        }
        changes
    }
}
