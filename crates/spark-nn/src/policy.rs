//! Which backends a `compute` may try, in which order: the target's chain, filtered by the
//! orchestrator's [`DevicePolicy`] and by each backend's recent health.
//!
//! The decision worth knowing: the chain is planned at every `compute`, not when the guest
//! loads its graph. A guest holding a graph therefore moves to the CPU the moment the
//! orchestrator says "battery" or "saturated", and back when it says otherwise, with no change
//! to the guest and no restart. [`route`] is pure (time is an argument) and tested as such.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{ORT_CPU, ORT_NPU, ORT_WEBGPU, TRACT};

/// The guest's hint (`execution-target` in wasi-nn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// `cpu`: ONNX Runtime's CPU provider, then tract.
    Cpu,
    /// `gpu`: WebGPU first, then an NPU, then the CPU backends.
    Gpu,
    /// `tpu`, taken to mean an NPU: the NPU first, then WebGPU, then the CPU backends.
    Tpu,
}

impl Target {
    /// Its wasi-nn name (`cpu`, `gpu`, `tpu`), as in the status.
    pub fn name(self) -> &'static str {
        match self {
            Target::Cpu => "cpu",
            Target::Gpu => "gpu",
            Target::Tpu => "tpu",
        }
    }

    /// Backends to try for this target, best first; the CPU ones always close the chain.
    pub fn chain(self) -> &'static [&'static str] {
        match self {
            Target::Cpu => &[ORT_CPU, TRACT],
            Target::Gpu => &[ORT_WEBGPU, ORT_NPU, ORT_CPU, TRACT],
            Target::Tpu => &[ORT_NPU, ORT_WEBGPU, ORT_CPU, TRACT],
        }
    }
}

impl From<wasmtime_wasi_nn::wit::ExecutionTarget> for Target {
    fn from(t: wasmtime_wasi_nn::wit::ExecutionTarget) -> Self {
        use wasmtime_wasi_nn::wit::ExecutionTarget as E;
        match t {
            E::Cpu => Target::Cpu,
            E::Gpu => Target::Gpu,
            E::Tpu => Target::Tpu,
        }
    }
}

/// What the orchestrator wants, node-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", content = "backend", rename_all = "kebab-case")]
pub enum Preference {
    /// Follow the guest's target.
    Auto,
    /// Use CPU backends only (battery, thermal or power policy).
    CpuOnly,
    /// Use exactly this backend, no fall-through (benchmarks, diagnosis).
    Only(String),
}

/// How a backend is doing, as the orchestrator or the router last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "kebab-case")]
pub enum Health {
    /// Usable (every backend, until marked otherwise).
    Healthy,
    /// Busy: skip it while it is (set and cleared by the orchestrator).
    Saturated,
    /// Not to be used (set by the orchestrator, or by the router after a panic).
    Unhealthy(String),
}

/// A backend as planning sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// The backend's name.
    pub name: &'a str,
    /// Whether it computes on the CPU (the only kind [`Preference::CpuOnly`] lets through).
    pub cpu: bool,
    /// `Err(reason)` when the backend does not exist on this node.
    pub available: Result<(), &'a str>,
}

/// The outcome of planning: what to try, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// Backends to try, in order.
    pub attempts: Vec<String>,
    /// Backends left out, each with the reason (`policy: CPU only`, `saturated`, ...).
    pub skipped: Vec<(String, String)>,
}

/// The shared, live policy handle; cheap to clone. The orchestrator holds one.
#[derive(Clone, Default)]
pub struct DevicePolicy {
    inner: Arc<RwLock<PolicyState>>,
}

/// A copy of the policy at one moment.
#[derive(Debug, Clone, Default)]
pub struct PolicyState {
    /// `None` until the orchestrator sets one (planned as `Auto`).
    pub preference: Option<Preference>,
    /// Backends marked other than healthy, by name; absent means healthy.
    pub health: HashMap<String, Health>,
    /// Failure streaks the router counts, by backend name; removed on a success.
    pub streaks: HashMap<String, Streak>,
    /// Consecutive failures that bench a backend (at least 1).
    pub failures_to_bench: u32,
    /// How long a benched backend is skipped.
    pub retry_after: Duration,
    /// How the usable backends are ordered: by measurement or the chain's order.
    pub selection: spark_manifest::NnSelection,
    /// The rules of measured selection.
    pub selection_rules: crate::selection::SelectionRules,
}

/// Consecutive failures of one backend, and until when it is benched.
#[derive(Debug, Clone, Default)]
pub struct Streak {
    /// Failures since its last success. It stays at the limit when a bench ends, so the next
    /// failure benches the backend again at once.
    pub failures: u32,
    /// Until when the router skips it; `None` while under the limit.
    pub benched_until: Option<Instant>,
    /// The latest failure's reason.
    pub last_error: String,
}

impl DevicePolicy {
    /// A policy with no preference and every backend healthy; a backend is benched for
    /// `retry_after` after `failures_to_bench` (at least 1) consecutive failures.
    pub fn new(failures_to_bench: u32, retry_after: Duration) -> DevicePolicy {
        DevicePolicy {
            inner: Arc::new(RwLock::new(PolicyState {
                failures_to_bench: failures_to_bench.max(1),
                retry_after,
                ..PolicyState::default()
            })),
        }
    }

    /// Node-wide preference; takes effect at the next `compute` of every guest.
    pub fn set_preference(&self, preference: Preference) {
        tracing::info!(?preference, "inference preference changed");
        self.write().preference = Some(preference);
    }

    /// How every target's backend is picked from now on: by measurement (re-probing slower
    /// ones after `reprobe`) or the chain's order.
    pub fn set_selection(&self, selection: spark_manifest::NnSelection, reprobe: Duration) {
        let mut state = self.write();
        state.selection = selection;
        state.selection_rules.reprobe = reprobe;
    }

    /// The node-wide preference (`Auto` until one is set).
    pub fn preference(&self) -> Preference {
        self.read().preference.clone().unwrap_or(Preference::Auto)
    }

    /// Marks one backend; `Healthy` also clears the router's failure streak for it.
    pub fn set_health(&self, backend: &str, health: Health) {
        tracing::info!(backend, ?health, "backend health changed");
        let mut state = self.write();
        if health == Health::Healthy {
            state.streaks.remove(backend);
            state.health.remove(backend);
        } else {
            state.health.insert(backend.to_owned(), health);
        }
    }

    /// How `backend` is marked (`Healthy` unless marked otherwise); the router's benches are
    /// not health marks and do not show here.
    pub fn health(&self, backend: &str) -> Health {
        self.read()
            .health
            .get(backend)
            .cloned()
            .unwrap_or(Health::Healthy)
    }

    /// A copy of the whole state (what [`route`] and the status read).
    pub fn snapshot(&self) -> PolicyState {
        self.read().clone()
    }

    /// The router saw `backend` fail; returns true when this benches it.
    pub(crate) fn record_failure(&self, backend: &str, error: &str, now: Instant) -> bool {
        let mut state = self.write();
        let (limit, retry) = (state.failures_to_bench, state.retry_after);
        let streak = state.streaks.entry(backend.to_owned()).or_default();
        streak.failures += 1;
        streak.last_error = error.to_owned();
        if streak.failures >= limit {
            streak.benched_until = Some(now + retry);
            return true;
        }
        false
    }

    pub(crate) fn record_success(&self, backend: &str) {
        if self.read().streaks.contains_key(backend) {
            self.write().streaks.remove(backend);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, PolicyState> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, PolicyState> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Orders and filters `candidates` (already in the target's chain order) for one `compute`.
pub fn route(candidates: &[Candidate<'_>], state: &PolicyState, now: Instant) -> Route {
    let mut out = Route::default();
    let preference = state.preference.clone().unwrap_or(Preference::Auto);
    for c in candidates {
        let skip = |reason: String| (c.name.to_owned(), reason);
        if let Err(reason) = c.available {
            out.skipped.push(skip(format!("unavailable: {reason}")));
            continue;
        }
        match &preference {
            Preference::Only(only) if only != c.name => {
                out.skipped.push(skip(format!("policy: only {only}")));
                continue;
            }
            Preference::CpuOnly if !c.cpu => {
                out.skipped.push(skip("policy: CPU only".into()));
                continue;
            }
            _ => {}
        }
        match state.health.get(c.name) {
            Some(Health::Saturated) => {
                out.skipped.push(skip("saturated".into()));
                continue;
            }
            Some(Health::Unhealthy(why)) => {
                out.skipped.push(skip(format!("unhealthy: {why}")));
                continue;
            }
            _ => {}
        }
        if let Some(streak) = state.streaks.get(c.name)
            && let Some(until) = streak.benched_until.filter(|u| *u > now)
        {
            out.skipped.push(skip(format!(
                "benched for {}s after {} failures (last: {})",
                (until - now).as_secs() + 1,
                streak.failures,
                streak.last_error
            )));
            continue;
        }
        out.attempts.push(c.name.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<Candidate<'static>> {
        vec![
            Candidate {
                name: ORT_WEBGPU,
                cpu: false,
                available: Ok(()),
            },
            Candidate {
                name: ORT_NPU,
                cpu: false,
                available: Err("no NPU"),
            },
            Candidate {
                name: ORT_CPU,
                cpu: true,
                available: Ok(()),
            },
            Candidate {
                name: TRACT,
                cpu: true,
                available: Ok(()),
            },
        ]
    }

    #[test]
    fn auto_follows_the_chain_and_says_why_a_backend_is_left_out() {
        let policy = DevicePolicy::new(3, Duration::from_secs(30));
        let p = route(&candidates(), &policy.snapshot(), Instant::now());
        assert_eq!(p.attempts, [ORT_WEBGPU, ORT_CPU, TRACT]);
        assert_eq!(
            p.skipped,
            [(ORT_NPU.to_owned(), "unavailable: no NPU".to_owned())]
        );
    }

    #[test]
    fn battery_moves_to_cpu_and_back() {
        let policy = DevicePolicy::new(3, Duration::from_secs(30));
        policy.set_preference(Preference::CpuOnly);
        let p = route(&candidates(), &policy.snapshot(), Instant::now());
        assert_eq!(p.attempts, [ORT_CPU, TRACT]);
        policy.set_preference(Preference::Auto);
        let p = route(&candidates(), &policy.snapshot(), Instant::now());
        assert_eq!(p.attempts[0], ORT_WEBGPU);
    }

    #[test]
    fn saturated_and_unhealthy_are_skipped_until_cleared() {
        let policy = DevicePolicy::new(3, Duration::from_secs(30));
        policy.set_health(ORT_WEBGPU, Health::Saturated);
        policy.set_health(ORT_CPU, Health::Unhealthy("thermal".into()));
        let p = route(&candidates(), &policy.snapshot(), Instant::now());
        assert_eq!(p.attempts, [TRACT]);
        policy.set_health(ORT_WEBGPU, Health::Healthy);
        let p = route(&candidates(), &policy.snapshot(), Instant::now());
        assert_eq!(p.attempts, [ORT_WEBGPU, TRACT]);
    }

    #[test]
    fn repeated_failures_bench_a_backend_then_it_is_retried() {
        let policy = DevicePolicy::new(2, Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(!policy.record_failure(ORT_WEBGPU, "device lost", t0));
        assert!(policy.record_failure(ORT_WEBGPU, "device lost", t0));
        let p = route(
            &candidates(),
            &policy.snapshot(),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(p.attempts, [ORT_CPU, TRACT]);
        assert!(
            p.skipped
                .iter()
                .any(|(b, why)| b == ORT_WEBGPU && why.contains("device lost"))
        );
        let later = route(
            &candidates(),
            &policy.snapshot(),
            t0 + Duration::from_secs(31),
        );
        assert_eq!(later.attempts[0], ORT_WEBGPU);
        policy.record_success(ORT_WEBGPU);
        assert!(policy.snapshot().streaks.is_empty());
    }

    #[test]
    fn only_pins_one_backend() {
        let policy = DevicePolicy::new(3, Duration::from_secs(30));
        policy.set_preference(Preference::Only(TRACT.into()));
        let p = route(&candidates(), &policy.snapshot(), Instant::now());
        assert_eq!(p.attempts, [TRACT]);
    }
}
